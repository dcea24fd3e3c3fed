/* Credentials of the jailed process: rlimits, oom_score_adj, umask, groups,
 * uid/gid, capabilities, no_new_privs. The order is explained in
 * jail/security.h. */
#include "jail/security.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "husk/cleanup.h"
#include "jail/debug.h"

_Static_assert(sizeof(gid_t) == sizeof(uint32_t), "gid_t is 32 bits");

static const struct {
	int resource;
	const char *name;
} rlimit_names[] = {
	{ RLIMIT_CPU, "RLIMIT_CPU" },		{ RLIMIT_FSIZE, "RLIMIT_FSIZE" },
	{ RLIMIT_DATA, "RLIMIT_DATA" },		{ RLIMIT_STACK, "RLIMIT_STACK" },
	{ RLIMIT_CORE, "RLIMIT_CORE" },		{ RLIMIT_RSS, "RLIMIT_RSS" },
	{ RLIMIT_NPROC, "RLIMIT_NPROC" },	{ RLIMIT_NOFILE, "RLIMIT_NOFILE" },
	{ RLIMIT_MEMLOCK, "RLIMIT_MEMLOCK" },	{ RLIMIT_AS, "RLIMIT_AS" },
	{ RLIMIT_LOCKS, "RLIMIT_LOCKS" },	{ RLIMIT_SIGPENDING, "RLIMIT_SIGPENDING" },
	{ RLIMIT_MSGQUEUE, "RLIMIT_MSGQUEUE" }, { RLIMIT_NICE, "RLIMIT_NICE" },
	{ RLIMIT_RTPRIO, "RLIMIT_RTPRIO" },	{ RLIMIT_RTTIME, "RLIMIT_RTTIME" },
};

static const char *rlimit_name(int resource)
{
	for (size_t i = 0; i < ARRAY_SIZE(rlimit_names); i++)
		if (rlimit_names[i].resource == resource)
			return rlimit_names[i].name;
	return "RLIMIT_?";
}

/* "CAP_NET_ADMIN" (libcap spells them in lower case). */
static const char *cap_name(unsigned c, char *buf, size_t size)
{
	char *n = cap_to_name((cap_value_t)c);
	if (!n) {
		snprintf(buf, size, "capability %u", c);
		return buf;
	}
	size_t i = 0;
	for (; n[i] && i + 1 < size; i++)
		buf[i] = (char)toupper((unsigned char)n[i]);
	buf[i] = '\0';
	cap_free(n);
	return buf;
}

/* Number of the highest capability the running kernel knows. libcap probes
 * it with PR_CAPBSET_READ, which works without /proc. */
static unsigned last_cap(void)
{
	int bits = cap_max_bits();
	if (bits <= 0)
		bits = CAP_LAST_CAP + 1;
	if (bits > 64)
		bits = 64;
	return (unsigned)bits - 1;
}

static uint64_t known_caps_mask(void)
{
	unsigned last = last_cap();
	return last >= 63 ? UINT64_MAX : (UINT64_C(1) << (last + 1)) - 1;
}

static int write_oom_score_adj(int value, struct husk_err *err)
{
	static const char path[] = "/proc/self/oom_score_adj";
	char buf[16];
	int n = snprintf(buf, sizeof(buf), "%d", value);
	_cleanup_fd_ int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return husk_err_sys(err, -errno, "process.oomScoreAdj %d: open %s", value, path);
	ssize_t w = write(fd, buf, (size_t)n);
	if (w < 0)
		return husk_err_sys(err, -errno, "process.oomScoreAdj %d: write %s", value, path);
	if (w != n)
		return husk_err_set(err, -EIO, "process.oomScoreAdj %d: short write to %s", value,
				    path);
	return 0;
}

/* Step 1: what needs privileges but does not change who we are. */
static int apply_limits(const struct jail_process *p, struct husk_err *err)
{
	for (size_t i = 0; i < p->n_rlimits; i++) {
		const struct jail_rlimit *rl = &p->rlimits[i];
		struct rlimit lim = { .rlim_cur = (rlim_t)rl->soft, .rlim_max = (rlim_t)rl->hard };
		if (setrlimit(rl->resource, &lim) < 0)
			return husk_err_sys(err, -errno, "process.rlimits[%zu] %s: setrlimit", i,
					    rlimit_name(rl->resource));
	}
	if (p->has_oom_score_adj) {
		int r = write_oom_score_adj(p->oom_score_adj, err);
		if (r < 0)
			return r;
	}
	if (p->user.has_umask)
		umask((mode_t)(p->user.umask & 07777));
	return 0;
}

static int drop_bounding(uint64_t keep, struct husk_err *err)
{
	char name[32];
	unsigned last = last_cap();
	for (unsigned c = 0; c <= last; c++) {
		if (keep & (UINT64_C(1) << c))
			continue;
		/* Dropping needs CAP_SETPCAP; skip what is gone already so a
		 * process without it (an exec into a container) can still ask
		 * for the set it has. */
		int have = prctl(PR_CAPBSET_READ, (unsigned long)c, 0L, 0L, 0L);
		if (have < 0)
			return husk_err_sys(err, -errno,
					    "process.capabilities.bounding: read %s (PR_CAPBSET_READ)",
					    cap_name(c, name, sizeof(name)));
		if (have == 0)
			continue;
		if (prctl(PR_CAPBSET_DROP, (unsigned long)c, 0L, 0L, 0L) < 0)
			return husk_err_sys(err, -errno,
					    "process.capabilities.bounding: drop %s (PR_CAPBSET_DROP)",
					    cap_name(c, name, sizeof(name)));
	}
	return 0;
}

static int set_caps(const struct jail_caps *want, struct husk_err *err)
{
	char name[32];
	uint64_t eff = want->effective, prm = want->permitted, inh = want->inheritable;
	unsigned last = last_cap();
	if (eff & ~prm) {
		unsigned c = (unsigned)__builtin_ctzll(eff & ~prm);
		return husk_err_set(err, -EPERM,
				    "process.capabilities.effective: %s is not in the permitted set",
				    cap_name(c, name, sizeof(name)));
	}
	cap_t caps = cap_init();
	if (!caps)
		return husk_err_sys(err, -errno, "process.capabilities: cap_init");
	int r = 0;
	for (unsigned c = 0; c <= last && r == 0; c++) {
		cap_value_t v = (cap_value_t)c;
		uint64_t bit = UINT64_C(1) << c;
		if ((eff & bit) && cap_set_flag(caps, CAP_EFFECTIVE, 1, &v, CAP_SET) < 0)
			r = -errno;
		if ((prm & bit) && cap_set_flag(caps, CAP_PERMITTED, 1, &v, CAP_SET) < 0)
			r = -errno;
		if ((inh & bit) && cap_set_flag(caps, CAP_INHERITABLE, 1, &v, CAP_SET) < 0)
			r = -errno;
	}
	if (r == 0 && cap_set_proc(caps) < 0)
		r = -errno;
	cap_free(caps);
	if (r < 0)
		return husk_err_sys(err, r,
				    "process.capabilities: capset (effective %#llx, permitted %#llx, "
				    "inheritable %#llx; inheritable must be within bounding)",
				    (unsigned long long)eff, (unsigned long long)prm,
				    (unsigned long long)inh);

	uint64_t amb = want->ambient;
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0L, 0L, 0L) < 0) {
		/* A kernel without ambient capabilities (before 4.3) has
		 * none to clear or raise; runc goes on with a warning. */
		if (errno != EINVAL)
			return husk_err_sys(err, -errno,
					    "process.capabilities.ambient: PR_CAP_AMBIENT_CLEAR_ALL");
		if (amb != 0)
			jail_debug("process.capabilities.ambient ignored: the kernel has no "
				   "ambient capabilities");
		return 0;
	}
	for (unsigned c = 0; c <= last; c++) {
		if (!(amb & (UINT64_C(1) << c)))
			continue;
		if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, (unsigned long)c, 0L, 0L) == 0)
			continue;
		/* The kernel raises only what is both permitted and
		 * inheritable. runc ignores the failure (`runc spec` itself
		 * asks for ambient capabilities without inheritable ones),
		 * and so does the OCI spec: capabilities that cannot be
		 * granted are not an error. */
		if (errno != EPERM)
			return husk_err_sys(err, -errno, "process.capabilities.ambient: raise %s",
					    cap_name(c, name, sizeof(name)));
		jail_debug("process.capabilities.ambient: %s not raised (it must be in the "
			   "permitted and inheritable sets)",
			   cap_name(c, name, sizeof(name)));
	}
	return 0;
}

/* Step 3: who we are and what we may do. */
static int apply_identity(const struct jail_process *p, struct husk_err *err)
{
	const struct jail_user *u = &p->user;
	struct jail_caps want = p->caps;
	uint64_t known = known_caps_mask();
	/* Capabilities newer than the kernel are ignored, as runc does. */
	want.bounding &= known;
	want.effective &= known;
	want.permitted &= known;
	want.inheritable &= known;
	want.ambient &= known;

	/* (uid_t)-1 means "unchanged" to setresuid: the parser keeps ids
	 * below it, a hand-built process must too. */
	if (u->uid > INT32_MAX || u->gid > INT32_MAX)
		return husk_err_set(err, -EINVAL,
				    "process.user: uid %u, gid %u: uids and gids must be in range "
				    "0-2147483647",
				    u->uid, u->gid);
	for (size_t i = 0; i < u->n_additional_gids; i++)
		if (u->additional_gids[i] > INT32_MAX)
			return husk_err_set(err, -EINVAL,
					    "process.user.additionalGids[%zu]: %u: uids and gids "
					    "must be in range 0-2147483647",
					    i, u->additional_gids[i]);

	/* A uid or gid change resets the parent-death signal. */
	int pdeath = 0;
	if (prctl(PR_GET_PDEATHSIG, (unsigned long)&pdeath, 0L, 0L, 0L) < 0)
		pdeath = 0;

	int r;
	if (p->has_caps) {
		r = drop_bounding(want.bounding, err);
		if (r < 0)
			return r;
		/* Keep the permitted set across the uid change; set_caps
		 * then trims it. */
		if (prctl(PR_SET_KEEPCAPS, 1L, 0L, 0L, 0L) < 0)
			return husk_err_sys(err, -errno, "process.capabilities: PR_SET_KEEPCAPS");
	}

	if (setgroups(u->n_additional_gids, (const gid_t *)u->additional_gids) < 0) {
		/* A user namespace whose setgroups is "deny": nothing to set
		 * is nothing lost. */
		if (!(errno == EPERM && u->n_additional_gids == 0))
			return husk_err_sys(err, -errno, "process.user.additionalGids (%zu): setgroups",
					    u->n_additional_gids);
	}
	if (setresgid(u->gid, u->gid, u->gid) < 0)
		return husk_err_sys(err, -errno, "process.user.gid %u: setresgid", u->gid);
	if (setresuid(u->uid, u->uid, u->uid) < 0)
		return husk_err_sys(err, -errno, "process.user.uid %u: setresuid", u->uid);

	if (p->has_caps) {
		r = set_caps(&want, err);
		if (r < 0)
			return r;
		if (prctl(PR_SET_KEEPCAPS, 0L, 0L, 0L, 0L) < 0)
			return husk_err_sys(err, -errno, "process.capabilities: PR_SET_KEEPCAPS");
	}

	if (pdeath > 0 && prctl(PR_SET_PDEATHSIG, (unsigned long)pdeath, 0L, 0L, 0L) < 0)
		return husk_err_sys(err, -errno, "PR_SET_PDEATHSIG %d", pdeath);
	return 0;
}

static int apply_nnp(const struct jail_process *p, struct husk_err *err)
{
	if (p->no_new_privileges && prctl(PR_SET_NO_NEW_PRIVS, 1L, 0L, 0L, 0L) < 0)
		return husk_err_sys(err, -errno, "process.noNewPrivileges: PR_SET_NO_NEW_PRIVS");
	return 0;
}

int jail_creds_apply(const struct jail_process *p, struct husk_err *err)
{
	int r = apply_limits(p, err);
	if (r < 0)
		return r;
	r = apply_identity(p, err);
	if (r < 0)
		return r;
	return apply_nnp(p, err);
}

int jail_security_apply(const struct jail_process *p, void *seccomp_filter,
			struct husk_err *err)
{
	int r = apply_limits(p, err);
	if (r < 0)
		return r;
	/* Without no_new_privs the kernel wants CAP_SYS_ADMIN to load a
	 * filter, which the identity step may drop: load it first, as runc
	 * does. The filter then sees the setup syscalls below. */
	if (seccomp_filter && !p->no_new_privileges) {
		r = jail_seccomp_load(seccomp_filter, err);
		if (r < 0)
			return r;
	}
	r = apply_identity(p, err);
	if (r < 0)
		return r;
	r = apply_nnp(p, err);
	if (r < 0)
		return r;
	/* With no_new_privs, as late as possible: only execve follows. */
	if (seccomp_filter && p->no_new_privileges)
		return jail_seccomp_load(seccomp_filter, err);
	return 0;
}
