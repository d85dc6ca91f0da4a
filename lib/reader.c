/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * reader: byte ranges of regular files, block by block, through the cache.
 */
#include "reader.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct sqv_reader {
	const struct sqv_index *idx;
	struct sqv_blockcache *cache;

	/* The stretch of an image that the prefetch has read or is reading
	 * and has not put in the cache yet: a miss there waits for it rather
	 * than reading the same bytes again. flying is read without the lock
	 * first, so that a mount without prefetch pays one atomic load. */
	atomic_bool flying;
	pthread_mutex_t flight_lock;
	pthread_cond_t flight_moved;
	/* Protected by flight_lock: */
	unsigned flight_layer;
	uint64_t flight_next, flight_end;
};

sqv_err_t sqv_reader_new(const struct sqv_index *idx, size_t cache_bytes,
			 struct sqv_reader **out)
{
	struct sqv_reader *r = calloc(1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	r->idx = idx;
	sqv_err_t err = sqv_blockcache_new(cache_bytes, &r->cache);
	if (err < 0) {
		free(r);
		return err;
	}
	pthread_mutex_init(&r->flight_lock, NULL);
	pthread_cond_init(&r->flight_moved, NULL);
	*out = r;
	return 0;
}

void sqv_reader_free(struct sqv_reader *r)
{
	if (!r)
		return;
	sqv_blockcache_free(r->cache);
	pthread_cond_destroy(&r->flight_moved);
	pthread_mutex_destroy(&r->flight_lock);
	free(r);
}

/* Blocks are keyed by layer and image offset: offsets fit in 56 bits. */
static uint64_t block_key(unsigned layer, uint64_t pos)
{
	return (uint64_t)layer << 56 | (pos & ((UINT64_C(1) << 56) - 1));
}

/* True when pos was in flight and we waited for the prefetch to pass it. */
static bool wait_flight(struct sqv_reader *r, unsigned layer, uint64_t pos)
{
	bool waited = false;

	pthread_mutex_lock(&r->flight_lock);
	while (atomic_load(&r->flying) && layer == r->flight_layer &&
	       pos >= r->flight_next && pos < r->flight_end) {
		pthread_cond_wait(&r->flight_moved, &r->flight_lock);
		waited = true;
	}
	pthread_mutex_unlock(&r->flight_lock);
	return waited;
}

void sqv_reader_flight(struct sqv_reader *r, unsigned layer, uint64_t next,
		       uint64_t end)
{
	pthread_mutex_lock(&r->flight_lock);
	r->flight_layer = layer;
	r->flight_next = next;
	r->flight_end = end;
	atomic_store(&r->flying, next < end);
	pthread_cond_broadcast(&r->flight_moved);
	pthread_mutex_unlock(&r->flight_lock);
}

bool sqv_reader_put_prefetched(struct sqv_reader *r, unsigned layer,
			       uint64_t pos, uint32_t word, const void *src)
{
	uint32_t stored = sqv_image_word_size(word);
	struct sqv_block *b = sqv_block_alloc_heap(stored);

	if (!b)
		return false;
	memcpy(b->data, src, stored);
	b->len = stored;
	/* Uncompressed blocks too: the reader's decode checks a verified
	 * image's digest, which nothing has checked yet. */
	b->stored = true;
	b->key = block_key(layer, pos);
	atomic_store(&b->prefetched, stored);
	struct sqv_block *got = sqv_blockcache_insert(r->cache, b);
	sqv_blockcache_put(r->cache, got);
	return got == b;
}

void sqv_reader_protect_prefetched(struct sqv_reader *r, bool on)
{
	sqv_blockcache_protect_prefetched(r->cache, on);
}

static sqv_err_t get_block(struct sqv_reader *r, unsigned layer, uint64_t pos,
			   uint32_t word, struct sqv_block **out)
{
	struct sqv_image *img = sqv_index_image(r->idx, layer);
	uint64_t key = block_key(layer, pos);
	struct sqv_block *b = sqv_blockcache_get(r->cache, key);

	if (!b && atomic_load_explicit(&r->flying, memory_order_acquire) &&
	    wait_flight(r, layer, pos))
		b = sqv_blockcache_get(r->cache, key);
	if (b && !b->stored) {
		*out = b;
		return 0;
	}
	struct sqv_block *nb =
		sqv_blockcache_alloc(r->cache, sqv_image_info(img)->block_size);
	sqv_err_t err = -ENOMEM;
	if (nb && b) /* the prefetch's copy: no read of the image */
		err = sqv_image_decode_block(img, pos, word, b->data, nb->data,
					     &nb->len);
	else if (nb)
		err = sqv_image_read_block(img, pos, word, nb->data, &nb->len);
	sqv_blockcache_put(r->cache, b);
	if (err < 0) {
		sqv_blockcache_put(NULL, nb);
		return err;
	}
	nb->key = key;
	*out = sqv_blockcache_insert(r->cache, nb);
	return 0;
}

/* What holes read as: never written, so it costs no memory. */
static unsigned char zeros[1u << 20];

void sqv_reader_release(struct sqv_reader *r, struct sqv_read_pieces *p)
{
	for (size_t i = 0; i < p->nheld; i++)
		sqv_blockcache_put(r->cache, p->held[i]);
	free(p->iov);
	p->iov = NULL;
	p->held = NULL;
	p->count = p->nheld = p->bytes = 0;
}

/* Add len bytes at offset off of a stored block as the next piece. */
static sqv_err_t add_block_piece(struct sqv_reader *r, unsigned layer,
				 uint64_t pos, uint32_t word, size_t off,
				 size_t len, struct sqv_read_pieces *p)
{
	struct sqv_block *b;

	SQV_TRY(get_block(r, layer, pos, word, &b));
	p->held[p->nheld++] = b;
	if (off + len > b->len)
		return -SQV_ECORRUPT; /* decompressed shorter than the file says */
	p->iov[p->count++] = (struct iovec){ b->data + off, len };
	sqv_blockcache_served(r->cache, b, len);
	return 0;
}

sqv_err_t sqv_reader_pieces(struct sqv_reader *r, sqv_ino_t ino, size_t size,
			    uint64_t off, struct sqv_read_pieces *out)
{
	struct sqv_read_pieces p = { 0 };
	struct sqv_index_file f;
	uint32_t bs;
	sqv_err_t err = 0;

	SQV_TRY(sqv_index_file(r->idx, ino, &f));
	bs = sqv_image_info(sqv_index_image(r->idx, f.layer))->block_size;
	if (off >= f.layout.size || size == 0) {
		*out = p;
		return 0;
	}
	uint64_t end = f.layout.size - off < size ? f.layout.size : off + size;
	size_t npieces = (size_t)((end - 1) / bs - off / bs + 1);
	p.iov = malloc(npieces * (sizeof(*p.iov) + sizeof(*p.held)));
	if (!p.iov)
		return -ENOMEM;
	p.held = (struct sqv_block **)(p.iov + npieces);

	for (uint64_t pos = off; pos < end && err == 0;) {
		uint64_t bi = pos / bs;
		size_t boff = (size_t)(pos % bs);
		size_t take = bs - boff;
		if (take > end - pos)
			take = (size_t)(end - pos);

		if (bi < f.layout.nblocks) {
			uint32_t word = f.words[bi];
			if (sqv_image_word_size(word) == 0 && take <= sizeof(zeros))
				p.iov[p.count++] = (struct iovec){ zeros, take };
			else if (sqv_image_word_size(word) == 0)
				err = -SQV_ECORRUPT;
			else
				err = add_block_piece(r, f.layer, f.positions[bi],
						      word, boff, take, &p);
		} else if (f.layout.has_fragment) {
			err = add_block_piece(r, f.layer, f.layout.frag_pos,
					      f.layout.frag_word,
					      f.layout.frag_off + boff, take, &p);
		} else {
			err = -SQV_ECORRUPT;
		}
		pos += take;
	}
	if (err < 0) {
		sqv_reader_release(r, &p);
		return err;
	}
	p.bytes = (size_t)(end - off);
	*out = p;
	return 0;
}

sqv_err_t sqv_reader_pread(struct sqv_reader *r, sqv_ino_t ino, void *buf,
			   size_t size, uint64_t off, size_t *nread)
{
	struct sqv_read_pieces p;
	char *dst = buf;

	SQV_TRY(sqv_reader_pieces(r, ino, size, off, &p));
	for (size_t i = 0; i < p.count; i++) {
		memcpy(dst, p.iov[i].iov_base, p.iov[i].iov_len);
		dst += p.iov[i].iov_len;
	}
	*nread = p.bytes;
	sqv_reader_release(r, &p);
	return 0;
}

void sqv_reader_cache_stats(struct sqv_reader *r,
			    struct sqv_blockcache_stats *out)
{
	sqv_blockcache_stats(r->cache, out);
}
