/* SPDX-License-Identifier: BSD-2-Clause */
/* size: see size.h and docs/sizes.md. */
#include "size.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>

static bool is_ci(char c, char upper)
{
	return c == upper || c == upper - 'A' + 'a';
}

int sqv_size_parse(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	unsigned shift = 0;
	bool range = false;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	/* strtoull would take a sign and leading blanks: count by hand. */
	for (; *s >= '0' && *s <= '9'; s++) {
		unsigned d = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - d) / 10)
			range = true;
		else
			v = v * 10 + d;
	}
	static const char units[] = "KMGT";
	for (unsigned i = 0; units[i]; i++) {
		if (is_ci(*s, units[i])) {
			shift = 10 * (i + 1);
			s++;
			if (is_ci(*s, 'I'))
				s++;
			if (is_ci(*s, 'B'))
				s++;
			break;
		}
	}
	if (*s != '\0')
		return -EINVAL;
	if (range || v > (UINT64_MAX >> shift))
		return -ERANGE;
	*out = v << shift;
	return 0;
}

int sqv_size_format(uint64_t bytes, char *buf, size_t size)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB",
					     "PiB", "EiB" };
	const unsigned last = sizeof(units) / sizeof(units[0]) - 1;
	unsigned u = 0;

	if (bytes < 1024)
		return snprintf(buf, size, "%u B", (unsigned)bytes);
	/* Quotient and remainder apart, so that rounding never wraps near
	 * UINT64_MAX: rem * 10 < 10 * 2^60 fits. */
	uint64_t div = 1024;
	for (; u < last && bytes / div + (bytes % div >= div / 2) >= 1024; u++)
		div <<= 10;
	uint64_t q = bytes / div, rem = bytes % div;
	if (q < 10) {
		unsigned tenths = (unsigned)(q * 10 + (rem * 10 + div / 2) / div);
		if (tenths < 100)
			return snprintf(buf, size, "%u.%u %s", tenths / 10,
					tenths % 10, units[u]);
	}
	return snprintf(buf, size, "%llu %s",
			(unsigned long long)(q + (rem >= div / 2)), units[u]);
}
