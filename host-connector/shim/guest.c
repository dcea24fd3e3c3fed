/* What the guest says besides replies: the agent's log stream (guest port
 * 1025, "husk-agent: <level>: <text>" lines), copied into the shim log with
 * source=husk-agent, and the agent's event queue (Sandbox.GetEvents, long
 * polled), whose OOM kills become containerd's /tasks/oom.
 *
 * The OOM event must reach containerd before the /tasks/exit of the process
 * that was killed, but the agent's OOM event and its Wait reply race. So
 * the count (memory.events oom_kill, from Task.Stats) decides: a process
 * that died of SIGKILL has its exit held until the count was read, and
 * every growth of the count is published once, by whichever check sees it
 * first. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "github.com/containerd/cgroups/v2/stats/metrics.pb-c.h"
#include "github.com/containerd/containerd/api/events/task.pb-c.h"
#include "github.com/containerd/containerd/runtime/v2/task/shim.pb-c.h"
#include "husk/sandbox.pb-c.h"
#include "shim.h"

#define SANDBOX_SERVICE "husk.sandbox.v1.Sandbox"
#define METRICS_TYPE "io.containerd.cgroups.v2.Metrics"
#define OOM_CHECK_TIMEOUT_NS (10ull * 1000000000ull)

/* ---- the agent's log stream ---- */

/* "husk-agent: info: text" -> level=info msg="guest: text". */
static void log_line(struct shim *s, char *line, size_t len)
{
	(void)s;
	static const struct {
		const char *agent, *logrus;
	} levels[] = {
		{ "emerg", "error" }, { "alert", "error" },	{ "crit", "error" },
		{ "error", "error" }, { "warning", "warning" }, { "notice", "info" },
		{ "info", "info" },   { "debug", "debug" },
	};
	line[len] = '\0';
	if (len && line[len - 1] == '\r')
		line[--len] = '\0';
	if (!len)
		return;
	const char *text = line, *level = "info";
	if (strncmp(text, "husk-agent: ", 12) == 0)
		text += 12;
	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
		size_t n = strlen(levels[i].agent);
		if (strncmp(text, levels[i].agent, n) == 0 && text[n] == ':' &&
		    text[n + 1] == ' ') {
			level = levels[i].logrus;
			text += n + 2;
			break;
		}
	}
	shim_log_at(level, "husk-agent", "guest: %s", text);
}

static void on_log(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io, (void)events;
	struct shim *s = data;
	for (;;) {
		size_t room = sizeof(s->log_buf) - 1 - s->log_len;
		ssize_t n = recv(fd, s->log_buf + s->log_len, room, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) { /* the guest went away: what is left is a line too */
			if (s->log_len)
				log_line(s, s->log_buf, s->log_len);
			s->log_len = 0;
			guest_log_stop(s);
			return;
		}
		s->log_len += (size_t)n;
		char *start = s->log_buf, *nl;
		while ((nl = memchr(start, '\n', s->log_len - (size_t)(start - s->log_buf)))) {
			log_line(s, start, (size_t)(nl - start));
			start = nl + 1;
		}
		size_t left = s->log_len - (size_t)(start - s->log_buf);
		if (left == sizeof(s->log_buf) - 1) { /* no newline in a full buffer */
			log_line(s, s->log_buf, left);
			left = 0;
		}
		memmove(s->log_buf, start, left);
		s->log_len = left;
	}
}

int guest_log_start(struct shim *s, struct husk_err *err)
{
	int fd = husk_vm_log_fd(s->vm); /* owned by the VM */
	if (fd < 0) {
		shim_log("shim for %s: the agent's log stream did not connect", s->opt.id);
		return 0;
	}
	return ev_io_add(s->loop, fd, EPOLLIN, on_log, s, &s->log_io, err);
}

void guest_log_stop(struct shim *s)
{
	ev_io_del(s->log_io);
	s->log_io = NULL;
}

/* ---- OOM ---- */

struct oom_check {
	struct ctr *c;
	struct proc *p;
};

static uint64_t oom_kills(const Containerd__Task__V2__StatsResponse *r)
{
	if (!r->stats || strcmp(r->stats->type_url, METRICS_TYPE) != 0)
		return 0;
	Io__Containerd__Cgroups__V2__Metrics *m = io__containerd__cgroups__v2__metrics__unpack(
		NULL, r->stats->value.len, r->stats->value.data);
	if (!m)
		return 0;
	uint64_t n = m->memory_events ? m->memory_events->oom_kill : 0;
	io__containerd__cgroups__v2__metrics__free_unpacked(m, NULL);
	return n;
}

static void on_oom_stats(struct ttrpc_reply *reply, void *data)
{
	struct oom_check *oc = data;
	struct ctr *c = oc->c;
	struct shim *s = c->s;
	struct proc *p = oc->p;
	free(oc);
	if (reply->status.code == TTRPC_OK) {
		uint64_t n = oom_kills((const Containerd__Task__V2__StatsResponse *)reply->msg);
		if (n > c->oom_kills_seen) {
			c->oom_kills_seen = n;
			shim_log("container %s: OOM kill (memory.events oom_kill %llu)", c->id,
				 (unsigned long long)n);
			Containerd__Events__TaskOOM ev = CONTAINERD__EVENTS__TASK_OOM__INIT;
			ev.container_id = c->id;
			shim_publish(s, "/tasks/oom", &ev.base);
		}
	} else if (s->opt.debug && !s->vm_lost) {
		shim_log_at("debug", NULL, "OOM check for %s: %s", c->id, reply->status.message);
	}
	if (p && p->oom_check) {
		p->oom_check = false;
		proc_maybe_exited(p);
	}
}

void guest_oom_check(struct ctr *ctr, struct proc *p)
{
	struct shim *s = ctr->s;
	if (!s->agent || s->vm_lost)
		return;
	struct oom_check *c = calloc(1, sizeof(*c));
	if (!c)
		return;
	*c = (struct oom_check){ .c = ctr, .p = p };
	Containerd__Task__V2__StatsRequest req = CONTAINERD__TASK__V2__STATS_REQUEST__INIT;
	req.id = ctr->id;
	const struct ttrpc_call_opts opts = { .timeout_ns = OOM_CHECK_TIMEOUT_NS };
	if (ttrpc_client_start(s->agent, SHIM_TASK_SERVICE, "Stats", &req.base, NULL, 0,
			       &containerd__task__v2__stats_response__descriptor, &opts,
			       on_oom_stats, c) < 0) {
		free(c);
		return;
	}
	if (p)
		p->oom_check = true;
}

/* ---- the agent's events ---- */

static void on_events(struct ttrpc_reply *reply, void *data)
{
	struct shim *s = data;
	s->events_polling = false;
	if (reply->status.code != TTRPC_OK) {
		if (!s->vm_lost && !s->shutting_down)
			shim_log("agent events for %s: %s: %s", s->opt.id,
				 ttrpc_code_name(reply->status.code), reply->status.message);
		return;
	}
	const Husk__Sandbox__V1__GetEventsResponse *r =
		(const Husk__Sandbox__V1__GetEventsResponse *)reply->msg;
	for (size_t i = 0; i < r->n_events; i++) {
		const Husk__Sandbox__V1__Event *e = r->events[i];
		if (e->seq > s->event_seq)
			s->event_seq = e->seq;
		struct ctr *c = e->type == HUSK__SANDBOX__V1__EVENT__TYPE__OOM
					? shim_ctr_find(s, e->container_id)
					: NULL;
		if (c)
			guest_oom_check(c, NULL);
	}
	guest_events_start(s);
}

void guest_events_start(struct shim *s)
{
	if (s->events_polling || !s->agent || s->vm_lost || s->shutting_down)
		return;
	Husk__Sandbox__V1__GetEventsRequest req = HUSK__SANDBOX__V1__GET_EVENTS_REQUEST__INIT;
	req.after_seq = s->event_seq;
	/* No deadline: the agent answers when there is something. */
	int r = ttrpc_client_start(s->agent, SANDBOX_SERVICE, "GetEvents", &req.base, NULL, 0,
				   &husk__sandbox__v1__get_events_response__descriptor, NULL,
				   on_events, s);
	if (r < 0)
		shim_log("agent events for %s: %s", s->opt.id, strerror(-r));
	else
		s->events_polling = true;
}
