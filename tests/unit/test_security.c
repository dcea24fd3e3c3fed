/* Unit tests for libjail's process security (jail/security.h): rlimits,
 * oom_score_adj, umask, uid/gid/groups, capabilities, no_new_privs and
 * seccomp. Each test forks a child that applies a hand-built spec to
 * itself and checks what the kernel reports (/proc/self/status, get*id,
 * getrlimit, syscall results); the child sends a message through a pipe and
 * exits 0 when everything held, and the parent asserts. Needs root. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
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
#include <sys/capability.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <seccomp.h>

#include "jail/debug.h"
#include "jail/security.h"

#define BIT(c) (UINT64_C(1) << (c))
#define NAMES(...) ((char *[]){ __VA_ARGS__, NULL })
#define CHILD_SKIP 77
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- child plumbing ------------------------------------------------------ */

struct msg {
	char text[1024];
};

/* Fills `m` and returns -1: `return failf(m, "...")` inside a child. */
__attribute__((format(printf, 2, 3))) static int failf(struct msg *m, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m->text, sizeof(m->text), fmt, ap);
	va_end(ap);
	return -1;
}

#define CHECK(m, cond, ...)                                                                        \
	do {                                                                                       \
		if (!(cond))                                                                       \
			return failf((m), __VA_ARGS__);                                            \
	} while (0)

typedef int (*child_fn)(void *arg, struct msg *m);

struct result {
	int status;
	char text[1024];
};

/* Runs fn in a forked child; the child never returns into cmocka and
 * leaves with _exit (no atexit handlers, no leak check under a filter). */
static struct result run_child(child_fn fn, void *arg)
{
	struct result res = { 0 };
	int pfd[2];
	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(pfd[0]);
		/* A killed child must not leave a core file behind. */
		prctl(PR_SET_DUMPABLE, 0L, 0L, 0L, 0L);
		struct msg m = { { 0 } };
		int rc = fn(arg, &m);
		if (m.text[0])
			(void)!write(pfd[1], m.text, strlen(m.text));
		_exit(rc == CHILD_SKIP ? CHILD_SKIP : rc == 0 ? 0 : 1);
	}
	close(pfd[1]);
	size_t off = 0;
	for (;;) {
		ssize_t n = read(pfd[0], res.text + off, sizeof(res.text) - 1 - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	res.text[off] = '\0';
	close(pfd[0]);
	assert_int_equal(waitpid(pid, &res.status, 0), pid);
	return res;
}

static void expect_child_ok(child_fn fn, void *arg)
{
	struct result r = run_child(fn, arg);
	if (WIFEXITED(r.status) && WEXITSTATUS(r.status) == CHILD_SKIP) {
		print_message("skipped: %s\n", r.text);
		skip();
	}
	if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 0)
		fail_msg("child status %#x: %s", r.status, r.text);
}

static void need_root(void)
{
	if (getuid() != 0)
		skip();
}

/* ---- jail_debug's notes ---------------------------------------------------- */

/* Collects jail_debug lines, from us and from the children we fork, in a
 * pipe: start before the work, read after the children exited. */
static int debug_pipe[2] = { -1, -1 };

static void debug_capture(void)
{
	assert_int_equal(pipe2(debug_pipe, O_CLOEXEC | O_NONBLOCK), 0);
	jail_set_debug_fd(debug_pipe[1]);
}

static const char *debug_captured(void)
{
	static char buf[4096];
	jail_set_debug_fd(-1);
	close(debug_pipe[1]);
	ssize_t n = read(debug_pipe[0], buf, sizeof(buf) - 1);
	close(debug_pipe[0]);
	debug_pipe[0] = debug_pipe[1] = -1;
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

/* The init writes notes up to its execve, maybe to the stderr of a
 * `create` long gone: a pipe without a reader must not kill it. */
static int child_debug_no_reader(void *arg, struct msg *m)
{
	(void)arg;
	int p[2];
	CHECK(m, pipe2(p, O_CLOEXEC) == 0, "pipe2: %s", strerror(errno));
	close(p[0]);
	CHECK(m, signal(SIGPIPE, SIG_DFL) != SIG_ERR, "signal: %s", strerror(errno));
	jail_set_debug_fd(p[1]);
	jail_debug("nobody reads %d", 1);
	jail_debug("nobody reads %d", 2);
	sigset_t pending;
	CHECK(m, sigpending(&pending) == 0 && !sigismember(&pending, SIGPIPE), "SIGPIPE pending");
	return 0;
}

static void test_debug_without_reader(void **state)
{
	(void)state;
	expect_child_ok(child_debug_no_reader, NULL);
}

/* ---- what the kernel says about us --------------------------------------- */

/* Value of "key:" in /proc/self/status, whitespace trimmed. */
static int status_field(const char *key, char *val, size_t size)
{
	char buf[8192];
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t off = 0;
	ssize_t n;
	while (off < sizeof(buf) - 1 && (n = read(fd, buf + off, sizeof(buf) - 1 - off)) > 0)
		off += (size_t)n;
	close(fd);
	buf[off] = '\0';
	size_t klen = strlen(key);
	for (char *line = buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		if (strncmp(line, key, klen) != 0 || line[klen] != ':')
			continue;
		char *v = line + klen + 1;
		while (*v == ' ' || *v == '\t')
			v++;
		size_t len = strcspn(v, "\n");
		if (len >= size)
			len = size - 1;
		memcpy(val, v, len);
		val[len] = '\0';
		return 0;
	}
	return -ENOENT;
}

static uint64_t status_hex(const char *key)
{
	char v[64];
	if (status_field(key, v, sizeof(v)) < 0)
		return UINT64_MAX - 1;
	return strtoull(v, NULL, 16);
}

static long status_long(const char *key)
{
	char v[64];
	if (status_field(key, v, sizeof(v)) < 0)
		return -1000;
	return strtol(v, NULL, 10);
}

static uint64_t known_caps(void)
{
	int last = -1;
	FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
	if (f) {
		if (fscanf(f, "%d", &last) != 1)
			last = -1;
		fclose(f);
	}
	if (last < 0)
		last = CAP_LAST_CAP;
	return last >= 63 ? UINT64_MAX : BIT(last + 1) - 1;
}

struct capsets {
	uint64_t eff, prm, inh, bnd, amb;
};

static struct capsets read_caps(void)
{
	return (struct capsets){ .eff = status_hex("CapEff"),
				 .prm = status_hex("CapPrm"),
				 .inh = status_hex("CapInh"),
				 .bnd = status_hex("CapBnd"),
				 .amb = status_hex("CapAmb") };
}

static int check_caps(struct msg *m, const struct jail_caps *want)
{
	struct capsets c = read_caps();
	uint64_t k = known_caps();
	CHECK(m, c.eff == (want->effective & k), "CapEff %#llx, want %#llx",
	      (unsigned long long)c.eff, (unsigned long long)(want->effective & k));
	CHECK(m, c.prm == (want->permitted & k), "CapPrm %#llx, want %#llx",
	      (unsigned long long)c.prm, (unsigned long long)(want->permitted & k));
	CHECK(m, c.inh == (want->inheritable & k), "CapInh %#llx, want %#llx",
	      (unsigned long long)c.inh, (unsigned long long)(want->inheritable & k));
	CHECK(m, c.bnd == (want->bounding & k), "CapBnd %#llx, want %#llx",
	      (unsigned long long)c.bnd, (unsigned long long)(want->bounding & k));
	CHECK(m, c.amb == (want->ambient & k), "CapAmb %#llx, want %#llx",
	      (unsigned long long)c.amb, (unsigned long long)(want->ambient & k));
	return 0;
}

static int check_ids(struct msg *m, uid_t uid, gid_t gid, const gid_t *groups, int n_groups)
{
	uid_t ru, eu, su;
	gid_t rg, eg, sg;
	CHECK(m, getresuid(&ru, &eu, &su) == 0, "getresuid: %s", strerror(errno));
	CHECK(m, getresgid(&rg, &eg, &sg) == 0, "getresgid: %s", strerror(errno));
	CHECK(m, ru == uid && eu == uid && su == uid, "uids %u %u %u, want %u", ru, eu, su, uid);
	CHECK(m, rg == gid && eg == gid && sg == gid, "gids %u %u %u, want %u", rg, eg, sg, gid);
	gid_t got[64];
	int n = getgroups(64, got);
	CHECK(m, n == n_groups, "getgroups: %d groups, want %d", n, n_groups);
	for (int i = 0; i < n; i++)
		CHECK(m, got[i] == groups[i], "group[%d] %u, want %u", i, got[i], groups[i]);
	return 0;
}

/* Docker's default capability set. */
static const uint64_t docker_caps =
	BIT(CAP_CHOWN) | BIT(CAP_DAC_OVERRIDE) | BIT(CAP_FSETID) | BIT(CAP_FOWNER) |
	BIT(CAP_MKNOD) | BIT(CAP_NET_RAW) | BIT(CAP_SETGID) | BIT(CAP_SETUID) | BIT(CAP_SETFCAP) |
	BIT(CAP_SETPCAP) | BIT(CAP_NET_BIND_SERVICE) | BIT(CAP_SYS_CHROOT) | BIT(CAP_KILL) |
	BIT(CAP_AUDIT_WRITE);

/* ---- credentials ---------------------------------------------------------- */

static int child_nonroot_caps(void *arg, struct msg *m)
{
	(void)arg;
	uint32_t groups[] = { 2000, 2001, 2002 };
	struct jail_process p = {
		.user = { .uid = 1000, .gid = 1001, .additional_gids = groups, .n_additional_gids = 3 },
		.has_caps = true,
		.caps = { .bounding = BIT(CAP_CHOWN) | BIT(CAP_NET_BIND_SERVICE) | BIT(CAP_KILL) |
				      BIT(CAP_SETUID) | BIT(CAP_NET_RAW),
			  .permitted = BIT(CAP_NET_BIND_SERVICE) | BIT(CAP_KILL) | BIT(CAP_CHOWN),
			  .effective = BIT(CAP_NET_BIND_SERVICE) | BIT(CAP_KILL),
			  .inheritable = BIT(CAP_NET_BIND_SERVICE) | BIT(CAP_KILL),
			  .ambient = BIT(CAP_NET_BIND_SERVICE) },
		.no_new_privileges = true,
	};
	struct husk_err err = { 0 };
	CHECK(m, jail_creds_apply(&p, &err) == 0, "jail_creds_apply: %s", err.msg);
	if (check_caps(m, &p.caps) < 0)
		return -1;
	if (check_ids(m, 1000, 1001, (gid_t[]){ 2000, 2001, 2002 }, 3) < 0)
		return -1;
	CHECK(m, status_long("NoNewPrivs") == 1, "NoNewPrivs %ld", status_long("NoNewPrivs"));
	CHECK(m, prctl(PR_GET_KEEPCAPS, 0L, 0L, 0L, 0L) == 0, "keepcaps still set");
	return 0;
}

static void test_creds_nonroot_caps(void **state)
{
	(void)state;
	need_root();
	expect_child_ok(child_nonroot_caps, NULL);
}

static int child_root_docker_caps(void *arg, struct msg *m)
{
	(void)arg;
	struct jail_process p = {
		.user = { .uid = 0, .gid = 0 },
		.has_caps = true,
		.caps = { .bounding = docker_caps, .permitted = docker_caps, .effective = docker_caps },
	};
	struct husk_err err = { 0 };
	CHECK(m, jail_creds_apply(&p, &err) == 0, "jail_creds_apply: %s", err.msg);
	if (check_caps(m, &p.caps) < 0)
		return -1;
	if (check_ids(m, 0, 0, NULL, 0) < 0)
		return -1;
	CHECK(m, status_long("NoNewPrivs") == 0, "NoNewPrivs %ld", status_long("NoNewPrivs"));
	/* The capability really is gone: CAP_SYS_ADMIN guards sethostname. */
	CHECK(m, sethostname("x", 1) < 0 && errno == EPERM, "sethostname allowed without CAP_SYS_ADMIN");
	return 0;
}

static void test_creds_root_docker_caps(void **state)
{
	(void)state;
	need_root();
	expect_child_ok(child_root_docker_caps, NULL);
}

/* Bits above the kernel's last capability are ignored, not refused. */
static int child_caps_beyond_kernel(void *arg, struct msg *m)
{
	(void)arg;
	/* Everything we hold (the test may run without some), plus every bit
	 * the kernel does not know. */
	uint64_t all = read_caps().prm | ~known_caps();
	struct jail_process p = {
		.has_caps = true,
		.caps = { all, all, all, all, all },
	};
	struct husk_err err = { 0 };
	CHECK(m, jail_creds_apply(&p, &err) == 0, "jail_creds_apply: %s", err.msg);
	return check_caps(m, &p.caps);
}

static void test_creds_caps_beyond_kernel(void **state)
{
	(void)state;
	need_root();
	assert_true(known_caps() != UINT64_MAX);
	expect_child_ok(child_caps_beyond_kernel, NULL);
}

/* No "capabilities": the kernel's uid-change rules decide. */
static int child_no_caps_field(void *arg, struct msg *m)
{
	uint32_t uid = *(uint32_t *)arg;
	struct capsets before = read_caps();
	struct jail_process p = { .user = { .uid = uid, .gid = uid } };
	struct husk_err err = { 0 };
	CHECK(m, jail_creds_apply(&p, &err) == 0, "jail_creds_apply: %s", err.msg);
	struct capsets after = read_caps();
	CHECK(m, after.bnd == before.bnd, "CapBnd changed %#llx -> %#llx",
	      (unsigned long long)before.bnd, (unsigned long long)after.bnd);
	if (uid == 0) {
		CHECK(m, after.eff == before.eff && after.prm == before.prm,
		      "root lost capabilities: CapEff %#llx CapPrm %#llx", (unsigned long long)after.eff,
		      (unsigned long long)after.prm);
	} else {
		CHECK(m, after.eff == 0 && after.prm == 0 && after.amb == 0,
		      "uid %u kept capabilities: CapEff %#llx CapPrm %#llx", uid,
		      (unsigned long long)after.eff, (unsigned long long)after.prm);
	}
	return check_ids(m, uid, uid, NULL, 0);
}

static void test_creds_no_caps_field(void **state)
{
	(void)state;
	need_root();
	uint32_t root = 0, user = 1234;
	expect_child_ok(child_no_caps_field, &root);
	expect_child_ok(child_no_caps_field, &user);
}

/* Children that expect jail_creds_apply to fail send err.msg back. */
static int child_expect_creds_error(void *arg, struct msg *m)
{
	const struct jail_process *p = arg;
	struct husk_err err = { 0 };
	int r = jail_creds_apply(p, &err);
	snprintf(m->text, sizeof(m->text), "%s", err.msg);
	return r < 0 ? 0 : 1;
}

static void expect_creds_error(const struct jail_process *p, const char *want_substr)
{
	struct result r = run_child(child_expect_creds_error, (void *)p);
	if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 0)
		fail_msg("jail_creds_apply succeeded or child died (status %#x): %s", r.status,
			 r.text);
	if (!strstr(r.text, want_substr))
		fail_msg("error \"%s\" lacks \"%s\"", r.text, want_substr);
}

/* An ambient capability the kernel will not raise (not both permitted and
 * inheritable) is skipped with a debug note, as runc skips it: `runc spec`
 * itself asks for ambient capabilities without inheritable ones. */
struct ambient_case {
	struct jail_process p;
	uint64_t want_ambient;
};

static int child_ambient_skipped(void *arg, struct msg *m)
{
	const struct ambient_case *c = arg;
	struct husk_err err = { 0 };
	CHECK(m, jail_creds_apply(&c->p, &err) == 0, "jail_creds_apply: %s", err.msg);
	struct jail_caps want = c->p.caps;
	want.ambient = c->want_ambient;
	if (check_caps(m, &want) < 0)
		return -1;
	return check_ids(m, c->p.user.uid, c->p.user.gid, NULL, 0);
}

static void test_creds_ambient_not_raisable(void **state)
{
	(void)state;
	need_root();
	/* `runc spec`: root, no inheritable set. */
	const uint64_t runc_caps = BIT(CAP_AUDIT_WRITE) | BIT(CAP_KILL) | BIT(CAP_NET_BIND_SERVICE);
	struct ambient_case runc = {
		.p = { .has_caps = true,
		       .no_new_privileges = true,
		       .caps = { .bounding = runc_caps,
				 .permitted = runc_caps,
				 .effective = runc_caps,
				 .ambient = runc_caps } },
		.want_ambient = 0,
	};
	debug_capture();
	expect_child_ok(child_ambient_skipped, &runc);
	const char *notes = debug_captured();
	assert_non_null(strstr(notes, "husk-jail: debug: process.capabilities.ambient: CAP_KILL "
				      "not raised (it must be in the permitted and inheritable "
				      "sets)\n"));
	assert_non_null(strstr(notes, "CAP_NET_BIND_SERVICE not raised"));
	assert_non_null(strstr(notes, "CAP_AUDIT_WRITE not raised"));

	/* A non-root user: what can be raised is, the rest is skipped. */
	struct ambient_case mixed = {
		.p = { .user = { .uid = 1000, .gid = 1000 },
		       .has_caps = true,
		       .caps = { .bounding = docker_caps,
				 .permitted = docker_caps,
				 .effective = BIT(CAP_KILL),
				 .inheritable = BIT(CAP_KILL),
				 .ambient = BIT(CAP_KILL) | BIT(CAP_NET_RAW) } },
		.want_ambient = BIT(CAP_KILL),
	};
	debug_capture();
	expect_child_ok(child_ambient_skipped, &mixed);
	notes = debug_captured();
	assert_non_null(strstr(notes, "CAP_NET_RAW not raised"));
	assert_null(strstr(notes, "CAP_KILL"));

	/* Without a debug fd the note goes nowhere, and nothing fails. */
	expect_child_ok(child_ambient_skipped, &runc);
}

static void test_creds_caps_errors(void **state)
{
	(void)state;
	need_root();
	struct jail_process q = {
		.has_caps = true,
		.caps = { .bounding = docker_caps,
			  .permitted = BIT(CAP_KILL),
			  .effective = BIT(CAP_KILL) | BIT(CAP_CHOWN) },
	};
	expect_creds_error(&q, "process.capabilities.effective: CAP_CHOWN is not in the permitted set");

	/* (uid_t)-1 is "unchanged" to setresuid: refused here too, not
	 * only by the parser, before anything changes. */
	struct jail_process minus1 = { .user = { .uid = UINT32_MAX, .gid = 0 } };
	expect_creds_error(&minus1, "uids and gids must be in range 0-2147483647");
	uint32_t groups[] = { 5, UINT32_MAX };
	struct jail_process g = { .user = { .uid = 0, .gid = 0, .additional_gids = groups,
					    .n_additional_gids = 2 } };
	expect_creds_error(&g, "process.user.additionalGids[1]: 4294967295");
}

static int child_rlimits_oom_umask(void *arg, struct msg *m)
{
	(void)arg;
	struct jail_rlimit rl[] = {
		{ RLIMIT_NOFILE, 100, 200 },
		{ RLIMIT_CORE, 0, 0 },
		{ RLIMIT_NPROC, 500, 600 },
	};
	struct jail_process p = {
		.user = { .uid = 0, .gid = 0, .has_umask = true, .umask = 027 },
		.has_oom_score_adj = true,
		.oom_score_adj = 500,
		.rlimits = rl,
		.n_rlimits = 3,
	};
	struct husk_err err = { 0 };
	CHECK(m, jail_creds_apply(&p, &err) == 0, "jail_creds_apply: %s", err.msg);
	for (size_t i = 0; i < 3; i++) {
		struct rlimit got;
		CHECK(m, getrlimit(rl[i].resource, &got) == 0, "getrlimit: %s", strerror(errno));
		CHECK(m, got.rlim_cur == rl[i].soft && got.rlim_max == rl[i].hard,
		      "rlimit %d: %llu/%llu, want %llu/%llu", rl[i].resource,
		      (unsigned long long)got.rlim_cur, (unsigned long long)got.rlim_max,
		      (unsigned long long)rl[i].soft, (unsigned long long)rl[i].hard);
	}
	/* The same, as the kernel prints it. */
	char limits[4096] = { 0 };
	int fd = open("/proc/self/limits", O_RDONLY | O_CLOEXEC);
	CHECK(m, fd >= 0, "open /proc/self/limits: %s", strerror(errno));
	(void)!read(fd, limits, sizeof(limits) - 1);
	close(fd);
	CHECK(m, strstr(limits, "Max open files            100                  200"),
	      "/proc/self/limits: %s", limits);

	char oom[16] = { 0 };
	fd = open("/proc/self/oom_score_adj", O_RDONLY | O_CLOEXEC);
	CHECK(m, fd >= 0, "open oom_score_adj: %s", strerror(errno));
	(void)!read(fd, oom, sizeof(oom) - 1);
	close(fd);
	CHECK(m, atoi(oom) == 500, "oom_score_adj %s", oom);

	mode_t old = umask(0);
	CHECK(m, old == 027, "umask %o, want 027", (unsigned)old);
	return 0;
}

static void test_creds_rlimits_oom_umask(void **state)
{
	(void)state;
	need_root();
	expect_child_ok(child_rlimits_oom_umask, NULL);
}

static void test_creds_errors_name_field(void **state)
{
	(void)state;
	need_root();
	struct jail_rlimit rl[] = { { RLIMIT_CORE, 0, 0 }, { RLIMIT_NOFILE, 300, 200 } };
	struct jail_process p = { .rlimits = rl, .n_rlimits = 2 };
	expect_creds_error(&p, "process.rlimits[1] RLIMIT_NOFILE: setrlimit: Invalid argument");

	struct jail_process q = { .has_oom_score_adj = true, .oom_score_adj = 5000 };
	expect_creds_error(&q, "process.oomScoreAdj 5000: write /proc/self/oom_score_adj: Invalid argument");
}

/* Without CAP_SETUID the uid change fails and says which field. */
static int child_setresuid_error(void *arg, struct msg *m)
{
	(void)arg;
	cap_t c = cap_get_proc();
	cap_value_t v = CAP_SETUID;
	CHECK(m, c && cap_set_flag(c, CAP_EFFECTIVE, 1, &v, CAP_CLEAR) == 0 && cap_set_proc(c) == 0,
	      "drop CAP_SETUID: %s", strerror(errno));
	cap_free(c);
	struct jail_process p = { .user = { .uid = 1000, .gid = 1000 } };
	struct husk_err err = { 0 };
	CHECK(m, jail_creds_apply(&p, &err) < 0, "jail_creds_apply succeeded");
	snprintf(m->text, sizeof(m->text), "%s", err.msg);
	return strcmp(err.msg, "process.user.uid 1000: setresuid: Operation not permitted") == 0 ? 0 : -1;
}

static void test_creds_setresuid_error(void **state)
{
	(void)state;
	need_root();
	expect_child_ok(child_setresuid_error, NULL);
}

static int child_pdeathsig_kept(void *arg, struct msg *m)
{
	(void)arg;
	CHECK(m, prctl(PR_SET_PDEATHSIG, (unsigned long)SIGKILL, 0L, 0L, 0L) == 0, "set pdeathsig");
	struct jail_process p = { .user = { .uid = 1000, .gid = 1000 } };
	struct husk_err err = { 0 };
	CHECK(m, jail_creds_apply(&p, &err) == 0, "jail_creds_apply: %s", err.msg);
	int sig = 0;
	CHECK(m, prctl(PR_GET_PDEATHSIG, (unsigned long)&sig, 0L, 0L, 0L) == 0, "get pdeathsig");
	CHECK(m, sig == SIGKILL, "parent-death signal %d after the uid change, want %d", sig, SIGKILL);
	return 0;
}

static void test_creds_pdeathsig_kept(void **state)
{
	(void)state;
	need_root();
	expect_child_ok(child_pdeathsig_kept, NULL);
}

static int write_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = write(fd, s, strlen(s));
	int e = errno;
	close(fd);
	return n == (ssize_t)strlen(s) ? 0 : -e;
}

/* In a user namespace whose setgroups is "deny", an empty additionalGids
 * is fine and a non-empty one is an error naming the field. */
static int child_userns_setgroups(void *arg, struct msg *m)
{
	(void)arg;
	if (unshare(CLONE_NEWUSER) < 0) {
		failf(m, "unshare(CLONE_NEWUSER): %s", strerror(errno));
		return CHILD_SKIP;
	}
	CHECK(m, write_file("/proc/self/setgroups", "deny") == 0, "setgroups deny");
	CHECK(m, write_file("/proc/self/uid_map", "0 0 1") == 0, "uid_map");
	CHECK(m, write_file("/proc/self/gid_map", "0 0 1") == 0, "gid_map");
	struct jail_process p = { .has_caps = true, .caps = { docker_caps, docker_caps, 0, docker_caps, 0 } };
	struct husk_err err = { 0 };
	CHECK(m, jail_creds_apply(&p, &err) == 0, "empty groups: %s", err.msg);
	if (check_ids(m, 0, 0, NULL, 0) < 0)
		return -1;
	uint32_t g[] = { 0 };
	p.user.additional_gids = g;
	p.user.n_additional_gids = 1;
	CHECK(m, jail_creds_apply(&p, &err) < 0, "setgroups([0]) succeeded under deny");
	CHECK(m, strcmp(err.msg, "process.user.additionalGids (1): setgroups: Operation not permitted") == 0,
	      "message: %s", err.msg);
	return 0;
}

static void test_creds_userns_setgroups(void **state)
{
	(void)state;
	need_root();
	expect_child_ok(child_userns_setgroups, NULL);
}

struct sec_case {
	struct jail_process *p;
	void *filter;
};

static int apply_case(struct msg *m, struct sec_case *c)
{
	struct husk_err err = { 0 };
	CHECK(m, jail_security_apply(c->p, c->filter, &err) == 0, "jail_security_apply: %s", err.msg);
	return 0;
}

static void *build_or_fail(const struct jail_seccomp *sc)
{
	void *f = NULL;
	struct husk_err err = { 0 };
	if (jail_seccomp_build(sc, &f, &err) < 0)
		fail_msg("jail_seccomp_build: %s", err.msg);
	return f;
}

/* ---- seccomp: building ----------------------------------------------------- */

static size_t count(char **v)
{
	size_t n = 0;
	while (v && v[n])
		n++;
	return n;
}

static struct jail_seccomp_rule rule(char **names, enum jail_seccomp_action a)
{
	return (struct jail_seccomp_rule){ .names = names, .n_names = count(names), .action = a };
}

static struct jail_seccomp_rule errno_rule(char **names, uint32_t e)
{
	struct jail_seccomp_rule r = rule(names, JAIL_SCMP_ERRNO);
	r.has_errno = true;
	r.errno_ret = e;
	return r;
}

static struct jail_seccomp allow_all(struct jail_seccomp_rule *rules, size_t n)
{
	return (struct jail_seccomp){ .default_action = JAIL_SCMP_ALLOW, .rules = rules, .n_rules = n };
}

static void expect_build_error(const struct jail_seccomp *sc, const char *want)
{
	void *f = (void *)1;
	struct husk_err err = { 0 };
	assert_int_equal(jail_seccomp_build(sc, &f, &err), -EINVAL);
	assert_null(f);
	assert_string_equal(err.msg, want);
}

static void test_seccomp_build_errors(void **state)
{
	(void)state;
	struct jail_seccomp arch = allow_all(NULL, 0);
	arch.architectures = NAMES("SCMP_ARCH_X86_64", "SCMP_ARCH_VAX");
	arch.n_architectures = 2;
	expect_build_error(&arch, "linux.seccomp.architectures[1]: unknown architecture \"SCMP_ARCH_VAX\"");
	arch.architectures = NAMES("x86_64");
	arch.n_architectures = 1;
	expect_build_error(&arch, "linux.seccomp.architectures[0]: unknown architecture \"x86_64\"");

	struct jail_seccomp flags = allow_all(NULL, 0);
	flags.flags = NAMES("SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_BOGUS");
	flags.n_flags = 2;
	expect_build_error(&flags, "linux.seccomp.flags[1]: unknown flag \"SECCOMP_FILTER_FLAG_BOGUS\"");

	struct jail_seccomp_rule big = errno_rule(NAMES("read"), 70000);
	struct jail_seccomp range = allow_all(&big, 1);
	expect_build_error(&range, "linux.seccomp.syscalls[0]: errnoRet 70000 out of range (0..65535)");

	struct jail_seccomp_arg bad_index = { .index = 6, .op = JAIL_SCMP_CMP_EQ };
	struct jail_seccomp_rule r6 = rule(NAMES("read"), JAIL_SCMP_ERRNO);
	r6.args = &bad_index;
	r6.n_args = 1;
	struct jail_seccomp idx = allow_all(&r6, 1);
	expect_build_error(&idx, "linux.seccomp.syscalls[0].args[0].index: 6 out of range (0..5)");
}

static int child_mkdir_eperm(void *arg, struct msg *m)
{
	if (apply_case(m, arg) < 0)
		return -1;
	CHECK(m, mkdir("/proc/husk-test-dir", 0700) < 0 && errno == EPERM, "mkdir: %s, want EPERM",
	      strerror(errno));
	CHECK(m, status_long("Seccomp") == 2, "Seccomp: %ld", status_long("Seccomp"));
	return 0;
}

/* A name libseccomp does not know is skipped with a debug note, as runc
 * skips it (profiles name syscalls newer than the library); the rest of
 * its rule still applies. */
static void test_seccomp_unknown_syscall_skipped(void **state)
{
	(void)state;
	struct jail_seccomp_rule rules[] = {
		rule(NAMES("read"), JAIL_SCMP_ALLOW),
		rule(NAMES("not_a_syscall", "mkdir", "landlock_future_call"), JAIL_SCMP_ERRNO),
	};
	struct jail_seccomp sc = allow_all(rules, 2);
	debug_capture();
	void *f = build_or_fail(&sc);
	const char *notes = debug_captured();
	assert_non_null(strstr(notes, "husk-jail: debug: linux.seccomp.syscalls[1].names[0]: "
				      "unknown syscall \"not_a_syscall\" ignored\n"));
	assert_non_null(strstr(notes, "linux.seccomp.syscalls[1].names[2]: unknown syscall "
				      "\"landlock_future_call\" ignored"));
	if (getuid() == 0) {
		struct jail_process p = { .no_new_privileges = true };
		struct sec_case c = { &p, f };
		expect_child_ok(child_mkdir_eperm, &c);
	}
	jail_seccomp_free(f);
}

static void test_seccomp_build_archs_flags(void **state)
{
	(void)state;
	struct jail_seccomp_rule rules[] = {
		/* x86-only names: accepted, applied to the x86 architecture. */
		rule(NAMES("socketcall", "waitpid", "mkdir"), JAIL_SCMP_ERRNO),
		/* Equal to the default action: skipped, not refused. */
		rule(NAMES("getpid"), JAIL_SCMP_ALLOW),
	};
	struct jail_seccomp sc = allow_all(rules, 2);
	sc.architectures = NAMES("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32");
	sc.n_architectures = 3;
	sc.flags = NAMES("SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
			 "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV");
	sc.n_flags = 4;
	void *f = NULL;
	struct husk_err err = { 0 };
	assert_int_equal(jail_seccomp_build(&sc, &f, &err), 0);
	assert_non_null(f);
	assert_int_equal(seccomp_arch_exist(f, SCMP_ARCH_X86_64), 0);
	assert_int_equal(seccomp_arch_exist(f, SCMP_ARCH_X86), 0);
	assert_int_equal(seccomp_arch_exist(f, SCMP_ARCH_X32), 0);
	assert_int_equal(seccomp_arch_exist(f, SCMP_ARCH_AARCH64), -EEXIST);
	uint32_t v = 0;
	assert_int_equal(seccomp_attr_get(f, SCMP_FLTATR_CTL_LOG, &v), 0);
	assert_int_equal(v, 1);
	assert_int_equal(seccomp_attr_get(f, SCMP_FLTATR_CTL_SSB, &v), 0);
	assert_int_equal(v, 1);
	/* no_new_privs is process.noNewPrivileges' business only. */
	assert_int_equal(seccomp_attr_get(f, SCMP_FLTATR_CTL_NNP, &v), 0);
	assert_int_equal(v, 0);
	/* The kernel takes the flags, and the native rule works. */
	if (getuid() == 0) {
		struct jail_process p = { .no_new_privileges = true };
		struct sec_case c = { &p, f };
		expect_child_ok(child_mkdir_eperm, &c);
	}
	jail_seccomp_free(f);
	jail_seccomp_free(NULL);

#if defined(__x86_64__) || defined(__aarch64__)
	/* A big-endian architecture cannot share a filter with ours. */
	struct jail_seccomp be = allow_all(NULL, 0);
	be.architectures = NAMES("SCMP_ARCH_X86_64", "SCMP_ARCH_S390X");
	be.n_architectures = 2;
	struct husk_err err2 = { 0 };
	f = (void *)1;
	assert_true(jail_seccomp_build(&be, &f, &err2) < 0);
	assert_null(f);
	assert_non_null(strstr(err2.msg, "linux.seccomp.architectures[1]: seccomp_arch_add(SCMP_ARCH_S390X)"));
#endif
}

/* ---- seccomp: loaded ------------------------------------------------------- */

static int child_errno_rule(void *arg, struct msg *m)
{
	if (apply_case(m, arg) < 0)
		return -1;
	CHECK(m, mkdir("/proc/husk-test-dir", 0700) < 0 && errno == EACCES,
	      "mkdir: %s, want EACCES", strerror(errno));
	CHECK(m, syscall(SYS_mkdirat, AT_FDCWD, "/proc/husk-test-dir", 0700) < 0 && errno == EACCES,
	      "mkdirat: %s, want EACCES", strerror(errno));
	/* errnoRet absent: EPERM. */
	CHECK(m, rmdir("/nonexistent-husk") < 0 && errno == EPERM, "rmdir: %s, want EPERM",
	      strerror(errno));
	char cwd[256];
	CHECK(m, getcwd(cwd, sizeof(cwd)) != NULL, "getcwd: %s", strerror(errno));
	CHECK(m, status_long("Seccomp") == 2, "Seccomp: %ld", status_long("Seccomp"));
	CHECK(m, status_long("NoNewPrivs") == 1, "NoNewPrivs: %ld", status_long("NoNewPrivs"));
	return 0;
}

static void test_seccomp_errno_rule(void **state)
{
	(void)state;
	need_root();
	struct jail_seccomp_rule rules[] = {
		errno_rule(NAMES("mkdir", "mkdirat"), EACCES),
		rule(NAMES("rmdir"), JAIL_SCMP_ERRNO),
	};
	struct jail_seccomp sc = allow_all(rules, 2);
	struct jail_process p = { .no_new_privileges = true };
	struct sec_case c = { &p, build_or_fail(&sc) };
	expect_child_ok(child_errno_rule, &c);
	jail_seccomp_free(c.filter);
}

/* write(fd, buf, count) with fds nobody has open: EBADF normally, EDOM
 * where a rule matched. */
static int wr(int fd, size_t count)
{
	static char buf[0x2000];
	errno = 0;
	return syscall(SYS_write, fd, buf, count) < 0 ? errno : 0;
}

static int child_args(void *arg, struct msg *m)
{
	if (apply_case(m, arg) < 0)
		return -1;
	/* OR: two conditions on argument 0. */
	CHECK(m, wr(1000, 1) == EDOM, "write(1000) not blocked");
	CHECK(m, wr(1001, 1) == EDOM, "write(1001) not blocked");
	CHECK(m, wr(1002, 1) == EBADF, "write(1002) blocked");
	/* AND: conditions on arguments 0 and 2. */
	CHECK(m, wr(1003, 7) == EDOM, "write(1003, 7) not blocked");
	CHECK(m, wr(1003, 6) == EBADF, "write(1003, 6) blocked");
	CHECK(m, wr(1004, 7) == EBADF, "write(1004, 7) blocked");
	/* MASKED_EQ: (count & 0xff00) == 0x1200. */
	CHECK(m, wr(1005, 0x1234) == EDOM, "write(1005, 0x1234) not blocked");
	CHECK(m, wr(1005, 0x12ff) == EDOM, "write(1005, 0x12ff) not blocked");
	CHECK(m, wr(1005, 0x1334) == EBADF, "write(1005, 0x1334) blocked");
	/* One fd per operator, compared against count 100. */
	static const struct {
		int fd;
		bool at99, at100, at101;
	} ops[] = {
		{ 1010, true, false, true },  /* NE */
		{ 1011, true, false, false }, /* LT */
		{ 1012, true, true, false },  /* LE */
		{ 1013, false, true, false }, /* EQ */
		{ 1014, false, true, true },  /* GE */
		{ 1015, false, false, true }, /* GT */
	};
	for (size_t i = 0; i < ARRAY_SIZE(ops); i++) {
		bool b99 = wr(ops[i].fd, 99) == EDOM, b100 = wr(ops[i].fd, 100) == EDOM,
		     b101 = wr(ops[i].fd, 101) == EDOM;
		CHECK(m, b99 == ops[i].at99 && b100 == ops[i].at100 && b101 == ops[i].at101,
		      "operator %zu: blocked at 99/100/101 = %d/%d/%d", i, b99, b100, b101);
	}
	/* personality(0xffffffff) queries; the MASKED_EQ rule blocks only it. */
	errno = 0;
	CHECK(m, personality(0xffffffff) == -1 && errno == EACCES, "personality(0xffffffff): %s",
	      strerror(errno));
	CHECK(m, personality(PER_LINUX) != -1, "personality(PER_LINUX): %s", strerror(errno));
	/* The pipe to the parent still works: that is a write too. */
	return 0;
}

static void test_seccomp_arg_conditions(void **state)
{
	(void)state;
	need_root();
	struct jail_seccomp_arg or_args[] = {
		{ .index = 0, .value = 1000, .op = JAIL_SCMP_CMP_EQ },
		{ .index = 0, .value = 1001, .op = JAIL_SCMP_CMP_EQ },
	};
	struct jail_seccomp_arg and_args[] = {
		{ .index = 0, .value = 1003, .op = JAIL_SCMP_CMP_EQ },
		{ .index = 2, .value = 7, .op = JAIL_SCMP_CMP_EQ },
	};
	struct jail_seccomp_arg masked_args[] = {
		{ .index = 0, .value = 1005, .op = JAIL_SCMP_CMP_EQ },
		{ .index = 2, .value = 0xff00, .value_two = 0x1200, .op = JAIL_SCMP_CMP_MASKED_EQ },
	};
	struct jail_seccomp_arg pers_args[] = {
		{ .index = 0, .value = 0xffffffff, .value_two = 0xffffffff,
		  .op = JAIL_SCMP_CMP_MASKED_EQ },
	};
	static const enum jail_seccomp_op opv[] = { JAIL_SCMP_CMP_NE, JAIL_SCMP_CMP_LT,
						    JAIL_SCMP_CMP_LE, JAIL_SCMP_CMP_EQ,
						    JAIL_SCMP_CMP_GE, JAIL_SCMP_CMP_GT };
	struct jail_seccomp_arg op_args[6][2];
	struct jail_seccomp_rule rules[4 + 6];
	char **write_name = NAMES("write");
	rules[0] = errno_rule(NAMES("write"), EDOM);
	rules[0].args = or_args;
	rules[0].n_args = 2;
	rules[1] = errno_rule(NAMES("write"), EDOM);
	rules[1].args = and_args;
	rules[1].n_args = 2;
	rules[2] = errno_rule(NAMES("write"), EDOM);
	rules[2].args = masked_args;
	rules[2].n_args = 2;
	rules[3] = errno_rule(NAMES("personality"), EACCES);
	rules[3].args = pers_args;
	rules[3].n_args = 1;
	for (size_t i = 0; i < 6; i++) {
		op_args[i][0] = (struct jail_seccomp_arg){ .index = 0, .value = 1010 + i,
							   .op = JAIL_SCMP_CMP_EQ };
		op_args[i][1] = (struct jail_seccomp_arg){ .index = 2, .value = 100, .op = opv[i] };
		rules[4 + i] = errno_rule(write_name, EDOM);
		rules[4 + i].args = op_args[i];
		rules[4 + i].n_args = 2;
	}
	struct jail_seccomp sc = allow_all(rules, ARRAY_SIZE(rules));
	struct jail_process p = { .no_new_privileges = true };
	struct sec_case c = { &p, build_or_fail(&sc) };
	expect_child_ok(child_args, &c);
	jail_seccomp_free(c.filter);
}

static int child_call_getppid(void *arg, struct msg *m)
{
	if (apply_case(m, arg) < 0)
		return -1;
	syscall(SYS_getppid);
	return failf(m, "getppid returned under a kill rule");
}

static void test_seccomp_kill(void **state)
{
	(void)state;
	need_root();
	static const enum jail_seccomp_action acts[] = { JAIL_SCMP_KILL_PROCESS, JAIL_SCMP_KILL };
	for (size_t i = 0; i < ARRAY_SIZE(acts); i++) {
		struct jail_seccomp_rule r = rule(NAMES("getppid"), acts[i]);
		struct jail_seccomp sc = allow_all(&r, 1);
		struct jail_process p = { .no_new_privileges = true };
		struct sec_case c = { &p, build_or_fail(&sc) };
		struct result res = run_child(child_call_getppid, &c);
		jail_seccomp_free(c.filter);
		if (!WIFSIGNALED(res.status) || WTERMSIG(res.status) != SIGSYS)
			fail_msg("action %zu: child status %#x, want killed by SIGSYS: %s", i,
				 res.status, res.text);
	}
}

static volatile sig_atomic_t trapped_nr = -1;

static void on_sigsys(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	trapped_nr = si->si_syscall;
}

static int child_trap_trace_log(void *arg, struct msg *m)
{
	struct sigaction sa = { .sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO };
	sigemptyset(&sa.sa_mask);
	CHECK(m, sigaction(SIGSYS, &sa, NULL) == 0, "sigaction: %s", strerror(errno));
	/* getsid is 0, not our sid, when the session leader lives outside our pid
	 * namespace (as under CI), so compare with the value seen before the filter. */
	errno = 0;
	pid_t sid = getsid(0);
	CHECK(m, sid >= 0, "getsid before the filter: %s", strerror(errno));
	if (apply_case(m, arg) < 0)
		return -1;
	/* TRAP: SIGSYS naming the syscall, which does not run. */
	syscall(SYS_getppid);
	CHECK(m, trapped_nr == SYS_getppid, "SIGSYS for %d, want getppid", (int)trapped_nr);
	/* TRACE with no tracer: ENOSYS. */
	errno = 0;
	CHECK(m, syscall(SYS_getpgid, 0) == -1 && errno == ENOSYS, "getpgid under TRACE: %s",
	      strerror(errno));
	/* LOG: runs. */
	errno = 0;
	long got = syscall(SYS_getsid, 0);
	CHECK(m, got == sid, "getsid under LOG returned %ld (%s), want %d", got, strerror(errno),
	      (int)sid);
	return 0;
}

static void test_seccomp_trap_trace_log(void **state)
{
	(void)state;
	need_root();
	struct jail_seccomp_rule rules[] = {
		rule(NAMES("getppid"), JAIL_SCMP_TRAP),
		rule(NAMES("getpgid"), JAIL_SCMP_TRACE),
		rule(NAMES("getsid"), JAIL_SCMP_LOG),
	};
	struct jail_seccomp sc = allow_all(rules, 3);
	struct jail_process p = { .no_new_privileges = true };
	struct sec_case c = { &p, build_or_fail(&sc) };
	expect_child_ok(child_trap_trace_log, &c);
	jail_seccomp_free(c.filter);
}

static int child_allowlist(void *arg, struct msg *m)
{
	pid_t me = getpid();
	if (apply_case(m, arg) < 0)
		return -1;
	CHECK(m, syscall(SYS_getpid) == me, "getpid under ALLOW: %s", strerror(errno));
	errno = 0;
	CHECK(m, syscall(SYS_getppid) == -1 && errno == ENOSYS, "getppid: %s, want ENOSYS",
	      strerror(errno));
	errno = 0;
	CHECK(m, syscall(SYS_getuid) == -1 && errno == EPERM, "getuid: %s, want EPERM",
	      strerror(errno));
	return 0;
}

/* Default ERRNO with defaultErrnoRet; a rule equal to the default (ERRNO
 * ENOSYS) is skipped while one with another errno is not. */
static void test_seccomp_allowlist_default_errno(void **state)
{
	(void)state;
	need_root();
	struct jail_seccomp_rule rules[] = {
		rule(NAMES("write", "exit", "exit_group", "getpid", "rt_sigreturn", "brk", "mmap",
			   "munmap", "madvise", "futex", "rt_sigprocmask",
			   /* ASan's __asan_handle_no_return before _exit */
			   "sigaltstack"),
		     JAIL_SCMP_ALLOW),
		errno_rule(NAMES("getppid"), ENOSYS),
		rule(NAMES("getuid"), JAIL_SCMP_ERRNO),
	};
	struct jail_seccomp sc = {
		.default_action = JAIL_SCMP_ERRNO,
		.has_default_errno = true,
		.default_errno = ENOSYS,
		.rules = rules,
		.n_rules = 3,
	};
	struct jail_process p = { .no_new_privileges = true };
	struct sec_case c = { &p, build_or_fail(&sc) };
	expect_child_ok(child_allowlist, &c);
	jail_seccomp_free(c.filter);
}

/* ---- ordering -------------------------------------------------------------- */

static int child_order(void *arg, struct msg *m)
{
	struct sec_case *c = arg;
	if (apply_case(m, c) < 0)
		return -1;
	if (check_caps(m, &c->p->caps) < 0 || check_ids(m, 1000, 1000, NULL, 0) < 0)
		return -1;
	CHECK(m, status_long("Seccomp") == 2, "Seccomp: %ld", status_long("Seccomp"));
	CHECK(m, status_long("NoNewPrivs") == (c->p->no_new_privileges ? 1 : 0), "NoNewPrivs: %ld",
	      status_long("NoNewPrivs"));
	CHECK(m, mkdir("/proc/husk-test-dir", 0700) < 0 && errno == EACCES, "mkdir: %s",
	      strerror(errno));
	return 0;
}

/* Without no_new_privs the filter goes in while CAP_SYS_ADMIN is still
 * there; with it, after the capabilities are dropped. Both end as asked. */
static void test_security_order(void **state)
{
	(void)state;
	need_root();
	struct jail_seccomp_rule r = errno_rule(NAMES("mkdir", "mkdirat"), EACCES);
	struct jail_seccomp sc = allow_all(&r, 1);
	for (int nnp = 0; nnp <= 1; nnp++) {
		struct jail_process p = {
			.user = { .uid = 1000, .gid = 1000 },
			.has_caps = true,
			.caps = { .bounding = docker_caps,
				  .permitted = BIT(CAP_KILL),
				  .effective = BIT(CAP_KILL) },
			.no_new_privileges = nnp,
		};
		struct sec_case c = { &p, build_or_fail(&sc) };
		expect_child_ok(child_order, &c);
		jail_seccomp_free(c.filter);
	}
}

/* What the ordering protects against: loading after the caps are gone and
 * without no_new_privs is refused by the kernel. */
static int child_load_needs_sys_admin(void *arg, struct msg *m)
{
	struct jail_process p = {
		.user = { .uid = 1000, .gid = 1000 },
		.has_caps = true,
		.caps = { .bounding = docker_caps },
	};
	struct husk_err err = { 0 };
	CHECK(m, jail_creds_apply(&p, &err) == 0, "jail_creds_apply: %s", err.msg);
	CHECK(m, jail_seccomp_load(arg, &err) == -EACCES, "seccomp_load without CAP_SYS_ADMIN: %s",
	      err.msg[0] ? err.msg : "succeeded");
	CHECK(m, strstr(err.msg, "linux.seccomp: seccomp_load") && strstr(err.msg, "Permission denied"),
	      "message: %s", err.msg);
	return 0;
}

static void test_seccomp_load_needs_sys_admin(void **state)
{
	(void)state;
	need_root();
	struct jail_seccomp_rule r = errno_rule(NAMES("mkdir"), EACCES);
	struct jail_seccomp sc = allow_all(&r, 1);
	void *f = build_or_fail(&sc);
	expect_child_ok(child_load_needs_sys_admin, f);
	jail_seccomp_free(f);
}

static int child_setup_syscalls_filtered(void *arg, struct msg *m)
{
	struct sec_case *c = arg;
	struct husk_err err = { 0 };
	int r = jail_security_apply(c->p, c->filter, &err);
	if (c->p->no_new_privileges) {
		CHECK(m, r == 0, "jail_security_apply: %s", err.msg);
		/* The filter is in force once apply returns. */
		errno = 0;
		CHECK(m, prctl(PR_GET_KEEPCAPS, 0L, 0L, 0L, 0L) == -1 && errno == EPERM,
		      "prctl not filtered: %s", strerror(errno));
		return check_ids(m, 1000, 1000, NULL, 0);
	}
	/* runc's order: without no_new_privs the filter sees the setup. */
	CHECK(m, r < 0, "jail_security_apply succeeded with setresuid filtered");
	CHECK(m, strcmp(err.msg, "process.user.uid 1000: setresuid: Operation not permitted") == 0,
	      "message: %s", err.msg);
	return 0;
}

/* With no_new_privs the filter goes in last, so it may deny the syscalls
 * the setup itself needs. */
static void test_security_setup_syscalls_filtered(void **state)
{
	(void)state;
	need_root();
	char **all_setup = NAMES("setresuid", "setresgid", "setgroups", "capset", "prctl");
	char **only_setresuid = NAMES("setresuid");
	struct jail_seccomp_rule r = rule(all_setup, JAIL_SCMP_ERRNO);
	struct jail_seccomp sc = allow_all(&r, 1);
	for (int nnp = 1; nnp >= 0; nnp--) {
		struct jail_process p = {
			.user = { .uid = 1000, .gid = 1000 },
			.has_caps = true,
			.caps = { .bounding = docker_caps, .permitted = BIT(CAP_KILL) },
			.no_new_privileges = nnp,
		};
		if (!nnp) {
			/* Keep the identity step's own prctl calls working so
			 * that setresuid is the first thing refused. */
			r.names = only_setresuid;
			r.n_names = 1;
		}
		struct sec_case c = { &p, build_or_fail(&sc) };
		expect_child_ok(child_setup_syscalls_filtered, &c);
		jail_seccomp_free(c.filter);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_creds_nonroot_caps),
		cmocka_unit_test(test_creds_root_docker_caps),
		cmocka_unit_test(test_creds_caps_beyond_kernel),
		cmocka_unit_test(test_creds_no_caps_field),
		cmocka_unit_test(test_debug_without_reader),
		cmocka_unit_test(test_creds_ambient_not_raisable),
		cmocka_unit_test(test_creds_caps_errors),
		cmocka_unit_test(test_creds_rlimits_oom_umask),
		cmocka_unit_test(test_creds_errors_name_field),
		cmocka_unit_test(test_creds_setresuid_error),
		cmocka_unit_test(test_creds_pdeathsig_kept),
		cmocka_unit_test(test_creds_userns_setgroups),
		cmocka_unit_test(test_seccomp_build_errors),
		cmocka_unit_test(test_seccomp_unknown_syscall_skipped),
		cmocka_unit_test(test_seccomp_build_archs_flags),
		cmocka_unit_test(test_seccomp_errno_rule),
		cmocka_unit_test(test_seccomp_arg_conditions),
		cmocka_unit_test(test_seccomp_kill),
		cmocka_unit_test(test_seccomp_trap_trace_log),
		cmocka_unit_test(test_seccomp_allowlist_default_errno),
		cmocka_unit_test(test_security_order),
		cmocka_unit_test(test_seccomp_load_needs_sys_admin),
		cmocka_unit_test(test_security_setup_syscalls_filtered),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
