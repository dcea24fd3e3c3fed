/* binary:// loggers, as containerd-shim-runc-v2 runs them. A logger gets
 * the process's stdout and stderr as the read ends of two pipes on fd 3 and
 * 4, and a pipe on fd 5 that it closes (or writes to) once it is ready; its
 * environment is CONTAINER_ID and CONTAINER_NAMESPACE only, its cwd the
 * bundle, stdin/stdout/stderr /dev/null. When the process is deleted the
 * logger gets SIGTERM, and SIGKILL 12 s later if it is still there. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "husk/cleanup.h"
#include "io.h"

/* containerd's binaryIOProcTermTimeout */
#define LOGGER_TERM_NS (12ull * 1000000000ull)

struct logger {
	struct ev_loop *loop;
	pid_t pid;
	int pidfd, ready_fd;
	int out_w, err_w; /* our ends until a relay takes them */
	struct ev_io *pid_io, *ready_io;
	struct ev_timer *kill_timer;
	bool ready, exited;
	void (*on_ready)(void *data);
	void *ready_data;
	void (*on_exit)(void *data);
	void *exit_data;
};

static void logger_reap(struct logger *l)
{
	siginfo_t si = { 0 };
	if (waitid(P_PIDFD, (id_t)l->pidfd, &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0)
		return;
	l->exited = true;
	ev_io_del(l->pid_io);
	l->pid_io = NULL;
	if (l->kill_timer) {
		ev_timer_cancel(l->kill_timer);
		l->kill_timer = NULL;
	}
	if (l->on_exit) {
		void (*fn)(void *) = l->on_exit;
		l->on_exit = NULL;
		fn(l->exit_data);
	}
}

static void on_logger_exit(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io, (void)fd, (void)events;
	logger_reap(data);
}

static void on_logger_ready(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io, (void)events;
	struct logger *l = data;
	char c;
	ssize_t n = read(fd, &c, 1);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	/* A byte, EOF or an error: containerd takes any of them as ready. */
	ev_io_del(l->ready_io);
	l->ready_io = NULL;
	close(l->ready_fd);
	l->ready_fd = -1;
	l->ready = true;
	if (l->on_ready) {
		void (*fn)(void *) = l->on_ready;
		l->on_ready = NULL;
		fn(l->ready_data);
	}
}

/* A pipe whose child end is above fd 5, so dup2 onto 3-5 never overwrites
 * another of the child's sources. */
static int pipe_high(int p[2])
{
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	for (int i = 0; i < 2; i++) {
		if (p[i] > 5)
			continue;
		int hi = fcntl(p[i], F_DUPFD_CLOEXEC, 6);
		if (hi < 0) {
			int e = -errno;
			close(p[0]);
			close(p[1]);
			return e;
		}
		close(p[i]);
		p[i] = hi;
	}
	return 0;
}

int logger_start(struct ev_loop *loop, const struct stdio_uri *u, const char *ns, const char *id,
		 const char *cwd, struct logger **out, struct husk_err *err)
{
	struct logger *l = calloc(1, sizeof(*l));
	if (!l)
		return husk_err_set(err, -ENOMEM, "logger %s", u->path);
	*l = (struct logger){ .loop = loop, .pid = -1, .pidfd = -1, .ready_fd = -1, .out_w = -1,
			      .err_w = -1 };
	int po[2] = { -1, -1 }, pe[2] = { -1, -1 }, pw[2] = { -1, -1 };
	int rc;
	if ((rc = pipe_high(po)) < 0 || (rc = pipe_high(pe)) < 0 || (rc = pipe_high(pw)) < 0) {
		husk_err_sys(err, rc, "logger %s: pipe", u->path);
		goto fail;
	}
	char *env_id = NULL, *env_ns = NULL;
	if (asprintf(&env_id, "CONTAINER_ID=%s", id) < 0)
		env_id = NULL;
	if (asprintf(&env_ns, "CONTAINER_NAMESPACE=%s", ns) < 0)
		env_ns = NULL;
	char **argv = calloc(u->n_args + 2, sizeof(*argv));
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	if (!env_id || !env_ns || !argv) {
		rc = husk_err_set(err, -ENOMEM, "logger %s", u->path);
	} else {
		argv[0] = u->path;
		for (size_t i = 0; i < u->n_args; i++)
			argv[i + 1] = u->args[i];
		char *envp[] = { env_id, env_ns, NULL };
		/* The shim blocks SIGTERM (signalfd) and ignores SIGPIPE: the
		 * logger gets neither. */
		sigset_t none, def;
		sigemptyset(&none);
		sigemptyset(&def);
		sigaddset(&def, SIGPIPE);
		sigaddset(&def, SIGTERM);
		sigaddset(&def, SIGINT);
		posix_spawnattr_setsigmask(&attr, &none);
		posix_spawnattr_setsigdefault(&attr, &def);
		posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
		posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
		posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
		posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
		posix_spawn_file_actions_adddup2(&fa, po[0], 3);
		posix_spawn_file_actions_adddup2(&fa, pe[0], 4);
		posix_spawn_file_actions_adddup2(&fa, pw[1], 5);
		if (cwd)
			posix_spawn_file_actions_addchdir_np(&fa, cwd);
		int e = posix_spawn(&l->pid, u->path, &fa, &attr, argv, envp);
		rc = e ? husk_err_set(err, -e, "starting logger %s: %s", u->path, strerror(e)) : 0;
	}
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	free(argv);
	free(env_id);
	free(env_ns);
	if (rc < 0)
		goto fail;
	close(po[0]);
	close(pe[0]);
	close(pw[1]);
	po[0] = pe[0] = pw[1] = -1;
	l->out_w = po[1];
	l->err_w = pe[1];
	l->ready_fd = pw[0];
	l->pidfd = pidfd_open(l->pid, 0);
	if (l->pidfd < 0) {
		rc = husk_err_sys(err, -errno, "logger %s: pidfd_open", u->path);
		kill(l->pid, SIGKILL);
		waitpid(l->pid, NULL, 0);
		l->pid = -1;
		goto fail_fds;
	}
	rc = ev_io_add(loop, l->pidfd, EPOLLIN, on_logger_exit, l, &l->pid_io, err);
	if (rc == 0)
		rc = ev_io_add(loop, l->ready_fd, EPOLLIN, on_logger_ready, l, &l->ready_io, err);
	if (rc < 0) {
		logger_free(l);
		return rc;
	}
	*out = l;
	return 0;
fail:
	for (int i = 0; i < 2; i++) {
		if (po[i] >= 0)
			close(po[i]);
		if (pe[i] >= 0)
			close(pe[i]);
		if (pw[i] >= 0)
			close(pw[i]);
	}
fail_fds:
	if (l->out_w >= 0)
		close(l->out_w);
	if (l->err_w >= 0)
		close(l->err_w);
	if (l->ready_fd >= 0)
		close(l->ready_fd);
	free(l);
	return rc;
}

int logger_take_fd(struct logger *l, int which)
{
	int *fd = which == 1 ? &l->out_w : &l->err_w;
	return take_fd(fd);
}

bool logger_ready(const struct logger *l)
{
	return l->ready || l->exited;
}

void logger_when_ready(struct logger *l, void (*fn)(void *data), void *data)
{
	l->on_ready = fn;
	l->ready_data = data;
}

/* containerd waits binaryIOProcTermTimeout after SIGTERM, then kills. */
static void on_kill_timer(void *data)
{
	struct logger *l = data;
	l->kill_timer = NULL; /* fired: never cancel it */
	if (!l->exited)
		pidfd_send_signal(l->pidfd, SIGKILL, NULL, 0);
}

bool logger_stop(struct logger *l, void (*done)(void *data), void *data)
{
	if (l->out_w >= 0)
		close(take_fd(&l->out_w));
	if (l->err_w >= 0)
		close(take_fd(&l->err_w));
	logger_reap(l);
	if (l->exited)
		return false;
	l->on_exit = done;
	l->exit_data = data;
	if (!l->kill_timer) {
		pidfd_send_signal(l->pidfd, SIGTERM, NULL, 0);
		ev_timer_add(l->loop, LOGGER_TERM_NS, on_kill_timer, l, &l->kill_timer);
	}
	return true;
}


void logger_free(struct logger *l)
{
	if (!l)
		return;
	if (l->kill_timer)
		ev_timer_cancel(l->kill_timer);
	ev_io_del(l->pid_io);
	ev_io_del(l->ready_io);
	if (l->pidfd >= 0) {
		if (!l->exited) {
			pidfd_send_signal(l->pidfd, SIGKILL, NULL, 0);
			siginfo_t si;
			waitid(P_PIDFD, (id_t)l->pidfd, &si, WEXITED);
		}
		close(l->pidfd);
	}
	if (l->ready_fd >= 0)
		close(l->ready_fd);
	if (l->out_w >= 0)
		close(l->out_w);
	if (l->err_w >= 0)
		close(l->err_w);
	free(l);
}
