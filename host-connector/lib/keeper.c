/* The keeper of one pooled VM: a process of its own (huskd forks it) whose
 * children are the VM's processes. They die with it (PR_SET_PDEATHSIG),
 * and it lives as long as somebody holds the other end of its lifeline:
 * huskd while the VM is ready, the client that took it afterwards. So a
 * client that dies takes its VM along, a huskd that dies takes its ready
 * VMs along, and a VM handed out outlives huskd. */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <json-c/json.h>

#include "husk/cleanup.h"
#include "husk/sock.h"
#include "vmm.h"

#define VSOCKD_LEAVE_MS 2000
#define KILL_WAIT_MS 10000
#define LOCK_WAIT_MS 5000
#define LOCK_RETRY_MS 20

static void send_error(int report, const struct husk_err *err)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "error", json_object_new_string(err->msg[0] ? err->msg : "failed"));
	json_object_object_add(o, "errno", json_object_new_int(err->code < 0 ? -err->code : EIO));
	size_t len;
	const char *text = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
	husk_msg_send(report, text, len, NULL, 0);
	json_object_put(o);
}

/* ---- the warm-up ---- */

/* A container as the shim and huskctl make them (their default mounts and
 * namespaces, a read-only erofs rootfs on a hot-added disk), running a
 * static program that exits at once. */
#define WARM_ID "husk-warm-up"
#define WARM_SERIAL "warmup0"
#define WARM_TIMEOUT_MS 30000
#define WARM_REMOVE_MS 10000
static const char warm_spec[] =
	"{\"ociVersion\":\"1.0.2\",\"process\":{\"user\":{\"uid\":0,\"gid\":0},"
	"\"args\":[\"/" HUSK_POOL_WARM_PROGRAM "\",\"--help\"],\"env\":[\"PATH=/\"],\"cwd\":\"/\"},"
	"\"root\":{\"path\":\"rootfs\"},\"hostname\":\"warm-up\",\"mounts\":["
	"{\"destination\":\"/proc\",\"type\":\"proc\",\"source\":\"proc\"},"
	"{\"destination\":\"/dev\",\"type\":\"tmpfs\",\"source\":\"tmpfs\","
	"\"options\":[\"nosuid\",\"strictatime\",\"mode=755\",\"size=65536k\"]},"
	"{\"destination\":\"/dev/pts\",\"type\":\"devpts\",\"source\":\"devpts\","
	"\"options\":[\"nosuid\",\"noexec\",\"newinstance\",\"ptmxmode=0666\",\"mode=0620\"]},"
	"{\"destination\":\"/dev/shm\",\"type\":\"tmpfs\",\"source\":\"shm\","
	"\"options\":[\"nosuid\",\"noexec\",\"nodev\",\"mode=1777\",\"size=65536k\"]},"
	"{\"destination\":\"/sys\",\"type\":\"sysfs\",\"source\":\"sysfs\","
	"\"options\":[\"nosuid\",\"noexec\",\"nodev\",\"ro\"]}],"
	"\"linux\":{\"namespaces\":[{\"type\":\"pid\"},{\"type\":\"ipc\"},{\"type\":\"uts\"},"
	"{\"type\":\"mount\"},{\"type\":\"cgroup\"}]}}";

/* Under TCG a guest's first container costs about three times a later
 * one (translating the code it runs for the first time: docs/pool.md):
 * pay that here, before a client waits for it. The VM is left as it was
 * booted: no container, no disk, every slot free. */
static int warm_up(struct husk_vm *vm, const char *image, struct husk_err *err)
{
	const struct husk_disk disk = { .path = image, .serial = WARM_SERIAL, .readonly = true };
	const struct husk_bundle_spec b = { .id = WARM_ID, .spec_json = warm_spec };
	_cleanup_free_ char *bundle = NULL;
	int r = husk_sandbox_add_container(vm, &disk, &b, &bundle, err);
	if (r < 0)
		return husk_err_wrap(err, "warm-up");
	struct husk_agent *a = NULL;
	const struct husk_stdio none = { 0 };
	uint32_t status = 0;
	if ((r = husk_agent_open(vm, WARM_TIMEOUT_MS, &a, err)) == 0 &&
	    (r = husk_task_create(a, WARM_ID, bundle, &none, NULL, err)) == 0 &&
	    (r = husk_task_start(a, WARM_ID, NULL, NULL, err)) == 0 &&
	    (r = husk_task_wait(a, WARM_ID, NULL, &status, err)) == 0)
		r = husk_task_delete(a, WARM_ID, NULL, NULL, err);
	husk_agent_close(a);
	if (r == 0 && status != 0)
		r = husk_err_set(err, -EIO, "its container exited with status %u", status);
	if (r == 0)
		r = husk_vm_remove_disk(vm, WARM_SERIAL, WARM_REMOVE_MS, err);
	return r < 0 ? husk_err_wrap(err, "warm-up") : 0;
}

/* What the keeper keeps of the VM once it is sent. */
struct kept {
	pid_t vmm_pid, vsockd_pid;
	int vmm_pidfd, vsockd_pidfd;
	char dir_parent[PATH_MAX], name[HUSK_NAME_MAX + 1];
};

/* Whether the holder of the lifeline is gone (it never writes). */
static bool holder_gone(int lifeline, short revents)
{
	if (revents & (POLLHUP | POLLERR))
		return true;
	char c;
	ssize_t n = recv(lifeline, &c, 1, MSG_DONTWAIT);
	return n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR);
}

static void watch(struct kept *k, int lifeline)
{
	bool vmm_gone = false;
	for (;;) {
		struct pollfd p[3] = { { .fd = lifeline, .events = POLLIN },
				       { .fd = k->vmm_pidfd, .events = POLLIN },
				       { .fd = k->vsockd_pid > 0 ? k->vsockd_pidfd : -1, .events = POLLIN } };
		if (poll(p, vmm_gone ? 1 : 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		/* Without husk-vsockd nobody reaches the guest: end the VM, which
		 * tells the holder as any VMM exit does. */
		if (!vmm_gone && p[2].revents) {
			husk_reap(k->vsockd_pid, k->vsockd_pidfd, 0, NULL);
			k->vsockd_pid = 0;
			close(k->vsockd_pidfd);
			k->vsockd_pidfd = -1;
			husk_pidfd_signal(k->vmm_pidfd, SIGKILL);
			continue;
		}
		if (!vmm_gone && p[1].revents) {
			int st = 0;
			husk_reap(k->vmm_pid, k->vmm_pidfd, 0, &st);
			vmm_gone = true;
			/* The holder's husk_vm_exited reads it. */
			send(lifeline, &st, sizeof(st), MSG_DONTWAIT | MSG_NOSIGNAL);
			if (k->vsockd_pid > 0 &&
			    husk_reap(k->vsockd_pid, k->vsockd_pidfd, VSOCKD_LEAVE_MS, NULL) == 0)
				k->vsockd_pid = 0;
			husk_end_child(&k->vsockd_pid, &k->vsockd_pidfd, 0, NULL);
		}
		if (p[0].revents && holder_gone(lifeline, p[0].revents))
			break;
	}
	if (!vmm_gone) {
		husk_pidfd_signal(k->vmm_pidfd, SIGKILL);
		husk_reap(k->vmm_pid, k->vmm_pidfd, KILL_WAIT_MS, NULL);
	}
	husk_end_child(&k->vsockd_pid, &k->vsockd_pidfd, 0, NULL);
	/* The holder stopped it and removed its directory, or died: then
	 * its lock goes too, though not necessarily before the lifeline (a
	 * dying process's files close in no set order; a child it forked may
	 * hold the lock a moment longer). Then what is left goes. */
	for (unsigned waited = 0;; waited += LOCK_RETRY_MS) {
		int r = husk_vm_remove_stale(k->dir_parent, k->name, NULL);
		if (r != -EBUSY || waited >= LOCK_WAIT_MS)
			break;
		usleep(LOCK_RETRY_MS * 1000);
	}
}

int husk_pool_keep(const struct husk_vm_config *cfg_in, const char *warm_image, int report,
		   int lifeline, struct husk_err *err)
{
	struct husk_vm_config cfg = *cfg_in;
	cfg.die_with_parent = true;
	cfg.pool = "off";
	struct husk_vm *vm = NULL;
	int r = husk_vm_start(&cfg, &vm, err);
	if (r == 0 && warm_image && (r = warm_up(vm, warm_image, err)) < 0)
		husk_vm_free(vm); /* stops it */
	if (r < 0) {
		send_error(report, err);
		return r;
	}
	_cleanup_free_ char *json = NULL;
	int fds[HUSK_MSG_FDS_MAX];
	size_t n_fds = 0;
	if ((r = husk_vm_export(vm, &json, fds, &n_fds, err)) == 0 &&
	    (r = husk_msg_send(report, json, strlen(json), fds, n_fds)) < 0)
		husk_err_sys(err, r, "sending VM %s to huskd", vm->name);
	if (r < 0) {
		send_error(report, err);
		husk_vm_free(vm); /* stops it */
		return r;
	}
	struct kept k = { .vmm_pid = vm->vmm_pid, .vsockd_pid = vm->vsockd_pid,
			  .vmm_pidfd = take_fd(&vm->vmm_pidfd),
			  .vsockd_pidfd = take_fd(&vm->vsockd_pidfd) };
	snprintf(k.name, sizeof(k.name), "%s", vm->name);
	snprintf(k.dir_parent, sizeof(k.dir_parent), "%s", vm->dir);
	char *slash = strrchr(k.dir_parent, '/');
	if (slash)
		*slash = '\0';
	husk_vm_forget(vm); /* our copies of its lock, log and QMP fds */
	watch(&k, lifeline);
	if (k.vmm_pidfd >= 0)
		close(k.vmm_pidfd);
	return 0;
}
