/* containerd's FIFOs <-> the guest's vsock stdio streams: the shim's side
 * of the one byte relay (ttrpc/relay.h), telling the owner which stream
 * ended. Both ends nonblocking, so a slow reader never stalls the shim's
 * other calls; a broken destination drains its source, so a writer into it
 * (containerd's stdin, a guest process's output) never blocks. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "io.h"
#include "ttrpc/relay.h"

struct relay {
	struct ev_relay *core;
	relay_done_fn done;
	void *data;
	int tag;
};

/* The relay is freed before `done` runs; `tag` tells the owner which. */
static void on_done(void *data, int rc)
{
	(void)rc;
	struct relay *r = data;
	relay_done_fn done = r->done;
	void *d = r->data;
	int tag = r->tag;
	free(r);
	if (done)
		done(d, tag);
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	return fl < 0 ? -errno : fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -errno : 0;
}

int relay_new(struct ev_loop *loop, int src, int dst, bool dst_is_socket,
	      relay_done_fn done, void *data, int tag, struct relay **out, struct husk_err *err)
{
	struct relay *r = calloc(1, sizeof(*r));
	int rc = r ? 0 : husk_err_set(err, -ENOMEM, "stdio relay: out of memory");
	if (rc == 0 && ((rc = set_nonblock(src)) < 0 || (rc = set_nonblock(dst)) < 0))
		husk_err_sys(err, rc, "stdio relay: O_NONBLOCK");
	if (rc < 0) {
		close(src);
		close(dst);
		free(r);
		return rc;
	}
	*r = (struct relay){ .done = done, .data = data, .tag = tag };
	/* A file:// log is a regular file: the relay writes it without
	 * waiting for readiness epoll cannot give. */
	struct ev_relay_opts o = {
		.src = src, .dst = dst, .done = on_done, .data = r,
		.flags = EV_RELAY_OWN_SRC | EV_RELAY_OWN_DST | EV_RELAY_DRAIN |
			 (dst_is_socket ? EV_RELAY_SHUT_DST : 0),
	};
	if ((rc = ev_relay_new(loop, &o, &r->core, err)) < 0) {
		free(r);
		return husk_err_wrap(err, "stdio relay");
	}
	*out = r;
	return 0;
}

void relay_close_input(struct relay *r)
{
	if (r)
		ev_relay_close_input(r->core);
}

void relay_abort_source(struct relay *r)
{
	if (r)
		ev_relay_abort(r->core);
}

void relay_free(struct relay *r)
{
	if (!r)
		return;
	ev_relay_free(r->core);
	free(r);
}
