/* huskctl run and huskctl exec: one container process with its stdio
 * relayed, from creation to its exit status. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "husk/cleanup.h"
#include "huskctl.h"
#include "relay.h"
#include "spec.h"

#define CALL_TIMEOUT_MS 30000
#define MAX_ENV 256
#define MAX_DISKS 8
#define MAX_IO_LIMITS 16

/* Per-process stdio ports, random so that concurrent execs in one VM do
 * not collide; never the agent's own 1024-1026. */
static struct husk_stdio pick_ports(bool in, bool terminal)
{
	uint32_t r = 0;
	(void)!getrandom(&r, sizeof(r), 0);
	uint32_t base = 0x10000 + (r % 0x3fff0000u) / 4 * 4;
	return (struct husk_stdio){ .in = in ? base : 0, .out = base + 1,
				    .err = terminal ? 0 : base + 2, .terminal = terminal };
}

struct proc_streams {
	int in, out, err;
};

static void close_streams(struct proc_streams *s)
{
	if (s->in >= 0)
		close(s->in);
	if (s->out >= 0)
		close(s->out);
	if (s->err >= 0)
		close(s->err);
	s->in = s->out = s->err = -1;
}

/* After Create/Exec: the agent listens on the ports; connect before Start
 * so that no output is produced before we are there to take it. */
static int connect_streams(struct husk_vm *vm, const struct husk_stdio *io,
			   struct proc_streams *s, struct husk_err *err)
{
	s->in = s->out = s->err = -1;
	const uint32_t ports[3] = { io->in, io->out, io->err };
	int *fds[3] = { &s->in, &s->out, &s->err };
	for (int i = 0; i < 3; i++) {
		if (!ports[i])
			continue;
		int fd = husk_vm_connect(vm, ports[i], 5000, err);
		if (fd < 0) {
			close_streams(s);
			return fd;
		}
		*fds[i] = fd;
	}
	return 0;
}

/* Start, relay, Wait, Delete. Returns the exit status, or -errno. */
static int run_process(struct husk_vm *vm, struct husk_agent *a, const char *id,
		       const char *exec_id, const struct husk_stdio *io, int log_fd,
		       struct husk_err *err)
{
	struct proc_streams s;
	int r = connect_streams(vm, io, &s, err);
	if (r < 0)
		return r;
	if ((r = husk_task_start(a, id, exec_id, NULL, err)) < 0) {
		close_streams(&s);
		return r;
	}
	struct relay_opts ro = { .in = s.in, .out = s.out, .err = s.err, .log = log_fd,
				 .vm_pidfd = husk_vm_pidfd(vm), .agent_fd = husk_agent_fd(a),
				 .terminal = io->terminal, .agent = a, .id = id, .exec_id = exec_id };
	r = relay_run(&ro, err);
	close_streams(&s);
	if (r < 0)
		return r;
	uint32_t status = 0;
	if ((r = husk_task_wait(a, id, exec_id, &status, err)) < 0)
		return r;
	/* The agent logs the exit before it answers Wait, and both travel the
	 * guest's one vsock queue in order: what it logged is here now. */
	if (log_fd >= 0) {
		char buf[4096];
		ssize_t n;
		while ((n = recv(log_fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
			(void)!write(STDERR_FILENO, buf, (size_t)n);
	}
	/* SIGKILL from the kernel's OOM killer looks like any other: the
	 * cgroup's memory.events tells them apart. */
	struct husk_stats st;
	if (status == 128 + 9 && husk_task_stats(a, id, &st, NULL) == 0 && st.oom_kills) {
		char limit[64] = "no memory limit: the VM ran out of memory";
		if (st.memory_limit != UINT64_MAX)
			snprintf(limit, sizeof(limit), "memory limit %llu bytes",
				 (unsigned long long)st.memory_limit);
		fprintf(stderr, "huskctl: %s was killed by the OOM killer (%s, %llu OOM kill%s in "
				"the container)\n",
			exec_id ? exec_id : "the container", limit, (unsigned long long)st.oom_kills,
			st.oom_kills == 1 ? "" : "s");
	}
	if ((r = husk_task_delete(a, id, exec_id, NULL, err)) < 0)
		return r;
	return (int)(status & 0xff);
}

struct proc_opts {
	char *env[MAX_ENV];
	size_t n_env;
	const char *cwd, *user;
	bool tty, interactive;
};

static int add_env(struct proc_opts *p, char *kv)
{
	if (p->n_env >= MAX_ENV)
		return fail("--env: at most %d variables", MAX_ENV);
	p->env[p->n_env++] = kv;
	return 0;
}

enum {
	OPT_ROOTFS = 256, OPT_IMAGE, OPT_CPUS, OPT_MEMORY, OPT_KERNEL, OPT_INITRD, OPT_ACCEL,
	OPT_TRANSPORT, OPT_DEBUG_CONSOLE, OPT_BOOT_TIMEOUT, OPT_HOSTNAME, OPT_LIMIT_MEMORY,
	OPT_LIMIT_PIDS, OPT_IMAGE_CACHE, OPT_LOG_LEVEL, OPT_AGENT_LOG, OPT_DISK, OPT_SYSCTL,
	OPT_LIMIT_CPUS, OPT_CPU_QUOTA, OPT_CPU_PERIOD, OPT_CPU_SHARES, OPT_CPUSET_CPUS,
	OPT_CPUSET_MEMS, OPT_IO_WEIGHT, OPT_IO_MAX,
};

static unsigned parse_uint(const char *opt, const char *s, unsigned max, bool *ok)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *end || end == s || v > max || s[0] == '-') {
		fail("%s \"%s\": want a number up to %u", opt, s, max);
		*ok = false;
		return 0;
	}
	return (unsigned)v;
}

static void release_hold(int *fd)
{
	husk_image_release(*fd);
}

int cmd_run(const struct global_opts *g, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "rootfs", required_argument, NULL, OPT_ROOTFS },
		{ "image", required_argument, NULL, OPT_IMAGE },
		{ "tty", no_argument, NULL, 't' },
		{ "interactive", no_argument, NULL, 'i' },
		{ "env", required_argument, NULL, 'e' },
		{ "cwd", required_argument, NULL, 'w' },
		{ "user", required_argument, NULL, 'u' },
		{ "name", required_argument, NULL, 'n' },
		{ "hostname", required_argument, NULL, OPT_HOSTNAME },
		{ "cpus", required_argument, NULL, OPT_CPUS },
		{ "memory", required_argument, NULL, OPT_MEMORY },
		{ "limit-memory", required_argument, NULL, OPT_LIMIT_MEMORY },
		{ "limit-pids", required_argument, NULL, OPT_LIMIT_PIDS },
		{ "kernel", required_argument, NULL, OPT_KERNEL },
		{ "initrd", required_argument, NULL, OPT_INITRD },
		{ "accel", required_argument, NULL, OPT_ACCEL },
		{ "transport", required_argument, NULL, OPT_TRANSPORT },
		{ "debug-console", no_argument, NULL, OPT_DEBUG_CONSOLE },
		{ "boot-timeout", required_argument, NULL, OPT_BOOT_TIMEOUT },
		{ "image-cache", required_argument, NULL, OPT_IMAGE_CACHE },
		{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
		{ "agent-log", no_argument, NULL, OPT_AGENT_LOG },
		{ "disk", required_argument, NULL, OPT_DISK },
		{ "sysctl", required_argument, NULL, OPT_SYSCTL },
		{ "limit-cpus", required_argument, NULL, OPT_LIMIT_CPUS },
		{ "cpu-quota", required_argument, NULL, OPT_CPU_QUOTA },
		{ "cpu-period", required_argument, NULL, OPT_CPU_PERIOD },
		{ "cpu-shares", required_argument, NULL, OPT_CPU_SHARES },
		{ "cpuset-cpus", required_argument, NULL, OPT_CPUSET_CPUS },
		{ "cpuset-mems", required_argument, NULL, OPT_CPUSET_MEMS },
		{ "io-weight", required_argument, NULL, OPT_IO_WEIGHT },
		{ "io-max", required_argument, NULL, OPT_IO_MAX },
		{ 0 },
	};
	struct proc_opts p = { 0 };
	struct husk_vm_config cfg = { .state_dir = g->state_dir, .die_with_parent = true };
	const char *rootfs = NULL, *image = NULL, *hostname = NULL, *cache = NULL;
	uint64_t limit_memory = 0, limit_pids = 0;
	_cleanup_free_ char *kernel = NULL, *initrd = NULL, *built_image = NULL;
	struct husk_err err = { 0 };
	bool ok = true, agent_log = false;
	/* --disk PATH:TARGET[:ro]: extra disks, after the rootfs (disk0). */
	struct husk_disk disks[1 + MAX_DISKS];
	struct husk_block_mount mounts[MAX_DISKS];
	char serials[MAX_DISKS][16];
	char *disk_args[MAX_DISKS];
	size_t n_extra = 0;
	char *sysctls[32];
	size_t n_sysctls = 0;
	/* Container cgroup resources beyond memory and pids (docker's names
	 * where docker has the flag). */
	uint64_t cpu_quota = 0, cpu_period = 0, cpu_shares = 0;
	bool limit_cpus = false, quota_or_period = false;
	const char *cpuset_cpus = NULL, *cpuset_mems = NULL;
	unsigned io_weight = 0;
	struct huskctl_io_limit io_limits[MAX_IO_LIMITS];
	size_t n_io_limits = 0;
	optind = 1;
	for (int o; ok && (o = getopt_long(argc, argv, "+tie:w:u:n:", opts, NULL)) != -1;) {
		switch (o) {
		case OPT_ROOTFS: rootfs = optarg; break;
		case OPT_IMAGE: image = optarg; break;
		case 't': p.tty = true; break;
		case 'i': p.interactive = true; break;
		case 'e':
			if (add_env(&p, optarg))
				return EXIT_HUSK;
			break;
		case 'w': p.cwd = optarg; break;
		case 'u': p.user = optarg; break;
		case 'n': cfg.name = optarg; break;
		case OPT_HOSTNAME: hostname = optarg; break;
		case OPT_CPUS: cfg.vcpus = parse_uint("--cpus", optarg, 255, &ok); break;
		case OPT_MEMORY: cfg.memory_mib = parse_uint("--memory", optarg, 1 << 20, &ok); break;
		case OPT_LIMIT_MEMORY:
			if (huskctl_parse_size(optarg, &limit_memory, &err) < 0)
				return fail("--limit-memory: %s", err.msg);
			break;
		case OPT_LIMIT_PIDS: limit_pids = parse_uint("--limit-pids", optarg, 1 << 22, &ok); break;
		case OPT_KERNEL: kernel = strdup(optarg); break;
		case OPT_INITRD: initrd = strdup(optarg); break;
		case OPT_ACCEL:
			if (husk_accel_parse(optarg, &cfg.accel, &err) < 0)
				return fail("--accel: %s", err.msg);
			break;
		case OPT_TRANSPORT:
			if (husk_transport_parse(optarg, &cfg.transport, &err) < 0)
				return fail("--transport: %s", err.msg);
			break;
		case OPT_DEBUG_CONSOLE: cfg.debug_console = true; break;
		case OPT_BOOT_TIMEOUT:
			cfg.boot_timeout_ms = parse_uint("--boot-timeout", optarg, 3600000, &ok);
			break;
		case OPT_IMAGE_CACHE: cache = optarg; break;
		case OPT_LOG_LEVEL: cfg.log_level = (int)parse_uint("--log-level", optarg, 7, &ok); break;
		case OPT_AGENT_LOG: agent_log = true; break;
		case OPT_SYSCTL:
			if (n_sysctls >= 32)
				return fail("--sysctl: at most 32");
			if (!strchr(optarg, '=') || optarg[0] == '=')
				return fail("--sysctl %s: want KEY=VALUE", optarg);
			sysctls[n_sysctls++] = optarg;
			break;
		case OPT_LIMIT_CPUS:
			if (huskctl_parse_cpus(optarg, &cpu_quota, &cpu_period, &err) < 0)
				return fail("--limit-cpus: %s", err.msg);
			limit_cpus = true;
			break;
		case OPT_CPU_QUOTA:
			cpu_quota = parse_uint("--cpu-quota", optarg, 4000000000u, &ok);
			quota_or_period = true;
			break;
		case OPT_CPU_PERIOD:
			cpu_period = parse_uint("--cpu-period", optarg, 1000000, &ok);
			quota_or_period = true;
			break;
		case OPT_CPU_SHARES: cpu_shares = parse_uint("--cpu-shares", optarg, 262144, &ok); break;
		case OPT_CPUSET_CPUS: cpuset_cpus = optarg; break;
		case OPT_CPUSET_MEMS: cpuset_mems = optarg; break;
		case OPT_IO_WEIGHT: io_weight = parse_uint("--io-weight", optarg, 1000, &ok); break;
		case OPT_IO_MAX:
			if (n_io_limits >= MAX_IO_LIMITS)
				return fail("--io-max: at most %d", MAX_IO_LIMITS);
			if (huskctl_parse_io_limit(optarg, &io_limits[n_io_limits++], &err) < 0)
				return fail("--io-max: %s", err.msg);
			break;
		case OPT_DISK:
			if (n_extra >= MAX_DISKS)
				return fail("--disk: at most %d", MAX_DISKS);
			disk_args[n_extra++] = optarg;
			break;
		default: return fail("run: see huskctl --help");
		}
	}
	if (!ok)
		return EXIT_HUSK;
	/* As docker: --cpus sets both, so it cannot be combined with either. */
	if (limit_cpus && quota_or_period)
		return fail("--limit-cpus: cannot be combined with --cpu-quota or --cpu-period");
	if (optind >= argc)
		return fail("run: no command given (huskctl run [OPTIONS] -- CMD [ARG...])");
	if (!rootfs == !image)
		return fail("run: give exactly one of --rootfs DIR or --image FILE");
	if (!kernel && !(kernel = husk_default_path("kernel", &err)))
		return fail("%s", err.msg);
	if (!initrd && !(initrd = husk_default_path("initrd", &err)))
		return fail("%s", err.msg);
	cfg.kernel = kernel;
	cfg.initrd = initrd;

	struct huskctl_spec_opts so = {
		.args = argv + optind, .n_args = (size_t)(argc - optind),
		.env = p.env, .n_env = p.n_env, .cwd = p.cwd, .user = p.user,
		.rootfs_dir = rootfs, .terminal = p.tty, .hostname = hostname,
		.memory_limit = limit_memory, .pids_limit = limit_pids,
		.cpu_quota_us = cpu_quota, .cpu_period_us = cpu_period, .cpu_shares = cpu_shares,
		.cpuset_cpus = cpuset_cpus, .cpuset_mems = cpuset_mems, .io_weight = io_weight,
		.io_limits = io_limits, .n_io_limits = n_io_limits,
	};
	_cleanup_free_ char *spec = NULL;
	if (huskctl_spec_build(&so, &spec, &err) < 0)
		return fail("%s", err.msg);
	/* Held until the VM is gone, so that a cache prune leaves it alone. */
	__attribute__((cleanup(release_hold))) int hold = -1;
	if (rootfs) {
		if (husk_image_from_dir_hold(cache, rootfs, &built_image, &hold, &err) < 0)
			return fail("%s", err.msg);
		image = built_image;
	} else if ((hold = husk_image_hold(image, &err)) < 0) {
		return fail("%s", err.msg);
	}
	disks[0] = (struct husk_disk){ .path = image, .serial = "rootfs0", .readonly = true };
	for (size_t i = 0; i < n_extra; i++) {
		char *path = disk_args[i], *target = strchr(path, ':');
		if (!target || target[1] != '/')
			return fail("--disk %s: want PATH:/TARGET[:ro]", path);
		*target++ = '\0';
		char *mode = strchr(target, ':');
		bool ro = false;
		if (mode) {
			*mode++ = '\0';
			if (strcmp(mode, "ro") != 0 && strcmp(mode, "rw") != 0)
				return fail("--disk %s:%s: mode \"%s\": want ro or rw", path, target, mode);
			ro = strcmp(mode, "ro") == 0;
		}
		const char *fstype = husk_image_fstype(path, &err);
		if (!fstype)
			return fail("--disk: %s", err.msg);
		ro = ro || strcmp(fstype, "erofs") == 0; /* erofs is read-only */
		snprintf(serials[i], sizeof(serials[i]), "disk%zu", i + 1);
		disks[1 + i] = (struct husk_disk){ .path = path, .serial = serials[i], .readonly = ro };
		mounts[i] = (struct husk_block_mount){ .serial = serials[i], .fstype = fstype,
						       .target = target, .readonly = ro };
	}
	cfg.disks = disks;
	cfg.n_disks = 1 + n_extra;

	/* From here a ^C must stop the VM in order, not kill us. */
	relay_block_signals();
	struct husk_vm *vm = NULL;
	if (husk_vm_start(&cfg, &vm, &err) < 0)
		return fail("starting the VM: %s", err.msg);
	struct husk_agent *a = NULL;
	_cleanup_free_ char *bundle = NULL;
	const char *id = husk_vm_name(vm);
	struct husk_stdio io = pick_ports(p.interactive, p.tty);
	int status = -1;
	if (husk_agent_open(vm, CALL_TIMEOUT_MS, &a, &err) == 0 &&
	    husk_agent_create_sandbox_opts(a, &(struct husk_sandbox_opts){
			    .hostname = hostname ? hostname : "husk", .sysctls = sysctls,
			    .n_sysctls = n_sysctls }, &err) == 0 &&
	    husk_agent_create_bundle_mounts(a, id, spec, "rootfs0", mounts, n_extra, &bundle,
					    &err) == 0 &&
	    husk_task_create(a, id, bundle, &io, NULL, &err) == 0)
		status = run_process(vm, a, id, NULL, &io, agent_log ? husk_vm_log_fd(vm) : -1, &err);
	if (status < 0) {
		char tail[2048];
		husk_vm_console_tail(vm, tail, sizeof(tail));
		/* A lost connection usually means QEMU is going: say so. */
		if (err.code == -EPIPE) {
			struct pollfd pf = { .fd = husk_vm_pidfd(vm), .events = POLLIN };
			poll(&pf, 1, 3000);
		}
		int qst;
		if (husk_vm_exited(vm, &qst))
			fail("the VM exited unexpectedly (QEMU %s %d)", WIFSIGNALED(qst) ?
			     "killed by signal" : "exited with status", WIFSIGNALED(qst) ?
			     WTERMSIG(qst) : WEXITSTATUS(qst));
		fail("%s", err.msg);
		if (tail[0] && (err.code == -EPIPE || getenv("HUSK_DEBUG")))
			fprintf(stderr, "huskctl: guest console (last lines):\n%s\n", tail);
	}
	husk_agent_close(a);
	struct husk_err stop_err = { 0 };
	if (husk_vm_stop(vm, 5000, &stop_err) < 0)
		fail("stopping the VM: %s", stop_err.msg);
	husk_vm_free(vm);
	return status < 0 ? EXIT_HUSK : status;
}

int cmd_exec(const struct global_opts *g, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "tty", no_argument, NULL, 't' },   { "interactive", no_argument, NULL, 'i' },
		{ "env", required_argument, NULL, 'e' }, { "cwd", required_argument, NULL, 'w' },
		{ "user", required_argument, NULL, 'u' }, { 0 },
	};
	struct proc_opts p = { 0 };
	optind = 1;
	for (int o; (o = getopt_long(argc, argv, "+tie:w:u:", opts, NULL)) != -1;) {
		switch (o) {
		case 't': p.tty = true; break;
		case 'i': p.interactive = true; break;
		case 'e':
			if (add_env(&p, optarg))
				return EXIT_HUSK;
			break;
		case 'w': p.cwd = optarg; break;
		case 'u': p.user = optarg; break;
		default: return fail("exec: see huskctl --help");
		}
	}
	if (optind + 1 >= argc)
		return fail("exec: usage: huskctl exec [OPTIONS] NAME -- CMD [ARG...]");
	const char *name = argv[optind++];
	if (strcmp(argv[optind], "--") == 0 && optind + 1 < argc)
		optind++;
	struct husk_err err = { 0 };
	struct huskctl_spec_opts so = {
		.args = argv + optind, .n_args = (size_t)(argc - optind),
		.env = p.env, .n_env = p.n_env, .cwd = p.cwd, .user = p.user, .terminal = p.tty,
	};
	_cleanup_free_ char *process = NULL;
	if (huskctl_process_build(&so, &process, &err) < 0)
		return fail("%s", err.msg);
	relay_block_signals();
	struct husk_vm *vm = NULL;
	if (husk_vm_open(g->state_dir, name, &vm, &err) < 0)
		return fail("%s", err.msg);
	struct husk_agent *a = NULL;
	char exec_id[32];
	uint32_t rnd = 0;
	(void)!getrandom(&rnd, sizeof(rnd), 0);
	snprintf(exec_id, sizeof(exec_id), "exec-%08x", rnd);
	struct husk_stdio io = pick_ports(p.interactive, p.tty);
	int status = -1;
	if (husk_agent_open(vm, CALL_TIMEOUT_MS, &a, &err) == 0 &&
	    husk_task_exec(a, name, exec_id, process, &io, &err) == 0)
		status = run_process(vm, a, name, exec_id, &io, -1, &err);
	if (status < 0)
		fail("exec in %s: %s", name, err.msg);
	husk_agent_close(a);
	husk_vm_free(vm);
	return status < 0 ? EXIT_HUSK : status;
}
