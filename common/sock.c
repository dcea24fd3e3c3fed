#include "husk/sock.h"

#include <errno.h>
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

int husk_unix_listen(const char *path, struct husk_err *err)
{
	struct sockaddr_un sa;
	int r = fill_addr(&sa, path, err);
	if (r < 0)
		return r;
	_cleanup_fd_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
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

int husk_unix_connect(const char *path, struct husk_err *err)
{
	struct sockaddr_un sa;
	int r = fill_addr(&sa, path, err);
	if (r < 0)
		return r;
	_cleanup_fd_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return husk_err_sys(err, -errno, "socket for %s", path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return husk_err_sys(err, -errno, "connect to %s", path);
	return take_fd(&fd);
}
