/*
 * The smallest possible guest PID 1 for tests/boot/boot-test.sh: prove the
 * kernel reached userspace, then power the VM off the way husk-agent does.
 *
 * The kernel opens /dev/console (from its built-in initramfs) as fds 0-2
 * before it runs /init, so writing to fd 1 reaches the serial console.
 *
 * With husk_test=pwrbtn on the kernel command line (the kernel hands
 * unknown name=value words to init as environment), it first waits for
 * SIGPWR: the ACPI tiny power button driver sends it to PID 1 when the host
 * asks QEMU for system_powerdown.
 *
 * Built static (musl-gcc or gcc -static); depends on nothing else.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/reboot.h>
#include <unistd.h>

static void say(const char *s)
{
	size_t len = strlen(s);

	while (len > 0) {
		ssize_t n = write(STDOUT_FILENO, s, len);

		if (n <= 0)
			return;
		s += n;
		len -= (size_t)n;
	}
}

int main(void)
{
	const char *mode = getenv("husk_test");

	if (mode != NULL && strcmp(mode, "pwrbtn") == 0) {
		sigset_t set;
		siginfo_t si;

		sigemptyset(&set);
		sigaddset(&set, SIGPWR);
		/* Blocked before announcing readiness, so no signal is lost. */
		sigprocmask(SIG_BLOCK, &set, NULL);
		say("husk-boot-ok waiting for SIGPWR\n");
		while (sigwaitinfo(&set, &si) < 0)
			;
		say("husk-pwrbtn-ok\n");
	} else {
		say("husk-boot-ok\n");
	}

	/*
	 * ACPI S5 through microvm's GED: QEMU exits. Should the kernel find no
	 * way to power off, it ends the calling task instead, PID 1 dies, the
	 * kernel panics and panic=-1 resets, which QEMU's -no-reboot turns
	 * into an exit as well. The call returns only on error (EPERM).
	 */
	reboot(RB_POWER_OFF);
	say("husk-boot: reboot(RB_POWER_OFF) failed, trying RB_AUTOBOOT\n");
	reboot(RB_AUTOBOOT);
	return 1;
}
