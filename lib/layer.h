/*
 * layer: the OCI whiteout rules, in one place.
 *
 * In an upper layer, an entry ".wh.NAME" hides NAME in every layer below it
 * and is never shown itself; ".wh..wh..opq" in a directory hides everything
 * below that directory's layer. Names that no directory may hold ("", ".",
 * "..", anything with '/' or longer than 255 bytes) are refused here so the
 * index never serves them.
 */
#ifndef SQV_LAYER_H
#define SQV_LAYER_H

#include <stddef.h>

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

#endif
