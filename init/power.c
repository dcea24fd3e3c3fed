/* Ending the guest: see init/power.h. */
#include "init/power.h"

#include <errno.h>
#include <fcntl.h>
#include <mntent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <unistd.h>

#include "husk/cleanup.h"
#include "init/cmdline.h"
#include "init/mounts.h"

bool init_is_husk_guest(void)
{
	if (getpid() != 1)
		return false;
	char buf[INIT_CMDLINE_MAX];
	if (init_read_cmdline(buf, sizeof(buf), NULL) < 0) {
		/* PID 1 may end before it mounted /proc: its husk.* keys come as
		 * its arguments (init/cmdline.h). Mount it, and /sys for the ACPI
		 * check; /proc may mount where another one fails. */
		(void)init_mount_basics_at("/", INIT_MOUNT_EARLY, NULL);
		if (init_read_cmdline(buf, sizeof(buf), NULL) < 0)
			return false; /* cannot confirm: not a guest as far as we know */
	}
	return init_cmdline_is_husk(buf);
}

static void write_str(int fd, const char *s)
{
	size_t len = strlen(s);
	while (len > 0) {
		ssize_t n = write(fd, s, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		s += n;
		len -= (size_t)n;
	}
}

/* An fd on /dev/console, or -1 when it cannot be opened or is where
 * stderr already goes (PID 1's fds 0-2 are the console). Opened before the
 * mounts are detached, so that the last words still get out. */
static int open_console(void)
{
	int fd = open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);
	struct stat a, b;
	if (fd < 0)
		return -1;
	if (fstat(fd, &b) == 0 && fstat(STDERR_FILENO, &a) == 0 && S_ISCHR(a.st_mode) &&
	    a.st_rdev == b.st_rdev) {
		close(fd);
		return -1;
	}
	return fd;
}

static void say(int console, const char *msg)
{
	write_str(STDERR_FILENO, msg);
	if (console >= 0)
		write_str(console, msg);
}

/* Detaches every mount but "/", innermost first, so that file systems on
 * block devices are cleanly released. Best effort: everything the guest
 * writes lives in tmpfs, and sync() has already run. */
static void detach_mounts(void)
{
	FILE *f = setmntent("/proc/self/mounts", "re");
	if (!f)
		return;
	char **dirs = NULL;
	size_t n = 0, cap = 0;
	struct mntent *m;
	while ((m = getmntent(f))) {
		if (strcmp(m->mnt_dir, "/") == 0)
			continue;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 32;
			char **nd = realloc(dirs, ncap * sizeof(*dirs));
			if (!nd)
				break;
			dirs = nd;
			cap = ncap;
		}
		dirs[n] = strdup(m->mnt_dir);
		if (dirs[n])
			n++;
	}
	endmntent(f);
	while (n > 0) {
		n--;
		umount2(dirs[n], MNT_DETACH);
		free(dirs[n]);
	}
	free(dirs);
}

void init_poweroff(const char *reason)
{
	char msg[512];
	snprintf(msg, sizeof(msg), "husk-agent: powering off: %s\n", reason ? reason : "");

	if (!init_is_husk_guest()) {
		/* A host, or a container's PID namespace: never reboot, never
		 * kill(-1). */
		write_str(STDERR_FILENO, msg);
		write_str(STDERR_FILENO,
			  "husk-agent: not PID 1 of a husk guest: exiting instead\n");
		_exit(1);
	}

	int console = open_console();
	say(console, msg);
	bool acpi = access("/sys/firmware/acpi", F_OK) == 0;
	sync();
	kill(-1, SIGKILL); /* every process but us */
	detach_mounts();
	sync();

	if (acpi)
		reboot(RB_POWER_OFF);
	reboot(RB_AUTOBOOT);
	snprintf(msg, sizeof(msg), "husk-agent: reboot failed: %s; halting\n", strerror(errno));
	say(console, msg);
	for (;;)
		pause();
}
