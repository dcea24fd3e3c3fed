/* The container's root filesystem: mounts, /dev, the switch of "/" to
 * root.path, masked and read-only paths, as runc and crun do it. */
#ifndef JAIL_ROOTFS_H
#define JAIL_ROOTFS_H

#include <stdbool.h>

#include "husk/error.h"
#include "jail/safepath.h"
#include "jail/spec.h"

/* Builds the rootfs of `spec` and makes it "/". Call as (namespaced) root
 * in the container's init, already in its NEW mount namespace (and the
 * user, pid, ... namespaces the spec asks for), before credentials change:
 *
 *   1. "/" recursively slave (or spec->rootfs_propagation), so nothing done
 *      here propagates back to the host; root.path bind-mounted onto itself.
 *   2. A default /dev tmpfs when the spec mounts nothing at /dev; then every
 *      spec mount in order, its destination resolved inside root.path (no
 *      symlink or ".." leaves it) and missing directories (or an empty file,
 *      for a bind of a non-directory) created.
 *   3. /dev unless the spec binds something there: default and spec device
 *      nodes (bind-mounted from the host where mknod is refused, as in a
 *      user namespace), /dev/pts, /dev/ptmx, /dev/shm, /dev/fd & co.
 *   4. before_switch(data, err) when not NULL (createContainer hooks): the
 *      mounts are in place and root.path is still at its host path.
 *   5. pivot_root into root.path, or MS_MOVE + chroot where "/" is the
 *      initramfs (pivot_root cannot leave it).
 *   6. after_switch(data, err) when not NULL: the container's own /proc is
 *      in place and still writable (sysctls go here, as runc writes them).
 *   7. masked paths, read-only paths, then root.readonly.
 *
 * Sysctls and the hostname are the caller's. Errors name the spec field,
 * e.g. "mounts[3] (tmpfs on /run): mount: No such device". */
int jail_rootfs_enter(const struct jail_spec *spec,
		      int (*before_switch)(void *data, struct husk_err *err),
		      int (*after_switch)(void *data, struct husk_err *err), void *data,
		      struct husk_err *err);

/* True when "/" cannot be pivoted away from: it is the namespace's bottom
 * mount (the initramfs rootfs, or any root mount without a parent). Without
 * /proc, a guess: "/" is a ramfs or tmpfs. jail_rootfs_enter also falls
 * back to MS_MOVE when pivot_root answers EINVAL. */
bool jail_root_is_initramfs(void);

/* The decision of jail_root_is_initramfs on the text of a
 * /proc/self/mountinfo: the last mount at "/" has no parent (its parent id
 * is its own). */
bool jail_mountinfo_root_is_initial(const char *mountinfo);

#endif
