/* The agent's log stream to the host: as PID 1 it connects to host port
 * husk.log_port (1025, or per VM with vhost-vsock; docs/protocol.md,
 * "Other ports"). Every line init_log() passes goes there as
 * "husk-agent: <level>: <text>\n", next to the console. Sends never block
 * the agent: when the host does not read, lines are dropped and counted.
 * No listener on the host (RST) just means no stream. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/vm_sockets.h>

#include "agent.h"
#include "init/console.h"

static void close_log(struct agent *a)
{
	init_log_set_sink(NULL, NULL);
	init_log_set_stderr_level(INIT_LOG_DEBUG); /* the console is all there is */
	ev_io_del(a->log_io);
	a->log_io = NULL;
	if (a->log_fd >= 0)
		close(a->log_fd);
	a->log_fd = -1;
}

static void sink(int level, const char *line, size_t len, void *data)
{
	struct agent *a = data;
	char buf[INIT_LOG_LINE_MAX + 32];
	(void)level; /* the line names its level already */
	int n = snprintf(buf, sizeof(buf), "husk-agent: %.*s\n", (int)len, line);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(buf))
		n = sizeof(buf) - 1;
	ssize_t w = send(a->log_fd, buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (w == n)
		return;
	if (w < 0 && errno != EAGAIN) {
		close_log(a); /* the host went away */
		return;
	}
	a->log_dropped++; /* a partial line is cut short; the next starts fresh */
	if (w > 0)
		(void)!send(a->log_fd, "\n", 1, MSG_DONTWAIT | MSG_NOSIGNAL);
}

static void on_connected(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io;
	(void)events;
	struct agent *a = data;
	int soerr = 0;
	socklen_t len = sizeof(soerr);
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0 || soerr) {
		close_log(a); /* nobody listens on the host: no stream */
		init_log(INIT_LOG_INFO, "husk-agent %s: serving on vsock port %u (no log stream: %s)",
			 HUSK_AGENT_VERSION, a->opt.vsock_port, strerror(soerr ? soerr : errno));
		return;
	}
	ev_io_del(a->log_io);
	a->log_io = NULL;
	init_log_set_sink(sink, a);
	/* The host now has every line: the serial console, slow under TCG,
	 * keeps the ones that matter after the host is gone (all of them at
	 * husk.log_level=7, for whoever debugs from the console). */
	if (init_log_get_level() < INIT_LOG_DEBUG)
		init_log_set_stderr_level(INIT_LOG_WARNING);
	init_log(INIT_LOG_INFO, "husk-agent %s: serving on vsock port %u, log stream connected",
		 HUSK_AGENT_VERSION, a->opt.vsock_port);
}

void log_stream_start(struct agent *a, unsigned port)
{
	a->log_fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (a->log_fd < 0) {
		init_log(INIT_LOG_INFO, "husk-agent %s: serving on vsock port %u (no log stream: %s)",
			 HUSK_AGENT_VERSION, a->opt.vsock_port, strerror(errno));
		return;
	}
	struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_HOST,
				  .svm_port = port };
	if (connect(a->log_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
		int e = errno;
		close_log(a);
		init_log(INIT_LOG_INFO, "husk-agent %s: serving on vsock port %u (no log stream: %s)",
			 HUSK_AGENT_VERSION, a->opt.vsock_port, strerror(e));
		return;
	}
	if (ev_io_add(a->loop, a->log_fd, EPOLLOUT, on_connected, a, &a->log_io, NULL) < 0)
		close_log(a);
}

void log_stream_stop(struct agent *a)
{
	if (a->log_fd >= 0)
		close_log(a);
}
