/* Rootfs directories as cached erofs images (husk_image_from_dir*), and the
 * cache's size budget (husk_image_cache_prune).
 *
 * An image is named by a SHA-256 "content identity": what mkfs.erofs puts in
 * the image, read from the tree without reading file contents. Every entry's
 * relative path, type, mode, owner, size, mtime (ns), device number, link
 * target, xattrs and hard-link grouping (an entry names the earlier path it
 * shares an inode with), in a deterministic walk (names sorted bytewise at
 * every level, symlinks never followed), plus the identity of the mkfs.erofs
 * that builds it (version string, binary size and mtime) and its options.
 * Inode numbers and st_dev are not in it (only which entries share an
 * inode), so two copies of a tree, or two overlay mounts of one snapshot,
 * share an image. File contents are not read: a change that keeps both size
 * and mtime goes unnoticed, as with make.
 *
 * The root directory's mtime: containerd's overlay snapshots give every
 * container a fresh upper directory, so the root of the same image has a new
 * mtime each time. mkfs.erofs stores it; so it runs with SOURCE_DATE_EPOCH
 * at the newest mtime of any other entry (see walk_epoch), which clamps only
 * the root (mkfs.erofs clamps every mtime at or past it) and keeps all
 * other mtimes exactly. The identity hashes the root's mtime as clamped, so
 * a fresh root hashes alike. (Left: when the newest entries have sub-second
 * mtimes, a root made within their second is not clamped and gets an image
 * of its own.) -U with a UUID from the identity makes the image's bytes
 * depend on the tree alone (and mkfs.erofs's readdir order).
 *
 * Layout of the cache directory (0700):
 *   <sha256>.erofs                the images (0444); mtime = built, atime = last use
 *   .<sha256>.lock                exists only while a builder holds it
 *   .<sha256>.tmp.XXXXXX          an image being built (removed on failure)
 *   .mkfs-version.<16 hex>        mkfs.erofs's version string, keyed by the
 *                                 binary's inode, size and times, so a cache
 *                                 hit runs no program at all
 *
 * In use and eviction: whoever runs a VM on an image holds a shared flock on
 * it (husk_image_from_dir_hold, husk_image_hold) until the VM is gone;
 * QEMU itself holds OFD record locks on the images it has open. Prune, one
 * at a time (flock on the cache directory), removes least recently used
 * images while the total is over the budget, each only under a
 * non-blocking exclusive flock and with no record lock on it; a holder
 * that raced with it finds the name gone (or a new inode) after its lock
 * and builds again.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <search.h>
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
#include "husk/file.h"
#include "husk/path.h"
#include "husk/size.h" /* also declared by husk.h: the compiler checks they agree */

extern char **environ;

#define MKFS_NAME "mkfs.erofs"
/* Part of the identity: changing how images are built changes every name.
 * v2: the root's mtime clamped, hard links, -U from the identity. */
#define IMAGE_FORMAT "husk-erofs-v2"
#define MKFS_OPTIONS "--quiet" /* uncompressed, owners and mtimes kept */
#define EROFS_SUPER_OFFSET 1024
#define EROFS_SUPER_MAGIC_V1 0xE0F5E1E2u
#define SHA256_HEX_LEN 64
#define OUTPUT_TAIL_MAX 4096
#define IMAGE_SUFFIX ".erofs"
#define IMAGE_NAME_LEN (SHA256_HEX_LEN + sizeof(IMAGE_SUFFIX) - 1)

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
 * loops with signals blocked for signalfd) and no SOURCE_DATE_EPOCH but
 * `epoch` (may be NULL): an inherited one would make mkfs.erofs clamp
 * mtimes behind the identity's back. Returns 0 with the wait status in
 * *status. */
static int run_capture(char *const argv[], const char *epoch, char *out, size_t out_len,
		       int *status, struct husk_err *err)
{
	size_t n_env = 0;
	for (char **e = environ; e && *e; e++)
		n_env++;
	_cleanup_free_ char **envp = calloc(n_env + 2, sizeof(*envp));
	if (!envp)
		return husk_err_set(err, -ENOMEM, "spawn %s: out of memory", argv[0]);
	size_t k = 0;
	for (size_t i = 0; i < n_env; i++)
		if (strncmp(environ[i], "SOURCE_DATE_EPOCH=", 18) != 0)
			envp[k++] = environ[i];
	if (epoch)
		envp[k++] = (char *)epoch;

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
	int r = run_capture(argv, NULL, buf, sizeof(buf), &status, err);
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
	if (husk_write_all(tfd, line, (size_t)len) < 0 || fsync(tfd) < 0 ||
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
	int64_t newest;   /* the newest mtime (s) below the root, INT64_MIN if none */
	bool newest_frac; /* an entry of that second has nanoseconds */
	void *links;      /* tsearch tree of struct link: inodes seen with nlink > 1 */
};

/* A multiply linked inode and the first path (in walk order) it was met at. */
struct link {
	dev_t dev;
	ino_t ino;
	char path[];
};

static int cmp_links(const void *a, const void *b)
{
	const struct link *x = a, *y = b;
	if (x->dev != y->dev)
		return x->dev < y->dev ? -1 : 1;
	return x->ino < y->ino ? -1 : x->ino > y->ino;
}

/* SOURCE_DATE_EPOCH for mkfs.erofs, which sets every mtime at or past it
 * (in seconds) to it with 0 ns: the newest second below the root when its
 * entries have whole-second mtimes (as unpacked from tar layers), which
 * clamps nothing but the root, even a root made in that same second; else
 * one second later. 0 for an empty tree. */
static int64_t walk_epoch(const struct walk *w)
{
	if (w->newest < 0)
		return 0;
	if (!w->newest_frac)
		return w->newest;
	return w->newest == INT64_MAX ? INT64_MAX : w->newest + 1;
}

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

/* Hard links: mkfs.erofs makes entries with one (st_dev, st_ino) one inode.
 * The first of them hashes 0, each later one 1 and the first's path: the
 * grouping, without the numbers, which differ between copies. */
static int hash_link(struct walk *w, const struct stat *st)
{
	if (S_ISDIR(st->st_mode) || st->st_nlink < 2)
		return md_u64(w, 0);
	size_t len = strlen(w->path) + 1;
	struct link *l = malloc(sizeof(*l) + len);
	if (!l)
		return husk_err_set(w->err, -ENOMEM, "hard links of %s: out of memory", shown(w));
	l->dev = st->st_dev;
	l->ino = st->st_ino;
	memcpy(l->path, w->path, len);
	struct link **found = tsearch(l, &w->links, cmp_links);
	if (!found) {
		free(l);
		return husk_err_set(w->err, -ENOMEM, "hard links of %s: out of memory", shown(w));
	}
	if (*found == l)
		return md_u64(w, 0);
	free(l);
	int r = md_u64(w, 1);
	return r < 0 ? r : md_str(w, (*found)->path);
}

/* One entry's fields. The root's mtime is left to the caller: it depends on
 * every other mtime (walk_epoch). */
static int hash_entry(struct walk *w, int dir_fd, const char *name, const struct stat *st,
		      bool root)
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
	if (r == 0 && !root) {
		r = md_u64(w, (uint64_t)st->st_mtim.tv_sec);
		if (r == 0)
			r = md_u64(w, (uint64_t)st->st_mtim.tv_nsec);
		if (st->st_mtim.tv_sec > w->newest) {
			w->newest = st->st_mtim.tv_sec;
			w->newest_frac = st->st_mtim.tv_nsec != 0;
		} else if (st->st_mtim.tv_sec == w->newest && st->st_mtim.tv_nsec) {
			w->newest_frac = true;
		}
	}
	if (r == 0)
		r = hash_link(w, st);
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
	_cleanup_closedir_ DIR *d = fdopendir(fd);
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
			r = hash_entry(w, dirfd(d), names[i], &st, false);
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

/* A directory stream of its own on the cache (the fd stays the caller's). */
static DIR *cache_dir_stream(int cache_fd)
{
	int fd = openat(cache_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	DIR *d = fdopendir(fd);
	if (!d)
		close(fd);
	return d;
}

/* Removes what a builder killed mid-way left: only called under the lock,
 * so no live builder owns a temp file of this hash. */
static void remove_stale_tmp(int cache_fd, const char *hex)
{
	_cleanup_closedir_ DIR *d = cache_dir_stream(cache_fd);
	if (!d)
		return;
	char prefix[SHA256_HEX_LEN + 8];
	snprintf(prefix, sizeof(prefix), ".%s.tmp.", hex);
	struct dirent *de;
	while ((de = readdir(d)))
		if (!strncmp(de->d_name, prefix, strlen(prefix)))
			unlinkat(cache_fd, de->d_name, 0);
}

/* Sets the image's atime, its "last use" for the LRU prune, independent of
 * relatime/noatime mounts; mtime stays the build time. Best effort: a
 * read-only cache (or one owned by someone else) still serves images. */
static void touch_last_use(int fd)
{
	const struct timespec ts[2] = { { .tv_nsec = UTIME_NOW }, { .tv_nsec = UTIME_OMIT } };
	(void)futimens(fd, ts);
}

/* mkfs.erofs into a temp file, checked, synced and renamed to `name`. On
 * success *held is the image with a shared flock taken before the rename,
 * so no prune can remove it before the caller has it. */
static int build_image(const struct mkfs *m, const char *cache, int cache_fd, const char *hex,
		       const char *name, const char *rootfs, const char *rootfs_real, int64_t epoch,
		       const char *uuid, int *held, struct husk_err *err)
{
	char tmp[PATH_MAX];
	if (husk_path_fmt(tmp, sizeof(tmp), "%s/.%s.tmp.XXXXXX", cache, hex))
		return husk_err_set(err, -ENAMETOOLONG, "image cache %s: path too long", cache);
	_cleanup_fd_ int tfd = mkostemp(tmp, O_CLOEXEC);
	if (tfd < 0)
		return husk_err_sys(err, -errno, "create %s", tmp);
	const char *tmp_name = strrchr(tmp, '/') + 1;

	char out[OUTPUT_TAIL_MAX], env[64];
	snprintf(env, sizeof(env), "SOURCE_DATE_EPOCH=%jd", (intmax_t)epoch);
	char *argv[] = { (char *)m->path, MKFS_OPTIONS, "-U", (char *)uuid, tmp, (char *)rootfs_real,
			 NULL };
	int status = 0;
	int r = run_capture(argv, env, out, sizeof(out), &status, err);
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
	} else if (flock(ifd, LOCK_SH) < 0) {
		r = husk_err_sys(err, -errno, "flock image %s", tmp);
	} else if (renameat(cache_fd, tmp_name, cache_fd, name) < 0) {
		r = husk_err_sys(err, -errno, "rename %s to %s/%s", tmp, cache, name);
	} else {
		/* The name must survive a crash as well as the data. */
		if (fsync(cache_fd) < 0)
			return husk_err_sys(err, -errno, "sync image cache %s", cache);
		touch_last_use(ifd);
		*held = take_fd(&ifd);
		return 0;
	}
	unlinkat(cache_fd, tmp_name, 0);
	return r;
}

/* flock on .<hash>.lock. The holder unlinks the file before unlocking, so a
 * waiter that wakes up on an unlinked inode retries with a fresh file:
 * nothing accumulates and two holders never coexist. With `try`, -EAGAIN
 * (no message) when a builder holds it. */
static int lock_hash(int cache_fd, const char *cache, const char *hex, bool try, int *out,
		     struct husk_err *err)
{
	char lock[SHA256_HEX_LEN + 8];
	snprintf(lock, sizeof(lock), ".%s.lock", hex);
	for (;;) {
		_cleanup_fd_ int fd =
			openat(cache_fd, lock, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0)
			return husk_err_sys(err, -errno, "open lock %s/%s", cache, lock);
		while (flock(fd, LOCK_EX | (try ? LOCK_NB : 0)) < 0) {
			if (try && errno == EWOULDBLOCK)
				return -EAGAIN;
			if (errno != EINTR)
				return husk_err_sys(err, -errno, "flock %s/%s", cache, lock);
		}
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

/* ---- holding -------------------------------------------------------------------- */

/* `name` (relative to dir_fd) opened with a shared flock. A prune may have
 * unlinked it between our open and our lock: then the name is gone or
 * names another inode, and we look again. -ENOENT (no message) when there
 * is no such file. */
static int hold_at(int dir_fd, const char *name, const char *shown_path, int *out,
		   struct husk_err *err)
{
	for (;;) {
		_cleanup_fd_ int fd = openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT)
			return -ENOENT;
		if (fd < 0)
			return husk_err_sys(err, -errno, "open image %s", shown_path);
		while (flock(fd, LOCK_SH) < 0)
			if (errno != EINTR)
				return husk_err_sys(err, -errno, "flock image %s", shown_path);
		struct stat a, b;
		if (fstat(fd, &a) < 0)
			return husk_err_sys(err, -errno, "stat image %s", shown_path);
		if (!S_ISREG(a.st_mode))
			return husk_err_set(err, -EINVAL, "image %s: not a regular file", shown_path);
		if (fstatat(dir_fd, name, &b, AT_SYMLINK_NOFOLLOW) == 0 && a.st_dev == b.st_dev &&
		    a.st_ino == b.st_ino) {
			*out = take_fd(&fd);
			return 0;
		}
	}
}

int husk_image_hold(const char *image, struct husk_err *err)
{
	if (!image || !*image)
		return husk_err_set(err, -EINVAL, "husk_image_hold: image path required");
	char real[PATH_MAX];
	if (!realpath(image, real))
		return husk_err_sys(err, -errno, "image %s", image);
	int fd = -1;
	int r = hold_at(AT_FDCWD, real, image, &fd, err);
	if (r == -ENOENT)
		return husk_err_sys(err, r, "image %s", image);
	if (r < 0)
		return r;
	touch_last_use(fd);
	return fd;
}

void husk_image_release(int hold_fd)
{
	if (hold_fd < 0)
		return;
	/* In use until now: the LRU order counts from the end of the use. */
	touch_last_use(hold_fd);
	close(hold_fd);
}

/* ---- budget ----------------------------------------------------------------------- */

int husk_image_cache_max(uint64_t *max, struct husk_err *err)
{
	const char *v = getenv("HUSK_IMAGE_CACHE_MAX");
	*max = HUSK_IMAGE_CACHE_MAX_DEFAULT;
	if (!v || !*v)
		return 0;
	if (strcasecmp(v, "off") == 0) {
		*max = 0;
		return 0;
	}
	int r = husk_parse_size(v, max, err);
	if (r < 0)
		return husk_err_wrap(err, "HUSK_IMAGE_CACHE_MAX (0 or off: no limit)");
	return 0;
}

/* ---- listing and pruning ------------------------------------------------------------- */

static bool is_hex64(const char *s)
{
	for (int i = 0; i < SHA256_HEX_LEN; i++)
		if (!s[i] || !strchr("0123456789abcdef", s[i]))
			return false;
	return true;
}

static bool is_image_name(const char *s)
{
	return is_hex64(s) && strcmp(s + SHA256_HEX_LEN, IMAGE_SUFFIX) == 0;
}

_Static_assert(sizeof(((struct husk_image_info *)0)->name) > IMAGE_NAME_LEN,
	       "husk_image_info.name holds an image name");

struct cached {
	char name[IMAGE_NAME_LEN + 1];
	uint64_t bytes; /* allocated, as du counts */
	struct timespec used, built;
};

static int cmp_cached(const void *a, const void *b)
{
	const struct cached *x = a, *y = b;
	if (x->used.tv_sec != y->used.tv_sec)
		return x->used.tv_sec < y->used.tv_sec ? -1 : 1;
	if (x->used.tv_nsec != y->used.tv_nsec)
		return x->used.tv_nsec < y->used.tv_nsec ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* The images in the cache, least recently used first. */
static int scan_images(int cache_fd, const char *cache, struct cached **out, size_t *n_out,
		       struct husk_err *err)
{
	*out = NULL;
	*n_out = 0;
	int fd = openat(cache_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return husk_err_sys(err, -errno, "open image cache %s", cache);
	_cleanup_closedir_ DIR *d = fdopendir(fd);
	if (!d) {
		int e = errno;
		close(fd);
		return husk_err_sys(err, -e, "open image cache %s", cache);
	}
	_cleanup_free_ struct cached *v = NULL;
	size_t n = 0, cap = 0;
	for (;;) {
		errno = 0;
		struct dirent *de = readdir(d);
		if (!de) {
			if (errno)
				return husk_err_sys(err, -errno, "read image cache %s", cache);
			break;
		}
		struct stat st;
		if (!is_image_name(de->d_name) ||
		    fstatat(cache_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
			continue; /* not an image, or pruned meanwhile */
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			struct cached *nv = realloc(v, ncap * sizeof(*v));
			if (!nv)
				return husk_err_set(err, -ENOMEM, "image cache %s: out of memory", cache);
			v = nv;
			cap = ncap;
		}
		memcpy(v[n].name, de->d_name, IMAGE_NAME_LEN + 1); /* checked length */
		v[n].bytes = (uint64_t)st.st_blocks * 512;
		v[n].used = st.st_atim;
		v[n].built = st.st_mtim;
		n++;
	}
	if (n)
		qsort(v, n, sizeof(*v), cmp_cached);
	*out = take_ptr(v);
	*n_out = n;
	return 0;
}

/* 1 with an exclusive flock on fd when nobody uses the image: no holder's
 * shared flock and no record lock (QEMU's image locking, for a VM whose
 * owner took no hold); 0 when in use; a negative errno on failure. */
static int lock_unused(int fd)
{
	if (flock(fd, LOCK_EX | LOCK_NB) < 0)
		return errno == EWOULDBLOCK ? 0 : -errno;
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	if (fcntl(fd, F_OFD_GETLK, &fl) < 0) {
		int e = errno;
		flock(fd, LOCK_UN);
		return -e;
	}
	if (fl.l_type != F_UNLCK) {
		flock(fd, LOCK_UN);
		return 0;
	}
	return 1;
}

/* Opens the cache directory (the default for NULL) if it exists: -ENOENT
 * (no message) when it does not. */
static int open_cache(const char *cache_dir, char *cache, size_t len, struct husk_err *err)
{
	char buf[PATH_MAX];
	if (!cache_dir) {
		cache_dir = husk_default_image_cache(buf, sizeof(buf));
		if (!cache_dir)
			return husk_err_set(err, -ENOENT,
					    "no image cache directory: set HUSK_IMAGE_CACHE or HOME");
	}
	if (husk_path_fmt(cache, len, "%s", cache_dir))
		return husk_err_set(err, -ENAMETOOLONG, "image cache %s: path too long", cache_dir);
	int fd = open(cache, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT)
		return -ENOENT;
	if (fd < 0)
		return husk_err_sys(err, -errno, "open image cache %s", cache);
	return fd;
}

int husk_image_cache_list(const char *cache_dir, struct husk_image_info **out, size_t *n_out,
			  struct husk_err *err)
{
	if (!out || !n_out)
		return husk_err_set(err, -EINVAL, "husk_image_cache_list: out and n required");
	*out = NULL;
	*n_out = 0;
	char cache[PATH_MAX];
	_cleanup_fd_ int cache_fd = open_cache(cache_dir, cache, sizeof(cache), err);
	if (cache_fd == -ENOENT)
		return 0; /* nothing cached yet */
	if (cache_fd < 0)
		return cache_fd;
	_cleanup_free_ struct cached *v = NULL;
	size_t n = 0;
	int r = scan_images(cache_fd, cache, &v, &n, err);
	if (r < 0)
		return r;
	_cleanup_free_ struct husk_image_info *info = calloc(n ? n : 1, sizeof(*info));
	if (!info)
		return husk_err_set(err, -ENOMEM, "image cache %s: out of memory", cache);
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		_cleanup_fd_ int fd = openat(cache_fd, v[i].name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT)
			continue; /* pruned meanwhile */
		if (fd < 0)
			return husk_err_sys(err, -errno, "open image %s/%s", cache, v[i].name);
		int unused = lock_unused(fd);
		if (unused < 0)
			return husk_err_sys(err, unused, "lock image %s/%s", cache, v[i].name);
		struct husk_image_info *e = &info[k++];
		memcpy(e->name, v[i].name, IMAGE_NAME_LEN + 1);
		e->bytes = v[i].bytes;
		e->last_use = v[i].used.tv_sec;
		e->built = v[i].built.tv_sec;
		e->in_use = !unused;
	}
	*out = take_ptr(info);
	*n_out = k;
	return 0;
}

/* What killed builders left: temp files and lock files of hashes no
 * builder holds now. */
static void prune_stale(int cache_fd, const char *cache)
{
	_cleanup_closedir_ DIR *d = cache_dir_stream(cache_fd);
	if (!d)
		return;
	_cleanup_free_ char(*hexes)[SHA256_HEX_LEN + 1] = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		const char *s = de->d_name;
		if (s[0] != '.' || !is_hex64(s + 1) ||
		    (strcmp(s + 1 + SHA256_HEX_LEN, ".lock") != 0 &&
		     strncmp(s + 1 + SHA256_HEX_LEN, ".tmp.", 5) != 0))
			continue;
		bool seen = false;
		for (size_t i = 0; i < n && !seen; i++)
			seen = !memcmp(hexes[i], s + 1, SHA256_HEX_LEN);
		if (seen)
			continue;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			char(*nh)[SHA256_HEX_LEN + 1] = realloc(hexes, ncap * sizeof(*hexes));
			if (!nh)
				return; /* what is left waits for the next prune */
			hexes = nh;
			cap = ncap;
		}
		snprintf(hexes[n++], SHA256_HEX_LEN + 1, "%.*s", SHA256_HEX_LEN, s + 1);
	}
	for (size_t i = 0; i < n; i++) {
		int lock_fd = -1;
		if (lock_hash(cache_fd, cache, hexes[i], true, &lock_fd, NULL) < 0)
			continue; /* a live builder, or unlockable: not ours to judge */
		remove_stale_tmp(cache_fd, hexes[i]);
		unlock_hash(cache_fd, hexes[i], lock_fd);
	}
}

static int prune_at(int cache_fd, const char *cache, uint64_t max_bytes,
		    struct husk_image_prune *res, struct husk_err *err)
{
	*res = (struct husk_image_prune){ 0 };
	/* One prune at a time: a flock on the directory itself. */
	_cleanup_fd_ int dir_lock = openat(cache_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir_lock < 0)
		return husk_err_sys(err, -errno, "open image cache %s", cache);
	while (flock(dir_lock, LOCK_EX) < 0)
		if (errno != EINTR)
			return husk_err_sys(err, -errno, "flock image cache %s", cache);
	prune_stale(cache_fd, cache);

	_cleanup_free_ struct cached *v = NULL;
	size_t n = 0;
	int r = scan_images(cache_fd, cache, &v, &n, err);
	if (r < 0)
		return r;
	uint64_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += v[i].bytes;
	size_t kept = n;
	for (size_t i = 0; i < n && total > max_bytes; i++) {
		_cleanup_fd_ int fd = openat(cache_fd, v[i].name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT) {
			total -= v[i].bytes;
			kept--;
			continue;
		}
		if (fd < 0)
			return husk_err_sys(err, -errno, "open image %s/%s", cache, v[i].name);
		int unused = lock_unused(fd);
		if (unused < 0)
			return husk_err_sys(err, unused, "lock image %s/%s", cache, v[i].name);
		if (!unused) {
			res->busy++;
			continue;
		}
		/* Images appear only by rename of a new inode: unlink the name
		 * only while it is still the inode we hold exclusively. */
		struct stat a, b;
		if (fstat(fd, &a) < 0 || fstatat(cache_fd, v[i].name, &b, AT_SYMLINK_NOFOLLOW) < 0 ||
		    a.st_dev != b.st_dev || a.st_ino != b.st_ino)
			continue;
		if (unlinkat(cache_fd, v[i].name, 0) < 0)
			return husk_err_sys(err, -errno, "remove image %s/%s", cache, v[i].name);
		res->removed++;
		res->removed_bytes += v[i].bytes;
		total -= v[i].bytes;
		kept--;
	}
	res->kept = kept;
	res->kept_bytes = total;
	return 0;
}

int husk_image_cache_prune(const char *cache_dir, uint64_t max_bytes, struct husk_image_prune *res,
			   struct husk_err *err)
{
	struct husk_image_prune dummy;
	if (!res)
		res = &dummy;
	*res = (struct husk_image_prune){ 0 };
	char cache[PATH_MAX];
	_cleanup_fd_ int cache_fd = open_cache(cache_dir, cache, sizeof(cache), err);
	if (cache_fd == -ENOENT)
		return 0;
	if (cache_fd < 0)
		return cache_fd;
	return prune_at(cache_fd, cache, max_bytes, res, err);
}

/* ---- the entry points ------------------------------------------------------------------ */

static void walk_free(struct walk *w)
{
	if (w->links)
		tdestroy(w->links, free);
}

int husk_image_from_dir_hold(const char *cache_dir, const char *rootfs_dir, char **image,
			     int *hold_fd, struct husk_err *err)
{
	if (hold_fd)
		*hold_fd = -1;
	if (!image || !rootfs_dir || !*rootfs_dir)
		return husk_err_set(err, -EINVAL, "husk_image_from_dir: rootfs and image required");
	*image = NULL;
	/* A bad budget fails before any work, not after a build. */
	uint64_t budget;
	int r = husk_image_cache_max(&budget, err);
	if (r < 0)
		return r;
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

	r = husk_mkdir_p(cache_dir, 0700, err);
	if (r < 0)
		return husk_err_wrap(err, "image cache");
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
	__attribute__((cleanup(walk_free))) struct walk w = {
		.md = md, .path = "", .path_len = 0, .rootfs = rootfs_dir,
		.rootfs_real = rootfs_real, .err = err, .newest = INT64_MIN,
	};
	struct stat st;
	if (fstat(root_fd, &st) < 0)
		return husk_err_sys(err, -errno, "rootfs %s: stat", rootfs_dir);
	if ((r = md_str(&w, IMAGE_FORMAT)) < 0 || (r = md_str(&w, m.version)) < 0 ||
	    (r = md_u64(&w, (uint64_t)m.st.st_size)) < 0 ||
	    (r = md_u64(&w, (uint64_t)m.st.st_mtim.tv_sec)) < 0 ||
	    (r = md_u64(&w, (uint64_t)m.st.st_mtim.tv_nsec)) < 0 ||
	    (r = md_str(&w, MKFS_OPTIONS)) < 0 ||
	    (r = hash_entry(&w, root_fd, ".", &st, true)) < 0)
		return r;
	int dup_fd = fcntl(root_fd, F_DUPFD_CLOEXEC, 3);
	if (dup_fd < 0)
		return husk_err_sys(err, -errno, "rootfs %s: dup", rootfs_dir);
	if ((r = hash_dir(&w, dup_fd)) < 0)
		return r;
	/* The root's mtime as mkfs.erofs will store it: clamped to the epoch
	 * when at or past it (an unsigned comparison, as mkfs.erofs makes). */
	int64_t epoch = walk_epoch(&w);
	bool clamped = (uint64_t)st.st_mtim.tv_sec >= (uint64_t)epoch;
	if ((r = md_u64(&w, clamped ? (uint64_t)epoch : (uint64_t)st.st_mtim.tv_sec)) < 0 ||
	    (r = md_u64(&w, clamped ? 0 : (uint64_t)st.st_mtim.tv_nsec)) < 0)
		return r;
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned dlen = 0;
	if (!EVP_DigestFinal_ex(md, digest, &dlen) || dlen != SHA256_HEX_LEN / 2)
		return husk_err_set(err, -EIO, "sha256 final failed");
	char hex[SHA256_HEX_LEN + 1];
	for (unsigned i = 0; i < dlen; i++)
		snprintf(hex + 2 * i, 3, "%02x", digest[i]);
	char uuid[37];
	snprintf(uuid, sizeof(uuid), "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16,
		 hex + 20);
	char name[IMAGE_NAME_LEN + 1];
	snprintf(name, sizeof(name), "%s%s", hex, IMAGE_SUFFIX);
	char path[PATH_MAX];
	if (husk_path_fmt(path, sizeof(path), "%s/%s", cache, name))
		return husk_err_set(err, -ENAMETOOLONG, "image cache %s: path too long", cache);

	/* Fast path without the build lock: images appear only by rename. */
	_cleanup_fd_ int held = -1;
	bool built = false;
	r = hold_at(cache_fd, name, path, &held, err);
	if (r == -ENOENT) {
		int lock_fd = -1;
		r = lock_hash(cache_fd, cache, hex, false, &lock_fd, err);
		if (r < 0)
			return r;
		r = hold_at(cache_fd, name, path, &held, err);
		if (r == -ENOENT) {
			remove_stale_tmp(cache_fd, hex);
			r = build_image(&m, cache, cache_fd, hex, name, rootfs_dir, rootfs_real, epoch,
					uuid, &held, err);
			built = r == 0;
		}
		unlock_hash(cache_fd, hex, lock_fd);
	}
	if (r < 0)
		return r;
	touch_last_use(held);
	/* Best effort: a prune that fails (a cache we may read but not
	 * write) does not make the image any less good. Ours is held. */
	if (built && budget) {
		struct husk_image_prune res;
		struct husk_err ignored = { 0 };
		(void)prune_at(cache_fd, cache, budget, &res, &ignored);
	}
	if (!(*image = strdup(path)))
		return husk_err_set(err, -ENOMEM, "image path: out of memory");
	if (hold_fd)
		*hold_fd = take_fd(&held);
	return 0;
}

int husk_image_from_dir(const char *cache_dir, const char *rootfs_dir, char **image,
			struct husk_err *err)
{
	return husk_image_from_dir_hold(cache_dir, rootfs_dir, image, NULL, err);
}
