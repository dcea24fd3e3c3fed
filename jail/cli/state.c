#include "state.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "husk/cleanup.h"
#include "jail/container.h"
#include "husk/path.h"

int jail_state_check_id(const char *id, struct husk_err *err)
{
	size_t len = strlen(id);
	if (len == 0 || len > 128 || strcmp(id, ".") == 0 || strcmp(id, "..") == 0)
		return husk_err_set(err, -EINVAL, "container id \"%s\": must be 1..128 characters, not . or ..", id);
	for (const char *c = id; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		      (*c >= '0' && *c <= '9') || *c == '_' || *c == '-' || *c == '.'))
			return husk_err_set(err, -EINVAL,
					    "container id \"%s\": only letters, digits, '_', '-' and '.' are allowed",
					    id);
	return 0;
}

int jail_state_create_dir(const char *root, const char *id, char **dir, struct husk_err *err)
{
	if (mkdir(root, 0711) < 0 && errno != EEXIST)
		return husk_err_sys(err, -errno, "state root %s", root);
	if (asprintf(dir, "%s/%s", root, id) < 0)
		return husk_err_set(err, -ENOMEM, "out of memory");
	if (mkdir(*dir, 0700) < 0) {
		int r = -errno;
		free(*dir);
		*dir = NULL;
		if (r == -EEXIST)
			return husk_err_set(err, r, "container \"%s\" already exists", id);
		return husk_err_sys(err, r, "create state directory for %s", id);
	}
	return 0;
}

static void add_str(struct json_object *o, const char *key, const char *v)
{
	json_object_object_add(o, key, v ? json_object_new_string(v) : NULL);
}

int jail_state_save(const struct jail_state *st, struct husk_err *err)
{
	struct json_object *o = json_object_new_object();
	add_str(o, "id", st->id);
	add_str(o, "bundle", st->bundle);
	json_object_object_add(o, "pid", json_object_new_int(st->pid));
	json_object_object_add(o, "start_time", json_object_new_uint64(st->start_time));
	add_str(o, "created", st->created);
	add_str(o, "cgroup_mount", st->cgroup_mount);
	add_str(o, "cgroup_path", st->cgroup_path);
	char tmp[4096], path[4096];
	husk_path_fmt(tmp, sizeof(tmp), "%s/state.json.tmp", st->dir);
	husk_path_fmt(path, sizeof(path), "%s/state.json", st->dir);
	/* Write and rename: a reader never sees a half-written file. */
	int r = json_object_to_file_ext(tmp, o, JSON_C_TO_STRING_PLAIN);
	json_object_put(o);
	if (r < 0)
		return husk_err_set(err, -EIO, "write %s: %s", tmp, json_util_get_last_err());
	if (rename(tmp, path) < 0)
		return husk_err_sys(err, -errno, "rename %s", tmp);
	return 0;
}

static char *dup_field(struct json_object *o, const char *key)
{
	struct json_object *v;
	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return strdup(json_object_get_string(v));
}

int jail_state_load(const char *root, const char *id, struct jail_state **out,
		    struct husk_err *err)
{
	int r = jail_state_check_id(id, err);
	if (r < 0)
		return r;
	char path[4096];
	husk_path_fmt(path, sizeof(path), "%s/%s/state.json", root, id);
	if (access(path, F_OK) < 0)
		return husk_err_set(err, -ENOENT, "container \"%s\" does not exist", id);
	struct json_object *o = json_object_from_file(path);
	if (!o)
		return husk_err_set(err, -EIO, "read %s: %s", path, json_util_get_last_err());
	struct jail_state *st = calloc(1, sizeof(*st));
	st->id = strdup(id);
	if (asprintf(&st->dir, "%s/%s", root, id) < 0)
		st->dir = NULL;
	st->bundle = dup_field(o, "bundle");
	st->created = dup_field(o, "created");
	st->cgroup_mount = dup_field(o, "cgroup_mount");
	st->cgroup_path = dup_field(o, "cgroup_path");
	struct json_object *v;
	if (json_object_object_get_ex(o, "pid", &v))
		st->pid = json_object_get_int(v);
	if (json_object_object_get_ex(o, "start_time", &v))
		st->start_time = json_object_get_uint64(v);
	json_object_put(o);
	*out = st;
	return 0;
}

void jail_state_free(struct jail_state *st)
{
	if (!st)
		return;
	free(st->id);
	free(st->dir);
	free(st->bundle);
	free(st->created);
	free(st->cgroup_mount);
	free(st->cgroup_path);
	free(st);
}

int jail_state_remove(const char *dir, struct husk_err *err)
{
	_cleanup_fd_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return errno == ENOENT ? 0 : husk_err_sys(err, -errno, "open %s", dir);
	DIR *d = fdopendir(dup(dfd));
	if (!d)
		return husk_err_sys(err, -errno, "read %s", dir);
	for (struct dirent *e; (e = readdir(d));) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		/* Only plain files live here. */
		if (unlinkat(dfd, e->d_name, 0) < 0 && errno != ENOENT) {
			int r = -errno;
			closedir(d);
			return husk_err_sys(err, r, "remove %s/%s", dir, e->d_name);
		}
	}
	closedir(d);
	if (rmdir(dir) < 0 && errno != ENOENT)
		return husk_err_sys(err, -errno, "remove %s", dir);
	return 0;
}

bool jail_state_alive(const struct jail_state *st)
{
	if (st->pid <= 0)
		return false;
	unsigned long long t = jail_proc_start_time(st->pid);
	return t != 0 && t == st->start_time;
}

const char *jail_state_status(const struct jail_state *st)
{
	if (!jail_state_alive(st))
		return "stopped";
	char path[4096];
	husk_path_fmt(path, sizeof(path), "%s/exec.fifo", st->dir);
	if (access(path, F_OK) == 0)
		return "created";
	if (st->cgroup_mount && st->cgroup_path) {
		husk_path_fmt(path, sizeof(path), "%s/%s/cgroup.freeze", st->cgroup_mount,
			 st->cgroup_path);
		_cleanup_fd_ int fd = open(path, O_RDONLY | O_CLOEXEC);
		char c;
		if (fd >= 0 && read(fd, &c, 1) == 1 && c == '1')
			return "paused";
	}
	return "running";
}
