/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * log: the one place messages leave lib/ and the programs. The sink, level
 * and ident are set once at start-up, before any thread starts, and only
 * read afterwards.
 */
#include "log.h"

#include <stdio.h>
#include <string.h>
#include <syslog.h>

static sqv_log_sink_fn log_sink;
static void *log_ctx;
static int log_level = SQV_LOG_NOTICE;
static const char *log_ident = "sqvenvfs";

void sqv_log_set_sink(sqv_log_sink_fn sink, void *ctx)
{
	log_sink = sink;
	log_ctx = ctx;
}

void sqv_log_set_level(int level)
{
	log_level = level;
}

void sqv_log_set_ident(const char *ident)
{
	log_ident = ident;
}

void sqv_log_sink_journal(int level, const char *msg, void *ctx)
{
	(void)ctx;
	fprintf(stderr, "<%d>%s\n", level, msg);
}

void sqv_log_sink_syslog(int level, const char *msg, void *ctx)
{
	(void)ctx;
	syslog(level, "%s", msg);
}

void sqv_vlog(int level, const char *fmt, va_list ap)
{
	char msg[1024];

	if (level > log_level)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	/* One message is one line. */
	size_t len = strlen(msg);
	while (len > 0 && msg[len - 1] == '\n')
		msg[--len] = '\0';
	if (log_sink)
		log_sink(level, msg, log_ctx);
	else
		fprintf(stderr, "%s: %s\n", log_ident, msg);
}

void sqv_log(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	sqv_vlog(level, fmt, ap);
	va_end(ap);
}
