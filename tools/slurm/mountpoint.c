/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * mountpoint: whether a user may have a mount point, checked as that user
 * (sqv_resolve_mountpoint, see sqv_slurm.h), in the plugin at submission and
 * in the Prolog's child that has become the job's user.
 */
#include "sqv_slurm.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mountinfo.h"

int sqv_user_fuse_mount_at(const char *path, uid_t uid)
{
	struct sqv_mount m;

	return sqv_mountinfo_find(path, &m) == 1 && strncmp(m.fstype, "fuse", 4) == 0 &&
	       m.has_user_id && m.user_id == uid;
}

/*
 * sqv_resolve_mountpoint walks the path one component at a time from an
 * O_PATH descriptor of the directory resolved so far, so that no symlink is
 * followed unless it is root's.
 */
struct walk {
	const char *path;       /* as asked, for messages */
	uid_t uid;
	char todo[PATH_MAX * 2]; /* what is left to resolve */
	char done[PATH_MAX];     /* resolved so far; "" is / */
	int dirfd;               /* O_PATH descriptor of done */
	int links;
	char *err;
};

static int walk_reset_root(struct walk *w)
{
	if (w->dirfd >= 0)
		close(w->dirfd);
	w->done[0] = '\0';
	w->dirfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (w->dirfd < 0) {
		sqv_errf(w->err, "/: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* Take the next component off todo: 1 and comp set, 0 at the end, -1. */
static int walk_next(struct walk *w, char comp[NAME_MAX + 1])
{
	for (;;) {
		char *s = w->todo;
		while (*s == '/')
			s++;
		if (!*s)
			return 0;
		size_t len = strcspn(s, "/");
		if (len > NAME_MAX) {
			sqv_errf(w->err, "%s: path component too long", w->path);
			return -1;
		}
		memcpy(comp, s, len);
		comp[len] = '\0';
		memmove(w->todo, s + len, strlen(s + len) + 1);
		if (strcmp(comp, ".") != 0)
			return 1;
	}
}

/* "..": only reachable through a root-owned symlink's target. */
static int walk_up(struct walk *w)
{
	char *slash = strrchr(w->done, '/');

	if (slash)
		*slash = '\0';
	int up = open(*w->done ? w->done : "/", O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (up < 0) {
		sqv_errf(w->err, "%s: %s", w->path, strerror(errno));
		return -1;
	}
	close(w->dirfd);
	w->dirfd = up;
	return 0;
}

/* A root-owned symlink: its target goes before the rest of todo. */
static int walk_link(struct walk *w, const char *comp, const struct stat *st)
{
	char target[PATH_MAX];

	if (st->st_uid != 0) {
		sqv_errf(w->err, "%s: %s/%s is a symbolic link (only root's symlinks are "
			 "followed; give the real directory)", w->path, w->done, comp);
		return -1;
	}
	if (++w->links > 40) {
		sqv_errf(w->err, "%s: too many levels of symbolic links", w->path);
		return -1;
	}
	ssize_t n = readlinkat(w->dirfd, comp, target, sizeof(target) - 1);
	if (n < 0) {
		sqv_errf(w->err, "%s: %s", w->path, strerror(errno));
		return -1;
	}
	target[n] = '\0';
	if ((size_t)n + 1 + strlen(w->todo) >= sizeof(w->todo)) {
		sqv_errf(w->err, "%s: path too long", w->path);
		return -1;
	}
	memmove(w->todo + n + 1, w->todo, strlen(w->todo) + 1);
	memcpy(w->todo, target, (size_t)n);
	w->todo[n] = '/';
	return target[0] == '/' ? walk_reset_root(w) : 0;
}

/* Step into the directory comp. */
static int walk_enter(struct walk *w, const char *comp)
{
	int fd = openat(w->dirfd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0) {
		sqv_errf(w->err, "%s: %s/%s: %s", w->path, w->done, comp, strerror(errno));
		return -1;
	}
	close(w->dirfd);
	w->dirfd = fd;
	size_t len = strlen(w->done);
	if (len + strlen(comp) + 2 > sizeof(w->done)) {
		sqv_errf(w->err, "%s: path too long", w->path);
		return -1;
	}
	w->done[len] = '/';
	strcpy(w->done + len + 1, comp);
	return 0;
}

static int refuse_system(struct walk *w, const char *where)
{
	if (!sqv_path_is_system(where))
		return 0;
	sqv_errf(w->err, "%s: %s is a system path; mount under your home or a job "
		 "directory instead", w->path, where);
	return -1;
}

/*
 * comp does not exist (or is a dead mount) under done. 0: go on (created),
 * 1: resolution ends here with resolved set, -1: error.
 */
static int walk_missing(struct walk *w, const char *comp, int create, char *resolved,
			int *missing, struct stat *st)
{
	char cand[PATH_MAX];
	int e = errno; /* of the fstatat that failed */

	if (sqv_pathf(cand, "%s/%s", w->done, comp) < 0) {
		sqv_errf(w->err, "%s: path too long", w->path);
		return -1;
	}
	if (e == ENOTCONN && !*w->todo && sqv_user_fuse_mount_at(cand, w->uid) &&
	    !sqv_path_is_system(cand)) {
		/* The user's own mount whose daemon died: the Prolog clears it. */
		strcpy(resolved, cand);
		return 1;
	}
	if (e != ENOENT) {
		sqv_errf(w->err, "%s: %s: %s", w->path, cand, strerror(e));
		return -1;
	}
	if (!create) {
		if (sqv_pathf(resolved, "%s%s", cand, w->todo) < 0) {
			sqv_errf(w->err, "%s: path too long", w->path);
			return -1;
		}
		if (refuse_system(w, resolved) < 0)
			return -1;
		if (missing)
			*missing = 1;
		return 1;
	}
	if (mkdirat(w->dirfd, comp, 0755) < 0 && errno != EEXIST) {
		sqv_errf(w->err, "%s: cannot create %s: %s", w->path, cand, strerror(errno));
		return -1;
	}
	if (fstatat(w->dirfd, comp, st, AT_SYMLINK_NOFOLLOW) < 0) {
		sqv_errf(w->err, "%s: %s", w->path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Walk the whole path: 0 with w->done resolved, 1 when walk_missing ended
 * it (resolved set), -1. */
static int walk_all(struct walk *w, int create, char *resolved, int *missing)
{
	char comp[NAME_MAX + 1];
	struct stat st;
	int rc;

	while ((rc = walk_next(w, comp)) > 0) {
		if (strcmp(comp, "..") == 0) {
			if (walk_up(w) < 0)
				return -1;
			continue;
		}
		if (fstatat(w->dirfd, comp, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			rc = walk_missing(w, comp, create, resolved, missing, &st);
			if (rc != 0)
				return rc;
		}
		if (S_ISLNK(st.st_mode)) {
			if (walk_link(w, comp, &st) < 0)
				return -1;
			continue;
		}
		if (!S_ISDIR(st.st_mode)) {
			sqv_errf(w->err, "%s: %s/%s is not a directory", w->path, w->done, comp);
			return -1;
		}
		if (walk_enter(w, comp) < 0)
			return -1;
	}
	return rc;
}

int sqv_resolve_mountpoint(const char *path, uid_t uid, int create, char *resolved,
			   int *missing, char *err)
{
	struct walk w = { .path = path, .uid = uid, .dirfd = -1, .err = err };
	struct stat st;
	int rc;

	if (missing)
		*missing = 0;
	if (path[0] != '/') {
		sqv_errf(err, "%s: not an absolute path", path);
		return -1;
	}
	if (strlen(path) >= sizeof(w.todo)) {
		sqv_errf(err, "%s: path too long", path);
		return -1;
	}
	strcpy(w.todo, path);
	if (walk_reset_root(&w) < 0)
		return -1;
	rc = walk_all(&w, create, resolved, missing);
	if (rc == 0 && fstat(w.dirfd, &st) < 0) {
		sqv_errf(err, "%s: %s", path, strerror(errno));
		rc = -1;
	}
	close(w.dirfd);
	if (rc != 0)
		return rc < 0 ? -1 : 0;
	if (!*w.done)
		strcpy(w.done, "/");
	if (refuse_system(&w, w.done) < 0)
		return -1;
	/* A directory the user's own sqvenvfs is mounted on shows the image's
	 * owner; what counts is that the mount is the user's. */
	if (st.st_uid != uid && !sqv_user_fuse_mount_at(w.done, uid)) {
		sqv_errf(err, "%s: the mount point must be a directory you own (owned by uid %u)",
			 path, (unsigned)st.st_uid);
		return -1;
	}
	strcpy(resolved, w.done);
	return 0;
}

