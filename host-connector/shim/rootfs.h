/* A container's root filesystem as the guest gets it: containerd's rootfs
 * mounts (a snapshotter's overlay or bind) or the spec's root.path, made
 * into an erofs image (or found in libhusk's cache) and held until the VM
 * no longer uses it. Building an image can take seconds: rootfs_image runs
 * on the worker thread. */
#ifndef HUSK_SHIM_ROOTFS_H
#define HUSK_SHIM_ROOTFS_H

#include <stddef.h>

#include "github.com/containerd/containerd/runtime/v2/task/shim.pb-c.h"
#include "husk/error.h"

struct ctr;

struct rootfs_mount {
	char *type, *source;
	char **options;
	size_t n_options;
};

/* Where the rootfs comes from, copied out of the Create request (which may
 * be gone before the worker gets to it). */
struct rootfs_src {
	struct rootfs_mount *mounts; /* containerd's, mounted on target */
	size_t n_mounts;
	char *target; /* <bundle>/rootfs when there are mounts */
	char *dir;    /* the directory to image: target, or the spec's root.path */
};

/* From the request's rootfs mounts, else the spec's root.path (relative
 * to the bundle). */
int rootfs_src_from_request(const Containerd__Task__V2__CreateTaskRequest *r, const char *spec,
			    struct rootfs_src *out, struct husk_err *err);
void rootfs_src_free(struct rootfs_src *s);

/* Worker thread: mounts containerd's mounts (recorded in c->rootfs_mount),
 * builds or finds the image (*image, malloc'd) and holds it
 * (c->image_hold), then unmounts: the image is a copy. */
int rootfs_image(struct ctr *c, const struct rootfs_src *src, const char *cache_dir,
		 char **image, struct husk_err *err);
/* Lets the image go (its last use recorded) and unmounts what is left.
 * Once the VM no longer uses the disk. */
void rootfs_release(struct ctr *c);

#endif
