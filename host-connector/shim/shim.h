/* containerd-shim-husk-v2: containerd's runtime v2 shim for husk. One shim
 * process per container: it boots the container's microVM with libhusk and
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

#include "husk.h"
#include "ttrpc/client.h"
#include "ttrpc/loop.h"
#include "ttrpc/server.h"

#define SHIM_TASK_SERVICE "containerd.task.v2.Task"
/* Exit status of processes whose VM went away under them (QEMU killed,
 * guest panic, agent connection lost): non-zero and unlike a signal. */
#define SHIM_VM_LOST_STATUS 255

struct shim_opts {
	const char *namespace_;
	const char *address;	    /* containerd's gRPC socket */
	const char *ttrpc_address; /* $TTRPC_ADDRESS: containerd's event sink */
	const char *id;
	const char *bundle;
	const char *socket; /* our own socket path (no unix://) */
	bool debug;
};

struct relay;
struct proc;

struct shim {
	struct shim_opts opt;
	struct ev_loop *loop;
	struct ttrpc_server *server;
	struct ttrpc_client *events; /* to containerd, connected lazily */
	bool events_broken;

	/* The container (one per shim). */
	char *id, *bundle;
	struct husk_vm *vm;
	struct ttrpc_client *agent;
	struct ev_io *vm_io; /* QEMU's pidfd */
	bool vm_lost;	     /* QEMU exited or the agent connection failed */
	char *rootfs_mount;  /* bundle/rootfs while mounted by us */
	struct proc *procs;  /* init first; never freed before exit */
	bool shutting_down;
	struct ev_deferred stop, teardown;
};

struct waiter {
	struct ttrpc_call *call;
	struct proc *p;
	struct waiter *next;
};

struct proc {
	struct shim *s;
	char *exec_id; /* "" for the container's init process */
	char *stdin_path, *stdout_path, *stderr_path;
	bool terminal;
	struct husk_stdio ports;
	uint32_t pid; /* in the guest */
	struct relay *in, *out, *err;
	unsigned outputs_open; /* output relays still copying */
	bool started, wait_done, exited, deleted;
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

#endif
