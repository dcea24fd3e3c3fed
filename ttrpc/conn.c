#include "conn.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Stop reading requests while this much output is waiting for a peer that
 * does not read: bounded memory instead of an ever-growing queue. */
#define OUT_HIGH_WATER (16u << 20)
#define OUT_BASE_CAP (64u * 1024)

static void conn_destroy(void *data)
{
	struct ttrpc_conn *conn = data;
	ttrpc_parser_free(&conn->parser);
	free(conn->out);
	free(conn);
}

static void conn_shutdown(struct ttrpc_conn *conn)
{
	conn->closing = true;
	ev_io_del(conn->io);
	conn->io = NULL;
	close(conn->fd);
	conn->fd = -1;
	conn->destroy.fn = conn_destroy;
	conn->destroy.data = conn;
	ev_defer(conn->loop, &conn->destroy);
}

static void conn_fail(struct ttrpc_conn *conn, int reason)
{
	if (conn->closing)
		return;
	conn_shutdown(conn);
	conn->ops->on_close(conn->owner, reason);
}

static void run_deferred_fail(void *data)
{
	struct ttrpc_conn *conn = data;
	conn_fail(conn, conn->deferred_reason);
}

/* For failures found while the owner is inside one of our calls: telling it
 * synchronously would re-enter code that is mid-way through its own work. */
static void fail_later(struct ttrpc_conn *conn, int reason)
{
	if (conn->closing || conn->deferred_fail.queued)
		return;
	conn->deferred_reason = reason;
	conn->deferred_fail.fn = run_deferred_fail;
	conn->deferred_fail.data = conn;
	ev_defer(conn->loop, &conn->deferred_fail);
}

void ttrpc_conn_close(struct ttrpc_conn *conn)
{
	if (conn && !conn->closing)
		conn_shutdown(conn);
}

static void update_interest(struct ttrpc_conn *conn)
{
	size_t pending = conn->out_len - conn->out_off;
	conn->read_paused = pending >= OUT_HIGH_WATER;
	uint32_t ev = (conn->read_paused ? 0 : EPOLLIN) | (pending ? EPOLLOUT : 0);
	if (ev_io_set_events(conn->io, ev) < 0)
		fail_later(conn, -errno);
}

/* Writes what it can. Failures are reported later: flush runs inside the
 * owner's send() as well as from the loop. */
static void flush(struct ttrpc_conn *conn)
{
	while (!conn->closing && conn->out_off < conn->out_len) {
		ssize_t n = send(conn->fd, conn->out + conn->out_off, conn->out_len - conn->out_off,
				 MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			fail_later(conn, -errno);
			return;
		}
		conn->out_off += (size_t)n;
	}
	if (conn->closing || conn->deferred_fail.queued)
		return;
	if (conn->out_off == conn->out_len) {
		conn->out_off = conn->out_len = 0;
		if (conn->out_cap > OUT_BASE_CAP) {
			free(conn->out);
			conn->out = NULL;
			conn->out_cap = 0;
		}
	}
	update_interest(conn);
}

static int on_frame(void *data, const struct ttrpc_header *h, const uint8_t *payload)
{
	struct ttrpc_conn *conn = data;
	if (conn->closing)
		return -ECANCELED;
	int r = conn->ops->on_frame(conn->owner, h, payload);
	if (conn->closing)
		return -ECANCELED;
	return r;
}

static void on_readable(struct ttrpc_conn *conn)
{
	uint8_t *where;
	size_t room;
	int r = ttrpc_parser_space(&conn->parser, &where, &room);
	if (r < 0) {
		conn_fail(conn, r);
		return;
	}
	ssize_t n = recv(conn->fd, where, room, 0);
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			conn_fail(conn, -errno);
		return;
	}
	if (n == 0) {
		conn_fail(conn, 0);
		return;
	}
	conn->dispatching = true;
	r = ttrpc_parser_commit(&conn->parser, (size_t)n, on_frame, conn);
	conn->dispatching = false;
	if (r < 0 && r != -ECANCELED) {
		conn_fail(conn, r);
		return;
	}
	flush(conn);
}

static void on_io(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io;
	(void)fd;
	struct ttrpc_conn *conn = data;
	if (events & EPOLLOUT)
		flush(conn);
	if (!conn->closing && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !conn->read_paused)
		on_readable(conn);
	else if (!conn->closing && (events & (EPOLLHUP | EPOLLERR)))
		conn_fail(conn, -EPIPE);
}

int ttrpc_conn_new(struct ev_loop *loop, int fd, const struct ttrpc_conn_ops *ops, void *owner,
		   struct ttrpc_conn **out, struct husk_err *err)
{
	int flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
		int r = -errno;
		close(fd);
		return husk_err_sys(err, r, "ttrpc: set fd %d non-blocking", fd);
	}
	struct ttrpc_conn *conn = calloc(1, sizeof(*conn));
	if (!conn) {
		close(fd);
		return husk_err_set(err, -ENOMEM, "ttrpc: out of memory");
	}
	conn->loop = loop;
	conn->fd = fd;
	conn->ops = ops;
	conn->owner = owner;
	ttrpc_parser_init(&conn->parser);
	int r = ev_io_add(loop, fd, EPOLLIN, on_io, conn, &conn->io, err);
	if (r < 0) {
		close(fd);
		free(conn);
		return r;
	}
	*out = conn;
	return 0;
}

static int reserve_out(struct ttrpc_conn *conn, size_t more)
{
	if (conn->out_off > 0 && conn->out_off == conn->out_len)
		conn->out_off = conn->out_len = 0;
	if (conn->out_cap - conn->out_len >= more)
		return 0;
	if (conn->out_off > 0) {
		memmove(conn->out, conn->out + conn->out_off, conn->out_len - conn->out_off);
		conn->out_len -= conn->out_off;
		conn->out_off = 0;
		if (conn->out_cap - conn->out_len >= more)
			return 0;
	}
	size_t cap = conn->out_cap ? conn->out_cap : OUT_BASE_CAP;
	while (cap - conn->out_len < more)
		cap *= 2;
	uint8_t *buf = realloc(conn->out, cap);
	if (!buf)
		return -ENOMEM;
	conn->out = buf;
	conn->out_cap = cap;
	return 0;
}

int ttrpc_conn_send(struct ttrpc_conn *conn, uint32_t stream_id, uint8_t type,
		    const ProtobufCMessage *msg, const uint8_t *raw, size_t len)
{
	if (conn->closing)
		return -EPIPE;
	if (msg)
		len = protobuf_c_message_get_packed_size(msg);
	if (len > TTRPC_MAX_PAYLOAD)
		return -EMSGSIZE;
	int r = reserve_out(conn, TTRPC_HEADER_SIZE + len);
	if (r < 0)
		return r;
	struct ttrpc_header h = { .length = (uint32_t)len, .stream_id = stream_id, .type = type };
	uint8_t *p = conn->out + conn->out_len;
	ttrpc_header_encode(&h, p);
	if (msg)
		protobuf_c_message_pack(msg, p + TTRPC_HEADER_SIZE);
	else if (len)
		memcpy(p + TTRPC_HEADER_SIZE, raw, len);
	conn->out_len += TTRPC_HEADER_SIZE + len;
	if (!conn->dispatching)
		flush(conn);
	return 0;
}
