/* husk-probe: runs inside a container of a husk VM as an attacker would,
 * and tries to reach what only the host may reach: the agent's ttrpc port
 * (1024), the debug console (1026) and the stdio ports of other processes,
 * at CID 1 (the guest kernel's vsock loopback), at the guest's own CID and
 * at any other CID it is given. It decides nothing: it prints what it saw,
 * one line per fact, and the host judges (tests/security/probe_host.c).
 *
 *   husk-probe direct --cid N... --port P...
 *       one attempt per (cid, port), all at once. A connection is sent a
 *       shell command on 1026 (the debug console) and a ttrpc request
 *       (husk.sandbox.v1.Sandbox/GuestDetails) on any other port (1024, or
 *       wherever a test runs an agent), and what comes back is reported:
 *         cid 3: from /dev/vsock | cid unknown: <why>
 *         attempt cid=C port=P refused <errno name>
 *         attempt cid=C port=P connected reply=<bytes> [ttrpc-response] [shell]
 *         done attempts=A connected=N answered=M
 *   husk-probe race --cid N... --port P...
 *       the same attempts in rounds, one after another, until "stop" or
 *       EOF on stdin; connections it wins are held open (a stolen stdio
 *       port stays stolen). "sync K" on stdin is answered once K more
 *       rounds, all begun after it was read, are over: the host knows
 *       then that the probe tried while the ports it cares about were up.
 *         racing
 *         won cid=C port=P round=R
 *         synced rounds=K
 *         done attempts=A connected=N rounds=R
 *
 * The guest's own CID comes from IOCTL_VM_SOCKETS_GET_LOCAL_CID on
 * /dev/vsock where the container has it; CID 1 is always tried.
 * Exit status: 0 when nothing connected, 3 when something did, 2 on bad
 * usage or a local failure. Static (musl): a container has no libc. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/vm_sockets.h>

#include "husk/cleanup.h"

#define MAX_CIDS 8
#define MAX_PORTS 16
#define MAX_ATTEMPTS (MAX_CIDS * MAX_PORTS)
#define CONSOLE_PORT 1026
/* Hang guards only: the kernel resolves every connect by itself (reset at
 * once, or ETIMEDOUT after the socket's 2 s connect timeout). A reply is
 * waited for until the peer closes; the guard keeps a silent peer from
 * stalling the run, and such a peer is reported as connected anyway. */
#define CONNECT_GUARD_MS 60000
#define REPLY_GUARD_MS 120000

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	/* The host reads us line by line while we run. */
	fflush(stdout);
}

struct attempt {
	unsigned cid, port;
	int fd;
	int err;	/* 0: connected; else the errno of the refusal */
	bool pending;
};

static const char *errname(int e)
{
	switch (e) {
	case ECONNRESET: return "ECONNRESET";
	case ECONNREFUSED: return "ECONNREFUSED";
	case ETIMEDOUT: return "ETIMEDOUT";
	case ENETUNREACH: return "ENETUNREACH";
	case EHOSTUNREACH: return "EHOSTUNREACH";
	case ENODEV: return "ENODEV";
	case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
	case EAFNOSUPPORT: return "EAFNOSUPPORT";
	case EPERM: return "EPERM";
	case EACCES: return "EACCES";
	case EINVAL: return "EINVAL";
	case EBUSY: return "EBUSY";
	default: return "other";
	}
}

static void start_attempt(struct attempt *a)
{
	a->fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	a->pending = false;
	a->err = 0;
	if (a->fd < 0) {
		a->err = errno;
		return;
	}
	struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = a->cid, .svm_port = a->port };
	if (connect(a->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return;
	if (errno == EINPROGRESS) {
		a->pending = true;
		return;
	}
	a->err = errno;
	close(a->fd);
	a->fd = -1;
}

/* Starts every attempt at once and waits until each connected or failed;
 * an attempt still unresolved at the guard counts as connected (whatever
 * holds it open is not a refusal). */
static void run_attempts(struct attempt *at, size_t n)
{
	for (size_t i = 0; i < n; i++)
		start_attempt(&at[i]);
	struct pollfd p[MAX_ATTEMPTS];
	for (;;) {
		size_t np = 0;
		for (size_t i = 0; i < n; i++)
			p[i] = (struct pollfd){ .fd = at[i].pending ? at[i].fd : -1, .events = POLLOUT };
		for (size_t i = 0; i < n; i++)
			np += at[i].pending;
		if (np == 0)
			return;
		int r = poll(p, n, CONNECT_GUARD_MS);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			for (size_t i = 0; i < n; i++)
				at[i].pending = false; /* guard: left open, reported connected */
			return;
		}
		for (size_t i = 0; i < n; i++) {
			if (!at[i].pending || !p[i].revents)
				continue;
			at[i].pending = false;
			int soerr = 0;
			socklen_t len = sizeof(soerr);
			if (getsockopt(at[i].fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
				soerr = errno;
			if (soerr) {
				at[i].err = soerr;
				close(at[i].fd);
				at[i].fd = -1;
			}
		}
	}
}

/* A ttrpc frame (10-byte big-endian header, then a protobuf ttrpc.Request)
 * calling husk.sandbox.v1.Sandbox/GuestDetails with an empty request:
 * encoded by hand so that the probe needs nothing but libc. */
static size_t guest_details_frame(uint8_t *buf, size_t max)
{
	static const char service[] = "husk.sandbox.v1.Sandbox", method[] = "GuestDetails";
	size_t ls = sizeof(service) - 1, lm = sizeof(method) - 1;
	size_t body = 2 + ls + 2 + lm;
	if (10 + body > max)
		return 0;
	uint8_t *p = buf;
	*p++ = 0, *p++ = 0, *p++ = 0, *p++ = (uint8_t)body; /* length */
	*p++ = 0, *p++ = 0, *p++ = 0, *p++ = 1;		    /* stream id 1 */
	*p++ = 1;					    /* type: request */
	*p++ = 0;					    /* flags */
	*p++ = 0x0a, *p++ = (uint8_t)ls;		    /* field 1: service */
	memcpy(p, service, ls), p += ls;
	*p++ = 0x12, *p++ = (uint8_t)lm;		    /* field 2: method */
	memcpy(p, method, lm), p += lm;
	return (size_t)(p - buf);
}

/* Sends what an attacker would on `port` and collects the reply until the
 * peer closes (or the guard). Returns the bytes received. */
static size_t talk(int fd, unsigned port, char *reply, size_t max)
{
	int fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	uint8_t req[128];
	size_t n;
	bool ttrpc = port != CONSOLE_PORT;
	if (ttrpc) {
		n = guest_details_frame(req, sizeof(req));
	} else {
		static const char cmd[] = "echo probe-shell-$((6*7)); exit\n";
		memcpy(req, cmd, sizeof(cmd) - 1);
		n = sizeof(cmd) - 1;
	}
	(void)!send(fd, req, n, MSG_NOSIGNAL);
	size_t got = 0;
	while (got < max) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int r = poll(&p, 1, REPLY_GUARD_MS);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		ssize_t k = recv(fd, reply + got, max - got, 0);
		if (k <= 0)
			break;
		got += (size_t)k;
		/* A whole ttrpc response is enough to know it answered. */
		if (ttrpc && got >= 10 &&
		    got >= 10 + (((size_t)(uint8_t)reply[2] << 8) | (uint8_t)reply[3]))
			break;
	}
	return got;
}

static bool has_word(const char *buf, size_t len, const char *word)
{
	size_t wl = strlen(word);
	for (size_t i = 0; i + wl <= len; i++)
		if (memcmp(buf + i, word, wl) == 0)
			return true;
	return false;
}

static int cmd_direct(struct attempt *at, size_t n)
{
	run_attempts(at, n);
	unsigned connected = 0, answered = 0;
	for (size_t i = 0; i < n; i++) {
		struct attempt *a = &at[i];
		if (a->fd < 0) {
			say("attempt cid=%u port=%u refused %s (%s)", a->cid, a->port, errname(a->err),
			    strerror(a->err));
			continue;
		}
		connected++;
		char reply[4096];
		size_t got = talk(a->fd, a->port, reply, sizeof(reply));
		answered += got > 0;
		bool ttrpc = a->port != CONSOLE_PORT && got >= 10 && reply[8] == 2;
		bool shell = has_word(reply, got, "probe-shell-42");
		say("attempt cid=%u port=%u connected reply=%zu%s%s", a->cid, a->port, got,
		    ttrpc ? " ttrpc-response" : "", shell ? " shell" : "");
		close(a->fd);
		a->fd = -1;
	}
	say("done attempts=%zu connected=%u answered=%u", n, connected, answered);
	return connected ? 3 : 0;
}

/* A command from the host on stdin, without waiting for one: 'q' for
 * "stop" (or EOF, or an error), 's' for "sync K" (*k set), 0 for none. */
static char command(unsigned *k)
{
	struct pollfd p = { .fd = STDIN_FILENO, .events = POLLIN };
	if (poll(&p, 1, 0) <= 0)
		return 0;
	/* The host sends one command and waits for its answer: one read holds
	 * it whole. */
	char buf[64];
	ssize_t n = read(STDIN_FILENO, buf, sizeof(buf) - 1);
	if (n <= 0)
		return 'q';
	buf[n] = '\0';
	if (sscanf(buf, "sync %u", k) == 1)
		return 's';
	return has_word(buf, (size_t)n, "stop") ? 'q' : 0;
}

static int cmd_race(struct attempt *at, size_t n)
{
	int held[1024];
	size_t nheld = 0;
	unsigned long attempts = 0, connected = 0, rounds = 0;
	unsigned sync_left = 0, sync_k = 0;
	say("racing");
	for (;;) {
		unsigned k = 0;
		char cmd = command(&k);
		if (cmd == 'q')
			break;
		if (cmd == 's' && k > 0)
			sync_left = sync_k = k;
		run_attempts(at, n);
		rounds++;
		attempts += n;
		for (size_t i = 0; i < n; i++) {
			if (at[i].fd < 0)
				continue;
			connected++;
			say("won cid=%u port=%u round=%lu", at[i].cid, at[i].port, rounds);
			if (nheld < sizeof(held) / sizeof(held[0]))
				held[nheld++] = at[i].fd;
			else
				close(at[i].fd);
			at[i].fd = -1;
		}
		if (sync_left && --sync_left == 0)
			say("synced rounds=%u", sync_k);
		/* Refusals come back at once over husk-vsockd: leave the guest's
		 * CPU to the agent between rounds. The host's sync, not this
		 * pause, decides when the probe has tried enough. */
		usleep(2000);
	}
	say("done attempts=%lu connected=%lu rounds=%lu", attempts, connected, rounds);
	for (size_t i = 0; i < nheld; i++)
		close(held[i]);
	return connected ? 3 : 0;
}

static bool parse_uint(const char *s, unsigned *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 0);
	if (errno || end == s || *end || v > UINT32_MAX)
		return false;
	*out = (unsigned)v;
	return true;
}

static void add_cid(unsigned *cids, size_t *n, unsigned cid)
{
	for (size_t i = 0; i < *n; i++)
		if (cids[i] == cid)
			return;
	if (*n < MAX_CIDS)
		cids[(*n)++] = cid;
}

int main(int argc, char **argv)
{
	if (argc < 2 || (strcmp(argv[1], "direct") != 0 && strcmp(argv[1], "race") != 0)) {
		fprintf(stderr, "usage: husk-probe direct|race --cid N... --port P...\n");
		return 2;
	}
	unsigned cids[MAX_CIDS], ports[MAX_PORTS];
	size_t ncids = 0, nports = 0;
	add_cid(cids, &ncids, VMADDR_CID_LOCAL);
	for (int i = 2; i < argc; i++) {
		unsigned v;
		bool cid = strcmp(argv[i], "--cid") == 0, port = strcmp(argv[i], "--port") == 0;
		if ((!cid && !port) || i + 1 >= argc || !parse_uint(argv[i + 1], &v)) {
			fprintf(stderr, "husk-probe: bad argument %s\n", argv[i]);
			return 2;
		}
		i++;
		if (cid)
			add_cid(cids, &ncids, v);
		else if (nports < MAX_PORTS)
			ports[nports++] = v;
	}
	/* The guest's own CID, as any process with /dev/vsock can learn it. */
	_cleanup_fd_ int dev = open("/dev/vsock", O_RDONLY | O_CLOEXEC);
	unsigned local = 0;
	if (dev >= 0 && ioctl(dev, IOCTL_VM_SOCKETS_GET_LOCAL_CID, &local) == 0) {
		say("cid %u: from /dev/vsock", local);
		add_cid(cids, &ncids, local);
	} else {
		say("cid unknown: /dev/vsock: %s", strerror(errno));
	}
	if (!nports) {
		fprintf(stderr, "husk-probe: no --port given\n");
		return 2;
	}
	struct attempt at[MAX_ATTEMPTS];
	size_t n = 0;
	for (size_t c = 0; c < ncids; c++)
		for (size_t p = 0; p < nports; p++)
			at[n++] = (struct attempt){ .cid = cids[c], .port = ports[p], .fd = -1 };
	return strcmp(argv[1], "direct") == 0 ? cmd_direct(at, n) : cmd_race(at, n);
}
