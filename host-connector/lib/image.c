/* Rootfs directories as cached erofs images (husk_image_from_dir).
 *
 * An image is named by a SHA-256 "content identity" of the tree: every
 * entry's relative path, type, mode, owner, size, mtime (ns), device number,
 * link target and xattrs (mkfs.erofs copies them), in a deterministic walk
 * (names sorted bytewise at every level, symlinks never followed), plus the
 * identity of the mkfs.erofs that builds it (version string, binary size and
 * mtime) and the options passed to it. File contents are not read: a change
 * that keeps both size and mtime goes unnoticed, as with make.
 *
 * Layout of the cache directory (0700):
 *   <sha256>.erofs                the images (0444); mtime = built, atime = last use
 *   .<sha256>.lock                exists only while a builder holds it
 *   .<sha256>.tmp.XXXXXX          an image being built (removed on failure)
 *   .mkfs-version.<16 hex>        mkfs.erofs's version string, keyed by the
 *                                 binary's inode, size and times, so a cache
 *                                 hit runs no program at all
 *
 * A future GC evicts by atime: a hit sets atime explicitly (independent of
 * relatime/noatime mounts); it must take the image's lock before unlinking.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "husk.h"
#include "husk/cleanup.h"
#include "husk/path.h"

extern char **environ;

#define MKFS_NAME "mkfs.erofs"
/* Part of the identity: changing how images are built changes every name. */
#define IMAGE_FORMAT "husk-erofs-v1"
#define MKFS_OPTIONS "--quiet" /* uncompressed, owners and mtimes kept */
#define EROFS_SUPER_OFFSET 1024
#define EROFS_SUPER_MAGIC_V1 0xE0F5E1E2u
#define SHA256_HEX_LEN 64
#define OUTPUT_TAIL_MAX 4096

/* ---- default location ------------------------------------------------------ */

const char *husk_default_image_cache(char *buf, size_t len)
{
	const char *env = getenv("HUSK_IMAGE_CACHE");
	if (env && *env)
		return husk_path_fmt(buf, len, "%s", env) ? NULL : buf;
	if (geteuid() == 0)
		return husk_path_fmt(buf, len, "/var/cache/husk/images") ? NULL : buf;
	/* The XDG spec says to ignore a relative XDG_CACHE_HOME. */
	env = getenv("XDG_CACHE_HOME");
	if (env && env[0] == '/')
		return husk_path_fmt(buf, len, "%s/husk/images", env) ? NULL : buf;
	env = getenv("HOME");
	if (env && *env)
		return husk_path_fmt(buf, len, "%s/.cache/husk/images", env) ? NULL : buf;
	struct passwd pw, *res = NULL;
	char pwbuf[4096];
	if (getpwuid_r(geteuid(), &pw, pwbuf, sizeof(pwbuf), &res) || !res || !res->pw_dir ||
	    !*res->pw_dir)
		return NULL;
	return husk_path_fmt(buf, len, "%s/.cache/husk/images", res->pw_dir) ? NULL : buf;
}

/* ---- small helpers ------------------------------------------------------------ */

static void freep_evp(EVP_MD_CTX **ctx)
{
	EVP_MD_CTX_free(*ctx);
}

static void closedirp(DIR **d)
{
	if (*d)
		closedir(*d);
}

/* mkdir -p: components created here get `mode`. */
static int mkdir_p(const char *path, mode_t mode, struct husk_err *err)
{
	char buf[PATH_MAX];
	if (husk_path_fmt(buf, sizeof(buf), "%s", path))
		return husk_err_set(err, -ENAMETOOLONG, "image cache %s: path too long", path);
	size_t n = strlen(buf);
	while (n > 1 && buf[n - 1] == '/')
		buf[--n] = '\0';
	for (char *p = buf + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		if (mkdir(buf, mode) < 0 && errno != EEXIST)
			return husk_err_sys(err, -errno, "create image cache %s", buf);
		*p = c;
		if (!c)
			break;
	}
	struct stat st;
	if (stat(buf, &st) < 0)
		return husk_err_sys(err, -errno, "image cache %s", buf);
	if (!S_ISDIR(st.st_mode))
		return husk_err_set(err, -ENOTDIR, "image cache %s: not a directory", buf);
	return 0;
}

/* An executable regular file named `name` in $PATH, like execvp. */
static int find_in_path(const char *name, char *out, size_t len, struct stat *st,
			struct husk_err *err)
{
	const char *path = getenv("PATH");
	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin";
	for (const char *p = path;;) {
		const char *end = strchrnul(p, ':');
		int dlen = (int)(end - p);
		/* An empty element means the current directory (POSIX). */
		if (husk_path_fmt(out, len, "%.*s/%s", dlen ? dlen : 1, dlen ? p : ".", name) == 0 &&
		    stat(out, st) == 0 && S_ISREG(st->st_mode) && access(out, X_OK) == 0)
			return 0;
		if (!*end)
			break;
		p = end + 1;
	}
	out[0] = '\0';
	return husk_err_set(err, -ENOENT,
			    "%s not found in PATH (%s): install erofs-utils to build rootfs images",
			    name, path);
}

/* What to quote from mkfs.erofs's output: its error lines ("<E> ...") if
 * any, else its last lines (a usage text would bury the error), joined with
 * " | " and with control characters as spaces, within `max`. */
static void summarize_output(const char *text, char *out, size_t max)
{
	const char *lines[4], *errs[4];
	size_t n_lines = 0, n_err = 0;
	for (const char *l = text; *l;) {
		const char *nl = strchrnul(l, '\n');
		const char *t = l;
		while (t < nl && isspace((unsigned char)*t))
			t++;
		if (t < nl) {
			/* Keep the last ARRAY_SIZE() of each. */
			if (n_lines == ARRAY_SIZE(lines)) {
				memmove(lines, lines + 1, sizeof(lines) - sizeof(lines[0]));
				n_lines--;
			}
			lines[n_lines++] = t;
			if (!strncmp(t, "<E>", 3)) {
				if (n_err == ARRAY_SIZE(errs)) {
					memmove(errs, errs + 1, sizeof(errs) - sizeof(errs[0]));
					n_err--;
				}
				errs[n_err++] = t;
			}
		}
		l = *nl ? nl + 1 : nl;
	}
	const char **pick = n_err ? errs : lines;
	size_t n = n_err ? n_err : n_lines;
	size_t o = 0;
	out[0] = '\0';
	for (size_t i = 0; i < n && o + 4 < max; i++) {
		if (i) {
			memcpy(out + o, " | ", 3);
			o += 3;
		}
		const char *end = strchrnul(pick[i], '\n');
		while (end > pick[i] && isspace((unsigned char)end[-1]))
			end--;
		for (const char *c = pick[i]; c < end && o + 1 < max; c++)
			out[o++] = isprint((unsigned char)*c) ? *c : ' ';
	}
	out[o] = '\0';
}

/* Runs argv[0] (an absolute path) with stdin on /dev/null and stdout+stderr
 * into a pipe, of which the last OUTPUT_TAIL_MAX bytes land in `out`. The
 * child gets default signal dispositions, an empty mask (callers run event
 * loops with signals blocked for signalfd) and no SOURCE_DATE_EPOCH, which
 * would make mkfs.erofs clamp mtimes behind the identity's back. Returns 0
 * with the wait status in *status. */
static int run_capture(char *const argv[], char *out, size_t out_len, int *status,
		       struct husk_err *err)
{
	size_t n_env = 0;
	for (char **e = environ; e && *e; e++)
		n_env++;
	_cleanup_free_ char **envp = calloc(n_env + 1, sizeof(*envp));
	if (!envp)
		return husk_err_set(err, -ENOMEM, "spawn %s: out of memory", argv[0]);
	size_t k = 0;
	for (size_t i = 0; i < n_env; i++)
		if (strncmp(environ[i], "SOURCE_DATE_EPOCH=", 18) != 0)
			envp[k++] = environ[i];

	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return husk_err_sys(err, -errno, "spawn %s: pipe", argv[0]);
	_cleanup_fd_ int rd = p[0];
	_cleanup_fd_ int wr = p[1];

	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, wr, 1);
	posix_spawn_file_actions_adddup2(&fa, wr, 2);
	sigset_t set;
	sigemptyset(&set);
	posix_spawnattr_setsigmask(&attr, &set);
	sigfillset(&set);
	posix_spawnattr_setsigdefault(&attr, &set);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	pid_t pid;
	int r = posix_spawn(&pid, argv[0], &fa, &attr, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	if (r)
		return husk_err_sys(err, -r, "spawn %s", argv[0]);
	close(take_fd(&wr));

	/* Blocking reads until EOF (the child holds the only write end); when
	 * the buffer fills, its older half goes. */
	size_t len = 0;
	for (;;) {
		if (len == out_len - 1) {
			size_t keep = len / 2;
			memmove(out, out + len - keep, keep);
			len = keep;
		}
		ssize_t got = read(rd, out + len, out_len - 1 - len);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		len += (size_t)got;
	}
	out[len] = '\0';
	while (waitpid(pid, status, 0) < 0) {
		if (errno != EINTR)
			/* ECHILD: the caller ignores SIGCHLD or reaps everything. */
			return husk_err_sys(err, -errno, "wait for %s (pid %d)", argv[0], (int)pid);
	}
	return 0;
}

/* ---- mkfs.erofs identity ------------------------------------------------------- */

struct mkfs {
	char path[PATH_MAX];
	struct stat st;
	char version[128];
};

/* erofs-utils 1.5 has no --version; run without arguments it prints
 * "mkfs.erofs 1.5" on stdout before the usage error. */
static int mkfs_probe_version(const struct mkfs *m, char *out, size_t len, struct husk_err *err)
{
	char buf[OUTPUT_TAIL_MAX];
	char *argv[] = { (char *)m->path, NULL };
	int status;
	int r = run_capture(argv, buf, sizeof(buf), &status, err);
	if (r < 0)
		return r;
	out[0] = '\0';
	for (char *line = buf; *line;) {
		char *nl = strchrnul(line, '\n');
		if (strncmp(line, MKFS_NAME " ", strlen(MKFS_NAME) + 1) == 0) {
			snprintf(out, len, "%.*s", (int)(nl - line), line);
			break;
		}
		line = *nl ? nl + 1 : nl;
	}
	return 0;
}

/* The version string, from the cache directory's note keyed by the binary's
 * inode, size and times, else by running it (once per binary). */
static int mkfs_version(const char *cache, int cache_fd, struct mkfs *m, struct husk_err *err)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned md_len = 0;
	char key[512];
	int klen = snprintf(key, sizeof(key), "%s\n%ju %ju %jd %jd.%09ld %jd.%09ld", m->path,
			    (uintmax_t)m->st.st_dev, (uintmax_t)m->st.st_ino,
			    (intmax_t)m->st.st_size, (intmax_t)m->st.st_mtim.tv_sec,
			    m->st.st_mtim.tv_nsec, (intmax_t)m->st.st_ctim.tv_sec,
			    m->st.st_ctim.tv_nsec);
	if (klen < 0 || !EVP_Digest(key, (size_t)klen, md, &md_len, EVP_sha256(), NULL))
		return husk_err_set(err, -EIO, "sha256 of %s identity failed", m->path);
	char note[64];
	int o = snprintf(note, sizeof(note), ".mkfs-version.");
	for (unsigned i = 0; i < 8; i++)
		o += snprintf(note + o, sizeof(note) - (size_t)o, "%02x", md[i]);

	/* A note is valid only when complete (ends with a newline). */
	_cleanup_fd_ int fd = openat(cache_fd, note, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0) {
		char buf[sizeof(m->version) + 1];
		ssize_t n = read(fd, buf, sizeof(buf) - 1);
		if (n > 0 && buf[n - 1] == '\n') {
			memcpy(m->version, buf, (size_t)n - 1);
			m->version[n - 1] = '\0';
			return 0;
		}
	}

	int r = mkfs_probe_version(m, m->version, sizeof(m->version), err);
	if (r < 0)
		return husk_err_wrap(err, "version of %s", m->path);
	/* Best effort: a note that cannot be written only costs a probe. */
	char tmp[96];
	snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", note);
	char full[PATH_MAX];
	if (husk_path_fmt(full, sizeof(full), "%s/%s", cache, tmp))
		return 0;
	_cleanup_fd_ int tfd = mkostemp(full, O_CLOEXEC);
	if (tfd < 0)
		return 0;
	const char *name = strrchr(full, '/') + 1;
	char line[sizeof(m->version) + 1];
	int len = snprintf(line, sizeof(line), "%s\n", m->version);
	if (write(tfd, line, (size_t)len) != len || fsync(tfd) < 0 ||
	    renameat(cache_fd, name, cache_fd, note) < 0)
		unlinkat(cache_fd, name, 0);
	return 0;
}

/* ---- content identity ---------------------------------------------------------- */

struct walk {
	EVP_MD_CTX *md;
	char path[PATH_MAX]; /* relative to the rootfs; "" for the root */
	size_t path_len;
	const char *rootfs;      /* as given, for messages */
	const char *rootfs_real; /* absolute, for the xattr calls */
	struct husk_err *err;
};

/* The entry's path for messages. */
static const char *shown(const struct walk *w)
{
	return w->path[0] ? w->path : ".";
}

static int md_put(struct walk *w, const void *p, size_t n)
{
	if (!EVP_DigestUpdate(w->md, p, n))
		return husk_err_set(w->err, -EIO, "sha256 update failed");
	return 0;
}

static int md_u64(struct walk *w, uint64_t v)
{
	unsigned char b[8];
	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)(v >> (8 * i));
	return md_put(w, b, sizeof(b));
}

/* A length-prefixed byte string: no two field sequences hash alike. */
static int md_bytes(struct walk *w, const void *p, size_t n)
{
	int r = md_u64(w, n);
	return r < 0 ? r : md_put(w, p, n);
}

static int md_str(struct walk *w, const char *s)
{
	return md_bytes(w, s, strlen(s));
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* Every xattr (names sorted, with values), as mkfs.erofs copies them. */
static int hash_xattrs(struct walk *w)
{
	char path[PATH_MAX];
	if (husk_path_fmt(path, sizeof(path), "%s/%s", w->rootfs_real, w->path))
		return husk_err_set(w->err, -ENAMETOOLONG, "rootfs %s: %s: path too long", w->rootfs,
				    shown(w));
	for (;;) {
		ssize_t len = llistxattr(path, NULL, 0);
		if (len < 0 && (errno == ENOTSUP || errno == ENODATA))
			len = 0;
		if (len < 0)
			return husk_err_sys(w->err, -errno, "rootfs %s: list xattrs of %s", w->rootfs,
					    shown(w));
		if (len == 0)
			return md_u64(w, 0);
		_cleanup_free_ char *list = malloc((size_t)len);
		if (!list)
			return husk_err_set(w->err, -ENOMEM, "xattrs of %s: out of memory", shown(w));
		ssize_t got = llistxattr(path, list, (size_t)len);
		if (got < 0 && errno == ERANGE)
			continue; /* grew meanwhile */
		if (got < 0)
			return husk_err_sys(w->err, -errno, "rootfs %s: list xattrs of %s", w->rootfs,
					    shown(w));
		size_t n = 0;
		for (ssize_t i = 0; i < got; i += (ssize_t)strlen(list + i) + 1)
			n++;
		_cleanup_free_ const char **names = calloc(n ? n : 1, sizeof(*names));
		if (!names)
			return husk_err_set(w->err, -ENOMEM, "xattrs of %s: out of memory", shown(w));
		n = 0;
		for (ssize_t i = 0; i < got; i += (ssize_t)strlen(list + i) + 1)
			names[n++] = list + i;
		qsort(names, n, sizeof(*names), cmp_names);
		int r = md_u64(w, n);
		for (size_t i = 0; r == 0 && i < n; i++) {
			char value[65536];
			ssize_t vlen = lgetxattr(path, names[i], value, sizeof(value));
			if (vlen < 0)
				return husk_err_sys(w->err, -errno, "rootfs %s: xattr %s of %s",
						    w->rootfs, names[i], shown(w));
			r = md_str(w, names[i]);
			if (r == 0)
				r = md_bytes(w, value, (size_t)vlen);
		}
		return r;
	}
}

static int hash_entry(struct walk *w, int dir_fd, const char *name, const struct stat *st)
{
	int r = md_str(w, w->path);
	if (r == 0)
		r = md_u64(w, st->st_mode & S_IFMT);
	if (r == 0)
		r = md_u64(w, st->st_mode & 07777);
	if (r == 0)
		r = md_u64(w, st->st_uid);
	if (r == 0)
		r = md_u64(w, st->st_gid);
	/* mkfs.erofs takes sizes of files and links only; a directory's size
	 * depends on the file system it sits on, not on what it holds. */
	if (r == 0)
		r = md_u64(w, S_ISREG(st->st_mode) || S_ISLNK(st->st_mode) ? (uint64_t)st->st_size : 0);
	if (r == 0)
		r = md_u64(w, (uint64_t)st->st_mtim.tv_sec);
	if (r == 0)
		r = md_u64(w, (uint64_t)st->st_mtim.tv_nsec);
	if (r == 0)
		r = md_u64(w, S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode) ?
				      ((uint64_t)major(st->st_rdev) << 32 | minor(st->st_rdev)) : 0);
	if (r < 0)
		return r;
	if (S_ISLNK(st->st_mode)) {
		char target[PATH_MAX + 1];
		ssize_t n = readlinkat(dir_fd, name, target, sizeof(target));
		if (n < 0)
			return husk_err_sys(w->err, -errno, "rootfs %s: readlink %s", w->rootfs, shown(w));
		if ((size_t)n >= sizeof(target) || n != st->st_size)
			return husk_err_set(w->err, -EAGAIN,
					    "rootfs %s: symlink %s changed while hashing", w->rootfs,
					    shown(w));
		r = md_bytes(w, target, (size_t)n);
		if (r < 0)
			return r;
	}
	return hash_xattrs(w);
}

/* Hashes the entries of the directory open at `fd` (consumed), sorted by
 * name, recursing into subdirectories; w->path names the directory. */
static int hash_dir(struct walk *w, int fd)
{
	__attribute__((cleanup(closedirp))) DIR *d = fdopendir(fd);
	if (!d) {
		int e = errno;
		close(fd);
		return husk_err_sys(w->err, -e, "rootfs %s: opendir %s", w->rootfs, shown(w));
	}
	char **names = NULL;
	size_t n = 0, cap = 0;
	int r = 0;
	for (;;) {
		errno = 0;
		struct dirent *de = readdir(d);
		if (!de) {
			if (errno)
				r = husk_err_sys(w->err, -errno, "rootfs %s: readdir %s", w->rootfs,
						 shown(w));
			break;
		}
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 32;
			char **nn = realloc(names, ncap * sizeof(*names));
			if (!nn) {
				r = husk_err_set(w->err, -ENOMEM, "readdir %s: out of memory", shown(w));
				break;
			}
			names = nn;
			cap = ncap;
		}
		if (!(names[n] = strdup(de->d_name))) {
			r = husk_err_set(w->err, -ENOMEM, "readdir %s: out of memory", shown(w));
			break;
		}
		n++;
	}
	if (r == 0 && n)
		qsort(names, n, sizeof(*names), cmp_names);

	/* Entries go in pre-order with their full relative paths, so the
	 * sequence also fixes the tree's shape. */
	size_t base = w->path_len;
	for (size_t i = 0; r == 0 && i < n; i++) {
		int len = snprintf(w->path + base, sizeof(w->path) - base, "%s%s",
				   base ? "/" : "", names[i]);
		if (len < 0 || (size_t)len >= sizeof(w->path) - base) {
			w->path[base] = '\0';
			r = husk_err_set(w->err, -ENAMETOOLONG, "rootfs %s: path too long under %s",
					 w->rootfs, shown(w));
			break;
		}
		w->path_len = base + (size_t)len;
		struct stat st;
		if (fstatat(dirfd(d), names[i], &st, AT_SYMLINK_NOFOLLOW) < 0) {
			r = husk_err_sys(w->err, -errno, "rootfs %s: stat %s", w->rootfs, shown(w));
		} else {
			r = hash_entry(w, dirfd(d), names[i], &st);
			if (r == 0 && S_ISDIR(st.st_mode)) {
				int sub = openat(dirfd(d), names[i],
						 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
				if (sub < 0)
					r = husk_err_sys(w->err, -errno, "rootfs %s: open %s",
							 w->rootfs, shown(w));
				else
					r = hash_dir(w, sub);
			}
		}
		w->path_len = base;
		w->path[base] = '\0';
	}
	free_names(names, n);
	return r;
}

/* ---- building ------------------------------------------------------------------- */

/* Removes what a builder killed mid-way left: only called under the lock,
 * so no live builder owns a temp file of this hash. */
static void remove_stale_tmp(int cache_fd, const char *hex)
{
	int fd = openat(cache_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return;
	__attribute__((cleanup(closedirp))) DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return;
	}
	char prefix[SHA256_HEX_LEN + 8];
	snprintf(prefix, sizeof(prefix), ".%s.tmp.", hex);
	struct dirent *de;
	while ((de = readdir(d)))
		if (!strncmp(de->d_name, prefix, strlen(prefix)))
			unlinkat(cache_fd, de->d_name, 0);
}

/* mkfs.erofs into a temp file, checked, synced and renamed to `name`. */
static int build_image(const struct mkfs *m, const char *cache, int cache_fd, const char *hex,
		       const char *name, const char *rootfs, const char *rootfs_real,
		       struct husk_err *err)
{
	char tmp[PATH_MAX];
	if (husk_path_fmt(tmp, sizeof(tmp), "%s/.%s.tmp.XXXXXX", cache, hex))
		return husk_err_set(err, -ENAMETOOLONG, "image cache %s: path too long", cache);
	_cleanup_fd_ int tfd = mkostemp(tmp, O_CLOEXEC);
	if (tfd < 0)
		return husk_err_sys(err, -errno, "create %s", tmp);
	const char *tmp_name = strrchr(tmp, '/') + 1;

	char out[OUTPUT_TAIL_MAX];
	char *argv[] = { (char *)m->path, MKFS_OPTIONS, tmp, (char *)rootfs_real, NULL };
	int status = 0;
	int r = run_capture(argv, out, sizeof(out), &status, err);
	if (r < 0) {
		unlinkat(cache_fd, tmp_name, 0);
		return husk_err_wrap(err, "image of %s", rootfs);
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		unlinkat(cache_fd, tmp_name, 0);
		char tail[320];
		summarize_output(out, tail, sizeof(tail));
		if (WIFSIGNALED(status))
			return husk_err_set(err, -EIO, "%s of rootfs %s killed by signal %d%s%s",
					    m->path, rootfs, WTERMSIG(status), *tail ? ": " : "",
					    tail);
		return husk_err_set(err, -EIO, "%s of rootfs %s failed with exit status %d%s%s",
				    m->path, rootfs, WEXITSTATUS(status), *tail ? ": " : "", tail);
	}

	/* mkfs.erofs opens the path itself; check what is there now. */
	_cleanup_fd_ int ifd = openat(cache_fd, tmp_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	unsigned char magic[4] = { 0 };
	if (ifd < 0 || fstat(ifd, &st) < 0) {
		r = husk_err_sys(err, -errno, "%s of rootfs %s: open its output %s", m->path, rootfs,
				 tmp);
	} else if (!S_ISREG(st.st_mode) ||
		   pread(ifd, magic, sizeof(magic), EROFS_SUPER_OFFSET) != sizeof(magic) ||
		   ((uint32_t)magic[0] | (uint32_t)magic[1] << 8 | (uint32_t)magic[2] << 16 |
		    (uint32_t)magic[3] << 24) != EROFS_SUPER_MAGIC_V1) {
		r = husk_err_set(err, -EIO,
				 "%s of rootfs %s exited 0 but wrote no erofs image (%jd bytes)",
				 m->path, rootfs, (intmax_t)st.st_size);
	} else if (fchmod(ifd, 0444) < 0 || fsync(ifd) < 0) {
		r = husk_err_sys(err, -errno, "sync image %s", tmp);
	} else if (renameat(cache_fd, tmp_name, cache_fd, name) < 0) {
		r = husk_err_sys(err, -errno, "rename %s to %s/%s", tmp, cache, name);
	} else {
		/* The name must survive a crash as well as the data. */
		if (fsync(cache_fd) < 0)
			return husk_err_sys(err, -errno, "sync image cache %s", cache);
		return 0;
	}
	unlinkat(cache_fd, tmp_name, 0);
	return r;
}

/* An existing image is a hit: record the use in its atime (for an LRU GC);
 * mtime stays the build time. */
static int image_hit(int cache_fd, const char *name)
{
	struct stat st;
	if (fstatat(cache_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
		return 0;
	const struct timespec ts[2] = { { .tv_nsec = UTIME_NOW }, { .tv_nsec = UTIME_OMIT } };
	/* A read-only cache (or one owned by someone else) still serves hits. */
	(void)utimensat(cache_fd, name, ts, AT_SYMLINK_NOFOLLOW);
	return 1;
}

/* flock on .<hash>.lock. The holder unlinks the file before unlocking, so a
 * waiter that wakes up on an unlinked inode retries with a fresh file:
 * nothing accumulates and two holders never coexist. */
static int lock_hash(int cache_fd, const char *cache, const char *hex, int *out,
		     struct husk_err *err)
{
	char lock[SHA256_HEX_LEN + 8];
	snprintf(lock, sizeof(lock), ".%s.lock", hex);
	for (;;) {
		_cleanup_fd_ int fd =
			openat(cache_fd, lock, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0)
			return husk_err_sys(err, -errno, "open lock %s/%s", cache, lock);
		while (flock(fd, LOCK_EX) < 0)
			if (errno != EINTR)
				return husk_err_sys(err, -errno, "flock %s/%s", cache, lock);
		struct stat a, b;
		if (fstat(fd, &a) < 0)
			return husk_err_sys(err, -errno, "stat lock %s/%s", cache, lock);
		if (fstatat(cache_fd, lock, &b, AT_SYMLINK_NOFOLLOW) == 0 && a.st_dev == b.st_dev &&
		    a.st_ino == b.st_ino) {
			*out = take_fd(&fd);
			return 0;
		}
	}
}

static void unlock_hash(int cache_fd, const char *hex, int fd)
{
	char lock[SHA256_HEX_LEN + 8];
	snprintf(lock, sizeof(lock), ".%s.lock", hex);
	unlinkat(cache_fd, lock, 0);
	close(fd);
}

int husk_image_from_dir(const char *cache_dir, const char *rootfs_dir, char **image,
			struct husk_err *err)
{
	if (!image || !rootfs_dir || !*rootfs_dir)
		return husk_err_set(err, -EINVAL, "husk_image_from_dir: rootfs and image required");
	*image = NULL;
	char cache_buf[PATH_MAX];
	if (!cache_dir) {
		cache_dir = husk_default_image_cache(cache_buf, sizeof(cache_buf));
		if (!cache_dir)
			return husk_err_set(err, -ENOENT,
					    "no image cache directory: set HUSK_IMAGE_CACHE or HOME");
	}

	_cleanup_fd_ int root_fd = open(rootfs_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (root_fd < 0)
		return husk_err_sys(err, -errno, "rootfs %s", rootfs_dir);
	char rootfs_real[PATH_MAX];
	if (!realpath(rootfs_dir, rootfs_real))
		return husk_err_sys(err, -errno, "rootfs %s: realpath", rootfs_dir);

	int r = mkdir_p(cache_dir, 0700, err);
	if (r < 0)
		return r;
	char cache[PATH_MAX];
	if (!realpath(cache_dir, cache))
		return husk_err_sys(err, -errno, "image cache %s: realpath", cache_dir);
	_cleanup_fd_ int cache_fd = open(cache, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cache_fd < 0)
		return husk_err_sys(err, -errno, "open image cache %s", cache);

	struct mkfs m;
	r = find_in_path(MKFS_NAME, m.path, sizeof(m.path), &m.st, err);
	if (r < 0)
		return r;
	r = mkfs_version(cache, cache_fd, &m, err);
	if (r < 0)
		return r;

	__attribute__((cleanup(freep_evp))) EVP_MD_CTX *md = EVP_MD_CTX_new();
	if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL))
		return husk_err_set(err, -ENOMEM, "sha256 init failed");
	struct walk w = {
		.md = md, .path = "", .path_len = 0, .rootfs = rootfs_dir,
		.rootfs_real = rootfs_real, .err = err,
	};
	struct stat st;
	if (fstat(root_fd, &st) < 0)
		return husk_err_sys(err, -errno, "rootfs %s: stat", rootfs_dir);
	if ((r = md_str(&w, IMAGE_FORMAT)) < 0 || (r = md_str(&w, m.version)) < 0 ||
	    (r = md_u64(&w, (uint64_t)m.st.st_size)) < 0 ||
	    (r = md_u64(&w, (uint64_t)m.st.st_mtim.tv_sec)) < 0 ||
	    (r = md_u64(&w, (uint64_t)m.st.st_mtim.tv_nsec)) < 0 ||
	    (r = md_str(&w, MKFS_OPTIONS)) < 0 || (r = hash_entry(&w, root_fd, ".", &st)) < 0)
		return r;
	int dup_fd = fcntl(root_fd, F_DUPFD_CLOEXEC, 3);
	if (dup_fd < 0)
		return husk_err_sys(err, -errno, "rootfs %s: dup", rootfs_dir);
	if ((r = hash_dir(&w, dup_fd)) < 0)
		return r;
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned dlen = 0;
	if (!EVP_DigestFinal_ex(md, digest, &dlen) || dlen != SHA256_HEX_LEN / 2)
		return husk_err_set(err, -EIO, "sha256 final failed");
	char hex[SHA256_HEX_LEN + 1];
	for (unsigned i = 0; i < dlen; i++)
		snprintf(hex + 2 * i, 3, "%02x", digest[i]);
	char name[SHA256_HEX_LEN + 8];
	snprintf(name, sizeof(name), "%s.erofs", hex);
	char path[PATH_MAX];
	if (husk_path_fmt(path, sizeof(path), "%s/%s", cache, name))
		return husk_err_set(err, -ENAMETOOLONG, "image cache %s: path too long", cache);

	/* Fast path without the lock: images appear only by rename. */
	if (!image_hit(cache_fd, name)) {
		int lock_fd = -1;
		r = lock_hash(cache_fd, cache, hex, &lock_fd, err);
		if (r < 0)
			return r;
		if (!image_hit(cache_fd, name)) {
			remove_stale_tmp(cache_fd, hex);
			r = build_image(&m, cache, cache_fd, hex, name, rootfs_dir, rootfs_real, err);
		}
		unlock_hash(cache_fd, hex, lock_fd);
		if (r < 0)
			return r;
	}
	if (!(*image = strdup(path)))
		return husk_err_set(err, -ENOMEM, "image path: out of memory");
	return 0;
}
