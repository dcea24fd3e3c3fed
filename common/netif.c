/* Network interface basics: see husk/netif.h. */
#include "husk/netif.h"

#include <errno.h>
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "husk/cleanup.h"

int husk_loopback_up(struct husk_err *err)
{
	/* Any socket will do for interface ioctls; AF_INET is always built. */
	_cleanup_fd_ int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return husk_err_sys(err, -errno, "lo: socket(AF_INET)");
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
		return husk_err_sys(err, -errno, "lo: SIOCGIFFLAGS");
	if (ifr.ifr_flags & IFF_UP)
		return 0;
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
		return husk_err_sys(err, -errno, "lo: SIOCSIFFLAGS IFF_UP");
	return 0;
}
