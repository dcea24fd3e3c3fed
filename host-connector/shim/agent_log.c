/* The agent's log stream (guest port 1025, "husk-agent: <level>: <text>"
 * lines), copied into the shim log with source=husk-agent. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vm.h"

/* "husk-agent: info: text" -> level=info msg="guest: text". */
static void log_line(struct shim *s, char *line, size_t len)
{
	(void)s;
	static const struct {
		const char *agent, *logrus;
	} levels[] = {
		{ "emerg", "error" }, { "alert", "error" },	{ "crit", "error" },
		{ "error", "error" }, { "warning", "warning" }, { "notice", "info" },
		{ "info", "info" },   { "debug", "debug" },
	};
	line[len] = '\0';
	if (len && line[len - 1] == '\r')
		line[--len] = '\0';
	if (!len)
		return;
	const char *text = line, *level = "info";
	if (strncmp(text, "husk-agent: ", 12) == 0)
		text += 12;
	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
		size_t n = strlen(levels[i].agent);
		if (strncmp(text, levels[i].agent, n) == 0 && text[n] == ':' &&
		    text[n + 1] == ' ') {
			level = levels[i].logrus;
			text += n + 2;
			break;
		}
	}
	shim_log_at(level, "husk-agent", "guest: %s", text);
}

static void on_log(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io, (void)events;
	struct shim *s = data;
	for (;;) {
		size_t room = sizeof(s->vm.log_buf) - 1 - s->vm.log_len;
		ssize_t n = recv(fd, s->vm.log_buf + s->vm.log_len, room, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) { /* the guest went away: what is left is a line too */
			if (s->vm.log_len)
				log_line(s, s->vm.log_buf, s->vm.log_len);
			s->vm.log_len = 0;
			agent_log_stop(s);
			return;
		}
		s->vm.log_len += (size_t)n;
		char *start = s->vm.log_buf, *nl;
		while ((nl = memchr(start, '\n', s->vm.log_len - (size_t)(start - s->vm.log_buf)))) {
			log_line(s, start, (size_t)(nl - start));
			start = nl + 1;
		}
		size_t left = s->vm.log_len - (size_t)(start - s->vm.log_buf);
		if (left == sizeof(s->vm.log_buf) - 1) { /* no newline in a full buffer */
			log_line(s, s->vm.log_buf, left);
			left = 0;
		}
		memmove(s->vm.log_buf, start, left);
		s->vm.log_len = left;
	}
}

int agent_log_start(struct shim *s, struct husk_err *err)
{
	int fd = husk_vm_log_fd(s->vm.vm); /* owned by the VM */
	if (fd < 0) {
		shim_log("shim for %s: the agent's log stream did not connect", s->opt.id);
		return 0;
	}
	return ev_io_add(s->loop, fd, EPOLLIN, on_log, s, &s->vm.log_io, err);
}

void agent_log_stop(struct shim *s)
{
	ev_io_del(s->vm.log_io);
	s->vm.log_io = NULL;
}
