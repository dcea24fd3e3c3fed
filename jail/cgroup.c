/* cgroup v2 for libjail: see jail/cgroup.h. */
#include "jail/cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "husk/cleanup.h"
#include "husk/file.h"
#include "husk/time.h"

/* From <linux/magic.h>, which the musl toolchain may not carry. */
#define CG2_SUPER_MAGIC 0x63677270UL

/* Controllers a container may need; enabled in ancestors when offered. */
static const char *const wanted_controllers[] = {"cpu", "cpuset", "io", "memory", "pids", "hugetlb"};

/* How long the cgroup.kill fallback waits for an exit between rounds. */
#define KILL_ROUND_WAIT_MS 50
/* Nesting below the leaf that destroy will descend into. */
#define MAX_TREE_DEPTH 64

struct jail_cgroup {
	char *path;	/* absolute directory */
	int dirfd;	/* O_DIRECTORY fd of path */
	char **created; /* ancestors (leaf excluded) made by open, outermost first,
			 * NULL-terminated */
	size_t n_created;
};

/* ---- small helpers ------------------------------------------------------- */

/* Deadlines in ms, as poll(2) takes them. */
static int64_t now_ms(void)
{
	return (int64_t)(husk_monotonic_ns() / 1000000);
}

/* A whole file under `dirfd`, NUL-terminated. cgroup files are generated
 * on read (st_size says nothing) and bounded by the kernel, not by us. */
static int read_at(int dirfd, const char *name, char **out)
{
	return husk_read_file_at(dirfd, name, SIZE_MAX, out, NULL, NULL);
}

/* Writes `val` in a single write(2): cgroup files take one value per call. */
static int put_fd(int fd, const char *val)
{
	size_t len = strlen(val);
	ssize_t n;
	do
		n = write(fd, val, len);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EIO;
}

static int open_w(int dirfd, const char *name)
{
	/* O_TRUNC is accepted by kernfs and makes plain files (tests) hold
	 * exactly what was written. */
	int fd = openat(dirfd, name, O_WRONLY | O_TRUNC | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

static int write_at(int dirfd, const char *name, const char *val)
{
	_cleanup_fd_ int fd = open_w(dirfd, name);
	if (fd < 0)
		return fd;
	return put_fd(fd, val);
}

/* Parses a decimal u64 followed only by whitespace; "max" is UINT64_MAX. */
static bool parse_u64(const char *s, uint64_t *v)
{
	while (*s == ' ' || *s == '\t')
		s++;
	if (strncmp(s, "max", 3) == 0 && (s[3] == '\0' || s[3] == '\n' || s[3] == ' ')) {
		*v = UINT64_MAX;
		return true;
	}
	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	char *end;
	unsigned long long x = strtoull(s, &end, 10);
	if (errno)
		return false;
	while (*end == ' ' || *end == '\t' || *end == '\n')
		end++;
	if (*end)
		return false;
	*v = x;
	return true;
}

static bool has_word(const char *list, const char *word)
{
	size_t wl = strlen(word);
	for (const char *p = list; *p;) {
		while (*p == ' ' || *p == '\n')
			p++;
		const char *e = p;
		while (*e && *e != ' ' && *e != '\n')
			e++;
		if ((size_t)(e - p) == wl && memcmp(p, word, wl) == 0)
			return true;
		p = e;
	}
	return false;
}

/* Flat-keyed files ("key value" lines): the fields of a struct to fill. */
struct kv_field {
	const char *key;
	size_t off;
};

static void parse_flat(char *buf, const struct kv_field *f, size_t nf, void *base)
{
	char *save = NULL;
	for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *sp = strchr(line, ' ');
		if (!sp)
			continue;
		*sp = '\0';
		for (size_t i = 0; i < nf; i++) {
			if (strcmp(line, f[i].key) != 0)
				continue;
			uint64_t v;
			if (parse_u64(sp + 1, &v))
				memcpy((char *)base + f[i].off, &v, sizeof(v));
			break;
		}
	}
}

/* Looks up one key of a flat-keyed buffer without modifying it. */
static bool flat_get(const char *buf, const char *key, uint64_t *v)
{
	size_t kl = strlen(key);
	for (const char *p = buf; *p;) {
		const char *nl = strchr(p, '\n');
		if (strncmp(p, key, kl) == 0 && p[kl] == ' ') {
			char tmp[32];
			const char *vs = p + kl + 1;
			size_t n = strcspn(vs, "\n");
			if (n >= sizeof(tmp))
				return false;
			memcpy(tmp, vs, n);
			tmp[n] = '\0';
			return parse_u64(tmp, v);
		}
		if (!nl)
			break;
		p = nl + 1;
	}
	return false;
}

/* Reads a flat-keyed file under the cgroup and returns `key`; -ENOENT
 * (file) or -ENODATA (key) when absent. */
static int read_key(const struct jail_cgroup *cg, const char *file, const char *key, uint64_t *v)
{
	_cleanup_free_ char *buf = NULL;
	int r = read_at(cg->dirfd, file, &buf);
	if (r < 0)
		return r;
	return flat_get(buf, key, v) ? 0 : -ENODATA;
}

/* Missing file or controller: the caller reads as zero, not an error. */
static bool absent(int r)
{
	return r == -ENOENT || r == -ENODEV || r == -EOPNOTSUPP || r == -ENOTDIR;
}

/* ---- open / path --------------------------------------------------------- */

static char *path_join(const char *a, const char *b)
{
	char *s;
	return asprintf(&s, "%s/%s", a, b) < 0 ? NULL : s;
}

/* Enables in `dir`'s cgroup.subtree_control each wanted controller its
 * cgroup.controllers offers. One write per controller, errors ignored: a
 * populated non-root cgroup refuses domain controllers (EBUSY), and the
 * resource write that needs one then says which is missing. */
static void enable_controllers(const char *dir)
{
	_cleanup_fd_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return;
	_cleanup_free_ char *avail = NULL, *enabled = NULL;
	if (read_at(dfd, "cgroup.controllers", &avail) < 0)
		return;
	if (read_at(dfd, "cgroup.subtree_control", &enabled) < 0)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(wanted_controllers); i++) {
		const char *c = wanted_controllers[i];
		if (!has_word(avail, c) || has_word(enabled, c))
			continue;
		char cmd[32];
		snprintf(cmd, sizeof(cmd), "+%s", c);
		(void)write_at(dfd, "cgroup.subtree_control", cmd);
	}
}

/* Splits `path` into "a/b/c" without empty or "." components. */
static int normalize(const char *mount, const char *path, char **out, struct husk_err *err)
{
	size_t len = strlen(path);
	_cleanup_free_ char *rel = malloc(len + 1);
	if (!rel)
		return husk_err_set(err, -ENOMEM, "cgroup path \"%s\": out of memory", path);
	size_t n = 0;
	for (const char *p = path; *p;) {
		while (*p == '/')
			p++;
		size_t cl = strcspn(p, "/");
		if (cl == 0)
			break;
		if (cl == 1 && p[0] == '.') {
			p += cl;
			continue;
		}
		if (cl == 2 && p[0] == '.' && p[1] == '.')
			return husk_err_set(err, -EINVAL,
					    "cgroup path \"%s\": \"..\" is not allowed (the path must "
					    "stay under %s)",
					    path, mount);
		if (n)
			rel[n++] = '/';
		memcpy(rel + n, p, cl);
		n += cl;
		p += cl;
	}
	rel[n] = '\0';
	if (n == 0)
		return husk_err_set(err, -EINVAL,
				    "cgroup path \"%s\" names the root of %s; a container needs a "
				    "cgroup of its own",
				    path, mount);
	*out = take_ptr(rel);
	return 0;
}

static void rollback(char **made, size_t n)
{
	while (n > 0)
		rmdir(made[--n]);
}

int jail_cgroup_open(const char *mount, const char *path, bool create, struct jail_cgroup **out,
		     struct husk_err *err)
{
	*out = NULL;
	if (!mount || !*mount)
		return husk_err_set(err, -EINVAL, "cgroup mount point is empty");
	if (!path)
		path = "";

	_cleanup_free_ char *base = strdup(mount);
	_cleanup_free_ char *rel = NULL;
	if (!base)
		return husk_err_set(err, -ENOMEM, "opening cgroup: out of memory");
	for (size_t l = strlen(base); l > 1 && base[l - 1] == '/'; l--)
		base[l - 1] = '\0';
	int r = normalize(base, path, &rel, err);
	if (r < 0)
		return r;

	struct jail_cgroup *cg = calloc(1, sizeof(*cg));
	if (!cg)
		return husk_err_set(err, -ENOMEM, "opening cgroup: out of memory");
	cg->dirfd = -1;
	cg->path = strcmp(base, "/") == 0 ? path_join("", rel) : path_join(base, rel);
	if (!cg->path) {
		jail_cgroup_free(cg);
		return husk_err_set(err, -ENOMEM, "opening cgroup: out of memory");
	}

	/* Every directory made here, leaf included, for rollback on failure. */
	char **made = NULL;
	size_t n_made = 0;
	if (create) {
		size_t ncomp = 1;
		for (const char *p = rel; *p; p++)
			ncomp += *p == '/';
		made = calloc(ncomp + 1, sizeof(*made)); /* NULL-terminated */
		_cleanup_free_ char *cur = strdup(cg->path);
		if (!made || !cur) {
			free(made);
			jail_cgroup_free(cg);
			return husk_err_set(err, -ENOMEM, "opening cgroup: out of memory");
		}
		/* Walk the components of cur in place: cur[..end] is the
		 * directory being made, cur[..parent_end] its parent. */
		size_t base_len = strlen(cg->path) - strlen(rel) - 1;
		size_t end = base_len;
		while (cur[end] == '/') {
			size_t parent_end = end;
			end += 1 + strcspn(cg->path + end + 1, "/");
			cur[parent_end] = '\0';
			enable_controllers(parent_end ? cur : "/");
			cur[parent_end] = '/';
			char saved = cur[end];
			cur[end] = '\0';
			if (mkdir(cur, 0755) == 0) {
				made[n_made] = strdup(cur);
				if (!made[n_made]) {
					rmdir(cur);
					r = husk_err_set(err, -ENOMEM, "opening cgroup: out of memory");
					goto fail;
				}
				n_made++;
			} else if (errno != EEXIST) {
				r = husk_err_sys(err, -errno, "creating cgroup %s", cur);
				goto fail;
			}
			cur[end] = saved;
		}
	}

	cg->dirfd = open(cg->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cg->dirfd < 0) {
		r = husk_err_sys(err, -errno, "opening cgroup %s", cg->path);
		goto fail;
	}
	/* The leaf is always removed by destroy; keep only the ancestors. */
	if (n_made > 0 && strcmp(made[n_made - 1], cg->path) == 0) {
		free(made[--n_made]);
		made[n_made] = NULL;
	}
	cg->created = made;
	cg->n_created = n_made;
	*out = cg;
	return 0;

fail:
	rollback(made, n_made);
	husk_strv_free(made);
	jail_cgroup_free(cg);
	return r;
}

const char *jail_cgroup_path(const struct jail_cgroup *cg)
{
	return cg->path;
}

int jail_cgroup_fd(const struct jail_cgroup *cg)
{
	return cg->dirfd;
}

void jail_cgroup_free(struct jail_cgroup *cg)
{
	if (!cg)
		return;
	if (cg->dirfd >= 0)
		close(cg->dirfd);
	husk_strv_free(cg->created);
	free(cg->path);
	free(cg);
}

/* ---- check_usable -------------------------------------------------------- */

static bool is_cgroup2(const char *path)
{
	struct statfs sfs;
	return statfs(path, &sfs) == 0 && (unsigned long)sfs.f_type == CG2_SUPER_MAGIC;
}

int jail_cgroup_check_usable(const char *mount, struct husk_err *err)
{
	struct statfs sfs;
	if (statfs(mount, &sfs) < 0) {
		int r = -errno;
		if (r == -ENOENT)
			return husk_err_set(err, r,
					    "%s does not exist; run with --no-cgroups or mount cgroup2 "
					    "there",
					    mount);
		return husk_err_sys(err, r, "statfs %s (run with --no-cgroups to go without)",
				    mount);
	}
	if ((unsigned long)sfs.f_type != CG2_SUPER_MAGIC) {
		char hint[PATH_MAX + 64] = "";
		_cleanup_free_ char *unified = path_join(mount, "unified");
		if (unified && is_cgroup2(unified))
			snprintf(hint, sizeof(hint), " (a cgroup2 hierarchy is mounted at %s)",
				 unified);
		return husk_err_set(err, -EOPNOTSUPP,
				    "%s is not a cgroup2 mount (hybrid or v1 host)%s; run with "
				    "--no-cgroups or mount cgroup2",
				    mount, hint);
	}
	if (access(mount, W_OK | X_OK) < 0)
		return husk_err_sys(err, -errno,
				    "cannot create cgroups in %s (run with --no-cgroups or "
				    "delegate a writable cgroup2 subtree)",
				    mount);
	return 0;
}

/* ---- apply --------------------------------------------------------------- */

#define RES "linux.resources."

/* Opens a resource file for writing; a missing file means `what` (e.g.
 * "the memory controller") is not available. */
static int res_open(const struct jail_cgroup *cg, const char *field, const char *what,
		    const char *file, struct husk_err *err)
{
	int fd = open_w(cg->dirfd, file);
	if (fd == -ENOENT)
		return husk_err_set(err, -EOPNOTSUPP, "%s: %s is not available in %s", field, what,
				    cg->path);
	if (fd < 0)
		return husk_err_sys(err, fd, "%s: opening %s/%s", field, cg->path, file);
	return fd;
}

static int res_put(const struct jail_cgroup *cg, int fd, const char *field, const char *file,
		   const char *val, struct husk_err *err)
{
	int r = put_fd(fd, val);
	if (r < 0) {
		size_t vl = strcspn(val, "\n");
		return husk_err_sys(err, r, "%s: writing \"%.*s\" to %s/%s", field, (int)vl, val,
				    cg->path, file);
	}
	return 0;
}

static int res_write(const struct jail_cgroup *cg, const char *field, const char *what,
		     const char *file, const char *val, struct husk_err *err)
{
	_cleanup_fd_ int fd = res_open(cg, field, what, file, err);
	if (fd < 0)
		return fd;
	return res_put(cg, fd, field, file, val, err);
}

static void fmt_limit(char *buf, size_t n, int64_t v)
{
	if (v == -1)
		snprintf(buf, n, "max");
	else
		snprintf(buf, n, "%" PRId64, v);
}

static int apply_memory(const struct jail_cgroup *cg, const struct jail_resources *res,
			struct husk_err *err)
{
	static const char mem[] = "the memory controller";
	char buf[32];
	bool has_limit = res->has_memory_limit && res->memory_limit != 0;
	bool has_res = res->has_memory_reservation && res->memory_reservation != 0;
	bool has_swap = res->has_memory_swap && res->memory_swap != 0;
	int64_t limit = res->memory_limit;

	if (has_limit && limit < -1)
		return husk_err_set(err, -EINVAL, RES "memory.limit: invalid value %" PRId64,
				    limit);
	if (has_res && res->memory_reservation < -1)
		return husk_err_set(err, -EINVAL, RES "memory.reservation: invalid value %" PRId64,
				    res->memory_reservation);

	/* OCI's swap is memory+swap (cgroup v1); v2 limits swap alone. */
	bool write_swap = false;
	int64_t swap = 0;
	if (has_swap) {
		int64_t s = res->memory_swap;
		if (s == -1) {
			swap = -1;
		} else if (s < -1) {
			return husk_err_set(err, -EINVAL, RES "memory.swap: invalid value %" PRId64,
					    s);
		} else if (!has_limit || limit == -1) {
			return husk_err_set(err, -EINVAL,
					    RES "memory.swap: a swap limit (%" PRId64
						") needs a memory limit",
					    s);
		} else if (s < limit) {
			return husk_err_set(err, -EINVAL,
					    RES "memory.swap (%" PRId64
						") must be >= " RES "memory.limit (%" PRId64
						"): it counts memory plus swap",
					    s, limit);
		} else {
			swap = s - limit;
		}
		write_swap = true;
	} else if (has_limit && limit == -1) {
		/* As runc: unlimited memory without a swap value means
		 * unlimited swap too. */
		swap = -1;
		write_swap = true;
	}

	if (write_swap) {
		fmt_limit(buf, sizeof(buf), swap);
		int fd = open_w(cg->dirfd, "memory.swap.max");
		if (fd >= 0) {
			int r = res_put(cg, fd, RES "memory.swap", "memory.swap.max", buf, err);
			close(fd);
			if (r < 0)
				return r;
		} else if (fd != -ENOENT || (swap != -1 && swap != 0)) {
			/* Without swap accounting "max" and "0" mean what
			 * the kernel does anyway (runc ignores them too). */
			bool memctl = faccessat(cg->dirfd, "memory.max", F_OK, 0) == 0;
			if (fd == -ENOENT)
				return husk_err_set(err, -EOPNOTSUPP,
						    RES "memory.swap: %s is not available in %s",
						    memctl ? "swap accounting (memory.swap.max)" : mem,
						    cg->path);
			return husk_err_sys(err, fd, RES "memory.swap: opening %s/memory.swap.max",
					    cg->path);
		}
	}
	if (has_limit) {
		fmt_limit(buf, sizeof(buf), limit);
		int r = res_write(cg, RES "memory.limit", mem, "memory.max", buf, err);
		if (r < 0)
			return r;
	}
	if (has_res) {
		fmt_limit(buf, sizeof(buf), res->memory_reservation);
		int r = res_write(cg, RES "memory.reservation", mem, "memory.low", buf, err);
		if (r < 0)
			return r;
	}
	return 0;
}

static uint64_t shares_to_weight(uint64_t shares)
{
	/* runc's ConvertCPUSharesToCgroupV2Value, with shares clamped to the
	 * v1 range [2, 262144] so the result stays in [1, 10000]. */
	if (shares < 2)
		shares = 2;
	if (shares > 262144)
		shares = 262144;
	return 1 + ((shares - 2) * 9999) / 262142;
}

static uint64_t blkio_to_io_weight(uint64_t w)
{
	/* runc's ConvertBlkIOToIOWeightValue, [10, 1000] -> [1, 10000]. */
	if (w < 10)
		w = 10;
	if (w > 1000)
		w = 1000;
	return 1 + (w - 10) * 9999 / 990;
}

static int apply_cpu(const struct jail_cgroup *cg, const struct jail_resources *res,
		     struct husk_err *err)
{
	static const char cpu[] = "the cpu controller";
	static const char cpuset[] = "the cpuset controller";
	char buf[64];
	int r;

	if (res->has_cpu_shares && res->cpu_shares != 0) {
		snprintf(buf, sizeof(buf), "%" PRIu64, shares_to_weight(res->cpu_shares));
		r = res_write(cg, RES "cpu.shares", cpu, "cpu.weight", buf, err);
		if (r < 0)
			return r;
	}
	bool quota = res->has_cpu_quota && res->cpu_quota != 0;
	bool period = res->has_cpu_period && res->cpu_period != 0;
	if (quota || period) {
		uint64_t p = period ? res->cpu_period : 100000;
		if (quota && res->cpu_quota > 0)
			snprintf(buf, sizeof(buf), "%" PRId64 " %" PRIu64, res->cpu_quota, p);
		else
			snprintf(buf, sizeof(buf), "max %" PRIu64, p);
		r = res_write(cg, quota ? RES "cpu.quota" : RES "cpu.period", cpu, "cpu.max", buf,
			      err);
		if (r < 0)
			return r;
	}
	if (res->cpu_cpus && *res->cpu_cpus) {
		r = res_write(cg, RES "cpu.cpus", cpuset, "cpuset.cpus", res->cpu_cpus, err);
		if (r < 0)
			return r;
	}
	if (res->cpu_mems && *res->cpu_mems) {
		r = res_write(cg, RES "cpu.mems", cpuset, "cpuset.mems", res->cpu_mems, err);
		if (r < 0)
			return r;
	}
	return 0;
}

static int apply_pids(const struct jail_cgroup *cg, const struct jail_resources *res,
		      struct husk_err *err)
{
	if (!res->has_pids_limit)
		return 0;
	char buf[32];
	if (res->pids_limit <= 0)
		snprintf(buf, sizeof(buf), "max");
	else
		snprintf(buf, sizeof(buf), "%" PRId64, res->pids_limit);
	return res_write(cg, RES "pids.limit", "the pids controller", "pids.max", buf, err);
}

static int apply_io(const struct jail_cgroup *cg, const struct jail_resources *res,
		    struct husk_err *err)
{
	static const char io[] = "the io controller";
	char buf[96];
	int r;

	bool weight = res->has_blkio_weight && res->blkio_weight != 0;
	size_t n_wdev = 0;
	for (size_t i = 0; i < res->n_blkio_weight_device; i++)
		n_wdev += res->blkio_weight_device[i].has_weight;
	if (weight || n_wdev) {
		/* BFQ takes blkio's own scale; io.weight (iocost) its own. */
		bool bfq = faccessat(cg->dirfd, "io.bfq.weight", F_OK, 0) == 0;
		const char *file = bfq ? "io.bfq.weight" : "io.weight";
		const char *field = weight ? RES "blockIO.weight" : RES "blockIO.weightDevice";
		/* The io controller alone (io.max, io.stat) has no weights: they
		 * come from BFQ or the iocost controller, when the kernel has them. */
		if (!bfq && faccessat(cg->dirfd, "io.weight", F_OK, 0) < 0 &&
		    faccessat(cg->dirfd, "io.max", F_OK, 0) == 0)
			return husk_err_set(err, -EOPNOTSUPP,
					    "%s: %s has io.max but no io.weight or io.bfq.weight (the "
					    "kernel has neither the iocost controller nor BFQ)",
					    field, cg->path);
		_cleanup_fd_ int fd = res_open(cg, field, io, file, err);
		if (fd < 0)
			return fd;
		if (weight) {
			uint64_t w = bfq ? res->blkio_weight : blkio_to_io_weight(res->blkio_weight);
			snprintf(buf, sizeof(buf), "%" PRIu64 "\n", w);
			r = res_put(cg, fd, field, file, buf, err);
			if (r < 0)
				return r;
		}
		for (size_t i = 0; i < res->n_blkio_weight_device; i++) {
			const struct jail_weight_device *d = &res->blkio_weight_device[i];
			if (!d->has_weight)
				continue;
			uint64_t w = bfq ? d->weight : blkio_to_io_weight(d->weight);
			snprintf(buf, sizeof(buf), "%" PRId64 ":%" PRId64 " %" PRIu64 "\n", d->major,
				 d->minor, w);
			r = res_put(cg, fd, RES "blockIO.weightDevice", file, buf, err);
			if (r < 0)
				return r;
		}
	}

	static const struct {
		const char *field, *key;
		size_t list_off, n_off;
	} thr[] = {
		{RES "blockIO.throttleReadBpsDevice", "rbps",
		 offsetof(struct jail_resources, throttle_read_bps),
		 offsetof(struct jail_resources, n_throttle_read_bps)},
		{RES "blockIO.throttleWriteBpsDevice", "wbps",
		 offsetof(struct jail_resources, throttle_write_bps),
		 offsetof(struct jail_resources, n_throttle_write_bps)},
		{RES "blockIO.throttleReadIOPSDevice", "riops",
		 offsetof(struct jail_resources, throttle_read_iops),
		 offsetof(struct jail_resources, n_throttle_read_iops)},
		{RES "blockIO.throttleWriteIOPSDevice", "wiops",
		 offsetof(struct jail_resources, throttle_write_iops),
		 offsetof(struct jail_resources, n_throttle_write_iops)},
	};
	_cleanup_fd_ int fd = -1;
	for (size_t t = 0; t < ARRAY_SIZE(thr); t++) {
		const struct jail_throttle *list;
		size_t n;
		memcpy(&list, (const char *)res + thr[t].list_off, sizeof(list));
		memcpy(&n, (const char *)res + thr[t].n_off, sizeof(n));
		for (size_t i = 0; i < n; i++) {
			if (fd < 0) {
				fd = res_open(cg, thr[t].field, io, "io.max", err);
				if (fd < 0)
					return fd;
			}
			snprintf(buf, sizeof(buf), "%" PRId64 ":%" PRId64 " %s=%" PRIu64 "\n",
				 list[i].major, list[i].minor, thr[t].key, list[i].rate);
			r = res_put(cg, fd, thr[t].field, "io.max", buf, err);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

static int apply_unified(const struct jail_cgroup *cg, const struct jail_resources *res,
			 struct husk_err *err)
{
	for (size_t i = 0; i < res->n_unified; i++) {
		const char *key = res->unified[i].key;
		const char *val = res->unified[i].value ? res->unified[i].value : "";
		if (!key || !*key || strchr(key, '/') || strstr(key, ".."))
			return husk_err_set(err, -EINVAL,
					    RES "unified: \"%s\" is not a cgroup file name",
					    key ? key : "");
		char field[128], what[64];
		snprintf(field, sizeof(field), RES "unified.%s", key);
		size_t cl = strcspn(key, ".");
		if (cl == strlen(key) || strncmp(key, "cgroup.", 7) == 0)
			snprintf(what, sizeof(what), "the file %s", key);
		else
			snprintf(what, sizeof(what), "the %.*s controller", (int)cl, key);
		int r = res_write(cg, field, what, key, val, err);
		if (r < 0)
			return r;
	}
	return 0;
}

int jail_cgroup_apply(struct jail_cgroup *cg, const struct jail_resources *res,
		      struct husk_err *err)
{
	int r;
	if ((r = apply_pids(cg, res, err)) < 0)
		return r;
	if ((r = apply_memory(cg, res, err)) < 0)
		return r;
	if ((r = apply_io(cg, res, err)) < 0)
		return r;
	if ((r = apply_cpu(cg, res, err)) < 0)
		return r;
	return apply_unified(cg, res, err);
}

/* ---- membership, events, freeze, kill ------------------------------------ */

int jail_cgroup_enter(struct jail_cgroup *cg, pid_t pid, struct husk_err *err)
{
	char buf[24];
	snprintf(buf, sizeof(buf), "%d", (int)pid);
	int r = write_at(cg->dirfd, "cgroup.procs", buf);
	if (r < 0)
		return husk_err_sys(err, r, "moving pid %d into cgroup %s", (int)pid, cg->path);
	return 0;
}

int jail_cgroup_pids(struct jail_cgroup *cg, pid_t **pids, size_t *n, struct husk_err *err)
{
	*pids = NULL;
	*n = 0;
	_cleanup_free_ char *buf = NULL;
	int r = read_at(cg->dirfd, "cgroup.procs", &buf);
	if (r < 0)
		return husk_err_sys(err, r, "reading %s/cgroup.procs", cg->path);
	size_t cap = 0;
	for (const char *p = buf; *p; p++)
		cap += *p == '\n';
	cap++;
	_cleanup_free_ pid_t *v = malloc(cap * sizeof(*v));
	if (!v)
		return husk_err_set(err, -ENOMEM, "reading %s/cgroup.procs: out of memory",
				    cg->path);
	size_t k = 0;
	char *save = NULL;
	for (char *line = strtok_r(buf, "\n", &save); line && k < cap;
	     line = strtok_r(NULL, "\n", &save)) {
		uint64_t x;
		if (parse_u64(line, &x) && x > 0 && x <= INT_MAX)
			v[k++] = (pid_t)x;
	}
	if (k)
		*pids = take_ptr(v);
	*n = k;
	return 0;
}

bool jail_cgroup_populated(struct jail_cgroup *cg)
{
	uint64_t v = 0;
	return read_key(cg, "cgroup.events", "populated", &v) == 0 && v != 0;
}

int jail_cgroup_oom_kills(struct jail_cgroup *cg, uint64_t *count, struct husk_err *err)
{
	*count = 0;
	uint64_t v;
	int r = read_key(cg, "memory.events", "oom_kill", &v);
	if (r == 0)
		*count = v;
	else if (!absent(r) && r != -ENODATA)
		return husk_err_sys(err, r, "reading %s/memory.events", cg->path);
	return 0;
}

int jail_cgroup_events_fd(struct jail_cgroup *cg)
{
	_cleanup_fd_ int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (fd < 0)
		return -errno;
	_cleanup_free_ char *ev = path_join(cg->path, "cgroup.events");
	_cleanup_free_ char *mem = path_join(cg->path, "memory.events");
	if (!ev || !mem)
		return -ENOMEM;
	if (inotify_add_watch(fd, ev, IN_MODIFY) < 0)
		return -errno;
	if (inotify_add_watch(fd, mem, IN_MODIFY) < 0 && errno != ENOENT)
		return -errno;
	return take_fd(&fd);
}

/* Waits until cgroup.events has `key` equal to `want`. kernfs signals
 * POLLPRI on an open events file when its content changes; reading it
 * re-arms the notification, so read-check-poll loses no change. */
static int wait_event(struct jail_cgroup *cg, const char *key, uint64_t want, int timeout_ms,
		      struct husk_err *err)
{
	_cleanup_fd_ int fd = openat(cg->dirfd, "cgroup.events", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return husk_err_sys(err, -errno, "opening %s/cgroup.events", cg->path);
	int64_t deadline = now_ms() + timeout_ms;
	for (;;) {
		char buf[512];
		ssize_t n;
		if (lseek(fd, 0, SEEK_SET) < 0)
			return husk_err_sys(err, -errno, "reading %s/cgroup.events", cg->path);
		do
			n = read(fd, buf, sizeof(buf) - 1);
		while (n < 0 && errno == EINTR);
		if (n < 0)
			return husk_err_sys(err, -errno, "reading %s/cgroup.events", cg->path);
		buf[n] = '\0';
		uint64_t v;
		if (!flat_get(buf, key, &v))
			return husk_err_set(err, -EOPNOTSUPP, "%s/cgroup.events has no \"%s\" entry",
					    cg->path, key);
		if (v == want)
			return 0;
		int64_t left = deadline - now_ms();
		if (left <= 0)
			return husk_err_set(err, -ETIMEDOUT,
					    "cgroup %s: \"%s\" still %" PRIu64 " after %d ms",
					    cg->path, key, v, timeout_ms);
		struct pollfd p = {.fd = fd, .events = POLLPRI};
		if (poll(&p, 1, (int)left) < 0 && errno != EINTR)
			return husk_err_sys(err, -errno, "poll %s/cgroup.events", cg->path);
	}
}

int jail_cgroup_freeze(struct jail_cgroup *cg, bool frozen, struct husk_err *err)
{
	int r = write_at(cg->dirfd, "cgroup.freeze", frozen ? "1" : "0");
	if (r == -ENOENT)
		return husk_err_set(err, -EOPNOTSUPP,
				    "cannot %s cgroup %s: no cgroup.freeze (needs Linux 5.2 or later)",
				    frozen ? "freeze" : "thaw", cg->path);
	if (r < 0)
		return husk_err_sys(err, r, "writing %d to %s/cgroup.freeze", frozen, cg->path);
	r = wait_event(cg, "frozen", frozen, JAIL_CGROUP_TIMEOUT_MS, err);
	if (r < 0)
		return husk_err_wrap(err, "%s", frozen ? "freezing" : "thawing");
	return 0;
}

/* Kernels before 5.14 have no cgroup.kill: signal each listed process
 * until a re-read finds nobody to signal. Processes that exit leave
 * cgroup.procs at once (zombies are not listed), and the wait between
 * rounds ends early when cgroup.events changes. */
static int kill_each(struct jail_cgroup *cg, struct husk_err *err)
{
	_cleanup_fd_ int evfd = openat(cg->dirfd, "cgroup.events", O_RDONLY | O_CLOEXEC);
	int64_t deadline = now_ms() + JAIL_CGROUP_TIMEOUT_MS;
	int idle_rounds = 0;
	for (;;) {
		_cleanup_free_ pid_t *pids = NULL;
		size_t n = 0, signalled = 0;
		int r = jail_cgroup_pids(cg, &pids, &n, err);
		if (r < 0)
			return husk_err_wrap(err, "killing the processes of cgroup %s", cg->path);
		for (size_t i = 0; i < n; i++) {
			if (kill(pids[i], SIGKILL) == 0)
				signalled++;
			else if (errno != ESRCH)
				return husk_err_sys(err, -errno, "kill -9 %d (cgroup %s)",
						    (int)pids[i], cg->path);
		}
		/* Nothing signalled twice in a row: a pid that was already
		 * gone may have forked first, hence the second look. */
		if (signalled == 0 && (n == 0 || ++idle_rounds >= 2))
			return 0;
		if (signalled)
			idle_rounds = 0;
		int64_t left = deadline - now_ms();
		if (left <= 0)
			return husk_err_set(err, -ETIMEDOUT,
					    "processes of cgroup %s still alive %d ms after SIGKILL",
					    cg->path, JAIL_CGROUP_TIMEOUT_MS);
		if (signalled) {
			/* Reading re-arms POLLPRI; a failure only costs the
			 * early wake-up, the wait is bounded anyway. */
			if (evfd >= 0 && lseek(evfd, 0, SEEK_SET) == 0) {
				char buf[256];
				ssize_t unused = read(evfd, buf, sizeof(buf));
				(void)unused;
			}
			struct pollfd p = {.fd = evfd, .events = POLLPRI};
			int wait = left < KILL_ROUND_WAIT_MS ? (int)left : KILL_ROUND_WAIT_MS;
			if (poll(&p, 1, wait) < 0 && errno != EINTR)
				return husk_err_sys(err, -errno, "poll %s/cgroup.events", cg->path);
		}
	}
}

int jail_cgroup_kill(struct jail_cgroup *cg, struct husk_err *err)
{
	int r = write_at(cg->dirfd, "cgroup.kill", "1");
	if (r == 0)
		return 0;
	if (r != -ENOENT)
		return husk_err_sys(err, r, "writing 1 to %s/cgroup.kill", cg->path);
	return kill_each(cg, err);
}

int jail_cgroup_signal(struct jail_cgroup *cg, int sig, struct husk_err *err)
{
	if (sig == SIGKILL)
		return jail_cgroup_kill(cg, err);
	_cleanup_free_ pid_t *pids = NULL;
	size_t n = 0;
	int r = jail_cgroup_pids(cg, &pids, &n, err);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++)
		kill(pids[i], sig);
	return 0;
}

/* ---- stats --------------------------------------------------------------- */

#define MF(name) {#name, offsetof(struct jail_cgroup_stats, memory.name)}
static const struct kv_field memory_stat_fields[] = {
	MF(anon),
	MF(file),
	MF(kernel_stack),
	MF(slab),
	MF(sock),
	MF(shmem),
	MF(file_mapped),
	MF(file_dirty),
	MF(file_writeback),
	MF(anon_thp),
	MF(inactive_anon),
	MF(active_anon),
	MF(inactive_file),
	MF(active_file),
	MF(unevictable),
	MF(slab_reclaimable),
	MF(slab_unreclaimable),
	MF(pgfault),
	MF(pgmajfault),
	MF(workingset_refault),
	MF(workingset_activate),
	MF(workingset_nodereclaim),
	MF(pgrefill),
	MF(pgscan),
	MF(pgsteal),
	MF(pgactivate),
	MF(pgdeactivate),
	MF(pglazyfree),
	MF(pglazyfreed),
	MF(thp_fault_alloc),
	MF(thp_collapse_alloc),
};
#undef MF

#define CF(name) {#name, offsetof(struct jail_cgroup_stats, cpu.name)}
static const struct kv_field cpu_stat_fields[] = {
	CF(usage_usec), CF(user_usec),	  CF(system_usec),
	CF(nr_periods), CF(nr_throttled), CF(throttled_usec),
};
#undef CF

#define EF(name) {#name, offsetof(struct jail_cgroup_stats, memory_events.name)}
static const struct kv_field memory_events_fields[] = {
	EF(low), EF(high), EF(max), EF(oom), EF(oom_kill),
};
#undef EF

/* Reads a flat-keyed file into `st`; absent files are left at zero. */
static int stat_flat(struct jail_cgroup *cg, const char *file, const struct kv_field *f,
		     size_t nf, struct jail_cgroup_stats *st, bool *present, struct husk_err *err)
{
	_cleanup_free_ char *buf = NULL;
	int r = read_at(cg->dirfd, file, &buf);
	if (absent(r))
		return 0;
	if (r < 0)
		return husk_err_sys(err, r, "reading %s/%s", cg->path, file);
	parse_flat(buf, f, nf, st);
	if (present)
		*present = true;
	return 0;
}

/* Reads a single-value file ("123" or "max"); absent files leave zero. */
static int stat_single(struct jail_cgroup *cg, const char *file, uint64_t *v,
		       struct husk_err *err)
{
	_cleanup_free_ char *buf = NULL;
	int r = read_at(cg->dirfd, file, &buf);
	if (absent(r))
		return 0;
	if (r < 0)
		return husk_err_sys(err, r, "reading %s/%s", cg->path, file);
	uint64_t x;
	if (parse_u64(buf, &x))
		*v = x;
	return 0;
}

/* io.stat: "MAJ:MIN rbytes=N wbytes=N rios=N wios=N dbytes=N dios=N". */
static int stat_io(struct jail_cgroup *cg, struct jail_cgroup_stats *st, struct husk_err *err)
{
	_cleanup_free_ char *buf = NULL;
	int r = read_at(cg->dirfd, "io.stat", &buf);
	if (absent(r))
		return 0;
	if (r < 0)
		return husk_err_sys(err, r, "reading %s/io.stat", cg->path);
	size_t lines = 1;
	for (const char *p = buf; *p; p++)
		lines += *p == '\n';
	struct jail_cgroup_io_entry *v = calloc(lines, sizeof(*v));
	if (!v)
		return husk_err_set(err, -ENOMEM, "reading %s/io.stat: out of memory", cg->path);
	size_t k = 0;
	char *save = NULL;
	for (char *line = strtok_r(buf, "\n", &save); line && k < lines;
	     line = strtok_r(NULL, "\n", &save)) {
		char *tsave = NULL;
		char *tok = strtok_r(line, " ", &tsave);
		unsigned long long maj, min;
		int used = 0;
		if (!tok || sscanf(tok, "%llu:%llu%n", &maj, &min, &used) != 2 ||
		    tok[used] != '\0')
			continue;
		struct jail_cgroup_io_entry *e = &v[k++];
		e->major = maj;
		e->minor = min;
		while ((tok = strtok_r(NULL, " ", &tsave))) {
			char *eq = strchr(tok, '=');
			uint64_t x;
			if (!eq || !parse_u64(eq + 1, &x))
				continue;
			*eq = '\0';
			if (strcmp(tok, "rbytes") == 0)
				e->rbytes = x;
			else if (strcmp(tok, "wbytes") == 0)
				e->wbytes = x;
			else if (strcmp(tok, "rios") == 0)
				e->rios = x;
			else if (strcmp(tok, "wios") == 0)
				e->wios = x;
		}
	}
	if (k == 0) {
		free(v);
		return 0;
	}
	st->io = v;
	st->n_io = k;
	return 0;
}

int jail_cgroup_stats(struct jail_cgroup *cg, struct jail_cgroup_stats *st, struct husk_err *err)
{
	memset(st, 0, sizeof(*st));
	int r;
	if ((r = stat_single(cg, "pids.current", &st->pids.current, err)) < 0 ||
	    (r = stat_single(cg, "pids.max", &st->pids.limit, err)) < 0 ||
	    (r = stat_flat(cg, "cpu.stat", cpu_stat_fields, ARRAY_SIZE(cpu_stat_fields), st, NULL,
			   err)) < 0 ||
	    (r = stat_single(cg, "memory.current", &st->memory.usage, err)) < 0 ||
	    (r = stat_single(cg, "memory.max", &st->memory.usage_limit, err)) < 0 ||
	    (r = stat_single(cg, "memory.swap.current", &st->memory.swap_usage, err)) < 0 ||
	    (r = stat_single(cg, "memory.swap.max", &st->memory.swap_limit, err)) < 0 ||
	    (r = stat_flat(cg, "memory.stat", memory_stat_fields, ARRAY_SIZE(memory_stat_fields),
			   st, NULL, err)) < 0 ||
	    (r = stat_flat(cg, "memory.events", memory_events_fields,
			   ARRAY_SIZE(memory_events_fields), st, &st->memory_events.present,
			   err)) < 0 ||
	    (r = stat_io(cg, st, err)) < 0) {
		jail_cgroup_stats_free(st);
		return r;
	}
	return 0;
}

void jail_cgroup_stats_free(struct jail_cgroup_stats *st)
{
	if (!st)
		return;
	free(st->io);
	st->io = NULL;
	st->n_io = 0;
}

/* ---- destroy ------------------------------------------------------------- */

/* Removes the child cgroups below `dfd`, deepest first. cgroupfs lists
 * control files as regular files; rmdir ignores them. */
static int remove_children(int dfd, const char *path, int depth, struct husk_err *err)
{
	if (depth > MAX_TREE_DEPTH)
		return husk_err_set(err, -ELOOP, "removing cgroup %s: nested too deep", path);
	int dup_fd = fcntl(dfd, F_DUPFD_CLOEXEC, 0);
	if (dup_fd < 0)
		return husk_err_sys(err, -errno, "removing cgroup %s", path);
	DIR *d = fdopendir(dup_fd);
	if (!d) {
		close(dup_fd);
		return husk_err_sys(err, -errno, "removing cgroup %s", path);
	}
	int r = 0;
	struct dirent *de;
	while (r == 0 && (de = readdir(d))) {
		if (de->d_type != DT_DIR || strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		_cleanup_free_ char *sub = path_join(path, de->d_name);
		_cleanup_fd_ int cfd =
			openat(dfd, de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
		if (!sub) {
			r = husk_err_set(err, -ENOMEM, "removing cgroup %s: out of memory", path);
			break;
		}
		if (cfd < 0) {
			if (errno == ENOENT)
				continue;
			r = husk_err_sys(err, -errno, "removing cgroup %s", sub);
			break;
		}
		r = remove_children(cfd, sub, depth + 1, err);
		if (r == 0 && unlinkat(dfd, de->d_name, AT_REMOVEDIR) < 0 && errno != ENOENT)
			r = husk_err_sys(err, -errno, "removing cgroup %s", sub);
	}
	closedir(d);
	return r;
}

int jail_cgroup_destroy(struct jail_cgroup *cg, struct husk_err *err)
{
	if (!cg)
		return 0;
	int r = 0;
	if (jail_cgroup_populated(cg)) {
		r = jail_cgroup_kill(cg, err);
		if (r == 0)
			r = wait_event(cg, "populated", 0, JAIL_CGROUP_TIMEOUT_MS, err);
		if (r < 0) {
			husk_err_wrap(err, "destroying cgroup %s", cg->path);
			goto out;
		}
	}
	r = remove_children(cg->dirfd, cg->path, 0, err);
	if (r < 0)
		goto out;
	if (rmdir(cg->path) < 0 && errno != ENOENT) {
		r = husk_err_sys(err, -errno, "removing cgroup %s", cg->path);
		goto out;
	}
	/* Ancestors shared with other containers stay (EBUSY). */
	for (size_t i = cg->n_created; i-- > 0;) {
		if (rmdir(cg->created[i]) < 0 && errno != ENOENT) {
			if (errno != EBUSY && errno != ENOTEMPTY && r == 0)
				r = husk_err_sys(err, -errno, "removing cgroup %s", cg->created[i]);
			break;
		}
	}
out:
	jail_cgroup_free(cg);
	return r;
}
