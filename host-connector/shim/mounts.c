/* A container's host mounts through the VM's shared directory (mounts.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <libmount/libmount.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "husk/cleanup.h"
#include "husk/file.h"
#include "husk/path.h"
#include "mounts.h"
#include "shim.h"

/* ---- undoing: by what is mounted, so that it works after a crash too ---- */

static bool under(const char *path, const char *dir)
{
	size_t n = strlen(dir);
	return strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

/* Unmounts everything at or under `dir`, newest first (children before
 * their parents), until nothing is left there. */
static void unmount_under(const char *dir)
{
	for (int pass = 0; pass < 8; pass++) {
		struct libmnt_table *tb = mnt_new_table_from_file("/proc/self/mountinfo");
		struct libmnt_iter *it = mnt_new_iter(MNT_ITER_BACKWARD);
		struct libmnt_fs *fs;
		unsigned found = 0;
		while (tb && it && mnt_table_next_fs(tb, it, &fs) == 0) {
			const char *t = mnt_fs_get_target(fs);
			if (t && under(t, dir)) {
				found++;
				if (umount2(t, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
					shim_log("unmount %s: %s", t, strerror(errno));
			}
		}
		mnt_free_iter(it);
		mnt_unref_table(tb);
		if (!found)
			return;
	}
}

/* Whether `path` is there and not the root of a mount. */
static bool removable(const char *path)
{
	struct statx stx;
	return statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, 0, &stx) == 0 &&
	       !(stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT &&
		 stx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
}

/* Removes what mounts_prepare made in `dir` (a container's entries):
 * empty directories and empty files. Never anything still mounted (rmdir
 * and unlink refuse a mount point) or with something in it. */
static void remove_entries(const char *dir)
{
	/* A mount that would not go: what is in it is someone else's. */
	if (!removable(dir))
		return;
	_cleanup_closedir_ DIR *d = opendir(dir);
	for (struct dirent *e; d && (e = readdir(d));) {
		struct stat st;
		if (e->d_name[0] == '.' || fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (S_ISDIR(st.st_mode))
			unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR);
		else if (S_ISREG(st.st_mode) && st.st_size == 0)
			unlinkat(dirfd(d), e->d_name, 0);
	}
	rmdir(dir);
}

static void remove_share(const char *root)
{
	unmount_under(root);
	if (!removable(root))
		return;
	_cleanup_closedir_ DIR *d = opendir(root);
	for (struct dirent *e; d && (e = readdir(d));) {
		char sub[PATH_MAX];
		if (e->d_name[0] == '.' ||
		    husk_path_fmt(sub, sizeof(sub), "%s/%s", root, e->d_name) < 0)
			continue;
		remove_entries(sub);
	}
	if (rmdir(root) < 0 && errno != ENOENT)
		shim_log("removing the shared directory %s: %s", root, strerror(errno));
}

/* The share, its lock file, and <state dir>/shares when that is empty
 * now. */
static void remove_share_and_parent(const char *root)
{
	remove_share(root);
	char parent[PATH_MAX];
	if (husk_path_fmt(parent, sizeof(parent), "%s.lock", root) == 0)
		unlink(parent);
	snprintf(parent, sizeof(parent), "%s", root);
	char *slash = strrchr(parent, '/');
	if (slash && slash != parent) {
		*slash = '\0';
		rmdir(parent); /* fails while another VM's share is there */
	}
}

static void entries_dir(const struct ctr *c, char *out, size_t len)
{
	husk_path_fmt(out, len, "%s/%s", c->s->vm.share_dir, c->id);
}

void mounts_release(struct ctr *c)
{
	if (!c->host_mounts)
		return;
	char dir[PATH_MAX];
	entries_dir(c, dir, sizeof(dir));
	unmount_under(dir);
	remove_entries(dir);
	c->host_mounts = 0;
}

/* <share>.lock: flock'ed by the shim for the share's life, so that a
 * `delete` (containerd runs it for a pod's sandbox whose shim lives on,
 * and for each container) touches a share only when nobody holds it. */
static int lock_path(const char *root, char *out, size_t len)
{
	return husk_path_fmt(out, len, "%s.lock", root);
}

void mounts_share_remove(struct shim *s)
{
	if (!s->vm.share_made)
		return;
	remove_share_and_parent(s->vm.share_dir);
	if (s->vm.share_lock_fd >= 0)
		close(s->vm.share_lock_fd);
	s->vm.share_lock_fd = -1;
	s->vm.share_made = false;
}

void mounts_cleanup_record(const char *bundle)
{
	char path[PATH_MAX];
	_cleanup_free_ char *dir = NULL;
	struct husk_err err = { 0 };
	if (!bundle || husk_path_fmt(path, sizeof(path), "%s/" SHIM_SHARE_RECORD, bundle) < 0 ||
	    husk_read_file(path, PATH_MAX, &dir, NULL, &err) < 0)
		return;
	dir[strcspn(dir, "\n")] = '\0';
	char lock[PATH_MAX];
	if (dir[0] != '/' || lock_path(dir, lock, sizeof(lock)) < 0)
		return;
	_cleanup_fd_ int fd = open(lock, O_RDWR | O_CLOEXEC);
	if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) < 0)
		return; /* a live shim holds it */
	remove_share_and_parent(dir);
}

/* ---- binding ---- */

/* Whether spec mount `m` is a bind mount, and whether recursive. */
static bool is_bind(json_object *m, bool *rec, bool *ro)
{
	json_object *t, *opts;
	bool bind = json_object_object_get_ex(m, "type", &t) &&
		    json_object_is_type(t, json_type_string) &&
		    strcmp(json_object_get_string(t), "bind") == 0;
	*rec = *ro = false;
	if (json_object_object_get_ex(m, "options", &opts) && json_object_is_type(opts, json_type_array))
		for (size_t k = 0; k < json_object_array_length(opts); k++) {
			const char *o = json_object_get_string(json_object_array_get_idx(opts, k));
			if (!o)
				continue;
			if (strcmp(o, "rbind") == 0)
				bind = *rec = true;
			else if (strcmp(o, "bind") == 0)
				bind = true;
			else if (strcmp(o, "ro") == 0)
				*ro = true;
			else if (strcmp(o, "rw") == 0)
				*ro = false;
		}
	return bind;
}

/* The share's root, a bind mount of itself in a peer group of its own
 * (private first, then shared): virtiofsd's slave copy then receives
 * every later entry, and nothing of it propagates elsewhere. */
static int share_make(struct shim *s, const char *owner_id, struct husk_err *err)
{
	if (s->vm.share_made)
		return 0;
	char state[PATH_MAX], name[64], root[PATH_MAX];
	if (s->cfg.state_dir)
		snprintf(state, sizeof(state), "%s", s->cfg.state_dir);
	else
		husk_default_state_dir(state, sizeof(state));
	shim_vm_name(s->opt.namespace_, owner_id, name, sizeof(name));
	if (husk_path_fmt(root, sizeof(root), "%s/shares/%s", state, name) < 0)
		return husk_err_set(err, -ENAMETOOLONG, "shared directory under %s: path too long",
				    state);
	char lock[PATH_MAX], parent[PATH_MAX];
	int rc = husk_path_fmt(parent, sizeof(parent), "%s/shares", state) < 0
			 ? husk_err_set(err, -ENAMETOOLONG, "%s/shares: path too long", state)
			 : husk_mkdir_p(parent, 0700, err);
	if (rc < 0)
		return rc;
	if (lock_path(root, lock, sizeof(lock)) < 0)
		return husk_err_set(err, -ENAMETOOLONG, "%s.lock: path too long", root);
	s->vm.share_lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (s->vm.share_lock_fd < 0 || flock(s->vm.share_lock_fd, LOCK_EX | LOCK_NB) < 0) {
		rc = husk_err_sys(err, -errno, "shared directory %s: lock %s", root, lock);
		if (s->vm.share_lock_fd >= 0)
			close(s->vm.share_lock_fd);
		s->vm.share_lock_fd = -1;
		return rc;
	}
	/* What a shim that died left. */
	remove_share(root);
	if ((rc = husk_mkdir_p(root, 0700, err)) < 0)
		goto fail;
	if (mount(root, root, NULL, MS_BIND, NULL) < 0 ||
	    mount(NULL, root, NULL, MS_PRIVATE, NULL) < 0 ||
	    mount(NULL, root, NULL, MS_SHARED, NULL) < 0) {
		rc = husk_err_sys(err, -errno, "shared directory %s: bind mount", root);
		remove_share(root);
		goto fail;
	}
	snprintf(s->vm.share_dir, sizeof(s->vm.share_dir), "%s", root);
	s->vm.share_made = true;
	return 0;
fail:
	unlink(lock);
	close(s->vm.share_lock_fd);
	s->vm.share_lock_fd = -1;
	return rc;
}

static void record(const struct ctr *c, const char *what)
{
	char path[PATH_MAX];
	if (husk_path_fmt(path, sizeof(path), "%s/" SHIM_SHARE_RECORD, c->bundle) < 0)
		return;
	FILE *f = fopen(path, "we");
	if (!f || fprintf(f, "%s\n", what) < 0 || fclose(f) != 0) {
		shim_log("writing %s: %s", path, strerror(errno));
		if (f)
			fclose(f);
	}
}

/* Binds host `src` at <dir>/<i>: a directory or an empty file to bind
 * onto, as the source is; read-only where asked. */
static int bind_entry(const char *dir, size_t i, const char *src, bool rec, bool ro,
		      struct husk_err *err)
{
	char at[PATH_MAX];
	struct stat st;
	if (husk_path_fmt(at, sizeof(at), "%s/%zu", dir, i) < 0)
		return husk_err_set(err, -ENAMETOOLONG, "%s/%zu: path too long", dir, i);
	if (stat(src, &st) < 0)
		return husk_err_sys(err, -errno, "source %s", src);
	if (S_ISDIR(st.st_mode)) {
		if (mkdir(at, 0700) < 0)
			return husk_err_sys(err, -errno, "mkdir %s", at);
	} else {
		int fd = open(at, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0)
			return husk_err_sys(err, -errno, "create %s", at);
		close(fd);
	}
	/* A plain bind of a source on a shared mount (systemd's / is) would
	 * join the source's peer groups: unmounting the entry's submounts
	 * later would unmount the host's own (a hostPath /dev losing
	 * /dev/pts). So: a detached copy, made a slave (it still sees the
	 * host's changes, and sends nothing back), read-only where asked,
	 * then attached. */
	_cleanup_fd_ int fd =
		open_tree(AT_FDCWD, src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (rec ? AT_RECURSIVE : 0));
	if (fd < 0)
		return husk_err_sys(err, -errno, "bind %s: open_tree", src);
	struct mount_attr slave = { .propagation = MS_SLAVE };
	if (mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &slave, sizeof(slave)) < 0)
		return husk_err_sys(err, -errno, "bind %s: make it a slave", src);
	struct mount_attr rdonly = { .attr_set = MOUNT_ATTR_RDONLY };
	if (ro && mount_setattr(fd, "", AT_EMPTY_PATH, &rdonly, sizeof(rdonly)) < 0)
		return husk_err_sys(err, -errno, "bind %s: make it read-only", src);
	if (move_mount(fd, "", AT_FDCWD, at, MOVE_MOUNT_F_EMPTY_PATH) < 0)
		return husk_err_sys(err, -errno, "bind %s on %s", src, at);
	return 0;
}

int mounts_prepare(struct shim *s, struct ctr *c, char **spec_json, struct husk_share *share,
		   struct husk_err *err)
{
	*share = (struct husk_share){ 0 };
	json_object *spec = json_tokener_parse(*spec_json), *mounts;
	if (!spec)
		return husk_err_set(err, -EINVAL, "config.json: not valid JSON");
	int rc = 0;
	char dir[PATH_MAX] = "";
	if (!json_object_object_get_ex(spec, "mounts", &mounts) ||
	    !json_object_is_type(mounts, json_type_array))
		goto out;
	const char *owner = c->role == SHIM_POD_CONTAINER && s->vm.owner ? s->vm.owner->id : c->id;
	for (size_t i = 0; i < json_object_array_length(mounts); i++) {
		json_object *m = json_object_array_get_idx(mounts, i), *src, *dst;
		bool rec, ro;
		if (!json_object_is_type(m, json_type_object) || !is_bind(m, &rec, &ro) ||
		    !json_object_object_get_ex(m, "source", &src) ||
		    !json_object_is_type(src, json_type_string))
			continue;
		const char *source = json_object_get_string(src);
		const char *dest = json_object_object_get_ex(m, "destination", &dst)
					   ? json_object_get_string(dst)
					   : "?";
		if (source[0] != '/') {
			rc = husk_err_set(err, -EINVAL,
					  "mounts[%zu] (bind on %s): source \"%s\" is not an absolute "
					  "host path",
					  i, dest, source);
			break;
		}
		if (!dir[0]) {
			if ((rc = share_make(s, owner, err)) < 0)
				break;
			entries_dir(c, dir, sizeof(dir));
			unmount_under(dir);
			remove_entries(dir);
			if (mkdir(dir, 0700) < 0) {
				rc = husk_err_sys(err, -errno, "mkdir %s", dir);
				break;
			}
			c->host_mounts = 1; /* from here on, mounts_release undoes */
			/* The share, from every container: whichever `delete`
			 * finds the VM gone cleans all of it. */
			record(c, s->vm.share_dir);
		}
		if ((rc = bind_entry(dir, i, source, rec, ro, err)) < 0) {
			husk_err_wrap(err, "mounts[%zu] (bind on %s)", i, dest);
			break;
		}
		char rel[128];
		snprintf(rel, sizeof(rel), "%s/%zu", c->id, i);
		json_object_object_add(m, "source", json_object_new_string(rel));
	}
	if (rc == 0 && dir[0]) {
		char *out = strdup(json_object_to_json_string_ext(spec, JSON_C_TO_STRING_PLAIN));
		if (!out) {
			rc = husk_err_set(err, -ENOMEM, "config.json: out of memory");
		} else {
			free(*spec_json);
			*spec_json = out;
			*share = (struct husk_share){ .dir = s->vm.share_dir, .tag = SHIM_SHARE_TAG };
		}
	}
	if (rc < 0)
		mounts_release(c);
out:
	json_object_put(spec);
	return rc;
}
