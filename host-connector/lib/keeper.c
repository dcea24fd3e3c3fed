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

int husk_pool_keep(const struct husk_vm_config *cfg_in, int report, int lifeline,
		   struct husk_err *err)
{
	struct husk_vm_config cfg = *cfg_in;
	cfg.die_with_parent = true;
	cfg.pool = "off";
	struct husk_vm *vm = NULL;
	int r = husk_vm_start(&cfg, &vm, err);
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
