/*
 * log.c - timestamped log lines for vmgrd.  One writer, one file; the loop is
 * single-threaded so no locking is needed.
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static FILE *log_out;
static int log_verbose;

void
log_init(FILE *out, int verbose)
{
	log_out = out;
	log_verbose = verbose;
}

static void
vlog(const char *level, int err, const char *fmt, va_list ap)
{
	FILE *out = log_out ? log_out : stderr;
	struct timespec ts;
	struct tm tm;
	char when[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(out, "%s.%03ldZ %s ", when, ts.tv_nsec / 1000000, level);
	vfprintf(out, fmt, ap);
	if (err)
		fprintf(out, ": %s", strerror(err));
	fputc('\n', out);
	fflush(out);
}

#define LOGFN(name, level, witherr, cond)		\
void							\
name(const char *fmt, ...)				\
{							\
	int saved = errno;				\
	va_list ap;					\
	if (!(cond))					\
		return;					\
	va_start(ap, fmt);				\
	vlog(level, witherr ? saved : 0, fmt, ap);	\
	va_end(ap);					\
	errno = saved;					\
}

LOGFN(log_info, "info", 0, 1)
LOGFN(log_debug, "debug", 0, log_verbose)
LOGFN(log_warn, "warn", 1, 1)
LOGFN(log_warnx, "warn", 0, 1)

void
fatal(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	vlog("fatal", saved, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog("fatal", 0, fmt, ap);
	va_end(ap);
	exit(1);
}
