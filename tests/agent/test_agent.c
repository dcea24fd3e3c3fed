/* husk-agent on the host with --listen unix:, driven through libttrpc: the
 * Sandbox and Task services end to end with real containers (busybox
 * rootfs, overlay from CreateBundle), stdio over the per-port sockets.
 * Needs root (mounts, namespaces); skips otherwise. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <netinet/in.h>
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
	pid_t agent2; /* test_portfwd_socket_removed_at_exit's, while it runs */
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

/* Starts husk-agent --listen unix:SOCK and waits for its "ready" line;
 * returns its pid, or -1. */
static pid_t start_agent(const char *sock, const char *rundir)
{
	int out[2];
	if (pipe(out) < 0)
		return -1;
	pid_t pid = fork();
	if (pid < 0) {
		close(out[0]);
		close(out[1]);
		return -1;
	}
	if (pid == 0) {
		dup2(out[1], 1);
		char listen[160];
		snprintf(listen, sizeof(listen), "unix:%s", sock);
		execl(agent_bin, "husk-agent", "--listen", listen, "--run-dir", rundir, "--no-cgroups",
		      (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	char buf[16] = "";
	struct pollfd p = { .fd = out[0], .events = POLLIN };
	bool ok = poll(&p, 1, 20000) == 1 && read(out[0], buf, sizeof(buf) - 1) > 0 &&
		  strncmp(buf, "ready", 5) == 0;
	close(out[0]);
	if (!ok) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return -1;
	}
	return pid;
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
	char rundir[128];
	snprintf(rundir, sizeof(rundir), "%s/run", E.dir);
	E.agent = start_agent(E.sock, rundir);
	if (E.agent < 0)
		return -1;
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
	if (E.agent2 > 0) { /* a failed test left it */
		kill(E.agent2, SIGKILL);
		waitpid(E.agent2, NULL, 0);
	}
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

/* ---- port forwarding: port 1027 (agent/portfwd.c) ---- */

#define FWD_PORT 1027
#define FWD_WAIT_MS 10000

/* A TCP listener of the test's own on 127.0.0.1, on a free port. */
static int tcp_listen(unsigned *port)
{
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(s >= 0);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	assert_int_equal(bind(s, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(s, 16), 0);
	socklen_t l = sizeof(sin);
	assert_int_equal(getsockname(s, (struct sockaddr *)&sin, &l), 0);
	*port = ntohs(sin.sin_port);
	return s;
}

static void wait_readable(int fd, const char *what)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int r;
	do
		r = poll(&p, 1, FWD_WAIT_MS);
	while (r < 0 && errno == EINTR);
	if (r != 1)
		fail_msg("%s: nothing after %d ms", what, FWD_WAIT_MS);
}

/* The agent's connection to the test's listener. */
static int accept_fwd(int lfd)
{
	wait_readable(lfd, "the agent's connect to the listener");
	int s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	assert_true(s >= 0);
	return s;
}

static void wait_writable(int fd, const char *what)
{
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	int r;
	do
		r = poll(&p, 1, FWD_WAIT_MS);
	while (r < 0 && errno == EINTR);
	if (r != 1)
		fail_msg("%s: not writable for %d ms", what, FWD_WAIT_MS);
}

/* All of `buf`, each write bounded in time: what the kernel and the relay
 * buffer must hold it without the other end reading. */
static void send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t n = send(fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && errno == EAGAIN) {
			wait_writable(fd, "send");
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			fail_msg("send: %s", strerror(errno));
		p += n;
		len -= (size_t)n;
	}
}

/* Exactly `len` bytes, each read bounded in time. */
static void recv_exact(int fd, void *buf, size_t len, const char *what)
{
	char *p = buf;
	while (len) {
		wait_readable(fd, what);
		ssize_t n = recv(fd, p, len, MSG_DONTWAIT);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			fail_msg("%s: %s with %zu bytes missing", what, n ? strerror(errno) : "EOF", len);
		p += n;
		len -= (size_t)n;
	}
}

/* The agent's answer line, a byte at a time so that nothing after it is
 * taken: "0\n" or "<errno>\n". */
static void read_answer(int fd, char *buf, size_t size)
{
	size_t n = 0;
	for (;;) {
		assert_true(n + 1 < size);
		recv_exact(fd, buf + n, 1, "the answer line");
		if (buf[n++] == '\n')
			break;
	}
	buf[n] = '\0';
}

/* The next read is the end of the stream (nothing more arrives first). A
 * unix socket whose peer closed with bytes of ours unread reports
 * ECONNRESET once before EOF: allowed where `reset_ok`. */
static void expect_eof(int fd, bool reset_ok, const char *what)
{
	char c;
	wait_readable(fd, what);
	ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
	if (n < 0 && errno == ECONNRESET && reset_ok) {
		wait_readable(fd, what);
		n = recv(fd, &c, 1, MSG_DONTWAIT);
	}
	if (n != 0)
		fail_msg("%s: expected EOF, got %s", what,
			 n > 0 ? "a byte" : strerror(errno));
}

/* Connects to port 1027 and sends `req` (the port line and what follows). */
static int fwd_send(const char *req, size_t len)
{
	int c = connect_port(FWD_PORT);
	send_all(c, req, len);
	return c;
}

/* A forward to `port` that the agent answers with "0\n": returns the
 * client's end, *s the TCP connection the test's listener accepted. */
static int fwd_open(int lfd, unsigned port, int *s)
{
	char req[16], ans[16];
	int n = snprintf(req, sizeof(req), "%u\n", port);
	int c = fwd_send(req, (size_t)n);
	*s = accept_fwd(lfd);
	read_answer(c, ans, sizeof(ans));
	assert_string_equal(ans, "0\n");
	return c;
}

/* What the agent answers a request, and that it then closes. */
static void fwd_refused(const char *req, const char *want, bool reset_ok)
{
	char ans[16];
	_cleanup_fd_ int c = fwd_send(req, strlen(req));
	read_answer(c, ans, sizeof(ans));
	if (strcmp(ans, want) != 0)
		fail_msg("request \"%.*s\\n\": answer \"%.*s\\n\", expected \"%.*s\\n\"",
			 (int)strlen(req) - 1, req, (int)strlen(ans) - 1, ans, (int)strlen(want) - 1, want);
	expect_eof(c, reset_ok, "after a refusal");
}

/* Bytes that show a reordering, a loss or a duplicate. */
static uint8_t *pattern(size_t len, uint32_t seed)
{
	uint8_t *b = malloc(len);
	assert_non_null(b);
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13, x ^= x >> 17, x ^= x << 5;
		b[i] = (uint8_t)x;
	}
	return b;
}

/* One direction of a transfer: `len` bytes sent on `from` must arrive
 * intact on `to`. */
struct way {
	int from, to;
	size_t len;
	uint8_t *data, *got;
	size_t sent, recvd;
};

static void way_init(struct way *w, int from, int to, size_t len, uint32_t seed)
{
	*w = (struct way){ .from = from, .to = to, .len = len, .data = pattern(len, seed),
			   .got = malloc(len ? len : 1) };
	assert_non_null(w->got);
}

/* Moves every way at once, nonblocking, polling all ends: a relay that
 * stops reading one side while the other is full shows up as no progress
 * for 30 s instead of a hang. Frees the buffers. */
static void pump(struct way *w, size_t n)
{
	struct pollfd p[32];
	assert_true(2 * n <= 32);
	uint64_t last_progress = ev_now_ns();
	for (;;) {
		size_t k = 0;
		int idx[32];
		for (size_t i = 0; i < n; i++) {
			if (w[i].sent < w[i].len) {
				idx[k] = (int)(2 * i);
				p[k++] = (struct pollfd){ .fd = w[i].from, .events = POLLOUT };
			}
			if (w[i].recvd < w[i].len) {
				idx[k] = (int)(2 * i + 1);
				p[k++] = (struct pollfd){ .fd = w[i].to, .events = POLLIN };
			}
		}
		if (!k)
			break;
		int r = poll(p, k, 1000);
		if (r < 0 && errno != EINTR)
			fail_msg("poll: %s", strerror(errno));
		bool moved = false;
		for (size_t j = 0; r > 0 && j < k; j++) {
			if (!p[j].revents)
				continue;
			struct way *x = &w[idx[j] / 2];
			if (idx[j] % 2 == 0) {
				size_t chunk = x->len - x->sent < 65536 ? x->len - x->sent : 65536;
				ssize_t m = send(x->from, x->data + x->sent, chunk, MSG_DONTWAIT | MSG_NOSIGNAL);
				if (m < 0 && errno != EAGAIN && errno != EINTR)
					fail_msg("way %d: send after %zu bytes: %s", idx[j] / 2, x->sent,
						 strerror(errno));
				if (m > 0)
					x->sent += (size_t)m, moved = true;
			} else {
				ssize_t m = recv(x->to, x->got + x->recvd, x->len - x->recvd, MSG_DONTWAIT);
				if (m == 0 || (m < 0 && errno != EAGAIN && errno != EINTR))
					fail_msg("way %d: %s after %zu of %zu bytes", idx[j] / 2,
						 m ? strerror(errno) : "EOF", x->recvd, x->len);
				if (m > 0)
					x->recvd += (size_t)m, moved = true;
			}
		}
		if (moved)
			last_progress = ev_now_ns();
		else if (ev_now_ns() - last_progress > 30000 * MS)
			fail_msg("no progress for 30 s");
	}
	for (size_t i = 0; i < n; i++) {
		if (memcmp(w[i].data, w[i].got, w[i].len) != 0)
			fail_msg("way %zu: %zu bytes arrived changed", i, w[i].len);
		free(w[i].data);
		free(w[i].got);
	}
}

/* The agent's fds come back to `before` once it has seen every close (a
 * bound against hangs, not a timing assertion). */
static void wait_agent_fds(int before)
{
	int now = -1;
	for (int i = 0; i < 500 && (now = agent_fd_count()) != before; i++)
		usleep(10000);
	assert_int_equal(now, before);
}

static void check_agent_answers(void)
{
	Husk__Sandbox__V1__CheckRequest req = HUSK__SANDBOX__V1__CHECK_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	struct ttrpc_status st;
	assert_int_equal(call(SANDBOX, "Check", &req.base, &husk__sandbox__v1__check_response__descriptor,
			      &resp, &st, 10000 * MS),
			 TTRPC_OK);
	protobuf_c_message_free_unpacked(resp, NULL);
}

/* Bytes both ways, intact, through the relay: what the client sends after
 * its port line is the stream's; the answer comes before the server's
 * first bytes; large transfers one way and both ways at once. */
static void test_portfwd_relay(void **state)
{
	(void)state;
	NEED_ROOT();
	int before = agent_fd_count();
	unsigned port;
	_cleanup_fd_ int lfd = tcp_listen(&port);
	char req[32];
	int n = snprintf(req, sizeof(req), "%u\nearly", port);
	_cleanup_fd_ int c = fwd_send(req, (size_t)n);
	_cleanup_fd_ int s = accept_fwd(lfd);
	/* The server speaks first, at once: still after the answer. */
	send_all(s, "greeting", 8);
	char ans[16], buf[16];
	read_answer(c, ans, sizeof(ans));
	assert_string_equal(ans, "0\n");
	recv_exact(c, buf, 8, "the greeting");
	assert_memory_equal(buf, "greeting", 8);
	recv_exact(s, buf, 5, "the bytes after the port line");
	assert_memory_equal(buf, "early", 5);

	/* Both ways at once, several hundred KiB each. */
	struct way w[2];
	way_init(&w[0], c, s, 768 << 10, 1);
	way_init(&w[1], s, c, 320 << 10, 2);
	pump(w, 2);
	/* One way while the other side only reads, each way in turn. */
	way_init(&w[0], s, c, 512 << 10, 3);
	pump(w, 1);
	way_init(&w[0], c, s, 512 << 10, 4);
	pump(w, 1);
	/* A small echo round trip still works after all that. */
	send_all(c, "ping", 4);
	recv_exact(s, buf, 4, "ping");
	send_all(s, buf, 4);
	recv_exact(c, buf, 4, "echo");
	assert_memory_equal(buf, "ping", 4);

	close(take_fd(&c));
	expect_eof(s, false, "the server after the client closed");
	close(take_fd(&s));
	wait_agent_fds(before);
}

/* A half-close crosses over, either way, and the other way keeps going:
 * what was sent before a close all arrives before the EOF. */
static void test_portfwd_half_close(void **state)
{
	(void)state;
	NEED_ROOT();
	int before = agent_fd_count();
	unsigned port;
	_cleanup_fd_ int lfd = tcp_listen(&port);
	char buf[32];

	/* The client stops sending: the server reads EOF, still answers,
	 * then closes; the client reads all of it, then EOF. */
	int s;
	_cleanup_fd_ int c = fwd_open(lfd, port, &s);
	send_all(c, "request", 7);
	assert_int_equal(shutdown(c, SHUT_WR), 0);
	recv_exact(s, buf, 7, "the request");
	assert_memory_equal(buf, "request", 7);
	expect_eof(s, false, "the server after the client's SHUT_WR");
	struct way w;
	way_init(&w, s, c, 256 << 10, 5);
	pump(&w, 1);
	size_t tail = 200 << 10;
	_cleanup_free_ uint8_t *data = pattern(tail, 6);
	send_all(s, data, tail); /* the kernel's buffers plus the relay's hold it */
	close(s);
	size_t len;
	_cleanup_free_ char *rest = read_all(c, &len);
	assert_int_equal(len, tail);
	assert_memory_equal(rest, data, tail);
	close(take_fd(&c));

	/* The server stops sending: the client reads EOF, still sends, then
	 * closes; the server reads all of it, then EOF. */
	c = fwd_open(lfd, port, &s);
	send_all(s, "banner", 6);
	assert_int_equal(shutdown(s, SHUT_WR), 0);
	recv_exact(c, buf, 6, "the banner");
	assert_memory_equal(buf, "banner", 6);
	expect_eof(c, false, "the client after the server's SHUT_WR");
	way_init(&w, c, s, 256 << 10, 7);
	pump(&w, 1);
	send_all(c, "bye", 3);
	close(take_fd(&c));
	_cleanup_free_ char *last = read_all(s, &len);
	assert_int_equal(len, 3);
	assert_memory_equal(last, "bye", 3);
	close(s);
	wait_agent_fds(before);
}

/* A port bound on `family`'s loopback without listening: nobody can
 * listen on it there while the test runs, and a connect is refused.
 * Returns the fd, or -1 where the address is not configured. */
static int bind_loopback(int family, unsigned *port)
{
	int s = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -1;
	struct sockaddr_storage ss = { 0 };
	socklen_t len;
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		*sin = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons((uint16_t)*port),
					     .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		len = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
		*sin6 = (struct sockaddr_in6){ .sin6_family = AF_INET6, .sin6_port = htons((uint16_t)*port),
					       .sin6_addr = IN6ADDR_LOOPBACK_INIT };
		len = sizeof(*sin6);
	}
	if (bind(s, (struct sockaddr *)&ss, len) < 0 || getsockname(s, (struct sockaddr *)&ss, &len) < 0) {
		int e = errno;
		close(s);
		errno = e;
		return -1;
	}
	*port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
					: ((struct sockaddr_in6 *)&ss)->sin6_port);
	return s;
}

/* Nobody on the port (neither 127.0.0.1 nor ::1): ECONNREFUSED, then the
 * agent closes. */
static void test_portfwd_refused(void **state)
{
	(void)state;
	NEED_ROOT();
	int before = agent_fd_count();
	unsigned port = 0;
	_cleanup_fd_ int v4 = -1;
	_cleanup_fd_ int v6 = -1;
	for (int i = 0; i < 20; i++) {
		port = 0;
		v4 = bind_loopback(AF_INET, &port);
		assert_true(v4 >= 0);
		v6 = bind_loopback(AF_INET6, &port); /* where ::1 is there */
		if (v6 >= 0 || errno != EADDRINUSE)
			break;
		close(take_fd(&v4)); /* someone has it on ::1: another */
	}
	assert_true(v4 >= 0);
	char req[16];
	snprintf(req, sizeof(req), "%u\n", port);
	fwd_refused(req, "111\n", false);
	wait_agent_fds(before);
}

/* Nobody on 127.0.0.1 but a server on ::1: the agent gets there. */
static void test_portfwd_ipv6_fallback(void **state)
{
	(void)state;
	NEED_ROOT();
	int before = agent_fd_count();
	unsigned port = 0;
	_cleanup_fd_ int lfd = bind_loopback(AF_INET6, &port);
	if (lfd < 0)
		skip(); /* no ::1 here */
	assert_int_equal(listen(lfd, 4), 0);
	_cleanup_fd_ int v4 = bind_loopback(AF_INET, &port);
	if (v4 < 0)
		skip(); /* someone has the port on 127.0.0.1 */
	int s;
	_cleanup_fd_ int c = fwd_open(lfd, port, &s);
	char buf[4];
	send_all(c, "six", 3);
	recv_exact(s, buf, 3, "six");
	assert_memory_equal(buf, "six", 3);
	send_all(s, "xis", 3);
	recv_exact(c, buf, 3, "xis");
	assert_memory_equal(buf, "xis", 3);
	close(s);
	expect_eof(c, false, "the client after the server closed");
	close(take_fd(&c));
	wait_agent_fds(before);
}

/* Requests that are no TCP port: EINVAL, then the agent closes. Clients
 * that go away before or while asking leave nothing behind, and the agent
 * goes on serving forwards and ttrpc. */
static void test_portfwd_bad_requests(void **state)
{
	(void)state;
	NEED_ROOT();
	int before = agent_fd_count();
	/* The whole line read: a clean EOF after the answer. */
	fwd_refused("0\n", "22\n", false);
	fwd_refused("70000\n", "22\n", false);
	fwd_refused("\n", "22\n", false);
	fwd_refused("0000000\n", "22\n", false);
	/* Refused mid-line: the rest of the line is left unread, which a unix
	 * socket may report as ECONNRESET before the EOF. */
	fwd_refused("abc\n", "22\n", true);
	fwd_refused("1234567890\n", "22\n", true);
	fwd_refused("80 \n", "22\n", true);
	fwd_refused("-1\n", "22\n", true);
	fwd_refused("8080\r\n", "22\n", true);
	/* Gone without a word, or halfway through the port. */
	for (int i = 0; i < 5; i++) {
		close(connect_port(FWD_PORT));
		int c = fwd_send("80", 2);
		close(c);
	}
	wait_agent_fds(before);
	/* Still serving. */
	unsigned port;
	_cleanup_fd_ int lfd = tcp_listen(&port);
	int s;
	_cleanup_fd_ int c = fwd_open(lfd, port, &s);
	char buf[4];
	send_all(c, "hi", 2);
	recv_exact(s, buf, 2, "hi");
	assert_memory_equal(buf, "hi", 2);
	close(s);
	expect_eof(c, false, "the client after the server closed");
	close(take_fd(&c));
	check_agent_answers();
	wait_agent_fds(before);
}

/* Several forwards at once, to several ports, all moving together. */
static void test_portfwd_concurrent(void **state)
{
	(void)state;
	NEED_ROOT();
	enum { N = 4 };
	int before = agent_fd_count();
	int lfd[N], c[N], s[N];
	unsigned port[N];
	for (int i = 0; i < N; i++)
		lfd[i] = tcp_listen(&port[i]);
	/* All asked before any is accepted. */
	for (int i = 0; i < N; i++) {
		char req[16];
		int n = snprintf(req, sizeof(req), "%u\n", port[i]);
		c[i] = fwd_send(req, (size_t)n);
	}
	for (int i = N - 1; i >= 0; i--)
		s[i] = accept_fwd(lfd[i]);
	for (int i = 0; i < N; i++) {
		char ans[16];
		read_answer(c[i], ans, sizeof(ans));
		assert_string_equal(ans, "0\n");
	}
	struct way w[2 * N];
	for (int i = 0; i < N; i++) {
		way_init(&w[2 * i], c[i], s[i], (size_t)(128 + 32 * i) << 10, 10 + (uint32_t)i);
		way_init(&w[2 * i + 1], s[i], c[i], (size_t)(256 - 32 * i) << 10, 20 + (uint32_t)i);
	}
	pump(w, 2 * N);
	for (int i = 0; i < N; i++) {
		close(c[i]);
		expect_eof(s[i], false, "a server after its client closed");
		close(s[i]);
		close(lfd[i]);
	}
	wait_agent_fds(before);
	check_agent_answers();
}

/* A second agent of its own: its port 1027 socket exists while it runs
 * and is gone once it has exited, cleanly (its ASan included), after
 * serving a forward. (Each forward here is over, the agent's side closed,
 * before SIGTERM: one still open at the exit is leaked, which ASan reports
 * as a failed exit.) */
static void test_portfwd_socket_removed_at_exit(void **state)
{
	(void)state;
	NEED_ROOT();
	char sock[160], fwd_path[192], rundir[160];
	snprintf(sock, sizeof(sock), "%s/second.sock", E.dir);
	snprintf(fwd_path, sizeof(fwd_path), "%s_%u", sock, FWD_PORT);
	snprintf(rundir, sizeof(rundir), "%s/run2", E.dir);
	pid_t pid = E.agent2 = start_agent(sock, rundir); /* teardown kills it if we fail */
	assert_true(pid > 0);
	struct stat sb;
	assert_int_equal(stat(fwd_path, &sb), 0);
	assert_true(S_ISSOCK(sb.st_mode));
	struct husk_err err = { 0 };
	_cleanup_fd_ int c = husk_unix_connect(fwd_path, &err);
	if (c < 0)
		fail_msg("connect %s: %s", fwd_path, err.msg);
	/* The agent closes first, so it is done with this one. */
	send_all(c, "0\n", 2);
	char ans[16];
	read_answer(c, ans, sizeof(ans));
	assert_string_equal(ans, "22\n");
	expect_eof(c, false, "after a refusal");
	close(take_fd(&c));
	/* Still open at exit, which drops them without a leak (ASan's exit
	 * status says): one relaying, one waiting for the rest of its line. */
	unsigned port;
	_cleanup_fd_ int lfd = tcp_listen(&port);
	_cleanup_fd_ int relaying = husk_unix_connect(fwd_path, &err);
	_cleanup_fd_ int pending = husk_unix_connect(fwd_path, &err);
	assert_true(relaying >= 0 && pending >= 0);
	char req[16];
	int n = snprintf(req, sizeof(req), "%u\n", port);
	send_all(relaying, req, (size_t)n);
	_cleanup_fd_ int server = accept_fwd(lfd);
	read_answer(relaying, ans, sizeof(ans));
	assert_string_equal(ans, "0\n");
	send_all(relaying, "x", 1);
	recv_exact(server, ans, 1, "a byte through the forward");
	send_all(pending, "80", 2);
	kill(pid, SIGTERM);
	int status = 0;
	pid_t r = 0;
	for (int i = 0; i < 1000 && (r = waitpid(pid, &status, WNOHANG)) == 0; i++)
		usleep(10000);
	if (r == 0)
		fail_msg("the agent did not exit within 10 s of SIGTERM");
	E.agent2 = 0;
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(stat(fwd_path, &sb), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(stat(sock, &sb), -1);
	/* The agent's ends went with it. */
	expect_eof(relaying, true, "the relaying forward after the agent's exit");
	expect_eof(server, true, "the guest side after the agent's exit");
	expect_eof(pending, true, "the pending forward after the agent's exit");
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
		cmocka_unit_test(test_portfwd_relay),
		cmocka_unit_test(test_portfwd_half_close),
		cmocka_unit_test(test_portfwd_refused),
		cmocka_unit_test(test_portfwd_ipv6_fallback),
		cmocka_unit_test(test_portfwd_bad_requests),
		cmocka_unit_test(test_portfwd_concurrent),
		cmocka_unit_test(test_portfwd_socket_removed_at_exit),
	};
	return cmocka_run_group_tests_name("agent", tests, setup, teardown);
}
