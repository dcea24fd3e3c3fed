/* A process's stdio: containerd's side (FIFOs, a file:// log, a binary://
 * logger) bridged to the guest's vsock stdio ports by relays. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "io.h"
#include "proc_io.h"
#include "vm.h"

enum { TAG_IN, TAG_OUT, TAG_ERR };

static void on_relay_done(void *data, int tag)
{
	struct proc *p = data;
	if (tag == TAG_IN) {
		p->in = NULL;
		return;
	}
	if (tag == TAG_OUT)
		p->out = NULL;
	else
		p->err = NULL;
	if (p->outputs_open)
		p->outputs_open--;
	proc_maybe_stopped(p);
}

/* Opens containerd's side of one stdio stream (the stdout URI's scheme
 * decides for stderr too, as in containerd). Output FIFOs are opened
 * read-write: that never blocks, whether or not containerd has opened its
 * end yet. stdin is opened read-only and nonblocking: epoll reports nothing
 * until a writer has come (Linux signals HUP only for writers that arrived
 * after our open), so the writer's close is the process's stdin EOF, as
 * with runc; CloseIO ends it too. */
static int open_host_stdio(struct proc *p, int which, struct husk_err *err)
{
	const char *paths[3] = { p->stdin_path, p->stdout_path, p->stderr_path };
	struct stdio_uri u;
	int rc = stdio_uri_parse(which == 0 ? p->stdin_path : p->stdout_path, &u, err);
	if (rc < 0)
		return rc;
	if (which == 0 && u.kind != STDIO_FIFO) {
		stdio_uri_free(&u);
		return husk_err_set(err, -EINVAL, "stdin %s: only a FIFO can be stdin",
				    p->stdin_path);
	}
	int fd;
	if (u.kind == STDIO_BINARY) {
		fd = p->logger ? logger_take_fd(p->logger, which) : -1;
		if (fd < 0)
			husk_err_set(err, -EBADF, "%s: no logger pipe", paths[which]);
	} else if (u.kind == STDIO_FILE) {
		fd = stdio_open_file(u.path, err);
	} else {
		/* Each FIFO is its own path; fifo:// is the same as none. */
		const char *path = paths[which];
		if (strncmp(path, "fifo://", 7) == 0)
			path += 7;
		fd = open(path, (which == 0 ? O_RDONLY : O_RDWR) | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0)
			husk_err_sys(err, -errno, "open %s", path);
	}
	stdio_uri_free(&u);
	return fd < 0 ? (err && err->code ? err->code : -EBADF) : fd;
}

int proc_open_logger(struct proc *p, struct husk_err *err)
{
	if (!*p->stdout_path)
		return 0;
	struct stdio_uri u;
	int rc = stdio_uri_parse(p->stdout_path, &u, err);
	if (rc < 0)
		return rc;
	if (u.kind == STDIO_BINARY) {
		struct shim *s = p->s;
		rc = logger_start(s->loop, &u, s->opt.namespace_, proc_task_id(p), p->c->bundle,
				  &p->logger, err);
		if (rc == 0)
			shim_log("%s: logger %s started", proc_task_id(p), u.path);
	}
	stdio_uri_free(&u);
	return rc;
}

int proc_open_stdio(struct proc *p, struct husk_err *err)
{
	const uint32_t ports[3] = { p->ports.in, p->ports.out, p->ports.err };
	for (int i = 0; i < 3; i++) {
		if (!ports[i] || p->host_fd[i] >= 0)
			continue;
		int fd = open_host_stdio(p, i, err);
		if (fd < 0)
			return fd;
		p->host_fd[i] = fd;
	}
	return 0;
}

int proc_connect_io(struct proc *p, struct husk_err *err)
{
	struct shim *s = p->s;
	const uint32_t ports[3] = { p->ports.in, p->ports.out, p->ports.err };
	struct relay **slots[3] = { &p->in, &p->out, &p->err };
	for (int i = 0; i < 3; i++) {
		if (!ports[i] || p->host_fd[i] < 0)
			continue;
		int vfd = shim_vm_connect(s, ports[i], err);
		if (vfd < 0)
			return husk_err_wrap(err, "stdio port %u", ports[i]);
		int hfd = p->host_fd[i];
		p->host_fd[i] = -1; /* the relay owns it, also on failure */
		int r = i == 0 ? relay_new(s->loop, hfd, vfd, true, on_relay_done, p, TAG_IN,
					   slots[i], err)
			       : relay_new(s->loop, vfd, hfd, false, on_relay_done, p,
					   i == 1 ? TAG_OUT : TAG_ERR, slots[i], err);
		if (r < 0)
			return r;
		if (i > 0)
			p->outputs_open++;
	}
	return 0;
}

void proc_close_input(struct proc *p)
{
	relay_close_input(p->in);
}
