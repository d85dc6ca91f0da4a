/*
 * reader: byte ranges of regular files, block by block, through the cache.
 */
#include "reader.h"

#include <stdlib.h>
#include <string.h>

struct sqv_reader {
	const struct sqv_index *idx;
	struct sqv_blockcache *cache;
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
	*out = r;
	return 0;
}

void sqv_reader_free(struct sqv_reader *r)
{
	if (!r)
		return;
	sqv_blockcache_free(r->cache);
	free(r);
}

/* Blocks are keyed by layer and image offset: offsets fit in 56 bits. */
static uint64_t block_key(unsigned layer, uint64_t pos)
{
	return (uint64_t)layer << 56 | (pos & ((UINT64_C(1) << 56) - 1));
}

static sqv_err_t get_block(struct sqv_reader *r, unsigned layer, uint64_t pos,
			   uint32_t word, struct sqv_block **out)
{
	struct sqv_image *img = sqv_index_image(r->idx, layer);
	uint64_t key = block_key(layer, pos);
	struct sqv_block *b = sqv_blockcache_get(r->cache, key);

	if (b) {
		*out = b;
		return 0;
	}
	b = sqv_block_alloc(sqv_image_info(img)->block_size);
	if (!b)
		return -ENOMEM;
	sqv_err_t err = sqv_image_read_block(img, pos, word, b->data, &b->len);
	if (err < 0) {
		sqv_blockcache_put(NULL, b);
		return err;
	}
	b->key = key;
	*out = sqv_blockcache_insert(r->cache, b);
	return 0;
}

/* Copy len bytes at offset off of a stored block into dst. */
static sqv_err_t copy_from_block(struct sqv_reader *r, unsigned layer,
				 uint64_t pos, uint32_t word, size_t off,
				 void *dst, size_t len)
{
	struct sqv_block *b;

	SQV_TRY(get_block(r, layer, pos, word, &b));
	sqv_err_t err = 0;
	if (off + len > b->len)
		err = -SQV_ECORRUPT; /* decompressed shorter than the file says */
	else
		memcpy(dst, b->data + off, len);
	sqv_blockcache_put(r->cache, b);
	return err;
}

sqv_err_t sqv_reader_pread(struct sqv_reader *r, sqv_ino_t ino, void *buf,
			   size_t size, uint64_t off, size_t *nread)
{
	struct sqv_index_file f;
	uint32_t bs;

	SQV_TRY(sqv_index_file(r->idx, ino, &f));
	bs = sqv_image_info(sqv_index_image(r->idx, f.layer))->block_size;
	if (off >= f.layout.size || size == 0) {
		*nread = 0;
		return 0;
	}
	uint64_t end = f.layout.size - off < size ? f.layout.size : off + size;
	uint64_t pos = off;
	char *dst = buf;

	while (pos < end) {
		uint64_t bi = pos / bs;
		size_t boff = (size_t)(pos % bs);
		size_t take = bs - boff;
		if (take > end - pos)
			take = (size_t)(end - pos);

		if (bi < f.layout.nblocks) {
			uint32_t word = f.words[bi];
			if (sqv_image_word_size(word) == 0)
				memset(dst, 0, take); /* a hole */
			else
				SQV_TRY(copy_from_block(r, f.layer,
							f.positions[bi], word,
							boff, dst, take));
		} else if (f.layout.has_fragment) {
			SQV_TRY(copy_from_block(r, f.layer, f.layout.frag_pos,
						f.layout.frag_word,
						f.layout.frag_off + boff, dst,
						take));
		} else {
			return -SQV_ECORRUPT;
		}
		dst += take;
		pos += take;
	}
	*nread = (size_t)(end - off);
	return 0;
}

void sqv_reader_cache_stats(struct sqv_reader *r,
			    struct sqv_blockcache_stats *out)
{
	sqv_blockcache_stats(r->cache, out);
}
