/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * image: one squashfs image, read through libsquashfuse for metadata and
 * through a lock-free pread + decompress path for data. See image.h.
 */
#include "image.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <zstd.h>

/*
 * libsquashfuse's installed headers include its own autoconf config.h,
 * which defines FUSE_USE_VERSION, _POSIX_C_SOURCE-era macros and HAVE_*.
 * Claim that header's guard and give the one macro the others need.
 */
#define SQFS_CONFIG_H 1
#define HAVE_LINUX_TYPES_LE16 1
#include <squashfuse.h>

#include "digest.h"
#include "log.h"
#include "superblock.h"

#define REPORTED_MAX 64
/* Metadata larger than this is read where it lies, not copied first. */
#define META_COPY_MAX ((uint64_t)512 << 20)
#define META_CHUNK ((size_t)4 << 20)
/* Metadata blocks whose decompressed size md_check() remembers. */
#define MD_MEMO 256

struct sqv_image {
	/* Everything libsquashfuse owns; its caches have no locks, so every
	 * use of fs goes under meta_lock (recursive: a directory walk's
	 * callback may look at an inode). */
	pthread_mutex_t meta_lock;
	sqfs fs;
	bool fs_ready;
	/* A sparse memfd holding the superblock and all metadata tables at
	 * their offsets, read in a few large sequential reads at open, which
	 * libsquashfuse reads instead of the image until
	 * sqv_image_drop_metadata(); -1 when not used. */
	int meta_fd;
	/* Image offsets of the inode table's metadata blocks, in order:
	 * what bounds a file's block list (see sqv_image_file_layout). */
	uint64_t *itable;
	size_t nitable;
	/* Decompressed sizes of metadata blocks md_check() has read, by
	 * image offset + 1 (0: empty). */
	struct {
		uint64_t pos1;
		size_t size;
	} md_memo[MD_MEMO];

	/* Immutable after open: read freely by every thread. */
	int fd;
	char *name;
	uint64_t file_size;
	struct sqv_image_info info;
	int comp;
	sqfs_decompressor decompress;
	uint64_t meta_start;  /* the first metadata table */
	/* The block digests appended by sqvenvfs-pack, or NULL. */
	struct sqv_digests *digests;

	atomic_uint_fast64_t backing_reads;
	atomic_uint_fast64_t backing_bytes;
	atomic_uint_fast64_t decompressed_bytes;
	atomic_uint_fast64_t corrupt_blocks;

	/* Offsets already reported as damaged, so a fault is logged once,
	 * not once per request. Protected by report_lock. */
	pthread_mutex_t report_lock;
	uint64_t reported[REPORTED_MAX];
	unsigned nreported;
	bool report_suppressed;
};

/* Log a damaged block once per offset; later ones are counted only. */
static void report_damage(struct sqv_image *img, uint64_t pos,
			  const char *what)
{
	bool first = true;
	bool suppress_now = false;

	atomic_fetch_add_explicit(&img->corrupt_blocks, 1,
				  memory_order_relaxed);
	pthread_mutex_lock(&img->report_lock);
	for (unsigned i = 0; i < img->nreported; i++)
		if (img->reported[i] == pos)
			first = false;
	if (first) {
		if (img->nreported < REPORTED_MAX) {
			img->reported[img->nreported++] = pos;
		} else {
			first = false;
			suppress_now = !img->report_suppressed;
			img->report_suppressed = true;
		}
	}
	pthread_mutex_unlock(&img->report_lock);

	if (first)
		sqv_log(SQV_LOG_ERR, "%s: offset %llu: %s", img->name,
			(unsigned long long)pos, what);
	if (suppress_now)
		sqv_log(SQV_LOG_ERR,
			"%s: more than %d damaged blocks; no further reports",
			img->name, REPORTED_MAX);
}

static sqv_err_t pread_exact(struct sqv_image *img, void *buf, size_t size,
			     uint64_t pos)
{
	size_t done = 0;

	while (done < size) {
		ssize_t n = pread(img->fd, (char *)buf + done, size - done,
				  (off_t)(pos + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -EIO;
		}
		if (n == 0)
			return -EIO; /* the file shrank under us */
		done += (size_t)n;
	}
	atomic_fetch_add_explicit(&img->backing_reads, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&img->backing_bytes, size,
				  memory_order_relaxed);
	return 0;
}

/* Check the superblock ourselves first (lib/base), so each refusal says
 * why; then whether this libsquashfuse has the image's decompressor. */
static sqv_err_t check_superblock(struct sqv_image *img)
{
	unsigned char buf[SQV_SUPERBLOCK_SIZE];
	struct sqv_superblock sb;
	const char *name = img->name;
	char why[160];

	if (img->file_size >= sizeof(buf) &&
	    pread_exact(img, buf, sizeof(buf), 0) < 0) {
		sqv_log(SQV_LOG_ERR, "%s: cannot read the superblock", name);
		return -EIO;
	}
	sqv_err_t err = sqv_superblock_check(buf, img->file_size < sizeof(buf) ?
					     0 : sizeof(buf),
					     img->file_size, &sb, why, sizeof(why));
	if (err < 0) {
		sqv_log(SQV_LOG_ERR, "%s: %s", name, why);
		return err;
	}
	img->comp = sb.compression;
	if (!sqfs_decompressor_get(img->comp)) {
		sqv_log(SQV_LOG_ERR, "%s: unsupported compression %s (%d)", name,
			sqv_superblock_comp_name(sb.compression), img->comp);
		return -ENOTSUP;
	}
	img->info.compression = sqv_superblock_comp_name(sb.compression);
	img->info.block_size = sb.block_size;
	img->info.inode_count = sb.inodes;
	img->info.fragment_count = sb.fragments;
	img->info.bytes_used = sb.bytes_used;
	img->info.mkfs_time = sb.mkfs_time;
	img->meta_start = sb.inode_table;
	img->info.has_xattrs = (int64_t)sb.xattr_id_table != SQUASHFS_INVALID_BLK;
	img->decompress = sqfs_decompressor_get(img->comp);
	return 0;
}

/*
 * Index building reads every inode and directory through libsquashfuse,
 * 8 KiB metadata block by block, scattered over the tables: thousands of
 * small reads, each a round trip on a parallel file system. Read the
 * superblock and everything from the inode table to the end of the image
 * (all the metadata tables) in a few large sequential reads into a sparse
 * memfd at the same offsets, and let libsquashfuse read that instead.
 * Returns the memfd, or -1 to read the image directly (no memfd, too big).
 */
static int copy_metadata(struct sqv_image *img, uint64_t meta_start)
{
	uint64_t end = img->info.bytes_used;
	void *buf;
	int mfd;

	if (meta_start >= end || end - meta_start > META_COPY_MAX)
		return -1;
	mfd = memfd_create("sqvenvfs-metadata", MFD_CLOEXEC);
	if (mfd < 0)
		return -1;
	buf = malloc(META_CHUNK);
	if (!buf || ftruncate(mfd, (off_t)end) < 0)
		goto fail;
	/* The superblock and compressor options, then the tables. */
	if (pread_exact(img, buf, SQV_SUPERBLOCK_SIZE, 0) < 0 ||
	    pwrite(mfd, buf, SQV_SUPERBLOCK_SIZE, 0) != SQV_SUPERBLOCK_SIZE)
		goto fail;
	for (uint64_t pos = meta_start; pos < end;) {
		size_t n = end - pos < META_CHUNK ? (size_t)(end - pos) : META_CHUNK;
		if (pread_exact(img, buf, n, pos) < 0 ||
		    pwrite(mfd, buf, n, (off_t)pos) != (ssize_t)n)
			goto fail;
		pos += n;
	}
	free(buf);
	return mfd;
fail:
	free(buf);
	close(mfd);
	return -1;
}

/* Read metadata from the in-memory copy when there is one. */
static sqv_err_t meta_pread(struct sqv_image *img, void *buf, size_t size,
			    uint64_t pos)
{
	if (img->meta_fd < 0)
		return pread_exact(img, buf, size, pos);
	return pread(img->meta_fd, buf, size, (off_t)pos) == (ssize_t)size ?
		       0 : -EIO;
}

/* Read for sqv_digest_verify: the metadata copy where it holds the bytes
 * (the superblock, and everything from the first table on), else the
 * image. */
static sqv_err_t static_read(void *ctx, void *buf, size_t len, uint64_t pos)
{
	struct sqv_image *img = ctx;

	if (img->meta_fd >= 0 &&
	    (pos + len <= SQV_SUPERBLOCK_SIZE || pos >= img->meta_start))
		return meta_pread(img, buf, len, pos);
	return pread_exact(img, buf, len, pos);
}

/*
 * With a digest table, check every metadata block and every other stored
 * byte outside the data blocks (superblock, table indexes) once, at open:
 * the index is built from them, so damage there refuses the mount rather
 * than serving a wrong tree. Data and fragment blocks are checked when
 * read (sqv_image_read_block).
 */
static sqv_err_t verify_static(struct sqv_image *img)
{
	uint64_t bad = 0;
	sqv_err_t err;

	if (!img->digests)
		return 0;
	err = sqv_digest_verify(img->digests,
				1u << SQV_DIGEST_META | 1u << SQV_DIGEST_RAW,
				static_read, img, &bad);
	if (err == -SQV_ECORRUPT) {
		atomic_fetch_add_explicit(&img->corrupt_blocks, 1,
					  memory_order_relaxed);
		sqv_log(SQV_LOG_ERR,
			"%s: offset %llu: metadata does not match its digest",
			img->name, (unsigned long long)bad);
	} else if (err < 0) {
		sqv_log(SQV_LOG_ERR, "%s: cannot read the metadata", img->name);
	}
	return err;
}

/*
 * libsquashfuse 0.1.105's sqfs_destroy() never frees the xattr id table.
 * sqfs_table_destroy() resets the pointer it frees, so this stays safe with
 * a library that frees it itself.
 */
static void destroy_fs(sqfs *fs)
{
	sqfs_table_destroy(&fs->xattr_table);
	sqfs_destroy(fs);
}

/*
 * Record where each metadata block of the inode table starts (2-byte
 * headers, no decompression). A file's block list is stored in the table
 * after its inode, 4 bytes a block, so it cannot hold more entries than the
 * table's remaining blocks can: that bound keeps a hostile file size from
 * sizing an allocation.
 */
static sqv_err_t walk_inode_table(struct sqv_image *img)
{
	uint64_t pos = img->fs.sb.inode_table_start;
	uint64_t end = img->fs.sb.directory_table_start;
	size_t cap = 0;

	if (end > img->info.bytes_used || pos >= end) {
		sqv_log(SQV_LOG_ERR, "%s: damaged superblock (inode table)",
			img->name);
		return -SQV_ECORRUPT;
	}
	while (pos < end) {
		uint16_t hdr;
		if (pos + 2 > end || meta_pread(img, &hdr, 2, pos) < 0) {
			sqv_log(SQV_LOG_ERR, "%s: damaged inode table", img->name);
			return -SQV_ECORRUPT;
		}
		if (img->nitable == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			uint64_t *n = realloc(img->itable, ncap * sizeof(*n));
			if (!n)
				return -ENOMEM;
			img->itable = n;
			cap = ncap;
		}
		img->itable[img->nitable++] = pos;
		uint16_t size = le16toh(hdr) & 0x7fff;
		pos += 2 + (size ? size : 0x8000);
	}
	return 0;
}

sqv_err_t sqv_image_open(int fd, const char *name, struct sqv_image **out)
{
	struct sqv_image *img;
	pthread_mutexattr_t attr;
	struct stat st;
	sqv_err_t err;

	img = calloc(1, sizeof(*img));
	if (!img || !(img->name = strdup(name))) {
		free(img);
		close(fd);
		return -ENOMEM;
	}
	img->fd = fd;
	img->meta_fd = -1;
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&img->meta_lock, &attr);
	pthread_mutexattr_destroy(&attr);
	pthread_mutex_init(&img->report_lock, NULL);

	if (fstat(fd, &st) < 0) {
		err = -errno;
		goto fail;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		sqv_log(SQV_LOG_ERR, "%s: not a regular file", name);
		err = -ENOTSUP;
		goto fail;
	}
	img->file_size = (uint64_t)st.st_size;
	if (S_ISBLK(st.st_mode) &&
	    ioctl(fd, BLKGETSIZE64, &img->file_size) < 0) {
		/* st_size of a block device is 0: ask the device. */
		sqv_log(SQV_LOG_ERR, "%s: block device of unknown size (%s)",
			name, strerror(errno));
		err = -EIO;
		goto fail;
	}
	err = check_superblock(img);
	if (err < 0)
		goto fail;

	err = sqv_digest_load(fd, img->file_size, img->info.bytes_used, name,
			      &img->digests);
	if (err < 0)
		goto fail;
	img->meta_fd = copy_metadata(img, img->meta_start);
	err = verify_static(img);
	if (err < 0)
		goto fail;
	sqfs_err serr = sqfs_init(&img->fs, img->meta_fd >= 0 ? img->meta_fd : fd, 0);
	/* A failed sqfs_init() has already called sqfs_destroy() on what it
	 * set up (so never call it again), all but the xattr id table. */
	if (serr != SQFS_OK)
		sqfs_table_destroy(&img->fs.xattr_table);
	switch (serr) {
	case SQFS_OK:
		break;
	case SQFS_BADCOMP:
	case SQFS_BADVERSION:
	case SQFS_BADFORMAT:
		sqv_log(SQV_LOG_ERR, "%s: not a supported squashfs image", name);
		err = -ENOTSUP;
		goto fail;
	default:
		sqv_log(SQV_LOG_ERR, "%s: damaged tables (id, fragment or xattr)",
			name);
		err = -SQV_ECORRUPT;
		goto fail;
	}
	img->fs_ready = true;
	err = walk_inode_table(img);
	if (err < 0)
		goto fail;

	struct sqv_image_inode root;
	err = sqv_image_root(img, &root);
	if (err < 0 || !S_ISDIR(root.mode)) {
		sqv_log(SQV_LOG_ERR, "%s: damaged root directory", name);
		err = -SQV_ECORRUPT;
		goto fail;
	}
	*out = img;
	return 0;

fail:
	sqv_image_free(img);
	return err;
}

void sqv_image_free(struct sqv_image *img)
{
	if (!img)
		return;
	if (img->fs_ready)
		destroy_fs(&img->fs);
	if (img->meta_fd >= 0)
		close(img->meta_fd);
	close(img->fd);
	sqv_digest_free(img->digests);
	pthread_mutex_destroy(&img->meta_lock);
	pthread_mutex_destroy(&img->report_lock);
	free(img->itable);
	free(img->name);
	free(img);
}

void sqv_image_drop_metadata(struct sqv_image *img)
{
	pthread_mutex_lock(&img->meta_lock);
	if (img->meta_fd >= 0) {
		/* Same bytes at the same offsets: libsquashfuse goes on
		 * unaware, now reading the image itself. */
		img->fs.fd = img->fd;
		close(img->meta_fd);
		img->meta_fd = -1;
	}
	pthread_mutex_unlock(&img->meta_lock);
}

const struct sqv_digests *sqv_image_digests(const struct sqv_image *img)
{
	return img->digests;
}

const char *sqv_image_name(const struct sqv_image *img)
{
	return img->name;
}

const struct sqv_image_info *sqv_image_info(const struct sqv_image *img)
{
	return &img->info;
}

/*
 * libsquashfuse's sqfs_md_read() trusts the offset of a cursor inside its
 * metadata block: a reference whose offset lies past the end of a block
 * that decompresses short makes it copy from beyond the block (a heap
 * overflow the fuzzer found at once). So before any call that starts a
 * cursor at a reference taken from the image (an inode, a directory
 * listing, a table entry, an xattr), check that the block at base + the
 * reference's block part decompresses to more bytes than its offset. Reads
 * that go on from there cross into following blocks at offset 0, which is
 * safe. Call with meta_lock held.
 */
static uint64_t mix_pos(uint64_t pos)
{
	return (pos * UINT64_C(0x9e3779b97f4a7c15)) >> 40;
}

static sqv_err_t md_check(struct sqv_image *img, uint64_t base, uint64_t ref)
{
	uint64_t pos = base + (ref >> 16);
	size_t off = ref & 0xffff;
	size_t size;

	if (base >= img->info.bytes_used || (ref >> 16) >= img->info.bytes_used ||
	    pos + 2 > img->info.bytes_used || off >= SQUASHFS_METADATA_SIZE)
		return -SQV_ECORRUPT;
	unsigned slot = (unsigned)(mix_pos(pos) % MD_MEMO);
	if (img->md_memo[slot].pos1 == pos + 1) {
		size = img->md_memo[slot].size;
	} else {
		sqfs_block *block = NULL;
		if (sqfs_md_block_read(&img->fs, (sqfs_off_t)pos, &size,
				       &block) != SQFS_OK)
			return -SQV_ECORRUPT;
		size = block->size;
		sqfs_block_dispose(block);
		img->md_memo[slot].pos1 = pos + 1;
		img->md_memo[slot].size = size;
	}
	return off < size ? 0 : -SQV_ECORRUPT;
}

/* A table entry (id, fragment, xattr id) of `each` bytes: its index must
 * be below the table's count, and its metadata block long enough. */
static sqv_err_t table_check(struct sqv_image *img, const sqfs_table *t,
			     uint64_t idx, uint64_t count)
{
	if (idx >= count || !t->blocks)
		return -SQV_ECORRUPT;
	uint64_t at = idx * t->each;
	uint64_t pos = t->blocks[at / SQUASHFS_METADATA_SIZE];
	if (pos >= img->info.bytes_used)
		return -SQV_ECORRUPT;
	/* The whole entry must be in this block (entries never straddle). */
	SQV_TRY(md_check(img, pos, (at % SQUASHFS_METADATA_SIZE) + t->each - 1));
	return 0;
}

/* Fetch libsquashfuse's inode for ref; call with meta_lock held. */
static sqv_err_t get_sqfs_inode(struct sqv_image *img, uint64_t ref,
				sqfs_inode *ino)
{
	/* An inode id is a metadata block offset (48 bits) and an offset
	 * inside the 8 KiB block; reject what cannot be in the table. */
	uint64_t block = ref >> 16;
	uint64_t table = img->fs.sb.inode_table_start;

	if ((ref & 0xffff) >= SQUASHFS_METADATA_SIZE ||
	    table + block >= img->info.bytes_used)
		return -SQV_ECORRUPT;
	SQV_TRY(md_check(img, table, ref));
	if (sqfs_inode_get(&img->fs, ino, ref) != SQFS_OK)
		return -SQV_ECORRUPT;
	return 0;
}

static sqv_err_t fill_inode(struct sqv_image *img, uint64_t ref,
			    const sqfs_inode *si, struct sqv_image_inode *out)
{
	sqfs_id_t uid, gid;
	struct sqv_image_inode r = { 0 };

	uint16_t nids = img->fs.sb.no_ids;
	if (table_check(img, &img->fs.id_table, si->base.uid, nids) < 0 ||
	    table_check(img, &img->fs.id_table, si->base.guid, nids) < 0 ||
	    sqfs_id_get(&img->fs, si->base.uid, &uid) != SQFS_OK ||
	    sqfs_id_get(&img->fs, si->base.guid, &gid) != SQFS_OK)
		return -SQV_ECORRUPT;

	r.ref = ref;
	r.number = si->base.inode_number;
	r.mode = si->base.mode;
	r.uid = uid;
	r.gid = gid;
	r.nlink = si->nlink > 0 ? (uint32_t)si->nlink : 1;
	r.mtime = si->base.mtime;
	r.xattr = si->xattr;
	switch (r.mode & S_IFMT) {
	case S_IFREG:
		r.size = si->xtra.reg.file_size;
		break;
	case S_IFDIR:
		r.size = si->xtra.dir.dir_size;
		break;
	case S_IFLNK:
		r.size = si->xtra.symlink_size;
		if (r.size == 0 || r.size > 4095)
			return -SQV_ECORRUPT;
		break;
	case S_IFBLK:
	case S_IFCHR:
		r.rdev = (uint32_t)makedev(si->xtra.dev.major,
					   si->xtra.dev.minor);
		break;
	case S_IFIFO:
	case S_IFSOCK:
		break;
	default:
		return -SQV_ECORRUPT;
	}
	*out = r;
	return 0;
}

sqv_err_t sqv_image_inode(struct sqv_image *img, uint64_t ref,
			  struct sqv_image_inode *out)
{
	sqfs_inode si;
	sqv_err_t err;

	pthread_mutex_lock(&img->meta_lock);
	err = get_sqfs_inode(img, ref, &si);
	if (err == 0)
		err = fill_inode(img, ref, &si, out);
	pthread_mutex_unlock(&img->meta_lock);
	return err;
}

sqv_err_t sqv_image_root(struct sqv_image *img, struct sqv_image_inode *out)
{
	return sqv_image_inode(img, sqfs_inode_root(&img->fs), out);
}

sqv_err_t sqv_image_readdir(struct sqv_image *img,
			    const struct sqv_image_inode *dir,
			    sqv_image_dirent_fn fn, void *ctx)
{
	sqfs_inode si;
	sqfs_dir d;
	sqfs_dir_entry entry;
	sqfs_err serr = SQFS_OK;
	sqv_err_t err;

	if (!S_ISDIR(dir->mode))
		return -ENOTDIR;
	/* sqfs_dir_next() copies a name of the stored length (up to 65536
	 * bytes) before we can check it: a sqfs_name (257 bytes) overflows
	 * on a hostile image. */
	char *namebuf = malloc(UINT16_MAX + 2);
	if (!namebuf)
		return -ENOMEM;
	pthread_mutex_lock(&img->meta_lock);
	err = get_sqfs_inode(img, dir->ref, &si);
	if (err < 0)
		goto out;
	if (si.xtra.dir.dir_size > 3 &&
	    md_check(img, img->fs.sb.directory_table_start,
		     (uint64_t)si.xtra.dir.start_block << 16 |
			     si.xtra.dir.offset) < 0) {
		err = -SQV_ECORRUPT;
		goto out;
	}
	if (sqfs_dir_open(&img->fs, &si, &d, 0) != SQFS_OK) {
		err = -SQV_ECORRUPT;
		goto out;
	}
	sqfs_dentry_init(&entry, namebuf);
	while (sqfs_dir_next(&img->fs, &d, &entry, &serr)) {
		size_t len = sqfs_dentry_name_size(&entry);
		if (len > SQUASHFS_NAME_LEN) {
			err = -SQV_ECORRUPT;
			goto out;
		}
		namebuf[len] = '\0';
		err = fn(ctx, namebuf, len, sqfs_dentry_inode(&entry));
		if (err != 0)
			goto out;
	}
	if (serr != SQFS_OK)
		err = -SQV_ECORRUPT;
out:
	pthread_mutex_unlock(&img->meta_lock);
	free(namebuf);
	return err;
}

sqv_err_t sqv_image_readlink(struct sqv_image *img,
			     const struct sqv_image_inode *link, char *buf,
			     size_t bufsize)
{
	sqfs_inode si;
	sqv_err_t err;
	size_t size = bufsize;

	if (!S_ISLNK(link->mode))
		return -EINVAL;
	if (bufsize < link->size + 1)
		return -ERANGE;
	pthread_mutex_lock(&img->meta_lock);
	err = get_sqfs_inode(img, link->ref, &si);
	if (err == 0 && sqfs_readlink(&img->fs, &si, buf, &size) != SQFS_OK)
		err = -SQV_ECORRUPT;
	pthread_mutex_unlock(&img->meta_lock);
	return err;
}

/*
 * Full xattr names from the stored prefix type. libsquashfuse 0.1.105 maps
 * the trusted and security prefixes the wrong way round, so ask it for the
 * bare name and add the prefix here.
 */
static const char *xattr_prefix(uint16_t type)
{
	switch (type & SQUASHFS_XATTR_PREFIX_MASK) {
	case SQUASHFS_XATTR_USER:
		return "user.";
	case SQUASHFS_XATTR_TRUSTED:
		return "trusted.";
	case SQUASHFS_XATTR_SECURITY:
		return "security.";
	default:
		return NULL;
	}
}

/* More attribute bytes than this on one inode is damage, not data. */
#define XATTR_MAX_TOTAL (UINT32_C(1) << 20)
#define XATTR_VALUE_MAX 65536
#define XATTR_OOL 0x100

/*
 * The attributes are walked here with sqfs_md_read() rather than with
 * libsquashfuse's sqfs_xattr_* iterator, because that iterator starts
 * cursors at references from the image (the attribute list, out-of-line
 * values) without the check md_check() makes.
 */
sqv_err_t sqv_image_xattrs(struct sqv_image *img,
			   const struct sqv_image_inode *ino,
			   sqv_image_xattr_fn fn, void *ctx)
{
	sqfs_inode si;
	struct squashfs_xattr_id xid;
	sqfs_md_cursor cur;
	uint64_t base = img->fs.xattr_info.xattr_table_start;
	char name[16 + SQUASHFS_NAME_LEN + 1];
	void *value = NULL;
	uint64_t total = 0;
	sqv_err_t err;

	if (ino->xattr == SQV_IMAGE_NO_XATTR || !img->info.has_xattrs)
		return 0;
	pthread_mutex_lock(&img->meta_lock);
	err = get_sqfs_inode(img, ino->ref, &si);
	if (err < 0)
		goto out;
	err = -SQV_ECORRUPT;
	if (si.xattr == SQUASHFS_INVALID_XATTR) {
		err = 0;
		goto out;
	}
	if (table_check(img, &img->fs.xattr_table, si.xattr,
			img->fs.xattr_info.xattr_ids) < 0 ||
	    sqfs_table_get(&img->fs.xattr_table, &img->fs, si.xattr, &xid) !=
		    SQFS_OK)
		goto out;
	uint64_t ref = le64toh(xid.xattr);
	if (md_check(img, base, ref) < 0)
		goto out;
	sqfs_md_cursor_inode(&cur, ref, (sqfs_off_t)base);
	for (uint32_t i = 0; i < le32toh(xid.count); i++) {
		struct squashfs_xattr_entry e;
		uint32_t vsize;

		if (sqfs_md_read(&img->fs, &cur, &e, sizeof(e)) != SQFS_OK)
			goto out;
		uint16_t type = le16toh(e.type);
		size_t nlen = le16toh(e.size);
		const char *prefix = xattr_prefix(type);
		if (!prefix || nlen == 0 || nlen > SQUASHFS_NAME_LEN)
			goto out;
		size_t plen = strlen(prefix);
		memcpy(name, prefix, plen);
		if (sqfs_md_read(&img->fs, &cur, name + plen, nlen) != SQFS_OK)
			goto out;
		name[plen + nlen] = '\0';
		if (memchr(name, '\0', plen + nlen))
			goto out;
		if (sqfs_md_read(&img->fs, &cur, &vsize, sizeof(vsize)) != SQFS_OK)
			goto out;
		vsize = le32toh(vsize);
		sqfs_md_cursor vcur = cur;
		if (type & XATTR_OOL) {
			/* The value is elsewhere: a reference to it. */
			uint64_t vref;
			if (vsize != sizeof(vref) ||
			    sqfs_md_read(&img->fs, &cur, &vref, sizeof(vref)) !=
				    SQFS_OK)
				goto out;
			vref = le64toh(vref);
			if (md_check(img, base, vref) < 0)
				goto out;
			sqfs_md_cursor_inode(&vcur, vref, (sqfs_off_t)base);
			if (sqfs_md_read(&img->fs, &vcur, &vsize, sizeof(vsize)) !=
			    SQFS_OK)
				goto out;
			vsize = le32toh(vsize);
		}
		total += plen + nlen + vsize;
		if (vsize > XATTR_VALUE_MAX || total > XATTR_MAX_TOTAL)
			goto out;
		value = malloc(vsize ? vsize : 1);
		if (!value) {
			err = -ENOMEM;
			goto out;
		}
		if (sqfs_md_read(&img->fs, &vcur, value, vsize) != SQFS_OK)
			goto out;
		if (!(type & XATTR_OOL))
			cur = vcur;
		int rc = fn(ctx, name, value, vsize);
		free(value);
		value = NULL;
		if (rc != 0) {
			err = rc;
			goto out;
		}
	}
	err = 0;
out:
	free(value);
	pthread_mutex_unlock(&img->meta_lock);
	return err;
}

/* More blocks than this in one file is damage, not data (8 TiB at 128 KiB). */
#define MAX_FILE_BLOCKS (UINT32_C(1) << 26)

sqv_err_t sqv_image_file_layout(struct sqv_image *img,
				const struct sqv_image_inode *file,
				struct sqv_file_layout *out, uint32_t **words,
				uint64_t **positions)
{
	struct sqv_file_layout l = { 0 };
	uint32_t *w = NULL;
	uint64_t *p = NULL;
	sqfs_inode si;
	sqfs_blocklist bl;
	uint32_t bs = img->info.block_size;
	sqv_err_t err;

	if (!S_ISREG(file->mode))
		return -EINVAL;
	pthread_mutex_lock(&img->meta_lock);
	err = get_sqfs_inode(img, file->ref, &si);
	if (err < 0)
		goto out;

	l.size = si.xtra.reg.file_size;
	l.has_fragment = si.xtra.reg.frag_idx != SQUASHFS_INVALID_FRAG;
	uint64_t nblocks = l.size / bs;
	if (!l.has_fragment && l.size % bs)
		nblocks++;
	/* The list follows the inode in the table: at most 2048 entries
	 * per metadata block from the inode's block to the table's end. */
	uint64_t ipos = img->fs.sb.inode_table_start + (file->ref >> 16);
	size_t lo = 0, hi = img->nitable;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (img->itable[mid] < ipos)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == img->nitable || img->itable[lo] != ipos ||
	    nblocks > (uint64_t)(img->nitable - lo) *
			      (SQUASHFS_METADATA_SIZE / sizeof(uint32_t))) {
		err = -SQV_ECORRUPT;
		goto out;
	}
	if (nblocks > MAX_FILE_BLOCKS) {
		err = -SQV_ECORRUPT;
		goto out;
	}
	l.nblocks = (uint32_t)nblocks;

	if (l.has_fragment) {
		struct squashfs_fragment_entry frag;
		uint32_t tail = (uint32_t)(l.size % bs);
		if (tail == 0 ||
		    table_check(img, &img->fs.frag_table, si.xtra.reg.frag_idx,
				img->info.fragment_count) < 0 ||
		    sqfs_frag_entry(&img->fs, &frag, si.xtra.reg.frag_idx) != SQFS_OK) {
			err = -SQV_ECORRUPT;
			goto out;
		}
		l.frag_pos = frag.start_block;
		l.frag_word = frag.size;
		l.frag_off = si.xtra.reg.frag_off;
		if (l.frag_off >= bs || tail > bs - l.frag_off ||
		    sqv_image_word_size(l.frag_word) > bs ||
		    l.frag_pos + sqv_image_word_size(l.frag_word) >
			    img->info.bytes_used) {
			err = -SQV_ECORRUPT;
			goto out;
		}
	}

	if (l.nblocks > 0) {
		w = malloc(l.nblocks * sizeof(*w));
		p = malloc(l.nblocks * sizeof(*p));
		if (!w || !p) {
			err = -ENOMEM;
			goto out;
		}
		sqfs_blocklist_init(&img->fs, &si, &bl);
		for (uint32_t i = 0; i < l.nblocks; i++) {
			if (sqfs_blocklist_next(&bl) != SQFS_OK) {
				err = -SQV_ECORRUPT;
				goto out;
			}
			uint32_t size = sqv_image_word_size(bl.header);
			if (size > bs || bl.block + size > img->info.bytes_used) {
				err = -SQV_ECORRUPT;
				goto out;
			}
			w[i] = bl.header;
			p[i] = bl.block;
		}
	}
	*out = l;
	*words = w;
	*positions = p;
	w = NULL;
	p = NULL;
out:
	pthread_mutex_unlock(&img->meta_lock);
	free(w);
	free(p);
	return err;
}

/*
 * Per-thread state of the data path, made on a thread's first block and
 * freed when the thread ends: a zstd context (ZSTD_decompress() would build
 * and free one for every block) and a buffer for the stored bytes, so that
 * reading a block allocates nothing.
 */
struct thread_io {
	ZSTD_DCtx *dctx;
	unsigned char in[SQUASHFS_FILE_MAX_SIZE];
};

static pthread_key_t thread_io_key;
static pthread_once_t thread_io_once = PTHREAD_ONCE_INIT;

static void thread_io_free(void *p)
{
	struct thread_io *t = p;
	ZSTD_freeDCtx(t->dctx);
	free(t);
}

static void thread_io_key_create(void)
{
	(void)pthread_key_create(&thread_io_key, thread_io_free);
}

static struct thread_io *thread_io(void)
{
	pthread_once(&thread_io_once, thread_io_key_create);
	struct thread_io *t = pthread_getspecific(thread_io_key);
	if (t)
		return t;
	/* malloc, not calloc: only the bytes a block needs are touched. */
	t = malloc(sizeof(*t));
	if (!t)
		return NULL;
	t->dctx = ZSTD_createDCtx();
	if (!t->dctx || pthread_setspecific(thread_io_key, t) != 0) {
		ZSTD_freeDCtx(t->dctx);
		free(t);
		return NULL;
	}
	return t;
}

static sqv_err_t decompress(struct sqv_image *img, struct thread_io *t,
			    const void *in, size_t insize, void *out,
			    size_t *outsize)
{
	if (img->comp == SQV_COMP_ZSTD) {
		size_t n = ZSTD_decompressDCtx(t->dctx, out, *outsize, in,
					       insize);
		if (ZSTD_isError(n))
			return -SQV_ECORRUPT;
		*outsize = n;
		return 0;
	}
	/* libsquashfuse's decompressors take a non-const input they do not
	 * write to. */
	if (img->decompress((void *)in, insize, out, outsize) != SQFS_OK)
		return -SQV_ECORRUPT;
	return 0;
}

/* A stored block against its digest, before anything trusts its bytes. */
static sqv_err_t check_digest(struct sqv_image *img, uint64_t pos,
			      const void *buf, size_t len)
{
	const char *why;

	if (!img->digests ||
	    sqv_digest_check(img->digests, pos, buf, len, false, &why) == 0)
		return 0;
	report_damage(img, pos, why);
	return -SQV_ECORRUPT;
}

sqv_err_t sqv_image_read_block(struct sqv_image *img, uint64_t pos,
			       uint32_t word, void *out, size_t *len)
{
	uint32_t size = sqv_image_word_size(word);
	bool compressed = !(word & SQUASHFS_COMPRESSED_BIT_BLOCK);
	size_t outsize = img->info.block_size;
	sqv_err_t err;

	if (size == 0 || size > img->info.block_size ||
	    pos + size > img->info.bytes_used) {
		report_damage(img, pos, "block size or offset out of range");
		return -SQV_ECORRUPT;
	}
	if (!compressed) {
		err = pread_exact(img, out, size, pos);
		if (err < 0) {
			report_damage(img, pos, "read of the image failed");
			return err;
		}
		err = check_digest(img, pos, out, size);
		if (err < 0)
			return err;
		*len = size;
		return 0;
	}

	struct thread_io *t = thread_io();
	if (!t)
		return -ENOMEM;
	err = pread_exact(img, t->in, size, pos);
	if (err < 0) {
		report_damage(img, pos, "read of the image failed");
	} else if ((err = check_digest(img, pos, t->in, size)) == 0) {
		err = decompress(img, t, t->in, size, out, &outsize);
		if (err == -SQV_ECORRUPT)
			report_damage(img, pos, "block does not decompress");
	}
	if (err < 0)
		return err;
	atomic_fetch_add_explicit(&img->decompressed_bytes, outsize,
				  memory_order_relaxed);
	*len = outsize;
	return 0;
}

sqv_err_t sqv_image_pread(struct sqv_image *img, void *buf, size_t size,
			  uint64_t pos)
{
	if (pos > img->info.bytes_used || size > img->info.bytes_used - pos)
		return -SQV_ECORRUPT;
	return pread_exact(img, buf, size, pos);
}

sqv_err_t sqv_image_decompress_block(struct sqv_image *img, uint32_t word,
				     const void *src, void *out, size_t *len)
{
	uint32_t size = sqv_image_word_size(word);
	size_t outsize = img->info.block_size;

	if (size == 0 || size > img->info.block_size)
		return -SQV_ECORRUPT;
	if (word & SQUASHFS_COMPRESSED_BIT_BLOCK) {
		memcpy(out, src, size);
		*len = size;
		return 0;
	}
	struct thread_io *t = thread_io();
	if (!t)
		return -ENOMEM;
	SQV_TRY(decompress(img, t, src, size, out, &outsize));
	atomic_fetch_add_explicit(&img->decompressed_bytes, outsize,
				  memory_order_relaxed);
	*len = outsize;
	return 0;
}

void sqv_image_io(const struct sqv_image *img, struct sqv_image_io *out)
{
	struct sqv_image *m = (struct sqv_image *)img;

	out->backing_reads = atomic_load(&m->backing_reads);
	out->backing_bytes = atomic_load(&m->backing_bytes);
	out->decompressed_bytes = atomic_load(&m->decompressed_bytes);
	out->corrupt_blocks = atomic_load(&m->corrupt_blocks);
}
