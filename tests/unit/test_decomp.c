/* SPDX-License-Identifier: BSD-2-Clause */
/* sqv_decomp_check, the prefetch's look at a stored block without
 * decompressing it: whole frames pass, and a frame with a damaged header,
 * a cut or padded one, or one too large for the block size, is refused,
 * for each compression that has a header. The same bytes then decompress
 * (or not) as the check said. */
#include <lzma.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "check.h"
#include "decomp.h"

#define BLOCK 131072

static unsigned char plain[BLOCK];

static size_t make_zstd(unsigned char *out, size_t cap, size_t n)
{
	size_t r = ZSTD_compress(out, cap, plain, n, 3);
	CHECK(!ZSTD_isError(r));
	return r;
}

static size_t make_gzip(unsigned char *out, size_t cap, size_t n)
{
	uLongf len = cap;
	CHECK_EQ(compress2(out, &len, plain, n, 6), Z_OK);
	return len;
}

static size_t make_xz(unsigned char *out, size_t cap, size_t n)
{
	size_t len = 0;
	CHECK_EQ(lzma_easy_buffer_encode(6, LZMA_CHECK_CRC32, NULL, plain, n,
					 out, &len, cap), LZMA_OK);
	return len;
}

/* The check and an actual decompression of the same bytes agree. */
static void agree(struct sqv_decomp *d, int comp, const unsigned char *in,
		  size_t len, int want)
{
	static unsigned char out[BLOCK];
	size_t outsize = sizeof(out);

	CHECK_EQ(sqv_decomp_check(comp, in, len, BLOCK), want);
	if (want < 0)
		CHECK_EQ(sqv_decomp_run(d, comp, in, len, out, &outsize), want);
}

static void one(struct sqv_decomp *d, int comp,
		size_t (*make)(unsigned char *, size_t, size_t))
{
	static unsigned char buf[2 * BLOCK];
	size_t len = make(buf, sizeof(buf), BLOCK);

	agree(d, comp, buf, len, 0);
	unsigned char first = buf[0];
	buf[0] ^= 0xff; /* the header's first byte */
	agree(d, comp, buf, len, -SQV_ECORRUPT);
	buf[0] = first;
	memset(buf, 0xff, 16); /* what test_hot writes over a hot block */
	agree(d, comp, buf, len, -SQV_ECORRUPT);
}

int main(void)
{
	struct sqv_decomp *d = sqv_decomp_new();
	static unsigned char buf[2 * BLOCK];

	CHECK(d != NULL);
	for (size_t i = 0; i < BLOCK; i++)
		plain[i] = (unsigned char)(i * 7 / 300);
	one(d, SQV_COMP_ZSTD, make_zstd);
	one(d, SQV_COMP_GZIP, make_gzip);
	one(d, SQV_COMP_XZ, make_xz);

	/* zstd alone says how long its frame is and what it holds: a cut
	 * frame, one with bytes after it, and one larger than a block. */
	size_t len = make_zstd(buf, sizeof(buf), BLOCK);
	agree(d, SQV_COMP_ZSTD, buf, len - 1, -SQV_ECORRUPT);
	agree(d, SQV_COMP_ZSTD, buf, len + 1, -SQV_ECORRUPT);
	CHECK_EQ(sqv_decomp_check(SQV_COMP_ZSTD, buf, len, BLOCK / 2),
		 -SQV_ECORRUPT);
	/* lz4 and lzo blocks have no header: nothing to judge. */
	CHECK_EQ(sqv_decomp_check(SQV_COMP_LZ4, buf, 16, BLOCK), 0);
	sqv_decomp_free(d);
	return check_done();
}
