/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * sqvbench-replay: replay a read trace (docs/tools.md, "Read traces", format 1)
 * under a root, as one simulated node of tests/bench/bench_scale.py does.
 *
 * For each traced file, in the trace's order, it does what CPython's import
 * system does to the file system for a module it loads: the first time it
 * meets a directory it lists it (FileFinder caches a listing per directory),
 * then it stats the file, opens it and reads the traced byte ranges, in reads
 * of at most 1 MiB. The bytes read are folded into one hash per file, so the
 * same replay of the source venv gives the hashes every node must match:
 *
 *   sqvbench-replay --print TRACE SRC > HASHES     the expected hashes
 *   sqvbench-replay --check HASHES TRACE ROOT      a node: exit 1 on a mismatch
 *
 * It prints "files N", "bytes N" and "dirs N" on stdout (after the hashes with
 * --print). Replaying instead of running Python keeps a two-core machine from
 * turning a storage measurement into a contest for the CPU.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PROG "sqvbench-replay"
#define CHUNK (1u << 20)
#define DIRS_SIZE (1u << 16)	/* open-addressing set of listed directories */

static uint64_t dirs_seen[DIRS_SIZE];
static unsigned int dirs_count;

static uint64_t hash_str(const char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
	return h | 1;	/* 0 marks an empty slot */
}

/* True the first time the directory is seen. */
static bool dir_first(const char *path, size_t n)
{
	uint64_t h = hash_str(path, n);
	unsigned int i = (unsigned int)h % DIRS_SIZE;

	if (dirs_count >= DIRS_SIZE / 2)
		return false;	/* a trace this big lists no more; still correct */
	while (dirs_seen[i]) {
		if (dirs_seen[i] == h)
			return false;
		i = (i + 1) % DIRS_SIZE;
	}
	dirs_seen[i] = h;
	dirs_count++;
	return true;
}

static uint64_t fold(uint64_t h, const unsigned char *p, size_t n)
{
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		uint64_t w;

		memcpy(&w, p + i, 8);
		h ^= w;
		h = (h << 31 | h >> 33) * 0x9e3779b97f4a7c15ull;
	}
	for (; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

/* Undo the trace's \xHH escaping in place; -1 on a malformed escape. */
static int unescape(char *s)
{
	char *o = s;

	for (char *p = s; *p; p++) {
		if (*p != '\\') {
			*o++ = *p;
			continue;
		}
		unsigned int v;

		if (p[1] != 'x' || sscanf(p + 2, "%2x", &v) != 1 || !p[2] || !p[3])
			return -1;
		*o++ = (char)v;
		p += 3;
	}
	*o = '\0';
	return 0;
}

static int list_dir(const char *path)
{
	DIR *d = opendir(path);

	if (!d)
		return -errno;
	while (readdir(d))
		;
	closedir(d);
	return 0;
}

/* Replay one file; its hash in *out. Returns 0 or -errno. */
static int replay_file(const char *root, const char *rel, char *ranges, unsigned char *buf,
		       uint64_t *out, uint64_t *bytes)
{
	char path[8192];
	const char *slash = strrchr(rel, '/');
	uint64_t h = 0x84222325cbf29ce4ull;
	struct stat st;
	int fd, n;

	if (slash) {
		n = snprintf(path, sizeof(path), "%s/%.*s", root, (int)(slash - rel), rel);
		if (n < 0 || (size_t)n >= sizeof(path))
			return -ENAMETOOLONG;
		if (dir_first(rel, (size_t)(slash - rel)) && list_dir(path) < 0)
			return -errno;
	}
	n = snprintf(path, sizeof(path), "%s/%s", root, rel);
	if (n < 0 || (size_t)n >= sizeof(path))
		return -ENAMETOOLONG;
	if (stat(path, &st) < 0)
		return -errno;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (char *r = strtok(ranges, ","); r; r = strtok(NULL, ",")) {
		unsigned long long off, len;

		if (sscanf(r, "%llu+%llu", &off, &len) != 2) {
			close(fd);
			return -EINVAL;
		}
		h = fold(h, (const unsigned char *)&off, sizeof(off));
		while (len > 0) {
			size_t want = len < CHUNK ? (size_t)len : CHUNK;
			ssize_t got = pread(fd, buf, want, (off_t)off);

			if (got < 0) {
				int err = errno;

				close(fd);
				return -err;
			}
			if (got == 0)
				break;	/* past the end: the hash says so */
			h = fold(h, buf, (size_t)got);
			*bytes += (uint64_t)got;
			off += (uint64_t)got;
			len -= (uint64_t)got;
		}
	}
	close(fd);
	*out = h;
	return 0;
}

int main(int argc, char *argv[])
{
	const char *check = NULL, *trace_path, *root;
	unsigned long long declared = 0, files = 0, bytes = 0;
	bool print = false, ended = false;
	FILE *trace, *hashes = NULL;
	unsigned char *buf;
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int argi = 1;

	if (argc > 1 && strcmp(argv[1], "--print") == 0) {
		print = true;
		argi = 2;
	} else if (argc > 2 && strcmp(argv[1], "--check") == 0) {
		check = argv[2];
		argi = 3;
	}
	if (argc - argi != 2 || (!print && !check)) {
		fprintf(stderr, "usage: " PROG " --print TRACE ROOT | --check HASHES TRACE ROOT\n");
		return 2;
	}
	trace_path = argv[argi];
	root = argv[argi + 1];
	trace = fopen(trace_path, "r");
	if (!trace) {
		fprintf(stderr, PROG ": %s: %s\n", trace_path, strerror(errno));
		return 1;
	}
	if (check && !(hashes = fopen(check, "r"))) {
		fprintf(stderr, PROG ": %s: %s\n", check, strerror(errno));
		return 1;
	}
	buf = malloc(CHUNK);
	if (!buf) {
		fprintf(stderr, PROG ": out of memory\n");
		return 1;
	}
	len = getline(&line, &cap, trace);
	if (len < 0 || strcmp(line, "sqvenvfs-trace 1\n") != 0) {
		fprintf(stderr, PROG ": %s: not a trace of format 1\n", trace_path);
		return 1;
	}
	while ((len = getline(&line, &cap, trace)) > 0) {
		char *name, *size, *ranges;
		uint64_t h = 0, bytes1 = 0;
		int err;

		if (line[len - 1] == '\n')
			line[--len] = '\0';
		if (line[0] == '#')
			continue;
		if (sscanf(line, "end %llu", &declared) == 1) {
			ended = true;
			break;
		}
		name = strtok(line, "\t");
		size = strtok(NULL, "\t");
		ranges = strtok(NULL, "\t");
		if (!name || !size || !ranges || unescape(name) < 0) {
			fprintf(stderr, PROG ": %s: malformed line %llu\n", trace_path, files + 2);
			return 1;
		}
		err = replay_file(root, name, ranges, buf, &h, &bytes1);
		if (err < 0) {
			fprintf(stderr, PROG ": %s/%s: %s\n", root, name, strerror(-err));
			return 1;
		}
		bytes += bytes1;
		files++;
		if (print) {
			printf("%016" PRIx64 "\n", h);
		} else {
			char want[64];

			if (!fgets(want, sizeof(want), hashes) ||
			    strtoull(want, NULL, 16) != h) {
				fprintf(stderr, PROG ": %s/%s: bytes differ from the source's\n",
					root, name);
				return 1;
			}
		}
	}
	if (!ended || declared != files) {
		fprintf(stderr, PROG ": %s: truncated (no end line, or another count)\n",
			trace_path);
		return 1;
	}
	printf("files %llu\nbytes %llu\ndirs %u\n", files, bytes, dirs_count);
	free(line);
	free(buf);
	fclose(trace);
	if (hashes)
		fclose(hashes);
	return 0;
}
