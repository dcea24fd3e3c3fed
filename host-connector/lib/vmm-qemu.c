/* The QEMU backend: qemu-system-x86_64 -M microvm, its command line, its
 * launch and its end. QMP is vmm-qemu-qmp.c, hotplug vmm-qemu-hotplug.c. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <json-c/json.h>

#include "husk/cleanup.h"
#include "husk/path.h"
#include "vmm-qemu.h"

#define ARGV_MAX 128
#define QUIT_TIMEOUT_MS 1000
#define QUIT_WAIT_MS 3000
#define KILL_WAIT_MS 10000
/* TCG's translation cache by default. QEMU's default is up to 1 GiB, which
 * a VM fills with code it translated once at boot (about 37 MiB to its
 * first container); measured (docs/performance.md): 16 MiB saves 23 MiB a
 * VM against 1 GiB with no slowdown above this machine's noise; 8 MiB
 * slows a VM's first container by about 40%. */
#define TCG_CACHE_MIB 16

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

static int build_argv(struct argv_buf *a, const struct husk_vm *vm, const struct husk_vmm_boot *b,
		      int qmp_fd, unsigned long tsc_khz, struct husk_err *err)
{
	const struct husk_vm_config *cfg = b->cfg;
	arg(a, cfg->vmm_binary ? cfg->vmm_binary : "qemu-system-x86_64");
	arg(a, "-M");
	argf(a, "microvm,%smemory-backend=mem,mem-merge=%s", cfg->hotplug_slots ? "pcie=on," : "",
	     cfg->merge_memory ? "on" : "off");
	arg(a, "-accel");
	if (vm->accel == HUSK_ACCEL_KVM)
		arg(a, "kvm");
	else
		argf(a, "tcg,tb-size=%u", cfg->tcg_cache_mib ? cfg->tcg_cache_mib : TCG_CACHE_MIB);
	arg(a, "-cpu");
	arg(a, vm->accel == HUSK_ACCEL_KVM ? "host" : "max");
	arg(a, "-m");
	argf(a, "%uM", b->memory_mib);
	arg(a, "-smp");
	argf(a, "%u", b->vcpus);
	arg(a, "-nodefaults");
	arg(a, "-no-user-config");
	arg(a, "-display");
	arg(a, "none");
	arg(a, "-no-reboot");
	/* vhost-user needs guest memory it can map: a shared memfd. */
	arg(a, "-object");
	argf(a, "memory-backend-memfd,id=mem,size=%uM,share=on", b->memory_mib);
	/* vhost-user back-ends refuse legacy virtio-mmio. */
	arg(a, "-global");
	arg(a, "virtio-mmio.force-legacy=false");
	if (vm->transport == HUSK_TRANSPORT_VHOST) {
		arg(a, "-device");
		argf(a, "vhost-vsock-device,guest-cid=%u,vhostfd=%d", vm->cid, b->vhost_fd);
	} else {
		arg(a, "-chardev");
		argf(a, "socket,id=vsock,path=%s", b->vhost_user_socket);
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
	/* Free page reporting: QEMU punches what the guest frees out of the
	 * memfd (free blocks of 256 KiB and up: the agent sets the order). */
	arg(a, "-device");
	arg(a, "virtio-balloon-device,free-page-reporting=on");
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
	char kernel[256];
	snprintf(kernel, sizeof(kernel), "console=ttyS0 quiet panic=-1 reboot=t%s%s", tsc,
		 cfg->hotplug_slots ? " pcie_ports=native" : "");
	char line[HUSK_CMDLINE_MAX];
	int r = husk_cmdline_build(line, sizeof(line), kernel, b->init_args, cfg->cmdline_extra, err);
	if (r < 0)
		return r;
	argf(a, "%s", line);
	return a->overflow ? husk_err_set(err, -E2BIG, "QEMU command line too long") : 0;
}

static int qemu_transport(const struct husk_vm_config *cfg, enum husk_transport *out,
			  struct husk_err *err)
{
	switch (cfg->transport) {
	case HUSK_TRANSPORT_AUTO:
		*out = husk_transport_detect(NULL, 0);
		return 0;
	case HUSK_TRANSPORT_VHOST:
	case HUSK_TRANSPORT_HYBRID:
		*out = cfg->transport;
		return 0;
	default:
		return husk_err_set(err, -EINVAL, "transport %s: QEMU offers vhost or hybrid",
				    husk_transport_name(cfg->transport));
	}
}

static int qemu_check(const struct husk_vm_config *cfg, struct husk_err *err)
{
	for (size_t i = 0; i < cfg->n_disks; i++)
		if (strchr(cfg->disks[i].path, ','))
			return husk_err_set(err, -EINVAL, "disk %zu %s: QEMU cannot take a ',' in a path",
					    i, cfg->disks[i].path);
	return 0;
}

static void qemu_release(struct husk_vm *vm)
{
	struct qemu_vm *q = qemu_of(vm);
	if (!q)
		return;
	if (q->qmp_fd >= 0)
		close(q->qmp_fd);
	for (size_t i = 0; i < q->n_disks; i++)
		free(q->disk_paths[i]);
	free(q->disk_paths);
	free(q);
	vm->vmm_data = NULL;
}

static int qemu_launch(struct husk_vm *vm, const struct husk_vmm_boot *b, struct husk_err *err)
{
	const struct husk_vm_config *cfg = b->cfg;
	struct qemu_vm *q = calloc(1, sizeof(*q));
	if (!q)
		return husk_err_set(err, -ENOMEM, "QEMU state");
	q->qmp_fd = -1;
	vm->vmm_data = q;
	if (cfg->n_disks && !(q->disk_paths = calloc(cfg->n_disks, sizeof(char *))))
		return husk_err_set(err, -ENOMEM, "QEMU state");
	for (; q->n_disks < cfg->n_disks; q->n_disks++)
		if (!(q->disk_paths[q->n_disks] = strdup(cfg->disks[q->n_disks].path)))
			return husk_err_set(err, -ENOMEM, "QEMU state");
	if (husk_path_fmt(q->log, sizeof(q->log), "%s/qemu.log", vm->dir) < 0)
		return husk_err_set(err, -ENAMETOOLONG, "qemu.log in %s", vm->dir);

	int qmp[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, qmp) < 0)
		return husk_err_sys(err, -errno, "socketpair for QMP");
	q->qmp_fd = qmp[0];
	_cleanup_fd_ int theirs = qmp[1];
	_cleanup_free_ struct argv_buf *a = calloc(1, sizeof(*a));
	if (!a)
		return husk_err_set(err, -ENOMEM, "QEMU command line");
	int r = build_argv(a, vm, b, theirs, vm->accel == HUSK_ACCEL_TCG ? husk_tsc_khz() : 0, err);
	if (r < 0)
		return r;
	_cleanup_fd_ int log_fd = open(q->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (log_fd < 0)
		return husk_err_sys(err, -errno, "open %s", q->log);
	int keep[2] = { theirs, b->vhost_fd };
	struct husk_spawn s = { .argv = a->argv, .stdin_fd = -1, .stdout_fd = log_fd,
				.stderr_fd = log_fd, .keep_fds = keep,
				.n_keep = b->vhost_fd >= 0 ? 2 : 1,
				.die_with_parent = cfg->die_with_parent, .no_thp = true,
				.merge_memory = cfg->merge_memory };
	return husk_spawn(&s, &vm->vmm_pid, &vm->vmm_pidfd, err);
}

static int qemu_stop(struct husk_vm *vm, struct husk_err *err)
{
	struct qemu_vm *q = qemu_of(vm);
	struct husk_err e = { 0 };
	/* The monitor closing as QEMU exits is the answer to quit, too. */
	if (q && (husk_qmp_execute(q->qmp_fd, "quit", QUIT_TIMEOUT_MS, &e) == 0 || e.code == -EPIPE) &&
	    husk_vm_reap_vmm(vm, QUIT_WAIT_MS) == 0)
		return 0;
	husk_pidfd_signal(vm->vmm_pidfd, SIGKILL);
	husk_vm_reap_vmm(vm, KILL_WAIT_MS);
	return husk_err_set(err, -ETIMEDOUT, "VM %s: QEMU did not stop in time; killed", vm->name);
}

/* QEMU's own words about a boot that failed, first; and, when they are
 * about one of our disks (disk<N>), which disk that is
 * and what the usual cause means: its image locks refuse a file another
 * QEMU writes, or one this VM was given twice. */
static void qemu_explain(struct husk_vm *vm, struct husk_err *err)
{
	struct qemu_vm *q = qemu_of(vm);
	if (!q || !err)
		return;
	char tail[300];
	husk_file_tail(q->log, tail, sizeof(tail));
	/* One line: QEMU continues some errors on the next. */
	for (char *c = tail; *c; c++)
		if (*c == '\n')
			*c = ' ';
	for (size_t n = strlen(tail); n && tail[n - 1] == ' '; n--)
		tail[n - 1] = '\0';
	if (!tail[0])
		return;
	husk_err_wrap(err, "QEMU said: %s", tail);
	/* QEMU quotes the option it refused: "-drive id=disk1,..." or
	 * "-device virtio-blk-device,drive=disk1,...". */
	const char *at = strstr(tail, "drive=disk"), *id = strstr(tail, "id=disk");
	at = at ? at + strlen("drive=") : id ? id + strlen("id=") : NULL;
	size_t i;
	if (!at || sscanf(at, "disk%zu", &i) != 1 || i >= q->n_disks)
		return;
	if (strstr(tail, "lock"))
		husk_err_wrap(err, "disk %zu %s: in use by another process (another VM?), which QEMU's "
			      "image locking refuses", i, q->disk_paths[i]);
	else
		husk_err_wrap(err, "disk %zu %s", i, q->disk_paths[i]);
}

static void qemu_describe(const struct husk_vm *vm, json_object *state)
{
	/* The name tools and tests know from before the VMM seam. */
	json_object_object_add(state, "qemu_pid", json_object_new_int(vm->vmm_pid));
}

static int qemu_handoff_fd(const struct husk_vm *vm)
{
	const struct qemu_vm *q = qemu_of(vm);
	return q ? q->qmp_fd : -1;
}

static int qemu_adopt(struct husk_vm *vm, int qmp_fd, struct husk_err *err)
{
	_cleanup_fd_ int fd = qmp_fd;
	if (fd < 0)
		return husk_err_set(err, -EINVAL, "VM %s: handed over without its QMP socket", vm->name);
	struct qemu_vm *q = calloc(1, sizeof(*q));
	if (!q)
		return husk_err_set(err, -ENOMEM, "QEMU state");
	vm->vmm_data = q;
	q->qmp_fd = take_fd(&fd);
	if (husk_path_fmt(q->log, sizeof(q->log), "%s/qemu.log", vm->dir) < 0)
		return husk_err_set(err, -ENAMETOOLONG, "qemu.log in %s", vm->dir);
	/* Every slot free (calloc's SLOT_FREE); a pool's keeper used the
	 * first for its warm-up (keeper.c): start after it. */
	q->next_slot = vm->n_slots > 1 ? 1 : 0;
	return 0;
}

static int qemu_snapshot(struct husk_vm *vm, const char *path, struct husk_err *err)
{
	(void)path;
	return husk_vmm_unsupported(vm, "snapshots", err);
}

static int qemu_restore(struct husk_vm *vm, const struct husk_vmm_boot *b, const char *path,
			struct husk_err *err)
{
	(void)b;
	(void)path;
	return husk_vmm_unsupported(vm, "restoring a snapshot", err);
}

const struct husk_vmm_ops husk_vmm_qemu = {
	.name = "qemu",
	.program = "QEMU",
	.transport = qemu_transport,
	.check = qemu_check,
	.launch = qemu_launch,
	.stop = qemu_stop,
	.add_disk = husk_qemu_add_disk,
	.remove_disk = husk_qemu_remove_disk,
	.add_fs = husk_qemu_add_fs,
	.add_nic = husk_qemu_add_nic,
	.snapshot = qemu_snapshot,
	.restore = qemu_restore,
	.explain = qemu_explain,
	.describe = qemu_describe,
	.handoff_fd = qemu_handoff_fd,
	.adopt = qemu_adopt,
	.release = qemu_release,
};
