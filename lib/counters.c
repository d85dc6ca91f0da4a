/* SPDX-License-Identifier: BSD-2-Clause */
/* counters: see counters.h. */
#include "counters.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "size.h"

sqv_err_t sqv_counters_parse(const char *text, struct sqv_counters *out)
{
	struct sqv_counters c = { 0 };

	while (*text) {
		const char *sp = strchr(text, ' ');
		const char *nl = strchr(text, '\n');
		if (!nl)
			nl = text + strlen(text);
		if (!sp || sp > nl || sp == text ||
		    (size_t)(sp - text) >= SQV_COUNTER_NAME_MAX)
			return -EINVAL;
		const char *d = sp + 1;
		uint64_t v = 0;
		if (d == nl)
			return -EINVAL;
		for (; d < nl; d++) {
			uint64_t digit = (uint64_t)(*d - '0');
			if (*d < '0' || *d > '9' ||
			    v > (UINT64_MAX - digit) / 10)
				return -EINVAL;
			v = v * 10 + digit;
		}
		if (c.n == SQV_COUNTERS_MAX)
			return -E2BIG;
		memcpy(c.v[c.n].name, text, (size_t)(sp - text));
		c.v[c.n].name[sp - text] = '\0';
		c.v[c.n].value = v;
		c.n++;
		text = *nl ? nl + 1 : nl;
	}
	*out = c;
	return 0;
}

uint64_t sqv_counters_get(const struct sqv_counters *c, const char *name)
{
	for (unsigned i = 0; i < c->n; i++)
		if (strcmp(c->v[i].name, name) == 0)
			return c->v[i].value;
	return 0;
}

void sqv_counters_unpacked(const struct sqv_counters *c,
			   struct sqv_unpacked *out)
{
#define GET(name) sqv_counters_get(c, name)
	uint64_t opens = GET("open"), files = GET("files_read");

	out->metadata = GET("lookup") + GET("getattr") + GET("readlink") +
			GET("readdir") + GET("readdirplus");
	/* Without zero-open every open() reaches the daemon; with it only
	 * the first, and each file read stands for one open. */
	out->opens = opens > files ? opens : files;
	out->reads = GET("read");
	out->total = out->metadata + out->opens + out->reads;
#undef GET
}

/* snprintf into a growing text; len may pass size (then it says how much
 * room the whole text needs). */
struct text {
	char *buf;
	size_t size, len;
};

static __attribute__((format(printf, 2, 3))) void put(struct text *t,
						       const char *fmt, ...)
{
	va_list ap;
	size_t room = t->len < t->size ? t->size - t->len : 0;

	va_start(ap, fmt);
	int n = vsnprintf(room ? t->buf + t->len : NULL, room, fmt, ap);
	va_end(ap);
	if (n > 0)
		t->len += (size_t)n;
}

/* 1234567 -> "1,234,567": counts are read by people, often in the tens of
 * thousands. */
struct num {
	char s[32];
};

static struct num num(uint64_t v)
{
	char digits[24];
	struct num out;
	int n = snprintf(digits, sizeof(digits), "%llu", (unsigned long long)v);
	char *p = out.s;

	for (int i = 0; i < n; i++) {
		if (i > 0 && (n - i) % 3 == 0)
			*p++ = ',';
		*p++ = digits[i];
	}
	*p = '\0';
	return out;
}

struct size {
	char s[SQV_SIZE_FORMAT_MAX];
};

static struct size size(uint64_t bytes)
{
	struct size out;
	sqv_size_format(bytes, out.s, sizeof(out.s));
	return out;
}

static void put_uptime(struct text *t, uint64_t s)
{
	if (s < 120)
		put(t, "%llu s", (unsigned long long)s);
	else if (s < 2 * 3600)
		put(t, "%llu min", (unsigned long long)(s / 60));
	else if (s < 2 * 86400)
		put(t, "%llu h %llu min", (unsigned long long)(s / 3600),
		    (unsigned long long)(s / 60 % 60));
	else
		put(t, "%llu days %llu h", (unsigned long long)(s / 86400),
		    (unsigned long long)(s / 3600 % 24));
}

/* English plurals of the counted nouns here: "1 lookup", "2 lookups". */
static const char *plural(uint64_t n, const char *many)
{
	return n == 1 ? "" : many;
}

/* "N times" for a/b: whole from 10, one decimal below. */
static void put_ratio(struct text *t, uint64_t a, uint64_t b)
{
	double r = (double)a / (double)b;

	if (r >= 10)
		put(t, "%.0f times", r);
	else
		put(t, "%.1f times", r);
}

size_t sqv_counters_human(const struct sqv_counters *c, const char *mnt,
			  char *buf, size_t bufsize)
{
#define GET(name) sqv_counters_get(c, name)
	struct text t = { .buf = buf, .size = bufsize };
	uint64_t layers = GET("layers");
	uint64_t reads = GET("backing_reads");
	uint64_t hits = GET("cache_hits"), misses = GET("cache_misses");
	struct sqv_unpacked u;

	if (bufsize)
		buf[0] = '\0';
	put(&t, "sqvenvfs at %s: %s image%s (%s), %s entries, up ", mnt,
	    num(layers).s, layers == 1 ? "" : "s", size(GET("image_bytes")).s,
	    num(GET("entries")).s);
	put_uptime(&t, GET("uptime_seconds"));
	put(&t, "\n");

	put(&t, "Images read:  %s read%s, %s from the file system holding "
		"them\n",
	    num(reads).s, plural(reads, "s"), size(GET("backing_bytes")).s);

	uint64_t lookups = GET("lookup"), getattrs = GET("getattr");
	uint64_t listings = GET("readdir") + GET("readdirplus");
	put(&t, "From memory:  %s lookup%s, %s getattr%s, %s listing%s, %s "
		"isatty\n",
	    num(lookups).s, plural(lookups, "s"), num(getattrs).s,
	    plural(getattrs, "s"), num(listings).s, plural(listings, "s"),
	    num(GET("ioctl")).s);

	put(&t, "File reads:   %s request%s, %s of file data\n",
	    num(GET("read")).s, plural(GET("read"), "s"),
	    size(GET("read_bytes")).s);
	put(&t, "Block cache:  %s hit%s, %s miss%s", num(hits).s,
	    plural(hits, "s"), num(misses).s, plural(misses, "es"));
	if (hits + misses)
		put(&t, " (%llu %%)",
		    (unsigned long long)(hits * 100 / (hits + misses)));
	put(&t, "\n");

	if (GET("hot_bytes") || GET("prefetch_reads"))
		put(&t, "Prefetch:     %s read%s, %s (hot range %s); %s of %s "
			"blocks used\n",
		    num(GET("prefetch_reads")).s,
		    plural(GET("prefetch_reads"), "s"),
		    size(GET("prefetch_bytes")).s,
		    size(GET("hot_bytes")).s,
		    num(GET("prefetch_used_blocks")).s,
		    num(GET("prefetch_blocks")).s);

	put(&t, "Kernel:       answers repeats from its caches, not counted "
		"here%s\n",
	    GET("kernel_skips_open") ? "; no opens sent" : "");

	sqv_counters_unpacked(c, &u);
	put(&t, "If unpacked:  ~%s requests to that file system", num(u.total).s);
	if (reads) {
		put(&t, ", ");
		put_ratio(&t, u.total, reads);
		put(&t, " the image reads");
	}
	put(&t, "\n  (basis: one per lookup, getattr, readlink, listing and file "
		"read this\n  daemon saw, and %s open%s, one per file opened: "
		"what the same kernel\n  caches would ask of a plain copy; see "
		"sqvenvfs(1), STATISTICS)\n",
	    num(u.opens).s, plural(u.opens, "s"));
#undef GET
	return t.len;
}
