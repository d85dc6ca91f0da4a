/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Request syntax, image and mount-point checks, site configuration: see
 * sqv_slurm.h. Used both inside sbatch/srun (as the submitting user) and in
 * the root Prolog (which calls the user-facing checks from a child that has
 * already become the job's user).
 */
#include "sqv_slurm.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "size.h"
#include "superblock.h"

void sqv_errf(char *err, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return;
	va_start(ap, fmt);
	vsnprintf(err, SQV_ERRLEN, fmt, ap);
	va_end(ap);
}

int sqv_pathf(char *out, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(out, PATH_MAX, fmt, ap);
	va_end(ap);
	if (n < 0 || n >= PATH_MAX) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

char *sqv_path_normalise(const char *path, const char *cwd, char *err)
{
	size_t cap;
	char *out, *p;
	const char *s;

	if (!path || !*path) {
		sqv_errf(err, "empty path");
		return NULL;
	}
	if (path[0] != '/' && !cwd) {
		sqv_errf(err, "%s: not an absolute path", path);
		return NULL;
	}
	cap = strlen(path) + (cwd ? strlen(cwd) : 0) + 3;
	out = malloc(cap);
	if (!out) {
		sqv_errf(err, "%s: out of memory", path);
		return NULL;
	}
	if (path[0] == '/')
		snprintf(out, cap, "%s", path);
	else
		snprintf(out, cap, "%s/%s", cwd, path);

	/* Rewrite in place: component by component. */
	p = out;
	s = out;
	while (*s) {
		const char *e;
		size_t len;

		while (*s == '/')
			s++;
		if (!*s)
			break;
		e = strchr(s, '/');
		len = e ? (size_t)(e - s) : strlen(s);
		if (len == 1 && s[0] == '.') {
			s += len;
			continue;
		}
		if (len == 2 && s[0] == '.' && s[1] == '.') {
			sqv_errf(err, "%s: \"..\" is not allowed in the path", path);
			free(out);
			return NULL;
		}
		*p++ = '/';
		memmove(p, s, len);
		p += len;
		s += len;
	}
	if (p == out)
		*p++ = '/';
	*p = '\0';
	if (strlen(out) >= PATH_MAX) {
		sqv_errf(err, "%s: path too long", path);
		free(out);
		return NULL;
	}
	return out;
}

void sqv_req_free(struct sqv_req *req)
{
	if (!req)
		return;
	for (size_t i = 0; i < req->n_images; i++)
		free(req->images[i]);
	free(req->mountpoint);
	memset(req, 0, sizeof(*req));
}

int sqv_req_parse(const char *s, const char *cwd, struct sqv_req *req, char *err)
{
	const char *colon;
	char *list = NULL, *save = NULL, *tok;

	memset(req, 0, sizeof(*req));
	if (!s || !*s) {
		sqv_errf(err, "--sqvenv: empty value; expected IMAGE[,IMAGE...]:MOUNTPOINT");
		return -1;
	}
	colon = strrchr(s, ':');
	if (!colon || colon == s || !colon[1]) {
		sqv_errf(err, "--sqvenv=%s: expected IMAGE[,IMAGE...]:MOUNTPOINT", s);
		return -1;
	}
	for (const char *c = s; *c; c++) {
		if (iscntrl((unsigned char)*c)) {
			sqv_errf(err, "--sqvenv: control character in the value");
			return -1;
		}
	}
	req->mountpoint = sqv_path_normalise(colon + 1, cwd, err);
	if (!req->mountpoint)
		goto fail;
	list = strndup(s, (size_t)(colon - s));
	if (!list) {
		sqv_errf(err, "--sqvenv: out of memory");
		goto fail;
	}
	/* strtok_r would skip an empty name: $BASE,$DELTA with DELTA unset
	 * would then mount BASE alone, the wrong environment, without a
	 * word. An empty name is refused. */
	for (tok = list; tok; tok = save) {
		save = strchr(tok, ',');
		if (save)
			*save++ = '\0';
		if (!*tok) {
			sqv_errf(err, "--sqvenv=%s: an empty image name in the "
				 "list (an unset variable?)", s);
			goto fail;
		}
		if (req->n_images == SQV_MAX_IMAGES) {
			sqv_errf(err, "--sqvenv: more than %d images", SQV_MAX_IMAGES);
			goto fail;
		}
		req->images[req->n_images] = sqv_path_normalise(tok, cwd, err);
		if (!req->images[req->n_images])
			goto fail;
		req->n_images++;
	}
	if (req->n_images == 0) {
		sqv_errf(err, "--sqvenv=%s: no image before ':'", s);
		goto fail;
	}
	free(list);
	return 0;
fail:
	free(list);
	sqv_req_free(req);
	return -1;
}

char *sqv_req_format(const struct sqv_req *req)
{
	size_t len = strlen(req->mountpoint) + 2;
	char *out, *p;

	for (size_t i = 0; i < req->n_images; i++)
		len += strlen(req->images[i]) + 1;
	out = malloc(len);
	if (!out)
		return NULL;
	p = out;
	for (size_t i = 0; i < req->n_images; i++)
		p += sprintf(p, "%s%s", i ? "," : "", req->images[i]);
	sprintf(p, ":%s", req->mountpoint);
	return out;
}

int sqv_check_image_fd(int fd, const char *path, char *err)
{
	unsigned char sb[SQV_SUPERBLOCK_SIZE];
	struct sqv_superblock info;
	struct stat st;
	char why[160];
	ssize_t n;

	if (fstat(fd, &st) < 0) {
		sqv_errf(err, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		sqv_errf(err, "%s: not a regular file", path);
		return -1;
	}
	n = pread(fd, sb, sizeof(sb), 0);
	if (n < 0) {
		sqv_errf(err, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (sqv_superblock_check(sb, (size_t)n, (uint64_t)st.st_size, &info, why,
				 sizeof(why)) < 0) {
		sqv_errf(err, "%s: %s", path, why);
		return -1;
	}
	return 0;
}

int sqv_open_image(const char *path, char *err)
{
	/* O_NONBLOCK: a FIFO planted in place of an image must not hang us. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

	if (fd < 0) {
		if (errno == EACCES)
			sqv_errf(err, "%s: not readable by you (permission denied)", path);
		else
			sqv_errf(err, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (sqv_check_image_fd(fd, path, err) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int sqv_path_under(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

int sqv_path_is_system(const char *path)
{
	static const char *const sys[] = {
		"/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32",
		"/proc", "/root", "/sbin", "/sys", "/usr", "/var/lib", "/var/log",
		"/var/spool", "/var/cache", "/var/run", "/snap",
	};

	if (strcmp(path, "/") == 0)
		return 1;
	for (size_t i = 0; i < sizeof(sys) / sizeof(sys[0]); i++)
		if (sqv_path_under(path, sys[i]))
			return 1;
	/* /run is the system's, except a user's own /run/user/UID. */
	if (sqv_path_under(path, "/run") && !sqv_path_under(path, "/run/user"))
		return 1;
	return 0;
}

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

FILE *sqv_conf_open(const char *path, char *err)
{
	FILE *f = fopen(path, "re");

	if (!f && errno != ENOENT) {
		int e = errno;

		sqv_errf(err, "%s: %s", path, strerror(e));
		errno = e;
	}
	return f;
}

void sqv_site_defaults(struct sqv_site *site)
{
	memset(site, 0, sizeof(*site));
	strcpy(site->daemon, SQV_DEFAULT_DAEMON);
	strcpy(site->state_dir, "/run/sqvenvfs");
	strcpy(site->fusermount, "/bin/fusermount3");
	site->mount_timeout = 120;
}

/* One KEY = VALUE of the site file: 0, or -1 with the reason in why. */
static int site_set(struct sqv_site *site, const char *key, const char *val, char *why)
{
	static const struct {
		const char *name;
		size_t off, size;
	} strs[] = {
#define STR(f) { #f, offsetof(struct sqv_site, f), sizeof(((struct sqv_site *)0)->f) }
		STR(daemon), STR(daemon_options), STR(state_dir), STR(stage_dir), STR(fusermount),
		STR(log_file),
#undef STR
	};

	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		if (strcmp(key, strs[i].name) != 0)
			continue;
		if (strlen(val) >= strs[i].size) {
			sqv_errf(why, "%s: value too long", key);
			return -1;
		}
		/* Paths are absolute (stage_dir and log_file may be empty:
		 * off); the two programs must be there to run. */
		bool program = !strcmp(key, "daemon") || !strcmp(key, "fusermount");
		if (strcmp(key, "daemon_options") && (*val || program) && *val != '/') {
			sqv_errf(why, "%s: not an absolute path: %s", key, val);
			return -1;
		}
		if (program && access(val, X_OK) < 0) {
			sqv_errf(why, "%s: %s: not a program this node can run (%s)",
				 key, val, strerror(errno));
			return -1;
		}
		strcpy((char *)site + strs[i].off, val);
		return 0;
	}
	if (strcmp(key, "stage_max_size") == 0) {
		if (sqv_size_parse(val, &site->stage_max_size) == 0)
			return 0;
		sqv_errf(why, "stage_max_size: not a size (e.g. 200G): %s", val);
		return -1;
	}
	if (strcmp(key, "mount_timeout") == 0) {
		char *end;
		unsigned long v = strtoul(val, &end, 10);

		if (*end || end == val || v == 0 || v > 3600) {
			sqv_errf(why, "mount_timeout: not a number of seconds (1-3600): %s", val);
			return -1;
		}
		site->mount_timeout = (unsigned)v;
		return 0;
	}
	sqv_errf(why, "unknown setting \"%s\"", key);
	return -1;
}

/* Every line: 0, or -1 with err "PATH:LINE: reason". */
static int site_lines(struct sqv_site *site, FILE *f, const char *path, char *err)
{
	char line[8192], why[SQV_ERRLEN];
	unsigned lineno = 0;

	while (fgets(line, sizeof(line), f)) {
		char *key, *eq, *hash = strchr(line, '#');

		lineno++;
		if (hash)
			*hash = '\0';
		key = trim(line);
		if (!*key)
			continue;
		eq = strchr(key, '=');
		if (!eq) {
			sqv_errf(err, "%s:%u: expected KEY = VALUE", path, lineno);
			return -1;
		}
		*eq = '\0';
		if (site_set(site, trim(key), trim(eq + 1), why) < 0) {
			sqv_errf(err, "%s:%u: %s", path, lineno, why);
			return -1;
		}
	}
	return 0;
}

int sqv_site_load(struct sqv_site *site, const char *path, char *err)
{
	FILE *f;
	int rc;

	sqv_site_defaults(site);
	if (!path || !*path)
		path = SQV_DEFAULT_SITE_CONF;
	f = sqv_conf_open(path, err);
	if (!f)
		return errno == ENOENT ? 0 : -1;
	rc = site_lines(site, f, path, err);
	fclose(f);
	if (rc < 0)
		return -1;
	if (site->state_dir[0] != '/' || (site->stage_dir[0] && site->stage_dir[0] != '/') ||
	    site->daemon[0] != '/') {
		sqv_errf(err, "%s: daemon, state_dir and stage_dir must be absolute paths", path);
		return -1;
	}
	if (site->stage_dir[0] && site->stage_max_size == 0) {
		struct statvfs vfs;

		if (statvfs(site->stage_dir, &vfs) == 0)
			site->stage_max_size = (uint64_t)vfs.f_blocks * vfs.f_frsize / 2;
	}
	return 0;
}
