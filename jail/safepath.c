/* Lookups confined to a root directory (see jail/safepath.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "husk/cleanup.h"
#include "jail/safepath.h"

#ifndef SYS_openat2
#define SYS_openat2 437
#endif

/* The kernel's MAXSYMLINKS: the 41st symlink of one lookup is ELOOP. */
#define MAX_SYMLINKS 40
/* openat2 RESOLVE_IN_ROOT answers EAGAIN when a rename or mount raced the
 * lookup; retrying is what the kernel documents. */
#define OPENAT2_TRIES 64

static int resolve_openat2(int root_fd, const char *path, int flags, mode_t mode)
{
	struct open_how how = {
		.flags = (uint64_t)(unsigned)(flags | O_CLOEXEC),
		.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
	};
	/* openat2 refuses a mode without O_CREAT or O_TMPFILE. */
	if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE)
		how.mode = mode;
	for (int i = 0; i < OPENAT2_TRIES; i++) {
		long fd = syscall(SYS_openat2, root_fd, path, &how, sizeof(how));
		if (fd >= 0)
			return (int)fd;
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
	}
	return -EAGAIN;
}

/* The directories walked so far, root first: ".." pops one (never the
 * root), an absolute symlink pops back to the root. Holding fds rather than
 * names means a directory renamed behind our back cannot move us out. */
struct fd_stack {
	int *fds;
	size_t n, cap;
};

static void stack_free(struct fd_stack *s)
{
	for (size_t i = 0; i < s->n; i++)
		close(s->fds[i]);
	free(s->fds);
}

static int stack_push(struct fd_stack *s, int fd)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		int *fds = realloc(s->fds, cap * sizeof(*fds));
		if (!fds) {
			close(fd);
			return -ENOMEM;
		}
		s->fds = fds;
		s->cap = cap;
	}
	s->fds[s->n++] = fd;
	return 0;
}

static void stack_pop_to(struct fd_stack *s, size_t n)
{
	while (s->n > n)
		close(s->fds[--s->n]);
}

static int resolve_walk(int root_fd, const char *path, int flags, mode_t mode)
{
	if (!*path)
		return -ENOENT;
	_cleanup_free_ char *buf = strdup(path); /* what is left to resolve */
	if (!buf)
		return -ENOMEM;
	struct fd_stack st = { 0 };
	int r;
	int fd = openat(root_fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if ((r = stack_push(&st, fd)) < 0)
		goto out;

	size_t pos = 0;
	int hops = 0;
	for (;;) {
		int top = st.fds[st.n - 1];
		while (buf[pos] == '/')
			pos++;
		if (!buf[pos]) {
			/* Ended on the root, ".", ".." or a trailing slash. */
			r = openat(top, ".", flags | O_CLOEXEC, mode);
			r = r < 0 ? -errno : r;
			goto out;
		}
		size_t start = pos;
		while (buf[pos] && buf[pos] != '/')
			pos++;
		size_t len = pos - start, after = pos;
		while (buf[after] == '/')
			after++;
		bool last = !buf[after];
		bool trailing_slash = last && after > pos;
		if (len > NAME_MAX) {
			r = -ENAMETOOLONG;
			goto out;
		}
		char name[NAME_MAX + 1];
		memcpy(name, buf + start, len);
		name[len] = '\0';
		if (!strcmp(name, "."))
			continue;
		if (!strcmp(name, "..")) {
			if (st.n > 1)
				stack_pop_to(&st, st.n - 1);
			continue;
		}
		bool final = last && !trailing_slash;

		fd = openat(top, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			r = -errno;
			if (r == -ENOENT && final && (flags & O_CREAT)) {
				r = openat(top, name, flags | O_NOFOLLOW | O_CLOEXEC, mode);
				r = r < 0 ? -errno : r;
			}
			goto out;
		}
		struct stat s;
		if (fstat(fd, &s) < 0) {
			r = -errno;
			close(fd);
			goto out;
		}

		if (S_ISLNK(s.st_mode)) {
			if (final && (flags & O_NOFOLLOW)) {
				/* O_PATH|O_NOFOLLOW opens the link itself. */
				if (flags & O_PATH) {
					r = fd;
					goto out;
				}
				close(fd);
				r = -ELOOP;
				goto out;
			}
			if (final && (flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL)) {
				close(fd);
				r = -EEXIST;
				goto out;
			}
			if (++hops > MAX_SYMLINKS) {
				close(fd);
				r = -ELOOP;
				goto out;
			}
			char target[PATH_MAX];
			ssize_t n = readlinkat(fd, "", target, sizeof(target));
			r = n < 0 ? -errno : 0;
			close(fd);
			if (r < 0)
				goto out;
			if ((size_t)n >= sizeof(target)) {
				r = -ENAMETOOLONG;
				goto out;
			}
			if (n == 0) {
				r = -ENOENT;
				goto out;
			}
			target[n] = '\0';
			/* The link's text replaces its name in what is left
			 * (which starts with the '/' after the name, if any). */
			size_t rest = strlen(buf + pos);
			char *nb = malloc((size_t)n + rest + 1);
			if (!nb) {
				r = -ENOMEM;
				goto out;
			}
			memcpy(nb, target, (size_t)n);
			memcpy(nb + n, buf + pos, rest + 1);
			free(buf);
			buf = nb;
			pos = 0;
			if (target[0] == '/')
				stack_pop_to(&st, 1);
			continue;
		}

		if (!final) {
			if (!S_ISDIR(s.st_mode)) {
				close(fd);
				r = -ENOTDIR;
				goto out;
			}
			if ((r = stack_push(&st, fd)) < 0)
				goto out;
			continue;
		}

		if ((flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL)) {
			close(fd);
			r = -EEXIST;
			goto out;
		}
		if (flags & O_PATH) {
			if ((flags & O_DIRECTORY) && !S_ISDIR(s.st_mode)) {
				close(fd);
				r = -ENOTDIR;
				goto out;
			}
			r = fd;
			goto out;
		}
		close(fd);
		/* O_NOFOLLOW: if a symlink was swapped in since the check, fail
		 * with ELOOP rather than follow it outside the root. */
		r = openat(top, name, flags | O_NOFOLLOW | O_CLOEXEC, mode);
		r = r < 0 ? -errno : r;
		goto out;
	}
out:
	stack_free(&st);
	return r;
}

static int resolve(enum jail_resolve how, int root_fd, const char *path, int flags, mode_t mode)
{
	if (how == JAIL_RESOLVE_AUTO) {
		int r = resolve_openat2(root_fd, path, flags, mode);
		if (r != -ENOSYS)
			return r;
	}
	return resolve_walk(root_fd, path, flags, mode);
}

int jail_openat_in_root_with(enum jail_resolve how, int root_fd, const char *path, int flags,
			     mode_t mode, struct husk_err *err)
{
	int r = resolve(how, root_fd, path, flags, mode);
	if (r < 0)
		return husk_err_sys(err, r, "open %s", path);
	return r;
}

int jail_openat_in_root(int root_fd, const char *path, int flags, mode_t mode,
			struct husk_err *err)
{
	return jail_openat_in_root_with(JAIL_RESOLVE_AUTO, root_fd, path, flags, mode, err);
}

int jail_mkdir_all_in_root_with(enum jail_resolve how, int root_fd, const char *path, mode_t mode,
				int *out_fd, struct husk_err *err)
{
	*out_fd = -1;
	_cleanup_free_ char *prefix = strdup(path);
	if (!prefix)
		return husk_err_sys(err, -ENOMEM, "mkdir %s", path);
	_cleanup_fd_ int cur = openat(root_fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (cur < 0)
		return husk_err_sys(err, -errno, "mkdir %s: open root", path);

	/* Each prefix is resolved from the root again, so a symlink met on
	 * the way is followed the confined way; mkdirat then creates the one
	 * missing name inside the directory that resolution returned. */
	size_t pos = 0;
	for (;;) {
		while (path[pos] == '/')
			pos++;
		if (!path[pos])
			break;
		size_t start = pos;
		while (path[pos] && path[pos] != '/')
			pos++;
		memcpy(prefix, path, pos);
		prefix[pos] = '\0';
		const char *name = prefix + start;

		int fd = resolve(how, root_fd, prefix, O_PATH | O_DIRECTORY, 0);
		if (fd == -ENOENT && strcmp(name, ".") && strcmp(name, "..")) {
			if (mkdirat(cur, name, mode) < 0 && errno != EEXIST)
				return husk_err_sys(err, -errno, "mkdir %s: %s", path, prefix);
			fd = resolve(how, root_fd, prefix, O_PATH | O_DIRECTORY, 0);
		}
		if (fd < 0)
			return husk_err_sys(err, fd, "mkdir %s: %s", path, prefix);
		close(cur);
		cur = fd;
	}
	*out_fd = take_fd(&cur);
	return 0;
}

int jail_mkdir_all_in_root(int root_fd, const char *path, mode_t mode, int *out_fd,
			   struct husk_err *err)
{
	return jail_mkdir_all_in_root_with(JAIL_RESOLVE_AUTO, root_fd, path, mode, out_fd, err);
}

int jail_mkfile_in_root_with(enum jail_resolve how, int root_fd, const char *path, mode_t mode,
			     int *out_fd, struct husk_err *err)
{
	*out_fd = -1;
	_cleanup_free_ char *dir = strdup(path);
	if (!dir)
		return husk_err_sys(err, -ENOMEM, "create %s", path);
	char *slash = strrchr(dir, '/');
	const char *name = slash ? slash + 1 : dir;
	if (!*name || !strcmp(name, ".") || !strcmp(name, ".."))
		return husk_err_set(err, -EINVAL, "create %s: not a file name", path);
	if (slash)
		slash[slash == dir ? 1 : 0] = '\0';
	else
		strcpy(dir, ".");

	_cleanup_fd_ int dfd = -1;
	int r = jail_mkdir_all_in_root_with(how, root_fd, dir, 0755, &dfd, err);
	if (r < 0)
		return r;
	int fd = resolve(how, root_fd, path, O_PATH, 0);
	if (fd == -ENOENT) {
		/* Through the resolver, so a dangling symlink is followed
		 * confined; O_NONBLOCK so that a fifo raced in cannot block. */
		int w = resolve(how, root_fd, path, O_CREAT | O_WRONLY | O_NONBLOCK | O_NOCTTY, mode);
		if (w < 0)
			return husk_err_sys(err, w, "create %s", path);
		close(w);
		fd = resolve(how, root_fd, path, O_PATH, 0);
	}
	if (fd < 0)
		return husk_err_sys(err, fd, "create %s", path);
	*out_fd = fd;
	return 0;
}

int jail_mkfile_in_root(int root_fd, const char *path, mode_t mode, int *out_fd,
			struct husk_err *err)
{
	return jail_mkfile_in_root_with(JAIL_RESOLVE_AUTO, root_fd, path, mode, out_fd, err);
}
