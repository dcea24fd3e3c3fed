/* The containerd.task.v2.Task service on the shim socket. Each handler
 * looks the process up, checks the call against its state (process.h),
 * forwards to the guest agent (which speaks the same API) asynchronously
 * on the loop, and publishes what containerd must hear. Create's slow part
 * (the rootfs image, the VM's boot or a disk's hot-add) runs on the worker
 * (vm.c), so no call waits behind another container's. */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "github.com/containerd/containerd/api/events/task.pb-c.h"
#include "github.com/containerd/containerd/runtime/v2/task/shim.pb-c.h"
#include "google/protobuf/empty.pb-c.h"
#include "husk/cleanup.h"
#include "husk/path.h"
#include "io.h"
#include "proc_io.h"
#include "vm.h"

/* The generated structs name fields stdin/stdout/stderr. */
#undef stdin
#undef stdout
#undef stderr

#define Task(x) Containerd__Task__V2__##x
#define Ev(x) Containerd__Events__##x
#define AGENT_TIMEOUT_NS (30ull * 1000000000ull)
#define KILLED_STATUS (128 + 9)

static const Google__Protobuf__Empty empty = GOOGLE__PROTOBUF__EMPTY__INIT;

void shim_publish(struct shim *s, const char *topic, const ProtobufCMessage *event)
{
	publisher_send(s->pub, topic, event);
}

uint32_t shim_reported_pid(const struct proc *p)
{
	return p->state == PROC_CREATING ? 0 : (uint32_t)p->s->vm.vmm_pid;
}

static void fill_ts(Google__Protobuf__Timestamp *ts, const struct timespec *t)
{
	ts->seconds = t->tv_sec;
	ts->nanos = (int32_t)t->tv_nsec;
}

static char *vsock_uri(char *buf, size_t len, uint32_t port)
{
	if (!port)
		return (char *)"";
	snprintf(buf, len, "vsock://%u", port);
	return buf;
}

/* The process a request names, or the call answered NOT_FOUND. */
static struct proc *lookup(struct shim *s, struct ttrpc_call *call, const char *id,
			   const char *exec_id)
{
	struct ctr *c = ctr_find(s, id);
	if (!c) {
		ttrpc_call_fail(call, TTRPC_NOT_FOUND, "container %s: not found", id);
		return NULL;
	}
	struct proc *p = proc_find(c, exec_id);
	if (!p)
		ttrpc_call_fail(call, TTRPC_NOT_FOUND, "process %s in container %s: not found",
				exec_id && *exec_id ? exec_id : "init", id);
	return p;
}

/* The state machine's verdict on `op`; REFUSE answers the call. */
static enum proc_verdict check(struct ttrpc_call *call, struct proc *p, enum proc_op op)
{
	int code;
	char why[128];
	enum proc_verdict v = proc_check(p->state, op, &code, why, sizeof(why));
	if (v == PROC_REFUSE)
		ttrpc_call_fail(call, code, "process %s: %s", proc_task_id(p), why);
	return v;
}

/* ---- forwarding ---- */

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

static void fwd_cancel(struct ttrpc_call *call, void *data)
{
	(void)call;
	struct fwd *f = data;
	f->call = NULL;
}

/* An error from the agent, or from its connection going with the VM. */
static void fail_from_agent(struct ttrpc_call *call, const char *method,
			    const struct ttrpc_reply *reply)
{
	if (!call)
		return;
	int code = reply->status.code;
	if (code == TTRPC_CANCELLED || code == TTRPC_UNAVAILABLE)
		ttrpc_call_fail(call, TTRPC_UNAVAILABLE, "%s: the container's VM is gone (%s)", method,
				reply->status.message);
	else
		ttrpc_call_fail(call, code, "%s", reply->status.message);
}

static void fwd_reply(struct ttrpc_reply *reply, void *data)
{
	struct fwd *f = data;
	if (f->hook)
		f->hook(f, reply);
	else if (reply->status.code != TTRPC_OK)
		fail_from_agent(f->call, "agent", reply);
	else if (f->call)
		ttrpc_call_reply(f->call, reply->msg);
	proc_unref(f->p);
	free(f);
}

/* Sends `req` to the agent; its reply goes back to `call` (may be NULL:
 * nobody waits), through `hook` when given. Returns false, with the call
 * answered, when it could not be sent. */
static bool forward_ctx(struct shim *s, struct ttrpc_call *call, const char *method,
			const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
			fwd_hook hook, struct proc *p, void *ctx)
{
	if (!shim_vm_up(s)) {
		if (call)
			ttrpc_call_fail(call, TTRPC_UNAVAILABLE, "%s: the container's VM is gone",
					method);
		return false;
	}
	struct fwd *f = calloc(1, sizeof(*f));
	if (!f) {
		if (call)
			ttrpc_call_fail(call, TTRPC_RESOURCE_EXHAUSTED, "out of memory");
		return false;
	}
	*f = (struct fwd){ .s = s, .call = call, .p = p ? proc_ref(p) : NULL, .hook = hook,
			   .ctx = ctx };
	const struct ttrpc_call_opts opts = { .timeout_ns = AGENT_TIMEOUT_NS };
	int r = ttrpc_client_start(s->vm.agent, SHIM_TASK_SERVICE, method, req, NULL, 0, resp_desc,
				   &opts, fwd_reply, f);
	if (r < 0) {
		proc_unref(f->p);
		free(f);
		if (call)
			ttrpc_call_fail(call, TTRPC_UNAVAILABLE, "%s to the agent: %s", method,
					strerror(-r));
		return false;
	}
	if (call)
		ttrpc_call_defer(call, fwd_cancel, f);
	return true;
}

static bool forward(struct shim *s, struct ttrpc_call *call, const char *method,
		    const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
		    fwd_hook hook, struct proc *p)
{
	return forward_ctx(s, call, method, req, resp_desc, hook, p, NULL);
}

/* Best effort, nobody waiting: the agent forgets a process we gave up. */
static void agent_forget(struct shim *s, struct proc *p)
{
	Task(DeleteRequest) req = CONTAINERD__TASK__V2__DELETE_REQUEST__INIT;
	req.id = p->c->id;
	req.exec_id = p->exec_id;
	forward(s, NULL, "Delete", &req.base, &containerd__task__v2__delete_response__descriptor,
		NULL, NULL);
}

/* A Kill that waited for the Create: sent now that the process exists,
 * or answered when it never will. */
static void settle_kill(struct proc *p)
{
	struct ttrpc_call *call = take_ptr(p->kill_call);
	if (!call)
		return;
	if (p->state == PROC_DELETED) {
		ttrpc_call_fail(call, TTRPC_NOT_FOUND, "process %s: its create failed",
				proc_task_id(p));
		return;
	}
	Task(KillRequest) req = CONTAINERD__TASK__V2__KILL_REQUEST__INIT;
	req.id = p->c->id;
	req.exec_id = p->exec_id;
	req.signal = p->kill_signal;
	req.all = p->kill_all;
	forward(p->s, call, "Kill", &req.base, &google__protobuf__empty__descriptor, NULL, p);
}

/* ---- exits ---- */

static void on_agent_wait(struct ttrpc_reply *reply, void *data)
{
	struct proc *p = data;
	p->agent_waiting = false;
	if (reply->status.code == TTRPC_OK) {
		const Task(WaitResponse) *w = (const Task(WaitResponse) *)reply->msg;
		struct timespec at = { 0 };
		if (w->exited_at) {
			at.tv_sec = w->exited_at->seconds;
			at.tv_nsec = w->exited_at->nanos;
		}
		/* SIGKILL may be the OOM killer's: /tasks/oom goes first if so. */
		if (w->exit_status == KILLED_STATUS && p->state != PROC_DELETED)
			agent_oom_check(p->c, p);
		proc_exited(p, w->exit_status, &at);
	} else if (reply->status.code == TTRPC_NOT_FOUND) {
		/* Deleted in the guest (with its container) before it exited
		 * there: as runc, killed. */
		proc_exited(p, KILLED_STATUS, NULL);
	} else if (p->s->opt.debug) {
		/* The connection went: vm.c reports the VM lost. */
		shim_log_at("debug", NULL, "wait for %s: %s: %s", proc_task_id(p),
			    ttrpc_code_name(reply->status.code), reply->status.message);
	}
	proc_unref(p);
}

/* The agent's Wait, from the moment the process exists in the guest: a
 * created process killed before Start must be seen exiting too. */
static void agent_wait(struct proc *p)
{
	struct shim *s = p->s;
	if (p->agent_waiting || !shim_vm_up(s))
		return;
	Task(WaitRequest) wr = CONTAINERD__TASK__V2__WAIT_REQUEST__INIT;
	wr.id = p->c->id;
	wr.exec_id = p->exec_id;
	int r = ttrpc_client_start(s->vm.agent, SHIM_TASK_SERVICE, "Wait", &wr.base, NULL, 0,
				   &containerd__task__v2__wait_response__descriptor, NULL,
				   on_agent_wait, proc_ref(p));
	if (r < 0) {
		shim_log("wait for %s: %s", proc_task_id(p), strerror(-r));
		proc_unref(p);
		proc_exited(p, SHIM_VM_LOST_STATUS, NULL);
		return;
	}
	p->agent_waiting = true;
}

/* ---- Delete ---- */

static void reply_delete(struct ttrpc_call *call, const struct proc *p)
{
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	fill_ts(&ts, &p->exited_at);
	Task(DeleteResponse) resp = CONTAINERD__TASK__V2__DELETE_RESPONSE__INIT;
	resp.pid = shim_reported_pid(p);
	resp.exit_status = p->status;
	resp.exited_at = &ts;
	ttrpc_call_reply(call, &resp.base);
}

static void on_logger_gone(void *data)
{
	struct proc *p = data;
	struct ttrpc_call *call = take_ptr(p->delete_call);
	if (call)
		reply_delete(call, p);
	proc_unref(p);
}

static void delete_cancel(struct ttrpc_call *call, void *data)
{
	(void)call;
	struct proc *p = data;
	p->delete_call = NULL;
}

/* Gives up a process that is not STOPPED: exits for containerd first. */
static void force_exit(struct proc *p, uint32_t status)
{
	if (p->state == PROC_CREATING || p->state == PROC_DELETED)
		return;
	proc_exited(p, status, NULL);
	/* No more output is coming; nothing else will end the wait. */
	proc_close_io(p);
	p->oom_check = false;
	proc_maybe_stopped(p);
}

/* The container's init is deleted: its execs go with it (the agent
 * deleted the container, which killed them), then the container leaves
 * the VM; the VM's owner takes the VM with it. */
static void container_gone(struct shim *s, struct ctr *c)
{
	for (struct proc *q = c->procs; q;) {
		struct proc *next = q->next;
		if (q != c->init && q->state != PROC_CREATING) {
			force_exit(q, KILLED_STATUS);
			proc_set_state(q, PROC_DELETED);
		}
		q = next;
	}
	if (c == s->vm.owner) {
		/* A pod's sandbox deleted under its containers: they lose the VM. */
		for (struct ctr *o = s->ctrs; o; o = o->next)
			if (o != c) {
				shim_vm_lost(s, "the pod's sandbox was deleted");
				break;
			}
		shim_vm_teardown(s);
	} else {
		shim_vm_leave(s, c);
	}
}

static void finish_delete(struct ttrpc_call *call, struct proc *p)
{
	struct shim *s = p->s;
	struct ctr *c = p->c;
	bool init = p == c->init;
	if (p->state != PROC_STOPPED) {
		/* Deleted before it ran: as runc, "killed". */
		force_exit(p, KILLED_STATUS);
	}
	proc_ref(p);
	proc_set_state(p, PROC_DELETED);
	if (init) {
		Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
		fill_ts(&ts, &p->exited_at);
		Ev(TaskDelete) ev = CONTAINERD__EVENTS__TASK_DELETE__INIT;
		ev.container_id = c->id;
		ev.id = c->id;
		ev.pid = shim_reported_pid(p);
		ev.exit_status = p->status;
		ev.exited_at = &ts;
		shim_publish(s, "/tasks/delete", &ev.base);
		ctr_ref(c);
		ctr_unlist(c);
		container_gone(s, c);
		ctr_unref(c);
	}
	/* As containerd-shim-runc-v2: the reply waits for the logger. */
	bool waiting = false;
	if (p->logger) {
		proc_ref(p); /* on_logger_gone's */
		waiting = logger_stop(p->logger, on_logger_gone, p);
		if (!waiting)
			proc_unref(p);
	}
	if (waiting && call) {
		p->delete_call = call;
		ttrpc_call_defer(call, delete_cancel, p);
	} else if (call) {
		reply_delete(call, p);
	}
	proc_unref(p);
	shim_maybe_exit(s);
}

static void after_delete(struct fwd *f, struct ttrpc_reply *reply)
{
	struct proc *p = f->p;
	if (reply->status.code == TTRPC_OK) {
		const Task(DeleteResponse) *resp = (const Task(DeleteResponse) *)reply->msg;
		if (p->state != PROC_STOPPED && resp->exited_at) {
			struct timespec at = { resp->exited_at->seconds, resp->exited_at->nanos };
			proc_exited(p, resp->exit_status, &at);
		}
	} else if (reply->status.code != TTRPC_NOT_FOUND &&
		   reply->status.code != TTRPC_CANCELLED && reply->status.code != TTRPC_UNAVAILABLE) {
		/* The guest refused: containerd may try again. */
		fail_from_agent(f->call, "Delete", reply);
		return;
	}
	/* Gone in the guest, or with the VM: gone here. */
	finish_delete(f->call, p);
}

static void start_delete(struct shim *s, struct ttrpc_call *call, struct proc *p)
{
	if (shim_vm_up(s)) {
		Task(DeleteRequest) req = CONTAINERD__TASK__V2__DELETE_REQUEST__INIT;
		req.id = p->c->id;
		req.exec_id = p->exec_id;
		forward(s, call, "Delete", &req.base, &containerd__task__v2__delete_response__descriptor,
			after_delete, p);
	} else {
		finish_delete(call, p);
	}
}

static void on_delete(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct shim *s = data;
	const Task(DeleteRequest) *r = (const Task(DeleteRequest) *)req;
	struct proc *p = lookup(s, call, r->id, r->exec_id);
	if (!p)
		return;
	switch (check(call, p, PROC_OP_DELETE)) {
	case PROC_LATER:
		/* containerd gave up on a Create still under way: done when
		 * it is (create_finished). */
		if (p->delete_call) {
			ttrpc_call_fail(call, TTRPC_FAILED_PRECONDITION,
					"process %s: already being deleted", proc_task_id(p));
			return;
		}
		p->delete_call = call;
		ttrpc_call_defer(call, delete_cancel, p);
		return;
	case PROC_ALLOW:
		start_delete(s, call, p);
		return;
	default:
		return;
	}
}

/* ---- Create ---- */

struct create {
	struct ttrpc_call *call; /* NULL once containerd gave up on it */
	struct proc *p;		 /* a reference */
	struct vm_create *vc;
};

static void create_cancel(struct ttrpc_call *call, void *data)
{
	(void)call;
	struct create *cr = data;
	cr->call = NULL;
}

/* The Create failed (or was given up): nothing of it is left. */
static void create_done(struct create *cr);

static void create_failed(struct create *cr, int code, const char *msg)
{
	struct proc *p = cr->p;
	struct shim *s = p->s;
	struct ctr *c = p->c;
	shim_log("create %s: %s", c->id, msg);
	if (cr->call)
		ttrpc_call_fail(cr->call, code, "create %s: %s", c->id, msg);
	logger_free(take_ptr(p->logger));
	struct ttrpc_call *del = take_ptr(p->delete_call);
	if (p->state != PROC_CREATING && p->state != PROC_DELETED)
		force_exit(p, KILLED_STATUS);
	if (p->state != PROC_DELETED)
		proc_set_state(p, PROC_DELETED);
	settle_kill(p);
	if (del)
		reply_delete(del, p);
	ctr_ref(c);
	ctr_unlist(c);
	if (c == s->vm.owner) {
		if (s->vm.state == SHIM_VM_RUNNING || s->vm.state == SHIM_VM_LOST)
			shim_vm_teardown(s);
	} else if (c->disk_added) {
		shim_vm_leave(s, c);
	}
	ctr_unref(c);
	create_done(cr);
	shim_maybe_exit(s);
}

static void create_done(struct create *cr)
{
	vm_create_free(cr->vc);
	proc_unref(cr->p);
	free(cr);
}

static void after_agent_create(struct fwd *f, struct ttrpc_reply *reply)
{
	struct create *cr = f->ctx;
	struct proc *p = cr->p;
	struct shim *s = p->s;
	if (reply->status.code != TTRPC_OK) {
		int code = reply->status.code == TTRPC_CANCELLED ? TTRPC_UNAVAILABLE : reply->status.code;
		create_failed(cr, code, reply->status.message);
		return;
	}
	const Task(CreateTaskResponse) *resp = (const Task(CreateTaskResponse) *)reply->msg;
	p->guest_pid = resp->pid;
	struct husk_err err = { 0 };
	if (p->delete_call || s->shutting_down) {
		agent_forget(s, p);
		create_failed(cr, TTRPC_CANCELLED, "deleted while being created");
		return;
	}
	if (proc_connect_io(p, &err) < 0) {
		agent_forget(s, p);
		create_failed(cr, TTRPC_INTERNAL, err.msg);
		return;
	}
	proc_set_state(p, PROC_CREATED);
	agent_wait(p);
	settle_kill(p);
	Ev(TaskIO) io = CONTAINERD__EVENTS__TASK_IO__INIT;
	io.stdin = p->stdin_path;
	io.stdout = p->stdout_path;
	io.stderr = p->stderr_path;
	io.terminal = p->terminal;
	Ev(TaskCreate) ev = CONTAINERD__EVENTS__TASK_CREATE__INIT;
	ev.container_id = p->c->id;
	ev.bundle = p->c->bundle;
	ev.io = &io;
	ev.pid = shim_reported_pid(p);
	shim_publish(s, "/tasks/create", &ev.base);
	if (cr->call) {
		Task(CreateTaskResponse) out = CONTAINERD__TASK__V2__CREATE_TASK_RESPONSE__INIT;
		out.pid = shim_reported_pid(p);
		ttrpc_call_reply(cr->call, &out.base);
	}
	create_done(cr);
}

/* The container is ready in the VM: the agent's Create, with stdio on
 * vsock ports. containerd's call stays with cr (deferred by on_create). */
static void create_forward(struct create *cr)
{
	struct proc *p = cr->p;
	struct shim *s = p->s;
	char in[32], out[32], er[32];
	Task(CreateTaskRequest) fr = CONTAINERD__TASK__V2__CREATE_TASK_REQUEST__INIT;
	fr.id = p->c->id;
	fr.bundle = cr->vc->guest_bundle;
	fr.terminal = p->terminal;
	fr.stdin = vsock_uri(in, sizeof(in), p->ports.in);
	fr.stdout = vsock_uri(out, sizeof(out), p->ports.out);
	fr.stderr = vsock_uri(er, sizeof(er), p->ports.err);
	if (!forward_ctx(s, NULL, "Create", &fr.base,
			 &containerd__task__v2__create_task_response__descriptor, after_agent_create,
			 p, cr))
		create_failed(cr, TTRPC_UNAVAILABLE, "the VM is gone");
}

static void on_vm_ready(struct vm_create *vc, int rc, const struct husk_err *err)
{
	struct create *cr = vc->data;
	struct proc *p = cr->p;
	if (rc < 0) {
		create_failed(cr, err->code == -ENOENT ? TTRPC_NOT_FOUND : TTRPC_INTERNAL, err->msg);
		return;
	}
	if (p->delete_call || p->s->shutting_down) {
		create_failed(cr, TTRPC_CANCELLED, "deleted while being created");
		return;
	}
	create_forward(cr);
}

static char *read_file(const char *path, struct husk_err *err)
{
	_cleanup_fd_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		husk_err_sys(err, -errno, "open %s", path);
		return NULL;
	}
	size_t cap = 16384, len = 0;
	char *buf = malloc(cap);
	for (;;) {
		if (!buf) {
			husk_err_set(err, -ENOMEM, "read %s", path);
			return NULL;
		}
		ssize_t n = read(fd, buf + len, cap - len - 1);
		if (n < 0) {
			husk_err_sys(err, -errno, "read %s", path);
			free(buf);
			return NULL;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len + 1 == cap) {
			char *nb = realloc(buf, cap *= 2);
			if (!nb)
				free(buf);
			buf = nb;
		}
	}
	buf[len] = '\0';
	return buf;
}

static void spec_hostname(const char *spec, char *out, size_t len)
{
	snprintf(out, len, "husk");
	struct json_object *o = json_tokener_parse(spec), *h;
	if (o && json_object_object_get_ex(o, "hostname", &h) && json_object_is_type(h, json_type_string) &&
	    *json_object_get_string(h))
		snprintf(out, len, "%s", json_object_get_string(h));
	json_object_put(o);
}

static void log_config(const struct shim *s, const char *id)
{
	const struct shim_config *c = &s->cfg;
	char mem[32] = "default", cpus[16] = "default";
	if (c->memory_mib)
		snprintf(mem, sizeof(mem), "%u MiB", c->memory_mib);
	if (c->vcpus)
		snprintf(cpus, sizeof(cpus), "%u", c->vcpus);
	shim_log("container %s: config %s: vcpus %s, memory %s, accel %s", id,
		 *c->sources ? c->sources : "(defaults)", cpus, mem, husk_accel_name(c->accel));
	if (*c->warning)
		shim_log_at("warning", NULL, "container %s: %s", id, c->warning);
}

/* Whether container `r` may be created in this shim, and how: a VM of its
 * own (the shim's first), or joining the pod's sandbox's VM. */
static bool create_allowed(struct shim *s, struct ttrpc_call *call,
			   const Task(CreateTaskRequest) *r, enum shim_pod_role role,
			   const char *sandbox)
{
	struct ctr *owner = s->vm.owner;
	if (ctr_find(s, r->id)) {
		ttrpc_call_fail(call, TTRPC_ALREADY_EXISTS, "container %s: already exists", r->id);
		return false;
	}
	if (role != SHIM_POD_CONTAINER) {
		if (s->vm.state != SHIM_VM_NONE) {
			ttrpc_call_fail(call, TTRPC_ALREADY_EXISTS,
					"this shim already runs container %s",
					owner ? owner->id : "(gone)");
			return false;
		}
		return true;
	}
	if (!owner || owner->role != SHIM_POD_SANDBOX || strcmp(owner->id, sandbox) != 0) {
		ttrpc_call_fail(call, TTRPC_FAILED_PRECONDITION,
				"container %s: its pod sandbox %s does not run in this shim", r->id,
				sandbox);
		return false;
	}
	if (!owner->listed || !shim_vm_up(s) || !owner->init || !owner->init->guest_pid) {
		ttrpc_call_fail(call, TTRPC_FAILED_PRECONDITION,
				"container %s: pod sandbox %s is not running", r->id, sandbox);
		return false;
	}
	return true;
}

static void on_create(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct shim *s = data;
	const Task(CreateTaskRequest) *r = (const Task(CreateTaskRequest) *)req;
	struct husk_err err = { 0 };
	if (*r->checkpoint) {
		ttrpc_call_fail(call, TTRPC_UNIMPLEMENTED, "checkpoint/restore is not supported");
		return;
	}
	char path[PATH_MAX], sandbox[256];
	_cleanup_free_ char *spec = NULL, *gspec = NULL;
	enum shim_pod_role role;
	if (husk_path_fmt(path, sizeof(path), "%s/config.json", r->bundle) < 0) {
		ttrpc_call_fail(call, TTRPC_INVALID_ARGUMENT, "bundle %s: path too long", r->bundle);
		return;
	}
	if (!(spec = read_file(path, &err)) ||
	    shim_pod_role(spec, &role, sandbox, sizeof(sandbox), &err) < 0) {
		ttrpc_call_fail(call, TTRPC_INVALID_ARGUMENT, "create %s: %s", r->id, err.msg);
		return;
	}
	if (!create_allowed(s, call, r, role, sandbox))
		return;
	ev_timer_cancel(take_ptr(s->orphan_timer));
	bool join = role == SHIM_POD_CONTAINER;
	/* A bad config is the caller's error, named as such. A pod's later
	 * containers run in the VM the sandbox's config made. */
	if (!join) {
		if (s->cfg_loaded)
			shim_config_free(&s->cfg);
		s->cfg_loaded = false;
		if (shim_config_load(&s->cfg, r->options ? r->options : s->opt.start_options,
				     &err) < 0) {
			shim_log("create %s: %s", r->id, err.msg);
			ttrpc_call_fail(call, TTRPC_INVALID_ARGUMENT, "create %s: %s", r->id,
					err.msg);
			return;
		}
		s->cfg_loaded = true;
		log_config(s, r->id);
	}
	if (role != SHIM_POD_NONE &&
	    !(gspec = shim_pod_rewrite_spec(spec, role, join ? s->vm.owner->init->guest_pid : 0,
					    &err))) {
		ttrpc_call_fail(call, TTRPC_INVALID_ARGUMENT, "create %s: %s", r->id, err.msg);
		return;
	}
	struct ctr *c = ctr_new(s, r->id, r->bundle, role);
	struct proc *p = c ? proc_new(c, "", r->stdin, r->stdout, r->stderr, r->terminal) : NULL;
	struct create *cr = p ? calloc(1, sizeof(*cr)) : NULL;
	struct vm_create *vc = cr ? vm_create_new(s, c) : NULL;
	if (!vc) {
		free(cr);
		if (p)
			proc_set_state(p, PROC_DELETED);
		if (c)
			ctr_unlist(c);
		ttrpc_call_fail(call, TTRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	*cr = (struct create){ .call = call, .p = proc_ref(p), .vc = vc };
	vc->done = on_vm_ready;
	vc->data = cr;
	spec_hostname(spec, vc->hostname, sizeof(vc->hostname));
	int rc;
	if ((rc = proc_open_logger(p, &err)) < 0 || (rc = proc_open_stdio(p, &err)) < 0 ||
	    (rc = rootfs_src_from_request(r, spec, &vc->src, &err)) < 0 ||
	    (!(vc->guest_spec = strdup(gspec ? gspec : spec)) &&
	     (rc = husk_err_set(&err, -ENOMEM, "out of memory")) < 0) ||
	    (rc = join ? shim_vm_join(vc, &err) : shim_vm_boot(vc, &err)) < 0) {
		create_failed(cr, rc == -ENOMEM ? TTRPC_RESOURCE_EXHAUSTED : TTRPC_INVALID_ARGUMENT,
			      err.msg);
		return;
	}
	ttrpc_call_defer(call, create_cancel, cr);
}

/* ---- Start, Exec ---- */

static void after_start(struct fwd *f, struct ttrpc_reply *reply)
{
	struct shim *s = f->s;
	struct proc *p = f->p;
	if (reply->status.code != TTRPC_OK) {
		/* It will never run: containerd's side of its stdio ends now (ctr
		 * waits for that EOF before it deletes), as runc-v2 closes a
		 * failed exec's io. It stays created for the Delete to come. */
		if (p->state == PROC_STARTING)
			proc_set_state(p, PROC_CREATED);
		proc_close_io(p);
		fail_from_agent(f->call, "Start", reply);
		return;
	}
	const Task(StartResponse) *resp = (const Task(StartResponse) *)reply->msg;
	if (p->state == PROC_STARTING)
		proc_set_state(p, PROC_RUNNING);
	if (resp->pid)
		p->guest_pid = resp->pid;
	/* An exec exists in the guest only now. */
	agent_wait(p);
	if (*p->exec_id) {
		Ev(TaskExecStarted) ev = CONTAINERD__EVENTS__TASK_EXEC_STARTED__INIT;
		ev.container_id = p->c->id;
		ev.exec_id = p->exec_id;
		ev.pid = shim_reported_pid(p);
		shim_publish(s, "/tasks/exec-started", &ev.base);
	} else {
		Ev(TaskStart) ev = CONTAINERD__EVENTS__TASK_START__INIT;
		ev.container_id = p->c->id;
		ev.pid = shim_reported_pid(p);
		shim_publish(s, "/tasks/start", &ev.base);
	}
	if (f->call) {
		Task(StartResponse) out = CONTAINERD__TASK__V2__START_RESPONSE__INIT;
		out.pid = shim_reported_pid(p);
		ttrpc_call_reply(f->call, &out.base);
	}
}

static void forward_start(struct proc *p, struct ttrpc_call *call)
{
	Task(StartRequest) req = CONTAINERD__TASK__V2__START_REQUEST__INIT;
	req.id = p->c->id;
	req.exec_id = p->exec_id;
	if (forward(p->s, call, "Start", &req.base, &containerd__task__v2__start_response__descriptor,
		    after_start, p))
		proc_set_state(p, PROC_STARTING);
}

static void start_cancel(struct ttrpc_call *call, void *data)
{
	(void)call;
	struct proc *p = data;
	p->start_call = NULL;
}

static void on_logger_ready(void *data)
{
	struct proc *p = data;
	struct ttrpc_call *call = take_ptr(p->start_call);
	if (call && p->state == PROC_CREATED)
		forward_start(p, call);
	else if (call)
		ttrpc_call_fail(call, TTRPC_FAILED_PRECONDITION, "process %s: %s", proc_task_id(p),
				proc_state_name(p->state));
}

static void on_start(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct shim *s = data;
	const Task(StartRequest) *r = (const Task(StartRequest) *)req;
	struct proc *p = lookup(s, call, r->id, r->exec_id);
	if (!p || check(call, p, PROC_OP_START) != PROC_ALLOW)
		return;
	/* As containerd: nothing runs before its logger is ready. */
	if (p->logger && !logger_ready(p->logger)) {
		if (p->start_call) {
			ttrpc_call_fail(call, TTRPC_FAILED_PRECONDITION, "%s: already starting",
					proc_task_id(p));
			return;
		}
		p->start_call = call;
		logger_when_ready(p->logger, on_logger_ready, p);
		ttrpc_call_defer(call, start_cancel, p);
		return;
	}
	forward_start(p, call);
}

static void after_exec(struct fwd *f, struct ttrpc_reply *reply)
{
	struct shim *s = f->s;
	struct proc *p = f->p;
	struct husk_err err = { 0 };
	if (reply->status.code != TTRPC_OK) {
		/* The agent has no such process: neither have we. */
		proc_set_state(p, PROC_DELETED);
		settle_kill(p);
		fail_from_agent(f->call, "Exec", reply);
		return;
	}
	if (proc_connect_io(p, &err) < 0) {
		shim_log("exec %s: %s", p->exec_id, err.msg);
		agent_forget(s, p);
		proc_set_state(p, PROC_DELETED);
		settle_kill(p);
		if (f->call)
			ttrpc_call_fail(f->call, TTRPC_INTERNAL, "stdio of exec %s: %s", p->exec_id,
					err.msg);
		return;
	}
	proc_set_state(p, PROC_CREATED);
	settle_kill(p);
	Ev(TaskExecAdded) ev = CONTAINERD__EVENTS__TASK_EXEC_ADDED__INIT;
	ev.container_id = p->c->id;
	ev.exec_id = p->exec_id;
	shim_publish(s, "/tasks/exec-added", &ev.base);
	if (f->call)
		ttrpc_call_reply(f->call, reply->msg);
}

static void on_exec(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct shim *s = data;
	const Task(ExecProcessRequest) *r = (const Task(ExecProcessRequest) *)req;
	struct proc *init = lookup(s, call, r->id, "");
	if (!init || check(call, init, PROC_OP_EXEC) != PROC_ALLOW)
		return;
	struct ctr *c = init->c;
	if (!*r->exec_id || proc_find(c, r->exec_id)) {
		ttrpc_call_fail(call, TTRPC_ALREADY_EXISTS, "exec %s: already exists or empty",
				r->exec_id);
		return;
	}
	struct husk_err err = { 0 };
	struct proc *p = proc_new(c, r->exec_id, r->stdin, r->stdout, r->stderr, r->terminal);
	if (!p) {
		ttrpc_call_fail(call, TTRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	if (proc_open_logger(p, &err) < 0 || proc_open_stdio(p, &err) < 0) {
		proc_set_state(p, PROC_DELETED);
		ttrpc_call_fail(call, TTRPC_INVALID_ARGUMENT, "exec %s: %s", r->exec_id, err.msg);
		return;
	}
	char in[32], out[32], er[32];
	Task(ExecProcessRequest) fr = *r;
	fr.stdin = vsock_uri(in, sizeof(in), p->ports.in);
	fr.stdout = vsock_uri(out, sizeof(out), p->ports.out);
	fr.stderr = vsock_uri(er, sizeof(er), p->ports.err);
	if (!forward(s, call, "Exec", &fr.base, &google__protobuf__empty__descriptor, after_exec, p))
		proc_set_state(p, PROC_DELETED);
}

/* ---- Wait, State, Kill ---- */

static void on_wait(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct shim *s = data;
	const Task(WaitRequest) *r = (const Task(WaitRequest) *)req;
	struct proc *p = lookup(s, call, r->id, r->exec_id);
	if (p && proc_add_waiter(p, call) < 0)
		ttrpc_call_fail(call, TTRPC_RESOURCE_EXHAUSTED, "out of memory");
}

static Containerd__V1__Types__Status local_status(const struct proc *p)
{
	switch (p->state) {
	case PROC_CREATING:
	case PROC_CREATED:
		return CONTAINERD__V1__TYPES__STATUS__CREATED;
	case PROC_STOPPED:
	case PROC_DELETED:
		return CONTAINERD__V1__TYPES__STATUS__STOPPED;
	case PROC_PAUSED:
		return CONTAINERD__V1__TYPES__STATUS__PAUSED;
	default:
		return CONTAINERD__V1__TYPES__STATUS__RUNNING;
	}
}

static void state_reply(struct ttrpc_call *call, const struct proc *p,
			const Task(StateResponse) *agent)
{
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	Task(StateResponse) resp = CONTAINERD__TASK__V2__STATE_RESPONSE__INIT;
	if (agent)
		resp = *agent;
	/* containerd's own paths and our pid; an exit only once containerd
	 * can see it through Wait. */
	resp.id = (char *)proc_task_id(p);
	resp.bundle = p->c->bundle;
	resp.pid = shim_reported_pid(p);
	resp.stdin = p->stdin_path;
	resp.stdout = p->stdout_path;
	resp.stderr = p->stderr_path;
	resp.terminal = p->terminal;
	resp.exec_id = p->exec_id;
	if (p->state == PROC_STOPPED) {
		resp.status = CONTAINERD__V1__TYPES__STATUS__STOPPED;
		resp.exit_status = p->status;
		fill_ts(&ts, &p->exited_at);
		resp.exited_at = &ts;
	} else if (!agent || resp.status == CONTAINERD__V1__TYPES__STATUS__STOPPED) {
		resp.status = local_status(p);
		resp.exit_status = 0;
		resp.exited_at = NULL;
	}
	ttrpc_call_reply(call, &resp.base);
}

static void after_state(struct fwd *f, struct ttrpc_reply *reply)
{
	if (!f->call)
		return;
	state_reply(f->call, f->p,
		    reply->status.code == TTRPC_OK ? (const Task(StateResponse) *)reply->msg : NULL);
}

static void on_state(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct shim *s = data;
	const Task(StateRequest) *r = (const Task(StateRequest) *)req;
	struct proc *p = lookup(s, call, r->id, r->exec_id);
	if (!p)
		return;
	/* The agent tells paused from running; the rest is known here. */
	if ((p->state == PROC_RUNNING || p->state == PROC_PAUSED) && shim_vm_up(s))
		forward(s, call, "State", req, &containerd__task__v2__state_response__descriptor,
			after_state, p);
	else
		state_reply(call, p, NULL);
}

static void kill_cancel(struct ttrpc_call *call, void *data)
{
	(void)call;
	struct proc *p = data;
	p->kill_call = NULL;
}

/* Kill and ResizePty: forwarded when the state allows, answered OK here
 * when there is nothing left to do; a Kill during the Create waits. */
static void forward_checked(struct shim *s, struct ttrpc_call *call, const ProtobufCMessage *req,
			    const char *id, const char *exec_id, enum proc_op op, const char *method)
{
	struct proc *p = lookup(s, call, id, exec_id);
	if (!p)
		return;
	switch (check(call, p, op)) {
	case PROC_ALLOW:
		forward(s, call, method, req, &google__protobuf__empty__descriptor, NULL, p);
		return;
	case PROC_NOOP:
		ttrpc_call_reply(call, &empty.base);
		return;
	case PROC_LATER: {
		/* Only Kill waits: done when the Create is (run_pending). */
		const Task(KillRequest) *r = (const Task(KillRequest) *)req;
		if (p->kill_call) {
			ttrpc_call_fail(call, TTRPC_FAILED_PRECONDITION,
					"process %s: a kill is already waiting for its create",
					proc_task_id(p));
			return;
		}
		p->kill_call = call;
		p->kill_signal = r->signal;
		p->kill_all = r->all;
		ttrpc_call_defer(call, kill_cancel, p);
		return;
	}
	default:
		return;
	}
}

static void on_kill(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	const Task(KillRequest) *r = (const Task(KillRequest) *)req;
	forward_checked(data, call, req, r->id, r->exec_id, PROC_OP_KILL, "Kill");
}

/* ---- the rest ---- */

static void on_pids(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct shim *s = data;
	const Task(PidsRequest) *r = (const Task(PidsRequest) *)req;
	struct proc *init = lookup(s, call, r->id, "");
	if (!init)
		return;
	/* As Kata: the host's view of a VM-isolated task is its VMM. */
	Containerd__V1__Types__ProcessInfo info = CONTAINERD__V1__TYPES__PROCESS_INFO__INIT;
	Containerd__V1__Types__ProcessInfo *infos[] = { &info };
	Task(PidsResponse) resp = CONTAINERD__TASK__V2__PIDS_RESPONSE__INIT;
	info.pid = shim_reported_pid(init);
	if (info.pid) {
		resp.n_processes = 1;
		resp.processes = infos;
	}
	ttrpc_call_reply(call, &resp.base);
}

static void after_pause_resume(struct fwd *f, struct ttrpc_reply *reply)
{
	struct proc *p = f->p;
	bool pause = f->ctx != NULL;
	if (reply->status.code != TTRPC_OK) {
		fail_from_agent(f->call, pause ? "Pause" : "Resume", reply);
		return;
	}
	if (pause && p->state == PROC_RUNNING) {
		proc_set_state(p, PROC_PAUSED);
		Ev(TaskPaused) ev = CONTAINERD__EVENTS__TASK_PAUSED__INIT;
		ev.container_id = p->c->id;
		shim_publish(f->s, "/tasks/paused", &ev.base);
	} else if (!pause && p->state == PROC_PAUSED) {
		proc_set_state(p, PROC_RUNNING);
		Ev(TaskResumed) ev = CONTAINERD__EVENTS__TASK_RESUMED__INIT;
		ev.container_id = p->c->id;
		shim_publish(f->s, "/tasks/resumed", &ev.base);
	}
	if (f->call)
		ttrpc_call_reply(f->call, reply->msg);
}

static void on_pause_resume(struct ttrpc_call *call, const ProtobufCMessage *req, void *data,
			    bool pause)
{
	struct shim *s = data;
	/* PauseRequest and ResumeRequest both carry only id (field 1). */
	const Task(PauseRequest) *r = (const Task(PauseRequest) *)req;
	struct proc *init = lookup(s, call, r->id, "");
	if (init && check(call, init, pause ? PROC_OP_PAUSE : PROC_OP_RESUME) == PROC_ALLOW)
		forward_ctx(s, call, pause ? "Pause" : "Resume", req,
			    &google__protobuf__empty__descriptor, after_pause_resume, init,
			    pause ? (void *)1 : NULL);
}

static void on_pause(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	on_pause_resume(call, req, data, true);
}

static void on_resume(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	on_pause_resume(call, req, data, false);
}

static void on_resize_pty(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	const Task(ResizePtyRequest) *r = (const Task(ResizePtyRequest) *)req;
	forward_checked(data, call, req, r->id, r->exec_id, PROC_OP_IO, "ResizePty");
}

/* Update and Stats: the container's, from the agent. */
static void on_container_call(struct ttrpc_call *call, const ProtobufCMessage *req,
			      struct shim *s, const char *id, const char *method,
			      const ProtobufCMessageDescriptor *resp)
{
	struct proc *init = lookup(s, call, id, "");
	if (!init)
		return;
	if (init->state == PROC_CREATING) {
		ttrpc_call_fail(call, TTRPC_FAILED_PRECONDITION, "container %s: still being created",
				id);
		return;
	}
	forward(s, call, method, req, resp, NULL, init);
}

static void on_update(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	const Task(UpdateTaskRequest) *r = (const Task(UpdateTaskRequest) *)req;
	on_container_call(call, req, data, r->id, "Update", &google__protobuf__empty__descriptor);
}

static void on_stats(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	const Task(StatsRequest) *r = (const Task(StatsRequest) *)req;
	/* The agent's Any (io.containerd.cgroups.v2.Metrics) passes through. */
	on_container_call(call, req, data, r->id, "Stats",
			  &containerd__task__v2__stats_response__descriptor);
}

static void on_close_io(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct shim *s = data;
	const Task(CloseIORequest) *r = (const Task(CloseIORequest) *)req;
	struct proc *p = lookup(s, call, r->id, r->exec_id);
	if (!p)
		return;
	enum proc_verdict v = check(call, p, PROC_OP_IO);
	if (v == PROC_REFUSE)
		return;
	/* Our vsock stream's EOF is the guest process's stdin EOF. */
	if (v == PROC_ALLOW && r->stdin)
		proc_close_input(p);
	ttrpc_call_reply(call, &empty.base);
}

static void on_connect(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct shim *s = data;
	(void)req;
	struct proc *init = s->vm.owner ? s->vm.owner->init : NULL;
	Task(ConnectResponse) resp = CONTAINERD__TASK__V2__CONNECT_RESPONSE__INIT;
	resp.shim_pid = (uint32_t)getpid();
	resp.task_pid = init ? shim_reported_pid(init) : 0;
	resp.version = "husk";
	ttrpc_call_reply(call, &resp.base);
}

static void stop_loop(void *data)
{
	struct shim *s = data;
	ev_stop(s->loop);
}

static void on_orphaned(void *data)
{
	struct shim *s = data;
	s->orphan_timer = NULL;
	if (s->ctrs || shim_worker_pending(s->worker))
		return;
	/* containerd lost track of us (it restarted during a Create that then
	 * failed, say): nobody will send the Shutdown. */
	shim_log("shim for %s: no container left and no Shutdown for %llu s: exiting", s->opt.id,
		 (unsigned long long)(SHIM_ORPHAN_EXIT_NS / 1000000000ull));
	stop_loop(s);
}

void shim_maybe_exit(struct shim *s)
{
	if (s->ctrs)
		return;
	if (s->exit_when_idle) {
		s->stop.fn = stop_loop;
		s->stop.data = s;
		ev_defer(s->loop, &s->stop);
		return;
	}
	if (!s->orphan_timer &&
	    ev_timer_add(s->loop, SHIM_ORPHAN_EXIT_NS, on_orphaned, s, &s->orphan_timer) < 0)
		s->orphan_timer = NULL;
}

static void on_shutdown(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct shim *s = data;
	const Task(ShutdownRequest) *r = (const Task(ShutdownRequest) *)req;
	/* As the runc shim: exit only once every container is gone, unless
	 * told "now". The reply goes out before the loop stops; a VM still
	 * being stopped is waited for on the way out. */
	ttrpc_call_reply(call, &empty.base);
	s->exit_when_idle = true;
	if (r->now) {
		s->stop.fn = stop_loop;
		s->stop.data = s;
		ev_defer(s->loop, &s->stop);
	} else {
		shim_maybe_exit(s);
	}
}

int shim_service_register(struct shim *s, struct husk_err *err)
{
	static const struct ttrpc_named_method methods[] = {
		{ "State", on_state },	   { "Create", on_create },	  { "Start", on_start },
		{ "Delete", on_delete },   { "Pids", on_pids },		  { "Pause", on_pause },
		{ "Resume", on_resume },   { "Kill", on_kill },		  { "Exec", on_exec },
		{ "ResizePty", on_resize_pty }, { "CloseIO", on_close_io }, { "Update", on_update },
		{ "Wait", on_wait },	   { "Stats", on_stats },	  { "Connect", on_connect },
		{ "Shutdown", on_shutdown },
		/* Checkpoint: no handler, answered UNIMPLEMENTED */
	};
	return ttrpc_server_add_service_named(s->server, &containerd__task__v2__task__descriptor,
					      methods, ARRAY_SIZE(methods), s, err);
}
