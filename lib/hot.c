/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * hot: find and parse the hot-range record (hot.h says what it is).
 */
#include "hot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct find_ctx {
	uint64_t ref;
	int found;
};

static int find_name(void *ctx, const char *name, size_t len, uint64_t ref)
{
	struct find_ctx *f = ctx;

	if (len == strlen(SQV_HOT_NAME) && memcmp(name, SQV_HOT_NAME, len) == 0) {
		f->ref = ref;
		f->found = 1;
		return 1;
	}
	return 0;
}

sqv_err_t sqv_hot_locate(struct sqv_image *img, struct sqv_hot_where *out)
{
	struct sqv_image_inode root, rec;
	struct find_ctx f = { 0 };
	struct sqv_file_layout lay;
	uint32_t *words = NULL;
	uint64_t *positions = NULL;
	sqv_err_t err;

	SQV_TRY(sqv_image_root(img, &root));
	err = sqv_image_readdir(img, &root, find_name, &f);
	if (err < 0)
		return err;
	if (!f.found)
		return -ENOENT;
	SQV_TRY(sqv_image_inode(img, f.ref, &rec));
	if (!S_ISREG(rec.mode))
		return -SQV_ECORRUPT;
	SQV_TRY(sqv_image_file_layout(img, &rec, &lay, &words, &positions));
	/* pack writes it as one whole block, never in a fragment. */
	if (lay.nblocks == 1 && !lay.has_fragment &&
	    sqv_image_word_size(words[0]) != 0) {
		*out = (struct sqv_hot_where){ .pos = positions[0],
					       .word = words[0],
					       .size = lay.size };
		err = 0;
	} else {
		err = -SQV_ECORRUPT;
	}
	free(words);
	free(positions);
	return err;
}

sqv_err_t sqv_hot_parse(const char *buf, size_t len, uint64_t bytes_used,
			struct sqv_hot_range *out, size_t *n)
{
	size_t count = 0;
	const char *p = buf, *end = buf + len;
	int line = 0;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			return -SQV_ECORRUPT; /* no "end": truncated */
		char text[128];
		size_t l = (size_t)(nl - p);
		if (l >= sizeof(text))
			return -SQV_ECORRUPT;
		memcpy(text, p, l);
		text[l] = '\0';
		p = nl + 1;
		if (line++ == 0) {
			if (strcmp(text, SQV_HOT_MAGIC) != 0)
				return -SQV_ECORRUPT;
			continue;
		}
		if (strcmp(text, "end") == 0) {
			if (count == 0)
				return -SQV_ECORRUPT;
			*n = count;
			return 0;
		}
		if (text[0] == '#')
			continue;
		unsigned long long off, rlen;
		int used = 0;
		if (sscanf(text, "range %llu %llu%n", &off, &rlen, &used) != 2 ||
		    text[used] != '\0' || rlen == 0 || off > bytes_used ||
		    rlen > bytes_used - off || count == SQV_HOT_MAX_RANGES ||
		    (count && off < out[count - 1].off + out[count - 1].len))
			return -SQV_ECORRUPT;
		out[count++] = (struct sqv_hot_range){ off, rlen };
	}
	return -SQV_ECORRUPT;
}
