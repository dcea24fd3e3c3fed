/* The debug console: vsock port 1026, only with husk.debug_console=1 on the
 * kernel command line. Each connection from the host (agent_accept: never
 * one from a container) gets /bin/sh (from a DEBUG=1 initramfs) on a pty.
 * A forked helper owns the session, so a slow or stuck console never
 * blocks the agent's loop; the reaper collects it. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "husk/cleanup.h"

#define CONSOLE_PORT 1026

/* Copies both ways until either side closes. Runs in the helper. */
static void relay(int conn, int master)
{
	struct pollfd p[2] = { { .fd = conn, .events = POLLIN }, { .fd = master, .events = POLLIN } };
	char buf[4096];
	for (;;) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		for (int i = 0; i < 2; i++) {
			if (!p[i].revents)
				continue;
			ssize_t n = read(p[i].fd, buf, sizeof(buf));
			if (n <= 0)
				return;
			for (ssize_t off = 0; off < n;) {
				ssize_t w = write(p[1 - i].fd, buf + off, (size_t)(n - off));
				if (w <= 0)
					return;
				off += w;
			}
		}
	}
}

__attribute__((noreturn)) static void session(int conn)
{
	int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	int unlock = 0;
	if (master < 0 || ioctl(master, TIOCSPTLCK, &unlock) < 0) {
		dprintf(conn, "husk-agent: no pty for the console: %s\r\n", strerror(errno));
		_exit(1);
	}
	pid_t sh = fork();
	if (sh == 0) {
		int peer = ioctl(master, TIOCGPTPEER, O_RDWR);
		if (peer < 0 || setsid() < 0 || ioctl(peer, TIOCSCTTY, 0) < 0)
			_exit(126);
		for (int fd = 0; fd < 3; fd++)
			dup2(peer, fd);
		char *const argv[] = { "sh", "-l", NULL };
		char *const envp[] = { "PATH=/bin:/sbin:/usr/bin:/usr/sbin", "TERM=vt100",
				       "HOME=/", "PS1=husk-guest# ", NULL };
		execve("/bin/sh", argv, envp);
		dprintf(2, "husk-agent: debug console: /bin/sh: %s (build the initramfs with DEBUG=1)\r\n",
			strerror(errno));
		_exit(127);
	}
	relay(conn, master);
	if (sh > 0)
		kill(sh, SIGHUP);
	_exit(0);
}

static void on_console_accept(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io;
	(void)events;
	/* A root shell for the host only, never for a container. */
	int conn = agent_accept(data, fd, CONSOLE_PORT, SOCK_CLOEXEC);
	if (conn < 0)
		return;
	/* The shell wants /dev/pts and the rest, like a container. */
	setup_finish(data);
	pid_t pid = fork();
	if (pid == 0) {
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		session(conn);
	}
	close(conn); /* the helper has it; its exit is reaped as an orphan */
}

int console_start(struct agent *a, struct husk_err *err)
{
	int fd = agent_listen_port(a, CONSOLE_PORT, err);
	if (fd < 0)
		return fd;
	struct ev_io *io;
	int r = ev_io_add(a->loop, fd, EPOLLIN, on_console_accept, a, &io, err);
	if (r < 0)
		close(fd);
	return r;
}
