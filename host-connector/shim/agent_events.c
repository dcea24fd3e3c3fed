/* The agent's event queue (Sandbox.GetEvents, long polled), whose OOM
 * kills become containerd's /tasks/oom.
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

#include "github.com/containerd/cgroups/v2/stats/metrics.pb-c.h"
#include "github.com/containerd/containerd/api/events/task.pb-c.h"
#include "github.com/containerd/containerd/runtime/v2/task/shim.pb-c.h"
#include "husk/sandbox.pb-c.h"
#include "vm.h"

#define METRICS_TYPE "io.containerd.cgroups.v2.Metrics"
#define OOM_CHECK_TIMEOUT_NS (10ull * 1000000000ull)

/* ---- OOM ---- */

struct oom_check {
	struct ctr *c;	/* a reference */
	struct proc *p; /* a reference, or NULL */
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
	} else if (s->opt.debug && shim_vm_up(s)) {
		shim_log_at("debug", NULL, "OOM check for %s: %s", c->id, reply->status.message);
	}
	if (p) {
		if (p->oom_check) {
			p->oom_check = false;
			proc_maybe_stopped(p);
		}
		proc_unref(p);
	}
	ctr_unref(c);
}

void agent_oom_check(struct ctr *ctr, struct proc *p)
{
	struct shim *s = ctr->s;
	if (!shim_vm_up(s))
		return;
	struct oom_check *oc = calloc(1, sizeof(*oc));
	if (!oc)
		return;
	*oc = (struct oom_check){ .c = ctr, .p = p };
	Containerd__Task__V2__StatsRequest req = CONTAINERD__TASK__V2__STATS_REQUEST__INIT;
	req.id = ctr->id;
	const struct ttrpc_call_opts opts = { .timeout_ns = OOM_CHECK_TIMEOUT_NS };
	if (ttrpc_client_start(s->vm.agent, SHIM_TASK_SERVICE, "Stats", &req.base, NULL, 0,
			       &containerd__task__v2__stats_response__descriptor, &opts,
			       on_oom_stats, oc) < 0) {
		free(oc);
		return;
	}
	ctr_ref(ctr);
	if (p) {
		proc_ref(p);
		p->oom_check = true;
	}
}

/* ---- the agent's events ---- */

static void on_events(struct ttrpc_reply *reply, void *data)
{
	struct shim *s = data;
	s->vm.events_polling = false;
	if (reply->status.code != TTRPC_OK) {
		if (shim_vm_up(s) && !s->shutting_down)
			shim_log("agent events for %s: %s: %s", s->opt.id,
				 ttrpc_code_name(reply->status.code), reply->status.message);
		return;
	}
	const Husk__Sandbox__V1__GetEventsResponse *r =
		(const Husk__Sandbox__V1__GetEventsResponse *)reply->msg;
	for (size_t i = 0; i < r->n_events; i++) {
		const Husk__Sandbox__V1__Event *e = r->events[i];
		if (e->seq > s->vm.event_seq)
			s->vm.event_seq = e->seq;
		struct ctr *c = e->type == HUSK__SANDBOX__V1__EVENT__TYPE__OOM
					? ctr_find(s, e->container_id)
					: NULL;
		if (c)
			agent_oom_check(c, NULL);
	}
	agent_events_start(s);
}

void agent_events_start(struct shim *s)
{
	if (s->vm.events_polling || !shim_vm_up(s) || s->shutting_down)
		return;
	Husk__Sandbox__V1__GetEventsRequest req = HUSK__SANDBOX__V1__GET_EVENTS_REQUEST__INIT;
	req.after_seq = s->vm.event_seq;
	/* No deadline: the agent answers when there is something. */
	int r = ttrpc_client_start(s->vm.agent, SHIM_SANDBOX_SERVICE, "GetEvents", &req.base, NULL,
				   0, &husk__sandbox__v1__get_events_response__descriptor, NULL,
				   on_events, s);
	if (r < 0)
		shim_log("agent events for %s: %s", s->opt.id, strerror(-r));
	else
		s->vm.events_polling = true;
}
