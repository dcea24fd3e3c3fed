/* Sandbox.SetupNetwork: the pod's network in the VM's own network
 * namespace, over rtnetlink. Each interface is a NIC the host gave the VM,
 * found by its MAC address; it is renamed, given its MTU and addresses and
 * brought up, then the routes are added. A NIC the host hot-adds shows up a
 * little after the host's call: the call is deferred until it does, as
 * CreateBundle waits for a hot-added disk (sandbox.c).
 *
 * rtnetlink is spoken with the kernel's own UAPI (linux/rtnetlink.h)
 * rather than libmnl: Debian's libmnl source package could not be fetched
 * to build the agent's static musl copy (mk/musl-sysroot.sh), and the few
 * requests here need little: one request, one acknowledgement, and one
 * dump of the links. Every request is answered while the kernel handles
 * the send, so none of them waits on the loop. */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent.h"
#include "google/protobuf/empty.pb-c.h"
#include "husk/cleanup.h"
#include "husk/netif.h"
#include "husk/sandbox.pb-c.h"
#include "init/console.h"
#include "ttrpc/status.h"

#define ETH_ALEN 6
/* A dump comes in messages of at most 32 KiB when the reader's buffer is
 * that large (the kernel sizes them by the largest read it has seen). */
#define NL_RECV_BUF 32768

/* ---- the plan: the request, checked and parsed ---- */

struct net_addr {
	int family;
	unsigned char bytes[16];
	unsigned prefix;
	bool added; /* by this call: removed again when it fails */
};

struct net_if {
	const char *name; /* the request's, valid for the call's life */
	const char *mac_text;
	unsigned char mac[ETH_ALEN];
	unsigned mtu;
	struct net_addr addrs[NET_MAX_ADDRS];
	size_t n_addrs;
	/* the link found for it */
	int index;
	char cur_name[IFNAMSIZ];
	bool was_up;  /* before this call */
	bool renamed; /* taken down for the rename */
	bool touched; /* changed by this call */
};

struct net_route {
	const char *dst_text, *gw_text, *device;
	int family;
	unsigned char dst[16], gw[16];
	unsigned dst_len;
	bool has_gw;
	int index; /* of device, 0 for none */
	bool added;
};

struct net_plan {
	struct net_if ifs[NET_MAX_IFS];
	size_t n_ifs;
	struct net_route routes[NET_MAX_ROUTES];
	size_t n_routes;
};

static bool valid_ifname(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n >= IFNAMSIZ || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return false;
	for (; *s; s++)
		if (*s == '/' || *s == ':' || *s <= ' ' || *s == 0x7f)
			return false;
	return true;
}

static bool parse_mac(const char *s, unsigned char mac[ETH_ALEN])
{
	for (int i = 0; i < ETH_ALEN; i++) {
		unsigned v = 0;
		for (int j = 0; j < 2; j++, s++) {
			char c = *s;
			int d = c >= '0' && c <= '9' ? c - '0' :
				c >= 'a' && c <= 'f' ? c - 'a' + 10 :
				c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
			if (d < 0)
				return false;
			v = v << 4 | (unsigned)d;
		}
		mac[i] = (unsigned char)v;
		if (*s != (i == ETH_ALEN - 1 ? '\0' : ':'))
			return false;
		s += i < ETH_ALEN - 1;
	}
	return true;
}

/* An IPv4 or IPv6 address: its family, or 0 when it is neither. */
static int parse_ip(const char *s, unsigned char bytes[16])
{
	if (inet_pton(AF_INET, s, bytes) == 1)
		return AF_INET;
	if (inet_pton(AF_INET6, s, bytes) == 1)
		return AF_INET6;
	return 0;
}

static unsigned max_prefix(int family)
{
	return family == AF_INET ? 32 : 128;
}

/* "a.b.c.d/n" or "x::/n" with no bits set past the prefix. */
static int parse_cidr(const char *what, const char *s, struct net_route *r, struct husk_err *err)
{
	const char *slash = strchr(s, '/');
	char ip[INET6_ADDRSTRLEN];
	if (!slash || (size_t)(slash - s) >= sizeof(ip))
		goto bad;
	memcpy(ip, s, (size_t)(slash - s));
	ip[slash - s] = '\0';
	r->family = parse_ip(ip, r->dst);
	char *end;
	errno = 0;
	unsigned long len = strtoul(slash + 1, &end, 10);
	if (!r->family || slash[1] < '0' || slash[1] > '9' || *end || errno ||
	    len > max_prefix(r->family))
		goto bad;
	r->dst_len = (unsigned)len;
	for (unsigned bit = r->dst_len; bit < max_prefix(r->family); bit++)
		if (r->dst[bit / 8] & (0x80u >> (bit % 8)))
			return husk_err_set(err, -EINVAL,
					    "%s %s: bits set past the prefix length (network address expected)",
					    what, s);
	return 0;
bad:
	return husk_err_set(err, -EINVAL,
			    "%s %s: not \"default\" or an address/prefix_len (\"10.88.0.0/16\", \"fd00::/64\")",
			    what, s);
}

static int plan_interfaces(struct net_plan *p, const Husk__Sandbox__V1__SetupNetworkRequest *req,
			   struct husk_err *err)
{
	if (req->n_interfaces > NET_MAX_IFS)
		return husk_err_set(err, -EINVAL, "%zu interfaces: at most %d", req->n_interfaces,
				    NET_MAX_IFS);
	p->n_ifs = req->n_interfaces;
	for (size_t i = 0; i < p->n_ifs; i++) {
		const Husk__Sandbox__V1__Interface *in = req->interfaces[i];
		struct net_if *f = &p->ifs[i];
		f->name = in->name;
		f->mac_text = in->mac;
		f->mtu = in->mtu;
		if (!valid_ifname(in->name))
			return husk_err_set(err, -EINVAL,
					    "interfaces[%zu].name \"%s\": not an interface name (1 to %d "
					    "characters, no '/', ':' or white space)",
					    i, in->name, IFNAMSIZ - 1);
		if (!parse_mac(in->mac, f->mac))
			return husk_err_set(err, -EINVAL,
					    "interfaces[%zu].mac \"%s\": not a MAC address (xx:xx:xx:xx:xx:xx)",
					    i, in->mac);
		/* (lo's is all zeros) */
		static const unsigned char zero[ETH_ALEN];
		if ((f->mac[0] & 1) || memcmp(f->mac, zero, ETH_ALEN) == 0)
			return husk_err_set(err, -EINVAL,
					    "interfaces[%zu].mac %s: not a NIC's (unicast, not all zeros)",
					    i, in->mac);
		for (size_t j = 0; j < i; j++) {
			if (strcmp(p->ifs[j].name, f->name) == 0)
				return husk_err_set(err, -EINVAL,
						    "interfaces[%zu].name %s: interfaces[%zu] has it too",
						    i, f->name, j);
			if (memcmp(p->ifs[j].mac, f->mac, ETH_ALEN) == 0)
				return husk_err_set(err, -EINVAL,
						    "interfaces[%zu].mac %s: interfaces[%zu] has it too",
						    i, in->mac, j);
		}
		if (f->mtu && (f->mtu < 68 || f->mtu > 65535))
			return husk_err_set(err, -EINVAL,
					    "interfaces[%zu].mtu %u: out of range (68 to 65535, or 0 to leave it)",
					    i, f->mtu);
		if (in->n_addresses > NET_MAX_ADDRS)
			return husk_err_set(err, -EINVAL, "interfaces[%zu]: %zu addresses: at most %d",
					    i, in->n_addresses, NET_MAX_ADDRS);
		f->n_addrs = in->n_addresses;
		for (size_t j = 0; j < f->n_addrs; j++) {
			const Husk__Sandbox__V1__IPAddress *ia = in->addresses[j];
			struct net_addr *a = &f->addrs[j];
			a->family = parse_ip(ia->address, a->bytes);
			if (!a->family)
				return husk_err_set(err, -EINVAL,
						    "interfaces[%zu].addresses[%zu].address \"%s\": not an "
						    "IPv4 or IPv6 address",
						    i, j, ia->address);
			if (ia->prefix_len < 1 || ia->prefix_len > max_prefix(a->family))
				return husk_err_set(err, -EINVAL,
						    "interfaces[%zu].addresses[%zu].prefix_len %u: out of "
						    "range for %s (1 to %u)",
						    i, j, ia->prefix_len, ia->address,
						    max_prefix(a->family));
			a->prefix = ia->prefix_len;
		}
	}
	return 0;
}

static int plan_routes(struct net_plan *p, const Husk__Sandbox__V1__SetupNetworkRequest *req,
		       struct husk_err *err)
{
	if (req->n_routes > NET_MAX_ROUTES)
		return husk_err_set(err, -EINVAL, "%zu routes: at most %d", req->n_routes,
				    NET_MAX_ROUTES);
	p->n_routes = req->n_routes;
	for (size_t k = 0; k < p->n_routes; k++) {
		const Husk__Sandbox__V1__Route *in = req->routes[k];
		struct net_route *r = &p->routes[k];
		char what[64];
		r->dst_text = *in->destination ? in->destination : "default";
		r->gw_text = in->gateway;
		r->device = in->device;
		r->has_gw = *in->gateway != '\0';
		int gw_family = 0;
		if (r->has_gw && !(gw_family = parse_ip(in->gateway, r->gw)))
			return husk_err_set(err, -EINVAL,
					    "routes[%zu].gateway \"%s\": not an IPv4 or IPv6 address", k,
					    in->gateway);
		if (strcmp(r->dst_text, "default") == 0) {
			if (!r->has_gw)
				return husk_err_set(err, -EINVAL,
						    "routes[%zu]: a default route needs a gateway (for "
						    "one on a link, use 0.0.0.0/0 or ::/0 with a device)",
						    k);
			r->family = gw_family;
		} else {
			snprintf(what, sizeof(what), "routes[%zu].destination", k);
			int rc = parse_cidr(what, r->dst_text, r, err);
			if (rc < 0)
				return rc;
			if (r->has_gw && gw_family != r->family)
				return husk_err_set(err, -EINVAL,
						    "routes[%zu].gateway %s: not of the destination's "
						    "(%s) address family",
						    k, in->gateway, r->dst_text);
		}
		if (!*in->device) {
			if (!r->has_gw)
				return husk_err_set(err, -EINVAL,
						    "routes[%zu]: a route with no gateway (on the link) "
						    "needs a device",
						    k);
			continue;
		}
		bool known = false;
		for (size_t i = 0; i < p->n_ifs && !known; i++)
			known = strcmp(p->ifs[i].name, in->device) == 0;
		/* Or a link already there: "lo", one an earlier call set up. */
		if (!known && (!valid_ifname(in->device) || !if_nametoindex(in->device)))
			return husk_err_set(err, -EINVAL,
					    "routes[%zu].device \"%s\" names no interface (of this request "
					    "or of the VM)",
					    k, in->device);
	}
	return 0;
}

/* ---- rtnetlink ---- */

struct nl {
	int fd;
	uint32_t seq;
	char kmsg[200]; /* the kernel's own words on the last failure, or "" */
	char buf[NL_RECV_BUF] __attribute__((aligned(NLMSG_ALIGNTO)));
};

/* One request: header, family header, a few attributes. */
struct nl_req {
	union {
		struct nlmsghdr h;
		char buf[256];
	};
	bool overflow;
};

static void *req_init(struct nl_req *m, uint16_t type, uint16_t flags, size_t hdr_len)
{
	memset(m, 0, sizeof(*m));
	m->h.nlmsg_len = NLMSG_LENGTH(hdr_len);
	m->h.nlmsg_type = type;
	m->h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
	return NLMSG_DATA(&m->h);
}

static void req_attr(struct nl_req *m, uint16_t type, const void *data, size_t len)
{
	size_t off = NLMSG_ALIGN(m->h.nlmsg_len);
	if (off + RTA_SPACE(len) > sizeof(m->buf)) {
		m->overflow = true;
		return;
	}
	struct rtattr *rta = (struct rtattr *)(m->buf + off);
	rta->rta_type = type;
	rta->rta_len = (unsigned short)RTA_LENGTH(len);
	memcpy(RTA_DATA(rta), data, len);
	m->h.nlmsg_len = (uint32_t)(off + RTA_SPACE(len));
}

static void req_u32(struct nl_req *m, uint16_t type, uint32_t v)
{
	req_attr(m, type, &v, sizeof(v));
}

static int nl_open(struct nl *nl, struct husk_err *err)
{
	nl->seq = 0;
	nl->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (nl->fd < 0)
		return husk_err_sys(err, -errno, "rtnetlink socket");
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	if (bind(nl->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int rc = -errno;
		close(nl->fd);
		return husk_err_sys(err, rc, "bind rtnetlink socket");
	}
	/* The kernel's reason with an error ("Nexthop has invalid gateway"),
	 * without a copy of the request. Older kernels have neither. */
	int on = 1;
	setsockopt(nl->fd, SOL_NETLINK, NETLINK_EXT_ACK, &on, sizeof(on));
	setsockopt(nl->fd, SOL_NETLINK, NETLINK_CAP_ACK, &on, sizeof(on));
	return 0;
}

static void nl_close(struct nl *nl)
{
	if (nl->fd >= 0)
		close(nl->fd);
	nl->fd = -1;
}

/* The extended acknowledgement's message of an NLMSG_ERROR into kmsg. */
static void nl_ext_ack(struct nl *nl, const struct nlmsghdr *h)
{
	if (!(h->nlmsg_flags & NLM_F_ACK_TLVS))
		return;
	const struct nlmsgerr *e = NLMSG_DATA(h);
	size_t off = NLMSG_LENGTH(sizeof(*e));
	if (!(h->nlmsg_flags & NLM_F_CAPPED))
		off += NLMSG_ALIGN(e->msg.nlmsg_len) - NLMSG_HDRLEN;
	while (off + NLA_HDRLEN <= h->nlmsg_len) {
		const struct nlattr *a = (const void *)((const char *)h + off);
		if (a->nla_len < NLA_HDRLEN || a->nla_len > h->nlmsg_len - off)
			return;
		if ((a->nla_type & NLA_TYPE_MASK) == NLMSGERR_ATTR_MSG) {
			int n = (int)strnlen((const char *)a + NLA_HDRLEN, a->nla_len - NLA_HDRLEN);
			snprintf(nl->kmsg, sizeof(nl->kmsg), "%.*s", n, (const char *)a + NLA_HDRLEN);
			return;
		}
		off += NLA_ALIGN(a->nla_len);
	}
}

/* Sends `m` and reads the answers to it: each message but the final
 * acknowledgement goes to `fn` (a dump's). 0, or the kernel's negative
 * errno (with nl->kmsg). */
static int nl_talk(struct nl *nl, struct nl_req *m,
		   int (*fn)(const struct nlmsghdr *h, void *data), void *data)
{
	nl->kmsg[0] = '\0';
	if (m->overflow)
		return -EMSGSIZE;
	m->h.nlmsg_seq = ++nl->seq;
	if (send(nl->fd, &m->h, m->h.nlmsg_len, 0) < 0)
		return -errno;
	for (;;) {
		struct iovec iov = { nl->buf, sizeof(nl->buf) };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		ssize_t n = recvmsg(nl->fd, &mh, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (mh.msg_flags & MSG_TRUNC)
			return -EMSGSIZE;
		for (size_t off = 0; off + NLMSG_HDRLEN <= (size_t)n;) {
			const struct nlmsghdr *h = (const void *)(nl->buf + off);
			if (h->nlmsg_len < NLMSG_HDRLEN || h->nlmsg_len > (size_t)n - off)
				return -EBADMSG;
			off += NLMSG_ALIGN(h->nlmsg_len);
			if (h->nlmsg_seq != nl->seq)
				continue;
			if (h->nlmsg_type == NLMSG_DONE)
				return 0;
			if (h->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = NLMSG_DATA(h);
				if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*e)))
					return -EBADMSG;
				nl_ext_ack(nl, h);
				return e->error;
			}
			if (fn) {
				int rc = fn(h, data);
				if (rc < 0)
					return rc;
			}
		}
	}
}

/* Fills err: "<what>: <strerror>[ (<the kernel's message>)]". */
__attribute__((format(printf, 4, 5))) static int nl_fail(struct husk_err *err, int rc,
							 const struct nl *nl, const char *fmt, ...)
{
	char what[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return husk_err_set(err, rc, "%s: %s%s%s%s", what, strerror(-rc), nl->kmsg[0] ? " (" : "",
			    nl->kmsg, nl->kmsg[0] ? ")" : "");
}

/* ---- links ---- */

struct link_info {
	int index;
	unsigned flags;
	const char *name;
	const unsigned char *mac; /* NULL unless an Ethernet address */
};

static int parse_link(const struct nlmsghdr *h, struct link_info *l)
{
	if (h->nlmsg_type != RTM_NEWLINK || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct ifinfomsg)))
		return -1;
	const struct ifinfomsg *ifi = NLMSG_DATA(h);
	*l = (struct link_info){ .index = ifi->ifi_index, .flags = ifi->ifi_flags };
	int len = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof(*ifi)));
	for (const struct rtattr *a = IFLA_RTA(ifi); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
		size_t alen = RTA_PAYLOAD(a);
		if (a->rta_type == IFLA_IFNAME && alen > 0 &&
		    memchr(RTA_DATA(a), '\0', alen))
			l->name = RTA_DATA(a);
		else if (a->rta_type == IFLA_ADDRESS && alen == ETH_ALEN)
			l->mac = RTA_DATA(a);
	}
	return l->name ? 0 : -1;
}

/* Matches each link against the plan's interfaces: the first link with the
 * MAC, or one with the MAC that has the wanted name already. */
static int match_link(const struct nlmsghdr *h, void *data)
{
	struct net_plan *p = data;
	struct link_info l;
	if (parse_link(h, &l) < 0 || !l.mac)
		return 0;
	for (size_t i = 0; i < p->n_ifs; i++) {
		struct net_if *f = &p->ifs[i];
		if (memcmp(f->mac, l.mac, ETH_ALEN) != 0)
			continue;
		if (f->index && strcmp(l.name, f->name) != 0)
			continue;
		f->index = l.index;
		f->was_up = l.flags & IFF_UP;
		snprintf(f->cur_name, sizeof(f->cur_name), "%s", l.name);
	}
	return 0;
}

/* Finds the links of the plan's interfaces: the index of the first one
 * missing, or -1 when all are there; a negative errno on failure. */
static int find_links(struct nl *nl, struct net_plan *p, size_t *missing, struct husk_err *err)
{
	for (size_t i = 0; i < p->n_ifs; i++)
		p->ifs[i].index = 0;
	struct nl_req m;
	struct ifinfomsg *ifi = req_init(&m, RTM_GETLINK, NLM_F_DUMP, sizeof(*ifi));
	ifi->ifi_family = AF_UNSPEC;
	req_u32(&m, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
	int rc = nl_talk(nl, &m, match_link, p);
	if (rc < 0)
		return nl_fail(err, rc, nl, "listing the network links");
	for (size_t i = 0; i < p->n_ifs; i++)
		if (!p->ifs[i].index) {
			*missing = i;
			return 1;
		}
	return 0;
}

/* Sets the link's IFF_UP to `up`; renames it and sets its MTU when given. */
static int link_set(struct nl *nl, int index, int up, const char *name, unsigned mtu)
{
	struct nl_req m;
	struct ifinfomsg *ifi = req_init(&m, RTM_NEWLINK, 0, sizeof(*ifi));
	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = index;
	if (up >= 0) {
		ifi->ifi_change = IFF_UP;
		ifi->ifi_flags = up ? IFF_UP : 0;
	}
	if (name)
		req_attr(&m, IFLA_IFNAME, name, strlen(name) + 1);
	if (mtu)
		req_u32(&m, IFLA_MTU, mtu);
	return nl_talk(nl, &m, NULL, NULL);
}

static int addr_change(struct nl *nl, uint16_t cmd, int index, const struct net_addr *a)
{
	struct nl_req m;
	struct ifaddrmsg *ifa = req_init(&m, cmd, cmd == RTM_NEWADDR ? NLM_F_CREATE | NLM_F_EXCL : 0,
					 sizeof(*ifa));
	ifa->ifa_family = (unsigned char)a->family;
	ifa->ifa_prefixlen = (unsigned char)a->prefix;
	ifa->ifa_index = (unsigned)index;
	ifa->ifa_scope = RT_SCOPE_UNIVERSE;
	size_t len = a->family == AF_INET ? 4 : 16;
	req_attr(&m, IFA_LOCAL, a->bytes, len);
	req_attr(&m, IFA_ADDRESS, a->bytes, len);
	/* Usable at once: nobody else on the pod's link has the address (the
	 * host's CNI chose it), and duplicate address detection would keep it
	 * tentative for a second or more. */
	if (a->family == AF_INET6 && cmd == RTM_NEWADDR) {
		ifa->ifa_flags = IFA_F_NODAD;
		req_u32(&m, IFA_FLAGS, IFA_F_NODAD);
	}
	return nl_talk(nl, &m, NULL, NULL);
}

static int route_change(struct nl *nl, uint16_t cmd, const struct net_route *r)
{
	struct nl_req m;
	struct rtmsg *rt = req_init(&m, cmd, cmd == RTM_NEWROUTE ? NLM_F_CREATE | NLM_F_EXCL : 0,
				    sizeof(*rt));
	rt->rtm_family = (unsigned char)r->family;
	rt->rtm_dst_len = (unsigned char)r->dst_len;
	rt->rtm_table = RT_TABLE_MAIN;
	rt->rtm_protocol = RTPROT_BOOT;
	rt->rtm_type = RTN_UNICAST;
	/* As ip-route(8) chooses: an IPv4 route with no gateway is on the
	 * link; a deletion matches any scope. */
	rt->rtm_scope = cmd == RTM_DELROUTE			  ? RT_SCOPE_NOWHERE :
			!r->has_gw && r->family == AF_INET ? RT_SCOPE_LINK :
								     RT_SCOPE_UNIVERSE;
	size_t len = r->family == AF_INET ? 4 : 16;
	if (r->dst_len)
		req_attr(&m, RTA_DST, r->dst, len);
	if (r->has_gw)
		req_attr(&m, RTA_GATEWAY, r->gw, len);
	if (r->index)
		req_u32(&m, RTA_OIF, (uint32_t)r->index);
	return nl_talk(nl, &m, NULL, NULL);
}

/* ---- applying the plan ---- */

/* Undoes what apply() did as far as it reasonably can: the routes and
 * addresses it added go, and the links it took down or brought up are
 * left down. Names and MTUs stay as they are (a later call finds the
 * links by MAC all the same). */
static void rollback(struct nl *nl, struct net_plan *p)
{
	for (size_t k = p->n_routes; k-- > 0;) {
		int rc = p->routes[k].added ? route_change(nl, RTM_DELROUTE, &p->routes[k]) : 0;
		if (rc < 0)
			init_log(INIT_LOG_WARNING, "SetupNetwork: undoing routes[%zu] (%s): %s", k,
				 p->routes[k].dst_text, strerror(-rc));
	}
	for (size_t i = p->n_ifs; i-- > 0;) {
		struct net_if *f = &p->ifs[i];
		for (size_t j = 0; j < f->n_addrs; j++)
			if (f->addrs[j].added)
				addr_change(nl, RTM_DELADDR, f->index, &f->addrs[j]);
		if (f->touched && (!f->was_up || f->renamed))
			link_set(nl, f->index, 0, NULL, 0);
	}
}

static int apply_interface(struct nl *nl, struct net_if *f, size_t i, struct husk_err *err)
{
	int rc;
	if (f->renamed && (rc = link_set(nl, f->index, -1, f->name, 0)) < 0)
		return nl_fail(err, rc, nl, "interfaces[%zu] (%s): renaming the link to %s%s", i,
			       f->mac_text, f->name,
			       rc == -EEXIST ? ": another link has that name" : "");
	if (f->mtu && (rc = link_set(nl, f->index, -1, NULL, f->mtu)) < 0)
		return nl_fail(err, rc, nl, "interfaces[%zu] (%s): setting the MTU to %u", i,
			       f->name, f->mtu);
	for (size_t j = 0; j < f->n_addrs; j++) {
		struct net_addr *a = &f->addrs[j];
		rc = addr_change(nl, RTM_NEWADDR, f->index, a);
		if (rc == -EEXIST) /* set up by an earlier call */
			continue;
		if (rc < 0) {
			char ip[INET6_ADDRSTRLEN];
			inet_ntop(a->family, a->bytes, ip, sizeof(ip));
			return nl_fail(err, rc, nl, "interfaces[%zu].addresses[%zu] (%s/%u on %s)", i,
				       j, ip, a->prefix, f->name);
		}
		a->added = true;
	}
	if ((rc = link_set(nl, f->index, 1, NULL, 0)) < 0)
		return nl_fail(err, rc, nl, "interfaces[%zu] (%s): bringing it up", i, f->name);
	return 0;
}

static int apply_routes(struct nl *nl, struct net_plan *p, struct husk_err *err)
{
	for (size_t k = 0; k < p->n_routes; k++) {
		struct net_route *r = &p->routes[k];
		r->index = 0;
		for (size_t i = 0; *r->device && i < p->n_ifs && !r->index; i++)
			if (strcmp(p->ifs[i].name, r->device) == 0)
				r->index = p->ifs[i].index;
		if (*r->device && !r->index && !(r->index = (int)if_nametoindex(r->device)))
			return husk_err_set(err, -ENODEV, "routes[%zu].device \"%s\" names no interface",
					    k, r->device);
		int rc = route_change(nl, RTM_NEWROUTE, r);
		/* The kernel adds the prefix routes of addresses itself, and an
		 * earlier call may have added this one. */
		if (rc == -EEXIST)
			continue;
		if (rc < 0)
			return nl_fail(err, rc, nl, "routes[%zu] (%s%s%s%s%s)", k, r->dst_text,
				       r->has_gw ? " via " : "", r->gw_text, *r->device ? " dev " : "",
				       r->device);
		r->added = true;
	}
	return 0;
}

/* Every interface's link is found (p->ifs[i].index). */
static int apply(struct agent *a, struct nl *nl, struct net_plan *p, struct husk_err *err)
{
	int rc = husk_loopback_up(err);
	if (rc < 0)
		return husk_err_wrap(err, "the VM's loopback");
	a->vm_lo_up = true;
	/* A link is renamed only while down (and loses its routes and IPv6
	 * addresses then): one already named right is left up. Renaming
	 * through a temporary name lets two links swap names. */
	for (size_t i = 0; i < p->n_ifs; i++) {
		struct net_if *f = &p->ifs[i];
		if (strcmp(f->cur_name, f->name) == 0)
			continue;
		char tmp[IFNAMSIZ];
		snprintf(tmp, sizeof(tmp), "husk%d", f->index);
		f->touched = f->renamed = true;
		if ((rc = link_set(nl, f->index, 0, NULL, 0)) < 0 ||
		    (rc = link_set(nl, f->index, -1, tmp, 0)) < 0) {
			nl_fail(err, rc, nl, "interfaces[%zu] (%s, now %s): taking it down to rename it",
				i, f->mac_text, f->cur_name);
			goto fail;
		}
	}
	for (size_t i = 0; i < p->n_ifs; i++) {
		p->ifs[i].touched = true;
		if ((rc = apply_interface(nl, &p->ifs[i], i, err)) < 0)
			goto fail;
	}
	if ((rc = apply_routes(nl, p, err)) < 0)
		goto fail;
	return 0;
fail:
	rollback(nl, p);
	return rc;
}

static void reply_ok(struct ttrpc_call *call)
{
	ttrpc_call_reply(call, &((Google__Protobuf__Empty)GOOGLE__PROTOBUF__EMPTY__INIT).base);
}

static void reply_err(struct ttrpc_call *call, const struct husk_err *err)
{
	ttrpc_call_fail(call, ttrpc_code_from_errno(err->code), "%s", err->msg);
}

/* Looks for the links and, when all are there, applies the plan: 1 while
 * one is missing (`last`: and will not come; then an error), 0 done, or a
 * negative errno. */
static int try_apply(struct agent *a, struct net_plan *p, bool last, struct husk_err *err)
{
	struct nl nl;
	int rc = nl_open(&nl, err);
	if (rc < 0)
		return rc;
	size_t missing = 0;
	rc = find_links(&nl, p, &missing, err);
	if (rc == 0)
		rc = apply(a, &nl, p, err);
	else if (rc > 0 && last)
		rc = husk_err_set(err, -ENOENT,
				  "interfaces[%zu].mac %s: no network link has this address (waited "
				  "%u ms for a hot-added one)",
				  missing, p->ifs[missing].mac_text, NET_HOTPLUG_WAIT_MS);
	nl_close(&nl);
	return rc;
}

/* ---- waiting for a hot-added NIC ----
 *
 * The kernel announces every new link (and every change of one) to
 * RTMGRP_LINK; each announcement is a reason to look again. This, not the
 * uevent socket CreateBundle watches for disks: a net device's uevents go
 * out before the kernel lists the link, and a dump that does not wait for
 * the RTNL lock (newer kernels) can miss it, with no event left to come. */

struct net_wait {
	struct agent *agent;
	struct ttrpc_call *call;
	struct net_plan *plan;
	int fd;
	struct ev_io *io;
	struct ev_timer *deadline;
};

static void net_wait_free(struct net_wait *w)
{
	ev_io_del(w->io);
	if (w->fd >= 0)
		close(w->fd);
	ev_timer_cancel(w->deadline);
	free(w->plan);
	free(w);
}

/* Answers the call unless a link is still missing (and not `last`). */
static void net_wait_check(struct net_wait *w, bool last)
{
	struct husk_err err = { 0 };
	int rc = try_apply(w->agent, w->plan, last, &err);
	if (rc > 0)
		return;
	if (rc < 0)
		reply_err(w->call, &err);
	else
		reply_ok(w->call);
	net_wait_free(w);
}

static void on_link_event(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io;
	(void)events;
	/* What changed does not matter: look again. ENOBUFS (announcements
	 * dropped) is one more reason to. */
	char buf[8192];
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0 && errno != ENOBUFS && errno != EINTR)
			break;
	}
	net_wait_check(data, false);
}

static void on_wait_deadline(void *data)
{
	struct net_wait *w = data;
	w->deadline = NULL; /* fired timers are gone */
	net_wait_check(w, true);
}

static void on_wait_cancel(struct ttrpc_call *call, void *data)
{
	(void)call;
	net_wait_free(data);
}

/* Some link is missing: watch for new links, look again (one may have come
 * in between), and defer the call until all are there or the wait ends.
 * Takes the plan. */
static void wait_start(struct agent *a, struct ttrpc_call *call, struct net_plan *p)
{
	struct husk_err err = { 0 };
	struct net_wait *w = calloc(1, sizeof(*w));
	if (!w) {
		free(p);
		ttrpc_call_fail(call, TTRPC_RESOURCE_EXHAUSTED, "SetupNetwork: out of memory");
		return;
	}
	*w = (struct net_wait){ .agent = a, .call = call, .plan = p, .fd = -1 };
	w->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK, .nl_groups = RTMGRP_LINK };
	if (w->fd < 0 || bind(w->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		husk_err_sys(&err, -errno, "watching for hot-added network links");
		goto fail;
	}
	if (ev_io_add(a->loop, w->fd, EPOLLIN, on_link_event, w, &w->io, &err) < 0)
		goto fail;
	int rc = try_apply(a, p, false, &err);
	if (rc <= 0) {
		if (rc < 0)
			goto fail;
		reply_ok(call);
		net_wait_free(w);
		return;
	}
	if (ev_timer_add(a->loop, (uint64_t)NET_HOTPLUG_WAIT_MS * 1000000u, on_wait_deadline, w,
			 &w->deadline) < 0) {
		husk_err_set(&err, -ENOMEM, "waiting for hot-added network links: timer");
		goto fail;
	}
	ttrpc_call_defer(call, on_wait_cancel, w);
	return;
fail:
	reply_err(call, &err);
	net_wait_free(w);
}

void net_on_setup_network(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct agent *a = data;
	const Husk__Sandbox__V1__SetupNetworkRequest *r = (const void *)req;
	struct husk_err err = { 0 };
	_cleanup_free_ struct net_plan *p = calloc(1, sizeof(*p));
	if (!p) {
		ttrpc_call_fail(call, TTRPC_RESOURCE_EXHAUSTED, "SetupNetwork: out of memory");
		return;
	}
	int rc = plan_interfaces(p, r, &err);
	if (rc == 0)
		rc = plan_routes(p, r, &err);
	if (rc == 0)
		rc = try_apply(a, p, false, &err);
	if (rc > 0) {
		wait_start(a, call, take_ptr(p));
		return;
	}
	if (rc < 0)
		reply_err(call, &err);
	else
		reply_ok(call);
}
