/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The read trace over a real image: first-touch order, merged byte ranges,
 * names with tab, newline and backslash escaped, the "end COUNT" line, and
 * a save that leaves no temporary file behind.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "index.h"
#include "trace.h"

static char top[] = "/tmp/sqv-unit-trace-XXXXXX";

static void put(const char *rel, size_t size)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/src/%s", top, rel);
	FILE *f = fopen(path, "w");
	for (size_t i = 0; i < size; i++)
		putc('a' + (int)(i % 26), f);
	fclose(f);
}

static sqv_ino_t ino_of(const struct sqv_index *idx, const char *path)
{
	sqv_ino_t ino = (sqv_ino_t)-1;
	CHECK_EQ(sqv_index_lookup_path(idx, path, &ino), 0);
	return ino;
}

int main(void)
{
	char path[512];
	struct sqv_image *img = NULL;
	struct sqv_index *idx = NULL;
	struct sqv_trace *t = NULL;

	if (!mkdtemp(top))
		return 1;
	check_run("mkdir -p %s/src/d/e", top);
	put("d/e/plain.py", 1000);
	put("tab\there", 10);
	put("new\nline", 10);
	put("back\\slash", 10);
	put("never", 10);
	check_run("mksquashfs %s/src %s/img -noappend -quiet -no-progress >/dev/null",
	    top, top);
	snprintf(path, sizeof(path), "%s/img", top);
	int fd = open(path, O_RDONLY);
	CHECK(fd >= 0);
	CHECK_EQ(sqv_image_open(fd, path, &img), 0);
	CHECK_EQ(sqv_index_build(&img, 1, 0, &idx), 0);
	CHECK_EQ(sqv_trace_new(idx, &t), 0);

	sqv_ino_t plain = ino_of(idx, "d/e/plain.py");
	/* Out of order and overlapping: written sorted and merged. */
	CHECK_EQ(sqv_trace_note(t, plain, 500, 100), 0);
	CHECK_EQ(sqv_trace_note(t, ino_of(idx, "new\nline"), 0, 10), 0);
	CHECK_EQ(sqv_trace_note(t, plain, 0, 100), 0);
	CHECK_EQ(sqv_trace_note(t, plain, 550, 100), 0);
	CHECK_EQ(sqv_trace_note(t, plain, 100, 50), 0);
	CHECK_EQ(sqv_trace_note(t, ino_of(idx, "tab\there"), 0, 10), 0);
	CHECK_EQ(sqv_trace_note(t, ino_of(idx, "back\\slash"), 2, 3), 0);
	CHECK_EQ(sqv_trace_note(t, plain, 0, 0), 0); /* nothing read */
	CHECK_EQ(sqv_trace_files(t), 4);

	char *text = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&text, &len);
	CHECK_EQ(sqv_trace_write(t, m), 0);
	fclose(m);
	const char *want = "sqvenvfs-trace 1\n"
			   "d/e/plain.py\t1000\t0+150,500+150\n"
			   "new\\x0aline\t10\t0+10\n"
			   "tab\\x09here\t10\t0+10\n"
			   "back\\x5cslash\t10\t2+3\n"
			   "end 4\n";
	CHECK(text && strcmp(text, want) == 0);
	if (text && strcmp(text, want) != 0)
		fprintf(stderr, "got:\n%s", text);
	free(text);

	/* Saved through a temporary file: only the trace is left. */
	snprintf(path, sizeof(path), "%s/out/trace", top);
	check_run("mkdir %s/out", top);
	CHECK_EQ(sqv_trace_save(t, path), 0);
	struct stat st;
	CHECK_EQ(stat(path, &st), 0);
	CHECK_EQ(st.st_size, (long long)strlen(want));
	snprintf(path, sizeof(path), "%s/out", top);
	DIR *d = opendir(path);
	int entries = 0;
	for (struct dirent *e; d && (e = readdir(d));)
		entries += e->d_name[0] != '.';
	if (d)
		closedir(d);
	CHECK_EQ(entries, 1);
	/* A directory that does not exist: an error, nothing written. */
	snprintf(path, sizeof(path), "%s/missing/trace", top);
	CHECK_EQ(sqv_trace_save(t, path), -ENOENT);

	sqv_trace_free(t);
	sqv_index_free(idx);
	sqv_image_free(img);
	check_run("rm -rf %s", top);
	return check_done();
}
