#include "hybrid.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "conn.h"
#include "husk/cleanup.h"
#include "husk/path.h"
#include "husk/sock.h"
#include "log.h"

/* Ports we pick for host-initiated connections start here (as Firecracker's
 * do), far from anything a guest listens on. */
#define LOCAL_PORT_FIRST (1u << 30)
/* RSTs owed for packets that match no connection; when full, the tx ring
 * waits until the rx ring takes some. */
#define RST_QUEUE_MAX 64
/* Chains handled per turn before other events get theirs. */
#define TX_BATCH 256
#define HANDSHAKE_MAX 32
#define CONN_BUCKETS 256
/* Connections the guest may open at once: each may buffer up to
 * VSOCK_BUF_ALLOC here when its host peer is slow, so this bounds what a
 * guest can make the daemon hold (32 MiB). */
#define GUEST_CONNS_MAX 128
/* Messages a misbehaving guest can cause before they are suppressed. */
#define GUEST_LOG_BUDGET 32

struct hconn {
	struct vconn_sm sm;
	struct hybrid *mux;
	int fd;
	struct ev_io *io;
	bool readable; /* the host socket has bytes or EOF we have not read */
	bool hup;      /* the host peer closed; the watch is gone */
	bool shut_wr;  /* shutdown(SHUT_WR) done on the host socket */
	bool in_table;
	bool guest_initiated;
	bool queued;   /* on the rx list */
	struct hconn *rx_prev, *rx_next;
	struct hconn *hnext;       /* hash bucket */
	struct hconn *prev, *next; /* every connection */
	struct vbuf buf;
	size_t line_len;
	char line[HANDSHAKE_MAX];
};

struct rst_entry {
	uint64_t local_cid; /* the CID the reset comes from: the one the guest named */
	uint32_t local_port, peer_port;
};

struct hybrid {
	struct ev_loop *loop;
	struct vu_dev *dev;
	uint64_t guest_cid;
	const char *uds;
	int listen_fd;
	struct ev_io *listen_io;
	struct hconn *conns;
	struct hconn *buckets[CONN_BUCKETS];
	struct hconn *rx_head, *rx_tail;
	struct rst_entry rst[RST_QUEUE_MAX];
	unsigned rst_head, rst_len;
	bool tx_stalled;
	uint32_t next_port;
	unsigned guest_conns;
	unsigned log_budget;
	struct ev_deferred rx_work, tx_work;
	struct vq_chain chain; /* scratch, too large for the stack of a callback chain */
};

/* ---- bookkeeping ------------------------------------------------------------ */

static unsigned bucket(uint32_t local, uint32_t peer)
{
	return (local * 2654435761u ^ peer) % CONN_BUCKETS;
}

static struct hconn *lookup(struct hybrid *h, uint32_t local, uint32_t peer)
{
	for (struct hconn *c = h->buckets[bucket(local, peer)]; c; c = c->hnext)
		if (c->sm.local_port == local && c->sm.peer_port == peer)
			return c;
	return NULL;
}

static void table_insert(struct hconn *c)
{
	struct hconn **b = &c->mux->buckets[bucket(c->sm.local_port, c->sm.peer_port)];
	c->hnext = *b;
	*b = c;
	c->in_table = true;
}

static void table_remove(struct hconn *c)
{
	if (!c->in_table)
		return;
	struct hconn **p = &c->mux->buckets[bucket(c->sm.local_port, c->sm.peer_port)];
	while (*p != c)
		p = &(*p)->hnext;
	*p = c->hnext;
	c->in_table = false;
}

static void rx_enqueue(struct hconn *c)
{
	struct hybrid *h = c->mux;
	if (!c->queued) {
		c->queued = true;
		c->rx_next = NULL;
		c->rx_prev = h->rx_tail;
		if (h->rx_tail)
			h->rx_tail->rx_next = c;
		else
			h->rx_head = c;
		h->rx_tail = c;
	}
	ev_defer(h->loop, &h->rx_work);
}

static void rx_dequeue(struct hconn *c)
{
	struct hybrid *h = c->mux;
	if (!c->queued)
		return;
	if (c->rx_prev)
		c->rx_prev->rx_next = c->rx_next;
	else
		h->rx_head = c->rx_next;
	if (c->rx_next)
		c->rx_next->rx_prev = c->rx_prev;
	else
		h->rx_tail = c->rx_prev;
	c->queued = false;
	c->rx_prev = c->rx_next = NULL;
}

/* Whether a message caused by the guest may still be logged: a guest
 * must not be able to flood the daemon's log. */
static bool guest_log_ok(struct hybrid *h)
{
	if (h->log_budget == 0)
		return false;
	if (--h->log_budget == 0)
		vsockd_log("further guest errors are not logged");
	return h->log_budget > 0;
}

static void close_host(struct hconn *c)
{
	ev_io_del(c->io);
	c->io = NULL;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	vbuf_free(&c->buf);
}

static void destroy(struct hconn *c)
{
	struct hybrid *h = c->mux;
	close_host(c);
	table_remove(c);
	rx_dequeue(c);
	if (c->guest_initiated)
		h->guest_conns--;
	if (c->prev)
		c->prev->next = c->next;
	else
		h->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	free(c);
}

static struct hconn *conn_new(struct hybrid *h, int fd)
{
	struct hconn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->mux = h;
	c->fd = fd;
	vsock_credit_init(&c->sm.credit, VSOCK_BUF_ALLOC);
	c->next = h->conns;
	if (h->conns)
		h->conns->prev = c;
	h->conns = c;
	return c;
}

/* Drops the host side. With `rst`, the guest is told (once rx buffers
 * allow) if it knows of the connection; the connection is freed by
 * conn_update() when nothing more is owed. */
static void conn_close(struct hconn *c, bool rst)
{
	bool guest_knows = c->in_table &&
			   (c->sm.state == VCONN_ESTABLISHED ||
			    (c->sm.state == VCONN_CONNECTING && !(c->sm.pending & VCONN_P_REQUEST)));
	close_host(c);
	c->sm.state = VCONN_CLOSED;
	c->sm.pending = rst && guest_knows ? VCONN_P_RST : 0;
}

/* Re-evaluates a connection after anything changed: delivers a pending
 * half-close, closes it when both directions are done, picks the epoll
 * events and the rx list membership. May free `c`. */
static void conn_update(struct hconn *c)
{
	if (c->sm.state == VCONN_ESTABLISHED && c->buf.len == 0) {
		if ((c->sm.peer_shutdown & VIRTIO_VSOCK_SHUTDOWN_SEND) && !c->shut_wr && c->fd >= 0) {
			/* The guest sent its last byte and the host has it all. */
			shutdown(c->fd, SHUT_WR);
			c->shut_wr = true;
		}
		if (vconn_done(&c->sm)) {
			conn_close(c, true);
		} else if (c->hup && (c->sm.local_shutdown & VIRTIO_VSOCK_SHUTDOWN_SEND) &&
			   !(c->sm.local_shutdown & VIRTIO_VSOCK_SHUTDOWN_RCV)) {
			/* A host that had half-closed is gone now: it takes no
			 * more either. The guest answers with its RST. */
			c->sm.local_shutdown |= VIRTIO_VSOCK_SHUTDOWN_RCV;
			c->sm.pending |= VCONN_P_SHUTDOWN;
		}
	}
	if (c->sm.state == VCONN_CLOSED) {
		if (!c->sm.pending) {
			destroy(c);
			return;
		}
		rx_enqueue(c);
		return;
	}
	if (c->sm.state == VCONN_ESTABLISHED && vsock_credit_update_due(&c->sm.credit))
		c->sm.pending |= VCONN_P_CREDIT_UPDATE;

	bool want_read = vconn_want_host_read(&c->sm);
	uint32_t events = 0;
	if (c->sm.state == VCONN_HANDSHAKE || (want_read && !c->readable))
		events |= EPOLLIN;
	if (c->buf.len)
		events |= EPOLLOUT;
	if (c->io)
		ev_io_set_events(c->io, events);
	if (c->sm.pending || (want_read && c->readable))
		rx_enqueue(c);
	else
		rx_dequeue(c);
}

static uint32_t alloc_port(struct hybrid *h)
{
	for (;;) {
		uint32_t port = h->next_port++;
		if (h->next_port == 0)
			h->next_port = LOCAL_PORT_FIRST;
		bool used = false;
		for (struct hconn *c = h->conns; c && !used; c = c->next)
			used = c->in_table && c->sm.local_port == port;
		if (!used)
			return port;
	}
}

/* ---- host side -------------------------------------------------------------- */

/* Writes the guest's bytes iov[off..off+len) to the host socket, keeping
 * what it does not take. */
static void forward_to_host(struct hconn *c, const struct iovec *iov, unsigned n, size_t off,
			    size_t len)
{
	if (c->fd < 0 || len == 0)
		return;
	if (c->buf.len == 0) {
		struct iovec part[VQ_MAX_IOV];
		struct msghdr mh = { .msg_iov = part };
		mh.msg_iovlen = iov_slice(iov, n, off, len, part, VQ_MAX_IOV);
		ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0) {
			if (errno != EAGAIN && errno != EINTR) {
				conn_close(c, true);
				return;
			}
			w = 0;
		}
		vsock_credit_forwarded(&c->sm.credit, (uint32_t)w);
		off += (size_t)w;
		len -= (size_t)w;
	}
	/* Credit keeps the buffer within buf_alloc: only ENOMEM fails here. */
	if (len && vbuf_append(&c->buf, c->sm.credit.buf_alloc, iov, n, off, len) < 0) {
		vsockd_log("connection %" PRIu32 "<->%" PRIu32 ": out of memory, resetting",
			   c->sm.local_port, c->sm.peer_port);
		conn_close(c, true);
	}
}

static void flush_buf(struct hconn *c)
{
	while (c->buf.len && c->fd >= 0) {
		struct iovec iov[2];
		struct msghdr mh = { .msg_iov = iov, .msg_iovlen = vbuf_peek(&c->buf, iov) };
		ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			conn_close(c, true);
			return;
		}
		vsock_credit_forwarded(&c->sm.credit, (uint32_t)w);
		vbuf_consume(&c->buf, (uint32_t)w);
	}
}

static void handshake(struct hconn *c)
{
	char tmp[HANDSHAKE_MAX];
	size_t room = sizeof(c->line) - c->line_len;
	/* Peek first: bytes after the newline are payload for the guest and
	 * must stay in the socket. */
	ssize_t n = recv(c->fd, tmp, room, MSG_PEEK | MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		conn_close(c, false);
		return;
	}
	char *nl = memchr(tmp, '\n', (size_t)n);
	size_t take = nl ? (size_t)(nl - tmp) + 1 : (size_t)n;
	ssize_t got = recv(c->fd, c->line + c->line_len, take, MSG_DONTWAIT);
	if (got != (ssize_t)take) {
		conn_close(c, false);
		return;
	}
	c->line_len += take;
	if (!nl) {
		if (c->line_len == sizeof(c->line)) {
			vsockd_log("host client: handshake line too long");
			conn_close(c, false);
		}
		return;
	}
	uint32_t port;
	if (hybrid_parse_connect(c->line, c->line_len, &port) < 0) {
		vsockd_log("host client: bad handshake \"%.*s\"", (int)(c->line_len - 1), c->line);
		conn_close(c, false);
		return;
	}
	c->sm.peer_port = port;
	c->sm.local_port = alloc_port(c->mux);
	c->sm.state = VCONN_CONNECTING;
	c->sm.pending = VCONN_P_REQUEST;
	table_insert(c);
}

static void established(struct hconn *c)
{
	char reply[32];
	int n = snprintf(reply, sizeof(reply), "OK %" PRIu32 "\n", c->sm.local_port);
	/* A fresh socket has room for a short line: a short write means the
	 * client is gone. */
	if (send(c->fd, reply, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) != n)
		conn_close(c, true);
}

static void on_host_io(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io;
	(void)fd;
	struct hconn *c = data;
	if (c->sm.state == VCONN_HANDSHAKE) {
		handshake(c);
		conn_update(c);
		return;
	}
	if (events & EPOLLERR) {
		conn_close(c, true);
		conn_update(c);
		return;
	}
	if (events & EPOLLOUT)
		flush_buf(c);
	if (c->fd >= 0 && (events & EPOLLIN))
		c->readable = true;
	if (c->fd >= 0 && (events & EPOLLHUP)) {
		/* Level-triggered HUP cannot be masked: stop watching. What
		 * is left to read is read when the guest has credit. */
		ev_io_del(c->io);
		c->io = NULL;
		c->hup = true;
		c->readable = true;
		if (c->sm.state == VCONN_CONNECTING)
			conn_close(c, true);
		else
			flush_buf(c);
	}
	conn_update(c);
}

static void on_accept(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io;
	(void)events;
	struct hybrid *h = data;
	int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (cfd < 0) {
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			vsockd_log("accept on %s: %s", h->uds, strerror(errno));
		return;
	}
	struct hconn *c = conn_new(h, cfd);
	if (!c) {
		close(cfd);
		return;
	}
	struct husk_err err = { 0 };
	if (ev_io_add(h->loop, cfd, EPOLLIN, on_host_io, c, &c->io, &err) < 0) {
		vsockd_log("%s", err.msg);
		destroy(c);
	}
}

/* ---- guest side: tx ring ------------------------------------------------------- */

/* Queues a reset from (`cid`, `local`) to the guest's port `peer`. */
static void rst_enqueue_from(struct hybrid *h, uint64_t cid, uint32_t local, uint32_t peer)
{
	if (h->rst_len == RST_QUEUE_MAX)
		return; /* process_tx never lets this happen */
	h->rst[(h->rst_head + h->rst_len) % RST_QUEUE_MAX] =
		(struct rst_entry){ .local_cid = cid, .local_port = local, .peer_port = peer };
	h->rst_len++;
	ev_defer(h->loop, &h->rx_work);
}

static void rst_enqueue(struct hybrid *h, uint32_t local, uint32_t peer)
{
	rst_enqueue_from(h, VSOCK_HOST_CID, local, peer);
}

/* A guest connects to host port P: relay to `<uds>_P` if someone listens. */
static void guest_connect(struct hybrid *h, const struct vsock_pkt *p)
{
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	if (h->guest_conns >= GUEST_CONNS_MAX) {
		if (guest_log_ok(h))
			vsockd_log("guest port %" PRIu32 " -> host port %" PRIu32
				   ": %u guest connections open already, refused",
				   p->src_port, p->dst_port, h->guest_conns);
		rst_enqueue(h, p->dst_port, p->src_port);
		return;
	}
	if (husk_path_fmt(path, sizeof(path), "%s_%" PRIu32, h->uds, p->dst_port) < 0) {
		rst_enqueue(h, p->dst_port, p->src_port);
		return;
	}
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	memcpy(sa.sun_path, path, strlen(path));
	_cleanup_fd_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	/* A unix connect completes or fails at once; EAGAIN (backlog full)
	 * is treated as a refusal rather than retried. */
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rst_enqueue(h, p->dst_port, p->src_port);
		return;
	}
	struct hconn *c = conn_new(h, fd);
	if (!c) {
		rst_enqueue(h, p->dst_port, p->src_port);
		return;
	}
	c->fd = take_fd(&fd);
	c->guest_initiated = true;
	h->guest_conns++;
	c->sm.local_port = p->dst_port;
	c->sm.peer_port = p->src_port;
	c->sm.state = VCONN_ESTABLISHED;
	c->sm.pending = VCONN_P_RESPONSE;
	vsock_credit_peer_update(&c->sm.credit, p->buf_alloc, p->fwd_cnt);
	table_insert(c);
	struct husk_err err = { 0 };
	if (ev_io_add(h->loop, c->fd, 0, on_host_io, c, &c->io, &err) < 0) {
		vsockd_log("%s", err.msg);
		conn_close(c, true);
	}
	conn_update(c);
}

static void handle_tx(struct hybrid *h, const struct vq_chain *ch)
{
	struct virtio_vsock_hdr raw;
	if (ch->out_len < VSOCK_HDR_SIZE ||
	    iov_to_buf(ch->iov, ch->n_out, 0, &raw, sizeof(raw)) != sizeof(raw)) {
		if (guest_log_ok(h))
			vsockd_log("tx: chain of %zu bytes has no packet header", ch->out_len);
		return;
	}
	struct vsock_pkt p;
	vsock_hdr_decode(&raw, &p);
	if (p.src_cid != h->guest_cid) {
		if (guest_log_ok(h))
			vsockd_log("tx: packet from cid %" PRIu64 " to cid %" PRIu64 " dropped",
				   p.src_cid, p.dst_cid);
		return;
	}
	/* Only the host is reached through us. A connection to anything else
	 * (the guest's own CID, 1, another VM's) is reset at once, never
	 * matched by port against our connections or forwarded to a hybrid
	 * socket: a container must not reach the agent by naming the guest.
	 * The reset comes from the CID the guest named, as the guest's stack
	 * matches it to the socket by its peer's address. */
	if (p.dst_cid != VSOCK_HOST_CID) {
		if (p.op == VIRTIO_VSOCK_OP_REQUEST && guest_log_ok(h))
			vsockd_log("guest port %" PRIu32 " -> cid %" PRIu64 " port %" PRIu32
				   ": not the host, refused",
				   p.src_port, p.dst_cid, p.dst_port);
		if (p.op != VIRTIO_VSOCK_OP_RST)
			rst_enqueue_from(h, p.dst_cid, p.dst_port, p.src_port);
		return;
	}
	struct hconn *c = lookup(h, p.dst_port, p.src_port);
	bool bad = p.type != VIRTIO_VSOCK_TYPE_STREAM ||
		   (p.op == VIRTIO_VSOCK_OP_RW && p.len > ch->out_len - VSOCK_HDR_SIZE);
	if (!c) {
		if (p.op == VIRTIO_VSOCK_OP_RST)
			return;
		if (p.op == VIRTIO_VSOCK_OP_REQUEST && !bad)
			guest_connect(h, &p);
		else
			rst_enqueue(h, p.dst_port, p.src_port);
		return;
	}
	if (bad) {
		conn_close(c, true);
		conn_update(c);
		return;
	}
	switch (vconn_recv(&c->sm, &p)) {
	case VCONN_ACT_NONE:
	case VCONN_ACT_UPDATE:
		break;
	case VCONN_ACT_DATA:
		forward_to_host(c, ch->iov, ch->n_out, VSOCK_HDR_SIZE, p.len);
		break;
	case VCONN_ACT_ESTABLISHED:
		established(c);
		break;
	case VCONN_ACT_RESET:
		conn_close(c, false);
		break;
	case VCONN_ACT_KILL:
		conn_close(c, true);
		break;
	}
	conn_update(c);
}

static void process_tx(void *data)
{
	struct hybrid *h = data;
	if (!vu_ring_ready(h->dev, VU_RING_TX))
		return;
	struct virtq *vq = &h->dev->rings[VU_RING_TX].vq;
	for (unsigned i = 0; i < TX_BATCH; i++) {
		/* Each chain may owe one RST; keep room for it. */
		if (h->rst_len == RST_QUEUE_MAX) {
			h->tx_stalled = true;
			break;
		}
		struct husk_err err = { 0 };
		int r = virtq_pop(vq, &h->dev->mem, &h->chain, &err);
		if (r < 0)
			vsockd_log("tx ring: %s", err.msg);
		if (r <= 0)
			break;
		handle_tx(h, &h->chain);
		virtq_push(vq, h->chain.head, 0);
		if (i + 1 == TX_BATCH)
			ev_defer(h->loop, &h->tx_work);
	}
	vu_ring_notify(h->dev, VU_RING_TX);
}

/* ---- guest side: rx ring ---------------------------------------------------------- */

static void put_hdr(struct hybrid *h, const struct vq_chain *ch, const struct vsock_pkt *p,
		    uint32_t len)
{
	struct virtio_vsock_hdr raw;
	vsock_hdr_encode(p, &raw);
	iov_from_buf(ch->iov + ch->n_out, ch->n_in, 0, &raw, sizeof(raw));
	virtq_push(&h->dev->rings[VU_RING_RX].vq, ch->head, len);
}

/* Fills one rx chain for `c`: a control packet, or data read straight from
 * the host socket into guest memory. Returns false when the chain was not
 * used (and has been given back). */
static bool fill_one(struct hybrid *h, struct hconn *c, const struct vq_chain *ch)
{
	struct virtq *vq = &h->dev->rings[VU_RING_RX].vq;
	struct vsock_pkt p;
	uint16_t op = vconn_take_ctl(&c->sm, h->guest_cid, &p);
	if (op) {
		put_hdr(h, ch, &p, VSOCK_HDR_SIZE);
		return true;
	}
	if (!c->readable || !vconn_want_host_read(&c->sm) || c->fd < 0) {
		virtq_unpop(vq);
		return false;
	}
	size_t max = ch->in_len - VSOCK_HDR_SIZE;
	uint32_t credit = vsock_credit_peer_free(&c->sm.credit);
	if (max > credit)
		max = credit;
	if (max > VSOCK_MAX_PKT)
		max = VSOCK_MAX_PKT;
	if (max == 0) {
		/* No room for payload in this buffer (Linux never posts such):
		 * use it for a credit update rather than stall on it. */
		c->sm.pending |= VCONN_P_CREDIT_UPDATE;
		vconn_take_ctl(&c->sm, h->guest_cid, &p);
		put_hdr(h, ch, &p, VSOCK_HDR_SIZE);
		return true;
	}
	struct iovec part[VQ_MAX_IOV];
	struct msghdr mh = { .msg_iov = part };
	mh.msg_iovlen = iov_slice(ch->iov + ch->n_out, ch->n_in, VSOCK_HDR_SIZE, max, part,
				  VQ_MAX_IOV);
	ssize_t n = recvmsg(c->fd, &mh, MSG_DONTWAIT);
	if (n > 0) {
		vconn_data_hdr(&c->sm, h->guest_cid, (uint32_t)n, &p);
		put_hdr(h, ch, &p, VSOCK_HDR_SIZE + (uint32_t)n);
		return true;
	}
	c->readable = false;
	if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
		virtq_unpop(vq);
		return false;
	}
	if (n < 0) {
		/* A read error (ECONNRESET: the host closed with the guest's
		 * bytes unread): reset. */
		virtq_unpop(vq);
		conn_close(c, true);
		return false;
	}
	/* EOF after the host's last byte: it sends no more, and one that
	 * closed altogether (hup) receives no more either. Both go in one
	 * SHUTDOWN, the spec's clean close, which the guest completes with
	 * its RST; an RST from us could reach the guest's socket before its
	 * reader had the bytes already delivered. */
	c->sm.local_shutdown |= VIRTIO_VSOCK_SHUTDOWN_SEND;
	if (c->hup)
		c->sm.local_shutdown |= VIRTIO_VSOCK_SHUTDOWN_RCV;
	c->sm.pending |= VCONN_P_SHUTDOWN;
	op = vconn_take_ctl(&c->sm, h->guest_cid, &p);
	put_hdr(h, ch, &p, VSOCK_HDR_SIZE);
	return true;
}

static void fill_rx(void *data)
{
	struct hybrid *h = data;
	if (!vu_ring_ready(h->dev, VU_RING_RX))
		return;
	struct virtq *vq = &h->dev->rings[VU_RING_RX].vq;
	struct vq_chain *ch = &h->chain;
	struct husk_err err = { 0 };
	int r = 1;
	while (h->rst_len > 0 && (r = virtq_pop(vq, &h->dev->mem, ch, &err)) > 0) {
		if (ch->in_len < VSOCK_HDR_SIZE) {
			virtq_push(vq, ch->head, 0);
			continue;
		}
		struct rst_entry *e = &h->rst[h->rst_head];
		struct vsock_pkt p = {
			.src_cid = e->local_cid,
			.dst_cid = h->guest_cid,
			.src_port = e->local_port,
			.dst_port = e->peer_port,
			.type = VIRTIO_VSOCK_TYPE_STREAM,
			.op = VIRTIO_VSOCK_OP_RST,
		};
		put_hdr(h, ch, &p, VSOCK_HDR_SIZE);
		h->rst_head = (h->rst_head + 1) % RST_QUEUE_MAX;
		h->rst_len--;
	}
	if (h->tx_stalled && h->rst_len < RST_QUEUE_MAX) {
		h->tx_stalled = false;
		ev_defer(h->loop, &h->tx_work);
	}
	while (r > 0 && h->rx_head) {
		r = virtq_pop(vq, &h->dev->mem, ch, &err);
		if (r <= 0)
			break;
		struct hconn *c = h->rx_head;
		rx_dequeue(c);
		if (ch->in_len < VSOCK_HDR_SIZE) {
			/* Unusable buffer: hand it back empty. */
			virtq_push(vq, ch->head, 0);
			rx_enqueue(c);
			continue;
		}
		fill_one(h, c, ch);
		/* Back to the tail if it has more: connections take turns. */
		conn_update(c);
	}
	if (r < 0)
		vsockd_log("rx ring: %s", err.msg);
	vu_ring_notify(h->dev, VU_RING_RX);
}

/* ---- public ---------------------------------------------------------------------- */

void hybrid_kick(struct hybrid *h, unsigned ring)
{
	if (ring == VU_RING_RX)
		fill_rx(h);
	else if (ring == VU_RING_TX)
		process_tx(h);
}

void hybrid_reset(struct hybrid *h)
{
	/* The guest's sockets died with the device: no RSTs to send. Host
	 * clients still sending their handshake line are kept. */
	for (struct hconn *c = h->conns, *next; c; c = next) {
		next = c->next;
		if (c->sm.state != VCONN_HANDSHAKE)
			destroy(c);
	}
	h->rst_len = 0;
	h->tx_stalled = false;
}

int hybrid_new(struct hybrid **out, struct ev_loop *loop, struct vu_dev *dev, const char *uds,
	       uint64_t guest_cid, struct husk_err *err)
{
	struct hybrid *h = calloc(1, sizeof(*h));
	if (!h)
		return husk_err_set(err, -ENOMEM, "hybrid socket: out of memory");
	h->loop = loop;
	h->dev = dev;
	h->uds = uds;
	h->guest_cid = guest_cid;
	h->next_port = LOCAL_PORT_FIRST;
	h->log_budget = GUEST_LOG_BUDGET;
	h->rx_work = (struct ev_deferred){ .fn = fill_rx, .data = h };
	h->tx_work = (struct ev_deferred){ .fn = process_tx, .data = h };
	h->listen_fd = husk_unix_listen(uds, err);
	if (h->listen_fd < 0) {
		free(h);
		return husk_err_wrap(err, "hybrid socket");
	}
	int r = ev_io_add(loop, h->listen_fd, EPOLLIN, on_accept, h, &h->listen_io, err);
	if (r < 0) {
		close(h->listen_fd);
		unlink(uds);
		free(h);
		return r;
	}
	*out = h;
	return 0;
}

void hybrid_free(struct hybrid *h)
{
	if (!h)
		return;
	ev_io_del(h->listen_io);
	while (h->conns)
		destroy(h->conns);
	/* The deferred nodes live in `h`: let queued ones run (they find
	 * nothing to do) before it goes. */
	while (h->rx_work.queued || h->tx_work.queued)
		ev_run_once(h->loop, 0);
	close(h->listen_fd);
	unlink(h->uds);
	free(h);
}
