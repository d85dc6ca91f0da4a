/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * digest: load, check and write the block digest table. See digest.h and
 * docs/digests.md.
 */
#include "digest.h"

#include <endian.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "io.h"
#include "log.h"

struct sqv_digests {
	size_t n;
	struct sqv_digest_entry *e; /* sorted by pos, not overlapping */
};

void sqv_digest_of(const void *buf, size_t len, uint8_t out[16])
{
	XXH128_canonical_t c;

	XXH128_canonicalFromHash(&c, XXH3_128bits(buf, len));
	memcpy(out, c.digest, 16);
}

static uint64_t get64(const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return le64toh(v);
}

static uint32_t get32(const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return le32toh(v);
}

static uint16_t get16(const unsigned char *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return le16toh(v);
}

static void put64(unsigned char *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

static void put32(unsigned char *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

static void put16(unsigned char *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, 2);
}

/* The digest that covers the table: its entries, then the footer's first
 * 40 bytes (everything before the digest itself). */
static sqv_err_t table_digest(const unsigned char *entries, size_t len,
			      const unsigned char *footer, uint8_t out[16])
{
	XXH3_state_t *st = XXH3_createState();
	XXH128_canonical_t c;

	if (!st)
		return -ENOMEM;
	XXH3_128bits_reset(st);
	XXH3_128bits_update(st, entries, len);
	XXH3_128bits_update(st, footer, 40);
	XXH128_canonicalFromHash(&c, XXH3_128bits_digest(st));
	XXH3_freeState(st);
	memcpy(out, c.digest, 16);
	return 0;
}

static uint64_t round_up(uint64_t v)
{
	return (v + SQV_DIGEST_ALIGN - 1) / SQV_DIGEST_ALIGN * SQV_DIGEST_ALIGN;
}

static sqv_err_t damaged(const char *name, const char *why)
{
	sqv_log(SQV_LOG_ERR, "%s: damaged digest table (%s)", name, why);
	return -SQV_ECORRUPT;
}

sqv_err_t sqv_digest_load(int fd, uint64_t file_size, uint64_t bytes_used,
			  const char *name, struct sqv_io_count *io,
			  struct sqv_digests **out)
{
	unsigned char footer[SQV_DIGEST_FOOTER_SIZE];
	uint64_t table = round_up(bytes_used);
	unsigned char *raw = NULL;
	struct sqv_digests *d = NULL;
	uint8_t want[16];
	sqv_err_t err;

	*out = NULL;
	if (file_size <= table)
		return 0; /* a plain image, perhaps padded */
	if (file_size - table < SQV_DIGEST_FOOTER_SIZE)
		return damaged(name, "bytes after the image, but no footer");
	err = sqv_pread_counted(fd, footer, sizeof(footer),
				file_size - SQV_DIGEST_FOOTER_SIZE, io);
	if (err < 0) {
		sqv_log(SQV_LOG_ERR, "%s: cannot read the digest table", name);
		return err;
	}
	if (memcmp(footer, SQV_DIGEST_MAGIC, 8) != 0)
		return damaged(name, "bytes after the image, but no footer");
	static const unsigned char zero[8];
	if (get32(footer + 8) != SQV_DIGEST_VERSION ||
	    get32(footer + 12) != SQV_DIGEST_XXH3_128 ||
	    memcmp(footer + 56, zero, sizeof(zero)) != 0)
		return damaged(name, "unknown version or hash");
	uint64_t used = get64(footer + 16), offset = get64(footer + 24);
	uint64_t count = get64(footer + 32);
	if (used != bytes_used)
		return damaged(name, "made for an image of another size");
	if (offset != table || count > (file_size - table) / SQV_DIGEST_ENTRY_SIZE ||
	    table + count * SQV_DIGEST_ENTRY_SIZE + SQV_DIGEST_FOOTER_SIZE !=
		    file_size)
		return damaged(name, "footer does not match the file's size");

	size_t len = (size_t)count * SQV_DIGEST_ENTRY_SIZE;
	raw = malloc(len ? len : 1);
	d = calloc(1, sizeof(*d));
	if (d)
		d->e = malloc((count ? count : 1) * sizeof(*d->e));
	if (!raw || !d || !d->e) {
		err = -ENOMEM;
		goto fail;
	}
	err = sqv_pread_counted(fd, raw, len, table, io);
	if (err < 0) {
		sqv_log(SQV_LOG_ERR, "%s: cannot read the digest table", name);
		goto fail;
	}
	err = table_digest(raw, len, footer, want);
	if (err < 0)
		goto fail;
	if (memcmp(want, footer + 40, 16) != 0) {
		err = damaged(name, "its own digest does not match");
		goto fail;
	}
	uint64_t end = 0;
	for (size_t i = 0; i < count; i++) {
		const unsigned char *p = raw + i * SQV_DIGEST_ENTRY_SIZE;
		struct sqv_digest_entry *e = &d->e[i];
		e->pos = get64(p);
		e->len = get32(p + 8);
		e->kind = get16(p + 12);
		memcpy(e->digest, p + 16, 16);
		if (e->pos < end || e->len == 0 || e->kind < SQV_DIGEST_DATA ||
		    e->kind > SQV_DIGEST_RAW || e->pos + e->len > bytes_used) {
			err = damaged(name, "entries out of order or out of range");
			goto fail;
		}
		end = e->pos + e->len;
	}
	d->n = (size_t)count;
	free(raw);
	*out = d;
	return 0;
fail:
	free(raw);
	sqv_digest_free(d);
	return err;
}

void sqv_digest_free(struct sqv_digests *d)
{
	if (!d)
		return;
	free(d->e);
	free(d);
}

size_t sqv_digest_count(const struct sqv_digests *d)
{
	return d ? d->n : 0;
}

const struct sqv_digest_entry *sqv_digest_entry(const struct sqv_digests *d,
						size_t i)
{
	return &d->e[i];
}

/* The index of the first entry at or after pos (d->n if none). */
static size_t first_from(const struct sqv_digests *d, uint64_t pos)
{
	size_t lo = 0, hi = d->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (d->e[mid].pos < pos)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static const struct sqv_digest_entry *find(const struct sqv_digests *d,
					   uint64_t pos)
{
	size_t i = first_from(d, pos);

	return i < d->n && d->e[i].pos == pos ? &d->e[i] : NULL;
}

/* What the table says instead, by kind: a table that is sound in itself
 * but does not match the image is told apart from damage. */
static const char *const listed_as[] = {
	[SQV_DIGEST_DATA] = "listed in the digest table as a data block",
	[SQV_DIGEST_FRAGMENT] = "listed in the digest table as a fragment block",
	[SQV_DIGEST_META] = "listed in the digest table as a metadata block",
	[SQV_DIGEST_RAW] = "listed in the digest table as raw bytes",
};

sqv_err_t sqv_digest_check_raw(const struct sqv_digests *d, uint64_t pos,
			       uint64_t len, const char **why)
{
	/* The entry holding pos starts there or is the one before. */
	size_t i = first_from(d, pos);
	if ((i == d->n || d->e[i].pos != pos) && i > 0)
		i--;
	for (uint64_t at = pos; at < pos + len; i++) {
		const struct sqv_digest_entry *e = i < d->n ? &d->e[i] : NULL;
		if (!e || e->pos > at || e->pos + e->len <= at) {
			*why = "not in the digest table";
			return -SQV_ECORRUPT;
		}
		if (e->kind != SQV_DIGEST_RAW) {
			*why = listed_as[e->kind]; /* the load checked the kind */
			return -SQV_ECORRUPT;
		}
		at = e->pos + e->len;
	}
	return 0;
}

sqv_err_t sqv_digest_check(const struct sqv_digests *d, uint64_t pos,
			   const void *buf, size_t len, bool meta,
			   const char **why)
{
	const struct sqv_digest_entry *e = find(d, pos);
	uint8_t got[16];

	if (!e) {
		*why = "no such block in the digest table";
		return -SQV_ECORRUPT;
	}
	if (meta ? e->kind != SQV_DIGEST_META :
		   e->kind != SQV_DIGEST_DATA && e->kind != SQV_DIGEST_FRAGMENT) {
		*why = listed_as[e->kind]; /* the load checked the kind */
		return -SQV_ECORRUPT;
	}
	if (e->len != len) {
		*why = "listed in the digest table with another length";
		return -SQV_ECORRUPT;
	}
	if (!buf)
		return 0; /* its bytes were checked already */
	sqv_digest_of(buf, len, got);
	if (memcmp(got, e->digest, 16) != 0) {
		*why = "block does not match its digest";
		return -SQV_ECORRUPT;
	}
	return 0;
}

sqv_err_t sqv_digest_verify(const struct sqv_digests *d, unsigned kinds,
			    sqv_digest_read_fn read, void *ctx,
			    uint64_t *bad_pos)
{
	unsigned char *buf = NULL;
	size_t cap = 0;
	sqv_err_t err = 0;

	for (size_t i = 0; i < d->n && err == 0; i++) {
		const struct sqv_digest_entry *e = &d->e[i];
		uint8_t got[16];

		if (!(kinds & (1u << e->kind)))
			continue;
		if (e->len > cap) {
			unsigned char *nb = realloc(buf, e->len);
			if (!nb) {
				err = -ENOMEM;
				break;
			}
			buf = nb;
			cap = e->len;
		}
		err = read(ctx, buf, e->len, e->pos);
		if (err < 0)
			break;
		sqv_digest_of(buf, e->len, got);
		if (memcmp(got, e->digest, 16) != 0) {
			*bad_pos = e->pos;
			err = -SQV_ECORRUPT;
		}
	}
	free(buf);
	return err;
}

sqv_err_t sqv_digest_serialise(const struct sqv_digest_entry *entries,
			       size_t n, uint64_t bytes_used,
			       uint64_t table_offset, void **out,
			       size_t *outlen)
{
	size_t len = n * SQV_DIGEST_ENTRY_SIZE;
	unsigned char *buf = calloc(1, len + SQV_DIGEST_FOOTER_SIZE);

	if (!buf)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		unsigned char *p = buf + i * SQV_DIGEST_ENTRY_SIZE;
		put64(p, entries[i].pos);
		put32(p + 8, entries[i].len);
		put16(p + 12, entries[i].kind);
		memcpy(p + 16, entries[i].digest, 16);
	}
	unsigned char *f = buf + len;
	memcpy(f, SQV_DIGEST_MAGIC, 8);
	put32(f + 8, SQV_DIGEST_VERSION);
	put32(f + 12, SQV_DIGEST_XXH3_128);
	put64(f + 16, bytes_used);
	put64(f + 24, table_offset);
	put64(f + 32, n);
	sqv_err_t err = table_digest(buf, len, f, f + 40);
	if (err < 0) {
		free(buf);
		return err;
	}
	*out = buf;
	*outlen = len + SQV_DIGEST_FOOTER_SIZE;
	return 0;
}
