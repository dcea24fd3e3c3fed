/* Pod networking on the host: a TAP with tc redirects next to each
 * interface of the pod's network namespace. See network.h.
 *
 * The tc objects are exactly what
 *   tc qdisc add dev IF ingress
 *   tc filter add dev IF parent ffff: protocol all u32 match u8 0 0 \
 *           action mirred egress redirect dev TAP
 * creates (and the same from TAP to IF): u32 rather than matchall because
 * kernels without cls_matchall exist (this development host is one). */
#include "network.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if_arp.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <linux/if_ether.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <linux/tc_act/tc_mirred.h>

#include "husk/cleanup.h"
#include "log.h"

/* ---- rtnetlink over libmnl ------------------------------------------------ */

struct nl {
	struct mnl_socket *sock;
	unsigned portid;
	unsigned seq;
	char ext_msg[160]; /* the kernel's extended ack text for the last error */
	char req[1024];
	/* Dumps come in messages of up to the reader's buffer size (capped
	 * at 32 KiB by the kernel). */
	char buf[32768];
};

static void nl_freep(struct nl **p)
{
	if (*p) {
		if ((*p)->sock)
			mnl_socket_close((*p)->sock);
		free(*p);
	}
}
#define _cleanup_nl_ __attribute__((cleanup(nl_freep)))

/* Opens an rtnetlink socket in the calling thread's network namespace
 * (a socket stays in the namespace it was created in). */
static int nl_open(struct nl **out, struct husk_err *err)
{
	_cleanup_nl_ struct nl *nl = calloc(1, sizeof(*nl));
	if (!nl)
		return husk_err_set(err, -ENOMEM, "rtnetlink: out of memory");
	nl->sock = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
	if (!nl->sock)
		return husk_err_sys(err, -errno, "rtnetlink: socket");
	if (mnl_socket_bind(nl->sock, 0, MNL_SOCKET_AUTOPID) < 0)
		return husk_err_sys(err, -errno, "rtnetlink: bind");
	/* Best effort: the kernel's own words ("Exclusivity flag on, cannot
	 * modify") make far better errors than the errno alone. */
	int one = 1;
	(void)mnl_socket_setsockopt(nl->sock, NETLINK_EXT_ACK, &one, sizeof(one));
	nl->portid = mnl_socket_get_portid(nl->sock);
	nl->seq = (unsigned)time(NULL);
	*out = take_ptr(nl);
	return 0;
}

static struct nlmsghdr *nl_msg(struct nl *nl, uint16_t type, uint16_t flags)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(nl->req);
	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_REQUEST | flags;
	nlh->nlmsg_seq = ++nl->seq;
	return nlh;
}

struct nl_call {
	struct nl *nl;
	mnl_cb_t cb;
	void *data;
	bool intr; /* the dump changed under us (NLM_F_DUMP_INTR) */
};

static int nl_ext_attr(const struct nlattr *a, void *data)
{
	struct nl *nl = data;
	if (mnl_attr_get_type(a) == NLMSGERR_ATTR_MSG &&
	    mnl_attr_validate(a, MNL_TYPE_NUL_STRING) >= 0)
		snprintf(nl->ext_msg, sizeof(nl->ext_msg), "%s", mnl_attr_get_str(a));
	return MNL_CB_OK;
}

static int nl_error_cb(const struct nlmsghdr *nlh, void *data)
{
	struct nl_call *call = data;
	const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
	size_t len = mnl_nlmsg_get_payload_len(nlh);
	if (len < sizeof(*e)) {
		errno = EBADMSG;
		return MNL_CB_ERROR;
	}
	if (e->error == 0)
		return MNL_CB_STOP;
	if ((nlh->nlmsg_flags & NLM_F_ACK_TLVS) && e->msg.nlmsg_len >= sizeof(struct nlmsghdr)) {
		/* The TLVs follow the echoed request unless it was capped. */
		size_t off = sizeof(*e);
		if (!(nlh->nlmsg_flags & NLM_F_CAPPED))
			off += e->msg.nlmsg_len - sizeof(struct nlmsghdr);
		off = MNL_ALIGN(off);
		if (off < len)
			mnl_attr_parse_payload((const char *)e + off, len - off, nl_ext_attr,
					       call->nl);
	}
	errno = -e->error;
	return MNL_CB_ERROR;
}

/* The end of a dump; a failed dump ends with its (negative) error here. */
static int nl_done_cb(const struct nlmsghdr *nlh, void *data)
{
	(void)data;
	if (mnl_nlmsg_get_payload_len(nlh) >= sizeof(int)) {
		int e;
		memcpy(&e, mnl_nlmsg_get_payload(nlh), sizeof(e));
		if (e < 0) {
			errno = -e;
			return MNL_CB_ERROR;
		}
	}
	return MNL_CB_STOP;
}

static int nl_data_cb(const struct nlmsghdr *nlh, void *data)
{
	struct nl_call *call = data;
	if (nlh->nlmsg_flags & NLM_F_DUMP_INTR)
		call->intr = true;
	return call->cb ? call->cb(nlh, call->data) : MNL_CB_OK;
}

/* Sends the request in nl->req and reads until its ack or the end of its
 * dump, handing each message to cb. Returns 0 or -errno; the kernel's
 * message, if any, is in nl->ext_msg. -EAGAIN: a dump was interrupted by a
 * change and is worth repeating. */
static int nl_talk(struct nl *nl, mnl_cb_t cb, void *data)
{
	const struct nlmsghdr *req = (const struct nlmsghdr *)nl->req;
	unsigned seq = req->nlmsg_seq;
	struct nl_call call = { .nl = nl, .cb = cb, .data = data };
	/* With an array libmnl calls no default for a type left NULL. */
	mnl_cb_t ctl[NLMSG_MIN_TYPE] = { [NLMSG_ERROR] = nl_error_cb, [NLMSG_DONE] = nl_done_cb };

	nl->ext_msg[0] = '\0';
	if (mnl_socket_sendto(nl->sock, req, req->nlmsg_len) < 0)
		return -errno;
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(nl->sock, nl->buf, sizeof(nl->buf));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		errno = 0;
		int r = mnl_cb_run2(nl->buf, (size_t)n, seq, nl->portid, nl_data_cb, &call, ctl,
				    ARRAY_SIZE(ctl));
		if (r == MNL_CB_ERROR)
			return errno ? -errno : -EIO;
		if (r == MNL_CB_STOP)
			return call.intr ? -EAGAIN : 0;
	}
}

/* husk_err_sys with the kernel's extended ack text appended when it gave one. */
static int nl_err(struct husk_err *err, struct nl *nl, int rc, const char *ifname, const char *step)
{
	if (nl->ext_msg[0])
		return husk_err_sys(err, rc, "%s: %s (%s)", ifname, step, nl->ext_msg);
	return husk_err_sys(err, rc, "%s: %s", ifname, step);
}

/* Collects a message's attributes into tb[0..max]. */
struct attr_tab {
	const struct nlattr **tb;
	unsigned max;
};

static int attr_collect(const struct nlattr *a, void *data)
{
	struct attr_tab *t = data;
	unsigned type = mnl_attr_get_type(a);
	if (type <= t->max)
		t->tb[type] = a;
	return MNL_CB_OK;
}

static void attrs_parse(const struct nlmsghdr *nlh, size_t hdr, const struct nlattr **tb,
			unsigned max)
{
	struct attr_tab t = { tb, max };
	memset(tb, 0, (max + 1) * sizeof(*tb));
	mnl_attr_parse(nlh, (unsigned)hdr, attr_collect, &t);
}

/* The attribute's address of `family` as text, or NULL when malformed. */
static const char *attr_addr(const struct nlattr *a, int family, char *buf, size_t len)
{
	size_t want = family == AF_INET ? 4 : 16;
	if (!a || mnl_attr_get_payload_len(a) != want)
		return NULL;
	return inet_ntop(family, mnl_attr_get_payload(a), buf, (socklen_t)len);
}

/* ---- inspection ----------------------------------------------------------- */

struct inspect {
	struct shim_net *out;
	int ifindex[SHIM_NET_IFS_MAX];
	int rc; /* the first error; callbacks keep draining the dump after it */
	struct husk_err *err;
};

static int inspect_find(const struct inspect *in, int ifindex)
{
	for (size_t i = 0; i < in->out->n_ifs; i++)
		if (in->ifindex[i] == ifindex)
			return (int)i;
	return -1;
}

static int link_cb(const struct nlmsghdr *nlh, void *data)
{
	struct inspect *in = data;
	const struct ifinfomsg *ifi = mnl_nlmsg_get_payload(nlh);
	const struct nlattr *tb[IFLA_MAX + 1];

	if (in->rc || nlh->nlmsg_type != RTM_NEWLINK || (ifi->ifi_flags & IFF_LOOPBACK))
		return MNL_CB_OK;
	attrs_parse(nlh, sizeof(*ifi), tb, IFLA_MAX);
	if (!tb[IFLA_IFNAME] || mnl_attr_validate(tb[IFLA_IFNAME], MNL_TYPE_NUL_STRING) < 0 ||
	    strlen(mnl_attr_get_str(tb[IFLA_IFNAME])) >= IFNAMSIZ) {
		in->rc = husk_err_set(in->err, -EBADMSG, "interface %d: no valid name",
				      ifi->ifi_index);
		return MNL_CB_OK;
	}
	const char *name = mnl_attr_get_str(tb[IFLA_IFNAME]);
	if (ifi->ifi_type != ARPHRD_ETHER) {
		/* Fallback tunnel devices (sit0, tunl0, ...) that the kernel puts
		 * down in every namespace carry nothing; a live non-Ethernet
		 * device cannot be mirrored onto a TAP. */
		if (!(ifi->ifi_flags & IFF_UP))
			return MNL_CB_OK;
		in->rc = husk_err_set(in->err, -EOPNOTSUPP,
				      "%s: not an Ethernet interface (type %u)", name,
				      ifi->ifi_type);
		return MNL_CB_OK;
	}
	if (in->out->n_ifs == SHIM_NET_IFS_MAX) {
		in->rc = husk_err_set(in->err, -E2BIG,
				      "%s: more than %d interfaces besides lo", name,
				      SHIM_NET_IFS_MAX);
		return MNL_CB_OK;
	}
	if (!(ifi->ifi_flags & IFF_UP)) {
		in->rc = husk_err_set(in->err, -ENETDOWN, "%s: interface is not up", name);
		return MNL_CB_OK;
	}
	static const unsigned char zero[ETH_ALEN];
	const struct nlattr *mac = tb[IFLA_ADDRESS];
	if (!mac || mnl_attr_get_payload_len(mac) != ETH_ALEN ||
	    !memcmp(mnl_attr_get_payload(mac), zero, ETH_ALEN)) {
		in->rc = husk_err_set(in->err, -EADDRNOTAVAIL, "%s: interface has no MAC address",
				      name);
		return MNL_CB_OK;
	}
	if (!tb[IFLA_MTU] || mnl_attr_validate(tb[IFLA_MTU], MNL_TYPE_U32) < 0) {
		in->rc = husk_err_set(in->err, -EBADMSG, "%s: no MTU", name);
		return MNL_CB_OK;
	}

	struct shim_net_if *nif = &in->out->ifs[in->out->n_ifs];
	snprintf(nif->name, sizeof(nif->name), "%s", name);
	const unsigned char *m = mnl_attr_get_payload(mac);
	snprintf(nif->mac, sizeof(nif->mac), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2],
		 m[3], m[4], m[5]);
	nif->mtu = mnl_attr_get_u32(tb[IFLA_MTU]);
	in->ifindex[in->out->n_ifs++] = ifi->ifi_index;
	return MNL_CB_OK;
}

static int addr_cb(const struct nlmsghdr *nlh, void *data)
{
	struct inspect *in = data;
	const struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nlh);
	const struct nlattr *tb[IFA_MAX + 1];

	if (in->rc || nlh->nlmsg_type != RTM_NEWADDR)
		return MNL_CB_OK;
	if (ifa->ifa_family != AF_INET && ifa->ifa_family != AF_INET6)
		return MNL_CB_OK;
	int i = inspect_find(in, (int)ifa->ifa_index);
	/* Global ones only: link and host scope stay with the namespace. */
	if (i < 0 || ifa->ifa_scope >= RT_SCOPE_LINK)
		return MNL_CB_OK;
	attrs_parse(nlh, sizeof(*ifa), tb, IFA_MAX);
	struct shim_net_if *nif = &in->out->ifs[i];
	/* IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's
	 * on point-to-point IPv4 links. */
	const struct nlattr *a = ifa->ifa_family == AF_INET && tb[IFA_LOCAL] ? tb[IFA_LOCAL]
									: tb[IFA_ADDRESS];
	if (ifa->ifa_family == AF_INET6 && a && mnl_attr_get_payload_len(a) == 16 &&
	    IN6_IS_ADDR_LINKLOCAL((const struct in6_addr *)mnl_attr_get_payload(a)))
		return MNL_CB_OK;
	if (nif->n_addrs == SHIM_NET_ADDRS_MAX) {
		in->rc = husk_err_set(in->err, -E2BIG, "%s: more than %d addresses", nif->name,
				      SHIM_NET_ADDRS_MAX);
		return MNL_CB_OK;
	}
	struct shim_net_addr *sa = &nif->addrs[nif->n_addrs];
	if (!attr_addr(a, ifa->ifa_family, sa->addr, sizeof(sa->addr))) {
		in->rc = husk_err_set(in->err, -EBADMSG, "%s: malformed address", nif->name);
		return MNL_CB_OK;
	}
	sa->family = ifa->ifa_family;
	sa->prefix_len = ifa->ifa_prefixlen;
	nif->n_addrs++;
	return MNL_CB_OK;
}

/* Whether a multipath route has a hop through one of our interfaces. */
static bool multipath_ours(const struct inspect *in, const struct nlattr *mp)
{
	const char *p = mnl_attr_get_payload(mp);
	size_t left = mnl_attr_get_payload_len(mp);
	while (left >= sizeof(struct rtnexthop)) {
		const struct rtnexthop *nh = (const struct rtnexthop *)p;
		if (nh->rtnh_len < sizeof(*nh) || nh->rtnh_len > left)
			break;
		if (inspect_find(in, nh->rtnh_ifindex) >= 0)
			return true;
		size_t step = RTNH_ALIGN(nh->rtnh_len);
		if (step >= left)
			break;
		p += step;
		left -= step;
	}
	return false;
}

static int route_cb(const struct nlmsghdr *nlh, void *data)
{
	struct inspect *in = data;
	const struct rtmsg *rtm = mnl_nlmsg_get_payload(nlh);
	const struct nlattr *tb[RTA_MAX + 1];
	char dst[INET6_ADDRSTRLEN];

	if (in->rc || nlh->nlmsg_type != RTM_NEWROUTE)
		return MNL_CB_OK;
	int family = rtm->rtm_family;
	if (family != AF_INET && family != AF_INET6)
		return MNL_CB_OK;
	attrs_parse(nlh, sizeof(*rtm), tb, RTA_MAX);
	unsigned table = tb[RTA_TABLE] && mnl_attr_validate(tb[RTA_TABLE], MNL_TYPE_U32) >= 0
				 ? mnl_attr_get_u32(tb[RTA_TABLE])
				 : rtm->rtm_table;
	/* What the kernel derives from the addresses comes back in the guest
	 * when the agent sets the same addresses. */
	if (table != RT_TABLE_MAIN || rtm->rtm_type != RTN_UNICAST ||
	    rtm->rtm_protocol == RTPROT_KERNEL)
		return MNL_CB_OK;
	if (rtm->rtm_dst_len) {
		if (!attr_addr(tb[RTA_DST], family, dst, sizeof(dst)))
			return MNL_CB_OK;
		if (family == AF_INET6) {
			const struct in6_addr *d = mnl_attr_get_payload(tb[RTA_DST]);
			if (IN6_IS_ADDR_LINKLOCAL(d) || IN6_IS_ADDR_MULTICAST(d))
				return MNL_CB_OK;
		}
	}
	int i = -1;
	if (tb[RTA_OIF] && mnl_attr_validate(tb[RTA_OIF], MNL_TYPE_U32) >= 0)
		i = inspect_find(in, (int)mnl_attr_get_u32(tb[RTA_OIF]));
	else if (tb[RTA_MULTIPATH] && multipath_ours(in, tb[RTA_MULTIPATH])) {
		in->rc = husk_err_set(in->err, -EOPNOTSUPP, "route to %s/%u: multipath routes are not supported",
				      rtm->rtm_dst_len ? dst : "default", rtm->rtm_dst_len);
		return MNL_CB_OK;
	}
	if (i < 0)
		return MNL_CB_OK;
	const char *dev = in->out->ifs[i].name;
	if (tb[RTA_VIA]) {
		in->rc = husk_err_set(in->err, -EOPNOTSUPP,
				      "%s: route with a gateway of another family is not supported",
				      dev);
		return MNL_CB_OK;
	}
	if (in->out->n_routes == SHIM_NET_ROUTES_MAX) {
		in->rc = husk_err_set(in->err, -E2BIG, "%s: more than %d routes", dev,
				      SHIM_NET_ROUTES_MAX);
		return MNL_CB_OK;
	}
	struct shim_net_route *r = &in->out->routes[in->out->n_routes];
	memset(r, 0, sizeof(*r));
	r->family = family;
	if (rtm->rtm_dst_len)
		snprintf(r->dst, sizeof(r->dst), "%s/%u", dst, rtm->rtm_dst_len);
	if (tb[RTA_GATEWAY] && !attr_addr(tb[RTA_GATEWAY], family, r->gateway, sizeof(r->gateway))) {
		in->rc = husk_err_set(in->err, -EBADMSG, "%s: malformed route gateway", dev);
		return MNL_CB_OK;
	}
	memcpy(r->dev, dev, sizeof(r->dev)); /* both IFNAMSIZ, NUL-terminated */
	in->out->n_routes++;
	return MNL_CB_OK;
}

static int dump(struct nl *nl, uint16_t type, size_t hdr_len, mnl_cb_t cb, struct inspect *in,
		const char *what)
{
	struct nlmsghdr *nlh = nl_msg(nl, type, NLM_F_DUMP);
	/* Every family's header starts with its family byte: AF_UNSPEC asks
	 * for IPv4 and IPv6 at once. */
	unsigned char *h = mnl_nlmsg_put_extra_header(nlh, hdr_len);
	h[0] = AF_UNSPEC;
	int rc = nl_talk(nl, cb, in);
	if (rc < 0 && rc != -EAGAIN)
		return nl_err(in->err, nl, rc, "dump", what);
	if (rc == 0 && in->rc)
		return in->rc;
	return rc;
}

static int inspect_once(struct nl *nl, struct shim_net *out, struct inspect *in)
{
	int rc = dump(nl, RTM_GETLINK, sizeof(struct ifinfomsg), link_cb, in, "links");
	if (rc < 0)
		return rc;
	if (!out->n_ifs)
		return 0;
	rc = dump(nl, RTM_GETADDR, sizeof(struct ifaddrmsg), addr_cb, in, "addresses");
	if (rc < 0)
		return rc;
	return dump(nl, RTM_GETROUTE, sizeof(struct rtmsg), route_cb, in, "routes");
}

static int inspect(struct nl *nl, struct shim_net *out, int ifindex[SHIM_NET_IFS_MAX],
		   struct husk_err *err)
{
	int rc = -EAGAIN;
	/* A dump that raced a change (NLM_F_DUMP_INTR) may be inconsistent. */
	for (int tries = 0; tries < 3 && rc == -EAGAIN; tries++) {
		memset(out, 0, sizeof(*out));
		struct inspect in = { .out = out, .err = err };
		rc = inspect_once(nl, out, &in);
		memcpy(ifindex, in.ifindex, sizeof(in.ifindex));
	}
	if (rc == -EAGAIN)
		return husk_err_set(err, rc, "the namespace kept changing during its dump");
	return rc;
}

/* ---- TAP and tc ----------------------------------------------------------- */

/* A non-persistent TAP named `name` in the calling thread's namespace (the
 * device lives as long as the fd). */
static int tap_open(const char *name, int *fd_out, struct husk_err *err)
{
	_cleanup_fd_ int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return husk_err_sys(err, -errno, "%s: open /dev/net/tun", name);
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0)
		return husk_err_sys(err, -errno, "%s: TUNSETIFF", name);
	*fd_out = take_fd(&fd);
	return 0;
}

/* The guest speaks for the interface's addresses; the host's stack must
 * not add its own link-local address, DAD and router solicitations. */
static int tap_disable_ipv6(const char *tap, struct husk_err *err)
{
	char path[96];
	snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/disable_ipv6", tap);
	_cleanup_fd_ int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT && access("/proc/sys/net/ipv6", F_OK) < 0)
			return 0; /* a kernel without IPv6 */
		return husk_err_sys(err, -errno, "%s: open %s", tap, path);
	}
	ssize_t n = write(fd, "1", 1);
	if (n != 1)
		return husk_err_sys(err, n < 0 ? -errno : -EIO, "%s: write %s", tap, path);
	return 0;
}

static int link_up_mtu(struct nl *nl, int ifindex, unsigned mtu)
{
	struct nlmsghdr *nlh = nl_msg(nl, RTM_NEWLINK, NLM_F_ACK);
	struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = ifindex;
	ifi->ifi_flags = IFF_UP;
	ifi->ifi_change = IFF_UP;
	mnl_attr_put_u32(nlh, IFLA_MTU, mtu);
	return nl_talk(nl, NULL, NULL);
}

static int qdisc_ingress(struct nl *nl, int ifindex, bool add)
{
	struct nlmsghdr *nlh = nl_msg(nl, add ? RTM_NEWQDISC : RTM_DELQDISC,
				      NLM_F_ACK | (add ? NLM_F_CREATE | NLM_F_EXCL : 0));
	struct tcmsg *tcm = mnl_nlmsg_put_extra_header(nlh, sizeof(*tcm));
	tcm->tcm_family = AF_UNSPEC;
	tcm->tcm_ifindex = ifindex;
	tcm->tcm_handle = TC_H_MAKE(TC_H_INGRESS, 0); /* ffff: */
	tcm->tcm_parent = TC_H_INGRESS;
	mnl_attr_put_strz(nlh, TCA_KIND, "ingress");
	return nl_talk(nl, NULL, NULL);
}

/* On from's ingress: u32 matching every packet (one key, mask 0), action
 * mirred egress redirect to `to`. */
static int filter_redirect(struct nl *nl, int from, int to)
{
	struct nlmsghdr *nlh = nl_msg(nl, RTM_NEWTFILTER, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
	struct tcmsg *tcm = mnl_nlmsg_put_extra_header(nlh, sizeof(*tcm));
	tcm->tcm_family = AF_UNSPEC;
	tcm->tcm_ifindex = from;
	tcm->tcm_handle = 0;
	tcm->tcm_parent = TC_H_MAKE(TC_H_INGRESS, 0);
	/* Priority 0: the kernel picks one (49152, as for tc); protocol all. */
	tcm->tcm_info = TC_H_MAKE(0, htons(ETH_P_ALL));
	mnl_attr_put_strz(nlh, TCA_KIND, "u32");

	struct nlattr *opts = mnl_attr_nest_start(nlh, TCA_OPTIONS);
	struct nlattr *acts = mnl_attr_nest_start(nlh, TCA_U32_ACT);
	struct nlattr *act = mnl_attr_nest_start(nlh, 1); /* action order 1 */
	mnl_attr_put_strz(nlh, TCA_ACT_KIND, "mirred");
	struct nlattr *aopts = mnl_attr_nest_start(nlh, TCA_ACT_OPTIONS);
	struct tc_mirred m = {
		.action = TC_ACT_STOLEN, /* "redirect": the packet goes, nothing else sees it */
		.eaction = TCA_EGRESS_REDIR,
		.ifindex = (__u32)to,
	};
	mnl_attr_put(nlh, TCA_MIRRED_PARMS, sizeof(m), &m);
	mnl_attr_nest_end(nlh, aopts);
	mnl_attr_nest_end(nlh, act);
	mnl_attr_nest_end(nlh, acts);

	/* struct tc_u32_sel ends in a flexible array of keys: one key, all
	 * zero ("match u8 0 0" at offset 0), terminal as tc makes it when an
	 * action follows. */
	unsigned char sel[sizeof(struct tc_u32_sel) + sizeof(struct tc_u32_key)];
	memset(sel, 0, sizeof(sel));
	struct tc_u32_sel s = { .flags = TC_U32_TERMINAL, .nkeys = 1 };
	memcpy(sel, &s, sizeof(s));
	mnl_attr_put(nlh, TCA_U32_SEL, sizeof(sel), sel);
	mnl_attr_nest_end(nlh, opts);
	return nl_talk(nl, NULL, NULL);
}

/* ---- attach and detach ---------------------------------------------------- */

int shim_netns_enter(const char *path, int *orig, struct husk_err *err)
{
	_cleanup_fd_ int target = open(path, O_RDONLY | O_CLOEXEC);
	if (target < 0)
		return husk_err_sys(err, -errno, "netns %s: open", path);
	/* thread-self: the shim is multithreaded and only this thread moves. */
	_cleanup_fd_ int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (self < 0)
		return husk_err_sys(err, -errno, "netns %s: open /proc/thread-self/ns/net", path);
	if (setns(target, CLONE_NEWNET) < 0)
		return husk_err_sys(err, -errno, "netns %s: setns", path);
	*orig = take_fd(&self);
	return 0;
}

void shim_netns_leave(int orig)
{
	/* A thread left in the pod's namespace would put whatever it does
	 * later (QEMU, sockets of other pods) there. With the fd in hand and
	 * the privilege just used, this fails only on a kernel bug. */
	if (setns(orig, CLONE_NEWNET) < 0) {
		shim_log_at("error", NULL, "restoring the thread's network namespace: %s",
			    strerror(errno));
		abort();
	}
	close(orig);
}

/* Inside the namespace: the interface's ingress qdisc if we added it (its
 * filters go with it), then the TAP (its qdisc and filters go with it). */
static void undo_if(struct nl *nl, struct shim_net_if *nif, int ifindex, bool qdisc)
{
	if (qdisc && nl) {
		int rc = qdisc_ingress(nl, ifindex, false);
		if (rc < 0 && rc != -ENOENT && rc != -EINVAL && rc != -ENODEV)
			shim_log_at("warning", NULL, "%s: removing the ingress qdisc: %s", nif->name,
				    strerror(-rc));
	}
	if (nif->tap_fd >= 0)
		close(nif->tap_fd);
	nif->tap_fd = -1;
	nif->tap[0] = '\0';
}

static int attach_if(struct nl *nl, struct shim_net_if *nif, size_t idx, int ifindex,
		     bool *qdisc, struct husk_err *err)
{
	int rc;
	/* Kata's naming; idx < SHIM_NET_IFS_MAX (the cast tells the compiler). */
	snprintf(nif->tap, sizeof(nif->tap), "tap%u_husk", (unsigned)(unsigned char)idx);
	rc = tap_open(nif->tap, &nif->tap_fd, err);
	if (rc < 0)
		return husk_err_wrap(err, "%s", nif->name);
	int tap_index = (int)if_nametoindex(nif->tap);
	if (!tap_index)
		return husk_err_sys(err, -errno, "%s: %s: if_nametoindex", nif->name, nif->tap);
	rc = tap_disable_ipv6(nif->tap, err);
	if (rc < 0)
		return husk_err_wrap(err, "%s", nif->name);
	rc = link_up_mtu(nl, tap_index, nif->mtu);
	if (rc < 0)
		return nl_err(err, nl, rc, nif->name, "bringing the tap up");

	rc = qdisc_ingress(nl, ifindex, true);
	if (rc < 0)
		return nl_err(err, nl, rc, nif->name, "adding the ingress qdisc");
	*qdisc = true;
	rc = qdisc_ingress(nl, tap_index, true);
	if (rc < 0)
		return nl_err(err, nl, rc, nif->name, "adding the tap's ingress qdisc");
	rc = filter_redirect(nl, ifindex, tap_index);
	if (rc < 0)
		return nl_err(err, nl, rc, nif->name, "adding the redirect to the tap");
	rc = filter_redirect(nl, tap_index, ifindex);
	if (rc < 0)
		return nl_err(err, nl, rc, nif->name, "adding the redirect from the tap");
	return 0;
}

static int attach_inside(struct shim_net *out, struct husk_err *err)
{
	_cleanup_nl_ struct nl *nl = NULL;
	int ifindex[SHIM_NET_IFS_MAX];
	bool qdisc[SHIM_NET_IFS_MAX] = { false };

	int rc = nl_open(&nl, err);
	if (rc < 0)
		return rc;
	rc = inspect(nl, out, ifindex, err);
	for (size_t i = 0; i < SHIM_NET_IFS_MAX; i++)
		out->ifs[i].tap_fd = -1;
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < out->n_ifs; i++) {
		rc = attach_if(nl, &out->ifs[i], i, ifindex[i], &qdisc[i], err);
		if (rc < 0) {
			for (size_t j = 0; j <= i; j++)
				undo_if(nl, &out->ifs[j], ifindex[j], qdisc[j]);
			return rc;
		}
	}
	return 0;
}

int shim_net_attach(const char *netns_path, struct shim_net *out, struct husk_err *err)
{
	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < SHIM_NET_IFS_MAX; i++)
		out->ifs[i].tap_fd = -1;
	int orig;
	int rc = shim_netns_enter(netns_path, &orig, err);
	if (rc < 0)
		return rc;
	rc = attach_inside(out, err);
	shim_netns_leave(orig);
	if (rc < 0) {
		husk_err_wrap(err, "netns %s", netns_path);
		memset(out, 0, sizeof(*out));
		for (size_t i = 0; i < SHIM_NET_IFS_MAX; i++)
			out->ifs[i].tap_fd = -1;
	}
	return rc;
}

void shim_net_detach(const char *netns_path, struct shim_net *net)
{
	bool any = false;
	for (size_t i = 0; i < net->n_ifs && i < SHIM_NET_IFS_MAX; i++)
		any |= net->ifs[i].tap[0] != '\0';
	struct husk_err err = { 0 };
	int orig = -1;
	/* A namespace already gone took the qdiscs with it. */
	if (any && netns_path && shim_netns_enter(netns_path, &orig, &err) == 0) {
		_cleanup_nl_ struct nl *nl = NULL;
		if (nl_open(&nl, &err) < 0)
			shim_log_at("warning", NULL, "netns %s: %s", netns_path, err.msg);
		for (size_t i = 0; i < net->n_ifs && i < SHIM_NET_IFS_MAX; i++) {
			struct shim_net_if *nif = &net->ifs[i];
			if (!nif->tap[0])
				continue;
			/* By name, in this namespace: the interface may be gone. */
			int ifindex = (int)if_nametoindex(nif->name);
			undo_if(nl, nif, ifindex, ifindex > 0);
		}
		shim_netns_leave(orig);
	}
	for (size_t i = 0; i < SHIM_NET_IFS_MAX; i++) {
		if (net->ifs[i].tap_fd >= 0)
			close(net->ifs[i].tap_fd);
		net->ifs[i].tap_fd = -1;
		net->ifs[i].tap[0] = '\0';
	}
}
