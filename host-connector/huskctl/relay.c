#include "relay.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include "husk/cleanup.h"

#define BUF 65536

/* One direction: bytes read from `from` wait in buf until `to` takes them. */
struct stream {
	int from, to;
	bool eof;      /* `from` is done */
	bool shut_to;  /* at EOF, shutdown(to, SHUT_WR) (a guest stream) */
	bool nonblock; /* `to` is a non-blocking socket of ours */
	size_t off, len;
	char buf[BUF];
};

static const int forwarded[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH };

void relay_block_signals(void)
{
	sigset_t set;
	sigemptyset(&set);
	for (size_t i = 0; i < ARRAY_SIZE(forwarded); i++)
		sigaddset(&set, forwarded[i]);
	sigprocmask(SIG_BLOCK, &set, NULL);
}

static void resize(const struct relay_opts *o)
{
	struct winsize ws;
	if ((ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0 ||
	     ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0) && ws.ws_col)
		husk_task_resize_pty(o->agent, o->id, o->exec_id, ws.ws_col, ws.ws_row, NULL);
}

/* Moves what it can; returns -errno on a write error to `to`. */
static int pump(struct stream *s)
{
	if (s->len == 0 && !s->eof) {
		ssize_t n = read(s->from, s->buf, BUF);
		if (n > 0) {
			s->off = 0;
			s->len = (size_t)n;
		} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
			s->eof = true;
		}
	}
	while (s->len) {
		ssize_t n = write(s->to, s->buf + s->off, s->len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN && s->nonblock)
				return 0;
			return -errno;
		}
		s->off += (size_t)n;
		s->len -= (size_t)n;
	}
	if (s->eof && s->shut_to) {
		shutdown(s->to, SHUT_WR);
		s->shut_to = false;
	}
	return 0;
}

int relay_run(const struct relay_opts *o, struct husk_err *err)
{
	sigset_t set;
	sigemptyset(&set);
	for (size_t i = 0; i < ARRAY_SIZE(forwarded); i++)
		sigaddset(&set, forwarded[i]);
	_cleanup_fd_ int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0)
		return husk_err_sys(err, -errno, "signalfd");

	struct termios saved;
	bool raw = false;
	/* Raw mode only when our keystrokes go to the container: otherwise ^C
	 * must stay a signal here. */
	if (o->terminal && o->in >= 0 && isatty(STDIN_FILENO) &&
	    tcgetattr(STDIN_FILENO, &saved) == 0) {
		struct termios t = saved;
		cfmakeraw(&t);
		raw = tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0;
	}
	if (o->terminal)
		resize(o);

	_cleanup_free_ struct stream *s = calloc(4, sizeof(*s));
	if (!s)
		return husk_err_set(err, -ENOMEM, "stdio buffers");
	/* 0: our stdin -> guest; 1: guest stdout -> ours; 2: guest stderr. */
	s[0] = (struct stream){ .from = STDIN_FILENO, .to = o->in, .eof = o->in < 0,
				.shut_to = true, .nonblock = true };
	s[1] = (struct stream){ .from = o->out, .to = STDOUT_FILENO, .eof = o->out < 0 };
	s[2] = (struct stream){ .from = o->err, .to = STDERR_FILENO, .eof = o->err < 0 };
	/* 3: the agent's log; it lasts as long as the VM, so it never keeps
	 * the relay going. */
	s[3] = (struct stream){ .from = o->log, .to = STDERR_FILENO, .eof = o->log < 0 };
	if (o->in >= 0)
		fcntl(o->in, F_SETFL, fcntl(o->in, F_GETFL) | O_NONBLOCK);

	int ret = 0, endings = 0;
	while (!(s[1].eof && s[2].eof)) {
		struct pollfd p[7];
		int idx[4] = { -1, -1, -1, -1 }, n = 0;
		for (int i = 0; i < 4; i++) {
			if (s[i].len) {
				idx[i] = n;
				p[n++] = (struct pollfd){ .fd = s[i].to, .events = POLLOUT };
			} else if (!s[i].eof) {
				idx[i] = n;
				p[n++] = (struct pollfd){ .fd = s[i].from, .events = POLLIN };
			}
		}
		int sig_i = n;
		p[n++] = (struct pollfd){ .fd = sfd, .events = POLLIN };
		int vm_i = -1, agent_i = -1;
		if (o->vm_pidfd >= 0) {
			vm_i = n;
			p[n++] = (struct pollfd){ .fd = o->vm_pidfd, .events = POLLIN };
		}
		if (o->agent_fd >= 0) {
			agent_i = n;
			p[n++] = (struct pollfd){ .fd = o->agent_fd, .events = POLLRDHUP };
		}
		if (poll(p, (nfds_t)n, -1) < 0) {
			if (errno == EINTR)
				continue;
			ret = husk_err_sys(err, -errno, "poll");
			break;
		}
		if (vm_i >= 0 && p[vm_i].revents) {
			ret = husk_err_set(err, -EPIPE, "the VM exited before the container did");
			break;
		}
		if (agent_i >= 0 && (p[agent_i].revents & (POLLRDHUP | POLLHUP | POLLERR))) {
			ret = husk_err_set(err, -EPIPE, "the connection to the VM's agent was lost");
			break;
		}
		if (p[sig_i].revents) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
				if (si.ssi_signo == SIGWINCH) {
					resize(o);
					continue;
				}
				/* A container's PID 1 ignores signals it has no handler
				 * for: the second INT/TERM kills, as docker stop does
				 * after its grace period. */
				bool ending = si.ssi_signo == SIGINT || si.ssi_signo == SIGTERM;
				if (ending && ++endings >= 2) {
					husk_task_kill(o->agent, o->id, o->exec_id, SIGKILL, false, NULL);
					continue;
				}
				husk_task_kill(o->agent, o->id, o->exec_id, (int)si.ssi_signo, false, NULL);
				if (ending && !raw)
					fprintf(stderr, "huskctl: sent %s to the container; again to kill it\n",
						sigabbrev_np((int)si.ssi_signo));
			}
		}
		for (int i = 0; i < 4 && ret == 0; i++) {
			if (idx[i] < 0 || !p[idx[i]].revents)
				continue;
			int r = pump(&s[i]);
			/* The guest stopped reading stdin: drop the rest. */
			if (r < 0 && (i == 0 || i == 3)) {
				s[i].eof = true;
				s[i].len = 0;
			} else if (r < 0) {
				ret = husk_err_sys(err, r, "writing the container's %s",
						   i == 1 ? "stdout" : "stderr");
			}
		}
		if (ret)
			break;
	}
	if (raw)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved);
	return ret;
}
