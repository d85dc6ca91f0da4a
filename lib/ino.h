/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * ino: how an image inode becomes the inode number a user sees.
 *
 *   st_ino = layer << 32 | the image's own inode number
 *
 * layer counts from 0 at the bottom image. So st_ino is stable from mount
 * to mount of the same stack (it depends on nothing but the images and their
 * order), unique across layers, equal for hard links (which share an image
 * inode), and for a single image equal to what the kernel's squashfs shows.
 * FUSE's own node ids are different: they are positions in the index (root
 * is 1), see index.h, and never leave the daemon.
 */
#ifndef SQV_INO_H
#define SQV_INO_H

#include <stdint.h>

static inline uint64_t sqv_ino_encode(unsigned layer, uint32_t number)
{
	return (uint64_t)layer << 32 | number;
}

static inline unsigned sqv_ino_layer(uint64_t st_ino)
{
	return (unsigned)(st_ino >> 32);
}

#endif
