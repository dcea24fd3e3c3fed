/* ttrpc server: serves protobuf-c services on any stream socket (unix,
 * AF_VSOCK), many connections, many calls in flight per connection.
 *
 * A handler gets the decoded request and either replies before returning or
 * defers: it keeps the call, returns, and replies later from any loop
 * callback (a blocking Wait, say). Deferred calls are cancelled when their
 * connection closes or their deadline (timeout_nano) passes; the cancel
 * callback is the handler's cue to forget the call. */
#ifndef TTRPC_SERVER_H
#define TTRPC_SERVER_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "husk/error.h"
#include "ttrpc/loop.h"
#include "ttrpc/status.h"

struct ttrpc_server;
struct ttrpc_call;

/* `req` is owned by the call and valid until the call ends. */
typedef void (*ttrpc_method_fn)(struct ttrpc_call *call, const ProtobufCMessage *req,
				void *data);
/* The call ended without a reply (connection gone or deadline passed; the
 * server has answered the deadline itself). `call` is freed on return. */
typedef void (*ttrpc_cancel_fn)(struct ttrpc_call *call, void *data);

struct ttrpc_server_opts {
	/* Unix sockets only: refuse peers whose SO_PEERCRED uid differs. */
	bool require_same_uid;
	/* Calls in flight per connection; 0 selects the default (1024). */
	unsigned max_calls_per_conn;
	/* When set, runs before each call's handler (the request is decoded and
	 * valid): lets the owner finish set-up it put off until a call needs
	 * it. `service` is the full name, `method` the bare one ("Check"). */
	void (*before_call)(const char *service, const char *method, void *data);
	void *before_call_data;
};

int ttrpc_server_new(struct ev_loop *loop, const struct ttrpc_server_opts *opts,
		     struct ttrpc_server **out, struct husk_err *err);
/* Cancels every call, closes every connection and listener. */
void ttrpc_server_free(struct ttrpc_server *srv);

/* Registers `desc` under its full name (e.g. "containerd.task.v2.Task").
 * handlers[i] serves desc->methods[i]; a NULL entry answers UNIMPLEMENTED.
 * The array must outlive the server. */
int ttrpc_server_add_service(struct ttrpc_server *srv, const ProtobufCServiceDescriptor *desc,
			     const ttrpc_method_fn *handlers, void *data, struct husk_err *err);

struct ttrpc_named_method {
	const char *name; /* as in the .proto service ("Create") */
	ttrpc_method_fn fn;
};

/* Like ttrpc_server_add_service, with handlers given by method name; methods
 * not listed answer UNIMPLEMENTED. A name the descriptor lacks is an error
 * (a typo would otherwise silently leave a method unserved). */
int ttrpc_server_add_service_named(struct ttrpc_server *srv, const ProtobufCServiceDescriptor *desc,
				   const struct ttrpc_named_method *methods, size_t n, void *data,
				   struct husk_err *err);

/* Accepts connections on a listening socket; takes ownership of the fd. */
int ttrpc_server_add_listener(struct ttrpc_server *srv, int listen_fd, struct husk_err *err);

/* Decides whether a connection accepted on a listener may be served: 0
 * serves it, a negative errno refuses it. A refused connection is closed
 * at once, before a byte of it is read, and the listener goes on
 * accepting. `fd` is the accepted socket; the server keeps owning it. The
 * owner logs refusals as it sees fit. */
typedef int (*ttrpc_accept_filter_fn)(int fd, void *data);

/* Like ttrpc_server_add_listener, with `filter` (NULL: none) deciding on
 * every connection accepted there, e.g. the guest agent serving only the
 * host's vsock CID. */
int ttrpc_server_add_listener_filtered(struct ttrpc_server *srv, int listen_fd,
				       ttrpc_accept_filter_fn filter, void *data,
				       struct husk_err *err);

/* Serves one already-connected stream; takes ownership of the fd. */
int ttrpc_server_add_conn(struct ttrpc_server *srv, int fd, struct husk_err *err);
size_t ttrpc_server_conn_count(const struct ttrpc_server *srv);

/* Replies and ends the call. A response too large for one frame is turned
 * into RESOURCE_EXHAUSTED. Returns 0, or a negative errno when the reply
 * could not be queued (the call is ended either way). */
int ttrpc_call_reply(struct ttrpc_call *call, const ProtobufCMessage *resp);
__attribute__((format(printf, 3, 4)))
int ttrpc_call_fail(struct ttrpc_call *call, int code, const char *fmt, ...);

/* Marks the call as answered later; must be called before the handler
 * returns without replying. */
void ttrpc_call_defer(struct ttrpc_call *call, ttrpc_cancel_fn on_cancel, void *data);

/* First value of metadata `key`, or NULL. */
const char *ttrpc_call_metadata(const struct ttrpc_call *call, const char *key);
/* All metadata pairs, in arrival order. */
size_t ttrpc_call_metadata_count(const struct ttrpc_call *call);
void ttrpc_call_metadata_at(const struct ttrpc_call *call, size_t i, const char **key,
			    const char **value);
/* Absolute CLOCK_MONOTONIC deadline in ns, 0 when the caller set none. */
uint64_t ttrpc_call_deadline(const struct ttrpc_call *call);
const char *ttrpc_call_method(const struct ttrpc_call *call);

#endif
