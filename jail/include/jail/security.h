/* Process security for the jailed process: rlimits, oom_score_adj, umask,
 * user and groups, capabilities, no_new_privs and seccomp. Everything here
 * acts on the calling process; the container's init child calls it last,
 * right before execve.
 *
 * Seccomp is split in two so that bad input is refused before any process
 * exists: the parent builds the filter (jail_seccomp_build), the child
 * inherits it across fork and loads it (jail_seccomp_load, or through
 * jail_security_apply).
 *
 * Order applied by jail_security_apply (the same as runc):
 *
 *   1. rlimits, oom_score_adj, umask      (while still privileged: raising a
 *                                          hard limit or lowering the OOM
 *                                          score needs CAP_SYS_RESOURCE)
 *   2. seccomp, if !no_new_privileges     (loading a filter without
 *                                          no_new_privs needs CAP_SYS_ADMIN,
 *                                          which step 3 may drop; the
 *                                          filter must then allow the
 *                                          syscalls of step 3: setgroups,
 *                                          setresgid, setresuid, capset,
 *                                          prctl)
 *   3. capabilities bounding set drop, PR_SET_KEEPCAPS=1, setgroups,
 *      setresgid, setresuid, capset (effective, permitted, inheritable),
 *      ambient set, PR_SET_KEEPCAPS=0, parent-death signal restored
 *   4. no_new_privs, if requested
 *   5. seccomp, if no_new_privileges      (as late as possible, so the filter
 *                                          sees nothing but execve)
 *
 * The bounding set is reduced before the uid change because that needs
 * CAP_SETPCAP in the effective set, which a change to a non-zero uid
 * clears. The ambient set is raised after it because the same change
 * clears the ambient set.
 */
#ifndef JAIL_SECURITY_H
#define JAIL_SECURITY_H

#include "husk/error.h"
#include "jail/spec.h"

/* Builds a libseccomp filter (an scmp_filter_ctx) from `sc` without loading
 * it. Call it in the parent, before creating any process. Refuses unknown
 * architectures and flags, naming the spec field, e.g.
 *   linux.seccomp.architectures[1]: unknown architecture "SCMP_ARCH_FOO".
 * Names libseccomp knows but the native architecture lacks ("socketcall" on
 * x86_64) are accepted and apply to the listed architectures that have
 * them, as with runc. Names libseccomp does not know at all are skipped
 * with a debug note (jail/debug.h), as runc skips them: profiles list
 * syscalls newer than the library. Rules whose action equals the default
 * action are skipped. The filter does not set no_new_privs by itself: that
 * comes from process.noNewPrivileges only. Free with jail_seccomp_free. */
int jail_seccomp_build(const struct jail_seccomp *sc, void **filter_out, struct husk_err *err);

/* Loads `filter` into the calling process. Without no_new_privs set, the
 * kernel requires CAP_SYS_ADMIN in the effective set (EACCES otherwise). */
int jail_seccomp_load(void *filter, struct husk_err *err);

/* NULL is accepted. */
void jail_seccomp_free(void *filter);

/* Steps 1, 3 and 4 above, in that order. Capabilities are set only when
 * p->has_caps; otherwise the kernel's rules for a uid change apply (a
 * non-root uid ends with no capabilities). Capabilities above the running
 * kernel's last capability are ignored, and so is an ambient capability the
 * kernel will not raise (it must be permitted and inheritable; `runc spec`
 * asks for ambient ones without inheritable ones): runc goes on, noting it
 * at debug level, and so does this (jail/debug.h). uids and gids above
 * 2147483647 are refused ((uid_t)-1 would mean "unchanged"). setgroups
 * failing with EPERM is tolerated for an empty additionalGids (a user
 * namespace whose setgroups is "deny"). Errors name the field, e.g.
 *   process.user.uid 1000: setresuid: Operation not permitted. */
int jail_creds_apply(const struct jail_process *p, struct husk_err *err);

/* Steps 1 to 5: jail_creds_apply with `seccomp_filter` (may be NULL) loaded
 * at the right point for p->no_new_privileges. Call it last before execve. */
int jail_security_apply(const struct jail_process *p, void *seccomp_filter,
			struct husk_err *err);

#endif
