/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Fuzz target: one image. Open it, build its index (what a mount does),
 * then walk and read everything in it.
 */
#include <stdint.h>
#include <stdlib.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sqv_image *img;
	struct sqv_index *idx = NULL;

	sqv_fuzz_quiet();
	img = sqv_fuzz_image(data, size, "fuzz.sqfs");
	if (!img)
		return 0;
	sqv_err_t err = sqv_index_build(&img, 1, 0, &idx);
	if (err == 0) {
		sqv_fuzz_walk(idx);
		sqv_index_free(idx);
	}
	/* Memory is bounded by what the image holds, not by what its fields
	 * claim: a small input must never run out (see meson.build's
	 * fuzz-replay-image-bounded, which lowers RLIMIT_AS). */
	if (err == -ENOMEM)
		abort();
	/* The raw view (for the tools) over the same image. */
	if (sqv_index_build(&img, 1, SQV_INDEX_RAW, &idx) == 0)
		sqv_index_free(idx);
	sqv_image_free(img);
	return 0;
}
