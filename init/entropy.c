/* Seeding the kernel's random pool: see init/entropy.h. */
#include "init/entropy.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/random.h>

#include "husk/cleanup.h"
#include "husk/file.h"
#include "init/console.h"

int init_seed_entropy(const void *seed, size_t len, struct husk_err *err)
{
	if (len == 0 || len > INIT_ENTROPY_MAX)
		return husk_err_set(err, -EINVAL, "entropy seed: %zu bytes (expected 1..%d)", len,
				    INIT_ENTROPY_MAX);

	_cleanup_fd_ int ufd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
	if (ufd < 0)
		return husk_err_sys(err, -errno, "open /dev/urandom");
	int r = husk_write_all(ufd, seed, len);
	if (r < 0)
		return husk_err_sys(err, r, "write %zu bytes to /dev/urandom", len);

	/* rand_pool_info ends in a flexible array of u32: size it in words. */
	size_t words = (len + 3) / 4;
	_cleanup_free_ struct rand_pool_info *info =
		calloc(1, sizeof(*info) + words * sizeof(info->buf[0]));
	if (!info)
		return husk_err_set(err, -ENOMEM, "entropy seed: out of memory");
	info->entropy_count = (int)(len * 8);
	info->buf_size = (int)len;
	memcpy(info->buf, seed, len);

	_cleanup_fd_ int rfd = open("/dev/random", O_WRONLY | O_CLOEXEC);
	if (rfd < 0)
		r = -errno;
	else if (ioctl(rfd, RNDADDENTROPY, info) < 0)
		r = -errno;
	/* The seed is secret: do not leave a copy on the heap. */
	explicit_bzero(info->buf, len);
	if (r < 0)
		return husk_err_sys(err, r, "credit %zu bytes with RNDADDENTROPY on /dev/random",
				    len);
	return 0;
}

int init_seed_from_device(const char *path, size_t nbytes, struct husk_err *err)
{
	if (nbytes == 0 || nbytes > INIT_ENTROPY_MAX)
		return husk_err_set(err, -EINVAL, "entropy from %s: %zu bytes (expected 1..%d)",
				    path, nbytes, INIT_ENTROPY_MAX);
	_cleanup_fd_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return husk_err_sys(err, -errno, "open %s", path);
	unsigned char buf[INIT_ENTROPY_MAX];
	size_t len = 0;
	/* Blocking reads: /dev/hwrng has no poll method, so O_NONBLOCK plus
	 * poll would spin. A present virtio-rng answers promptly. */
	while (len < nbytes) {
		ssize_t n = read(fd, buf + len, nbytes - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int r = -errno;
			explicit_bzero(buf, sizeof(buf));
			return husk_err_sys(err, r, "read %s", path);
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len == 0)
		return husk_err_set(err, -EIO, "read %s: no data", path);
	int r = init_seed_entropy(buf, len, err);
	explicit_bzero(buf, sizeof(buf));
	if (r < 0) {
		husk_err_wrap(err, "seed from %s", path);
		return r;
	}
	init_log(INIT_LOG_DEBUG, "seeded %zu bytes of entropy from %s", len, path);
	return (int)len;
}

int init_seed_from_hwrng(struct husk_err *err)
{
	char cur[64] = "";
	_cleanup_fd_ int fd = open("/sys/class/misc/hw_random/rng_current", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0; /* no hw_random support at all */
	ssize_t n = read(fd, cur, sizeof(cur) - 1);
	if (n <= 0)
		return 0;
	cur[n] = '\0';
	if (strncmp(cur, "none", 4) == 0)
		return 0;
	return init_seed_from_device("/dev/hwrng", INIT_HWRNG_SEED_BYTES, err);
}
