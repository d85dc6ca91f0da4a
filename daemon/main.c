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
#include <linux/fs.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <syslog.h>
#include <unistd.h>

#include "rlimits.h"
#include "log.h"
#include "mountinfo.h"
#include "size.h"
#include "sqv_config.h"

#define DEFAULT_CACHE_BYTES ((size_t)64 << 20)
/* cache_bytes before any -o cache_size: the default, which may shrink
 * under a memory limit, where an explicit size is refused instead. */
#define CACHE_UNSET SIZE_MAX
/* How long --stats waits for a daemon that may be stopped or hung. */
#define STATS_TIMEOUT_S 10
#define DEFAULT_THREADS 8
#define MAX_THREADS 256

struct options {
	bool foreground;
	bool debug;
	bool allow_other;
	bool json;
	bool if_mounted; /* --unmount: nothing mounted is no error */
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
		"       sqvenvfs --unmount [--if-mounted] MOUNTPOINT\n"
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
		"      --if-mounted     with --unmount: exit 0 quietly if nothing is mounted\n"
		"  -s, --stats          print the counters of the daemon serving MOUNTPOINT\n"
		"      --json           with --stats: one JSON object\n"
		"  -o OPT[,OPT...]      mount options:\n"
		"       threads=N         FUSE worker threads (default %d)\n"
		"       cache_size=SIZE   decompressed-block cache, e.g. 64M (default 64M)\n"
		"       allow_other       let other users use the mount (see docs/security.md)\n"
		"       debug             log every request (implies -f)\n"
		"  -d                   the same as -o debug\n"
		"       ro, nosuid, nodev accepted: always in effect\n"
		"  -h, --help           this help\n"
		"  -V, --version        print the version\n",
		DEFAULT_THREADS);
}

/* Log lines (lib/base/log.c): plain on a terminal, <N>-prefixed for the
 * journal, syslog once daemonised. The sink is chosen before any thread
 * starts. */
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
	enum { OPT_JSON = 256, OPT_IF_MOUNTED };
	static const struct option longopts[] = {
		{ "foreground", no_argument, NULL, 'f' },
		{ "unmount", no_argument, NULL, 'u' },
		{ "stats", no_argument, NULL, 's' },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "if-mounted", no_argument, NULL, OPT_IF_MOUNTED },
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
		case OPT_IF_MOUNTED: o->if_mounted = true; break;
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
	if (o->if_mounted && !unmount) {
		fprintf(stderr, "sqvenvfs: --if-mounted goes with --unmount\n");
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

/*
 * The mount point as the kernel will record it: every symlink resolved, so
 * that a mount through a link and one through its target are seen as the
 * same place. realpath() fails on a dead mount (or a link to one); then
 * resolve the links that lead there and leave the last component alone.
 */
static char *resolve_mount_path(const char *arg)
{
	char *out = realpath(arg, NULL);
	char *cur = strdup(arg);

	for (int depth = 0; !out && cur && depth < 40; depth++) {
		char target[PATH_MAX];
		ssize_t n = readlink(cur, target, sizeof(target) - 1);
		if (n < 0)
			break; /* not a link: its parent is resolved below */
		target[n] = '\0';
		char *next = NULL;
		char *slash = strrchr(cur, '/');
		if (target[0] == '/' || !slash)
			next = strdup(target);
		else if (asprintf(&next, "%.*s/%s", (int)(slash - cur), cur,
				  target) < 0)
			next = NULL;
		free(cur);
		cur = next;
		if (cur)
			out = realpath(cur, NULL);
	}
	if (!out && cur)
		out = mount_path(cur);
	free(cur);
	return out;
}

/* Is path a mount point? *fstype gets its type (the topmost mount's). */
static bool find_mount(const char *path, char *fstype, size_t fstype_size)
{
	struct sqv_mount m;

	if (sqv_mountinfo_find(path, &m) != 1)
		return false;
	snprintf(fstype, fstype_size, "%s", m.fstype);
	return true;
}

static int do_unmount(const char *arg, bool if_mounted)
{
	char fstype[256];
	char *path = resolve_mount_path(arg);
	int rc = 1;

	if (!path) {
		if (if_mounted && errno == ENOENT)
			return 0; /* nothing can be mounted where no directory is */
		return fail(arg, strerror(errno ? errno : ENOMEM));
	}
	if (!find_mount(path, fstype, sizeof(fstype))) {
		if (if_mounted)
			rc = 0;
		else
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

/* One --stats question, asked from its own thread so that a daemon that
 * does not answer (stopped, hung) cannot hold the caller. */
struct stats_query {
	const char *path;
	char buf[SQV_STATS_MAX];
	int err; /* 0 or an errno */
	bool done; /* under lock */
	pthread_mutex_t lock;
	pthread_cond_t cond;
};

static void *ask_stats(void *arg)
{
	struct stats_query *q = arg;
	int fd = open(q->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int err = 0;

	if (fd < 0) {
		err = errno;
	} else {
		if (ioctl(fd, SQV_STATS_IOCTL, q->buf) < 0)
			err = errno;
		close(fd);
	}
	pthread_mutex_lock(&q->lock);
	q->err = err;
	q->done = true;
	pthread_cond_signal(&q->cond);
	pthread_mutex_unlock(&q->lock);
	return NULL;
}

static int do_stats(const struct options *o)
{
	const char *mnt = o->paths[0];
	char fstype[256];
	char *path = resolve_mount_path(mnt);
	struct timespec deadline;
	pthread_t th;
	int rc = 1;

	if (!path)
		return fail(mnt, strerror(errno ? errno : ENOMEM));
	if (!find_mount(path, fstype, sizeof(fstype))) {
		free(path);
		return fail(mnt, "not a sqvenvfs mount (not a mount point)");
	}
	if (strcmp(fstype, "fuse.sqvenvfs") != 0) {
		char why[320];
		snprintf(why, sizeof(why), "not a sqvenvfs mount (%s)", fstype);
		free(path);
		return fail(mnt, why);
	}
	/* Freed only when the thread is done: a thread still waiting on a
	 * stopped daemon ends with the process. */
	struct stats_query *q = calloc(1, sizeof(*q));
	if (!q) {
		free(path);
		return fail(mnt, strerror(ENOMEM));
	}
	q->path = path;
	pthread_mutex_init(&q->lock, NULL);
	pthread_cond_init(&q->cond, NULL);
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += STATS_TIMEOUT_S;
	if (pthread_create(&th, NULL, ask_stats, q) != 0) {
		free(path);
		free(q);
		return fail("thread", strerror(EAGAIN));
	}
	pthread_mutex_lock(&q->lock);
	while (!q->done)
		if (pthread_cond_timedwait(&q->cond, &q->lock, &deadline) ==
		    ETIMEDOUT)
			break;
	bool done = q->done;
	pthread_mutex_unlock(&q->lock);
	if (!done) {
		char why[96];
		snprintf(why, sizeof(why),
			 "its daemon did not answer within %d s (stopped or hung?)",
			 STATS_TIMEOUT_S);
		fail(mnt, why);
		/* Leave now: the asking thread stays stuck in the kernel until
		 * the process dies, and exit handlers (a leak checker stopping
		 * every thread) would wait for it. */
		fflush(NULL);
		_exit(1);
	}
	pthread_join(th, NULL);
	switch (q->err) {
	case 0:
		q->buf[sizeof(q->buf) - 1] = '\0';
		if (o->json)
			print_json_stats(q->buf);
		else
			fputs(q->buf, stdout);
		rc = 0;
		break;
	case ENOTCONN:
		fail(mnt, "stale mount: its daemon is gone (sqvenvfs --unmount it)");
		break;
	case ENOTTY:
	case ENOSYS:
		fail(mnt, "its daemon does not answer --stats (an older sqvenvfs?)");
		break;
	default:
		fail(mnt, strerror(q->err));
	}
	free(path);
	free(q);
	return rc;
}

/*
 * Check the mount point before any work; 0 or 1 with the reason logged.
 * *lock_fd gets a descriptor of the directory, flock()ed: concurrent
 * mounts on one point (a script that mounts from every rank) queue on it,
 * and each one after the first finds the mount there when its turn comes.
 * It is held until the mount is in the kernel's table (or has failed).
 */
static int check_mountpoint(const char *arg, const char *path, int *lock_fd)
{
	struct stat st;
	char fstype[256];

	*lock_fd = -1;
	if (stat(arg, &st) < 0) {
		if (errno == ENOTCONN)
			return fail(arg, "a stale mount whose daemon died; run sqvenvfs --unmount first");
		if (errno == ENOENT)
			return fail(arg, "mount point does not exist");
		return fail(arg, strerror(errno));
	}
	if (!S_ISDIR(st.st_mode))
		return fail(arg, "mount point is not a directory");
	/* A directory we may not read cannot be locked; such a mount point
	 * is rare (fusermount3 wants it writable), and goes unserialised. */
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		while (flock(fd, LOCK_EX) < 0 && errno == EINTR)
			;
	}
	if (find_mount(path, fstype, sizeof(fstype))) {
		char why[320];
		if (fd >= 0)
			close(fd);
		snprintf(why, sizeof(why), "already mounted (%s)%s", fstype,
			 strcmp(fstype, "fuse.sqvenvfs") == 0 ?
			 "; sqvenvfs --unmount it first" : "");
		return fail(arg, why);
	}
	*lock_fd = fd;
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

/*
 * Open an image for reading. O_NONBLOCK, so that a FIFO given by mistake
 * is refused at once instead of waiting for a writer; a socket cannot be
 * opened at all (ENXIO). Returns the fd or -1 with the reason logged.
 */
static int open_image(const char *path)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);

	if (fd < 0) {
		int err = errno;
		if (err == ENOENT)
			return fail(path, "image does not exist"), -1;
		if (err == EACCES)
			return fail(path, "image is not readable (permission denied)"), -1;
		if (err == ENXIO && stat(path, &st) == 0 && S_ISSOCK(st.st_mode))
			return fail(path, "not a regular file (a socket)"), -1;
		return fail(path, strerror(err)), -1;
	}
	if (fstat(fd, &st) < 0) {
		fail(path, strerror(errno));
		close(fd);
		return -1;
	}
	const char *what = S_ISDIR(st.st_mode)  ? "is a directory, not a squashfs image" :
			   S_ISFIFO(st.st_mode) ? "not a regular file (a FIFO)" :
			   S_ISCHR(st.st_mode)  ? "not a regular file (a character device)" :
			   S_ISSOCK(st.st_mode) ? "not a regular file (a socket)" :
			   NULL;
	if (what) {
		fail(path, what);
		close(fd);
		return -1;
	}
	/* Regular files and block devices: back to plain blocking reads. */
	(void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	return fd;
}

static int open_layers(struct sqv_fs *fs, char **images, int n)
{
	for (int i = 0; i < n; i++) {
		int fd = open_image(images[i]);
		if (fd < 0)
			return 1;
		/* sqv_image_open says what is wrong in its own line. */
		if (sqv_image_open(fd, images[i], &fs->layers[i]) < 0)
			return 1;
		fs->nlayers = (unsigned)i + 1;
		if (sqv_image_info(fs->layers[i])->has_xattrs)
			fs->has_xattrs = true;
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
	/* Connected now, while a descriptor is sure to be free. */
	openlog("sqvenvfs", LOG_PID | LOG_NDELAY, LOG_DAEMON);
	sqv_log_set_sink(sqv_log_sink_syslog, NULL);
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

/* What do_mount hands to serve besides the options. */
struct mount_plan {
	const char *mnt;     /* resolved mount point */
	const char *source;  /* the top image, absolute: mountinfo's source */
	int lock_fd;         /* check_mountpoint's lock, or -1 */
	struct sqv_fd_plan fds;
};

static void unlock_mountpoint(struct mount_plan *p)
{
	if (p->lock_fd >= 0)
		close(p->lock_fd);
	p->lock_fd = -1;
}

static int serve(struct sqv_fs *fs, const struct options *o,
		 struct mount_plan *p)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fuse_session *se = NULL;
	struct fuse_loop_config *loop = NULL;
	const char *mnt = p->mnt;
	char *fsname = escape_opt(p->source);
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
	int merr = fuse_session_mount(se, mnt);
	/* In the kernel's table now (or not at all): the next mount on this
	 * point may look. */
	unlock_mountpoint(p);
	if (merr < 0) {
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
	fuse_loop_cfg_set_clone_fd(loop, p->fds.clone_fd);
	fuse_loop_cfg_set_max_threads(loop, o->threads);
	fuse_loop_cfg_set_idle_threads(loop, o->threads);
	int err = o->threads > 1 ? fuse_session_loop_mt(se, loop)
				  : fuse_session_loop(se);
	rc = err < 0 ? 1 : 0;
	fuse_loop_cfg_destroy(loop);
out_unmount:
	/* The way out must not fail for want of a descriptor. */
	sqv_limits_release_fds(&p->fds);
	sd_notify_send("STOPPING=1");
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

/* The image's path as mountinfo should show it: absolute, so that it
 * still names the file from any directory. */
static char *absolute_path(const char *path)
{
	char *out = realpath(path, NULL);

	if (!out && path[0] != '/') {
		char *cwd = getcwd(NULL, 0);
		if (cwd && asprintf(&out, "%s/%s", cwd, path) < 0)
			out = NULL;
		free(cwd);
	} else if (!out) {
		out = strdup(path);
	}
	return out;
}

static int do_mount(struct options *o)
{
	static struct sqv_fs fs; /* lives as long as the process */
	const char *mnt_arg = o->paths[o->npaths - 1];
	unsigned nimages = (unsigned)o->npaths - 1;
	char *mnt = resolve_mount_path(mnt_arg);
	char *source = absolute_path(o->paths[o->npaths - 2]);
	struct mount_plan plan = { .mnt = mnt, .source = source, .lock_fd = -1 };
	bool cache_explicit = o->cache_bytes != CACHE_UNSET;
	int rc = 1;

	for (int i = 0; i < SQV_FD_RESERVE; i++)
		plan.fds.reserve[i] = -1;
	if (!cache_explicit)
		o->cache_bytes = DEFAULT_CACHE_BYTES;
	if (!mnt || !source) {
		rc = fail(mnt_arg, strerror(errno ? errno : ENOMEM));
		goto out;
	}
	if (sqv_limits_fds(nimages, o->threads, &plan.fds) != 0)
		goto out;
	if (check_mountpoint(mnt_arg, mnt, &plan.lock_fd) != 0 ||
	    check_fuse_device() != 0)
		goto out;
	if (open_layers(&fs, o->paths, (int)nimages) != 0)
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
	uint32_t block_size = 0;
	for (unsigned i = 0; i < fs.nlayers; i++)
		if (sqv_image_info(fs.layers[i])->block_size > block_size)
			block_size = sqv_image_info(fs.layers[i])->block_size;
	if (sqv_limits_cache(&o->cache_bytes, cache_explicit, o->threads,
			     block_size) != 0)
		goto out_fs;
	if (sqv_reader_new(fs.index, o->cache_bytes, &fs.reader) < 0) {
		fail("sqvenvfs", "out of memory for the block cache");
		goto out_fs;
	}
	sqv_log(SQV_LOG_INFO, "%zu entries in %u layer(s), index %zu bytes",
		sqv_index_entry_count(fs.index), fs.nlayers,
		sqv_index_memory(fs.index));
	clock_gettime(CLOCK_MONOTONIC, &fs.mounted_at);
	fs.on_ready = on_ready;
	rc = serve(&fs, o, &plan);
out_fs:
	fs_free(&fs);
out:
	unlock_mountpoint(&plan);
	sqv_limits_release_fds(&plan.fds);
	free(source);
	free(mnt);
	return rc;
}

int main(int argc, char **argv)
{
	struct options o = {
		.threads = DEFAULT_THREADS,
		.cache_bytes = CACHE_UNSET,
	};
	int rc;

	sqv_log_set_sink(getenv("JOURNAL_STREAM") ? sqv_log_sink_journal : NULL,
			 NULL);
	fuse_set_log_func(log_from_fuse);

	rc = parse_args(argc, argv, &o);
	if (rc != 0)
		return rc < 0 ? 2 : 0;
	if (o.debug)
		sqv_log_set_level(SQV_LOG_DEBUG);
	switch (o.mode) {
	case MODE_UNMOUNT:
		return do_unmount(o.paths[0], o.if_mounted);
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
