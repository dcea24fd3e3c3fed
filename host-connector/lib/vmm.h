/* The VMM seam: what libhusk needs from a hypervisor, as one table of
 * operations per backend (crun's cgroup-internal.h does the same for its
 * cgroup managers; kuasar's vmm/sandbox has one folder per hypervisor).
 *
 *   vm.c        VMM-neutral: config checks, the state directory and its
 *               lock, vm.json, the vsock transport (transport.c: vhost-vsock
 *               or husk-vsockd), readiness (ready.c: the agent's Check),
 *               reaping, the console log, the agent's DestroySandbox
 *   vmm-qemu*.c QEMU: command line and launch, QMP, PCIe-slot hotplug
 *   vmm-fake.c  tests: no hypervisor; records each call
 *
 * A new hypervisor (Cloud Hypervisor, Firecracker, bhyve) is a new
 * vmm-<name>*.c and one line in vmm.c's table. */
#ifndef HUSK_VMM_H
#define HUSK_VMM_H

#include "internal.h"

/* Not part of libhusk.so's interface, though named husk_*. */
#pragma GCC visibility push(hidden)

struct json_object;

/* What vm.c has prepared when it asks the backend to launch the VM. */
struct husk_vmm_boot {
	const struct husk_vm_config *cfg; /* checked, by vm.c and the backend */
	unsigned vcpus, memory_mib;       /* defaults applied */
	/* The agent's husk.* keys, words for init after the kernel's "--"
	 * (the backend adds its kernel words and cfg->cmdline_extra with
	 * husk_cmdline_build). */
	const char *init_args;
	int vhost_fd; /* VHOST: /dev/vhost-vsock holding vm->cid; else -1 */
	/* HYBRID: husk-vsockd's vhost-user socket; else NULL. */
	const char *vhost_user_socket;
};

/* A network interface for add_nic: the VMM gets a copy of the fd. */
struct husk_vmm_nic {
	int tap_fd;
	const char *mac;
};

struct husk_vmm_ops {
	const char *name;    /* husk_vm_config.vmm, vm.json's "vmm" */
	const char *program; /* the program messages name ("QEMU") */
	/* Resolves cfg->transport (AUTO included) to one this backend can
	 * attach, or refuses it naming the field. */
	int (*transport)(const struct husk_vm_config *cfg, enum husk_transport *out,
			 struct husk_err *err);
	/* What this backend cannot run, refused before anything exists. */
	int (*check)(const struct husk_vm_config *cfg, struct husk_err *err);
	/* Starts the VM: sets vm->vmm_pid and vm->vmm_pidfd (0 and -1: no
	 * process, and then no guest to wait for) and vm->vmm_data. On
	 * failure it leaves no process; release() runs either way. */
	int (*launch)(struct husk_vm *vm, const struct husk_vmm_boot *b, struct husk_err *err);
	/* Ends the VMM once the guest had its chance (husk_vm_stop asked the
	 * agent first): gracefully (QMP quit), then by force (SIGKILL), and
	 * reaps it. -ETIMEDOUT when it had to be killed. */
	int (*stop)(struct husk_vm *vm, struct husk_err *err);
	/* vm.c has checked the VM (owner, running, has slots), the serial and
	 * the path. -EEXIST: serial in use; -ENOSPC: no free slot. */
	int (*add_disk)(struct husk_vm *vm, const struct husk_disk *disk, struct husk_err *err);
	/* -ENOENT: no such serial. See husk_vm_remove_disk for wait_ms. */
	int (*remove_disk)(struct husk_vm *vm, const char *serial, unsigned wait_ms,
			   struct husk_err *err);
	/* A virtio-fs device with `tag` whose vhost-user back-end listens on
	 * `socket`, on a free slot (vm.c checked the VM and the tag).
	 * -ENOSPC: no free slot. */
	int (*add_fs)(struct husk_vm *vm, const char *tag, const char *socket, struct husk_err *err);
	/* A NIC on a free slot (vm.c checked the VM and the MAC). -ENOSPC:
	 * no free slot; -EEXIST: the MAC is in use. */
	int (*add_nic)(struct husk_vm *vm, const struct husk_vmm_nic *nic, struct husk_err *err);
	int (*snapshot)(struct husk_vm *vm, const char *path, struct husk_err *err);
	int (*restore)(struct husk_vm *vm, const struct husk_vmm_boot *b, const char *path,
		       struct husk_err *err);
	/* Adds what the VMM itself said (its log) to an error about the VM's
	 * boot: the real program's words, not ours. */
	void (*explain)(struct husk_vm *vm, struct husk_err *err);
	/* The backend's own keys in vm.json. */
	void (*describe)(const struct husk_vm *vm, struct json_object *state);
	/* Handing a VM to another process (pool.c): the one fd the backend
	 * drives the VM through (QEMU: its QMP socket; -1: none), and, in the
	 * receiver, its state rebuilt around that fd (taken, even on
	 * failure) for a VM as it was booted (no disks hot-added). NULL: this
	 * backend's VMs stay where they started. */
	int (*handoff_fd)(const struct husk_vm *vm);
	int (*adopt)(struct husk_vm *vm, int fd, struct husk_err *err);
	/* Frees vm->vmm_data. */
	void (*release)(struct husk_vm *vm);
};

extern const struct husk_vmm_ops husk_vmm_qemu;
extern const struct husk_vmm_ops husk_vmm_fake;

/* The backend named `name` (NULL: "qemu"), or NULL for an unknown one. */
const struct husk_vmm_ops *husk_vmm_find(const char *name);
/* "qemu or fake", for messages. */
const char *husk_vmm_names(void);
/* The -EOPNOTSUPP answer of an operation a backend does not have yet. */
int husk_vmm_unsupported(const struct husk_vm *vm, const char *what, struct husk_err *err);

#pragma GCC visibility pop

#endif
