/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * siteconf: which site settings file the Prolog and Epilog read. The
 * administrator names it once, with conf= on the plugin's line in
 * plugstack.conf; the plugin reads it from there and so must the helper.
 * Slurm gives the Prolog a fresh environment, but with SLURM_CONF set to
 * the slurm.conf slurmd uses; that names PlugStackConfig (by default
 * plugstack.conf beside slurm.conf), whose `include` lines are followed.
 */
#include "helper.h"

#include <ctype.h>
#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PLUGIN_NAME "sqvenvfs.so"
#define INCLUDE_DEPTH 8

static char *skip_space(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	return s;
}

/* The next blank-separated word of *s, NUL-terminated in place. */
static char *next_word(char **s)
{
	char *w = skip_space(*s);

	if (!*w)
		return NULL;
	char *e = w;
	while (*e && !isspace((unsigned char)*e))
		e++;
	if (*e)
		*e++ = '\0';
	*s = e;
	return w;
}

static void dir_of(const char *path, char *out)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		snprintf(out, PATH_MAX, ".");
	else if (slash == path)
		snprintf(out, PATH_MAX, "/");
	else
		snprintf(out, PATH_MAX, "%.*s", (int)(slash - path), path);
}

/* slurm.conf's PlugStackConfig, or plugstack.conf beside it. */
static void plugstack_path(const char *slurm_conf, char *out)
{
	char line[8192], dir[PATH_MAX];
	FILE *f = fopen(slurm_conf, "re");

	dir_of(slurm_conf, dir);
	if (sqv_pathf(out, "%s/plugstack.conf", dir) < 0)
		out[0] = '\0';
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *s = skip_space(line), *eq = strchr(s, '=');

		if (!eq || *s == '#')
			continue;
		*eq = '\0';
		char *key = s, *end = eq;
		while (end > key && isspace((unsigned char)end[-1]))
			*--end = '\0';
		if (strcasecmp(key, "PlugStackConfig") != 0)
			continue;
		char *val = skip_space(eq + 1);
		val[strcspn(val, " \t\r\n#")] = '\0';
		if (sqv_pathf(out, "%s", val) < 0)
			out[0] = '\0';
	}
	fclose(f);
}

static int scan(const char *path, int depth, char *out, char *err);

static int scan_include(const char *from, const char *pattern, int depth, char *out,
			char *err)
{
	char dir[PATH_MAX], full[PATH_MAX];
	glob_t g;

	dir_of(from, dir);
	if ((pattern[0] == '/' ? sqv_pathf(full, "%s", pattern)
			       : sqv_pathf(full, "%s/%s", dir, pattern)) < 0)
		return 0;
	if (glob(full, 0, NULL, &g) != 0)
		return 0;
	int rc = 0;
	for (size_t i = 0; i < g.gl_pathc && rc == 0; i++)
		rc = scan(g.gl_pathv[i], depth + 1, out, err);
	globfree(&g);
	return rc;
}

/* 1 when our plugin's line is found (out set), 0 when not, -1 on error. */
static int scan(const char *path, int depth, char *out, char *err)
{
	char line[8192];
	int rc = 0;
	FILE *f;

	if (depth > INCLUDE_DEPTH)
		return 0;
	f = sqv_conf_open(path, err);
	if (!f)
		return errno == ENOENT ? 0 : -1;
	while (rc == 0 && fgets(line, sizeof(line), f)) {
		char *s = line, *hash = strchr(line, '#');

		if (hash)
			*hash = '\0';
		char *kind = next_word(&s);
		if (!kind)
			continue;
		char *what = next_word(&s);
		if (!what)
			continue;
		if (strcmp(kind, "include") == 0) {
			rc = scan_include(path, what, depth, out, err);
			continue;
		}
		const char *base = strrchr(what, '/');
		base = base ? base + 1 : what;
		if ((strcmp(kind, "required") && strcmp(kind, "optional")) ||
		    strcmp(base, PLUGIN_NAME) != 0)
			continue;
		rc = 1;
		out[0] = '\0';
		for (char *arg; (arg = next_word(&s));)
			if (strncmp(arg, "conf=", 5) == 0 && sqv_pathf(out, "%s", arg + 5) < 0) {
				sqv_errf(err, "%s: conf=: path too long", path);
				rc = -1;
			}
	}
	fclose(f);
	return rc;
}

int site_conf_path(char *out, char *err)
{
	const char *slurm_conf = getenv("SLURM_CONF");
	char plugstack[PATH_MAX], conf[PATH_MAX] = "";

	if (!slurm_conf || !*slurm_conf)
		slurm_conf = "/etc/slurm/slurm.conf";
	plugstack_path(slurm_conf, plugstack);
	if (plugstack[0] && scan(plugstack, 0, conf, err) < 0)
		return -1;
	return sqv_pathf(out, "%s", conf[0] ? conf : SQV_DEFAULT_SITE_CONF);
}
