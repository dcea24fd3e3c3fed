/* The child side of create and exec: stage 1 (join namespaces and cgroup,
 * clone) and the container's own process up to execve. Everything here runs
 * in forked/cloned children; failures are sent to the parent as SYNC_ERROR
 * and the child exits. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include "husk/cleanup.h"
#include "husk/netif.h"
#include "husk/path.h"
#include "internal.h"
#include "jail/cgroup.h"
#include "jail/hooks.h"
#include "jail/rootfs.h"
#include "jail/security.h"

/* ---- sync messages ---- */

int sync_send(int fd, enum sync_type type, int32_t value, const char *text, int pass_fd)
{
	struct sync_msg m = { .type = type, .value = value };
	if (text)
		snprintf(m.text, sizeof(m.text), "%s", text);
	struct iovec iov = { .iov_base = &m, .iov_len = sizeof(m) };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (pass_fd >= 0) {
		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof(u.buf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
	}
	ssize_t n;
	do
		n = sendmsg(fd, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return n == sizeof(m) ? 0 : -EPIPE;
}

int sync_recv(int fd, struct sync_msg *msg, int *passed_fd)
{
	struct iovec iov = { .iov_base = msg, .iov_len = sizeof(*msg) };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf) };
	if (passed_fd)
		*passed_fd = -1;
	ssize_t n;
	do
		n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if (n != sizeof(*msg))
		return -EPIPE;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			int got;
			memcpy(&got, CMSG_DATA(c), sizeof(int));
			if (passed_fd)
				*passed_fd = got;
			else
				close(got);
		}
	}
	msg->text[sizeof(msg->text) - 1] = '\0';
	return 0;
}

__attribute__((noreturn)) static void fail(int sync_fd, const struct husk_err *err)
{
	sync_send(sync_fd, SYNC_ERROR, err->code, err->msg, -1);
	_exit(1);
}

/* ---- helpers ---- */

int jail_find_executable(const struct jail_process *p, char **out, struct husk_err *err)
{
	const char *name = p->args[0];
	struct stat st;
	if (strchr(name, '/')) {
		if (stat(name, &st) < 0)
			return husk_err_sys(err, -errno, "process.args[0] %s", name);
		if (!S_ISREG(st.st_mode) || !(st.st_mode & 0111))
			return husk_err_set(err, -EACCES, "process.args[0] %s: not an executable file",
					    name);
		*out = strdup(name);
		return *out ? 0 : -ENOMEM;
	}
	/* As runc: a bare name is looked up only in the process's own PATH;
	 * without one it is not found (no default list). */
	const char *path = "";
	for (size_t i = 0; i < p->n_env; i++)
		if (strncmp(p->env[i], "PATH=", 5) == 0)
			path = p->env[i] + 5;
	_cleanup_free_ char *dirs = strdup(path);
	if (!dirs)
		return -ENOMEM;
	char *save = NULL;
	for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		char *cand;
		if (asprintf(&cand, "%s/%s", *d ? d : ".", name) < 0)
			return -ENOMEM;
		if (stat(cand, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111)) {
			*out = cand;
			return 0;
		}
		free(cand);
	}
	return husk_err_set(err, -ENOENT, "process.args[0] %s: executable file not found in $PATH",
			    name);
}

int jail_setup_terminal(const struct jail_process *p, int *master, struct husk_err *err)
{
	_cleanup_fd_ int m = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (m < 0)
		return husk_err_sys(err, -errno, "process.terminal: open /dev/ptmx");
	int unlock = 0;
	if (ioctl(m, TIOCSPTLCK, &unlock) < 0)
		return husk_err_sys(err, -errno, "process.terminal: unlock pty");
	_cleanup_fd_ int s = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY);
	if (s < 0)
		return husk_err_sys(err, -errno, "process.terminal: open pty peer");
	if (p->has_console_size) {
		struct winsize ws = { .ws_row = (unsigned short)p->console_height,
				      .ws_col = (unsigned short)p->console_width };
		ioctl(s, TIOCSWINSZ, &ws);
	}
	if (ioctl(s, TIOCSCTTY, 0) < 0)
		return husk_err_sys(err, -errno, "process.terminal: make pty the controlling terminal");
	for (int fd = 0; fd < 3; fd++)
		if (dup2(s, fd) < 0)
			return husk_err_sys(err, -errno, "process.terminal: dup2 pty to fd %d", fd);
	*master = take_fd(&m);
	return 0;
}

/* Places the caller's stdio fds on 0, 1, 2 without one clobbering another. */
static int install_stdio(const struct jail_stdio *io, struct husk_err *err)
{
	int src[3] = { io->in, io->out, io->err };
	int tmp[3];
	for (int i = 0; i < 3; i++) {
		tmp[i] = src[i] < 0 ? -1 : fcntl(src[i], F_DUPFD_CLOEXEC, 3);
		if (src[i] >= 0 && tmp[i] < 0)
			return husk_err_sys(err, -errno, "stdio: dup fd %d", src[i]);
	}
	for (int i = 0; i < 3; i++) {
		if (tmp[i] < 0)
			continue;
		if (dup2(tmp[i], i) < 0)
			return husk_err_sys(err, -errno, "stdio: dup2 onto %d", i);
		close(tmp[i]);
	}
	return 0;
}

static int write_file(const char *path, const char *text, struct husk_err *err)
{
	_cleanup_fd_ int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return husk_err_sys(err, -errno, "open %s", path);
	size_t len = strlen(text);
	if (write(fd, text, len) != (ssize_t)len)
		return husk_err_sys(err, -errno, "write %s", path);
	return 0;
}

int jail_sysctl_dotted(const char *key, char *out, size_t size)
{
	size_t len = strlen(key);
	if (len >= size)
		return -ENAMETOOLONG;
	/* The form is told by the first separator, as sysctl(8) does. */
	bool slashed = key[strcspn(key, "./")] == '/';
	for (size_t i = 0; i <= len; i++) {
		char ch = key[i];
		if (slashed && (ch == '.' || ch == '/'))
			ch = ch == '.' ? '/' : '.';
		out[i] = ch;
	}
	return 0;
}

int jail_sysctl_path(const char *key, char *path, size_t size, struct husk_err *err)
{
	char dotted[256];
	if (jail_sysctl_dotted(key, dotted, sizeof(dotted)) < 0 ||
	    husk_path_fmt(path, size, "/proc/sys/%s", dotted) < 0)
		return husk_err_set(err, -ENAMETOOLONG, "linux.sysctl.%s: key too long", key);
	/* Components are the dotted ones; a '/' in one stands for a '.' of a
	 * name. None may be empty, "." or "..": the path stays in /proc/sys. */
	char *p = path + strlen("/proc/sys/");
	for (;;) {
		size_t n = strcspn(p, ".");
		for (size_t i = 0; i < n; i++)
			if (p[i] == '/')
				p[i] = '.';
		bool dots = (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.');
		if (n == 0 || dots)
			return husk_err_set(err, -EINVAL, "linux.sysctl: invalid key \"%s\"", key);
		if (!p[n])
			return 0;
		p[n] = '/';
		p += n + 1;
	}
}

/* mkdir -p of process.cwd, mode 0755, as runc does it: in the new root
 * (nothing resolves outside it any more) and before root.readonly. */
static int make_cwd(const char *cwd, struct husk_err *err)
{
	char path[PATH_MAX];
	if (husk_path_fmt(path, sizeof(path), "%s", cwd) < 0)
		return husk_err_set(err, -ENAMETOOLONG, "process.cwd %s: too long", cwd);
	for (char *p = path + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char saved = *p;
		*p = '\0';
		if (mkdir(path, 0755) < 0 && errno != EEXIST)
			return husk_err_sys(err, -errno, "process.cwd %s: mkdir %s", cwd, path);
		*p = saved;
		if (!saved)
			return 0;
	}
}

/* After the root switch, before the read-only parts: sysctls (the
 * container's /proc is writable yet) and a missing working directory. */
static int after_root_switch(void *data, struct husk_err *err)
{
	const struct init_args *a = data;
	const struct jail_spec *spec = a->spec;
	for (size_t i = 0; i < spec->n_sysctl; i++) {
		const char *key = spec->sysctl[i].key;
		char path[512];
		int r = jail_sysctl_path(key, path, sizeof(path), err);
		if (r < 0)
			return r;
		r = write_file(path, spec->sysctl[i].value, err);
		if (r < 0)
			return husk_err_wrap(err, "linux.sysctl[%s]", key);
	}
	struct stat st;
	if (stat(a->process->cwd, &st) < 0 && errno == ENOENT)
		return make_cwd(a->process->cwd, err);
	return 0;
}

static pid_t clone_parent(unsigned long flags)
{
	/* fork() semantics (no new stack) with extra flags; the glibc and musl
	 * clone() wrappers insist on a separate stack and function. */
	return (pid_t)syscall(SYS_clone, flags | CLONE_PARENT | SIGCHLD, NULL, NULL, NULL, NULL);
}

/* ---- the container's process ---- */

static int run_create_container_hooks(void *data, struct husk_err *err)
{
	struct init_args *a = data;
	if (!a->spec->hooks.n_create_container)
		return 0;
	_cleanup_free_ char *state = jail_state_json(a->create->id, "created", getpid(),
						     a->create->bundle, a->spec);
	if (!state)
		return husk_err_set(err, -ENOMEM, "hooks: out of memory");
	return jail_hooks_run("createContainer", a->spec->hooks.create_container,
			      a->spec->hooks.n_create_container, state, err);
}

__attribute__((noreturn)) static void container_init(struct init_args *a)
{
	struct husk_err err = { 0 };
	const struct jail_spec *spec = a->spec;
	const struct jail_process *p = a->process;
	struct sync_msg msg;
	if (sync_recv(a->sync_fd, &msg, NULL) < 0 || msg.type != SYNC_GO)
		_exit(1); /* the runtime gave up on us */
	/* Stage 1 installs stdio before cloning us. On the direct path it is
	 * done here, after GO, where a failure reaches the runtime (which
	 * reads nothing from us before GO). */
	if (a->direct && install_stdio(&a->create->stdio, &err) < 0)
		fail(a->sync_fd, &err);

	if (a->clone_flags & CLONE_NEWUSER) {
		if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0) {
			husk_err_sys(&err, -errno, "linux.uidMappings: become root in the user namespace");
			fail(a->sync_fd, &err);
		}
	}
	if (setsid() < 0) {
		husk_err_sys(&err, -errno, "setsid");
		fail(a->sync_fd, &err);
	}
	if (a->clone_flags & CLONE_NEWUTS) {
		if (spec->hostname && sethostname(spec->hostname, strlen(spec->hostname)) < 0) {
			husk_err_sys(&err, -errno, "hostname %s", spec->hostname);
			fail(a->sync_fd, &err);
		}
		if (spec->domainname &&
		    setdomainname(spec->domainname, strlen(spec->domainname)) < 0) {
			husk_err_sys(&err, -errno, "domainname %s", spec->domainname);
			fail(a->sync_fd, &err);
		}
	}
	if ((a->clone_flags & CLONE_NEWNET) && a->create->loopback_up &&
	    husk_loopback_up(&err) < 0) {
		husk_err_wrap(&err, "the container's network namespace");
		fail(a->sync_fd, &err);
	}
	/* A reader that also holds a write end blocks until start writes. */
	int fifo = a->fifo_fd;
	if (jail_rootfs_enter(spec, run_create_container_hooks, after_root_switch, a, &err) < 0)
		fail(a->sync_fd, &err);
	if (p->terminal) {
		int master;
		if (jail_setup_terminal(p, &master, &err) < 0)
			fail(a->sync_fd, &err);
		sync_send(a->sync_fd, SYNC_CONSOLE, 0, NULL, master);
		close(master);
	}
	if (chdir(p->cwd) < 0) {
		husk_err_sys(&err, -errno, "process.cwd %s", p->cwd);
		fail(a->sync_fd, &err);
	}
	_cleanup_free_ char *exe = NULL;
	if (jail_find_executable(p, &exe, &err) < 0)
		fail(a->sync_fd, &err);
	sync_send(a->sync_fd, SYNC_READY, 0, NULL, -1);
	if (fifo >= 0) {
		close(a->sync_fd);
		char b;
		ssize_t n;
		do
			n = read(fifo, &b, 1);
		while (n < 0 && errno == EINTR);
		if (n != 1)
			_exit(1);
	} else if (sync_recv(a->sync_fd, &msg, NULL) < 0 || msg.type != SYNC_START) {
		_exit(1);
	}
	/* The fifo or the socket stays open until execve closes it
	 * (O_CLOEXEC): start waits for that to run poststart hooks only once
	 * the process runs. */

	if (spec->hooks.n_start_container) {
		_cleanup_free_ char *state =
			jail_state_json(a->create->id, "created", getpid(), a->create->bundle, spec);
		if (jail_hooks_run("startContainer", spec->hooks.start_container,
				   spec->hooks.n_start_container, state ? state : "{}", &err) < 0) {
			fprintf(stderr, "husk-jail: %s\n", err.msg);
			_exit(127);
		}
	}
	if (jail_security_apply(p, a->seccomp, &err) < 0) {
		fprintf(stderr, "husk-jail: %s\n", err.msg);
		_exit(127);
	}
	execve(exe, p->args, p->env);
	fprintf(stderr, "husk-jail: exec %s: %s\n", exe, strerror(errno));
	_exit(errno == ENOENT ? 127 : 126);
}

/* An exec'd process: already in the container's namespaces and cgroup. */
__attribute__((noreturn)) static void exec_process(struct init_args *a)
{
	struct husk_err err = { 0 };
	const struct jail_process *p = a->process;
	if (a->root_fd >= 0 && (fchdir(a->root_fd) < 0 || chroot(".") < 0)) {
		husk_err_sys(&err, -errno, "enter the container's root");
		fail(a->sync_fd, &err);
	}
	if (setsid() < 0) {
		husk_err_sys(&err, -errno, "setsid");
		fail(a->sync_fd, &err);
	}
	if (p->terminal) {
		int master;
		if (jail_setup_terminal(p, &master, &err) < 0)
			fail(a->sync_fd, &err);
		sync_send(a->sync_fd, SYNC_CONSOLE, 0, NULL, master);
		close(master);
	}
	if (chdir(p->cwd) < 0) {
		husk_err_sys(&err, -errno, "process.cwd %s", p->cwd);
		fail(a->sync_fd, &err);
	}
	_cleanup_free_ char *exe = NULL;
	if (jail_find_executable(p, &exe, &err) < 0 || jail_security_apply(p, a->seccomp, &err) < 0)
		fail(a->sync_fd, &err);
	/* sync_fd is close-on-exec: the parent reads EOF once execve worked. */
	execve(exe, p->args, p->env);
	husk_err_sys(&err, -errno, "exec %s", exe);
	fail(a->sync_fd, &err);
}

/* The ignored signals (bit N-1 for signal N) from /proc/self/status: one
 * read instead of asking each of 64 signals. False without /proc. */
static bool ignored_signals(uint64_t *mask)
{
	char buf[4096];
	_cleanup_fd_ int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	const char *p = strstr(buf, "\nSigIgn:\t");
	if (!p)
		return false;
	char *end;
	errno = 0;
	*mask = strtoull(p + 9, &end, 16);
	return errno == 0 && end != p + 9 && *end == '\n';
}

/* A container starts with every signal deliverable and at its default
 * action: blocked masks and SIG_IGN survive fork and execve, and callers
 * (the agent's signalfd, an ignored SIGPIPE) set both. */
void jail_reset_signals(void)
{
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* Only SIG_IGN survives execve (handlers are reset). The raw syscall
	 * reaches the signals libc reserves for itself (32..34), which its
	 * wrappers refuse to touch but a caller may still have ignored. */
	struct k_sigaction {
		void (*handler)(int);
		unsigned long flags;
		void (*restorer)(void);
		uint64_t mask;
	} cur, dfl = { .handler = SIG_DFL };
	uint64_t ignored;
	bool known = ignored_signals(&ignored);
	for (int sig = 1; sig <= 64; sig++) {
		if (sig == SIGKILL || sig == SIGSTOP)
			continue;
		bool ign;
		if (known)
			ign = (ignored >> (sig - 1)) & 1;
		else
			ign = syscall(SYS_rt_sigaction, sig, NULL, &cur, sizeof(uint64_t)) == 0 &&
			      cur.handler == SIG_IGN;
		if (ign)
			syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof(uint64_t));
	}
}

pid_t jail_clone_direct(struct init_args *a, int cgroup_fd)
{
	/* fork() semantics (stack and exit_signal as fork) plus namespaces;
	 * CLONE_INTO_CGROUP puts the child in its cgroup before it runs, and
	 * makes that cgroup the root of a new cgroup namespace. */
	struct clone_args ca = { .flags = a->clone_flags, .exit_signal = SIGCHLD };
	if (cgroup_fd >= 0) {
		ca.flags |= CLONE_INTO_CGROUP;
		ca.cgroup = (uint64_t)cgroup_fd;
	}
	pid_t pid = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		a->direct = true;
		jail_reset_signals();
		container_init(a);
	}
	return pid;
}

void jail_stage1(struct init_args *a)
{
	struct husk_err err = { 0 };
	jail_reset_signals();
	const struct jail_stdio *io = a->create ? &a->create->stdio : &a->exec->stdio;
	if (install_stdio(io, &err) < 0)
		fail(a->sync_fd, &err);
	/* The cgroup first: its path is the host's, gone once we join the
	 * container's mount namespace. */
	if (a->cgroup_dir) {
		char path[4096];
		husk_path_fmt(path, sizeof(path), "%s/cgroup.procs", a->cgroup_dir);
		if (write_file(path, "0", &err) < 0)
			fail(a->sync_fd, &err);
	}
	for (int i = 0; i < 8 && a->ns_fds[i] >= 0; i++) {
		if (setns(a->ns_fds[i], 0) < 0) {
			husk_err_sys(&err, -errno, "join namespace (fd %d)", a->ns_fds[i]);
			fail(a->sync_fd, &err);
		}
		close(a->ns_fds[i]);
	}
	pid_t pid = clone_parent(a->clone_flags);
	if (pid < 0) {
		husk_err_sys(&err, -errno, "clone the container process (flags %#lx)",
			     a->clone_flags);
		fail(a->sync_fd, &err);
	}
	if (pid == 0) {
		if (a->create)
			container_init(a);
		exec_process(a);
	}
	sync_send(a->sync_fd, SYNC_PID, pid, NULL, -1);
	_exit(0);
}
