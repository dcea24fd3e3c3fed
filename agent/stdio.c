/* stdio of container processes: "vsock://PORT" URIs. The agent listens on
 * each port, the host connects (only the host: agent_accept), and bytes are
 * relayed raw between the process's pipes (or its pty) and that
 * connection, with backpressure both ways: nothing is read from a side
 * whose peer cannot take it.
 *
 * stdout and stderr are "drained" once the process side reached EOF and
 * every byte was written to the host, which then sees EOF too; only then is
 * the process's exit reported. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent.h"
#include "husk/cleanup.h"
#include "husk/path.h"
#include "init/console.h"

#define RELAY_BUF (64u * 1024)

static void relay_update(struct relay *r);

static void relay_unlisten(struct relay *r)
{
	if (r->listen_fd < 0)
		return;
	ev_io_del(r->listen_io);
	r->listen_io = NULL;
	close(r->listen_fd);
	r->listen_fd = -1;
	struct agent *a = r->proc->c->agent;
	if (a->opt.listen_unix) {
		char path[4096];
		if (husk_path_fmt(path, sizeof(path), "%s_%u", a->opt.listen_unix, r->port) == 0)
			unlink(path);
	}
}

static void relay_close_conn(struct relay *r)
{
	if (r->conn < 0)
		return;
	ev_io_del(r->conn_io);
	r->conn_io = NULL;
	close(r->conn);
	r->conn = -1;
}

static void relay_close_local(struct relay *r)
{
	ev_io_del(r->local_io);
	r->local_io = NULL;
	if (r->local >= 0 && !r->local_shared)
		close(r->local);
	r->local = -1;
}

static void relay_finish(struct relay *r)
{
	if (r->done)
		return;
	relay_unlisten(r);
	if (r->conn >= 0 && r->to_host)
		shutdown(r->conn, SHUT_WR); /* the host reads EOF after the last byte */
	relay_close_conn(r);
	relay_close_local(r);
	free(r->buf);
	r->buf = NULL;
	r->done = true;
	if (r->to_host)
		process_maybe_report(r->proc);
}

static int src_fd(const struct relay *r)
{
	return r->to_host ? r->local : r->conn;
}

static int dst_fd(const struct relay *r)
{
	return r->to_host ? r->conn : r->local;
}

/* Moves data: read from the source while the buffer is empty, write while
 * it is not. Returns after one step that would block. */
static void relay_pump(struct relay *r)
{
	for (;;) {
		if (r->off < r->len) {
			ssize_t n = write(dst_fd(r), r->buf + r->off, r->len - r->off);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN)
					break;
				/* The reader is gone: nothing more can be delivered. For
				 * stdout, keep reading the process so it never blocks. */
				r->len = r->off = 0;
				if (r->to_host) {
					relay_close_conn(r);
				} else {
					relay_finish(r);
					return;
				}
				continue;
			}
			r->off += (size_t)n;
			continue;
		}
		r->len = r->off = 0;
		if (r->local_eof) {
			relay_finish(r);
			return;
		}
		int s = src_fd(r);
		if (s < 0)
			break;
		ssize_t n = read(s, r->buf, RELAY_BUF);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			n = 0; /* EIO: a pty whose every peer is closed */
		}
		if (n == 0) {
			r->local_eof = true;
			continue;
		}
		if (r->to_host && r->conn < 0)
			continue; /* host went away: discard */
		r->len = (size_t)n;
	}
	relay_update(r);
}

static void on_relay_io(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io;
	(void)fd;
	(void)events;
	relay_pump(data);
}

/* Watches the side we are waiting for: the destination while the buffer
 * holds data, else the source. */
static void relay_update(struct relay *r)
{
	if (r->done)
		return;
	int want_src = r->off >= r->len, s = src_fd(r), d = dst_fd(r);
	struct ev_loop *loop = r->proc->c->agent->loop;
	struct ev_io **src_io = r->to_host ? &r->local_io : &r->conn_io;
	struct ev_io **dst_io = r->to_host ? &r->conn_io : &r->local_io;
	struct husk_err err = { 0 };
	if (s >= 0) {
		uint32_t ev = want_src ? EPOLLIN : 0;
		if (!*src_io) {
			if (ev_io_add(loop, s, ev, on_relay_io, r, src_io, &err) < 0)
				goto broken;
		} else {
			ev_io_set_events(*src_io, ev);
		}
	}
	if (d >= 0 && d != s) {
		uint32_t ev = want_src ? 0 : EPOLLOUT;
		if (!*dst_io) {
			if (ev_io_add(loop, d, ev, on_relay_io, r, dst_io, &err) < 0)
				goto broken;
		} else {
			ev_io_set_events(*dst_io, ev);
		}
	}
	return;
broken:
	/* Unwatched, the stream would hang its process's exit report. */
	init_log(INIT_LOG_ERR, "stdio port %u: %s; closing the stream", r->port, err.msg);
	relay_finish(r);
}

static void on_accept(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io;
	(void)events;
	struct relay *r = data;
	/* The port is the host's alone: a connection from anyone else (a
	 * container racing the host to it) is closed and the port stays up
	 * for the host. */
	int c = agent_accept(r->proc->c->agent, fd, r->port, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (c < 0)
		return;
	relay_unlisten(r);
	r->conn = c;
	/* A stdout relay whose process already closed its end (e.g. a fast
	 * exit before the host connected) still delivers the pipe's contents. */
	if (!r->buf)
		r->buf = malloc(RELAY_BUF);
	if (!r->buf) {
		relay_finish(r);
		return;
	}
	relay_update(r);
}

static int parse_uri(const char *what, const char *uri, unsigned *port, struct husk_err *err)
{
	*port = 0;
	if (!uri || !*uri)
		return 0;
	if (strncmp(uri, "vsock://", 8) != 0)
		return husk_err_set(err, -EINVAL, "%s: unsupported URI \"%s\" (want vsock://PORT)",
				    what, uri);
	char *end;
	unsigned long v = strtoul(uri + 8, &end, 10);
	if (*end || end == uri + 8 || v == 0 || v > 0xfffffffeul || v == 1024 || v == 1025 ||
	    v == 1026)
		return husk_err_set(err, -EINVAL,
				    "%s: \"%s\": port must be 1..4294967294 and not 1024-1026", what,
				    uri);
	*port = (unsigned)v;
	return 0;
}

static int relay_listen(struct agent *a, struct relay *r, unsigned port, struct husk_err *err)
{
	r->port = port;
	r->listen_fd = agent_listen_port(a, port, err);
	if (r->listen_fd < 0)
		return r->listen_fd;
	return ev_io_add(a->loop, r->listen_fd, EPOLLIN, on_accept, r, &r->listen_io, err);
}

static void relay_init(struct relay *r, struct process *p, bool to_host)
{
	memset(r, 0, sizeof(*r));
	r->proc = p;
	r->to_host = to_host;
	r->local = r->listen_fd = r->conn = -1;
	r->done = true; /* until there is something to relay */
}

static int open_null(int flags, struct husk_err *err)
{
	int fd = open("/dev/null", flags | O_CLOEXEC);
	if (fd < 0)
		return husk_err_sys(err, -errno, "open /dev/null");
	return fd;
}

int stdio_setup(struct agent *a, struct process *p, const char *in, const char *out,
		const char *err_uri, bool terminal, struct husk_err *err)
{
	struct proc_io *io = &p->io;
	relay_init(&io->in, p, false);
	relay_init(&io->out, p, true);
	relay_init(&io->err, p, true);
	io->pty_master = -1;
	for (int i = 0; i < 3; i++)
		io->container_fds[i] = -1;
	unsigned ports[3];
	int r;
	if ((r = parse_uri("stdin", in, &ports[0], err)) < 0 ||
	    (r = parse_uri("stdout", out, &ports[1], err)) < 0 ||
	    (r = parse_uri("stderr", err_uri, &ports[2], err)) < 0)
		return r;
	struct relay *rel[3] = { &io->in, &io->out, &io->err };
	for (int i = 0; i < 3; i++) {
		if (!ports[i]) {
			if (!terminal) {
				io->container_fds[i] = open_null(i == 0 ? O_RDONLY : O_WRONLY, err);
				if (io->container_fds[i] < 0)
					return io->container_fds[i];
			}
			continue;
		}
		if (terminal && i == 2)
			continue; /* a tty merges stderr into stdout */
		rel[i]->done = false;
		if (!terminal) {
			int fds[2];
			if (pipe2(fds, O_CLOEXEC) < 0)
				return husk_err_sys(err, -errno, "stdio: pipe");
			/* stdin: the process reads fds[0]; out/err: it writes fds[1] */
			io->container_fds[i] = i == 0 ? fds[0] : fds[1];
			rel[i]->local = i == 0 ? fds[1] : fds[0];
			fcntl(rel[i]->local, F_SETFL, O_NONBLOCK);
		}
		r = relay_listen(a, rel[i], ports[i], err);
		if (r < 0)
			return husk_err_wrap(err, "%s %s", i == 0 ? "stdin" : i == 1 ? "stdout" : "stderr",
					     i == 0 ? in : i == 1 ? out : err_uri);
	}
	return 0;
}

void stdio_attach_pty(struct process *p, int master)
{
	struct proc_io *io = &p->io;
	io->pty_master = master;
	fcntl(master, F_SETFL, O_NONBLOCK);
	struct relay *rel[2] = { &io->in, &io->out };
	for (int i = 0; i < 2; i++) {
		if (rel[i]->done)
			continue;
		/* stdin gets its own descriptor of the master: one epoll set
		 * cannot watch the same fd for two relays. */
		if (i == 0) {
			int fd = fcntl(master, F_DUPFD_CLOEXEC, 3);
			if (fd < 0) {
				relay_finish(rel[i]);
				continue;
			}
			rel[i]->local = fd;
			rel[i]->local_shared = false;
		} else {
			rel[i]->local = master;
			rel[i]->local_shared = true;
		}
		if (rel[i]->conn >= 0)
			relay_update(rel[i]);
	}
}

void stdio_close_container_fds(struct process *p)
{
	for (int i = 0; i < 3; i++) {
		if (p->io.container_fds[i] >= 0)
			close(p->io.container_fds[i]);
		p->io.container_fds[i] = -1;
	}
}

void stdio_close_stdin(struct process *p)
{
	struct relay *r = &p->io.in;
	if (r->done)
		return;
	if (r->conn < 0) {
		relay_finish(r); /* nobody ever connected: EOF now */
		return;
	}
	r->local_eof = true; /* deliver what is buffered, then EOF */
	relay_pump(r);
}

void stdio_abandon(struct process *p)
{
	struct relay *rel[3] = { &p->io.in, &p->io.out, &p->io.err };
	for (int i = 0; i < 3; i++) {
		struct relay *r = rel[i];
		if (r->done)
			continue;
		relay_unlisten(r);
		relay_close_conn(r);
		relay_close_local(r);
		free(r->buf);
		r->buf = NULL;
		r->done = true;
	}
}

bool stdio_drained(const struct process *p)
{
	return p->io.out.done && p->io.err.done;
}

void stdio_free(struct process *p)
{
	stdio_abandon(p);
	stdio_close_container_fds(p);
	if (p->io.pty_master >= 0)
		close(p->io.pty_master);
	p->io.pty_master = -1;
}
