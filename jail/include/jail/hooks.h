/* OCI hooks: each hook runs with the container state JSON on stdin, in
 * order; a non-zero exit or an expired timeout fails the stage. */
#ifndef JAIL_HOOKS_H
#define JAIL_HOOKS_H

#include <stddef.h>

#include "husk/error.h"
#include "jail/spec.h"

/* `stage` names the hook list in errors ("createRuntime"). */
int jail_hooks_run(const char *stage, const struct jail_hook *hooks, size_t n,
		   const char *state_json, struct husk_err *err);

#endif
