/* SPDX-License-Identifier: BSD-2-Clause */
/* sqvenvfs-inspect's digest commands: see sqvenvfs-inspect-digest.c. */
#ifndef SQVENVFS_INSPECT_DIGEST_H
#define SQVENVFS_INSPECT_DIGEST_H

#include <stddef.h>

struct sqv_image;

/* Append (or replace) the block digest table of the image at path. 0, or
 * 1 with one line printed. */
int sqv_inspect_seal(const char *path);
/* Print the XXH3-128 of the image proper. 0, or 1 with one line. */
int sqv_inspect_digest(const char *path);
/* Check every entry of img's table (if it has one) against the file at
 * path; *checked gets the number of entries. 0, or 1 with one line. */
int sqv_inspect_verify_digests(const char *path, const struct sqv_image *img,
			       size_t *checked);

#endif
