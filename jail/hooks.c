#include "jail/hooks.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "husk/cleanup.h"
#include "husk/file.h"
#include "internal.h"

static int pidfd_open_compat(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

/* Waits for `pid`, killing it when `timeout_s` (> 0) expires first. */
static int wait_hook(pid_t pid, int timeout_s, int *status, bool *timed_out)
{
	*timed_out = false;
	if (timeout_s > 0) {
		_cleanup_fd_ int pfd = pidfd_open_compat(pid);
		if (pfd >= 0) {
			struct pollfd p = { .fd = pfd, .events = POLLIN };
			int r;
			do
				r = poll(&p, 1, timeout_s * 1000);
			while (r < 0 && errno == EINTR);
			if (r == 0) {
				*timed_out = true;
				kill(pid, SIGKILL);
			}
		}
	}
	while (waitpid(pid, status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return 0;
}

/* A hook may exit without reading its stdin. A library must not change the
 * process's SIGPIPE disposition, so block it around the write and discard
 * one that became pending. */
static void write_state(int fd, const char *state)
{
	sigset_t pipe_set, old;
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
	/* EPIPE: the hook did not want it. */
	(void)husk_write_all(fd, state, strlen(state));
	if (!sigismember(&old, SIGPIPE)) {
		struct timespec zero = { 0 };
		while (sigtimedwait(&pipe_set, NULL, &zero) > 0)
			;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static int run_one(const char *stage, size_t i, const struct jail_hook *h, const char *state,
		   struct husk_err *err)
{
	int in[2];
	if (pipe2(in, O_CLOEXEC) < 0)
		return husk_err_sys(err, -errno, "hooks.%s[%zu] %s: pipe", stage, i, h->path);
	pid_t pid = fork();
	if (pid < 0) {
		int r = -errno;
		close(in[0]);
		close(in[1]);
		return husk_err_sys(err, r, "hooks.%s[%zu] %s: fork", stage, i, h->path);
	}
	if (pid == 0) {
		jail_reset_signals();
		dup2(in[0], 0);
		char *const default_argv[] = { (char *)h->path, NULL };
		char *const empty_env[] = { NULL };
		execve(h->path, h->args && h->args[0] ? h->args : default_argv,
		       h->env ? h->env : empty_env);
		fprintf(stderr, "hooks.%s[%zu] %s: exec: %s\n", stage, i, h->path, strerror(errno));
		_exit(127);
	}
	close(in[0]);
	write_state(in[1], state);
	close(in[1]);
	int status;
	bool timed_out;
	int r = wait_hook(pid, h->has_timeout ? h->timeout : 0, &status, &timed_out);
	if (r < 0)
		return husk_err_sys(err, r, "hooks.%s[%zu] %s: wait", stage, i, h->path);
	if (timed_out)
		return husk_err_set(err, -ETIMEDOUT, "hooks.%s[%zu] %s: timed out after %d s", stage,
				    i, h->path, h->timeout);
	if (WIFSIGNALED(status))
		return husk_err_set(err, -ECANCELED, "hooks.%s[%zu] %s: killed by signal %d", stage,
				    i, h->path, WTERMSIG(status));
	if (WEXITSTATUS(status) != 0)
		return husk_err_set(err, -ECANCELED, "hooks.%s[%zu] %s: exited with status %d",
				    stage, i, h->path, WEXITSTATUS(status));
	return 0;
}

int jail_hooks_run(const char *stage, const struct jail_hook *hooks, size_t n,
		   const char *state_json, struct husk_err *err)
{
	for (size_t i = 0; i < n; i++) {
		int r = run_one(stage, i, &hooks[i], state_json, err);
		if (r < 0)
			return r;
	}
	return 0;
}
