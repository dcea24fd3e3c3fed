/* The early mounts of the guest's PID 1.
 *
 * The root is the initramfs (rootfs), so everything is mounted in place:
 * nothing here needs pivot_root. */
#ifndef INIT_MOUNTS_H
#define INIT_MOUNTS_H

#include "husk/error.h"

/* Mounts, creating the directories when missing:
 *   /proc            proc      nosuid,nodev,noexec                  (early)
 *   /sys             sysfs     nosuid,nodev,noexec                  (early)
 *   /dev             devtmpfs  nosuid,strictatime  mode=0755        (early)
 *   /dev/pts         devpts    nosuid,noexec       mode=0620,gid=5,ptmxmode=0666
 *   /dev/shm         tmpfs     nosuid,nodev        mode=1777
 *   /run             tmpfs     nosuid,nodev        mode=0755
 *   /tmp             tmpfs     nosuid,nodev        mode=1777
 *   /sys/fs/cgroup   cgroup2   nosuid,nodev,noexec nsdelegate (when taken)
 * then the /dev/fd, /dev/stdin, /dev/stdout, /dev/stderr symlinks (and
 * /dev/ptmx -> pts/ptmx when devtmpfs has no ptmx node), makes sure fds 0-2
 * are open (init_console_attach), and enables in the root cgroup's
 * cgroup.subtree_control every controller cgroup.controllers lists, one
 * write each; a controller that refuses is logged as a warning.
 *
 * Idempotent: a mount point that already holds a filesystem of the right
 * type is left alone, so a second call (or a restarted agent) does nothing.
 * Errors name the mount point and the filesystem type. */
int init_mount_basics(struct husk_err *err);

/* The same under `root` instead of "/" (for tests, in a private mount
 * namespace), in parts:
 *   INIT_MOUNT_EARLY   /proc, /sys, /dev and fds 0-2: what PID 1 needs to
 *                      read /proc/cmdline and load modules (husk-agent
 *                      mounts them before serving only for that);
 *   INIT_MOUNT_REST    the other mounts and the /dev links, which only
 *                      containers need (husk-agent mounts them once it has
 *                      answered its first Check, while the host prepares the
 *                      first container, or before any request that needs
 *                      them);
 *   INIT_MOUNT_CGROUP_CONTROLLERS  also enable the controllers (with REST:
 *                      the cgroup2 hierarchy is a REST mount).
 * init_mount_basics() passes all three. */
#define INIT_MOUNT_CGROUP_CONTROLLERS 0x1u
#define INIT_MOUNT_EARLY 0x2u
#define INIT_MOUNT_REST 0x4u
#define INIT_MOUNT_ALL (INIT_MOUNT_EARLY | INIT_MOUNT_REST)
int init_mount_basics_at(const char *root, unsigned flags, struct husk_err *err);

/* Enables every controller of `cgroup_dir`/cgroup.controllers in its
 * cgroup.subtree_control, one "+name" write each. Returns the number of
 * controllers that refused (each logged as a warning), or a negative errno
 * when the files cannot be read or opened. */
int init_cgroup_enable_controllers(const char *cgroup_dir, struct husk_err *err);

#endif
