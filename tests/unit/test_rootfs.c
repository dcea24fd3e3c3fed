/* libjail rootfs and safepath.
 *
 * safepath: nasty trees (loops, escapes through "..", absolute and
 * climbing symlinks, 40/41-link chains) resolved both with openat2 and with
 * the component walk forced.
 *
 * rootfs (root only, skipped otherwise): each test forks a child that
 * enters a new mount namespace and a new pid namespace; a grandchild (pid 1
 * there) calls jail_rootfs_enter on a rootfs built in a temp dir from a
 * hand-made struct jail_spec, checks what it sees from C, and reports a
 * failure through a pipe. The parent then checks that nothing leaked onto
 * the host: no mount under the temp dir, no file made outside it. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/magic.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "husk/cleanup.h"
#include "jail/rootfs.h"
#include "jail/safepath.h"
#include "jail/spec.h"

/* ---- shared helpers ---- */

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
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

static ino_t ino_of_fd(int fd)
{
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	return st.st_ino;
}

static ino_t ino_of(const char *path)
{
	struct stat st;
	assert_int_equal(lstat(path, &st), 0);
	return st.st_ino;
}

static bool exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

/* ---- safepath ---- */

struct sp_fixture {
	enum jail_resolve how;
	char dir[64];
	char root[96];
	char host_target[96]; /* what "dangling" points at, as a host path */
	int root_fd;
};

static enum jail_resolve how_auto = JAIL_RESOLVE_AUTO, how_walk = JAIL_RESOLVE_WALK;

static void sp_path(struct sp_fixture *f, char *buf, size_t n, const char *rel)
{
	snprintf(buf, n, "%s/%s", f->root, rel);
}

static void sp_symlink(struct sp_fixture *f, const char *target, const char *name)
{
	char p[256];
	sp_path(f, p, sizeof(p), name);
	assert_int_equal(symlink(target, p), 0);
}

static void sp_mkdir(struct sp_fixture *f, const char *name)
{
	char p[256];
	sp_path(f, p, sizeof(p), name);
	assert_int_equal(mkdir(p, 0755), 0);
}

static void sp_write(struct sp_fixture *f, const char *name, const char *text)
{
	char p[256];
	sp_path(f, p, sizeof(p), name);
	write_file(p, text);
}

static int sp_setup(void **state)
{
	struct sp_fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	f->how = *(enum jail_resolve *)*state;
	snprintf(f->dir, sizeof(f->dir), "/tmp/husk-safepath-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->root, sizeof(f->root), "%s/root", f->dir);
	assert_int_equal(mkdir(f->root, 0755), 0);
	/* A sibling of the root that a lookup must never reach. */
	char p[256];
	snprintf(p, sizeof(p), "%s/outside", f->dir);
	assert_int_equal(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/outside/secret", f->dir);
	write_file(p, "secret");

	sp_write(f, "marker", "marker");
	sp_mkdir(f, "etc");
	sp_write(f, "etc/file", "etc");
	sp_mkdir(f, "target");
	sp_write(f, "target/file", "target");
	sp_write(f, "file", "file");
	sp_mkdir(f, "sub");
	sp_mkdir(f, "sub/dir");
	sp_symlink(f, "/target", "abs");
	sp_symlink(f, "../../../..", "up");
	sp_symlink(f, "sub/dir/../../../..", "subup");
	sp_symlink(f, "../../..", "dotdot");
	sp_symlink(f, "target", "rel");
	sp_symlink(f, "loop2", "loop1");
	sp_symlink(f, "loop1", "loop2");
	sp_symlink(f, "self/x", "self");
	/* chain0 -> chain1 -> ... -> chain40 -> /target: 41 links from
	 * chain0, 40 from chain1. */
	for (int i = 0; i <= 40; i++) {
		char name[32], target[32];
		snprintf(name, sizeof(name), "chain%d", i);
		if (i == 40)
			snprintf(target, sizeof(target), "/target");
		else
			snprintf(target, sizeof(target), "chain%d", i + 1);
		sp_symlink(f, target, name);
	}
	/* A dangling absolute link whose name is unique on the host too. */
	snprintf(f->host_target, sizeof(f->host_target), "/husk-safepath-%s",
		 f->dir + strlen("/tmp/husk-safepath-"));
	sp_symlink(f, f->host_target, "dangling");
	sp_symlink(f, "/nowhere/deeper", "dangling_dir");

	f->root_fd = open(f->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	assert_true(f->root_fd >= 0);
	*state = f;
	return 0;
}

static int sp_teardown(void **state)
{
	struct sp_fixture *f = *state;
	close(f->root_fd);
	rm_rf(f->dir);
	free(f);
	return 0;
}

/* Opens `path` in the fixture's root with the fixture's strategy. */
static int sp_open(struct sp_fixture *f, const char *path, int flags, struct husk_err *err)
{
	return jail_openat_in_root_with(f->how, f->root_fd, path, flags, 0644, err);
}

/* Asserts `path` resolves to `rel` inside the root. */
static void sp_expect(struct sp_fixture *f, const char *path, const char *rel)
{
	struct husk_err err = { 0 };
	int fd = sp_open(f, path, O_PATH, &err);
	if (fd < 0)
		fail_msg("%s: %s", path, err.msg);
	char p[256];
	sp_path(f, p, sizeof(p), rel);
	if (ino_of_fd(fd) != ino_of(p))
		fail_msg("%s did not resolve to %s", path, rel);
	close(fd);
}

static void sp_expect_err(struct sp_fixture *f, const char *path, int flags, int code)
{
	struct husk_err err = { 0 };
	int fd = sp_open(f, path, flags, &err);
	if (fd >= 0) {
		close(fd);
		fail_msg("%s: opened, expected %s", path, strerror(-code));
	}
	if (fd != code)
		fail_msg("%s: got %s, expected %s", path, strerror(-fd), strerror(-code));
	assert_int_equal(err.code, code);
	assert_non_null(strstr(err.msg, path));
}

static void test_safepath_plain(void **state)
{
	struct sp_fixture *f = *state;
	sp_expect(f, "marker", "marker");
	sp_expect(f, "/marker", "marker");
	sp_expect(f, "//etc///file", "etc/file");
	sp_expect(f, "/", ".");
	sp_expect(f, ".", ".");
	sp_expect(f, "rel/file", "target/file");
	sp_expect(f, "abs/", "target");
	sp_expect_err(f, "", O_PATH, -ENOENT);
	sp_expect_err(f, "nothing", O_PATH, -ENOENT);
	sp_expect_err(f, "file/x", O_PATH, -ENOTDIR);
	sp_expect_err(f, "file", O_PATH | O_DIRECTORY, -ENOTDIR);

	/* Reading through it works: the fd is a real open. */
	struct husk_err err = { 0 };
	int fd = sp_open(f, "/abs/file", O_RDONLY, &err);
	assert_true(fd >= 0);
	char buf[16] = { 0 };
	assert_int_equal(read(fd, buf, sizeof(buf) - 1), 6);
	assert_string_equal(buf, "target");
	close(fd);
}

static void test_safepath_escapes_clamp(void **state)
{
	struct sp_fixture *f = *state;
	/* ".." at the root stays at the root. */
	sp_expect(f, "../../etc/file", "etc/file");
	sp_expect(f, "/../../../marker", "marker");
	sp_expect(f, "sub/../../../sub/dir", "sub/dir");
	/* Absolute symlinks are relative to the root. */
	sp_expect(f, "abs/file", "target/file");
	sp_expect(f, "abs/../marker", "marker");
	/* Climbing symlinks clamp too. */
	sp_expect(f, "up/marker", "marker");
	sp_expect(f, "up/../up/../marker", "marker");
	sp_expect(f, "subup/etc/file", "etc/file");
	sp_expect(f, "up", ".");
	/* The sibling of the root is out of reach: root/outside does not
	 * exist, whatever the number of "..". */
	sp_expect_err(f, "dotdot/outside/secret", O_RDONLY, -ENOENT);
	sp_expect_err(f, "../outside/secret", O_RDONLY, -ENOENT);
	sp_expect_err(f, "up/../outside/secret", O_RDONLY, -ENOENT);
}

static void test_safepath_loops(void **state)
{
	struct sp_fixture *f = *state;
	sp_expect_err(f, "loop1", O_PATH, -ELOOP);
	sp_expect_err(f, "loop1/x", O_RDONLY, -ELOOP);
	sp_expect_err(f, "self", O_PATH, -ELOOP);
	/* The kernel's limit, the same both ways: 40 links resolve, 41 not. */
	sp_expect(f, "chain1", "target");
	sp_expect(f, "chain1/file", "target/file");
	sp_expect_err(f, "chain0", O_PATH, -ELOOP);
	sp_expect_err(f, "chain0/file", O_RDONLY, -ELOOP);

	struct husk_err err = { 0 };
	assert_int_equal(sp_open(f, "loop1", O_PATH, &err), -ELOOP);
	assert_string_equal(err.msg, "open loop1: Too many levels of symbolic links");
}

static void test_safepath_nofollow(void **state)
{
	struct sp_fixture *f = *state;
	struct husk_err err = { 0 };
	/* O_PATH|O_NOFOLLOW: the link itself. */
	int fd = sp_open(f, "abs", O_PATH | O_NOFOLLOW, &err);
	assert_true(fd >= 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	close(fd);
	/* Intermediate links are still followed. */
	sp_expect(f, "up/abs/file", "target/file");
	sp_expect_err(f, "abs", O_RDONLY | O_NOFOLLOW, -ELOOP);
}

static void test_safepath_create(void **state)
{
	struct sp_fixture *f = *state;
	struct husk_err err = { 0 };
	/* O_CREAT through a dangling absolute link creates inside the root. */
	int fd = sp_open(f, "dangling", O_WRONLY | O_CREAT, &err);
	if (fd < 0)
		fail_msg("%s", err.msg);
	close(fd);
	assert_false(exists(f->host_target));
	char p[256];
	sp_path(f, p, sizeof(p), f->host_target + 1);
	assert_true(exists(p));

	fd = sp_open(f, "up/new", O_WRONLY | O_CREAT | O_EXCL, &err);
	assert_true(fd >= 0);
	close(fd);
	sp_path(f, p, sizeof(p), "new");
	assert_true(exists(p));
	sp_expect_err(f, "up/new", O_WRONLY | O_CREAT | O_EXCL, -EEXIST);
	sp_expect_err(f, "abs", O_WRONLY | O_CREAT | O_EXCL, -EEXIST);
}

static void test_safepath_mkdir_all(void **state)
{
	struct sp_fixture *f = *state;
	struct husk_err err = { 0 };
	int fd = -1;
	char p[256];

	assert_int_equal(jail_mkdir_all_in_root_with(f->how, f->root_fd, "/up/a/b/../c", 0755, &fd,
						     &err), 0);
	sp_path(f, p, sizeof(p), "a/c");
	assert_int_equal(ino_of_fd(fd), ino_of(p));
	close(fd);
	sp_path(f, p, sizeof(p), "a/b");
	assert_true(exists(p));

	assert_int_equal(jail_mkdir_all_in_root_with(f->how, f->root_fd, "abs/x/y", 0755, &fd, &err),
			 0);
	sp_path(f, p, sizeof(p), "target/x/y");
	assert_int_equal(ino_of_fd(fd), ino_of(p));
	close(fd);

	/* Existing: just opened. */
	assert_int_equal(jail_mkdir_all_in_root_with(f->how, f->root_fd, "/", 0755, &fd, &err), 0);
	assert_int_equal(ino_of_fd(fd), ino_of(f->root));
	close(fd);

	assert_int_equal(jail_mkdir_all_in_root_with(f->how, f->root_fd, "/file/x", 0755, &fd, &err),
			 -ENOTDIR);
	assert_int_equal(fd, -1);
	assert_string_equal(err.msg, "mkdir /file/x: /file: Not a directory");
	assert_int_equal(jail_mkdir_all_in_root_with(f->how, f->root_fd, "/dangling_dir/x", 0755,
						     &fd, &err),
			 -ENOENT);
	assert_int_equal(jail_mkdir_all_in_root_with(f->how, f->root_fd, "/loop1/x", 0755, &fd,
						     &err),
			 -ELOOP);
	sp_path(f, p, sizeof(p), "nowhere");
	assert_false(exists(p));
}

static void test_safepath_mkfile(void **state)
{
	struct sp_fixture *f = *state;
	struct husk_err err = { 0 };
	int fd = -1;
	char p[256];

	assert_int_equal(jail_mkfile_in_root_with(f->how, f->root_fd, "/up/d1/d2/f", 0644, &fd, &err),
			 0);
	sp_path(f, p, sizeof(p), "d1/d2/f");
	struct stat st;
	assert_int_equal(lstat(p, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_size, 0);
	assert_int_equal(ino_of_fd(fd), st.st_ino);
	close(fd);

	/* Existing things are returned as they are, whatever their type. */
	assert_int_equal(jail_mkfile_in_root_with(f->how, f->root_fd, "/abs/file", 0644, &fd, &err),
			 0);
	sp_path(f, p, sizeof(p), "target/file");
	assert_int_equal(ino_of_fd(fd), ino_of(p));
	close(fd);

	assert_int_equal(jail_mkfile_in_root_with(f->how, f->root_fd, "/evil-none/..", 0644, &fd,
						  &err),
			 -EINVAL);
	assert_int_equal(jail_mkfile_in_root_with(f->how, f->root_fd, "/file/x", 0644, &fd, &err),
			 -ENOTDIR);
}

/* openat2's RESOLVE_NO_MAGICLINKS refuses /proc magic links. */
static void test_safepath_magiclinks(void **state)
{
	(void)state;
	if (syscall(SYS_openat2, -1, "", NULL, 0) < 0 && errno == ENOSYS)
		skip(); /* kernel < 5.6 */
	int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	assert_true(root >= 0);
	struct husk_err err = { 0 };
	int fd = jail_openat_in_root(root, "/proc/self/root/etc", O_PATH, 0, &err);
	if (fd >= 0)
		close(fd);
	assert_int_equal(fd, -ELOOP);
	close(root);
}

/* ---- rootfs: the child machinery ---- */

static int report_fd = -1; /* the grandchild's end of the report pipe */

__attribute__((format(printf, 2, 3), noreturn)) static void child_fail(int line, const char *fmt,
								       ...)
{
	char buf[1024];
	int n = snprintf(buf, sizeof(buf), "line %d: ", line);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
	va_end(ap);
	if (write(report_fd, buf, strlen(buf)) < 0)
		_exit(3);
	_exit(1);
}

#define CHECK(cond, ...)                                                                        \
	do {                                                                                    \
		if (!(cond))                                                                    \
			child_fail(__LINE__, __VA_ARGS__);                                      \
	} while (0)
/* A system call that must succeed. */
#define CHECK_SYS(expr)                                                                         \
	do {                                                                                    \
		if ((expr) < 0)                                                                 \
			child_fail(__LINE__, "%s: %s", #expr, strerror(errno));                  \
	} while (0)
#define CHECK_ENTER(spec, cb, data)                                                             \
	do {                                                                                    \
		struct husk_err e_ = { 0 };                                                     \
		int r_ = jail_rootfs_enter((spec), (cb), NULL, (data), &e_);                          \
		if (r_ < 0)                                                                     \
			child_fail(__LINE__, "jail_rootfs_enter: %d %s", r_, e_.msg);           \
	} while (0)

struct rfs {
	char dir[64];	    /* /tmp/husk-rootfs-XXXXXX */
	char root[128];	    /* dir/rootfs: the container's root.path */
	char host[128];	    /* dir/host: bind sources */
	const char *suffix; /* the XXXXXX, for names unique on the host */
};

static void rfs_path(const struct rfs *f, char *buf, size_t n, const char *rel)
{
	snprintf(buf, n, "%s/%s", f->root, rel);
}

static void copy_file(const char *from, const char *to, mode_t mode)
{
	int in = open(from, O_RDONLY | O_CLOEXEC);
	assert_true(in >= 0);
	int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	assert_true(out >= 0);
	char buf[65536];
	ssize_t n;
	while ((n = read(in, buf, sizeof(buf))) > 0)
		assert_int_equal(write(out, buf, (size_t)n), n);
	assert_int_equal(n, 0);
	close(in);
	close(out);
}

static int rfs_setup(void **state)
{
	if (geteuid() != 0)
		return 0; /* the tests skip */
	struct rfs *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/husk-rootfs-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->suffix = f->dir + strlen("/tmp/husk-rootfs-");
	snprintf(f->root, sizeof(f->root), "%s/rootfs", f->dir);
	snprintf(f->host, sizeof(f->host), "%s/host", f->dir);
	char p[256];
	assert_int_equal(mkdir(f->root, 0755), 0);
	assert_int_equal(mkdir(f->host, 0755), 0);
	rfs_path(f, p, sizeof(p), "marker");
	write_file(p, "marker\n");
	rfs_path(f, p, sizeof(p), "bin");
	assert_int_equal(mkdir(p, 0755), 0);
	rfs_path(f, p, sizeof(p), "bin/busybox");
	copy_file("/bin/busybox", p, 0755);
	rfs_path(f, p, sizeof(p), "etc");
	assert_int_equal(mkdir(p, 0755), 0);
	rfs_path(f, p, sizeof(p), "secret");
	write_file(p, "top secret\n");
	rfs_path(f, p, sizeof(p), "secretdir");
	assert_int_equal(mkdir(p, 0755), 0);
	rfs_path(f, p, sizeof(p), "secretdir/a");
	write_file(p, "a\n");
	rfs_path(f, p, sizeof(p), "rodir");
	assert_int_equal(mkdir(p, 0755), 0);
	rfs_path(f, p, sizeof(p), "evil");
	assert_int_equal(symlink("/", p), 0);
	rfs_path(f, p, sizeof(p), "up");
	assert_int_equal(symlink("../../../..", p), 0);

	snprintf(p, sizeof(p), "%s/data", f->host);
	assert_int_equal(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/data/hostfile", f->host);
	write_file(p, "from host\n");
	snprintf(p, sizeof(p), "%s/single", f->host);
	write_file(p, "single file\n");
	snprintf(p, sizeof(p), "%s/locked", f->host);
	assert_int_equal(mkdir(p, 0755), 0);
	*state = f;
	return 0;
}

static int rfs_teardown(void **state)
{
	struct rfs *f = *state;
	if (!f)
		return 0;
	rm_rf(f->dir);
	free(f);
	return 0;
}

#define SKIP_UNLESS_ROOT()                                                                      \
	do {                                                                                    \
		if (geteuid() != 0)                                                             \
			skip();                                                                 \
	} while (0)

/* Asserts the host's mount table has nothing at or below `dir`. */
static void assert_no_host_mounts_under(const char *dir)
{
	FILE *mi = fopen("/proc/self/mountinfo", "re");
	assert_non_null(mi);
	char line[4096];
	size_t n = strlen(dir);
	while (fgets(line, sizeof(line), mi)) {
		char mp[4096];
		if (sscanf(line, "%*d %*d %*s %*s %4095s", mp) != 1)
			continue;
		if (!strncmp(mp, dir, n))
			fail_msg("host mount leaked: %s", line);
	}
	fclose(mi);
}

enum child_flags {
	CHILD_USERNS = 1 << 0, /* a user namespace mapping root to root, 1 id */
};

typedef void (*child_fn)(const struct rfs *f, void *arg);
/* Runs in the child before the grandchild: after unshare(CLONE_NEWNS),
 * before the other namespaces. */
typedef void (*prep_fn)(const struct rfs *f, void *arg);

static void write_proc(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	CHECK_SYS(fd);
	CHECK_SYS(write(fd, text, strlen(text)));
	close(fd);
}

static void run_child(const struct rfs *f, unsigned flags, prep_fn prep, child_fn fn, void *arg)
{
	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		report_fd = p[1];
		CHECK_SYS(unshare(CLONE_NEWNS));
		/* This namespace's own setup must not reach the host either. */
		CHECK_SYS(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL));
		if (prep)
			prep(f, arg);
		if (flags & CHILD_USERNS) {
			CHECK_SYS(unshare(CLONE_NEWUSER | CLONE_NEWNS));
			write_proc("/proc/self/setgroups", "deny");
			write_proc("/proc/self/uid_map", "0 0 1");
			write_proc("/proc/self/gid_map", "0 0 1");
		}
		CHECK_SYS(unshare(CLONE_NEWPID));
		pid_t g = fork();
		CHECK_SYS(g);
		if (g == 0) {
			fn(f, arg);
			_exit(0);
		}
		int st;
		CHECK_SYS(waitpid(g, &st, 0));
		_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	}
	close(p[1]);
	char msg[1024];
	size_t len = 0;
	ssize_t n;
	while (len < sizeof(msg) - 1 && (n = read(p[0], msg + len, sizeof(msg) - 1 - len)) > 0)
		len += (size_t)n;
	msg[len] = '\0';
	close(p[0]);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fail_msg("child failed (status 0x%x): %s", st, len ? msg : "(no message)");
	assert_no_host_mounts_under(f->dir);
}

/* ---- rootfs: what the grandchild looks at ---- */

struct mnt {
	bool found;
	bool shared;	 /* optional field shared:N */
	char fstype[64];
	char opts[512];	 /* per-mount: ro,nosuid,... */
	char super[512]; /* per-superblock: size=...,mode=... */
};

/* The last (top) mount at `mp` in our own mountinfo. */
static struct mnt find_mount(const char *mp)
{
	struct mnt m = { 0 };
	FILE *fp = fopen("/proc/self/mountinfo", "re");
	CHECK(fp, "open mountinfo: %s", strerror(errno));
	char line[4096];
	while (fgets(line, sizeof(line), fp)) {
		char point[4096], opts[512];
		if (sscanf(line, "%*d %*d %*s %*s %4095s %511s", point, opts) != 2)
			continue;
		char *sep = strstr(line, " - ");
		if (!sep || strcmp(point, mp))
			continue;
		char fstype[64], src[512], super[512] = "";
		if (sscanf(sep + 3, "%63s %511s %511s", fstype, src, super) < 2)
			continue;
		m.found = true;
		*sep = '\0';
		m.shared = strstr(line, " shared:") != NULL;
		snprintf(m.fstype, sizeof(m.fstype), "%s", fstype);
		snprintf(m.opts, sizeof(m.opts), "%s", opts);
		snprintf(m.super, sizeof(m.super), "%s", super);
	}
	fclose(fp);
	return m;
}

static bool opt_in(const char *opts, const char *opt)
{
	size_t n = strlen(opt);
	for (const char *p = opts; *p;) {
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (len == n && !strncmp(p, opt, n))
			return true;
		p = e ? e + 1 : p + len;
	}
	return false;
}

#define CHECK_MOUNT(mp, type)                                                                   \
	({                                                                                      \
		struct mnt m_ = find_mount(mp);                                                 \
		CHECK(m_.found, "no mount at %s", mp);                                          \
		CHECK(!strcmp(m_.fstype, type), "%s is %s, not %s", mp, m_.fstype, type);       \
		m_;                                                                             \
	})
#define CHECK_OPT(m, opt) CHECK(opt_in((m).opts, opt), "options %s lack %s", (m).opts, opt)
#define CHECK_NO_OPT(m, opt) CHECK(!opt_in((m).opts, opt), "options %s have %s", (m).opts, opt)

static void read_text(const char *path, char *buf, size_t n)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
	ssize_t k = read(fd, buf, n - 1);
	CHECK(k >= 0, "read %s: %s", path, strerror(errno));
	buf[k] = '\0';
	close(fd);
}

/* Creating `path` fails with `code` (0: succeeds). */
static void check_create(const char *path, int code, int line)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	int e = errno;
	if (fd >= 0)
		close(fd);
	if (code == 0 && fd < 0)
		child_fail(line, "create %s: %s", path, strerror(e));
	if (code != 0 && (fd >= 0 || e != code))
		child_fail(line, "create %s: %s, expected %s", path,
			   fd >= 0 ? "created" : strerror(e), strerror(code));
}
#define CHECK_CREATE(path, code) check_create(path, code, __LINE__)

static void check_chr(const char *path, unsigned major, unsigned minor, mode_t perm, int line)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		child_fail(line, "lstat %s: %s", path, strerror(errno));
	if (!S_ISCHR(st.st_mode) || major(st.st_rdev) != major || minor(st.st_rdev) != minor)
		child_fail(line, "%s: mode %o rdev %u:%u, expected char %u:%u", path,
			   (unsigned)st.st_mode, major(st.st_rdev), minor(st.st_rdev), major, minor);
	if (perm && (st.st_mode & 07777) != perm)
		child_fail(line, "%s: perm %04o, expected %04o", path, (unsigned)(st.st_mode & 07777),
			   (unsigned)perm);
}
#define CHECK_CHR(path, ma, mi, perm) check_chr(path, ma, mi, perm, __LINE__)

static void check_link(const char *path, const char *target, int line)
{
	char buf[256];
	ssize_t n = readlink(path, buf, sizeof(buf) - 1);
	if (n < 0)
		child_fail(line, "readlink %s: %s", path, strerror(errno));
	buf[n] = '\0';
	if (strcmp(buf, target))
		child_fail(line, "%s -> %s, expected %s", path, buf, target);
}
#define CHECK_LINK(path, target) check_link(path, target, __LINE__)

static long fs_magic(const char *path)
{
	struct statfs sf;
	CHECK(statfs(path, &sf) == 0, "statfs %s: %s", path, strerror(errno));
	return (long)sf.f_type;
}

/* The rootfs is "/": the marker is there, the host's files are not. */
static void check_in_rootfs(void)
{
	char buf[64];
	read_text("/marker", buf, sizeof(buf));
	CHECK(!strcmp(buf, "marker\n"), "/marker has %s", buf);
	CHECK(access("/etc/debian_version", F_OK) < 0 && errno == ENOENT,
	      "the host's /etc/debian_version is visible");
	char cwd[256];
	CHECK(getcwd(cwd, sizeof(cwd)) && !strcmp(cwd, "/"), "cwd is %s", cwd);
}

/* ---- rootfs tests ---- */

#define MNT(dst, typ, src, fl, dat)                                                             \
	{                                                                                       \
		.destination = (char *)(dst), .type = (char *)(typ), .source = (char *)(src),   \
		.flags = (fl), .data = (char *)(dat)                                            \
	}

struct basic_arg {
	struct jail_spec spec;
};

static void basic_child(const struct rfs *f, void *arg)
{
	(void)f;
	struct basic_arg *a = arg;
	umask(077); /* the modes asked for must not depend on it */
	CHECK_ENTER(&a->spec, NULL, NULL);
	check_in_rootfs();

	struct mnt m = CHECK_MOUNT("/proc", "proc");
	CHECK_OPT(m, "nosuid");
	CHECK_OPT(m, "noexec");
	CHECK_OPT(m, "nodev");
	/* Our pid namespace's proc: we are its pid 1. */
	char buf[256];
	ssize_t k = readlink("/proc/self", buf, sizeof(buf) - 1);
	CHECK_SYS(k);
	buf[k] = '\0';
	CHECK(!strncmp(buf, "1", 1) && (buf[1] == '\0' || buf[1] < '0' || buf[1] > '9'),
	      "/proc/self -> %s", buf);

	m = CHECK_MOUNT("/run", "tmpfs");
	CHECK(m.shared, "/run is not shared");
	CHECK(!find_mount("/data").shared, "/data is shared");
	CHECK_OPT(m, "nosuid");
	CHECK_OPT(m, "nodev");
	CHECK_NO_OPT(m, "ro");
	struct statfs sf;
	CHECK_SYS(statfs("/run", &sf));
	CHECK((uint64_t)sf.f_blocks * (uint64_t)sf.f_bsize == 1 << 20, "/run is %llu bytes",
	      (unsigned long long)sf.f_blocks * sf.f_bsize);
	CHECK_CREATE("/run/x", 0);

	m = CHECK_MOUNT("/data", "ext4");
	CHECK_OPT(m, "ro");
	CHECK_OPT(m, "nosuid");
	read_text("/data/hostfile", buf, sizeof(buf));
	CHECK(!strcmp(buf, "from host\n"), "/data/hostfile has %s", buf);
	CHECK_CREATE("/data/new", EROFS);

	/* A file bind: an empty file was made for it. */
	m = CHECK_MOUNT("/etc/single", "ext4");
	CHECK_NO_OPT(m, "ro");
	read_text("/etc/single", buf, sizeof(buf));
	CHECK(!strcmp(buf, "single file\n"), "/etc/single has %s", buf);

	m = CHECK_MOUNT("/sys", "sysfs");
	CHECK_OPT(m, "ro");
	m = CHECK_MOUNT("/sys/fs/cgroup", "cgroup2");
	CHECK_OPT(m, "ro");
	CHECK_OPT(m, "nosuid");
	CHECK_MOUNT("/dev/mqueue", "mqueue");

	/* The default /dev. */
	m = CHECK_MOUNT("/dev", "tmpfs");
	CHECK_OPT(m, "nosuid");
	CHECK(opt_in(m.super, "size=65536k") && opt_in(m.super, "mode=755"), "/dev: %s", m.super);
	m = CHECK_MOUNT("/dev/pts", "devpts");
	CHECK_OPT(m, "nosuid");
	CHECK_OPT(m, "noexec");
	CHECK(opt_in(m.super, "ptmxmode=666") && opt_in(m.super, "mode=620"), "/dev/pts: %s",
	      m.super);
	m = CHECK_MOUNT("/dev/shm", "tmpfs");
	CHECK_OPT(m, "nosuid");
	CHECK_OPT(m, "nodev");
	CHECK_OPT(m, "noexec");
	struct stat st;
	CHECK_SYS(stat("/dev/shm", &st));
	CHECK((st.st_mode & 07777) == 01777, "/dev/shm mode %o", (unsigned)st.st_mode);
	CHECK_CHR("/dev/null", 1, 3, 0666);

	/* The root is the rootfs bind, and a process runs from it. */
	int p[2];
	CHECK_SYS(pipe(p));
	pid_t pid = fork();
	CHECK_SYS(pid);
	if (pid == 0) {
		dup2(p[1], 1);
		execl("/bin/busybox", "busybox", "cat", "/marker", (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	ssize_t n = read(p[0], buf, sizeof(buf) - 1);
	CHECK(n >= 0, "read: %s", strerror(errno));
	buf[n] = '\0';
	int status;
	CHECK_SYS(waitpid(pid, &status, 0));
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "busybox status %x", status);
	CHECK(!strcmp(buf, "marker\n"), "busybox cat /marker: %s", buf);
}

static void test_rootfs_basic(void **state)
{
	SKIP_UNLESS_ROOT();
	struct rfs *f = *state;
	char data[256], single[256];
	snprintf(data, sizeof(data), "%s/data", f->host);
	snprintf(single, sizeof(single), "%s/single", f->host);
	struct jail_mount mounts[] = {
		MNT("/proc", "proc", "proc", MS_NOSUID | MS_NOEXEC | MS_NODEV, NULL),
		MNT("/run", "tmpfs", "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=1m"),
		MNT("/data", "bind", data, MS_BIND | MS_REC | MS_RDONLY | MS_NOSUID, NULL),
		MNT("/etc/single", NULL, single, MS_BIND, NULL),
		MNT("/sys", "sysfs", "sysfs", MS_RDONLY | MS_NOSUID | MS_NOEXEC | MS_NODEV, NULL),
		MNT("/sys/fs/cgroup", "cgroup", "cgroup",
		    MS_RDONLY | MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RELATIME, NULL),
		MNT("/dev/mqueue", "mqueue", "mqueue", MS_NOSUID | MS_NOEXEC | MS_NODEV, NULL),
	};
	struct basic_arg a = { .spec = {
		.root_path = f->root,
		.mounts = mounts,
		.n_mounts = ARRAY_SIZE(mounts),
	} };
	mounts[1].propagation = MS_SHARED;
	run_child(f, 0, NULL, basic_child, &a);
	/* Destinations were created in the rootfs, not on the host. */
	char p[256];
	rfs_path(f, p, sizeof(p), "etc/single");
	struct stat st;
	assert_int_equal(lstat(p, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_size, 0);
	rfs_path(f, p, sizeof(p), "run");
	assert_true(exists(p));
}

static void dev_child(const struct rfs *f, void *arg)
{
	(void)f;
	umask(077);
	CHECK_ENTER(arg, NULL, NULL);
	check_in_rootfs();

	/* The spec's own /dev tmpfs, and the nodes in it. */
	struct mnt m = CHECK_MOUNT("/dev", "tmpfs");
	CHECK(opt_in(m.super, "size=128k"), "/dev: %s", m.super);
	CHECK_CHR("/dev/null", 1, 3, 0666);
	CHECK_CHR("/dev/zero", 1, 5, 0666);
	CHECK_CHR("/dev/full", 1, 7, 0666);
	CHECK_CHR("/dev/random", 1, 8, 0666);
	CHECK_CHR("/dev/urandom", 1, 9, 0666);
	CHECK_LINK("/dev/ptmx", "pts/ptmx");
	/* The spec's devpts, completed with newinstance and ptmxmode. */
	m = CHECK_MOUNT("/dev/pts", "devpts");
	CHECK(opt_in(m.super, "mode=600") && opt_in(m.super, "ptmxmode=666"), "/dev/pts: %s",
	      m.super);
	CHECK(fs_magic("/dev/shm") == TMPFS_MAGIC, "/dev/shm is not tmpfs");
	CHECK_LINK("/dev/fd", "/proc/self/fd");
	CHECK_LINK("/dev/stdin", "/proc/self/fd/0");
	CHECK_LINK("/dev/stdout", "/proc/self/fd/1");
	CHECK_LINK("/dev/stderr", "/proc/self/fd/2");
	CHECK_LINK("/dev/core", "/proc/kcore");
	CHECK_MOUNT("/dev/mqueue", "mqueue");

	/* They work. */
	int fd = open("/dev/zero", O_RDONLY | O_CLOEXEC);
	CHECK_SYS(fd);
	char z[8] = { 1, 1, 1, 1, 1, 1, 1, 1 };
	CHECK(read(fd, z, sizeof(z)) == sizeof(z), "read /dev/zero");
	CHECK(!memcmp(z, "\0\0\0\0\0\0\0\0", 8), "/dev/zero gave non-zero");
	close(fd);
	fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	CHECK_SYS(fd);
	CHECK(write(fd, "x", 1) == 1, "write /dev/null");
	close(fd);
	fd = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	CHECK(fd >= 0, "open /dev/ptmx: %s", strerror(errno));
	CHECK_SYS(unlockpt(fd));
	char name[64];
	CHECK(ptsname_r(fd, name, sizeof(name)) == 0 && !strcmp(name, "/dev/pts/0"),
	      "first pty of a new instance is %s", name);
	close(fd);

	/* The spec's devices, with their exact mode and owner. */
	struct stat st;
	CHECK_CHR("/dev/fuse", 10, 229, 0640);
	CHECK_SYS(lstat("/dev/fuse", &st));
	CHECK(st.st_uid == 1000 && st.st_gid == 1001, "/dev/fuse owned %u:%u",
	      (unsigned)st.st_uid, (unsigned)st.st_gid);
	CHECK_SYS(lstat("/dev/sub/blk", &st));
	CHECK(S_ISBLK(st.st_mode) && major(st.st_rdev) == 7 && minor(st.st_rdev) == 200 &&
		      (st.st_mode & 07777) == 0600,
	      "/dev/sub/blk mode %o", (unsigned)st.st_mode);
	CHECK_SYS(lstat("/dev/fifo", &st));
	CHECK(S_ISFIFO(st.st_mode) && (st.st_mode & 07777) == 0620 && st.st_gid == 5,
	      "/dev/fifo mode %o gid %u", (unsigned)st.st_mode, (unsigned)st.st_gid);
	CHECK_CHR("/dev/kmsg", 1, 11, 0600);
	/* A spec device replaces the default one. */
	CHECK_CHR("/dev/tty", 5, 0, 0620);
	CHECK_SYS(lstat("/dev/tty", &st));
	CHECK(st.st_gid == 5, "/dev/tty gid %u", (unsigned)st.st_gid);
}

static void test_rootfs_dev(void **state)
{
	SKIP_UNLESS_ROOT();
	struct rfs *f = *state;
	struct jail_mount mounts[] = {
		MNT("/proc", "proc", "proc", 0, NULL),
		MNT("/dev", "tmpfs", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=128k"),
		MNT("/dev/mqueue", "mqueue", "mqueue", 0, NULL),
		MNT("/dev/pts", "devpts", "devpts", MS_NOSUID | MS_NOEXEC, "mode=0600"),
	};
	struct jail_device devices[] = {
		{ .type = 'c', .path = "/dev/fuse", .major = 10, .minor = 229, .has_mode = true,
		  .file_mode = 0640, .has_uid = true, .uid = 1000, .has_gid = true, .gid = 1001 },
		{ .type = 'b', .path = "/dev/sub/blk", .major = 7, .minor = 200, .has_mode = true,
		  .file_mode = 0600 },
		{ .type = 'p', .path = "/dev/fifo", .has_mode = true, .file_mode = 0620,
		  .has_gid = true, .gid = 5 },
		{ .type = 'c', .path = "/dev/kmsg", .major = 1, .minor = 11, .has_mode = true,
		  .file_mode = 0600 },
		{ .type = 'u', .path = "/dev/tty", .major = 5, .minor = 0, .has_mode = true,
		  .file_mode = 0620, .has_gid = true, .gid = 5 },
	};
	struct jail_spec spec = {
		.root_path = f->root,
		.mounts = mounts,
		.n_mounts = ARRAY_SIZE(mounts),
		.devices = devices,
		.n_devices = ARRAY_SIZE(devices),
	};
	run_child(f, 0, NULL, dev_child, &spec);
}

static void masked_child(const struct rfs *f, void *arg)
{
	(void)f;
	CHECK_ENTER(arg, NULL, NULL);
	check_in_rootfs();
	char buf[64];
	/* A masked file reads as /dev/null. */
	read_text("/secret", buf, sizeof(buf));
	CHECK(buf[0] == '\0', "/secret has %s", buf);
	read_text("/proc/timer_list", buf, sizeof(buf));
	CHECK(buf[0] == '\0', "/proc/timer_list is readable");
	CHECK(fs_magic("/proc/acpi") == TMPFS_MAGIC, "/proc/acpi is not masked");
	/* A masked directory is an empty read-only tmpfs. */
	DIR *d = opendir("/secretdir");
	CHECK(d, "opendir /secretdir: %s", strerror(errno));
	struct dirent *de;
	while ((de = readdir(d)))
		CHECK(!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."),
		      "/secretdir shows %s", de->d_name);
	closedir(d);
	CHECK_CREATE("/secretdir/b", EROFS);
	CHECK(fs_magic("/secretdir") == TMPFS_MAGIC, "/secretdir is not a tmpfs");
	/* Missing paths are skipped, not created. */
	CHECK(access("/nonexistent", F_OK) < 0, "/nonexistent was created");
	CHECK(access("/missing", F_OK) < 0, "/missing was created");

	/* Read-only paths reject writes, the rest of the root does not. */
	CHECK_CREATE("/rodir/x", EROFS);
	struct mnt m = CHECK_MOUNT("/rodir", "ext4");
	CHECK_OPT(m, "ro");
	CHECK_OPT(m, "nosuid");
	CHECK_OPT(m, "nodev");
	CHECK_OPT(m, "noexec");
	int fd = open("/proc/sys/kernel/hostname", O_WRONLY | O_CLOEXEC);
	CHECK(fd < 0 && errno == EROFS, "/proc/sys/kernel/hostname opened for writing: %s",
	      fd < 0 ? strerror(errno) : "ok");
	/* A read-only file. */
	fd = open("/rofile", O_WRONLY | O_CLOEXEC);
	CHECK(fd < 0 && errno == EROFS, "/rofile opened for writing: %s",
	      fd < 0 ? strerror(errno) : "ok");
	CHECK_CREATE("/rw-ok", 0);
}

static void test_rootfs_masked_readonly(void **state)
{
	SKIP_UNLESS_ROOT();
	struct rfs *f = *state;
	struct jail_mount mounts[] = { MNT("/proc", "proc", "proc", 0, NULL) };
	/* /proc/kcore is missing on kernels without it: skipped then. */
	char *masked[] = { "/secret",	  "/secretdir",	     "/nonexistent",   "/proc/kcore",
			   "/proc/acpi", "/proc/timer_list", "/missing/deeper" };
	/* /proc/sysrq-trigger is absent on kernels without it: skipped then. */
	char *ro[] = { "/rodir", "/proc/sys", "/rofile", "/proc/sysrq-trigger", "/missing/ro" };
	char p[256];
	rfs_path(f, p, sizeof(p), "rofile");
	write_file(p, "ro\n");
	struct jail_spec spec = {
		.root_path = f->root,
		.mounts = mounts,
		.n_mounts = ARRAY_SIZE(mounts),
		.masked_paths = masked,
		.n_masked_paths = ARRAY_SIZE(masked),
		.readonly_paths = ro,
		.n_readonly_paths = ARRAY_SIZE(ro),
	};
	run_child(f, 0, NULL, masked_child, &spec);
	rfs_path(f, p, sizeof(p), "secret");
	char buf[64] = { 0 };
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_true(read(fd, buf, sizeof(buf) - 1) > 0);
	close(fd);
	assert_string_equal(buf, "top secret\n");
}

static void readonly_root_child(const struct rfs *f, void *arg)
{
	(void)f;
	CHECK_ENTER(arg, NULL, NULL);
	check_in_rootfs();
	CHECK_CREATE("/newfile", EROFS);
	CHECK(mkdir("/newdir", 0755) < 0 && errno == EROFS, "mkdir /newdir: %s",
	      strerror(errno));
	struct mnt m = CHECK_MOUNT("/", "ext4");
	CHECK_OPT(m, "ro");
	CHECK(m.shared, "rootfsPropagation shared not applied to /");
	/* Mounts on it stay writable. */
	CHECK_CREATE("/run/x", 0);
	CHECK_CREATE("/dev/shm/x", 0);
	int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	CHECK(fd >= 0, "open /dev/null for writing: %s", strerror(errno));
	close(fd);
}

static void test_rootfs_readonly_root(void **state)
{
	SKIP_UNLESS_ROOT();
	struct rfs *f = *state;
	struct jail_mount mounts[] = { MNT("/proc", "proc", "proc", 0, NULL),
				       MNT("/run", "tmpfs", "tmpfs", 0, NULL) };
	struct jail_spec spec = {
		.root_path = f->root,
		.root_readonly = true,
		.mounts = mounts,
		.n_mounts = ARRAY_SIZE(mounts),
		.rootfs_propagation = MS_SHARED | MS_REC,
	};
	run_child(f, 0, NULL, readonly_root_child, &spec);
}

struct escape_arg {
	struct jail_spec spec;
	char names[6][64]; /* a b c d e node, as seen inside */
};

static void escape_child(const struct rfs *f, void *arg)
{
	(void)f;
	struct escape_arg *a = arg;
	CHECK_ENTER(&a->spec, NULL, NULL);
	check_in_rootfs();
	char p[128], buf[64];
	for (int i = 0; i < 2; i++) {
		snprintf(p, sizeof(p), "/%s", a->names[i]);
		CHECK_MOUNT(p, "tmpfs");
	}
	snprintf(p, sizeof(p), "/tmp/%s/hostfile", a->names[2]);
	read_text(p, buf, sizeof(buf));
	CHECK(!strcmp(buf, "from host\n"), "%s has %s", p, buf);
	snprintf(p, sizeof(p), "/%s", a->names[3]);
	read_text(p, buf, sizeof(buf));
	CHECK(!strcmp(buf, "single file\n"), "%s has %s", p, buf);
	snprintf(p, sizeof(p), "/%s", a->names[4]);
	CHECK_MOUNT(p, "tmpfs");
	snprintf(p, sizeof(p), "/%s", a->names[5]);
	CHECK_CHR(p, 1, 3, 0666);
}

static void test_rootfs_symlink_escape(void **state)
{
	SKIP_UNLESS_ROOT();
	struct rfs *f = *state;
	struct escape_arg a = { 0 };
	const char *tags[] = { "a", "b", "c", "d", "e", "node" };
	for (int i = 0; i < 6; i++)
		snprintf(a.names[i], sizeof(a.names[i]), "husk-esc-%s-%s", f->suffix, tags[i]);
	char dst[6][128], data[256], single[256];
	snprintf(dst[0], sizeof(dst[0]), "/evil/%s", a.names[0]);
	snprintf(dst[1], sizeof(dst[1]), "/up/%s", a.names[1]);
	snprintf(dst[2], sizeof(dst[2]), "/up/tmp/%s", a.names[2]);
	snprintf(dst[3], sizeof(dst[3]), "/evil/%s", a.names[3]);
	snprintf(dst[4], sizeof(dst[4]), "/evil/../../up/evil/%s", a.names[4]);
	snprintf(dst[5], sizeof(dst[5]), "/up/%s", a.names[5]);
	snprintf(data, sizeof(data), "%s/data", f->host);
	snprintf(single, sizeof(single), "%s/single", f->host);
	struct jail_mount mounts[] = {
		MNT("/proc", "proc", "proc", 0, NULL),
		MNT(dst[0], "tmpfs", "tmpfs", 0, NULL),
		MNT(dst[1], "tmpfs", "tmpfs", 0, NULL),
		MNT(dst[2], "bind", data, MS_BIND, NULL),
		MNT(dst[3], "bind", single, MS_BIND | MS_RDONLY, NULL),
		MNT(dst[4], "tmpfs", "tmpfs", 0, NULL),
	};
	struct jail_device devices[] = {
		{ .type = 'c', .path = dst[5], .major = 1, .minor = 3 },
	};
	a.spec = (struct jail_spec){
		.root_path = f->root,
		.mounts = mounts,
		.n_mounts = ARRAY_SIZE(mounts),
		.devices = devices,
		.n_devices = ARRAY_SIZE(devices),
	};
	run_child(f, 0, NULL, escape_child, &a);

	/* Nothing appeared on the host; everything in the rootfs. */
	for (int i = 0; i < 6; i++) {
		char host[128], inside[256];
		snprintf(host, sizeof(host), i == 2 ? "/tmp/%s" : "/%s", a.names[i]);
		if (exists(host))
			fail_msg("%s appeared on the host", host);
		rfs_path(f, inside, sizeof(inside), host + 1);
		if (!exists(inside))
			fail_msg("%s is not in the rootfs", inside);
	}
}

struct switch_arg {
	struct jail_spec spec;
	const char *root;
	int calls;
	bool fail;
};

static int before_switch(void *data, struct husk_err *err)
{
	struct switch_arg *a = data;
	a->calls++;
	char p[256];
	/* The mounts are made, the rootfs is still at its host path. */
	snprintf(p, sizeof(p), "%s/run", a->root);
	CHECK(fs_magic(p) == TMPFS_MAGIC, "%s is not mounted yet", p);
	snprintf(p, sizeof(p), "%s/dev/null", a->root);
	CHECK_CHR(p, 1, 3, 0666);
	CHECK(access("/etc/debian_version", F_OK) == 0, "the root already switched");
	CHECK(access("/marker", F_OK) < 0, "the root already switched");
	if (a->fail)
		return husk_err_set(err, -EIO, "createContainer hook failed");
	return 0;
}

static void switch_child(const struct rfs *f, void *arg)
{
	(void)f;
	struct switch_arg *a = arg;
	if (a->fail) {
		struct husk_err err = { 0 };
		int r = jail_rootfs_enter(&a->spec, before_switch, NULL, a, &err);
		CHECK(r == -EIO, "enter returned %d: %s", r, err.msg);
		CHECK(!strcmp(err.msg, "createContainer hook failed"), "message %s", err.msg);
		CHECK(access("/etc/debian_version", F_OK) == 0, "switched despite the failure");
	} else {
		CHECK_ENTER(&a->spec, before_switch, a);
		check_in_rootfs();
	}
	CHECK(a->calls == 1, "before_switch ran %d times", a->calls);
}

static void test_rootfs_before_switch(void **state)
{
	SKIP_UNLESS_ROOT();
	struct rfs *f = *state;
	struct jail_mount mounts[] = { MNT("/run", "tmpfs", "tmpfs", 0, NULL) };
	struct switch_arg a = {
		.spec = { .root_path = f->root, .mounts = mounts, .n_mounts = 1 },
		.root = f->root,
	};
	run_child(f, 0, NULL, switch_child, &a);
	a.fail = true;
	run_child(f, 0, NULL, switch_child, &a);
}

struct error_case {
	struct jail_spec spec;
	int code;
	const char *msg;
};

static void error_child(const struct rfs *f, void *arg)
{
	(void)f;
	struct error_case *c = arg;
	struct husk_err err = { 0 };
	int r = jail_rootfs_enter(&c->spec, NULL, NULL, NULL, &err);
	CHECK(r == c->code, "returned %d (%s), expected %d", r, err.msg, c->code);
	CHECK(err.code == c->code, "err.code %d", err.code);
	CHECK(!strcmp(err.msg, c->msg), "message \"%s\", expected \"%s\"", err.msg, c->msg);
}

static void test_rootfs_errors(void **state)
{
	SKIP_UNLESS_ROOT();
	struct rfs *f = *state;
	char marker[256], msg[512];
	rfs_path(f, marker, sizeof(marker), "marker");

	struct error_case c = { .spec = { .root_path = "/nonexistent/rootfs" }, .code = -ENOENT,
				.msg = "root.path /nonexistent/rootfs: No such file or directory" };
	run_child(f, 0, NULL, error_child, &c);

	snprintf(msg, sizeof(msg), "root.path %s: not a directory", marker);
	c = (struct error_case){ .spec = { .root_path = marker }, .code = -ENOTDIR, .msg = msg };
	run_child(f, 0, NULL, error_child, &c);

	struct jail_mount bad_type[] = { MNT("/run", "tmpfs", "tmpfs", 0, NULL),
					 MNT("/x", "nosuchfs", "none", 0, NULL) };
	c = (struct error_case){ .spec = { .root_path = f->root, .mounts = bad_type, .n_mounts = 2 },
				 .code = -ENODEV,
				 .msg = "mounts[1] (nosuchfs on /x): mount: No such device" };
	run_child(f, 0, NULL, error_child, &c);

	struct jail_mount bad_src[] = { MNT("/y", NULL, "/nonexistent/src", MS_BIND, NULL) };
	c = (struct error_case){
		.spec = { .root_path = f->root, .mounts = bad_src, .n_mounts = 1 },
		.code = -ENOENT,
		.msg = "mounts[0] (bind on /y): source /nonexistent/src: No such file or directory"
	};
	run_child(f, 0, NULL, error_child, &c);

	struct jail_mount bad_dst[] = { MNT("/marker/sub", "tmpfs", "tmpfs", 0, NULL) };
	c = (struct error_case){
		.spec = { .root_path = f->root, .mounts = bad_dst, .n_mounts = 1 },
		.code = -ENOTDIR,
		.msg = "mounts[0] (tmpfs on /marker/sub): mkdir /marker/sub: /marker: Not a directory"
	};
	run_child(f, 0, NULL, error_child, &c);

	struct jail_device bad_dev[] = { { .type = 'x', .path = "/dev/x" } };
	c = (struct error_case){
		.spec = { .root_path = f->root, .devices = bad_dev, .n_devices = 1 },
		.code = -EINVAL,
		.msg = "devices[0] (/dev/x): type 'x': expected c, b, u or p"
	};
	run_child(f, 0, NULL, error_child, &c);
}

/* A user namespace mapping only root: mknod, sysfs and cgroup2 are refused
 * and fall back to binds; flags locked by the more privileged namespace are
 * kept on remount. */
static void userns_prep(const struct rfs *f, void *arg)
{
	(void)arg;
	char p[256];
	snprintf(p, sizeof(p), "%s/locked", f->host);
	CHECK_SYS(mount("tmpfs", p, "tmpfs", MS_RDONLY | MS_NODEV | MS_NOEXEC, "size=64k"));
}

static void userns_child(const struct rfs *f, void *arg)
{
	(void)f;
	CHECK_ENTER(arg, NULL, NULL);
	check_in_rootfs();
	CHECK_CHR("/dev/null", 1, 3, 0);
	int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	CHECK(fd >= 0, "open /dev/null: %s", strerror(errno));
	close(fd);
	CHECK_MOUNT("/dev/null", "devtmpfs"); /* the host's node, bound */
	CHECK_MOUNT("/proc", "proc");
	struct mnt m = CHECK_MOUNT("/sys", "sysfs");
	CHECK_OPT(m, "ro");
	CHECK_OPT(m, "nosuid");
	m = find_mount("/sys/fs/cgroup");
	CHECK(m.found && (!strcmp(m.fstype, "tmpfs") || !strcmp(m.fstype, "cgroup2")),
	      "/sys/fs/cgroup: %s", m.fstype);
	CHECK_OPT(m, "nosuid");
	/* Asked for nosuid only; ro, nodev and noexec are locked, so kept. */
	m = CHECK_MOUNT("/locked", "tmpfs");
	CHECK_OPT(m, "nosuid");
	CHECK_OPT(m, "ro");
	CHECK_OPT(m, "nodev");
	CHECK_OPT(m, "noexec");
	CHECK(fs_magic("/dev/pts") == DEVPTS_SUPER_MAGIC, "/dev/pts is not devpts");
	CHECK_CREATE("/newfile", EROFS);
	CHECK_CREATE("/run/x", 0);
}

static void test_rootfs_userns(void **state)
{
	SKIP_UNLESS_ROOT();
	struct rfs *f = *state;
	char locked[256];
	snprintf(locked, sizeof(locked), "%s/locked", f->host);
	struct jail_mount mounts[] = {
		MNT("/proc", "proc", "proc", MS_NOSUID | MS_NOEXEC | MS_NODEV, NULL),
		MNT("/sys", "sysfs", "sysfs", MS_RDONLY | MS_NOSUID | MS_NOEXEC | MS_NODEV, NULL),
		MNT("/sys/fs/cgroup", "cgroup", "cgroup", MS_NOSUID | MS_NOEXEC | MS_NODEV, NULL),
		MNT("/run", "tmpfs", "tmpfs", MS_NOSUID, NULL),
		MNT("/locked", "bind", locked, MS_BIND | MS_NOSUID, NULL),
	};
	struct jail_spec spec = {
		.root_path = f->root,
		.root_readonly = true,
		.mounts = mounts,
		.n_mounts = ARRAY_SIZE(mounts),
	};
	run_child(f, CHILD_USERNS, userns_prep, userns_child, &spec);
}

/* Clearing a locked flag ("rw" on a read-only source) is refused, not
 * silently kept. */
static void userns_rw_child(const struct rfs *f, void *arg)
{
	(void)f;
	struct husk_err err = { 0 };
	int r = jail_rootfs_enter(arg, NULL, NULL, NULL, &err);
	CHECK(r == -EPERM, "returned %d: %s", r, err.msg);
	CHECK(strstr(err.msg, "mounts[0] (bind on /locked): remount"), "message %s", err.msg);
}

static void test_rootfs_userns_locked_rw(void **state)
{
	SKIP_UNLESS_ROOT();
	struct rfs *f = *state;
	char locked[256];
	snprintf(locked, sizeof(locked), "%s/locked", f->host);
	struct jail_mount mounts[] = { MNT("/locked", "bind", locked, MS_BIND, NULL) };
	mounts[0].clear_flags = MS_RDONLY;
	struct jail_spec spec = { .root_path = f->root, .mounts = mounts, .n_mounts = 1 };
	run_child(f, CHILD_USERNS, userns_prep, userns_rw_child, &spec);
}

/* ---- the initramfs case: no pivot_root ---- */

static void test_mountinfo_root_is_initial(void **state)
{
	(void)state;
	assert_true(jail_mountinfo_root_is_initial("1 1 0:2 / / rw - rootfs rootfs rw\n"));
	/* A root mount detached from its parent is as stuck. */
	assert_true(jail_mountinfo_root_is_initial(
		"35 35 0:40 / / rw,relatime shared:1 - tmpfs tmpfs rw\n"
		"36 35 0:20 / /proc rw - proc proc rw\n"));
	assert_false(jail_mountinfo_root_is_initial(
		"26 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
		"21 26 0:20 / /proc rw,relatime - proc proc rw\n"));
	/* An initramfs over a bottom mount (nullfs): pivotable. */
	assert_false(jail_mountinfo_root_is_initial("2 1 0:2 / / rw - rootfs rootfs rw\n"));
	/* switch_root (MS_MOVE + chroot) on top of the initramfs: pivotable. */
	assert_false(jail_mountinfo_root_is_initial("1 1 0:2 / / rw - rootfs rootfs rw\n"
						    "20 1 0:30 / / rw - tmpfs tmpfs rw\n"));
	assert_false(jail_mountinfo_root_is_initial("20 1 0:30 / /a\\040b rw - tmpfs tmpfs rw\n"));
	assert_false(jail_mountinfo_root_is_initial(""));
	assert_false(jail_mountinfo_root_is_initial("garbage\n"));
	/* This host boots from a disk. */
	assert_false(jail_root_is_initramfs());
}

/* Builds a root that pivot_root refuses with EINVAL, as it does the
 * initramfs: a chroot into a mount whose parent mount is shared. (The
 * initramfs detection itself is tested on mountinfo texts above: no test
 * can make a namespace's bottom mount its root.) The switch then takes the
 * initramfs path, MS_MOVE + chroot. */
static void no_pivot_prep(const struct rfs *f, void *arg)
{
	(void)arg;
	char fake[256], p[300];
	snprintf(fake, sizeof(fake), "%s/fake", f->dir);
	CHECK_SYS(mkdir(fake, 0755));
	CHECK_SYS(mount("tmpfs", fake, "tmpfs", 0, "size=16m"));
	CHECK_SYS(mount(NULL, fake, NULL, MS_SHARED, NULL));
	snprintf(p, sizeof(p), "%s/top", fake);
	CHECK_SYS(mkdir(p, 0755));
	CHECK_SYS(mount("tmpfs", p, "tmpfs", 0, "size=16m"));
	const char *dirs[] = { "top/proc", "top/rootfs", "top/rootfs/etc",
			       "top/rootfs/secretdir" };
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		snprintf(p, sizeof(p), "%s/%s", fake, dirs[i]);
		CHECK_SYS(mkdir(p, 0755));
	}
	snprintf(p, sizeof(p), "%s/top/rootfs/marker", fake);
	int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	CHECK_SYS(fd);
	CHECK_SYS(write(fd, "marker\n", 7));
	close(fd);
	snprintf(p, sizeof(p), "%s/top/rootfs/secretdir/a", fake);
	fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	CHECK_SYS(fd);
	close(fd);
	snprintf(p, sizeof(p), "%s/top", fake);
	CHECK_SYS(chdir(p));
	CHECK_SYS(chroot("."));
	CHECK_SYS(mount("proc", "/proc", "proc", 0, NULL));
	CHECK(!jail_root_is_initramfs(), "a chroot is taken for the initramfs");
	/* pivot_root indeed refuses it, even for a proper new root. */
	CHECK_SYS(mkdir("/probe", 0755));
	CHECK_SYS(mount("tmpfs", "/probe", "tmpfs", 0, NULL));
	CHECK(syscall(SYS_pivot_root, "/probe", "/probe") < 0 && errno == EINVAL,
	      "pivot_root in the chroot: %s", strerror(errno));
	CHECK_SYS(umount2("/probe", 0));
}

static void no_pivot_child(const struct rfs *f, void *arg)
{
	(void)f;
	CHECK_ENTER(arg, NULL, NULL);
	char buf[64];
	read_text("/marker", buf, sizeof(buf));
	CHECK(!strcmp(buf, "marker\n"), "/marker has %s", buf);
	CHECK(access("/rootfs", F_OK) < 0, "the old root is visible");
	char cwd[64];
	CHECK(getcwd(cwd, sizeof(cwd)) && !strcmp(cwd, "/"), "cwd is %s", cwd);
	CHECK_MOUNT("/run", "tmpfs");
	CHECK_MOUNT("/proc", "proc");
	CHECK_CHR("/dev/null", 1, 3, 0666);
	CHECK(fs_magic("/secretdir") == TMPFS_MAGIC, "/secretdir is not masked");
	CHECK_CREATE("/newfile", EROFS);
	CHECK_CREATE("/run/x", 0);
	/* The outer proc was hidden: the only proc left is ours. */
	FILE *fp = fopen("/proc/self/mountinfo", "re");
	CHECK(fp, "mountinfo: %s", strerror(errno));
	char line[4096];
	int procs = 0;
	while (fgets(line, sizeof(line), fp))
		if (strstr(line, " - proc "))
			procs++;
	fclose(fp);
	CHECK(procs == 1, "%d proc mounts visible", procs);
}

static void test_rootfs_no_pivot_move(void **state)
{
	SKIP_UNLESS_ROOT();
	struct rfs *f = *state;
	struct jail_mount mounts[] = {
		MNT("/proc", "proc", "proc", 0, NULL),
		MNT("/run", "tmpfs", "tmpfs", 0, NULL),
	};
	char *masked[] = { "/secretdir" };
	struct jail_spec spec = {
		.root_path = "/rootfs",
		.root_readonly = true,
		.mounts = mounts,
		.n_mounts = ARRAY_SIZE(mounts),
		.masked_paths = masked,
		.n_masked_paths = 1,
	};
	run_child(f, 0, no_pivot_prep, no_pivot_child, &spec);
}

#define SP_TEST(fn)                                                                             \
	{ #fn "/openat2", fn, sp_setup, sp_teardown, &how_auto },                               \
	{                                                                                       \
		#fn "/walk", fn, sp_setup, sp_teardown, &how_walk                               \
	}
#define RFS_TEST(fn) cmocka_unit_test_setup_teardown(fn, rfs_setup, rfs_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		SP_TEST(test_safepath_plain),
		SP_TEST(test_safepath_escapes_clamp),
		SP_TEST(test_safepath_loops),
		SP_TEST(test_safepath_nofollow),
		SP_TEST(test_safepath_create),
		SP_TEST(test_safepath_mkdir_all),
		SP_TEST(test_safepath_mkfile),
		cmocka_unit_test(test_safepath_magiclinks),
		cmocka_unit_test(test_mountinfo_root_is_initial),
		RFS_TEST(test_rootfs_basic),
		RFS_TEST(test_rootfs_dev),
		RFS_TEST(test_rootfs_masked_readonly),
		RFS_TEST(test_rootfs_readonly_root),
		RFS_TEST(test_rootfs_symlink_escape),
		RFS_TEST(test_rootfs_before_switch),
		RFS_TEST(test_rootfs_errors),
		RFS_TEST(test_rootfs_userns),
		RFS_TEST(test_rootfs_userns_locked_rw),
		RFS_TEST(test_rootfs_no_pivot_move),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
