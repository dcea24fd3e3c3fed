/* The runtime side of create, start and exec. */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "husk/cleanup.h"
#include "husk/path.h"
#include "internal.h"
#include "jail/cgroup.h"
#include "jail/container.h"
#include "jail/hooks.h"
#include "jail/security.h"

#define OCI_VERSION "1.0.2"

char *jail_state_json(const char *id, const char *status, pid_t pid, const char *bundle,
		      const struct jail_spec *spec)
{
	struct json_object *o = json_object_new_object();
	if (!o)
		return NULL;
	json_object_object_add(o, "ociVersion", json_object_new_string(OCI_VERSION));
	json_object_object_add(o, "id", json_object_new_string(id ? id : ""));
	json_object_object_add(o, "status", json_object_new_string(status));
	json_object_object_add(o, "pid", json_object_new_int(pid));
	json_object_object_add(o, "bundle", json_object_new_string(bundle ? bundle : ""));
	struct json_object *ann = json_object_new_object();
	for (size_t i = 0; spec && i < spec->n_annotations; i++)
		json_object_object_add(ann, spec->annotations[i].key,
				       json_object_new_string(spec->annotations[i].value));
	json_object_object_add(o, "annotations", ann);
	char *out = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return out;
}

static void warn(const struct jail_create_opts *opts, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void warn(const struct jail_create_opts *opts, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (opts && opts->warn)
		opts->warn(opts->warn_data, msg);
	else
		fprintf(stderr, "husk-jail: warning: %s\n", msg);
}

unsigned long long jail_proc_start_time(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	_cleanup_fd_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	/* The command (field 2) may hold spaces: start after the last ')'.
	 * Field 3 is the state, field 22 the start time. */
	char *p = strrchr(buf, ')');
	if (!p)
		return 0;
	if (p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X'))
		return 0; /* exited, not yet reaped: gone for our purposes */
	int field = 2;
	char *save = NULL;
	for (char *tok = strtok_r(p + 1, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
		if (++field == 22)
			return strtoull(tok, NULL, 10);
	return 0;
}

static int write_id_map(pid_t pid, const char *file, const struct jail_id_map *m, size_t n,
			struct husk_err *err)
{
	char buf[4096];
	size_t len = 0;
	for (size_t i = 0; i < n; i++) {
		int w = snprintf(buf + len, sizeof(buf) - len, "%u %u %u\n", m[i].container_id,
				 m[i].host_id, m[i].size);
		if (w < 0 || (size_t)w >= sizeof(buf) - len)
			return husk_err_set(err, -E2BIG, "linux.%s: too many mappings", file);
		len += (size_t)w;
	}
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/%s", pid, file);
	_cleanup_fd_ int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, buf, len) != (ssize_t)len)
		return husk_err_sys(err, -errno, "linux.%s: write %s", strcmp(file, "uid_map") == 0 ? "uidMappings" : "gidMappings", path);
	return 0;
}

static const struct {
	int type;
	const char *proc_name;
} ns_names[] = {
	/* user first: joining the others may need its privileges */
	{ CLONE_NEWUSER, "user" }, { CLONE_NEWIPC, "ipc" },     { CLONE_NEWUTS, "uts" },
	{ CLONE_NEWNET, "net" },   { CLONE_NEWPID, "pid" },     { CLONE_NEWCGROUP, "cgroup" },
	{ CLONE_NEWNS, "mnt" },
};

static void close_ns_fds(struct init_args *a)
{
	for (int i = 0; i < 8 && a->ns_fds[i] >= 0; i++) {
		close(a->ns_fds[i]);
		a->ns_fds[i] = -1;
	}
}

/* Opens the namespaces the spec names by path (to join) and computes the
 * clone flags for those to create. */
static int plan_namespaces(const struct jail_spec *spec, struct init_args *a, struct husk_err *err)
{
	int k = 0;
	for (int i = 0; i < 8; i++)
		a->ns_fds[i] = -1;
	for (size_t t = 0; t < ARRAY_SIZE(ns_names); t++) {
		const struct jail_namespace *ns = jail_spec_namespace(spec, ns_names[t].type);
		if (!ns)
			continue;
		if (!ns->path) {
			a->clone_flags |= (unsigned long)ns_names[t].type;
			continue;
		}
		int fd = open(ns->path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			close_ns_fds(a);
			return husk_err_sys(err, -errno, "linux.namespaces[%s].path %s",
					    ns_names[t].proc_name, ns->path);
		}
		a->ns_fds[k++] = fd;
	}
	if (!jail_spec_namespace(spec, CLONE_NEWNS)) {
		close_ns_fds(a);
		return husk_err_set(err, -EINVAL,
				    "linux.namespaces: a mount namespace is required to set up the root filesystem");
	}
	if ((a->clone_flags & CLONE_NEWUSER) && (!spec->n_uid_mappings || !spec->n_gid_mappings)) {
		close_ns_fds(a);
		return husk_err_set(err, -EINVAL,
				    "linux.uidMappings/gidMappings: required with a new user namespace");
	}
	return 0;
}

/* A raw clone3 skips libc's fork handling (its locks): safe only when no
 * other thread can hold one. /proc/self/task has a link per thread, plus
 * two; unknown counts as threaded. */
static bool single_threaded(void)
{
	struct stat st;
	return stat("/proc/self/task", &st) == 0 && st.st_nlink == 3;
}

/* Waits for our stage-1 child, which exits right after reporting. */
static void reap(pid_t pid)
{
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
}

static void kill_and_reap(pid_t pid)
{
	if (pid > 0) {
		kill(pid, SIGKILL);
		reap(pid);
	}
}

static void warn_ignored(const struct jail_spec *spec, const struct jail_create_opts *opts)
{
	if (spec->process.apparmor_profile)
		warn(opts, "process.apparmorProfile %s ignored: the guest has no AppArmor",
		     spec->process.apparmor_profile);
	if (spec->process.selinux_label)
		warn(opts, "process.selinuxLabel ignored: the guest has no SELinux");
	if (spec->mount_label)
		warn(opts, "linux.mountLabel ignored: the guest has no SELinux");
}

int jail_container_create(const struct jail_spec *spec, const struct jail_create_opts *opts,
			  struct jail_container **out, struct husk_err *err)
{
	if (!spec->has_process)
		return husk_err_set(err, -EINVAL, "process: required to create a container");
	warn_ignored(spec, opts);

	struct init_args a = { .spec = spec, .process = &spec->process, .create = opts,
			       .root_fd = -1, .sync_fd = -1, .fifo_fd = -1 };
	struct jail_container *c = calloc(1, sizeof(*c));
	if (!c)
		return husk_err_set(err, -ENOMEM, "out of memory");
	c->pid = -1;
	c->pidfd = -1;
	c->console_fd = -1;
	c->sync_fd = -1;
	int r = 0;
	int sv[2] = { -1, -1 };
	pid_t stage1 = -1;
	bool fifo_made = false;

	r = plan_namespaces(spec, &a, err);
	if (r < 0)
		goto fail;
	if (spec->has_seccomp) {
		r = jail_seccomp_build(&spec->seccomp, &a.seccomp, err);
		if (r < 0)
			goto fail;
	}
	if (opts->cgroup_mount) {
		const char *path = spec->cgroups_path ? spec->cgroups_path : opts->default_cgroup_path;
		if (!path) {
			r = husk_err_set(err, -EINVAL, "linux.cgroupsPath: none given and no default");
			goto fail;
		}
		r = jail_cgroup_open(opts->cgroup_mount, path, true, &c->cgroup, err);
		if (r < 0)
			goto fail;
		if (spec->has_resources) {
			r = jail_cgroup_apply(c->cgroup, &spec->resources, err);
			if (r < 0)
				goto fail;
		}
		a.cgroup_dir = jail_cgroup_path(c->cgroup);
	}
	if (!opts->no_exec_fifo) {
		if (asprintf(&c->fifo_path, "%s/exec.fifo", opts->state_dir) < 0) {
			c->fifo_path = NULL;
			r = husk_err_set(err, -ENOMEM, "out of memory");
			goto fail;
		}
		if (mkfifo(c->fifo_path, 0600) < 0) {
			r = husk_err_sys(err, -errno, "mkfifo %s", c->fifo_path);
			goto fail;
		}
		fifo_made = true;
		a.fifo_fd = open(c->fifo_path, O_RDWR | O_CLOEXEC);
		if (a.fifo_fd < 0) {
			r = husk_err_sys(err, -errno, "open %s", c->fifo_path);
			goto fail;
		}
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		r = husk_err_sys(err, -errno, "socketpair");
		goto fail;
	}
	a.sync_fd = sv[1];
	struct sync_msg m;
	/* With nothing to join, one clone does it; it needs clone3 (and, for
	 * a cgroup, CLONE_INTO_CGROUP), else stage 1 does it the long way. */
	pid_t pid = -1;
	if (a.ns_fds[0] < 0 && single_threaded())
		pid = jail_clone_direct(&a, c->cgroup ? jail_cgroup_fd(c->cgroup) : -1);
	if (pid > 0) {
		c->pid = pid;
	} else {
		stage1 = fork();
		if (stage1 < 0) {
			r = husk_err_sys(err, -errno, "fork");
			goto fail;
		}
		if (stage1 == 0) {
			close(sv[0]);
			jail_stage1(&a);
		}
	}
	close(sv[1]);
	sv[1] = -1;
	close_ns_fds(&a);
	if (stage1 > 0) {
		r = sync_recv(sv[0], &m, NULL);
		reap(stage1);
		if (r < 0 || m.type != SYNC_PID) {
			r = r < 0 ? husk_err_set(err, r,
						 "container setup: stage 1 exited without a report")
				  : husk_err_set(err, m.value ? m.value : -EIO, "%s", m.text);
			goto fail;
		}
		c->pid = m.value;
	}
	if (a.clone_flags & CLONE_NEWUSER) {
		r = write_id_map(c->pid, "uid_map", spec->uid_mappings, spec->n_uid_mappings, err);
		if (r == 0)
			r = write_id_map(c->pid, "gid_map", spec->gid_mappings, spec->n_gid_mappings,
					 err);
		if (r < 0)
			goto fail;
	}
	if (spec->hooks.n_prestart || spec->hooks.n_create_runtime) {
		_cleanup_free_ char *state =
			jail_state_json(opts->id, "creating", c->pid, opts->bundle, spec);
		if (!state) {
			r = husk_err_set(err, -ENOMEM, "out of memory");
			goto fail;
		}
		r = jail_hooks_run("prestart", spec->hooks.prestart, spec->hooks.n_prestart, state,
				   err);
		if (r == 0)
			r = jail_hooks_run("createRuntime", spec->hooks.create_runtime,
					   spec->hooks.n_create_runtime, state, err);
		if (r < 0)
			goto fail;
	}
	if (sync_send(sv[0], SYNC_GO, 0, NULL, -1) < 0) {
		r = husk_err_set(err, -EPIPE, "container setup: init process exited early");
		goto fail;
	}
	for (;;) {
		int fd;
		r = sync_recv(sv[0], &m, &fd);
		if (r < 0) {
			r = husk_err_set(err, -EPIPE, "container setup: init process exited early");
			goto fail;
		}
		if (m.type == SYNC_CONSOLE) {
			c->console_fd = fd;
			continue;
		}
		if (fd >= 0)
			close(fd);
		if (m.type == SYNC_READY)
			break;
		r = husk_err_set(err, m.value < 0 ? m.value : -EIO, "%s", m.text);
		goto fail;
	}
	if (opts->no_exec_fifo)
		c->sync_fd = sv[0];
	else
		close(sv[0]);
	if (a.fifo_fd >= 0)
		close(a.fifo_fd);
	jail_seccomp_free(a.seccomp);
	c->pidfd = (int)syscall(SYS_pidfd_open, c->pid, 0);
	c->start_time = jail_proc_start_time(c->pid);
	*out = c;
	return 0;

fail:
	close_ns_fds(&a);
	if (a.fifo_fd >= 0)
		close(a.fifo_fd);
	if (sv[0] >= 0)
		close(sv[0]);
	if (sv[1] >= 0)
		close(sv[1]);
	kill_and_reap(c->pid);
	if (c->cgroup) {
		struct husk_err ignored;
		jail_cgroup_destroy(c->cgroup, &ignored);
		c->cgroup = NULL;
	}
	if (fifo_made)
		unlink(c->fifo_path);
	jail_seccomp_free(a.seccomp);
	jail_container_free(c);
	return r;
}

int jail_start_fifo(const char *fifo_path, struct husk_err *err)
{
	/* Non-blocking: with the init process gone there is no reader and the
	 * open fails with ENXIO instead of hanging. */
	_cleanup_fd_ int fd = open(fifo_path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENXIO)
			return husk_err_set(err, -ESRCH, "start: the container's init process is not running");
		if (errno == ENOENT)
			return husk_err_set(err, -EALREADY, "start: the container was already started");
		return husk_err_sys(err, -errno, "start: open %s", fifo_path);
	}
	if (write(fd, "0", 1) != 1)
		return husk_err_sys(err, -errno, "start: write %s", fifo_path);
	unlink(fifo_path);
	/* The init holds the only reader until its execve closes it; a writer
	 * then sees POLLERR. Waiting for it means "the process is running" (or
	 * died trying), which poststart hooks must come after. */
	struct pollfd p = { .fd = fd, .events = 0 };
	int r;
	do
		r = poll(&p, 1, -1);
	while (r < 0 && errno == EINTR);
	return 0;
}

/* no_exec_fifo: the same over the init's socket, EOF meaning execve. */
static int start_sync(struct jail_container *c, struct husk_err *err)
{
	_cleanup_fd_ int fd = c->sync_fd;
	c->sync_fd = -1;
	if (fd < 0)
		return husk_err_set(err, -EALREADY, "start: the container was already started");
	if (sync_send(fd, SYNC_START, 0, NULL, -1) < 0)
		return husk_err_set(err, -ESRCH, "start: the container's init process is not running");
	struct sync_msg m;
	while (sync_recv(fd, &m, NULL) == 0)
		;
	return 0;
}

int jail_container_start(const struct jail_spec *spec, const struct jail_create_opts *opts,
			 struct jail_container *c, struct husk_err *err)
{
	int r = c->fifo_path ? jail_start_fifo(c->fifo_path, err) : start_sync(c, err);
	if (r < 0)
		return r;
	if (spec->hooks.n_poststart) {
		_cleanup_free_ char *state =
			jail_state_json(opts->id, "running", c->pid, opts->bundle, spec);
		r = jail_hooks_run("poststart", spec->hooks.poststart, spec->hooks.n_poststart,
				   state ? state : "{}", err);
		if (r < 0)
			return r;
	}
	return 0;
}

void jail_container_free(struct jail_container *c)
{
	if (!c)
		return;
	if (c->pidfd >= 0)
		close(c->pidfd);
	if (c->console_fd >= 0)
		close(c->console_fd);
	if (c->sync_fd >= 0)
		close(c->sync_fd);
	if (c->cgroup)
		jail_cgroup_free(c->cgroup);
	free(c->fifo_path);
	free(c);
}

/* ---- exec ---- */

static bool same_ns(pid_t target, const char *name)
{
	char a[64], b[64];
	struct stat sa, sb;
	snprintf(a, sizeof(a), "/proc/%d/ns/%s", target, name);
	snprintf(b, sizeof(b), "/proc/self/ns/%s", name);
	return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_ino == sb.st_ino &&
	       sa.st_dev == sb.st_dev;
}

static bool cgroup_dir_frozen(const char *dir)
{
	char path[PATH_MAX], c = '0';
	if (husk_path_fmt(path, sizeof(path), "%s/cgroup.freeze", dir) < 0)
		return false;
	_cleanup_fd_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	return fd >= 0 && read(fd, &c, 1) == 1 && c == '1';
}

int jail_exec(const struct jail_process *proc, const struct jail_exec_opts *opts, pid_t *pid,
	      int *console_fd, struct husk_err *err)
{
	struct init_args a = { .spec = opts->spec, .process = proc, .exec = opts,
			       .cgroup_dir = opts->cgroup_dir, .sync_fd = -1, .root_fd = -1,
			       .fifo_fd = -1 };
	*pid = -1;
	*console_fd = -1;
	int k = 0, r = 0;
	for (int i = 0; i < 8; i++)
		a.ns_fds[i] = -1;
	/* A process joining a frozen cgroup freezes before it can report
	 * back, and we would wait for it forever (runc refuses too). */
	if (opts->cgroup_dir && cgroup_dir_frozen(opts->cgroup_dir))
		return husk_err_set(err, -EBUSY, "exec: the container is paused (%s/cgroup.freeze "
				    "is 1); resume it first", opts->cgroup_dir);
	for (size_t t = 0; t < ARRAY_SIZE(ns_names); t++) {
		if (same_ns(opts->target, ns_names[t].proc_name))
			continue;
		char path[64];
		snprintf(path, sizeof(path), "/proc/%d/ns/%s", opts->target, ns_names[t].proc_name);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			r = husk_err_sys(err, -errno, "exec: open %s (is the container running?)",
					 path);
			goto out;
		}
		a.ns_fds[k++] = fd;
	}
	char root[64];
	snprintf(root, sizeof(root), "/proc/%d/root", opts->target);
	a.root_fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (a.root_fd < 0) {
		r = husk_err_sys(err, -errno, "exec: open %s", root);
		goto out;
	}
	if (opts->seccomp) {
		r = jail_seccomp_build(opts->seccomp, &a.seccomp, err);
		if (r < 0)
			goto out;
	}
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		r = husk_err_sys(err, -errno, "socketpair");
		goto out;
	}
	a.sync_fd = sv[1];
	pid_t stage1 = fork();
	if (stage1 < 0) {
		r = husk_err_sys(err, -errno, "fork");
		close(sv[0]);
		close(sv[1]);
		goto out;
	}
	if (stage1 == 0) {
		close(sv[0]);
		jail_stage1(&a);
	}
	close(sv[1]);
	struct sync_msg m;
	r = sync_recv(sv[0], &m, NULL);
	reap(stage1);
	if (r < 0 || m.type != SYNC_PID) {
		r = r < 0 ? husk_err_set(err, r, "exec: stage 1 exited without a report")
			  : husk_err_set(err, m.value < 0 ? m.value : -EIO, "%s", m.text);
		close(sv[0]);
		goto out;
	}
	*pid = m.value;
	/* Until execve the process may send a console, or an error; EOF (the
	 * close-on-exec socket) means it is running the new program. */
	for (;;) {
		int fd;
		int rr = sync_recv(sv[0], &m, &fd);
		if (rr == -EPIPE)
			break;
		if (rr < 0) {
			r = husk_err_sys(err, rr, "exec: read from the new process");
			break;
		}
		if (m.type == SYNC_CONSOLE) {
			*console_fd = fd;
			continue;
		}
		if (fd >= 0)
			close(fd);
		r = husk_err_set(err, m.value < 0 ? m.value : -EIO, "%s", m.text);
		break;
	}
	close(sv[0]);
	if (r < 0) {
		kill_and_reap(*pid);
		*pid = -1;
		if (*console_fd >= 0)
			close(*console_fd);
		*console_fd = -1;
	}
out:
	close_ns_fds(&a);
	if (a.root_fd >= 0)
		close(a.root_fd);
	jail_seccomp_free(a.seccomp);
	return r;
}
