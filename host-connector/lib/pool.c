/* Ready VMs from huskd: the shape two VMs share, the message that hands a
 * VM from one process to another, and the client's take. huskd's keeper
 * of each VM is keeper.c; huskd itself is host-connector/huskd/. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "husk/cleanup.h"
#include "husk/path.h"
#include "husk/sock.h"
#include "vmm.h"

/* huskd answers from its loop, which never blocks: a reply this late means
 * something is wrong there, and a cold boot is the better bet. */
#define TAKE_REPLY_MS 2000
#define MSG_MAX 8192

const char *husk_default_pool_socket(const char *state_dir, char *buf, size_t len)
{
	const char *env = getenv("HUSK_POOL_SOCKET");
	if (env && *env) {
		snprintf(buf, len, "%s", env);
		return buf;
	}
	char state[PATH_MAX];
	if (!state_dir)
		state_dir = husk_default_state_dir(state, sizeof(state));
	snprintf(buf, len, "%s/huskd.sock", state_dir);
	return buf;
}

bool husk_vm_pooled(const struct husk_vm *vm)
{
	return vm->pooled;
}

/* ---- the shape ---- */

/* A file as the shape sees it: where it really is, and which version. */
static int file_identity(const char *what, const char *path, char *out, size_t len,
			 struct husk_err *err)
{
	char real[PATH_MAX];
	struct stat st;
	if (!path)
		return husk_err_set(err, -EINVAL, "%s: not set", what);
	if (!realpath(path, real) || stat(real, &st) < 0)
		return husk_err_sys(err, -errno, "%s %s", what, path);
	int n = snprintf(out, len, "%s@%llx:%llx:%lld:%lld.%09ld", real, (unsigned long long)st.st_dev,
			 (unsigned long long)st.st_ino, (long long)st.st_size,
			 (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
	return n < 0 || (size_t)n >= len ? husk_err_set(err, -ENAMETOOLONG, "%s %s", what, path) : 0;
}

int husk_pool_shape(const struct husk_vm_config *cfg, char *key, size_t len, unsigned *slots,
		    struct husk_err *err)
{
	const struct husk_vmm_ops *ops = husk_vmm_find(cfg->vmm);
	if (!ops)
		return husk_err_set(err, -EINVAL, "vmm \"%s\": want %s", cfg->vmm, husk_vmm_names());
	enum husk_transport transport;
	int r = ops->transport(cfg, &transport, err);
	if (r < 0)
		return r;
	enum husk_accel accel = cfg->accel == HUSK_ACCEL_AUTO ? husk_accel_detect(NULL, 0) : cfg->accel;
	char kernel[PATH_MAX + 96], initrd[PATH_MAX + 96], vsockd[PATH_MAX + 96] = "-";
	if ((r = file_identity("kernel", cfg->kernel, kernel, sizeof(kernel), err)) < 0 ||
	    (r = file_identity("initrd", cfg->initrd, initrd, sizeof(initrd), err)) < 0)
		return r;
	if (transport == HUSK_TRANSPORT_HYBRID) {
		_cleanup_free_ char *path = cfg->vsockd ? strdup(cfg->vsockd) :
							  husk_default_path("vsockd", err);
		if (!path)
			return err && err->code ? err->code : -ENOMEM;
		if ((r = file_identity("husk-vsockd", path, vsockd, sizeof(vsockd), err)) < 0)
			return r;
	}
	int n = snprintf(key, len,
			 "vmm=%s program=%s kernel=%s initrd=%s vsockd=%s vcpus=%u memory=%u "
			 "accel=%s transport=%s debug_console=%d log_level=%d merge_memory=%d "
			 "tcg_cache=%u cmdline=%s",
			 ops->name, cfg->vmm_binary ? cfg->vmm_binary : "-", kernel, initrd, vsockd,
			 cfg->vcpus ? cfg->vcpus : 1, cfg->memory_mib ? cfg->memory_mib : 256,
			 husk_accel_name(accel), husk_transport_name(transport), cfg->debug_console,
			 cfg->log_level ? cfg->log_level : 6, cfg->merge_memory,
			 accel == HUSK_ACCEL_KVM ? 0 : cfg->tcg_cache_mib ? cfg->tcg_cache_mib : 16,
			 cfg->cmdline_extra ? cfg->cmdline_extra : "");
	if (n < 0 || (size_t)n >= len)
		return husk_err_set(err, -E2BIG, "VM shape: more than %zu bytes", len);
	if (slots)
		*slots = cfg->hotplug_slots;
	return 0;
}

/* ---- the hand-over message ---- */

/* The fds of a VM, in the message's order; the lifeline comes last, added
 * by whoever gives the VM away (huskd), and is not listed. */
enum handoff_fd { FD_LOCK, FD_VMM_PIDFD, FD_VSOCKD_PIDFD, FD_LOG, FD_BACKEND, FD_COUNT };
static const char *const fd_names[FD_COUNT] = {
	[FD_LOCK] = "lock", [FD_VMM_PIDFD] = "vmm_pidfd", [FD_VSOCKD_PIDFD] = "vsockd_pidfd",
	[FD_LOG] = "log", [FD_BACKEND] = "backend",
};

int husk_vm_export(const struct husk_vm *vm, char **json, int *fds, size_t *n_fds,
		   struct husk_err *err)
{
	if (!vm->vmm || !vm->vmm->handoff_fd || !vm->vmm->adopt)
		return husk_err_set(err, -EOPNOTSUPP, "VM %s: the %s backend cannot hand VMs over",
				    vm->name, vm->vmm_name);
	int have[FD_COUNT] = {
		[FD_LOCK] = vm->lock_fd, [FD_VMM_PIDFD] = vm->vmm_pidfd,
		[FD_VSOCKD_PIDFD] = vm->vsockd_pidfd, [FD_LOG] = vm->log_fd,
		[FD_BACKEND] = vm->vmm->handoff_fd(vm),
	};
	json_object *o = json_object_new_object(), *list = json_object_new_array();
	*n_fds = 0;
	for (int i = 0; i < FD_COUNT; i++) {
		if (have[i] < 0)
			continue;
		fds[(*n_fds)++] = have[i];
		json_object_array_add(list, json_object_new_string(fd_names[i]));
	}
	json_object_object_add(o, "fds", list);
	json_object_object_add(o, "name", json_object_new_string(vm->name));
	json_object_object_add(o, "dir", json_object_new_string(vm->dir));
	json_object_object_add(o, "uds", json_object_new_string(vm->uds));
	json_object_object_add(o, "console", json_object_new_string(vm->console));
	json_object_object_add(o, "vmm", json_object_new_string(vm->vmm_name));
	json_object_object_add(o, "accel", json_object_new_string(husk_accel_name(vm->accel)));
	json_object_object_add(o, "transport",
			       json_object_new_string(husk_transport_name(vm->transport)));
	json_object_object_add(o, "cid", json_object_new_int64(vm->cid));
	json_object_object_add(o, "log_port", json_object_new_int64(vm->log_port));
	json_object_object_add(o, "vmm_pid", json_object_new_int(vm->vmm_pid));
	json_object_object_add(o, "vsockd_pid", json_object_new_int(vm->vsockd_pid));
	json_object_object_add(o, "boot_ns", json_object_new_int64((int64_t)vm->boot_ns));
	json_object_object_add(o, "slots", json_object_new_int((int)vm->n_slots));
	json_object *msg = json_object_new_object();
	json_object_object_add(msg, "vm", o);
	*json = strdup(json_object_to_json_string_ext(msg, JSON_C_TO_STRING_PLAIN));
	json_object_put(msg);
	return *json ? 0 : husk_err_set(err, -ENOMEM, "hand-over message");
}

static const char *str_of(json_object *o, const char *key)
{
	json_object *v;
	return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string) ?
		       json_object_get_string(v) :
		       NULL;
}

static int64_t int_of(json_object *o, const char *key)
{
	json_object *v;
	return json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : -1;
}

static int copy_str(char *dst, size_t len, json_object *o, const char *key, struct husk_err *err)
{
	const char *s = str_of(o, key);
	if (!s || strlen(s) >= len)
		return husk_err_set(err, -EPROTO, "hand-over message: \"%s\" missing or too long", key);
	memcpy(dst, s, strlen(s) + 1);
	return 0;
}

int husk_vm_import(const char *json, int *fds, size_t n_fds, struct husk_vm **out,
		   struct husk_err *err)
{
	int got[FD_COUNT] = { -1, -1, -1, -1, -1 };
	int lifeline = -1;
	struct husk_vm *vm = NULL;
	json_object *msg = json_tokener_parse(json), *o = NULL, *list = NULL;
	int r = -EPROTO;
	if (!msg || !json_object_object_get_ex(msg, "vm", &o) ||
	    !json_object_object_get_ex(o, "fds", &list) || !json_object_is_type(list, json_type_array) ||
	    json_object_array_length(list) + 1 != n_fds) {
		husk_err_set(err, -EPROTO, "hand-over message: not a VM with %zu fds", n_fds);
		goto fail;
	}
	for (size_t i = 0; i + 1 < n_fds; i++) {
		const char *name = json_object_get_string(json_object_array_get_idx(list, i));
		int k = 0;
		while (k < FD_COUNT && (!name || strcmp(name, fd_names[k]) != 0))
			k++;
		if (k == FD_COUNT || got[k] >= 0) {
			husk_err_set(err, -EPROTO, "hand-over message: fd \"%s\"", name ? name : "?");
			goto fail;
		}
		got[k] = fds[i];
		fds[i] = -1;
	}
	lifeline = fds[n_fds - 1];
	fds[n_fds - 1] = -1;
	if (got[FD_LOCK] < 0 || got[FD_VMM_PIDFD] < 0) {
		husk_err_set(err, -EPROTO, "hand-over message: no lock or VMM pidfd");
		goto fail;
	}
	if (!(vm = husk_vm_alloc())) {
		r = husk_err_set(err, -ENOMEM, "VM");
		goto fail;
	}
	vm->lock_fd = take_fd(&got[FD_LOCK]);
	vm->vmm_pidfd = take_fd(&got[FD_VMM_PIDFD]);
	vm->vsockd_pidfd = take_fd(&got[FD_VSOCKD_PIDFD]);
	vm->log_fd = take_fd(&got[FD_LOG]);
	vm->lifeline_fd = take_fd(&lifeline);
	vm->owner = vm->pooled = true;
	if ((r = copy_str(vm->name, sizeof(vm->name), o, "name", err)) < 0 ||
	    (r = copy_str(vm->dir, sizeof(vm->dir), o, "dir", err)) < 0 ||
	    (r = copy_str(vm->uds, sizeof(vm->uds), o, "uds", err)) < 0 ||
	    (r = copy_str(vm->console, sizeof(vm->console), o, "console", err)) < 0 ||
	    (r = copy_str(vm->vmm_name, sizeof(vm->vmm_name), o, "vmm", err)) < 0)
		goto fail;
	const char *a = str_of(o, "accel"), *t = str_of(o, "transport");
	if (!(vm->vmm = husk_vmm_find(vm->vmm_name)) || !vm->vmm->adopt || !a || !t ||
	    husk_accel_parse(a, &vm->accel, NULL) < 0 ||
	    husk_transport_parse(t, &vm->transport, NULL) < 0) {
		r = husk_err_set(err, -EPROTO, "hand-over message: VMM, accel or transport");
		goto fail;
	}
	vm->cid = (uint32_t)int_of(o, "cid");
	vm->log_port = (uint32_t)int_of(o, "log_port");
	vm->vmm_pid = (pid_t)int_of(o, "vmm_pid");
	vm->vsockd_pid = vm->vsockd_pidfd >= 0 ? (pid_t)int_of(o, "vsockd_pid") : 0;
	vm->boot_ns = (uint64_t)int_of(o, "boot_ns");
	int64_t slots = int_of(o, "slots");
	vm->n_slots = slots > 0 && slots <= HUSK_HOTPLUG_MAX ? (unsigned)slots : 0;
	if (vm->vmm_pid <= 0) {
		r = husk_err_set(err, -EPROTO, "hand-over message: no VMM pid");
		goto fail;
	}
	if ((r = vm->vmm->adopt(vm, take_fd(&got[FD_BACKEND]), err)) < 0)
		goto fail;
	json_object_put(msg);
	*out = vm;
	return 0;
fail:
	for (int i = 0; i < FD_COUNT; i++)
		if (got[i] >= 0)
			close(got[i]);
	for (size_t i = 0; i < n_fds; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	if (lifeline >= 0)
		close(lifeline);
	if (vm)
		husk_vm_forget(vm); /* closes the lifeline: the keeper ends the VM */
	json_object_put(msg);
	return r;
}

/* ---- the client ---- */

static int reply_error(json_object *msg, struct husk_err *err)
{
	const char *text = str_of(msg, "error");
	int64_t code = int_of(msg, "errno");
	if (!text)
		return husk_err_set(err, -EPROTO, "huskd: a reply that is neither a VM nor an error");
	return husk_err_set(err, code > 0 && code < 4096 ? -(int)code : -EIO, "huskd: %s", text);
}

int husk_pool_take(const char *socket, const struct husk_vm_config *cfg, unsigned slots,
		   struct husk_vm **out, struct husk_err *err)
{
	char key[HUSK_POOL_KEY_MAX];
	int r = husk_pool_shape(cfg, key, sizeof(key), NULL, err);
	if (r < 0)
		return r;
	_cleanup_fd_ int fd = husk_seqpacket_connect(socket, err);
	if (fd < 0)
		return fd;
	json_object *req = json_object_new_object(), *take = json_object_new_object();
	json_object_object_add(take, "shape", json_object_new_string(key));
	json_object_object_add(take, "slots", json_object_new_int((int)slots));
	json_object_object_add(req, "take", take);
	size_t len;
	const char *text = json_object_to_json_string_length(req, JSON_C_TO_STRING_PLAIN, &len);
	r = husk_msg_send(fd, text, len, NULL, 0);
	json_object_put(req);
	if (r < 0)
		return husk_err_sys(err, r, "huskd %s: send", socket);
	struct pollfd p = { .fd = fd, .events = POLLIN };
	if ((r = poll(&p, 1, TAKE_REPLY_MS)) <= 0)
		return husk_err_set(err, r < 0 ? -errno : -ETIMEDOUT, "huskd %s: no reply in %d ms",
				    socket, TAKE_REPLY_MS);
	_cleanup_free_ char *buf = malloc(MSG_MAX + 1);
	if (!buf)
		return husk_err_set(err, -ENOMEM, "huskd reply");
	int fds[HUSK_MSG_FDS_MAX];
	size_t n_fds = 0;
	ssize_t n = husk_msg_recv(fd, buf, MSG_MAX, fds, &n_fds);
	if (n <= 0)
		return husk_err_set(err, n < 0 ? (int)n : -EPIPE, "huskd %s: %s", socket,
				    n < 0 ? strerror((int)-n) : "closed without a reply");
	buf[n] = '\0';
	json_object *msg = json_tokener_parse(buf), *v;
	if (!msg || !json_object_object_get_ex(msg, "vm", &v)) {
		for (size_t i = 0; i < n_fds; i++)
			close(fds[i]);
		r = msg ? reply_error(msg, err) :
			  husk_err_set(err, -EPROTO, "huskd %s: a reply that is not JSON", socket);
		json_object_put(msg);
		return r;
	}
	json_object_put(msg);
	return husk_vm_import(buf, fds, n_fds, out, err);
}
