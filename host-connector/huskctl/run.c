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
#include "runopts.h"
#include "runspec.h"

#define CALL_TIMEOUT_MS 30000

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

static void release_hold(int *fd)
{
	husk_image_release(*fd);
}

/* --disk PATH:TARGET[:ro] (split in place) into a disk after the rootfs
 * and its mount in the container. */
static int parse_disk(char *arg, size_t i, char serial[16], struct husk_disk *disk,
		      struct husk_block_mount *mount, struct husk_err *err)
{
	char *path = arg, *target = strchr(path, ':');
	if (!target || target[1] != '/')
		return husk_err_set(err, -EINVAL, "--disk %s: want PATH:/TARGET[:ro]", path);
	*target++ = '\0';
	char *mode = strchr(target, ':');
	bool ro = false;
	if (mode) {
		*mode++ = '\0';
		if (strcmp(mode, "ro") != 0 && strcmp(mode, "rw") != 0)
			return husk_err_set(err, -EINVAL, "--disk %s:%s: mode \"%s\": want ro or rw",
					    path, target, mode);
		ro = strcmp(mode, "ro") == 0;
	}
	const char *fstype = husk_image_fstype(path, err);
	if (!fstype)
		return husk_err_wrap(err, "--disk");
	ro = ro || strcmp(fstype, "erofs") == 0; /* erofs is read-only */
	snprintf(serial, 16, "disk%zu", i + 1);
	*disk = (struct husk_disk){ .path = path, .serial = serial, .readonly = ro };
	*mount = (struct husk_block_mount){ .serial = serial, .fstype = fstype, .target = target,
					    .readonly = ro };
	return 0;
}

/* After the run's own Task calls failed: what happened to the VM. */
static void report_failure(struct husk_vm *vm, const struct husk_err *err)
{
	char tail[2048];
	husk_vm_console_tail(vm, tail, sizeof(tail));
	/* A lost connection usually means the VMM is going: say so. */
	if (err->code == -EPIPE) {
		struct pollfd pf = { .fd = husk_vm_pidfd(vm), .events = POLLIN };
		poll(&pf, 1, 3000);
	}
	int st;
	if (husk_vm_exited(vm, &st))
		fail("the VM exited unexpectedly (%s %s %d)", husk_vm_vmm_program(vm),
		     WIFSIGNALED(st) ? "killed by signal" : "exited with status",
		     WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
	fail("%s", err->msg);
	if (tail[0] && (err->code == -EPIPE || getenv("HUSK_DEBUG")))
		fprintf(stderr, "huskctl: guest console (last lines):\n%s\n", tail);
}

int cmd_run(const struct global_opts *g, int argc, char **argv)
{
	struct run_opts o;
	struct husk_err err = { 0 };
	if (huskctl_run_parse(argc, argv, &o, &err) < 0)
		return fail("%s", err.msg);
	_cleanup_free_ char *kernel = o.kernel ? strdup(o.kernel) : husk_default_path("kernel", &err);
	if (!kernel)
		return fail("%s", err.msg);
	_cleanup_free_ char *initrd = o.initrd ? strdup(o.initrd) : husk_default_path("initrd", &err);
	if (!initrd)
		return fail("%s", err.msg);

	struct huskctl_spec_opts so = {
		.args = o.args, .n_args = o.n_args,
		.env = o.p.env, .n_env = o.p.n_env, .cwd = o.p.cwd, .user = o.p.user,
		.rootfs_dir = o.rootfs, .terminal = o.p.tty, .hostname = o.hostname,
		.memory_limit = o.limit_memory, .pids_limit = o.limit_pids,
		.cpu_quota_us = o.cpu_quota, .cpu_period_us = o.cpu_period, .cpu_shares = o.cpu_shares,
		.cpuset_cpus = o.cpuset_cpus, .cpuset_mems = o.cpuset_mems, .io_weight = o.io_weight,
		.io_limits = o.io_limits, .n_io_limits = o.n_io_limits,
	};
	_cleanup_free_ char *spec = NULL;
	if (huskctl_spec_build(&so, &spec, &err) < 0)
		return fail("%s", err.msg);
	/* Held until the VM is gone, so that a cache prune leaves it alone. */
	__attribute__((cleanup(release_hold))) int hold = -1;
	_cleanup_free_ char *built_image = NULL;
	const char *image = o.image;
	if (o.rootfs) {
		if (husk_image_from_dir_hold(o.image_cache, o.rootfs, &built_image, &hold, &err) < 0)
			return fail("%s", err.msg);
		image = built_image;
	} else if ((hold = husk_image_hold(image, &err)) < 0) {
		return fail("%s", err.msg);
	}
	/* The rootfs is disk0, serial rootfs0; --disk ones follow. */
	struct husk_disk disks[1 + HUSKCTL_MAX_DISKS];
	struct husk_block_mount mounts[HUSKCTL_MAX_DISKS];
	char serials[HUSKCTL_MAX_DISKS][16];
	disks[0] = (struct husk_disk){ .path = image, .serial = "rootfs0", .readonly = true };
	for (size_t i = 0; i < o.n_disks; i++)
		if (parse_disk(o.disks[i], i, serials[i], &disks[1 + i], &mounts[i], &err) < 0)
			return fail("%s", err.msg);
	struct husk_vm_config cfg = {
		.name = o.name, .state_dir = g->state_dir, .kernel = kernel, .initrd = initrd,
		.vcpus = o.cpus, .memory_mib = o.memory_mib, .accel = o.accel,
		.transport = o.transport, .disks = disks, .n_disks = 1 + o.n_disks,
		.debug_console = o.debug_console, .log_level = (int)o.log_level,
		.merge_memory = o.merge_memory, .tcg_cache_mib = o.tcg_cache_mib,
		.boot_timeout_ms = o.boot_timeout_ms, .die_with_parent = true,
	};
	struct husk_sandbox_opts sb = { .hostname = o.hostname ? o.hostname : "husk",
					.sysctls = o.sysctls, .n_sysctls = o.n_sysctls };
	/* The container's id is the VM's name, for exec, kill and the others:
	 * with --name, a VM of that name, booted cold (a pooled VM has its
	 * own name); else whichever VM comes, pooled or cold. */
	if (o.name && o.pool && strcmp(o.pool, "off") != 0)
		return fail("--pool %s with --name %s: a VM from the pool keeps the pool's name; "
			    "give one of them",
			    o.pool, o.name);
	if (o.name)
		cfg.pool = "off";
	else
		cfg.pool = o.pool;
	struct husk_bundle_spec bs = { .id = o.name, .spec_json = spec, .rootfs_serial = "rootfs0",
				       .mounts = mounts, .n_mounts = o.n_disks,
				       .overlay_bytes = o.overlay_bytes };

	/* From here a ^C must stop the VM in order, not kill us. */
	relay_block_signals();
	struct husk_vm *vm = NULL;
	_cleanup_free_ char *bundle = NULL;
	if (husk_sandbox_start(&cfg, &sb, &bs, &vm, &bundle, &err) < 0)
		return fail("%s", err.msg);
	const char *id = husk_vm_name(vm);
	struct husk_agent *a = NULL;
	struct husk_stdio io = pick_ports(o.p.interactive, o.p.tty);
	int status = -1;
	if (husk_agent_open(vm, CALL_TIMEOUT_MS, &a, &err) == 0 &&
	    husk_task_create(a, id, bundle, &io, NULL, &err) == 0)
		status = run_process(vm, a, id, NULL, &io, o.agent_log ? husk_vm_log_fd(vm) : -1, &err);
	if (status < 0)
		report_failure(vm, &err);
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
	struct huskctl_proc_opts p = { 0 };
	struct husk_err err = { 0 };
	optind = 1;
	for (int o; (o = getopt_long(argc, argv, "+tie:w:u:", opts, NULL)) != -1;) {
		switch (o) {
		case 't': p.tty = true; break;
		case 'i': p.interactive = true; break;
		case 'e':
			if (huskctl_add_env(&p, optarg, &err) < 0)
				return fail("%s", err.msg);
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
