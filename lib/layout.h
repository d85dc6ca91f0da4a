/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * layout: where an image's metadata blocks and table indexes lie, found
 * from its superblock by one walk. The digest table (digest.h) must list
 * each as what it is: `sqvenvfs-inspect seal` lists what this walk finds,
 * and sqv_image_open checks, with the same walk, that a table lists them
 * so. One walk, so the two cannot drift apart (docs/digests.md).
 *
 * A metadata table is a chain of blocks, each behind a 2-byte header
 * (bit 15: stored uncompressed; low 15 bits: stored size). The walk starts
 * a run at each table's start (inodes, directories, xattrs), at every
 * block a table index points at (fragment, export, id, xattr id) and at
 * the compressor options (one block after the superblock), and follows
 * the headers up to the next run's start, the next index or bytes_used.
 * The superblock and the indexes are raw bytes.
 */
#ifndef SQV_LAYOUT_H
#define SQV_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#include "digest.h"
#include "err.h"
#include "superblock.h"

/* What a piece belongs to. */
enum sqv_layout_table {
	SQV_LAYOUT_SUPERBLOCK,
	SQV_LAYOUT_COMP_OPTIONS,
	SQV_LAYOUT_INODES,
	SQV_LAYOUT_DIRECTORIES,
	SQV_LAYOUT_XATTRS,
	SQV_LAYOUT_FRAGMENTS, /* and the ones below: a block or an index */
	SQV_LAYOUT_EXPORTS,
	SQV_LAYOUT_IDS,
	SQV_LAYOUT_XATTR_IDS,
};

/* kind SQV_DIGEST_RAW: the superblock or a table's index (the xattr id
 * table's with its 16-byte header); SQV_DIGEST_META: a metadata block,
 * its header included. */
struct sqv_layout_piece {
	uint64_t pos;
	uint32_t len;
	enum sqv_digest_kind kind;
	enum sqv_layout_table table;
};

/* Called for each piece found: the raw ones first, by offset, then the
 * metadata blocks (runs by offset, each block in order). A run that two
 * tables start (an empty directory table starts where the next table's
 * first block does) belongs to the one that holds a block there. A
 * negative return ends the walk with that error; *why then says what is
 * wrong with the piece. */
typedef sqv_err_t (*sqv_layout_each_fn)(void *ctx,
					const struct sqv_layout_piece *p,
					const char **why);

/*
 * Walk the image whose superblock is sb, reading through read (indexes,
 * block headers; pos + len never past sb->bytes_used), calling each with
 * the same ctx. 0, or a negative errno with *bad the offset concerned and
 * *why a phrase saying what is wrong there ("metadata block with a damaged
 * header", "table index past the image's end", ...): -SQV_ECORRUPT for a
 * damaged structure, the read's error, -ENOMEM, or each's error.
 */
sqv_err_t sqv_layout_walk(const struct sqv_superblock *sb,
			  sqv_digest_read_fn read, sqv_layout_each_fn each,
			  void *ctx, uint64_t *bad, const char **why);

#endif
