/* A process's stdio: containerd's side (FIFOs, a file:// log, a binary://
 * logger) bridged to the guest's vsock stdio ports by relays. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "husk/cleanup.h"

#include "io.h"
#include "proc_io.h"
#include "vm.h"

enum { TAG_IN, TAG_OUT, TAG_ERR };
/* The guest listens before its Create or Exec is answered: a connection
 * that takes longer than this is a guest in trouble. */
#define STDIO_CONNECT_TIMEOUT_MS 5000u

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

/* Connecting a process's stdio ports, on the loop. */
struct io_connect;
struct conn_slot {
	struct io_connect *ic;
	int which; /* 0 stdin, 1 stdout, 2 stderr */
	struct husk_vm_conn conn;
	struct ev_io *io;
};
struct io_connect {
	struct proc *p; /* a reference */
	struct conn_slot slot[3];
	unsigned pending;
	struct ev_timer *timer;
	proc_io_done_fn done;
	void *data;
	struct ev_deferred now;
};

static void io_connect_end(struct io_connect *ic, int rc, const struct husk_err *err)
{
	for (int i = 0; i < 3; i++) {
		ev_io_del(ic->slot[i].io);
		husk_vm_connect_abort(&ic->slot[i].conn);
	}
	ev_timer_cancel(ic->timer);
	struct proc *p = ic->p;
	proc_io_done_fn done = ic->done;
	void *data = ic->data;
	free(ic);
	done(p, rc, err, data);
	proc_unref(p);
}

static void on_nothing_to_connect(void *data)
{
	io_connect_end(data, 0, NULL);
}

static void on_connect_timeout(void *data)
{
	struct io_connect *ic = data;
	ic->timer = NULL;
	struct husk_err err = { 0 };
	husk_err_set(&err, -ETIMEDOUT, "stdio: the guest did not answer within %u ms",
		     STDIO_CONNECT_TIMEOUT_MS);
	io_connect_end(ic, err.code, &err);
}

/* One stream connected: it becomes a relay. */
static int slot_relay(struct conn_slot *sl, struct husk_err *err)
{
	struct proc *p = sl->ic->p;
	struct relay **slots[3] = { &p->in, &p->out, &p->err };
	int i = sl->which, vfd = take_fd(&sl->conn.fd), hfd = p->host_fd[i];
	p->host_fd[i] = -1; /* the relay owns both, also on failure */
	int r = i == 0 ? relay_new(p->s->loop, hfd, vfd, true, on_relay_done, p, TAG_IN, slots[i],
				   err)
		       : relay_new(p->s->loop, vfd, hfd, false, on_relay_done, p,
				   i == 1 ? TAG_OUT : TAG_ERR, slots[i], err);
	if (r == 0 && i > 0)
		p->outputs_open++;
	return r;
}

static void on_connect_io(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)fd, (void)events;
	struct conn_slot *sl = data;
	struct io_connect *ic = sl->ic;
	struct husk_err err = { 0 };
	int r = husk_vm_connect_step(&sl->conn, &err);
	if (r == 0) {
		ev_io_set_events(io, sl->conn.events == POLLIN ? EPOLLIN : EPOLLOUT);
		return;
	}
	ev_io_del(io);
	sl->io = NULL;
	if (r > 0)
		r = slot_relay(sl, &err);
	if (r < 0) {
		husk_err_wrap(&err, "stdio port %u", sl->conn.port);
		io_connect_end(ic, r, &err);
		return;
	}
	if (--ic->pending == 0)
		io_connect_end(ic, 0, NULL);
}

int proc_connect_io(struct proc *p, proc_io_done_fn done, void *data, struct husk_err *err)
{
	struct shim *s = p->s;
	if (!shim_vm_up(s))
		return husk_err_set(err, -EPIPE, "stdio: the VM is gone");
	struct io_connect *ic = calloc(1, sizeof(*ic));
	if (!ic)
		return husk_err_set(err, -ENOMEM, "stdio: out of memory");
	ic->p = proc_ref(p);
	ic->done = done;
	ic->data = data;
	const uint32_t ports[3] = { p->ports.in, p->ports.out, p->ports.err };
	int rc = 0;
	for (int i = 0; i < 3; i++) {
		struct conn_slot *sl = &ic->slot[i];
		*sl = (struct conn_slot){ .ic = ic, .which = i, .conn = { .fd = -1 } };
		if (!ports[i] || p->host_fd[i] < 0)
			continue;
		if ((rc = husk_vm_connect_start(s->vm.vm, ports[i], &sl->conn, err)) < 0 ||
		    (rc = ev_io_add(s->loop, sl->conn.fd,
				    sl->conn.events == POLLIN ? EPOLLIN : EPOLLOUT, on_connect_io, sl,
				    &sl->io, err)) < 0)
			break;
		ic->pending++;
	}
	if (rc == 0 && ic->pending &&
	    ev_timer_add(s->loop, STDIO_CONNECT_TIMEOUT_MS * 1000000ull, on_connect_timeout, ic,
			 &ic->timer) < 0)
		rc = husk_err_set(err, -ENOMEM, "stdio: no timer");
	if (rc < 0) {
		for (int i = 0; i < 3; i++) {
			ev_io_del(ic->slot[i].io);
			husk_vm_connect_abort(&ic->slot[i].conn);
		}
		ev_timer_cancel(ic->timer);
		proc_unref(ic->p);
		free(ic);
		return rc;
	}
	if (!ic->pending) { /* nothing to connect: done, but not from inside the caller */
		ic->now.fn = on_nothing_to_connect;
		ic->now.data = ic;
		ev_defer(s->loop, &ic->now);
	}
	return 0;
}

void proc_close_input(struct proc *p)
{
	relay_close_input(p->in);
}
