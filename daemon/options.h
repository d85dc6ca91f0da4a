/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The daemon's command line: its own flags, its -o options, libfuse's
 * standard mount options (passed through), and what mount(8) and
 * mount.fuse3 hand to a file system helper. Parsed with libfuse's fuse_opt.
 */
#ifndef SQVENVFS_OPTIONS_H
#define SQVENVFS_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define SQV_DEFAULT_CACHE_BYTES ((size_t)64 << 20)
#define SQV_DEFAULT_THREADS 8
#define SQV_MAX_THREADS 256
#define SQV_DEFAULT_PREFETCH_BYTES ((size_t)4 << 20)
#define SQV_MIN_PREFETCH_BYTES ((size_t)1 << 20)
#define SQV_MAX_PREFETCH_BYTES ((size_t)1 << 30)

struct options {
	bool foreground;
	bool debug;
	bool json;
	bool human;      /* --stats --human (also the default on a terminal) */
	bool if_mounted; /* --unmount: nothing mounted is no error */
	unsigned threads;
	size_t cache_bytes;
	/* -o cache_size='s value as written (NULL when not given), so a
	 * refusal names what the user wrote, not our rounding of it. */
	char *cache_size_text;
	unsigned max_read;     /* -o max_read=, also passed on; 0 if not given */
	size_t prefetch_bytes; /* -o prefetch=: each read of a hot range; 0 off */
	char *record;          /* -o record=FILE, made absolute (the daemon
				* leaves the cwd), or NULL */
	enum { MODE_MOUNT, MODE_UNMOUNT, MODE_STATS } mode;
	/* Positional arguments: the images, bottom first, then the mount
	 * point. An IMAGE argument may be a comma-separated stack (the one
	 * source field of an fstab line); it is split here. */
	char **paths;
	int npaths;
	char *fsname;    /* -o fsname=, or NULL for the top image's path */
	char *subtype;   /* -o subtype=, or NULL for "sqvenvfs" */
	/* libfuse's own mount options to pass on, comma-separated and
	 * escaped for its -o parser (auto_unmount, allow_other, noatime...). */
	char *fuse_opts;
};

/* 0 to go on, 1 when done (help, version), -1 on a usage error (one line
 * already printed). *o is filled in and must be freed with
 * sqv_options_free in every case. */
int sqv_options_parse(int argc, char **argv, struct options *o);
void sqv_options_free(struct options *o);
void sqv_options_usage(FILE *out);

#endif
