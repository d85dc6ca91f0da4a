/* SPDX-License-Identifier: BSD-2-Clause */
#include "io.h"

#include <unistd.h>

sqv_err_t sqv_pread_all(int fd, void *buf, size_t len, uint64_t pos)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done,
				  (off_t)(pos + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -EIO;
		done += (size_t)n;
	}
	return 0;
}

sqv_err_t sqv_pread_counted(int fd, void *buf, size_t len, uint64_t pos,
			    struct sqv_io_count *count)
{
	SQV_TRY(sqv_pread_all(fd, buf, len, pos));
	if (count) {
		atomic_fetch_add_explicit(&count->reads, 1,
					  memory_order_relaxed);
		atomic_fetch_add_explicit(&count->bytes, len,
					  memory_order_relaxed);
	}
	return 0;
}
