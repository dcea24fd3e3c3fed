/* Containers and processes: exit handling and the "report an exit only once
 * stdout and stderr are delivered" rule. */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "init/console.h"
#include "github.com/containerd/containerd/runtime/v2/task/shim.pb-c.h"
#include "init/reaper.h"
#include "jail/cgroup.h"

struct container *agent_find(struct agent *a, const char *id)
{
	for (struct container *c = a->containers; c; c = c->next)
		if (strcmp(c->id, id) == 0)
			return c;
	return NULL;
}

struct process *container_find_process(struct container *c, const char *exec_id)
{
	if (!exec_id || !*exec_id)
		return &c->init;
	for (struct process *p = c->execs; p; p = p->next)
		if (strcmp(p->exec_id, exec_id) == 0)
			return p;
	return NULL;
}

int agent_check_id(const char *what, const char *id, struct husk_err *err)
{
	size_t len = id ? strlen(id) : 0;
	if (len == 0 || len > 128 || strcmp(id, ".") == 0 || strcmp(id, "..") == 0)
		return husk_err_set(err, -EINVAL, "%s \"%s\": must be 1..128 characters, not . or ..",
				    what, id ? id : "");
	for (const char *s = id; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		      *s == '_' || *s == '-' || *s == '.'))
			return husk_err_set(err, -EINVAL,
					    "%s \"%s\": only letters, digits, '_', '-' and '.' are allowed",
					    what, id);
	return 0;
}

static void reply_wait(struct ttrpc_call *call, const struct process *p)
{
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	ts.seconds = p->exited_at.tv_sec;
	ts.nanos = (int32_t)p->exited_at.tv_nsec;
	Containerd__Task__V2__WaitResponse resp = CONTAINERD__TASK__V2__WAIT_RESPONSE__INIT;
	resp.exit_status = p->exit_status;
	resp.exited_at = &ts;
	ttrpc_call_reply(call, &resp.base);
}

void process_maybe_report(struct process *p)
{
	if (p->reported || !p->exited || !stdio_drained(p))
		return;
	p->reported = true;
	p->status = PROC_STOPPED;
	while (p->waiters) {
		struct waiter *w = p->waiters;
		p->waiters = w->next;
		reply_wait(w->call, p);
		free(w);
	}
	events_push(p->c->agent, AGENT_EVENT_EXIT, p->c, p);
}

static bool owns_pid_namespace(const struct container *c)
{
	const struct jail_namespace *ns = c->spec ? jail_spec_namespace(c->spec, CLONE_NEWPID) : NULL;
	return ns && !ns->path;
}

void process_on_exit(struct process *p, int status)
{
	if (p->exited)
		return;
	p->exited = true;
	clock_gettime(CLOCK_REALTIME, &p->exited_at);
	if (WIFEXITED(status))
		p->exit_status = (uint32_t)WEXITSTATUS(status);
	else if (WIFSIGNALED(status))
		p->exit_status = 128u + (uint32_t)WTERMSIG(status);
	else
		p->exit_status = 255;
	init_log(INIT_LOG_INFO, "container %s%s%s: pid %d exited with status %u", p->c->id,
		 p == &p->c->init ? "" : " exec ", p == &p->c->init ? "" : p->exec_id, (int)p->pid,
		 p->exit_status);
	/* With a pid namespace of its own, the init's exit takes it down: the
	 * kernel kills the rest. Sharing one (a pod's containers share the
	 * sandbox's with shareProcessNamespace, CRI's pid mode POD), the rest
	 * would live on and hold the
	 * container's stdio open, so its exit would never be reported: they
	 * are killed, as runc's shim does (ShouldKillAllOnExit). Each exec
	 * process reports its own exit. */
	if (p == &p->c->init && !owns_pid_namespace(p->c) && p->c->jc && p->c->jc->cgroup) {
		struct husk_err err = { 0 };
		if (jail_cgroup_signal(p->c->jc->cgroup, SIGKILL, &err) < 0)
			init_log(INIT_LOG_WARNING, "container %s: killing what its init left: %s",
				 p->c->id, err.msg);
	}
	process_maybe_report(p);
}

static void process_release(struct process *p)
{
	while (p->waiters) {
		struct waiter *w = p->waiters;
		p->waiters = w->next;
		ttrpc_call_fail(w->call, TTRPC_NOT_FOUND, "process deleted");
		free(w);
	}
	if (p->pid > 0 && p->c && p->c->agent->reaper)
		init_reaper_unwatch(p->c->agent->reaper, p->pid);
	stdio_free(p);
	free(p->exec_id);
	free(p->stdin_uri);
	free(p->stdout_uri);
	free(p->stderr_uri);
	jail_process_free(p->exec_spec);
}

void process_destroy(struct process *p)
{
	process_release(p);
	free(p);
}

void container_free(struct container *c)
{
	if (!c)
		return;
	while (c->execs) {
		struct process *p = c->execs;
		c->execs = p->next;
		process_release(p);
		free(p);
	}
	process_release(&c->init);
	ev_io_del(c->events_io);
	if (c->events_fd >= 0)
		close(c->events_fd);
	jail_container_free(c->jc);
	jail_spec_free(c->spec);
	free(c->id);
	free(c->bundle);
	free(c->state_dir);
	free(c);
}
