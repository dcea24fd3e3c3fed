/* containerd.task.v2.Task, served by the guest agent with containerd 1.6's
 * messages. States, exit statuses and error codes follow
 * containerd-shim-runc-v2: NOT_FOUND for unknown ids, FAILED_PRECONDITION
 * for calls in the wrong state, ALREADY_EXISTS for duplicates. */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "agent.h"
#include "init/console.h"
#include "github.com/containerd/cgroups/v2/stats/metrics.pb-c.h"
#include "github.com/containerd/containerd/runtime/v2/task/shim.pb-c.h"
#include "husk/cleanup.h"
#include "husk/netif.h"
#include "husk/path.h"
#include "init/reaper.h"
#include "jail/cgroup.h"
#include "jail/hooks.h"

/* containerd's messages have fields named stdin, stdout and stderr, which
 * musl defines as macros. This file uses no FILE streams: drop them. */
#undef stdin
#undef stdout
#undef stderr

#define Task(x) Containerd__Task__V2__##x
#define STATUS(x) CONTAINERD__V1__TYPES__STATUS__##x

static const Google__Protobuf__Empty empty = GOOGLE__PROTOBUF__EMPTY__INIT;

static void fail_err(struct ttrpc_call *call, const struct husk_err *err)
{
	ttrpc_call_fail(call, ttrpc_code_from_errno(err->code), "%s", err->msg);
}

/* Finds the container and process a request names, or answers NOT_FOUND. */
static struct process *lookup(struct ttrpc_call *call, struct agent *a, const char *id,
			      const char *exec_id, struct container **cp)
{
	struct container *c = agent_find(a, id);
	if (!c) {
		ttrpc_call_fail(call, TTRPC_NOT_FOUND, "container %s: not found", id);
		return NULL;
	}
	struct process *p = container_find_process(c, exec_id);
	if (!p) {
		ttrpc_call_fail(call, TTRPC_NOT_FOUND, "process %s of container %s: not found", exec_id,
				id);
		return NULL;
	}
	if (cp)
		*cp = c;
	return p;
}

static Containerd__V1__Types__Status status_of(const struct process *p)
{
	if (p->reported)
		return STATUS(STOPPED);
	if (p->status == PROC_CREATED)
		return STATUS(CREATED);
	if (p->c->paused)
		return STATUS(PAUSED);
	return STATUS(RUNNING);
}

static void on_proc_exit(pid_t pid, int status, void *data)
{
	(void)pid;
	process_on_exit(data, status);
}

static void on_cgroup_event(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io;
	(void)events;
	struct container *c = data;
	char buf[4096];
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	uint64_t kills = 0;
	if (!c->jc || !c->jc->cgroup || jail_cgroup_oom_kills(c->jc->cgroup, &kills, NULL) < 0)
		return;
	if (kills > c->oom_kills) {
		c->oom_kills = kills;
		events_push(c->agent, AGENT_EVENT_OOM, c, NULL);
	}
}

/* ---- Create ---- */

static int make_state_dir(struct agent *a, const char *id, char **out, struct husk_err *err)
{
	char path[4096];
	if (husk_path_fmt(path, sizeof(path), "%s/state", a->opt.run_dir) < 0)
		return husk_err_set(err, -ENAMETOOLONG, "run dir too long");
	mkdir(path, 0700);
	if (husk_path_fmt(path, sizeof(path), "%s/state/%s", a->opt.run_dir, id) < 0)
		return husk_err_set(err, -ENAMETOOLONG, "state dir too long");
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return husk_err_sys(err, -errno, "mkdir %s", path);
	*out = strdup(path);
	return *out ? 0 : -ENOMEM;
}

static void remove_state_dir(const char *dir)
{
	if (!dir)
		return;
	char path[4096];
	if (husk_path_fmt(path, sizeof(path), "%s/exec.fifo", dir) == 0)
		unlink(path);
	rmdir(dir);
}

/* A container without a network namespace of its own uses the VM's: its
 * "lo" comes up then, once, rather than at boot, where it cost about 20 ms
 * of a TCG boot and most VMs (pods: the sandbox has its own) never use it.
 * A failure is a warning, as a container may not need the loopback. */
static void vm_loopback_up(struct agent *a)
{
	if (!a->opt.pid1 || a->vm_lo_up)
		return;
	struct husk_err err = { 0 };
	if (husk_loopback_up(&err) < 0)
		init_log(INIT_LOG_WARNING, "the VM's network namespace: %s", err.msg);
	else
		a->vm_lo_up = true;
}

static void on_create(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct agent *a = data;
	const Task(CreateTaskRequest) *r = (const Task(CreateTaskRequest) *)req;
	struct husk_err err = { 0 };
	if (agent_check_id("id", r->id, &err) < 0) {
		fail_err(call, &err);
		return;
	}
	if (agent_find(a, r->id)) {
		ttrpc_call_fail(call, TTRPC_ALREADY_EXISTS, "container %s: already exists", r->id);
		return;
	}
	if (*r->checkpoint) {
		ttrpc_call_fail(call, TTRPC_UNIMPLEMENTED, "checkpoint: restoring is not supported");
		return;
	}
	if (r->n_rootfs) {
		ttrpc_call_fail(call, TTRPC_INVALID_ARGUMENT,
				"rootfs: %zu mounts given; the guest mounts the root filesystem with Sandbox.CreateBundle",
				r->n_rootfs);
		return;
	}
	if (r->bundle[0] != '/') {
		ttrpc_call_fail(call, TTRPC_INVALID_ARGUMENT, "bundle \"%s\": not an absolute path",
				r->bundle);
		return;
	}
	struct container *c = calloc(1, sizeof(*c));
	if (!c) {
		ttrpc_call_fail(call, TTRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	c->agent = a;
	c->events_fd = -1;
	c->init.c = c;
	c->init.pid = -1;
	c->id = strdup(r->id);
	c->bundle = strdup(r->bundle);
	c->init.terminal = r->terminal;
	c->init.stdin_uri = strdup(r->stdin);
	c->init.stdout_uri = strdup(r->stdout);
	c->init.stderr_uri = strdup(r->stderr);
	int rc;
	if ((rc = jail_spec_load(r->bundle, &c->spec, &err)) < 0)
		goto fail;
	if (c->spec->process.terminal != r->terminal) {
		rc = husk_err_set(&err, -EINVAL, "terminal: request says %s, config.json says %s",
				  r->terminal ? "true" : "false",
				  c->spec->process.terminal ? "true" : "false");
		goto fail;
	}
	if ((rc = make_state_dir(a, r->id, &c->state_dir, &err)) < 0 ||
	    (rc = stdio_setup(a, &c->init, r->stdin, r->stdout, r->stderr, r->terminal, &err)) < 0)
		goto fail;
	if (!jail_spec_namespace(c->spec, CLONE_NEWNET))
		vm_loopback_up(a);
	char cgpath[256];
	snprintf(cgpath, sizeof(cgpath), "/husk/%s", r->id);
	struct jail_create_opts opts = {
		.id = c->id,
		.bundle = c->bundle,
		.state_dir = c->state_dir,
		.cgroup_mount = a->opt.cgroup_mount,
		.default_cgroup_path = cgpath,
		.loopback_up = true,
		.stdio = { c->init.io.container_fds[0], c->init.io.container_fds[1],
			   c->init.io.container_fds[2] },
	};
	if ((rc = jail_container_create(c->spec, &opts, &c->jc, &err)) < 0)
		goto fail;
	c->init.pid = c->jc->pid;
	stdio_close_container_fds(&c->init);
	if (c->jc->console_fd >= 0) {
		stdio_attach_pty(&c->init, c->jc->console_fd);
		c->jc->console_fd = -1;
	}
	init_reaper_watch(a->reaper, c->init.pid, on_proc_exit, &c->init);
	if (c->jc->cgroup) {
		c->events_fd = jail_cgroup_events_fd(c->jc->cgroup);
		if (c->events_fd >= 0)
			ev_io_add(a->loop, c->events_fd, EPOLLIN, on_cgroup_event, c, &c->events_io,
				  NULL);
	}
	c->next = a->containers;
	a->containers = c;
	init_log(INIT_LOG_INFO, "container %s: created, pid %d, bundle %s", c->id, (int)c->init.pid,
		 c->bundle);
	Task(CreateTaskResponse) resp = CONTAINERD__TASK__V2__CREATE_TASK_RESPONSE__INIT;
	resp.pid = (uint32_t)c->init.pid;
	ttrpc_call_reply(call, &resp.base);
	return;
fail:
	(void)rc;
	remove_state_dir(c->state_dir);
	container_free(c);
	fail_err(call, &err);
}

/* ---- Start, Exec ---- */

static void start_exec(struct ttrpc_call *call, struct container *c, struct process *p)
{
	struct agent *a = c->agent;
	struct husk_err err = { 0 };
	if (c->init.status != PROC_RUNNING || c->init.exited) {
		ttrpc_call_fail(call, TTRPC_FAILED_PRECONDITION, "container %s: not running", c->id);
		return;
	}
	struct jail_exec_opts eo = {
		.target = c->init.pid,
		.cgroup_dir = c->jc->cgroup ? jail_cgroup_path(c->jc->cgroup) : NULL,
		.stdio = { p->io.container_fds[0], p->io.container_fds[1], p->io.container_fds[2] },
		.seccomp = c->spec->has_seccomp ? &c->spec->seccomp : NULL,
		.spec = c->spec,
	};
	pid_t pid;
	int console;
	if (jail_exec(p->exec_spec, &eo, &pid, &console, &err) < 0) {
		fail_err(call, &err);
		return;
	}
	p->pid = pid;
	p->status = PROC_RUNNING;
	stdio_close_container_fds(p);
	if (console >= 0)
		stdio_attach_pty(p, console);
	init_reaper_watch(a->reaper, pid, on_proc_exit, p);
	Task(StartResponse) resp = CONTAINERD__TASK__V2__START_RESPONSE__INIT;
	resp.pid = (uint32_t)pid;
	ttrpc_call_reply(call, &resp.base);
}

static void on_start(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct agent *a = data;
	const Task(StartRequest) *r = (const Task(StartRequest) *)req;
	struct container *c;
	struct process *p = lookup(call, a, r->id, r->exec_id, &c);
	if (!p)
		return;
	if (p->status != PROC_CREATED) {
		ttrpc_call_fail(call, TTRPC_FAILED_PRECONDITION, "process %s%s%s: already started",
				r->id, *r->exec_id ? "/" : "", r->exec_id);
		return;
	}
	if (p != &c->init) {
		start_exec(call, c, p);
		return;
	}
	struct husk_err err = { 0 };
	struct jail_create_opts opts = { .id = c->id, .bundle = c->bundle, .state_dir = c->state_dir };
	if (jail_container_start(c->spec, &opts, c->jc, &err) < 0) {
		fail_err(call, &err);
		return;
	}
	p->status = PROC_RUNNING;
	Task(StartResponse) resp = CONTAINERD__TASK__V2__START_RESPONSE__INIT;
	resp.pid = (uint32_t)p->pid;
	ttrpc_call_reply(call, &resp.base);
}

static void on_exec(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct agent *a = data;
	const Task(ExecProcessRequest) *r = (const Task(ExecProcessRequest) *)req;
	struct husk_err err = { 0 };
	struct container *c = agent_find(a, r->id);
	if (!c) {
		ttrpc_call_fail(call, TTRPC_NOT_FOUND, "container %s: not found", r->id);
		return;
	}
	if (agent_check_id("exec_id", r->exec_id, &err) < 0) {
		fail_err(call, &err);
		return;
	}
	if (container_find_process(c, r->exec_id)) {
		ttrpc_call_fail(call, TTRPC_ALREADY_EXISTS, "exec %s of container %s: already exists",
				r->exec_id, r->id);
		return;
	}
	if (c->init.reported || c->init.exited) {
		ttrpc_call_fail(call, TTRPC_FAILED_PRECONDITION, "container %s: not running", r->id);
		return;
	}
	if (!r->spec || !r->spec->value.len) {
		ttrpc_call_fail(call, TTRPC_INVALID_ARGUMENT, "spec: a process spec is required");
		return;
	}
	struct process *p = calloc(1, sizeof(*p));
	if (!p) {
		ttrpc_call_fail(call, TTRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	p->c = c;
	p->pid = -1;
	p->exec_id = strdup(r->exec_id);
	p->terminal = r->terminal;
	p->stdin_uri = strdup(r->stdin);
	p->stdout_uri = strdup(r->stdout);
	p->stderr_uri = strdup(r->stderr);
	if (jail_process_parse((const char *)r->spec->value.data, r->spec->value.len, &p->exec_spec,
			       &err) < 0 ||
	    stdio_setup(a, p, r->stdin, r->stdout, r->stderr, r->terminal, &err) < 0) {
		stdio_free(p);
		free(p->exec_id);
		free(p->stdin_uri);
		free(p->stdout_uri);
		free(p->stderr_uri);
		jail_process_free(p->exec_spec);
		free(p);
		fail_err(call, &err);
		return;
	}
	p->exec_spec->terminal = r->terminal;
	p->next = c->execs;
	c->execs = p;
	ttrpc_call_reply(call, &empty.base);
}

/* ---- Kill, Wait, State, Pids ---- */

/* Whether a signal's default action ends the process (not ignored, not a
 * stop or continue). */
static bool sig_default_terminates(int sig)
{
	switch (sig) {
	case SIGCHLD:
	case SIGCONT:
	case SIGURG:
	case SIGWINCH:
	case SIGSTOP:
	case SIGTSTP:
	case SIGTTIN:
	case SIGTTOU:
		return false;
	default:
		return true;
	}
}

static void on_kill(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct agent *a = data;
	const Task(KillRequest) *r = (const Task(KillRequest) *)req;
	struct container *c;
	struct process *p = lookup(call, a, r->id, r->exec_id, &c);
	if (!p)
		return;
	if (r->signal == 0 || r->signal > 64) {
		ttrpc_call_fail(call, TTRPC_INVALID_ARGUMENT, "signal %u: not a signal", r->signal);
		return;
	}
	if (p->exited || p->pid <= 0) {
		ttrpc_call_fail(call, TTRPC_NOT_FOUND, "process %s%s%s: %s", r->id,
				*r->exec_id ? "/" : "", r->exec_id,
				p->pid <= 0 ? "not started" : "process already finished");
		return;
	}
	struct husk_err err = { 0 };
	int sig = (int)r->signal;
	/* A created, never started init waits in the jail as PID 1 of its pid
	 * namespace, where the kernel drops signals it has no handler for:
	 * runc's Go init dies of them, so this one does too. */
	if (p == &c->init && p->status == PROC_CREATED && sig_default_terminates(sig))
		sig = SIGKILL;
	if (r->all && c->jc->cgroup && p == &c->init) {
		if (jail_cgroup_signal(c->jc->cgroup, sig, &err) < 0) {
			fail_err(call, &err);
			return;
		}
	} else if (kill(p->pid, sig) < 0) {
		ttrpc_call_fail(call, TTRPC_NOT_FOUND, "kill %d: %s", p->pid, strerror(errno));
		return;
	}
	ttrpc_call_reply(call, &empty.base);
}

static void on_wait_cancel(struct ttrpc_call *call, void *data)
{
	struct process *p = data;
	for (struct waiter **pp = &p->waiters; *pp; pp = &(*pp)->next) {
		if ((*pp)->call == call) {
			struct waiter *w = *pp;
			*pp = w->next;
			free(w);
			return;
		}
	}
}

static void on_wait(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct agent *a = data;
	const Task(WaitRequest) *r = (const Task(WaitRequest) *)req;
	struct process *p = lookup(call, a, r->id, r->exec_id, NULL);
	if (!p)
		return;
	if (p->reported) {
		Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
		ts.seconds = p->exited_at.tv_sec;
		ts.nanos = (int32_t)p->exited_at.tv_nsec;
		Task(WaitResponse) resp = CONTAINERD__TASK__V2__WAIT_RESPONSE__INIT;
		resp.exit_status = p->exit_status;
		resp.exited_at = &ts;
		ttrpc_call_reply(call, &resp.base);
		return;
	}
	struct waiter *w = calloc(1, sizeof(*w));
	if (!w) {
		ttrpc_call_fail(call, TTRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	w->call = call;
	w->next = p->waiters;
	p->waiters = w;
	ttrpc_call_defer(call, on_wait_cancel, p);
}

static void on_state(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct agent *a = data;
	const Task(StateRequest) *r = (const Task(StateRequest) *)req;
	struct container *c;
	struct process *p = lookup(call, a, r->id, r->exec_id, &c);
	if (!p)
		return;
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	Task(StateResponse) resp = CONTAINERD__TASK__V2__STATE_RESPONSE__INIT;
	resp.id = c->id;
	resp.bundle = c->bundle;
	resp.pid = p->pid > 0 ? (uint32_t)p->pid : 0;
	resp.status = status_of(p);
	resp.stdin = p->stdin_uri ? p->stdin_uri : "";
	resp.stdout = p->stdout_uri ? p->stdout_uri : "";
	resp.stderr = p->stderr_uri ? p->stderr_uri : "";
	resp.terminal = p->terminal;
	resp.exec_id = p->exec_id ? p->exec_id : "";
	if (p->reported) {
		resp.exit_status = p->exit_status;
		ts.seconds = p->exited_at.tv_sec;
		ts.nanos = (int32_t)p->exited_at.tv_nsec;
		resp.exited_at = &ts;
	}
	ttrpc_call_reply(call, &resp.base);
}

static void on_pids(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct agent *a = data;
	const Task(PidsRequest) *r = (const Task(PidsRequest) *)req;
	struct container *c;
	if (!lookup(call, a, r->id, "", &c))
		return;
	_cleanup_free_ pid_t *pids = NULL;
	size_t n = 0;
	struct husk_err err = { 0 };
	if (c->jc->cgroup) {
		if (jail_cgroup_pids(c->jc->cgroup, &pids, &n, &err) < 0) {
			fail_err(call, &err);
			return;
		}
	} else if (!c->init.exited) {
		pids = malloc(sizeof(pid_t));
		if (pids) {
			pids[0] = c->init.pid;
			n = 1;
		}
	}
	Containerd__V1__Types__ProcessInfo *infos = calloc(n ? n : 1, sizeof(*infos));
	Containerd__V1__Types__ProcessInfo **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
	if (!infos || !ptrs) {
		free(infos);
		free(ptrs);
		ttrpc_call_fail(call, TTRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	for (size_t i = 0; i < n; i++) {
		containerd__v1__types__process_info__init(&infos[i]);
		infos[i].pid = (uint32_t)pids[i];
		ptrs[i] = &infos[i];
	}
	Task(PidsResponse) resp = CONTAINERD__TASK__V2__PIDS_RESPONSE__INIT;
	resp.n_processes = n;
	resp.processes = ptrs;
	ttrpc_call_reply(call, &resp.base);
	free(infos);
	free(ptrs);
}

/* ---- Pause, Resume, ResizePty, CloseIO, Update, Stats ---- */

static struct container *running_with_cgroup(struct ttrpc_call *call, struct agent *a,
					     const char *id)
{
	struct container *c;
	if (!lookup(call, a, id, "", &c))
		return NULL;
	if (!c->jc->cgroup) {
		ttrpc_call_fail(call, TTRPC_FAILED_PRECONDITION,
				"container %s: runs without cgroups (agent started without a cgroup2 mount)",
				id);
		return NULL;
	}
	return c;
}

static void freeze(struct ttrpc_call *call, struct agent *a, const char *id, bool frozen)
{
	struct container *c = running_with_cgroup(call, a, id);
	if (!c)
		return;
	if (c->init.status != PROC_RUNNING || c->init.exited) {
		ttrpc_call_fail(call, TTRPC_FAILED_PRECONDITION, "container %s: not running", id);
		return;
	}
	struct husk_err err = { 0 };
	if (jail_cgroup_freeze(c->jc->cgroup, frozen, &err) < 0) {
		fail_err(call, &err);
		return;
	}
	c->paused = frozen;
	ttrpc_call_reply(call, &empty.base);
}

static void on_pause(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	freeze(call, data, ((const Task(PauseRequest) *)req)->id, true);
}

static void on_resume(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	freeze(call, data, ((const Task(ResumeRequest) *)req)->id, false);
}

static void on_resize_pty(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	const Task(ResizePtyRequest) *r = (const Task(ResizePtyRequest) *)req;
	struct process *p = lookup(call, data, r->id, r->exec_id, NULL);
	if (!p)
		return;
	if (p->io.pty_master < 0) {
		ttrpc_call_fail(call, TTRPC_FAILED_PRECONDITION, "process %s: has no terminal", r->id);
		return;
	}
	struct winsize ws = { .ws_row = (unsigned short)r->height, .ws_col = (unsigned short)r->width };
	if (ioctl(p->io.pty_master, TIOCSWINSZ, &ws) < 0) {
		ttrpc_call_fail(call, TTRPC_INTERNAL, "resize pty: %s", strerror(errno));
		return;
	}
	ttrpc_call_reply(call, &empty.base);
}

static void on_close_io(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	const Task(CloseIORequest) *r = (const Task(CloseIORequest) *)req;
	struct process *p = lookup(call, data, r->id, r->exec_id, NULL);
	if (!p)
		return;
	if (r->stdin)
		stdio_close_stdin(p);
	ttrpc_call_reply(call, &empty.base);
}

static void on_update(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	const Task(UpdateTaskRequest) *r = (const Task(UpdateTaskRequest) *)req;
	struct container *c = running_with_cgroup(call, data, r->id);
	if (!c)
		return;
	if (!r->resources || !r->resources->value.len) {
		ttrpc_call_fail(call, TTRPC_INVALID_ARGUMENT, "resources: required");
		return;
	}
	/* The Any holds specs.LinuxResources as JSON: parse it with the spec
	 * parser's own rules, wrapped in a minimal config. */
	size_t len = r->resources->value.len;
	char *json = malloc(len + 128);
	if (!json) {
		ttrpc_call_fail(call, TTRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	int n = snprintf(json, len + 128, "{\"ociVersion\":\"1.0.2\",\"root\":{\"path\":\"/\"},\"linux\":{\"resources\":%.*s}}",
			 (int)len, (const char *)r->resources->value.data);
	struct jail_spec *spec = NULL;
	struct husk_err err = { 0 };
	int rc = jail_spec_parse(json, (size_t)n, NULL, &spec, &err);
	free(json);
	if (rc == 0)
		rc = jail_cgroup_apply(c->jc->cgroup, &spec->resources, &err);
	jail_spec_free(spec);
	if (rc < 0) {
		fail_err(call, &err);
		return;
	}
	ttrpc_call_reply(call, &empty.base);
}

static void on_stats(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	const Task(StatsRequest) *r = (const Task(StatsRequest) *)req;
	struct container *c = running_with_cgroup(call, data, r->id);
	if (!c)
		return;
	struct jail_cgroup_stats st;
	struct husk_err err = { 0 };
	if (jail_cgroup_stats(c->jc->cgroup, &st, &err) < 0) {
		fail_err(call, &err);
		return;
	}
	Io__Containerd__Cgroups__V2__PidsStat pids = IO__CONTAINERD__CGROUPS__V2__PIDS_STAT__INIT;
	pids.current = st.pids.current;
	pids.limit = st.pids.limit;
	Io__Containerd__Cgroups__V2__CPUStat cpu = IO__CONTAINERD__CGROUPS__V2__CPUSTAT__INIT;
	cpu.usage_usec = st.cpu.usage_usec;
	cpu.user_usec = st.cpu.user_usec;
	cpu.system_usec = st.cpu.system_usec;
	cpu.nr_periods = st.cpu.nr_periods;
	cpu.nr_throttled = st.cpu.nr_throttled;
	cpu.throttled_usec = st.cpu.throttled_usec;
	Io__Containerd__Cgroups__V2__MemoryStat mem = IO__CONTAINERD__CGROUPS__V2__MEMORY_STAT__INIT;
#define M(f) mem.f = st.memory.f
	M(anon), M(file), M(kernel_stack), M(slab), M(sock), M(shmem), M(file_mapped),
		M(file_dirty), M(file_writeback), M(anon_thp), M(inactive_anon), M(active_anon),
		M(inactive_file), M(active_file), M(unevictable), M(slab_reclaimable),
		M(slab_unreclaimable), M(pgfault), M(pgmajfault), M(workingset_refault),
		M(workingset_activate), M(workingset_nodereclaim), M(pgrefill), M(pgscan),
		M(pgsteal), M(pgactivate), M(pgdeactivate), M(pglazyfree), M(pglazyfreed),
		M(thp_fault_alloc), M(thp_collapse_alloc), M(usage), M(usage_limit), M(swap_usage),
		M(swap_limit);
#undef M
	Io__Containerd__Cgroups__V2__MemoryEvents mev = IO__CONTAINERD__CGROUPS__V2__MEMORY_EVENTS__INIT;
	mev.low = st.memory_events.low;
	mev.high = st.memory_events.high;
	mev.max = st.memory_events.max;
	mev.oom = st.memory_events.oom;
	mev.oom_kill = st.memory_events.oom_kill;
	Io__Containerd__Cgroups__V2__IOEntry *ios = calloc(st.n_io ? st.n_io : 1, sizeof(*ios));
	Io__Containerd__Cgroups__V2__IOEntry **iop = calloc(st.n_io ? st.n_io : 1, sizeof(*iop));
	Io__Containerd__Cgroups__V2__IOStat io = IO__CONTAINERD__CGROUPS__V2__IOSTAT__INIT;
	for (size_t i = 0; ios && iop && i < st.n_io; i++) {
		io__containerd__cgroups__v2__ioentry__init(&ios[i]);
		ios[i].major = st.io[i].major;
		ios[i].minor = st.io[i].minor;
		ios[i].rbytes = st.io[i].rbytes;
		ios[i].wbytes = st.io[i].wbytes;
		ios[i].rios = st.io[i].rios;
		ios[i].wios = st.io[i].wios;
		iop[i] = &ios[i];
		io.n_usage = i + 1;
	}
	io.usage = iop;
	Io__Containerd__Cgroups__V2__Metrics m = IO__CONTAINERD__CGROUPS__V2__METRICS__INIT;
	m.pids = &pids;
	m.cpu = &cpu;
	m.memory = &mem;
	m.io = &io;
	if (st.memory_events.present)
		m.memory_events = &mev;
	size_t len = protobuf_c_message_get_packed_size(&m.base);
	uint8_t *buf = malloc(len ? len : 1);
	if (buf) {
		protobuf_c_message_pack(&m.base, buf);
		Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
		any.type_url = "io.containerd.cgroups.v2.Metrics";
		any.value.data = buf;
		any.value.len = len;
		Task(StatsResponse) resp = CONTAINERD__TASK__V2__STATS_RESPONSE__INIT;
		resp.stats = &any;
		ttrpc_call_reply(call, &resp.base);
	} else {
		ttrpc_call_fail(call, TTRPC_RESOURCE_EXHAUSTED, "out of memory");
	}
	free(buf);
	free(ios);
	free(iop);
	jail_cgroup_stats_free(&st);
}

/* ---- Delete, Connect, Shutdown ---- */

static void reply_delete(struct ttrpc_call *call, const struct process *p)
{
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	ts.seconds = p->exited_at.tv_sec;
	ts.nanos = (int32_t)p->exited_at.tv_nsec;
	Task(DeleteResponse) resp = CONTAINERD__TASK__V2__DELETE_RESPONSE__INIT;
	resp.pid = p->pid > 0 ? (uint32_t)p->pid : 0;
	resp.exit_status = p->exit_status;
	resp.exited_at = &ts;
	ttrpc_call_reply(call, &resp.base);
}

static void delete_container(struct agent *a, struct container *c)
{
	struct husk_err err = { 0 };
	if (c->jc && c->jc->cgroup) {
		if (jail_cgroup_destroy(c->jc->cgroup, &err) < 0)
			dprintf(2, "husk-agent: delete %s: %s\n", c->id, err.msg);
		c->jc->cgroup = NULL;
	}
	if (c->spec && c->spec->hooks.n_poststop) {
		_cleanup_free_ char *state = jail_state_json(c->id, "stopped", 0, c->bundle, c->spec);
		if (jail_hooks_run("poststop", c->spec->hooks.poststop, c->spec->hooks.n_poststop,
				   state ? state : "{}", &err) < 0)
			dprintf(2, "husk-agent: warning: %s\n", err.msg);
	}
	remove_state_dir(c->state_dir);
	sandbox_remove_bundle(a, c->id);
	for (struct container **pp = &a->containers; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	container_free(c);
}

static void on_delete(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct agent *a = data;
	const Task(DeleteRequest) *r = (const Task(DeleteRequest) *)req;
	struct container *c;
	struct process *p = lookup(call, a, r->id, r->exec_id, &c);
	if (!p)
		return;
	bool running = p->status == PROC_RUNNING && !p->exited;
	if (running) {
		ttrpc_call_fail(call, TTRPC_FAILED_PRECONDITION,
				"process %s%s%s: still running; kill it and wait first", r->id,
				*r->exec_id ? "/" : "", r->exec_id);
		return;
	}
	if (p->status == PROC_CREATED && p->pid > 0 && !p->exited)
		kill(p->pid, SIGKILL); /* created, never started: runc deletes these too */
	if (!p->reported) {
		/* The host never took the output: stop waiting for it. */
		stdio_abandon(p);
		if (p->exited)
			process_maybe_report(p);
	}
	reply_delete(call, p);
	if (p != &c->init) {
		for (struct process **pp = &c->execs; *pp; pp = &(*pp)->next)
			if (*pp == p) {
				*pp = p->next;
				break;
			}
		process_destroy(p);
		return;
	}
	delete_container(a, c);
}

static void on_connect(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct agent *a = data;
	const Task(ConnectRequest) *r = (const Task(ConnectRequest) *)req;
	struct container *c;
	if (!lookup(call, a, r->id, "", &c))
		return;
	Task(ConnectResponse) resp = CONTAINERD__TASK__V2__CONNECT_RESPONSE__INIT;
	resp.shim_pid = (uint32_t)getpid();
	resp.task_pid = c->init.pid > 0 ? (uint32_t)c->init.pid : 0;
	resp.version = "husk-agent " HUSK_AGENT_VERSION;
	ttrpc_call_reply(call, &resp.base);
}

static void on_shutdown(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct agent *a = data;
	const Task(ShutdownRequest) *r = (const Task(ShutdownRequest) *)req;
	ttrpc_call_reply(call, &empty.base);
	/* As the runc shim: only once nothing is left, unless told "now". */
	if (r->now || !a->containers) {
		a->shutting_down = true;
		ev_stop(a->loop);
	}
}

int task_service_register(struct agent *a, struct husk_err *err)
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
	return ttrpc_server_add_service_named(a->server, &containerd__task__v2__task__descriptor,
					      methods, ARRAY_SIZE(methods), a, err);
}
