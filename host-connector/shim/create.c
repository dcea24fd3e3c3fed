/* Create: the container's rootfs image and its VM (booted for the shim's
 * first container, joined for a pod's later ones; vm.c, on the worker),
 * then the agent's Create, then containerd's stdio connected to the
 * guest's. Any failure on the way leaves nothing: no VM, disk, mount,
 * image hold or process. */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "github.com/containerd/containerd/api/events/task.pb-c.h"
#include "husk/cleanup.h"
#include "husk/file.h"
#include "jail/spec.h"
#include "husk/path.h"
#include "io.h"
#include "mounts.h"
#include "proc_io.h"
#include "service.h"
#include "vm.h"

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
	mounts_release(c);
	if (s->vm.state == SHIM_VM_NONE)
		mounts_share_remove(s);
	struct ttrpc_call *del = take_ptr(p->delete_call);
	if (p->state != PROC_CREATING && p->state != PROC_DELETED)
		shim_force_exit(p, KILLED_STATUS);
	if (p->state != PROC_DELETED)
		proc_set_state(p, PROC_DELETED);
	settle_kill(p);
	if (del)
		shim_reply_delete(del, p);
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

/* The container's stdio is connected: it is created. */
static void on_create_io(struct proc *p, int rc, const struct husk_err *err, void *data)
{
	struct create *cr = data;
	struct shim *s = p->s;
	if (rc < 0 || p->delete_call || s->shutting_down) {
		agent_forget(s, p);
		create_failed(cr, rc < 0 ? TTRPC_INTERNAL : TTRPC_CANCELLED,
			      rc < 0 ? err->msg : "deleted while being created");
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
	if (proc_connect_io(p, on_create_io, cr, &err) < 0) {
		agent_forget(s, p);
		create_failed(cr, TTRPC_INTERNAL, err.msg);
	}
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
	fr.stdin = shim_vsock_uri(in, sizeof(in), p->ports.in);
	fr.stdout = shim_vsock_uri(out, sizeof(out), p->ports.out);
	fr.stderr = shim_vsock_uri(er, sizeof(er), p->ports.err);
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
		create_failed(cr, err->code == -ENOENT ? TTRPC_NOT_FOUND : ttrpc_code_from_errno(err->code),
			      err->msg);
		return;
	}
	if (p->delete_call || p->s->shutting_down) {
		create_failed(cr, TTRPC_CANCELLED, "deleted while being created");
		return;
	}
	create_forward(cr);
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

void shim_on_create(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
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
	if (husk_read_file(path, JAIL_SPEC_MAX_BYTES, &spec, NULL, &err) < 0 ||
	    shim_pod_role(spec, &role, sandbox, sizeof(sandbox), &err) < 0) {
		ttrpc_call_fail(call, TTRPC_INVALID_ARGUMENT, "create %s: %s", r->id, err.msg);
		return;
	}
	if (!create_allowed(s, call, r, role, sandbox))
		return;
	/* runc would run it in the host's network namespace; a VM cannot
	 * share the host's network stack, and one without a network would
	 * break what host networking is asked for. */
	char netns[PATH_MAX];
	if (role != SHIM_POD_CONTAINER && shim_pod_netns(spec, netns, sizeof(netns)) < 0) {
		ttrpc_call_fail(call, TTRPC_INVALID_ARGUMENT,
				"create %s: host networking (a spec without a network namespace, "
				"hostNetwork in Kubernetes) is not supported: a VM cannot share the "
				"host's network stack",
				r->id);
		return;
	}
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
	if (role == SHIM_POD_SANDBOX)
		snprintf(vc->netns, sizeof(vc->netns), "%s", netns);
	int rc;
	if ((rc = proc_open_logger(p, &err)) < 0 || (rc = proc_open_stdio(p, &err)) < 0 ||
	    (rc = rootfs_src_from_request(r, spec, &vc->src, &err)) < 0 ||
	    (!(vc->guest_spec = strdup(gspec ? gspec : spec)) &&
	     (rc = husk_err_set(&err, -ENOMEM, "out of memory")) < 0) ||
	    (rc = mounts_prepare(s, c, &vc->guest_spec, &vc->share, &err)) < 0 ||
	    (rc = join ? shim_vm_join(vc, &err) : shim_vm_boot(vc, &err)) < 0) {
		create_failed(cr, rc == -ENOMEM ? TTRPC_RESOURCE_EXHAUSTED : TTRPC_INVALID_ARGUMENT,
			      err.msg);
		return;
	}
	ttrpc_call_defer(call, create_cancel, cr);
}

