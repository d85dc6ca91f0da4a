/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * superblock: the one check that a file is a squashfs image sqvenvfs can
 * mount, before anything else reads it. Used by lib/image.c before it
 * reads any table, and by the Slurm plugin and Prolog, which refuse a bad
 * image at submission without linking libsquashfuse.
 */
#ifndef SQV_SUPERBLOCK_H
#define SQV_SUPERBLOCK_H

#include <stddef.h>
#include <stdint.h>

#define SQV_SUPERBLOCK_SIZE 96

/* squashfs compression ids */
enum { SQV_COMP_GZIP = 1, SQV_COMP_LZMA, SQV_COMP_LZO, SQV_COMP_XZ,
       SQV_COMP_LZ4, SQV_COMP_ZSTD };

/* The fields of a squashfs 4.0 superblock, in host byte order. */
struct sqv_superblock {
	uint32_t inodes;
	uint32_t mkfs_time;
	uint32_t block_size;
	uint32_t fragments;
	uint16_t compression;
	uint16_t block_log;
	uint16_t flags;
	uint16_t ids;             /* entries of the id table */
	uint16_t major, minor;
	uint64_t root_inode;
	uint64_t bytes_used;
	uint64_t id_table;
	uint64_t xattr_id_table;  /* all ones: no extended attributes */
	uint64_t inode_table;
	uint64_t directory_table;
	uint64_t fragment_table;
	uint64_t lookup_table;
};

/*
 * Decode and check the first len bytes of an image file of file_size bytes:
 * the squashfs magic, version 4.0, a known compression id, a sane block
 * size, bytes_used within the file, and the tables inside bytes_used.
 * 0 and *sb filled; otherwise -ENOTSUP (not a squashfs 4.0 image this code
 * knows) or -EUCLEAN (damaged or truncated), with the reason in why
 * ("not a squashfs image (bad magic)"; no file name).
 */
int sqv_superblock_check(const void *buf, size_t len, uint64_t file_size,
			 struct sqv_superblock *sb, char *why, size_t why_size);

/* "gzip", ..., "zstd", or "unknown". */
const char *sqv_superblock_comp_name(unsigned comp);

#endif
