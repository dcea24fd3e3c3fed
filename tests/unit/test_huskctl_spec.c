/* Unit tests for huskctl's OCI spec builder (host-connector/huskctl/spec.c)
 * and its run option table (runopts.c).
 *
 * Every produced document is parsed back with json-c and its fields
 * checked; the last tests hand it to libjail's own parser, which is what
 * the guest agent runs, to prove the guest accepts it. User names are
 * resolved in a fake rootfs under a temporary bundle directory, removed by
 * the teardown. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "../../host-connector/huskctl/runopts.h"
#include "../../host-connector/huskctl/runspec.h"
#include "jail/spec.h"

/* ---- helpers ------------------------------------------------------------------ */

#define ARGV(...) ((char *const[]){ __VA_ARGS__ })
#define STRS(...) ((const char *const[]){ __VA_ARGS__, NULL })

/* obj.a.b.c; NULL when any step is absent. */
static struct json_object *jget(struct json_object *o, const char *path)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", path);
	char *save = NULL;
	for (char *k = strtok_r(buf, ".", &save); k && o; k = strtok_r(NULL, ".", &save)) {
		struct json_object *v = NULL;
		if (!json_object_is_type(o, json_type_object) ||
		    !json_object_object_get_ex(o, k, &v))
			return NULL;
		o = v;
	}
	return o;
}

static const char *jstr(struct json_object *o, const char *path)
{
	struct json_object *v = jget(o, path);
	if (!v || !json_object_is_type(v, json_type_string)) {
		print_error("%s is not a string\n", path);
		fail();
	}
	return json_object_get_string(v);
}

static int64_t jint(struct json_object *o, const char *path)
{
	struct json_object *v = jget(o, path);
	if (!v || !json_object_is_type(v, json_type_int)) {
		print_error("%s is not an integer\n", path);
		fail();
	}
	return json_object_get_int64(v);
}

static bool jbool(struct json_object *o, const char *path)
{
	struct json_object *v = jget(o, path);
	if (!v || !json_object_is_type(v, json_type_boolean)) {
		print_error("%s is not a boolean\n", path);
		fail();
	}
	return json_object_get_boolean(v);
}

/* The array at `path` holds exactly the strings `want` (NULL-terminated). */
static void assert_strv(struct json_object *o, const char *path, const char *const *want)
{
	struct json_object *a = jget(o, path);
	if (!a || !json_object_is_type(a, json_type_array)) {
		print_error("%s is not an array\n", path);
		fail();
	}
	size_t n = 0;
	while (want[n])
		n++;
	if (json_object_array_length(a) != n)
		print_error("%s: %s\n", path, json_object_to_json_string(a));
	assert_int_equal(json_object_array_length(a), n);
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(a, i);
		assert_true(json_object_is_type(e, json_type_string));
		assert_string_equal(json_object_get_string(e), want[i]);
	}
}

/* The integer array at `path` holds exactly `want[0..n)`; absent when n == 0. */
static void assert_gids(struct json_object *o, const char *path, const int64_t *want, size_t n)
{
	struct json_object *a = jget(o, path);
	if (n == 0) {
		assert_null(a);
		return;
	}
	assert_non_null(a);
	assert_int_equal(json_object_array_length(a), n);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(json_object_get_int64(json_object_array_get_idx(a, i)), want[i]);
}

static size_t count_env(struct json_object *proc, const char *key)
{
	struct json_object *env = jget(proc, "env");
	size_t n = 0, kl = strlen(key);
	for (size_t i = 0; env && i < json_object_array_length(env); i++) {
		const char *e = json_object_get_string(json_object_array_get_idx(env, i));
		if (!strncmp(e, key, kl) && e[kl] == '=')
			n++;
	}
	return n;
}

static void assert_msg_has(const char *msg, const char *const *needles)
{
	for (const char *const *n = needles; *n; n++) {
		if (!strstr(msg, *n)) {
			print_error("message \"%s\" lacks \"%s\"\n", msg, *n);
			fail();
		}
	}
}

/* Builds with `o` (the whole spec, or the process only) and parses the
 * result back; the caller puts the returned object. */
static struct json_object *build(const struct huskctl_spec_opts *o, bool process_only)
{
	char *json = NULL;
	struct husk_err err = { 0 };
	int r = process_only ? huskctl_process_build(o, &json, &err) :
			       huskctl_spec_build(o, &json, &err);
	if (r != 0)
		print_error("unexpected failure %d: %s\n", r, err.msg);
	assert_int_equal(r, 0);
	assert_non_null(json);
	struct json_object *obj = json_tokener_parse(json);
	assert_non_null(obj);
	free(json);
	return obj;
}
#define BUILD(...) build(&(struct huskctl_spec_opts){ __VA_ARGS__ }, false)
#define BUILD_PROCESS(...) build(&(struct huskctl_spec_opts){ __VA_ARGS__ }, true)

/* Both builders must refuse `o` with `code`, leave *json NULL and say every
 * needle. */
static void expect_fail_v(const struct huskctl_spec_opts *o, int code, const char *const *needles)
{
	for (int process_only = 0; process_only < 2; process_only++) {
		char *json = (char *)&json; /* must be reset */
		struct husk_err err = { 0 };
		int r = process_only ? huskctl_process_build(o, &json, &err) :
				       huskctl_spec_build(o, &json, &err);
		assert_int_equal(r, code);
		assert_null(json);
		assert_int_equal(err.code, r);
		assert_msg_has(err.msg, needles);
	}
}
#define EXPECT_FAIL(opts, code, ...) expect_fail_v((opts), (code), STRS(__VA_ARGS__))

static void expect_spec_fail_v(const struct huskctl_spec_opts *o, int code,
			       const char *const *needles)
{
	char *json = (char *)&json;
	struct husk_err err = { 0 };
	int r = huskctl_spec_build(o, &json, &err);
	assert_int_equal(r, code);
	assert_null(json);
	assert_int_equal(err.code, r);
	assert_msg_has(err.msg, needles);
}
#define EXPECT_SPEC_FAIL(opts, code, ...) expect_spec_fail_v((opts), (code), STRS(__VA_ARGS__))

/* ---- the fake bundle -------------------------------------------------------------- */

struct bundle {
	char dir[64];	     /* the bundle: config.json goes here */
	char rootfs[96];     /* <dir>/rootfs */
	char bare[96];	     /* <dir>/bare: a rootfs without etc/ */
};

static void write_file(const char *dir, const char *rel, const char *content)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	FILE *f = fopen(path, "we");
	assert_non_null(f);
	assert_int_equal(fputs(content, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static void mkdir_in(const char *dir, const char *rel)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	assert_int_equal(mkdir(path, 0755), 0);
}

static const char passwd[] = "root:x:0:0:root:/root:/bin/sh\n"
			     "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
			     "alice:x:1000:1000:Alice:/home/alice:/bin/sh\n"
			     "bob:x:1001:1001::/home/bob:/bin/sh\n"
			     "nogroups:x:1002:1002::/:/bin/sh\n"
			     "huge:x:3000000000:0::/:/bin/sh\n"
			     "alice:x:2000:2000:second alice, ignored:/:/bin/sh\n";

/* Group 10 lists alice twice and group 20 repeats gid 10: both count once. */
static const char group[] = "root:x:0:\n"
			    "daemon:x:1:\n"
			    "wheel:x:10:alice,bob\n"
			    "audio:x:29:carol,alice\n"
			    "video:x:44:carol\n"
			    "alice:x:1000:\n"
			    "bob:x:1001:\n"
			    "wheel2:x:10:alice\n"
			    "big:x:3000000000:alice\n";

static int bundle_setup(void **state)
{
	struct bundle *b = calloc(1, sizeof(*b));
	assert_non_null(b);
	snprintf(b->dir, sizeof(b->dir), "/tmp/huskctl-spec-XXXXXX");
	assert_non_null(mkdtemp(b->dir));
	snprintf(b->rootfs, sizeof(b->rootfs), "%s/rootfs", b->dir);
	snprintf(b->bare, sizeof(b->bare), "%s/bare", b->dir);
	mkdir_in(b->dir, "rootfs");
	mkdir_in(b->dir, "bare");
	mkdir_in(b->rootfs, "etc");
	write_file(b->rootfs, "etc/passwd", passwd);
	write_file(b->rootfs, "etc/group", group);
	*state = b;
	return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static int bundle_teardown(void **state)
{
	struct bundle *b = *state;
	int r = nftw(b->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(b);
	return r;
}

/* ---- defaults ----------------------------------------------------------------------- */

static void test_defaults(void **state)
{
	(void)state;
	struct json_object *s = BUILD(.args = ARGV("sh"), .n_args = 1);

	assert_string_equal(jstr(s, "ociVersion"), "1.0.2");
	assert_string_equal(jstr(s, "root.path"), "rootfs");
	assert_false(jbool(s, "root.readonly"));
	assert_string_equal(jstr(s, "hostname"), "husk");

	assert_false(jbool(s, "process.terminal"));
	assert_strv(s, "process.args", STRS("sh"));
	assert_strv(s, "process.env", STRS("PATH=" HUSKCTL_DEFAULT_PATH));
	assert_string_equal(jstr(s, "process.cwd"), "/");
	assert_int_equal(jint(s, "process.user.uid"), 0);
	assert_int_equal(jint(s, "process.user.gid"), 0);
	assert_null(jget(s, "process.user.additionalGids"));
	assert_true(jbool(s, "process.noNewPrivileges"));

	const char *const *caps = STRS("CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE");
	assert_strv(s, "process.capabilities.bounding", caps);
	assert_strv(s, "process.capabilities.effective", caps);
	assert_strv(s, "process.capabilities.permitted", caps);
	assert_null(jget(s, "process.capabilities.inheritable"));
	assert_null(jget(s, "process.capabilities.ambient"));

	struct json_object *rl = jget(s, "process.rlimits");
	assert_non_null(rl);
	assert_int_equal(json_object_array_length(rl), 1);
	struct json_object *nofile = json_object_array_get_idx(rl, 0);
	assert_string_equal(jstr(nofile, "type"), "RLIMIT_NOFILE");
	assert_int_equal(jint(nofile, "soft"), 1024);
	assert_int_equal(jint(nofile, "hard"), 1024);

	/* Mounts: runc's, in runc's order. */
	const struct {
		const char *dest, *type, *source;
		const char *const *options;
	} mounts[] = {
		{ "/proc", "proc", "proc", NULL },
		{ "/dev", "tmpfs", "tmpfs",
		  STRS("nosuid", "strictatime", "mode=755", "size=65536k") },
		{ "/dev/pts", "devpts", "devpts",
		  STRS("nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5") },
		{ "/dev/shm", "tmpfs", "shm",
		  STRS("nosuid", "noexec", "nodev", "mode=1777", "size=65536k") },
		{ "/dev/mqueue", "mqueue", "mqueue", STRS("nosuid", "noexec", "nodev") },
		{ "/sys", "sysfs", "sysfs", STRS("nosuid", "noexec", "nodev", "ro") },
		{ "/sys/fs/cgroup", "cgroup", "cgroup",
		  STRS("nosuid", "noexec", "nodev", "relatime", "ro") },
	};
	struct json_object *m = jget(s, "mounts");
	assert_non_null(m);
	assert_int_equal(json_object_array_length(m), sizeof(mounts) / sizeof(mounts[0]));
	for (size_t i = 0; i < sizeof(mounts) / sizeof(mounts[0]); i++) {
		struct json_object *e = json_object_array_get_idx(m, i);
		assert_string_equal(jstr(e, "destination"), mounts[i].dest);
		assert_string_equal(jstr(e, "type"), mounts[i].type);
		assert_string_equal(jstr(e, "source"), mounts[i].source);
		if (mounts[i].options)
			assert_strv(e, "options", mounts[i].options);
		else
			assert_null(jget(e, "options"));
	}

	/* No network namespace: the VM is the network boundary. */
	struct json_object *ns = jget(s, "linux.namespaces");
	assert_non_null(ns);
	const char *want_ns[] = { "pid", "ipc", "uts", "mount", "cgroup" };
	assert_int_equal(json_object_array_length(ns), 5);
	for (size_t i = 0; i < 5; i++)
		assert_string_equal(jstr(json_object_array_get_idx(ns, i), "type"), want_ns[i]);
	assert_null(jget(s, "linux.resources"));
	assert_null(jget(s, "linux.cgroupsPath"));
	assert_strv(s, "linux.maskedPaths",
		    STRS("/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
			 "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
			 "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
			 "/sys/devices/virtual/tpm"));
	assert_strv(s, "linux.readonlyPaths",
		    STRS("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"));
	json_object_put(s);
}

/* ---- process fields -------------------------------------------------------------------- */

static void test_args_env_cwd_hostname(void **state)
{
	(void)state;
	/* Arguments with JSON's special characters survive unchanged. */
	char *const args[] = { "/bin/echo", "a b", "quote\"back\\slash", "tab\tnl\n", "é/ü" };
	char *const env[] = { "FOO=bar", "PATH=/opt/bin", "EMPTY=", "EQ=a=b", "FOO=baz" };
	struct json_object *s = BUILD(.args = args, .n_args = 5, .env = env, .n_env = 5,
				      .cwd = "/work dir", .hostname = "box-1");
	assert_strv(s, "process.args",
		    STRS("/bin/echo", "a b", "quote\"back\\slash", "tab\tnl\n", "é/ü"));
	/* PATH replaced in place; the later FOO wins in the earlier's place. */
	assert_strv(s, "process.env", STRS("PATH=/opt/bin", "FOO=baz", "EMPTY=", "EQ=a=b"));
	assert_string_equal(jstr(s, "process.cwd"), "/work dir");
	assert_string_equal(jstr(s, "hostname"), "box-1");
	json_object_put(s);
}

static void test_terminal(void **state)
{
	(void)state;
	struct json_object *s = BUILD(.args = ARGV("sh"), .n_args = 1, .terminal = true);
	assert_true(jbool(s, "process.terminal"));
	assert_strv(s, "process.env", STRS("PATH=" HUSKCTL_DEFAULT_PATH, "TERM=xterm"));
	json_object_put(s);

	/* The caller's TERM replaces the default, once. */
	s = BUILD(.args = ARGV("sh"), .n_args = 1, .terminal = true,
		  .env = ARGV("TERM=vt100", "A=1"), .n_env = 2);
	assert_strv(s, "process.env", STRS("PATH=" HUSKCTL_DEFAULT_PATH, "TERM=vt100", "A=1"));
	assert_int_equal(count_env(jget(s, "process"), "TERM"), 1);
	json_object_put(s);

	/* No terminal, no TERM, unless asked for. */
	s = BUILD(.args = ARGV("sh"), .n_args = 1, .env = ARGV("A=1"), .n_env = 1);
	assert_int_equal(count_env(jget(s, "process"), "TERM"), 0);
	json_object_put(s);
	s = BUILD(.args = ARGV("sh"), .n_args = 1, .env = ARGV("TERM=dumb"), .n_env = 1);
	assert_strv(s, "process.env", STRS("PATH=" HUSKCTL_DEFAULT_PATH, "TERM=dumb"));
	json_object_put(s);
}

static void test_process_only(void **state)
{
	(void)state;
	struct json_object *p = BUILD_PROCESS(.args = ARGV("ls", "-l"), .n_args = 2,
					      .env = ARGV("X=1"), .n_env = 1, .cwd = "/tmp",
					      .user = "7:8", .terminal = true, .hostname = "ignored",
					      .memory_limit = 1 << 20);
	assert_strv(p, "args", STRS("ls", "-l"));
	assert_strv(p, "env", STRS("PATH=" HUSKCTL_DEFAULT_PATH, "TERM=xterm", "X=1"));
	assert_string_equal(jstr(p, "cwd"), "/tmp");
	assert_true(jbool(p, "terminal"));
	assert_int_equal(jint(p, "user.uid"), 7);
	assert_int_equal(jint(p, "user.gid"), 8);
	assert_true(jbool(p, "noNewPrivileges"));
	assert_non_null(jget(p, "capabilities.bounding"));
	/* Just the process: nothing of the container around it. */
	assert_null(jget(p, "ociVersion"));
	assert_null(jget(p, "process"));
	assert_null(jget(p, "hostname"));
	assert_null(jget(p, "linux"));
	json_object_put(p);
}

/* ---- users ------------------------------------------------------------------------------ */

struct user_case {
	const char *user;
	int64_t uid, gid;
	int64_t groups[4];
	size_t n_groups;
};

static void check_user(const char *rootfs, const struct user_case *c)
{
	struct json_object *s = BUILD(.args = ARGV("id"), .n_args = 1, .user = c->user,
				      .rootfs_dir = rootfs);
	if (jint(s, "process.user.uid") != c->uid || jint(s, "process.user.gid") != c->gid)
		print_error("user \"%s\" -> %s\n", c->user,
			    json_object_to_json_string(jget(s, "process.user")));
	assert_int_equal(jint(s, "process.user.uid"), c->uid);
	assert_int_equal(jint(s, "process.user.gid"), c->gid);
	assert_gids(s, "process.user.additionalGids", c->groups, c->n_groups);
	json_object_put(s);
}

static void test_user_numeric(void **state)
{
	(void)state;
	/* No rootfs needed for numbers. */
	static const struct user_case cases[] = {
		{ "0", 0, 0, { 0 }, 0 },
		{ "1000", 1000, 0, { 0 }, 0 },
		{ "1000:1001", 1000, 1001, { 0 }, 0 },
		{ "0:5", 0, 5, { 0 }, 0 },
		{ "2147483647:2147483647", 2147483647, 2147483647, { 0 }, 0 },
		{ "007", 7, 0, { 0 }, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_user(NULL, &cases[i]);
}

static void test_user_by_name(void **state)
{
	struct bundle *b = *state;
	static const struct user_case cases[] = {
		/* name: passwd's uid and gid, groups listing the name, each once */
		{ "alice", 1000, 1000, { 10, 29 }, 2 },
		{ "bob", 1001, 1001, { 10 }, 1 },
		{ "nogroups", 1002, 1002, { 0 }, 0 },
		{ "root", 0, 0, { 0 }, 0 },
		/* a numeric uid with an entry is that user */
		{ "1000", 1000, 1000, { 10, 29 }, 2 },
		/* a numeric uid without one: gid 0, no groups */
		{ "4242", 4242, 0, { 0 }, 0 },
		/* an explicit group replaces the primary one and drops the rest */
		{ "alice:video", 1000, 44, { 0 }, 0 },
		{ "alice:4242", 1000, 4242, { 0 }, 0 },
		{ "1000:wheel", 1000, 10, { 0 }, 0 },
		{ "4242:audio", 4242, 29, { 0 }, 0 },
		{ "1000:1000", 1000, 1000, { 0 }, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_user(b->rootfs, &cases[i]);

	/* Without etc/group a name still resolves, without groups; a numeric
	 * uid needs neither file. */
	static const struct user_case bare_cases[] = {
		{ "4242", 4242, 0, { 0 }, 0 },
		{ "4242:7", 4242, 7, { 0 }, 0 },
	};
	for (size_t i = 0; i < sizeof(bare_cases) / sizeof(bare_cases[0]); i++)
		check_user(b->bare, &bare_cases[i]);
	mkdir_in(b->bare, "etc");
	write_file(b->bare, "etc/passwd", "solo:x:5:6::/:/bin/sh\n");
	static const struct user_case solo = { "solo", 5, 6, { 0 }, 0 };
	check_user(b->bare, &solo);
}

/* An absolute symlink at etc/passwd points into the rootfs, not at the
 * host's file of that name. */
static void test_user_symlinked_files(void **state)
{
	struct bundle *b = *state;
	char path[PATH_MAX];
	mkdir_in(b->bare, "etc");
	mkdir_in(b->bare, "lib");
	write_file(b->bare, "lib/passwd", "zed:x:4321:4322::/:/bin/sh\n");
	write_file(b->bare, "lib/group", "zgrp:x:77:zed\n");
	snprintf(path, sizeof(path), "%s/etc/passwd", b->bare);
	assert_int_equal(symlink("/lib/passwd", path), 0);
	snprintf(path, sizeof(path), "%s/etc/group", b->bare);
	assert_int_equal(symlink("../../../../../lib/group", path), 0);
	static const struct user_case zed = { "zed", 4321, 4322, { 77 }, 1 };
	check_user(b->bare, &zed);

	/* "root" is in the host's /etc/passwd; not in this rootfs. */
	struct huskctl_spec_opts o = { .args = ARGV("id"), .n_args = 1, .user = "root",
				       .rootfs_dir = b->bare };
	snprintf(path, sizeof(path), "%s/etc/passwd", b->bare);
	EXPECT_FAIL(&o, -ENOENT, "user \"root\"", "unknown user name \"root\"", path);
}

static void test_user_errors(void **state)
{
	struct bundle *b = *state;
	char passwd_path[PATH_MAX], group_path[PATH_MAX], bare_passwd[PATH_MAX];
	snprintf(passwd_path, sizeof(passwd_path), "%s/etc/passwd", b->rootfs);
	snprintf(group_path, sizeof(group_path), "%s/etc/group", b->rootfs);
	snprintf(bare_passwd, sizeof(bare_passwd), "%s/etc/passwd", b->bare);
	struct huskctl_spec_opts o = { .args = ARGV("id"), .n_args = 1, .rootfs_dir = b->rootfs };

	o.user = "nosuchuser";
	EXPECT_FAIL(&o, -ENOENT, "user \"nosuchuser\"", "unknown user name", passwd_path);
	o.user = "alice:nosuchgroup";
	EXPECT_FAIL(&o, -ENOENT, "user \"alice:nosuchgroup\"", "unknown group name \"nosuchgroup\"",
		    group_path);
	o.user = "2147483648";
	EXPECT_FAIL(&o, -ERANGE, "user \"2147483648\"", "uid 2147483648 out of range");
	o.user = "99999999999999999999999";
	EXPECT_FAIL(&o, -ERANGE, "out of range");
	o.user = "1:4294967296";
	EXPECT_FAIL(&o, -ERANGE, "user \"1:4294967296\"", "gid 4294967296 out of range");
	/* ids in the rootfs's files are held to the same range */
	o.user = "huge";
	EXPECT_FAIL(&o, -ERANGE, "user \"huge\"", "3000000000", "out of range", passwd_path);
	for (size_t i = 0; i < 5; i++) {
		static const char *const bad[] = { "", ":", "alice:", ":10", "1:2:3" };
		o.user = bad[i];
		EXPECT_FAIL(&o, -EINVAL, "expected uid, uid:gid, name or name:group");
	}

	/* Names need the rootfs. */
	o.rootfs_dir = NULL;
	o.user = "alice";
	EXPECT_FAIL(&o, -EINVAL, "user \"alice\"", "user name \"alice\"", "no rootfs directory");
	o.user = "1000:wheel";
	EXPECT_FAIL(&o, -EINVAL, "group name \"wheel\"", "no rootfs directory");

	/* A rootfs without etc/passwd or etc/group. */
	o.rootfs_dir = b->bare;
	o.user = "alice";
	EXPECT_FAIL(&o, -ENOENT, "unknown user name \"alice\"", bare_passwd, "does not exist");
	o.user = "1:wheel";
	EXPECT_FAIL(&o, -ENOENT, "unknown group name \"wheel\"", "does not exist");

	/* A missing rootfs is not mistaken for a missing file. */
	char gone[PATH_MAX];
	snprintf(gone, sizeof(gone), "%s/gone", b->dir);
	o.rootfs_dir = gone;
	o.user = "1000";
	EXPECT_FAIL(&o, -ENOENT, "user \"1000\"", gone);

	/* A FIFO at etc/passwd is refused, not waited on. */
	mkdir_in(b->bare, "etc");
	assert_int_equal(mkfifo(bare_passwd, 0644), 0);
	o.rootfs_dir = b->bare;
	o.user = "alice";
	EXPECT_FAIL(&o, -EINVAL, bare_passwd, "not a regular file");
}

/* ---- bad input --------------------------------------------------------------------------- */

static void test_bad_process(void **state)
{
	(void)state;
	struct huskctl_spec_opts o = { .args = ARGV("sh"), .n_args = 0 };
	EXPECT_FAIL(&o, -EINVAL, "args", "empty");
	o = (struct huskctl_spec_opts){ .args = NULL, .n_args = 1 };
	EXPECT_FAIL(&o, -EINVAL, "args", "empty");
	o = (struct huskctl_spec_opts){ .args = ARGV("", "x"), .n_args = 2 };
	EXPECT_FAIL(&o, -EINVAL, "args[0]", "program name is empty");
	o = (struct huskctl_spec_opts){ .args = ARGV("sh", NULL), .n_args = 2 };
	EXPECT_FAIL(&o, -EINVAL, "args[1]", "NULL");

	o = (struct huskctl_spec_opts){ .args = ARGV("sh"), .n_args = 1, .cwd = "tmp" };
	EXPECT_FAIL(&o, -EINVAL, "cwd \"tmp\"", "not an absolute path");
	o.cwd = "";
	EXPECT_FAIL(&o, -EINVAL, "cwd \"\"", "not an absolute path");

	o = (struct huskctl_spec_opts){ .args = ARGV("sh"), .n_args = 1,
					.env = ARGV("A=1", "NOEQUALS"), .n_env = 2 };
	EXPECT_FAIL(&o, -EINVAL, "env[1] \"NOEQUALS\"", "KEY=VALUE");
	o.env = ARGV("=value");
	o.n_env = 1;
	EXPECT_FAIL(&o, -EINVAL, "env[0] \"=value\"", "name before '=' is empty");
	o.env = ARGV("");
	EXPECT_FAIL(&o, -EINVAL, "env[0] \"\"", "KEY=VALUE");
	o.env = ARGV("A=1", NULL);
	o.n_env = 2;
	EXPECT_FAIL(&o, -EINVAL, "env[1]", "NULL");

	char *json = (char *)&json;
	struct husk_err err = { 0 };
	assert_int_equal(huskctl_spec_build(NULL, &json, &err), -EINVAL);
	assert_null(json);
	json = (char *)&json;
	assert_int_equal(huskctl_process_build(NULL, &json, NULL), -EINVAL);
	assert_null(json);
}

static void test_bad_spec(void **state)
{
	(void)state;
	struct huskctl_spec_opts o = { .args = ARGV("sh"), .n_args = 1, .hostname = "" };
	EXPECT_SPEC_FAIL(&o, -EINVAL, "hostname \"\"", "1 to 64 bytes");
	o.hostname = "a-host-name-that-is-much-longer-than-sixty-four-bytes-and-so-refused";
	EXPECT_SPEC_FAIL(&o, -EINVAL, "hostname", "got 68");
	o.hostname = NULL;

	o.memory_limit = (uint64_t)INT64_MAX + 1;
	EXPECT_SPEC_FAIL(&o, -ERANGE, "memory limit 9223372036854775808");
	o.memory_limit = 0;
	o.pids_limit = UINT64_MAX;
	EXPECT_SPEC_FAIL(&o, -ERANGE, "pids limit 18446744073709551615");
	o.pids_limit = 0;
	o.cpu_quota_us = 999;
	EXPECT_SPEC_FAIL(&o, -ERANGE, "cpu quota 999 us");
	o.cpu_quota_us = 0;
	o.cpu_period_us = 999;
	EXPECT_SPEC_FAIL(&o, -ERANGE, "cpu period 999 us", "1000 to 1000000");
	o.cpu_period_us = 1000001;
	EXPECT_SPEC_FAIL(&o, -ERANGE, "cpu period 1000001 us");
}

/* ---- resources ----------------------------------------------------------------------------- */

static void test_resources(void **state)
{
	(void)state;
	struct json_object *s = BUILD(.args = ARGV("sh"), .n_args = 1, .memory_limit = 67108864);
	assert_int_equal(jint(s, "linux.resources.memory.limit"), 67108864);
	assert_null(jget(s, "linux.resources.memory.swap"));
	assert_null(jget(s, "linux.resources.cpu"));
	assert_null(jget(s, "linux.resources.pids"));
	assert_null(jget(s, "linux.resources.devices"));
	json_object_put(s);

	s = BUILD(.args = ARGV("sh"), .n_args = 1, .pids_limit = 64);
	assert_int_equal(jint(s, "linux.resources.pids.limit"), 64);
	assert_null(jget(s, "linux.resources.memory"));
	assert_null(jget(s, "linux.resources.cpu"));
	json_object_put(s);

	s = BUILD(.args = ARGV("sh"), .n_args = 1, .cpu_quota_us = 50000);
	assert_int_equal(jint(s, "linux.resources.cpu.quota"), 50000);
	assert_null(jget(s, "linux.resources.cpu.period"));
	json_object_put(s);

	s = BUILD(.args = ARGV("sh"), .n_args = 1, .memory_limit = (uint64_t)INT64_MAX,
		  .pids_limit = 1, .cpu_quota_us = 250000, .cpu_period_us = 100000);
	assert_int_equal(jint(s, "linux.resources.memory.limit"), INT64_MAX);
	assert_int_equal(jint(s, "linux.resources.pids.limit"), 1);
	assert_int_equal(jint(s, "linux.resources.cpu.quota"), 250000);
	assert_int_equal(jint(s, "linux.resources.cpu.period"), 100000);
	json_object_put(s);
}

/* ---- huskctl run's options ------------------------------------------------------------------ */

#define NARGS(a) ((int)(sizeof(a) / sizeof((a)[0])) - 1)

static int parse_run(char **argv, int argc, struct run_opts *o, struct husk_err *err)
{
	*err = (struct husk_err){ 0 };
	return huskctl_run_parse(argc, argv, o, err);
}

static void test_run_options(void **state)
{
	(void)state;
	struct run_opts o;
	struct husk_err err;
	char *ok[] = { "run", "-t", "-i", "-e", "A=1", "-e", "B=2", "-w", "/w", "-u", "1:2", "-n", "nm",
		       "--hostname", "h", "--cpus", "1", "--memory", "128", "--rootfs", "/r",
		       "--limit-memory", "1Gi", "--limit-pids", "7", "--overlay-size", "64M",
		       "--cpu-shares", "512", "--io-weight", "10", "--sysctl", "a.b=1",
		       "--disk", "/d:/t:ro", "--io-max", "254:0:rbps=1M", "--accel", "tcg",
		       "--transport", "hybrid", "--log-level", "7", "--boot-timeout", "5000",
		       "--debug-console", "--agent-log", "--merge-memory", "--tcg-cache", "64", "--",
		       "sh", "-c", "x", NULL };
	if (parse_run(ok, NARGS(ok), &o, &err) < 0)
		fail_msg("%s", err.msg);
	assert_true(o.p.tty && o.p.interactive && o.debug_console && o.agent_log && o.merge_memory);
	assert_int_equal(o.tcg_cache_mib, 64);
	assert_int_equal(o.p.n_env, 2);
	assert_string_equal(o.p.env[1], "B=2");
	assert_string_equal(o.p.cwd, "/w");
	assert_string_equal(o.p.user, "1:2");
	assert_string_equal(o.name, "nm");
	assert_string_equal(o.hostname, "h");
	assert_int_equal(o.cpus, 1);
	assert_int_equal(o.memory_mib, 128);
	assert_string_equal(o.rootfs, "/r");
	assert_true(o.limit_memory == UINT64_C(1) << 30);
	assert_true(o.limit_pids == 7);
	assert_true(o.overlay_bytes == UINT64_C(64) << 20);
	assert_true(o.cpu_shares == 512);
	assert_int_equal(o.io_weight, 10);
	assert_int_equal(o.n_sysctls, 1);
	assert_int_equal(o.n_disks, 1);
	assert_string_equal(o.disks[0], "/d:/t:ro");
	assert_int_equal(o.n_io_limits, 1);
	assert_true(o.io_limits[0].rbps == 1048576);
	assert_int_equal(o.accel, HUSK_ACCEL_TCG);
	assert_int_equal(o.transport, HUSK_TRANSPORT_HYBRID);
	assert_int_equal(o.log_level, 7);
	assert_int_equal(o.boot_timeout_ms, 5000);
	assert_int_equal(o.n_args, 3);
	assert_string_equal(o.args[0], "sh");

	/* Defaults stay 0: the VM's and the agent's own. */
	char *min[] = { "run", "--image", "/i", "true", NULL };
	assert_int_equal(parse_run(min, NARGS(min), &o, &err), 0);
	assert_int_equal(o.cpus, 0);
	assert_int_equal(o.memory_mib, 0);
	assert_true(o.overlay_bytes == 0 && o.limit_pids == 0);
	assert_string_equal(o.image, "/i");
}

/* Issue 14 item 10: a 0 that would silently mean "default" or "none" is
 * refused, naming the option; so is a VM the host cannot hold. */
static void test_run_options_refused(void **state)
{
	(void)state;
	static const char *const zero[] = { "--cpus", "--memory", "--limit-memory", "--limit-pids",
					    "--boot-timeout", "--log-level", "--cpu-quota",
					    "--cpu-period", "--cpu-shares", "--io-weight",
					    "--overlay-size" };
	struct run_opts o;
	struct husk_err err;
	for (size_t i = 0; i < sizeof(zero) / sizeof(zero[0]); i++) {
		char *argv[] = { "run", (char *)zero[i], "0", "--rootfs", "/r", "true", NULL };
		int r = parse_run(argv, 6, &o, &err);
		if (r != -EINVAL || !strstr(err.msg, zero[i]))
			fail_msg("%s 0: %d %s", zero[i], r, err.msg);
	}
	struct husk_host_limits host;
	assert_int_equal(husk_host_limits(&host, &err), 0);
	char mem[32], cpus[32];
	snprintf(mem, sizeof(mem), "%u", host.memory_mib + 1);
	snprintf(cpus, sizeof(cpus), "%u", host.cpus + 1);
	const struct {
		const char *opt, *val, *needle;
	} bad[] = {
		{ "--memory", "12abc", "--memory \"12abc\"" },
		{ "--memory", "32", "want a number from 64" },
		{ "--memory", "9999999", "--memory" },
		{ "--memory", mem, "more than this host's memory" },
		{ "--cpus", cpus, "online CPUs" },
		{ "--cpus", "256", "--cpus" },
		{ "--limit-pids", "-1", "--limit-pids" },
		{ "--limit-memory", "12Q", "--limit-memory: size \"12Q\"" },
		{ "--overlay-size", "1G", "more than the VM's memory (256 MiB)" },
		{ "--transport", "unix", "--transport" },
		{ "--accel", "xen", "--accel" },
		{ "--limit-cpus", "0.001", "--limit-cpus" },
		{ "--sysctl", "novalue", "--sysctl novalue" },
		{ "--io-max", "1:2", "--io-max" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *argv[] = { "run", (char *)bad[i].opt, (char *)bad[i].val, "--rootfs", "/r", "true",
				 NULL };
		int r = parse_run(argv, 6, &o, &err);
		if (r >= 0 || r != err.code || !strstr(err.msg, bad[i].needle))
			fail_msg("%s %s: %d \"%s\", wanted \"%s\"", bad[i].opt, bad[i].val, r, err.msg,
				 bad[i].needle);
	}
	/* What the options mean together. */
	char *both[] = { "run", "--limit-cpus", "1", "--cpu-quota", "5000", "--rootfs", "/r", "true",
			 NULL };
	assert_int_equal(parse_run(both, 8, &o, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "--limit-cpus"));
	char *nocmd[] = { "run", "--rootfs", "/r", NULL };
	assert_int_equal(parse_run(nocmd, 3, &o, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "no command"));
	char *two[] = { "run", "--rootfs", "/r", "--image", "/i", "true", NULL };
	assert_int_equal(parse_run(two, 6, &o, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "--rootfs DIR or --image FILE"));
	/* A larger VM takes a larger layer. */
	char *big[] = { "run", "--memory", "2048", "--overlay-size", "1G", "--rootfs", "/r", "true",
			NULL };
	if (host.memory_mib >= 2048)
		assert_int_equal(parse_run(big, 8, &o, &err), 0);
}

/* ---- what the guest will make of it ----------------------------------------------------------- */

static bool has_cap(uint64_t mask, const char *name)
{
	int n = jail_cap_from_name(name);
	assert_true(n >= 0);
	return (mask >> n) & 1;
}

static void check_jail_spec(const struct jail_spec *s, const char *rootfs)
{
	assert_string_equal(s->oci_version, "1.0.2");
	if (rootfs) {
		char *real = realpath(rootfs, NULL);
		assert_non_null(real);
		assert_string_equal(s->root_path, real);
		free(real);
	} else {
		assert_string_equal(s->root_path, "rootfs");
	}
	assert_false(s->root_readonly);
	assert_string_equal(s->hostname, "guest");
	assert_true(s->has_process);

	const struct jail_process *p = &s->process;
	assert_true(p->terminal);
	assert_int_equal(p->n_args, 3);
	assert_string_equal(p->args[0], "/bin/sh");
	assert_string_equal(p->args[2], "echo \"$HOME\"");
	assert_null(p->args[3]);
	assert_int_equal(p->n_env, 3);
	assert_string_equal(p->env[0], "PATH=" HUSKCTL_DEFAULT_PATH);
	assert_string_equal(p->env[1], "TERM=xterm");
	assert_string_equal(p->env[2], "HOME=/home/alice");
	assert_string_equal(p->cwd, "/home/alice");
	assert_int_equal(p->user.uid, 1000);
	assert_int_equal(p->user.gid, 1000);
	assert_int_equal(p->user.n_additional_gids, 2);
	assert_int_equal(p->user.additional_gids[0], 10);
	assert_int_equal(p->user.additional_gids[1], 29);
	assert_true(p->has_caps);
	const uint64_t *sets[] = { &p->caps.bounding, &p->caps.effective, &p->caps.permitted };
	for (size_t i = 0; i < 3; i++) {
		assert_true(has_cap(*sets[i], "CAP_AUDIT_WRITE"));
		assert_true(has_cap(*sets[i], "CAP_KILL"));
		assert_true(has_cap(*sets[i], "CAP_NET_BIND_SERVICE"));
		assert_false(has_cap(*sets[i], "CAP_SYS_ADMIN"));
	}
	assert_true(p->caps.inheritable == 0);
	assert_true(p->caps.ambient == 0);
	assert_true(p->no_new_privileges);
	assert_int_equal(p->n_rlimits, 1);
	assert_int_equal(p->rlimits[0].resource, RLIMIT_NOFILE);
	assert_true(p->rlimits[0].soft == 1024 && p->rlimits[0].hard == 1024);

	assert_int_equal(s->n_mounts, 7);
	assert_string_equal(s->mounts[2].destination, "/dev/pts");
	assert_string_equal(s->mounts[2].data, "newinstance,ptmxmode=0666,mode=0620,gid=5");
	assert_string_equal(s->mounts[6].destination, "/sys/fs/cgroup");

	assert_int_equal(s->n_namespaces, 5);
	assert_non_null(jail_spec_namespace(s, CLONE_NEWPID));
	assert_non_null(jail_spec_namespace(s, CLONE_NEWIPC));
	assert_non_null(jail_spec_namespace(s, CLONE_NEWUTS));
	assert_non_null(jail_spec_namespace(s, CLONE_NEWNS));
	assert_non_null(jail_spec_namespace(s, CLONE_NEWCGROUP));
	assert_null(jail_spec_namespace(s, CLONE_NEWNET));
	assert_null(jail_spec_namespace(s, CLONE_NEWUSER));

	assert_true(s->has_resources);
	assert_true(s->resources.has_memory_limit);
	assert_true(s->resources.memory_limit == 67108864);
	assert_false(s->resources.has_memory_swap);
	assert_true(s->resources.has_pids_limit);
	assert_true(s->resources.pids_limit == 100);
	assert_true(s->resources.has_cpu_quota && s->resources.cpu_quota == 50000);
	assert_true(s->resources.has_cpu_period && s->resources.cpu_period == 100000);
	assert_int_equal(s->n_masked_paths, 11);
	assert_int_equal(s->n_readonly_paths, 5);
	assert_false(s->has_seccomp);
}

static char *build_guest_spec(const char *rootfs)
{
	struct huskctl_spec_opts o = {
		.args = ARGV("/bin/sh", "-c", "echo \"$HOME\""),
		.n_args = 3,
		.env = ARGV("HOME=/home/alice"),
		.n_env = 1,
		.cwd = "/home/alice",
		.user = "alice",
		.rootfs_dir = rootfs,
		.terminal = true,
		.hostname = "guest",
		.memory_limit = 67108864,
		.pids_limit = 100,
		.cpu_quota_us = 50000,
		.cpu_period_us = 100000,
	};
	char *json = NULL;
	struct husk_err err = { 0 };
	int r = huskctl_spec_build(&o, &json, &err);
	if (r != 0)
		print_error("%s\n", err.msg);
	assert_int_equal(r, 0);
	return json;
}

static void test_libjail_parses_spec(void **state)
{
	struct bundle *b = *state;
	char *json = build_guest_spec(b->rootfs);

	/* In memory, as the agent receives it in CreateSandbox's bundle. */
	struct jail_spec *s = NULL;
	struct husk_err err = { 0 };
	int r = jail_spec_parse(json, strlen(json), NULL, &s, &err);
	if (r != 0)
		print_error("libjail refused the spec: %s\n%s\n", err.msg, json);
	assert_int_equal(r, 0);
	check_jail_spec(s, NULL);
	jail_spec_free(s);

	/* And as a bundle on disk, root.path resolved against it. */
	write_file(b->dir, "config.json", json);
	s = NULL;
	r = jail_spec_load(b->dir, &s, &err);
	if (r != 0)
		print_error("libjail refused the bundle: %s\n", err.msg);
	assert_int_equal(r, 0);
	check_jail_spec(s, b->rootfs);
	jail_spec_free(s);
	free(json);
}

static void test_libjail_parses_process(void **state)
{
	struct bundle *b = *state;
	struct huskctl_spec_opts o = {
		.args = ARGV("ps", "aux"),
		.n_args = 2,
		.user = "bob",
		.rootfs_dir = b->rootfs,
		.cwd = "/srv",
	};
	char *json = NULL;
	struct husk_err err = { 0 };
	assert_int_equal(huskctl_process_build(&o, &json, &err), 0);
	struct jail_process *p = NULL;
	int r = jail_process_parse(json, strlen(json), &p, &err);
	if (r != 0)
		print_error("libjail refused the process: %s\n%s\n", err.msg, json);
	assert_int_equal(r, 0);
	assert_false(p->terminal);
	assert_int_equal(p->n_args, 2);
	assert_string_equal(p->args[1], "aux");
	assert_int_equal(p->n_env, 1);
	assert_string_equal(p->env[0], "PATH=" HUSKCTL_DEFAULT_PATH);
	assert_string_equal(p->cwd, "/srv");
	assert_int_equal(p->user.uid, 1001);
	assert_int_equal(p->user.gid, 1001);
	assert_int_equal(p->user.n_additional_gids, 1);
	assert_int_equal(p->user.additional_gids[0], 10);
	assert_true(p->has_caps && has_cap(p->caps.bounding, "CAP_KILL"));
	assert_true(p->no_new_privileges);
	jail_process_free(p);
	free(json);

	/* The defaults alone parse too (no resources, no user). */
	char *spec = NULL;
	o = (struct huskctl_spec_opts){ .args = ARGV("true"), .n_args = 1 };
	assert_int_equal(huskctl_spec_build(&o, &spec, &err), 0);
	struct jail_spec *s = NULL;
	assert_int_equal(jail_spec_parse(spec, strlen(spec), NULL, &s, &err), 0);
	assert_false(s->has_resources);
	assert_int_equal(s->process.user.n_additional_gids, 0);
	jail_spec_free(s);
	free(spec);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_args_env_cwd_hostname),
		cmocka_unit_test(test_terminal),
		cmocka_unit_test(test_process_only),
		cmocka_unit_test(test_user_numeric),
		cmocka_unit_test_setup_teardown(test_user_by_name, bundle_setup, bundle_teardown),
		cmocka_unit_test_setup_teardown(test_user_symlinked_files, bundle_setup,
						bundle_teardown),
		cmocka_unit_test_setup_teardown(test_user_errors, bundle_setup, bundle_teardown),
		cmocka_unit_test(test_bad_process),
		cmocka_unit_test(test_bad_spec),
		cmocka_unit_test(test_resources),
		cmocka_unit_test(test_run_options),
		cmocka_unit_test(test_run_options_refused),
		cmocka_unit_test_setup_teardown(test_libjail_parses_spec, bundle_setup,
						bundle_teardown),
		cmocka_unit_test_setup_teardown(test_libjail_parses_process, bundle_setup,
						bundle_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
