/* huskctl run's option table (runopts.h). Each option is one row: how its
 * argument is read, where it goes, and its bounds; so the checks live in
 * one place and every message names the option. */
#include "runopts.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "husk/cleanup.h"

enum opt_kind {
	OPT_FLAG,   /* bool = true */
	OPT_STRING, /* const char * = the argument */
	OPT_UINT,   /* an unsigned or uint64_t in [min, max] */
	OPT_SIZE,   /* the same, a size (husk_parse_size) */
	OPT_CALL,   /* call(o, arg, err) */
};

struct run_opt {
	const char *name;
	char short_name; /* 0: none */
	enum opt_kind kind;
	size_t off, width; /* the field in struct run_opts */
	uint64_t min, max; /* OPT_UINT, OPT_SIZE; min >= 1 refuses 0 */
	int (*call)(struct run_opts *o, const char *opt, char *arg, struct husk_err *err);
};

#define FIELD(f) offsetof(struct run_opts, f), sizeof(((struct run_opts *)0)->f)

int huskctl_add_env(struct huskctl_proc_opts *p, char *kv, struct husk_err *err)
{
	if (p->n_env >= HUSKCTL_MAX_ENV)
		return husk_err_set(err, -EINVAL, "--env: at most %d variables", HUSKCTL_MAX_ENV);
	p->env[p->n_env++] = kv;
	return 0;
}

static int opt_env(struct run_opts *o, const char *opt, char *arg, struct husk_err *err)
{
	(void)opt;
	return huskctl_add_env(&o->p, arg, err);
}

static int opt_accel(struct run_opts *o, const char *opt, char *arg, struct husk_err *err)
{
	int r = husk_accel_parse(arg, &o->accel, err);
	return r < 0 ? husk_err_wrap(err, "%s", opt) : 0;
}

static int opt_transport(struct run_opts *o, const char *opt, char *arg, struct husk_err *err)
{
	int r = husk_transport_parse(arg, &o->transport, err);
	if (r == 0 && o->transport == HUSK_TRANSPORT_UNIX)
		r = husk_err_set(err, -EINVAL, "vsock transport \"%s\": want auto, vhost or hybrid",
				 arg);
	return r < 0 ? husk_err_wrap(err, "%s", opt) : 0;
}

static int opt_sysctl(struct run_opts *o, const char *opt, char *arg, struct husk_err *err)
{
	if (o->n_sysctls >= HUSKCTL_MAX_SYSCTLS)
		return husk_err_set(err, -EINVAL, "%s: at most %d", opt, HUSKCTL_MAX_SYSCTLS);
	if (!strchr(arg, '=') || arg[0] == '=')
		return husk_err_set(err, -EINVAL, "%s %s: want KEY=VALUE", opt, arg);
	o->sysctls[o->n_sysctls++] = arg;
	return 0;
}

static int opt_disk(struct run_opts *o, const char *opt, char *arg, struct husk_err *err)
{
	if (o->n_disks >= HUSKCTL_MAX_DISKS)
		return husk_err_set(err, -EINVAL, "%s: at most %d", opt, HUSKCTL_MAX_DISKS);
	o->disks[o->n_disks++] = arg;
	return 0;
}

static int opt_limit_cpus(struct run_opts *o, const char *opt, char *arg, struct husk_err *err)
{
	if (huskctl_parse_cpus(arg, &o->cpu_quota, &o->cpu_period, err) < 0)
		return husk_err_wrap(err, "%s", opt);
	o->limit_cpus = true;
	return 0;
}

static int opt_io_max(struct run_opts *o, const char *opt, char *arg, struct husk_err *err)
{
	if (o->n_io_limits >= HUSKCTL_MAX_IO_LIMITS)
		return husk_err_set(err, -EINVAL, "%s: at most %d", opt, HUSKCTL_MAX_IO_LIMITS);
	if (huskctl_parse_io_limit(arg, &o->io_limits[o->n_io_limits], err) < 0)
		return husk_err_wrap(err, "%s", opt);
	o->n_io_limits++;
	return 0;
}

static const struct run_opt table[] = {
	{ "rootfs", 0, OPT_STRING, FIELD(rootfs) },
	{ "image", 0, OPT_STRING, FIELD(image) },
	{ "tty", 't', OPT_FLAG, FIELD(p.tty) },
	{ "interactive", 'i', OPT_FLAG, FIELD(p.interactive) },
	{ "env", 'e', OPT_CALL, .call = opt_env },
	{ "cwd", 'w', OPT_STRING, FIELD(p.cwd) },
	{ "user", 'u', OPT_STRING, FIELD(p.user) },
	{ "name", 'n', OPT_STRING, FIELD(name) },
	{ "hostname", 0, OPT_STRING, FIELD(hostname) },
	/* The VM; husk_vm_start's own bounds, and the host's (below). */
	{ "cpus", 0, OPT_UINT, FIELD(cpus), 1, 255 },
	{ "memory", 0, OPT_UINT, FIELD(memory_mib), 64, 1u << 20 },
	{ "kernel", 0, OPT_STRING, FIELD(kernel) },
	{ "initrd", 0, OPT_STRING, FIELD(initrd) },
	{ "accel", 0, OPT_CALL, .call = opt_accel },
	{ "transport", 0, OPT_CALL, .call = opt_transport },
	{ "debug-console", 0, OPT_FLAG, FIELD(debug_console) },
	{ "merge-memory", 0, OPT_FLAG, FIELD(merge_memory) },
	{ "tcg-cache", 0, OPT_UINT, FIELD(tcg_cache_mib), 1, HUSK_TCG_CACHE_MAX },
	{ "pool", 0, OPT_STRING, FIELD(pool) },
	{ "boot-timeout", 0, OPT_UINT, FIELD(boot_timeout_ms), 1, 3600000 },
	{ "log-level", 0, OPT_UINT, FIELD(log_level), 1, 7 },
	{ "agent-log", 0, OPT_FLAG, FIELD(agent_log) },
	{ "image-cache", 0, OPT_STRING, FIELD(image_cache) },
	{ "disk", 0, OPT_CALL, .call = opt_disk },
	{ "sysctl", 0, OPT_CALL, .call = opt_sysctl },
	{ "overlay-size", 0, OPT_SIZE, FIELD(overlay_bytes), 1, UINT64_MAX },
	/* The container's cgroup (the spec builder checks finer bounds). */
	{ "limit-memory", 0, OPT_SIZE, FIELD(limit_memory), 1, INT64_MAX },
	{ "limit-pids", 0, OPT_UINT, FIELD(limit_pids), 1, 1u << 22 },
	{ "limit-cpus", 0, OPT_CALL, .call = opt_limit_cpus },
	{ "cpu-quota", 0, OPT_UINT, FIELD(cpu_quota), 1, 4000000000u },
	{ "cpu-period", 0, OPT_UINT, FIELD(cpu_period), 1, 1000000 },
	{ "cpu-shares", 0, OPT_UINT, FIELD(cpu_shares), 1, 262144 },
	{ "cpuset-cpus", 0, OPT_STRING, FIELD(cpuset_cpus) },
	{ "cpuset-mems", 0, OPT_STRING, FIELD(cpuset_mems) },
	{ "io-weight", 0, OPT_UINT, FIELD(io_weight), 1, 1000 },
	{ "io-max", 0, OPT_CALL, .call = opt_io_max },
};

static void store(struct run_opts *o, const struct run_opt *t, uint64_t v)
{
	char *field = (char *)o + t->off;
	if (t->width == sizeof(uint64_t)) {
		memcpy(field, &v, sizeof(v));
	} else {
		unsigned u = (unsigned)v;
		memcpy(field, &u, sizeof(u));
	}
}

static int parse_uint(const char *opt, const char *s, const struct run_opt *t, uint64_t *v,
		      struct husk_err *err)
{
	char *end;
	errno = 0;
	unsigned long long n = strtoull(s, &end, 10);
	if (errno || *end || end == s || s[0] == '-' || n < t->min || n > t->max)
		return husk_err_set(err, -EINVAL, "%s \"%s\": want a number from %" PRIu64 " to %" PRIu64,
				    opt, s, t->min, t->max);
	*v = n;
	return 0;
}

static int apply(struct run_opts *o, const struct run_opt *t, char *arg, struct husk_err *err)
{
	char opt[40];
	snprintf(opt, sizeof(opt), "--%s", t->name);
	uint64_t v = 0;
	int r;
	switch (t->kind) {
	case OPT_FLAG:
		*(bool *)((char *)o + t->off) = true;
		return 0;
	case OPT_STRING:
		*(const char **)((char *)o + t->off) = arg;
		return 0;
	case OPT_UINT:
		if ((r = parse_uint(opt, arg, t, &v, err)) < 0)
			return r;
		store(o, t, v);
		return 0;
	case OPT_SIZE:
		if (husk_parse_size(arg, &v, err) < 0)
			return husk_err_wrap(err, "%s", opt);
		if (v < t->min || v > t->max)
			return husk_err_set(err, -EINVAL, "%s %s: want %" PRIu64 " to %" PRIu64 " bytes",
					    opt, arg, t->min, t->max);
		store(o, t, v);
		return 0;
	case OPT_CALL:
		return t->call(o, opt, arg, err);
	}
	return husk_err_set(err, -EINVAL, "%s: unknown kind", opt);
}

/* What the options mean together, and what this host can run. */
static int check(const struct run_opts *o, struct husk_err *err)
{
	/* As docker: --cpus sets both, so it cannot be combined with either. */
	if (o->limit_cpus && o->quota_or_period)
		return husk_err_set(err, -EINVAL,
				    "--limit-cpus: cannot be combined with --cpu-quota or --cpu-period");
	if (!o->n_args)
		return husk_err_set(err, -EINVAL,
				    "run: no command given (huskctl run [OPTIONS] -- CMD [ARG...])");
	if (!o->rootfs == !o->image)
		return husk_err_set(err, -EINVAL, "run: give exactly one of --rootfs DIR or --image FILE");
	struct husk_host_limits host;
	int r = husk_host_limits(&host, err);
	if (r < 0)
		return r;
	if (o->memory_mib > host.memory_mib)
		return husk_err_set(err, -EINVAL, "--memory %u: more than this host's memory (%u MiB)",
				    o->memory_mib, host.memory_mib);
	if (o->cpus > host.cpus)
		return husk_err_set(err, -EINVAL, "--cpus %u: more than this host's %u online CPUs",
				    o->cpus, host.cpus);
	/* The agent refuses it too; here it can name the option. */
	uint64_t vm_bytes = (uint64_t)(o->memory_mib ? o->memory_mib : 256) << 20;
	if (o->overlay_bytes > vm_bytes)
		return husk_err_set(err, -EINVAL,
				    "--overlay-size %" PRIu64 ": more than the VM's memory (%" PRIu64
				    " MiB): the writable layer lives in it",
				    o->overlay_bytes, vm_bytes >> 20);
	return 0;
}

int huskctl_run_parse(int argc, char **argv, struct run_opts *o, struct husk_err *err)
{
	*o = (struct run_opts){ 0 };
	struct option longopts[ARRAY_SIZE(table) + 1];
	char shorts[2 * ARRAY_SIZE(table) + 2] = "+";
	size_t ns = 1;
	for (size_t i = 0; i < ARRAY_SIZE(table); i++) {
		bool has_arg = table[i].kind != OPT_FLAG;
		longopts[i] = (struct option){ table[i].name, has_arg ? required_argument : no_argument,
					       NULL, (int)(256 + i) };
		if (table[i].short_name) {
			shorts[ns++] = table[i].short_name;
			if (has_arg)
				shorts[ns++] = ':';
		}
	}
	longopts[ARRAY_SIZE(table)] = (struct option){ 0 };
	shorts[ns] = '\0';
	optind = 0; /* a full reset: glibc's getopt keeps state between parses */
	for (int c; (c = getopt_long(argc, argv, shorts, longopts, NULL)) != -1;) {
		const struct run_opt *t = NULL;
		if (c >= 256 && (size_t)(c - 256) < ARRAY_SIZE(table))
			t = &table[c - 256];
		for (size_t i = 0; !t && i < ARRAY_SIZE(table); i++)
			if (c != '?' && table[i].short_name == c)
				t = &table[i];
		if (!t)
			return husk_err_set(err, -EINVAL, "run: see huskctl --help");
		int r = apply(o, t, optarg, err);
		if (r < 0)
			return r;
		if (t->kind == OPT_UINT && (t->off == offsetof(struct run_opts, cpu_quota) ||
					    t->off == offsetof(struct run_opts, cpu_period)))
			o->quota_or_period = true;
	}
	o->args = argv + optind;
	o->n_args = optind < argc ? (size_t)(argc - optind) : 0;
	return check(o, err);
}
