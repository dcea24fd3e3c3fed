/* Logging and console fds for PID 1: see init/console.h. */
#include "init/console.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "husk/file.h"

/* One log per process: these are the only globals of libinit. */
static int log_level = INIT_LOG_DEFAULT;
static int stderr_level = INIT_LOG_DEBUG; /* stderr takes lines up to this level */
static init_log_sink_fn log_sink;
static void *log_sink_data;
static bool in_sink;

static const char *const level_names[] = {
	"emerg", "alert", "crit", "error", "warning", "notice", "info", "debug",
};

const char *init_log_level_name(int level)
{
	if (level < 0 || level > INIT_LOG_DEBUG)
		return "?";
	return level_names[level];
}

void init_log_set_level(int level)
{
	if (level < INIT_LOG_EMERG)
		level = INIT_LOG_EMERG;
	if (level > INIT_LOG_DEBUG)
		level = INIT_LOG_DEBUG;
	log_level = level;
}

int init_log_get_level(void)
{
	return log_level;
}

bool init_log_enabled(int level)
{
	return level <= log_level;
}

void init_log_set_sink(init_log_sink_fn fn, void *data)
{
	log_sink = fn;
	log_sink_data = data;
}

void init_log_set_stderr(bool on)
{
	stderr_level = on ? INIT_LOG_DEBUG : -1;
}

void init_log_set_stderr_level(int level)
{
	stderr_level = level < -1 ? -1 : level > INIT_LOG_DEBUG ? INIT_LOG_DEBUG : level;
}

void init_log(int level, const char *fmt, ...)
{
	if (!init_log_enabled(level))
		return;
	int saved_errno = errno; /* callers log and then look at errno */

	/* "level: message", shared by stderr and the sink. */
	char msg[INIT_LOG_LINE_MAX];
	int n = snprintf(msg, sizeof(msg), "%s: ", init_log_level_name(level));
	if (n < 0)
		n = 0;
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	va_end(ap);
	size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
	if (len >= sizeof(msg))
		len = sizeof(msg) - 1;
	while (len > 0 && msg[len - 1] == '\n')
		msg[--len] = '\0';

	/* A line the sink cannot carry (it is logging itself, or there is
	 * no sink) always reaches stderr. */
	if (level <= stderr_level || in_sink || !log_sink) {
		struct timespec ts = { 0 };
		clock_gettime(CLOCK_BOOTTIME, &ts);
		char line[INIT_LOG_LINE_MAX + 64];
		int k = snprintf(line, sizeof(line), "[%5lld.%06ld] husk-agent: %.*s\n",
				 (long long)ts.tv_sec, ts.tv_nsec / 1000, (int)len, msg);
		/* A failure is dropped: there is nowhere else to report it. */
		if (k > 0)
			(void)husk_write_all(STDERR_FILENO, line,
					     (size_t)k < sizeof(line) ? (size_t)k : sizeof(line) - 1);
	}
	if (log_sink && !in_sink) {
		in_sink = true;
		log_sink(level, msg, len, log_sink_data);
		in_sink = false;
	}
	errno = saved_errno;
}

int init_console_attach(const char *console, struct husk_err *err)
{
	bool closed[3];
	bool any = false;
	for (int fd = 0; fd < 3; fd++) {
		closed[fd] = fcntl(fd, F_GETFD) < 0 && errno == EBADF;
		any |= closed[fd];
	}
	if (!any)
		return 0;
	/* Opened without O_CLOEXEC: these become fds 0..2, inherited on exec. */
	int fd = open(console, O_RDWR | O_NOCTTY);
	if (fd < 0)
		fd = open("/dev/null", O_RDWR | O_NOCTTY);
	if (fd < 0)
		return husk_err_sys(err, -errno, "open %s and /dev/null for fds 0-2", console);
	for (int i = 0; i < 3; i++) {
		if (closed[i] && fd != i && dup2(fd, i) < 0) {
			int r = -errno;
			if (fd > 2)
				close(fd);
			return husk_err_sys(err, r, "dup2 %s onto fd %d", console, i);
		}
	}
	if (fd > 2)
		close(fd);
	return 0;
}
