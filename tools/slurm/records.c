/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * records: the helper's node-local state under state_dir (root-owned):
 *
 *   lock               flock: serialises every change of mounts/ and jobs/
 *   mounts/KEY         one mount: user, mount point, stack, daemon, its jobs
 *   jobs/JOBID         which mount the job uses
 *   jobs/JOBID.err     why the job could not get its environment (user-owned)
 *   log/KEY.log        the daemon's stdout and stderr while it runs
 *
 * KEY is a hash of the user and the mount point. A mount record lists every
 * job that uses the mount, however many: the mount goes when the last one
 * leaves.
 */
#include "helper.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

uint64_t hash64(const void *data, size_t len, uint64_t h)
{
	const unsigned char *p = data;
	const uint64_t m1 = 0x9E3779B185EBCA87ULL, m2 = 0xC2B2AE3D27D4EB4FULL;

	while (len >= 8) {
		uint64_t w;

		memcpy(&w, p, 8);
		h ^= w * m2;
		h = (h << 31 | h >> 33) * m1;
		p += 8;
		len -= 8;
	}
	while (len--) {
		h ^= *p++ * m1;
		h = (h << 11 | h >> 53) * m2;
	}
	return h;
}

void mount_key(uid_t uid, const char *mountpoint, char out[17])
{
	uint64_t h = hash64(&uid, sizeof(uid), 0x5153564e56465331ULL);

	h = hash64(mountpoint, strlen(mountpoint), h);
	snprintf(out, 17, "%016llx", (unsigned long long)h);
}

int mkdir_root(const char *path, mode_t mode)
{
	struct stat st;

	if (mkdir(path, mode) < 0 && errno != EEXIST)
		return -1;
	if (lstat(path, &st) < 0)
		return -1;
	if (!S_ISDIR(st.st_mode) || st.st_uid != 0) {
		errno = ENOTDIR;
		return -1;
	}
	return chmod(path, mode);
}

int state_dirs_ensure(const struct job *job)
{
	static const struct {
		const char *sub;
		mode_t mode;
	} dirs[] = {
		{ "", 0755 }, { "/jobs", 0711 }, { "/mounts", 0700 }, { "/log", 0700 },
	};

	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		char path[PATH_MAX];

		if (sqv_pathf(path, "%s%s", job->site.state_dir, dirs[i].sub) < 0 ||
		    mkdir_root(path, dirs[i].mode) < 0) {
			sqv_log(SQV_LOG_ERR, "%s%s: %s", job->site.state_dir, dirs[i].sub,
				strerror(errno));
			return -1;
		}
	}
	return 0;
}

int state_lock(const struct job *job)
{
	char path[PATH_MAX];
	int fd = -1;

	if (sqv_pathf(path, "%s/lock", job->site.state_dir) == 0)
		fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 || flock(fd, LOCK_EX) < 0) {
		sqv_log(SQV_LOG_ERR, "%s/lock: %s", job->site.state_dir, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static int rec_path(const struct job *job, const char *key, char *out)
{
	return sqv_pathf(out, "%s/mounts/%s", job->site.state_dir, key);
}

int rec_add_job(struct mountrec *r, unsigned long id)
{
	if (r->n_jobs == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 16;
		unsigned long *jobs = realloc(r->jobs, cap * sizeof(*jobs));

		if (!jobs)
			return -1;
		r->jobs = jobs;
		r->cap = cap;
	}
	r->jobs[r->n_jobs++] = id;
	return 0;
}

void rec_drop_job(struct mountrec *r, unsigned long id)
{
	size_t k = 0;

	for (size_t i = 0; i < r->n_jobs; i++)
		if (r->jobs[i] != id)
			r->jobs[k++] = r->jobs[i];
	r->n_jobs = k;
}

void rec_free(struct mountrec *r)
{
	free(r->jobs);
	r->jobs = NULL;
	r->n_jobs = r->cap = 0;
}

static int copy_field(char *dst, size_t size, const char *v)
{
	size_t len = strlen(v);

	if (len >= size)
		return -1;
	memcpy(dst, v, len + 1);
	return 0;
}

static int rec_field(struct mountrec *r, const char *name, const char *v)
{
	if (strcmp(name, "uid") == 0)
		r->cred.uid = (uid_t)strtoul(v, NULL, 10);
	else if (strcmp(name, "gid") == 0)
		r->cred.gid = (gid_t)strtoul(v, NULL, 10);
	else if (strcmp(name, "user") == 0)
		return copy_field(r->cred.user, sizeof(r->cred.user), v);
	else if (strcmp(name, "mountpoint") == 0)
		return copy_field(r->mountpoint, sizeof(r->mountpoint), v);
	else if (strcmp(name, "stack") == 0)
		return copy_field(r->stack, sizeof(r->stack), v);
	else if (strcmp(name, "pid") == 0)
		r->pid = (pid_t)strtol(v, NULL, 10);
	else if (strcmp(name, "start") == 0)
		r->start = strtoull(v, NULL, 10);
	else if (strcmp(name, "job") == 0)
		return rec_add_job(r, strtoul(v, NULL, 10));
	return 0;
}

int rec_load(const struct job *job, const char *key, struct mountrec *r)
{
	char path[PATH_MAX], *line = NULL;
	size_t cap = 0;
	int rc = 0;
	FILE *f;

	memset(r, 0, sizeof(*r));
	if (rec_path(job, key, path) < 0 || !(f = fopen(path, "re")))
		return -1;
	while (rc == 0 && getline(&line, &cap, f) > 0) {
		char *v = strchr(line, ' ');

		if (!v)
			continue;
		*v++ = '\0';
		v[strcspn(v, "\n")] = '\0';
		rc = rec_field(r, line, v);
	}
	free(line);
	fclose(f);
	if (rc < 0) {
		sqv_log(SQV_LOG_ERR, "%s: damaged mount record", path);
		rec_free(r);
	}
	return rc;
}

int rec_save(const struct job *job, const char *key, const struct mountrec *r)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	FILE *f;

	if (rec_path(job, key, path) < 0 || sqv_pathf(tmp, "%s.tmp", path) < 0 ||
	    !(f = fopen(tmp, "we")))
		return -1;
	fprintf(f, "uid %u\ngid %u\nuser %s\nmountpoint %s\nstack %s\npid %d\nstart %llu\n",
		(unsigned)r->cred.uid, (unsigned)r->cred.gid, r->cred.user, r->mountpoint,
		r->stack, (int)r->pid, r->start);
	for (size_t i = 0; i < r->n_jobs; i++)
		fprintf(f, "job %lu\n", r->jobs[i]);
	if (fclose(f) != 0)
		return -1;
	return rename(tmp, path);
}

void rec_remove(const struct job *job, const char *key)
{
	char path[PATH_MAX];

	if (rec_path(job, key, path) == 0)
		unlink(path);
	if (daemon_log_path(job, key, path) == 0)
		unlink(path);
}

int daemon_log_path(const struct job *job, const char *key, char *out)
{
	return sqv_pathf(out, "%s/log/%s.log", job->site.state_dir, key);
}

static int job_path(const struct job *job, const char *suffix, char *out)
{
	return sqv_pathf(out, "%s/jobs/%lu%s", job->site.state_dir, job->id, suffix);
}

int job_record_write(const struct job *job, const char *key)
{
	char path[PATH_MAX];
	FILE *f;

	if (job_path(job, "", path) < 0 || !(f = fopen(path, "we")))
		return -1;
	fprintf(f, "mount %s\n", key);
	return fclose(f);
}

int job_record_read(const struct job *job, char key[17])
{
	char path[PATH_MAX], line[128];
	int rc = -1;
	FILE *f;

	if (job_path(job, "", path) < 0 || !(f = fopen(path, "re")))
		return -1;
	if (fgets(line, sizeof(line), f) && sscanf(line, "mount %16s", key) == 1)
		rc = 0;
	fclose(f);
	return rc;
}

void job_records_remove(const struct job *job)
{
	char path[PATH_MAX];

	if (job_path(job, "", path) == 0)
		unlink(path);
	if (job_path(job, ".err", path) == 0)
		unlink(path);
}

void job_fail(const struct job *job, const char *fmt, ...)
{
	char msg[2048], path[PATH_MAX];
	va_list ap;
	int fd = -1;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	sqv_log(SQV_LOG_WARNING, "refused: %s", msg);
	if (job_path(job, ".err", path) == 0) {
		unlink(path);
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0400);
	}
	if (fd < 0) {
		sqv_log(SQV_LOG_ERR, "%s/jobs/%lu.err: %s", job->site.state_dir, job->id,
			strerror(errno));
		return;
	}
	if (write(fd, msg, strlen(msg)) < 0 || write(fd, "\n", 1) < 0)
		sqv_log(SQV_LOG_ERR, "%s: %s", path, strerror(errno));
	if (fchown(fd, job->cred.uid, job->cred.gid) < 0)
		sqv_log(SQV_LOG_ERR, "%s: chown: %s", path, strerror(errno));
	close(fd);
}
