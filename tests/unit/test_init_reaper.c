/* Unit tests for the SIGCHLD owner (init/reaper.h), with a real event loop
 * and real children: watch before and after the exit, exits in any order,
 * signals, orphans reparented to us as subreaper, the bounded table of
 * unclaimed exits, pid reuse, unwatch, and freeing from a callback. Runs
 * under ASan/UBSan. */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "init/reaper.h"
#include "ttrpc/loop.h"

/* Each wait for the loop gives up after this many 100 ms rounds: a guard
 * against hanging, not a timing assertion. */
#define MAX_ROUNDS 600

struct fx {
	struct ev_loop *loop;
	struct init_reaper *r;
};

struct got {
	pid_t pid;
	int status;
	int calls;
};

static void record(pid_t pid, int status, void *data)
{
	struct got *g = data;
	g->pid = pid;
	g->status = status;
	g->calls++;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	struct husk_err err = { 0 };
	assert_int_equal(ev_loop_new(&f->loop, &err), 0);
	assert_int_equal(init_reaper_new(f->loop, &f->r, &err), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	init_reaper_free(f->r);
	ev_loop_free(f->loop);
	free(f);
	/* A failed test may leave children: collect them here. */
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	return 0;
}

/* ---- children --------------------------------------------------------------- */

static pid_t spawn_exit(int code)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(code);
	return pid;
}

/* A child that exits with `code` once *gate is written to or closed. */
static pid_t spawn_gated(int code, int *gate)
{
	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char c;
		close(p[1]);
		while (read(p[0], &c, 1) < 0 && errno == EINTR)
			;
		_exit(code);
	}
	close(p[0]);
	*gate = p[1];
	return pid;
}

static void open_gate(int *gate)
{
	close(*gate);
	*gate = -1;
}

/* Blocks until `pid` has exited, without reaping it. */
static void wait_zombie(pid_t pid)
{
	siginfo_t si;
	while (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT) < 0)
		assert_int_equal(errno, EINTR);
}

/* True once `pid` is no longer our child: the reaper has reaped it. */
static bool reaped(pid_t pid)
{
	siginfo_t si;
	return waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0 && errno == ECHILD;
}

static void run_until_reaped(struct fx *f, pid_t pid)
{
	for (int i = 0; i < MAX_ROUNDS && !reaped(pid); i++)
		assert_true(ev_run_once(f->loop, 100) >= 0);
	assert_true(reaped(pid));
}

static void run_until_calls(struct fx *f, const int *calls, int want)
{
	for (int i = 0; i < MAX_ROUNDS && *calls < want; i++)
		assert_true(ev_run_once(f->loop, 100) >= 0);
	assert_int_equal(*calls, want);
}

/* ---- tests -------------------------------------------------------------------- */

static void test_watch_then_exit(void **state)
{
	struct fx *f = *state;
	int gate;
	struct got g = { 0 };
	pid_t pid = spawn_gated(7, &gate);
	assert_int_equal(init_reaper_watch(f->r, pid, record, &g), 0);
	assert_int_equal(ev_run_once(f->loop, 0) >= 0, 1);
	assert_int_equal(g.calls, 0); /* still running */
	open_gate(&gate);
	run_until_calls(f, &g.calls, 1);
	assert_int_equal(g.pid, pid);
	assert_true(WIFEXITED(g.status));
	assert_int_equal(WEXITSTATUS(g.status), 7);
	assert_int_equal(init_exit_code(g.status), 7);
	/* Delivered once: more loop rounds bring nothing. */
	ev_run_once(f->loop, 10);
	assert_int_equal(g.calls, 1);
	struct init_reaper_stats st;
	init_reaper_stats(f->r, &st);
	assert_int_equal(st.watched, 0);
	assert_int_equal(st.unclaimed, 0);
}

static void test_exit_and_reaped_before_watch(void **state)
{
	struct fx *f = *state;
	struct got g = { 0 };
	pid_t pid = spawn_exit(9);
	wait_zombie(pid);
	run_until_reaped(f, pid);
	struct init_reaper_stats st;
	init_reaper_stats(f->r, &st);
	assert_int_equal(st.unclaimed, 1);

	/* The race fork/exit/watch: the status is kept for the late watch,
	 * and delivered from the loop, not from inside the watch call. */
	assert_int_equal(init_reaper_watch(f->r, pid, record, &g), 0);
	assert_int_equal(g.calls, 0);
	run_until_calls(f, &g.calls, 1);
	assert_int_equal(g.pid, pid);
	assert_int_equal(WEXITSTATUS(g.status), 9);
	init_reaper_stats(f->r, &st);
	assert_int_equal(st.unclaimed, 0);
	/* Claimed: a second watch has nothing left to find. */
	assert_int_equal(init_reaper_watch(f->r, pid, record, &g), -ECHILD);
}

static void test_exit_before_watch_not_yet_reaped(void **state)
{
	struct fx *f = *state;
	struct got g = { 0 };
	pid_t pid = spawn_exit(3);
	wait_zombie(pid); /* a zombie: the loop has not run */
	assert_int_equal(init_reaper_watch(f->r, pid, record, &g), 0);
	run_until_calls(f, &g.calls, 1);
	assert_int_equal(WEXITSTATUS(g.status), 3);
}

static void test_signals_and_codes(void **state)
{
	struct fx *f = *state;
	static const struct {
		int sig, code, want;
	} cases[] = {
		{ SIGKILL, 0, 137 }, { SIGTERM, 0, 143 }, { 0, 0, 0 }, { 0, 255, 255 }, { 0, 1, 1 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int gate;
		struct got g = { 0 };
		pid_t pid = spawn_gated(cases[i].code, &gate);
		assert_int_equal(init_reaper_watch(f->r, pid, record, &g), 0);
		if (cases[i].sig)
			assert_int_equal(kill(pid, cases[i].sig), 0);
		else
			open_gate(&gate);
		run_until_calls(f, &g.calls, 1);
		if (cases[i].sig) {
			assert_true(WIFSIGNALED(g.status));
			assert_int_equal(WTERMSIG(g.status), cases[i].sig);
			close(gate);
		} else {
			assert_true(WIFEXITED(g.status));
		}
		assert_int_equal(init_exit_code(g.status), cases[i].want);
	}
}

#define MANY 120

static void test_many_children_any_order(void **state)
{
	struct fx *f = *state;
	static struct got g[MANY];
	static pid_t pids[MANY];
	static int gates[MANY];
	memset(g, 0, sizeof(g));
	for (int i = 0; i < MANY; i++) {
		pids[i] = spawn_gated(i % 200, &gates[i]);
		if (i % 2 == 0) /* half watched up front */
			assert_int_equal(init_reaper_watch(f->r, pids[i], record, &g[i]), 0);
	}
	/* Let them go in a scrambled order (37 is prime to MANY's factors... it
	 * only needs to visit every index once), with loop rounds between. */
	for (int k = 0; k < MANY; k++) {
		int i = (k * 37 + 11) % MANY;
		open_gate(&gates[i]);
		if (k % 10 == 0)
			ev_run_once(f->loop, 0);
	}
	for (int i = 0; i < MANY; i++)
		run_until_reaped(f, pids[i]);
	/* The other half is watched after everything was reaped. */
	for (int i = 1; i < MANY; i += 2)
		assert_int_equal(init_reaper_watch(f->r, pids[i], record, &g[i]), 0);
	int total = 0;
	for (int round = 0; round < MAX_ROUNDS && total < MANY; round++) {
		ev_run_once(f->loop, 100);
		total = 0;
		for (int i = 0; i < MANY; i++)
			total += g[i].calls;
	}
	for (int i = 0; i < MANY; i++) {
		assert_int_equal(g[i].calls, 1);
		assert_int_equal(g[i].pid, pids[i]);
		assert_int_equal(WEXITSTATUS(g[i].status), i % 200);
	}
	struct init_reaper_stats st;
	init_reaper_stats(f->r, &st);
	assert_int_equal(st.watched, 0);
	assert_int_equal(st.unclaimed, 0);
	assert_true(st.delivered >= MANY);
}

static pid_t parent_of(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	const char *p = strrchr(buf, ')'); /* comm may hold anything */
	int ppid = -1;
	char st;
	if (!p || sscanf(p + 1, " %c %d", &st, &ppid) != 2)
		return -1;
	return ppid;
}

static void test_orphans_come_to_us(void **state)
{
	struct fx *f = *state;
	int pp[2], gate[2];
	assert_int_equal(pipe2(pp, O_CLOEXEC), 0);
	assert_int_equal(pipe2(gate, O_CLOEXEC), 0);
	pid_t mid = fork();
	assert_true(mid >= 0);
	if (mid == 0) {
		pid_t gc = fork();
		if (gc == 0) {
			char c;
			close(gate[1]);
			while (read(gate[0], &c, 1) < 0 && errno == EINTR)
				;
			_exit(42);
		}
		if (write(pp[1], &gc, sizeof(gc)) != sizeof(gc))
			_exit(2);
		_exit(0); /* orphans gc */
	}
	close(pp[1]);
	close(gate[0]);
	pid_t gc = 0;
	assert_int_equal(read(pp[0], &gc, sizeof(gc)), sizeof(gc));
	close(pp[0]);

	struct got gm = { 0 };
	assert_int_equal(init_reaper_watch(f->r, mid, record, &gm), 0);
	run_until_calls(f, &gm.calls, 1);
	assert_int_equal(WEXITSTATUS(gm.status), 0);

	/* We are a child subreaper: the grandchild is ours now. */
	pid_t ppid = -1;
	for (int i = 0; i < MAX_ROUNDS && (ppid = parent_of(gc)) != getpid(); i++)
		ev_run_once(f->loop, 10);
	assert_int_equal(ppid, getpid());

	struct init_reaper_stats before, after;
	init_reaper_stats(f->r, &before);
	close(gate[1]);
	run_until_reaped(f, gc);
	init_reaper_stats(f->r, &after);
	assert_int_equal(after.unclaimed, before.unclaimed + 1);
	assert_int_equal(after.reaped, before.reaped + 1);

	/* Nobody watched it, yet its status is there for a late claim. */
	struct got gg = { 0 };
	assert_int_equal(init_reaper_watch(f->r, gc, record, &gg), 0);
	run_until_calls(f, &gg.calls, 1);
	assert_int_equal(WEXITSTATUS(gg.status), 42);
}

static void test_unclaimed_table_is_bounded(void **state)
{
	struct fx *f = *state;
	enum { EXTRA = 10, N = INIT_REAPER_UNCLAIMED + EXTRA };
	static pid_t pids[N];
	for (int i = 0; i < N; i++) {
		pids[i] = spawn_exit(i & 0x7f);
		if (i % 16 == 15) /* keep the number of zombies modest */
			for (int j = i - 15; j <= i; j++)
				run_until_reaped(f, pids[j]);
	}
	for (int i = 0; i < N; i++)
		run_until_reaped(f, pids[i]);
	struct init_reaper_stats st;
	init_reaper_stats(f->r, &st);
	assert_int_equal(st.unclaimed, INIT_REAPER_UNCLAIMED);
	assert_int_equal(st.dropped, EXTRA);

	/* The oldest were forgotten; the newest are still claimable. waitpid
	 * reaps a batch of zombies in no set order, so count within the first
	 * batch instead of naming which pids went. */
	static struct got g[16];
	int forgotten = 0, kept = 0;
	for (int i = 0; i < 16; i++) {
		memset(&g[i], 0, sizeof(g[i]));
		int r = init_reaper_watch(f->r, pids[i], record, &g[i]);
		assert_true(r == 0 || r == -ECHILD);
		if (r == -ECHILD) {
			forgotten++;
		} else {
			run_until_calls(f, &g[i].calls, 1);
			assert_int_equal(WEXITSTATUS(g[i].status), i & 0x7f);
			kept++;
		}
	}
	assert_int_equal(forgotten, EXTRA);
	assert_int_equal(kept, 16 - EXTRA);
	struct got last = { 0 };
	assert_int_equal(init_reaper_watch(f->r, pids[N - 1], record, &last), 0);
	run_until_calls(f, &last.calls, 1);
	assert_int_equal(WEXITSTATUS(last.status), (N - 1) & 0x7f);
}

/* A new child that gets the number of an unclaimed, reaped one (clone3 with
 * set_tid picks the pid; needs CAP_SYS_ADMIN): watching it must wait for
 * the new process, not hand out the old exit. */
static void test_pid_reuse_is_not_confused(void **state)
{
	struct fx *f = *state;
	pid_t old = spawn_exit(11);
	wait_zombie(old);
	run_until_reaped(f, old);

	int gate[2];
	assert_int_equal(pipe2(gate, O_CLOEXEC), 0);
	pid_t tid = old;
	struct clone_args args;
	memset(&args, 0, sizeof(args));
	args.exit_signal = SIGCHLD;
	args.set_tid = (uint64_t)(uintptr_t)&tid;
	args.set_tid_size = 1;
	long pid = syscall(SYS_clone3, &args, sizeof(args));
	if (pid == 0) {
		char c;
		close(gate[1]);
		while (read(gate[0], &c, 1) < 0 && errno == EINTR)
			;
		_exit(22);
	}
	close(gate[0]);
	if (pid < 0) {
		int e = errno;
		close(gate[1]);
		/* Not root, old kernel, or the number was taken meanwhile. */
		if (e == EPERM || e == ENOSYS || e == EEXIST || e == E2BIG || e == EINVAL) {
			struct got g = { 0 };
			assert_int_equal(init_reaper_watch(f->r, old, record, &g), 0);
			run_until_calls(f, &g.calls, 1);
			skip();
		}
		fail_msg("clone3: %s", strerror(e));
	}
	assert_int_equal(pid, old);

	struct got g = { 0 };
	assert_int_equal(init_reaper_watch(f->r, old, record, &g), 0);
	for (int i = 0; i < 5; i++)
		ev_run_once(f->loop, 10);
	assert_int_equal(g.calls, 0); /* the new process is still running */
	struct init_reaper_stats st;
	init_reaper_stats(f->r, &st);
	assert_int_equal(st.unclaimed, 0); /* the stale entry is gone */
	close(gate[1]);
	run_until_calls(f, &g.calls, 1);
	assert_int_equal(WEXITSTATUS(g.status), 22);
}

static void test_unwatch(void **state)
{
	struct fx *f = *state;
	int gate;
	struct got g = { 0 };
	pid_t pid = spawn_gated(5, &gate);
	assert_int_equal(init_reaper_watch(f->r, pid, record, &g), 0);
	assert_int_equal(init_reaper_unwatch(f->r, pid), 0);
	assert_int_equal(init_reaper_unwatch(f->r, pid), -ENOENT);
	open_gate(&gate);
	run_until_reaped(f, pid);
	ev_run_once(f->loop, 0);
	assert_int_equal(g.calls, 0);
	/* Unwatched exits are kept like any other. */
	assert_int_equal(init_reaper_watch(f->r, pid, record, &g), 0);
	/* Unwatching a claimed, undelivered exit puts it back. */
	assert_int_equal(init_reaper_unwatch(f->r, pid), 0);
	ev_run_once(f->loop, 0);
	assert_int_equal(g.calls, 0);
	assert_int_equal(init_reaper_watch(f->r, pid, record, &g), 0);
	run_until_calls(f, &g.calls, 1);
	assert_int_equal(WEXITSTATUS(g.status), 5);
}

static void test_errors(void **state)
{
	struct fx *f = *state;
	struct got g = { 0 };
	assert_int_equal(init_reaper_watch(f->r, 0, record, &g), -EINVAL);
	assert_int_equal(init_reaper_watch(f->r, -5, record, &g), -EINVAL);
	assert_int_equal(init_reaper_watch(f->r, getppid(), record, &g), -ECHILD);
	assert_int_equal(init_reaper_watch(f->r, getpid(), record, &g), -ECHILD);
	int gate;
	pid_t pid = spawn_gated(0, &gate);
	assert_int_equal(init_reaper_watch(f->r, pid, NULL, &g), -EINVAL);
	assert_int_equal(init_reaper_watch(f->r, pid, record, &g), 0);
	assert_int_equal(init_reaper_watch(f->r, pid, record, &g), -EEXIST);
	open_gate(&gate);
	run_until_calls(f, &g.calls, 1);
}

/* ---- callbacks that change the reaper -------------------------------------- */

struct chain {
	struct init_reaper *r;
	pid_t next;
	struct got next_got;
	int calls;
	bool free_it;
	struct fx *f;
};

static void on_chain(pid_t pid, int status, void *data)
{
	(void)pid, (void)status;
	struct chain *c = data;
	c->calls++;
	if (c->next)
		assert_int_equal(init_reaper_watch(c->r, c->next, record, &c->next_got), 0);
	if (c->free_it) {
		init_reaper_free(c->r);
		c->f->r = NULL;
	}
}

static void test_watch_from_callback(void **state)
{
	struct fx *f = *state;
	pid_t late = spawn_exit(4);
	wait_zombie(late);
	run_until_reaped(f, late); /* unclaimed */
	int gate;
	struct chain c = { .r = f->r, .next = late };
	pid_t pid = spawn_gated(0, &gate);
	assert_int_equal(init_reaper_watch(f->r, pid, on_chain, &c), 0);
	open_gate(&gate);
	run_until_calls(f, &c.next_got.calls, 1);
	assert_int_equal(c.calls, 1);
	assert_int_equal(WEXITSTATUS(c.next_got.status), 4);
}

static void test_free_from_callback(void **state)
{
	struct fx *f = *state;
	/* Two exits in the same round: the second is not touched after the
	 * first callback frees the reaper. */
	int g1, g2;
	struct chain c = { .r = f->r, .free_it = true, .f = f };
	struct got other = { 0 };
	pid_t a = spawn_gated(0, &g1);
	pid_t b = spawn_gated(0, &g2);
	assert_int_equal(init_reaper_watch(f->r, a, on_chain, &c), 0);
	assert_int_equal(init_reaper_watch(f->r, b, record, &other), 0);
	open_gate(&g1);
	open_gate(&g2);
	wait_zombie(a);
	wait_zombie(b);
	run_until_calls(f, &c.calls, 1);
	assert_null(f->r);
	for (int i = 0; i < 3; i++)
		ev_run_once(f->loop, 0);
	assert_true(other.calls <= 1); /* b may or may not have come first */
	if (other.calls == 0)
		assert_int_equal(waitpid(b, NULL, 0), b);
	/* The signal state is back: SIGCHLD is not blocked any more. */
	sigset_t cur;
	assert_int_equal(sigprocmask(SIG_BLOCK, NULL, &cur), 0);
	assert_false(sigismember(&cur, SIGCHLD));
}

static void test_free_with_delivery_queued(void **state)
{
	struct fx *f = *state;
	struct got g = { 0 };
	pid_t pid = spawn_exit(1);
	wait_zombie(pid);
	run_until_reaped(f, pid);
	assert_int_equal(init_reaper_watch(f->r, pid, record, &g), 0); /* deferred */
	init_reaper_free(f->r);
	f->r = NULL;
	/* The queued deferred callback still runs, finds no reaper, and frees
	 * its node (ASan reports a leak or a use after free otherwise). */
	ev_run_once(f->loop, 0);
	assert_int_equal(g.calls, 0);
}

static void test_children_before_the_reaper(void **state)
{
	struct fx *f = *state;
	init_reaper_free(f->r);
	f->r = NULL;
	/* Exits while nobody blocks SIGCHLD: no signal will ever say so. */
	pid_t pid = spawn_exit(6);
	wait_zombie(pid);
	struct husk_err err = { 0 };
	assert_int_equal(init_reaper_new(f->loop, &f->r, &err), 0);
	run_until_reaped(f, pid); /* the first sweep */
	struct got g = { 0 };
	assert_int_equal(init_reaper_watch(f->r, pid, record, &g), 0);
	run_until_calls(f, &g.calls, 1);
	assert_int_equal(WEXITSTATUS(g.status), 6);
}

static void test_signal_state(void **state)
{
	struct fx *f = *state;
	init_reaper_free(f->r);
	f->r = NULL;
	sigset_t cur;
	int sub = -1;
	assert_int_equal(sigprocmask(SIG_BLOCK, NULL, &cur), 0);
	assert_false(sigismember(&cur, SIGCHLD));
	assert_int_equal(prctl(PR_GET_CHILD_SUBREAPER, &sub, 0, 0, 0), 0);
	assert_int_equal(sub, 0);
	/* SIG_IGN would make the kernel discard exits: the reaper undoes it. */
	struct sigaction ign = { .sa_handler = SIG_IGN }, old;
	assert_int_equal(sigaction(SIGCHLD, &ign, &old), 0);

	struct husk_err err = { 0 };
	assert_int_equal(init_reaper_new(f->loop, &f->r, &err), 0);
	assert_int_equal(sigprocmask(SIG_BLOCK, NULL, &cur), 0);
	assert_true(sigismember(&cur, SIGCHLD));
	assert_int_equal(prctl(PR_GET_CHILD_SUBREAPER, &sub, 0, 0, 0), 0);
	assert_int_equal(sub, 1);
	struct got g = { 0 };
	pid_t pid = spawn_exit(8);
	assert_int_equal(init_reaper_watch(f->r, pid, record, &g), 0);
	run_until_calls(f, &g.calls, 1);
	assert_int_equal(WEXITSTATUS(g.status), 8);

	init_reaper_free(f->r);
	f->r = NULL;
	assert_int_equal(sigprocmask(SIG_BLOCK, NULL, &cur), 0);
	assert_false(sigismember(&cur, SIGCHLD));
	assert_int_equal(prctl(PR_GET_CHILD_SUBREAPER, &sub, 0, 0, 0), 0);
	assert_int_equal(sub, 0);
	struct sigaction now;
	assert_int_equal(sigaction(SIGCHLD, &old, &now), 0);
	assert_ptr_equal(now.sa_handler, SIG_IGN); /* restored as it was */
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_watch_then_exit),
		T(test_exit_and_reaped_before_watch),
		T(test_exit_before_watch_not_yet_reaped),
		T(test_signals_and_codes),
		T(test_many_children_any_order),
		T(test_orphans_come_to_us),
		T(test_unclaimed_table_is_bounded),
		T(test_pid_reuse_is_not_confused),
		T(test_unwatch),
		T(test_errors),
		T(test_watch_from_callback),
		T(test_free_from_callback),
		T(test_free_with_delivery_queued),
		T(test_children_before_the_reaper),
		T(test_signal_state),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
