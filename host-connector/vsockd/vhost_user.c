#include "vhost_user.h"

#include <endian.h>
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/vhost_types.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>

#include "husk/cleanup.h"
#include "husk/sock.h"
#include "log.h"

/* Requests (docs/interop/vhost-user.rst in QEMU). */
enum {
	VHOST_USER_GET_FEATURES = 1,
	VHOST_USER_SET_FEATURES = 2,
	VHOST_USER_SET_OWNER = 3,
	VHOST_USER_RESET_OWNER = 4,
	VHOST_USER_SET_MEM_TABLE = 5,
	VHOST_USER_SET_VRING_NUM = 8,
	VHOST_USER_SET_VRING_ADDR = 9,
	VHOST_USER_SET_VRING_BASE = 10,
	VHOST_USER_GET_VRING_BASE = 11,
	VHOST_USER_SET_VRING_KICK = 12,
	VHOST_USER_SET_VRING_CALL = 13,
	VHOST_USER_SET_VRING_ERR = 14,
	VHOST_USER_GET_PROTOCOL_FEATURES = 15,
	VHOST_USER_SET_PROTOCOL_FEATURES = 16,
	VHOST_USER_GET_QUEUE_NUM = 17,
	VHOST_USER_SET_VRING_ENABLE = 18,
	VHOST_USER_GET_CONFIG = 24,
	VHOST_USER_SET_CONFIG = 25,
};

#define VHOST_USER_VERSION 0x1u
#define VHOST_USER_REPLY 0x4u
#define VHOST_USER_NEED_REPLY 0x8u
#define VHOST_USER_VRING_IDX_MASK 0xffu
#define VHOST_USER_VRING_NOFD 0x100u

#define VHOST_USER_F_PROTOCOL_FEATURES 30
#define VHOST_USER_PROTOCOL_F_MQ 0
#define VHOST_USER_PROTOCOL_F_REPLY_ACK 3
#define VHOST_USER_PROTOCOL_F_CONFIG 9

#define BIT(n) (1ull << (n))

/* Event-index notification suppression is left out: without it a kick per
 * batch and an interrupt per batch is what the guest asks for. */
static const uint64_t offered_features = BIT(VIRTIO_F_VERSION_1) |
					 BIT(VIRTIO_RING_F_INDIRECT_DESC) |
					 BIT(VHOST_USER_F_PROTOCOL_FEATURES);
static const uint64_t offered_protocol = BIT(VHOST_USER_PROTOCOL_F_MQ) |
					 BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK) |
					 BIT(VHOST_USER_PROTOCOL_F_CONFIG);

/* The two rings QEMU's vhost-user-vsock-device hands over. */
#define VU_QUEUE_NUM 2
/* struct virtio_vsock_config: guest_cid, 8 bytes. */
#define VSOCK_CONFIG_SIZE 8

struct vu_hdr {
	uint32_t request;
	uint32_t flags;
	uint32_t size;
} __attribute__((packed));

struct vu_region {
	uint64_t gpa;
	uint64_t size;
	uint64_t uva;
	uint64_t mmap_offset;
};

struct vu_config {
	uint32_t offset;
	uint32_t size;
	uint32_t flags;
	uint8_t data[256];
};

union vu_payload {
	uint64_t u64;
	struct vhost_vring_state state;
	struct vhost_vring_addr addr;
	struct {
		uint32_t nregions;
		uint32_t padding;
		struct vu_region regions[VMEM_MAX_REGIONS];
	} mem;
	struct vu_config config;
};

struct vu_msg {
	struct vu_hdr hdr;
	union vu_payload p;
	int fds[VMEM_MAX_REGIONS];
	unsigned nfds;
};

static void msg_close_fds(struct vu_msg *m)
{
	for (unsigned i = 0; i < m->nfds; i++)
		if (m->fds[i] >= 0)
			close(m->fds[i]);
	m->nfds = 0;
}

static int take_msg_fd(struct vu_msg *m, unsigned i)
{
	if (i >= m->nfds)
		return -1;
	int fd = m->fds[i];
	m->fds[i] = -1;
	return fd;
}

/* ---- memory ------------------------------------------------------------- */

static void vmem_unmap(struct vmem *m)
{
	for (unsigned i = 0; i < m->n; i++)
		munmap(m->r[i].map, m->r[i].map_len);
	m->n = 0;
}

static int set_mem_table(struct vu_dev *d, struct vu_msg *m, struct husk_err *err)
{
	uint32_t n = m->p.mem.nregions;
	if (n == 0 || n > VMEM_MAX_REGIONS)
		return husk_err_set(err, -EINVAL, "SET_MEM_TABLE: %u regions (1..%u allowed)", n,
				    VMEM_MAX_REGIONS);
	if (m->hdr.size != 8 + n * sizeof(struct vu_region) || m->nfds != n)
		return husk_err_set(err, -EINVAL,
				    "SET_MEM_TABLE: %u regions with payload %u bytes and %u fds", n,
				    m->hdr.size, m->nfds);
	struct vmem next = { 0 };
	int r = 0;
	for (uint32_t i = 0; i < n; i++) {
		const struct vu_region *g = &m->p.mem.regions[i];
		uint64_t map_len;
		if (g->size == 0 || g->gpa + g->size < g->gpa || g->uva + g->size < g->uva ||
		    __builtin_add_overflow(g->mmap_offset, g->size, &map_len) ||
		    map_len > SIZE_MAX) {
			r = husk_err_set(err, -EINVAL,
					 "SET_MEM_TABLE: region %u (gpa 0x%llx size 0x%llx uva 0x%llx "
					 "offset 0x%llx) overflows",
					 i, (unsigned long long)g->gpa, (unsigned long long)g->size,
					 (unsigned long long)g->uva, (unsigned long long)g->mmap_offset);
			break;
		}
		void *map = mmap(NULL, (size_t)map_len, PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_NORESERVE, m->fds[i], 0);
		if (map == MAP_FAILED) {
			r = husk_err_sys(err, -errno, "SET_MEM_TABLE: mmap region %u (%llu bytes)", i,
					 (unsigned long long)map_len);
			break;
		}
		next.r[next.n++] = (struct vmem_region){
			.gpa = g->gpa,
			.size = g->size,
			.uva = g->uva,
			.hva = (uint8_t *)map + g->mmap_offset,
			.map = map,
			.map_len = (size_t)map_len,
		};
	}
	msg_close_fds(m);
	if (r < 0) {
		vmem_unmap(&next);
		return r;
	}
	vmem_unmap(&d->mem);
	d->mem = next;
	/* Rings already running point into the old mappings. */
	for (unsigned i = 0; i < VU_MAX_RINGS; i++) {
		struct vu_ring *ring = &d->rings[i];
		if (!ring->started)
			continue;
		r = virtq_map(&ring->vq, &d->mem, ring->num, ring->desc_uva, ring->avail_uva,
			      ring->used_uva, err);
		if (r < 0) {
			ring->vq.num = 0;
			return husk_err_wrap(err, "SET_MEM_TABLE: ring %u", i);
		}
	}
	return 0;
}

/* ---- rings ---------------------------------------------------------------- */

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void ring_stop(struct vu_ring *ring)
{
	ev_io_del(ring->kick_io);
	ring->kick_io = NULL;
	close_fd(&ring->kick_fd);
	ring->started = false;
	ring->vq.num = 0;
}

static void ring_reset(struct vu_ring *ring)
{
	ring_stop(ring);
	close_fd(&ring->call_fd);
	close_fd(&ring->err_fd);
	*ring = (struct vu_ring){ .kick_fd = -1, .call_fd = -1, .err_fd = -1 };
}

bool vu_ring_ready(const struct vu_dev *d, unsigned ring)
{
	if (ring >= VU_MAX_RINGS)
		return false;
	const struct vu_ring *r = &d->rings[ring];
	return r->started && r->enabled && r->vq.num && !r->vq.broken;
}

void vu_ring_notify(struct vu_dev *d, unsigned ring)
{
	struct vu_ring *r = &d->rings[ring];
	if (!virtq_need_notify(&r->vq) || r->call_fd < 0)
		return;
	uint64_t one = 1;
	/* EAGAIN means the counter is saturated: the guest is notified anyway. */
	if (write(r->call_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		vsockd_log("ring %u: signal call eventfd: %s", ring, strerror(errno));
}

static void on_kick(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io;
	(void)events;
	struct vu_dev *d = data;
	unsigned ring;
	for (ring = 0; ring < VU_MAX_RINGS; ring++)
		if (d->rings[ring].kick_fd == fd)
			break;
	if (ring == VU_MAX_RINGS)
		return;
	uint64_t v;
	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		vsockd_log("ring %u: read kick eventfd: %s", ring, strerror(errno));
	if (vu_ring_ready(d, ring))
		d->ops->kick(d->data, ring);
}

static int ring_index(const struct vu_msg *m, uint32_t idx, struct husk_err *err)
{
	if (idx >= VU_MAX_RINGS)
		return husk_err_set(err, -EINVAL, "request %u: ring index %u out of range",
				    m->hdr.request, idx);
	return (int)idx;
}

static int ring_start(struct vu_dev *d, unsigned i, struct husk_err *err)
{
	struct vu_ring *ring = &d->rings[i];
	if (!ring->addr_set || ring->num == 0)
		return husk_err_set(err, -EINVAL, "ring %u: kick before size and addresses", i);
	int r = virtq_map(&ring->vq, &d->mem, ring->num, ring->desc_uva, ring->avail_uva,
			  ring->used_uva, err);
	if (r < 0)
		return husk_err_wrap(err, "ring %u", i);
	ring->vq.indirect = d->features & BIT(VIRTIO_RING_F_INDIRECT_DESC);
	if (ring->kick_fd >= 0) {
		r = ev_io_add(d->loop, ring->kick_fd, EPOLLIN, on_kick, d, &ring->kick_io, err);
		if (r < 0)
			return r;
	}
	ring->started = true;
	/* Without PROTOCOL_FEATURES a ring runs as soon as it has a kick fd. */
	if (!(d->features & BIT(VHOST_USER_F_PROTOCOL_FEATURES)))
		ring->enabled = true;
	return 0;
}

/* ---- messages -------------------------------------------------------------- */

static int recv_msg(int fd, struct vu_msg *m, struct husk_err *err)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * VMEM_MAX_REGIONS)];
		struct cmsghdr align;
	} cbuf;
	struct iovec iov = { &m->hdr, sizeof(m->hdr) };
	struct msghdr mh = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = cbuf.buf,
		.msg_controllen = sizeof(cbuf.buf),
	};
	m->nfds = 0;
	ssize_t n;
	do
		n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | MSG_WAITALL);
	while (n < 0 && errno == EINTR);
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int f;
			memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (m->nfds < VMEM_MAX_REGIONS)
				m->fds[m->nfds++] = f;
			else
				close(f);
		}
	}
	if (n == 0)
		return -ECONNRESET;
	if (n < 0)
		return husk_err_sys(err, -errno, "vhost-user: receive message header");
	if ((size_t)n != sizeof(m->hdr) || (mh.msg_flags & MSG_CTRUNC)) {
		msg_close_fds(m);
		return husk_err_set(err, -EPROTO, "vhost-user: short or truncated header (%zd)", n);
	}
	if (m->hdr.size > sizeof(m->p)) {
		msg_close_fds(m);
		return husk_err_set(err, -EPROTO, "vhost-user: request %u payload of %u bytes",
				    m->hdr.request, m->hdr.size);
	}
	memset(&m->p, 0, sizeof(m->p));
	if (m->hdr.size > 0) {
		do
			n = recv(fd, &m->p, m->hdr.size, MSG_WAITALL);
		while (n < 0 && errno == EINTR);
		if (n != (ssize_t)m->hdr.size) {
			msg_close_fds(m);
			return n == 0 ? -ECONNRESET
				      : husk_err_set(err, -EPROTO,
						     "vhost-user: request %u: short payload",
						     m->hdr.request);
		}
	}
	return 0;
}

static int send_reply(struct vu_dev *d, const struct vu_msg *req, const void *payload,
		      uint32_t size, struct husk_err *err)
{
	struct vu_hdr h = {
		.request = req->hdr.request,
		.flags = VHOST_USER_VERSION | VHOST_USER_REPLY,
		.size = size,
	};
	struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)payload, size } };
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = size ? 2 : 1 };
	ssize_t n;
	do
		n = sendmsg(d->fd, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)(sizeof(h) + size))
		return husk_err_sys(err, n < 0 ? -errno : -EIO, "vhost-user: reply to request %u",
				    req->hdr.request);
	return 0;
}

static int reply_u64(struct vu_dev *d, const struct vu_msg *req, uint64_t v,
		     struct husk_err *err)
{
	return send_reply(d, req, &v, sizeof(v), err);
}

static int check_size(const struct vu_msg *m, uint32_t want, struct husk_err *err)
{
	if (m->hdr.size != want)
		return husk_err_set(err, -EPROTO, "vhost-user: request %u: payload %u bytes, want %u",
				    m->hdr.request, m->hdr.size, want);
	return 0;
}

/* Handles one request. Returns 1 when it sent its own reply, 0 when done
 * without one (an ack may follow), or a negative errno. */
static int handle(struct vu_dev *d, struct vu_msg *m, struct husk_err *err)
{
	int r, i;
	switch (m->hdr.request) {
	case VHOST_USER_GET_FEATURES:
		r = reply_u64(d, m, offered_features, err);
		return r < 0 ? r : 1;
	case VHOST_USER_SET_FEATURES:
		if ((r = check_size(m, 8, err)) < 0)
			return r;
		/* Bits never offered are dropped, not fatal: what matters is
		 * that we never act on them. */
		if (m->p.u64 & ~offered_features)
			vsockd_log("SET_FEATURES: ignoring 0x%llx, never offered",
				   (unsigned long long)(m->p.u64 & ~offered_features));
		d->features = m->p.u64 & offered_features;
		for (unsigned k = 0; k < VU_MAX_RINGS; k++)
			d->rings[k].vq.indirect = d->features & BIT(VIRTIO_RING_F_INDIRECT_DESC);
		return 0;
	case VHOST_USER_GET_PROTOCOL_FEATURES:
		r = reply_u64(d, m, offered_protocol, err);
		return r < 0 ? r : 1;
	case VHOST_USER_SET_PROTOCOL_FEATURES:
		if ((r = check_size(m, 8, err)) < 0)
			return r;
		d->protocol_features = m->p.u64 & offered_protocol;
		return 0;
	case VHOST_USER_GET_QUEUE_NUM:
		r = reply_u64(d, m, VU_QUEUE_NUM, err);
		return r < 0 ? r : 1;
	case VHOST_USER_SET_OWNER:
		return 0;
	case VHOST_USER_RESET_OWNER:
		for (unsigned k = 0; k < VU_MAX_RINGS; k++) {
			bool was = d->rings[k].started;
			ring_reset(&d->rings[k]);
			if (was)
				d->ops->stopped(d->data, k);
		}
		d->features = 0;
		return 0;
	case VHOST_USER_SET_MEM_TABLE:
		return set_mem_table(d, m, err);
	case VHOST_USER_SET_VRING_NUM:
		if ((r = check_size(m, sizeof(m->p.state), err)) < 0 ||
		    (i = ring_index(m, m->p.state.index, err)) < 0)
			return r < 0 ? r : i;
		if (m->p.state.num == 0 || m->p.state.num > VQ_MAX_SIZE ||
		    (m->p.state.num & (m->p.state.num - 1)))
			return husk_err_set(err, -EINVAL, "ring %d: size %u is not a power of two "
					    "up to %u", i, m->p.state.num, VQ_MAX_SIZE);
		d->rings[i].num = (uint16_t)m->p.state.num;
		return 0;
	case VHOST_USER_SET_VRING_ADDR:
		if ((r = check_size(m, sizeof(m->p.addr), err)) < 0 ||
		    (i = ring_index(m, m->p.addr.index, err)) < 0)
			return r < 0 ? r : i;
		d->rings[i].desc_uva = m->p.addr.desc_user_addr;
		d->rings[i].avail_uva = m->p.addr.avail_user_addr;
		d->rings[i].used_uva = m->p.addr.used_user_addr;
		d->rings[i].addr_set = true;
		if (d->rings[i].started) {
			r = virtq_map(&d->rings[i].vq, &d->mem, d->rings[i].num, d->rings[i].desc_uva,
				      d->rings[i].avail_uva, d->rings[i].used_uva, err);
			if (r < 0)
				return husk_err_wrap(err, "ring %d", i);
		}
		return 0;
	case VHOST_USER_SET_VRING_BASE:
		if ((r = check_size(m, sizeof(m->p.state), err)) < 0 ||
		    (i = ring_index(m, m->p.state.index, err)) < 0)
			return r < 0 ? r : i;
		if (m->p.state.num > UINT16_MAX)
			return husk_err_set(err, -EINVAL, "ring %d: base %u", i, m->p.state.num);
		/* Every chain popped is used before the loop goes idle, so the
		 * used index always equals the available one here. */
		d->rings[i].vq.last_avail = (uint16_t)m->p.state.num;
		d->rings[i].vq.used_idx = (uint16_t)m->p.state.num;
		return 0;
	case VHOST_USER_GET_VRING_BASE: {
		if ((r = check_size(m, sizeof(m->p.state), err)) < 0 ||
		    (i = ring_index(m, m->p.state.index, err)) < 0)
			return r < 0 ? r : i;
		bool was = d->rings[i].started;
		struct vhost_vring_state st = { .index = (unsigned)i,
						.num = d->rings[i].vq.last_avail };
		ring_stop(&d->rings[i]);
		d->rings[i].enabled = false;
		if (was)
			d->ops->stopped(d->data, (unsigned)i);
		r = send_reply(d, m, &st, sizeof(st), err);
		return r < 0 ? r : 1;
	}
	case VHOST_USER_SET_VRING_KICK:
	case VHOST_USER_SET_VRING_CALL:
	case VHOST_USER_SET_VRING_ERR: {
		if ((r = check_size(m, 8, err)) < 0 ||
		    (i = ring_index(m, (uint32_t)(m->p.u64 & VHOST_USER_VRING_IDX_MASK), err)) < 0)
			return r < 0 ? r : i;
		int fd = -1;
		if (!(m->p.u64 & VHOST_USER_VRING_NOFD)) {
			fd = take_msg_fd(m, 0);
			if (fd < 0)
				return husk_err_set(err, -EINVAL, "request %u for ring %d: no fd",
						    m->hdr.request, i);
		}
		struct vu_ring *ring = &d->rings[i];
		if (m->hdr.request == VHOST_USER_SET_VRING_CALL) {
			close_fd(&ring->call_fd);
			ring->call_fd = fd;
			return 0;
		}
		if (m->hdr.request == VHOST_USER_SET_VRING_ERR) {
			close_fd(&ring->err_fd);
			ring->err_fd = fd;
			return 0;
		}
		/* Polling mode (no kick fd) is not offered; a missing fd only
		 * means this ring is never kicked. */
		ring_stop(ring);
		ring->kick_fd = fd;
		r = ring_start(d, (unsigned)i, err);
		if (r < 0)
			return r;
		if (vu_ring_ready(d, (unsigned)i))
			d->ops->kick(d->data, (unsigned)i);
		return 0;
	}
	case VHOST_USER_SET_VRING_ENABLE:
		if ((r = check_size(m, sizeof(m->p.state), err)) < 0 ||
		    (i = ring_index(m, m->p.state.index, err)) < 0)
			return r < 0 ? r : i;
		d->rings[i].enabled = m->p.state.num != 0;
		if (vu_ring_ready(d, (unsigned)i))
			d->ops->kick(d->data, (unsigned)i);
		return 0;
	case VHOST_USER_GET_CONFIG: {
		struct vu_config *c = &m->p.config;
		if (m->hdr.size < 12 || c->size > sizeof(c->data) || m->hdr.size != 12 + c->size)
			return husk_err_set(err, -EPROTO, "GET_CONFIG: payload %u bytes for %u",
					    m->hdr.size, c->size);
		uint8_t cfg[VSOCK_CONFIG_SIZE];
		uint64_t cid = htole64(d->guest_cid);
		memcpy(cfg, &cid, sizeof(cfg));
		memset(c->data, 0, c->size);
		if (c->offset < VSOCK_CONFIG_SIZE) {
			uint32_t n = VSOCK_CONFIG_SIZE - c->offset;
			memcpy(c->data, cfg + c->offset, n < c->size ? n : c->size);
		}
		r = send_reply(d, m, c, m->hdr.size, err);
		return r < 0 ? r : 1;
	}
	case VHOST_USER_SET_CONFIG:
		return husk_err_set(err, -EPERM, "SET_CONFIG: the vsock config is read-only");
	default:
		return husk_err_set(err, -EOPNOTSUPP, "vhost-user: request %u not supported",
				    m->hdr.request);
	}
}

static void disconnect(struct vu_dev *d)
{
	ev_io_del(d->io);
	d->io = NULL;
	close_fd(&d->fd);
	d->ops->disconnected(d->data);
}

static void on_message(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io;
	struct vu_dev *d = data;
	if (!(events & EPOLLIN) && (events & (EPOLLHUP | EPOLLERR))) {
		disconnect(d);
		return;
	}
	struct vu_msg m = { 0 };
	struct husk_err err = { 0 };
	int r = recv_msg(fd, &m, &err);
	if (r < 0) {
		if (r != -ECONNRESET)
			vsockd_log("%s", err.msg);
		disconnect(d);
		return;
	}
	r = handle(d, &m, &err);
	msg_close_fds(&m);
	if (r < 0)
		vsockd_log("%s", err.msg);
	if (r != 1 && (m.hdr.flags & VHOST_USER_NEED_REPLY) &&
	    (d->protocol_features & BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK))) {
		struct husk_err e2 = { 0 };
		if (reply_u64(d, &m, r < 0 ? 1 : 0, &e2) < 0) {
			vsockd_log("%s", e2.msg);
			disconnect(d);
		}
		return;
	}
	if (r < 0 && (m.hdr.request == VHOST_USER_GET_CONFIG ||
		      m.hdr.request == VHOST_USER_GET_VRING_BASE)) {
		/* The front-end waits for a reply that will not come. */
		disconnect(d);
	}
}

static void on_accept(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io;
	(void)events;
	struct vu_dev *d = data;
	int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
	if (c < 0) {
		if (errno != EAGAIN && errno != EINTR)
			vsockd_log("accept on %s: %s", d->path, strerror(errno));
		return;
	}
	struct husk_err err = { 0 };
	int r = ev_io_add(d->loop, c, EPOLLIN, on_message, d, &d->io, &err);
	if (r < 0) {
		vsockd_log("%s", err.msg);
		close(c);
		return;
	}
	d->fd = c;
	/* One front-end per daemon: stop listening and remove the name. */
	ev_io_del(d->listen_io);
	d->listen_io = NULL;
	close_fd(&d->listen_fd);
	unlink(d->path);
}

int vu_dev_init(struct vu_dev *d, struct ev_loop *loop, const char *path, uint64_t guest_cid,
		const struct vu_ops *ops, void *data, struct husk_err *err)
{
	*d = (struct vu_dev){
		.loop = loop,
		.path = path,
		.listen_fd = -1,
		.fd = -1,
		.guest_cid = guest_cid,
		.ops = ops,
		.data = data,
	};
	for (unsigned i = 0; i < VU_MAX_RINGS; i++)
		d->rings[i] = (struct vu_ring){ .kick_fd = -1, .call_fd = -1, .err_fd = -1 };
	int fd = husk_unix_listen(path, err);
	if (fd < 0)
		return husk_err_wrap(err, "vhost-user socket");
	int r = ev_io_add(loop, fd, EPOLLIN, on_accept, d, &d->listen_io, err);
	if (r < 0) {
		close(fd);
		unlink(path);
		return r;
	}
	d->listen_fd = fd;
	return 0;
}

void vu_dev_fini(struct vu_dev *d)
{
	for (unsigned i = 0; i < VU_MAX_RINGS; i++)
		ring_reset(&d->rings[i]);
	ev_io_del(d->io);
	d->io = NULL;
	close_fd(&d->fd);
	if (d->listen_fd >= 0) {
		ev_io_del(d->listen_io);
		d->listen_io = NULL;
		close_fd(&d->listen_fd);
		unlink(d->path);
	}
	vmem_unmap(&d->mem);
}
