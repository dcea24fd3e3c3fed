/* Private to libhusk: the VM object and helpers shared by its files. */
#ifndef HUSK_INTERNAL_H
#define HUSK_INTERNAL_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "husk.h"

#define HUSK_NAME_MAX 32
/* Under vhost-vsock, VM with CID c streams its log to host port BASE + c. */
#define HUSK_LOG_PORT_VHOST_BASE 0x10000000u

struct husk_vm {
	char name[HUSK_NAME_MAX + 1];
	char dir[PATH_MAX];     /* <state_dir>/<name> */
	char hybrid[PATH_MAX];  /* husk-vsockd's hybrid socket (HYBRID) */
	char console[PATH_MAX]; /* guest serial console log */
	enum husk_accel accel;
	enum husk_transport transport;
	uint32_t cid;
	bool owner; /* started here: may stop it, removes the directory */
	bool stopped;
	int lock_fd; /* flock(LOCK_EX) on <dir>/lock while the owner lives */
	int qmp_fd;  /* our end of QEMU's QMP socketpair (owner only) */
	int log_listen_fd, log_fd; /* the agent's log stream */
	uint32_t log_port;         /* its host port (husk.log_port) */
	pid_t qemu_pid, vsockd_pid;
	int qemu_pidfd, vsockd_pidfd;
	bool qemu_reaped;
	int qemu_status;
	uint64_t boot_ns;
	/* hotplug.c: one PCIe root port each ("hp<i>"). */
	struct husk_slot {
		enum { SLOT_FREE, SLOT_USED, SLOT_UNPLUGGING, SLOT_GONE } state;
		char serial[21];
	} slots[HUSK_HOTPLUG_MAX];
	unsigned n_slots;
};

/* ---- spawn.c: child processes ---- */
struct husk_spawn {
	const char *const *argv;
	int stdin_fd, stdout_fd, stderr_fd; /* -1: /dev/null */
	const int *keep_fds; /* inherited at the same numbers */
	size_t n_keep;
	bool die_with_parent;
};
/* Fork+exec; an exec failure is reported here, not by the child's exit.
 * Returns 0 with *pid and a pidfd in *pidfd. */
int husk_spawn(const struct husk_spawn *s, pid_t *pid, int *pidfd, struct husk_err *err);
/* Waits up to timeout_ms for the pidfd to turn readable, then reaps.
 * Returns 0 with *status, -ETIMEDOUT when still running. */
int husk_reap(pid_t pid, int pidfd, unsigned timeout_ms, int *status);

/* ---- qmp.c ---- */
/* Negotiates capabilities (once) and runs `command` (no arguments),
 * waiting up to timeout_ms for its reply. */
int husk_qmp_execute(int fd, const char *command, unsigned timeout_ms, struct husk_err *err);
struct json_object;
/* An asynchronous QMP event seen while waiting for a reply; data may be NULL. */
typedef void (*husk_qmp_event_fn)(const char *event, struct json_object *data, void *ud);
/* The same with arguments (borrowed, may be NULL); events go to on_event. */
int husk_qmp_call(int fd, const char *command, struct json_object *args, unsigned timeout_ms,
		  husk_qmp_event_fn on_event, void *ud, struct husk_err *err);
/* Reads events until until(ud) holds (0) or timeout_ms passes (-ETIMEDOUT). */
int husk_qmp_wait_event(int fd, unsigned timeout_ms, husk_qmp_event_fn on_event, void *ud,
			bool (*until)(void *ud), struct husk_err *err);

/* ---- detect.c ---- */
/* The host TSC rate in kHz (for tsc_early_khz= under TCG), 0 if unknown. */
unsigned long husk_tsc_khz(void);
/* Reserves a free vhost-vsock CID on an open /dev/vhost-vsock fd. */
int husk_vhost_vsock_alloc_cid(int fd, uint32_t *cid, struct husk_err *err);

/* ---- vsock.c ---- */
int husk_hybrid_connect(const char *uds, uint32_t port, unsigned timeout_ms,
			struct husk_err *err);

/* ---- util ---- */
uint64_t husk_now_ns(void);

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

#endif
