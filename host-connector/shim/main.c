/* containerd-shim-husk-v2: the command line containerd runs.
 *
 *   ... -namespace NS -address A -publish-binary B -id ID [-debug] start
 *       (cwd: the bundle) creates the shim socket, forks the shim daemon,
 *       writes the bundle's `address` file and prints unix://SOCKET.
 *   ... -id ID -bundle DIR delete
 *       cleans up after a shim that is gone and prints a DeleteResponse.
 *
 * Flags are Go-style (one dash, `-flag value` or `-flag=value`). */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "github.com/containerd/containerd/runtime/v2/task/shim.pb-c.h"
#include "husk/cleanup.h"
#include "husk/file.h"
#include "husk/path.h"
#include "husk/sock.h"
#include "mounts.h"
#include "vm.h"

#define SHIM_VERSION "0.1.0"

/* <state dir>/shim/<socket_name>: like containerd's own
 * /run/containerd/s/<hash>, distinct per containerd. */
static int socket_path(const struct shim_opts *o, const char *state, char *out, size_t len,
		       struct husk_err *err)
{
	char dir[PATH_MAX], name[64];
	shim_socket_name(o, name, sizeof(name));
	if (husk_path_fmt(dir, sizeof(dir), "%s/shim", state) < 0 ||
	    husk_path_fmt(out, len, "%s/%s", dir, name) < 0)
		return husk_err_set(err, -ENAMETOOLONG, "shim socket in %s: path too long", state);
	mkdir(state, 0711);
	if (mkdir(dir, 0711) < 0 && errno != EEXIST)
		return husk_err_sys(err, -errno, "mkdir %s", dir);
	return 0;
}

/* ---- the daemon ---- */

static void on_signal(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io, (void)events;
	struct signalfd_siginfo si;
	while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		shim_log("signal %u: shutting down", si.ssi_signo);
	ev_stop(((struct shim *)data)->loop);
}

static int serve(const struct shim_opts *opt, int listen_fd)
{
	struct shim s = { .opt = *opt };
	s.vm.vsockd_pidfd = -1;
	s.vm.share_lock_fd = -1;
	shim_portfwd_init(&s.vm.pf);
	struct husk_err err = { 0 };
	struct ev_io *sig_io = NULL;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	/* Before the worker thread exists: it inherits the mask. */
	sigprocmask(SIG_BLOCK, &set, NULL);
	_cleanup_fd_ int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	int rc;
	if ((rc = ev_loop_new(&s.loop, &err)) < 0)
		goto out;
	if (!(s.pub = publisher_new(s.loop, opt->ttrpc_address, opt->namespace_))) {
		rc = husk_err_set(&err, -ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = shim_worker_new(s.loop, &s.worker, &err)) < 0 ||
	    (rc = ttrpc_server_new(s.loop, NULL, &s.server, &err)) < 0 ||
	    (rc = shim_service_register(&s, &err)) < 0 ||
	    (rc = ttrpc_server_add_listener(s.server, listen_fd, &err)) < 0 ||
	    (sfd >= 0 && (rc = ev_io_add(s.loop, sfd, EPOLLIN, on_signal, &s, &sig_io, &err)) < 0))
		goto out;
	listen_fd = -1;
	shim_log("shim %d serving %s for %s/%s", getpid(), opt->socket, opt->namespace_, opt->id);
	rc = ev_run(s.loop);
	if (rc < 0)
		husk_err_set(&err, rc, "event loop");
out:
	if (rc < 0)
		shim_log("shim for %s: %s", opt->id, err.msg);
	if (listen_fd >= 0)
		close(listen_fd);
	s.shutting_down = true;
	/* A job under way (a boot, a hot-add) ends first, then the VM goes.
	 * An idle worker's VM is stopped before the thread exits: QEMU was
	 * spawned by that thread, whose exit the kernel takes as its parent's
	 * death (PR_SET_PDEATHSIG). */
	if (!shim_worker_pending(s.worker))
		shim_vm_stop_now(&s);
	shim_worker_free(s.worker);
	shim_vm_stop_now(&s);
	/* What containerd can still take of the events (a Delete's). */
	publisher_drain(s.pub, 2000);
	ev_io_del(sig_io);
	ttrpc_server_free(s.server); /* cancels calls still waiting on processes */
	publisher_free(s.pub);
	shim_table_free(&s);
	if (s.loop)
		ev_loop_free(s.loop);
	if (s.cfg_loaded)
		shim_config_free(&s.cfg);
	unlink(opt->socket);
	shim_log("shim for %s exits", opt->id);
	return rc < 0 ? 1 : 0;
}

/* The daemon keeps none of containerd's pipes (containerd waits for EOF on
 * them); its log goes to the bundle's `log` FIFO, which containerd reads. */
static void detach_stdio(void)
{
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	int log = open("log", O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		dup2(log >= 0 ? log : null, STDERR_FILENO);
		close(null);
	}
	if (log >= 0)
		close(log);
}

/* `start`'s stdin: containerd's runtime options as a serialized Any, or
 * nothing. */
static Google__Protobuf__Any *read_start_options(void)
{
	if (isatty(STDIN_FILENO))
		return NULL;
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	if (husk_read_fd(STDIN_FILENO, "stdin", 1u << 20, &buf, &len, NULL) < 0 || !len)
		return NULL;
	return google__protobuf__any__unpack(NULL, len, (const uint8_t *)buf);
}

/* Returns in the daemon too: main's return runs the exit handlers
 * (LeakSanitizer's among them under ASan). */
static int cmd_start(struct shim_opts *o)
{
	struct husk_err err = { 0 };
	char path[PATH_MAX], state[PATH_MAX];
	o->start_options = read_start_options();
	/* The config's state_dir holds the socket too. A bad config is
	 * reported by Create, where containerd shows it. */
	struct shim_config cfg;
	if (shim_config_load(&cfg, o->start_options, NULL) == 0) {
		shim_config_state_dir(&cfg, state, sizeof(state));
		shim_config_free(&cfg);
	} else {
		husk_default_state_dir(state, sizeof(state));
	}
	/* As containerd-shim-runc-v2: a pod's containers are grouped under its
	 * sandbox id (the CRI annotations in the bundle's config.json). */
	enum shim_pod_role role;
	char sandbox[256];
	if (shim_pod_role_file("config.json", &role, sandbox, sizeof(sandbox), &err) < 0) {
		fprintf(stderr, "containerd-shim-husk-v2: %s\n", err.msg);
		return 1;
	}
	if (role == SHIM_POD_CONTAINER)
		o->group = sandbox;
	if (socket_path(o, state, path, sizeof(path), &err) < 0) {
		fprintf(stderr, "containerd-shim-husk-v2: %s\n", err.msg);
		return 1;
	}
	o->socket = path;
	/* A shim already serving this container: hand out its address. */
	int probe = husk_unix_connect(path, NULL);
	if (probe >= 0) {
		close(probe);
	} else {
		int lfd = husk_unix_listen(path, &err);
		if (lfd < 0) {
			fprintf(stderr, "containerd-shim-husk-v2: %s\n", err.msg);
			return 1;
		}
		pid_t pid = fork();
		if (pid < 0) {
			fprintf(stderr, "containerd-shim-husk-v2: fork: %s\n", strerror(errno));
			unlink(path);
			return 1;
		}
		if (pid == 0) {
			setsid();
			detach_stdio();
			if (chdir("/") < 0)
				shim_log("chdir /: %s", strerror(errno));
			signal(SIGPIPE, SIG_IGN);
			return serve(o, lfd);
		}
		close(lfd);
	}
	FILE *f = fopen("address", "we");
	if (!f || fprintf(f, "unix://%s", path) < 0 || fclose(f) != 0) {
		fprintf(stderr, "containerd-shim-husk-v2: writing the address file: %s\n",
			strerror(errno));
		return 1;
	}
	printf("unix://%s", path);
	return fflush(stdout) == 0 ? 0 : 1;
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st, (void)ftw;
	if (type == FTW_DP)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

/* The first line of <bundle>/<name>, if it ends in "/<want>" (a sanity
 * check: the path is removed). */
static bool bundle_record(const char *bundle, const char *name, const char *prefix,
			  const char *want, char *out, size_t len)
{
	char path[PATH_MAX], buf[PATH_MAX + 16];
	if (!bundle || husk_path_fmt(path, sizeof(path), "%s/%s", bundle, name) < 0)
		return false;
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	if (!f || !fgets(buf, sizeof(buf), f))
		return false;
	buf[strcspn(buf, "\n")] = '\0';
	size_t pl = strlen(prefix), bl = strlen(buf), wl = strlen(want);
	if (strncmp(buf, prefix, pl) != 0 || buf[pl] != '/' || bl < pl + wl + 1 ||
	    strcmp(buf + bl - wl, want) != 0 || buf[bl - wl - 1] != '/')
		return false;
	snprintf(out, len, "%s", buf + pl);
	return true;
}

/* A VM from huskd's pool has the pool's name (pool-...), so the record
 * above does not match the shim's: its keeper removes it once the shim is
 * gone; this is for when it could not. Only a directory nobody holds. */
static void remove_pooled_vm(const char *bundle)
{
	char path[PATH_MAX], buf[PATH_MAX];
	if (!bundle || husk_path_fmt(path, sizeof(path), "%s/" SHIM_VM_RECORD, bundle) < 0)
		return;
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	if (!f || !fgets(buf, sizeof(buf), f))
		return;
	buf[strcspn(buf, "\n")] = '\0';
	char *base = strrchr(buf, '/');
	if (!base || base == buf || strncmp(base + 1, "pool-", 5) != 0)
		return;
	*base++ = '\0';
	husk_vm_remove_stale(buf, base, NULL);
}

/* After the shim is gone (it exited or was killed): what it may have left.
 * Its VM died with it (QEMU and husk-vsockd get SIGKILL when their parent
 * dies), so only files and mounts remain. The bundle's `address` and
 * `husk-vm` say where they are (the config may have named a state_dir). */
/* Whether a shim still serves `path` (a pod's shim outlives the sandbox
 * containerd cleans up after). */
static bool socket_served(const char *path)
{
	struct husk_err err = { 0 };
	int fd = husk_unix_connect(path, &err);
	if (fd < 0)
		return false;
	close(fd);
	return true;
}

/* Whether the VM of `vmdir` still has its owner (a live shim holds its
 * lock: the pod's other containers still use it). */
static bool vm_in_use(const char *vmdir)
{
	char path[PATH_MAX];
	if (husk_path_fmt(path, sizeof(path), "%s/lock", vmdir) < 0)
		return false;
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return false;
	bool held = flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK;
	close(fd);
	return held;
}

static int cmd_delete(struct shim_opts *o)
{
	char path[PATH_MAX], state[PATH_MAX], name[64], vmdir[PATH_MAX];
	shim_socket_name(o, name, sizeof(name));
	/* containerd also calls this for a pod's sandbox whose shim goes on
	 * serving the pod's other containers: leave a live shim's socket, VM
	 * and shared directory alone (it removes them when it exits). */
	bool live = false;
	if ((bundle_record(o->bundle, "address", "unix://", name, path, sizeof(path)) ||
	     socket_path(o, husk_default_state_dir(state, sizeof(state)), path, sizeof(path),
			 NULL) == 0) &&
	    !(live = socket_served(path)))
		unlink(path);
	shim_vm_name(o->namespace_, o->id, name, sizeof(name));
	husk_default_state_dir(state, sizeof(state));
	if ((bundle_record(o->bundle, SHIM_VM_RECORD, "", name, vmdir, sizeof(vmdir)) ||
	     husk_path_fmt(vmdir, sizeof(vmdir), "%s/%s", state, name) == 0) &&
	    !(live = live || vm_in_use(vmdir)))
		nftw(vmdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	if (!live) {
		remove_pooled_vm(o->bundle);
		mounts_cleanup_record(o->bundle);
	}
	if (o->bundle && husk_path_fmt(path, sizeof(path), "%s/rootfs", o->bundle) == 0)
		umount2(path, MNT_DETACH);
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	ts.seconds = now.tv_sec;
	ts.nanos = (int32_t)now.tv_nsec;
	Containerd__Task__V2__DeleteResponse resp = CONTAINERD__TASK__V2__DELETE_RESPONSE__INIT;
	resp.exit_status = 128 + 9; /* as containerd-shim-runc-v2: "killed" */
	resp.exited_at = &ts;
	size_t len = protobuf_c_message_get_packed_size(&resp.base);
	uint8_t buf[256];
	if (len > sizeof(buf))
		return 1;
	protobuf_c_message_pack(&resp.base, buf);
	return fwrite(buf, 1, len, stdout) == len && fflush(stdout) == 0 ? 0 : 1;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: containerd-shim-husk-v2 -namespace NS -address ADDR -id ID "
		   "[-publish-binary B] [-bundle DIR] [-debug] start|delete\n"
		   "       containerd-shim-husk-v2 -v\n"
		   "containerd runs this as runtime io.containerd.husk.v2; see docs/containerd.md\n");
}

int main(int argc, char **argv)
{
	struct shim_opts o = { .namespace_ = "default", .address = "", .ttrpc_address = "" };
	const char *cmd = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (a[0] != '-') {
			if (cmd) {
				usage(stderr);
				return 2;
			}
			cmd = a;
			continue;
		}
		a += a[1] == '-' ? 2 : 1;
		const char *eq = strchr(a, '=');
		size_t n = eq ? (size_t)(eq - a) : strlen(a);
#define FLAG(name) (n == strlen(name) && strncmp(a, name, n) == 0)
		if (FLAG("debug")) {
			o.debug = true;
			continue;
		}
		if (FLAG("v") || FLAG("version")) {
			printf("containerd-shim-husk-v2 %s\n", SHIM_VERSION);
			return 0;
		}
		if (FLAG("h") || FLAG("help")) {
			usage(stdout);
			return 0;
		}
		const char *val = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
		if (!val) {
			fprintf(stderr, "containerd-shim-husk-v2: flag -%.*s needs a value\n", (int)n, a);
			return 2;
		}
		if (FLAG("namespace"))
			o.namespace_ = val;
		else if (FLAG("address"))
			o.address = val;
		else if (FLAG("id"))
			o.id = val;
		else if (FLAG("bundle"))
			o.bundle = val;
		else if (FLAG("publish-binary") || FLAG("socket"))
			; /* events go over TTRPC_ADDRESS; the socket is ours to pick */
		else {
			fprintf(stderr, "containerd-shim-husk-v2: unknown flag -%.*s\n", (int)n, a);
			return 2;
		}
#undef FLAG
	}
	const char *ta = getenv("TTRPC_ADDRESS");
	if (ta)
		o.ttrpc_address = ta;
	if (!cmd || !o.id) {
		usage(stderr);
		return 2;
	}
	if (strcmp(cmd, "start") == 0) {
		int rc = cmd_start(&o);
		if (o.start_options)
			protobuf_c_message_free_unpacked(&o.start_options->base, NULL);
		return rc;
	}
	if (strcmp(cmd, "delete") == 0)
		return cmd_delete(&o);
	fprintf(stderr, "containerd-shim-husk-v2: unknown command %s\n", cmd);
	usage(stderr);
	return 2;
}
