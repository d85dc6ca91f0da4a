/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * mountinfo: what is mounted where, from /proc/self/mountinfo through
 * util-linux's libmount (no hand parser: long lines, octal escapes and
 * optional fields are its business). Paths are compared as the kernel shows
 * them, never resolved, so asking about a dead FUSE mount does not hang or
 * fail on ENOTCONN.
 */
#ifndef SQV_MOUNTINFO_H
#define SQV_MOUNTINFO_H

#include <stdbool.h>
#include <sys/types.h>

struct sqv_mount {
	char fstype[64];   /* "fuse.sqvenvfs", "ext4", ... (cut to fit) */
	bool has_user_id;  /* a FUSE mount names the user who mounted it */
	uid_t user_id;
	bool has_group_id; /* ... and the group */
	gid_t group_id;
	dev_t dev;         /* st_dev of its root: tells two mounts apart */
};

/*
 * The topmost mount at path (absolute, without a trailing slash): 1 and *m
 * filled when something is mounted there, 0 when nothing is, -errno when
 * mountinfo cannot be read.
 */
int sqv_mountinfo_find(const char *path, struct sqv_mount *m);

/*
 * Whether anything is mounted strictly below path (absolute, without a
 * trailing slash), which a mount at path would hide: 1 with the first such
 * mount point in below (cut to size), 0 when nothing is, -errno when
 * mountinfo cannot be read.
 */
int sqv_mountinfo_below(const char *path, char *below, size_t size);

/*
 * Where the mount of type fstype whose root has st_dev dev is now (its
 * mount point's parent may have been renamed since it was mounted): 1
 * with the mount point in path (cut to size; the latest such mount), 0
 * when there is none, -errno when mountinfo cannot be read.
 */
int sqv_mountinfo_find_dev(dev_t dev, const char *fstype, char *path,
			   size_t size);

#endif
