/* The boot chain, once for every caller (huskctl, the shim): a VM with its
 * first container's bundle, or a container joining a running VM. */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vmm.h"

/* CreateBundle waits up to 10 s for a hot-added disk in the guest. */
#define CALL_TIMEOUT_MS 30000
/* A lost agent connection usually means the VMM is going: how long to
 * give it to show that it went. */
#define EXIT_SETTLE_MS 3000
#define STOP_GRACE_MS 2000
/* A failed join gives its slot back before it returns: at once when the
 * agent can release the disk, else after the guest's pciehp has let go
 * (its 5 s cancel window, for a disk the guest had not seen yet). */
#define REMOVE_WAIT_MS 10000

/* When the guest died under the chain, say so, with the console's last
 * lines: the agent's error alone ("connection gone") does not tell why. */
static void explain_death(struct husk_vm *vm, struct husk_err *err)
{
	if (err->code == -EPIPE && vm->vmm_pidfd >= 0) {
		struct pollfd p = { .fd = vm->vmm_pidfd, .events = POLLIN };
		poll(&p, 1, EXIT_SETTLE_MS);
	}
	int st;
	if (!husk_vm_exited(vm, &st))
		return;
	char tail[256];
	husk_vm_console_tail(vm, tail, sizeof(tail));
	husk_err_wrap(err, "the VM exited (%s %s %d; console: %s)", husk_vm_vmm_program(vm),
		      WIFSIGNALED(st) ? "killed by signal" : "exited with status",
		      WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st), tail);
}

/* A ready VM of cfg's shape from huskd, with cfg's disks hot-added where a
 * cold boot attaches them: 0 with *out, or a negative errno (why, in
 * `why`), and then the caller boots cold. */
static int take_pooled(const struct husk_vm_config *cfg, struct husk_vm **out,
		       struct husk_err *why)
{
	if (cfg->pool && (!*cfg->pool || strcmp(cfg->pool, "off") == 0))
		return husk_err_set(why, -ENOENT, "pool off");
	char sock[PATH_MAX];
	const char *path = cfg->pool ? cfg->pool :
				       husk_default_pool_socket(cfg->state_dir, sock, sizeof(sock));
	struct husk_vm *vm = NULL;
	int r = husk_pool_take(path, cfg, cfg->hotplug_slots + (unsigned)cfg->n_disks, &vm, why);
	if (r < 0)
		return r;
	for (size_t i = 0; i < cfg->n_disks; i++) {
		if ((r = husk_vm_add_disk(vm, &cfg->disks[i], why)) < 0) {
			husk_vm_free(vm);
			return r;
		}
	}
	*out = vm;
	return 0;
}

/* The bundle's shared directory, added unless the VM has it already. */
static int share_first(struct husk_vm *vm, const struct husk_bundle_spec *b, struct husk_err *err)
{
	if (!b->share || husk_vm_has_share(vm, b->share->tag))
		return 0;
	int r = husk_vm_add_share(vm, b->share, err);
	return r < 0 ? husk_err_wrap(err, "container %s: host mounts", b->id ? b->id : husk_vm_name(vm)) : 0;
}

int husk_sandbox_start(const struct husk_vm_config *cfg, const struct husk_sandbox_opts *sb,
		       const struct husk_bundle_spec *b, struct husk_vm **out, char **bundle,
		       struct husk_err *err)
{
	*out = NULL;
	*bundle = NULL;
	struct husk_vm *vm = NULL;
	struct husk_err why = { 0 };
	int r = take_pooled(cfg, &vm, &why);
	if (r == 0) {
		/* A pooled VM that cannot take the sandbox (it died as it was
		 * taken, say) is not the caller's problem: boot cold instead. */
		struct husk_agent *a = NULL;
		const struct husk_sandbox_opts none = { 0 };
		if ((r = husk_agent_open(vm, CALL_TIMEOUT_MS, &a, &why)) == 0)
			r = husk_agent_create_sandbox_opts(a, sb ? sb : &none, &why);
		husk_agent_close(a);
		if (r < 0) {
			husk_vm_stop(vm, STOP_GRACE_MS, NULL);
			husk_vm_free(vm);
			vm = NULL;
		}
	}
	if (r < 0)
		r = husk_vm_start(cfg, &vm, err);
	if (r < 0) {
		husk_err_wrap(err, "starting the VM");
		return r;
	}
	struct husk_agent *a = NULL;
	const struct husk_sandbox_opts none = { 0 };
	struct husk_bundle_spec spec = *b;
	if (!spec.id)
		spec.id = husk_vm_name(vm);
	bool sandbox_done = husk_vm_pooled(vm); /* above */
	if ((r = share_first(vm, b, err)) == 0 &&
	    (r = husk_agent_open(vm, CALL_TIMEOUT_MS, &a, err)) == 0 &&
	    (sandbox_done || (r = husk_agent_create_sandbox_opts(a, sb ? sb : &none, err)) == 0))
		r = husk_agent_create_bundle_spec(a, &spec, bundle, err);
	husk_agent_close(a);
	if (r == 0) {
		*out = vm;
		return 0;
	}
	explain_death(vm, err);
	husk_vm_stop(vm, STOP_GRACE_MS, NULL);
	husk_vm_free(vm);
	return r;
}

int husk_sandbox_add_container(struct husk_vm *vm, const struct husk_disk *rootfs,
			       const struct husk_bundle_spec *b, char **bundle,
			       struct husk_err *err)
{
	*bundle = NULL;
	if (b->rootfs_serial && (!rootfs->serial || strcmp(b->rootfs_serial, rootfs->serial) != 0))
		return husk_err_set(err, -EINVAL,
				    "container %s: rootfs_serial %s is not the added disk's (%s)",
				    b->id ? b->id : "?", b->rootfs_serial,
				    rootfs->serial ? rootfs->serial : "none");
	int r = husk_vm_add_disk(vm, rootfs, err);
	if (r < 0) {
		husk_err_wrap(err, "container %s: adding its rootfs", b->id ? b->id : "?");
		return r;
	}
	struct husk_bundle_spec spec = *b;
	spec.rootfs_serial = rootfs->serial;
	struct husk_agent *a = NULL;
	if ((r = share_first(vm, b, err)) == 0 &&
	    (r = husk_agent_open(vm, CALL_TIMEOUT_MS, &a, err)) == 0)
		r = husk_agent_create_bundle_spec(a, &spec, bundle, err);
	husk_agent_close(a);
	if (r == 0)
		return 0;
	explain_death(vm, err);
	struct husk_err e = { 0 };
	if (!husk_vm_exited(vm, NULL))
		husk_vm_remove_disk(vm, rootfs->serial, REMOVE_WAIT_MS, &e);
	return r;
}
