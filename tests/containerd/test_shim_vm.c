/* The shim's VM lifecycle (host-connector/shim/vm.c) without QEMU: libhusk's
 * fake VMM backend (vmm = "fake") runs tests/containerd/fake_agent.c as the
 * whole VM, the shim's worker and loop run as in the shim, and every check
 * looks from outside: the backend's call log ($HUSK_FAKE_VMM_LOG), the
 * agent's ($FAKE_AGENT_LOG), the image cache's holds, the VM's state
 * directory, the stand-in's process.
 *
 * Covered: a boot; a pod's container joining (its disk hot-added) and
 * leaving; the teardown (the guest powering off on DestroySandbox, or the
 * backend's stop when it does not); failures halfway through a boot or a
 * join, which leave nothing behind; the VMM killed under running
 * processes. service.c's part (shim_publish, shim_maybe_exit,
 * shim_reported_pid) is stubbed here and recorded.
 *
 * fake-agent is looked for next to this program ($FAKE_AGENT overrides);
 * SHIM_VM_TEST_DEBUG=1 logs the VM's state changes. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "github.com/containerd/containerd/api/events/task.pb-c.h"
#include "github.com/containerd/containerd/runtime/v2/task/shim.pb-c.h"
#include "husk/cleanup.h"
#include "../../host-connector/shim/vm.h"

/* Only to end a broken run: nothing here is timed. The longest wait is a
 * teardown whose guest ignores DestroySandbox (vm.c's 3 s grace, then
 * SIGTERM). */
#define WAIT_NS (30ull * 1000000000ull)
#define NS "default"

static char agent_bin[PATH_MAX];

/* ---- what service.c would do, recorded ---- */

struct published {
	char topic[32];
	char id[64];
	uint32_t status, pid;
};
static struct published pubs[32];
static unsigned n_pubs, n_maybe_exit;

void shim_publish(struct shim *s, const char *topic, const ProtobufCMessage *event)
{
	(void)s;
	if (n_pubs >= ARRAY_SIZE(pubs))
		return;
	struct published *p = &pubs[n_pubs++];
	snprintf(p->topic, sizeof(p->topic), "%s", topic);
	if (strcmp(topic, "/tasks/exit") == 0) {
		const Containerd__Events__TaskExit *e = (const Containerd__Events__TaskExit *)event;
		snprintf(p->id, sizeof(p->id), "%s", e->id);
		p->status = e->exit_status;
		p->pid = e->pid;
	}
}

uint32_t shim_reported_pid(const struct proc *p)
{
	return p->state == PROC_CREATING ? 0 : (uint32_t)p->s->vm.vmm_pid;
}

void shim_maybe_exit(struct shim *s)
{
	(void)s;
	n_maybe_exit++;
}

static unsigned exits_published(const char *id)
{
	unsigned n = 0;
	for (unsigned i = 0; i < n_pubs; i++)
		n += strcmp(pubs[i].topic, "/tasks/exit") == 0 && (!id || strcmp(pubs[i].id, id) == 0);
	return n;
}

/* ---- the fixture ---- */

struct t {
	char dir[64];
	char state[PATH_MAX], cache[PATH_MAX], vmm_log[PATH_MAX], agent_log[PATH_MAX];
	char kernel[PATH_MAX], initrd[PATH_MAX];
	char rootfs_a[PATH_MAX], rootfs_b[PATH_MAX];
	struct shim s;
};

/* One vm_create's outcome. */
struct done {
	bool called;
	int rc;
	char msg[512];
	char bundle[256];
};

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "we");
	assert_non_null(f);
	assert_true(fputs(text, f) >= 0);
	assert_int_equal(fclose(f), 0);
}

static void make_dir(const char *path)
{
	assert_int_equal(mkdir(path, 0700), 0);
}

/* "<base>/<name>" into out. */
static void path_of(char *out, const char *base, const char *name)
{
	int n = snprintf(out, PATH_MAX, "%s/%s", base, name);
	assert_true(n > 0 && n < PATH_MAX);
}

static int setup(void **state)
{
	struct t *t = calloc(1, sizeof(*t));
	assert_non_null(t);
	*state = t;
	snprintf(t->dir, sizeof(t->dir), "/tmp/shimvm.XXXXXX");
	assert_non_null(mkdtemp(t->dir));
	path_of(t->state, t->dir, "state");
	path_of(t->cache, t->dir, "cache");
	path_of(t->vmm_log, t->dir, "fake-vmm.log");
	path_of(t->agent_log, t->dir, "fake-agent.log");
	/* The fake ignores them; libhusk wants them to exist. */
	path_of(t->kernel, t->dir, "bzImage");
	path_of(t->initrd, t->dir, "initrd");
	write_file(t->kernel, "");
	write_file(t->initrd, "");
	/* Two rootfs trees of different content: two images. */
	char p[PATH_MAX];
	path_of(t->rootfs_a, t->dir, "rootfs-a");
	path_of(t->rootfs_b, t->dir, "rootfs-b");
	make_dir(t->rootfs_a);
	make_dir(t->rootfs_b);
	path_of(p, t->rootfs_a, "hello");
	write_file(p, "a\n");
	path_of(p, t->rootfs_b, "hello");
	write_file(p, "b\n");

	setenv("HUSK_FAKE_VMM_LOG", t->vmm_log, 1);
	setenv("FAKE_AGENT_LOG", t->agent_log, 1);
	unsetenv("HUSK_FAKE_VMM_FAIL");
	unsetenv("FAKE_AGENT_FAIL");
	n_pubs = n_maybe_exit = 0;

	/* As main.c's serve() sets it up, without the server and publisher. */
	struct shim *s = &t->s;
	struct husk_err err = { 0 };
	s->opt.namespace_ = NS;
	s->opt.id = "c1";
	s->opt.debug = getenv("SHIM_VM_TEST_DEBUG") != NULL;
	s->vm.vsockd_pidfd = -1;
	if (ev_loop_new(&s->loop, &err) < 0 || shim_worker_new(s->loop, &s->worker, &err) < 0)
		fail_msg("%s", err.msg);
	s->cfg = (struct shim_config){
		.vmm = (char *)"fake",
		.vmm_binary = agent_bin,
		.kernel = t->kernel,
		.initrd = t->initrd,
		.state_dir = t->state,
		.image_cache = t->cache,
		.accel = HUSK_ACCEL_TCG,
		.transport = HUSK_TRANSPORT_UNIX,
		.boot_timeout_ms = 20000,
	};
	return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	remove(path);
	return 0;
}

static int teardown(void **state)
{
	struct t *t = *state;
	struct shim *s = &t->s;
	/* As serve() ends: a job under way finishes, then the VM goes. */
	s->shutting_down = true;
	if (s->worker && !shim_worker_pending(s->worker))
		shim_vm_stop_now(s);
	shim_worker_free(s->worker);
	shim_vm_stop_now(s);
	shim_table_free(s);
	if (s->loop)
		ev_loop_free(s->loop);
	if (t->dir[0])
		nftw(t->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	unsetenv("HUSK_FAKE_VMM_FAIL");
	unsetenv("FAKE_AGENT_FAIL");
	free(t);
	return 0;
}

/* Runs the shim's loop until `cond`; a run that never gets there fails. */
#define RUN_UNTIL(t, cond)                                                                  \
	do {                                                                                \
		uint64_t deadline_ = ev_now_ns() + WAIT_NS;                                 \
		while (!(cond)) {                                                           \
			if (ev_now_ns() > deadline_)                                        \
				fail_msg("%s:%d: gave up waiting for %s", __FILE__, __LINE__, \
					 #cond);                                            \
			assert_true(ev_run_once((t)->s.loop, 50) >= 0);                     \
		}                                                                           \
	} while (0)

/* ---- looking from outside ---- */

/* The lines of `path` that contain every one of the NULL-terminated
 * needles. */
static unsigned count_lines(const char *path, ...)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return 0;
	unsigned n = 0;
	char line[2048];
	while (fgets(line, sizeof(line), f)) {
		va_list ap;
		va_start(ap, path);
		bool all = true;
		for (const char *needle; (needle = va_arg(ap, const char *));)
			all = all && strstr(line, needle);
		va_end(ap);
		n += all;
	}
	fclose(f);
	return n;
}
#define LINES(path, ...) count_lines(path, __VA_ARGS__, (const char *)NULL)

/* The fake agent's pid, from its first CreateSandbox line; 0 if none. */
static pid_t agent_pid(const struct t *t)
{
	FILE *f = fopen(t->agent_log, "re");
	if (!f)
		return 0;
	char line[2048];
	pid_t pid = 0;
	while (!pid && fgets(line, sizeof(line), f))
		if (strstr(line, " CreateSandbox"))
			pid = (pid_t)atoi(line);
	fclose(f);
	return pid;
}

/* Images in the cache, and those held. */
static void images(const struct t *t, size_t *total, size_t *held)
{
	struct husk_image_info *info = NULL;
	struct husk_err err = { 0 };
	size_t n = 0;
	if (husk_image_cache_list(t->cache, &info, &n, &err) < 0)
		fail_msg("%s", err.msg);
	*total = n;
	*held = 0;
	for (size_t i = 0; i < n; i++)
		*held += info[i].in_use;
	free(info);
}

static size_t images_held(const struct t *t)
{
	size_t total, held;
	images(t, &total, &held);
	return held;
}

static void vm_dir(const struct t *t, const char *id, char *out)
{
	char name[64];
	shim_vm_name(NS, id, name, sizeof(name));
	path_of(out, t->state, name);
}

static bool exists(const char *path)
{
	return access(path, F_OK) == 0;
}

/* No child of ours, running or a zombie: every process the VM had is
 * gone and reaped. */
static void assert_no_children(void)
{
	int st;
	pid_t pid = waitpid(-1, &st, WNOHANG);
	if (pid != -1 || errno != ECHILD)
		fail_msg("a child process is left: waitpid gave %d (%s)", (int)pid,
			 pid < 0 ? strerror(errno) : "still there");
}

static void assert_gone(pid_t pid)
{
	assert_true(pid > 0);
	assert_int_equal(kill(pid, 0), -1);
	assert_int_equal(errno, ESRCH);
}

/* ---- driving vm.c ---- */

static void on_done(struct vm_create *vc, int rc, const struct husk_err *err)
{
	struct done *d = vc->data;
	d->called = true;
	d->rc = rc;
	snprintf(d->msg, sizeof(d->msg), "%s", rc < 0 && err ? err->msg : "");
	snprintf(d->bundle, sizeof(d->bundle), "%s", vc->guest_bundle ? vc->guest_bundle : "");
	vm_create_free(vc);
}

/* A container `id` of `role` with its bundle in the temp dir. */
static struct ctr *new_ctr(struct t *t, const char *id, enum shim_pod_role role)
{
	char bundle[PATH_MAX];
	path_of(bundle, t->dir, id);
	make_dir(bundle);
	struct ctr *c = ctr_new(&t->s, id, bundle, role);
	assert_non_null(c);
	return c;
}

static struct vm_create *new_vc(struct t *t, struct ctr *c, const char *rootfs, struct done *d)
{
	struct vm_create *vc = vm_create_new(&t->s, c);
	assert_non_null(vc);
	vc->src.dir = strdup(rootfs);
	vc->guest_spec = strdup("{\"ociVersion\":\"1.0.2\",\"root\":{\"path\":\"rootfs\"}}");
	assert_non_null(vc->src.dir);
	assert_non_null(vc->guest_spec);
	snprintf(vc->hostname, sizeof(vc->hostname), "%s", c->id);
	vc->done = on_done;
	vc->data = d;
	return vc;
}

/* Boots the VM for `c` and runs the loop until done. */
static void boot(struct t *t, struct ctr *c, const char *rootfs, struct done *d)
{
	struct husk_err err = { 0 };
	*d = (struct done){ 0 };
	if (shim_vm_boot(new_vc(t, c, rootfs, d), &err) < 0)
		fail_msg("shim_vm_boot: %s", err.msg);
	assert_int_equal(t->s.vm.state, SHIM_VM_BOOTING);
	RUN_UNTIL(t, d->called);
}

static void join(struct t *t, struct ctr *c, const char *rootfs, struct done *d)
{
	struct husk_err err = { 0 };
	*d = (struct done){ 0 };
	if (shim_vm_join(new_vc(t, c, rootfs, d), &err) < 0)
		fail_msg("shim_vm_join: %s", err.msg);
	RUN_UNTIL(t, d->called);
}

/* The owner booted and running: checked from outside. Returns the VMM's
 * (the fake agent's) pid. */
static pid_t boot_ok(struct t *t, struct ctr *c, const char *rootfs)
{
	struct done d;
	boot(t, c, rootfs, &d);
	if (d.rc < 0)
		fail_msg("boot: %s", d.msg);
	struct shim *s = &t->s;
	assert_int_equal(s->vm.state, SHIM_VM_RUNNING);
	assert_true(shim_vm_up(s));
	assert_ptr_equal(s->vm.owner, c);
	pid_t pid = agent_pid(t);
	assert_true(pid > 0);
	assert_int_equal(s->vm.vmm_pid, pid);
	assert_int_equal(kill(pid, 0), 0);
	/* The backend launched it with the rootfs as its first disk. */
	assert_string_equal(c->serial, "rootfs0");
	assert_int_equal(LINES(t->vmm_log, " launch ", "disks=rootfs0:ro:", "program="), 1);
	/* The agent set the guest up and made the bundle. */
	char want[128];
	snprintf(want, sizeof(want), " id=%s serial=rootfs0", c->id);
	assert_int_equal(LINES(t->agent_log, " CreateSandbox hostname="), 1);
	assert_int_equal(LINES(t->agent_log, " CreateBundle", want), 1);
	snprintf(want, sizeof(want), "/run/husk/bundles/%s", c->id);
	assert_string_equal(d.bundle, want);
	/* The image is held while the VM runs; its state directory is there,
	 * and recorded in the bundle for `delete`. */
	assert_true(c->image_hold >= 0);
	assert_int_equal(images_held(t), 1);
	char dir[PATH_MAX], rec[PATH_MAX], line[PATH_MAX] = "";
	vm_dir(t, c->id, dir);
	assert_true(exists(dir));
	path_of(rec, c->bundle, SHIM_VM_RECORD);
	FILE *f = fopen(rec, "re");
	assert_non_null(f);
	assert_non_null(fgets(line, sizeof(line), f));
	fclose(f);
	line[strcspn(line, "\n")] = '\0';
	assert_string_equal(line, dir);
	return pid;
}

/* Tears the VM down and runs the loop until it is stopped. */
static void teardown_vm(struct t *t)
{
	unsigned maybe_exit = n_maybe_exit;
	shim_vm_teardown(&t->s);
	RUN_UNTIL(t, t->s.vm.state == SHIM_VM_STOPPED);
	assert_true(n_maybe_exit > maybe_exit);
}

/* Nothing of the VM is left: state, images, directory, processes. */
static void assert_vm_gone(struct t *t, const char *owner_id, pid_t pid)
{
	struct shim *s = &t->s;
	char dir[PATH_MAX];
	assert_null(s->vm.vm);
	assert_null(s->vm.agent);
	assert_null(s->vm.owner);
	assert_false(shim_vm_up(s));
	assert_int_equal(images_held(t), 0);
	for (struct ctr *c = s->ctrs; c; c = c->next) {
		assert_int_equal(c->image_hold, -1);
		assert_false(c->disk_added);
	}
	vm_dir(t, owner_id, dir);
	assert_false(exists(dir));
	if (pid)
		assert_gone(pid);
	assert_no_children();
}

/* ---- the tests ---- */

/* Boot, then the owner's delete: the guest powers off on DestroySandbox,
 * so the backend has nothing to stop. */
static void boot_and_teardown(void **state)
{
	struct t *t = *state;
	struct ctr *c1 = new_ctr(t, "c1", SHIM_POD_NONE);
	pid_t pid = boot_ok(t, c1, t->rootfs_a);
	/* Not a pod's sandbox: no hotplug slots. */
	assert_int_equal(LINES(t->vmm_log, " launch ", "slots=0 "), 1);
	/* The shim's own agent connection polls for events. */
	RUN_UNTIL(t, LINES(t->agent_log, " GetEvents after=0") == 1);

	teardown_vm(t);
	assert_int_equal(LINES(t->agent_log, " DestroySandbox"), 1);
	assert_int_equal(LINES(t->vmm_log, " stop"), 0);
	assert_vm_gone(t, "c1", pid);
	/* A second teardown finds nothing to do. */
	shim_vm_teardown(&t->s);
	assert_int_equal(ev_run_once(t->s.loop, 0) >= 0, 1);
	assert_int_equal(t->s.vm.state, SHIM_VM_STOPPED);
	assert_int_equal(LINES(t->agent_log, " DestroySandbox"), 1);
}

/* A guest that will not power off: the backend's stop ends it (SIGTERM),
 * after vm.c's grace. */
static void teardown_guest_refuses(void **state)
{
	struct t *t = *state;
	setenv("FAKE_AGENT_FAIL", "DestroySandbox", 1);
	struct ctr *c1 = new_ctr(t, "c1", SHIM_POD_NONE);
	pid_t pid = boot_ok(t, c1, t->rootfs_a);
	teardown_vm(t);
	assert_int_equal(LINES(t->agent_log, " DestroySandbox"), 1);
	assert_int_equal(LINES(t->vmm_log, " stop"), 1);
	assert_vm_gone(t, "c1", pid);
}

struct wait_result {
	bool done;
	int code;
	uint32_t status;
};

static void on_wait(struct ttrpc_reply *reply, void *data)
{
	struct wait_result *w = data;
	w->done = true;
	w->code = reply->status.code;
	if (reply->status.code == TTRPC_OK)
		w->status = ((const Containerd__Task__V2__WaitResponse *)reply->msg)->exit_status;
}

/* The shim's agent connection reaches the fake's Task service: a process
 * created, waited on, killed, deleted. */
static void agent_task_calls(void **state)
{
	struct t *t = *state;
	struct shim *s = &t->s;
	struct ctr *c1 = new_ctr(t, "c1", SHIM_POD_NONE);
	boot_ok(t, c1, t->rootfs_a);
	struct ttrpc_status st = { 0 };
	ProtobufCMessage *resp = NULL;

	Containerd__Task__V2__CreateTaskRequest cr = CONTAINERD__TASK__V2__CREATE_TASK_REQUEST__INIT;
	cr.id = (char *)"c1";
	cr.bundle = (char *)"/run/husk/bundles/c1";
	assert_int_equal(ttrpc_client_call(s->vm.agent, SHIM_TASK_SERVICE, "Create", &cr.base,
					   &containerd__task__v2__create_task_response__descriptor,
					   NULL, &resp, &st),
			 TTRPC_OK);
	assert_int_equal(((Containerd__Task__V2__CreateTaskResponse *)resp)->pid, 42);
	protobuf_c_message_free_unpacked(resp, NULL);

	Containerd__Task__V2__StartRequest sr = CONTAINERD__TASK__V2__START_REQUEST__INIT;
	sr.id = (char *)"c1";
	assert_int_equal(ttrpc_client_call(s->vm.agent, SHIM_TASK_SERVICE, "Start", &sr.base,
					   &containerd__task__v2__start_response__descriptor, NULL,
					   &resp, &st),
			 TTRPC_OK);
	protobuf_c_message_free_unpacked(resp, NULL);

	/* A Wait pending until the Kill. */
	struct wait_result w = { 0 };
	Containerd__Task__V2__WaitRequest wr = CONTAINERD__TASK__V2__WAIT_REQUEST__INIT;
	wr.id = (char *)"c1";
	assert_int_equal(ttrpc_client_start(s->vm.agent, SHIM_TASK_SERVICE, "Wait", &wr.base, NULL,
					    0, &containerd__task__v2__wait_response__descriptor,
					    NULL, on_wait, &w),
			 0);
	RUN_UNTIL(t, LINES(t->agent_log, " Wait id=c1") == 1);
	assert_false(w.done);

	Containerd__Task__V2__StateRequest qr = CONTAINERD__TASK__V2__STATE_REQUEST__INIT;
	qr.id = (char *)"c1";
	assert_int_equal(ttrpc_client_call(s->vm.agent, SHIM_TASK_SERVICE, "State", &qr.base,
					   &containerd__task__v2__state_response__descriptor, NULL,
					   &resp, &st),
			 TTRPC_OK);
	assert_int_equal(((Containerd__Task__V2__StateResponse *)resp)->status,
			 CONTAINERD__V1__TYPES__STATUS__RUNNING);
	protobuf_c_message_free_unpacked(resp, NULL);

	Containerd__Task__V2__KillRequest kr = CONTAINERD__TASK__V2__KILL_REQUEST__INIT;
	kr.id = (char *)"c1";
	kr.signal = SIGKILL;
	assert_int_equal(ttrpc_client_call(s->vm.agent, SHIM_TASK_SERVICE, "Kill", &kr.base, NULL,
					   NULL, NULL, &st),
			 TTRPC_OK);
	RUN_UNTIL(t, w.done);
	assert_int_equal(w.code, TTRPC_OK);
	assert_int_equal(w.status, 128 + SIGKILL);

	Containerd__Task__V2__DeleteRequest dr = CONTAINERD__TASK__V2__DELETE_REQUEST__INIT;
	dr.id = (char *)"c1";
	assert_int_equal(ttrpc_client_call(s->vm.agent, SHIM_TASK_SERVICE, "Delete", &dr.base,
					   &containerd__task__v2__delete_response__descriptor, NULL,
					   &resp, &st),
			 TTRPC_OK);
	assert_int_equal(((Containerd__Task__V2__DeleteResponse *)resp)->exit_status, 128 + SIGKILL);
	protobuf_c_message_free_unpacked(resp, NULL);
	/* Gone: NOT_FOUND now. */
	assert_int_equal(ttrpc_client_call(s->vm.agent, SHIM_TASK_SERVICE, "State", &qr.base,
					   &containerd__task__v2__state_response__descriptor, NULL,
					   &resp, &st),
			 TTRPC_NOT_FOUND);
	teardown_vm(t);
}

/* A pod: the sandbox boots with hotplug slots, a container joins (its
 * disk hot-added, its bundle made) and leaves (the disk removed, its image
 * released); then the sandbox's delete takes the VM. */
static void pod_join_and_leave(void **state)
{
	struct t *t = *state;
	struct shim *s = &t->s;
	struct ctr *sb = new_ctr(t, "sb", SHIM_POD_SANDBOX);
	pid_t pid = boot_ok(t, sb, t->rootfs_a);
	assert_int_equal(LINES(t->vmm_log, " launch ", "slots=8 "), 1);

	struct ctr *c2 = new_ctr(t, "c2", SHIM_POD_CONTAINER);
	struct done d;
	join(t, c2, t->rootfs_b, &d);
	if (d.rc < 0)
		fail_msg("join: %s", d.msg);
	assert_string_equal(c2->serial, "rootfs1");
	assert_true(c2->disk_added);
	assert_true(c2->image_hold >= 0);
	assert_string_equal(d.bundle, "/run/husk/bundles/c2");
	assert_int_equal(LINES(t->vmm_log, " add_disk rootfs1 ro "), 1);
	assert_int_equal(LINES(t->agent_log, " CreateBundle id=c2 serial=rootfs1"), 1);
	size_t total, held;
	images(t, &total, &held);
	assert_int_equal(total, 2);
	assert_int_equal(held, 2);

	unsigned maybe_exit = n_maybe_exit;
	shim_vm_leave(s, c2);
	RUN_UNTIL(t, n_maybe_exit > maybe_exit && !shim_worker_pending(s->worker));
	assert_int_equal(LINES(t->vmm_log, " remove_disk rootfs1 "), 1);
	assert_false(c2->disk_added);
	assert_int_equal(c2->image_hold, -1);
	images(t, &total, &held);
	assert_int_equal(total, 2);
	assert_int_equal(held, 1); /* the sandbox's */
	assert_true(shim_vm_up(s));
	assert_int_equal(LINES(t->vmm_log, " stop"), 0);
	ctr_unlist(c2);

	teardown_vm(t);
	assert_int_equal(LINES(t->agent_log, " DestroySandbox"), 1);
	assert_vm_gone(t, "sb", pid);
}

/* The backend cannot launch: the done callback says so; nothing is left. */
static void boot_launch_fails(void **state)
{
	struct t *t = *state;
	setenv("HUSK_FAKE_VMM_FAIL", "launch", 1);
	struct ctr *c1 = new_ctr(t, "c1", SHIM_POD_NONE);
	struct done d;
	boot(t, c1, t->rootfs_a, &d);
	assert_true(d.rc < 0);
	assert_non_null(strstr(d.msg, "launch"));
	assert_int_equal(t->s.vm.state, SHIM_VM_NONE);
	assert_int_equal(LINES(t->vmm_log, " launch "), 1);
	assert_false(exists(t->agent_log)); /* never ran */
	assert_int_equal(c1->image_hold, -1);
	assert_vm_gone(t, "c1", 0);
	/* The shim may boot again: a later Create gets a fresh try. */
	unsetenv("HUSK_FAKE_VMM_FAIL");
	unlink(t->vmm_log);
	pid_t pid = boot_ok(t, c1, t->rootfs_a);
	teardown_vm(t);
	assert_vm_gone(t, "c1", pid);
}

/* The guest refuses the bundle: the VM is stopped again (the guest asked
 * to power off); nothing is left. */
static void boot_bundle_fails(void **state)
{
	struct t *t = *state;
	setenv("FAKE_AGENT_FAIL", "CreateBundle", 1);
	struct ctr *c1 = new_ctr(t, "c1", SHIM_POD_NONE);
	struct done d;
	boot(t, c1, t->rootfs_a, &d);
	assert_true(d.rc < 0);
	assert_non_null(strstr(d.msg, "CreateBundle"));
	assert_int_equal(t->s.vm.state, SHIM_VM_NONE);
	pid_t pid = agent_pid(t);
	assert_int_equal(LINES(t->agent_log, " CreateBundle id=c1"), 1);
	assert_int_equal(LINES(t->agent_log, " DestroySandbox"), 1);
	assert_int_equal(c1->image_hold, -1);
	assert_vm_gone(t, "c1", pid);
}

/* The same with a guest that does not power off either: the backend's
 * stop is what ends it. */
static void boot_bundle_fails_guest_stuck(void **state)
{
	struct t *t = *state;
	setenv("FAKE_AGENT_FAIL", "CreateBundle,DestroySandbox", 1);
	struct ctr *c1 = new_ctr(t, "c1", SHIM_POD_NONE);
	struct done d;
	boot(t, c1, t->rootfs_a, &d);
	assert_true(d.rc < 0);
	assert_non_null(strstr(d.msg, "CreateBundle"));
	assert_int_equal(t->s.vm.state, SHIM_VM_NONE);
	pid_t pid = agent_pid(t);
	assert_int_equal(LINES(t->vmm_log, " stop"), 1);
	assert_vm_gone(t, "c1", pid);
}

/* A join whose hot-add fails: the VM runs on, the joiner's image is
 * released, and the slot is still there for the next one. */
static void join_add_disk_fails(void **state)
{
	struct t *t = *state;
	struct ctr *sb = new_ctr(t, "sb", SHIM_POD_SANDBOX);
	pid_t pid = boot_ok(t, sb, t->rootfs_a);
	struct ctr *c2 = new_ctr(t, "c2", SHIM_POD_CONTAINER);
	setenv("HUSK_FAKE_VMM_FAIL", "add_disk", 1); /* the worker is idle */
	struct done d;
	join(t, c2, t->rootfs_b, &d);
	unsetenv("HUSK_FAKE_VMM_FAIL");
	assert_true(d.rc < 0);
	assert_non_null(strstr(d.msg, "add_disk"));
	assert_int_equal(LINES(t->vmm_log, " add_disk rootfs1 "), 1);
	assert_int_equal(LINES(t->agent_log, " CreateBundle id=c2"), 0);
	assert_false(c2->disk_added);
	assert_int_equal(c2->image_hold, -1);
	assert_int_equal(images_held(t), 1);
	assert_true(shim_vm_up(&t->s));
	assert_int_equal(kill(pid, 0), 0);
	ctr_unlist(c2);

	struct ctr *c3 = new_ctr(t, "c3", SHIM_POD_CONTAINER);
	join(t, c3, t->rootfs_b, &d);
	if (d.rc < 0)
		fail_msg("join after a failed one: %s", d.msg);
	assert_int_equal(LINES(t->vmm_log, " add_disk rootfs2 ro ", "slot=0"), 1);
	assert_int_equal(images_held(t), 2);
	teardown_vm(t);
	assert_vm_gone(t, "sb", pid);
}

/* A join whose bundle the guest refuses: the disk is removed again, the
 * image released, the VM runs on. */
static void join_bundle_fails(void **state)
{
	struct t *t = *state;
	setenv("FAKE_AGENT_FAIL", "CreateBundle:c2", 1); /* read by the agent at its start */
	struct ctr *sb = new_ctr(t, "sb", SHIM_POD_SANDBOX);
	pid_t pid = boot_ok(t, sb, t->rootfs_a);
	struct ctr *c2 = new_ctr(t, "c2", SHIM_POD_CONTAINER);
	struct done d;
	join(t, c2, t->rootfs_b, &d);
	assert_true(d.rc < 0);
	assert_non_null(strstr(d.msg, "CreateBundle"));
	assert_int_equal(LINES(t->vmm_log, " add_disk rootfs1 "), 1);
	assert_int_equal(LINES(t->agent_log, " CreateBundle id=c2 serial=rootfs1"), 1);
	assert_int_equal(LINES(t->vmm_log, " remove_disk rootfs1 "), 1);
	assert_false(c2->disk_added);
	assert_int_equal(c2->image_hold, -1);
	assert_int_equal(images_held(t), 1);
	assert_true(shim_vm_up(&t->s));
	assert_int_equal(kill(pid, 0), 0);
	ctr_unlist(c2);

	/* Its slot is free again. */
	struct ctr *c3 = new_ctr(t, "c3", SHIM_POD_CONTAINER);
	join(t, c3, t->rootfs_b, &d);
	if (d.rc < 0)
		fail_msg("join after a failed one: %s", d.msg);
	assert_int_equal(LINES(t->vmm_log, " add_disk rootfs2 ro ", "slot=0"), 1);
	teardown_vm(t);
	assert_vm_gone(t, "sb", pid);
}

/* The VMM dies (kill -9): every live process exits with status 255, once;
 * the VM is torn down and its images released. */
static void vm_lost(void **state)
{
	struct t *t = *state;
	struct shim *s = &t->s;
	struct ctr *sb = new_ctr(t, "sb", SHIM_POD_SANDBOX);
	pid_t pid = boot_ok(t, sb, t->rootfs_a);
	struct ctr *c2 = new_ctr(t, "c2", SHIM_POD_CONTAINER);
	struct done d;
	join(t, c2, t->rootfs_b, &d);
	if (d.rc < 0)
		fail_msg("join: %s", d.msg);
	assert_int_equal(images_held(t), 2);

	/* The sandbox's init created, an exec running in it, c2's init
	 * running, and one that is done already. */
	struct proc *init = proc_new(sb, "", "", "", "", false);
	struct proc *exec = proc_new(sb, "e1", "", "", "", false);
	struct proc *init2 = proc_new(c2, "", "", "", "", false);
	struct proc *done = proc_new(c2, "e-done", "", "", "", false);
	assert_non_null(init);
	assert_non_null(exec);
	assert_non_null(init2);
	assert_non_null(done);
	proc_set_state(init, PROC_CREATED);
	for (struct proc *const *p = (struct proc *const[]){ exec, init2, done, NULL }; *p; p++) {
		proc_set_state(*p, PROC_CREATED);
		proc_set_state(*p, PROC_STARTING);
		proc_set_state(*p, PROC_RUNNING);
	}
	proc_exited(done, 0, NULL);
	assert_int_equal(done->state, PROC_STOPPED);
	assert_int_equal(exits_published(NULL), 1);

	assert_int_equal(kill(pid, SIGKILL), 0);
	RUN_UNTIL(t, s->vm.state == SHIM_VM_STOPPED);
	for (struct proc *const *p = (struct proc *const[]){ init, exec, init2, NULL }; *p; p++) {
		assert_int_equal((*p)->state, PROC_STOPPED);
		assert_int_equal((*p)->status, SHIM_VM_LOST_STATUS);
		assert_int_equal(exits_published(proc_task_id(*p)), 1);
	}
	assert_int_equal(done->status, 0);
	assert_int_equal(exits_published("e-done"), 1);
	assert_int_equal(exits_published(NULL), 4);
	for (unsigned i = 0; i < n_pubs; i++)
		if (strcmp(pubs[i].topic, "/tasks/exit") == 0)
			assert_int_equal(pubs[i].pid, pid); /* what containerd knew them by */
	/* The VMM was gone already: nothing for the backend to stop. */
	assert_int_equal(LINES(t->vmm_log, " stop"), 0);
	assert_int_equal(LINES(t->agent_log, " DestroySandbox"), 0);
	assert_vm_gone(t, "sb", pid);
	/* Whatever else reports the loss later (the agent connection's close)
	 * publishes nothing more. */
	shim_vm_lost(s, "again");
	for (int i = 0; i < 5; i++)
		ev_run_once(s->loop, 0);
	assert_int_equal(exits_published(NULL), 4);
	assert_int_equal(s->vm.state, SHIM_VM_STOPPED);
}

/* The agent goes but the VM stays (its connection closes, the VMM runs
 * on): after vm.c's grace the VM counts as lost, its processes exit with
 * 255, and the teardown's stop ends the VMM (the agent cannot power it
 * off any more). */
static void agent_lost(void **state)
{
	struct t *t = *state;
	struct shim *s = &t->s;
	struct ctr *c1 = new_ctr(t, "c1", SHIM_POD_NONE);
	pid_t pid = boot_ok(t, c1, t->rootfs_a);
	struct proc *init = proc_new(c1, "", "", "", "", false);
	assert_non_null(init);
	proc_set_state(init, PROC_CREATED);
	proc_set_state(init, PROC_STARTING);
	proc_set_state(init, PROC_RUNNING);

	assert_int_equal(kill(pid, SIGUSR1), 0);
	RUN_UNTIL(t, s->vm.state != SHIM_VM_RUNNING);
	RUN_UNTIL(t, s->vm.state == SHIM_VM_STOPPED);
	assert_int_equal(init->state, PROC_STOPPED);
	assert_int_equal(init->status, SHIM_VM_LOST_STATUS);
	assert_int_equal(exits_published("c1"), 1);
	assert_int_equal(LINES(t->vmm_log, " stop"), 1);
	assert_vm_gone(t, "c1", pid);
}

/* The VMM dies while a container joins: however the two race, the join
 * ends once, and nothing is left held. */
static void vm_lost_during_join(void **state)
{
	struct t *t = *state;
	struct shim *s = &t->s;
	struct ctr *sb = new_ctr(t, "sb", SHIM_POD_SANDBOX);
	pid_t pid = boot_ok(t, sb, t->rootfs_a);
	struct ctr *c2 = new_ctr(t, "c2", SHIM_POD_CONTAINER);
	struct done d = { 0 };
	struct husk_err err = { 0 };
	if (shim_vm_join(new_vc(t, c2, t->rootfs_b, &d), &err) < 0)
		fail_msg("shim_vm_join: %s", err.msg);
	assert_int_equal(kill(pid, SIGKILL), 0);
	RUN_UNTIL(t, d.called && s->vm.state == SHIM_VM_STOPPED && !shim_worker_pending(s->worker));
	if (d.rc < 0)
		assert_true(d.msg[0] != '\0');
	assert_vm_gone(t, "sb", pid);
}

/* The sandbox is deleted while a container joins: the join (queued first)
 * completes into a VM that is going, so it fails; then the VM stops. */
static void teardown_during_join(void **state)
{
	struct t *t = *state;
	struct shim *s = &t->s;
	struct ctr *sb = new_ctr(t, "sb", SHIM_POD_SANDBOX);
	pid_t pid = boot_ok(t, sb, t->rootfs_a);
	struct ctr *c2 = new_ctr(t, "c2", SHIM_POD_CONTAINER);
	struct done d = { 0 };
	struct husk_err err = { 0 };
	if (shim_vm_join(new_vc(t, c2, t->rootfs_b, &d), &err) < 0)
		fail_msg("shim_vm_join: %s", err.msg);
	shim_vm_teardown(s);
	RUN_UNTIL(t, d.called && s->vm.state == SHIM_VM_STOPPED && !shim_worker_pending(s->worker));
	assert_true(d.rc < 0);
	assert_non_null(strstr(d.msg, "gone"));
	assert_int_equal(LINES(t->agent_log, " DestroySandbox"), 1);
	assert_vm_gone(t, "sb", pid);
}

/* A pod deleted all at once: a container's leave, then the sandbox's
 * teardown, queued back to back. */
static void leave_then_teardown(void **state)
{
	struct t *t = *state;
	struct shim *s = &t->s;
	struct ctr *sb = new_ctr(t, "sb", SHIM_POD_SANDBOX);
	pid_t pid = boot_ok(t, sb, t->rootfs_a);
	struct ctr *c2 = new_ctr(t, "c2", SHIM_POD_CONTAINER);
	struct done d;
	join(t, c2, t->rootfs_b, &d);
	if (d.rc < 0)
		fail_msg("join: %s", d.msg);
	shim_vm_leave(s, c2);
	shim_vm_teardown(s);
	RUN_UNTIL(t, s->vm.state == SHIM_VM_STOPPED && !shim_worker_pending(s->worker));
	assert_int_equal(LINES(t->vmm_log, " remove_disk rootfs1 "), 1);
	assert_int_equal(LINES(t->agent_log, " DestroySandbox"), 1);
	assert_vm_gone(t, "sb", pid);
}

/* The fake agent next to this program. */
static void find_agent(const char *argv0)
{
	const char *env = getenv("FAKE_AGENT");
	char self[PATH_MAX];
	if (env && *env) {
		snprintf(agent_bin, sizeof(agent_bin), "%s", env);
	} else {
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (n > 0)
			self[n] = '\0';
		else
			snprintf(self, sizeof(self), "%s", argv0);
		snprintf(agent_bin, sizeof(agent_bin), "%s/fake-agent", dirname(self));
	}
	if (access(agent_bin, X_OK) < 0) {
		fprintf(stderr, "unit-shim-vm: %s: %s (build it: make .../test/fake-agent)\n",
			agent_bin, strerror(errno));
		exit(1);
	}
}

int main(int argc, char **argv)
{
	(void)argc;
	find_agent(argv[0]);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(boot_and_teardown, setup, teardown),
		cmocka_unit_test_setup_teardown(teardown_guest_refuses, setup, teardown),
		cmocka_unit_test_setup_teardown(agent_task_calls, setup, teardown),
		cmocka_unit_test_setup_teardown(pod_join_and_leave, setup, teardown),
		cmocka_unit_test_setup_teardown(boot_launch_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(boot_bundle_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(boot_bundle_fails_guest_stuck, setup, teardown),
		cmocka_unit_test_setup_teardown(join_add_disk_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(join_bundle_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(vm_lost, setup, teardown),
		cmocka_unit_test_setup_teardown(agent_lost, setup, teardown),
		cmocka_unit_test_setup_teardown(vm_lost_during_join, setup, teardown),
		cmocka_unit_test_setup_teardown(teardown_during_join, setup, teardown),
		cmocka_unit_test_setup_teardown(leave_then_teardown, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
