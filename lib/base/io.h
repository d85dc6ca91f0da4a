/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * io: reading a file at an offset, whole.
 */
#ifndef SQV_IO_H
#define SQV_IO_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* pread until all len bytes at pos are in buf, retrying after a signal:
 * 0, or -EIO for an error or a file that ends first. */
sqv_err_t sqv_pread_all(int fd, void *buf, size_t len, uint64_t pos);

#endif
