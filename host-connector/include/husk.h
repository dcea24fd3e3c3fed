/* libhusk: run husk microVMs from a host process.
 *
 *   husk_vm_start()     spawns husk-vsockd (or uses vhost-vsock) and the
 *                       VMM (QEMU by default), returns once the guest agent
 *                       answers Check
 *   husk_sandbox_*()    the boot chain: a VM with its first container's
 *                       bundle, or a container joining a running VM
 *   husk_vm_connect()   a stream fd to a guest vsock port
 *   husk_agent_*()      typed calls to the agent's Sandbox and Task services
 *   husk_vm_stop()      DestroySandbox, then the VMM's own stop (QEMU: QMP
 *                       quit), then SIGKILL
 *   husk_image_*()      a rootfs directory as a cached erofs image
 *   husk_pool_*()       ready VMs from huskd, and what huskd runs per VM
 *
 * Every function returns 0 (or an fd) on success and a negative errno on
 * failure, with `err` naming what failed. Nothing here calls exit() or
 * keeps global state.
 *
 * Threads: calls that change a VM (husk_vm_start/stop/free,
 * husk_vm_add_disk, husk_vm_remove_disk, husk_sandbox_add_container) must
 * not overlap on one VM: the caller serializes them. While one of them
 * runs (a hot-add on a worker thread, say), other threads may call
 * husk_vm_connect, husk_vm_listen, husk_vm_pidfd, husk_vm_log_fd,
 * husk_vm_exited, husk_vm_name, husk_vm_dir, husk_vm_console_log,
 * husk_vm_console_tail and the other accessors on the same VM: they read
 * what is fixed once husk_vm_start returns, or take the VM's lock
 * (husk_vm_exited). A struct husk_agent is one thread's at a time. See
 * docs/architecture.md and docs/configuration.md.
 */
#ifndef HUSK_H
#define HUSK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "husk/error.h"

#define HUSK_AGENT_PORT 1024
#define HUSK_LOG_PORT 1025
#define HUSK_CONSOLE_PORT 1026

/* ---- environment --------------------------------------------------------- */

enum husk_accel { HUSK_ACCEL_AUTO, HUSK_ACCEL_KVM, HUSK_ACCEL_TCG };
/* UNIX: the fake VMM's transport, an agent on the host (--listen unix:). */
enum husk_transport {
	HUSK_TRANSPORT_AUTO,
	HUSK_TRANSPORT_VHOST,
	HUSK_TRANSPORT_HYBRID,
	HUSK_TRANSPORT_UNIX,
};

const char *husk_accel_name(enum husk_accel a);
const char *husk_transport_name(enum husk_transport t);
/* Parses "auto", "kvm", "tcg" / "auto", "vhost", "hybrid" ("unix"). */
int husk_accel_parse(const char *s, enum husk_accel *out, struct husk_err *err);
int husk_transport_parse(const char *s, enum husk_transport *out, struct husk_err *err);

/* What AUTO resolves to on this host, with the reason in `why` (may be NULL).
 * KVM only when /dev/kvm opens and is hardware-backed (vmx/svm present, not
 * PVM): a PVM-backed /dev/kvm cannot run a stock guest kernel. */
enum husk_accel husk_accel_detect(char *why, size_t why_len);
/* VHOST when /dev/vhost-vsock opens, else HYBRID (husk-vsockd). */
enum husk_transport husk_transport_detect(char *why, size_t why_len);

/* Default locations: the build tree next to the running executable
 * (build/bin/../kernel/bzImage), then the installed share directory.
 * Returns a malloc'd path that exists, or NULL with `err` listing where it
 * looked. `what` is "kernel", "initrd" or "vsockd". */
char *husk_default_path(const char *what, struct husk_err *err);

/* The directory that holds per-VM state: $HUSK_STATE_DIR, else /run/husk
 * for root, else $XDG_RUNTIME_DIR/husk, else /tmp/husk-$UID. */
const char *husk_default_state_dir(char *buf, size_t len);

/* What this host can give one VM: its memory (MemTotal) and its online
 * CPUs. husk_vm_start refuses a VM larger than either. */
struct husk_host_limits {
	unsigned memory_mib;
	unsigned cpus;
};
int husk_host_limits(struct husk_host_limits *out, struct husk_err *err);

/* "10G", "512M", "2GiB", "1Gi", "64MB", "1048576": bytes with an optional
 * K, M, G or T suffix (1024-based, either case), optionally followed by
 * "i", then optionally "B". The one size syntax of huskctl, libhusk's
 * settings (HUSK_IMAGE_CACHE_MAX) and the shim. */
int husk_parse_size(const char *s, uint64_t *out, struct husk_err *err);

/* ---- VM lifecycle ---------------------------------------------------------- */

struct husk_disk {
	const char *path;
	const char *serial; /* /sys/block/vdX/serial in the guest (<= 20 bytes) */
	bool readonly;
};

struct husk_vm_config {
	const char *name;      /* NULL: generated; [A-Za-z0-9_.-], <= 32 bytes */
	const char *state_dir; /* NULL: husk_default_state_dir() */
	const char *kernel;    /* required */
	const char *initrd;    /* required */
	const char *cmdline_extra;
	/* The VMM backend: "qemu" (NULL), or "fake" for tests (runs no
	 * hypervisor; see docs/configuration.md). vm.json records it. */
	const char *vmm;
	/* The backend's program. NULL: its default (QEMU:
	 * qemu-system-x86_64 from PATH; fake: none). */
	const char *vmm_binary;
	const char *vsockd; /* NULL: husk_default_path("vsockd") */
	unsigned vcpus;      /* 0: 1; at most the host's online CPUs */
	unsigned memory_mib; /* 0: 256; at most the host's MemTotal */
	enum husk_accel accel;
	enum husk_transport transport;
	const struct husk_disk *disks;
	size_t n_disks;
	bool debug_console;       /* husk.debug_console=1: a shell on port 1026 */
	int log_level;            /* husk.log_level; 0: agent default */
	unsigned boot_timeout_ms; /* 0: 60 s with KVM, 120 s with TCG */
	bool die_with_parent;     /* the VMM and husk-vsockd get SIGKILL if we die */
	/* Slots for disks added later (husk_vm_add_disk), at most
	 * HUSK_HOTPLUG_MAX. 0: none, which boots fastest. */
	unsigned hotplug_slots;
	/* Let the host's KSM merge this VM's memory (mem-merge, and
	 * PR_SET_MEMORY_MERGE on the VMM, which Linux keeps across exec from
	 * 6.7: an older host is refused). Off by default: it
	 * costs ksmd's CPU, and merged pages let one VM time another's memory
	 * contents. Guest RAM shared with husk-vsockd is a memfd, which KSM
	 * does not merge (docs/configuration.md). */
	bool merge_memory;
	/* TCG only (ignored with KVM): the translation cache in MiB, 1 to
	 * HUSK_TCG_CACHE_MAX; 0: 16. A small cache saves host memory and
	 * costs retranslation, which is cheap on a host but not where
	 * translating itself is slow (TCG under TCG); QEMU's own default is
	 * the smaller of 1 GiB and an eighth of the host's memory
	 * (docs/configuration.md). */
	unsigned tcg_cache_mib;
	/* husk_sandbox_start takes a ready VM of this shape from huskd's
	 * socket at `pool` (NULL: husk_default_pool_socket(state_dir); "off":
	 * never)
	 * and hot-adds the disks to it. No pool there, none of this shape
	 * ready, or a pool that fails: the VM boots cold, as without one.
	 * Ignored by husk_vm_start. A pooled VM keeps the pool's name: a
	 * caller that needs `name` sets pool to "off". docs/pool.md. */
	const char *pool;
};

#define HUSK_HOTPLUG_MAX 16
/* QEMU's largest translation cache on x86-64 (it caps larger values). */
#define HUSK_TCG_CACHE_MAX 2048

struct husk_vm;

/* Creates <state_dir>/<name>/, starts the VM and waits for the agent. On
 * failure nothing is left: no process, socket or directory; the error
 * carries the tail of the guest console, and the VMM's own words, when
 * the VMM failed. */
int husk_vm_start(const struct husk_vm_config *cfg, struct husk_vm **out, struct husk_err *err);

/* Attaches to a VM started by another process (huskctl console, ping,
 * exec). It cannot stop it; husk_vm_free() only forgets it. */
int husk_vm_open(const char *state_dir, const char *name, struct husk_vm **out,
		 struct husk_err *err);

/* Stops the VM: DestroySandbox (the guest powers off), the VMM's own stop
 * after `grace_ms` (QEMU: QMP quit), SIGKILL after another bounded wait;
 * reaps the VMM and husk-vsockd and removes the state directory.
 * Idempotent. */
int husk_vm_stop(struct husk_vm *vm, unsigned grace_ms, struct husk_err *err);

/* Removes <state_dir>/<name>/ of a VM nobody runs any more (its lock is
 * free): what an owner killed mid-boot left. -EBUSY while an owner holds
 * it; 0 when there is nothing (left) to remove. */
int husk_vm_remove_stale(const char *state_dir, const char *name, struct husk_err *err);

/* Stops the VM if this process started it, then frees. NULL is ignored. */
void husk_vm_free(struct husk_vm *vm);

/* Hot-adds a disk to a VM started with hotplug_slots, on a free slot
 * (QEMU: a virtio-blk-pci device on a PCIe root port). Returns when the
 * VMM has added it; the guest sees it shortly after (the agent waits for
 * the serial to appear). -ENOSPC when every slot is taken, -EEXIST for a
 * serial in use. */
int husk_vm_add_disk(struct husk_vm *vm, const struct husk_disk *disk, struct husk_err *err);

/* Removes the disk with `serial` (unmount it in the guest first). QEMU:
 * device_del (the PCIe attention button), then the agent's ReleaseDisk,
 * which powers the slot off at once, so that QEMU reports the device gone
 * within the call. Where the agent cannot (an older agent, a disk still
 * mounted), Linux's pciehp does it after its 5 s cancel window. Waits up to
 * wait_ms for the device to be gone (0: does not wait for the fallback;
 * -ETIMEDOUT when it did not come in time, the removal still goes on); its
 * slot is free again once it is. -ENOENT for an unknown serial. */
int husk_vm_remove_disk(struct husk_vm *vm, const char *serial, unsigned wait_ms,
			struct husk_err *err);

/* A host directory the guest sees over virtio-fs (docs/configuration.md,
 * "Host directories"). */
struct husk_share {
	const char *dir;       /* an existing host directory */
	const char *tag;       /* the guest's name for it: 1..36 of [A-Za-z0-9._-] */
	const char *virtiofsd; /* NULL: $HUSK_VIRTIOFSD, else /usr/lib/qemu/virtiofsd */
};

/* Shares share->dir with the guest: starts a virtiofsd for it (the VM's:
 * it ends with the VM, and dies with this process) and hot-adds a virtio-fs
 * device on a free slot (QEMU: vhost-user-fs-pci on a PCIe root port). The
 * guest mounts it by tag (CreateBundle's shared_fs). virtiofsd sees a
 * slave copy of the host's mounts: a mount made under dir later reaches the
 * guest only when dir is a mount with shared propagation (MS_SHARED).
 * -EEXIST: the tag is in use; -ENOSPC: no free slot. */
int husk_vm_add_share(struct husk_vm *vm, const struct husk_share *share, struct husk_err *err);
/* Whether husk_vm_add_share added `tag` to this VM. */
bool husk_vm_has_share(const struct husk_vm *vm, const char *tag);
/* A pidfd, the VM's (do not close it), that turns readable when the
 * virtiofsd of share `tag` exits; -1 for no such share. A virtiofsd that
 * dies leaves the guest's requests on the share unanswered: the caller
 * should take the VM as lost. Same threading rule as husk_vm_add_share. */
int husk_vm_share_pidfd(const struct husk_vm *vm, const char *tag);

/* A network interface for the guest: a TAP device (the caller keeps its
 * fd; the VMM gets a copy) and the MAC the guest's NIC gets. */
struct husk_nic {
	int tap_fd;
	const char *mac; /* "0a:58:0a:58:00:05" */
};
/* Hot-adds a NIC on a free slot (QEMU: the fd passed over QMP with getfd,
 * netdev_add tap, a virtio-net-pci on a PCIe root port). The guest sees
 * it shortly after; Sandbox.SetupNetwork waits for it by MAC. -ENOSPC: no
 * free slot; -EEXIST: the MAC is in use. */
int husk_vm_add_nic(struct husk_vm *vm, const struct husk_nic *nic, struct husk_err *err);

/* A connected stream to guest `port`: AF_VSOCK with vhost-vsock, the
 * hybrid socket's CONNECT handshake, or (unix) the agent's socket for the
 * port. Retries refused connections until
 * `timeout_ms` passes (0: one attempt). -ECONNREFUSED when nobody listens. */
int husk_vm_connect(struct husk_vm *vm, uint32_t port, unsigned timeout_ms,
		    struct husk_err *err);

/* The same without blocking, for event loops: husk_vm_connect_start
 * returns at once with c->fd to poll for c->events; call
 * husk_vm_connect_step when it is ready, until it returns 1 (connected:
 * c->fd is the stream, now the caller's, nonblocking) or a negative errno
 * (the fd is closed). 0: wait for c->events again. No retries: for a port
 * the guest already listens on (a process's stdio). Calling it while another
 * thread changes the VM is allowed (see Threads, above). */
struct husk_vm_conn {
	int fd;
	short events; /* POLLIN or POLLOUT */
	/* private */
	int phase;
	uint32_t port;
	size_t len;
	char line[32];
};
int husk_vm_connect_start(struct husk_vm *vm, uint32_t port, struct husk_vm_conn *c,
			  struct husk_err *err);
int husk_vm_connect_step(struct husk_vm_conn *c, struct husk_err *err);
/* Gives up a connection under way (closes its fd). */
void husk_vm_connect_abort(struct husk_vm_conn *c);

/* A listening socket for guest-initiated connections to host `port`. */
int husk_vm_listen(struct husk_vm *vm, uint32_t port, struct husk_err *err);

/* A pidfd for the VMM's process that turns readable when it exits, or -1
 * for a VM this process did not start (or a backend that runs none). Owned
 * by the VM. */
int husk_vm_pidfd(const struct husk_vm *vm);
/* The agent's log stream (guest port 1025 to host), one
 * "husk-agent: <level>: text" line each, or -1 when the agent did not connect. Owned by the VM; read it
 * or leave it: the agent drops lines rather than wait for us. */
int husk_vm_log_fd(const struct husk_vm *vm);
/* Non-zero once the VMM has exited (reaped); *status gets its wait status. */
bool husk_vm_exited(struct husk_vm *vm, int *status);

const char *husk_vm_name(const struct husk_vm *vm);
const char *husk_vm_dir(const struct husk_vm *vm);
const char *husk_vm_console_log(const struct husk_vm *vm);
/* The backend, as the config names it and vm.json records it ("qemu"),
 * and its program as messages name it ("QEMU"). */
const char *husk_vm_vmm(const struct husk_vm *vm);
const char *husk_vm_vmm_program(const struct husk_vm *vm);
enum husk_accel husk_vm_accel(const struct husk_vm *vm);
enum husk_transport husk_vm_transport(const struct husk_vm *vm);
/* The guest's vsock CID: the kernel-allocated one with vhost-vsock, 3 with
 * husk-vsockd (each VM has its own). */
uint32_t husk_vm_cid(const struct husk_vm *vm);
pid_t husk_vm_vmm_pid(const struct husk_vm *vm); /* 0 when it runs none */
pid_t husk_vm_vsockd_pid(const struct husk_vm *vm);
/* Nanoseconds from the VMM's launch to the first successful Check. */
uint64_t husk_vm_boot_ns(const struct husk_vm *vm);
/* The last `max` bytes of the console log, NUL-terminated, into buf. */
void husk_vm_console_tail(const struct husk_vm *vm, char *buf, size_t max);

/* ---- agent client ------------------------------------------------------------- */

struct husk_agent;

/* A ttrpc connection to the agent (port 1024). Calls are synchronous; each
 * fails with -ETIMEDOUT after `timeout_ms` (0: none) and with -EPIPE when
 * the VM goes away. */
int husk_agent_open(struct husk_vm *vm, unsigned timeout_ms, struct husk_agent **out,
		    struct husk_err *err);
void husk_agent_close(struct husk_agent *a);
/* The connected fd (to poll for hang-ups next to stdio). */
int husk_agent_fd(const struct husk_agent *a);

/* Any method of either service with protobuf-c messages; *resp (when
 * resp_desc is given) is freed with protobuf_c_message_free_unpacked().
 * ttrpc status codes map to errno: NOT_FOUND -ENOENT, FAILED_PRECONDITION
 * -EBUSY, INVALID_ARGUMENT -EINVAL, ALREADY_EXISTS -EEXIST, DEADLINE
 * -ETIMEDOUT, UNAVAILABLE -EPIPE, others -EIO. */
struct ProtobufCMessage;
struct ProtobufCMessageDescriptor;
int husk_agent_call(struct husk_agent *a, const char *service, const char *method,
		    const struct ProtobufCMessage *req,
		    const struct ProtobufCMessageDescriptor *resp_desc,
		    struct ProtobufCMessage **resp, struct husk_err *err);

struct husk_guest_details {
	char kernel_release[65];
	char agent_version[64];
	uint64_t mem_total_bytes;
	uint32_t cpus;
	uint64_t agent_rss_bytes; /* VmRSS of the agent (PID 1) */
	uint32_t agent_fds;       /* its open file descriptors */
	uint32_t containers;      /* containers it tracks */
};

int husk_agent_check(struct husk_agent *a, char *version, size_t len, struct husk_err *err);
int husk_agent_guest_details(struct husk_agent *a, struct husk_guest_details *out,
			     struct husk_err *err);
int husk_agent_create_sandbox(struct husk_agent *a, const char *hostname, struct husk_err *err);
/* The guest-wide setup: hostname, /etc/resolv.conf contents, sysctls as
 * "key=value" (e.g. "kernel.pid_max=65536"); the guest clock is set from
 * ours. Any field may be NULL / 0. */
struct husk_sandbox_opts {
	const char *hostname;
	const char *resolv_conf;
	char *const *sysctls;
	size_t n_sysctls;
};
int husk_agent_create_sandbox_opts(struct husk_agent *a, const struct husk_sandbox_opts *o,
				   struct husk_err *err);
/* Mounts the disk with `serial` (erofs) plus a tmpfs overlay as the
 * container's rootfs; *bundle (malloc'd) goes to husk_task_create. */
int husk_agent_create_bundle(struct husk_agent *a, const char *id, const char *spec_json,
			     const char *rootfs_serial, char **bundle, struct husk_err *err);
/* Extra disks for a container: the disk with `serial` is mounted in the
 * guest (fstype "ext4", "erofs", ...) and bound at `target` in the
 * container. At most 16. */
struct husk_block_mount {
	const char *serial;
	const char *fstype;
	const char *target;
	bool readonly;
};
int husk_agent_create_bundle_mounts(struct husk_agent *a, const char *id, const char *spec_json,
				    const char *rootfs_serial, const struct husk_block_mount *mounts,
				    size_t n_mounts, char **bundle, struct husk_err *err);

/* Sandbox.CreateBundle's inputs. */
struct husk_bundle_spec {
	const char *id;            /* the container's id; NULL in husk_sandbox_start: the VM's name */
	const char *spec_json;     /* config.json the guest gets */
	const char *rootfs_serial; /* NULL in husk_sandbox_add_container: the disk's */
	const struct husk_block_mount *mounts;
	size_t n_mounts;
	/* The tmpfs upper layer of the rootfs overlay. 0: the agent's default,
	 * half of the guest's memory (docs/protocol.md). */
	uint64_t overlay_bytes;
	/* The host directory holding the spec's host mounts (relative bind
	 * sources name paths in it): husk_sandbox_start and
	 * husk_sandbox_add_container share it first (husk_vm_add_share)
	 * unless the VM has its tag already. NULL: none. */
	const struct husk_share *share;
};
int husk_agent_create_bundle_spec(struct husk_agent *a, const struct husk_bundle_spec *b,
				  char **bundle, struct husk_err *err);
int husk_agent_destroy(struct husk_agent *a, struct husk_err *err);
/* Sandbox.SetupNetwork: the pod's interfaces and routes in the guest
 * (docs/protocol.md). Strings are as the proto says. */
struct husk_net_addr {
	const char *address; /* "10.88.0.5", "fd00::5" */
	unsigned prefix_len;
};
struct husk_net_if {
	const char *name; /* in the guest: "eth0" */
	const char *mac;  /* "0a:58:0a:58:00:05": the NIC the VM has */
	unsigned mtu;     /* 0: leave it */
	const struct husk_net_addr *addrs;
	size_t n_addrs;
};
struct husk_net_route {
	const char *destination; /* NULL, "" or "default"; "10.88.0.0/16" */
	const char *gateway;     /* NULL or "": on-link */
	const char *device;      /* a husk_net_if's name; NULL: by the gateway */
};
struct husk_net_config {
	const struct husk_net_if *ifs;
	size_t n_ifs;
	const struct husk_net_route *routes;
	size_t n_routes;
};
int husk_agent_setup_network(struct husk_agent *a, const struct husk_net_config *net,
			     struct husk_err *err);
/* Sandbox.ReleaseDisk: the guest powers off the hotplug slot of the disk
 * with `serial` (husk_vm_remove_disk calls it). -ENOENT: no such disk;
 * -EBUSY: mounted, or not on a hotplug slot. */
int husk_agent_release_disk(struct husk_agent *a, const char *serial, struct husk_err *err);

/* The filesystem on a disk image from its superblock: "erofs", "ext4"
 * (ext2/3/4 all mount as ext4), or NULL with `err` naming the file. */
const char *husk_image_fstype(const char *path, struct husk_err *err);

/* stdio ports: 0 means "none". With a terminal, stderr is unused. */
struct husk_stdio {
	uint32_t in, out, err;
	bool terminal;
};

int husk_task_create(struct husk_agent *a, const char *id, const char *bundle,
		     const struct husk_stdio *io, uint32_t *pid, struct husk_err *err);
/* exec_id NULL or "" means the container's init process. */
int husk_task_start(struct husk_agent *a, const char *id, const char *exec_id, uint32_t *pid,
		    struct husk_err *err);
int husk_task_exec(struct husk_agent *a, const char *id, const char *exec_id,
		   const char *process_json, const struct husk_stdio *io, struct husk_err *err);
/* Blocks until the process exits: *status is its exit code (128+signal). */
int husk_task_wait(struct husk_agent *a, const char *id, const char *exec_id, uint32_t *status,
		   struct husk_err *err);
int husk_task_kill(struct husk_agent *a, const char *id, const char *exec_id, int sig, bool all,
		   struct husk_err *err);
/* Changes a running container's cgroup limits: `resources_json` is an OCI
 * linux.resources object, e.g. {"memory":{"limit":67108864}}. */
int husk_task_update(struct husk_agent *a, const char *id, const char *resources_json,
		     struct husk_err *err);
int husk_task_pause(struct husk_agent *a, const char *id, struct husk_err *err);
int husk_task_resume(struct husk_agent *a, const char *id, struct husk_err *err);
int husk_task_resize_pty(struct husk_agent *a, const char *id, const char *exec_id,
			 uint32_t width, uint32_t height, struct husk_err *err);
int husk_task_close_io(struct husk_agent *a, const char *id, const char *exec_id,
		       struct husk_err *err);
/* "created", "running", "stopped", "paused"; *status when stopped. */
int husk_task_state(struct husk_agent *a, const char *id, const char *exec_id, char *state,
		    size_t len, uint32_t *pid, uint32_t *status, struct husk_err *err);
int husk_task_pids(struct husk_agent *a, const char *id, uint32_t *pids, size_t max,
		   size_t *n, struct husk_err *err);

struct husk_stats {
	uint64_t cpu_usage_usec, cpu_user_usec, cpu_system_usec;
	uint64_t memory_usage, memory_limit;
	uint64_t pids_current, pids_limit;
	uint64_t oom_kills; /* memory.events oom_kill */
	uint64_t io_read_bytes, io_write_bytes;
};
int husk_task_stats(struct husk_agent *a, const char *id, struct husk_stats *out,
		    struct husk_err *err);
int husk_task_delete(struct husk_agent *a, const char *id, const char *exec_id,
		     uint32_t *status, struct husk_err *err);

/* ---- the boot chain ------------------------------------------------------------ */

/* Cold start: husk_vm_start (cfg->disks hold the rootfs), CreateSandbox(sb;
 * NULL: defaults), CreateBundle(b). *bundle (malloc'd) goes to
 * husk_task_create. On failure the VM is stopped and nothing is left; err
 * carries the guest console's tail when the guest died. */
int husk_sandbox_start(const struct husk_vm_config *cfg, const struct husk_sandbox_opts *sb,
		       const struct husk_bundle_spec *b, struct husk_vm **vm, char **bundle,
		       struct husk_err *err);

/* A container joining a running VM: hot-adds `rootfs` (husk_vm_add_disk),
 * then CreateBundle(b) on it (b->rootfs_serial NULL or rootfs->serial). On
 * failure the disk is removed again. May run on a worker thread (see the
 * thread rules at the top). */
int husk_sandbox_add_container(struct husk_vm *vm, const struct husk_disk *rootfs,
			       const struct husk_bundle_spec *b, char **bundle,
			       struct husk_err *err);

/* ---- the pool of ready VMs (huskd; docs/pool.md) ----------------------------- */

/* huskd's socket: $HUSK_POOL_SOCKET, else <state_dir>/huskd.sock (NULL:
 * husk_default_state_dir()). The clients' default and huskd's. */
const char *husk_default_pool_socket(const char *state_dir, char *buf, size_t len);

/* Whether the VM came from a pool (husk_pool_take), not a cold boot. */
bool husk_vm_pooled(const struct husk_vm *vm);

/* What makes two VMs interchangeable: the VMM and its program, kernel and
 * initrd (path and file identity, so a rebuilt kernel is another shape),
 * husk-vsockd, vCPUs, memory, accelerator and transport (AUTO resolved),
 * the command line, debug console, log level, KSM and TCG cache. Not the
 * name, state directory, disks, hotplug slots (*slots: a pool VM serves a
 * request for as many or fewer) or timeouts. `key` gets a printable string
 * (at most HUSK_POOL_KEY_MAX bytes with its NUL). */
#define HUSK_POOL_KEY_MAX 2048
int husk_pool_shape(const struct husk_vm_config *cfg, char *key, size_t len, unsigned *slots,
		    struct husk_err *err);

/* Takes a ready VM of cfg's shape with at least `slots` hotplug slots from
 * huskd at `socket`. The VM is then the caller's, as if it had started it
 * (husk_vm_stop, husk_vm_free; its processes are not the caller's
 * children): when the caller exits without stopping it, huskd's keeper of
 * it kills it and removes its directory. -ENOENT / -ECONNREFUSED: no huskd
 * there; -EAGAIN: none of this shape ready; -ENOMSG: huskd has no such
 * shape. */
int husk_pool_take(const char *socket, const struct husk_vm_config *cfg, unsigned slots,
		   struct husk_vm **out, struct husk_err *err);

/* The program the warm-up image holds, at its root: any static program
 * that exits 0 at once with --help (huskd uses husk-vsockd). */
#define HUSK_POOL_WARM_PROGRAM "warm-up"

/* huskd's side, run in a child process of its own per VM (the keeper):
 * boots cfg (die_with_parent is forced: the VM's processes are the
 * keeper's and die with it); with `warm_image` (an erofs image holding
 * /HUSK_POOL_WARM_PROGRAM; NULL: none) runs a throwaway container from it,
 * so that the guest has translated (TCG) and cached what a container needs
 * before a client waits for it; sends the VM over `report` (a
 * SOCK_SEQPACKET socket; huskd relays the message with `lifeline`'s peer to
 * the client that takes the VM) or an error message, then stays until
 * `lifeline` hangs up: then it kills what is left of the VM and removes its
 * directory. Returns 0 when the VM was sent and has ended; the caller
 * exits. */
int husk_pool_keep(const struct husk_vm_config *cfg, const char *warm_image, int report,
		   int lifeline, struct husk_err *err);

/* ---- images --------------------------------------------------------------------- */

/* The directory erofs images are cached in: $HUSK_IMAGE_CACHE, else
 * /var/cache/husk/images for root, else $XDG_CACHE_HOME/husk/images
 * (~/.cache/husk/images). */
const char *husk_default_image_cache(char *buf, size_t len);

/* Returns (malloc'd, in *image) the path of an erofs image of `rootfs_dir`
 * in `cache_dir` (NULL: the default), building it with mkfs.erofs when no
 * image of the same content identity exists. The identity hashes every
 * entry's path, type, mode, owner, size, mtime, device number and link
 * target, so an unchanged tree is converted once. Concurrent callers build
 * an image once (flock); a failed build leaves no partial file. */
int husk_image_from_dir(const char *cache_dir, const char *rootfs_dir, char **image,
			struct husk_err *err);

/* Like husk_image_from_dir, and *hold_fd (may be NULL: then like it) gets
 * the image open read-only with a shared flock: while any such fd is open,
 * husk_image_cache_prune() leaves the image alone. Keep it until the VM
 * that uses the image has stopped (after husk_vm_stop), then pass it to
 * husk_image_release(). The identity leaves out what differs between
 * copies of a tree (inode numbers, st_dev), and the root directory's mtime
 * when it is not older than every other entry's (mkfs.erofs is told to
 * clamp it), so every overlay mount of one containerd snapshot maps to one
 * image. After a build it prunes the cache to husk_image_cache_max() (best
 * effort; never an image in use). */
int husk_image_from_dir_hold(const char *cache_dir, const char *rootfs_dir, char **image,
			     int *hold_fd, struct husk_err *err);

/* A hold on an existing image file (e.g. `huskctl run --image` of a cached
 * one): an fd as above, or a negative errno. */
int husk_image_hold(const char *image, struct husk_err *err);
/* Records the end of the use as the image's last use (atime) and closes
 * the hold. A negative fd is ignored. */
void husk_image_release(int hold_fd);

#define HUSK_IMAGE_CACHE_MAX_DEFAULT (10ull << 30)

/* The cache budget from $HUSK_IMAGE_CACHE_MAX: unset or empty gives
 * HUSK_IMAGE_CACHE_MAX_DEFAULT; "0" or "off" gives 0: no automatic prune. */
int husk_image_cache_max(uint64_t *max, struct husk_err *err);

struct husk_image_info {
	char name[72];    /* <sha256>.erofs, in the cache directory */
	uint64_t bytes;   /* disk usage (allocated blocks) */
	int64_t last_use; /* atime: last hit or end of a hold, s since the epoch */
	int64_t built;    /* mtime */
	bool in_use;      /* held (flock), or open in QEMU (its record locks) */
};
/* The images in `cache_dir` (NULL: the default), least recently used first;
 * *out is malloc'd (free it). A cache that does not exist yet is empty. */
int husk_image_cache_list(const char *cache_dir, struct husk_image_info **out, size_t *n,
			  struct husk_err *err);

struct husk_image_prune {
	size_t removed, kept, busy; /* busy: in use, kept though over budget */
	uint64_t removed_bytes, kept_bytes;
};
/* Removes least recently used images until the cache holds at most
 * `max_bytes` (0: every image not in use), never one in use, and what
 * killed builders left behind. One prune runs at a time per cache. */
int husk_image_cache_prune(const char *cache_dir, uint64_t max_bytes, struct husk_image_prune *res,
			   struct husk_err *err);

#endif
