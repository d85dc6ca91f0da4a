/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The index over real images made by mksquashfs: lookups, attributes,
 * sorted listings, symlinks, hard links, inode numbering, the whiteout and
 * opaque rules across layers, RAW mode, and reads through the reader
 * (blocks, a fragment, a hole), also from an image held in a memfd.
 */
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "check.h"
#include "index.h"
#include "ino.h"
#include "reader.h"

static char top[] = "/tmp/sqv-unit-XXXXXX";

static void put(const char *rel, const char *content)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", top, rel);
	for (char *s = path + strlen(top) + 1; (s = strchr(s, '/')); s++) {
		*s = '\0';
		mkdir(path, 0755);
		*s = '/';
	}
	FILE *f = fopen(path, "w");
	fputs(content, f);
	fclose(f);
}

static struct sqv_image *open_image(const char *rel)
{
	char path[512];
	struct sqv_image *img = NULL;
	snprintf(path, sizeof(path), "%s/%s", top, rel);
	int fd = open(path, O_RDONLY);
	CHECK(fd >= 0);
	CHECK_EQ(sqv_image_open(fd, path, &img), 0);
	return img;
}

static void pack(const char *dir, const char *img, const char *extra)
{
	check_run("mksquashfs %s/%s %s/%s -noappend -quiet -no-progress %s >/dev/null",
	    top, dir, top, img, extra);
}

static sqv_ino_t path_ino(const struct sqv_index *idx, const char *path)
{
	sqv_ino_t ino = (sqv_ino_t)-1;
	if (sqv_index_lookup_path(idx, path, &ino) != 0)
		return (sqv_ino_t)-1;
	return ino;
}

static bool exists(const struct sqv_index *idx, const char *path)
{
	return path_ino(idx, path) != (sqv_ino_t)-1;
}

static char *read_all(struct sqv_reader *r, const struct sqv_index *idx,
		      const char *path, size_t *len)
{
	struct stat st;
	sqv_ino_t ino = path_ino(idx, path);
	sqv_index_stat(idx, ino, &st);
	char *buf = malloc((size_t)st.st_size + 1);
	size_t n = 0;
	CHECK_EQ(sqv_reader_pread(r, ino, buf, (size_t)st.st_size + 100, 0, &n), 0);
	buf[n] = '\0';
	*len = n;
	return buf;
}

static void test_single(void)
{
	struct sqv_image *img;
	struct sqv_index *idx;
	struct stat st;
	const char *target, *name;
	sqv_ino_t ino, child;
	uint32_t n;

	put("one/b.txt", "bee\n");
	put("one/a.txt", "ay\n");
	put("one/sub/deep/c.txt", "sea\n");
	check_run("ln -s ../a.txt %s/one/sub/link", top);
	check_run("ln %s/one/a.txt %s/one/sub/hard", top, top);
	check_run("chmod 0640 %s/one/b.txt", top);
	pack("one", "one.sqfs", "-comp zstd");
	img = open_image("one.sqfs");
	CHECK_EQ(strcmp(sqv_image_info(img)->compression, "zstd"), 0);
	CHECK_EQ(sqv_index_build(&img, 1, 0, &idx), 0);

	/* Listing of the root: sorted, complete. */
	CHECK_EQ(sqv_index_dir_count(idx, SQV_INO_ROOT, &n), 0);
	CHECK_EQ(n, 3);
	CHECK_EQ(sqv_index_dir_entry(idx, SQV_INO_ROOT, 0, &name, &child), 0);
	CHECK_EQ(strcmp(name, "a.txt"), 0);
	CHECK_EQ(sqv_index_dir_entry(idx, SQV_INO_ROOT, 2, &name, &child), 0);
	CHECK_EQ(strcmp(name, "sub"), 0);
	CHECK_EQ(sqv_index_dir_entry(idx, SQV_INO_ROOT, 3, &name, &child), -ENOENT);

	/* Lookup and attributes. */
	CHECK_EQ(sqv_index_lookup(idx, SQV_INO_ROOT, "b.txt", 5, &ino), 0);
	sqv_index_stat(idx, ino, &st);
	CHECK_EQ(st.st_mode, S_IFREG | 0640);
	CHECK_EQ(st.st_size, 4);
	CHECK_EQ(sqv_index_lookup(idx, SQV_INO_ROOT, "nope", 4, &ino), -ENOENT);
	CHECK_EQ(sqv_index_lookup(idx, path_ino(idx, "a.txt"), "x", 1, &ino),
		 -ENOTDIR);
	CHECK(exists(idx, "/sub//deep/c.txt"));
	CHECK_EQ(path_ino(idx, "sub/deep/.."), path_ino(idx, "sub"));

	/* Directory link counts: 2 + subdirectories. */
	sqv_index_stat(idx, path_ino(idx, "sub"), &st);
	CHECK_EQ(st.st_nlink, 3);

	/* Symlinks and hard links. */
	CHECK_EQ(sqv_index_readlink(idx, path_ino(idx, "sub/link"), &target), 0);
	CHECK_EQ(strcmp(target, "../a.txt"), 0);
	CHECK_EQ(sqv_index_readlink(idx, path_ino(idx, "a.txt"), &target), -EINVAL);
	CHECK_EQ(path_ino(idx, "a.txt"), path_ino(idx, "sub/hard"));
	sqv_index_stat(idx, path_ino(idx, "sub/hard"), &st);
	CHECK_EQ(st.st_nlink, 2);

	/* Inode numbers: layer 0, the image's own numbers, all distinct. */
	struct stat a, b;
	sqv_index_stat(idx, path_ino(idx, "a.txt"), &a);
	sqv_index_stat(idx, path_ino(idx, "b.txt"), &b);
	CHECK_EQ(sqv_ino_layer(a.st_ino), 0);
	CHECK(a.st_ino != b.st_ino && a.st_ino > 0);
	CHECK_EQ(sqv_index_parent(idx, path_ino(idx, "sub/deep")),
		 path_ino(idx, "sub"));
	sqv_index_free(idx);
	sqv_image_free(img);
}

static void test_layers(void)
{
	struct sqv_image *imgs[3];
	struct sqv_index *idx, *raw;
	struct stat st;
	uint32_t n;

	put("base/keep", "base");
	put("base/over", "base");
	put("base/gone", "base");
	put("base/d/x", "base");
	put("base/d/y", "base");
	put("base/opq/1", "base");
	put("base/f2d", "file in base");
	put("base/d2f/inner", "dir in base");
	put("mid/over", "mid");
	put("mid/.wh.gone", "");
	put("mid/d/.wh.y", "");
	put("mid/d/z", "mid");
	put("mid/opq/.wh..wh..opq", "");
	put("mid/opq/2", "mid");
	put("mid/f2d/inner", "dir in mid");
	put("mid/d2f", "file in mid");
	put("top/over", "top");
	put("top/gone", "back");
	pack("base", "base.sqfs", "-comp gzip");
	pack("mid", "mid.sqfs", "-comp lz4");
	pack("top", "top.sqfs", "-comp xz");
	imgs[0] = open_image("base.sqfs");
	imgs[1] = open_image("mid.sqfs");
	imgs[2] = open_image("top.sqfs");
	CHECK_EQ(sqv_index_build(imgs, 3, 0, &idx), 0);

	CHECK_EQ(sqv_index_layer(idx, path_ino(idx, "over")), 2);
	CHECK_EQ(sqv_index_layer(idx, path_ino(idx, "keep")), 0);
	CHECK_EQ(sqv_index_layer(idx, path_ino(idx, "gone")), 2);
	CHECK(exists(idx, "d/x"));
	CHECK(!exists(idx, "d/y"));
	CHECK(exists(idx, "d/z"));
	CHECK(!exists(idx, "d/.wh.y"));
	CHECK(!exists(idx, ".wh.gone"));
	CHECK(!exists(idx, "opq/1"));
	CHECK(exists(idx, "opq/2"));
	CHECK(!exists(idx, "opq/.wh..wh..opq"));
	CHECK_EQ(sqv_index_dir_count(idx, path_ino(idx, "opq"), &n), 0);
	CHECK_EQ(n, 1);
	CHECK(S_ISDIR(sqv_index_mode(idx, path_ino(idx, "f2d"))));
	CHECK(exists(idx, "f2d/inner"));
	CHECK(S_ISREG(sqv_index_mode(idx, path_ino(idx, "d2f"))));
	CHECK(!exists(idx, "d2f/inner"));
	/* The merged d is mid's (top of those that have it). */
	CHECK_EQ(sqv_index_layer(idx, path_ino(idx, "d")), 1);
	sqv_index_stat(idx, path_ino(idx, "over"), &st);
	CHECK_EQ(sqv_ino_layer(st.st_ino), 2);

	/* Contents come from the right layer, across compressions. */
	struct sqv_reader *r;
	size_t len;
	CHECK_EQ(sqv_reader_new(idx, 1 << 20, &r), 0);
	char *s = read_all(r, idx, "over", &len);
	CHECK_EQ(strcmp(s, "top"), 0);
	free(s);
	s = read_all(r, idx, "d/x", &len);
	CHECK_EQ(strcmp(s, "base"), 0);
	free(s);
	sqv_reader_free(r);

	/* RAW: one layer's own whiteouts, visible as files. */
	CHECK_EQ(sqv_index_build(&imgs[1], 1, SQV_INDEX_RAW, &raw), 0);
	CHECK(exists(raw, ".wh.gone"));
	CHECK(exists(raw, "opq/.wh..wh..opq"));
	sqv_index_free(raw);
	sqv_index_free(idx);
	for (int i = 0; i < 3; i++)
		sqv_image_free(imgs[i]);
}

/* The overlayfs form of the markers, in an image packed from an overlay
 * upper directory: char 0:0 whiteouts (made by mksquashfs pseudo entries,
 * so no privilege is needed) and the user.overlay.opaque xattr. */
static void test_overlay_markers(void)
{
	struct sqv_image *imgs[2];
	struct sqv_index *idx, *raw;
	struct stat st;
	const void *v;
	size_t vlen;
	uint32_t n;

	put("obase/gone", "base");
	put("obase/d/x", "base");
	put("obase/d/y", "base");
	put("obase/opq/1", "base");
	put("obase/notopq/1", "base");
	put("obase/d2f/inner", "dir in base");
	put("oup/d/z", "upper");
	put("oup/opq/2", "upper");
	put("oup/notopq/2", "upper");
	put("oup/d2f", "file in upper");
	check_run("setfattr -n user.overlay.opaque -v y %s/oup/opq", top);
	/* "x" is overlayfs's mark for xattr whiteouts inside, not opacity. */
	check_run("setfattr -n user.overlay.opaque -v x %s/oup/notopq", top);
	check_run("setfattr -n user.kept -v 1 %s/oup/opq", top);
	pack("obase", "obase.sqfs", "-p 'basewh c 0644 0 0 0 0'");
	pack("oup", "oup.sqfs", "-p 'gone c 0644 0 0 0 0' -p 'd/y c 0644 0 0 0 0'"
	     " -p 'dev c 0644 0 0 1 3'");
	imgs[0] = open_image("obase.sqfs");
	imgs[1] = open_image("oup.sqfs");
	CHECK_EQ(sqv_index_build(imgs, 2, 0, &idx), 0);

	CHECK(!exists(idx, "gone"));
	CHECK(!exists(idx, "basewh"));
	CHECK(exists(idx, "d/x"));
	CHECK(!exists(idx, "d/y"));
	CHECK(exists(idx, "d/z"));
	CHECK_EQ(sqv_index_dir_count(idx, path_ino(idx, "d"), &n), 0);
	CHECK_EQ(n, 2);
	CHECK(!exists(idx, "opq/1"));
	CHECK(exists(idx, "opq/2"));
	CHECK(exists(idx, "notopq/1"));
	CHECK(exists(idx, "notopq/2"));
	CHECK(S_ISREG(sqv_index_mode(idx, path_ino(idx, "d2f"))));
	/* Any other character device is an ordinary entry. */
	sqv_index_stat(idx, path_ino(idx, "dev"), &st);
	CHECK(S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 &&
	      minor(st.st_rdev) == 3);
	/* The marker is not served; the directory's other xattrs are. */
	CHECK_EQ(sqv_index_getxattr(idx, path_ino(idx, "opq"),
				    "user.overlay.opaque", &v, &vlen), -ENODATA);
	CHECK_EQ(sqv_index_getxattr(idx, path_ino(idx, "opq"), "user.kept", &v,
				    &vlen), 0);
	CHECK_EQ(sqv_index_getxattr(idx, path_ino(idx, "notopq"),
				    "user.overlay.opaque", &v, &vlen), -ENODATA);

	/* RAW shows the layer as stored: the device and the xattr. */
	CHECK_EQ(sqv_index_build(&imgs[1], 1, SQV_INDEX_RAW, &raw), 0);
	CHECK(exists(raw, "d/y"));
	CHECK(S_ISCHR(sqv_index_mode(raw, path_ino(raw, "gone"))));
	CHECK_EQ(sqv_index_getxattr(raw, path_ino(raw, "opq"),
				    "user.overlay.opaque", &v, &vlen), 0);
	sqv_index_free(raw);
	sqv_index_free(idx);
	for (int i = 0; i < 2; i++)
		sqv_image_free(imgs[i]);
}

static void test_reader_memfd(void)
{
	struct sqv_image *img;
	struct sqv_index *idx;
	struct sqv_reader *r;
	char path[512];
	size_t n;

	/* 300 KiB of pattern (2 full 128 KiB blocks and a fragment tail),
	 * and a sparse file with a hole. */
	snprintf(path, sizeof(path), "%s/data", top);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/data/pattern", top);
	FILE *f = fopen(path, "w");
	for (int i = 0; i < 300 * 1024; i++)
		fputc('a' + (i * 7 + i / 131) % 26, f);
	fclose(f);
	check_run("truncate -s 1M %s/data/sparse && printf end >> %s/data/sparse", top,
	    top);
	pack("data", "data.sqfs", "-comp zstd");

	/* The image from a memfd: the reader only needs an fd. */
	snprintf(path, sizeof(path), "%s/data.sqfs", top);
	int in = open(path, O_RDONLY);
	struct stat st;
	fstat(in, &st);
	int mfd = memfd_create("image", 0);
	char *buf = malloc((size_t)st.st_size);
	CHECK_EQ(read(in, buf, (size_t)st.st_size), st.st_size);
	CHECK_EQ(write(mfd, buf, (size_t)st.st_size), st.st_size);
	free(buf);
	close(in);
	CHECK_EQ(sqv_image_open(mfd, "memfd", &img), 0);
	CHECK_EQ(sqv_index_build(&img, 1, 0, &idx), 0);
	CHECK_EQ(sqv_reader_new(idx, 0, &r), 0);

	sqv_ino_t ino = path_ino(idx, "pattern");
	char *out = malloc(300 * 1024);
	bool same = true;
	/* Reads that straddle block and fragment boundaries. */
	size_t offs[] = { 0, 131071, 131072, 262143, 262144, 300 * 1024 - 5 };
	for (size_t k = 0; k < sizeof(offs) / sizeof(offs[0]); k++) {
		CHECK_EQ(sqv_reader_pread(r, ino, out, 70000, offs[k], &n), 0);
		size_t want = 300 * 1024 - offs[k] < 70000 ? 300 * 1024 - offs[k] : 70000;
		CHECK_EQ(n, want);
		for (size_t i = 0; i < n; i++) {
			size_t p = offs[k] + i;
			if (out[i] != (char)('a' + (p * 7 + p / 131) % 26))
				same = false;
		}
	}
	CHECK(same);
	CHECK_EQ(sqv_reader_pread(r, ino, out, 10, 300 * 1024, &n), 0);
	CHECK_EQ(n, 0);

	ino = path_ino(idx, "sparse");
	CHECK_EQ(sqv_reader_pread(r, ino, out, 4096, 500000, &n), 0);
	bool zeros = n == 4096;
	for (size_t i = 0; i < n; i++)
		zeros = zeros && out[i] == 0;
	CHECK(zeros);
	CHECK_EQ(sqv_reader_pread(r, ino, out, 100, 1 << 20, &n), 0);
	CHECK(n == 3 && memcmp(out, "end", 3) == 0);
	CHECK_EQ(sqv_reader_pread(r, SQV_INO_ROOT, out, 10, 0, &n), -EISDIR);

	struct sqv_image_io io;
	sqv_image_io(img, &io);
	CHECK(io.backing_reads > 0 && io.decompressed_bytes > 0);
	free(out);
	sqv_reader_free(r);
	sqv_index_free(idx);
	sqv_image_free(img);
}

static void test_bad_images(void)
{
	struct sqv_image *img = NULL;
	int fd = memfd_create("bad", 0);
	CHECK_EQ(write(fd, "not squashfs at all, just bytes", 31), 31);
	CHECK_EQ(sqv_image_open(fd, "bad", &img), -ENOTSUP);
	CHECK(img == NULL);
}

int main(void)
{
	if (!mkdtemp(top))
		return 1;
	if (system("command -v mksquashfs >/dev/null") != 0) {
		printf("SKIP: mksquashfs is not installed\n");
		return getenv("SQVENVFS_TEST_NO_SKIP") ? 1 : 77;
	}
	sqv_log_set_level(SQV_LOG_WARNING);
	test_single();
	test_layers();
	test_overlay_markers();
	test_reader_memfd();
	test_bad_images();
	check_run("rm -rf %s", top);
	return check_done();
}
