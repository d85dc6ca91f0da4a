/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * prefetch: the hot ranges of the stack, chunk by chunk, into the cache.
 */
#include "prefetch.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* Cold bytes worth reading through rather than paying another request:
 * a quarter of a millisecond at 1 GB/s. */
#define MAX_GAP ((uint64_t)256 << 10)
/* The prefetch may fill half the cache with stored blocks nobody has asked
 * for yet. The cache passes over them when it evicts
 * (sqv_reader_protect_prefetched), and the other half holds the blocks
 * readers decompressed, which are asked for again. With a quarter, the
 * bench's import read more blocks twice: the prefetch was not far enough
 * ahead where the import's order strays from the trace's; with more than
 * half, the decompressed blocks went before their second use. */
#define PF_SHARE 2

struct hot_block {
	uint64_t pos;
	uint32_t word;
};

struct sqv_prefetch {
	const struct sqv_index *idx;
	struct sqv_reader *r;
	struct sqv_prefetch_layer *layers;
	unsigned nlayers;
	size_t chunk, cache_bytes;
	pthread_t thread;
	bool started;

	/* stop is set by sqv_prefetch_stop; the thread sleeps on wake. */
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stop; /* protected by lock */

	atomic_uint_fast64_t hot_bytes, reads, bytes, blocks;
	atomic_uint_fast64_t stored_bytes; /* of the blocks put in the cache */
	uint64_t misses0; /* the cache's misses when the thread began */
	atomic_bool done, failed;
};

static bool stopping(struct sqv_prefetch *pf)
{
	pthread_mutex_lock(&pf->lock);
	bool s = pf->stop;
	pthread_mutex_unlock(&pf->lock);
	return s;
}

/* Sleep up to ms milliseconds or until stopped; true when stopped. */
static bool nap(struct sqv_prefetch *pf, long ms)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_nsec += ms * 1000000L;
	until.tv_sec += until.tv_nsec / 1000000000L;
	until.tv_nsec %= 1000000000L;
	pthread_mutex_lock(&pf->lock);
	if (!pf->stop)
		pthread_cond_timedwait(&pf->wake, &pf->lock, &until);
	bool s = pf->stop;
	pthread_mutex_unlock(&pf->lock);
	return s;
}

static int cmp_block(const void *a, const void *b)
{
	const struct hot_block *x = a, *y = b;
	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static bool in_ranges(const struct sqv_hot_range *rg, size_t n, uint64_t pos)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (pos < rg[mid].off)
			hi = mid;
		else if (pos >= rg[mid].off + rg[mid].len)
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

/* The stored blocks and fragments of layer's visible files that start in
 * its hot ranges, sorted by offset, each once. */
static sqv_err_t hot_blocks(struct sqv_prefetch *pf, unsigned layer,
			    const struct sqv_hot_range *rg, size_t nrg,
			    struct hot_block **out, size_t *nout)
{
	struct hot_block *v = NULL;
	size_t n = 0, cap = 0;
	size_t ninodes = sqv_index_inode_count(pf->idx);

	for (sqv_ino_t ino = 0; ino < ninodes; ino++) {
		struct sqv_index_file f;
		if (!S_ISREG(sqv_index_mode(pf->idx, ino)) ||
		    sqv_index_file(pf->idx, ino, &f) < 0 || f.layer != layer)
			continue;
		for (uint32_t i = 0; i <= f.layout.nblocks; i++) {
			uint64_t pos;
			uint32_t word;
			if (i < f.layout.nblocks) {
				pos = f.positions[i];
				word = f.words[i];
			} else if (f.layout.has_fragment) {
				pos = f.layout.frag_pos;
				word = f.layout.frag_word;
			} else {
				break;
			}
			if (sqv_image_word_size(word) == 0 ||
			    !in_ranges(rg, nrg, pos))
				continue;
			if (n == cap) {
				size_t ncap = cap ? cap * 2 : 256;
				void *nv = realloc(v, ncap * sizeof(*v));
				if (!nv) {
					free(v);
					return -ENOMEM;
				}
				v = nv;
				cap = ncap;
			}
			v[n++] = (struct hot_block){ pos, word };
		}
	}
	if (n)
		qsort(v, n, sizeof(*v), cmp_block);
	size_t u = 0;
	for (size_t i = 0; i < n; i++)
		if (u == 0 || v[i].pos != v[u - 1].pos)
			v[u++] = v[i];
	*out = v;
	*nout = u;
	return 0;
}

/* Stored bytes of prefetched blocks in the cache that nobody has asked for
 * yet; *cs gets the cache's counters. */
static uint64_t outstanding(struct sqv_prefetch *pf,
			    struct sqv_blockcache_stats *cs)
{
	sqv_reader_cache_stats(pf->r, cs);
	uint64_t gone = cs->prefetch_used_bytes +
			cs->prefetch_unused_evicted_bytes;
	uint64_t in = atomic_load(&pf->stored_bytes);
	return in > gone ? in - gone : 0;
}

/* A trace of another workload: while the prefetch waits for its blocks to
 * be used, the readers go elsewhere. Either its blocks are evicted unused
 * (when the cache does not protect them), or the readers miss the cache
 * for blocks it did not bring, more of them than they took of its own.
 * Either count must reach `limit` first: a right trace whose workload also
 * reads some cold data, or whose hot set outgrows the cache, has a few of
 * each. misses0 is the cache's miss count when the prefetch began. */
static bool wrong_trace(const struct sqv_blockcache_stats *cs,
			uint64_t misses0, uint64_t limit)
{
	uint64_t used = cs->prefetch_used_blocks;
	uint64_t wasted = cs->prefetch_unused_evicted;
	uint64_t missed = cs->misses - misses0;

	return (wasted >= limit && wasted > used) ||
	       (missed >= limit && missed > used);
}

static void stop_line(struct sqv_prefetch *pf, struct sqv_image *img,
		      uint64_t pos, const char *what)
{
	atomic_store(&pf->failed, true);
	sqv_log(SQV_LOG_ERR, "%s: prefetch stopped at offset %llu: %s",
		sqv_image_name(img), (unsigned long long)pos, what);
}

/* 0 to go on, 1 when stopped (asked to, or on an error, logged). */
static int prefetch_layer(struct sqv_prefetch *pf, unsigned layer,
			  unsigned char *buf, size_t limit_blocks)
{
	struct sqv_image *img = sqv_index_image(pf->idx, layer);
	uint32_t bs = sqv_image_info(img)->block_size;
	struct sqv_prefetch_layer *pl = &pf->layers[layer];
	struct sqv_hot_range rg[SQV_HOT_MAX_RANGES];
	size_t nrg = 0, nblocks = 0;
	struct hot_block *blocks = NULL;
	int rc = 0;

	struct sqv_block *rec = sqv_block_alloc(bs);
	if (!rec)
		return 1;
	sqv_err_t err = sqv_image_read_block(img, pl->where.pos, pl->where.word,
					     rec->data, &rec->len);
	if (err == 0) {
		size_t len = rec->len < pl->where.size ? rec->len :
							 (size_t)pl->where.size;
		err = sqv_hot_parse((const char *)rec->data, len,
				    sqv_image_info(img)->bytes_used, rg, &nrg);
	}
	sqv_blockcache_put(NULL, rec);
	if (err < 0) {
		sqv_log(SQV_LOG_ERR, "%s: hot-range record %s; no prefetch",
			sqv_image_name(img),
			err == -SQV_ECORRUPT ? "damaged" : "unreadable");
		atomic_store(&pf->failed, true);
		return 0;
	}
	for (size_t i = 0; i < nrg; i++)
		atomic_fetch_add(&pf->hot_bytes, rg[i].len);
	if (hot_blocks(pf, layer, rg, nrg, &blocks, &nblocks) < 0)
		return 1;

	for (size_t i = 0; i < nblocks && rc == 0;) {
		/* A chunk: blocks from i whose stored bytes end within chunk
		 * bytes of the first, at most limit_blocks of them, with no
		 * more than MAX_GAP cold bytes between two. */
		uint64_t start = blocks[i].pos, end = start;
		size_t j = i;
		while (j < nblocks && j - i < limit_blocks) {
			uint64_t e = blocks[j].pos +
				     sqv_image_word_size(blocks[j].word);
			if (j > i && (e - start > pf->chunk ||
				      blocks[j].pos > end + MAX_GAP))
				break;
			if (e > end)
				end = e;
			j++;
		}
		/* Wait until readers have caught up enough for this chunk
		 * to fit in our share of the cache; while waiting, stop if
		 * the readers show that the trace is not theirs
		 * (wrong_trace). */
		struct sqv_blockcache_stats cs;
		uint64_t ahead;
		bool wrong = false;
		while ((ahead = outstanding(pf, &cs)) > 0 &&
		       ahead + (end - start) > pf->cache_bytes / PF_SHARE) {
			wrong = wrong_trace(&cs, pf->misses0,
					    limit_blocks / 2 + 1);
			if (wrong)
				break;
			if (nap(pf, 20)) {
				rc = 1;
				break;
			}
		}
		if (rc)
			break;
		if (wrong) {
			/* Its blocks are no longer worth a place. */
			sqv_reader_protect_prefetched(pf->r, false);
			sqv_log(SQV_LOG_NOTICE,
				"%s: prefetch stopped: the workload reads other blocks than the prefetched ones (a trace of another workload?)",
				sqv_image_name(img));
			rc = 1;
			break;
		}
		sqv_reader_flight(pf->r, layer, start, end);
		err = sqv_image_pread(img, buf, (size_t)(end - start), start);
		if (err < 0) {
			sqv_reader_flight(pf->r, layer, 0, 0);
			stop_line(pf, img, start, err == -SQV_ECORRUPT ?
				  "hot range beyond the end of the image" :
				  "read of the image failed");
			rc = 1;
			break;
		}
		atomic_fetch_add(&pf->reads, 1);
		atomic_fetch_add(&pf->bytes, end - start);
		/* The blocks go in as stored: a reader decompresses each on
		 * first use. Only their frames are checked here, so a block
		 * damaged inside is found by its reader (EIO, and the usual
		 * log line), as without prefetch. */
		for (; i < j; i++) {
			const unsigned char *src = buf + (blocks[i].pos - start);
			uint32_t stored = sqv_image_word_size(blocks[i].word);
			if (sqv_image_check_stored(img, blocks[i].word, src) < 0) {
				stop_line(pf, img, blocks[i].pos,
					  "block does not decompress");
				rc = 1;
				break;
			}
			if (sqv_reader_put_prefetched(pf->r, layer,
						      blocks[i].pos,
						      blocks[i].word, src)) {
				atomic_fetch_add(&pf->blocks, 1);
				atomic_fetch_add(&pf->stored_bytes, stored);
			}
			sqv_reader_flight(pf->r, layer, blocks[i].pos + stored,
					  end);
			if (stopping(pf)) {
				rc = 1;
				i++;
				break;
			}
		}
		sqv_reader_flight(pf->r, layer, 0, 0);
	}
	free(blocks);
	return rc;
}

static void *prefetch_main(void *arg)
{
	struct sqv_prefetch *pf = arg;
	size_t bs_max = 0;

	for (unsigned l = 0; l < pf->nlayers; l++) {
		uint32_t bs = sqv_image_info(sqv_index_image(pf->idx, l))->block_size;
		if (bs > bs_max)
			bs_max = bs;
	}
	/* The cache may hold half its bytes in blocks not asked for yet. */
	size_t limit_blocks = pf->cache_bytes / 2 / bs_max;
	unsigned char *buf = malloc(pf->chunk + bs_max);
	if (!buf || limit_blocks == 0) {
		if (limit_blocks == 0)
			sqv_log(SQV_LOG_INFO, "prefetch off: the block cache is too small");
		free(buf);
		atomic_store(&pf->done, true);
		return NULL;
	}
	struct sqv_blockcache_stats cs;
	sqv_reader_cache_stats(pf->r, &cs);
	pf->misses0 = cs.misses;
	sqv_reader_protect_prefetched(pf->r, true);
	/* Top layer first: its files hide the ones below. */
	for (unsigned l = pf->nlayers; l-- > 0;) {
		if (pf->layers[l].has_record &&
		    prefetch_layer(pf, l, buf, limit_blocks) != 0)
			break;
	}
	free(buf);
	atomic_store(&pf->done, true);
	return NULL;
}

sqv_err_t sqv_prefetch_start(const struct sqv_index *idx,
			     struct sqv_reader *r,
			     const struct sqv_prefetch_layer *layers,
			     size_t chunk, size_t cache_bytes,
			     struct sqv_prefetch **out)
{
	struct sqv_prefetch *pf = calloc(1, sizeof(*pf));
	unsigned n = sqv_index_layer_count(idx);

	if (!pf)
		return -ENOMEM;
	pf->layers = calloc(n, sizeof(*pf->layers));
	if (!pf->layers) {
		free(pf);
		return -ENOMEM;
	}
	memcpy(pf->layers, layers, n * sizeof(*layers));
	pf->idx = idx;
	pf->r = r;
	pf->nlayers = n;
	pf->chunk = chunk;
	pf->cache_bytes = cache_bytes;
	pthread_mutex_init(&pf->lock, NULL);
	pthread_cond_init(&pf->wake, NULL);
	bool any = false;
	for (unsigned l = 0; l < n; l++)
		any |= layers[l].has_record;
	if (chunk == 0 || !any) {
		atomic_store(&pf->done, true);
	} else {
		int e = pthread_create(&pf->thread, NULL, prefetch_main, pf);
		if (e != 0) {
			sqv_prefetch_stop(pf);
			return -e;
		}
		pf->started = true;
	}
	*out = pf;
	return 0;
}

void sqv_prefetch_stop(struct sqv_prefetch *pf)
{
	if (!pf)
		return;
	pthread_mutex_lock(&pf->lock);
	pf->stop = true;
	pthread_cond_broadcast(&pf->wake);
	pthread_mutex_unlock(&pf->lock);
	if (pf->started)
		pthread_join(pf->thread, NULL);
	pthread_cond_destroy(&pf->wake);
	pthread_mutex_destroy(&pf->lock);
	free(pf->layers);
	free(pf);
}

void sqv_prefetch_stats(struct sqv_prefetch *pf, struct sqv_prefetch_stats *out)
{
	*out = (struct sqv_prefetch_stats){
		.hot_bytes = atomic_load(&pf->hot_bytes),
		.reads = atomic_load(&pf->reads),
		.bytes = atomic_load(&pf->bytes),
		.blocks = atomic_load(&pf->blocks),
		.done = atomic_load(&pf->done),
		.failed = atomic_load(&pf->failed),
	};
}
