/* The vhost-user back-end end of the protocol, for a vsock device: one
 * front-end (QEMU) connection, the guest memory table, and the vrings with
 * their kick and call eventfds. What travels on the rings is hybrid.c's. */
#ifndef VSOCKD_VHOST_USER_H
#define VSOCKD_VHOST_USER_H

#include <stdbool.h>
#include <stdint.h>

#include "husk/error.h"
#include "ttrpc/loop.h"
#include "virtq.h"

/* QEMU's vhost-user-vsock hands the back-end rx (0) and tx (1); it keeps
 * the event queue to itself. A third ring is accepted all the same. */
#define VU_RING_RX 0
#define VU_RING_TX 1
#define VU_MAX_RINGS 3

struct vu_ring {
	struct virtq vq;
	int kick_fd, call_fd, err_fd;
	struct ev_io *kick_io;
	bool started; /* has a kick fd (SET_VRING_KICK) and has not been stopped */
	bool enabled; /* SET_VRING_ENABLE, or implicitly without PROTOCOL_FEATURES */
	uint16_t num;
	uint64_t desc_uva, avail_uva, used_uva;
	bool addr_set;
};

struct vu_ops {
	/* The ring has (or may have) new buffers: a kick, or it just started. */
	void (*kick)(void *data, unsigned ring);
	/* The ring stopped (GET_VRING_BASE): the guest reset the device. */
	void (*stopped)(void *data, unsigned ring);
	/* The front-end went away: the VM is gone. */
	void (*disconnected)(void *data);
};

struct vu_dev {
	struct ev_loop *loop;
	const char *path;
	int listen_fd;
	struct ev_io *listen_io;
	int fd;
	struct ev_io *io;
	uint64_t guest_cid;
	uint64_t features;
	uint64_t protocol_features;
	struct vmem mem;
	struct vu_ring rings[VU_MAX_RINGS];
	const struct vu_ops *ops;
	void *data;
};

/* Listens on `path` for the front-end; accepts one connection, then
 * removes the socket file. */
int vu_dev_init(struct vu_dev *d, struct ev_loop *loop, const char *path, uint64_t guest_cid,
		const struct vu_ops *ops, void *data, struct husk_err *err);
/* Closes everything, unmaps guest memory, removes the socket if still there. */
void vu_dev_fini(struct vu_dev *d);

/* Whether the ring may be used now (started, enabled, mapped, not broken). */
bool vu_ring_ready(const struct vu_dev *d, unsigned ring);
/* Signals the call eventfd if buffers were used and the guest wants it. */
void vu_ring_notify(struct vu_dev *d, unsigned ring);

#endif
