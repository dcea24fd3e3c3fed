/* The shim's VM (vm.h). State moves NONE -> BOOTING -> RUNNING, then
 * LOST (something died) and/or STOPPING -> STOPPED; only the loop's
 * thread changes it. Jobs on the worker get what they need copied into
 * their vm_create and never touch struct shim_vm. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "husk/cleanup.h"
#include "husk/path.h"
#include "io.h"
#include "mounts.h"
#include "vm.h"

#define BOOT_NAME_MAX 32
#define AGENT_OPEN_TIMEOUT_MS 30000
#define STOP_GRACE_MS 3000
#define AGENT_GONE_GRACE_NS (300ull * 1000000ull)

static const char *const vm_state_names[] = {
	[SHIM_VM_NONE] = "none",	 [SHIM_VM_BOOTING] = "booting",
	[SHIM_VM_RUNNING] = "running",	 [SHIM_VM_LOST] = "lost",
	[SHIM_VM_STOPPING] = "stopping", [SHIM_VM_STOPPED] = "stopped",
};

static void set_state(struct shim *s, enum shim_vm_state to)
{
	if (to == s->vm.state)
		return;
	if (s->opt.debug)
		shim_log_at("debug", NULL, "VM: %s -> %s", vm_state_names[s->vm.state],
			    vm_state_names[to]);
	s->vm.state = to;
}

bool shim_vm_up(const struct shim *s)
{
	return s->vm.state == SHIM_VM_RUNNING && s->vm.agent;
}

struct vm_create *vm_create_new(struct shim *s, struct ctr *c)
{
	struct vm_create *vc = calloc(1, sizeof(*vc));
	if (!vc)
		return NULL;
	vc->s = s;
	vc->c = ctr_ref(c);
	vc->agent_fd = -1;
	vc->share_pidfd = -1;
	shim_portfwd_init(&vc->pf);
	return vc;
}

void vm_create_free(struct vm_create *vc)
{
	if (!vc)
		return;
	rootfs_src_free(&vc->src);
	free(vc->guest_spec);
	free(vc->guest_bundle);
	if (vc->agent_fd >= 0)
		close(vc->agent_fd);
	shim_portfwd_close(vc->netns, &vc->pf); /* only if a failure left it */
	ctr_unref(vc->c);
	free(vc);
}

/* ---- on the worker ---- */

/* <bundle>/husk-vm names the VM's state directory, for `delete` after a
 * shim that is gone (its config may have named another state_dir). */
static void record_vm_dir(struct husk_vm *vm, const char *bundle)
{
	char path[PATH_MAX];
	if (husk_path_fmt(path, sizeof(path), "%s/" SHIM_VM_RECORD, bundle) < 0)
		return;
	FILE *f = fopen(path, "we");
	if (!f || fprintf(f, "%s\n", husk_vm_dir(vm)) < 0 || fclose(f) != 0) {
		shim_log("writing %s: %s", path, strerror(errno));
		if (f)
			fclose(f);
	}
}

/* The pod's network: a TAP with tc redirects next to each of CNI's
 * interfaces (network.c), each TAP a NIC of the VM, and the guest told
 * its addresses and routes; before the sandbox's process starts. */
static int pod_network_up(struct vm_create *vc, struct husk_vm *vm, struct husk_err *err)
{
	struct shim_net *n = &vc->net;
	int rc = shim_net_attach(vc->netns, n, err);
	if (rc < 0)
		return husk_err_wrap(err, "pod network in %s", vc->netns);
	vc->net_attached = true;
	/* The pod runs without it: port-forward then finds nothing, as for a
	 * VM runtime without this. Said loudly, not fatal. */
	struct husk_err pe = { 0 };
	if (shim_portfwd_open(vc->netns, &vc->pf, &pe) < 0)
		shim_log_at("warning", NULL, "%s: kubectl port-forward will not reach this pod",
			    pe.msg);
	if (!n->n_ifs)
		return 0;
	struct husk_net_if ifs[SHIM_NET_IFS_MAX];
	struct husk_net_addr addrs[SHIM_NET_IFS_MAX][SHIM_NET_ADDRS_MAX];
	struct husk_net_route routes[SHIM_NET_ROUTES_MAX];
	for (size_t i = 0; i < n->n_ifs; i++) {
		const struct shim_net_if *f = &n->ifs[i];
		if ((rc = husk_vm_add_nic(vm, &(struct husk_nic){ .tap_fd = f->tap_fd, .mac = f->mac },
					  err)) < 0)
			return husk_err_wrap(err, "pod network: %s", f->name);
		for (size_t k = 0; k < f->n_addrs; k++)
			addrs[i][k] = (struct husk_net_addr){ .address = f->addrs[k].addr,
							      .prefix_len = f->addrs[k].prefix_len };
		ifs[i] = (struct husk_net_if){ .name = f->name, .mac = f->mac, .mtu = f->mtu,
					       .addrs = addrs[i], .n_addrs = f->n_addrs };
	}
	/* On-link routes first: a gateway must be reachable when a route
	 * through it is added (Calico's 169.254.1.1/32 before its default). A
	 * default route without a gateway names its family's /0. */
	size_t nr = 0;
	for (int pass = 0; pass < 2; pass++)
		for (size_t k = 0; k < n->n_routes; k++) {
			const struct shim_net_route *r = &n->routes[k];
			if ((pass == 0) != !r->gateway[0])
				continue;
			const char *dst = r->dst;
			if (!dst[0] && !r->gateway[0])
				dst = r->family == AF_INET6 ? "::/0" : "0.0.0.0/0";
			routes[nr++] = (struct husk_net_route){ .destination = dst,
								.gateway = r->gateway,
								.device = r->dev };
		}
	const struct husk_net_config cfg = { .ifs = ifs, .n_ifs = n->n_ifs, .routes = routes,
					     .n_routes = nr };
	struct husk_agent *a = NULL;
	if ((rc = husk_agent_open(vm, AGENT_OPEN_TIMEOUT_MS, &a, err)) == 0)
		rc = husk_agent_setup_network(a, &cfg, err);
	husk_agent_close(a);
	return rc < 0 ? husk_err_wrap(err, "pod network") : 0;
}

static int boot_run(void *data, struct husk_err *err)
{
	struct vm_create *vc = data;
	struct ctr *c = vc->c;
	const struct shim_config *cf = &vc->s->cfg;
	char name[BOOT_NAME_MAX + 1];
	_cleanup_free_ char *kernel = NULL, *initrd = NULL, *image = NULL;
	int rc;
	if ((rc = rootfs_image(c, &vc->src, cf->image_cache, &image, err)) < 0)
		return rc;
	if (!(kernel = cf->kernel ? strdup(cf->kernel) : husk_default_path("kernel", err)) ||
	    !(initrd = cf->initrd ? strdup(cf->initrd) : husk_default_path("initrd", err)))
		return err->code ? err->code : husk_err_set(err, -ENOMEM, "out of memory");
	shim_vm_name(vc->s->opt.namespace_, c->id, name, sizeof(name));
	snprintf(c->serial, sizeof(c->serial), "rootfs0");
	struct husk_disk disk = { .path = image, .serial = c->serial, .readonly = true };
	struct husk_vm_config cfg = {
		.name = name, .state_dir = cf->state_dir, .kernel = kernel, .initrd = initrd,
		.cmdline_extra = cf->cmdline_extra, .vmm = cf->vmm, .vmm_binary = cf->vmm_binary,
		.vsockd = cf->vsockd, .vcpus = cf->vcpus, .memory_mib = cf->memory_mib,
		.accel = cf->accel, .transport = cf->transport, .disks = &disk, .n_disks = 1,
		.debug_console = cf->debug_console, .log_level = (int)cf->log_level,
		.merge_memory = cf->merge_memory, .tcg_cache_mib = cf->tcg_cache_mib,
		.boot_timeout_ms = cf->boot_timeout_ms, .die_with_parent = true,
		/* A ready VM from huskd when one of this shape is there; its
		 * name is the pool's (record_vm_dir notes where it is). */
		.pool = cf->pool,
		/* A pod's later containers come as hot-added disks; host
		 * mounts as a hot-added virtio-fs device. */
		.hotplug_slots = c->role == SHIM_POD_SANDBOX ? SHIM_POD_SLOTS : vc->share.dir ? 1 : 0,
	};
	const struct husk_sandbox_opts sb = { .hostname = vc->hostname };
	const struct husk_bundle_spec b = { .id = c->id, .spec_json = vc->guest_spec,
					    .rootfs_serial = c->serial,
					    .overlay_bytes = cf->overlay_bytes,
					    .share = vc->share.dir ? &vc->share : NULL };
	struct husk_vm *vm = NULL;
	if ((rc = husk_sandbox_start(&cfg, &sb, &b, &vm, &vc->guest_bundle, err)) < 0)
		return rc; /* the console's tail is in err */
	record_vm_dir(vm, c->bundle);
	int fd = -1;
	if ((vc->netns[0] && (rc = pod_network_up(vc, vm, err)) < 0) ||
	    (rc = fd = husk_vm_connect(vm, HUSK_AGENT_PORT, 0, err)) < 0) {
		husk_vm_free(vm); /* stops it: nothing of it is left */
		if (vc->net_attached)
			shim_net_detach(vc->netns, &vc->net);
		vc->net_attached = false;
		shim_portfwd_close(vc->netns, &vc->pf);
		return rc;
	}
	vc->vm = vm;
	vc->agent_fd = fd;
	if (vc->share.dir)
		vc->share_pidfd = husk_vm_share_pidfd(vm, vc->share.tag);
	return 0;
}

static int join_run(void *data, struct husk_err *err)
{
	struct vm_create *vc = data;
	struct ctr *c = vc->c;
	_cleanup_free_ char *image = NULL;
	int rc;
	if ((rc = rootfs_image(c, &vc->src, vc->s->cfg.image_cache, &image, err)) < 0)
		return rc;
	struct husk_disk disk = { .path = image, .serial = c->serial, .readonly = true };
	const struct husk_bundle_spec b = { .id = c->id, .spec_json = vc->guest_spec,
					    .overlay_bytes = vc->s->cfg.overlay_bytes,
					    .share = vc->share.dir ? &vc->share : NULL };
	if ((rc = husk_sandbox_add_container(vc->vm, &disk, &b, &vc->guest_bundle, err)) < 0)
		return husk_err_wrap(err, "joining the pod's VM");
	c->disk_added = true;
	if (vc->share.dir)
		vc->share_pidfd = husk_vm_share_pidfd(vc->vm, vc->share.tag);
	return 0;
}

struct leave_job {
	struct ctr *c;
	struct husk_vm *vm;
};

static int leave_run(void *data, struct husk_err *err)
{
	struct leave_job *j = data;
	return husk_vm_remove_disk(j->vm, j->c->serial, 0, err);
}

/* After the VM: the TAPs and tc filters in CNI's namespace. */
static void net_down(struct shim *s)
{
	if (s->vm.net_attached)
		shim_net_detach(s->vm.netns, &s->vm.net);
	s->vm.net_attached = false;
	shim_portfwd_close(s->vm.netns, &s->vm.pf);
}

struct stop_job {
	struct shim *s;
	struct husk_vm *vm;
	bool ran; /* the VM is freed */
	/* The pod's network, copied: the worker never touches struct shim_vm. */
	char netns[PATH_MAX];
	struct shim_net net;
	bool net_attached;
	struct shim_portfwd pf; /* stopped: only its redirect is left */
};

static int stop_run(void *data, struct husk_err *err)
{
	struct stop_job *j = data;
	j->ran = true;
	int rc = husk_vm_stop(j->vm, STOP_GRACE_MS, err);
	husk_vm_free(j->vm);
	if (j->net_attached)
		shim_net_detach(j->netns, &j->net);
	shim_portfwd_close(j->netns, &j->pf);
	return rc;
}

/* ---- on the loop ---- */

/* The VM is gone: so are its disks. The owner may be deleted already. */
static void release_all_images(struct shim *s)
{
	for (struct ctr *c = s->ctrs; c; c = c->next) {
		c->disk_added = false;
		rootfs_release(c);
	}
	struct ctr *owner = take_ptr(s->vm.owner);
	if (owner) {
		rootfs_release(owner);
		ctr_unref(owner);
	}
	mounts_share_remove(s);
}

static void on_vmm_exit(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io, (void)fd, (void)events;
	struct shim *s = data;
	int st = 0;
	char why[128];
	ev_io_del(s->vm.vmm_io);
	s->vm.vmm_io = NULL;
	const char *prog = husk_vm_vmm_program(s->vm.vm);
	if (husk_vm_exited(s->vm.vm, &st))
		snprintf(why, sizeof(why), "%s %s %d", prog,
			 WIFSIGNALED(st) ? "was killed by signal" : "exited with status",
			 WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
	else
		snprintf(why, sizeof(why), "%s exited", prog);
	shim_vm_lost(s, why);
}

static void on_vsockd_exit(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io, (void)fd, (void)events;
	struct shim *s = data;
	ev_io_del(s->vm.vsockd_io);
	s->vm.vsockd_io = NULL;
	/* Not reaped here: husk_vm_stop does, and keeps the pid ours till then. */
	shim_vm_lost(s, "husk-vsockd exited: the guest's vsock is gone");
}

static void on_virtiofsd_exit(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io, (void)fd, (void)events;
	struct shim *s = data;
	ev_io_del(s->vm.virtiofsd_io);
	s->vm.virtiofsd_io = NULL;
	/* virtiofsd leaves when QEMU went: then QEMU's exit is the news. */
	int st;
	if (husk_vm_exited(s->vm.vm, &st))
		return;
	/* The guest's requests on the share would wait for ever. */
	shim_vm_lost(s, "virtiofsd exited: the containers' host mounts are gone");
}

/* The share's virtiofsd, watched from the first container that has it. */
static void watch_virtiofsd(struct shim *s, int pidfd)
{
	struct husk_err err = { 0 };
	if (pidfd < 0 || s->vm.virtiofsd_io || !shim_vm_up(s))
		return;
	if (ev_io_add(s->loop, pidfd, EPOLLIN, on_virtiofsd_exit, s, &s->vm.virtiofsd_io, &err) < 0)
		shim_log_at("warning", NULL, "watching virtiofsd: %s", err.msg);
}

static void on_agent_gone(void *data)
{
	struct shim *s = data;
	s->vm.agent_gone_timer = NULL;
	shim_vm_lost(s, s->vm.agent_gone_why);
}

/* The agent's connection dropped. When husk-vsockd or QEMU died, that is
 * the news, and their exit is seen a moment after the socket's close: wait
 * a little for it, so the log names the cause. */
static void on_agent_closed(int reason, void *data)
{
	struct shim *s = data;
	if (reason)
		snprintf(s->vm.agent_gone_why, sizeof(s->vm.agent_gone_why),
			 "the agent connection failed: %s", strerror(-reason));
	else
		snprintf(s->vm.agent_gone_why, sizeof(s->vm.agent_gone_why),
			 "the agent connection closed");
	if (s->vm.agent_gone_timer ||
	    ev_timer_add(s->loop, AGENT_GONE_GRACE_NS, on_agent_gone, s, &s->vm.agent_gone_timer) < 0)
		shim_vm_lost(s, s->vm.agent_gone_why);
}

/* Everything the loop watches of a running VM. */
static void detach(struct shim *s)
{
	ev_timer_cancel(take_ptr(s->vm.agent_gone_timer));
	agent_log_stop(s);
	ev_io_del(s->vm.vmm_io);
	ev_io_del(s->vm.vsockd_io);
	ev_io_del(s->vm.virtiofsd_io);
	s->vm.vmm_io = s->vm.vsockd_io = s->vm.virtiofsd_io = NULL;
	if (s->vm.vsockd_pidfd >= 0)
		close(s->vm.vsockd_pidfd);
	s->vm.vsockd_pidfd = -1;
	shim_portfwd_stop(&s->vm.pf);
	struct ttrpc_client *a = take_ptr(s->vm.agent);
	/* Completes the calls in flight with CANCELLED; they see no agent. */
	ttrpc_client_free(a);
}

static int attach(struct shim *s, int agent_fd, struct husk_err *err)
{
	struct shim_vm *v = &s->vm;
	int rc = ttrpc_client_new(s->loop, agent_fd, &v->agent, err);
	if (rc < 0)
		return rc;
	ttrpc_client_on_close(v->agent, on_agent_closed, s);
	int pfd = husk_vm_pidfd(v->vm);
	if (pfd >= 0 && (rc = ev_io_add(s->loop, pfd, EPOLLIN, on_vmm_exit, s, &v->vmm_io, err)) < 0)
		return rc;
	pid_t vp = husk_vm_vsockd_pid(v->vm);
	if (vp > 0) {
		v->vsockd_pidfd = (int)syscall(SYS_pidfd_open, vp, 0);
		if (v->vsockd_pidfd < 0)
			return husk_err_sys(err, -errno, "pidfd_open husk-vsockd %d", (int)vp);
		if ((rc = ev_io_add(s->loop, v->vsockd_pidfd, EPOLLIN, on_vsockd_exit, s,
				    &v->vsockd_io, err)) < 0)
			return rc;
	}
	if ((rc = agent_log_start(s, err)) < 0)
		return rc;
	agent_events_start(s);
	return 0;
}

static void stop_done(void *data, int rc, const struct husk_err *err)
{
	struct stop_job *j = data;
	struct shim *s = j->s;
	bool ran = j->ran;
	if (!ran) {
		/* Cancelled: the shim is exiting, and stop_now does it, the
		 * pod's network and port-forward redirect included. */
		s->vm.net = j->net;
		s->vm.net_attached = j->net_attached;
		s->vm.pf.table = j->pf.table;
		free(j);
		return;
	}
	free(j);
	if (rc < 0)
		shim_log("stopping the VM: %s", err->msg);
	s->vm.vm = NULL;
	set_state(s, SHIM_VM_STOPPED);
	/* Nothing uses the images any more. */
	release_all_images(s);
	shim_maybe_exit(s);
}

static void teardown_cb(void *data)
{
	struct shim *s = data;
	if (s->vm.state != SHIM_VM_RUNNING && s->vm.state != SHIM_VM_LOST)
		return;
	detach(s);
	set_state(s, SHIM_VM_STOPPING);
	struct stop_job *j = calloc(1, sizeof(*j));
	struct husk_err err = { 0 };
	if (j) {
		*j = (struct stop_job){ .s = s, .vm = s->vm.vm, .net = s->vm.net,
					.net_attached = s->vm.net_attached, .pf = s->vm.pf };
		snprintf(j->netns, sizeof(j->netns), "%s", s->vm.netns);
		if (shim_worker_submit(s->worker, stop_run, stop_done, j, &err) == 0) {
			/* The job detaches them now. */
			s->vm.net_attached = false;
			s->vm.pf.table = false;
			return;
		}
		free(j);
	}
	/* No worker job: stop it here rather than leave it running. */
	shim_log("stopping the VM on the loop: %s", err.msg[0] ? err.msg : "out of memory");
	husk_vm_stop(s->vm.vm, STOP_GRACE_MS, NULL);
	husk_vm_free(s->vm.vm);
	s->vm.vm = NULL;
	net_down(s);
	set_state(s, SHIM_VM_STOPPED);
	release_all_images(s);
	shim_maybe_exit(s);
}

void shim_vm_teardown(struct shim *s)
{
	/* Never from inside the agent client's own callback: it is freed
	 * there. */
	s->vm.teardown.fn = teardown_cb;
	s->vm.teardown.data = s;
	ev_defer(s->loop, &s->vm.teardown);
}

void shim_vm_lost(struct shim *s, const char *why)
{
	if (s->vm.state != SHIM_VM_RUNNING || s->shutting_down)
		return;
	set_state(s, SHIM_VM_LOST);
	bool any = false;
	for (struct ctr *c = s->ctrs; c; c = c->next)
		for (struct proc *p = c->procs; p; p = p->next) {
			if (p->state == PROC_EXITING && p->oom_check) {
				p->oom_check = false; /* nobody will answer it */
				proc_maybe_stopped(p);
				continue;
			}
			if (p->state < PROC_CREATED || p->state > PROC_PAUSED)
				continue;
			any = true;
			/* Without the VM no more output comes; keep what was copied. */
			relay_abort_source(p->out);
			relay_abort_source(p->err);
			proc_exited(p, SHIM_VM_LOST_STATUS, NULL);
		}
	shim_log("shim for %s: the VM is gone (%s)%s", s->opt.id, why,
		 any ? "; its processes are reported exited with status 255" : "");
	char tail[2048];
	husk_vm_console_tail(s->vm.vm, tail, sizeof(tail));
	if (*tail)
		shim_log("guest console (last lines):\n%s", tail);
	/* Whatever part of it still runs (QEMU when only husk-vsockd died)
	 * goes now, not at the owner's delete. */
	shim_vm_teardown(s);
}

static void boot_done(void *data, int rc, const struct husk_err *err)
{
	struct vm_create *vc = data;
	struct shim *s = vc->s;
	struct husk_err e2 = { 0 };
	if (rc == 0) {
		s->vm.vm = take_ptr(vc->vm);
		s->vm.vmm_pid = husk_vm_vmm_pid(s->vm.vm);
		snprintf(s->vm.netns, sizeof(s->vm.netns), "%s", vc->netns);
		s->vm.net = vc->net;
		s->vm.net_attached = vc->net_attached;
		vc->net_attached = false;
		s->vm.pf = vc->pf;
		shim_portfwd_init(&vc->pf);
		set_state(s, SHIM_VM_RUNNING);
		rc = attach(s, take_fd(&vc->agent_fd), &e2);
		if (rc == 0)
			watch_virtiofsd(s, vc->share_pidfd);
		if (rc < 0) {
			err = &e2;
			shim_vm_teardown(s);
		} else if (s->vm.pf.listen_fd[0] >= 0) {
			struct husk_err pe = { 0 };
			if (shim_portfwd_start(&s->vm.pf, s->loop, s->vm.vm, &pe) < 0)
				shim_log_at("warning", NULL,
					    "port forwarding: %s; kubectl port-forward will not reach this pod",
					    pe.msg);
		}
	} else {
		rootfs_release(vc->c);
		ctr_unref(take_ptr(s->vm.owner));
		mounts_share_remove(s);
		set_state(s, SHIM_VM_NONE);
	}
	vc->done(vc, rc, err);
}

int shim_vm_boot(struct vm_create *vc, struct husk_err *err)
{
	struct shim *s = vc->s;
	if (s->vm.state != SHIM_VM_NONE)
		return husk_err_set(err, -EEXIST, "this shim already has a VM (%s)",
				    vm_state_names[s->vm.state]);
	int rc = shim_worker_submit(s->worker, boot_run, boot_done, vc, err);
	if (rc < 0)
		return rc;
	s->vm.owner = ctr_ref(vc->c);
	set_state(s, SHIM_VM_BOOTING);
	return 0;
}

static void join_done(void *data, int rc, const struct husk_err *err)
{
	struct vm_create *vc = data;
	struct shim *s = vc->s;
	struct husk_err e2 = { 0 };
	if (rc == 0 && s->vm.state != SHIM_VM_RUNNING) {
		/* The VM went while the disk was being added. */
		rc = husk_err_set(&e2, -EPIPE, "the pod's VM is gone");
		err = &e2;
	}
	if (rc < 0)
		shim_vm_leave(s, vc->c);
	else
		watch_virtiofsd(s, vc->share_pidfd);
	vc->done(vc, rc, err);
}

int shim_vm_join(struct vm_create *vc, struct husk_err *err)
{
	struct shim *s = vc->s;
	if (!shim_vm_up(s))
		return husk_err_set(err, -EPIPE, "the pod's VM is not running");
	vc->vm = s->vm.vm;
	snprintf(vc->c->serial, sizeof(vc->c->serial), "rootfs%u", ++s->vm.disks_added);
	return shim_worker_submit(s->worker, join_run, join_done, vc, err);
}

static void leave_done(void *data, int rc, const struct husk_err *err)
{
	struct leave_job *j = data;
	struct shim *s = j->c->s;
	if (rc < 0 && rc != -ECANCELED)
		shim_log("container %s: %s", j->c->id, err->msg);
	j->c->disk_added = false;
	/* QEMU keeps the file open until the guest lets the slot go; its own
	 * lock keeps a prune away until then. */
	rootfs_release(j->c);
	ctr_unref(j->c);
	free(j);
	shim_maybe_exit(s);
}

void shim_vm_leave(struct shim *s, struct ctr *c)
{
	if (c->disk_added && shim_vm_up(s)) {
		struct leave_job *j = calloc(1, sizeof(*j));
		struct husk_err err = { 0 };
		if (j) {
			*j = (struct leave_job){ .c = ctr_ref(c), .vm = s->vm.vm };
			if (shim_worker_submit(s->worker, leave_run, leave_done, j, &err) == 0)
				return;
			ctr_unref(c);
			free(j);
		}
		shim_log("container %s: its disk stays in the VM: %s", c->id,
			 err.msg[0] ? err.msg : "out of memory");
	}
	/* A VM that is going takes the disk with it. */
	c->disk_added = false;
	rootfs_release(c);
}

void shim_vm_stop_now(struct shim *s)
{
	detach(s);
	if (s->vm.vm) {
		struct husk_err err = { 0 };
		if (husk_vm_stop(s->vm.vm, STOP_GRACE_MS, &err) < 0)
			shim_log("stopping the VM: %s", err.msg);
		husk_vm_free(s->vm.vm);
		s->vm.vm = NULL;
	}
	net_down(s);
	if (s->vm.state != SHIM_VM_NONE)
		set_state(s, SHIM_VM_STOPPED);
	release_all_images(s);
}

