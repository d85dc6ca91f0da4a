/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * rlimits: file descriptors and memory, checked once before serving. See
 * rlimits.h for what each promises.
 */
#include "rlimits.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "log.h"

/* ---- file descriptors ---- */

/*
 * What a mount holds while serving, besides clone_fd's: stdin/out/err, one
 * per image, the session's /dev/fuse, syslog's socket or the pipe to the
 * waiting parent, and the reserve. The margin covers what comes and goes
 * (the readiness socket, mountinfo, a memfd while an image opens).
 */
#define FD_BASE 5
#define FD_MARGIN 4

static void *wait_for_cancel(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return NULL;
}

/*
 * glibc's pthread_cancel dlopen()s libgcc_s.so.1 on its first call and
 * aborts the process when it cannot ("libgcc_s.so.1 must be installed for
 * pthread_cancel to work"), which happens when the fd table is full.
 * libfuse cancels its worker threads when the loop ends, before the
 * unmount: load the library now, while descriptors are free, and keep it.
 * glibc's own dlopen then finds it loaded by name and opens nothing. That
 * takes 0.5 ms; cancelling a thread so that glibc loads it took 1.5 ms of
 * every mount (issue 15), and stays the way where the library has another
 * name (glibc's LIBGCC_S_SO).
 */
static int load_unwinder(void)
{
	pthread_t th;
	int err;

	if (dlopen("libgcc_s.so.1", RTLD_NOW | RTLD_NODELETE))
		return 0;
	err = pthread_create(&th, NULL, wait_for_cancel, NULL);
	if (err == 0)
		err = pthread_cancel(th);
	if (err == 0)
		err = pthread_join(th, NULL);
	if (err != 0) {
		sqv_log(SQV_LOG_ERR, "cannot prepare thread cancellation: %s",
			strerror(err));
		return 1;
	}
	return 0;
}

int sqv_limits_fds(unsigned nlayers, unsigned threads,
		   struct sqv_fd_plan *plan)
{
	struct rlimit rl;
	uint64_t need = FD_BASE + nlayers + SQV_FD_RESERVE;
	uint64_t need_clone = need + threads + FD_MARGIN;

	plan->clone_fd = true;
	for (int i = 0; i < SQV_FD_RESERVE; i++)
		plan->reserve[i] = -1;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur < need_clone) {
		/* Raising the soft limit up to the hard one needs no
		 * privilege. */
		struct rlimit want = rl;
		want.rlim_cur = rl.rlim_max == RLIM_INFINITY ||
					rl.rlim_max >= need_clone ?
					need_clone : rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &want) == 0)
			rl = want;
		if (rl.rlim_cur < need) {
			sqv_log(SQV_LOG_ERR,
				"too few open files allowed: RLIMIT_NOFILE is %llu, a stack of %u image(s) needs at least %llu",
				(unsigned long long)rl.rlim_cur, nlayers,
				(unsigned long long)need);
			return 1;
		}
		if (rl.rlim_cur < need_clone && threads > 1) {
			plan->clone_fd = false;
			sqv_log(SQV_LOG_WARNING,
				"the file descriptor limit (RLIMIT_NOFILE %llu) is below the %llu that %u threads with one /dev/fuse descriptor each need: the threads share one",
				(unsigned long long)rl.rlim_cur,
				(unsigned long long)need_clone, threads);
		}
	}
	if (load_unwinder() != 0)
		return 1;
	for (int i = 0; i < SQV_FD_RESERVE; i++) {
		/* Any descriptor will do; "/" is always there. */
		plan->reserve[i] = open("/", O_PATH | O_CLOEXEC);
		if (plan->reserve[i] < 0) {
			sqv_log(SQV_LOG_ERR, "cannot hold a file descriptor in reserve: %s",
				strerror(errno));
			sqv_limits_release_fds(plan);
			return 1;
		}
	}
	return 0;
}

void sqv_limits_release_fds(struct sqv_fd_plan *plan)
{
	for (int i = 0; i < SQV_FD_RESERVE; i++) {
		if (plan->reserve[i] >= 0)
			close(plan->reserve[i]);
		plan->reserve[i] = -1;
	}
}

/* ---- memory ---- */

#define MIB ((uint64_t)1 << 20)
/* Values at or above this mean "no limit" (cgroup v1 writes 2^63 - 4096). */
#define NO_LIMIT ((uint64_t)1 << 62)
/* Slack for what is not counted below: allocator overhead, libfuse's own
 * buffers, the kernel's share of the daemon's requests. */
#define MEM_MARGIN (4 * MIB)
/* Per FUSE thread: libfuse's request buffer (~132 KiB), a zstd context
 * (~160 KiB), the touched part of its stack; for the address space also
 * its stack (glibc's default, RLIMIT_STACK) and lib/'s 1 MiB input buffer,
 * mapped whole. A read in flight holds up to two blocks outside the
 * cache's count. */
#define THREAD_RSS (512 * 1024)
#define THREAD_AS (10 * MIB)

struct mem_limit {
	uint64_t bytes;
	bool address_space; /* RLIMIT_AS: counts mappings, not pages used */
	char source[PATH_MAX + 32];
};

static bool read_u64(const char *path, uint64_t *out)
{
	char buf[64];
	FILE *f = fopen(path, "re");

	if (!f)
		return false;
	bool ok = fgets(buf, sizeof(buf), f) != NULL;
	fclose(f);
	if (!ok || buf[0] < '0' || buf[0] > '9')
		return false; /* "max", or unreadable */
	*out = strtoull(buf, NULL, 10);
	return true;
}

/* Keep the smaller of the limit so far and the one in file, if any. */
static void consider(struct mem_limit *lim, const char *file)
{
	uint64_t v;

	if (read_u64(file, &v) && v < NO_LIMIT && v < lim->bytes) {
		lim->bytes = v;
		lim->address_space = false;
		snprintf(lim->source, sizeof(lim->source), "%s", file);
	}
}

/* Does the comma-separated list have the item? */
static bool has_item(const char *list, const char *item)
{
	size_t n = strlen(item);

	for (const char *p = list; p && *p; p = strchr(p, ',')) {
		if (*p == ',')
			p++;
		if (strncmp(p, item, n) == 0 && (p[n] == ',' || p[n] == '\0' ||
						 p[n] == '\n'))
			return true;
	}
	return false;
}

/*
 * The cgroup's directory for this process under the hierarchy mounted at
 * mnt (whose own root is root), then each parent up to mnt: a limit set on
 * any ancestor applies.
 */
static void walk_cgroup(struct mem_limit *lim, const char *mnt,
			const char *root, const char *cgpath, const char *file)
{
	char dir[PATH_MAX];
	size_t rlen = strlen(root);

	/* Inside a cgroup namespace or a container, the mount's root may
	 * already be (part of) our path. */
	if (strcmp(root, "/") != 0 && strncmp(cgpath, root, rlen) == 0)
		cgpath += rlen;
	if (snprintf(dir, sizeof(dir), "%s%s", mnt, cgpath) >= (int)sizeof(dir))
		return;
	size_t mlen = strlen(mnt);
	for (;;) {
		char path[PATH_MAX + 32];
		size_t len = strlen(dir);
		while (len > mlen && dir[len - 1] == '/')
			dir[--len] = '\0';
		snprintf(path, sizeof(path), "%s/%s", dir, file);
		consider(lim, path);
		char *slash = strrchr(dir, '/');
		if (len <= mlen || !slash || (size_t)(slash - dir) < mlen)
			break;
		*slash = '\0';
	}
}

static void cgroup_limits(struct mem_limit *lim)
{
	char v1_mnt[PATH_MAX] = "", v1_root[PATH_MAX] = "";
	char v2_mnt[PATH_MAX] = "", v2_root[PATH_MAX] = "";
	char *line = NULL;
	size_t cap = 0;
	FILE *f = fopen("/proc/self/mountinfo", "re");

	if (!f)
		return;
	while (getline(&line, &cap, f) > 0) {
		char root[PATH_MAX], mnt[PATH_MAX], type[64], super[512];
		char *sep = strstr(line, " - ");
		if (!sep ||
		    sscanf(line, "%*s %*s %*s %4095s %4095s", root, mnt) != 2 ||
		    sscanf(sep + 3, "%63s %*s %511s", type, super) != 2)
			continue;
		if (strcmp(type, "cgroup2") == 0 && !v2_mnt[0]) {
			snprintf(v2_mnt, sizeof(v2_mnt), "%s", mnt);
			snprintf(v2_root, sizeof(v2_root), "%s", root);
		} else if (strcmp(type, "cgroup") == 0 &&
			   has_item(super, "memory") && !v1_mnt[0]) {
			snprintf(v1_mnt, sizeof(v1_mnt), "%s", mnt);
			snprintf(v1_root, sizeof(v1_root), "%s", root);
		}
	}
	fclose(f);

	f = fopen("/proc/self/cgroup", "re");
	while (f && getline(&line, &cap, f) > 0) {
		/* hierarchy-id:controllers:path */
		char *c1 = strchr(line, ':');
		char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (!c2)
			continue;
		*c2 = '\0';
		char *path = c2 + 1;
		path[strcspn(path, "\n")] = '\0';
		if (strcmp(line, "0:") == 0 && c1[1] == '\0' && v2_mnt[0])
			walk_cgroup(lim, v2_mnt, v2_root, path, "memory.max");
		else if (has_item(c1 + 1, "memory") && v1_mnt[0])
			walk_cgroup(lim, v1_mnt, v1_root, path,
				    "memory.limit_in_bytes");
	}
	if (f)
		fclose(f);
	free(line);
}

static bool memory_limit(struct mem_limit *lim)
{
	struct rlimit rl;

	lim->bytes = UINT64_MAX;
	lim->address_space = false;
	cgroup_limits(lim);
	if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    (uint64_t)rl.rlim_cur < lim->bytes) {
		lim->bytes = rl.rlim_cur;
		lim->address_space = true;
		snprintf(lim->source, sizeof(lim->source), "RLIMIT_AS");
	}
	return lim->bytes != UINT64_MAX;
}

/* A line of /proc/self/status in bytes ("RssAnon:", "VmSize:"). */
static uint64_t self_status(const char *key)
{
	FILE *f = fopen("/proc/self/status", "re");
	char line[256];
	uint64_t kib = 0;
	size_t n = strlen(key);

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, n) == 0) {
			kib = strtoull(line + n, NULL, 10);
			break;
		}
	fclose(f);
	return kib * 1024;
}

int sqv_limits_cache(size_t *cache_bytes, const char *asked, unsigned threads,
		     uint32_t block_size)
{
	struct mem_limit lim;

	if (!memory_limit(&lim))
		return 0;
	/* What the daemon uses now (the index is built), and what serving
	 * adds besides the cache. Anonymous memory only for a cgroup: the
	 * page cache it is charged for is given back under pressure. */
	uint64_t used = self_status(lim.address_space ? "VmSize:" : "RssAnon:");
	uint64_t per_thread = (lim.address_space ? THREAD_AS : THREAD_RSS) +
			      2 * (uint64_t)block_size;
	uint64_t fixed = used + threads * per_thread + MEM_MARGIN;
	uint64_t room = lim.bytes > fixed ? lim.bytes - fixed : 0;

	if (*cache_bytes <= room)
		return 0;
	if (asked) {
		sqv_log(SQV_LOG_ERR,
			"-o cache_size=%s does not fit under the memory limit of %" PRIu64 "M (%s): the daemon needs %" PRIu64 "M besides the cache, so at most %" PRIu64 "M",
			asked, lim.bytes / MIB, lim.source,
			fixed / MIB, room / MIB);
		return 1;
	}
	/* Half of what is left, so that the rest of a shared cgroup (a
	 * job's processes) keeps some room, in whole MiB. */
	size_t shrunk = (size_t)(room / 2 / MIB * MIB);
	sqv_log(SQV_LOG_WARNING,
		"memory limit %" PRIu64 "M (%s): block cache %zuM instead of %zuM (set -o cache_size to choose)",
		lim.bytes / MIB, lim.source, shrunk / MIB, *cache_bytes / MIB);
	*cache_bytes = shrunk;
	return 0;
}
