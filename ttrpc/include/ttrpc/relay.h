/* A one-direction byte relay on the event loop: copies everything `src`
 * gives to `dst`. The guest agent's stdio ports, the shim's stdio and
 * huskctl's terminal all run on it (docs/ttrpc.md).
 *
 * It reads while its buffer is empty and writes while it is not, so each
 * side waits for the other: a destination that does not take bytes stops
 * the reading. The source is read once per readiness (it may be a
 * blocking fd, such as huskctl's terminal); a write to a blocking
 * destination waits until it completes. The 64 KiB buffer is allocated at
 * the first read and freed when the relay ends.
 *
 * An fd epoll cannot watch (a regular file, /dev/null) is taken as always
 * ready. An fd this loop already watches (a pty master relayed both ways)
 * is watched through a private duplicate. A source that reports a hang-up
 * is read to its end without waiting; its EOF, and a read error such as
 * a pty master's EIO (its terminal closed), end the source. Writes are
 * write(2): a program that relays ignores SIGPIPE. */
#ifndef TTRPC_RELAY_H
#define TTRPC_RELAY_H

#include <stdbool.h>

#include "husk/error.h"
#include "ttrpc/loop.h"

struct ev_relay;

/* Called once when the relay ends by itself (the source's end delivered, a
 * broken destination, ev_relay_close_input or ev_relay_abort), never after
 * ev_relay_free. The relay is gone and its own fds are closed by then. `rc`
 * is 0 when every byte the source gave reached the destination, else the
 * negative errno of the first loss: the destination's write error (-EPIPE
 * for a reader that hung up), -ECANCELED for bytes an abort dropped,
 * -ENOMEM for no buffer. A read error ends the source as EOF does. */
typedef void (*ev_relay_done_fn)(void *data, int rc);

enum {
	EV_RELAY_OWN_SRC = 1u << 0, /* the relay closes src when it ends */
	EV_RELAY_OWN_DST = 1u << 1, /* ... and dst */
	/* After the last byte, shutdown(dst, SHUT_WR): a socket's reader
	 * sees EOF while the fd stays open (not ours, or read elsewhere). */
	EV_RELAY_SHUT_DST = 1u << 2,
	/* A broken destination does not end the relay: the source is read
	 * to its end and its bytes dropped, so a writer into it never blocks
	 * (a container's stdout whose host reader left). Without it the
	 * relay ends at once. */
	EV_RELAY_DRAIN = 1u << 3,
};

struct ev_relay_opts {
	int src, dst;
	unsigned flags; /* EV_RELAY_* */
	ev_relay_done_fn done;
	void *data;
};

/* Starts relaying. On failure the fds the relay would own are closed too,
 * so the caller has one rule either way. */
int ev_relay_new(struct ev_loop *loop, const struct ev_relay_opts *o, struct ev_relay **out,
		 struct husk_err *err);
/* The source ends at its first EAGAIN: what is readable now is still
 * delivered (containerd's CloseIO after its last write). The source must
 * be nonblocking. May end the relay, `done` included, before returning. */
void ev_relay_close_input(struct ev_relay *r);
/* The source is gone (its VM with it): what the buffer holds goes to the
 * destination if it takes it now, then the relay ends (`done` runs before
 * this returns). */
void ev_relay_abort(struct ev_relay *r);
/* Stops now, without `done`: owned fds are closed (an EV_RELAY_SHUT_DST
 * destination is shut down first), buffered bytes are dropped. NULL is
 * ignored. */
void ev_relay_free(struct ev_relay *r);

/* A connection relayed both ways (a port forward): a relay from `a` to `b`
 * and one from `b` to `a`, each shutting its destination's write half down
 * after its source's last byte, so a half-close crosses over. A loss
 * either way (a reset, a broken peer) ends the other way without waiting
 * for more: what the broken end already holds (a peer's last bytes before
 * it closed) is still delivered. When both ways have ended, both fds are
 * closed and `done` runs once with the first loss (0 for none). Both fds
 * must be nonblocking sockets; on failure they are closed. */
struct ev_splice;
int ev_splice_new(struct ev_loop *loop, int a, int b, ev_relay_done_fn done, void *data,
		  struct ev_splice **out, struct husk_err *err);
/* Stops both ways now, without `done`; closes both fds. NULL is ignored. */
void ev_splice_free(struct ev_splice *sp);

#endif
