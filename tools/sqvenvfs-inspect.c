/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * sqvenvfs-inspect: look into sqvenvfs images and stacks without mounting.
 *
 *   sqvenvfs-inspect [info] IMAGE...        what the images hold, and whether
 *                                           the stack resolves
 *   sqvenvfs-inspect ls [-l] IMAGE... PATH
 *   sqvenvfs-inspect stat IMAGE... PATH
 *   sqvenvfs-inspect cat IMAGE... PATH
 *   sqvenvfs-inspect dump [--hash] IMAGE... one line per path (for scripts
 *                                           and sqvenvfs-pack --base)
 *   sqvenvfs-inspect verify IMAGE...        read and decompress every block,
 *                                           and check it against the image's
 *                                           digest table when it has one
 *   sqvenvfs-inspect seal IMAGE...          append (replace) the digest table
 *   sqvenvfs-inspect digest IMAGE...        one digest of each whole image
 *
 * It uses lib/ exactly as the daemon does (the same index and reader), so
 * what it shows is what a mount shows. --raw keeps whiteouts as plain
 * entries that hide nothing, to see what one layer (or every layer of a
 * stack, merged directory by directory) carries.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "hot.h"
#include "image.h"
#include "index.h"
#include "layer.h"
#include "log.h"
#include "reader.h"
#include "sqv_config.h"
#include "sqvenvfs-inspect-digest.h"
#include "sqvenvfs-inspect-held.h"
#include "trace.h"
#include "sqvenvfs-inspect-sha256.h"

#define PROG "sqvenvfs-inspect"
#define PATH_BUF 8192

/* Exit codes: 0 fine, 1 a failure (bad image, damage, missing path),
 * 2 a usage error. */
enum { EXIT_USAGE = 2 };

static bool opt_raw, opt_long, opt_hash;

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: " PROG " [info] IMAGE [IMAGE...]\n"
		"       " PROG " ls [-l] IMAGE [IMAGE...] [PATH]   (PATH: / if omitted)\n"
		"       " PROG " stat IMAGE [IMAGE...] PATH\n"
		"       " PROG " cat IMAGE [IMAGE...] PATH\n"
		"       " PROG " dump [--hash] IMAGE [IMAGE...]\n"
		"       " PROG " verify IMAGE [IMAGE...]\n"
		"       " PROG " seal IMAGE [IMAGE...]\n"
		"       " PROG " digest IMAGE [IMAGE...]\n"
		"       " PROG " extents IMAGE\n"
		"\n"
		"Images are listed bottom first, as for sqvenvfs; later ones\n"
		"override earlier ones (OCI whiteouts .wh.NAME, .wh..wh..opq).\n"
		"\n"
		"Options:\n"
		"  --raw       keep whiteouts as plain entries: what the layers carry\n"
		"  -l          ls: long listing\n"
		"  --hash      dump: SHA-256 of every regular file\n"
		"  -h, --help  this text\n"
		"  -V, --version  the version\n"
		"\n"
		"dump prints, tab-separated: PATH TYPE MODE UID GID SIZE MTIME\n"
		"TARGET HASH; TYPE is one of f d l c b p s, MODE is octal, HASH is\n"
		"'-' without --hash; bytes outside 0x20-0x7e and '\\' are written\n"
		"as \\xHH.\n"
		"\n"
		"extents prints where each regular file of one image is stored:\n"
		"PATH BLOCKS FRAGMENT, BLOCKS as OFFSET+SIZE[u],... in file order (u:\n"
		"stored uncompressed; a hole is 0+0), FRAGMENT as OFFSET+SIZE[u]; '-'\n"
		"for none. The image's\n"
		"hot-range record (" SQV_HOT_NAME ") is listed too.\n");
}

static void errmsg(const char *thing, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void errmsg(const char *thing, const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, PROG ": %s: ", thing);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static const char *why(sqv_err_t err)
{
	if (err == -SQV_ECORRUPT)
		return "damaged image (a check failed)";
	if (err == -ENOTSUP)
		return "not a squashfs image this tool can read";
	return strerror(-err);
}

/* ---- lib/'s messages ---------------------------------------------------- */

/* Held while a stack opens (sqvenvfs-inspect-held.h): on failure the
 * first is the one line printed; on success they are printed as warnings
 * (a damaged entry the index skipped), except while verifying, where any
 * of them is a failure. */
static void held_print(int max)
{
	fflush(stdout);
	for (int i = 0; i < sqv_held.count && i < SQV_HELD_MAX && i < max; i++)
		fprintf(stderr, PROG ": %s\n", sqv_held.msg[i]);
}

/* ---- opening a stack -------------------------------------------------- */

struct stack {
	unsigned n;
	struct sqv_image **img;
	char **names;
	struct sqv_index *idx;
	struct sqv_reader *rd;
};

static void stack_free(struct stack *s)
{
	sqv_reader_free(s->rd);
	sqv_index_free(s->idx);
	for (unsigned i = 0; i < s->n; i++)
		sqv_image_free(s->img[i]);
	free(s->img);
	memset(s, 0, sizeof(*s));
}

static int open_image(const char *path, struct sqv_image **out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	sqv_err_t err;
	int before = sqv_held.count;

	if (fd < 0) {
		errmsg(path, "%s", strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
		errmsg(path, "is a directory, not an image");
		close(fd);
		return -1;
	}
	err = sqv_image_open(fd, path, out);
	if (err < 0) {
		if (sqv_held.count > before)
			fprintf(stderr, PROG ": %s\n", sqv_held.msg[before]);
		else
			errmsg(path, "%s", why(err));
		sqv_held.count = before;
		return -1;
	}
	return 0;
}

/* Open names[0..n) as a stack, build its index (raw or merged) and a
 * reader with cache_bytes of cache. Prints the reason on failure. */
static int stack_open_held(struct stack *s, char **names, unsigned n,
			   bool raw, size_t cache_bytes);

/* Open a stack; lib/'s warnings are printed (at most a few) on success. */
static int stack_open(struct stack *s, char **names, unsigned n, bool raw,
		      size_t cache_bytes)
{
	sqv_hold_begin();
	int rc = stack_open_held(s, names, n, raw, cache_bytes);
	sqv_hold_end();
	if (rc == 0)
		held_print(5);
	return rc;
}

static int stack_open_held(struct stack *s, char **names, unsigned n,
			   bool raw, size_t cache_bytes)
{
	sqv_err_t err;

	memset(s, 0, sizeof(*s));
	s->img = calloc(n, sizeof(*s->img));
	if (!s->img) {
		errmsg("memory", "%s", strerror(ENOMEM));
		return -1;
	}
	s->names = names;
	for (unsigned i = 0; i < n; i++) {
		if (open_image(names[i], &s->img[i]) < 0) {
			stack_free(s);
			return -1;
		}
		s->n = i + 1;
	}
	int before = sqv_held.count;
	err = sqv_index_build(s->img, n, raw ? SQV_INDEX_RAW : 0, &s->idx);
	if (err < 0) {
		if (sqv_held.count > before)
			fprintf(stderr, PROG ": %s\n", sqv_held.msg[before]);
		else
			errmsg(n == 1 ? names[0] : "stack", "%s", why(err));
		stack_free(s);
		return -1;
	}
	err = sqv_reader_new(s->idx, cache_bytes, &s->rd);
	if (err < 0) {
		errmsg("reader", "%s", why(err));
		stack_free(s);
		return -1;
	}
	return 0;
}

/* ---- small helpers ---------------------------------------------------- */

static char type_letter(mode_t m)
{
	switch (m & S_IFMT) {
	case S_IFREG: return 'f';
	case S_IFDIR: return 'd';
	case S_IFLNK: return 'l';
	case S_IFCHR: return 'c';
	case S_IFBLK: return 'b';
	case S_IFIFO: return 'p';
	default:      return 's';
	}
}

static const char *type_name(mode_t m)
{
	switch (m & S_IFMT) {
	case S_IFREG: return "regular file";
	case S_IFDIR: return "directory";
	case S_IFLNK: return "symbolic link";
	case S_IFCHR: return "character device";
	case S_IFBLK: return "block device";
	case S_IFIFO: return "fifo";
	default:      return "socket";
	}
}

static void mode_string(mode_t m, char out[11])
{
	static const char rwx[] = "rwxrwxrwx";

	out[0] = type_letter(m) == 'f' ? '-' : type_letter(m);
	for (int i = 0; i < 9; i++)
		out[1 + i] = (m & (0400 >> i)) ? rwx[i] : '-';
	if (m & S_ISUID)
		out[3] = (m & S_IXUSR) ? 's' : 'S';
	if (m & S_ISGID)
		out[6] = (m & S_IXGRP) ? 's' : 'S';
	if (m & S_ISVTX)
		out[9] = (m & S_IXOTH) ? 't' : 'T';
	out[10] = 0;
}

/* The dump escape: printable ASCII but '\' as is, everything else \xHH. */
static void put_escaped(FILE *f, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '\\' || *p < 0x20 || *p > 0x7e)
			fprintf(f, "\\x%02x", *p);
		else
			fputc(*p, f);
	}
}

static void human(uint64_t n, char *buf, size_t len)
{
	static const char *unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)n;
	int u = 0;

	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%" PRIu64 " B", n);
	else
		snprintf(buf, len, "%.1f %s", v, unit[u]);
}

static void time_string(time_t t, char *buf, size_t len)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

/* Read a whole small file of the stack (at most max bytes), NUL-ended. */
static char *read_small(struct stack *s, const char *path, size_t max,
			size_t *lenp)
{
	sqv_ino_t ino;
	struct stat st;
	size_t got = 0;
	char *buf;

	if (sqv_index_lookup_path(s->idx, path, &ino) < 0)
		return NULL;
	sqv_index_stat(s->idx, ino, &st);
	if (!S_ISREG(st.st_mode))
		return NULL;
	if ((uint64_t)st.st_size < max)
		max = (size_t)st.st_size;
	buf = malloc(max + 1);
	if (!buf)
		return NULL;
	if (max && sqv_reader_pread(s->rd, ino, buf, max, 0, &got) < 0) {
		free(buf);
		return NULL;
	}
	buf[got] = 0;
	if (lenp)
		*lenp = got;
	return buf;
}

/* ---- walking the tree ------------------------------------------------- */

typedef int (*walk_fn)(struct stack *s, sqv_ino_t ino, const char *path,
		       const char *name, void *ctx);

/* Depth first, entries in name order; path is "/" for the root and
 * "/a/b" below it. A non-zero return from fn stops the walk. */
static int walk_dir(struct stack *s, sqv_ino_t dir, char *path, size_t len,
		    walk_fn fn, void *ctx)
{
	uint32_t count;
	int rc;

	if (sqv_index_dir_count(s->idx, dir, &count) < 0)
		return 0;
	for (uint32_t i = 0; i < count; i++) {
		const char *name;
		sqv_ino_t child;
		size_t nlen;

		if (sqv_index_dir_entry(s->idx, dir, i, &name, &child) < 0)
			continue;
		nlen = strlen(name);
		if (len + 1 + nlen + 1 > PATH_BUF) {
			errmsg(path, "path too long below here");
			return 1;
		}
		path[len] = '/';
		memcpy(path + len + 1, name, nlen + 1);
		rc = fn(s, child, path, name, ctx);
		if (rc)
			return rc;
		if (S_ISDIR(sqv_index_mode(s->idx, child))) {
			rc = walk_dir(s, child, path, len + 1 + nlen, fn, ctx);
			if (rc)
				return rc;
		}
		path[len] = 0;
	}
	return 0;
}

static int walk(struct stack *s, walk_fn fn, void *ctx)
{
	char path[PATH_BUF] = "/";
	int rc = fn(s, SQV_INO_ROOT, "/", "", ctx);

	if (rc)
		return rc;
	path[0] = 0;
	return walk_dir(s, SQV_INO_ROOT, path, 0, fn, ctx);
}

/* Hash a regular file; returns 0 or the reader's error. */
static sqv_err_t hash_file(struct stack *s, sqv_ino_t ino, uint64_t size,
			   char hex[65], uint64_t *failed_at)
{
	static unsigned char buf[1 << 17];
	struct sha256 h;
	unsigned char d[32];
	uint64_t off = 0;

	sha256_init(&h);
	while (off < size) {
		size_t want = size - off < sizeof(buf) ? (size_t)(size - off)
						       : sizeof(buf);
		size_t got = 0;
		sqv_err_t err = sqv_reader_pread(s->rd, ino, buf, want, off,
						 &got);
		if (err < 0 || got == 0) {
			if (failed_at)
				*failed_at = off;
			return err < 0 ? err : -SQV_ECORRUPT;
		}
		sha256_update(&h, buf, got);
		off += got;
	}
	sha256_final(&h, d);
	sha256_hex(d, hex);
	return 0;
}

/* ---- dump ------------------------------------------------------------- */

static int dump_one(struct stack *s, sqv_ino_t ino, const char *path,
		    const char *name, void *ctx)
{
	struct stat st;
	char hex[65] = "-";
	const char *target = NULL;
	uint64_t size = 0;

	(void)name;
	(void)ctx;
	sqv_index_stat(s->idx, ino, &st);
	if (S_ISREG(st.st_mode) || S_ISLNK(st.st_mode))
		size = (uint64_t)st.st_size;
	else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))
		size = st.st_rdev;
	if (S_ISLNK(st.st_mode) && sqv_index_readlink(s->idx, ino, &target) < 0)
		target = NULL;
	if (opt_hash && S_ISREG(st.st_mode)) {
		sqv_err_t err = hash_file(s, ino, size, hex, NULL);
		if (err < 0) {
			errmsg(path, "cannot read: %s", why(err));
			return 1;
		}
	}
	put_escaped(stdout, path);
	printf("\t%c\t%o\t%u\t%u\t%" PRIu64 "\t%lld\t", type_letter(st.st_mode),
	       (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid,
	       (unsigned)st.st_gid, size, (long long)st.st_mtime);
	if (target)
		put_escaped(stdout, target);
	printf("\t%s\n", hex);
	return 0;
}

static int cmd_dump(char **names, unsigned n)
{
	struct stack s;
	int rc;

	if (stack_open(&s, names, n, opt_raw, 4u << 20) < 0)
		return 1;
	rc = walk(&s, dump_one, NULL);
	stack_free(&s);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		errmsg("stdout", "%s", strerror(errno));
		return 1;
	}
	return rc ? 1 : 0;
}

/* ---- ls, stat, cat ---------------------------------------------------- */

/* Look up a path; in cat, a symlink at the end is followed inside the
 * stack (relative targets only). */
static int resolve(struct stack *s, const char *path, bool follow,
		   sqv_ino_t *out)
{
	char cur[PATH_BUF];
	sqv_err_t err;

	snprintf(cur, sizeof(cur), "%s", path);
	for (int hops = 0;; hops++) {
		sqv_ino_t ino;
		const char *target;

		err = sqv_index_lookup_path(s->idx, cur, &ino);
		if (err < 0) {
			errmsg(path, "%s", err == -ENOENT ?
			       "no such path in the image" : why(err));
			return -1;
		}
		if (!follow || !S_ISLNK(sqv_index_mode(s->idx, ino))) {
			*out = ino;
			return 0;
		}
		if (hops >= 40) {
			errmsg(path, "too many levels of symbolic links");
			return -1;
		}
		if (sqv_index_readlink(s->idx, ino, &target) < 0)
			return -1;
		if (target[0] == '/') {
			errmsg(path, "a symlink to %s, outside the image", target);
			return -1;
		}
		char *slash = strrchr(cur, '/');
		size_t keep = slash ? (size_t)(slash - cur) : 0;
		char next[PATH_BUF];
		if (snprintf(next, sizeof(next), "%.*s/%s", (int)keep, cur,
			     target) >= (int)sizeof(next)) {
			errmsg(path, "path too long");
			return -1;
		}
		/* fold "x/.." so lookup_path sees only plain names */
		char *parts[PATH_BUF / 2];
		int np = 0;
		for (char *tok = strtok(next, "/"); tok; tok = strtok(NULL, "/")) {
			if (!strcmp(tok, "."))
				continue;
			if (!strcmp(tok, "..")) {
				if (np)
					np--;
				continue;
			}
			parts[np++] = tok;
		}
		size_t pos = 0;
		cur[0] = 0;
		for (int i = 0; i < np; i++)
			pos += (size_t)snprintf(cur + pos, sizeof(cur) - pos,
						"/%s", parts[i]);
		if (!np)
			snprintf(cur, sizeof(cur), "/");
	}
}

static void ls_line(struct stack *s, sqv_ino_t ino, const char *name)
{
	struct stat st;
	char mode[11], when[32];
	const char *target;

	if (!opt_long) {
		put_escaped(stdout, name);
		putchar('\n');
		return;
	}
	sqv_index_stat(s->idx, ino, &st);
	mode_string(st.st_mode, mode);
	struct tm tm;
	gmtime_r(&st.st_mtime, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M", &tm);
	printf("%s %3lu %5u %5u %10lld %s ", mode, (unsigned long)st.st_nlink,
	       (unsigned)st.st_uid, (unsigned)st.st_gid,
	       (long long)(S_ISDIR(st.st_mode) ? 0 : st.st_size), when);
	put_escaped(stdout, name);
	if (S_ISLNK(st.st_mode) && sqv_index_readlink(s->idx, ino, &target) == 0) {
		fputs(" -> ", stdout);
		put_escaped(stdout, target);
	}
	putchar('\n');
}

static int cmd_ls(char **names, unsigned n, const char *path)
{
	struct stack s;
	sqv_ino_t ino;
	uint32_t count;
	int rc = 0;

	if (stack_open(&s, names, n, opt_raw, 1u << 20) < 0)
		return 1;
	if (resolve(&s, path, false, &ino) < 0) {
		rc = 1;
	} else if (sqv_index_dir_count(s.idx, ino, &count) < 0) {
		const char *base = strrchr(path, '/');
		ls_line(&s, ino, base && base[1] ? base + 1 : path);
	} else {
		for (uint32_t i = 0; i < count; i++) {
			const char *name;
			sqv_ino_t child;
			if (sqv_index_dir_entry(s.idx, ino, i, &name, &child) == 0)
				ls_line(&s, child, name);
		}
	}
	stack_free(&s);
	return rc;
}

static int cmd_stat(char **names, unsigned n, const char *path)
{
	struct stack s;
	sqv_ino_t ino;
	struct stat st;
	char mode[11], when[40];
	const char *target;
	unsigned layer;

	if (stack_open(&s, names, n, opt_raw, 1u << 20) < 0)
		return 1;
	if (resolve(&s, path, false, &ino) < 0) {
		stack_free(&s);
		return 1;
	}
	sqv_index_stat(s.idx, ino, &st);
	layer = sqv_index_layer(s.idx, ino);
	mode_string(st.st_mode, mode);
	time_string(st.st_mtime, when, sizeof(when));
	printf("  Path: %s\n", path);
	printf("  Type: %s\n", type_name(st.st_mode));
	printf("  Mode: %04o (%s)\n", (unsigned)(st.st_mode & 07777), mode);
	printf("   Uid: %u\n   Gid: %u\n", (unsigned)st.st_uid,
	       (unsigned)st.st_gid);
	if (!S_ISDIR(st.st_mode))
		printf("  Size: %lld\n", (long long)st.st_size);
	printf(" Links: %lu\n", (unsigned long)st.st_nlink);
	printf(" Inode: %llu\n", (unsigned long long)st.st_ino);
	printf(" Mtime: %s (%lld)\n", when, (long long)st.st_mtime);
	printf(" Layer: %u (%s)\n", layer, names[layer]);
	if (S_ISLNK(st.st_mode) && sqv_index_readlink(s.idx, ino, &target) == 0)
		printf("Target: %s\n", target);
	if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))
		printf("Device: %u,%u\n", major(st.st_rdev), minor(st.st_rdev));
	if (S_ISREG(st.st_mode)) {
		struct sqv_index_file f;
		if (sqv_index_file(s.idx, ino, &f) == 0)
			printf("Blocks: %" PRIu32 " full, %s\n",
			       f.layout.nblocks,
			       f.layout.has_fragment ? "tail in a fragment"
						     : "no fragment");
	}
	char list[4096];
	size_t len = 0;
	if (sqv_index_listxattr(s.idx, ino, list, sizeof(list), &len) == 0 &&
	    len) {
		printf("Xattrs:");
		for (size_t i = 0; i < len; i += strlen(list + i) + 1)
			printf(" %s", list + i);
		putchar('\n');
	}
	stack_free(&s);
	return 0;
}

static int cmd_cat(char **names, unsigned n, const char *path)
{
	static unsigned char buf[1 << 17];
	struct stack s;
	sqv_ino_t ino;
	struct stat st;
	uint64_t off = 0;
	int rc = 0;

	if (stack_open(&s, names, n, opt_raw, 4u << 20) < 0)
		return 1;
	if (resolve(&s, path, true, &ino) < 0) {
		stack_free(&s);
		return 1;
	}
	sqv_index_stat(s.idx, ino, &st);
	if (!S_ISREG(st.st_mode)) {
		errmsg(path, "not a regular file (%s)", type_name(st.st_mode));
		stack_free(&s);
		return 1;
	}
	while (off < (uint64_t)st.st_size) {
		size_t got = 0;
		sqv_err_t err = sqv_reader_pread(s.rd, ino, buf, sizeof(buf),
						 off, &got);
		if (err < 0 || got == 0) {
			errmsg(path, "read at offset %" PRIu64 ": %s", off,
			       err < 0 ? why(err) : "short file");
			rc = 1;
			break;
		}
		if (fwrite(buf, 1, got, stdout) != got) {
			errmsg("stdout", "%s", strerror(errno));
			rc = 1;
			break;
		}
		off += got;
	}
	if (fflush(stdout) != 0) {
		errmsg("stdout", "%s", strerror(errno));
		rc = 1;
	}
	stack_free(&s);
	return rc;
}

/* ---- extents ---------------------------------------------------------- */

static void put_extent(uint64_t pos, uint32_t word)
{
	printf("%" PRIu64 "+%" PRIu32 "%s", pos, sqv_image_word_size(word),
	       (word & (UINT32_C(1) << 24)) ? "u" : "");
}

static int extents_one(struct stack *s, sqv_ino_t ino, const char *path,
		       const char *name, void *ctx)
{
	struct sqv_index_file f;
	bool any = false;

	(void)name;
	(void)ctx;
	if (!S_ISREG(sqv_index_mode(s->idx, ino)) ||
	    sqv_index_file(s->idx, ino, &f) < 0)
		return 0;
	put_escaped(stdout, path + 1);
	putchar('\t');
	/* Block i of the file is entry i: a hole (not stored) is 0+0. */
	for (uint32_t i = 0; i < f.layout.nblocks; i++) {
		if (any)
			putchar(',');
		if (sqv_image_word_size(f.words[i]) == 0)
			fputs("0+0", stdout);
		else
			put_extent(f.positions[i], f.words[i]);
		any = true;
	}
	if (!any)
		putchar('-');
	putchar('\t');
	if (f.layout.has_fragment)
		put_extent(f.layout.frag_pos, f.layout.frag_word);
	else
		putchar('-');
	putchar('\n');
	return 0;
}

/* One image as stored (raw: whiteouts and the hot-range record are plain
 * files), for sqvenvfs-pack --hot. */
static int cmd_extents(char **names, unsigned n)
{
	struct stack s;

	if (n != 1) {
		fprintf(stderr, PROG ": extents: give one image\n");
		return EXIT_USAGE;
	}
	if (stack_open(&s, names, 1, true, 0) < 0)
		return 1;
	int rc = walk(&s, extents_one, NULL);
	stack_free(&s);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		errmsg("stdout", "%s", strerror(errno));
		return 1;
	}
	return rc;
}

/* ---- verify ----------------------------------------------------------- */

struct verify_ctx {
	const char *image;
	uint64_t files, bytes;
	int bad;
};

static int verify_one(struct stack *s, sqv_ino_t ino, const char *path,
		      const char *name, void *ctx)
{
	struct verify_ctx *v = ctx;
	struct stat st;
	char hex[65];
	uint64_t at = 0;
	sqv_err_t err;

	(void)name;
	sqv_index_stat(s->idx, ino, &st);
	if (!S_ISREG(st.st_mode))
		return 0;
	err = hash_file(s, ino, (uint64_t)st.st_size, hex, &at);
	if (err < 0) {
		errmsg(v->image, "%s: damaged at offset %" PRIu64 ": %s", path,
		       at, why(err));
		v->bad = 1;
		return 1;
	}
	v->files++;
	v->bytes += (uint64_t)st.st_size;
	return 0;
}

static int cmd_verify(char **names, unsigned n)
{
	int rc = 0;

	for (unsigned i = 0; i < n; i++) {
		struct verify_ctx v = { .image = names[i] };
		struct stack s;
		char size[32];

		sqv_hold_begin();
		int opened = stack_open_held(&s, &names[i], 1, true, 0);
		if (opened < 0) {
			sqv_hold_end();
			rc = 1;
			continue;
		}
		if (sqv_held.count) {
			sqv_hold_end();
			errmsg(names[i], "damaged metadata: %s", sqv_held.msg[0]);
			rc = 1;
			stack_free(&s);
			continue;
		}
		size_t checked = 0;
		int bad_digest = sqv_inspect_verify_digests(names[i], s.img[0],
							    &checked);
		if (!bad_digest)
			walk(&s, verify_one, &v);
		sqv_hold_end();
		stack_free(&s);
		if (v.bad || bad_digest) {
			rc = 1;
			continue;
		}
		human(v.bytes, size, sizeof(size));
		if (checked)
			printf("%s: ok: %zu stored blocks match their digests; %" PRIu64
			       " files, %s read and decompressed\n",
			       names[i], checked, v.files, size);
		else
			printf("%s: ok: %" PRIu64 " files, %s read and decompressed (no digest table: damage that still decompresses goes unseen)\n",
			       names[i], v.files, size);
	}
	return rc;
}

/* ---- info ------------------------------------------------------------- */

struct counts {
	uint64_t files, dirs, links, other, bytes;
	uint64_t whiteouts, opaque;
	int shown;
	bool hot_record; /* SQV_HOT_NAME in the root: said apart, not counted */
	/* for the stack */
	char tag[32];            /* "cpython-311", or "" */
	uint64_t modules, nopyc;
	char nopyc_first[3][256];
	int reloc_shown;
	uint64_t reloc;
};

static int count_one(struct stack *s, sqv_ino_t ino, const char *path,
		     const char *name, void *ctx)
{
	struct counts *c = ctx;
	mode_t m = sqv_index_mode(s->idx, ino);
	const char *target;
	size_t tlen;

	if (ino == SQV_INO_ROOT)
		return 0;
	/* The raw walk shows the hot-range record, which no mount does
	 * (nor anything below that name, were it a directory). */
	const size_t hl = strlen("/" SQV_HOT_NAME);
	if (strncmp(path, "/" SQV_HOT_NAME, hl) == 0 &&
	    (path[hl] == '\0' || path[hl] == '/')) {
		c->hot_record = true;
		return 0;
	}
	switch (sqv_layer_classify(name, strlen(name), &target, &tlen)) {
	case SQV_NAME_WHITEOUT:
		c->whiteouts++;
		if (c->shown++ < 10)
			printf("  whiteout:     %s\n", path);
		return 0;
	case SQV_NAME_OPAQUE:
		c->opaque++;
		if (c->shown++ < 10)
			printf("  opaque:       %s\n", path);
		return 0;
	default:
		break;
	}
	if (S_ISREG(m)) {
		struct stat st;
		sqv_index_stat(s->idx, ino, &st);
		c->files++;
		c->bytes += (uint64_t)st.st_size;
	} else if (S_ISDIR(m)) {
		c->dirs++;
	} else if (S_ISLNK(m)) {
		c->links++;
	} else {
		c->other++;
	}
	return 0;
}

static void reloc_warn(struct counts *c, const char *path, const char *what)
{
	c->reloc++;
	if (c->reloc_shown++ < 10)
		printf("  relocation:   %s: %s\n", path, what);
}

/* What would tie the tree to one directory: absolute shebangs into a venv
 * in bin/, a fixed VIRTUAL_ENV in activate, absolute .pth lines. */
static int reloc_one(struct stack *s, sqv_ino_t ino, const char *path,
		     const char *name, void *ctx)
{
	struct counts *c = ctx;
	mode_t m = sqv_index_mode(s->idx, ino);
	size_t plen = strlen(path);

	if (!S_ISREG(m))
		return 0;
	if (!strncmp(path, "/bin/", 5) && !strchr(path + 5, '/')) {
		char *head = read_small(s, path, 1024, NULL);
		if (!head)
			return 0;
		char *interp = NULL;
		if (!strncmp(head, "#!/bin/sh\n'''exec' /", 20))
			interp = head + 19;
		else if (!strncmp(head, "#!/", 3))
			interp = head + 2;
		if (interp) {
			interp[strcspn(interp, " \t\r\n")] = 0;
			const char *base = strrchr(interp, '/');
			size_t dlen = (size_t)(base - interp);
			bool system = (dlen == 8 && !strncmp(interp, "/usr/bin", 8)) ||
				      (dlen == 4 && !strncmp(interp, "/bin", 4)) ||
				      (dlen == 14 && !strncmp(interp, "/usr/local/bin", 14));
			if (!strncmp(base + 1, "python", 6) && !system &&
			    dlen >= 4 && !strncmp(base - 4, "/bin", 4)) {
				char what[PATH_BUF + 64];
				snprintf(what, sizeof(what),
					 "absolute shebang #!%s", interp);
				reloc_warn(c, path, what);
			}
		}
		if (!strcmp(name, "activate")) {
			free(head);
			head = read_small(s, path, 1 << 16, NULL);
			if (head && (strstr(head, "\nVIRTUAL_ENV=/") ||
				     strstr(head, "\nVIRTUAL_ENV='/") ||
				     strstr(head, "\nVIRTUAL_ENV=\"/")))
				reloc_warn(c, path, "sets a fixed VIRTUAL_ENV");
		}
		free(head);
	} else if (plen > 4 && !strcmp(path + plen - 4, ".pth") &&
		   strstr(path, "/site-packages/")) {
		char *text = read_small(s, path, 1 << 16, NULL);
		if (text && (text[0] == '/' || strstr(text, "\n/")))
			reloc_warn(c, path, "an absolute path in a .pth file");
		free(text);
	}
	return 0;
}

static int pyc_one(struct stack *s, sqv_ino_t ino, const char *path,
		   const char *name, void *ctx)
{
	struct counts *c = ctx;
	size_t nlen = strlen(name);
	char want[PATH_BUF];
	sqv_ino_t pyc;

	if (!S_ISREG(sqv_index_mode(s->idx, ino)) || nlen < 4 ||
	    strcmp(name + nlen - 3, ".py") || !strncmp(path, "/bin/", 5))
		return 0;
	c->modules++;
	size_t dlen = strlen(path) - nlen;
	if (snprintf(want, sizeof(want), "%.*s__pycache__/%.*s.%s.pyc",
		     (int)dlen, path, (int)(nlen - 3), name, c->tag) >=
	    (int)sizeof(want))
		return 0;
	if (sqv_index_lookup_path(s->idx, want, &pyc) == 0 &&
	    S_ISREG(sqv_index_mode(s->idx, pyc)))
		return 0;
	if (c->nopyc < 3)
		snprintf(c->nopyc_first[c->nopyc], sizeof(c->nopyc_first[0]),
			 "%s", path);
	c->nopyc++;
	return 0;
}

/* The Python version of the tree: pyvenv.cfg's version (or version_info),
 * else a conda prefix's lib/pythonX.Y. */
static void python_version(struct stack *s, char *ver, size_t vlen,
			   char *tag, size_t tlen)
{
	char *cfg = read_small(s, "/pyvenv.cfg", 1 << 16, NULL);
	unsigned major = 0, minor = 0;

	ver[0] = tag[0] = 0;
	if (cfg) {
		for (char *line = strtok(cfg, "\n"); line;
		     line = strtok(NULL, "\n")) {
			char key[32];
			int n = 0;
			if (sscanf(line, " %31[a-z_] = %n", key, &n) == 1 && n &&
			    (!strcmp(key, "version") ||
			     !strcmp(key, "version_info"))) {
				snprintf(ver, vlen, "%.*s",
					 (int)strcspn(line + n, " \r"),
					 line + n);
				break;
			}
		}
		free(cfg);
	}
	if (ver[0] && sscanf(ver, "%u.%u", &major, &minor) == 2) {
		snprintf(tag, tlen, "cpython-%u%u", major, minor);
		return;
	}
	sqv_ino_t lib;
	uint32_t count;
	if (sqv_index_lookup_path(s->idx, "/lib", &lib) < 0 ||
	    sqv_index_dir_count(s->idx, lib, &count) < 0)
		return;
	for (uint32_t i = 0; i < count; i++) {
		const char *name;
		sqv_ino_t child;
		if (sqv_index_dir_entry(s->idx, lib, i, &name, &child) == 0 &&
		    sscanf(name, "python%u.%u", &major, &minor) == 2) {
			snprintf(ver, vlen, "%u.%u (from lib/%s)", major,
				 minor, name);
			snprintf(tag, tlen, "cpython-%u%u", major, minor);
			return;
		}
	}
}

static int info_image(const char *name)
{
	struct stack s;
	struct counts c = { 0 };
	const struct sqv_image_info *in;
	char b1[32], b2[32], when[40];
	struct stat st;

	if (stack_open(&s, (char **)&name, 1, true, 1u << 20) < 0)
		return 1;
	in = sqv_image_info(s.img[0]);
	printf("%s\n", name);
	printf("  compression:  %s\n", in->compression);
	human(in->block_size, b1, sizeof(b1));
	printf("  block size:   %s\n", b1);
	human(in->bytes_used, b1, sizeof(b1));
	if (stat(name, &st) == 0)
		human((uint64_t)st.st_size, b2, sizeof(b2));
	else
		snprintf(b2, sizeof(b2), "?");
	printf("  image size:   %s (file %s)\n", b1, b2);
	time_string(in->mkfs_time, when, sizeof(when));
	printf("  created:      %s\n", when);
	printf("  inodes:       %" PRIu32 " (%" PRIu32 " fragment blocks)%s\n",
	       in->inode_count, in->fragment_count,
	       in->has_xattrs ? ", with xattrs" : "");
	walk(&s, count_one, &c);
	human(c.bytes, b1, sizeof(b1));
	/* The root is nobody's entry: not counted, as sqvenvfs-pack's
	 * summary does not count it. */
	printf("  entries:      %" PRIu64 " files, %" PRIu64 " directories, %"
	       PRIu64 " symlinks%s below the root\n", c.files, c.dirs, c.links,
	       c.other ? ", and others" : "");
	printf("  file data:    %s uncompressed\n", b1);
	printf("  whiteouts:    %" PRIu64 " (and %" PRIu64
	       " opaque directories)\n", c.whiteouts, c.opaque);
	struct sqv_hot_where hot;
	if (c.hot_record && sqv_hot_locate(s.img[0], &hot) == 0)
		printf("  hot-first:    yes (its record " SQV_HOT_NAME
		       " is hidden from the mount and not counted above)\n");
	else if (c.hot_record)
		printf("  hot-first:    no: its " SQV_HOT_NAME " is not a "
		       "hot-range record (hidden from the mount and not "
		       "counted above; no prefetch)\n");
	stack_free(&s);
	return 0;
}

static int python_report(struct stack *s, const char *label)
{
	struct counts c = { 0 };
	char ver[64];

	python_version(s, ver, sizeof(ver), c.tag, sizeof(c.tag));
	printf("%s\n", label);
	if (!ver[0]) {
		printf("  python:       unknown (no pyvenv.cfg, no lib/pythonX.Y)\n");
	} else {
		printf("  python:       %s\n", ver);
		walk(s, pyc_one, &c);
		printf("  without .pyc: %" PRIu64 " of %" PRIu64
		       " modules lack a %s pyc%s\n", c.nopyc, c.modules, c.tag,
		       c.nopyc ? " (each import recompiles them)" : "");
		for (uint64_t i = 0; i < c.nopyc && i < 3; i++)
			printf("                %s\n", c.nopyc_first[i]);
	}
	walk(s, reloc_one, &c);
	if (!c.reloc)
		printf("  relocation:   nothing ties it to one path\n");
	else if (c.reloc > 10)
		printf("  relocation:   ... %" PRIu64 " in all\n", c.reloc);
	return 0;
}

/* Whiteouts in layer i that hide nothing below it: usually harmless, but a
 * delta built against another base than the one it is stacked on. */
struct dangling_ctx {
	struct stack *below;
	uint64_t count;
};

static int dangling_one(struct stack *s, sqv_ino_t ino, const char *path,
			const char *name, void *ctx)
{
	struct dangling_ctx *d = ctx;
	const char *target;
	size_t tlen;
	char want[PATH_BUF];
	sqv_ino_t x;

	(void)s;
	(void)ino;
	if (sqv_layer_classify(name, strlen(name), &target, &tlen) !=
	    SQV_NAME_WHITEOUT)
		return 0;
	size_t dlen = strlen(path) - strlen(name);
	snprintf(want, sizeof(want), "%.*s%.*s", (int)dlen, path, (int)tlen,
		 target);
	if (sqv_index_lookup_path(d->below->idx, want, &x) == -ENOENT) {
		if (d->count++ < 5)
			printf("  dangling:     %s hides nothing below\n", path);
	}
	return 0;
}

static int cmd_info(char **names, unsigned n)
{
	int rc = 0;

	for (unsigned i = 0; i < n; i++)
		if (info_image(names[i]) != 0)
			return 1;
	struct stack s;
	if (n > 1) {
		printf("stack of %u images\n", n);
		if (stack_open(&s, names, n, false, 1u << 20) < 0) {
			printf("  resolves:     no\n");
			return 1;
		}
		printf("  resolves:     yes, %zu entries, %zu inodes\n",
		       sqv_index_entry_count(s.idx),
		       sqv_index_inode_count(s.idx));
		for (unsigned i = 1; i < n; i++) {
			struct stack below, layer;
			struct dangling_ctx d = { .below = &below };
			if (stack_open(&below, names, i, false, 0) < 0)
				return 1;
			if (stack_open(&layer, &names[i], 1, true, 0) < 0) {
				stack_free(&below);
				return 1;
			}
			walk(&layer, dangling_one, &d);
			if (d.count)
				printf("  dangling:     %" PRIu64 " whiteout(s) in %s"
				       " hide nothing below it\n", d.count,
				       names[i]);
			stack_free(&layer);
			stack_free(&below);
		}
		python_report(&s, "stack (merged view)");
	} else {
		if (stack_open(&s, names, 1, false, 1u << 20) < 0)
			return 1;
		python_report(&s, "contents");
	}
	stack_free(&s);
	return rc;
}

/* ---- main ------------------------------------------------------------- */

/* Whether path is a regular file starting with the squashfs magic. */
static bool is_squashfs_file(const char *path)
{
	unsigned char magic[4];
	struct stat st;
	bool yes = false;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);

	if (fd < 0)
		return false;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
	    pread(fd, magic, sizeof(magic), 0) == (ssize_t)sizeof(magic))
		yes = !memcmp(magic, "hsqs", 4);
	close(fd);
	return yes;
}

int main(int argc, char **argv)
{
	enum { OPT_RAW = 256, OPT_HASH };
	static const struct option longopts[] = {
		{ "raw", no_argument, NULL, OPT_RAW },
		{ "hash", no_argument, NULL, OPT_HASH },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	static const char *cmds[] = { "info", "ls", "stat", "cat", "dump",
				      "verify", "seal", "digest", "extents", NULL };
	const char *cmd = "info";
	int c;

	sqv_log_set_ident(PROG);
	opterr = 0;
	/* Options may come before and after the command word. */
	for (int pass = 0; pass < 2; pass++) {
		while ((c = getopt_long(argc, argv, "+lhV", longopts, NULL)) != -1) {
			switch (c) {
			case 'l': opt_long = true; break;
			case OPT_RAW: opt_raw = true; break;
			case OPT_HASH: opt_hash = true; break;
			case 'h': usage(stdout); return 0;
			case 'V':
				printf(PROG " %s\n", SQV_VERSION);
				return 0;
			default:
				/* getopt's own message and the whole usage
				 * would bury the one thing that is wrong */
				if (optopt > 0 && optopt < 256)
					fprintf(stderr, PROG ": -%c: unknown option "
						"(see --help)\n", optopt);
				else
					fprintf(stderr, PROG ": %s: %s (see --help)\n",
						argv[optind - 1], optopt ?
						"takes no value" : "unknown option");
				return EXIT_USAGE;
			}
		}
		if (pass || optind >= argc)
			break;
		bool found = false;
		for (int i = 0; cmds[i] && !found; i++) {
			if (!strcmp(argv[optind], cmds[i])) {
				cmd = cmds[i];
				found = true;
			}
		}
		if (!found) {
			/* A word with no '/' or '.' that names no file
			 * here is likelier a mistyped command than an
			 * image: say both, rather than "no such file".
			 * After "--" it is an image by the user's word. */
			const char *w = argv[optind];
			struct stat st;
			if (strcmp(argv[optind - 1], "--") != 0 &&
			    !strpbrk(w, "/.") && lstat(w, &st) < 0 &&
			    errno == ENOENT) {
				fprintf(stderr, PROG ": %s: neither a command (",
					w);
				for (int i = 0; cmds[i]; i++)
					fprintf(stderr, "%s%s", i ? ", " : "",
						cmds[i]);
				fprintf(stderr, ") nor a file (see --help)\n");
				return EXIT_USAGE;
			}
			break;
		}
		/* restart getopt on what follows the command word */
		argv += optind;
		argc -= optind;
		optind = 1;
	}
	char **rest = argv + optind;
	int nrest = argc - optind;
	bool wants_path = !strcmp(cmd, "ls") || !strcmp(cmd, "stat") ||
			  !strcmp(cmd, "cat");
	/* `ls IMAGE...` with no path lists the root: the last argument is
	 * taken as an image, not a path, when it is a squashfs file here */
	bool ls_root = !strcmp(cmd, "ls") && nrest >= 1 &&
		       is_squashfs_file(rest[nrest - 1]);

	if (nrest < (wants_path && !ls_root ? 2 : 1)) {
		fprintf(stderr, PROG ": %s: %s (see --help)\n", cmd, wants_path ?
			"give one or more images and a path" :
			"give one or more images");
		return EXIT_USAGE;
	}
	/* An option the command does not use is refused, not ignored. */
	const char *unused = opt_long && strcmp(cmd, "ls") ? "-l" :
			     opt_hash && strcmp(cmd, "dump") ? "--hash" :
			     opt_raw && !wants_path && strcmp(cmd, "dump") ?
			     "--raw" : NULL;
	if (unused) {
		fprintf(stderr, PROG ": %s: %s is not an option of %s\n", cmd,
			unused, cmd);
		return EXIT_USAGE;
	}
	if (ls_root)
		return cmd_ls(rest, (unsigned)nrest, "/");
	if (wants_path) {
		const char *path = rest[nrest - 1];
		unsigned n = (unsigned)nrest - 1;
		if (!strcmp(cmd, "ls"))
			return cmd_ls(rest, n, path);
		if (!strcmp(cmd, "stat"))
			return cmd_stat(rest, n, path);
		return cmd_cat(rest, n, path);
	}
	if (!strcmp(cmd, "dump"))
		return cmd_dump(rest, (unsigned)nrest);
	if (!strcmp(cmd, "verify"))
		return cmd_verify(rest, (unsigned)nrest);
	if (!strcmp(cmd, "seal") || !strcmp(cmd, "digest")) {
		int rc = 0;
		for (int i = 0; i < nrest; i++)
			rc |= !strcmp(cmd, "seal") ? sqv_inspect_seal(rest[i]) :
						     sqv_inspect_digest(rest[i]);
		return rc;
	}
	if (!strcmp(cmd, "extents"))
		return cmd_extents(rest, (unsigned)nrest);
	return cmd_info(rest, (unsigned)nrest);
}
