/* /init of the tests/vsock guest: exercises husk-vsockd from the guest's
 * side of AF_VSOCK and reports on the serial console ("GUEST: ..." lines,
 * which tests/vsock/run.sh checks).
 *
 *   port 1024  echo: every connection gets its bytes back until EOF
 *   port 1027  slow sink: waits 2 s before reading (the host must stall
 *              on credit, not buffer), then replies "sink <bytes> <fnv>"
 *   at boot    connects to host port 1025 and sends "hello-from-guest\n";
 *              connects to host port 1999 (nobody listens): expects a reset;
 *              connects to host port 1026 and streams STREAM_BYTES of the
 *              shared pattern (the host reads it slowly)
 *
 * The kernel opens /dev/console as fds 0-2 before running /init, so stdout
 * is the serial console. Nothing is mounted. The VM is ended by the host. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/vm_sockets.h>

#include "pattern.h"

#define STREAM_BYTES (16u << 20)
#define BUF_SIZE (64u << 10)

static void say(const char *fmt, ...)
{
	char line[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	(void)!write(STDOUT_FILENO, line, (size_t)n);
}

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

static int vsock_connect(unsigned port)
{
	int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_HOST,
				  .svm_port = port };
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

static int vsock_listen(unsigned port)
{
	int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY,
				  .svm_port = port };
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
		say("GUEST: listen on %u failed: %s", port, strerror(errno));
		return -1;
	}
	return fd;
}

static void hello(void)
{
	int fd = vsock_connect(1025);
	if (fd < 0) {
		say("GUEST: hello failed: %s", strerror(-fd));
		return;
	}
	static const char msg[] = "hello-from-guest\n";
	if (write_all(fd, msg, sizeof(msg) - 1) < 0)
		say("GUEST: hello write failed: %s", strerror(errno));
	else
		say("GUEST: hello sent");
	close(fd);
}

static void refused(void)
{
	int fd = vsock_connect(1999);
	if (fd >= 0) {
		say("GUEST: refused-unexpected: connected to port 1999");
		close(fd);
	} else if (fd == -ECONNRESET || fd == -ECONNREFUSED) {
		say("GUEST: refused-ok (%s)", strerror(-fd));
	} else {
		say("GUEST: refused-unexpected: %s", strerror(-fd));
	}
}

static void stream(void)
{
	int fd = vsock_connect(1026);
	if (fd < 0) {
		say("GUEST: stream failed: %s", strerror(-fd));
		return;
	}
	static uint8_t buf[BUF_SIZE];
	struct pattern p;
	pattern_init(&p);
	for (uint32_t sent = 0; sent < STREAM_BYTES; sent += BUF_SIZE) {
		pattern_fill(&p, buf, BUF_SIZE);
		if (write_all(fd, buf, BUF_SIZE) < 0) {
			say("GUEST: stream write failed after %u bytes: %s", sent, strerror(errno));
			close(fd);
			return;
		}
	}
	close(fd);
	say("GUEST: stream sent %u", STREAM_BYTES);
}

static void echo(int fd)
{
	static uint8_t buf[BUF_SIZE];
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (write_all(fd, buf, (size_t)n) < 0) {
			say("GUEST: echo write failed: %s", strerror(errno));
			break;
		}
	}
}

static void sink(int fd)
{
	static uint8_t buf[BUF_SIZE];
	/* Not reading makes the guest's receive buffer fill: the host must
	 * stop on credit rather than buffer the client's bytes. */
	sleep(2);
	uint64_t total = 0, h = FNV_INIT;
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		total += (uint64_t)n;
		h = fnv_update(h, buf, (size_t)n);
	}
	char line[80];
	int n = snprintf(line, sizeof(line), "sink %" PRIu64 " %016" PRIx64 "\n", total, h);
	(void)write_all(fd, line, (size_t)n);
}

static void serve(int lfd, void (*fn)(int))
{
	for (;;) {
		int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0) {
			if (errno == EINTR)
				continue;
			say("GUEST: accept failed: %s", strerror(errno));
			sleep(1);
			continue;
		}
		pid_t pid = fork();
		if (pid == 0) {
			fn(c);
			close(c);
			_exit(0);
		}
		close(c);
	}
}

int main(void)
{
	/* Children are reaped by the kernel. */
	signal(SIGCHLD, SIG_IGN);
	int echo_fd = vsock_listen(1024);
	int sink_fd = vsock_listen(1027);
	if (echo_fd < 0 || sink_fd < 0)
		for (;;)
			pause();
	say("GUEST: listening");
	if (fork() == 0) {
		serve(sink_fd, sink);
		_exit(0);
	}
	if (fork() == 0) {
		hello();
		refused();
		stream();
		_exit(0);
	}
	serve(echo_fd, echo);
	return 0;
}
