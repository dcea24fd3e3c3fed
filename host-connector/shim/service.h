/* What the Task handlers share (service.c, create.c, delete.c,
 * forward.c): looking a process up and checking a call against its state,
 * forwarding to the agent, exits and deletion. */
#ifndef HUSK_SHIM_SERVICE_H
#define HUSK_SHIM_SERVICE_H

#include <protobuf-c/protobuf-c.h>

#include "github.com/containerd/containerd/runtime/v2/task/shim.pb-c.h"
#include "google/protobuf/empty.pb-c.h"
#include "shim.h"

/* The generated structs name fields stdin/stdout/stderr. */
#undef stdin
#undef stdout
#undef stderr

#define Task(x) Containerd__Task__V2__##x
#define Ev(x) Containerd__Events__##x
#define AGENT_TIMEOUT_NS (30ull * 1000000000ull)
#define KILLED_STATUS (128 + 9)

extern const Google__Protobuf__Empty shim_empty;

void shim_fill_ts(Google__Protobuf__Timestamp *ts, const struct timespec *t);
/* "vsock://PORT", or "" for port 0. */
char *shim_vsock_uri(char *buf, size_t len, uint32_t port);
/* The process a request names, or NULL with the call answered NOT_FOUND. */
struct proc *shim_lookup(struct shim *s, struct ttrpc_call *call, const char *id,
			 const char *exec_id);
/* The state machine's verdict on `op`; REFUSE answers the call. */
enum proc_verdict shim_check(struct ttrpc_call *call, struct proc *p, enum proc_op op);

/* forward.c: calls to the agent. */
struct fwd;
/* Sees every reply of the agent, OK or not; must end f->call when set. */
typedef void (*fwd_hook)(struct fwd *f, struct ttrpc_reply *reply);
struct fwd {
	struct shim *s;
	struct ttrpc_call *call; /* NULL once containerd gave up on it */
	struct proc *p;		 /* a reference, or NULL */
	fwd_hook hook;
	void *ctx; /* the hook's */
};
/* Sends `req` to the agent; its reply goes back to `call` (may be NULL:
 * nobody waits), through `hook` when given. Returns false, with the call
 * answered, when it could not be sent. */
bool forward(struct shim *s, struct ttrpc_call *call, const char *method,
	     const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
	     fwd_hook hook, struct proc *p);
bool forward_ctx(struct shim *s, struct ttrpc_call *call, const char *method,
		 const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
		 fwd_hook hook, struct proc *p, void *ctx);
/* An error from the agent, or from its connection going with the VM. */
void fail_from_agent(struct ttrpc_call *call, const char *method, const struct ttrpc_reply *reply);
/* Best effort, nobody waiting: the agent forgets a process we gave up. */
void agent_forget(struct shim *s, struct proc *p);
/* The agent's Wait, from the moment the process exists in the guest. */
void agent_wait(struct proc *p);
/* A Kill that waited for the Create: sent now, or answered if it never
 * will be. */
void settle_kill(struct proc *p);

/* delete.c */
void shim_reply_delete(struct ttrpc_call *call, const struct proc *p);
/* Gives up a process that is not STOPPED: exits for containerd first. */
void shim_force_exit(struct proc *p, uint32_t status);
void shim_on_delete(struct ttrpc_call *call, const ProtobufCMessage *req, void *data);
/* create.c */
void shim_on_create(struct ttrpc_call *call, const ProtobufCMessage *req, void *data);

#endif
