/* huskd: a pool of ready husk VMs per shape, handed to the shim and
 * huskctl on request (docs/pool.md).
 *
 *   huskd [--socket PATH] [--state-dir DIR] [--boot-parallel N] [--shape SPEC]...
 *   huskd status [--socket PATH]
 *
 * Under systemd, a socket passed with LISTEN_FDS=1 is used as it is. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "husk/cleanup.h"
#include "husk/file.h"
#include "husk/path.h"
#include "huskd.h"

#define SD_LISTEN_FDS_START 3
/* huskd answers from a loop that never waits: longer means it is stuck. */
#define STATUS_REPLY_MS 5000

void huskd_log(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("huskd: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: huskd [--socket PATH] [--state-dir DIR] [--boot-parallel N] [--shape SPEC]...\n"
		"       huskd status [--socket PATH]\n"
		"\n"
		"Keeps ready husk VMs and hands them to containerd-shim-husk-v2 and huskctl.\n"
		"  --socket PATH       where clients ask (default $HUSK_POOL_SOCKET, else\n"
		"                      <state dir>/huskd.sock)\n"
		"  --state-dir DIR     where the VMs' directories go (default as huskctl's)\n"
		"  --boot-parallel N   VMs booting at once, all shapes together (default 1)\n"

		"  --shape SPEC        a shape, SPEC = key=value,... with keys name, ready, kernel,\n"
		"                      initrd, cpus, memory, slots, accel, transport, tcg-cache,\n"
		"                      warm-up, vsockd, vmm, qemu, debug-console, merge-memory,\n"
		"                      log-level, cmdline (last: it takes the rest); repeatable.\n"
		"                      Without one: ready=1 of the defaults. See docs/pool.md.\n");
}

/* `huskd status`: the pool as huskd sees it, pretty JSON. */
static int cmd_status(const char *socket_path)
{
	struct husk_err err = { 0 };
	_cleanup_fd_ int fd = husk_seqpacket_connect(socket_path, &err);
	if (fd < 0) {
		fprintf(stderr, "huskd status: %s\n", err.msg);
		return 1;
	}
	const char req[] = "{\"status\":{}}";
	char buf[64 * 1024];
	int fds[HUSK_MSG_FDS_MAX];
	size_t n_fds;
	if (husk_msg_send(fd, req, sizeof(req) - 1, NULL, 0) < 0) {
		fprintf(stderr, "huskd status: %s: %s\n", socket_path, strerror(errno));
		return 1;
	}
	struct pollfd p = { .fd = fd, .events = POLLIN };
	if (poll(&p, 1, STATUS_REPLY_MS) != 1) {
		fprintf(stderr, "huskd status: %s: no reply in %d ms\n", socket_path, STATUS_REPLY_MS);
		return 1;
	}
	ssize_t n = husk_msg_recv(fd, buf, sizeof(buf) - 1, fds, &n_fds);
	if (n <= 0) {
		fprintf(stderr, "huskd status: %s: no reply\n", socket_path);
		return 1;
	}
	buf[n] = '\0';
	json_object *o = json_tokener_parse(buf);
	if (!o) {
		fprintf(stderr, "huskd status: a reply that is not JSON\n");
		return 1;
	}
	printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
								JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	return 0;
}

static void on_signal(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io, (void)events;
	struct huskd *d = data;
	struct signalfd_siginfo si;
	while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		huskd_log("signal %u: stopping (VMs handed out keep running)", si.ssi_signo);
	ev_stop(d->loop);
}

/* The warm-up image (husk_pool_keep): husk-vsockd, a static program that
 * exits at once with --help, as /warm-up in an erofs image in the image
 * cache, held while huskd runs. Copied with its mode and mtime, so that the
 * image's identity, and so the image, is the same every start. */
static char *warm_image(const char *state_dir, int *hold)
{
	struct husk_err err = { 0 };
	_cleanup_free_ char *prog = husk_default_path("vsockd", &err), *data = NULL;
	char dir[PATH_MAX], file[PATH_MAX];
	size_t len = 0;
	struct stat st;
	char *image = NULL;
	if (!prog || stat(prog, &st) < 0 ||
	    husk_read_file(prog, 64u << 20, &data, &len, &err) < 0) {
		huskd_log("no warm-up (husk-vsockd: %s): first containers start cold in the guest",
			  err.msg[0] ? err.msg : strerror(errno));
		return NULL;
	}
	if (husk_path_fmt(dir, sizeof(dir), "%s/huskd-warm-up.%d", state_dir, (int)getpid()) < 0 ||
	    husk_path_fmt(file, sizeof(file), "%s/" HUSK_POOL_WARM_PROGRAM, dir) < 0) {
		huskd_log("no warm-up: state directory %s: too long", state_dir);
		return NULL;
	}
	int fd = -1;
	struct timespec times[2] = { st.st_mtim, st.st_mtim };
	if (mkdir(dir, 0755) < 0 ||
	    (fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755)) < 0 ||
	    husk_write_all(fd, data, len) < 0 || fchmod(fd, 0755) < 0 ||
	    futimens(fd, times) < 0) {
		huskd_log("no warm-up: %s: %s", file, strerror(errno));
	} else {
		close(fd);
		fd = -1;
		utimensat(AT_FDCWD, dir, times, 0);
		if (husk_image_from_dir_hold(NULL, dir, &image, hold, &err) < 0)
			huskd_log("no warm-up: its image: %s", err.msg);
	}
	if (fd >= 0)
		close(fd);
	unlink(file);
	rmdir(dir);
	return image;
}

/* systemd's socket activation: LISTEN_PID is us and LISTEN_FDS is 1. */
static int inherited_socket(void)
{
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	if (!pid || !fds || atol(pid) != (long)getpid() || atoi(fds) != 1)
		return -1;
	int fd = SD_LISTEN_FDS_START;
	int type = 0;
	socklen_t len = sizeof(type);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_SEQPACKET) {
		huskd_log("LISTEN_FDS: fd 3 is not a SOCK_SEQPACKET socket "
			  "(ListenSequentialPacket= in the .socket unit)");
		return -2;
	}
	/* The loop accepts until EAGAIN. */
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0 ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
		huskd_log("LISTEN_FDS: fd 3: %s", strerror(errno));
		return -2;
	}
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return fd;
}

int main(int argc, char **argv)
{
	char sock_buf[PATH_MAX], state_buf[PATH_MAX];
	struct huskd d = { .boot_parallel = 1, .listen_fd = -1 };
	struct husk_err err = { 0 };
	struct shape **tail = &d.shapes;
	bool status_cmd = argc > 1 && !strcmp(argv[1], "status");
	if (status_cmd) {
		argv++;
		argc--;
	}
	enum { OPT_SOCKET = 256, OPT_STATE, OPT_SHAPE, OPT_PARALLEL };
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, OPT_SOCKET },
		{ "state-dir", required_argument, NULL, OPT_STATE },
		{ "shape", required_argument, NULL, OPT_SHAPE },
		{ "boot-parallel", required_argument, NULL, OPT_PARALLEL },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c, rc = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case OPT_SOCKET:
			d.socket_path = optarg;
			break;
		case OPT_STATE:
			d.state_dir = optarg;
			break;
		case OPT_PARALLEL: {
			char *end;
			long n = strtol(optarg, &end, 10);
			if (*end || n < 1 || n > 64) {
				huskd_log("--boot-parallel %s: want 1 to 64", optarg);
				return 2;
			}
			d.boot_parallel = (unsigned)n;
			break;
		}
		case OPT_SHAPE:
			if (status_cmd)
				break;
			if (shape_parse(optarg, tail, &err) < 0) {
				huskd_log("%s", err.msg);
				return 2;
			}
			(*tail)->d = &d;
			tail = &(*tail)->next;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		huskd_log("unexpected argument \"%s\"", argv[optind]);
		usage(stderr);
		return 2;
	}
	/* The default follows --state-dir, as the clients' follows theirs. */
	if (!d.socket_path)
		d.socket_path = husk_default_pool_socket(d.state_dir, sock_buf, sizeof(sock_buf));
	if (status_cmd)
		return cmd_status(d.socket_path);
	if (!d.state_dir)
		d.state_dir = husk_default_state_dir(state_buf, sizeof(state_buf));
	if (!d.shapes) {
		if (shape_parse(NULL, tail, &err) < 0) {
			huskd_log("default shape: %s", err.msg);
			return 2;
		}
		d.shapes->d = &d;
	}
	for (struct shape *a = d.shapes; a; a = a->next)
		for (struct shape *b = a->next; b; b = b->next)
			if (!strcmp(a->name, b->name) || (!strcmp(a->key, b->key) && a->slots == b->slots)) {
				huskd_log("--shape %s and --shape %s: the same %s: give each once",
					  a->name, b->name, strcmp(a->name, b->name) ? "VM" : "name");
				return 2;
			}

	signal(SIGPIPE, SIG_IGN);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	_cleanup_fd_ int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	struct ev_io *sig_io = NULL;
	bool own_socket = false;
	if (husk_mkdir_p(d.state_dir, 0700, &err) < 0) {
		huskd_log("state directory %s: %s", d.state_dir, err.msg);
		goto out;
	}
	d.listen_fd = inherited_socket();
	if (d.listen_fd == -2)
		goto out;
	if (d.listen_fd < 0) {
		/* Clients are root's tools: the socket is for its owner only. */
		mode_t old = umask(0077);
		d.listen_fd = husk_seqpacket_listen(d.socket_path, &err);
		umask(old);
		if (d.listen_fd < 0) {
			huskd_log("%s", err.msg);
			goto out;
		}
		own_socket = true;
	}
	if (ev_loop_new(&d.loop, &err) < 0 ||
	    ev_io_add(d.loop, d.listen_fd, EPOLLIN, serve_accept, &d, &d.listen_io, &err) < 0 ||
	    (sfd >= 0 && ev_io_add(d.loop, sfd, EPOLLIN, on_signal, &d, &sig_io, &err) < 0)) {
		huskd_log("%s", err.msg);
		goto out;
	}
	int warm_hold = -1;
	bool warm = false;
	for (struct shape *s = d.shapes; s; s = s->next)
		warm |= s->warm_up;
	if (warm)
		d.warm_image = warm_image(d.state_dir, &warm_hold);
	for (struct shape *s = d.shapes; s; s = s->next)
		huskd_log("shape %s: %u ready, %u slots: %s", s->name, s->ready_target, s->slots, s->key);
	huskd_log("serving %s (state in %s)", d.socket_path, d.state_dir);
	pool_refill(&d);
	rc = ev_run(d.loop) < 0 ? 1 : 0;
	/* Stop taking requests first: nothing is handed out while VMs go. */
	ev_io_del(d.listen_io);
	d.listen_io = NULL;
	if (own_socket)
		unlink(d.socket_path);
	close(d.listen_fd);
	d.listen_fd = -1;
	pool_shutdown(&d);
	husk_image_release(warm_hold);
	free(d.warm_image);
out:
	ev_io_del(sig_io);
	if (d.listen_fd >= 0) {
		close(d.listen_fd);
		if (own_socket)
			unlink(d.socket_path);
	}
	while (d.vms) {
		struct pool_vm *v = d.vms;
		d.vms = v->next;
		/* Handed out: the keeper lives on, reparented; not ours now. */
		if (v->keeper_pidfd >= 0)
			close(v->keeper_pidfd);
		ev_io_del(v->keeper_io);
		free(v->key);
		free(v);
	}
	while (d.shapes) {
		struct shape *s = d.shapes;
		d.shapes = s->next;
		shape_free(s);
	}
	if (d.loop)
		ev_loop_free(d.loop);
	return rc;
}
