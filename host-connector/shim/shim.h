/* containerd-shim-husk-v2: containerd's runtime v2 shim for husk. One shim
 * process per VM: per container for plain containerd, per pod when the CRI
 * annotations say so (the pod's later containers join the sandbox's VM,
 * their rootfs disks hot-added; pod.c). It boots the VM with libhusk and
 * forwards containerd's Task API to the guest agent, which speaks the same
 * API. What the shim keeps itself: the stdio bridges between containerd's
 * FIFOs and the guest's vsock stdio ports, the exit status of every process
 * (Wait is answered here, after the output has been copied), the events
 * published to containerd, and the VM's life. See docs/containerd.md. */
#ifndef HUSK_SHIM_H
#define HUSK_SHIM_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "google/protobuf/any.pb-c.h"
#include "husk.h"
#include "ttrpc/client.h"
#include "ttrpc/loop.h"
#include "ttrpc/server.h"

#define SHIM_TASK_SERVICE "containerd.task.v2.Task"
/* Exit status of processes whose VM went away under them (QEMU killed,
 * guest panic, agent connection lost): non-zero and unlike a signal. */
#define SHIM_VM_LOST_STATUS 255
/* <bundle>/husk-vm: the VM's state directory, for `delete`. */
#define SHIM_VM_RECORD "husk-vm"

struct shim_opts {
	const char *namespace_;
	const char *address;	    /* containerd's gRPC socket */
	const char *ttrpc_address; /* $TTRPC_ADDRESS: containerd's event sink */
	const char *id;
	const char *group; /* the pod's sandbox id: whose shim serves us (NULL: id) */
	const char *bundle;
	const char *socket; /* our own socket path (no unix://) */
	bool debug;
	/* The runtime options containerd wrote to `start`'s stdin (NULL:
	 * none); CreateTaskRequest.options, when set, wins. */
	Google__Protobuf__Any *start_options;
};

/* config.c: the VM settings (docs/config-file.md). 0 / NULL: libhusk's
 * default. */
struct shim_config {
	char *kernel, *initrd, *qemu, *vsockd, *cmdline_extra, *state_dir, *image_cache;
	unsigned vcpus, memory_mib, log_level, boot_timeout_ms;
	enum husk_accel accel;
	enum husk_transport transport;
	bool debug_console;
	char sources[1024]; /* the files read, for the log: "" when none */
	char warning[256];  /* something ignored, for the log: "" when none */
};

/* Loads the config file ($HUSK_CONFIG or /etc/husk/config.json), then the
 * file or JSON body named by `options` (runtimeoptions.v1.Options; NULL:
 * none) over it. An unknown key or a wrong type is an error naming the
 * file and the key. */
int shim_config_load(struct shim_config *c, const Google__Protobuf__Any *options,
		     struct husk_err *err);
void shim_config_free(struct shim_config *c);
/* The config's state_dir, else libhusk's default. */
const char *shim_config_state_dir(const struct shim_config *c, char *buf, size_t len);

struct relay;
struct proc;
struct logger;

/* pod.c: what the CRI annotations make of a container. */
enum shim_pod_role {
	SHIM_POD_NONE,	    /* plain containerd: a VM of its own */
	SHIM_POD_SANDBOX,   /* a pod's sandbox: its VM takes later containers */
	SHIM_POD_CONTAINER, /* joins the VM of the pod's sandbox */
};
/* Reads the role from a config.json text; *sandbox_id gets the pod's
 * sandbox id for SANDBOX and CONTAINER. */
int shim_pod_role(const char *spec_json, enum shim_pod_role *role, char *sandbox_id, size_t len,
		  struct husk_err *err);
/* The same from a config.json file (the bundle's, at `start`). */
int shim_pod_role_file(const char *path, enum shim_pod_role *role, char *sandbox_id, size_t len,
		       struct husk_err *err);
/* The spec to run in the guest: namespace paths name host paths, which
 * mean nothing there. A joining container's network, ipc, uts and pid
 * namespaces with a path become the sandbox's (/proc/<sandbox_pid>/ns/..,
 * a guest pid); any other path is dropped (a namespace of its own). */
char *shim_pod_rewrite_spec(const char *spec_json, enum shim_pod_role role, uint32_t sandbox_pid,
			    struct husk_err *err);
/* Hot-plug slots of a pod sandbox's VM: the containers that can join it
 * at once. */
#define SHIM_POD_SLOTS 8

/* One container. The first one booted the VM (for a pod: the sandbox);
 * it going takes the VM with it. */
struct ctr {
	struct shim *s;
	char *id, *bundle;
	enum shim_pod_role role;
	char serial[24];	  /* its rootfs disk in the guest */
	bool hotplugged;	  /* added to a running VM: removed on delete */
	int image_hold;		  /* husk_image hold on its rootfs image, or -1 */
	char *rootfs_mount;	  /* bundle/rootfs while mounted by us */
	struct proc *procs;	  /* init first; freed at exit */
	uint64_t oom_kills_seen; /* memory.events oom_kill already published */
	bool deleted;
	struct ctr *next;
};

struct shim {
	struct shim_opts opt;
	struct ev_loop *loop;
	struct ttrpc_server *server;
	struct ttrpc_client *events; /* to containerd, connected lazily */
	bool events_broken;
	bool shutting_down;
	struct ev_deferred stop, teardown;

	/* The VM and what comes from it besides replies. */
	struct shim_config cfg;
	struct husk_vm *vm;
	struct ttrpc_client *agent;
	struct ev_io *vm_io; /* QEMU's pidfd */
	bool vm_lost;	     /* QEMU exited or the agent connection failed */
	struct ev_io *log_io; /* the agent's log stream (guest.c) */
	size_t log_len;
	char log_buf[4096];
	uint64_t event_seq; /* the last Sandbox.GetEvents event seen */
	bool events_polling;

	/* The containers: the VM's owner first. */
	struct ctr *ctrs;
	unsigned disks_added; /* names the next hot-added disk */
};

struct waiter {
	struct ttrpc_call *call;
	struct proc *p;
	struct waiter *next;
};

struct proc {
	struct shim *s;
	struct ctr *c;
	char *exec_id; /* "" for the container's init process */
	char *stdin_path, *stdout_path, *stderr_path;
	bool terminal;
	struct husk_stdio ports;
	uint32_t pid; /* in the guest */
	struct relay *in, *out, *err;
	unsigned outputs_open; /* output relays still copying */
	struct logger *logger;	/* binary:// stdout */
	struct ttrpc_call *start_call;	/* Start waiting for the logger */
	struct ttrpc_call *delete_call;	/* Delete waiting for the logger to exit */
	bool started, wait_done, exited, deleted;
	bool oom_check; /* killed: exit held until the OOM check answered */
	uint32_t status;
	struct timespec exited_at;
	struct waiter *waiters;
	struct proc *next;
};

/* service.c */
int shim_service_register(struct shim *s, struct husk_err *err);
/* The VM went away: every live process exits with SHIM_VM_LOST_STATUS. */
void shim_vm_lost(struct shim *s, const char *why);
/* Stops the VM if it runs and forgets it. */
void shim_vm_teardown(struct shim *s);
/* At exit, after the server is gone: every container, process, logger and
 * waiter. */
void shim_procs_free(struct shim *s);
/* The live container `id`, or NULL. */
struct ctr *shim_ctr_find(struct shim *s, const char *id);

/* Publishes /tasks/exit once the process is gone for containerd. */
void proc_maybe_exited(struct proc *p);

/* guest.c: the agent's log stream into the shim log, and the agent's
 * events (Sandbox.GetEvents): OOM kills become /tasks/oom. */
int guest_log_start(struct shim *s, struct husk_err *err);
void guest_log_stop(struct shim *s);
void guest_events_start(struct shim *s);
/* Asks the agent for the container's OOM kill count and publishes
 * /tasks/oom when it grew; `p` (may be NULL) has its exit held until then. */
void guest_oom_check(struct ctr *c, struct proc *p);

/* logio.c: containerd's stdio URIs and binary:// loggers. */
enum stdio_kind { STDIO_FIFO, STDIO_FILE, STDIO_BINARY };
struct stdio_uri {
	enum stdio_kind kind;
	char *path;	/* decoded */
	char **args;	/* binary: "key", "value", ... from the query */
	size_t n_args;
};
int stdio_uri_parse(const char *uri, struct stdio_uri *u, struct husk_err *err);
void stdio_uri_free(struct stdio_uri *u);
/* file://: creates the directories and opens for appending. */
int stdio_open_file(const char *path, struct husk_err *err);
int logger_start(struct ev_loop *loop, const struct stdio_uri *u, const char *ns, const char *id,
		 const char *cwd, struct logger **out, struct husk_err *err);
/* The write end of the logger's stdout (which 1) or stderr (2) pipe, once. */
int logger_take_fd(struct logger *l, int which);
/* Ready: it closed (or wrote to) fd 5, or exited. */
bool logger_ready(const struct logger *l);
void logger_when_ready(struct logger *l, void (*fn)(void *data), void *data);
/* Closes our pipe ends, SIGTERM, SIGKILL 12 s later. False when it has
 * exited already; else `done` runs once it has. */
bool logger_stop(struct logger *l, void (*done)(void *data), void *data);
/* SIGKILL if still running, reap, free. NULL is ignored. */
void logger_free(struct logger *l);

/* relay.c: copies one byte stream from src to dst (both owned). */
typedef void (*relay_done_fn)(void *data, int tag);
int relay_new(struct ev_loop *loop, int src, int dst, bool dst_is_socket,
	      relay_done_fn done, void *data, int tag, struct relay **out, struct husk_err *err);
/* Input side ends after what is readable now has been copied (CloseIO). */
void relay_close_input(struct relay *r);
/* Drops the source: copies what is buffered, then ends (VM lost). */
void relay_abort_source(struct relay *r);
/* Closes both fds at once; no callback. NULL is ignored. relay_close_input
 * and relay_abort_source may end (free) the relay and call `done`. */
void relay_free(struct relay *r);

/* publish.c: events to containerd's Events/Forward (best effort, logged). */
void shim_publish(struct shim *s, const char *topic, const ProtobufCMessage *event);

/* main.c */
/* The VM's name for container `id` of namespace `ns`: short and stable, so
 * that `delete` finds what a dead shim left (unix socket paths in the VM's
 * state directory are limited to 107 bytes). */
void shim_vm_name(const char *ns, const char *id, char *out, size_t len);
__attribute__((format(printf, 1, 2))) void shim_log(const char *fmt, ...);
/* One logrus-style line at `level` ("debug", "info", "warning", "error"),
 * with `source=SOURCE` when source is not NULL. */
__attribute__((format(printf, 3, 4))) void shim_log_at(const char *level, const char *source,
						      const char *fmt, ...);

#endif
