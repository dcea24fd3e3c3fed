/* Seeding the guest kernel's random pool.
 *
 * A fresh VM has little entropy; getrandom(2) blocks until the kernel's
 * CRNG is initialised (kernels before 5.18 could block for a long time; 5.18
 * and later fall back on a jitter dance that is slow under TCG). Seed bytes
 * written to /dev/urandom are mixed in but not credited; crediting needs
 * ioctl(RNDADDENTROPY) and CAP_SYS_ADMIN, which PID 1 has.
 *
 * Sources, in the order the agent uses them:
 *   - virtio-rng (/dev/hwrng), when the VM has one: init_seed_from_hwrng().
 *     (The kernel's hwrng core also feeds the pool from it by itself; the
 *     explicit read makes the CRNG ready before the agent's first
 *     getrandom.)
 *   - a seed the host sends later through the Sandbox service:
 *     init_seed_entropy().
 * Never on the kernel command line: /proc/cmdline is world-readable. */
#ifndef INIT_ENTROPY_H
#define INIT_ENTROPY_H

#include <stddef.h>

#include "husk/error.h"

/* The most bytes one call takes. */
#define INIT_ENTROPY_MAX 512

/* Writes `len` bytes (1..INIT_ENTROPY_MAX) to /dev/urandom, then credits
 * them (8 bits per byte) with ioctl(RNDADDENTROPY) on /dev/random. The
 * bytes must be truly random: they are credited at full value. -EPERM
 * without CAP_SYS_ADMIN (the bytes are mixed in all the same). */
int init_seed_entropy(const void *seed, size_t len, struct husk_err *err);

/* Reads up to `nbytes` (1..INIT_ENTROPY_MAX) from `path` and seeds them as
 * above. Returns the number of bytes seeded, or a negative errno. */
int init_seed_from_device(const char *path, size_t nbytes, struct husk_err *err);

/* Bytes init_seed_from_hwrng takes: 256 bits fully initialise the CRNG. */
#define INIT_HWRNG_SEED_BYTES 64

/* init_seed_from_device("/dev/hwrng", INIT_HWRNG_SEED_BYTES) when the
 * kernel has a current hwrng (/sys/class/misc/hw_random/rng_current is not
 * "none"); returns 0 without doing anything when there is none. */
int init_seed_from_hwrng(struct husk_err *err);

#endif
