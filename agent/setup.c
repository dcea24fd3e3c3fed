/* PID 1's set-up of the VM, in two parts: see agent.h (setup_*).
 *
 * Under TCG every kernel and agent code path runs through QEMU's translator
 * the first time it executes, so what the agent does before it can answer
 * Check is what the host waits for. Serving needs only the husk.* keys,
 * which libhusk passes as init's arguments (after "--"), and the modules of
 * a kernel that has vsock as a module, which need /proc, /sys and /dev.
 * Every mount, the cgroup controllers, the run directory, the hostname and
 * the entropy seed are for containers. They are done right after the first
 * Check is answered, while the host gets the first container ready, and in
 * any case before a call other than Check is served. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "agent.h"
#include "init/cmdline.h"
#include "init/console.h"
#include "init/entropy.h"
#include "init/kmod.h"
#include "init/memory.h"
#include "init/mounts.h"
#include "init/net.h"
#include "init/power.h"

#define SANDBOX_SERVICE "husk.sandbox.v1.Sandbox"

/* One module name a line; returns how many were read into names[]. */
static size_t read_module_list(const char *path, char list[][64], const char **names)
{
	FILE *f = fopen(path, "re");
	size_t n = 0;
	char line[64];
	while (f && n < INIT_MAX_MODULES && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		if (!line[0])
			continue;
		memcpy(list[n], line, sizeof(line));
		names[n] = list[n];
		n++;
	}
	if (f)
		fclose(f);
	return n;
}

static void mount_early(void)
{
	struct husk_err err = { 0 };
	if (init_mount_basics_at("/", INIT_MOUNT_EARLY, &err) < 0)
		init_poweroff(err.msg);
}

/* Any failure powers the VM off with the reason on the console rather than
 * leaving a hung guest. */
void setup_early(struct agent *a, int argc, char **argv)
{
	struct husk_err err = { 0 };
	struct init_config cfg;
	/* Where the kernel found no /dev/console (neither in our initramfs,
	 * which has none when built without root, nor in its built-in one,
	 * which normally has it) fds 0-2 are closed; the agent's own fds would
	 * take them and every line meant for the console would be lost: mount
	 * /dev first, which attaches them to the console. */
	for (int fd = 0; fd < 3; fd++)
		if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
			mount_early();
			break;
		}
	a->argc = argc;
	a->argv = argv;
	int r = init_parse_args(argc - 1, argv + 1, &cfg, &err);
	a->keys_from_args = cfg.husk_keys_seen;
	if (!a->keys_from_args) {
		/* A command line made by hand, keys before "--". */
		char cmdline[INIT_CMDLINE_MAX] = "";
		mount_early();
		if (init_read_cmdline(cmdline, sizeof(cmdline), &err) < 0)
			init_poweroff(err.msg);
		r = init_parse_cmdline(cmdline, &cfg, &err);
	}
	/* A bad value is reported and skipped: every good key still applies. */
	if (r < 0)
		fprintf(stderr, "husk-agent: warning: kernel command line: %s\n", err.msg);
	init_log_set_level(cfg.log_level);
	for (size_t i = 0; i < cfg.n_unknown && i < INIT_MAX_UNKNOWN; i++)
		fprintf(stderr, "husk-agent: warning: unknown kernel command line key %s\n",
			cfg.unknown[i]);
	const char *modules[INIT_MAX_MODULES];
	size_t n_modules = init_config_module_names(&cfg, modules);
	/* Without husk.modules=, the list initramfs/build.sh --kmods packed
	 * (vsock among them: needed before we can listen). */
	char list[INIT_MAX_MODULES][64];
	if (n_modules == 0)
		n_modules = read_module_list("/etc/husk/modules", list, modules);
	if (n_modules) {
		mount_early(); /* libkmod reads /proc and /sys */
		if (init_load_modules(modules, n_modules, &err) < 0)
			init_poweroff(err.msg);
	}
	snprintf(a->hostname, sizeof(a->hostname), "%s", cfg.hostname);
	a->opt.vsock_port = cfg.agent_port;
	a->opt.log_port = cfg.log_port;
	a->opt.debug_console = cfg.debug_console;
}

/* With keys among its arguments, PID 1 does not read those before "--" on
 * the kernel command line: say so rather than ignore them silently. */
static void warn_unread_keys(const struct agent *a)
{
	char line[INIT_CMDLINE_MAX];
	struct init_config from_args, whole;
	if (init_read_cmdline(line, sizeof(line), NULL) < 0)
		return;
	init_parse_args(a->argc - 1, a->argv + 1, &from_args, NULL);
	init_parse_cmdline(line, &whole, NULL);
	/* Both start from init_config_defaults(), padding included. */
	if (memcmp(&from_args, &whole, sizeof(whole)) != 0)
		init_log(INIT_LOG_WARNING,
			 "kernel command line: husk.* keys before \"--\" were not applied: they "
			 "are read only when none follows \"--\"");
}

void setup_finish(struct agent *a)
{
	if (a->setup_done)
		return;
	a->setup_done = true;
	uint64_t t0 = ev_now_ns();
	struct husk_err err = { 0 };
	if (init_mount_basics_at("/", INIT_MOUNT_ALL | INIT_MOUNT_CGROUP_CONTROLLERS, &err) < 0)
		init_poweroff(err.msg);
	if (a->keys_from_args)
		warn_unread_keys(a);
	/* On the /run tmpfs just mounted: nothing may be put there before. */
	if (mkdir(a->opt.run_dir, 0700) < 0 && errno != EEXIST)
		init_log(INIT_LOG_WARNING, "mkdir %s: %s", a->opt.run_dir, strerror(errno));
	if (a->hostname[0] && init_set_hostname(a->hostname, &err) < 0)
		init_log(INIT_LOG_WARNING, "%s", err.msg);
	init_seed_from_hwrng(NULL);
	if (init_set_page_reporting_order(INIT_PAGE_REPORTING_ORDER, &err) < 0)
		init_log(INIT_LOG_WARNING, "%s", err.msg);
	uint64_t t1 = ev_now_ns();
	init_log(INIT_LOG_DEBUG, "VM set-up finished in %.1f ms, %.1f ms after the agent started",
		 (double)(t1 - t0) / 1e6, (double)(t1 - a->started_ns) / 1e6);
}

static void on_setup_defer(void *data)
{
	setup_finish(data);
}

void setup_finish_soon(struct agent *a)
{
	if (a->setup_done)
		return;
	a->setup_defer.fn = on_setup_defer;
	a->setup_defer.data = a;
	ev_defer(a->loop, &a->setup_defer);
}

void setup_before_call(const char *service, const char *method, void *data)
{
	struct agent *a = data;
	if (a->setup_done)
		return;
	/* Check is what the host waits on to call the VM ready: answer it
	 * first, finish the set-up right after. */
	if (strcmp(service, SANDBOX_SERVICE) == 0 && strcmp(method, "Check") == 0) {
		setup_finish_soon(a);
		return;
	}
	setup_finish(a);
}
