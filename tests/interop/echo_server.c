/* ttrpc-echo-server --socket PATH: serves husk.test.Echo with libttrpc until
 * SIGTERM/SIGINT. Prints "ready" once listening. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "echo_service.h"
#include "husk/cleanup.h"
#include "husk/sock.h"
#include "ttrpc/loop.h"
#include "ttrpc/server.h"

static void on_signal(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io;
	(void)events;
	struct signalfd_siginfo si;
	if (read(fd, &si, sizeof(si)) == sizeof(si))
		ev_stop(data);
}

int main(int argc, char **argv)
{
	const char *path = NULL;
	static const struct option opts[] = { { "socket", required_argument, NULL, 's' }, { 0 } };
	for (int c; (c = getopt_long(argc, argv, "s:", opts, NULL)) != -1;) {
		if (c != 's') {
			fprintf(stderr, "usage: %s --socket PATH\n", argv[0]);
			return 2;
		}
		path = optarg;
	}
	if (!path) {
		fprintf(stderr, "usage: %s --socket PATH\n", argv[0]);
		return 2;
	}

	struct husk_err err = { 0 };
	struct ev_loop *loop = NULL;
	struct ttrpc_server *srv = NULL;
	struct echo_service echo = { 0 };
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	_cleanup_fd_ int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	struct ev_io *sig_io = NULL;
	int lfd;
	if (sfd < 0 || ev_loop_new(&loop, &err) < 0 || ttrpc_server_new(loop, NULL, &srv, &err) < 0 ||
	    (echo.loop = loop, echo_service_register(srv, &echo, &err)) < 0 ||
	    (lfd = husk_unix_listen(path, &err)) < 0 ||
	    ttrpc_server_add_listener(srv, lfd, &err) < 0 ||
	    ev_io_add(loop, sfd, EPOLLIN, on_signal, loop, &sig_io, &err) < 0) {
		fprintf(stderr, "ttrpc-echo-server: %s\n", err.msg[0] ? err.msg : strerror(errno));
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	int r = ev_run(loop);
	unlink(path);
	ev_io_del(sig_io);
	ttrpc_server_free(srv);
	ev_loop_free(loop);
	return r < 0 ? 1 : 0;
}
