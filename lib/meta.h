/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * meta: the metadata blocks of one squashfs image (inode, directory,
 * fragment, id and xattr tables), each read from the image and
 * decompressed at most once, then held in memory until sqv_meta_free.
 *
 * Every metadata reference in squashfs is (image offset of a block, offset
 * in its decompressed bytes), and a structure may run on into the next
 * block, which follows the stored bytes. sqv_meta_read serves such reads:
 * it checks the block, that the offset lies inside its decompressed bytes
 * and that every block the read crosses is whole, so a hostile reference
 * gives -SQV_ECORRUPT, never bytes from elsewhere. Blocks are decompressed
 * on first use, by one context that is kept (decomp.h).
 *
 * Not thread-safe: the image serialises its metadata calls.
 */
#ifndef SQV_META_H
#define SQV_META_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct sqv_meta;

/* Where a read starts: a block's image offset and an offset inside it. */
struct sqv_meta_cursor {
	uint64_t block;
	size_t offset;
};

/* Metadata of the image on fd (not owned), compression comp, whose blocks
 * all lie in [lo, hi) of the image. When that range is not too large it is
 * read at once in a few large sequential reads (a round trip each on a
 * parallel file system), else each block is read where it lies. name is
 * for messages. -ENOMEM, -EIO. */
sqv_err_t sqv_meta_new(int fd, const char *name, int comp, uint64_t lo,
		       uint64_t hi, struct sqv_meta **out);
void sqv_meta_free(struct sqv_meta *m);

/* A cursor at reference ref (block offset << 16 | offset) from base,
 * checked: the block must decompress to more than offset bytes. */
sqv_err_t sqv_meta_seek(struct sqv_meta *m, uint64_t base, uint64_t ref,
			struct sqv_meta_cursor *out);

/* Read n bytes at cur into buf (NULL: skip them) and move cur past them. */
sqv_err_t sqv_meta_read(struct sqv_meta *m, struct sqv_meta_cursor *cur,
			void *buf, size_t n);

/* Check each metadata block against this digest table (lib/digest.h)
 * when it is read; NULL checks nothing. */
struct sqv_digests;
void sqv_meta_set_digests(struct sqv_meta *m, const struct sqv_digests *d);

/* Metadata blocks read and decompressed by m so far. */
uint64_t sqv_meta_blocks(const struct sqv_meta *m);

#endif
