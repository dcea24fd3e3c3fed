/* Finding a virtio-blk disk by its serial (/sys/block/<name>/serial). Disks
 * the host hot-adds (a pod's later containers) appear a little after the
 * host's device_add returns: callers that want to wait for one watch the
 * kernel's uevents (disk_uevent_open) on their event loop and look again
 * on each, instead of polling sysfs or blocking. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/netlink.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent.h"
#include "husk/cleanup.h"
#include "husk/path.h"
#include "init/console.h"

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

/* The first line of a small sysfs file, without its newline. */
static int read_line(const char *path, char *buf, size_t size)
{
	_cleanup_fd_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, buf, size - 1);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

/* Where "MAJ:MIN" (of /sys/block/X/dev) is mounted in our mount namespace:
 * 1 with `where` filled, 0 when nowhere. */
static int mounted_at(const char *majmin, char *where, size_t size)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return -errno;
	char line[4096];
	while (fgets(line, sizeof(line), f)) {
		/* "ID PARENT MAJ:MIN ROOT MOUNTPOINT ..." */
		char dev[32], point[2048];
		if (sscanf(line, "%*u %*u %31s %*s %2047s", dev, point) == 2 &&
		    strcmp(dev, majmin) == 0) {
			snprintf(where, size, "%s", point);
			return 1;
		}
	}
	return 0;
}

/* "DDDD:BB:SS" of the PCI function the block device hangs off, from its
 * sysfs path (.../0000:01:00.0/virtio3/block/vda); -ENODEV when it is not
 * on PCI. */
static int pci_slot_address(const char *name, char *addr, size_t size)
{
	char link[512], real[PATH_MAX];
	husk_path_fmt(link, sizeof(link), "/sys/block/%s", name);
	if (!realpath(link, real))
		return -errno;
	int found = -ENODEV;
	char *save = NULL;
	for (char *tok = strtok_r(real, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
		unsigned dom, bus, slot, fn;
		char end;
		if (sscanf(tok, "%4x:%2x:%2x.%1x%c", &dom, &bus, &slot, &fn, &end) == 4) {
			snprintf(addr, size, "%04x:%02x:%02x", dom, bus, slot);
			found = 0; /* the last one is the device's own */
		}
	}
	return found;
}

int disk_release(const char *serial, struct husk_err *err)
{
	char dev[300];
	int r = disk_find(serial, dev, sizeof(dev), err);
	if (r < 0)
		return r;
	const char *name = dev + strlen("/dev/");
	char path[512], majmin[32], where[2048], addr[32];
	husk_path_fmt(path, sizeof(path), "/sys/block/%s/dev", name);
	if ((r = read_line(path, majmin, sizeof(majmin))) < 0)
		return husk_err_sys(err, r, "disk %s: read %s", serial, path);
	if ((r = mounted_at(majmin, where, sizeof(where))) < 0)
		return husk_err_sys(err, r, "disk %s: read /proc/self/mountinfo", serial);
	if (r > 0)
		return husk_err_set(err, -EBUSY, "disk %s (%s): still mounted on %s", serial, dev,
				    where);
	if ((r = pci_slot_address(name, addr, sizeof(addr))) < 0)
		return r == -ENODEV ? husk_err_set(err, r, "disk %s (%s): not on a PCI hotplug slot",
						   serial, dev)
				    : husk_err_sys(err, r, "disk %s: resolve /sys/block/%s", serial, name);
	_cleanup_closedir_ DIR *d = opendir("/sys/bus/pci/slots");
	for (struct dirent *e; d && (e = readdir(d));) {
		if (e->d_name[0] == '.')
			continue;
		char a[32];
		husk_path_fmt(path, sizeof(path), "/sys/bus/pci/slots/%s/address", e->d_name);
		if (read_line(path, a, sizeof(a)) < 0 || strcmp(a, addr) != 0)
			continue;
		husk_path_fmt(path, sizeof(path), "/sys/bus/pci/slots/%s/power", e->d_name);
		_cleanup_fd_ int fd = open(path, O_WRONLY | O_CLOEXEC);
		/* pciehp removes the device, then powers the slot off: the write
		 * returns when both are done. */
		if (fd < 0 || write(fd, "0", 1) != 1)
			return husk_err_sys(err, -errno, "disk %s: power off slot %s (write %s)",
					    serial, e->d_name, path);
		init_log(INIT_LOG_INFO, "disk %s (%s): slot %s powered off", serial, dev, e->d_name);
		return 0;
	}
	return husk_err_set(err, -ENODEV, "disk %s (%s, PCI %s): not on a PCI hotplug slot", serial,
			    dev, addr);
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
