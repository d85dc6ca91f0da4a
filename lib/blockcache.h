/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * blockcache: decompressed data blocks and fragments, shared by all FUSE
 * threads, bounded in bytes.
 *
 * The cache is split into shards, each with its own mutex, hash table and
 * LRU list, so parallel readers rarely meet on a lock, and no lock is held
 * while a block is read or decompressed (two threads missing on the same
 * block at once may both decompress it; the second insert yields the first
 * one's block). A block handed out is reference-counted and stays valid until
 * put back, even if it is evicted meanwhile. A capacity of 0 caches nothing.
 */
#ifndef SQV_BLOCKCACHE_H
#define SQV_BLOCKCACHE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct sqv_blockcache;

struct sqv_block {
	uint64_t key;
	size_t len;          /* valid bytes in data */
	/* private to blockcache.c */
	struct sqv_block *hnext, *lru_prev, *lru_next;
	atomic_uint refs;    /* the cache's own, plus one per user */
	/* Set by the prefetch (its stored size) until the block is first
	 * asked for or evicted: what the prefetch brought in that a reader
	 * used. */
	atomic_uint prefetched;
	/* Bytes of data handed to the kernel (sqv_blockcache_served), counted
	 * again when asked again. Once they reach len, the kernel's page
	 * cache holds the whole block: its stored form is not worth keeping
	 * when it is evicted ("Spent blocks" in blockcache.c). */
	atomic_size_t served;
	/* data holds the block as stored in the image, still compressed and
	 * not yet checked against a verified image's digest: the prefetch's
	 * form, a third of the memory. A reader decodes it and inserts the
	 * result, which takes its place. Set before insert, never changed
	 * after. */
	bool stored;
	/* Under its shard's lock: the stored form this block was decompressed
	 * from, kept to go back in when this one is evicted (blockcache.c,
	 * "Stored forms"); holds a reference. */
	struct sqv_block *stored_copy;
	/* Under its shard's lock: a prefetched block at the LRU's tail that
	 * was moved to its head once instead of being evicted. */
	bool spared;
	size_t map_len;      /* data is its own mapping of this many bytes */
	/* data came from malloc, not a mapping of its own (a stored block:
	 * see sqv_block_alloc_heap); map_len is then only its charge. */
	bool heap;
	/* Bytes of data's pages ever written, rounded to pages: a mapping
	 * used again keeps the pages of its earlier block resident. */
	size_t touched;
	unsigned char *data;
};

struct sqv_blockcache_stats {
	uint64_t hits, misses, evictions, bytes, blocks;
	/* Prefetched blocks later asked for (count, stored bytes), and ones
	 * evicted before anyone asked. */
	uint64_t prefetch_used_blocks, prefetch_used_bytes, prefetch_unused_evicted;
	uint64_t prefetch_unused_evicted_bytes;
	/* Blocks allocated in the mapping of an evicted one. */
	uint64_t recycled;
};

sqv_err_t sqv_blockcache_new(size_t capacity, struct sqv_blockcache **out);
void sqv_blockcache_free(struct sqv_blockcache *c);

/* A new block of cap bytes, owned by the caller until inserted or put.
 * Its data is a page-aligned mapping of its own: only the pages a block's
 * bytes fill are resident, none holds a header, and an evicted block's
 * memory goes back to the system, unless its cache keeps it as a spare. */
struct sqv_block *sqv_block_alloc(size_t cap);
/* A block of cap bytes whose data comes from malloc. For the prefetch's
 * stored blocks: they come in many sizes, so the spares never recycle
 * their mappings, and a mapping of its own per block cost more CPU (its
 * mmap, page faults and munmap) than decompressing it. Charged as if it
 * were a mapping; never kept as a spare. */
struct sqv_block *sqv_block_alloc_heap(size_t cap);
/* The same as sqv_block_alloc, in the mapping of a block c evicted when
 * it keeps one of that size (see "spares" in blockcache.c), else a new
 * one. c may be NULL. */
struct sqv_block *sqv_blockcache_alloc(struct sqv_blockcache *c, size_t cap);

/* A reference to the cached block for key, or NULL (counted as a miss). */
struct sqv_block *sqv_blockcache_get(struct sqv_blockcache *c, uint64_t key);
/* Insert b (its key set) and return the cached block for its key with a
 * reference: b itself, or one inserted meanwhile (b is then freed). A
 * stored block there is replaced by a b that is not. Never fails: when the
 * cache cannot hold b, b comes back uncached. */
struct sqv_block *sqv_blockcache_insert(struct sqv_blockcache *c,
					struct sqv_block *b);
/* Give back a reference from get, insert or alloc. c may be NULL for an
 * uncached block; the last reference of a block from c should be given
 * back with c, so that its mapping can serve the next alloc. */
void sqv_blockcache_put(struct sqv_blockcache *c, struct sqv_block *b);
/* Note that len bytes of b went to a reader. */
void sqv_blockcache_served(struct sqv_blockcache *c, struct sqv_block *b,
			   size_t len);

/* While on, eviction passes over prefetched blocks nobody has asked for
 * yet (the prefetch bounds how many there are); off (the default), each
 * is spared once at the LRU's tail and then evicted like any other. */
void sqv_blockcache_protect_prefetched(struct sqv_blockcache *c, bool on);

void sqv_blockcache_stats(struct sqv_blockcache *c,
			  struct sqv_blockcache_stats *out);

#endif
