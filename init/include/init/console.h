/* Logging for the guest's PID 1, and the console file descriptors.
 *
 * init_log() writes one line per call to stderr, which for PID 1 is the
 * kernel's /dev/console (a serial port under QEMU):
 *   "[    1.234567] husk-agent: warning: message"
 * The timestamp is CLOCK_BOOTTIME, the clock of the kernel's own log
 * lines, so the two interleave sensibly on the console.
 *
 * Lines above the current level (syslog numbering: 0 emerg .. 7 debug) are
 * dropped. A sink can be set to also receive every line that passes the
 * level (the agent forwards them to the host on vsock port 1025).
 *
 * The level and the sink are process-wide: a process has one log. */
#ifndef INIT_CONSOLE_H
#define INIT_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>

#include "husk/error.h"

enum {
	INIT_LOG_EMERG = 0,
	INIT_LOG_ALERT = 1,
	INIT_LOG_CRIT = 2,
	INIT_LOG_ERR = 3,
	INIT_LOG_WARNING = 4,
	INIT_LOG_NOTICE = 5,
	INIT_LOG_INFO = 6,
	INIT_LOG_DEBUG = 7,
};

#define INIT_LOG_DEFAULT INIT_LOG_INFO
/* The longest line passed to a sink (longer messages are cut). */
#define INIT_LOG_LINE_MAX 1024

/* Receives `line` (`len` bytes, no trailing newline, NUL-terminated) at
 * `level`. Called synchronously from init_log(); a sink that logs itself is
 * not re-entered (those lines go to stderr only). */
typedef void (*init_log_sink_fn)(int level, const char *line, size_t len, void *data);

/* Levels outside 0..7 are clamped. */
void init_log_set_level(int level);
int init_log_get_level(void);
bool init_log_enabled(int level);

/* Replaces the sink; NULL removes it. */
void init_log_set_sink(init_log_sink_fn fn, void *data);

/* Also write to stderr (default true). The agent may turn this off when the
 * sink carries everything and the console is slow (a TCG serial port). */
void init_log_set_stderr(bool on);

/* Only lines at `level` or more severe also go to stderr (-1: none) while a
 * sink is set; without a sink every line that passes the level does. The
 * agent keeps warnings and worse on the console once the host's log stream
 * carries the rest: a TCG serial port costs the guest about 0.1 ms a
 * character. */
void init_log_set_stderr_level(int level);

__attribute__((format(printf, 2, 3)))
void init_log(int level, const char *fmt, ...);

/* "emerg", "alert", ... "debug"; "?" outside 0..7. */
const char *init_log_level_name(int level);

/* Makes sure fds 0, 1 and 2 are open: the kernel leaves them closed when
 * the initramfs has no /dev/console, and a later socket landing on fd 2
 * would then receive our log lines. Each closed one gets `console` (opened
 * O_RDWR | O_NOCTTY), or /dev/null if that cannot be opened. Call it right
 * after /dev is mounted (init_mount_basics does). */
int init_console_attach(const char *console, struct husk_err *err);

#endif
