/* Unit tests for husk-vsockd's connection state machine (pure functions):
 * the packet header layout, credit accounting in both directions including
 * counter wrap-around, the order of owed control packets, shutdown
 * bookkeeping, the overflow buffer, and the hybrid handshake line. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../host-connector/vsockd/conn.h"

#define CID 42
#define RCV VIRTIO_VSOCK_SHUTDOWN_RCV
#define SEND VIRTIO_VSOCK_SHUTDOWN_SEND

static struct vsock_pkt guest_pkt(uint16_t op, uint32_t len)
{
	return (struct vsock_pkt){
		.src_cid = CID,
		.dst_cid = VSOCK_HOST_CID,
		.src_port = 1024,
		.dst_port = 5000,
		.len = len,
		.type = VIRTIO_VSOCK_TYPE_STREAM,
		.op = op,
		.buf_alloc = 256 * 1024,
		.fwd_cnt = 0,
	};
}

static struct vconn_sm established(void)
{
	struct vconn_sm c = { .state = VCONN_ESTABLISHED, .local_port = 5000, .peer_port = 1024 };
	vsock_credit_init(&c.credit, VSOCK_BUF_ALLOC);
	vsock_credit_peer_update(&c.credit, 256 * 1024, 0);
	return c;
}

/* ---- header --------------------------------------------------------------- */

static void test_hdr_layout(void **state)
{
	(void)state;
	assert_int_equal(VSOCK_HDR_SIZE, 44);
	struct vsock_pkt p = {
		.src_cid = 0x0102030405060708ull,
		.dst_cid = 2,
		.src_port = 0x11223344,
		.dst_port = 1024,
		.len = 0x55667788,
		.type = 1,
		.op = 5,
		.flags = 3,
		.buf_alloc = 0x40000,
		.fwd_cnt = 0xdeadbeef,
	};
	struct virtio_vsock_hdr h;
	vsock_hdr_encode(&p, &h);
	const uint8_t *b = (const uint8_t *)&h;
	/* Little-endian, packed, at the offsets of the virtio spec. */
	assert_int_equal(b[0], 0x08);
	assert_int_equal(b[7], 0x01);
	assert_int_equal(b[8], 2);
	assert_int_equal(b[16], 0x44);
	assert_int_equal(b[20], 0x00);
	assert_int_equal(b[21], 0x04);
	assert_int_equal(b[24], 0x88);
	assert_int_equal(b[28], 1);
	assert_int_equal(b[30], 5);
	assert_int_equal(b[32], 3);
	assert_int_equal(b[38], 0x04);
	assert_int_equal(b[40], 0xef);
	assert_int_equal(b[43], 0xde);
	struct vsock_pkt q;
	vsock_hdr_decode(&h, &q);
	assert_memory_equal(&p, &q, sizeof(p));
}

/* ---- credit ----------------------------------------------------------------- */

static void test_peer_credit(void **state)
{
	(void)state;
	struct vsock_credit c;
	vsock_credit_init(&c, VSOCK_BUF_ALLOC);
	/* Before the guest said anything, it has no room for us. */
	assert_int_equal(vsock_credit_peer_free(&c), 0);
	vsock_credit_peer_update(&c, 1000, 0);
	assert_int_equal(vsock_credit_peer_free(&c), 1000);
	vsock_credit_sent(&c, 600);
	assert_int_equal(vsock_credit_peer_free(&c), 400);
	vsock_credit_sent(&c, 400);
	assert_int_equal(vsock_credit_peer_free(&c), 0);
	/* The guest consumed 700. */
	vsock_credit_peer_update(&c, 1000, 700);
	assert_int_equal(vsock_credit_peer_free(&c), 700);
	/* It shrank its buffer below what is in flight: no credit, not a
	 * huge unsigned one. */
	vsock_credit_peer_update(&c, 100, 700);
	assert_int_equal(vsock_credit_peer_free(&c), 0);
}

static void test_peer_credit_wraps(void **state)
{
	(void)state;
	struct vsock_credit c;
	vsock_credit_init(&c, VSOCK_BUF_ALLOC);
	c.tx_cnt = UINT32_MAX - 99;
	vsock_credit_peer_update(&c, 4096, UINT32_MAX - 99);
	assert_int_equal(vsock_credit_peer_free(&c), 4096);
	vsock_credit_sent(&c, 300); /* tx_cnt wraps to 200 */
	assert_int_equal(c.tx_cnt, 200);
	assert_int_equal(vsock_credit_peer_free(&c), 4096 - 300);
	vsock_credit_peer_update(&c, 4096, 150);
	assert_int_equal(vsock_credit_peer_free(&c), 4096 - 50);
}

static void test_rx_credit(void **state)
{
	(void)state;
	struct vsock_credit c;
	vsock_credit_init(&c, 1000);
	assert_int_equal(vsock_credit_rx(&c, 600), 0);
	assert_int_equal(vsock_credit_rx(&c, 400), 0);
	assert_int_equal(vsock_credit_rx_pending(&c), 1000);
	/* One byte past what we granted. */
	assert_int_equal(vsock_credit_rx(&c, 1), -ENOBUFS);
	assert_int_equal(c.rx_cnt, 1000);
	vsock_credit_forwarded(&c, 250);
	assert_int_equal(vsock_credit_rx(&c, 251), -ENOBUFS);
	assert_int_equal(vsock_credit_rx(&c, 250), 0);
	/* A length that would wrap a naive sum. */
	vsock_credit_forwarded(&c, 1000);
	assert_int_equal(vsock_credit_rx(&c, UINT32_MAX), -ENOBUFS);

	/* Counters wrap at 2^32 without breaking the accounting. */
	c.rx_cnt = c.fwd_cnt = UINT32_MAX - 10;
	assert_int_equal(vsock_credit_rx(&c, 1000), 0);
	assert_int_equal(vsock_credit_rx_pending(&c), 1000);
	assert_int_equal(vsock_credit_rx(&c, 1), -ENOBUFS);
}

static void test_credit_update_due(void **state)
{
	(void)state;
	struct vsock_credit c;
	vsock_credit_init(&c, VSOCK_BUF_ALLOC);
	assert_true(VSOCK_CREDIT_THRESHOLD < VSOCK_BUF_ALLOC);
	assert_int_equal(vsock_credit_rx(&c, VSOCK_CREDIT_THRESHOLD), 0);
	vsock_credit_forwarded(&c, VSOCK_CREDIT_THRESHOLD - 1);
	assert_false(vsock_credit_update_due(&c));
	vsock_credit_forwarded(&c, 1);
	assert_true(vsock_credit_update_due(&c));
	struct vsock_pkt p = { 0 };
	vsock_credit_stamp(&c, &p);
	assert_int_equal(p.buf_alloc, VSOCK_BUF_ALLOC);
	assert_int_equal(p.fwd_cnt, VSOCK_CREDIT_THRESHOLD);
	assert_false(vsock_credit_update_due(&c));
}

/* A guest that used up its credit and stalls must always hear back once
 * the host has taken the data: the threshold is reached by then. */
static void test_stalled_guest_gets_update(void **state)
{
	(void)state;
	struct vconn_sm c = established();
	struct vsock_pkt p = guest_pkt(VIRTIO_VSOCK_OP_RW, VSOCK_BUF_ALLOC);
	assert_int_equal(vconn_recv(&c, &p), VCONN_ACT_DATA);
	p.len = 1;
	assert_int_equal(vconn_recv(&c, &p), VCONN_ACT_KILL);
	vsock_credit_forwarded(&c.credit, VSOCK_BUF_ALLOC);
	assert_true(vsock_credit_update_due(&c.credit));
}

/* ---- state machine ---------------------------------------------------------- */

static void test_host_connect_flow(void **state)
{
	(void)state;
	struct vconn_sm c = { .state = VCONN_CONNECTING, .local_port = 1u << 30,
			      .peer_port = 1024, .pending = VCONN_P_REQUEST };
	vsock_credit_init(&c.credit, VSOCK_BUF_ALLOC);
	struct vsock_pkt p = guest_pkt(VIRTIO_VSOCK_OP_RESPONSE, 0);
	p.dst_port = 1u << 30;
	/* A RESPONSE before our REQUEST even left is bogus. */
	struct vconn_sm early = c;
	assert_int_equal(vconn_recv(&early, &p), VCONN_ACT_KILL);

	struct vsock_pkt out;
	assert_int_equal(vconn_take_ctl(&c, CID, &out), VIRTIO_VSOCK_OP_REQUEST);
	assert_int_equal(out.src_cid, VSOCK_HOST_CID);
	assert_int_equal(out.dst_cid, CID);
	assert_int_equal(out.src_port, 1u << 30);
	assert_int_equal(out.dst_port, 1024);
	assert_int_equal(out.type, VIRTIO_VSOCK_TYPE_STREAM);
	assert_int_equal(out.buf_alloc, VSOCK_BUF_ALLOC);
	assert_int_equal(vconn_take_ctl(&c, CID, &out), 0);
	/* Data before the RESPONSE is a violation. */
	struct vconn_sm rw = c;
	struct vsock_pkt d = guest_pkt(VIRTIO_VSOCK_OP_RW, 10);
	assert_int_equal(vconn_recv(&rw, &d), VCONN_ACT_KILL);

	assert_int_equal(vconn_recv(&c, &p), VCONN_ACT_ESTABLISHED);
	assert_int_equal(c.state, VCONN_ESTABLISHED);
	assert_int_equal(c.credit.peer_buf_alloc, 256 * 1024);
	assert_true(vconn_want_host_read(&c));
	/* A second RESPONSE is a violation too. */
	assert_int_equal(vconn_recv(&c, &p), VCONN_ACT_KILL);
}

static void test_refused(void **state)
{
	(void)state;
	struct vconn_sm c = { .state = VCONN_CONNECTING };
	vsock_credit_init(&c.credit, VSOCK_BUF_ALLOC);
	struct vsock_pkt p = guest_pkt(VIRTIO_VSOCK_OP_RST, 0);
	assert_int_equal(vconn_recv(&c, &p), VCONN_ACT_RESET);
}

static void test_data_and_credit_request(void **state)
{
	(void)state;
	struct vconn_sm c = established();
	struct vsock_pkt p = guest_pkt(VIRTIO_VSOCK_OP_RW, 4096);
	p.fwd_cnt = 123;
	p.buf_alloc = 8192;
	assert_int_equal(vconn_recv(&c, &p), VCONN_ACT_DATA);
	assert_int_equal(c.credit.rx_cnt, 4096);
	assert_int_equal(c.credit.peer_fwd_cnt, 123);
	assert_int_equal(c.credit.peer_buf_alloc, 8192);

	p = guest_pkt(VIRTIO_VSOCK_OP_CREDIT_REQUEST, 0);
	assert_int_equal(vconn_recv(&c, &p), VCONN_ACT_UPDATE);
	assert_true(c.pending & VCONN_P_CREDIT_UPDATE);
	vsock_credit_forwarded(&c.credit, 4096);
	struct vsock_pkt out;
	assert_int_equal(vconn_take_ctl(&c, CID, &out), VIRTIO_VSOCK_OP_CREDIT_UPDATE);
	assert_int_equal(out.fwd_cnt, 4096);
	assert_int_equal(c.pending, 0);

	/* Any header carries the credit: a data packet settles a request. */
	c.pending |= VCONN_P_CREDIT_UPDATE;
	vconn_data_hdr(&c, CID, 100, &out);
	assert_int_equal(out.op, VIRTIO_VSOCK_OP_RW);
	assert_int_equal(out.len, 100);
	assert_int_equal(c.credit.tx_cnt, 100);
	assert_int_equal(c.pending, 0);
}

static void test_guest_half_close(void **state)
{
	(void)state;
	struct vconn_sm c = established();
	struct vsock_pkt p = guest_pkt(VIRTIO_VSOCK_OP_SHUTDOWN, 0);
	p.flags = SEND;
	assert_int_equal(vconn_recv(&c, &p), VCONN_ACT_UPDATE);
	assert_int_equal(c.peer_shutdown, SEND);
	/* The host may still send. */
	assert_true(vconn_want_host_read(&c));
	assert_false(vconn_done(&c));
	/* But the guest may not. */
	struct vconn_sm late = c;
	struct vsock_pkt d = guest_pkt(VIRTIO_VSOCK_OP_RW, 1);
	assert_int_equal(vconn_recv(&late, &d), VCONN_ACT_KILL);
	/* Host EOF: both directions finished. */
	c.local_shutdown |= SEND;
	c.pending |= VCONN_P_SHUTDOWN;
	assert_false(vconn_want_host_read(&c));
	assert_true(vconn_done(&c));
	struct vsock_pkt out;
	assert_int_equal(vconn_take_ctl(&c, CID, &out), VIRTIO_VSOCK_OP_SHUTDOWN);
	assert_int_equal(out.flags, SEND);
}

static void test_guest_close(void **state)
{
	(void)state;
	struct vconn_sm c = established();
	struct vsock_pkt p = guest_pkt(VIRTIO_VSOCK_OP_SHUTDOWN, 0);
	p.flags = RCV;
	assert_int_equal(vconn_recv(&c, &p), VCONN_ACT_UPDATE);
	assert_false(vconn_want_host_read(&c));
	assert_false(vconn_done(&c));
	p.flags = SEND | 0x80; /* unknown bits ignored */
	assert_int_equal(vconn_recv(&c, &p), VCONN_ACT_UPDATE);
	assert_int_equal(c.peer_shutdown, RCV | SEND);
	assert_true(vconn_done(&c));
}

static void test_want_host_read_needs_credit(void **state)
{
	(void)state;
	struct vconn_sm c = established();
	vsock_credit_sent(&c.credit, 256 * 1024);
	assert_false(vconn_want_host_read(&c));
	struct vsock_pkt p = guest_pkt(VIRTIO_VSOCK_OP_CREDIT_UPDATE, 0);
	p.fwd_cnt = 1;
	assert_int_equal(vconn_recv(&c, &p), VCONN_ACT_UPDATE);
	assert_true(vconn_want_host_read(&c));
}

static void test_ctl_order(void **state)
{
	(void)state;
	struct vconn_sm c = established();
	c.pending = VCONN_P_RESPONSE | VCONN_P_SHUTDOWN | VCONN_P_CREDIT_UPDATE;
	c.local_shutdown = SEND;
	struct vsock_pkt out;
	assert_int_equal(vconn_take_ctl(&c, CID, &out), VIRTIO_VSOCK_OP_RESPONSE);
	/* The RESPONSE carried the credit: no separate update. */
	assert_int_equal(vconn_take_ctl(&c, CID, &out), VIRTIO_VSOCK_OP_SHUTDOWN);
	assert_int_equal(vconn_take_ctl(&c, CID, &out), 0);

	/* A reset drops everything else owed. */
	c.pending = VCONN_P_SHUTDOWN | VCONN_P_RST | VCONN_P_CREDIT_UPDATE;
	assert_int_equal(vconn_take_ctl(&c, CID, &out), VIRTIO_VSOCK_OP_RST);
	assert_int_equal(c.pending, 0);
	assert_int_equal(vconn_take_ctl(&c, CID, &out), 0);
}

static void test_bad_ops(void **state)
{
	(void)state;
	struct vconn_sm c = established();
	struct vsock_pkt p = guest_pkt(VIRTIO_VSOCK_OP_REQUEST, 0);
	assert_int_equal(vconn_recv(&c, &p), VCONN_ACT_KILL);
	c = established();
	p = guest_pkt(0, 0);
	assert_int_equal(vconn_recv(&c, &p), VCONN_ACT_KILL);
	c = established();
	p = guest_pkt(99, 0);
	assert_int_equal(vconn_recv(&c, &p), VCONN_ACT_KILL);
	/* Once closed on our side only an RST matters. */
	c.state = VCONN_CLOSED;
	p = guest_pkt(VIRTIO_VSOCK_OP_RW, 10);
	assert_int_equal(vconn_recv(&c, &p), VCONN_ACT_NONE);
	p = guest_pkt(VIRTIO_VSOCK_OP_RST, 0);
	assert_int_equal(vconn_recv(&c, &p), VCONN_ACT_RESET);
}

/* ---- buffer --------------------------------------------------------------- */

static void test_vbuf(void **state)
{
	(void)state;
	struct vbuf b = { 0 };
	char src[10] = "0123456789";
	struct iovec iov[2] = { { src, 4 }, { src + 4, 6 } };
	assert_int_equal(vbuf_append(&b, 8, iov, 2, 2, 6), 0); /* "234567" */
	assert_non_null(b.data);
	assert_int_equal(b.len, 6);
	assert_int_equal(vbuf_append(&b, 8, iov, 2, 0, 3), -ENOBUFS);
	struct iovec out[2];
	assert_int_equal(vbuf_peek(&b, out), 1);
	assert_memory_equal(out[0].iov_base, "234567", 6);
	vbuf_consume(&b, 5);
	/* Wraps around the end of the ring. */
	assert_int_equal(vbuf_append(&b, 8, iov, 2, 0, 7), 0);
	assert_int_equal(b.len, 8);
	assert_int_equal(vbuf_peek(&b, out), 2);
	char flat[8];
	memcpy(flat, out[0].iov_base, out[0].iov_len);
	memcpy(flat + out[0].iov_len, out[1].iov_base, out[1].iov_len);
	assert_memory_equal(flat, "70123456", 8);
	/* Draining releases the memory. */
	vbuf_consume(&b, 8);
	assert_null(b.data);
	assert_int_equal(vbuf_peek(&b, out), 0);
	assert_int_equal(vbuf_append(&b, 8, iov, 2, 0, 0), 0);
	assert_null(b.data);
	vbuf_free(&b);
}

/* ---- handshake ------------------------------------------------------------------- */

static int parse(const char *s, uint32_t *port)
{
	return hybrid_parse_connect(s, strlen(s), port);
}

static void test_parse_connect(void **state)
{
	(void)state;
	uint32_t port = 0;
	assert_int_equal(parse("CONNECT 1024\n", &port), 0);
	assert_int_equal(port, 1024);
	assert_int_equal(parse("CONNECT 0\n", &port), 0);
	assert_int_equal(port, 0);
	assert_int_equal(parse("CONNECT 4294967295\r\n", &port), 0);
	assert_int_equal(port, UINT32_MAX);

	port = 7;
	assert_int_equal(parse("CONNECT 4294967296\n", &port), -EINVAL);
	assert_int_equal(parse("CONNECT 99999999999999999999\n", &port), -EINVAL);
	assert_int_equal(parse("CONNECT 1024", &port), -EINVAL);
	assert_int_equal(parse("CONNECT \n", &port), -EINVAL);
	assert_int_equal(parse("CONNECT\n", &port), -EINVAL);
	assert_int_equal(parse("CONNECT  1024\n", &port), -EINVAL);
	assert_int_equal(parse("CONNECT -1\n", &port), -EINVAL);
	assert_int_equal(parse("CONNECT 12a\n", &port), -EINVAL);
	assert_int_equal(parse("connect 1024\n", &port), -EINVAL);
	assert_int_equal(parse("LISTEN 1024\n", &port), -EINVAL);
	assert_int_equal(parse("\n", &port), -EINVAL);
	assert_int_equal(port, 7);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hdr_layout),
		cmocka_unit_test(test_peer_credit),
		cmocka_unit_test(test_peer_credit_wraps),
		cmocka_unit_test(test_rx_credit),
		cmocka_unit_test(test_credit_update_due),
		cmocka_unit_test(test_stalled_guest_gets_update),
		cmocka_unit_test(test_host_connect_flow),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_data_and_credit_request),
		cmocka_unit_test(test_guest_half_close),
		cmocka_unit_test(test_guest_close),
		cmocka_unit_test(test_want_host_read_needs_credit),
		cmocka_unit_test(test_ctl_order),
		cmocka_unit_test(test_bad_ops),
		cmocka_unit_test(test_vbuf),
		cmocka_unit_test(test_parse_connect),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
