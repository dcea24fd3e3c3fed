/* husk-agent on the host with --listen unix:, driven through libttrpc: the
 * Sandbox and Task services end to end with real containers (busybox
 * rootfs, overlay from CreateBundle), stdio over the per-port sockets.
 * Needs root (mounts, namespaces); skips otherwise. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "github.com/containerd/containerd/runtime/v2/task/shim.pb-c.h"
#include "husk/cleanup.h"
#include "husk/sandbox.pb-c.h"
#include "husk/sock.h"
#include "ttrpc/client.h"

#define TASK "containerd.task.v2.Task"
#define SANDBOX "husk.sandbox.v1.Sandbox"
#define T(x) Containerd__Task__V2__##x
#define MS (1000ull * 1000)

static const char *agent_bin = "build/test/husk-agent";

struct env {
	char dir[64];
	char sock[128];
	char rootfs[128];
	pid_t agent;
	struct ev_loop *loop;
	struct ttrpc_client *client;
	unsigned next_port;
};

static struct env E;

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

static int setup(void **state)
{
	(void)state;
	if (getuid() != 0)
		return 0; /* tests skip */
	const char *bin = getenv("HUSK_AGENT");
	if (bin)
		agent_bin = bin;
	strcpy(E.dir, "/tmp/husk-agent-test-XXXXXX");
	if (!mkdtemp(E.dir))
		return -1;
	chmod(E.dir, 0755);
	snprintf(E.sock, sizeof(E.sock), "%s/agent.sock", E.dir);
	snprintf(E.rootfs, sizeof(E.rootfs), "%s/rootfs", E.dir);
	if (run("tests/jail/make-rootfs.sh %s", E.rootfs) != 0)
		return -1;
	int out[2];
	if (pipe(out) < 0)
		return -1;
	E.agent = fork();
	if (E.agent == 0) {
		dup2(out[1], 1);
		char listen[160], rundir[128];
		snprintf(listen, sizeof(listen), "unix:%s", E.sock);
		snprintf(rundir, sizeof(rundir), "%s/run", E.dir);
		execl(agent_bin, "husk-agent", "--listen", listen, "--run-dir", rundir, "--no-cgroups",
		      (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	char buf[16] = "";
	struct pollfd p = { .fd = out[0], .events = POLLIN };
	if (poll(&p, 1, 20000) != 1 || read(out[0], buf, sizeof(buf) - 1) <= 0 ||
	    strncmp(buf, "ready", 5) != 0)
		return -1;
	close(out[0]);
	struct husk_err err = { 0 };
	if (ev_loop_new(&E.loop, &err) < 0)
		return -1;
	int fd = husk_unix_connect(E.sock, &err);
	if (fd < 0 || ttrpc_client_new(E.loop, fd, &E.client, &err) < 0)
		return -1;
	E.next_port = 5000;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (getuid() != 0)
		return 0;
	ttrpc_client_free(E.client);
	ev_run_once(E.loop, 0);
	ev_loop_free(E.loop);
	kill(E.agent, SIGTERM);
	int status = 0;
	waitpid(E.agent, &status, 0);
	/* Whatever a failed test left mounted goes first. */
	run("grep -o ' %s[^ ]*' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l; rm -rf %s",
	    E.dir, E.dir);
	/* The agent must exit cleanly (ASan reports make it fail). */
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "husk-agent exited with status %#x\n", status);
		return -1;
	}
	return 0;
}

#define NEED_ROOT()                                                                           \
	do {                                                                                  \
		if (getuid() != 0)                                                            \
			skip();                                                               \
	} while (0)

/* ---- helpers ---- */

static int call(const char *svc, const char *method, const ProtobufCMessage *req,
		const ProtobufCMessageDescriptor *rd, ProtobufCMessage **resp,
		struct ttrpc_status *st, uint64_t timeout_ns)
{
	struct ttrpc_call_opts opts = { .timeout_ns = timeout_ns ? timeout_ns : 30000 * MS };
	return ttrpc_client_call(E.client, svc, method, req, rd, &opts, resp, st);
}

/* A config.json from tests/jail/base-config.json with `args` for sh -c. */
static char *spec_json(const char *script, bool terminal)
{
	struct json_object *o = json_object_from_file("tests/jail/base-config.json");
	assert_non_null(o);
	struct json_object *proc, *args = json_object_new_array();
	json_object_object_get_ex(o, "process", &proc);
	json_object_array_add(args, json_object_new_string("sh"));
	json_object_array_add(args, json_object_new_string("-c"));
	json_object_array_add(args, json_object_new_string(script));
	json_object_object_add(proc, "args", args);
	json_object_object_add(proc, "terminal", json_object_new_boolean(terminal));
	char *s = strdup(json_object_to_json_string(o));
	json_object_put(o);
	return s;
}

static char *create_bundle(const char *id, const char *script, bool terminal, int *code)
{
	_cleanup_free_ char *spec = spec_json(script, terminal);
	Husk__Sandbox__V1__CreateBundleRequest req = HUSK__SANDBOX__V1__CREATE_BUNDLE_REQUEST__INIT;
	req.container_id = (char *)id;
	req.oci_spec.data = (uint8_t *)spec;
	req.oci_spec.len = strlen(spec);
	req.rootfs_dir = E.rootfs;
	req.overlay_size_bytes = 16 << 20;
	ProtobufCMessage *resp = NULL;
	struct ttrpc_status st;
	*code = call(SANDBOX, "CreateBundle", &req.base,
		     &husk__sandbox__v1__create_bundle_response__descriptor, &resp, &st, 0);
	if (*code != TTRPC_OK)
		return NULL;
	char *b = strdup(((Husk__Sandbox__V1__CreateBundleResponse *)resp)->bundle);
	protobuf_c_message_free_unpacked(resp, NULL);
	return b;
}

static unsigned port(void)
{
	return E.next_port++;
}

static char *uri(unsigned p)
{
	static char bufs[8][32];
	static int i;
	char *b = bufs[i++ % 8];
	if (p)
		snprintf(b, 32, "vsock://%u", p);
	else
		b[0] = '\0';
	return b;
}

static int create(const char *id, const char *bundle, unsigned in, unsigned out, unsigned err,
		  bool terminal, uint32_t *pid, struct ttrpc_status *st)
{
	T(CreateTaskRequest) req = CONTAINERD__TASK__V2__CREATE_TASK_REQUEST__INIT;
	req.id = (char *)id;
	req.bundle = (char *)bundle;
	req.stdin = uri(in);
	req.stdout = uri(out);
	req.stderr = uri(err);
	req.terminal = terminal;
	ProtobufCMessage *resp = NULL;
	int code = call(TASK, "Create", &req.base, &containerd__task__v2__create_task_response__descriptor,
			&resp, st, 0);
	if (code == TTRPC_OK && pid)
		*pid = ((T(CreateTaskResponse) *)resp)->pid;
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	return code;
}

static int simple(const char *method, const char *id, const char *exec_id,
		  const ProtobufCMessageDescriptor *req_desc, const ProtobufCMessageDescriptor *rd,
		  ProtobufCMessage **resp, struct ttrpc_status *st)
{
	/* Start, Wait, State, Delete, Pause... all begin with id, exec_id. */
	ProtobufCMessage *req = calloc(1, req_desc->sizeof_message);
	req_desc->message_init(req);
	const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(req_desc, "id");
	*(char **)((char *)req + f->offset) = (char *)id;
	f = protobuf_c_message_descriptor_get_field_by_name(req_desc, "exec_id");
	if (f)
		*(char **)((char *)req + f->offset) = (char *)(exec_id ? exec_id : "");
	int code = call(TASK, method, req, rd, resp, st, 0);
	free(req);
	return code;
}

static int start(const char *id, const char *exec_id, struct ttrpc_status *st)
{
	return simple("Start", id, exec_id, &containerd__task__v2__start_request__descriptor,
		      &containerd__task__v2__start_response__descriptor, NULL, st);
}

static int wait_exit(const char *id, const char *exec_id, uint32_t *status, struct ttrpc_status *st)
{
	ProtobufCMessage *resp = NULL;
	int code = simple("Wait", id, exec_id, &containerd__task__v2__wait_request__descriptor,
			  &containerd__task__v2__wait_response__descriptor, &resp, st);
	if (code == TTRPC_OK)
		*status = ((T(WaitResponse) *)resp)->exit_status;
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	return code;
}

static int get_state(const char *id, const char *exec_id, T(StateResponse) **out,
		 struct ttrpc_status *st)
{
	return simple("State", id, exec_id, &containerd__task__v2__state_request__descriptor,
		      &containerd__task__v2__state_response__descriptor, (ProtobufCMessage **)out, st);
}

static int delete(const char *id, const char *exec_id, uint32_t *status, struct ttrpc_status *st)
{
	ProtobufCMessage *resp = NULL;
	int code = simple("Delete", id, exec_id, &containerd__task__v2__delete_request__descriptor,
			  &containerd__task__v2__delete_response__descriptor, &resp, st);
	if (code == TTRPC_OK && status)
		*status = ((T(DeleteResponse) *)resp)->exit_status;
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	return code;
}

static int kill_proc(const char *id, const char *exec_id, uint32_t sig, bool all,
		     struct ttrpc_status *st)
{
	T(KillRequest) req = CONTAINERD__TASK__V2__KILL_REQUEST__INIT;
	req.id = (char *)id;
	req.exec_id = (char *)(exec_id ? exec_id : "");
	req.signal = sig;
	req.all = all;
	return call(TASK, "Kill", &req.base, NULL, NULL, st, 0);
}

static int connect_port(unsigned p)
{
	char path[192];
	snprintf(path, sizeof(path), "%s_%u", E.sock, p);
	struct husk_err err = { 0 };
	int fd = husk_unix_connect(path, &err);
	if (fd < 0)
		fail_msg("connect %s: %s", path, err.msg);
	return fd;
}

/* Reads until EOF (at most 30 s); returns a malloc'd buffer. */
static char *read_all(int fd, size_t *len)
{
	size_t cap = 65536, n = 0;
	char *buf = malloc(cap + 1);
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 30000) != 1)
			fail_msg("no EOF after 30 s (%zu bytes so far)", n);
		if (n == cap)
			buf = realloc(buf, (cap *= 2) + 1);
		ssize_t r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}

/* Runs a container to completion: returns stdout, sets *status. */
static char *run_container(const char *id, const char *script, uint32_t *status, char **err_out)
{
	int code;
	_cleanup_free_ char *b = create_bundle(id, script, false, &code);
	assert_int_equal(code, TTRPC_OK);
	unsigned po = port(), pe = port();
	struct ttrpc_status st;
	uint32_t pid;
	assert_int_equal(create(id, b, 0, po, pe, false, &pid, &st), TTRPC_OK);
	assert_true(pid > 0);
	_cleanup_fd_ int o = connect_port(po);
	_cleanup_fd_ int e = connect_port(pe);
	assert_int_equal(start(id, NULL, &st), TTRPC_OK);
	char *out = read_all(o, NULL);
	char *errs = read_all(e, NULL);
	assert_int_equal(wait_exit(id, NULL, status, &st), TTRPC_OK);
	uint32_t dstatus;
	assert_int_equal(delete(id, NULL, &dstatus, &st), TTRPC_OK);
	assert_int_equal(dstatus, *status);
	if (err_out)
		*err_out = errs;
	else
		free(errs);
	return out;
}

/* ---- tests ---- */

static void test_check_and_details(void **state)
{
	(void)state;
	NEED_ROOT();
	Husk__Sandbox__V1__CheckRequest req = HUSK__SANDBOX__V1__CHECK_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	struct ttrpc_status st;
	assert_int_equal(call(SANDBOX, "Check", &req.base, &husk__sandbox__v1__check_response__descriptor,
			      &resp, &st, 0),
			 TTRPC_OK);
	assert_string_equal(((Husk__Sandbox__V1__CheckResponse *)resp)->version, "0.1.0");
	assert_true(((Husk__Sandbox__V1__CheckResponse *)resp)->uptime_ns > 0);
	protobuf_c_message_free_unpacked(resp, NULL);
	Husk__Sandbox__V1__GuestDetailsRequest dreq = HUSK__SANDBOX__V1__GUEST_DETAILS_REQUEST__INIT;
	assert_int_equal(call(SANDBOX, "GuestDetails", &dreq.base,
			      &husk__sandbox__v1__guest_details_response__descriptor, &resp, &st, 0),
			 TTRPC_OK);
	Husk__Sandbox__V1__GuestDetailsResponse *d = (Husk__Sandbox__V1__GuestDetailsResponse *)resp;
	assert_true(d->cpus >= 1);
	assert_true(d->mem_total_bytes > 0);
	assert_true(strlen(d->kernel_release) > 0);
	protobuf_c_message_free_unpacked(resp, NULL);
}

/* CreateSandbox on a host (--listen) validates everything and records
 * resolv.conf under its run dir instead of changing the machine. */
static void test_create_sandbox(void **state)
{
	(void)state;
	NEED_ROOT();
	Husk__Sandbox__V1__CreateSandboxRequest req = HUSK__SANDBOX__V1__CREATE_SANDBOX_REQUEST__INIT;
	Husk__Sandbox__V1__CreateSandboxRequest__SysctlsEntry e =
		HUSK__SANDBOX__V1__CREATE_SANDBOX_REQUEST__SYSCTLS_ENTRY__INIT;
	Husk__Sandbox__V1__CreateSandboxRequest__SysctlsEntry *ep = &e;
	req.hostname = "sandbox-test";
	req.resolv_conf = "nameserver 192.0.2.53\n";
	e.key = "kernel.pid_max";
	e.value = "65536";
	req.n_sysctls = 1;
	req.sysctls = &ep;
	ProtobufCMessage *resp = NULL;
	struct ttrpc_status st;
	assert_int_equal(call(SANDBOX, "CreateSandbox", &req.base, NULL, &resp, &st, 0), TTRPC_OK);
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	char path[160], buf[64] = "";
	snprintf(path, sizeof(path), "%s/run/resolv.conf", E.dir);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	assert_non_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	assert_string_equal(buf, "nameserver 192.0.2.53\n");
	/* A key that would leave /proc/sys is refused, naming it. */
	e.key = "../../etc/passwd";
	assert_int_equal(call(SANDBOX, "CreateSandbox", &req.base, NULL, &resp, &st, 0),
			 TTRPC_INVALID_ARGUMENT);
	assert_non_null(strstr(st.message, "../../etc/passwd"));
}

static void test_lifecycle(void **state)
{
	(void)state;
	NEED_ROOT();
	int code;
	_cleanup_free_ char *b =
		create_bundle("life",
			      "echo hello; echo oops >&2; hostname; grep -E '^Sig(Blk|Ign):' /proc/self/status; exit 3",
			      false, &code);
	assert_int_equal(code, TTRPC_OK);
	unsigned po = port(), pe = port();
	struct ttrpc_status st;
	uint32_t pid;
	assert_int_equal(create("life", b, 0, po, pe, false, &pid, &st), TTRPC_OK);
	T(StateResponse) *s = NULL;
	assert_int_equal(get_state("life", NULL, &s, &st), TTRPC_OK);
	assert_int_equal(s->status, CONTAINERD__V1__TYPES__STATUS__CREATED);
	assert_int_equal(s->pid, pid);
	assert_string_equal(s->bundle, b);
	protobuf_c_message_free_unpacked(&s->base, NULL);
	_cleanup_fd_ int o = connect_port(po);
	_cleanup_fd_ int e = connect_port(pe);
	assert_int_equal(start("life", NULL, &st), TTRPC_OK);
	_cleanup_free_ char *out = read_all(o, NULL);
	_cleanup_free_ char *errs = read_all(e, NULL);
	/* The agent blocks and ignores signals for itself; none of that leaks
	 * into containers. */
	assert_string_equal(out, "hello\nhusk-test\nSigBlk:\t0000000000000000\n"
				 "SigIgn:\t0000000000000000\n");
	assert_string_equal(errs, "oops\n");
	uint32_t status;
	assert_int_equal(wait_exit("life", NULL, &status, &st), TTRPC_OK);
	assert_int_equal(status, 3);
	assert_int_equal(get_state("life", NULL, &s, &st), TTRPC_OK);
	assert_int_equal(s->status, CONTAINERD__V1__TYPES__STATUS__STOPPED);
	assert_int_equal(s->exit_status, 3);
	assert_non_null(s->exited_at);
	assert_true(s->exited_at->seconds > 0);
	protobuf_c_message_free_unpacked(&s->base, NULL);
	assert_int_equal(delete("life", NULL, &status, &st), TTRPC_OK);
	assert_int_equal(status, 3);
	assert_int_equal(get_state("life", NULL, &s, &st), TTRPC_NOT_FOUND);
	/* The bundle's overlay is gone with the container. */
	struct stat sb;
	assert_int_equal(stat(b, &sb), -1);
}

static void test_stdin(void **state)
{
	(void)state;
	NEED_ROOT();
	int code;
	_cleanup_free_ char *b = create_bundle("cat", "cat; echo done", false, &code);
	assert_int_equal(code, TTRPC_OK);
	unsigned pi = port(), po = port();
	struct ttrpc_status st;
	assert_int_equal(create("cat", b, pi, po, 0, false, NULL, &st), TTRPC_OK);
	_cleanup_fd_ int i = connect_port(pi);
	_cleanup_fd_ int o = connect_port(po);
	assert_int_equal(start("cat", NULL, &st), TTRPC_OK);
	assert_int_equal(write(i, "abc\n", 4), 4);
	shutdown(i, SHUT_WR);
	_cleanup_free_ char *out = read_all(o, NULL);
	assert_string_equal(out, "abc\ndone\n");
	uint32_t status;
	assert_int_equal(wait_exit("cat", NULL, &status, &st), TTRPC_OK);
	assert_int_equal(status, 0);
	assert_int_equal(delete("cat", NULL, NULL, &st), TTRPC_OK);
}

static void test_exec_kill_wait(void **state)
{
	(void)state;
	NEED_ROOT();
	int code;
	_cleanup_free_ char *b = create_bundle("ex", "sleep 1000", false, &code);
	assert_int_equal(code, TTRPC_OK);
	struct ttrpc_status st;
	uint32_t pid;
	assert_int_equal(create("ex", b, 0, 0, 0, false, &pid, &st), TTRPC_OK);
	assert_int_equal(start("ex", NULL, &st), TTRPC_OK);

	static const char proc[] = "{\"user\":{\"uid\":0,\"gid\":0},\"args\":[\"sh\",\"-c\","
				   "\"echo $$; hostname; tr '\\\\0' ' ' </proc/1/cmdline; exit 5\"],"
				   "\"env\":[\"PATH=/bin\"],\"cwd\":\"/\"}";
	Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
	any.type_url = "types.containerd.io/opencontainers/runtime-spec/1/Process";
	any.value.data = (uint8_t *)proc;
	any.value.len = strlen(proc);
	unsigned po = port();
	T(ExecProcessRequest) req = CONTAINERD__TASK__V2__EXEC_PROCESS_REQUEST__INIT;
	req.id = "ex";
	req.exec_id = "e1";
	req.stdout = uri(po);
	req.spec = &any;
	assert_int_equal(call(TASK, "Exec", &req.base, NULL, NULL, &st, 0), TTRPC_OK);
	assert_int_equal(call(TASK, "Exec", &req.base, NULL, NULL, &st, 0), TTRPC_ALREADY_EXISTS);
	T(StateResponse) *s = NULL;
	assert_int_equal(get_state("ex", "e1", &s, &st), TTRPC_OK);
	assert_int_equal(s->status, CONTAINERD__V1__TYPES__STATUS__CREATED);
	protobuf_c_message_free_unpacked(&s->base, NULL);
	_cleanup_fd_ int o = connect_port(po);
	assert_int_equal(start("ex", "e1", &st), TTRPC_OK);
	_cleanup_free_ char *out = read_all(o, NULL);
	/* Inside the container: its pid namespace (not pid 1), its hostname,
	 * and its init is `sh -c sleep 1000`. */
	char *nl = strchr(out, '\n');
	assert_non_null(nl);
	assert_true(atoi(out) > 1);
	assert_non_null(strstr(nl, "husk-test\n"));
	assert_non_null(strstr(nl, "sleep 1000"));
	uint32_t status;
	assert_int_equal(wait_exit("ex", "e1", &status, &st), TTRPC_OK);
	assert_int_equal(status, 5);
	assert_int_equal(delete("ex", "e1", &status, &st), TTRPC_OK);
	assert_int_equal(status, 5);
	assert_int_equal(get_state("ex", "e1", &s, &st), TTRPC_NOT_FOUND);

	/* Running init: Delete refused, Kill works, Wait reports 137. */
	assert_int_equal(delete("ex", NULL, NULL, &st), TTRPC_FAILED_PRECONDITION);
	assert_int_equal(kill_proc("ex", NULL, SIGKILL, false, &st), TTRPC_OK);
	assert_int_equal(wait_exit("ex", NULL, &status, &st), TTRPC_OK);
	assert_int_equal(status, 137);
	assert_int_equal(kill_proc("ex", NULL, SIGKILL, false, &st), TTRPC_NOT_FOUND);
	assert_int_equal(delete("ex", NULL, NULL, &st), TTRPC_OK);
}

struct waited {
	bool done;
	int code;
	uint32_t status;
};

static void on_waited(struct ttrpc_reply *reply, void *data)
{
	struct waited *w = data;
	w->code = reply->status.code;
	if (reply->msg)
		w->status = ((T(WaitResponse) *)reply->msg)->exit_status;
	w->done = true;
}

static void test_wait_does_not_block_other_calls(void **state)
{
	(void)state;
	NEED_ROOT();
	int code;
	/* PID 1 of a pid namespace only gets the signals it handles. */
	_cleanup_free_ char *b =
		create_bundle("w", "trap 'exit 7' TERM; echo ready; while true; do sleep 0.1; done",
			      false, &code);
	assert_int_equal(code, TTRPC_OK);
	struct ttrpc_status st;
	unsigned po = port();
	assert_int_equal(create("w", b, 0, po, 0, false, NULL, &st), TTRPC_OK);
	_cleanup_fd_ int o = connect_port(po);
	/* containerd calls Wait before Start and blocks on it. */
	struct waited w[3] = { 0 };
	T(WaitRequest) req = CONTAINERD__TASK__V2__WAIT_REQUEST__INIT;
	req.id = "w";
	for (int i = 0; i < 3; i++)
		assert_int_equal(ttrpc_client_start(E.client, TASK, "Wait", &req.base, NULL, 0,
						    &containerd__task__v2__wait_response__descriptor,
						    NULL, on_waited, &w[i]),
				 0);
	assert_int_equal(start("w", NULL, &st), TTRPC_OK);
	T(StateResponse) *s = NULL;
	assert_int_equal(get_state("w", NULL, &s, &st), TTRPC_OK);
	assert_int_equal(s->status, CONTAINERD__V1__TYPES__STATUS__RUNNING);
	protobuf_c_message_free_unpacked(&s->base, NULL);
	for (int i = 0; i < 3; i++)
		assert_false(w[i].done);
	/* Signal only once the trap is in place. */
	char ready[6] = "";
	struct pollfd pfd = { .fd = o, .events = POLLIN };
	assert_int_equal(poll(&pfd, 1, 30000), 1);
	assert_int_equal(read(o, ready, 6), 6);
	assert_memory_equal(ready, "ready\n", 6);
	assert_int_equal(kill_proc("w", NULL, SIGTERM, false, &st), TTRPC_OK);
	_cleanup_free_ char *rest = read_all(o, NULL);
	for (int i = 0; i < 3; i++) {
		while (!w[i].done)
			assert_true(ev_run_once(E.loop, 30000) > 0);
		assert_int_equal(w[i].code, TTRPC_OK);
		assert_int_equal(w[i].status, 7);
	}
	assert_int_equal(delete("w", NULL, NULL, &st), TTRPC_OK);
}

static int agent_fd_count(void)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)E.agent);
	DIR *d = opendir(path);
	int n = 0;
	if (!d)
		return -1;
	for (struct dirent *e; (e = readdir(d));)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* Clients that vanish with calls in flight (a blocking Wait, a GetEvents
 * long poll) leave nothing behind in the agent: its fds return to where
 * they were, it keeps serving, and ASan's leak check at its exit (in
 * teardown) finds every deferred call freed. */
static void test_disconnect_mid_call(void **state)
{
	(void)state;
	NEED_ROOT();
	int code;
	_cleanup_free_ char *b = create_bundle("dc", "exec sleep 1000", false, &code);
	assert_int_equal(code, TTRPC_OK);
	struct ttrpc_status st;
	assert_int_equal(create("dc", b, 0, 0, 0, false, NULL, &st), TTRPC_OK);
	assert_int_equal(start("dc", NULL, &st), TTRPC_OK);
	int before = agent_fd_count();
	assert_true(before > 0);
	for (int i = 0; i < 20; i++) {
		struct husk_err err = { 0 };
		struct ttrpc_client *c = NULL;
		int fd = husk_unix_connect(E.sock, &err);
		assert_true(fd >= 0);
		assert_int_equal(ttrpc_client_new(E.loop, fd, &c, &err), 0);
		struct waited w = { 0 }, g = { 0 };
		T(WaitRequest) wr = CONTAINERD__TASK__V2__WAIT_REQUEST__INIT;
		wr.id = "dc";
		assert_int_equal(ttrpc_client_start(c, TASK, "Wait", &wr.base, NULL, 0,
						    &containerd__task__v2__wait_response__descriptor,
						    NULL, on_waited, &w), 0);
		Husk__Sandbox__V1__GetEventsRequest gr = HUSK__SANDBOX__V1__GET_EVENTS_REQUEST__INIT;
		gr.after_seq = UINT64_MAX - 1;
		assert_int_equal(ttrpc_client_start(c, SANDBOX, "GetEvents", &gr.base, NULL, 0,
						    &husk__sandbox__v1__get_events_response__descriptor,
						    NULL, on_waited, &g), 0);
		/* Let both requests reach the agent, then vanish. */
		T(StateResponse) *sr = NULL;
		assert_int_equal(get_state("dc", NULL, &sr, &st), TTRPC_OK);
		protobuf_c_message_free_unpacked(&sr->base, NULL);
		ttrpc_client_free(c);
		assert_true(w.done && g.done); /* completed locally: CANCELLED */
	}
	/* The agent notices each hang-up on its own loop: wait for it (a
	 * bound against hangs, not a timing assertion). */
	int after = -1;
	for (int i = 0; i < 300 && (after = agent_fd_count()) != before; i++)
		usleep(10000);
	assert_int_equal(after, before);
	T(StateResponse) *sr = NULL;
	assert_int_equal(get_state("dc", NULL, &sr, &st), TTRPC_OK);
	assert_int_equal(sr->status, CONTAINERD__V1__TYPES__STATUS__RUNNING);
	protobuf_c_message_free_unpacked(&sr->base, NULL);
	assert_int_equal(kill_proc("dc", NULL, SIGKILL, false, &st), TTRPC_OK);
	ProtobufCMessage *resp = NULL;
	T(WaitRequest) wr = CONTAINERD__TASK__V2__WAIT_REQUEST__INIT;
	wr.id = "dc";
	assert_int_equal(call(TASK, "Wait", &wr.base, &containerd__task__v2__wait_response__descriptor,
			      &resp, &st, 0), TTRPC_OK);
	assert_int_equal(((T(WaitResponse) *)resp)->exit_status, 137);
	protobuf_c_message_free_unpacked(resp, NULL);
	assert_int_equal(delete("dc", NULL, NULL, &st), TTRPC_OK);
}

static void test_fast_exit_output_complete(void **state)
{
	(void)state;
	NEED_ROOT();
	/* The whole output of a process that exits at once, every time. */
	for (int i = 0; i < 20; i++) {
		char id[32];
		snprintf(id, sizeof(id), "fast%d", i);
		uint32_t status;
		_cleanup_free_ char *out =
			run_container(id, "head -c 300000 /dev/zero | tr '\\0' x; echo END", &status, NULL);
		assert_int_equal(status, 0);
		assert_int_equal(strlen(out), 300004);
		assert_string_equal(out + 300000, "END\n");
	}
}

static void test_host_never_connects(void **state)
{
	(void)state;
	NEED_ROOT();
	int code;
	_cleanup_free_ char *b = create_bundle("lonely", "echo unread; exit 4", false, &code);
	assert_int_equal(code, TTRPC_OK);
	struct ttrpc_status st;
	assert_int_equal(create("lonely", b, 0, port(), 0, false, NULL, &st), TTRPC_OK);
	assert_int_equal(start("lonely", NULL, &st), TTRPC_OK);
	/* Exit is not reported while stdout waits for the host... */
	T(WaitRequest) req = CONTAINERD__TASK__V2__WAIT_REQUEST__INIT;
	req.id = "lonely";
	assert_int_equal(call(TASK, "Wait", &req.base, &containerd__task__v2__wait_response__descriptor,
			      NULL, &st, 500 * MS),
			 TTRPC_DEADLINE_EXCEEDED);
	/* ...but Delete does not wait for a host that never comes. */
	uint32_t status = 0;
	for (int i = 0; i < 100; i++) {
		code = delete("lonely", NULL, &status, &st);
		if (code != TTRPC_FAILED_PRECONDITION)
			break;
		usleep(50000); /* still running: the process has not exited yet */
	}
	assert_int_equal(code, TTRPC_OK);
	assert_int_equal(status, 4);
}

static void test_terminal(void **state)
{
	(void)state;
	NEED_ROOT();
	int code;
	_cleanup_free_ char *b = create_bundle("tty", "tty; echo tty-ok", true, &code);
	assert_int_equal(code, TTRPC_OK);
	unsigned po = port();
	struct ttrpc_status st;
	assert_int_equal(create("tty", b, 0, po, 0, true, NULL, &st), TTRPC_OK);
	_cleanup_fd_ int o = connect_port(po);
	assert_int_equal(start("tty", NULL, &st), TTRPC_OK);
	_cleanup_free_ char *out = read_all(o, NULL);
	assert_non_null(strstr(out, "/dev/pts/0"));
	assert_non_null(strstr(out, "tty-ok"));
	uint32_t status;
	assert_int_equal(wait_exit("tty", NULL, &status, &st), TTRPC_OK);
	assert_int_equal(status, 0);
	assert_int_equal(delete("tty", NULL, NULL, &st), TTRPC_OK);
}

static void test_events(void **state)
{
	(void)state;
	NEED_ROOT();
	Husk__Sandbox__V1__GetEventsRequest req = HUSK__SANDBOX__V1__GET_EVENTS_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	struct ttrpc_status st;
	assert_int_equal(call(SANDBOX, "GetEvents", &req.base,
			      &husk__sandbox__v1__get_events_response__descriptor, &resp, &st, 0),
			 TTRPC_OK);
	Husk__Sandbox__V1__GetEventsResponse *ev = (Husk__Sandbox__V1__GetEventsResponse *)resp;
	assert_true(ev->n_events > 0);
	uint64_t last = 0;
	bool saw_life = false;
	for (size_t i = 0; i < ev->n_events; i++) {
		assert_true(ev->events[i]->seq > last);
		last = ev->events[i]->seq;
		if (strcmp(ev->events[i]->container_id, "life") == 0) {
			saw_life = true;
			assert_int_equal(ev->events[i]->type, HUSK__SANDBOX__V1__EVENT__TYPE__EXIT);
			assert_int_equal(ev->events[i]->exit_status, 3);
		}
	}
	assert_true(saw_life);
	protobuf_c_message_free_unpacked(resp, NULL);
	/* Nothing new: the long poll ends at its deadline. */
	req.after_seq = last;
	assert_int_equal(call(SANDBOX, "GetEvents", &req.base,
			      &husk__sandbox__v1__get_events_response__descriptor, &resp, &st,
			      300 * MS),
			 TTRPC_DEADLINE_EXCEEDED);
}

static void test_bad_requests(void **state)
{
	(void)state;
	NEED_ROOT();
	struct ttrpc_status st;
	int code;
	/* ids */
	assert_int_equal(create("../x", "/tmp", 0, 0, 0, false, NULL, &st), TTRPC_INVALID_ARGUMENT);
	assert_non_null(strstr(st.message, "../x"));
	assert_null(create_bundle("a/b", "true", false, &code));
	assert_int_equal(code, TTRPC_INVALID_ARGUMENT);
	/* unknown containers and processes */
	T(StateResponse) *s = NULL;
	assert_int_equal(get_state("nope", NULL, &s, &st), TTRPC_NOT_FOUND);
	assert_non_null(strstr(st.message, "nope"));
	assert_int_equal(kill_proc("nope", NULL, SIGKILL, false, &st), TTRPC_NOT_FOUND);
	assert_int_equal(start("nope", NULL, &st), TTRPC_NOT_FOUND);
	/* a malformed spec leaves no bundle behind */
	Husk__Sandbox__V1__CreateBundleRequest breq = HUSK__SANDBOX__V1__CREATE_BUNDLE_REQUEST__INIT;
	breq.container_id = "badspec";
	breq.oci_spec.data = (uint8_t *)"{\"ociVersion\": 1}";
	breq.oci_spec.len = strlen((char *)breq.oci_spec.data);
	breq.rootfs_dir = E.rootfs;
	assert_int_equal(call(SANDBOX, "CreateBundle", &breq.base, NULL, NULL, &st, 0),
			 TTRPC_INVALID_ARGUMENT);
	assert_non_null(strstr(st.message, "ociVersion"));
	char path[256];
	snprintf(path, sizeof(path), "%s/run/bundles/badspec", E.dir);
	struct stat sb;
	assert_int_equal(stat(path, &sb), -1);
	/* state errors */
	_cleanup_free_ char *b = create_bundle("st", "sleep 1000", false, &code);
	assert_int_equal(code, TTRPC_OK);
	assert_int_equal(create("st", b, 0, 0, 0, false, NULL, &st), TTRPC_OK);
	assert_int_equal(create("st", b, 0, 0, 0, false, NULL, &st), TTRPC_ALREADY_EXISTS);
	assert_int_equal(start("st", NULL, &st), TTRPC_OK);
	assert_int_equal(start("st", NULL, &st), TTRPC_FAILED_PRECONDITION);
	assert_int_equal(kill_proc("st", "no-such-exec", SIGKILL, false, &st), TTRPC_NOT_FOUND);
	assert_int_equal(kill_proc("st", NULL, 0, false, &st), TTRPC_INVALID_ARGUMENT);
	T(CreateTaskRequest) creq = CONTAINERD__TASK__V2__CREATE_TASK_REQUEST__INIT;
	creq.id = "uri";
	creq.bundle = b;
	creq.stdout = "file:///etc/passwd";
	assert_int_equal(call(TASK, "Create", &creq.base, NULL, NULL, &st, 0),
			 TTRPC_INVALID_ARGUMENT);
	assert_non_null(strstr(st.message, "file:///etc/passwd"));
	assert_int_equal(get_state("uri", NULL, &s, &st), TTRPC_NOT_FOUND);
	T(CheckpointTaskRequest) ck = CONTAINERD__TASK__V2__CHECKPOINT_TASK_REQUEST__INIT;
	ck.id = "st";
	assert_int_equal(call(TASK, "Checkpoint", &ck.base, NULL, NULL, &st, 0), TTRPC_UNIMPLEMENTED);
	/* pause without cgroups says why */
	T(PauseRequest) pr = CONTAINERD__TASK__V2__PAUSE_REQUEST__INIT;
	pr.id = "st";
	assert_int_equal(call(TASK, "Pause", &pr.base, NULL, NULL, &st, 0), TTRPC_FAILED_PRECONDITION);
	assert_non_null(strstr(st.message, "cgroups"));
	assert_int_equal(kill_proc("st", NULL, SIGKILL, false, &st), TTRPC_OK);
	uint32_t status;
	assert_int_equal(wait_exit("st", NULL, &status, &st), TTRPC_OK);
	assert_int_equal(delete("st", NULL, NULL, &st), TTRPC_OK);
}

static void test_created_then_deleted(void **state)
{
	(void)state;
	NEED_ROOT();
	int code;
	_cleanup_free_ char *b = create_bundle("never", "echo never-started", false, &code);
	assert_int_equal(code, TTRPC_OK);
	struct ttrpc_status st;
	uint32_t pid;
	assert_int_equal(create("never", b, 0, 0, 0, false, &pid, &st), TTRPC_OK);
	assert_int_equal(kill(pid, 0), 0);
	assert_int_equal(delete("never", NULL, NULL, &st), TTRPC_OK);
	/* the init process is gone (reaped by the agent) */
	for (int i = 0; i < 100 && kill(pid, 0) == 0; i++)
		usleep(20000);
	assert_int_equal(kill(pid, 0), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_check_and_details),
		cmocka_unit_test(test_create_sandbox),
		cmocka_unit_test(test_lifecycle),
		cmocka_unit_test(test_stdin),
		cmocka_unit_test(test_exec_kill_wait),
		cmocka_unit_test(test_wait_does_not_block_other_calls),
		cmocka_unit_test(test_fast_exit_output_complete),
		cmocka_unit_test(test_host_never_connects),
		cmocka_unit_test(test_terminal),
		cmocka_unit_test(test_events),
		cmocka_unit_test(test_bad_requests),
		cmocka_unit_test(test_created_then_deleted),
		cmocka_unit_test(test_disconnect_mid_call),
	};
	return cmocka_run_group_tests_name("agent", tests, setup, teardown);
}
