/* huskctl run's options: one table (runopts.c) parsed into struct
 * run_opts, with every value checked and every refusal naming its option. */
#ifndef HUSKCTL_RUNOPTS_H
#define HUSKCTL_RUNOPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "husk.h"
#include "runspec.h"

#define HUSKCTL_MAX_ENV 256
#define HUSKCTL_MAX_DISKS 8
#define HUSKCTL_MAX_SYSCTLS 32
#define HUSKCTL_MAX_IO_LIMITS 16

/* What run and exec share: the process. */
struct huskctl_proc_opts {
	char *env[HUSKCTL_MAX_ENV];
	size_t n_env;
	const char *cwd, *user;
	bool tty, interactive;
};

struct run_opts {
	struct huskctl_proc_opts p;
	/* The container. */
	const char *rootfs, *image, *hostname, *image_cache;
	uint64_t limit_memory, limit_pids;
	uint64_t cpu_quota, cpu_period, cpu_shares;
	bool limit_cpus, quota_or_period; /* --limit-cpus; --cpu-quota or --cpu-period */
	const char *cpuset_cpus, *cpuset_mems;
	unsigned io_weight;
	struct huskctl_io_limit io_limits[HUSKCTL_MAX_IO_LIMITS];
	size_t n_io_limits;
	char *disks[HUSKCTL_MAX_DISKS]; /* --disk PATH:TARGET[:ro], as given */
	size_t n_disks;
	char *sysctls[HUSKCTL_MAX_SYSCTLS];
	size_t n_sysctls;
	uint64_t overlay_bytes; /* 0: the agent's default */
	/* The VM. */
	const char *name, *kernel, *initrd;
	const char *pool; /* huskd's socket, "off"; NULL: the default */
	unsigned cpus, memory_mib, boot_timeout_ms, log_level; /* 0: defaults */
	enum husk_accel accel;
	enum husk_transport transport;
	bool debug_console, agent_log, merge_memory;
	unsigned tcg_cache_mib;
	/* CMD [ARG...] */
	char **args;
	size_t n_args;
};

/* Parses `huskctl run` (argv[0] is "run"): 0, or a negative errno
 * (-EINVAL mostly) with `err` naming the option and what it wants. Values that would silently mean a
 * default (--memory 0, --cpus 0, --limit-pids 0, ...) are refused, and so
 * is a VM larger than this host (husk_host_limits). Strings point into
 * argv. */
int huskctl_run_parse(int argc, char **argv, struct run_opts *o, struct husk_err *err);

/* -e K=V into p->env. */
int huskctl_add_env(struct huskctl_proc_opts *p, char *kv, struct husk_err *err);

#endif
