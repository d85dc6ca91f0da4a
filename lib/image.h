/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * image: one squashfs image, the only module that reads its format.
 *
 * It owns one squashfs image opened from a file descriptor (a memfd works,
 * for tests and fuzzers) and offers two kinds of access:
 *  - metadata (inodes, directories, symlinks, xattrs, block lists), used
 *    while the index is built and by the tools; each metadata block is read
 *    and decompressed once into memory (meta.h) and decoded here; the store
 *    is not thread-safe, so each image serialises these calls with its own
 *    mutex;
 *  - data blocks (sqv_image_read_block), used on the hot path by every
 *    FUSE thread at once: a pread and a stateless decompression, no lock.
 * Every offset read from the image is checked against the image size, so a
 * damaged image gives -SQV_ECORRUPT, not a read past the end.
 */
#ifndef SQV_IMAGE_H
#define SQV_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct sqv_image;

#define SQV_IMAGE_NO_XATTR UINT32_MAX

struct sqv_image_info {
	const char *compression;  /* "gzip", "lzo", "xz", "lz4", "zstd" */
	uint32_t block_size;
	uint32_t inode_count;
	uint32_t fragment_count;
	uint64_t bytes_used;      /* bytes of the image proper */
	uint32_t mkfs_time;
	bool has_xattrs;
};

/* One inode as the index needs it; directories are listed separately. */
struct sqv_image_inode {
	uint64_t ref;        /* where the inode is stored (squashfs inode id) */
	uint32_t number;     /* the image's own inode number */
	uint32_t mode;       /* file type and permission bits */
	uint32_t uid, gid;
	uint32_t nlink;
	uint32_t mtime;      /* squashfs stores unsigned 32-bit seconds */
	uint64_t size;       /* file size, symlink target length, listing size */
	uint32_t rdev;       /* device nodes: the kernel's encoding */
	uint32_t xattr;      /* xattr index or SQV_IMAGE_NO_XATTR */
};

/*
 * Where a regular file's bytes are. Block i of the file (i < nblocks) has a
 * size word (low 24 bits: stored size; bit 24: stored uncompressed; 0: a
 * hole) and an image offset. The tail after the last full block may sit in
 * a fragment shared with other small files.
 */
struct sqv_file_layout {
	uint64_t size;
	uint32_t nblocks;
	bool has_fragment;
	uint64_t frag_pos;   /* image offset of the fragment block */
	uint32_t frag_word;  /* its size word */
	uint32_t frag_off;   /* where the tail starts in the decompressed block */
};

/* Open the squashfs image on fd (which the image then owns; closed by
 * sqv_image_free, also on failure). name is used in messages. Errors:
 * -ENOTSUP (not squashfs, or an unsupported version or compression, with
 * the reason logged), -SQV_ECORRUPT (truncated or damaged), -EIO, -ENOMEM. */
sqv_err_t sqv_image_open(int fd, const char *name, struct sqv_image **out);
void sqv_image_free(struct sqv_image *img);

/* Read and decompress the inode and directory tables now, on two cores
 * when there are two (meta.h, sqv_meta_preload): for the index build,
 * which reads them all. -ENOMEM, -EIO. */
sqv_err_t sqv_image_preload_metadata(struct sqv_image *img);

/* The first metadata call reads the metadata tables into memory in a few
 * large sequential reads (no small reads of the image: each is a round trip
 * on a parallel file system), and each block is decompressed on first use
 * and kept. Once the index is built, this frees all of it; a later metadata
 * call starts again. */
void sqv_image_drop_metadata(struct sqv_image *img);

const char *sqv_image_name(const struct sqv_image *img);
/* The image's block digest table (lib/digest.h), or NULL without one. */
struct sqv_digests;
const struct sqv_digests *sqv_image_digests(const struct sqv_image *img);

/* With a digest table, the open checked every metadata block the table
 * lists; a read since then that needed a block the table does not vouch
 * for (a reference outside the metadata tables, to a block it does not
 * list as metadata, or one that does not match its digest) means the
 * image was damaged before it was sealed, or the table is not the
 * image's. Then -SQV_ECORRUPT, with one log line naming the image, the
 * first such offset and why (the first time only); else (and always
 * without a table) 0. For the index build, which refuses such an image
 * rather than skip what it cannot read (docs/digests.md). */
sqv_err_t sqv_image_metadata_unverified(struct sqv_image *img);
const struct sqv_image_info *sqv_image_info(const struct sqv_image *img);

sqv_err_t sqv_image_root(struct sqv_image *img, struct sqv_image_inode *out);
sqv_err_t sqv_image_inode(struct sqv_image *img, uint64_t ref,
			  struct sqv_image_inode *out);

/* Call fn for each entry of directory dir, in stored order; a non-zero
 * return from fn stops the walk and is returned. name is NUL-terminated. */
typedef int (*sqv_image_dirent_fn)(void *ctx, const char *name, size_t len,
				   uint64_t ref);
sqv_err_t sqv_image_readdir(struct sqv_image *img,
			    const struct sqv_image_inode *dir,
			    sqv_image_dirent_fn fn, void *ctx);

/* The target of a symlink, NUL-terminated; buf holds at least size + 1. */
sqv_err_t sqv_image_readlink(struct sqv_image *img,
			     const struct sqv_image_inode *link,
			     char *buf, size_t bufsize);

/* Call fn for each extended attribute of the inode, with its full name
 * ("user.x", "trusted.x", "security.x"). */
typedef int (*sqv_image_xattr_fn)(void *ctx, const char *name,
				  const void *value, size_t len);
sqv_err_t sqv_image_xattrs(struct sqv_image *img,
			   const struct sqv_image_inode *ino,
			   sqv_image_xattr_fn fn, void *ctx);

/* The layout of a regular file, with its blocks' size words and image
 * offsets in two new arrays of out->nblocks entries (NULL when there are
 * none), which the caller frees. */
sqv_err_t sqv_image_file_layout(struct sqv_image *img,
				const struct sqv_image_inode *file,
				struct sqv_file_layout *out, uint32_t **words,
				uint64_t **positions);

/*
 * Read the data block stored at pos with size word `word` and decompress it
 * into out (block_size bytes). *len gets the decompressed length. A hole
 * (word 0) is not stored: the caller fills zeros. Thread-safe.
 */
sqv_err_t sqv_image_read_block(struct sqv_image *img, uint64_t pos,
			       uint32_t word, void *out, size_t *len);

/* Read size bytes of the image at pos (counted as backing reads):
 * -SQV_ECORRUPT beyond bytes_used, -EIO for a failed read. Thread-safe. */
sqv_err_t sqv_image_pread(struct sqv_image *img, void *buf, size_t size,
			  uint64_t pos);

/* Check and decompress a block already read (its stored bytes at src,
 * read from pos, size word `word`) into out (block_size bytes), as
 * sqv_image_read_block does after its read: the digest of a verified image
 * is checked, and damage is logged once per offset. Thread-safe. */
sqv_err_t sqv_image_decode_block(struct sqv_image *img, uint64_t pos,
				 uint32_t word, const void *src, void *out,
				 size_t *len);

/* A cheap look at a block's stored bytes without decompressing them: its
 * size, and the compressed frame's header and length where the compression
 * has them (sqv_decomp_check). 0 says only that nothing is plainly wrong;
 * -SQV_ECORRUPT that the block cannot decompress. Logs nothing. */
sqv_err_t sqv_image_check_stored(const struct sqv_image *img, uint32_t word,
				 const void *src);

/* The stored size of a block from its size word. */
static inline uint32_t sqv_image_word_size(uint32_t word)
{
	return word & ~(UINT32_C(1) << 24);
}

/* What the image did to the backing file since open; thread-safe.
 * metadata_blocks counts metadata blocks read and decompressed: each at
 * most once per sqv_image_drop_metadata. */
struct sqv_image_io {
	uint64_t backing_reads;
	uint64_t backing_bytes;
	uint64_t decompressed_bytes;
	uint64_t corrupt_blocks;
	uint64_t metadata_blocks;
};
void sqv_image_io(const struct sqv_image *img, struct sqv_image_io *out);

#endif
