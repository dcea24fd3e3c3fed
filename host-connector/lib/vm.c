/* The VM lifecycle: state directory, husk-vsockd, QEMU, readiness, stop. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>
#include <linux/vm_sockets.h>

#include "husk/cleanup.h"
#include "husk/path.h"
#include "internal.h"

#define ARGV_MAX 128

struct argv_buf {
	const char *argv[ARGV_MAX];
	size_t n;
	char strings[16 + HUSK_HOTPLUG_MAX][PATH_MAX + 64]; /* formatted arguments */
	size_t n_strings;
	bool overflow;
};

static void arg(struct argv_buf *a, const char *s)
{
	if (a->n + 1 >= ARGV_MAX) {
		a->overflow = true;
		return;
	}
	a->argv[a->n++] = s;
	a->argv[a->n] = NULL;
}

__attribute__((format(printf, 2, 3))) static void argf(struct argv_buf *a, const char *fmt, ...)
{
	if (a->n_strings >= ARRAY_SIZE(a->strings)) {
		a->overflow = true;
		return;
	}
	char *s = a->strings[a->n_strings++];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(s, sizeof(a->strings[0]), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(a->strings[0]))
		a->overflow = true;
	arg(a, s);
}

static bool name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > HUSK_NAME_MAX || s[0] == '.')
		return false;
	return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") == n;
}

static int mkdir_p(const char *path, mode_t mode, struct husk_err *err)
{
	char buf[PATH_MAX];
	if (husk_path_fmt(buf, sizeof(buf), "%s", path) < 0)
		return husk_err_set(err, -ENAMETOOLONG, "state directory %s", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) < 0 && errno != EEXIST)
			return husk_err_sys(err, -errno, "mkdir %s", buf);
		*p = '/';
	}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		return husk_err_sys(err, -errno, "mkdir %s", buf);
	return 0;
}

/* Removes the files of a VM directory (flat: sockets, logs, state), then
 * the directory. */
static void remove_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d)))
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
				unlinkat(dirfd(d), e->d_name, 0);
		closedir(d);
	}
	rmdir(dir);
}

/* The lock file: held (flock) by the VM's owner for its whole life, so a
 * directory whose lock can be taken belongs to nobody. */
static int take_lock(const char *dir, int *fd_out, struct husk_err *err)
{
	char path[PATH_MAX];
	if (husk_path_fmt(path, sizeof(path), "%s/lock", dir) < 0)
		return husk_err_set(err, -ENAMETOOLONG, "lock in %s", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return husk_err_sys(err, -errno, "open %s", path);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int r = -errno;
		close(fd);
		return r == -EWOULDBLOCK ? -EBUSY : husk_err_sys(err, r, "flock %s", path);
	}
	*fd_out = fd;
	return 0;
}

static int write_state(const struct husk_vm *vm, struct husk_err *err)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	if (husk_path_fmt(path, sizeof(path), "%s/vm.json", vm->dir) < 0 ||
	    husk_path_fmt(tmp, sizeof(tmp), "%s/.vm.json.tmp", vm->dir) < 0)
		return husk_err_set(err, -ENAMETOOLONG, "state file in %s", vm->dir);
	json_object *o = json_object_new_object();
	json_object_object_add(o, "name", json_object_new_string(vm->name));
	json_object_object_add(o, "accel", json_object_new_string(husk_accel_name(vm->accel)));
	json_object_object_add(o, "transport",
			       json_object_new_string(husk_transport_name(vm->transport)));
	json_object_object_add(o, "cid", json_object_new_int64(vm->cid));
	json_object_object_add(o, "qemu_pid", json_object_new_int(vm->qemu_pid));
	json_object_object_add(o, "vsockd_pid", json_object_new_int(vm->vsockd_pid));
	json_object_object_add(o, "hybrid_socket", json_object_new_string(vm->hybrid));
	json_object_object_add(o, "console_log", json_object_new_string(vm->console));
	int r = json_object_to_file_ext(tmp, o, JSON_C_TO_STRING_PRETTY);
	json_object_put(o);
	if (r < 0 || rename(tmp, path) < 0) {
		unlink(tmp);
		return husk_err_sys(err, -EIO, "write %s", path);
	}
	return 0;
}

static struct husk_vm *vm_alloc(void)
{
	struct husk_vm *vm = calloc(1, sizeof(*vm));
	if (vm) {
		vm->lock_fd = vm->qmp_fd = vm->qemu_pidfd = vm->vsockd_pidfd = -1;
		vm->log_listen_fd = vm->log_fd = -1;
	}
	return vm;
}

static void close_log_listener(struct husk_vm *vm)
{
	if (vm->log_listen_fd < 0)
		return;
	close(vm->log_listen_fd);
	vm->log_listen_fd = -1;
	char path[PATH_MAX];
	if (vm->transport == HUSK_TRANSPORT_HYBRID &&
	    husk_path_fmt(path, sizeof(path), "%s_%u", vm->hybrid, vm->log_port) == 0)
		unlink(path);
}

/* The agent connects once, early: take that connection when it is there. */
static void accept_log(struct husk_vm *vm)
{
	if (vm->log_listen_fd < 0 || vm->log_fd >= 0)
		return;
	struct sockaddr_vm peer = { 0 };
	socklen_t len = sizeof(peer);
	int fd = accept4(vm->log_listen_fd, (struct sockaddr *)&peer, &len, SOCK_CLOEXEC);
	/* A listener on VMADDR_CID_ANY hears every VM: only ours may log. */
	if (fd >= 0 && vm->transport == HUSK_TRANSPORT_VHOST && peer.svm_cid != vm->cid) {
		close(fd);
		return;
	}
	if (fd >= 0) {
		vm->log_fd = fd;
		close_log_listener(vm);
	}
}

static void vm_release(struct husk_vm *vm)
{
	close_log_listener(vm);
	if (vm->log_fd >= 0)
		close(vm->log_fd);
	if (vm->lock_fd >= 0)
		close(vm->lock_fd);
	if (vm->qmp_fd >= 0)
		close(vm->qmp_fd);
	if (vm->qemu_pidfd >= 0)
		close(vm->qemu_pidfd);
	if (vm->vsockd_pidfd >= 0)
		close(vm->vsockd_pidfd);
	free(vm);
}

/* Starts husk-vsockd and waits for its "ready" line (or its death). */
static int start_vsockd(struct husk_vm *vm, const struct husk_vm_config *cfg,
			struct husk_err *err)
{
	_cleanup_free_ char *vsockd = cfg->vsockd ? strdup(cfg->vsockd) :
						   husk_default_path("vsockd", err);
	if (!vsockd)
		return err && err->code ? err->code : -ENOMEM;
	char vu[PATH_MAX], log[PATH_MAX], cid[16];
	if (husk_path_fmt(vu, sizeof(vu), "%s/vu.sock", vm->dir) < 0 ||
	    husk_path_fmt(log, sizeof(log), "%s/vsockd.log", vm->dir) < 0)
		return husk_err_set(err, -ENAMETOOLONG, "sockets in %s", vm->dir);
	snprintf(cid, sizeof(cid), "%u", vm->cid);
	_cleanup_fd_ int logfd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (logfd < 0)
		return husk_err_sys(err, -errno, "open %s", log);
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return husk_err_sys(err, -errno, "pipe");
	_cleanup_fd_ int rd = p[0];
	const char *argv[] = { vsockd, "--socket", vu, "--uds", vm->hybrid, "--guest-cid", cid,
			       "--foreground", NULL };
	struct husk_spawn s = { .argv = argv, .stdin_fd = -1, .stdout_fd = p[1], .stderr_fd = logfd,
				.die_with_parent = cfg->die_with_parent };
	int r = husk_spawn(&s, &vm->vsockd_pid, &vm->vsockd_pidfd, err);
	close(p[1]);
	if (r < 0)
		return r;
	char buf[64];
	size_t len = 0;
	struct pollfd pf[2] = { { .fd = rd, .events = POLLIN }, { .fd = vm->vsockd_pidfd, .events = POLLIN } };
	uint64_t deadline = husk_now_ns() + 10000ull * 1000000u;
	while (!memmem(buf, len, "ready\n", 6)) {
		uint64_t now = husk_now_ns();
		if (now >= deadline)
			return husk_err_set(err, -ETIMEDOUT, "husk-vsockd did not get ready in 10 s");
		if (poll(pf, 2, (int)((deadline - now) / 1000000u) + 1) < 0 && errno != EINTR)
			return husk_err_sys(err, -errno, "poll");
		ssize_t n = pf[0].revents ? read(rd, buf + len, sizeof(buf) - len) : 0;
		if (n > 0) {
			len += (size_t)n;
			if (len == sizeof(buf))
				len = 0;
			continue;
		}
		if (pf[0].revents || pf[1].revents) {
			char tail[400];
			husk_file_tail(log, tail, sizeof(tail));
			return husk_err_set(err, -ECHILD, "husk-vsockd exited before it was ready: %s",
					    tail);
		}
	}
	return 0;
}

/* Kills and reaps a child, SIGTERM first when `term_ms` is given. */
static void end_child(pid_t *pid, int *pidfd, unsigned term_ms, int *status)
{
	if (*pid <= 0)
		return;
	int st = 0;
	if (term_ms) {
		kill(*pid, SIGTERM);
		if (husk_reap(*pid, *pidfd, term_ms, &st) == 0)
			goto done;
	}
	kill(*pid, SIGKILL);
	husk_reap(*pid, *pidfd, 10000, &st);
done:
	if (status)
		*status = st;
	*pid = 0;
	close(*pidfd);
	*pidfd = -1;
}

static int build_qemu_argv(struct argv_buf *a, const struct husk_vm *vm,
			   const struct husk_vm_config *cfg, int qmp_fd, int vhost_fd,
			   unsigned long tsc_khz, struct husk_err *err)
{
	unsigned mem = cfg->memory_mib ? cfg->memory_mib : 256;
	unsigned cpus = cfg->vcpus ? cfg->vcpus : 1;
	arg(a, cfg->qemu ? cfg->qemu : "qemu-system-x86_64");
	arg(a, "-M");
	arg(a, cfg->hotplug_slots ? "microvm,pcie=on,memory-backend=mem" : "microvm,memory-backend=mem");
	arg(a, "-accel");
	arg(a, vm->accel == HUSK_ACCEL_KVM ? "kvm" : "tcg");
	arg(a, "-cpu");
	arg(a, vm->accel == HUSK_ACCEL_KVM ? "host" : "max");
	arg(a, "-m");
	argf(a, "%uM", mem);
	arg(a, "-smp");
	argf(a, "%u", cpus);
	arg(a, "-nodefaults");
	arg(a, "-no-user-config");
	arg(a, "-display");
	arg(a, "none");
	arg(a, "-no-reboot");
	/* vhost-user needs guest memory it can map: a shared memfd. */
	arg(a, "-object");
	argf(a, "memory-backend-memfd,id=mem,size=%uM,share=on", mem);
	/* vhost-user back-ends refuse legacy virtio-mmio. */
	arg(a, "-global");
	arg(a, "virtio-mmio.force-legacy=false");
	if (vm->transport == HUSK_TRANSPORT_VHOST) {
		arg(a, "-device");
		argf(a, "vhost-vsock-device,guest-cid=%u,vhostfd=%d", vm->cid, vhost_fd);
	} else {
		arg(a, "-chardev");
		argf(a, "socket,id=vsock,path=%s/vu.sock", vm->dir);
		arg(a, "-device");
		arg(a, "vhost-user-vsock-device,chardev=vsock");
	}
	for (size_t i = 0; i < cfg->n_disks; i++) {
		const struct husk_disk *d = &cfg->disks[i];
		arg(a, "-drive");
		argf(a, "id=disk%zu,file=%s,format=raw,if=none,readonly=%s", i, d->path,
		     d->readonly ? "on" : "off");
		arg(a, "-device");
		argf(a, "virtio-blk-device,drive=disk%zu,serial=%s", i, d->serial);
	}
	/* Hotplug slots: PCIe root ports, each with no I/O window (virtio
	 * needs none, and the small PCIe host has too little for many). */
	for (unsigned i = 0; i < cfg->hotplug_slots; i++) {
		arg(a, "-device");
		argf(a, "pcie-root-port,id=hp%u,bus=pcie.0,chassis=1,slot=%u,io-reserve=0", i, i + 1);
	}
	arg(a, "-serial");
	argf(a, "file:%s", vm->console);
	arg(a, "-chardev");
	argf(a, "socket,id=qmp,fd=%d", qmp_fd);
	arg(a, "-mon");
	arg(a, "chardev=qmp,mode=control");
	arg(a, "-kernel");
	arg(a, cfg->kernel);
	arg(a, "-initrd");
	arg(a, cfg->initrd);
	arg(a, "-append");
	char tsc[96] = "";
	/* Under TCG the guest cannot calibrate its TSC reliably (no HPET or
	 * PM timer on microvm, the emulated PIT is preempted): tell it. */
	if (vm->accel == HUSK_ACCEL_TCG && tsc_khz)
		snprintf(tsc, sizeof(tsc), " tsc_early_khz=%lu no_timer_check tsc=reliable", tsc_khz);
	/* microvm's _OSC grants the PCIe ports to the OS only with ASPM
	 * support, which the guest kernel leaves out: claim them for pciehp. */
	char kernel[256], init[128];
	snprintf(kernel, sizeof(kernel), "console=ttyS0 quiet panic=-1 reboot=t%s%s", tsc,
		 cfg->hotplug_slots ? " pcie_ports=native" : "");
	/* Always a husk.* key: it is what tells init it may power the VM off
	 * (init/cmdline.h); without one, poweroff ends in a panic. */
	snprintf(init, sizeof(init), "husk.log_level=%d husk.log_port=%u%s",
		 cfg->log_level ? cfg->log_level : 6, vm->log_port,
		 cfg->debug_console ? " husk.debug_console=1" : "");
	char line[HUSK_CMDLINE_MAX];
	int r = husk_cmdline_build(line, sizeof(line), kernel, init, cfg->cmdline_extra, err);
	if (r < 0)
		return r;
	argf(a, "%s", line);
	return a->overflow ? husk_err_set(err, -E2BIG, "QEMU command line too long") : 0;
}

static int check_config(const struct husk_vm_config *cfg, struct husk_err *err)
{
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
	if (cfg->vcpus > 255)
		return husk_err_set(err, -EINVAL, "vcpus %u: at most 255", cfg->vcpus);
	if (cfg->memory_mib && (cfg->memory_mib < 64 || cfg->memory_mib > 1024 * 1024))
		return husk_err_set(err, -EINVAL, "memory %u MiB: want 64 MiB to 1 TiB",
				    cfg->memory_mib);
	for (size_t i = 0; i < cfg->n_disks; i++) {
		const struct husk_disk *d = &cfg->disks[i];
		if (!d->path || access(d->path, d->readonly ? R_OK : R_OK | W_OK) < 0)
			return husk_err_sys(err, d->path ? -errno : -EINVAL, "disk %zu %s", i,
					    d->path ? d->path : "(no path)");
		if (strchr(d->path, ','))
			return husk_err_set(err, -EINVAL, "disk %zu %s: QEMU cannot take a ',' in a path",
					    i, d->path);
		size_t sl = d->serial ? strlen(d->serial) : 0;
		if (sl == 0 || sl > 20 || strspn(d->serial, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") != sl)
			return husk_err_set(err, -EINVAL,
					    "disk %zu serial \"%s\": want 1-20 characters of [A-Za-z0-9_-]",
					    i, d->serial ? d->serial : "");
	}
	return 0;
}

/* Retries Check until it answers, QEMU dies, or the deadline passes. */
static int wait_ready(struct husk_vm *vm, unsigned timeout_ms, uint64_t t0, struct husk_err *err)
{
	uint64_t deadline = t0 + (uint64_t)timeout_ms * 1000000u;
	struct husk_err last = { 0 };
	/* The agent connects its log stream (port 1025) just after it starts
	 * listening on 1024: that is the event to wait for. Check is tried
	 * without it only as a fallback for an agent that cannot connect, from
	 * 2 s on and every 250 ms: each refused try costs the booting guest an
	 * RST to send, and one sent before the guest's vsock driver is up waits
	 * in husk-vsockd until it is. */
	uint64_t next_try = vm->log_listen_fd >= 0 ? t0 + 2000 * 1000000ull : 0;
	for (;;) {
		bool awaiting_log = vm->log_listen_fd >= 0 && vm->log_fd < 0;
		struct husk_agent *a = NULL;
		uint64_t now = husk_now_ns();
		if (now >= next_try && husk_agent_open(vm, 2000, &a, &last) == 0) {
			int r = husk_agent_check(a, NULL, 0, &last);
			husk_agent_close(a);
			if (r == 0) {
				vm->boot_ns = husk_now_ns() - t0;
				accept_log(vm);
				close_log_listener(vm);
				return 0;
			}
		}
		if (now >= next_try)
			next_try = now + (awaiting_log ? 250 : 10) * 1000000ull;
		/* Sleep on the pidfds (a dying QEMU or husk-vsockd wakes us) and
		 * the log listener (the agent is up). */
		struct pollfd p[3] = { { .fd = vm->qemu_pidfd, .events = POLLIN },
				       { .fd = vm->vsockd_pidfd, .events = POLLIN },
				       { .fd = vm->log_listen_fd, .events = POLLIN } };
		now = husk_now_ns();
		int wait_ms = next_try > now ? (int)((next_try - now) / 1000000u) + 1 : 0;
		int n = poll(p, 3, wait_ms);
		if (n > 0 && p[2].revents) {
			accept_log(vm);
			if (vm->log_fd >= 0)
				next_try = 0; /* try Check now */
			n -= 1;
		}
		if (n > 0) {
			char tail[1024];
			husk_file_tail(vm->console, tail, sizeof(tail));
			return husk_err_set(err, -ECHILD, "%s exited while the VM booted; console: %s",
					    p[0].revents ? "QEMU" : "husk-vsockd", tail);
		}
		if (husk_now_ns() >= deadline) {
			char tail[1024];
			husk_file_tail(vm->console, tail, sizeof(tail));
			return husk_err_set(err, -ETIMEDOUT,
					    "the agent did not answer within %u ms (%s); console: %s",
					    timeout_ms,
					    last.msg[0] ? last.msg : "it never connected its log stream",
					    tail);
		}
	}
}

int husk_vm_start(const struct husk_vm_config *cfg, struct husk_vm **out, struct husk_err *err)
{
	int r = check_config(cfg, err);
	if (r < 0)
		return r;
	struct husk_vm *vm = vm_alloc();
	if (!vm)
		return husk_err_set(err, -ENOMEM, "VM");
	vm->owner = true;
	vm->n_slots = cfg->hotplug_slots;
	char why[256];
	vm->accel = cfg->accel == HUSK_ACCEL_AUTO ? husk_accel_detect(why, sizeof(why)) : cfg->accel;
	vm->transport = cfg->transport == HUSK_TRANSPORT_AUTO ? husk_transport_detect(why, sizeof(why))
							    : cfg->transport;
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
	_cleanup_fd_ int qlog_fd = -1;
	_cleanup_free_ struct argv_buf *a = NULL;
	char qlog[PATH_MAX] = "";
	int qmp[2] = { -1, -1 };
	bool dir_made = false;
	if ((r = mkdir_p(state_dir, 0700, err)) < 0)
		goto fail;
	/* The longest socket path is the hybrid socket plus "_<port>". */
	if (husk_path_fmt(vm->dir, sizeof(vm->dir), "%s/%s", state_dir, vm->name) < 0 ||
	    husk_path_fmt(vm->hybrid, sizeof(vm->hybrid), "%s/vsock.sock", vm->dir) < 0 ||
	    husk_path_fmt(vm->console, sizeof(vm->console), "%s/console.log", vm->dir) < 0 ||
	    strlen(vm->hybrid) + 12 > 107) {
		r = husk_err_set(err, -ENAMETOOLONG,
				 "state directory %s: too long for unix socket paths (use a shorter "
				 "--state-dir or HUSK_STATE_DIR)",
				 state_dir);
		goto fail;
	}
	if (mkdir(vm->dir, 0700) < 0) {
		if (errno != EEXIST) {
			r = husk_err_sys(err, -errno, "mkdir %s", vm->dir);
			goto fail;
		}
		/* Left behind by an owner that died: reclaim it. */
		int lfd;
		if ((r = take_lock(vm->dir, &lfd, err)) < 0) {
			if (r == -EBUSY)
				r = husk_err_set(err, -EEXIST, "a VM named %s is running (%s)", vm->name,
						 vm->dir);
			goto fail;
		}
		remove_dir(vm->dir);
		close(lfd);
		if (mkdir(vm->dir, 0700) < 0) {
			r = husk_err_sys(err, -errno, "mkdir %s", vm->dir);
			goto fail;
		}
	}
	dir_made = true;
	if ((r = take_lock(vm->dir, &vm->lock_fd, err)) < 0)
		goto fail;

	if (vm->transport == HUSK_TRANSPORT_VHOST) {
		vhost_fd = open("/dev/vhost-vsock", O_RDWR | O_CLOEXEC);
		if (vhost_fd < 0) {
			r = husk_err_sys(err, -errno, "open /dev/vhost-vsock");
			goto fail;
		}
		if ((r = husk_vhost_vsock_alloc_cid(vhost_fd, &vm->cid, err)) < 0)
			goto fail;
	} else {
		vm->cid = 3; /* one VM per husk-vsockd: any guest CID will do */
		if ((r = start_vsockd(vm, cfg, err)) < 0)
			goto fail;
	}

	/* Before QEMU: the agent connects to its log port as it starts. Under
	 * vhost-vsock all VMs share the host's port space, so each gets its own
	 * port, derived from its (unique) CID. Without a listener there is no
	 * stream, and the agent goes on without one. */
	vm->log_port = vm->transport == HUSK_TRANSPORT_VHOST ? HUSK_LOG_PORT_VHOST_BASE + vm->cid
							      : HUSK_LOG_PORT;
	vm->log_listen_fd = husk_vm_listen(vm, vm->log_port, NULL);
	if (vm->log_listen_fd >= 0)
		fcntl(vm->log_listen_fd, F_SETFL, O_NONBLOCK);

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, qmp) < 0) {
		r = husk_err_sys(err, -errno, "socketpair for QMP");
		goto fail;
	}
	vm->qmp_fd = qmp[0];
	a = calloc(1, sizeof(*a));
	if (!a) {
		r = husk_err_set(err, -ENOMEM, "QEMU command line");
		goto fail;
	}
	if ((r = build_qemu_argv(a, vm, cfg, qmp[1], vhost_fd, husk_tsc_khz(), err)) < 0)
		goto fail;
	husk_path_fmt(qlog, sizeof(qlog), "%s/qemu.log", vm->dir);
	qlog_fd = open(qlog, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int keep[2] = { qmp[1], vhost_fd };
	struct husk_spawn s = { .argv = a->argv, .stdin_fd = -1, .stdout_fd = qlog_fd,
				.stderr_fd = qlog_fd, .keep_fds = keep,
				.n_keep = vhost_fd >= 0 ? 2 : 1,
				.die_with_parent = cfg->die_with_parent };
	uint64_t t0 = husk_now_ns();
	r = husk_spawn(&s, &vm->qemu_pid, &vm->qemu_pidfd, err);
	close(qmp[1]);
	qmp[1] = -1;
	if (r < 0)
		goto fail;
	if ((r = write_state(vm, err)) < 0)
		goto fail;
	unsigned timeout = cfg->boot_timeout_ms ? cfg->boot_timeout_ms :
			   vm->accel == HUSK_ACCEL_KVM ? 60000 : 120000;
	if ((r = wait_ready(vm, timeout, t0, err)) < 0) {
		char qtail[300];
		husk_file_tail(qlog, qtail, sizeof(qtail));
		if (qtail[0])
			husk_err_wrap(err, "QEMU said: %s", qtail);
		goto fail;
	}
	*out = vm;
	return 0;
fail:
	if (qmp[1] >= 0)
		close(qmp[1]);
	end_child(&vm->qemu_pid, &vm->qemu_pidfd, 0, NULL);
	end_child(&vm->vsockd_pid, &vm->vsockd_pidfd, 2000, NULL);
	if (dir_made)
		remove_dir(vm->dir);
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
	struct husk_vm *vm = vm_alloc();
	if (!vm)
		return husk_err_set(err, -ENOMEM, "VM");
	snprintf(vm->name, sizeof(vm->name), "%s", name);
	char path[PATH_MAX];
	int r;
	if (husk_path_fmt(vm->dir, sizeof(vm->dir), "%s/%s", state_dir, name) < 0 ||
	    husk_path_fmt(path, sizeof(path), "%s/vm.json", vm->dir) < 0) {
		r = husk_err_set(err, -ENAMETOOLONG, "state of VM %s", name);
		goto fail;
	}
	json_object *o = json_object_from_file(path);
	if (!o) {
		r = husk_err_set(err, -ENOENT, "no VM named %s (no %s)", name, path);
		goto fail;
	}
	json_object *v;
	if (json_object_object_get_ex(o, "hybrid_socket", &v))
		snprintf(vm->hybrid, sizeof(vm->hybrid), "%s", json_object_get_string(v));
	if (json_object_object_get_ex(o, "console_log", &v))
		snprintf(vm->console, sizeof(vm->console), "%s", json_object_get_string(v));
	if (json_object_object_get_ex(o, "cid", &v))
		vm->cid = (uint32_t)json_object_get_int64(v);
	if (json_object_object_get_ex(o, "qemu_pid", &v))
		vm->qemu_pid = json_object_get_int(v);
	if (json_object_object_get_ex(o, "vsockd_pid", &v))
		vm->vsockd_pid = json_object_get_int(v);
	if (json_object_object_get_ex(o, "accel", &v))
		husk_accel_parse(json_object_get_string(v), &vm->accel, NULL);
	if (json_object_object_get_ex(o, "transport", &v))
		husk_transport_parse(json_object_get_string(v), &vm->transport, NULL);
	json_object_put(o);
	/* A lock nobody holds means the owner is gone. */
	int lfd;
	if (take_lock(vm->dir, &lfd, NULL) == 0) {
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

bool husk_vm_exited(struct husk_vm *vm, int *status)
{
	if (!vm->qemu_reaped && vm->owner && vm->qemu_pid > 0 &&
	    husk_reap(vm->qemu_pid, vm->qemu_pidfd, 0, &vm->qemu_status) == 0)
		vm->qemu_reaped = true;
	if (vm->qemu_reaped && status)
		*status = vm->qemu_status;
	return vm->qemu_reaped;
}

int husk_vm_stop(struct husk_vm *vm, unsigned grace_ms, struct husk_err *err)
{
	if (!vm->owner)
		return husk_err_set(err, -EPERM, "VM %s was started by another process", vm->name);
	if (vm->stopped)
		return 0;
	int ret = 0;
	if (!husk_vm_exited(vm, NULL)) {
		/* In order: ask the guest, then QEMU, then the kernel. */
		struct husk_agent *a = NULL;
		struct husk_err e = { 0 };
		if (husk_agent_open(vm, 2000, &a, &e) == 0) {
			husk_agent_destroy(a, &e);
			husk_agent_close(a);
		}
		if (husk_reap(vm->qemu_pid, vm->qemu_pidfd, grace_ms, &vm->qemu_status) == 0) {
			vm->qemu_reaped = true;
		} else {
			if (husk_qmp_execute(vm->qmp_fd, "quit", 1000, &e) == 0 || e.code == -EPIPE) {
				if (husk_reap(vm->qemu_pid, vm->qemu_pidfd, 3000, &vm->qemu_status) == 0)
					vm->qemu_reaped = true;
			}
			if (!vm->qemu_reaped) {
				kill(vm->qemu_pid, SIGKILL);
				ret = husk_err_set(err, -ETIMEDOUT,
						   "VM %s: QEMU did not stop in time; killed", vm->name);
				if (husk_reap(vm->qemu_pid, vm->qemu_pidfd, 10000, &vm->qemu_status) == 0)
					vm->qemu_reaped = true;
			}
		}
	}
	/* husk-vsockd leaves once QEMU is gone; nudge it if it does not. */
	if (vm->vsockd_pid > 0 &&
	    husk_reap(vm->vsockd_pid, vm->vsockd_pidfd, 2000, NULL) == 0) {
		vm->vsockd_pid = 0;
		close(vm->vsockd_pidfd);
		vm->vsockd_pidfd = -1;
	}
	end_child(&vm->vsockd_pid, &vm->vsockd_pidfd, 1000, NULL);
	remove_dir(vm->dir);
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

int husk_vm_log_fd(const struct husk_vm *vm)
{
	return vm->log_fd;
}

int husk_vm_pidfd(const struct husk_vm *vm)
{
	return vm->owner ? vm->qemu_pidfd : -1;
}

const char *husk_vm_name(const struct husk_vm *vm) { return vm->name; }
const char *husk_vm_dir(const struct husk_vm *vm) { return vm->dir; }
const char *husk_vm_console_log(const struct husk_vm *vm) { return vm->console; }
enum husk_accel husk_vm_accel(const struct husk_vm *vm) { return vm->accel; }
enum husk_transport husk_vm_transport(const struct husk_vm *vm) { return vm->transport; }
uint32_t husk_vm_cid(const struct husk_vm *vm) { return vm->cid; }
pid_t husk_vm_qemu_pid(const struct husk_vm *vm) { return vm->qemu_pid; }
pid_t husk_vm_vsockd_pid(const struct husk_vm *vm) { return vm->vsockd_pid; }
uint64_t husk_vm_boot_ns(const struct husk_vm *vm) { return vm->boot_ns; }

void husk_vm_console_tail(const struct husk_vm *vm, char *buf, size_t max)
{
	husk_file_tail(vm->console, buf, max);
}
