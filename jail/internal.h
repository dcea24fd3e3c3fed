/* Private to libjail: the messages between the runtime (parent) and the
 * processes it creates, over a SOCK_SEQPACKET pair, one message per packet. */
#ifndef JAIL_INTERNAL_H
#define JAIL_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "husk/error.h"
#include "jail/container.h"
#include "jail/spec.h"

enum sync_type {
	SYNC_PID = 1, /* stage-1 -> parent: pid of the process it cloned */
	SYNC_GO,      /* parent -> init: id maps written, runtime hooks done */
	SYNC_CONSOLE, /* child -> parent: pty master attached (SCM_RIGHTS) */
	SYNC_READY,   /* init -> parent: set up, waiting for start */
	SYNC_ERROR,   /* child -> parent: setup failed, text says why */
	SYNC_START,   /* parent -> init: exec now (no_exec_fifo instead of the fifo) */
};

struct sync_msg {
	uint32_t type;
	int32_t value;
	char text[HUSK_ERR_MSG_MAX];
};

int sync_send(int fd, enum sync_type type, int32_t value, const char *text, int pass_fd);
/* Returns 0 on a message, -EPIPE when the peer closed without one. */
int sync_recv(int fd, struct sync_msg *msg, int *passed_fd);

/* What the child processes need; lives in the parent's memory, which
 * fork/clone copies. */
struct init_args {
	const struct jail_spec *spec;
	const struct jail_process *process;
	const struct jail_create_opts *create; /* NULL for exec */
	const struct jail_exec_opts *exec;     /* NULL for create */
	const char *cgroup_dir;		       /* join this cgroup (stage-1), or NULL */
	int fifo_fd; /* create: the exec fifo, opened read-write by the parent
		      * (the init may not be allowed to open it: user ns);
		      * -1 with no_exec_fifo: SYNC_START on sync_fd instead */
	void *seccomp;			       /* built filter or NULL */
	int sync_fd;
	int ns_fds[8]; /* namespaces to join, user first; -1 ends */
	int root_fd;   /* exec: the container init's root (/proc/PID/root) */
	unsigned long clone_flags;
	bool direct; /* cloned by jail_clone_direct, not by stage 1 */
};

/* Stage 1: joins namespaces and the cgroup, clones the final process with
 * CLONE_PARENT, reports its pid. Never returns. */
__attribute__((noreturn)) void jail_stage1(struct init_args *a);

/* create without namespaces to join: clones the container's init from the
 * caller itself (clone3, into `cgroup_fd` when >= 0), skipping stage 1 and
 * its fork. Returns the pid, or -errno when clone3 refused (old kernel, a
 * cgroup fd it cannot use): stage 1 then does it the long way and reports
 * any real error itself. */
pid_t jail_clone_direct(struct init_args *a, int cgroup_fd);

/* A linux.sysctl key in sysctl(8)'s dotted form, as runc converts it: the
 * slash form "net/ipv4/conf/eno2.100/rp_filter" (a '.' belongs to a name)
 * becomes "net.ipv4.conf.eno2/100.rp_filter"; a dotted key is kept.
 * -ENAMETOOLONG when it does not fit `size`. */
int jail_sysctl_dotted(const char *key, char *out, size_t size);

/* The /proc/sys file of a linux.sysctl key, either form; refuses empty,
 * "." and ".." components, naming the key. */
int jail_sysctl_path(const char *key, char *path, size_t size, struct husk_err *err);

/* Unblocks every signal and sets every disposition to SIG_DFL. */
void jail_reset_signals(void);

/* Executable lookup as execvp does, with the process's own PATH, inside the
 * current root. Returns a malloc'd path. */
int jail_find_executable(const struct jail_process *p, char **out, struct husk_err *err);

/* pty for process.terminal: opens /dev/ptmx of the current root, makes the
 * peer our controlling terminal and 0/1/2, and returns the master. */
int jail_setup_terminal(const struct jail_process *p, int *master, struct husk_err *err);

#endif
