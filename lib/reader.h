/*
 * reader: file contents over a stack, through the block cache.
 *
 * Maps a byte range of a regular file to its blocks and fragment (from the
 * index), takes each from the cache or reads and decompresses it from its
 * image, and copies the requested bytes out. Thread-safe, no global lock.
 */
#ifndef SQV_READER_H
#define SQV_READER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "blockcache.h"
#include "err.h"
#include "index.h"

struct sqv_reader;

sqv_err_t sqv_reader_new(const struct sqv_index *idx, size_t cache_bytes,
			 struct sqv_reader **out);
void sqv_reader_free(struct sqv_reader *r);

/* Read up to size bytes at offset off of regular file ino into buf;
 * *nread is short only at end of file. -SQV_ECORRUPT for a damaged block,
 * -EIO for a failed read of the image, -EISDIR/-EINVAL for non-files. */
sqv_err_t sqv_reader_pread(struct sqv_reader *r, sqv_ino_t ino, void *buf,
			   size_t size, uint64_t off, size_t *nread);

void sqv_reader_cache_stats(struct sqv_reader *r,
			    struct sqv_blockcache_stats *out);

#endif
