/* huskctl: run a command in a container in a husk microVM, and look after
 * running ones. `huskctl --help` lists the commands; docs/huskctl.md. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "huskctl.h"

/* In cmds.c. (Its declaration belongs in huskctl.h, with the others.) */

int fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("huskctl: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return EXIT_HUSK;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: huskctl [--state-dir DIR] COMMAND ...\n"
		"\n"
		"  run [OPTIONS] -- CMD [ARG...]   boot a VM, run CMD in a container, tear down\n"
		"      --rootfs DIR | --image FILE  root filesystem (directory or erofs image)\n"
		"      --disk PATH:TARGET[:ro]      also attach an ext4 or erofs image at TARGET\n"
		"      --sysctl KEY=VALUE           set a guest sysctl before the container starts\n"
		"      -t, --tty                    allocate a terminal\n"
		"      -i, --interactive            pass our stdin to the container\n"
		"      -e, --env K=V                environment (repeatable)\n"
		"      -w, --cwd DIR                working directory (default /)\n"
		"      -u, --user USER[:GROUP]      numeric or from the rootfs's /etc/passwd\n"
		"      --hostname NAME              container hostname (default husk)\n"
		"      --cpus N, --memory MIB       VM size (default 1, 256; at most the host's)\n"
		"      --overlay-size SIZE          the container's writable layer (e.g. 64M, 1Gi;\n"
		"                                   default half the VM's memory)\n"
		"      --limit-memory SIZE          container memory limit (e.g. 64M)\n"
		"      --limit-pids N               container pids limit\n"
		"      --limit-cpus N               CPU limit in CPUs (e.g. 0.5)\n"
		"      --cpu-quota US, --cpu-period US  cpu.max quota and period\n"
		"      --cpu-shares N               cpu weight from shares (as runc)\n"
		"      --cpuset-cpus L, --cpuset-mems L  CPUs / memory nodes (e.g. 0-1)\n"
		"      --io-weight N                io.weight (10..1000)\n"
		"      --io-max MAJ:MIN:rbps=N,...  io.max for a guest device (repeatable)\n"
		"      -n, --name NAME              VM name for exec/kill/console (default random)\n"
		"      --kernel K, --initrd I       guest kernel and initramfs\n"
		"      --accel auto|kvm|tcg         accelerator (default auto)\n"
		"      --transport auto|vhost|hybrid vsock transport (default auto)\n"
		"      --debug-console              enable the guest's debug shell (port 1026)\n"
		"      --merge-memory               let the host's KSM merge the VM's memory (opt-in)\n"
		"      --tcg-cache MIB              TCG translation cache, 1-2048 (default 16)\n"
		"      --pool SOCKET|off            take a ready VM from huskd there (default\n"
		"                                   $HUSK_POOL_SOCKET or <state dir>/huskd.sock;\n"
		"                                   not with --name); boots cold without one\n"
		"      --boot-timeout MS            give up booting after MS (default 120000 on tcg)\n"
		"      --image-cache DIR            where rootfs images are cached\n"
		"      --agent-log                  copy the guest agent's log to stderr\n"
		"      --log-level N                the agent's log level (1-7, default 6)\n"
		"  exec [-t] [-i] [-e K=V] [-w DIR] [-u USER] NAME -- CMD [ARG...]\n"
		"                                   run CMD in the running container of VM NAME\n"
		"  kill NAME [SIGNAL]               signal the container (default TERM)\n"
		"  pause NAME | resume NAME         freeze or thaw the container\n"
		"  update NAME [--limit-memory SIZE] [--limit-pids N]\n"
		"                                   change the container's cgroup limits\n"
		"  stats NAME                       the container's cgroup figures\n"
		"  ps NAME                          the container's processes (guest pids)\n"
		"  ping NAME                        ask the agent if it is alive\n"
		"  console NAME                     attach to the debug console (--debug-console)\n"
		"  info [NAME]                      accelerator, transport, versions; guest details\n"
		"  ls                               VMs started by huskctl run\n"
		"  image ls [--image-cache DIR]     cached rootfs images: size, last use, in use\n"
		"  image prune [--max SIZE] [--image-cache DIR]\n"
		"                                   remove least recently used images not in use\n"
		"                                   down to SIZE (default $HUSK_IMAGE_CACHE_MAX)\n");
}

int main(int argc, char **argv)
{
	struct global_opts g = { 0 };
	/* A closed stdout is an error on write, not a silent death. */
	signal(SIGPIPE, SIG_IGN);
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--state-dir") == 0 && i + 1 < argc) {
			g.state_dir = argv[++i];
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(argv[i], "--version") == 0) {
			printf("huskctl %s\n", HUSKCTL_VERSION);
			return 0;
		} else {
			usage(stderr);
			return fail("unknown option %s", argv[i]);
		}
	}
	if (i >= argc) {
		usage(stderr);
		return fail("no command given");
	}
	const char *cmd = argv[i];
	int sub_argc = argc - i;
	char **sub_argv = argv + i;
	if (strcmp(cmd, "run") == 0)
		return cmd_run(&g, sub_argc, sub_argv);
	if (strcmp(cmd, "exec") == 0)
		return cmd_exec(&g, sub_argc, sub_argv);
	if (strcmp(cmd, "console") == 0)
		return cmd_console(&g, sub_argc, sub_argv);
	if (strcmp(cmd, "info") == 0)
		return cmd_info(&g, sub_argc, sub_argv);
	if (strcmp(cmd, "ls") == 0)
		return cmd_ls(&g, sub_argc, sub_argv);
	if (strcmp(cmd, "image") == 0)
		return cmd_image(&g, sub_argc, sub_argv);
	if (strcmp(cmd, "update") == 0)
		return cmd_update(&g, sub_argc, sub_argv);
	static const char *const simple[] = { "kill", "pause", "resume", "stats", "ps", "ping" };
	for (size_t k = 0; k < sizeof(simple) / sizeof(simple[0]); k++)
		if (strcmp(cmd, simple[k]) == 0)
			return cmd_simple(&g, cmd, sub_argc, sub_argv);
	usage(stderr);
	return fail("unknown command \"%s\"", cmd);
}
