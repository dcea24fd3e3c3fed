/* The shim's containers and processes, and the states a process moves
 * through, after containerd-shim-runc-v2's pkg/process/init_state.go:
 *
 *   CREATING ──▶ CREATED ──▶ STARTING ──▶ RUNNING ◀──▶ PAUSED
 *      │            │  ▲          │          │            │
 *      │            │  └──────────┘          ▼            │
 *      │            └──────────────────▶ EXITING ◀────────┘
 *      │                                     │
 *      └──────────▶ DELETED ◀── STOPPED ◀────┘
 *                      ▲
 *                      └── CREATED (deleted before it ran)
 *
 * CREATING: the agent's Create or Exec (for an init: the VM's boot or the
 * disk's hot-add before it) is in flight. EXITING: the agent reported the
 * exit, but containerd is not told until every output byte reached its
 * FIFOs and an OOM kill (if it was one) has been published; then STOPPED:
 * Wait answers, /tasks/exit went out. Each Task call is checked against
 * this table (proc_check) before anything is forwarded to the guest.
 *
 * Containers and processes are reference counted: the table holds one
 * reference until they are deleted, and every call in flight that names
 * one (a forwarded request, a worker job, a logger's exit) holds another,
 * so that nothing it points at is freed under it. */
#ifndef HUSK_SHIM_PROCESS_H
#define HUSK_SHIM_PROCESS_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "husk.h"
#include "ttrpc/server.h"

struct shim;
struct relay;
struct logger;

enum proc_state {
	PROC_CREATING,
	PROC_CREATED,
	PROC_STARTING,
	PROC_RUNNING,
	PROC_PAUSED,
	PROC_EXITING,
	PROC_STOPPED,
	PROC_DELETED,
};
#define PROC_STATES (PROC_DELETED + 1)

/* The Task calls that depend on a process's state. */
enum proc_op {
	PROC_OP_START,
	PROC_OP_KILL,
	PROC_OP_DELETE,
	PROC_OP_PAUSE,
	PROC_OP_RESUME,
	PROC_OP_EXEC, /* on the container's init: may an exec join it? */
	PROC_OP_IO,   /* CloseIO, ResizePty */
	PROC_OP_STATE, /* State, Wait */
};

/* What a call in a state gets. */
enum proc_verdict {
	PROC_ALLOW,  /* go ahead (usually: forward to the agent) */
	PROC_NOOP,   /* answer OK without doing anything */
	PROC_LATER,  /* wait until the process leaves CREATING */
	PROC_REFUSE, /* fail with *code and the message */
};

const char *proc_state_name(enum proc_state s);
/* Whether a process may go from `from` to `to`. */
bool proc_transition_ok(enum proc_state from, enum proc_state to);
/* The verdict for `op` in state `s`; for PROC_REFUSE, *code is the ttrpc
 * code containerd gets and msg (may be NULL) says why, as runc-v2 says it. */
enum proc_verdict proc_check(enum proc_state s, enum proc_op op, int *code, char *msg,
			     size_t len);

/* One container. The first one booted the VM (for a pod: the sandbox);
 * it going takes the VM with it. */
enum shim_pod_role {
	SHIM_POD_NONE,	    /* plain containerd: a VM of its own */
	SHIM_POD_SANDBOX,   /* a pod's sandbox: its VM takes later containers */
	SHIM_POD_CONTAINER, /* joins the VM of the pod's sandbox */
};

struct ctr {
	unsigned refs;
	struct shim *s;
	char *id, *bundle;
	enum shim_pod_role role;
	/* rootfs.c: the rootfs image and where it is. */
	char serial[24];     /* its rootfs disk in the guest */
	bool disk_added;     /* hot-added to a running VM: removed when it goes */
	int image_hold;      /* husk_image hold on its rootfs image, or -1 */
	char *rootfs_mount;  /* bundle/rootfs while mounted by us */
	unsigned host_mounts; /* mounts.c: has entries in the VM's share */
	struct proc *init;   /* also the first of procs */
	struct proc *procs;
	uint64_t oom_kills_seen; /* memory.events oom_kill already published */
	bool listed;             /* in the shim's table */
	struct ctr *next;
};

struct waiter {
	struct ttrpc_call *call;
	struct proc *p;
	struct waiter *next;
};

struct proc {
	unsigned refs;
	struct shim *s;
	struct ctr *c;
	char *exec_id; /* "" for the container's init process */
	char *stdin_path, *stdout_path, *stderr_path;
	bool terminal;
	enum proc_state state;
	struct husk_stdio ports; /* its stdio ports in the guest */
	uint32_t guest_pid;	 /* in the guest; 0 until known */
	int host_fd[3];		/* containerd's side, opened at Create/Exec, until relayed */
	struct relay *in, *out, *err;
	unsigned outputs_open;	/* output relays still copying */
	struct logger *logger;	/* binary:// stdout */
	bool agent_waiting;	/* the agent's Wait is in flight */
	bool oom_check;		/* killed: exit held until the OOM check answered */
	uint32_t status;
	struct timespec exited_at;
	struct waiter *waiters;
	struct ttrpc_call *start_call;	/* Start waiting for the logger */
	struct ttrpc_call *kill_call;	/* Kill waiting for CREATING to end */
	uint32_t kill_signal;
	bool kill_all;
	struct ttrpc_call *delete_call;	/* Delete waiting for the logger, or for CREATING */
	bool listed;			/* in its container's table */
	struct proc *next;
};

/* ---- the table ---- */
/* Adds container `id` (no processes yet); NULL when out of memory. */
struct ctr *ctr_new(struct shim *s, const char *id, const char *bundle, enum shim_pod_role role);
/* The listed container `id`, or NULL. */
struct ctr *ctr_find(struct shim *s, const char *id);
/* Containers still listed. */
unsigned ctr_count(const struct shim *s);
struct ctr *ctr_ref(struct ctr *c);
/* At the last reference: frees it (its rootfs must have been released). */
void ctr_unref(struct ctr *c);
/* Takes it out of the table (drops the table's reference). */
void ctr_unlist(struct ctr *c);

/* Adds a process to `c` in state CREATING, with random guest stdio ports
 * for the streams containerd gave; NULL when out of memory. */
struct proc *proc_new(struct ctr *c, const char *exec_id, const char *in, const char *out,
		      const char *err, bool terminal);
/* The listed process (NULL or "" exec_id: the init), or NULL. */
struct proc *proc_find(struct ctr *c, const char *exec_id);
struct proc *proc_ref(struct proc *p);
void proc_unref(struct proc *p);
/* containerd's name for it: the exec id, or the container id. */
const char *proc_task_id(const struct proc *p);

/* Moves `p` to `to`, which must be a legal transition (logged and ignored
 * otherwise: a bug, never containerd's doing). DELETED closes its stdio,
 * answers its waiters as STOPPED would, and takes it out of the table. */
void proc_set_state(struct proc *p, enum proc_state to);

/* ---- exits ---- */
/* The process is gone in the guest (or with the VM): remembers the status
 * (the first one wins), EXITING, then STOPPED as soon as proc_exit_done
 * holds. `at` NULL: now. */
void proc_exited(struct proc *p, uint32_t status, const struct timespec *at);
/* Goes to STOPPED, answering Waits and publishing /tasks/exit, once it is
 * EXITING with every output copied and no OOM check pending. */
void proc_maybe_stopped(struct proc *p);
/* A Wait: answered now when STOPPED, else when it stops. */
int proc_add_waiter(struct proc *p, struct ttrpc_call *call);
/* The status and time containerd sees for a stopped process. */
void proc_fill_exit(const struct proc *p, uint32_t *status, struct timespec *at);

/* Closes the process's stdio: relays (no callbacks) and containerd's fds
 * not relayed yet. */
void proc_close_io(struct proc *p);

/* At exit, after the server is gone: every container and process, whatever
 * their state (their calls went with the server). */
void shim_table_free(struct shim *s);

#endif
