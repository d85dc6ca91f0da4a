/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The walk of an image's metadata tables (lib/layout.h), over images made
 * by mksquashfs with and without an export table, with compressor
 * options, xz, and an empty root: what it finds must tile the image from
 * the inode table to bytes_used with no gap and no overlap (mksquashfs
 * writes nothing else there), each metadata block as long as its header
 * says; the compressor options must be one block after the superblock.
 * Then a damaged header and an index past the end are refused, naming
 * the offset.
 */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "check.h"
#include "io.h"
#include "layout.h"

static char top[] = "/tmp/sqv-unit-layout-XXXXXX";

#define MAX_PIECES 4096

struct seen {
	int fd;
	struct sqv_layout_piece p[MAX_PIECES];
	size_t n;
};

static sqv_err_t read_fd(void *ctx, void *buf, size_t len, uint64_t pos)
{
	return sqv_pread_all(((struct seen *)ctx)->fd, buf, len, pos) < 0 ? -EIO : 0;
}

static sqv_err_t collect(void *ctx, const struct sqv_layout_piece *p,
			 const char **why)
{
	struct seen *s = ctx;

	if (s->n == MAX_PIECES) {
		*why = "too many pieces for the test";
		return -ENOMEM;
	}
	s->p[s->n++] = *p;
	return 0;
}

static int cmp(const void *a, const void *b)
{
	const struct sqv_layout_piece *x = a, *y = b;
	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static int open_image(const char *name, struct sqv_superblock *sb)
{
	char path[512], why[160];
	unsigned char b[SQV_SUPERBLOCK_SIZE];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", top, name);
	int fd = open(path, O_RDWR);
	if (fd < 0 || fstat(fd, &st) < 0 || sqv_pread_all(fd, b, sizeof(b), 0) < 0 ||
	    sqv_superblock_check(b, sizeof(b), (uint64_t)st.st_size, sb, why,
				 sizeof(why)) < 0) {
		fprintf(stderr, "%s: cannot open it\n", path);
		exit(1);
	}
	return fd;
}

/* Walk name; check the tiling. */
static void check_image(const char *name, bool exports, bool comp_opts)
{
	struct sqv_superblock sb;
	static struct seen s;
	uint64_t bad;
	const char *why;

	memset(&s, 0, sizeof(s));
	s.fd = open_image(name, &sb);
	fprintf(stderr, "%s\n", name);
	CHECK_EQ(sqv_layout_walk(&sb, read_fd, collect, &s, &bad, &why), 0);
	CHECK_EQ(!!(sb.flags & 0x0400), comp_opts);
	qsort(s.p, s.n, sizeof(s.p[0]), cmp);
	CHECK(s.n >= 2 && s.p[0].pos == 0 && s.p[0].len == SQV_SUPERBLOCK_SIZE &&
	      s.p[0].table == SQV_LAYOUT_SUPERBLOCK);
	size_t i = 1;
	if (comp_opts) {
		CHECK(s.p[1].pos == SQV_SUPERBLOCK_SIZE &&
		      s.p[1].kind == SQV_DIGEST_META &&
		      s.p[1].table == SQV_LAYOUT_COMP_OPTIONS);
		i = 2;
	}
	bool saw_exports = false;
	uint64_t at = sb.inode_table;
	for (; i < s.n; i++) {
		const struct sqv_layout_piece *p = &s.p[i];
		if (p->pos != at)
			fprintf(stderr, "  gap or overlap at %llu (piece at %llu)\n",
				(unsigned long long)at, (unsigned long long)p->pos);
		CHECK_EQ(p->pos, at);
		if (p->kind == SQV_DIGEST_META) {
			unsigned char h[2];
			CHECK_EQ(sqv_pread_all(s.fd, h, 2, p->pos), 0);
			CHECK_EQ(2 + ((h[0] | h[1] << 8) & 0x7fff), p->len);
		} else {
			CHECK_EQ(p->kind, SQV_DIGEST_RAW);
		}
		saw_exports |= p->table == SQV_LAYOUT_EXPORTS;
		at = p->pos + p->len;
	}
	CHECK_EQ(at, sb.bytes_used);
	CHECK_EQ(saw_exports, exports);
	close(s.fd);
}

/* A copy of name with len bytes at pos replaced; returns the walk's error
 * and sets *bad and *why. */
static sqv_err_t walk_damaged(const char *name, uint64_t pos, const void *bytes,
			      size_t len, uint64_t *bad, const char **why)
{
	struct sqv_superblock sb;
	static struct seen s;

	check_run("cp %s/%s %s/damaged", top, name, top);
	memset(&s, 0, sizeof(s));
	s.fd = open_image("damaged", &sb);
	CHECK_EQ(pwrite(s.fd, bytes, len, (off_t)pos), (ssize_t)len);
	if (pos < SQV_SUPERBLOCK_SIZE) {
		close(s.fd);
		s.fd = open_image("damaged", &sb);
	}
	sqv_err_t err = sqv_layout_walk(&sb, read_fd, collect, &s, bad, why);
	close(s.fd);
	return err;
}

int main(void)
{
	struct sqv_superblock sb;
	uint64_t bad = 0;
	const char *why = "";

	if (!mkdtemp(top))
		return 1;
	/* Enough entries for several inode, directory and export blocks. */
	check_run("mkdir -p %s/src/d/e %s/void && cd %s/src && "
		  "for i in $(seq 1 1500); do echo $i > d/file_with_a_long_name_$i.py; done && "
		  "ln -s d/e link && head -c 300000 /dev/urandom > d/e/big",
		  top, top, top);
	const char *mk = "mksquashfs %s/%s %s/%s -noappend -quiet -no-progress %s >/dev/null";
	check_run(mk, top, "src", top, "plain", "");
	check_run(mk, top, "src", top, "no-exports", "-no-exports");
	check_run(mk, top, "src", top, "gzip-opts", "-comp gzip -Xcompression-level 5");
	check_run(mk, top, "src", top, "zstd-opts", "-comp zstd -Xcompression-level 3");
	check_run(mk, top, "src", top, "xz", "-comp xz");
	check_run(mk, top, "src", top, "no-fragments", "-no-fragments -no-exports");
	check_run(mk, top, "void", top, "empty", "");
	check_run(mk, top, "void", top, "empty-no-exports", "-no-exports");
	/* xattrs where this file system keeps user xattrs. */
	char dir[512];
	snprintf(dir, sizeof(dir), "%s/src/d", top);
	bool xattrs = setxattr(dir, "user.sqv", "layout", 6, 0) == 0;
	if (!xattrs)
		fprintf(stderr, "note: no user xattrs here: no xattr table\n");
	check_run(mk, top, "src", top, "xattrs", "-xattrs");
	close(open_image("xattrs", &sb));
	CHECK_EQ(sb.xattr_id_table != UINT64_MAX, xattrs);

	check_image("plain", true, false);
	check_image("no-exports", false, false);
	check_image("gzip-opts", true, true);
	check_image("zstd-opts", true, true);
	check_image("xz", true, false);
	check_image("no-fragments", false, false);
	check_image("empty", true, false);
	check_image("empty-no-exports", false, false);
	check_image("xattrs", true, false);

	/* A stored size of 0 in the directory table's first header. */
	close(open_image("plain", &sb));
	const unsigned char zero[8] = { 0 };
	CHECK_EQ(walk_damaged("plain", sb.directory_table, zero, 2, &bad, &why),
		 -SQV_ECORRUPT);
	CHECK_EQ(bad, sb.directory_table);
	CHECK(strcmp(why, "metadata block with a damaged header") == 0);

	/* The export table's index moved to 4 bytes before the end. */
	uint64_t at = sb.bytes_used - 4;
	unsigned char le[8];
	for (int i = 0; i < 8; i++)
		le[i] = (unsigned char)(at >> (8 * i));
	CHECK_EQ(walk_damaged("plain", 88, le, 8, &bad, &why), -SQV_ECORRUPT);
	CHECK_EQ(bad, at);
	CHECK(strcmp(why, "table index past the image's end") == 0);

	/* The compressor options' header says 9000 bytes. */
	close(open_image("gzip-opts", &sb));
	const unsigned char big[2] = { 9000 & 0xff, 9000 >> 8 };
	CHECK_EQ(walk_damaged("gzip-opts", SQV_SUPERBLOCK_SIZE, big, 2, &bad,
			      &why), -SQV_ECORRUPT);
	CHECK_EQ(bad, SQV_SUPERBLOCK_SIZE);

	check_run("rm -rf %s", top);
	return check_done();
}
