/* libhusk's VM lifecycle against real QEMU (TCG here): every failure path
 * leaves no process, socket or directory; stop works through QMP when the
 * guest does not power off by itself; names are exclusive; a directory
 * left by a dead owner is reclaimed; a VM opened by another user of the
 * library cannot be stopped by it.
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "husk.h"

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
	pid_t qemu = husk_vm_qemu_pid(vm), vsockd = husk_vm_vsockd_pid(vm);
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
	kill(husk_vm_qemu_pid(vm), SIGKILL);
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

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_missing_files_named, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_kernel_leaves_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_boot_timeout_leaves_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_start_open_stop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_directory_reclaimed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_qemu_killed, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
