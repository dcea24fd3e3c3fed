#include "ttrpc/loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "husk/cleanup.h"
#include "husk/time.h"

struct ev_io {
	struct ev_loop *loop;
	int fd;
	uint32_t events;
	bool dead;
	ev_io_fn fn;
	void *data;
	struct ev_io *prev, *next; /* live watches, so ev_loop_free can drop them */
	struct ev_io *next_dead;
};

struct ev_timer {
	uint64_t deadline;
	uint64_t seq; /* ties fire in insertion order */
	size_t heap_index;
	ev_timer_fn fn;
	void *data;
	struct ev_loop *loop;
};

struct ev_loop {
	int epfd;
	bool stop;
	unsigned depth; /* nested ev_run_once calls; garbage is freed at depth 0 */
	struct ev_io *ios;
	struct ev_io *dead;
	struct ev_timer **heap;
	size_t heap_len, heap_cap;
	uint64_t timer_seq;
	struct ev_deferred *defer_head, *defer_tail;
};

/* The loop's name for husk_monotonic_ns, which its timers run on. */
uint64_t ev_now_ns(void)
{
	return husk_monotonic_ns();
}

int ev_loop_new(struct ev_loop **out, struct husk_err *err)
{
	struct ev_loop *loop = calloc(1, sizeof(*loop));
	if (!loop)
		return husk_err_set(err, -ENOMEM, "event loop: out of memory");
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epfd < 0) {
		int r = -errno;
		free(loop);
		return husk_err_sys(err, r, "event loop: epoll_create1");
	}
	*out = loop;
	return 0;
}

static void free_dead(struct ev_loop *loop)
{
	while (loop->dead) {
		struct ev_io *io = loop->dead;
		loop->dead = io->next_dead;
		free(io);
	}
}

static int run_deferred(struct ev_loop *loop);

void ev_loop_free(struct ev_loop *loop)
{
	if (!loop)
		return;
	/* Deferred work is mostly teardown (connections closing): finish it. */
	while (loop->defer_head)
		run_deferred(loop);
	free_dead(loop);
	while (loop->ios) {
		struct ev_io *io = loop->ios;
		loop->ios = io->next;
		free(io);
	}
	for (size_t i = 0; i < loop->heap_len; i++)
		free(loop->heap[i]);
	free(loop->heap);
	close(loop->epfd);
	free(loop);
}

int ev_io_add(struct ev_loop *loop, int fd, uint32_t events, ev_io_fn fn, void *data,
	      struct ev_io **out, struct husk_err *err)
{
	struct ev_io *io = calloc(1, sizeof(*io));
	if (!io)
		return husk_err_set(err, -ENOMEM, "event loop: out of memory");
	*io = (struct ev_io){ .loop = loop, .fd = fd, .events = events, .fn = fn, .data = data };
	struct epoll_event ev = { .events = events, .data.ptr = io };
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int r = -errno;
		free(io);
		return husk_err_sys(err, r, "event loop: watch fd %d", fd);
	}
	io->next = loop->ios;
	if (loop->ios)
		loop->ios->prev = io;
	loop->ios = io;
	*out = io;
	return 0;
}

int ev_io_set_events(struct ev_io *io, uint32_t events)
{
	if (io->events == events)
		return 0;
	struct epoll_event ev = { .events = events, .data.ptr = io };
	if (epoll_ctl(io->loop->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0)
		return -errno;
	io->events = events;
	return 0;
}

uint32_t ev_io_events(const struct ev_io *io)
{
	return io->events;
}

void ev_io_del(struct ev_io *io)
{
	if (!io || io->dead)
		return;
	epoll_ctl(io->loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
	if (io->prev)
		io->prev->next = io->next;
	else
		io->loop->ios = io->next;
	if (io->next)
		io->next->prev = io->prev;
	io->dead = true;
	io->next_dead = io->loop->dead;
	io->loop->dead = io;
}

/* ---- timers: binary min-heap on (deadline, seq) ---- */

static bool timer_before(const struct ev_timer *a, const struct ev_timer *b)
{
	return a->deadline < b->deadline || (a->deadline == b->deadline && a->seq < b->seq);
}

static void heap_set(struct ev_loop *loop, size_t i, struct ev_timer *t)
{
	loop->heap[i] = t;
	t->heap_index = i;
}

static void heap_up(struct ev_loop *loop, size_t i)
{
	struct ev_timer *t = loop->heap[i];
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (!timer_before(t, loop->heap[parent]))
			break;
		heap_set(loop, i, loop->heap[parent]);
		i = parent;
	}
	heap_set(loop, i, t);
}

static void heap_down(struct ev_loop *loop, size_t i)
{
	struct ev_timer *t = loop->heap[i];
	for (;;) {
		size_t child = 2 * i + 1;
		if (child >= loop->heap_len)
			break;
		if (child + 1 < loop->heap_len && timer_before(loop->heap[child + 1], loop->heap[child]))
			child++;
		if (!timer_before(loop->heap[child], t))
			break;
		heap_set(loop, i, loop->heap[child]);
		i = child;
	}
	heap_set(loop, i, t);
}

static void heap_remove(struct ev_loop *loop, struct ev_timer *t)
{
	size_t i = t->heap_index;
	struct ev_timer *last = loop->heap[--loop->heap_len];
	if (last == t)
		return;
	heap_set(loop, i, last);
	if (i > 0 && timer_before(last, loop->heap[(i - 1) / 2]))
		heap_up(loop, i);
	else
		heap_down(loop, i);
}

int ev_timer_add(struct ev_loop *loop, uint64_t timeout_ns, ev_timer_fn fn, void *data,
		 struct ev_timer **out)
{
	if (loop->heap_len == loop->heap_cap) {
		size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 16;
		struct ev_timer **heap = realloc(loop->heap, cap * sizeof(*heap));
		if (!heap)
			return -ENOMEM;
		loop->heap = heap;
		loop->heap_cap = cap;
	}
	struct ev_timer *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	uint64_t now = ev_now_ns();
	t->deadline = timeout_ns > UINT64_MAX - now ? UINT64_MAX : now + timeout_ns;
	t->seq = loop->timer_seq++;
	t->fn = fn;
	t->data = data;
	t->loop = loop;
	loop->heap[loop->heap_len] = t;
	t->heap_index = loop->heap_len++;
	heap_up(loop, t->heap_index);
	if (out)
		*out = t;
	return 0;
}

void ev_timer_cancel(struct ev_timer *t)
{
	if (!t)
		return;
	heap_remove(t->loop, t);
	free(t);
}

static int run_timers(struct ev_loop *loop)
{
	int ran = 0;
	uint64_t now = ev_now_ns();
	while (loop->heap_len > 0 && loop->heap[0]->deadline <= now) {
		struct ev_timer *t = loop->heap[0];
		heap_remove(loop, t);
		ev_timer_fn fn = t->fn;
		void *data = t->data;
		free(t);
		fn(data);
		ran++;
	}
	return ran;
}

/* ---- deferred callbacks ---- */

void ev_defer(struct ev_loop *loop, struct ev_deferred *d)
{
	if (d->queued)
		return;
	d->queued = true;
	d->next = NULL;
	if (loop->defer_tail)
		loop->defer_tail->next = d;
	else
		loop->defer_head = d;
	loop->defer_tail = d;
}

static int run_deferred(struct ev_loop *loop)
{
	/* Only what was queued before we started: callbacks that defer more
	 * work get it run in the next round, so this always terminates. */
	struct ev_deferred *d = loop->defer_head;
	loop->defer_head = loop->defer_tail = NULL;
	int ran = 0;
	while (d) {
		struct ev_deferred *next = d->next;
		d->queued = false;
		d->fn(d->data);
		d = next;
		ran++;
	}
	return ran;
}

static int next_timeout_ms(struct ev_loop *loop, int timeout_ms)
{
	if (loop->defer_head)
		return 0;
	if (loop->heap_len == 0)
		return timeout_ms;
	uint64_t now = ev_now_ns();
	uint64_t deadline = loop->heap[0]->deadline;
	/* Round up so we never wake before the deadline and spin. */
	uint64_t ms = deadline <= now ? 0 : (deadline - now + 999999) / 1000000;
	if (ms > INT32_MAX)
		ms = INT32_MAX;
	if (timeout_ms >= 0 && (uint64_t)timeout_ms < ms)
		return timeout_ms;
	return (int)ms;
}

int ev_run_once(struct ev_loop *loop, int timeout_ms)
{
	struct epoll_event events[64];
	int ran = run_deferred(loop);
	int wait_ms = ran ? 0 : next_timeout_ms(loop, timeout_ms);
	int n = epoll_wait(loop->epfd, events, (int)ARRAY_SIZE(events), wait_ms);
	if (n < 0) {
		if (errno != EINTR)
			return -errno;
		n = 0;
	}
	loop->depth++;
	for (int i = 0; i < n; i++) {
		struct ev_io *io = events[i].data.ptr;
		if (io->dead)
			continue;
		io->fn(io, io->fd, events[i].events, io->data);
		ran++;
	}
	ran += run_timers(loop);
	ran += run_deferred(loop);
	if (--loop->depth == 0)
		free_dead(loop);
	return ran;
}

int ev_run(struct ev_loop *loop)
{
	loop->stop = false;
	while (!loop->stop) {
		int r = ev_run_once(loop, -1);
		if (r < 0)
			return r;
	}
	return 0;
}

void ev_stop(struct ev_loop *loop)
{
	loop->stop = true;
}
