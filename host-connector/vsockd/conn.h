/* The virtio-vsock stream connection state machine, free of I/O: packet
 * header codec, credit accounting both ways, shutdown bookkeeping, the
 * bounded buffer of guest bytes the host socket has not taken yet, and the
 * hybrid handshake line. hybrid.c does the socket and virtqueue work. */
#ifndef VSOCKD_CONN_H
#define VSOCKD_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <linux/virtio_vsock.h>

#define VSOCK_HOST_CID 2
#define VSOCK_HDR_SIZE ((uint32_t)sizeof(struct virtio_vsock_hdr))
/* What we let the guest have in flight per connection (Linux's default):
 * the most a connection may buffer here when its host socket is full. */
#define VSOCK_BUF_ALLOC (256u * 1024)
/* Tell the guest about freed buffer space once this much has accumulated;
 * below buf_alloc so a guest that ran out of credit always hears back. */
#define VSOCK_CREDIT_THRESHOLD (64u * 1024)
/* Largest payload we put in one packet to the guest. */
#define VSOCK_MAX_PKT (64u * 1024)

/* A decoded header (host byte order). */
struct vsock_pkt {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port;
	uint32_t len;
	uint16_t type, op;
	uint32_t flags;
	uint32_t buf_alloc, fwd_cnt;
};

void vsock_hdr_decode(const struct virtio_vsock_hdr *h, struct vsock_pkt *p);
void vsock_hdr_encode(const struct vsock_pkt *p, struct virtio_vsock_hdr *h);

/* Credit, per the virtio spec: a sender may have at most the peer's
 * buf_alloc bytes that the peer has not yet forwarded (fwd_cnt). */
struct vsock_credit {
	uint32_t buf_alloc;      /* ours, advertised to the guest */
	uint32_t rx_cnt;         /* guest->host payload bytes received */
	uint32_t fwd_cnt;        /* ... of which delivered to the host socket */
	uint32_t fwd_cnt_sent;   /* fwd_cnt as last told to the guest */
	uint32_t peer_buf_alloc; /* the guest's, from its last header */
	uint32_t peer_fwd_cnt;
	uint32_t tx_cnt;         /* host->guest payload bytes sent */
};

void vsock_credit_init(struct vsock_credit *c, uint32_t buf_alloc);
/* Bytes we may still send to the guest (0 when the guest shrank its buffer
 * below what is in flight). */
uint32_t vsock_credit_peer_free(const struct vsock_credit *c);
/* Records the guest's buf_alloc and fwd_cnt from a header it sent. */
void vsock_credit_peer_update(struct vsock_credit *c, uint32_t buf_alloc, uint32_t fwd_cnt);
/* Accounts `len` bytes arriving from the guest; -ENOBUFS (nothing counted)
 * when they exceed the credit we gave. */
int vsock_credit_rx(struct vsock_credit *c, uint32_t len);
/* Bytes received from the guest and not yet forwarded. */
uint32_t vsock_credit_rx_pending(const struct vsock_credit *c);
void vsock_credit_forwarded(struct vsock_credit *c, uint32_t n);
void vsock_credit_sent(struct vsock_credit *c, uint32_t n);
/* Whether the guest should be told about forwarded bytes now. */
bool vsock_credit_update_due(const struct vsock_credit *c);
/* Fills buf_alloc/fwd_cnt of an outgoing header and notes what was told. */
void vsock_credit_stamp(struct vsock_credit *c, struct vsock_pkt *p);

/* A byte ring for guest->host data the host socket did not take at once.
 * Memory is allocated on first use and released when it drains. */
struct vbuf {
	uint8_t *data;
	uint32_t cap, head, len;
};

/* Appends `len` bytes of iov[0..n) from offset `off`; -ENOBUFS when they do
 * not fit (nothing appended), -ENOMEM when allocation fails. */
int vbuf_append(struct vbuf *b, uint32_t cap, const struct iovec *iov, unsigned n, size_t off,
		size_t len);
/* Describes the buffered bytes as at most two iovecs; returns how many. */
unsigned vbuf_peek(const struct vbuf *b, struct iovec iov[2]);
/* Drops `n` bytes from the front; frees the memory once empty. */
void vbuf_consume(struct vbuf *b, uint32_t n);
void vbuf_free(struct vbuf *b);

enum vconn_state {
	VCONN_HANDSHAKE,   /* host client connected, CONNECT line not yet read */
	VCONN_CONNECTING,  /* REQUEST queued or sent to the guest */
	VCONN_ESTABLISHED,
	VCONN_CLOSED,      /* host side gone; only an RST (maybe) still to send */
};

/* Control packets a connection owes the guest (sent when rx buffers exist). */
enum {
	VCONN_P_REQUEST = 1 << 0,
	VCONN_P_RESPONSE = 1 << 1,
	VCONN_P_CREDIT_UPDATE = 1 << 2,
	VCONN_P_SHUTDOWN = 1 << 3,
	VCONN_P_RST = 1 << 4,
};

/* What the caller must do after vconn_recv(). */
enum vconn_action {
	VCONN_ACT_NONE,
	VCONN_ACT_DATA,        /* forward the payload to the host socket */
	VCONN_ACT_ESTABLISHED, /* our REQUEST was accepted: tell the host client */
	VCONN_ACT_RESET,       /* the guest reset: drop the connection, no reply */
	VCONN_ACT_KILL,        /* protocol violation: RST the guest, drop it */
	VCONN_ACT_UPDATE,      /* credit or shutdown changed: re-evaluate I/O */
};

struct vconn_sm {
	enum vconn_state state;
	uint32_t local_port; /* host side */
	uint32_t peer_port;  /* guest side */
	uint32_t peer_shutdown;  /* VIRTIO_VSOCK_SHUTDOWN_* the guest sent */
	uint32_t local_shutdown; /* VIRTIO_VSOCK_SHUTDOWN_* we sent or owe */
	unsigned pending;        /* VCONN_P_* */
	struct vsock_credit credit;
};

/* Handles one packet the guest sent on this connection (ports already
 * matched). Updates credit, shutdown flags and pending control packets. */
enum vconn_action vconn_recv(struct vconn_sm *c, const struct vsock_pkt *p);
/* Whether the host socket should be read (data would be sent to the guest):
 * established, neither side closed that direction, guest has credit. */
bool vconn_want_host_read(const struct vconn_sm *c);
/* Whether both directions are finished, so the connection can be closed
 * (with an RST to the guest) once buffered data has been delivered. */
bool vconn_done(const struct vconn_sm *c);
/* Next control packet owed, as a VIRTIO_VSOCK_OP_*, filling `p` (ports,
 * flags, credit); 0 when none. Clears it from the pending set. */
uint16_t vconn_take_ctl(struct vconn_sm *c, uint64_t guest_cid, struct vsock_pkt *p);
/* Fills the header of a data packet of `len` bytes and accounts it. */
void vconn_data_hdr(struct vconn_sm *c, uint64_t guest_cid, uint32_t len, struct vsock_pkt *p);

/* Parses the hybrid handshake line "CONNECT <port>\n" (len includes the
 * newline). Returns 0 and the port, or -EINVAL. */
int hybrid_parse_connect(const char *line, size_t len, uint32_t *port);

#endif
