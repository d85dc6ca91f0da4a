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
 * Not thread-safe: the image serialises its metadata calls. (Only
 * sqv_meta_preload runs a thread of its own, and joins it before it
 * returns.)
 */
#ifndef SQV_META_H
#define SQV_META_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "io.h"

struct sqv_meta;

/* Where a read starts: a block's image offset and an offset inside it.
 * hint is where meta last found that block (a position in its own list,
 * plus one; 0: none): only a hint, checked against block before use, so a
 * cursor stays valid across sqv_meta_free and a new store. */
struct sqv_meta_cursor {
	uint64_t block;
	uint32_t offset;
	uint32_t hint;
};

/* Metadata of the image on fd (not owned), compression comp, whose blocks
 * all lie in [lo, hi) of the image. When that range is not too large it is
 * read at once in a few large sequential reads (a round trip each on a
 * parallel file system), else each block is read where it lies. name is
 * for messages; the reads are counted in count (lib/base/io.h, may be
 * NULL). -ENOMEM, -EIO. */
sqv_err_t sqv_meta_new(int fd, const char *name, int comp, uint64_t lo,
		       uint64_t hi, struct sqv_io_count *count,
		       struct sqv_meta **out);
void sqv_meta_free(struct sqv_meta *m);

/* A cursor at reference ref (block offset << 16 | offset) from base,
 * checked: the block must decompress to more than offset bytes. */
sqv_err_t sqv_meta_seek(struct sqv_meta *m, uint64_t base, uint64_t ref,
			struct sqv_meta_cursor *out);

/* Read n bytes at cur into buf (NULL: skip them) and move cur past them. */
sqv_err_t sqv_meta_read(struct sqv_meta *m, struct sqv_meta_cursor *cur,
			void *buf, size_t n);

/* Read and decompress now every block of the chains that start at
 * starts[i] and end before ends[i] (ranges that do not overlap), following
 * their headers, with a second thread when the machine has a second core:
 * for a caller that will read them all, such as the index build. A block
 * already held is skipped; a header that leaves its range ends that
 * chain, and what it leaves out is read on first use as before. Each block
 * gets the same checks as on first use. Only when the whole range was read
 * at once (else 0 and nothing done). -ENOMEM. */
sqv_err_t sqv_meta_preload(struct sqv_meta *m, const uint64_t *starts,
			   const uint64_t *ends, size_t nranges);

/* Check each metadata block against this digest table (lib/digest.h)
 * when it is read; NULL checks nothing. raw_checked: the caller has
 * checked the bytes read at once (sqv_meta_stored) against the table, so a
 * block read from them is only looked up in the table, not hashed again;
 * blocks read one by one are hashed as they are read. */
struct sqv_digests;
void sqv_meta_set_digests(struct sqv_meta *m, const struct sqv_digests *d,
			  bool raw_checked);

/* With a digest table: true, and the offset and the reason, when a read
 * needed a block the table does not vouch for (one it does not list as a
 * metadata block of that length, one outside [lo, hi), or one that does
 * not match its digest): the first such block. Such a read fails with
 * -SQV_ECORRUPT like any damage, and logs nothing: the caller says what
 * it means. */
bool sqv_meta_unverified(const struct sqv_meta *m, uint64_t *pos,
			 const char **why);

/* The image's stored bytes [pos, pos + len) where the store read them at
 * once (sqv_meta_new), else NULL. */
const void *sqv_meta_stored(const struct sqv_meta *m, uint64_t pos,
			    size_t len);

/* Metadata blocks read and decompressed by m so far. */
uint64_t sqv_meta_blocks(const struct sqv_meta *m);

#endif
