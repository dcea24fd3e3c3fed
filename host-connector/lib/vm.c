/* The VM lifecycle, VMM-neutral (vmm.h): config checks, the state
 * directory, the transport, the backend's launch, readiness, stop order. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "husk/cleanup.h"
#include "husk/path.h"
#include "vmm.h"

#define DEFAULT_VCPUS 1
#define DEFAULT_MEMORY_MIB 256
#define BOOT_TIMEOUT_KVM_MS 60000
#define BOOT_TIMEOUT_TCG_MS 120000
#define DESTROY_CALL_MS 2000
#define VSOCKD_LEAVE_MS 2000

static const char serial_chars[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";

static bool name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > HUSK_NAME_MAX || s[0] == '.')
		return false;
	return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") == n;
}

/* The same file twice, one of them writable: QEMU's image locking (and
 * any VMM's sense) refuses it, so say so before anything starts. */
static int check_disks_distinct(const struct husk_vm_config *cfg, struct husk_err *err)
{
	for (size_t i = 1; i < cfg->n_disks; i++) {
		struct stat si;
		if (stat(cfg->disks[i].path, &si) < 0)
			continue;
		for (size_t j = 0; j < i; j++) {
			struct stat sj;
			if (stat(cfg->disks[j].path, &sj) < 0 || si.st_dev != sj.st_dev ||
			    si.st_ino != sj.st_ino)
				continue;
			if (cfg->disks[i].readonly && cfg->disks[j].readonly)
				continue; /* read-only twice shares fine */
			return husk_err_set(err, -EINVAL,
					    "disk %zu %s: the same file as disk %zu %s, given twice "
					    "and writable: give it once",
					    i, cfg->disks[i].path, j, cfg->disks[j].path);
		}
	}
	return 0;
}

static int check_config(const struct husk_vm_config *cfg, const struct husk_vmm_ops **ops,
			struct husk_err *err)
{
	if (!(*ops = husk_vmm_find(cfg->vmm)))
		return husk_err_set(err, -EINVAL, "vmm \"%s\": want %s", cfg->vmm, husk_vmm_names());
	if (!cfg->kernel || access(cfg->kernel, R_OK) < 0)
		return husk_err_sys(err, cfg->kernel ? -errno : -EINVAL, "kernel %s",
				    cfg->kernel ? cfg->kernel : "(not set)");
	if (!cfg->initrd || access(cfg->initrd, R_OK) < 0)
		return husk_err_sys(err, cfg->initrd ? -errno : -EINVAL, "initrd %s",
				    cfg->initrd ? cfg->initrd : "(not set)");
	if (cfg->name && !name_ok(cfg->name))
		return husk_err_set(err, -EINVAL,
				    "VM name \"%s\": want 1-%d characters of [A-Za-z0-9_.-], not "
				    "starting with '.'",
				    cfg->name, HUSK_NAME_MAX);
	if (cfg->hotplug_slots > HUSK_HOTPLUG_MAX)
		return husk_err_set(err, -EINVAL, "hotplug_slots %u: at most %d",
				    cfg->hotplug_slots, HUSK_HOTPLUG_MAX);
	if (cfg->tcg_cache_mib > HUSK_TCG_CACHE_MAX)
		return husk_err_set(err, -EINVAL, "tcg_cache_mib %u: at most %d", cfg->tcg_cache_mib,
				    HUSK_TCG_CACHE_MAX);
	/* Before 6.7 the kernel drops PR_SET_MEMORY_MERGE at exec: the VMM
	 * would run unmerged and nothing would say so. */
	if (cfg->merge_memory && !husk_kernel_at_least(6, 7))
		return husk_err_set(err, -EOPNOTSUPP,
				    "merge_memory: KSM for the VMM process needs Linux 6.7 or later "
				    "(PR_SET_MEMORY_MERGE kept across exec)");
	if (cfg->vcpus > 255)
		return husk_err_set(err, -EINVAL, "vcpus %u: at most 255", cfg->vcpus);
	if (cfg->memory_mib && (cfg->memory_mib < 64 || cfg->memory_mib > 1024 * 1024))
		return husk_err_set(err, -EINVAL, "memory %u MiB: want 64 MiB to 1 TiB",
				    cfg->memory_mib);
	/* What the host cannot give one VM fails later and worse (QEMU's
	 * allocation, or a host that swaps or OOM-kills): refuse it here. */
	struct husk_host_limits host;
	int r = husk_host_limits(&host, err);
	if (r < 0)
		return r;
	if (cfg->memory_mib > host.memory_mib)
		return husk_err_set(err, -EINVAL,
				    "memory_mib %u: more than this host has (MemTotal %u MiB)",
				    cfg->memory_mib, host.memory_mib);
	if (cfg->vcpus > host.cpus)
		return husk_err_set(err, -EINVAL, "vcpus %u: more than this host's %u online CPUs",
				    cfg->vcpus, host.cpus);
	for (size_t i = 0; i < cfg->n_disks; i++) {
		const struct husk_disk *d = &cfg->disks[i];
		if (!d->path || access(d->path, d->readonly ? R_OK : R_OK | W_OK) < 0)
			return husk_err_sys(err, d->path ? -errno : -EINVAL, "disk %zu %s", i,
					    d->path ? d->path : "(no path)");
		size_t sl = d->serial ? strlen(d->serial) : 0;
		if (sl == 0 || sl > 20 || strspn(d->serial, serial_chars) != sl)
			return husk_err_set(err, -EINVAL,
					    "disk %zu serial \"%s\": want 1-20 characters of [A-Za-z0-9_-]",
					    i, d->serial ? d->serial : "");
	}
	if ((r = check_disks_distinct(cfg, err)) < 0)
		return r;
	return (*ops)->check ? (*ops)->check(cfg, err) : 0;
}

struct husk_vm *husk_vm_alloc(void)
{
	struct husk_vm *vm = calloc(1, sizeof(*vm));
	if (vm) {
		vm->lock_fd = vm->vmm_pidfd = vm->vsockd_pidfd = vm->lifeline_fd = -1;
		vm->log_listen_fd = vm->log_fd = -1;
		pthread_mutex_init(&vm->lock, NULL);
	}
	return vm;
}

static void vm_release(struct husk_vm *vm)
{
	if (vm->vmm && vm->vmm->release)
		vm->vmm->release(vm);
	husk_log_listener_close(vm);
	if (vm->log_fd >= 0)
		close(vm->log_fd);
	if (vm->lock_fd >= 0)
		close(vm->lock_fd);
	if (vm->vmm_pidfd >= 0)
		close(vm->vmm_pidfd);
	if (vm->vsockd_pidfd >= 0)
		close(vm->vsockd_pidfd);
	for (unsigned i = 0; i < vm->n_shares; i++)
		if (vm->shares[i].pidfd >= 0)
			close(vm->shares[i].pidfd);
	/* Last: the keeper of a pooled VM removes what is left once it goes. */
	if (vm->lifeline_fd >= 0)
		close(vm->lifeline_fd);
	pthread_mutex_destroy(&vm->lock);
	free(vm);
}

void husk_vm_forget(struct husk_vm *vm)
{
	if (vm)
		vm_release(vm);
}

/* The keeper reaps the VMM as it exits and sends the status at once; a
 * keeper that is gone too sends nothing. Short: callers may be event
 * loops (husk_vm_exited). */
#define KEEPER_STATUS_MS 200

/* The VMM has exited: reap it, or, for a pooled VM, which the keeper
 * reaps, hear its wait status from the keeper. Under vm->lock. */
static void collect_vmm(struct husk_vm *vm, unsigned wait_ms)
{
	int r = husk_reap(vm->vmm_pid, vm->vmm_pidfd, wait_ms, &vm->vmm_status);
	if (r == -ECHILD) {
		int st = 0;
		struct pollfd p = { .fd = vm->lifeline_fd, .events = POLLIN };
		if (vm->lifeline_fd >= 0 && poll(&p, 1, KEEPER_STATUS_MS) == 1 &&
		    recv(vm->lifeline_fd, &st, sizeof(st), MSG_DONTWAIT) == (ssize_t)sizeof(st))
			vm->vmm_status = st;
		else
			vm->vmm_status = 0; /* the keeper went first: not known */
		r = 0;
	}
	if (r == 0)
		vm->vmm_reaped = true;
}

int husk_vm_reap_vmm(struct husk_vm *vm, unsigned timeout_ms)
{
	if (vm->vmm_pid <= 0 || vm->vmm_pidfd < 0)
		return 0;
	/* Wait without the lock: readers (husk_vm_exited) never block. */
	struct pollfd p = { .fd = vm->vmm_pidfd, .events = POLLIN };
	uint64_t deadline = husk_monotonic_ns() + (uint64_t)timeout_ms * 1000000u;
	for (;;) {
		pthread_mutex_lock(&vm->lock);
		bool reaped = vm->vmm_reaped;
		pthread_mutex_unlock(&vm->lock);
		if (reaped)
			return 0;
		uint64_t now = husk_monotonic_ns();
		int left = now >= deadline ? 0 : (int)((deadline - now) / 1000000u) + 1;
		int n = poll(&p, 1, left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 1)
			break;
		if (left == 0 || n == 0)
			return -ETIMEDOUT;
	}
	pthread_mutex_lock(&vm->lock);
	if (!vm->vmm_reaped)
		collect_vmm(vm, 0);
	bool reaped = vm->vmm_reaped;
	pthread_mutex_unlock(&vm->lock);
	return reaped ? 0 : -ETIMEDOUT;
}

/* SIGKILL and reap, for a start that failed. */
static void kill_vmm(struct husk_vm *vm)
{
	if (vm->vmm_pid <= 0 || husk_vm_reap_vmm(vm, 0) == 0)
		return;
	husk_pidfd_signal(vm->vmm_pidfd, SIGKILL);
	husk_vm_reap_vmm(vm, 10000);
}

static int make_dir(struct husk_vm *vm, const char *state_dir, struct husk_err *err)
{
	int r = husk_mkdir_p(state_dir, 0700, err);
	if (r < 0)
		return husk_err_wrap(err, "state directory");
	/* The longest socket path is the transport's socket plus "_<port>". */
	const char *sock = vm->transport == HUSK_TRANSPORT_UNIX ? "agent.sock" : "vsock.sock";
	if (husk_path_fmt(vm->dir, sizeof(vm->dir), "%s/%s", state_dir, vm->name) < 0 ||
	    husk_path_fmt(vm->uds, sizeof(vm->uds), "%s/%s", vm->dir, sock) < 0 ||
	    husk_path_fmt(vm->console, sizeof(vm->console), "%s/console.log", vm->dir) < 0 ||
	    strlen(vm->uds) + 12 > 107)
		return husk_err_set(err, -ENAMETOOLONG,
				    "state directory %s: too long for unix socket paths (use a "
				    "shorter --state-dir or HUSK_STATE_DIR)",
				    state_dir);
	if (mkdir(vm->dir, 0700) == 0)
		return 1;
	if (errno != EEXIST)
		return husk_err_sys(err, -errno, "mkdir %s", vm->dir);
	/* Left behind by an owner that died: reclaim it. */
	int lfd;
	if ((r = husk_take_lock(vm->dir, &lfd, err)) < 0) {
		if (r == -EBUSY)
			r = husk_err_set(err, -EEXIST, "a VM named %s is running (%s)", vm->name,
					 vm->dir);
		return r;
	}
	husk_remove_dir(vm->dir);
	close(lfd);
	if (mkdir(vm->dir, 0700) < 0)
		return husk_err_sys(err, -errno, "mkdir %s", vm->dir);
	return 1;
}

int husk_vm_start(const struct husk_vm_config *cfg, struct husk_vm **out, struct husk_err *err)
{
	const struct husk_vmm_ops *ops;
	int r = check_config(cfg, &ops, err);
	if (r < 0)
		return r;
	enum husk_transport transport;
	if ((r = ops->transport(cfg, &transport, err)) < 0)
		return r;
	struct husk_vm *vm = husk_vm_alloc();
	if (!vm)
		return husk_err_set(err, -ENOMEM, "VM");
	vm->owner = true;
	vm->vmm = ops;
	snprintf(vm->vmm_name, sizeof(vm->vmm_name), "%s", ops->name);
	vm->n_slots = cfg->hotplug_slots;
	vm->transport = transport;
	vm->accel = cfg->accel == HUSK_ACCEL_AUTO ? husk_accel_detect(NULL, 0) : cfg->accel;
	if (cfg->name) {
		snprintf(vm->name, sizeof(vm->name), "%s", cfg->name);
	} else {
		uint32_t rnd = 0;
		(void)!getrandom(&rnd, sizeof(rnd), 0);
		snprintf(vm->name, sizeof(vm->name), "vm-%08x", rnd);
	}
	char state[PATH_MAX];
	const char *state_dir = cfg->state_dir ? cfg->state_dir :
						 husk_default_state_dir(state, sizeof(state));
	_cleanup_fd_ int vhost_fd = -1;
	bool dir_made = false;
	if ((r = make_dir(vm, state_dir, err)) < 0)
		goto fail;
	dir_made = true;
	if ((r = husk_take_lock(vm->dir, &vm->lock_fd, err)) < 0 ||
	    (r = husk_transport_setup(vm, cfg, &vhost_fd, err)) < 0)
		goto fail;

	/* Always a husk.* key: it is what tells init it may power the VM off
	 * (init/cmdline.h); without one, poweroff ends in a panic. */
	char init[128], vu[PATH_MAX];
	snprintf(init, sizeof(init), "husk.log_level=%d husk.log_port=%u%s",
		 cfg->log_level ? cfg->log_level : 6, vm->log_port,
		 cfg->debug_console ? " husk.debug_console=1" : "");
	husk_path_fmt(vu, sizeof(vu), "%s/vu.sock", vm->dir);
	struct husk_vmm_boot boot = {
		.cfg = cfg,
		.vcpus = cfg->vcpus ? cfg->vcpus : DEFAULT_VCPUS,
		.memory_mib = cfg->memory_mib ? cfg->memory_mib : DEFAULT_MEMORY_MIB,
		.init_args = init,
		.vhost_fd = vhost_fd,
		.vhost_user_socket = vm->transport == HUSK_TRANSPORT_HYBRID ? vu : NULL,
	};
	uint64_t t0 = husk_monotonic_ns();
	if ((r = ops->launch(vm, &boot, err)) < 0 || (r = husk_state_write(vm, err)) < 0)
		goto fail;
	/* A backend that runs no process has no guest to wait for. */
	if (vm->vmm_pid > 0) {
		unsigned timeout = cfg->boot_timeout_ms ? cfg->boot_timeout_ms :
				   vm->accel == HUSK_ACCEL_KVM ? BOOT_TIMEOUT_KVM_MS :
								 BOOT_TIMEOUT_TCG_MS;
		if ((r = husk_wait_ready(vm, timeout, t0, err)) < 0) {
			if (ops->explain)
				ops->explain(vm, err);
			goto fail;
		}
	}
	*out = vm;
	return 0;
fail:
	kill_vmm(vm);
	husk_end_child(&vm->vsockd_pid, &vm->vsockd_pidfd, 2000, NULL);
	if (dir_made)
		husk_remove_dir(vm->dir);
	vm_release(vm);
	return r;
}

int husk_vm_open(const char *state_dir, const char *name, struct husk_vm **out,
		 struct husk_err *err)
{
	if (!name_ok(name))
		return husk_err_set(err, -EINVAL, "VM name \"%s\" is not valid", name);
	char state[PATH_MAX];
	if (!state_dir)
		state_dir = husk_default_state_dir(state, sizeof(state));
	struct husk_vm *vm = husk_vm_alloc();
	if (!vm)
		return husk_err_set(err, -ENOMEM, "VM");
	snprintf(vm->name, sizeof(vm->name), "%s", name);
	int r;
	if (husk_path_fmt(vm->dir, sizeof(vm->dir), "%s/%s", state_dir, name) < 0) {
		r = husk_err_set(err, -ENAMETOOLONG, "state of VM %s", name);
		goto fail;
	}
	if ((r = husk_state_read(vm, err)) < 0)
		goto fail;
	/* A lock nobody holds means the owner is gone. */
	int lfd;
	if (husk_take_lock(vm->dir, &lfd, NULL) == 0) {
		close(lfd);
		r = husk_err_set(err, -ESRCH, "VM %s is not running (stale %s)", name, vm->dir);
		goto fail;
	}
	*out = vm;
	return 0;
fail:
	vm_release(vm);
	return r;
}

int husk_vm_remove_stale(const char *state_dir, const char *name, struct husk_err *err)
{
	if (!name_ok(name))
		return husk_err_set(err, -EINVAL, "VM name \"%s\" is not valid", name);
	char dir[PATH_MAX];
	if (husk_path_fmt(dir, sizeof(dir), "%s/%s", state_dir, name) < 0)
		return husk_err_set(err, -ENAMETOOLONG, "state of VM %s", name);
	if (access(dir, F_OK) < 0)
		return 0;
	int lfd, r = husk_take_lock(dir, &lfd, err);
	if (r == -EBUSY)
		return husk_err_set(err, -EBUSY, "VM %s is running (%s)", name, dir);
	if (r < 0)
		return r == -ENOENT ? 0 : r;
	husk_remove_dir(dir);
	close(lfd);
	return 0;
}

bool husk_vm_exited(struct husk_vm *vm, int *status)
{
	pthread_mutex_lock(&vm->lock);
	if (!vm->vmm_reaped && vm->owner && vm->vmm_pid > 0)
		collect_vmm(vm, 0);
	bool reaped = vm->vmm_reaped;
	if (reaped && status)
		*status = vm->vmm_status;
	pthread_mutex_unlock(&vm->lock);
	return reaped;
}

int husk_vm_stop(struct husk_vm *vm, unsigned grace_ms, struct husk_err *err)
{
	if (!vm->owner)
		return husk_err_set(err, -EPERM, "VM %s was started by another process", vm->name);
	if (vm->stopped)
		return 0;
	int ret = 0;
	if (vm->vmm_pid <= 0) {
		ret = vm->vmm->stop(vm, err); /* nothing runs; the backend still hears of it */
	} else if (!husk_vm_exited(vm, NULL)) {
		/* In order: ask the guest, then the VMM, then the kernel. */
		struct husk_agent *a = NULL;
		struct husk_err e = { 0 };
		if (husk_agent_open(vm, DESTROY_CALL_MS, &a, &e) == 0) {
			husk_agent_destroy(a, &e);
			husk_agent_close(a);
		}
		if (husk_vm_reap_vmm(vm, grace_ms) < 0)
			ret = vm->vmm->stop(vm, err);
	}
	/* husk-vsockd leaves once the VMM is gone; nudge it if it does not. */
	husk_vsockd_end(vm, VSOCKD_LEAVE_MS);
	husk_shares_end(vm);
	husk_remove_dir(vm->dir);
	vm->stopped = true;
	return ret;
}

void husk_vm_free(struct husk_vm *vm)
{
	if (!vm)
		return;
	if (vm->owner && !vm->stopped)
		husk_vm_stop(vm, 2000, NULL);
	vm_release(vm);
}

/* ---- disks added later: the neutral half; the backend's is add_disk ---- */

/* What every hot-add and removal needs: a VM this process runs, with
 * slots. */
int husk_hotplug_usable(struct husk_vm *vm, struct husk_err *err)
{
	if (!vm->owner || !vm->vmm)
		return husk_err_set(err, -EPERM, "VM %s: not started by this process", vm->name);
	if (vm->stopped)
		return husk_err_set(err, -ESHUTDOWN, "VM %s: stopped", vm->name);
	if (vm->n_slots == 0)
		return husk_err_set(err, -EOPNOTSUPP,
				    "VM %s: started without hotplug slots (hotplug_slots = 0)",
				    vm->name);
	return 0;
}

int husk_vm_add_disk(struct husk_vm *vm, const struct husk_disk *disk, struct husk_err *err)
{
	int r = husk_hotplug_usable(vm, err);
	if (r < 0)
		return r;
	size_t n = disk->serial ? strlen(disk->serial) : 0;
	if (n == 0 || n > 20 ||
	    strspn(disk->serial, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") != n)
		return husk_err_set(err, -EINVAL,
				    "disk serial \"%s\": want 1-20 characters of [A-Za-z0-9_.-]",
				    disk->serial ? disk->serial : "");
	if (!disk->path || access(disk->path, disk->readonly ? R_OK : R_OK | W_OK) < 0)
		return husk_err_sys(err, disk->path ? -errno : -EINVAL, "disk %s",
				    disk->path ? disk->path : "(no path)");
	return vm->vmm->add_disk(vm, disk, err);
}

int husk_vm_add_nic(struct husk_vm *vm, const struct husk_nic *nic, struct husk_err *err)
{
	int r = husk_hotplug_usable(vm, err);
	if (r < 0)
		return r;
	unsigned b[6];
	char end;
	if (!nic->mac || sscanf(nic->mac, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3],
				&b[4], &b[5], &end) != 6 || strlen(nic->mac) != 17 || (b[0] & 1))
		return husk_err_set(err, -EINVAL, "NIC mac \"%s\": want a unicast xx:xx:xx:xx:xx:xx",
				    nic->mac ? nic->mac : "");
	if (nic->tap_fd < 0)
		return husk_err_set(err, -EBADF, "NIC %s: no TAP fd", nic->mac);
	return vm->vmm->add_nic(vm, &(struct husk_vmm_nic){ .tap_fd = nic->tap_fd, .mac = nic->mac },
				err);
}

int husk_vm_remove_disk(struct husk_vm *vm, const char *serial, unsigned wait_ms,
			struct husk_err *err)
{
	int r = husk_hotplug_usable(vm, err);
	if (r < 0)
		return r;
	if (strchr(serial, ':')) /* a share's slot ("fs:<tag>"), never a disk's */
		return husk_err_set(err, -ENOENT, "disk serial %s: not attached to VM %s", serial,
				    vm->name);
	return vm->vmm->remove_disk(vm, serial, wait_ms, err);
}

/* ---- accessors: fields fixed at start (husk.h: any thread) ---- */

int husk_vm_log_fd(const struct husk_vm *vm)
{
	return vm->log_fd;
}

int husk_vm_pidfd(const struct husk_vm *vm)
{
	return vm->owner ? vm->vmm_pidfd : -1;
}

const char *husk_vm_name(const struct husk_vm *vm) { return vm->name; }
const char *husk_vm_dir(const struct husk_vm *vm) { return vm->dir; }
const char *husk_vm_console_log(const struct husk_vm *vm) { return vm->console; }
const char *husk_vm_vmm(const struct husk_vm *vm) { return vm->vmm_name; }
const char *husk_vm_vmm_program(const struct husk_vm *vm)
{
	return vm->vmm ? vm->vmm->program : vm->vmm_name;
}
enum husk_accel husk_vm_accel(const struct husk_vm *vm) { return vm->accel; }
enum husk_transport husk_vm_transport(const struct husk_vm *vm) { return vm->transport; }
uint32_t husk_vm_cid(const struct husk_vm *vm) { return vm->cid; }
pid_t husk_vm_vmm_pid(const struct husk_vm *vm) { return vm->vmm_pid; }
pid_t husk_vm_vsockd_pid(const struct husk_vm *vm) { return vm->vsockd_pid; }
uint64_t husk_vm_boot_ns(const struct husk_vm *vm) { return vm->boot_ns; }

void husk_vm_console_tail(const struct husk_vm *vm, char *buf, size_t max)
{
	husk_file_tail(vm->console, buf, max);
}
