/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * layer: the OCI whiteout rules, in one place.
 *
 * In an upper layer, an entry ".wh.NAME" hides NAME in every layer below it
 * and is never shown itself; ".wh..wh..opq" in a directory hides everything
 * below that directory's layer. Names that no directory may hold ("", ".",
 * "..", anything with '/' or longer than 255 bytes) are refused here so the
 * index never serves them.
 *
 * The same two markers in overlayfs's own form, as found in an image packed
 * straight from an overlay upper directory: a character device 0:0 named
 * NAME is a whiteout of NAME, and a directory whose "trusted.overlay.opaque"
 * or "user.overlay.opaque" xattr is "y" is opaque. Like the OCI markers,
 * they are never served themselves.
 */
#ifndef SQV_LAYER_H
#define SQV_LAYER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SQV_WHITEOUT_PREFIX ".wh."
#define SQV_OPAQUE_NAME ".wh..wh..opq"
#define SQV_NAME_MAX 255

enum sqv_name_kind {
	SQV_NAME_PLAIN,     /* an ordinary entry */
	SQV_NAME_WHITEOUT,  /* hides *target in lower layers */
	SQV_NAME_OPAQUE,    /* hides the whole directory in lower layers */
	SQV_NAME_INVALID,   /* never served */
};

/* Classify a directory entry name; for a whiteout, *target and *target_len
 * name what it hides. */
enum sqv_name_kind sqv_layer_classify(const char *name, size_t len,
				      const char **target, size_t *target_len);

/* True for an inode that overlayfs would read as a whiteout: a character
 * device 0:0 (rdev in the kernel's encoding). */
bool sqv_layer_is_whiteout_inode(uint32_t mode, uint32_t rdev);

/* True for an extended attribute that marks its directory opaque the
 * overlayfs way; with value NULL, true for the name whatever its value (a
 * marker the index does not serve). */
bool sqv_layer_is_opaque_xattr(const char *name, const void *value,
			       size_t len);

#endif
