/* libhusk's VM lifecycle against real QEMU (TCG here): every failure path
 * leaves no process, socket or directory; stop works through QMP when the
 * guest does not power off by itself; names are exclusive; a directory
 * left by a dead owner is reclaimed; a VM opened by another user of the
 * library cannot be stopped by it; an agent that cannot serve powers the
 * VM off with its reason; the agent keeps serving while a CreateBundle
 * waits for a hot-added disk; a VM larger than the host is refused; a disk
 * another VM holds is named with QEMU's own words; a full writable layer
 * is ENOSPC, not the OOM killer; the boot chain (husk_sandbox_start and
 * husk_sandbox_add_container) on real QEMU.
 * Needs HUSK_KERNEL and HUSK_INITRD (set by tests/run.sh). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "husk.h"
#include "husk/sandbox.pb-c.h"
#include "ttrpc/client.h"

struct fixture {
	char state[64];
	struct husk_vm_config cfg;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	snprintf(f->state, sizeof(f->state), "/tmp/husk-vmtest-XXXXXX");
	assert_non_null(mkdtemp(f->state));
	f->cfg.state_dir = f->state;
	f->cfg.kernel = getenv("HUSK_KERNEL");
	f->cfg.initrd = getenv("HUSK_INITRD");
	f->cfg.die_with_parent = true;
	f->cfg.accel = HUSK_ACCEL_TCG;
	f->cfg.transport = HUSK_TRANSPORT_HYBRID;
	assert_non_null(f->cfg.kernel);
	assert_non_null(f->cfg.initrd);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->state);
	(void)!system(cmd);
	free(f);
	return 0;
}

/* The state directory holds no VM directory and no process runs from it. */
static void assert_nothing_left(const struct fixture *f, const char *name)
{
	char path[256], cmd[256];
	snprintf(path, sizeof(path), "%s/%s", f->state, name);
	struct stat st;
	assert_int_equal(lstat(path, &st), -1);
	/* "[/]": the regex must not match the shell running pgrep. */
	snprintf(cmd, sizeof(cmd), "pgrep -f -- '[/]%s/' >/dev/null", f->state + 1);
	assert_int_not_equal(system(cmd), 0);
}

static void test_bad_kernel_leaves_nothing(void **state)
{
	struct fixture *f = *state;
	f->cfg.name = "badk";
	f->cfg.kernel = "/etc/hostname";
	struct husk_vm *vm = NULL;
	struct husk_err err = { 0 };
	int r = husk_vm_start(&f->cfg, &vm, &err);
	assert_true(r < 0);
	assert_null(vm);
	/* QEMU refuses the kernel: its own words are in the error. */
	assert_non_null(strstr(err.msg, "QEMU"));
	assert_nothing_left(f, "badk");
}

static void test_boot_timeout_leaves_nothing(void **state)
{
	struct fixture *f = *state;
	f->cfg.name = "slow";
	f->cfg.boot_timeout_ms = 1;
	struct husk_vm *vm = NULL;
	struct husk_err err = { 0 };
	assert_int_equal(husk_vm_start(&f->cfg, &vm, &err), -ETIMEDOUT);
	assert_non_null(strstr(err.msg, "did not answer"));
	assert_nothing_left(f, "slow");
}

static void test_missing_files_named(void **state)
{
	struct fixture *f = *state;
	struct husk_vm *vm = NULL;
	struct husk_err err = { 0 };
	f->cfg.initrd = "/nonexistent/initrd";
	assert_int_equal(husk_vm_start(&f->cfg, &vm, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "/nonexistent/initrd"));
	f->cfg.initrd = getenv("HUSK_INITRD");
	struct husk_disk d = { .path = "/etc/hostname", .serial = "bad serial!", .readonly = true };
	f->cfg.disks = &d;
	f->cfg.n_disks = 1;
	assert_int_equal(husk_vm_start(&f->cfg, &vm, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "serial"));
	f->cfg.n_disks = 0;
	f->cfg.name = "../escape";
	assert_int_equal(husk_vm_start(&f->cfg, &vm, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "name"));
}

/* Start, use, then stop with no grace: DestroySandbox has no time to
 * finish, so QMP quit ends QEMU; everything is reaped and removed. */
static void test_start_open_stop(void **state)
{
	struct fixture *f = *state;
	f->cfg.name = "life";
	struct husk_vm *vm = NULL, *other = NULL, *dup = NULL;
	struct husk_err err = { 0 };
	assert_int_equal(husk_vm_start(&f->cfg, &vm, &err), 0);
	assert_true(husk_vm_boot_ns(vm) > 0);
	pid_t qemu = husk_vm_vmm_pid(vm), vsockd = husk_vm_vsockd_pid(vm);
	assert_true(qemu > 0 && vsockd > 0);

	/* The name is taken while the VM runs. */
	assert_int_equal(husk_vm_start(&f->cfg, &dup, &err), -EEXIST);
	assert_null(dup);

	/* Another user of the library reaches the agent, but cannot stop it. */
	assert_int_equal(husk_vm_open(f->state, "life", &other, &err), 0);
	struct husk_agent *a = NULL;
	assert_int_equal(husk_agent_open(other, 5000, &a, &err), 0);
	char version[64];
	assert_int_equal(husk_agent_check(a, version, sizeof(version), &err), 0);
	assert_true(version[0] != '\0');
	husk_agent_close(a);
	assert_int_equal(husk_vm_stop(other, 0, &err), -EPERM);
	husk_vm_free(other);

	/* A port nobody listens on in the guest is refused. */
	int fd = husk_vm_connect(vm, 4242, 0, &err);
	assert_int_equal(fd, -ECONNREFUSED);

	assert_int_equal(husk_vm_stop(vm, 0, &err), 0);
	int st;
	assert_true(husk_vm_exited(vm, &st));
	assert_int_equal(kill(qemu, 0), -1);
	assert_int_equal(kill(vsockd, 0), -1);
	assert_int_equal(husk_vm_stop(vm, 0, &err), 0); /* idempotent */
	husk_vm_free(vm);
	assert_nothing_left(f, "life");
	assert_int_equal(husk_vm_open(f->state, "life", &other, &err), -ENOENT);
}

/* An agent whose log stream cannot connect (here: pointed at a host port
 * nobody listens on) is still found ready, by the Check tries libhusk
 * falls back to from 2 s after launch. */
static void test_ready_without_log_stream(void **state)
{
	struct fixture *f = *state;
	f->cfg.name = "nolog";
	f->cfg.cmdline_extra = "husk.log_port=9";
	struct husk_vm *vm = NULL;
	struct husk_err err = { 0 };
	assert_int_equal(husk_vm_start(&f->cfg, &vm, &err), 0);
	/* Not a timing threshold: without the log stream no Check is tried
	 * before the fallback starts. */
	assert_true(husk_vm_boot_ns(vm) >= 2000000000ull);
	struct husk_agent *a = NULL;
	assert_int_equal(husk_agent_open(vm, 5000, &a, &err), 0);
	assert_int_equal(husk_agent_check(a, NULL, 0, &err), 0);
	husk_agent_close(a);
	assert_int_equal(husk_vm_stop(vm, 5000, &err), 0);
	husk_vm_free(vm);
	assert_nothing_left(f, "nolog");
}

/* An agent that cannot serve (here: its ttrpc port is the debug console's)
 * powers the VM off, saying why, before it has mounted anything (its keys
 * come as init's arguments): the error carries the reason from the console,
 * and the guest neither panics nor takes itself for something else. */
static void test_agent_failure_powers_off(void **state)
{
	struct fixture *f = *state;
	f->cfg.name = "fail";
	f->cfg.debug_console = true;
	f->cfg.cmdline_extra = "husk.agent_port=1026";
	struct husk_vm *vm = NULL;
	struct husk_err err = { 0 };
	assert_int_equal(husk_vm_start(&f->cfg, &vm, &err), -ECHILD);
	assert_null(vm);
	/* QEMU or, as its vhost-user peer leaves, husk-vsockd: whichever
	 * libhusk sees end first. */
	assert_non_null(strstr(err.msg, "exited while the VM booted"));
	assert_non_null(strstr(err.msg, "husk-agent: powering off: bind vsock port 1026"));
	assert_non_null(strstr(err.msg, "reboot: Power down"));
	assert_null(strstr(err.msg, "not PID 1 of a husk guest"));
	assert_null(strstr(err.msg, "Kernel panic"));
	assert_nothing_left(f, "fail");
}

/* A directory whose owner died (lock not held) is reclaimed. */
static void test_stale_directory_reclaimed(void **state)
{
	struct fixture *f = *state;
	char dir[256], file[300];
	snprintf(dir, sizeof(dir), "%s/stale", f->state);
	assert_int_equal(mkdir(dir, 0700), 0);
	snprintf(file, sizeof(file), "%s/vm.json", dir);
	int fd = open(file, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	assert_true(write(fd, "{\"qemu_pid\": 1}", 15) == 15);
	close(fd);
	struct husk_vm *vm = NULL;
	struct husk_err err = { 0 };
	assert_int_equal(husk_vm_open(f->state, "stale", &vm, &err), -ESRCH);
	f->cfg.name = "stale";
	assert_int_equal(husk_vm_start(&f->cfg, &vm, &err), 0);
	husk_vm_free(vm); /* stops it */
	assert_nothing_left(f, "stale");
}

/* QEMU killed from outside: the agent connection fails instead of hanging
 * and stop still cleans up. */
static void test_qemu_killed(void **state)
{
	struct fixture *f = *state;
	f->cfg.name = "victim";
	struct husk_vm *vm = NULL;
	struct husk_err err = { 0 };
	assert_int_equal(husk_vm_start(&f->cfg, &vm, &err), 0);
	struct husk_agent *a = NULL;
	assert_int_equal(husk_agent_open(vm, 5000, &a, &err), 0);
	kill(husk_vm_vmm_pid(vm), SIGKILL);
	int r;
	/* Until husk-vsockd notices, a call may still be in flight: the
	 * call fails with EPIPE once the connection is gone. */
	while ((r = husk_agent_check(a, NULL, 0, &err)) == 0)
		usleep(10000);
	assert_int_equal(r, -EPIPE);
	husk_agent_close(a);
	int st;
	assert_int_equal(husk_vm_stop(vm, 1000, &err), 0);
	assert_true(husk_vm_exited(vm, &st));
	assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	husk_vm_free(vm);
	assert_nothing_left(f, "victim");
}

/* An erofs image of a tree holding a static busybox and /marker. */
static void make_image(const struct fixture *f, const char *name, const char *marker,
		       char *image, size_t len)
{
	char cmd[1024];
	snprintf(image, len, "%s/%s.erofs", f->state, name);
	snprintf(cmd, sizeof(cmd),
		 "set -e; d=%s/%s.d; mkdir -p $d/bin $d/proc $d/dev $d/sys $d/tmp;"
		 " cp /bin/busybox $d/bin/busybox; echo %s >$d/marker;"
		 " mkfs.erofs --quiet %s $d >/dev/null",
		 f->state, name, marker, image);
	assert_int_equal(system(cmd), 0);
}

/* Runs `busybox grep -qx WANT /marker` in a container on the disk with
 * `serial`: its exit status says which disk the agent mounted. */
static uint32_t grep_marker(struct husk_agent *a, const char *id, const char *serial,
			    const char *want)
{
	char spec[1024];
	snprintf(spec, sizeof(spec),
		 "{\"ociVersion\":\"1.0.2\",\"root\":{\"path\":\"rootfs\"},"
		 "\"process\":{\"cwd\":\"/\",\"user\":{\"uid\":0,\"gid\":0},"
		 "\"env\":[\"PATH=/bin\"],\"args\":[\"/bin/busybox\",\"grep\",\"-qx\",\"%s\","
		 "\"/marker\"]},\"linux\":{\"namespaces\":[{\"type\":\"mount\"},"
		 "{\"type\":\"pid\"}]}}",
		 want);
	struct husk_err err = { 0 };
	char *bundle = NULL;
	uint32_t pid = 0, status = 99;
	const struct husk_stdio io = { 0 };
	if (husk_agent_create_bundle(a, id, spec, serial, &bundle, &err) < 0 ||
	    husk_task_create(a, id, bundle, &io, &pid, &err) < 0 ||
	    husk_task_start(a, id, NULL, &pid, &err) < 0 ||
	    husk_task_wait(a, id, NULL, &status, &err) < 0)
		fail_msg("container %s on disk %s: %s", id, serial, err.msg);
	free(bundle);
	assert_int_equal(husk_task_delete(a, id, NULL, NULL, &err), 0);
	return status;
}

/* Disks hot-added to a running VM (a pod's later containers): the agent
 * finds each by serial and mounts the right one; bad requests are refused
 * with the reason; a VM without slots says so. */
static void test_hotplug_disk(void **state)
{
	struct fixture *f = *state;
	char one[256], two[256];
	make_image(f, "one", "first-disk", one, sizeof(one));
	make_image(f, "two", "second-disk", two, sizeof(two));
	struct husk_err err = { 0 };
	struct husk_vm *vm = NULL;

	f->cfg.name = "noslots";
	assert_int_equal(husk_vm_start(&f->cfg, &vm, &err), 0);
	struct husk_disk d1 = { .path = one, .serial = "pod1", .readonly = true };
	assert_int_equal(husk_vm_add_disk(vm, &d1, &err), -EOPNOTSUPP);
	assert_non_null(strstr(err.msg, "hotplug"));
	husk_vm_free(vm);

	/* The most slots there may be boot; one more is refused up front. */
	f->cfg.name = "maxslots";
	f->cfg.hotplug_slots = HUSK_HOTPLUG_MAX + 1;
	assert_int_equal(husk_vm_start(&f->cfg, &vm, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "hotplug_slots"));
	f->cfg.hotplug_slots = HUSK_HOTPLUG_MAX;
	if (husk_vm_start(&f->cfg, &vm, &err) < 0)
		fail_msg("%u slots: %s", HUSK_HOTPLUG_MAX, err.msg);
	husk_vm_free(vm);

	/* A boot-time disk (virtio-mmio) next to the slots. */
	struct husk_disk boot = { .path = one, .serial = "boot0", .readonly = true };
	f->cfg.name = "pod";
	f->cfg.hotplug_slots = 2;
	f->cfg.disks = &boot;
	f->cfg.n_disks = 1;
	assert_int_equal(husk_vm_start(&f->cfg, &vm, &err), 0);
	f->cfg.disks = NULL;
	f->cfg.n_disks = 0;
	struct husk_agent *a = NULL;
	assert_int_equal(husk_agent_open(vm, 5000, &a, &err), 0);
	assert_int_equal(husk_agent_create_sandbox(a, "pod", &err), 0);

	assert_int_equal(husk_vm_add_disk(vm, &d1, &err), 0);
	assert_int_equal(grep_marker(a, "c1", "pod1", "first-disk"), 0);
	struct husk_disk d2 = { .path = two, .serial = "pod2", .readonly = true };
	assert_int_equal(husk_vm_add_disk(vm, &d2, &err), 0);
	assert_int_equal(grep_marker(a, "c2", "pod2", "second-disk"), 0);
	assert_int_equal(grep_marker(a, "c3", "pod1", "second-disk"), 1);

	/* Refusals name what is wrong. */
	assert_int_equal(husk_vm_add_disk(vm, &d1, &err), -EEXIST);
	assert_non_null(strstr(err.msg, "pod1"));
	struct husk_disk d3 = { .path = one, .serial = "pod3", .readonly = true };
	assert_int_equal(husk_vm_add_disk(vm, &d3, &err), -ENOSPC);
	struct husk_disk bad = { .path = "/nonexistent.img", .serial = "x", .readonly = true };
	assert_int_equal(husk_vm_remove_disk(vm, "pod9", 0, &err), -ENOENT);

	/* The agent releases only a hot-added disk nothing has mounted. */
	assert_int_equal(husk_agent_release_disk(a, "nosuch", &err), -ENOENT);
	assert_non_null(strstr(err.msg, "nosuch"));
	assert_int_equal(husk_agent_release_disk(a, "boot0", &err), -EBUSY);
	assert_non_null(strstr(err.msg, "not on a PCI hotplug slot"));
	char *bundle = NULL;
	if (husk_agent_create_bundle(a, "held", "{\"ociVersion\":\"1.0.2\"}", "pod2", &bundle,
				     &err) < 0)
		fail_msg("bundle on pod2: %s", err.msg);
	free(bundle);
	assert_int_equal(husk_agent_release_disk(a, "pod2", &err), -EBUSY);
	assert_non_null(strstr(err.msg, "still mounted"));

	/* Removal frees the slot within the call (the agent powers it off):
	 * without that, pciehp's 5 s window would leave both slots taken and
	 * this add would fail with -ENOSPC. */
	assert_int_equal(husk_vm_remove_disk(vm, "pod1", 0, &err), 0);
	if (husk_vm_add_disk(vm, &d3, &err) < 0)
		fail_msg("add after remove: %s", err.msg);
	assert_int_equal(grep_marker(a, "c4", "pod3", "first-disk"), 0);
	assert_int_equal(husk_vm_remove_disk(vm, "pod3", 0, &err), 0);
	assert_int_equal(husk_vm_add_disk(vm, &bad, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "/nonexistent.img"));
	struct husk_disk badser = { .path = one, .serial = "a b", .readonly = true };
	assert_int_equal(husk_vm_add_disk(vm, &badser, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "serial"));

	husk_agent_close(a);
	assert_int_equal(husk_vm_stop(vm, 0, &err), 0);
	husk_vm_free(vm);
	assert_nothing_left(f, "pod");
	f->cfg.hotplug_slots = 0;
}

/* ---- CreateBundle waiting for hot-added disks ----
 * Calls are started on asynchronous libttrpc clients so that the order in
 * which the agent answers them is visible: calls on one connection reach
 * the agent's handlers in the order they were sent. */

#define SANDBOX "husk.sandbox.v1.Sandbox"
/* Only a bound for a broken agent, so that the test fails instead of
 * hanging; nothing here waits for it to pass. */
#define ASYNC_DEADLINE_NS (120ull * 1000000000u)

struct reply {
	bool done;
	int code;
	char msg[TTRPC_STATUS_MSG_MAX];
	char bundle[512];
};

static void on_reply(struct ttrpc_reply *r, void *data)
{
	struct reply *out = data;
	out->done = true;
	out->code = r->status.code;
	snprintf(out->msg, sizeof(out->msg), "%s", r->status.message);
	if (r->status.code == TTRPC_OK && r->msg &&
	    r->msg->descriptor == &husk__sandbox__v1__create_bundle_response__descriptor)
		snprintf(out->bundle, sizeof(out->bundle), "%s",
			 ((Husk__Sandbox__V1__CreateBundleResponse *)r->msg)->bundle);
}

static void run_until(struct ev_loop *loop, const struct reply *r)
{
	while (!r->done)
		assert_true(ev_run_once(loop, -1) >= 0);
}

/* A second connection to the agent, driven by `loop`; *raw (when not NULL)
 * gets a duplicate of its fd for shutdown(). */
static struct ttrpc_client *async_client(struct husk_vm *vm, struct ev_loop *loop, int *raw)
{
	struct husk_err err = { 0 };
	int fd = husk_vm_connect(vm, HUSK_AGENT_PORT, 0, &err);
	if (fd < 0)
		fail_msg("connect: %s", err.msg);
	if (raw)
		assert_true((*raw = dup(fd)) >= 0);
	struct ttrpc_client *c = NULL;
	if (ttrpc_client_new(loop, fd, &c, &err) < 0)
		fail_msg("ttrpc client: %s", err.msg);
	return c;
}

static void start_create_bundle(struct ttrpc_client *c, const char *id, const char *spec,
				const char *serial, const struct husk_block_mount *m,
				struct reply *out)
{
	Husk__Sandbox__V1__BlockMount bm = HUSK__SANDBOX__V1__BLOCK_MOUNT__INIT, *bmp = &bm;
	Husk__Sandbox__V1__CreateBundleRequest req = HUSK__SANDBOX__V1__CREATE_BUNDLE_REQUEST__INIT;
	req.container_id = (char *)id;
	req.oci_spec.data = (uint8_t *)spec;
	req.oci_spec.len = strlen(spec);
	req.rootfs_serial = (char *)serial;
	if (m) {
		bm.serial = (char *)m->serial;
		bm.fstype = (char *)m->fstype;
		bm.target = (char *)m->target;
		bm.readonly = m->readonly;
		req.n_mounts = 1;
		req.mounts = &bmp;
	}
	const struct ttrpc_call_opts opts = { .timeout_ns = ASYNC_DEADLINE_NS };
	assert_int_equal(ttrpc_client_start(c, SANDBOX, "CreateBundle", &req.base, NULL, 0,
					    &husk__sandbox__v1__create_bundle_response__descriptor,
					    &opts, on_reply, out),
			 0);
}

static void start_check(struct ttrpc_client *c, struct reply *out)
{
	Husk__Sandbox__V1__CheckRequest req = HUSK__SANDBOX__V1__CHECK_REQUEST__INIT;
	const struct ttrpc_call_opts opts = { .timeout_ns = ASYNC_DEADLINE_NS };
	assert_int_equal(ttrpc_client_start(c, SANDBOX, "Check", &req.base, NULL, 0,
					    &husk__sandbox__v1__check_response__descriptor, &opts,
					    on_reply, out),
			 0);
}

/* CreateBundle for `id` from a directory that does not exist: -EEXIST while
 * another CreateBundle holds the id, else -EINVAL (and nothing is left). */
static int probe_bundle_id(struct husk_agent *a, const char *id)
{
	Husk__Sandbox__V1__CreateBundleRequest req = HUSK__SANDBOX__V1__CREATE_BUNDLE_REQUEST__INIT;
	req.container_id = (char *)id;
	req.oci_spec.data = (uint8_t *)"{}";
	req.oci_spec.len = 2;
	req.rootfs_dir = "/nonexistent";
	struct husk_err err = { 0 };
	ProtobufCMessage *resp = NULL;
	const ProtobufCMessageDescriptor *desc = &husk__sandbox__v1__create_bundle_response__descriptor;
	int r = husk_agent_call(a, SANDBOX, "CreateBundle", &req.base, desc, &resp, &err);
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	if (r == -EINVAL)
		assert_non_null(strstr(err.msg, "rootfs_dir"));
	return r;
}

/* CreateBundle for disks the host has not hot-added yet waits for them
 * without stalling the agent: a later call on the same connection and calls
 * on another connection are answered first; the id stays taken meanwhile;
 * once the disks come, the bundle is made from them. A waiting call whose
 * client goes away gives its id back. */
static void test_create_bundle_waits_for_disk(void **state)
{
	struct fixture *f = *state;
	char root[256], data[256];
	make_image(f, "late", "late-disk", root, sizeof(root));
	make_image(f, "data", "data-disk", data, sizeof(data));
	struct husk_err err = { 0 };
	struct husk_vm *vm = NULL;
	f->cfg.name = "late";
	f->cfg.hotplug_slots = 2;
	assert_int_equal(husk_vm_start(&f->cfg, &vm, &err), 0);
	struct husk_agent *a = NULL;
	assert_int_equal(husk_agent_open(vm, 5000, &a, &err), 0);
	assert_int_equal(husk_agent_create_sandbox(a, "late", &err), 0);
	struct ev_loop *loop = NULL;
	assert_int_equal(ev_loop_new(&loop, &err), 0);
	static const char spec[] =
		"{\"ociVersion\":\"1.0.2\",\"root\":{\"path\":\"rootfs\"},"
		"\"process\":{\"cwd\":\"/\",\"user\":{\"uid\":0,\"gid\":0},"
		"\"env\":[\"PATH=/bin\"],\"args\":[\"/bin/busybox\",\"sh\",\"-c\","
		"\"busybox grep -qx late-disk /marker &&"
		" busybox grep -qx data-disk /data/marker\"]},"
		"\"linux\":{\"namespaces\":[{\"type\":\"mount\"},{\"type\":\"pid\"}]}}";

	/* A client that goes away while its CreateBundle waits: the id is
	 * taken until then and free again after. */
	int raw = -1;
	struct ttrpc_client *gone = async_client(vm, loop, &raw);
	struct reply never = { 0 }, check = { 0 };
	start_create_bundle(gone, "never", spec, "never1", NULL, &never);
	start_check(gone, &check);
	run_until(loop, &check);
	assert_int_equal(check.code, TTRPC_OK);
	assert_false(never.done);
	assert_int_equal(probe_bundle_id(a, "never"), -EEXIST);
	/* Our half-close ends the agent's side of the connection; its close
	 * reaches us only after the agent has dropped the call. */
	assert_int_equal(shutdown(raw, SHUT_WR), 0);
	run_until(loop, &never);
	/* UNAVAILABLE: the connection closed under the call. (Only a test
	 * slower than the agent's own wait could see that wait end first.) */
	if (never.code == TTRPC_NOT_FOUND)
		assert_non_null(strstr(never.msg, "\"never1\" (waited for a hot-added one)"));
	else
		assert_int_equal(never.code, TTRPC_UNAVAILABLE);
	assert_int_equal(probe_bundle_id(a, "never"), -EINVAL);
	ttrpc_client_free(gone);
	close(raw);

	/* The rootfs disk and a block mount's disk, neither there yet. */
	struct ttrpc_client *c = async_client(vm, loop, NULL);
	const struct husk_block_mount m = { .serial = "late2", .fstype = "erofs", .target = "/data",
					    .readonly = true };
	struct reply bundle = { 0 };
	check = (struct reply){ 0 };
	start_create_bundle(c, "late", spec, "late1", &m, &bundle);
	start_check(c, &check);
	run_until(loop, &check);
	assert_int_equal(check.code, TTRPC_OK);
	assert_false(bundle.done);
	/* Other connections are served too, and the id is taken. */
	char version[64];
	assert_int_equal(husk_agent_check(a, version, sizeof(version), &err), 0);
	assert_int_equal(probe_bundle_id(a, "late"), -EEXIST);

	struct husk_disk d1 = { .path = root, .serial = "late1", .readonly = true };
	struct husk_disk d2 = { .path = data, .serial = "late2", .readonly = true };
	assert_int_equal(husk_vm_add_disk(vm, &d1, &err), 0);
	assert_int_equal(husk_vm_add_disk(vm, &d2, &err), 0);
	run_until(loop, &bundle);
	if (bundle.code != TTRPC_OK)
		fail_msg("CreateBundle: %s: %s", ttrpc_code_name(bundle.code), bundle.msg);
	ttrpc_client_free(c);
	ev_loop_free(loop);

	/* The container sees both disks where they belong. */
	uint32_t pid = 0, status = 99;
	const struct husk_stdio io = { 0 };
	if (husk_task_create(a, "late", bundle.bundle, &io, &pid, &err) < 0 ||
	    husk_task_start(a, "late", NULL, &pid, &err) < 0 ||
	    husk_task_wait(a, "late", NULL, &status, &err) < 0)
		fail_msg("container late: %s", err.msg);
	assert_int_equal(status, 0);
	assert_int_equal(husk_task_delete(a, "late", NULL, NULL, &err), 0);

	husk_agent_close(a);
	assert_int_equal(husk_vm_stop(vm, 0, &err), 0);
	husk_vm_free(vm);
	assert_nothing_left(f, "late");
	f->cfg.hotplug_slots = 0;
}

/* ---- issue 14: bounds, disks in use, the writable layer ---- */

/* Item 10: what this host cannot give one VM is refused by husk_vm_start,
 * naming the field, before anything runs. */
static void test_bigger_than_host(void **state)
{
	struct fixture *f = *state;
	struct sysinfo si;
	assert_int_equal(sysinfo(&si), 0);
	unsigned mem_mib = (unsigned)((uint64_t)si.totalram * si.mem_unit >> 20);
	unsigned cpus = (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
	struct husk_vm *vm = NULL;
	struct husk_err err = { 0 };
	f->cfg.name = "huge";
	f->cfg.memory_mib = mem_mib + 1;
	assert_int_equal(husk_vm_start(&f->cfg, &vm, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "memory_mib"));
	f->cfg.memory_mib = 0;
	f->cfg.vcpus = cpus + 1;
	assert_int_equal(husk_vm_start(&f->cfg, &vm, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "vcpus"));
	f->cfg.vcpus = 0;
	assert_null(vm);
	assert_nothing_left(f, "huge");
}

/* Item 11: a disk that another VM writes is refused by QEMU's image
 * locking; the error says which disk and that it is in use, with QEMU's
 * own line, and blames QEMU, not husk-vsockd, whichever of the two libhusk
 * saw go first. One file given twice to one VM is refused up front. */
static void test_disk_in_use(void **state)
{
	struct fixture *f = *state;
	char data[256], cmd[512];
	snprintf(data, sizeof(data), "%s/data.raw", f->state);
	snprintf(cmd, sizeof(cmd), "truncate -s 8M %s", data);
	assert_int_equal(system(cmd), 0);
	struct husk_disk d = { .path = data, .serial = "data", .readonly = false };
	struct husk_vm *holder = NULL, *vm = NULL;
	struct husk_err err = { 0 };
	f->cfg.name = "holder";
	f->cfg.disks = &d;
	f->cfg.n_disks = 1;
	assert_int_equal(husk_vm_start(&f->cfg, &holder, &err), 0);
	/* A few tries: which exit libhusk sees first varies. */
	f->cfg.name = "second";
	for (int i = 0; i < 3; i++) {
		assert_int_equal(husk_vm_start(&f->cfg, &vm, &err), -ECHILD);
		if (!strstr(err.msg, "Failed to get \"write\" lock") || !strstr(err.msg, data) ||
		    !strstr(err.msg, "disk 0") || !strstr(err.msg, "in use by another process") ||
		    !strstr(err.msg, "QEMU exited while the VM booted") ||
		    strstr(err.msg, "husk-vsockd exited"))
			fail_msg("try %d: %s", i, err.msg);
		/* Only the holder runs. */
		snprintf(cmd, sizeof(cmd), "pgrep -f -- '[/]%s/second/' >/dev/null", f->state + 1);
		assert_int_not_equal(system(cmd), 0);
		snprintf(cmd, sizeof(cmd), "%s/second", f->state);
		assert_int_equal(access(cmd, F_OK), -1);
	}
	husk_vm_free(holder);
	assert_nothing_left(f, "holder");

	struct husk_disk twice[] = { d, { .path = data, .serial = "again", .readonly = false } };
	f->cfg.name = "twice";
	f->cfg.disks = twice;
	f->cfg.n_disks = 2;
	assert_int_equal(husk_vm_start(&f->cfg, &vm, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "given twice"));
	assert_non_null(strstr(err.msg, data));
	assert_nothing_left(f, "twice");
	f->cfg.disks = NULL;
	f->cfg.n_disks = 0;
}

/* Config.json for `script` in busybox sh, as a json-c object. */
static json_object *sh_spec(const char *script)
{
	json_object *spec = json_tokener_parse(
		"{\"ociVersion\":\"1.0.2\",\"root\":{\"path\":\"rootfs\"},"
		"\"process\":{\"cwd\":\"/\",\"user\":{\"uid\":0,\"gid\":0},"
		"\"env\":[\"PATH=/bin\"]},\"linux\":{\"namespaces\":[{\"type\":\"mount\"},"
		"{\"type\":\"pid\"}]}}");
	json_object *process, *args = json_object_new_array();
	assert_non_null(spec);
	json_object_object_get_ex(spec, "process", &process);
	json_object_array_add(args, json_object_new_string("/bin/busybox"));
	json_object_array_add(args, json_object_new_string("sh"));
	json_object_array_add(args, json_object_new_string("-c"));
	json_object_array_add(args, json_object_new_string(script));
	json_object_object_add(process, "args", args);
	return spec;
}

/* Runs the container `id` of `bundle` with no stdio: its exit status. */
static uint32_t run_bundle(struct husk_agent *a, const char *id, const char *bundle)
{
	struct husk_err err = { 0 };
	uint32_t pid = 0, status = 99;
	const struct husk_stdio io = { 0 };
	if (husk_task_create(a, id, bundle, &io, &pid, &err) < 0 ||
	    husk_task_start(a, id, NULL, &pid, &err) < 0 ||
	    husk_task_wait(a, id, NULL, &status, &err) < 0)
		fail_msg("container %s: %s", id, err.msg);
	assert_int_equal(husk_task_delete(a, id, NULL, NULL, &err), 0);
	return status;
}

/* A container on the disk with `serial` running `script`: its status. */
static uint32_t run_sh(struct husk_agent *a, const char *id, const char *serial,
		       const char *script)
{
	json_object *spec = sh_spec(script);
	struct husk_err err = { 0 };
	char *bundle = NULL;
	if (husk_agent_create_bundle(a, id, json_object_to_json_string(spec), serial, &bundle,
				     &err) < 0)
		fail_msg("bundle %s: %s", id, err.msg);
	json_object_put(spec);
	uint32_t status = run_bundle(a, id, bundle);
	free(bundle);
	return status;
}

/* Fills the container's writable layer: 42 when the writer failed with
 * ENOSPC ("No space left on device", a non-zero status other than 137). */
static const char fill_script[] =
	"out=$(busybox dd if=/dev/zero of=/fill bs=1M 2>&1); rc=$?;"
	" case \"$out\" in *\"No space left on device\"*) ;; *) exit 1;; esac;"
	" [ $rc -ne 0 ] && [ $rc -ne 137 ] && exit 42; exit 2";

/* Item 9: with the default writable layer, a container that fills it gets
 * ENOSPC rather than the OOM killer, and the VM stays healthy: the agent
 * answers and the next container runs. */
static void test_overlay_full_enospc(void **state)
{
	struct fixture *f = *state;
	char img[256];
	make_image(f, "fill", "fill-disk", img, sizeof(img));
	struct husk_disk root = { .path = img, .serial = "rootfs0", .readonly = true };
	f->cfg.name = "fill";
	f->cfg.disks = &root;
	f->cfg.n_disks = 1;
	struct husk_vm *vm = NULL;
	struct husk_err err = { 0 };
	assert_int_equal(husk_vm_start(&f->cfg, &vm, &err), 0);
	struct husk_agent *a = NULL;
	assert_int_equal(husk_agent_open(vm, 60000, &a, &err), 0);
	assert_int_equal(husk_agent_create_sandbox(a, "fill", &err), 0);
	assert_int_equal(run_sh(a, "writer", "rootfs0", fill_script), 42);
	char version[64];
	assert_int_equal(husk_agent_check(a, version, sizeof(version), &err), 0);
	assert_int_equal(grep_marker(a, "after", "rootfs0", "fill-disk"), 0);
	husk_agent_close(a);
	assert_int_equal(husk_vm_stop(vm, 5000, &err), 0);
	husk_vm_free(vm);
	assert_nothing_left(f, "fill");
	f->cfg.disks = NULL;
	f->cfg.n_disks = 0;
}

/* The boot chain on real QEMU: a bundle the agent refuses leaves no VM; a
 * cold start whose bundle has the writable layer asked for (16 MiB, as
 * statfs says); a container joining over a hot-added disk, whose failed first
 * try gave its slot back, and whose own 8 MiB layer fills to ENOSPC. */
static void test_boot_chain(void **state)
{
	struct fixture *f = *state;
	char one[256], two[256];
	make_image(f, "chain1", "chain-one", one, sizeof(one));
	make_image(f, "chain2", "chain-two", two, sizeof(two));
	struct husk_disk root = { .path = one, .serial = "rootfs0", .readonly = true };
	f->cfg.name = "chain";
	f->cfg.disks = &root;
	f->cfg.n_disks = 1;
	f->cfg.hotplug_slots = 1;
	struct husk_err err = { 0 };
	struct husk_vm *vm = NULL;
	char *bundle = NULL;

	/* The overlay's statfs is its upper layer's: 4096 blocks of 4 KiB. */
	json_object *cold = sh_spec("[ \"$(busybox stat -f -c '%b %S' /)\" = '4096 4096' ] &&"
				    " busybox grep -qx chain-one /marker");
	struct husk_bundle_spec b = { .id = "bad/id", .spec_json = json_object_to_json_string(cold),
				      .rootfs_serial = "rootfs0", .overlay_bytes = 16 << 20 };
	assert_int_equal(husk_sandbox_start(&f->cfg, NULL, &b, &vm, &bundle, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "bad/id"));
	assert_null(vm);
	assert_nothing_left(f, "chain");

	struct husk_sandbox_opts sb = { .hostname = "chain" };
	b.id = "c1";
	if (husk_sandbox_start(&f->cfg, &sb, &b, &vm, &bundle, &err) < 0)
		fail_msg("husk_sandbox_start: %s", err.msg);
	json_object_put(cold);
	struct husk_agent *a = NULL;
	assert_int_equal(husk_agent_open(vm, 60000, &a, &err), 0);
	assert_int_equal(run_bundle(a, "c1", bundle), 0);
	free(bundle);
	bundle = NULL;

	json_object *fill = sh_spec(fill_script);
	struct husk_disk d = { .path = two, .serial = "rootfs1", .readonly = true };
	struct husk_bundle_spec j = { .id = "bad/id", .spec_json = json_object_to_json_string(fill),
				      .overlay_bytes = 8 << 20 };
	assert_int_equal(husk_sandbox_add_container(vm, &d, &j, &bundle, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "bad/id"));
	j.id = "c2";
	if (husk_sandbox_add_container(vm, &d, &j, &bundle, &err) < 0)
		fail_msg("husk_sandbox_add_container: %s", err.msg);
	json_object_put(fill);
	assert_int_equal(run_bundle(a, "c2", bundle), 42);
	free(bundle);
	husk_agent_close(a);
	assert_int_equal(husk_vm_remove_disk(vm, "rootfs1", 0, &err), 0);
	assert_int_equal(husk_vm_stop(vm, 5000, &err), 0);
	husk_vm_free(vm);
	assert_nothing_left(f, "chain");
	f->cfg.disks = NULL;
	f->cfg.n_disks = 0;
	f->cfg.hotplug_slots = 0;
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_missing_files_named, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_kernel_leaves_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_boot_timeout_leaves_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_start_open_stop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ready_without_log_stream, setup, teardown),
		cmocka_unit_test_setup_teardown(test_agent_failure_powers_off, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_directory_reclaimed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_qemu_killed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hotplug_disk, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_bundle_waits_for_disk, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bigger_than_host, setup, teardown),
		cmocka_unit_test_setup_teardown(test_disk_in_use, setup, teardown),
		cmocka_unit_test_setup_teardown(test_overlay_full_enospc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_boot_chain, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
