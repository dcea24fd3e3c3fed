/* libhusk above the VMM seam, without a hypervisor: the fake backend
 * (host-connector/lib/vmm-fake.c) runs this very program as the stand-in
 * for a VM, a small guest that serves the agent's Sandbox service on the
 * unix socket it is given (--listen unix:PATH), and records each call the
 * backend gets. So vm.c's start, readiness, connect, hotplug, stop and
 * failure paths, and the boot chain (husk_sandbox_start,
 * husk_sandbox_add_container), run here in milliseconds: nothing may be
 * left behind on any path, and each step is seen in the records. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "husk.h"
#include "husk/sandbox.pb-c.h"
#include "husk/sock.h"
#include "ttrpc/server.h"
#include "../../host-connector/lib/internal.h"

#define SANDBOX "husk.sandbox.v1.Sandbox"

/* ---- the stand-in guest (this program run with --listen unix:PATH) ----
 *
 * TEST_GUEST picks its behaviour: "ok" serves; "die" exits at once
 * saying why on stderr (the console); "never" never listens;
 * "stubborn" ignores SIGTERM and DestroySandbox. CreateBundle for id
 * "bad" fails, for "crash" kills the guest. TEST_GUEST_LOG gets one line
 * per call. */

struct guest {
	struct ev_loop *loop;
	const char *log;
	bool stubborn;
};

__attribute__((format(printf, 2, 3))) static void guest_log(struct guest *g, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0 || !g->log)
		return;
	if ((size_t)n > sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	int fd = open(g->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd >= 0) {
		(void)!write(fd, line, (size_t)n);
		close(fd);
	}
}

static void reply_empty(struct ttrpc_call *call)
{
	Google__Protobuf__Empty e = GOOGLE__PROTOBUF__EMPTY__INIT;
	ttrpc_call_reply(call, &e.base);
}

static void on_check(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	(void)req;
	(void)data;
	Husk__Sandbox__V1__CheckResponse resp = HUSK__SANDBOX__V1__CHECK_RESPONSE__INIT;
	resp.version = "fake-guest";
	ttrpc_call_reply(call, &resp.base);
}

static void on_create_sandbox(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	const Husk__Sandbox__V1__CreateSandboxRequest *r = (const void *)req;
	guest_log(data, "CreateSandbox hostname=%s sysctls=%zu", r->hostname, r->n_sysctls);
	reply_empty(call);
}

static void on_create_bundle(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	const Husk__Sandbox__V1__CreateBundleRequest *r = (const void *)req;
	guest_log(data, "CreateBundle id=%s serial=%s overlay=%llu mounts=%zu", r->container_id,
		  r->rootfs_serial, (unsigned long long)r->overlay_size_bytes, r->n_mounts);
	if (strcmp(r->container_id, "crash") == 0) {
		fprintf(stderr, "guest: crashing in CreateBundle\n");
		_exit(9);
	}
	if (strcmp(r->container_id, "bad") == 0) {
		ttrpc_call_fail(call, TTRPC_INVALID_ARGUMENT, "bundle bad: refused by the guest");
		return;
	}
	char bundle[128];
	snprintf(bundle, sizeof(bundle), "/run/fake/%s", r->container_id);
	Husk__Sandbox__V1__CreateBundleResponse resp = HUSK__SANDBOX__V1__CREATE_BUNDLE_RESPONSE__INIT;
	resp.bundle = bundle;
	ttrpc_call_reply(call, &resp.base);
}

static void on_destroy(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	(void)req;
	struct guest *g = data;
	guest_log(g, "DestroySandbox");
	reply_empty(call);
	if (!g->stubborn)
		ev_stop(g->loop);
}

static void on_release_disk(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	const Husk__Sandbox__V1__ReleaseDiskRequest *r = (const void *)req;
	guest_log(data, "ReleaseDisk %s", r->serial);
	reply_empty(call);
}

static int guest_main(const char *listen)
{
	const char *mode = getenv("TEST_GUEST");
	struct guest g = { .log = getenv("TEST_GUEST_LOG") };
	if (!mode || strncmp(listen, "unix:", 5) != 0)
		return 2;
	if (strcmp(mode, "die") == 0) {
		fprintf(stderr, "guest: dying on purpose\n");
		_exit(3);
	}
	if (strcmp(mode, "never") == 0)
		for (;;)
			pause();
	g.stubborn = strcmp(mode, "stubborn") == 0;
	if (g.stubborn)
		signal(SIGTERM, SIG_IGN);
	struct husk_err err = { 0 };
	struct ttrpc_server *srv = NULL;
	static const struct ttrpc_named_method methods[] = {
		{ "Check", on_check },
		{ "CreateSandbox", on_create_sandbox },
		{ "CreateBundle", on_create_bundle },
		{ "DestroySandbox", on_destroy },
		{ "ReleaseDisk", on_release_disk },
	};
	int fd = -1;
	if (ev_loop_new(&g.loop, &err) < 0 || ttrpc_server_new(g.loop, NULL, &srv, &err) < 0 ||
	    ttrpc_server_add_service_named(srv, &husk__sandbox__v1__sandbox__descriptor, methods,
					   sizeof(methods) / sizeof(methods[0]), &g, &err) < 0 ||
	    (fd = husk_unix_listen(listen + 5, &err)) < 0 ||
	    ttrpc_server_add_listener(srv, fd, &err) < 0) {
		fprintf(stderr, "guest: %s\n", err.msg);
		_exit(1);
	}
	ev_run(g.loop);
	ttrpc_server_free(srv);
	ev_loop_free(g.loop);
	_exit(0); /* no leak report in the console */
}

/* ---- the tests ---- */

struct fx {
	char dir[64], state[96], kernel[96], img[96], img2[96];
	char vmm_log[128], guest_log[128], self[4096];
	struct husk_vm_config cfg;
};

static void touch(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/husk-vmmtest-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->state, sizeof(f->state), "%s/s", f->dir);
	snprintf(f->kernel, sizeof(f->kernel), "%s/kernel", f->dir);
	snprintf(f->img, sizeof(f->img), "%s/disk.img", f->dir);
	snprintf(f->img2, sizeof(f->img2), "%s/disk2.img", f->dir);
	snprintf(f->vmm_log, sizeof(f->vmm_log), "%s/vmm.log", f->dir);
	snprintf(f->guest_log, sizeof(f->guest_log), "%s/guest.log", f->dir);
	touch(f->kernel);
	touch(f->img);
	touch(f->img2);
	ssize_t n = readlink("/proc/self/exe", f->self, sizeof(f->self) - 1);
	assert_true(n > 0);
	f->self[n] = '\0';
	setenv("HUSK_FAKE_VMM_LOG", f->vmm_log, 1);
	setenv("TEST_GUEST_LOG", f->guest_log, 1);
	setenv("TEST_GUEST", "ok", 1);
	unsetenv("HUSK_FAKE_VMM_FAIL");
	f->cfg = (struct husk_vm_config){ .vmm = "fake", .state_dir = f->state, .kernel = f->kernel,
					  .initrd = f->kernel, .die_with_parent = true };
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	(void)!system(cmd);
	free(f);
	return 0;
}

static char *slurp(const char *path)
{
	static char buf[8192];
	buf[0] = '\0';
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return buf;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

/* `needle` is in the file, or fail with the file's contents. */
static void assert_logged(const char *path, const char *needle)
{
	const char *s = slurp(path);
	if (!strstr(s, needle))
		fail_msg("\"%s\" not in %s:\n%s", needle, path, s);
}

static void assert_not_logged(const char *path, const char *needle)
{
	const char *s = slurp(path);
	if (strstr(s, needle))
		fail_msg("\"%s\" in %s:\n%s", needle, path, s);
}

/* No VM directory, and the stand-in guest (if any ran) is gone. */
static void assert_nothing_left(const struct fx *f, const char *name, pid_t pid)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", f->state, name);
	struct stat st;
	if (lstat(path, &st) == 0)
		fail_msg("%s is still there", path);
	if (pid > 0)
		assert_int_equal(kill(pid, 0), -1); /* reaped: not even a zombie */
}

static void test_no_program(void **state)
{
	struct fx *f = *state;
	f->cfg.name = "plain";
	struct husk_vm *vm = NULL, *other = NULL;
	struct husk_err err = { 0 };
	if (husk_vm_start(&f->cfg, &vm, &err) < 0)
		fail_msg("start: %s", err.msg);
	assert_string_equal(husk_vm_vmm(vm), "fake");
	assert_int_equal(husk_vm_vmm_pid(vm), 0);
	assert_int_equal(husk_vm_pidfd(vm), -1);
	assert_int_equal(husk_vm_transport(vm), HUSK_TRANSPORT_UNIX);
	assert_false(husk_vm_exited(vm, NULL));
	/* vm.json says which backend runs it; another process sees it. */
	char json[256];
	snprintf(json, sizeof(json), "%s/vm.json", husk_vm_dir(vm));
	assert_logged(json, "\"vmm\":\"fake\"");
	assert_int_equal(husk_vm_open(f->state, "plain", &other, &err), 0);
	assert_string_equal(husk_vm_vmm(other), "fake");
	assert_int_equal(husk_vm_stop(other, 0, &err), -EPERM);
	husk_vm_free(other);
	/* No guest: nobody listens. */
	assert_int_equal(husk_vm_connect(vm, HUSK_AGENT_PORT, 0, &err), -ECONNREFUSED);
	struct husk_disk d = { .path = f->img, .serial = "x", .readonly = true };
	assert_int_equal(husk_vm_add_disk(vm, &d, &err), -EOPNOTSUPP);
	assert_int_equal(husk_vm_stop(vm, 0, &err), 0);
	assert_int_equal(husk_vm_stop(vm, 0, &err), 0); /* idempotent */
	husk_vm_free(vm);
	assert_nothing_left(f, "plain", 0);
	assert_logged(f->vmm_log, "plain launch vcpus=1 memory_mib=256 slots=0 disks=- program=-");
	assert_logged(f->vmm_log, "plain stop");
}

/* The slots' bookkeeping: vm.c checks what is neutral, the backend what
 * is its own (serial taken, slots full, serial unknown). */
static void test_hotplug(void **state)
{
	struct fx *f = *state;
	f->cfg.name = "hp";
	f->cfg.hotplug_slots = 2;
	struct husk_vm *vm = NULL;
	struct husk_err err = { 0 };
	assert_int_equal(husk_vm_start(&f->cfg, &vm, &err), 0);
	struct husk_disk a = { .path = f->img, .serial = "a", .readonly = true };
	struct husk_disk b = { .path = f->img2, .serial = "b", .readonly = false };
	struct husk_disk c = { .path = f->img, .serial = "c", .readonly = true };
	assert_int_equal(husk_vm_add_disk(vm, &a, &err), 0);
	assert_int_equal(husk_vm_add_disk(vm, &b, &err), 0);
	assert_int_equal(husk_vm_add_disk(vm, &c, &err), -ENOSPC);
	assert_int_equal(husk_vm_add_disk(vm, &a, &err), -EEXIST);
	assert_non_null(strstr(err.msg, "serial a"));
	assert_int_equal(husk_vm_remove_disk(vm, "nope", 0, &err), -ENOENT);
	assert_int_equal(husk_vm_remove_disk(vm, "a", 0, &err), 0);
	assert_int_equal(husk_vm_add_disk(vm, &c, &err), 0);
	/* Refused before the backend hears of it. */
	struct husk_disk bad = { .path = f->img, .serial = "a b", .readonly = true };
	assert_int_equal(husk_vm_add_disk(vm, &bad, &err), -EINVAL);
	struct husk_disk missing = { .path = "/nonexistent.img", .serial = "m", .readonly = true };
	assert_int_equal(husk_vm_add_disk(vm, &missing, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "/nonexistent.img"));
	/* A backend failure is the caller's to see. */
	setenv("HUSK_FAKE_VMM_FAIL", "remove_disk", 1);
	assert_int_equal(husk_vm_remove_disk(vm, "b", 0, &err), -EIO);
	assert_non_null(strstr(err.msg, "HUSK_FAKE_VMM_FAIL"));
	unsetenv("HUSK_FAKE_VMM_FAIL");
	husk_vm_free(vm);
	assert_nothing_left(f, "hp", 0);
	char want[512];
	snprintf(want, sizeof(want),
		 "hp add_disk a ro %s slot=0\nhp add_disk b rw %s slot=1\nhp remove_disk a wait_ms=0\n"
		 "hp add_disk c ro %s slot=0\nhp remove_disk b wait_ms=0\nhp stop\n",
		 f->img, f->img2, f->img);
	assert_logged(f->vmm_log, want);
	assert_not_logged(f->vmm_log, "add_disk m");
}

/* What husk_vm_start refuses before anything exists: nothing is launched
 * and no directory made. */
static void test_config_refused(void **state)
{
	struct fx *f = *state;
	struct husk_vm *vm = NULL;
	struct husk_err err = { 0 };
	struct husk_host_limits host;
	assert_int_equal(husk_host_limits(&host, &err), 0);
	assert_true(host.memory_mib > 0 && host.cpus > 0);
	f->cfg.name = "refused";

	f->cfg.vmm = "nope";
	assert_int_equal(husk_vm_start(&f->cfg, &vm, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "vmm \"nope\""));
	f->cfg.vmm = "fake";

	f->cfg.transport = HUSK_TRANSPORT_HYBRID;
	assert_int_equal(husk_vm_start(&f->cfg, &vm, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "transport hybrid"));
	f->cfg.transport = HUSK_TRANSPORT_AUTO;

	/* Issue 14 item 10: more than the host has. */
	f->cfg.memory_mib = host.memory_mib + 1;
	assert_int_equal(husk_vm_start(&f->cfg, &vm, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "memory_mib"));
	assert_non_null(strstr(err.msg, "MemTotal"));
	f->cfg.memory_mib = 0;
	f->cfg.vcpus = host.cpus + 1;
	assert_int_equal(husk_vm_start(&f->cfg, &vm, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "vcpus"));
	assert_non_null(strstr(err.msg, "online CPUs"));
	f->cfg.vcpus = host.cpus; /* all of them is fine */
	f->cfg.tcg_cache_mib = HUSK_TCG_CACHE_MAX + 1;
	assert_int_equal(husk_vm_start(&f->cfg, &vm, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "tcg_cache_mib 2049"));
	f->cfg.tcg_cache_mib = 0;

	/* Issue 14 item 11: one file twice, writable, is named up front. */
	char link[128];
	snprintf(link, sizeof(link), "%s/link.img", f->dir);
	assert_int_equal(symlink(f->img, link), 0);
	struct husk_disk twice[] = { { .path = f->img, .serial = "d0", .readonly = false },
				     { .path = link, .serial = "d1", .readonly = true } };
	f->cfg.disks = twice;
	f->cfg.n_disks = 2;
	assert_int_equal(husk_vm_start(&f->cfg, &vm, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "given twice"));
	assert_non_null(strstr(err.msg, f->img));
	assert_null(vm);
	assert_nothing_left(f, "refused", 0);
	assert_not_logged(f->vmm_log, "refused launch");
	/* Read-only twice shares fine. */
	twice[0].readonly = true;
	assert_int_equal(husk_vm_start(&f->cfg, &vm, &err), 0);
	husk_vm_free(vm);
	assert_nothing_left(f, "refused", 0);
}

/* Every way a start fails halfway leaves nothing: the backend's launch
 * fails, its program cannot run, the guest dies while booting (its last
 * words are in the error), the guest never answers. */
static void test_start_failures(void **state)
{
	struct fx *f = *state;
	struct husk_vm *vm = NULL;
	struct husk_err err = { 0 };
	f->cfg.name = "bad";

	setenv("HUSK_FAKE_VMM_FAIL", "launch", 1);
	assert_int_equal(husk_vm_start(&f->cfg, &vm, &err), -EIO);
	unsetenv("HUSK_FAKE_VMM_FAIL");
	assert_nothing_left(f, "bad", 0);

	f->cfg.vmm_binary = "/nonexistent/vmm";
	assert_int_equal(husk_vm_start(&f->cfg, &vm, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "/nonexistent/vmm"));
	assert_nothing_left(f, "bad", 0);

	f->cfg.vmm_binary = f->self;
	setenv("TEST_GUEST", "die", 1);
	assert_int_equal(husk_vm_start(&f->cfg, &vm, &err), -ECHILD);
	assert_non_null(strstr(err.msg, "the fake VMM's program exited while the VM booted"));
	assert_non_null(strstr(err.msg, "guest: dying on purpose"));
	assert_nothing_left(f, "bad", 0);

	setenv("TEST_GUEST", "never", 1);
	f->cfg.boot_timeout_ms = 100;
	assert_int_equal(husk_vm_start(&f->cfg, &vm, &err), -ETIMEDOUT);
	assert_non_null(strstr(err.msg, "did not answer within 100 ms"));
	assert_nothing_left(f, "bad", 0);
	assert_null(vm);
}

/* The boot chain's cold start: VM, CreateSandbox, CreateBundle with what
 * the caller gave; then a stop in order (the guest powers off on
 * DestroySandbox, so the backend's stop is never needed). */
static void test_sandbox_start(void **state)
{
	struct fx *f = *state;
	f->cfg.name = "cold";
	f->cfg.vmm_binary = f->self;
	struct husk_disk root = { .path = f->img, .serial = "rootfs0", .readonly = true };
	f->cfg.disks = &root;
	f->cfg.n_disks = 1;
	char *sysctls[] = { "kernel.pid_max=4096" };
	struct husk_sandbox_opts sb = { .hostname = "box", .sysctls = sysctls, .n_sysctls = 1 };
	struct husk_bundle_spec b = { .id = "c1", .spec_json = "{}", .rootfs_serial = "rootfs0",
				      .overlay_bytes = 12345 };
	struct husk_vm *vm = NULL;
	char *bundle = NULL;
	struct husk_err err = { 0 };
	if (husk_sandbox_start(&f->cfg, &sb, &b, &vm, &bundle, &err) < 0)
		fail_msg("%s", err.msg);
	assert_string_equal(bundle, "/run/fake/c1");
	free(bundle);
	pid_t pid = husk_vm_vmm_pid(vm);
	assert_true(pid > 0);
	assert_true(husk_vm_pidfd(vm) >= 0);
	assert_false(husk_vm_exited(vm, NULL));
	assert_true(husk_vm_boot_ns(vm) > 0);
	assert_logged(f->guest_log, "CreateSandbox hostname=box sysctls=1\n"
				    "CreateBundle id=c1 serial=rootfs0 overlay=12345 mounts=0\n");
	char want[256];
	snprintf(want, sizeof(want), "cold launch vcpus=1 memory_mib=256 slots=0 disks=rootfs0:ro:%s",
		 f->img);
	assert_logged(f->vmm_log, want);
	/* Other ports of the guest are its socket's siblings. */
	assert_int_equal(husk_vm_connect(vm, 5000, 0, &err), -ECONNREFUSED);
	assert_int_equal(husk_vm_listen(vm, 5000, &err), -EOPNOTSUPP);
	assert_int_equal(husk_vm_stop(vm, 5000, &err), 0);
	int st = 0;
	assert_true(husk_vm_exited(vm, &st));
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	husk_vm_free(vm);
	assert_logged(f->guest_log, "DestroySandbox");
	assert_not_logged(f->vmm_log, "cold stop");
	assert_nothing_left(f, "cold", pid);
}

/* The chain fails after the VM is up: the VM is stopped and gone; a guest
 * that died says so with its console's last words. */
static void test_sandbox_start_failures(void **state)
{
	struct fx *f = *state;
	f->cfg.name = "chain";
	f->cfg.vmm_binary = f->self;
	struct husk_vm *vm = NULL;
	char *bundle = NULL;
	struct husk_err err = { 0 };
	struct husk_bundle_spec b = { .id = "bad", .spec_json = "{}", .rootfs_serial = "rootfs0" };
	assert_int_equal(husk_sandbox_start(&f->cfg, NULL, &b, &vm, &bundle, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "refused by the guest"));
	assert_null(vm);
	assert_null(bundle);
	assert_logged(f->guest_log, "DestroySandbox");
	assert_nothing_left(f, "chain", 0);

	b.id = "crash";
	assert_true(husk_sandbox_start(&f->cfg, NULL, &b, &vm, &bundle, &err) < 0);
	assert_non_null(strstr(err.msg, "the VM exited"));
	assert_non_null(strstr(err.msg, "exited with status 9"));
	assert_non_null(strstr(err.msg, "guest: crashing in CreateBundle"));
	assert_null(vm);
	assert_nothing_left(f, "chain", 0);

	/* husk_vm_start's own failure, with what it was doing. */
	setenv("TEST_GUEST", "die", 1);
	assert_int_equal(husk_sandbox_start(&f->cfg, NULL, &b, &vm, &bundle, &err), -ECHILD);
	assert_non_null(strstr(err.msg, "starting the VM"));
	assert_nothing_left(f, "chain", 0);
}

/* A container joining a running VM: its disk is hot-added, then its
 * bundle made from it; when the bundle fails, the disk goes again. */
static void test_add_container(void **state)
{
	struct fx *f = *state;
	f->cfg.name = "pod";
	f->cfg.vmm_binary = f->self;
	f->cfg.hotplug_slots = 1;
	struct husk_disk root = { .path = f->img, .serial = "rootfs0", .readonly = true };
	f->cfg.disks = &root;
	f->cfg.n_disks = 1;
	struct husk_bundle_spec b = { .id = "c1", .spec_json = "{}", .rootfs_serial = "rootfs0" };
	struct husk_vm *vm = NULL;
	char *bundle = NULL;
	struct husk_err err = { 0 };
	assert_int_equal(husk_sandbox_start(&f->cfg, NULL, &b, &vm, &bundle, &err), 0);
	free(bundle);

	struct husk_disk d = { .path = f->img2, .serial = "rootfs1", .readonly = true };
	struct husk_bundle_spec j = { .id = "bad", .spec_json = "{}" };
	assert_int_equal(husk_sandbox_add_container(vm, &d, &j, &bundle, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "refused by the guest"));
	assert_null(bundle);
	/* The slot is free again: the one slot takes the next container. */
	j.id = "c2";
	if (husk_sandbox_add_container(vm, &d, &j, &bundle, &err) < 0)
		fail_msg("%s", err.msg);
	assert_string_equal(bundle, "/run/fake/c2");
	free(bundle);
	bundle = NULL;
	/* Refused before anything is added: a serial that is not the disk's,
	 * a disk the VMM refuses. */
	struct husk_disk d2 = { .path = f->img, .serial = "rootfs2", .readonly = true };
	j.id = "c3";
	j.rootfs_serial = "rootfs9";
	assert_int_equal(husk_sandbox_add_container(vm, &d2, &j, &bundle, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "rootfs9"));
	j.rootfs_serial = NULL;
	assert_int_equal(husk_sandbox_add_container(vm, &d2, &j, &bundle, &err), -ENOSPC);
	assert_non_null(strstr(err.msg, "container c3: adding its rootfs"));
	husk_vm_free(vm);

	char want[512];
	snprintf(want, sizeof(want),
		 "pod add_disk rootfs1 ro %s slot=0\npod remove_disk rootfs1 wait_ms=10000\n"
		 "pod add_disk rootfs1 ro %s slot=0\n",
		 f->img2, f->img2);
	assert_logged(f->vmm_log, want);
	assert_logged(f->guest_log, "CreateBundle id=bad serial=rootfs1 overlay=0 mounts=0\n"
				    "CreateBundle id=c2 serial=rootfs1 overlay=0 mounts=0\n");
	assert_not_logged(f->guest_log, "id=c3");
	assert_nothing_left(f, "pod", 0);
}

/* The thread rule of husk.h: while a worker thread adds a container,
 * another reads the VM (connect, pidfd, exited, console, name, dir). */
struct adder {
	struct husk_vm *vm;
	struct husk_disk disk;
	int rc;
	char msg[HUSK_ERR_MSG_MAX];
	volatile bool done;
};

static void *add_thread(void *data)
{
	struct adder *ad = data;
	for (int i = 0; i < 20 && ad->rc == 0; i++) {
		char id[16], *bundle = NULL;
		snprintf(id, sizeof(id), "t%d", i);
		struct husk_bundle_spec b = { .id = id, .spec_json = "{}" };
		struct husk_err err = { 0 };
		ad->rc = husk_sandbox_add_container(ad->vm, &ad->disk, &b, &bundle, &err);
		free(bundle);
		if (ad->rc == 0)
			ad->rc = husk_vm_remove_disk(ad->vm, ad->disk.serial, 0, &err);
		snprintf(ad->msg, sizeof(ad->msg), "%s", err.msg);
	}
	ad->done = true;
	return NULL;
}

static void test_reads_during_hot_add(void **state)
{
	struct fx *f = *state;
	f->cfg.name = "threads";
	f->cfg.vmm_binary = f->self;
	f->cfg.hotplug_slots = 1;
	struct husk_vm *vm = NULL;
	struct husk_err err = { 0 };
	assert_int_equal(husk_vm_start(&f->cfg, &vm, &err), 0);
	struct adder ad = { .vm = vm,
			    .disk = { .path = f->img, .serial = "hot", .readonly = true } };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, add_thread, &ad), 0);
	unsigned reads = 0;
	while (!ad.done || reads == 0) {
		struct husk_err e = { 0 };
		int fd = husk_vm_connect(vm, HUSK_AGENT_PORT, 1000, &e);
		if (fd < 0)
			fail_msg("connect: %s", e.msg);
		close(fd);
		char tail[64];
		husk_vm_console_tail(vm, tail, sizeof(tail));
		assert_false(husk_vm_exited(vm, NULL));
		assert_true(husk_vm_pidfd(vm) >= 0);
		assert_string_equal(husk_vm_name(vm), "threads");
		assert_non_null(husk_vm_dir(vm));
		reads++;
	}
	pthread_join(t, NULL);
	if (ad.rc < 0)
		fail_msg("worker: %s", ad.msg);
	husk_vm_free(vm);
	assert_nothing_left(f, "threads", 0);
}

/* A guest that neither powers off nor leaves on SIGTERM: the backend's
 * stop ends it by force and says so; nothing is left. */
static void test_stop_forced(void **state)
{
	struct fx *f = *state;
	f->cfg.name = "stubborn";
	f->cfg.vmm_binary = f->self;
	setenv("TEST_GUEST", "stubborn", 1);
	struct husk_vm *vm = NULL;
	struct husk_err err = { 0 };
	assert_int_equal(husk_vm_start(&f->cfg, &vm, &err), 0);
	pid_t pid = husk_vm_vmm_pid(vm);
	assert_int_equal(husk_vm_stop(vm, 0, &err), -ETIMEDOUT);
	assert_non_null(strstr(err.msg, "killed"));
	int st = 0;
	assert_true(husk_vm_exited(vm, &st));
	assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	husk_vm_free(vm);
	assert_logged(f->vmm_log, "stubborn stop");
	assert_nothing_left(f, "stubborn", pid);
}

/* The VMM killed from outside: husk_vm_exited sees it; stop only cleans. */
static void test_vmm_killed(void **state)
{
	struct fx *f = *state;
	f->cfg.name = "victim";
	f->cfg.vmm_binary = f->self;
	struct husk_vm *vm = NULL;
	struct husk_err err = { 0 };
	assert_int_equal(husk_vm_start(&f->cfg, &vm, &err), 0);
	pid_t pid = husk_vm_vmm_pid(vm);
	assert_int_equal(kill(pid, SIGKILL), 0);
	int st = 0;
	while (!husk_vm_exited(vm, &st))
		usleep(1000);
	assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	assert_int_equal(husk_vm_stop(vm, 0, &err), 0);
	husk_vm_free(vm);
	assert_not_logged(f->vmm_log, "victim stop");
	assert_nothing_left(f, "victim", pid);
}

/* What a VMM process gets before exec: no THP always, KSM when asked;
 * read back by the child from /proc/self. */
static char *spawn_output(bool merge, struct husk_err *e)
{
	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	const char *argv[] = { "/bin/sh", "-c",
			       "grep ^THP_enabled /proc/self/status; "
			       "grep ^ksm_merge_any /proc/self/ksm_stat 2>/dev/null; true",
			       NULL };
	struct husk_spawn sp = { .argv = argv, .stdin_fd = -1, .stdout_fd = p[1], .stderr_fd = -1,
				 .no_thp = true, .merge_memory = merge };
	pid_t pid;
	int pidfd, st = -1;
	int r = husk_spawn(&sp, &pid, &pidfd, e);
	close(p[1]);
	if (r < 0) {
		close(p[0]);
		return NULL;
	}
	static char out[256];
	size_t len = 0;
	ssize_t n;
	while ((n = read(p[0], out + len, sizeof(out) - 1 - len)) > 0)
		len += (size_t)n;
	close(p[0]);
	out[len] = '\0';
	assert_int_equal(husk_reap(pid, pidfd, 10000, &st), 0);
	close(pidfd);
	assert_int_equal(st, 0);
	return out;
}

static void test_spawn_memory_flags(void **state)
{
	(void)state;
	struct husk_err e = { 0 };
	char *out = spawn_output(false, &e);
	assert_non_null(out);
	assert_non_null(strstr(out, "THP_enabled:\t0"));
	/* /proc/PID/ksm_stat shows the flag from Linux 6.14. */
	bool shown = strstr(out, "ksm_merge_any:") != NULL;
	if (shown)
		assert_non_null(strstr(out, "ksm_merge_any: no"));
	out = spawn_output(true, &e);
	if (!out) {
		/* A kernel without KSM or the prctl (before 6.4): refused,
		 * naming why; libhusk refuses merge_memory before 6.7 anyway. */
		assert_int_equal(e.code, -EINVAL);
		assert_non_null(strstr(e.msg, "PR_SET_MEMORY_MERGE"));
		assert_false(shown);
		return;
	}
	if (shown)
		assert_non_null(strstr(out, "ksm_merge_any: yes"));
	else
		print_message("ksm_merge_any is not shown by this kernel: not read back\n");
}

static void test_spawn_exec_failure(void **state)
{
	(void)state;
	struct husk_err e = { 0 };
	const char *argv[] = { "/no/such/vmm", NULL };
	struct husk_spawn sp = { .argv = argv, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1,
				 .no_thp = true };
	pid_t pid;
	int pidfd;
	assert_int_equal(husk_spawn(&sp, &pid, &pidfd, &e), -ENOENT);
	assert_non_null(strstr(e.msg, "exec /no/such/vmm"));
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--listen") == 0)
		return guest_main(argv[2]);
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_no_program, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hotplug, setup, teardown),
		cmocka_unit_test_setup_teardown(test_config_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_start_failures, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_start, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_start_failures, setup, teardown),
		cmocka_unit_test_setup_teardown(test_add_container, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reads_during_hot_add, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_forced, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vmm_killed, setup, teardown),
		cmocka_unit_test(test_spawn_memory_flags),
		cmocka_unit_test(test_spawn_exec_failure),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
