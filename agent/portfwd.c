/* Port forwarding into the pod: vsock port 1027 (host only, agent_accept).
 * The host writes the TCP port as a decimal line ("8080\n"); the agent
 * connects to it on the VM's loopback (127.0.0.1, then ::1, as containerd
 * dials "localhost" for runc) in its own network namespace, which is the
 * pod's, answers one line, "0\n" or the errno of the failed connect
 * ("111\n"), and after "0" relays bytes both ways (ttrpc/relay.h's
 * splice) until both sides closed. docs/protocol.md. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent.h"
#include "husk/path.h"
#include "husk/sock.h"
#include "init/console.h"
#include "ttrpc/relay.h"

#define PORT_FORWARD_PORT 1027
#define LINE_MAX_LEN 8 /* "65535\n" */

enum fwd_phase { FWD_READ_PORT, FWD_CONNECTING, FWD_SPLICED };

struct portfwd_conn {
	struct agent *a;
	struct portfwd_conn *next; /* a->portfwd_conns */
	enum fwd_phase phase;
	int host;  /* the host's vsock connection */
	int local; /* the TCP connection in the guest; -1 before */
	struct ev_io *io;
	unsigned port;
	int family; /* of the connect under way */
	size_t len;
	char line[LINE_MAX_LEN];
	struct ev_splice *splice;
};

static void unlink_conn(struct portfwd_conn *f)
{
	for (struct portfwd_conn **pp = &f->a->portfwd_conns; *pp; pp = &(*pp)->next)
		if (*pp == f) {
			*pp = f->next;
			return;
		}
}

static void fwd_free(struct portfwd_conn *f)
{
	unlink_conn(f);
	ev_io_del(f->io);
	if (f->splice)
		ev_splice_free(f->splice);
	else {
		close(f->host);
		if (f->local >= 0)
			close(f->local);
	}
	free(f);
}

static void on_splice_done(void *data, int rc)
{
	struct portfwd_conn *f = data;
	(void)rc; /* a reset is the peers' business */
	f->splice = NULL;
	f->host = f->local = -1;
	unlink_conn(f);
	free(f);
}

/* The answer line is tiny and the first bytes on a fresh connection: the
 * socket buffer takes it whole, or the host is gone. */
static int answer(struct portfwd_conn *f, int code)
{
	char buf[16];
	int n = snprintf(buf, sizeof(buf), "%d\n", code);
	return send(f->host, buf, (size_t)n, MSG_NOSIGNAL) == n ? 0 : -1;
}

static void refuse(struct portfwd_conn *f, int code)
{
	init_log(INIT_LOG_INFO, "port forward to port %u: %s", f->port, strerror(code));
	answer(f, code);
	fwd_free(f);
}

static void on_connected(struct ev_io *io, int fd, uint32_t events, void *data);

/* A nonblocking connect to the port on this family's loopback. */
static int connect_loopback(struct portfwd_conn *f, int family)
{
	f->family = family;
	int s = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	struct sockaddr_storage ss;
	socklen_t len = husk_loopback_addr(family, f->port, &ss);
	if (connect(s, (struct sockaddr *)&ss, len) < 0 && errno != EINPROGRESS) {
		int e = -errno;
		close(s);
		return e;
	}
	f->local = s;
	return 0;
}

static void start_connect(struct portfwd_conn *f)
{
	ev_io_del(f->io);
	f->io = NULL;
	int rc = connect_loopback(f, AF_INET);
	/* Both failing at once: 127.0.0.1's reason is the one to give. */
	if (rc < 0 && connect_loopback(f, AF_INET6) < 0) {
		refuse(f, -rc);
		return;
	}
	f->phase = FWD_CONNECTING;
	if (ev_io_add(f->a->loop, f->local, EPOLLOUT, on_connected, f, &f->io, NULL) < 0)
		refuse(f, ENOMEM);
}

static void spliced(struct portfwd_conn *f)
{
	ev_io_del(f->io);
	f->io = NULL;
	if (answer(f, 0) < 0) {
		fwd_free(f);
		return;
	}
	struct husk_err err = { 0 };
	int host = f->host, local = f->local;
	f->host = f->local = -1;
	f->phase = FWD_SPLICED;
	if (ev_splice_new(f->a->loop, host, local, on_splice_done, f, &f->splice, &err) < 0) {
		init_log(INIT_LOG_WARNING, "port forward to port %u: %s", f->port, err.msg);
		unlink_conn(f);
		free(f); /* the splice closed both */
	}
}

static void on_connected(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io, (void)events;
	struct portfwd_conn *f = data;
	int soerr = 0;
	socklen_t l = sizeof(soerr);
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &l) < 0)
		soerr = errno;
	if (!soerr) {
		spliced(f);
		return;
	}
	ev_io_del(f->io);
	f->io = NULL;
	close(f->local);
	f->local = -1;
	if (f->family == AF_INET) {
		/* Nothing on 127.0.0.1: maybe on ::1. */
		if (connect_loopback(f, AF_INET6) == 0 &&
		    ev_io_add(f->a->loop, f->local, EPOLLOUT, on_connected, f, &f->io, NULL) == 0)
			return;
	}
	refuse(f, soerr);
}

/* The port line, a byte at a time: what follows it is the stream's. */
static void on_host_line(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io, (void)events;
	struct portfwd_conn *f = data;
	for (;;) {
		char c;
		ssize_t n = recv(fd, &c, 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) { /* the host went away before asking */
			fwd_free(f);
			return;
		}
		if (c != '\n') {
			if (f->len + 1 >= sizeof(f->line) || c < '0' || c > '9') {
				init_log(INIT_LOG_WARNING, "port forward: a bad request from the host");
				refuse(f, EINVAL);
				return;
			}
			f->line[f->len++] = c;
			continue;
		}
		f->line[f->len] = '\0';
		unsigned long port = strtoul(f->line, NULL, 10);
		if (!f->len || port == 0 || port > 65535) {
			init_log(INIT_LOG_WARNING, "port forward: \"%s\" is not a TCP port", f->line);
			refuse(f, EINVAL);
			return;
		}
		f->port = (unsigned)port;
		start_connect(f);
		return;
	}
}

static void on_accept(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io, (void)events;
	struct agent *a = data;
	int conn = agent_accept(a, fd, PORT_FORWARD_PORT, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (conn < 0)
		return;
	struct portfwd_conn *f = calloc(1, sizeof(*f));
	if (!f) {
		close(conn);
		return;
	}
	*f = (struct portfwd_conn){ .a = a, .host = conn, .local = -1, .next = a->portfwd_conns };
	a->portfwd_conns = f;
	if (ev_io_add(a->loop, conn, EPOLLIN, on_host_line, f, &f->io, NULL) < 0)
		fwd_free(f);
}

int portfwd_start(struct agent *a, struct husk_err *err)
{
	int fd = agent_listen_port(a, PORT_FORWARD_PORT, err);
	if (fd < 0)
		return fd;
	int r = ev_io_add(a->loop, fd, EPOLLIN, on_accept, a, &a->portfwd_io, err);
	if (r < 0) {
		close(fd);
		return r;
	}
	a->portfwd_fd = fd;
	return 0;
}

void portfwd_stop(struct agent *a)
{
	while (a->portfwd_conns)
		fwd_free(a->portfwd_conns);
	if (a->portfwd_fd < 0)
		return;
	ev_io_del(a->portfwd_io);
	a->portfwd_io = NULL;
	close(a->portfwd_fd);
	a->portfwd_fd = -1;
	char path[4096];
	if (a->opt.listen_unix &&
	    husk_path_fmt(path, sizeof(path), "%s_%u", a->opt.listen_unix, PORT_FORWARD_PORT) == 0)
		unlink(path);
}
