/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * mem: memory helpers shared by lib/.
 */
#ifndef SQV_MEM_H
#define SQV_MEM_H

#include <stddef.h>

/*
 * Fault in the whole pages of [p, p + len) in one system call
 * (MADV_POPULATE_WRITE), for a buffer about to be filled: a page fault
 * each is most of the cost of filling a large array on a virtual machine.
 * Only for ranges of 64 KiB or more (glibc gives those their own mappings
 * in the daemon); best effort: an older kernel simply faults as before.
 */
void sqv_mem_prefault(void *p, size_t len);

#endif
