/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Shared by the SPANK plugin (submission checks, remote error report) and the
 * Prolog/Epilog helper: the --sqvenv request syntax, the checks that make an
 * image or a mount point acceptable, and the site configuration file.
 *
 * Everything here is safe to call as the job's user or as root; none of it
 * changes credentials. Functions return 0 or -1 and, on -1, leave one line in
 * err ("<thing>: <reason>") for the user.
 */
#ifndef SQV_SLURM_H
#define SQV_SLURM_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <sys/types.h>

#include "sqv_config.h" /* the installed paths */

#define SQV_ERRLEN 512
#define SQV_MAX_IMAGES 32
/* The name under which the request travels to the Prolog and Epilog
 * (spank_job_control_setenv prefixes it with SPANK_). */
#define SQV_ENV_NAME "SQVENV"

/* Format a path into out (PATH_MAX bytes): 0, or -1 with errno
 * ENAMETOOLONG when it does not fit (out is then not to be used). */
int sqv_pathf(char *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Format a message into err (SQV_ERRLEN bytes); a longer one is cut, which
 * is all right for a message. err may be NULL. */
void sqv_errf(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

struct sqv_req {
	char *images[SQV_MAX_IMAGES]; /* absolute, normalised, bottom first */
	size_t n_images;
	char *mountpoint;             /* absolute, normalised */
};

/* "IMG[,IMG...]:MOUNTPOINT". Relative paths are made absolute against cwd
 * (cwd may be NULL: then relative paths are refused). */
int sqv_req_parse(const char *s, const char *cwd, struct sqv_req *req, char *err);
void sqv_req_free(struct sqv_req *req);
/* The canonical form of a parsed request (malloc'd) */
char *sqv_req_format(const struct sqv_req *req);

/* Lexical clean-up of an absolute path: collapses "//" and "/./", refuses
 * "..", strips a trailing "/". Returns malloc'd text or NULL (err set). */
char *sqv_path_normalise(const char *path, const char *cwd, char *err);

/* fd is an open image: a regular file whose superblock passes lib/base's
 * sqv_superblock_check (the daemon's own first check). */
int sqv_check_image_fd(int fd, const char *path, char *err);
/* Open path read-only (as whoever calls it) and check it as above. Returns
 * the fd or -1. */
int sqv_open_image(const char *path, char *err);

/* Whether path is dir or lies below it (both absolute, normalised; dir
 * not "/"). */
int sqv_path_under(const char *path, const char *dir);

/* A path under which nothing is ever mounted (/, /usr, /etc, ...). */
int sqv_path_is_system(const char *path);

/*
 * Resolve an absolute mount point one component at a time without following
 * any symlink that root does not own, as the calling user. Missing components
 * are created (mode 0755) when create is set, otherwise a missing path is
 * reported through *missing (when missing is not NULL) and 0 is returned.
 * The result must be a directory owned by uid, outside the system paths.
 * resolved receives the path with root-owned symlinks replaced (PATH_MAX).
 */
int sqv_resolve_mountpoint(const char *path, uid_t uid, int create, char *resolved,
			   int *missing, char *err);

/* 1 when a FUSE file system mounted by uid (user_id=uid) is at path. */
int sqv_user_fuse_mount_at(const char *path, uid_t uid);

struct sqv_site {
	char daemon[4096];          /* the sqvenvfs executable */
	char daemon_options[1024];  /* passed as "-o VALUE" when not empty */
	char state_dir[4096];       /* node-local, root-owned: locks, records */
	char stage_dir[4096];       /* node-local image cache; "" = no staging */
	uint64_t stage_max_size;    /* bytes; 0 = half of stage_dir's file system */
	unsigned mount_timeout;     /* seconds to wait for the mount */
	char fusermount[4096];      /* to clear a stale mount as the user */
	char log_file[4096];        /* "" = syslog only */
};

/* Open a configuration file to read: a missing file is no error (NULL,
 * err untouched, errno ENOENT); another failure is (NULL, err set). */
FILE *sqv_conf_open(const char *path, char *err);

/* The built-in settings, which a site file overrides. */
void sqv_site_defaults(struct sqv_site *site);
/* Defaults, then the file at path if it exists ("" or NULL: the built-in
 * default path). A missing file is not an error; a bad line is. */
int sqv_site_load(struct sqv_site *site, const char *path, char *err);

#endif
