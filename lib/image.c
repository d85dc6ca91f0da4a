/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * image: one squashfs image: its metadata read by our own table reader over
 * blocks decompressed once (meta.h), its data through a lock-free pread +
 * decompress path. See image.h.
 */
#include "image.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/*
 * libsquashfuse's installed headers include its own autoconf config.h,
 * which defines FUSE_USE_VERSION, _POSIX_C_SOURCE-era macros and HAVE_*.
 * Claim that header's guard and give the one macro the others need. Only
 * its format constants are used here.
 */
#define SQFS_CONFIG_H 1
#define HAVE_LINUX_TYPES_LE16 1
#include <squashfuse.h>

#include "decomp.h"
#include "digest.h"
#include "io.h"
#include "layout.h"
#include "log.h"
#include "meta.h"
#include "superblock.h"

#define REPORTED_MAX 64
/* Bytes of one table entry: id, fragment, xattr id. */
#define ID_SIZE 4
#define FRAG_SIZE 16
#define XATTR_ID_SIZE 16

/* A lookup table (id, fragment, xattr id): its entries lie in metadata
 * blocks at the image offsets listed in blocks[]. */
struct table {
	uint64_t *blocks;
	size_t nblocks;
	uint64_t count;
	size_t each;
};

/*
 * An inode as stored, decoded. The layouts (squashfs 4.0, little-endian)
 * start with a 16-byte common part: type, mode, uid index, gid index,
 * mtime, inode number. What follows depends on the type; `basic` types
 * carry no xattr index and fewer bits.
 */
struct raw_inode {
	struct sqv_image_inode pub;
	struct sqv_meta_cursor next; /* just after the fixed part */
	uint64_t start_block;        /* reg: first data block; dir: listing */
	uint32_t dir_offset;         /* dir: listing offset in its block */
	uint32_t frag_idx, frag_off; /* reg */
};

struct sqv_image {
	/* The metadata blocks read so far (NULL before the first metadata
	 * call and after sqv_image_drop_metadata), and the count of blocks
	 * read by stores already dropped. Protected by meta_lock. */
	pthread_mutex_t meta_lock;
	struct sqv_meta *meta;
	uint64_t meta_blocks_dropped;
	/* sqv_image_metadata_unverified has said its line: the index build
	 * may ask again on its way out, and the refusal is one line. */
	bool unverified_said;
	/* The id table decoded, as ids are first used (every inode names
	 * two): id_known[i] is 1 once id_value[i] is read, 2 if damaged. */
	uint32_t *id_value;
	uint8_t *id_known;
	/* The inode decoded last: the index asks for an inode, then for its
	 * block list, target or xattrs, which start from the same inode. */
	struct raw_inode last;
	uint64_t last_ref1; /* its ref + 1; 0: none */

	/* Immutable after open: read freely by every thread. */
	int fd;
	char *name;
	uint64_t file_size;
	struct sqv_image_info info;
	int comp;
	uint64_t root_inode;
	uint64_t inode_table, dir_table, xattr_table;
	uint64_t meta_lo; /* the lowest offset of any metadata block */
	/* Where the directory table ends at the latest (run_end). */
	uint64_t dir_end;
	/* Where the tables' indexes start (UINT64_MAX: none) and the export
	 * table's first block: the metadata runs end there (run_end). */
	uint64_t stops[6];
	struct table ids, frags, xattr_ids;
	/* The block digests appended by sqvenvfs-pack, or NULL. */
	struct sqv_digests *digests;
	/* The superblock as checked, and the image's first bytes read with
	 * it (the compressor options' header too, when there are options):
	 * check_layout walks from them without reading them again. */
	struct sqv_superblock sb;
	unsigned char head[SQV_SUPERBLOCK_SIZE + 2];
	size_t head_len;

	/* Every read of the file: data, tables, metadata, digests. */
	struct sqv_io_count io;
	atomic_uint_fast64_t decompressed_bytes;
	atomic_uint_fast64_t corrupt_blocks;

	/* Offsets already reported as damaged, so a fault is logged once,
	 * not once per request. Protected by report_lock. */
	pthread_mutex_t report_lock;
	uint64_t reported[REPORTED_MAX];
	unsigned nreported;
	bool report_suppressed;
};

/* Log a damaged block once per offset; later ones are counted only. */
static void report_damage(struct sqv_image *img, uint64_t pos,
			  const char *what)
{
	bool first = true;
	bool suppress_now = false;

	atomic_fetch_add_explicit(&img->corrupt_blocks, 1,
				  memory_order_relaxed);
	pthread_mutex_lock(&img->report_lock);
	for (unsigned i = 0; i < img->nreported; i++)
		if (img->reported[i] == pos)
			first = false;
	if (first) {
		if (img->nreported < REPORTED_MAX) {
			img->reported[img->nreported++] = pos;
		} else {
			first = false;
			suppress_now = !img->report_suppressed;
			img->report_suppressed = true;
		}
	}
	pthread_mutex_unlock(&img->report_lock);

	if (first)
		sqv_log(SQV_LOG_ERR, "%s: offset %llu: %s", img->name,
			(unsigned long long)pos, what);
	if (suppress_now)
		sqv_log(SQV_LOG_ERR,
			"%s: more than %d damaged blocks; no further reports",
			img->name, REPORTED_MAX);
}

static sqv_err_t pread_exact(struct sqv_image *img, void *buf, size_t size,
			     uint64_t pos)
{
	/* -EIO also when the file shrank under us. */
	return sqv_pread_counted(img->fd, buf, size, pos, &img->io);
}

/* Check the superblock ourselves first (lib/base), so each refusal says
 * why; then whether sqvenvfs can decompress the image. *out gets the
 * superblock as stored, for the table offsets lib/base does not decode. */
static sqv_err_t check_superblock(struct sqv_image *img,
				  struct squashfs_super_block *out)
{
	unsigned char *buf = img->head;
	struct sqv_superblock sb;
	const char *name = img->name;
	char why[160];

	/* One read, the 2 bytes after the superblock with it (see head). */
	if (img->file_size >= SQV_SUPERBLOCK_SIZE) {
		img->head_len = img->file_size < sizeof(img->head) ?
					(size_t)img->file_size : sizeof(img->head);
		if (pread_exact(img, buf, img->head_len, 0) < 0) {
			sqv_log(SQV_LOG_ERR, "%s: cannot read the superblock", name);
			return -EIO;
		}
	}
	sqv_err_t err = sqv_superblock_check(buf, img->head_len < SQV_SUPERBLOCK_SIZE ?
					     0 : SQV_SUPERBLOCK_SIZE,
					     img->file_size, &sb, why, sizeof(why));
	if (err < 0) {
		sqv_log(SQV_LOG_ERR, "%s: %s", name, why);
		return err;
	}
	img->sb = sb;
	img->comp = sb.compression;
	if (!sqv_decomp_supported(img->comp)) {
		sqv_log(SQV_LOG_ERR, "%s: unsupported compression %s (%d)", name,
			sqv_superblock_comp_name(sb.compression), img->comp);
		return -ENOTSUP;
	}
	img->info.compression = sqv_superblock_comp_name(sb.compression);
	img->info.block_size = sb.block_size;
	img->info.inode_count = sb.inodes;
	img->info.fragment_count = sb.fragments;
	img->info.bytes_used = sb.bytes_used;
	img->info.mkfs_time = sb.mkfs_time;
	img->info.has_xattrs = (int64_t)sb.xattr_id_table != SQUASHFS_INVALID_BLK;
	img->root_inode = sb.root_inode;
	img->inode_table = sb.inode_table;
	img->dir_table = sb.directory_table;
	memcpy(out, buf, sizeof(*out));
	return 0;
}

/* Read for sqv_digest_verify: from the metadata store's copy of the
 * metadata range where it holds one (so the mount reads those bytes once,
 * and the index is built from the very bytes checked), else the image. */
static sqv_err_t static_read(void *ctx, void *buf, size_t len, uint64_t pos)
{
	struct sqv_image *img = ctx;
	const void *p = img->meta ? sqv_meta_stored(img->meta, pos, len) : NULL;

	if (!p)
		return pread_exact(img, buf, len, pos);
	memcpy(buf, p, len);
	return 0;
}

static sqv_err_t meta(struct sqv_image *img, struct sqv_meta **out);

/*
 * Where the metadata run of the table that starts at *own (the directory
 * table, for the preload) ends at the latest: the first other table,
 * table block or table index that starts after it or at the very same
 * offset, else bytes_used. The same offset ends it too, leaving it empty:
 * an empty root's image has no directory entries, and the directory
 * table's start is then the next table's, whose block the preload must
 * not read as one of directories. (What seal lists and the open checks is
 * lib/layout.c's walk; this only bounds the preload.)
 */
static uint64_t run_end(const struct sqv_image *img, const uint64_t *own)
{
	const struct table *tables[] = { &img->ids, &img->frags,
					 &img->xattr_ids };
	uint64_t pos = *own, end = img->info.bytes_used;

#define SQV_STOP_AT(v) \
	do { \
		if (&(v) != own && (v) >= pos && \
		    (v) < end) \
			end = (v); \
	} while (0)
	SQV_STOP_AT(img->inode_table);
	SQV_STOP_AT(img->dir_table);
	if (img->info.has_xattrs)
		SQV_STOP_AT(img->xattr_table);
	for (size_t i = 0; i < sizeof(img->stops) / sizeof(img->stops[0]); i++)
		SQV_STOP_AT(img->stops[i]);
	for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++)
		for (size_t i = 0; i < tables[t]->nblocks; i++)
			SQV_STOP_AT(tables[t]->blocks[i]);
#undef SQV_STOP_AT
	return end;
}

/* check_layout's walk: the image, and room for its reason. */
struct layout_check {
	struct sqv_image *img;
	char why[96];
};

/* The image's first bytes from head, the rest as sqv_digest_verify read
 * them. */
static sqv_err_t layout_read(void *ctx, void *buf, size_t len, uint64_t pos)
{
	struct sqv_image *img = ((struct layout_check *)ctx)->img;

	if (pos < img->head_len && len <= img->head_len - pos) {
		memcpy(buf, img->head + pos, len);
		return 0;
	}
	return static_read(img, buf, len, pos);
}

/*
 * Each metadata block the walk finds must be one of the table, of that
 * stored length. Not the export table's: nothing here reads it, and seal
 * before 142514e listed an empty root's export block as raw bytes
 * (tools-seal-empty), which verify_static has hashed all the same.
 * The superblock and the table indexes must be listed as raw bytes, which
 * verify_static hashed: listed as a data block, say, an index would be
 * read at open and never hashed.
 */
static sqv_err_t layout_listed(void *ctx, const struct sqv_layout_piece *p,
			       const char **why)
{
	struct layout_check *c = ctx;
	const char *w;

	if (p->kind == SQV_DIGEST_RAW) {
		if (sqv_digest_check_raw(c->img->digests, p->pos, p->len, &w) == 0)
			return 0;
		snprintf(c->why, sizeof(c->why), "%s %s",
			 p->table == SQV_LAYOUT_SUPERBLOCK ? "superblock" :
							     "table index", w);
		*why = c->why;
		return -SQV_ECORRUPT;
	}
	if (p->kind != SQV_DIGEST_META || p->table == SQV_LAYOUT_EXPORTS ||
	    sqv_digest_check(c->img->digests, p->pos, NULL, p->len, true,
			     &w) == 0)
		return 0;
	/* A phrase that names the thing, as the walk's own do. */
	snprintf(c->why, sizeof(c->why), "metadata block %s", w);
	*why = c->why;
	return -SQV_ECORRUPT;
}

/*
 * The digests check the blocks the table lists, but a table sound in
 * itself can still disagree with the image: list a directory block as raw
 * bytes, say. Every read of that block would then fail its lookup, the
 * index build would skip what it cannot read, and the mount would serve
 * an empty tree. So the table must list as metadata blocks, of their
 * stored length, the blocks seal lists: the one walk of lib/layout.h.
 * The bytes were hashed already: each block is only looked up. Call with
 * meta_lock held (the walk reads from the store's copy). *why lives in
 * c.
 */
static sqv_err_t check_layout(struct layout_check *c, uint64_t *bad,
			      const char **why)
{
	return sqv_layout_walk(&c->img->sb, layout_read, layout_listed, c, bad,
			       why);
}

/*
 * With a digest table, check every metadata block and every other stored
 * byte outside the data blocks (superblock, table indexes) once, at open:
 * the index is built from them, so damage there refuses the mount rather
 * than serving a wrong tree, also in blocks the build never reads. The
 * metadata range is read once, by the metadata store, and checked there;
 * the store then hashes no block again (meta.h). Data and fragment blocks
 * are checked when read (sqv_image_read_block). layout: the tables are
 * open, so check_layout can follow them too.
 */
static sqv_err_t verify_static(struct sqv_image *img, bool layout)
{
	struct layout_check c = { .img = img };
	const char *why = NULL;
	struct sqv_meta *m;
	uint64_t bad = 0;
	sqv_err_t err;

	if (!img->digests)
		return 0;
	pthread_mutex_lock(&img->meta_lock);
	err = meta(img, &m);
	if (err == 0)
		err = sqv_digest_verify(img->digests,
					1u << SQV_DIGEST_META |
						1u << SQV_DIGEST_RAW,
					static_read, img, &bad);
	if (err == 0)
		sqv_meta_set_digests(m, img->digests, true);
	if (err == 0 && layout)
		err = check_layout(&c, &bad, &why);
	pthread_mutex_unlock(&img->meta_lock);
	if (err == -SQV_ECORRUPT && why) {
		sqv_log(SQV_LOG_ERR,
			"%s: offset %llu: %s: the digest table "
			"does not match the image",
			img->name, (unsigned long long)bad, why);
	} else if (err == -SQV_ECORRUPT) {
		atomic_fetch_add_explicit(&img->corrupt_blocks, 1,
					  memory_order_relaxed);
		sqv_log(SQV_LOG_ERR,
			"%s: offset %llu: metadata does not match its digest",
			img->name, (unsigned long long)bad);
	} else if (err < 0) {
		sqv_log(SQV_LOG_ERR, "%s: cannot read the metadata", img->name);
	}
	return err;
}

/* Read a table's list of block offsets, stored at pos, for count entries
 * of each bytes. The list must lie inside the image. */
static sqv_err_t table_open(struct sqv_image *img, struct table *t,
			    uint64_t pos, uint64_t count, size_t each)
{
	uint64_t n = (count * each + SQUASHFS_METADATA_SIZE - 1) /
		     SQUASHFS_METADATA_SIZE;
	uint64_t used = img->info.bytes_used;

	t->count = count;
	t->each = each;
	if (n == 0)
		return 0;
	if (pos >= used || n > (used - pos) / sizeof(uint64_t))
		return -SQV_ECORRUPT;
	t->blocks = malloc((size_t)n * sizeof(uint64_t));
	if (!t->blocks)
		return -ENOMEM;
	SQV_TRY(pread_exact(img, t->blocks, (size_t)n * sizeof(uint64_t), pos));
	t->nblocks = (size_t)n;
	for (size_t i = 0; i < t->nblocks; i++) {
		t->blocks[i] = le64toh(t->blocks[i]);
		if (t->blocks[i] < img->meta_lo)
			img->meta_lo = t->blocks[i];
	}
	return 0;
}

/* The id, fragment and xattr id tables, whose block lists the superblock
 * points at. */
static sqv_err_t open_tables(struct sqv_image *img,
			     const struct squashfs_super_block *sb)
{
	img->meta_lo = img->inode_table < img->dir_table ? img->inode_table :
							  img->dir_table;
	for (size_t i = 0; i < sizeof(img->stops) / sizeof(img->stops[0]); i++)
		img->stops[i] = UINT64_MAX;
	/* The export table (mksquashfs writes it unless -no-exports) is not
	 * read, but its first block may follow the directory table. */
	uint64_t exports = le64toh(sb->lookup_table_start);
	uint64_t first;
	if (exports < img->info.bytes_used &&
	    img->info.bytes_used - exports >= sizeof(first)) {
		SQV_TRY(pread_exact(img, &first, sizeof(first), exports));
		img->stops[0] = exports;
		img->stops[1] = le64toh(first);
	}
	img->stops[2] = le64toh(sb->id_table_start);
	SQV_TRY(table_open(img, &img->ids, le64toh(sb->id_table_start),
			   le16toh(sb->no_ids), ID_SIZE));
	if (img->info.fragment_count > 0) {
		img->stops[3] = le64toh(sb->fragment_table_start);
		SQV_TRY(table_open(img, &img->frags,
				   le64toh(sb->fragment_table_start),
				   img->info.fragment_count, FRAG_SIZE));
	}
	if (img->info.has_xattrs) {
		struct squashfs_xattr_id_table xt;
		uint64_t pos = le64toh(sb->xattr_id_table_start);
		if (pos >= img->info.bytes_used ||
		    img->info.bytes_used - pos < sizeof(xt))
			return -SQV_ECORRUPT;
		SQV_TRY(pread_exact(img, &xt, sizeof(xt), pos));
		img->xattr_table = le64toh(xt.xattr_table_start);
		if (img->xattr_table >= img->info.bytes_used)
			return -SQV_ECORRUPT;
		if (img->xattr_table < img->meta_lo)
			img->meta_lo = img->xattr_table;
		img->stops[4] = pos;
		img->stops[5] = pos + sizeof(xt);
		SQV_TRY(table_open(img, &img->xattr_ids, pos + sizeof(xt),
				   le32toh(xt.xattr_ids), XATTR_ID_SIZE));
	}
	/* After every table's blocks are known: any of them may follow it. */
	img->dir_end = run_end(img, &img->dir_table);
	return 0;
}

/* The metadata store, made on first use; call with meta_lock held. */
static sqv_err_t meta(struct sqv_image *img, struct sqv_meta **out)
{
	if (!img->meta) {
		SQV_TRY(sqv_meta_new(img->fd, img->name, img->comp, img->meta_lo,
				     img->info.bytes_used, &img->io, &img->meta));
		/* Each block where it is read, until verify_static has
		 * checked the copy read at once: a store made after
		 * sqv_image_drop_metadata reads the file afresh. */
		sqv_meta_set_digests(img->meta, img->digests, false);
	}
	*out = img->meta;
	return 0;
}

sqv_err_t sqv_image_open(int fd, const char *name, struct sqv_image **out)
{
	struct squashfs_super_block sb;
	struct sqv_image *img;
	pthread_mutexattr_t attr;
	struct stat st;
	sqv_err_t err;

	img = calloc(1, sizeof(*img));
	if (!img || !(img->name = strdup(name))) {
		free(img);
		close(fd);
		return -ENOMEM;
	}
	img->fd = fd;
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&img->meta_lock, &attr);
	pthread_mutexattr_destroy(&attr);
	pthread_mutex_init(&img->report_lock, NULL);

	if (fstat(fd, &st) < 0) {
		err = -errno;
		goto fail;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		sqv_log(SQV_LOG_ERR, "%s: not a regular file", name);
		err = -ENOTSUP;
		goto fail;
	}
	img->file_size = (uint64_t)st.st_size;
	if (S_ISBLK(st.st_mode) &&
	    ioctl(fd, BLKGETSIZE64, &img->file_size) < 0) {
		/* st_size of a block device is 0: ask the device. */
		sqv_log(SQV_LOG_ERR, "%s: block device of unknown size (%s)",
			name, strerror(errno));
		err = -EIO;
		goto fail;
	}
	err = check_superblock(img, &sb);
	if (err < 0)
		goto fail;
	err = sqv_digest_load(fd, img->file_size, img->info.bytes_used, name,
			      &img->io, &img->digests);
	if (err < 0)
		goto fail;
	err = open_tables(img, &sb);
	if (err == -SQV_ECORRUPT && img->digests) {
		/* Damage that the digest table names better, if it does. */
		if (verify_static(img, false) < 0)
			goto fail;
	}
	if (err == -SQV_ECORRUPT)
		sqv_log(SQV_LOG_ERR, "%s: damaged tables (id, fragment or xattr)",
			name);
	if (err == -EIO)
		sqv_log(SQV_LOG_ERR, "%s: cannot read the metadata tables (I/O error)",
			name);
	if (err < 0)
		goto fail;
	/* After the tables: they say where the metadata range starts. */
	err = verify_static(img, true);
	if (err < 0)
		goto fail;

	struct sqv_image_inode root;
	err = sqv_image_root(img, &root);
	if (err == -EIO || err == -ENOMEM)
		sqv_log(SQV_LOG_ERR, "%s: cannot read the metadata (%s)", name,
			err == -EIO ? "I/O error" : "out of memory");
	if (err == -ENOMEM || err == -EIO)
		goto fail;
	if (err < 0 || !S_ISDIR(root.mode)) {
		/* One line: the table's reason if it has one, else this. */
		if (sqv_image_metadata_unverified(img) == 0)
			sqv_log(SQV_LOG_ERR, "%s: damaged root directory", name);
		err = -SQV_ECORRUPT;
		goto fail;
	}
	*out = img;
	return 0;

fail:
	sqv_image_free(img);
	return err;
}

void sqv_image_free(struct sqv_image *img)
{
	if (!img)
		return;
	sqv_meta_free(img->meta);
	close(img->fd);
	sqv_digest_free(img->digests);
	pthread_mutex_destroy(&img->meta_lock);
	pthread_mutex_destroy(&img->report_lock);
	free(img->ids.blocks);
	free(img->id_value);
	free(img->id_known);
	free(img->frags.blocks);
	free(img->xattr_ids.blocks);
	free(img->name);
	free(img);
}

sqv_err_t sqv_image_preload_metadata(struct sqv_image *img)
{
	struct sqv_meta *m;
	sqv_err_t err;

	pthread_mutex_lock(&img->meta_lock);
	err = meta(img, &m);
	if (err == 0 && img->inode_table < img->dir_table) {
		/* mksquashfs's order: inodes, then directories, then the
		 * other tables; anything else is left to first use. */
		uint64_t starts[2] = { img->inode_table, img->dir_table };
		uint64_t ends[2] = { img->dir_table, img->dir_end };
		err = sqv_meta_preload(m, starts, ends, 2);
	}
	pthread_mutex_unlock(&img->meta_lock);
	return err;
}

void sqv_image_drop_metadata(struct sqv_image *img)
{
	pthread_mutex_lock(&img->meta_lock);
	if (img->meta) {
		img->meta_blocks_dropped += sqv_meta_blocks(img->meta);
		sqv_meta_free(img->meta);
		img->meta = NULL;
	}
	pthread_mutex_unlock(&img->meta_lock);
}

sqv_err_t sqv_image_metadata_unverified(struct sqv_image *img)
{
	const char *why = NULL;
	uint64_t pos = 0;
	bool bad, said = false;

	pthread_mutex_lock(&img->meta_lock);
	bad = img->meta && sqv_meta_unverified(img->meta, &pos, &why);
	if (bad) {
		said = img->unverified_said;
		img->unverified_said = true;
	}
	pthread_mutex_unlock(&img->meta_lock);
	if (!bad)
		return 0;
	if (!said)
		sqv_log(SQV_LOG_ERR,
			"%s: offset %llu: a metadata reference leads to a block "
			"the digest table does not vouch for (%s)",
			img->name, (unsigned long long)pos, why);
	return -SQV_ECORRUPT;
}

const struct sqv_digests *sqv_image_digests(const struct sqv_image *img)
{
	return img->digests;
}

const char *sqv_image_name(const struct sqv_image *img)
{
	return img->name;
}

const struct sqv_image_info *sqv_image_info(const struct sqv_image *img)
{
	return &img->info;
}

/* Entry idx of table t into out (t->each bytes). An entry never spans two
 * blocks, so its last byte must lie in its block too. */
static sqv_err_t table_get(struct sqv_image *img, const struct table *t,
			   uint64_t idx, void *out)
{
	struct sqv_meta *m;
	struct sqv_meta_cursor cur;

	if (idx >= t->count)
		return -SQV_ECORRUPT;
	uint64_t at = idx * t->each;
	uint64_t b = at / SQUASHFS_METADATA_SIZE;
	uint64_t off = at % SQUASHFS_METADATA_SIZE;
	if (b >= t->nblocks)
		return -SQV_ECORRUPT;
	SQV_TRY(meta(img, &m));
	SQV_TRY(sqv_meta_seek(m, t->blocks[b], off + t->each - 1, &cur));
	SQV_TRY(sqv_meta_seek(m, t->blocks[b], off, &cur));
	return sqv_meta_read(m, &cur, out, t->each);
}

static sqv_err_t get_id(struct sqv_image *img, uint16_t idx, uint32_t *id)
{
	uint32_t v;

	if (idx >= img->ids.count)
		return -SQV_ECORRUPT;
	if (!img->id_value) {
		img->id_value = calloc(img->ids.count, sizeof(*img->id_value));
		img->id_known = calloc(img->ids.count, 1);
		if (!img->id_value || !img->id_known) {
			free(img->id_value);
			free(img->id_known);
			img->id_value = NULL;
			img->id_known = NULL;
			return -ENOMEM;
		}
	}
	if (img->id_known[idx] == 0) {
		sqv_err_t err = table_get(img, &img->ids, idx, &v);
		if (err == -ENOMEM || err == -EIO)
			return err;
		img->id_known[idx] = err < 0 ? 2 : 1;
		if (err == 0)
			img->id_value[idx] = le32toh(v);
	}
	if (img->id_known[idx] != 1)
		return -SQV_ECORRUPT;
	*id = img->id_value[idx];
	return 0;
}

static uint16_t get16(const unsigned char *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)get16(p) | (uint32_t)get16(p + 2) << 16;
}

static uint64_t get64(const unsigned char *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* Bytes after the common part, by type (1..14), and the offsets there of
 * nlink and xattr (0: none). */
static const struct {
	uint8_t size, nlink, xattr;
} inode_shape[15] = {
	[SQUASHFS_DIR_TYPE] = { 16, 4, 0 },
	[SQUASHFS_REG_TYPE] = { 16, 0, 0 },
	[SQUASHFS_SYMLINK_TYPE] = { 8, 0, 0 },
	[SQUASHFS_BLKDEV_TYPE] = { 8, 0, 0 },
	[SQUASHFS_CHRDEV_TYPE] = { 8, 0, 0 },
	[SQUASHFS_FIFO_TYPE] = { 4, 0, 0 },
	[SQUASHFS_SOCKET_TYPE] = { 4, 0, 0 },
	[SQUASHFS_LDIR_TYPE] = { 24, 0, 20 },
	[SQUASHFS_LREG_TYPE] = { 40, 24, 36 },
	[SQUASHFS_LSYMLINK_TYPE] = { 8, 0, 0 },
	[SQUASHFS_LBLKDEV_TYPE] = { 12, 0, 8 },
	[SQUASHFS_LCHRDEV_TYPE] = { 12, 0, 8 },
	[SQUASHFS_LFIFO_TYPE] = { 8, 0, 4 },
	[SQUASHFS_LSOCKET_TYPE] = { 8, 0, 4 },
};

static const uint32_t type_mode[15] = {
	[1] = S_IFDIR, [2] = S_IFREG,  [3] = S_IFLNK,  [4] = S_IFBLK,
	[5] = S_IFCHR, [6] = S_IFIFO,  [7] = S_IFSOCK, [8] = S_IFDIR,
	[9] = S_IFREG, [10] = S_IFLNK, [11] = S_IFBLK, [12] = S_IFCHR,
	[13] = S_IFIFO, [14] = S_IFSOCK,
};

/* The fields that only some types have, from the type-specific part x. */
static sqv_err_t decode_inode(unsigned type, const unsigned char *x,
			      struct raw_inode *ri)
{
	struct sqv_image_inode *r = &ri->pub;
	uint32_t rdev;

	switch (type) {
	case SQUASHFS_DIR_TYPE:
		ri->start_block = get32(x);
		r->size = get16(x + 8);
		ri->dir_offset = get16(x + 10);
		break;
	case SQUASHFS_LDIR_TYPE:
		r->nlink = get32(x);
		r->size = get32(x + 4);
		ri->start_block = get32(x + 8);
		ri->dir_offset = get16(x + 18);
		break;
	case SQUASHFS_REG_TYPE:
		ri->start_block = get32(x);
		ri->frag_idx = get32(x + 4);
		ri->frag_off = get32(x + 8);
		r->size = get32(x + 12);
		break;
	case SQUASHFS_LREG_TYPE:
		ri->start_block = get64(x);
		r->size = get64(x + 8);
		ri->frag_idx = get32(x + 28);
		ri->frag_off = get32(x + 32);
		break;
	case SQUASHFS_SYMLINK_TYPE:
	case SQUASHFS_LSYMLINK_TYPE:
		r->nlink = get32(x);
		r->size = get32(x + 4);
		if (r->size == 0 || r->size > 4095)
			return -SQV_ECORRUPT;
		break;
	case SQUASHFS_BLKDEV_TYPE:
	case SQUASHFS_CHRDEV_TYPE:
	case SQUASHFS_LBLKDEV_TYPE:
	case SQUASHFS_LCHRDEV_TYPE:
		r->nlink = get32(x);
		/* The kernel's old encoding: 12-bit major split the minor. */
		rdev = get32(x + 4);
		r->rdev = (uint32_t)makedev((rdev >> 8) & 0xfff,
					    (rdev & 0xff) | ((rdev >> 12) & 0xfff00));
		break;
	default: /* fifo, socket */
		r->nlink = get32(x);
		break;
	}
	return 0;
}

/* Read and decode the inode at ref; call with meta_lock held. */
static sqv_err_t get_inode(struct sqv_image *img, uint64_t ref,
			   struct raw_inode *out)
{
	unsigned char base[16], x[40];
	struct raw_inode ri = { 0 };
	struct sqv_image_inode *r = &ri.pub;
	struct sqv_meta *m;
	struct sqv_meta_cursor cur;

	if (img->last_ref1 == ref + 1) {
		*out = img->last;
		return 0;
	}
	SQV_TRY(meta(img, &m));
	SQV_TRY(sqv_meta_seek(m, img->inode_table, ref, &cur));
	SQV_TRY(sqv_meta_read(m, &cur, base, sizeof(base)));
	unsigned type = get16(base);
	if (type == 0 || type > 14)
		return -SQV_ECORRUPT;
	SQV_TRY(sqv_meta_read(m, &cur, x, inode_shape[type].size));
	ri.next = cur;
	r->ref = ref;
	r->mode = (get16(base + 2) & 07777) | type_mode[type];
	SQV_TRY(get_id(img, get16(base + 4), &r->uid));
	SQV_TRY(get_id(img, get16(base + 6), &r->gid));
	r->mtime = get32(base + 8);
	r->number = get32(base + 12);
	r->nlink = 1;
	r->xattr = SQV_IMAGE_NO_XATTR;
	ri.frag_idx = SQUASHFS_INVALID_FRAG;
	SQV_TRY(decode_inode(type, x, &ri));
	if (inode_shape[type].nlink)
		r->nlink = get32(x + inode_shape[type].nlink);
	if (inode_shape[type].xattr)
		r->xattr = get32(x + inode_shape[type].xattr);
	if (type == SQUASHFS_LSYMLINK_TYPE) {
		/* Its xattr index follows the target. */
		uint32_t xattr;
		SQV_TRY(sqv_meta_read(m, &cur, NULL, r->size));
		SQV_TRY(sqv_meta_read(m, &cur, &xattr, sizeof(xattr)));
		r->xattr = le32toh(xattr);
	}
	if (r->nlink == 0)
		r->nlink = 1;
	img->last = ri;
	img->last_ref1 = ref + 1;
	*out = ri;
	return 0;
}

sqv_err_t sqv_image_inode(struct sqv_image *img, uint64_t ref,
			  struct sqv_image_inode *out)
{
	struct raw_inode ri;
	sqv_err_t err;

	pthread_mutex_lock(&img->meta_lock);
	err = get_inode(img, ref, &ri);
	pthread_mutex_unlock(&img->meta_lock);
	if (err == 0)
		*out = ri.pub;
	return err;
}

sqv_err_t sqv_image_root(struct sqv_image *img, struct sqv_image_inode *out)
{
	return sqv_image_inode(img, img->root_inode, out);
}

/*
 * A directory listing: its stored size is 3 more than its bytes. It is a
 * run of headers (count - 1, inode block, base inode number), each followed
 * by count entries (inode offset, inode number delta, type, name length -
 * 1, name). It ends at a header boundary once its bytes are read.
 */
static sqv_err_t walk_dir(struct sqv_image *img, const struct raw_inode *dir,
			  sqv_image_dirent_fn fn, void *ctx)
{
	struct sqv_meta *m;
	struct sqv_meta_cursor cur;
	uint64_t total = dir->pub.size > 3 ? dir->pub.size - 3 : 0;
	uint64_t done = 0;
	char name[SQUASHFS_NAME_LEN + 1];

	if (total == 0)
		return 0;
	SQV_TRY(meta(img, &m));
	SQV_TRY(sqv_meta_seek(m, img->dir_table,
			      dir->start_block << 16 | dir->dir_offset, &cur));
	while (done < total) {
		unsigned char h[12];
		SQV_TRY(sqv_meta_read(m, &cur, h, sizeof(h)));
		uint32_t count = get32(h) + 1;
		uint64_t block = get32(h + 4);
		done += sizeof(h);
		/* mksquashfs and the kernel keep at most 256 per header. */
		if (count == 0 || count > 256)
			return -SQV_ECORRUPT;
		for (uint32_t i = 0; i < count; i++) {
			unsigned char e[8];
			SQV_TRY(sqv_meta_read(m, &cur, e, sizeof(e)));
			size_t len = (size_t)get16(e + 6) + 1;
			if (len > SQUASHFS_NAME_LEN)
				return -SQV_ECORRUPT;
			SQV_TRY(sqv_meta_read(m, &cur, name, len));
			name[len] = '\0';
			done += sizeof(e) + len;
			int rc = fn(ctx, name, len, block << 16 | get16(e));
			if (rc != 0)
				return rc;
		}
	}
	return 0;
}

sqv_err_t sqv_image_readdir(struct sqv_image *img,
			    const struct sqv_image_inode *dir,
			    sqv_image_dirent_fn fn, void *ctx)
{
	struct raw_inode ri;
	sqv_err_t err;

	if (!S_ISDIR(dir->mode))
		return -ENOTDIR;
	pthread_mutex_lock(&img->meta_lock);
	err = get_inode(img, dir->ref, &ri);
	if (err == 0)
		err = walk_dir(img, &ri, fn, ctx);
	pthread_mutex_unlock(&img->meta_lock);
	return err;
}

sqv_err_t sqv_image_readlink(struct sqv_image *img,
			     const struct sqv_image_inode *link, char *buf,
			     size_t bufsize)
{
	struct raw_inode ri;
	struct sqv_meta *m;
	sqv_err_t err;

	if (!S_ISLNK(link->mode))
		return -EINVAL;
	if (bufsize < link->size + 1)
		return -ERANGE;
	pthread_mutex_lock(&img->meta_lock);
	err = get_inode(img, link->ref, &ri);
	if (err == 0 && ri.pub.size != link->size)
		err = -SQV_ECORRUPT;
	if (err == 0)
		err = meta(img, &m);
	if (err == 0)
		err = sqv_meta_read(m, &ri.next, buf, ri.pub.size);
	pthread_mutex_unlock(&img->meta_lock);
	if (err == 0)
		buf[link->size] = '\0';
	return err;
}

/*
 * Full xattr names from the stored prefix type. (libsquashfuse 0.1.105
 * maps the trusted and security prefixes the wrong way round.)
 */
static const char *xattr_prefix(uint16_t type)
{
	switch (type & SQUASHFS_XATTR_PREFIX_MASK) {
	case SQUASHFS_XATTR_USER:
		return "user.";
	case SQUASHFS_XATTR_TRUSTED:
		return "trusted.";
	case SQUASHFS_XATTR_SECURITY:
		return "security.";
	default:
		return NULL;
	}
}

/* More attribute bytes than this on one inode is damage, not data. */
#define XATTR_MAX_TOTAL (UINT32_C(1) << 20)
#define XATTR_VALUE_MAX 65536
#define XATTR_OOL 0x100

/* One attribute at cur: its full name into name, its value (read where it
 * lies, or where an out-of-line reference points) into a new buffer. */
static sqv_err_t read_xattr(struct sqv_image *img, struct sqv_meta *m,
			    struct sqv_meta_cursor *cur, char *name,
			    void **value, uint32_t *vsize)
{
	struct squashfs_xattr_entry e;
	uint32_t vs;

	SQV_TRY(sqv_meta_read(m, cur, &e, sizeof(e)));
	uint16_t type = le16toh(e.type);
	size_t nlen = le16toh(e.size);
	const char *prefix = xattr_prefix(type);
	if (!prefix || nlen == 0 || nlen > SQUASHFS_NAME_LEN)
		return -SQV_ECORRUPT;
	size_t plen = strlen(prefix);
	memcpy(name, prefix, plen);
	SQV_TRY(sqv_meta_read(m, cur, name + plen, nlen));
	name[plen + nlen] = '\0';
	if (memchr(name, '\0', plen + nlen))
		return -SQV_ECORRUPT;
	SQV_TRY(sqv_meta_read(m, cur, &vs, sizeof(vs)));
	vs = le32toh(vs);
	struct sqv_meta_cursor vcur = *cur;
	if (type & XATTR_OOL) {
		/* The value is elsewhere: a reference to it. */
		uint64_t vref;
		if (vs != sizeof(vref))
			return -SQV_ECORRUPT;
		SQV_TRY(sqv_meta_read(m, cur, &vref, sizeof(vref)));
		SQV_TRY(sqv_meta_seek(m, img->xattr_table, le64toh(vref), &vcur));
		SQV_TRY(sqv_meta_read(m, &vcur, &vs, sizeof(vs)));
		vs = le32toh(vs);
	}
	if (vs > XATTR_VALUE_MAX)
		return -SQV_ECORRUPT;
	void *v = malloc(vs ? vs : 1);
	if (!v)
		return -ENOMEM;
	sqv_err_t err = sqv_meta_read(m, &vcur, v, vs);
	if (err < 0) {
		free(v);
		return err;
	}
	if (!(type & XATTR_OOL))
		*cur = vcur;
	*value = v;
	*vsize = vs;
	return 0;
}

sqv_err_t sqv_image_xattrs(struct sqv_image *img,
			   const struct sqv_image_inode *ino,
			   sqv_image_xattr_fn fn, void *ctx)
{
	struct squashfs_xattr_id xid;
	struct raw_inode ri;
	struct sqv_meta *m;
	struct sqv_meta_cursor cur;
	char name[16 + SQUASHFS_NAME_LEN + 1];
	uint64_t total = 0;
	sqv_err_t err;

	if (ino->xattr == SQV_IMAGE_NO_XATTR || !img->info.has_xattrs)
		return 0;
	pthread_mutex_lock(&img->meta_lock);
	err = get_inode(img, ino->ref, &ri);
	if (err < 0 || ri.pub.xattr == SQUASHFS_INVALID_XATTR)
		goto out;
	err = table_get(img, &img->xattr_ids, ri.pub.xattr, &xid);
	if (err == 0)
		err = meta(img, &m);
	if (err == 0)
		err = sqv_meta_seek(m, img->xattr_table, le64toh(xid.xattr), &cur);
	for (uint32_t i = 0; err == 0 && i < le32toh(xid.count); i++) {
		void *value;
		uint32_t vsize;
		err = read_xattr(img, m, &cur, name, &value, &vsize);
		if (err < 0)
			break;
		total += strlen(name) + vsize;
		if (total > XATTR_MAX_TOTAL)
			err = -SQV_ECORRUPT;
		else
			err = fn(ctx, name, value, vsize);
		free(value);
	}
out:
	pthread_mutex_unlock(&img->meta_lock);
	return err;
}

/* More blocks than this in one file is damage, not data (8 TiB at 128 KiB). */
#define MAX_FILE_BLOCKS (UINT32_C(1) << 26)
/* Size words in one metadata block: a file's list grows by this much. */
#define WORDS_PER_BLOCK (SQUASHFS_METADATA_SIZE / sizeof(uint32_t))

/* Where the tail of a file sits in a fragment; call with meta_lock held. */
static sqv_err_t get_fragment(struct sqv_image *img, const struct raw_inode *ri,
			      struct sqv_file_layout *l)
{
	struct squashfs_fragment_entry frag;
	uint32_t bs = img->info.block_size;
	uint32_t tail = (uint32_t)(l->size % bs);

	if (tail == 0)
		return -SQV_ECORRUPT;
	SQV_TRY(table_get(img, &img->frags, ri->frag_idx, &frag));
	l->frag_pos = le64toh(frag.start_block);
	l->frag_word = le32toh(frag.size);
	l->frag_off = ri->frag_off;
	if (l->frag_off >= bs || tail > bs - l->frag_off ||
	    sqv_image_word_size(l->frag_word) > bs ||
	    l->frag_pos > img->info.bytes_used ||
	    sqv_image_word_size(l->frag_word) > img->info.bytes_used - l->frag_pos)
		return -SQV_ECORRUPT;
	return 0;
}

/*
 * The next n words of a file's block list, which follows its inode in the
 * inode table, at cur; *pos is the image offset of the next block. A list
 * that runs out of the inode table is damage.
 */
static sqv_err_t get_blocks(struct sqv_image *img, struct sqv_meta_cursor *cur,
			    uint64_t *pos, uint32_t n, uint32_t *w, uint64_t *p)
{
	struct sqv_meta *m;
	uint64_t used = img->info.bytes_used;

	SQV_TRY(meta(img, &m));
	for (uint32_t i = 0; i < n; i++) {
		uint32_t word;
		if (cur->block >= img->dir_table &&
		    img->dir_table > img->inode_table)
			return -SQV_ECORRUPT;
		SQV_TRY(sqv_meta_read(m, cur, &word, sizeof(word)));
		word = le32toh(word);
		uint32_t size = sqv_image_word_size(word);
		if (size > img->info.block_size || *pos > used ||
		    size > used - *pos)
			return -SQV_ECORRUPT;
		w[i] = word;
		p[i] = *pos;
		*pos += size;
	}
	return 0;
}

sqv_err_t sqv_image_file_layout(struct sqv_image *img,
				const struct sqv_image_inode *file,
				struct sqv_file_layout *out, uint32_t **words,
				uint64_t **positions)
{
	struct sqv_file_layout l = { 0 };
	uint32_t *w = NULL;
	uint64_t *p = NULL;
	struct raw_inode ri;
	uint32_t bs = img->info.block_size;
	sqv_err_t err;

	if (!S_ISREG(file->mode))
		return -EINVAL;
	pthread_mutex_lock(&img->meta_lock);
	err = get_inode(img, file->ref, &ri);
	if (err < 0)
		goto out;
	l.size = ri.pub.size;
	l.has_fragment = ri.frag_idx != SQUASHFS_INVALID_FRAG;
	uint64_t nblocks = l.size / bs;
	if (!l.has_fragment && l.size % bs)
		nblocks++;
	err = -SQV_ECORRUPT;
	if (nblocks > MAX_FILE_BLOCKS)
		goto out;
	l.nblocks = (uint32_t)nblocks;
	if (l.has_fragment && (err = get_fragment(img, &ri, &l)) < 0)
		goto out;
	err = 0;
	/* The arrays grow a metadata block's worth of words at a time, as
	 * words are read: a hostile size cannot size an allocation. */
	uint64_t pos = ri.start_block;
	for (uint32_t done = 0, cap = 0; done < l.nblocks;) {
		uint32_t n = l.nblocks - done < WORDS_PER_BLOCK ?
				     l.nblocks - done : (uint32_t)WORDS_PER_BLOCK;
		if (done + n > cap) {
			cap = cap * 2 > done + n ? cap * 2 : done + n;
			cap = cap < l.nblocks ? cap : l.nblocks;
			uint32_t *nw = realloc(w, cap * sizeof(*w));
			if (nw)
				w = nw;
			uint64_t *np = realloc(p, cap * sizeof(*p));
			if (np)
				p = np;
			if (!nw || !np) {
				err = -ENOMEM;
				goto out;
			}
		}
		err = get_blocks(img, &ri.next, &pos, n, w + done, p + done);
		if (err < 0)
			goto out;
		done += n;
	}
	*out = l;
	*words = w;
	*positions = p;
	w = NULL;
	p = NULL;
out:
	pthread_mutex_unlock(&img->meta_lock);
	free(w);
	free(p);
	return err;
}

/*
 * Per-thread state of the data path, made on a thread's first block and
 * freed when the thread ends: decompression contexts (decomp.h) and a
 * buffer for the stored bytes, so that reading a block allocates nothing.
 */
struct thread_io {
	struct sqv_decomp *decomp;
	unsigned char in[SQUASHFS_FILE_MAX_SIZE];
};

static pthread_key_t thread_io_key;
static pthread_once_t thread_io_once = PTHREAD_ONCE_INIT;

static void thread_io_free(void *p)
{
	struct thread_io *t = p;
	sqv_decomp_free(t->decomp);
	free(t);
}

static void thread_io_key_create(void)
{
	(void)pthread_key_create(&thread_io_key, thread_io_free);
}

static struct thread_io *thread_io(void)
{
	pthread_once(&thread_io_once, thread_io_key_create);
	struct thread_io *t = pthread_getspecific(thread_io_key);
	if (t)
		return t;
	/* malloc, not calloc: only the bytes a block needs are touched. */
	t = malloc(sizeof(*t));
	if (!t)
		return NULL;
	t->decomp = sqv_decomp_new();
	if (!t->decomp || pthread_setspecific(thread_io_key, t) != 0) {
		sqv_decomp_free(t->decomp);
		free(t);
		return NULL;
	}
	return t;
}

/* A stored block against its digest, before anything trusts its bytes. */
static sqv_err_t check_digest(struct sqv_image *img, uint64_t pos,
			      const void *buf, size_t len)
{
	const char *why;

	if (!img->digests ||
	    sqv_digest_check(img->digests, pos, buf, len, false, &why) == 0)
		return 0;
	report_damage(img, pos, why);
	return -SQV_ECORRUPT;
}

sqv_err_t sqv_image_read_block(struct sqv_image *img, uint64_t pos,
			       uint32_t word, void *out, size_t *len)
{
	uint32_t size = sqv_image_word_size(word);
	bool compressed = !(word & SQUASHFS_COMPRESSED_BIT_BLOCK);
	sqv_err_t err;

	if (size == 0 || size > img->info.block_size ||
	    pos + size > img->info.bytes_used) {
		report_damage(img, pos, "block size or offset out of range");
		return -SQV_ECORRUPT;
	}
	if (!compressed) {
		err = pread_exact(img, out, size, pos);
		if (err < 0) {
			report_damage(img, pos, "read of the image failed");
			return err;
		}
		err = check_digest(img, pos, out, size);
		if (err < 0)
			return err;
		*len = size;
		return 0;
	}

	struct thread_io *t = thread_io();
	if (!t)
		return -ENOMEM;
	err = pread_exact(img, t->in, size, pos);
	if (err < 0) {
		report_damage(img, pos, "read of the image failed");
		return err;
	}
	return sqv_image_decode_block(img, pos, word, t->in, out, len);
}

sqv_err_t sqv_image_decode_block(struct sqv_image *img, uint64_t pos,
				 uint32_t word, const void *src, void *out,
				 size_t *len)
{
	uint32_t size = sqv_image_word_size(word);
	size_t outsize = img->info.block_size;
	struct thread_io *t;
	sqv_err_t err;

	if (size == 0 || size > img->info.block_size) {
		report_damage(img, pos, "block size or offset out of range");
		return -SQV_ECORRUPT;
	}
	SQV_TRY(check_digest(img, pos, src, size));
	if (word & SQUASHFS_COMPRESSED_BIT_BLOCK) {
		memcpy(out, src, size);
		*len = size;
		return 0;
	}
	if (!(t = thread_io()))
		return -ENOMEM;
	err = sqv_decomp_run(t->decomp, img->comp, src, size, out, &outsize);
	if (err == -SQV_ECORRUPT)
		report_damage(img, pos, "block does not decompress");
	if (err < 0)
		return err;
	atomic_fetch_add_explicit(&img->decompressed_bytes, outsize,
				  memory_order_relaxed);
	*len = outsize;
	return 0;
}

sqv_err_t sqv_image_pread(struct sqv_image *img, void *buf, size_t size,
			  uint64_t pos)
{
	if (pos > img->info.bytes_used || size > img->info.bytes_used - pos)
		return -SQV_ECORRUPT;
	return pread_exact(img, buf, size, pos);
}

sqv_err_t sqv_image_check_stored(const struct sqv_image *img, uint32_t word,
				 const void *src)
{
	uint32_t size = sqv_image_word_size(word);

	if (size == 0 || size > img->info.block_size)
		return -SQV_ECORRUPT;
	if (word & SQUASHFS_COMPRESSED_BIT_BLOCK)
		return 0;
	return sqv_decomp_check(img->comp, src, size, img->info.block_size);
}

void sqv_image_io(const struct sqv_image *img, struct sqv_image_io *out)
{
	struct sqv_image *m = (struct sqv_image *)img;

	out->backing_reads = atomic_load(&m->io.reads);
	out->backing_bytes = atomic_load(&m->io.bytes);
	out->decompressed_bytes = atomic_load(&m->decompressed_bytes);
	out->corrupt_blocks = atomic_load(&m->corrupt_blocks);
	pthread_mutex_lock(&m->meta_lock);
	out->metadata_blocks = m->meta_blocks_dropped +
			       (m->meta ? sqv_meta_blocks(m->meta) : 0);
	pthread_mutex_unlock(&m->meta_lock);
}
