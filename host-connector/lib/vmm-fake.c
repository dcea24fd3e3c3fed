/* The fake backend (husk_vm_config.vmm = "fake"), for tests of what sits
 * above the VMM seam: vm.c, the boot chain, the shim. No hypervisor runs.
 *
 * - With vmm_binary, launch runs it as the stand-in for the whole VM:
 *   `<vmm_binary> --listen unix:<vm dir>/agent.sock`, stdout and stderr
 *   into console.log. build/test/husk-agent takes exactly that, and serves
 *   the guest's ports there (port 1024 on agent.sock, port P on
 *   agent.sock_<P>): the transport is "unix". Its process is the VMM's for
 *   everything else (readiness, pidfd, husk_vm_exited, stop, die_with_parent).
 * - Without it, nothing runs and there is no guest: start does not wait
 *   for an agent; connections find nobody.
 * - Each call is one line, "<vm name> <call> [details]", appended to
 *   $HUSK_FAKE_VMM_LOG when set (it outlives the VM), else to
 *   <vm dir>/fake-vmm.log.
 * - $HUSK_FAKE_VMM_FAIL, a comma-separated list of calls (launch, stop,
 *   add_disk, remove_disk), makes those fail with -EIO, after recording.
 *   Read at each call.
 * - Hotplug slots are bookkeeping only: the same -EEXIST, -ENOSPC and
 *   -ENOENT as QEMU's. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "husk/cleanup.h"
#include "husk/path.h"
#include "vmm.h"

#define TERM_WAIT_MS 3000
#define KILL_WAIT_MS 10000

struct fake_vm {
	char log[PATH_MAX];
	char slots[HUSK_HOTPLUG_MAX][21]; /* the serial in each; "" when free */
};

static struct fake_vm *fake_of(const struct husk_vm *vm)
{
	return vm->vmm_data;
}

static bool failing(const char *call)
{
	const char *list = getenv("HUSK_FAKE_VMM_FAIL");
	size_t n = strlen(call);
	for (const char *p = list; p && *p; p += strcspn(p, ","), p += *p == ',') {
		if (strncmp(p, call, n) == 0 && (p[n] == ',' || p[n] == '\0'))
			return true;
	}
	return false;
}

/* Records the call; -EIO when the test asked it to fail. */
__attribute__((format(printf, 4, 5))) static int record(const struct husk_vm *vm, const char *call,
							struct husk_err *err, const char *fmt, ...)
{
	struct fake_vm *f = fake_of(vm);
	char line[1024];
	int n = snprintf(line, sizeof(line), "%s %s", vm->name, call);
	if (fmt && n > 0 && (size_t)n < sizeof(line)) {
		line[n++] = ' ';
		va_list ap;
		va_start(ap, fmt);
		int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
		va_end(ap);
		n = m < 0 ? n : n + m;
	}
	if (n < 0 || (size_t)n >= sizeof(line) - 1)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	if (f) {
		/* One write with O_APPEND: lines of concurrent VMs do not mix. */
		_cleanup_fd_ int fd = open(f->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (fd >= 0)
			(void)!write(fd, line, (size_t)n);
	}
	if (failing(call))
		return husk_err_set(err, -EIO, "VM %s: fake VMM: %s fails (HUSK_FAKE_VMM_FAIL)",
				    vm->name, call);
	return 0;
}

static int fake_transport(const struct husk_vm_config *cfg, enum husk_transport *out,
			  struct husk_err *err)
{
	if (cfg->transport != HUSK_TRANSPORT_AUTO && cfg->transport != HUSK_TRANSPORT_UNIX)
		return husk_err_set(err, -EINVAL, "transport %s: the fake backend offers unix",
				    husk_transport_name(cfg->transport));
	*out = HUSK_TRANSPORT_UNIX;
	return 0;
}

static int fake_launch(struct husk_vm *vm, const struct husk_vmm_boot *b, struct husk_err *err)
{
	const struct husk_vm_config *cfg = b->cfg;
	struct fake_vm *f = calloc(1, sizeof(*f));
	if (!f)
		return husk_err_set(err, -ENOMEM, "fake VMM state");
	vm->vmm_data = f;
	const char *env = getenv("HUSK_FAKE_VMM_LOG");
	if ((env && *env ? husk_path_fmt(f->log, sizeof(f->log), "%s", env) :
			   husk_path_fmt(f->log, sizeof(f->log), "%s/fake-vmm.log", vm->dir)) < 0)
		return husk_err_set(err, -ENAMETOOLONG, "fake VMM log");
	char disks[512] = "";
	for (size_t i = 0, off = 0; i < cfg->n_disks && off < sizeof(disks); i++) {
		int n = snprintf(disks + off, sizeof(disks) - off, "%s%s:%s:%s", i ? "," : "",
				 cfg->disks[i].serial, cfg->disks[i].readonly ? "ro" : "rw",
				 cfg->disks[i].path);
		off += n > 0 ? (size_t)n : 0;
	}
	int r = record(vm, "launch", err, "vcpus=%u memory_mib=%u slots=%u disks=%s program=%s",
		       b->vcpus, b->memory_mib, cfg->hotplug_slots, disks[0] ? disks : "-",
		       cfg->vmm_binary ? cfg->vmm_binary : "-");
	if (r < 0 || !cfg->vmm_binary)
		return r;
	char listen[PATH_MAX + 8];
	if (husk_path_fmt(listen, sizeof(listen), "unix:%s", vm->uds) < 0)
		return husk_err_set(err, -ENAMETOOLONG, "fake VMM socket");
	_cleanup_fd_ int console = open(vm->console, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (console < 0)
		return husk_err_sys(err, -errno, "open %s", vm->console);
	const char *argv[] = { cfg->vmm_binary, "--listen", listen, NULL };
	struct husk_spawn s = { .argv = argv, .stdin_fd = -1, .stdout_fd = console,
				.stderr_fd = console, .die_with_parent = cfg->die_with_parent };
	return husk_spawn(&s, &vm->vmm_pid, &vm->vmm_pidfd, err);
}

/* The program's graceful end is SIGTERM (husk-agent leaves on it). */
static int fake_stop(struct husk_vm *vm, struct husk_err *err)
{
	int r = record(vm, "stop", err, NULL);
	if (vm->vmm_pid <= 0)
		return r;
	kill(vm->vmm_pid, SIGTERM);
	if (husk_vm_reap_vmm(vm, TERM_WAIT_MS) == 0)
		return r;
	kill(vm->vmm_pid, SIGKILL);
	husk_vm_reap_vmm(vm, KILL_WAIT_MS);
	return husk_err_set(err, -ETIMEDOUT, "VM %s: the fake VMM's program ignored SIGTERM; killed",
			    vm->name);
}

static int fake_add_disk(struct husk_vm *vm, const struct husk_disk *disk, struct husk_err *err)
{
	struct fake_vm *f = fake_of(vm);
	unsigned slot = vm->n_slots;
	for (unsigned i = 0; i < vm->n_slots; i++) {
		if (strcmp(f->slots[i], disk->serial) == 0)
			return husk_err_set(err, -EEXIST, "disk serial %s: already attached",
					    disk->serial);
		if (!f->slots[i][0] && slot == vm->n_slots)
			slot = i;
	}
	if (slot == vm->n_slots)
		return husk_err_set(err, -ENOSPC, "VM %s: all %u hotplug slots are in use", vm->name,
				    vm->n_slots);
	int r = record(vm, "add_disk", err, "%s %s %s slot=%u", disk->serial,
		       disk->readonly ? "ro" : "rw", disk->path, slot);
	if (r < 0)
		return r;
	snprintf(f->slots[slot], sizeof(f->slots[slot]), "%s", disk->serial);
	return 0;
}

static int fake_remove_disk(struct husk_vm *vm, const char *serial, unsigned wait_ms,
			    struct husk_err *err)
{
	struct fake_vm *f = fake_of(vm);
	for (unsigned i = 0; i < vm->n_slots; i++) {
		if (strcmp(f->slots[i], serial) != 0)
			continue;
		int r = record(vm, "remove_disk", err, "%s wait_ms=%u", serial, wait_ms);
		if (r == 0)
			f->slots[i][0] = '\0';
		return r;
	}
	return husk_err_set(err, -ENOENT, "disk serial %s: not attached to VM %s", serial, vm->name);
}

static int fake_add_fs(struct husk_vm *vm, const char *tag, const char *socket, struct husk_err *err)
{
	(void)tag;
	(void)socket;
	return husk_vmm_unsupported(vm, "shared directories", err);
}

static int fake_add_nic(struct husk_vm *vm, const struct husk_vmm_nic *nic, struct husk_err *err)
{
	(void)nic;
	return husk_vmm_unsupported(vm, "network interfaces", err);
}

static int fake_snapshot(struct husk_vm *vm, const char *path, struct husk_err *err)
{
	(void)path;
	return husk_vmm_unsupported(vm, "snapshots", err);
}

static int fake_restore(struct husk_vm *vm, const struct husk_vmm_boot *b, const char *path,
			struct husk_err *err)
{
	(void)b;
	(void)path;
	return husk_vmm_unsupported(vm, "restoring a snapshot", err);
}

static void fake_describe(const struct husk_vm *vm, json_object *state)
{
	const struct fake_vm *f = fake_of(vm);
	if (f)
		json_object_object_add(state, "fake_vmm_log", json_object_new_string(f->log));
}

static void fake_release(struct husk_vm *vm)
{
	free(vm->vmm_data);
	vm->vmm_data = NULL;
}

const struct husk_vmm_ops husk_vmm_fake = {
	.name = "fake",
	.program = "the fake VMM's program",
	.transport = fake_transport,
	.launch = fake_launch,
	.stop = fake_stop,
	.add_disk = fake_add_disk,
	.remove_disk = fake_remove_disk,
	.add_fs = fake_add_fs,
	.add_nic = fake_add_nic,
	.snapshot = fake_snapshot,
	.restore = fake_restore,
	.describe = fake_describe,
	.release = fake_release,
};
