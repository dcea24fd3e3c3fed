/*
 * Prints this host's TSC frequency in kHz, for the guest kernel's
 * tsc_early_khz= parameter under QEMU TCG.
 *
 * Why: under TCG the guest's RDTSC returns the host's TSC, but the guest has
 * no reliable way to learn its rate: microvm has neither HPET nor an ACPI PM
 * timer, and calibrating against the emulated PIT fails whenever the QEMU
 * thread is preempted (the kernel rejects samples whose spread exceeds 10x).
 * The kernel then marks the TSC unstable and hangs in calibrate_delay(),
 * waiting for timer ticks that never come. Under KVM, kvmclock tells the
 * guest the rate and none of this is needed.
 *
 * How: TSC ticks against CLOCK_MONOTONIC_RAW over 200 ms; each end point is
 * the tightest of several RDTSC pairs around clock_gettime(), so a
 * preemption at either end cannot skew the result.
 *
 * usage: tsc-khz     (prints e.g. 2096004)
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#if !defined(__x86_64__) && !defined(__i386__)
#error "tsc-khz measures the x86 time stamp counter"
#endif

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("lfence; rdtsc" : "=a"(lo), "=d"(hi)::"memory");
	return ((uint64_t)hi << 32) | lo;
}

static uint64_t ns_of(const struct timespec *ts)
{
	return (uint64_t)ts->tv_sec * 1000000000u + (uint64_t)ts->tv_nsec;
}

/* One (tsc, ns) point: the narrowest of 32 brackets. */
static int sample(uint64_t *tsc, uint64_t *ns)
{
	uint64_t best = UINT64_MAX;

	for (int i = 0; i < 32; i++) {
		struct timespec ts;
		uint64_t t0 = rdtsc();

		if (clock_gettime(CLOCK_MONOTONIC_RAW, &ts) < 0)
			return -errno;
		uint64_t t1 = rdtsc();

		if (t1 - t0 < best) {
			best = t1 - t0;
			*tsc = t0 + (t1 - t0) / 2;
			*ns = ns_of(&ts);
		}
	}
	return 0;
}

int main(void)
{
	const struct timespec pause = { .tv_sec = 0, .tv_nsec = 200 * 1000 * 1000 };
	uint64_t tsc0, ns0, tsc1, ns1;
	int r;

	r = sample(&tsc0, &ns0);
	if (r == 0) {
		while (nanosleep(&pause, NULL) < 0 && errno == EINTR)
			;
		r = sample(&tsc1, &ns1);
	}
	if (r < 0) {
		fprintf(stderr, "tsc-khz: clock_gettime(CLOCK_MONOTONIC_RAW): %s\n", strerror(-r));
		return 1;
	}
	if (ns1 <= ns0 || tsc1 <= tsc0) {
		fprintf(stderr, "tsc-khz: the TSC or the clock did not advance\n");
		return 1;
	}
	/* kHz = ticks / ms, rounded to nearest */
	printf("%llu\n", (unsigned long long)(((tsc1 - tsc0) * 1000000u + (ns1 - ns0) / 2) / (ns1 - ns0)));
	return 0;
}
