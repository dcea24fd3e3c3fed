/* A container's host mounts: the bind mounts of its spec whose source is a
 * host path (CRI's /etc/hosts, /etc/resolv.conf, /dev/shm,
 * /dev/termination-log, a pod's volumes; `ctr run --mount`). They reach
 * the guest through the VM's shared directory, served by virtiofsd
 * (husk_vm_add_share):
 *
 *   <state dir>/shares/<VM name>/          a bind mount of itself, shared
 *       <container id>/<i>                 spec mount i's source, bound
 *
 * The guest's spec names each as "<container id>/<i>" (relative: the
 * agent resolves it in the share, CreateBundle's shared_fs). Bound with
 * the source's own flags, then read-only where the spec says "ro", so the
 * host refuses writes too. docs/containerd.md, "Host mounts". */
#ifndef HUSK_SHIM_MOUNTS_H
#define HUSK_SHIM_MOUNTS_H

#include "husk.h"

struct shim;
struct ctr;

/* The guest's name for the share. */
#define SHIM_SHARE_TAG "husk"
/* <bundle>/husk-share: what `delete` cleans up after a shim that died
 * (the share, for the VM's owner; the container's entries, for others). */
#define SHIM_SHARE_RECORD "husk-share"

/* Binds c's host mounts into the share (made on first use) and rewrites
 * *spec_json (replaced) to name them; *share is set (dir and tag) when c
 * has any, else left zero. A missing source fails naming mounts[i], its
 * destination and source. Undone by mounts_release. */
int mounts_prepare(struct shim *s, struct ctr *c, char **spec_json, struct husk_share *share,
		   struct husk_err *err);
/* Unbinds c's entries and removes them (idempotent). */
void mounts_release(struct ctr *c);
/* The VM is gone: the whole share, unmounted and removed (idempotent). */
void mounts_share_remove(struct shim *s);
/* For `delete` after a shim died: unmounts and removes what the record
 * in `bundle` names. */
void mounts_cleanup_record(const char *bundle);

#endif
