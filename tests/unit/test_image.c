/* husk_image_from_dir*, husk_default_image_cache and the cache budget
 * (husk_image_cache_list/prune, holds).
 *
 * Every test gets a private temp dir holding the rootfs, the cache and a bin/
 * for stand-in mkfs.erofs scripts (put first in PATH): a counting wrapper
 * around the real one shows how often an image was actually built. The
 * built images are checked by extracting them with fsck.erofs. Everything is
 * removed in the teardown (an overlay mount too); PATH and the cache
 * variables are restored. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <dirent.h>
#include <cmocka.h>

#include "husk.h"
#include "husk/cleanup.h"

struct fx {
	char dir[PATH_MAX];   /* the test's temp dir */
	char root[PATH_MAX];  /* <dir>/rootfs */
	char cache[PATH_MAX]; /* <dir>/a/b/cache (created by the library) */
	char bin[PATH_MAX];   /* <dir>/bin: stand-in mkfs.erofs */
	char real_mkfs[PATH_MAX];
	char *saved_path, *saved_cache, *saved_xdg, *saved_home, *saved_max;
	pid_t kids[2]; /* test_concurrent's builders, killed if it fails */
	char mounted[PATH_MAX]; /* an overlay to unmount in the teardown */
};

/* ---- helpers ---- */

/* snprintf that says whether the result fit. */
static bool pfmt(char *buf, size_t len, const char *f, ...) __attribute__((format(printf, 3, 4)));
static bool pfmt(char *buf, size_t len, const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	int n = vsnprintf(buf, len, f, ap);
	va_end(ap);
	return n >= 0 && (size_t)n < len;
}

#define fmt(buf, len, ...) assert_true(pfmt(buf, len, __VA_ARGS__))

static void write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(close(fd), 0);
	assert_int_equal(chmod(path, mode), 0);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

static void rm_rf(const char *path)
{
	nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS);
}

static void save_env(char **slot, const char *name)
{
	const char *v = getenv(name);
	*slot = v ? strdup(v) : NULL;
}

static void restore_env(char **slot, const char *name)
{
	if (*slot)
		setenv(name, *slot, 1);
	else
		unsetenv(name);
	free(*slot);
	*slot = NULL;
}

static bool find_real_mkfs(char *out, size_t len)
{
	const char *path = getenv("PATH");
	char copy[4096];
	snprintf(copy, sizeof(copy), "%s", path ? path : "/usr/sbin:/usr/bin:/sbin:/bin");
	char *save = NULL;
	for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		snprintf(out, len, "%s/mkfs.erofs", d);
		if (access(out, X_OK) == 0)
			return true;
	}
	return false;
}

static int setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	if (!fx)
		return -1;
	if (!find_real_mkfs(fx->real_mkfs, sizeof(fx->real_mkfs))) {
		free(fx);
		return -1;
	}
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/husk-image-test.XXXXXX");
	if (!mkdtemp(fx->dir)) {
		free(fx);
		return -1;
	}
	if (!pfmt(fx->root, sizeof(fx->root), "%s/rootfs", fx->dir) ||
	    !pfmt(fx->cache, sizeof(fx->cache), "%s/a/b/cache", fx->dir) ||
	    !pfmt(fx->bin, sizeof(fx->bin), "%s/bin", fx->dir) || mkdir(fx->root, 0755) < 0 ||
	    mkdir(fx->bin, 0755) < 0) {
		rm_rf(fx->dir);
		free(fx);
		return -1;
	}
	save_env(&fx->saved_path, "PATH");
	save_env(&fx->saved_cache, "HUSK_IMAGE_CACHE");
	save_env(&fx->saved_xdg, "XDG_CACHE_HOME");
	save_env(&fx->saved_home, "HOME");
	save_env(&fx->saved_max, "HUSK_IMAGE_CACHE_MAX");
	unsetenv("HUSK_IMAGE_CACHE_MAX"); /* the default budget unless a test says */
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;
	for (size_t i = 0; i < ARRAY_SIZE(fx->kids); i++) {
		if (fx->kids[i] <= 0)
			continue;
		/* Each is a process group leader: this takes its mkfs.erofs too. */
		kill(-fx->kids[i], SIGKILL);
		waitpid(fx->kids[i], NULL, 0);
	}
	restore_env(&fx->saved_path, "PATH");
	restore_env(&fx->saved_cache, "HUSK_IMAGE_CACHE");
	restore_env(&fx->saved_xdg, "XDG_CACHE_HOME");
	restore_env(&fx->saved_home, "HOME");
	restore_env(&fx->saved_max, "HUSK_IMAGE_CACHE_MAX");
	if (fx->mounted[0])
		umount2(fx->mounted, MNT_DETACH);
	rm_rf(fx->dir);
	free(fx);
	return 0;
}

/* Puts an executable script `name` with `body` first in PATH. */
static void fake_tool(struct fx *fx, const char *name, const char *body)
{
	char path[PATH_MAX], newpath[8192];
	fmt(path, sizeof(path), "%s/%s", fx->bin, name);
	write_file(path, body, 0755);
	fmt(newpath, sizeof(newpath), "%s:%s", fx->bin, fx->saved_path ? fx->saved_path : "/usr/bin:/bin");
	assert_int_equal(setenv("PATH", newpath, 1), 0);
}

/* mkfs.erofs that records each build (the version probe runs it without
 * arguments) in <dir>/count, then runs the real one. */
static void counting_mkfs(struct fx *fx)
{
	char body[4 * PATH_MAX];
	fmt(body, sizeof(body),
	    "#!/bin/sh\n"
	    "case \" $* \" in *\" --quiet \"*) echo build >>'%s/count' ;; esac\n"
	    "exec '%s' \"$@\"\n",
	    fx->dir, fx->real_mkfs);
	fake_tool(fx, "mkfs.erofs", body);
}

static int builds(struct fx *fx)
{
	char path[PATH_MAX], buf[4096];
	fmt(path, sizeof(path), "%s/count", fx->dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf));
	close(fd);
	int lines = 0;
	for (ssize_t i = 0; i < n; i++)
		lines += buf[i] == '\n';
	return lines;
}

/* A small rootfs with every kind of entry mkfs.erofs takes. */
static void make_tree(const char *root)
{
	char p[PATH_MAX];
	const char *dirs[] = { "bin", "etc", "tmp", "run", "dev", "usr", "usr/share",
			       "usr/share/doc" };
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		fmt(p, sizeof(p), "%s/%s", root, dirs[i]);
		assert_int_equal(mkdir(p, 0755), 0);
	}
	fmt(p, sizeof(p), "%s/tmp", root);
	assert_int_equal(chmod(p, 01777), 0);
	fmt(p, sizeof(p), "%s/etc/passwd", root);
	write_file(p, "root:x:0:0:root:/root:/bin/sh\n", 0644);
	fmt(p, sizeof(p), "%s/bin/hello", root);
	write_file(p, "#!/bin/sh\necho hello\n", 0755);
	fmt(p, sizeof(p), "%s/usr/share/doc/README", root);
	write_file(p, "a file three levels down\n", 0600);
	fmt(p, sizeof(p), "%s/bin/sh", root);
	assert_int_equal(symlink("hello", p), 0);
	fmt(p, sizeof(p), "%s/run/fifo", root);
	assert_int_equal(mkfifo(p, 0620), 0);
	if (geteuid() == 0) {
		fmt(p, sizeof(p), "%s/dev/null", root);
		assert_int_equal(mknod(p, S_IFCHR | 0666, makedev(1, 3)), 0);
		fmt(p, sizeof(p), "%s/usr/share/doc/README", root);
		assert_int_equal(chown(p, 1000, 1001), 0);
	}
}

static char *image_ok(const char *cache, const char *root)
{
	struct husk_err err = { 0 };
	char *image = NULL;
	int r = husk_image_from_dir(cache, root, &image, &err);
	if (r != 0)
		print_error("husk_image_from_dir: %d %s\n", r, err.msg);
	assert_int_equal(r, 0);
	assert_non_null(image);
	return image;
}

/* Names in `dir` other than the mkfs.erofs version notes, joined by ' '. */
static void list_cache(const char *dir, char *out, size_t len)
{
	out[0] = '\0';
	DIR *d = opendir(dir);
	assert_non_null(d);
	struct dirent *de;
	size_t o = 0;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		    !strncmp(de->d_name, ".mkfs-version.", 14))
			continue;
		int n = snprintf(out + o, len - o, "%s%s", o ? " " : "", de->d_name);
		assert_true(n >= 0 && (size_t)n < len - o);
		o += (size_t)n;
	}
	closedir(d);
}

static int count_suffix(const char *list, const char *suffix)
{
	int n = 0;
	char copy[8192];
	snprintf(copy, sizeof(copy), "%s", list);
	char *save = NULL;
	for (char *t = strtok_r(copy, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
		size_t tl = strlen(t), sl = strlen(suffix);
		n += tl >= sl && !strcmp(t + tl - sl, suffix);
	}
	return n;
}

/* Runs argv, returns its exit status (-1 if it did not exit). */
static int run(const char *const argv[])
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 1);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void set_mtime(const char *path, time_t sec, long nsec)
{
	const struct timespec ts[2] = { { sec, nsec }, { sec, nsec } };
	assert_int_equal(utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW), 0);
}

/* ---- tests ---- */

static void test_cached_once(void **state)
{
	struct fx *fx = *state;
	counting_mkfs(fx);
	make_tree(fx->root);

	char *a = image_ok(fx->cache, fx->root);
	assert_int_equal(builds(fx), 1);
	/* <cache>/<64 hex>.erofs, read-only, in a cache created 0700. */
	size_t cl = strlen(fx->cache);
	assert_memory_equal(a, fx->cache, cl);
	assert_int_equal(strlen(a), cl + 1 + 64 + 6);
	assert_string_equal(a + cl + 1 + 64, ".erofs");
	for (size_t i = cl + 1; i < cl + 65; i++)
		assert_non_null(strchr("0123456789abcdef", a[i]));
	struct stat st1, cst;
	assert_int_equal(stat(a, &st1), 0);
	assert_int_equal(st1.st_mode & 07777, 0444);
	assert_int_equal(stat(fx->cache, &cst), 0);
	assert_int_equal(cst.st_mode & 07777, 0700);

	/* A hit: no build, the same inode and mtime, atime moved (LRU). */
	const struct timespec old[2] = { { 1, 0 }, { 0, UTIME_OMIT } };
	assert_int_equal(utimensat(AT_FDCWD, a, old, 0), 0);
	char *b = image_ok(fx->cache, fx->root);
	assert_string_equal(a, b);
	assert_int_equal(builds(fx), 1);
	struct stat st2;
	assert_int_equal(stat(b, &st2), 0);
	assert_int_equal(st1.st_ino, st2.st_ino);
	assert_int_equal(st1.st_mtim.tv_sec, st2.st_mtim.tv_sec);
	assert_int_equal(st1.st_mtim.tv_nsec, st2.st_mtim.tv_nsec);
	assert_true(st2.st_atim.tv_sec > 1);

	/* No lock or temp file stays behind. */
	char list[8192];
	list_cache(fx->cache, list, sizeof(list));
	assert_string_equal(list, a + cl + 1);
	free(a);
	free(b);
}

/* Two trees made independently, in different orders, with equal metadata
 * have one identity: the walk is sorted, not in readdir order. */
static void test_same_content_same_image(void **state)
{
	struct fx *fx = *state;
	counting_mkfs(fx);
	char r2[PATH_MAX], p[PATH_MAX];
	fmt(r2, sizeof(r2), "%s/rootfs2", fx->dir);
	assert_int_equal(mkdir(r2, 0755), 0);
	const char *names[] = { "zeta", "alpha", "mid", "Beta", "a-b", "a.b" };
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		fmt(p, sizeof(p), "%s/%s", fx->root, names[i]);
		write_file(p, names[i], 0644);
		set_mtime(p, 1000000 + (time_t)i, 5);
		fmt(p, sizeof(p), "%s/%s", r2, names[ARRAY_SIZE(names) - 1 - i]);
		write_file(p, names[ARRAY_SIZE(names) - 1 - i], 0644);
		set_mtime(p, 1000000 + (time_t)(ARRAY_SIZE(names) - 1 - i), 5);
	}
	set_mtime(fx->root, 42, 0);
	set_mtime(r2, 42, 0);
	char *a = image_ok(fx->cache, fx->root);
	char *b = image_ok(fx->cache, r2);
	assert_string_equal(a, b);
	assert_int_equal(builds(fx), 1);
	free(a);
	free(b);
}

static void test_content_change(void **state)
{
	struct fx *fx = *state;
	counting_mkfs(fx);
	make_tree(fx->root);
	char *a = image_ok(fx->cache, fx->root);
	char p[PATH_MAX];
	fmt(p, sizeof(p), "%s/etc/passwd", fx->root);
	write_file(p, "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n", 0644);
	char *b = image_ok(fx->cache, fx->root);
	assert_string_not_equal(a, b);
	assert_int_equal(builds(fx), 2);
	/* The old image stays (a GC's business); both are valid. */
	assert_int_equal(access(a, F_OK), 0);
	assert_int_equal(access(b, F_OK), 0);

	/* Same size, only the mtime differs. */
	struct stat st;
	assert_int_equal(stat(p, &st), 0);
	set_mtime(p, st.st_mtim.tv_sec, st.st_mtim.tv_nsec == 1 ? 2 : 1);
	char *c = image_ok(fx->cache, fx->root);
	assert_string_not_equal(c, a);
	assert_string_not_equal(c, b);
	assert_int_equal(builds(fx), 3);
	free(a);
	free(b);
	free(c);
}

static void test_chmod(void **state)
{
	struct fx *fx = *state;
	counting_mkfs(fx);
	make_tree(fx->root);
	char *a = image_ok(fx->cache, fx->root);
	char p[PATH_MAX];
	fmt(p, sizeof(p), "%s/bin/hello", fx->root);
	assert_int_equal(chmod(p, 0700), 0);
	char *b = image_ok(fx->cache, fx->root);
	assert_string_not_equal(a, b);
	assert_int_equal(builds(fx), 2);
	/* Back to the old mode: the old identity, served from the cache. */
	assert_int_equal(chmod(p, 0755), 0);
	char *c = image_ok(fx->cache, fx->root);
	assert_string_equal(a, c);
	assert_int_equal(builds(fx), 2);
	free(a);
	free(b);
	free(c);
}

static void test_symlink_target(void **state)
{
	struct fx *fx = *state;
	counting_mkfs(fx);
	make_tree(fx->root);
	char p[PATH_MAX];
	char bin[PATH_MAX];
	fmt(p, sizeof(p), "%s/bin/sh", fx->root);
	fmt(bin, sizeof(bin), "%s/bin", fx->root);
	set_mtime(p, 1234567, 890);
	set_mtime(bin, 7, 0);
	char *a = image_ok(fx->cache, fx->root);
	/* Same length and mtimes (the link's and its directory's): only the
	 * target differs. */
	assert_int_equal(unlink(p), 0);
	assert_int_equal(symlink("hellp", p), 0);
	set_mtime(p, 1234567, 890);
	set_mtime(bin, 7, 0);
	char *b = image_ok(fx->cache, fx->root);
	assert_int_equal(unlink(p), 0);
	assert_int_equal(symlink("hello", p), 0);
	set_mtime(p, 1234567, 890);
	set_mtime(bin, 7, 0);
	char *c = image_ok(fx->cache, fx->root);
	assert_string_not_equal(a, b);
	assert_string_equal(a, c);
	assert_int_equal(builds(fx), 2);
	free(a);
	free(b);
	free(c);
}

/* Owner, name, xattr, a new empty file and a directory's mtime each give a
 * new identity. */
static void test_other_attributes(void **state)
{
	struct fx *fx = *state;
	counting_mkfs(fx);
	make_tree(fx->root);
	char p[PATH_MAX], q[PATH_MAX], d[PATH_MAX];
	fmt(p, sizeof(p), "%s/etc/passwd", fx->root);
	fmt(d, sizeof(d), "%s/etc", fx->root);
	set_mtime(d, 99, 0);
	char *seen[8];
	int n = 0;
	seen[n++] = image_ok(fx->cache, fx->root);

	if (geteuid() == 0) {
		assert_int_equal(lchown(p, 0, 5), 0);
		seen[n++] = image_ok(fx->cache, fx->root);
	}
	fmt(q, sizeof(q), "%s/etc/passwe", fx->root);
	assert_int_equal(rename(p, q), 0);
	set_mtime(d, 99, 0);
	seen[n++] = image_ok(fx->cache, fx->root);

	if (lsetxattr(q, "user.husk", "1", 1, 0) == 0) {
		seen[n++] = image_ok(fx->cache, fx->root);
		assert_int_equal(lsetxattr(q, "user.husk", "2", 1, 0), 0);
		seen[n++] = image_ok(fx->cache, fx->root);
	} else {
		print_message("xattrs unsupported here (%s): not checked\n", strerror(errno));
	}
	fmt(q, sizeof(q), "%s/etc/empty", fx->root);
	write_file(q, "", 0644);
	set_mtime(d, 99, 0);
	seen[n++] = image_ok(fx->cache, fx->root);
	set_mtime(d, 100, 0);
	seen[n++] = image_ok(fx->cache, fx->root);

	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++)
			assert_string_not_equal(seen[i], seen[j]);
	assert_int_equal(builds(fx), n);
	for (int i = 0; i < n; i++)
		free(seen[i]);
}

static void check_same(const char *a, const char *b, bool owners)
{
	struct stat sa, sb;
	assert_int_equal(lstat(a, &sa), 0);
	assert_int_equal(lstat(b, &sb), 0);
	if ((sa.st_mode & S_IFMT) != (sb.st_mode & S_IFMT) ||
	    (sa.st_mode & 07777) != (sb.st_mode & 07777))
		fail_msg("%s: mode %o, extracted %o", a, sa.st_mode, sb.st_mode);
	if (owners && (sa.st_uid != sb.st_uid || sa.st_gid != sb.st_gid))
		fail_msg("%s: owner %u:%u, extracted %u:%u", a, sa.st_uid, sa.st_gid, sb.st_uid,
			 sb.st_gid);
	if (S_ISREG(sa.st_mode)) {
		char ba[4096], bb[4096];
		int fa = open(a, O_RDONLY), fb = open(b, O_RDONLY);
		assert_true(fa >= 0 && fb >= 0);
		ssize_t na = read(fa, ba, sizeof(ba)), nb = read(fb, bb, sizeof(bb));
		close(fa);
		close(fb);
		assert_int_equal(na, nb);
		assert_memory_equal(ba, bb, (size_t)na);
		assert_int_equal(sa.st_mtim.tv_sec, sb.st_mtim.tv_sec);
		assert_int_equal(sa.st_mtim.tv_nsec, sb.st_mtim.tv_nsec);
	} else if (S_ISLNK(sa.st_mode)) {
		char ta[PATH_MAX] = { 0 }, tb[PATH_MAX] = { 0 };
		assert_true(readlink(a, ta, sizeof(ta) - 1) > 0);
		assert_true(readlink(b, tb, sizeof(tb) - 1) > 0);
		assert_string_equal(ta, tb);
	} else if (S_ISCHR(sa.st_mode)) {
		assert_int_equal(sa.st_rdev, sb.st_rdev);
	}
}

/* The image holds the tree: fsck.erofs checks it and extracts it. */
static void test_image_contents(void **state)
{
	struct fx *fx = *state;
	make_tree(fx->root);
	char *img = image_ok(fx->cache, fx->root); /* the real mkfs.erofs */
	const char *fsck[] = { "fsck.erofs", img, NULL };
	assert_int_equal(run(fsck), 0);
	char out[PATH_MAX], opt[PATH_MAX + 16];
	fmt(out, sizeof(out), "%s/extracted", fx->dir);
	fmt(opt, sizeof(opt), "--extract=%s", out);
	bool root = geteuid() == 0;
	const char *extract[] = { "fsck.erofs", opt, root ? "--preserve" : "--preserve-perms",
				  img, NULL };
	assert_int_equal(run(extract), 0);

	const char *entries[] = { "etc/passwd", "bin/hello", "bin/sh", "tmp", "run/fifo",
				  "usr/share/doc/README", "dev/null" };
	for (size_t i = 0; i < ARRAY_SIZE(entries); i++) {
		char a[PATH_MAX], b[PATH_MAX];
		fmt(a, sizeof(a), "%s/%s", fx->root, entries[i]);
		fmt(b, sizeof(b), "%s/%s", out, entries[i]);
		if (!root && !strcmp(entries[i], "dev/null"))
			continue;
		check_same(a, b, root);
	}
	free(img);
}

static void test_missing_rootfs(void **state)
{
	struct fx *fx = *state;
	counting_mkfs(fx);
	char missing[PATH_MAX];
	fmt(missing, sizeof(missing), "%s/no-such-rootfs", fx->dir);
	struct husk_err err = { 0 };
	char *image = (char *)1;
	assert_int_equal(husk_image_from_dir(fx->cache, missing, &image, &err), -ENOENT);
	assert_null(image);
	assert_int_equal(err.code, -ENOENT);
	assert_non_null(strstr(err.msg, missing));

	char file[PATH_MAX];
	fmt(file, sizeof(file), "%s/a-file", fx->dir);
	write_file(file, "x", 0644);
	assert_int_equal(husk_image_from_dir(fx->cache, file, &image, &err), -ENOTDIR);
	assert_non_null(strstr(err.msg, file));
	assert_int_equal(builds(fx), 0);
	assert_int_equal(access(fx->cache, F_OK), -1); /* nothing made */
}

static void check_no_leftovers(struct fx *fx)
{
	char list[8192];
	list_cache(fx->cache, list, sizeof(list));
	if (list[0])
		fail_msg("cache %s holds: %s", fx->cache, list);
}

static void test_mkfs_fails(void **state)
{
	struct fx *fx = *state;
	make_tree(fx->root);
	/* Writes part of an image, complains on stderr, exits 3. */
	fake_tool(fx, "mkfs.erofs",
		  "#!/bin/sh\n"
		  "[ $# -eq 0 ] && { echo 'mkfs.erofs 0.0-fake'; exit 1; }\n"
		  "for a; do out=$b; b=$a; done\n"
		  "echo partial >\"$out\"\n"
		  "echo 'first line' >&2\n"
		  "echo 'boom: cannot build' >&2\n"
		  "exit 3\n");
	struct husk_err err = { 0 };
	char *image = NULL;
	int r = husk_image_from_dir(fx->cache, fx->root, &image, &err);
	assert_int_equal(r, -EIO);
	assert_null(image);
	print_message("error: %s\n", err.msg);
	assert_non_null(strstr(err.msg, "mkfs.erofs"));
	assert_non_null(strstr(err.msg, fx->root));
	assert_non_null(strstr(err.msg, "exit status 3"));
	assert_non_null(strstr(err.msg, "boom: cannot build"));
	check_no_leftovers(fx);

	/* Its error lines are quoted rather than the usage text after them. */
	fake_tool(fx, "mkfs.erofs",
		  "#!/bin/sh\n"
		  "[ $# -eq 0 ] && exit 1\n"
		  "printf '<E> erofs: real\\tproblem\\nusage: [options] FILE DIRECTORY\\n\\n"
		  " -d#  set output message level\\n -x#  set xattr tolerance\\n' >&2\n"
		  "exit 1\n");
	r = husk_image_from_dir(fx->cache, fx->root, &image, &err);
	assert_int_equal(r, -EIO);
	print_message("error: %s\n", err.msg);
	assert_non_null(strstr(err.msg, "exit status 1: <E> erofs: real problem"));
	assert_null(strstr(err.msg, "usage"));
	check_no_leftovers(fx);

	/* Exits 0 without writing an image. */
	fake_tool(fx, "mkfs.erofs", "#!/bin/sh\n[ $# -eq 0 ] && exit 1\nexit 0\n");
	r = husk_image_from_dir(fx->cache, fx->root, &image, &err);
	assert_int_equal(r, -EIO);
	assert_non_null(strstr(err.msg, "no erofs image"));
	check_no_leftovers(fx);

	/* Killed by a signal. */
	fake_tool(fx, "mkfs.erofs", "#!/bin/sh\n[ $# -eq 0 ] && exit 1\nkill -9 $$\n");
	r = husk_image_from_dir(fx->cache, fx->root, &image, &err);
	assert_int_equal(r, -EIO);
	assert_non_null(strstr(err.msg, "signal 9"));
	check_no_leftovers(fx);
}

static void test_mkfs_missing(void **state)
{
	struct fx *fx = *state;
	make_tree(fx->root);
	char empty[PATH_MAX];
	fmt(empty, sizeof(empty), "%s/empty", fx->dir);
	assert_int_equal(mkdir(empty, 0755), 0);
	assert_int_equal(setenv("PATH", empty, 1), 0);
	struct husk_err err = { 0 };
	char *image = NULL;
	assert_int_equal(husk_image_from_dir(fx->cache, fx->root, &image, &err), -ENOENT);
	assert_null(image);
	assert_non_null(strstr(err.msg, "mkfs.erofs not found in PATH"));
	assert_non_null(strstr(err.msg, empty));
}

/* A builder killed mid-way leaves a temp file and its lock: the next build
 * of that identity removes both. */
static void test_stale_leftovers(void **state)
{
	struct fx *fx = *state;
	counting_mkfs(fx);
	make_tree(fx->root);
	char *a = image_ok(fx->cache, fx->root);
	char hex[65];
	fmt(hex, sizeof(hex), "%.64s", a + strlen(fx->cache) + 1);
	assert_int_equal(unlink(a), 0);
	char p[PATH_MAX];
	fmt(p, sizeof(p), "%s/.%s.tmp.Ab12Cd", fx->cache, hex);
	write_file(p, "half an image", 0600);
	fmt(p, sizeof(p), "%s/.%s.lock", fx->cache, hex);
	write_file(p, "", 0600);
	char *b = image_ok(fx->cache, fx->root);
	assert_string_equal(a, b);
	assert_int_equal(builds(fx), 2);
	char list[8192];
	list_cache(fx->cache, list, sizeof(list));
	assert_string_equal(list, b + strlen(fx->cache) + 1);
	free(a);
	free(b);
}

#define CHILD_CHECK(cond)                                                                  \
	do {                                                                               \
		if (!(cond)) {                                                             \
			fprintf(stderr, "child: %s:%d: %s\n", __FILE__, __LINE__, #cond);  \
			_exit(1);                                                          \
		}                                                                          \
	} while (0)

/* Runs `fn` as an unprivileged user: in a child that drops to nobody when we
 * are root, else in-process (via a child too, for the same reporting). */
static void as_nobody(void (*fn)(const char *dir), const char *dir)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (geteuid() == 0) {
			CHILD_CHECK(setgroups(0, NULL) == 0);
			CHILD_CHECK(setresgid(65534, 65534, 65534) == 0);
			CHILD_CHECK(setresuid(65534, 65534, 65534) == 0);
		}
		fn(dir);
		_exit(0);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void unreadable_child(const char *dir)
{
	char root[PATH_MAX], cache[PATH_MAX], p[PATH_MAX];
	CHILD_CHECK(pfmt(root, sizeof(root), "%s/rootfs", dir));
	CHILD_CHECK(pfmt(cache, sizeof(cache), "%s/cache", dir));
	CHILD_CHECK(mkdir(root, 0755) == 0);
	CHILD_CHECK(pfmt(p, sizeof(p), "%s/secret", root));
	int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	CHILD_CHECK(fd >= 0 && write(fd, "x", 1) == 1 && fchmod(fd, 0) == 0 && close(fd) == 0);

	/* The walk reads no contents, so mkfs.erofs is what fails. */
	struct husk_err err = { 0 };
	char *image = NULL;
	int r = husk_image_from_dir(cache, root, &image, &err);
	fprintf(stderr, "unreadable file: %d %s\n", r, err.msg);
	CHILD_CHECK(r == -EIO && !image);
	CHILD_CHECK(strstr(err.msg, "mkfs.erofs") && strstr(err.msg, root));
	DIR *d = opendir(cache);
	CHILD_CHECK(d);
	struct dirent *de;
	while ((de = readdir(d)))
		CHILD_CHECK(de->d_name[0] != '.' || !strcmp(de->d_name, ".") ||
			    !strcmp(de->d_name, "..") || !strncmp(de->d_name, ".mkfs-version.", 14));
	closedir(d);
	CHILD_CHECK(unlink(p) == 0);

	/* An unreadable directory fails the walk, naming it. */
	CHILD_CHECK(pfmt(p, sizeof(p), "%s/locked", root));
	CHILD_CHECK(mkdir(p, 0) == 0);
	r = husk_image_from_dir(cache, root, &image, &err);
	fprintf(stderr, "unreadable dir: %d %s\n", r, err.msg);
	CHILD_CHECK(r == -EACCES && !image);
	CHILD_CHECK(strstr(err.msg, "locked") && strstr(err.msg, root));
	CHILD_CHECK(rmdir(p) == 0);
}

static void test_unreadable(void **state)
{
	struct fx *fx = *state;
	char dir[PATH_MAX];
	fmt(dir, sizeof(dir), "%s/user", fx->dir);
	assert_int_equal(mkdir(dir, 0755), 0);
	if (geteuid() == 0) {
		assert_int_equal(chmod(fx->dir, 0755), 0);
		assert_int_equal(chown(dir, 65534, 65534), 0);
	}
	as_nobody(unreadable_child, dir);
}

static void default_cache_child(const char *dir)
{
	(void)dir;
	char buf[PATH_MAX];
	unsetenv("HUSK_IMAGE_CACHE");
	setenv("XDG_CACHE_HOME", "/xdg", 1);
	setenv("HOME", "/home/someone", 1);
	CHILD_CHECK(!strcmp(husk_default_image_cache(buf, sizeof(buf)) ?: "", "/xdg/husk/images"));
	/* A relative XDG_CACHE_HOME is ignored (XDG spec). */
	setenv("XDG_CACHE_HOME", "relative", 1);
	CHILD_CHECK(!strcmp(husk_default_image_cache(buf, sizeof(buf)) ?: "",
			    "/home/someone/.cache/husk/images"));
	unsetenv("XDG_CACHE_HOME");
	CHILD_CHECK(!strcmp(husk_default_image_cache(buf, sizeof(buf)) ?: "",
			    "/home/someone/.cache/husk/images"));
	setenv("HUSK_IMAGE_CACHE", "/explicit", 1);
	CHILD_CHECK(!strcmp(husk_default_image_cache(buf, sizeof(buf)) ?: "", "/explicit"));
}

static void test_default_cache(void **state)
{
	struct fx *fx = *state;
	char buf[PATH_MAX];
	assert_int_equal(setenv("HUSK_IMAGE_CACHE", "/some/cache", 1), 0);
	assert_string_equal(husk_default_image_cache(buf, sizeof(buf)), "/some/cache");
	char small[8];
	assert_null(husk_default_image_cache(small, sizeof(small)));
	assert_int_equal(unsetenv("HUSK_IMAGE_CACHE"), 0);
	if (geteuid() == 0)
		assert_string_equal(husk_default_image_cache(buf, sizeof(buf)),
				    "/var/cache/husk/images");
	as_nobody(default_cache_child, fx->dir);

	/* cache_dir NULL: the default, here $HUSK_IMAGE_CACHE. */
	counting_mkfs(fx);
	make_tree(fx->root);
	assert_int_equal(setenv("HUSK_IMAGE_CACHE", fx->cache, 1), 0);
	struct husk_err err = { 0 };
	char *image = NULL;
	assert_int_equal(husk_image_from_dir(NULL, fx->root, &image, &err), 0);
	assert_memory_equal(image, fx->cache, strlen(fx->cache));
	assert_int_equal(access(image, R_OK), 0);
	free(image);
}

static bool waiting_for_flock(pid_t pid)
{
	FILE *f = fopen("/proc/locks", "re");
	assert_non_null(f);
	char line[512];
	bool found = false;
	while (!found && fgets(line, sizeof(line), f)) {
		char *p = strstr(line, "-> FLOCK");
		int lpid;
		if (p && sscanf(p, "-> FLOCK %*s %*s %d", &lpid) == 1 && lpid == pid)
			found = true;
	}
	fclose(f);
	return found;
}

static pid_t build_in_child(struct fx *fx, size_t slot, int *result_fd)
{
	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		setpgid(0, 0);
		struct husk_err err = { 0 };
		char *image = NULL;
		int r = husk_image_from_dir(fx->cache, fx->root, &image, &err);
		dprintf(p[1], "%d %s\n", r, r ? err.msg : image);
		free(image);
		_exit(0);
	}
	setpgid(pid, pid); /* before teardown might signal the group */
	fx->kids[slot] = pid;
	close(p[1]);
	*result_fd = p[0];
	return pid;
}

static void read_result(int fd, char *buf, size_t len)
{
	size_t o = 0;
	ssize_t n;
	while (o + 1 < len && (n = read(fd, buf + o, len - 1 - o)) > 0)
		o += (size_t)n;
	buf[o] = '\0';
	close(fd);
}

/* Two processes convert the same tree at once: one builds, the other waits
 * on the lock and then takes the finished image. The stand-in mkfs.erofs
 * holds the first build until the second process is seen blocked in flock
 * (/proc/locks), so the test does not depend on timing. */
static void test_concurrent(void **state)
{
	struct fx *fx = *state;
	make_tree(fx->root);
	char started[PATH_MAX], go[PATH_MAX], body[4 * PATH_MAX];
	fmt(started, sizeof(started), "%s/started.fifo", fx->dir);
	fmt(go, sizeof(go), "%s/go.fifo", fx->dir);
	assert_int_equal(mkfifo(started, 0600), 0);
	assert_int_equal(mkfifo(go, 0600), 0);
	fmt(body, sizeof(body),
	    "#!/bin/sh\n"
	    "case \" $* \" in *\" --quiet \"*)\n"
	    "  echo build >>'%s/count'\n"
	    "  echo started >'%s'\n"
	    "  read go <'%s' ;;\n"
	    "esac\n"
	    "exec '%s' \"$@\"\n",
	    fx->dir, started, go, fx->real_mkfs);
	fake_tool(fx, "mkfs.erofs", body);
	/* O_RDWR: never blocks, and keeps the fifo's buffer alive. */
	int go_fd = open(go, O_RDWR | O_CLOEXEC);
	int started_fd = open(started, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	assert_true(go_fd >= 0 && started_fd >= 0);

	int res_a, res_b;
	pid_t a = build_in_child(fx, 0, &res_a);
	int pidfd_a = (int)syscall(SYS_pidfd_open, a, 0);
	assert_true(pidfd_a >= 0);
	struct pollfd pfd[2] = { { started_fd, POLLIN, 0 }, { pidfd_a, POLLIN, 0 } };
	/* A hang guard only (the build is held until we say go). */
	assert_int_equal(poll(pfd, 2, 120000), 1);
	assert_true(pfd[0].revents & POLLIN);

	pid_t b = build_in_child(fx, 1, &res_b);
	bool blocked = false;
	for (int i = 0; i < 12000 && !blocked; i++) {
		blocked = waiting_for_flock(b);
		if (!blocked) {
			int st;
			assert_int_equal(waitpid(b, &st, WNOHANG), 0); /* b must wait for a */
			nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
		}
	}
	assert_true(blocked);
	assert_int_equal(write(go_fd, "go\n", 3), 3);

	char ra[PATH_MAX + 16], rb[PATH_MAX + 16];
	read_result(res_a, ra, sizeof(ra));
	read_result(res_b, rb, sizeof(rb));
	int st;
	assert_int_equal(waitpid(a, &st, 0), a);
	fx->kids[0] = 0;
	assert_int_equal(waitpid(b, &st, 0), b);
	fx->kids[1] = 0;
	close(pidfd_a);
	close(go_fd);
	close(started_fd);
	print_message("a: %sb: %s", ra, rb);
	assert_true(!strncmp(ra, "0 /", 3));
	assert_string_equal(ra, rb);
	assert_int_equal(builds(fx), 1);
	char list[8192];
	list_cache(fx->cache, list, sizeof(list));
	assert_int_equal(count_suffix(list, ".erofs"), 1);
	assert_null(strchr(list, ' ')); /* nothing else: no lock, no temp */
}

/* ---- identity across copies ---- */

static int set_old_mtime(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	if (ftw->level == 0)
		return 0; /* the root is the tests' business */
	const struct timespec ts[2] = { { 1500000000, 0 }, { 1500000000, 0 } };
	return utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW);
}

/* make_tree with a hard link, every entry but the root at one old mtime
 * (1500000000 s, as from a tar layer): the image's root mtime is then
 * clamped to 1500000000. */
static void make_old_tree(const char *root)
{
	make_tree(root);
	char a[PATH_MAX], b[PATH_MAX];
	fmt(a, sizeof(a), "%s/bin/hello", root);
	fmt(b, sizeof(b), "%s/usr/hello-link", root);
	assert_int_equal(link(a, b), 0);
	assert_int_equal(nftw(root, set_old_mtime, 32, FTW_PHYS), 0);
}

static void cp_a(const char *from, const char *to)
{
	const char *cp[] = { "cp", "-a", from, to, NULL };
	assert_int_equal(run(cp), 0);
}

/* The root's mtime as stored in `img`: fsck.erofs extracts it. */
static void image_root_mtime(struct fx *fx, const char *img, struct timespec *out)
{
	char dir[PATH_MAX], opt[PATH_MAX + 16];
	fmt(dir, sizeof(dir), "%s/extract-root", fx->dir);
	rm_rf(dir);
	fmt(opt, sizeof(opt), "--extract=%s", dir);
	const char *extract[] = { "fsck.erofs", opt, "--preserve-perms", img, NULL };
	assert_int_equal(run(extract), 0);
	struct stat st;
	assert_int_equal(stat(dir, &st), 0);
	*out = st.st_mtim;
	rm_rf(dir);
}

/* cp -a copies, one with a fresh root mtime (as containerd's overlay upper
 * gives), share one image; the image's root mtime is the clamped one. */
static void test_copies_share_image(void **state)
{
	struct fx *fx = *state;
	counting_mkfs(fx);
	make_old_tree(fx->root);
	set_mtime(fx->root, 1600000000, 123);
	char c1[PATH_MAX], c2[PATH_MAX];
	fmt(c1, sizeof(c1), "%s/copy1", fx->dir);
	fmt(c2, sizeof(c2), "%s/copy2", fx->dir);
	cp_a(fx->root, c1);
	cp_a(fx->root, c2);
	set_mtime(c2, 1700000000, 456);

	char *a = image_ok(fx->cache, fx->root);
	char *b = image_ok(fx->cache, c1);
	char *c = image_ok(fx->cache, c2);
	assert_string_equal(a, b);
	assert_string_equal(a, c);
	assert_int_equal(builds(fx), 1);
	struct timespec t;
	image_root_mtime(fx, a, &t);
	assert_int_equal(t.tv_sec, 1500000000);
	assert_int_equal(t.tv_nsec, 0);
	/* A root made in the same second as the newest entry (a snapshot
	 * prepared right after the unpack) too. */
	set_mtime(c2, 1500000000, 999);
	char *c3 = image_ok(fx->cache, c2);
	assert_string_equal(a, c3);
	assert_int_equal(builds(fx), 1);
	free(c3);

	/* A root older than its newest entry is stored as it is: it counts. */
	set_mtime(c2, 1400000000, 0);
	char *d = image_ok(fx->cache, c2);
	assert_string_not_equal(a, d);
	assert_int_equal(builds(fx), 2);
	image_root_mtime(fx, d, &t);
	assert_int_equal(t.tv_sec, 1400000000);
	set_mtime(c2, 1400000000, 1);
	char *e = image_ok(fx->cache, c2);
	assert_string_not_equal(d, e);
	assert_int_equal(builds(fx), 3);

	/* Newest entries with nanoseconds keep them: the root is clamped only
	 * from the next second on. */
	char p[PATH_MAX];
	fmt(p, sizeof(p), "%s/etc/passwd", c1);
	set_mtime(p, 1500000000, 5);
	set_mtime(c1, 1600000000, 0);
	char *f = image_ok(fx->cache, c1);
	image_root_mtime(fx, f, &t);
	assert_int_equal(t.tv_sec, 1500000001);
	assert_int_equal(t.tv_nsec, 0);
	set_mtime(c1, 1700000000, 0);
	char *g = image_ok(fx->cache, c1);
	assert_string_equal(f, g);
	assert_int_equal(builds(fx), 4);
	free(f);
	free(g);
	free(a);
	free(b);
	free(c);
	free(d);
	free(e);
}

/* An overlay mount of a tree (what the shim converts for containerd) has a
 * fresh root (the upper directory), other inode numbers and st_dev: it
 * shares the tree's image. */
static void test_overlay_shares_image(void **state)
{
	struct fx *fx = *state;
	if (geteuid() != 0) {
		print_message("overlay mounts need root\n");
		skip();
	}
	counting_mkfs(fx);
	make_old_tree(fx->root);
	set_mtime(fx->root, 1600000000, 0);
	char upper[PATH_MAX], work[PATH_MAX], merged[PATH_MAX], opts[4 * PATH_MAX];
	fmt(upper, sizeof(upper), "%s/upper", fx->dir);
	fmt(work, sizeof(work), "%s/work", fx->dir);
	fmt(merged, sizeof(merged), "%s/merged", fx->dir);
	assert_int_equal(mkdir(upper, 0755), 0);
	assert_int_equal(chmod(upper, 0755), 0);
	assert_int_equal(mkdir(work, 0700), 0);
	assert_int_equal(mkdir(merged, 0755), 0);
	fmt(opts, sizeof(opts), "lowerdir=%s,upperdir=%s,workdir=%s", fx->root, upper, work);
	if (mount("overlay", merged, "overlay", 0, opts) < 0) {
		if (errno != EPERM && errno != ENODEV)
			fail_msg("mount overlay on %s: %s", merged, strerror(errno));
		print_message("no overlay mount here (%s)\n", strerror(errno));
		skip();
	}
	fmt(fx->mounted, sizeof(fx->mounted), "%s", merged);
	struct stat lst, mst;
	assert_int_equal(stat(fx->root, &lst), 0);
	assert_int_equal(stat(merged, &mst), 0);
	assert_true(lst.st_dev != mst.st_dev || lst.st_ino != mst.st_ino);
	assert_true(lst.st_mtim.tv_sec != mst.st_mtim.tv_sec);

	char *a = image_ok(fx->cache, fx->root);
	char *b = image_ok(fx->cache, merged);
	assert_string_equal(a, b);
	assert_int_equal(builds(fx), 1);
	/* A change made through the overlay (copy-up) is a new image. */
	char p[PATH_MAX];
	fmt(p, sizeof(p), "%s/bin/hello", merged);
	assert_int_equal(chmod(p, 0700), 0);
	char *c = image_ok(fx->cache, merged);
	assert_string_not_equal(a, c);
	assert_int_equal(builds(fx), 2);
	assert_int_equal(umount2(merged, 0), 0);
	fx->mounted[0] = '\0';
	free(a);
	free(b);
	free(c);
}

/* Which entries share an inode is part of the image, not the inode number. */
static void test_hard_links(void **state)
{
	struct fx *fx = *state;
	counting_mkfs(fx);
	char a[PATH_MAX], b[PATH_MAX], c[PATH_MAX];
	fmt(a, sizeof(a), "%s/a", fx->root);
	fmt(b, sizeof(b), "%s/b", fx->root);
	fmt(c, sizeof(c), "%s/c", fx->root);
	write_file(a, "same", 0644);
	write_file(b, "same", 0644);
	write_file(c, "same", 0644);
	set_mtime(a, 1000, 0);
	set_mtime(b, 1000, 0);
	set_mtime(c, 1000, 0);
	set_mtime(fx->root, 2000, 0);
	char *separate = image_ok(fx->cache, fx->root);

	assert_int_equal(unlink(b), 0);
	assert_int_equal(link(a, b), 0); /* a = b, c apart */
	set_mtime(fx->root, 2000, 0);
	char *ab = image_ok(fx->cache, fx->root);
	assert_string_not_equal(separate, ab);

	assert_int_equal(unlink(b), 0);
	write_file(b, "same", 0644);
	set_mtime(b, 1000, 0);
	assert_int_equal(unlink(c), 0);
	assert_int_equal(link(a, c), 0); /* a = c, b apart */
	set_mtime(fx->root, 2000, 0);
	char *ac = image_ok(fx->cache, fx->root);
	assert_string_not_equal(separate, ac);
	assert_string_not_equal(ab, ac);
	assert_int_equal(builds(fx), 3);

	/* A copy keeps the grouping with other inode numbers: the same image.
	 * A link from outside the tree is not in the image: no matter. */
	char copy[PATH_MAX], outside[PATH_MAX];
	fmt(copy, sizeof(copy), "%s/copy", fx->dir);
	cp_a(fx->root, copy);
	fmt(outside, sizeof(outside), "%s/outside", fx->dir);
	fmt(b, sizeof(b), "%s/b", copy);
	assert_int_equal(link(b, outside), 0);
	char *again = image_ok(fx->cache, copy);
	assert_string_equal(ac, again);
	assert_int_equal(builds(fx), 3);
	free(separate);
	free(ab);
	free(ac);
	free(again);
}

/* The root's own mode, owner and xattrs, and a device number, count. */
static void test_root_and_devices(void **state)
{
	struct fx *fx = *state;
	counting_mkfs(fx);
	make_old_tree(fx->root);
	char *seen[6];
	int n = 0;
	seen[n++] = image_ok(fx->cache, fx->root);
	assert_int_equal(chmod(fx->root, 0750), 0);
	seen[n++] = image_ok(fx->cache, fx->root);
	if (lsetxattr(fx->root, "user.husk", "1", 1, 0) == 0)
		seen[n++] = image_ok(fx->cache, fx->root);
	else
		print_message("xattrs unsupported here (%s): not checked\n", strerror(errno));
	if (geteuid() == 0) {
		assert_int_equal(chown(fx->root, 0, 7), 0);
		seen[n++] = image_ok(fx->cache, fx->root);
		char p[PATH_MAX], d[PATH_MAX];
		fmt(p, sizeof(p), "%s/dev/null", fx->root);
		fmt(d, sizeof(d), "%s/dev", fx->root);
		assert_int_equal(unlink(p), 0);
		assert_int_equal(mknod(p, S_IFCHR | 0666, makedev(1, 5)), 0);
		set_mtime(p, 1500000000, 0);
		set_mtime(d, 1500000000, 0);
		seen[n++] = image_ok(fx->cache, fx->root);
	}
	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++)
			assert_string_not_equal(seen[i], seen[j]);
	assert_int_equal(builds(fx), n);
	for (int i = 0; i < n; i++)
		free(seen[i]);
}

/* ---- the budget ---- */

static void test_cache_max_env(void **state)
{
	struct fx *fx = *state;
	struct husk_err err = { 0 };
	uint64_t max = 0;
	assert_int_equal(husk_image_cache_max(&max, &err), 0); /* unset */
	assert_int_equal(max, HUSK_IMAGE_CACHE_MAX_DEFAULT);
	assert_int_equal(max, 10ull << 30);
	setenv("HUSK_IMAGE_CACHE_MAX", "", 1);
	assert_int_equal(husk_image_cache_max(&max, &err), 0);
	assert_int_equal(max, HUSK_IMAGE_CACHE_MAX_DEFAULT);
	setenv("HUSK_IMAGE_CACHE_MAX", "2G", 1);
	assert_int_equal(husk_image_cache_max(&max, &err), 0);
	assert_int_equal(max, 2ull << 30);
	setenv("HUSK_IMAGE_CACHE_MAX", "off", 1);
	assert_int_equal(husk_image_cache_max(&max, &err), 0);
	assert_int_equal(max, 0);
	setenv("HUSK_IMAGE_CACHE_MAX", "0", 1);
	assert_int_equal(husk_image_cache_max(&max, &err), 0);
	assert_int_equal(max, 0);

	/* A bad value fails before anything is built. */
	counting_mkfs(fx);
	make_tree(fx->root);
	setenv("HUSK_IMAGE_CACHE_MAX", "12X", 1);
	assert_int_equal(husk_image_cache_max(&max, &err), -EINVAL);
	char *image = NULL;
	assert_int_equal(husk_image_from_dir(fx->cache, fx->root, &image, &err), -EINVAL);
	assert_null(image);
	print_message("error: %s\n", err.msg);
	assert_non_null(strstr(err.msg, "HUSK_IMAGE_CACHE_MAX"));
	assert_non_null(strstr(err.msg, "12X"));
	assert_int_equal(builds(fx), 0);
}

/* Trees t0..t<n-1> under the test dir, each with a file of (i+1)*64 KiB, so
 * their images differ in size; their images into img[]. */
static void make_images(struct fx *fx, char **img, int n)
{
	for (int i = 0; i < n; i++) {
		char t[PATH_MAX], f[PATH_MAX];
		fmt(t, sizeof(t), "%s/t%d", fx->dir, i);
		assert_int_equal(mkdir(t, 0755), 0);
		fmt(f, sizeof(f), "%s/data", t);
		size_t len = (size_t)(i + 1) * 65536;
		char *buf = malloc(len + 1);
		assert_non_null(buf);
		memset(buf, 'a' + i, len);
		buf[len] = '\0';
		write_file(f, buf, 0644);
		free(buf);
		img[i] = image_ok(fx->cache, t);
	}
}

static uint64_t du(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return (uint64_t)st.st_blocks * 512;
}

static void set_atime(const char *path, time_t sec)
{
	const struct timespec ts[2] = { { sec, 0 }, { 0, UTIME_OMIT } };
	assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

static time_t atime_of(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return st.st_atim.tv_sec;
}

static const char *base(const char *path)
{
	return strrchr(path, '/') + 1;
}

static void prune_ok(struct fx *fx, uint64_t max, struct husk_image_prune *res)
{
	struct husk_err err = { 0 };
	int r = husk_image_cache_prune(fx->cache, max, res, &err);
	if (r != 0)
		fail_msg("prune: %d %s", r, err.msg);
}

/* Least recently used (atime) go first, until the total fits. */
static void test_prune_lru(void **state)
{
	struct fx *fx = *state;
	counting_mkfs(fx);
	char *img[3];
	make_images(fx, img, 3);
	assert_int_equal(builds(fx), 3);
	set_atime(img[0], 3000); /* the most recent */
	set_atime(img[1], 1000); /* the least */
	set_atime(img[2], 2000);
	uint64_t s[3];
	for (int i = 0; i < 3; i++)
		s[i] = du(img[i]);
	assert_true(s[0] < s[1] && s[1] < s[2]);

	struct husk_err err = { 0 };
	struct husk_image_info *v = NULL;
	size_t n = 0;
	assert_int_equal(husk_image_cache_list(fx->cache, &v, &n, &err), 0);
	assert_int_equal(n, 3);
	const int order[] = { 1, 2, 0 };
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(v[i].name, base(img[order[i]]));
		assert_int_equal(v[i].bytes, s[order[i]]);
		assert_int_equal(v[i].last_use, 1000 * (i + 1));
		assert_false(v[i].in_use);
	}
	free(v);

	struct husk_image_prune res;
	prune_ok(fx, s[0] + s[2], &res);
	assert_int_equal(res.removed, 1);
	assert_int_equal(res.removed_bytes, s[1]);
	assert_int_equal(res.kept, 2);
	assert_int_equal(res.kept_bytes, s[0] + s[2]);
	assert_int_equal(res.busy, 0);
	assert_int_equal(access(img[1], F_OK), -1);
	assert_int_equal(access(img[0], F_OK), 0);
	assert_int_equal(access(img[2], F_OK), 0);

	/* Within the budget: nothing to do. */
	prune_ok(fx, s[0] + s[2], &res);
	assert_int_equal(res.removed, 0);
	assert_int_equal(res.kept, 2);

	/* One byte over for the larger: the older goes, though larger. */
	prune_ok(fx, s[0] + s[2] - 1, &res);
	assert_int_equal(res.removed, 1);
	assert_int_equal(access(img[2], F_OK), -1);
	assert_int_equal(access(img[0], F_OK), 0);

	prune_ok(fx, 0, &res);
	assert_int_equal(res.removed, 1);
	assert_int_equal(res.kept, 0);
	assert_int_equal(res.kept_bytes, 0);
	check_no_leftovers(fx);

	/* A pruned image is built again when asked for. */
	char t0[PATH_MAX];
	fmt(t0, sizeof(t0), "%s/t0", fx->dir);
	char *again = image_ok(fx->cache, t0);
	assert_string_equal(again, img[0]);
	assert_int_equal(builds(fx), 4);
	free(again);
	for (int i = 0; i < 3; i++)
		free(img[i]);
}

/* An image held (shared flock) or open in QEMU (an OFD record lock, as
 * QEMU's image locking takes) is never removed, whatever its age. */
static void test_prune_keeps_in_use(void **state)
{
	struct fx *fx = *state;
	counting_mkfs(fx);
	char *img[3];
	make_images(fx, img, 3);
	for (int i = 0; i < 3; i++)
		set_atime(img[i], 1000 + i);

	struct husk_err err = { 0 };
	char t0[PATH_MAX];
	fmt(t0, sizeof(t0), "%s/t0", fx->dir);
	char *held_path = NULL;
	int hold = -1;
	assert_int_equal(husk_image_from_dir_hold(fx->cache, t0, &held_path, &hold, &err), 0);
	assert_string_equal(held_path, img[0]);
	assert_true(hold >= 0);
	assert_true(fcntl(hold, F_GETFD) & FD_CLOEXEC);
	assert_int_equal(builds(fx), 3); /* a hit */

	int qemu = open(img[1], O_RDONLY | O_CLOEXEC);
	assert_true(qemu >= 0);
	struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 1 };
	assert_int_equal(fcntl(qemu, F_OFD_SETLK, &fl), 0);

	struct husk_image_info *v = NULL;
	size_t n = 0;
	assert_int_equal(husk_image_cache_list(fx->cache, &v, &n, &err), 0);
	assert_int_equal(n, 3);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(v[i].in_use, strcmp(v[i].name, base(img[2])) != 0);
	free(v);

	struct husk_image_prune res;
	prune_ok(fx, 0, &res);
	assert_int_equal(res.removed, 1);
	assert_int_equal(res.busy, 2);
	assert_int_equal(res.kept, 2);
	assert_int_equal(res.kept_bytes, du(img[0]) + du(img[1]));
	assert_int_equal(access(img[2], F_OK), -1);
	assert_int_equal(access(img[0], F_OK), 0);
	assert_int_equal(access(img[1], F_OK), 0);

	assert_int_equal(close(qemu), 0);
	prune_ok(fx, 0, &res);
	assert_int_equal(res.removed, 1);
	assert_int_equal(res.busy, 1);
	assert_int_equal(access(img[1], F_OK), -1);

	/* The end of a hold is the image's last use. */
	set_atime(img[0], 1000);
	husk_image_release(hold);
	assert_true(atime_of(img[0]) > 1000);
	prune_ok(fx, 0, &res);
	assert_int_equal(res.removed, 1);
	assert_int_equal(res.busy, 0);
	check_no_leftovers(fx);
	free(held_path);
	for (int i = 0; i < 3; i++)
		free(img[i]);
}

/* husk_image_hold on a path: a hold like the one from_dir_hold gives. */
static void test_hold_path(void **state)
{
	struct fx *fx = *state;
	counting_mkfs(fx);
	char *img[2];
	make_images(fx, img, 2);
	struct husk_err err = { 0 };
	int fd = husk_image_hold(img[0], &err);
	assert_true(fd >= 0);
	struct husk_image_prune res;
	prune_ok(fx, 0, &res);
	assert_int_equal(res.removed, 1);
	assert_int_equal(res.busy, 1);
	assert_int_equal(access(img[0], F_OK), 0);
	husk_image_release(fd);

	assert_int_equal(husk_image_hold(img[1], &err), -ENOENT);
	assert_non_null(strstr(err.msg, img[1]));
	husk_image_release(-1); /* ignored */
	for (int i = 0; i < 2; i++)
		free(img[i]);
}

/* With a budget, a new build prunes the cache (never the new image, nor a
 * held one); a hit does not; "off" does not. */
static void test_auto_prune(void **state)
{
	struct fx *fx = *state;
	counting_mkfs(fx);
	setenv("HUSK_IMAGE_CACHE_MAX", "1", 1);
	char *img[2];
	make_images(fx, img, 2); /* t1's build removes t0's image */
	assert_int_equal(access(img[0], F_OK), -1);
	assert_int_equal(access(img[1], F_OK), 0);

	struct husk_err err = { 0 };
	int hold = husk_image_hold(img[1], &err);
	assert_true(hold >= 0);
	char t0[PATH_MAX];
	fmt(t0, sizeof(t0), "%s/t0", fx->dir);
	char *a = image_ok(fx->cache, t0); /* built again; img[1] is held */
	assert_string_equal(a, img[0]);
	assert_int_equal(builds(fx), 3);
	assert_int_equal(access(img[1], F_OK), 0);
	husk_image_release(hold);

	/* A hit does not prune: both stay though over the budget. */
	char *b = image_ok(fx->cache, t0);
	assert_int_equal(builds(fx), 3);
	assert_int_equal(access(img[1], F_OK), 0);

	setenv("HUSK_IMAGE_CACHE_MAX", "off", 1);
	char *c[1];
	char t2[PATH_MAX];
	fmt(t2, sizeof(t2), "%s/t2", fx->dir);
	assert_int_equal(mkdir(t2, 0755), 0);
	c[0] = image_ok(fx->cache, t2);
	assert_int_equal(builds(fx), 4);
	assert_int_equal(access(img[0], F_OK), 0);
	assert_int_equal(access(img[1], F_OK), 0);
	free(a);
	free(b);
	free(c[0]);
	for (int i = 0; i < 2; i++)
		free(img[i]);
}

/* Prune removes what killed builders left, but not a live builder's files. */
static void test_prune_stale(void **state)
{
	struct fx *fx = *state;
	char dead[65], live[65], p[PATH_MAX];
	memset(dead, 'a', 64);
	dead[64] = '\0';
	memset(live, 'b', 64);
	live[64] = '\0';
	char parent[PATH_MAX];
	fmt(parent, sizeof(parent), "%s/a", fx->dir);
	assert_int_equal(mkdir(parent, 0700), 0);
	fmt(parent, sizeof(parent), "%s/a/b", fx->dir);
	assert_int_equal(mkdir(parent, 0700), 0);
	assert_int_equal(mkdir(fx->cache, 0700), 0);
	fmt(p, sizeof(p), "%s/.%s.tmp.Ab12Cd", fx->cache, dead);
	write_file(p, "half an image", 0600);
	fmt(p, sizeof(p), "%s/.%s.lock", fx->cache, dead);
	write_file(p, "", 0600);
	fmt(p, sizeof(p), "%s/.%s.tmp.Xy34Zw", fx->cache, live);
	write_file(p, "being built", 0600);
	fmt(p, sizeof(p), "%s/.%s.lock", fx->cache, live);
	write_file(p, "", 0600);
	int builder = open(p, O_RDWR | O_CLOEXEC);
	assert_true(builder >= 0);
	assert_int_equal(flock(builder, LOCK_EX), 0);

	struct husk_image_prune res;
	prune_ok(fx, 0, &res);
	char list[8192], want[512];
	list_cache(fx->cache, list, sizeof(list));
	fmt(want, sizeof(want), ".%s.tmp.Xy34Zw", live);
	assert_non_null(strstr(list, want));
	fmt(want, sizeof(want), ".%s.lock", live);
	assert_non_null(strstr(list, want));
	assert_null(strstr(list, dead));

	/* The builder died (its lock is free): next time it goes too. */
	assert_int_equal(close(builder), 0);
	prune_ok(fx, 0, &res);
	check_no_leftovers(fx);

	/* A cache that does not exist is empty. */
	struct husk_err err = { 0 };
	char missing[PATH_MAX];
	fmt(missing, sizeof(missing), "%s/none", fx->dir);
	assert_int_equal(husk_image_cache_prune(missing, 0, &res, &err), 0);
	assert_int_equal(res.kept, 0);
	struct husk_image_info *v = (struct husk_image_info *)1;
	size_t n = 7;
	assert_int_equal(husk_image_cache_list(missing, &v, &n, &err), 0);
	assert_int_equal(n, 0);
	assert_null(v);
	assert_int_equal(access(missing, F_OK), -1);
}

/* A prune that removes the image while a user waits for its hold: the
 * user, woken up on an unlinked inode, builds the image again instead of
 * handing out a path that is gone. A child plays the prune (an exclusive
 * flock of its own open file, which the user must not inherit), held until
 * the user is seen waiting (/proc/locks). */
static void test_hold_races_prune(void **state)
{
	struct fx *fx = *state;
	counting_mkfs(fx);
	make_tree(fx->root);
	char *a = image_ok(fx->cache, fx->root);
	int locked[2], go[2];
	assert_int_equal(pipe2(locked, O_CLOEXEC), 0);
	assert_int_equal(pipe2(go, O_CLOEXEC), 0);
	pid_t pruner = fork();
	assert_true(pruner >= 0);
	if (pruner == 0) {
		setpgid(0, 0);
		int fd = open(a, O_RDONLY | O_CLOEXEC);
		CHILD_CHECK(fd >= 0 && flock(fd, LOCK_EX) == 0);
		CHILD_CHECK(write(locked[1], "L", 1) == 1);
		char c;
		CHILD_CHECK(read(go[0], &c, 1) == 1);
		_exit(0); /* the lock goes with us */
	}
	setpgid(pruner, pruner);
	fx->kids[1] = pruner;
	close(locked[1]);
	close(go[0]);
	char c;
	assert_int_equal(read(locked[0], &c, 1), 1);
	close(locked[0]);

	int res;
	pid_t kid = build_in_child(fx, 0, &res);
	bool blocked = false;
	for (int i = 0; i < 12000 && !blocked; i++) {
		blocked = waiting_for_flock(kid);
		if (!blocked) {
			int st;
			assert_int_equal(waitpid(kid, &st, WNOHANG), 0); /* it must wait */
			nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
		}
	}
	assert_true(blocked);
	assert_int_equal(unlink(a), 0);
	assert_int_equal(write(go[1], "G", 1), 1);
	close(go[1]);
	int st;
	assert_int_equal(waitpid(pruner, &st, 0), pruner);
	fx->kids[1] = 0;
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);

	char out[PATH_MAX + 16], want[PATH_MAX + 16];
	read_result(res, out, sizeof(out));
	assert_int_equal(waitpid(kid, &st, 0), kid);
	fx->kids[0] = 0;
	fmt(want, sizeof(want), "0 %s\n", a);
	assert_string_equal(out, want);
	assert_int_equal(builds(fx), 2);
	const char *fsck[] = { "fsck.erofs", a, NULL };
	assert_int_equal(run(fsck), 0);
	free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_cached_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_same_content_same_image, setup, teardown),
		cmocka_unit_test_setup_teardown(test_content_change, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chmod, setup, teardown),
		cmocka_unit_test_setup_teardown(test_symlink_target, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_attributes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_image_contents, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_rootfs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mkfs_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mkfs_missing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_leftovers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unreadable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_default_cache, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_copies_share_image, setup, teardown),
		cmocka_unit_test_setup_teardown(test_overlay_shares_image, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hard_links, setup, teardown),
		cmocka_unit_test_setup_teardown(test_root_and_devices, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cache_max_env, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prune_lru, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prune_keeps_in_use, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hold_path, setup, teardown),
		cmocka_unit_test_setup_teardown(test_auto_prune, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prune_stale, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hold_races_prune, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
