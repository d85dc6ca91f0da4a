/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * ops: one op_* per FUSE request, each answered exactly once, at its end.
 *
 * The tree never changes, so every answer may be cached by the kernel for
 * good: entries (positive and negative), attributes, symlinks, pages and
 * directory listings. Where the kernel allows it, whole request types are
 * refused once with ENOSYS so that it stops sending them (open, opendir,
 * flush, access). What reaches us is answered from the in-memory index; only
 * reads touch the images, through the block cache.
 */
#include "fs.h"

#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "log.h"

/* "Forever" for the kernel: it clamps what it cannot represent. */
#define FOREVER 1e12

static const char *const op_names[OP_COUNT] = {
	[OP_INIT] = "init",
	[OP_LOOKUP] = "lookup",
	[OP_FORGET] = "forget",
	[OP_GETATTR] = "getattr",
	[OP_READLINK] = "readlink",
	[OP_OPEN] = "open",
	[OP_READ] = "read",
	[OP_RELEASE] = "release",
	[OP_OPENDIR] = "opendir",
	[OP_READDIR] = "readdir",
	[OP_READDIRPLUS] = "readdirplus",
	[OP_RELEASEDIR] = "releasedir",
	[OP_STATFS] = "statfs",
	[OP_GETXATTR] = "getxattr",
	[OP_LISTXATTR] = "listxattr",
	[OP_IOCTL] = "ioctl",
};

static struct sqv_fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static void count(struct sqv_fs *fs, enum sqv_op op)
{
	atomic_fetch_add_explicit(&fs->ops[op], 1, memory_order_relaxed);
}

/* FUSE node ids are index positions + 1: FUSE_ROOT_ID (1) is the root. */
static bool to_ino(struct sqv_fs *fs, fuse_ino_t node, sqv_ino_t *ino)
{
	if (node == 0 || node - 1 > UINT32_MAX ||
	    !sqv_index_valid(fs->index, (sqv_ino_t)(node - 1)))
		return false;
	*ino = (sqv_ino_t)(node - 1);
	return true;
}

static fuse_ino_t to_node(sqv_ino_t ino)
{
	return (fuse_ino_t)ino + 1;
}

/* Errors from lib/ as the reader should see them. */
static int to_errno(sqv_err_t err)
{
	return err == -SQV_ECORRUPT ? EIO : -err;
}

static void fill_entry(struct sqv_fs *fs, sqv_ino_t ino,
		       struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = to_node(ino);
	e->generation = 1;
	sqv_index_stat(fs->index, ino, &e->attr);
	e->attr_timeout = FOREVER;
	e->entry_timeout = FOREVER;
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct sqv_fs *fs = userdata;

	count(fs, OP_INIT);
	fs->zero_open = (conn->capable & FUSE_CAP_NO_OPEN_SUPPORT) &&
			(conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT);
	if (conn->capable & FUSE_CAP_CACHE_SYMLINKS)
		conn->want |= FUSE_CAP_CACHE_SYMLINKS;
	if (conn->capable & FUSE_CAP_READDIRPLUS) {
		/* Listing from memory costs nothing more with attributes, and
		 * it spares the lookups that follow a listing. */
		conn->want |= FUSE_CAP_READDIRPLUS;
		conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
	}
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	/* Locks stay local to the kernel: there is nothing to share. */
	conn->want &= ~(FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS);
	/* libfuse refuses INIT unless this repeats -o max_read=. */
	if (fs->max_read)
		conn->max_read = fs->max_read;
	if (fs->on_ready)
		fs->on_ready(fs);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct sqv_fs *fs = fs_of(req);
	struct fuse_entry_param e;
	sqv_ino_t dir, child;

	count(fs, OP_LOOKUP);
	if (!to_ino(fs, parent, &dir)) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	sqv_err_t err = sqv_index_lookup(fs->index, dir, name, strlen(name),
					 &child);
	if (err == -ENOENT) {
		/* A negative entry the kernel keeps: Python probes many
		 * names that are not there, and they never will be. */
		memset(&e, 0, sizeof(e));
		e.entry_timeout = FOREVER;
		fuse_reply_entry(req, &e);
		return;
	}
	if (err < 0) {
		fuse_reply_err(req, to_errno(err));
		return;
	}
	fill_entry(fs, child, &e);
	fuse_reply_entry(req, &e);
}

static void op_forget(fuse_req_t req, fuse_ino_t node, uint64_t nlookup)
{
	(void)node;
	(void)nlookup;
	/* Index entries live as long as the mount: nothing to release. */
	count(fs_of(req), OP_FORGET);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t n,
			    struct fuse_forget_data *forgets)
{
	(void)n;
	(void)forgets;
	count(fs_of(req), OP_FORGET);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t node,
		       struct fuse_file_info *fi)
{
	struct sqv_fs *fs = fs_of(req);
	struct stat st;
	sqv_ino_t ino;

	(void)fi;
	count(fs, OP_GETATTR);
	if (!to_ino(fs, node, &ino)) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	sqv_index_stat(fs->index, ino, &st);
	fuse_reply_attr(req, &st, FOREVER);
}

static void op_readlink(fuse_req_t req, fuse_ino_t node)
{
	struct sqv_fs *fs = fs_of(req);
	const char *target;
	sqv_ino_t ino;

	count(fs, OP_READLINK);
	if (!to_ino(fs, node, &ino)) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	sqv_err_t err = sqv_index_readlink(fs->index, ino, &target);
	if (err < 0)
		fuse_reply_err(req, to_errno(err));
	else
		fuse_reply_readlink(req, target);
}

static void op_open(fuse_req_t req, fuse_ino_t node, struct fuse_file_info *fi)
{
	struct sqv_fs *fs = fs_of(req);
	sqv_ino_t ino;

	count(fs, OP_OPEN);
	if (fs->zero_open) {
		/* Tells the kernel to stop sending open for good, and to keep
		 * page caches across opens. */
		fuse_reply_err(req, ENOSYS);
		return;
	}
	if (!to_ino(fs, node, &ino)) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	if ((fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EROFS);
		return;
	}
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

static void op_read(fuse_req_t req, fuse_ino_t node, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct sqv_fs *fs = fs_of(req);
	sqv_ino_t ino;

	(void)fi;
	count(fs, OP_READ);
	if (!to_ino(fs, node, &ino)) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	/* Reply straight from the cached blocks: no buffer, no copy here. */
	struct sqv_read_pieces p;
	sqv_err_t err = sqv_reader_pieces(fs->reader, ino, size, (uint64_t)off,
					  &p);
	if (err < 0) {
		fuse_reply_err(req, to_errno(err));
		return;
	}
	size_t bytes = p.bytes;
	atomic_fetch_add_explicit(&fs->read_bytes, bytes, memory_order_relaxed);
	if (off == 0)
		atomic_fetch_add_explicit(&fs->files_read, 1,
					  memory_order_relaxed);
	/* Noted before the reply: once replied, the reader's next read can
	 * reach another thread and be noted first, out of first-touch order. */
	if (fs->trace && sqv_trace_note(fs->trace, ino, (uint64_t)off,
					bytes) < 0 &&
	    !atomic_exchange(&fs->trace_failed, true))
		sqv_log(SQV_LOG_WARNING,
			"record: out of memory; the trace will miss reads");
	fuse_reply_iov(req, p.iov, (int)p.count);
	sqv_reader_release(fs->reader, &p);
}

static void op_release(fuse_req_t req, fuse_ino_t node,
		       struct fuse_file_info *fi)
{
	(void)node;
	(void)fi;
	count(fs_of(req), OP_RELEASE);
	fuse_reply_err(req, 0);
}

static void op_opendir(fuse_req_t req, fuse_ino_t node,
		       struct fuse_file_info *fi)
{
	struct sqv_fs *fs = fs_of(req);
	sqv_ino_t ino;

	count(fs, OP_OPENDIR);
	if (fs->zero_open) {
		/* As for open; the kernel then caches listings as well. */
		fuse_reply_err(req, ENOSYS);
		return;
	}
	if (!to_ino(fs, node, &ino)) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	if (!S_ISDIR(sqv_index_mode(fs->index, ino))) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	fi->cache_readdir = 1;
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

/*
 * Offsets: 0 starts; entry k of the listing ("." is 0, ".." is 1, then the
 * directory's entries in order) carries offset k + 1, the offset of what
 * follows it.
 */
static void list_dir(fuse_req_t req, fuse_ino_t node, size_t size, off_t off,
		     bool plus)
{
	struct sqv_fs *fs = fs_of(req);
	sqv_ino_t dir;
	uint32_t count_entries;

	if (!to_ino(fs, node, &dir)) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	sqv_err_t err = sqv_index_dir_count(fs->index, dir, &count_entries);
	if (err < 0) {
		fuse_reply_err(req, to_errno(err));
		return;
	}
	char *buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	size_t used = 0;
	uint64_t total = (uint64_t)count_entries + 2;
	for (uint64_t k = off < 0 ? 0 : (uint64_t)off; k < total; k++) {
		const char *name;
		sqv_ino_t child;
		struct fuse_entry_param e;
		size_t need;

		if (k == 0) {
			name = ".";
			child = dir;
		} else if (k == 1) {
			name = "..";
			child = sqv_index_parent(fs->index, dir);
		} else {
			(void)sqv_index_dir_entry(fs->index, dir, (uint32_t)(k - 2),
						  &name, &child);
		}
		fill_entry(fs, child, &e);
		if (plus) {
			if (k < 2) {
				/* The kernel makes no dentry for these: no
				 * node id, only the type. */
				e.ino = 0;
			}
			need = fuse_add_direntry_plus(req, buf + used,
						      size - used, name, &e,
						      (off_t)(k + 1));
		} else {
			need = fuse_add_direntry(req, buf + used, size - used,
						 name, &e.attr, (off_t)(k + 1));
		}
		if (need > size - used)
			break;
		used += need;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t node, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	(void)fi;
	count(fs_of(req), OP_READDIR);
	list_dir(req, node, size, off, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t node, size_t size,
			   off_t off, struct fuse_file_info *fi)
{
	(void)fi;
	count(fs_of(req), OP_READDIRPLUS);
	list_dir(req, node, size, off, true);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t node,
			  struct fuse_file_info *fi)
{
	(void)node;
	(void)fi;
	count(fs_of(req), OP_RELEASEDIR);
	fuse_reply_err(req, 0);
}

static void op_statfs(fuse_req_t req, fuse_ino_t node)
{
	struct sqv_fs *fs = fs_of(req);
	struct statvfs st = { 0 };
	uint64_t bytes = 0;

	(void)node;
	count(fs, OP_STATFS);
	for (unsigned i = 0; i < fs->nlayers; i++)
		bytes += sqv_image_info(fs->layers[i])->bytes_used;
	st.f_bsize = sqv_image_info(fs->layers[0])->block_size;
	st.f_frsize = st.f_bsize;
	st.f_blocks = (bytes + st.f_bsize - 1) / st.f_bsize;
	st.f_files = sqv_index_inode_count(fs->index);
	st.f_namemax = 255;
	st.f_flag = ST_RDONLY | ST_NOSUID | ST_NODEV;
	fuse_reply_statfs(req, &st);
}

/* Answer a value-returning xattr request: size 0 asks for the length. */
static void reply_value(fuse_req_t req, const void *value, size_t len,
			size_t size)
{
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (len > size)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, value, len);
}

/*
 * The counters for --stats: at most SQV_STATS_MAX bytes with the final NUL,
 * which is what the ioctl's number lets the kernel copy out. They take
 * about 1 KiB; should they ever outgrow it, whole lines are dropped from
 * the end, never half a line.
 */
static void reply_stats(fuse_req_t req, struct sqv_fs *fs)
{
	char buf[SQV_STATS_MAX];
	size_t len = sqv_fs_format_stats(fs, buf, sizeof(buf));

	if (len >= sizeof(buf)) {
		buf[sizeof(buf) - 1] = '\0';
		char *nl = strrchr(buf, '\n');
		len = nl ? (size_t)(nl - buf) + 1 : 0;
	}
	buf[len] = '\0';
	fuse_reply_ioctl(req, 0, buf, len + 1);
}

/* For --unmount (fs.h): asked once per unmount, so not counted. */
static void reply_daemon_id(fuse_req_t req)
{
	struct sqv_daemon_id id = { .pid = (uint64_t)getpid() };
	struct stat st;

	if (stat("/proc/self/ns/pid", &st) == 0) {
		id.pid_ns_dev = (uint64_t)st.st_dev;
		id.pid_ns_ino = (uint64_t)st.st_ino;
	}
	fuse_reply_ioctl(req, 0, &id, sizeof(id));
}

static void op_getxattr(fuse_req_t req, fuse_ino_t node, const char *name,
			size_t size)
{
	struct sqv_fs *fs = fs_of(req);
	const void *value;
	size_t len;
	sqv_ino_t ino;

	count(fs, OP_GETXATTR);
	if (!fs->has_xattrs) {
		/* The kernel never caches xattrs: `ls -l` would ask twice per
		 * entry. ENOSYS makes it stop asking for good. */
		fuse_reply_err(req, ENOSYS);
		return;
	}
	if (!to_ino(fs, node, &ino)) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	sqv_err_t err = sqv_index_getxattr(fs->index, ino, name, &value, &len);
	if (err < 0)
		fuse_reply_err(req, to_errno(err));
	else
		reply_value(req, value, len, size);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t node, size_t size)
{
	struct sqv_fs *fs = fs_of(req);
	sqv_ino_t ino;
	size_t needed;

	count(fs, OP_LISTXATTR);
	if (!fs->has_xattrs) {
		fuse_reply_err(req, ENOSYS); /* as in op_getxattr */
		return;
	}
	if (!to_ino(fs, node, &ino)) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	sqv_err_t err = sqv_index_listxattr(fs->index, ino, NULL, 0, &needed);
	if (err < 0) {
		fuse_reply_err(req, to_errno(err));
		return;
	}
	if (size == 0) {
		fuse_reply_xattr(req, needed);
		return;
	}
	if (needed > size) {
		fuse_reply_err(req, ERANGE);
		return;
	}
	char *buf = malloc(needed ? needed : 1);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	err = sqv_index_listxattr(fs->index, ino, buf, needed, &needed);
	if (err < 0)
		fuse_reply_err(req, to_errno(err));
	else
		fuse_reply_buf(req, buf, needed);
	free(buf);
}

static void op_ioctl(fuse_req_t req, fuse_ino_t node, unsigned int cmd,
		     void *arg, struct fuse_file_info *fi, unsigned flags,
		     const void *in_buf, size_t in_bufsz, size_t out_bufsz)
{
	struct sqv_fs *fs = fs_of(req);

	(void)arg;
	(void)fi;
	(void)in_buf;
	(void)in_bufsz;
	if (node == FUSE_ROOT_ID && cmd == SQV_STATS_IOCTL &&
	    !(flags & FUSE_IOCTL_COMPAT) && out_bufsz == SQV_STATS_MAX) {
		/* --stats asking: not counted, so that asking twice shows
		 * only what the workload did in between. */
		reply_stats(req, fs);
		return;
	}
	if (node == FUSE_ROOT_ID && cmd == SQV_DAEMON_ID_IOCTL &&
	    !(flags & FUSE_IOCTL_COMPAT) &&
	    out_bufsz == sizeof(struct sqv_daemon_id)) {
		reply_daemon_id(req);
		return;
	}
	/* CPython asks isatty() (TCGETS) of every file it imports, and the
	 * kernel never caches the answer: give it at once. No file here is
	 * a terminal, and no other ioctl applies to a read-only tree. */
	count(fs, OP_IOCTL);
	fuse_reply_err(req, ENOTTY);
}

const struct fuse_lowlevel_ops sqv_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.readlink = op_readlink,
	.open = op_open,
	.read = op_read,
	.release = op_release,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.releasedir = op_releasedir,
	.statfs = op_statfs,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.ioctl = op_ioctl,
};

size_t sqv_fs_format_stats(struct sqv_fs *fs, char *buf, size_t size)
{
	struct sqv_blockcache_stats cache;
	struct sqv_image_io io = { 0 };
	struct timespec now;
	uint64_t requests = 0;
	size_t len = 0;

#define EMIT(name, value)                                                      \
	len += (size_t)snprintf(buf + (len < size ? len : size),               \
				len < size ? size - len : 0, "%s %llu\n",      \
				(name), (unsigned long long)(value))

	for (int i = 0; i < OP_COUNT; i++)
		requests += atomic_load(&fs->ops[i]);
	EMIT("requests", requests);
	for (int i = 0; i < OP_COUNT; i++)
		EMIT(op_names[i], atomic_load(&fs->ops[i]));

	EMIT("read_bytes", atomic_load(&fs->read_bytes));
	EMIT("files_read", atomic_load(&fs->files_read));
	/* 1 once the kernel sends no open/opendir: it answers them itself. */
	EMIT("kernel_skips_open", fs->zero_open);

	sqv_reader_cache_stats(fs->reader, &cache);
	EMIT("cache_hits", cache.hits);
	EMIT("cache_misses", cache.misses);
	EMIT("cache_evictions", cache.evictions);
	EMIT("cache_bytes", cache.bytes);

	uint64_t image_bytes = 0;
	for (unsigned i = 0; i < fs->nlayers; i++) {
		struct sqv_image_io one;
		sqv_image_io(fs->layers[i], &one);
		image_bytes += sqv_image_info(fs->layers[i])->bytes_used;
		io.backing_reads += one.backing_reads;
		io.backing_bytes += one.backing_bytes;
		io.decompressed_bytes += one.decompressed_bytes;
		io.corrupt_blocks += one.corrupt_blocks;
		io.metadata_blocks += one.metadata_blocks;
	}
	EMIT("backing_reads", io.backing_reads);
	EMIT("backing_bytes", io.backing_bytes);
	EMIT("decompressed_bytes", io.decompressed_bytes);
	EMIT("corrupt_blocks", io.corrupt_blocks);
	EMIT("metadata_blocks_decompressed", io.metadata_blocks);

	struct sqv_prefetch_stats pf = { 0 };
	if (fs->prefetch)
		sqv_prefetch_stats(fs->prefetch, &pf);
	EMIT("hot_bytes", pf.hot_bytes);
	EMIT("prefetch_reads", pf.reads);
	EMIT("prefetch_bytes", pf.bytes);
	EMIT("prefetch_blocks", pf.blocks);
	EMIT("prefetch_used_blocks", cache.prefetch_used_blocks);
	EMIT("prefetch_used_bytes", cache.prefetch_used_bytes);
	EMIT("prefetch_unused_evicted", cache.prefetch_unused_evicted);
	EMIT("prefetch_done", pf.done);
	EMIT("prefetch_failed", pf.failed);

	EMIT("layers", fs->nlayers);
	EMIT("image_bytes", image_bytes);
	EMIT("inodes", sqv_index_inode_count(fs->index));
	EMIT("entries", sqv_index_entry_count(fs->index));
	EMIT("index_bytes", sqv_index_memory(fs->index));
	EMIT("mount_index_us", fs->index_us);
	EMIT("mount_ready_us", atomic_load(&fs->ready_us));
	clock_gettime(CLOCK_MONOTONIC, &now);
	EMIT("uptime_seconds", now.tv_sec - fs->mounted_at.tv_sec);
#undef EMIT
	return len;
}
