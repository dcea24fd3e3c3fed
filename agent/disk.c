/* Finding a virtio-blk disk by its serial (/sys/block/<name>/serial). Disks
 * the host hot-adds (a pod's later containers) appear a little after the
 * host's device_add returns: then the lookup waits for the kernel's block
 * uevents instead of polling sysfs. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
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

/* Whether this VM has PCI hotplug slots: only then can a disk still come. */
static bool hotplug_possible(void)
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

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int disk_find(const char *serial, unsigned wait_ms, char *dev, size_t size, struct husk_err *err)
{
	/* Subscribe before the first scan, so a disk that appears in between
	 * still wakes us. */
	_cleanup_fd_ int nl = -1;
	if (wait_ms && hotplug_possible()) {
		nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
			    NETLINK_KOBJECT_UEVENT);
		struct sockaddr_nl sa = { .nl_family = AF_NETLINK, .nl_groups = 1 };
		if (nl >= 0 && bind(nl, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			close(nl);
			nl = -1;
		}
	}
	uint64_t deadline = now_ms() + wait_ms;
	for (;;) {
		int r = scan(serial, dev, size);
		if (r != -ENOENT)
			return r < 0 ? husk_err_sys(err, r, "open /sys/block") : 0;
		uint64_t now = now_ms();
		if (nl < 0 || now >= deadline)
			break;
		struct pollfd p = { .fd = nl, .events = POLLIN };
		if (poll(&p, 1, (int)(deadline - now)) < 0 && errno != EINTR)
			break;
		/* Drain; any block "add" is reason enough to look again. */
		char buf[4096];
		while (recv(nl, buf, sizeof(buf), 0) > 0)
			;
	}
	return husk_err_set(err, -ENOENT, "no disk with serial \"%s\"%s", serial,
			    nl >= 0 ? " (waited for a hot-added one)" : "");
}
