/* The QEMU backend's hotplug: a virtio-blk-pci device on
 * one of the VM's PCIe root ports ("hp<i>", see vmm-qemu.c), driven
 * over QMP. The guest's pciehp sees the slot's presence change and probes
 * the device; removal is the attention button, which the guest answers by
 * powering the slot off after its 5 s cancel window (or at once, when the
 * agent's ReleaseDisk asks), and QEMU then reports DEVICE_DELETED. Used for
 * the containers of a pod that join its VM. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "vmm-qemu.h"

#define QMP_TIMEOUT_MS 5000
#define BUSY_RETRY_MS 50

/* DEVICE_DELETED for one of our slots: its block node can go. */
static void on_event(const char *event, json_object *data, void *ud)
{
	struct qemu_vm *q = qemu_of(ud);
	struct husk_vm *vm = ud;
	json_object *dev;
	unsigned i;
	char end;
	if (strcmp(event, "DEVICE_DELETED") != 0 || !data ||
	    !json_object_object_get_ex(data, "device", &dev) ||
	    sscanf(json_object_get_string(dev), "hpdev%u%c", &i, &end) != 1 || i >= vm->n_slots)
		return;
	if (q->slots[i].state == SLOT_UNPLUGGING)
		q->slots[i].state = SLOT_GONE;
}

static int qmp(struct husk_vm *vm, const char *cmd, json_object *args, struct husk_err *err)
{
	return husk_qmp_call(qemu_of(vm)->qmp_fd, cmd, args, QMP_TIMEOUT_MS, on_event, vm, err);
}

static void qmp_by_id(struct husk_vm *vm, const char *cmd, const char *key, const char *id)
{
	struct husk_err e = { 0 };
	json_object *a = json_object_new_object();
	json_object_object_add(a, key, json_object_new_string(id));
	qmp(vm, cmd, a, &e);
	json_object_put(a);
}

/* The block node of slot i; QEMU keeping one is reported by the next
 * blockdev-add of the slot ("duplicate node name"). */
static void qmp_node_del(struct husk_vm *vm, unsigned i)
{
	char node[32];
	snprintf(node, sizeof(node), "hpnode%u", i);
	qmp_by_id(vm, "blockdev-del", "node-name", node);
}

/* device_add of `driver` as hpdev<slot> on root port hp<slot>, with the
 * device's own properties (`props`, NULL-terminated key/value pairs). */
static int device_add(struct husk_vm *vm, unsigned slot, const char *driver,
		      const char *const *props, struct husk_err *err)
{
	char bus[32], id[32];
	snprintf(bus, sizeof(bus), "hp%u", slot);
	snprintf(id, sizeof(id), "hpdev%u", slot);
	json_object *dev = json_object_new_object();
	json_object_object_add(dev, "driver", json_object_new_string(driver));
	json_object_object_add(dev, "id", json_object_new_string(id));
	json_object_object_add(dev, "bus", json_object_new_string(bus));
	for (; props[0]; props += 2)
		json_object_object_add(dev, props[0], json_object_new_string(props[1]));
	int r = qmp(vm, "device_add", dev, err);
	json_object_put(dev);
	return r;
}

/* Frees the slots whose devices QEMU has reported gone. */
static void sweep(struct husk_vm *vm)
{
	struct qemu_slot *slots = qemu_of(vm)->slots;
	for (unsigned i = 0; i < vm->n_slots; i++) {
		if (slots[i].state != SLOT_GONE)
			continue;
		qmp_node_del(vm, i);
		slots[i].state = SLOT_FREE;
		slots[i].serial[0] = '\0';
	}
}

/* A free slot for the device known as `key` (a disk's serial, "fs:<tag>"):
 * its index, -EEXIST when the key is in use, -ENOSPC when none is free. */
static int pick_slot(struct husk_vm *vm, const char *key, struct husk_err *err)
{
	struct qemu_slot *slots = qemu_of(vm)->slots;
	int r;
	/* Any call reads pending events: slots unplugged since become free. */
	if ((r = qmp(vm, "query-status", NULL, err)) < 0)
		return r;
	sweep(vm);
	/* The first free slot from next_slot on: a slot the guest powered
	 * off a moment ago takes longer to come back than one never used. */
	unsigned slot = vm->n_slots, from = qemu_of(vm)->next_slot;
	for (unsigned k = 0; k < vm->n_slots; k++) {
		unsigned i = (from + k) % vm->n_slots;
		if (slots[i].state != SLOT_FREE && strcmp(slots[i].serial, key) == 0)
			return husk_err_set(err, -EEXIST, "%s: already attached", key);
		if (slots[i].state == SLOT_FREE && slot == vm->n_slots)
			slot = i;
	}
	if (slot == vm->n_slots)
		return husk_err_set(err, -ENOSPC, "VM %s: all %u hotplug slots are in use",
				    vm->name, vm->n_slots);
	return (int)slot;
}

static void slot_taken(struct husk_vm *vm, unsigned slot, const char *key)
{
	struct qemu_slot *s = &qemu_of(vm)->slots[slot];
	s->state = SLOT_USED;
	snprintf(s->serial, sizeof(s->serial), "%s", key);
	qemu_of(vm)->next_slot = (slot + 1) % vm->n_slots;
}


int husk_qemu_add_fs(struct husk_vm *vm, const char *tag, const char *socket, struct husk_err *err)
{
	char key[48], chr[32];
	snprintf(key, sizeof(key), "fs:%s", tag);
	int slot = pick_slot(vm, key, err);
	if (slot < 0)
		return slot;
	snprintf(chr, sizeof(chr), "hpchr%d", slot);
	json_object *addr = json_object_new_object(), *ud = json_object_new_object();
	json_object_object_add(ud, "path", json_object_new_string(socket));
	json_object_object_add(addr, "type", json_object_new_string("unix"));
	json_object_object_add(addr, "data", ud);
	json_object *sd = json_object_new_object(), *be = json_object_new_object();
	json_object_object_add(sd, "addr", addr);
	json_object_object_add(sd, "server", json_object_new_boolean(false));
	json_object_object_add(be, "type", json_object_new_string("socket"));
	json_object_object_add(be, "data", sd);
	json_object *args = json_object_new_object();
	json_object_object_add(args, "id", json_object_new_string(chr));
	json_object_object_add(args, "backend", be);
	int r = qmp(vm, "chardev-add", args, err);
	json_object_put(args);
	if (r < 0)
		return husk_err_wrap(err, "virtio-fs %s: connecting to %s", tag, socket);
	const char *props[] = { "chardev", chr, "tag", tag, NULL };
	if ((r = device_add(vm, (unsigned)slot, "vhost-user-fs-pci", props, err)) < 0) {
		qmp_by_id(vm, "chardev-remove", "id", chr);
		return husk_err_wrap(err, "virtio-fs %s", tag);
	}
	slot_taken(vm, (unsigned)slot, key);
	return 0;
}


/* A TAP's fd goes to QEMU with getfd; netdev_add makes it a backend,
 * and a virtio-net-pci on a free slot the guest's NIC. */
int husk_qemu_add_nic(struct husk_vm *vm, const struct husk_vmm_nic *nic, struct husk_err *err)
{
	char key[48], fdname[32], netdev[32];
	snprintf(key, sizeof(key), "nic:%s", nic->mac);
	int slot = pick_slot(vm, key, err);
	if (slot < 0)
		return slot;
	snprintf(fdname, sizeof(fdname), "hpfd%d", slot);
	snprintf(netdev, sizeof(netdev), "hpnet%d", slot);
	json_object *a = json_object_new_object();
	json_object_object_add(a, "fdname", json_object_new_string(fdname));
	int r = husk_qmp_call_fd(qemu_of(vm)->qmp_fd, "getfd", a, nic->tap_fd, QMP_TIMEOUT_MS,
				 on_event, vm, err);
	json_object_put(a);
	if (r < 0)
		return husk_err_wrap(err, "NIC %s: passing the TAP", nic->mac);
	a = json_object_new_object();
	json_object_object_add(a, "type", json_object_new_string("tap"));
	json_object_object_add(a, "id", json_object_new_string(netdev));
	json_object_object_add(a, "fd", json_object_new_string(fdname));
	r = qmp(vm, "netdev_add", a, err);
	json_object_put(a);
	if (r < 0) {
		qmp_by_id(vm, "closefd", "fdname", fdname);
		return husk_err_wrap(err, "NIC %s", nic->mac);
	}
	const char *props[] = { "netdev", netdev, "mac", nic->mac, NULL };
	if ((r = device_add(vm, (unsigned)slot, "virtio-net-pci", props, err)) < 0) {
		qmp_by_id(vm, "netdev_del", "id", netdev);
		return husk_err_wrap(err, "NIC %s", nic->mac);
	}
	slot_taken(vm, (unsigned)slot, key);
	return 0;
}

int husk_qemu_add_disk(struct husk_vm *vm, const struct husk_disk *disk, struct husk_err *err)
{
	int r = pick_slot(vm, disk->serial, err);
	if (r < 0)
		return r == -EEXIST ? husk_err_set(err, r, "disk serial %s: already attached",
						   disk->serial)
				    : r;
	unsigned slot = (unsigned)r;

	char node[32];
	snprintf(node, sizeof(node), "hpnode%u", slot);
	json_object *file = json_object_new_object();
	json_object_object_add(file, "driver", json_object_new_string("file"));
	json_object_object_add(file, "filename", json_object_new_string(disk->path));
	json_object_object_add(file, "read-only", json_object_new_boolean(disk->readonly));
	json_object *blk = json_object_new_object();
	json_object_object_add(blk, "driver", json_object_new_string("raw"));
	json_object_object_add(blk, "node-name", json_object_new_string(node));
	json_object_object_add(blk, "read-only", json_object_new_boolean(disk->readonly));
	json_object_object_add(blk, "file", file);
	r = qmp(vm, "blockdev-add", blk, err);
	json_object_put(blk);
	if (r < 0)
		return husk_err_wrap(err, "disk %s", disk->path);

	const char *props[] = { "drive", node, "serial", disk->serial, NULL };
	if ((r = device_add(vm, slot, "virtio-blk-pci", props, err)) < 0) {
		qmp_node_del(vm, slot);
		return husk_err_wrap(err, "disk %s", disk->path);
	}
	slot_taken(vm, slot, disk->serial);
	return 0;
}

struct gone_wait {
	struct husk_vm *vm;
	unsigned slot;
};

static void on_event_wait(const char *event, json_object *data, void *ud)
{
	on_event(event, data, ((struct gone_wait *)ud)->vm);
}

static bool slot_gone(void *ud)
{
	struct gone_wait *w = ud;
	return qemu_of(w->vm)->slots[w->slot].state == SLOT_GONE;
}

int husk_qemu_remove_disk(struct husk_vm *vm, const char *serial, unsigned wait_ms,
			  struct husk_err *err)
{
	struct qemu_slot *slots = qemu_of(vm)->slots;
	int r;
	for (unsigned i = 0; i < vm->n_slots; i++) {
		if (slots[i].state != SLOT_USED || strcmp(slots[i].serial, serial) != 0)
			continue;
		char id[32];
		snprintf(id, sizeof(id), "hpdev%u", i);
		json_object *args = json_object_new_object();
		json_object_object_add(args, "id", json_object_new_string(id));
		uint64_t deadline = husk_monotonic_ns() + (uint64_t)wait_ms * 1000000u;
		for (;;) {
			struct husk_err e = { 0 };
			/* Before the call: the event may come with the reply. */
			slots[i].state = SLOT_UNPLUGGING;
			r = qmp(vm, "device_del", args, &e);
			if (r == 0)
				break;
			slots[i].state = SLOT_USED;
			/* A disk just added: the guest's pciehp is still powering the
			 * slot up (its indicator blinks), and QEMU refuses the button
			 * until it is done. A caller that waits may retry. */
			if (!strstr(e.msg, "guest is busy") || husk_monotonic_ns() >= deadline) {
				json_object_put(args);
				if (err)
					*err = e;
				husk_err_wrap(err, "disk serial %s", serial);
				return r;
			}
			usleep(BUSY_RETRY_MS * 1000);
		}
		json_object_put(args);
		/* Rather than wait out pciehp's 5 s cancel window, have the agent
		 * power the slot off: QEMU unplugs the device as the guest writes
		 * the slot control, before the agent replies. Best effort: the
		 * window still ends the removal if this fails. */
		struct husk_agent *a = NULL;
		struct husk_err rel = { 0 };
		bool released = husk_agent_open(vm, QMP_TIMEOUT_MS, &a, &rel) == 0 &&
				husk_agent_release_disk(a, serial, &rel) == 0;
		husk_agent_close(a);
		if (released && wait_ms < QMP_TIMEOUT_MS)
			wait_ms = QMP_TIMEOUT_MS; /* the event is due now */
		if (!wait_ms)
			return 0;
		struct gone_wait w = { vm, i };
		r = husk_qmp_wait_event(qemu_of(vm)->qmp_fd, wait_ms, on_event_wait, &w, slot_gone, err);
		if (r < 0)
			return husk_err_wrap(err, "disk serial %s: removal", serial);
		sweep(vm);
		return 0;
	}
	return husk_err_set(err, -ENOENT, "disk serial %s: not attached to VM %s", serial,
			    vm->name);
}
