/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * digest: the table of block digests that sqvenvfs-pack appends after a
 * squashfs image (docs/digests.md has the format), and the checks made
 * with it.
 *
 * squashfs stores no checksum: a flipped byte in a compressed block often
 * still decompresses, and an uncompressed one always does, so damage reads
 * as data. The table holds an XXH3-128 digest of every stored block (data,
 * fragment, metadata) and of every stored byte between them, is covered by
 * a digest of its own, and sits after bytes_used, where the kernel and
 * squashfuse never look: the image stays a standard squashfs image.
 * A loaded table is immutable: checks need no lock.
 */
#ifndef SQV_DIGEST_H
#define SQV_DIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "io.h"

#define SQV_DIGEST_MAGIC "SQVDIGST"
#define SQV_DIGEST_VERSION 1
#define SQV_DIGEST_XXH3_128 1
#define SQV_DIGEST_ENTRY_SIZE 32
#define SQV_DIGEST_FOOTER_SIZE 64
/* The table starts at bytes_used rounded up to this (mksquashfs pads the
 * image to 4 KiB). */
#define SQV_DIGEST_ALIGN 4096

enum sqv_digest_kind {
	SQV_DIGEST_DATA = 1,     /* a file's data block */
	SQV_DIGEST_FRAGMENT = 2, /* a fragment block (tails of small files) */
	SQV_DIGEST_META = 3,     /* a metadata block, its 2-byte header included */
	SQV_DIGEST_RAW = 4,      /* anything else: superblock, table indexes */
};

struct sqv_digest_entry {
	uint64_t pos;
	uint32_t len;
	uint16_t kind;
	uint8_t digest[16]; /* XXH3-128, canonical (big-endian) byte order */
};

struct sqv_digests;

/* Reads len bytes at pos into buf: 0 or a negative errno. */
typedef sqv_err_t (*sqv_digest_read_fn)(void *ctx, void *buf, size_t len,
					uint64_t pos);

/*
 * Load the table of the image on fd (file_size bytes, bytes_used from its
 * superblock). *out is NULL for an image without a table (nothing after
 * the image but its padding). -SQV_ECORRUPT, with the reason logged, for
 * anything else after the image: a table that does not check out must not
 * quietly turn verification off. The reads are counted in io (may be
 * NULL).
 */
sqv_err_t sqv_digest_load(int fd, uint64_t file_size, uint64_t bytes_used,
			  const char *name, struct sqv_io_count *io,
			  struct sqv_digests **out);
void sqv_digest_free(struct sqv_digests *d);

size_t sqv_digest_count(const struct sqv_digests *d);
const struct sqv_digest_entry *sqv_digest_entry(const struct sqv_digests *d,
						size_t i);

/* Check the len stored bytes of the block at pos against its entry, which
 * must exist with that length and a data or fragment kind (data) or the
 * metadata kind (meta). buf NULL checks the entry only, for bytes already
 * checked against the table. 0 or -SQV_ECORRUPT; *why says which check
 * failed. */
sqv_err_t sqv_digest_check(const struct sqv_digests *d, uint64_t pos,
			   const void *buf, size_t len, bool meta,
			   const char **why);

/* Whether the table lists every byte of [pos, pos + len) as raw bytes,
 * which the open hashes whole (the superblock, table indexes). 0, or
 * -SQV_ECORRUPT with *why the kind a byte is listed as instead, or that
 * no entry holds it. */
sqv_err_t sqv_digest_check_raw(const struct sqv_digests *d, uint64_t pos,
			       uint64_t len, const char **why);

/* Read and check every entry of the given kinds (a bit mask of
 * 1 << kind). Returns 0, or -SQV_ECORRUPT with *bad_pos the first damaged
 * entry's offset, or the read's error. */
sqv_err_t sqv_digest_verify(const struct sqv_digests *d, unsigned kinds,
			    sqv_digest_read_fn read, void *ctx,
			    uint64_t *bad_pos);

/* XXH3-128 of len bytes in canonical byte order (the tools' helper). */
void sqv_digest_of(const void *buf, size_t len, uint8_t out[16]);

/* Serialise a table: entries sorted by pos, then the footer. *out is
 * malloc()ed, *outlen its size. */
sqv_err_t sqv_digest_serialise(const struct sqv_digest_entry *entries,
			       size_t n, uint64_t bytes_used,
			       uint64_t table_offset, void **out,
			       size_t *outlen);

#endif
