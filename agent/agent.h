/* husk-agent internals: the container table, processes and their stdio,
 * shared by the Task and Sandbox services. Single-threaded: everything runs
 * on the agent's ev_loop. */
#ifndef HUSK_AGENT_H
#define HUSK_AGENT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "husk/error.h"
#include "jail/container.h"
#include "jail/spec.h"
#include "ttrpc/loop.h"
#include "ttrpc/server.h"

#define HUSK_AGENT_VERSION "0.1.0"

struct agent;
struct container;
struct process;
struct portfwd_conn;
struct init_reaper;

/* ---- stdio streams (stdio.c) ---- */

struct ev_relay;

/* One of a process's stdio streams: a port the agent listens on until the
 * host connects, then a relay (ttrpc/relay.h) between that connection and
 * the local fd (a pipe end, or the pty master). */
struct stdio_stream {
	struct process *proc;
	bool to_host;	  /* out/err: local -> host; in: host -> local */
	unsigned port;
	int listen_fd;	  /* until the host connects; -1 after */
	struct ev_io *listen_io;
	int conn;	  /* the host's connection until the relay has it; else -1 */
	int local;	  /* the pipe end or pty master until the relay has it; else -1 */
	bool local_owned; /* a pipe end is ours; the pty master is the process's */
	struct ev_relay *relay;
	bool done; /* finished: all delivered (or abandoned) */
};

struct proc_io {
	struct stdio_stream in, out, err;
	int container_fds[3]; /* handed to the process, closed once it runs */
	int pty_master;	      /* -1 without a terminal */
};

/* Parses "vsock://PORT" (or "" for none) and prepares pipes and listeners.
 * For a terminal, the pty arrives later: stdio_attach_pty(). */
int stdio_setup(struct agent *a, struct process *p, const char *in, const char *out,
		const char *err_uri, bool terminal, struct husk_err *err);
void stdio_attach_pty(struct process *p, int master);
/* After the process got its copies of the fds. */
void stdio_close_container_fds(struct process *p);
/* CloseIO: the process's stdin ends once buffered input is delivered. */
void stdio_close_stdin(struct process *p);
/* Delete: stop waiting for the host, drop what is undelivered. */
void stdio_abandon(struct process *p);
bool stdio_drained(const struct process *p);
void stdio_free(struct process *p);

/* ---- processes and containers (process.c) ---- */

enum proc_status { PROC_CREATED, PROC_RUNNING, PROC_STOPPED };

struct waiter {
	struct ttrpc_call *call;
	struct waiter *next;
};

struct process {
	struct container *c;
	char *exec_id; /* NULL for the container's init */
	struct jail_process *exec_spec; /* exec processes only */
	pid_t pid;
	enum proc_status status;
	bool exited;  /* reaped */
	bool reported; /* exited and stdio drained: now visible as stopped */
	uint32_t exit_status;
	struct timespec exited_at;
	bool terminal;
	char *stdin_uri, *stdout_uri, *stderr_uri;
	struct proc_io io;
	struct waiter *waiters;
	struct process *next;
};

struct container {
	struct agent *agent;
	char *id;
	char *bundle;
	char *state_dir;
	struct jail_spec *spec;
	struct jail_container *jc;
	struct process init;
	struct process *execs;
	bool paused;
	uint64_t oom_kills;
	int events_fd; /* cgroup inotify (OOM, populated); -1 without cgroups */
	struct ev_io *events_io;
	struct container *next;
};

/* ---- events (events.c) ---- */

enum agent_event_type { AGENT_EVENT_EXIT = 0, AGENT_EVENT_OOM = 1 };

struct agent_event {
	uint64_t seq;
	enum agent_event_type type;
	char *container_id, *exec_id;
	uint32_t pid, exit_status;
	struct timespec at;
	struct agent_event *next;
};

void events_push(struct agent *a, enum agent_event_type type, const struct container *c,
		 const struct process *p);
void events_free(struct agent *a);

/* ---- the agent ---- */

struct agent_options {
	const char *listen_unix; /* --listen unix:PATH, or NULL for vsock */
	unsigned vsock_port;
	unsigned log_port; /* host port of the log stream (husk.log_port) */
	const char *cgroup_mount; /* NULL: no cgroups */
	const char *run_dir;	  /* state and bundles, "/run/husk" */
	bool pid1;
	bool debug_console; /* husk.debug_console=1: a shell on port 1026 */
};

struct agent {
	struct agent_options opt;
	struct ev_loop *loop;
	struct ttrpc_server *server;
	struct init_reaper *reaper;
	struct container *containers;
	uint64_t started_ns;
	/* events for GetEvents: a bounded queue plus deferred long polls */
	struct agent_event *ev_head, *ev_tail;
	size_t ev_count;
	uint64_t ev_seq;
	struct ev_waiter *ev_waiters;
	/* CreateBundle calls waiting for hot-added disks and the uevent socket
	 * they share (sandbox.c); NULL while none waits */
	struct disk_waits *disk_waits;
	bool shutting_down;
	bool poweroff_requested;
	/* The VM's own "lo" is up (PID 1 brings it up for the first container
	 * that shares the VM's network namespace, not at boot). */
	bool vm_lo_up;
	/* The set-up containers need is done (setup.c); until then only
	 * Check is served without it. */
	bool setup_done;
	struct ev_deferred setup_defer;
	char hostname[65]; /* husk.hostname=, "" when not given */
	/* PID 1's arguments, and whether the husk.* keys came in them */
	int argc;
	char **argv;
	bool keys_from_args;
	/* the log stream to the host (log_stream.c); -1 when none */
	int log_fd;
	struct ev_io *log_io;
	uint64_t log_dropped;
	/* connections refused for not coming from the host (main.c): all of
	 * them counted, a few per window logged */
	uint64_t refused_total, refused_unlogged;
	uint64_t refused_window_ns;
	unsigned refused_logged;
	/* portfwd.c: the port-forward listener (-1 when none) and the
	 * forwards it serves */
	int portfwd_fd;
	struct ev_io *portfwd_io;
	struct portfwd_conn *portfwd_conns;
};

/* setup.c: PID 1's set-up of the VM in two parts. setup_early: what
 * serving needs (the husk.* keys from init's arguments, else from
 * /proc/cmdline; modules), before listening. setup_finish: the rest (the
 * mounts, cgroup controllers, run directory, hostname, entropy), once;
 * setup_finish_soon queues it for after the current loop iteration. setup_before_call is the ttrpc server's
 * before_call hook: it finishes the set-up before any call but Check, and
 * queues it after a Check. A failure powers the VM off, as at boot. */
void setup_early(struct agent *a, int argc, char **argv);
void setup_finish(struct agent *a);
void setup_finish_soon(struct agent *a);
void setup_before_call(const char *service, const char *method, void *data);

/* log_stream.c: the agent's log lines to the host. log_stream_start
 * connects to host `port` in the background (PID 1 only); log_stream_stop
 * closes it and sends the lines to the console again. */
void log_stream_start(struct agent *a, unsigned port);
void log_stream_stop(struct agent *a);

/* sharedfs.c: the host's shared directory (virtio-fs, CreateBundle's
 * shared_fs). */
/* -EINVAL naming shared_fs for a tag virtio-fs cannot have. */
int sharedfs_check_tag(const char *tag, struct husk_err *err);
/* <run_dir>/fs/<tag>: where the share is mounted. */
int sharedfs_path(const char *run_dir, const char *tag, char *path, size_t size);
/* Mounts the share (once: 0 when it is already); -ENOENT while no
 * virtio-fs device has the tag (a hot-add still on its way). */
int sharedfs_mount(const char *run_dir, const char *tag, struct husk_err *err);
/* The guest path of `rel` (relative, no ".." or empty components) in the
 * share; -EINVAL naming the source otherwise. */
int sharedfs_source(const char *run_dir, const char *tag, const char *rel, char *out, size_t size,
		    struct husk_err *err);

/* disk.c: virtio-blk disks by serial. */
/* How long CreateBundle waits for a hot-added disk. */
#define DISK_HOTPLUG_WAIT_MS 10000u
/* /dev/<name> of the disk whose serial is `serial`, without waiting;
 * -ENOENT (disk_missing's message) when there is none yet. */
int disk_find(const char *serial, char *dev, size_t size, struct husk_err *err);
/* Sets the -ENOENT error for a missing disk; `waited`: after waiting for a
 * hot-added one. */
int disk_missing(const char *serial, bool waited, struct husk_err *err);
/* Powers off the PCIe hotplug slot of the disk with `serial` (the guest's
 * pciehp removes the device first; QEMU then unplugs it at once). -ENOENT
 * for no such disk, -EBUSY when a file system on it is mounted, -ENODEV
 * when it is not on a hotplug slot (a boot-time virtio-mmio disk). */
int disk_release(const char *serial, struct husk_err *err);
/* Whether this VM has PCI hotplug slots: only then can a disk still come. */
bool disk_hotplug_possible(void);
/* A nonblocking NETLINK_KOBJECT_UEVENT socket, readable when the kernel
 * adds (or changes) a device; disk_uevent_drain() empties it. */
int disk_uevent_open(struct husk_err *err);
void disk_uevent_drain(int fd);

/* net.c: Sandbox.SetupNetwork, the pod's network in the VM's own network
 * namespace over rtnetlink (docs/protocol.md). */
/* How long it waits for a NIC the host hot-adds. */
#define NET_HOTPLUG_WAIT_MS 10000u
#define NET_MAX_IFS 8
#define NET_MAX_ADDRS 16 /* per interface */
#define NET_MAX_ROUTES 64
void net_on_setup_network(struct ttrpc_call *call, const ProtobufCMessage *req, void *data);

struct container *agent_find(struct agent *a, const char *id);
struct process *container_find_process(struct container *c, const char *exec_id);
/* Called by the reaper. */
void process_on_exit(struct process *p, int status);
/* Called when a process has exited and its stdio is drained. */
void process_maybe_report(struct process *p);
void container_free(struct container *c);
/* Frees an exec process (already unlinked from its container). */
void process_destroy(struct process *p);

/* Listens for the host on `port`: AF_VSOCK in the guest, or the unix
 * socket "<listen path>_<port>" with --listen unix:. */
int agent_listen_port(struct agent *a, unsigned port, struct husk_err *err);

/* Only the host may reach the agent's ports (the ttrpc port, stdio ports,
 * the debug console): whether connection `fd`, accepted on `port`, may be
 * served. On vsock only peer CID 2 (VMADDR_CID_HOST) may; a container
 * reaching the port through the guest's vsock loopback (CID 1) or at the
 * guest's own CID may not. Unix sockets (--listen unix:, tests on a host)
 * pass: they keep whatever peer check they had. Refusals are logged at a
 * bounded rate. */
bool agent_peer_is_host(struct agent *a, int fd, unsigned port);
/* accept4(listen_fd, flags) until a connection from the host: the others
 * are closed, so they never take the port's place. The new fd, or a
 * negative errno (-EAGAIN: none waiting). */
int agent_accept(struct agent *a, int listen_fd, unsigned port, int flags);

int task_service_register(struct agent *a, struct husk_err *err);
/* Starts listening for debug console connections (console.c). */
int console_start(struct agent *a, struct husk_err *err);
/* portfwd.c: vsock port 1027, the host's port forwards into the pod's
 * loopback (docs/protocol.md). */
int portfwd_start(struct agent *a, struct husk_err *err);
/* Stops listening (--listen unix: its socket file removed) and drops
 * every forward. */
void portfwd_stop(struct agent *a);
int sandbox_service_register(struct agent *a, struct husk_err *err);
void sandbox_events_wake(struct agent *a);
/* Unmounts and removes container `id`'s guest bundle (its Delete). */
void sandbox_remove_bundle(struct agent *a, const char *id);

/* Validates a container or exec id: 1..128 of [A-Za-z0-9_.-], not . or .. */
int agent_check_id(const char *what, const char *id, struct husk_err *err);

#endif
