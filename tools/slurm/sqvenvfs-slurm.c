/*
 * sqvenvfs-slurm: the Slurm Prolog and Epilog (one program; installed as
 * sqvenvfs-prolog and sqvenvfs-epilog, or run as "sqvenvfs-slurm prolog|epilog").
 *
 * Prolog (root, on every node of the job, before it starts): reads the job's
 * request from SPANK_SQVENV (set by the SPANK plugin; untrusted: everything
 * is checked again here), becomes the job's user to open the images and to
 * check or create the mount point, optionally stages the images into a
 * node-local cache, and starts the sqvenvfs daemon as the job's user (uid,
 * gid, groups) in its own session, or joins an existing identical mount of
 * the same user. A failure caused by the request never makes the Prolog exit
 * non-zero (that drains the node): it is written to STATE/jobs/JOBID.err,
 * which the SPANK plugin prints in the job's output while refusing to start
 * the job's tasks.
 *
 * Epilog (root, after the job ends for any reason): drops the job from the
 * mount it used and stops the daemon and unmounts when it was the last job.
 * It always exits 0.
 *
 * State (site setting state_dir, default /run/sqvenvfs, root-owned):
 *   lock               flock: serialises every change of mounts/ and jobs/
 *   mounts/KEY         one mount: uid, mount point, stack, daemon pid, jobs
 *   jobs/JOBID         which mount the job uses
 *   jobs/JOBID.err     why the job could not get its environment (user-owned)
 *   log/KEY.log        the daemon's stdout and stderr
 *
 * Staging (site setting stage_dir): see stage_image().
 */
#include "sqv_slurm.h"
#include "mountinfo.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define COPY_CHUNK (16u << 20)

static struct sqv_site site;
static unsigned long jobid;
static uid_t job_uid;
static gid_t job_gid;
static char job_user[256];

/* ---------------------------------------------------------------- logging */

static void logmsg(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logmsg(int prio, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	syslog(prio, "job %lu: %s", jobid, msg);
	if (site.log_file[0]) {
		int fd = open(site.log_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
			      0640);

		if (fd >= 0) {
			char line[2300];
			time_t now = time(NULL);
			struct tm tm;
			int n;

			gmtime_r(&now, &tm);
			n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02dZ job %lu: %s\n",
				     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
				     tm.tm_min, tm.tm_sec, jobid, msg);
			if (n > 0 && write(fd, line, (size_t)n) < 0)
				(void)0;
			close(fd);
		}
	}
}

/* The job's own error: kept for the SPANK plugin to print in the job's
 * output. Never fatal for the node. */
static void job_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void job_fail(const char *fmt, ...)
{
	char msg[2048], path[PATH_MAX];
	va_list ap;
	int fd;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	logmsg(LOG_WARNING, "refused: %s", msg);
	snprintf(path, sizeof(path), "%s/jobs/%lu.err", site.state_dir, jobid);
	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0400);
	if (fd < 0) {
		logmsg(LOG_ERR, "%s: %s", path, strerror(errno));
		return;
	}
	if (write(fd, msg, strlen(msg)) < 0 || write(fd, "\n", 1) < 0)
		logmsg(LOG_ERR, "%s: %s", path, strerror(errno));
	if (fchown(fd, job_uid, job_gid) < 0)
		logmsg(LOG_ERR, "%s: chown: %s", path, strerror(errno));
	close(fd);
}

/* ---------------------------------------------------------------- helpers */

static uint64_t hash64(const void *data, size_t len, uint64_t h)
{
	const unsigned char *p = data;
	const uint64_t m1 = 0x9E3779B185EBCA87ULL, m2 = 0xC2B2AE3D27D4EB4FULL;

	while (len >= 8) {
		uint64_t w;

		memcpy(&w, p, 8);
		h ^= w * m2;
		h = (h << 31 | h >> 33) * m1;
		p += 8;
		len -= 8;
	}
	while (len--) {
		h ^= *p++ * m1;
		h = (h << 11 | h >> 53) * m2;
	}
	return h;
}

static int mkdir_mode(const char *path, mode_t mode)
{
	struct stat st;

	if (mkdir(path, mode) < 0 && errno != EEXIST)
		return -1;
	if (lstat(path, &st) < 0)
		return -1;
	if (!S_ISDIR(st.st_mode) || st.st_uid != 0) {
		errno = ENOTDIR;
		return -1;
	}
	return chmod(path, mode);
}

/* Become the job's user for good (in a child). */
static int become_user(void)
{
	if (initgroups(job_user, job_gid) < 0 || setgid(job_gid) < 0 || setuid(job_uid) < 0)
		return -1;
	if (setuid(0) == 0) /* must be impossible now */
		return -1;
	return 0;
}

/* Start time of a process (clock ticks since boot), 0 if gone or a zombie. */
static unsigned long long proc_start(pid_t pid)
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
	if (!p || p[1] != ' ')
		return 0;
	if (p[2] == 'Z' || p[2] == 'X')
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

/* Is a FUSE file system the topmost mount at mp? 1 yes, 0 no. */
static int fuse_mounted_at(const char *mp)
{
	struct sqv_mount m;

	return sqv_mountinfo_find(mp, &m) == 1 && strncmp(m.fstype, "fuse", 4) == 0;
}

static int any_mount_at(const char *mp)
{
	struct sqv_mount m;

	return sqv_mountinfo_find(mp, &m) == 1;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Run fusermount3 -u -z MP as the job's user (it only unmounts that user's
 * own FUSE mounts, and never follows a planted path as root). */
static void user_unmount(const char *mp)
{
	pid_t pid = fork();
	int st;

	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
			dup2(null, 2);
		}
		if (become_user() < 0)
			_exit(127);
		execl(site.fusermount, "fusermount3", "-u", "-z", "--", mp, (char *)NULL);
		_exit(127);
	}
	if (pid > 0)
		waitpid(pid, &st, 0);
}

/* ---------------------------------------------------------------- records */

struct mountrec {
	uid_t uid;
	gid_t gid;
	char user[256];
	char mountpoint[PATH_MAX];
	char stack[8192];
	pid_t pid;
	unsigned long long start;
	unsigned long jobs[256];
	size_t n_jobs;
};

static void mount_key(uid_t uid, const char *mp, char out[17])
{
	uint64_t h = hash64(&uid, sizeof(uid), 0x5153564e56465331ULL);

	h = hash64(mp, strlen(mp), h);
	snprintf(out, 17, "%016llx", (unsigned long long)h);
}

static int rec_load(const char *key, struct mountrec *r)
{
	char path[PATH_MAX], line[9000];
	FILE *f;

	memset(r, 0, sizeof(*r));
	snprintf(path, sizeof(path), "%s/mounts/%s", site.state_dir, key);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		char *v = strchr(line, ' ');

		if (!v)
			continue;
		*v++ = '\0';
		v[strcspn(v, "\n")] = '\0';
		if (strcmp(line, "uid") == 0)
			r->uid = (uid_t)strtoul(v, NULL, 10);
		else if (strcmp(line, "gid") == 0)
			r->gid = (gid_t)strtoul(v, NULL, 10);
		else if (strcmp(line, "user") == 0)
			snprintf(r->user, sizeof(r->user), "%s", v);
		else if (strcmp(line, "mountpoint") == 0)
			snprintf(r->mountpoint, sizeof(r->mountpoint), "%s", v);
		else if (strcmp(line, "stack") == 0)
			snprintf(r->stack, sizeof(r->stack), "%s", v);
		else if (strcmp(line, "pid") == 0)
			r->pid = (pid_t)strtol(v, NULL, 10);
		else if (strcmp(line, "start") == 0)
			r->start = strtoull(v, NULL, 10);
		else if (strcmp(line, "job") == 0 && r->n_jobs < 256)
			r->jobs[r->n_jobs++] = strtoul(v, NULL, 10);
	}
	fclose(f);
	return 0;
}

static int rec_save(const char *key, const struct mountrec *r)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "%s/mounts/%s", site.state_dir, key);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "we");
	if (!f)
		return -1;
	fprintf(f, "uid %u\ngid %u\nuser %s\nmountpoint %s\nstack %s\npid %d\nstart %llu\n",
		(unsigned)r->uid, (unsigned)r->gid, r->user, r->mountpoint, r->stack, (int)r->pid,
		r->start);
	for (size_t i = 0; i < r->n_jobs; i++)
		fprintf(f, "job %lu\n", r->jobs[i]);
	if (fclose(f) != 0)
		return -1;
	return rename(tmp, path);
}

static void rec_remove(const char *key)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/mounts/%s", site.state_dir, key);
	unlink(path);
}

static int daemon_alive(const struct mountrec *r)
{
	return r->pid > 0 && r->start && proc_start(r->pid) == r->start;
}

/* Stop a mount's daemon and make sure nothing stays mounted. */
static void mount_stop(const struct mountrec *r)
{
	uid_t su = job_uid;
	gid_t sg = job_gid;
	char suser[256];

	snprintf(suser, sizeof(suser), "%s", job_user);
	job_uid = r->uid;
	job_gid = r->gid;
	snprintf(job_user, sizeof(job_user), "%s", r->user);

	if (daemon_alive(r)) {
		kill(r->pid, SIGTERM);
		for (int i = 0; i < 300 && daemon_alive(r); i++)
			sleep_ms(50);
	}
	if (fuse_mounted_at(r->mountpoint))
		user_unmount(r->mountpoint);
	if (daemon_alive(r)) {
		logmsg(LOG_WARNING, "daemon %d did not stop on SIGTERM; killing it", (int)r->pid);
		kill(r->pid, SIGKILL);
		for (int i = 0; i < 100 && daemon_alive(r); i++)
			sleep_ms(50);
		if (fuse_mounted_at(r->mountpoint))
			user_unmount(r->mountpoint);
	}
	if (fuse_mounted_at(r->mountpoint))
		logmsg(LOG_ERR, "%s is still mounted after stopping the daemon", r->mountpoint);
	else
		logmsg(LOG_INFO, "unmounted %s", r->mountpoint);

	job_uid = su;
	job_gid = sg;
	snprintf(job_user, sizeof(job_user), "%s", suser);
}

/* ---------------------------------------------------- checks as the user */

/*
 * In a child that has become the job's user: open each image and check it,
 * then check (and create if missing) the mount point. The open image fds come
 * back over a socketpair, so that root only ever reads what the user could.
 */
static int user_checks(const struct sqv_req *req, int fds[], char *resolved, char *err)
{
	int sv[2], st;
	pid_t pid;
	size_t got = 0;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		snprintf(err, SQV_ERRLEN, "socketpair: %s", strerror(errno));
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		snprintf(err, SQV_ERRLEN, "fork: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		char e[SQV_ERRLEN + 1], mp[PATH_MAX + 1];

		close(sv[0]);
		umask(022);
		if (become_user() < 0) {
			snprintf(e, sizeof(e), "Ecannot become user %s: %s", job_user,
				 strerror(errno));
			send(sv[1], e, strlen(e), 0);
			_exit(1);
		}
		for (size_t i = 0; i < req->n_images; i++) {
			char cbuf[CMSG_SPACE(sizeof(int))];
			struct msghdr m = { 0 };
			struct iovec iov = { "F", 1 };
			struct cmsghdr *c;
			int fd = sqv_open_image(req->images[i], e + 1);

			if (fd < 0) {
				e[0] = 'E';
				send(sv[1], e, strlen(e), 0);
				_exit(1);
			}
			memset(cbuf, 0, sizeof(cbuf));
			m.msg_iov = &iov;
			m.msg_iovlen = 1;
			m.msg_control = cbuf;
			m.msg_controllen = sizeof(cbuf);
			c = CMSG_FIRSTHDR(&m);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(c), &fd, sizeof(int));
			if (sendmsg(sv[1], &m, 0) < 0)
				_exit(1);
			close(fd);
		}
		if (sqv_resolve_mountpoint(req->mountpoint, getuid(), 1, mp + 1, NULL, e + 1) < 0) {
			e[0] = 'E';
			send(sv[1], e, strlen(e), 0);
			_exit(1);
		}
		mp[0] = 'M';
		send(sv[1], mp, strlen(mp), 0);
		_exit(0);
	}
	close(sv[1]);
	for (;;) {
		char buf[PATH_MAX + SQV_ERRLEN + 2];
		char cbuf[CMSG_SPACE(sizeof(int))];
		struct iovec iov = { buf, sizeof(buf) - 1 };
		struct msghdr m = { 0 };
		struct cmsghdr *c;
		ssize_t n;

		m.msg_iov = &iov;
		m.msg_iovlen = 1;
		m.msg_control = cbuf;
		m.msg_controllen = sizeof(cbuf);
		n = recvmsg(sv[0], &m, MSG_CMSG_CLOEXEC);
		if (n <= 0) {
			snprintf(err, SQV_ERRLEN, "internal error: the check as user %s ended early",
				 job_user);
			break;
		}
		buf[n] = '\0';
		if (buf[0] == 'F') {
			c = CMSG_FIRSTHDR(&m);
			if (!c || c->cmsg_type != SCM_RIGHTS || got >= req->n_images) {
				snprintf(err, SQV_ERRLEN, "internal error: no image fd");
				break;
			}
			memcpy(&fds[got++], CMSG_DATA(c), sizeof(int));
			continue;
		}
		if (buf[0] == 'M' && got == req->n_images) {
			snprintf(resolved, PATH_MAX, "%s", buf + 1);
			close(sv[0]);
			waitpid(pid, &st, 0);
			return 0;
		}
		snprintf(err, SQV_ERRLEN, "%s", buf[0] == 'E' ? buf + 1 : "internal error");
		break;
	}
	close(sv[0]);
	waitpid(pid, &st, 0);
	while (got > 0)
		close(fds[--got]);
	return -1;
}

/* ---------------------------------------------------------------- staging */

/*
 * Node-local staging. A staged copy is named after the source's path, size,
 * mtime (ns) and inode: it is reused while all four are unchanged, and a
 * changed image gets a new copy (the old one ages out). Hashing the content
 * on every job would read the whole image from the shared file system each
 * time, which is the cost staging exists to avoid.
 *
 *   STAGE/objects/           root 0700: nobody but root reaches the copies
 *   STAGE/objects/K.sqfs     a complete, verified copy (0444); its mtime is
 *                            the last use (LRU)
 *   STAGE/objects/K.lock     flock: one prolog copies K, the others wait
 *   STAGE/objects/.tmp-K-PID a copy in progress (flocked by its writer),
 *                            renamed to K.sqfs only once verified
 *   STAGE/objects/.evict     flock: space accounting and eviction
 *   STAGE/jobs/JOBID/N.sqfs  hard links for one job, in a directory owned by
 *                            the job's user, mode 0500: the user's daemon
 *                            reaches exactly the copies of the images that
 *                            user opened. A copy with links (st_nlink > 1) is
 *                            in use and never evicted.
 */
struct objinfo {
	char name[NAME_MAX + 1];
	off_t size;
	struct timespec mtime; /* last use */
};

static int cmp_mtime(const void *a, const void *b)
{
	const struct objinfo *x = a, *y = b;

	if (x->mtime.tv_sec != y->mtime.tv_sec)
		return (x->mtime.tv_sec > y->mtime.tv_sec) - (x->mtime.tv_sec < y->mtime.tv_sec);
	return (x->mtime.tv_nsec > y->mtime.tv_nsec) - (x->mtime.tv_nsec < y->mtime.tv_nsec);
}

/* Make room for need bytes (called with .evict held). 0 if there is room. */
static int make_room(int objdir, uint64_t need)
{
	struct objinfo *objs = NULL;
	size_t n = 0, cap = 0;
	uint64_t used = 0;
	struct dirent *de;
	DIR *d;
	/* objdir is an O_PATH descriptor, which cannot be listed. */
	int dfd = openat(objdir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (dfd < 0)
		return -1;
	d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return -1;
	}
	while ((de = readdir(d))) {
		struct stat st;
		size_t len = strlen(de->d_name);

		if (fstatat(objdir, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (strncmp(de->d_name, ".tmp-", 5) == 0) {
			/* A copy in progress holds a lock on its file; one
			 * that does not is left over from a crash. */
			int fd = openat(objdir, de->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

			if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0) {
				unlinkat(objdir, de->d_name, 0);
				logmsg(LOG_INFO, "removed stale partial copy %s", de->d_name);
			} else {
				used += (uint64_t)st.st_blocks * 512 > (uint64_t)st.st_size
						? (uint64_t)st.st_blocks * 512 : (uint64_t)st.st_size;
			}
			if (fd >= 0)
				close(fd);
			continue;
		}
		if (len < 6 || strcmp(de->d_name + len - 5, ".sqfs") != 0)
			continue;
		used += (uint64_t)st.st_size;
		if (st.st_nlink > 1)
			continue; /* in use by a running job */
		if (n == cap) {
			struct objinfo *g = realloc(objs, (cap = cap ? cap * 2 : 64) * sizeof(*objs));

			if (!g)
				break;
			objs = g;
		}
		snprintf(objs[n].name, sizeof(objs[n].name), "%s", de->d_name);
		objs[n].size = st.st_size;
		objs[n].mtime = st.st_mtim;
		n++;
	}
	closedir(d);
	qsort(objs, n, sizeof(*objs), cmp_mtime);
	for (size_t i = 0; i < n && used + need > site.stage_max_size; i++) {
		char lock[NAME_MAX + 8];
		int lfd;

		snprintf(lock, sizeof(lock), "%.*s.lock", (int)(strlen(objs[i].name) - 5),
			 objs[i].name);
		lfd = openat(objdir, lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (lfd < 0 || flock(lfd, LOCK_EX | LOCK_NB) < 0) {
			if (lfd >= 0)
				close(lfd);
			continue; /* being linked right now */
		}
		if (unlinkat(objdir, objs[i].name, 0) == 0) {
			used -= (uint64_t)objs[i].size;
			logmsg(LOG_INFO, "evicted staged copy %s (%lld bytes, least recently used)",
			       objs[i].name, (long long)objs[i].size);
		}
		close(lfd);
	}
	free(objs);
	return used + need <= site.stage_max_size ? 0 : -1;
}

static int copy_and_verify(int src, int dst, const char *path, off_t size, char *err)
{
	char *buf = malloc(COPY_CHUNK);
	uint64_t h1 = 0, h2 = 0;
	off_t off = 0;

	if (!buf) {
		snprintf(err, SQV_ERRLEN, "out of memory");
		return -1;
	}
	posix_fadvise(src, 0, 0, POSIX_FADV_SEQUENTIAL);
	while (off < size) {
		ssize_t n = pread(src, buf, COPY_CHUNK, off), w = 0;

		if (n <= 0) {
			snprintf(err, SQV_ERRLEN, "%s: read: %s", path, n < 0 ? strerror(errno)
										: "unexpected end of file");
			goto fail;
		}
		h1 = hash64(buf, (size_t)n, h1);
		while (w < n) {
			ssize_t k = pwrite(dst, buf + w, (size_t)(n - w), off + w);

			if (k <= 0) {
				snprintf(err, SQV_ERRLEN, "staging %s: write: %s", path,
					 strerror(k < 0 ? errno : EIO));
				goto fail;
			}
			w += k;
		}
		off += n;
	}
	if (fsync(dst) < 0) {
		snprintf(err, SQV_ERRLEN, "staging %s: fsync: %s", path, strerror(errno));
		goto fail;
	}
	/* Verify: read the copy back from the node-local disk. */
	posix_fadvise(dst, 0, 0, POSIX_FADV_DONTNEED);
	for (off = 0; off < size;) {
		ssize_t n = pread(dst, buf, COPY_CHUNK, off);

		if (n <= 0) {
			snprintf(err, SQV_ERRLEN, "staging %s: reading the copy back failed", path);
			goto fail;
		}
		h2 = hash64(buf, (size_t)n, h2);
		off += n;
	}
	if (h1 != h2) {
		snprintf(err, SQV_ERRLEN, "staging %s: the copy does not match the image", path);
		goto fail;
	}
	free(buf);
	return 0;
fail:
	free(buf);
	return -1;
}

/* Stage one image; on success out receives the per-job link's path. Returns
 * 1 when staged or reused, 0 when the image is to be used in place, -1 on a
 * job error (err set). */
static int stage_image(int src, const char *path, size_t idx, int jobdir, const char *jobdir_path,
		       char *out, char *err)
{
	char key[128], obj[160], lock[160], tmp[200], link[32];
	struct stat st, st2, ost;
	int objdir = -1, lfd = -1, efd = -1, tfd = -1, rc = -1;
	uint64_t h;
	double t0;

	if (fstat(src, &st) < 0) {
		snprintf(err, SQV_ERRLEN, "%s: %s", path, strerror(errno));
		return -1;
	}
	if ((uint64_t)st.st_size > site.stage_max_size) {
		logmsg(LOG_NOTICE, "%s (%lld bytes) is larger than stage_max_size; used in place",
		       path, (long long)st.st_size);
		return 0;
	}
	h = hash64(path, strlen(path), 0x5354414745ULL);
	snprintf(key, sizeof(key), "%016llx-%lld-%lld.%09ld-%llu", (unsigned long long)h,
		 (long long)st.st_size, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
		 (unsigned long long)st.st_ino);
	snprintf(obj, sizeof(obj), "%s.sqfs", key);
	snprintf(lock, sizeof(lock), "%s.lock", key);
	snprintf(link, sizeof(link), "%zu.sqfs", idx);

	{
		char p[PATH_MAX];

		snprintf(p, sizeof(p), "%s/objects", site.stage_dir);
		if (mkdir_mode(site.stage_dir, 0755) < 0 || mkdir_mode(p, 0700) < 0) {
			logmsg(LOG_ERR, "%s: %s; staging disabled for this job", p, strerror(errno));
			return 0;
		}
		objdir = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
		if (objdir < 0)
			return 0;
	}
	lfd = openat(objdir, lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (lfd < 0 || flock(lfd, LOCK_EX) < 0) {
		logmsg(LOG_ERR, "%s: %s; used in place", lock, strerror(errno));
		rc = 0;
		goto out;
	}
	if (fstatat(objdir, obj, &ost, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(ost.st_mode) &&
	    ost.st_size == st.st_size) {
		int ofd = openat(objdir, obj, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		char e[SQV_ERRLEN];

		if (ofd >= 0 && sqv_check_image_fd(ofd, obj, e) == 0) {
			futimens(ofd, NULL); /* last use, for LRU */
			close(ofd);
			logmsg(LOG_INFO, "reused staged copy of %s", path);
			goto link;
		}
		if (ofd >= 0)
			close(ofd);
		unlinkat(objdir, obj, 0);
	}

	/* Reserve the space under .evict, then copy without it held. */
	efd = openat(objdir, ".evict", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (efd < 0 || flock(efd, LOCK_EX) < 0) {
		rc = 0;
		goto out;
	}
	if (site.stage_max_size == 0) {
		struct statvfs vfs;

		if (fstatvfs(objdir, &vfs) == 0)
			site.stage_max_size = (uint64_t)vfs.f_blocks * vfs.f_frsize / 2;
	}
	if (make_room(objdir, (uint64_t)st.st_size) < 0) {
		logmsg(LOG_NOTICE, "no room to stage %s (stage_max_size %llu, the rest in use); "
		       "used in place", path, (unsigned long long)site.stage_max_size);
		rc = 0;
		goto out;
	}
	snprintf(tmp, sizeof(tmp), ".tmp-%s-%d", key, (int)getpid());
	tfd = openat(objdir, tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0444);
	if (tfd < 0 || flock(tfd, LOCK_EX) < 0) {
		logmsg(LOG_ERR, "%s: %s; used in place", tmp, strerror(errno));
		rc = 0;
		goto out;
	}
	if (st.st_size > 0 && posix_fallocate(tfd, 0, st.st_size) != 0) {
		logmsg(LOG_NOTICE, "no space to stage %s; used in place", path);
		unlinkat(objdir, tmp, 0);
		rc = 0;
		goto out;
	}
	flock(efd, LOCK_UN);

	t0 = now_s();
	if (copy_and_verify(src, tfd, path, st.st_size, err) < 0) {
		unlinkat(objdir, tmp, 0);
		logmsg(LOG_ERR, "%s; used in place", err);
		rc = 0;
		goto out;
	}
	if (fstat(src, &st2) < 0 || st2.st_size != st.st_size ||
	    st2.st_mtim.tv_sec != st.st_mtim.tv_sec || st2.st_mtim.tv_nsec != st.st_mtim.tv_nsec) {
		unlinkat(objdir, tmp, 0);
		snprintf(err, SQV_ERRLEN, "%s: the image changed while it was being staged", path);
		goto out;
	}
	{
		char e[SQV_ERRLEN];

		if (sqv_check_image_fd(tfd, path, e) < 0) {
			unlinkat(objdir, tmp, 0);
			snprintf(err, SQV_ERRLEN, "staging %s", e);
			goto out;
		}
	}
	if (renameat(objdir, tmp, objdir, obj) < 0) {
		unlinkat(objdir, tmp, 0);
		logmsg(LOG_ERR, "rename %s: %s; used in place", tmp, strerror(errno));
		rc = 0;
		goto out;
	}
	logmsg(LOG_INFO, "staged %s (%lld bytes) in %.1f s", path, (long long)st.st_size,
	       now_s() - t0);
link:
	unlinkat(jobdir, link, 0);
	if (linkat(objdir, obj, jobdir, link, 0) < 0) {
		logmsg(LOG_ERR, "link %s: %s; used in place", obj, strerror(errno));
		rc = 0;
		goto out;
	}
	snprintf(out, PATH_MAX, "%s/%s", jobdir_path, link);
	rc = 1;
out:
	if (tfd >= 0)
		close(tfd);
	if (efd >= 0)
		close(efd);
	if (lfd >= 0)
		close(lfd); /* releases the key's lock */
	if (objdir >= 0)
		close(objdir);
	return rc;
}

/* Remove STAGE/jobs/JOBID and what is in it, without following anything. */
static void remove_job_links(void)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d;
	int fd;

	if (!site.stage_dir[0])
		return;
	snprintf(path, sizeof(path), "%s/jobs/%lu", site.stage_dir, jobid);
	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return;
	}
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			unlinkat(fd, de->d_name, 0);
	closedir(d);
	if (rmdir(path) < 0 && errno != ENOENT)
		logmsg(LOG_WARNING, "%s: %s", path, strerror(errno));
}

/* ----------------------------------------------------------------- mount */

static int lock_state(void)
{
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "%s/lock", site.state_dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 || flock(fd, LOCK_EX) < 0) {
		logmsg(LOG_ERR, "%s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* Tail of the daemon's log: its own error line, for the job's output. */
static void log_tail(const char *logpath, char *out, size_t len)
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
	{
		char *last = strrchr(buf, '\n');

		snprintf(out, len, "%s", last ? last + 1 : buf);
	}
}

static int mount_start(struct mountrec *r, const char *key, char *const images[], size_t n,
		       char *err)
{
	char logpath[PATH_MAX], tail[1024];
	char *argv[SQV_MAX_IMAGES + 8];
	size_t a = 0;
	double deadline;
	pid_t pid;
	int logfd, st;

	snprintf(logpath, sizeof(logpath), "%s/log/%s.log", site.state_dir, key);
	unlink(logpath);
	logfd = open(logpath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (logfd < 0) {
		snprintf(err, SQV_ERRLEN, "internal error: %s: %s", logpath, strerror(errno));
		return -1;
	}
	argv[a++] = site.daemon;
	argv[a++] = "-f";
	if (site.daemon_options[0]) {
		argv[a++] = "-o";
		argv[a++] = site.daemon_options;
	}
	for (size_t i = 0; i < n; i++)
		argv[a++] = images[i];
	argv[a++] = r->mountpoint;
	argv[a] = NULL;

	pid = fork();
	if (pid < 0) {
		close(logfd);
		snprintf(err, SQV_ERRLEN, "fork: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		char home[PATH_MAX + 8], user[300];
		char *envp[] = { "PATH=/usr/local/bin:/usr/bin:/bin", home, user, NULL };
		struct passwd *pw = getpwuid(job_uid);
		int null = open("/dev/null", O_RDONLY);

		snprintf(home, sizeof(home), "HOME=%s", pw ? pw->pw_dir : "/");
		snprintf(user, sizeof(user), "USER=%s", job_user);
		setsid(); /* outside the Prolog's process group, which Slurm kills */
		if (null >= 0)
			dup2(null, 0);
		dup2(logfd, 1);
		dup2(logfd, 2);
		for (int s = 1; s < NSIG; s++)
			signal(s, SIG_DFL);
		{
			sigset_t none;

			sigemptyset(&none);
			sigprocmask(SIG_SETMASK, &none, NULL);
		}
		if (become_user() < 0) {
			dprintf(2, "sqvenvfs-slurm: cannot become user %s: %s\n", job_user,
				strerror(errno));
			_exit(127);
		}
		if (chdir("/") < 0)
			_exit(127);
		execve(site.daemon, argv, envp);
		dprintf(2, "sqvenvfs-slurm: %s: %s\n", site.daemon, strerror(errno));
		_exit(127);
	}
	close(logfd);
	deadline = now_s() + site.mount_timeout;
	for (;;) {
		pid_t w = waitpid(pid, &st, WNOHANG);

		if (w == pid) {
			log_tail(logpath, tail, sizeof(tail));
			snprintf(err, SQV_ERRLEN, "mounting at %s failed: %s", r->mountpoint,
				 tail[0] ? tail : "the daemon exited");
			return -1;
		}
		if (fuse_mounted_at(r->mountpoint))
			break;
		if (now_s() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			user_unmount(r->mountpoint);
			snprintf(err, SQV_ERRLEN, "mounting at %s timed out after %u s",
				 r->mountpoint, site.mount_timeout);
			return -1;
		}
		sleep_ms(20);
	}
	r->pid = pid;
	r->start = proc_start(pid);
	logmsg(LOG_INFO, "mounted %s for %s (daemon pid %d)", r->mountpoint, job_user, (int)pid);
	return 0;
}

static int write_job_record(const char *key)
{
	char path[PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "%s/jobs/%lu", site.state_dir, jobid);
	f = fopen(path, "we");
	if (!f)
		return -1;
	fprintf(f, "mount %s\n", key);
	return fclose(f);
}

static int prolog(void)
{
	char err[SQV_ERRLEN], resolved[PATH_MAX], key[17], path[PATH_MAX];
	char *images[SQV_MAX_IMAGES] = { 0 }, stack[8192];
	int fds[SQV_MAX_IMAGES], lockfd = -1, jobdir = -1;
	const char *spec = getenv("SPANK_" SQV_ENV_NAME);
	struct sqv_req req;
	struct mountrec r;
	size_t sl = 0;

	if (!spec || !*spec)
		return 0;
	if (sqv_req_parse(spec, NULL, &req, err) < 0) {
		job_fail("%s", err);
		return 0;
	}
	for (size_t i = 0; i < req.n_images; i++)
		fds[i] = -1;
	if (user_checks(&req, fds, resolved, err) < 0) {
		job_fail("%s", err);
		goto out;
	}

	/* What makes two requests the same stack: the images' paths, sizes,
	 * mtimes and inodes, in order. */
	stack[0] = '\0';
	for (size_t i = 0; i < req.n_images; i++) {
		struct stat st;

		if (fstat(fds[i], &st) < 0) {
			job_fail("%s: %s", req.images[i], strerror(errno));
			goto out;
		}
		sl += (size_t)snprintf(stack + sl, sizeof(stack) - sl, "%s%s|%lld|%lld.%09ld|%llu",
				       i ? "," : "", req.images[i], (long long)st.st_size,
				       (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
				       (unsigned long long)st.st_ino);
		if (sl >= sizeof(stack)) {
			job_fail("--sqvenv: request too long");
			goto out;
		}
	}

	/* Images: staged copies, or the originals. */
	if (site.stage_dir[0]) {
		char jp[PATH_MAX];

		snprintf(path, sizeof(path), "%s/jobs", site.stage_dir);
		snprintf(jp, sizeof(jp), "%s/%lu", path, jobid);
		remove_job_links();
		if (mkdir_mode(site.stage_dir, 0755) < 0 || mkdir_mode(path, 0755) < 0 ||
		    mkdir(jp, 0700) < 0 ||
		    (jobdir = open(jp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
			logmsg(LOG_ERR, "%s: %s; staging disabled for this job", jp, strerror(errno));
		} else {
			for (size_t i = 0; i < req.n_images; i++) {
				char out[PATH_MAX];
				int s = stage_image(fds[i], req.images[i], i, jobdir, jp, out, err);

				if (s < 0) {
					job_fail("%s", err);
					goto out;
				}
				if (s > 0)
					images[i] = strdup(out);
			}
			/* From now on the directory is the user's, read-only. */
			if (fchown(jobdir, job_uid, job_gid) < 0 || fchmod(jobdir, 0500) < 0)
				logmsg(LOG_ERR, "%s: %s", jp, strerror(errno));
		}
	}
	for (size_t i = 0; i < req.n_images; i++)
		if (!images[i])
			images[i] = strdup(req.images[i]);

	lockfd = lock_state();
	if (lockfd < 0) {
		job_fail("internal error: cannot lock %s", site.state_dir);
		goto out;
	}
	mount_key(job_uid, resolved, key);
	if (rec_load(key, &r) == 0) {
		int alive = daemon_alive(&r) && fuse_mounted_at(r.mountpoint);

		if (alive && strcmp(r.stack, stack) == 0) {
			if (r.n_jobs < 256)
				r.jobs[r.n_jobs++] = jobid;
			if (rec_save(key, &r) < 0 || write_job_record(key) < 0) {
				job_fail("internal error: cannot record the mount: %s", strerror(errno));
				goto out;
			}
			logmsg(LOG_INFO, "shares the mount at %s (daemon pid %d)", resolved,
			       (int)r.pid);
			goto out;
		}
		if (alive) {
			job_fail("%s is already in use by your job %lu with a different image stack; "
				 "use another mount point or the same images", resolved,
				 r.n_jobs ? r.jobs[0] : 0UL);
			goto out;
		}
		logmsg(LOG_NOTICE, "clearing a stale mount at %s", r.mountpoint);
		mount_stop(&r);
		rec_remove(key);
	}
	if (any_mount_at(resolved)) {
		job_fail("%s is already a mount point; unmount it or choose another directory",
			 resolved);
		goto out;
	}
	memset(&r, 0, sizeof(r));
	r.uid = job_uid;
	r.gid = job_gid;
	snprintf(r.user, sizeof(r.user), "%s", job_user);
	snprintf(r.mountpoint, sizeof(r.mountpoint), "%s", resolved);
	snprintf(r.stack, sizeof(r.stack), "%s", stack);
	if (mount_start(&r, key, images, req.n_images, err) < 0) {
		job_fail("%s", err);
		goto out;
	}
	r.jobs[r.n_jobs++] = jobid;
	if (rec_save(key, &r) < 0 || write_job_record(key) < 0) {
		job_fail("internal error: cannot record the mount: %s", strerror(errno));
		mount_stop(&r);
		goto out;
	}
out:
	if (lockfd >= 0)
		close(lockfd);
	if (jobdir >= 0)
		close(jobdir);
	for (size_t i = 0; i < req.n_images; i++) {
		if (fds[i] >= 0)
			close(fds[i]);
		free(images[i]);
	}
	sqv_req_free(&req);
	return 0;
}

static int epilog(void)
{
	char path[PATH_MAX], line[128], key[17] = "";
	struct mountrec r;
	int lockfd;
	FILE *f;

	snprintf(path, sizeof(path), "%s/jobs/%lu.err", site.state_dir, jobid);
	unlink(path);
	snprintf(path, sizeof(path), "%s/jobs/%lu", site.state_dir, jobid);
	f = fopen(path, "re");
	if (f) {
		if (fgets(line, sizeof(line), f) && sscanf(line, "mount %16s", key) != 1)
			key[0] = '\0';
		fclose(f);
	}
	if (key[0]) {
		lockfd = lock_state();
		if (rec_load(key, &r) == 0) {
			size_t k = 0;

			for (size_t i = 0; i < r.n_jobs; i++)
				if (r.jobs[i] != jobid)
					r.jobs[k++] = r.jobs[i];
			r.n_jobs = k;
			if (k == 0) {
				mount_stop(&r);
				rec_remove(key);
			} else {
				rec_save(key, &r);
				logmsg(LOG_INFO, "leaves the mount at %s to %zu other job(s)",
				       r.mountpoint, k);
			}
		}
		if (lockfd >= 0)
			close(lockfd);
	}
	unlink(path);
	remove_job_links();
	return 0;
}

static int ensure_state_dirs(void)
{
	static const struct { const char *sub; mode_t mode; } dirs[] = {
		{ "", 0755 }, { "/jobs", 0711 }, { "/mounts", 0700 }, { "/log", 0700 },
	};

	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		char path[PATH_MAX];

		snprintf(path, sizeof(path), "%s%s", site.state_dir, dirs[i].sub);
		if (mkdir_mode(path, dirs[i].mode) < 0) {
			logmsg(LOG_ERR, "%s: %s", path, strerror(errno));
			return -1;
		}
	}
	return 0;
}

static int usage(void)
{
	fprintf(stderr, "usage: sqvenvfs-slurm prolog|epilog\n"
		"Slurm Prolog/Epilog for sqvenvfs; reads SLURM_JOB_ID, SLURM_JOB_UID,\n"
		"SLURM_JOB_GID, SLURM_JOB_USER and SPANK_SQVENV, and the site settings from\n"
		"$SQVENVFS_SLURM_CONF or %s.\n", SQV_DEFAULT_SITE_CONF);
	return 2;
}

int main(int argc, char **argv)
{
	const char *base = strrchr(argv[0], '/'), *mode, *v;
	char err[SQV_ERRLEN];
	struct passwd *pw;
	int site_ok;

	base = base ? base + 1 : argv[0];
	if (argc > 1)
		mode = argv[1];
	else if (strstr(base, "epilog"))
		mode = "epilog";
	else if (strstr(base, "prolog"))
		mode = "prolog";
	else
		return usage();
	if (strcmp(mode, "prolog") && strcmp(mode, "epilog"))
		return usage();

	umask(022);
	openlog("sqvenvfs-slurm", LOG_PID, LOG_DAEMON);
	v = getenv("SLURM_JOB_ID");
	jobid = v ? strtoul(v, NULL, 10) : 0;
	if (!jobid) {
		fprintf(stderr, "sqvenvfs-slurm: SLURM_JOB_ID is not set; run me as Slurm's %s\n",
			strcmp(mode, "prolog") == 0 ? "Prolog" : "Epilog");
		return 2;
	}
	site_ok = sqv_site_load(&site, getenv("SQVENVFS_SLURM_CONF"), err) == 0;
	/* Nothing to do for jobs that did not ask, whatever the site file says. */
	if (strcmp(mode, "prolog") == 0 && !getenv("SPANK_" SQV_ENV_NAME))
		return 0;
	if (geteuid() != 0) {
		fprintf(stderr, "sqvenvfs-slurm: must run as root (Slurm's Prolog/Epilog)\n");
		return 0;
	}
	if (ensure_state_dirs() < 0)
		return 0;

	v = getenv("SLURM_JOB_UID");
	job_uid = v ? (uid_t)strtoul(v, NULL, 10) : 0;
	v = getenv("SLURM_JOB_GID");
	pw = getpwuid(job_uid);
	job_gid = v ? (gid_t)strtoul(v, NULL, 10) : pw ? pw->pw_gid : 0;
	snprintf(job_user, sizeof(job_user), "%s", pw ? pw->pw_name : "");

	if (strcmp(mode, "epilog") == 0)
		return epilog();

	if (!site_ok) {
		logmsg(LOG_ERR, "site configuration: %s", err);
		job_fail("the node's sqvenvfs configuration is broken (%s); tell your "
			 "administrator", err);
		return 0;
	}
	if (!getenv("SLURM_JOB_UID") || !pw || job_uid == 0) {
		job_fail("cannot tell the job's user (SLURM_JOB_UID %s)%s",
			 getenv("SLURM_JOB_UID") ? getenv("SLURM_JOB_UID") : "unset",
			 job_uid == 0 && pw ? "; root jobs cannot use --sqvenv" : "");
		return 0;
	}
	return prolog();
}
