#include "jail/debug.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static int debug_fd = -1;

void jail_set_debug_fd(int fd)
{
	debug_fd = fd;
}

void jail_debug(const char *fmt, ...)
{
	if (debug_fd < 0)
		return;
	char line[512];
	int n = snprintf(line, sizeof(line), "husk-jail: debug: ");
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		return;
	size_t len = (size_t)n + (size_t)m;
	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2;
	line[len++] = '\n';
	/* The container's init writes here up to its execve, long after the
	 * `create` whose stderr this may be has gone: a pipe without a reader
	 * must not SIGPIPE it (its signals are back to default). Blocked, the
	 * signal stays pending and is taken back before unblocking. */
	sigset_t pipe_set, old;
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	sigprocmask(SIG_BLOCK, &pipe_set, &old);
	/* One write: lines from the init and the runtime do not interleave. */
	if (write(debug_fd, line, len) < 0 && errno == EPIPE && !sigismember(&old, SIGPIPE)) {
		const struct timespec none = { 0, 0 };
		sigtimedwait(&pipe_set, NULL, &none);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
}
