/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * prefetch: read the hot ranges of hot-first images (hot.h) in a few large
 * sequential reads, on a thread of its own, into the block cache.
 *
 * A parallel file system serves one 4 MiB read almost as fast as one
 * 128 KiB read, so the blocks a recorded workload needs arrive in a few
 * round trips, before it asks for them. The blocks go into the cache as
 * they are stored, compressed, so the prefetch's share of the cache holds
 * about three times as many of them; a reader decompresses a block on
 * first use. Promises:
 *  - memory: blocks go into the block cache, whose byte bound holds; the
 *    prefetch keeps at most half the cache in stored bytes nobody has asked
 *    for yet, and pauses until readers catch up; besides the cache it holds
 *    one buffer of chunk plus a block, which the daemon takes out of
 *    cache_size (prefetch_reserve in daemon/main.c);
 *  - no double reads: while a chunk is read and put in the cache, a reader
 *    missing one of its blocks waits for it (sqv_reader_flight);
 *  - failure: a read error, or a block whose stored bytes cannot
 *    decompress (a bad frame header or length: sqv_image_check_stored),
 *    stops the prefetch with one log line; readers then read (and fail) as
 *    without prefetch. A block damaged inside its frame, or one that fails
 *    a verified image's digest, is found by its reader: EIO and the usual
 *    log line, as without prefetch;
 *  - a stale trace: while it vouches for its trace, the cache evicts other
 *    blocks before its unused ones (sqv_reader_protect_prefetched); once
 *    the readers have missed the cache for a quarter of the cache's
 *    blocks, and more often than they used its blocks, it stops and
 *    withdraws that protection.
 */
#ifndef SQV_PREFETCH_H
#define SQV_PREFETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "hot.h"
#include "index.h"
#include "reader.h"

struct sqv_prefetch;

/* One per layer of the index: where its hot-range record is, if it has
 * one (from sqv_hot_locate at mount). */
struct sqv_prefetch_layer {
	bool has_record;
	struct sqv_hot_where where;
};

/* Start the thread. chunk is the size of each read (0: do nothing);
 * cache_bytes the block cache's capacity. */
sqv_err_t sqv_prefetch_start(const struct sqv_index *idx,
			     struct sqv_reader *r,
			     const struct sqv_prefetch_layer *layers,
			     size_t chunk, size_t cache_bytes,
			     struct sqv_prefetch **out);
/* Stop the thread (it finishes the block at hand) and free. NULL is fine. */
void sqv_prefetch_stop(struct sqv_prefetch *pf);

struct sqv_prefetch_stats {
	uint64_t hot_bytes;  /* bytes of the images' hot ranges */
	uint64_t reads;      /* reads of the images the prefetch made */
	uint64_t bytes;      /* bytes those reads returned */
	uint64_t blocks;     /* blocks it put in the cache */
	bool done;           /* the thread has finished (or stopped) */
	bool failed;         /* stopped by a read error or a damaged block */
};
void sqv_prefetch_stats(struct sqv_prefetch *pf, struct sqv_prefetch_stats *out);

#endif
