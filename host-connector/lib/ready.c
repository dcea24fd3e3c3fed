/* Readiness: the VM is ready when its agent answers Sandbox.Check. There is
 * no fixed delay and no console scraping. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>

#include "vmm.h"

#define CHECK_TIMEOUT_MS 2000
/* Without the log stream, Check is tried only from this long after
 * launch, every FALLBACK_EVERY_MS. */
#define FALLBACK_AFTER_MS 2000
#define FALLBACK_EVERY_MS 250
#define RETRY_MS 10
/* husk-vsockd leaves when the VMM disconnects from it: when it goes, the
 * VMM is given this long to show whether it went first. */
#define VMM_EXIT_GRACE_MS 1000

static const char *program(const struct husk_vm *vm)
{
	return vm->vmm ? vm->vmm->program : vm->vmm_name;
}

/* Which process ended the boot: the VMM, when it has exited too. Its
 * death takes husk-vsockd with it, and either pidfd may turn readable
 * first; blaming husk-vsockd then hides what the VMM said. */
static const char *who_exited(struct husk_vm *vm, bool vmm_fired)
{
	if (vmm_fired || vm->vmm_pidfd < 0)
		return vmm_fired ? program(vm) : "husk-vsockd";
	struct pollfd p = { .fd = vm->vmm_pidfd, .events = POLLIN };
	return poll(&p, 1, VMM_EXIT_GRACE_MS) == 1 ? program(vm) : "husk-vsockd";
}

int husk_wait_ready(struct husk_vm *vm, unsigned timeout_ms, uint64_t t0, struct husk_err *err)
{
	uint64_t deadline = t0 + (uint64_t)timeout_ms * 1000000u;
	struct husk_err last = { 0 };
	/* The agent connects its log stream (port 1025) just after it starts
	 * listening on 1024: that is the event to wait for. Check is tried
	 * without it only as a fallback for an agent that cannot connect, from
	 * 2 s on and every 250 ms: each refused try costs the booting guest an
	 * RST to send, and one sent before the guest's vsock driver is up waits
	 * in husk-vsockd until it is. */
	uint64_t next_try = vm->log_listen_fd >= 0 ? t0 + FALLBACK_AFTER_MS * 1000000ull : 0;
	for (;;) {
		bool awaiting_log = vm->log_listen_fd >= 0 && vm->log_fd < 0;
		struct husk_agent *a = NULL;
		uint64_t now = husk_monotonic_ns();
		if (now >= next_try && husk_agent_open(vm, CHECK_TIMEOUT_MS, &a, &last) == 0) {
			int r = husk_agent_check(a, NULL, 0, &last);
			husk_agent_close(a);
			if (r == 0) {
				vm->boot_ns = husk_monotonic_ns() - t0;
				husk_log_accept(vm);
				husk_log_listener_close(vm);
				return 0;
			}
		}
		if (now >= next_try)
			next_try = now + (awaiting_log ? FALLBACK_EVERY_MS : RETRY_MS) * 1000000ull;
		/* Sleep on the pidfds (a dying VMM or husk-vsockd wakes us) and
		 * the log listener (the agent is up). */
		struct pollfd p[3] = { { .fd = vm->vmm_pidfd, .events = POLLIN },
				       { .fd = vm->vsockd_pidfd, .events = POLLIN },
				       { .fd = vm->log_listen_fd, .events = POLLIN } };
		now = husk_monotonic_ns();
		int wait_ms = next_try > now ? (int)((next_try - now) / 1000000u) + 1 : 0;
		int n = poll(p, 3, wait_ms);
		if (n > 0 && p[2].revents) {
			husk_log_accept(vm);
			if (vm->log_fd >= 0)
				next_try = 0; /* try Check now */
			n -= 1;
		}
		if (n > 0) {
			const char *who = who_exited(vm, p[0].revents != 0);
			char tail[1024];
			husk_file_tail(vm->console, tail, sizeof(tail));
			return husk_err_set(err, -ECHILD, "%s exited while the VM booted; console: %s",
					    who, tail);
		}
		if (husk_monotonic_ns() >= deadline) {
			char tail[1024];
			husk_file_tail(vm->console, tail, sizeof(tail));
			return husk_err_set(err, -ETIMEDOUT,
					    "the agent did not answer within %u ms (%s); console: %s",
					    timeout_ms,
					    last.msg[0] ? last.msg :
					    vm->log_listen_fd >= 0 ? "it never connected its log stream" :
								     "it never answered",
					    tail);
		}
	}
}
