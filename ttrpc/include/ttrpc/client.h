/* ttrpc client: many concurrent calls on one connection (odd, increasing
 * stream ids), per-call deadline and metadata. When the connection drops,
 * every pending call completes with UNAVAILABLE. */
#ifndef TTRPC_CLIENT_H
#define TTRPC_CLIENT_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "husk/error.h"
#include "ttrpc/loop.h"
#include "ttrpc/status.h"

struct ttrpc_client;

struct ttrpc_kv {
	const char *key;
	const char *value;
};

struct ttrpc_call_opts {
	uint64_t timeout_ns; /* 0: no deadline */
	const struct ttrpc_kv *metadata;
	size_t n_metadata;
};

struct ttrpc_reply {
	struct ttrpc_status status;
	/* On OK: the raw response payload (valid during the callback only) and,
	 * when a response descriptor was given, the decoded message. The
	 * callback may keep `msg` by setting the field to NULL; otherwise it is
	 * freed after the callback. */
	const uint8_t *payload;
	size_t len;
	ProtobufCMessage *msg;
};

typedef void (*ttrpc_reply_fn)(struct ttrpc_reply *reply, void *data);
typedef void (*ttrpc_closed_fn)(int reason, void *data);

/* Takes ownership of the connected stream `fd`, also on failure. */
int ttrpc_client_new(struct ev_loop *loop, int fd, struct ttrpc_client **out,
		     struct husk_err *err);
/* Completes pending calls with CANCELLED, then closes. NULL is ignored. */
void ttrpc_client_free(struct ttrpc_client *c);
/* Told once when the connection goes away (0: EOF, else negative errno). */
void ttrpc_client_on_close(struct ttrpc_client *c, ttrpc_closed_fn fn, void *data);
bool ttrpc_client_connected(const struct ttrpc_client *c);

/* Starts a call. Exactly one `fn` callback follows from the loop, unless
 * this returns a negative errno (-ENOTCONN, -EMSGSIZE, -ENOMEM), in which
 * case none does. `req` may be NULL when `raw`/`raw_len` give the payload
 * bytes; `resp_desc` may be NULL to receive raw bytes only. */
int ttrpc_client_start(struct ttrpc_client *c, const char *service, const char *method,
		       const ProtobufCMessage *req, const uint8_t *raw, size_t raw_len,
		       const ProtobufCMessageDescriptor *resp_desc,
		       const struct ttrpc_call_opts *opts, ttrpc_reply_fn fn, void *data);

/* Blocking call: runs the loop until the reply arrives. Returns st->code
 * (0 = OK). On OK, *resp holds the decoded response (free it with
 * protobuf_c_message_free_unpacked). */
int ttrpc_client_call(struct ttrpc_client *c, const char *service, const char *method,
		      const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
		      const struct ttrpc_call_opts *opts, ProtobufCMessage **resp,
		      struct ttrpc_status *st);

#endif
