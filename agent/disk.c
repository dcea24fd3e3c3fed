/* Finding a virtio-blk disk by its serial (/sys/block/<name>/serial). Disks
 * the host hot-adds (a pod's later containers) appear a little after the
 * host's device_add returns: callers that want to wait for one watch the
 * kernel's uevents (disk_uevent_open) on their event loop and look again
 * on each, instead of polling sysfs or blocking. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent.h"
#include "husk/cleanup.h"
#include "husk/path.h"

static int scan(const char *serial, char *dev, size_t size)
{
	DIR *d = opendir("/sys/block");
	if (!d)
		return -errno;
	int r = -ENOENT;
	for (struct dirent *e; (e = readdir(d));) {
		if (e->d_name[0] == '.')
			continue;
		char path[512], buf[128];
		husk_path_fmt(path, sizeof(path), "/sys/block/%s/serial", e->d_name);
		_cleanup_fd_ int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		ssize_t n = read(fd, buf, sizeof(buf) - 1);
		if (n <= 0)
			continue;
		buf[n] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		if (strcmp(buf, serial) == 0) {
			r = husk_path_fmt(dev, size, "/dev/%s", e->d_name);
			break;
		}
	}
	closedir(d);
	return r;
}

bool disk_hotplug_possible(void)
{
	DIR *d = opendir("/sys/bus/pci/slots");
	if (!d)
		return false;
	bool any = false;
	for (struct dirent *e; !any && (e = readdir(d));)
		any = e->d_name[0] != '.';
	closedir(d);
	return any;
}

int disk_find(const char *serial, char *dev, size_t size, struct husk_err *err)
{
	int r = scan(serial, dev, size);
	if (r == -ENOENT)
		return disk_missing(serial, false, err);
	return r < 0 ? husk_err_sys(err, r, "open /sys/block") : 0;
}

int disk_missing(const char *serial, bool waited, struct husk_err *err)
{
	return husk_err_set(err, -ENOENT, "no disk with serial \"%s\"%s", serial,
			    waited ? " (waited for a hot-added one)" : "");
}

int disk_uevent_open(struct husk_err *err)
{
	_cleanup_fd_ int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
				     NETLINK_KOBJECT_UEVENT);
	if (fd < 0)
		return husk_err_sys(err, -errno, "uevent socket for hot-added disks");
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK, .nl_groups = 1 };
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return husk_err_sys(err, -errno, "bind uevent socket for hot-added disks");
	return take_fd(&fd);
}

void disk_uevent_drain(int fd)
{
	/* The content does not matter: any uevent is reason enough to look
	 * again. ENOBUFS (events dropped) is reported once; keep draining. */
	char buf[4096];
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0 && errno != ENOBUFS && errno != EINTR)
			return;
	}
}
