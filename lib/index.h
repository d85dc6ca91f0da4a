/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * index: the merged tree of a stack of images, built once and immutable.
 *
 * sqv_index_build walks every layer (top first), applies the whiteout rules
 * of layer.h, and lays the result out in flat arrays: one record per visible
 * inode (hard links share one), each directory's entries sorted by name and
 * contiguous, names and symlink targets in one string pool, and for regular
 * files the block list needed to read them without touching libsquashfuse.
 * After the build nothing changes, so every query is lock-free and safe from
 * any number of threads.
 *
 * An sqv_ino_t is a position in the index; the root is SQV_INO_ROOT (0).
 * The daemon hands FUSE node ids of sqv_ino_t + 1.
 */
#ifndef SQV_INDEX_H
#define SQV_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "err.h"
#include "image.h"

struct sqv_index;
typedef uint32_t sqv_ino_t;

#define SQV_INO_ROOT ((sqv_ino_t)0)

enum sqv_index_flags {
	/* Keep ".wh.*" entries as ordinary files and ignore their meaning
	 * (nothing hidden, no directory opaque): for inspecting what one
	 * layer carries. In a stack every directory still merges with
	 * those of the same name below it. */
	SQV_INDEX_RAW = 1 << 0,
};

/* The most images one stack may hold. */
#define SQV_INDEX_MAX_LAYERS 128

/* Build the merged tree of layers[0..n) (bottom first). Damaged entries
 * are skipped with a log line; a damaged root or superblock fails, and so
 * does a sealed image whose build needed a metadata block its digest
 * table does not vouch for (sqv_image_metadata_unverified): one line,
 * -SQV_ECORRUPT. */
sqv_err_t sqv_index_build(struct sqv_image *const *layers, unsigned nlayers,
			  unsigned flags, struct sqv_index **out);
void sqv_index_free(struct sqv_index *idx);

/* Number of visible inodes, and of directory entries. */
size_t sqv_index_inode_count(const struct sqv_index *idx);
size_t sqv_index_entry_count(const struct sqv_index *idx);
/* Bytes the index holds in memory. */
size_t sqv_index_memory(const struct sqv_index *idx);
unsigned sqv_index_layer_count(const struct sqv_index *idx);
struct sqv_image *sqv_index_image(const struct sqv_index *idx, unsigned layer);

bool sqv_index_valid(const struct sqv_index *idx, sqv_ino_t ino);

/* -ENOENT if dir has no such entry, -ENOTDIR if dir is not a directory. */
sqv_err_t sqv_index_lookup(const struct sqv_index *idx, sqv_ino_t dir,
			   const char *name, size_t len, sqv_ino_t *out);
/* Resolve "a/b/c" (leading and repeated '/' ignored; symlinks not
 * followed): for the tools. */
sqv_err_t sqv_index_lookup_path(const struct sqv_index *idx, const char *path,
				sqv_ino_t *out);

/* Attributes as stored; st_ino as ino.h explains. */
void sqv_index_stat(const struct sqv_index *idx, sqv_ino_t ino,
		    struct stat *st);
uint32_t sqv_index_mode(const struct sqv_index *idx, sqv_ino_t ino);
/* The layer that provides this inode (its topmost one for a directory). */
unsigned sqv_index_layer(const struct sqv_index *idx, sqv_ino_t ino);
/* A directory's parent (the root is its own parent). */
sqv_ino_t sqv_index_parent(const struct sqv_index *idx, sqv_ino_t dir);

/* Directory listing: entry i of dir, sorted by name. -ENOTDIR. */
sqv_err_t sqv_index_dir_count(const struct sqv_index *idx, sqv_ino_t dir,
			      uint32_t *count);
sqv_err_t sqv_index_dir_entry(const struct sqv_index *idx, sqv_ino_t dir,
			      uint32_t i, const char **name, sqv_ino_t *child);

/* A symlink's target, NUL-terminated; -EINVAL if ino is not a symlink. */
sqv_err_t sqv_index_readlink(const struct sqv_index *idx, sqv_ino_t ino,
			     const char **target);

/* Extended attributes, copied from the image at build time. getxattr gives
 * -ENODATA when absent. listxattr copies the names as "a\0b\0" into buf
 * (when buf is not NULL) and sets *needed to their length; -ERANGE when
 * size is too small. */
sqv_err_t sqv_index_getxattr(const struct sqv_index *idx, sqv_ino_t ino,
			     const char *name, const void **value, size_t *len);
sqv_err_t sqv_index_listxattr(const struct sqv_index *idx, sqv_ino_t ino,
			      char *buf, size_t size, size_t *needed);

/* How to read a regular file: its layer, layout and block size words.
 * -EISDIR / -EINVAL for what is not a regular file. */
struct sqv_index_file {
	unsigned layer;
	struct sqv_file_layout layout;
	const uint32_t *words;      /* layout.nblocks size words */
	const uint64_t *positions;  /* image offset of each block */
};
sqv_err_t sqv_index_file(const struct sqv_index *idx, sqv_ino_t ino,
			 struct sqv_index_file *out);

#endif
