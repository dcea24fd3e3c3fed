/* recv-console SOCKET: accepts one connection on the unix socket SOCKET,
 * receives a pty master over SCM_RIGHTS (runc's --console-socket protocol)
 * and copies what the pty prints to stdout until the container side closes
 * (EIO) or 20 s of silence. Prints "ready" on stderr once listening. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "husk/cleanup.h"
#include "husk/sock.h"

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s SOCKET\n", argv[0]);
		return 2;
	}
	struct husk_err err = { 0 };
	_cleanup_fd_ int l = husk_unix_listen(argv[1], &err);
	if (l < 0) {
		fprintf(stderr, "recv-console: %s\n", err.msg);
		return 1;
	}
	fprintf(stderr, "ready\n");
	struct pollfd p = { .fd = l, .events = POLLIN };
	if (poll(&p, 1, 20000) != 1)
		return 1;
	_cleanup_fd_ int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	if (c < 0)
		return 1;
	char name[256];
	struct iovec iov = { .iov_base = name, .iov_len = sizeof(name) };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf) };
	if (recvmsg(c, &mh, MSG_CMSG_CLOEXEC) < 0)
		return 1;
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	if (!cm || cm->cmsg_type != SCM_RIGHTS) {
		fprintf(stderr, "recv-console: no fd received\n");
		return 1;
	}
	int master;
	memcpy(&master, CMSG_DATA(cm), sizeof(int));
	char buf[4096];
	for (;;) {
		struct pollfd m = { .fd = master, .events = POLLIN };
		if (poll(&m, 1, 20000) != 1)
			break;
		ssize_t n = read(master, buf, sizeof(buf));
		if (n <= 0)
			break; /* EIO once the container's side is closed */
		if (write(1, buf, (size_t)n) < 0)
			break;
	}
	return 0;
}
