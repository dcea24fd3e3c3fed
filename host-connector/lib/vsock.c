/* Streams to and from guest vsock ports over any transport: AF_VSOCK
 * (vhost-vsock), husk-vsockd's hybrid socket, or the unix sockets of an
 * agent run on the host (the fake backend). */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
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
	uint64_t deadline = husk_now_ns() + (uint64_t)timeout_ms * 1000000u;
	for (;;) {
		int fd = hybrid_once(uds, port, err);
		if (fd >= 0 || fd != -ECONNREFUSED || husk_now_ns() >= deadline)
			return fd;
		/* Nobody listens yet: the guest has no event to tell us when
		 * it will, so retry at a modest rate. */
		usleep(10000);
	}
}

static int vhost_connect(uint32_t cid, uint32_t port, unsigned timeout_ms, struct husk_err *err)
{
	uint64_t deadline = husk_now_ns() + (uint64_t)timeout_ms * 1000000u;
	for (;;) {
		_cleanup_fd_ int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return husk_err_sys(err, -errno, "AF_VSOCK socket");
		struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port };
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return take_fd(&fd);
		int r = -errno;
		if ((r != -ECONNREFUSED && r != -ECONNRESET) || husk_now_ns() >= deadline)
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
	uint64_t deadline = husk_now_ns() + (uint64_t)timeout_ms * 1000000u;
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
		if (husk_now_ns() >= deadline)
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
