#include "ttrpc/relay.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define RELAY_BUF (64u * 1024)

/* One side: watched through `io` (on `fd`, or on `dup` when this loop
 * watches `fd` already), or `ready`: never waited for. */
struct end {
	int fd;
	int dup;
	struct ev_io *io;
	bool ready;
};

struct ev_relay {
	struct ev_loop *loop;
	struct end src, dst;
	unsigned flags;
	ev_relay_done_fn done;
	void *data;
	char *buf;
	size_t off, len;
	bool eof;     /* the source has ended */
	bool closing; /* ev_relay_close_input: the source ends at its first EAGAIN */
	bool broken;  /* the destination takes nothing more */
	bool over;    /* ended while `kick` was queued: its callback frees us */
	int rc;       /* the first loss, for `done` */
	/* A turn for a ready side, which no watch would give. */
	struct ev_deferred kick;
};

static void on_src(struct ev_io *io, int fd, uint32_t events, void *data);
static void on_dst(struct ev_io *io, int fd, uint32_t events, void *data);

static void note_loss(struct ev_relay *r, int rc)
{
	if (!r->rc)
		r->rc = rc;
}

static void unwatch(struct end *e)
{
	ev_io_del(e->io);
	e->io = NULL;
	if (e->dup >= 0)
		close(e->dup);
	e->dup = -1;
}

static int watch(struct ev_relay *r, struct end *e, uint32_t events, ev_io_fn fn,
		 struct husk_err *err)
{
	int rc = ev_io_add(r->loop, e->fd, events, fn, r, &e->io, NULL);
	if (rc == -EEXIST) {
		/* epoll keys a watch on the fd number and its file: another
		 * number for the same file is a watch of its own. */
		e->dup = fcntl(e->fd, F_DUPFD_CLOEXEC, 3);
		if (e->dup < 0)
			return husk_err_sys(err, -errno, "relay: dup fd %d", e->fd);
		rc = ev_io_add(r->loop, e->dup, events, fn, r, &e->io, NULL);
	}
	if (rc == -EPERM) {
		/* A regular file or /dev/null: reads and writes never wait. */
		e->ready = true;
		return 0;
	}
	return rc < 0 ? husk_err_sys(err, rc, "relay: watch fd %d", e->fd) : 0;
}

/* Unwatches and closes what is the relay's, then frees it, unless its
 * kick is queued: the loop still holds that node, so it frees us. */
static void release(struct ev_relay *r)
{
	unwatch(&r->src);
	unwatch(&r->dst);
	if (r->flags & EV_RELAY_OWN_SRC)
		close(r->src.fd);
	if (r->flags & EV_RELAY_OWN_DST)
		close(r->dst.fd);
	free(r->buf);
	r->buf = NULL;
	if (r->kick.queued)
		r->over = true;
	else
		free(r);
}

static void shut_dst(struct ev_relay *r)
{
	if ((r->flags & EV_RELAY_SHUT_DST) && !r->broken)
		shutdown(r->dst.fd, SHUT_WR);
}

static void finish(struct ev_relay *r)
{
	shut_dst(r);
	ev_relay_done_fn done = r->done;
	void *data = r->data;
	int rc = r->rc;
	release(r);
	if (done)
		done(data, rc);
}

static void dst_broken(struct ev_relay *r, int rc)
{
	note_loss(r, rc);
	r->broken = true;
	r->off = r->len = 0;
	unwatch(&r->dst);
	r->dst.ready = false;
	if (!(r->flags & EV_RELAY_DRAIN))
		r->eof = true; /* nothing more is read: the relay ends */
}

/* Writes what is buffered: 0 once all of it is written, -EAGAIN when the
 * destination would wait, else its write error. */
static int flush(struct ev_relay *r)
{
	while (r->off < r->len) {
		ssize_t n = write(r->dst.fd, r->buf + r->off, r->len - r->off);
		if (n > 0) {
			r->off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		return n == 0 || errno == EAGAIN ? -EAGAIN : -errno;
	}
	r->off = r->len = 0;
	return 0;
}

/* Watches the side the relay waits for: the destination while the buffer
 * holds bytes, else the source; a ready side gets a turn instead. */
static void update(struct ev_relay *r)
{
	bool want_src = !r->eof && r->off >= r->len, want_dst = r->off < r->len;
	if (r->src.io)
		ev_io_set_events(r->src.io, want_src ? EPOLLIN : 0);
	if (r->dst.io)
		ev_io_set_events(r->dst.io, want_dst ? EPOLLOUT : 0);
	if ((want_src && r->src.ready) || (want_dst && r->dst.ready))
		ev_defer(r->loop, &r->kick);
}

/* Moves bytes until a side would wait. `readable`: the source may be read
 * once without waiting; more reads need another readiness, as the source
 * may be blocking, except while closing (a nonblocking source, read until
 * EAGAIN). Ends the relay (`done` included) at the source's end. */
static void pump(struct ev_relay *r, bool readable)
{
	for (;;) {
		int rc = flush(r);
		if (rc == -EAGAIN)
			break;
		if (rc < 0) {
			dst_broken(r, rc);
			continue;
		}
		if (r->eof) {
			finish(r);
			return;
		}
		if (!readable && !r->closing)
			break;
		if (!r->buf && !(r->buf = malloc(RELAY_BUF))) {
			note_loss(r, -ENOMEM);
			r->eof = true;
			continue;
		}
		ssize_t n = read(r->src.fd, r->buf, RELAY_BUF);
		if (n < 0 && errno == EINTR)
			continue;
		readable = false;
		if (n > 0) {
			if (!r->broken)
				r->len = (size_t)n;
			continue;
		}
		if (n < 0 && errno == EAGAIN) {
			r->eof = r->closing;
			continue;
		}
		/* EOF, or a read error (a pty master's EIO once its terminal
		 * closed, a reset): the source has ended either way. */
		r->eof = true;
	}
	update(r);
}

static void on_src(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io, (void)fd;
	struct ev_relay *r = data;
	if (events & (EPOLLHUP | EPOLLERR)) {
		/* Unmaskable and level-triggered: watched on, it would fire on
		 * every turn while the destination is slow. Reading no longer
		 * waits anyway: what is left, then the end. */
		unwatch(&r->src);
		r->src.ready = true;
	}
	pump(r, true);
}

static void on_dst(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io, (void)fd;
	struct ev_relay *r = data;
	/* The reader is gone for good (and the event cannot be masked). */
	if (events & (EPOLLHUP | EPOLLERR))
		dst_broken(r, -EPIPE);
	pump(r, false);
}

static void on_kick(void *data)
{
	struct ev_relay *r = data;
	if (r->over) {
		free(r);
		return;
	}
	pump(r, r->src.ready);
}

int ev_relay_new(struct ev_loop *loop, const struct ev_relay_opts *o, struct ev_relay **out,
		 struct husk_err *err)
{
	struct ev_relay *r = malloc(sizeof(*r));
	if (!r) {
		if (o->flags & EV_RELAY_OWN_SRC)
			close(o->src);
		if (o->flags & EV_RELAY_OWN_DST)
			close(o->dst);
		return husk_err_set(err, -ENOMEM, "relay: out of memory");
	}
	*r = (struct ev_relay){ .loop = loop, .src = { .fd = o->src, .dup = -1 },
				.dst = { .fd = o->dst, .dup = -1 }, .flags = o->flags,
				.done = o->done, .data = o->data };
	r->kick = (struct ev_deferred){ .fn = on_kick, .data = r };
	int rc;
	if ((rc = watch(r, &r->src, EPOLLIN, on_src, err)) < 0 ||
	    (rc = watch(r, &r->dst, 0, on_dst, err)) < 0) {
		release(r);
		return rc;
	}
	if (r->src.ready)
		ev_defer(loop, &r->kick);
	*out = r;
	return 0;
}

void ev_relay_close_input(struct ev_relay *r)
{
	r->closing = true;
	pump(r, false);
}

void ev_relay_abort(struct ev_relay *r)
{
	r->eof = true;
	int rc = flush(r);
	if (rc < 0) {
		note_loss(r, rc == -EAGAIN ? -ECANCELED : rc);
		r->broken = rc != -EAGAIN;
		r->off = r->len = 0;
	}
	finish(r);
}

void ev_relay_free(struct ev_relay *r)
{
	if (!r)
		return;
	shut_dst(r);
	release(r);
}

/* ---- both ways ---- */

struct ev_splice;

struct splice_way {
	struct ev_splice *sp;
	int idx;
};

struct ev_splice {
	struct ev_relay *relay[2]; /* a->b, b->a; NULL once ended */
	struct splice_way way[2];
	int fd[2];
	int rc;
	ev_relay_done_fn done;
	void *data;
};

static void splice_release(struct ev_splice *sp)
{
	close(sp->fd[0]);
	close(sp->fd[1]);
	free(sp);
}

static void on_way_done(void *data, int rc)
{
	struct splice_way *w = data;
	struct ev_splice *sp = w->sp;
	sp->relay[w->idx] = NULL;
	if (rc < 0 && !sp->rc)
		sp->rc = rc;
	struct ev_relay *other = sp->relay[!w->idx];
	if (other) {
		/* A broken connection ends both ways. Not by an abort: the
		 * other way reads the end that just broke, and what its peer
		 * sent before it went (a hang-up over AF_UNIX) is still to be
		 * delivered. Nothing more is waited for; the other's `done`
		 * finishes the splice, maybe before this returns. */
		if (rc < 0)
			ev_relay_close_input(other);
		return;
	}
	ev_relay_done_fn done = sp->done;
	void *d = sp->data;
	rc = sp->rc;
	splice_release(sp);
	if (done)
		done(d, rc);
}

int ev_splice_new(struct ev_loop *loop, int a, int b, ev_relay_done_fn done, void *data,
		  struct ev_splice **out, struct husk_err *err)
{
	struct ev_splice *sp = calloc(1, sizeof(*sp));
	if (!sp) {
		close(a);
		close(b);
		return husk_err_set(err, -ENOMEM, "splice: out of memory");
	}
	*sp = (struct ev_splice){ .fd = { a, b }, .done = done, .data = data };
	for (int i = 0; i < 2; i++) {
		sp->way[i] = (struct splice_way){ .sp = sp, .idx = i };
		struct ev_relay_opts o = { .src = sp->fd[i], .dst = sp->fd[!i],
					   .flags = EV_RELAY_SHUT_DST, .done = on_way_done,
					   .data = &sp->way[i] };
		int rc = ev_relay_new(loop, &o, &sp->relay[i], err);
		if (rc < 0) {
			ev_relay_free(sp->relay[0]);
			sp->relay[0] = NULL;
			splice_release(sp);
			return rc;
		}
	}
	*out = sp;
	return 0;
}

void ev_splice_free(struct ev_splice *sp)
{
	if (!sp)
		return;
	/* Without shutting a write half down: the connection is dropped. */
	for (int i = 0; i < 2; i++) {
		if (sp->relay[i]) {
			sp->relay[i]->flags &= ~(unsigned)EV_RELAY_SHUT_DST;
			ev_relay_free(sp->relay[i]);
		}
	}
	splice_release(sp);
}
