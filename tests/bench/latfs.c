/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * sqvbench-latfs: a stand-in for a parallel file system in the benchmark.
 *
 * A read-only passthrough of a backing directory, written against the libfuse3
 * low-level API, that makes every metadata request (lookup, getattr, readlink,
 * open, opendir, readdir) wait meta_delay_us and every read wait read_delay_us
 * plus its size divided by read_bw_mbps. Entry and attribute timeouts are 0
 * and files are opened with direct_io, so the kernel caches nothing and every
 * path walk, stat and read reaches this daemon: the behaviour of a Lustre
 * client in front of a loaded metadata server, which is what sqvenvfs is meant
 * to hide. Requests are served by a pool of threads, so independent clients
 * wait in parallel as they would on a server with many service threads.
 *
 * It counts the reads it serves (requests and bytes): getxattr of
 * "user.latfs.stats" on its root gives "reads N\nread_bytes N\n", so a test or
 * the benchmark can see how many round trips a client made.
 *
 * With -o server=PATH, several mounts (the "nodes" of tests/bench/bench_scale.py)
 * share one server, kept in a small file in shared memory that the first mount
 * creates: at most server_conc requests are in service at once (a process-shared
 * semaphore; the others queue), and reads share an aggregate bandwidth of
 * server_bw_mbps through a virtual clock (each read reserves size / bandwidth
 * of the server's time after the reads before it and finishes at the end of
 * its reservation). A request holds its slot for its own delay and its
 * transfer, as a service thread would be busy for the whole request. The server
 * counts what it served; getxattr of "user.latfs.server" on the root of any of
 * its mounts gives the counts of all of them. A mount killed while it holds a
 * slot leaks it: one server file serves one run.
 *
 * A fault can be injected on one file for tests of error paths: every read of
 * it at or past fault_offset fails with EIO (fault=eio) or returns half of
 * what was asked (fault=short).
 *
 * It is a benchmark tool, not part of sqvenvfs: it trusts its backing
 * directory and serves one user (root).
 */
#define FUSE_USE_VERSION 312

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define PROG "sqvbench-latfs"

enum fault_kind { FAULT_NONE, FAULT_EIO, FAULT_SHORT };

/* The shared server (-o server=PATH), mapped by every mount of one run. The
 * creator fills it and sets magic last; the others wait for magic. Every
 * field after magic is either set before magic and then read-only, or
 * atomic, so no lock is needed. */
#define SERVER_MAGIC 0x3156525351564153ull /* "SAVQSRV1" */
struct lat_server {
	_Atomic uint64_t magic;
	uint64_t bw_bps;		/* aggregate read bandwidth, bytes/s; 0: none */
	uint32_t conc;			/* requests in service at once */
	sem_t slots;			/* process-shared, conc slots */
	_Atomic uint64_t next_free_ns;	/* virtual clock of the bandwidth, CLOCK_MONOTONIC */
	_Atomic uint64_t meta_requests, read_requests, read_bytes;
	_Atomic uint64_t queue_ns;	/* time requests waited for a slot or the bandwidth */
};

/* One inode we handed to the kernel. The fuse_ino_t is the pointer. */
struct lat_inode {
	struct lat_inode *next;	/* hash chain, protected by fs.lock */
	int fd;			/* O_PATH descriptor in the backing tree */
	ino_t ino;
	dev_t dev;
	uint64_t nlookup;	/* protected by fs.lock */
	bool fault;		/* reads of this file are faulted */
};

struct lat_dir {
	DIR *dp;
	struct dirent *entry;
	off_t offset;
};

#define HASH_SIZE 65536u

/* Options and state; only lock-protected fields change after mount. */
static struct {
	char *source;
	unsigned long meta_delay_us;
	unsigned long read_delay_us;
	unsigned long read_bw_mbps;	/* 0: no bandwidth cost */
	unsigned int threads;
	double timeout;			/* entry and attribute timeout, s */
	int keep_data_cache;		/* let the kernel cache file data */
	char *fault_file;		/* relative to source */
	char *fault;			/* "eio" or "short" */
	unsigned long long fault_offset;
	char *server_path;
	unsigned long server_bw_mbps;	/* 0: no aggregate bandwidth limit */
	unsigned int server_conc;

	struct lat_server *server;	/* mapped shared server, or NULL */
	enum fault_kind fault_kind;
	ino_t fault_ino;
	dev_t fault_dev;
	struct lat_inode root;
	pthread_mutex_t lock;
	struct lat_inode *hash[HASH_SIZE];	/* protected by lock */
} fs = {
	.meta_delay_us = 1000,
	.read_delay_us = 1000,
	.read_bw_mbps = 1000,
	.threads = 64,
	.server_conc = 16,
	.lock = PTHREAD_MUTEX_INITIALIZER,
};

#define LAT_OPT(t, p) { t, offsetof(__typeof__(fs), p), 1 }
static const struct fuse_opt lat_opts[] = {
	LAT_OPT("meta_delay_us=%lu", meta_delay_us),
	LAT_OPT("read_delay_us=%lu", read_delay_us),
	LAT_OPT("read_bw_mbps=%lu", read_bw_mbps),
	LAT_OPT("threads=%u", threads),
	LAT_OPT("timeout=%lf", timeout),
	LAT_OPT("keep_data_cache", keep_data_cache),
	LAT_OPT("fault_file=%s", fault_file),
	LAT_OPT("fault=%s", fault),
	LAT_OPT("fault_offset=%llu", fault_offset),
	LAT_OPT("server=%s", server_path),
	LAT_OPT("server_bw_mbps=%lu", server_bw_mbps),
	LAT_OPT("server_conc=%u", server_conc),
	FUSE_OPT_END
};

/* Reads served since mount, for user.latfs.stats. */
static atomic_ullong stat_reads, stat_read_bytes;

static void lat_sleep(unsigned long us)
{
	struct timespec ts = { .tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000 };

	if (us == 0)
		return;
	while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR)
		;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_until_ns(uint64_t t)
{
	struct timespec ts = { .tv_sec = (time_t)(t / 1000000000u),
			       .tv_nsec = (long)(t % 1000000000u) };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* Take a service slot of the shared server, counting the wait. */
static void server_enter(void)
{
	uint64_t t0 = now_ns();

	while (sem_wait(&fs.server->slots) != 0 && errno == EINTR)
		;
	atomic_fetch_add(&fs.server->queue_ns, now_ns() - t0);
}

/* Reserve bytes of the server's aggregate bandwidth after every earlier
 * reservation and wait for the end of this one. */
static void server_transfer(size_t bytes)
{
	uint64_t cost, now, old, start;

	if (!fs.server->bw_bps)
		return;
	cost = (uint64_t)((unsigned __int128)bytes * 1000000000u / fs.server->bw_bps);
	now = now_ns();
	old = atomic_load(&fs.server->next_free_ns);
	do
		start = old > now ? old : now;
	while (!atomic_compare_exchange_weak(&fs.server->next_free_ns, &old, start + cost));
	atomic_fetch_add(&fs.server->queue_ns, start - now);
	sleep_until_ns(start + cost);
}

static void server_leave(void)
{
	sem_post(&fs.server->slots);
}

static void meta_delay(void)
{
	if (!fs.server) {
		lat_sleep(fs.meta_delay_us);
		return;
	}
	server_enter();
	atomic_fetch_add(&fs.server->meta_requests, 1);
	lat_sleep(fs.meta_delay_us);
	server_leave();
}

static void read_delay(size_t bytes)
{
	/* bytes / (MB/s) with MB = 10^6 is a number of microseconds. */
	unsigned long us = fs.read_delay_us;

	if (fs.read_bw_mbps)
		us += bytes / fs.read_bw_mbps;
	if (!fs.server) {
		lat_sleep(us);
		return;
	}
	server_enter();
	atomic_fetch_add(&fs.server->read_requests, 1);
	atomic_fetch_add(&fs.server->read_bytes, bytes);
	lat_sleep(us);
	server_transfer(bytes);
	server_leave();
}

static struct lat_inode *lat_inode(fuse_ino_t ino)
{
	if (ino == FUSE_ROOT_ID)
		return &fs.root;
	return (struct lat_inode *)(uintptr_t)ino;
}

static unsigned int hash_of(ino_t ino, dev_t dev)
{
	uint64_t h = (uint64_t)ino * 0x9e3779b97f4a7c15ull ^ (uint64_t)dev;

	return (unsigned int)(h >> 32) % HASH_SIZE;
}

static void lat_reply_err(fuse_req_t req, int err)
{
	fuse_reply_err(req, err);
}

static void lat_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e = { 0 };
	struct lat_inode *p = lat_inode(parent), *in;
	unsigned int h;
	int fd;

	meta_delay();
	fd = openat(p->fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		lat_reply_err(req, errno);
		return;
	}
	if (fstatat(fd, "", &e.attr, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
		int err = errno;

		close(fd);
		lat_reply_err(req, err);
		return;
	}
	h = hash_of(e.attr.st_ino, e.attr.st_dev);
	pthread_mutex_lock(&fs.lock);
	for (in = fs.hash[h]; in; in = in->next)
		if (in->ino == e.attr.st_ino && in->dev == e.attr.st_dev)
			break;
	if (in) {
		in->nlookup++;
		close(fd);
	} else {
		in = calloc(1, sizeof(*in));
		if (!in) {
			pthread_mutex_unlock(&fs.lock);
			close(fd);
			lat_reply_err(req, ENOMEM);
			return;
		}
		in->fd = fd;
		in->ino = e.attr.st_ino;
		in->dev = e.attr.st_dev;
		in->nlookup = 1;
		in->fault = fs.fault_kind != FAULT_NONE && in->ino == fs.fault_ino &&
			    in->dev == fs.fault_dev;
		in->next = fs.hash[h];
		fs.hash[h] = in;
	}
	pthread_mutex_unlock(&fs.lock);
	e.ino = (uintptr_t)in;
	e.entry_timeout = fs.timeout;
	e.attr_timeout = fs.timeout;
	fuse_reply_entry(req, &e);
}

static void forget_one(fuse_ino_t ino, uint64_t n)
{
	struct lat_inode *in = lat_inode(ino), **pp;

	if (in == &fs.root)
		return;
	pthread_mutex_lock(&fs.lock);
	in->nlookup -= n < in->nlookup ? n : in->nlookup;
	if (in->nlookup == 0) {
		for (pp = &fs.hash[hash_of(in->ino, in->dev)]; *pp; pp = &(*pp)->next) {
			if (*pp == in) {
				*pp = in->next;
				break;
			}
		}
		close(in->fd);
		free(in);
	}
	pthread_mutex_unlock(&fs.lock);
}

static void lat_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	forget_one(ino, nlookup);
	fuse_reply_none(req);
}

static void lat_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		forget_one(forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

static void lat_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;

	(void)fi;
	meta_delay();
	if (fstatat(lat_inode(ino)->fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
		lat_reply_err(req, errno);
		return;
	}
	fuse_reply_attr(req, &st, fs.timeout);
}

static void lat_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char buf[PATH_MAX + 1];
	ssize_t n;

	meta_delay();
	n = readlinkat(lat_inode(ino)->fd, "", buf, sizeof(buf));
	if (n < 0) {
		lat_reply_err(req, errno);
		return;
	}
	if ((size_t)n >= sizeof(buf)) {
		lat_reply_err(req, ENAMETOOLONG);
		return;
	}
	buf[n] = '\0';
	fuse_reply_readlink(req, buf);
}

static int reopen(struct lat_inode *in, int flags)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/fd/%d", in->fd);
	return open(path, flags | O_CLOEXEC);
}

static void lat_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	int fd;

	meta_delay();
	if ((fi->flags & O_ACCMODE) != O_RDONLY) {
		lat_reply_err(req, EROFS);
		return;
	}
	fd = reopen(lat_inode(ino), O_RDONLY);
	if (fd < 0) {
		lat_reply_err(req, errno);
		return;
	}
	fi->fh = (uint64_t)fd;
	fi->direct_io = !fs.keep_data_cache;
	fi->keep_cache = fs.keep_data_cache;
	if (fuse_reply_open(req, fi) != 0)
		close(fd);
}

static void lat_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);

	read_delay(size);
	atomic_fetch_add(&stat_reads, 1);
	atomic_fetch_add(&stat_read_bytes, size);
	if (lat_inode(ino)->fault && (unsigned long long)off + size > fs.fault_offset) {
		if (fs.fault_kind == FAULT_EIO) {
			lat_reply_err(req, EIO);
			return;
		}
		size = size / 2;
		buf.buf[0].size = size;
	}
	buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	buf.buf[0].fd = (int)fi->fh;
	buf.buf[0].pos = off;
	fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

static void lat_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	close((int)fi->fh);
	lat_reply_err(req, 0);
}

static void lat_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct lat_dir *d;
	int fd, err;

	meta_delay();
	d = calloc(1, sizeof(*d));
	if (!d) {
		lat_reply_err(req, ENOMEM);
		return;
	}
	fd = openat(lat_inode(ino)->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || !(d->dp = fdopendir(fd))) {
		err = errno;
		if (fd >= 0)
			close(fd);
		free(d);
		lat_reply_err(req, err);
		return;
	}
	fi->fh = (uintptr_t)d;
	if (fuse_reply_open(req, fi) != 0) {
		closedir(d->dp);
		free(d);
	}
}

static void lat_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset,
			struct fuse_file_info *fi)
{
	struct lat_dir *d = (struct lat_dir *)(uintptr_t)fi->fh;
	size_t rem = size;
	char *buf, *p;
	int err = 0;

	(void)ino;
	meta_delay();
	buf = calloc(1, size);
	if (!buf) {
		lat_reply_err(req, ENOMEM);
		return;
	}
	if (offset != d->offset) {
		seekdir(d->dp, offset);
		d->entry = NULL;
		d->offset = offset;
	}
	p = buf;
	for (;;) {
		struct stat st = { 0 };
		size_t len;

		if (!d->entry) {
			errno = 0;
			d->entry = readdir(d->dp);
			if (!d->entry) {
				err = errno;
				break;
			}
		}
		st.st_ino = d->entry->d_ino;
		st.st_mode = (mode_t)d->entry->d_type << 12;
		len = fuse_add_direntry(req, p, rem, d->entry->d_name, &st, d->entry->d_off);
		if (len > rem)
			break;
		p += len;
		rem -= len;
		d->offset = d->entry->d_off;
		d->entry = NULL;
	}
	/* An error after some entries is reported on the next call. */
	if (err && rem == size)
		lat_reply_err(req, err);
	else
		fuse_reply_buf(req, buf, size - rem);
	free(buf);
}

static void lat_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct lat_dir *d = (struct lat_dir *)(uintptr_t)fi->fh;

	(void)ino;
	closedir(d->dp);
	free(d);
	lat_reply_err(req, 0);
}

static void lat_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;

	if (fstatvfs(lat_inode(ino)->fd, &sv) < 0) {
		int fd = reopen(lat_inode(ino), O_RDONLY);

		if (fd < 0 || fstatvfs(fd, &sv) < 0) {
			lat_reply_err(req, errno);
			if (fd >= 0)
				close(fd);
			return;
		}
		close(fd);
	}
	fuse_reply_statfs(req, &sv);
}

static void lat_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	char buf[256];
	int len;

	if (ino == FUSE_ROOT_ID && strcmp(name, "user.latfs.stats") == 0) {
		len = snprintf(buf, sizeof(buf), "reads %llu\nread_bytes %llu\n",
			       (unsigned long long)atomic_load(&stat_reads),
			       (unsigned long long)atomic_load(&stat_read_bytes));
	} else if (ino == FUSE_ROOT_ID && fs.server && strcmp(name, "user.latfs.server") == 0) {
		len = snprintf(buf, sizeof(buf),
			       "meta_requests %llu\nread_requests %llu\nread_bytes %llu\n"
			       "queue_us %llu\nconc %u\nbw_mbps %llu\n",
			       (unsigned long long)atomic_load(&fs.server->meta_requests),
			       (unsigned long long)atomic_load(&fs.server->read_requests),
			       (unsigned long long)atomic_load(&fs.server->read_bytes),
			       (unsigned long long)atomic_load(&fs.server->queue_ns) / 1000,
			       fs.server->conc,
			       (unsigned long long)fs.server->bw_bps / 1000000);
	} else {
		lat_reply_err(req, ENODATA);
		return;
	}
	if (size == 0)
		fuse_reply_xattr(req, (size_t)len);
	else if ((size_t)len > size)
		lat_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, buf, (size_t)len);
}

static void lat_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	/* A plain readdir, then one lookup per name, as on Lustre without statahead. */
	conn->want &= ~(FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO);
}

static const struct fuse_lowlevel_ops lat_ops = {
	.init = lat_init,
	.lookup = lat_lookup,
	.forget = lat_forget,
	.forget_multi = lat_forget_multi,
	.getattr = lat_getattr,
	.readlink = lat_readlink,
	.open = lat_open,
	.read = lat_read,
	.release = lat_release,
	.opendir = lat_opendir,
	.readdir = lat_readdir,
	.releasedir = lat_releasedir,
	.statfs = lat_statfs,
	.getxattr = lat_getxattr,
};

/* Create the shared server at path, or attach to the one another mount made.
 * Returns 0 or -errno, with a message printed. */
static int server_attach(const char *path)
{
	struct lat_server *sv;
	uint64_t deadline;
	struct stat st;
	bool made = true;
	int fd;

	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 && errno == EEXIST) {
		made = false;
		fd = open(path, O_RDWR | O_CLOEXEC);
	}
	if (fd < 0 || (made && ftruncate(fd, sizeof(*sv)) < 0)) {
		int err = errno;

		fprintf(stderr, PROG ": server=%s: %s\n", path, strerror(err));
		if (fd >= 0)
			close(fd);
		return -err;
	}
	/* Another mount is making it: wait until it has its size. */
	deadline = now_ns() + 10000000000ull;
	while (fstat(fd, &st) == 0 && (size_t)st.st_size < sizeof(*sv) && now_ns() < deadline)
		lat_sleep(1000);
	if ((size_t)st.st_size != sizeof(*sv)) {
		fprintf(stderr, PROG ": server=%s: not a server file of this build\n", path);
		close(fd);
		return -EINVAL;
	}
	sv = mmap(NULL, sizeof(*sv), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (sv == MAP_FAILED) {
		fprintf(stderr, PROG ": server=%s: mmap: %s\n", path, strerror(errno));
		return -errno;
	}
	if (made) {
		sv->bw_bps = (uint64_t)fs.server_bw_mbps * 1000000u;
		sv->conc = fs.server_conc;
		if (sem_init(&sv->slots, 1, fs.server_conc) != 0) {
			fprintf(stderr, PROG ": server=%s: sem_init: %s\n", path, strerror(errno));
			munmap(sv, sizeof(*sv));
			return -EINVAL;
		}
		atomic_store(&sv->magic, SERVER_MAGIC);
	}
	while (atomic_load(&sv->magic) != SERVER_MAGIC && now_ns() < deadline)
		lat_sleep(1000);
	if (atomic_load(&sv->magic) != SERVER_MAGIC) {
		fprintf(stderr, PROG ": server=%s: not a server file of this build\n", path);
		munmap(sv, sizeof(*sv));
		return -EINVAL;
	}
	if (sv->conc != fs.server_conc || sv->bw_bps != (uint64_t)fs.server_bw_mbps * 1000000u) {
		fprintf(stderr, PROG ": server=%s: made with server_conc=%u,server_bw_mbps=%llu, "
			"not these options\n", path, sv->conc,
			(unsigned long long)(sv->bw_bps / 1000000u));
		munmap(sv, sizeof(*sv));
		return -EINVAL;
	}
	fs.server = sv;
	return 0;
}

static int opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	(void)data;
	(void)outargs;
	if (key == FUSE_OPT_KEY_NONOPT && !fs.source) {
		fs.source = strdup(arg);
		return 0;
	}
	return 1;
}

static void usage(void)
{
	printf("usage: " PROG " [options] BACKING_DIR MOUNTPOINT\n\n"
	       "A read-only FUSE passthrough of BACKING_DIR that delays every\n"
	       "metadata request and every read and lets the kernel cache nothing.\n\n"
	       "    -o meta_delay_us=N     delay of lookup, getattr, readlink, open,\n"
	       "                           opendir and readdir (default 1000)\n"
	       "    -o read_delay_us=N     fixed delay of a read (default 1000)\n"
	       "    -o read_bw_mbps=N      added read cost, 10^6 bytes/s (default 1000;\n"
	       "                           0: none)\n"
	       "    -o threads=N           service threads (default 64)\n"
	       "    -o timeout=S           entry/attribute timeout (default 0)\n"
	       "    -o keep_data_cache     let the kernel cache file data\n"
	       "    -o fault_file=PATH     inject a fault on reads of PATH (relative\n"
	       "                           to BACKING_DIR)\n"
	       "    -o fault=eio|short     the fault: EIO, or half of the bytes asked\n"
	       "    -o fault_offset=N      only reads that reach past byte N fail\n"
	       "    -o server=PATH         share one server with every mount given the\n"
	       "                           same PATH (a file, made by the first)\n"
	       "    -o server_bw_mbps=N    its aggregate read bandwidth, 10^6 bytes/s\n"
	       "                           (default 0: none)\n"
	       "    -o server_conc=N       its requests in service at once (default 16)\n"
	       "    -f, -d                 foreground, debug\n");
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts opts = { 0 };
	struct fuse_loop_config *cfg = NULL;
	struct fuse_session *se = NULL;
	struct stat st;
	int ret = 1;

	if (fuse_opt_parse(&args, &fs, lat_opts, opt_proc) != 0)
		goto out;
	if (fuse_parse_cmdline(&args, &opts) != 0)
		goto out;
	if (opts.show_help) {
		usage();
		ret = 0;
		goto out;
	}
	if (opts.show_version) {
		printf(PROG " (FUSE library %s)\n", fuse_pkgversion());
		ret = 0;
		goto out;
	}
	if (!fs.source || !opts.mountpoint) {
		fprintf(stderr, PROG ": arguments: need BACKING_DIR and MOUNTPOINT (see --help)\n");
		goto out;
	}
	if (fs.threads == 0) {
		fprintf(stderr, PROG ": threads: must be at least 1\n");
		goto out;
	}
	fs.root.fd = open(fs.source, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fs.root.fd < 0 || fstat(fs.root.fd, &st) < 0) {
		fprintf(stderr, PROG ": %s: %s\n", fs.source, strerror(errno));
		goto out;
	}
	fs.root.ino = st.st_ino;
	fs.root.dev = st.st_dev;
	fs.root.nlookup = 2;
	if (fs.fault || fs.fault_file) {
		if (!fs.fault || !fs.fault_file) {
			fprintf(stderr, PROG ": fault: needs both fault= and fault_file=\n");
			goto out;
		}
		if (strcmp(fs.fault, "eio") == 0)
			fs.fault_kind = FAULT_EIO;
		else if (strcmp(fs.fault, "short") == 0)
			fs.fault_kind = FAULT_SHORT;
		else {
			fprintf(stderr, PROG ": fault=%s: must be eio or short\n", fs.fault);
			goto out;
		}
		if (fstatat(fs.root.fd, fs.fault_file, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			fprintf(stderr, PROG ": %s: %s\n", fs.fault_file, strerror(errno));
			goto out;
		}
		fs.fault_ino = st.st_ino;
		fs.fault_dev = st.st_dev;
	}
	if (fs.server_conc == 0) {
		fprintf(stderr, PROG ": server_conc: must be at least 1\n");
		goto out;
	}
	if (fs.server_path && server_attach(fs.server_path) < 0)
		goto out;
	/* Sleeps of a millisecond must not be rounded up by the default 50 us slack;
	 * threads created later inherit this. */
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);

	if (fuse_opt_add_arg(&args, "-oro,fsname=sqvbench-latfs,subtype=sqvbench-latfs") != 0)
		goto out;
	se = fuse_session_new(&args, &lat_ops, sizeof(lat_ops), NULL);
	if (!se)
		goto out;
	if (fuse_set_signal_handlers(se) != 0)
		goto out_session;
	if (fuse_session_mount(se, opts.mountpoint) != 0)
		goto out_signals;
	if (fuse_daemonize(opts.foreground) != 0)
		goto out_unmount;
	cfg = fuse_loop_cfg_create();
	if (!cfg)
		goto out_unmount;
	fuse_loop_cfg_set_max_threads(cfg, fs.threads);
	fuse_loop_cfg_set_idle_threads(cfg, fs.threads);
	ret = fuse_session_loop_mt(se, cfg) < 0 ? 1 : 0;
	fuse_loop_cfg_destroy(cfg);
out_unmount:
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
out:
	free(opts.mountpoint);
	fuse_opt_free_args(&args);
	return ret;
}
