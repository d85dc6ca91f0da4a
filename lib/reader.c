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
