/* The container's root filesystem (see jail/rootfs.h). The sequence and
 * its details follow runc's libcontainer/rootfs_linux.go and crun's
 * linux.c: mounts are made through /proc/self/fd of a confined O_PATH fd,
 * devices fall back to bind mounts in user namespaces, and the initramfs
 * root, which pivot_root cannot leave, is switched with MS_MOVE + chroot. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "husk/cleanup.h"
#include "husk/file.h"
#include "jail/rootfs.h"
#include "jail/safepath.h"

#define PROPAGATION_FLAGS (MS_SHARED | MS_SLAVE | MS_PRIVATE | MS_UNBINDABLE)
#define ATIME_FLAGS (MS_NOATIME | MS_NODIRATIME | MS_RELATIME | MS_STRICTATIME)
#define FD_PATH_MAX 32

/* ---- helpers ---- */

static char *fd_path(char buf[FD_PATH_MAX], int fd)
{
	snprintf(buf, FD_PATH_MAX, "/proc/self/fd/%d", fd);
	return buf;
}

/* Mounts onto what `fd` designates through its /proc/self/fd link: the
 * kernel follows the link to that very directory or file, so a symlink
 * swapped into the path after it was resolved cannot redirect the mount. */
static int mount_on_fd(const char *src, int fd, const char *type, unsigned long flags,
		       const char *data)
{
	char p[FD_PATH_MAX];
	return mount(src, fd_path(p, fd), type, flags, data) < 0 ? -errno : 0;
}

/* Whether the absolute `dest` names `want`, tolerating "//", "/./" and a
 * trailing slash. */
static bool dest_is(const char *dest, const char *want)
{
	if (!dest)
		return false;
	char norm[PATH_MAX];
	size_t n = 0;
	for (const char *p = dest; *p;) {
		while (*p == '/')
			p++;
		const char *e = p;
		while (*e && *e != '/')
			e++;
		size_t len = (size_t)(e - p);
		if (len && !(len == 1 && *p == '.')) {
			if (n + len + 2 > sizeof(norm))
				return false;
			norm[n++] = '/';
			memcpy(norm + n, p, len);
			n += len;
		}
		p = e;
	}
	if (!n)
		norm[n++] = '/';
	norm[n] = '\0';
	return !strcmp(norm, want);
}

/* Whether `path` is `dir` or below it (both canonical). */
static bool path_under(const char *path, const char *dir)
{
	size_t n = strlen(dir);
	if (n == 1 && dir[0] == '/')
		return true;
	return !strncmp(path, dir, n) && (path[n] == '\0' || path[n] == '/');
}

/* ---- /proc/self/mountinfo ---- */

/* The kernel generates it (st_size says 0): as large as the mounts are. */
static int read_mountinfo(char **out)
{
	return husk_read_file("/proc/self/mountinfo", SIZE_MAX, out, NULL, NULL);
}

struct mountinfo_entry {
	int id, parent;
	char *root, *mount_point, *fstype;
	bool shared;
};

/* Undoes the kernel's \ooo escapes of spaces, tabs, newlines, backslashes. */
static void unescape(char *s)
{
	char *w = s;
	for (char *r = s; *r;) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
		    r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 4;
		} else {
			*w++ = *r++;
		}
	}
	*w = '\0';
}

/* Parses the next line of `*cur` in place; false at the end. Lines that do
 * not parse are skipped. */
static bool mountinfo_next(char **cur, struct mountinfo_entry *e)
{
	while (**cur) {
		char *line = *cur;
		char *nl = strchr(line, '\n');
		if (nl) {
			*nl = '\0';
			*cur = nl + 1;
		} else {
			*cur = line + strlen(line);
		}
		char *f[64];
		int n = 0, sep = -1;
		char *save = NULL;
		for (char *t = strtok_r(line, " ", &save); t && n < 64; t = strtok_r(NULL, " ", &save)) {
			if (sep < 0 && n >= 6 && !strcmp(t, "-"))
				sep = n;
			f[n++] = t;
		}
		if (sep < 0 || sep + 1 >= n)
			continue;
		e->id = atoi(f[0]);
		e->parent = atoi(f[1]);
		e->root = f[3];
		e->mount_point = f[4];
		e->fstype = f[sep + 1];
		e->shared = false;
		for (int i = 6; i < sep; i++)
			if (!strncmp(f[i], "shared:", 7))
				e->shared = true;
		unescape(e->root);
		unescape(e->mount_point);
		return true;
	}
	return false;
}

bool jail_mountinfo_root_is_initial(const char *mountinfo)
{
	_cleanup_free_ char *copy = strdup(mountinfo);
	if (!copy)
		return false;
	char *cur = copy;
	struct mountinfo_entry e;
	bool initial = false;
	/* Mounts stacked on "/" come later in the list; the last one is the
	 * root that pivot_root would have to leave. The bottom mount of a
	 * namespace is its own parent: the initramfs rootfs when nothing was
	 * ever mounted over it. (A "rootfs" with a parent, as over a nullfs,
	 * can be pivoted away from.) */
	while (mountinfo_next(&cur, &e))
		if (!strcmp(e.mount_point, "/"))
			initial = e.id == e.parent;
	return initial;
}

bool jail_root_is_initramfs(void)
{
	_cleanup_free_ char *mi = NULL;
	if (read_mountinfo(&mi) == 0)
		return jail_mountinfo_root_is_initial(mi);
	/* No /proc: guess from the filesystem the initramfs uses. */
	struct statfs sf;
	if (statfs("/", &sf) < 0)
		return false;
	return sf.f_type == RAMFS_MAGIC || sf.f_type == TMPFS_MAGIC;
}

/* ---- remounts ---- */

static unsigned long statvfs_to_ms(unsigned long f)
{
	unsigned long ms = 0;
	if (f & ST_RDONLY)
		ms |= MS_RDONLY;
	if (f & ST_NOSUID)
		ms |= MS_NOSUID;
	if (f & ST_NODEV)
		ms |= MS_NODEV;
	if (f & ST_NOEXEC)
		ms |= MS_NOEXEC;
	if (f & ST_NOATIME)
		ms |= MS_NOATIME;
	if (f & ST_NODIRATIME)
		ms |= MS_NODIRATIME;
	if (f & ST_RELATIME)
		ms |= MS_RELATIME;
	if (!(ms & (MS_NOATIME | MS_RELATIME)))
		ms |= MS_STRICTATIME;
	return ms;
}

static const char *flags_text(unsigned long f, char *buf, size_t n)
{
	static const struct {
		unsigned long flag;
		const char *name;
	} names[] = {
		{ MS_RDONLY, "ro" },	     { MS_NOSUID, "nosuid" },	    { MS_NODEV, "nodev" },
		{ MS_NOEXEC, "noexec" },     { MS_NOATIME, "noatime" },	    { MS_NODIRATIME, "nodiratime" },
		{ MS_RELATIME, "relatime" }, { MS_STRICTATIME, "strictatime" },
	};
	size_t len = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		if (!(f & names[i].flag))
			continue;
		int k = snprintf(buf + len, n - len, "%s%s", len ? "," : "", names[i].name);
		if (k < 0 || (size_t)k >= n - len)
			break;
		len += (size_t)k;
	}
	if (!len)
		snprintf(buf, n, "rw");
	return buf;
}

/* Remounts the bind mount at `path` with `flags` (MS_RDONLY, MS_NOSUID...).
 * A mount that came from a more privileged mount namespace has its flags
 * locked, and a remount that would drop one is EPERM: retry keeping the
 * flags it has now (statvfs), as runc does, but never one the spec
 * explicitly cleared (`clear`, e.g. "rw"): that stays an error. */
static int remount_bind(const char *path, unsigned long flags, unsigned long clear)
{
	flags = (flags & ~(MS_BIND | MS_REC | MS_REMOUNT | PROPAGATION_FLAGS)) | MS_BIND | MS_REMOUNT;
	if (mount(NULL, path, NULL, flags, NULL) == 0)
		return 0;
	int r = -errno;
	if (r != -EPERM)
		return r;
	struct statvfs sv;
	if (statvfs(path, &sv) < 0)
		return r;
	unsigned long have = statvfs_to_ms(sv.f_flag);
	unsigned long add = have & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC);
	if (!(flags & ATIME_FLAGS))
		add |= have & ATIME_FLAGS;
	add &= ~clear;
	if (!(add & ~flags))
		return r;
	return mount(NULL, path, NULL, flags | add, NULL) < 0 ? -errno : 0;
}

/* Bind-mounts `src` onto `target` (an fd of the resolved `dest`), then
 * applies the per-mount flags with a remount, which a bind alone ignores. */
static int bind_and_remount(int root_fd, const char *dest, int target, const char *src,
			    unsigned long flags, unsigned long clear, struct husk_err *err)
{
	int r = mount_on_fd(src, target, NULL, MS_BIND | (flags & MS_REC), NULL);
	if (r < 0)
		return husk_err_sys(err, r, "bind %s", src);
	unsigned long extra = flags & ~(MS_BIND | MS_REC | MS_REMOUNT | PROPAGATION_FLAGS);
	if (!extra && !clear)
		return 0;
	/* `target` still designates the directory under the new mount: the
	 * remount must name the mount's root, so resolve the path again. */
	_cleanup_fd_ int fd = jail_openat_in_root(root_fd, dest, O_PATH, 0, err);
	if (fd < 0)
		return fd;
	char p[FD_PATH_MAX], fl[96];
	r = remount_bind(fd_path(p, fd), extra, clear);
	if (r < 0)
		return husk_err_sys(err, r, "remount %s", flags_text(extra, fl, sizeof(fl)));
	return 0;
}

/* ---- spec mounts ---- */

static bool is_bind(const struct jail_mount *m)
{
	return (m->flags & MS_BIND) || !m->type || !strcmp(m->type, "bind");
}

static const char *mount_type(const struct jail_mount *m)
{
	return m->type ? m->type : "bind";
}

/* Whether the comma-separated `data` has option `opt` ("newinstance"), or
 * one starting with `opt` when it ends in '=' ("ptmxmode="). */
static bool has_opt(const char *data, const char *opt)
{
	size_t n = strlen(opt);
	bool prefix = n && opt[n - 1] == '=';
	for (const char *p = data; p && *p;) {
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (prefix ? len >= n && !strncmp(p, opt, n) : len == n && !strncmp(p, opt, n))
			return true;
		p = e ? e + 1 : p + len;
	}
	return false;
}

/* devpts without newinstance would be the host's instance, shared; and
 * without ptmxmode its ptmx would be unusable (mode 000). */
static char *devpts_data(const char *data)
{
	const char *d = data ? data : "";
	char *out = malloc(strlen(d) + sizeof(",newinstance,ptmxmode=0666"));
	if (!out)
		return NULL;
	strcpy(out, d);
	if (!has_opt(d, "newinstance"))
		strcat(strcat(out, *out ? "," : ""), "newinstance");
	if (!has_opt(d, "ptmxmode="))
		strcat(strcat(out, *out ? "," : ""), "ptmxmode=0666");
	return out;
}

static int mount_entry(int root_fd, const struct jail_mount *m, struct husk_err *err)
{
	unsigned long flags = m->flags & ~PROPAGATION_FLAGS;
	_cleanup_fd_ int target = -1;
	int r;

	if (!m->destination || m->destination[0] != '/')
		return husk_err_set(err, -EINVAL, "destination must be an absolute path");
	if (is_bind(m)) {
		if (!m->source)
			return husk_err_set(err, -EINVAL, "bind mount without a source");
		struct stat st;
		if (stat(m->source, &st) < 0)
			return husk_err_sys(err, -errno, "source %s", m->source);
		if (S_ISDIR(st.st_mode))
			r = jail_mkdir_all_in_root(root_fd, m->destination, 0755, &target, err);
		else
			r = jail_mkfile_in_root(root_fd, m->destination, 0644, &target, err);
		if (r < 0)
			return r;
		return bind_and_remount(root_fd, m->destination, target, m->source, flags,
					m->clear_flags, err);
	}

	r = jail_mkdir_all_in_root(root_fd, m->destination, 0755, &target, err);
	if (r < 0)
		return r;
	const char *type = m->type;
	bool sysfs = !strcmp(type, "sysfs");
	bool cgroup = !strcmp(type, "cgroup") || !strcmp(type, "cgroup2");
	const char *src = m->source ? m->source : type;
	_cleanup_free_ char *data = NULL;
	if (cgroup)
		type = "cgroup2"; /* the guest has a pure cgroup2 hierarchy */
	if (!strcmp(type, "devpts")) {
		data = devpts_data(m->data);
		if (!data)
			return husk_err_sys(err, -ENOMEM, "mount");
	}
	r = mount_on_fd(src, target, type, flags, data ? data : m->data);
	if (r == -EPERM && (sysfs || cgroup)) {
		/* A user namespace may mount sysfs only with its own network
		 * namespace, cgroup2 only with its own cgroup namespace: bind the
		 * current ones instead, as runc does. */
		const char *from = sysfs ? "/sys" : "/sys/fs/cgroup";
		return bind_and_remount(root_fd, m->destination, target, from, flags | MS_REC, 0, err);
	}
	if (r < 0)
		return husk_err_sys(err, r, "mount");
	return 0;
}

static int set_propagation(int root_fd, const struct jail_mount *m, struct husk_err *err)
{
	_cleanup_fd_ int fd = jail_openat_in_root(root_fd, m->destination, O_PATH, 0, err);
	if (fd < 0)
		return fd;
	int r = mount_on_fd(NULL, fd, NULL, m->propagation, NULL);
	if (r < 0)
		return husk_err_sys(err, r, "set propagation");
	return 0;
}

static const struct jail_mount *spec_mount_at(const struct jail_spec *spec, const char *dest)
{
	const struct jail_mount *found = NULL;
	for (size_t i = 0; i < spec->n_mounts; i++)
		if (dest_is(spec->mounts[i].destination, dest))
			found = &spec->mounts[i];
	return found;
}

/* ---- /dev ---- */

static const struct {
	const char *path;
	unsigned major, minor;
} default_devices[] = {
	{ "/dev/null", 1, 3 },	 { "/dev/zero", 1, 5 },	  { "/dev/full", 1, 7 },
	{ "/dev/tty", 5, 0 },	 { "/dev/random", 1, 8 }, { "/dev/urandom", 1, 9 },
};

/* Splits an absolute path into a malloc'd parent and a pointer to the last
 * name in it; the name must be a plain name. */
static int split_path(const char *path, char **parent, const char **name)
{
	*parent = NULL;
	size_t n = strlen(path);
	while (n > 1 && path[n - 1] == '/')
		n--;
	char *dir = strndup(path, n);
	if (!dir)
		return -ENOMEM;
	char *slash = strrchr(dir, '/');
	if (!slash || !slash[1] || !strcmp(slash + 1, ".") || !strcmp(slash + 1, "..")) {
		free(dir);
		return -EINVAL;
	}
	/* The name moves after the parent's terminating NUL. */
	size_t nlen = strlen(slash + 1);
	char *out = malloc(n + nlen + 3);
	if (!out) {
		free(dir);
		return -ENOMEM;
	}
	size_t plen = slash == dir ? 1 : (size_t)(slash - dir);
	memcpy(out, dir, plen);
	out[plen] = '\0';
	memcpy(out + plen + 1, slash + 1, nlen + 1);
	free(dir);
	*parent = out;
	*name = out + plen + 1;
	return 0;
}

static int make_device(int root_fd, const struct jail_device *d, bool chown_it,
		       struct husk_err *err)
{
	mode_t type;
	switch (d->type) {
	case 'c':
	case 'u':
		type = S_IFCHR;
		break;
	case 'b':
		type = S_IFBLK;
		break;
	case 'p':
		type = S_IFIFO;
		break;
	default:
		return husk_err_set(err, -EINVAL, "type '%c': expected c, b, u or p", d->type);
	}
	if (type != S_IFIFO &&
	    (d->major < 0 || d->minor < 0 || d->major > 0xfff || d->minor > 0xfffff))
		return husk_err_set(err, -EINVAL, "major %lld minor %lld: out of range",
				    (long long)d->major, (long long)d->minor);
	if (!d->path || d->path[0] != '/')
		return husk_err_set(err, -EINVAL, "path must be absolute");
	mode_t perm = d->has_mode ? (mode_t)(d->file_mode & 07777) : 0666;

	_cleanup_free_ char *parent = NULL;
	const char *name;
	int r = split_path(d->path, &parent, &name);
	if (r < 0)
		return husk_err_sys(err, r, "path %s", d->path);
	_cleanup_fd_ int dir = -1;
	r = jail_mkdir_all_in_root(root_fd, parent, 0755, &dir, err);
	if (r < 0)
		return r;

	dev_t dev = type == S_IFIFO ? 0 : makedev((unsigned)d->major, (unsigned)d->minor);
	r = mknodat(dir, name, type | perm, dev) < 0 ? -errno : 0;
	if (r == -EEXIST) {
		if (unlinkat(dir, name, 0) < 0)
			return husk_err_sys(err, -errno, "replace %s", d->path);
		r = mknodat(dir, name, type | perm, dev) < 0 ? -errno : 0;
	}
	char p[FD_PATH_MAX];
	if (r == -EPERM && type != S_IFIFO) {
		/* No CAP_MKNOD over the initial user namespace: bind the host's
		 * node onto an empty file instead, as runc does. */
		int f = openat(dir, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0);
		if (f < 0)
			return husk_err_sys(err, -errno, "create %s", d->path);
		close(f);
		_cleanup_fd_ int fd = openat(dir, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return husk_err_sys(err, -errno, "open %s", d->path);
		r = mount_on_fd(d->path, fd, NULL, MS_BIND, NULL);
		if (r < 0)
			return husk_err_sys(err, r, "mknod refused, bind host %s", d->path);
		return 0;
	}
	if (r < 0)
		return husk_err_sys(err, r, "mknod %s", d->path);

	_cleanup_fd_ int fd = openat(dir, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return husk_err_sys(err, -errno, "open %s", d->path);
	/* mknod applied the umask; the spec's mode is exact. */
	if (chmod(fd_path(p, fd), perm) < 0)
		return husk_err_sys(err, -errno, "chmod %s %04o", d->path, (unsigned)perm);
	if (chown_it && (d->has_uid || d->has_gid) &&
	    fchownat(fd, "", d->has_uid ? d->uid : (uid_t)-1, d->has_gid ? d->gid : (gid_t)-1,
		     AT_EMPTY_PATH) < 0)
		return husk_err_sys(err, -errno, "chown %s", d->path);
	return 0;
}

static int mount_tmpfs_at(int root_fd, const char *dest, unsigned long flags, const char *data,
			  struct husk_err *err)
{
	_cleanup_fd_ int fd = -1;
	int r = jail_mkdir_all_in_root(root_fd, dest, 0755, &fd, err);
	if (r < 0)
		return r;
	r = mount_on_fd("tmpfs", fd, "tmpfs", flags, data);
	if (r < 0)
		return husk_err_sys(err, r, "%s: mount tmpfs", dest);
	return 0;
}

static int setup_dev(int root_fd, const struct jail_spec *spec, struct husk_err *err)
{
	int r;
	for (size_t i = 0; i < ARRAY_SIZE(default_devices); i++) {
		bool in_spec = false;
		for (size_t j = 0; j < spec->n_devices; j++)
			if (dest_is(spec->devices[j].path, default_devices[i].path))
				in_spec = true;
		if (in_spec)
			continue;
		struct jail_device d = {
			.type = 'c',
			.path = (char *)default_devices[i].path,
			.major = default_devices[i].major,
			.minor = default_devices[i].minor,
		};
		if ((r = make_device(root_fd, &d, false, err)) < 0) {
			husk_err_wrap(err, "%s", default_devices[i].path);
			return r;
		}
	}
	for (size_t i = 0; i < spec->n_devices; i++) {
		if ((r = make_device(root_fd, &spec->devices[i], true, err)) < 0) {
			husk_err_wrap(err, "devices[%zu] (%s)", i,
				      spec->devices[i].path ? spec->devices[i].path : "");
			return r;
		}
	}

	if (!spec_mount_at(spec, "/dev/pts")) {
		_cleanup_fd_ int pts = -1;
		if ((r = jail_mkdir_all_in_root(root_fd, "/dev/pts", 0755, &pts, err)) < 0)
			return r;
		r = mount_on_fd("devpts", pts, "devpts", MS_NOSUID | MS_NOEXEC,
				"newinstance,ptmxmode=0666,mode=0620,gid=5");
		if (r == -EINVAL) /* gid 5 is not mapped in this user namespace */
			r = mount_on_fd("devpts", pts, "devpts", MS_NOSUID | MS_NOEXEC,
					"newinstance,ptmxmode=0666,mode=0620");
		if (r < 0)
			return husk_err_sys(err, r, "/dev/pts: mount devpts");
	}

	_cleanup_fd_ int dev = -1;
	if ((r = jail_mkdir_all_in_root(root_fd, "/dev", 0755, &dev, err)) < 0)
		return r;
	/* The pts instance's own ptmx, not a host node. */
	if (unlinkat(dev, "ptmx", 0) < 0 && errno != ENOENT)
		return husk_err_sys(err, -errno, "/dev/ptmx: unlink");
	if (symlinkat("pts/ptmx", dev, "ptmx") < 0)
		return husk_err_sys(err, -errno, "/dev/ptmx: symlink");

	if (!spec_mount_at(spec, "/dev/shm") &&
	    (r = mount_tmpfs_at(root_fd, "/dev/shm", MS_NOSUID | MS_NODEV | MS_NOEXEC,
				"mode=1777,size=65536k", err)) < 0)
		return r;

	const struct jail_mount *proc = spec_mount_at(spec, "/proc");
	bool has_proc = proc && proc->type && !strcmp(proc->type, "proc");
	static const struct {
		const char *name, *target;
	} links[] = {
		{ "fd", "/proc/self/fd" },	 { "stdin", "/proc/self/fd/0" },
		{ "stdout", "/proc/self/fd/1" }, { "stderr", "/proc/self/fd/2" },
		{ "core", "/proc/kcore" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(links); i++) {
		if (!has_proc && !strcmp(links[i].name, "core"))
			continue;
		if (symlinkat(links[i].target, dev, links[i].name) < 0 && errno != EEXIST)
			return husk_err_sys(err, -errno, "/dev/%s: symlink", links[i].name);
	}
	return 0;
}

/* ---- the root switch ---- */

/* pivot_root(2) refuses a new root whose parent mount is shared; runc
 * makes the mount holding root.path private for that. */
static int make_parent_private(const char *root, char *mi, struct husk_err *err)
{
	if (!mi)
		return 0;
	char *cur = mi;
	struct mountinfo_entry e;
	size_t best_len = 0;
	bool best_shared = false;
	char best[PATH_MAX] = "";
	while (mountinfo_next(&cur, &e)) {
		size_t n = strlen(e.mount_point);
		if (path_under(root, e.mount_point) && n >= best_len && n < sizeof(best)) {
			best_len = n;
			best_shared = e.shared;
			memcpy(best, e.mount_point, n + 1);
		}
	}
	if (best_shared && mount(NULL, best, NULL, MS_PRIVATE, NULL) < 0)
		return husk_err_sys(err, -errno, "make %s private", best);
	return 0;
}

static int pivot(int root_fd, struct husk_err *err)
{
	_cleanup_fd_ int old = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (old < 0)
		return husk_err_sys(err, -errno, "open /");
	if (fchdir(root_fd) < 0)
		return husk_err_sys(err, -errno, "chdir to root.path");
	/* EINVAL, before anything changed: "/" has no parent mount or is
	 * not a mount root (a chroot); 1 tells the caller to use MS_MOVE. */
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		return errno == EINVAL ? 1 : husk_err_sys(err, -errno, "pivot_root");
	/* The old root now sits on top of the new one at "/". Make it a slave
	 * first, so that detaching it does not propagate anywhere. */
	if (fchdir(old) < 0)
		return husk_err_sys(err, -errno, "chdir to the old root");
	if (mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL) < 0)
		return husk_err_sys(err, -errno, "make the old root a slave");
	if (umount2(".", MNT_DETACH) < 0)
		return husk_err_sys(err, -errno, "detach the old root");
	if (chdir("/") < 0)
		return husk_err_sys(err, -errno, "chdir /");
	return 0;
}

/* With chroot the mounts outside root.path stay in the namespace, and
 * the kernel lets a user namespace mount proc or sysfs only where a full
 * instance is visible; hide the full proc and sysfs mounts outside the
 * rootfs so they cannot vouch for the container, as runc's msMoveRoot. */
static int hide_outer_proc_sys(const char *root, struct husk_err *err)
{
	_cleanup_free_ char *mi = NULL;
	if (read_mountinfo(&mi) < 0)
		return 0;
	char *cur = mi;
	struct mountinfo_entry e;
	while (mountinfo_next(&cur, &e)) {
		if (strcmp(e.root, "/") || (strcmp(e.fstype, "proc") && strcmp(e.fstype, "sysfs")) ||
		    path_under(e.mount_point, root))
			continue;
		if (mount(NULL, e.mount_point, NULL, MS_SLAVE | MS_REC, NULL) < 0) {
			if (errno == ENOENT) /* gone with a parent detached before */
				continue;
			return husk_err_sys(err, -errno, "make %s a slave", e.mount_point);
		}
		if (umount2(e.mount_point, MNT_DETACH) == 0)
			continue;
		if (errno != EINVAL && errno != EPERM)
			return husk_err_sys(err, -errno, "detach %s", e.mount_point);
		if (mount("tmpfs", e.mount_point, "tmpfs", MS_RDONLY, NULL) < 0)
			return husk_err_sys(err, -errno, "cover %s", e.mount_point);
	}
	return 0;
}

static int move_root(const char *root, int root_fd, struct husk_err *err)
{
	int r = hide_outer_proc_sys(root, err);
	if (r < 0)
		return r;
	if (fchdir(root_fd) < 0)
		return husk_err_sys(err, -errno, "chdir to root.path");
	if (mount(root, "/", NULL, MS_MOVE, NULL) < 0)
		return husk_err_sys(err, -errno, "move %s onto /", root);
	if (chroot(".") < 0)
		return husk_err_sys(err, -errno, "chroot");
	if (chdir("/") < 0)
		return husk_err_sys(err, -errno, "chdir /");
	return 0;
}

static int switch_root(const char *root, int root_fd, bool initramfs, struct husk_err *err)
{
	if (!initramfs) {
		int r = pivot(root_fd, err);
		if (r <= 0)
			return r;
	}
	return move_root(root, root_fd, err);
}

/* ---- after the switch ---- */

static int mask_paths(const struct jail_spec *spec, struct husk_err *err)
{
	for (size_t i = 0; i < spec->n_masked_paths; i++) {
		const char *p = spec->masked_paths[i];
		struct stat st;
		if (stat(p, &st) < 0) {
			if (errno == ENOENT || errno == ENOTDIR)
				continue;
			return husk_err_sys(err, -errno, "maskedPaths[%zu] (%s): stat", i, p);
		}
		int r;
		if (S_ISDIR(st.st_mode))
			r = mount("tmpfs", p, "tmpfs", MS_RDONLY, NULL);
		else
			r = mount("/dev/null", p, NULL, MS_BIND, NULL);
		if (r < 0)
			return husk_err_sys(err, -errno, "maskedPaths[%zu] (%s): mount", i, p);
	}
	return 0;
}

static int readonly_paths(const struct jail_spec *spec, struct husk_err *err)
{
	for (size_t i = 0; i < spec->n_readonly_paths; i++) {
		const char *p = spec->readonly_paths[i];
		if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) < 0) {
			if (errno == ENOENT || errno == ENOTDIR)
				continue;
			return husk_err_sys(err, -errno, "readonlyPaths[%zu] (%s): bind", i, p);
		}
		int r = remount_bind(p, MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, 0);
		if (r < 0)
			return husk_err_sys(err, r, "readonlyPaths[%zu] (%s): remount ro", i, p);
	}
	return 0;
}

static int readonly_root(struct husk_err *err)
{
	struct statvfs sv;
	if (statvfs("/", &sv) < 0)
		return husk_err_sys(err, -errno, "root.readonly: statvfs /");
	/* Keep nosuid & co. the rootfs mount has; only add ro. */
	unsigned long keep = statvfs_to_ms(sv.f_flag) & (MS_NOSUID | MS_NODEV | MS_NOEXEC);
	int r = remount_bind("/", MS_RDONLY | keep, 0);
	if (r < 0)
		return husk_err_sys(err, r, "root.readonly: remount / read-only");
	return 0;
}

/* ---- the whole sequence ---- */

int jail_rootfs_enter(const struct jail_spec *spec,
		      int (*before_switch)(void *data, struct husk_err *err),
		      int (*after_switch)(void *data, struct husk_err *err), void *data,
		      struct husk_err *err)
{
	const char *root_path = spec->root_path;
	int r;
	if (!root_path || root_path[0] != '/')
		return husk_err_set(err, -EINVAL, "root.path %s: must be an absolute path",
				    root_path ? root_path : "(missing)");
	struct stat st;
	if (stat(root_path, &st) < 0)
		return husk_err_sys(err, -errno, "root.path %s", root_path);
	if (!S_ISDIR(st.st_mode))
		return husk_err_set(err, -ENOTDIR, "root.path %s: not a directory", root_path);
	_cleanup_free_ char *root = realpath(root_path, NULL);
	if (!root)
		return husk_err_sys(err, -errno, "root.path %s", root_path);
	/* Mounts are made through /proc/self/fd links. */
	if (access("/proc/self/fd", X_OK) < 0)
		return husk_err_sys(err, -errno, "/proc/self/fd (proc must be mounted at /proc)");

	unsigned long prop = spec->rootfs_propagation ? spec->rootfs_propagation : MS_SLAVE | MS_REC;
	if (mount(NULL, "/", NULL, prop, NULL) < 0)
		return husk_err_sys(err, -errno, "rootfsPropagation: set propagation of /");
	/* One read of mountinfo serves both questions (mounts made below do
	 * not change the answers): which mount holds root, and is "/" the
	 * initramfs. */
	_cleanup_free_ char *mi = NULL;
	if (read_mountinfo(&mi) < 0)
		mi = NULL;
	bool initramfs = mi ? jail_mountinfo_root_is_initial(mi) : jail_root_is_initramfs();
	if ((r = make_parent_private(root, mi, err)) < 0)
		return r;
	if (mount(root, root, NULL, MS_BIND | MS_REC, NULL) < 0)
		return husk_err_sys(err, -errno, "root.path %s: bind onto itself", root_path);
	_cleanup_fd_ int root_fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root_fd < 0)
		return husk_err_sys(err, -errno, "root.path %s", root_path);

	/* Before the spec's mounts, so that those under /dev land in it. */
	const struct jail_mount *dev = spec_mount_at(spec, "/dev");
	if (!dev && (r = mount_tmpfs_at(root_fd, "/dev", MS_NOSUID | MS_STRICTATIME,
					"mode=755,size=65536k", err)) < 0)
		return r;

	for (size_t i = 0; i < spec->n_mounts; i++) {
		const struct jail_mount *m = &spec->mounts[i];
		r = mount_entry(root_fd, m, err);
		if (r >= 0 && m->propagation)
			r = set_propagation(root_fd, m, err);
		if (r < 0) {
			husk_err_wrap(err, "mounts[%zu] (%s on %s)", i, mount_type(m),
				      m->destination ? m->destination : "");
			return r;
		}
	}
	/* A /dev bound from elsewhere comes with its nodes. */
	if ((!dev || !is_bind(dev)) && (r = setup_dev(root_fd, spec, err)) < 0)
		return r;

	if (before_switch) {
		r = before_switch(data, err);
		if (r < 0) {
			if (err && err->code != r)
				husk_err_sys(err, r, "before the root switch");
			return r;
		}
	}

	if ((r = switch_root(root, root_fd, initramfs, err)) < 0) {
		husk_err_wrap(err, "root.path %s: switch root", root_path);
		return r;
	}
	if (after_switch && (r = after_switch(data, err)) < 0)
		return r;
	if ((r = mask_paths(spec, err)) < 0 || (r = readonly_paths(spec, err)) < 0)
		return r;
	if (spec->rootfs_propagation && mount(NULL, "/", NULL, spec->rootfs_propagation, NULL) < 0)
		return husk_err_sys(err, -errno, "rootfsPropagation: set propagation of the new /");
	if (spec->root_readonly && (r = readonly_root(err)) < 0)
		return r;
	return 0;
}
