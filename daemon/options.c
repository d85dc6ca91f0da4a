/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The command line, parsed with libfuse's fuse_opt so that it reads the way
 * every FUSE file system's does: `sqvenvfs IMAGE MNT -o a,b=c` works in any
 * order, which is how mount.fuse3 calls us for `mount -t fuse.sqvenvfs` and
 * for fstab lines.
 *
 * Every option is one row of `table` with a key saying what becomes of it:
 * ours (validated here), libfuse's (passed on to fuse_session_new), always
 * in effect (ro, nosuid, nodev: the mount never becomes writable, setuid or
 * a device host, whatever mount(8) sends), mount(8)'s own bookkeeping
 * (ignored), or refused with a reason. To add an option: a KEY_, a row, a
 * case in option_proc, a line in usage and in the man page (a test compares
 * the two).
 */
#include "options.h"

#define FUSE_USE_VERSION 314
#include <fuse_opt.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "index.h"
#include "size.h"
#include "sqv_config.h"
#include "trace.h"

enum {
	KEY_HELP,
	KEY_VERSION,
	KEY_FOREGROUND,
	KEY_DEBUG,
	KEY_UNMOUNT,
	KEY_STATS,
	KEY_JSON,
	KEY_HUMAN,
	KEY_IF_MOUNTED,
	KEY_THREADS,
	KEY_CACHE_SIZE,
	KEY_MAX_READ,
	KEY_PREFETCH,
	KEY_RECORD,
	KEY_FSNAME,
	KEY_SUBTYPE,
	KEY_FUSE,   /* libfuse's own: passed on unchanged */
	KEY_ALWAYS, /* ro, nosuid, nodev and their opposites: ignored */
	KEY_MOUNT8, /* mount(8)'s and fstab's bookkeeping: ignored */
	KEY_REFUSE, /* + index into refusals[] */
};

static const char *const refusals[] = {
	"sqvenvfs serves image files, not block devices",
	"a mounted stack cannot be changed; unmount it and mount again",
	"not needed: sqvenvfs reads the image file itself",
	"is mount.fuse3's option; use mount -t fuse.sqvenvfs",
};

static const struct fuse_opt table[] = {
	FUSE_OPT_KEY("-h", KEY_HELP),
	FUSE_OPT_KEY("--help", KEY_HELP),
	FUSE_OPT_KEY("-V", KEY_VERSION),
	FUSE_OPT_KEY("--version", KEY_VERSION),
	FUSE_OPT_KEY("-f", KEY_FOREGROUND),
	FUSE_OPT_KEY("--foreground", KEY_FOREGROUND),
	FUSE_OPT_KEY("-d", KEY_DEBUG),
	FUSE_OPT_KEY("--debug", KEY_DEBUG),
	FUSE_OPT_KEY("debug", KEY_DEBUG),
	FUSE_OPT_KEY("-u", KEY_UNMOUNT),
	FUSE_OPT_KEY("--unmount", KEY_UNMOUNT),
	FUSE_OPT_KEY("-s", KEY_STATS),
	FUSE_OPT_KEY("--stats", KEY_STATS),
	FUSE_OPT_KEY("--json", KEY_JSON),
	FUSE_OPT_KEY("--human", KEY_HUMAN),
	FUSE_OPT_KEY("--if-mounted", KEY_IF_MOUNTED),

	FUSE_OPT_KEY("threads=", KEY_THREADS),
	FUSE_OPT_KEY("cache_size=", KEY_CACHE_SIZE),
	FUSE_OPT_KEY("prefetch=", KEY_PREFETCH),
	FUSE_OPT_KEY("record=", KEY_RECORD),
	FUSE_OPT_KEY("fsname=", KEY_FSNAME),
	FUSE_OPT_KEY("subtype=", KEY_SUBTYPE),

	FUSE_OPT_KEY("allow_other", KEY_FUSE),
	FUSE_OPT_KEY("allow_root", KEY_FUSE),
	FUSE_OPT_KEY("auto_unmount", KEY_FUSE),
	FUSE_OPT_KEY("max_read=", KEY_MAX_READ),
	FUSE_OPT_KEY("exec", KEY_FUSE),
	FUSE_OPT_KEY("noexec", KEY_FUSE),
	FUSE_OPT_KEY("atime", KEY_FUSE),
	FUSE_OPT_KEY("noatime", KEY_FUSE),
	FUSE_OPT_KEY("diratime", KEY_FUSE),
	FUSE_OPT_KEY("nodiratime", KEY_FUSE),
	FUSE_OPT_KEY("relatime", KEY_FUSE),
	FUSE_OPT_KEY("norelatime", KEY_FUSE),
	FUSE_OPT_KEY("strictatime", KEY_FUSE),
	FUSE_OPT_KEY("nostrictatime", KEY_FUSE),
	FUSE_OPT_KEY("lazytime", KEY_FUSE),
	FUSE_OPT_KEY("nolazytime", KEY_FUSE),
	FUSE_OPT_KEY("sync", KEY_FUSE),
	FUSE_OPT_KEY("async", KEY_FUSE),
	FUSE_OPT_KEY("dirsync", KEY_FUSE),
	FUSE_OPT_KEY("context=", KEY_FUSE),
	FUSE_OPT_KEY("fscontext=", KEY_FUSE),
	FUSE_OPT_KEY("defcontext=", KEY_FUSE),
	FUSE_OPT_KEY("rootcontext=", KEY_FUSE),
	/* mount(8) names the mounting user of a `user` fstab line this way;
	 * libfuse records it for umount(8). */
	FUSE_OPT_KEY("user=", KEY_FUSE),

	FUSE_OPT_KEY("ro", KEY_ALWAYS),
	FUSE_OPT_KEY("rw", KEY_ALWAYS),
	FUSE_OPT_KEY("nosuid", KEY_ALWAYS),
	FUSE_OPT_KEY("suid", KEY_ALWAYS),
	FUSE_OPT_KEY("nodev", KEY_ALWAYS),
	FUSE_OPT_KEY("dev", KEY_ALWAYS),
	FUSE_OPT_KEY("default_permissions", KEY_ALWAYS),
	FUSE_OPT_KEY("nonempty", KEY_ALWAYS),

	FUSE_OPT_KEY("defaults", KEY_MOUNT8),
	FUSE_OPT_KEY("auto", KEY_MOUNT8),
	FUSE_OPT_KEY("noauto", KEY_MOUNT8),
	FUSE_OPT_KEY("user", KEY_MOUNT8),
	FUSE_OPT_KEY("users", KEY_MOUNT8),
	FUSE_OPT_KEY("nouser", KEY_MOUNT8),
	FUSE_OPT_KEY("owner", KEY_MOUNT8),
	FUSE_OPT_KEY("group", KEY_MOUNT8),
	FUSE_OPT_KEY("_netdev", KEY_MOUNT8),
	FUSE_OPT_KEY("nofail", KEY_MOUNT8),
	FUSE_OPT_KEY("comment=", KEY_MOUNT8),
	/* x-* (x-systemd.automount, ...) is matched in option_proc */

	FUSE_OPT_KEY("blkdev", KEY_REFUSE + 0),
	FUSE_OPT_KEY("remount", KEY_REFUSE + 1),
	FUSE_OPT_KEY("loop", KEY_REFUSE + 2),
	FUSE_OPT_KEY("loop=", KEY_REFUSE + 2),
	FUSE_OPT_KEY("drop_privileges", KEY_REFUSE + 3),
	FUSE_OPT_KEY("setuid=", KEY_REFUSE + 3),
	FUSE_OPT_END
};

void sqv_options_usage(FILE *out)
{
	fprintf(out,
		"usage: sqvenvfs [OPTIONS] IMAGE[,IMAGE...] [IMAGE...] MOUNTPOINT\n"
		"       sqvenvfs --unmount [--if-mounted] MOUNTPOINT\n"
		"       sqvenvfs --stats [--human | --json] MOUNTPOINT\n"
		"       mount -t fuse.sqvenvfs [-o OPT,...] IMAGE[,IMAGE...] MOUNTPOINT\n"
		"\n"
		"Mount squashfs images of a Python environment as one read-only tree.\n"
		"Images are listed bottom first: a later image overrides an earlier one\n"
		"(OCI whiteouts .wh.NAME and opaque directories .wh..wh..opq apply,\n"
		"and overlayfs's: character devices 0:0, the overlay.opaque xattr).\n"
		"Returns once the mount is usable; the daemon stays in the background.\n"
		"See sqvenvfs(1).\n"
		"\n"
		"options:\n"
		"  -f, --foreground     stay in the foreground\n"
		"  -d, --debug          log every request (implies -f)\n"
		"  -u, --unmount        unmount MOUNTPOINT (also a stale mount)\n"
		"      --if-mounted     with --unmount: exit 0 quietly if nothing is mounted\n"
		"  -s, --stats          print the counters of the daemon serving MOUNTPOINT\n"
		"      --human          with --stats: a few lines for people (the default\n"
		"                       on a terminal; otherwise \"name value\" lines)\n"
		"      --json           with --stats: one JSON object\n"
		"  -o OPT[,OPT...]      mount options, below\n"
		"  -h, --help           this help\n"
		"  -V, --version        print the version\n"
		"\n"
		"mount options of sqvenvfs:\n"
		"  threads=N            FUSE worker threads, 1 to %d (default %d)\n"
		"  cache_size=SIZE      decompressed-block cache, e.g. 64M, at most the\n"
		"                       machine's memory (default 64M)\n"
		"  prefetch=SIZE        read a hot-first image's hot range at mount in\n"
		"                       reads of SIZE, 1M to 1G (default 4M); 0: do not\n"
		"  record=FILE          at unmount, write the files read and their byte\n"
		"                       ranges (a read trace for sqvenvfs-pack --hot)\n"
		"  debug                as -d\n"
		"mount options of libfuse, passed on:\n"
		"  allow_other          let other users use the mount (see docs/security.md)\n"
		"  allow_root           let root use the mount too\n"
		"  auto_unmount         unmount when the daemon dies, even by kill -9\n"
		"  fsname=NAME          the mount's source (default: the images as given)\n"
		"  subtype=TYPE         the mount's type becomes fuse.TYPE (default sqvenvfs)\n"
		"  max_read=N           largest read request, in bytes (at least 4096)\n"
		"  exec, noexec, atime, noatime, diratime, nodiratime, relatime, norelatime,\n"
		"  strictatime, nostrictatime, lazytime, nolazytime, sync, async, dirsync\n"
		"                       kernel mount flags, as in mount(8)\n"
		"  context=CONTEXT, fscontext=CONTEXT, defcontext=CONTEXT, rootcontext=CONTEXT\n"
		"                       SELinux contexts\n"
		"  user=NAME            set by mount(8) for a user mount\n"
		"always in effect (accepted; the mount stays read-only, nosuid, nodev):\n"
		"  ro, rw, nosuid, suid, nodev, dev, default_permissions, nonempty\n"
		"of mount(8) and fstab, ignored:\n"
		"  defaults, auto, noauto, user, users, nouser, owner, group, _netdev,\n"
		"  nofail, comment=TEXT, x-*\n"
		"refused, with the reason:\n"
		"  blkdev, loop, remount, drop_privileges, setuid=\n",
		SQV_MAX_THREADS, SQV_DEFAULT_THREADS);
}

/* A size in the grammar of docs/sizes.md (lib/base/size.c) that fits in
 * size_t; false otherwise. */
static bool parse_size(const char *s, size_t *out)
{
	uint64_t v;

	if (sqv_size_parse(s, &v) < 0 || v > SIZE_MAX)
		return false;
	*out = (size_t)v;
	return true;
}

/* Parse state beyond struct options: what only the parser needs. */
struct parse {
	struct options *o;
	bool unmount, stats;
	bool done;      /* --help or --version answered */
	char **pos;     /* positional arguments, images split */
	int npos, cap;
};

static int bad(const char *arg, const char *why)
{
	fprintf(stderr, "sqvenvfs: %s%s: %s\n", arg[0] == '-' ? "" : "-o ", arg,
		why);
	return -1;
}

/* record=FILE: an absolute path in an existing, writable directory,
 * checked now so that a typo fails the mount rather than the unmount. */
static int set_record(struct options *o, const char *arg, const char *file)
{
	char *copy = strdup(file), *dir = NULL;
	int rc = -1;

	if (!copy)
		return -1;
	if (*file == '\0') {
		rc = bad(arg, "needs a file name");
		goto out;
	}
	char *slash = strrchr(copy, '/');
	const char *base = slash ? slash + 1 : copy;
	if (slash)
		*slash = '\0';
	dir = realpath(slash ? (*copy ? copy : "/") : ".", NULL);
	if (!dir || *base == '\0' || strcmp(base, ".") == 0 ||
	    strcmp(base, "..") == 0) {
		bad(arg, dir ? "names a directory, not a file" :
			       "its directory does not exist");
		goto out;
	}
	if (access(dir, W_OK) < 0) {
		bad(arg, "its directory is not writable");
		goto out;
	}
	free(o->record);
	if (asprintf(&o->record, "%s/%s", strcmp(dir, "/") ? dir : "", base) < 0)
		o->record = NULL;
	else
		rc = 0;
out:
	free(dir);
	free(copy);
	return rc;
}

/* True if the file at path begins as a read trace of any version. */
static bool is_trace(const char *path)
{
	static const char magic[] = SQV_TRACE_MAGIC_PREFIX;
	char head[sizeof(magic) - 1];
	FILE *f = fopen(path, "re");

	if (!f)
		return false;
	bool yes = fread(head, 1, sizeof(head), f) == sizeof(head) &&
		   memcmp(head, magic, sizeof(head)) == 0;
	fclose(f);
	return yes;
}

/* The trace replaces FILE at unmount, when nobody is there to read an
 * error. So refuse now what would lose data or the trace: FILE being one
 * of the images or any file that is not an earlier trace, a directory, or
 * a directory that access() calls writable but that takes no new file
 * (/proc, a read-only mount, for root). */
static int check_record(const struct options *o)
{
	char arg[PATH_MAX + 16];
	struct stat st, img;

	snprintf(arg, sizeof(arg), "record=%s", o->record);
	if (stat(o->record, &st) == 0) {
		if (S_ISDIR(st.st_mode))
			return bad(arg, "names a directory, not a file");
		if (!S_ISREG(st.st_mode))
			return bad(arg, "is not a regular file");
		for (int i = 0; i < o->npaths - 1; i++)
			if (stat(o->paths[i], &img) == 0 &&
			    img.st_dev == st.st_dev && img.st_ino == st.st_ino)
				return bad(arg, "is one of the images");
		if (st.st_size > 0 && !is_trace(o->record))
			return bad(arg, "exists and is not a read trace; not "
					"overwriting it");
	} else if (errno != ENOENT) {
		return bad(arg, strerror(errno));
	}
	char *probe = NULL;
	if (asprintf(&probe, "%s.tmpXXXXXX", o->record) < 0)
		return -1;
	int fd = mkostemp(probe, O_CLOEXEC);
	int err = errno;
	if (fd >= 0) {
		close(fd);
		unlink(probe);
	}
	free(probe);
	if (fd < 0) {
		char why[128];
		snprintf(why, sizeof(why), "cannot create a file in its "
			 "directory: %s", strerror(err));
		return bad(arg, why);
	}
	return 0;
}

static int add_pos(struct parse *p, const char *s, size_t len)
{
	if (p->npos + 2 > p->cap) {
		int cap = p->cap ? p->cap * 2 : 8;
		char **n = realloc(p->pos, (size_t)cap * sizeof(*n));
		if (!n)
			return -1;
		p->pos = n;
		p->cap = cap;
	}
	p->pos[p->npos] = strndup(s, len);
	if (!p->pos[p->npos])
		return -1;
	p->pos[++p->npos] = NULL;
	return 0;
}

/*
 * A positional argument. "a.sqfs,b.sqfs" is a stack given as one argument,
 * bottom first, as in Slurm's --sqvenv and in an fstab line's one source
 * field; a path that exists as named is never split, so an image whose name
 * has a comma still works.
 */
static int add_nonopt(struct parse *p, const char *arg)
{
	struct stat st;

	if (!strchr(arg, ',') || stat(arg, &st) == 0)
		return add_pos(p, arg, strlen(arg));
	for (const char *s = arg;;) {
		const char *comma = strchrnul(s, ',');
		if (comma == s) {
			fprintf(stderr, "sqvenvfs: %s: an empty image name in the stack\n",
				arg);
			return -1;
		}
		if (add_pos(p, s, (size_t)(comma - s)) < 0)
			return -1;
		if (!*comma)
			return 0;
		s = comma + 1;
	}
}

static int set_string(char **dst, const char *value)
{
	char *copy = strdup(value);

	if (!copy)
		return -1;
	free(*dst);
	*dst = copy;
	return 0;
}

/* Options no row matched: say which mistake it is. */
static int unknown(const char *arg)
{
	const char *eq = strchr(arg, '=');
	char name[256];

	if (arg[0] == '-')
		return bad(arg, "unknown option (see --help)");
	if (strncmp(arg, "x-", 2) == 0)
		return 0; /* x-systemd.automount and friends: for other readers */
	if (!eq) {
		snprintf(name, sizeof(name), "%s=", arg);
		if (fuse_opt_match(table, name))
			return bad(arg, "needs a value (see --help)");
	} else {
		snprintf(name, sizeof(name), "%.*s", (int)(eq - arg), arg);
		if (fuse_opt_match(table, name))
			return bad(arg, "takes no value");
	}
	return bad(arg, "unknown option (see --help)");
}

static size_t machine_memory(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);

	if (pages <= 0 || size <= 0)
		return SIZE_MAX;
	return (size_t)pages * (size_t)size;
}

static int option_proc(void *data, const char *arg, int key,
		       struct fuse_args *outargs)
{
	struct parse *p = data;
	struct options *o = p->o;
	const char *value = strchr(arg, '=');

	(void)outargs;
	value = value ? value + 1 : "";
	switch (key) {
	case FUSE_OPT_KEY_NONOPT:
		return add_nonopt(p, arg) < 0 ? -1 : 0;
	case FUSE_OPT_KEY_OPT:
		return unknown(arg);
	case KEY_HELP:
		sqv_options_usage(stdout);
		p->done = true;
		return 0;
	case KEY_VERSION:
		printf("sqvenvfs %s\n", SQV_VERSION);
		p->done = true;
		return 0;
	case KEY_FOREGROUND:
		o->foreground = true;
		return 0;
	case KEY_DEBUG:
		o->debug = true;
		o->foreground = true;
		return 0;
	case KEY_UNMOUNT:
		p->unmount = true;
		return 0;
	case KEY_STATS:
		p->stats = true;
		return 0;
	case KEY_JSON:
		o->json = true;
		return 0;
	case KEY_HUMAN:
		o->human = true;
		return 0;
	case KEY_IF_MOUNTED:
		o->if_mounted = true;
		return 0;
	case KEY_THREADS: {
		char *end;
		errno = 0;
		unsigned long n = strtoul(value, &end, 10);
		if (*value < '0' || *value > '9' || *end || errno ||
		    n < 1 || n > SQV_MAX_THREADS) {
			fprintf(stderr,
				"sqvenvfs: -o %s: not a number from 1 to %d\n",
				arg, SQV_MAX_THREADS);
			return -1;
		}
		o->threads = (unsigned)n;
		return 0;
	}
	case KEY_CACHE_SIZE: {
		size_t mem = machine_memory();
		if (!parse_size(value, &o->cache_bytes))
			return bad(arg, "not a size (examples: 0, 512K, 64M, 1G)");
		if (o->cache_bytes > mem) {
			fprintf(stderr,
				"sqvenvfs: -o %s: more than this machine's memory (%zu MiB)\n",
				arg, mem >> 20);
			return -1;
		}
		free(o->cache_size_text);
		o->cache_size_text = strdup(value);
		if (!o->cache_size_text)
			return bad(arg, "out of memory");
		return 0;
	}
	case KEY_MAX_READ: {
		char *end;
		errno = 0;
		unsigned long n = strtoul(value, &end, 10);
		if (*value < '0' || *value > '9' || *end || errno || n < 4096 ||
		    n > UINT32_MAX)
			return bad(arg, "not a number of bytes from 4096 up");
		o->max_read = (unsigned)n;
		return fuse_opt_add_opt(&o->fuse_opts, arg);
	}
	case KEY_PREFETCH:
		if (!parse_size(value, &o->prefetch_bytes) ||
		    (o->prefetch_bytes != 0 &&
		     (o->prefetch_bytes < SQV_MIN_PREFETCH_BYTES ||
		      o->prefetch_bytes > SQV_MAX_PREFETCH_BYTES)))
			return bad(arg, "not 0 or a size from 1M to 1G");
		return 0;
	case KEY_RECORD:
		return set_record(o, arg, value);
	case KEY_FSNAME:
		if (!*value)
			return bad(arg, "needs a name");
		return set_string(&o->fsname, value);
	case KEY_SUBTYPE:
		if (!*value || strpbrk(value, " /"))
			return bad(arg, "needs a type name (no space, no '/')");
		return set_string(&o->subtype, value);
	case KEY_FUSE:
		return fuse_opt_add_opt_escaped(&o->fuse_opts, arg);
	case KEY_ALWAYS:
	case KEY_MOUNT8:
		return 0;
	default:
		if (key >= KEY_REFUSE &&
		    key - KEY_REFUSE < (int)(sizeof(refusals) / sizeof(*refusals)))
			return bad(arg, refusals[key - KEY_REFUSE]);
		return bad(arg, "internal error: no rule for this option");
	}
}

static int check_mode(struct parse *p)
{
	struct options *o = p->o;

	if (p->unmount && p->stats) {
		fprintf(stderr, "sqvenvfs: --unmount and --stats do not go together\n");
		return -1;
	}
	if (o->json && !p->stats) {
		fprintf(stderr, "sqvenvfs: --json goes with --stats\n");
		return -1;
	}
	if (o->human && !p->stats) {
		fprintf(stderr, "sqvenvfs: --human goes with --stats\n");
		return -1;
	}
	if (o->human && o->json) {
		fprintf(stderr, "sqvenvfs: --human and --json do not go together\n");
		return -1;
	}
	if (o->if_mounted && !p->unmount) {
		fprintf(stderr, "sqvenvfs: --if-mounted goes with --unmount\n");
		return -1;
	}
	if (p->unmount || p->stats) {
		o->mode = p->unmount ? MODE_UNMOUNT : MODE_STATS;
		if (o->npaths != 1) {
			fprintf(stderr, "sqvenvfs: --%s takes one MOUNTPOINT\n",
				p->unmount ? "unmount" : "stats");
			return -1;
		}
		return 0;
	}
	if (o->npaths < 2) {
		fprintf(stderr, o->npaths == 0 ?
			"sqvenvfs: no IMAGE and MOUNTPOINT given (see --help)\n" :
			"sqvenvfs: no MOUNTPOINT given after the image (see --help)\n");
		return -1;
	}
	if (o->npaths - 1 > SQV_INDEX_MAX_LAYERS) {
		fprintf(stderr, "sqvenvfs: at most %d images in one stack\n",
			SQV_INDEX_MAX_LAYERS);
		return -1;
	}
	return 0;
}

int sqv_options_parse(int argc, char **argv, struct options *o)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct parse p = { .o = o };
	int rc;

	*o = (struct options){
		.threads = SQV_DEFAULT_THREADS,
		.cache_bytes = SQV_DEFAULT_CACHE_BYTES,
		.prefetch_bytes = SQV_DEFAULT_PREFETCH_BYTES,
	};
	rc = fuse_opt_parse(&args, &p, table, option_proc);
	fuse_opt_free_args(&args);
	o->paths = p.pos;
	o->npaths = p.npos;
	if (rc < 0)
		return -1;
	if (p.done)
		return 1;
	if (check_mode(&p) < 0)
		return -1;
	return o->mode == MODE_MOUNT && o->record ? check_record(o) : 0;
}

void sqv_options_free(struct options *o)
{
	for (int i = 0; i < o->npaths; i++)
		free(o->paths[i]);
	free(o->paths);
	free(o->fsname);
	free(o->subtype);
	free(o->fuse_opts);
	free(o->record);
	free(o->cache_size_text);
	*o = (struct options){ 0 };
}
