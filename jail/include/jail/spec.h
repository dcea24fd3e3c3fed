/* The OCI runtime spec (config.json 1.0/1.1) as libjail uses it: parsed and
 * validated once, then read-only. Every string is owned by the spec and
 * freed by jail_spec_free(). Optional scalars carry a has_* flag. */
#ifndef JAIL_SPEC_H
#define JAIL_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "husk/error.h"

struct jail_kv {
	char *key;
	char *value;
};

struct jail_mount {
	char *destination; /* absolute, inside the container */
	char *type;	   /* "bind" or NULL for binds; "proc", "tmpfs", ... */
	char *source;
	unsigned long flags;	   /* MS_* from options (MS_BIND, MS_RDONLY, MS_NOSUID, ...) */
	unsigned long clear_flags; /* MS_* explicitly cleared ("rw", "suid", ...) */
	unsigned long propagation; /* MS_PRIVATE/MS_SLAVE/MS_SHARED/MS_UNBINDABLE (| MS_REC), 0 */
	char *data;		   /* filesystem options joined by ',' ("size=64m,mode=755") or NULL */
};

struct jail_namespace {
	int type;   /* CLONE_NEWPID, CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUTS, CLONE_NEWNET,
		       CLONE_NEWCGROUP, CLONE_NEWUSER */
	char *path; /* join this namespace instead of creating one; NULL: create */
};

struct jail_id_map {
	uint32_t container_id;
	uint32_t host_id;
	uint32_t size;
};

struct jail_rlimit {
	int resource; /* RLIMIT_* */
	uint64_t soft, hard;
};

struct jail_device {
	char type; /* 'c', 'b', 'u' (= c) or 'p' */
	char *path;
	int64_t major, minor;
	bool has_mode, has_uid, has_gid;
	uint32_t file_mode;
	uint32_t uid, gid;
};

/* Capability sets as bitmasks of CAP_* numbers (bit n = capability n). */
struct jail_caps {
	uint64_t bounding, effective, inheritable, permitted, ambient;
};

struct jail_user {
	uint32_t uid, gid;
	uint32_t *additional_gids;
	size_t n_additional_gids;
	bool has_umask;
	uint32_t umask;
};

struct jail_process {
	bool terminal;
	bool has_console_size;
	unsigned console_height, console_width;
	struct jail_user user;
	char **args; /* NULL-terminated; at least one */
	size_t n_args;
	char **env;  /* NULL-terminated, "K=V" */
	size_t n_env;
	char *cwd;   /* absolute */
	bool has_caps; /* absent "capabilities": keep what we have */
	struct jail_caps caps;
	bool no_new_privileges;
	bool has_oom_score_adj;
	int oom_score_adj;
	struct jail_rlimit *rlimits;
	size_t n_rlimits;
	char *apparmor_profile; /* accepted, ignored with a warning */
	char *selinux_label;	/* accepted, ignored with a warning */
	/* Capability names the parser does not know, ", "-separated, or NULL:
	 * left out of the sets and warned about, as runc does. */
	char *unknown_caps;
};

struct jail_hook {
	char *path; /* absolute */
	char **args; /* NULL-terminated, may be NULL */
	char **env;  /* NULL-terminated, may be NULL */
	bool has_timeout;
	int timeout; /* seconds, > 0 */
};

struct jail_hooks {
	struct jail_hook *prestart, *create_runtime, *create_container, *start_container,
		*poststart, *poststop;
	size_t n_prestart, n_create_runtime, n_create_container, n_start_container, n_poststart,
		n_poststop;
};

/* Seccomp actions and comparison operators, libseccomp-independent so the
 * spec can be parsed and checked without it. */
enum jail_seccomp_action {
	JAIL_SCMP_KILL,	   /* SCMP_ACT_KILL / KILL_THREAD */
	JAIL_SCMP_KILL_PROCESS,
	JAIL_SCMP_TRAP,
	JAIL_SCMP_ERRNO,
	JAIL_SCMP_TRACE,
	JAIL_SCMP_ALLOW,
	JAIL_SCMP_LOG,
};

enum jail_seccomp_op {
	JAIL_SCMP_CMP_NE,
	JAIL_SCMP_CMP_LT,
	JAIL_SCMP_CMP_LE,
	JAIL_SCMP_CMP_EQ,
	JAIL_SCMP_CMP_GE,
	JAIL_SCMP_CMP_GT,
	JAIL_SCMP_CMP_MASKED_EQ,
};

struct jail_seccomp_arg {
	unsigned index; /* 0..5 */
	uint64_t value, value_two;
	enum jail_seccomp_op op;
};

struct jail_seccomp_rule {
	char **names; /* NULL-terminated */
	size_t n_names;
	enum jail_seccomp_action action;
	bool has_errno;
	uint32_t errno_ret; /* for ERRNO (default EPERM) and TRACE */
	struct jail_seccomp_arg *args;
	size_t n_args;
};

struct jail_seccomp {
	enum jail_seccomp_action default_action;
	bool has_default_errno;
	uint32_t default_errno;
	char **architectures; /* "SCMP_ARCH_X86_64", ...; NULL-terminated, may be empty */
	size_t n_architectures;
	char **flags; /* "SECCOMP_FILTER_FLAG_LOG", ...; NULL-terminated, may be empty */
	size_t n_flags;
	struct jail_seccomp_rule *rules;
	size_t n_rules;
};

/* linux.resources; absent values are not written. */
struct jail_throttle {
	int64_t major, minor;
	uint64_t rate;
};

struct jail_weight_device {
	int64_t major, minor;
	bool has_weight;
	uint16_t weight;
};

struct jail_resources {
	bool has_memory_limit, has_memory_reservation, has_memory_swap, has_memory_kernel;
	int64_t memory_limit, memory_reservation, memory_swap; /* bytes; -1 = unlimited */
	bool has_cpu_shares, has_cpu_quota, has_cpu_period;
	uint64_t cpu_shares, cpu_period;
	int64_t cpu_quota; /* -1 = unlimited */
	char *cpu_cpus, *cpu_mems;
	bool has_pids_limit;
	int64_t pids_limit; /* <= 0 = unlimited */
	bool has_blkio_weight;
	uint16_t blkio_weight;
	struct jail_weight_device *blkio_weight_device;
	size_t n_blkio_weight_device;
	struct jail_throttle *throttle_read_bps, *throttle_write_bps, *throttle_read_iops,
		*throttle_write_iops;
	size_t n_throttle_read_bps, n_throttle_write_bps, n_throttle_read_iops,
		n_throttle_write_iops;
	struct jail_kv *unified; /* linux.resources.unified: cgroup v2 file -> value */
	size_t n_unified;
};

struct jail_spec {
	char *oci_version;
	char *root_path; /* absolute after jail_spec_load resolves it against the bundle */
	bool root_readonly;
	char *hostname;
	char *domainname;
	struct jail_process process; /* has_process false: only valid for exec specs */
	bool has_process;
	struct jail_mount *mounts;
	size_t n_mounts;
	struct jail_hooks hooks;
	struct jail_kv *annotations;
	size_t n_annotations;

	/* linux */
	struct jail_namespace *namespaces;
	size_t n_namespaces;
	struct jail_id_map *uid_mappings, *gid_mappings;
	size_t n_uid_mappings, n_gid_mappings;
	struct jail_device *devices;
	size_t n_devices;
	char *cgroups_path; /* NULL: the runtime picks one */
	bool has_resources;
	struct jail_resources resources;
	struct jail_kv *sysctl;
	size_t n_sysctl;
	bool has_seccomp;
	struct jail_seccomp seccomp;
	unsigned long rootfs_propagation; /* MS_* or 0 (default: rslave as runc) */
	char **masked_paths;
	size_t n_masked_paths;
	char **readonly_paths;
	size_t n_readonly_paths;
	char *mount_label; /* accepted, ignored with a warning */
};

/* Parses config.json from `bundle_dir` (root.path is resolved against it).
 * Errors name the JSON field and value, e.g.
 *   "config.json: process.user.uid: expected a uid or gid in range 0-2147483647, got -1".
 * uids and gids of the process are bounded as runc bounds them: (uid_t)-1
 * would mean "unchanged" to setresuid. */
int jail_spec_load(const char *bundle_dir, struct jail_spec **out, struct husk_err *err);
/* The most a spec (or a lone process object) may hold. */
#define JAIL_SPEC_MAX_BYTES (16u << 20)
/* Reads a spec file whole (a regular file within JAIL_SPEC_MAX_BYTES) into
 * a malloc'd buffer, so a caller that also keeps a copy reads it only once. */
int jail_spec_read(const char *path, char **data, size_t *len, struct husk_err *err);
/* Parses a spec from memory; `bundle_dir` may be NULL (root.path then kept as is). */
int jail_spec_parse(const char *json, size_t len, const char *bundle_dir, struct jail_spec **out,
		    struct husk_err *err);
/* Parses a lone process object (husk-jail exec --process FILE, Task.Exec). */
int jail_process_parse(const char *json, size_t len, struct jail_process **out,
		       struct husk_err *err);
void jail_process_free(struct jail_process *p);
void jail_spec_free(struct jail_spec *spec);

/* Looks up a namespace entry of `type` (CLONE_NEW*), or NULL. */
const struct jail_namespace *jail_spec_namespace(const struct jail_spec *spec, int type);

/* Capability name ("CAP_SYS_ADMIN") <-> number; -1 when unknown. */
int jail_cap_from_name(const char *name);

#endif
