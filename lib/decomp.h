/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * decomp: decompress squashfs blocks with contexts that are made once and
 * reused. Making a context is most of the cost of decompressing an 8 KiB
 * metadata block (ZSTD_decompress() and lzma_stream_buffer_decode() build
 * and free one per call), so each user keeps one sqv_decomp: the image one
 * for its metadata, each data-path thread one of its own. A context is made
 * on first use of each compression, so one sqv_decomp serves images of
 * different compressions. Not thread-safe: one user at a time.
 */
#ifndef SQV_DECOMP_H
#define SQV_DECOMP_H

#include <stddef.h>

#include "err.h"
#include "superblock.h" /* the compression ids, SQV_COMP_* */

struct sqv_decomp;

/* true for the compressions sqvenvfs reads: gzip, lzo, xz, lz4, zstd
 * (not lzma, which libsquashfuse does not read either). */
int sqv_decomp_supported(int comp);

struct sqv_decomp *sqv_decomp_new(void);
void sqv_decomp_free(struct sqv_decomp *d);

/* Decompress insize bytes of comp-compressed in into out (*outsize bytes of
 * room); *outsize gets the length. -SQV_ECORRUPT if the bytes do not
 * decompress or do not fit, -ENOMEM, -ENOTSUP for another comp. */
sqv_err_t sqv_decomp_run(struct sqv_decomp *d, int comp, const void *in,
			 size_t insize, void *out, size_t *outsize);

/* Without decompressing: -SQV_ECORRUPT when insize bytes of comp at in
 * cannot be one block of at most maxout bytes, judged from what the format
 * says up front (zstd: the frame's header and its length; gzip (zlib) and
 * xz: the header). 0 does not promise that the bytes decompress. */
sqv_err_t sqv_decomp_check(int comp, const void *in, size_t insize,
			   size_t maxout);

#endif
