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
#include "init/console.h"
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

/* At most this many refusals are logged per window; the rest are counted
 * and summed up in the next window's first line. A container that loops on
 * connect() must not flood the console (slow under TCG) or the log stream. */
#define REFUSED_LOG_MAX 5
#define REFUSED_LOG_WINDOW_NS (10ull * 1000 * 1000 * 1000)

static void log_refused(struct agent *a, unsigned port, unsigned cid, unsigned peer_port)
{
	a->refused_total++;
	uint64_t now = ev_now_ns();
	if (!a->refused_window_ns || now - a->refused_window_ns >= REFUSED_LOG_WINDOW_NS) {
		if (a->refused_unlogged)
			init_log(INIT_LOG_WARNING, "%llu more connections not from the host refused",
				 (unsigned long long)a->refused_unlogged);
		a->refused_window_ns = now;
		a->refused_logged = 0;
		a->refused_unlogged = 0;
	}
	if (a->refused_logged >= REFUSED_LOG_MAX) {
		a->refused_unlogged++;
		return;
	}
	a->refused_logged++;
	init_log(INIT_LOG_WARNING,
		 "port %u: refused a connection from CID %u port %u: only the host (CID %u) may connect",
		 port, cid, peer_port, VMADDR_CID_HOST);
}

bool agent_peer_is_host(struct agent *a, int fd, unsigned port)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0 && ss.ss_family == AF_UNIX)
		return true;
	struct sockaddr_vm peer = { 0 };
	len = sizeof(peer);
	if (getpeername(fd, (struct sockaddr *)&peer, &len) < 0 || peer.svm_family != AF_VSOCK) {
		log_refused(a, port, VMADDR_CID_ANY, VMADDR_PORT_ANY);
		return false;
	}
	if (peer.svm_cid == VMADDR_CID_HOST)
		return true;
	log_refused(a, port, peer.svm_cid, peer.svm_port);
	return false;
}

int agent_accept(struct agent *a, int listen_fd, unsigned port, int flags)
{
	/* Bounded: a flood of refused connections must not starve the loop;
	 * the listener stays readable and we come back. */
	for (int i = 0; i < 64; i++) {
		int c = accept4(listen_fd, NULL, NULL, flags);
		if (c < 0)
			return -errno;
		if (agent_peer_is_host(a, c, port))
			return c;
		close(c);
	}
	return -EAGAIN;
}

static int ttrpc_peer_filter(int fd, void *data)
{
	struct agent *a = data;
	return agent_peer_is_host(a, fd, a->opt.vsock_port) ? 0 : -EPERM;
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
	struct agent a = { .log_fd = -1, .portfwd_fd = -1 };
	a.opt.pid1 = getpid() == 1;
	a.opt.vsock_port = 1024;
	if (a.opt.pid1) {
		a.opt.run_dir = "/run/husk";
		a.opt.cgroup_mount = "/sys/fs/cgroup";
		setup_early(&a, argc, argv);
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
	/* PID 1 makes it once /run is mounted (setup_finish). */
	if (!a.opt.pid1) {
		mkdir(a.opt.run_dir, 0700);
		a.setup_done = true;
	}

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
	struct ttrpc_server_opts srv_opts = { .before_call = setup_before_call,
					      .before_call_data = &a };
	if (ev_loop_new(&a.loop, &err) < 0 || init_reaper_new(a.loop, &a.reaper, &err) < 0 ||
	    ttrpc_server_new(a.loop, &srv_opts, &a.server, &err) < 0 ||
	    task_service_register(&a, &err) < 0 || sandbox_service_register(&a, &err) < 0)
		goto fatal;
	/* On vsock only the host is served (agent_peer_is_host); the unix
	 * socket of --listen unix: keeps the check it has. */
	if (a.opt.listen_unix)
		lfd = husk_unix_listen(a.opt.listen_unix, &err);
	else
		lfd = agent_listen_port(&a, a.opt.vsock_port, &err);
	if (lfd < 0 ||
	    ttrpc_server_add_listener_filtered(a.server, lfd, a.opt.listen_unix ? NULL : ttrpc_peer_filter,
					       &a, &err) < 0)
		goto fatal;
	if (a.opt.debug_console && console_start(&a, &err) < 0)
		goto fatal;
	if (portfwd_start(&a, &err) < 0)
		goto fatal;
	if (a.opt.pid1)
		log_stream_start(&a, a.opt.log_port);
	if (sfd < 0 || ev_io_add(a.loop, sfd, EPOLLIN, on_signal, &a, &sig_io, &err) < 0)
		goto fatal;
	if (!a.opt.pid1) {
		printf("ready\n");
		fflush(stdout);
	}
	/* PID 1 says so once its log stream is settled (agent/log_stream.c). */
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
	portfwd_stop(&a);
	log_stream_stop(&a);
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
