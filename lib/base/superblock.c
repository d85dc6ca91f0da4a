/* SPDX-License-Identifier: BSD-2-Clause */
/* superblock: see superblock.h. */
#include "superblock.h"

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "err.h"

#define SQUASHFS_MAGIC 0x73717368u /* "hsqs" */
#define BLOCK_MAX (1u << 20)

static uint16_t le16_at(const unsigned char *p, size_t off)
{
	uint16_t v;
	memcpy(&v, p + off, sizeof(v));
	return le16toh(v);
}

static uint32_t le32_at(const unsigned char *p, size_t off)
{
	uint32_t v;
	memcpy(&v, p + off, sizeof(v));
	return le32toh(v);
}

static uint64_t le64_at(const unsigned char *p, size_t off)
{
	uint64_t v;
	memcpy(&v, p + off, sizeof(v));
	return le64toh(v);
}

const char *sqv_superblock_comp_name(unsigned comp)
{
	static const char *const names[] = {
		[SQV_COMP_GZIP] = "gzip", [SQV_COMP_LZMA] = "lzma",
		[SQV_COMP_LZO] = "lzo",   [SQV_COMP_XZ] = "xz",
		[SQV_COMP_LZ4] = "lz4",   [SQV_COMP_ZSTD] = "zstd",
	};
	if (comp >= SQV_COMP_GZIP && comp <= SQV_COMP_ZSTD)
		return names[comp];
	return "unknown";
}

int sqv_superblock_check(const void *buf, size_t len, uint64_t file_size,
			 struct sqv_superblock *out, char *why, size_t why_size)
{
	const unsigned char *p = buf;
	struct sqv_superblock sb;

	if (len < SQV_SUPERBLOCK_SIZE || file_size < SQV_SUPERBLOCK_SIZE) {
		snprintf(why, why_size, "not a squashfs image (only %llu bytes)",
			 (unsigned long long)(file_size < SQV_SUPERBLOCK_SIZE ?
					      file_size : len));
		return -ENOTSUP;
	}
	if (le32_at(p, 0) != SQUASHFS_MAGIC) {
		snprintf(why, why_size, "not a squashfs image (bad magic)");
		return -ENOTSUP;
	}
	sb.inodes = le32_at(p, 4);
	sb.mkfs_time = le32_at(p, 8);
	sb.block_size = le32_at(p, 12);
	sb.fragments = le32_at(p, 16);
	sb.compression = le16_at(p, 20);
	sb.block_log = le16_at(p, 22);
	sb.flags = le16_at(p, 24);
	sb.ids = le16_at(p, 26);
	sb.major = le16_at(p, 28);
	sb.minor = le16_at(p, 30);
	sb.root_inode = le64_at(p, 32);
	sb.bytes_used = le64_at(p, 40);
	sb.id_table = le64_at(p, 48);
	sb.xattr_id_table = le64_at(p, 56);
	sb.inode_table = le64_at(p, 64);
	sb.directory_table = le64_at(p, 72);
	sb.fragment_table = le64_at(p, 80);
	sb.lookup_table = le64_at(p, 88);

	if (sb.major != 4 || sb.minor != 0) {
		snprintf(why, why_size, "unsupported squashfs version %u.%u",
			 sb.major, sb.minor);
		return -ENOTSUP;
	}
	if (sb.compression < SQV_COMP_GZIP || sb.compression > SQV_COMP_ZSTD) {
		snprintf(why, why_size, "unsupported compression %s (%u)",
			 sqv_superblock_comp_name(sb.compression), sb.compression);
		return -ENOTSUP;
	}
	if (sb.block_size < 4096 || sb.block_size > BLOCK_MAX ||
	    sb.block_log > 20 || (UINT32_C(1) << sb.block_log) != sb.block_size) {
		snprintf(why, why_size, "damaged superblock (block size %u)",
			 sb.block_size);
		return -SQV_ECORRUPT;
	}
	if (sb.bytes_used > file_size) {
		snprintf(why, why_size,
			 "truncated (the image says %llu bytes, the file has %llu)",
			 (unsigned long long)sb.bytes_used,
			 (unsigned long long)file_size);
		return -SQV_ECORRUPT;
	}
	if (sb.inode_table >= sb.bytes_used ||
	    sb.directory_table >= sb.bytes_used ||
	    sb.id_table >= sb.bytes_used) {
		snprintf(why, why_size,
			 "damaged superblock (a table starts past the end)");
		return -SQV_ECORRUPT;
	}
	*out = sb;
	return 0;
}
