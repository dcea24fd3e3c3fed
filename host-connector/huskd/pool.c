/* The pool's VMs: a keeper process boots each (husk_pool_keep), huskd
 * holds the ready ones' messages and lifelines, hands them out, reaps the
 * keepers, and refills. A shape whose boots fail waits before the next
 * one, longer each time (1 s doubling to 60 s). */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>
#include <linux/close_range.h>

#include "husk/cleanup.h"
#include "huskd.h"

#define RETRY_MIN_NS (1000ull * 1000000ull)
#define RETRY_MAX_NS (60000ull * 1000000ull)
#define SHUTDOWN_WAIT_MS 15000

static void vm_close_fds(struct pool_vm *v)
{
	ev_io_del(v->report_io);
	v->report_io = NULL;
	ev_io_del(v->lifeline_io);
	v->lifeline_io = NULL;
	if (v->report_fd >= 0)
		close(v->report_fd);
	if (v->lifeline_fd >= 0)
		close(v->lifeline_fd);
	v->report_fd = v->lifeline_fd = -1;
	for (size_t i = 0; i < v->n_fds; i++)
		close(v->fds[i]);
	v->n_fds = 0;
	free(v->msg);
	v->msg = NULL;
}

static void count(struct pool_vm *v, int delta)
{
	unsigned *c = v->state == PVM_BOOTING ? &v->shape->booting :
		      v->state == PVM_READY   ? &v->shape->ready :
		      v->state == PVM_HANDED  ? &v->shape->handed :
						NULL;
	if (c)
		*c += (unsigned)delta;
}

static void set_state(struct huskd *d, struct pool_vm *v, enum pool_vm_state to)
{
	if (v->state == PVM_BOOTING)
		d->booting--;
	count(v, -1);
	v->state = to;
	count(v, +1);
}

/* The keeper exited: reap it; remove what a keeper killed mid-boot left. */
static void vm_free(struct huskd *d, struct pool_vm *v)
{
	for (struct pool_vm **p = &d->vms; *p; p = &(*p)->next)
		if (*p == v) {
			*p = v->next;
			break;
		}
	if (v->state == PVM_BOOTING)
		d->booting--;
	count(v, -1);
	vm_close_fds(v);
	ev_io_del(v->keeper_io);
	if (v->keeper_pidfd >= 0) {
		siginfo_t si;
		waitid(P_PIDFD, (id_t)v->keeper_pidfd, &si, WEXITED | WNOHANG);
		close(v->keeper_pidfd);
	}
	/* What a keeper killed mid-boot left, or one whose client's lock
	 * outlived the lifeline; never a directory whose lock is held. */
	husk_vm_remove_stale(d->state_dir, v->name, NULL);
	free(v->key);
	free(v);
}

static void boot_failed(struct shape *s, const char *why)
{
	s->boot_failures++;
	s->fail_streak++;
	snprintf(s->last_error, sizeof(s->last_error), "%s", why);
	huskd_log("shape %s: boot failed: %s", s->name, why);
}

/* ---- keeper events ---- */

static void on_keeper_exit(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io, (void)fd, (void)events;
	struct pool_vm *v = data;
	struct huskd *d = v->d;
	siginfo_t si = { 0 };
	ev_io_del(v->keeper_io);
	v->keeper_io = NULL;
	if (waitid(P_PIDFD, (id_t)v->keeper_pidfd, &si, WEXITED | WNOHANG) == 0 && si.si_pid) {
		close(v->keeper_pidfd); /* reaped: vm_free has nothing to wait for */
		v->keeper_pidfd = -1;
	}
	if (v->state == PVM_BOOTING) {
		char why[96];
		snprintf(why, sizeof(why), "the keeper %s %d before it reported (its stderr: huskd's)",
			 si.si_code == CLD_EXITED ? "exited with status" : "was killed by signal",
			 si.si_status);
		boot_failed(v->shape, why);
	}
	else if (v->state == PVM_READY) {
		v->shape->vm_deaths++;
		huskd_log("shape %s: ready VM %s ended", v->shape->name, v->name);
	}
	vm_free(d, v);
	pool_refill(d);
}

/* A ready VM's lifeline speaks only when its VMM exited: drop it. */
static void on_lifeline(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io, (void)fd, (void)events;
	struct pool_vm *v = data;
	v->shape->vm_deaths++;
	huskd_log("shape %s: ready VM %s died", v->shape->name, v->name);
	/* Closing the lifeline lets the keeper clean up and exit; its exit
	 * frees the entry. */
	set_state(v->d, v, PVM_ENDING);
	vm_close_fds(v);
	pool_refill(v->d);
}

static void on_report(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io, (void)events;
	struct pool_vm *v = data;
	struct huskd *d = v->d;
	struct shape *s = v->shape;
	_cleanup_free_ char *buf = malloc(HUSKD_MSG_MAX + 1);
	int fds[HUSK_MSG_FDS_MAX];
	size_t n_fds = 0;
	ssize_t n = buf ? husk_msg_recv(fd, buf, HUSKD_MSG_MAX, fds, &n_fds) : -ENOMEM;
	if (n == -EAGAIN)
		return;
	json_object *msg = n > 0 ? (buf[n] = '\0', json_tokener_parse(buf)) : NULL;
	json_object *vmo = NULL, *e = NULL;
	/* Its fds and the lifeline must fit one message to the client. */
	if (msg && json_object_object_get_ex(msg, "vm", &vmo) && n_fds > 0 &&
	    n_fds < HUSK_MSG_FDS_MAX) {
		json_object_put(msg);
		v->msg = take_ptr(buf);
		memcpy(v->fds, fds, n_fds * sizeof(int));
		v->n_fds = n_fds;
		ev_io_del(v->report_io);
		v->report_io = NULL;
		close(v->report_fd);
		v->report_fd = -1;
		set_state(d, v, PVM_READY);
		v->ready_ns = ev_now_ns();
		s->last_boot_ns = v->ready_ns - v->started_ns;
		s->fail_streak = 0;
		ev_io_add(d->loop, v->lifeline_fd, EPOLLIN, on_lifeline, v, &v->lifeline_io, NULL);
		pool_refill(d);
		return;
	}
	for (size_t i = 0; i < n_fds; i++)
		close(fds[i]);
	const char *why = msg && json_object_object_get_ex(msg, "error", &e) ?
				  json_object_get_string(e) :
			  n < 0 ? strerror((int)-n) :
			  n == 0 ? "the keeper closed its report without one" :
				   "a report that is neither a VM (with its fds) nor an error";
	boot_failed(s, why);
	json_object_put(msg);
	/* The keeper exits after its error: its exit frees the entry. */
	set_state(d, v, PVM_ENDING);
	vm_close_fds(v);
	pool_refill(d);
}

/* ---- starting a keeper ---- */

static int pidfd_open_(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

/* In the forked child: only its two sockets, default signals, a process
 * group of its own (a terminal's ^C to huskd must not end VMs handed
 * out). */
static void keeper_main(struct huskd *d, struct shape *s, const char *name, int report,
			int lifeline)
{
	if (dup2(report, 3) < 0 || dup2(lifeline, 4) < 0)
		_exit(1);
	close_range(5, ~0u, 0);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_IGN);
	setpgid(0, 0);
	prctl(PR_SET_NAME, "husk-keeper", 0, 0, 0);
	struct husk_vm_config cfg = s->cfg;
	cfg.name = name;
	cfg.state_dir = d->state_dir;
	struct husk_err err = { 0 };
	int r = husk_pool_keep(&cfg, s->warm_up ? d->warm_image : NULL, 3, 4, &err);
	if (r < 0)
		fprintf(stderr, "huskd: keeper of %s: %s\n", name, err.msg);
	_exit(r < 0 ? 1 : 0);
}

/* The shape's files (kernel, initrd, husk-vsockd) may have been replaced
 * since its last boot: then new VMs are of a new shape, and ready ones of
 * the old are ended (a client with the new files would not take them). */
static int refresh_key(struct huskd *d, struct shape *s)
{
	char key[HUSK_POOL_KEY_MAX];
	struct husk_err err = { 0 };
	if (husk_pool_shape(&s->cfg, key, sizeof(key), NULL, &err) < 0) {
		boot_failed(s, err.msg);
		return err.code;
	}
	if (!strcmp(key, s->key))
		return 0;
	huskd_log("shape %s: its files changed; ready VMs of the old ones end", s->name);
	snprintf(s->key, sizeof(s->key), "%s", key);
	for (struct pool_vm *v = d->vms; v; v = v->next)
		if (v->shape == s && v->state == PVM_READY && strcmp(v->key, key) != 0) {
			set_state(d, v, PVM_ENDING);
			vm_close_fds(v);
		}
	return 0;
}

void pool_refresh_keys(struct huskd *d)
{
	for (struct shape *s = d->shapes; s; s = s->next)
		refresh_key(d, s);
	pool_refill(d);
}

static int start_keeper(struct huskd *d, struct shape *s)
{
	int r = refresh_key(d, s);
	if (r < 0)
		return r;
	struct pool_vm *v = calloc(1, sizeof(*v));
	if (!v || !(v->key = strdup(s->key))) {
		free(v);
		boot_failed(s, "out of memory");
		return -ENOMEM;
	}
	v->d = d;
	v->shape = s;
	v->state = PVM_BOOTING;
	v->report_fd = v->lifeline_fd = v->keeper_pidfd = -1;
	uint32_t rnd = 0;
	(void)!getrandom(&rnd, sizeof(rnd), 0);
	snprintf(v->name, sizeof(v->name), "pool-%08x", rnd);
	int rep[2], life[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, rep) < 0) {
		r = -errno;
		boot_failed(s, "socketpair for a keeper's report");
		free(v->key);
		free(v);
		return r;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, life) < 0) {
		r = -errno;
		boot_failed(s, "socketpair for a keeper's lifeline");
		close(rep[0]);
		close(rep[1]);
		free(v->key);
		free(v);
		return r;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0)
		keeper_main(d, s, v->name, rep[1], life[1]);
	r = pid < 0 ? -errno : 0;
	close(rep[1]);
	close(life[1]);
	v->report_fd = rep[0];
	v->lifeline_fd = life[0];
	v->keeper_pid = pid;
	if (r == 0 && (v->keeper_pidfd = pidfd_open_(pid)) < 0) {
		r = -errno;
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	if (r == 0 && (ev_io_add(d->loop, v->keeper_pidfd, EPOLLIN, on_keeper_exit, v,
				 &v->keeper_io, NULL) < 0 ||
		       ev_io_add(d->loop, v->report_fd, EPOLLIN, on_report, v, &v->report_io,
				 NULL) < 0))
		r = -ENOMEM;
	if (r < 0) {
		ev_io_del(v->keeper_io);
		vm_close_fds(v);
		if (v->keeper_pidfd >= 0) {
			siginfo_t si;
			syscall(SYS_pidfd_send_signal, v->keeper_pidfd, SIGKILL, NULL, 0);
			waitid(P_PIDFD, (id_t)v->keeper_pidfd, &si, WEXITED);
			close(v->keeper_pidfd);
			husk_vm_remove_stale(d->state_dir, v->name, NULL);
		}
		boot_failed(s, "starting a keeper failed");
		free(v->key);
		free(v);
		return r;
	}
	v->started_ns = ev_now_ns();
	v->next = d->vms;
	d->vms = v;
	s->booting++;
	d->booting++;
	return 0;
}

/* ---- refill ---- */

static void retry_done(void *data)
{
	struct shape *s = data;
	s->retry = NULL;
	s->retry_due = true;
	pool_refill(s->d);
}

void pool_refill(struct huskd *d)
{
	if (d->stopping)
		return;
	for (struct shape *s = d->shapes; s; s = s->next) {
		while (s->ready + s->booting < s->ready_target && d->booting < d->boot_parallel &&
		       !s->retry) {
			if (s->fail_streak && !s->retry_due) {
				/* Wait before this retry: 1 s, doubling, at most 60 s. */
				uint64_t ns = RETRY_MIN_NS << (s->fail_streak > 6 ? 6 : s->fail_streak - 1);
				ev_timer_add(d->loop, ns < RETRY_MAX_NS ? ns : RETRY_MAX_NS, retry_done, s,
					     &s->retry);
				break;
			}
			s->retry_due = false;
			start_keeper(d, s); /* a failure counts, and waits */
		}
	}
}

struct pool_vm *pool_find_ready(struct huskd *d, const char *key, unsigned slots,
				bool *shape_found)
{
	*shape_found = false;
	for (struct shape *s = d->shapes; s && !*shape_found; s = s->next)
		*shape_found = !strcmp(s->key, key) && s->slots >= slots;
	struct pool_vm *best = NULL;
	for (struct pool_vm *v = d->vms; v; v = v->next)
		if (v->state == PVM_READY && !strcmp(v->key, key) && v->shape->slots >= slots &&
		    (!best || v->ready_ns < best->ready_ns))
			best = v;
	return best;
}

void pool_handed(struct huskd *d, struct pool_vm *v)
{
	set_state(d, v, PVM_HANDED);
	v->shape->taken++;
	vm_close_fds(v); /* the client holds the lifeline now */
	pool_refill(d);
}

void pool_shutdown(struct huskd *d)
{
	d->stopping = true;
	for (struct shape *s = d->shapes; s; s = s->next) {
		ev_timer_cancel(s->retry);
		s->retry = NULL;
	}
	/* Ready ones: their keepers end them once the lifeline closes.
	 * Booting ones: the keeper, and with it the VM (its processes die with
	 * their parent). Handed-out ones are their clients'. */
	for (struct pool_vm *v = d->vms; v; v = v->next) {
		if (v->state == PVM_HANDED)
			continue;
		if (v->state == PVM_BOOTING)
			syscall(SYS_pidfd_send_signal, v->keeper_pidfd, SIGKILL, NULL, 0);
		vm_close_fds(v);
	}
	uint64_t deadline = ev_now_ns() + SHUTDOWN_WAIT_MS * 1000000ull;
	for (;;) {
		struct pool_vm *left = NULL;
		for (struct pool_vm *v = d->vms; v && !left; v = v->next)
			if (v->state != PVM_HANDED)
				left = v;
		uint64_t now = ev_now_ns();
		if (!left || now >= deadline)
			break;
		struct pollfd p = { .fd = left->keeper_pidfd, .events = POLLIN };
		if (poll(&p, 1, (int)((deadline - now) / 1000000u) + 1) == 1)
			vm_free(d, left);
	}
}
