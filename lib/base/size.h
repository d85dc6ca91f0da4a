/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * size: the one grammar for sizes on command lines and in configuration
 * files (docs/sizes.md; sqvenvfs-pack follows the same):
 *
 *   SIZE = DIGITS [ UNIT [ "i" ] [ "B" ] ]      letters in either case
 *   UNIT = K | M | G | T                        powers of 1024
 *
 * "64M", "64MiB", "64mb" and "67108864" are the same size.
 */
#ifndef SQV_SIZE_H
#define SQV_SIZE_H

#include <stdint.h>

/* 0 and *out set; -EINVAL when s is not a SIZE; -ERANGE when it does not
 * fit in 64 bits. */
int sqv_size_parse(const char *s, uint64_t *out);

#endif
