/* fake-agent --listen unix:PATH: a tiny stand-in for husk-agent, for tests
 * that run the shim's VM on libhusk's fake VMM backend (vmm = "fake",
 * vmm_binary = this program; tests/containerd/test_shim_vm.c). The backend
 * runs it as the whole VM: PATH is the VM's agent.sock (guest port 1024).
 * It has no guest, no log stream (port 1025) and no stdio ports.
 *
 * It serves:
 *   husk.sandbox.v1.Sandbox  Check, CreateSandbox, CreateBundle (the bundle
 *       is /run/husk/bundles/<id>), GetEvents (a long poll that never has
 *       an event: it ends at the caller's deadline, or never), GuestDetails,
 *       DestroySandbox (replies, then exits 0 shortly after, as a guest
 *       powers off), ReleaseDisk;
 *   containerd.task.v2.Task  Create (pid 42), Start, Wait (answered when the
 *       process exits), Kill (the process exits with 128+signal), Delete,
 *       State: a process table and nothing behind it.
 *
 * $FAKE_AGENT_LOG: one line per call appended, "<pid> <Method> [details]"
 * (details: id=<container> exec=<exec id> serial=<disk> signal=<n>).
 * $FAKE_AGENT_FAIL: "Method[,Method...]" makes those calls fail with
 * INTERNAL and a message naming the method; "Method:ID" only those about
 * container ID (CreateBundle:c2). The call is logged all the same.
 * SIGTERM or SIGINT: exits 0. SIGUSR1: the agent "crashes" but the VM
 * stays: every connection and the listener close, the process runs on
 * (until SIGTERM). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "github.com/containerd/containerd/runtime/v2/task/shim.pb-c.h"
#include "google/protobuf/empty.pb-c.h"
#include "husk/cleanup.h"
#include "husk/sandbox.pb-c.h"
#include "husk/sock.h"
#include "ttrpc/loop.h"
#include "ttrpc/server.h"

#define FAKE_PID 42
#define FAKE_VERSION "fake-agent 1"
/* DestroySandbox: time for the reply to leave before the "guest" is gone. */
#define POWEROFF_DELAY_NS (20ull * 1000000ull)

struct fake_waiter {
	struct ttrpc_call *call;
	struct fake_proc *p;
	struct fake_waiter *next;
};

struct fake_proc {
	char *id, *exec_id;
	uint32_t pid;
	bool started, exited;
	uint32_t status;
	struct timespec exited_at;
	struct fake_waiter *waiters;
	struct fake_proc *next;
};

struct fake {
	struct ev_loop *loop;
	struct ttrpc_server *srv;
	struct fake_proc *procs;
	struct ev_timer *poweroff;
	uint64_t t0;
	int rc;
};

/* ---- the call log and injected failures ---- */

__attribute__((format(printf, 2, 3))) static void log_call(const char *method, const char *fmt, ...)
{
	const char *path = getenv("FAKE_AGENT_LOG");
	if (!path || !*path)
		return;
	char line[1024];
	int n = snprintf(line, sizeof(line), "%d %s", (int)getpid(), method);
	if (fmt && n > 0 && (size_t)n < sizeof(line) - 1) {
		line[n++] = ' ';
		va_list ap;
		va_start(ap, fmt);
		int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
		va_end(ap);
		n = m < 0 ? n : n + m;
	}
	if (n < 0 || (size_t)n >= sizeof(line) - 1)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	/* One write with O_APPEND: lines of concurrent agents do not mix. */
	_cleanup_fd_ int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd >= 0)
		(void)!write(fd, line, (size_t)n);
}

/* Whether $FAKE_AGENT_FAIL names `method` (for container `id`, which may be
 * NULL). */
static bool failing(const char *method, const char *id)
{
	const char *list = getenv("FAKE_AGENT_FAIL");
	size_t n = strlen(method);
	for (const char *p = list; p && *p; p += strcspn(p, ","), p += *p == ',') {
		size_t len = strcspn(p, ",");
		if (len < n || strncmp(p, method, n) != 0)
			continue;
		if (len == n)
			return true;
		if (p[n] == ':' && id && strlen(id) == len - n - 1 &&
		    strncmp(p + n + 1, id, len - n - 1) == 0)
			return true;
	}
	return false;
}

/* Fails the call when asked to; true when it did. */
static bool fail_if_asked(struct ttrpc_call *call, const char *method, const char *id)
{
	if (!failing(method, id))
		return false;
	ttrpc_call_fail(call, TTRPC_INTERNAL, "fake-agent: %s fails (FAKE_AGENT_FAIL)", method);
	return true;
}

/* ---- husk.sandbox.v1.Sandbox ---- */

static void on_check(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	(void)req;
	struct fake *f = data;
	log_call("Check", NULL);
	if (fail_if_asked(call, "Check", NULL))
		return;
	Husk__Sandbox__V1__CheckResponse r = HUSK__SANDBOX__V1__CHECK_RESPONSE__INIT;
	r.version = (char *)FAKE_VERSION;
	r.uptime_ns = ev_now_ns() - f->t0;
	ttrpc_call_reply(call, &r.base);
}

static void on_create_sandbox(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	(void)data;
	const Husk__Sandbox__V1__CreateSandboxRequest *r =
		(const Husk__Sandbox__V1__CreateSandboxRequest *)req;
	log_call("CreateSandbox", "hostname=%s", r->hostname);
	if (fail_if_asked(call, "CreateSandbox", NULL))
		return;
	Google__Protobuf__Empty e = GOOGLE__PROTOBUF__EMPTY__INIT;
	ttrpc_call_reply(call, &e.base);
}

static void on_create_bundle(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	(void)data;
	const Husk__Sandbox__V1__CreateBundleRequest *r =
		(const Husk__Sandbox__V1__CreateBundleRequest *)req;
	log_call("CreateBundle", "id=%s serial=%s", r->container_id, r->rootfs_serial);
	if (fail_if_asked(call, "CreateBundle", r->container_id))
		return;
	if (!*r->container_id) {
		ttrpc_call_fail(call, TTRPC_INVALID_ARGUMENT, "fake-agent: CreateBundle: no id");
		return;
	}
	char bundle[512];
	snprintf(bundle, sizeof(bundle), "/run/husk/bundles/%s", r->container_id);
	Husk__Sandbox__V1__CreateBundleResponse resp = HUSK__SANDBOX__V1__CREATE_BUNDLE_RESPONSE__INIT;
	resp.bundle = bundle;
	ttrpc_call_reply(call, &resp.base);
}

static void events_cancel(struct ttrpc_call *call, void *data)
{
	(void)call, (void)data; /* nothing kept */
}

/* Nothing ever happens here: the poll ends at its deadline (the server
 * answers that itself), or when the connection goes. */
static void on_get_events(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	(void)data;
	const Husk__Sandbox__V1__GetEventsRequest *r =
		(const Husk__Sandbox__V1__GetEventsRequest *)req;
	log_call("GetEvents", "after=%llu", (unsigned long long)r->after_seq);
	if (fail_if_asked(call, "GetEvents", NULL))
		return;
	ttrpc_call_defer(call, events_cancel, NULL);
}

static void on_guest_details(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	(void)req;
	struct fake *f = data;
	log_call("GuestDetails", NULL);
	if (fail_if_asked(call, "GuestDetails", NULL))
		return;
	unsigned n = 0;
	for (struct fake_proc *p = f->procs; p; p = p->next)
		n += !*p->exec_id;
	Husk__Sandbox__V1__GuestDetailsResponse r = HUSK__SANDBOX__V1__GUEST_DETAILS_RESPONSE__INIT;
	r.kernel_release = (char *)"0.0.0-fake";
	r.mem_total_bytes = 256ull << 20;
	r.cpus = 1;
	r.agent_version = (char *)FAKE_VERSION;
	r.containers = n;
	ttrpc_call_reply(call, &r.base);
}

static void poweroff(void *data)
{
	struct fake *f = data;
	f->poweroff = NULL;
	ev_stop(f->loop);
}

static void on_destroy_sandbox(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	(void)req;
	struct fake *f = data;
	log_call("DestroySandbox", NULL);
	if (fail_if_asked(call, "DestroySandbox", NULL))
		return;
	Google__Protobuf__Empty e = GOOGLE__PROTOBUF__EMPTY__INIT;
	ttrpc_call_reply(call, &e.base);
	if (!f->poweroff && ev_timer_add(f->loop, POWEROFF_DELAY_NS, poweroff, f, &f->poweroff) < 0)
		ev_stop(f->loop);
}

static void on_release_disk(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	(void)data;
	const Husk__Sandbox__V1__ReleaseDiskRequest *r =
		(const Husk__Sandbox__V1__ReleaseDiskRequest *)req;
	log_call("ReleaseDisk", "serial=%s", r->serial);
	if (fail_if_asked(call, "ReleaseDisk", NULL))
		return;
	Google__Protobuf__Empty e = GOOGLE__PROTOBUF__EMPTY__INIT;
	ttrpc_call_reply(call, &e.base);
}

static const struct ttrpc_named_method sandbox_methods[] = {
	{ "Check", on_check },
	{ "CreateSandbox", on_create_sandbox },
	{ "CreateBundle", on_create_bundle },
	{ "GetEvents", on_get_events },
	{ "GuestDetails", on_guest_details },
	{ "DestroySandbox", on_destroy_sandbox },
	{ "ReleaseDisk", on_release_disk },
};

/* ---- containerd.task.v2.Task: a table, nothing behind it ---- */

static struct fake_proc *find(struct fake *f, const char *id, const char *exec_id)
{
	for (struct fake_proc *p = f->procs; p; p = p->next)
		if (strcmp(p->id, id) == 0 && strcmp(p->exec_id, exec_id) == 0)
			return p;
	return NULL;
}

/* The process, or NULL with the call failed NOT_FOUND. */
static struct fake_proc *find_or_fail(struct fake *f, struct ttrpc_call *call, const char *id,
				      const char *exec_id)
{
	struct fake_proc *p = find(f, id, exec_id);
	if (!p)
		ttrpc_call_fail(call, TTRPC_NOT_FOUND, "fake-agent: process %s/%s: not found", id,
				exec_id);
	return p;
}

static void reply_wait(struct ttrpc_call *call, const struct fake_proc *p)
{
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	ts.seconds = p->exited_at.tv_sec;
	ts.nanos = (int32_t)p->exited_at.tv_nsec;
	Containerd__Task__V2__WaitResponse r = CONTAINERD__TASK__V2__WAIT_RESPONSE__INIT;
	r.exit_status = p->status;
	r.exited_at = &ts;
	ttrpc_call_reply(call, &r.base);
}

static void answer_waiters(struct fake_proc *p)
{
	while (p->waiters) {
		struct fake_waiter *w = p->waiters;
		p->waiters = w->next;
		reply_wait(w->call, p);
		free(w);
	}
}

static void proc_exit(struct fake_proc *p, uint32_t status)
{
	if (p->exited)
		return;
	p->exited = true;
	p->status = status;
	clock_gettime(CLOCK_REALTIME, &p->exited_at);
	answer_waiters(p);
}

static void on_create(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct fake *f = data;
	const Containerd__Task__V2__CreateTaskRequest *r =
		(const Containerd__Task__V2__CreateTaskRequest *)req;
	log_call("Create", "id=%s bundle=%s", r->id, r->bundle);
	if (fail_if_asked(call, "Create", r->id))
		return;
	if (find(f, r->id, "")) {
		ttrpc_call_fail(call, TTRPC_ALREADY_EXISTS, "fake-agent: container %s exists", r->id);
		return;
	}
	struct fake_proc *p = calloc(1, sizeof(*p));
	if (!p || !(p->id = strdup(r->id)) || !(p->exec_id = strdup(""))) {
		if (p)
			free(p->id);
		free(p);
		ttrpc_call_fail(call, TTRPC_RESOURCE_EXHAUSTED, "fake-agent: out of memory");
		return;
	}
	p->pid = FAKE_PID;
	p->next = f->procs;
	f->procs = p;
	Containerd__Task__V2__CreateTaskResponse resp = CONTAINERD__TASK__V2__CREATE_TASK_RESPONSE__INIT;
	resp.pid = p->pid;
	ttrpc_call_reply(call, &resp.base);
}

static void on_start(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	const Containerd__Task__V2__StartRequest *r = (const Containerd__Task__V2__StartRequest *)req;
	log_call("Start", "id=%s exec=%s", r->id, r->exec_id);
	if (fail_if_asked(call, "Start", r->id))
		return;
	struct fake_proc *p = find_or_fail(data, call, r->id, r->exec_id);
	if (!p)
		return;
	if (p->started || p->exited) {
		ttrpc_call_fail(call, TTRPC_FAILED_PRECONDITION, "fake-agent: %s: already started",
				r->id);
		return;
	}
	p->started = true;
	Containerd__Task__V2__StartResponse resp = CONTAINERD__TASK__V2__START_RESPONSE__INIT;
	resp.pid = p->pid;
	ttrpc_call_reply(call, &resp.base);
}

static void wait_cancel(struct ttrpc_call *call, void *data)
{
	(void)call;
	struct fake_waiter *w = data;
	for (struct fake_waiter **pp = &w->p->waiters; *pp; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	free(w);
}

static void on_wait(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	const Containerd__Task__V2__WaitRequest *r = (const Containerd__Task__V2__WaitRequest *)req;
	log_call("Wait", "id=%s exec=%s", r->id, r->exec_id);
	if (fail_if_asked(call, "Wait", r->id))
		return;
	struct fake_proc *p = find_or_fail(data, call, r->id, r->exec_id);
	if (!p)
		return;
	if (p->exited) {
		reply_wait(call, p);
		return;
	}
	struct fake_waiter *w = calloc(1, sizeof(*w));
	if (!w) {
		ttrpc_call_fail(call, TTRPC_RESOURCE_EXHAUSTED, "fake-agent: out of memory");
		return;
	}
	*w = (struct fake_waiter){ .call = call, .p = p, .next = p->waiters };
	p->waiters = w;
	ttrpc_call_defer(call, wait_cancel, w);
}

static void on_kill(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	const Containerd__Task__V2__KillRequest *r = (const Containerd__Task__V2__KillRequest *)req;
	log_call("Kill", "id=%s exec=%s signal=%u", r->id, r->exec_id, r->signal);
	if (fail_if_asked(call, "Kill", r->id))
		return;
	struct fake_proc *p = find_or_fail(data, call, r->id, r->exec_id);
	if (!p)
		return;
	if (p->exited) {
		ttrpc_call_fail(call, TTRPC_NOT_FOUND, "fake-agent: process already finished");
		return;
	}
	Google__Protobuf__Empty e = GOOGLE__PROTOBUF__EMPTY__INIT;
	ttrpc_call_reply(call, &e.base);
	proc_exit(p, 128 + r->signal);
}

static void proc_free(struct fake_proc *p)
{
	while (p->waiters) { /* their calls are cancelled with the server */
		struct fake_waiter *w = p->waiters;
		p->waiters = w->next;
		free(w);
	}
	free(p->id);
	free(p->exec_id);
	free(p);
}

static void on_delete(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct fake *f = data;
	const Containerd__Task__V2__DeleteRequest *r = (const Containerd__Task__V2__DeleteRequest *)req;
	log_call("Delete", "id=%s exec=%s", r->id, r->exec_id);
	if (fail_if_asked(call, "Delete", r->id))
		return;
	struct fake_proc *p = find_or_fail(f, call, r->id, r->exec_id);
	if (!p)
		return;
	if (p->started && !p->exited) {
		ttrpc_call_fail(call, TTRPC_FAILED_PRECONDITION,
				"fake-agent: cannot delete a running process");
		return;
	}
	/* Deleted before it ran: exits now, as far as waiters know. */
	proc_exit(p, p->exited ? p->status : 0);
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	ts.seconds = p->exited_at.tv_sec;
	ts.nanos = (int32_t)p->exited_at.tv_nsec;
	Containerd__Task__V2__DeleteResponse resp = CONTAINERD__TASK__V2__DELETE_RESPONSE__INIT;
	resp.pid = p->pid;
	resp.exit_status = p->status;
	resp.exited_at = &ts;
	ttrpc_call_reply(call, &resp.base);
	for (struct fake_proc **pp = &f->procs; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	proc_free(p);
}

static void on_state(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	const Containerd__Task__V2__StateRequest *r = (const Containerd__Task__V2__StateRequest *)req;
	log_call("State", "id=%s exec=%s", r->id, r->exec_id);
	if (fail_if_asked(call, "State", r->id))
		return;
	struct fake_proc *p = find_or_fail(data, call, r->id, r->exec_id);
	if (!p)
		return;
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	Containerd__Task__V2__StateResponse resp = CONTAINERD__TASK__V2__STATE_RESPONSE__INIT;
	resp.id = p->id;
	resp.exec_id = p->exec_id;
	resp.pid = p->pid;
	resp.status = p->exited	   ? CONTAINERD__V1__TYPES__STATUS__STOPPED :
		      p->started ? CONTAINERD__V1__TYPES__STATUS__RUNNING :
				   CONTAINERD__V1__TYPES__STATUS__CREATED;
	if (p->exited) {
		ts.seconds = p->exited_at.tv_sec;
		ts.nanos = (int32_t)p->exited_at.tv_nsec;
		resp.exit_status = p->status;
		resp.exited_at = &ts;
	}
	ttrpc_call_reply(call, &resp.base);
}

static const struct ttrpc_named_method task_methods[] = {
	{ "Create", on_create }, { "Start", on_start },	  { "Wait", on_wait },
	{ "Kill", on_kill },	 { "Delete", on_delete }, { "State", on_state },
};

/* ---- main ---- */

static void on_signal(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io, (void)events;
	struct fake *f = data;
	struct signalfd_siginfo si;
	if (read(fd, &si, sizeof(si)) != sizeof(si))
		return;
	if (si.ssi_signo != SIGUSR1) {
		ev_stop(f->loop);
		return;
	}
	printf("fake-agent %d: the agent is gone, the VM stays\n", (int)getpid());
	fflush(stdout);
	ttrpc_server_free(f->srv); /* cancels the deferred calls */
	f->srv = NULL;
}

static int usage(const char *argv0)
{
	fprintf(stderr, "usage: %s --listen unix:PATH\n", argv0);
	return 2;
}

int main(int argc, char **argv)
{
	const char *path = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc &&
		    strncmp(argv[i + 1], "unix:", 5) == 0)
			path = argv[++i] + 5;
		else
			return usage(argv[0]);
	}
	if (!path || !*path)
		return usage(argv[0]);

	struct fake f = { .t0 = ev_now_ns() };
	struct husk_err err = { 0 };
	struct ev_io *sig_io = NULL;
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGUSR1);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	_cleanup_fd_ int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	int lfd = -1, rc = 1;
	if (sfd < 0) {
		husk_err_sys(&err, -errno, "signalfd");
		goto out;
	}
	if (ev_loop_new(&f.loop, &err) < 0 || ttrpc_server_new(f.loop, NULL, &f.srv, &err) < 0 ||
	    ttrpc_server_add_service_named(f.srv, &husk__sandbox__v1__sandbox__descriptor,
					   sandbox_methods, ARRAY_SIZE(sandbox_methods), &f,
					   &err) < 0 ||
	    ttrpc_server_add_service_named(f.srv, &containerd__task__v2__task__descriptor,
					   task_methods, ARRAY_SIZE(task_methods), &f, &err) < 0 ||
	    ev_io_add(f.loop, sfd, EPOLLIN, on_signal, &f, &sig_io, &err) < 0)
		goto out;
	if ((lfd = husk_unix_listen(path, &err)) < 0 ||
	    ttrpc_server_add_listener(f.srv, lfd, &err) < 0)
		goto out;
	printf("fake-agent %d: serving %s\n", (int)getpid(), path);
	fflush(stdout);
	rc = ev_run(f.loop) < 0 ? 1 : 0;
	unlink(path);
	printf("fake-agent %d: exiting\n", (int)getpid());
out:
	if (rc && err.msg[0])
		fprintf(stderr, "fake-agent: %s\n", err.msg);
	ev_timer_cancel(f.poweroff);
	ev_io_del(sig_io);
	ttrpc_server_free(f.srv); /* cancels the Waits and polls still deferred */
	while (f.procs) {
		struct fake_proc *p = f.procs;
		f.procs = p->next;
		proc_free(p);
	}
	if (f.loop)
		ev_loop_free(f.loop);
	return rc;
}
