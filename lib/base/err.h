/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Error conventions of lib/: every function returns 0 or a negative errno
 * (sqv_err_t), writes its out-parameters only on success, and never uses
 * errno as a side channel. A damaged image is -SQV_ECORRUPT, distinct from
 * an I/O error, so the daemon can log it with the image and offset and turn
 * it into EIO for the reader.
 */
#ifndef SQV_ERR_H
#define SQV_ERR_H

#include <errno.h>

#include "log.h"

typedef int sqv_err_t;

/* "Structure needs cleaning": what the kernel's file systems say of damage. */
#define SQV_ECORRUPT EUCLEAN

/* Evaluate expr (an sqv_err_t) and return it from the caller if negative. */
#define SQV_TRY(expr)                                                          \
	do {                                                                   \
		sqv_err_t sqv_try_err_ = (expr);                               \
		if (sqv_try_err_ < 0)                                          \
			return sqv_try_err_;                                   \
	} while (0)

#endif
