/* The husk.* keys of the kernel command line.
 *
 *   husk.log_level=N      0..7, syslog numbering (default 6, info)
 *   husk.debug_console=B  1 or 0 (a bare "husk.debug_console" means 1):
 *                         serve a shell on vsock port 1026 (default 0)
 *   husk.agent_port=N     vsock port of the agent's ttrpc server,
 *                         1..4294967294 (default 1024)
 *   husk.log_port=N       host vsock port the agent streams its log to,
 *                         1..4294967294 (default 1025); under vhost-vsock
 *                         every VM needs its own, the host's port space
 *                         being shared by all VMs
 *   husk.hostname=NAME    1..64 characters [A-Za-z0-9.-], labels not
 *                         starting or ending with '-' (default: unset)
 *   husk.modules=a,b,c    kernel modules to load, in order; repeated keys
 *                         add to the list (at most INIT_MAX_MODULES)
 *
 * Where: libhusk puts them after "--", so that the kernel hands them to
 * init as its arguments and PID 1 has them before it mounts anything
 * (init_parse_args). A command line made by hand may put them before "--"
 * as well; the kernel ignores them there and PID 1 reads them from
 * /proc/cmdline (init_parse_cmdline), which it does only when its arguments
 * carry no husk.* key.
 *
 * The parsing follows the kernel's: words separated by spaces, a value may
 * be double-quoted (husk.hostname="x"), and words on both sides of "--" are
 * read, up to a second "--" (the kernel hands what follows it to nobody).
 * For scalar keys the last one wins.
 *
 * Any husk.* key marks the command line as a husk guest's; init_poweroff()
 * relies on this (init_cmdline_is_husk) before ever calling reboot(2), so
 * the host must always pass at least one husk.* key. */
#ifndef INIT_CMDLINE_H
#define INIT_CMDLINE_H

#include <stdbool.h>
#include <stddef.h>

#include "husk/error.h"

#define INIT_CMDLINE_MAX 4096       /* x86 allows 2048; room for others */
#define INIT_MAX_MODULES 32
#define INIT_MODULE_NAME_MAX 64     /* the kernel's MODULE_NAME_LEN, with NUL */
#define INIT_MAX_UNKNOWN 16
#define INIT_UNKNOWN_KEY_MAX 64
#define INIT_DEFAULT_AGENT_PORT 1024u
#define INIT_DEFAULT_LOG_PORT 1025u

struct init_config {
	int log_level;
	bool debug_console;
	unsigned agent_port;
	unsigned log_port;
	char hostname[65];          /* "" when not given */
	char modules[INIT_MAX_MODULES][INIT_MODULE_NAME_MAX];
	size_t n_modules;
	/* Unknown husk.* keys (names only, cut to INIT_UNKNOWN_KEY_MAX - 1),
	 * kept so the caller can warn about them; n_unknown counts all of them,
	 * including those beyond INIT_MAX_UNKNOWN that were not stored. */
	char unknown[INIT_MAX_UNKNOWN][INIT_UNKNOWN_KEY_MAX];
	size_t n_unknown;
	bool husk_keys_seen;        /* any husk.* word at all */
};

/* Fills `cfg` with the defaults. */
void init_config_defaults(struct init_config *cfg);

/* Parses `cmdline` (the text of /proc/cmdline) into `cfg`, which is first
 * set to the defaults. Words that are not husk.* keys are ignored; unknown
 * husk.* keys are listed in cfg->unknown, not an error.
 *
 * A malformed value is an error (-EINVAL, or -E2BIG for too many modules)
 * naming the key and the value, e.g.
 *   husk.log_level: invalid value "9" (expected 0..7)
 * Parsing carries on past it, so `cfg` holds every well-formed key even
 * then (the bad key keeps its default): PID 1 can log the error and boot.
 * The first error is the one returned. Pure: no I/O. */
int init_parse_cmdline(const char *cmdline, struct init_config *cfg, struct husk_err *err);

/* Reads /proc/cmdline into `buf` (NUL-terminated, trailing newline
 * removed). -ENOBUFS when it does not fit in `size`. */
int init_read_cmdline(char *buf, size_t size, struct husk_err *err);

/* The same for init's arguments (argv[1..] of PID 1, the words after "--"):
 * one word per element, quotes already stripped by the kernel; elements
 * that are not husk.* keys are ignored. `cfg` is first set to the defaults.
 * Errors and carrying on as init_parse_cmdline. */
int init_parse_args(int argc, char *const argv[], struct init_config *cfg, struct husk_err *err);

/* True when `cmdline` has a word starting "husk.", on either side of "--". */
bool init_cmdline_is_husk(const char *cmdline);

/* Points names[i] at cfg->modules[i] for i < cfg->n_modules (the form
 * init_load_modules takes); returns n_modules. `names` must have room for
 * INIT_MAX_MODULES pointers. */
size_t init_config_module_names(const struct init_config *cfg,
				const char *names[INIT_MAX_MODULES]);

#endif
