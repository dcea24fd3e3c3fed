/* Child processes (QEMU, husk-vsockd): fork+exec with an exec-error pipe,
 * a pidfd for event-driven waits, and bounded reaping. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/close_range.h>

#include "husk/cleanup.h"
#include "internal.h"

#ifndef PR_SET_MEMORY_MERGE
#define PR_SET_MEMORY_MERGE 67
#endif

static int pidfd_open_(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

/* What the child failed at, reported with errno before exec. */
enum spawn_step { STEP_EXEC, STEP_STDIO, STEP_KEEP_FDS, STEP_NO_THP, STEP_MERGE };

static const char *const step_what[] = {
	[STEP_EXEC] = "exec",
	[STEP_STDIO] = "set up stdio",
	[STEP_KEEP_FDS] = "pass its descriptors",
	[STEP_NO_THP] = "prctl(PR_SET_THP_DISABLE)",
	[STEP_MERGE] = "prctl(PR_SET_MEMORY_MERGE) for merge_memory (needs a kernel with KSM)",
};

struct spawn_report {
	int step, err;
};

/* In the child: only async-signal-safe calls until exec. */
static void child(const struct husk_spawn *s, pid_t parent, int report)
{
	enum spawn_step step = STEP_NO_THP;
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			signal(sig, SIG_DFL);
	if (s->die_with_parent) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
	}
	if (s->no_thp && prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) < 0)
		goto fail;
	step = STEP_MERGE;
	if (s->merge_memory && prctl(PR_SET_MEMORY_MERGE, 1, 0, 0, 0) < 0)
		goto fail;
	step = STEP_STDIO;
	/* Our own process group: a terminal's ^C goes to the caller, which
	 * then stops the VM in order. */
	setpgid(0, 0);
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	int fds[3] = { s->stdin_fd, s->stdout_fd, s->stderr_fd };
	for (int i = 0; i < 3; i++) {
		int src = fds[i] >= 0 ? fds[i] : null;
		if (src < 0 || dup2(src, i) < 0)
			goto fail;
		if (src == i)
			fcntl(i, F_SETFD, 0);
	}
	close_range(3, ~0u, CLOSE_RANGE_CLOEXEC);
	step = STEP_KEEP_FDS;
	for (size_t i = 0; i < s->n_keep; i++)
		if (fcntl(s->keep_fds[i], F_SETFD, 0) < 0)
			goto fail;
	step = STEP_EXEC;
	execvp(s->argv[0], (char *const *)s->argv);
fail:;
	struct spawn_report r = { step, errno };
	(void)!write(report, &r, sizeof(r));
	_exit(127);
}

int husk_spawn(const struct husk_spawn *s, pid_t *pid_out, int *pidfd_out, struct husk_err *err)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return husk_err_sys(err, -errno, "pipe for %s", s->argv[0]);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		int r = -errno;
		close(p[0]);
		close(p[1]);
		return husk_err_sys(err, r, "fork for %s", s->argv[0]);
	}
	if (pid == 0)
		child(s, parent, p[1]);
	close(p[1]);
	struct spawn_report rep;
	ssize_t n;
	do
		n = read(p[0], &rep, sizeof(rep));
	while (n < 0 && errno == EINTR);
	close(p[0]);
	if (n == sizeof(rep)) {
		waitpid(pid, NULL, 0);
		if (rep.step == STEP_EXEC)
			return husk_err_sys(err, -rep.err, "exec %s", s->argv[0]);
		return husk_err_sys(err, -rep.err, "%s: %s", s->argv[0],
				    (unsigned)rep.step < ARRAY_SIZE(step_what) ? step_what[rep.step]
									       : "set-up before exec");
	}
	int pidfd = pidfd_open_(pid);
	if (pidfd < 0) {
		int r = -errno;
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return husk_err_sys(err, r, "pidfd_open for %s", s->argv[0]);
	}
	*pid_out = pid;
	*pidfd_out = pidfd;
	return 0;
}

int husk_reap(pid_t pid, int pidfd, unsigned timeout_ms, int *status)
{
	struct pollfd p = { .fd = pidfd, .events = POLLIN };
	uint64_t deadline = husk_monotonic_ns() + (uint64_t)timeout_ms * 1000000u;
	for (;;) {
		uint64_t now = husk_monotonic_ns();
		int left = now >= deadline ? 0 : (int)((deadline - now) / 1000000u);
		int r = poll(&p, 1, left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 1)
			break;
		if (left == 0 || r == 0)
			return -ETIMEDOUT;
	}
	/* By pidfd: a pid another process reaped may be reused by one of
	 * ours. */
	siginfo_t si = { 0 };
	while (waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED) < 0)
		if (errno != EINTR)
			return -errno;
	(void)pid;
	if (status)
		*status = si.si_code == CLD_EXITED ? W_EXITCODE(si.si_status, 0) :
						     W_EXITCODE(0, si.si_status);
	return 0;
}

int husk_pidfd_signal(int pidfd, int sig)
{
	return syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) < 0 ? -errno : 0;
}

void husk_end_child(pid_t *pid, int *pidfd, unsigned term_ms, int *status)
{
	if (*pid <= 0)
		return;
	int st = 0;
	if (term_ms) {
		husk_pidfd_signal(*pidfd, SIGTERM);
		int r = husk_reap(*pid, *pidfd, term_ms, &st);
		if (r == 0 || r == -ECHILD)
			goto done;
	}
	husk_pidfd_signal(*pidfd, SIGKILL);
	husk_reap(*pid, *pidfd, 10000, &st);
done:
	if (status)
		*status = st;
	*pid = 0;
	close(*pidfd);
	*pidfd = -1;
}
