/* linux.seccomp to a libseccomp filter, following runc's semantics
 * (libcontainer/seccomp/seccomp_linux.go) so profiles written for runc
 * (Docker's, containerd's) behave the same. */
#include "jail/security.h"

#include <ctype.h>
#include <errno.h>
#include <seccomp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "husk/cleanup.h"
#include "jail/debug.h"

#define ARCH_PREFIX "SCMP_ARCH_"

static const char *action_name(enum jail_seccomp_action a)
{
	switch (a) {
	case JAIL_SCMP_KILL: return "SCMP_ACT_KILL";
	case JAIL_SCMP_KILL_PROCESS: return "SCMP_ACT_KILL_PROCESS";
	case JAIL_SCMP_TRAP: return "SCMP_ACT_TRAP";
	case JAIL_SCMP_ERRNO: return "SCMP_ACT_ERRNO";
	case JAIL_SCMP_TRACE: return "SCMP_ACT_TRACE";
	case JAIL_SCMP_ALLOW: return "SCMP_ACT_ALLOW";
	case JAIL_SCMP_LOG: return "SCMP_ACT_LOG";
	}
	return "?";
}

/* The libseccomp action for `a`; ERRNO and TRACE carry `ret`, EPERM when
 * absent (runc does the same for both). */
static int to_action(enum jail_seccomp_action a, bool has_ret, uint32_t ret, const char *field,
		     uint32_t *out, struct husk_err *err)
{
	if (!has_ret)
		ret = EPERM;
	if ((a == JAIL_SCMP_ERRNO || a == JAIL_SCMP_TRACE) && ret > 0xffff)
		return husk_err_set(err, -EINVAL, "%s: errnoRet %u out of range (0..65535)", field,
				    ret);
	switch (a) {
	case JAIL_SCMP_KILL: *out = SCMP_ACT_KILL; return 0;
	case JAIL_SCMP_KILL_PROCESS: *out = SCMP_ACT_KILL_PROCESS; return 0;
	case JAIL_SCMP_TRAP: *out = SCMP_ACT_TRAP; return 0;
	case JAIL_SCMP_ERRNO: *out = SCMP_ACT_ERRNO(ret); return 0;
	case JAIL_SCMP_TRACE: *out = SCMP_ACT_TRACE(ret); return 0;
	case JAIL_SCMP_ALLOW: *out = SCMP_ACT_ALLOW; return 0;
	case JAIL_SCMP_LOG: *out = SCMP_ACT_LOG; return 0;
	}
	return husk_err_set(err, -EINVAL, "%s: unknown action %d", field, (int)a);
}

static int to_op(enum jail_seccomp_op op, enum scmp_compare *out)
{
	switch (op) {
	case JAIL_SCMP_CMP_NE: *out = SCMP_CMP_NE; return 0;
	case JAIL_SCMP_CMP_LT: *out = SCMP_CMP_LT; return 0;
	case JAIL_SCMP_CMP_LE: *out = SCMP_CMP_LE; return 0;
	case JAIL_SCMP_CMP_EQ: *out = SCMP_CMP_EQ; return 0;
	case JAIL_SCMP_CMP_GE: *out = SCMP_CMP_GE; return 0;
	case JAIL_SCMP_CMP_GT: *out = SCMP_CMP_GT; return 0;
	case JAIL_SCMP_CMP_MASKED_EQ: *out = SCMP_CMP_MASKED_EQ; return 0;
	}
	return -EINVAL;
}

/* "SCMP_ARCH_X86_64" -> libseccomp's "x86_64" -> SCMP_ARCH_X86_64: every
 * OCI name is libseccomp's own name upper-cased behind the prefix, so the
 * library's table stays the one source of truth. 0 when unknown. */
static uint32_t arch_token(const char *name)
{
	size_t plen = strlen(ARCH_PREFIX);
	if (strncmp(name, ARCH_PREFIX, plen) != 0)
		return 0;
	char low[32];
	size_t n = strlen(name + plen);
	if (n == 0 || n >= sizeof(low))
		return 0;
	for (size_t i = 0; i <= n; i++)
		low[i] = (char)tolower((unsigned char)name[plen + i]);
	/* "native" is libseccomp's pseudo name, not an OCI architecture. */
	if (strcmp(low, "native") == 0)
		return 0;
	return seccomp_arch_resolve_name(low);
}

static int add_flags(scmp_filter_ctx ctx, const struct jail_seccomp *sc, struct husk_err *err)
{
	for (size_t i = 0; i < sc->n_flags; i++) {
		const char *f = sc->flags[i];
		enum scmp_filter_attr attr;
		if (strcmp(f, "SECCOMP_FILTER_FLAG_LOG") == 0) {
			attr = SCMP_FLTATR_CTL_LOG;
		} else if (strcmp(f, "SECCOMP_FILTER_FLAG_SPEC_ALLOW") == 0) {
			attr = SCMP_FLTATR_CTL_SSB;
		} else if (strcmp(f, "SECCOMP_FILTER_FLAG_TSYNC") == 0 ||
			   strcmp(f, "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV") == 0) {
			/* TSYNC: the loading process is single-threaded.
			 * WAIT_KILLABLE_RECV only changes SCMP_ACT_NOTIFY,
			 * which the spec model has no listener for (and the
			 * kernel refuses it without one). */
			continue;
		} else {
			return husk_err_set(err, -EINVAL, "linux.seccomp.flags[%zu]: unknown flag \"%s\"",
					    i, f);
		}
		int r = seccomp_attr_set(ctx, attr, 1);
		if (r < 0)
			return husk_err_sys(err, r,
					    "linux.seccomp.flags[%zu]: %s (kernel or libseccomp support)",
					    i, f);
	}
	return 0;
}

static int add_rule(scmp_filter_ctx ctx, size_t ri, const struct jail_seccomp_rule *rule,
		    uint32_t def_action, struct husk_err *err)
{
	char field[64];
	snprintf(field, sizeof(field), "linux.seccomp.syscalls[%zu]", ri);

	uint32_t action;
	int r = to_action(rule->action, rule->has_errno, rule->errno_ret, field, &action, err);
	if (r < 0)
		return r;

	if (rule->n_args > 6)
		return husk_err_set(err, -EINVAL, "%s.args: %zu conditions, at most 6", field,
				    rule->n_args);
	struct scmp_arg_cmp cmps[6];
	unsigned per_index[6] = { 0 };
	bool separate = false;
	for (size_t i = 0; i < rule->n_args; i++) {
		const struct jail_seccomp_arg *a = &rule->args[i];
		enum scmp_compare op;
		if (a->index > 5)
			return husk_err_set(err, -EINVAL, "%s.args[%zu].index: %u out of range (0..5)",
					    field, i, a->index);
		if (to_op(a->op, &op) < 0)
			return husk_err_set(err, -EINVAL, "%s.args[%zu].op: unknown operator %d", field,
					    i, (int)a->op);
		/* MASKED_EQ: value is the mask, valueTwo the datum, as libseccomp's
		 * (datum_a, datum_b) for SCMP_CMP_MASKED_EQ. */
		cmps[i] = (struct scmp_arg_cmp){ .arg = a->index,
						 .op = op,
						 .datum_a = a->value,
						 .datum_b = op == SCMP_CMP_MASKED_EQ ? a->value_two : 0 };
		if (++per_index[a->index] > 1)
			separate = true;
	}

	/* libseccomp refuses a rule that repeats the default action; it would
	 * change nothing. */
	if (action == def_action)
		return 0;

	for (size_t n = 0; n < rule->n_names; n++) {
		const char *name = rule->names[n];
		/* Negative pseudo numbers (names another architecture has, e.g.
		 * "socketcall" on x86_64) go to libseccomp as they are: it adds
		 * them to the filter's architectures that have the syscall and
		 * skips the others, as runc relies on. */
		int nr = seccomp_syscall_resolve_name(name);
		if (nr == __NR_SCMP_ERROR) {
			/* A name newer than libseccomp (profiles are written
			 * for the newest kernels): runc skips it the same
			 * way, so a profile it runs runs here too. */
			jail_debug("%s.names[%zu]: unknown syscall \"%s\" ignored", field, n, name);
			continue;
		}
		r = 0;
		if (!separate) {
			r = seccomp_rule_add_array(ctx, action, nr, (unsigned)rule->n_args,
						   rule->n_args ? cmps : NULL);
		} else {
			/* Several conditions on one argument are alternatives
			 * to runc, and Docker's profile relies on it
			 * (personality): one rule per condition. */
			for (size_t i = 0; i < rule->n_args && r >= 0; i++)
				r = seccomp_rule_add_array(ctx, action, nr, 1, &cmps[i]);
		}
		if (r < 0)
			return husk_err_sys(err, r, "%s.names[%zu] \"%s\": seccomp_rule_add (%s)",
					    field, n, name, action_name(rule->action));
	}
	return 0;
}

int jail_seccomp_build(const struct jail_seccomp *sc, void **filter_out, struct husk_err *err)
{
	*filter_out = NULL;
	uint32_t def_action;
	int r = to_action(sc->default_action, sc->has_default_errno, sc->default_errno,
			  "linux.seccomp.defaultAction", &def_action, err);
	if (r < 0)
		return r;

	scmp_filter_ctx ctx = seccomp_init(def_action);
	if (!ctx)
		return husk_err_set(err, -EINVAL,
				    "linux.seccomp.defaultAction: seccomp_init(%s) failed "
				    "(not supported by the kernel or libseccomp?)",
				    action_name(sc->default_action));

	/* no_new_privs comes from process.noNewPrivileges alone; libseccomp
	 * would otherwise set it on every load. */
	r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
	if (r < 0) {
		husk_err_sys(err, r, "linux.seccomp: seccomp_attr_set(CTL_NNP)");
		goto fail;
	}
	/* Report the kernel's errno from seccomp_load (EACCES without
	 * CAP_SYS_ADMIN) instead of libseccomp's generic ECANCELED. */
	r = seccomp_attr_set(ctx, SCMP_FLTATR_API_SYSRAWRC, 1);
	if (r < 0) {
		husk_err_sys(err, r, "linux.seccomp: seccomp_attr_set(API_SYSRAWRC)");
		goto fail;
	}

	for (size_t i = 0; i < sc->n_architectures; i++) {
		const char *name = sc->architectures[i];
		uint32_t arch = arch_token(name);
		if (arch == 0) {
			r = husk_err_set(err, -EINVAL,
					 "linux.seccomp.architectures[%zu]: unknown architecture \"%s\"",
					 i, name);
			goto fail;
		}
		r = seccomp_arch_add(ctx, arch);
		/* The native architecture is always there already. */
		if (r < 0 && r != -EEXIST) {
			husk_err_sys(err, r, "linux.seccomp.architectures[%zu]: seccomp_arch_add(%s)%s",
				     i, name,
				     r == -EDOM ? " (byte order differs from the native architecture)"
						: "");
			goto fail;
		}
	}

	r = add_flags(ctx, sc, err);
	if (r < 0)
		goto fail;

	for (size_t i = 0; i < sc->n_rules; i++) {
		r = add_rule(ctx, i, &sc->rules[i], def_action, err);
		if (r < 0)
			goto fail;
	}

	*filter_out = ctx;
	return 0;
fail:
	seccomp_release(ctx);
	return r;
}

int jail_seccomp_load(void *filter, struct husk_err *err)
{
	int r = seccomp_load((scmp_filter_ctx)filter);
	if (r == -EACCES)
		return husk_err_sys(err, r,
				    "linux.seccomp: seccomp_load (without process.noNewPrivileges "
				    "this needs CAP_SYS_ADMIN)");
	if (r < 0)
		return husk_err_sys(err, r, "linux.seccomp: seccomp_load");
	return 0;
}

void jail_seccomp_free(void *filter)
{
	if (filter)
		seccomp_release((scmp_filter_ctx)filter);
}
