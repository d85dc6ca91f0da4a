/* SPDX-License-Identifier: BSD-2-Clause */
/* Holding lib/'s messages back: see sqvenvfs-inspect-held.h. */
#include <stdio.h>

#include "log.h"
#include "sqvenvfs-inspect-held.h"

struct sqv_held sqv_held;

static void hold_sink(int level, const char *msg, void *ctx)
{
	(void)ctx;
	if (level > SQV_LOG_WARNING)
		return;
	if (sqv_held.count < SQV_HELD_MAX)
		snprintf(sqv_held.msg[sqv_held.count], sizeof(sqv_held.msg[0]),
			 "%s", msg);
	sqv_held.count++;
}

void sqv_hold_begin(void)
{
	sqv_held.count = 0;
	sqv_log_set_sink(hold_sink, NULL);
}

void sqv_hold_end(void)
{
	sqv_log_set_sink(NULL, NULL);
}
