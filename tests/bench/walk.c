/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * sqvbench-walk: the "stat everything" walk of the benchmark's large tree.
 *
 * nftw() with FTW_PHYS lstat()s every entry once and reads every directory
 * once, which is what `find`, `du` or a Python tool scanning a conda
 * installation does to a file system. It prints the number of entries and
 * the sum of their sizes so the benchmark can check the walk saw the whole
 * tree.
 */
#include <errno.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static uint64_t entries, bytes;

static int visit(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)ftw;
	if (flag == FTW_NS || flag == FTW_DNR) {
		fprintf(stderr, "sqvbench-walk: %s: %s\n", path,
			flag == FTW_NS ? "cannot stat" : "cannot read directory");
		return 1;
	}
	entries++;
	bytes += (uint64_t)st->st_size;
	return 0;
}

int main(int argc, char *argv[])
{
	int r;

	if (argc != 2) {
		fprintf(stderr, "usage: sqvbench-walk DIR\n");
		return 2;
	}
	r = nftw(argv[1], visit, 64, FTW_PHYS | FTW_MOUNT);
	if (r < 0) {
		fprintf(stderr, "sqvbench-walk: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	if (r != 0)
		return 1;
	printf("%llu %llu\n", (unsigned long long)entries, (unsigned long long)bytes);
	return 0;
}
