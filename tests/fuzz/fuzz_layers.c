/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Fuzz target: a stack of images with whiteouts and opaque directories.
 *
 * Input: a byte n (1..4 layers), then n-1 little-endian uint32 lengths,
 * then the images back to back (the last takes the rest), bottom first.
 * Seeds are real stacks made by mksquashfs (tests/fuzz/make_corpus.sh), so
 * the fuzzer starts from valid whiteout and opaque trees and mutates them.
 */
#include <endian.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

#define MAX_LAYERS 4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sqv_image *imgs[MAX_LAYERS] = { 0 };
	struct sqv_index *idx = NULL;
	size_t lens[MAX_LAYERS];
	unsigned n, opened = 0;

	sqv_fuzz_quiet();
	if (size < 1)
		return 0;
	n = data[0] % MAX_LAYERS + 1;
	size_t off = 1 + 4 * (size_t)(n - 1);
	if (size < off)
		return 0;
	size_t rest = size - off;
	for (unsigned i = 0; i + 1 < n; i++) {
		uint32_t l;
		memcpy(&l, data + 1 + 4 * i, 4);
		l = le32toh(l);
		if (l > rest)
			return 0;
		lens[i] = l;
		rest -= l;
	}
	lens[n - 1] = rest;
	for (unsigned i = 0; i < n; i++) {
		imgs[i] = sqv_fuzz_image(data + off, lens[i], "layer.sqfs");
		off += lens[i];
		if (!imgs[i])
			goto out;
		opened++;
	}
	sqv_err_t err = sqv_index_build(imgs, n, 0, &idx);
	if (err == 0) {
		sqv_fuzz_walk(idx);
		sqv_index_free(idx);
	}
	if (err == -ENOMEM) /* see fuzz_image.c */
		abort();
out:
	for (unsigned i = 0; i < opened; i++)
		sqv_image_free(imgs[i]);
	return 0;
}
