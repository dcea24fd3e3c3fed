/* One-direction byte copier on the event loop: containerd's FIFOs <-> the
 * guest's vsock stdio streams. Nonblocking on both ends so a slow reader
 * never stalls the shim's other calls. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io.h"

#define RELAY_BUF (64 * 1024)

struct relay {
	struct ev_loop *loop;
	int src, dst;
	bool dst_is_socket;
	bool closing_input; /* CloseIO: end at the first EAGAIN */
	bool eof;
	bool dst_broken; /* reader gone: keep draining src, drop the bytes */
	struct ev_io *src_io, *dst_io;
	relay_done_fn done;
	void *data;
	int tag;
	size_t off, len;
	char buf[RELAY_BUF];
};

/* The relay is freed before `done` runs; `tag` tells the owner which. */
static void finish(struct relay *r)
{
	relay_done_fn done = r->done;
	void *d = r->data;
	int tag = r->tag;
	relay_free(r);
	if (done)
		done(d, tag);
}

static void flush(struct relay *r)
{
	while (r->len > r->off) {
		if (r->dst_broken) {
			r->off = r->len;
			break;
		}
		ssize_t n = write(r->dst, r->buf + r->off, r->len - r->off);
		if (n > 0) {
			r->off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		r->dst_broken = true;
	}
	r->off = r->len = 0;
}

static void fill(struct relay *r)
{
	for (;;) {
		ssize_t n = read(r->src, r->buf, sizeof(r->buf));
		if (n > 0) {
			r->off = 0;
			r->len = (size_t)n;
			return;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			if (r->closing_input)
				r->eof = true;
			return;
		}
		r->eof = true;
		return;
	}
}

static void update(struct relay *r)
{
	if (r->len == 0 && r->eof) {
		finish(r);
		return;
	}
	ev_io_set_events(r->src_io, r->len == 0 ? EPOLLIN : 0);
	if (r->dst_io)
		ev_io_set_events(r->dst_io, r->len ? EPOLLOUT : 0);
}

static void on_src(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io, (void)fd, (void)events;
	struct relay *r = data;
	fill(r);
	flush(r);
	update(r);
}

static void on_dst(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io, (void)fd;
	struct relay *r = data;
	if (events & (EPOLLERR | EPOLLHUP) && !(events & EPOLLOUT))
		r->dst_broken = true;
	flush(r);
	update(r);
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	return fl < 0 ? -errno : fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -errno : 0;
}

int relay_new(struct ev_loop *loop, int src, int dst, bool dst_is_socket,
	      relay_done_fn done, void *data, int tag, struct relay **out, struct husk_err *err)
{
	struct relay *r = calloc(1, sizeof(*r));
	if (!r) {
		close(src);
		close(dst);
		return husk_err_set(err, -ENOMEM, "stdio relay");
	}
	r->loop = loop;
	r->src = src;
	r->dst = dst;
	r->dst_is_socket = dst_is_socket;
	r->done = done;
	r->data = data;
	r->tag = tag;
	int rc;
	if ((rc = set_nonblock(src)) < 0 || (rc = set_nonblock(dst)) < 0) {
		relay_free(r);
		return husk_err_sys(err, rc, "stdio relay: O_NONBLOCK");
	}
	/* A FIFO and a socket are distinct fds even when they are the same
	 * object to us: two watches are fine. A regular file (file:// log
	 * URIs) cannot be watched and never makes a write wait. */
	struct stat st;
	bool dst_file = fstat(dst, &st) == 0 && S_ISREG(st.st_mode);
	if ((rc = ev_io_add(loop, src, EPOLLIN, on_src, r, &r->src_io, err)) < 0 ||
	    (!dst_file && (rc = ev_io_add(loop, dst, 0, on_dst, r, &r->dst_io, err)) < 0)) {
		relay_free(r);
		return rc;
	}
	*out = r;
	return 0;
}

void relay_close_input(struct relay *r)
{
	if (!r)
		return;
	r->closing_input = true;
	if (r->len == 0)
		fill(r);
	flush(r);
	update(r);
}

void relay_abort_source(struct relay *r)
{
	if (!r)
		return;
	r->eof = true;
	flush(r);
	if (r->len) /* cannot wait for a reader forever once the VM is gone */
		r->len = r->off = 0;
	update(r);
}

void relay_free(struct relay *r)
{
	if (!r)
		return;
	ev_io_del(r->src_io);
	ev_io_del(r->dst_io);
	if (r->dst_is_socket)
		shutdown(r->dst, SHUT_WR);
	close(r->src);
	close(r->dst);
	free(r);
}
