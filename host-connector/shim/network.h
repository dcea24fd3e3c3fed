/* The host side of pod networking, as Kata's tcfilter model and
 * firecracker-containerd's tc-redirect-tap do it: in the pod's network
 * namespace (made by containerd's CRI plugin, filled by CNI), a TAP next to
 * each interface, and tc ingress redirects both ways between the two, so
 * the VMM's end of the TAP sees the interface's traffic. The interface
 * keeps its addresses; the description returned tells the agent what to
 * configure inside the guest.
 *
 * Both calls enter the namespace with setns(2) on the calling thread only
 * and restore that thread's namespace before returning; other threads are
 * never touched. They need CAP_NET_ADMIN and CAP_SYS_ADMIN. */
#ifndef HUSK_SHIM_NETWORK_H
#define HUSK_SHIM_NETWORK_H

#include <net/if.h>        /* IFNAMSIZ */
#include <netinet/in.h>
#include <arpa/inet.h>     /* INET6_ADDRSTRLEN */
#include <stddef.h>

#include "husk/error.h"

#define SHIM_NET_IFS_MAX 4
#define SHIM_NET_ADDRS_MAX 8
#define SHIM_NET_ROUTES_MAX 32

struct shim_net_addr {
	int family; /* AF_INET or AF_INET6 */
	char addr[INET6_ADDRSTRLEN];
	unsigned prefix_len;
};

struct shim_net_route {
	int family;
	char dst[INET6_ADDRSTRLEN + 4]; /* "10.88.0.0/16", "" = default */
	char gateway[INET6_ADDRSTRLEN]; /* "" = none */
	char dev[IFNAMSIZ];
};

struct shim_net_if {
	char name[IFNAMSIZ];
	char mac[18]; /* "0a:58:..." lower case */
	unsigned mtu;
	struct shim_net_addr addrs[SHIM_NET_ADDRS_MAX];
	size_t n_addrs;
	char tap[IFNAMSIZ];
	int tap_fd; /* -1 when none */
};

struct shim_net {
	struct shim_net_if ifs[SHIM_NET_IFS_MAX];
	size_t n_ifs;
	struct shim_net_route routes[SHIM_NET_ROUTES_MAX];
	size_t n_routes;
};

/* In the network namespace at netns_path: inspects its interfaces and routes and puts a TAP with tc redirects next to each interface (out->ifs[i].tap_fd, for the VMM). A namespace with no interface but lo gives n_ifs = 0 and creates nothing. On failure nothing is left (no tap, qdisc or filter) and err names the interface and the step. */
int shim_net_attach(const char *netns_path, struct shim_net *out, struct husk_err *err);
/* Undoes attach: removes the ingress qdiscs it added on the interfaces (their filters go with them), closes the tap fds (the taps go with them). Idempotent; safe when the namespace is already gone. */
void shim_net_detach(const char *netns_path, struct shim_net *net);

/* Enters the namespace at path on this thread only; *orig is the thread's
 * namespace before, for shim_netns_leave, which restores it (and aborts
 * the shim if it cannot: a thread left in a pod's namespace would put
 * whatever it does later there). */
int shim_netns_enter(const char *path, int *orig, struct husk_err *err);
void shim_netns_leave(int orig);

#endif
