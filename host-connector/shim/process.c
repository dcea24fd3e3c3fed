/* The container and process table and the process state machine
 * (process.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "github.com/containerd/containerd/api/events/task.pb-c.h"
#include "github.com/containerd/containerd/runtime/v2/task/shim.pb-c.h"
#include "io.h"
#include "log.h"
#include "shim.h"

/* ---- the state machine ---- */

static const char *const state_names[PROC_STATES] = {
	[PROC_CREATING] = "creating", [PROC_CREATED] = "created", [PROC_STARTING] = "starting",
	[PROC_RUNNING] = "running",   [PROC_PAUSED] = "paused",	  [PROC_EXITING] = "exiting",
	[PROC_STOPPED] = "stopped",   [PROC_DELETED] = "deleted",
};

const char *proc_state_name(enum proc_state s)
{
	return (unsigned)s < PROC_STATES ? state_names[s] : "?";
}

#define BIT(s) (1u << (s))
static const unsigned transitions[PROC_STATES] = {
	[PROC_CREATING] = BIT(PROC_CREATED) | BIT(PROC_DELETED),
	[PROC_CREATED] = BIT(PROC_STARTING) | BIT(PROC_EXITING) | BIT(PROC_DELETED),
	/* A Start the agent refused leaves it created, as runc-v2. */
	[PROC_STARTING] = BIT(PROC_RUNNING) | BIT(PROC_CREATED) | BIT(PROC_EXITING),
	[PROC_RUNNING] = BIT(PROC_PAUSED) | BIT(PROC_EXITING),
	[PROC_PAUSED] = BIT(PROC_RUNNING) | BIT(PROC_EXITING),
	[PROC_EXITING] = BIT(PROC_STOPPED),
	[PROC_STOPPED] = BIT(PROC_DELETED),
	[PROC_DELETED] = 0,
};

bool proc_transition_ok(enum proc_state from, enum proc_state to)
{
	return (unsigned)from < PROC_STATES && (unsigned)to < PROC_STATES &&
	       (transitions[from] & BIT(to));
}

struct rule {
	enum proc_verdict v;
	int code;
	const char *msg;
};

#define OK { PROC_ALLOW, 0, NULL }
#define NOOP { PROC_NOOP, 0, NULL }
#define LATER { PROC_LATER, 0, NULL }
#define NO(why) { PROC_REFUSE, TTRPC_FAILED_PRECONDITION, why }
#define GONE(why) { PROC_REFUSE, TTRPC_NOT_FOUND, why }

/* rules[state][op]; the words are runc-v2's where it has them. */
static const struct rule rules[PROC_STATES][PROC_OP_STATE + 1] = {
	/* Kill and Delete wait for the Create (a containerd back from a
	 * restart may send them while the VM still boots). */
	[PROC_CREATING] = {
		[PROC_OP_START] = NO("is still being created"),
		[PROC_OP_KILL] = LATER,
		[PROC_OP_DELETE] = LATER,
		[PROC_OP_PAUSE] = NO("is still being created"),
		[PROC_OP_RESUME] = NO("is still being created"),
		[PROC_OP_EXEC] = NO("container is not running"),
		[PROC_OP_IO] = NO("is still being created"),
		[PROC_OP_STATE] = OK,
	},
	[PROC_CREATED] = {
		[PROC_OP_START] = OK,
		[PROC_OP_KILL] = OK,
		[PROC_OP_DELETE] = OK,
		[PROC_OP_PAUSE] = NO("cannot pause a created process"),
		[PROC_OP_RESUME] = NO("cannot resume a created process"),
		[PROC_OP_EXEC] = NO("container is not running"),
		[PROC_OP_IO] = OK,
		[PROC_OP_STATE] = OK,
	},
	[PROC_STARTING] = {
		[PROC_OP_START] = NO("is already starting"),
		[PROC_OP_KILL] = OK,
		[PROC_OP_DELETE] = NO("cannot delete a running process"),
		[PROC_OP_PAUSE] = NO("is still starting"),
		[PROC_OP_RESUME] = NO("is still starting"),
		[PROC_OP_EXEC] = NO("container is not running"),
		[PROC_OP_IO] = OK,
		[PROC_OP_STATE] = OK,
	},
	[PROC_RUNNING] = {
		[PROC_OP_START] = NO("cannot start a running process"),
		[PROC_OP_KILL] = OK,
		[PROC_OP_DELETE] = NO("cannot delete a running process"),
		[PROC_OP_PAUSE] = OK,
		[PROC_OP_RESUME] = NO("cannot resume a running process"),
		[PROC_OP_EXEC] = OK,
		[PROC_OP_IO] = OK,
		[PROC_OP_STATE] = OK,
	},
	[PROC_PAUSED] = {
		[PROC_OP_START] = NO("cannot start a paused process"),
		[PROC_OP_KILL] = OK,
		[PROC_OP_DELETE] = NO("cannot delete a paused process"),
		[PROC_OP_PAUSE] = NO("cannot pause a paused process"),
		[PROC_OP_RESUME] = OK,
		[PROC_OP_EXEC] = NO("cannot exec in a paused state"),
		[PROC_OP_IO] = OK,
		[PROC_OP_STATE] = OK,
	},
	/* Gone in the guest, still running for containerd until its output
	 * is all there: a kill has nothing left to do. */
	[PROC_EXITING] = {
		[PROC_OP_START] = NO("cannot start a running process"),
		[PROC_OP_KILL] = NOOP,
		[PROC_OP_DELETE] = NO("cannot delete a running process"),
		[PROC_OP_PAUSE] = NO("is exiting"),
		[PROC_OP_RESUME] = NO("is exiting"),
		[PROC_OP_EXEC] = NO("container is not running"),
		[PROC_OP_IO] = NOOP,
		[PROC_OP_STATE] = OK,
	},
	[PROC_STOPPED] = {
		[PROC_OP_START] = NO("cannot start a stopped process"),
		[PROC_OP_KILL] = GONE("process already finished"),
		[PROC_OP_DELETE] = OK,
		[PROC_OP_PAUSE] = NO("cannot pause a stopped process"),
		[PROC_OP_RESUME] = NO("cannot resume a stopped process"),
		[PROC_OP_EXEC] = NO("container is not running"),
		[PROC_OP_IO] = NOOP,
		[PROC_OP_STATE] = OK,
	},
	[PROC_DELETED] = {
		[PROC_OP_START] = GONE("process already deleted"),
		[PROC_OP_KILL] = GONE("process already deleted"),
		[PROC_OP_DELETE] = GONE("process already deleted"),
		[PROC_OP_PAUSE] = GONE("process already deleted"),
		[PROC_OP_RESUME] = GONE("process already deleted"),
		[PROC_OP_EXEC] = GONE("container already deleted"),
		[PROC_OP_IO] = GONE("process already deleted"),
		[PROC_OP_STATE] = GONE("process already deleted"),
	},
};

enum proc_verdict proc_check(enum proc_state s, enum proc_op op, int *code, char *msg, size_t len)
{
	if ((unsigned)s >= PROC_STATES || (unsigned)op > PROC_OP_STATE) {
		*code = TTRPC_INTERNAL;
		if (msg)
			snprintf(msg, len, "bad state %d or operation %d", (int)s, (int)op);
		return PROC_REFUSE;
	}
	const struct rule *r = &rules[s][op];
	*code = r->code;
	if (msg && len)
		snprintf(msg, len, "%s", r->msg ? r->msg : "");
	return r->v;
}

/* ---- the table ---- */

struct ctr *ctr_new(struct shim *s, const char *id, const char *bundle, enum shim_pod_role role)
{
	struct ctr *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	*c = (struct ctr){ .refs = 1, .s = s, .id = strdup(id), .bundle = strdup(bundle),
			   .role = role, .image_hold = -1, .listed = true };
	if (!c->id || !c->bundle) {
		free(c->id);
		free(c->bundle);
		free(c);
		return NULL;
	}
	struct ctr **pp = &s->ctrs;
	while (*pp)
		pp = &(*pp)->next;
	*pp = c;
	return c;
}

struct ctr *ctr_find(struct shim *s, const char *id)
{
	for (struct ctr *c = s->ctrs; c; c = c->next)
		if (strcmp(c->id, id) == 0)
			return c;
	return NULL;
}

unsigned ctr_count(const struct shim *s)
{
	unsigned n = 0;
	for (const struct ctr *c = s->ctrs; c; c = c->next)
		n++;
	return n;
}

struct ctr *ctr_ref(struct ctr *c)
{
	c->refs++;
	return c;
}

void ctr_unref(struct ctr *c)
{
	if (!c || --c->refs)
		return;
	if (c->image_hold >= 0 || c->rootfs_mount || c->disk_added)
		shim_log_at("error", NULL, "container %s freed with its rootfs still held", c->id);
	free(c->rootfs_mount);
	free(c->id);
	free(c->bundle);
	free(c);
}

void ctr_unlist(struct ctr *c)
{
	if (!c->listed)
		return;
	c->listed = false;
	for (struct ctr **pp = &c->s->ctrs; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	c->next = NULL;
	ctr_unref(c);
}

struct proc *proc_new(struct ctr *c, const char *exec_id, const char *in, const char *out,
		      const char *errp, bool terminal)
{
	struct proc *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->refs = 1;
	p->s = c->s;
	p->c = ctr_ref(c);
	p->exec_id = strdup(exec_id ? exec_id : "");
	p->stdin_path = strdup(in);
	p->stdout_path = strdup(out);
	p->stderr_path = strdup(errp);
	p->terminal = terminal;
	p->state = PROC_CREATING;
	p->listed = true;
	p->host_fd[0] = p->host_fd[1] = p->host_fd[2] = -1;
	/* Random ports so concurrent execs never collide; never 1024-1026. */
	uint32_t r = 0;
	(void)!getrandom(&r, sizeof(r), 0);
	uint32_t base = 0x10000 + (r % 0x3fff0000u) / 4 * 4;
	p->ports = (struct husk_stdio){ .in = *in ? base : 0, .out = *out ? base + 1 : 0,
					.err = (*errp && !terminal) ? base + 2 : 0,
					.terminal = terminal };
	if (!p->exec_id || !p->stdin_path || !p->stdout_path || !p->stderr_path) {
		p->listed = false;
		proc_unref(p);
		return NULL;
	}
	/* Append: init stays first. */
	struct proc **pp = &c->procs;
	while (*pp)
		pp = &(*pp)->next;
	*pp = p;
	if (!*p->exec_id)
		c->init = p;
	return p;
}

struct proc *proc_find(struct ctr *c, const char *exec_id)
{
	const char *want = exec_id ? exec_id : "";
	for (struct proc *p = c->procs; p; p = p->next)
		if (strcmp(p->exec_id, want) == 0)
			return p;
	return NULL;
}

struct proc *proc_ref(struct proc *p)
{
	p->refs++;
	return p;
}

void proc_unref(struct proc *p)
{
	if (!p || --p->refs)
		return;
	proc_close_io(p);
	logger_free(p->logger);
	while (p->waiters) { /* only at exit: their calls went with the server */
		struct waiter *w = p->waiters;
		p->waiters = w->next;
		free(w);
	}
	if (p->c && p->c->init == p)
		p->c->init = NULL;
	ctr_unref(p->c);
	free(p->exec_id);
	free(p->stdin_path);
	free(p->stdout_path);
	free(p->stderr_path);
	free(p);
}

const char *proc_task_id(const struct proc *p)
{
	return *p->exec_id ? p->exec_id : p->c->id;
}

void proc_close_io(struct proc *p)
{
	relay_free(p->in);
	relay_free(p->out);
	relay_free(p->err);
	p->in = p->out = p->err = NULL;
	p->outputs_open = 0;
	for (int i = 0; i < 3; i++)
		if (p->host_fd[i] >= 0) {
			close(p->host_fd[i]);
			p->host_fd[i] = -1;
		}
}

static void proc_unlist(struct proc *p)
{
	if (!p->listed)
		return;
	p->listed = false;
	for (struct proc **pp = &p->c->procs; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	p->next = NULL;
	proc_unref(p);
}

/* ---- exits ---- */

void proc_fill_exit(const struct proc *p, uint32_t *status, struct timespec *at)
{
	*status = p->status;
	*at = p->exited_at;
}

static void fill_ts(Google__Protobuf__Timestamp *ts, const struct timespec *t)
{
	ts->seconds = t->tv_sec;
	ts->nanos = (int32_t)t->tv_nsec;
}

static void reply_wait(struct ttrpc_call *call, const struct proc *p)
{
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	fill_ts(&ts, &p->exited_at);
	Containerd__Task__V2__WaitResponse resp = CONTAINERD__TASK__V2__WAIT_RESPONSE__INIT;
	resp.exit_status = p->status;
	resp.exited_at = &ts;
	ttrpc_call_reply(call, &resp.base);
}

static void answer_waiters(struct proc *p)
{
	while (p->waiters) {
		struct waiter *w = p->waiters;
		p->waiters = w->next;
		reply_wait(w->call, p);
		free(w);
	}
}

void proc_set_state(struct proc *p, enum proc_state to)
{
	if (p->state == to)
		return;
	if (!proc_transition_ok(p->state, to)) {
		shim_log_at("error", NULL, "process %s: no transition from %s to %s (ignored)",
			    proc_task_id(p), proc_state_name(p->state), proc_state_name(to));
		return;
	}
	if (p->s->opt.debug)
		shim_log_at("debug", NULL, "process %s: %s -> %s", proc_task_id(p),
			    proc_state_name(p->state), proc_state_name(to));
	p->state = to;
	if (to != PROC_DELETED)
		return;
	proc_close_io(p);
	/* Deleted before it ran: Waits get what Delete reported. */
	answer_waiters(p);
	proc_unlist(p);
}

void proc_maybe_stopped(struct proc *p)
{
	if (p->state != PROC_EXITING || p->outputs_open || p->oom_check)
		return;
	proc_set_state(p, PROC_STOPPED);
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	fill_ts(&ts, &p->exited_at);
	Containerd__Events__TaskExit ev = CONTAINERD__EVENTS__TASK_EXIT__INIT;
	ev.container_id = p->c->id;
	ev.id = (char *)proc_task_id(p);
	ev.pid = shim_reported_pid(p);
	ev.exit_status = p->status;
	ev.exited_at = &ts;
	shim_publish(p->s, "/tasks/exit", &ev.base);
	answer_waiters(p);
	/* stdin has nobody to feed any more. */
	relay_free(p->in);
	p->in = NULL;
}

void proc_exited(struct proc *p, uint32_t status, const struct timespec *at)
{
	switch (p->state) {
	case PROC_CREATED:
	case PROC_STARTING:
	case PROC_RUNNING:
	case PROC_PAUSED:
		break;
	default:
		return; /* already exiting, or not there to exit */
	}
	p->status = status;
	if (at && (at->tv_sec || at->tv_nsec))
		p->exited_at = *at;
	else
		clock_gettime(CLOCK_REALTIME, &p->exited_at);
	proc_set_state(p, PROC_EXITING);
	proc_maybe_stopped(p);
}

static void wait_cancel(struct ttrpc_call *call, void *data)
{
	(void)call;
	struct waiter *w = data;
	for (struct waiter **pp = &w->p->waiters; *pp; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	free(w);
}

int proc_add_waiter(struct proc *p, struct ttrpc_call *call)
{
	if (p->state == PROC_STOPPED || p->state == PROC_DELETED) {
		reply_wait(call, p);
		return 0;
	}
	struct waiter *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->call = call;
	w->p = p;
	w->next = p->waiters;
	p->waiters = w;
	ttrpc_call_defer(call, wait_cancel, w);
	return 0;
}

void shim_table_free(struct shim *s)
{
	while (s->ctrs) {
		struct ctr *c = s->ctrs;
		while (c->procs) {
			struct proc *p = c->procs;
			/* Whatever holds other references is gone with the loop. */
			p->refs = 1;
			proc_unlist(p);
		}
		c->refs = 1;
		ctr_unlist(c);
	}
}
