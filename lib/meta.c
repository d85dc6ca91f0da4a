/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * meta: metadata blocks read and decompressed once; see meta.h.
 *
 * Blocks live in one growing byte arena, found by image offset through an
 * open-addressing map. A block that is damaged (its header or bytes out of
 * range, or it does not decompress) is remembered as damaged, so it is not
 * read again either, and every read that needs it fails.
 */
#include "meta.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "decomp.h"
#include "digest.h"
#include "io.h"
#include "log.h"
#include "mem.h"

/* A metadata block holds at most this many bytes, decompressed. */
#define MD_SIZE 8192
/* The metadata range is read at once when no larger than this. */
#define RAW_MAX ((uint64_t)512 << 20)
#define RAW_CHUNK ((size_t)4 << 20)
/*
 * Decompressed metadata kept at most: a hostile image of tiny blocks that
 * each decompress to 8 KiB must not take memory without bound. Real
 * metadata compresses 3 to 10 times; past 64 times the stored range (plus
 * a floor for small images) blocks count as damaged.
 */
#define KEEP_RATIO 64
#define KEEP_FLOOR ((size_t)64 << 20)

struct block {
	uint64_t pos;    /* image offset of the block's 2-byte header */
	uint64_t next;   /* image offset of the block after it */
	size_t at;       /* its bytes in arena */
	uint32_t size;   /* decompressed length */
	bool damaged;
};

struct sqv_meta {
	int fd;
	const char *name;
	struct sqv_io_count *count; /* or NULL */
	int comp;
	uint64_t lo, hi;
	unsigned char *raw; /* the image's [lo, hi) when read at once */
	struct sqv_decomp *decomp;
	unsigned char *arena;
	size_t arena_len, arena_cap, keep_max;
	struct block *blocks;
	size_t nblocks, blocks_cap;
	uint32_t *map; /* block index + 1, 0: empty */
	size_t map_cap;
	size_t last; /* the block read last, for sequential reads */
	uint64_t loaded;
	const struct sqv_digests *digests; /* or NULL */
	bool raw_checked; /* raw matched digests whole (sqv_meta_set_digests) */
	/* The first block a read needed that digests does not vouch for
	 * (sqv_meta_unverified); why NULL: none. */
	uint64_t unverified_pos;
	const char *unverified_why;
	/* one block's stored bytes, its 2-byte header first */
	unsigned char stored[2 + 0x8000];
};

sqv_err_t sqv_meta_new(int fd, const char *name, int comp, uint64_t lo,
		       uint64_t hi, struct sqv_io_count *count,
		       struct sqv_meta **out)
{
	struct sqv_meta *m = calloc(1, sizeof(*m));
	sqv_err_t err = -ENOMEM;

	if (!m || !(m->decomp = sqv_decomp_new()))
		goto fail;
	m->fd = fd;
	m->name = name;
	m->count = count;
	m->comp = comp;
	m->lo = lo;
	m->hi = hi > lo ? hi : lo;
	m->last = SIZE_MAX;
	uint64_t span = m->hi - m->lo;
	m->keep_max = KEEP_FLOOR + (span < SIZE_MAX / KEEP_RATIO ?
				    (size_t)span * KEEP_RATIO : SIZE_MAX / 2);
	if (span > 0 && span <= RAW_MAX) {
		m->raw = malloc((size_t)span);
		if (!m->raw)
			goto fail;
		sqv_mem_prefault(m->raw, (size_t)span);
		for (uint64_t done = 0; done < span;) {
			size_t n = span - done < RAW_CHUNK ? (size_t)(span - done) :
							     RAW_CHUNK;
			err = sqv_pread_counted(fd, m->raw + done, n, lo + done,
						count);
			if (err < 0)
				goto fail;
			done += n;
		}
	}
	*out = m;
	return 0;
fail:
	sqv_meta_free(m);
	return err;
}

void sqv_meta_free(struct sqv_meta *m)
{
	if (!m)
		return;
	sqv_decomp_free(m->decomp);
	free(m->raw);
	free(m->arena);
	free(m->blocks);
	free(m->map);
	free(m);
}

void sqv_meta_set_digests(struct sqv_meta *m, const struct sqv_digests *d,
			  bool raw_checked)
{
	m->digests = d;
	m->raw_checked = d && raw_checked;
}

const void *sqv_meta_stored(const struct sqv_meta *m, uint64_t pos,
			    size_t len)
{
	if (!m->raw || pos < m->lo || pos > m->hi || len > m->hi - pos)
		return NULL;
	return m->raw + (pos - m->lo);
}

uint64_t sqv_meta_blocks(const struct sqv_meta *m)
{
	return m->loaded;
}

bool sqv_meta_unverified(const struct sqv_meta *m, uint64_t *pos,
			 const char **why)
{
	if (!m->unverified_why)
		return false;
	*pos = m->unverified_pos;
	*why = m->unverified_why;
	return true;
}

/* Keep the first; the caller gives up on the block all the same. */
static void note_unverified(struct sqv_meta *m, uint64_t pos, const char *why)
{
	if (!m->unverified_why) {
		m->unverified_pos = pos;
		m->unverified_why = why;
	}
}

static size_t map_slot(uint64_t pos, size_t cap)
{
	return (size_t)((pos * UINT64_C(0x9e3779b97f4a7c15)) >> 17) & (cap - 1);
}

/* The index of the block at pos, or SIZE_MAX. */
static size_t map_find(const struct sqv_meta *m, uint64_t pos)
{
	if (m->map_cap == 0)
		return SIZE_MAX;
	for (size_t j = map_slot(pos, m->map_cap); m->map[j];
	     j = (j + 1) & (m->map_cap - 1))
		if (m->blocks[m->map[j] - 1].pos == pos)
			return m->map[j] - 1;
	return SIZE_MAX;
}

static sqv_err_t map_grow(struct sqv_meta *m)
{
	size_t ncap = m->map_cap ? m->map_cap * 2 : 1024;

	if (ncap > UINT32_MAX)
		return -ENOMEM;
	uint32_t *map = calloc(ncap, sizeof(*map));
	if (!map)
		return -ENOMEM;
	for (size_t i = 0; i < m->nblocks; i++) {
		size_t j = map_slot(m->blocks[i].pos, ncap);
		while (map[j])
			j = (j + 1) & (ncap - 1);
		map[j] = (uint32_t)(i + 1);
	}
	free(m->map);
	m->map = map;
	m->map_cap = ncap;
	return 0;
}

/* Record i in the map (a slot is free: the map is at most half full). */
static void map_insert(struct sqv_meta *m, size_t i)
{
	size_t j = map_slot(m->blocks[i].pos, m->map_cap);

	while (m->map[j])
		j = (j + 1) & (m->map_cap - 1);
	m->map[j] = (uint32_t)(i + 1);
}

/* Room for k more block records and k * MD_SIZE more arena bytes. */
static sqv_err_t reserve_n(struct sqv_meta *m, size_t k)
{
	if (k >= UINT32_MAX / 4 || m->nblocks + k >= UINT32_MAX / 4)
		return -ENOMEM;
	while ((m->nblocks + k) * 2 > m->map_cap)
		SQV_TRY(map_grow(m));
	if (m->nblocks + k > m->blocks_cap) {
		size_t ncap = m->blocks_cap ? m->blocks_cap : 256;
		while (ncap < m->nblocks + k)
			ncap *= 2;
		struct block *b = realloc(m->blocks, ncap * sizeof(*b));
		if (!b)
			return -ENOMEM;
		m->blocks = b;
		m->blocks_cap = ncap;
	}
	if (m->arena_len + k * MD_SIZE > m->arena_cap) {
		size_t ncap = m->arena_cap ? m->arena_cap : (size_t)1 << 20;
		while (ncap < m->arena_len + k * MD_SIZE)
			ncap *= 2;
		unsigned char *a = realloc(m->arena, ncap);
		if (!a)
			return -ENOMEM;
		sqv_mem_prefault(a + m->arena_cap, ncap - m->arena_cap);
		m->arena = a;
		m->arena_cap = ncap;
	}
	return 0;
}

/* The stored bytes of the image at [pos, pos + n): where they lie in the
 * range read at once, or read into buf. */
static sqv_err_t read_stored(struct sqv_meta *m, uint64_t pos, size_t n,
			     unsigned char *buf, const unsigned char **out)
{
	if (m->raw) {
		*out = m->raw + (pos - m->lo);
		return 0;
	}
	SQV_TRY(sqv_pread_counted(m->fd, buf, n, pos, m->count));
	*out = buf;
	return 0;
}

/* The 2-byte header of the block at pos (bit 15: stored uncompressed; low
 * 15 bits: stored size, 0 meaning 0x8000): *len its stored size, checked
 * to lie inside [lo, hi). */
static sqv_err_t read_header(struct sqv_meta *m, uint64_t pos, size_t *len,
			     bool *plain)
{
	const unsigned char *h;

	if (pos < m->lo || pos > m->hi || m->hi - pos < 2)
		return -SQV_ECORRUPT;
	SQV_TRY(read_stored(m, pos, 2, m->stored, &h));
	uint16_t hdr = (uint16_t)(h[0] | h[1] << 8);
	size_t n = hdr & 0x7fff ? hdr & 0x7fff : 0x8000;
	if (m->hi - pos - 2 < n || ((hdr & 0x8000) && n > MD_SIZE))
		return -SQV_ECORRUPT;
	*len = n;
	*plain = hdr & 0x8000;
	return 0;
}

/*
 * THE place where a metadata block is read from the image: its 2-byte
 * header (read_header), then its stored bytes, decompressed into dst
 * (MD_SIZE bytes of room), with decomp. *size gets the decompressed
 * length, *next the offset of the block after it. Any check of a block's
 * stored bytes belongs here. With a digest table, a block it does not
 * vouch for gets *unverified, the reason (else it is left alone); the
 * caller notes it (note_unverified), and whoever reads the store decides
 * what that means (image.h, sqv_image_metadata_unverified).
 * Called from two threads at once only by sqv_meta_preload, when the stored
 * bytes are in raw (read_stored then touches nothing shared).
 */
static sqv_err_t read_metadata_block(struct sqv_meta *m,
				     struct sqv_decomp *decomp, uint64_t pos,
				     unsigned char *dst, uint32_t *size,
				     uint64_t *next, const char **unverified)
{
	const unsigned char *stored;
	size_t len = 0;
	bool plain;
	sqv_err_t err = read_header(m, pos, &len, &plain);

	/* Header and bytes together, as the digest table covers them. */
	if (err == 0)
		err = read_stored(m, pos, 2 + len, m->stored, &stored);
	if (err == -SQV_ECORRUPT && m->digests) {
		/* A header out of range is no block of the table's: the open
		 * checked every one it lists (len 0 makes a metadata entry
		 * there say "another length"). */
		sqv_digest_check(m->digests, pos, NULL, 0, true, unverified);
		return err;
	}
	SQV_TRY(err);
	/* Bytes of raw checked whole already need only be a block of the
	 * table: no second hash of the same bytes. */
	if (m->digests &&
	    sqv_digest_check(m->digests, pos,
			     m->raw && m->raw_checked ? NULL : stored, 2 + len,
			     true, unverified) < 0)
		return -SQV_ECORRUPT;
	stored += 2;
	if (plain) {
		memcpy(dst, stored, len);
		*size = (uint32_t)len;
	} else {
		size_t out = MD_SIZE;
		SQV_TRY(sqv_decomp_run(decomp, m->comp, stored, len, dst, &out));
		*size = (uint32_t)out;
	}
	*next = pos + 2 + len;
	return 0;
}

/* The block at pos, read and decompressed on first use; *idx gets its
 * position in blocks[]. hint: where the caller last saw it, plus one (0:
 * unknown). -ENOMEM, -SQV_ECORRUPT (also for a block found damaged before). */
static sqv_err_t get_block(struct sqv_meta *m, uint64_t pos, uint32_t hint,
			   size_t *idx)
{
	size_t i = hint ? hint - 1 : m->last;

	if (i >= m->nblocks || m->blocks[i].pos != pos)
		i = m->last;
	if (i >= m->nblocks || m->blocks[i].pos != pos)
		i = map_find(m, pos);
	if (i == SIZE_MAX) {
		if (pos < m->lo || pos >= m->hi) {
			if (m->digests)
				note_unverified(m, pos, "outside the metadata tables");
			return -SQV_ECORRUPT;
		}
		SQV_TRY(reserve_n(m, 1));
		struct block b = { .pos = pos, .at = m->arena_len };
		sqv_err_t err = -SQV_ECORRUPT;
		if (m->arena_len + MD_SIZE <= m->keep_max) {
			const char *why = NULL;
			err = read_metadata_block(m, m->decomp, pos,
						  m->arena + b.at, &b.size,
						  &b.next, &why);
			if (err == -ENOMEM || err == -EIO)
				return err;
			if (why)
				note_unverified(m, pos, why);
			m->loaded++;
		}
		b.damaged = err < 0;
		if (!b.damaged)
			m->arena_len += b.size;
		i = m->nblocks++;
		m->blocks[i] = b;
		map_insert(m, i);
	}
	if (m->blocks[i].damaged)
		return -SQV_ECORRUPT;
	m->last = i;
	*idx = i;
	return 0;
}

sqv_err_t sqv_meta_seek(struct sqv_meta *m, uint64_t base, uint64_t ref,
			struct sqv_meta_cursor *out)
{
	uint64_t rel = ref >> 16;
	uint32_t off = ref & 0xffff;
	size_t i;

	if (base >= m->hi || rel >= m->hi - base) {
		if (m->digests)
			note_unverified(m, rel > UINT64_MAX - base ? UINT64_MAX :
					base + rel, "outside the metadata tables");
		return -SQV_ECORRUPT;
	}
	SQV_TRY(get_block(m, base + rel, 0, &i));
	if (off >= m->blocks[i].size)
		return -SQV_ECORRUPT;
	out->block = base + rel;
	out->offset = off;
	out->hint = (uint32_t)(i + 1);
	return 0;
}

sqv_err_t sqv_meta_read(struct sqv_meta *m, struct sqv_meta_cursor *cur,
			void *buf, size_t n)
{
	struct sqv_meta_cursor c = *cur;
	size_t i = c.hint - 1; /* SIZE_MAX for no hint */

	/* The common case: the bytes lie inside the cursor's block, which
	 * is known and whole (damaged blocks never get a hint). */
	if (i < m->nblocks && m->blocks[i].pos == c.block &&
	    !m->blocks[i].damaged && c.offset < m->blocks[i].size &&
	    m->blocks[i].size - c.offset > n) {
		if (buf)
			memcpy(buf, m->arena + m->blocks[i].at + c.offset, n);
		cur->offset += (uint32_t)n;
		return 0;
	}
	while (n > 0) {
		SQV_TRY(get_block(m, c.block, c.hint, &i));
		const struct block *b = &m->blocks[i];
		if (c.offset >= b->size)
			return -SQV_ECORRUPT;
		size_t take = b->size - c.offset;
		if (take > n)
			take = n;
		if (buf) {
			memcpy(buf, m->arena + b->at + c.offset, take);
			buf = (unsigned char *)buf + take;
		}
		n -= take;
		c.offset += (uint32_t)take;
		c.hint = (uint32_t)(i + 1);
		if (c.offset == b->size) {
			/* Blocks read in order sit next to each other. */
			c.block = b->next;
			c.offset = 0;
			c.hint = (uint32_t)(i + 2);
		}
	}
	*cur = c;
	return 0;
}

/* ---- preload: the tables an index build reads whole, on two cores ---- */

struct preload {
	struct sqv_meta *m;
	size_t first, n;           /* the planned records: blocks[first..+n) */
	sqv_err_t *res;            /* per planned block */
	const char **unverified;   /* per planned block, or NULL */
	atomic_size_t next;        /* the next planned block nobody took */
};

/* Blocks are taken a few at a time, so two threads share the work evenly
 * whichever of them the scheduler favours. */
#define PRELOAD_CHUNK 16

static void preload_run(struct preload *p, struct sqv_decomp *decomp)
{
	struct sqv_meta *m = p->m;

	for (;;) {
		size_t j = atomic_fetch_add(&p->next, PRELOAD_CHUNK);
		if (j >= p->n)
			return;
		size_t end = j + PRELOAD_CHUNK < p->n ? j + PRELOAD_CHUNK : p->n;
		for (; j < end; j++) {
			struct block *b = &m->blocks[p->first + j];
			p->res[j] = read_metadata_block(m, decomp, b->pos,
							m->arena + b->at,
							&b->size, &b->next,
							&p->unverified[j]);
		}
	}
}

static void *preload_thread(void *arg)
{
	struct preload *p = arg;
	struct sqv_decomp *decomp = sqv_decomp_new();

	/* Without a context of its own this thread leaves it all to the
	 * caller's. */
	if (decomp)
		preload_run(p, decomp);
	sqv_decomp_free(decomp);
	return NULL;
}

/* Worth a second thread: below this many blocks, starting it costs more. */
#define PRELOAD_THREAD_MIN 64

sqv_err_t sqv_meta_preload(struct sqv_meta *m, const uint64_t *starts,
			   const uint64_t *ends, size_t nranges)
{
	struct preload p = { .m = m, .first = m->nblocks };
	size_t planned = 0;
	sqv_err_t err = 0;

	/* Blocks read one by one (a huge range) gain nothing from this. */
	if (!m->raw)
		return 0;
	/* Plan: follow the block headers of each range in the stored bytes.
	 * A header that leaves the range ends the plan there; what it leaves
	 * out is read on first use, with every check, as without a preload. */
	for (int pass = 0; pass < 2; pass++) {
		if (pass == 1) {
			if (planned == 0)
				return 0;
			SQV_TRY(reserve_n(m, planned));
			p.n = planned;
			planned = 0;
		}
		for (size_t r = 0; r < nranges; r++) {
			uint64_t pos = starts[r], end = ends[r] < m->hi ? ends[r] : m->hi;
			while (pos >= m->lo && pos < end && end - pos >= 2) {
				/* Pass 1 plans exactly what pass 0 counted:
				 * the map does not change in between. */
				size_t i = map_find(m, pos);
				if (i != SIZE_MAX) {
					if (m->blocks[i].damaged)
						break;
					pos = m->blocks[i].next;
					continue;
				}
				const unsigned char *h = m->raw + (pos - m->lo);
				uint16_t hdr = (uint16_t)(h[0] | h[1] << 8);
				size_t len = hdr & 0x7fff ? hdr & 0x7fff : 0x8000;
				if (end - pos - 2 < len ||
				    m->arena_len + (planned + 1) * MD_SIZE > m->keep_max)
					break;
				if (pass == 1)
					m->blocks[p.first + planned] = (struct block){
						.pos = pos,
						.at = m->arena_len + planned * MD_SIZE,
					};
				planned++;
				pos += 2 + len;
			}
		}
	}
	p.res = calloc(p.n, sizeof(*p.res));
	p.unverified = calloc(p.n, sizeof(*p.unverified));
	if (!p.res || !p.unverified) {
		free(p.res);
		free(p.unverified);
		return -ENOMEM;
	}

	pthread_t thread;
	bool threaded = p.n >= PRELOAD_THREAD_MIN &&
			sysconf(_SC_NPROCESSORS_ONLN) > 1 &&
			pthread_create(&thread, NULL, preload_thread, &p) == 0;
	preload_run(&p, m->decomp);
	if (threaded)
		pthread_join(thread, NULL);

	/* Publish in plan order, as get_block would have: whole blocks and
	 * damaged ones (remembered, so never read again); a block that could
	 * not be read for want of memory is left for get_block. */
	m->arena_len += p.n * MD_SIZE;
	for (size_t j = 0; j < p.n; j++) {
		struct block *b = &m->blocks[m->nblocks];
		*b = m->blocks[p.first + j];
		m->loaded++;
		if (p.res[j] == -ENOMEM || p.res[j] == -EIO) {
			err = p.res[j];
			m->loaded--;
			continue;
		}
		b->damaged = p.res[j] < 0;
		/* Noted here, by one thread, in plan order. */
		if (p.unverified[j])
			note_unverified(m, b->pos, p.unverified[j]);
		map_insert(m, m->nblocks++);
	}
	free(p.res);
	free(p.unverified);
	return err;
}
