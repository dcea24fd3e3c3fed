/* libFuzzer target: husk-vsockd's connection state machine, credit
 * accounting and guest-byte buffer (conn.c) driven as hybrid.c drives them,
 * by a hostile guest and an arbitrary host peer.
 *
 * The input is a script of steps: a packet from the guest (any op, flags,
 * length, buf_alloc and fwd_cnt), the host socket taking some of the
 * buffered bytes, a control packet taken for the guest, the host side
 * sending data, half-closing or closing. After every step:
 * - the guest never has more bytes in flight than the credit we gave, and
 *   exactly those bytes wait in the buffer (no loss, no overflow);
 * - the bytes come out of the buffer in order (each carries its position);
 * - we never send the guest more than its advertised credit;
 * - control packets fit the state (no REQUEST once connected, nothing
 *   after RST) and carry our ports. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../host-connector/vsockd/conn.h"

#define GUEST_CID 3
#define HOST_PORT 1024
#define GUEST_PORT 49152

struct input {
	const uint8_t *p;
	size_t left;
};

static uint64_t take(struct input *in, unsigned bytes)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < bytes; i++) {
		v <<= 8;
		if (in->left) {
			v |= *in->p++;
			in->left--;
		}
	}
	return v;
}

/* The byte at stream position `pos` of what the guest sends. */
static uint8_t pattern(uint64_t pos)
{
	return (uint8_t)(pos * 131 + (pos >> 8) * 7);
}

struct model {
	struct vconn_sm sm;
	struct vbuf buf;
	uint64_t sent_pos;      /* guest bytes accepted so far */
	uint64_t delivered_pos; /* guest bytes the host took so far */
	bool guest_knows;       /* the guest has heard of the connection */
	bool over;
};

static uint8_t payload[2 * VSOCK_BUF_ALLOC];

/* The host socket takes `n` buffered bytes: check they are the next ones. */
static void deliver(struct model *m, uint32_t n)
{
	struct iovec iov[2];
	unsigned k = vbuf_peek(&m->buf, iov);
	uint32_t done = 0;
	for (unsigned i = 0; i < k && done < n; i++) {
		const uint8_t *b = iov[i].iov_base;
		for (size_t j = 0; j < iov[i].iov_len && done < n; j++, done++)
			if (b[j] != pattern(m->delivered_pos + done))
				abort(); /* bytes reordered or corrupted in the buffer */
	}
	if (done != n)
		abort();
	vbuf_consume(&m->buf, n);
	vsock_credit_forwarded(&m->sm.credit, n);
	m->delivered_pos += n;
}

static void guest_packet(struct model *m, struct input *in)
{
	struct vsock_pkt p = {
		.src_cid = GUEST_CID,
		.dst_cid = VSOCK_HOST_CID,
		.src_port = GUEST_PORT,
		.dst_port = HOST_PORT,
		.type = VIRTIO_VSOCK_TYPE_STREAM,
	};
	uint8_t sel = (uint8_t)take(in, 1);
	p.op = (sel & 0x80) ? (uint16_t)take(in, 2) : sel % 8;
	p.flags = (sel & 0x40) ? (uint32_t)take(in, 4) : (uint32_t)take(in, 1) & 3;
	uint32_t len = (uint32_t)take(in, 4);
	p.len = (sel & 0x20) ? len : len % (VSOCK_BUF_ALLOC + 4096);
	p.buf_alloc = (uint32_t)take(in, 4);
	/* fwd_cnt near what we sent (a plausible guest) or anything. */
	uint32_t fwd = (uint32_t)take(in, 4);
	p.fwd_cnt = (sel & 0x10) ? fwd : m->sm.credit.tx_cnt - fwd % 65536;
	/* hybrid.c only passes RW packets whose payload the chain holds. */
	switch (vconn_recv(&m->sm, &p)) {
	case VCONN_ACT_NONE:
	case VCONN_ACT_UPDATE:
		break;
	case VCONN_ACT_ESTABLISHED:
		if (m->sm.state != VCONN_ESTABLISHED)
			abort();
		break;
	case VCONN_ACT_RESET:
	case VCONN_ACT_KILL:
		m->over = true;
		return;
	case VCONN_ACT_DATA: {
		if (p.op != VIRTIO_VSOCK_OP_RW || p.len > sizeof(payload))
			abort(); /* data accepted beyond any credit we could give */
		for (uint32_t i = 0; i < p.len; i++)
			payload[i] = pattern(m->sent_pos + i);
		m->sent_pos += p.len;
		/* As forward_to_host: the socket takes some at once when
		 * nothing is buffered, the rest is buffered. */
		uint32_t now = 0;
		if (m->buf.len == 0) {
			now = (uint32_t)take(in, 4) % (p.len + 1);
			for (uint32_t i = 0; i < now; i++)
				if (payload[i] != pattern(m->delivered_pos + i))
					abort();
			vsock_credit_forwarded(&m->sm.credit, now);
			m->delivered_pos += now;
		}
		struct iovec iov = { payload, p.len };
		/* Credit must keep the buffer within buf_alloc. */
		if (vbuf_append(&m->buf, m->sm.credit.buf_alloc, &iov, 1, now, p.len - now) < 0)
			abort();
		break;
	}
	}
}

static void take_control(struct model *m)
{
	struct vsock_pkt p;
	enum vconn_state before = m->sm.state;
	uint16_t op = vconn_take_ctl(&m->sm, GUEST_CID, &p);
	if (op == 0)
		return;
	if (p.src_port != HOST_PORT || p.dst_port != GUEST_PORT || p.dst_cid != GUEST_CID ||
	    p.src_cid != VSOCK_HOST_CID || p.op != op || p.buf_alloc != m->sm.credit.buf_alloc)
		abort();
	switch (op) {
	case VIRTIO_VSOCK_OP_RST:
		if (m->sm.pending)
			abort(); /* nothing follows a reset */
		m->over = true;
		break;
	case VIRTIO_VSOCK_OP_REQUEST:
		if (before != VCONN_CONNECTING)
			abort();
		m->guest_knows = true;
		break;
	case VIRTIO_VSOCK_OP_RESPONSE:
		if (before != VCONN_ESTABLISHED)
			abort();
		m->guest_knows = true;
		break;
	case VIRTIO_VSOCK_OP_SHUTDOWN:
	case VIRTIO_VSOCK_OP_CREDIT_UPDATE:
		if (before != VCONN_ESTABLISHED)
			abort();
		break;
	default:
		abort();
	}
}

static void host_sends(struct model *m, struct input *in)
{
	if (!vconn_want_host_read(&m->sm))
		return;
	uint32_t free_before = vsock_credit_peer_free(&m->sm.credit);
	uint32_t n = (uint32_t)take(in, 3) % (VSOCK_MAX_PKT + 1);
	if (n > free_before)
		n = free_before;
	if (n == 0)
		return;
	struct vsock_pkt p;
	vconn_data_hdr(&m->sm, GUEST_CID, n, &p);
	if (p.op != VIRTIO_VSOCK_OP_RW || p.len != n ||
	    vsock_credit_peer_free(&m->sm.credit) != free_before - n)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = { data, size };
	struct model m = { 0 };
	m.sm.local_port = HOST_PORT;
	m.sm.peer_port = GUEST_PORT;
	vsock_credit_init(&m.sm.credit, VSOCK_BUF_ALLOC);
	if (take(&in, 1) & 1) {
		/* host-initiated, as hybrid.c after "CONNECT <port>" */
		m.sm.state = VCONN_CONNECTING;
		m.sm.pending = VCONN_P_REQUEST;
	} else {
		/* guest-initiated, as guest_connect() after the guest's REQUEST */
		m.sm.state = VCONN_ESTABLISHED;
		m.sm.pending = VCONN_P_RESPONSE;
		m.guest_knows = true;
		vsock_credit_peer_update(&m.sm.credit, (uint32_t)take(&in, 4), 0);
	}
	for (unsigned step = 0; step < 256 && in.left && !m.over; step++) {
		switch (take(&in, 1) % 7) {
		case 0:
			guest_packet(&m, &in);
			break;
		case 1: {
			uint32_t n = (uint32_t)take(&in, 4) % (m.buf.len + 1);
			deliver(&m, n);
			break;
		}
		case 2:
			take_control(&m);
			break;
		case 3:
			host_sends(&m, &in);
			break;
		case 4: /* the host peer shut its write side (hybrid.c's hup) */
			if (m.sm.state == VCONN_ESTABLISHED) {
				m.sm.local_shutdown |= VIRTIO_VSOCK_SHUTDOWN_SEND;
				m.sm.pending |= VCONN_P_SHUTDOWN;
			}
			break;
		case 5: /* conn_update's credit check */
			if (m.sm.state == VCONN_ESTABLISHED &&
			    vsock_credit_update_due(&m.sm.credit))
				m.sm.pending |= VCONN_P_CREDIT_UPDATE;
			break;
		case 6: /* the host peer closed: conn_close(c, true) */
			m.sm.state = VCONN_CLOSED;
			m.sm.pending = m.guest_knows ? VCONN_P_RST : 0;
			if (!m.guest_knows)
				m.over = true;
			break;
		}
		uint32_t pending = vsock_credit_rx_pending(&m.sm.credit);
		if (pending > m.sm.credit.buf_alloc || pending != m.buf.len ||
		    (m.buf.data && m.buf.len > m.buf.cap) ||
		    m.sent_pos - m.delivered_pos != m.buf.len)
			abort(); /* bytes lost, invented or beyond the credit we gave */
		if (vsock_credit_peer_free(&m.sm.credit) > m.sm.credit.peer_buf_alloc)
			abort();
		if (m.sm.state == VCONN_CLOSED && vconn_want_host_read(&m.sm))
			abort();
		if (vconn_done(&m.sm) && m.sm.state != VCONN_ESTABLISHED)
			abort();
	}
	vbuf_free(&m.buf);
	return 0;
}
