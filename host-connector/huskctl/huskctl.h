/* huskctl's subcommands; each returns the process exit status. */
#ifndef HUSKCTL_H
#define HUSKCTL_H

#include "husk.h"

#define HUSKCTL_VERSION "0.1.0"
/* Exit status for huskctl's own failures, as docker and podman use. */
#define EXIT_HUSK 125

struct global_opts {
	const char *state_dir; /* NULL: husk_default_state_dir() */
};

int cmd_run(const struct global_opts *g, int argc, char **argv);
int cmd_exec(const struct global_opts *g, int argc, char **argv);
int cmd_update(const struct global_opts *g, int argc, char **argv);
int cmd_simple(const struct global_opts *g, const char *cmd, int argc, char **argv);
int cmd_console(const struct global_opts *g, int argc, char **argv);
int cmd_info(const struct global_opts *g, int argc, char **argv);
int cmd_ls(const struct global_opts *g, int argc, char **argv);
int cmd_image(const struct global_opts *g, int argc, char **argv);

/* "huskctl: <what>: <msg>" on stderr; returns EXIT_HUSK. */
__attribute__((format(printf, 1, 2))) int fail(const char *fmt, ...);

#endif
