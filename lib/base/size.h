/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * size: the one grammar for sizes on command lines and in configuration
 * files (docs/sizes.md; sqvenvfs-pack follows the same):
 *
 *   SIZE = DIGITS [ UNIT [ "i" ] [ "B" ] ]      letters in either case
 *   UNIT = K | M | G | T                        powers of 1024
 *
 * "64M", "64MiB", "64mb" and "67108864" are the same size.
 *
 * Sizes are written for people in the same powers of 1024, with their IEC
 * names and three significant digits: "512 B", "1.5 KiB", "212 MiB".
 */
#ifndef SQV_SIZE_H
#define SQV_SIZE_H

#include <stddef.h>
#include <stdint.h>

/* 0 and *out set; -EINVAL when s is not a SIZE; -ERANGE when it does not
 * fit in 64 bits. */
int sqv_size_parse(const char *s, uint64_t *out);

/* Room for any size sqv_size_format writes, with the final NUL. */
#define SQV_SIZE_FORMAT_MAX 16

/* Write bytes as "N B" below 1 KiB, else in the largest unit that keeps
 * the rounded value below 1024: one decimal under 10 ("1.5 KiB"), none
 * from 10 ("212 MiB"). Returns what snprintf returns. */
int sqv_size_format(uint64_t bytes, char *buf, size_t size);

#endif
