/* kubectl port-forward into a pod's VM. containerd's CRI PortForward dials
 * localhost:PORT inside the pod's network namespace; under a VM nothing of
 * the pod listens there. So the shim listens there itself, on 127.0.0.1
 * and ::1 at one port of its own, and a netfilter rule in that namespace
 * (nftables table "inet husk_portforward", nat hook on output) redirects
 * every TCP connection to loopback to that port. For each connection the
 * shim reads the port it was meant for (SO_ORIGINAL_DST) and asks the
 * agent's port-forward service (vsock port 1027, docs/protocol.md) for it;
 * the agent connects on the VM's loopback, where the pod lives, and the
 * two relay both ways. A port nobody listens on in the guest resets the
 * connection, so containerd reports an error, as it does for runc.
 *
 * Nothing else of the pod's namespace uses TCP on loopback: the pod's
 * processes run in the VM. */
#ifndef HUSK_SHIM_PORTFWD_H
#define HUSK_SHIM_PORTFWD_H

#include <stdbool.h>

#include "husk/error.h"

struct husk_vm;
struct ev_loop;
struct ev_io;
struct pf_conn;

struct shim_portfwd {
	int listen_fd[2];      /* 127.0.0.1, ::1 (-1: none) */
	unsigned port;	       /* the listeners' port */
	bool table;	       /* the nftables table is ours to remove */
	/* on the loop, from shim_portfwd_start */
	struct ev_loop *loop;
	struct husk_vm *vm;
	struct ev_io *io[2];
	struct pf_conn *conns; /* connections being set up or relayed */
};

/* An empty one (no fds). */
void shim_portfwd_init(struct shim_portfwd *pf);
/* On the worker: in the network namespace at netns_path, the listeners and
 * the redirect. On failure nothing is left and err says what failed. */
int shim_portfwd_open(const char *netns_path, struct shim_portfwd *pf, struct husk_err *err);
/* On the loop: accepts connections, forwarded to `vm`'s agent. */
int shim_portfwd_start(struct shim_portfwd *pf, struct ev_loop *loop, struct husk_vm *vm,
		       struct husk_err *err);
/* On the loop: stops accepting and drops every connection (the listeners
 * closed: the namespace's loopback refuses again). Idempotent. */
void shim_portfwd_stop(struct shim_portfwd *pf);
/* Anywhere, after stop or instead of start: closes the listeners and
 * removes the redirect from the namespace (gone with it if it is gone).
 * Idempotent. */
void shim_portfwd_close(const char *netns_path, struct shim_portfwd *pf);

#endif
