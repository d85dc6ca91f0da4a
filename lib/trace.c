/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * trace: the files a workload read, in first-touch order, with byte ranges.
 *
 * Format (version 1, docs/tools.md):
 *   sqvenvfs-trace 1
 *   PATH \t SIZE \t OFF+LEN[,OFF+LEN...]      one line per file
 *   end COUNT
 * PATH is relative to the mount's root, escaped as sqv_trace_put_name says;
 * ranges are sorted and merged; COUNT (the number of file lines) lets a
 * reader tell a complete trace from a truncated one. Lines starting with
 * '#' are comments.
 */
#include "trace.h"

#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct range {
	uint64_t off, end;
};

struct file_rec {
	sqv_ino_t ino;
	size_t nranges, cap;
	struct range *r;
};

struct sqv_trace {
	const struct sqv_index *idx;
	pthread_mutex_t lock;
	/* Protected by lock: */
	uint32_t *slot;          /* per inode: its file_rec + 1, 0 if none */
	struct file_rec *files;  /* in first-touch order */
	size_t nfiles, cap;
};

sqv_err_t sqv_trace_new(const struct sqv_index *idx, struct sqv_trace **out)
{
	struct sqv_trace *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->slot = calloc(sqv_index_inode_count(idx) + 1, sizeof(*t->slot));
	if (!t->slot) {
		free(t);
		return -ENOMEM;
	}
	t->idx = idx;
	pthread_mutex_init(&t->lock, NULL);
	*out = t;
	return 0;
}

void sqv_trace_free(struct sqv_trace *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nfiles; i++)
		free(t->files[i].r);
	free(t->files);
	free(t->slot);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

static sqv_err_t grow(void **v, size_t *cap, size_t n, size_t elem)
{
	if (n < *cap)
		return 0;
	size_t ncap = *cap ? *cap * 2 : 8;
	void *nv = realloc(*v, ncap * elem);
	if (!nv)
		return -ENOMEM;
	*v = nv;
	*cap = ncap;
	return 0;
}

/* Reads of a file come mostly in order: merge with the last range when
 * they touch, sort and merge the rest when writing. */
static sqv_err_t add_range(struct file_rec *f, uint64_t off, uint64_t end)
{
	if (f->nranges) {
		struct range *last = &f->r[f->nranges - 1];
		if (off <= last->end && end >= last->off) {
			if (off < last->off)
				last->off = off;
			if (end > last->end)
				last->end = end;
			return 0;
		}
	}
	SQV_TRY(grow((void **)&f->r, &f->cap, f->nranges, sizeof(*f->r)));
	f->r[f->nranges++] = (struct range){ off, end };
	return 0;
}

sqv_err_t sqv_trace_note(struct sqv_trace *t, sqv_ino_t ino, uint64_t off,
			 uint64_t len)
{
	sqv_err_t err = 0;

	if (len == 0 || !sqv_index_valid(t->idx, ino))
		return 0;
	pthread_mutex_lock(&t->lock);
	uint32_t s = t->slot[ino];
	if (s == 0) {
		err = grow((void **)&t->files, &t->cap, t->nfiles,
			   sizeof(*t->files));
		if (err == 0) {
			t->files[t->nfiles] = (struct file_rec){ .ino = ino };
			s = t->slot[ino] = (uint32_t)++t->nfiles;
		}
	}
	if (err == 0)
		err = add_range(&t->files[s - 1], off, off + len);
	pthread_mutex_unlock(&t->lock);
	return err;
}

size_t sqv_trace_files(struct sqv_trace *t)
{
	pthread_mutex_lock(&t->lock);
	size_t n = t->nfiles;
	pthread_mutex_unlock(&t->lock);
	return n;
}

void sqv_trace_put_name(FILE *f, const char *name, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c < 0x20 || c > 0x7e || c == '\\')
			fprintf(f, "\\x%02x", c);
		else
			putc(c, f);
	}
}

static int cmp_range(const void *a, const void *b)
{
	const struct range *x = a, *y = b;
	return x->off < y->off ? -1 : x->off > y->off;
}

static void put_ranges(FILE *f, struct file_rec *r)
{
	size_t n = 0;

	qsort(r->r, r->nranges, sizeof(*r->r), cmp_range);
	for (size_t i = 0; i < r->nranges; i++) {
		if (n && r->r[i].off <= r->r[n - 1].end) {
			if (r->r[i].end > r->r[n - 1].end)
				r->r[n - 1].end = r->r[i].end;
		} else {
			r->r[n++] = r->r[i];
		}
	}
	r->nranges = n;
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%s%llu+%llu", i ? "," : "",
			(unsigned long long)r->r[i].off,
			(unsigned long long)(r->r[i].end - r->r[i].off));
}

/*
 * Files keep no parent in the index, so paths come from one walk of the
 * tree: each noted inode gets the first path that reaches it (a hard link
 * has several; any one names the same bytes).
 */
struct walk_frame {
	sqv_ino_t dir;
	uint32_t next, count;
	size_t pathlen;
};

static sqv_err_t name_files(struct sqv_trace *t, char **names)
{
	size_t depth = 0, cap = 16, left = t->nfiles;
	struct walk_frame *st = malloc(cap * sizeof(*st));
	char *path = malloc(PATH_MAX * 4);
	const size_t pathmax = PATH_MAX * 4;
	sqv_err_t err = 0;

	if (!st || !path) {
		err = -ENOMEM;
		goto out;
	}
	st[0] = (struct walk_frame){ .dir = SQV_INO_ROOT, .pathlen = 0 };
	err = sqv_index_dir_count(t->idx, SQV_INO_ROOT, &st[0].count);
	depth = 1;
	while (err == 0 && depth && left) {
		struct walk_frame *fr = &st[depth - 1];
		if (fr->next == fr->count) {
			depth--;
			continue;
		}
		const char *name;
		sqv_ino_t child;
		err = sqv_index_dir_entry(t->idx, fr->dir, fr->next++, &name,
					  &child);
		if (err < 0)
			break;
		size_t nlen = strlen(name);
		if (fr->pathlen + nlen + 2 > pathmax)
			continue; /* deeper than any path the kernel can ask */
		size_t plen = fr->pathlen;
		if (plen)
			path[plen++] = '/';
		memcpy(path + plen, name, nlen);
		plen += nlen;
		path[plen] = '\0';
		uint32_t mode = sqv_index_mode(t->idx, child);
		if (S_ISDIR(mode)) {
			if (sqv_index_parent(t->idx, child) != fr->dir)
				continue; /* never loop */
			if (depth == cap) {
				void *n = realloc(st, cap * 2 * sizeof(*st));
				if (!n) {
					err = -ENOMEM;
					break;
				}
				st = n;
				cap *= 2;
			}
			st[depth] = (struct walk_frame){ .dir = child,
							 .pathlen = plen };
			err = sqv_index_dir_count(t->idx, child,
						  &st[depth].count);
			depth++;
		} else if (S_ISREG(mode) && t->slot[child] &&
			   !names[t->slot[child] - 1]) {
			names[t->slot[child] - 1] = strdup(path);
			if (!names[t->slot[child] - 1])
				err = -ENOMEM;
			left--;
		}
	}
out:
	free(st);
	free(path);
	return err;
}

sqv_err_t sqv_trace_write(struct sqv_trace *t, FILE *f)
{
	pthread_mutex_lock(&t->lock);
	char **names = calloc(t->nfiles + 1, sizeof(*names));
	sqv_err_t err = names ? name_files(t, names) : -ENOMEM;
	size_t written = 0;

	if (err == 0) {
		fprintf(f, "%s\n", SQV_TRACE_MAGIC);
		for (size_t i = 0; i < t->nfiles; i++) {
			struct stat st;
			if (!names[i])
				continue;
			sqv_index_stat(t->idx, t->files[i].ino, &st);
			sqv_trace_put_name(f, names[i], strlen(names[i]));
			fprintf(f, "\t%llu\t", (unsigned long long)st.st_size);
			put_ranges(f, &t->files[i]);
			putc('\n', f);
			written++;
		}
		fprintf(f, "end %zu\n", written);
	}
	for (size_t i = 0; names && i < t->nfiles; i++)
		free(names[i]);
	free(names);
	pthread_mutex_unlock(&t->lock);
	if (err == 0 && (fflush(f) != 0 || ferror(f)))
		err = -EIO;
	return err;
}

sqv_err_t sqv_trace_save(struct sqv_trace *t, const char *path)
{
	char *tmp = NULL;
	sqv_err_t err;

	if (asprintf(&tmp, "%s.tmpXXXXXX", path) < 0)
		return -ENOMEM;
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		free(tmp);
		return err;
	}
	FILE *f = fdopen(fd, "w");
	if (!f) {
		err = -errno;
		close(fd);
		goto fail;
	}
	err = sqv_trace_write(t, f);
	if (err == 0 && fsync(fileno(f)) < 0)
		err = -errno;
	/* mkostemp makes 0600; a trace is no secret, and its reader (the
	 * packer) may be another user: let the umask decide, as for any file. */
	mode_t mask = umask(0);
	umask(mask);
	(void)fchmod(fileno(f), 0666 & ~mask);
	if (fclose(f) != 0 && err == 0)
		err = -EIO;
	if (err == 0 && rename(tmp, path) < 0)
		err = -errno;
	if (err == 0) {
		free(tmp);
		return 0;
	}
fail:
	unlink(tmp);
	free(tmp);
	return err;
}
