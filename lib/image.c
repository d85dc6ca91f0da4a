/*
 * image: one squashfs image, read through libsquashfuse for metadata and
 * through a lock-free pread + decompress path for data. See image.h.
 */
#include "image.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
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

#include "log.h"

#define SUPERBLOCK_SIZE 96
#define REPORTED_MAX 64

enum { COMP_GZIP = 1, COMP_LZMA, COMP_LZO, COMP_XZ, COMP_LZ4, COMP_ZSTD };

struct sqv_image {
	/* Everything libsquashfuse owns; its caches have no locks, so every
	 * use of fs goes under meta_lock (recursive: a directory walk's
	 * callback may look at an inode). */
	pthread_mutex_t meta_lock;
	sqfs fs;
	bool fs_ready;

	/* Immutable after open: read freely by every thread. */
	int fd;
	char *name;
	uint64_t file_size;
	struct sqv_image_info info;
	int comp;
	sqfs_decompressor decompress;

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

static const char *comp_name(int comp)
{
	static const char *const names[] = {
		[COMP_GZIP] = "gzip", [COMP_LZMA] = "lzma", [COMP_LZO] = "lzo",
		[COMP_XZ] = "xz",     [COMP_LZ4] = "lz4",   [COMP_ZSTD] = "zstd",
	};
	if (comp > 0 && comp <= COMP_ZSTD)
		return names[comp];
	return "unknown";
}

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

/* Check the superblock ourselves first, so each refusal says why. */
static sqv_err_t check_superblock(struct sqv_image *img)
{
	struct squashfs_super_block sb;
	const char *name = img->name;

	if (img->file_size < SUPERBLOCK_SIZE) {
		sqv_log(SQV_LOG_ERR, "%s: not a squashfs image (only %llu bytes)",
			name, (unsigned long long)img->file_size);
		return -ENOTSUP;
	}
	if (pread_exact(img, &sb, sizeof(sb), 0) < 0) {
		sqv_log(SQV_LOG_ERR, "%s: cannot read the superblock", name);
		return -EIO;
	}
	if (le32toh(sb.s_magic) != SQUASHFS_MAGIC) {
		sqv_log(SQV_LOG_ERR, "%s: not a squashfs image (bad magic)", name);
		return -ENOTSUP;
	}
	if (le16toh(sb.s_major) != 4 || le16toh(sb.s_minor) != 0) {
		sqv_log(SQV_LOG_ERR, "%s: unsupported squashfs version %u.%u",
			name, le16toh(sb.s_major), le16toh(sb.s_minor));
		return -ENOTSUP;
	}
	img->comp = le16toh(sb.compression);
	if (img->comp < COMP_GZIP || img->comp > COMP_ZSTD ||
	    !sqfs_decompressor_get(img->comp)) {
		sqv_log(SQV_LOG_ERR, "%s: unsupported compression %s (%d)", name,
			comp_name(img->comp), img->comp);
		return -ENOTSUP;
	}
	uint32_t block_size = le32toh(sb.block_size);
	uint16_t block_log = le16toh(sb.block_log);
	if (block_size < 4096 || block_size > SQUASHFS_FILE_MAX_SIZE ||
	    block_log > 20 || (UINT32_C(1) << block_log) != block_size) {
		sqv_log(SQV_LOG_ERR, "%s: damaged superblock (block size %u)",
			name, block_size);
		return -SQV_ECORRUPT;
	}
	uint64_t used = le64toh(sb.bytes_used);
	if (used > img->file_size) {
		sqv_log(SQV_LOG_ERR,
			"%s: truncated (the image says %llu bytes, the file has %llu)",
			name, (unsigned long long)used,
			(unsigned long long)img->file_size);
		return -SQV_ECORRUPT;
	}
	uint64_t tables[] = {
		le64toh(sb.inode_table_start), le64toh(sb.directory_table_start),
		le64toh(sb.id_table_start),
	};
	for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
		if (tables[i] >= used) {
			sqv_log(SQV_LOG_ERR,
				"%s: damaged superblock (a table starts past the end)",
				name);
			return -SQV_ECORRUPT;
		}
	}

	img->info.compression = comp_name(img->comp);
	img->info.block_size = block_size;
	img->info.inode_count = le32toh(sb.inodes);
	img->info.fragment_count = le32toh(sb.fragments);
	img->info.bytes_used = used;
	img->info.mkfs_time = le32toh(sb.mkfs_time);
	img->info.has_xattrs =
		(int64_t)le64toh(sb.xattr_id_table_start) != SQUASHFS_INVALID_BLK;
	img->decompress = sqfs_decompressor_get(img->comp);
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
	err = check_superblock(img);
	if (err < 0)
		goto fail;

	switch (sqfs_init(&img->fs, fd, 0)) {
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
		sqfs_destroy(&img->fs);
	close(img->fd);
	pthread_mutex_destroy(&img->meta_lock);
	pthread_mutex_destroy(&img->report_lock);
	free(img->name);
	free(img);
}

const char *sqv_image_name(const struct sqv_image *img)
{
	return img->name;
}

const struct sqv_image_info *sqv_image_info(const struct sqv_image *img)
{
	return &img->info;
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
	if (sqfs_inode_get(&img->fs, ino, ref) != SQFS_OK)
		return -SQV_ECORRUPT;
	return 0;
}

static sqv_err_t fill_inode(struct sqv_image *img, uint64_t ref,
			    const sqfs_inode *si, struct sqv_image_inode *out)
{
	sqfs_id_t uid, gid;
	struct sqv_image_inode r = { 0 };

	if (sqfs_id_get(&img->fs, si->base.uid, &uid) != SQFS_OK ||
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
	sqfs_name namebuf;
	sqfs_err serr = SQFS_OK;
	sqv_err_t err;

	if (!S_ISDIR(dir->mode))
		return -ENOTDIR;
	pthread_mutex_lock(&img->meta_lock);
	err = get_sqfs_inode(img, dir->ref, &si);
	if (err < 0)
		goto out;
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

sqv_err_t sqv_image_xattrs(struct sqv_image *img,
			   const struct sqv_image_inode *ino,
			   sqv_image_xattr_fn fn, void *ctx)
{
	sqfs_inode si;
	sqfs_xattr x;
	char name[16 + SQUASHFS_NAME_LEN + 1];
	void *value = NULL;
	sqv_err_t err;

	if (ino->xattr == SQV_IMAGE_NO_XATTR || !img->info.has_xattrs)
		return 0;
	pthread_mutex_lock(&img->meta_lock);
	err = get_sqfs_inode(img, ino->ref, &si);
	if (err < 0)
		goto out;
	if (sqfs_xattr_open(&img->fs, &si, &x) != SQFS_OK) {
		err = -SQV_ECORRUPT;
		goto out;
	}
	while (x.remain > 0) {
		size_t vsize;
		if (sqfs_xattr_read(&x) != SQFS_OK) {
			err = -SQV_ECORRUPT;
			goto out;
		}
		const char *prefix = xattr_prefix(x.type);
		size_t plen = prefix ? strlen(prefix) : 0;
		/* The bare name's length: sqfs_xattr_name_size() adds its
		 * own (swapped) prefix's. */
		size_t nlen = x.entry.size;
		if (!prefix || nlen > SQUASHFS_NAME_LEN) {
			err = -SQV_ECORRUPT;
			goto out;
		}
		memcpy(name, prefix, plen);
		if (sqfs_xattr_name(&x, name + plen, false) != SQFS_OK ||
		    sqfs_xattr_value_size(&x, &vsize) != SQFS_OK ||
		    vsize > 65536) {
			err = -SQV_ECORRUPT;
			goto out;
		}
		name[plen + nlen] = '\0';
		value = malloc(vsize ? vsize : 1);
		if (!value) {
			err = -ENOMEM;
			goto out;
		}
		if (sqfs_xattr_value(&x, value) != SQFS_OK) {
			err = -SQV_ECORRUPT;
			goto out;
		}
		err = fn(ctx, name, value, vsize);
		free(value);
		value = NULL;
		if (err != 0)
			goto out;
	}
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
	if (nblocks > MAX_FILE_BLOCKS) {
		err = -SQV_ECORRUPT;
		goto out;
	}
	l.nblocks = (uint32_t)nblocks;

	if (l.has_fragment) {
		struct squashfs_fragment_entry frag;
		uint32_t tail = (uint32_t)(l.size % bs);
		if (tail == 0 || si.xtra.reg.frag_idx >= img->info.fragment_count ||
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

/* One zstd context per thread, reused: ZSTD_decompress() would build and
 * free one for every block. */
static pthread_key_t zstd_key;
static pthread_once_t zstd_once = PTHREAD_ONCE_INIT;

static void zstd_key_free(void *dctx)
{
	ZSTD_freeDCtx(dctx);
}

static void zstd_key_create(void)
{
	(void)pthread_key_create(&zstd_key, zstd_key_free);
}

static sqv_err_t decompress(struct sqv_image *img, void *in, size_t insize,
			    void *out, size_t *outsize)
{
	if (img->comp == COMP_ZSTD) {
		pthread_once(&zstd_once, zstd_key_create);
		ZSTD_DCtx *dctx = pthread_getspecific(zstd_key);
		if (!dctx) {
			dctx = ZSTD_createDCtx();
			if (!dctx)
				return -ENOMEM;
			(void)pthread_setspecific(zstd_key, dctx);
		}
		size_t n = ZSTD_decompressDCtx(dctx, out, *outsize, in, insize);
		if (ZSTD_isError(n))
			return -SQV_ECORRUPT;
		*outsize = n;
		return 0;
	}
	if (img->decompress(in, insize, out, outsize) != SQFS_OK)
		return -SQV_ECORRUPT;
	return 0;
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
		*len = size;
		return 0;
	}

	void *in = malloc(size);
	if (!in)
		return -ENOMEM;
	err = pread_exact(img, in, size, pos);
	if (err < 0) {
		report_damage(img, pos, "read of the image failed");
	} else {
		err = decompress(img, in, size, out, &outsize);
		if (err == -SQV_ECORRUPT)
			report_damage(img, pos, "block does not decompress");
	}
	free(in);
	if (err < 0)
		return err;
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
