/* The host's shared directory (virtio-fs): the host hot-adds a
 * vhost-user-fs device whose virtiofsd serves a directory holding a pod's
 * host mounts (volumes, /etc/hosts, /dev/shm, ...), each bound there by
 * the shim; containers bind them from here. One mount per tag per VM,
 * made by the first bundle that names it. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include "agent.h"
#include "husk/path.h"
#include "init/console.h"

#define FUSE_SUPER_MAGIC 0x65735546
/* virtio-fs tags are at most 36 bytes (the device's config space). */
#define TAG_MAX 36

int sharedfs_check_tag(const char *tag, struct husk_err *err)
{
	size_t n = strlen(tag);
	if (n == 0 || n > TAG_MAX || strspn(tag, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
					     "0123456789._-") != n || tag[0] == '.')
		return husk_err_set(err, -EINVAL,
				    "shared_fs \"%s\": want 1 to %d of [A-Za-z0-9._-], not starting "
				    "with '.'",
				    tag, TAG_MAX);
	return 0;
}

int sharedfs_path(const char *run_dir, const char *tag, char *path, size_t size)
{
	return husk_path_fmt(path, size, "%s/fs/%s", run_dir, tag);
}

int sharedfs_mount(const char *run_dir, const char *tag, struct husk_err *err)
{
	char path[512], parent[512];
	struct statfs sf;
	if (sharedfs_path(run_dir, tag, path, sizeof(path)) < 0 ||
	    husk_path_fmt(parent, sizeof(parent), "%s/fs", run_dir) < 0)
		return husk_err_set(err, -ENAMETOOLONG, "shared_fs %s: path too long", tag);
	if (statfs(path, &sf) == 0 && sf.f_type == FUSE_SUPER_MAGIC)
		return 0; /* an earlier bundle mounted it */
	if ((mkdir(parent, 0700) < 0 && errno != EEXIST) || (mkdir(path, 0700) < 0 && errno != EEXIST))
		return husk_err_sys(err, -errno, "shared_fs %s: mkdir %s", tag, path);
	if (mount(tag, path, "virtiofs", 0, NULL) == 0) {
		init_log(INIT_LOG_INFO, "shared_fs %s: mounted on %s", tag, path);
		return 0;
	}
	/* virtio-fs says EINVAL for a tag no device has (yet): the host's
	 * hot-add may still be on its way. */
	if (errno == EINVAL)
		return husk_err_set(err, -ENOENT, "shared_fs %s: no virtio-fs device with this tag",
				    tag);
	return husk_err_sys(err, -errno, "shared_fs %s: mount virtiofs on %s", tag, path);
}

int sharedfs_source(const char *run_dir, const char *tag, const char *rel, char *out, size_t size,
		    struct husk_err *err)
{
	/* A relative path without ".." components: it stays in the share. */
	for (const char *p = rel; *p;) {
		size_t n = strcspn(p, "/");
		if ((n == 2 && p[0] == '.' && p[1] == '.') || n == 0)
			return husk_err_set(err, -EINVAL,
					    "mount source \"%s\": want a path inside shared_fs %s", rel,
					    tag);
		p += n;
		if (*p == '/')
			p++;
	}
	char base[512];
	if (sharedfs_path(run_dir, tag, base, sizeof(base)) < 0 ||
	    husk_path_fmt(out, size, "%s/%s", base, rel) < 0)
		return husk_err_set(err, -ENAMETOOLONG, "mount source %s: path too long", rel);
	return 0;
}
