/* guest-client: talks to husk-agent inside a VM through husk-vsockd's hybrid
 * socket ("CONNECT <port>\n" -> "OK <n>\n", then raw bytes).
 *
 *   guest-client --uds PATH wait-ready [--timeout-ms N]
 *       retries Sandbox.Check until the agent answers; prints "ready_ms N"
 *   guest-client --uds PATH run --serial S --spec config.json [--id ID]
 *       CreateBundle from the disk with serial S, Create/Start with stdout
 *       and stderr over vsock, copies them to ours, exits with the
 *       container's exit status
 *   guest-client --uds PATH details | destroy
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "github.com/containerd/containerd/runtime/v2/task/shim.pb-c.h"
#include "husk/cleanup.h"
#include "husk/sandbox.pb-c.h"
#include "husk/sock.h"
#include "ttrpc/client.h"

#undef stdin
#undef stdout
#undef stderr

#define TASK "containerd.task.v2.Task"
#define SANDBOX "husk.sandbox.v1.Sandbox"
#define MS (1000ull * 1000)

static int die(const char *what, const char *msg)
{
	dprintf(2, "guest-client: %s: %s\n", what, msg);
	return 1;
}

/* A stream to guest port `port`, or -1 (refused, or no VM). */
static int vsock_connect(const char *uds, unsigned port)
{
	struct husk_err err = { 0 };
	int fd = husk_unix_connect(uds, &err);
	if (fd < 0)
		return -1;
	char line[64];
	int n = snprintf(line, sizeof(line), "CONNECT %u\n", port);
	if (write(fd, line, (size_t)n) != n) {
		close(fd);
		return -1;
	}
	/* Read the reply byte by byte: what follows it belongs to the stream. */
	size_t len = 0;
	while (len < sizeof(line) - 1) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 10000) != 1 || read(fd, line + len, 1) != 1) {
			close(fd);
			return -1;
		}
		if (line[len++] == '\n')
			break;
	}
	line[len] = '\0';
	if (strncmp(line, "OK ", 3) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static struct ttrpc_client *client_for(const char *uds, struct ev_loop *loop)
{
	int fd = vsock_connect(uds, 1024);
	if (fd < 0)
		return NULL;
	struct ttrpc_client *c = NULL;
	if (ttrpc_client_new(loop, fd, &c, NULL) < 0)
		return NULL;
	return c;
}

static int cmd_wait_ready(const char *uds, unsigned timeout_ms)
{
	struct ev_loop *loop;
	if (ev_loop_new(&loop, NULL) < 0)
		return 1;
	uint64_t t0 = ev_now_ns();
	while (ev_now_ns() - t0 < (uint64_t)timeout_ms * MS) {
		struct ttrpc_client *c = client_for(uds, loop);
		if (c) {
			Husk__Sandbox__V1__CheckRequest req = HUSK__SANDBOX__V1__CHECK_REQUEST__INIT;
			struct ttrpc_call_opts opts = { .timeout_ns = 2000 * MS };
			struct ttrpc_status st;
			ProtobufCMessage *resp = NULL;
			int code = ttrpc_client_call(c, SANDBOX, "Check", &req.base,
						     &husk__sandbox__v1__check_response__descriptor,
						     &opts, &resp, &st);
			if (code == TTRPC_OK) {
				printf("ready_ms %llu\nagent_version %s\n",
				       (unsigned long long)((ev_now_ns() - t0) / MS),
				       ((Husk__Sandbox__V1__CheckResponse *)resp)->version);
				protobuf_c_message_free_unpacked(resp, NULL);
				ttrpc_client_free(c);
				ev_loop_free(loop);
				return 0;
			}
			ttrpc_client_free(c);
			ev_run_once(loop, 0);
		}
		/* No event tells us the guest came up: poll at a modest rate. */
		usleep(20000);
	}
	ev_loop_free(loop);
	return die("wait-ready", "the agent did not answer in time");
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return NULL;
	char *buf = malloc(16 << 20);
	*len = buf ? fread(buf, 1, 16 << 20, f) : 0;
	fclose(f);
	return buf;
}

/* Copies guest port streams to our fds until both reach EOF. */
static void copy_streams(int o, int e)
{
	struct pollfd p[2] = { { .fd = o, .events = POLLIN }, { .fd = e, .events = POLLIN } };
	char buf[65536];
	while (p[0].fd >= 0 || p[1].fd >= 0) {
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			return;
		for (int i = 0; i < 2; i++) {
			if (p[i].fd < 0 || !p[i].revents)
				continue;
			ssize_t n = read(p[i].fd, buf, sizeof(buf));
			if (n <= 0) {
				close(p[i].fd);
				p[i].fd = -1;
				continue;
			}
			if (write(i == 0 ? 1 : 2, buf, (size_t)n) < 0)
				return;
		}
	}
}

static int cmd_run(const char *uds, const char *serial, const char *spec_path, const char *id)
{
	struct ev_loop *loop;
	if (ev_loop_new(&loop, NULL) < 0)
		return 1;
	struct ttrpc_client *c = client_for(uds, loop);
	if (!c)
		return die("run", "cannot reach the agent");
	size_t len;
	_cleanup_free_ char *spec = slurp(spec_path, &len);
	if (!spec)
		return die(spec_path, strerror(errno));
	struct ttrpc_status st;
	ProtobufCMessage *resp = NULL;
	Husk__Sandbox__V1__CreateBundleRequest b = HUSK__SANDBOX__V1__CREATE_BUNDLE_REQUEST__INIT;
	b.container_id = (char *)id;
	b.oci_spec.data = (uint8_t *)spec;
	b.oci_spec.len = len;
	b.rootfs_serial = (char *)serial;
	if (ttrpc_client_call(c, SANDBOX, "CreateBundle", &b.base,
			      &husk__sandbox__v1__create_bundle_response__descriptor, NULL, &resp, &st))
		return die("CreateBundle", st.message);
	char *bundle = strdup(((Husk__Sandbox__V1__CreateBundleResponse *)resp)->bundle);
	protobuf_c_message_free_unpacked(resp, NULL);

	Containerd__Task__V2__CreateTaskRequest cr = CONTAINERD__TASK__V2__CREATE_TASK_REQUEST__INIT;
	cr.id = (char *)id;
	cr.bundle = bundle;
	cr.stdout = "vsock://3001";
	cr.stderr = "vsock://3002";
	if (ttrpc_client_call(c, TASK, "Create", &cr.base,
			      &containerd__task__v2__create_task_response__descriptor, NULL, &resp, &st))
		return die("Create", st.message);
	protobuf_c_message_free_unpacked(resp, NULL);
	int o = vsock_connect(uds, 3001), e = vsock_connect(uds, 3002);
	if (o < 0 || e < 0)
		return die("stdio", "cannot connect to the container's stdout/stderr ports");
	Containerd__Task__V2__StartRequest sr = CONTAINERD__TASK__V2__START_REQUEST__INIT;
	sr.id = (char *)id;
	if (ttrpc_client_call(c, TASK, "Start", &sr.base, &containerd__task__v2__start_response__descriptor,
			      NULL, &resp, &st))
		return die("Start", st.message);
	protobuf_c_message_free_unpacked(resp, NULL);
	copy_streams(o, e);
	Containerd__Task__V2__WaitRequest wr = CONTAINERD__TASK__V2__WAIT_REQUEST__INIT;
	wr.id = (char *)id;
	if (ttrpc_client_call(c, TASK, "Wait", &wr.base, &containerd__task__v2__wait_response__descriptor,
			      NULL, &resp, &st))
		return die("Wait", st.message);
	int status = (int)((Containerd__Task__V2__WaitResponse *)resp)->exit_status;
	protobuf_c_message_free_unpacked(resp, NULL);
	Containerd__Task__V2__DeleteRequest dr = CONTAINERD__TASK__V2__DELETE_REQUEST__INIT;
	dr.id = (char *)id;
	if (ttrpc_client_call(c, TASK, "Delete", &dr.base,
			      &containerd__task__v2__delete_response__descriptor, NULL, &resp, &st))
		return die("Delete", st.message);
	protobuf_c_message_free_unpacked(resp, NULL);
	free(bundle);
	ttrpc_client_free(c);
	ev_loop_free(loop);
	return status;
}

static int cmd_simple(const char *uds, const char *method)
{
	struct ev_loop *loop;
	if (ev_loop_new(&loop, NULL) < 0)
		return 1;
	struct ttrpc_client *c = client_for(uds, loop);
	if (!c)
		return die(method, "cannot reach the agent");
	struct ttrpc_status st;
	ProtobufCMessage *resp = NULL;
	if (strcmp(method, "details") == 0) {
		Husk__Sandbox__V1__GuestDetailsRequest r = HUSK__SANDBOX__V1__GUEST_DETAILS_REQUEST__INIT;
		if (ttrpc_client_call(c, SANDBOX, "GuestDetails", &r.base,
				      &husk__sandbox__v1__guest_details_response__descriptor, NULL, &resp,
				      &st))
			return die("GuestDetails", st.message);
		Husk__Sandbox__V1__GuestDetailsResponse *d = (void *)resp;
		printf("kernel %s\nmem_bytes %llu\ncpus %u\nagent %s\n", d->kernel_release,
		       (unsigned long long)d->mem_total_bytes, d->cpus, d->agent_version);
	} else {
		Husk__Sandbox__V1__DestroySandboxRequest r = HUSK__SANDBOX__V1__DESTROY_SANDBOX_REQUEST__INIT;
		if (ttrpc_client_call(c, SANDBOX, "DestroySandbox", &r.base, NULL, NULL, &resp, &st))
			return die("DestroySandbox", st.message);
	}
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	ttrpc_client_free(c);
	ev_loop_free(loop);
	return 0;
}

/* Sends `text` to the debug console and prints what comes back until the
 * shell exits (EOF) or 20 s pass. */
static int cmd_console(const char *uds, const char *text)
{
	int fd = vsock_connect(uds, 1026);
	if (fd < 0)
		return die("console", "port 1026 refused (is husk.debug_console=1 set?)");
	size_t len = strlen(text);
	if (write(fd, text, len) != (ssize_t)len)
		return die("console", strerror(errno));
	char buf[4096];
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 20000) != 1)
			break;
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		if (write(1, buf, (size_t)n) < 0)
			break;
	}
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	const char *uds = NULL, *serial = NULL, *spec = NULL, *id = "c1";
	unsigned timeout_ms = 60000;
	static const struct option opts[] = {
		{ "uds", required_argument, NULL, 'u' },     { "serial", required_argument, NULL, 's' },
		{ "spec", required_argument, NULL, 'p' },    { "id", required_argument, NULL, 'i' },
		{ "timeout-ms", required_argument, NULL, 't' }, { 0 },
	};
	for (int o; (o = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
		switch (o) {
		case 'u': uds = optarg; break;
		case 's': serial = optarg; break;
		case 'p': spec = optarg; break;
		case 'i': id = optarg; break;
		case 't': timeout_ms = (unsigned)atoi(optarg); break;
		default: return 2;
		}
	}
	if (!uds || optind >= argc)
		return die("usage", "--uds PATH wait-ready|run|details|destroy");
	const char *cmd = argv[optind];
	if (strcmp(cmd, "wait-ready") == 0)
		return cmd_wait_ready(uds, timeout_ms);
	if (strcmp(cmd, "run") == 0) {
		if (!serial || !spec)
			return die("run", "--serial and --spec are required");
		return cmd_run(uds, serial, spec, id);
	}
	if (strcmp(cmd, "console") == 0 && optind + 1 < argc)
		return cmd_console(uds, argv[optind + 1]);
	if (strcmp(cmd, "details") == 0 || strcmp(cmd, "destroy") == 0)
		return cmd_simple(uds, cmd);
	return die("usage", "unknown command");
}
