/* SPDX-License-Identifier: BSD-2-Clause */
/* See fuzz_common.h. */
#include "fuzz_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "reader.h"

#define READ_CAP (4u << 20)
#define WALK_CAP 200000u

int sqv_fuzz_memfd(const uint8_t *data, size_t size)
{
	int fd = memfd_create("sqv-fuzz", MFD_CLOEXEC);
	size_t done = 0;

	if (fd < 0)
		return -1;
	while (done < size) {
		ssize_t n = write(fd, data + done, size - done);
		if (n <= 0) {
			close(fd);
			return -1;
		}
		done += (size_t)n;
	}
	return fd;
}

struct sqv_image *sqv_fuzz_image(const uint8_t *data, size_t size,
				 const char *name)
{
	struct sqv_image *img = NULL;
	int fd = sqv_fuzz_memfd(data, size);

	if (fd < 0)
		return NULL;
	if (sqv_image_open(fd, name, &img) < 0)
		return NULL;
	return img;
}

static void quiet_sink(int level, const char *msg, void *ctx)
{
	(void)level;
	(void)msg;
	(void)ctx;
}

void sqv_fuzz_quiet(void)
{
	if (!getenv("SQV_FUZZ_LOG"))
		sqv_log_set_sink(quiet_sink, NULL);
}

#define INVARIANT(cond)                                                        \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: invariant failed: %s\n",       \
				__FILE__, __LINE__, #cond);                    \
			abort();                                               \
		}                                                              \
	} while (0)

static void walk_xattrs(const struct sqv_index *idx, sqv_ino_t ino)
{
	size_t needed = 0;
	char *buf;

	INVARIANT(sqv_index_listxattr(idx, ino, NULL, 0, &needed) == 0);
	if (needed == 0)
		return;
	buf = malloc(needed);
	INVARIANT(buf);
	INVARIANT(sqv_index_listxattr(idx, ino, buf, needed, &needed) == 0);
	for (size_t off = 0; off < needed; off += strlen(buf + off) + 1) {
		const void *v;
		size_t len;
		INVARIANT(sqv_index_getxattr(idx, ino, buf + off, &v, &len) == 0);
	}
	free(buf);
}

static void read_file(struct sqv_reader *r, sqv_ino_t ino, uint64_t size)
{
	static char buf[128 * 1024];
	uint64_t off = 0;
	uint64_t limit = size < READ_CAP ? size : READ_CAP;

	while (off < limit) {
		size_t n = 0;
		sqv_err_t err = sqv_reader_pread(r, ino, buf, sizeof(buf), off, &n);
		if (err < 0) {
			/* Only these may come back for a damaged file. */
			INVARIANT(err == -SQV_ECORRUPT || err == -EIO ||
				  err == -ENOMEM);
			return;
		}
		INVARIANT(n > 0 && n <= sizeof(buf));
		off += n;
	}
	/* The tail, if the cap cut the file short. */
	if (size > limit) {
		size_t n = 0;
		(void)sqv_reader_pread(r, ino, buf, sizeof(buf), size - 1, &n);
	}
}

void sqv_fuzz_walk(const struct sqv_index *idx)
{
	struct sqv_reader *r = NULL;
	size_t ninodes = sqv_index_inode_count(idx);

	INVARIANT(ninodes >= 1);
	INVARIANT(S_ISDIR(sqv_index_mode(idx, SQV_INO_ROOT)));
	if (sqv_reader_new(idx, 1u << 20, &r) < 0)
		return;
	for (size_t i = 0; i < ninodes && i < WALK_CAP; i++) {
		sqv_ino_t ino = (sqv_ino_t)i;
		struct stat st;
		uint32_t count;

		INVARIANT(sqv_index_valid(idx, ino));
		sqv_index_stat(idx, ino, &st);
		INVARIANT(sqv_index_layer(idx, ino) < sqv_index_layer_count(idx));
		walk_xattrs(idx, ino);
		if (S_ISDIR(st.st_mode)) {
			INVARIANT(sqv_index_dir_count(idx, ino, &count) == 0);
			INVARIANT(sqv_index_valid(idx, sqv_index_parent(idx, ino)));
			for (uint32_t k = 0; k < count; k++) {
				const char *name;
				sqv_ino_t child, found;
				INVARIANT(sqv_index_dir_entry(idx, ino, k, &name,
							      &child) == 0);
				size_t len = strlen(name);
				INVARIANT(len > 0 && len <= 255);
				INVARIANT(!strchr(name, '/'));
				INVARIANT(strcmp(name, ".") && strcmp(name, ".."));
				INVARIANT(sqv_index_valid(idx, child));
				INVARIANT(sqv_index_lookup(idx, ino, name, len,
							   &found) == 0);
				INVARIANT(found == child);
			}
		} else if (S_ISLNK(st.st_mode)) {
			const char *target;
			INVARIANT(sqv_index_readlink(idx, ino, &target) == 0);
			INVARIANT(strlen(target) > 0);
		} else if (S_ISREG(st.st_mode)) {
			read_file(r, ino, (uint64_t)st.st_size);
		}
	}
	sqv_reader_free(r);
}
