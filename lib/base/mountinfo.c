/* SPDX-License-Identifier: BSD-2-Clause */
/* mountinfo: see mountinfo.h. */
#include "mountinfo.h"

#include <errno.h>
#include <stdbool.h>
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

/* The number in option name=N of opts: true and *out set, or false. */
static bool option_number(const char *opts, const char *name,
			  unsigned long *out)
{
	char num[16], *end, *val = NULL;
	size_t len = 0;

	if (!opts || mnt_optstr_get_option(opts, name, &val, &len) != 0 ||
	    !val || len == 0 || len >= sizeof(num))
		return false;
	memcpy(num, val, len);
	num[len] = '\0';
	*out = strtoul(num, &end, 10);
	return *end == '\0';
}

static void fill(struct libmnt_fs *fs, struct sqv_mount *m)
{
	const char *type = mnt_fs_get_fstype(fs);
	const char *opts = mnt_fs_get_fs_options(fs);
	unsigned long id;

	memset(m, 0, sizeof(*m));
	snprintf(m->fstype, sizeof(m->fstype), "%s", type ? type : "");
	m->dev = mnt_fs_get_devno(fs);
	/* FUSE puts user_id=UID,group_id=GID among the super block's
	 * options: the credentials it lets in without allow_other. */
	if (option_number(opts, "user_id", &id)) {
		m->has_user_id = true;
		m->user_id = (uid_t)id;
	}
	if (option_number(opts, "group_id", &id)) {
		m->has_group_id = true;
		m->group_id = (gid_t)id;
	}
}

/* The mount table, or NULL with *err set. */
static struct libmnt_table *load_table(int *err)
{
	struct libmnt_table *tb = mnt_new_table();
	int rc;

	if (!tb) {
		*err = -ENOMEM;
		return NULL;
	}
	mnt_table_set_parser_errcb(tb, skip_bad_line);
	rc = mnt_table_parse_file(tb, "/proc/self/mountinfo");
	if (rc < 0) {
		mnt_unref_table(tb);
		*err = rc == -ENOMEM ? -ENOMEM : -EIO;
		return NULL;
	}
	return tb;
}

/* The target of the first mount, in direction, that match() takes: 1
 * with it in out (cut to size), 0 if none, -errno. */
static int scan(int direction,
		bool (*match)(struct libmnt_fs *fs, const void *ctx),
		const void *ctx, char *out, size_t size)
{
	struct libmnt_iter *it = mnt_new_iter(direction);
	struct libmnt_fs *fs;
	int err = 0, found = 0;

	if (!it)
		return -ENOMEM;
	struct libmnt_table *tb = load_table(&err);
	if (!tb) {
		mnt_free_iter(it);
		return err;
	}
	while (!found && mnt_table_next_fs(tb, it, &fs) == 0) {
		const char *t = mnt_fs_get_target(fs);
		if (t && match(fs, ctx)) {
			snprintf(out, size, "%s", t);
			found = 1;
		}
	}
	mnt_free_iter(it);
	mnt_unref_table(tb);
	return found;
}

static bool below(struct libmnt_fs *fs, const void *ctx)
{
	const char *path = ctx, *t = mnt_fs_get_target(fs);
	size_t n = strlen(path);

	/* "/" holds every mount: strictly below is then anything else. */
	return strcmp(t, path) != 0 &&
	       (n == 1 ? t[0] == '/' : strncmp(t, path, n) == 0 && t[n] == '/');
}

int sqv_mountinfo_below(const char *path, char *out, size_t size)
{
	return scan(MNT_ITER_FORWARD, below, path, out, size);
}

struct dev_type {
	dev_t dev;
	const char *fstype;
};

static bool of_dev(struct libmnt_fs *fs, const void *ctx)
{
	const struct dev_type *want = ctx;
	const char *type = mnt_fs_get_fstype(fs);

	return mnt_fs_get_devno(fs) == want->dev && type &&
	       strcmp(type, want->fstype) == 0;
}

int sqv_mountinfo_find_dev(dev_t dev, const char *fstype, char *path,
			   size_t size)
{
	struct dev_type want = { dev, fstype };

	return scan(MNT_ITER_BACKWARD, of_dev, &want, path, size);
}

int sqv_mountinfo_find(const char *path, struct sqv_mount *m)
{
	int err = 0;
	struct libmnt_table *tb = load_table(&err);

	if (!tb)
		return err;
	/* Mounts stack in mountinfo's order: the last one at path is the one
	 * in view. The table has no path cache, so libmount compares the
	 * strings and never stat()s path. */
	struct libmnt_fs *fs = mnt_table_find_target(tb, path, MNT_ITER_BACKWARD);
	if (fs)
		fill(fs, m);
	mnt_unref_table(tb);
	return fs ? 1 : 0;
}
