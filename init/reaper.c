/* Child reaping for the agent: see init/reaper.h. */
#include "init/reaper.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "init/console.h"

struct watch {
	pid_t pid;
	init_reaper_fn fn;
	void *data;
	bool exited; /* claimed from the unclaimed table: deliver `status` */
	int status;
};

struct exit_rec {
	pid_t pid; /* 0: empty slot */
	int status;
};

/* Separate from the reaper: a queued ev_deferred must stay valid until it
 * runs, which may be after the reaper is freed. */
struct reaper_defer {
	struct ev_deferred node;
	struct init_reaper *r; /* NULL once the reaper is gone */
};

struct init_reaper {
	struct ev_loop *loop;
	int sfd;
	struct ev_io *io;
	struct reaper_defer *defer;
	sigset_t old_mask;
	struct sigaction old_action;
	bool unset_subreaper;

	struct watch *watches;
	size_t n_watches, cap_watches;

	/* Ring of unclaimed exits; `head` is the next slot written, which
	 * holds the oldest entry once the ring has wrapped. */
	struct exit_rec ring[INIT_REAPER_UNCLAIMED];
	size_t head;

	bool dispatching;
	bool free_pending;
	struct init_reaper_stats stats;
};

static void reaper_destroy(struct init_reaper *r);

int init_exit_code(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return 255;
}

/* ---- tables --------------------------------------------------------------- */

static ssize_t find_watch(const struct init_reaper *r, pid_t pid)
{
	for (size_t i = 0; i < r->n_watches; i++)
		if (r->watches[i].pid == pid)
			return (ssize_t)i;
	return -1;
}

static struct watch take_watch(struct init_reaper *r, size_t i)
{
	struct watch w = r->watches[i];
	r->watches[i] = r->watches[--r->n_watches];
	r->stats.watched = (unsigned)r->n_watches;
	return w;
}

static int add_watch(struct init_reaper *r, const struct watch *w)
{
	if (r->n_watches == r->cap_watches) {
		size_t cap = r->cap_watches ? r->cap_watches * 2 : 16;
		struct watch *nw = realloc(r->watches, cap * sizeof(*nw));
		if (!nw)
			return -ENOMEM;
		r->watches = nw;
		r->cap_watches = cap;
	}
	r->watches[r->n_watches++] = *w;
	r->stats.watched = (unsigned)r->n_watches;
	return 0;
}

static void push_unclaimed(struct init_reaper *r, pid_t pid, int status)
{
	struct exit_rec *slot = &r->ring[r->head];
	if (slot->pid) {
		init_log(INIT_LOG_DEBUG, "reaper: forgetting the unclaimed exit of pid %d",
			 (int)slot->pid);
		r->stats.dropped++;
		r->stats.unclaimed--;
	}
	slot->pid = pid;
	slot->status = status;
	r->stats.unclaimed++;
	r->head = (r->head + 1) % INIT_REAPER_UNCLAIMED;
}

/* Index of the newest unclaimed exit of `pid`, or -1. */
static ssize_t find_unclaimed(const struct init_reaper *r, pid_t pid)
{
	for (size_t k = 1; k <= INIT_REAPER_UNCLAIMED; k++) {
		size_t i = (r->head + INIT_REAPER_UNCLAIMED - k) % INIT_REAPER_UNCLAIMED;
		if (r->ring[i].pid == pid)
			return (ssize_t)i;
	}
	return -1;
}

static void drop_unclaimed(struct init_reaper *r, pid_t pid)
{
	for (size_t i = 0; i < INIT_REAPER_UNCLAIMED; i++) {
		if (r->ring[i].pid == pid) {
			r->ring[i].pid = 0;
			r->stats.unclaimed--;
		}
	}
}

/* ---- dispatch ------------------------------------------------------------- */

/* Reaps every child that has exited and delivers what is ready; the only
 * place that waits for "any child". */
static void process(struct init_reaper *r)
{
	r->dispatching = true;
	while (!r->free_pending) {
		int status;
		pid_t pid = waitpid(-1, &status, WNOHANG);
		if (pid < 0 && errno == EINTR)
			continue;
		if (pid <= 0)
			break; /* 0: none left exited; ECHILD: no children */
		r->stats.reaped++;
		ssize_t i = find_watch(r, pid);
		if (i < 0) {
			init_log(INIT_LOG_DEBUG, "reaper: pid %d exited unwatched (status 0x%x)",
				 (int)pid, (unsigned)status);
			push_unclaimed(r, pid, status);
			continue;
		}
		struct watch w = take_watch(r, (size_t)i);
		r->stats.delivered++;
		if (w.exited) {
			/* The watch claimed an earlier exit of this pid, not yet
			 * delivered, and the number was reused meanwhile. */
			push_unclaimed(r, pid, status);
			status = w.status;
		}
		w.fn(pid, status, w.data);
	}
	/* Watches that claimed an exit reaped earlier. */
	for (size_t i = 0; i < r->n_watches && !r->free_pending;) {
		if (!r->watches[i].exited) {
			i++;
			continue;
		}
		struct watch w = take_watch(r, i);
		r->stats.delivered++;
		w.fn(w.pid, w.status, w.data);
		i = 0; /* the callback may have changed the table */
	}
	r->dispatching = false;
	if (r->free_pending)
		reaper_destroy(r);
}

static void on_signal(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io, (void)events;
	struct init_reaper *r = data;
	/* Drain: SIGCHLD coalesces, so one read may stand for many exits;
	 * process() asks waitpid for all of them anyway. */
	struct signalfd_siginfo si[8];
	for (;;) {
		ssize_t n = read(fd, si, sizeof(si));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < (ssize_t)sizeof(si))
			break;
	}
	process(r);
}

static void on_defer(void *data)
{
	struct reaper_defer *d = data;
	if (!d->r) {
		free(d); /* the reaper went away while this was queued */
		return;
	}
	process(d->r);
}

/* ---- public --------------------------------------------------------------- */

int init_reaper_new(struct ev_loop *loop, struct init_reaper **out, struct husk_err *err)
{
	struct init_reaper *r = calloc(1, sizeof(*r));
	struct reaper_defer *d = calloc(1, sizeof(*d));
	if (!r || !d) {
		free(r);
		free(d);
		return husk_err_set(err, -ENOMEM, "reaper: out of memory");
	}
	r->loop = loop;
	r->sfd = -1;
	r->defer = d;
	d->r = r;
	d->node.fn = on_defer;
	d->node.data = d;

	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	/* pthread_sigmask: the agent has one thread; the mask is per-thread
	 * in any case. */
	int rc = pthread_sigmask(SIG_BLOCK, &mask, &r->old_mask);
	if (rc) {
		free(d);
		free(r);
		return husk_err_sys(err, -rc, "reaper: block SIGCHLD");
	}
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	sigemptyset(&dfl.sa_mask);
	sigaction(SIGCHLD, &dfl, &r->old_action);

	r->sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (r->sfd < 0) {
		int e = -errno;
		reaper_destroy(r);
		return husk_err_sys(err, e, "reaper: signalfd");
	}
	int ret = ev_io_add(loop, r->sfd, EPOLLIN, on_signal, r, &r->io, err);
	if (ret < 0) {
		reaper_destroy(r);
		husk_err_wrap(err, "reaper");
		return ret;
	}

	if (getpid() != 1) {
		int on = 0;
		if (prctl(PR_GET_CHILD_SUBREAPER, &on, 0, 0, 0) == 0 && !on) {
			if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
				r->unset_subreaper = true;
			else
				init_log(INIT_LOG_WARNING, "reaper: PR_SET_CHILD_SUBREAPER: %s",
					 strerror(errno));
		}
	}

	/* Children that exited before SIGCHLD was blocked left no signal for
	 * the signalfd: sweep once from the loop. */
	ev_defer(loop, &d->node);
	*out = r;
	return 0;
}

int init_reaper_watch(struct init_reaper *r, pid_t pid, init_reaper_fn on_exit, void *data)
{
	if (pid <= 0 || !on_exit)
		return -EINVAL;
	if (find_watch(r, pid) >= 0)
		return -EEXIST;

	struct watch w = { .pid = pid, .fn = on_exit, .data = data };
	/* Is `pid` our child right now (running, or exited and not reaped)?
	 * WNOWAIT leaves it be. If so, any table entry for this pid is from
	 * an earlier process that had the same number. */
	siginfo_t si;
	int rc;
	do {
		memset(&si, 0, sizeof(si));
		rc = waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT);
	} while (rc < 0 && errno == EINTR);
	if (rc == 0) {
		drop_unclaimed(r, pid);
	} else {
		if (errno != ECHILD)
			return -errno;
		ssize_t i = find_unclaimed(r, pid);
		if (i < 0)
			return -ECHILD;
		w.exited = true;
		w.status = r->ring[i].status;
		r->ring[i].pid = 0;
		r->stats.unclaimed--;
	}
	int ret = add_watch(r, &w);
	if (ret < 0) {
		if (w.exited)
			push_unclaimed(r, pid, w.status);
		return ret;
	}
	/* Delivered from the loop, never from inside this call: the caller may
	 * not be ready for its callback yet. */
	if (w.exited)
		ev_defer(r->loop, &r->defer->node);
	return 0;
}

int init_reaper_unwatch(struct init_reaper *r, pid_t pid)
{
	ssize_t i = find_watch(r, pid);
	if (i < 0)
		return -ENOENT;
	struct watch w = take_watch(r, (size_t)i);
	if (w.exited)
		push_unclaimed(r, w.pid, w.status);
	return 0;
}

static void reaper_destroy(struct init_reaper *r)
{
	if (r->io)
		ev_io_del(r->io);
	if (r->sfd >= 0)
		close(r->sfd);
	if (r->defer) {
		if (r->defer->node.queued)
			r->defer->r = NULL; /* on_defer frees it */
		else
			free(r->defer);
	}
	if (r->unset_subreaper)
		prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
	sigaction(SIGCHLD, &r->old_action, NULL);
	pthread_sigmask(SIG_SETMASK, &r->old_mask, NULL);
	free(r->watches);
	free(r);
}

void init_reaper_free(struct init_reaper *r)
{
	if (!r)
		return;
	if (r->dispatching) {
		/* Inside one of our callbacks: process() finishes the job. */
		r->free_pending = true;
		return;
	}
	reaper_destroy(r);
}

void init_reaper_stats(const struct init_reaper *r, struct init_reaper_stats *out)
{
	*out = r->stats;
}
