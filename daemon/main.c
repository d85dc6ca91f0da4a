/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * sqvenvfs: mount squashfs images of a Python environment as one layered,
 * read-only tree.
 *
 * main owns the three modes (mount, --unmount, --stats; options.c reads the
 * command line) and the ordered set-up and tear-down of a mount:
 *   check the mount point -> open the images -> build the index -> create the
 *   reader -> new session -> mount -> (fork to the background) -> serve until
 *   unmounted or signalled -> unmount -> free, in reverse order.
 * Every failure before the mount is usable is reported on the terminal in
 * one line and leaves nothing behind; the parent returns only once the
 * kernel's INIT has been answered, so the mount is usable when it exits.
 */
#include "fs.h"

#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <syslog.h>
#include <unistd.h>

#include "counters.h"
#include "log.h"
#include "mountinfo.h"
#include "options.h"
#include "rlimits.h"
#include "sqv_config.h"

/* How long --stats waits for a daemon that may be stopped or hung. */
#define STATS_TIMEOUT_S 10
/* How long --unmount waits for the daemon to say who it is (it may be
 * stopped or hung), then for it to finish after the unmount: write its
 * -o record= trace, free its cache and exit. */
#define UNMOUNT_ASK_TIMEOUT_S 5
#define UNMOUNT_EXIT_TIMEOUT_S 30

/* Log lines (lib/base/log.c): plain on a terminal, <N>-prefixed for the
 * journal, syslog once daemonised. The sink is chosen before any thread
 * starts. */
/* libfuse's lines begin "fuse: "; ours already say "sqvenvfs: ", and one
 * prefix is enough ("sqvenvfs: missing argument after `-o'"). */
static void log_from_fuse(enum fuse_log_level level, const char *fmt,
			  va_list ap)
{
	static const char own[] = "fuse: ";
	char line[1024];

	vsnprintf(line, sizeof(line), fmt, ap);
	sqv_log((int)level, "%s",
		strncmp(line, own, strlen(own)) == 0 ? line + strlen(own) : line);
}

static int fail(const char *thing, const char *reason)
{
	sqv_log(SQV_LOG_ERR, "%s: %s", thing, reason);
	return 1;
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

/* Is path a mount point? *m gets the topmost mount's type and owner. */
static bool find_mount(const char *path, struct sqv_mount *m)
{
	return sqv_mountinfo_find(path, m) == 1;
}

/* Is the daemon's pid namespace (as it told it) ours? Unknown is no. */
static bool same_pid_ns(const struct sqv_daemon_id *id)
{
	struct stat st;

	return id->pid_ns_ino != 0 && stat("/proc/self/ns/pid", &st) == 0 &&
	       (uint64_t)st.st_dev == id->pid_ns_dev &&
	       (uint64_t)st.st_ino == id->pid_ns_ino;
}

/*
 * Without allow_other FUSE lets in only the credentials of the user who
 * mounted, refusing even root. So root, to ask a user's daemon (--unmount,
 * --stats), takes that user's uid and gid (m says whose) in the asking
 * thread alone: raw system calls, as glibc's wrappers would change every
 * thread of the process. 0 (nothing to do for others), or -errno.
 */
static int become_mount_owner(const struct sqv_mount *m)
{
	if (geteuid() != 0 || !m->has_user_id || !m->has_group_id ||
	    m->user_id == 0)
		return 0;
	if (syscall(SYS_setgroups, 0, NULL) < 0 ||
	    syscall(SYS_setresgid, m->group_id, m->group_id, m->group_id) < 0 ||
	    syscall(SYS_setresuid, m->user_id, m->user_id, m->user_id) < 0)
		return -errno;
	return 0;
}

/*
 * The daemon serving the mount at path, as a pidfd (*pid its pid), so that --unmount can
 * return only once it has finished (its -o record= trace is written after
 * the unmount); -1 when there is none to wait for or it cannot be known,
 * and then --unmount unmounts without waiting, as it always did: a stale
 * mount (ENOTCONN: the daemon is gone), an older daemon (ENOTTY), a mount
 * this user may not enter (another user's without allow_other), a daemon
 * in another pid namespace (its pid names some other process here), or one
 * that does not answer in time (stopped or hung: never hang on it).
 *
 * A child asks, not a thread: a request the daemon has not taken is
 * dropped when its asker gets SIGKILL, and the child's descriptor of the
 * mount's root, which would keep the mount busy, goes with it. Root's
 * child asks as the mount's owner, so root's --unmount of a user's mount
 * (a Slurm Epilog's) waits for its trace too.
 */
static int daemon_pidfd(const char *path, const struct sqv_mount *m,
			pid_t *pid)
{
	struct sqv_daemon_id id;
	int fds[2], pidfd = -1;

	if (pipe2(fds, O_CLOEXEC) < 0)
		return -1;
	pid_t child = fork();
	if (child == 0) {
		close(fds[0]);
		if (become_mount_owner(m) < 0)
			_exit(0);
		int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd >= 0 && ioctl(fd, SQV_DAEMON_ID_IOCTL, &id) == 0)
			(void)!write(fds[1], &id, sizeof(id));
		_exit(0);
	}
	close(fds[1]);
	if (child < 0) {
		close(fds[0]);
		return -1;
	}
	int child_fd = (int)pidfd_open(child, 0);
	struct pollfd pfd = { .fd = fds[0], .events = POLLIN };
	int n;
	while ((n = poll(&pfd, 1, UNMOUNT_ASK_TIMEOUT_S * 1000)) < 0 &&
	       errno == EINTR)
		;
	if (n == 1 && read(fds[0], &id, sizeof(id)) == (ssize_t)sizeof(id) &&
	    same_pid_ns(&id) && id.pid > 0 && id.pid <= INT_MAX) {
		pidfd = (int)pidfd_open((pid_t)id.pid, 0);
		*pid = (pid_t)id.pid;
	}
	close(fds[0]);
	if (n != 1) {
		kill(child, SIGKILL);
		/* Its descriptor of the root is closed only once it is gone. */
		if (child_fd >= 0) {
			struct pollfd cfd = { .fd = child_fd, .events = POLLIN };
			(void)poll(&cfd, 1, 1000);
		}
		(void)waitpid(child, NULL, WNOHANG);
		sqv_log(SQV_LOG_WARNING, "%s: its daemon did not answer within "
			"%d s (stopped or hung?); not waiting for it to exit",
			path, UNMOUNT_ASK_TIMEOUT_S);
	} else {
		while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
			;
	}
	if (child_fd >= 0)
		close(child_fd);
	return pidfd;
}

/* 0 once the process behind pidfd has exited, -ETIMEDOUT at the deadline. */
static int wait_exit(int pidfd, int timeout_s)
{
	struct pollfd pfd = { .fd = pidfd, .events = POLLIN };
	struct timespec now, end;
	int n;

	clock_gettime(CLOCK_MONOTONIC, &end);
	end.tv_sec += timeout_s;
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		int64_t left = (int64_t)(end.tv_sec - now.tv_sec) * 1000 +
			       (end.tv_nsec - now.tv_nsec) / 1000000;
		if (left <= 0)
			return -ETIMEDOUT;
		n = poll(&pfd, 1, (int)left);
		if (n == 1)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

static int do_unmount(const char *arg, bool if_mounted)
{
	struct sqv_mount m;
	char *path = resolve_mount_path(arg);
	int rc = 1, daemon = -1;
	pid_t daemon_pid = 0;

	if (!path) {
		if (if_mounted && errno == ENOENT)
			return 0; /* nothing can be mounted where no directory is */
		return fail(arg, strerror(errno ? errno : ENOMEM));
	}
	if (!find_mount(path, &m)) {
		if (if_mounted)
			rc = 0;
		else
			fail(arg, "not a mount point");
		goto out;
	}
	if (strcmp(m.fstype, "fuse.sqvenvfs") != 0) {
		char why[320];
		snprintf(why, sizeof(why), "is a %s mount, not sqvenvfs; not touching it",
			 m.fstype);
		fail(arg, why);
		goto out;
	}
	/* Asked before the unmount: afterwards the daemon cannot be reached. */
	daemon = daemon_pidfd(path, &m, &daemon_pid);
	if (geteuid() == 0) {
		if (umount2(path, UMOUNT_NOFOLLOW) < 0) {
			fail(arg, errno == EBUSY ?
			     "busy: a process still uses the mount (see fuser -m)" :
			     strerror(errno));
			goto out;
		}
		rc = 0;
		goto out_wait;
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
out_wait:
	if (rc == 0 && daemon >= 0 &&
	    wait_exit(daemon, UNMOUNT_EXIT_TIMEOUT_S) < 0) {
		char why[160];
		snprintf(why, sizeof(why), "unmounted, but its daemon (pid %d) "
			 "has not exited within %d s", (int)daemon_pid,
			 UNMOUNT_EXIT_TIMEOUT_S);
		rc = fail(arg, why);
	}
out:
	if (daemon >= 0)
		close(daemon);
	free(path);
	return rc;
}

static void print_json_stats(const struct sqv_counters *c)
{
	putchar('{');
	for (unsigned i = 0; i < c->n; i++)
		printf("%s\"%s\": %llu", i ? ", " : "", c->v[i].name,
		       (unsigned long long)c->v[i].value);
	printf("}\n");
}

static int print_human_stats(const struct sqv_counters *c, const char *mnt)
{
	size_t len = sqv_counters_human(c, mnt, NULL, 0);
	char *text = malloc(len + 1);

	if (!text)
		return fail(mnt, strerror(ENOMEM));
	sqv_counters_human(c, mnt, text, len + 1);
	fputs(text, stdout);
	free(text);
	return 0;
}

/* The counters as asked: JSON, the human form (asked, or on a terminal),
 * or the daemon's own "name value" lines, as scripts read them. mnt is
 * the mount point as given (for errors), path the one resolved. */
static int print_stats(const struct options *o, const char *mnt,
		       const char *path, const char *text)
{
	struct sqv_counters *c;
	int rc;

	if (!o->json && !o->human && !isatty(STDOUT_FILENO)) {
		fputs(text, stdout);
		return 0;
	}
	c = malloc(sizeof(*c));
	if (!c)
		return fail(mnt, strerror(ENOMEM));
	int err = sqv_counters_parse(text, c);
	if (err == -E2BIG) {
		rc = fail(mnt, "its daemon sends more counters than this sqvenvfs "
			       "can read (a newer daemon? --stats piped to cat "
			       "prints them as they come)");
	} else if (err < 0) {
		rc = fail(mnt, "its daemon's counters are not \"name value\" lines");
	} else if (o->json) {
		print_json_stats(c);
		rc = 0;
	} else {
		rc = print_human_stats(c, path);
	}
	free(c);
	return rc;
}

/* One --stats question, asked from its own thread so that a daemon that
 * does not answer (stopped, hung) cannot hold the caller. */
struct stats_query {
	const char *path;
	struct sqv_mount mount; /* whose it is */
	char buf[SQV_STATS_MAX];
	int err; /* 0 or an errno */
	bool done; /* under lock */
	pthread_mutex_t lock;
	pthread_cond_t cond;
};

static void *ask_stats(void *arg)
{
	struct stats_query *q = arg;
	int err = -become_mount_owner(&q->mount);

	if (err == 0) {
		int fd = open(q->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0) {
			err = errno;
		} else {
			if (ioctl(fd, SQV_STATS_IOCTL, q->buf) < 0)
				err = errno;
			close(fd);
		}
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
	struct sqv_mount m;
	char *path = resolve_mount_path(mnt);
	struct timespec deadline;
	pthread_t th;
	int rc = 1;

	if (!path)
		return fail(mnt, strerror(errno ? errno : ENOMEM));
	if (!find_mount(path, &m)) {
		free(path);
		return fail(mnt, "not a sqvenvfs mount (not a mount point)");
	}
	if (strcmp(m.fstype, "fuse.sqvenvfs") != 0) {
		char why[320];
		snprintf(why, sizeof(why), "not a sqvenvfs mount (%s)", m.fstype);
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
	q->mount = m;
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
		rc = print_stats(o, mnt, path, q->buf);
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
	struct sqv_mount m;

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
	if (find_mount(path, &m)) {
		char why[320];
		if (fd >= 0)
			close(fd);
		snprintf(why, sizeof(why), "already mounted (%s)%s", m.fstype,
			 strcmp(m.fstype, "fuse.sqvenvfs") == 0 ?
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
	}
	return 0;
}

/* Does the stack serve any extended attribute? An image may store some
 * that are not served (overlayfs's opaque markers): ask the index. */
static bool serves_xattrs(struct sqv_fs *fs)
{
	bool any = false;

	for (unsigned i = 0; i < fs->nlayers; i++)
		any |= sqv_image_info(fs->layers[i])->has_xattrs;
	size_t n = any ? sqv_index_inode_count(fs->index) : 0;
	for (size_t ino = 0; ino < n; ino++) {
		size_t need = 0;
		if (sqv_index_listxattr(fs->index, (sqv_ino_t)ino, NULL, 0,
					&need) == 0 && need > 0)
			return true;
	}
	return false;
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

/* Microseconds on the monotonic clock since since. */
static uint64_t us_since(const struct timespec *since)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)(now.tv_sec - since->tv_sec) * 1000000u +
	       (uint64_t)((now.tv_nsec - since->tv_nsec) / 1000);
}

static void on_ready(struct sqv_fs *fs)
{
	atomic_store(&fs->ready_us, us_since(&fs->started_at));
	/* The mount is usable: only now read the hot ranges, in the
	 * background, so that they cost the mount nothing. */
	if (sqv_prefetch_start(fs->index, fs->reader, fs->hot, fs->prefetch_chunk,
			       fs->cache_bytes, &fs->prefetch) < 0)
		sqv_log(SQV_LOG_WARNING, "cannot start the prefetch thread");
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

/* Append "name=value" to a libfuse option string, escaped for its parser. */
static int add_named_opt(char **opts, const char *name, const char *value)
{
	char *opt;
	int rc;

	if (asprintf(&opt, "%s=%s", name, value) < 0)
		return -1;
	rc = fuse_opt_add_opt_escaped(opts, opt);
	free(opt);
	return rc;
}

/* Drop the "fusermount3: ", "fuse: ", "sqvenvfs: " or "<N>" that starts a
 * captured line, and its newline. */
static char *bare_reason(char *line)
{
	static const char *const prefixes[] = { "fusermount3: ", "fuse: ",
						"sqvenvfs: " };

	line[strcspn(line, "\n")] = '\0';
	if (line[0] == '<' && line[1] >= '0' && line[1] <= '7' && line[2] == '>')
		line += 3;
	/* Our log sink may wrap libfuse's own prefix: "sqvenvfs: fuse: ". */
	for (size_t i = 0; i < sizeof(prefixes) / sizeof(*prefixes); i++)
		if (strncmp(line, prefixes[i], strlen(prefixes[i])) == 0) {
			line += strlen(prefixes[i]);
			i = (size_t)-1;
		}
	return line;
}

/*
 * fuse_session_mount with every refusal in one line. For an ordinary user
 * fusermount3 prints its own reason ("user has no write access to
 * mountpoint ..."), and libfuse may add one: their stderr goes to a memfd
 * during the mount, and a refusal is then told as "MNT: reason". On success
 * whatever they said is passed on unchanged. (With auto_unmount the
 * fusermount3 that stays keeps the memfd as its stderr; it has nothing
 * more to say unless the unmount itself fails.)
 */
static int mount_one_line(struct fuse_session *se, const char *mnt)
{
	int cap = memfd_create("sqvenvfs-mount", MFD_CLOEXEC);
	int saved = cap < 0 ? -1 : fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
	char buf[2048], *reason = NULL;
	ssize_t n = 0;
	int rc;

	if (saved < 0) {
		if (cap >= 0)
			close(cap);
		if (fuse_session_mount(se, mnt) == 0)
			return 0;
		fail(mnt, "mount failed (see the message above)");
		return -1;
	}
	fflush(stderr);
	dup2(cap, STDERR_FILENO);
	rc = fuse_session_mount(se, mnt);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	n = pread(cap, buf, sizeof(buf) - 1, 0);
	close(cap);
	buf[n > 0 ? n : 0] = '\0';
	if (rc == 0) {
		if (n > 0)
			(void)!write(STDERR_FILENO, buf, (size_t)n);
		return 0;
	}
	/* The first line is the cause; what follows repeats it. */
	reason = bare_reason(buf);
	fail(mnt, *reason ? reason : "mount failed");
	return -1;
}

/* The mount's default source: the stack as one fstab source field,
 * "bottom.sqfs,top.sqfs", which sqvenvfs and mount(8) take back as is. */
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

/* The mount's source: the images, bottom first, comma-separated, each as
 * an absolute path. */
static char *join_images(const struct options *o)
{
	char *out = strdup("");

	for (int i = 0; out && i < o->npaths - 1; i++) {
		char *abs = absolute_path(o->paths[i]), *next = NULL;
		if (!abs || asprintf(&next, "%s%s%s", out, i ? "," : "", abs) < 0)
			next = NULL;
		free(abs);
		free(out);
		out = next;
	}
	return out;
}

/* What do_mount hands to serve besides the options. */
struct mount_plan {
	const char *mnt;     /* resolved mount point */
	int lock_fd;         /* check_mountpoint's lock, or -1 */
	struct sqv_fd_plan fds;
};

static void unlock_mountpoint(struct mount_plan *p)
{
	if (p->lock_fd >= 0)
		close(p->lock_fd);
	p->lock_fd = -1;
}

/*
 * SIGTERM and SIGINT. libfuse's handlers end the session at once, and a
 * process still working in the mount (its cwd there, a file open) gets
 * ENOTCONN from then on. Instead the first SIGTERM or SIGINT detaches the
 * mount lazily: new path lookups no longer reach it, what is in use stays
 * served, and the kernel ends the session (the loop sees ENODEV) when its
 * last user leaves, at once when there is none. A second signal ends it
 * at once through libfuse's handler (Ctrl-C twice); systemd's SIGKILL
 * after TimeoutStopSec bounds a stop in any case. The detach is done by a
 * thread, as an ordinary user's goes through fusermount3, which a signal
 * handler cannot run.
 */
struct stopper {
	const char *mnt;
	dev_t dev;                 /* our mount's (mountinfo), 0 if unknown */
	int pipe[2];               /* the handler wakes the thread through it */
	bool running;              /* the thread was started */
	atomic_bool detached;      /* set by the thread, read after the loop */
	struct sigaction old_term; /* libfuse's, restored after the loop */
	struct sigaction old_int;
	pthread_t thread;
};

static struct stopper stopper = { .pipe = { -1, -1 } };
static volatile sig_atomic_t stop_signals;

static void on_stop_signal(int sig)
{
	int saved = errno;
	const struct sigaction *old =
		sig == SIGINT ? &stopper.old_int : &stopper.old_term;

	if (stop_signals++ == 0) {
		char c = (char)sig;
		(void)!write(stopper.pipe[1], &c, 1);
	} else if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
		old->sa_handler(sig);
	}
	errno = saved;
}

/* Whether the topmost mount at path is the one with root device dev. */
static bool ours_at(const char *path, dev_t dev)
{
	struct sqv_mount m;

	return sqv_mountinfo_find(path, &m) == 1 &&
	       strcmp(m.fstype, "fuse.sqvenvfs") == 0 && (!dev || m.dev == dev);
}

/* Detach the mount at mnt if it is still ours: 0 or -errno. */
static int detach_mount(const char *mnt, dev_t dev)
{
	char moved[PATH_MAX];

	/* Gone from view or covered by another: the path is not ours to
	 * detach. Unless it moved (a parent directory renamed): then it is
	 * found by its device, and detached where it is, if nothing covers
	 * it there. */
	if (!ours_at(mnt, dev)) {
		if (!dev || sqv_mountinfo_find_dev(dev, "fuse.sqvenvfs", moved,
						   sizeof(moved)) != 1 ||
		    !ours_at(moved, dev))
			return -ENOENT;
		mnt = moved;
	}
	if (umount2(mnt, MNT_DETACH | UMOUNT_NOFOLLOW) == 0)
		return 0;
	if (errno != EPERM)
		return -errno;
	/* An ordinary user: the setuid helper, as libfuse unmounts. Spawned
	 * with no signal blocked: this thread blocks the stop signals. */
	posix_spawnattr_t attr;
	sigset_t none;
	pid_t pid;
	int status, err;
	char *argv[] = { "fusermount3", "-u", "-z", "-q", "--", (char *)mnt,
			 NULL };

	sigemptyset(&none);
	if (posix_spawnattr_init(&attr) != 0)
		return -ENOMEM;
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
	err = posix_spawnp(&pid, "fusermount3", NULL, &attr, argv, environ);
	posix_spawnattr_destroy(&attr);
	if (err != 0)
		return -err;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EPERM;
}

static void *stop_thread(void *arg)
{
	const char *mnt = arg;
	char sig;
	ssize_t n;

	while ((n = read(stopper.pipe[0], &sig, 1)) < 0 && errno == EINTR)
		;
	if (n != 1)
		return NULL; /* the loop ended first: no signal to act on */
	/* The status says what is done, not what is hoped: whether anyone
	 * still uses the mount shows only after the detach. */
	sd_notify_send("STOPPING=1\nSTATUS=detaching the mount");
	int err = detach_mount(mnt, stopper.dev);
	if (err == 0) {
		atomic_store(&stopper.detached, true);
		/* Whether anyone still uses it is not known here: with
		 * nobody, the session is ending already. */
		sd_notify_send("STATUS=detached; stopping once no process "
			       "uses it");
		sqv_log(SQV_LOG_INFO, "%s: detached; stopping once no process "
			"uses it", mnt);
		return NULL;
	}
	/* -ENOENT: detach_mount found it nowhere in view by path. */
	const char *why = err == -ENOENT ? "another mount covers it, or it is "
					   "gone" : strerror(-err);
	char status[128];
	snprintf(status, sizeof(status),
		 "STATUS=cannot detach the mount (%s); stopping now", why);
	sd_notify_send(status);
	sqv_log(SQV_LOG_WARNING, "%s: cannot detach the mount (%s); stopping now",
		mnt, why);
	/* As a second signal: libfuse's handler ends the loop. This thread
	 * blocks the signal, so a serving thread takes it. */
	kill(getpid(), sig);
	return NULL;
}

/* Take SIGTERM and SIGINT over from libfuse (not where they are ignored,
 * as in a background job of a shell): 0, or -1 leaving libfuse's. */
static int stopper_start(const char *mnt)
{
	struct sigaction sa = { .sa_handler = on_stop_signal };
	sigset_t stops, saved;
	struct sqv_mount m;

	stopper.mnt = mnt;
	if (sqv_mountinfo_find(mnt, &m) == 1)
		stopper.dev = m.dev;
	if (pipe2(stopper.pipe, O_CLOEXEC) < 0)
		return -1;
	sigemptyset(&stops);
	sigaddset(&stops, SIGTERM);
	sigaddset(&stops, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stops, &saved);
	int err = pthread_create(&stopper.thread, NULL, stop_thread, (void *)mnt);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	if (err != 0) {
		close(stopper.pipe[0]);
		close(stopper.pipe[1]);
		stopper.pipe[0] = stopper.pipe[1] = -1;
		return -1;
	}
	stopper.running = true;
	/* No SA_RESTART: a serving thread's read of /dev/fuse must return
	 * EINTR for libfuse's handler to end the loop on a second signal. */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, NULL, &stopper.old_term);
	sigaction(SIGINT, NULL, &stopper.old_int);
	if (stopper.old_term.sa_handler != SIG_IGN)
		sigaction(SIGTERM, &sa, NULL);
	if (stopper.old_int.sa_handler != SIG_IGN)
		sigaction(SIGINT, &sa, NULL);
	return 0;
}

static void stopper_stop(void)
{
	if (!stopper.running)
		return;
	sigaction(SIGTERM, &stopper.old_term, NULL);
	sigaction(SIGINT, &stopper.old_int, NULL);
	close(stopper.pipe[1]); /* the thread, if still waiting, sees EOF */
	pthread_join(stopper.thread, NULL);
	close(stopper.pipe[0]);
	stopper.running = false;
}

/* Has the kernel ended the session (the mount released, or aborted)? */
static bool session_ended(struct fuse_session *se)
{
	struct pollfd pfd = { .fd = fuse_session_fd(se), .events = 0 };

	return pfd.fd >= 0 && poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLERR);
}

static int serve(struct sqv_fs *fs, const struct options *o,
		 struct mount_plan *p)
{
	const char *mnt = p->mnt;
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fuse_session *se = NULL;
	struct fuse_loop_config *loop = NULL;
	char *mopts = NULL, *source = join_images(o);
	int rc = 1;

	/* The user's options come before ours, so that nothing on the command
	 * line or in fstab (rw, suid, dev) makes the mount writable, setuid or
	 * a device host: libfuse keeps the last of two opposite flags. */
	if (!source ||
	    add_named_opt(&mopts, "subtype",
			  o->subtype ? o->subtype : "sqvenvfs") < 0 ||
	    add_named_opt(&mopts, "fsname",
			  o->fsname ? o->fsname : source) < 0 ||
	    (o->fuse_opts && fuse_opt_add_opt(&mopts, o->fuse_opts) < 0) ||
	    fuse_opt_add_opt(&mopts, "ro,nosuid,nodev,default_permissions") < 0) {
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
	int merr = mount_one_line(se, mnt);
	/* In the kernel's table now (or not at all): the next mount on this
	 * point may look. */
	unlock_mountpoint(p);
	if (merr < 0)
		goto out_signals;
	if (!o->foreground && go_background() != 0)
		goto out_unmount;

	loop = fuse_loop_cfg_create();
	if (!loop) {
		fail("sqvenvfs", "out of memory");
		goto out_unmount;
	}
	/* After the fork: the thread must live in the daemon. Without it the
	 * signals end the session at once, as libfuse's handlers do. */
	if (stopper_start(mnt) < 0)
		sqv_log(SQV_LOG_WARNING, "cannot start the signal thread: "
			"SIGTERM will not wait for the mount's users");
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
	stopper_stop();
	sd_notify_send("STOPPING=1");
	/* Once detached, the mount point may hold another mount by now, so
	 * the path is not ours to unmount. fuse_session_unmount still has to
	 * run when it can, since it frees libfuse's copy of the path: it
	 * leaves the path alone once the kernel has ended the session (it
	 * polls the descriptor first: POLLERR), and with nothing mounted
	 * there its lazy unmount finds nothing to do. It is skipped only when
	 * a second signal cut serving short and another mount has taken the
	 * path; closing the descriptor (in fuse_session_destroy) then ends
	 * what is left of ours. */
	struct sqv_mount now;
	if (!atomic_load(&stopper.detached) || session_ended(se) ||
	    sqv_mountinfo_find(mnt, &now) == 0)
		fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
	/* A mount that could not be taken off (its path moved and covered,
	 * fusermount3 refused) stays behind, dead: not a clean end. */
	char left[PATH_MAX];
	if (stopper.dev && sqv_mountinfo_find_dev(stopper.dev, "fuse.sqvenvfs",
						  left, sizeof(left)) == 1) {
		sqv_log(SQV_LOG_ERR, "%s: still mounted, dead, after the daemon's "
			"end; clear it with sqvenvfs --unmount %s", left, left);
		rc = 1;
	}
out_free:
	fuse_opt_free_args(&args);
	free(mopts);
	free(source);
	return rc;
}

static void fs_free(struct sqv_fs *fs)
{
	sqv_trace_free(fs->trace);
	sqv_reader_free(fs->reader);
	sqv_index_free(fs->index);
	for (unsigned i = 0; i < fs->nlayers; i++)
		sqv_image_free(fs->layers[i]);
}

/*
 * cache_size bounds the decompressed blocks in memory: those in the cache
 * and those in flight, which a reply still holds after their eviction or a
 * thread is decompressing (docs/performance.md, "Memory"). Keep room for
 * three blocks per thread (a reply may hold two, a third is being
 * decompressed), never more than an eighth of the cache.
 */
static size_t cache_capacity(size_t cache_bytes, unsigned threads,
			     uint32_t block_size)
{
	size_t reserve = (size_t)threads * 3 * block_size;

	if (reserve > cache_bytes / 8)
		reserve = cache_bytes / 8;
	return cache_bytes - reserve;
}

/*
 * The prefetch thread's read buffer (a chunk and a block) is part of
 * cache_size too, so the cache holds that much less while any layer has a
 * hot range; the chunk is held to an eighth of cache_size so that the cache
 * keeps most of it. Returns the bytes set aside; a cache too small for both
 * turns the prefetch off (one log line).
 */
static size_t prefetch_reserve(struct sqv_fs *fs, size_t cache_bytes,
			       uint32_t block_size)
{
	bool any = false;

	for (unsigned i = 0; i < fs->nlayers; i++)
		any |= fs->hot[i].has_record;
	if (!any || fs->prefetch_chunk == 0)
		return 0;
	if (fs->prefetch_chunk > cache_bytes / 8)
		fs->prefetch_chunk = cache_bytes / 8;
	size_t buf = fs->prefetch_chunk + block_size;
	if (fs->prefetch_chunk < block_size || buf > cache_bytes / 4) {
		sqv_log(SQV_LOG_INFO, "prefetch off: the block cache is too small");
		fs->prefetch_chunk = 0;
		return 0;
	}
	return buf;
}

static int do_mount(struct options *o, const struct timespec *started_at)
{
	static struct sqv_fs fs; /* lives as long as the process */
	const char *mnt_arg = o->paths[o->npaths - 1];
	unsigned nimages = (unsigned)o->npaths - 1;
	char *mnt = resolve_mount_path(mnt_arg);
	struct mount_plan plan = { .mnt = mnt, .lock_fd = -1 };
	int rc = 1;

	for (int i = 0; i < SQV_FD_RESERVE; i++)
		plan.fds.reserve[i] = -1;
	if (!mnt) {
		rc = fail(mnt_arg, strerror(errno ? errno : ENOMEM));
		goto out;
	}
	if (sqv_limits_fds(nimages, o->threads, &plan.fds) != 0)
		goto out;
	if (check_mountpoint(mnt_arg, mnt, &plan.lock_fd) != 0 ||
	    check_fuse_device() != 0)
		goto out;
	/* Allocations of 64 KiB and more get their own mappings: the index's
	 * arrays and the metadata blocks, which double as they grow, move with
	 * mremap (no copy, no page faulted twice) and go back to the system
	 * when freed; later, the data path's per-thread buffers and libfuse's
	 * request buffers do too, rather than what glibc's adaptive threshold
	 * (raised by each large free) would leave in its arenas. Cached blocks
	 * are mappings of their own anyway (blockcache.h). Before this was
	 * set first, each metadata block's fresh zstd context was a mapping;
	 * contexts are made once now (lib/decomp.c). */
	mallopt(M_MMAP_THRESHOLD, 64 * 1024);
	fs.started_at = *started_at;
	if (open_layers(&fs, o->paths, (int)nimages) != 0)
		goto out_fs;
	struct timespec index_start;
	clock_gettime(CLOCK_MONOTONIC, &index_start);
	sqv_err_t ierr = sqv_index_build(fs.layers, fs.nlayers, 0, &fs.index);
	fs.index_us = us_since(&index_start);
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
	for (unsigned i = 0; i < fs.nlayers; i++) {
		/* From the metadata copy: no read of the image. */
		sqv_err_t herr = sqv_hot_locate(fs.layers[i], &fs.hot[i].where);
		fs.hot[i].has_record = herr == 0;
		if (herr < 0 && herr != -ENOENT)
			sqv_log(SQV_LOG_WARNING, "%s: hot-range record damaged; no prefetch",
				o->paths[i]);
		sqv_image_drop_metadata(fs.layers[i]);
	}
	fs.prefetch_chunk = o->prefetch_bytes;
	fs.has_xattrs = serves_xattrs(&fs);
	uint32_t block_size = 0;
	for (unsigned i = 0; i < fs.nlayers; i++)
		if (sqv_image_info(fs.layers[i])->block_size > block_size)
			block_size = sqv_image_info(fs.layers[i])->block_size;
	if (sqv_limits_cache(&o->cache_bytes, o->cache_size_text,
			     o->threads, block_size) != 0) {
		/* An explicit cache_size that cannot fit is a bad value, as
		 * one above the machine's memory is: exit 2 (sqvenvfs(1)). */
		rc = 2;
		goto out_fs;
	}
	size_t prefetch_buf = prefetch_reserve(&fs, o->cache_bytes, block_size);
	if (sqv_reader_new(fs.index,
			   cache_capacity(o->cache_bytes - prefetch_buf,
					  o->threads, block_size),
			   &fs.reader) < 0) {
		fail("sqvenvfs", "out of memory for the block cache");
		goto out_fs;
	}
	fs.cache_bytes = o->cache_bytes; /* as the limits left it */
	sqv_log(SQV_LOG_INFO, "%zu entries in %u layer(s), index %zu bytes",
		sqv_index_entry_count(fs.index), fs.nlayers,
		sqv_index_memory(fs.index));
	if (o->record && sqv_trace_new(fs.index, &fs.trace) < 0) {
		fail("sqvenvfs", "out of memory for the read trace");
		goto out_fs;
	}
	clock_gettime(CLOCK_MONOTONIC, &fs.mounted_at);
	fs.on_ready = on_ready;
	fs.max_read = o->max_read;
	rc = serve(&fs, o, &plan);
	sqv_prefetch_stop(fs.prefetch);
	fs.prefetch = NULL;
	if (fs.trace) {
		/* After the loop: no request can add to the trace any more. */
		sqv_err_t terr = sqv_trace_save(fs.trace, o->record);
		if (terr < 0) {
			sqv_log(SQV_LOG_ERR, "%s: cannot write the read trace: %s",
				o->record, strerror(-terr));
			rc = 1;
		} else {
			sqv_log(SQV_LOG_INFO, "%s: read trace of %zu files written",
				o->record, sqv_trace_files(fs.trace));
		}
	}
out_fs:
	fs_free(&fs);
out:
	unlock_mountpoint(&plan);
	sqv_limits_release_fds(&plan.fds);
	free(mnt);
	return rc;
}

int main(int argc, char **argv)
{
	struct options o;
	struct timespec started_at;
	int rc;

	clock_gettime(CLOCK_MONOTONIC, &started_at);
	sqv_log_set_sink(getenv("JOURNAL_STREAM") ? sqv_log_sink_journal : NULL,
			 NULL);
	fuse_set_log_func(log_from_fuse);

	rc = sqv_options_parse(argc, argv, &o);
	if (rc != 0) {
		sqv_options_free(&o);
		return rc < 0 ? 2 : 0;
	}
	if (o.debug)
		sqv_log_set_level(SQV_LOG_DEBUG);
	switch (o.mode) {
	case MODE_UNMOUNT:
		rc = do_unmount(o.paths[0], o.if_mounted);
		break;
	case MODE_STATS:
		rc = do_stats(&o);
		break;
	case MODE_MOUNT:
	default:
		rc = do_mount(&o, &started_at);
		if (ready_fd >= 0)
			close(ready_fd); /* never ready: the parent exits 1 */
		break;
	}
	sqv_options_free(&o);
	return rc;
}
