/* SPDX-License-Identifier: BSD-2-Clause */
/* The block cache: hits and misses, the byte bound and LRU order, blocks
 * that stay valid after eviction, a zero-sized cache, the second chance of
 * prefetched blocks and their protection, stored (compressed) blocks
 * replaced by their decompressed form, spent blocks (served in full), the
 * mappings of evicted blocks used again, heap blocks (never spares, their
 * memory given back), and many threads. */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "blockcache.h"
#include "check.h"

static struct sqv_block *fill(struct sqv_block *b, uint64_t key, size_t len)
{
	b->key = key;
	b->len = len;
	memset(b->data, (int)(key & 0xff), len);
	return b;
}

static struct sqv_block *make(uint64_t key, size_t len)
{
	return fill(sqv_block_alloc(len), key, len);
}

static bool filled(const struct sqv_block *b, uint64_t key)
{
	for (size_t i = 0; i < b->len; i++)
		if (b->data[i] != (unsigned char)(key & 0xff))
			return false;
	return true;
}

static void test_basic(void)
{
	struct sqv_blockcache *c;
	struct sqv_blockcache_stats st;

	CHECK_EQ(sqv_blockcache_new(1 << 20, &c), 0);
	CHECK(sqv_blockcache_get(c, 1) == NULL);
	struct sqv_block *b = sqv_blockcache_insert(c, make(1, 4096));
	CHECK(b != NULL && b->key == 1);
	sqv_blockcache_put(c, b);
	b = sqv_blockcache_get(c, 1);
	CHECK(b != NULL && filled(b, 1));
	sqv_blockcache_put(c, b);
	/* A second insert of the same key yields the first block. */
	struct sqv_block *first = sqv_blockcache_get(c, 1);
	struct sqv_block *again = sqv_blockcache_insert(c, make(1, 4096));
	CHECK(again == first);
	sqv_blockcache_put(c, first);
	sqv_blockcache_put(c, again);
	sqv_blockcache_stats(c, &st);
	CHECK_EQ(st.hits, 2);
	CHECK_EQ(st.misses, 1);
	CHECK_EQ(st.blocks, 1);
	CHECK_EQ(st.bytes, 4096);
	sqv_blockcache_free(c);
}

static void test_bound_and_lru(void)
{
	struct sqv_blockcache *c;
	struct sqv_blockcache_stats st;

	/* One shard of 4 blocks of 128 KiB. */
	CHECK_EQ(sqv_blockcache_new(4 * 131072, &c), 0);
	for (uint64_t k = 1; k <= 4; k++)
		sqv_blockcache_put(c, sqv_blockcache_insert(c, make(k, 131072)));
	/* Hold 1, then touch 2, 3, 4: 1 is now the least recently used, and
	 * is evicted while held; it must stay readable. */
	struct sqv_block *held = sqv_blockcache_get(c, 1);
	for (uint64_t k = 2; k <= 4; k++)
		sqv_blockcache_put(c, sqv_blockcache_get(c, k));
	sqv_blockcache_put(c, sqv_blockcache_insert(c, make(5, 131072)));
	sqv_blockcache_stats(c, &st);
	CHECK_EQ(st.evictions, 1);
	CHECK(st.bytes <= 4 * 131072);
	CHECK(filled(held, 1));
	sqv_blockcache_put(c, held);
	struct sqv_block *b = sqv_blockcache_get(c, 1);
	CHECK(b == NULL); /* 1 was the one evicted */
	b = sqv_blockcache_get(c, 2);
	CHECK(b != NULL);
	sqv_blockcache_put(c, b);
	/* A block larger than the whole cache comes back uncached. */
	struct sqv_block *huge = sqv_blockcache_insert(c, make(9, 1 << 20));
	CHECK(huge != NULL && filled(huge, 9));
	sqv_blockcache_put(c, huge);
	CHECK(sqv_blockcache_get(c, 9) == NULL);
	sqv_blockcache_free(c);
}

/* A prefetched block nobody asked for is spared once at the LRU's tail,
 * where a reader's just-used blocks go first; spared, it is evicted like
 * any other and counted as unused. */
static void test_second_chance(void)
{
	struct sqv_blockcache *c;
	struct sqv_blockcache_stats st;

	/* One shard of 4 blocks of 128 KiB: 1 prefetched, then 2-4 used. */
	CHECK_EQ(sqv_blockcache_new(4 * 131072, &c), 0);
	struct sqv_block *pf = make(1, 131072);
	atomic_store(&pf->prefetched, 131072);
	sqv_blockcache_put(c, sqv_blockcache_insert(c, pf));
	for (uint64_t k = 2; k <= 4; k++)
		sqv_blockcache_put(c, sqv_blockcache_insert(c, make(k, 131072)));
	/* 1 is the LRU's tail, but 2 goes. */
	sqv_blockcache_put(c, sqv_blockcache_insert(c, make(5, 131072)));
	CHECK(sqv_blockcache_get(c, 2) == NULL);
	sqv_blockcache_stats(c, &st);
	CHECK_EQ(st.evictions, 1);
	CHECK_EQ(st.prefetch_unused_evicted, 0);
	/* Spared once: three more inserts push it out, counted unused. */
	for (uint64_t k = 6; k <= 8; k++)
		sqv_blockcache_put(c, sqv_blockcache_insert(c, make(k, 131072)));
	CHECK(sqv_blockcache_get(c, 1) == NULL);
	sqv_blockcache_stats(c, &st);
	CHECK_EQ(st.prefetch_unused_evicted, 1);
	CHECK_EQ(st.prefetch_used_blocks, 0);
	CHECK(st.bytes <= 4 * 131072);
	sqv_blockcache_free(c);
}

/* While the prefetch vouches for its blocks, eviction passes over them and
 * takes the oldest other block, again and again; a shard holding nothing
 * else gives up its oldest prefetched block. */
static void test_protected(void)
{
	struct sqv_blockcache *c;
	struct sqv_blockcache_stats st;

	/* One shard of 4 blocks of 128 KiB: 1 and 2 prefetched, then 3, 4. */
	CHECK_EQ(sqv_blockcache_new(4 * 131072, &c), 0);
	sqv_blockcache_protect_prefetched(c, true);
	for (uint64_t k = 1; k <= 4; k++) {
		struct sqv_block *b = make(k, 131072);
		if (k <= 2)
			atomic_store(&b->prefetched, 131072);
		sqv_blockcache_put(c, sqv_blockcache_insert(c, b));
	}
	/* Eight more: each evicts the oldest unprefetched block. */
	for (uint64_t k = 5; k <= 12; k++)
		sqv_blockcache_put(c, sqv_blockcache_insert(c, make(k, 131072)));
	sqv_blockcache_stats(c, &st);
	CHECK_EQ(st.evictions, 8);
	CHECK_EQ(st.prefetch_unused_evicted, 0);
	CHECK(sqv_blockcache_get(c, 10) == NULL);
	struct sqv_block *b = sqv_blockcache_get(c, 1);
	CHECK(b != NULL && filled(b, 1)); /* used: now like any other */
	sqv_blockcache_put(c, b);
	/* Nothing but prefetched blocks: the oldest goes. */
	for (uint64_t k = 20; k <= 23; k++) {
		b = make(k, 131072);
		atomic_store(&b->prefetched, 131072);
		sqv_blockcache_put(c, sqv_blockcache_insert(c, b));
	}
	sqv_blockcache_stats(c, &st);
	CHECK_EQ(st.prefetch_unused_evicted, 1);
	CHECK(sqv_blockcache_get(c, 2) == NULL);
	CHECK(st.bytes <= 4 * 131072);
	/* Off again: a prefetched block at the tail is spared once only
	 * (test_second_chance). */
	sqv_blockcache_protect_prefetched(c, false);
	for (uint64_t k = 30; k <= 37; k++)
		sqv_blockcache_put(c, sqv_blockcache_insert(c, make(k, 131072)));
	sqv_blockcache_stats(c, &st);
	CHECK_EQ(st.prefetch_unused_evicted, 5); /* 2, then 20-23 */
	sqv_blockcache_free(c);
}

/* The prefetch leaves a block stored; the reader that asks for it inserts
 * its decompressed form, which takes its place and keeps it: one entry, charged at the
 * new size, the prefetch counted as used, not as an eviction. A stored
 * block does not replace a decompressed one. */
static void test_stored_replaced(void)
{
	struct sqv_blockcache *c;
	struct sqv_blockcache_stats st;

	CHECK_EQ(sqv_blockcache_new(1 << 20, &c), 0);
	struct sqv_block *st_b = make(7, 8192);
	st_b->stored = true;
	atomic_store(&st_b->prefetched, 8192);
	sqv_blockcache_put(c, sqv_blockcache_insert(c, st_b));
	/* Another stored copy yields the first. */
	struct sqv_block *dup = make(7, 8192);
	dup->stored = true;
	struct sqv_block *got = sqv_blockcache_insert(c, dup);
	CHECK(got != dup && got->stored);
	sqv_blockcache_put(c, got);

	struct sqv_block *seen = sqv_blockcache_get(c, 7);
	CHECK(seen != NULL && seen->stored && filled(seen, 7));
	struct sqv_block *full = make(7, 131072);
	got = sqv_blockcache_insert(c, full);
	CHECK(got == full && !got->stored);
	CHECK(filled(seen, 7)); /* the reader's reference keeps it valid */
	sqv_blockcache_put(c, seen);
	sqv_blockcache_put(c, got);
	got = sqv_blockcache_get(c, 7);
	CHECK(got == full);
	sqv_blockcache_put(c, got);
	/* Now a stored copy yields the decompressed block. */
	struct sqv_block *late = make(7, 8192);
	late->stored = true;
	got = sqv_blockcache_insert(c, late);
	CHECK(got == full);
	sqv_blockcache_put(c, got);

	sqv_blockcache_stats(c, &st);
	CHECK_EQ(st.blocks, 1);
	CHECK_EQ(st.bytes, 131072 + 8192); /* it keeps its stored form */
	CHECK_EQ(st.evictions, 0);
	CHECK_EQ(st.prefetch_used_blocks, 1);
	CHECK_EQ(st.prefetch_used_bytes, 8192);
	CHECK_EQ(st.prefetch_unused_evicted, 0);

	/* Replaced without having been asked for (the reader read the
	 * block itself): the prefetch's copy counts as unused. */
	struct sqv_block *st2 = make(8, 4096);
	st2->stored = true;
	atomic_store(&st2->prefetched, 4096);
	sqv_blockcache_put(c, sqv_blockcache_insert(c, st2));
	sqv_blockcache_put(c, sqv_blockcache_insert(c, make(8, 65536)));
	sqv_blockcache_stats(c, &st);
	CHECK_EQ(st.blocks, 2);
	CHECK_EQ(st.prefetch_unused_evicted, 1);
	CHECK_EQ(st.prefetch_unused_evicted_bytes, 4096);
	sqv_blockcache_free(c);

	/* Evicted, a decompressed block goes back to its stored form, at
	 * the head; evicted again, it is gone. One shard of 4 x 128 KiB. */
	CHECK_EQ(sqv_blockcache_new(4 * 131072, &c), 0);
	st_b = make(1, 4096);
	st_b->stored = true;
	sqv_blockcache_put(c, sqv_blockcache_insert(c, st_b));
	sqv_blockcache_put(c, sqv_blockcache_insert(c, make(1, 131072 - 4096)));
	/* Charged 128 KiB with its stored form: 2-4 fill the shard, 5
	 * evicts it, and 2 too, for the stored form that came back. */
	for (uint64_t k = 2; k <= 5; k++)
		sqv_blockcache_put(c, sqv_blockcache_insert(c, make(k, 131072)));
	CHECK(sqv_blockcache_get(c, 2) == NULL);
	got = sqv_blockcache_get(c, 1);
	CHECK(got != NULL && got->stored && got->len == 4096 && filled(got, 1));
	sqv_blockcache_put(c, got);
	sqv_blockcache_stats(c, &st);
	CHECK_EQ(st.blocks, 4);
	CHECK_EQ(st.bytes, 4096 + 3 * 131072);
	for (uint64_t k = 6; k <= 9; k++)
		sqv_blockcache_put(c, sqv_blockcache_insert(c, make(k, 131072)));
	CHECK(sqv_blockcache_get(c, 1) == NULL);
	sqv_blockcache_stats(c, &st);
	CHECK(st.bytes <= 4 * 131072);
	sqv_blockcache_free(c);
}

/* A block all of whose bytes went to readers is spent: the kernel's page
 * cache holds them. It goes before blocks used more recently, and without
 * coming back in its stored form. */
static void test_spent(void)
{
	struct sqv_blockcache *c;
	struct sqv_blockcache_stats st;

	/* One shard of 4 blocks of 128 KiB. 1 and 2 decompressed from stored
	 * forms; 2 served in full (in two reads), 1 only in part. */
	CHECK_EQ(sqv_blockcache_new(4 * 131072, &c), 0);
	for (uint64_t k = 1; k <= 2; k++) {
		struct sqv_block *s = make(k, 4096);
		s->stored = true;
		sqv_blockcache_put(c, sqv_blockcache_insert(c, s));
		sqv_blockcache_put(c, sqv_blockcache_insert(c, make(k, 131072 - 4096)));
	}
	struct sqv_block *b = sqv_blockcache_get(c, 1);
	sqv_blockcache_served(c, b, 65536);
	sqv_blockcache_put(c, b);
	b = sqv_blockcache_get(c, 2);
	sqv_blockcache_served(c, b, 65536);
	sqv_blockcache_served(c, b, 131072 - 4096 - 65536);
	sqv_blockcache_put(c, b);
	/* 2 is the most recently used, 1 the least; 3 and 4 fill the shard,
	 * 5 needs room: 2 goes, all of it, and 1 stays as it was. */
	for (uint64_t k = 3; k <= 5; k++)
		sqv_blockcache_put(c, sqv_blockcache_insert(c, make(k, 131072)));
	CHECK(sqv_blockcache_get(c, 2) == NULL);
	b = sqv_blockcache_get(c, 1);
	CHECK(b != NULL && !b->stored && filled(b, 1));
	sqv_blockcache_put(c, b);
	sqv_blockcache_stats(c, &st);
	CHECK_EQ(st.evictions, 1);
	CHECK_EQ(st.blocks, 4);
	CHECK(st.bytes <= 4 * 131072);
	/* Evicted, 1 (served in part) comes back in its stored form. */
	for (uint64_t k = 6; k <= 9; k++)
		sqv_blockcache_put(c, sqv_blockcache_insert(c, make(k, 131072)));
	b = sqv_blockcache_get(c, 1);
	CHECK(b != NULL && b->stored && b->len == 4096);
	sqv_blockcache_put(c, b);
	sqv_blockcache_free(c);
}

/* The prefetch's stored blocks come from malloc: charged by their pages,
 * and never kept as spares, which are mappings to hand out and unmap. */
static void test_heap_blocks(void)
{
	struct sqv_blockcache *c;
	struct sqv_blockcache_stats st;
	const size_t cap = 64u << 20, bs = 131072;

	CHECK_EQ(sqv_blockcache_new(cap, &c), 0);
	for (uint64_t k = 1; k <= 2 * cap / bs; k++) {
		struct sqv_block *b = sqv_block_alloc_heap(bs);
		CHECK(b != NULL && b->heap);
		sqv_blockcache_put(c, sqv_blockcache_insert(c, fill(b, k, bs)));
	}
	sqv_blockcache_stats(c, &st);
	CHECK(st.evictions > 0);
	CHECK(st.bytes <= cap);
	CHECK(st.bytes >= cap / 2);
	for (unsigned n = 0; n < 64; n++) {
		struct sqv_block *b = sqv_blockcache_alloc(c, bs);
		CHECK(b != NULL && !b->heap);
		sqv_blockcache_put(c, sqv_blockcache_insert(c,
						fill(b, 100000 + n, bs)));
	}
	sqv_blockcache_stats(c, &st);
	CHECK_EQ(st.recycled, 0);
	sqv_blockcache_free(c);
}

/* A sanitizer's allocator is its own: malloc_trim does not reach it. */
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define RESIDENT_SET_TESTABLE 1
static size_t resident_bytes(void)
{
	unsigned long size = 0, res = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	CHECK(f != NULL);
	CHECK_EQ(fscanf(f, "%lu %lu", &size, &res), 2);
	fclose(f);
	return res * (size_t)sysconf(_SC_PAGESIZE);
}
#endif

/* Freed heap blocks give their pages back: fill the cache with heap
 * blocks of mixed sizes, a few of them held (the stored forms still in
 * use, which keep free() from shrinking the heap), then push them all out
 * with mapped blocks, which do not reuse the heap. Without the trim the
 * process keeps about twice the cache. */
static void test_heap_given_back(void)
{
#ifdef RESIDENT_SET_TESTABLE
	struct sqv_blockcache *c;
	const size_t cap = 32u << 20, bs = 131072;
	struct sqv_block *held[128];
	size_t nheld = 0, filled_bytes = 0;

	CHECK_EQ(sqv_blockcache_new(cap, &c), 0);
	size_t before = resident_bytes();
	for (uint64_t k = 1; filled_bytes < 2 * cap; k++) {
		size_t len = 40960 + (k % 8) * 8192;
		sqv_blockcache_put(c, sqv_blockcache_insert(
			c, fill(sqv_block_alloc_heap(len), k, len)));
		filled_bytes += len;
		if (k % 16 == 0 && nheld < 128)
			held[nheld++] = sqv_blockcache_get(c, k);
	}
	for (uint64_t k = 1; k <= 2 * cap / bs; k++)
		sqv_blockcache_put(c, sqv_blockcache_insert(
			c, fill(sqv_blockcache_alloc(c, bs), 1000000 + k, bs)));
	size_t grown = resident_bytes() - before;
	if (grown > cap + cap / 2)
		fprintf(stderr, "resident set grew by %zu bytes\n", grown);
	CHECK(grown <= cap + cap / 2);
	for (size_t i = 0; i < nheld; i++)
		sqv_blockcache_put(c, held[i]);
	sqv_blockcache_free(c);
#endif
}

static void test_zero(void)
{
	struct sqv_blockcache *c;

	CHECK_EQ(sqv_blockcache_new(0, &c), 0);
	struct sqv_block *b = sqv_blockcache_insert(c, make(3, 4096));
	CHECK(b != NULL && filled(b, 3));
	sqv_blockcache_put(c, b);
	CHECK(sqv_blockcache_get(c, 3) == NULL);
	sqv_blockcache_free(c);
}

static void test_recycle(void)
{
	struct sqv_blockcache *c;
	struct sqv_blockcache_stats st;
	const size_t cap = 64u << 20, bs = 131072;

	CHECK_EQ(sqv_blockcache_new(cap, &c), 0);
	/* Twice the capacity in blocks: the first half is evicted. */
	for (uint64_t k = 1; k <= 2 * cap / bs; k++)
		sqv_blockcache_put(c, sqv_blockcache_insert(
			c, fill(sqv_blockcache_alloc(c, bs), k, bs)));
	sqv_blockcache_stats(c, &st);
	CHECK(st.evictions > 0);
	/* Nearly every block after the first evictions reused a mapping,
	 * and the spares are part of the capacity. */
	CHECK(st.recycled + 16 >= st.evictions);
	CHECK(st.bytes + (2u << 20) <= cap);

	/* A block evicted while held is not handed out again: hold k, push
	 * it out with new blocks, and it must still hold its bytes. */
	uint64_t k = 2 * cap / bs;
	struct sqv_block *held = sqv_blockcache_get(c, k);
	CHECK(held != NULL);
	for (uint64_t n = 1; n <= 2 * cap / bs; n++) {
		struct sqv_block *b = sqv_blockcache_alloc(c, bs);
		CHECK(b != held);
		sqv_blockcache_put(c, sqv_blockcache_insert(c,
						fill(b, k + n, bs)));
	}
	CHECK(sqv_blockcache_get(c, k) == NULL);
	CHECK(filled(held, k));
	sqv_blockcache_put(c, held);
	/* Its mapping is a spare now: the next alloc of that size gets it,
	 * counted at its full size even for a short block. */
	struct sqv_block *again = sqv_blockcache_alloc(c, bs);
	CHECK(again == held);
	sqv_blockcache_put(c, sqv_blockcache_insert(c, fill(again, 1, 4096)));
	sqv_blockcache_stats(c, &st);
	CHECK(st.bytes + (2u << 20) <= cap);
	/* Another size does not take it. */
	struct sqv_block *other = sqv_blockcache_alloc(c, 65536);
	CHECK(other != NULL && other->map_len == 65536);
	sqv_blockcache_put(c, other);
	sqv_blockcache_free(c);
}

struct hammer {
	struct sqv_blockcache *c;
	unsigned seed;
	unsigned nkeys;
	size_t len;
	int bad;
};

static void *hammer(void *arg)
{
	struct hammer *h = arg;

	for (int i = 0; i < 20000; i++) {
		h->seed = h->seed * 1103515245 + 12345;
		uint64_t key = (h->seed >> 8) % h->nkeys + 1;
		struct sqv_block *b = sqv_blockcache_get(h->c, key);
		if (!b)
			b = sqv_blockcache_insert(h->c, fill(
				sqv_blockcache_alloc(h->c, h->len), key, h->len));
		if (b->key != key || !filled(b, key))
			h->bad++;
		sqv_blockcache_put(h->c, b);
	}
	return NULL;
}

/* nkeys blocks of len bytes, some of them cached in capacity bytes:
 * constant eviction under contention, and with capacity >= 4 MiB constant
 * reuse of the evicted blocks' mappings. */
static void hammer_with(size_t capacity, unsigned nkeys, size_t len)
{
	struct sqv_blockcache *c;
	struct hammer h[8];
	pthread_t th[8];
	struct sqv_blockcache_stats st;

	CHECK_EQ(sqv_blockcache_new(capacity, &c), 0);
	for (int i = 0; i < 8; i++) {
		h[i] = (struct hammer){ c, (unsigned)i * 7919u + 1, nkeys, len,
					0 };
		pthread_create(&th[i], NULL, hammer, &h[i]);
	}
	int bad = 0;
	for (int i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		bad += h[i].bad;
	}
	CHECK_EQ(bad, 0);
	sqv_blockcache_stats(c, &st);
	CHECK(st.bytes <= capacity);
	CHECK(st.evictions > 0);
	CHECK_EQ(st.hits + st.misses, 8 * 20000);
	if (capacity >= (4u << 20))
		CHECK(st.recycled > 0);
	else
		CHECK_EQ(st.recycled, 0);
	sqv_blockcache_free(c);
}

static void test_threads(void)
{
	/* Room for 100 of the 200 keys; too small for spares. */
	hammer_with(100 * 8192, 200, 8192);
	/* Room for about 240 of the 400 keys, with spares. */
	hammer_with(4u << 20, 400, 16384);
}

int main(void)
{
	test_basic();
	test_bound_and_lru();
	test_second_chance();
	test_protected();
	test_stored_replaced();
	test_spent();
	test_heap_blocks();
	test_heap_given_back();
	test_zero();
	test_recycle();
	test_threads();
	return check_done();
}
