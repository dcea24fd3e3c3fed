/* A single-threaded epoll event loop shared by the agent, the shim and
 * libttrpc: fd watches, monotonic timers and deferred callbacks.
 *
 * Every callback runs on the thread that calls ev_run*(). Watches and timers
 * may be removed from inside any callback, including their own; memory is
 * reclaimed once the current batch of events has been dispatched. */
#ifndef TTRPC_LOOP_H
#define TTRPC_LOOP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

#include "husk/error.h"

struct ev_loop;
struct ev_io;
struct ev_timer;

typedef void (*ev_io_fn)(struct ev_io *io, int fd, uint32_t events, void *data);
typedef void (*ev_timer_fn)(void *data);
typedef void (*ev_defer_fn)(void *data);

int ev_loop_new(struct ev_loop **out, struct husk_err *err);
/* Frees the loop. Deferred callbacks still queued run first (they are
 * usually teardown); watches still registered are dropped (their fds are not
 * closed) and pending timers are discarded. */
void ev_loop_free(struct ev_loop *loop);

/* Watches `fd` for `events` (EPOLLIN, EPOLLOUT, ...; level-triggered). The
 * fd stays owned by the caller and must outlive the watch. */
int ev_io_add(struct ev_loop *loop, int fd, uint32_t events, ev_io_fn fn, void *data,
	      struct ev_io **out, struct husk_err *err);
int ev_io_set_events(struct ev_io *io, uint32_t events);
uint32_t ev_io_events(const struct ev_io *io);
/* Stops watching; `io` is invalid afterwards. NULL is ignored. Call it
 * before closing the fd: a closed fd number may already be reused. */
void ev_io_del(struct ev_io *io);

/* One-shot timer firing `timeout_ns` from now (CLOCK_MONOTONIC). */
int ev_timer_add(struct ev_loop *loop, uint64_t timeout_ns, ev_timer_fn fn, void *data,
		 struct ev_timer **out);
/* Cancels a timer that has not fired yet; NULL is ignored. A timer that has
 * fired is already gone: do not cancel it. */
void ev_timer_cancel(struct ev_timer *timer);

/* A deferred callback, embedded in its owner so queueing never allocates.
 * Set fn and data, then ev_defer(). */
struct ev_deferred {
	ev_defer_fn fn;
	void *data;
	struct ev_deferred *next;
	bool queued;
};

/* Runs node->fn(node->data) once, after the events of the current iteration
 * have been dispatched (or at the start of the next iteration when called
 * outside the loop). Queueing a node that is already queued does nothing.
 * The node must stay valid until its callback has run; the callback may
 * free it. */
void ev_defer(struct ev_loop *loop, struct ev_deferred *node);

/* Runs one iteration, waiting at most `timeout_ms` (-1: until something
 * happens). Returns the number of callbacks run, or a negative errno. */
int ev_run_once(struct ev_loop *loop, int timeout_ms);
/* Runs until ev_stop() is called. Returns 0, or a negative errno when
 * epoll_wait fails. */
int ev_run(struct ev_loop *loop);
void ev_stop(struct ev_loop *loop);

uint64_t ev_now_ns(void);

#endif
