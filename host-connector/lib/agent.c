/* Typed, synchronous calls to the guest agent's two ttrpc services. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "github.com/containerd/cgroups/v2/stats/metrics.pb-c.h"
#include "github.com/containerd/containerd/runtime/v2/task/shim.pb-c.h"
#include "husk/sandbox.pb-c.h"
#include "internal.h"
#include "ttrpc/client.h"

/* The generated structs name fields stdin/stdout/stderr; stdio.h's macros
 * (musl) would rewrite them. */
#undef stdin
#undef stdout
#undef stderr

#define TASK "containerd.task.v2.Task"
#define SANDBOX "husk.sandbox.v1.Sandbox"

struct husk_agent {
	struct ev_loop *loop;
	struct ttrpc_client *client;
	int fd;
	unsigned timeout_ms;
};

int husk_agent_open(struct husk_vm *vm, unsigned timeout_ms, struct husk_agent **out,
		    struct husk_err *err)
{
	struct husk_agent *a = calloc(1, sizeof(*a));
	if (!a)
		return husk_err_set(err, -ENOMEM, "agent client");
	a->timeout_ms = timeout_ms;
	int r = ev_loop_new(&a->loop, err);
	if (r < 0)
		goto fail;
	int fd = husk_vm_connect(vm, HUSK_AGENT_PORT, 0, err);
	if (fd < 0) {
		r = fd;
		goto fail;
	}
	a->fd = fd;
	if ((r = ttrpc_client_new(a->loop, fd, &a->client, err)) < 0)
		goto fail;
	*out = a;
	return 0;
fail:
	husk_agent_close(a);
	return husk_err_wrap(err, "agent of VM %s", husk_vm_name(vm));
}

void husk_agent_close(struct husk_agent *a)
{
	if (!a)
		return;
	ttrpc_client_free(a->client);
	ev_loop_free(a->loop);
	free(a);
}

int husk_agent_fd(const struct husk_agent *a)
{
	return a->fd;
}

static int call_timeout(struct husk_agent *a, const char *service, const char *method,
			const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
			ProtobufCMessage **resp, unsigned timeout_ms, struct husk_err *err)
{
	struct ttrpc_call_opts opts = { .timeout_ns = (uint64_t)timeout_ms * 1000000u };
	struct ttrpc_status st = { 0 };
	ProtobufCMessage *r = NULL;
	int code = ttrpc_client_call(a->client, service, method, req, resp_desc, &opts, &r, &st);
	if (code != TTRPC_OK) {
		const char *svc = strrchr(service, '.');
		if (code == TTRPC_UNAVAILABLE)
			return husk_err_set(err, -EPIPE, "%s.%s: the VM's agent connection is gone%s%s",
					    svc ? svc + 1 : service, method, st.message[0] ? ": " : "",
					    st.message);
		return husk_err_set(err, ttrpc_errno_from_code(code), "%s.%s: %s: %s", svc ? svc + 1 : service,
				    method, ttrpc_code_name(code), st.message);
	}
	if (resp)
		*resp = r;
	else if (r)
		protobuf_c_message_free_unpacked(r, NULL);
	return 0;
}

int husk_agent_call(struct husk_agent *a, const char *service, const char *method,
		    const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
		    ProtobufCMessage **resp, struct husk_err *err)
{
	/* Wait and GetEvents block by design: no deadline of ours. */
	bool blocking = strcmp(method, "Wait") == 0 || strcmp(method, "GetEvents") == 0;
	return call_timeout(a, service, method, req, resp_desc, resp, blocking ? 0 : a->timeout_ms,
			    err);
}

#define CALL(svc, m, req, desc, resp)                                                             \
	husk_agent_call(a, svc, m, &(req).base, desc, (ProtobufCMessage **)(resp), err)

int husk_agent_check(struct husk_agent *a, char *version, size_t len, struct husk_err *err)
{
	Husk__Sandbox__V1__CheckRequest req = HUSK__SANDBOX__V1__CHECK_REQUEST__INIT;
	Husk__Sandbox__V1__CheckResponse *resp = NULL;
	int r = CALL(SANDBOX, "Check", req, &husk__sandbox__v1__check_response__descriptor, &resp);
	if (r == 0) {
		if (version)
			snprintf(version, len, "%s", resp->version);
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	}
	return r;
}

int husk_agent_guest_details(struct husk_agent *a, struct husk_guest_details *out,
			     struct husk_err *err)
{
	Husk__Sandbox__V1__GuestDetailsRequest req = HUSK__SANDBOX__V1__GUEST_DETAILS_REQUEST__INIT;
	Husk__Sandbox__V1__GuestDetailsResponse *resp = NULL;
	int r = CALL(SANDBOX, "GuestDetails", req,
		     &husk__sandbox__v1__guest_details_response__descriptor, &resp);
	if (r < 0)
		return r;
	memset(out, 0, sizeof(*out));
	snprintf(out->kernel_release, sizeof(out->kernel_release), "%s", resp->kernel_release);
	snprintf(out->agent_version, sizeof(out->agent_version), "%s", resp->agent_version);
	out->mem_total_bytes = resp->mem_total_bytes;
	out->cpus = resp->cpus;
	out->agent_rss_bytes = resp->agent_rss_bytes;
	out->agent_fds = resp->agent_fds;
	out->containers = resp->containers;
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return 0;
}

int husk_agent_create_sandbox(struct husk_agent *a, const char *hostname, struct husk_err *err)
{
	struct husk_sandbox_opts o = { .hostname = hostname };
	return husk_agent_create_sandbox_opts(a, &o, err);
}

#define MAX_SYSCTLS 64

int husk_agent_create_sandbox_opts(struct husk_agent *a, const struct husk_sandbox_opts *o,
				   struct husk_err *err)
{
	if (o->n_sysctls > MAX_SYSCTLS)
		return husk_err_set(err, -EINVAL, "%zu sysctls: at most %d", o->n_sysctls,
				    MAX_SYSCTLS);
	Husk__Sandbox__V1__CreateSandboxRequest req = HUSK__SANDBOX__V1__CREATE_SANDBOX_REQUEST__INIT;
	req.hostname = (char *)(o->hostname ? o->hostname : "");
	req.resolv_conf = (char *)(o->resolv_conf ? o->resolv_conf : "");
	Husk__Sandbox__V1__CreateSandboxRequest__SysctlsEntry ent[MAX_SYSCTLS], *entp[MAX_SYSCTLS];
	char keys[MAX_SYSCTLS][128];
	for (size_t i = 0; i < o->n_sysctls; i++) {
		const char *kv = o->sysctls[i], *eq = strchr(kv, '=');
		if (!eq || eq == kv || (size_t)(eq - kv) >= sizeof(keys[i]))
			return husk_err_set(err, -EINVAL, "sysctl \"%s\": want key=value", kv);
		memcpy(keys[i], kv, (size_t)(eq - kv));
		keys[i][eq - kv] = '\0';
		husk__sandbox__v1__create_sandbox_request__sysctls_entry__init(&ent[i]);
		ent[i].key = keys[i];
		ent[i].value = (char *)(eq + 1);
		entp[i] = &ent[i];
	}
	req.n_sysctls = o->n_sysctls;
	req.sysctls = entp;
	/* The guest has no RTC worth trusting under microvm: give it ours. */
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	ts.seconds = now.tv_sec;
	ts.nanos = (int32_t)now.tv_nsec;
	req.host_time = &ts;
	/* The guest kernel trusts neither the CPU's RNG nor a device it may
	 * not have: until it is seeded, its first read of randomness (json-c's
	 * hash seed, in CreateBundle) waits for jitter entropy, about a second
	 * under TCG. The agent credits these bytes to the pool. */
	uint8_t seed[64];
	if (getrandom(seed, sizeof(seed), 0) != (ssize_t)sizeof(seed))
		return husk_err_sys(err, -errno, "getrandom: entropy seed for the guest");
	req.entropy_seed.data = seed;
	req.entropy_seed.len = sizeof(seed);
	int r = CALL(SANDBOX, "CreateSandbox", req, NULL, NULL);
	explicit_bzero(seed, sizeof(seed));
	return r;
}

int husk_agent_create_bundle(struct husk_agent *a, const char *id, const char *spec_json,
			     const char *rootfs_serial, char **bundle, struct husk_err *err)
{
	return husk_agent_create_bundle_mounts(a, id, spec_json, rootfs_serial, NULL, 0, bundle,
					       err);
}

int husk_agent_create_bundle_mounts(struct husk_agent *a, const char *id, const char *spec_json,
				    const char *rootfs_serial, const struct husk_block_mount *mounts,
				    size_t n_mounts, char **bundle, struct husk_err *err)
{
	const struct husk_bundle_spec b = { .id = id, .spec_json = spec_json,
					    .rootfs_serial = rootfs_serial, .mounts = mounts,
					    .n_mounts = n_mounts };
	return husk_agent_create_bundle_spec(a, &b, bundle, err);
}

int husk_agent_create_bundle_spec(struct husk_agent *a, const struct husk_bundle_spec *b,
				  char **bundle, struct husk_err *err)
{
	if (b->n_mounts > 16)
		return husk_err_set(err, -EINVAL, "%zu block mounts: at most 16", b->n_mounts);
	if (!b->id || !b->spec_json || !b->rootfs_serial)
		return husk_err_set(err, -EINVAL, "CreateBundle: %s is required",
				    !b->id ? "id" : !b->spec_json ? "spec_json" : "rootfs_serial");
	Husk__Sandbox__V1__BlockMount bm[16], *bmp[16];
	for (size_t i = 0; i < b->n_mounts; i++) {
		husk__sandbox__v1__block_mount__init(&bm[i]);
		bm[i].serial = (char *)b->mounts[i].serial;
		bm[i].fstype = (char *)b->mounts[i].fstype;
		bm[i].target = (char *)b->mounts[i].target;
		bm[i].readonly = b->mounts[i].readonly;
		bmp[i] = &bm[i];
	}
	Husk__Sandbox__V1__CreateBundleRequest req = HUSK__SANDBOX__V1__CREATE_BUNDLE_REQUEST__INIT;
	req.n_mounts = b->n_mounts;
	req.mounts = bmp;
	req.container_id = (char *)b->id;
	req.oci_spec.data = (uint8_t *)b->spec_json;
	req.oci_spec.len = strlen(b->spec_json);
	req.rootfs_serial = (char *)b->rootfs_serial;
	req.overlay_size_bytes = b->overlay_bytes;
	if (b->share)
		req.shared_fs = (char *)b->share->tag;
	Husk__Sandbox__V1__CreateBundleResponse *resp = NULL;
	int r = CALL(SANDBOX, "CreateBundle", req,
		     &husk__sandbox__v1__create_bundle_response__descriptor, &resp);
	if (r < 0)
		return r;
	*bundle = strdup(resp->bundle);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return *bundle ? 0 : husk_err_set(err, -ENOMEM, "CreateBundle");
}

int husk_agent_destroy(struct husk_agent *a, struct husk_err *err)
{
	Husk__Sandbox__V1__DestroySandboxRequest req = HUSK__SANDBOX__V1__DESTROY_SANDBOX_REQUEST__INIT;
	return CALL(SANDBOX, "DestroySandbox", req, NULL, NULL);
}

int husk_agent_release_disk(struct husk_agent *a, const char *serial, struct husk_err *err)
{
	Husk__Sandbox__V1__ReleaseDiskRequest req = HUSK__SANDBOX__V1__RELEASE_DISK_REQUEST__INIT;
	req.serial = (char *)serial;
	return CALL(SANDBOX, "ReleaseDisk", req, NULL, NULL);
}

/* The agent checks the request itself (and names the field); these bound
 * what is built here. */
#define NET_MAX_IFS 8
#define NET_MAX_ADDRS 16
#define NET_MAX_ROUTES 64

int husk_agent_setup_network(struct husk_agent *a, const struct husk_net_config *net,
			     struct husk_err *err)
{
	if (net->n_ifs > NET_MAX_IFS || net->n_routes > NET_MAX_ROUTES)
		return husk_err_set(err, -EINVAL, "SetupNetwork: %zu interfaces, %zu routes: at most %d, %d",
				    net->n_ifs, net->n_routes, NET_MAX_IFS, NET_MAX_ROUTES);
	Husk__Sandbox__V1__Interface ifs[NET_MAX_IFS], *ifp[NET_MAX_IFS];
	Husk__Sandbox__V1__IPAddress addrs[NET_MAX_IFS][NET_MAX_ADDRS];
	Husk__Sandbox__V1__IPAddress *addrp[NET_MAX_IFS][NET_MAX_ADDRS];
	Husk__Sandbox__V1__Route routes[NET_MAX_ROUTES], *routep[NET_MAX_ROUTES];
	for (size_t i = 0; i < net->n_ifs; i++) {
		const struct husk_net_if *in = &net->ifs[i];
		if (in->n_addrs > NET_MAX_ADDRS)
			return husk_err_set(err, -EINVAL, "SetupNetwork: interfaces[%zu]: %zu addresses: at most %d",
					    i, in->n_addrs, NET_MAX_ADDRS);
		husk__sandbox__v1__interface__init(&ifs[i]);
		ifs[i].name = (char *)(in->name ? in->name : "");
		ifs[i].mac = (char *)(in->mac ? in->mac : "");
		ifs[i].mtu = in->mtu;
		for (size_t j = 0; j < in->n_addrs; j++) {
			husk__sandbox__v1__ipaddress__init(&addrs[i][j]);
			addrs[i][j].address = (char *)(in->addrs[j].address ? in->addrs[j].address : "");
			addrs[i][j].prefix_len = in->addrs[j].prefix_len;
			addrp[i][j] = &addrs[i][j];
		}
		ifs[i].n_addresses = in->n_addrs;
		ifs[i].addresses = addrp[i];
		ifp[i] = &ifs[i];
	}
	for (size_t k = 0; k < net->n_routes; k++) {
		const struct husk_net_route *in = &net->routes[k];
		husk__sandbox__v1__route__init(&routes[k]);
		routes[k].destination = (char *)(in->destination ? in->destination : "");
		routes[k].gateway = (char *)(in->gateway ? in->gateway : "");
		routes[k].device = (char *)(in->device ? in->device : "");
		routep[k] = &routes[k];
	}
	Husk__Sandbox__V1__SetupNetworkRequest req = HUSK__SANDBOX__V1__SETUP_NETWORK_REQUEST__INIT;
	req.n_interfaces = net->n_ifs;
	req.interfaces = ifp;
	req.n_routes = net->n_routes;
	req.routes = routep;
	return CALL(SANDBOX, "SetupNetwork", req, NULL, NULL);
}

/* "vsock://PORT", or "" for none. */
static char *port_uri(char buf[32], uint32_t port)
{
	if (!port)
		buf[0] = '\0';
	else
		snprintf(buf, 32, "vsock://%u", port);
	return buf;
}

int husk_task_create(struct husk_agent *a, const char *id, const char *bundle,
		     const struct husk_stdio *io, uint32_t *pid, struct husk_err *err)
{
	char in[32], out[32], er[32];
	Containerd__Task__V2__CreateTaskRequest req = CONTAINERD__TASK__V2__CREATE_TASK_REQUEST__INIT;
	req.id = (char *)id;
	req.bundle = (char *)bundle;
	req.terminal = io->terminal;
	req.stdin = port_uri(in, io->in);
	req.stdout = port_uri(out, io->out);
	req.stderr = port_uri(er, io->terminal ? 0 : io->err);
	Containerd__Task__V2__CreateTaskResponse *resp = NULL;
	int r = CALL(TASK, "Create", req, &containerd__task__v2__create_task_response__descriptor,
		     &resp);
	if (r == 0) {
		if (pid)
			*pid = resp->pid;
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	}
	return r;
}

int husk_task_start(struct husk_agent *a, const char *id, const char *exec_id, uint32_t *pid,
		    struct husk_err *err)
{
	Containerd__Task__V2__StartRequest req = CONTAINERD__TASK__V2__START_REQUEST__INIT;
	req.id = (char *)id;
	req.exec_id = (char *)(exec_id ? exec_id : "");
	Containerd__Task__V2__StartResponse *resp = NULL;
	int r = CALL(TASK, "Start", req, &containerd__task__v2__start_response__descriptor, &resp);
	if (r == 0) {
		if (pid)
			*pid = resp->pid;
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	}
	return r;
}

int husk_task_exec(struct husk_agent *a, const char *id, const char *exec_id,
		   const char *process_json, const struct husk_stdio *io, struct husk_err *err)
{
	char in[32], out[32], er[32];
	Google__Protobuf__Any spec = GOOGLE__PROTOBUF__ANY__INIT;
	spec.type_url = "types.containerd.io/opencontainers/runtime-spec/1/Process";
	spec.value.data = (uint8_t *)process_json;
	spec.value.len = strlen(process_json);
	Containerd__Task__V2__ExecProcessRequest req = CONTAINERD__TASK__V2__EXEC_PROCESS_REQUEST__INIT;
	req.id = (char *)id;
	req.exec_id = (char *)exec_id;
	req.terminal = io->terminal;
	req.stdin = port_uri(in, io->in);
	req.stdout = port_uri(out, io->out);
	req.stderr = port_uri(er, io->terminal ? 0 : io->err);
	req.spec = &spec;
	return CALL(TASK, "Exec", req, NULL, NULL);
}

int husk_task_wait(struct husk_agent *a, const char *id, const char *exec_id, uint32_t *status,
		   struct husk_err *err)
{
	Containerd__Task__V2__WaitRequest req = CONTAINERD__TASK__V2__WAIT_REQUEST__INIT;
	req.id = (char *)id;
	req.exec_id = (char *)(exec_id ? exec_id : "");
	Containerd__Task__V2__WaitResponse *resp = NULL;
	int r = CALL(TASK, "Wait", req, &containerd__task__v2__wait_response__descriptor, &resp);
	if (r == 0) {
		*status = resp->exit_status;
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	}
	return r;
}

int husk_task_kill(struct husk_agent *a, const char *id, const char *exec_id, int sig, bool all,
		   struct husk_err *err)
{
	Containerd__Task__V2__KillRequest req = CONTAINERD__TASK__V2__KILL_REQUEST__INIT;
	req.id = (char *)id;
	req.exec_id = (char *)(exec_id ? exec_id : "");
	req.signal = (uint32_t)sig;
	req.all = all;
	return CALL(TASK, "Kill", req, NULL, NULL);
}

int husk_task_update(struct husk_agent *a, const char *id, const char *resources_json,
		     struct husk_err *err)
{
	Google__Protobuf__Any res = GOOGLE__PROTOBUF__ANY__INIT;
	res.type_url = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";
	res.value.data = (uint8_t *)resources_json;
	res.value.len = strlen(resources_json);
	Containerd__Task__V2__UpdateTaskRequest req = CONTAINERD__TASK__V2__UPDATE_TASK_REQUEST__INIT;
	req.id = (char *)id;
	req.resources = &res;
	return CALL(TASK, "Update", req, NULL, NULL);
}

int husk_task_pause(struct husk_agent *a, const char *id, struct husk_err *err)
{
	Containerd__Task__V2__PauseRequest req = CONTAINERD__TASK__V2__PAUSE_REQUEST__INIT;
	req.id = (char *)id;
	return CALL(TASK, "Pause", req, NULL, NULL);
}

int husk_task_resume(struct husk_agent *a, const char *id, struct husk_err *err)
{
	Containerd__Task__V2__ResumeRequest req = CONTAINERD__TASK__V2__RESUME_REQUEST__INIT;
	req.id = (char *)id;
	return CALL(TASK, "Resume", req, NULL, NULL);
}

int husk_task_resize_pty(struct husk_agent *a, const char *id, const char *exec_id,
			 uint32_t width, uint32_t height, struct husk_err *err)
{
	Containerd__Task__V2__ResizePtyRequest req = CONTAINERD__TASK__V2__RESIZE_PTY_REQUEST__INIT;
	req.id = (char *)id;
	req.exec_id = (char *)(exec_id ? exec_id : "");
	req.width = width;
	req.height = height;
	return CALL(TASK, "ResizePty", req, NULL, NULL);
}

int husk_task_close_io(struct husk_agent *a, const char *id, const char *exec_id,
		       struct husk_err *err)
{
	Containerd__Task__V2__CloseIORequest req = CONTAINERD__TASK__V2__CLOSE_IOREQUEST__INIT;
	req.id = (char *)id;
	req.exec_id = (char *)(exec_id ? exec_id : "");
	req.stdin = true;
	return CALL(TASK, "CloseIO", req, NULL, NULL);
}

int husk_task_state(struct husk_agent *a, const char *id, const char *exec_id, char *state,
		    size_t len, uint32_t *pid, uint32_t *status, struct husk_err *err)
{
	static const char *const names[] = { "unknown", "created", "running",
					     "stopped", "paused",  "pausing" };
	Containerd__Task__V2__StateRequest req = CONTAINERD__TASK__V2__STATE_REQUEST__INIT;
	req.id = (char *)id;
	req.exec_id = (char *)(exec_id ? exec_id : "");
	Containerd__Task__V2__StateResponse *resp = NULL;
	int r = CALL(TASK, "State", req, &containerd__task__v2__state_response__descriptor, &resp);
	if (r < 0)
		return r;
	unsigned s = (unsigned)resp->status;
	if (state)
		snprintf(state, len, "%s", s < 6 ? names[s] : "unknown");
	if (pid)
		*pid = resp->pid;
	if (status)
		*status = resp->exit_status;
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return 0;
}

int husk_task_pids(struct husk_agent *a, const char *id, uint32_t *pids, size_t max, size_t *n,
		   struct husk_err *err)
{
	Containerd__Task__V2__PidsRequest req = CONTAINERD__TASK__V2__PIDS_REQUEST__INIT;
	req.id = (char *)id;
	Containerd__Task__V2__PidsResponse *resp = NULL;
	int r = CALL(TASK, "Pids", req, &containerd__task__v2__pids_response__descriptor, &resp);
	if (r < 0)
		return r;
	*n = resp->n_processes;
	for (size_t i = 0; i < resp->n_processes && i < max; i++)
		pids[i] = resp->processes[i]->pid;
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return 0;
}

int husk_task_stats(struct husk_agent *a, const char *id, struct husk_stats *out,
		    struct husk_err *err)
{
	Containerd__Task__V2__StatsRequest req = CONTAINERD__TASK__V2__STATS_REQUEST__INIT;
	req.id = (char *)id;
	Containerd__Task__V2__StatsResponse *resp = NULL;
	int r = CALL(TASK, "Stats", req, &containerd__task__v2__stats_response__descriptor, &resp);
	if (r < 0)
		return r;
	memset(out, 0, sizeof(*out));
	Io__Containerd__Cgroups__V2__Metrics *m = NULL;
	if (resp->stats)
		m = io__containerd__cgroups__v2__metrics__unpack(NULL, resp->stats->value.len,
								 resp->stats->value.data);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	if (!m)
		return husk_err_set(err, -EPROTO, "Task.Stats: no cgroup v2 metrics in the reply");
	if (m->cpu) {
		out->cpu_usage_usec = m->cpu->usage_usec;
		out->cpu_user_usec = m->cpu->user_usec;
		out->cpu_system_usec = m->cpu->system_usec;
	}
	if (m->memory) {
		out->memory_usage = m->memory->usage;
		out->memory_limit = m->memory->usage_limit;
	}
	if (m->pids) {
		out->pids_current = m->pids->current;
		out->pids_limit = m->pids->limit;
	}
	if (m->memory_events)
		out->oom_kills = m->memory_events->oom_kill;
	if (m->io)
		for (size_t i = 0; i < m->io->n_usage; i++) {
			out->io_read_bytes += m->io->usage[i]->rbytes;
			out->io_write_bytes += m->io->usage[i]->wbytes;
		}
	io__containerd__cgroups__v2__metrics__free_unpacked(m, NULL);
	return 0;
}

int husk_task_delete(struct husk_agent *a, const char *id, const char *exec_id,
		     uint32_t *status, struct husk_err *err)
{
	Containerd__Task__V2__DeleteRequest req = CONTAINERD__TASK__V2__DELETE_REQUEST__INIT;
	req.id = (char *)id;
	req.exec_id = (char *)(exec_id ? exec_id : "");
	Containerd__Task__V2__DeleteResponse *resp = NULL;
	int r = CALL(TASK, "Delete", req, &containerd__task__v2__delete_response__descriptor, &resp);
	if (r == 0) {
		if (status)
			*status = resp->exit_status;
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	}
	return r;
}
