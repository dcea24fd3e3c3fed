/* The containerd.task.v2.Task service on the shim socket. Each handler
 * looks the process up, checks the call against its state (process.h),
 * forwards to the guest agent (forward.c), and publishes what containerd
 * must hear. Create and Delete, the two with a long story, have files of
 * their own (create.c, delete.c). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "github.com/containerd/containerd/api/events/task.pb-c.h"
#include "husk/cleanup.h"
#include "io.h"
#include "proc_io.h"
#include "service.h"
#include "vm.h"

const Google__Protobuf__Empty shim_empty = GOOGLE__PROTOBUF__EMPTY__INIT;

void shim_publish(struct shim *s, const char *topic, const ProtobufCMessage *event)
{
	publisher_send(s->pub, topic, event);
}

uint32_t shim_reported_pid(const struct proc *p)
{
	return p->state == PROC_CREATING ? 0 : (uint32_t)p->s->vm.vmm_pid;
}

void shim_fill_ts(Google__Protobuf__Timestamp *ts, const struct timespec *t)
{
	ts->seconds = t->tv_sec;
	ts->nanos = (int32_t)t->tv_nsec;
}

char *shim_vsock_uri(char *buf, size_t len, uint32_t port)
{
	if (!port)
		return (char *)"";
	snprintf(buf, len, "vsock://%u", port);
	return buf;
}

struct proc *shim_lookup(struct shim *s, struct ttrpc_call *call, const char *id,
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

enum proc_verdict shim_check(struct ttrpc_call *call, struct proc *p, enum proc_op op)
{
	int code;
	char why[128];
	enum proc_verdict v = proc_check(p->state, op, &code, why, sizeof(why));
	if (v == PROC_REFUSE)
		ttrpc_call_fail(call, code, "process %s: %s", proc_task_id(p), why);
	return v;
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
	struct proc *p = shim_lookup(s, call, r->id, r->exec_id);
	if (!p || shim_check(call, p, PROC_OP_START) != PROC_ALLOW)
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

/* An exec whose stdio is being connected; containerd's Exec waits. */
struct exec_io {
	struct ttrpc_call *call; /* NULL once containerd gave up on it */
};

static void exec_io_cancel(struct ttrpc_call *call, void *data)
{
	(void)call;
	struct exec_io *x = data;
	x->call = NULL;
}

static void on_exec_io(struct proc *p, int rc, const struct husk_err *err, void *data)
{
	struct exec_io *x = data;
	struct shim *s = p->s;
	struct ttrpc_call *call = x->call;
	free(x);
	if (rc < 0) {
		shim_log("exec %s: %s", p->exec_id, err->msg);
		agent_forget(s, p);
		proc_set_state(p, PROC_DELETED);
		settle_kill(p);
		if (call)
			ttrpc_call_fail(call, TTRPC_INTERNAL, "stdio of exec %s: %s", p->exec_id,
					err->msg);
		return;
	}
	proc_set_state(p, PROC_CREATED);
	settle_kill(p);
	Ev(TaskExecAdded) ev = CONTAINERD__EVENTS__TASK_EXEC_ADDED__INIT;
	ev.container_id = p->c->id;
	ev.exec_id = p->exec_id;
	shim_publish(s, "/tasks/exec-added", &ev.base);
	if (call)
		ttrpc_call_reply(call, &shim_empty.base);
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
	struct exec_io *x = calloc(1, sizeof(*x));
	int rc = x ? proc_connect_io(p, on_exec_io, x, &err)
		   : husk_err_set(&err, -ENOMEM, "out of memory");
	if (rc < 0) {
		free(x);
		shim_log("exec %s: %s", p->exec_id, err.msg);
		agent_forget(s, p);
		proc_set_state(p, PROC_DELETED);
		settle_kill(p);
		if (f->call)
			ttrpc_call_fail(f->call, TTRPC_INTERNAL, "stdio of exec %s: %s", p->exec_id,
					err.msg);
		return;
	}
	/* The call now waits on the connection, not on this forward. */
	x->call = f->call;
	if (x->call)
		ttrpc_call_defer(x->call, exec_io_cancel, x);
}

static void on_exec(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct shim *s = data;
	const Task(ExecProcessRequest) *r = (const Task(ExecProcessRequest) *)req;
	struct proc *init = shim_lookup(s, call, r->id, "");
	if (!init || shim_check(call, init, PROC_OP_EXEC) != PROC_ALLOW)
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
	fr.stdin = shim_vsock_uri(in, sizeof(in), p->ports.in);
	fr.stdout = shim_vsock_uri(out, sizeof(out), p->ports.out);
	fr.stderr = shim_vsock_uri(er, sizeof(er), p->ports.err);
	if (!forward(s, call, "Exec", &fr.base, &google__protobuf__empty__descriptor, after_exec, p))
		proc_set_state(p, PROC_DELETED);
}

/* ---- Wait, State, Kill ---- */

static void on_wait(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct shim *s = data;
	const Task(WaitRequest) *r = (const Task(WaitRequest) *)req;
	struct proc *p = shim_lookup(s, call, r->id, r->exec_id);
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
		shim_fill_ts(&ts, &p->exited_at);
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
	struct proc *p = shim_lookup(s, call, r->id, r->exec_id);
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
	struct proc *p = shim_lookup(s, call, id, exec_id);
	if (!p)
		return;
	switch (shim_check(call, p, op)) {
	case PROC_ALLOW:
		forward(s, call, method, req, &google__protobuf__empty__descriptor, NULL, p);
		return;
	case PROC_NOOP:
		ttrpc_call_reply(call, &shim_empty.base);
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
	struct proc *init = shim_lookup(s, call, r->id, "");
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
	struct proc *init = shim_lookup(s, call, r->id, "");
	if (init && shim_check(call, init, pause ? PROC_OP_PAUSE : PROC_OP_RESUME) == PROC_ALLOW)
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
	struct proc *init = shim_lookup(s, call, id, "");
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
	struct proc *p = shim_lookup(s, call, r->id, r->exec_id);
	if (!p)
		return;
	enum proc_verdict v = shim_check(call, p, PROC_OP_IO);
	if (v == PROC_REFUSE)
		return;
	/* Our vsock stream's EOF is the guest process's stdin EOF. */
	if (v == PROC_ALLOW && r->stdin)
		proc_close_input(p);
	ttrpc_call_reply(call, &shim_empty.base);
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
	ttrpc_call_reply(call, &shim_empty.base);
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
		{ "State", on_state },	   { "Create", shim_on_create },	  { "Start", on_start },
		{ "Delete", shim_on_delete },   { "Pids", on_pids },		  { "Pause", on_pause },
		{ "Resume", on_resume },   { "Kill", on_kill },		  { "Exec", on_exec },
		{ "ResizePty", on_resize_pty }, { "CloseIO", on_close_io }, { "Update", on_update },
		{ "Wait", on_wait },	   { "Stats", on_stats },	  { "Connect", on_connect },
		{ "Shutdown", on_shutdown },
		/* Checkpoint: no handler, answered UNIMPLEMENTED */
	};
	return ttrpc_server_add_service_named(s->server, &containerd__task__v2__task__descriptor,
					      methods, ARRAY_SIZE(methods), s, err);
}
