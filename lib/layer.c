/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * layer: classify directory entry names under the OCI whiteout rules, and
 * recognise overlayfs's whiteout devices and opaque xattrs.
 */
#include "layer.h"

#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>

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

bool sqv_layer_is_whiteout_inode(uint32_t mode, uint32_t rdev)
{
	/* 0:0 is no device's number: overlayfs reserves it for whiteouts. */
	return S_ISCHR(mode) && rdev == 0;
}

bool sqv_layer_is_opaque_xattr(const char *name, const void *value,
			       size_t len)
{
	/* "trusted." as root, "user." when mounted with userxattr (the
	 * unprivileged case); only "y" means opaque ("x", since Linux 6.7,
	 * marks a directory that holds xattr whiteouts, which we do not read). */
	if (strcmp(name, "trusted.overlay.opaque") != 0 &&
	    strcmp(name, "user.overlay.opaque") != 0)
		return false;
	return !value || (len == 1 && *(const char *)value == 'y');
}
