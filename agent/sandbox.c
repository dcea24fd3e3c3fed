/* husk.sandbox.v1.Sandbox: guest setup, bundles, events, details. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "husk/cleanup.h"
#include "husk/file.h"
#include "husk/path.h"
#include "husk/sandbox.pb-c.h"
#include "init/console.h"
#include "init/entropy.h"


struct ev_waiter {
	struct ttrpc_call *call;
	struct agent *agent;
	uint64_t after;
	uint32_t max;
	struct ev_waiter *next;
};

static int fail_err(struct ttrpc_call *call, const struct husk_err *err)
{
	return ttrpc_call_fail(call, ttrpc_code_from_errno(err->code), "%s", err->msg);
}

/* ---- Check, GuestDetails ---- */

static void on_check(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	(void)req;
	struct agent *a = data;
	Husk__Sandbox__V1__CheckResponse resp = HUSK__SANDBOX__V1__CHECK_RESPONSE__INIT;
	resp.version = HUSK_AGENT_VERSION;
	resp.uptime_ns = ev_now_ns() - a->started_ns;
	ttrpc_call_reply(call, &resp.base);
}

/* The resident set of this process in bytes, 0 if unknown. From
 * smaps_rollup, which counts the pages mapped: the kernel's VmRSS (6.1)
 * adds a task's page faults to it only every 64, and a quiet agent can
 * show 4 kB there for its whole life. */
static uint64_t kib_field(const char *path, const char *name)
{
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	char line[128];
	size_t len = strlen(name);
	unsigned long long kib;
	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, name, len) == 0 && sscanf(line + len, " %llu kB", &kib) == 1)
			return kib * 1024;
	return 0;
}

static uint64_t self_rss_bytes(void)
{
	uint64_t b = kib_field("/proc/self/smaps_rollup", "Rss:");
	return b ? b : kib_field("/proc/self/status", "VmRSS:");
}

static uint32_t self_fd_count(void)
{
	DIR *d = opendir("/proc/self/fd");
	uint32_t n = 0;
	if (!d)
		return 0;
	for (struct dirent *e; (e = readdir(d));)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n ? n - 1 : 0; /* not the directory fd itself */
}

static void on_guest_details(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	(void)req;
	struct agent *a = data;
	struct utsname u;
	uname(&u);
	struct sysinfo si;
	sysinfo(&si);
	static char *features[] = { "erofs", "overlay", "cgroup2", "seccomp", "vsock-stdio" };
	Husk__Sandbox__V1__GuestDetailsResponse resp = HUSK__SANDBOX__V1__GUEST_DETAILS_RESPONSE__INIT;
	resp.kernel_release = u.release;
	resp.mem_total_bytes = (uint64_t)si.totalram * si.mem_unit;
	resp.cpus = (uint32_t)sysconf(_SC_NPROCESSORS_ONLN);
	resp.agent_version = HUSK_AGENT_VERSION;
	resp.n_features = ARRAY_SIZE(features);
	resp.features = features;
	resp.agent_rss_bytes = self_rss_bytes();
	resp.agent_fds = self_fd_count();
	uint32_t n = 0;
	for (struct container *c = a->containers; c; c = c->next)
		n++;
	resp.containers = n;
	ttrpc_call_reply(call, &resp.base);
}

/* ---- CreateSandbox ---- */

static int write_text(const char *path, const char *text, struct husk_err *err)
{
	_cleanup_fd_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return husk_err_sys(err, -errno, "open %s", path);
	int r = husk_write_all(fd, text, strlen(text));
	return r < 0 ? husk_err_sys(err, r, "write %s", path) : 0;
}

static void on_create_sandbox(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct agent *a = data;
	const Husk__Sandbox__V1__CreateSandboxRequest *r =
		(const Husk__Sandbox__V1__CreateSandboxRequest *)req;
	struct husk_err err = { 0 };
	size_t hlen = strlen(r->hostname);
	if (hlen > 64) {
		ttrpc_call_fail(call, TTRPC_INVALID_ARGUMENT, "hostname: %zu characters, at most 64", hlen);
		return;
	}
	if (r->entropy_seed.len > 4096) {
		ttrpc_call_fail(call, TTRPC_INVALID_ARGUMENT, "entropy_seed: %zu bytes, at most 4096",
				r->entropy_seed.len);
		return;
	}
	for (size_t i = 0; i < r->n_sysctls; i++) {
		const char *k = r->sysctls[i]->key;
		if (!*k || strstr(k, "..") || strchr(k, '/')) {
			ttrpc_call_fail(call, TTRPC_INVALID_ARGUMENT, "sysctls: invalid key \"%s\"", k);
			return;
		}
	}
	/* Only PID 1 of a guest changes machine-wide state; with --listen on a
	 * host the request is validated and recorded under the run dir. */
	char path[4096];
	if (*r->resolv_conf) {
		if (a->opt.pid1)
			husk_path_fmt(path, sizeof(path), "/etc/resolv.conf");
		else
			husk_path_fmt(path, sizeof(path), "%s/resolv.conf", a->opt.run_dir);
		if (a->opt.pid1)
			mkdir("/etc", 0755);
		if (write_text(path, r->resolv_conf, &err) < 0) {
			fail_err(call, &err);
			return;
		}
	}
	if (!a->opt.pid1) {
		ttrpc_call_reply(call, &((Google__Protobuf__Empty)GOOGLE__PROTOBUF__EMPTY__INIT).base);
		return;
	}
	if (hlen && sethostname(r->hostname, hlen) < 0) {
		ttrpc_call_fail(call, TTRPC_INTERNAL, "hostname %s: %s", r->hostname, strerror(errno));
		return;
	}
	for (size_t i = 0; i < r->n_sysctls; i++) {
		husk_path_fmt(path, sizeof(path), "/proc/sys/%s", r->sysctls[i]->key);
		for (char *c = path + 10; *c; c++)
			if (*c == '.')
				*c = '/';
		if (write_text(path, r->sysctls[i]->value, &err) < 0) {
			fail_err(call, &err);
			return;
		}
	}
	if (r->host_time) {
		struct timespec ts = { .tv_sec = r->host_time->seconds, .tv_nsec = r->host_time->nanos };
		if (clock_settime(CLOCK_REALTIME, &ts) < 0) {
			ttrpc_call_fail(call, TTRPC_INTERNAL, "host_time: %s", strerror(errno));
			return;
		}
	}
	if (r->entropy_seed.len) {
		if (init_seed_entropy(r->entropy_seed.data, r->entropy_seed.len, &err) < 0) {
			fail_err(call, &err);
			return;
		}
		init_log(INIT_LOG_DEBUG, "seeded %zu bytes of entropy from the host",
			 r->entropy_seed.len);
	}
	ttrpc_call_reply(call, &((Google__Protobuf__Empty)GOOGLE__PROTOBUF__EMPTY__INIT).base);
}

/* ---- CreateBundle ---- */

struct bundle_paths {
	char dir[512], lower[560], rw[560], upper[580], work[580], rootfs[560], config[560];
};

/* The paths under b->dir, which the caller has set. */
static void bundle_paths_fill(struct bundle_paths *b)
{
	snprintf(b->lower, sizeof(b->lower), "%s/lower", b->dir);
	snprintf(b->rw, sizeof(b->rw), "%s/rw", b->dir);
	snprintf(b->upper, sizeof(b->upper), "%s/upper", b->rw);
	snprintf(b->work, sizeof(b->work), "%s/work", b->rw);
	snprintf(b->rootfs, sizeof(b->rootfs), "%s/rootfs", b->dir);
	snprintf(b->config, sizeof(b->config), "%s/config.json", b->dir);
}

/* At most this many extra block mounts per container. */
#define MAX_BLOCK_MOUNTS 16

/* Where extra block mount `i` is mounted before the jail binds it. */
static void vol_path(const struct bundle_paths *b, size_t i, char *out, size_t size)
{
	snprintf(out, size, "%s/vol%zu", b->dir, i);
}

static int check_block_mounts(const Husk__Sandbox__V1__CreateBundleRequest *r,
			      struct husk_err *err)
{
	if (r->n_mounts > MAX_BLOCK_MOUNTS)
		return husk_err_set(err, -EINVAL, "mounts: %zu, at most %d", r->n_mounts,
				    MAX_BLOCK_MOUNTS);
	for (size_t i = 0; i < r->n_mounts; i++) {
		const Husk__Sandbox__V1__BlockMount *m = r->mounts[i];
		if (!*m->serial || !*m->fstype)
			return husk_err_set(err, -EINVAL, "mounts[%zu]: serial and fstype are required", i);
		if (m->target[0] != '/' || strstr(m->target, "/../") ||
		    (strlen(m->target) >= 3 && strcmp(m->target + strlen(m->target) - 3, "/..") == 0))
			return husk_err_set(err, -EINVAL,
					    "mounts[%zu].target \"%s\": want an absolute path without \"..\"",
					    i, m->target);
		for (size_t k = 0; k < m->n_options; k++)
			if (strchr(m->options[k], ','))
				return husk_err_set(err, -EINVAL,
						    "mounts[%zu].options[%zu] \"%s\": one option each", i,
						    k, m->options[k]);
	}
	return 0;
}

/* Mounts each extra disk under the bundle; the jail binds it into place. */
static int mount_block_mounts(const Husk__Sandbox__V1__CreateBundleRequest *r,
			      const struct bundle_paths *b, struct husk_err *err)
{
	for (size_t i = 0; i < r->n_mounts; i++) {
		const Husk__Sandbox__V1__BlockMount *m = r->mounts[i];
		char dev[300], dir[600], data[1024] = "";
		int rc = disk_find(m->serial, dev, sizeof(dev), err);
		if (rc < 0)
			return husk_err_wrap(err, "mounts[%zu]", i);
		vol_path(b, i, dir, sizeof(dir));
		mkdir(dir, 0755);
		size_t off = 0;
		for (size_t k = 0; k < m->n_options; k++) {
			int n = snprintf(data + off, sizeof(data) - off, "%s%s", off ? "," : "",
					 m->options[k]);
			if (n < 0 || (size_t)n >= sizeof(data) - off)
				return husk_err_set(err, -E2BIG, "mounts[%zu].options: too long", i);
			off += (size_t)n;
		}
		unsigned long flags = MS_NODEV | MS_NOSUID | (m->readonly ? MS_RDONLY : 0);
		if (mount(dev, dir, m->fstype, flags, off ? data : NULL) < 0)
			return husk_err_sys(err, -errno, "mounts[%zu]: mount %s (serial %s, %s) on %s",
					    i, dev, m->serial, m->fstype, m->target);
	}
	return 0;
}

static void bundle_undo(const struct bundle_paths *b)
{
	for (size_t i = 0; i < MAX_BLOCK_MOUNTS; i++) {
		char dir[600];
		vol_path(b, i, dir, sizeof(dir));
		if (umount2(dir, MNT_DETACH) < 0 && errno == ENOENT)
			break;
		rmdir(dir);
	}
	umount2(b->rootfs, MNT_DETACH);
	umount2(b->rw, MNT_DETACH);
	umount2(b->lower, MNT_DETACH);
	rmdir(b->work);
	rmdir(b->upper);
	rmdir(b->rootfs);
	rmdir(b->rw);
	rmdir(b->lower);
	unlink(b->config);
	rmdir(b->dir);
}

/* Whether spec mount `m` is a bind mount (type "bind", or a "bind" or
 * "rbind" option, as runc reads it). */
static bool is_bind(struct json_object *m)
{
	struct json_object *t, *opts;
	if (json_object_object_get_ex(m, "type", &t) && json_object_is_type(t, json_type_string) &&
	    strcmp(json_object_get_string(t), "bind") == 0)
		return true;
	if (!json_object_object_get_ex(m, "options", &opts) || !json_object_is_type(opts, json_type_array))
		return false;
	for (size_t k = 0; k < json_object_array_length(opts); k++) {
		const char *o = json_object_get_string(json_object_array_get_idx(opts, k));
		if (o && (strcmp(o, "bind") == 0 || strcmp(o, "rbind") == 0))
			return true;
	}
	return false;
}

/* Host mounts: bind mounts with a relative source name a path in the
 * shared directory `tag` (the shim bound the host's source there). */
static int shared_sources(struct json_object *spec, const char *tag, const char *run_dir,
			  struct husk_err *err)
{
	struct json_object *mounts, *src;
	if (!json_object_object_get_ex(spec, "mounts", &mounts) ||
	    !json_object_is_type(mounts, json_type_array))
		return 0;
	for (size_t i = 0; i < json_object_array_length(mounts); i++) {
		struct json_object *m = json_object_array_get_idx(mounts, i);
		if (!json_object_is_type(m, json_type_object) || !is_bind(m) ||
		    !json_object_object_get_ex(m, "source", &src) ||
		    !json_object_is_type(src, json_type_string))
			continue;
		const char *rel = json_object_get_string(src);
		if (rel[0] == '/')
			continue;
		char path[1024];
		if (sharedfs_source(run_dir, tag, rel, path, sizeof(path), err) < 0)
			return husk_err_wrap(err, "oci_spec: mounts[%zu]", i);
		json_object_object_add(m, "source", json_object_new_string(path));
	}
	return 0;
}

/* Writes config.json with root.path pointing at the overlay and a bind
 * mount for each extra block mount (after the spec's own mounts, so they
 * land on top of them). */
static int write_spec(const char *json, size_t len, const Husk__Sandbox__V1__CreateBundleRequest *r,
		      const struct bundle_paths *b, const char *run_dir, struct husk_err *err)
{
	const char *path = b->config;
	struct json_tokener *tok = json_tokener_new();
	struct json_object *o = json_tokener_parse_ex(tok, json, (int)len);
	enum json_tokener_error jerr = json_tokener_get_error(tok);
	json_tokener_free(tok);
	if (!o || jerr != json_tokener_success || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return husk_err_set(err, -EINVAL, "oci_spec: not a JSON object: %s",
				    json_tokener_error_desc(jerr));
	}
	struct json_object *root = json_object_new_object();
	json_object_object_add(root, "path", json_object_new_string("rootfs"));
	struct json_object *old;
	if (json_object_object_get_ex(o, "root", &old) && json_object_is_type(old, json_type_object)) {
		struct json_object *ro;
		if (json_object_object_get_ex(old, "readonly", &ro))
			json_object_object_add(root, "readonly", json_object_get(ro));
	}
	json_object_object_add(o, "root", root);
	if (*r->shared_fs && shared_sources(o, r->shared_fs, run_dir, err) < 0) {
		json_object_put(o);
		return err->code;
	}
	if (r->n_mounts) {
		struct json_object *mounts;
		if (!json_object_object_get_ex(o, "mounts", &mounts) ||
		    !json_object_is_type(mounts, json_type_array)) {
			mounts = json_object_new_array();
			json_object_object_add(o, "mounts", mounts);
		}
		for (size_t i = 0; i < r->n_mounts; i++) {
			char src[600];
			vol_path(b, i, src, sizeof(src));
			struct json_object *m = json_object_new_object(), *mo = json_object_new_array();
			json_object_object_add(m, "destination",
					       json_object_new_string(r->mounts[i]->target));
			json_object_object_add(m, "type", json_object_new_string("bind"));
			json_object_object_add(m, "source", json_object_new_string(src));
			json_object_array_add(mo, json_object_new_string("rbind"));
			json_object_array_add(mo, json_object_new_string(r->mounts[i]->readonly ? "ro" :
													 "rw"));
			json_object_object_add(m, "options", mo);
			json_object_array_add(mounts, m);
		}
	}
	int wr = json_object_to_file_ext(path, o, JSON_C_TO_STRING_PLAIN);
	json_object_put(o);
	if (wr < 0)
		return husk_err_set(err, -EIO, "write %s: %s", path, json_util_get_last_err());
	return 0;
}

/* The first disk (or shared directory) the request names that is not
 * there yet: -ENOENT with the serial (and the field, for a block mount)
 * named; 0 when all are. */
static int bundle_missing(const Husk__Sandbox__V1__CreateBundleRequest *r, const char *run_dir,
			  bool waited, struct husk_err *err)
{
	char dev[300];
	int rc;
	/* Mounting it is the only way to know a virtio-fs tag is there. */
	if (*r->shared_fs && (rc = sharedfs_mount(run_dir, r->shared_fs, err)) < 0) {
		if (rc == -ENOENT && waited)
			husk_err_wrap(err, "waited for a hot-added device");
		return rc;
	}
	if (*r->rootfs_serial && (rc = disk_find(r->rootfs_serial, dev, sizeof(dev), err)) < 0) {
		if (rc == -ENOENT)
			disk_missing(r->rootfs_serial, waited, err);
		return rc;
	}
	for (size_t i = 0; i < r->n_mounts; i++)
		if ((rc = disk_find(r->mounts[i]->serial, dev, sizeof(dev), err)) < 0) {
			if (rc == -ENOENT)
				disk_missing(r->mounts[i]->serial, waited, err);
			return husk_err_wrap(err, "mounts[%zu]", i);
		}
	return 0;
}

/* The guest's memory (MemTotal). */
static uint64_t mem_total(void)
{
	struct sysinfo si;
	return sysinfo(&si) == 0 ? (uint64_t)si.totalram * si.mem_unit : 0;
}

/* The writable layer's default size: half of the guest's memory. A tmpfs
 * lives in RAM and the guest has no swap, so one as large as the VM (it
 * was 256 MiB in a 256 MiB VM) let a writer fill memory first: the OOM
 * killer took it (137) instead of write(2) failing with ENOSPC. The other
 * half is for what the guest needs besides: its kernel and the agent
 * (about 15 MiB after boot, at 64 MiB as at 256 MiB), the container's own
 * processes and page cache. Each container has its own overlay, so several
 * writers in one VM share that headroom: give them overlay_size_bytes. */
static unsigned long long overlay_default(void)
{
	return mem_total() / 2;
}

/* Mounts, writes the spec and replies, once every disk is there; on
 * failure undoes the bundle and fails the call. */
static void bundle_finish(struct ttrpc_call *call, const Husk__Sandbox__V1__CreateBundleRequest *r,
			  const struct bundle_paths *b, const char *run_dir)
{
	struct husk_err err = { 0 };
	const char *lower = b->lower;
	if (*r->rootfs_dir) {
		lower = r->rootfs_dir;
	} else {
		char dev[300];
		const char *fstype = *r->rootfs_fstype ? r->rootfs_fstype : "erofs";
		if (disk_find(r->rootfs_serial, dev, sizeof(dev), &err) < 0)
			goto fail;
		if (mount(dev, b->lower, fstype, MS_RDONLY | MS_NODEV, NULL) < 0) {
			husk_err_sys(&err, -errno, "rootfs_serial %s: mount %s (%s) read-only",
				     r->rootfs_serial, dev, fstype);
			goto fail;
		}
	}
	char opts[1200];
	unsigned long long size = r->overlay_size_bytes ? r->overlay_size_bytes : overlay_default();
	snprintf(opts, sizeof(opts), "size=%llu,mode=0755", size);
	if (mount("tmpfs", b->rw, "tmpfs", MS_NODEV | MS_NOSUID, opts) < 0) {
		husk_err_sys(&err, -errno, "overlay_size_bytes %llu: mount tmpfs", size);
		goto fail;
	}
	mkdir(b->upper, 0755);
	mkdir(b->work, 0755);
	if (husk_path_fmt(opts, sizeof(opts), "lowerdir=%s,upperdir=%s,workdir=%s", lower, b->upper,
			  b->work) < 0 ||
	    mount("overlay", b->rootfs, "overlay", MS_NODEV, opts) < 0) {
		husk_err_sys(&err, -errno, "mount overlay on %s", b->rootfs);
		goto fail;
	}
	if (mount_block_mounts(r, b, &err) < 0)
		goto fail;
	if (write_spec((const char *)r->oci_spec.data, r->oci_spec.len, r, b, run_dir, &err) < 0)
		goto fail;
	/* Refuse a spec Task.Create would refuse, while undoing is still easy. */
	struct jail_spec *spec = NULL;
	if (jail_spec_load(b->dir, &spec, &err) < 0)
		goto fail;
	jail_spec_free(spec);
	Husk__Sandbox__V1__CreateBundleResponse resp = HUSK__SANDBOX__V1__CREATE_BUNDLE_RESPONSE__INIT;
	resp.bundle = (char *)b->dir;
	ttrpc_call_reply(call, &resp.base);
	return;
fail:
	bundle_undo(b);
	fail_err(call, &err);
}

/* ---- CreateBundle: waiting for hot-added disks ----
 *
 * The host hot-adds a later container's disks and then asks for its
 * bundle; the disks show up a little later. The call is deferred and the
 * agent goes on serving everything else: one uevent socket on the loop,
 * shared by every waiting call, says when to look again; each call has its
 * own deadline. The request stays valid (owned by the call) until the call
 * is answered or cancelled. */

struct disk_wait {
	struct disk_waits *set;
	struct ttrpc_call *call;
	const Husk__Sandbox__V1__CreateBundleRequest *req;
	struct bundle_paths b; /* reserved: the directory exists */
	struct ev_timer *deadline;
	struct disk_wait *next;
};

struct disk_waits {
	struct agent *agent;
	int fd;
	struct ev_io *io;
	struct disk_wait *list;
};

/* Closes the uevent socket once no call waits. */
static void disk_waits_maybe_release(struct agent *a)
{
	struct disk_waits *s = a->disk_waits;
	if (!s || s->list)
		return;
	ev_io_del(s->io);
	close(s->fd);
	free(s);
	a->disk_waits = NULL;
}

static void disk_wait_unlink(struct disk_wait *w)
{
	for (struct disk_wait **pp = &w->set->list; *pp; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	ev_timer_cancel(w->deadline);
	w->deadline = NULL;
}

/* Looks again for w's disks; finishes the call when all are there, or
 * (`last`: at the deadline) fails it naming the missing one. Returns
 * whether w is done (unlinked and freed). */
static bool disk_wait_check(struct disk_wait *w, bool last)
{
	struct husk_err err = { 0 };
	const char *run_dir = w->set->agent->opt.run_dir;
	int rc = bundle_missing(w->req, run_dir, last, &err);
	if (rc == -ENOENT && !last)
		return false;
	disk_wait_unlink(w);
	if (rc < 0) {
		bundle_undo(&w->b);
		fail_err(w->call, &err);
	} else {
		bundle_finish(w->call, w->req, &w->b, run_dir);
	}
	free(w);
	return true;
}

static void on_disk_uevent(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io;
	(void)events;
	struct agent *a = data;
	disk_uevent_drain(fd);
	/* disk_wait_check unlinks w: take the next one first. */
	for (struct disk_wait *w = a->disk_waits->list, *next; w; w = next) {
		next = w->next;
		disk_wait_check(w, false);
	}
	disk_waits_maybe_release(a);
}

static void on_disk_wait_deadline(void *data)
{
	struct disk_wait *w = data;
	struct agent *a = w->set->agent;
	w->deadline = NULL; /* fired timers are gone */
	disk_wait_check(w, true);
	disk_waits_maybe_release(a);
}

/* The client went away or its deadline passed: give the id back. */
static void on_disk_wait_cancel(struct ttrpc_call *call, void *data)
{
	(void)call;
	struct disk_wait *w = data;
	struct agent *a = w->set->agent;
	disk_wait_unlink(w);
	bundle_undo(&w->b);
	free(w);
	disk_waits_maybe_release(a);
}

/* Subscribes to uevents (before the caller looks again, so that a disk
 * appearing in between is not missed). */
static int disk_waits_get(struct agent *a, struct husk_err *err)
{
	if (a->disk_waits)
		return 0;
	struct disk_waits *s = calloc(1, sizeof(*s));
	if (!s)
		return husk_err_set(err, -ENOMEM, "waiting for hot-added disks: out of memory");
	s->agent = a;
	s->fd = disk_uevent_open(err);
	if (s->fd < 0) {
		int rc = s->fd;
		free(s);
		return rc;
	}
	int rc = ev_io_add(a->loop, s->fd, EPOLLIN, on_disk_uevent, a, &s->io, err);
	if (rc < 0) {
		close(s->fd);
		free(s);
		return rc;
	}
	a->disk_waits = s;
	return 0;
}

/* Some disk of `r` is missing and may still be hot-added: defers the call
 * until all are there or the wait ends. Fails the call itself otherwise. */
static void disk_wait_start(struct agent *a, struct ttrpc_call *call,
			    const Husk__Sandbox__V1__CreateBundleRequest *r,
			    const struct bundle_paths *b)
{
	struct husk_err err = { 0 };
	struct disk_wait *w = calloc(1, sizeof(*w));
	if (!w) {
		husk_err_set(&err, -ENOMEM, "waiting for hot-added disks: out of memory");
		goto fail;
	}
	if (disk_waits_get(a, &err) < 0)
		goto fail;
	/* Look again now that uevents are watched. */
	int rc = bundle_missing(r, a->opt.run_dir, false, &err);
	if (rc != -ENOENT) {
		free(w);
		disk_waits_maybe_release(a);
		if (rc < 0) {
			bundle_undo(b);
			fail_err(call, &err);
		} else {
			bundle_finish(call, r, b, a->opt.run_dir);
		}
		return;
	}
	*w = (struct disk_wait){ .set = a->disk_waits, .call = call, .req = r, .b = *b };
	if (ev_timer_add(a->loop, (uint64_t)DISK_HOTPLUG_WAIT_MS * 1000000u, on_disk_wait_deadline,
			 w, &w->deadline) < 0) {
		husk_err_set(&err, -ENOMEM, "waiting for hot-added disks: timer");
		goto fail;
	}
	w->next = a->disk_waits->list;
	a->disk_waits->list = w;
	ttrpc_call_defer(call, on_disk_wait_cancel, w);
	return;
fail:
	free(w);
	disk_waits_maybe_release(a);
	bundle_undo(b);
	fail_err(call, &err);
}

static void on_create_bundle(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct agent *a = data;
	const Husk__Sandbox__V1__CreateBundleRequest *r =
		(const Husk__Sandbox__V1__CreateBundleRequest *)req;
	struct husk_err err = { 0 };
	if (agent_check_id("container_id", r->container_id, &err) < 0) {
		fail_err(call, &err);
		return;
	}
	if (r->oci_spec.len == 0 || r->oci_spec.len > JAIL_SPEC_MAX_BYTES) {
		ttrpc_call_fail(call, TTRPC_INVALID_ARGUMENT, "oci_spec: %zu bytes, want 1..%u",
				r->oci_spec.len, JAIL_SPEC_MAX_BYTES);
		return;
	}
	if (!*r->rootfs_serial == !*r->rootfs_dir) {
		ttrpc_call_fail(call, TTRPC_INVALID_ARGUMENT,
				"exactly one of rootfs_serial and rootfs_dir must be set");
		return;
	}
	if (check_block_mounts(r, &err) < 0 ||
	    (*r->shared_fs && sharedfs_check_tag(r->shared_fs, &err) < 0)) {
		fail_err(call, &err);
		return;
	}
	/* A tmpfs larger than the memory it lives in is filled by running out
	 * of memory, never by ENOSPC. */
	uint64_t mem = mem_total();
	if (mem && r->overlay_size_bytes > mem) {
		ttrpc_call_fail(call, TTRPC_INVALID_ARGUMENT,
				"overlay_size_bytes %llu: more than the guest's memory (%llu bytes)",
				(unsigned long long)r->overlay_size_bytes, (unsigned long long)mem);
		return;
	}
	struct bundle_paths b;
	char bundles[512];
	husk_path_fmt(bundles, sizeof(bundles), "%s/bundles", a->opt.run_dir);
	mkdir(bundles, 0700);
	if (husk_path_fmt(b.dir, sizeof(b.dir), "%s/%s", bundles, r->container_id) < 0) {
		ttrpc_call_fail(call, TTRPC_INVALID_ARGUMENT, "container_id: path too long");
		return;
	}
	bundle_paths_fill(&b);
	/* The directory reserves the id, also while the call waits for disks. */
	if (mkdir(b.dir, 0700) < 0) {
		if (errno == EEXIST)
			ttrpc_call_fail(call, TTRPC_ALREADY_EXISTS, "bundle for %s already exists",
					r->container_id);
		else
			ttrpc_call_fail(call, TTRPC_INTERNAL, "mkdir %s: %s", b.dir, strerror(errno));
		return;
	}
	mkdir(b.lower, 0755);
	mkdir(b.rw, 0755);
	mkdir(b.rootfs, 0755);
	if (*r->rootfs_dir) {
		struct stat st;
		if (r->rootfs_dir[0] != '/' || stat(r->rootfs_dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
			husk_err_set(&err, -EINVAL, "rootfs_dir %s: not an absolute directory",
				     r->rootfs_dir);
			bundle_undo(&b);
			fail_err(call, &err);
			return;
		}
	}
	int rc = bundle_missing(r, a->opt.run_dir, false, &err);
	if (rc == -ENOENT && disk_hotplug_possible()) {
		disk_wait_start(a, call, r, &b);
		return;
	}
	if (rc < 0) {
		bundle_undo(&b);
		fail_err(call, &err);
		return;
	}
	bundle_finish(call, r, &b, a->opt.run_dir);
}

/* Called by Task.Delete: unmounts and removes what CreateBundle made. */
void sandbox_remove_bundle(struct agent *a, const char *id)
{
	struct bundle_paths b;
	if (husk_path_fmt(b.dir, sizeof(b.dir), "%s/bundles/%s", a->opt.run_dir, id) < 0)
		return;
	bundle_paths_fill(&b);
	bundle_undo(&b);
}

/* ---- GetEvents ---- */

static void reply_events(struct ttrpc_call *call, struct agent *a, uint64_t after, uint32_t max)
{
	size_t n = 0;
	for (struct agent_event *e = a->ev_head; e; e = e->next)
		if (e->seq > after && (!max || n < max))
			n++;
	Husk__Sandbox__V1__Event *evs = calloc(n ? n : 1, sizeof(*evs));
	Husk__Sandbox__V1__Event **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
	Google__Protobuf__Timestamp *ts = calloc(n ? n : 1, sizeof(*ts));
	if (!evs || !ptrs || !ts) {
		free(evs);
		free(ptrs);
		free(ts);
		ttrpc_call_fail(call, TTRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	size_t i = 0;
	for (struct agent_event *e = a->ev_head; e && i < n; e = e->next) {
		if (e->seq <= after)
			continue;
		husk__sandbox__v1__event__init(&evs[i]);
		google__protobuf__timestamp__init(&ts[i]);
		ts[i].seconds = e->at.tv_sec;
		ts[i].nanos = (int32_t)e->at.tv_nsec;
		evs[i].seq = e->seq;
		evs[i].type = e->type == AGENT_EVENT_OOM ? HUSK__SANDBOX__V1__EVENT__TYPE__OOM
							 : HUSK__SANDBOX__V1__EVENT__TYPE__EXIT;
		evs[i].container_id = e->container_id;
		evs[i].exec_id = e->exec_id;
		evs[i].pid = e->pid;
		evs[i].exit_status = e->exit_status;
		evs[i].at = &ts[i];
		ptrs[i] = &evs[i];
		i++;
	}
	Husk__Sandbox__V1__GetEventsResponse resp = HUSK__SANDBOX__V1__GET_EVENTS_RESPONSE__INIT;
	resp.n_events = n;
	resp.events = ptrs;
	ttrpc_call_reply(call, &resp.base);
	free(evs);
	free(ptrs);
	free(ts);
}

static bool have_events(const struct agent *a, uint64_t after)
{
	return a->ev_tail && a->ev_tail->seq > after;
}

static void unlink_waiter(struct agent *a, struct ev_waiter *w)
{
	for (struct ev_waiter **pp = &a->ev_waiters; *pp; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			return;
		}
}

static void on_events_cancel(struct ttrpc_call *call, void *data)
{
	(void)call;
	struct ev_waiter *w = data;
	unlink_waiter(w->agent, w);
	free(w);
}

void sandbox_events_wake(struct agent *a)
{
	struct ev_waiter **pp = &a->ev_waiters;
	while (*pp) {
		struct ev_waiter *w = *pp;
		if (!have_events(a, w->after)) {
			pp = &w->next;
			continue;
		}
		*pp = w->next;
		reply_events(w->call, a, w->after, w->max);
		free(w);
	}
}

static void on_get_events(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct agent *a = data;
	const Husk__Sandbox__V1__GetEventsRequest *r = (const Husk__Sandbox__V1__GetEventsRequest *)req;
	if (have_events(a, r->after_seq)) {
		reply_events(call, a, r->after_seq, r->max_events);
		return;
	}
	struct ev_waiter *w = calloc(1, sizeof(*w));
	if (!w) {
		ttrpc_call_fail(call, TTRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	*w = (struct ev_waiter){ .call = call, .agent = a, .after = r->after_seq,
				 .max = r->max_events, .next = a->ev_waiters };
	a->ev_waiters = w;
	ttrpc_call_defer(call, on_events_cancel, w);
}

/* ---- DestroySandbox ---- */

static void on_destroy_sandbox(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	(void)req;
	struct agent *a = data;
	for (struct container *c = a->containers; c; c = c->next) {
		if (c->init.pid > 0 && !c->init.exited)
			kill(c->init.pid, SIGKILL);
		for (struct process *p = c->execs; p; p = p->next)
			if (p->pid > 0 && !p->exited)
				kill(p->pid, SIGKILL);
	}
	ttrpc_call_reply(call, &((Google__Protobuf__Empty)GOOGLE__PROTOBUF__EMPTY__INIT).base);
	/* Power off (or, with --listen, exit) once the reply is on its way. */
	a->poweroff_requested = true;
	ev_stop(a->loop);
}

/* ---- ReleaseDisk ---- */

static void on_release_disk(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	(void)data;
	const Husk__Sandbox__V1__ReleaseDiskRequest *r = (const void *)req;
	struct husk_err err = { 0 };
	if (!*r->serial) {
		husk_err_set(&err, -EINVAL, "serial is required");
		fail_err(call, &err);
		return;
	}
	if (disk_release(r->serial, &err) < 0) {
		fail_err(call, &err);
		return;
	}
	ttrpc_call_reply(call, &((Google__Protobuf__Empty)GOOGLE__PROTOBUF__EMPTY__INIT).base);
}

int sandbox_service_register(struct agent *a, struct husk_err *err)
{
	static const struct ttrpc_named_method methods[] = {
		{ "Check", on_check },
		{ "CreateSandbox", on_create_sandbox },
		{ "CreateBundle", on_create_bundle },
		{ "GetEvents", on_get_events },
		{ "GuestDetails", on_guest_details },
		{ "DestroySandbox", on_destroy_sandbox },
		{ "ReleaseDisk", on_release_disk },
		{ "SetupNetwork", net_on_setup_network },
	};
	return ttrpc_server_add_service_named(a->server, &husk__sandbox__v1__sandbox__descriptor,
					      methods, ARRAY_SIZE(methods), a, err);
}
