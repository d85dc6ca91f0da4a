/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * index: build the merged tree of a stack once, then answer from memory.
 *
 * Layout (all arrays grow during the build and are trimmed after it):
 *   nodes[]    one per visible inode; sqv_ino_t is the position here
 *   entries[]  directory entries; each directory's are contiguous and
 *              sorted by name, so lookup is a binary search
 *   pool       names, symlink targets and xattrs, NUL-terminated strings
 *   files[]    for regular files: layout and where their blocks are listed
 *   words[], positions[]  every file's block size words and image offsets
 *
 * The build is breadth-first over directories, with an explicit queue, so a
 * deeply nested image cannot exhaust the stack. For each directory it reads
 * the directory in each contributing layer, top first, stopping below an
 * opaque marker, sorts all names with their layer, and takes per name the
 * topmost entry unless a whiteout at or above it hides it (layer.h). The
 * overlayfs markers (a whiteout device, an opaque xattr) are found on the
 * inodes rather than in the names, so they are checked where the inodes
 * are read.
 */
#include "index.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>

#include "hot.h"
#include "ino.h"
#include "layer.h"
#include "log.h"
#include "mem.h"

#define NONE UINT32_MAX
/* Damaged entries logged one by one before only a count is kept. */
#define DAMAGE_LOG_MAX 10

struct node {
	uint64_t size;
	uint32_t mode;
	uint32_t uid, gid;
	uint32_t nlink;
	uint32_t mtime;
	uint32_t number; /* the image's inode number */
	uint32_t layer;
	uint32_t data;   /* dir: first entry; reg: files[]; lnk: pool; dev: rdev */
	uint32_t count;  /* dir: number of entries */
	uint32_t parent; /* dir: parent directory */
	uint32_t xattr;  /* pool offset of the xattr record, or NONE */
};

struct entry {
	uint32_t name; /* pool offset */
	uint32_t ino;
};

struct file {
	uint64_t size;
	uint64_t frag_pos;
	uint32_t frag_word;
	uint32_t frag_off;
	uint32_t first; /* into words[] and positions[] */
	uint32_t nblocks;
	bool has_fragment;
};

#define VEC(type)                                                              \
	struct {                                                               \
		type *v;                                                       \
		size_t len, cap;                                               \
	}

/* Make room for n more elements; 0 or -ENOMEM. */
static int vec_reserve_(void **v, size_t *cap, size_t len, size_t n,
			size_t size)
{
	if (len + n <= *cap)
		return 0;
	size_t ncap = *cap ? *cap : 64;
	while (ncap < len + n)
		ncap *= 2;
	void *nv = realloc(*v, ncap * size);
	if (!nv)
		return -ENOMEM;
	/* The new room is about to be filled: fault it in at once. */
	sqv_mem_prefault((char *)nv + *cap * size, (ncap - *cap) * size);
	*v = nv;
	*cap = ncap;
	return 0;
}
#define vec_reserve(vec, n)                                                    \
	((vec).len + (n) <= (vec).cap ?                                        \
		 0 :                                                           \
		 vec_reserve_((void **)&(vec).v, &(vec).cap, (vec).len, (n),   \
			      sizeof(*(vec).v)))
#define vec_trim(vec)                                                          \
	do {                                                                   \
		if ((vec).len && (vec).len < (vec).cap) {                      \
			void *t_ = realloc((vec).v,                            \
					   (vec).len * sizeof(*(vec).v));      \
			if (t_) {                                              \
				(vec).v = t_;                                  \
				(vec).cap = (vec).len;                         \
			}                                                      \
		}                                                              \
	} while (0)

struct sqv_index {
	struct sqv_image **layers;
	unsigned nlayers;
	uint32_t block_size;
	VEC(struct node) nodes;
	VEC(struct entry) entries;
	VEC(char) pool;
	VEC(struct file) files;
	VEC(uint32_t) words;
	VEC(uint64_t) positions;
};

/* ---- build-time state ---- */

struct contrib {
	unsigned layer;
	struct sqv_image_inode dir;
};

struct pending {
	uint32_t ino;
	uint32_t first; /* into contribs */
	uint32_t count;
};

enum rec_kind { REC_PLAIN, REC_WHITEOUT };

struct record {
	uint32_t name; /* into names */
	uint32_t len;
	uint32_t rank; /* position in the directory's contributions */
	uint32_t kind;
	uint64_t ref;
};

/* Open-addressing set/map of 64-bit keys, for hard links and loops. */
struct keymap {
	uint64_t *keys; /* 0 = empty; keys are stored + 1 */
	uint32_t *vals;
	size_t cap, len;
};

struct build {
	struct sqv_index *idx;
	unsigned flags;
	VEC(struct contrib) contribs;
	VEC(struct pending) queue;
	VEC(struct record) records;
	VEC(char) names; /* the names of the directory being merged */
	struct keymap links;   /* (layer, inode number) -> ino, nlink > 1 */
	struct keymap seen;    /* (layer, directory ref): loop detection */
	/* the directory being read: */
	uint32_t rank;
	unsigned layer;
	bool opaque;
	bool at_root;
	unsigned damaged_logged;
	size_t damaged;
};

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= UINT64_C(0xff51afd7ed558ccd);
	x ^= x >> 33;
	x *= UINT64_C(0xc4ceb9fe1a85ec53);
	x ^= x >> 33;
	return x;
}

static int keymap_grow(struct keymap *m)
{
	size_t ncap = m->cap ? m->cap * 2 : 1024;
	uint64_t *keys = calloc(ncap, sizeof(*keys));
	uint32_t *vals = calloc(ncap, sizeof(*vals));

	if (!keys || !vals) {
		free(keys);
		free(vals);
		return -ENOMEM;
	}
	for (size_t i = 0; i < m->cap; i++) {
		if (!m->keys[i])
			continue;
		size_t j = mix64(m->keys[i]) & (ncap - 1);
		while (keys[j])
			j = (j + 1) & (ncap - 1);
		keys[j] = m->keys[i];
		vals[j] = m->vals[i];
	}
	free(m->keys);
	free(m->vals);
	m->keys = keys;
	m->vals = vals;
	m->cap = ncap;
	return 0;
}

/* 1 and *val if key is present, else 0. */
static int keymap_get(const struct keymap *m, uint64_t key, uint32_t *val)
{
	uint64_t k = key + 1;

	if (m->cap == 0)
		return 0;
	for (size_t j = mix64(k) & (m->cap - 1); m->keys[j];
	     j = (j + 1) & (m->cap - 1)) {
		if (m->keys[j] == k) {
			*val = m->vals[j];
			return 1;
		}
	}
	return 0;
}

/* Insert a key known to be absent; 0 or -ENOMEM. */
static int keymap_put(struct keymap *m, uint64_t key, uint32_t val)
{
	if ((m->len + 1) * 2 > m->cap && keymap_grow(m) < 0)
		return -ENOMEM;
	uint64_t k = key + 1;
	size_t j = mix64(k) & (m->cap - 1);
	while (m->keys[j])
		j = (j + 1) & (m->cap - 1);
	m->keys[j] = k;
	m->vals[j] = val;
	m->len++;
	return 0;
}

static void keymap_free(struct keymap *m)
{
	free(m->keys);
	free(m->vals);
}

static void note_damage(struct build *b, unsigned layer, const char *what,
			const char *name)
{
	/* A name comes from the image: escape control bytes, so that a
	 * newline in it cannot forge a second log line. */
	char safe[4 * SQV_NAME_MAX + 1];
	size_t o = 0;

	b->damaged++;
	if (b->damaged_logged++ >= DAMAGE_LOG_MAX)
		return;
	for (size_t i = 0; name && name[i] && i < SQV_NAME_MAX; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c < 0x20 || c == 0x7f)
			o += (size_t)snprintf(safe + o, sizeof(safe) - o, "\\x%02x", c);
		else
			safe[o++] = (char)c;
	}
	safe[o] = '\0';
	sqv_log(SQV_LOG_WARNING, "%s: skipping %s%s%s",
		sqv_image_name(b->idx->layers[layer]), what, name ? ": " : "",
		safe);
}

/*
 * The one way to skip damage. Helpers never log: what they find damaged
 * they return as a negative errno (whatever lib/image gives, or
 * -SQV_ECORRUPT). The step that owns the entry passes that on here: -ENOMEM
 * is the only error that stops the build; anything else is damage, logged
 * (rate-limited) and skipped, and the step goes on without the entry (or,
 * for extended attributes, without them).
 */
static int skip_damaged(struct build *b, unsigned layer, int err,
			const char *what, const char *name)
{
	if (err == -ENOMEM)
		return err;
	/* Except in a sealed image, when the damage lies in a block its
	 * table does not vouch for: the open checked every block the table
	 * lists, so the image was damaged before it was sealed (or the
	 * table is another's), and part of a tree the table calls whole
	 * must not be served. One line, the build fails. */
	SQV_TRY(sqv_image_metadata_unverified(b->idx->layers[layer]));
	note_damage(b, layer, what, name);
	return 0;
}

static int pool_add(struct sqv_index *idx, const char *s, size_t len,
		    uint32_t *off)
{
	if (idx->pool.len + len + 1 > UINT32_MAX)
		return -ENOMEM;
	if (vec_reserve(idx->pool, len + 1) < 0)
		return -ENOMEM;
	*off = (uint32_t)idx->pool.len;
	memcpy(idx->pool.v + idx->pool.len, s, len);
	idx->pool.v[idx->pool.len + len] = '\0';
	idx->pool.len += len + 1;
	return 0;
}

static int collect_entry(void *ctx, const char *name, size_t len, uint64_t ref)
{
	struct build *b = ctx;
	const char *target = name;
	size_t tlen = len;
	enum sqv_name_kind kind = sqv_layer_classify(name, len, &target, &tlen);
	struct record r = { .rank = b->rank, .ref = ref, .kind = REC_PLAIN };

	if (kind == SQV_NAME_INVALID)
		return skip_damaged(b, b->layer, -SQV_ECORRUPT,
				    "an entry with an invalid name", NULL);
	if (b->flags & SQV_INDEX_RAW) {
		target = name;
		tlen = len;
	} else if (b->at_root && len == strlen(SQV_HOT_NAME) &&
		   memcmp(name, SQV_HOT_NAME, len) == 0) {
		return 0; /* a hot-first image's record, not part of the tree */
	} else if (kind == SQV_NAME_OPAQUE) {
		b->opaque = true;
		return 0;
	} else if (kind == SQV_NAME_WHITEOUT) {
		r.kind = REC_WHITEOUT;
	}
	if (vec_reserve(b->names, tlen + 1) < 0 || vec_reserve(b->records, 1) < 0)
		return -ENOMEM;
	r.name = (uint32_t)b->names.len;
	r.len = (uint32_t)tlen;
	memcpy(b->names.v + b->names.len, target, tlen);
	b->names.v[b->names.len + tlen] = '\0';
	b->names.len += tlen + 1;
	b->records.v[b->records.len++] = r;
	return 0;
}

static int name_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);
	if (c != 0)
		return c;
	return (alen > blen) - (alen < blen);
}

static int record_cmp(const void *pa, const void *pb, void *ctx)
{
	const struct record *a = pa, *b = pb;
	const char *names = ctx;
	int c = name_cmp(names + a->name, a->len, names + b->name, b->len);

	if (c != 0)
		return c;
	if (a->rank != b->rank)
		return a->rank < b->rank ? -1 : 1;
	/* In one layer an entry wins over a whiteout of the same name: the
	 * whiteout only speaks of the layers below. */
	return (int)a->kind - (int)b->kind;
}

struct xattr_buf {
	VEC(char) buf;
	bool raw;
};

static int add_xattr(void *ctx, const char *name, const void *value,
		     size_t len)
{
	struct xattr_buf *xb = ctx;
	__typeof__(xb->buf) *buf = &xb->buf;
	size_t nlen = strlen(name) + 1;
	uint32_t vlen = (uint32_t)len;

	/* overlayfs's opaque marker, like a whiteout file, is never served. */
	if (!xb->raw && sqv_layer_is_opaque_xattr(name, NULL, 0))
		return 0;
	if (vec_reserve(*buf, nlen + sizeof(vlen) + len) < 0)
		return -ENOMEM;
	memcpy(buf->v + buf->len, name, nlen);
	buf->len += nlen;
	memcpy(buf->v + buf->len, &vlen, sizeof(vlen));
	buf->len += sizeof(vlen);
	memcpy(buf->v + buf->len, value, len);
	buf->len += len;
	return 0;
}

/*
 * An xattr record in the pool: uint32 byte length of what follows, then
 * per attribute "name\0" uint32 value length, value. Unaligned, read with
 * memcpy.
 */
static int load_xattrs(struct build *b, unsigned layer,
		       const struct sqv_image_inode *ii, uint32_t *off)
{
	struct xattr_buf xb = { .raw = b->flags & SQV_INDEX_RAW };
	__typeof__(xb.buf) buf;
	struct sqv_index *idx = b->idx;
	uint32_t total;
	int err;

	*off = NONE;
	if (ii->xattr == SQV_IMAGE_NO_XATTR)
		return 0;
	err = sqv_image_xattrs(idx->layers[layer], ii, add_xattr, &xb);
	buf = xb.buf;
	if (err < 0 || buf.len == 0) {
		free(buf.v);
		return err;
	}
	total = (uint32_t)buf.len;
	if (vec_reserve(idx->pool, sizeof(total) + buf.len) < 0 ||
	    idx->pool.len + sizeof(total) + buf.len > UINT32_MAX) {
		free(buf.v);
		return -ENOMEM;
	}
	*off = (uint32_t)idx->pool.len;
	memcpy(idx->pool.v + idx->pool.len, &total, sizeof(total));
	memcpy(idx->pool.v + idx->pool.len + sizeof(total), buf.v, buf.len);
	idx->pool.len += sizeof(total) + buf.len;
	free(buf.v);
	return 0;
}

/* Fill what a node needs beyond its attributes: a symlink's target, a
 * file's block list. -SQV_ECORRUPT (or lib/image's error) when damaged. */
static int load_payload(struct build *b, unsigned layer,
			const struct sqv_image_inode *ii, struct node *n)
{
	struct sqv_index *idx = b->idx;
	struct sqv_image *img = idx->layers[layer];
	int err;

	switch (ii->mode & S_IFMT) {
	case S_IFLNK: {
		char target[4096];
		err = sqv_image_readlink(img, ii, target, sizeof(target));
		/* A NUL inside the stored target is damage: it would be
		 * served cut short, or empty. */
		if (err < 0)
			return err;
		if (strlen(target) != ii->size)
			return -SQV_ECORRUPT;
		return pool_add(idx, target, strlen(target), &n->data);
	}
	case S_IFREG: {
		struct sqv_file_layout l;
		uint32_t *w;
		uint64_t *p;
		err = sqv_image_file_layout(img, ii, &l, &w, &p);
		if (err < 0)
			return err;
		if (vec_reserve(idx->files, 1) < 0 ||
		    vec_reserve(idx->words, l.nblocks) < 0 ||
		    vec_reserve(idx->positions, l.nblocks) < 0 ||
		    idx->words.len + l.nblocks > UINT32_MAX) {
			free(w);
			free(p);
			return -ENOMEM;
		}
		struct file *f = &idx->files.v[idx->files.len];
		*f = (struct file){
			.size = l.size,
			.frag_pos = l.frag_pos,
			.frag_word = l.frag_word,
			.frag_off = l.frag_off,
			.first = (uint32_t)idx->words.len,
			.nblocks = l.nblocks,
			.has_fragment = l.has_fragment,
		};
		if (l.nblocks) {
			memcpy(idx->words.v + idx->words.len, w,
			       l.nblocks * sizeof(*w));
			memcpy(idx->positions.v + idx->positions.len, p,
			       l.nblocks * sizeof(*p));
		}
		idx->words.len += l.nblocks;
		idx->positions.len += l.nblocks;
		n->data = (uint32_t)idx->files.len++;
		free(w);
		free(p);
		return 0;
	}
	case S_IFBLK:
	case S_IFCHR:
		n->data = ii->rdev;
		return 0;
	default:
		return 0;
	}
}

/* Append a node for image inode ii of layer; *ino gets its position. A
 * hard link to a node already made gets that node. -ENOMEM, or another
 * negative errno when the entry is damaged (damaged extended attributes
 * alone are skipped here: the entry stays, without them). */
static int make_node(struct build *b, unsigned layer,
		     const struct sqv_image_inode *ii, uint32_t parent,
		     uint32_t *ino)
{
	struct sqv_index *idx = b->idx;
	uint32_t pos = (uint32_t)idx->nodes.len;
	int err;

	if (idx->nodes.len >= NONE - 1)
		return -ENOMEM;
	bool linked = !S_ISDIR(ii->mode) && ii->nlink > 1;
	uint64_t link_key = (uint64_t)layer << 32 | ii->number;
	if (linked && keymap_get(&b->links, link_key, ino))
		return 0;
	struct node n = {
		.size = ii->size,
		.mode = ii->mode,
		.uid = ii->uid,
		.gid = ii->gid,
		.nlink = ii->nlink,
		.mtime = ii->mtime,
		.number = ii->number,
		.layer = layer,
		.data = NONE,
		.parent = parent,
		.xattr = NONE,
	};
	SQV_TRY(load_payload(b, layer, ii, &n));
	err = load_xattrs(b, layer, ii, &n.xattr);
	if (err < 0)
		SQV_TRY(skip_damaged(b, layer, err, "damaged extended attributes",
				     NULL));
	if (linked && keymap_put(&b->links, link_key, pos) < 0)
		return -ENOMEM;
	if (vec_reserve(idx->nodes, 1) < 0)
		return -ENOMEM;
	idx->nodes.v[idx->nodes.len++] = n;
	*ino = pos;
	return 0;
}

static int queue_dir(struct build *b, uint32_t ino, const struct contrib *c,
		     uint32_t count)
{
	if (vec_reserve(b->contribs, count) < 0 || vec_reserve(b->queue, 1) < 0)
		return -ENOMEM;
	struct pending p = { ino, (uint32_t)b->contribs.len, count };
	memcpy(b->contribs.v + b->contribs.len, c, count * sizeof(*c));
	b->contribs.len += count;
	b->queue.v[b->queue.len++] = p;
	return 0;
}

static int find_opaque_xattr(void *ctx, const char *name, const void *value,
			     size_t len)
{
	(void)ctx;
	return sqv_layer_is_opaque_xattr(name, value, len) ? 1 : 0;
}

/* Whether a layer's directory carries overlayfs's opaque xattr, which hides
 * the layers below it as ".wh..wh..opq" would. Damaged xattrs are reported
 * when the node is made; here they just do not make it opaque. */
static bool dir_is_opaque(const struct build *b, const struct contrib *c)
{
	if ((b->flags & SQV_INDEX_RAW) || c->dir.xattr == SQV_IMAGE_NO_XATTR)
		return false;
	return sqv_image_xattrs(b->idx->layers[c->layer], &c->dir,
				find_opaque_xattr, NULL) == 1;
}

/* A squashfs directory lists its names sorted (the kernel's lookup relies
 * on it), so the records of a directory of one layer without whiteouts are
 * sorted already: one pass instead of a sort. */
static bool records_sorted(const struct build *b)
{
	for (size_t i = 1; i < b->records.len; i++)
		if (record_cmp(&b->records.v[i - 1], &b->records.v[i],
			       b->names.v) > 0)
			return false;
	return true;
}

/* Read directory p in each of its layers, top first, into b->records and
 * b->names, down to the first layer that marks it opaque. */
static int read_layers(struct build *b, struct pending p)
{
	b->records.len = 0;
	b->names.len = 0;
	for (uint32_t i = 0; i < p.count; i++) {
		/* contribs may move while we queue; index it afresh. */
		struct contrib c = b->contribs.v[p.first + i];
		uint64_t key = (uint64_t)c.layer << 48 ^ c.dir.ref;
		uint32_t dummy = 0;
		int err;

		if (keymap_get(&b->seen, key, &dummy)) {
			SQV_TRY(skip_damaged(b, c.layer, -SQV_ECORRUPT,
					     "a directory that loops", NULL));
			continue;
		}
		if (keymap_put(&b->seen, key, 0) < 0)
			return -ENOMEM;
		b->rank = i;
		b->layer = c.layer;
		b->opaque = false;
		b->at_root = p.ino == SQV_INO_ROOT;
		err = sqv_image_readdir(b->idx->layers[c.layer], &c.dir,
					collect_entry, b);
		if (err < 0)
			SQV_TRY(skip_damaged(b, c.layer, err,
					     "part of a damaged directory", NULL));
		if (b->opaque || dir_is_opaque(b, &c))
			break;
	}
	if (!records_sorted(b))
		qsort_r(b->records.v, b->records.len, sizeof(*b->records.v),
			record_cmp, b->names.v);
	return 0;
}

/* The end of the run of records from i that share record i's name. */
static size_t name_group_end(const struct build *b, size_t i)
{
	const struct record *r = &b->records.v[i];
	size_t end = i + 1;

	while (end < b->records.len &&
	       name_cmp(b->names.v + r->name, r->len,
			b->names.v + b->records.v[end].name,
			b->records.v[end].len) == 0)
		end++;
	return end;
}

/* The directories that merge into directory top (subdirs[0]): the lower
 * records of its name group [i, end), down to the first whiteout or
 * non-directory. SQV_INDEX_RAW merges them as well (its records hold no
 * whiteouts and no directory is opaque), so that a raw stack shows every
 * layer's entries in every directory, not only at the root. Returns how
 * many subdirs[] holds. */
static int lower_dirs(struct build *b, struct pending p, size_t i, size_t end,
		      struct contrib *subdirs, uint32_t *nsub)
{
	uint32_t n = 1;

	for (size_t k = i + 1; k < end && n < SQV_INDEX_MAX_LAYERS; k++) {
		const struct record *lr = &b->records.v[k];
		struct contrib c = {
			.layer = b->contribs.v[p.first + lr->rank].layer
		};
		if (lr->kind == REC_WHITEOUT)
			break;
		int err = sqv_image_inode(b->idx->layers[c.layer], lr->ref,
					  &c.dir);
		if (err == -ENOMEM)
			return err;
		/* A damaged lower directory ends the merge, quietly: the
		 * entry itself is whole. */
		if (err < 0 || !S_ISDIR(c.dir.mode))
			break;
		subdirs[n++] = c;
	}
	*nsub = n;
	return 0;
}

/* Resolve the name group [i, end) of directory p into one entry (none for
 * a whiteout or a damaged entry). *is_dir tells whether the entry is a
 * directory, which is queued for merging. */
static int add_name(struct build *b, struct pending p, size_t i, size_t end,
		    bool *is_dir)
{
	struct sqv_index *idx = b->idx;
	const struct record *r = &b->records.v[i];
	const char *name = b->names.v + r->name;
	struct contrib subdirs[SQV_INDEX_MAX_LAYERS];
	uint32_t nsub = 0;
	uint32_t child, noff;
	int err;

	*is_dir = false;
	if (r->kind == REC_WHITEOUT)
		return 0;
	subdirs[0].layer = b->contribs.v[p.first + r->rank].layer;
	err = sqv_image_inode(idx->layers[subdirs[0].layer], r->ref,
			      &subdirs[0].dir);
	if (err < 0)
		return skip_damaged(b, subdirs[0].layer, err, "a damaged inode",
				    name);
	/* An overlayfs whiteout hides the name below and is not shown;
	 * below, as a non-directory, it stops the merge. */
	if (!(b->flags & SQV_INDEX_RAW) &&
	    sqv_layer_is_whiteout_inode(subdirs[0].dir.mode,
					subdirs[0].dir.rdev))
		return 0;
	if (S_ISDIR(subdirs[0].dir.mode))
		SQV_TRY(lower_dirs(b, p, i, end, subdirs, &nsub));
	err = make_node(b, subdirs[0].layer, &subdirs[0].dir, p.ino, &child);
	if (err < 0)
		return skip_damaged(b, subdirs[0].layer, err, "a damaged file",
				    name);
	if (nsub > 0) {
		SQV_TRY(queue_dir(b, child, subdirs, nsub));
		*is_dir = true;
	}
	if (vec_reserve(idx->entries, 1) < 0 ||
	    pool_add(idx, name, r->len, &noff) < 0)
		return -ENOMEM;
	idx->entries.v[idx->entries.len++] =
		(struct entry){ .name = noff, .ino = child };
	return 0;
}

/* Merge one directory: read its layers, resolve each name, append its
 * entries contiguously, and queue its subdirectories. */
static int merge_dir(struct build *b, struct pending p)
{
	struct sqv_index *idx = b->idx;
	uint32_t first = (uint32_t)idx->entries.len;
	uint32_t nsubdirs = 0;

	SQV_TRY(read_layers(b, p));
	for (size_t i = 0; i < b->records.len;) {
		size_t end = name_group_end(b, i);
		bool is_dir;

		SQV_TRY(add_name(b, p, i, end, &is_dir));
		nsubdirs += is_dir;
		i = end;
	}
	struct node *dir = &idx->nodes.v[p.ino];
	dir->data = first;
	dir->count = (uint32_t)idx->entries.len - first;
	dir->nlink = 2 + nsubdirs;
	return 0;
}

static void build_free(struct build *b)
{
	free(b->contribs.v);
	free(b->queue.v);
	free(b->records.v);
	free(b->names.v);
	keymap_free(&b->links);
	keymap_free(&b->seen);
}

/* A metadata block decompressed, and the fewest of its bytes one inode with
 * its directory entry takes in a real image (a 30,000-entry venv: 64). */
#define MD_BLOCK_BYTES 8192
#define TABLE_BYTES_PER_INODE 48
/* Pool bytes per entry: its name and NUL (a venv's average: 21). */
#define POOL_BYTES_PER_INODE 24

/*
 * Make room for the largest layer's inodes before the build. Grown from
 * nothing by doubling, each array took a dozen steps, each a realloc
 * (mremap) and a prefault, and its last step left up to half unused: 5 to
 * 8 ms of a 30,000-entry mount (issue 15). A stack that adds entries still
 * grows the arrays from there, and vec_trim gives back what is unused. The
 * superblock's inode count is held to what the preloaded tables can hold,
 * so that a damaged count reserves at most about three times the memory
 * the tables already take (128 bytes of arrays per 48 of tables). Only a
 * head start: an array it cannot reserve is grown as before.
 */
static void reserve_expected(struct sqv_index *idx,
			     struct sqv_image *const *layers, unsigned nlayers)
{
	size_t n = 0;

	for (unsigned i = 0; i < nlayers; i++) {
		struct sqv_image_io io;
		sqv_image_io(layers[i], &io);
		uint64_t most = io.metadata_blocks *
				(MD_BLOCK_BYTES / TABLE_BYTES_PER_INODE);
		uint64_t count = sqv_image_info(layers[i])->inode_count;
		if (count > most)
			count = most;
		if (count > n)
			n = (size_t)count;
	}
	(void)vec_reserve(idx->nodes, n);
	(void)vec_reserve(idx->entries, n);
	(void)vec_reserve(idx->files, n);
	(void)vec_reserve(idx->pool, n * POOL_BYTES_PER_INODE);
}

sqv_err_t sqv_index_build(struct sqv_image *const *layers, unsigned nlayers,
			  unsigned flags, struct sqv_index **out)
{
	struct build b = { .flags = flags };
	struct sqv_index *idx;
	struct contrib *roots = NULL;
	uint32_t root;
	int err = -ENOMEM;

	if (nlayers == 0 || nlayers > SQV_INDEX_MAX_LAYERS)
		return -EINVAL;
	idx = calloc(1, sizeof(*idx));
	if (!idx)
		return -ENOMEM;
	idx->layers = calloc(nlayers, sizeof(*idx->layers));
	roots = calloc(nlayers, sizeof(*roots));
	if (!idx->layers || !roots)
		goto fail;
	memcpy(idx->layers, layers, nlayers * sizeof(*layers));
	idx->nlayers = nlayers;
	idx->block_size = sqv_image_info(layers[0])->block_size;
	b.idx = idx;

	/* The build reads every inode and directory: decompress them all
	 * at once, on both cores. */
	for (unsigned i = 0; i < nlayers; i++) {
		err = sqv_image_preload_metadata(layers[i]);
		if (err == -ENOMEM)
			goto fail;
	}
	reserve_expected(idx, layers, nlayers);
	/* Every layer's root merges into the root, top first. */
	for (unsigned i = 0; i < nlayers; i++) {
		unsigned layer = nlayers - 1 - i;
		roots[i].layer = layer;
		err = sqv_image_root(layers[layer], &roots[i].dir);
		if (err < 0) {
			sqv_log(SQV_LOG_ERR, "%s: damaged root directory",
				sqv_image_name(layers[layer]));
			goto fail;
		}
	}
	err = make_node(&b, roots[0].layer, &roots[0].dir, 0, &root);
	if (err < 0) {
		if (err != -ENOMEM)
			err = -SQV_ECORRUPT;
		goto fail;
	}
	err = queue_dir(&b, root, roots, nlayers);
	if (err < 0)
		goto fail;
	for (size_t q = 0; q < b.queue.len; q++) {
		err = merge_dir(&b, b.queue.v[q]);
		if (err < 0)
			goto fail;
	}
	/* Reads that failed without a skip (a lower layer's damaged
	 * directory ends its merge quietly) count as well. */
	for (unsigned i = 0; i < nlayers; i++) {
		err = sqv_image_metadata_unverified(layers[i]);
		if (err < 0)
			goto fail;
	}
	if (b.damaged > DAMAGE_LOG_MAX)
		sqv_log(SQV_LOG_WARNING, "%zu damaged entries skipped in all",
			b.damaged);

	vec_trim(idx->nodes);
	vec_trim(idx->entries);
	vec_trim(idx->pool);
	vec_trim(idx->files);
	vec_trim(idx->words);
	vec_trim(idx->positions);
	free(roots);
	build_free(&b);
	*out = idx;
	return 0;

fail:
	free(roots);
	build_free(&b);
	sqv_index_free(idx);
	return err;
}

void sqv_index_free(struct sqv_index *idx)
{
	if (!idx)
		return;
	free(idx->layers);
	free(idx->nodes.v);
	free(idx->entries.v);
	free(idx->pool.v);
	free(idx->files.v);
	free(idx->words.v);
	free(idx->positions.v);
	free(idx);
}

/* ---- queries: lock-free, the index is immutable ---- */

size_t sqv_index_inode_count(const struct sqv_index *idx)
{
	return idx->nodes.len;
}

size_t sqv_index_entry_count(const struct sqv_index *idx)
{
	return idx->entries.len;
}

size_t sqv_index_memory(const struct sqv_index *idx)
{
	return sizeof(*idx) + idx->nlayers * sizeof(*idx->layers) +
	       idx->nodes.cap * sizeof(*idx->nodes.v) +
	       idx->entries.cap * sizeof(*idx->entries.v) + idx->pool.cap +
	       idx->files.cap * sizeof(*idx->files.v) +
	       idx->words.cap * sizeof(*idx->words.v) +
	       idx->positions.cap * sizeof(*idx->positions.v);
}

unsigned sqv_index_layer_count(const struct sqv_index *idx)
{
	return idx->nlayers;
}

struct sqv_image *sqv_index_image(const struct sqv_index *idx, unsigned layer)
{
	return layer < idx->nlayers ? idx->layers[layer] : NULL;
}

bool sqv_index_valid(const struct sqv_index *idx, sqv_ino_t ino)
{
	return ino < idx->nodes.len;
}

sqv_err_t sqv_index_lookup(const struct sqv_index *idx, sqv_ino_t dir,
			   const char *name, size_t len, sqv_ino_t *out)
{
	const struct node *d = &idx->nodes.v[dir];

	if (!S_ISDIR(d->mode))
		return -ENOTDIR;
	const struct entry *e = idx->entries.v + d->data;
	size_t lo = 0, hi = d->count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const char *m = idx->pool.v + e[mid].name;
		int c = name_cmp(name, len, m, strlen(m));
		if (c == 0) {
			*out = e[mid].ino;
			return 0;
		}
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return -ENOENT;
}

sqv_err_t sqv_index_lookup_path(const struct sqv_index *idx, const char *path,
				sqv_ino_t *out)
{
	sqv_ino_t cur = SQV_INO_ROOT;

	while (*path) {
		while (*path == '/')
			path++;
		if (!*path)
			break;
		size_t len = strcspn(path, "/");
		if (len == 1 && path[0] == '.') {
			/* stay */
		} else if (len == 2 && path[0] == '.' && path[1] == '.') {
			cur = sqv_index_parent(idx, cur);
		} else {
			SQV_TRY(sqv_index_lookup(idx, cur, path, len, &cur));
		}
		path += len;
	}
	*out = cur;
	return 0;
}

void sqv_index_stat(const struct sqv_index *idx, sqv_ino_t ino,
		    struct stat *st)
{
	const struct node *n = &idx->nodes.v[ino];

	memset(st, 0, sizeof(*st));
	st->st_ino = sqv_ino_encode(n->layer, n->number);
	st->st_mode = n->mode;
	st->st_nlink = n->nlink;
	st->st_uid = n->uid;
	st->st_gid = n->gid;
	st->st_size = (off_t)n->size;
	if (S_ISBLK(n->mode) || S_ISCHR(n->mode)) {
		st->st_rdev = n->data;
		st->st_size = 0;
	}
	st->st_blksize = idx->block_size;
	if (S_ISREG(n->mode))
		st->st_blocks = (blkcnt_t)((n->size + 511) / 512);
	st->st_atim.tv_sec = n->mtime;
	st->st_mtim.tv_sec = n->mtime;
	st->st_ctim.tv_sec = n->mtime;
}

uint32_t sqv_index_mode(const struct sqv_index *idx, sqv_ino_t ino)
{
	return idx->nodes.v[ino].mode;
}

unsigned sqv_index_layer(const struct sqv_index *idx, sqv_ino_t ino)
{
	return idx->nodes.v[ino].layer;
}

sqv_ino_t sqv_index_parent(const struct sqv_index *idx, sqv_ino_t dir)
{
	const struct node *n = &idx->nodes.v[dir];
	return S_ISDIR(n->mode) ? n->parent : SQV_INO_ROOT;
}

sqv_err_t sqv_index_dir_count(const struct sqv_index *idx, sqv_ino_t dir,
			      uint32_t *count)
{
	const struct node *n = &idx->nodes.v[dir];

	if (!S_ISDIR(n->mode))
		return -ENOTDIR;
	*count = n->count;
	return 0;
}

sqv_err_t sqv_index_dir_entry(const struct sqv_index *idx, sqv_ino_t dir,
			      uint32_t i, const char **name, sqv_ino_t *child)
{
	const struct node *n = &idx->nodes.v[dir];

	if (!S_ISDIR(n->mode))
		return -ENOTDIR;
	if (i >= n->count)
		return -ENOENT;
	const struct entry *e = &idx->entries.v[n->data + i];
	*name = idx->pool.v + e->name;
	*child = e->ino;
	return 0;
}

sqv_err_t sqv_index_readlink(const struct sqv_index *idx, sqv_ino_t ino,
			     const char **target)
{
	const struct node *n = &idx->nodes.v[ino];

	if (!S_ISLNK(n->mode))
		return -EINVAL;
	*target = idx->pool.v + n->data;
	return 0;
}

/* Walk an xattr record: the i-th attribute's name and value. */
struct xattr_iter {
	const char *p, *end;
};

static bool xattr_next(struct xattr_iter *it, const char **name,
		       const void **value, uint32_t *len)
{
	if (it->p >= it->end)
		return false;
	*name = it->p;
	it->p += strlen(it->p) + 1;
	memcpy(len, it->p, sizeof(*len));
	it->p += sizeof(*len);
	*value = it->p;
	it->p += *len;
	return true;
}

static struct xattr_iter xattr_begin(const struct sqv_index *idx,
				     const struct node *n)
{
	struct xattr_iter it = { NULL, NULL };
	uint32_t total;

	if (n->xattr == NONE)
		return it;
	memcpy(&total, idx->pool.v + n->xattr, sizeof(total));
	it.p = idx->pool.v + n->xattr + sizeof(total);
	it.end = it.p + total;
	return it;
}

sqv_err_t sqv_index_getxattr(const struct sqv_index *idx, sqv_ino_t ino,
			     const char *name, const void **value, size_t *len)
{
	struct xattr_iter it = xattr_begin(idx, &idx->nodes.v[ino]);
	const char *n;
	const void *v;
	uint32_t l;

	while (xattr_next(&it, &n, &v, &l)) {
		if (strcmp(n, name) == 0) {
			*value = v;
			*len = l;
			return 0;
		}
	}
	return -ENODATA;
}

sqv_err_t sqv_index_listxattr(const struct sqv_index *idx, sqv_ino_t ino,
			      char *buf, size_t size, size_t *needed)
{
	struct xattr_iter it = xattr_begin(idx, &idx->nodes.v[ino]);
	const char *n;
	const void *v;
	uint32_t l;
	size_t total = 0;

	while (xattr_next(&it, &n, &v, &l)) {
		size_t nlen = strlen(n) + 1;
		if (buf && total + nlen <= size)
			memcpy(buf + total, n, nlen);
		total += nlen;
	}
	if (buf && total > size)
		return -ERANGE;
	*needed = total;
	return 0;
}

sqv_err_t sqv_index_file(const struct sqv_index *idx, sqv_ino_t ino,
			 struct sqv_index_file *out)
{
	const struct node *n = &idx->nodes.v[ino];

	if (S_ISDIR(n->mode))
		return -EISDIR;
	if (!S_ISREG(n->mode))
		return -EINVAL;
	const struct file *f = &idx->files.v[n->data];
	out->layer = n->layer;
	out->layout = (struct sqv_file_layout){
		.size = f->size,
		.nblocks = f->nblocks,
		.has_fragment = f->has_fragment,
		.frag_pos = f->frag_pos,
		.frag_word = f->frag_word,
		.frag_off = f->frag_off,
	};
	/* No arithmetic on a NULL array when no file has blocks. */
	out->words = f->nblocks ? idx->words.v + f->first : NULL;
	out->positions = f->nblocks ? idx->positions.v + f->first : NULL;
	return 0;
}
