/* Private: one framed ttrpc byte stream over a non-blocking fd, shared by the
 * server and the client. Reads feed the frame parser; writes are buffered and
 * flushed once per read batch, or at once outside a batch. */
#ifndef TTRPC_CONN_H
#define TTRPC_CONN_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>

#include "husk/error.h"
#include "ttrpc/frame.h"
#include "ttrpc/loop.h"

struct ttrpc_conn_ops {
	/* A complete frame; payload NULL for an oversized one. A negative
	 * return closes the connection as malformed (on_close is called). */
	int (*on_frame)(void *owner, const struct ttrpc_header *h, const uint8_t *payload);
	/* The peer went away or the stream broke: `reason` is 0 for EOF, else a
	 * negative errno. Not called for ttrpc_conn_close(). */
	void (*on_close)(void *owner, int reason);
};

struct ttrpc_conn {
	struct ev_loop *loop;
	int fd;
	struct ev_io *io;
	const struct ttrpc_conn_ops *ops;
	void *owner;
	struct ttrpc_parser parser;
	uint8_t *out;
	size_t out_len, out_off, out_cap;
	bool dispatching, closing, read_paused;
	int deferred_reason;
	struct ev_deferred destroy, deferred_fail;
};

/* Takes ownership of `fd` (made non-blocking here), also on failure. */
int ttrpc_conn_new(struct ev_loop *loop, int fd, const struct ttrpc_conn_ops *ops, void *owner,
		   struct ttrpc_conn **out, struct husk_err *err);
/* Queues one frame whose payload is `msg` packed (or `raw` of `len` bytes
 * when msg is NULL). -EMSGSIZE when the payload exceeds the cap. */
int ttrpc_conn_send(struct ttrpc_conn *conn, uint32_t stream_id, uint8_t type,
		    const ProtobufCMessage *msg, const uint8_t *raw, size_t len);
/* Closes the fd now and frees the connection after the current batch. */
void ttrpc_conn_close(struct ttrpc_conn *conn);

#endif
