/* The shim's log (log.h). */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static void vlog(const char *level, const char *source, const char *fmt, va_list ap)
{
	char msg[2048], esc[4200];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	/* Quoted as logrus quotes: the line stays one line. */
	size_t n = 0;
	for (const char *c = msg; *c && n + 8 < sizeof(esc); c++) {
		if (*c == '"' || *c == '\\') {
			esc[n++] = '\\';
			esc[n++] = *c;
		} else if (*c == '\n' || *c == '\t' || *c == '\r') {
			esc[n++] = '\\';
			esc[n++] = *c == '\n' ? 'n' : *c == '\t' ? 't' : 'r';
		} else if ((unsigned char)*c < 0x20) {
			n += (size_t)snprintf(esc + n, sizeof(esc) - n, "\\x%02x",
					      (unsigned char)*c);
		} else {
			esc[n++] = *c;
		}
	}
	esc[n] = '\0';
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	/* One write per line: a short write must not interleave with the next
	 * line. */
	dprintf(STDERR_FILENO,
		"time=\"%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ\" level=%s msg=\"%s\" "
		"runtime=io.containerd.husk.v2%s%s\n",
		tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		ts.tv_nsec / 1000, level, esc, source ? " source=" : "", source ? source : "");
}

void shim_log(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog("info", NULL, fmt, ap);
	va_end(ap);
}

void shim_log_at(const char *level, const char *source, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(level, source, fmt, ap);
	va_end(ap);
}
