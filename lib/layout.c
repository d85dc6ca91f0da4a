/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * layout: the one walk of an image's metadata tables. See layout.h.
 */
#include "layout.h"

#include <stdbool.h>
#include <stdlib.h>

/* A metadata block holds at most this many bytes, and mksquashfs stores
 * one uncompressed when compressing would not make it smaller: a stored
 * size above it is damage. */
#define META_SIZE 8192
#define NO_TABLE UINT64_MAX
#define FLAG_COMP_OPT 0x0400

/* A run start (len 0) or an index, and whose. */
struct spans {
	struct span {
		uint64_t pos, len;
		enum sqv_layout_table table;
	} *v;
	size_t n, cap;
};

struct walk {
	const struct sqv_superblock *sb;
	sqv_digest_read_fn read;
	void *ctx;
	struct spans starts, raw; /* run starts (len 0), table indexes */
	uint64_t *bad;
	const char **why;
};

static sqv_err_t fault(struct walk *w, sqv_err_t err, uint64_t pos,
		       const char *why)
{
	*w->bad = pos;
	*w->why = why;
	return err;
}

static sqv_err_t push(struct spans *s, uint64_t pos, uint64_t len,
		      enum sqv_layout_table table)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		struct span *v = realloc(s->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = (struct span){ .pos = pos, .len = len, .table = table };
	return 0;
}

static uint64_t le(const unsigned char *p, int n)
{
	uint64_t v = 0;
	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* Read len bytes at pos, which must lie inside the image proper. */
static sqv_err_t read_in(struct walk *w, void *buf, size_t len, uint64_t pos,
			 const char *what)
{
	if (pos > w->sb->bytes_used || len > w->sb->bytes_used - pos)
		return fault(w, -SQV_ECORRUPT, pos, what);
	sqv_err_t err = w->read(w->ctx, buf, len, pos);
	return err < 0 ? fault(w, err, pos, "cannot be read") : 0;
}

/* A table's index at pos: header bytes, then one u64 per metadata block
 * of count entries of each bytes: raw bytes, and each block a run start. */
static sqv_err_t add_index(struct walk *w, enum sqv_layout_table table,
			   uint64_t pos, uint64_t header, uint64_t count,
			   uint64_t each)
{
	uint64_t n = (count * each + META_SIZE - 1) / META_SIZE;
	const char *past = "table index past the image's end";

	if (pos > w->sb->bytes_used || n > (w->sb->bytes_used - pos) / 8)
		return fault(w, -SQV_ECORRUPT, pos, past);
	uint64_t len = header + n * 8;
	unsigned char *buf = malloc(len ? len : 1);
	if (!buf)
		return -ENOMEM;
	sqv_err_t err = read_in(w, buf, len, pos, past);
	if (err == 0)
		err = push(&w->raw, pos, len, table);
	for (uint64_t i = 0; i < n && err == 0; i++)
		err = push(&w->starts, le(buf + header + i * 8, 8), 0, table);
	free(buf);
	return err;
}

/* Every run start and every index the superblock leads to. */
static sqv_err_t collect(struct walk *w)
{
	const struct sqv_superblock *sb = w->sb;
	unsigned char b[16];

	SQV_TRY(push(&w->raw, 0, SQV_SUPERBLOCK_SIZE, SQV_LAYOUT_SUPERBLOCK));
	if (sb->flags & FLAG_COMP_OPT)
		SQV_TRY(push(&w->starts, SQV_SUPERBLOCK_SIZE, 0,
			     SQV_LAYOUT_COMP_OPTIONS));
	SQV_TRY(push(&w->starts, sb->inode_table, 0, SQV_LAYOUT_INODES));
	SQV_TRY(push(&w->starts, sb->directory_table, 0,
		     SQV_LAYOUT_DIRECTORIES));
	if (sb->fragments && sb->fragment_table != NO_TABLE)
		SQV_TRY(add_index(w, SQV_LAYOUT_FRAGMENTS, sb->fragment_table, 0,
				  sb->fragments, 16));
	if (sb->lookup_table != NO_TABLE)
		SQV_TRY(add_index(w, SQV_LAYOUT_EXPORTS, sb->lookup_table, 0,
				  sb->inodes, 8));
	if (sb->ids && sb->id_table != NO_TABLE)
		SQV_TRY(add_index(w, SQV_LAYOUT_IDS, sb->id_table, 0, sb->ids, 4));
	if (sb->xattr_id_table != NO_TABLE) {
		/* u64 xattr table start, u32 count, u32 unused, then the
		 * index. */
		SQV_TRY(read_in(w, b, 16, sb->xattr_id_table,
				"table index past the image's end"));
		SQV_TRY(push(&w->starts, le(b, 8), 0, SQV_LAYOUT_XATTRS));
		SQV_TRY(add_index(w, SQV_LAYOUT_XATTR_IDS, sb->xattr_id_table,
				  16, le(b + 8, 4), 16));
	}
	return 0;
}

/* By offset; at one offset a table that holds a block there (one an
 * index lists, or the compressor options) before one that may be empty. */
static int cmp_pos(const void *a, const void *b)
{
	const struct span *x = a, *y = b;
	bool xe = x->table >= SQV_LAYOUT_INODES && x->table < SQV_LAYOUT_FRAGMENTS;
	bool ye = y->table >= SQV_LAYOUT_INODES && y->table < SQV_LAYOUT_FRAGMENTS;

	if (x->pos != y->pos)
		return x->pos < y->pos ? -1 : 1;
	return (int)xe - (int)ye;
}

/* The blocks of the run from pos, header by header, while they start
 * before end. */
static sqv_err_t walk_run(struct walk *w, enum sqv_layout_table table,
			  uint64_t pos, uint64_t end, sqv_layout_each_fn each,
			  void *ctx)
{
	const char *damaged = "metadata block with a damaged header";

	if (pos > w->sb->bytes_used)
		return fault(w, -SQV_ECORRUPT, pos,
			     "metadata block past the image's end");
	while (pos < end) {
		unsigned char h[2];
		SQV_TRY(read_in(w, h, 2, pos, damaged));
		uint64_t size = le(h, 2) & 0x7fff;
		if (size == 0 || size > META_SIZE ||
		    size > w->sb->bytes_used - pos - 2)
			return fault(w, -SQV_ECORRUPT, pos, damaged);
		const struct sqv_layout_piece p = {
			.pos = pos, .len = (uint32_t)(2 + size),
			.kind = SQV_DIGEST_META, .table = table };
		const char *why = NULL;
		sqv_err_t err = each(ctx, &p, &why);
		if (err < 0)
			return fault(w, err, pos, why ? why : "refused");
		pos += 2 + size;
	}
	return 0;
}

static sqv_err_t walk(struct walk *w, sqv_layout_each_fn each, void *ctx)
{
	const struct sqv_superblock *sb = w->sb;
	struct spans *s = &w->starts, *r = &w->raw;

	SQV_TRY(collect(w));
	qsort(s->v, s->n, sizeof(*s->v), cmp_pos);
	qsort(r->v, r->n, sizeof(*r->v), cmp_pos);
	/* One start per offset: an empty table (the directory table of an
	 * empty root) starts where the next table's first block does, and a
	 * run must not end at its own start. */
	size_t n = 0;
	for (size_t i = 0; i < s->n; i++)
		if (n == 0 || s->v[i].pos != s->v[n - 1].pos)
			s->v[n++] = s->v[i];
	s->n = n;
	for (size_t i = 0; i < r->n; i++) {
		const struct sqv_layout_piece p = {
			.pos = r->v[i].pos, .len = (uint32_t)r->v[i].len,
			.kind = SQV_DIGEST_RAW, .table = r->v[i].table };
		const char *why = NULL;
		sqv_err_t err = each(ctx, &p, &why);
		if (err < 0)
			return fault(w, err, r->v[i].pos, why ? why : "refused");
	}
	for (size_t i = 0; i < s->n; i++) {
		uint64_t pos = s->v[i].pos;
		/* The run ends where the next run or index begins. */
		uint64_t end = i + 1 < s->n ? s->v[i + 1].pos : sb->bytes_used;
		for (size_t k = 0; k < r->n; k++)
			if (r->v[k].pos > pos && r->v[k].pos < end)
				end = r->v[k].pos;
		if (pos == SQV_SUPERBLOCK_SIZE && (sb->flags & FLAG_COMP_OPT))
			end = pos + 1; /* the options are one block */
		SQV_TRY(walk_run(w, s->v[i].table, pos, end, each, ctx));
	}
	return 0;
}

sqv_err_t sqv_layout_walk(const struct sqv_superblock *sb,
			  sqv_digest_read_fn read, sqv_layout_each_fn each,
			  void *ctx, uint64_t *bad, const char **why)
{
	struct walk w = { .sb = sb, .read = read, .ctx = ctx, .bad = bad,
			  .why = why };

	/* What a failed allocation leaves; every other failure says where. */
	*bad = 0;
	*why = "out of memory";
	sqv_err_t err = walk(&w, each, ctx);
	free(w.starts.v);
	free(w.raw.v);
	return err;
}
