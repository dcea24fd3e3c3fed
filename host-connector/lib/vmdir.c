/* A VM's state directory: creation, its lock, vm.json, removal. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "husk/cleanup.h"
#include "husk/path.h"
#include "vmm.h"

/* What is in `dfd`, depth first; a directory on another filesystem (a
 * mount a test agent left) is not entered. */
static void remove_tree(int dfd, dev_t dev, int depth)
{
	_cleanup_closedir_ DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return;
	}
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		struct stat st;
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub >= 0 && st.st_dev == dev && depth < 8)
				remove_tree(sub, dev, depth + 1);
			else if (sub >= 0)
				close(sub);
			unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR);
		} else {
			unlinkat(dirfd(d), e->d_name, 0);
		}
	}
}

void husk_remove_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	if (fd >= 0 && fstat(fd, &st) == 0)
		remove_tree(fd, st.st_dev, 0);
	else if (fd >= 0)
		close(fd);
	rmdir(dir);
}

/* The lock file: held (flock) by the VM's owner for its whole life, so a
 * directory whose lock can be taken belongs to nobody. */
int husk_take_lock(const char *dir, int *fd_out, struct husk_err *err)
{
	char path[PATH_MAX];
	if (husk_path_fmt(path, sizeof(path), "%s/lock", dir) < 0)
		return husk_err_set(err, -ENAMETOOLONG, "lock in %s", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return husk_err_sys(err, -errno, "open %s", path);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int r = -errno;
		close(fd);
		return r == -EWOULDBLOCK ? -EBUSY : husk_err_sys(err, r, "flock %s", path);
	}
	*fd_out = fd;
	return 0;
}

int husk_state_write(const struct husk_vm *vm, struct husk_err *err)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	if (husk_path_fmt(path, sizeof(path), "%s/vm.json", vm->dir) < 0 ||
	    husk_path_fmt(tmp, sizeof(tmp), "%s/.vm.json.tmp", vm->dir) < 0)
		return husk_err_set(err, -ENAMETOOLONG, "state file in %s", vm->dir);
	json_object *o = json_object_new_object();
	json_object_object_add(o, "name", json_object_new_string(vm->name));
	json_object_object_add(o, "vmm", json_object_new_string(vm->vmm_name));
	json_object_object_add(o, "accel", json_object_new_string(husk_accel_name(vm->accel)));
	json_object_object_add(o, "transport",
			       json_object_new_string(husk_transport_name(vm->transport)));
	json_object_object_add(o, "cid", json_object_new_int64(vm->cid));
	json_object_object_add(o, "vmm_pid", json_object_new_int(vm->vmm_pid));
	json_object_object_add(o, "vsockd_pid", json_object_new_int(vm->vsockd_pid));
	json_object_object_add(o, "hybrid_socket", json_object_new_string(vm->uds));
	json_object_object_add(o, "console_log", json_object_new_string(vm->console));
	if (vm->vmm && vm->vmm->describe)
		vm->vmm->describe(vm, o);
	int r = json_object_to_file_ext(tmp, o, JSON_C_TO_STRING_PRETTY);
	json_object_put(o);
	if (r < 0 || rename(tmp, path) < 0) {
		unlink(tmp);
		return husk_err_sys(err, -EIO, "write %s", path);
	}
	return 0;
}

static const char *get_string(json_object *o, const char *key)
{
	json_object *v;
	return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : NULL;
}

int husk_state_read(struct husk_vm *vm, struct husk_err *err)
{
	char path[PATH_MAX];
	if (husk_path_fmt(path, sizeof(path), "%s/vm.json", vm->dir) < 0)
		return husk_err_set(err, -ENAMETOOLONG, "state of VM %s", vm->name);
	json_object *o = json_object_from_file(path);
	if (!o)
		return husk_err_set(err, -ENOENT, "no VM named %s (no %s)", vm->name, path);
	const char *s;
	if ((s = get_string(o, "hybrid_socket")))
		snprintf(vm->uds, sizeof(vm->uds), "%s", s);
	if ((s = get_string(o, "console_log")))
		snprintf(vm->console, sizeof(vm->console), "%s", s);
	/* Written before libhusk had backends: QEMU's. */
	snprintf(vm->vmm_name, sizeof(vm->vmm_name), "%s", (s = get_string(o, "vmm")) ? s : "qemu");
	vm->vmm = husk_vmm_find(vm->vmm_name);
	json_object *v;
	if (json_object_object_get_ex(o, "cid", &v))
		vm->cid = (uint32_t)json_object_get_int64(v);
	if (json_object_object_get_ex(o, "vmm_pid", &v) || json_object_object_get_ex(o, "qemu_pid", &v))
		vm->vmm_pid = json_object_get_int(v);
	if (json_object_object_get_ex(o, "vsockd_pid", &v))
		vm->vsockd_pid = json_object_get_int(v);
	if ((s = get_string(o, "accel")))
		husk_accel_parse(s, &vm->accel, NULL);
	if ((s = get_string(o, "transport")))
		husk_transport_parse(s, &vm->transport, NULL);
	json_object_put(o);
	return 0;
}
