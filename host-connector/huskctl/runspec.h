/* OCI runtime spec for `huskctl run` and `huskctl exec`.
 *
 * Builds the config.json the guest agent hands to libjail: `runc spec`'s
 * defaults adapted to a VM guest (no network namespace: the VM is the
 * network boundary), plus what the command line asked for. Names in --user
 * are resolved in the container's own rootfs (etc/passwd, etc/group), never
 * in the host's files.
 */
#ifndef HUSKCTL_RUNSPEC_H
#define HUSKCTL_RUNSPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "husk/error.h"

/* The default PATH, as `runc spec` and Docker set it. */
#define HUSKCTL_DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define HUSKCTL_DEFAULT_HOSTNAME "husk"
/* Largest uid or gid accepted, as runc and Docker bound them. */
#define HUSKCTL_ID_MAX 2147483647u

/* One device's blockIO throttles (cgroup v2 io.max "MAJ:MIN rbps=..."); a
 * zero rate leaves that limit out. */
struct huskctl_io_limit {
	uint32_t major, minor;
	uint64_t rbps, wbps, riops, wiops;
};

struct huskctl_spec_opts {
	char *const *args; /* required, n_args >= 1, args[0] non-empty */
	size_t n_args;
	char *const *env;  /* "K=V" each: K non-empty; overrides a default of the same K */
	size_t n_env;
	const char *cwd;   /* NULL: "/"; must be absolute */
	/* NULL: 0:0. "uid", "uid:gid", "name", "name:group" (either side may
	 * be numeric). Without an explicit group the primary gid and the
	 * supplementary groups come from the rootfs's etc/passwd and
	 * etc/group, as runc does; with one, there are no supplementary
	 * groups. */
	const char *user;
	const char *rootfs_dir; /* may be NULL: then names in `user` are refused */
	bool terminal;		/* also adds TERM=xterm unless env sets TERM */
	const char *hostname;	/* NULL: "husk" */
	uint64_t memory_limit;	/* bytes; 0: none */
	uint64_t pids_limit;	/* 0: none */
	uint64_t cpu_quota_us, cpu_period_us; /* 0: none */
	uint64_t cpu_shares;	/* 2-262144 (cpu.weight 1 + (shares - 2) * 9999 / 262142); 0: none */
	const char *cpuset_cpus; /* "0-2,4" (cpuset.cpus); NULL: all */
	const char *cpuset_mems; /* memory nodes, the same syntax (cpuset.mems); NULL: all */
	uint32_t io_weight;	/* blockIO.weight 10-1000; 0: none */
	const struct huskctl_io_limit *io_limits;
	size_t n_io_limits;
};

/* A complete config.json (ociVersion 1.0.2, root.path "rootfs") as a
 * malloc'd, NUL-terminated string. */
int huskctl_spec_build(const struct huskctl_spec_opts *o, char **json, struct husk_err *err);

/* Only the "process" object, for Task.Exec: the same rules for args, env,
 * cwd, user and terminal; hostname and resources are ignored. */
int huskctl_process_build(const struct huskctl_spec_opts *o, char **json, struct husk_err *err);

/* "--limit-cpus 1.5": CPUs as a decimal number, as docker's --cpus; gives
 * the cpu.max quota for a period of 100000 us (at least 0.01 CPUs). */
int huskctl_parse_cpus(const char *s, uint64_t *quota_us, uint64_t *period_us,
		       struct husk_err *err);

/* "--io-max 254:0:rbps=1M,wiops=100": MAJ:MIN, then KEY=VALUE pairs with KEY
 * rbps or wbps (a size as husk_parse_size takes) or riops or wiops (a
 * count); at least one. */
int huskctl_parse_io_limit(const char *s, struct huskctl_io_limit *out, struct husk_err *err);

#endif
