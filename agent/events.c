/* The event queue behind Sandbox.GetEvents: exits and OOM kills, in order,
 * bounded (the oldest are dropped when the host does not poll). */
#include <stdlib.h>
#include <string.h>

#include "agent.h"

#define MAX_QUEUED_EVENTS 4096

void events_push(struct agent *a, enum agent_event_type type, const struct container *c,
		 const struct process *p)
{
	struct agent_event *e = calloc(1, sizeof(*e));
	if (!e)
		return;
	e->seq = ++a->ev_seq;
	e->type = type;
	e->container_id = strdup(c->id);
	e->exec_id = strdup(p && p->exec_id ? p->exec_id : "");
	e->pid = p && p->pid > 0 ? (uint32_t)p->pid : 0;
	e->exit_status = p ? p->exit_status : 0;
	if (p && type == AGENT_EVENT_EXIT)
		e->at = p->exited_at;
	else
		clock_gettime(CLOCK_REALTIME, &e->at);
	if (a->ev_tail)
		a->ev_tail->next = e;
	else
		a->ev_head = e;
	a->ev_tail = e;
	if (++a->ev_count > MAX_QUEUED_EVENTS) {
		struct agent_event *old = a->ev_head;
		a->ev_head = old->next;
		free(old->container_id);
		free(old->exec_id);
		free(old);
		a->ev_count--;
	}
	sandbox_events_wake(a);
}

void events_free(struct agent *a)
{
	while (a->ev_head) {
		struct agent_event *e = a->ev_head;
		a->ev_head = e->next;
		free(e->container_id);
		free(e->exec_id);
		free(e);
	}
	a->ev_tail = NULL;
	a->ev_count = 0;
}
