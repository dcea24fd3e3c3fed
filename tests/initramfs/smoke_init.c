/* A stand-in /init that exercises libinit as PID 1 of a real guest, the way
 * husk-agent does, and reports what the kernel shows, one "SMOKE key=value"
 * line each on the console, then powers off. tests/initramfs/run.sh boots
 * it under QEMU and checks the lines and that QEMU exits by itself.
 *
 * On the host it has one mode: --probe DIR NAME... resolves modules in the
 * /lib/modules/<release> tree DIR with the static musl libkmod (dry run,
 * nothing inserted) and prints them in load order, one per line. */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libkmod.h>

#include "init/cmdline.h"
#include "init/console.h"
#include "init/entropy.h"
#include "init/kmod.h"
#include "init/mounts.h"
#include "husk/netif.h"
#include "init/net.h"
#include "init/power.h"
#include "init/reaper.h"
#include "ttrpc/loop.h"

static void print_probe(struct kmod_module *m, bool install, const char *options)
{
	(void)install, (void)options;
	printf("%s\n", kmod_module_get_name(m));
}

static int probe(int argc, char **argv)
{
	struct husk_err err = { 0 };
	int r = init_load_modules_at(argv[2], (const char *const *)argv + 3, (size_t)(argc - 3),
				     KMOD_PROBE_DRY_RUN, print_probe, &err);
	if (r < 0) {
		fprintf(stderr, "probe: %s\n", err.msg);
		return 1;
	}
	return 0;
}

static void report(const char *key, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(const char *key, const char *fmt, ...)
{
	char val[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(val, sizeof(val), fmt, ap);
	va_end(ap);
	printf("SMOKE %s=%s\n", key, val);
	fflush(stdout);
}

static void report_file(const char *key, const char *path)
{
	char buf[512] = "";
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
	if (fd >= 0)
		close(fd);
	if (n < 0) {
		report(key, "error:%s", strerror(errno));
		return;
	}
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	report(key, "%s", buf);
}

static const char *fstype_at(const char *mp, char *buf, size_t size)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[1024];
	snprintf(buf, size, "none");
	while (f && fgets(line, sizeof(line), f)) {
		char point[512], type[64];
		const char *sep = strstr(line, " - ");
		if (sscanf(line, "%*s %*s %*s %*s %511s", point) == 1 && sep &&
		    sscanf(sep + 3, "%63s", type) == 1 && strcmp(point, mp) == 0)
			snprintf(buf, size, "%s", type); /* the last (top) one wins */
	}
	if (f)
		fclose(f);
	return buf;
}

struct reaped {
	int status;
	int calls;
};

static void on_exit_cb(pid_t pid, int status, void *data)
{
	(void)pid;
	struct reaped *r = data;
	r->status = status;
	r->calls++;
}

static void guest(void)
{
	struct husk_err err = { 0 };
	int r = init_mount_basics(&err);
	report("mount_basics", "%d%s%s", r, r ? " " : "", r ? err.msg : "");
	r = init_mount_basics(&err);
	report("mount_basics_again", "%d", r);

	char cmdline[INIT_CMDLINE_MAX];
	struct init_config cfg;
	r = init_read_cmdline(cmdline, sizeof(cmdline), &err);
	if (r == 0)
		r = init_parse_cmdline(cmdline, &cfg, &err);
	report("cmdline", "%d%s%s", r, r ? " " : "", r ? err.msg : "");
	init_log_set_level(cfg.log_level);
	report("is_guest", "%d", init_is_husk_guest());

	const char *mps[] = { "/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/run", "/tmp",
			      "/sys/fs/cgroup" };
	for (size_t i = 0; i < sizeof(mps) / sizeof(mps[0]); i++) {
		char t[64], key[64];
		snprintf(key, sizeof(key), "fstype%s", mps[i]);
		report(key, "%s", fstype_at(mps[i], t, sizeof(t)));
	}
	report_file("subtree_control", "/sys/fs/cgroup/cgroup.subtree_control");
	report_file("controllers", "/sys/fs/cgroup/cgroup.controllers");
	struct stat st;
	report("fd0", "%s", fstat(0, &st) == 0 ? "open" : "closed");

	const char *mods[INIT_MAX_MODULES];
	size_t n = init_config_module_names(&cfg, mods);
	r = init_load_modules(mods, n, &err);
	report("modules", "%d%s%s", r, r ? " " : "", r ? err.msg : "");
	for (size_t i = 0; i < n; i++) {
		char path[128], key[96];
		snprintf(path, sizeof(path), "/sys/module/%s", mods[i]);
		for (char *c = path; *c; c++)
			if (*c == '-')
				*c = '_';
		snprintf(key, sizeof(key), "module.%s", mods[i]);
		report(key, "%s", stat(path, &st) == 0 ? "present" : "absent");
	}

	r = husk_loopback_up(&err);
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr = { 0 };
	strcpy(ifr.ifr_name, "lo");
	ioctl(s, SIOCGIFFLAGS, &ifr);
	close(s);
	report("loopback", "%d up=%d", r, !!(ifr.ifr_flags & IFF_UP));

	if (cfg.hostname[0]) {
		r = init_set_hostname(cfg.hostname, &err);
		char h[128] = "";
		gethostname(h, sizeof(h));
		report("hostname", "%d %s", r, h);
	}
	r = init_seed_from_hwrng(&err);
	report("hwrng", "%d", r);
	unsigned char b[16];
	report("getrandom_nonblock", "%zd", getrandom(b, sizeof(b), GRND_NONBLOCK));

	struct ev_loop *loop = NULL;
	struct init_reaper *reaper = NULL;
	struct reaped got = { 0 };
	if (ev_loop_new(&loop, &err) == 0 && init_reaper_new(loop, &reaper, &err) == 0) {
		pid_t pid = fork();
		if (pid == 0)
			_exit(33);
		init_reaper_watch(reaper, pid, on_exit_cb, &got);
		for (int i = 0; i < 100 && !got.calls; i++)
			ev_run_once(loop, 100);
		init_reaper_free(reaper);
		ev_loop_free(loop);
	}
	report("reaper", "%d %d", got.calls, got.calls ? init_exit_code(got.status) : -1);
	init_log(INIT_LOG_NOTICE, "smoke test done");
	init_poweroff("smoke test done");
}

int main(int argc, char **argv)
{
	if (argc >= 3 && strcmp(argv[1], "--probe") == 0)
		return probe(argc, argv);
	if (getpid() != 1) {
		fprintf(stderr, "usage: %s --probe DIR NAME... (or run as PID 1 of a guest)\n",
			argv[0]);
		return 2;
	}
	guest();
}
