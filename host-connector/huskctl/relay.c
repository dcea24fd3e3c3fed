/* A container process's stdio at our end: our terminal (or pipes, files)
 * and the guest's stdio streams, each direction a relay (ttrpc/relay.h) on
 * an event loop of the run's own, next to the signals we forward, the
 * VMM's exit and the agent's connection. Our stdin and stdout stay
 * blocking: they may be a terminal we share with the shell, and
 * O_NONBLOCK there would outlive us. */
#include "relay.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include "husk/cleanup.h"
#include "ttrpc/loop.h"
#include "ttrpc/relay.h"

static const int forwarded[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH };

enum { S_IN, S_OUT, S_ERR, S_LOG, N_STREAMS };

struct session;
struct stream {
	struct session *ss;
	int which;
	struct ev_relay *relay;
};

struct session {
	const struct relay_opts *o;
	struct ev_loop *loop;
	struct stream st[N_STREAMS];
	unsigned outputs; /* stdout and stderr relays still copying */
	int endings;	  /* INT and TERM received */
	bool raw;
	int ret;
	struct husk_err *err;
};

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

static void on_stream_done(void *data, int rc)
{
	struct stream *s = data;
	struct session *ss = s->ss;
	s->relay = NULL;
	/* stdin the guest stopped reading, or the agent's log: the rest is
	 * dropped. */
	if (s->which != S_OUT && s->which != S_ERR)
		return;
	if (rc < 0 && !ss->ret)
		ss->ret = husk_err_sys(ss->err, rc, "writing the container's %s",
				       s->which == S_OUT ? "stdout" : "stderr");
	if (--ss->outputs == 0 || ss->ret)
		ev_stop(ss->loop);
}

static void on_signal(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io, (void)events;
	struct session *ss = data;
	const struct relay_opts *o = ss->o;
	struct signalfd_siginfo si;
	while (read(fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGWINCH) {
			resize(o);
			continue;
		}
		/* A container's PID 1 ignores signals it has no handler for: the
		 * second INT/TERM kills, as docker stop does after its grace
		 * period. */
		bool ending = si.ssi_signo == SIGINT || si.ssi_signo == SIGTERM;
		if (ending && ++ss->endings >= 2) {
			husk_task_kill(o->agent, o->id, o->exec_id, SIGKILL, false, NULL);
			continue;
		}
		husk_task_kill(o->agent, o->id, o->exec_id, (int)si.ssi_signo, false, NULL);
		if (ending && !ss->raw)
			fprintf(stderr, "huskctl: sent %s to the container; again to kill it\n",
				sigabbrev_np((int)si.ssi_signo));
	}
}

static void on_vm_exit(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io, (void)fd, (void)events;
	struct session *ss = data;
	if (!ss->ret)
		ss->ret = husk_err_set(ss->err, -EPIPE, "the VM exited before the container did");
	ev_stop(ss->loop);
}

/* Watched for EPOLLRDHUP only: any event is the connection's end. */
static void on_agent_lost(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io, (void)fd, (void)events;
	struct session *ss = data;
	if (!ss->ret)
		ss->ret = husk_err_set(ss->err, -EPIPE, "the connection to the VM's agent was lost");
	ev_stop(ss->loop);
}

/* Starts the relays: 0 our stdin -> the guest's (shut down after our EOF);
 * 1, 2 the guest's stdout and stderr -> ours; 3 the agent's log -> our
 * stderr, which lasts as long as the VM and so never keeps the run going.
 * None owns its fds: the caller's streams, and ours. */
static int start_streams(struct session *ss)
{
	const struct relay_opts *o = ss->o;
	const int guest[N_STREAMS] = { o->in, o->out, o->err, o->log };
	const int ours[N_STREAMS] = { STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO, STDERR_FILENO };
	if (o->in >= 0)
		fcntl(o->in, F_SETFL, fcntl(o->in, F_GETFL) | O_NONBLOCK);
	for (int i = 0; i < N_STREAMS; i++) {
		if (guest[i] < 0)
			continue;
		struct stream *s = &ss->st[i];
		*s = (struct stream){ .ss = ss, .which = i };
		struct ev_relay_opts ro = { .src = i == S_IN ? ours[i] : guest[i],
					    .dst = i == S_IN ? guest[i] : ours[i],
					    .flags = i == S_IN ? EV_RELAY_SHUT_DST : 0,
					    .done = on_stream_done, .data = s };
		struct husk_err e = { 0 };
		int r = ev_relay_new(ss->loop, &ro, &s->relay, &e);
		if (r < 0 && i == S_IN) {
			shutdown(o->in, SHUT_WR); /* stdin we cannot read is an empty one */
			continue;
		}
		if (r < 0) {
			*ss->err = e;
			return r;
		}
		if (i == S_OUT || i == S_ERR)
			ss->outputs++;
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

	struct session ss = { .o = o, .err = err };
	int r = ev_loop_new(&ss.loop, err);
	if (r < 0)
		return r;
	struct ev_io *sig_io = NULL, *vm_io = NULL, *agent_io = NULL;
	if ((r = ev_io_add(ss.loop, sfd, EPOLLIN, on_signal, &ss, &sig_io, err)) < 0 ||
	    (o->vm_pidfd >= 0 &&
	     (r = ev_io_add(ss.loop, o->vm_pidfd, EPOLLIN, on_vm_exit, &ss, &vm_io, err)) < 0) ||
	    (o->agent_fd >= 0 && (r = ev_io_add(ss.loop, o->agent_fd, EPOLLRDHUP, on_agent_lost,
						&ss, &agent_io, err)) < 0))
		goto out;

	struct termios saved;
	/* Raw mode only when our keystrokes go to the container: otherwise ^C
	 * must stay a signal here. */
	if (o->terminal && o->in >= 0 && isatty(STDIN_FILENO) &&
	    tcgetattr(STDIN_FILENO, &saved) == 0) {
		struct termios t = saved;
		cfmakeraw(&t);
		ss.raw = tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0;
	}
	if (o->terminal)
		resize(o);
	if ((r = start_streams(&ss)) == 0 && ss.outputs) {
		r = ev_run(ss.loop);
		if (r < 0 && !ss.ret)
			husk_err_sys(err, r, "event loop");
		if (ss.ret)
			r = ss.ret;
	}
	for (int i = 0; i < N_STREAMS; i++)
		ev_relay_free(ss.st[i].relay);
	if (ss.raw)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved);
out:
	ev_io_del(sig_io);
	ev_io_del(vm_io);
	ev_io_del(agent_io);
	ev_loop_free(ss.loop);
	return r;
}
