#include "conn.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "virtq.h"

void vsock_hdr_decode(const struct virtio_vsock_hdr *h, struct vsock_pkt *p)
{
	struct virtio_vsock_hdr v;
	memcpy(&v, h, sizeof(v));
	*p = (struct vsock_pkt){
		.src_cid = le64toh(v.src_cid),
		.dst_cid = le64toh(v.dst_cid),
		.src_port = le32toh(v.src_port),
		.dst_port = le32toh(v.dst_port),
		.len = le32toh(v.len),
		.type = le16toh(v.type),
		.op = le16toh(v.op),
		.flags = le32toh(v.flags),
		.buf_alloc = le32toh(v.buf_alloc),
		.fwd_cnt = le32toh(v.fwd_cnt),
	};
}

void vsock_hdr_encode(const struct vsock_pkt *p, struct virtio_vsock_hdr *h)
{
	struct virtio_vsock_hdr v = {
		.src_cid = htole64(p->src_cid),
		.dst_cid = htole64(p->dst_cid),
		.src_port = htole32(p->src_port),
		.dst_port = htole32(p->dst_port),
		.len = htole32(p->len),
		.type = htole16(p->type),
		.op = htole16(p->op),
		.flags = htole32(p->flags),
		.buf_alloc = htole32(p->buf_alloc),
		.fwd_cnt = htole32(p->fwd_cnt),
	};
	memcpy(h, &v, sizeof(v));
}

/* ---- credit ---------------------------------------------------------- */

void vsock_credit_init(struct vsock_credit *c, uint32_t buf_alloc)
{
	*c = (struct vsock_credit){ .buf_alloc = buf_alloc };
}

uint32_t vsock_credit_peer_free(const struct vsock_credit *c)
{
	/* Counters wrap at 2^32; their difference is what is in flight. */
	uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;
	if (in_flight >= c->peer_buf_alloc)
		return 0;
	return c->peer_buf_alloc - in_flight;
}

void vsock_credit_peer_update(struct vsock_credit *c, uint32_t buf_alloc, uint32_t fwd_cnt)
{
	c->peer_buf_alloc = buf_alloc;
	c->peer_fwd_cnt = fwd_cnt;
}

uint32_t vsock_credit_rx_pending(const struct vsock_credit *c)
{
	return c->rx_cnt - c->fwd_cnt;
}

int vsock_credit_rx(struct vsock_credit *c, uint32_t len)
{
	uint32_t pending = vsock_credit_rx_pending(c);
	if (pending > c->buf_alloc || len > c->buf_alloc - pending)
		return -ENOBUFS;
	c->rx_cnt += len;
	return 0;
}

void vsock_credit_forwarded(struct vsock_credit *c, uint32_t n)
{
	c->fwd_cnt += n;
}

void vsock_credit_sent(struct vsock_credit *c, uint32_t n)
{
	c->tx_cnt += n;
}

bool vsock_credit_update_due(const struct vsock_credit *c)
{
	return c->fwd_cnt - c->fwd_cnt_sent >= VSOCK_CREDIT_THRESHOLD;
}

void vsock_credit_stamp(struct vsock_credit *c, struct vsock_pkt *p)
{
	p->buf_alloc = c->buf_alloc;
	p->fwd_cnt = c->fwd_cnt;
	c->fwd_cnt_sent = c->fwd_cnt;
}

/* ---- buffer ---------------------------------------------------------- */

int vbuf_append(struct vbuf *b, uint32_t cap, const struct iovec *iov, unsigned n, size_t off,
		size_t len)
{
	if (len == 0)
		return 0;
	if (!b->data) {
		b->data = malloc(cap);
		if (!b->data)
			return -ENOMEM;
		b->cap = cap;
		b->head = b->len = 0;
	}
	if (len > b->cap - b->len)
		return -ENOBUFS;
	uint32_t tail = (b->head + b->len) % b->cap;
	size_t first = b->cap - tail;
	if (first > len)
		first = len;
	size_t got = iov_to_buf(iov, n, off, b->data + tail, first);
	got += iov_to_buf(iov, n, off + first, b->data, len - first);
	b->len += (uint32_t)got;
	return 0;
}

unsigned vbuf_peek(const struct vbuf *b, struct iovec iov[2])
{
	if (b->len == 0)
		return 0;
	uint32_t first = b->cap - b->head;
	if (first >= b->len) {
		iov[0] = (struct iovec){ b->data + b->head, b->len };
		return 1;
	}
	iov[0] = (struct iovec){ b->data + b->head, first };
	iov[1] = (struct iovec){ b->data, b->len - first };
	return 2;
}

void vbuf_consume(struct vbuf *b, uint32_t n)
{
	if (n > b->len)
		n = b->len;
	b->head = (b->head + n) % (b->cap ? b->cap : 1);
	b->len -= n;
	if (b->len == 0)
		vbuf_free(b);
}

void vbuf_free(struct vbuf *b)
{
	free(b->data);
	*b = (struct vbuf){ 0 };
}

/* ---- state machine ------------------------------------------------------ */

enum vconn_action vconn_recv(struct vconn_sm *c, const struct vsock_pkt *p)
{
	if (c->state == VCONN_HANDSHAKE || c->state == VCONN_CLOSED)
		return p->op == VIRTIO_VSOCK_OP_RST ? VCONN_ACT_RESET : VCONN_ACT_NONE;
	vsock_credit_peer_update(&c->credit, p->buf_alloc, p->fwd_cnt);
	switch (p->op) {
	case VIRTIO_VSOCK_OP_RST:
		return VCONN_ACT_RESET;
	case VIRTIO_VSOCK_OP_RESPONSE:
		/* Only an answer to a REQUEST actually sent. */
		if (c->state != VCONN_CONNECTING || (c->pending & VCONN_P_REQUEST))
			return VCONN_ACT_KILL;
		c->state = VCONN_ESTABLISHED;
		return VCONN_ACT_ESTABLISHED;
	case VIRTIO_VSOCK_OP_RW:
		if (c->state != VCONN_ESTABLISHED ||
		    (c->peer_shutdown & VIRTIO_VSOCK_SHUTDOWN_SEND))
			return VCONN_ACT_KILL;
		if (vsock_credit_rx(&c->credit, p->len) < 0)
			return VCONN_ACT_KILL;
		return VCONN_ACT_DATA;
	case VIRTIO_VSOCK_OP_SHUTDOWN:
		if (c->state != VCONN_ESTABLISHED)
			return VCONN_ACT_KILL;
		c->peer_shutdown |= p->flags & (VIRTIO_VSOCK_SHUTDOWN_RCV | VIRTIO_VSOCK_SHUTDOWN_SEND);
		return VCONN_ACT_UPDATE;
	case VIRTIO_VSOCK_OP_CREDIT_UPDATE:
		return c->state == VCONN_ESTABLISHED ? VCONN_ACT_UPDATE : VCONN_ACT_NONE;
	case VIRTIO_VSOCK_OP_CREDIT_REQUEST:
		if (c->state != VCONN_ESTABLISHED)
			return VCONN_ACT_NONE;
		c->pending |= VCONN_P_CREDIT_UPDATE;
		return VCONN_ACT_UPDATE;
	default:
		/* A second REQUEST for a live pair, or an unknown op. */
		return VCONN_ACT_KILL;
	}
}

bool vconn_want_host_read(const struct vconn_sm *c)
{
	return c->state == VCONN_ESTABLISHED &&
	       !(c->local_shutdown & VIRTIO_VSOCK_SHUTDOWN_SEND) &&
	       !(c->peer_shutdown & VIRTIO_VSOCK_SHUTDOWN_RCV) &&
	       vsock_credit_peer_free(&c->credit) > 0;
}

bool vconn_done(const struct vconn_sm *c)
{
	if (c->state != VCONN_ESTABLISHED)
		return false;
	const uint32_t both = VIRTIO_VSOCK_SHUTDOWN_RCV | VIRTIO_VSOCK_SHUTDOWN_SEND;
	if ((c->peer_shutdown & both) == both)
		return true;
	return (c->peer_shutdown & VIRTIO_VSOCK_SHUTDOWN_SEND) &&
	       (c->local_shutdown & VIRTIO_VSOCK_SHUTDOWN_SEND);
}

static void fill_hdr(struct vconn_sm *c, uint64_t guest_cid, uint16_t op, struct vsock_pkt *p)
{
	*p = (struct vsock_pkt){
		.src_cid = VSOCK_HOST_CID,
		.dst_cid = guest_cid,
		.src_port = c->local_port,
		.dst_port = c->peer_port,
		.type = VIRTIO_VSOCK_TYPE_STREAM,
		.op = op,
	};
	vsock_credit_stamp(&c->credit, p);
	/* Every header carries fwd_cnt, so any packet is a credit update. */
	c->pending &= ~(unsigned)VCONN_P_CREDIT_UPDATE;
}

uint16_t vconn_take_ctl(struct vconn_sm *c, uint64_t guest_cid, struct vsock_pkt *p)
{
	uint16_t op;
	if (c->pending & VCONN_P_RST) {
		/* Nothing follows a reset. */
		c->pending = 0;
		op = VIRTIO_VSOCK_OP_RST;
	} else if (c->pending & VCONN_P_REQUEST) {
		c->pending &= ~(unsigned)VCONN_P_REQUEST;
		op = VIRTIO_VSOCK_OP_REQUEST;
	} else if (c->pending & VCONN_P_RESPONSE) {
		c->pending &= ~(unsigned)VCONN_P_RESPONSE;
		op = VIRTIO_VSOCK_OP_RESPONSE;
	} else if (c->pending & VCONN_P_SHUTDOWN) {
		c->pending &= ~(unsigned)VCONN_P_SHUTDOWN;
		op = VIRTIO_VSOCK_OP_SHUTDOWN;
	} else if (c->pending & VCONN_P_CREDIT_UPDATE) {
		op = VIRTIO_VSOCK_OP_CREDIT_UPDATE;
	} else {
		return 0;
	}
	fill_hdr(c, guest_cid, op, p);
	if (op == VIRTIO_VSOCK_OP_SHUTDOWN)
		p->flags = c->local_shutdown;
	return op;
}

void vconn_data_hdr(struct vconn_sm *c, uint64_t guest_cid, uint32_t len, struct vsock_pkt *p)
{
	fill_hdr(c, guest_cid, VIRTIO_VSOCK_OP_RW, p);
	p->len = len;
	vsock_credit_sent(&c->credit, len);
}

int hybrid_parse_connect(const char *line, size_t len, uint32_t *port)
{
	static const char verb[] = "CONNECT ";
	const size_t vlen = sizeof(verb) - 1;
	if (len < vlen + 2 || memcmp(line, verb, vlen) != 0 || line[len - 1] != '\n')
		return -EINVAL;
	size_t end = len - 1;
	if (line[end - 1] == '\r')
		end--;
	uint64_t v = 0;
	size_t i = vlen;
	if (i == end)
		return -EINVAL;
	for (; i < end; i++) {
		if (line[i] < '0' || line[i] > '9')
			return -EINVAL;
		v = v * 10 + (uint64_t)(line[i] - '0');
		if (v > UINT32_MAX)
			return -EINVAL;
	}
	*port = (uint32_t)v;
	return 0;
}
