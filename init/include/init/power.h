/* Ending the guest.
 *
 * SAFETY: reboot(2) and kill(-1, ...) are reached only when
 * init_is_husk_guest() holds: we are PID 1 AND /proc/cmdline carries a
 * husk.* key. On a host (tests, `husk-agent --listen`, or PID 1 of a
 * container's PID namespace, whose /proc/cmdline is the host's) neither
 * holds, and init_poweroff() only prints and exits. */
#ifndef INIT_POWER_H
#define INIT_POWER_H

#include <stdbool.h>

/* getpid() == 1 and /proc/cmdline has a husk.* word. */
bool init_is_husk_guest(void);

/* In the guest: writes "powering off: REASON" to stderr and /dev/console,
 * syncs, SIGKILLs every other process, detaches the mounts it can, syncs
 * again, then
 *   - reboot(RB_POWER_OFF) when the kernel has ACPI (/sys/firmware/acpi;
 *     QEMU microvm's DSDT has _S5): QEMU exits;
 *   - otherwise reboot(RB_AUTOBOOT): with QEMU's -no-reboot the reset
 *     makes QEMU exit. RB_POWER_OFF is not tried then: without a power-off
 *     method the kernel turns it into a halt, and the VM would hang.
 * If reboot returns anyway, RB_AUTOBOOT is tried, then it waits forever.
 * (Neither call returns on Linux: a failing power-off ends PID 1 and the
 * kernel panics; the host passes panic=-1 so that too exits QEMU.)
 *
 * Anywhere else: writes the reason to stderr and _exit(1). */
__attribute__((noreturn)) void init_poweroff(const char *reason);

#endif
