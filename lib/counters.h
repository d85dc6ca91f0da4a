/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * counters: the daemon's --stats counters read back from their "name value"
 * lines, and their human form (--stats --human): a few lines saying what a
 * workload did to the file system holding the images, what the daemon and
 * the kernel absorbed, and an estimate of the requests the same work would
 * have sent to the venv unpacked on that file system.
 *
 * The estimate's basis (docs/tools.md, "Reading --stats"): a plain copy of
 * the venv behind the same kernel caches would have been asked the same
 * first touches this daemon saw: each lookup, getattr, readlink, directory
 * listing and read, plus one open per file opened, which is the opens seen
 * or, where the kernel sends none, the files read (reads at offset 0).
 * ioctls (isatty), xattr, statfs, forget and release requests are left out:
 * a local answer on most file systems. A network file system that
 * revalidates its caches is asked more; one that reads ahead in larger
 * pieces gets fewer reads.
 *
 * No FUSE here: the unit test feeds fixed counters and checks the text.
 */
#ifndef SQV_COUNTERS_H
#define SQV_COUNTERS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define SQV_COUNTERS_MAX 256 /* the daemon sends about 45 */
#define SQV_COUNTER_NAME_MAX 48

struct sqv_counters {
	unsigned n;
	struct {
		char name[SQV_COUNTER_NAME_MAX];
		uint64_t value;
	} v[SQV_COUNTERS_MAX];
};

/* Read "name value\n" lines. 0; -EINVAL for a line of another shape (the
 * name too long included); -E2BIG past SQV_COUNTERS_MAX counters. */
sqv_err_t sqv_counters_parse(const char *text, struct sqv_counters *out);

/* The value of name; 0 when absent (a daemon older than the counter). */
uint64_t sqv_counters_get(const struct sqv_counters *c, const char *name);

/* The requests an unpacked venv would have been sent (see above). */
struct sqv_unpacked {
	uint64_t metadata; /* lookups, getattrs, readlinks, listings */
	uint64_t opens;
	uint64_t reads;
	uint64_t total;
};
void sqv_counters_unpacked(const struct sqv_counters *c,
			   struct sqv_unpacked *out);

/* The human form for the mount at mnt, snprintf-style: returns the length
 * it needs, which may exceed size. */
size_t sqv_counters_human(const struct sqv_counters *c, const char *mnt,
			  char *buf, size_t size);

#endif
