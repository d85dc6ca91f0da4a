/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * rlimits: what the process's resource limits leave the daemon, looked at
 * once before serving, so that a limit shows up as a line at start rather
 * than as an abort or an OOM kill under load.
 *  - file descriptors: a few are held in reserve for the way out, glibc's
 *    unwinder (which pthread_cancel loads on first use) is loaded up front,
 *    and clone_fd (one /dev/fuse descriptor per thread) is turned off when
 *    the limit cannot hold it;
 *  - memory: the tightest of the cgroup's limit (v2 memory.max, v1
 *    memory.limit_in_bytes, each up the hierarchy) and RLIMIT_AS bounds the
 *    block cache.
 */
#ifndef SQVENVFS_RLIMITS_H
#define SQVENVFS_RLIMITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SQV_FD_RESERVE 2

struct sqv_fd_plan {
	int reserve[SQV_FD_RESERVE]; /* closed before the tear-down */
	bool clone_fd;
};

/* Check RLIMIT_NOFILE against what a stack of nlayers served by threads
 * needs (raising the soft limit towards the hard one when that helps),
 * decide clone_fd, load the unwinder and take the reserve. 0, or 1 with
 * the reason logged. */
int sqv_limits_fds(unsigned nlayers, unsigned threads,
		   struct sqv_fd_plan *plan);
/* Give the reserve back: the way out (unmount, fusermount3) may need it. */
void sqv_limits_release_fds(struct sqv_fd_plan *plan);

/* Size the block cache under the memory limit. *cache_bytes is the asked
 * size, given as the text asked (-o cache_size='s value), or the default
 * when asked is NULL; a default that does not fit is shrunk with a log
 * line, an asked one that does not fit is refused (1, logged). block_size
 * is the largest of the stack. */
int sqv_limits_cache(size_t *cache_bytes, const char *asked, unsigned threads,
		     uint32_t block_size);

#endif
