/* Creating, starting and entering containers from an OCI spec.
 *
 * create: the container's init process is set up completely (namespaces,
 *   cgroup, root filesystem, hooks) and then waits, before execve, until
 *   start. Any failure before that point is reported to the caller and
 *   leaves nothing behind: no process, cgroup or exec fifo.
 * start:  lets the init process execve the spec's process.
 * exec:   runs another process inside a running container's namespaces and
 *   cgroup.
 *
 * The init and exec processes are children of the caller (CLONE_PARENT), so
 * the caller reaps them; libjail itself only waits for its own short-lived
 * helpers. */
#ifndef JAIL_CONTAINER_H
#define JAIL_CONTAINER_H

#include <stdbool.h>
#include <sys/types.h>

#include "husk/error.h"
#include "jail/spec.h"

struct jail_cgroup;

struct jail_stdio {
	int in, out, err; /* fds to become 0, 1, 2; -1 keeps the caller's */
};

struct jail_create_opts {
	const char *id;
	const char *bundle;    /* reported to hooks in the state */
	const char *state_dir; /* exists; the exec fifo is made here */
	/* cgroup2 mount ("/sys/fs/cgroup") or NULL to run without cgroups. */
	const char *cgroup_mount;
	/* Used when the spec has no linux.cgroupsPath. */
	const char *default_cgroup_path;
	struct jail_stdio stdio;
	/* The caller starts the container itself, with jail_container_start on
	 * the handle create returns (husk-jail run): the init then waits on the
	 * runtime's socket instead of an exec fifo, and none is made. */
	bool no_exec_fifo;
	/* Brings "lo" up in a network namespace the container gets of its own
	 * (one it creates, not one it joins). runc leaves that to CNI's
	 * loopback plugin; in a VM guest nothing else would do it. */
	bool loopback_up;
	/* Called for warnings (ignored AppArmor/SELinux fields, failing
	 * poststop hooks); NULL prints them to stderr. */
	void (*warn)(void *data, const char *msg);
	void *warn_data;
};

struct jail_container {
	pid_t pid;	     /* the init process, in the caller's pid namespace */
	int pidfd;	     /* pidfd of pid, or -1 where unsupported */
	int console_fd;	     /* pty master when process.terminal, else -1 */
	char *fifo_path;     /* exec fifo, removed by start; NULL with no_exec_fifo */
	int sync_fd;	     /* with no_exec_fifo: the init's socket until start, else -1 */
	struct jail_cgroup *cgroup; /* NULL without cgroups */
	unsigned long long start_time; /* /proc/PID/stat starttime, against pid reuse */
};

int jail_container_create(const struct jail_spec *spec, const struct jail_create_opts *opts,
			  struct jail_container **out, struct husk_err *err);
/* Unblocks the init process (it runs startContainer hooks, then execs) and
 * runs poststart hooks. Works from another process too: only the fifo path
 * is needed, see jail_start_fifo() (not with no_exec_fifo). */
int jail_container_start(const struct jail_spec *spec, const struct jail_create_opts *opts,
			 struct jail_container *c, struct husk_err *err);
int jail_start_fifo(const char *fifo_path, struct husk_err *err);
/* Frees the handle: closes fds, keeps processes and the cgroup. */
void jail_container_free(struct jail_container *c);

struct jail_exec_opts {
	pid_t target;		 /* the container's init pid */
	const char *cgroup_dir;	 /* absolute cgroup directory to join, or NULL */
	struct jail_stdio stdio;
	/* The spec of the container (for seccomp is not inherited: the exec'd
	 * process gets the filter of `process` only through `seccomp`). */
	const struct jail_seccomp *seccomp; /* may be NULL */
	const struct jail_spec *spec;	    /* namespaces to join; may be NULL: all */
};

/* Starts `proc` inside the container; *pid is its pid, *console_fd its pty
 * master when proc->terminal (else -1). */
int jail_exec(const struct jail_process *proc, const struct jail_exec_opts *opts, pid_t *pid,
	      int *console_fd, struct husk_err *err);

/* Start time of `pid` (field 22 of /proc/PID/stat), telling a process from
 * a later one that reuses its pid; 0 when it is gone or a zombie. */
unsigned long long jail_proc_start_time(pid_t pid);

/* The OCI state JSON for hooks and `state` ("created", "running", ...). */
char *jail_state_json(const char *id, const char *status, pid_t pid, const char *bundle,
		      const struct jail_spec *spec);

#endif
