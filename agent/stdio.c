/* stdio of container processes: "vsock://PORT" URIs. The agent listens on
 * each port, the host connects (only the host: agent_accept), and a relay
 * (ttrpc/relay.h) copies bytes raw between the process's pipes (or its pty)
 * and that connection, with backpressure both ways: nothing is read from a
 * side whose peer cannot take it.
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
#include "husk/path.h"
#include "init/console.h"
#include "ttrpc/relay.h"

static void stream_unlisten(struct stdio_stream *s)
{
	if (s->listen_fd < 0)
		return;
	ev_io_del(s->listen_io);
	s->listen_io = NULL;
	close(s->listen_fd);
	s->listen_fd = -1;
	struct agent *a = s->proc->c->agent;
	if (a->opt.listen_unix) {
		char path[4096];
		if (husk_path_fmt(path, sizeof(path), "%s_%u", a->opt.listen_unix, s->port) == 0)
			unlink(path);
	}
}

/* Ends the stream where it stands: no more listening, the relay stopped,
 * what it holds closed (the pty master stays the process's). */
static void stream_close(struct stdio_stream *s)
{
	stream_unlisten(s);
	ev_relay_free(s->relay);
	s->relay = NULL;
	if (s->conn >= 0)
		close(s->conn);
	s->conn = -1;
	if (s->local >= 0 && s->local_owned)
		close(s->local);
	s->local = -1;
	s->done = true;
}

/* The stream is over: an output's end may be what its process's exit
 * report waited for. */
static void stream_finish(struct stdio_stream *s)
{
	if (s->done)
		return;
	stream_close(s);
	if (s->to_host)
		process_maybe_report(s->proc);
}

static void on_relay_done(void *data, int rc)
{
	struct stdio_stream *s = data;
	(void)rc; /* a host that stopped reading lost the rest: nothing to do */
	s->relay = NULL;
	stream_finish(s);
}

/* Relays once both ends are there: the host's connection and the local
 * fd (a terminal's pty comes after the host may have connected). */
static void stream_start(struct stdio_stream *s)
{
	if (s->done || s->relay || s->conn < 0 || s->local < 0)
		return;
	struct ev_relay_opts o = { .done = on_relay_done, .data = s };
	if (s->to_host) {
		/* The host reads EOF after the last byte. One that stops reading
		 * does not block the process: its output is read on and dropped. */
		o.src = s->local;
		o.dst = s->conn;
		o.flags = EV_RELAY_OWN_DST | EV_RELAY_SHUT_DST | EV_RELAY_DRAIN |
			  (s->local_owned ? EV_RELAY_OWN_SRC : 0);
	} else {
		o.src = s->conn;
		o.dst = s->local;
		o.flags = EV_RELAY_OWN_SRC | (s->local_owned ? EV_RELAY_OWN_DST : 0);
	}
	s->conn = s->local = -1; /* the relay's now, also when it fails */
	struct husk_err err = { 0 };
	if (ev_relay_new(s->proc->c->agent->loop, &o, &s->relay, &err) < 0) {
		/* Unrelayed, the stream would hang its process's exit report. */
		init_log(INIT_LOG_ERR, "stdio port %u: %s; closing the stream", s->port, err.msg);
		stream_finish(s);
	}
}

static void on_accept(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io;
	(void)events;
	struct stdio_stream *s = data;
	/* The port is the host's alone: a connection from anyone else (a
	 * container racing the host to it) is closed and the port stays up
	 * for the host. */
	int c = agent_accept(s->proc->c->agent, fd, s->port, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (c < 0)
		return;
	stream_unlisten(s);
	s->conn = c;
	/* A stdout whose process already closed its end (e.g. a fast exit
	 * before the host connected) still delivers the pipe's contents. */
	stream_start(s);
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
	if (*end || end == uri + 8 || v == 0 || v > 0xfffffffeul || (v >= 1024 && v <= 1027))
		return husk_err_set(err, -EINVAL,
				    "%s: \"%s\": port must be 1..4294967294 and not 1024-1027", what,
				    uri);
	*port = (unsigned)v;
	return 0;
}

static int stream_listen(struct agent *a, struct stdio_stream *s, unsigned port,
			 struct husk_err *err)
{
	s->port = port;
	s->listen_fd = agent_listen_port(a, port, err);
	if (s->listen_fd < 0)
		return s->listen_fd;
	return ev_io_add(a->loop, s->listen_fd, EPOLLIN, on_accept, s, &s->listen_io, err);
}

static void stream_init(struct stdio_stream *s, struct process *p, bool to_host)
{
	*s = (struct stdio_stream){ .proc = p, .to_host = to_host, .listen_fd = -1, .conn = -1,
				    .local = -1,
				    .done = true /* until there is something to relay */ };
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
	stream_init(&io->in, p, false);
	stream_init(&io->out, p, true);
	stream_init(&io->err, p, true);
	io->pty_master = -1;
	for (int i = 0; i < 3; i++)
		io->container_fds[i] = -1;
	unsigned ports[3];
	int r;
	if ((r = parse_uri("stdin", in, &ports[0], err)) < 0 ||
	    (r = parse_uri("stdout", out, &ports[1], err)) < 0 ||
	    (r = parse_uri("stderr", err_uri, &ports[2], err)) < 0)
		return r;
	struct stdio_stream *st[3] = { &io->in, &io->out, &io->err };
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
		st[i]->done = false;
		if (!terminal) {
			int fds[2];
			if (pipe2(fds, O_CLOEXEC) < 0)
				return husk_err_sys(err, -errno, "stdio: pipe");
			/* stdin: the process reads fds[0]; out/err: it writes fds[1] */
			io->container_fds[i] = i == 0 ? fds[0] : fds[1];
			st[i]->local = i == 0 ? fds[1] : fds[0];
			st[i]->local_owned = true;
			fcntl(st[i]->local, F_SETFL, O_NONBLOCK);
		}
		r = stream_listen(a, st[i], ports[i], err);
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
	/* Both directions use the master, which stays the process's (closed
	 * by stdio_free); the relays share it. */
	struct stdio_stream *st[2] = { &io->in, &io->out };
	for (int i = 0; i < 2; i++) {
		if (st[i]->done)
			continue;
		st[i]->local = master;
		st[i]->local_owned = false;
		stream_start(st[i]);
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
	struct stdio_stream *s = &p->io.in;
	if (s->done)
		return;
	if (s->relay)
		ev_relay_close_input(s->relay); /* what the host sent is still delivered */
	else
		stream_finish(s); /* nobody connected yet (or no pty yet): EOF now */
}

void stdio_abandon(struct process *p)
{
	struct stdio_stream *st[3] = { &p->io.in, &p->io.out, &p->io.err };
	for (int i = 0; i < 3; i++)
		if (!st[i]->done)
			stream_close(st[i]);
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
