/* husk-agent: PID 1 of the husk guest, serving containerd.task.v2.Task and
 * husk.sandbox.v1.Sandbox with ttrpc on vsock port 1024.
 *
 *   husk-agent                          as /init in the guest (PID 1)
 *   husk-agent --listen unix:PATH [--run-dir DIR] [--cgroup-mount DIR]
 *                                       on a host, for tests: the same
 *                                       services on a unix socket; stdio
 *                                       ports become PATH_<port> sockets
 */
#include <errno.h>
#include <getopt.h>
#include <linux/vm_sockets.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "husk/cleanup.h"
#include "husk/path.h"
#include "husk/sock.h"
#include "init/cmdline.h"
#include "init/console.h"
#include "init/entropy.h"
#include "init/kmod.h"
#include "init/mounts.h"
#include "init/net.h"
#include "init/power.h"
#include "init/reaper.h"
#include "jail/cgroup.h"

int agent_listen_port(struct agent *a, unsigned port, struct husk_err *err)
{
	if (a->opt.listen_unix) {
		char path[4096];
		if (husk_path_fmt(path, sizeof(path), "%s_%u", a->opt.listen_unix, port) < 0)
			return husk_err_set(err, -ENAMETOOLONG, "listen path for port %u too long", port);
		return husk_unix_listen(path, err);
	}
	_cleanup_fd_ int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return husk_err_sys(err, -errno, "vsock socket for port %u", port);
	struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY,
				  .svm_port = port };
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return husk_err_sys(err, -errno, "bind vsock port %u", port);
	if (listen(fd, 16) < 0)
		return husk_err_sys(err, -errno, "listen on vsock port %u", port);
	return take_fd(&fd);
}

static void on_signal(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io;
	(void)events;
	struct signalfd_siginfo si;
	if (read(fd, &si, sizeof(si)) == sizeof(si)) {
		struct agent *a = data;
		a->shutting_down = true;
		ev_stop(a->loop);
	}
}

/* PID-1 duties before serving; any failure powers the VM off with the
 * reason on the console rather than leaving a hung guest. */
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

static void guest_init(struct agent *a)
{
	struct husk_err err = { 0 };
	if (init_mount_basics(&err) < 0)
		init_poweroff(err.msg);
	char cmdline[4096] = "";
	struct init_config cfg;
	init_config_defaults(&cfg);
	if (init_read_cmdline(cmdline, sizeof(cmdline), &err) < 0)
		init_poweroff(err.msg);
	/* A bad value is reported and skipped: every good key still applies. */
	if (init_parse_cmdline(cmdline, &cfg, &err) < 0)
		fprintf(stderr, "husk-agent: warning: kernel command line: %s\n", err.msg);
	init_log_set_level(cfg.log_level);
	for (size_t i = 0; i < cfg.n_unknown && i < INIT_MAX_UNKNOWN; i++)
		fprintf(stderr, "husk-agent: warning: unknown kernel command line key %s\n",
			cfg.unknown[i]);
	const char *modules[INIT_MAX_MODULES];
	size_t n_modules = init_config_module_names(&cfg, modules);
	/* Without husk.modules=, the list initramfs/build.sh --kmods packed. */
	char list[INIT_MAX_MODULES][64];
	if (n_modules == 0)
		n_modules = read_module_list("/etc/husk/modules", list, modules);
	if (n_modules && init_load_modules(modules, n_modules, &err) < 0)
		init_poweroff(err.msg);
	if (cfg.hostname[0] && init_set_hostname(cfg.hostname, &err) < 0)
		fprintf(stderr, "husk-agent: warning: %s\n", err.msg);
	init_seed_from_hwrng(NULL);
	a->opt.vsock_port = cfg.agent_port;
	a->opt.log_port = cfg.log_port;
	a->opt.debug_console = cfg.debug_console;
}

static int parse_args(int argc, char **argv, struct agent_options *o)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "run-dir", required_argument, NULL, 'r' },
		{ "cgroup-mount", required_argument, NULL, 'c' },
		{ "no-cgroups", no_argument, NULL, 'n' },
		{ "debug-console", no_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	for (int c; (c = getopt_long(argc, argv, "h", opts, NULL)) != -1;) {
		switch (c) {
		case 'l':
			if (strncmp(optarg, "unix:", 5) == 0 && optarg[5]) {
				o->listen_unix = optarg + 5;
			} else if (strncmp(optarg, "vsock:", 6) == 0) {
				char *end;
				unsigned long p = strtoul(optarg + 6, &end, 10);
				if (*end || !p || p > 0xfffffffeul) {
					fprintf(stderr, "husk-agent: --listen %s: bad vsock port\n", optarg);
					return 2;
				}
				o->vsock_port = (unsigned)p;
			} else {
				fprintf(stderr, "husk-agent: --listen %s: want unix:PATH or vsock:PORT\n",
					optarg);
				return 2;
			}
			break;
		case 'r': o->run_dir = optarg; break;
		case 'c': o->cgroup_mount = optarg; break;
		case 'n': o->cgroup_mount = NULL; break;
		case 'd': o->debug_console = true; break;
		case 'h':
			printf("usage: husk-agent [--listen unix:PATH|vsock:PORT] [--run-dir DIR]\n"
			       "                  [--cgroup-mount DIR | --no-cgroups] [--debug-console]\n");
			return 1;
		default: return 2;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct agent a = { .log_fd = -1 };
	a.opt.pid1 = getpid() == 1;
	a.opt.vsock_port = 1024;
	if (a.opt.pid1) {
		a.opt.run_dir = "/run/husk";
		a.opt.cgroup_mount = "/sys/fs/cgroup";
		guest_init(&a);
	} else {
		int r = parse_args(argc, argv, &a.opt);
		if (r)
			return r == 1 ? 0 : r;
	}
	char run_dir_buf[4096];
	if (!a.opt.run_dir) {
		if (!a.opt.listen_unix) {
			a.opt.run_dir = "/run/husk";
		} else {
			husk_path_fmt(run_dir_buf, sizeof(run_dir_buf), "%s.d", a.opt.listen_unix);
			a.opt.run_dir = run_dir_buf;
		}
	}
	mkdir(a.opt.run_dir, 0700);

	struct husk_err err = { 0 };
	int lfd = -1;
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	/* The guest kernel turns the ACPI power button (QMP system_powerdown)
	 * into SIGPWR for PID 1: an orderly poweroff. */
	sigaddset(&mask, SIGPWR);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	_cleanup_fd_ int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	struct ev_io *sig_io = NULL;
	a.started_ns = ev_now_ns();
	if (ev_loop_new(&a.loop, &err) < 0 || init_reaper_new(a.loop, &a.reaper, &err) < 0 ||
	    ttrpc_server_new(a.loop, NULL, &a.server, &err) < 0 ||
	    task_service_register(&a, &err) < 0 || sandbox_service_register(&a, &err) < 0)
		goto fatal;
	if (a.opt.listen_unix)
		lfd = husk_unix_listen(a.opt.listen_unix, &err);
	else
		lfd = agent_listen_port(&a, a.opt.vsock_port, &err);
	if (lfd < 0 || ttrpc_server_add_listener(a.server, lfd, &err) < 0)
		goto fatal;
	if (a.opt.debug_console && console_start(&a, &err) < 0)
		goto fatal;
	if (a.opt.pid1)
		logport_start(&a, a.opt.log_port);
	if (sfd < 0 || ev_io_add(a.loop, sfd, EPOLLIN, on_signal, &a, &sig_io, &err) < 0)
		goto fatal;
	if (!a.opt.pid1) {
		printf("ready\n");
		fflush(stdout);
	}
	/* PID 1 says so once its log stream is settled (agent/logport.c). */
	if (!a.opt.pid1)
		fprintf(stderr, "husk-agent %s: serving on %s%s\n", HUSK_AGENT_VERSION,
			a.opt.listen_unix ? "unix:" : "vsock port ",
			a.opt.listen_unix ? a.opt.listen_unix : "1024");
	int r = ev_run(a.loop);
	if (a.opt.pid1)
		init_poweroff(a.poweroff_requested ? "DestroySandbox" : "power button or signal");

	/* --listen: leave nothing behind. */
	while (a.containers) {
		struct container *c = a.containers;
		a.containers = c->next;
		if (c->init.pid > 0 && !c->init.exited)
			kill(c->init.pid, SIGKILL);
		if (c->jc && c->jc->cgroup) {
			jail_cgroup_destroy(c->jc->cgroup, NULL);
			c->jc->cgroup = NULL;
		}
		container_free(c);
	}
	ev_io_del(sig_io);
	logport_stop(&a);
	ttrpc_server_free(a.server);
	init_reaper_free(a.reaper);
	events_free(&a);
	ev_loop_free(a.loop);
	if (a.opt.listen_unix)
		unlink(a.opt.listen_unix);
	return r < 0 ? 1 : 0;

fatal:
	if (a.opt.pid1)
		init_poweroff(err.msg);
	fprintf(stderr, "husk-agent: %s\n", err.msg);
	return 1;
}
