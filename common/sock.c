#include "husk/sock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "husk/cleanup.h"

static int fill_addr(struct sockaddr_un *sa, const char *path, struct husk_err *err)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	size_t len = strlen(path);
	if (len == 0 || len >= sizeof(sa->sun_path))
		return husk_err_set(err, -ENAMETOOLONG,
				    "unix socket path %s: length %zu is not in 1..%zu", path, len,
				    sizeof(sa->sun_path) - 1);
	memcpy(sa->sun_path, path, len);
	return 0;
}

static int listen_type(const char *path, int type, struct husk_err *err)
{
	struct sockaddr_un sa;
	int r = fill_addr(&sa, path, err);
	if (r < 0)
		return r;
	_cleanup_fd_ int fd = socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return husk_err_sys(err, -errno, "socket for %s", path);
	struct stat st;
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return husk_err_sys(err, -errno, "bind %s", path);
	if (listen(fd, 128) < 0)
		return husk_err_sys(err, -errno, "listen on %s", path);
	return take_fd(&fd);
}

static int connect_type(const char *path, int type, struct husk_err *err)
{
	struct sockaddr_un sa;
	int r = fill_addr(&sa, path, err);
	if (r < 0)
		return r;
	_cleanup_fd_ int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return husk_err_sys(err, -errno, "socket for %s", path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return husk_err_sys(err, -errno, "connect to %s", path);
	return take_fd(&fd);
}

int husk_seqpacket_listen(const char *path, struct husk_err *err)
{
	return listen_type(path, SOCK_SEQPACKET, err);
}

int husk_seqpacket_connect(const char *path, struct husk_err *err)
{
	return connect_type(path, SOCK_SEQPACKET, err);
}

union fd_cmsg {
	char buf[CMSG_SPACE(sizeof(int) * HUSK_MSG_FDS_MAX)];
	struct cmsghdr align;
};

int husk_msg_send(int fd, const void *buf, size_t len, const int *fds, size_t n_fds)
{
	if (n_fds > HUSK_MSG_FDS_MAX)
		return -EINVAL;
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	union fd_cmsg u;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (n_fds) {
		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * n_fds);
	}
	ssize_t n;
	do
		n = sendmsg(fd, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == ECONNRESET ? -EPIPE : -errno;
	return (size_t)n == len ? 0 : -EMSGSIZE;
}

ssize_t husk_msg_recv(int fd, void *buf, size_t len, int *fds, size_t *n_fds)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	union fd_cmsg u;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf) };
	*n_fds = 0;
	ssize_t n;
	do
		n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == ECONNRESET ? 0 : -errno;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int f;
			memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (*n_fds < HUSK_MSG_FDS_MAX)
				fds[(*n_fds)++] = f;
			else
				close(f);
		}
	}
	if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
		for (size_t i = 0; i < *n_fds; i++)
			close(fds[i]);
		*n_fds = 0;
		return -EMSGSIZE;
	}
	return n;
}

int husk_unix_listen(const char *path, struct husk_err *err)
{
	return listen_type(path, SOCK_STREAM, err);
}

int husk_unix_connect(const char *path, struct husk_err *err)
{
	return connect_type(path, SOCK_STREAM, err);
}

socklen_t husk_loopback_addr(int family, unsigned port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;
		*sin = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
					     .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		return sizeof(*sin);
	}
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	*sin6 = (struct sockaddr_in6){ .sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port),
				       .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	return sizeof(*sin6);
}
