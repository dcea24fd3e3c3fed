/* husk-jail: an OCI runtime CLI over libjail, with runc's subcommands and
 * flags where runc has them:
 *
 *   husk-jail [--root DIR] [--cgroup-mount DIR | --no-cgroups] [--debug] COMMAND ...
 *   create|run [--bundle DIR] [--pid-file F] [--console-socket S] [--detach] ID
 *   start ID | state ID | ps [--format table|json] ID | pause ID | resume ID
 *   kill [--all] ID [SIGNAL] | delete [--force] ID
 *   exec [--process F] [-t] [--console-socket S] [--cwd D] [-e K=V]
 *        [-u UID[:GID]] [--detach] [--pid-file F] ID [ARGS...]
 */
#include <ctype.h>
#include <errno.h>
#include <dirent.h>
#include <stdarg.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "husk/cleanup.h"
#include "husk/file.h"
#include "husk/path.h"
#include "husk/sock.h"
#include "jail/cgroup.h"
#include "jail/container.h"
#include "jail/debug.h"
#include "jail/hooks.h"
#include "jail/spec.h"
#include "state.h"

#define DEFAULT_ROOT "/run/husk-jail"
#define DEFAULT_CGROUP_MOUNT "/sys/fs/cgroup"

struct globals {
	const char *root;
	const char *cgroup_mount; /* NULL: --no-cgroups */
};

static int die(const struct husk_err *err)
{
	fprintf(stderr, "husk-jail: %s\n", err->msg[0] ? err->msg : strerror(-err->code));
	return 1;
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "husk-jail: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\nRun 'husk-jail --help' for usage.\n");
	va_end(ap);
	return 2;
}

static void now_rfc3339(char *buf, size_t len)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, len - n, ".%09ldZ", ts.tv_nsec);
}

static int write_pid_file(const char *path, pid_t pid, struct husk_err *err)
{
	if (!path)
		return 0;
	char tmp[PATH_MAX];
	husk_path_fmt(tmp, sizeof(tmp), "%s.tmp", path);
	_cleanup_fclose_ FILE *f = fopen(tmp, "we");
	if (!f)
		return husk_err_sys(err, -errno, "--pid-file %s", path);
	fprintf(f, "%d", pid);
	if (fflush(f) != 0 || rename(tmp, path) < 0)
		return husk_err_sys(err, -errno, "--pid-file %s", path);
	return 0;
}

/* Hands a pty master to whoever listens on `path` (runc's protocol). */
static int send_console(const char *path, int master, struct husk_err *err)
{
	_cleanup_fd_ int fd = husk_unix_connect(path, err);
	if (fd < 0)
		return husk_err_wrap(err, "--console-socket");
	char name[] = "/dev/ptmx";
	struct iovec iov = { .iov_base = name, .iov_len = sizeof(name) - 1 };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	memset(&u, 0, sizeof(u));
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &master, sizeof(int));
	if (sendmsg(fd, &mh, MSG_NOSIGNAL) < 0)
		return husk_err_sys(err, -errno, "--console-socket %s: send the pty", path);
	return 0;
}

static int pidfd_open_compat(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

/* Copies between our stdio and a pty master until the master hangs up. */
static void proxy_console(int master, int pidfd)
{
	struct pollfd p[3] = { { .fd = 0, .events = POLLIN },
			       { .fd = master, .events = POLLIN },
			       { .fd = pidfd, .events = POLLIN } };
	char buf[8192];
	for (;;) {
		if (poll(p, pidfd >= 0 ? 3 : 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		if (p[1].revents & (POLLIN | POLLHUP)) {
			ssize_t n = read(master, buf, sizeof(buf));
			if (n <= 0)
				return; /* EIO: every peer fd is closed */
			if (husk_write_all(1, buf, (size_t)n) < 0)
				return;
		}
		if (p[0].revents & POLLIN) {
			ssize_t n = read(0, buf, sizeof(buf));
			if (n <= 0)
				p[0].fd = -1;
			else if (husk_write_all(master, buf, (size_t)n) < 0)
				return;
		}
		if (pidfd >= 0 && (p[2].revents & POLLIN))
			p[2].fd = -1; /* drain what is left, then EIO ends us */
	}
}

static int exit_code_of(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return 1;
}

/* Waits for our child `pid`, forwarding the usual signals to it. */
static int wait_forwarding(pid_t pid)
{
	sigset_t set;
	sigemptyset(&set);
	static const int fwd[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH };
	for (size_t i = 0; i < ARRAY_SIZE(fwd); i++)
		sigaddset(&set, fwd[i]);
	sigprocmask(SIG_BLOCK, &set, NULL);
	_cleanup_fd_ int sfd = signalfd(-1, &set, SFD_CLOEXEC);
	_cleanup_fd_ int pfd = pidfd_open_compat(pid);
	struct pollfd p[2] = { { .fd = pfd, .events = POLLIN }, { .fd = sfd, .events = POLLIN } };
	while (pfd >= 0 && sfd >= 0) {
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[0].revents)
			break;
		struct signalfd_siginfo si;
		if ((p[1].revents & POLLIN) && read(sfd, &si, sizeof(si)) == sizeof(si))
			kill(pid, (int)si.ssi_signo);
	}
	int status = 0;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return 1;
	return exit_code_of(status);
}

/* The spec as created, kept in the state directory: exec and poststop
 * hooks use it, and the bundle may have changed since. */
static int save_config(const char *dir, const char *data, size_t len, struct husk_err *err)
{
	char dst[PATH_MAX];
	husk_path_fmt(dst, sizeof(dst), "%s/config.json", dir);
	_cleanup_fd_ int fd = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return husk_err_sys(err, -errno, "write %s", dst);
	int r = husk_write_all(fd, data, len);
	return r < 0 ? husk_err_sys(err, r, "write %s", dst) : 0;
}

static int load_saved_spec(const struct jail_state *st, struct jail_spec **spec,
			   struct husk_err *err)
{
	char path[PATH_MAX];
	husk_path_fmt(path, sizeof(path), "%s/config.json", st->dir);
	_cleanup_free_ char *data = NULL;
	size_t len;
	int r = jail_spec_read(path, &data, &len, err);
	if (r < 0)
		return r;
	return jail_spec_parse(data, len, st->bundle, spec, err);
}

/* ---- create / start / run ---- */

struct create_args {
	const char *bundle;
	const char *pid_file;
	const char *console_socket;
	bool detach;
	const char *id;
};

static int parse_create_args(int argc, char **argv, struct create_args *ca)
{
	static const struct option opts[] = {
		{ "bundle", required_argument, NULL, 'b' },
		{ "pid-file", required_argument, NULL, 'p' },
		{ "console-socket", required_argument, NULL, 'c' },
		{ "detach", no_argument, NULL, 'd' },
		{ "no-pivot", no_argument, NULL, 'n' }, /* accepted: detected automatically */
		{ 0 },
	};
	ca->bundle = ".";
	optind = 1;
	for (int o; (o = getopt_long(argc, argv, "+b:dp:", opts, NULL)) != -1;) {
		switch (o) {
		case 'b': ca->bundle = optarg; break;
		case 'p': ca->pid_file = optarg; break;
		case 'c': ca->console_socket = optarg; break;
		case 'd': ca->detach = true; break;
		case 'n': break;
		default: return usage_error("%s: unknown option", argv[0]);
		}
	}
	if (optind != argc - 1)
		return usage_error("%s: expected exactly one container id", argv[0]);
	ca->id = argv[optind];
	return 0;
}

/* Creates the container; on failure nothing is left behind. */
static int do_create(const struct globals *g, const struct create_args *ca, bool self_start,
		     struct jail_spec **spec_out, struct jail_container **c_out,
		     struct jail_state **st_out, struct husk_err *err)
{
	int r = jail_state_check_id(ca->id, err);
	if (r < 0)
		return r;
	char bundle[PATH_MAX];
	if (!realpath(ca->bundle, bundle))
		return husk_err_sys(err, -errno, "--bundle %s", ca->bundle);
	/* Read once: parsed here, saved below. */
	char config[PATH_MAX];
	husk_path_fmt(config, sizeof(config), "%s/config.json", bundle);
	_cleanup_free_ char *data = NULL;
	size_t len;
	r = jail_spec_read(config, &data, &len, err);
	if (r < 0)
		return r;
	struct jail_spec *spec = NULL;
	r = jail_spec_parse(data, len, bundle, &spec, err);
	if (r < 0)
		return r;
	if (spec->process.terminal && !ca->console_socket && ca->detach) {
		jail_spec_free(spec);
		return husk_err_set(err, -EINVAL,
				    "process.terminal is true: --console-socket is required");
	}
	if (g->cgroup_mount) {
		r = jail_cgroup_check_usable(g->cgroup_mount, err);
		if (r < 0) {
			jail_spec_free(spec);
			return r;
		}
	}
	struct jail_state *st = calloc(1, sizeof(*st));
	st->id = strdup(ca->id);
	st->bundle = strdup(bundle);
	r = jail_state_create_dir(g->root, ca->id, &st->dir, err);
	if (r < 0)
		goto fail_nodir;
	r = save_config(st->dir, data, len, err);
	if (r < 0)
		goto fail;
	char default_cg[256];
	snprintf(default_cg, sizeof(default_cg), "/husk-jail/%s", ca->id);
	struct jail_create_opts opts = {
		.id = ca->id,
		.bundle = bundle,
		.state_dir = st->dir,
		.cgroup_mount = g->cgroup_mount,
		.default_cgroup_path = default_cg,
		.stdio = { -1, -1, -1 },
		/* run starts it from this process: no exec fifo to make. */
		.no_exec_fifo = self_start,
	};
	struct jail_container *c = NULL;
	r = jail_container_create(spec, &opts, &c, err);
	if (r < 0)
		goto fail;
	st->pid = c->pid;
	st->start_time = c->start_time;
	char created[64];
	now_rfc3339(created, sizeof(created));
	st->created = strdup(created);
	if (c->cgroup) {
		st->cgroup_mount = strdup(g->cgroup_mount);
		st->cgroup_path = strdup(jail_cgroup_path(c->cgroup) + strlen(g->cgroup_mount));
	}
	r = jail_state_save(st, err);
	if (r == 0 && c->console_fd >= 0 && ca->console_socket)
		r = send_console(ca->console_socket, c->console_fd, err);
	if (r == 0)
		r = write_pid_file(ca->pid_file, c->pid, err);
	if (r < 0) {
		kill(c->pid, SIGKILL);
		waitpid(c->pid, NULL, 0);
		if (c->cgroup) {
			struct husk_err ignored;
			jail_cgroup_destroy(c->cgroup, &ignored);
			c->cgroup = NULL;
		}
		jail_container_free(c);
		goto fail;
	}
	*spec_out = spec;
	*c_out = c;
	*st_out = st;
	return 0;
fail:
	jail_state_remove(st->dir, NULL);
fail_nodir:
	jail_state_free(st);
	jail_spec_free(spec);
	return r;
}

static int cmd_create(const struct globals *g, int argc, char **argv)
{
	struct create_args ca = { .detach = true };
	int r = parse_create_args(argc, argv, &ca);
	if (r)
		return r;
	ca.detach = true;
	struct husk_err err = { 0 };
	struct jail_spec *spec;
	struct jail_container *c;
	struct jail_state *st;
	if (do_create(g, &ca, false, &spec, &c, &st, &err) < 0)
		return die(&err);
	jail_container_free(c);
	jail_state_free(st);
	jail_spec_free(spec);
	return 0;
}

static int cmd_start(const struct globals *g, int argc, char **argv)
{
	if (argc != 2)
		return usage_error("start: expected exactly one container id");
	struct husk_err err = { 0 };
	struct jail_state *st;
	if (jail_state_load(g->root, argv[1], &st, &err) < 0)
		return die(&err);
	const char *status = jail_state_status(st);
	int rc = 0;
	if (strcmp(status, "created") != 0) {
		husk_err_set(&err, -EINVAL, "container \"%s\" is %s, not created", st->id, status);
		rc = die(&err);
	} else {
		char fifo[PATH_MAX];
		husk_path_fmt(fifo, sizeof(fifo), "%s/exec.fifo", st->dir);
		struct jail_spec *spec = NULL;
		if (jail_start_fifo(fifo, &err) < 0 || load_saved_spec(st, &spec, &err) < 0) {
			rc = die(&err);
		} else if (spec->hooks.n_poststart) {
			_cleanup_free_ char *state =
				jail_state_json(st->id, "running", st->pid, st->bundle, spec);
			if (jail_hooks_run("poststart", spec->hooks.poststart,
					   spec->hooks.n_poststart, state ? state : "{}", &err) < 0)
				rc = die(&err);
		}
		jail_spec_free(spec);
	}
	jail_state_free(st);
	return rc;
}

static int destroy_container(const struct jail_state *st, const struct jail_spec *spec,
			     bool run_poststop, struct husk_err *err);

static int cmd_run(const struct globals *g, int argc, char **argv)
{
	struct create_args ca = { 0 };
	int r = parse_create_args(argc, argv, &ca);
	if (r)
		return r;
	struct husk_err err = { 0 };
	struct jail_spec *spec;
	struct jail_container *c;
	struct jail_state *st;
	if (do_create(g, &ca, true, &spec, &c, &st, &err) < 0)
		return die(&err);
	struct jail_create_opts opts = { .id = ca.id, .bundle = st->bundle, .state_dir = st->dir };
	int rc;
	if (jail_container_start(spec, &opts, c, &err) < 0) {
		rc = die(&err);
		kill(c->pid, SIGKILL);
		waitpid(c->pid, NULL, 0);
	} else if (ca.detach) {
		rc = 0;
	} else {
		if (c->console_fd >= 0 && !ca.console_socket)
			proxy_console(c->console_fd, c->pidfd);
		rc = wait_forwarding(c->pid);
	}
	if (!ca.detach) {
		struct husk_err derr = { 0 };
		if (destroy_container(st, spec, true, &derr) < 0)
			die(&derr);
	}
	jail_container_free(c);
	jail_state_free(st);
	jail_spec_free(spec);
	return rc;
}

/* ---- state / ps / pause / resume / kill / delete ---- */

static int open_cgroup(const struct jail_state *st, struct jail_cgroup **cg, struct husk_err *err)
{
	if (!st->cgroup_mount || !st->cgroup_path)
		return husk_err_set(err, -EOPNOTSUPP,
				    "container \"%s\" was created without cgroups", st->id);
	return jail_cgroup_open(st->cgroup_mount, st->cgroup_path, false, cg, err);
}

static int cmd_state(const struct globals *g, int argc, char **argv)
{
	if (argc != 2)
		return usage_error("state: expected exactly one container id");
	struct husk_err err = { 0 };
	struct jail_state *st;
	if (jail_state_load(g->root, argv[1], &st, &err) < 0)
		return die(&err);
	const char *status = jail_state_status(st);
	struct jail_spec *spec = NULL;
	load_saved_spec(st, &spec, NULL);
	_cleanup_free_ char *json = jail_state_json(st->id, status,
						    strcmp(status, "stopped") ? st->pid : 0,
						    st->bundle, spec);
	struct json_object *o = json ? json_tokener_parse(json) : NULL;
	if (o) {
		if (st->created)
			json_object_object_add(o, "created", json_object_new_string(st->created));
		if (spec && spec->root_path)
			json_object_object_add(o, "rootfs", json_object_new_string(spec->root_path));
		printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
								     JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(o);
	}
	jail_spec_free(spec);
	jail_state_free(st);
	return o ? 0 : 1;
}

/* Processes of the container: its cgroup, or without one every process
 * in the init's pid namespace. */
static int container_pids(const struct jail_state *st, pid_t **pids, size_t *n,
			  struct husk_err *err)
{
	*pids = NULL;
	*n = 0;
	if (st->cgroup_mount && st->cgroup_path) {
		struct jail_cgroup *cg;
		int r = open_cgroup(st, &cg, err);
		if (r < 0)
			return r;
		r = jail_cgroup_pids(cg, pids, n, err);
		jail_cgroup_free(cg);
		return r;
	}
	if (!jail_state_alive(st))
		return 0;
	char path[64];
	struct stat init_ns, self_ns, ns;
	snprintf(path, sizeof(path), "/proc/%d/ns/pid", st->pid);
	if (stat(path, &init_ns) < 0)
		return husk_err_sys(err, -errno, "stat %s", path);
	if (stat("/proc/self/ns/pid", &self_ns) == 0 && self_ns.st_ino == init_ns.st_ino) {
		/* Shares our pid namespace: only the init process is known. */
		*pids = malloc(sizeof(pid_t));
		if (!*pids)
			return husk_err_set(err, -ENOMEM, "out of memory");
		(*pids)[0] = st->pid;
		*n = 1;
		return 0;
	}
	_cleanup_free_ pid_t *out = NULL;
	size_t cnt = 0, cap = 0;
	DIR *d = opendir("/proc");
	if (!d)
		return husk_err_sys(err, -errno, "open /proc");
	for (struct dirent *e; (e = readdir(d));) {
		char *end;
		long pid = strtol(e->d_name, &end, 10);
		if (*end || pid <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%ld/ns/pid", pid);
		if (stat(path, &ns) < 0 || ns.st_ino != init_ns.st_ino || ns.st_dev != init_ns.st_dev)
			continue;
		if (cnt == cap) {
			cap = cap ? cap * 2 : 16;
			pid_t *nb = realloc(out, cap * sizeof(pid_t));
			if (!nb) {
				closedir(d);
				return -ENOMEM;
			}
			out = nb;
		}
		out[cnt++] = (pid_t)pid;
	}
	closedir(d);
	*pids = take_ptr(out);
	*n = cnt;
	return 0;
}

static int cmd_ps(const struct globals *g, int argc, char **argv)
{
	const char *format = "table";
	static const struct option opts[] = { { "format", required_argument, NULL, 'f' }, { 0 } };
	optind = 1;
	for (int o; (o = getopt_long(argc, argv, "+f:", opts, NULL)) != -1;) {
		if (o != 'f')
			return usage_error("ps: unknown option");
		format = optarg;
	}
	if (optind != argc - 1)
		return usage_error("ps: expected exactly one container id");
	if (strcmp(format, "table") && strcmp(format, "json"))
		return usage_error("ps: --format must be table or json, not %s", format);
	struct husk_err err = { 0 };
	struct jail_state *st;
	if (jail_state_load(g->root, argv[optind], &st, &err) < 0)
		return die(&err);
	pid_t *pids;
	size_t n;
	int r = container_pids(st, &pids, &n, &err);
	jail_state_free(st);
	if (r < 0)
		return die(&err);
	if (strcmp(format, "json") == 0) {
		printf("[");
		for (size_t i = 0; i < n; i++)
			printf("%s%d", i ? "," : "", pids[i]);
		printf("]\n");
	} else {
		printf("%-8s %s\n", "PID", "CMD");
		for (size_t i = 0; i < n; i++) {
			char path[64], comm[64] = "?";
			snprintf(path, sizeof(path), "/proc/%d/comm", pids[i]);
			FILE *f = fopen(path, "re");
			if (f) {
				if (fgets(comm, sizeof(comm), f))
					comm[strcspn(comm, "\n")] = '\0';
				fclose(f);
			}
			printf("%-8d %s\n", pids[i], comm);
		}
	}
	free(pids);
	return 0;
}

static int cmd_freeze(const struct globals *g, int argc, char **argv, bool frozen)
{
	if (argc != 2)
		return usage_error("%s: expected exactly one container id", argv[0]);
	struct husk_err err = { 0 };
	struct jail_state *st;
	if (jail_state_load(g->root, argv[1], &st, &err) < 0)
		return die(&err);
	const char *status = jail_state_status(st);
	const char *want = frozen ? "running" : "paused";
	int rc = 0;
	struct jail_cgroup *cg = NULL;
	if (strcmp(status, want) != 0) {
		husk_err_set(&err, -EINVAL, "container \"%s\" is %s, not %s", st->id, status, want);
		rc = die(&err);
	} else if (open_cgroup(st, &cg, &err) < 0 || jail_cgroup_freeze(cg, frozen, &err) < 0) {
		rc = die(&err);
	}
	jail_cgroup_free(cg);
	jail_state_free(st);
	return rc;
}

static int parse_signal(const char *s)
{
	static const struct {
		const char *name;
		int sig;
	} names[] = {
		{ "HUP", SIGHUP },   { "INT", SIGINT },	  { "QUIT", SIGQUIT }, { "KILL", SIGKILL },
		{ "USR1", SIGUSR1 }, { "USR2", SIGUSR2 }, { "TERM", SIGTERM }, { "CONT", SIGCONT },
		{ "STOP", SIGSTOP }, { "ALRM", SIGALRM }, { "WINCH", SIGWINCH },
	};
	char *end;
	long n = strtol(s, &end, 10);
	if (*s && !*end)
		return n > 0 && n < 65 ? (int)n : -1;
	if (strncmp(s, "SIG", 3) == 0)
		s += 3;
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (strcmp(s, names[i].name) == 0)
			return names[i].sig;
	return -1;
}

static int signal_all(const struct jail_state *st, int sig, struct husk_err *err)
{
	if (st->cgroup_mount && st->cgroup_path) {
		struct jail_cgroup *cg;
		int r = open_cgroup(st, &cg, err);
		if (r == 0)
			r = jail_cgroup_signal(cg, sig, err);
		jail_cgroup_free(cg);
		return r;
	}
	/* No cgroup: the processes of the container's pid namespace. */
	pid_t *pids;
	size_t n;
	int r = container_pids(st, &pids, &n, err);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++)
		kill(pids[i], sig);
	free(pids);
	return 0;
}

static int cmd_kill(const struct globals *g, int argc, char **argv)
{
	bool all = false;
	static const struct option opts[] = { { "all", no_argument, NULL, 'a' }, { 0 } };
	optind = 1;
	for (int o; (o = getopt_long(argc, argv, "+a", opts, NULL)) != -1;) {
		if (o != 'a')
			return usage_error("kill: unknown option");
		all = true;
	}
	if (optind != argc - 1 && optind != argc - 2)
		return usage_error("kill: expected a container id and an optional signal");
	int sig = SIGTERM;
	if (optind == argc - 2 && (sig = parse_signal(argv[optind + 1])) < 0)
		return usage_error("kill: unknown signal %s", argv[optind + 1]);
	struct husk_err err = { 0 };
	struct jail_state *st;
	if (jail_state_load(g->root, argv[optind], &st, &err) < 0)
		return die(&err);
	int rc = 0;
	if (!jail_state_alive(st)) {
		husk_err_set(&err, -ESRCH, "container \"%s\" is not running", st->id);
		rc = die(&err);
	} else if (all) {
		if (signal_all(st, sig, &err) < 0)
			rc = die(&err);
	} else if (kill(st->pid, sig) < 0) {
		husk_err_sys(&err, -errno, "kill %d", st->pid);
		rc = die(&err);
	}
	jail_state_free(st);
	return rc;
}

/* Kills what is left, removes the cgroup, runs poststop hooks, removes the
 * state. Hook failures are warnings, as the OCI spec wants. `known` is the
 * spec when the caller has it (run), else the saved one is read. */
static int destroy_container(const struct jail_state *st, const struct jail_spec *known,
			     bool run_poststop, struct husk_err *err)
{
	struct jail_spec *loaded = NULL;
	if (!known)
		load_saved_spec(st, &loaded, NULL);
	const struct jail_spec *spec = known ? known : loaded;
	if (jail_state_alive(st)) {
		_cleanup_fd_ int pfd = pidfd_open_compat(st->pid);
		signal_all(st, SIGKILL, NULL);
		kill(st->pid, SIGKILL);
		if (pfd >= 0) {
			struct pollfd p = { .fd = pfd, .events = POLLIN };
			poll(&p, 1, 10000);
		}
	}
	int r = 0;
	if (st->cgroup_mount && st->cgroup_path) {
		struct jail_cgroup *cg;
		if (jail_cgroup_open(st->cgroup_mount, st->cgroup_path, false, &cg, NULL) == 0)
			r = jail_cgroup_destroy(cg, err);
	}
	if (run_poststop && spec && spec->hooks.n_poststop) {
		_cleanup_free_ char *state = jail_state_json(st->id, "stopped", 0, st->bundle, spec);
		struct husk_err herr = { 0 };
		if (jail_hooks_run("poststop", spec->hooks.poststop, spec->hooks.n_poststop,
				   state ? state : "{}", &herr) < 0)
			fprintf(stderr, "husk-jail: warning: %s\n", herr.msg);
	}
	jail_spec_free(loaded);
	if (r < 0)
		return r;
	return jail_state_remove(st->dir, err);
}

static int cmd_delete(const struct globals *g, int argc, char **argv)
{
	bool force = false;
	static const struct option opts[] = { { "force", no_argument, NULL, 'f' }, { 0 } };
	optind = 1;
	for (int o; (o = getopt_long(argc, argv, "+f", opts, NULL)) != -1;) {
		if (o != 'f')
			return usage_error("delete: unknown option");
		force = true;
	}
	if (optind != argc - 1)
		return usage_error("delete: expected exactly one container id");
	struct husk_err err = { 0 };
	struct jail_state *st;
	if (jail_state_load(g->root, argv[optind], &st, &err) < 0) {
		/* runc: deleting what does not exist is fine with --force. */
		return force && err.code == -ENOENT ? 0 : die(&err);
	}
	const char *status = jail_state_status(st);
	int rc = 0;
	if (!force && (strcmp(status, "running") == 0 || strcmp(status, "paused") == 0)) {
		husk_err_set(&err, -EBUSY, "container \"%s\" is %s: stop it first or use --force",
			     st->id, status);
		rc = die(&err);
	} else if (destroy_container(st, NULL, strcmp(status, "created") != 0, &err) < 0) {
		rc = die(&err);
	}
	jail_state_free(st);
	return rc;
}

/* ---- exec ---- */

static int cmd_exec(const struct globals *g, int argc, char **argv)
{
	const char *process_file = NULL, *console_socket = NULL, *cwd = NULL, *pid_file = NULL;
	const char *user = NULL;
	bool tty = false, detach = false;
	char *extra_env[64];
	size_t n_extra_env = 0;
	static const struct option opts[] = {
		{ "process", required_argument, NULL, 'p' },
		{ "tty", no_argument, NULL, 't' },
		{ "console-socket", required_argument, NULL, 'c' },
		{ "cwd", required_argument, NULL, 'w' },
		{ "env", required_argument, NULL, 'e' },
		{ "user", required_argument, NULL, 'u' },
		{ "detach", no_argument, NULL, 'd' },
		{ "pid-file", required_argument, NULL, 'P' },
		{ 0 },
	};
	optind = 1;
	for (int o; (o = getopt_long(argc, argv, "+p:tde:u:", opts, NULL)) != -1;) {
		switch (o) {
		case 'p': process_file = optarg; break;
		case 't': tty = true; break;
		case 'c': console_socket = optarg; break;
		case 'w': cwd = optarg; break;
		case 'e':
			if (n_extra_env == ARRAY_SIZE(extra_env))
				return usage_error("exec: too many --env");
			extra_env[n_extra_env++] = optarg;
			break;
		case 'u': user = optarg; break;
		case 'd': detach = true; break;
		case 'P': pid_file = optarg; break;
		default: return usage_error("exec: unknown option");
		}
	}
	if (optind >= argc)
		return usage_error("exec: expected a container id");
	const char *id = argv[optind++];
	if (!process_file && optind >= argc)
		return usage_error("exec: expected a command or --process");

	struct husk_err err = { 0 };
	struct jail_state *st = NULL;
	struct jail_spec *spec = NULL;
	struct jail_process *fileproc = NULL;
	struct jail_process proc;
	_cleanup_free_ char **env = NULL;
	int rc = 1;
	if (jail_state_load(g->root, id, &st, &err) < 0 || load_saved_spec(st, &spec, &err) < 0)
		goto out;
	if (strcmp(jail_state_status(st), "running") != 0) {
		husk_err_set(&err, -EINVAL, "container \"%s\" is %s, not running", id,
			     jail_state_status(st));
		goto out;
	}
	if (process_file) {
		_cleanup_free_ char *data = NULL;
		size_t len = 0;
		/* May be a pipe: husk_read_file reads to EOF. */
		if (husk_read_file(process_file, JAIL_SPEC_MAX_BYTES, &data, &len, &err) < 0 ||
		    jail_process_parse(data, len, &fileproc, &err) < 0)
			goto out;
		if (fileproc->unknown_caps)
			fprintf(stderr, "husk-jail: warning: process.capabilities: ignoring unknown "
				"capabilities: %s\n", fileproc->unknown_caps);
		proc = *fileproc;
	} else {
		/* runc's defaults: the container's process, with these args. */
		proc = spec->process;
		proc.args = &argv[optind];
		proc.n_args = (size_t)(argc - optind);
		proc.terminal = tty;
		if (cwd)
			proc.cwd = (char *)cwd;
		env = calloc(proc.n_env + n_extra_env + 1, sizeof(char *));
		if (!env)
			goto out;
		memcpy(env, proc.env, proc.n_env * sizeof(char *));
		memcpy(env + proc.n_env, extra_env, n_extra_env * sizeof(char *));
		proc.env = env;
		proc.n_env += n_extra_env;
		if (user) {
			char *end;
			unsigned long uid = strtoul(user, &end, 10);
			unsigned long gid = proc.user.gid;
			if (*end == ':' && isdigit((unsigned char)end[1]))
				gid = strtoul(end + 1, &end, 10);
			/* runc's range: (uid_t)-1 would leave us root. */
			if (*end || !isdigit((unsigned char)user[0]) || uid > INT32_MAX ||
			    gid > INT32_MAX) {
				husk_err_set(&err, -EINVAL,
					     "--user %s: expected UID[:GID], each in range "
					     "0-2147483647",
					     user);
				goto out;
			}
			proc.user.uid = (uint32_t)uid;
			proc.user.gid = (uint32_t)gid;
			proc.user.n_additional_gids = 0;
		}
	}
	if (proc.terminal && detach && !console_socket) {
		husk_err_set(&err, -EINVAL, "exec: --tty with --detach needs --console-socket");
		goto out;
	}
	char cgdir[PATH_MAX];
	if (st->cgroup_mount && st->cgroup_path)
		husk_path_fmt(cgdir, sizeof(cgdir), "%s%s", st->cgroup_mount, st->cgroup_path);
	struct jail_exec_opts eo = {
		.target = st->pid,
		.cgroup_dir = st->cgroup_mount && st->cgroup_path ? cgdir : NULL,
		.stdio = { -1, -1, -1 },
		.seccomp = spec->has_seccomp ? &spec->seccomp : NULL,
		.spec = spec,
	};
	pid_t pid;
	int console = -1;
	if (jail_exec(&proc, &eo, &pid, &console, &err) < 0)
		goto out;
	if (write_pid_file(pid_file, pid, &err) < 0 ||
	    (console >= 0 && console_socket && send_console(console_socket, console, &err) < 0)) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		if (console >= 0)
			close(console);
		goto out;
	}
	if (detach) {
		rc = 0;
	} else {
		if (console >= 0 && !console_socket) {
			_cleanup_fd_ int pfd = pidfd_open_compat(pid);
			proxy_console(console, pfd);
		}
		rc = wait_forwarding(pid);
	}
	if (console >= 0)
		close(console);
	err.code = 0;
out:
	if (err.code)
		die(&err);
	jail_process_free(fileproc);
	jail_spec_free(spec);
	jail_state_free(st);
	return rc;
}

/* ---- main ---- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: husk-jail [--root DIR] [--cgroup-mount DIR | --no-cgroups] [--debug] COMMAND ...\n"
		"\n"
		"  create [--bundle DIR] [--pid-file F] [--console-socket S] ID\n"
		"  start ID\n"
		"  run [--bundle DIR] [--pid-file F] [--console-socket S] [--detach] ID\n"
		"  exec [--process F] [-t] [--console-socket S] [--cwd D] [-e K=V] [-u UID[:GID]]\n"
		"       [--detach] [--pid-file F] ID [ARGS...]\n"
		"  kill [--all] ID [SIGNAL]\n"
		"  delete [--force] ID\n"
		"  state ID\n"
		"  ps [--format table|json] ID\n"
		"  pause ID | resume ID\n"
		"\n"
		"--root defaults to " DEFAULT_ROOT "; --cgroup-mount to " DEFAULT_CGROUP_MOUNT
		", which must be a cgroup2 mount;\n"
		"--no-cgroups runs without cgroups (no resources, pause, resume or stats);\n"
		"--debug notes what runc would log at debug level (skipped ambient\n"
		"capabilities, unknown seccomp syscalls).\n");
}

int main(int argc, char **argv)
{
	struct globals g = { .root = DEFAULT_ROOT, .cgroup_mount = DEFAULT_CGROUP_MOUNT };
	static const struct option opts[] = {
		{ "root", required_argument, NULL, 'r' },
		{ "cgroup-mount", required_argument, NULL, 'm' },
		{ "no-cgroups", no_argument, NULL, 'n' },
		{ "debug", no_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },
		/* runc global flags containerd passes; accepted and ignored */
		{ "log", required_argument, NULL, 'L' },
		{ "log-format", required_argument, NULL, 'L' },
		{ "systemd-cgroup", no_argument, NULL, 'L' },
		{ 0 },
	};
	for (int o; (o = getopt_long(argc, argv, "+h", opts, NULL)) != -1;) {
		switch (o) {
		case 'r': g.root = optarg; break;
		case 'm': g.cgroup_mount = optarg; break;
		case 'n': g.cgroup_mount = NULL; break;
		case 'D':
			/* runc's --debug: notes on what was skipped (an ambient
			 * capability, an unknown syscall) on our stderr. A
			 * close-on-exec copy above 2, so that neither the
			 * container's stdio nor its program gets it. */
			jail_set_debug_fd(fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3));
			break;
		case 'h': usage(stdout); return 0;
		case 'L': break;
		default: usage(stderr); return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	char *cmd = argv[optind];
	int cargc = argc - optind;
	char **cargv = argv + optind;
	static const struct {
		const char *name;
		int (*fn)(const struct globals *, int, char **);
	} cmds[] = {
		{ "create", cmd_create }, { "start", cmd_start }, { "run", cmd_run },
		{ "exec", cmd_exec },	  { "kill", cmd_kill },	  { "delete", cmd_delete },
		{ "state", cmd_state },	  { "ps", cmd_ps },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++)
		if (strcmp(cmd, cmds[i].name) == 0)
			return cmds[i].fn(&g, cargc, cargv);
	if (strcmp(cmd, "pause") == 0)
		return cmd_freeze(&g, cargc, cargv, true);
	if (strcmp(cmd, "resume") == 0)
		return cmd_freeze(&g, cargc, cargv, false);
	return usage_error("unknown command %s", cmd);
}
