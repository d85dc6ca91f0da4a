/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * A test helper that reads and rewrites an image's digest table
 * (docs/digests.md), so that a test can give a sealed image a table that
 * is wrong about the image yet consistent in itself (its own digest
 * recomputed): what a one-byte flip cannot make.
 *
 *   digest-table IMAGE        print the table, one "POS LEN KIND HEX" line
 *                             per entry (decimal; HEX the 32-digit digest)
 *   digest-table IMAGE -      replace the table with the lines read from
 *                             stdin, in the same form (HEX "-": the digest
 *                             of those bytes of the image), and a fresh
 *                             footer
 *
 * Python has no XXH3 in its standard library, hence C and lib/digest.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "digest.h"
#include "io.h"
#include "superblock.h"

static int die(const char *what)
{
	fprintf(stderr, "digest-table: %s\n", what);
	return 1;
}

static int print_table(int fd, uint64_t size, uint64_t used)
{
	struct sqv_digests *d;

	if (sqv_digest_load(fd, size, used, "image", NULL, &d) < 0)
		return die("cannot load the table");
	if (!d)
		return die("the image has no table");
	for (size_t i = 0; i < sqv_digest_count(d); i++) {
		const struct sqv_digest_entry *e = sqv_digest_entry(d, i);
		printf("%" PRIu64 " %" PRIu32 " %u ", e->pos, e->len,
		       (unsigned)e->kind);
		for (int k = 0; k < 16; k++)
			printf("%02x", e->digest[k]);
		putchar('\n');
	}
	sqv_digest_free(d);
	return fflush(stdout) == 0 ? 0 : die("cannot write stdout");
}

/* The digest of len bytes of the image at pos. */
static int digest_at(int fd, uint64_t pos, uint32_t len, uint8_t out[16])
{
	void *buf = malloc(len ? len : 1);

	if (!buf || sqv_pread_all(fd, buf, len, pos) < 0) {
		free(buf);
		return -1;
	}
	sqv_digest_of(buf, len, out);
	free(buf);
	return 0;
}

static int write_table(int fd, uint64_t used)
{
	struct sqv_digest_entry *e = NULL;
	size_t n = 0, cap = 0;
	char line[256];

	while (fgets(line, sizeof(line), stdin)) {
		uint64_t pos;
		unsigned len, kind;
		char hex[33];
		if (sscanf(line, "%" SCNu64 " %u %u %32s", &pos, &len, &kind,
			   hex) != 4 || (strlen(hex) != 32 && strcmp(hex, "-")))
			return die("bad input line");
		if (n == cap) {
			cap = cap ? 2 * cap : 256;
			struct sqv_digest_entry *ne = realloc(e, cap * sizeof(*e));
			if (!ne)
				return die("out of memory");
			e = ne;
		}
		e[n] = (struct sqv_digest_entry){ .pos = pos, .len = len,
						  .kind = (uint16_t)kind };
		if (strcmp(hex, "-") == 0) {
			if (digest_at(fd, pos, len, e[n].digest) < 0)
				return die("cannot read the image");
		} else {
			for (int k = 0; k < 16; k++)
				sscanf(hex + 2 * k, "%2hhx", &e[n].digest[k]);
		}
		n++;
	}
	uint64_t at = (used + SQV_DIGEST_ALIGN - 1) / SQV_DIGEST_ALIGN *
		      SQV_DIGEST_ALIGN;
	void *out;
	size_t outlen;
	if (sqv_digest_serialise(e, n, used, at, &out, &outlen) < 0)
		return die("out of memory");
	free(e);
	int rc = 0;
	if (ftruncate(fd, (off_t)at) < 0 ||
	    pwrite(fd, out, outlen, (off_t)at) != (ssize_t)outlen)
		rc = die(strerror(errno));
	free(out);
	return rc;
}

int main(int argc, char **argv)
{
	unsigned char b[SQV_SUPERBLOCK_SIZE];
	struct sqv_superblock sb;
	struct stat st;
	char why[256];

	if (argc != 2 && !(argc == 3 && strcmp(argv[2], "-") == 0))
		return die("usage: digest-table IMAGE [-]");
	int fd = open(argv[1], argc == 3 ? O_RDWR : O_RDONLY);
	if (fd < 0 || fstat(fd, &st) < 0 ||
	    sqv_pread_all(fd, b, sizeof(b), 0) < 0 ||
	    sqv_superblock_check(b, sizeof(b), (uint64_t)st.st_size, &sb, why,
				 sizeof(why)) < 0)
		return die("cannot read the image's superblock");
	int rc = argc == 3 ? write_table(fd, sb.bytes_used) :
			     print_table(fd, (uint64_t)st.st_size, sb.bytes_used);
	close(fd);
	return rc;
}
