/* Delete: as containerd-shim-runc-v2 deletes, a process that is stopped
 * (or created and never started); for a container's init, the container
 * goes with it (its execs killed with it), and with the VM's owner the VM.
 * The reply waits for a binary:// logger to exit, as runc-v2's does. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "github.com/containerd/containerd/api/events/task.pb-c.h"
#include "husk/cleanup.h"
#include "io.h"
#include "service.h"
#include "vm.h"

void shim_reply_delete(struct ttrpc_call *call, const struct proc *p)
{
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	shim_fill_ts(&ts, &p->exited_at);
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
		shim_reply_delete(call, p);
	proc_unref(p);
}

static void delete_cancel(struct ttrpc_call *call, void *data)
{
	(void)call;
	struct proc *p = data;
	p->delete_call = NULL;
}

/* Gives up a process that is not STOPPED: exits for containerd first. */
void shim_force_exit(struct proc *p, uint32_t status)
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
 * the VM. The VM goes with the last container: the sandbox's, as a rule,
 * but a pod's containers outlive a sandbox deleted under them, as under
 * runc (CRI deletes a sandbox task as soon as it exits). */
static void container_gone(struct shim *s, struct ctr *c)
{
	for (struct proc *q = c->procs; q;) {
		struct proc *next = q->next;
		if (q != c->init && q->state != PROC_CREATING) {
			shim_force_exit(q, KILLED_STATUS);
			proc_set_state(q, PROC_DELETED);
		}
		q = next;
	}
	if (c != s->vm.owner)
		shim_vm_leave(s, c);
	unsigned left = 0;
	for (struct ctr *o = s->ctrs; o; o = o->next)
		left += o != c && o->listed;
	if (left && c == s->vm.owner)
		shim_log("pod sandbox %s deleted: the VM stays for the pod's %u other container%s",
			 c->id, left, left == 1 ? "" : "s");
	else if (!left && (c == s->vm.owner || !s->vm.owner || !s->vm.owner->listed))
		shim_vm_teardown(s);
}

static void finish_delete(struct ttrpc_call *call, struct proc *p)
{
	struct shim *s = p->s;
	struct ctr *c = p->c;
	bool init = p == c->init;
	if (p->state != PROC_STOPPED) {
		/* Deleted before it ran: as runc, "killed". */
		shim_force_exit(p, KILLED_STATUS);
	}
	proc_ref(p);
	proc_set_state(p, PROC_DELETED);
	if (init) {
		Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
		shim_fill_ts(&ts, &p->exited_at);
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
		shim_reply_delete(call, p);
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

void shim_on_delete(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct shim *s = data;
	const Task(DeleteRequest) *r = (const Task(DeleteRequest) *)req;
	struct proc *p = shim_lookup(s, call, r->id, r->exec_id);
	if (!p)
		return;
	switch (shim_check(call, p, PROC_OP_DELETE)) {
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

