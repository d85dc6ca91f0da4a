/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * stage: node-local copies of images (site setting stage_dir), so that a
 * job on hundreds of nodes does not read each image from the shared file
 * system on every node for every mount. See the layout below.
 */
#include "helper.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define COPY_CHUNK (16u << 20)

/*
 * Node-local staging. A staged copy is named after the source's path, size,
 * mtime (ns) and inode: it is reused while all four are unchanged, and a
 * changed image gets a new copy (the old one ages out). Hashing the content
 * on every job would read the whole image from the shared file system each
 * time, which is the cost staging exists to avoid.
 *
 *   STAGE/objects/           root 0700: nobody but root reaches the copies
 *   STAGE/objects/K.sqfs     a complete, verified copy (0444); its mtime is
 *                            the last use (LRU)
 *   STAGE/objects/K.lock     flock: one prolog copies K, the others wait
 *   STAGE/objects/.tmp-K-PID a copy in progress (flocked by its writer),
 *                            renamed to K.sqfs only once verified
 *   STAGE/objects/.evict     flock: space accounting and eviction
 *   STAGE/jobs/JOBID/N.sqfs  hard links for one job, in a directory owned by
 *                            the job's user, mode 0500: the user's daemon
 *                            reaches exactly the copies of the images that
 *                            user opened. A copy with links (st_nlink > 1) is
 *                            in use and never evicted.
 */
struct objinfo {
	char name[NAME_MAX + 1];
	off_t size;
	struct timespec mtime; /* last use */
};

static int cmp_mtime(const void *a, const void *b)
{
	const struct objinfo *x = a, *y = b;

	if (x->mtime.tv_sec != y->mtime.tv_sec)
		return (x->mtime.tv_sec > y->mtime.tv_sec) - (x->mtime.tv_sec < y->mtime.tv_sec);
	return (x->mtime.tv_nsec > y->mtime.tv_nsec) - (x->mtime.tv_nsec < y->mtime.tv_nsec);
}

/* Make room for need bytes (called with .evict held). 0 if there is room. */
static int make_room(const struct job *job, int objdir, uint64_t need)
{
	struct objinfo *objs = NULL;
	size_t n = 0, cap = 0;
	uint64_t used = 0;
	struct dirent *de;
	DIR *d;
	/* objdir is an O_PATH descriptor, which cannot be listed. */
	int dfd = openat(objdir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (dfd < 0)
		return -1;
	d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return -1;
	}
	while ((de = readdir(d))) {
		struct stat st;
		size_t len = strlen(de->d_name);

		if (fstatat(objdir, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (strncmp(de->d_name, ".tmp-", 5) == 0) {
			/* A copy in progress holds a lock on its file; one
			 * that does not is left over from a crash. */
			int fd = openat(objdir, de->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

			if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0) {
				unlinkat(objdir, de->d_name, 0);
				sqv_log(SQV_LOG_INFO, "removed stale partial copy %s", de->d_name);
			} else {
				used += (uint64_t)st.st_blocks * 512 > (uint64_t)st.st_size
						? (uint64_t)st.st_blocks * 512 : (uint64_t)st.st_size;
			}
			if (fd >= 0)
				close(fd);
			continue;
		}
		if (len < 6 || strcmp(de->d_name + len - 5, ".sqfs") != 0)
			continue;
		used += (uint64_t)st.st_size;
		if (st.st_nlink > 1)
			continue; /* in use by a running job */
		if (n == cap) {
			struct objinfo *g = realloc(objs, (cap = cap ? cap * 2 : 64) * sizeof(*objs));

			if (!g)
				break;
			objs = g;
		}
		snprintf(objs[n].name, sizeof(objs[n].name), "%s", de->d_name);
		objs[n].size = st.st_size;
		objs[n].mtime = st.st_mtim;
		n++;
	}
	closedir(d);
	qsort(objs, n, sizeof(*objs), cmp_mtime);
	for (size_t i = 0; i < n && used + need > job->site.stage_max_size; i++) {
		char lock[NAME_MAX + 8];
		int lfd;

		snprintf(lock, sizeof(lock), "%.*s.lock", (int)(strlen(objs[i].name) - 5),
			 objs[i].name);
		lfd = openat(objdir, lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (lfd < 0 || flock(lfd, LOCK_EX | LOCK_NB) < 0) {
			if (lfd >= 0)
				close(lfd);
			continue; /* being linked right now */
		}
		if (unlinkat(objdir, objs[i].name, 0) == 0) {
			used -= (uint64_t)objs[i].size;
			sqv_log(SQV_LOG_INFO, "evicted staged copy %s (%lld bytes, least recently used)",
			       objs[i].name, (long long)objs[i].size);
		}
		close(lfd);
	}
	free(objs);
	return used + need <= job->site.stage_max_size ? 0 : -1;
}

static int copy_and_verify(int src, int dst, const char *path, off_t size, char *err)
{
	char *buf = malloc(COPY_CHUNK);
	uint64_t h1 = 0, h2 = 0;
	off_t off = 0;

	if (!buf) {
		sqv_errf(err, "out of memory");
		return -1;
	}
	posix_fadvise(src, 0, 0, POSIX_FADV_SEQUENTIAL);
	while (off < size) {
		ssize_t n = pread(src, buf, COPY_CHUNK, off), w = 0;

		if (n <= 0) {
			sqv_errf(err, "%s: read: %s", path, n < 0 ? strerror(errno)
										: "unexpected end of file");
			goto fail;
		}
		h1 = hash64(buf, (size_t)n, h1);
		while (w < n) {
			ssize_t k = pwrite(dst, buf + w, (size_t)(n - w), off + w);

			if (k <= 0) {
				sqv_errf(err, "staging %s: write: %s", path,
					 strerror(k < 0 ? errno : EIO));
				goto fail;
			}
			w += k;
		}
		off += n;
	}
	if (fsync(dst) < 0) {
		sqv_errf(err, "staging %s: fsync: %s", path, strerror(errno));
		goto fail;
	}
	/* Verify: read the copy back from the node-local disk. */
	posix_fadvise(dst, 0, 0, POSIX_FADV_DONTNEED);
	for (off = 0; off < size;) {
		ssize_t n = pread(dst, buf, COPY_CHUNK, off);

		if (n <= 0) {
			sqv_errf(err, "staging %s: reading the copy back failed", path);
			goto fail;
		}
		h2 = hash64(buf, (size_t)n, h2);
		off += n;
	}
	if (h1 != h2) {
		sqv_errf(err, "staging %s: the copy does not match the image", path);
		goto fail;
	}
	free(buf);
	return 0;
fail:
	free(buf);
	return -1;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One image's names in STAGE/objects/. */
struct stage_names {
	char key[128];   /* path hash, size, mtime, inode */
	char obj[160];   /* KEY.sqfs: the verified copy */
	char lock[160];  /* KEY.lock: one Prolog copies KEY */
	char tmp[200];   /* .tmp-KEY-PID: the copy in progress */
};

static void stage_names(const char *path, const struct stat *st, struct stage_names *n)
{
	uint64_t h = hash64(path, strlen(path), 0x5354414745ULL);

	snprintf(n->key, sizeof(n->key), "%016llx-%lld-%lld.%09ld-%llu", (unsigned long long)h,
		 (long long)st->st_size, (long long)st->st_mtim.tv_sec, st->st_mtim.tv_nsec,
		 (unsigned long long)st->st_ino);
	snprintf(n->obj, sizeof(n->obj), "%s.sqfs", n->key);
	snprintf(n->lock, sizeof(n->lock), "%s.lock", n->key);
	snprintf(n->tmp, sizeof(n->tmp), ".tmp-%s-%d", n->key, (int)getpid());
}

/* STAGE/objects, root's alone (0700), as an fd; -1 (logged) if not. */
static int open_objects(const struct job *job)
{
	char p[PATH_MAX];

	if (sqv_pathf(p, "%s/objects", job->site.stage_dir) < 0 ||
	    mkdir_root(job->site.stage_dir, 0755) < 0 || mkdir_root(p, 0700) < 0) {
		sqv_log(SQV_LOG_ERR, "%s/objects: %s; staging disabled for this job",
			job->site.stage_dir, strerror(errno));
		return -1;
	}
	return open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
}

/* A verified copy of this very image exists: touch it (LRU) and say so. */
static int reuse(int objdir, const struct stage_names *n, const struct stat *st)
{
	struct stat ost;
	char e[SQV_ERRLEN];

	if (fstatat(objdir, n->obj, &ost, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(ost.st_mode) ||
	    ost.st_size != st->st_size)
		return 0;
	int ofd = openat(objdir, n->obj, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (ofd >= 0 && sqv_check_image_fd(ofd, n->obj, e) == 0) {
		futimens(ofd, NULL); /* last use, for LRU */
		close(ofd);
		return 1;
	}
	if (ofd >= 0)
		close(ofd);
	unlinkat(objdir, n->obj, 0);
	return 0;
}

/* Reserve room for the copy under .evict and create .tmp-KEY-PID, locked
 * (so that make_room knows it is in progress): its fd, or -1 (logged: the
 * image is used in place). */
static int reserve(struct job *job, int objdir, const struct stage_names *n, const char *path,
		   off_t size)
{
	int efd = openat(objdir, ".evict", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	int tfd = -1;

	if (efd < 0 || flock(efd, LOCK_EX) < 0)
		goto out;
	if (job->site.stage_max_size == 0) {
		struct statvfs vfs;

		if (fstatvfs(objdir, &vfs) == 0)
			job->site.stage_max_size = (uint64_t)vfs.f_blocks * vfs.f_frsize / 2;
	}
	if (make_room(job, objdir, (uint64_t)size) < 0) {
		sqv_log(SQV_LOG_NOTICE, "no room to stage %s (stage_max_size %llu, the rest in "
			"use); used in place", path, (unsigned long long)job->site.stage_max_size);
		goto out;
	}
	tfd = openat(objdir, n->tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0444);
	if (tfd < 0 || flock(tfd, LOCK_EX) < 0) {
		sqv_log(SQV_LOG_ERR, "%s: %s; used in place", n->tmp, strerror(errno));
		goto fail;
	}
	if (size > 0 && posix_fallocate(tfd, 0, size) != 0) {
		sqv_log(SQV_LOG_NOTICE, "no space to stage %s; used in place", path);
		goto fail;
	}
	goto out;
fail:
	if (tfd >= 0) {
		close(tfd);
		unlinkat(objdir, n->tmp, 0);
	}
	tfd = -1;
out:
	if (efd >= 0)
		close(efd);
	return tfd;
}

/* Copy, verify and rename into place. 1 done, 0 use in place (logged),
 * -1 a job error (err set). */
static int copy_in(int objdir, const struct stage_names *n, int src, int tfd, const char *path,
		   const struct stat *st, char *err)
{
	struct stat st2;
	char e[SQV_ERRLEN];
	double t0 = now_s();

	if (copy_and_verify(src, tfd, path, st->st_size, err) < 0) {
		sqv_log(SQV_LOG_ERR, "%s; used in place", err);
		return 0;
	}
	if (fstat(src, &st2) < 0 || st2.st_size != st->st_size ||
	    st2.st_mtim.tv_sec != st->st_mtim.tv_sec || st2.st_mtim.tv_nsec != st->st_mtim.tv_nsec) {
		sqv_errf(err, "%s: the image changed while it was being staged", path);
		return -1;
	}
	if (sqv_check_image_fd(tfd, path, e) < 0) {
		sqv_errf(err, "staging %s", e);
		return -1;
	}
	if (renameat(objdir, n->tmp, objdir, n->obj) < 0) {
		sqv_log(SQV_LOG_ERR, "rename %s: %s; used in place", n->tmp, strerror(errno));
		return 0;
	}
	sqv_log(SQV_LOG_INFO, "staged %s (%lld bytes) in %.1f s", path, (long long)st->st_size,
		now_s() - t0);
	return 1;
}

int stage_image(struct job *job, int src, const char *path, size_t idx, int jobdir,
		const char *jobdir_path, char *out, char *err)
{
	struct stage_names n;
	struct stat st;
	char link[32];
	int objdir, lfd = -1, rc = 0;

	if (fstat(src, &st) < 0) {
		sqv_errf(err, "%s: %s", path, strerror(errno));
		return -1;
	}
	if ((uint64_t)st.st_size > job->site.stage_max_size && job->site.stage_max_size) {
		sqv_log(SQV_LOG_NOTICE, "%s (%lld bytes) is larger than stage_max_size; used in "
			"place", path, (long long)st.st_size);
		return 0;
	}
	stage_names(path, &st, &n);
	snprintf(link, sizeof(link), "%zu.sqfs", idx);
	objdir = open_objects(job);
	if (objdir < 0)
		return 0;
	lfd = openat(objdir, n.lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (lfd < 0 || flock(lfd, LOCK_EX) < 0) {
		sqv_log(SQV_LOG_ERR, "%s: %s; used in place", n.lock, strerror(errno));
		goto out;
	}
	if (reuse(objdir, &n, &st)) {
		sqv_log(SQV_LOG_INFO, "reused staged copy of %s", path);
	} else {
		int tfd = reserve(job, objdir, &n, path, st.st_size);

		if (tfd < 0)
			goto out;
		rc = copy_in(objdir, &n, src, tfd, path, &st, err);
		close(tfd);
		if (rc <= 0) {
			unlinkat(objdir, n.tmp, 0);
			goto out;
		}
	}
	unlinkat(jobdir, link, 0);
	if (linkat(objdir, n.obj, jobdir, link, 0) < 0 ||
	    sqv_pathf(out, "%s/%s", jobdir_path, link) < 0) {
		sqv_log(SQV_LOG_ERR, "link %s: %s; used in place", n.obj, strerror(errno));
		rc = 0;
		goto out;
	}
	rc = 1;
out:
	if (lfd >= 0)
		close(lfd); /* releases the key's lock */
	close(objdir);
	return rc;
}

int stage_job_dir(const struct job *job, char *path)
{
	char jobs[PATH_MAX];
	int fd = -1;

	if (!job->site.stage_dir[0])
		return -1;
	stage_job_dir_remove(job);
	if (sqv_pathf(jobs, "%s/jobs", job->site.stage_dir) < 0 ||
	    sqv_pathf(path, "%s/%lu", jobs, job->id) < 0 ||
	    mkdir_root(job->site.stage_dir, 0755) < 0 || mkdir_root(jobs, 0755) < 0 ||
	    mkdir(path, 0700) < 0 ||
	    (fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		sqv_log(SQV_LOG_ERR, "%s/jobs/%lu: %s; staging disabled for this job",
			job->site.stage_dir, job->id, strerror(errno));
	return fd;
}

void stage_job_dir_seal(const struct job *job, int fd, const char *path)
{
	if (fchown(fd, job->cred.uid, job->cred.gid) < 0 || fchmod(fd, 0500) < 0)
		sqv_log(SQV_LOG_ERR, "%s: %s", path, strerror(errno));
}

/* Remove STAGE/jobs/JOBID and what is in it, without following anything. */
void stage_job_dir_remove(const struct job *job)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d;
	int fd;

	if (!job->site.stage_dir[0] ||
	    sqv_pathf(path, "%s/jobs/%lu", job->site.stage_dir, job->id) < 0)
		return;
	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return;
	}
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			unlinkat(fd, de->d_name, 0);
	closedir(d);
	if (rmdir(path) < 0 && errno != ENOENT)
		sqv_log(SQV_LOG_WARNING, "%s: %s", path, strerror(errno));
}
