/* Host-side peer for tests/vsock/run.sh, talking to husk-vsockd's hybrid
 * socket the way a host program would.
 *
 *   vsock-host-peer connect UDS PORT   "CONNECT PORT\n", print the reply line
 *                                      to stderr, then relay stdin to the guest
 *                                      and the guest to stdout, full duplex,
 *                                      half-closing after stdin's EOF. Exit 3
 *                                      when the daemon closes instead of "OK".
 *   vsock-host-peer listen PATH [SECS] accept one connection on PATH (a guest
 *                                      connecting to `<uds>_<port>`), wait SECS
 *                                      before reading, copy it to stdout
 *   vsock-host-peer pattern BYTES      the shared test pattern to stdout
 *   vsock-host-peer fnv                "<bytes> <fnv1a64>" of stdin
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "pattern.h"

#define BUF_SIZE (64u << 10)

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int fill_addr(struct sockaddr_un *sa, const char *path)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path)) {
		fprintf(stderr, "%s: path too long\n", path);
		return -1;
	}
	strcpy(sa->sun_path, path);
	return 0;
}

static int do_connect(const char *uds, const char *port)
{
	struct sockaddr_un sa;
	if (fill_addr(&sa, uds) < 0)
		return 1;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "connect %s: %s\n", uds, strerror(errno));
		return 1;
	}
	char line[64];
	int n = snprintf(line, sizeof(line), "CONNECT %s\n", port);
	if (write_all(fd, line, (size_t)n) < 0) {
		fprintf(stderr, "write handshake: %s\n", strerror(errno));
		return 1;
	}
	/* Byte by byte: whatever follows the reply line is the guest's. */
	size_t len = 0;
	for (;;) {
		ssize_t r = read(fd, line + len, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			fprintf(stderr, "handshake: EOF\n");
			return 3;
		}
		if (line[len] == '\n')
			break;
		if (++len == sizeof(line) - 1) {
			fprintf(stderr, "handshake: line too long\n");
			return 1;
		}
	}
	line[len] = '\0';
	fprintf(stderr, "handshake: %s\n", line);
	if (strncmp(line, "OK ", 3) != 0)
		return 1;

	fcntl(fd, F_SETFL, O_NONBLOCK);
	static char buf[BUF_SIZE], rbuf[BUF_SIZE];
	size_t have = 0, off = 0;
	int in_eof = 0;
	for (;;) {
		struct pollfd p[2] = {
			{ .fd = fd, .events = POLLIN | (have > off ? POLLOUT : 0) },
			{ .fd = STDIN_FILENO, .events = (!in_eof && have == off) ? POLLIN : 0 },
		};
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			perror("poll");
			return 1;
		}
		/* POLLHUP comes even when not asked for: read only when the
		 * buffer is free, or unsent bytes would be overwritten. */
		if (p[1].revents && p[1].events) {
			ssize_t r = read(STDIN_FILENO, buf, sizeof(buf));
			if (r <= 0) {
				in_eof = 1;
				shutdown(fd, SHUT_WR);
			} else {
				have = (size_t)r;
				off = 0;
			}
		}
		if ((p[0].revents & POLLOUT) && have > off) {
			ssize_t w = send(fd, buf + off, have - off, MSG_NOSIGNAL);
			if (w < 0 && errno != EAGAIN && errno != EINTR) {
				fprintf(stderr, "send: %s\n", strerror(errno));
				return 1;
			}
			if (w > 0)
				off += (size_t)w;
			if (off == have)
				have = off = 0;
		}
		if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t r = read(fd, rbuf, sizeof(rbuf));
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (r < 0) {
				fprintf(stderr, "read: %s\n", strerror(errno));
				return 1;
			}
			if (r == 0) {
				if (!in_eof || have > off)
					fprintf(stderr, "EOF from the guest before all input was sent\n");
				return 0;
			}
			if (write_all(STDOUT_FILENO, rbuf, (size_t)r) < 0)
				return 1;
		}
	}
}

static int do_listen(const char *path, int delay)
{
	struct sockaddr_un sa;
	if (fill_addr(&sa, path) < 0)
		return 1;
	int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(l, 4) < 0) {
		fprintf(stderr, "listen %s: %s\n", path, strerror(errno));
		return 1;
	}
	int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	if (c < 0) {
		fprintf(stderr, "accept: %s\n", strerror(errno));
		return 1;
	}
	close(l);
	if (delay > 0)
		sleep((unsigned)delay);
	static char buf[BUF_SIZE];
	for (;;) {
		ssize_t r = read(c, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			fprintf(stderr, "read: %s\n", strerror(errno));
			return 1;
		}
		if (r == 0)
			return 0;
		if (write_all(STDOUT_FILENO, buf, (size_t)r) < 0)
			return 1;
	}
}

static int do_pattern(unsigned long long n)
{
	static uint8_t buf[BUF_SIZE];
	struct pattern p;
	pattern_init(&p);
	while (n > 0) {
		size_t k = n < sizeof(buf) ? (size_t)n : sizeof(buf);
		pattern_fill(&p, buf, k);
		if (write_all(STDOUT_FILENO, buf, k) < 0)
			return 1;
		n -= k;
	}
	return 0;
}

static int do_fnv(void)
{
	static uint8_t buf[BUF_SIZE];
	uint64_t h = FNV_INIT, total = 0;
	for (;;) {
		ssize_t r = read(STDIN_FILENO, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return 1;
		if (r == 0)
			break;
		total += (uint64_t)r;
		h = fnv_update(h, buf, (size_t)r);
	}
	printf("%" PRIu64 " %016" PRIx64 "\n", total, h);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "connect") == 0)
		return do_connect(argv[2], argv[3]);
	if ((argc == 3 || argc == 4) && strcmp(argv[1], "listen") == 0)
		return do_listen(argv[2], argc == 4 ? atoi(argv[3]) : 0);
	if (argc == 3 && strcmp(argv[1], "pattern") == 0)
		return do_pattern(strtoull(argv[2], NULL, 10));
	if (argc == 2 && strcmp(argv[1], "fnv") == 0)
		return do_fnv();
	fprintf(stderr, "usage: %s connect UDS PORT | listen PATH [SECS] | pattern BYTES | fnv\n",
		argv[0]);
	return 2;
}
