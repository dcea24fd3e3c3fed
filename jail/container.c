/* The runtime side of create, start and exec. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
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

/* The init closed its socket without a word: it is dead or dying (it
 * holds the socket until execve, which comes only after start). Its wait
 * status, peeked at and left for the caller to reap, says how it died. */
static int init_exited_early(pid_t pid, struct husk_err *err)
{
	static const char what[] = "container setup: init process exited early";
	siginfo_t si = { 0 };
	int r;
	do
		r = waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT);
	while (r < 0 && errno == EINTR);
	if (r < 0 || si.si_pid != pid)
		return husk_err_set(err, -EPIPE, "%s", what);
	if (si.si_code == CLD_EXITED)
		return husk_err_set(err, -EPIPE, "%s with status %d", what, si.si_status);
	return husk_err_set(err, -EPIPE, "%s: killed by signal %d (%s)", what, si.si_status,
			    strsignal(si.si_status));
}

/* Whether the OOM killer took one of the container's processes during
 * setup: memory.events of its cgroup counts more kills than before the
 * first process (runc checks the same count). With a memory limit that is
 * almost always the limit being too small for the init itself, so the
 * message names it instead of the symptom (a dead init, a failed write). */
static int explain_oom(const struct jail_spec *spec, struct jail_cgroup *cg, uint64_t before,
		       int r, struct husk_err *err)
{
	uint64_t now = 0;
	if (jail_cgroup_oom_kills(cg, &now, NULL) < 0 || now <= before)
		return r;
	/* Our own "container setup: ..." only restates the death; anything
	 * else (a hook, a write) is kept after the cause. */
	char then[HUSK_ERR_MSG_MAX + 2] = "";
	if (err && strncmp(err->msg, "container setup: ", 17) != 0)
		snprintf(then, sizeof(then), "; %s", err->msg);
	const struct jail_resources *res = &spec->resources;
	if (spec->has_resources && res->has_memory_limit && res->memory_limit > 0)
		return husk_err_set(err, -ENOMEM,
				    "linux.resources.memory.limit %" PRId64
				    ": too small for the container's init (killed by the OOM killer "
				    "before exec)%s",
				    res->memory_limit, then);
	return husk_err_set(err, -ENOMEM,
			    "container setup: the init was killed by the OOM killer of cgroup %s "
			    "before exec (memory.events oom_kill %" PRIu64 ")%s",
			    jail_cgroup_path(cg), now, then);
}

static void warn_ignored(const struct jail_spec *spec, const struct jail_create_opts *opts)
{
	/* An empty value asks for nothing (runc reads it so too). */
	if (spec->process.apparmor_profile && *spec->process.apparmor_profile)
		warn(opts, "process.apparmorProfile %s ignored: the guest has no AppArmor",
		     spec->process.apparmor_profile);
	if (spec->process.selinux_label && *spec->process.selinux_label)
		warn(opts, "process.selinuxLabel ignored: the guest has no SELinux");
	if (spec->mount_label && *spec->mount_label)
		warn(opts, "linux.mountLabel ignored: the guest has no SELinux");
	if (spec->process.unknown_caps)
		warn(opts, "process.capabilities: ignoring unknown capabilities: %s",
		     spec->process.unknown_caps);
}

/* Namespaced sysctls, as runc's validator sorts them: these need an ipc
 * namespace; "net." ones a network namespace that is not the runtime's;
 * kernel.domainname a uts namespace. Anything else is system-wide: written
 * from the container it would change the host (or the whole guest). */
static const char *const ipc_sysctls[] = {
	"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
	"kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced",
};

/* `path` names the runtime's own network namespace. */
static bool is_own_netns(const char *path)
{
	struct stat a, b;
	return stat("/proc/self/ns/net", &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
	       a.st_ino == b.st_ino;
}

/* What the spec asks of namespaces it may not have, refused before any
 * process exists as runc refuses it: a hostname without a uts namespace,
 * sysctls outside the container's namespaces. */
static int check_namespaced(const struct jail_spec *spec, struct husk_err *err)
{
	bool uts = jail_spec_namespace(spec, CLONE_NEWUTS) != NULL;
	bool ipc = jail_spec_namespace(spec, CLONE_NEWIPC) != NULL;
	const struct jail_namespace *net = jail_spec_namespace(spec, CLONE_NEWNET);
	if (spec->hostname && *spec->hostname && !uts)
		return husk_err_set(err, -EINVAL,
				    "hostname \"%s\": cannot be set without a uts namespace of the "
				    "container's own (linux.namespaces has no \"uts\")",
				    spec->hostname);
	if (spec->domainname && *spec->domainname && !uts)
		return husk_err_set(err, -EINVAL,
				    "domainname \"%s\": cannot be set without a uts namespace of the "
				    "container's own (linux.namespaces has no \"uts\")",
				    spec->domainname);
	for (size_t i = 0; i < spec->n_sysctl; i++) {
		const char *key = spec->sysctl[i].key;
		char k[256], path[512];
		int r = jail_sysctl_path(key, path, sizeof(path), err);
		if (r < 0)
			return r;
		if (jail_sysctl_dotted(key, k, sizeof(k)) < 0)
			return husk_err_set(err, -ENAMETOOLONG, "linux.sysctl.%s: key too long", key);
		bool is_ipc = strncmp(k, "fs.mqueue.", 10) == 0;
		for (size_t j = 0; !is_ipc && j < ARRAY_SIZE(ipc_sysctls); j++)
			is_ipc = strcmp(k, ipc_sysctls[j]) == 0;
		if (is_ipc) {
			if (!ipc)
				return husk_err_set(err, -EINVAL,
						    "linux.sysctl.%s: not allowed in the host's ipc "
						    "namespace (linux.namespaces has no \"ipc\")",
						    key);
		} else if (strncmp(k, "net.", 4) == 0) {
			if (!net)
				return husk_err_set(err, -EINVAL,
						    "linux.sysctl.%s: not allowed in the host's network "
						    "namespace (linux.namespaces has no \"network\")",
						    key);
			if (net->path && is_own_netns(net->path))
				return husk_err_set(err, -EINVAL,
						    "linux.sysctl.%s: not allowed in the host's network "
						    "namespace (linux.namespaces network path %s is the "
						    "runtime's own)",
						    key, net->path);
		} else if (strcmp(k, "kernel.domainname") == 0 && uts) {
			continue;
		} else if (strcmp(k, "kernel.hostname") == 0 && uts) {
			return husk_err_set(err, -EINVAL,
					    "linux.sysctl.%s: not allowed, it conflicts with the "
					    "\"hostname\" field",
					    key);
		} else {
			return husk_err_set(err, -EINVAL,
					    "linux.sysctl.%s: not in a namespace of the container's own "
					    "(it would change the whole system)",
					    key);
		}
	}
	return 0;
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
	uint64_t oom_kills = 0;

	/* plan_namespaces first: it sets a.ns_fds, which the fail path closes. */
	r = plan_namespaces(spec, &a, err);
	if (r == 0)
		r = check_namespaced(spec, err);
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
		/* A cgroup left by an earlier container may have counted
		 * kills already: only a rise is ours. */
		if (jail_cgroup_oom_kills(c->cgroup, &oom_kills, NULL) < 0)
			oom_kills = 0;
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
		r = init_exited_early(c->pid, err);
		goto fail;
	}
	for (;;) {
		int fd;
		r = sync_recv(sv[0], &m, &fd);
		if (r < 0) {
			r = init_exited_early(c->pid, err);
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
	/* Before the kill below, which would hide how the init died. */
	if (c->cgroup && (c->pid > 0 || stage1 > 0))
		r = explain_oom(spec, c->cgroup, oom_kills, r, err);
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
