/* The shim's VM, as the event loop sees it (struct shim_vm in shim.h):
 * booting it for the shim's first container, a pod's later containers
 * joining it (their rootfs disks hot-added) and leaving it, tearing it
 * down with its owner, and losing it (QEMU, husk-vsockd or the agent gone).
 * Everything slow runs as a job on the shim's worker thread; the loop only
 * learns the result. */
#ifndef HUSK_SHIM_VM_H
#define HUSK_SHIM_VM_H

#include <stdint.h>

#include "rootfs.h"
#include "shim.h"

/* One container being made ready in the VM: its rootfs disk, the
 * guest-wide set-up for the first, Sandbox.CreateBundle. */
struct vm_create {
	struct shim *s;
	struct ctr *c; /* a reference */
	struct rootfs_src src;
	char *guest_spec; /* the config.json the guest gets */
	struct husk_share share; /* its host mounts' directory (mounts.h); dir NULL: none */
	/* A pod's sandbox: CNI's network namespace ("" none); the network
	 * attached there (the worker fills it). */
	char netns[PATH_MAX];
	struct shim_net net;
	bool net_attached;
	struct shim_portfwd pf;
	char hostname[256];
	/* Filled by the worker. */
	char *guest_bundle;
	struct husk_vm *vm; /* boot: the new VM; join: the VM joined */
	int agent_fd;	    /* boot: a stream to the agent's port */
	int share_pidfd;    /* the share's virtiofsd (the VM's fd), -1: none */
	/* Runs on the loop when done: rc 0, or a negative errno with err.
	 * On failure nothing of the container is left in the VM. */
	void (*done)(struct vm_create *vc, int rc, const struct husk_err *err);
	void *data;
};

/* A vm_create for `c` (its ref taken); NULL when out of memory. */
struct vm_create *vm_create_new(struct shim *s, struct ctr *c);
void vm_create_free(struct vm_create *vc);

/* Boots the VM with `vc` as its first container. */
int shim_vm_boot(struct vm_create *vc, struct husk_err *err);
/* `vc`'s container joins the running VM. */
int shim_vm_join(struct vm_create *vc, struct husk_err *err);
/* A container that is not the VM's owner leaves: its disk is removed and
 * its image released (on the worker while the VM runs). */
void shim_vm_leave(struct shim *s, struct ctr *c);
/* The VM goes (its owner was deleted, or the VM was lost): the agent
 * connection is dropped now, the VM stopped on the worker, every image
 * released after. Deferred: safe from inside any agent callback. */
void shim_vm_teardown(struct shim *s);
/* QEMU, husk-vsockd or the agent went away: every live process exits with
 * SHIM_VM_LOST_STATUS, the console's last lines go to the shim log, and
 * the VM is torn down. */
void shim_vm_lost(struct shim *s, const char *why);
/* At exit, with the worker gone: stops a VM still there and releases every
 * image, synchronously. */
void shim_vm_stop_now(struct shim *s);
/* Whether the agent can take calls. */
bool shim_vm_up(const struct shim *s);

/* agent_log.c: the agent's log stream into the shim log. */
int agent_log_start(struct shim *s, struct husk_err *err);
void agent_log_stop(struct shim *s);
/* agent_events.c: the agent's events (Sandbox.GetEvents, long polled);
 * OOM kills become /tasks/oom. */
void agent_events_start(struct shim *s);
/* Asks the agent for the container's OOM kill count and publishes
 * /tasks/oom when it grew; `p` (may be NULL) has its exit held until
 * then. */
void agent_oom_check(struct ctr *c, struct proc *p);

#endif
