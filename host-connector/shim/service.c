/* The containerd.task.v2.Task service on the shim socket. Create boots the
 * VM; every other call is forwarded to the guest agent asynchronously on
 * the same loop, so that a blocked Wait never holds up Start or Kill. */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

#include "github.com/containerd/containerd/api/events/task.pb-c.h"
#include "github.com/containerd/containerd/runtime/v2/task/shim.pb-c.h"
#include "google/protobuf/empty.pb-c.h"
#include "husk/cleanup.h"
#include "husk/path.h"
#include "shim.h"

/* The generated structs name fields stdin/stdout/stderr. */
#undef stdin
#undef stdout
#undef stderr

#define Task(x) Containerd__Task__V2__##x
#define Ev(x) Containerd__Events__##x
#define AGENT_TIMEOUT_NS (30ull * 1000000000ull)
#define BOOT_NAME_MAX 32

enum { TAG_IN, TAG_OUT, TAG_ERR };

static const Google__Protobuf__Empty empty = GOOGLE__PROTOBUF__EMPTY__INIT;

/* ---- processes ---- */

struct ctr *shim_ctr_find(struct shim *s, const char *id)
{
	for (struct ctr *c = s->ctrs; c; c = c->next)
		if (!c->deleted && strcmp(c->id, id) == 0)
			return c;
	return NULL;
}

static struct ctr *ctr_new(struct shim *s, const char *id, const char *bundle,
			   enum shim_pod_role role)
{
	struct ctr *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	*c = (struct ctr){ .s = s, .id = strdup(id), .bundle = strdup(bundle), .role = role,
			   .image_hold = -1 };
	if (!c->id || !c->bundle) {
		free(c->id);
		free(c->bundle);
		free(c);
		return NULL;
	}
	struct ctr **pp = &s->ctrs;
	while (*pp)
		pp = &(*pp)->next;
	*pp = c;
	return c;
}

/* containerd's rootfs mounts on the host, once the image is made. */
static void ctr_unmount(struct ctr *c)
{
	if (c->rootfs_mount) {
		umount2(c->rootfs_mount, MNT_DETACH);
		free(c->rootfs_mount);
		c->rootfs_mount = NULL;
	}
}

static struct proc *proc_find(struct ctr *c, const char *exec_id)
{
	for (struct proc *p = c->procs; p; p = p->next)
		if (!p->deleted && strcmp(p->exec_id, exec_id ? exec_id : "") == 0)
			return p;
	return NULL;
}

static struct proc *proc_new(struct ctr *c, const char *exec_id, const char *in, const char *out,
			     const char *errp, bool terminal)
{
	struct proc *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->s = c->s;
	p->c = c;
	p->exec_id = strdup(exec_id);
	p->stdin_path = strdup(in);
	p->stdout_path = strdup(out);
	p->stderr_path = strdup(errp);
	p->terminal = terminal;
	/* Random ports so concurrent execs never collide; never 1024-1026. */
	uint32_t r = 0;
	(void)!getrandom(&r, sizeof(r), 0);
	uint32_t base = 0x10000 + (r % 0x3fff0000u) / 4 * 4;
	p->ports = (struct husk_stdio){ .in = *in ? base : 0, .out = *out ? base + 1 : 0,
					.err = (*errp && !terminal) ? base + 2 : 0,
					.terminal = terminal };
	if (!p->exec_id || !p->stdin_path || !p->stdout_path || !p->stderr_path) {
		free(p->exec_id);
		free(p->stdin_path);
		free(p->stdout_path);
		free(p->stderr_path);
		free(p);
		return NULL;
	}
	/* Append: init stays first. */
	struct proc **pp = &c->procs;
	while (*pp)
		pp = &(*pp)->next;
	*pp = p;
	return p;
}

static void proc_close_io(struct proc *p)
{
	relay_free(p->in);
	relay_free(p->out);
	relay_free(p->err);
	p->in = p->out = p->err = NULL;
	p->outputs_open = 0;
}

/* A process that never came to be (its Exec failed). */
static void proc_drop(struct proc *p)
{
	proc_close_io(p);
	p->deleted = true;
	logger_free(p->logger);
	p->logger = NULL;
}

static void ctr_procs_free(struct ctr *c)
{
	while (c->procs) {
		struct proc *p = c->procs;
		c->procs = p->next;
		proc_close_io(p);
		logger_free(p->logger);
		while (p->waiters) { /* their calls went with the server */
			struct waiter *w = p->waiters;
			p->waiters = w->next;
			free(w);
		}
		free(p->exec_id);
		free(p->stdin_path);
		free(p->stdout_path);
		free(p->stderr_path);
		free(p);
	}
}

void shim_procs_free(struct shim *s)
{
	while (s->ctrs) {
		struct ctr *c = s->ctrs;
		s->ctrs = c->next;
		ctr_procs_free(c);
		ctr_unmount(c);
		husk_image_release(c->image_hold);
		free(c->id);
		free(c->bundle);
		free(c);
	}
}

static const char *task_id(const struct proc *p)
{
	return *p->exec_id ? p->exec_id : p->c->id;
}

static void fill_ts(Google__Protobuf__Timestamp *ts, const struct timespec *t)
{
	ts->seconds = t->tv_sec;
	ts->nanos = (int32_t)t->tv_nsec;
}

static void reply_wait(struct ttrpc_call *call, const struct proc *p)
{
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	fill_ts(&ts, &p->exited_at);
	Task(WaitResponse) resp = CONTAINERD__TASK__V2__WAIT_RESPONSE__INIT;
	resp.exit_status = p->status;
	resp.exited_at = &ts;
	ttrpc_call_reply(call, &resp.base);
}

/* Exited for containerd once the agent reported the exit (or the VM is
 * gone), every output byte reached containerd's FIFOs, and an OOM kill (if
 * it was one) has been published. */
void proc_maybe_exited(struct proc *p)
{
	if (p->exited || !p->wait_done || p->outputs_open || p->oom_check)
		return;
	p->exited = true;
	struct shim *s = p->s;
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	fill_ts(&ts, &p->exited_at);
	Ev(TaskExit) ev = CONTAINERD__EVENTS__TASK_EXIT__INIT;
	ev.container_id = p->c->id;
	ev.id = (char *)task_id(p);
	ev.pid = p->pid;
	ev.exit_status = p->status;
	ev.exited_at = &ts;
	shim_publish(s, "/tasks/exit", &ev.base);
	while (p->waiters) {
		struct waiter *w = p->waiters;
		p->waiters = w->next;
		reply_wait(w->call, p);
		free(w);
	}
	/* stdin has nobody to feed any more. */
	relay_free(p->in);
	p->in = NULL;
}

static void proc_set_exit(struct proc *p, uint32_t status, const struct timespec *at)
{
	if (p->wait_done)
		return;
	p->wait_done = true;
	p->status = status;
	if (at)
		p->exited_at = *at;
	else
		clock_gettime(CLOCK_REALTIME, &p->exited_at);
}

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
	proc_maybe_exited(p);
}

/* Opens containerd's side of one stdio stream (logio.c parses the URI;
 * the stdout URI's scheme decides for stderr too, as in containerd).
 * Output FIFOs are opened read-write: that never blocks, whether or not
 * containerd has opened its end yet. stdin is opened read-only and
 * nonblocking: epoll reports nothing until a writer has come (Linux signals
 * HUP only for writers that arrived after our open), so the writer's close
 * is the process's stdin EOF, as with runc; CloseIO ends it too. */
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

/* A binary:// stdout: its logger starts with the process (Create, Exec),
 * as containerd-shim-runc-v2 starts it in createIO; CONTAINER_ID is the
 * task's id (the exec id for an exec). */
static int open_logger(struct shim *s, const char *task, const char *bundle,
		       const char *stdout_uri, struct logger **out, struct husk_err *err)
{
	*out = NULL;
	if (!*stdout_uri)
		return 0;
	struct stdio_uri u;
	int rc = stdio_uri_parse(stdout_uri, &u, err);
	if (rc < 0)
		return rc;
	if (u.kind == STDIO_BINARY) {
		rc = logger_start(s->loop, &u, s->opt.namespace_, task, bundle, out, err);
		if (rc == 0)
			shim_log("%s: logger %s started", task, u.path);
	}
	stdio_uri_free(&u);
	return rc;
}

/* After the agent's Create/Exec: its stdio ports listen; connect before
 * Start so no output is produced before we are there to take it. */
static int proc_connect_io(struct proc *p, struct husk_err *err)
{
	struct shim *s = p->s;
	const uint32_t ports[3] = { p->ports.in, p->ports.out, p->ports.err };
	struct relay **slots[3] = { &p->in, &p->out, &p->err };
	for (int i = 0; i < 3; i++) {
		if (!ports[i])
			continue;
		int vfd = husk_vm_connect(s->vm, ports[i], 5000, err);
		if (vfd < 0)
			return husk_err_wrap(err, "stdio port %u", ports[i]);
		int hfd = open_host_stdio(p, i, err);
		if (hfd < 0) {
			close(vfd);
			return hfd;
		}
		int r = i == 0 ? relay_new(s->loop, hfd, vfd, true, on_relay_done, p, TAG_IN,
					   slots[i], err)
			       : relay_new(s->loop, vfd, hfd, false, on_relay_done, p,
					   i == 1 ? TAG_OUT : TAG_ERR, slots[i], err);
		if (r < 0)
			return r;
		if (i > 0)
			p->outputs_open++;
	}
	return 0;
}

/* ---- the VM ---- */

static void on_agent_closed(int reason, void *data)
{
	struct shim *s = data;
	shim_vm_lost(s, reason ? strerror(-reason) : "the agent connection closed");
}

static void on_vm_exit(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io, (void)fd, (void)events;
	struct shim *s = data;
	int st = 0;
	char why[128];
	ev_io_del(s->vm_io);
	s->vm_io = NULL;
	if (husk_vm_exited(s->vm, &st))
		snprintf(why, sizeof(why), "QEMU %s %d", WIFSIGNALED(st) ? "was killed by signal" :
			 "exited with status", WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
	else
		snprintf(why, sizeof(why), "QEMU exited");
	shim_vm_lost(s, why);
}

void shim_vm_lost(struct shim *s, const char *why)
{
	if (s->vm_lost || s->shutting_down)
		return;
	s->vm_lost = true;
	bool any = false;
	for (struct ctr *c = s->ctrs; c; c = c->next)
	for (struct proc *p = c->procs; p; p = p->next) {
		if (p->oom_check && p->wait_done && !p->exited) {
			p->oom_check = false;
			proc_maybe_exited(p);
		}
		if (p->exited || p->deleted || !p->started)
			continue;
		any = true;
		proc_set_exit(p, SHIM_VM_LOST_STATUS, NULL);
		p->oom_check = false; /* nobody will answer it */
		/* Without the VM no more output comes; keep what was copied. */
		relay_abort_source(p->out);
		relay_abort_source(p->err);
		proc_maybe_exited(p);
	}
	shim_log("shim for %s: the VM is gone (%s)%s", s->opt.id, why,
		 any ? "; its processes are reported exited with status 255" : "");
}

void shim_vm_teardown(struct shim *s)
{
	/* What freeing the agent client cancels is no news about the VM. */
	s->vm_lost = true;
	for (struct ctr *c = s->ctrs; c; c = c->next)
		for (struct proc *p = c->procs; p; p = p->next)
			proc_close_io(p);
	guest_log_stop(s); /* the fd goes with the VM */
	ttrpc_client_free(s->agent);
	s->agent = NULL;
	ev_io_del(s->vm_io);
	s->vm_io = NULL;
	if (s->vm) {
		struct husk_err err = { 0 };
		if (husk_vm_stop(s->vm, 3000, &err) < 0)
			shim_log("stopping the VM: %s", err.msg);
		husk_vm_free(s->vm);
		s->vm = NULL;
	}
	/* Nothing uses the images any more. */
	for (struct ctr *c = s->ctrs; c; c = c->next) {
		ctr_unmount(c);
		husk_image_release(c->image_hold);
		c->image_hold = -1;
	}
}

/* ---- forwarding ---- */

struct fwd;
typedef void (*fwd_hook)(struct fwd *f, ProtobufCMessage *resp);

struct fwd {
	struct shim *s;
	struct ttrpc_call *call; /* NULL once containerd gave up on it */
	struct proc *p;
	fwd_hook hook;
};

static void after_exec(struct fwd *f, ProtobufCMessage *msg);

static void fwd_cancel(struct ttrpc_call *call, void *data)
{
	(void)call;
	struct fwd *f = data;
	f->call = NULL;
}

static void fwd_reply(struct ttrpc_reply *reply, void *data)
{
	struct fwd *f = data;
	if (reply->status.code != TTRPC_OK) {
		if (f->hook == after_exec) /* the agent has no such process */
			proc_drop(f->p);
		if (f->call)
			ttrpc_call_fail(f->call, reply->status.code, "%s", reply->status.message);
	} else if (f->hook) {
		f->hook(f, reply->msg);
	} else if (f->call) {
		ttrpc_call_reply(f->call, reply->msg);
	}
	free(f);
}

static bool agent_up(struct shim *s, struct ttrpc_call *call)
{
	if (s->agent && !s->vm_lost)
		return true;
	ttrpc_call_fail(call, s->vm ? TTRPC_UNAVAILABLE : TTRPC_NOT_FOUND,
			s->vm ? "the container's VM is gone" : "no container in this shim");
	return false;
}

/* Sends `req` to the agent; its reply (or error) goes back to `call`,
 * through `hook` when given (the hook must end the call if f->call). */
static void forward(struct shim *s, struct ttrpc_call *call, const char *method,
		    const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
		    fwd_hook hook, struct proc *p, uint64_t timeout_ns)
{
	if (!agent_up(s, call))
		return;
	struct fwd *f = calloc(1, sizeof(*f));
	if (!f) {
		ttrpc_call_fail(call, TTRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	*f = (struct fwd){ .s = s, .call = call, .p = p, .hook = hook };
	const struct ttrpc_call_opts opts = { .timeout_ns = timeout_ns };
	int r = ttrpc_client_start(s->agent, SHIM_TASK_SERVICE, method, req, NULL, 0, resp_desc,
				   &opts, fwd_reply, f);
	if (r < 0) {
		free(f);
		if (hook == after_exec)
			proc_drop(p);
		ttrpc_call_fail(call, TTRPC_UNAVAILABLE, "%s to the agent: %s", method, strerror(-r));
		return;
	}
	ttrpc_call_defer(call, fwd_cancel, f);
}

static char *vsock_uri(char *buf, size_t len, uint32_t port)
{
	if (!port)
		return (char *)"";
	snprintf(buf, len, "vsock://%u", port);
	return buf;
}

/* ---- Create ---- */

static char *read_file(const char *path, struct husk_err *err)
{
	_cleanup_fd_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		husk_err_sys(err, -errno, "open %s", path);
		return NULL;
	}
	size_t cap = 16384, len = 0;
	char *buf = malloc(cap);
	for (;;) {
		if (!buf) {
			husk_err_set(err, -ENOMEM, "read %s", path);
			return NULL;
		}
		ssize_t n = read(fd, buf + len, cap - len - 1);
		if (n < 0) {
			husk_err_sys(err, -errno, "read %s", path);
			free(buf);
			return NULL;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len + 1 == cap) {
			char *nb = realloc(buf, cap *= 2);
			if (!nb)
				free(buf);
			buf = nb;
		}
	}
	buf[len] = '\0';
	return buf;
}

/* containerd's mounts for the rootfs (snapshotter overlay or bind) onto
 * bundle/rootfs, as containerd's mount.All does. */
static int mount_rootfs(struct ctr *c, const Task(CreateTaskRequest) *r, const char *target,
			struct husk_err *err)
{
	for (size_t i = 0; i < r->n_rootfs; i++) {
		const Containerd__Types__Mount *m = r->rootfs[i];
		unsigned long flags = 0;
		char data[4096] = "";
		size_t dl = 0;
		for (size_t j = 0; j < m->n_options; j++) {
			const char *o = m->options[j];
			if (strcmp(o, "ro") == 0)
				flags |= MS_RDONLY;
			else if (strcmp(o, "rw") == 0)
				;
			else if (strcmp(o, "bind") == 0)
				flags |= MS_BIND;
			else if (strcmp(o, "rbind") == 0)
				flags |= MS_BIND | MS_REC;
			else if (strcmp(o, "nosuid") == 0)
				flags |= MS_NOSUID;
			else if (strcmp(o, "nodev") == 0)
				flags |= MS_NODEV;
			else if (strcmp(o, "noexec") == 0)
				flags |= MS_NOEXEC;
			else {
				int n = snprintf(data + dl, sizeof(data) - dl, "%s%s", dl ? "," : "", o);
				if (n < 0 || (size_t)n >= sizeof(data) - dl)
					return husk_err_set(err, -E2BIG, "rootfs mount %zu: options too long", i);
				dl += (size_t)n;
			}
		}
		const char *type = strcmp(m->type, "bind") == 0 ? NULL : m->type;
		if (mount(m->source, target, type, flags, dl ? data : NULL) < 0)
			return husk_err_sys(err, -errno, "mount %s (%s) on %s", m->source, m->type,
					    target);
		if (!c->rootfs_mount)
			c->rootfs_mount = strdup(target);
	}
	return 0;
}

/* The host directory that becomes the container's rootfs image. */
static int rootfs_dir(struct ctr *c, const Task(CreateTaskRequest) *r, const char *spec,
		      char *out, size_t len, struct husk_err *err)
{
	if (r->n_rootfs) {
		if (husk_path_fmt(out, len, "%s/rootfs", r->bundle) < 0)
			return husk_err_set(err, -ENAMETOOLONG, "bundle %s: path too long", r->bundle);
		return mount_rootfs(c, r, out, err);
	}
	struct json_object *o = json_tokener_parse(spec), *root, *path;
	if (!o)
		return husk_err_set(err, -EINVAL, "%s/config.json: not JSON", r->bundle);
	int rc = 0;
	if (!json_object_object_get_ex(o, "root", &root) ||
	    !json_object_object_get_ex(root, "path", &path) || !json_object_is_type(path, json_type_string))
		rc = husk_err_set(err, -EINVAL, "%s/config.json: no root.path and no rootfs mounts",
				  r->bundle);
	else {
		const char *p = json_object_get_string(path);
		rc = p[0] == '/' ? husk_path_fmt(out, len, "%s", p)
				 : husk_path_fmt(out, len, "%s/%s", r->bundle, p);
		if (rc < 0)
			husk_err_set(err, rc, "root.path %s: too long", p);
	}
	json_object_put(o);
	return rc;
}

static void spec_hostname(const char *spec, char *out, size_t len)
{
	snprintf(out, len, "husk");
	struct json_object *o = json_tokener_parse(spec), *h;
	if (o && json_object_object_get_ex(o, "hostname", &h) && json_object_is_type(h, json_type_string) &&
	    *json_object_get_string(h))
		snprintf(out, len, "%s", json_object_get_string(h));
	json_object_put(o);
}

/* <bundle>/husk-vm names the VM's state directory, for `delete` after a
 * shim that is gone (its config may have named another state_dir). */
static void record_vm_dir(struct shim *s, const char *bundle)
{
	char path[PATH_MAX];
	if (husk_path_fmt(path, sizeof(path), "%s/" SHIM_VM_RECORD, bundle) < 0)
		return;
	FILE *f = fopen(path, "we");
	if (!f || fprintf(f, "%s\n", husk_vm_dir(s->vm)) < 0 || fclose(f) != 0) {
		shim_log("writing %s: %s", path, strerror(errno));
		if (f)
			fclose(f);
	}
}

static void log_config(const struct shim *s, const char *id)
{
	const struct shim_config *c = &s->cfg;
	char mem[32] = "default", cpus[16] = "default";
	if (c->memory_mib)
		snprintf(mem, sizeof(mem), "%u MiB", c->memory_mib);
	if (c->vcpus)
		snprintf(cpus, sizeof(cpus), "%u", c->vcpus);
	shim_log("container %s: config %s: vcpus %s, memory %s, accel %s", id,
		 *c->sources ? c->sources : "(defaults)", cpus, mem, husk_accel_name(c->accel));
	if (*c->warning)
		shim_log_at("warning", NULL, "container %s: %s", id, c->warning);
}

/* The container's rootfs as an image: made (or found in the cache) from
 * containerd's mounts or root.path, held until the VM no longer uses it. */
static int ctr_image(struct ctr *c, const Task(CreateTaskRequest) *r, const char *spec,
		     char **image, struct husk_err *err)
{
	char dir[PATH_MAX];
	int rc = rootfs_dir(c, r, spec, dir, sizeof(dir), err);
	if (rc == 0)
		rc = husk_image_from_dir_hold(c->s->cfg.image_cache, dir, image, &c->image_hold,
					      err);
	/* The image is a copy: containerd's mounts are not needed any more. */
	ctr_unmount(c);
	return rc;
}

/* The agent's Sandbox calls for a container: CreateSandbox for the VM's
 * first, then CreateBundle on the container's disk. */
static int guest_bundle(struct shim *s, struct ctr *c, const char *spec, const char *gspec,
			bool first, char **bundle, struct husk_err *err)
{
	char host[256];
	struct husk_agent *a = NULL;
	spec_hostname(spec, host, sizeof(host));
	int rc = husk_agent_open(s->vm, 30000, &a, err);
	if (rc == 0 && first)
		rc = husk_agent_create_sandbox(a, host, err);
	if (rc == 0)
		rc = husk_agent_create_bundle(a, c->id, gspec, c->serial, bundle, err);
	husk_agent_close(a);
	return rc;
}

/* `spec` is containerd's config.json, `gspec` what the guest gets. */
static int boot_vm(struct shim *s, struct ctr *c, const Task(CreateTaskRequest) *r,
		   const char *spec, const char *gspec, char **bundle, struct husk_err *err)
{
	char name[BOOT_NAME_MAX + 1];
	_cleanup_free_ char *kernel = NULL, *initrd = NULL, *image = NULL;
	int rc;
	const struct shim_config *cf = &s->cfg;
	if ((rc = ctr_image(c, r, spec, &image, err)) < 0)
		return rc;
	if (!(kernel = cf->kernel ? strdup(cf->kernel) : husk_default_path("kernel", err)) ||
	    !(initrd = cf->initrd ? strdup(cf->initrd) : husk_default_path("initrd", err)))
		return err && err->code ? err->code : -ENOMEM;
	shim_vm_name(s->opt.namespace_, c->id, name, sizeof(name));
	snprintf(c->serial, sizeof(c->serial), "rootfs0");
	struct husk_disk disk = { .path = image, .serial = c->serial, .readonly = true };
	struct husk_vm_config cfg = {
		.name = name, .state_dir = cf->state_dir, .kernel = kernel, .initrd = initrd,
		.cmdline_extra = cf->cmdline_extra, .qemu = cf->qemu, .vsockd = cf->vsockd,
		.vcpus = cf->vcpus, .memory_mib = cf->memory_mib, .accel = cf->accel,
		.transport = cf->transport, .disks = &disk, .n_disks = 1,
		.debug_console = cf->debug_console, .log_level = (int)cf->log_level,
		.boot_timeout_ms = cf->boot_timeout_ms, .die_with_parent = true,
		/* A pod's later containers come as hot-added disks. */
		.hotplug_slots = c->role == SHIM_POD_SANDBOX ? SHIM_POD_SLOTS : 0,
	};
	if ((rc = husk_vm_start(&cfg, &s->vm, err)) < 0)
		return rc;
	record_vm_dir(s, c->bundle);
	if ((rc = guest_log_start(s, err)) < 0 ||
	    (rc = guest_bundle(s, c, spec, gspec, true, bundle, err)) < 0)
		return rc;
	int fd = husk_vm_connect(s->vm, HUSK_AGENT_PORT, 0, err);
	if (fd < 0)
		return fd;
	if ((rc = ttrpc_client_new(s->loop, fd, &s->agent, err)) < 0)
		return rc;
	ttrpc_client_on_close(s->agent, on_agent_closed, s);
	int pfd = husk_vm_pidfd(s->vm);
	if (pfd >= 0 && (rc = ev_io_add(s->loop, pfd, EPOLLIN, on_vm_exit, s, &s->vm_io, err)) < 0)
		return rc;
	guest_events_start(s);
	return 0;
}

/* A pod's container joins its sandbox's VM: its rootfs disk is hot-added. */
static int join_vm(struct shim *s, struct ctr *c, const Task(CreateTaskRequest) *r,
		   const char *spec, const char *gspec, char **bundle, struct husk_err *err)
{
	_cleanup_free_ char *image = NULL;
	int rc;
	if ((rc = ctr_image(c, r, spec, &image, err)) < 0)
		return rc;
	snprintf(c->serial, sizeof(c->serial), "rootfs%u", ++s->disks_added);
	struct husk_disk disk = { .path = image, .serial = c->serial, .readonly = true };
	if ((rc = husk_vm_add_disk(s->vm, &disk, err)) < 0)
		return husk_err_wrap(err, "adding its rootfs to the pod's VM");
	c->hotplugged = true;
	return guest_bundle(s, c, spec, gspec, false, bundle, err);
}

/* A joined container leaves the VM: its disk goes (the agent has unmounted
 * it), and so do its host-side mounts and image hold. */
static void ctr_leave_vm(struct ctr *c)
{
	struct shim *s = c->s;
	if (c->hotplugged && s->vm && !s->vm_lost) {
		struct husk_err err = { 0 };
		if (husk_vm_remove_disk(s->vm, c->serial, 0, &err) < 0)
			shim_log("container %s: %s", c->id, err.msg);
	}
	c->hotplugged = false;
	ctr_unmount(c);
	/* QEMU keeps the file open until the guest lets the slot go; its own
	 * lock keeps a prune away until then. */
	husk_image_release(c->image_hold);
	c->image_hold = -1;
}

static void after_create(struct fwd *f, ProtobufCMessage *msg)
{
	struct shim *s = f->s;
	struct proc *p = f->p;
	const Task(CreateTaskResponse) *resp = (const Task(CreateTaskResponse) *)msg;
	struct husk_err err = { 0 };
	p->pid = resp->pid;
	if (proc_connect_io(p, &err) < 0) {
		shim_log("create %s: %s", p->c->id, err.msg);
		if (f->call)
			ttrpc_call_fail(f->call, TTRPC_INTERNAL, "stdio of %s: %s", p->c->id,
					err.msg);
		return;
	}
	Ev(TaskIO) io = CONTAINERD__EVENTS__TASK_IO__INIT;
	io.stdin = p->stdin_path;
	io.stdout = p->stdout_path;
	io.stderr = p->stderr_path;
	io.terminal = p->terminal;
	Ev(TaskCreate) ev = CONTAINERD__EVENTS__TASK_CREATE__INIT;
	ev.container_id = p->c->id;
	ev.bundle = p->c->bundle;
	ev.io = &io;
	ev.pid = p->pid;
	shim_publish(s, "/tasks/create", &ev.base);
	if (f->call)
		ttrpc_call_reply(f->call, msg);
}

/* Whether container `r` may be created in this shim, and how: a VM of its
 * own (the shim's first), or joining the pod's sandbox's VM. */
static bool create_allowed(struct shim *s, struct ttrpc_call *call,
			   const Task(CreateTaskRequest) *r, enum shim_pod_role role,
			   const char *sandbox)
{
	struct ctr *owner = s->ctrs;
	if (shim_ctr_find(s, r->id)) {
		ttrpc_call_fail(call, TTRPC_ALREADY_EXISTS, "container %s: already exists", r->id);
		return false;
	}
	if (role != SHIM_POD_CONTAINER) {
		if (owner)
			ttrpc_call_fail(call, TTRPC_ALREADY_EXISTS,
					"this shim already runs container %s", owner->id);
		return !owner;
	}
	if (!owner || owner->role != SHIM_POD_SANDBOX || strcmp(owner->id, sandbox) != 0) {
		ttrpc_call_fail(call, TTRPC_FAILED_PRECONDITION,
				"container %s: its pod sandbox %s does not run in this shim", r->id,
				sandbox);
		return false;
	}
	if (owner->deleted || !s->vm || s->vm_lost || !owner->procs || !owner->procs->pid) {
		ttrpc_call_fail(call, TTRPC_FAILED_PRECONDITION,
				"container %s: pod sandbox %s is not running", r->id, sandbox);
		return false;
	}
	return true;
}

static void on_create(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct shim *s = data;
	const Task(CreateTaskRequest) *r = (const Task(CreateTaskRequest) *)req;
	struct husk_err err = { 0 };
	if (*r->checkpoint) {
		ttrpc_call_fail(call, TTRPC_UNIMPLEMENTED, "checkpoint/restore is not supported");
		return;
	}
	char path[PATH_MAX], sandbox[256];
	_cleanup_free_ char *spec = NULL, *gspec = NULL, *guest_bundle = NULL;
	enum shim_pod_role role;
	if (husk_path_fmt(path, sizeof(path), "%s/config.json", r->bundle) < 0) {
		ttrpc_call_fail(call, TTRPC_INVALID_ARGUMENT, "bundle %s: path too long", r->bundle);
		return;
	}
	if (!(spec = read_file(path, &err)) ||
	    shim_pod_role(spec, &role, sandbox, sizeof(sandbox), &err) < 0) {
		ttrpc_call_fail(call, TTRPC_INVALID_ARGUMENT, "create %s: %s", r->id, err.msg);
		return;
	}
	if (!create_allowed(s, call, r, role, sandbox))
		return;
	bool join = role == SHIM_POD_CONTAINER;
	/* A bad config is the caller's error, named as such. A pod's later
	 * containers run in the VM the sandbox's config made. */
	if (!join) {
		if (shim_config_load(&s->cfg, r->options ? r->options : s->opt.start_options,
				     &err) < 0) {
			shim_log("create %s: %s", r->id, err.msg);
			ttrpc_call_fail(call, TTRPC_INVALID_ARGUMENT, "create %s: %s", r->id,
					err.msg);
			return;
		}
		log_config(s, r->id);
	}
	if (role != SHIM_POD_NONE &&
	    !(gspec = shim_pod_rewrite_spec(spec, role, join ? s->ctrs->procs->pid : 0, &err))) {
		ttrpc_call_fail(call, TTRPC_INVALID_ARGUMENT, "create %s: %s", r->id, err.msg);
		return;
	}
	struct ctr *c = ctr_new(s, r->id, r->bundle, role);
	if (!c) {
		ttrpc_call_fail(call, TTRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	struct logger *lg = NULL;
	const char *guest_spec = gspec ? gspec : spec;
	if (open_logger(s, r->id, r->bundle, r->stdout, &lg, &err) < 0 ||
	    (join ? join_vm(s, c, r, spec, guest_spec, &guest_bundle, &err)
		  : boot_vm(s, c, r, spec, guest_spec, &guest_bundle, &err)) < 0) {
		logger_free(lg);
		shim_log("create %s: %s", r->id, err.msg);
		if (join) {
			ctr_leave_vm(c);
		} else {
			if (s->vm) {
				char tail[1024];
				husk_vm_console_tail(s->vm, tail, sizeof(tail));
				if (*tail)
					shim_log("guest console (last lines):\n%s", tail);
			}
			shim_vm_teardown(s);
		}
		c->deleted = true;
		ttrpc_call_fail(call, err.code == -ENOENT ? TTRPC_NOT_FOUND : TTRPC_INTERNAL,
				"create %s: %s", r->id, err.msg);
		return;
	}
	struct proc *p = proc_new(c, "", r->stdin, r->stdout, r->stderr, r->terminal);
	if (!p) {
		logger_free(lg);
		ttrpc_call_fail(call, TTRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	p->logger = lg;
	char in[32], out[32], er[32];
	Task(CreateTaskRequest) fr = *r;
	fr.bundle = guest_bundle;
	fr.n_rootfs = 0;
	fr.rootfs = NULL;
	fr.stdin = vsock_uri(in, sizeof(in), p->ports.in);
	fr.stdout = vsock_uri(out, sizeof(out), p->ports.out);
	fr.stderr = vsock_uri(er, sizeof(er), p->ports.err);
	fr.options = NULL;
	forward(s, call, "Create", &fr.base, &containerd__task__v2__create_task_response__descriptor,
		after_create, p, AGENT_TIMEOUT_NS);
}

/* ---- Start, Exec ---- */

static void on_agent_wait(struct ttrpc_reply *reply, void *data)
{
	struct proc *p = data;
	if (reply->status.code != TTRPC_OK) {
		/* The transport failed, not the container: say which. */
		shim_log("wait for %s: %s: %s", task_id(p), ttrpc_code_name(reply->status.code),
			 reply->status.message);
		shim_vm_lost(p->s, "the agent stopped answering");
		proc_set_exit(p, SHIM_VM_LOST_STATUS, NULL);
		proc_maybe_exited(p);
		return;
	}
	const Task(WaitResponse) *w = (const Task(WaitResponse) *)reply->msg;
	struct timespec at = { 0 };
	if (w->exited_at) {
		at.tv_sec = w->exited_at->seconds;
		at.tv_nsec = w->exited_at->nanos;
	} else {
		clock_gettime(CLOCK_REALTIME, &at);
	}
	proc_set_exit(p, w->exit_status, &at);
	/* SIGKILL may be the OOM killer's: /tasks/oom goes first if so. */
	if (w->exit_status == 128 + 9)
		guest_oom_check(p->c, p);
	proc_maybe_exited(p);
}

static void after_start(struct fwd *f, ProtobufCMessage *msg)
{
	struct shim *s = f->s;
	struct proc *p = f->p;
	const Task(StartResponse) *resp = (const Task(StartResponse) *)msg;
	p->started = true;
	if (resp->pid)
		p->pid = resp->pid;
	Task(WaitRequest) wr = CONTAINERD__TASK__V2__WAIT_REQUEST__INIT;
	wr.id = p->c->id;
	wr.exec_id = p->exec_id;
	int r = ttrpc_client_start(s->agent, SHIM_TASK_SERVICE, "Wait", &wr.base, NULL, 0,
				   &containerd__task__v2__wait_response__descriptor, NULL,
				   on_agent_wait, p);
	if (r < 0) {
		shim_log("wait for %s: %s", task_id(p), strerror(-r));
		proc_set_exit(p, SHIM_VM_LOST_STATUS, NULL);
	}
	if (*p->exec_id) {
		Ev(TaskExecStarted) ev = CONTAINERD__EVENTS__TASK_EXEC_STARTED__INIT;
		ev.container_id = p->c->id;
		ev.exec_id = p->exec_id;
		ev.pid = p->pid;
		shim_publish(s, "/tasks/exec-started", &ev.base);
	} else {
		Ev(TaskStart) ev = CONTAINERD__EVENTS__TASK_START__INIT;
		ev.container_id = p->c->id;
		ev.pid = p->pid;
		shim_publish(s, "/tasks/start", &ev.base);
	}
	if (f->call)
		ttrpc_call_reply(f->call, msg);
	proc_maybe_exited(p);
}

static struct proc *lookup(struct shim *s, struct ttrpc_call *call, const char *id,
			   const char *exec_id)
{
	struct ctr *c = shim_ctr_find(s, id);
	if (!c) {
		ttrpc_call_fail(call, TTRPC_NOT_FOUND, "container %s: not found", id);
		return NULL;
	}
	struct proc *p = proc_find(c, exec_id);
	if (!p)
		ttrpc_call_fail(call, TTRPC_NOT_FOUND, "process %s in container %s: not found",
				exec_id && *exec_id ? exec_id : "init", id);
	return p;
}

static void forward_start(struct proc *p, struct ttrpc_call *call)
{
	Task(StartRequest) req = CONTAINERD__TASK__V2__START_REQUEST__INIT;
	req.id = p->c->id;
	req.exec_id = p->exec_id;
	forward(p->s, call, "Start", &req.base, &containerd__task__v2__start_response__descriptor,
		after_start, p, AGENT_TIMEOUT_NS);
}

static void start_cancel(struct ttrpc_call *call, void *data)
{
	(void)call;
	struct proc *p = data;
	p->start_call = NULL;
}

static void on_logger_ready(void *data)
{
	struct proc *p = data;
	struct ttrpc_call *call = take_ptr(p->start_call);
	if (call)
		forward_start(p, call);
}

static void on_start(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct shim *s = data;
	const Task(StartRequest) *r = (const Task(StartRequest) *)req;
	struct proc *p = lookup(s, call, r->id, r->exec_id);
	if (!p)
		return;
	/* As containerd: nothing runs before its logger is ready. */
	if (p->logger && !logger_ready(p->logger)) {
		if (p->start_call) {
			ttrpc_call_fail(call, TTRPC_FAILED_PRECONDITION, "%s: already starting",
					task_id(p));
			return;
		}
		p->start_call = call;
		logger_when_ready(p->logger, on_logger_ready, p);
		ttrpc_call_defer(call, start_cancel, p);
		return;
	}
	forward_start(p, call);
}

static void after_exec(struct fwd *f, ProtobufCMessage *msg)
{
	struct shim *s = f->s;
	struct proc *p = f->p;
	struct husk_err err = { 0 };
	if (proc_connect_io(p, &err) < 0) {
		shim_log("exec %s: %s", p->exec_id, err.msg);
		proc_drop(p);
		if (f->call)
			ttrpc_call_fail(f->call, TTRPC_INTERNAL, "stdio of exec %s: %s", p->exec_id,
					err.msg);
		return;
	}
	Ev(TaskExecAdded) ev = CONTAINERD__EVENTS__TASK_EXEC_ADDED__INIT;
	ev.container_id = p->c->id;
	ev.exec_id = p->exec_id;
	shim_publish(s, "/tasks/exec-added", &ev.base);
	if (f->call)
		ttrpc_call_reply(f->call, msg);
}

static void on_exec(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct shim *s = data;
	const Task(ExecProcessRequest) *r = (const Task(ExecProcessRequest) *)req;
	struct proc *init = lookup(s, call, r->id, "");
	if (!init || !agent_up(s, call))
		return;
	struct ctr *c = init->c;
	if (!*r->exec_id || proc_find(c, r->exec_id)) {
		ttrpc_call_fail(call, TTRPC_ALREADY_EXISTS, "exec %s: already exists or empty",
				r->exec_id);
		return;
	}
	struct husk_err err = { 0 };
	struct logger *lg = NULL;
	if (open_logger(s, r->exec_id, c->bundle, r->stdout, &lg, &err) < 0) {
		ttrpc_call_fail(call, TTRPC_INVALID_ARGUMENT, "exec %s: %s", r->exec_id, err.msg);
		return;
	}
	struct proc *p = proc_new(c, r->exec_id, r->stdin, r->stdout, r->stderr, r->terminal);
	if (!p) {
		logger_free(lg);
		ttrpc_call_fail(call, TTRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	p->logger = lg;
	char in[32], out[32], er[32];
	Task(ExecProcessRequest) fr = *r;
	fr.stdin = vsock_uri(in, sizeof(in), p->ports.in);
	fr.stdout = vsock_uri(out, sizeof(out), p->ports.out);
	fr.stderr = vsock_uri(er, sizeof(er), p->ports.err);
	/* An Exec the agent refused leaves no process behind (fwd_reply). */
	forward(s, call, "Exec", &fr.base, &google__protobuf__empty__descriptor, after_exec, p,
		AGENT_TIMEOUT_NS);
}

/* ---- Wait, State, Kill, Delete ---- */

static void wait_cancel(struct ttrpc_call *call, void *data)
{
	struct waiter *w = data;
	for (struct waiter **pp = &w->p->waiters; *pp; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	(void)call;
	free(w);
}

static void on_wait(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct shim *s = data;
	const Task(WaitRequest) *r = (const Task(WaitRequest) *)req;
	struct proc *p = lookup(s, call, r->id, r->exec_id);
	if (!p)
		return;
	if (p->exited) {
		reply_wait(call, p);
		return;
	}
	struct waiter *w = calloc(1, sizeof(*w));
	if (!w) {
		ttrpc_call_fail(call, TTRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	w->call = call;
	w->p = p;
	w->next = p->waiters;
	p->waiters = w;
	ttrpc_call_defer(call, wait_cancel, w);
}

static void state_local(struct ttrpc_call *call, struct proc *p)
{
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	Task(StateResponse) resp = CONTAINERD__TASK__V2__STATE_RESPONSE__INIT;
	resp.id = (char *)task_id(p);
	resp.bundle = p->c->bundle;
	resp.pid = p->pid;
	resp.stdin = p->stdin_path;
	resp.stdout = p->stdout_path;
	resp.stderr = p->stderr_path;
	resp.terminal = p->terminal;
	resp.exec_id = p->exec_id;
	if (p->exited || p->wait_done) {
		resp.status = CONTAINERD__V1__TYPES__STATUS__STOPPED;
		resp.exit_status = p->status;
		fill_ts(&ts, &p->exited_at);
		resp.exited_at = &ts;
	} else {
		resp.status = p->started ? CONTAINERD__V1__TYPES__STATUS__UNKNOWN
					 : CONTAINERD__V1__TYPES__STATUS__CREATED;
	}
	ttrpc_call_reply(call, &resp.base);
}

static void after_state(struct fwd *f, ProtobufCMessage *msg)
{
	Task(StateResponse) *resp = (Task(StateResponse) *)msg;
	struct proc *p = f->p;
	if (!f->call)
		return;
	/* The agent's view, with containerd's own paths put back; an exit
	 * is shown only once containerd can see it through Wait. */
	if (resp->status == CONTAINERD__V1__TYPES__STATUS__STOPPED && !p->exited) {
		resp->status = CONTAINERD__V1__TYPES__STATUS__RUNNING;
		resp->exit_status = 0;
	}
	Task(StateResponse) out = *resp;
	out.id = (char *)task_id(p);
	out.bundle = p->c->bundle;
	out.stdin = p->stdin_path;
	out.stdout = p->stdout_path;
	out.stderr = p->stderr_path;
	ttrpc_call_reply(f->call, &out.base);
}

static void on_state(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct shim *s = data;
	const Task(StateRequest) *r = (const Task(StateRequest) *)req;
	struct proc *p = lookup(s, call, r->id, r->exec_id);
	if (!p)
		return;
	if (s->vm_lost || !s->agent || p->exited)
		state_local(call, p);
	else
		forward(s, call, "State", req, &containerd__task__v2__state_response__descriptor,
			after_state, p, AGENT_TIMEOUT_NS);
}

static void on_kill(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct shim *s = data;
	const Task(KillRequest) *r = (const Task(KillRequest) *)req;
	struct proc *p = lookup(s, call, r->id, r->exec_id);
	if (!p)
		return;
	if (p->exited || s->vm_lost) {
		ttrpc_call_fail(call, TTRPC_NOT_FOUND, "process %s: already finished", task_id(p));
		return;
	}
	forward(s, call, "Kill", req, &google__protobuf__empty__descriptor, NULL, p,
		AGENT_TIMEOUT_NS);
}

static void reply_delete(struct ttrpc_call *call, const struct proc *p)
{
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	fill_ts(&ts, &p->exited_at);
	Task(DeleteResponse) resp = CONTAINERD__TASK__V2__DELETE_RESPONSE__INIT;
	resp.pid = p->pid;
	resp.exit_status = p->status;
	resp.exited_at = &ts;
	ttrpc_call_reply(call, &resp.base);
}

static void teardown_cb(void *data)
{
	struct shim *s = data;
	/* A pod's sandbox deleted under its containers: they lose the VM. */
	for (struct ctr *c = s->ctrs; c; c = c->next)
		if (!c->deleted) {
			shim_vm_lost(s, "the pod's sandbox was deleted");
			break;
		}
	shim_vm_teardown(s);
}

static void on_logger_gone(void *data)
{
	struct proc *p = data;
	struct ttrpc_call *call = take_ptr(p->delete_call);
	if (call)
		reply_delete(call, p);
}

static void delete_cancel(struct ttrpc_call *call, void *data)
{
	(void)call;
	struct proc *p = data;
	p->delete_call = NULL;
}

static void finish_delete(struct ttrpc_call *call, struct proc *p)
{
	struct shim *s = p->s;
	struct ctr *c = p->c;
	if (!p->wait_done) /* deleted before it ran: as runc, "killed" */
		proc_set_exit(p, 128 + 9, NULL);
	p->deleted = true;
	proc_close_io(p);
	if (!*p->exec_id) {
		c->deleted = true;
		if (c == s->ctrs) {
			/* The VM's owner is gone: so is its VM. Not from here:
			 * this may run inside a callback of the agent client
			 * that goes with it. */
			s->teardown.fn = teardown_cb;
			s->teardown.data = s;
			ev_defer(s->loop, &s->teardown);
		} else {
			ctr_leave_vm(c);
		}
		Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
		fill_ts(&ts, &p->exited_at);
		Ev(TaskDelete) ev = CONTAINERD__EVENTS__TASK_DELETE__INIT;
		ev.container_id = c->id;
		ev.pid = p->pid;
		ev.exit_status = p->status;
		ev.exited_at = &ts;
		ev.id = c->id;
		shim_publish(s, "/tasks/delete", &ev.base);
	}
	/* As containerd-shim-runc-v2: the reply waits for the logger. */
	if (call && p->logger && logger_stop(p->logger, on_logger_gone, p)) {
		p->delete_call = call;
		ttrpc_call_defer(call, delete_cancel, p);
		return;
	}
	if (call)
		reply_delete(call, p);
}

static void after_delete(struct fwd *f, ProtobufCMessage *msg)
{
	const Task(DeleteResponse) *resp = (const Task(DeleteResponse) *)msg;
	struct proc *p = f->p;
	if (!p->wait_done) {
		struct timespec at = { 0 };
		if (resp->exited_at) {
			at.tv_sec = resp->exited_at->seconds;
			at.tv_nsec = resp->exited_at->nanos;
		}
		proc_set_exit(p, resp->exit_status, resp->exited_at ? &at : NULL);
	}
	finish_delete(f->call, p);
}

static void on_delete(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct shim *s = data;
	const Task(DeleteRequest) *r = (const Task(DeleteRequest) *)req;
	struct proc *p = lookup(s, call, r->id, r->exec_id);
	if (!p)
		return;
	if (!*p->exec_id) {
		for (struct proc *q = p->c->procs; q; q = q->next)
			if (q != p && !q->deleted && !q->exited && q->started && !s->vm_lost) {
				ttrpc_call_fail(call, TTRPC_FAILED_PRECONDITION,
						"container %s: exec %s is still running", p->c->id,
						q->exec_id);
				return;
			}
	}
	if (p->started && !p->exited && !s->vm_lost) {
		ttrpc_call_fail(call, TTRPC_FAILED_PRECONDITION, "process %s: still running",
				task_id(p));
		return;
	}
	if (s->vm_lost || !s->agent)
		finish_delete(call, p);
	else
		forward(s, call, "Delete", req, &containerd__task__v2__delete_response__descriptor,
			after_delete, p, AGENT_TIMEOUT_NS);
}

/* ---- the rest ---- */

static void on_pids(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct shim *s = data;
	const Task(PidsRequest) *r = (const Task(PidsRequest) *)req;
	if (lookup(s, call, r->id, ""))
		forward(s, call, "Pids", req, &containerd__task__v2__pids_response__descriptor, NULL,
			NULL, AGENT_TIMEOUT_NS);
}

static void after_pause(struct fwd *f, ProtobufCMessage *msg)
{
	Ev(TaskPaused) ev = CONTAINERD__EVENTS__TASK_PAUSED__INIT;
	ev.container_id = f->p->c->id;
	shim_publish(f->s, "/tasks/paused", &ev.base);
	if (f->call)
		ttrpc_call_reply(f->call, msg);
}

static void after_resume(struct fwd *f, ProtobufCMessage *msg)
{
	Ev(TaskResumed) ev = CONTAINERD__EVENTS__TASK_RESUMED__INIT;
	ev.container_id = f->p->c->id;
	shim_publish(f->s, "/tasks/resumed", &ev.base);
	if (f->call)
		ttrpc_call_reply(f->call, msg);
}

static void on_pause_resume(struct ttrpc_call *call, const ProtobufCMessage *req, void *data,
			    bool pause)
{
	struct shim *s = data;
	/* PauseRequest and ResumeRequest both carry only id (field 1). */
	const Task(PauseRequest) *r = (const Task(PauseRequest) *)req;
	struct proc *init = lookup(s, call, r->id, "");
	if (init)
		forward(s, call, pause ? "Pause" : "Resume", req, &google__protobuf__empty__descriptor,
			pause ? after_pause : after_resume, init, AGENT_TIMEOUT_NS);
}

static void on_pause(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	on_pause_resume(call, req, data, true);
}

static void on_resume(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	on_pause_resume(call, req, data, false);
}

static void on_simple(struct ttrpc_call *call, const ProtobufCMessage *req, void *data,
		      const char *method, const char *id, const char *exec_id,
		      const ProtobufCMessageDescriptor *resp)
{
	struct shim *s = data;
	struct proc *p = lookup(s, call, id, exec_id);
	if (p)
		forward(s, call, method, req, resp, NULL, p, AGENT_TIMEOUT_NS);
}

static void on_resize_pty(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	const Task(ResizePtyRequest) *r = (const Task(ResizePtyRequest) *)req;
	on_simple(call, req, data, "ResizePty", r->id, r->exec_id, &google__protobuf__empty__descriptor);
}

static void on_update(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	const Task(UpdateTaskRequest) *r = (const Task(UpdateTaskRequest) *)req;
	on_simple(call, req, data, "Update", r->id, "", &google__protobuf__empty__descriptor);
}

static void on_stats(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	const Task(StatsRequest) *r = (const Task(StatsRequest) *)req;
	/* The agent's Any (io.containerd.cgroups.v2.Metrics) passes through. */
	on_simple(call, req, data, "Stats", r->id, "", &containerd__task__v2__stats_response__descriptor);
}

static void on_close_io(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct shim *s = data;
	const Task(CloseIORequest) *r = (const Task(CloseIORequest) *)req;
	struct proc *p = lookup(s, call, r->id, r->exec_id);
	if (!p)
		return;
	/* Our vsock stream's EOF is the guest process's stdin EOF. */
	if (s->opt.debug)
		shim_log("CloseIO %s stdin=%d relay=%p", task_id(p), r->stdin, (void *)p->in);
	if (r->stdin)
		relay_close_input(p->in);
	ttrpc_call_reply(call, &empty.base);
}

static void on_connect(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct shim *s = data;
	(void)req;
	struct proc *init = s->ctrs ? s->ctrs->procs : NULL;
	Task(ConnectResponse) resp = CONTAINERD__TASK__V2__CONNECT_RESPONSE__INIT;
	resp.shim_pid = (uint32_t)getpid();
	resp.task_pid = init ? init->pid : 0;
	resp.version = "husk";
	ttrpc_call_reply(call, &resp.base);
}

static void stop_loop(void *data)
{
	struct shim *s = data;
	ev_stop(s->loop);
}

static void on_shutdown(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct shim *s = data;
	const Task(ShutdownRequest) *r = (const Task(ShutdownRequest) *)req;
	bool live = false;
	for (struct ctr *c = s->ctrs; c; c = c->next)
		live |= !c->deleted;
	/* As the runc shim: exit only once every container is gone, unless
	 * told "now". The reply goes out before the loop stops. */
	ttrpc_call_reply(call, &empty.base);
	if (r->now || !live) {
		s->stop.fn = stop_loop;
		s->stop.data = s;
		ev_defer(s->loop, &s->stop);
	}
}

int shim_service_register(struct shim *s, struct husk_err *err)
{
	static const struct ttrpc_named_method methods[] = {
		{ "State", on_state },	   { "Create", on_create },	  { "Start", on_start },
		{ "Delete", on_delete },   { "Pids", on_pids },		  { "Pause", on_pause },
		{ "Resume", on_resume },   { "Kill", on_kill },		  { "Exec", on_exec },
		{ "ResizePty", on_resize_pty }, { "CloseIO", on_close_io }, { "Update", on_update },
		{ "Wait", on_wait },	   { "Stats", on_stats },	  { "Connect", on_connect },
		{ "Shutdown", on_shutdown },
		/* Checkpoint: no handler, answered UNIMPLEMENTED */
	};
	return ttrpc_server_add_service_named(s->server, &containerd__task__v2__task__descriptor,
					      methods, ARRAY_SIZE(methods), s, err);
}
