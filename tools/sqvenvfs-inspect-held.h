/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/'s messages, held back while sqvenvfs-inspect decides what to say:
 * lib/ logs the specific reason of a failure ("x.sqfs: not a squashfs
 * image (bad magic)"), which becomes the one line printed on failure; on
 * success the tool prints them as warnings, or (verify, seal) treats any
 * as a failure. The tool is single-threaded where it holds them.
 */
#ifndef SQVENVFS_INSPECT_HELD_H
#define SQVENVFS_INSPECT_HELD_H

#define SQV_HELD_MAX 16

/* count: every message since sqv_hold_begin; msg: the first SQV_HELD_MAX. */
struct sqv_held {
	int count;
	char msg[SQV_HELD_MAX][512];
};

extern struct sqv_held sqv_held;

/* Hold lib/'s warnings and errors from now on, counting from 0. */
void sqv_hold_begin(void);
/* Let them go to stderr again. */
void sqv_hold_end(void);

#endif
