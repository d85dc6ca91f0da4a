/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * A fault-injecting layer under the image, for tests: an LD_PRELOAD shim
 * over pread()/pread64().
 *
 * While the file named by $SQV_FAULT_CONTROL exists, it holds one line
 * "MODE START END" and every pread of the file named by $SQV_FAULT_FILE
 * that overlaps bytes [START, END) is faulted: MODE "eio" fails it with
 * EIO, "short" returns half of what was asked (at least one byte). Without
 * the control file reads pass through, so a test turns faults on and off
 * while the daemon runs. Only the image file is affected.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

typedef ssize_t (*pread_fn)(int, void *, size_t, off_t);

static int fault_for(int fd, off_t off, size_t size, char *mode)
{
	const char *control = getenv("SQV_FAULT_CONTROL");
	const char *file = getenv("SQV_FAULT_FILE");
	char link[64], target[PATH_MAX];
	unsigned long long start, end;
	FILE *f;
	int saved = errno;

	if (!control || !file)
		return 0;
	f = fopen(control, "re");
	if (!f) {
		errno = saved;
		return 0;
	}
	int n = fscanf(f, "%7s %llu %llu", mode, &start, &end);
	fclose(f);
	errno = saved;
	if (n != 3)
		return 0;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t len = readlink(link, target, sizeof(target) - 1);
	errno = saved;
	if (len < 0)
		return 0;
	target[len] = '\0';
	if (strcmp(target, file) != 0)
		return 0;
	return (unsigned long long)off < end &&
	       (unsigned long long)off + size > start;
}

static ssize_t faulty(pread_fn real, int fd, void *buf, size_t size, off_t off)
{
	char mode[8];

	if (size > 0 && fault_for(fd, off, size, mode)) {
		if (strcmp(mode, "eio") == 0) {
			errno = EIO;
			return -1;
		}
		if (strcmp(mode, "short") == 0 && size > 1)
			size /= 2;
	}
	return real(fd, buf, size, off);
}

ssize_t pread(int fd, void *buf, size_t size, off_t off)
{
	static pread_fn real;
	if (!real)
		real = (pread_fn)dlsym(RTLD_NEXT, "pread");
	return faulty(real, fd, buf, size, off);
}

ssize_t pread64(int fd, void *buf, size_t size, off_t off)
{
	static pread_fn real;
	if (!real)
		real = (pread_fn)dlsym(RTLD_NEXT, "pread64");
	return faulty(real, fd, buf, size, off);
}
