/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Fuzz target: the name rules alone (layer.h), with invariants: a name
 * that is served is a valid directory entry name, and a whiteout's target
 * lies inside the name.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *name = (const char *)data;
	const char *target = NULL;
	size_t tlen = 0;
	enum sqv_name_kind k = sqv_layer_classify(name, size, &target, &tlen);

	if (k == SQV_NAME_INVALID)
		return 0;
	if (size == 0 || size > SQV_NAME_MAX || memchr(name, '/', size) ||
	    memchr(name, '\0', size) ||
	    (size == 1 && name[0] == '.') ||
	    (size == 2 && name[0] == '.' && name[1] == '.'))
		abort();
	if (k == SQV_NAME_WHITEOUT) {
		if (!target || target < name || target + tlen > name + size ||
		    tlen == 0 || (tlen == 1 && target[0] == '.') ||
		    (tlen == 2 && target[0] == '.' && target[1] == '.'))
			abort();
	}
	return 0;
}
