/* Streams to and from guest vsock ports over any transport: AF_VSOCK
 * (vhost-vsock), husk-vsockd's hybrid socket, or the unix sockets of an
 * agent run on the host (the fake backend). */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <linux/vm_sockets.h>

#include "husk/cleanup.h"
#include "husk/path.h"
#include "husk/sock.h"
#include "internal.h"

/* One attempt: CONNECT, then "OK <n>\n". The reply is read byte by byte
 * because what follows it already belongs to the guest's stream. */
static int hybrid_once(const char *uds, uint32_t port, struct husk_err *err)
{
	_cleanup_fd_ int fd = husk_unix_connect(uds, err);
	if (fd < 0)
		return fd;
	char line[64];
	int n = snprintf(line, sizeof(line), "CONNECT %u\n", port);
	if (write(fd, line, (size_t)n) != n)
		return husk_err_sys(err, -errno, "vsock port %u: CONNECT on %s", port, uds);
	size_t len = 0;
	while (len < sizeof(line) - 1) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int r = poll(&p, 1, 10000);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0)
			return husk_err_set(err, -ETIMEDOUT, "vsock port %u: no answer to CONNECT on %s",
					    port, uds);
		ssize_t got = read(fd, line + len, 1);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			return husk_err_set(err, -ECONNREFUSED,
					    "vsock port %u: connection refused by the guest", port);
		if (line[len++] == '\n')
			break;
	}
	line[len] = '\0';
	if (strncmp(line, "OK ", 3) != 0)
		return husk_err_set(err, -EPROTO, "vsock port %u: unexpected reply \"%.*s\" on %s",
				    port, (int)strcspn(line, "\n"), line, uds);
	return take_fd(&fd);
}

int husk_hybrid_connect(const char *uds, uint32_t port, unsigned timeout_ms,
			struct husk_err *err)
{
	uint64_t deadline = husk_monotonic_ns() + (uint64_t)timeout_ms * 1000000u;
	for (;;) {
		int fd = hybrid_once(uds, port, err);
		if (fd >= 0 || fd != -ECONNREFUSED || husk_monotonic_ns() >= deadline)
			return fd;
		/* Nobody listens yet: the guest has no event to tell us when
		 * it will, so retry at a modest rate. */
		usleep(10000);
	}
}

static int vhost_connect(uint32_t cid, uint32_t port, unsigned timeout_ms, struct husk_err *err)
{
	uint64_t deadline = husk_monotonic_ns() + (uint64_t)timeout_ms * 1000000u;
	for (;;) {
		_cleanup_fd_ int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return husk_err_sys(err, -errno, "AF_VSOCK socket");
		struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port };
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return take_fd(&fd);
		int r = -errno;
		if ((r != -ECONNREFUSED && r != -ECONNRESET) || husk_monotonic_ns() >= deadline)
			return husk_err_sys(err, r, "vsock connect to CID %u port %u", cid, port);
		usleep(10000);
	}
}

/* husk-agent --listen unix:PATH serves port 1024 on PATH and port P on
 * PATH_<P>. A socket not there yet is a port nobody listens on. */
static int unix_connect(const char *uds, uint32_t port, unsigned timeout_ms, struct husk_err *err)
{
	char path[PATH_MAX];
	int r = port == HUSK_AGENT_PORT ? husk_path_fmt(path, sizeof(path), "%s", uds) :
					  husk_path_fmt(path, sizeof(path), "%s_%u", uds, port);
	if (r < 0)
		return husk_err_set(err, -ENAMETOOLONG, "socket for port %u", port);
	uint64_t deadline = husk_monotonic_ns() + (uint64_t)timeout_ms * 1000000u;
	for (;;) {
		struct husk_err e = { 0 };
		int fd = husk_unix_connect(path, &e);
		if (fd >= 0)
			return fd;
		if (fd != -ENOENT && fd != -ECONNREFUSED) {
			if (err)
				*err = e;
			return fd;
		}
		if (husk_monotonic_ns() >= deadline)
			return husk_err_set(err, -ECONNREFUSED, "port %u: nobody listens on %s", port,
					    path);
		usleep(10000);
	}
}

int husk_vm_connect(struct husk_vm *vm, uint32_t port, unsigned timeout_ms, struct husk_err *err)
{
	if (vm->stopped)
		return husk_err_set(err, -ENOTCONN, "VM %s is stopped", vm->name);
	switch (vm->transport) {
	case HUSK_TRANSPORT_VHOST: return vhost_connect(vm->cid, port, timeout_ms, err);
	case HUSK_TRANSPORT_UNIX: return unix_connect(vm->uds, port, timeout_ms, err);
	default: return husk_hybrid_connect(vm->uds, port, timeout_ms, err);
	}
}

/* ---- without blocking ---- */

enum { CONN_CONNECTING = 1, CONN_HYBRID_REPLY, CONN_DONE };

static int conn_fail(struct husk_vm_conn *c, int rc)
{
	husk_vm_connect_abort(c);
	return rc;
}

/* The hybrid handshake's reply, as far as it has come. */
static int hybrid_reply(struct husk_vm_conn *c, struct husk_err *err)
{
	while (c->len < sizeof(c->line) - 1) {
		ssize_t got = read(c->fd, c->line + c->len, 1);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0 && errno == EAGAIN)
			return 0;
		if (got <= 0)
			return conn_fail(c, husk_err_set(err, -ECONNREFUSED,
							 "vsock port %u: connection refused by the guest",
							 c->port));
		if (c->line[c->len++] == '\n')
			break;
	}
	c->line[c->len] = '\0';
	if (strncmp(c->line, "OK ", 3) != 0)
		return conn_fail(c, husk_err_set(err, -EPROTO, "vsock port %u: unexpected reply \"%.*s\"",
						 c->port, (int)strcspn(c->line, "\n"), c->line));
	c->phase = CONN_DONE;
	return 1;
}

int husk_vm_connect_start(struct husk_vm *vm, uint32_t port, struct husk_vm_conn *c,
			  struct husk_err *err)
{
	*c = (struct husk_vm_conn){ .fd = -1, .port = port };
	if (vm->stopped)
		return husk_err_set(err, -ENOTCONN, "VM %s is stopped", vm->name);
	int family = vm->transport == HUSK_TRANSPORT_VHOST ? AF_VSOCK : AF_UNIX;
	c->fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (c->fd < 0)
		return husk_err_sys(err, -errno, "vsock port %u: socket", port);
	int r;
	if (vm->transport == HUSK_TRANSPORT_VHOST) {
		struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = vm->cid, .svm_port = port };
		r = connect(c->fd, (struct sockaddr *)&sa, sizeof(sa));
	} else {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		int n = vm->transport == HUSK_TRANSPORT_UNIX && port != HUSK_AGENT_PORT
				? snprintf(sa.sun_path, sizeof(sa.sun_path), "%s_%u", vm->uds, port)
				: snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", vm->uds);
		if (n < 0 || (size_t)n >= sizeof(sa.sun_path))
			return conn_fail(c, husk_err_set(err, -ENAMETOOLONG, "vsock port %u: socket path",
							 port));
		/* A unix socket connects at once, or not at all. */
		r = connect(c->fd, (struct sockaddr *)&sa, sizeof(sa));
	}
	if (r < 0 && errno != EINPROGRESS)
		return conn_fail(c, husk_err_sys(err, -errno, "vsock port %u: connect", port));
	if (r < 0) {
		c->phase = CONN_CONNECTING;
		c->events = POLLOUT;
		return 0;
	}
	if (vm->transport != HUSK_TRANSPORT_HYBRID) {
		c->phase = CONN_DONE;
		c->events = POLLOUT;
		return 0; /* step reports it connected */
	}
	char line[32];
	int n = snprintf(line, sizeof(line), "CONNECT %u\n", port);
	/* A fresh socket's buffer takes these few bytes whole. */
	if (write(c->fd, line, (size_t)n) != n)
		return conn_fail(c, husk_err_sys(err, -errno, "vsock port %u: CONNECT", port));
	c->phase = CONN_HYBRID_REPLY;
	c->events = POLLIN;
	return 0;
}

int husk_vm_connect_step(struct husk_vm_conn *c, struct husk_err *err)
{
	if (c->fd < 0)
		return husk_err_set(err, -EBADF, "vsock port %u: no connection under way", c->port);
	switch (c->phase) {
	case CONN_CONNECTING: {
		int soerr = 0;
		socklen_t l = sizeof(soerr);
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &l) < 0)
			soerr = errno;
		if (soerr)
			return conn_fail(c, husk_err_sys(err, -soerr, "vsock port %u: connect", c->port));
		c->phase = CONN_DONE;
		return 1;
	}
	case CONN_HYBRID_REPLY:
		return hybrid_reply(c, err);
	case CONN_DONE:
		return 1;
	default:
		return conn_fail(c, husk_err_set(err, -EINVAL, "vsock port %u: bad state", c->port));
	}
}

void husk_vm_connect_abort(struct husk_vm_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->phase = 0;
}

int husk_vm_listen(struct husk_vm *vm, uint32_t port, struct husk_err *err)
{
	if (vm->transport == HUSK_TRANSPORT_UNIX)
		return husk_err_set(err, -EOPNOTSUPP,
				    "VM %s: the unix transport has no guest-to-host connections",
				    vm->name);
	if (vm->transport == HUSK_TRANSPORT_HYBRID) {
		char path[PATH_MAX];
		if (husk_path_fmt(path, sizeof(path), "%s_%u", vm->uds, port) < 0)
			return husk_err_set(err, -ENAMETOOLONG, "listen path for port %u", port);
		return husk_unix_listen(path, err);
	}
	_cleanup_fd_ int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return husk_err_sys(err, -errno, "AF_VSOCK socket");
	struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port };
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return husk_err_sys(err, -errno, "vsock bind port %u", port);
	if (listen(fd, 16) < 0)
		return husk_err_sys(err, -errno, "vsock listen port %u", port);
	return take_fd(&fd);
}
