/* The hybrid-vsock multiplexer: host clients on a unix socket, guest
 * connections to `<uds>_<port>`, and the vsock packets on the rx and tx
 * rings that connect the two (see DESIGN.md, "Host side of vsock"). */
#ifndef VSOCKD_HYBRID_H
#define VSOCKD_HYBRID_H

#include <stdint.h>

#include "husk/error.h"
#include "ttrpc/loop.h"
#include "vhost_user.h"

struct hybrid;

/* Listens on `uds` for host clients. `dev` is the vsock device whose rings
 * carry the packets; hybrid_kick/hybrid_stopped are to be called from its
 * callbacks. */
int hybrid_new(struct hybrid **out, struct ev_loop *loop, struct vu_dev *dev, const char *uds,
	       uint64_t guest_cid, struct husk_err *err);
/* Closes every connection and the listening socket, removing its name. */
void hybrid_free(struct hybrid *h);

/* The guest added buffers to `ring` (or it just started). */
void hybrid_kick(struct hybrid *h, unsigned ring);
/* The device stopped: every connection is dropped. */
void hybrid_reset(struct hybrid *h);

#endif
