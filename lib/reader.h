/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * reader: file contents over a stack, through the block cache.
 *
 * Maps a byte range of a regular file to its blocks and fragment (from the
 * index), takes each from the cache or reads and decompresses it from its
 * image, and copies the requested bytes out. Thread-safe, no global lock.
 */
#ifndef SQV_READER_H
#define SQV_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "blockcache.h"
#include "err.h"
#include "index.h"

struct sqv_reader;

sqv_err_t sqv_reader_new(const struct sqv_index *idx, size_t cache_bytes,
			 struct sqv_reader **out);
void sqv_reader_free(struct sqv_reader *r);

/*
 * A read as pieces that point into cached blocks, for a zero-copy reply
 * (iov[0..count) holds bytes in all); valid until sqv_reader_release.
 */
struct sqv_read_pieces {
	struct iovec *iov;
	size_t count;
	size_t bytes;
	struct sqv_block **held; /* the blocks the pieces point into */
	size_t nheld;
};

/* Up to size bytes at offset off of regular file ino; bytes is short only
 * at end of file. Errors as sqv_reader_pread. */
sqv_err_t sqv_reader_pieces(struct sqv_reader *r, sqv_ino_t ino, size_t size,
			    uint64_t off, struct sqv_read_pieces *out);
void sqv_reader_release(struct sqv_reader *r, struct sqv_read_pieces *p);

/* Read up to size bytes at offset off of regular file ino into buf;
 * *nread is short only at end of file. -SQV_ECORRUPT for a damaged block,
 * -EIO for a failed read of the image, -EISDIR/-EINVAL for non-files. */
sqv_err_t sqv_reader_pread(struct sqv_reader *r, sqv_ino_t ino, void *buf,
			   size_t size, uint64_t off, size_t *nread);

void sqv_reader_cache_stats(struct sqv_reader *r,
			    struct sqv_blockcache_stats *out);

/* For the prefetch (prefetch.h). Blocks of layer at image offsets in
 * [next, end) are being read and will be put in the cache: a miss there
 * waits until next has passed it. next == end: nothing in flight. */
void sqv_reader_flight(struct sqv_reader *r, unsigned layer, uint64_t next,
		       uint64_t end);
/* Put a copy of the block the prefetch read (its stored bytes at src,
 * from image offset pos, size word `word`) in the cache as it is stored,
 * marked as prefetched: compressed, it takes a third of the memory, and
 * the reader that asks for it decompresses it (blockcache.h, "stored").
 * False when another thread's copy was there first, or out of memory. */
bool sqv_reader_put_prefetched(struct sqv_reader *r, unsigned layer,
			       uint64_t pos, uint32_t word, const void *src);

/* sqv_blockcache_protect_prefetched on the reader's cache. */
void sqv_reader_protect_prefetched(struct sqv_reader *r, bool on);

#endif
