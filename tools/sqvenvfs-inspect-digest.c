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
#include "log.h"
#include "superblock.h"

#define PROG "sqvenvfs-inspect"
#define META_SIZE 8192
#define NO_TABLE UINT64_MAX
#define FLAG_COMP_OPT 0x0400
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

static uint64_t le64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint16_t le16(const unsigned char *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
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

/* Data and fragment blocks, from every regular file's layout. */
static int add_file_blocks(const char *path, int fd, struct list *l)
{
	struct sqv_image *img;
	struct sqv_index *idx;
	int dfd = dup(fd);

	if (dfd < 0 || sqv_image_open(dfd, path, &img) < 0)
		return fail(path, "cannot open it as a squashfs image");
	if (sqv_index_build(&img, 1, SQV_INDEX_RAW, &idx) < 0) {
		sqv_image_free(img);
		return fail(path, "cannot read its directory tree");
	}
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

/* A table's index: count u64 pointers at pos, each to one metadata block
 * (a run start). */
static int add_index(int fd, struct list *raw, struct list *starts,
		     uint64_t pos, uint64_t header, uint64_t count)
{
	uint64_t len = header + count * 8;
	unsigned char *buf = malloc(len ? len : 1);

	if (!buf || read_at(fd, buf, len, pos) < 0) {
		free(buf);
		return -1;
	}
	int rc = add(raw, pos, len, SQV_DIGEST_RAW);
	for (uint64_t i = 0; i < count && rc == 0; i++)
		rc = add(starts, le64(buf + header + i * 8), 0, SQV_DIGEST_META);
	free(buf);
	return rc;
}

static int cmp_pos(const void *a, const void *b)
{
	const struct sqv_digest_entry *x = a, *y = b;
	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Metadata blocks: from each run start, 2-byte headers up to the next
 * thing known to start. */
static int add_metadata(const char *path, int fd, const struct sqv_superblock *sb,
			struct list *l)
{
	struct list starts = { 0 }, raw = { 0 };
	int rc = 0;

	rc |= add(&raw, 0, SQV_SUPERBLOCK_SIZE, SQV_DIGEST_RAW);
	if (sb->flags & FLAG_COMP_OPT)
		rc |= add(&starts, SQV_SUPERBLOCK_SIZE, 0, SQV_DIGEST_META);
	rc |= add(&starts, sb->inode_table, 0, SQV_DIGEST_META);
	rc |= add(&starts, sb->directory_table, 0, SQV_DIGEST_META);
	if (sb->fragments && sb->fragment_table != NO_TABLE)
		rc |= add_index(fd, &raw, &starts, sb->fragment_table, 0,
				((uint64_t)sb->fragments * 16 + META_SIZE - 1) / META_SIZE);
	if (sb->lookup_table != NO_TABLE)
		rc |= add_index(fd, &raw, &starts, sb->lookup_table, 0,
				((uint64_t)sb->inodes * 8 + META_SIZE - 1) / META_SIZE);
	unsigned char ids[2]; /* the id count, which sqv_superblock omits */
	if (read_at(fd, ids, sizeof(ids), 26) < 0)
		rc = -1;
	else if (le16(ids) && sb->id_table != NO_TABLE)
		rc |= add_index(fd, &raw, &starts, sb->id_table, 0,
				((uint64_t)le16(ids) * 4 + META_SIZE - 1) / META_SIZE);
	if (sb->xattr_id_table != NO_TABLE) {
		unsigned char h[16];
		if (read_at(fd, h, sizeof(h), sb->xattr_id_table) < 0)
			rc = -1;
		else {
			rc |= add(&starts, le64(h), 0, SQV_DIGEST_META);
			rc |= add_index(fd, &raw, &starts, sb->xattr_id_table, 16,
					((uint64_t)le32(h + 8) * 16 + META_SIZE - 1) /
						META_SIZE);
		}
	}
	if (rc != 0) {
		free(starts.e);
		free(raw.e);
		return fail(path, "cannot read its table indexes");
	}
	qsort(starts.e, starts.n, sizeof(*starts.e), cmp_pos);
	qsort(raw.e, raw.n, sizeof(*raw.e), cmp_pos);
	/* One start per offset: an empty table (the directory table of an
	 * empty root) starts where the next table's first block does, and a
	 * run must not end at its own start. */
	size_t nstarts = 0;
	for (size_t i = 0; i < starts.n; i++)
		if (nstarts == 0 || starts.e[i].pos != starts.e[nstarts - 1].pos)
			starts.e[nstarts++] = starts.e[i];
	starts.n = nstarts;
	for (size_t i = 0; i < raw.n && rc == 0; i++)
		rc = add(l, raw.e[i].pos, raw.e[i].len, SQV_DIGEST_RAW);
	for (size_t i = 0; i < starts.n && rc == 0; i++) {
		uint64_t pos = starts.e[i].pos;
		/* The run ends where the next run or raw range begins. */
		uint64_t end = sb->bytes_used;
		if (i + 1 < starts.n)
			end = starts.e[i + 1].pos;
		for (size_t r = 0; r < raw.n; r++)
			if (raw.e[r].pos > pos && raw.e[r].pos < end)
				end = raw.e[r].pos;
		if (pos == SQV_SUPERBLOCK_SIZE && (sb->flags & FLAG_COMP_OPT))
			end = pos + 1; /* the options are one block */
		while (pos < end && rc == 0) {
			unsigned char h[2];
			if (read_at(fd, h, 2, pos) < 0) {
				rc = fail(path, "metadata block at %" PRIu64 " past the end",
					  pos);
				break;
			}
			uint64_t size = le16(h) & 0x7fff;
			if (size == 0 || size > META_SIZE || pos + 2 + size > sb->bytes_used) {
				rc = fail(path, "damaged metadata block header at %" PRIu64,
					  pos);
				break;
			}
			rc = add(l, pos, 2 + size, SQV_DIGEST_META);
			pos += 2 + size;
		}
	}
	free(starts.e);
	free(raw.e);
	return rc ? 1 : 0;
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
	void *out = NULL;
	size_t outlen;
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
	 * image opens as a plain one. */
	if ((uint64_t)st.st_size > table_at && ftruncate(fd, (off_t)table_at) < 0) {
		rc = fail(path, "%s", strerror(errno));
		goto out;
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
		(void)!ftruncate(fd, (off_t)table_at);
		goto out;
	}
	if (fsync(fd) < 0) {
		rc = fail(path, "%s", strerror(errno));
		goto out;
	}
	rc = 0;
out:
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
