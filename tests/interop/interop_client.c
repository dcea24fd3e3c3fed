/* ttrpc-interop-client --socket PATH: drives any server implementing
 * husk.test.Echo (proto/test/echo.proto) with libttrpc's client, and prints
 * one PASS/FAIL line per scenario. Pointed at containerd's Go ttrpc server,
 * it checks the C client against the reference implementation. */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "husk/cleanup.h"
#include "husk/sock.h"
#include "test/echo.pb-c.h"
#include "ttrpc/client.h"
#include "ttrpc/frame.h"

#define SVC "husk.test.Echo"
#define MS (1000ull * 1000)

struct ctx {
	struct ev_loop *loop;
	struct ttrpc_client *client;
	char why[512];
};

static bool failf(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool failf(struct ctx *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->why, sizeof(c->why), fmt, ap);
	va_end(ap);
	return false;
}

static int call(struct ctx *c, const char *method, const void *data, size_t len,
		const struct ttrpc_call_opts *opts, Husk__Test__Bytes **out, struct ttrpc_status *st)
{
	Husk__Test__Bytes in = HUSK__TEST__BYTES__INIT;
	in.value.data = (uint8_t *)data;
	in.value.len = len;
	ProtobufCMessage *resp = NULL;
	int code = ttrpc_client_call(c->client, SVC, method, &in.base,
				     &husk__test__bytes__descriptor, opts, &resp, st);
	if (out)
		*out = (Husk__Test__Bytes *)resp;
	else if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	return code;
}

static bool expect_echo(struct ctx *c, const void *data, size_t len)
{
	struct ttrpc_status st;
	Husk__Test__Bytes *out = NULL;
	int code = call(c, "Echo", data, len, NULL, &out, &st);
	if (code != TTRPC_OK)
		return failf(c, "Echo of %zu bytes: %s: %s", len, ttrpc_code_name(code), st.message);
	bool same = out->value.len == len && (len == 0 || memcmp(out->value.data, data, len) == 0);
	size_t got = out->value.len;
	protobuf_c_message_free_unpacked(&out->base, NULL);
	return same ? true : failf(c, "Echo of %zu bytes returned %zu different bytes", len, got);
}

static bool sc_echo(struct ctx *c)
{
	return expect_echo(c, "hello from C", 12);
}

static bool sc_empty(struct ctx *c)
{
	return expect_echo(c, "", 0);
}

struct tagged {
	int *order, *n, tag, code;
};

static void on_tagged(struct ttrpc_reply *reply, void *data)
{
	struct tagged *t = data;
	t->code = reply->status.code;
	t->order[(*t->n)++] = t->tag;
}

static bool start(struct ctx *c, const char *method, const char *value,
		  const struct ttrpc_call_opts *opts, ttrpc_reply_fn fn, void *data)
{
	Husk__Test__Bytes in = HUSK__TEST__BYTES__INIT;
	in.value.data = (uint8_t *)value;
	in.value.len = strlen(value);
	return ttrpc_client_start(c->client, SVC, method, &in.base, NULL, 0,
				  &husk__test__bytes__descriptor, opts, fn, data) == 0;
}

static bool run_until(struct ctx *c, const int *n, int target)
{
	while (*n < target)
		if (ev_run_once(c->loop, 10000) <= 0)
			return failf(c, "no progress for 10 s with %d of %d replies", *n, target);
	return true;
}

static bool sc_out_of_order(struct ctx *c)
{
	int order[3], n = 0;
	struct tagged t[3] = { { order, &n, 0, -1 }, { order, &n, 1, -1 }, { order, &n, 2, -1 } };
	if (!start(c, "Sleep", "300", NULL, on_tagged, &t[0]) ||
	    !start(c, "Sleep", "10", NULL, on_tagged, &t[1]) ||
	    !start(c, "Echo", "x", NULL, on_tagged, &t[2]))
		return failf(c, "could not start calls");
	if (!run_until(c, &n, 3))
		return false;
	for (int i = 0; i < 3; i++)
		if (t[i].code != TTRPC_OK)
			return failf(c, "call %d: %s", i, ttrpc_code_name(t[i].code));
	if (order[2] != 0)
		return failf(c, "Sleep(300) finished before a later, faster call (order %d,%d,%d)",
			     order[0], order[1], order[2]);
	return true;
}

struct counted {
	int *done, *ok;
	char expect[32];
};

static void on_counted(struct ttrpc_reply *reply, void *data)
{
	struct counted *k = data;
	const Husk__Test__Bytes *b = (const Husk__Test__Bytes *)reply->msg;
	if (reply->status.code == TTRPC_OK && b && b->value.len == strlen(k->expect) &&
	    memcmp(b->value.data, k->expect, b->value.len) == 0)
		(*k->ok)++;
	(*k->done)++;
}

static bool sc_concurrent(struct ctx *c)
{
	enum { N = 1280 };
	static struct counted calls[N];
	int done = 0, ok = 0;
	for (int i = 0; i < N; i++) {
		calls[i] = (struct counted){ &done, &ok, "" };
		snprintf(calls[i].expect, sizeof(calls[i].expect), "req-%d", i);
		if (!start(c, "Echo", calls[i].expect, NULL, on_counted, &calls[i]))
			return failf(c, "could not start call %d", i);
	}
	if (!run_until(c, &done, N))
		return false;
	return ok == N ? true : failf(c, "%d of %d replies matched their request", ok, N);
}

static bool sc_error_codes(struct ctx *c)
{
	static const int codes[] = { 5, 3, 9, 12, 13, 6 };
	for (size_t i = 0; i < ARRAY_SIZE(codes); i++) {
		char req[64], want[32];
		snprintf(want, sizeof(want), "some message %d", codes[i]);
		snprintf(req, sizeof(req), "%d %s", codes[i], want);
		struct ttrpc_status st;
		int code = call(c, "Fail", req, strlen(req), NULL, NULL, &st);
		if (code != codes[i] || strcmp(st.message, want) != 0)
			return failf(c, "Fail(%d): got %s %s", codes[i], ttrpc_code_name(code),
				     st.message);
	}
	return true;
}

static bool sc_unknown_method(struct ctx *c)
{
	struct ttrpc_status st;
	Husk__Test__Bytes in = HUSK__TEST__BYTES__INIT;
	int code = ttrpc_client_call(c->client, SVC, "NoSuchMethod", &in.base, NULL, NULL, NULL, &st);
	if (code != TTRPC_UNIMPLEMENTED)
		return failf(c, "unknown method: %s", ttrpc_code_name(code));
	code = ttrpc_client_call(c->client, "husk.test.Nope", "Echo", &in.base, NULL, NULL, NULL, &st);
	if (code != TTRPC_UNIMPLEMENTED)
		return failf(c, "unknown service: %s", ttrpc_code_name(code));
	return true;
}

static bool sc_metadata(struct ctx *c)
{
	static const struct ttrpc_kv md[] = {
		{ "containerd-namespace-ttrpc", "k8s.io" }, { "multi", "a" }, { "multi", "b" }
	};
	struct ttrpc_call_opts opts = { .metadata = md, .n_metadata = ARRAY_SIZE(md) };
	static const char *const keys[] = { "containerd-namespace-ttrpc", "multi" };
	static const char *const want[] = { "k8s.io", "a,b" };
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		struct ttrpc_status st;
		Husk__Test__Bytes *out = NULL;
		int code = call(c, "Metadata", keys[i], strlen(keys[i]), &opts, &out, &st);
		if (code != TTRPC_OK)
			return failf(c, "Metadata(%s): %s %s", keys[i], ttrpc_code_name(code), st.message);
		bool same = out->value.len == strlen(want[i]) &&
			    memcmp(out->value.data, want[i], out->value.len) == 0;
		protobuf_c_message_free_unpacked(&out->base, NULL);
		if (!same)
			return failf(c, "Metadata(%s) did not return %s", keys[i], want[i]);
	}
	struct ttrpc_status st;
	int code = call(c, "Metadata", "absent", 6, &opts, NULL, &st);
	return code == TTRPC_NOT_FOUND ? true : failf(c, "absent key: %s", ttrpc_code_name(code));
}

static bool sc_big_payload(struct ctx *c)
{
	size_t len = TTRPC_MAX_PAYLOAD - 1024;
	_cleanup_free_ uint8_t *big = malloc(len);
	if (!big)
		return failf(c, "out of memory");
	for (size_t i = 0; i < len; i++)
		big[i] = (uint8_t)(i * 31 + 1);
	struct ttrpc_status st;
	Husk__Test__Bytes *out = NULL;
	int code = call(c, "Size", big, len, NULL, &out, &st);
	if (code != TTRPC_OK)
		return failf(c, "Size: %s %s", ttrpc_code_name(code), st.message);
	char want[32];
	snprintf(want, sizeof(want), "%zu", len);
	bool same = out->value.len == strlen(want) && memcmp(out->value.data, want, out->value.len) == 0;
	protobuf_c_message_free_unpacked(&out->base, NULL);
	if (!same)
		return failf(c, "Size did not return %s", want);
	return expect_echo(c, big, len);
}

static bool sc_oversized(struct ctx *c)
{
	size_t len = TTRPC_MAX_PAYLOAD + 16;
	_cleanup_free_ uint8_t *big = calloc(1, len);
	struct ttrpc_status st;
	int code = call(c, "Echo", big, len, NULL, NULL, &st);
	if (code != TTRPC_RESOURCE_EXHAUSTED)
		return failf(c, "oversized request: %s", ttrpc_code_name(code));
	return expect_echo(c, "after", 5);
}

static bool sc_deadline(struct ctx *c)
{
	struct ttrpc_call_opts opts = { .timeout_ns = 200 * MS };
	struct ttrpc_status st;
	uint64_t t0 = ev_now_ns();
	int code = call(c, "Block", "", 0, &opts, NULL, &st);
	uint64_t took = ev_now_ns() - t0;
	if (code != TTRPC_DEADLINE_EXCEEDED)
		return failf(c, "Block: %s %s", ttrpc_code_name(code), st.message);
	if (took < 150 * MS)
		return failf(c, "deadline expired after %llu ms, before 200 ms",
			     (unsigned long long)(took / MS));
	return expect_echo(c, "after", 5);
}

static bool sc_after_all(struct ctx *c)
{
	return expect_echo(c, "final", 5);
}

int main(int argc, char **argv)
{
	const char *path = NULL, *only = NULL;
	static const struct option opts[] = { { "socket", required_argument, NULL, 's' },
					      { "only", required_argument, NULL, 'o' },
					      { 0 } };
	for (int o; (o = getopt_long(argc, argv, "s:o:", opts, NULL)) != -1;) {
		if (o == 's')
			path = optarg;
		else if (o == 'o')
			only = optarg;
		else
			return 2;
	}
	if (!path) {
		fprintf(stderr, "usage: %s --socket PATH [--only NAME]\n", argv[0]);
		return 2;
	}
	static const struct {
		const char *name;
		bool (*fn)(struct ctx *);
	} scenarios[] = {
		{ "echo", sc_echo },
		{ "empty", sc_empty },
		{ "out-of-order", sc_out_of_order },
		{ "concurrent", sc_concurrent },
		{ "error-codes", sc_error_codes },
		{ "unknown-method", sc_unknown_method },
		{ "metadata", sc_metadata },
		{ "big-payload", sc_big_payload },
		{ "oversized", sc_oversized },
		{ "deadline", sc_deadline },
		{ "after-all", sc_after_all },
	};
	struct husk_err err = { 0 };
	struct ctx c = { 0 };
	int fd;
	if (ev_loop_new(&c.loop, &err) < 0 || (fd = husk_unix_connect(path, &err)) < 0 ||
	    ttrpc_client_new(c.loop, fd, &c.client, &err) < 0) {
		fprintf(stderr, "ttrpc-interop-client: %s\n", err.msg);
		return 1;
	}
	int passed = 0, failed = 0;
	for (size_t i = 0; i < ARRAY_SIZE(scenarios); i++) {
		if (only && strcmp(only, scenarios[i].name) != 0)
			continue;
		c.why[0] = '\0';
		if (scenarios[i].fn(&c)) {
			printf("PASS %s\n", scenarios[i].name);
			passed++;
		} else {
			printf("FAIL %s: %s\n", scenarios[i].name, c.why);
			failed++;
		}
		fflush(stdout);
	}
	printf("c-client: %d passed, %d failed\n", passed, failed);
	ttrpc_client_free(c.client);
	ev_loop_free(c.loop);
	return failed || !passed ? 1 : 0;
}
