/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * io: reading a file at an offset, whole.
 */
#ifndef SQV_IO_H
#define SQV_IO_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* pread until all len bytes at pos are in buf, retrying after a signal:
 * 0, or -EIO for an error or a file that ends first. */
sqv_err_t sqv_pread_all(int fd, void *buf, size_t len, uint64_t pos);

/* Reads of a file and their bytes, as the file system holding it saw them
 * (--stats): every module that reads an image counts into its one count.
 * Updated from any thread. */
struct sqv_io_count {
	atomic_uint_fast64_t reads;
	atomic_uint_fast64_t bytes;
};

/* sqv_pread_all, counted in count when it succeeds (NULL: not counted). */
sqv_err_t sqv_pread_counted(int fd, void *buf, size_t len, uint64_t pos,
			    struct sqv_io_count *count);

#endif
