/* Early mounts of PID 1: see init/mounts.h. */
#include "init/mounts.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "husk/cleanup.h"
#include "husk/path.h"
#include "init/console.h"

/* From <linux/magic.h>, which the musl toolchain may not carry. */
#define PROC_SUPER_MAGIC 0x9fa0UL
#define SYSFS_MAGIC 0x62656572UL
#define TMPFS_MAGIC 0x01021994UL
#define RAMFS_MAGIC 0x858458f6UL /* devtmpfs without CONFIG_TMPFS */
#define DEVPTS_SUPER_MAGIC 0x1cd1UL
#define CGROUP2_SUPER_MAGIC 0x63677270UL

struct early_mount {
	const char *path;
	const char *type;
	unsigned long flags;
	const char *data;
	const char *fallback_data; /* retried with on EINVAL (older kernels) */
	unsigned long magic, magic2;
	mode_t dir_mode;
	bool early; /* INIT_MOUNT_EARLY rather than INIT_MOUNT_REST */
};

static const struct early_mount early_mounts[] = {
	{ "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, NULL,
	  PROC_SUPER_MAGIC, 0, 0555, true },
	{ "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, NULL, SYSFS_MAGIC, 0, 0555, true },
	/* noexec would break nothing today, but systemd and the kernel's own
	 * devtmpfs automount leave /dev exec-able; follow them. */
	{ "/dev", "devtmpfs", MS_NOSUID | MS_STRICTATIME, "mode=0755", NULL, TMPFS_MAGIC,
	  RAMFS_MAGIC, 0755, true },
	/* gid 5 is "tty" in every distribution's group file. */
	{ "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "mode=0620,gid=5,ptmxmode=0666", NULL,
	  DEVPTS_SUPER_MAGIC, 0, 0755 },
	{ "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", NULL, TMPFS_MAGIC, 0, 01777 },
	{ "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755", NULL, TMPFS_MAGIC, 0, 0755 },
	{ "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", NULL, TMPFS_MAGIC, 0, 01777 },
	/* nsdelegate: a container given a cgroup namespace cannot escape its
	 * delegation boundary by writing to an ancestor's files. */
	{ "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, "nsdelegate", "",
	  CGROUP2_SUPER_MAGIC, 0, 0755 },
};

static const struct {
	const char *path, *target;
} dev_links[] = {
	{ "/dev/fd", "/proc/self/fd" },
	{ "/dev/stdin", "/proc/self/fd/0" },
	{ "/dev/stdout", "/proc/self/fd/1" },
	{ "/dev/stderr", "/proc/self/fd/2" },
};

/* 1 when `path` is the root of a mount whose filesystem is `magic` or
 * `magic2`, 0 when it is not (a plain directory of its parent's file
 * system, or another type), negative errno when it cannot be looked at.
 * A mount is recognised by its device differing from its parent's: each of
 * ours is its own superblock, and the initramfs itself is tmpfs too, so the
 * type alone would not tell. */
static int mounted_here(const char *path, unsigned long magic, unsigned long magic2)
{
	struct stat st, parent;
	if (stat(path, &st) < 0)
		return -errno;
	char up[4096];
	int r = husk_path_fmt(up, sizeof(up), "%s/..", path);
	if (r < 0)
		return r;
	if (stat(up, &parent) < 0)
		return -errno;
	if (st.st_dev == parent.st_dev)
		return 0;
	struct statfs sfs;
	if (statfs(path, &sfs) < 0)
		return -errno;
	unsigned long type = (unsigned long)sfs.f_type;
	return type == magic || (magic2 && type == magic2);
}

static int ensure_dir(const char *path, mode_t mode, struct husk_err *err)
{
	if (mkdir(path, mode) == 0 || errno == EEXIST)
		return 0;
	return husk_err_sys(err, -errno, "mkdir %s", path);
}

static int do_mount(const char *root, const struct early_mount *m, struct husk_err *err)
{
	char path[4096];
	int r = husk_path_fmt(path, sizeof(path), "%s%s", root, m->path);
	if (r < 0)
		return husk_err_set(err, r, "mount %s under %s: path too long", m->path, root);
	r = ensure_dir(path, m->dir_mode, err);
	if (r < 0)
		return r;
	r = mounted_here(path, m->magic, m->magic2);
	if (r > 0) {
		init_log(INIT_LOG_DEBUG, "%s: %s already mounted", path, m->type);
		return 0;
	}
	if (r < 0)
		return husk_err_sys(err, r, "mount %s on %s: stat", m->type, path);

	if (mount(m->type, path, m->type, m->flags, m->data) == 0)
		return 0;
	r = -errno;
	if (r == -EINVAL && m->fallback_data) {
		const char *data = *m->fallback_data ? m->fallback_data : NULL;
		if (mount(m->type, path, m->type, m->flags, data) == 0)
			return 0;
		r = -errno;
	}
	/* The same superblock is already mounted right there. */
	if (r == -EBUSY)
		return 0;
	return husk_err_sys(err, r, "mount %s on %s (%s)", m->type, path,
			    m->data ? m->data : "no options");
}

static int make_link(const char *root, const char *rel, const char *target, struct husk_err *err)
{
	char path[4096];
	int r = husk_path_fmt(path, sizeof(path), "%s%s", root, rel);
	if (r < 0)
		return husk_err_set(err, r, "symlink %s under %s: path too long", rel, root);
	if (symlink(target, path) == 0 || errno == EEXIST)
		return 0;
	return husk_err_sys(err, -errno, "symlink %s -> %s", path, target);
}

static int read_small(const char *path, char *buf, size_t size)
{
	_cleanup_fd_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t len = 0;
	while (len < size - 1) {
		ssize_t n = read(fd, buf + len, size - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	return (int)len;
}

int init_cgroup_enable_controllers(const char *cgroup_dir, struct husk_err *err)
{
	char path[4096];
	char list[4096];
	int r = husk_path_fmt(path, sizeof(path), "%s/cgroup.controllers", cgroup_dir);
	if (r < 0)
		return husk_err_set(err, r, "%s: path too long", cgroup_dir);
	r = read_small(path, list, sizeof(list));
	if (r < 0)
		return husk_err_sys(err, r, "read %s", path);
	r = husk_path_fmt(path, sizeof(path), "%s/cgroup.subtree_control", cgroup_dir);
	if (r < 0)
		return husk_err_set(err, r, "%s: path too long", cgroup_dir);
	_cleanup_fd_ int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return husk_err_sys(err, -errno, "open %s", path);

	int refused = 0;
	char *save = NULL;
	for (char *name = strtok_r(list, " \t\n", &save); name;
	     name = strtok_r(NULL, " \t\n", &save)) {
		/* One controller per write: a refusal (a controller busy in a
		 * v1 hierarchy, say) must not take the others with it. */
		char cmd[128];
		int n = snprintf(cmd, sizeof(cmd), "+%s", name);
		if (n < 0 || (size_t)n >= sizeof(cmd))
			continue;
		ssize_t w;
		do
			w = write(fd, cmd, (size_t)n);
		while (w < 0 && errno == EINTR);
		if (w != n) {
			int e = w < 0 ? errno : EIO;
			init_log(INIT_LOG_WARNING, "cgroup: cannot enable controller %s in %s: %s",
				 name, path, strerror(e));
			refused++;
		}
	}
	return refused;
}

int init_mount_basics_at(const char *root, unsigned flags, struct husk_err *err)
{
	/* "/" contributes nothing: paths below are absolute. */
	if (!root || strcmp(root, "/") == 0)
		root = "";

	/* Everything is attempted so that one failure (no cgroup2 in the
	 * kernel, say) leaves the rest usable; the first error is returned. */
	int first = 0;
	struct husk_err e = { 0 };
	for (size_t i = 0; i < ARRAY_SIZE(early_mounts); i++) {
		if (!(flags & (early_mounts[i].early ? INIT_MOUNT_EARLY : INIT_MOUNT_REST)))
			continue;
		int r = do_mount(root, &early_mounts[i], &e);
		if (r < 0) {
			init_log(INIT_LOG_ERR, "%s", e.msg);
			if (!first)
				first = husk_err_set(err, r, "%s", e.msg);
			continue;
		}
		if (strcmp(early_mounts[i].path, "/dev") == 0) {
			char console[4096];
			if (husk_path_fmt(console, sizeof(console), "%s/dev/console", root) == 0 &&
			    init_console_attach(console, &e) < 0)
				init_log(INIT_LOG_WARNING, "%s", e.msg);
		}
	}

	if (!(flags & INIT_MOUNT_REST))
		return first;
	for (size_t i = 0; i < ARRAY_SIZE(dev_links); i++) {
		int r = make_link(root, dev_links[i].path, dev_links[i].target, &e);
		if (r < 0 && !first)
			first = husk_err_set(err, r, "%s", e.msg);
	}
	/* devtmpfs normally has a ptmx node; without one, point at the devpts
	 * instance's. */
	char ptmx[4096];
	struct stat st;
	if (husk_path_fmt(ptmx, sizeof(ptmx), "%s/dev/ptmx", root) == 0 &&
	    lstat(ptmx, &st) < 0 && errno == ENOENT) {
		int r = make_link(root, "/dev/ptmx", "pts/ptmx", &e);
		if (r < 0 && !first)
			first = husk_err_set(err, r, "%s", e.msg);
	}

	if (flags & INIT_MOUNT_CGROUP_CONTROLLERS) {
		char cg[4096];
		int r = husk_path_fmt(cg, sizeof(cg), "%s/sys/fs/cgroup", root);
		if (r == 0)
			r = init_cgroup_enable_controllers(cg, &e);
		if (r < 0) {
			init_log(INIT_LOG_WARNING, "cgroup controllers: %s", e.msg);
			if (!first)
				first = husk_err_set(err, r, "%s", e.msg);
		}
	}
	return first;
}

int init_mount_basics(struct husk_err *err)
{
	return init_mount_basics_at("/", INIT_MOUNT_ALL | INIT_MOUNT_CGROUP_CONTROLLERS, err);
}
