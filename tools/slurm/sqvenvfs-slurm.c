/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * sqvenvfs-slurm: the Slurm Prolog and Epilog (one program; installed as
 * sqvenvfs-prolog and sqvenvfs-epilog, or run as "sqvenvfs-slurm prolog|epilog").
 *
 * Prolog (root, on every node of the job, before it starts): reads the job's
 * request from SPANK_SQVENV (set by the SPANK plugin; untrusted: everything
 * is checked again here), becomes the job's user to open the images and to
 * check or create the mount point, optionally stages the images into a
 * node-local cache, and starts the sqvenvfs daemon as the job's user (uid,
 * gid, groups) in its own session, waiting for its READY=1, or joins an
 * existing identical mount of the same user. A failure caused by the request
 * never makes the Prolog exit non-zero (that drains the node): it is written
 * to STATE/jobs/JOBID.err, which the SPANK plugin prints in the job's output
 * while refusing to start the job's tasks.
 *
 * Epilog (root, after the job ends for any reason): drops the job from the
 * mount it used and stops the daemon and unmounts when it was the last job.
 * It always exits 0.
 *
 * The site settings are the file plugstack.conf names with conf= (see
 * siteconf.c); the state is described in records.c, staging in stage.c.
 */
#include "helper.h"
#include "mountinfo.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ log */

/* Every line names the job; syslog always, the site's log_file too. */
static void log_sink(int level, const char *msg, void *ctx)
{
	const struct job *job = ctx;
	int fd;

	syslog(level, "job %lu: %s", job->id, msg);
	if (!job->site.log_file[0])
		return;
	fd = open(job->site.log_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
		  0640);
	if (fd >= 0) {
		time_t now = time(NULL);
		struct tm tm;

		gmtime_r(&now, &tm);
		dprintf(fd, "%04d-%02d-%02dT%02d:%02d:%02dZ job %lu: %s\n", tm.tm_year + 1900,
			tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, job->id, msg);
		close(fd);
	}
}

/* --------------------------------------------------------------- prolog */

/* What makes two requests the same stack: the images' paths, sizes, mtimes
 * and inodes, in order. 0, or -1 (the job is failed). */
static int stack_id(const struct job *job, const struct sqv_req *req, const int fds[],
		    char *stack, size_t size)
{
	size_t sl = 0;

	stack[0] = '\0';
	for (size_t i = 0; i < req->n_images; i++) {
		struct stat st;

		if (fstat(fds[i], &st) < 0) {
			job_fail(job, "%s: %s", req->images[i], strerror(errno));
			return -1;
		}
		int n = snprintf(stack + sl, size - sl, "%s%s|%lld|%lld.%09ld|%llu", i ? "," : "",
				 req->images[i], (long long)st.st_size,
				 (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
				 (unsigned long long)st.st_ino);
		if (n < 0 || (size_t)n >= size - sl) {
			job_fail(job, "--sqvenv: request too long");
			return -1;
		}
		sl += (size_t)n;
	}
	return 0;
}

/* images[i]: the staged copy, or the original; malloc'd. 0, or -1 (the job
 * is failed). */
static int choose_images(struct job *job, const struct sqv_req *req, const int fds[],
			 char *images[])
{
	char jp[PATH_MAX], err[SQV_ERRLEN];
	int jobdir = stage_job_dir(job, jp);
	int rc = 0;

	for (size_t i = 0; jobdir >= 0 && i < req->n_images; i++) {
		char out[PATH_MAX];
		int s = stage_image(job, fds[i], req->images[i], i, jobdir, jp, out, err);

		if (s < 0) {
			job_fail(job, "%s", err);
			rc = -1;
			break;
		}
		if (s > 0)
			images[i] = strdup(out);
	}
	if (jobdir >= 0) {
		/* From now on the directory is the user's, read-only. */
		stage_job_dir_seal(job, jobdir, jp);
		close(jobdir);
	}
	for (size_t i = 0; rc == 0 && i < req->n_images; i++)
		if (!images[i] && !(images[i] = strdup(req->images[i]))) {
			job_fail(job, "internal error: out of memory");
			rc = -1;
		}
	return rc;
}

static void record_fail(const struct job *job)
{
	job_fail(job, "internal error: cannot record the mount: %s", strerror(errno));
}

/* Under the state lock: join the user's live mount of the same stack at
 * this mount point, or clear a dead one and mount. */
static void join_or_mount(const struct job *job, const char *resolved, const char *stack,
			  char *const images[], size_t n)
{
	char key[17], err[SQV_ERRLEN];
	struct mountrec r;

	mount_key(job->cred.uid, resolved, key);
	if (rec_load(job, key, &r) == 0) {
		int alive = daemon_alive(&r) && fuse_mounted_at(r.mountpoint);

		if (alive && strcmp(r.stack, stack) == 0) {
			if (rec_add_job(&r, job->id) < 0 || rec_save(job, key, &r) < 0 ||
			    job_record_write(job, key) < 0)
				record_fail(job);
			else
				sqv_log(SQV_LOG_INFO, "shares the mount at %s (daemon pid %d, "
					"%zu jobs)", resolved, (int)r.pid, r.n_jobs);
			rec_free(&r);
			return;
		}
		if (alive) {
			job_fail(job, "%s is already in use by your job %lu with a different image "
				 "stack; use another mount point or the same images", resolved,
				 r.n_jobs ? r.jobs[0] : 0UL);
			rec_free(&r);
			return;
		}
		sqv_log(SQV_LOG_NOTICE, "clearing a stale mount at %s", r.mountpoint);
		mount_stop(job, &r);
		rec_remove(job, key);
		rec_free(&r);
	}
	if (any_mount_at(resolved)) {
		job_fail(job, "%s is already a mount point; unmount it or choose another directory",
			 resolved);
		return;
	}
	/* Mounted over, another mount (your other job's) would be hidden:
	 * its job's Epilog could no longer reach it by its path, and it
	 * would stay behind, dead, once this one went. */
	char below[PATH_MAX];
	if (sqv_mountinfo_below(resolved, below, sizeof(below)) == 1) {
		job_fail(job, "%s holds a mount point below it (%s), which a mount "
			 "here would hide; choose another directory", resolved, below);
		return;
	}
	memset(&r, 0, sizeof(r));
	r.cred = job->cred;
	strcpy(r.mountpoint, resolved);
	strcpy(r.stack, stack);
	if (mount_start(job, &r, key, images, n, err) < 0) {
		job_fail(job, "%s", err);
		return;
	}
	if (rec_add_job(&r, job->id) < 0 || rec_save(job, key, &r) < 0 ||
	    job_record_write(job, key) < 0) {
		record_fail(job);
		mount_stop(job, &r);
		rec_remove(job, key);
	}
	rec_free(&r);
}

static int prolog(struct job *job)
{
	char err[SQV_ERRLEN], resolved[PATH_MAX], stack[8192];
	char *images[SQV_MAX_IMAGES] = { 0 };
	int fds[SQV_MAX_IMAGES];
	const char *spec = getenv("SPANK_" SQV_ENV_NAME);
	struct sqv_req req;

	if (sqv_req_parse(spec, NULL, &req, err) < 0) {
		job_fail(job, "%s", err);
		return 0;
	}
	for (size_t i = 0; i < req.n_images; i++)
		fds[i] = -1;
	if (user_checks(job, &req, fds, resolved, err) < 0) {
		job_fail(job, "%s", err);
		goto out;
	}
	if (stack_id(job, &req, fds, stack, sizeof(stack)) < 0 ||
	    choose_images(job, &req, fds, images) < 0)
		goto out;
	int lockfd = state_lock(job);
	if (lockfd < 0) {
		job_fail(job, "internal error: cannot lock %s", job->site.state_dir);
		goto out;
	}
	join_or_mount(job, resolved, stack, images, req.n_images);
	close(lockfd);
out:
	for (size_t i = 0; i < req.n_images; i++) {
		if (fds[i] >= 0)
			close(fds[i]);
		free(images[i]);
	}
	sqv_req_free(&req);
	return 0;
}

/* --------------------------------------------------------------- epilog */

static int epilog(const struct job *job)
{
	struct mountrec r;
	char key[17];

	if (job_record_read(job, key) == 0) {
		int lockfd = state_lock(job);

		if (rec_load(job, key, &r) == 0) {
			rec_drop_job(&r, job->id);
			if (r.n_jobs == 0) {
				mount_stop(job, &r);
				rec_remove(job, key);
			} else {
				rec_save(job, key, &r);
				sqv_log(SQV_LOG_INFO, "leaves the mount at %s to %zu other job(s)",
					r.mountpoint, r.n_jobs);
			}
			rec_free(&r);
		}
		if (lockfd >= 0)
			close(lockfd);
	}
	job_records_remove(job);
	stage_job_dir_remove(job);
	return 0;
}

/* ----------------------------------------------------------------- main */

static void usage(FILE *out)
{
	fprintf(out,
		"usage: sqvenvfs-slurm prolog|epilog\n"
		"       sqvenvfs-prolog\n"
		"       sqvenvfs-epilog\n"
		"\n"
		"The Slurm Prolog and Epilog of sqvenvfs: in slurm.conf, Prolog= and Epilog=\n"
		"name the sqvenvfs-prolog and sqvenvfs-epilog links to this program.\n"
		"The Prolog mounts the job's --sqvenv stack as the job's user, the Epilog\n"
		"unmounts it after the job's last use. Both always exit 0, so a job's bad\n"
		"request fails that job, never the node.\n"
		"\n"
		"Reads SLURM_JOB_ID, SLURM_JOB_UID, SLURM_JOB_GID and SPANK_SQVENV, and the\n"
		"site settings named by conf= on the sqvenvfs.so line of the plugstack.conf\n"
		"that $SLURM_CONF names (default %s).\n"
		"\n"
		"options:\n"
		"  -h, --help     this help\n"
		"  -V, --version  print the version\n",
		SQV_DEFAULT_SITE_CONF);
}

/* The job's user from what slurmd puts in the Prolog's environment.
 * 0, or -1 (the job is failed: no user, or root). */
static int job_user(struct job *job)
{
	const char *uid = getenv("SLURM_JOB_UID"), *gid = getenv("SLURM_JOB_GID");
	struct passwd *pw;

	job->cred.uid = uid ? (uid_t)strtoul(uid, NULL, 10) : 0;
	pw = getpwuid(job->cred.uid);
	job->cred.gid = gid ? (gid_t)strtoul(gid, NULL, 10) : pw ? pw->pw_gid : 0;
	snprintf(job->cred.user, sizeof(job->cred.user), "%s", pw ? pw->pw_name : "");
	if (uid && pw && job->cred.uid != 0)
		return 0;
	job_fail(job, "cannot tell the job's user (SLURM_JOB_UID %s)%s", uid ? uid : "unset",
		 job->cred.uid == 0 && pw ? "; root jobs cannot use --sqvenv" : "");
	return -1;
}

/* "prolog" or "epilog" from the command line or the name; NULL if neither. */
static const char *mode_of(int argc, char **argv)
{
	const char *base = strrchr(argv[0], '/');

	base = base ? base + 1 : argv[0];
	if (argc > 1)
		return strcmp(argv[1], "prolog") == 0 || strcmp(argv[1], "epilog") == 0 ?
			       argv[1] : NULL;
	if (strstr(base, "epilog"))
		return "epilog";
	if (strstr(base, "prolog"))
		return "prolog";
	return NULL;
}

int main(int argc, char **argv)
{
	static struct job job; /* the log sink's context, for the whole run */
	char err[SQV_ERRLEN], conf[PATH_MAX];
	const char *mode, *v;
	int site_ok;

	if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		usage(stdout);
		return 0;
	}
	if (argc > 1 && (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V"))) {
		printf("sqvenvfs-slurm %s\n", SQV_VERSION);
		return 0;
	}
	mode = mode_of(argc, argv);
	if (!mode || argc > 2) {
		/* One line naming what is wrong, not the whole usage. */
		if (argc > 2)
			fprintf(stderr, "sqvenvfs-slurm: %s: one word only, prolog "
				"or epilog (see --help)\n", argv[2]);
		else if (argc > 1)
			fprintf(stderr, "sqvenvfs-slurm: %s: not a mode: prolog or "
				"epilog (see --help)\n", argv[1]);
		else
			fprintf(stderr, "sqvenvfs-slurm: give prolog or epilog, or run "
				"it as sqvenvfs-prolog or sqvenvfs-epilog (see --help)\n");
		return 2;
	}
	umask(022);
	openlog("sqvenvfs-slurm", LOG_PID, LOG_DAEMON);
	sqv_log_set_ident("sqvenvfs-slurm");
	sqv_log_set_level(SQV_LOG_INFO);
	sqv_log_set_sink(log_sink, &job);
	v = getenv("SLURM_JOB_ID");
	job.id = v ? strtoul(v, NULL, 10) : 0;
	if (!job.id) {
		fprintf(stderr, "sqvenvfs-slurm: SLURM_JOB_ID is not set; run me as Slurm's %s\n",
			strcmp(mode, "prolog") == 0 ? "Prolog" : "Epilog");
		return 2;
	}
	sqv_site_defaults(&job.site);
	site_ok = site_conf_path(conf, err) == 0 && sqv_site_load(&job.site, conf, err) == 0;
	/* Nothing to do for jobs that did not ask, whatever the site file says. */
	if (strcmp(mode, "prolog") == 0 && !getenv("SPANK_" SQV_ENV_NAME))
		return 0;
	if (geteuid() != 0) {
		fprintf(stderr, "sqvenvfs-slurm: must run as root (Slurm's Prolog/Epilog)\n");
		return 0;
	}
	if (!site_ok)
		sqv_log(SQV_LOG_ERR, "site configuration: %s", err);
	if (state_dirs_ensure(&job) < 0)
		return 0;
	if (strcmp(mode, "epilog") == 0)
		return epilog(&job);
	if (job_user(&job) < 0)
		return 0;
	if (!site_ok) {
		job_fail(&job, "the node's sqvenvfs configuration is broken (%s); tell your "
			 "administrator", err);
		return 0;
	}
	return prolog(&job);
}
