/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The state one mount shares between main.c and the FUSE operations.
 * Everything is set up before the session starts and read-only afterwards,
 * except the counters, which are atomics.
 */
#ifndef SQVENVFS_FS_H
#define SQVENVFS_FS_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <time.h>

#include "image.h"
#include "prefetch.h"
#include "index.h"
#include "reader.h"
#include "trace.h"

/* Request types counted for --stats; keep in step with op_names in ops.c. */
enum sqv_op {
	OP_INIT,
	OP_LOOKUP,
	OP_FORGET,
	OP_GETATTR,
	OP_READLINK,
	OP_OPEN,
	OP_READ,
	OP_RELEASE,
	OP_OPENDIR,
	OP_READDIR,
	OP_READDIRPLUS,
	OP_RELEASEDIR,
	OP_STATFS,
	OP_GETXATTR,
	OP_LISTXATTR,
	OP_IOCTL,
	OP_COUNT
};

/*
 * How --stats asks the daemon: an ioctl on the mount's root directory (a
 * "restricted" FUSE ioctl: the kernel copies out the size the number
 * encodes). Not an extended attribute, because a stack without any answers
 * every xattr request with ENOSYS so that the kernel stops sending them.
 */
#define SQV_STATS_MAX 8192
#define SQV_STATS_IOCTL _IOR('Q', 0x51, char[SQV_STATS_MAX])

/*
 * How --unmount learns which process to wait for: the daemon's pid and its
 * pid namespace (the device and inode of /proc/self/ns/pid, 0 when it
 * cannot tell), so that a pid from another namespace is never waited on.
 */
struct sqv_daemon_id {
	uint64_t pid;
	uint64_t pid_ns_dev;
	uint64_t pid_ns_ino;
};
#define SQV_DAEMON_ID_IOCTL _IOR('Q', 0x52, struct sqv_daemon_id)

struct sqv_fs {
	struct sqv_image *layers[SQV_INDEX_MAX_LAYERS];
	unsigned nlayers;
	struct sqv_index *index;
	struct sqv_reader *reader;
	struct timespec mounted_at;
	/* Where the mount's time went, for --stats (mount_index_us,
	 * mount_ready_us): from main() on, so what comes before it (the
	 * process's start and dynamic linking) is what the caller's own
	 * clock measures beyond mount_ready_us. ready_us is set by on_ready
	 * on a FUSE thread, read by --stats on another. */
	struct timespec started_at;
	uint64_t index_us;
	_Atomic uint64_t ready_us;
	struct sqv_trace *trace; /* -o record=FILE: the reads to note, or NULL */
	/* Hot-range records found at mount, and the prefetch started once the
	 * mount is usable (by on_ready, before any request is read). */
	struct sqv_prefetch_layer hot[SQV_INDEX_MAX_LAYERS];
	size_t prefetch_chunk; /* -o prefetch=SIZE; 0: off */
	size_t cache_bytes;
	struct sqv_prefetch *prefetch;
	atomic_bool trace_failed; /* a note failed: logged once */
	/* The stack serves some extended attribute; if it serves none,
	 * xattr requests get ENOSYS and the kernel stops sending them. */
	bool has_xattrs;

	/* Set once by op_init, before any other request is handled. */
	bool zero_open;    /* the kernel lets open/opendir be skipped */
	unsigned max_read; /* -o max_read=, or 0; set before the session */
	/* Called once when the kernel's INIT has been answered. */
	void (*on_ready)(struct sqv_fs *fs);

	atomic_uint_fast64_t ops[OP_COUNT];
	/* What reads returned, and how many started at offset 0: the page
	 * cache sends a file's first page once, so that is about one per
	 * file read (the estimate of --stats --human counts an open each). */
	atomic_uint_fast64_t read_bytes;
	atomic_uint_fast64_t files_read;
};

extern const struct fuse_lowlevel_ops sqv_ops;

/* Render the counters as "name value" lines into buf; returns the length
 * (snprintf-style: may exceed size). */
size_t sqv_fs_format_stats(struct sqv_fs *fs, char *buf, size_t size);

#endif
