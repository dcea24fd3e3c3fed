/* The vsock transport, set up before the VMM launches: vhost-vsock (a CID
 * reserved in the kernel), husk-vsockd (a vhost-user back-end with a
 * hybrid socket), or, for the fake backend, a unix socket per port that an
 * agent run on the host (--listen unix:) serves. Then the listener for the
 * agent's log stream. Connecting to ports is vsock.c. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/vm_sockets.h>

#include "husk/cleanup.h"
#include "husk/path.h"
#include "vmm.h"

#define VSOCKD_READY_MS 10000

/* Starts husk-vsockd and waits for its "ready" line (or its death). */
static int start_vsockd(struct husk_vm *vm, const struct husk_vm_config *cfg,
			struct husk_err *err)
{
	_cleanup_free_ char *vsockd = cfg->vsockd ? strdup(cfg->vsockd) :
						   husk_default_path("vsockd", err);
	if (!vsockd)
		return err && err->code ? err->code : -ENOMEM;
	char vu[PATH_MAX], log[PATH_MAX], cid[16];
	if (husk_path_fmt(vu, sizeof(vu), "%s/vu.sock", vm->dir) < 0 ||
	    husk_path_fmt(log, sizeof(log), "%s/vsockd.log", vm->dir) < 0)
		return husk_err_set(err, -ENAMETOOLONG, "sockets in %s", vm->dir);
	snprintf(cid, sizeof(cid), "%u", vm->cid);
	_cleanup_fd_ int logfd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (logfd < 0)
		return husk_err_sys(err, -errno, "open %s", log);
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return husk_err_sys(err, -errno, "pipe");
	_cleanup_fd_ int rd = p[0];
	const char *argv[] = { vsockd, "--socket", vu, "--uds", vm->uds, "--guest-cid", cid,
			       "--foreground", NULL };
	struct husk_spawn s = { .argv = argv, .stdin_fd = -1, .stdout_fd = p[1], .stderr_fd = logfd,
				.die_with_parent = cfg->die_with_parent };
	int r = husk_spawn(&s, &vm->vsockd_pid, &vm->vsockd_pidfd, err);
	close(p[1]);
	if (r < 0)
		return r;
	char buf[64];
	size_t len = 0;
	struct pollfd pf[2] = { { .fd = rd, .events = POLLIN }, { .fd = vm->vsockd_pidfd, .events = POLLIN } };
	uint64_t deadline = husk_monotonic_ns() + VSOCKD_READY_MS * 1000000ull;
	while (!memmem(buf, len, "ready\n", 6)) {
		uint64_t now = husk_monotonic_ns();
		if (now >= deadline)
			return husk_err_set(err, -ETIMEDOUT, "husk-vsockd did not get ready in 10 s");
		if (poll(pf, 2, (int)((deadline - now) / 1000000u) + 1) < 0 && errno != EINTR)
			return husk_err_sys(err, -errno, "poll");
		ssize_t n = pf[0].revents ? read(rd, buf + len, sizeof(buf) - len) : 0;
		if (n > 0) {
			len += (size_t)n;
			if (len == sizeof(buf))
				len = 0;
			continue;
		}
		if (pf[0].revents || pf[1].revents) {
			char tail[400];
			husk_file_tail(log, tail, sizeof(tail));
			return husk_err_set(err, -ECHILD, "husk-vsockd exited before it was ready: %s",
					    tail);
		}
	}
	return 0;
}

void husk_vsockd_end(struct husk_vm *vm, unsigned wait_ms)
{
	int r = vm->vsockd_pid > 0 ? husk_reap(vm->vsockd_pid, vm->vsockd_pidfd, wait_ms, NULL) : 0;
	if (vm->vsockd_pid > 0 && (r == 0 || r == -ECHILD)) {
		vm->vsockd_pid = 0;
		close(vm->vsockd_pidfd);
		vm->vsockd_pidfd = -1;
	}
	husk_end_child(&vm->vsockd_pid, &vm->vsockd_pidfd, 1000, NULL);
}

void husk_log_listener_close(struct husk_vm *vm)
{
	if (vm->log_listen_fd < 0)
		return;
	close(vm->log_listen_fd);
	vm->log_listen_fd = -1;
	char path[PATH_MAX];
	if (vm->transport == HUSK_TRANSPORT_HYBRID &&
	    husk_path_fmt(path, sizeof(path), "%s_%u", vm->uds, vm->log_port) == 0)
		unlink(path);
}

/* The agent connects once, early: take that connection when it is there. */
void husk_log_accept(struct husk_vm *vm)
{
	if (vm->log_listen_fd < 0 || vm->log_fd >= 0)
		return;
	struct sockaddr_vm peer = { 0 };
	socklen_t len = sizeof(peer);
	int fd = accept4(vm->log_listen_fd, (struct sockaddr *)&peer, &len, SOCK_CLOEXEC);
	/* A listener on VMADDR_CID_ANY hears every VM: only ours may log. */
	if (fd >= 0 && vm->transport == HUSK_TRANSPORT_VHOST && peer.svm_cid != vm->cid) {
		close(fd);
		return;
	}
	if (fd >= 0) {
		vm->log_fd = fd;
		husk_log_listener_close(vm);
	}
}

int husk_transport_setup(struct husk_vm *vm, const struct husk_vm_config *cfg, int *vhost_fd,
			 struct husk_err *err)
{
	int r;
	switch (vm->transport) {
	case HUSK_TRANSPORT_VHOST: {
		_cleanup_fd_ int fd = open("/dev/vhost-vsock", O_RDWR | O_CLOEXEC);
		if (fd < 0)
			return husk_err_sys(err, -errno, "open /dev/vhost-vsock");
		if ((r = husk_vhost_vsock_alloc_cid(fd, &vm->cid, err)) < 0)
			return r;
		*vhost_fd = take_fd(&fd);
		break;
	}
	case HUSK_TRANSPORT_HYBRID:
		vm->cid = 3; /* one VM per husk-vsockd: any guest CID will do */
		if ((r = start_vsockd(vm, cfg, err)) < 0)
			return r;
		break;
	case HUSK_TRANSPORT_UNIX:
		/* An agent on the host (--listen unix:) takes no log stream. */
		vm->cid = 3;
		return 0;
	default:
		return husk_err_set(err, -EINVAL, "transport %d: not resolved", (int)vm->transport);
	}
	/* Before the VMM: the agent connects to its log port as it starts.
	 * Under vhost-vsock all VMs share the host's port space, so each gets
	 * its own port, derived from its (unique) CID. Without a listener
	 * there is no stream, and the agent goes on without one. */
	vm->log_port = vm->transport == HUSK_TRANSPORT_VHOST ? HUSK_LOG_PORT_VHOST_BASE + vm->cid
							      : HUSK_LOG_PORT;
	vm->log_listen_fd = husk_vm_listen(vm, vm->log_port, NULL);
	if (vm->log_listen_fd >= 0)
		fcntl(vm->log_listen_fd, F_SETFL, O_NONBLOCK);
	return 0;
}
