/* Unit test of the shim's pod networking (host-connector/shim/network.c) in
 * throwaway network namespaces made with `ip netns add`, as containerd's
 * CRI plugin and CNI's bridge plugin leave them:
 *   attach   eth0 (veth, MAC, MTU 1400, IPv4 /16, IPv6 /64, default routes
 *            both families and one more route): the description, the TAP
 *            (up, MTU 1400, IPv6 off), the tc objects compared with what tc
 *            itself makes, real frames both ways (TAP fd -> peer, peer ->
 *            TAP fd), then detach leaves nothing and is idempotent
 *   errors   a missing path, a path that is no network namespace
 *   empty    lo only: nothing described, nothing created
 *   refusals an interface down, too many interfaces, and a failure on the
 *            second interface that rolls back the first
 *   portfwd  the port-forward redirect (portfwd.c): a connection to any
 *            port on loopback in the namespace lands on the shim's
 *            listener with its original port; close leaves loopback
 *            refusing again; a namespace path that is not there is
 *            refused, naming it
 * Needs root, ip and tc (iproute2); skipped without root, failing otherwise.
 * Every namespace is deleted by the group teardown. */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <netinet/ether.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../host-connector/shim/network.h"
#include "../../host-connector/shim/portfwd.h"

static bool root;
static char ns_pod[32], ns_peer[32], ns_ref[32], ns_empty[32], ns_down[32], ns_many[32],
	ns_roll[32], ns_pf[32];
static char *const all_ns[] = { ns_pod, ns_peer, ns_ref, ns_empty, ns_down, ns_many, ns_roll, ns_pf };
static struct shim_net net; /* closed by the teardown if a test failed */

#define POD_MAC "0a:58:0a:58:00:05"
#define PEER_MAC "0a:58:0a:58:00:01"
#define ETHERTYPE_TEST 0x88b5 /* IEEE local experimental */

__attribute__((format(printf, 1, 2))) static int sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	int st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* Runs a command (stderr to /dev/null); its stdout into buf; exit status. */
__attribute__((format(printf, 3, 4))) static int capture(char *buf, size_t len, const char *fmt,
							 ...)
{
	char cmd[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	strncat(cmd, " 2>/dev/null", sizeof(cmd) - strlen(cmd) - 1);
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	size_t n = fread(buf, 1, len - 1, f);
	buf[n] = '\0';
	int st = pclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void must(int rc, const char *what)
{
	if (rc != 0)
		fail_msg("%s: exit %d", what, rc);
}

#define SH(...) must(sh(__VA_ARGS__), #__VA_ARGS__)

static const char *ns_path(const char *name)
{
	static char p[4][64];
	static int slot;
	slot = (slot + 1) % 4;
	snprintf(p[slot], sizeof(p[slot]), "/run/netns/%s", name);
	return p[slot];
}

static ino_t thread_netns(void)
{
	struct stat st;
	assert_int_equal(stat("/proc/thread-self/ns/net", &st), 0);
	return st.st_ino;
}

static int group_setup(void **state)
{
	(void)state;
	root = geteuid() == 0;
	if (!root)
		return 0;
	const char *sfx[] = { "pod", "peer", "ref", "empty", "down", "many", "roll", "pf" };
	for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
		snprintf(all_ns[i], 32, "husk-nt-%d-%s", (int)getpid(), sfx[i]);
		sh("ip netns del %s 2>/dev/null", all_ns[i]);
		if (sh("ip netns add %s", all_ns[i]) != 0)
			return -1;
	}
	for (size_t i = 0; i < SHIM_NET_IFS_MAX; i++)
		net.ifs[i].tap_fd = -1;
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	for (size_t i = 0; i < SHIM_NET_IFS_MAX; i++)
		if (net.ifs[i].tap_fd >= 0)
			close(net.ifs[i].tap_fd);
	if (!root)
		return 0;
	int bad = 0;
	for (size_t i = 0; i < sizeof(all_ns) / sizeof(all_ns[0]); i++)
		bad |= sh("ip netns del %s", all_ns[i]);
	return bad ? -1 : 0;
}

/* ---- helpers over the description ------------------------------------------ */

static const struct shim_net_addr *find_addr(const struct shim_net_if *nif, const char *addr)
{
	for (size_t i = 0; i < nif->n_addrs; i++)
		if (!strcmp(nif->addrs[i].addr, addr))
			return &nif->addrs[i];
	return NULL;
}

static void expect_route(const struct shim_net *n, int family, const char *dst, const char *gw,
			 const char *dev)
{
	for (size_t i = 0; i < n->n_routes; i++) {
		const struct shim_net_route *r = &n->routes[i];
		if (r->family == family && !strcmp(r->dst, dst) && !strcmp(r->gateway, gw) &&
		    !strcmp(r->dev, dev))
			return;
	}
	fail_msg("no route %s via %s dev %s", dst[0] ? dst : "default", gw, dev);
}

/* A packet socket on ifname inside the namespace `ns` (sockets stay in the
 * namespace they were made in; this thread comes back). */
static int packet_socket(const char *ns, const char *ifname)
{
	int orig = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	int target = open(ns_path(ns), O_RDONLY | O_CLOEXEC);
	assert_true(orig >= 0 && target >= 0);
	assert_int_equal(setns(target, CLONE_NEWNET), 0);
	int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
	int ifindex = (int)if_nametoindex(ifname);
	assert_int_equal(setns(orig, CLONE_NEWNET), 0);
	close(orig);
	close(target);
	assert_true(fd >= 0);
	assert_true(ifindex > 0);
	struct sockaddr_ll sll = { .sll_family = AF_PACKET,
				   .sll_protocol = htons(ETH_P_ALL),
				   .sll_ifindex = ifindex };
	assert_int_equal(bind(fd, (struct sockaddr *)&sll, sizeof(sll)), 0);
	return fd;
}

static size_t make_frame(unsigned char *buf, const char *dst, const char *src, const char *text)
{
	struct ether_header *eh = (struct ether_header *)buf;
	assert_non_null(ether_aton_r(dst, (struct ether_addr *)eh->ether_dhost));
	assert_non_null(ether_aton_r(src, (struct ether_addr *)eh->ether_shost));
	eh->ether_type = htons(ETHERTYPE_TEST);
	size_t n = strlen(text);
	memcpy(buf + sizeof(*eh), text, n);
	/* Ethernet's minimum frame, padded. */
	size_t len = sizeof(*eh) + n;
	if (len < 60) {
		memset(buf + len, 0, 60 - len);
		len = 60;
	}
	return len;
}

/* Reads frames from fd until one carries `text` (other traffic, such as
 * the peer's IPv6 neighbour discovery, is passed over); fails after 3 s. */
static void expect_frame(int fd, const char *text, const char *where)
{
	size_t n = strlen(text);
	for (int i = 0; i < 200; i++) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int r = poll(&p, 1, 3000);
		if (r == 0)
			break;
		assert_true(r > 0);
		unsigned char buf[2048];
		ssize_t got = read(fd, buf, sizeof(buf));
		assert_true(got >= 0);
		const struct ether_header *eh = (const struct ether_header *)buf;
		if ((size_t)got >= sizeof(*eh) + n && eh->ether_type == htons(ETHERTYPE_TEST) &&
		    !memcmp(buf + sizeof(*eh), text, n))
			return;
	}
	fail_msg("frame \"%s\" never arrived %s", text, where);
}

static void expect_no_husk_links(const char *ns)
{
	char out[8192];
	must(capture(out, sizeof(out), "ip -n %s -o link show", ns), "ip link show");
	if (strstr(out, "_husk"))
		fail_msg("a tap is left in %s:\n%s", ns, out);
}

static void expect_no_ingress(const char *ns, const char *dev)
{
	char out[4096];
	must(capture(out, sizeof(out), "ip netns exec %s tc qdisc show dev %s ingress", ns, dev),
	     "tc qdisc show");
	if (out[0])
		fail_msg("%s/%s still has an ingress qdisc:\n%s", ns, dev, out);
}

/* ---- attach, traffic, detach ----------------------------------------------- */

static void test_attach(void **state)
{
	(void)state;
	if (!root)
		skip();
	const char *pod = ns_pod, *peer = ns_peer, *ref = ns_ref;
	/* What CNI's bridge plugin leaves: the other end of the veth lives
	 * in the peer namespace here, standing in for the bridge. */
	SH("ip -n %s link add eth0 address " POD_MAC " mtu 1400 type veth peer name hpeer0 "
	   "netns %s",
	   pod, peer);
	SH("ip -n %s link set hpeer0 address " PEER_MAC " mtu 1400 up", peer);
	SH("ip -n %s addr add 10.88.0.5/16 dev eth0", pod);
	SH("ip -n %s addr add fd00:88::5/64 dev eth0 nodad", pod);
	SH("ip -n %s link set eth0 up", pod);
	SH("ip -n %s route add default via 10.88.0.1", pod);
	SH("ip -n %s route add 10.99.0.0/16 via 10.88.0.1 dev eth0", pod);
	SH("ip -n %s -6 route add default via fd00:88::1", pod);
	/* What must be left out is there: fe80:: address and routes, the
	 * kernel's prefix routes. */
	char out[8192];
	must(capture(out, sizeof(out), "ip -n %s -6 addr show dev eth0 scope link", pod), "ip addr");
	assert_non_null(strstr(out, "fe80::"));
	must(capture(out, sizeof(out), "ip -n %s -6 route show table all", pod), "ip route");
	assert_non_null(strstr(out, "fe80::/64"));

	ino_t before = thread_netns();
	struct husk_err err = { 0 };
	int rc = shim_net_attach(ns_path(pod), &net, &err);
	if (rc != 0)
		fail_msg("attach: %d %s", rc, err.msg);
	assert_true(thread_netns() == before);

	assert_int_equal(net.n_ifs, 1);
	struct shim_net_if *nif = &net.ifs[0];
	assert_string_equal(nif->name, "eth0");
	assert_string_equal(nif->mac, POD_MAC);
	assert_int_equal(nif->mtu, 1400);
	assert_int_equal(nif->n_addrs, 2);
	const struct shim_net_addr *a4 = find_addr(nif, "10.88.0.5");
	const struct shim_net_addr *a6 = find_addr(nif, "fd00:88::5");
	assert_non_null(a4);
	assert_non_null(a6);
	assert_int_equal(a4->family, AF_INET);
	assert_int_equal(a4->prefix_len, 16);
	assert_int_equal(a6->family, AF_INET6);
	assert_int_equal(a6->prefix_len, 64);
	/* Exactly these: no kernel prefix route, nothing fe80:: or ff00::. */
	for (size_t i = 0; i < net.n_routes; i++)
		print_message("route %d %s via %s dev %s\n", net.routes[i].family, net.routes[i].dst,
			      net.routes[i].gateway, net.routes[i].dev);
	assert_int_equal(net.n_routes, 3);
	expect_route(&net, AF_INET, "", "10.88.0.1", "eth0");
	expect_route(&net, AF_INET, "10.99.0.0/16", "10.88.0.1", "eth0");
	expect_route(&net, AF_INET6, "", "fd00:88::1", "eth0");
	assert_string_equal(nif->tap, "tap0_husk");
	assert_true(nif->tap_fd >= 0);
	for (size_t i = 1; i < SHIM_NET_IFS_MAX; i++)
		assert_int_equal(net.ifs[i].tap_fd, -1);

	/* The tap: in the pod's namespace only, up, the interface's MTU, no
	 * IPv6 (disabled through that namespace's /proc/sys). */
	must(capture(out, sizeof(out), "ip -n %s -o link show tap0_husk", pod), "tap missing");
	if (!strstr(out, ",UP") || !strstr(out, "mtu 1400 "))
		fail_msg("tap0_husk: %s", out);
	assert_int_not_equal(access("/proc/sys/net/ipv6/conf/tap0_husk", F_OK), 0);
	must(capture(out, sizeof(out), "ip netns exec %s cat /proc/sys/net/ipv6/conf/tap0_husk/disable_ipv6",
		     pod), "disable_ipv6");
	assert_string_equal(out, "1\n");
	must(capture(out, sizeof(out), "ip -n %s -6 addr show dev tap0_husk", pod), "ip addr");
	assert_string_equal(out, "");

	/* The tc objects are those tc makes from the commands in network.c
	 * (same order, so the same action indexes). */
	SH("ip -n %s link add eth0 type veth peer name peer0", ref);
	SH("ip -n %s tuntap add tap0_husk mode tap", ref);
	SH("ip netns exec %s tc qdisc add dev eth0 ingress", ref);
	SH("ip netns exec %s tc qdisc add dev tap0_husk ingress", ref);
	SH("ip netns exec %s tc filter add dev eth0 parent ffff: protocol all u32 match u8 0 0 "
	   "action mirred egress redirect dev tap0_husk",
	   ref);
	SH("ip netns exec %s tc filter add dev tap0_husk parent ffff: protocol all u32 match u8 0 0 "
	   "action mirred egress redirect dev eth0",
	   ref);
	const char *shows[] = { "qdisc show dev eth0 ingress", "qdisc show dev tap0_husk ingress",
				"filter show dev eth0 ingress", "filter show dev tap0_husk ingress" };
	for (size_t i = 0; i < 4; i++) {
		char want[4096];
		must(capture(want, sizeof(want), "ip netns exec %s tc %s", ref, shows[i]), shows[i]);
		must(capture(out, sizeof(out), "ip netns exec %s tc %s", pod, shows[i]), shows[i]);
		print_message("tc %s:\n%s", shows[i], out);
		assert_true(want[0] != '\0');
		assert_string_equal(out, want);
	}
	must(capture(out, sizeof(out), "ip netns exec %s tc filter show dev eth0 ingress", pod), "tc");
	assert_non_null(strstr(out, "protocol all"));
	assert_non_null(strstr(out, "match 00000000/00000000 at 0"));
	assert_non_null(strstr(out, "mirred (Egress Redirect to device tap0_husk) stolen"));
	must(capture(out, sizeof(out), "ip netns exec %s tc filter show dev tap0_husk ingress", pod),
	     "tc");
	assert_non_null(strstr(out, "mirred (Egress Redirect to device eth0) stolen"));

	/* Real frames: written into the tap fd (the guest sending) they leave
	 * through eth0 and reach the peer; sent by the peer they come out of
	 * the tap fd (the guest receiving). */
	int ps = packet_socket(peer, "hpeer0");
	unsigned char frame[128];
	char text[64];
	snprintf(text, sizeof(text), "husk tap->peer %d", (int)getpid());
	size_t len = make_frame(frame, "ff:ff:ff:ff:ff:ff", POD_MAC, text);
	assert_int_equal(write(nif->tap_fd, frame, len), (ssize_t)len);
	expect_frame(ps, text, "at the peer from the tap");
	snprintf(text, sizeof(text), "husk peer->tap %d", (int)getpid());
	len = make_frame(frame, POD_MAC, PEER_MAC, text);
	assert_int_equal(send(ps, frame, len, 0), (ssize_t)len);
	expect_frame(nif->tap_fd, text, "at the tap from the peer");
	close(ps);

	shim_net_detach(ns_path(pod), &net);
	assert_true(thread_netns() == before);
	assert_int_equal(nif->tap_fd, -1);
	expect_no_husk_links(pod);
	expect_no_ingress(pod, "eth0");
	must(capture(out, sizeof(out), "ip netns exec %s tc filter show dev eth0 ingress", pod), "tc");
	assert_string_equal(out, "");
	/* The interface keeps its addresses; detach again is a no-op. */
	must(capture(out, sizeof(out), "ip -n %s addr show dev eth0", pod), "ip addr");
	assert_non_null(strstr(out, "10.88.0.5/16"));
	shim_net_detach(ns_path(pod), &net);
	assert_true(thread_netns() == before);

	/* And a second attach finds the namespace as new. */
	rc = shim_net_attach(ns_path(pod), &net, &err);
	if (rc != 0)
		fail_msg("attach again: %d %s", rc, err.msg);
	assert_int_equal(net.n_ifs, 1);
	assert_int_equal(net.n_routes, 3);
	shim_net_detach(ns_path(pod), &net);
	expect_no_husk_links(pod);
	expect_no_ingress(pod, "eth0");
}

/* ---- errors ------------------------------------------------------------------ */

static void test_bad_paths(void **state)
{
	(void)state;
	if (!root)
		skip();
	ino_t before = thread_netns();
	struct husk_err err = { 0 };
	char missing[64];
	snprintf(missing, sizeof(missing), "/run/netns/husk-nt-%d-missing", (int)getpid());
	assert_int_equal(shim_net_attach(missing, &net, &err), -ENOENT);
	print_message("%s\n", err.msg);
	assert_non_null(strstr(err.msg, missing));
	assert_int_equal(net.n_ifs, 0);
	assert_int_equal(net.ifs[0].tap_fd, -1);

	/* A namespace file of another kind: setns refuses it. */
	husk_err_clear(&err);
	assert_int_equal(shim_net_attach("/proc/self/ns/uts", &net, &err), -EINVAL);
	print_message("%s\n", err.msg);
	assert_non_null(strstr(err.msg, "/proc/self/ns/uts"));
	assert_true(thread_netns() == before);
	/* Detach of a namespace that is gone: nothing to do, nothing fails. */
	shim_net_detach(missing, &net);
}

static void test_empty(void **state)
{
	(void)state;
	if (!root)
		skip();
	struct husk_err err = { 0 };
	int rc = shim_net_attach(ns_path(ns_empty), &net, &err);
	if (rc != 0)
		fail_msg("attach: %d %s", rc, err.msg);
	assert_int_equal(net.n_ifs, 0);
	assert_int_equal(net.n_routes, 0);
	for (size_t i = 0; i < SHIM_NET_IFS_MAX; i++)
		assert_int_equal(net.ifs[i].tap_fd, -1);
	char out[4096];
	must(capture(out, sizeof(out), "ip -n %s -o link show", ns_empty), "ip link");
	assert_non_null(strstr(out, ": lo:"));
	int lines = 0;
	for (const char *c = out; *c; c++)
		lines += *c == '\n';
	assert_int_equal(lines, 1);
	must(capture(out, sizeof(out), "ip netns exec %s tc qdisc show dev lo ingress", ns_empty),
	     "tc");
	assert_string_equal(out, "");
	shim_net_detach(ns_path(ns_empty), &net);
}

static int ifindex_in(const char *ns, const char *dev)
{
	char out[1024];
	must(capture(out, sizeof(out), "ip -n %s -o link show %s", ns, dev), "ip link");
	return atoi(out);
}

static void attach_fails(const char *ns, int want_rc, const char *want1, const char *want2)
{
	struct husk_err err = { 0 };
	ino_t before = thread_netns();
	int rc = shim_net_attach(ns_path(ns), &net, &err);
	print_message("%s: %d %s\n", ns, rc, err.msg);
	assert_int_equal(rc, want_rc);
	assert_non_null(strstr(err.msg, ns_path(ns)));
	assert_non_null(strstr(err.msg, want1));
	assert_non_null(strstr(err.msg, want2));
	assert_true(thread_netns() == before);
	assert_int_equal(net.n_ifs, 0);
	for (size_t i = 0; i < SHIM_NET_IFS_MAX; i++)
		assert_int_equal(net.ifs[i].tap_fd, -1);
	expect_no_husk_links(ns);
}

static void test_refusals(void **state)
{
	(void)state;
	if (!root)
		skip();
	/* An interface that is down. */
	SH("ip -n %s link add d0 type veth peer name d1", ns_down);
	attach_fails(ns_down, -ENETDOWN, ": d", "not up");

	/* Six interfaces besides lo. */
	for (int i = 0; i < 3; i++) {
		SH("ip -n %s link add m%d type veth peer name n%d", ns_many, i, i);
		SH("ip -n %s link set m%d up && ip -n %s link set n%d up", ns_many, i, ns_many, i);
	}
	attach_fails(ns_many, -E2BIG, "more than 4 interfaces", "");

	/* The second interface already has an ingress qdisc: attach fails
	 * there, and what it did on the first is undone; the qdisc it did not
	 * add stays. */
	SH("ip -n %s link add y0 type veth peer name y1", ns_roll);
	SH("ip -n %s link set y0 up && ip -n %s link set y1 up", ns_roll, ns_roll);
	const char *first = ifindex_in(ns_roll, "y0") < ifindex_in(ns_roll, "y1") ? "y0" : "y1";
	const char *second = first[1] == '0' ? "y1" : "y0";
	SH("ip netns exec %s tc qdisc add dev %s ingress", ns_roll, second);
	char want[32];
	snprintf(want, sizeof(want), ": %s: adding the ingress qdisc", second);
	attach_fails(ns_roll, -EEXIST, want, "File exists");
	expect_no_ingress(ns_roll, first);
	char out[4096];
	must(capture(out, sizeof(out), "ip netns exec %s tc qdisc show dev %s ingress", ns_roll,
		     second),
	     "tc");
	assert_non_null(strstr(out, "qdisc ingress ffff:"));
}

/* ---- port forwarding ------------------------------------------------------- */

/* A blocking connect from inside `ns` (this thread enters and leaves). */
static int connect_in(const char *ns, int family, unsigned port, int *fd_out)
{
	struct husk_err err = { 0 };
	int orig;
	assert_int_equal(shim_netns_enter(ns_path(ns), &orig, &err), 0);
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int rc = 0;
	if (family == AF_INET) {
		struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
					   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		rc = connect(fd, (struct sockaddr *)&sin, sizeof(sin));
	} else {
		struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6,
					     .sin6_port = htons((uint16_t)port),
					     .sin6_addr = IN6ADDR_LOOPBACK_INIT };
		rc = connect(fd, (struct sockaddr *)&sin6, sizeof(sin6));
	}
	rc = rc < 0 ? -errno : 0;
	shim_netns_leave(orig);
	if (rc < 0)
		close(fd);
	else
		*fd_out = fd;
	return rc;
}

/* Accepts on the listener; the connection's original port (0: none). */
static unsigned accept_original(int lfd, int family)
{
	struct pollfd p = { .fd = lfd, .events = POLLIN };
	assert_int_equal(poll(&p, 1, 5000), 1);
	int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	assert_true(c >= 0);
	struct sockaddr_storage ss = { 0 };
	socklen_t len = sizeof(ss);
	/* SO_ORIGINAL_DST and IP6T_SO_ORIGINAL_DST are both 80. */
	int rc = getsockopt(c, family == AF_INET ? SOL_IP : SOL_IPV6, 80, &ss, &len);
	close(c);
	return rc < 0 ? 0 : ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void test_portfwd(void **state)
{
	(void)state;
	if (!root)
		skip();
	must(sh("ip -n %s link set lo up", ns_pf), "lo up");
	ino_t before = thread_netns();
	struct shim_portfwd pf;
	struct husk_err err = { 0 };
	assert_int_equal(shim_portfwd_open(ns_path(ns_pf), &pf, &err), 0);
	assert_int_equal(thread_netns(), before);
	assert_true(pf.listen_fd[0] >= 0);
	/* lo has ::1 unless the host has IPv6 off */
	bool v6 = access("/proc/sys/net/ipv6", F_OK) == 0;
	assert_int_equal(pf.listen_fd[1] >= 0, v6);
	assert_true(pf.table);
	assert_true(pf.port > 0);

	/* Any port, either family, lands on the listener with its port. */
	int fd;
	assert_int_equal(connect_in(ns_pf, AF_INET, 8080, &fd), 0);
	assert_int_equal(accept_original(pf.listen_fd[0], AF_INET), 8080);
	close(fd);
	if (v6) {
		assert_int_equal(connect_in(ns_pf, AF_INET6, 9, &fd), 0);
		assert_int_equal(accept_original(pf.listen_fd[1], AF_INET6), 9);
		close(fd);
	}
	/* The listener's own port: not redirected; conntrack gives the port
	 * itself (portfwd.c takes the listener's port without an entry). */
	assert_int_equal(connect_in(ns_pf, AF_INET, pf.port, &fd), 0);
	assert_int_equal(accept_original(pf.listen_fd[0], AF_INET), pf.port);
	close(fd);

	/* Closed: the redirect and the listeners are gone. */
	shim_portfwd_close(ns_path(ns_pf), &pf);
	assert_int_equal(pf.listen_fd[0], -1);
	assert_false(pf.table);
	assert_int_equal(thread_netns(), before);
	assert_int_equal(connect_in(ns_pf, AF_INET, 8080, &fd), -ECONNREFUSED);
	if (v6)
		assert_int_equal(connect_in(ns_pf, AF_INET6, 9, &fd), -ECONNREFUSED);
	shim_portfwd_close(ns_path(ns_pf), &pf); /* idempotent */

	/* Opened again after a close: a fresh table. */
	assert_int_equal(shim_portfwd_open(ns_path(ns_pf), &pf, &err), 0);
	assert_int_equal(connect_in(ns_pf, AF_INET, 8081, &fd), 0);
	assert_int_equal(accept_original(pf.listen_fd[0], AF_INET), 8081);
	close(fd);
	shim_portfwd_close(ns_path(ns_pf), &pf);

	/* A path that is not there. */
	err = (struct husk_err){ 0 };
	assert_int_equal(shim_portfwd_open("/run/netns/husk-no-such-ns", &pf, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "husk-no-such-ns"));
	assert_int_equal(pf.listen_fd[0], -1);
	assert_int_equal(pf.listen_fd[1], -1);
	assert_false(pf.table);
	assert_int_equal(thread_netns(), before);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_attach),
		cmocka_unit_test(test_bad_paths),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_portfwd),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
