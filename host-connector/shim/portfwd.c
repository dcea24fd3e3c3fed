/* kubectl port-forward into a pod's VM (portfwd.h). The redirect is
 * written in nft's language and applied with libnftables, in one batch. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nftables/libnftables.h>

#include "husk.h"
#include "husk/cleanup.h"
#include "husk/sock.h"
#include "log.h"
#include "network.h"
#include "portfwd.h"
#include "ttrpc/loop.h"
#include "ttrpc/relay.h"

/* <linux/netfilter_ipv4.h> and <linux/netfilter_ipv6/ip6_tables.h> name
 * them; those headers fight <netinet/in.h>. */
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#define IP6T_SO_ORIGINAL_DST 80

#define PF_TABLE "husk_portforward"
#define PF_AGENT_PORT 1027
#define PF_ANSWER_MAX 12 /* "-2147483648\n" */

enum pf_phase { PF_CONNECTING, PF_ASKING, PF_SPLICED };

struct pf_conn {
	struct shim_portfwd *pf;
	struct pf_conn *next;
	enum pf_phase phase;
	int client;		/* accepted in the pod's namespace */
	int spliced_client;	/* the same, once the splice owns it */
	struct husk_vm_conn vc; /* to the agent; vc.fd -1 once spliced */
	struct ev_io *io;	/* on vc.fd */
	int io_fd;
	unsigned port;
	size_t len;
	char answer[PF_ANSWER_MAX + 1];
	struct ev_splice *splice;
};

void shim_portfwd_init(struct shim_portfwd *pf)
{
	*pf = (struct shim_portfwd){ .listen_fd = { -1, -1 } };
}

/* ---- in the namespace (worker) ---- */

static int nft_apply(const char *cmds, struct husk_err *err)
{
	struct nft_ctx *nft = nft_ctx_new(NFT_CTX_DEFAULT);
	if (!nft)
		return husk_err_set(err, -ENOMEM, "nftables: no context");
	nft_ctx_buffer_output(nft);
	nft_ctx_buffer_error(nft);
	int rc = nft_run_cmd_from_buffer(nft, cmds);
	if (rc != 0) {
		const char *e = nft_ctx_get_error_buffer(nft);
		size_t n = e ? strlen(e) : 0;
		while (n && e[n - 1] == '\n')
			n--;
		husk_err_set(err, -EIO, "nftables: %.*s", (int)n, e ? e : "failed");
	}
	nft_ctx_free(nft);
	return rc != 0 ? -EIO : 0;
}

/* A listening TCP socket on loopback; port 0 picks one. */
static int listen_loopback(int family, unsigned *port, struct husk_err *err)
{
	_cleanup_fd_ int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return husk_err_sys(err, -errno, "socket");
	if (family == AF_INET6) {
		int on = 1;
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
	}
	struct sockaddr_storage ss;
	socklen_t len = husk_loopback_addr(family, *port, &ss);
	if (bind(fd, (struct sockaddr *)&ss, len) < 0)
		return husk_err_sys(err, -errno, "bind %s port %u",
				    family == AF_INET ? "127.0.0.1" : "::1", *port);
	if (listen(fd, SOMAXCONN) < 0)
		return husk_err_sys(err, -errno, "listen");
	len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return husk_err_sys(err, -errno, "getsockname");
	*port = ntohs(((struct sockaddr_in *)&ss)->sin_port); /* same offset in sin6 */
	return take_fd(&fd);
}

static int open_inside(struct shim_portfwd *pf, struct husk_err *err)
{
	unsigned port = 0;
	int rc = listen_loopback(AF_INET, &port, err);
	if (rc < 0)
		return rc;
	pf->listen_fd[0] = rc;
	pf->port = port;
	/* Without IPv6 in the namespace, IPv4 alone. */
	struct husk_err e6 = { 0 };
	rc = listen_loopback(AF_INET6, &port, &e6);
	if (rc >= 0)
		pf->listen_fd[1] = rc;
	else if (rc != -EADDRNOTAVAIL && rc != -EAFNOSUPPORT)
		return husk_err_set(err, rc, "%s", e6.msg);
	/* One batch: a stale table (a shim before us) goes first. */
	char cmds[1024];
	int n = snprintf(cmds, sizeof(cmds),
			 "add table inet " PF_TABLE "\n"
			 "delete table inet " PF_TABLE "\n"
			 "add table inet " PF_TABLE "\n"
			 "add chain inet " PF_TABLE
			 " output { type nat hook output priority -100; policy accept; }\n"
			 "add rule inet " PF_TABLE
			 " output ip daddr 127.0.0.0/8 tcp dport != %u redirect to :%u\n",
			 pf->port, pf->port);
	if (pf->listen_fd[1] >= 0)
		snprintf(cmds + n, sizeof(cmds) - (size_t)n,
			 "add rule inet " PF_TABLE " output ip6 daddr ::1 tcp dport != %u redirect to :%u\n",
			 pf->port, pf->port);
	if ((rc = nft_apply(cmds, err)) < 0)
		return rc;
	pf->table = true;
	return 0;
}

static void close_listeners(struct shim_portfwd *pf)
{
	for (int i = 0; i < 2; i++) {
		if (pf->listen_fd[i] >= 0)
			close(pf->listen_fd[i]);
		pf->listen_fd[i] = -1;
	}
}

int shim_portfwd_open(const char *netns_path, struct shim_portfwd *pf, struct husk_err *err)
{
	shim_portfwd_init(pf);
	int orig;
	int rc = shim_netns_enter(netns_path, &orig, err);
	if (rc < 0)
		return rc;
	rc = open_inside(pf, err);
	shim_netns_leave(orig);
	if (rc < 0) {
		close_listeners(pf);
		shim_portfwd_init(pf);
		return husk_err_wrap(err, "port forwarding in %s", netns_path);
	}
	return 0;
}

void shim_portfwd_close(const char *netns_path, struct shim_portfwd *pf)
{
	close_listeners(pf);
	if (!pf->table)
		return;
	pf->table = false;
	struct husk_err err = { 0 };
	int orig;
	/* A namespace already gone took the table with it. */
	if (!netns_path || shim_netns_enter(netns_path, &orig, &err) < 0)
		return;
	if (nft_apply("delete table inet " PF_TABLE "\n", &err) < 0)
		shim_log_at("warning", NULL, "netns %s: removing the port-forward redirect: %s",
			    netns_path, err.msg);
	shim_netns_leave(orig);
}

/* ---- connections (loop) ---- */

static void conn_unlink(struct pf_conn *c)
{
	for (struct pf_conn **pp = &c->pf->conns; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			return;
		}
}

/* `reset`: the client sees a reset, so containerd reports an error (also
 * for a relayed connection the VM's end cut short). */
static void conn_free(struct pf_conn *c, bool reset)
{
	conn_unlink(c);
	ev_io_del(c->io);
	if (c->splice) {
		if (reset)
			setsockopt(c->spliced_client, SOL_SOCKET, SO_LINGER,
				   &(struct linger){ .l_onoff = 1, .l_linger = 0 },
				   sizeof(struct linger));
		ev_splice_free(c->splice);
	}
	if (c->vc.fd >= 0) {
		if (c->phase == PF_CONNECTING)
			husk_vm_connect_abort(&c->vc);
		else
			close(c->vc.fd);
	}
	if (c->client >= 0) {
		if (reset)
			setsockopt(c->client, SOL_SOCKET, SO_LINGER,
				   &(struct linger){ .l_onoff = 1, .l_linger = 0 },
				   sizeof(struct linger));
		close(c->client);
	}
	free(c);
}

static void on_splice_done(void *data, int rc)
{
	(void)rc; /* a reset is the peers' business */
	struct pf_conn *c = data;
	c->splice = NULL;
	c->client = c->vc.fd = -1;
	conn_free(c, false);
}

static void on_agent(struct ev_io *io, int fd, uint32_t events, void *data);

static int watch(struct pf_conn *c, uint32_t events)
{
	if (c->io && c->io_fd == c->vc.fd)
		return ev_io_set_events(c->io, events);
	ev_io_del(c->io);
	c->io = NULL;
	c->io_fd = c->vc.fd;
	return ev_io_add(c->pf->loop, c->vc.fd, events, on_agent, c, &c->io, NULL);
}

static void splice_up(struct pf_conn *c)
{
	ev_io_del(c->io);
	c->io = NULL;
	struct husk_err err = { 0 };
	int a = c->client, b = c->vc.fd;
	c->spliced_client = a;
	c->client = c->vc.fd = -1;
	c->phase = PF_SPLICED;
	if (ev_splice_new(c->pf->loop, a, b, on_splice_done, c, &c->splice, &err) < 0) {
		shim_log("port forward to guest port %u: %s", c->port, err.msg);
		conn_free(c, false); /* the splice closed both */
	}
}

/* The agent's answer: "0\n", or the errno of its connect. */
static void read_answer(struct pf_conn *c)
{
	for (;;) {
		char ch;
		ssize_t n = recv(c->vc.fd, &ch, 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			shim_log("port forward to guest port %u: the agent closed the connection",
				 c->port);
			conn_free(c, true);
			return;
		}
		if (ch != '\n') {
			if (c->len < PF_ANSWER_MAX)
				c->answer[c->len++] = ch;
			continue;
		}
		c->answer[c->len] = '\0';
		char *end;
		long code = strtol(c->answer, &end, 10);
		bool digits = c->len && strspn(c->answer, "0123456789") == c->len && !*end;
		if (digits && code == 0) {
			splice_up(c);
			return;
		}
		shim_log("port forward to guest port %u: %s", c->port,
			 digits && code > 0 && code < 4096 ? strerror((int)code)
							    : "a bad answer from the agent");
		conn_free(c, true);
		return;
	}
}

static void on_agent(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io, (void)fd, (void)events;
	struct pf_conn *c = data;
	if (c->phase == PF_ASKING) {
		read_answer(c);
		return;
	}
	struct husk_err err = { 0 };
	int rc = husk_vm_connect_step(&c->vc, &err);
	if (rc == 0) {
		if (watch(c, (uint32_t)c->vc.events) < 0)
			conn_free(c, true);
		return;
	}
	if (rc < 0) {
		/* The step closed the fd: its watch goes first. */
		ev_io_del(c->io);
		c->io = NULL;
		c->vc.fd = -1;
		shim_log("port forward to guest port %u: %s", c->port, err.msg);
		conn_free(c, true);
		return;
	}
	char line[16];
	int n = snprintf(line, sizeof(line), "%u\n", c->port);
	c->phase = PF_ASKING;
	/* The first bytes on a fresh connection: the buffer takes them. */
	if (send(c->vc.fd, line, (size_t)n, MSG_NOSIGNAL) != n || watch(c, EPOLLIN) < 0) {
		shim_log("port forward to guest port %u: the agent's connection broke", c->port);
		conn_free(c, true);
	}
}

/* The port the client dialed: the redirect's original destination, or ours
 * for a client that dialed it directly (nothing else listens there). */
static unsigned original_port(const struct shim_portfwd *pf, int fd, int family)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t len = sizeof(ss);
	int rc = family == AF_INET ? getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &ss, &len)
				   : getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &ss, &len);
	if (rc < 0)
		return pf->port;
	return ntohs(((struct sockaddr_in *)&ss)->sin_port); /* same offset in sin6 */
}

static void on_accept(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io, (void)events;
	struct shim_portfwd *pf = data;
	int family = fd == pf->listen_fd[0] ? AF_INET : AF_INET6;
	for (;;) {
		int cl = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cl < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN)
				shim_log("port forward: accept: %s", strerror(errno));
			return;
		}
		struct pf_conn *c = calloc(1, sizeof(*c));
		if (!c) {
			close(cl);
			continue;
		}
		*c = (struct pf_conn){ .pf = pf, .client = cl, .vc = { .fd = -1 }, .io_fd = -1,
				       .port = original_port(pf, cl, family) };
		c->next = pf->conns;
		pf->conns = c;
		struct husk_err err = { 0 };
		if (husk_vm_connect_start(pf->vm, PF_AGENT_PORT, &c->vc, &err) < 0) {
			c->vc.fd = -1;
			shim_log("port forward to guest port %u: %s", c->port, err.msg);
			conn_free(c, true);
			continue;
		}
		if (watch(c, (uint32_t)c->vc.events) < 0)
			conn_free(c, true);
	}
}

int shim_portfwd_start(struct shim_portfwd *pf, struct ev_loop *loop, struct husk_vm *vm,
		       struct husk_err *err)
{
	pf->loop = loop;
	pf->vm = vm;
	for (int i = 0; i < 2; i++) {
		if (pf->listen_fd[i] < 0)
			continue;
		int rc = ev_io_add(loop, pf->listen_fd[i], EPOLLIN, on_accept, pf, &pf->io[i], err);
		if (rc < 0) {
			shim_portfwd_stop(pf);
			return rc;
		}
	}
	return 0;
}

void shim_portfwd_stop(struct shim_portfwd *pf)
{
	for (int i = 0; i < 2; i++) {
		ev_io_del(pf->io[i]);
		pf->io[i] = NULL;
	}
	while (pf->conns)
		conn_free(pf->conns, true);
	close_listeners(pf);
	pf->vm = NULL;
}
