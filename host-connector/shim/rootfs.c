/* containerd's rootfs made into the container's disk image (rootfs.h). */
#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>

#include "husk/path.h"
#include "mounts.h"
#include "rootfs.h"
#include "shim.h"

static void mount_free(struct rootfs_mount *m)
{
	free(m->type);
	free(m->source);
	for (size_t i = 0; i < m->n_options; i++)
		free(m->options[i]);
	free(m->options);
}

void rootfs_src_free(struct rootfs_src *s)
{
	for (size_t i = 0; i < s->n_mounts; i++)
		mount_free(&s->mounts[i]);
	free(s->mounts);
	free(s->target);
	free(s->dir);
	*s = (struct rootfs_src){ 0 };
}

static int copy_mounts(const Containerd__Task__V2__CreateTaskRequest *r, struct rootfs_src *out)
{
	out->mounts = calloc(r->n_rootfs, sizeof(*out->mounts));
	if (!out->mounts)
		return -ENOMEM;
	for (size_t i = 0; i < r->n_rootfs; i++) {
		const Containerd__Types__Mount *m = r->rootfs[i];
		struct rootfs_mount *d = &out->mounts[out->n_mounts++];
		d->type = strdup(m->type);
		d->source = strdup(m->source);
		d->options = calloc(m->n_options ? m->n_options : 1, sizeof(char *));
		if (!d->type || !d->source || !d->options)
			return -ENOMEM;
		for (size_t j = 0; j < m->n_options; j++) {
			if (!(d->options[j] = strdup(m->options[j])))
				return -ENOMEM;
			d->n_options++;
		}
	}
	return 0;
}

int rootfs_src_from_request(const Containerd__Task__V2__CreateTaskRequest *r, const char *spec,
			    struct rootfs_src *out, struct husk_err *err)
{
	char path[PATH_MAX];
	*out = (struct rootfs_src){ 0 };
	if (r->n_rootfs) {
		if (husk_path_fmt(path, sizeof(path), "%s/rootfs", r->bundle) < 0)
			return husk_err_set(err, -ENAMETOOLONG, "bundle %s: path too long", r->bundle);
		if (copy_mounts(r, out) < 0 || !(out->target = strdup(path)) ||
		    !(out->dir = strdup(path))) {
			rootfs_src_free(out);
			return husk_err_set(err, -ENOMEM, "rootfs mounts: out of memory");
		}
		return 0;
	}
	struct json_object *o = json_tokener_parse(spec), *root, *jp;
	if (!o)
		return husk_err_set(err, -EINVAL, "%s/config.json: not JSON", r->bundle);
	int rc = 0;
	if (!json_object_object_get_ex(o, "root", &root) ||
	    !json_object_object_get_ex(root, "path", &jp) || !json_object_is_type(jp, json_type_string)) {
		rc = husk_err_set(err, -EINVAL, "%s/config.json: no root.path and no rootfs mounts",
				  r->bundle);
	} else {
		const char *p = json_object_get_string(jp);
		rc = p[0] == '/' ? husk_path_fmt(path, sizeof(path), "%s", p)
				 : husk_path_fmt(path, sizeof(path), "%s/%s", r->bundle, p);
		if (rc < 0)
			husk_err_set(err, rc, "root.path %s: too long", p);
		else if (!(out->dir = strdup(path)))
			rc = husk_err_set(err, -ENOMEM, "root.path: out of memory");
	}
	json_object_put(o);
	return rc;
}

/* containerd's mounts onto the target, as containerd's mount.All does. */
static int mount_all(struct ctr *c, const struct rootfs_src *src, struct husk_err *err)
{
	for (size_t i = 0; i < src->n_mounts; i++) {
		const struct rootfs_mount *m = &src->mounts[i];
		unsigned long flags = 0;
		char data[4096] = "";
		size_t dl = 0;
		for (size_t j = 0; j < m->n_options; j++) {
			const char *o = m->options[j];
			if (strcmp(o, "ro") == 0)
				flags |= MS_RDONLY;
			else if (strcmp(o, "rw") == 0)
				;
			else if (strcmp(o, "bind") == 0)
				flags |= MS_BIND;
			else if (strcmp(o, "rbind") == 0)
				flags |= MS_BIND | MS_REC;
			else if (strcmp(o, "nosuid") == 0)
				flags |= MS_NOSUID;
			else if (strcmp(o, "nodev") == 0)
				flags |= MS_NODEV;
			else if (strcmp(o, "noexec") == 0)
				flags |= MS_NOEXEC;
			else {
				int n = snprintf(data + dl, sizeof(data) - dl, "%s%s", dl ? "," : "", o);
				if (n < 0 || (size_t)n >= sizeof(data) - dl)
					return husk_err_set(err, -E2BIG, "rootfs mount %zu: options too long", i);
				dl += (size_t)n;
			}
		}
		const char *type = strcmp(m->type, "bind") == 0 ? NULL : m->type;
		if (mount(m->source, src->target, type, flags, dl ? data : NULL) < 0)
			return husk_err_sys(err, -errno, "mount %s (%s) on %s", m->source, m->type,
					    src->target);
		if (!c->rootfs_mount && !(c->rootfs_mount = strdup(src->target)))
			return husk_err_set(err, -ENOMEM, "rootfs mount: out of memory");
	}
	return 0;
}

static void unmount(struct ctr *c)
{
	if (c->rootfs_mount) {
		umount2(c->rootfs_mount, MNT_DETACH);
		free(c->rootfs_mount);
		c->rootfs_mount = NULL;
	}
}

int rootfs_image(struct ctr *c, const struct rootfs_src *src, const char *cache_dir,
		 char **image, struct husk_err *err)
{
	int rc = mount_all(c, src, err);
	if (rc == 0)
		rc = husk_image_from_dir_hold(cache_dir, src->dir, image, &c->image_hold, err);
	/* The image is a copy: containerd's mounts are not needed any more. */
	unmount(c);
	return rc;
}

void rootfs_release(struct ctr *c)
{
	/* Its host mounts go with its disk: the guest is done with both. */
	mounts_release(c);
	unmount(c);
	husk_image_release(c->image_hold);
	c->image_hold = -1;
}
