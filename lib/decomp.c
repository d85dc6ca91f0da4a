/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * decomp: reusable decompression contexts; see decomp.h. gzip, xz and zstd
 * keep a context; lzo and lz4 decompress without one, through
 * libsquashfuse's functions.
 */
#include "decomp.h"

#include <limits.h>
#include <lzma.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#define SQFS_CONFIG_H 1
#define HAVE_LINUX_TYPES_LE16 1
#include <squashfuse.h>

struct sqv_decomp {
	ZSTD_DCtx *zstd;
	z_stream gzip;
	bool gzip_ready;
	lzma_stream xz;
	bool xz_ready;
};

int sqv_decomp_supported(int comp)
{
	switch (comp) {
	case SQV_COMP_GZIP:
	case SQV_COMP_XZ:
	case SQV_COMP_ZSTD:
		return 1;
	case SQV_COMP_LZO:
	case SQV_COMP_LZ4:
		return sqfs_decompressor_get(comp) != NULL;
	default:
		return 0;
	}
}

struct sqv_decomp *sqv_decomp_new(void)
{
	struct sqv_decomp *d = calloc(1, sizeof(*d));

	if (d)
		d->xz = (lzma_stream)LZMA_STREAM_INIT;
	return d;
}

void sqv_decomp_free(struct sqv_decomp *d)
{
	if (!d)
		return;
	ZSTD_freeDCtx(d->zstd);
	if (d->gzip_ready)
		inflateEnd(&d->gzip);
	if (d->xz_ready)
		lzma_end(&d->xz);
	free(d);
}

static sqv_err_t run_zstd(struct sqv_decomp *d, const void *in, size_t insize,
			  void *out, size_t *outsize)
{
	if (!d->zstd && !(d->zstd = ZSTD_createDCtx()))
		return -ENOMEM;
	size_t n = ZSTD_decompressDCtx(d->zstd, out, *outsize, in, insize);
	if (ZSTD_isError(n))
		return -SQV_ECORRUPT;
	*outsize = n;
	return 0;
}

/* squashfs's gzip is the zlib format (what uncompress() reads). */
static sqv_err_t run_gzip(struct sqv_decomp *d, const void *in, size_t insize,
			  void *out, size_t *outsize)
{
	z_stream *z = &d->gzip;

	if (insize > UINT_MAX || *outsize > UINT_MAX)
		return -SQV_ECORRUPT;
	if (!d->gzip_ready) {
		*z = (z_stream){ 0 };
		int rc = inflateInit(z);
		if (rc != Z_OK)
			return rc == Z_MEM_ERROR ? -ENOMEM : -SQV_ECORRUPT;
		d->gzip_ready = true;
	} else if (inflateReset(z) != Z_OK) {
		return -SQV_ECORRUPT;
	}
	z->next_in = (Bytef *)in;
	z->avail_in = (uInt)insize;
	z->next_out = out;
	z->avail_out = (uInt)*outsize;
	if (inflate(z, Z_FINISH) != Z_STREAM_END)
		return -SQV_ECORRUPT;
	*outsize = z->total_out;
	return 0;
}

/* A second lzma_stream_decoder() on the same stream keeps its memory. */
static sqv_err_t run_xz(struct sqv_decomp *d, const void *in, size_t insize,
			void *out, size_t *outsize)
{
	lzma_stream *x = &d->xz;
	lzma_ret rc = lzma_stream_decoder(x, UINT64_MAX, 0);

	if (rc != LZMA_OK)
		return rc == LZMA_MEM_ERROR ? -ENOMEM : -SQV_ECORRUPT;
	d->xz_ready = true;
	x->next_in = in;
	x->avail_in = insize;
	x->next_out = out;
	x->avail_out = *outsize;
	do
		rc = lzma_code(x, LZMA_FINISH);
	while (rc == LZMA_OK);
	if (rc != LZMA_STREAM_END)
		return rc == LZMA_MEM_ERROR ? -ENOMEM : -SQV_ECORRUPT;
	*outsize = *outsize - x->avail_out;
	return 0;
}

sqv_err_t sqv_decomp_run(struct sqv_decomp *d, int comp, const void *in,
			 size_t insize, void *out, size_t *outsize)
{
	switch (comp) {
	case SQV_COMP_ZSTD:
		return run_zstd(d, in, insize, out, outsize);
	case SQV_COMP_GZIP:
		return run_gzip(d, in, insize, out, outsize);
	case SQV_COMP_XZ:
		return run_xz(d, in, insize, out, outsize);
	case SQV_COMP_LZO:
	case SQV_COMP_LZ4: {
		sqfs_decompressor f = sqfs_decompressor_get(comp);
		if (!f)
			return -ENOTSUP;
		/* Stateless: there is no context to keep. libsquashfuse's
		 * prototype takes non-const input it does not write. */
		if (f((void *)in, insize, out, outsize) != SQFS_OK)
			return -SQV_ECORRUPT;
		return 0;
	}
	default:
		return -ENOTSUP;
	}
}

sqv_err_t sqv_decomp_check(int comp, const void *in, size_t insize,
			   size_t maxout)
{
	static const unsigned char xz_magic[6] = { 0xfd, '7', 'z', 'X', 'Z', 0 };
	const unsigned char *b = in;

	switch (comp) {
	case SQV_COMP_ZSTD: {
		/* One whole frame, of a content size that fits if it says. */
		if (ZSTD_findFrameCompressedSize(in, insize) != insize)
			return -SQV_ECORRUPT;
		unsigned long long n = ZSTD_getFrameContentSize(in, insize);
		if (n == ZSTD_CONTENTSIZE_ERROR ||
		    (n != ZSTD_CONTENTSIZE_UNKNOWN && n > maxout))
			return -SQV_ECORRUPT;
		return 0;
	}
	case SQV_COMP_GZIP:
		/* RFC 1950: deflate, and a header check that is a multiple of
		 * 31. */
		if (insize < 2 || (b[0] & 0x0f) != 8 || (b[0] << 8 | b[1]) % 31)
			return -SQV_ECORRUPT;
		return 0;
	case SQV_COMP_XZ:
		if (insize < sizeof(xz_magic) ||
		    memcmp(in, xz_magic, sizeof(xz_magic)) != 0)
			return -SQV_ECORRUPT;
		return 0;
	default:
		return 0; /* lzo and lz4 blocks carry no header */
	}
}
