/* husk-jail's per-container state directory: <root>/<id>/ holds state.json
 * (what later commands need), config.json (the spec as created, for exec
 * and poststop hooks) and, until start, exec.fifo. */
#ifndef HUSK_JAIL_STATE_H
#define HUSK_JAIL_STATE_H

#include <stdbool.h>
#include <sys/types.h>

#include "husk/error.h"

struct jail_state {
	char *id;
	char *dir; /* <root>/<id> */
	char *bundle;
	pid_t pid;
	unsigned long long start_time;
	char *created; /* RFC 3339 */
	char *cgroup_mount; /* NULL without cgroups */
	char *cgroup_path;
};

/* Container ids: [A-Za-z0-9_.-], 1..128 characters, not "." or "..". */
int jail_state_check_id(const char *id, struct husk_err *err);
/* Creates <root>/<id> (EEXIST: the id is taken). */
int jail_state_create_dir(const char *root, const char *id, char **dir, struct husk_err *err);
int jail_state_save(const struct jail_state *st, struct husk_err *err);
int jail_state_load(const char *root, const char *id, struct jail_state **out,
		    struct husk_err *err);
void jail_state_free(struct jail_state *st);
/* Removes the state directory and everything in it. */
int jail_state_remove(const char *dir, struct husk_err *err);

/* "created", "running", "paused" or "stopped", from the process, the fifo
 * and the cgroup. */
const char *jail_state_status(const struct jail_state *st);
bool jail_state_alive(const struct jail_state *st);

#endif
