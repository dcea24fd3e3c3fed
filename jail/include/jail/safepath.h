/* Path resolution confined to a directory: every lookup treats `root_fd` as
 * "/", so "..", absolute symlinks and relative symlinks that climb can never
 * reach outside it. Used to build a container's rootfs from an image the
 * container's author controls.
 *
 * openat2(2) RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS does the work where the
 * kernel has it (5.6+); elsewhere a component-by-component walk with
 * O_PATH | O_NOFOLLOW re-resolves symlinks textually against the root (at
 * most 40 of them per lookup, then ELOOP, as the kernel). The walk resolves
 * /proc magic links by their text, which stays inside the root too. */
#ifndef JAIL_SAFEPATH_H
#define JAIL_SAFEPATH_H

#include <sys/types.h>

#include "husk/error.h"

/* How to resolve: JAIL_RESOLVE_AUTO everywhere but in tests, which force the
 * walk to cover kernels without openat2. */
enum jail_resolve {
	JAIL_RESOLVE_AUTO, /* openat2, the walk on ENOSYS */
	JAIL_RESOLVE_WALK, /* the walk only */
};

/* Opens `path` (absolute or relative, both from root_fd) with open(2)
 * `flags` (O_CLOEXEC is always added) and `mode` (with O_CREAT). Returns the
 * fd or a negative errno; err names the path. */
int jail_openat_in_root(int root_fd, const char *path, int flags, mode_t mode,
			struct husk_err *err);

/* Creates the missing directories of `path` one component at a time, each
 * with mkdirat(2) on the safely resolved parent, and returns an O_PATH fd of
 * the final directory in *out_fd. An existing non-directory component fails
 * with ENOTDIR; a dangling symlink with ENOENT. */
int jail_mkdir_all_in_root(int root_fd, const char *path, mode_t mode, int *out_fd,
			   struct husk_err *err);

/* Like jail_mkdir_all_in_root for the parent of `path`, then creates `path`
 * as an empty regular file if nothing is there (a target for a file bind
 * mount). Returns an O_PATH fd of what is at `path` in *out_fd, whatever its
 * type. The last component must be a name (not "", "." or ".."). */
int jail_mkfile_in_root(int root_fd, const char *path, mode_t mode, int *out_fd,
			struct husk_err *err);

/* The same three with the resolution strategy chosen. */
int jail_openat_in_root_with(enum jail_resolve how, int root_fd, const char *path, int flags,
			     mode_t mode, struct husk_err *err);
int jail_mkdir_all_in_root_with(enum jail_resolve how, int root_fd, const char *path, mode_t mode,
				int *out_fd, struct husk_err *err);
int jail_mkfile_in_root_with(enum jail_resolve how, int root_fd, const char *path, mode_t mode,
			     int *out_fd, struct husk_err *err);

#endif
