#include "ttrpc/client.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"
#include "ttrpc/frame.h"
#include "ttrpc/ttrpc.pb-c.h"

struct pending {
	struct ttrpc_client *client;
	uint32_t stream_id;
	const ProtobufCMessageDescriptor *resp_desc;
	ttrpc_reply_fn fn;
	void *data;
	struct ev_timer *timer;
	struct pending *prev, *next;
};

struct ttrpc_client {
	struct ev_loop *loop;
	struct ttrpc_conn *conn; /* NULL once closed */
	uint32_t next_id;
	struct pending *pending;
	ttrpc_closed_fn closed_fn;
	void *closed_data;
};

static void pending_unlink(struct pending *p)
{
	struct ttrpc_client *c = p->client;
	if (p->prev)
		p->prev->next = p->next;
	else
		c->pending = p->next;
	if (p->next)
		p->next->prev = p->prev;
}

static void set_status(struct ttrpc_status *st, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void set_status(struct ttrpc_status *st, int code, const char *fmt, ...)
{
	st->code = code;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(st->message, sizeof(st->message), fmt, ap);
	va_end(ap);
}

/* Unlinks, frees, then calls back last: the callback may free the client. */
static void complete(struct pending *p, struct ttrpc_reply *reply)
{
	pending_unlink(p);
	ev_timer_cancel(p->timer);
	ttrpc_reply_fn fn = p->fn;
	void *data = p->data;
	free(p);
	fn(reply, data);
	if (reply->msg)
		protobuf_c_message_free_unpacked(reply->msg, NULL);
}

static void complete_status(struct pending *p, int code, const char *message)
{
	struct ttrpc_reply reply = { 0 };
	set_status(&reply.status, code, "%s", message);
	complete(p, &reply);
}

static void fail_all(struct ttrpc_client *c, int code, const char *message)
{
	while (c->pending)
		complete_status(c->pending, code, message);
}

static struct pending *find_pending(struct ttrpc_client *c, uint32_t id)
{
	for (struct pending *p = c->pending; p; p = p->next)
		if (p->stream_id == id)
			return p;
	return NULL;
}

static void on_response(struct pending *p, const uint8_t *payload, size_t len)
{
	struct ttrpc_reply reply = { 0 };
	Ttrpc__Response *resp = ttrpc__response__unpack(NULL, len, payload);
	if (!resp) {
		complete_status(p, TTRPC_INTERNAL, "ttrpc: undecodable Response frame");
		return;
	}
	if (resp->status && resp->status->code != TTRPC_OK) {
		set_status(&reply.status, resp->status->code, "%s", resp->status->message);
	} else {
		reply.payload = resp->payload.data;
		reply.len = resp->payload.len;
		if (p->resp_desc) {
			reply.msg = protobuf_c_message_unpack(p->resp_desc, NULL, resp->payload.len,
							      resp->payload.data);
			if (!reply.msg)
				set_status(&reply.status, TTRPC_INTERNAL,
					   "ttrpc: response payload is not a valid %s",
					   p->resp_desc->name);
		}
	}
	complete(p, &reply);
	ttrpc__response__free_unpacked(resp, NULL);
}

static int cli_on_frame(void *owner, const struct ttrpc_header *h, const uint8_t *payload)
{
	struct ttrpc_client *c = owner;
	if (h->type != TTRPC_TYPE_RESPONSE)
		return -EPROTO;
	struct pending *p = find_pending(c, h->stream_id);
	if (!p)
		return 0; /* late answer to a call whose deadline already passed */
	if (!payload) {
		char msg[128];
		snprintf(msg, sizeof(msg), "message length %u exceed maximum message size of %u",
			 h->length, TTRPC_MAX_PAYLOAD);
		complete_status(p, TTRPC_RESOURCE_EXHAUSTED, msg);
		return 0;
	}
	on_response(p, payload, h->length);
	return 0;
}

static void cli_on_close(void *owner, int reason)
{
	struct ttrpc_client *c = owner;
	c->conn = NULL;
	char msg[160];
	if (reason == 0)
		snprintf(msg, sizeof(msg), "ttrpc: connection closed by peer");
	else if (reason == -EPROTO)
		snprintf(msg, sizeof(msg), "ttrpc: protocol error from peer, connection closed");
	else
		snprintf(msg, sizeof(msg), "ttrpc: connection failed: %s", strerror(-reason));
	fail_all(c, TTRPC_UNAVAILABLE, msg);
	if (c->closed_fn)
		c->closed_fn(reason, c->closed_data);
}

static const struct ttrpc_conn_ops cli_conn_ops = {
	.on_frame = cli_on_frame,
	.on_close = cli_on_close,
};

int ttrpc_client_new(struct ev_loop *loop, int fd, struct ttrpc_client **out, struct husk_err *err)
{
	struct ttrpc_client *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return husk_err_set(err, -ENOMEM, "ttrpc: out of memory");
	}
	c->loop = loop;
	c->next_id = 1;
	int r = ttrpc_conn_new(loop, fd, &cli_conn_ops, c, &c->conn, err);
	if (r < 0) {
		free(c);
		return r;
	}
	*out = c;
	return 0;
}

void ttrpc_client_free(struct ttrpc_client *c)
{
	if (!c)
		return;
	c->closed_fn = NULL;
	if (c->conn)
		ttrpc_conn_close(c->conn);
	c->conn = NULL;
	fail_all(c, TTRPC_CANCELLED, "ttrpc: client closed");
	free(c);
}

void ttrpc_client_on_close(struct ttrpc_client *c, ttrpc_closed_fn fn, void *data)
{
	c->closed_fn = fn;
	c->closed_data = data;
}

bool ttrpc_client_connected(const struct ttrpc_client *c)
{
	return c->conn != NULL;
}

static void on_call_deadline(void *data)
{
	struct pending *p = data;
	p->timer = NULL;
	complete_status(p, TTRPC_DEADLINE_EXCEEDED, "context deadline exceeded");
}

int ttrpc_client_start(struct ttrpc_client *c, const char *service, const char *method,
		       const ProtobufCMessage *req, const uint8_t *raw, size_t raw_len,
		       const ProtobufCMessageDescriptor *resp_desc,
		       const struct ttrpc_call_opts *opts, ttrpc_reply_fn fn, void *data)
{
	if (!c->conn)
		return -ENOTCONN;
	static const struct ttrpc_call_opts no_opts;
	if (!opts)
		opts = &no_opts;

	uint8_t small[4096];
	uint8_t *payload = (uint8_t *)raw;
	size_t len = raw_len;
	if (req) {
		len = protobuf_c_message_get_packed_size(req);
		if (len > TTRPC_MAX_PAYLOAD)
			return -EMSGSIZE;
		payload = len <= sizeof(small) ? small : malloc(len);
		if (!payload)
			return -ENOMEM;
		protobuf_c_message_pack(req, payload);
	}

	Ttrpc__KeyValue kv_small[8];
	Ttrpc__KeyValue *kv_store = opts->n_metadata <= 8 ? kv_small
							   : calloc(opts->n_metadata, sizeof(*kv_store));
	Ttrpc__KeyValue *kv_ptr_small[8];
	Ttrpc__KeyValue **kv_ptrs = opts->n_metadata <= 8 ? kv_ptr_small
							  : calloc(opts->n_metadata, sizeof(*kv_ptrs));
	struct pending *p = calloc(1, sizeof(*p));
	int r = 0;
	if (!kv_store || !kv_ptrs || !p) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < opts->n_metadata; i++) {
		ttrpc__key_value__init(&kv_store[i]);
		kv_store[i].key = (char *)opts->metadata[i].key;
		kv_store[i].value = (char *)opts->metadata[i].value;
		kv_ptrs[i] = &kv_store[i];
	}
	Ttrpc__Request request = TTRPC__REQUEST__INIT;
	request.service = (char *)service;
	request.method = (char *)method;
	request.payload.data = payload;
	request.payload.len = len;
	request.timeout_nano = opts->timeout_ns > INT64_MAX ? INT64_MAX : (int64_t)opts->timeout_ns;
	request.n_metadata = opts->n_metadata;
	request.metadata = kv_ptrs;

	*p = (struct pending){ .client = c, .stream_id = c->next_id, .resp_desc = resp_desc, .fn = fn,
			       .data = data };
	if (opts->timeout_ns) {
		r = ev_timer_add(c->loop, opts->timeout_ns, on_call_deadline, p, &p->timer);
		if (r < 0)
			goto out;
	}
	r = ttrpc_conn_send(c->conn, p->stream_id, TTRPC_TYPE_REQUEST, &request.base, NULL, 0);
	if (r < 0) {
		ev_timer_cancel(p->timer);
		goto out;
	}
	c->next_id += 2;
	p->next = c->pending;
	if (c->pending)
		c->pending->prev = p;
	c->pending = p;
	p = NULL;
out:
	free(p);
	if (kv_store != kv_small)
		free(kv_store);
	if (kv_ptrs != kv_ptr_small)
		free(kv_ptrs);
	if (payload != raw && payload != small)
		free(payload);
	return r;
}

struct sync_call {
	bool done;
	ProtobufCMessage **resp;
	struct ttrpc_status *st;
};

static void on_sync_reply(struct ttrpc_reply *reply, void *data)
{
	struct sync_call *s = data;
	*s->st = reply->status;
	if (reply->status.code == TTRPC_OK && s->resp) {
		*s->resp = reply->msg;
		reply->msg = NULL;
	}
	s->done = true;
}

int ttrpc_client_call(struct ttrpc_client *c, const char *service, const char *method,
		      const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
		      const struct ttrpc_call_opts *opts, ProtobufCMessage **resp,
		      struct ttrpc_status *st)
{
	struct sync_call s = { .resp = resp, .st = st };
	if (resp)
		*resp = NULL;
	int r = ttrpc_client_start(c, service, method, req, NULL, 0, resp_desc, opts, on_sync_reply,
				   &s);
	if (r == -EMSGSIZE) {
		set_status(st, TTRPC_RESOURCE_EXHAUSTED,
			   "%s/%s: request exceeds maximum message size of %u", service, method,
			   TTRPC_MAX_PAYLOAD);
		return st->code;
	}
	if (r < 0) {
		set_status(st, TTRPC_UNAVAILABLE, "%s/%s: %s", service, method, strerror(-r));
		return st->code;
	}
	while (!s.done) {
		r = ev_run_once(c->loop, -1);
		if (r < 0) {
			/* The loop itself broke; the pending call cannot complete. */
			set_status(st, TTRPC_INTERNAL, "event loop failed: %s", strerror(-r));
			return st->code;
		}
	}
	return st->code;
}
