/* Private to the QEMU backend (vmm-qemu.c, vmm-qemu-qmp.c,
 * vmm-qemu-hotplug.c): its per-VM state and QMP client. */
#ifndef HUSK_VMM_QEMU_H
#define HUSK_VMM_QEMU_H

#include "vmm.h"

/* Not part of libhusk.so's interface, though named husk_*. */
#pragma GCC visibility push(hidden)

struct json_object;

/* One hotplug slot, a PCIe root port "hp<i>". QEMU reports a removal
 * (DEVICE_DELETED) after the guest powered the slot off; only then may its
 * block node go and the slot be reused. */
enum qemu_slot_state { SLOT_FREE, SLOT_USED, SLOT_UNPLUGGING, SLOT_GONE };

struct qemu_slot {
	enum qemu_slot_state state;
	char serial[48]; /* a disk's serial, or "fs:<tag>" */
};

struct qemu_vm {
	int qmp_fd;          /* our end of QEMU's QMP socketpair */
	char log[PATH_MAX];  /* qemu.log: QEMU's stdout and stderr */
	/* The boot disks, to name the one QEMU's error is about. */
	char **disk_paths;
	size_t n_disks;
	struct qemu_slot slots[HUSK_HOTPLUG_MAX];
	unsigned next_slot; /* where the search for a free slot starts */
};

static inline struct qemu_vm *qemu_of(const struct husk_vm *vm)
{
	return vm->vmm_data;
}

/* ---- vmm-qemu-hotplug.c ---- */
int husk_qemu_add_disk(struct husk_vm *vm, const struct husk_disk *disk, struct husk_err *err);
int husk_qemu_add_nic(struct husk_vm *vm, const struct husk_vmm_nic *nic, struct husk_err *err);
int husk_qemu_add_fs(struct husk_vm *vm, const char *tag, const char *socket, struct husk_err *err);
int husk_qemu_remove_disk(struct husk_vm *vm, const char *serial, unsigned wait_ms,
			  struct husk_err *err);

/* ---- vmm-qemu-qmp.c ---- */
/* Negotiates capabilities (once) and runs `command` (no arguments),
 * waiting up to timeout_ms for its reply. */
int husk_qmp_execute(int fd, const char *command, unsigned timeout_ms, struct husk_err *err);
/* An asynchronous QMP event seen while waiting for a reply; data may be NULL. */
typedef void (*husk_qmp_event_fn)(const char *event, struct json_object *data, void *ud);
/* The same with arguments (borrowed, may be NULL); events go to on_event. */
int husk_qmp_call(int fd, const char *command, struct json_object *args, unsigned timeout_ms,
		  husk_qmp_event_fn on_event, void *ud, struct husk_err *err);
/* The same, passing `pass_fd` with the command (getfd). */
int husk_qmp_call_fd(int fd, const char *command, struct json_object *args, int pass_fd,
		     unsigned timeout_ms, husk_qmp_event_fn on_event, void *ud,
		     struct husk_err *err);
/* Reads events until until(ud) holds (0) or timeout_ms passes (-ETIMEDOUT). */
int husk_qmp_wait_event(int fd, unsigned timeout_ms, husk_qmp_event_fn on_event, void *ud,
			bool (*until)(void *ud), struct husk_err *err);

#pragma GCC visibility pop

#endif
