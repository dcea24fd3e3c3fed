/* Files: see husk/file.h. */
#include "husk/file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "husk/cleanup.h"
#include "husk/path.h"

/* "16 MiB" for whole MiB, else "1000 bytes": as limits are written. */
static const char *limit_str(size_t max, char *buf, size_t size)
{
	if (max && max % (1u << 20) == 0)
		snprintf(buf, size, "%zu MiB", max >> 20);
	else
		snprintf(buf, size, "%zu bytes", max);
	return buf;
}

int husk_read_fd(int fd, const char *name, size_t max, char **out, size_t *len_out,
		 struct husk_err *err)
{
	*out = NULL;
	if (len_out)
		*len_out = 0;
	char lim[32];
	/* Room for one byte past `max` (which tells a file over the limit)
	 * and the NUL. */
	if (max > SIZE_MAX - 2)
		max = SIZE_MAX - 2;
	size_t cap = 4096;
	struct stat st;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
		if ((uintmax_t)st.st_size > max)
			return husk_err_set(err, -EFBIG, "%s: %jd bytes is more than the %s limit",
					    name, (intmax_t)st.st_size,
					    limit_str(max, lim, sizeof(lim)));
		/* One byte more than the size sees EOF in the first pass. */
		cap = (size_t)st.st_size + 1;
	}
	if (cap > max + 1)
		cap = max + 1;
	_cleanup_free_ char *buf = malloc(cap + 1);
	if (!buf)
		return husk_err_set(err, -ENOMEM, "read %s: out of memory", name);
	size_t len = 0;
	for (;;) {
		if (len == cap) {
			/* Read to EOF, not to st_size: a file that grew past
			 * the limit meanwhile is refused too. */
			if (len > max)
				return husk_err_set(err, -EFBIG, "%s: more than the %s limit", name,
						    limit_str(max, lim, sizeof(lim)));
			size_t ncap = cap > (max + 1) / 2 ? max + 1 : cap * 2;
			char *nb = realloc(buf, ncap + 1);
			if (!nb)
				return husk_err_set(err, -ENOMEM, "read %s: out of memory", name);
			buf = nb;
			cap = ncap;
		}
		ssize_t n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return husk_err_sys(err, -errno, "read %s", name);
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	*out = take_ptr(buf);
	if (len_out)
		*len_out = len;
	return 0;
}

int husk_read_file_at(int dirfd, const char *path, size_t max, char **out, size_t *len,
		      struct husk_err *err)
{
	*out = NULL;
	if (len)
		*len = 0;
	_cleanup_fd_ int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return husk_err_sys(err, -errno, "open %s", path);
	return husk_read_fd(fd, path, max, out, len, err);
}

int husk_read_file(const char *path, size_t max, char **out, size_t *len, struct husk_err *err)
{
	return husk_read_file_at(AT_FDCWD, path, max, out, len, err);
}

int husk_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		/* write(2) returns 0 only for len 0; never spin on it. */
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int husk_mkdir_p(const char *path, mode_t mode, struct husk_err *err)
{
	char buf[PATH_MAX];
	if (!*path)
		return husk_err_set(err, -ENOENT, "mkdir: empty path");
	if (husk_path_fmt(buf, sizeof(buf), "%s", path) < 0)
		return husk_err_set(err, -ENAMETOOLONG, "mkdir: path too long (%zu bytes): %s",
				    strlen(path), path);
	size_t n = strlen(buf);
	while (n > 1 && buf[n - 1] == '/')
		buf[--n] = '\0';
	/* Each prefix ending at a '/' (and the whole path) in turn. EEXIST
	 * also covers existing ancestors the caller may not write to. */
	for (char *p = buf + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		if (mkdir(buf, mode) < 0 && errno != EEXIST)
			return husk_err_sys(err, -errno, "mkdir %s", buf);
		*p = c;
		if (!c)
			break;
	}
	/* EEXIST above may have been a file of that name. */
	struct stat st;
	if (stat(buf, &st) < 0)
		return husk_err_sys(err, -errno, "mkdir %s", buf);
	if (!S_ISDIR(st.st_mode))
		return husk_err_set(err, -ENOTDIR, "mkdir %s: not a directory", buf);
	return 0;
}

void husk_strv_free(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}
