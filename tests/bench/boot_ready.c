/*
 * boot-ready: the measuring half of tests/bench/vm.sh.
 *
 *   boot-ready boot --state-dir D [--name N] [--kernel K] [--initrd I]
 *                   [--vsockd V] [--argv-dir DIR] [--append WORDS]
 *                   [--console-to FILE] [--hotplug-slots N]
 *       Starts a VM through libhusk exactly as huskctl does (defaults: 1 vCPU,
 *       256 MiB, no disk), prints "boot_ns N" (QEMU launch to the first
 *       successful Sandbox.Check, husk_vm_boot_ns) and stops it. With
 *       --argv-dir, first saves the running QEMU's and husk-vsockd's command
 *       lines (NUL-separated, from /proc) as DIR/qemu.argv and
 *       DIR/vsockd.argv, so the floor boots with the very same ones.
 *       --append adds kernel command-line words (e.g. loglevel=7);
 *       --hotplug-slots gives it N PCIe hotplug slots, as a pod's VM has;
 *       --console-to copies the guest console once the agent answered
 *       (for looking at a boot's timeline by hand).
 *
 *   boot-ready stream
 *       Copies stdin to stdout and prints "bytes N ns T" on stderr, T
 *       running from the first byte read to EOF: the transfer alone, without
 *       the VM's boot before it or its teardown after.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "husk.h"
#include "husk/cleanup.h"
#include "husk/path.h"

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int copy_file(const char *from, const char *to, struct husk_err *err)
{
	_cleanup_fd_ int in = open(from, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return husk_err_sys(err, -errno, "open %s", from);
	_cleanup_fd_ int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0)
		return husk_err_sys(err, -errno, "create %s", to);
	char buf[8192];
	ssize_t n;
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n)
			return husk_err_sys(err, -errno, "write %s", to);
	return n < 0 ? husk_err_sys(err, -errno, "read %s", from) : 0;
}

static int save_argv(pid_t pid, const char *dir, const char *name, struct husk_err *err)
{
	char from[64], to[PATH_MAX];
	snprintf(from, sizeof(from), "/proc/%d/cmdline", (int)pid);
	if (husk_path_fmt(to, sizeof(to), "%s/%s.argv", dir, name) < 0)
		return husk_err_set(err, -ENAMETOOLONG, "argv dir %s", dir);
	return copy_file(from, to, err);
}

static int boot(int argc, char **argv)
{
	struct husk_vm_config cfg = { .name = "boot", .die_with_parent = true };
	const char *argv_dir = NULL, *console_to = NULL;
	static const struct option opts[] = {
		{ "state-dir", required_argument, NULL, 's' }, { "name", required_argument, NULL, 'n' },
		{ "kernel", required_argument, NULL, 'k' },    { "initrd", required_argument, NULL, 'i' },
		{ "vsockd", required_argument, NULL, 'v' },    { "argv-dir", required_argument, NULL, 'a' },
		{ "append", required_argument, NULL, 'x' },    { "console-to", required_argument, NULL, 'o' },
		{ "hotplug-slots", required_argument, NULL, 'h' }, { 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 's': cfg.state_dir = optarg; break;
		case 'n': cfg.name = optarg; break;
		case 'k': cfg.kernel = optarg; break;
		case 'i': cfg.initrd = optarg; break;
		case 'v': cfg.vsockd = optarg; break;
		case 'a': argv_dir = optarg; break;
		case 'x': cfg.cmdline_extra = optarg; break;
		case 'o': console_to = optarg; break;
		case 'h': cfg.hotplug_slots = (unsigned)atoi(optarg); break;
		default: return 2;
		}
	}
	struct husk_err err = { 0 };
	_cleanup_free_ char *kernel = NULL, *initrd = NULL;
	if (!cfg.kernel && !(cfg.kernel = kernel = husk_default_path("kernel", &err)))
		goto fail;
	if (!cfg.initrd && !(cfg.initrd = initrd = husk_default_path("initrd", &err)))
		goto fail;
	struct husk_vm *vm = NULL;
	if (husk_vm_start(&cfg, &vm, &err) < 0)
		goto fail;
	int r = 0;
	if (argv_dir) {
		r = save_argv(husk_vm_vmm_pid(vm), argv_dir, "qemu", &err);
		/* No husk-vsockd with vhost-vsock: the floor then runs without it too. */
		if (r == 0 && husk_vm_vsockd_pid(vm) > 0)
			r = save_argv(husk_vm_vsockd_pid(vm), argv_dir, "vsockd", &err);
	}
	if (r == 0)
		printf("boot_ns %" PRIu64 "\n", husk_vm_boot_ns(vm));
	struct husk_err stop_err = { 0 };
	if (r == 0 && console_to)
		r = copy_file(husk_vm_console_log(vm), console_to, &err);
	if (husk_vm_stop(vm, 5000, &stop_err) < 0)
		fprintf(stderr, "boot-ready: stopping the VM: %s\n", stop_err.msg);
	husk_vm_free(vm);
	if (r == 0)
		return 0;
fail:
	fprintf(stderr, "boot-ready: %s\n", err.msg);
	return 1;
}

static int stream(void)
{
	char buf[1 << 16];
	uint64_t bytes = 0, t0 = 0;
	for (;;) {
		ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			perror("boot-ready: read stdin");
			return 1;
		}
		if (n == 0)
			break;
		if (bytes == 0)
			t0 = now_ns();
		bytes += (uint64_t)n;
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(STDOUT_FILENO, buf + off, (size_t)(n - off));
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				perror("boot-ready: write stdout");
				return 1;
			}
			off += w;
		}
	}
	fprintf(stderr, "bytes %" PRIu64 " ns %" PRIu64 "\n", bytes, bytes ? now_ns() - t0 : 0);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "boot") == 0)
		return boot(argc - 1, argv + 1);
	if (argc == 2 && strcmp(argv[1], "stream") == 0)
		return stream();
	fprintf(stderr, "usage: boot-ready boot --state-dir D [--name N] [--kernel K] [--initrd I]"
			" [--vsockd V] [--argv-dir DIR]\n       boot-ready stream\n");
	return 2;
}
