/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The Slurm Prolog/Epilog helper (sqvenvfs-slurm), by job:
 *
 *   sqvenvfs-slurm.c  main, --help/--version, the Prolog and Epilog flows
 *   siteconf.c        which site file: plugstack.conf's conf= of our plugin
 *   records.c         state_dir: lock, mount records, job records, .err files
 *   stage.c           node-local staging of images
 *   proc.c            credentials, processes, the daemon's start and stop
 *
 * Nothing here is global: the job (its id, its user's credentials and the
 * site settings) is passed to whatever needs it. The only process-wide state
 * is the log sink (lib/base/log.c), set once in main before anything runs.
 */
#ifndef SQV_SLURM_HELPER_H
#define SQV_SLURM_HELPER_H

#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/types.h>

#include "log.h"
#include "sqv_slurm.h"

/* A user to act as: what become_user() switches to, in a child. */
struct cred {
	uid_t uid;
	gid_t gid;
	char user[256];
};

struct job {
	unsigned long id;
	struct cred cred;     /* the job's user */
	struct sqv_site site; /* stage_max_size may be filled in by staging */
};

/* ---- siteconf.c */

/* The site file the node's plugstack.conf names with conf= on our plugin's
 * line, read from $SLURM_CONF's PlugStackConfig (what slurmd gives the
 * Prolog and Epilog); SQV_DEFAULT_SITE_CONF when none is named. out is
 * PATH_MAX bytes. 0, or -1 with err set (unreadable plugstack.conf). */
int site_conf_path(char *out, char *err);

/* ---- records.c */

struct mountrec {
	struct cred cred;
	char mountpoint[PATH_MAX];
	char stack[8192];
	pid_t pid;
	unsigned long long start;
	unsigned long *jobs; /* every job that uses the mount, no limit */
	size_t n_jobs, cap;
};

/* mkdir if missing; it must be root's own directory; then chmod. */
int mkdir_root(const char *path, mode_t mode);
uint64_t hash64(const void *data, size_t len, uint64_t seed);
int state_dirs_ensure(const struct job *job);
/* The state lock (flock on state_dir/lock): fd, or -1. */
int state_lock(const struct job *job);
void mount_key(uid_t uid, const char *mountpoint, char out[17]);
int rec_load(const struct job *job, const char *key, struct mountrec *r);
int rec_save(const struct job *job, const char *key, const struct mountrec *r);
void rec_remove(const struct job *job, const char *key);
int rec_add_job(struct mountrec *r, unsigned long id);
void rec_drop_job(struct mountrec *r, unsigned long id);
void rec_free(struct mountrec *r);
/* jobs/JOBID: which mount the job uses. */
int job_record_write(const struct job *job, const char *key);
/* The key of the job's mount into key (17 bytes); 0, or -1 when none. */
int job_record_read(const struct job *job, char key[17]);
void job_records_remove(const struct job *job);
/* The daemon's log of a mount: state_dir/log/KEY.log. */
int daemon_log_path(const struct job *job, const char *key, char *out);
/* The job's own error, kept for the SPANK plugin to print in the job's
 * output (jobs/JOBID.err, owned by the user). Never fatal for the node. */
void job_fail(const struct job *job, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* ---- stage.c */

/* Stage one image (fd src, as opened by the user) for the job; on success
 * out (PATH_MAX) gets the job's link to the copy. 1 staged or reused, 0 use
 * the image in place, -1 a job error (err set). */
int stage_image(struct job *job, int src, const char *path, size_t idx, int jobdir,
		const char *jobdir_path, char *out, char *err);
/* STAGE/jobs/JOBID: make it (0700, root) and open it; -1 if staging is off
 * or the directory cannot be made (logged; the images are used in place). */
int stage_job_dir(const struct job *job, char *path);
/* Hand STAGE/jobs/JOBID to the job's user, read-only. */
void stage_job_dir_seal(const struct job *job, int fd, const char *path);
void stage_job_dir_remove(const struct job *job);

/* ---- proc.c */

/* In a child: become cred for good (uid, gid, groups). 0 or -1. */
int become_user(const struct cred *cred);
/* Start time of a process (clock ticks since boot), 0 if gone or a zombie. */
unsigned long long proc_start(pid_t pid);
/*
 * As the job's user: open each image and check it, then check (and create
 * if missing) the mount point. The image fds come back to root over a
 * socket, so root only ever reads what the user could. resolved: PATH_MAX.
 */
int user_checks(const struct job *job, const struct sqv_req *req, int fds[], char *resolved,
		char *err);
/*
 * Start the daemon for r (as r->cred) with images at r->mountpoint and wait
 * for its READY=1 on a NOTIFY_SOCKET, as systemd does: the mount is usable
 * then. Fills r->pid and r->start. -1 with err set if the daemon exits or
 * mount_timeout passes first; nothing is left mounted then.
 */
int mount_start(const struct job *job, struct mountrec *r, const char *key,
		char *const images[], size_t n, char *err);
/* Is the record's daemon the process it started (pid and start time)? */
int daemon_alive(const struct mountrec *r);
/* Stop a mount's daemon and make sure nothing stays mounted. */
void mount_stop(const struct job *job, const struct mountrec *r);
/* Is a FUSE file system the topmost mount at mp? Any mount at all? */
int fuse_mounted_at(const char *mp);
int any_mount_at(const char *mp);

#endif
