/* libcommon's helpers that every side links: sizes (husk/size.h), files
 * (husk/file.h) and the monotonic clock (husk/time.h).
 *
 * The binary is linked with -Wl,--wrap=write: libcommon's write(2) calls
 * come through wrap_write below, which passes them on unless a test has
 * scripted what the next calls return (EINTR, a short count, 0). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "husk/cleanup.h"
#include "husk/file.h"
#include "husk/size.h"
#include "husk/time.h"

/* ---- sizes ------------------------------------------------------------------------------ */

static void test_size_accepted(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		uint64_t v;
	} ok[] = {
		{ "0", 0 },
		{ "1", 1 },
		{ "1048576", 1048576 },
		{ "512B", 512 },
		{ "512b", 512 },
		/* Every suffix, either case, with "i", "iB", "B" after it. */
		{ "1K", 1024 },
		{ "1k", 1024 },
		{ "1Ki", 1024 },
		{ "1KiB", 1024 },
		{ "1kib", 1024 },
		{ "1KB", 1024 },
		{ "1kb", 1024 },
		{ "2M", 2u << 20 },
		{ "2m", 2u << 20 },
		{ "1Mi", 1048576 },
		{ "2MiB", 2u << 20 },
		{ "64MB", 64u << 20 },
		{ "512M", 512u << 20 },
		{ "10G", 10ull << 30 },
		{ "2g", 2ull << 30 },
		{ "1Gi", 1073741824 },
		{ "2GiB", 2ull << 30 },
		{ "3GB", 3ull << 30 },
		{ "1T", 1ull << 40 },
		{ "3t", 3ull << 40 },
		{ "1TiB", 1ull << 40 },
		/* Leading zeros are digits like any other. */
		{ "007", 7 },
		{ "017179869183G", UINT64_C(17179869183) << 30 },
		/* The largest values that fit. */
		{ "16777215T", UINT64_C(16777215) << 40 },
		{ "18446744073709551615", UINT64_MAX },
	};
	for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
		uint64_t v = 1234;
		struct husk_err err = { 0 };
		if (husk_parse_size(ok[i].s, &v, &err) != 0)
			fail_msg("\"%s\": %s", ok[i].s, err.msg);
		if (v != ok[i].v)
			fail_msg("\"%s\": %llu, wanted %llu", ok[i].s, (unsigned long long)v,
				 (unsigned long long)ok[i].v);
		assert_int_equal(err.code, 0);
	}
}

static void test_size_refused(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		int code;
		const char *needle;
	} bad[] = {
		{ "", -EINVAL, "size \"\": want a number" },
		{ "G", -EINVAL, "size \"G\"" },
		{ "M", -EINVAL, "size \"M\"" },
		{ "B", -EINVAL, "size \"B\"" },
		{ "-1", -EINVAL, "size \"-1\"" },
		{ "+1", -EINVAL, "size \"+1\"" },
		{ " 1", -EINVAL, "size \" 1\"" },
		{ "1 ", -EINVAL, "unknown suffix \" \"" },
		{ "0x10", -EINVAL, "unknown suffix \"x10\"" },
		{ "1.5G", -EINVAL, "unknown suffix \".5G\"" },
		{ "10 G", -EINVAL, "unknown suffix \" G\"" },
		{ "12Q", -EINVAL, "unknown suffix \"Q\"" },
		{ "10X", -EINVAL, "unknown suffix \"X\"" },
		{ "12KQ", -EINVAL, "unknown suffix \"KQ\"" },
		{ "1E", -EINVAL, "unknown suffix \"E\"" },  /* no exbibytes */
		{ "1P", -EINVAL, "unknown suffix \"P\"" },  /* nor pebibytes */
		{ "1iB", -EINVAL, "unknown suffix \"iB\"" }, /* "i" only after a suffix */
		{ "1KI", -EINVAL, "unknown suffix \"KI\"" }, /* "i" is lower case */
		{ "1KiBB", -EINVAL, "unknown suffix \"KiBB\"" },
		{ "10GiBs", -EINVAL, "unknown suffix \"GiBs\"" },
		{ "1Mib2", -EINVAL, "unknown suffix \"Mib2\"" },
		{ "5bb", -EINVAL, "unknown suffix \"bb\"" },
		{ "18446744073709551616", -ERANGE, "more than 18446744073709551615 bytes" },
		{ "99999999999999999999", -ERANGE, "size \"99999999999999999999\"" },
		{ "99999999999999999999999", -ERANGE, "more than" },
		{ "16777216T", -ERANGE, "size \"16777216T\"" },
		{ "17179869184G", -ERANGE, "size \"17179869184G\"" },
		{ "18014398509481984K", -ERANGE, "more than" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		uint64_t v = 42;
		struct husk_err err = { 0 };
		int r = husk_parse_size(bad[i].s, &v, &err);
		if (r != bad[i].code || !strstr(err.msg, bad[i].needle))
			fail_msg("\"%s\": %d \"%s\", wanted %d \"%s\"", bad[i].s, r, err.msg,
				 bad[i].code, bad[i].needle);
		assert_int_equal(err.code, r);
		/* Every message quotes what it was given. */
		char quoted[64];
		snprintf(quoted, sizeof(quoted), "\"%s\"", bad[i].s);
		assert_non_null(strstr(err.msg, quoted));
		assert_true(v == 42); /* untouched on failure */
	}
	uint64_t v = 42;
	assert_int_equal(husk_parse_size(NULL, &v, NULL), -EINVAL);
	assert_int_equal(husk_parse_size("1Z", &v, NULL), -EINVAL);
	assert_true(v == 42);
}

/* ---- files: a scratch directory per test -------------------------------------------------- */

struct dir {
	char path[64];
};

static int dir_setup(void **state)
{
	struct dir *d = calloc(1, sizeof(*d));
	if (!d)
		return -1;
	snprintf(d->path, sizeof(d->path), "/tmp/husk-common-XXXXXX");
	if (!mkdtemp(d->path)) {
		free(d);
		return -1;
	}
	*state = d;
	return 0;
}

static int dir_teardown(void **state)
{
	struct dir *d = *state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d->path);
	int r = system(cmd);
	free(d);
	return r == 0 ? 0 : -1;
}

static void put(const char *path, const void *data, size_t len)
{
	_cleanup_fd_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
}

static char *at(const struct dir *d, const char *rel, char *buf, size_t size)
{
	snprintf(buf, size, "%s/%s", d->path, rel);
	return buf;
}

/* ---- husk_read_file ----------------------------------------------------------------------- */

static void test_read_file_whole(void **state)
{
	struct dir *d = *state;
	char p[PATH_MAX];
	struct husk_err err = { 0 };
	char *buf = NULL;
	size_t len = 99;

	/* Empty: a buffer holding only the NUL. */
	put(at(d, "empty", p, sizeof(p)), "", 0);
	assert_int_equal(husk_read_file(p, 16, &buf, &len, &err), 0);
	assert_int_equal(len, 0);
	assert_string_equal(buf, "");
	free(buf);

	/* NULs inside are data: len says how much. */
	put(at(d, "nul", p, sizeof(p)), "a\0b", 3);
	assert_int_equal(husk_read_file(p, 16, &buf, &len, &err), 0);
	assert_int_equal(len, 3);
	assert_memory_equal(buf, "a\0b", 4);
	free(buf);

	/* Larger than the first allocation, and exactly the limit. */
	size_t big = 3 * 4096 + 17;
	char *data = malloc(big);
	assert_non_null(data);
	for (size_t i = 0; i < big; i++)
		data[i] = (char)('a' + i % 26);
	put(at(d, "big", p, sizeof(p)), data, big);
	assert_int_equal(husk_read_file(p, big, &buf, &len, &err), 0);
	assert_int_equal(len, big);
	assert_memory_equal(buf, data, big);
	assert_int_equal(buf[big], '\0');
	free(buf);
	/* len may be left out. */
	assert_int_equal(husk_read_file(p, SIZE_MAX, &buf, NULL, NULL), 0);
	assert_memory_equal(buf, data, big);
	free(buf);
	free(data);

	/* A generated file: st_size 0, but there is data. */
	assert_int_equal(husk_read_file("/proc/self/status", 1 << 20, &buf, &len, &err), 0);
	assert_true(len > 0);
	assert_non_null(strstr(buf, "Pid:"));
	free(buf);

	/* _at: relative to a directory fd. */
	_cleanup_fd_ int dfd = open(d->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(dfd >= 0);
	put(at(d, "rel", p, sizeof(p)), "relative\n", 9);
	assert_int_equal(husk_read_file_at(dfd, "rel", 64, &buf, &len, &err), 0);
	assert_string_equal(buf, "relative\n");
	free(buf);
}

static void test_read_file_limits(void **state)
{
	struct dir *d = *state;
	char p[PATH_MAX];
	struct husk_err err = { 0 };
	char *buf = (char *)1;
	size_t len = 99;

	/* One byte over: refused by its size, naming the path and the limit. */
	put(at(d, "eleven", p, sizeof(p)), "0123456789x", 11);
	assert_int_equal(husk_read_file(p, 10, &buf, &len, &err), -EFBIG);
	assert_null(buf);
	assert_int_equal(len, 0);
	assert_int_equal(err.code, -EFBIG);
	assert_non_null(strstr(err.msg, p));
	assert_non_null(strstr(err.msg, "11 bytes is more than the 10 bytes limit"));
	/* Limits in whole MiB are written so. */
	assert_int_equal(husk_read_file(p, 0, &buf, &len, &err), -EFBIG);
	assert_non_null(strstr(err.msg, "the 0 bytes limit"));
	char *mib = calloc(1, (1 << 20) + 1);
	assert_non_null(mib);
	put(at(d, "mib", p, sizeof(p)), mib, (1 << 20) + 1);
	free(mib);
	assert_int_equal(husk_read_file(p, 1 << 20, &buf, &len, &err), -EFBIG);
	assert_non_null(strstr(err.msg, "1048577 bytes is more than the 1 MiB limit"));

	/* Exactly the limit is fine; a limit of 0 takes an empty file. */
	put(at(d, "ten", p, sizeof(p)), "0123456789", 10);
	assert_int_equal(husk_read_file(p, 10, &buf, &len, &err), 0);
	assert_string_equal(buf, "0123456789");
	free(buf);
	put(at(d, "none", p, sizeof(p)), "", 0);
	assert_int_equal(husk_read_file(p, 0, &buf, &len, &err), 0);
	assert_int_equal(len, 0);
	free(buf);

	/* Without a size to go by (a pipe, as husk-jail exec --process -):
	 * refused once more than the limit has come. */
	int fds[2];
	assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
	char chunk[5000];
	memset(chunk, 'p', sizeof(chunk));
	assert_int_equal(write(fds[1], chunk, sizeof(chunk)), (ssize_t)sizeof(chunk));
	close(fds[1]);
	assert_int_equal(husk_read_fd(fds[0], "the pipe", 4999, &buf, &len, &err), -EFBIG);
	assert_null(buf);
	assert_string_equal(err.msg, "the pipe: more than the 4999 bytes limit");
	close(fds[0]);
	/* The same pipe within the limit. */
	assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
	assert_int_equal(write(fds[1], chunk, sizeof(chunk)), (ssize_t)sizeof(chunk));
	close(fds[1]);
	assert_int_equal(husk_read_fd(fds[0], "the pipe", 5000, &buf, &len, &err), 0);
	assert_int_equal(len, 5000);
	assert_memory_equal(buf, chunk, 5000);
	free(buf);
	close(fds[0]);
}

static void test_read_file_errors(void **state)
{
	struct dir *d = *state;
	char p[PATH_MAX];
	struct husk_err err = { 0 };
	char *buf = (char *)1;
	size_t len = 99;

	at(d, "missing", p, sizeof(p));
	assert_int_equal(husk_read_file(p, 64, &buf, &len, &err), -ENOENT);
	assert_null(buf);
	assert_int_equal(len, 0);
	char want[PATH_MAX + 64];
	snprintf(want, sizeof(want), "open %s: %s", p, strerror(ENOENT));
	assert_string_equal(err.msg, want);

	/* A directory opens, and fails to read. */
	buf = (char *)1;
	assert_int_equal(husk_read_file(d->path, 64, &buf, &len, &err), -EISDIR);
	assert_null(buf);
	snprintf(want, sizeof(want), "read %s: %s", d->path, strerror(EISDIR));
	assert_string_equal(err.msg, want);

	/* err may be NULL: the errno still comes back. */
	assert_int_equal(husk_read_file(p, 64, &buf, NULL, NULL), -ENOENT);
	assert_int_equal(husk_read_file_at(-1, "rel", 64, &buf, NULL, NULL), -EBADF);
}

/* ---- husk_write_all ----------------------------------------------------------------------- */

/* What the wrapped write(2) does next: each entry is one call's result
 * (> 0: write at most that many bytes; 0: return 0; < 0: fail with that
 * errno), then calls pass through again. */
static struct {
	int script[8];
	int n, next;
	int calls;
} wr;

ssize_t __real_write(int fd, const void *buf, size_t len);
ssize_t __wrap_write(int fd, const void *buf, size_t len);
ssize_t __wrap_write(int fd, const void *buf, size_t len)
{
	wr.calls++;
	if (wr.next >= wr.n)
		return __real_write(fd, buf, len);
	int step = wr.script[wr.next++];
	if (step < 0) {
		errno = -step;
		return -1;
	}
	if (step == 0)
		return 0;
	return __real_write(fd, buf, len < (size_t)step ? len : (size_t)step);
}

static void script(int n, ...)
{
	va_list ap;
	va_start(ap, n);
	for (int i = 0; i < n; i++)
		wr.script[i] = va_arg(ap, int);
	va_end(ap);
	wr.n = n;
	wr.next = 0;
	wr.calls = 0;
}

static size_t drain(int fd, char *buf, size_t size)
{
	size_t got = 0;
	ssize_t n;
	while (got < size && (n = read(fd, buf + got, size - got)) > 0)
		got += (size_t)n;
	return got;
}

static void test_write_all_short_and_eintr(void **state)
{
	(void)state;
	int fds[2];
	assert_int_equal(pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
	static const char msg[] = "0123456789abcdef";

	/* EINTR, then a 3-byte write, EINTR again, a 1-byte write, the rest. */
	script(4, -EINTR, 3, -EINTR, 1);
	assert_int_equal(husk_write_all(fds[1], msg, 16), 0);
	assert_int_equal(wr.calls, 5);
	char got[32] = "";
	assert_int_equal(drain(fds[0], got, sizeof(got)), 16);
	assert_memory_equal(got, msg, 16);

	/* One byte at a time. */
	script(8, 1, 1, 1, 1, 1, 1, 1, 1);
	assert_int_equal(husk_write_all(fds[1], msg, 8), 0);
	assert_int_equal(wr.calls, 8);
	assert_int_equal(drain(fds[0], got, sizeof(got)), 8);
	assert_memory_equal(got, msg, 8);

	/* An error ends it; what was written stays written. */
	script(2, 5, -ENOSPC);
	assert_int_equal(husk_write_all(fds[1], msg, 16), -ENOSPC);
	assert_int_equal(wr.calls, 2);
	assert_int_equal(drain(fds[0], got, sizeof(got)), 5);
	assert_memory_equal(got, msg, 5);

	/* write(2) returning 0 is an error here, not a reason to spin. */
	script(1, 0);
	assert_int_equal(husk_write_all(fds[1], msg, 16), -EIO);
	assert_int_equal(wr.calls, 1);

	/* Nothing to write: no call at all. */
	script(0);
	assert_int_equal(husk_write_all(fds[1], msg, 0), 0);
	assert_int_equal(wr.calls, 0);
	close(fds[0]);
	close(fds[1]);
}

struct reader {
	int fd;
	char *buf;
	size_t size, got;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	/* Small reads: the writer's side of the pipe fills up and its
	 * write(2) calls wait and come back with what fitted. */
	ssize_t n;
	while (r->got < r->size &&
	       (n = read(r->fd, r->buf + r->got, r->size - r->got < 1000 ? r->size - r->got : 1000)) > 0)
		r->got += (size_t)n;
	return NULL;
}

static void test_write_all_pipe(void **state)
{
	(void)state;
	int fds[2];
	assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
	size_t size = 1 << 20; /* 16 times the pipe's buffer */
	char *data = malloc(size);
	struct reader r = { .fd = fds[0], .buf = malloc(size), .size = size };
	assert_non_null(data);
	assert_non_null(r.buf);
	for (size_t i = 0; i < size; i++)
		data[i] = (char)(i * 7 + i / 4096);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, reader_main, &r), 0);
	script(0);
	assert_int_equal(husk_write_all(fds[1], data, size), 0);
	close(fds[1]);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(r.got, size);
	assert_memory_equal(r.buf, data, size);
	close(fds[0]);

	/* The reader gone: EPIPE (SIGPIPE ignored, as the agent and the
	 * shim run), not a hang. */
	void (*old)(int) = signal(SIGPIPE, SIG_IGN);
	assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
	close(fds[0]);
	assert_int_equal(husk_write_all(fds[1], data, size), -EPIPE);
	close(fds[1]);
	signal(SIGPIPE, old);

	/* Nonblocking and full: -EAGAIN comes back, it is not waited out. */
	assert_int_equal(pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
	assert_int_equal(husk_write_all(fds[1], data, size), -EAGAIN);
	close(fds[0]);
	close(fds[1]);
	free(data);
	free(r.buf);
}

/* ---- husk_mkdir_p ------------------------------------------------------------------------- */

static void assert_dir(const char *path, mode_t mode)
{
	struct stat st;
	if (stat(path, &st) < 0)
		fail_msg("%s: %s", path, strerror(errno));
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 07777, mode);
}

static void test_mkdir_p(void **state)
{
	struct dir *d = *state;
	char p[PATH_MAX], q[PATH_MAX];
	struct husk_err err = { 0 };
	mode_t old = umask(0);

	/* Nested, every new component with the mode. */
	assert_int_equal(husk_mkdir_p(at(d, "a/b/c", p, sizeof(p)), 0750, &err), 0);
	assert_dir(at(d, "a", q, sizeof(q)), 0750);
	assert_dir(at(d, "a/b", q, sizeof(q)), 0750);
	assert_dir(p, 0750);
	/* Existing: nothing to do, and existing modes are left alone. */
	assert_int_equal(husk_mkdir_p(p, 0700, &err), 0);
	assert_dir(p, 0750);
	assert_int_equal(husk_mkdir_p(d->path, 0700, &err), 0);
	assert_int_equal(husk_mkdir_p("/", 0700, &err), 0);
	/* Trailing and doubled slashes. */
	assert_int_equal(husk_mkdir_p(at(d, "x//y///", p, sizeof(p)), 0700, &err), 0);
	assert_dir(at(d, "x/y", q, sizeof(q)), 0700);
	/* One level below an existing tree. */
	assert_int_equal(husk_mkdir_p(at(d, "a/b/c/d", p, sizeof(p)), 0711, &err), 0);
	assert_dir(p, 0711);
	/* Relative to the working directory. */
	char cwd[PATH_MAX];
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(d->path), 0);
	assert_int_equal(husk_mkdir_p("rel/one", 0700, &err), 0);
	assert_int_equal(chdir(cwd), 0);
	assert_dir(at(d, "rel/one", q, sizeof(q)), 0700);
	umask(old);
}

static void test_mkdir_p_in_the_way(void **state)
{
	struct dir *d = *state;
	char p[PATH_MAX];
	struct husk_err err = { 0 };

	/* A file where the directory should be. */
	put(at(d, "file", p, sizeof(p)), "x", 1);
	assert_int_equal(husk_mkdir_p(p, 0700, &err), -ENOTDIR);
	assert_int_equal(err.code, -ENOTDIR);
	char want[PATH_MAX + 64];
	snprintf(want, sizeof(want), "mkdir %s: not a directory", p);
	assert_string_equal(err.msg, want);
	/* ... or where a parent should be. */
	at(d, "file/sub/leaf", p, sizeof(p));
	assert_int_equal(husk_mkdir_p(p, 0700, &err), -ENOTDIR);
	snprintf(want, sizeof(want), "mkdir %s/file/sub", d->path);
	assert_non_null(strstr(err.msg, want));
	/* A symlink to a directory is a directory; a dangling one is not. */
	at(d, "link", p, sizeof(p));
	assert_int_equal(symlink(d->path, p), 0);
	assert_int_equal(husk_mkdir_p(p, 0700, &err), 0);
	at(d, "dangling", p, sizeof(p));
	assert_int_equal(symlink("/nonexistent/husk", p), 0);
	assert_int_equal(husk_mkdir_p(p, 0700, &err), -ENOENT);
	assert_non_null(strstr(err.msg, p));

	/* Bad paths. */
	assert_int_equal(husk_mkdir_p("", 0700, &err), -ENOENT);
	assert_string_equal(err.msg, "mkdir: empty path");
	char *longp = malloc(PATH_MAX + 10);
	assert_non_null(longp);
	memset(longp, 'a', PATH_MAX + 9);
	longp[0] = '/';
	longp[PATH_MAX + 9] = '\0';
	assert_int_equal(husk_mkdir_p(longp, 0700, NULL), -ENAMETOOLONG);
	assert_int_equal(husk_mkdir_p(longp, 0700, &err), -ENAMETOOLONG);
	assert_non_null(strstr(err.msg, "path too long"));
	free(longp);

	/* No permission (root has it anyway). */
	if (geteuid() != 0) {
		assert_int_equal(husk_mkdir_p(at(d, "ro", p, sizeof(p)), 0500, &err), 0);
		assert_int_equal(husk_mkdir_p(at(d, "ro/sub", p, sizeof(p)), 0700, &err), -EACCES);
		assert_non_null(strstr(err.msg, p));
		/* An existing directory under it needs no write permission. */
		assert_int_equal(husk_mkdir_p(at(d, "ro", p, sizeof(p)), 0700, &err), 0);
		chmod(p, 0700);
	}
}

/* ---- husk_strv_free ----------------------------------------------------------------------- */

static void test_strv_free(void **state)
{
	(void)state;
	husk_strv_free(NULL);
	husk_strv_free(calloc(1, sizeof(char *)));
	char **v = calloc(4, sizeof(char *));
	assert_non_null(v);
	for (int i = 0; i < 3; i++)
		assert_non_null(v[i] = strdup("x"));
	husk_strv_free(v); /* ASan reports a leak of any of them */
}

/* ---- husk_monotonic_ns -------------------------------------------------------------------- */

static uint64_t mono_now(void)
{
	struct timespec ts;
	assert_int_equal(clock_gettime(CLOCK_MONOTONIC, &ts), 0);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void test_monotonic(void **state)
{
	(void)state;
	/* CLOCK_MONOTONIC itself: within readings taken around it. */
	for (int i = 0; i < 1000; i++) {
		uint64_t lo = mono_now();
		uint64_t t = husk_monotonic_ns();
		uint64_t hi = mono_now();
		assert_true(lo <= t && t <= hi);
	}
	/* Never backwards, and it moves: at least the time slept. */
	uint64_t prev = husk_monotonic_ns();
	for (int i = 0; i < 1000; i++) {
		uint64_t t = husk_monotonic_ns();
		assert_true(t >= prev);
		prev = t;
	}
	struct timespec ms = { .tv_nsec = 1000000 };
	uint64_t t0 = husk_monotonic_ns();
	while (nanosleep(&ms, &ms) < 0 && errno == EINTR)
		;
	assert_true(husk_monotonic_ns() - t0 >= 1000000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_size_accepted),
		cmocka_unit_test(test_size_refused),
		cmocka_unit_test_setup_teardown(test_read_file_whole, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(test_read_file_limits, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(test_read_file_errors, dir_setup, dir_teardown),
		cmocka_unit_test(test_write_all_short_and_eintr),
		cmocka_unit_test(test_write_all_pipe),
		cmocka_unit_test_setup_teardown(test_mkdir_p, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(test_mkdir_p_in_the_way, dir_setup, dir_teardown),
		cmocka_unit_test(test_strv_free),
		cmocka_unit_test(test_monotonic),
	};
	return cmocka_run_group_tests_name("common", tests, NULL, NULL);
}
