/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Unit tests of lib/base/: the size grammar (docs/sizes.md), the superblock
 * check against images made by mksquashfs and damaged copies of them, and
 * mountinfo against real mounts, including a line longer than 8 KiB and a
 * mount point whose name needs octal escapes.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "err.h"
#include "mountinfo.h"
#include "size.h"
#include "superblock.h"

static void test_size(void)
{
	static const struct {
		const char *s;
		int rc;
		uint64_t v;
	} cases[] = {
		{ "0", 0, 0 },
		{ "4096", 0, 4096 },
		{ "64M", 0, 64ull << 20 },
		{ "64m", 0, 64ull << 20 },
		{ "64MiB", 0, 64ull << 20 },
		{ "64mib", 0, 64ull << 20 },
		{ "64MB", 0, 64ull << 20 },
		{ "64Mi", 0, 64ull << 20 },
		{ "512K", 0, 512ull << 10 },
		{ "1G", 0, 1ull << 30 },
		{ "200G", 0, 200ull << 30 },
		{ "2T", 0, 2ull << 40 },
		{ "16777215T", 0, 16777215ull << 40 },
		{ "18446744073709551615", 0, UINT64_MAX },
		{ "18446744073709551616", -ERANGE, 0 },
		{ "16777216T", -ERANGE, 0 },
		{ "", -EINVAL, 0 },
		{ "M", -EINVAL, 0 },
		{ "-1", -EINVAL, 0 },
		{ "+1", -EINVAL, 0 },
		{ " 1", -EINVAL, 0 },
		{ "1 ", -EINVAL, 0 },
		{ "1B", -EINVAL, 0 },
		{ "1iB", -EINVAL, 0 },
		{ "1P", -EINVAL, 0 },
		{ "1KK", -EINVAL, 0 },
		{ "1KBi", -EINVAL, 0 },
		{ "1.5G", -EINVAL, 0 },
		{ "0x10", -EINVAL, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t v = 12345;
		int rc = sqv_size_parse(cases[i].s, &v);
		if (rc != cases[i].rc || (rc == 0 && v != cases[i].v) ||
		    (rc != 0 && v != 12345))
			fprintf(stderr, "size \"%s\": rc %d value %llu\n",
				cases[i].s, rc, (unsigned long long)v);
		CHECK_EQ(rc, cases[i].rc);
		CHECK(rc == 0 ? v == cases[i].v : v == 12345);
	}
}

/* Sizes written for people: the rounding edges and the extremes. */
static void test_size_format(void)
{
	static const struct {
		uint64_t v;
		const char *s;
	} cases[] = {
		{ 0, "0 B" },
		{ 1, "1 B" },
		{ 1023, "1023 B" },
		{ 1024, "1.0 KiB" },
		{ 1535, "1.5 KiB" },
		{ 1536, "1.5 KiB" },
		{ 10 * 1024 - 52, "9.9 KiB" },
		{ 10 * 1024 - 51, "10 KiB" },
		{ 212ull << 20, "212 MiB" },
		{ (1ull << 20) - 513, "1023 KiB" },
		{ (1ull << 20) - 512, "1.0 MiB" },
		{ 3ull << 30, "3.0 GiB" },
		{ 23ull << 30, "23 GiB" },
		{ 5ull << 40, "5.0 TiB" },
		{ UINT64_MAX, "16 EiB" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[SQV_SIZE_FORMAT_MAX];
		int n = sqv_size_format(cases[i].v, buf, sizeof(buf));
		if (strcmp(buf, cases[i].s) != 0)
			fprintf(stderr, "size %llu: \"%s\", want \"%s\"\n",
				(unsigned long long)cases[i].v, buf, cases[i].s);
		CHECK(strcmp(buf, cases[i].s) == 0);
		CHECK_EQ(n, strlen(cases[i].s));
	}
	/* snprintf's contract: a short buffer is cut and NUL-ended. */
	char small[4];
	CHECK_EQ(sqv_size_format(212ull << 20, small, sizeof(small)), 7);
	CHECK(strcmp(small, "212") == 0);
}

/* The superblock of a real image, from mksquashfs. */
static int make_image(const char *dir, const char *comp, unsigned char *sb,
		      uint64_t *size)
{
	char *cmd = NULL, *img = NULL;
	struct stat st;

	if (asprintf(&img, "%s/%s.sqfs", dir, comp) < 0 ||
	    asprintf(&cmd, "mkdir -p %s/src && echo hello > %s/src/f && "
		     "mksquashfs %s/src %s -comp %s -noappend -no-progress -quiet "
		     ">/dev/null", dir, dir, dir, img, comp) < 0)
		return -1;
	int rc = system(cmd);
	free(cmd);
	if (rc != 0) {
		free(img);
		return -1;
	}
	int fd = open(img, O_RDONLY);
	free(img);
	if (fd < 0 || fstat(fd, &st) < 0 ||
	    pread(fd, sb, SQV_SUPERBLOCK_SIZE, 0) != SQV_SUPERBLOCK_SIZE)
		return -1;
	close(fd);
	*size = (uint64_t)st.st_size;
	return 0;
}

static void test_superblock(const char *dir)
{
	unsigned char good[SQV_SUPERBLOCK_SIZE], bad[SQV_SUPERBLOCK_SIZE];
	struct sqv_superblock sb;
	uint64_t size;
	char why[160];

	CHECK_EQ(make_image(dir, "zstd", good, &size), 0);
	CHECK_EQ(sqv_superblock_check(good, sizeof(good), size, &sb, why,
				      sizeof(why)), 0);
	CHECK_EQ(sb.compression, SQV_COMP_ZSTD);
	CHECK_EQ(sb.major, 4);
	CHECK_EQ(sb.block_size, 131072);
	CHECK(sb.bytes_used <= size);
	CHECK(strcmp(sqv_superblock_comp_name(sb.compression), "zstd") == 0);

	/* Too short to be one. */
	CHECK_EQ(sqv_superblock_check(good, 40, size, &sb, why, sizeof(why)),
		 -ENOTSUP);
	CHECK(strstr(why, "not a squashfs image") != NULL);
	/* Bad magic. */
	memcpy(bad, good, sizeof(bad));
	bad[0] = 'x';
	CHECK_EQ(sqv_superblock_check(bad, sizeof(bad), size, &sb, why, sizeof(why)),
		 -ENOTSUP);
	CHECK(strcmp(why, "not a squashfs image (bad magic)") == 0);
	/* Version 4.1: the Slurm copy used to take any 4.x. */
	memcpy(bad, good, sizeof(bad));
	bad[30] = 1;
	CHECK_EQ(sqv_superblock_check(bad, sizeof(bad), size, &sb, why, sizeof(why)),
		 -ENOTSUP);
	CHECK(strcmp(why, "unsupported squashfs version 4.1") == 0);
	/* Version 3.0. */
	memcpy(bad, good, sizeof(bad));
	bad[28] = 3;
	CHECK_EQ(sqv_superblock_check(bad, sizeof(bad), size, &sb, why, sizeof(why)),
		 -ENOTSUP);
	/* Unknown compression id. */
	memcpy(bad, good, sizeof(bad));
	bad[20] = 9;
	CHECK_EQ(sqv_superblock_check(bad, sizeof(bad), size, &sb, why, sizeof(why)),
		 -ENOTSUP);
	CHECK(strstr(why, "unsupported compression") != NULL);
	/* Block size that is no power of two. */
	memcpy(bad, good, sizeof(bad));
	bad[12] ^= 1;
	CHECK_EQ(sqv_superblock_check(bad, sizeof(bad), size, &sb, why, sizeof(why)),
		 -SQV_ECORRUPT);
	/* Truncated file. */
	CHECK_EQ(sqv_superblock_check(good, sizeof(good), sb.bytes_used - 1, &sb,
				      why, sizeof(why)), -SQV_ECORRUPT);
	CHECK(strncmp(why, "truncated", 9) == 0);
	/* A table past bytes_used. */
	memcpy(bad, good, sizeof(bad));
	memset(bad + 64, 0x7f, 8);
	CHECK_EQ(sqv_superblock_check(bad, sizeof(bad), size, &sb, why, sizeof(why)),
		 -SQV_ECORRUPT);
	/* Every compression mksquashfs here makes passes. */
	static const char *const comps[] = { "gzip", "xz", "lz4", "lzo" };
	for (size_t i = 0; i < sizeof(comps) / sizeof(comps[0]); i++) {
		CHECK_EQ(make_image(dir, comps[i], good, &size), 0);
		CHECK_EQ(sqv_superblock_check(good, sizeof(good), size, &sb, why,
					      sizeof(why)), 0);
		CHECK(strcmp(sqv_superblock_comp_name(sb.compression), comps[i]) == 0);
	}
}

/* In a private mount namespace (root only): a tmpfs at a path with a space
 * and a newline in its name, and a bind mount whose mountinfo line is longer
 * than the 8 KiB lines the old Slurm parser read. */
static int mount_child(const char *dir)
{
	char odd[PATH_MAX], deep[PATH_MAX];
	struct sqv_mount m;
	int fails = 0;

	if (unshare(CLONE_NEWNS) < 0 ||
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return 77;
	snprintf(odd, sizeof(odd), "%s/a b\nc\\d", dir);
	if (mkdir(odd, 0755) < 0 || mount("sqvtest", odd, "tmpfs", 0, "size=1M") < 0)
		return 77;
	fails += sqv_mountinfo_find(odd, &m) != 1 || strcmp(m.fstype, "tmpfs") != 0;
	fails += m.has_user_id || m.has_group_id;
	/* The directory above it is no mount point. */
	fails += sqv_mountinfo_find(dir, &m) != 0;
	/* A second mount on top: the topmost one counts. */
	if (mount("sqvtest", odd, "ramfs", 0, NULL) < 0)
		return 77;
	fails += sqv_mountinfo_find(odd, &m) != 1 || strcmp(m.fstype, "ramfs") != 0;

	/* Root and mount point fields of ~4 KiB each, 8 KiB together. */
	size_t len = snprintf(deep, sizeof(deep), "%s", dir);
	while (len + 60 < 4000) {
		len += snprintf(deep + len, sizeof(deep) - len, "/%.50s",
				"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
		if (mkdir(deep, 0755) < 0)
			return 77;
	}
	char under[PATH_MAX + 8];
	snprintf(under, sizeof(under), "%s/x", odd);
	if (mkdir(under, 0755) < 0)
		return 77;
	if (mount(deep, under, NULL, MS_BIND, NULL) < 0)
		return 77;
	if (mount(odd, deep, NULL, MS_BIND | MS_REC, NULL) < 0)
		return 77;
	fails += sqv_mountinfo_find(deep, &m) != 1 || strcmp(m.fstype, "ramfs") != 0;
	return fails ? 1 : 0;
}

static void test_mountinfo(const char *dir)
{
	struct sqv_mount m;

	CHECK_EQ(sqv_mountinfo_find("/proc", &m), 1);
	CHECK(strcmp(m.fstype, "proc") == 0);
	CHECK_EQ(sqv_mountinfo_find("/proc/self", &m), 0);
	CHECK_EQ(sqv_mountinfo_find("/nonexistent/sqvenvfs", &m), 0);
	if (geteuid() != 0) {
		printf("mountinfo: namespace part needs root; skipped\n");
		return;
	}
	pid_t pid = fork();
	if (pid == 0)
		_exit(mount_child(dir));
	int status;
	waitpid(pid, &status, 0);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
		printf("mountinfo: cannot make a mount namespace here; part skipped\n");
		return;
	}
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(void)
{
	char dir[] = "/tmp/sqv-base-XXXXXX";

	if (!mkdtemp(dir))
		return 99;
	test_size();
	test_size_format();
	test_superblock(dir);
	test_mountinfo(dir);
	char cmd[PATH_MAX];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	return check_done();
}
