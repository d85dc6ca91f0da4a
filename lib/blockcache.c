/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * blockcache: a sharded, byte-bounded LRU of decompressed blocks.
 *
 * Reference counting: a block in the cache holds one reference for the
 * cache itself, and one more per user (get/insert). Eviction unlinks a block
 * and drops the cache's reference; whoever drops the last one frees it, so a
 * block being copied out by one thread can be evicted by another safely.
 *
 * Stored forms: the prefetch puts blocks in as stored in the image,
 * compressed. The reader that first asks for one inserts its decompressed
 * form, which takes the stored one's place and keeps it if it is smaller
 * (stored_copy, charged to the block). When that block is evicted, its
 * stored form goes back in at the LRU's head: a third of the memory, and
 * the block is decompressed again rather than read again if someone asks.
 * A library that Python maps is read page by page in no set order, so
 * blocks are asked for again long after their first use.
 *
 * Spent blocks: a block all of whose bytes went to readers
 * (sqv_blockcache_served) is in the kernel's page cache, which the daemon
 * always lets keep file data: it moves to the LRU's tail, and evicted it
 * leaves no stored form behind. What stays is what was served in part.
 *
 * Spares: a block's data is a mapping of its own (blockcache.h; the
 * prefetch's stored blocks, on the heap, are never spares), and
 * unmapping it costs more than the block's decompression. munmap flushes
 * the TLB of every CPU that runs one of the daemon's threads (an
 * inter-processor interrupt each), and the next block's fresh mapping
 * takes a page fault per 4 KiB page. `sqvenvfs-inspect dump --hash` spent
 * a quarter of its time there. So the mapping of a block whose last
 * reference goes back to its cache is kept as a spare, up to a few blocks'
 * worth, and the next alloc of that size takes it. The spares' bytes are
 * part of the capacity: the shards hold that much less.
 */
#include "blockcache.h"

#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define MAX_SHARDS 16
/* Each shard should hold at least a few of the largest (1 MiB) blocks. */
#define MIN_SHARD_BYTES (4u << 20)
/* Spares: at most this share of the capacity, and at most SPARE_MAX_BYTES
 * (16 blocks of 128 KiB, more than the daemon's threads evict at once). */
#define SPARE_SHARE 32
#define SPARE_MAX_BYTES (2u << 20)
/* Heap blocks (sqv_block_alloc_heap): after this many of their bytes are
 * freed, the heap's free pages go back to the system (heap_freed). */
#define HEAP_TRIM_BYTES (4u << 20)

struct shard {
	pthread_mutex_t lock;
	/* Everything below is protected by lock. */
	struct sqv_block **buckets;
	size_t nbuckets;          /* a power of two */
	struct sqv_block *lru_head, *lru_tail; /* head = most recent */
	size_t bytes, blocks, capacity;
};

struct sqv_blockcache {
	size_t nshards;
	struct shard shards[MAX_SHARDS];
	atomic_uint_fast64_t hits, misses, evictions;
	atomic_uint_fast64_t pf_used_blocks, pf_used_bytes, pf_unused_evicted;
	atomic_uint_fast64_t pf_unused_evicted_bytes;
	atomic_uint_fast64_t recycled;
	/* Set by the prefetch while its trace matches the workload (see
	 * insert); read without a lock, as a hint. */
	atomic_bool protect_prefetched;

	pthread_mutex_t spare_lock;
	/* Protected by spare_lock: unused blocks, linked through hnext, whose
	 * map_len add up to spare_bytes <= spare_cap. */
	struct sqv_block *spares;
	size_t spare_bytes, spare_cap;

	/* Bytes of heap blocks freed since the heap was last trimmed. free()
	 * keeps a freed block's pages, and nothing else the daemon allocates
	 * reuses them once the prefetch is done: untrimmed, the hot-first
	 * import's daemon peaked 15 MiB over cache_size, against 3 MiB. */
	atomic_uint_fast64_t heap_freed;
};

/* References are atomic so that put() needs no lock. */
static atomic_uint *refs_of(struct sqv_block *b)
{
	return &b->refs;
}

static uint64_t hash_key(uint64_t x)
{
	x ^= x >> 31;
	x *= UINT64_C(0x9e3779b97f4a7c15);
	return x ^ (x >> 29);
}

static struct shard *shard_of(struct sqv_blockcache *c, uint64_t key)
{
	return &c->shards[hash_key(key) % c->nshards];
}

sqv_err_t sqv_blockcache_new(size_t capacity, struct sqv_blockcache **out)
{
	struct sqv_blockcache *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->spare_lock, NULL);
	/* A cache smaller than a shard is a test's or a tight bound's: no
	 * spares, every byte for blocks. */
	if (capacity >= MIN_SHARD_BYTES)
		c->spare_cap = capacity / SPARE_SHARE;
	if (c->spare_cap > SPARE_MAX_BYTES)
		c->spare_cap = SPARE_MAX_BYTES;
	c->nshards = capacity / MIN_SHARD_BYTES;
	if (c->nshards < 1)
		c->nshards = 1;
	if (c->nshards > MAX_SHARDS)
		c->nshards = MAX_SHARDS;
	for (size_t i = 0; i < c->nshards; i++) {
		struct shard *s = &c->shards[i];
		pthread_mutex_init(&s->lock, NULL);
		s->capacity = (capacity - c->spare_cap) / c->nshards;
		/* Buckets for the smallest blocks (4 KiB) that could fill it. */
		s->nbuckets = 64;
		while (s->nbuckets < s->capacity / 4096 && s->nbuckets < (1u << 20))
			s->nbuckets *= 2;
		s->buckets = calloc(s->nbuckets, sizeof(*s->buckets));
		if (!s->buckets) {
			c->nshards = i + 1;
			sqv_blockcache_free(c);
			return -ENOMEM;
		}
	}
	*out = c;
	return 0;
}

static void block_destroy(struct sqv_block *b)
{
	if (b->heap)
		free(b->data);
	else
		munmap(b->data, b->map_len);
	free(b);
}

static size_t page_round(size_t n)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE); /* no system call */

	return (n + page - 1) / page * page;
}

static void block_unref(struct sqv_blockcache *c, struct sqv_block *b);

/* Keep b, unused now, as a spare of c if there is room; else unmap it. */
static void block_retire(struct sqv_blockcache *c, struct sqv_block *b)
{
	if (b->stored_copy) {
		block_unref(c, b->stored_copy);
		b->stored_copy = NULL;
	}
	/* A block that never got its bytes may have written any of its
	 * pages: count them all. */
	size_t len = b->len ? page_round(b->len) : b->map_len;

	if (len > b->touched)
		b->touched = len < b->map_len ? len : b->map_len;
	if (c && c->spare_cap && !b->heap) {
		pthread_mutex_lock(&c->spare_lock);
		if (c->spare_bytes + b->map_len <= c->spare_cap) {
			b->hnext = c->spares;
			c->spares = b;
			c->spare_bytes += b->map_len;
			b = NULL;
		}
		pthread_mutex_unlock(&c->spare_lock);
	}
	if (!b)
		return;
	size_t heap_len = b->heap ? b->map_len : 0;
	block_destroy(b);
	if (c && heap_len &&
	    atomic_fetch_add(&c->heap_freed, heap_len) + heap_len >=
		    HEAP_TRIM_BYTES) {
		atomic_store(&c->heap_freed, 0);
		malloc_trim(0);
	}
}

/* Drop a reference to b; c is the cache that may keep its mapping. */
static void block_unref(struct sqv_blockcache *c, struct sqv_block *b)
{
	if (atomic_fetch_sub(refs_of(b), 1) == 1)
		block_retire(c, b);
}

void sqv_blockcache_free(struct sqv_blockcache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->nshards; i++) {
		struct shard *s = &c->shards[i];
		struct sqv_block *b = s->lru_head;
		while (b) {
			struct sqv_block *next = b->lru_next;
			block_unref(NULL, b);
			b = next;
		}
		free(s->buckets);
		pthread_mutex_destroy(&s->lock);
	}
	while (c->spares) {
		struct sqv_block *next = c->spares->hnext;
		block_destroy(c->spares);
		c->spares = next;
	}
	pthread_mutex_destroy(&c->spare_lock);
	free(c);
}

/* b as a new block: empty, unlinked, its caller's reference only. */
static struct sqv_block *block_reset(struct sqv_block *b)
{
	b->key = 0;
	b->len = 0;
	b->hnext = b->lru_prev = b->lru_next = NULL;
	atomic_store(refs_of(b), 1);
	atomic_store(&b->prefetched, 0);
	atomic_store(&b->served, 0);
	b->stored = false;
	b->stored_copy = NULL;
	b->spared = false;
	return b;
}

/* A new block of cap bytes, its data from the heap or a mapping of its
 * own. */
static struct sqv_block *block_new(size_t cap, bool heap)
{
	struct sqv_block *b = malloc(sizeof(*b));

	if (!b)
		return NULL;
	b->map_len = cap ? page_round(cap) : page_round(1);
	b->heap = heap;
	if (heap) {
		b->data = malloc(cap ? cap : 1);
	} else {
		b->data = mmap(NULL, b->map_len, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (b->data == MAP_FAILED)
			b->data = NULL;
	}
	if (!b->data) {
		free(b);
		return NULL;
	}
	b->touched = 0;
	return block_reset(b);
}

/*
 * The data is not allocated with its header: malloc would put a chunk
 * header in front of it, and a 128 KiB block would touch 33 pages instead
 * of 32 (3 %: 2 MiB more than cache_size in a full 64 MiB cache).
 */
struct sqv_block *sqv_block_alloc(size_t cap)
{
	return block_new(cap, false);
}

struct sqv_block *sqv_block_alloc_heap(size_t cap)
{
	return block_new(cap, true);
}

struct sqv_block *sqv_blockcache_alloc(struct sqv_blockcache *c, size_t cap)
{
	size_t map_len = cap ? page_round(cap) : page_round(1);
	struct sqv_block *b = NULL;

	if (c && c->spare_cap) {
		pthread_mutex_lock(&c->spare_lock);
		for (struct sqv_block **pp = &c->spares; *pp;
		     pp = &(*pp)->hnext) {
			if ((*pp)->map_len == map_len) {
				b = *pp;
				*pp = b->hnext;
				c->spare_bytes -= b->map_len;
				break;
			}
		}
		pthread_mutex_unlock(&c->spare_lock);
	}
	if (!b)
		return sqv_block_alloc(cap);
	atomic_fetch_add_explicit(&c->recycled, 1, memory_order_relaxed);
	return block_reset(b);
}

static void lru_unlink(struct shard *s, struct sqv_block *b)
{
	if (b->lru_prev)
		b->lru_prev->lru_next = b->lru_next;
	else
		s->lru_head = b->lru_next;
	if (b->lru_next)
		b->lru_next->lru_prev = b->lru_prev;
	else
		s->lru_tail = b->lru_prev;
	b->lru_prev = b->lru_next = NULL;
}

static void lru_push_front(struct shard *s, struct sqv_block *b)
{
	b->lru_prev = NULL;
	b->lru_next = s->lru_head;
	if (s->lru_head)
		s->lru_head->lru_prev = b;
	s->lru_head = b;
	if (!s->lru_tail)
		s->lru_tail = b;
}

static void lru_push_back(struct shard *s, struct sqv_block *b)
{
	b->lru_next = NULL;
	b->lru_prev = s->lru_tail;
	if (s->lru_tail)
		s->lru_tail->lru_next = b;
	s->lru_tail = b;
	if (!s->lru_head)
		s->lru_head = b;
}

static struct sqv_block **bucket_of(struct shard *s, uint64_t key)
{
	return &s->buckets[(hash_key(key) >> 8) & (s->nbuckets - 1)];
}

static struct sqv_block *find_locked(struct shard *s, uint64_t key)
{
	for (struct sqv_block *b = *bucket_of(s, key); b; b = b->hnext)
		if (b->key == key)
			return b;
	return NULL;
}

/* What a cached block costs: its pages touched, not its bytes. A block
 * shorter than its mapping (a file's last block, a short fragment block)
 * still holds whole pages; counting len let a full cache of such blocks
 * hold more than cache_size (1.2 MiB over 64 MiB for the venv). */
static size_t resident(const struct sqv_block *b)
{
	size_t r = page_round(b->len);

	if (r < b->touched)
		r = b->touched;
	return r < b->map_len ? r : b->map_len;
}

/* What a block in the cache is charged: its own pages, and those of the
 * stored form it keeps (see "Stored forms" above). */
static size_t charge(const struct sqv_block *b)
{
	return resident(b) + (b->stored_copy ? resident(b->stored_copy) : 0);
}

static void link_locked(struct shard *s, struct sqv_block *b)
{
	struct sqv_block **bucket = bucket_of(s, b->key);
	b->hnext = *bucket;
	*bucket = b;
	lru_push_front(s, b);
	s->bytes += charge(b);
	s->blocks++;
}

static void unlink_locked(struct shard *s, struct sqv_block *b)
{
	struct sqv_block **pp = bucket_of(s, b->key);
	while (*pp != b)
		pp = &(*pp)->hnext;
	*pp = b->hnext;
	b->hnext = NULL;
	lru_unlink(s, b);
	s->bytes -= charge(b);
	s->blocks--;
}

struct sqv_block *sqv_blockcache_get(struct sqv_blockcache *c, uint64_t key)
{
	struct shard *s = shard_of(c, key);
	struct sqv_block *b;

	pthread_mutex_lock(&s->lock);
	b = s->capacity ? find_locked(s, key) : NULL;
	if (b) {
		atomic_fetch_add(refs_of(b), 1);
		if (s->lru_head != b) {
			lru_unlink(s, b);
			lru_push_front(s, b);
		}
	}
	pthread_mutex_unlock(&s->lock);
	atomic_fetch_add_explicit(b ? &c->hits : &c->misses, 1,
				  memory_order_relaxed);
	unsigned pf = b ? atomic_exchange(&b->prefetched, 0) : 0;
	if (pf) {
		atomic_fetch_add_explicit(&c->pf_used_blocks, 1,
					  memory_order_relaxed);
		atomic_fetch_add_explicit(&c->pf_used_bytes, pf,
					  memory_order_relaxed);
	}
	return b;
}

/* b leaves the cache: if it is a prefetched block nobody asked for, the
 * prefetch's work on it was wasted. */
static void count_unused(struct sqv_blockcache *c, struct sqv_block *b)
{
	unsigned pf = atomic_exchange(&b->prefetched, 0);

	if (pf) {
		atomic_fetch_add_explicit(&c->pf_unused_evicted, 1,
					  memory_order_relaxed);
		atomic_fetch_add_explicit(&c->pf_unused_evicted_bytes, pf,
					  memory_order_relaxed);
	}
}

struct sqv_block *sqv_blockcache_insert(struct sqv_blockcache *c,
					struct sqv_block *b)
{
	struct shard *s = shard_of(c, b->key);
	struct sqv_block *victims = NULL, *replaced = NULL;
	struct sqv_block *have;

	if (charge(b) > s->capacity)
		return b; /* uncached: the caller's reference is the only one */

	pthread_mutex_lock(&s->lock);
	have = find_locked(s, b->key);
	if (have && have->stored && !b->stored) {
		/* A reader decompressed a block the prefetch left stored: the
		 * result takes its place (the reader holds it meanwhile). */
		unlink_locked(s, have);
		replaced = have;
		have = NULL;
	}
	/* The stored form goes along, with the cache's reference, if it is
	 * smaller (an uncompressed block's is not). */
	if (replaced && resident(replaced) < resident(b)) {
		b->stored_copy = replaced;
		atomic_fetch_add(refs_of(replaced), 1);
	}
	if (have) {
		/* Another thread decompressed the same block first. */
		atomic_fetch_add(refs_of(have), 1);
		pthread_mutex_unlock(&s->lock);
		block_unref(c, b);
		return have;
	}
	bool protect = atomic_load_explicit(&c->protect_prefetched,
					    memory_order_relaxed);
	while (s->bytes + charge(b) > s->capacity && s->lru_tail) {
		struct sqv_block *v = s->lru_tail;
		/* The prefetch runs ahead of its readers, so the block they
		 * need next went in before the ones they just used, and a
		 * plain LRU would evict it first. While the prefetch vouches
		 * for its blocks (protect_prefetched), the oldest block that
		 * nobody is waiting for goes instead; only a shard holding
		 * nothing else gives up a prefetched one. Otherwise a
		 * prefetched block is spared once, so a wrong trace's blocks
		 * still go (and are counted as unused). */
		if (protect) {
			while (v && atomic_load(&v->prefetched))
				v = v->lru_prev;
			if (!v)
				v = s->lru_tail;
		} else if (!v->spared && atomic_load(&v->prefetched)) {
			v->spared = true;
			lru_unlink(s, v);
			lru_push_front(s, v);
			continue;
		}
		unlink_locked(s, v);
		if (v->stored_copy &&
		    atomic_load_explicit(&v->served, memory_order_relaxed) <
			    v->len) {
			/* Demoted to its stored form, a third of the size. */
			link_locked(s, v->stored_copy);
			v->stored_copy = NULL;
		}
		v->hnext = victims;
		victims = v;
	}
	link_locked(s, b);
	atomic_fetch_add(refs_of(b), 1); /* the cache's own reference */
	pthread_mutex_unlock(&s->lock);

	if (replaced) {
		/* Its prefetched mark is still set only if the reader read the
		 * block itself instead: the prefetch's copy went unused. */
		count_unused(c, replaced);
		block_unref(c, replaced);
	}
	while (victims) {
		struct sqv_block *next = victims->hnext;
		atomic_fetch_add_explicit(&c->evictions, 1, memory_order_relaxed);
		count_unused(c, victims);
		block_unref(c, victims);
		victims = next;
	}
	return b;
}

void sqv_blockcache_protect_prefetched(struct sqv_blockcache *c, bool on)
{
	atomic_store(&c->protect_prefetched, on);
}

void sqv_blockcache_served(struct sqv_blockcache *c, struct sqv_block *b,
			   size_t len)
{
	size_t before = atomic_fetch_add_explicit(&b->served, len,
						  memory_order_relaxed);

	if (!c || before >= b->len || before + len < b->len)
		return;
	/* Spent: the kernel's page cache holds all of it now, so it goes
	 * before any block that may still be asked for. */
	struct shard *s = shard_of(c, b->key);
	pthread_mutex_lock(&s->lock);
	if (s->capacity && find_locked(s, b->key) == b) {
		lru_unlink(s, b);
		lru_push_back(s, b);
	}
	pthread_mutex_unlock(&s->lock);
}

void sqv_blockcache_put(struct sqv_blockcache *c, struct sqv_block *b)
{
	if (b)
		block_unref(c, b);
}

void sqv_blockcache_stats(struct sqv_blockcache *c,
			  struct sqv_blockcache_stats *out)
{
	struct sqv_blockcache_stats st = {
		.hits = atomic_load(&c->hits),
		.misses = atomic_load(&c->misses),
		.evictions = atomic_load(&c->evictions),
		.prefetch_used_blocks = atomic_load(&c->pf_used_blocks),
		.prefetch_used_bytes = atomic_load(&c->pf_used_bytes),
		.prefetch_unused_evicted = atomic_load(&c->pf_unused_evicted),
		.prefetch_unused_evicted_bytes =
			atomic_load(&c->pf_unused_evicted_bytes),
		.recycled = atomic_load(&c->recycled),
	};

	for (size_t i = 0; i < c->nshards; i++) {
		struct shard *s = &c->shards[i];
		pthread_mutex_lock(&s->lock);
		st.bytes += s->bytes;
		st.blocks += s->blocks;
		pthread_mutex_unlock(&s->lock);
	}
	*out = st;
}
