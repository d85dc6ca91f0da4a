/* SPDX-License-Identifier: BSD-2-Clause */
/* mountinfo: see mountinfo.h. */
#include "mountinfo.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libmount.h>

/* libmount reports each unparsable line through this; skip it (1) rather
 * than fail the whole table: one odd line must not hide the others. */
static int skip_bad_line(struct libmnt_table *tb, const char *file, int line)
{
	(void)tb;
	(void)file;
	(void)line;
	return 1;
}

static void fill(struct libmnt_fs *fs, struct sqv_mount *m)
{
	const char *type = mnt_fs_get_fstype(fs);
	const char *opts = mnt_fs_get_fs_options(fs);
	char *val = NULL;
	size_t len = 0;

	memset(m, 0, sizeof(*m));
	snprintf(m->fstype, sizeof(m->fstype), "%s", type ? type : "");
	m->dev = mnt_fs_get_devno(fs);
	/* FUSE puts user_id=UID among the super block's options. */
	if (opts && mnt_optstr_get_option(opts, "user_id", &val, &len) == 0 &&
	    val && len > 0 && len < 16) {
		char num[16], *end;
		memcpy(num, val, len);
		num[len] = '\0';
		unsigned long uid = strtoul(num, &end, 10);
		if (*end == '\0') {
			m->has_user_id = true;
			m->user_id = (uid_t)uid;
		}
	}
}

int sqv_mountinfo_find(const char *path, struct sqv_mount *m)
{
	struct libmnt_table *tb = mnt_new_table();
	int rc;

	if (!tb)
		return -ENOMEM;
	mnt_table_set_parser_errcb(tb, skip_bad_line);
	rc = mnt_table_parse_file(tb, "/proc/self/mountinfo");
	if (rc < 0) {
		mnt_unref_table(tb);
		return rc == -ENOMEM ? -ENOMEM : -EIO;
	}
	/* Mounts stack in mountinfo's order: the last one at path is the one
	 * in view. The table has no path cache, so libmount compares the
	 * strings and never stat()s path. */
	struct libmnt_fs *fs = mnt_table_find_target(tb, path, MNT_ITER_BACKWARD);
	if (fs)
		fill(fs, m);
	mnt_unref_table(tb);
	return fs ? 1 : 0;
}
