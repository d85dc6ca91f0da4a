/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * hot: the hot-range record of a hot-first image (docs/tools.md, "The
 * hot-range record").
 *
 * sqvenvfs-pack --hot writes the traced files first and records where they
 * went in a regular file named SQV_HOT_NAME in the image's root: one data
 * block, stored uncompressed, whose text starts
 *   sqvenvfs-hot 1
 *   range OFFSET LENGTH     (one or more, image byte ranges)
 *   end
 * The rest of the block is padding. The index hides that name, so a mount
 * and sqvenvfs-inspect never show it; other squashfs readers see a plain
 * file.
 */
#ifndef SQV_HOT_H
#define SQV_HOT_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "image.h"

#define SQV_HOT_NAME ".sqvenvfs-hot"
#define SQV_HOT_MAGIC "sqvenvfs-hot 1"
/* More ranges than this are refused: pack merges close ones. */
#define SQV_HOT_MAX_RANGES 256

struct sqv_hot_range {
	uint64_t off, len;
};

/* Where an image's record is: -ENOENT when it has none. Reads metadata
 * only (do it while the metadata copy is in memory: no read of the image). */
struct sqv_hot_where {
	uint64_t pos;
	uint32_t word;
	uint64_t size;
};
sqv_err_t sqv_hot_locate(struct sqv_image *img, struct sqv_hot_where *out);

/* Parse a record's bytes: the ranges (sorted, within bytes_used) into
 * out[0..*n), at most SQV_HOT_MAX_RANGES. -SQV_ECORRUPT for anything else. */
sqv_err_t sqv_hot_parse(const char *buf, size_t len, uint64_t bytes_used,
			struct sqv_hot_range *out, size_t *n);

#endif
