/* Device-level tests of husk-vsockd without a VM: the test plays QEMU (a
 * vhost-user front-end with a memfd as guest memory and eventfds) and the
 * guest's virtio-vsock driver (rx/tx rings, packets), and talks to the
 * hybrid socket as host programs do. The daemon's vhost_user.c, hybrid.c,
 * conn.c and virtq.c run on one event loop under ASan/UBSan: negotiation,
 * both connection directions, credit and backpressure, shutdown, and
 * malformed input from the front-end and from the guest. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../host-connector/vsockd/conn.h"
#include "../../host-connector/vsockd/hybrid.h"
#include "../../host-connector/vsockd/vhost_user.h"
#include "husk/cleanup.h"
#include "husk/sock.h"

#define CID 3
#define QSIZE 16
#define RX_BUFS (QSIZE / 2)
#define MEM_SIZE (4u << 20)
#define GPA_BASE 0x40000000ull
#define RX_DESC 0x0000u
#define RX_AVAIL 0x0400u
#define RX_USED 0x0800u
#define TX_DESC 0x1000u
#define TX_AVAIL 0x1400u
#define TX_USED 0x1800u
#define RX_BUF 0x10000u /* + b * 0x2000: header, then 4096 payload at +0x100 */
#define RX_PAYLOAD 4096u
#define TX_BUF 0x100000u /* + slot * TX_SLOT */
#define TX_SLOT 0x11000u

/* Front-end requests and flags, as QEMU sends them. */
enum {
	GET_FEATURES = 1, SET_FEATURES = 2, SET_OWNER = 3, SET_MEM_TABLE = 5,
	SET_VRING_NUM = 8, SET_VRING_ADDR = 9, SET_VRING_BASE = 10, GET_VRING_BASE = 11,
	SET_VRING_KICK = 12, SET_VRING_CALL = 13, GET_PROTOCOL_FEATURES = 15,
	SET_PROTOCOL_FEATURES = 16, GET_QUEUE_NUM = 17, SET_VRING_ENABLE = 18,
	GET_CONFIG = 24, SET_CONFIG = 25,
};
#define F_VERSION 0x1u
#define F_REPLY 0x4u
#define F_NEED_REPLY 0x8u
#define PROTO_MQ (1ull << 0)
#define PROTO_REPLY_ACK (1ull << 3)
#define PROTO_CONFIG (1ull << 9)
#define FEAT_PROTOCOL (1ull << 30)
#define FEAT_VERSION_1 (1ull << 32)
#define FEAT_INDIRECT (1ull << 28)

struct fx {
	/* daemon side */
	struct ev_loop *loop;
	struct vu_dev dev;
	struct hybrid *mux;
	bool disconnected;
	unsigned stopped;
	/* test side */
	char dir[64], vu_path[128], uds[128];
	int qfd;
	int memfd;
	uint8_t *mem;
	int kick[2], call[2];
	uint16_t rx_avail, rx_used_seen, tx_avail;
};

/* ---- daemon callbacks ------------------------------------------------------- */

static void on_kick(void *data, unsigned ring)
{
	struct fx *f = data;
	hybrid_kick(f->mux, ring);
}

static void on_stopped(void *data, unsigned ring)
{
	(void)ring;
	struct fx *f = data;
	f->stopped++;
	hybrid_reset(f->mux);
}

static void on_disconnected(void *data)
{
	struct fx *f = data;
	f->disconnected = true;
}

static const struct vu_ops ops = { on_kick, on_stopped, on_disconnected };

static void pump(struct fx *f)
{
	/* Socket I/O between the two sides is synchronous: run until idle. */
	for (int idle = 0, i = 0; idle < 2 && i < 1000; i++)
		idle = ev_run_once(f->loop, 0) == 0 ? idle + 1 : 0;
}

/* ---- front-end ----------------------------------------------------------------- */

static void vu_send(struct fx *f, uint32_t req, uint32_t flags, const void *payload,
		    uint32_t size, const int *fds, unsigned nfds)
{
	uint32_t hdr[3] = { req, flags, size };
	struct iovec iov[2] = { { hdr, sizeof(hdr) }, { (void *)payload, size } };
	union {
		char buf[CMSG_SPACE(sizeof(int) * 8)];
		struct cmsghdr align;
	} c;
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = size ? 2 : 1 };
	if (nfds) {
		mh.msg_control = c.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
	}
	assert_int_equal(sendmsg(f->qfd, &mh, MSG_NOSIGNAL), (ssize_t)(sizeof(hdr) + size));
}

/* Reads one reply after letting the daemon run; returns its payload size. */
static uint32_t vu_reply(struct fx *f, uint32_t req, void *payload, uint32_t max)
{
	pump(f);
	uint32_t hdr[3];
	assert_int_equal(recv(f->qfd, hdr, sizeof(hdr), MSG_DONTWAIT), sizeof(hdr));
	assert_int_equal(hdr[0], req);
	assert_int_equal(hdr[1], F_VERSION | F_REPLY);
	assert_true(hdr[2] <= max);
	if (hdr[2])
		assert_int_equal(recv(f->qfd, payload, hdr[2], MSG_DONTWAIT), hdr[2]);
	return hdr[2];
}

static uint64_t vu_get_u64(struct fx *f, uint32_t req)
{
	vu_send(f, req, F_VERSION, NULL, 0, NULL, 0);
	uint64_t v = 0;
	assert_int_equal(vu_reply(f, req, &v, sizeof(v)), 8);
	return v;
}

/* Sends a request asking for an ack (REPLY_ACK); returns the ack value. */
static uint64_t vu_set(struct fx *f, uint32_t req, const void *payload, uint32_t size,
		       const int *fds, unsigned nfds)
{
	vu_send(f, req, F_VERSION | F_NEED_REPLY, payload, size, fds, nfds);
	uint64_t ack = 99;
	assert_int_equal(vu_reply(f, req, &ack, sizeof(ack)), 8);
	return ack;
}

static void vu_set_ok(struct fx *f, uint32_t req, const void *payload, uint32_t size,
		      const int *fds, unsigned nfds)
{
	assert_int_equal(vu_set(f, req, payload, size, fds, nfds), 0);
}

struct region {
	uint64_t gpa, size, uva, offset;
};

static void set_ring(struct fx *f, unsigned i, uint32_t desc, uint32_t avail, uint32_t used)
{
	uint32_t state[2] = { i, QSIZE };
	vu_set_ok(f, SET_VRING_NUM, state, sizeof(state), NULL, 0);
	state[1] = 0;
	vu_set_ok(f, SET_VRING_BASE, state, sizeof(state), NULL, 0);
	struct {
		uint32_t index, flags;
		uint64_t desc, used, avail, log;
	} addr = { i, 0, (uintptr_t)(f->mem + desc), (uintptr_t)(f->mem + used),
		   (uintptr_t)(f->mem + avail), 0 };
	vu_set_ok(f, SET_VRING_ADDR, &addr, sizeof(addr), NULL, 0);
	uint64_t idx = i;
	vu_set_ok(f, SET_VRING_CALL, &idx, sizeof(idx), &f->call[i], 1);
	vu_set_ok(f, SET_VRING_KICK, &idx, sizeof(idx), &f->kick[i], 1);
}

/* ---- the guest's driver ---------------------------------------------------------- */

static uint64_t gpa(uint32_t off)
{
	return GPA_BASE + off;
}

static struct vring_desc *desc(struct fx *f, uint32_t table, unsigned i)
{
	return (struct vring_desc *)(f->mem + table) + i;
}

static void kick(struct fx *f, unsigned ring)
{
	uint64_t one = 1;
	assert_int_equal(write(f->kick[ring], &one, 8), 8);
	pump(f);
}

static void rx_post(struct fx *f, unsigned b)
{
	*desc(f, RX_DESC, 2 * b) = (struct vring_desc){
		htole64(gpa(RX_BUF + b * 0x2000)), htole32(VSOCK_HDR_SIZE),
		htole16(VRING_DESC_F_WRITE | VRING_DESC_F_NEXT), htole16(2 * b + 1) };
	*desc(f, RX_DESC, 2 * b + 1) = (struct vring_desc){
		htole64(gpa(RX_BUF + b * 0x2000 + 0x100)), htole32(RX_PAYLOAD),
		htole16(VRING_DESC_F_WRITE), 0 };
	struct vring_avail *a = (struct vring_avail *)(f->mem + RX_AVAIL);
	a->ring[f->rx_avail % QSIZE] = htole16(2 * b);
	f->rx_avail++;
	__atomic_store_n(&a->idx, htole16(f->rx_avail), __ATOMIC_RELEASE);
}

/* Takes the next packet the device put on the rx ring (the buffer is
 * posted again), which must come from CID `src_cid`. Returns false when
 * there is none. */
static bool rx_take_from(struct fx *f, uint64_t src_cid, struct vsock_pkt *p, void *payload,
			 size_t max)
{
	pump(f);
	struct vring_used *u = (struct vring_used *)(f->mem + RX_USED);
	if (le16toh(__atomic_load_n(&u->idx, __ATOMIC_ACQUIRE)) == f->rx_used_seen)
		return false;
	struct vring_used_elem e = u->ring[f->rx_used_seen % QSIZE];
	f->rx_used_seen++;
	unsigned b = le32toh(e.id) / 2;
	uint32_t len = le32toh(e.len);
	assert_true(len >= VSOCK_HDR_SIZE && len <= VSOCK_HDR_SIZE + RX_PAYLOAD);
	vsock_hdr_decode((struct virtio_vsock_hdr *)(f->mem + RX_BUF + b * 0x2000), p);
	assert_int_equal(p->len, len - VSOCK_HDR_SIZE);
	assert_int_equal(p->src_cid, src_cid);
	assert_int_equal(p->dst_cid, CID);
	assert_int_equal(p->type, VIRTIO_VSOCK_TYPE_STREAM);
	if (payload)
		memcpy(payload, f->mem + RX_BUF + b * 0x2000 + 0x100, p->len < max ? p->len : max);
	rx_post(f, b);
	kick(f, VU_RING_RX);
	return true;
}

static bool rx_take(struct fx *f, struct vsock_pkt *p, void *payload, size_t max)
{
	return rx_take_from(f, VSOCK_HOST_CID, p, payload, max);
}

static struct vsock_pkt rx_expect(struct fx *f, uint16_t op, uint32_t host_port,
				  uint32_t guest_port)
{
	struct vsock_pkt p;
	assert_true(rx_take(f, &p, NULL, 0));
	assert_int_equal(p.op, op);
	assert_int_equal(p.src_port, host_port);
	assert_int_equal(p.dst_port, guest_port);
	return p;
}

static void tx_raw(struct fx *f, const struct vsock_pkt *p, const void *payload, size_t len)
{
	unsigned slot = f->tx_avail % QSIZE;
	uint8_t *buf = f->mem + TX_BUF + slot * TX_SLOT;
	vsock_hdr_encode(p, (struct virtio_vsock_hdr *)buf);
	if (len)
		memcpy(buf + VSOCK_HDR_SIZE, payload, len);
	*desc(f, TX_DESC, slot) = (struct vring_desc){
		htole64(gpa(TX_BUF + slot * TX_SLOT)), htole32(VSOCK_HDR_SIZE + (uint32_t)len), 0,
		0 };
	struct vring_avail *a = (struct vring_avail *)(f->mem + TX_AVAIL);
	a->ring[f->tx_avail % QSIZE] = htole16(slot);
	f->tx_avail++;
	__atomic_store_n(&a->idx, htole16(f->tx_avail), __ATOMIC_RELEASE);
	kick(f, VU_RING_TX);
}

static void tx(struct fx *f, uint16_t op, uint32_t guest_port, uint32_t host_port,
	       uint32_t flags, uint32_t fwd_cnt, const void *payload, size_t len)
{
	struct vsock_pkt p = {
		.src_cid = CID, .dst_cid = VSOCK_HOST_CID, .src_port = guest_port,
		.dst_port = host_port, .len = (uint32_t)len, .type = VIRTIO_VSOCK_TYPE_STREAM,
		.op = op, .flags = flags, .buf_alloc = 256 * 1024, .fwd_cnt = fwd_cnt,
	};
	tx_raw(f, &p, payload, len);
}

static uint16_t tx_used(struct fx *f)
{
	return le16toh(((struct vring_used *)(f->mem + TX_USED))->idx);
}

/* ---- host side ------------------------------------------------------------------------- */

static int host_connect(struct fx *f, const char *line)
{
	int fd = husk_unix_connect(f->uds, NULL);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, line, strlen(line)), (ssize_t)strlen(line));
	pump(f);
	return fd;
}

/* Non-blocking read after letting the daemon run: bytes, 0 at EOF (or a
 * reset: the daemon closed with our bytes unread), -1 when nothing is
 * there yet. */
static ssize_t host_read(struct fx *f, int fd, void *buf, size_t len)
{
	pump(f);
	ssize_t n = recv(fd, buf, len, MSG_DONTWAIT);
	if (n < 0 && errno == ECONNRESET)
		return 0;
	if (n < 0) {
		assert_int_equal(errno, EAGAIN);
		return -1;
	}
	return n;
}

/* ---- fixture ------------------------------------------------------------------------------ */

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	strcpy(f->dir, "/tmp/vsockd-test.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->vu_path, sizeof(f->vu_path), "%s/vu.sock", f->dir);
	snprintf(f->uds, sizeof(f->uds), "%s/hybrid.sock", f->dir);
	struct husk_err err = { 0 };
	assert_int_equal(ev_loop_new(&f->loop, &err), 0);
	assert_int_equal(vu_dev_init(&f->dev, f->loop, f->vu_path, CID, &ops, f, &err), 0);
	assert_int_equal(hybrid_new(&f->mux, f->loop, &f->dev, f->uds, CID, &err), 0);

	f->memfd = memfd_create("guest", MFD_CLOEXEC);
	assert_true(f->memfd >= 0);
	assert_int_equal(ftruncate(f->memfd, MEM_SIZE), 0);
	f->mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, f->memfd, 0);
	assert_true(f->mem != MAP_FAILED);
	for (int i = 0; i < 2; i++) {
		f->kick[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		f->call[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	}

	f->qfd = husk_unix_connect(f->vu_path, &err);
	assert_true(f->qfd >= 0);
	pump(f);
	/* Accepted: the name is gone. */
	assert_int_equal(access(f->vu_path, F_OK), -1);

	/* QEMU 7.2's order (DESIGN.md, "Facts measured"). */
	uint64_t feat = vu_get_u64(f, GET_FEATURES);
	assert_true(feat & FEAT_VERSION_1);
	assert_true(feat & FEAT_PROTOCOL);
	uint64_t proto = vu_get_u64(f, GET_PROTOCOL_FEATURES);
	assert_int_equal(proto & (PROTO_MQ | PROTO_CONFIG | PROTO_REPLY_ACK),
			 PROTO_MQ | PROTO_CONFIG | PROTO_REPLY_ACK);
	proto = PROTO_MQ | PROTO_CONFIG | PROTO_REPLY_ACK;
	vu_send(f, SET_PROTOCOL_FEATURES, F_VERSION, &proto, 8, NULL, 0);
	assert_int_equal(vu_get_u64(f, GET_QUEUE_NUM), 2);
	vu_set_ok(f, SET_OWNER, NULL, 0, NULL, 0);
	struct {
		uint32_t offset, size, flags;
		uint64_t cid;
	} __attribute__((packed)) cfg = { 0, 8, 0, 0 };
	vu_send(f, GET_CONFIG, F_VERSION, &cfg, sizeof(cfg), NULL, 0);
	assert_int_equal(vu_reply(f, GET_CONFIG, &cfg, sizeof(cfg)), 20);
	assert_int_equal(cfg.size, 8);
	assert_int_equal(cfg.cid, CID);
	feat = FEAT_VERSION_1 | FEAT_PROTOCOL | FEAT_INDIRECT;
	vu_set_ok(f, SET_FEATURES, &feat, 8, NULL, 0);
	struct {
		uint32_t n, pad;
		struct region r;
	} mt = { 1, 0, { GPA_BASE, MEM_SIZE, (uintptr_t)f->mem, 0 } };
	vu_set_ok(f, SET_MEM_TABLE, &mt, sizeof(mt), &f->memfd, 1);
	set_ring(f, VU_RING_RX, RX_DESC, RX_AVAIL, RX_USED);
	set_ring(f, VU_RING_TX, TX_DESC, TX_AVAIL, TX_USED);
	for (uint32_t i = 0; i < 2; i++) {
		uint32_t en[2] = { i, 1 };
		vu_set_ok(f, SET_VRING_ENABLE, en, sizeof(en), NULL, 0);
	}
	assert_true(vu_ring_ready(&f->dev, VU_RING_RX));
	assert_true(vu_ring_ready(&f->dev, VU_RING_TX));
	for (unsigned b = 0; b < RX_BUFS; b++)
		rx_post(f, b);
	kick(f, VU_RING_RX);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	if (f->qfd >= 0)
		close(f->qfd);
	vu_dev_fini(&f->dev);
	hybrid_free(f->mux);
	ev_loop_free(f->loop);
	/* Both sockets are gone once the daemon is. */
	assert_int_equal(access(f->uds, F_OK), -1);
	assert_int_equal(access(f->vu_path, F_OK), -1);
	munmap(f->mem, MEM_SIZE);
	close(f->memfd);
	for (int i = 0; i < 2; i++) {
		close(f->kick[i]);
		close(f->call[i]);
	}
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_interrupts(void **state)
{
	struct fx *f = *state;
	uint64_t v;
	/* Posting rx buffers produced nothing to signal yet. */
	assert_int_equal(read(f->call[VU_RING_RX], &v, 8), -1);
	tx(f, VIRTIO_VSOCK_OP_RST, 1, 2, 0, 0, NULL, 0);
	/* The tx chain was used: the guest hears of it. */
	assert_int_equal(tx_used(f), 1);
	assert_int_equal(read(f->call[VU_RING_TX], &v, 8), 8);
	/* Unless it asked not to. */
	((struct vring_avail *)(f->mem + TX_AVAIL))->flags = htole16(VRING_AVAIL_F_NO_INTERRUPT);
	tx(f, VIRTIO_VSOCK_OP_RST, 1, 2, 0, 0, NULL, 0);
	assert_int_equal(tx_used(f), 2);
	assert_int_equal(read(f->call[VU_RING_TX], &v, 8), -1);
}

static void test_guest_connects(void **state)
{
	struct fx *f = *state;
	char path[160];
	snprintf(path, sizeof(path), "%s_5000", f->uds);
	int l = husk_unix_listen(path, NULL);
	assert_true(l >= 0);
	tx(f, VIRTIO_VSOCK_OP_REQUEST, 1234, 5000, 0, 0, NULL, 0);
	int c = accept4(l, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	assert_true(c >= 0);
	struct vsock_pkt p = rx_expect(f, VIRTIO_VSOCK_OP_RESPONSE, 5000, 1234);
	assert_int_equal(p.buf_alloc, VSOCK_BUF_ALLOC);

	tx(f, VIRTIO_VSOCK_OP_RW, 1234, 5000, 0, 0, "hello", 5);
	char buf[16] = { 0 };
	assert_int_equal(host_read(f, c, buf, sizeof(buf)), 5);
	assert_string_equal(buf, "hello");
	assert_int_equal(write(c, "world", 5), 5);
	char pl[16] = { 0 };
	assert_true(rx_take(f, &p, pl, sizeof(pl)));
	assert_int_equal(p.op, VIRTIO_VSOCK_OP_RW);
	assert_int_equal(p.len, 5);
	assert_int_equal(p.fwd_cnt, 5); /* the 5 bytes the host took */
	assert_string_equal(pl, "world");

	/* The host program exits: a clean close, both directions shut; the
	 * guest's RST completes it. */
	close(c);
	p = rx_expect(f, VIRTIO_VSOCK_OP_SHUTDOWN, 5000, 1234);
	assert_int_equal(p.flags, VIRTIO_VSOCK_SHUTDOWN_RCV | VIRTIO_VSOCK_SHUTDOWN_SEND);
	assert_false(rx_take(f, &p, NULL, 0));
	tx(f, VIRTIO_VSOCK_OP_RST, 1234, 5000, 0, 5, NULL, 0);
	assert_false(rx_take(f, &p, NULL, 0));
	/* Late packets for it are answered with RST. */
	tx(f, VIRTIO_VSOCK_OP_RW, 1234, 5000, 0, 0, "x", 1);
	rx_expect(f, VIRTIO_VSOCK_OP_RST, 5000, 1234);
	close(l);
}

static void test_guest_connect_refused(void **state)
{
	struct fx *f = *state;
	tx(f, VIRTIO_VSOCK_OP_REQUEST, 777, 6000, 0, 0, NULL, 0);
	rx_expect(f, VIRTIO_VSOCK_OP_RST, 6000, 777);
	struct vsock_pkt p;
	assert_false(rx_take(f, &p, NULL, 0));
}

/* Only the host is reachable through the daemon. A guest connection to
 * any other CID (the guest itself, 1, another VM's, 0, -1U) is reset at
 * once, from the CID it named (the guest's stack matches a reset to its
 * socket by the peer's address), and never reaches a hybrid socket of the
 * same port, even where one listens or a host connection has the same
 * ports. */
static void test_guest_connect_not_host(void **state)
{
	struct fx *f = *state;
	char path[160];
	snprintf(path, sizeof(path), "%s_1024", f->uds);
	int l = husk_unix_listen(path, NULL);
	assert_true(l >= 0);
	static const uint64_t cids[] = { CID, 1, 0, 4, 0xffffffffu, 0xffffffff00000002ull };
	struct vsock_pkt p;
	for (size_t i = 0; i < sizeof(cids) / sizeof(cids[0]); i++) {
		struct vsock_pkt q = { .src_cid = CID, .dst_cid = cids[i], .src_port = 4000 + (uint32_t)i,
				       .dst_port = 1024, .type = VIRTIO_VSOCK_TYPE_STREAM,
				       .op = VIRTIO_VSOCK_OP_REQUEST, .buf_alloc = 65536 };
		tx_raw(f, &q, NULL, 0);
		assert_true(rx_take_from(f, cids[i], &p, NULL, 0));
		assert_int_equal(p.op, VIRTIO_VSOCK_OP_RST);
		assert_int_equal(p.src_port, 1024);
		assert_int_equal(p.dst_port, 4000 + i);
		assert_false(rx_take(f, &p, NULL, 0));
		/* Data or a shutdown for such a connection: reset too; a reset:
		 * nothing. */
		q.op = VIRTIO_VSOCK_OP_RW;
		q.len = 2;
		tx_raw(f, &q, "zz", 2);
		assert_true(rx_take_from(f, cids[i], &p, NULL, 0));
		assert_int_equal(p.op, VIRTIO_VSOCK_OP_RST);
		q.op = VIRTIO_VSOCK_OP_RST;
		q.len = 0;
		tx_raw(f, &q, NULL, 0);
		assert_false(rx_take(f, &p, NULL, 0));
	}
	assert_int_equal(accept4(l, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK), -1);
	assert_int_equal(errno, EAGAIN);

	/* A real connection to host port 1024 from guest port 4000, and the
	 * same ports at the guest's own CID: refused, the real one unharmed. */
	tx(f, VIRTIO_VSOCK_OP_REQUEST, 4000, 1024, 0, 0, NULL, 0);
	int c = accept4(l, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	assert_true(c >= 0);
	rx_expect(f, VIRTIO_VSOCK_OP_RESPONSE, 1024, 4000);
	struct vsock_pkt q = { .src_cid = CID, .dst_cid = CID, .src_port = 4000, .dst_port = 1024,
			       .len = 3, .type = VIRTIO_VSOCK_TYPE_STREAM, .op = VIRTIO_VSOCK_OP_RW,
			       .buf_alloc = 65536 };
	tx_raw(f, &q, "bad", 3);
	assert_true(rx_take_from(f, CID, &p, NULL, 0));
	assert_int_equal(p.op, VIRTIO_VSOCK_OP_RST);
	tx(f, VIRTIO_VSOCK_OP_RW, 4000, 1024, 0, 0, "good", 4);
	char buf[16] = { 0 };
	assert_int_equal(host_read(f, c, buf, sizeof(buf)), 4);
	assert_string_equal(buf, "good");
	assert_false(rx_take(f, &p, NULL, 0));
	close(c);
	close(l);
}

static void test_host_connects(void **state)
{
	struct fx *f = *state;
	int c = host_connect(f, "CONNECT 1024\n");
	struct vsock_pkt p = rx_expect(f, VIRTIO_VSOCK_OP_REQUEST, 1u << 30, 1024);
	char buf[64] = { 0 };
	assert_int_equal(host_read(f, c, buf, sizeof(buf)), -1);
	tx(f, VIRTIO_VSOCK_OP_RESPONSE, 1024, p.src_port, 0, 0, NULL, 0);
	assert_int_equal(host_read(f, c, buf, sizeof(buf)), 14);
	assert_string_equal(buf, "OK 1073741824\n");

	assert_int_equal(write(c, "abc", 3), 3);
	char pl[8] = { 0 };
	assert_true(rx_take(f, &p, pl, sizeof(pl)));
	assert_int_equal(p.op, VIRTIO_VSOCK_OP_RW);
	assert_string_equal(pl, "abc");
	tx(f, VIRTIO_VSOCK_OP_RW, 1024, 1u << 30, 0, 3, "xyz", 3);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(host_read(f, c, buf, sizeof(buf)), 3);
	assert_string_equal(buf, "xyz");

	/* Host half-close: the guest hears SHUTDOWN(SEND), can still send. */
	shutdown(c, SHUT_WR);
	p = rx_expect(f, VIRTIO_VSOCK_OP_SHUTDOWN, 1u << 30, 1024);
	assert_int_equal(p.flags, VIRTIO_VSOCK_SHUTDOWN_SEND);
	tx(f, VIRTIO_VSOCK_OP_RW, 1024, 1u << 30, 0, 3, "tail", 4);
	assert_int_equal(host_read(f, c, buf, sizeof(buf)), 4);
	/* The guest closes: after its last byte the host sees EOF, the
	 * guest gets the RST that completes its close. */
	tx(f, VIRTIO_VSOCK_OP_SHUTDOWN, 1024, 1u << 30,
	   VIRTIO_VSOCK_SHUTDOWN_RCV | VIRTIO_VSOCK_SHUTDOWN_SEND, 3, NULL, 0);
	assert_int_equal(host_read(f, c, buf, sizeof(buf)), 0);
	rx_expect(f, VIRTIO_VSOCK_OP_RST, 1u << 30, 1024);
	close(c);

	/* A second client gets the next port. */
	c = host_connect(f, "CONNECT 1024\n");
	rx_expect(f, VIRTIO_VSOCK_OP_REQUEST, (1u << 30) + 1, 1024);
	close(c);
	/* Gone before the guest answered: the request is cancelled. */
	rx_expect(f, VIRTIO_VSOCK_OP_RST, (1u << 30) + 1, 1024);
}

/* A host program that writes and then closes its socket (a stdin writer):
 * the guest gets every byte, then SHUTDOWN for both directions (the host
 * will neither send nor receive), never an RST, which could reach the
 * guest's socket before its reader had the last bytes. The guest's RST
 * completes the close. Variants: the guest's credit smaller than what is
 * left in the closed socket; the host half-closed first (SHUTDOWN(SEND)),
 * then closed; guest data after the shutdown, which the host can no
 * longer take: that is reset. */
static void test_host_writes_then_closes(void **state)
{
	struct fx *f = *state;
	static char data[12000];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (char)(i * 7 + i / 251);
	const uint32_t both = VIRTIO_VSOCK_SHUTDOWN_RCV | VIRTIO_VSOCK_SHUTDOWN_SEND;
	for (int variant = 0; variant < 3; variant++) {
		int c = host_connect(f, "CONNECT 1024\n");
		struct vsock_pkt p;
		assert_true(rx_take(f, &p, NULL, 0));
		assert_int_equal(p.op, VIRTIO_VSOCK_OP_REQUEST);
		const uint32_t port = p.src_port;
		struct vsock_pkt g = {
			.src_cid = CID, .dst_cid = VSOCK_HOST_CID, .src_port = 1024,
			.dst_port = port, .type = VIRTIO_VSOCK_TYPE_STREAM,
			.op = VIRTIO_VSOCK_OP_RESPONSE, .buf_alloc = variant == 1 ? 5000 : 65536,
		};
		tx_raw(f, &g, NULL, 0);
		char ok[32];
		assert_true(host_read(f, c, ok, sizeof(ok)) > 0);
		assert_int_equal(write(c, data, sizeof(data)), (ssize_t)sizeof(data));
		if (variant == 2)
			shutdown(c, SHUT_WR);
		else
			close(c);
		uint32_t got = 0;
		char pl[RX_PAYLOAD];
		for (int i = 0; i < 100; i++) {
			if (!rx_take(f, &p, pl, sizeof(pl))) {
				/* Out of credit: the guest reads what it has. */
				g.op = VIRTIO_VSOCK_OP_CREDIT_UPDATE;
				g.fwd_cnt = got;
				tx_raw(f, &g, NULL, 0);
				continue;
			}
			if (p.op != VIRTIO_VSOCK_OP_RW)
				break;
			assert_memory_equal(pl, data + got, p.len);
			got += p.len;
		}
		assert_int_equal(got, sizeof(data));
		assert_int_equal(p.op, VIRTIO_VSOCK_OP_SHUTDOWN);
		if (variant == 2) {
			assert_int_equal(p.flags, VIRTIO_VSOCK_SHUTDOWN_SEND);
			assert_false(rx_take(f, &p, NULL, 0));
			close(c);
			p = rx_expect(f, VIRTIO_VSOCK_OP_SHUTDOWN, port, 1024);
		}
		assert_int_equal(p.flags, both);
		assert_false(rx_take(f, &p, NULL, 0));
		if (variant == 1) {
			tx(f, VIRTIO_VSOCK_OP_RW, 1024, port, 0, got, "late", 4);
			rx_expect(f, VIRTIO_VSOCK_OP_RST, port, 1024);
		} else {
			tx(f, VIRTIO_VSOCK_OP_RST, 1024, port, 0, got, NULL, 0);
			assert_false(rx_take(f, &p, NULL, 0));
		}
		/* Gone either way: a late packet is reset. */
		tx(f, VIRTIO_VSOCK_OP_RW, 1024, port, 0, got, "x", 1);
		rx_expect(f, VIRTIO_VSOCK_OP_RST, port, 1024);
	}
}

static void test_host_connect_refused(void **state)
{
	struct fx *f = *state;
	int c = host_connect(f, "CONNECT 4444\n");
	struct vsock_pkt p = rx_expect(f, VIRTIO_VSOCK_OP_REQUEST, 1u << 30, 4444);
	tx(f, VIRTIO_VSOCK_OP_RST, 4444, p.src_port, 0, 0, NULL, 0);
	char buf[16];
	assert_int_equal(host_read(f, c, buf, sizeof(buf)), 0);
	close(c);
	assert_false(rx_take(f, &p, NULL, 0));
}

static void test_bad_handshakes(void **state)
{
	struct fx *f = *state;
	const char *bad[] = { "CONNECT x\n", "HELLO\n", "CONNECT 123456789012345678901234567890" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		int c = host_connect(f, bad[i]);
		char buf[16];
		assert_int_equal(host_read(f, c, buf, sizeof(buf)), 0);
		close(c);
	}
	struct vsock_pkt p;
	assert_false(rx_take(f, &p, NULL, 0));
	/* Bytes after the line are the guest's, not part of the handshake. */
	int c = host_connect(f, "CONNECT 1024\nearly");
	p = rx_expect(f, VIRTIO_VSOCK_OP_REQUEST, 1u << 30, 1024);
	tx(f, VIRTIO_VSOCK_OP_RESPONSE, 1024, p.src_port, 0, 0, NULL, 0);
	char pl[8] = { 0 };
	assert_true(rx_take(f, &p, pl, sizeof(pl)));
	assert_int_equal(p.op, VIRTIO_VSOCK_OP_RW);
	assert_string_equal(pl, "early");
	close(c);
}

/* Host -> guest: never more than the guest's credit in flight. */
static void test_guest_credit(void **state)
{
	struct fx *f = *state;
	int c = host_connect(f, "CONNECT 1024\n");
	struct vsock_pkt p = rx_expect(f, VIRTIO_VSOCK_OP_REQUEST, 1u << 30, 1024);
	struct vsock_pkt resp = {
		.src_cid = CID, .dst_cid = VSOCK_HOST_CID, .src_port = 1024,
		.dst_port = p.src_port, .type = VIRTIO_VSOCK_TYPE_STREAM,
		.op = VIRTIO_VSOCK_OP_RESPONSE, .buf_alloc = 10000, .fwd_cnt = 0,
	};
	tx_raw(f, &resp, NULL, 0);
	char ok[32];
	assert_true(host_read(f, c, ok, sizeof(ok)) > 0);
	static char big[30000];
	memset(big, 'b', sizeof(big));
	assert_int_equal(write(c, big, sizeof(big)), (ssize_t)sizeof(big));
	uint32_t got = 0;
	while (rx_take(f, &p, NULL, 0)) {
		assert_int_equal(p.op, VIRTIO_VSOCK_OP_RW);
		got += p.len;
	}
	assert_int_equal(got, 10000);
	/* The guest read 6000 of them. */
	resp.op = VIRTIO_VSOCK_OP_CREDIT_UPDATE;
	resp.fwd_cnt = 6000;
	tx_raw(f, &resp, NULL, 0);
	while (rx_take(f, &p, NULL, 0))
		got += p.len;
	assert_int_equal(got, 16000);
	/* It shrinks its buffer: nothing more until it catches up. */
	resp.buf_alloc = 5000;
	resp.fwd_cnt = 10000;
	tx_raw(f, &resp, NULL, 0);
	assert_false(rx_take(f, &p, NULL, 0));
	resp.fwd_cnt = 16000;
	tx_raw(f, &resp, NULL, 0);
	while (rx_take(f, &p, NULL, 0))
		got += p.len;
	assert_int_equal(got, 21000);
	close(c);
}

/* Guest -> host with a host that does not read: the daemon buffers at
 * most what it granted, tells the guest as the host catches up, and resets
 * a guest that ignores the credit. */
static void test_host_backpressure(void **state)
{
	struct fx *f = *state;
	char path[160];
	snprintf(path, sizeof(path), "%s_5001", f->uds);
	int l = husk_unix_listen(path, NULL);
	tx(f, VIRTIO_VSOCK_OP_REQUEST, 99, 5001, 0, 0, NULL, 0);
	int c = accept4(l, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	assert_true(c >= 0);
	int small = 4096;
	setsockopt(c, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	struct vsock_pkt p = rx_expect(f, VIRTIO_VSOCK_OP_RESPONSE, 5001, 99);
	static char chunk[16384];
	uint32_t sent = 0;
	/* A well-behaved guest: stays within buf_alloc - (sent - fwd_cnt). */
	uint32_t fwd = p.fwd_cnt, alloc = p.buf_alloc;
	while (alloc - (sent - fwd) >= sizeof(chunk)) {
		tx(f, VIRTIO_VSOCK_OP_RW, 99, 5001, 0, 0, chunk, sizeof(chunk));
		sent += sizeof(chunk);
		while (rx_take(f, &p, NULL, 0)) {
			assert_int_equal(p.op, VIRTIO_VSOCK_OP_CREDIT_UPDATE);
			fwd = p.fwd_cnt;
		}
	}
	assert_true(sent > alloc / 2);
	/* The host reads everything; credit updates follow. */
	static char sink[1 << 20];
	uint32_t drained = 0;
	for (int i = 0; i < 1000 && drained < sent; i++) {
		ssize_t n = host_read(f, c, sink, sizeof(sink));
		if (n > 0)
			drained += (uint32_t)n;
		while (rx_take(f, &p, NULL, 0)) {
			assert_int_equal(p.op, VIRTIO_VSOCK_OP_CREDIT_UPDATE);
			fwd = p.fwd_cnt;
		}
	}
	assert_int_equal(drained, sent);
	assert_true(sent - fwd < VSOCK_CREDIT_THRESHOLD);

	/* A guest that ignores the credit is reset, and the host sees EOF. */
	for (uint32_t i = 0; i * sizeof(chunk) < 4 * VSOCK_BUF_ALLOC; i++) {
		tx(f, VIRTIO_VSOCK_OP_RW, 99, 5001, 0, 0, chunk, sizeof(chunk));
		if (rx_take(f, &p, NULL, 0) && p.op == VIRTIO_VSOCK_OP_RST)
			break;
	}
	assert_int_equal(p.op, VIRTIO_VSOCK_OP_RST);
	ssize_t n;
	while ((n = host_read(f, c, sink, sizeof(sink))) > 0)
		;
	assert_int_equal(n, 0);
	close(c);
	close(l);
}

/* A guest cannot open connections without bound. */
static void test_guest_conn_cap(void **state)
{
	struct fx *f = *state;
	char path[160];
	snprintf(path, sizeof(path), "%s_5002", f->uds);
	int l = husk_unix_listen(path, NULL);
	int fds[128];
	for (uint32_t i = 0; i < 128; i++) {
		tx(f, VIRTIO_VSOCK_OP_REQUEST, 2000 + i, 5002, 0, 0, NULL, 0);
		rx_expect(f, VIRTIO_VSOCK_OP_RESPONSE, 5002, 2000 + i);
		fds[i] = accept4(l, NULL, NULL, SOCK_CLOEXEC);
		assert_true(fds[i] >= 0);
	}
	tx(f, VIRTIO_VSOCK_OP_REQUEST, 3000, 5002, 0, 0, NULL, 0);
	rx_expect(f, VIRTIO_VSOCK_OP_RST, 5002, 3000);
	/* One closes: room for another. */
	tx(f, VIRTIO_VSOCK_OP_RST, 2000, 5002, 0, 0, NULL, 0);
	tx(f, VIRTIO_VSOCK_OP_REQUEST, 3001, 5002, 0, 0, NULL, 0);
	rx_expect(f, VIRTIO_VSOCK_OP_RESPONSE, 5002, 3001);
	for (int i = 0; i < 128; i++)
		close(fds[i]);
	close(l);
}

static void test_unknown_and_foreign(void **state)
{
	struct fx *f = *state;
	struct vsock_pkt p;
	/* Data for no connection: RST. An RST for none: nothing. */
	tx(f, VIRTIO_VSOCK_OP_RW, 10, 20, 0, 0, "zz", 2);
	rx_expect(f, VIRTIO_VSOCK_OP_RST, 20, 10);
	tx(f, VIRTIO_VSOCK_OP_RST, 10, 20, 0, 0, NULL, 0);
	assert_false(rx_take(f, &p, NULL, 0));
	/* Wrong source CID: dropped. */
	struct vsock_pkt q = { .src_cid = 99, .dst_cid = VSOCK_HOST_CID, .src_port = 1,
			       .dst_port = 2, .type = VIRTIO_VSOCK_TYPE_STREAM,
			       .op = VIRTIO_VSOCK_OP_REQUEST };
	tx_raw(f, &q, NULL, 0);
	assert_false(rx_take(f, &p, NULL, 0));
	/* Not addressed to the host: refused (test_guest_connect_not_host). */
	q.src_cid = CID;
	q.dst_cid = 7;
	tx_raw(f, &q, NULL, 0);
	assert_true(rx_take_from(f, 7, &p, NULL, 0));
	assert_int_equal(p.op, VIRTIO_VSOCK_OP_RST);
	assert_false(rx_take(f, &p, NULL, 0));
	/* SEQPACKET is not offered: refused. */
	q.dst_cid = VSOCK_HOST_CID;
	q.type = 2;
	tx_raw(f, &q, NULL, 0);
	rx_expect(f, VIRTIO_VSOCK_OP_RST, 2, 1);
	/* A header claiming more payload than the buffer holds. */
	q.type = VIRTIO_VSOCK_TYPE_STREAM;
	q.op = VIRTIO_VSOCK_OP_RW;
	q.len = 1000;
	tx_raw(f, &q, "short", 5);
	rx_expect(f, VIRTIO_VSOCK_OP_RST, 2, 1);
	/* A chain too short for a header. */
	unsigned slot = f->tx_avail % QSIZE;
	*desc(f, TX_DESC, slot) = (struct vring_desc){ htole64(gpa(TX_BUF)), htole32(10), 0, 0 };
	struct vring_avail *a = (struct vring_avail *)(f->mem + TX_AVAIL);
	a->ring[f->tx_avail++ % QSIZE] = htole16(slot);
	a->idx = htole16(f->tx_avail);
	kick(f, VU_RING_TX);
	assert_int_equal(tx_used(f), f->tx_avail);
	assert_false(rx_take(f, &p, NULL, 0));
}

/* A looping or out-of-memory chain stops the tx ring; the rx ring and the
 * daemon carry on. */
static void test_malformed_tx_chain(void **state)
{
	struct fx *f = *state;
	struct vring_avail *a = (struct vring_avail *)(f->mem + TX_AVAIL);
	*desc(f, TX_DESC, 0) = (struct vring_desc){ htole64(gpa(TX_BUF)), htole32(44),
						    htole16(VRING_DESC_F_NEXT), htole16(1) };
	*desc(f, TX_DESC, 1) = (struct vring_desc){ htole64(gpa(TX_BUF)), htole32(44),
						    htole16(VRING_DESC_F_NEXT), htole16(0) };
	a->ring[f->tx_avail++ % QSIZE] = htole16(0);
	a->idx = htole16(f->tx_avail);
	kick(f, VU_RING_TX);
	assert_false(vu_ring_ready(&f->dev, VU_RING_TX));
	assert_int_equal(tx_used(f), 0);
	assert_true(vu_ring_ready(&f->dev, VU_RING_RX));
	int c = host_connect(f, "CONNECT 1024\n");
	rx_expect(f, VIRTIO_VSOCK_OP_REQUEST, 1u << 30, 1024);
	close(c);
	assert_false(f->disconnected);
}

static void test_malformed_rx_chain(void **state)
{
	struct fx *f = *state;
	/* Every posted rx buffer points outside guest memory. */
	for (unsigned b = 0; b < RX_BUFS; b++)
		desc(f, RX_DESC, 2 * b + 1)->addr = htole64(gpa(MEM_SIZE - 8));
	int c = host_connect(f, "CONNECT 1024\n");
	assert_false(vu_ring_ready(&f->dev, VU_RING_RX));
	close(c);
	pump(f);
	assert_false(f->disconnected);
}

static void test_front_end_errors(void **state)
{
	struct fx *f = *state;
	uint32_t st[2] = { 7, 16 };
	assert_int_not_equal(vu_set(f, SET_VRING_NUM, st, sizeof(st), NULL, 0), 0);
	st[0] = 0;
	st[1] = 100;
	assert_int_not_equal(vu_set(f, SET_VRING_NUM, st, sizeof(st), NULL, 0), 0);
	st[1] = 65536;
	assert_int_not_equal(vu_set(f, SET_VRING_NUM, st, sizeof(st), NULL, 0), 0);
	/* Payload of the wrong size for the request. */
	assert_int_not_equal(vu_set(f, SET_VRING_NUM, st, 4, NULL, 0), 0);
	/* Memory tables: fd count mismatch, empty region, overflowing one. */
	struct {
		uint32_t n, pad;
		struct region r[2];
	} mt = { 2, 0, { { GPA_BASE, MEM_SIZE, (uintptr_t)f->mem, 0 }, { 0, 4096, 0, 0 } } };
	assert_int_not_equal(vu_set(f, SET_MEM_TABLE, &mt, 8 + 2 * sizeof(struct region),
				    &f->memfd, 1),
			     0);
	mt.n = 1;
	mt.r[0].size = 0;
	assert_int_not_equal(vu_set(f, SET_MEM_TABLE, &mt, 8 + sizeof(struct region), &f->memfd,
				    1),
			     0);
	mt.r[0].size = MEM_SIZE;
	mt.r[0].offset = UINT64_MAX - 10;
	assert_int_not_equal(vu_set(f, SET_MEM_TABLE, &mt, 8 + sizeof(struct region), &f->memfd,
				    1),
			     0);
	mt.r[0].offset = 0;
	mt.r[0].gpa = UINT64_MAX - 100;
	assert_int_not_equal(vu_set(f, SET_MEM_TABLE, &mt, 8 + sizeof(struct region), &f->memfd,
				    1),
			     0);
	/* Rings addresses outside the table: refused when the ring starts. */
	struct {
		uint32_t index, flags;
		uint64_t desc, used, avail, log;
	} addr = { 2, 0, 0x1000, 0x2000, 0x3000, 0 };
	assert_int_equal(vu_set(f, SET_VRING_ADDR, &addr, sizeof(addr), NULL, 0), 0);
	st[0] = 2;
	st[1] = 8;
	assert_int_equal(vu_set(f, SET_VRING_NUM, st, sizeof(st), NULL, 0), 0);
	uint64_t idx = 2;
	int efd = eventfd(0, EFD_CLOEXEC);
	assert_int_not_equal(vu_set(f, SET_VRING_KICK, &idx, sizeof(idx), &efd, 1), 0);
	close(efd);
	/* Unknown requests and SET_CONFIG are refused. */
	assert_int_not_equal(vu_set(f, 9999, NULL, 0, NULL, 0), 0);
	uint32_t cfg[5] = { 0, 8, 0, 1, 2 };
	assert_int_not_equal(vu_set(f, SET_CONFIG, cfg, sizeof(cfg), NULL, 0), 0);
	/* The working rings were not disturbed. */
	assert_true(vu_ring_ready(&f->dev, VU_RING_RX));
	assert_true(vu_ring_ready(&f->dev, VU_RING_TX));
	tx(f, VIRTIO_VSOCK_OP_REQUEST, 777, 6000, 0, 0, NULL, 0);
	rx_expect(f, VIRTIO_VSOCK_OP_RST, 6000, 777);
	/* A payload larger than any request: the connection is dropped. */
	static char huge[8192];
	vu_send(f, SET_OWNER, F_VERSION, huge, sizeof(huge), NULL, 0);
	pump(f);
	assert_true(f->disconnected);
}

/* The guest resets the device: rings stop, host connections close. */
static void test_stop(void **state)
{
	struct fx *f = *state;
	int c = host_connect(f, "CONNECT 1024\n");
	struct vsock_pkt p = rx_expect(f, VIRTIO_VSOCK_OP_REQUEST, 1u << 30, 1024);
	tx(f, VIRTIO_VSOCK_OP_RESPONSE, 1024, p.src_port, 0, 0, NULL, 0);
	char buf[32];
	assert_true(host_read(f, c, buf, sizeof(buf)) > 0);
	int pending = host_connect(f, "CONN");
	uint32_t st[2] = { VU_RING_TX, 0 };
	vu_send(f, GET_VRING_BASE, F_VERSION, st, sizeof(st), NULL, 0);
	assert_int_equal(vu_reply(f, GET_VRING_BASE, st, sizeof(st)), 8);
	assert_int_equal(st[0], VU_RING_TX);
	assert_int_equal(st[1], f->tx_avail);
	assert_int_equal(f->stopped, 1);
	assert_false(vu_ring_ready(&f->dev, VU_RING_TX));
	assert_int_equal(host_read(f, c, buf, sizeof(buf)), 0);
	close(c);
	/* A client still writing its handshake line is not tied to the
	 * device yet and stays. */
	assert_int_equal(host_read(f, pending, buf, sizeof(buf)), -1);
	close(pending);
	/* The front-end goes away: the daemon is told. */
	close(f->qfd);
	f->qfd = -1;
	pump(f);
	assert_true(f->disconnected);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_interrupts),
		T(test_guest_connects),
		T(test_guest_connect_refused),
		T(test_guest_connect_not_host),
		T(test_host_connects),
		T(test_host_writes_then_closes),
		T(test_host_connect_refused),
		T(test_bad_handshakes),
		T(test_guest_credit),
		T(test_host_backpressure),
		T(test_guest_conn_cap),
		T(test_unknown_and_foreign),
		T(test_malformed_tx_chain),
		T(test_malformed_rx_chain),
		T(test_front_end_errors),
		T(test_stop),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
