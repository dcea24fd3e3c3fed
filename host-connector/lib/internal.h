/* Private to libhusk: the VM object and helpers shared by its files. */
#ifndef HUSK_INTERNAL_H
#define HUSK_INTERNAL_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "husk.h"
#include "husk/file.h"
#include "husk/time.h"

/* Not part of libhusk.so's interface, though named husk_*. */
#pragma GCC visibility push(hidden)

#define HUSK_NAME_MAX 32
#define HUSK_SHARE_TAG_MAX 36
#define HUSK_SHARES_MAX 4
/* Under vhost-vsock, VM with CID c streams its log to host port BASE + c. */
#define HUSK_LOG_PORT_VHOST_BASE 0x10000000u

struct husk_vmm_ops;

/* One VM. Fields above `lock` are fixed once husk_vm_start (or _open)
 * returns, so any thread may read them; the reaping state below it is
 * guarded by `lock` (husk.h: the thread-safety contract). */
struct husk_vm {
	char name[HUSK_NAME_MAX + 1];
	char dir[PATH_MAX];     /* <state_dir>/<name> */
	/* The unix socket that stands for the guest's ports: husk-vsockd's
	 * hybrid socket (HYBRID), or the agent's own socket (UNIX). */
	char uds[PATH_MAX];
	char console[PATH_MAX]; /* guest serial console log */
	char vmm_name[16];      /* as vm.json records it, for husk_vm_open */
	const struct husk_vmm_ops *vmm; /* NULL: opened, of a backend unknown here */
	void *vmm_data;         /* the backend's own state (owner only) */
	enum husk_accel accel;
	enum husk_transport transport;
	uint32_t cid;
	bool owner; /* started here: may stop it, removes the directory */
	/* Taken from a pool: the VMM and husk-vsockd are the keeper's
	 * children, not ours (signals and waits go through their pidfds);
	 * lifeline_fd keeps the keeper from killing the VM, and brings the
	 * VMM's wait status when it exits. */
	bool pooled;
	int lifeline_fd;
	bool stopped;
	int lock_fd; /* flock(LOCK_EX) on <dir>/lock while the owner lives */
	int log_listen_fd, log_fd; /* the agent's log stream */
	uint32_t log_port;         /* its host port (husk.log_port) */
	/* The VMM's process: 0 / -1 when the backend runs none (the fake
	 * backend without a program). */
	pid_t vmm_pid;
	int vmm_pidfd;
	pid_t vsockd_pid;
	int vsockd_pidfd;
	uint64_t boot_ns;
	unsigned n_slots; /* hotplug_slots */
	/* share.c: virtiofsds serving husk_vm_add_share's directories (owner
	 * only; ended after the VMM). */
	struct husk_vm_share {
		char tag[HUSK_SHARE_TAG_MAX + 1];
		pid_t pid;
		int pidfd;
	} shares[HUSK_SHARES_MAX];
	unsigned n_shares;

	pthread_mutex_t lock;
	bool vmm_reaped;
	int vmm_status;
};

/* ---- vm.c ---- */
/* A VM object with no fds (all -1) and its lock initialised; NULL: ENOMEM. */
struct husk_vm *husk_vm_alloc(void);
/* Waits up to timeout_ms for the VMM's process to exit and reaps it (the
 * backends' stop uses it). 0 once reaped (also when it was already, or
 * there is none), -ETIMEDOUT while it runs. */
int husk_vm_reap_vmm(struct husk_vm *vm, unsigned timeout_ms);

/* Refuses a hot-add or removal on a VM this process does not run, that
 * stopped, or that has no slots. */
int husk_hotplug_usable(struct husk_vm *vm, struct husk_err *err);

/* ---- share.c ---- */
/* Ends the VM's virtiofsds (they leave by themselves once the VMM is
 * gone). */
void husk_shares_end(struct husk_vm *vm);

/* ---- pool.c / keeper.c: a VM handed between processes ---- */
/* The message that hands a VM over: JSON (*json, malloc'd) and the fds it
 * names (the VM keeps them; they are dup'ed by sendmsg). */
int husk_vm_export(const struct husk_vm *vm, char **json, int *fds, size_t *n_fds,
		   struct husk_err *err);
/* The VM a message describes, owned here (pooled). Takes the fds (closes
 * them on failure); the last one is the lifeline. */
int husk_vm_import(const char *json, int *fds, size_t n_fds, struct husk_vm **out,
		   struct husk_err *err);
/* The VM object without touching what runs (the keeper's copy once it is
 * sent): fds closed, memory freed. */
void husk_vm_forget(struct husk_vm *vm);

/* ---- vmdir.c: the state directory ---- */
/* Removes a VM directory and what is in it, without crossing mounts. */
void husk_remove_dir(const char *dir);
/* flock(LOCK_EX | LOCK_NB) on <dir>/lock: -EBUSY when someone holds it. */
int husk_take_lock(const char *dir, int *fd_out, struct husk_err *err);
/* vm.json, written atomically; the backend adds its own keys. */
int husk_state_write(const struct husk_vm *vm, struct husk_err *err);
int husk_state_read(struct husk_vm *vm, struct husk_err *err);

/* ---- transport.c: the guest's vsock ports seen from the host ---- */
/* Resolves AUTO, then prepares the transport before the VMM launches:
 * a CID reserved on /dev/vhost-vsock (*vhost_fd), husk-vsockd running
 * (HYBRID), or the agent socket's path (UNIX); and the listener for the
 * agent's log stream. */
int husk_transport_setup(struct husk_vm *vm, const struct husk_vm_config *cfg, int *vhost_fd,
			 struct husk_err *err);
/* The agent's log connection, when it is there (readiness). */
void husk_log_accept(struct husk_vm *vm);
void husk_log_listener_close(struct husk_vm *vm);
/* husk-vsockd: gone by itself once the VMM is, else SIGTERM after
 * wait_ms, then SIGKILL. */
void husk_vsockd_end(struct husk_vm *vm, unsigned wait_ms);

/* ---- ready.c ---- */
/* Waits for the agent to answer Check; -ECHILD when the VMM (or
 * husk-vsockd) exits first, -ETIMEDOUT after timeout_ms. Errors carry
 * the console's tail. */
int husk_wait_ready(struct husk_vm *vm, unsigned timeout_ms, uint64_t t0, struct husk_err *err);

/* ---- spawn.c: child processes ---- */
struct husk_spawn {
	const char *const *argv;
	int stdin_fd, stdout_fd, stderr_fd; /* -1: /dev/null */
	const int *keep_fds; /* inherited at the same numbers */
	size_t n_keep;
	bool die_with_parent;
	/* No transparent huge pages in the child's mappings (inherited
	 * across exec): a VMM that madvises its translation cache or heap
	 * huge would hold 2 MiB for every page it touches. */
	bool no_thp;
	/* KSM may merge the child's private anonymous memory
	 * (PR_SET_MEMORY_MERGE: Linux 6.4+, kept across exec from 6.7): an
	 * opt-in, it costs ksmd's CPU and lets one VM time another's page
	 * contents. */
	bool merge_memory;
};
/* Fork+exec; an exec failure is reported here, not by the child's exit.
 * Returns 0 with *pid and a pidfd in *pidfd. */
int husk_spawn(const struct husk_spawn *s, pid_t *pid, int *pidfd, struct husk_err *err);
/* Waits up to timeout_ms for the pidfd to turn readable, then reaps.
 * Returns 0 with *status, -ETIMEDOUT when still running; -ECHILD when it
 * has exited but is not our child (its parent reaps it; *status unknown). */
int husk_reap(pid_t pid, int pidfd, unsigned timeout_ms, int *status);
/* A signal through the pidfd: never a process that reused the pid. */
int husk_pidfd_signal(int pidfd, int sig);
/* Kills and reaps a child, SIGTERM first when `term_ms` is given; clears
 * *pid and closes *pidfd. Another's child (a pooled VM's) is waited for
 * through its pidfd, and reaped by its parent. */
void husk_end_child(pid_t *pid, int *pidfd, unsigned term_ms, int *status);

/* ---- detect.c ---- */
/* The host TSC rate in kHz (for tsc_early_khz= under TCG), 0 if unknown. */
unsigned long husk_tsc_khz(void);
/* Whether the running kernel is at least major.minor (uname). */
bool husk_kernel_at_least(unsigned major, unsigned minor);
/* Reserves a free vhost-vsock CID on an open /dev/vhost-vsock fd. */
int husk_vhost_vsock_alloc_cid(int fd, uint32_t *cid, struct husk_err *err);

/* ---- vsock.c ---- */
int husk_hybrid_connect(const char *uds, uint32_t port, unsigned timeout_ms,
			struct husk_err *err);

/* The guest kernel command line (cmdline.c): the words of `kernel`, the
 * words of `extra` for the kernel, "--", the words of `init` (husk.* keys),
 * then the husk.* words of `extra` and any words after a "--" in it, all
 * for init. Words are split, and kept quoted, as the kernel splits them.
 * Errors name cmdline_extra: -EINVAL for an unbalanced quote or a second
 * "--" in it, -E2BIG when the line would not fit `size` bytes or init
 * could get more arguments or environment words than the kernel takes. */
#define HUSK_CMDLINE_MAX 2048 /* x86's COMMAND_LINE_SIZE, NUL included */
int husk_cmdline_build(char *buf, size_t size, const char *kernel, const char *init,
		       const char *extra, struct husk_err *err);
/* Last `max` bytes of a file, NUL-terminated, into buf. */
void husk_file_tail(const char *path, char *buf, size_t max);

#pragma GCC visibility pop

#endif
