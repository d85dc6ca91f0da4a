/*
 * layer: classify directory entry names under the OCI whiteout rules.
 */
#include "layer.h"

#include <stdbool.h>
#include <string.h>

/* A name a directory may hold: not empty, not "." or "..", no '/' or NUL,
 * at most SQV_NAME_MAX bytes. */
static bool name_is_valid(const char *name, size_t len)
{
	if (len == 0 || len > SQV_NAME_MAX)
		return false;
	if (name[0] == '.' && (len == 1 || (len == 2 && name[1] == '.')))
		return false;
	return memchr(name, '/', len) == NULL && memchr(name, '\0', len) == NULL;
}

enum sqv_name_kind sqv_layer_classify(const char *name, size_t len,
				      const char **target, size_t *target_len)
{
	const size_t plen = sizeof(SQV_WHITEOUT_PREFIX) - 1;

	if (!name_is_valid(name, len))
		return SQV_NAME_INVALID;
	if (len < plen || memcmp(name, SQV_WHITEOUT_PREFIX, plen) != 0)
		return SQV_NAME_PLAIN;
	if (len == sizeof(SQV_OPAQUE_NAME) - 1 &&
	    memcmp(name, SQV_OPAQUE_NAME, len) == 0)
		return SQV_NAME_OPAQUE;
	if (!name_is_valid(name + plen, len - plen))
		return SQV_NAME_INVALID;
	*target = name + plen;
	*target_len = len - plen;
	return SQV_NAME_WHITEOUT;
}
