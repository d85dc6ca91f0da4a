/* SPDX-License-Identifier: BSD-2-Clause */
/* size: see size.h and docs/sizes.md. */
#include "size.h"

#include <errno.h>
#include <stdbool.h>

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
