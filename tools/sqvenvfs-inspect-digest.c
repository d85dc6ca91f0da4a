/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * sqvenvfs-inspect seal | digest: the block digest table (lib/digest.h,
 * docs/digests.md) from the tools' side.
 *
 * seal lists every stored block of an image (data and fragment blocks from
 * its files' block lists, metadata blocks by walking each table's 2-byte
 * headers) and every other stored byte (the superblock, the tables'
 * indexes, anything in between) so that the entries cover the image from
 * byte 0 to bytes_used without a gap, digests each, and appends the table.
 * digest prints one XXH3-128 of the image proper (bytes 0 to bytes_used),
 * the same with or without a table.
 */
#include "sqvenvfs-inspect-digest.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "digest.h"
#include "image.h"
#include "index.h"
#include "io.h"
#include "layout.h"
#include "log.h"
#include "sqvenvfs-inspect-held.h"
#include "superblock.h"

#define PROG "sqvenvfs-inspect"
#define RAW_PIECE ((uint32_t)1 << 20)

struct list {
	struct sqv_digest_entry *e;
	size_t n, cap;
};

static int fail(const char *path, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int fail(const char *path, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, PROG ": %s: ", path);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

static int read_at(int fd, void *buf, size_t len, uint64_t pos)
{
	return sqv_pread_all(fd, buf, len, pos) < 0 ? -1 : 0;
}

/* The superblock, checked as the daemon checks it; 1 with one line. */
static int read_sb(const char *path, int fd, struct sqv_superblock *sb)
{
	unsigned char b[SQV_SUPERBLOCK_SIZE];
	struct stat st;
	char why[256];

	if (fstat(fd, &st) < 0 || read_at(fd, b, sizeof(b), 0) < 0)
		return fail(path, "not a squashfs image (too short)");
	if (sqv_superblock_check(b, sizeof(b), (uint64_t)st.st_size, sb, why,
				 sizeof(why)) < 0)
		return fail(path, "%s", why);
	return 0;
}

static int add(struct list *l, uint64_t pos, uint64_t len, uint16_t kind)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 1024;
		struct sqv_digest_entry *e = realloc(l->e, cap * sizeof(*e));
		if (!e)
			return -1;
		l->e = e;
		l->cap = cap;
	}
	l->e[l->n++] = (struct sqv_digest_entry){
		.pos = pos, .len = (uint32_t)len, .kind = kind };
	return 0;
}

/* The tree of the image at fd, read as lib/ reads it; 1 (said) when the
 * image cannot be read whole. lib/ skips a damaged entry with a warning
 * and goes on, as a mount of an unsealed image does; seal must not vouch
 * for such an image (the mount would refuse it, its digests being right
 * about blocks the tree cannot reach), so any message lib/ gives while
 * the tree is read refuses it, in one line. */
static int read_tree(const char *path, int fd, struct sqv_image **img,
		     struct sqv_index **idx)
{
	int dfd = dup(fd);
	int rc = 0;

	sqv_hold_begin();
	if (dfd < 0 || sqv_image_open(dfd, path, img) < 0) {
		*img = NULL;
		rc = 1;
	} else if (sqv_index_build(img, 1, SQV_INDEX_RAW, idx) < 0) {
		rc = 1;
	} else if (sqv_held.count) {
		sqv_index_free(*idx);
		rc = 1;
	}
	sqv_hold_end();
	if (rc) {
		sqv_image_free(*img);
		if (sqv_held.count)
			fprintf(stderr, PROG ": %s%s\n", sqv_held.msg[0],
				sqv_held.count > 1 ? " (and more): not sealed" :
						     ": not sealed");
		else
			fail(path, "cannot open it as a squashfs image");
	}
	return rc;
}

/* Data and fragment blocks, from every regular file's layout. */
static int add_file_blocks(const char *path, int fd, struct list *l)
{
	struct sqv_image *img;
	struct sqv_index *idx;

	if (read_tree(path, fd, &img, &idx) != 0)
		return 1;
	int rc = 0;
	size_t n = sqv_index_inode_count(idx);
	for (size_t i = 0; i < n && rc == 0; i++) {
		struct sqv_index_file f;
		if (!S_ISREG(sqv_index_mode(idx, (sqv_ino_t)i)) ||
		    sqv_index_file(idx, (sqv_ino_t)i, &f) < 0)
			continue;
		for (uint32_t b = 0; b < f.layout.nblocks && rc == 0; b++) {
			uint32_t size = sqv_image_word_size(f.words[b]);
			if (size && add(l, f.positions[b], size, SQV_DIGEST_DATA) < 0)
				rc = fail(path, "out of memory");
		}
		if (rc == 0 && f.layout.has_fragment &&
		    add(l, f.layout.frag_pos,
			sqv_image_word_size(f.layout.frag_word),
			SQV_DIGEST_FRAGMENT) < 0)
			rc = fail(path, "out of memory");
	}
	sqv_index_free(idx);
	sqv_image_free(img);
	return rc;
}

static int cmp_pos(const void *a, const void *b)
{
	const struct sqv_digest_entry *x = a, *y = b;
	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

struct meta_walk {
	int fd;
	struct list *l;
};

static sqv_err_t walk_read(void *ctx, void *buf, size_t len, uint64_t pos)
{
	return read_at(((struct meta_walk *)ctx)->fd, buf, len, pos) < 0 ? -EIO : 0;
}

static sqv_err_t walk_add(void *ctx, const struct sqv_layout_piece *p,
			  const char **why)
{
	if (add(((struct meta_walk *)ctx)->l, p->pos, p->len, p->kind) < 0) {
		*why = "out of memory";
		return -ENOMEM;
	}
	return 0;
}

/* Metadata blocks and table indexes: the walk the daemon's open checks
 * the table against (lib/layout.h). */
static int add_metadata(const char *path, int fd, const struct sqv_superblock *sb,
			struct list *l)
{
	struct meta_walk w = { .fd = fd, .l = l };
	uint64_t bad;
	const char *why;

	if (sqv_layout_walk(sb, walk_read, walk_add, &w, &bad, &why) < 0)
		return fail(path, "offset %" PRIu64 ": %s", bad, why);
	return 0;
}

/* Sort, drop the duplicates (shared blocks), refuse overlaps, and cover
 * any gap with raw entries, so that every byte up to bytes_used is in
 * exactly one entry. */
static int normalise(const char *path, struct list *l, uint64_t bytes_used,
		     struct list *out)
{
	uint64_t at = 0;

	qsort(l->e, l->n, sizeof(*l->e), cmp_pos);
	for (size_t i = 0; i < l->n; i++) {
		const struct sqv_digest_entry *e = &l->e[i];
		if (i && e->pos == l->e[i - 1].pos && e->len == l->e[i - 1].len &&
		    e->kind == l->e[i - 1].kind)
			continue;
		if (e->pos < at)
			return fail(path, "stored blocks overlap at offset %" PRIu64
				    " (a damaged image?)", e->pos);
		while (at < e->pos) {
			uint64_t n = e->pos - at < RAW_PIECE ? e->pos - at : RAW_PIECE;
			if (add(out, at, n, SQV_DIGEST_RAW) < 0)
				return fail(path, "out of memory");
			at += n;
		}
		if (add(out, e->pos, e->len, e->kind) < 0)
			return fail(path, "out of memory");
		at = e->pos + e->len;
	}
	if (at > bytes_used)
		return fail(path, "a block reaches past the image's end");
	while (at < bytes_used) {
		uint64_t n = bytes_used - at < RAW_PIECE ? bytes_used - at : RAW_PIECE;
		if (add(out, at, n, SQV_DIGEST_RAW) < 0)
			return fail(path, "out of memory");
		at += n;
	}
	return 0;
}

int sqv_inspect_seal(const char *path)
{
	struct list blocks = { 0 }, table = { 0 };
	struct sqv_superblock sb;
	struct stat st;
	unsigned char *buf = NULL;
	void *out = NULL, *old_tail = NULL;
	size_t outlen, old_len = 0;
	int rc = 1;
	int fd = open(path, O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return fail(path, "%s", strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return fail(path, "not a regular file");
	}
	if (read_sb(path, fd, &sb) != 0) {
		close(fd);
		return 1;
	}
	uint64_t table_at = (sb.bytes_used + SQV_DIGEST_ALIGN - 1) /
			    SQV_DIGEST_ALIGN * SQV_DIGEST_ALIGN;
	if ((uint64_t)st.st_size < sb.bytes_used) {
		close(fd);
		return fail(path, "truncated (the image says %" PRIu64 " bytes)",
			    sb.bytes_used);
	}
	/* A table already there is replaced: drop it first, so that the
	 * image opens as a plain one, but keep its bytes, put back if the
	 * seal fails (a damaged image is refused, not left unsealed). */
	if ((uint64_t)st.st_size > table_at) {
		old_len = (size_t)((uint64_t)st.st_size - table_at);
		old_tail = malloc(old_len);
		if (!old_tail) {
			rc = fail(path, "out of memory");
			goto out;
		}
		if (read_at(fd, old_tail, old_len, table_at) < 0 ||
		    ftruncate(fd, (off_t)table_at) < 0) {
			rc = fail(path, "%s", strerror(errno));
			free(old_tail);
			old_tail = NULL;
			goto out;
		}
	}
	if (add_file_blocks(path, fd, &blocks) != 0 ||
	    add_metadata(path, fd, &sb, &blocks) != 0 ||
	    normalise(path, &blocks, sb.bytes_used, &table) != 0)
		goto out;
	buf = malloc(RAW_PIECE > 0x100000 ? RAW_PIECE : 0x100000);
	if (!buf) {
		rc = fail(path, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < table.n; i++) {
		struct sqv_digest_entry *e = &table.e[i];
		if (read_at(fd, buf, e->len, e->pos) < 0) {
			rc = fail(path, "read failed at offset %" PRIu64, e->pos);
			goto out;
		}
		sqv_digest_of(buf, e->len, e->digest);
	}
	if (sqv_digest_serialise(table.e, table.n, sb.bytes_used, table_at, &out,
				 &outlen) < 0) {
		rc = fail(path, "out of memory");
		goto out;
	}
	/* Pad to the table (zeros), then the table and its footer. */
	if (ftruncate(fd, (off_t)table_at) < 0 ||
	    pwrite(fd, out, outlen, (off_t)table_at) != (ssize_t)outlen) {
		rc = fail(path, "cannot write the digest table: %s", strerror(errno));
		goto out;
	}
	if (fsync(fd) < 0) {
		rc = fail(path, "%s", strerror(errno));
		goto out;
	}
	rc = 0;
out:
	/* On failure, the file as it was: its old table's bytes back, and
	 * its old length (an image shorter than table_at, made with
	 * -nopad, was lengthened by the attempt). */
	if (rc != 0 &&
	    ((old_tail && pwrite(fd, old_tail, old_len, (off_t)table_at) !=
				  (ssize_t)old_len) ||
	     ftruncate(fd, st.st_size) < 0))
		fail(path, "could not put it back as it was: %s",
		     strerror(errno));
	free(old_tail);
	free(out);
	free(buf);
	free(blocks.e);
	free(table.e);
	close(fd);
	return rc;
}

int sqv_inspect_digest(const char *path)
{
	struct sqv_superblock sb;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t cap = 1 << 20;
	unsigned char *buf = malloc(cap);
	XXH3_state_t *st = XXH3_createState();
	int rc = 1;

	if (!buf || !st) {
		rc = fail(path, "out of memory");
		goto out;
	}
	if (fd < 0) {
		rc = fail(path, "%s", strerror(errno));
		goto out;
	}
	if (read_sb(path, fd, &sb) != 0)
		goto out;
	XXH3_128bits_reset(st);
	for (uint64_t pos = 0; pos < sb.bytes_used;) {
		size_t n = sb.bytes_used - pos < cap ? (size_t)(sb.bytes_used - pos) : cap;
		if (read_at(fd, buf, n, pos) < 0) {
			rc = fail(path, "truncated or unreadable at offset %" PRIu64, pos);
			goto out;
		}
		XXH3_128bits_update(st, buf, n);
		pos += n;
	}
	XXH128_canonical_t c;
	XXH128_canonicalFromHash(&c, XXH3_128bits_digest(st));
	printf("xxh3-128:");
	for (int i = 0; i < 16; i++)
		printf("%02x", c.digest[i]);
	printf("  %s\n", path);
	rc = fflush(stdout) == 0 ? 0 : fail("stdout", "%s", strerror(errno));
out:
	XXH3_freeState(st);
	free(buf);
	if (fd >= 0)
		close(fd);
	return rc;
}

static int verify_read(void *ctx, void *buf, size_t len, uint64_t pos)
{
	return read_at(*(int *)ctx, buf, len, pos) < 0 ? -EIO : 0;
}

int sqv_inspect_verify_digests(const char *path, const struct sqv_image *img,
			       size_t *checked)
{
	const struct sqv_digests *d = sqv_image_digests(img);
	uint64_t bad = 0;

	*checked = 0;
	if (!d)
		return 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(path, "%s", strerror(errno));
	sqv_err_t err = sqv_digest_verify(d, ~0u, verify_read, &fd, &bad);
	close(fd);
	if (err == -SQV_ECORRUPT)
		return fail(path, "damaged: the stored block at offset %" PRIu64
			    " does not match its digest", bad);
	if (err < 0)
		return fail(path, "cannot read it: %s", strerror(-err));
	*checked = sqv_digest_count(d);
	return 0;
}
