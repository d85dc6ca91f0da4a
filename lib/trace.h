/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * trace: record which regular files a workload read, and which bytes, in
 * first-touch order, and write it as a read trace (docs/tools.md, "Read
 * traces"; the format is versioned and stable).
 *
 * The daemon notes every read it answers; the kernel's page cache sends
 * only first reads, so on a cold mount the trace is exactly what the
 * workload needed. sqvenvfs-pack --hot reads traces to lay an image out
 * hot-first. Notes are thread-safe (one mutex: recording is an
 * administrator's run, not the hot path of production mounts).
 */
#ifndef SQV_TRACE_H
#define SQV_TRACE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"
#include "index.h"

/* The first line of every trace; the number changes only with the format.
 * A file that begins with the prefix is a trace of some version. */
#define SQV_TRACE_MAGIC_PREFIX "sqvenvfs-trace "
#define SQV_TRACE_MAGIC SQV_TRACE_MAGIC_PREFIX "1"

struct sqv_trace;

sqv_err_t sqv_trace_new(const struct sqv_index *idx, struct sqv_trace **out);
void sqv_trace_free(struct sqv_trace *t);

/* Note that len bytes at offset off of regular file ino were read. */
sqv_err_t sqv_trace_note(struct sqv_trace *t, sqv_ino_t ino, uint64_t off,
			 uint64_t len);

/* Number of distinct files noted so far. */
size_t sqv_trace_files(struct sqv_trace *t);

/* Write the trace to f. */
sqv_err_t sqv_trace_write(struct sqv_trace *t, FILE *f);

/* Write the trace to path through a temporary file in the same directory
 * and a rename, so that path is either absent, its old self, or complete. */
sqv_err_t sqv_trace_save(struct sqv_trace *t, const char *path);

/* Write name (len bytes) as a trace field: bytes outside 0x20-0x7e and
 * '\' become \xHH, so tab, newline and backslash round-trip. */
void sqv_trace_put_name(FILE *f, const char *name, size_t len);

#endif
