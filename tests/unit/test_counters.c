/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Unit tests of lib/counters: reading the daemon's "name value" lines back
 * (and refusing other shapes), the unpacked-venv estimate's arithmetic,
 * and the human form of fixed counters, compared line for line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "counters.h"

/* Counters as a daemon with zero-open, one hot-first image and a warm
 * import behind it might report them. */
static const char hot_mount[] =
	"requests 9950\n"
	"init 1\n"
	"lookup 4200\n"
	"forget 0\n"
	"getattr 120\n"
	"readlink 5\n"
	"open 1\n"
	"read 2400\n"
	"release 0\n"
	"opendir 1\n"
	"readdir 0\n"
	"readdirplus 30\n"
	"releasedir 0\n"
	"statfs 2\n"
	"getxattr 1\n"
	"listxattr 0\n"
	"ioctl 2221\n"
	"read_bytes 188743680\n"
	"files_read 1800\n"
	"kernel_skips_open 1\n"
	"cache_hits 3100\n"
	"cache_misses 356\n"
	"backing_reads 1093\n"
	"backing_bytes 222298112\n"
	"hot_bytes 50331648\n"
	"prefetch_reads 12\n"
	"prefetch_bytes 50331648\n"
	"prefetch_blocks 130\n"
	"prefetch_used_blocks 120\n"
	"layers 1\n"
	"image_bytes 232783872\n"
	"entries 22441\n"
	"uptime_seconds 312\n";

static const char hot_human[] =
	"sqvenvfs at /home/me/.venv: 1 image (222 MiB), 22,441 entries, up 5 min\n"
	"Images read:  1,093 reads, 212 MiB from the file system holding them\n"
	"From memory:  4,200 lookups, 120 getattrs, 30 listings, 2,221 isatty\n"
	"File reads:   2,400 requests, 180 MiB of file data\n"
	"Block cache:  3,100 hits, 356 misses (89 %)\n"
	"Prefetch:     12 reads, 48 MiB (hot range 48 MiB); 120 of 130 blocks used\n"
	"Kernel:       answers repeats from its caches, not counted here; no opens sent\n"
	"If unpacked:  ~8,555 requests to that file system, 7.8 times the image reads\n"
	"  (basis: one per lookup, getattr, readlink, listing and file read this\n"
	"  daemon saw, and 1,800 opens, one per file opened: what the same kernel\n"
	"  caches would ask of a plain copy; see sqvenvfs(1), STATISTICS)\n";

static void compare(const char *got, const char *want)
{
	if (strcmp(got, want) != 0)
		fprintf(stderr, "--- got:\n%s--- want:\n%s", got, want);
	CHECK(strcmp(got, want) == 0);
}

static void test_human_hot(void)
{
	struct sqv_counters c;
	struct sqv_unpacked u;
	char buf[4096];

	CHECK_EQ(sqv_counters_parse(hot_mount, &c), 0);
	CHECK_EQ(sqv_counters_get(&c, "lookup"), 4200);
	CHECK_EQ(sqv_counters_get(&c, "no_such_counter"), 0);

	sqv_counters_unpacked(&c, &u);
	CHECK_EQ(u.metadata, 4200 + 120 + 5 + 0 + 30);
	CHECK_EQ(u.opens, 1800); /* files read: the kernel sent one open */
	CHECK_EQ(u.reads, 2400);
	CHECK_EQ(u.total, 4355 + 1800 + 2400);

	size_t len = sqv_counters_human(&c, "/home/me/.venv", buf, sizeof(buf));
	CHECK_EQ(len, strlen(hot_human));
	compare(buf, hot_human);

	/* snprintf-style: a short buffer is cut, ended, and the length is
	 * still the whole text's. */
	char small[40];
	CHECK_EQ(sqv_counters_human(&c, "/home/me/.venv", small, sizeof(small)),
		 strlen(hot_human));
	CHECK_EQ(strlen(small), sizeof(small) - 1);
	CHECK(strncmp(small, hot_human, sizeof(small) - 1) == 0);
	CHECK_EQ(sqv_counters_human(&c, "/home/me/.venv", NULL, 0),
		 strlen(hot_human));
}

/* No zero-open, so every open() reached the daemon; no hot range, so no
 * prefetch line; two images; a daemon older than files_read. */
static void test_human_plain(void)
{
	static const char text[] =
		"lookup 30\n"
		"getattr 4\n"
		"open 25\n"
		"read 40\n"
		"readdir 6\n"
		"ioctl 25\n"
		"read_bytes 900\n"
		"cache_hits 0\n"
		"cache_misses 0\n"
		"backing_reads 3\n"
		"backing_bytes 12288\n"
		"layers 2\n"
		"image_bytes 40960\n"
		"entries 120\n"
		"uptime_seconds 7300\n";
	static const char want[] =
		"sqvenvfs at /mnt: 2 images (40 KiB), 120 entries, up 2 h 1 min\n"
		"Images read:  3 reads, 12 KiB from the file system holding them\n"
		"From memory:  30 lookups, 4 getattrs, 6 listings, 25 isatty\n"
		"File reads:   40 requests, 900 B of file data\n"
		"Block cache:  0 hits, 0 misses\n"
		"Kernel:       answers repeats from its caches, not counted here\n"
		"If unpacked:  ~105 requests to that file system, 35 times the image reads\n"
		"  (basis: one per lookup, getattr, readlink, listing and file read this\n"
		"  daemon saw, and 25 opens, one per file opened: what the same kernel\n"
		"  caches would ask of a plain copy; see sqvenvfs(1), STATISTICS)\n";
	struct sqv_counters c;
	char buf[4096];

	CHECK_EQ(sqv_counters_parse(text, &c), 0);
	sqv_counters_human(&c, "/mnt", buf, sizeof(buf));
	compare(buf, want);
}

static void test_parse_refuses(void)
{
	static const char *const bad[] = {
		"lookup\n",          /* no value */
		"lookup \n",         /* empty value */
		" 12\n",             /* no name */
		"lookup 12x\n",      /* not a number */
		"lookup -1\n",       /* no sign */
		"lookup 99999999999999999999\n", /* past 64 bits */
		"a_name_longer_than_the_forty_eight_bytes_allowed_here 1\n",
	};
	struct sqv_counters c = { .n = 7 };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK_EQ(sqv_counters_parse(bad[i], &c), -EINVAL);
		CHECK_EQ(c.n, 7); /* untouched on failure */
	}
	CHECK_EQ(sqv_counters_parse("", &c), 0);
	CHECK_EQ(c.n, 0);
	CHECK_EQ(sqv_counters_parse("a 1\nb 18446744073709551615", &c), 0);
	CHECK_EQ(c.n, 2);
	CHECK(sqv_counters_get(&c, "b") == UINT64_MAX);

	/* More counters than the table holds. */
	size_t cap = (SQV_COUNTERS_MAX + 1) * 16;
	char *many = malloc(cap);
	size_t len = 0;
	for (int i = 0; i <= SQV_COUNTERS_MAX; i++)
		len += (size_t)snprintf(many + len, cap - len, "c%d 1\n", i);
	CHECK_EQ(sqv_counters_parse(many, &c), -E2BIG);
	free(many);
}

int main(void)
{
	test_human_hot();
	test_human_plain();
	test_parse_refuses();
	return check_done();
}
