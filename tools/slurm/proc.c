/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * proc: everything the helper does as another user or with another process:
 * the checks as the job's user, the daemon's start (and its readiness,
 * READY=1 on a NOTIFY_SOCKET as under systemd) and stop, and unmounting as
 * the mount's user. Root never opens, creates or unmounts anything through
 * a path the user controls; a child that has become the user does.
 */
#include "helper.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mountinfo.h"

int become_user(const struct cred *cred)
{
	if (initgroups(cred->user, cred->gid) < 0 || setgid(cred->gid) < 0 ||
	    setuid(cred->uid) < 0)
		return -1;
	if (setuid(0) == 0) /* must be impossible now */
		return -1;
	return 0;
}

unsigned long long proc_start(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long start = 0;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	p = strrchr(buf, ')');
	if (!p || p[1] != ' ' || p[2] == 'Z' || p[2] == 'X')
		return 0;
	/* after ')': state is field 3; starttime is field 22 */
	p += 2;
	for (int field = 3; field < 22; field++) {
		p = strchr(p, ' ');
		if (!p)
			return 0;
		p++;
	}
	sscanf(p, "%llu", &start);
	return start;
}

int fuse_mounted_at(const char *mp)
{
	struct sqv_mount m;

	return sqv_mountinfo_find(mp, &m) == 1 && strncmp(m.fstype, "fuse", 4) == 0;
}

int any_mount_at(const char *mp)
{
	struct sqv_mount m;

	return sqv_mountinfo_find(mp, &m) == 1;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void stdio_to_null(void)
{
	int null = open("/dev/null", O_RDWR);

	if (null >= 0) {
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
	}
}

/* Run argv as cred, quietly; its exit status, or -1. */
static int run_as(const struct cred *cred, char *const argv[])
{
	int st;
	pid_t pid = fork();

	if (pid == 0) {
		stdio_to_null();
		if (become_user(cred) < 0)
			_exit(127);
		execv(argv[0], argv);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Clear what is mounted at mp, as the mount's user: the daemon's own
 * `--unmount --if-mounted`, and if that cannot (a process still uses the
 * mount) fusermount3's lazy unmount. Both only touch that user's FUSE
 * mounts, and never follow a path as root. */
static void user_unmount(const struct job *job, const struct cred *cred, const char *mp)
{
	char *unmount[] = { (char *)job->site.daemon, "--unmount", "--if-mounted",
			    (char *)mp, NULL };
	char *lazy[] = { (char *)job->site.fusermount, "-u", "-z", "--", (char *)mp, NULL };

	if (run_as(cred, unmount) == 0 && !fuse_mounted_at(mp))
		return;
	if (fuse_mounted_at(mp))
		run_as(cred, lazy);
}

int daemon_alive(const struct mountrec *r)
{
	return r->pid > 0 && r->start && proc_start(r->pid) == r->start;
}

static void wait_gone(const struct mountrec *r, int tenths_of_s)
{
	for (int i = 0; i < tenths_of_s * 2 && daemon_alive(r); i++)
		sleep_ms(50);
}

void mount_stop(const struct job *job, const struct mountrec *r)
{
	if (daemon_alive(r)) {
		kill(r->pid, SIGTERM);
		wait_gone(r, 150);
	}
	if (fuse_mounted_at(r->mountpoint))
		user_unmount(job, &r->cred, r->mountpoint);
	if (daemon_alive(r)) {
		sqv_log(SQV_LOG_WARNING, "daemon %d did not stop on SIGTERM; killing it",
			(int)r->pid);
		kill(r->pid, SIGKILL);
		wait_gone(r, 50);
		if (fuse_mounted_at(r->mountpoint))
			user_unmount(job, &r->cred, r->mountpoint);
	}
	if (fuse_mounted_at(r->mountpoint))
		sqv_log(SQV_LOG_ERR, "%s is still mounted after stopping the daemon",
			r->mountpoint);
	else
		sqv_log(SQV_LOG_INFO, "unmounted %s", r->mountpoint);
}

/* ------------------------------------------------------ checks as the user */

static void send_fd(int sock, int fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { "F", 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			    .msg_controllen = sizeof(cbuf) };

	memset(cbuf, 0, sizeof(cbuf));
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	if (sendmsg(sock, &m, 0) < 0)
		_exit(1);
}

/* The child: as the user, send 'F'+fd per image, then 'M'+mount point, or
 * 'E'+message. */
static void checks_child(const struct job *job, const struct sqv_req *req, int sock)
{
	char e[SQV_ERRLEN + 1], mp[PATH_MAX + 1];

	umask(022);
	if (become_user(&job->cred) < 0) {
		snprintf(e, sizeof(e), "Ecannot become user %s: %s", job->cred.user,
			 strerror(errno));
		send(sock, e, strlen(e), 0);
		_exit(1);
	}
	for (size_t i = 0; i < req->n_images; i++) {
		int fd = sqv_open_image(req->images[i], e + 1);

		if (fd < 0) {
			e[0] = 'E';
			send(sock, e, strlen(e), 0);
			_exit(1);
		}
		send_fd(sock, fd);
		close(fd);
	}
	if (sqv_resolve_mountpoint(req->mountpoint, getuid(), 1, mp + 1, NULL, e + 1) < 0) {
		e[0] = 'E';
		send(sock, e, strlen(e), 0);
		_exit(1);
	}
	mp[0] = 'M';
	send(sock, mp, strlen(mp), 0);
	_exit(0);
}

/* The parent: collect what the child sends. 0, or -1 with err set. */
static int checks_collect(const struct job *job, const struct sqv_req *req, int sock,
			  int fds[], size_t *got, char *resolved, char *err)
{
	for (;;) {
		char buf[PATH_MAX + SQV_ERRLEN + 2];
		char cbuf[CMSG_SPACE(sizeof(int))];
		struct iovec iov = { buf, sizeof(buf) - 1 };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
				    .msg_controllen = sizeof(cbuf) };
		ssize_t n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);

		if (n <= 0) {
			sqv_errf(err, "internal error: the check as user %s ended early",
				 job->cred.user);
			return -1;
		}
		buf[n] = '\0';
		if (buf[0] == 'F') {
			struct cmsghdr *c = CMSG_FIRSTHDR(&m);

			if (!c || c->cmsg_type != SCM_RIGHTS || *got >= req->n_images) {
				sqv_errf(err, "internal error: no image fd");
				return -1;
			}
			memcpy(&fds[(*got)++], CMSG_DATA(c), sizeof(int));
			continue;
		}
		if (buf[0] == 'M' && *got == req->n_images &&
		    sqv_pathf(resolved, "%s", buf + 1) == 0)
			return 0;
		sqv_errf(err, "%s", buf[0] == 'E' ? buf + 1 : "internal error");
		return -1;
	}
}

int user_checks(const struct job *job, const struct sqv_req *req, int fds[], char *resolved,
		char *err)
{
	int sv[2], st, rc;
	size_t got = 0;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		sqv_errf(err, "socketpair: %s", strerror(errno));
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		sqv_errf(err, "fork: %s", strerror(errno));
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	if (pid == 0) {
		close(sv[0]);
		checks_child(job, req, sv[1]);
	}
	close(sv[1]);
	rc = checks_collect(job, req, sv[0], fds, &got, resolved, err);
	close(sv[0]);
	waitpid(pid, &st, 0);
	if (rc < 0)
		while (got > 0)
			close(fds[--got]);
	return rc;
}

/* ------------------------------------------------------- starting a mount */

/*
 * The socket the daemon reports READY=1 to: abstract (no file the user
 * could swap), with SO_PASSCRED, so that only a message from the daemon's
 * own pid counts.
 */
static int notify_socket(const struct job *job, char name[108])
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	unsigned rnd = 0;
	int one = 1;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	if (fd < 0)
		return -1;
	if (getrandom(&rnd, sizeof(rnd), 0) < 0)
		rnd = (unsigned)now_ms();
	int len = snprintf(name, 108, "@sqvenvfs-slurm/%lu/%d/%08x", job->id, (int)getpid(),
			   rnd);
	memcpy(sa.sun_path, name, (size_t)len);
	sa.sun_path[0] = '\0';
	if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&sa,
		 (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)len)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Did the daemon (pid) send READY=1? Reads every message waiting. */
static int got_ready(int sock, pid_t pid)
{
	int ready = 0;

	for (;;) {
		char buf[4096], cbuf[CMSG_SPACE(sizeof(struct ucred))];
		struct iovec iov = { buf, sizeof(buf) - 1 };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
				    .msg_controllen = sizeof(cbuf) };
		ssize_t n = recvmsg(sock, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

		if (n < 0)
			return ready;
		buf[n] = '\0';
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		struct ucred uc;
		if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_CREDENTIALS)
			continue;
		memcpy(&uc, CMSG_DATA(c), sizeof(uc));
		if (uc.pid != pid)
			continue;
		for (char *line = buf, *save = NULL; (line = strtok_r(line, "\n", &save));
		     line = NULL)
			if (strcmp(line, "READY=1") == 0)
				ready = 1;
	}
}

/* 1 ready, 0 the daemon ended first (*status set), -1 timed out. */
static int wait_ready(int sock, pid_t pid, unsigned timeout_s, int *status)
{
	long long deadline = now_ms() + (long long)timeout_s * 1000;
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);

	for (;;) {
		struct pollfd p[2] = { { sock, POLLIN, 0 }, { pidfd, POLLIN, 0 } };
		long long left = deadline - now_ms();

		if (got_ready(sock, pid)) {
			if (pidfd >= 0)
				close(pidfd);
			return 1;
		}
		if (waitpid(pid, status, WNOHANG) == pid) {
			if (pidfd >= 0)
				close(pidfd);
			/* A READY=1 sent just before it ended still counts
			 * for nothing: the mount is gone with it. */
			return 0;
		}
		if (left <= 0)
			break;
		/* Without pidfds (Linux < 5.3) the exit is seen within 100 ms. */
		poll(p, pidfd >= 0 ? 2 : 1, pidfd >= 0 ? (int)left : (int)(left < 100 ? left : 100));
	}
	if (pidfd >= 0)
		close(pidfd);
	return -1;
}

/* The daemon's log, its lines joined by "; ", for the job's output (out:
 * SQV_ERRLEN bytes): it says nothing but its errors, and the last line
 * alone may point at the one before it. */
static void log_tail(const char *logpath, char *out)
{
	char buf[4096];
	ssize_t n;
	int fd = open(logpath, O_RDONLY | O_CLOEXEC);

	out[0] = '\0';
	if (fd < 0)
		return;
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	char joined[sizeof(buf) * 2], *w = joined;
	for (char *r = buf; *r; r++) {
		if (*r == '\n') {
			*w++ = ';';
			*w++ = ' ';
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
	size_t len = (size_t)(w - joined);
	/* Too long: the end, where the cause is. */
	sqv_errf(out, "%s", len >= SQV_ERRLEN ? w - (SQV_ERRLEN - 1) : joined);
}

/* In the child: become the user, in a session of its own (Slurm kills the
 * Prolog's process group), with a clean environment; never returns. */
static void exec_daemon(const struct job *job, const struct cred *cred, char *const argv[],
			int logfd, const char *notify)
{
	char home[PATH_MAX + 8], user[300], sock[128];
	char *envp[] = { "PATH=/usr/local/bin:/usr/bin:/bin", home, user, sock, NULL };
	struct passwd *pw = getpwuid(cred->uid);
	int null = open("/dev/null", O_RDONLY);
	sigset_t none;

	snprintf(home, sizeof(home), "HOME=%s", pw ? pw->pw_dir : "/");
	snprintf(user, sizeof(user), "USER=%s", cred->user);
	snprintf(sock, sizeof(sock), "NOTIFY_SOCKET=%s", notify);
	setsid();
	if (null >= 0)
		dup2(null, 0);
	dup2(logfd, 1);
	dup2(logfd, 2);
	for (int s = 1; s < NSIG; s++)
		signal(s, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (become_user(cred) < 0) {
		dprintf(2, "sqvenvfs-slurm: cannot become user %s: %s\n", cred->user,
			strerror(errno));
		_exit(127);
	}
	if (chdir("/") < 0)
		_exit(127);
	execve(job->site.daemon, argv, envp);
	dprintf(2, "sqvenvfs-slurm: %s: %s\n", job->site.daemon, strerror(errno));
	_exit(127);
}

static void describe_end(int status, char *out, size_t len)
{
	if (WIFSIGNALED(status))
		snprintf(out, len, "the daemon was killed by signal %d before the mount was "
			 "usable", WTERMSIG(status));
	else
		snprintf(out, len, "the daemon exited with status %d before the mount was "
			 "usable", WEXITSTATUS(status));
}

int mount_start(const struct job *job, struct mountrec *r, const char *key,
		char *const images[], size_t n, char *err)
{
	char logpath[PATH_MAX], tail[SQV_ERRLEN], notify[108];
	char *argv[SQV_MAX_IMAGES + 8];
	size_t a = 0;
	int logfd, sock, st = 0;

	if (daemon_log_path(job, key, logpath) < 0) {
		sqv_errf(err, "internal error: state_dir too long");
		return -1;
	}
	unlink(logpath);
	logfd = open(logpath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	sock = notify_socket(job, notify);
	if (logfd < 0 || sock < 0) {
		sqv_errf(err, "internal error: %s: %s", logfd < 0 ? logpath : "notify socket",
			 strerror(errno));
		if (logfd >= 0)
			close(logfd);
		return -1;
	}
	argv[a++] = (char *)job->site.daemon;
	argv[a++] = "-f";
	if (job->site.daemon_options[0]) {
		argv[a++] = "-o";
		argv[a++] = (char *)job->site.daemon_options;
	}
	for (size_t i = 0; i < n; i++)
		argv[a++] = images[i];
	argv[a++] = r->mountpoint;
	argv[a] = NULL;

	pid_t pid = fork();
	if (pid == 0)
		exec_daemon(job, &r->cred, argv, logfd, notify);
	close(logfd);
	if (pid < 0) {
		close(sock);
		sqv_errf(err, "fork: %s", strerror(errno));
		return -1;
	}
	int ready = wait_ready(sock, pid, job->site.mount_timeout, &st);
	close(sock);
	if (ready == 1) {
		r->pid = pid;
		r->start = proc_start(pid);
		sqv_log(SQV_LOG_INFO, "mounted %s for %s (daemon pid %d)", r->mountpoint,
			r->cred.user, (int)pid);
		return 0;
	}
	if (ready < 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		/* What the daemon said before it hung, if anything. */
		log_tail(logpath, tail);
		sqv_errf(err, "mounting at %s timed out after %u s%s%s", r->mountpoint,
			 job->site.mount_timeout, tail[0] ? "; the daemon said: " : "",
			 tail);
	} else {
		log_tail(logpath, tail);
		if (!tail[0])
			describe_end(st, tail, sizeof(tail));
		/* The Prolog makes the daemon's command line; a usage error
		 * (exit 2) can only come from the site's daemon_options. */
		if (job->site.daemon_options[0] && WIFEXITED(st) &&
		    WEXITSTATUS(st) == 2)
			sqv_errf(err, "the node's sqvenvfs configuration is broken "
				 "(daemon_options = %s: %s); tell your administrator",
				 job->site.daemon_options, tail);
		else
			sqv_errf(err, "mounting at %s failed: %s", r->mountpoint, tail);
	}
	/* A daemon that died after mounting left a dead mount: clear it. */
	if (fuse_mounted_at(r->mountpoint))
		user_unmount(job, &r->cred, r->mountpoint);
	unlink(logpath);
	return -1;
}
