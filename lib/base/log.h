/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * One logging function for lib/, the daemon and the tools. lib/ never prints
 * on its own: everything goes through sqv_log(), whose sink the program sets.
 * The sinks every program needs are here: plain lines on stderr (the
 * default), the journal's <N> prefix, syslog.
 */
#ifndef SQV_LOG_H
#define SQV_LOG_H

#include <stdarg.h>

/* syslog(3) priorities, so a sink can pass them straight on. */
enum sqv_log_level {
	SQV_LOG_ERR = 3,
	SQV_LOG_WARNING = 4,
	SQV_LOG_NOTICE = 5,
	SQV_LOG_INFO = 6,
	SQV_LOG_DEBUG = 7,
};

typedef void (*sqv_log_sink_fn)(int level, const char *msg, void *ctx);

/* Set once at start-up, before threads run; NULL restores the stderr sink. */
void sqv_log_set_sink(sqv_log_sink_fn sink, void *ctx);
/* Messages above this level are dropped (default SQV_LOG_NOTICE). */
void sqv_log_set_level(int level);
/* The program name that the stderr sink puts before each line. */
void sqv_log_set_ident(const char *ident);

/* "<N>msg" on stderr: what the journal reads from a service's stderr
 * (JOURNAL_STREAM set). */
void sqv_log_sink_journal(int level, const char *msg, void *ctx);
/* syslog(3); the program calls openlog() first. */
void sqv_log_sink_syslog(int level, const char *msg, void *ctx);

void sqv_log(int level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void sqv_vlog(int level, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

#endif
