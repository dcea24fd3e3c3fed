/* OCI runtime spec builder for huskctl (see spec.h).
 *
 * The document is built as a json-c tree and serialised once, so quoting is
 * never done by hand. Defaults follow `runc spec` (runc's
 * libcontainer/specconv Example) with two changes for a VM guest: no network
 * namespace (the VM has nothing to isolate it from) and a writable root (the
 * guest's rootfs is already an overlay over a read-only image). */
#include "runspec.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <linux/openat2.h>
#include <pwd.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <json-c/json.h>

#include "husk.h"
#include "husk/cleanup.h"
#include "husk/error.h"

/* sethostname(2) refuses longer names. */
#define HOSTNAME_MAX 64
/* The kernel's NGROUPS_MAX; more supplementary groups cannot be set. */
#define GROUPS_MAX 65536
/* cgroup v2 cpu.max bounds, in microseconds (kernel/sched/core.c). */
#define CPU_PERIOD_MIN 1000u
#define CPU_PERIOD_MAX 1000000u
#define CPU_QUOTA_MIN 1000u
/* The default cpu.max period; --limit-cpus scales the quota to it. */
#define CPU_PERIOD_DEFAULT 100000u
/* cgroup v1 cpu.shares bounds, which runc converts to cpu.weight. */
#define CPU_SHARES_MIN 2u
#define CPU_SHARES_MAX 262144u
/* OCI blockIO.weight bounds (blkio's scale, converted to io.weight). */
#define IO_WEIGHT_MIN 10u
#define IO_WEIGHT_MAX 1000u

static const char *const default_caps[] = {
	"CAP_AUDIT_WRITE",
	"CAP_KILL",
	"CAP_NET_BIND_SERVICE",
};

static const char *const namespaces[] = { "pid", "ipc", "uts", "mount", "cgroup" };

static const char *const masked_paths[] = {
	"/proc/acpi",	       "/proc/asound",	   "/proc/kcore",	"/proc/keys",
	"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
	"/sys/firmware",       "/proc/scsi",	   "/sys/devices/virtual/tpm",
};

static const char *const readonly_paths[] = {
	"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
};

#define OPTS(...) ((const char *const[]){ __VA_ARGS__, NULL })
static const struct {
	const char *destination, *type, *source;
	const char *const *options; /* NULL-terminated, or NULL for none */
} default_mounts[] = {
	{ "/proc", "proc", "proc", NULL },
	{ "/dev", "tmpfs", "tmpfs", OPTS("nosuid", "strictatime", "mode=755", "size=65536k") },
	{ "/dev/pts", "devpts", "devpts",
	  OPTS("nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5") },
	{ "/dev/shm", "tmpfs", "shm",
	  OPTS("nosuid", "noexec", "nodev", "mode=1777", "size=65536k") },
	{ "/dev/mqueue", "mqueue", "mqueue", OPTS("nosuid", "noexec", "nodev") },
	{ "/sys", "sysfs", "sysfs", OPTS("nosuid", "noexec", "nodev", "ro") },
	/* libjail mounts "cgroup" as cgroup2: the guest is cgroup2-only. */
	{ "/sys/fs/cgroup", "cgroup", "cgroup",
	  OPTS("nosuid", "noexec", "nodev", "relatime", "ro") },
};

/* ---- json-c helpers ------------------------------------------------------------
 *
 * Every constructor can fail with ENOMEM. Instead of checking each call,
 * the builder records the first failure and the helpers accept a NULL
 * parent, so a build that ran out of memory is detected once at the end and
 * the partial tree is still freed by the root's json_object_put(). */

struct jb {
	bool oom;
};

static void json_putp(struct json_object **o)
{
	if (*o)
		json_object_put(*o);
}
#define _cleanup_json_ __attribute__((cleanup(json_putp)))

/* Adds `v` as obj[key]; takes ownership of `v` in every case. */
static struct json_object *jadd(struct jb *b, struct json_object *obj, const char *key,
				struct json_object *v)
{
	if (!v || !obj || json_object_object_add(obj, key, v) < 0) {
		json_object_put(v);
		b->oom = true;
		return NULL;
	}
	return v;
}

static struct json_object *jpush(struct jb *b, struct json_object *arr, struct json_object *v)
{
	if (!v || !arr || json_object_array_add(arr, v) < 0) {
		json_object_put(v);
		b->oom = true;
		return NULL;
	}
	return v;
}

/* obj[key] = [ v[0], ... ] for n strings, or up to a NULL when n is SIZE_MAX. */
static struct json_object *jstrv(struct jb *b, struct json_object *obj, const char *key,
				 const char *const *v, size_t n)
{
	struct json_object *arr = jadd(b, obj, key, json_object_new_array());
	for (size_t i = 0; i < n && v[i]; i++)
		jpush(b, arr, json_object_new_string(v[i]));
	return arr;
}

static int serialise(struct jb *b, struct json_object *root, char **json, struct husk_err *err)
{
	if (b->oom)
		return husk_err_set(err, -ENOMEM, "building the OCI spec: out of memory");
	const char *s =
		json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN |
							     JSON_C_TO_STRING_NOSLASHESCAPE);
	*json = s ? strdup(s) : NULL;
	if (!*json)
		return husk_err_set(err, -ENOMEM, "building the OCI spec: out of memory");
	return 0;
}

/* ---- user resolution --------------------------------------------------------------- */

struct ids {
	uint32_t uid, gid;
	uint32_t *groups; /* supplementary, without duplicates */
	size_t n_groups;
};

/* 1: `s` is a decimal id in range; 0: not a number (a name); -ERANGE: a
 * number beyond HUSKCTL_ID_MAX. */
static int parse_id(const char *s, uint32_t *out)
{
	uint64_t v = 0;
	if (!*s)
		return 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return 0;
		/* Stop growing once out of range so that v cannot wrap. */
		if (v <= HUSKCTL_ID_MAX)
			v = v * 10 + (uint64_t)(*p - '0');
	}
	if (v > HUSKCTL_ID_MAX)
		return -ERANGE;
	*out = (uint32_t)v;
	return 1;
}

/* Opens `rel` ("etc/passwd") under the rootfs directory `dfd` with symlinks
 * resolved as the container would see them (an absolute link stays in the
 * rootfs rather than reaching the host's file). `shown` names it in
 * messages. */
static int open_in_rootfs(int dfd, const char *rel, const char *shown, FILE **out,
			  struct husk_err *err)
{
	*out = NULL;
	/* O_NONBLOCK: a FIFO planted at etc/passwd must not hang huskctl. */
	struct open_how how = {
		.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK,
		.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
	};
	_cleanup_fd_ int fd = (int)syscall(SYS_openat2, dfd, rel, &how, sizeof(how));
	if (fd < 0 && errno == ENOSYS) /* kernels before 5.6: refuse links */
		fd = openat(dfd, rel, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW);
	if (fd < 0)
		return husk_err_sys(err, -errno, "open %s", shown);
	struct stat st;
	if (fstat(fd, &st) < 0)
		return husk_err_sys(err, -errno, "stat %s", shown);
	if (!S_ISREG(st.st_mode))
		return husk_err_set(err, -EINVAL, "%s is not a regular file", shown);
	FILE *f = fdopen(fd, "re");
	if (!f)
		return husk_err_sys(err, -errno, "fdopen %s", shown);
	take_fd(&fd);
	*out = f;
	return 0;
}

struct rootfs_file {
	char *path; /* for messages: "<rootfs>/etc/passwd" */
	FILE *f;    /* NULL when the file does not exist */
};

static void rootfs_file_clear(struct rootfs_file *rf)
{
	free(rf->path);
	if (rf->f)
		fclose(rf->f);
	rf->path = NULL;
	rf->f = NULL;
}

/* A missing file is not an error here (f stays NULL): whether it matters
 * depends on what is looked up. */
static int rootfs_file_open(const char *rootfs, const char *rel, struct rootfs_file *rf,
			    struct husk_err *err)
{
	size_t n = strlen(rootfs);
	if (asprintf(&rf->path, "%s%s%s", rootfs, n && rootfs[n - 1] == '/' ? "" : "/", rel) < 0) {
		rf->path = NULL;
		return husk_err_set(err, -ENOMEM, "%s: out of memory", rel);
	}
	_cleanup_fd_ int dfd = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return husk_err_sys(err, -errno, "rootfs %s", rootfs);
	int r = open_in_rootfs(dfd, rel, rf->path, &rf->f, err);
	if (r == -ENOENT) {
		husk_err_clear(err);
		return 0;
	}
	return r;
}

/* fgetpwent and fgetgrent return NULL both at the end and on a read error;
 * errors are told apart with ferror(). Their static buffers are fine for a
 * single-threaded CLI: every entry is used before the next read. */
static int read_error(FILE *f, const char *path, struct husk_err *err)
{
	if (ferror(f))
		return husk_err_set(err, -EIO, "read %s: I/O error", path);
	return 0;
}

struct pw_hit {
	bool found;
	char *name;
	uint32_t uid, gid;
};

/* The first passwd entry with `name` (or with `uid` when name is NULL), as
 * runc's user lookup does. */
static int passwd_find(struct rootfs_file *rf, const char *user_spec, const char *name,
		       uint32_t uid, struct pw_hit *hit, struct husk_err *err)
{
	struct passwd *pw;
	*hit = (struct pw_hit){ 0 };
	while ((pw = fgetpwent(rf->f))) {
		if (name ? strcmp(pw->pw_name, name) != 0 : pw->pw_uid != uid)
			continue;
		if (pw->pw_uid > HUSKCTL_ID_MAX || pw->pw_gid > HUSKCTL_ID_MAX)
			return husk_err_set(err, -ERANGE,
					    "user \"%s\": %s gives %s uid %u gid %u, out of range "
					    "(0-%u)",
					    user_spec, rf->path, pw->pw_name, (unsigned)pw->pw_uid,
					    (unsigned)pw->pw_gid, HUSKCTL_ID_MAX);
		hit->name = strdup(pw->pw_name);
		if (!hit->name)
			return husk_err_set(err, -ENOMEM, "user \"%s\": out of memory", user_spec);
		hit->found = true;
		hit->uid = (uint32_t)pw->pw_uid;
		hit->gid = (uint32_t)pw->pw_gid;
		return 0;
	}
	return read_error(rf->f, rf->path, err);
}

static int group_find(struct rootfs_file *rf, const char *user_spec, const char *name,
		      bool *found, uint32_t *gid, struct husk_err *err)
{
	struct group *gr;
	*found = false;
	while ((gr = fgetgrent(rf->f))) {
		if (strcmp(gr->gr_name, name) != 0)
			continue;
		if (gr->gr_gid > HUSKCTL_ID_MAX)
			return husk_err_set(err, -ERANGE,
					    "user \"%s\": %s gives group %s gid %u, out of range "
					    "(0-%u)",
					    user_spec, rf->path, name, (unsigned)gr->gr_gid,
					    HUSKCTL_ID_MAX);
		*found = true;
		*gid = (uint32_t)gr->gr_gid;
		return 0;
	}
	return read_error(rf->f, rf->path, err);
}

/* Every group whose member list names `user`, in file order, once each. */
static int group_memberships(struct rootfs_file *rf, const char *user_spec, const char *user,
			     struct ids *ids, struct husk_err *err)
{
	struct group *gr;
	size_t cap = 0;
	while ((gr = fgetgrent(rf->f))) {
		bool member = false;
		for (char **m = gr->gr_mem; m && *m && !member; m++)
			member = strcmp(*m, user) == 0;
		if (!member || gr->gr_gid > HUSKCTL_ID_MAX)
			continue; /* as runc: a bad entry is not ours to use */
		bool dup = false;
		for (size_t i = 0; i < ids->n_groups && !dup; i++)
			dup = ids->groups[i] == (uint32_t)gr->gr_gid;
		if (dup)
			continue;
		if (ids->n_groups == GROUPS_MAX)
			return husk_err_set(err, -E2BIG,
					    "user \"%s\": %s lists %s in more than %d groups",
					    user_spec, rf->path, user, GROUPS_MAX);
		if (ids->n_groups == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			uint32_t *n = realloc(ids->groups, ncap * sizeof(*n));
			if (!n)
				return husk_err_set(err, -ENOMEM, "user \"%s\": out of memory",
						    user_spec);
			ids->groups = n;
			cap = ncap;
		}
		ids->groups[ids->n_groups++] = (uint32_t)gr->gr_gid;
	}
	return read_error(rf->f, rf->path, err);
}

/* Resolves opts->user as runc's GetExecUser does: a numeric user need not
 * exist; a numeric user that exists, or a named one, takes its primary
 * group from passwd and, unless a group is given explicitly, its
 * supplementary groups from the group file. */
static int resolve_user(const struct huskctl_spec_opts *o, struct ids *ids, struct husk_err *err)
{
	const char *spec = o->user;
	*ids = (struct ids){ 0 };
	if (!spec)
		return 0;
	const char *colon = strchr(spec, ':');
	_cleanup_free_ char *user = strndup(spec, colon ? (size_t)(colon - spec) : strlen(spec));
	const char *group = colon ? colon + 1 : NULL;
	if (!user)
		return husk_err_set(err, -ENOMEM, "user \"%s\": out of memory", spec);
	if (!*user || (group && (!*group || strchr(group, ':'))))
		return husk_err_set(err, -EINVAL,
				    "user \"%s\": expected uid, uid:gid, name or name:group", spec);

	uint32_t uid = 0, gid = 0;
	int user_num = parse_id(user, &uid);
	int group_num = group ? parse_id(group, &gid) : 0;
	if (user_num < 0)
		return husk_err_set(err, -ERANGE, "user \"%s\": uid %s out of range (0-%u)", spec,
				    user, HUSKCTL_ID_MAX);
	if (group_num < 0)
		return husk_err_set(err, -ERANGE, "user \"%s\": gid %s out of range (0-%u)", spec,
				    group, HUSKCTL_ID_MAX);
	ids->uid = uid;
	ids->gid = gid;
	/* A numeric uid is looked up only for its primary and supplementary
	 * groups, which an explicit group replaces. */
	bool user_lookup = !user_num || (!group && o->rootfs_dir);
	bool group_lookup = group && !group_num;
	if (!user_lookup && !group_lookup)
		return 0;
	if (!o->rootfs_dir)
		return husk_err_set(err, -EINVAL,
				    "user \"%s\": the %s name \"%s\" can only be resolved in the "
				    "container's rootfs (etc/%s), and no rootfs directory was "
				    "given; use numeric ids",
				    spec, user_num ? "group" : "user", user_num ? group : user,
				    user_num ? "group" : "passwd");

	/* The user part. */
	_cleanup_free_ char *name = NULL;
	if (user_lookup) {
		struct rootfs_file pw = { 0 };
		int r = rootfs_file_open(o->rootfs_dir, "etc/passwd", &pw, err);
		if (r < 0) {
			rootfs_file_clear(&pw);
			husk_err_wrap(err, "user \"%s\"", spec);
			return r;
		}
		if (!pw.f && !user_num) {
			r = husk_err_set(err, -ENOENT,
					 "user \"%s\": unknown user name \"%s\": %s does not exist",
					 spec, user, pw.path);
			rootfs_file_clear(&pw);
			return r;
		}
		struct pw_hit hit = { 0 };
		if (pw.f)
			r = passwd_find(&pw, spec, user_num ? NULL : user, uid, &hit, err);
		if (r == 0 && !hit.found && !user_num)
			r = husk_err_set(err, -ENOENT,
					 "user \"%s\": unknown user name \"%s\" in %s", spec,
					 user, pw.path);
		rootfs_file_clear(&pw);
		if (r < 0) {
			free(hit.name);
			return r;
		}
		if (hit.found) {
			ids->uid = hit.uid;
			if (!group)
				ids->gid = hit.gid;
			name = hit.name;
		}
	}

	/* The group part: explicit, or the user's memberships. */
	if (group && group_num)
		return 0; /* gid already set; no supplementary groups */
	if (!group && !name)
		return 0; /* a numeric uid with no passwd entry: gid 0, no groups */
	struct rootfs_file gf = { 0 };
	int r = rootfs_file_open(o->rootfs_dir, "etc/group", &gf, err);
	if (r < 0) {
		rootfs_file_clear(&gf);
		husk_err_wrap(err, "user \"%s\"", spec);
		return r;
	}
	if (group) {
		bool found = false;
		if (!gf.f)
			r = husk_err_set(err, -ENOENT,
					 "user \"%s\": unknown group name \"%s\": "
					 "%s does not exist",
					 spec, group, gf.path);
		else
			r = group_find(&gf, spec, group, &found, &ids->gid, err);
		if (r == 0 && !found)
			r = husk_err_set(err, -ENOENT,
					 "user \"%s\": unknown group name \"%s\" in %s",
					 spec, group, gf.path);
	} else if (gf.f) {
		r = group_memberships(&gf, spec, name, ids, err);
	}
	rootfs_file_clear(&gf);
	return r;
}

/* ---- validation ---------------------------------------------------------------------- */

static int check_process(const struct huskctl_spec_opts *o, struct husk_err *err)
{
	if (!o->args || o->n_args == 0)
		return husk_err_set(err, -EINVAL, "args: empty; a command to run is required");
	for (size_t i = 0; i < o->n_args; i++)
		if (!o->args[i])
			return husk_err_set(err, -EINVAL, "args[%zu]: NULL", i);
	if (!o->args[0][0])
		return husk_err_set(err, -EINVAL, "args[0]: the program name is empty (\"\")");
	if (o->n_env && !o->env)
		return husk_err_set(err, -EINVAL, "env: %zu entries but no array", o->n_env);
	for (size_t i = 0; i < o->n_env; i++) {
		const char *e = o->env[i];
		if (!e)
			return husk_err_set(err, -EINVAL, "env[%zu]: NULL", i);
		/* Split at the first '=': the key then cannot contain one. */
		const char *eq = strchr(e, '=');
		if (!eq)
			return husk_err_set(err, -EINVAL,
					    "env[%zu] \"%s\": not of the form KEY=VALUE", i, e);
		if (eq == e)
			return husk_err_set(err, -EINVAL,
					    "env[%zu] \"%s\": the name before '=' is empty", i, e);
	}
	if (o->cwd && o->cwd[0] != '/')
		return husk_err_set(err, -EINVAL, "cwd \"%s\": not an absolute path", o->cwd);
	return 0;
}

/* cpuset lists as the kernel's cpulist_parse takes them: "N" or "N-M"
 * entries separated by commas (the kernel checks the numbers exist). */
static int check_cpu_list(const char *what, const char *s, struct husk_err *err)
{
	if (!s)
		return 0;
	const char *p = s;
	for (;;) {
		if (*p < '0' || *p > '9')
			break;
		while (*p >= '0' && *p <= '9')
			p++;
		if (*p == '-') {
			p++;
			if (*p < '0' || *p > '9')
				break;
			while (*p >= '0' && *p <= '9')
				p++;
		}
		if (!*p)
			return 0;
		if (*p++ != ',')
			break;
	}
	return husk_err_set(err, -EINVAL, "%s \"%s\": want a list like 0-2,4", what, s);
}

static int check_spec(const struct huskctl_spec_opts *o, struct husk_err *err)
{
	if (o->hostname) {
		size_t n = strlen(o->hostname);
		if (n == 0 || n > HOSTNAME_MAX)
			return husk_err_set(err, -EINVAL,
					    "hostname \"%s\": must be 1 to %d bytes long, got %zu",
					    o->hostname, HOSTNAME_MAX, n);
	}
	/* The spec's fields are int64: a larger value would turn negative. */
	if (o->memory_limit > (uint64_t)INT64_MAX)
		return husk_err_set(err, -ERANGE, "memory limit %" PRIu64 ": more than %" PRId64,
				    o->memory_limit, INT64_MAX);
	if (o->pids_limit > (uint64_t)INT64_MAX)
		return husk_err_set(err, -ERANGE, "pids limit %" PRIu64 ": more than %" PRId64,
				    o->pids_limit, INT64_MAX);
	if (o->cpu_quota_us &&
	    (o->cpu_quota_us < CPU_QUOTA_MIN || o->cpu_quota_us > (uint64_t)INT64_MAX))
		return husk_err_set(err, -ERANGE,
				    "cpu quota %" PRIu64 " us: must be %u to %" PRId64 " us",
				    o->cpu_quota_us, CPU_QUOTA_MIN, INT64_MAX);
	if (o->cpu_period_us &&
	    (o->cpu_period_us < CPU_PERIOD_MIN || o->cpu_period_us > CPU_PERIOD_MAX))
		return husk_err_set(err, -ERANGE, "cpu period %" PRIu64 " us: must be %u to %u us",
				    o->cpu_period_us, CPU_PERIOD_MIN, CPU_PERIOD_MAX);
	if (o->cpu_shares && (o->cpu_shares < CPU_SHARES_MIN || o->cpu_shares > CPU_SHARES_MAX))
		return husk_err_set(err, -ERANGE, "cpu shares %" PRIu64 ": must be %u to %u",
				    o->cpu_shares, CPU_SHARES_MIN, CPU_SHARES_MAX);
	int r = check_cpu_list("cpuset cpus", o->cpuset_cpus, err);
	if (r == 0)
		r = check_cpu_list("cpuset mems", o->cpuset_mems, err);
	if (r < 0)
		return r;
	if (o->io_weight && (o->io_weight < IO_WEIGHT_MIN || o->io_weight > IO_WEIGHT_MAX))
		return husk_err_set(err, -ERANGE, "io weight %u: must be %u to %u", o->io_weight,
				    IO_WEIGHT_MIN, IO_WEIGHT_MAX);
	if (o->n_io_limits && !o->io_limits)
		return husk_err_set(err, -EINVAL, "io limits: %zu entries but no array",
				    o->n_io_limits);
	for (size_t i = 0; i < o->n_io_limits; i++) {
		const struct huskctl_io_limit *l = &o->io_limits[i];
		const uint64_t v[] = { l->rbps, l->wbps, l->riops, l->wiops };
		bool any = false;
		for (size_t k = 0; k < ARRAY_SIZE(v); k++) {
			any = any || v[k];
			if (v[k] > (uint64_t)INT64_MAX)
				return husk_err_set(err, -ERANGE,
						    "io limit %u:%u: %" PRIu64 " is more than %" PRId64,
						    l->major, l->minor, v[k], INT64_MAX);
		}
		if (!any)
			return husk_err_set(err, -EINVAL, "io limit %u:%u: no rate given", l->major,
					    l->minor);
	}
	return 0;
}

/* ---- building ------------------------------------------------------------------------- */

static bool same_key(const char *a, const char *b)
{
	size_t na = strcspn(a, "="), nb = strcspn(b, "=");
	return na == nb && memcmp(a, b, na) == 0;
}

/* Defaults first, then the caller's entries; an entry whose key is already
 * present replaces it in place, so the last word on a key wins. */
static int merge_env(const struct huskctl_spec_opts *o, const char ***out, size_t *n_out,
		     struct husk_err *err)
{
	const char **v = calloc(o->n_env + 2, sizeof(*v));
	if (!v)
		return husk_err_set(err, -ENOMEM, "env: out of memory");
	size_t n = 0;
	v[n++] = "PATH=" HUSKCTL_DEFAULT_PATH;
	if (o->terminal)
		v[n++] = "TERM=xterm";
	for (size_t i = 0; i < o->n_env; i++) {
		size_t j = 0;
		while (j < n && !same_key(v[j], o->env[i]))
			j++;
		v[j] = o->env[i];
		if (j == n)
			n++;
	}
	*out = v;
	*n_out = n;
	return 0;
}

static struct json_object *build_process(struct jb *b, const struct huskctl_spec_opts *o,
					 const struct ids *ids, const char *const *env,
					 size_t n_env)
{
	struct json_object *p = json_object_new_object();
	if (!p) {
		b->oom = true;
		return NULL;
	}
	jadd(b, p, "terminal", json_object_new_boolean(o->terminal));

	struct json_object *user = jadd(b, p, "user", json_object_new_object());
	jadd(b, user, "uid", json_object_new_int64(ids->uid));
	jadd(b, user, "gid", json_object_new_int64(ids->gid));
	if (ids->n_groups) {
		struct json_object *g = jadd(b, user, "additionalGids", json_object_new_array());
		for (size_t i = 0; i < ids->n_groups; i++)
			jpush(b, g, json_object_new_int64(ids->groups[i]));
	}

	jstrv(b, p, "args", (const char *const *)o->args, o->n_args);
	jstrv(b, p, "env", env, n_env);
	jadd(b, p, "cwd", json_object_new_string(o->cwd ? o->cwd : "/"));

	/* runc gives a non-root user the same sets; without ambient ones
	 * they are dropped at its execve, as on any Linux system. */
	struct json_object *caps = jadd(b, p, "capabilities", json_object_new_object());
	static const char *const sets[] = { "bounding", "effective", "permitted" };
	for (size_t i = 0; i < ARRAY_SIZE(sets); i++)
		jstrv(b, caps, sets[i], default_caps, ARRAY_SIZE(default_caps));

	struct json_object *rl = jadd(b, p, "rlimits", json_object_new_array());
	struct json_object *nofile = jpush(b, rl, json_object_new_object());
	jadd(b, nofile, "type", json_object_new_string("RLIMIT_NOFILE"));
	jadd(b, nofile, "hard", json_object_new_int64(1024));
	jadd(b, nofile, "soft", json_object_new_int64(1024));

	jadd(b, p, "noNewPrivileges", json_object_new_boolean(true));
	return p;
}

/* blockIO.<key>: [{major, minor, rate}] for the limits that set `rate`. */
static void build_throttles(struct jb *b, struct json_object *blkio, const char *key,
			    const struct huskctl_spec_opts *o, size_t rate_off)
{
	struct json_object *arr = NULL;
	for (size_t i = 0; i < o->n_io_limits; i++) {
		uint64_t rate;
		memcpy(&rate, (const char *)&o->io_limits[i] + rate_off, sizeof(rate));
		if (!rate)
			continue;
		if (!arr)
			arr = jadd(b, blkio, key, json_object_new_array());
		struct json_object *e = jpush(b, arr, json_object_new_object());
		jadd(b, e, "major", json_object_new_int64(o->io_limits[i].major));
		jadd(b, e, "minor", json_object_new_int64(o->io_limits[i].minor));
		jadd(b, e, "rate", json_object_new_uint64(rate));
	}
}

static void build_resources(struct jb *b, struct json_object *lnx,
			    const struct huskctl_spec_opts *o)
{
	bool cpu = o->cpu_quota_us || o->cpu_period_us || o->cpu_shares || o->cpuset_cpus ||
		   o->cpuset_mems;
	bool io = o->io_weight || o->n_io_limits;
	if (!o->memory_limit && !o->pids_limit && !cpu && !io)
		return;
	struct json_object *res = jadd(b, lnx, "resources", json_object_new_object());
	if (o->memory_limit) {
		struct json_object *m = jadd(b, res, "memory", json_object_new_object());
		jadd(b, m, "limit", json_object_new_int64((int64_t)o->memory_limit));
	}
	if (cpu) {
		struct json_object *c = jadd(b, res, "cpu", json_object_new_object());
		if (o->cpu_shares)
			jadd(b, c, "shares", json_object_new_uint64(o->cpu_shares));
		if (o->cpu_quota_us)
			jadd(b, c, "quota", json_object_new_int64((int64_t)o->cpu_quota_us));
		if (o->cpu_period_us)
			jadd(b, c, "period", json_object_new_uint64(o->cpu_period_us));
		if (o->cpuset_cpus)
			jadd(b, c, "cpus", json_object_new_string(o->cpuset_cpus));
		if (o->cpuset_mems)
			jadd(b, c, "mems", json_object_new_string(o->cpuset_mems));
	}
	if (o->pids_limit) {
		struct json_object *pl = jadd(b, res, "pids", json_object_new_object());
		jadd(b, pl, "limit", json_object_new_int64((int64_t)o->pids_limit));
	}
	if (io) {
		struct json_object *bio = jadd(b, res, "blockIO", json_object_new_object());
		if (o->io_weight)
			jadd(b, bio, "weight", json_object_new_int64(o->io_weight));
		build_throttles(b, bio, "throttleReadBpsDevice", o,
				offsetof(struct huskctl_io_limit, rbps));
		build_throttles(b, bio, "throttleWriteBpsDevice", o,
				offsetof(struct huskctl_io_limit, wbps));
		build_throttles(b, bio, "throttleReadIOPSDevice", o,
				offsetof(struct huskctl_io_limit, riops));
		build_throttles(b, bio, "throttleWriteIOPSDevice", o,
				offsetof(struct huskctl_io_limit, wiops));
	}
}

/* Validation, user resolution and env merging shared by both builders. */
static int prepare(const struct huskctl_spec_opts *o, struct ids *ids, const char ***env,
		   size_t *n_env, struct husk_err *err)
{
	*env = NULL;
	*ids = (struct ids){ 0 };
	if (!o)
		return husk_err_set(err, -EINVAL, "no spec options given");
	int r = check_process(o, err);
	if (r == 0)
		r = resolve_user(o, ids, err);
	if (r == 0)
		r = merge_env(o, env, n_env, err);
	return r;
}

int huskctl_process_build(const struct huskctl_spec_opts *o, char **json, struct husk_err *err)
{
	*json = NULL;
	struct ids ids;
	_cleanup_free_ const char **env = NULL;
	size_t n_env = 0;
	int r = prepare(o, &ids, &env, &n_env, err);
	if (r == 0) {
		struct jb b = { 0 };
		_cleanup_json_ struct json_object *p = build_process(&b, o, &ids, env, n_env);
		r = serialise(&b, p, json, err);
	}
	free(ids.groups);
	return r;
}

int huskctl_spec_build(const struct huskctl_spec_opts *o, char **json, struct husk_err *err)
{
	*json = NULL;
	if (o) {
		int r = check_spec(o, err);
		if (r < 0)
			return r;
	}
	struct ids ids;
	_cleanup_free_ const char **env = NULL;
	size_t n_env = 0;
	int r = prepare(o, &ids, &env, &n_env, err);
	if (r < 0) {
		free(ids.groups);
		return r;
	}

	struct jb b = { 0 };
	_cleanup_json_ struct json_object *root = json_object_new_object();
	if (!root)
		b.oom = true;
	jadd(&b, root, "ociVersion", json_object_new_string("1.0.2"));
	jadd(&b, root, "process", build_process(&b, o, &ids, env, n_env));
	free(ids.groups);

	struct json_object *rootfs = jadd(&b, root, "root", json_object_new_object());
	jadd(&b, rootfs, "path", json_object_new_string("rootfs"));
	jadd(&b, rootfs, "readonly", json_object_new_boolean(false));
	jadd(&b, root, "hostname",
	     json_object_new_string(o->hostname ? o->hostname : HUSKCTL_DEFAULT_HOSTNAME));

	struct json_object *mounts = jadd(&b, root, "mounts", json_object_new_array());
	for (size_t i = 0; i < ARRAY_SIZE(default_mounts); i++) {
		struct json_object *m = jpush(&b, mounts, json_object_new_object());
		jadd(&b, m, "destination", json_object_new_string(default_mounts[i].destination));
		jadd(&b, m, "type", json_object_new_string(default_mounts[i].type));
		jadd(&b, m, "source", json_object_new_string(default_mounts[i].source));
		if (default_mounts[i].options)
			jstrv(&b, m, "options", default_mounts[i].options, SIZE_MAX);
	}

	struct json_object *lnx = jadd(&b, root, "linux", json_object_new_object());
	build_resources(&b, lnx, o);
	struct json_object *ns = jadd(&b, lnx, "namespaces", json_object_new_array());
	for (size_t i = 0; i < ARRAY_SIZE(namespaces); i++) {
		struct json_object *e = jpush(&b, ns, json_object_new_object());
		jadd(&b, e, "type", json_object_new_string(namespaces[i]));
	}
	jstrv(&b, lnx, "maskedPaths", masked_paths, ARRAY_SIZE(masked_paths));
	jstrv(&b, lnx, "readonlyPaths", readonly_paths, ARRAY_SIZE(readonly_paths));
	return serialise(&b, root, json, err);
}

/* ---- cpus and io limits ----------------------------------------------------------- */

int huskctl_parse_cpus(const char *s, uint64_t *quota_us, uint64_t *period_us,
		       struct husk_err *err)
{
	static const char expect[] = "expected a number of CPUs such as 0.5 or 2";
	if (!s || !*s)
		return husk_err_set(err, -EINVAL, "cpus \"\": %s", expect);
	/* Fixed point in millionths of a CPU: no float rounding, and one
	 * microsecond of quota per 100000 us period is 10 millionths. */
	uint64_t whole = 0, frac = 0, scale = 1000000;
	const char *p = s;
	for (; *p >= '0' && *p <= '9'; p++) {
		whole = whole * 10 + (uint64_t)(*p - '0');
		if (whole > 1000000)
			return husk_err_set(err, -ERANGE, "cpus \"%s\": too many", s);
	}
	bool digits = p != s;
	if (*p == '.') {
		for (p++; *p >= '0' && *p <= '9'; p++, digits = true) {
			if (scale > 1) {
				scale /= 10;
				frac += (uint64_t)(*p - '0') * scale;
			}
		}
	}
	if (*p || !digits)
		return husk_err_set(err, -EINVAL, "cpus \"%s\": %s", s, expect);
	uint64_t quota = (whole * 1000000 + frac) * CPU_PERIOD_DEFAULT / 1000000;
	if (quota < CPU_QUOTA_MIN)
		return husk_err_set(err, -ERANGE, "cpus \"%s\": less than the minimum %u.%02u", s,
				    CPU_QUOTA_MIN / CPU_PERIOD_DEFAULT,
				    CPU_QUOTA_MIN * 100 / CPU_PERIOD_DEFAULT % 100);
	*quota_us = quota;
	*period_us = CPU_PERIOD_DEFAULT;
	return 0;
}

static bool parse_dec_u32(const char **p, uint32_t *out)
{
	uint64_t v = 0;
	const char *q = *p;
	for (; *q >= '0' && *q <= '9'; q++) {
		v = v * 10 + (uint64_t)(*q - '0');
		if (v > UINT32_MAX)
			return false;
	}
	if (q == *p)
		return false;
	*out = (uint32_t)v;
	*p = q;
	return true;
}

int huskctl_parse_io_limit(const char *s, struct huskctl_io_limit *out, struct husk_err *err)
{
	static const char expect[] =
		"want MAJ:MIN:KEY=VALUE[,KEY=VALUE...] with KEY rbps, wbps, riops or wiops";
	*out = (struct huskctl_io_limit){ 0 };
	const char *p = s ? s : "";
	if (!parse_dec_u32(&p, &out->major) || *p++ != ':' || !parse_dec_u32(&p, &out->minor) ||
	    *p++ != ':' || !*p)
		return husk_err_set(err, -EINVAL, "io limit \"%s\": %s", s ? s : "", expect);
	_cleanup_free_ char *list = strdup(p);
	if (!list)
		return husk_err_set(err, -ENOMEM, "io limit \"%s\": out of memory", s);
	char *save = NULL;
	for (char *kv = strtok_r(list, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(kv, '=');
		if (!eq)
			return husk_err_set(err, -EINVAL, "io limit \"%s\": \"%s\": %s", s, kv,
					    expect);
		*eq = '\0';
		const char *val = eq + 1;
		const struct {
			const char *key;
			uint64_t *dst;
			bool bytes;
		} keys[] = {
			{ "rbps", &out->rbps, true },
			{ "wbps", &out->wbps, true },
			{ "riops", &out->riops, false },
			{ "wiops", &out->wiops, false },
		};
		size_t k = 0;
		while (k < ARRAY_SIZE(keys) && strcmp(kv, keys[k].key))
			k++;
		if (k == ARRAY_SIZE(keys))
			return husk_err_set(err, -EINVAL, "io limit \"%s\": unknown key \"%s\"; %s",
					    s, kv, expect);
		uint64_t *dst = keys[k].dst;
		bool bytes = keys[k].bytes;
		uint64_t v = 0;
		if (bytes) {
			if (husk_parse_size(val, &v, err) < 0)
				return husk_err_wrap(err, "io limit \"%s\": %s", s, kv);
		} else {
			const char *q = val;
			uint32_t n;
			if (!parse_dec_u32(&q, &n) || *q)
				return husk_err_set(err, -EINVAL,
						    "io limit \"%s\": %s \"%s\": want a count", s,
						    kv, val);
			v = n;
		}
		if (!v)
			return husk_err_set(err, -EINVAL, "io limit \"%s\": %s must be more than 0",
					    s, kv);
		*dst = v;
	}
	if (!out->rbps && !out->wbps && !out->riops && !out->wiops)
		return husk_err_set(err, -EINVAL, "io limit \"%s\": %s", s, expect);
	return 0;
}
