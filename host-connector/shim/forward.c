/* Task calls forwarded to the guest agent, on the loop: one ttrpc client,
 * many calls in flight; and the agent's Wait that turns into a process's
 * exit. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "github.com/containerd/containerd/api/events/task.pb-c.h"
#include "husk/cleanup.h"
#include "service.h"
#include "vm.h"


static void fwd_cancel(struct ttrpc_call *call, void *data)
{
	(void)call;
	struct fwd *f = data;
	f->call = NULL;
}

/* An error from the agent, or from its connection going with the VM. */
void fail_from_agent(struct ttrpc_call *call, const char *method,
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
bool forward_ctx(struct shim *s, struct ttrpc_call *call, const char *method,
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

bool forward(struct shim *s, struct ttrpc_call *call, const char *method,
		    const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
		    fwd_hook hook, struct proc *p)
{
	return forward_ctx(s, call, method, req, resp_desc, hook, p, NULL);
}

/* Best effort, nobody waiting: the agent forgets a process we gave up. */
void agent_forget(struct shim *s, struct proc *p)
{
	Task(DeleteRequest) req = CONTAINERD__TASK__V2__DELETE_REQUEST__INIT;
	req.id = p->c->id;
	req.exec_id = p->exec_id;
	forward(s, NULL, "Delete", &req.base, &containerd__task__v2__delete_response__descriptor,
		NULL, NULL);
}

/* A Kill that waited for the Create: sent now that the process exists,
 * or answered when it never will. */
void settle_kill(struct proc *p)
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
void agent_wait(struct proc *p)
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

