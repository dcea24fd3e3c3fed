/* husk-vsockd: a vhost-user back-end for QEMU's vhost-user-vsock-device
 * that offers the Firecracker / Cloud Hypervisor hybrid vsock convention on
 * a unix socket, for hosts without /dev/vhost-vsock.
 *
 *   husk-vsockd --socket VHOST_USER_SOCK --uds HYBRID_SOCK --guest-cid N [--foreground]
 *
 * It prints "ready" once both sockets listen, serves one QEMU, and exits
 * when QEMU disconnects (the VM is gone) or on SIGTERM/SIGINT, closing every
 * host connection and removing its sockets. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "husk/cleanup.h"
#include "hybrid.h"
#include "log.h"
#include "ttrpc/loop.h"
#include "vhost_user.h"

struct daemon {
	struct ev_loop *loop;
	struct hybrid *mux;
	struct vu_dev dev;
};

static void on_kick(void *data, unsigned ring)
{
	struct daemon *d = data;
	hybrid_kick(d->mux, ring);
}

static void on_stopped(void *data, unsigned ring)
{
	(void)ring;
	struct daemon *d = data;
	hybrid_reset(d->mux);
}

static void on_disconnected(void *data)
{
	struct daemon *d = data;
	vsockd_log("front-end disconnected; exiting");
	ev_stop(d->loop);
}

static const struct vu_ops ops = {
	.kick = on_kick,
	.stopped = on_stopped,
	.disconnected = on_disconnected,
};

static void on_signal(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io;
	(void)events;
	struct daemon *d = data;
	struct signalfd_siginfo si;
	if (read(fd, &si, sizeof(si)) == sizeof(si))
		ev_stop(d->loop);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: husk-vsockd --socket VHOST_USER_SOCK --uds HYBRID_SOCK "
		   "--guest-cid N [--foreground]\n");
}

/* Detaches from the caller before anything is set up (a signalfd watched
 * by epoll does not follow a fork). The parent waits until the child says
 * it is listening and returns 1, or -ECHILD when the child failed; the
 * child returns 0 with *notify to write that one byte to. */
static int daemonize(int *notify)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	pid_t pid = fork();
	if (pid < 0) {
		int r = -errno;
		close(p[0]);
		close(p[1]);
		return r;
	}
	if (pid > 0) {
		close(p[1]);
		char c;
		ssize_t n;
		do
			n = read(p[0], &c, 1);
		while (n < 0 && errno == EINTR);
		close(p[0]);
		return n == 1 ? 1 : -ECHILD;
	}
	close(p[0]);
	setsid();
	*notify = p[1];
	return 0;
}

/* Tells whoever waits that the sockets listen. */
static void announce_ready(int notify)
{
	if (notify < 0) {
		printf("ready\n");
		fflush(stdout);
		return;
	}
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		close(null);
	}
	(void)!write(notify, "1", 1);
	close(notify);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "uds", required_argument, NULL, 'u' },
		{ "guest-cid", required_argument, NULL, 'c' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *vu_path = NULL, *uds = NULL, *cid_str = NULL;
	bool foreground = false;
	int o;
	while ((o = getopt_long(argc, argv, "s:u:c:fh", opts, NULL)) != -1) {
		switch (o) {
		case 's':
			vu_path = optarg;
			break;
		case 'u':
			uds = optarg;
			break;
		case 'c':
			cid_str = optarg;
			break;
		case 'f':
			foreground = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!vu_path || !uds || !cid_str || optind != argc) {
		usage(stderr);
		return 2;
	}
	char *end;
	errno = 0;
	unsigned long long cid = strtoull(cid_str, &end, 10);
	/* 0-2 are the hypervisor, local and host; Linux keeps CIDs in 32 bits
	 * and reserves U32_MAX. */
	if (errno || *end || end == cid_str || cid < 3 || cid >= UINT32_MAX) {
		vsockd_log("--guest-cid %s: want a number from 3 to %u", cid_str, UINT32_MAX - 1);
		return 2;
	}

	int notify = -1;
	if (!foreground) {
		int r = daemonize(&notify);
		if (r < 0 && r != -ECHILD)
			vsockd_log("daemonize: %s", strerror(-r));
		if (r != 0) {
			if (r == 1)
				printf("ready\n");
			return r == 1 ? 0 : 1;
		}
	}

	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	_cleanup_fd_ int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0) {
		vsockd_log("signalfd: %s", strerror(errno));
		return 1;
	}

	struct daemon d = { 0 };
	struct husk_err err = { 0 };
	struct ev_io *sig_io = NULL;
	bool dev_up = false;
	int rc = 1;
	if (ev_loop_new(&d.loop, &err) == 0 &&
	    ev_io_add(d.loop, sfd, EPOLLIN, on_signal, &d, &sig_io, &err) == 0 &&
	    vu_dev_init(&d.dev, d.loop, vu_path, cid, &ops, &d, &err) == 0) {
		dev_up = true;
		if (hybrid_new(&d.mux, d.loop, &d.dev, uds, cid, &err) == 0) {
			announce_ready(notify);
			notify = -1;
			int r = ev_run(d.loop);
			if (r < 0)
				husk_err_sys(&err, r, "event loop");
			else
				rc = 0;
		}
	}
	if (err.msg[0])
		vsockd_log("%s", err.msg);
	/* The device first: the multiplexer's last deferred work must find
	 * its rings stopped. */
	if (dev_up)
		vu_dev_fini(&d.dev);
	hybrid_free(d.mux);
	if (notify >= 0)
		close(notify); /* a waiting parent sees EOF: failure */
	ev_io_del(sig_io);
	ev_loop_free(d.loop);
	return rc;
}
