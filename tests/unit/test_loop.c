/* Unit tests for the epoll event loop: timers, deferred callbacks, fd
 * watches and their removal from inside callbacks. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "ttrpc/loop.h"

#define MS (1000000ull)

/* libasan's allocation counter, declared here because gcc ships no header
 * for it; weak so the file still links without ASan. */
extern size_t __sanitizer_get_current_allocated_bytes(void) __attribute__((weak));

/* Link seam: this definition takes precedence over libc's for the loop's
 * clock reads, so a test can freeze CLOCK_MONOTONIC and give several timers
 * exactly the same deadline. Unfrozen, it asks the kernel. */
static bool clock_frozen;
static struct timespec frozen_ts;

int clock_gettime(clockid_t clk, struct timespec *ts)
{
	if (clock_frozen && clk == CLOCK_MONOTONIC) {
		*ts = frozen_ts;
		return 0;
	}
	return (int)syscall(SYS_clock_gettime, clk, ts);
}

static void freeze_clock(void)
{
	assert_int_equal(syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &frozen_ts), 0);
	clock_frozen = true;
}

static void thaw_clock(void)
{
	clock_frozen = false;
}

/* ---- fixture ------------------------------------------------------------ */

struct fx {
	struct ev_loop *loop;
	int a[2], b[2]; /* two pipes */
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	struct husk_err err = { 0 };
	assert_int_equal(ev_loop_new(&f->loop, &err), 0);
	assert_int_equal(pipe2(f->a, O_CLOEXEC | O_NONBLOCK), 0);
	assert_int_equal(pipe2(f->b, O_CLOEXEC | O_NONBLOCK), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	ev_loop_free(f->loop);
	close(f->a[0]);
	close(f->a[1]);
	close(f->b[0]);
	close(f->b[1]);
	free(f);
	return 0;
}

static void put_byte(int fd)
{
	assert_int_equal(write(fd, "x", 1), 1);
}

/* An ordered log of small integers, written by callbacks. */
struct log {
	int v[1024];
	int n;
};

static void log_add(struct log *l, int x)
{
	assert_true(l->n < (int)(sizeof(l->v) / sizeof(l->v[0])));
	l->v[l->n++] = x;
}

/* Runs iterations until `done` is set, giving up after a generous bound. */
static void run_until(struct ev_loop *loop, const bool *done)
{
	for (int i = 0; i < 10000 && !*done; i++)
		assert_true(ev_run_once(loop, 1000) >= 0);
	assert_true(*done);
}

/* ---- timers ------------------------------------------------------------- */

struct tctx {
	struct log *log;
	int id;
	uint64_t lo, hi; /* bounds on the deadline: ev_now_ns() around the add */
	struct ev_timer *victim; /* cancelled when this timer fires */
	bool *done;
	struct ev_loop *stop; /* stopped when this timer fires */
};

static void timer_cb(void *data)
{
	struct tctx *t = data;
	/* Never early: the deadline is at least `lo`. */
	assert_true(ev_now_ns() >= t->lo);
	log_add(t->log, t->id);
	if (t->victim) {
		ev_timer_cancel(t->victim);
		t->victim = NULL;
	}
	if (t->done)
		*t->done = true;
	if (t->stop)
		ev_stop(t->stop);
}

static void add_timer(struct ev_loop *loop, struct tctx *t, uint64_t timeout_ns,
		      struct ev_timer **out)
{
	uint64_t now = ev_now_ns();
	t->lo = now + timeout_ns;
	assert_int_equal(ev_timer_add(loop, timeout_ns, timer_cb, t, out), 0);
	t->hi = ev_now_ns() + timeout_ns;
}

static void test_timer_deadline_order(void **state)
{
	struct fx *f = *state;
	struct log log = { 0 };
	static const int ms[] = { 30, 10, 0, 20, 5, 25, 15 };
	enum { N = sizeof(ms) / sizeof(ms[0]) };
	struct tctx t[N];
	/* Frozen while adding, so a stall between two adds cannot reorder
	 * the deadlines. */
	freeze_clock();
	for (int i = 0; i < N; i++) {
		t[i] = (struct tctx){ .log = &log, .id = i };
		add_timer(f->loop, &t[i], ms[i] * MS, NULL);
	}
	thaw_clock();
	while (log.n < N)
		assert_true(ev_run_once(f->loop, 1000) >= 0);
	static const int want[N] = { 2, 4, 1, 6, 3, 5, 0 };
	assert_memory_equal(log.v, want, sizeof(want));
}

/* Many timers with a handful of distinct timeouts, so deadlines tie often,
 * and a scattered third cancelled in random order (removal from the middle
 * of the heap). With the clock frozen while adding, the firing order is
 * known exactly: by timeout, then by insertion. */
static void test_timer_heap_order(void **state)
{
	struct fx *f = *state;
	enum { N = 1000, SPREAD = 8 };
	struct log log = { 0 };
	struct tctx *t = calloc(N, sizeof(*t));
	struct ev_timer **h = calloc(N, sizeof(*h));
	int *want = calloc(N, sizeof(*want));
	bool *cancelled = calloc(N, sizeof(*cancelled));
	int *seen = calloc(N, sizeof(*seen));
	assert_true(t && h && want && cancelled && seen);
	uint64_t seed = 12345;
	uint64_t timeout[N];
	freeze_clock();
	for (int i = 0; i < N; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		timeout[i] = ((seed >> 33) % SPREAD) * MS;
		t[i] = (struct tctx){ .log = &log, .id = i };
		add_timer(f->loop, &t[i], timeout[i], &h[i]);
	}
	int ncancel = 0;
	for (int k = 0; k < N / 3; k++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		int i = (int)((seed >> 33) % N);
		if (cancelled[i])
			continue;
		ev_timer_cancel(h[i]);
		cancelled[i] = true;
		ncancel++;
	}
	thaw_clock();
	int nwant = 0;
	for (uint64_t ms = 0; ms < SPREAD; ms++)
		for (int i = 0; i < N; i++)
			if (!cancelled[i] && timeout[i] == ms * MS)
				want[nwant++] = i;
	assert_int_equal(nwant, N - ncancel);

	usleep((SPREAD + 2) * 1000);
	int n = 0;
	while (n < nwant) {
		log.n = 0;
		int r = ev_run_once(f->loop, 1000);
		assert_true(r >= 0);
		for (int k = 0; k < log.n; k++)
			seen[n++] = log.v[k];
	}
	assert_memory_equal(seen, want, nwant * sizeof(int));
	assert_int_equal(ev_run_once(f->loop, 10), 0);
	free(t);
	free(h);
	free(want);
	free(cancelled);
	free(seen);
}

static void test_timer_equal_deadlines_insertion_order(void **state)
{
	struct fx *f = *state;
	struct log log = { 0 };
	enum { N = 50 };
	struct tctx t[N];
	/* Frozen clock: identical deadlines, so only insertion order can
	 * decide. */
	freeze_clock();
	for (int i = 0; i < N; i++) {
		t[i] = (struct tctx){ .log = &log, .id = i };
		add_timer(f->loop, &t[i], 2 * MS, NULL);
	}
	thaw_clock();
	usleep(3000);
	assert_int_equal(ev_run_once(f->loop, 1000), N);
	assert_int_equal(log.n, N);
	for (int i = 0; i < N; i++)
		assert_int_equal(log.v[i], i);

	/* Real clock, timeout 0: all due at once, deadlines non-decreasing in
	 * insertion order (ties when the clock reads the same). */
	log.n = 0;
	for (int i = 0; i < N; i++) {
		t[i] = (struct tctx){ .log = &log, .id = i };
		add_timer(f->loop, &t[i], 0, NULL);
	}
	assert_int_equal(ev_run_once(f->loop, 1000), N);
	for (int i = 0; i < N; i++)
		assert_int_equal(log.v[i], i);
}

static void test_timer_cancel_before_firing(void **state)
{
	struct fx *f = *state;
	struct log log = { 0 };
	bool done = false;
	struct tctx a = { .log = &log, .id = 1 };
	struct tctx b = { .log = &log, .id = 2, .done = &done };
	struct ev_timer *ta;
	add_timer(f->loop, &a, 1 * MS, &ta);
	add_timer(f->loop, &b, 20 * MS, NULL);
	ev_timer_cancel(ta);
	ev_timer_cancel(NULL);
	run_until(f->loop, &done);
	assert_int_equal(log.n, 1);
	assert_int_equal(log.v[0], 2);
	/* Nothing left: an idle iteration runs nothing. */
	assert_int_equal(ev_run_once(f->loop, 5), 0);
}

static void test_timer_cb_cancels_pending(void **state)
{
	struct fx *f = *state;
	struct log log = { 0 };
	bool done = false;
	struct tctx first = { .log = &log, .id = 1 };
	struct tctx due = { .log = &log, .id = 2 };     /* due in the same drain */
	struct tctx later = { .log = &log, .id = 3 };   /* due in a later drain */
	struct tctx last = { .log = &log, .id = 4, .done = &done };
	struct tctx second = { .log = &log, .id = 5 };
	struct ev_timer *t_due, *t_later;
	add_timer(f->loop, &first, 0, NULL);
	add_timer(f->loop, &due, 0, &t_due);
	add_timer(f->loop, &second, 0, NULL);
	add_timer(f->loop, &later, 10 * MS, &t_later);
	add_timer(f->loop, &last, 30 * MS, NULL);
	first.victim = t_due;
	second.victim = t_later;
	run_until(f->loop, &done);
	static const int want[] = { 1, 5, 4 };
	assert_int_equal(log.n, 3);
	assert_memory_equal(log.v, want, sizeof(want));
}

/* A timer armed from a timer callback runs in a later drain, not this one. */
struct rearm {
	struct ev_loop *loop;
	int fired;
};

static void rearm_cb(void *data)
{
	struct rearm *r = data;
	if (++r->fired < 3)
		assert_int_equal(ev_timer_add(r->loop, 0, rearm_cb, r, NULL), 0);
}

static void test_timer_rearm_from_cb(void **state)
{
	struct fx *f = *state;
	struct rearm r = { .loop = f->loop };
	assert_int_equal(ev_timer_add(f->loop, 0, rearm_cb, &r, NULL), 0);
	for (int i = 0; i < 1000 && r.fired < 3; i++)
		assert_true(ev_run_once(f->loop, 1000) >= 0);
	assert_int_equal(r.fired, 3);
}

/* ---- deferred callbacks ------------------------------------------------- */

struct dctx {
	struct ev_loop *loop;
	struct log *log;
	struct ev_deferred node;
	struct ev_io *io_a, *io_b;
	int requeue; /* times the deferred callback queues itself again */
	int runs;
};

static void defer_cb(void *data)
{
	struct dctx *d = data;
	d->runs++;
	log_add(d->log, 100);
	if (d->requeue > 0) {
		d->requeue--;
		ev_defer(d->loop, &d->node);
	}
}

static void defer_io_cb(struct ev_io *io, int fd, uint32_t events, void *data)
{
	struct dctx *d = data;
	char c;
	assert_true(events & EPOLLIN);
	assert_int_equal(read(fd, &c, 1), 1);
	log_add(d->log, io == d->io_a ? 1 : 2);
	/* Queued twice from each callback: must still run once. */
	ev_defer(d->loop, &d->node);
	ev_defer(d->loop, &d->node);
}

static void test_defer_after_io(void **state)
{
	struct fx *f = *state;
	struct log log = { 0 };
	struct dctx d = { .loop = f->loop, .log = &log };
	d.node = (struct ev_deferred){ .fn = defer_cb, .data = &d };
	struct husk_err err = { 0 };
	assert_int_equal(ev_io_add(f->loop, f->a[0], EPOLLIN, defer_io_cb, &d, &d.io_a, &err), 0);
	assert_int_equal(ev_io_add(f->loop, f->b[0], EPOLLIN, defer_io_cb, &d, &d.io_b, &err), 0);
	put_byte(f->a[1]);
	put_byte(f->b[1]);
	/* Both pipes are ready before the wait, so one batch holds both. */
	assert_int_equal(ev_run_once(f->loop, 1000), 3);
	assert_int_equal(log.n, 3);
	assert_true((log.v[0] == 1 && log.v[1] == 2) || (log.v[0] == 2 && log.v[1] == 1));
	assert_int_equal(log.v[2], 100);
	assert_int_equal(d.runs, 1);
	assert_false(d.node.queued);

	/* Queued from outside the loop: runs in the next iteration. */
	log.n = 0;
	ev_defer(f->loop, &d.node);
	ev_defer(f->loop, &d.node);
	assert_int_equal(ev_run_once(f->loop, 100), 1);
	assert_int_equal(d.runs, 2);
	ev_io_del(d.io_a);
	ev_io_del(d.io_b);
}

static void test_defer_requeue_self_terminates(void **state)
{
	struct fx *f = *state;
	struct log log = { 0 };
	struct dctx d = { .loop = f->loop, .log = &log, .requeue = 1000000 };
	d.node = (struct ev_deferred){ .fn = defer_cb, .data = &d };
	ev_defer(f->loop, &d.node);
	/* Each iteration runs only what was queued before each round, so a
	 * self-requeueing callback cannot trap ev_run_once. */
	int r = ev_run_once(f->loop, 0);
	assert_true(r >= 1 && r <= 2);
	assert_int_equal(d.runs, r);
	assert_true(d.node.queued);
	int before = d.runs;
	r = ev_run_once(f->loop, 0);
	assert_true(r >= 1 && r <= 2);
	assert_int_equal(d.runs, before + r);
	/* Stop requeueing; it drains. */
	d.requeue = 0;
	for (int i = 0; i < 5 && d.node.queued; i++)
		assert_true(ev_run_once(f->loop, 0) >= 0);
	assert_false(d.node.queued);
	assert_int_equal(ev_run_once(f->loop, 0), 0);
}

/* A deferred callback may free its own node. */
static void defer_free_cb(void *data)
{
	int *ran = ((void **)data)[1];
	(*ran)++;
	free(((void **)data)[0]);
}

static void test_defer_cb_frees_node(void **state)
{
	struct fx *f = *state;
	int ran = 0;
	struct ev_deferred *node = calloc(1, sizeof(*node));
	assert_non_null(node);
	void *args[2] = { node, &ran };
	node->fn = defer_free_cb;
	node->data = args;
	ev_defer(f->loop, node);
	assert_int_equal(ev_run_once(f->loop, 0), 1);
	assert_int_equal(ran, 1);
}

/* ---- io watches --------------------------------------------------------- */

struct ioctx {
	struct log *log;
	struct ev_io *self;
	struct ev_io **other; /* where the other watch's handle lives */
	int id;
	uint32_t events;
	bool del_self, del_other, drop_out, read_it;
	struct ev_loop *stop;
	int calls;
};

static void io_cb(struct ev_io *io, int fd, uint32_t events, void *data)
{
	struct ioctx *c = data;
	(void)fd;
	assert_ptr_equal(io, c->self);
	c->calls++;
	c->events = events;
	if (c->log)
		log_add(c->log, c->id);
	if (c->read_it) {
		char buf[16];
		assert_true(read(fd, buf, sizeof(buf)) > 0);
	}
	if (c->del_other && c->other && *c->other) {
		/* The other watch shares this batch; after this it must not
		 * run even though its event is already in hand. */
		ev_io_del(*c->other);
		*c->other = NULL;
	}
	if (c->del_self) {
		ev_io_del(io);
		c->self = NULL;
	}
	if (c->drop_out)
		assert_int_equal(ev_io_set_events(io, 0), 0);
	if (c->stop)
		ev_stop(c->stop);
}

static void test_io_pipe_readable(void **state)
{
	struct fx *f = *state;
	struct ioctx c = { .id = 1 };
	struct husk_err err = { 0 };
	assert_int_equal(ev_io_add(f->loop, f->a[0], EPOLLIN, io_cb, &c, &c.self, &err), 0);
	assert_int_equal(ev_io_events(c.self), EPOLLIN);
	/* Nothing written: nothing runs. */
	assert_int_equal(ev_run_once(f->loop, 0), 0);
	assert_int_equal(c.calls, 0);
	put_byte(f->a[1]);
	assert_int_equal(ev_run_once(f->loop, 1000), 1);
	assert_int_equal(c.calls, 1);
	assert_true(c.events & EPOLLIN);
	/* Level-triggered: still readable, fires again. */
	assert_int_equal(ev_run_once(f->loop, 1000), 1);
	assert_int_equal(c.calls, 2);
	char ch;
	assert_int_equal(read(f->a[0], &ch, 1), 1);
	assert_int_equal(ev_run_once(f->loop, 0), 0);
	assert_int_equal(c.calls, 2);
	ev_io_del(c.self);
	ev_io_del(NULL);
}

static void test_io_add_bad_fd(void **state)
{
	struct fx *f = *state;
	struct ioctx c = { .id = 1 };
	struct husk_err err = { 0 };
	struct ev_io *io = NULL;
	assert_int_equal(ev_io_add(f->loop, -1, EPOLLIN, io_cb, &c, &io, &err), -EBADF);
	assert_null(io);
	assert_int_equal(err.code, -EBADF);
	assert_true(err.msg[0] != '\0');
}

/* Watch A's callback deletes watch B while B's event sits in the same
 * batch (and vice versa, since epoll does not promise an order). */
static void test_io_del_other_in_batch(void **state)
{
	struct fx *f = *state;
	struct ev_io *ios[2] = { 0 };
	struct ioctx ca = { .id = 1, .del_other = true, .read_it = true };
	struct ioctx cb = { .id = 2, .del_other = true, .read_it = true };
	struct husk_err err = { 0 };
	assert_int_equal(ev_io_add(f->loop, f->a[0], EPOLLIN, io_cb, &ca, &ios[0], &err), 0);
	assert_int_equal(ev_io_add(f->loop, f->b[0], EPOLLIN, io_cb, &cb, &ios[1], &err), 0);
	ca.self = ios[0];
	cb.self = ios[1];
	ca.other = &ios[1];
	cb.other = &ios[0];
	put_byte(f->a[1]);
	put_byte(f->b[1]);
	assert_int_equal(ev_run_once(f->loop, 1000), 1);
	assert_int_equal(ca.calls + cb.calls, 1);
	/* The survivor keeps working; the deleted one stays silent even
	 * with its pipe readable again. */
	struct ioctx *alive = ca.calls ? &ca : &cb;
	struct ioctx *gone = ca.calls ? &cb : &ca;
	int alive_w = ca.calls ? f->a[1] : f->b[1];
	int gone_w = ca.calls ? f->b[1] : f->a[1];
	alive->del_other = false;
	put_byte(alive_w);
	put_byte(gone_w);
	assert_int_equal(ev_run_once(f->loop, 1000), 1);
	assert_int_equal(alive->calls, 2);
	assert_int_equal(gone->calls, 0);
	ev_io_del(ios[0] ? ios[0] : ios[1]);
}

static void test_io_del_self(void **state)
{
	struct fx *f = *state;
	struct ioctx c = { .id = 1, .del_self = true };
	struct ioctx d = { .id = 2, .read_it = true };
	struct husk_err err = { 0 };
	assert_int_equal(ev_io_add(f->loop, f->a[0], EPOLLIN, io_cb, &c, &c.self, &err), 0);
	assert_int_equal(ev_io_add(f->loop, f->b[0], EPOLLIN, io_cb, &d, &d.self, &err), 0);
	put_byte(f->a[1]);
	put_byte(f->b[1]);
	assert_int_equal(ev_run_once(f->loop, 1000), 2);
	assert_int_equal(c.calls, 1);
	assert_null(c.self);
	/* a[0] is still readable (never read), but its watch is gone. */
	put_byte(f->b[1]);
	assert_int_equal(ev_run_once(f->loop, 1000), 1);
	assert_int_equal(c.calls, 1);
	assert_int_equal(d.calls, 2);
	/* The same fd can be watched again. */
	struct ioctx e = { .id = 3, .read_it = true };
	assert_int_equal(ev_io_add(f->loop, f->a[0], EPOLLIN, io_cb, &e, &e.self, &err), 0);
	assert_int_equal(ev_run_once(f->loop, 1000), 1);
	assert_int_equal(e.calls, 1);
	ev_io_del(e.self);
	ev_io_del(d.self);
}

static void test_io_set_events_epollout(void **state)
{
	struct fx *f = *state;
	struct ioctx c = { .id = 1 };
	struct husk_err err = { 0 };
	/* The write end of an empty pipe is always writable. */
	assert_int_equal(ev_io_add(f->loop, f->a[1], 0, io_cb, &c, &c.self, &err), 0);
	assert_int_equal(ev_run_once(f->loop, 0), 0);
	assert_int_equal(ev_io_set_events(c.self, EPOLLOUT), 0);
	assert_int_equal(ev_io_events(c.self), EPOLLOUT);
	assert_int_equal(ev_run_once(f->loop, 1000), 1);
	assert_true(c.events & EPOLLOUT);
	assert_int_equal(ev_io_set_events(c.self, EPOLLOUT), 0); /* no change */
	assert_int_equal(ev_io_set_events(c.self, 0), 0);
	assert_int_equal(ev_io_events(c.self), 0);
	assert_int_equal(ev_run_once(f->loop, 0), 0);
	assert_int_equal(c.calls, 1);

	/* Turned off from inside its own callback, as a writer does once its
	 * queue drains: fires exactly once. */
	c.drop_out = true;
	assert_int_equal(ev_io_set_events(c.self, EPOLLOUT), 0);
	assert_int_equal(ev_run_once(f->loop, 1000), 1);
	assert_int_equal(ev_run_once(f->loop, 0), 0);
	assert_int_equal(ev_run_once(f->loop, 0), 0);
	assert_int_equal(c.calls, 2);
	assert_int_equal(ev_io_events(c.self), 0);
	ev_io_del(c.self);
}

/* ---- ev_run / ev_stop / timeouts --------------------------------------- */

static void test_stop_from_io_cb(void **state)
{
	struct fx *f = *state;
	struct ioctx c = { .id = 1, .read_it = true, .stop = f->loop };
	struct husk_err err = { 0 };
	assert_int_equal(ev_io_add(f->loop, f->a[0], EPOLLIN, io_cb, &c, &c.self, &err), 0);
	put_byte(f->a[1]);
	assert_int_equal(ev_run(f->loop), 0);
	assert_int_equal(c.calls, 1);
	ev_io_del(c.self);
}

static void test_stop_from_timer_cb(void **state)
{
	struct fx *f = *state;
	struct log log = { 0 };
	struct tctx a = { .log = &log, .id = 1 };
	struct tctx b = { .log = &log, .id = 2, .stop = f->loop };
	add_timer(f->loop, &a, 1 * MS, NULL);
	add_timer(f->loop, &b, 5 * MS, NULL);
	assert_int_equal(ev_run(f->loop), 0);
	assert_int_equal(log.n, 2);
	/* ev_run can be entered again after a stop. */
	struct tctx c = { .log = &log, .id = 3, .stop = f->loop };
	add_timer(f->loop, &c, 1 * MS, NULL);
	assert_int_equal(ev_run(f->loop), 0);
	assert_int_equal(log.n, 3);
	assert_int_equal(log.v[2], 3);
}

static void test_run_once_idle_timeout(void **state)
{
	struct fx *f = *state;
	/* Nothing watched, no timers, no deferred work: waits out the
	 * timeout and reports nothing run. Only a lower bound on the time:
	 * the machine may be arbitrarily slow. */
	uint64_t t0 = ev_now_ns();
	assert_int_equal(ev_run_once(f->loop, 50), 0);
	assert_true(ev_now_ns() - t0 >= 50 * MS);

	/* A watch that never fires and a far-off timer change nothing. */
	struct ioctx c = { .id = 1 };
	struct husk_err err = { 0 };
	assert_int_equal(ev_io_add(f->loop, f->a[0], EPOLLIN, io_cb, &c, &c.self, &err), 0);
	struct log log = { 0 };
	struct tctx far = { .log = &log, .id = 1 };
	add_timer(f->loop, &far, 3600 * 1000 * MS, NULL);
	t0 = ev_now_ns();
	assert_int_equal(ev_run_once(f->loop, 30), 0);
	assert_true(ev_now_ns() - t0 >= 30 * MS);
	assert_int_equal(c.calls, 0);
	assert_int_equal(log.n, 0);
	ev_io_del(c.self);
	/* The pending timer is freed with the loop (checked by LeakSanitizer). */
}

static void test_run_once_timer_shortens_wait(void **state)
{
	struct fx *f = *state;
	struct log log = { 0 };
	struct tctx t = { .log = &log, .id = 1 };
	add_timer(f->loop, &t, 20 * MS, NULL);
	/* The wait is cut to the timer's deadline, not the 10 s timeout; the
	 * callback never runs before its deadline. */
	uint64_t t0 = ev_now_ns();
	while (log.n == 0)
		assert_true(ev_run_once(f->loop, 10000) >= 0);
	assert_true(ev_now_ns() >= t.lo);
	assert_true(ev_now_ns() - t0 >= 20 * MS);
}

/* ---- teardown ----------------------------------------------------------- */

/* ev_loop_free() promises to drop watches still registered; the caller has
 * no way to free them afterwards (ev_io_del needs the loop), so the loop
 * itself must. */
static void test_loop_free_releases_live_watches(void **state)
{
	struct fx *f = *state;
	if (!__sanitizer_get_current_allocated_bytes)
		skip();
	size_t before = __sanitizer_get_current_allocated_bytes();
	struct ev_loop *loop;
	struct husk_err err = { 0 };
	assert_int_equal(ev_loop_new(&loop, &err), 0);
	struct ioctx c = { .id = 1 };
	struct ev_io *io;
	assert_int_equal(ev_io_add(loop, f->a[0], EPOLLIN, io_cb, &c, &io, &err), 0);
	assert_int_equal(ev_timer_add(loop, 3600 * 1000 * MS, timer_cb, NULL, NULL), 0);
	ev_loop_free(loop);
	size_t after = __sanitizer_get_current_allocated_bytes();
	assert_int_equal(after, before);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_timer_deadline_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timer_heap_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timer_equal_deadlines_insertion_order, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_timer_cancel_before_firing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timer_cb_cancels_pending, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timer_rearm_from_cb, setup, teardown),
		cmocka_unit_test_setup_teardown(test_defer_after_io, setup, teardown),
		cmocka_unit_test_setup_teardown(test_defer_requeue_self_terminates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_defer_cb_frees_node, setup, teardown),
		cmocka_unit_test_setup_teardown(test_io_pipe_readable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_io_add_bad_fd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_io_del_other_in_batch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_io_del_self, setup, teardown),
		cmocka_unit_test_setup_teardown(test_io_set_events_epollout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_from_io_cb, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_from_timer_cb, setup, teardown),
		cmocka_unit_test_setup_teardown(test_run_once_idle_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_run_once_timer_shortens_wait, setup, teardown),
		cmocka_unit_test_setup_teardown(test_loop_free_releases_live_watches, setup,
						teardown),
	};
	return cmocka_run_group_tests_name("loop", tests, NULL, NULL);
}
