/* cgroup v2 for libjail: one container cgroup, its creation and removal,
 * linux.resources as runc's fs2 driver writes them, freezing, killing,
 * membership, statistics and change notification.
 *
 * Every function that can fail returns 0 or a negative errno and fills
 * `err` (may be NULL) with a message naming the path, field or file. */
#ifndef JAIL_CGROUP_H
#define JAIL_CGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "husk/error.h"
#include "jail/spec.h"

/* How long freeze, kill and destroy wait for the kernel to report that
 * the cgroup reached the requested state before giving up (-ETIMEDOUT). */
#define JAIL_CGROUP_TIMEOUT_MS 10000

struct jail_cgroup;

/* Tells whether `mount` is a cgroup2 filesystem (statfs magic) in which we
 * may create children. The message says what to do otherwise, e.g.
 *   "/sys/fs/cgroup is not a cgroup2 mount (hybrid or v1 host); run with
 *    --no-cgroups or mount cgroup2" */
int jail_cgroup_check_usable(const char *mount, struct husk_err *err);

/* Opens the cgroup `path` under `mount` (e.g. "/sys/fs/cgroup").
 * `path` is linux.cgroupsPath; absolute ("/husk/ctr1") and relative
 * ("husk/ctr1") paths are both taken relative to `mount` (the agent runs in
 * the root cgroup, where runc's "relative to our own cgroup" is the same).
 * ".." components, and paths naming the mount itself, are refused.
 *
 * With `create`, missing directories are made, and every ancestor from
 * `mount` down to the leaf's parent gets in its cgroup.subtree_control those
 * of cpu cpuset io memory pids hugetlb that its cgroup.controllers offers;
 * a controller that cannot be enabled is skipped (apply reports it if a
 * resource needs it). The directories made are remembered so that
 * jail_cgroup_destroy removes only those (and the leaf).
 *
 * Without `create` the directory must exist; it need not be on a cgroup2
 * filesystem (tests point it at a directory of regular files). */
int jail_cgroup_open(const char *mount, const char *path, bool create, struct jail_cgroup **out,
		     struct husk_err *err);

/* Absolute path of the cgroup directory. */
const char *jail_cgroup_path(const struct jail_cgroup *cg);
/* Its O_DIRECTORY fd (clone3's CLONE_INTO_CGROUP); owned by the handle. */
int jail_cgroup_fd(const struct jail_cgroup *cg);

/* Writes linux.resources as runc's cgroup v2 driver does:
 *   memory.max (limit, -1: "max"), memory.low (reservation),
 *   memory.swap.max (swap - limit; -1: "max"; swap < limit is an error;
 *     a missing memory.swap.max is tolerated when the value is "max" or "0"),
 *   cpu.weight (1 + ((shares - 2) * 9999) / 262142),
 *   cpu.max ("quota period"; "max period" for quota -1 or absent; period
 *     defaults to 100000), cpuset.cpus, cpuset.mems,
 *   pids.max (<= 0: "max"),
 *   blockIO weights: to io.bfq.weight unchanged when that file exists (BFQ,
 *     as runc prefers it), else to io.weight converted with
 *     1 + (w - 10) * 9999 / 990; per-device entries as "MAJ:MIN WEIGHT",
 *   io.max "MAJ:MIN rbps=N" (wbps, riops, wiops), one write per entry,
 *   unified: each value verbatim to the named file (names with '/' or ".."
 *     are refused).
 * A resource whose file is missing fails with -EOPNOTSUPP and e.g.
 *   "linux.resources.memory.limit: the memory controller is not available
 *    in /sys/fs/cgroup/x". Writing stops at the first error. */
int jail_cgroup_apply(struct jail_cgroup *cg, const struct jail_resources *res,
		      struct husk_err *err);

/* Moves process `pid` (0: the caller) into the cgroup (cgroup.procs). */
int jail_cgroup_enter(struct jail_cgroup *cg, pid_t pid, struct husk_err *err);

/* Writes cgroup.freeze and waits, without polling in a loop, until
 * cgroup.events reports "frozen 1" (or 0); -ETIMEDOUT after
 * JAIL_CGROUP_TIMEOUT_MS. */
int jail_cgroup_freeze(struct jail_cgroup *cg, bool frozen, struct husk_err *err);

/* SIGKILLs every process in the cgroup and its descendants: cgroup.kill,
 * or on kernels without it (< 5.14) SIGKILL to each pid of cgroup.procs,
 * repeated until a re-read finds nobody left to signal. Does not wait for
 * the processes to exit (jail_cgroup_destroy does). */
int jail_cgroup_kill(struct jail_cgroup *cg, struct husk_err *err);
/* `sig` to the cgroup's processes, as kill --all does: SIGKILL through
 * jail_cgroup_kill, any other signal once to each process in cgroup.procs
 * (one that is gone meanwhile is skipped). */
int jail_cgroup_signal(struct jail_cgroup *cg, int sig, struct husk_err *err);

/* The processes in the cgroup itself (cgroup.procs), in the kernel's order.
 * *pids is malloc'd (NULL when *n is 0); the caller frees it. */
int jail_cgroup_pids(struct jail_cgroup *cg, pid_t **pids, size_t *n, struct husk_err *err);

/* "populated" of cgroup.events: a process lives in the cgroup or below.
 * False when the file cannot be read. */
bool jail_cgroup_populated(struct jail_cgroup *cg);

/* Count of processes killed by the OOM killer in the cgroup and below
 * ("oom_kill" of memory.events); 0 without the memory controller. */
int jail_cgroup_oom_kills(struct jail_cgroup *cg, uint64_t *count, struct husk_err *err);

/* An inotify fd (IN_NONBLOCK | IN_CLOEXEC) watching cgroup.events and, when
 * the memory controller is enabled, memory.events for IN_MODIFY: it becomes
 * readable (POLLIN / EPOLLIN) when "populated" or "frozen" change or an
 * OOM event is counted. The caller owns the fd: on readiness it reads and
 * discards the inotify records until EAGAIN, then asks
 * jail_cgroup_populated() / jail_cgroup_oom_kills(). Returns the fd or a
 * negative errno. The watches survive cg being freed, not the directory. */
int jail_cgroup_events_fd(struct jail_cgroup *cg);

/* What containerd's io.containerd.cgroups.v2.Metrics carries (hugetlb and
 * rdma aside); names follow its fields. Unreadable files leave zeros. */
struct jail_cgroup_io_entry {
	uint64_t major, minor, rbytes, wbytes, rios, wios;
};

struct jail_cgroup_stats {
	struct {
		uint64_t current;
		uint64_t limit; /* pids.max; "max" is UINT64_MAX */
	} pids;
	struct {
		uint64_t usage_usec, user_usec, system_usec, nr_periods, nr_throttled,
			throttled_usec;
	} cpu;
	struct {
		uint64_t usage;	      /* memory.current */
		uint64_t usage_limit; /* memory.max; "max" is UINT64_MAX */
		uint64_t swap_usage;  /* memory.swap.current */
		uint64_t swap_limit;  /* memory.swap.max; "max" is UINT64_MAX */
		/* memory.stat */
		uint64_t anon, file, kernel_stack, slab, sock, shmem, file_mapped, file_dirty,
			file_writeback, anon_thp, inactive_anon, active_anon, inactive_file,
			active_file, unevictable, slab_reclaimable, slab_unreclaimable, pgfault,
			pgmajfault, workingset_refault, workingset_activate,
			workingset_nodereclaim, pgrefill, pgscan, pgsteal, pgactivate,
			pgdeactivate, pglazyfree, pglazyfreed, thp_fault_alloc,
			thp_collapse_alloc;
	} memory;
	struct {
		bool present; /* memory.events was readable */
		uint64_t low, high, max, oom, oom_kill;
	} memory_events;
	struct jail_cgroup_io_entry *io; /* io.stat, one per device; malloc'd */
	size_t n_io;
};

/* Fills *st (zeroed first). Release with jail_cgroup_stats_free. */
int jail_cgroup_stats(struct jail_cgroup *cg, struct jail_cgroup_stats *st,
		      struct husk_err *err);
/* Frees what jail_cgroup_stats allocated inside *st (not st itself). */
void jail_cgroup_stats_free(struct jail_cgroup_stats *st);

/* Kills what is left (cgroup.kill), waits until cgroup.events says
 * "populated 0" (event-driven, bounded by JAIL_CGROUP_TIMEOUT_MS), removes
 * the leaf (and any child cgroups below it, deepest first) and then each
 * ancestor this handle created, innermost first; an ancestor still in use
 * (EBUSY) is left. Always frees cg; on error the message names what was
 * left behind. */
int jail_cgroup_destroy(struct jail_cgroup *cg, struct husk_err *err);

/* Frees the handle without touching the filesystem. NULL is fine. */
void jail_cgroup_free(struct jail_cgroup *cg);

#endif
