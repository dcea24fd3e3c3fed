/* containerd-shim-husk-v2: containerd's runtime v2 shim for husk. One shim
 * process per VM: per container for plain containerd, per pod when the CRI
 * annotations say so (the pod's later containers join the sandbox's VM,
 * their rootfs disks hot-added). It boots the VM with libhusk and forwards
 * containerd's Task API to the guest agent, which speaks the same API.
 *
 * Laid out as containerd-shim-runc-v2 is (docs/architecture.md):
 *   service.c   the Task handlers: look up, check the state, forward, publish
 *   process.c   the container and process table and the process states
 *   vm.c        the VM's life: boot, a pod's container joining, leaving,
 *               teardown, the VM lost
 *   rootfs.c    containerd's rootfs mounts made into an image
 *   mounts.c    host bind mounts through the VM's shared directory
 *   network.c   a pod's CNI network made the VM's (TAPs, tc redirects)
 *   proc_io.c   a process's stdio between containerd and the guest
 *   agent_log.c, agent_events.c  what the agent says besides replies
 *   publish.c   events to containerd, queued and retried
 *   worker.c    the thread that runs what would block the loop
 *   config.c, pod.c, log.c, main.c */
#ifndef HUSK_SHIM_H
#define HUSK_SHIM_H

#include <protobuf-c/protobuf-c.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "google/protobuf/any.pb-c.h"
#include "husk.h"
#include "log.h"
#include "network.h"
#include "portfwd.h"
#include "process.h"
#include "publish.h"
#include "ttrpc/client.h"
#include "ttrpc/loop.h"
#include "ttrpc/server.h"
#include "worker.h"

#define SHIM_TASK_SERVICE "containerd.task.v2.Task"
#define SHIM_SANDBOX_SERVICE "husk.sandbox.v1.Sandbox"
/* Exit status of processes whose VM went away under them (QEMU killed,
 * guest panic, agent connection lost): non-zero and unlike a signal. */
#define SHIM_VM_LOST_STATUS 255
/* <bundle>/husk-vm: the VM's state directory, for `delete`. */
#define SHIM_VM_RECORD "husk-vm"
/* Hot-plug slots of a pod sandbox's VM: the containers that can join it
 * at once. */
#define SHIM_POD_SLOTS 8

struct shim_opts {
	const char *namespace_;
	const char *address;	    /* containerd's gRPC socket */
	const char *ttrpc_address; /* $TTRPC_ADDRESS: containerd's event sink */
	const char *id;
	const char *group; /* the pod's sandbox id: whose shim serves us (NULL: id) */
	const char *bundle;
	const char *socket; /* our own socket path (no unix://) */
	bool debug;
	/* The runtime options containerd wrote to `start`'s stdin (NULL:
	 * none); CreateTaskRequest.options, when set, wins. */
	Google__Protobuf__Any *start_options;
};

/* config.c: the VM settings (docs/config-file.md). 0 / NULL: libhusk's
 * default. */
struct shim_config {
	char *kernel, *initrd, *vmm, *vmm_binary, *vsockd, *cmdline_extra, *state_dir,
		*image_cache, *pool;
	unsigned vcpus, memory_mib, log_level, boot_timeout_ms;
	uint64_t overlay_bytes; /* the rootfs overlay's tmpfs upper layer */
	enum husk_accel accel;
	enum husk_transport transport;
	bool debug_console;
	bool merge_memory;
	unsigned tcg_cache_mib;
	char sources[1024]; /* the files read, for the log: "" when none */
	char warning[256];  /* something ignored, for the log: "" when none */
};

/* Loads the config file ($HUSK_CONFIG or /etc/husk/config.json), then the
 * file or JSON body named by `options` (runtimeoptions.v1.Options; NULL:
 * none) over it. An unknown key or a wrong type is an error naming the
 * file and the key. */
int shim_config_load(struct shim_config *c, const Google__Protobuf__Any *options,
		     struct husk_err *err);
void shim_config_free(struct shim_config *c);
/* The config's state_dir, else libhusk's default. */
const char *shim_config_state_dir(const struct shim_config *c, char *buf, size_t len);

/* pod.c: what the CRI annotations make of a container. Reads the role
 * from a config.json text; *sandbox_id gets the pod's sandbox id for
 * SANDBOX and CONTAINER. */
int shim_pod_role(const char *spec_json, enum shim_pod_role *role, char *sandbox_id, size_t len,
		  struct husk_err *err);
/* The same from a config.json file (the bundle's, at `start`). */
int shim_pod_role_file(const char *path, enum shim_pod_role *role, char *sandbox_id, size_t len,
		       struct husk_err *err);
/* The spec to run in the guest: namespace paths name host paths, which
 * mean nothing there. A joining container's network, ipc, uts and pid
 * namespaces with a path become the sandbox's (/proc/<sandbox_pid>/ns/..,
 * a guest pid); a sandbox's network namespace with a path is dropped
 * (the VM's); any other path is dropped (a namespace of its own). */
char *shim_pod_rewrite_spec(const char *spec_json, enum shim_pod_role role, uint32_t sandbox_pid,
			    struct husk_err *err);
/* The host path of the spec's network namespace (CNI's, for a pod's
 * sandbox) into out: 1; 0 with "" for a namespace of its own without a
 * path; -1 with "" for none at all (the host's network). A sandbox with
 * one runs in the VM's own network namespace (the rewrite drops it),
 * where the pod's NICs are (network.h). */
int shim_pod_netns(const char *spec_json, char *out, size_t len);

/* vm.c: the VM's life, as the event loop sees it. */
enum shim_vm_state {
	SHIM_VM_NONE,	  /* no VM yet */
	SHIM_VM_BOOTING,  /* the worker is booting it */
	SHIM_VM_RUNNING,  /* the agent answers */
	SHIM_VM_LOST,	  /* QEMU, husk-vsockd or the agent went away */
	SHIM_VM_STOPPING, /* the worker is stopping it */
	SHIM_VM_STOPPED,  /* gone; its owner was deleted */
};

struct shim_vm {
	enum shim_vm_state state;
	struct husk_vm *vm;
	struct ctr *owner;	     /* the container that booted it (a reference) */
	struct ttrpc_client *agent; /* Task and Sandbox calls */
	pid_t vmm_pid;		     /* what containerd is told as every task's pid */
	struct ev_io *vmm_io, *vsockd_io;
	struct ev_io *virtiofsd_io; /* the share's virtiofsd, once there is one */
	int vsockd_pidfd;
	unsigned disks_added; /* names the next hot-added disk */
	/* mounts.c: the shared directory of the containers' host mounts */
	char share_dir[PATH_MAX];
	bool share_made;
	int share_lock_fd; /* flock on <share_dir>.lock while it exists; -1 */
	/* network.c: the pod's network (CNI's namespace), attached on the
	 * worker at boot, detached there after the VM stopped */
	char netns[PATH_MAX];
	struct shim_net net;
	bool net_attached;
	/* portfwd.c: kubectl port-forward from that namespace into the VM */
	struct shim_portfwd pf;
	struct ev_deferred teardown;
	struct ev_timer *agent_gone_timer; /* the agent closed; why, soon */
	char agent_gone_why[96];
	/* agent_log.c */
	struct ev_io *log_io;
	size_t log_len;
	char log_buf[4096];
	/* agent_events.c */
	uint64_t event_seq;
	bool events_polling;
};

struct shim {
	struct shim_opts opt;
	struct ev_loop *loop;
	struct ttrpc_server *server;
	struct publisher *pub;
	struct shim_worker *worker;
	bool shutting_down;
	bool exit_when_idle; /* Shutdown came: exit once no container is left */
	struct ev_deferred stop;
	struct ev_timer *orphan_timer; /* no container left, no Shutdown yet */
	struct shim_config cfg;
	bool cfg_loaded;
	struct shim_vm vm;
	struct ctr *ctrs; /* the VM's owner first */
};

/* service.c */
int shim_service_register(struct shim *s, struct husk_err *err);
/* Queues `event` for containerd. */
void shim_publish(struct shim *s, const char *topic, const ProtobufCMessage *event);
/* Called whenever a container goes: with none left, stops the loop if a
 * Shutdown asked for it, else after SHIM_ORPHAN_EXIT_NS without a new
 * Create (containerd may have lost track of this shim). */
void shim_maybe_exit(struct shim *s);
#define SHIM_ORPHAN_EXIT_NS (10ull * 1000000000ull)

/* The pid containerd is told for process `p`: the VMM's, a host process
 * of this task's VM (a guest pid would name an unrelated host process);
 * 0 before the VM runs. docs/containerd.md. */
uint32_t shim_reported_pid(const struct proc *p);

/* names.c: the VM's name for container `id` of namespace `ns` (unix
 * socket paths in the VM's state directory are limited to 107 bytes). */
void shim_vm_name(const char *ns, const char *id, char *out, size_t len);
/* <hash of containerd address, namespace, id>.sock; a pod's containers
 * use their sandbox's id, so that they reach the shim that runs its VM. */
void shim_socket_name(const struct shim_opts *o, char *out, size_t len);

#endif
