#include "echo_service.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "husk/cleanup.h"
#include "test/echo.pb-c.h"

static void reply_bytes(struct ttrpc_call *call, const void *data, size_t len)
{
	Husk__Test__Bytes out = HUSK__TEST__BYTES__INIT;
	out.value.data = (uint8_t *)data;
	out.value.len = len;
	ttrpc_call_reply(call, &out.base);
}

/* value as a NUL-terminated string, bounded */
static void value_str(const Husk__Test__Bytes *in, char *buf, size_t size)
{
	size_t n = in->value.len < size - 1 ? in->value.len : size - 1;
	memcpy(buf, in->value.data, n);
	buf[n] = '\0';
}

static void on_echo(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	(void)data;
	const Husk__Test__Bytes *in = (const Husk__Test__Bytes *)req;
	reply_bytes(call, in->value.data, in->value.len);
}

struct sleeper {
	struct ttrpc_call *call;
	const Husk__Test__Bytes *req; /* owned by the call until it ends */
	struct ev_timer *timer;
	struct echo_service *ctx;
};

static void sleeper_done(void *data)
{
	struct sleeper *s = data;
	s->timer = NULL;
	reply_bytes(s->call, s->req->value.data, s->req->value.len);
	free(s);
}

static void sleeper_cancel(struct ttrpc_call *call, void *data)
{
	(void)call;
	struct sleeper *s = data;
	s->ctx->cancelled++;
	ev_timer_cancel(s->timer);
	free(s);
}

static void on_sleep(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct echo_service *ctx = data;
	char buf[32];
	value_str((const Husk__Test__Bytes *)req, buf, sizeof(buf));
	char *end;
	unsigned long ms = strtoul(buf, &end, 10);
	if (end == buf || *end) {
		ttrpc_call_fail(call, TTRPC_INVALID_ARGUMENT, "Sleep: %s is not a number of ms", buf);
		return;
	}
	struct sleeper *s = calloc(1, sizeof(*s));
	if (!s || ev_timer_add(ctx->loop, ms * 1000000ull, sleeper_done, s, &s->timer) < 0) {
		free(s);
		ttrpc_call_fail(call, TTRPC_RESOURCE_EXHAUSTED, "Sleep: out of memory");
		return;
	}
	s->call = call;
	s->req = (const Husk__Test__Bytes *)req;
	s->ctx = ctx;
	ttrpc_call_defer(call, sleeper_cancel, s);
}

static void on_fail(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	(void)data;
	char buf[256];
	value_str((const Husk__Test__Bytes *)req, buf, sizeof(buf));
	char *msg = strchr(buf, ' ');
	int code = atoi(buf);
	ttrpc_call_fail(call, code, "%s", msg ? msg + 1 : "");
}

static void on_metadata(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	(void)data;
	char key[256];
	value_str((const Husk__Test__Bytes *)req, key, sizeof(key));
	char out[4096];
	size_t len = 0;
	bool found = false;
	for (size_t i = 0; i < ttrpc_call_metadata_count(call); i++) {
		const char *k, *v;
		ttrpc_call_metadata_at(call, i, &k, &v);
		if (strcmp(k, key) != 0)
			continue;
		int n = snprintf(out + len, sizeof(out) - len, "%s%s", found ? "," : "", v);
		if (n > 0)
			len = len + (size_t)n < sizeof(out) ? len + (size_t)n : sizeof(out) - 1;
		found = true;
	}
	if (!found) {
		ttrpc_call_fail(call, TTRPC_NOT_FOUND, "metadata key %s not present", key);
		return;
	}
	reply_bytes(call, out, len);
}

static void block_cancel(struct ttrpc_call *call, void *data)
{
	(void)call;
	struct echo_service *ctx = data;
	ctx->cancelled++;
}

static void on_block(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	(void)req;
	ttrpc_call_defer(call, block_cancel, data);
}

static void on_size(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	(void)data;
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%zu", ((const Husk__Test__Bytes *)req)->value.len);
	reply_bytes(call, buf, (size_t)n);
}

int echo_service_register(struct ttrpc_server *srv, struct echo_service *svc,
			  struct husk_err *err)
{
	static const ttrpc_method_fn handlers[] = {
		on_echo, on_sleep, on_fail, on_metadata, on_block, on_size,
	};
	/* handlers[] follows the descriptor's method order; check it. */
	static const char *const names[] = { "Echo", "Sleep", "Fail", "Metadata", "Block", "Size" };
	_Static_assert(ARRAY_SIZE(handlers) == ARRAY_SIZE(names), "one handler per Echo method");
	if (husk__test__echo__descriptor.n_methods != ARRAY_SIZE(names))
		return husk_err_set(err, -EINVAL, "echo service: descriptor has %u methods, expected %zu",
				    husk__test__echo__descriptor.n_methods, ARRAY_SIZE(names));
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (strcmp(husk__test__echo__descriptor.methods[i].name, names[i]) != 0)
			return husk_err_set(err, -EINVAL, "echo service: method %zu is %s, expected %s",
					    i, husk__test__echo__descriptor.methods[i].name, names[i]);
	return ttrpc_server_add_service(srv, &husk__test__echo__descriptor, handlers, svc, err);
}
