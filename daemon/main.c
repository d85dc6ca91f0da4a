/*
 * sqvenvfs: mount squashfs images of a Python environment as one layered,
 * read-only tree.
 *
 * main owns the command line, the three modes (mount, --unmount, --stats),
 * and the ordered set-up and tear-down of a mount:
 *   check the mount point -> open the images -> build the index -> create the
 *   reader -> new session -> mount -> (fork to the background) -> serve until
 *   unmounted or signalled -> unmount -> free, in reverse order.
 * Every failure before the mount is usable is reported on the terminal in
 * one line and leaves nothing behind; the parent returns only once the
 * kernel's INIT has been answered, so the mount is usable when it exits.
 */
#include "fs.h"

#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <syslog.h>
#include <unistd.h>

#include "log.h"
#include "sqv_config.h"

#define DEFAULT_CACHE_BYTES ((size_t)64 << 20)
#define DEFAULT_THREADS 8
#define MAX_THREADS 256

struct options {
	bool foreground;
	bool debug;
	bool allow_other;
	bool json;
	unsigned threads;
	size_t cache_bytes;
	enum { MODE_MOUNT, MODE_UNMOUNT, MODE_STATS } mode;
	char **paths; /* positional arguments */
	int npaths;
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: sqvenvfs [OPTIONS] IMAGE [IMAGE...] MOUNTPOINT\n"
		"       sqvenvfs --unmount MOUNTPOINT\n"
		"       sqvenvfs --stats [--json] MOUNTPOINT\n"
		"\n"
		"Mount squashfs images of a Python environment as one read-only tree.\n"
		"Images are listed bottom first: a later image overrides an earlier one\n"
		"(OCI whiteouts .wh.NAME and opaque directories .wh..wh..opq apply,\n"
		"and overlayfs's: character devices 0:0, the overlay.opaque xattr).\n"
		"Returns once the mount is usable; the daemon stays in the background.\n"
		"\n"
		"options:\n"
		"  -f, --foreground     stay in the foreground\n"
		"  -u, --unmount        unmount MOUNTPOINT (also a stale mount)\n"
		"  -s, --stats          print the counters of the daemon serving MOUNTPOINT\n"
		"      --json           with --stats: one JSON object\n"
		"  -o OPT[,OPT...]      mount options:\n"
		"       threads=N         FUSE worker threads (default %d)\n"
		"       cache_size=SIZE   decompressed-block cache, e.g. 64M (default 64M)\n"
		"       allow_other       let other users use the mount (see docs/security.md)\n"
		"       debug             log every request (implies -f)\n"
		"       ro, nosuid, nodev accepted: always in effect\n"
		"  -h, --help           this help\n"
		"  -V, --version        print the version\n",
		DEFAULT_THREADS);
}

/* Log lines: plain on a terminal, <N>-prefixed for the journal, syslog once
 * daemonised. The sink is chosen before any thread starts. */
static void log_stderr(int level, const char *msg, void *ctx)
{
	(void)level;
	(void)ctx;
	fprintf(stderr, "sqvenvfs: %s\n", msg);
}

static void log_journal(int level, const char *msg, void *ctx)
{
	(void)ctx;
	fprintf(stderr, "<%d>%s\n", level, msg);
}

static void log_syslog(int level, const char *msg, void *ctx)
{
	(void)ctx;
	syslog(level, "%s", msg);
}

static void log_from_fuse(enum fuse_log_level level, const char *fmt,
			  va_list ap)
{
	sqv_vlog((int)level, fmt, ap);
}

static int fail(const char *thing, const char *reason)
{
	sqv_log(SQV_LOG_ERR, "%s: %s", thing, reason);
	return 1;
}

/* "64M" -> bytes; false if malformed or too large. */
static bool parse_size(const char *s, size_t *out)
{
	char *end;
	unsigned long long v;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return false;
	unsigned shift = 0;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	}
	if (*end == 'i' && shift)
		end++;
	if ((*end == 'b' || *end == 'B') && shift)
		end++;
	if (*end != '\0' || v > (SIZE_MAX >> shift))
		return false;
	*out = (size_t)v << shift;
	return true;
}

static int parse_mount_options(struct options *o, char *arg)
{
	char *save = NULL;

	for (char *opt = strtok_r(arg, ",", &save); opt;
	     opt = strtok_r(NULL, ",", &save)) {
		char *value = strchr(opt, '=');
		if (value)
			*value++ = '\0';
		if (strcmp(opt, "threads") == 0 && value) {
			char *end;
			unsigned long n = strtoul(value, &end, 10);
			if (*value == '\0' || *end || n < 1 || n > MAX_THREADS) {
				fprintf(stderr,
					"sqvenvfs: -o threads=%s: not a number from 1 to %d\n",
					value, MAX_THREADS);
				return -1;
			}
			o->threads = (unsigned)n;
		} else if (strcmp(opt, "cache_size") == 0 && value) {
			if (!parse_size(value, &o->cache_bytes)) {
				fprintf(stderr,
					"sqvenvfs: -o cache_size=%s: not a size (examples: 0, 512K, 64M, 1G)\n",
					value);
				return -1;
			}
		} else if (strcmp(opt, "allow_other") == 0 && !value) {
			o->allow_other = true;
		} else if (strcmp(opt, "debug") == 0 && !value) {
			o->debug = true;
			o->foreground = true;
		} else if ((strcmp(opt, "ro") == 0 || strcmp(opt, "nosuid") == 0 ||
			    strcmp(opt, "nodev") == 0) && !value) {
			/* always in effect */
		} else {
			fprintf(stderr, "sqvenvfs: -o %s%s%s: unknown option%s\n",
				opt, value ? "=" : "", value ? value : "",
				value ? " or value" : "");
			return -1;
		}
	}
	return 0;
}

/* 0 to go on, 1 when done (help, version), -1 on a usage error. */
static int parse_args(int argc, char **argv, struct options *o)
{
	enum { OPT_JSON = 256 };
	static const struct option longopts[] = {
		{ "foreground", no_argument, NULL, 'f' },
		{ "unmount", no_argument, NULL, 'u' },
		{ "stats", no_argument, NULL, 's' },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	bool unmount = false, stats = false;
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":fuso:hVd", longopts, NULL)) != -1) {
		switch (c) {
		case 'f': o->foreground = true; break;
		case 'u': unmount = true; break;
		case 's': stats = true; break;
		case OPT_JSON: o->json = true; break;
		case 'd': o->debug = true; o->foreground = true; break;
		case 'o':
			if (parse_mount_options(o, optarg) < 0)
				return -1;
			break;
		case 'h': usage(stdout); return 1;
		case 'V': printf("sqvenvfs %s\n", SQV_VERSION); return 1;
		case ':':
			fprintf(stderr, "sqvenvfs: %s: needs a value\n", argv[optind - 1]);
			return -1;
		default:
			fprintf(stderr, "sqvenvfs: %s: unknown option (see --help)\n",
				argv[optind - 1]);
			return -1;
		}
	}
	o->paths = argv + optind;
	o->npaths = argc - optind;
	if (unmount && stats) {
		fprintf(stderr, "sqvenvfs: --unmount and --stats do not go together\n");
		return -1;
	}
	if (o->json && !stats) {
		fprintf(stderr, "sqvenvfs: --json goes with --stats\n");
		return -1;
	}
	if (unmount || stats) {
		o->mode = unmount ? MODE_UNMOUNT : MODE_STATS;
		if (o->npaths != 1) {
			fprintf(stderr, "sqvenvfs: --%s takes one MOUNTPOINT\n",
				unmount ? "unmount" : "stats");
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

/*
 * The absolute path of a mount point without touching its last component,
 * which may be a dead FUSE mount (every stat of it fails with ENOTCONN).
 */
static char *mount_path(const char *arg)
{
	char *copy = strdup(arg), *dir = NULL, *out = NULL;

	if (!copy)
		return NULL;
	size_t len = strlen(copy);
	while (len > 1 && copy[len - 1] == '/')
		copy[--len] = '\0';
	char *slash = strrchr(copy, '/');
	const char *base = slash ? slash + 1 : copy;
	if (slash == copy)
		dir = realpath("/", NULL);
	else if (slash) {
		*slash = '\0';
		dir = realpath(copy, NULL);
	} else {
		dir = realpath(".", NULL);
	}
	if (dir) {
		if (strcmp(base, ".") == 0 || strcmp(base, "..") == 0 ||
		    *base == '\0') {
			/* realpath is safe here: "." is no dead mount's name */
			out = realpath(arg, NULL);
		} else if (asprintf(&out, "%s/%s", strcmp(dir, "/") ? dir : "",
				    base) < 0) {
			out = NULL;
		}
	}
	free(dir);
	free(copy);
	return out;
}

/* Decode the octal escapes of /proc/self/mountinfo in place. */
static void unescape_mountinfo(char *s)
{
	char *w = s;
	for (char *r = s; *r; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] && r[3]) {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 +
				      (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
}

/* Is path a mount point? *fstype gets its type (the topmost mount's). */
static bool find_mount(const char *path, char *fstype, size_t fstype_size)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t cap = 0;
	bool found = false;

	if (!f)
		return false;
	while (getline(&line, &cap, f) > 0) {
		/* id parent maj:min root mountpoint opts [tags] - fstype src */
		char mnt[PATH_MAX], type[256];
		char *sep = strstr(line, " - ");
		if (!sep || sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1 ||
		    sscanf(sep + 3, "%255s", type) != 1)
			continue;
		unescape_mountinfo(mnt);
		if (strcmp(mnt, path) == 0) {
			found = true;
			snprintf(fstype, fstype_size, "%s", type);
		}
	}
	free(line);
	fclose(f);
	return found;
}

static int do_unmount(const char *arg)
{
	char fstype[256];
	char *path = mount_path(arg);
	int rc = 1;

	if (!path)
		return fail(arg, strerror(errno ? errno : ENOMEM));
	if (!find_mount(path, fstype, sizeof(fstype))) {
		fail(arg, "not a mount point");
		goto out;
	}
	if (strcmp(fstype, "fuse.sqvenvfs") != 0) {
		char why[320];
		snprintf(why, sizeof(why), "is a %s mount, not sqvenvfs; not touching it",
			 fstype);
		fail(arg, why);
		goto out;
	}
	if (geteuid() == 0) {
		if (umount2(path, UMOUNT_NOFOLLOW) < 0) {
			fail(arg, errno == EBUSY ?
			     "busy: a process still uses the mount (see fuser -m)" :
			     strerror(errno));
			goto out;
		}
		rc = 0;
		goto out;
	}
	/* An ordinary user unmounts through the setuid helper. */
	pid_t pid = fork();
	if (pid < 0) {
		fail("fork", strerror(errno));
		goto out;
	}
	if (pid == 0) {
		execlp("fusermount3", "fusermount3", "-u", "-q", "--", path,
		       (char *)NULL);
		fprintf(stderr, "sqvenvfs: fusermount3: %s\n", strerror(errno));
		_exit(127);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		rc = 0;
	else
		fail(arg, "fusermount3 could not unmount it (busy, or not yours?)");
out:
	free(path);
	return rc;
}

static void print_json_stats(const char *text)
{
	bool first = true;
	char name[128];
	unsigned long long value;
	int used;

	putchar('{');
	while (sscanf(text, "%127s %llu\n%n", name, &value, &used) == 2) {
		printf("%s\"%s\": %llu", first ? "" : ", ", name, value);
		first = false;
		text += used;
	}
	printf("}\n");
}

static int do_stats(const struct options *o)
{
	const char *mnt = o->paths[0];
	char buf[8192];
	ssize_t n = getxattr(mnt, SQV_STATS_XATTR, buf, sizeof(buf) - 1);

	if (n < 0) {
		switch (errno) {
		case ENOTCONN:
			return fail(mnt, "stale mount: its daemon is gone (sqvenvfs --unmount it)");
		case ENODATA:
		case ENOTSUP:
			return fail(mnt, "not a sqvenvfs mount");
		default:
			return fail(mnt, strerror(errno));
		}
	}
	buf[n] = '\0';
	if (o->json)
		print_json_stats(buf);
	else
		fputs(buf, stdout);
	return 0;
}

/* Check the mount point before any work; 0 or 1 with the reason logged. */
static int check_mountpoint(const char *arg, const char *path)
{
	struct stat st;
	char fstype[256];

	if (stat(arg, &st) < 0) {
		if (errno == ENOTCONN)
			return fail(arg, "a stale mount whose daemon died; run sqvenvfs --unmount first");
		if (errno == ENOENT)
			return fail(arg, "mount point does not exist");
		return fail(arg, strerror(errno));
	}
	if (!S_ISDIR(st.st_mode))
		return fail(arg, "mount point is not a directory");
	if (find_mount(path, fstype, sizeof(fstype))) {
		char why[320];
		snprintf(why, sizeof(why), "already a mount point (%s)%s", fstype,
			 strcmp(fstype, "fuse.sqvenvfs") == 0 ?
			 "; sqvenvfs --unmount it first" : "");
		return fail(arg, why);
	}
	return 0;
}

static int check_fuse_device(void)
{
	int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);

	if (fd >= 0) {
		close(fd);
		return 0;
	}
	if (errno == ENOENT || errno == ENODEV || errno == ENXIO)
		return fail("/dev/fuse", "no FUSE device (is the fuse module loaded?)");
	/* fusermount3 opens the device for an ordinary user; only root has
	 * no fallback. */
	if (geteuid() == 0)
		return fail("/dev/fuse", strerror(errno));
	return 0;
}

static int open_layers(struct sqv_fs *fs, char **images, int n)
{
	for (int i = 0; i < n; i++) {
		int fd = open(images[i], O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			if (errno == ENOENT)
				return fail(images[i], "image does not exist");
			if (errno == EACCES)
				return fail(images[i], "image is not readable (permission denied)");
			return fail(images[i], strerror(errno));
		}
		struct stat st;
		if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
			close(fd);
			return fail(images[i], "is a directory, not a squashfs image");
		}
		/* sqv_image_open says what is wrong in its own line. */
		if (sqv_image_open(fd, images[i], &fs->layers[i]) < 0)
			return 1;
		fs->nlayers = (unsigned)i + 1;
	}
	return 0;
}

/* ---- readiness: the background parent and systemd ---- */

static int ready_fd = -1; /* write end of the pipe to the waiting parent */

static void sd_notify_send(const char *state)
{
	const char *sock = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len;

	if (!sock || (sock[0] != '/' && sock[0] != '@'))
		return;
	len = strlen(sock);
	if (len >= sizeof(sa.sun_path))
		return;
	memcpy(sa.sun_path, sock, len);
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = '\0'; /* abstract namespace */
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	(void)sendto(fd, state, strlen(state), MSG_NOSIGNAL,
		     (struct sockaddr *)&sa,
		     (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
	close(fd);
}

static void on_ready(struct sqv_fs *fs)
{
	(void)fs;
	if (ready_fd >= 0) {
		char ok = 0;
		(void)!write(ready_fd, &ok, 1);
		close(ready_fd);
		ready_fd = -1;
	}
	sd_notify_send("READY=1\nSTATUS=serving");
}

/* Once the parent is gone nobody reads the terminal: log to syslog. */
static void detach_stdio(void)
{
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return;
	dup2(fd, STDIN_FILENO);
	dup2(fd, STDOUT_FILENO);
	dup2(fd, STDERR_FILENO);
	if (fd > STDERR_FILENO)
		close(fd);
	openlog("sqvenvfs", LOG_PID, LOG_DAEMON);
	sqv_log_set_sink(log_syslog, NULL);
}

/* Fork: the parent waits until the child reports the mount usable (exit 0)
 * or dies first (exit 1); the child returns and goes on serving. */
static int go_background(void)
{
	int fds[2];

	if (pipe2(fds, O_CLOEXEC) < 0)
		return fail("pipe", strerror(errno));
	pid_t pid = fork();
	if (pid < 0)
		return fail("fork", strerror(errno));
	if (pid > 0) {
		char ok;
		close(fds[1]);
		ssize_t n;
		while ((n = read(fds[0], &ok, 1)) < 0 && errno == EINTR)
			;
		_exit(n == 1 ? 0 : 1);
	}
	close(fds[0]);
	ready_fd = fds[1];
	(void)setsid();
	if (chdir("/") < 0)
		return fail("chdir /", strerror(errno));
	detach_stdio();
	return 0;
}

/* Escape ',' and '\' for libfuse's -o parser. */
static char *escape_opt(const char *s)
{
	char *out = malloc(strlen(s) * 2 + 1), *w = out;

	if (!out)
		return NULL;
	for (; *s; s++) {
		if (*s == ',' || *s == '\\')
			*w++ = '\\';
		*w++ = *s;
	}
	*w = '\0';
	return out;
}

static int serve(struct sqv_fs *fs, const struct options *o,
		 const char *mnt)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fuse_session *se = NULL;
	struct fuse_loop_config *loop = NULL;
	char *fsname = escape_opt(o->paths[o->npaths - 2]);
	char *mopts = NULL;
	int rc = 1;

	if (!fsname ||
	    asprintf(&mopts, "ro,default_permissions,nosuid,nodev,subtype=sqvenvfs,fsname=%s%s",
		     fsname, o->allow_other ? ",allow_other" : "") < 0) {
		mopts = NULL;
		fail("sqvenvfs", "out of memory");
		goto out_free;
	}
	if (fuse_opt_add_arg(&args, "sqvenvfs") < 0 ||
	    fuse_opt_add_arg(&args, "-o") < 0 ||
	    fuse_opt_add_arg(&args, mopts) < 0 ||
	    (o->debug && fuse_opt_add_arg(&args, "-d") < 0)) {
		fail("sqvenvfs", "out of memory");
		goto out_free;
	}
	se = fuse_session_new(&args, &sqv_ops, sizeof(sqv_ops), fs);
	if (!se) {
		fail(mnt, "cannot create the FUSE session");
		goto out_free;
	}
	if (fuse_set_signal_handlers(se) < 0) {
		fail("signals", "cannot install handlers");
		goto out_session;
	}
	/* A hang-up is no reason to pull a file system from under its users. */
	signal(SIGHUP, SIG_IGN);
	if (fuse_session_mount(se, mnt) < 0) {
		fail(mnt, "mount failed (see the message above)");
		goto out_signals;
	}
	if (!o->foreground && go_background() != 0)
		goto out_unmount;

	loop = fuse_loop_cfg_create();
	if (!loop) {
		fail("sqvenvfs", "out of memory");
		goto out_unmount;
	}
	fuse_loop_cfg_set_clone_fd(loop, 1);
	fuse_loop_cfg_set_max_threads(loop, o->threads);
	fuse_loop_cfg_set_idle_threads(loop, o->threads);
	int err = o->threads > 1 ? fuse_session_loop_mt(se, loop)
				  : fuse_session_loop(se);
	rc = err < 0 ? 1 : 0;
	sd_notify_send("STOPPING=1");
	fuse_loop_cfg_destroy(loop);
out_unmount:
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
out_free:
	fuse_opt_free_args(&args);
	free(mopts);
	free(fsname);
	return rc;
}

static void fs_free(struct sqv_fs *fs)
{
	sqv_reader_free(fs->reader);
	sqv_index_free(fs->index);
	for (unsigned i = 0; i < fs->nlayers; i++)
		sqv_image_free(fs->layers[i]);
}

static int do_mount(struct options *o)
{
	static struct sqv_fs fs; /* lives as long as the process */
	const char *mnt_arg = o->paths[o->npaths - 1];
	char *mnt = mount_path(mnt_arg);
	int rc = 1;

	if (!mnt) {
		rc = fail(mnt_arg, strerror(errno ? errno : ENOMEM));
		goto out;
	}
	if (check_mountpoint(mnt_arg, mnt) != 0 || check_fuse_device() != 0)
		goto out;
	if (open_layers(&fs, o->paths, o->npaths - 1) != 0)
		goto out_fs;
	sqv_err_t ierr = sqv_index_build(fs.layers, fs.nlayers, 0, &fs.index);
	if (ierr < 0) {
		/* lib/ has already named the image of a damaged root: one line
		 * only. */
		if (ierr != -SQV_ECORRUPT)
			fail(o->paths[0],
			     ierr == -ENOMEM ?
				     "out of memory while building the index" :
				     "cannot build the index of the stack");
		goto out_fs;
	}
	for (unsigned i = 0; i < fs.nlayers; i++)
		sqv_image_drop_metadata(fs.layers[i]);
	/* From now on, decompressed blocks (64 KiB and more, usually
	 * 128 KiB) each get their own mapping and go back to the system when
	 * evicted, so the daemon's memory follows the cache's size rather than
	 * what glibc's adaptive threshold would leave in its arenas. Not
	 * before: the index build has libsquashfuse make a zstd context
	 * (~160 KiB) per metadata block, which must stay on the heap. */
	mallopt(M_MMAP_THRESHOLD, 64 * 1024);
	if (sqv_reader_new(fs.index, o->cache_bytes, &fs.reader) < 0) {
		fail("sqvenvfs", "out of memory for the block cache");
		goto out_fs;
	}
	sqv_log(SQV_LOG_INFO, "%zu entries in %u layer(s), index %zu bytes",
		sqv_index_entry_count(fs.index), fs.nlayers,
		sqv_index_memory(fs.index));
	clock_gettime(CLOCK_MONOTONIC, &fs.mounted_at);
	fs.on_ready = on_ready;
	rc = serve(&fs, o, mnt);
out_fs:
	fs_free(&fs);
out:
	free(mnt);
	return rc;
}

int main(int argc, char **argv)
{
	struct options o = {
		.threads = DEFAULT_THREADS,
		.cache_bytes = DEFAULT_CACHE_BYTES,
	};
	int rc;

	sqv_log_set_sink(getenv("JOURNAL_STREAM") ? log_journal : log_stderr,
			 NULL);
	fuse_set_log_func(log_from_fuse);

	rc = parse_args(argc, argv, &o);
	if (rc != 0)
		return rc < 0 ? 2 : 0;
	if (o.debug)
		sqv_log_set_level(SQV_LOG_DEBUG);
	switch (o.mode) {
	case MODE_UNMOUNT:
		return do_unmount(o.paths[0]);
	case MODE_STATS:
		return do_stats(&o);
	case MODE_MOUNT:
	default:
		rc = do_mount(&o);
		if (ready_fd >= 0)
			close(ready_fd); /* never ready: the parent exits 1 */
		return rc;
	}
}
