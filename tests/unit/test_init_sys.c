/* Unit tests for libinit's system-facing pieces, each checked against what
 * the kernel reports, and each run where it cannot disturb the host:
 *   console  log levels, the sink, the stderr format, reopening fds 0-2
 *   net      loopback up in a fresh network namespace, host name in a fresh
 *            UTS namespace
 *   entropy  seeding (a few bytes from getrandom, credited), refusals
 *   power    init_poweroff outside a husk guest exits, even as PID 1 of a
 *            PID namespace (never reboot(2): see init/power.h)
 *   mounts   init_mount_basics_at on a tmpfs in a private mount namespace
 *   cgroup   controller enabling on a fake cgroup directory
 *   kmod     dependency order from a fake module tree, dry run
 * The namespace tests need root and are skipped without it. */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <libkmod.h>

#include "init/cmdline.h"
#include "init/console.h"
#include "init/entropy.h"
#include "init/kmod.h"
#include "init/mounts.h"
#include "husk/netif.h"
#include "init/net.h"
#include "init/power.h"

#define CHILD_SKIP 77

/* ---- child plumbing: a child reports one line through a pipe --------------- */

struct child_msg {
	char text[512];
};

static struct child_msg *child_out;

__attribute__((format(printf, 1, 2))) static int cfail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(child_out->text, sizeof(child_out->text), fmt, ap);
	va_end(ap);
	return 1;
}

/* Runs fn in a forked child (after unshare(flags) when flags != 0); returns
 * its exit code (0 success, CHILD_SKIP, else failure, with `msg` filled). */
static int run_child(int (*fn)(void *), void *arg, int unshare_flags, struct child_msg *msg)
{
	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		static struct child_msg m;
		child_out = &m;
		close(p[0]);
		int rc;
		if (unshare_flags && unshare(unshare_flags) < 0)
			rc = cfail("unshare: %s", strerror(errno));
		else
			rc = fn(arg);
		if (write(p[1], &m, sizeof(m)) != (ssize_t)sizeof(m))
			rc = 1;
		_exit(rc);
	}
	close(p[1]);
	memset(msg, 0, sizeof(*msg));
	while (read(p[0], msg, sizeof(*msg)) < 0 && errno == EINTR)
		;
	close(p[0]);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status)) {
		snprintf(msg->text, sizeof(msg->text), "killed (status 0x%x)", (unsigned)status);
		return 255;
	}
	return WEXITSTATUS(status);
}

/* run_child, failing the test with the child's message. Returns false when
 * the child asked to be skipped. */
static bool in_child(int (*fn)(void *), void *arg, int unshare_flags)
{
	struct child_msg m;
	int rc = run_child(fn, arg, unshare_flags, &m);
	if (rc == CHILD_SKIP)
		return false;
	if (rc != 0)
		fail_msg("child failed (%d): %s", rc, m.text);
	return true;
}

static bool is_root(void)
{
	return geteuid() == 0;
}

/* Reads what fd `rd` holds right now (non-blocking) into buf. */
static size_t drain(int rd, char *buf, size_t size)
{
	size_t len = 0;
	ssize_t n;
	while (len < size - 1 && (n = read(rd, buf + len, size - 1 - len)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
	return len;
}

/* ---- console ------------------------------------------------------------------ */

struct sink_rec {
	int calls;
	int level;
	char line[INIT_LOG_LINE_MAX];
	size_t len;
	bool reenter;
};

static void sink(int level, const char *line, size_t len, void *data)
{
	struct sink_rec *s = data;
	s->calls++;
	s->level = level;
	s->len = len;
	memcpy(s->line, line, len + 1);
	if (s->reenter)
		init_log(INIT_LOG_ERR, "from inside the sink");
}

/* Points fd 2 at a non-blocking pipe; returns the read end, saves fd 2. */
static int capture_stderr(int *saved)
{
	int p[2];
	assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
	*saved = dup(2);
	assert_true(*saved >= 0);
	assert_int_equal(dup2(p[1], 2), 2);
	close(p[1]);
	return p[0];
}

static void restore_stderr(int saved, int rd)
{
	dup2(saved, 2);
	close(saved);
	close(rd);
}

static void test_log_levels_and_sink(void **state)
{
	(void)state;
	struct sink_rec s = { 0 };
	int saved, rd = capture_stderr(&saved);
	init_log_set_sink(sink, &s);

	init_log_set_level(INIT_LOG_WARNING);
	assert_int_equal(init_log_get_level(), INIT_LOG_WARNING);
	init_log(INIT_LOG_INFO, "dropped %d", 1);
	init_log(INIT_LOG_DEBUG, "dropped too");
	assert_int_equal(s.calls, 0);
	init_log(INIT_LOG_WARNING, "disk %s at %d%%\n", "vda", 99);
	assert_int_equal(s.calls, 1);
	assert_int_equal(s.level, INIT_LOG_WARNING);
	assert_string_equal(s.line, "warning: disk vda at 99%"); /* newline dropped */
	assert_int_equal(s.len, strlen(s.line));

	char out[4096];
	drain(rd, out, sizeof(out));
	/* "[    1.234567] husk-agent: warning: disk vda at 99%\n", once. */
	unsigned long secs, usecs;
	char rest[256];
	assert_int_equal(sscanf(out, "[%lu.%6lu] %255[^\n]", &secs, &usecs, rest), 3);
	assert_string_equal(rest, "husk-agent: warning: disk vda at 99%");
	assert_non_null(strchr(out, '\n'));
	assert_string_equal(strchr(out, '\n'), "\n");
	assert_null(strstr(out, "dropped"));

	/* Levels are clamped; errno is left alone. */
	init_log_set_level(42);
	assert_int_equal(init_log_get_level(), INIT_LOG_DEBUG);
	init_log_set_level(-3);
	assert_int_equal(init_log_get_level(), INIT_LOG_EMERG);
	init_log_set_level(INIT_LOG_DEBUG);
	errno = EXDEV;
	init_log(INIT_LOG_DEBUG, "x");
	assert_int_equal(errno, EXDEV);
	assert_string_equal(init_log_level_name(INIT_LOG_ERR), "error");
	assert_string_equal(init_log_level_name(9), "?");

	/* A sink that logs is not re-entered: its line goes to stderr only. */
	s.calls = 0;
	s.reenter = true;
	init_log_set_stderr(false);
	init_log(INIT_LOG_NOTICE, "outer");
	assert_int_equal(s.calls, 1);
	assert_string_equal(s.line, "notice: outer");
	drain(rd, out, sizeof(out));
	assert_null(strstr(out, "outer"));
	assert_non_null(strstr(out, "husk-agent: error: from inside the sink"));

	/* With a sink, stderr can keep only the severe lines. */
	s.reenter = false;
	init_log_set_stderr_level(INIT_LOG_WARNING);
	s.calls = 0;
	init_log(INIT_LOG_INFO, "chatty");
	init_log(INIT_LOG_WARNING, "severe");
	assert_int_equal(s.calls, 2);
	drain(rd, out, sizeof(out));
	assert_null(strstr(out, "chatty"));
	assert_non_null(strstr(out, "husk-agent: warning: severe"));
	/* ... and without one, everything that passes the level goes there. */
	init_log_set_sink(NULL, NULL);
	init_log(INIT_LOG_INFO, "alone");
	drain(rd, out, sizeof(out));
	assert_non_null(strstr(out, "husk-agent: info: alone"));
	init_log_set_sink(sink, &s);
	init_log_set_stderr_level(INIT_LOG_DEBUG);

	/* Long messages are cut, not overflowed. */
	char big[3000];
	memset(big, 'z', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	init_log(INIT_LOG_INFO, "%s", big);
	assert_int_equal(s.len, INIT_LOG_LINE_MAX - 1);

	init_log_set_sink(NULL, NULL);
	init_log_set_stderr(true);
	init_log_set_level(INIT_LOG_DEFAULT);
	restore_stderr(saved, rd);
}

struct attach_arg {
	const char *console;
	const char *expect; /* file the fds must be, or NULL for /dev/null */
};

static int child_attach(void *p)
{
	struct attach_arg *a = p;
	close(0);
	close(2);
	/* fd 1 stays open: only closed ones are replaced. */
	struct stat one_before, st, want;
	if (fstat(1, &one_before) < 0)
		return cfail("fstat 1: %s", strerror(errno));
	struct husk_err err = { 0 };
	if (init_console_attach(a->console, &err) < 0)
		return cfail("attach: %s", err.msg);
	if (stat(a->expect ? a->expect : "/dev/null", &want) < 0)
		return cfail("stat want: %s", strerror(errno));
	for (int fd = 0; fd < 3; fd += 2) {
		if (fstat(fd, &st) < 0)
			return cfail("fd %d still closed", fd);
		if (st.st_ino != want.st_ino || st.st_dev != want.st_dev)
			return cfail("fd %d is not %s", fd, a->expect ? a->expect : "/dev/null");
		if (fcntl(fd, F_GETFD) & FD_CLOEXEC)
			return cfail("fd %d is close-on-exec", fd);
	}
	if (fstat(1, &st) < 0 || st.st_ino != one_before.st_ino)
		return cfail("fd 1 was replaced");
	/* Nothing to do the second time. */
	if (init_console_attach("/nonexistent", &err) < 0)
		return cfail("second attach: %s", err.msg);
	return 0;
}

static void test_console_attach(void **state)
{
	(void)state;
	char path[] = "/tmp/husk-console-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	struct attach_arg a = { path, path };
	in_child(child_attach, &a, 0);
	struct attach_arg b = { "/nonexistent/console", NULL };
	in_child(child_attach, &b, 0);
	unlink(path);
}

/* ---- net ------------------------------------------------------------------------ */

static int lo_flags(void)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr = { 0 };
	strcpy(ifr.ifr_name, "lo");
	int r = ioctl(s, SIOCGIFFLAGS, &ifr);
	close(s);
	return r < 0 ? -1 : ifr.ifr_flags;
}

static int child_loopback(void *p)
{
	(void)p;
	int f = lo_flags();
	if (f < 0 || (f & IFF_UP))
		return cfail("fresh netns: lo flags 0x%x, expected down", f);
	/* Down: nothing reaches 127.0.0.1. */
	struct husk_err err = { 0 };
	if (husk_loopback_up(&err) < 0)
		return cfail("%s", err.msg);
	f = lo_flags();
	if (!(f & IFF_UP))
		return cfail("lo still down (0x%x)", f);
	if (husk_loopback_up(&err) < 0)
		return cfail("second call: %s", err.msg);

	/* 127.0.0.1 works: a datagram to ourselves arrives. */
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	if (bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    getsockname(s, (struct sockaddr *)&sa, &sl) < 0)
		return cfail("bind 127.0.0.1: %s", strerror(errno));
	if (sendto(s, "ping", 4, 0, (struct sockaddr *)&sa, sizeof(sa)) != 4)
		return cfail("sendto: %s", strerror(errno));
	char buf[8];
	if (recv(s, buf, sizeof(buf), 0) != 4 || memcmp(buf, "ping", 4) != 0)
		return cfail("recv over lo failed");
	close(s);
	return 0;
}

static void test_loopback_up(void **state)
{
	(void)state;
	if (!is_root())
		skip();
	in_child(child_loopback, NULL, CLONE_NEWNET);
}

static int child_hostname(void *p)
{
	(void)p;
	struct husk_err err = { 0 };
	char before[128], now[128];
	gethostname(before, sizeof(before));
	if (init_set_hostname("bad_name", &err) != -EINVAL || !strstr(err.msg, "bad_name"))
		return cfail("bad_name accepted or unnamed: %s", err.msg);
	if (init_set_hostname(NULL, &err) != -EINVAL)
		return cfail("NULL accepted");
	gethostname(now, sizeof(now));
	if (strcmp(before, now) != 0)
		return cfail("a refused name changed the host name");
	if (init_set_hostname("sandbox-7.husk", &err) < 0)
		return cfail("%s", err.msg);
	gethostname(now, sizeof(now));
	if (strcmp(now, "sandbox-7.husk") != 0)
		return cfail("host name is %s", now);
	return 0;
}

static void test_hostname(void **state)
{
	(void)state;
	if (!is_root())
		skip();
	char before[128], after[128];
	gethostname(before, sizeof(before));
	in_child(child_hostname, NULL, CLONE_NEWUTS);
	gethostname(after, sizeof(after));
	assert_string_equal(before, after); /* ours is untouched */
}

/* ---- entropy ---------------------------------------------------------------------- */

static void test_entropy(void **state)
{
	(void)state;
	struct husk_err err = { 0 };
	unsigned char seed[16];
	assert_int_equal(getrandom(seed, sizeof(seed), 0), (ssize_t)sizeof(seed));
	assert_int_equal(init_seed_entropy(seed, 0, &err), -EINVAL);
	assert_int_equal(init_seed_entropy(seed, INIT_ENTROPY_MAX + 1, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "513"));
	assert_int_equal(init_seed_from_device("/nonexistent/hwrng", 8, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "/nonexistent/hwrng"));
	assert_int_equal(init_seed_from_device("/dev/null", 8, &err), -EIO);
	assert_non_null(strstr(err.msg, "no data"));
	if (!is_root())
		skip();
	/* Truly random bytes (getrandom), a handful: crediting them is
	 * honest and costs the host nothing. */
	assert_int_equal(init_seed_entropy(seed, sizeof(seed), &err), 0);
	assert_int_equal(init_seed_from_device("/dev/urandom", 8, &err), 8);
}

static int child_entropy_unprivileged(void *p)
{
	(void)p;
	if (setgid(65534) < 0 || setuid(65534) < 0)
		return cfail("drop to nobody: %s", strerror(errno));
	struct husk_err err = { 0 };
	unsigned char seed[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	int r = init_seed_entropy(seed, sizeof(seed), &err);
	if (r != -EPERM || !strstr(err.msg, "RNDADDENTROPY"))
		return cfail("unprivileged seed: %d %s", r, err.msg);
	return 0;
}

static void test_entropy_needs_privilege(void **state)
{
	(void)state;
	if (!is_root())
		skip();
	in_child(child_entropy_unprivileged, NULL, 0);
}

/* ---- power: never a reboot outside a guest ------------------------------------------- */

static int child_poweroff(void *p)
{
	(void)p;
	if (init_is_husk_guest())
		return cfail("init_is_husk_guest() is true here");
	/* Does not return: the parent checks the exit status (1). */
	init_poweroff("unit test");
}

static void test_poweroff_outside_guest_exits(void **state)
{
	(void)state;
	assert_false(init_is_husk_guest());
	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		static struct child_msg m;
		child_out = &m;
		dup2(p[1], 2);
		child_poweroff(NULL);
		_exit(99);
	}
	close(p[1]);
	char out[1024];
	size_t len = 0;
	ssize_t n;
	while ((n = read(p[0], out + len, sizeof(out) - 1 - len)) > 0)
		len += (size_t)n;
	out[len] = '\0';
	close(p[0]);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 1);
	assert_non_null(strstr(out, "powering off: unit test"));
	assert_non_null(strstr(out, "not PID 1 of a husk guest"));
}

/* PID 1 of a new PID namespace (and, should anything go wrong, in its own
 * mount namespace so that no mount of ours could be detached): the host's
 * /proc/cmdline has no husk.* key, so it must still just exit. */
static int child_pid1(void *p)
{
	(void)p;
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return cfail("make / private: %s", strerror(errno));
	pid_t pid = fork(); /* the first child of the new namespace is PID 1 */
	if (pid < 0)
		return cfail("fork: %s", strerror(errno));
	if (pid == 0) {
		if (getpid() != 1)
			_exit(3);
		init_poweroff("pid1 unit test");
	}
	int status;
	if (waitpid(pid, &status, 0) != pid)
		return cfail("waitpid: %s", strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 1)
		return cfail("PID 1 child ended with status 0x%x, expected exit 1",
			     (unsigned)status);
	return 0;
}

static void test_poweroff_as_pid1_of_a_namespace(void **state)
{
	(void)state;
	if (!is_root())
		skip();
	char buf[INIT_CMDLINE_MAX];
	assert_int_equal(init_read_cmdline(buf, sizeof(buf), NULL), 0);
	if (init_cmdline_is_husk(buf))
		skip(); /* running inside a husk guest: do not try this here */
	in_child(child_pid1, NULL, CLONE_NEWPID | CLONE_NEWNS);
}

/* ---- mounts ---------------------------------------------------------------------------- */

static const char *mount_root;

static int check_mount(const char *rel, unsigned long magic, unsigned long vflags,
		       mode_t mode)
{
	char path[512];
	snprintf(path, sizeof(path), "%s%s", mount_root, rel);
	struct statfs sfs;
	struct statvfs svfs;
	struct stat st;
	if (statfs(path, &sfs) < 0 || statvfs(path, &svfs) < 0 || stat(path, &st) < 0)
		return cfail("%s: %s", path, strerror(errno));
	if ((unsigned long)sfs.f_type != magic)
		return cfail("%s: type 0x%lx, expected 0x%lx", path, (unsigned long)sfs.f_type,
			     magic);
	if ((svfs.f_flag & vflags) != vflags)
		return cfail("%s: flags 0x%lx lack 0x%lx", path, (unsigned long)svfs.f_flag,
			     vflags);
	if (mode && (st.st_mode & 07777) != mode)
		return cfail("%s: mode %o, expected %o", path, st.st_mode & 07777, mode);
	return 0;
}

static int count_mounts_under(const char *root)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return -1;
	char line[4096];
	int n = 0;
	size_t rl = strlen(root);
	while (fgets(line, sizeof(line), f)) {
		char mp[4096];
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) == 1 && strncmp(mp, root, rl) == 0)
			n++;
	}
	fclose(f);
	return n;
}

static int check_link(const char *rel, const char *target)
{
	char path[512], buf[256];
	snprintf(path, sizeof(path), "%s%s", mount_root, rel);
	ssize_t n = readlink(path, buf, sizeof(buf) - 1);
	if (n < 0)
		return cfail("readlink %s: %s", path, strerror(errno));
	buf[n] = '\0';
	if (strcmp(buf, target) != 0)
		return cfail("%s -> %s, expected %s", path, buf, target);
	return 0;
}

static int child_mounts(void *p)
{
	(void)p;
	/* Nothing may propagate back to the host's namespace. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return cfail("make / private: %s", strerror(errno));
	/* A tmpfs stands in for the initramfs. */
	if (mount("tmpfs", mount_root, "tmpfs", 0, "mode=0755") < 0)
		return cfail("tmpfs on %s: %s", mount_root, strerror(errno));
	struct husk_err err = { 0 };
	/* The early part alone: /proc, /sys and /dev on the stand-in root,
	 * nothing else yet. */
	if (init_mount_basics_at(mount_root, INIT_MOUNT_EARLY, &err) < 0)
		return cfail("early part: %s", err.msg);
	int early = count_mounts_under(mount_root);
	if (early != 4)
		return cfail("early part: %d mounts under %s, expected 4", early, mount_root);
	if (check_mount("/proc", 0x9fa0, ST_NOSUID | ST_NODEV | ST_NOEXEC, 0) ||
	    check_mount("/sys", 0x62656572, ST_NOSUID | ST_NODEV | ST_NOEXEC, 0))
		return 1;
	/* Then the rest. */
	if (init_mount_basics_at(mount_root, INIT_MOUNT_REST, &err) < 0) {
		if (strstr(err.msg, "cgroup2") && (err.code == -ENODEV || err.code == -EPERM))
			return CHILD_SKIP;
		return cfail("%s", err.msg);
	}
	int r = check_mount("/proc", 0x9fa0, ST_NOSUID | ST_NODEV | ST_NOEXEC, 0) ||
		check_mount("/sys", 0x62656572, ST_NOSUID | ST_NODEV | ST_NOEXEC, 0) ||
		check_mount("/dev/pts", 0x1cd1, ST_NOSUID | ST_NOEXEC, 0755) ||
		check_mount("/dev/shm", 0x01021994, ST_NOSUID | ST_NODEV, 01777) ||
		check_mount("/run", 0x01021994, ST_NOSUID | ST_NODEV, 0755) ||
		check_mount("/tmp", 0x01021994, ST_NOSUID | ST_NODEV, 01777) ||
		check_mount("/sys/fs/cgroup", 0x63677270, ST_NOSUID | ST_NODEV | ST_NOEXEC, 0) ||
		check_link("/dev/fd", "/proc/self/fd") ||
		check_link("/dev/stdin", "/proc/self/fd/0") ||
		check_link("/dev/stdout", "/proc/self/fd/1") ||
		check_link("/dev/stderr", "/proc/self/fd/2");
	if (r)
		return r;
	/* devtmpfs: tmpfs-backed (or ramfs), nosuid, with the kernel's nodes. */
	char path[512];
	struct stat st;
	snprintf(path, sizeof(path), "%s/dev/null", mount_root);
	if (stat(path, &st) < 0 || !S_ISCHR(st.st_mode))
		return cfail("%s: not a character device", path);
	snprintf(path, sizeof(path), "%s/dev/pts/ptmx", mount_root);
	if (stat(path, &st) < 0 || (st.st_mode & 0777) != 0666)
		return cfail("%s: missing or mode %o (ptmxmode=0666)", path, st.st_mode & 0777);
	snprintf(path, sizeof(path), "%s/proc/self", mount_root);
	if (stat(path, &st) < 0)
		return cfail("%s: %s", path, strerror(errno));

	/* Idempotent: a second call mounts nothing more. */
	int before = count_mounts_under(mount_root);
	if (init_mount_basics_at(mount_root, INIT_MOUNT_ALL, &err) < 0)
		return cfail("second call: %s", err.msg);
	int after = count_mounts_under(mount_root);
	if (before != after || before < 9)
		return cfail("mounts under %s: %d then %d", mount_root, before, after);
	return 0;
}

static void test_mount_basics(void **state)
{
	(void)state;
	if (!is_root())
		skip();
	char root[] = "/tmp/husk-mounts-XXXXXX";
	assert_non_null(mkdtemp(root));
	mount_root = root;
	struct stat dev_before, dev_after;
	assert_int_equal(stat("/dev", &dev_before), 0);
	struct child_msg m;
	int rc = run_child(child_mounts, NULL, CLONE_NEWNS | CLONE_NEWCGROUP, &m);
	/* The namespace died with the child: nothing is mounted here, and
	 * the directory goes whatever the outcome. */
	int left = count_mounts_under(root);
	int rm = rmdir(root);
	if (rc != 0 && rc != CHILD_SKIP)
		fail_msg("child failed (%d): %s", rc, m.text);
	assert_int_equal(left, 0);
	assert_int_equal(rm, 0);
	assert_int_equal(stat("/dev", &dev_after), 0);
	assert_int_equal(dev_before.st_mode, dev_after.st_mode);
	if (rc == CHILD_SKIP)
		skip();
}

/* ---- cgroup controllers on a fake directory ------------------------------------------- */

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "we");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void test_cgroup_controllers(void **state)
{
	(void)state;
	char dir[] = "/tmp/husk-cg-XXXXXX", path[256], buf[256];
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/cgroup.controllers", dir);
	write_file(path, "cpuset cpu io memory pids\n");
	snprintf(path, sizeof(path), "%s/cgroup.subtree_control", dir);
	write_file(path, "");
	struct husk_err err = { 0 };
	assert_int_equal(init_cgroup_enable_controllers(dir, &err), 0);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	assert_true(n > 0);
	buf[n] = '\0';
	/* One write each, in order (a plain file just appends them). */
	assert_string_equal(buf, "+cpuset+cpu+io+memory+pids");

	/* Every write refused (/dev/full): warnings, counted, not fatal. */
	unlink(path);
	assert_int_equal(symlink("/dev/full", path), 0);
	struct sink_rec s = { 0 };
	init_log_set_sink(sink, &s);
	init_log_set_stderr(false);
	assert_int_equal(init_cgroup_enable_controllers(dir, &err), 5);
	init_log_set_stderr(true);
	init_log_set_sink(NULL, NULL);
	assert_int_equal(s.calls, 5);
	assert_int_equal(s.level, INIT_LOG_WARNING);
	assert_non_null(strstr(s.line, "pids"));

	/* No cgroup.controllers: an error naming the file. */
	unlink(path);
	snprintf(path, sizeof(path), "%s/cgroup.controllers", dir);
	unlink(path);
	assert_int_equal(init_cgroup_enable_controllers(dir, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "cgroup.controllers"));
	assert_int_equal(rmdir(dir), 0);
}

/* ---- kmod --------------------------------------------------------------------------------- */

static char probed[16][64];
static int n_probed;

static void record_probe(struct kmod_module *m, bool install, const char *options)
{
	(void)install, (void)options;
	if (n_probed < 16)
		snprintf(probed[n_probed++], sizeof(probed[0]), "%s", kmod_module_get_name(m));
}

#define FAKE_RELEASE "9.9.9-husk-fake"
static char kmod_root[32];

static void test_kmod_dependency_order(void **state)
{
	(void)state;
	struct husk_err err = { 0 };
	/* Nothing asked, nothing done, wherever the tree is. */
	assert_int_equal(init_load_modules(NULL, 0, &err), 0);
	assert_int_equal(init_load_modules_at("/nonexistent", NULL, 0, 0, NULL, &err), 0);
	/* No tree: only modules already in the kernel are fine. */
	const char *missing[] = { "husk_no_such_module" };
	assert_int_equal(init_load_modules_at("/nonexistent", missing, 1, KMOD_PROBE_DRY_RUN,
					      record_probe, &err),
			 -ENOENT);
	assert_non_null(strstr(err.msg, "husk_no_such_module"));

	if (access("tests/initramfs/fake-modules.sh", X_OK) < 0 ||
	    system("command -v depmod >/dev/null") != 0)
		skip(); /* run from the repository root, with kmod installed */
	char *root = kmod_root, dir[256];
	strcpy(root, "/tmp/husk-kmod-XXXXXX");
	assert_non_null(mkdtemp(root));
	/* The fake tree, then indexed by depmod as initramfs/build.sh does. */
	assert_int_equal(setenv("R", root, 1), 0);
	assert_int_equal(setenv("REL", FAKE_RELEASE, 1), 0);
	static const char make_tree[] =
		"set -e; tests/initramfs/fake-modules.sh \"$R/src\" \"$REL\"; "
		"s=$R/src/lib/modules/$REL/kernel d=$R/idx/lib/modules/$REL; mkdir -p \"$d\"; "
		"cp \"$s/drivers/a/mod_a.ko\" \"$s/net/d/mod_d.ko\" \"$d/\"; "
		"xz -dc \"$s/drivers/b/mod_b.ko.xz\" >\"$d/mod_b.ko\"; "
		"zstd -dcq \"$s/fs/c/mod_c.ko.zst\" >\"$d/mod_c.ko\"; "
		"depmod -b \"$R/idx\" \"$REL\" 2>/dev/null";
	assert_int_equal(system(make_tree), 0);
	snprintf(dir, sizeof(dir), "%s/idx/lib/modules/" FAKE_RELEASE, root);

	n_probed = 0;
	const char *names[] = { "mod-a" }; /* '-' and '_' alike */
	assert_int_equal(init_load_modules_at(dir, names, 1, KMOD_PROBE_DRY_RUN, record_probe,
					      &err),
			 0);
	assert_int_equal(n_probed, 3);
	assert_string_equal(probed[0], "mod_c");
	assert_string_equal(probed[1], "mod_b");
	assert_string_equal(probed[2], "mod_a");

	/* Several, in order; a module already seen is probed again (dry run
	 * cannot know it would be live). */
	n_probed = 0;
	const char *two[] = { "mod_d", "mod_c" };
	assert_int_equal(init_load_modules_at(dir, two, 2, KMOD_PROBE_DRY_RUN, record_probe,
					      &err),
			 0);
	assert_int_equal(n_probed, 2);
	assert_string_equal(probed[0], "mod_d");
	assert_string_equal(probed[1], "mod_c");

	/* The first unknown name stops the run and is named. */
	n_probed = 0;
	const char *bad[] = { "mod_d", "mod_zzz", "mod_a" };
	assert_int_equal(init_load_modules_at(dir, bad, 3, KMOD_PROBE_DRY_RUN, record_probe,
					      &err),
			 -ENOENT);
	assert_non_null(strstr(err.msg, "mod_zzz"));
	assert_non_null(strstr(err.msg, dir));
	assert_int_equal(n_probed, 1);

}

/* Removes the fake tree whatever the test's outcome. */
static int kmod_teardown(void **state)
{
	(void)state;
	if (kmod_root[0] && strcmp(kmod_root, "/tmp/husk-kmod-XXXXXX") != 0) {
		setenv("R", kmod_root, 1);
		if (system("rm -rf \"$R\"") != 0)
			return -1;
	}
	kmod_root[0] = '\0';
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_log_levels_and_sink),
		cmocka_unit_test(test_console_attach),
		cmocka_unit_test(test_loopback_up),
		cmocka_unit_test(test_hostname),
		cmocka_unit_test(test_entropy),
		cmocka_unit_test(test_entropy_needs_privilege),
		cmocka_unit_test(test_poweroff_outside_guest_exits),
		cmocka_unit_test(test_poweroff_as_pid1_of_a_namespace),
		cmocka_unit_test(test_mount_basics),
		cmocka_unit_test(test_cgroup_controllers),
		cmocka_unit_test_teardown(test_kmod_dependency_order, kmod_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
