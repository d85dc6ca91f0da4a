/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * What every fuzz target shares: turn bytes into an image (a memfd, as the
 * image module allows), and exercise everything the daemon would do with a
 * built index: stat every inode, list every directory, look every name up,
 * read every symlink and xattr, and read every file through the reader.
 *
 * Work is bounded so that one input cannot take long: a file's read stops
 * after READ_CAP bytes (a sparse file may claim terabytes of holes), and the
 * whole walk stops after WALK_CAP inodes.
 */
#ifndef SQV_FUZZ_COMMON_H
#define SQV_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "image.h"
#include "index.h"

/* A memfd holding data, or -1. */
int sqv_fuzz_memfd(const uint8_t *data, size_t size);
/* Open data as an image; NULL when it is refused (a clean refusal). */
struct sqv_image *sqv_fuzz_image(const uint8_t *data, size_t size,
				 const char *name);
/* Walk and read everything in idx; aborts on an inconsistency that a
 * correct index can never show (so the fuzzer reports it). */
void sqv_fuzz_walk(const struct sqv_index *idx);
/* Silence lib/'s log unless SQV_FUZZ_LOG is set. */
void sqv_fuzz_quiet(void);

#endif
