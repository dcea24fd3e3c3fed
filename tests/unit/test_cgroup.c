/* Unit tests for libjail's cgroup v2 code.
 *
 * Two kinds: (a) against the host's real cgroup2 mount (skipped when there
 * is none or we are not root), (b) against a directory of regular files
 * that stands in for a cgroup, to check the exact bytes apply writes and
 * the parsing of stats files. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "jail/cgroup.h"
#include "jail/container.h"
#include "jail/spec.h"

#define CG2_MAGIC 0x63677270UL
/* Guards against hangs only; nothing asserts that anything is fast. */
#define HANG_GUARD_MS 60000

/* ---- helpers ------------------------------------------------------------ */

static void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
	}
}

static void write_file(const char *dir, const char *name, const char *content)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	size_t len = strlen(content);
	assert_int_equal(write(fd, content, len), (ssize_t)len);
	close(fd);
}

/* Returns the file's content in a static buffer, or NULL if unreadable. */
static const char *read_file(const char *dir, const char *name)
{
	static char buf[8192];
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0)
		return NULL;
	buf[n] = '\0';
	return buf;
}

static bool exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

static bool is_cgroup2(const char *path)
{
	struct statfs s;
	return statfs(path, &s) == 0 && (unsigned long)s.f_type == CG2_MAGIC;
}

/* ---- fake cgroup directories -------------------------------------------- */

struct fake {
	char root[256]; /* the "mount" */
	char dir[512];  /* root/ctr, the cgroup */
	struct jail_cgroup *cg;
};

static const char *const all_files[] = {
	"cgroup.subtree_control", "cgroup.procs", "memory.max", "memory.low",
	"memory.swap.max", "memory.oom.group", "memory.high", "cpu.weight",
	"cpu.max", "cpuset.cpus", "cpuset.mems", "pids.max",
	"io.weight", "io.max",
};

static int fake_setup_files(void **state, const char *const *files, size_t n)
{
	struct fake *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	snprintf(f->root, sizeof(f->root), "/tmp/husk-cgfake-XXXXXX");
	assert_non_null(mkdtemp(f->root));
	snprintf(f->dir, sizeof(f->dir), "%s/ctr", f->root);
	assert_int_equal(mkdir(f->dir, 0755), 0);
	for (size_t i = 0; i < n; i++)
		write_file(f->dir, files[i], "");
	struct husk_err err = {0};
	int r = jail_cgroup_open(f->root, "/ctr", false, &f->cg, &err);
	if (r < 0)
		fail_msg("open: %s", err.msg);
	*state = f;
	return 0;
}

static int fake_setup(void **state)
{
	return fake_setup_files(state, all_files, sizeof(all_files) / sizeof(all_files[0]));
}

static int fake_setup_empty(void **state)
{
	return fake_setup_files(state, NULL, 0);
}

static int fake_teardown(void **state)
{
	struct fake *f = *state;
	jail_cgroup_free(f->cg);
	DIR *d = opendir(f->dir);
	if (d) {
		struct dirent *de;
		while ((de = readdir(d)))
			if (de->d_name[0] != '.')
				unlinkat(dirfd(d), de->d_name, 0);
		closedir(d);
	}
	rmdir(f->dir);
	rmdir(f->root);
	free(f);
	return 0;
}

#define ASSERT_FILE(f, name, want)                                                         \
	do {                                                                               \
		const char *got_ = read_file((f)->dir, name);                              \
		assert_non_null(got_);                                                     \
		assert_string_equal(got_, want);                                           \
	} while (0)

static int fake_setup_container(void **state)
{
	static const char *const files[] = { "memory.max", "cgroup.procs" };
	fake_setup_files(state, files, sizeof(files) / sizeof(files[0]));
	struct fake *f = *state;
	write_file(f->dir, "memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n");
	return 0;
}

/* ---- (b) apply against a fake directory ---------------------------------- */

static void test_open_fake_path(void **state)
{
	struct fake *f = *state;
	char want[PATH_MAX];
	snprintf(want, sizeof(want), "%s/ctr", f->root);
	assert_string_equal(jail_cgroup_path(f->cg), want);

	/* Relative, with redundant slashes and ".", lands on the same place. */
	struct jail_cgroup *cg = NULL;
	struct husk_err err = {0};
	char mnt[PATH_MAX];
	snprintf(mnt, sizeof(mnt), "%s//", f->root);
	assert_int_equal(jail_cgroup_open(mnt, "./ctr/", false, &cg, &err), 0);
	assert_string_equal(jail_cgroup_path(cg), want);
	jail_cgroup_free(cg);

	/* A missing directory without create is an error naming it. */
	assert_int_equal(jail_cgroup_open(f->root, "/nope", false, &cg, &err), -ENOENT);
	assert_null(cg);
	assert_non_null(strstr(err.msg, "/nope"));
}

static void test_open_refuses_escape(void **state)
{
	(void)state;
	/* The "mount" sits inside a directory of our own, so that what an
	 * escape would create (outer/x) cannot be someone else's /tmp/x. */
	char outer[64] = "/tmp/husk-cgesc-XXXXXX";
	assert_non_null(mkdtemp(outer));
	struct fake fk = {0}, *f = &fk;
	snprintf(f->root, sizeof(f->root), "%s/mnt", outer);
	assert_int_equal(mkdir(f->root, 0755), 0);
	static const char *const bad[] = {"../x", "/a/../../x", "a/..", "..", "/ctr/../ctr"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct jail_cgroup *cg = NULL;
		struct husk_err err = {0};
		assert_int_equal(jail_cgroup_open(f->root, bad[i], true, &cg, &err), -EINVAL);
		assert_null(cg);
		assert_non_null(strstr(err.msg, bad[i]));
		assert_non_null(strstr(err.msg, ".."));
	}
	/* The mount itself is nobody's cgroup. */
	static const char *const root[] = {"", "/", "//", "/./"};
	for (size_t i = 0; i < sizeof(root) / sizeof(root[0]); i++) {
		struct jail_cgroup *cg = NULL;
		struct husk_err err = {0};
		assert_int_equal(jail_cgroup_open(f->root, root[i], false, &cg, &err), -EINVAL);
		assert_non_null(strstr(err.msg, "root"));
	}
	/* Nothing was created outside the mount, nor in it. */
	char outside[PATH_MAX];
	snprintf(outside, sizeof(outside), "%s/x", outer);
	assert_false(exists(outside));
	assert_int_equal(rmdir(f->root), 0);
	assert_int_equal(rmdir(outer), 0);
}

static struct jail_weight_device wdev[] = {
	{.major = 8, .minor = 0, .has_weight = true, .weight = 300},
	{.major = 8, .minor = 16, .has_weight = false}, /* leafWeight only: skipped */
};
static struct jail_throttle rbps[] = {{8, 0, 1048576}, {8, 16, 4096}};
static struct jail_throttle wbps[] = {{8, 0, 2097152}};
static struct jail_throttle riops[] = {{8, 0, 100}};
static struct jail_throttle wiops[] = {{253, 1, 200}};
static struct jail_kv unified[] = {{"memory.oom.group", "1"}, {"memory.high", "max"}};

static struct jail_resources full_resources(void)
{
	struct jail_resources r = {0};
	r.has_memory_limit = true;
	r.memory_limit = 1073741824;
	r.has_memory_reservation = true;
	r.memory_reservation = 536870912;
	r.has_memory_swap = true;
	r.memory_swap = 2147483648;
	r.has_memory_kernel = true; /* ignored on v2 */
	r.has_cpu_shares = true;
	r.cpu_shares = 1024;
	r.has_cpu_quota = true;
	r.cpu_quota = 50000;
	r.has_cpu_period = true;
	r.cpu_period = 100000;
	r.cpu_cpus = "0-1";
	r.cpu_mems = "0";
	r.has_pids_limit = true;
	r.pids_limit = 100;
	r.has_blkio_weight = true;
	r.blkio_weight = 500;
	r.blkio_weight_device = wdev;
	r.n_blkio_weight_device = 2;
	r.throttle_read_bps = rbps;
	r.n_throttle_read_bps = 2;
	r.throttle_write_bps = wbps;
	r.n_throttle_write_bps = 1;
	r.throttle_read_iops = riops;
	r.n_throttle_read_iops = 1;
	r.throttle_write_iops = wiops;
	r.n_throttle_write_iops = 1;
	r.unified = unified;
	r.n_unified = 2;
	return r;
}

static void test_apply_full(void **state)
{
	struct fake *f = *state;
	struct jail_resources res = full_resources();
	struct husk_err err = {0};
	int r = jail_cgroup_apply(f->cg, &res, &err);
	if (r < 0)
		fail_msg("apply: %s", err.msg);
	ASSERT_FILE(f, "memory.max", "1073741824");
	ASSERT_FILE(f, "memory.low", "536870912");
	ASSERT_FILE(f, "memory.swap.max", "1073741824"); /* 2G - 1G */
	ASSERT_FILE(f, "cpu.weight", "39");		 /* 1 + (1022 * 9999) / 262142 */
	ASSERT_FILE(f, "cpu.max", "50000 100000");
	ASSERT_FILE(f, "cpuset.cpus", "0-1");
	ASSERT_FILE(f, "cpuset.mems", "0");
	ASSERT_FILE(f, "pids.max", "100");
	/* 1 + (500 - 10) * 9999 / 990 = 4950; 300 -> 2930 */
	ASSERT_FILE(f, "io.weight", "4950\n8:0 2930\n");
	ASSERT_FILE(f, "io.max",
		    "8:0 rbps=1048576\n8:16 rbps=4096\n8:0 wbps=2097152\n8:0 riops=100\n"
		    "253:1 wiops=200\n");
	ASSERT_FILE(f, "memory.oom.group", "1");
	ASSERT_FILE(f, "memory.high", "max");
	/* Nothing else was touched. */
	ASSERT_FILE(f, "cgroup.procs", "");
	ASSERT_FILE(f, "cgroup.subtree_control", "");
}

static void test_apply_nothing(void **state)
{
	struct fake *f = *state;
	struct jail_resources res = {0};
	struct husk_err err = {0};
	assert_int_equal(jail_cgroup_apply(f->cg, &res, &err), 0);
	for (size_t i = 0; i < sizeof(all_files) / sizeof(all_files[0]); i++)
		ASSERT_FILE(f, all_files[i], "");
}

static void test_apply_bfq(void **state)
{
	struct fake *f = *state;
	/* With BFQ's file present, weights go there on blkio's own scale. */
	write_file(f->dir, "io.bfq.weight", "");
	struct jail_resources res = {0};
	res.has_blkio_weight = true;
	res.blkio_weight = 500;
	res.blkio_weight_device = wdev;
	res.n_blkio_weight_device = 2;
	struct husk_err err = {0};
	assert_int_equal(jail_cgroup_apply(f->cg, &res, &err), 0);
	ASSERT_FILE(f, "io.bfq.weight", "500\n8:0 300\n");
	ASSERT_FILE(f, "io.weight", "");

	/* Per-device weights alone. */
	write_file(f->dir, "io.bfq.weight", "");
	res.has_blkio_weight = false;
	assert_int_equal(jail_cgroup_apply(f->cg, &res, &err), 0);
	ASSERT_FILE(f, "io.bfq.weight", "8:0 300\n");
}

static void test_apply_io_weight_without_scheduler(void **state)
{
	struct fake *f = *state;
	/* The io controller (io.max) without BFQ or iocost has no weights:
	 * refused, naming the field and both files, nothing written. */
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/io.weight", f->dir);
	assert_int_equal(unlink(path), 0);
	struct jail_resources res = {.has_blkio_weight = true, .blkio_weight = 500};
	struct husk_err err = {0};
	assert_int_equal(jail_cgroup_apply(f->cg, &res, &err), -EOPNOTSUPP);
	assert_non_null(strstr(err.msg, "blockIO.weight"));
	assert_non_null(strstr(err.msg, "io.bfq.weight"));
	assert_non_null(strstr(err.msg, "iocost"));
	ASSERT_FILE(f, "io.max", "");
	write_file(f->dir, "io.weight", "");
}

static void test_apply_conversions(void **state)
{
	struct fake *f = *state;
	static const struct {
		uint64_t shares;
		const char *weight;
	} cpu[] = {{2, "1"}, {1, "1"}, {262144, "10000"}, {1000000, "10000"}, {512, "20"},
		   {1024, "39"}, {4096, "157"}};
	for (size_t i = 0; i < sizeof(cpu) / sizeof(cpu[0]); i++) {
		struct jail_resources res = {.has_cpu_shares = true, .cpu_shares = cpu[i].shares};
		assert_int_equal(jail_cgroup_apply(f->cg, &res, NULL), 0);
		ASSERT_FILE(f, "cpu.weight", cpu[i].weight);
	}
	static const struct {
		uint16_t w;
		const char *weight;
	} io[] = {{10, "1\n"}, {1000, "10000\n"}, {500, "4950\n"}, {100, "910\n"}};
	for (size_t i = 0; i < sizeof(io) / sizeof(io[0]); i++) {
		struct jail_resources res = {.has_blkio_weight = true, .blkio_weight = io[i].w};
		assert_int_equal(jail_cgroup_apply(f->cg, &res, NULL), 0);
		ASSERT_FILE(f, "io.weight", io[i].weight);
	}
}

static void test_apply_cpu_max(void **state)
{
	struct fake *f = *state;
	struct {
		bool has_quota;
		int64_t quota;
		bool has_period;
		uint64_t period;
		const char *want;
	} c[] = {
		{true, -1, true, 50000, "max 50000"},
		{false, 0, true, 50000, "max 50000"},
		{true, 20000, false, 0, "20000 100000"},
		{true, -1, false, 0, "max 100000"},
		{true, 150000, true, 1000000, "150000 1000000"},
	};
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct jail_resources res = {.has_cpu_quota = c[i].has_quota,
					     .cpu_quota = c[i].quota,
					     .has_cpu_period = c[i].has_period,
					     .cpu_period = c[i].period};
		assert_int_equal(jail_cgroup_apply(f->cg, &res, NULL), 0);
		ASSERT_FILE(f, "cpu.max", c[i].want);
	}
}

static void test_apply_memory_swap(void **state)
{
	struct fake *f = *state;
	struct husk_err err = {0};
	struct jail_resources res = {.has_memory_limit = true,
				     .memory_limit = 1 << 20,
				     .has_memory_swap = true,
				     .memory_swap = -1};
	assert_int_equal(jail_cgroup_apply(f->cg, &res, &err), 0);
	ASSERT_FILE(f, "memory.swap.max", "max");
	ASSERT_FILE(f, "memory.max", "1048576");

	/* swap == limit: no swap at all. */
	res.memory_swap = 1 << 20;
	assert_int_equal(jail_cgroup_apply(f->cg, &res, &err), 0);
	ASSERT_FILE(f, "memory.swap.max", "0");

	/* Unlimited memory, swap absent: both unlimited (runc). */
	res = (struct jail_resources){.has_memory_limit = true, .memory_limit = -1};
	assert_int_equal(jail_cgroup_apply(f->cg, &res, &err), 0);
	ASSERT_FILE(f, "memory.max", "max");
	ASSERT_FILE(f, "memory.swap.max", "max");

	/* Reservation -1 is "max". */
	res = (struct jail_resources){.has_memory_reservation = true, .memory_reservation = -1};
	assert_int_equal(jail_cgroup_apply(f->cg, &res, &err), 0);
	ASSERT_FILE(f, "memory.low", "max");

	/* memory+swap below memory is refused before anything is written. */
	write_file(f->dir, "memory.max", "");
	res = (struct jail_resources){.has_memory_limit = true,
				      .memory_limit = 2 << 20,
				      .has_memory_swap = true,
				      .memory_swap = 1 << 20};
	assert_int_equal(jail_cgroup_apply(f->cg, &res, &err), -EINVAL);
	assert_string_equal(err.msg, "linux.resources.memory.swap (1048576) must be >= "
				     "linux.resources.memory.limit (2097152): it counts memory "
				     "plus swap");
	ASSERT_FILE(f, "memory.max", "");

	/* A swap limit needs a memory limit. */
	res = (struct jail_resources){.has_memory_swap = true, .memory_swap = 1 << 20};
	assert_int_equal(jail_cgroup_apply(f->cg, &res, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "linux.resources.memory.swap"));
}

static void test_apply_no_swap_accounting(void **state)
{
	struct fake *f = *state;
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/memory.swap.max", f->dir);
	assert_int_equal(unlink(p), 0);
	struct husk_err err = {0};
	/* "0" (and "max") need no swap accounting: tolerated. */
	struct jail_resources res = {.has_memory_limit = true,
				     .memory_limit = 1 << 20,
				     .has_memory_swap = true,
				     .memory_swap = 1 << 20};
	assert_int_equal(jail_cgroup_apply(f->cg, &res, &err), 0);
	ASSERT_FILE(f, "memory.max", "1048576");
	res.memory_swap = -1;
	assert_int_equal(jail_cgroup_apply(f->cg, &res, &err), 0);
	/* A real swap limit is not. */
	res.memory_swap = 2 << 20;
	assert_int_equal(jail_cgroup_apply(f->cg, &res, &err), -EOPNOTSUPP);
	char want[PATH_MAX + 128];
	snprintf(want, sizeof(want),
		 "linux.resources.memory.swap: swap accounting (memory.swap.max) is not "
		 "available in %s",
		 f->dir);
	assert_string_equal(err.msg, want);
}

static void test_apply_pids(void **state)
{
	struct fake *f = *state;
	static const struct {
		int64_t v;
		const char *want;
	} c[] = {{0, "max"}, {-1, "max"}, {1, "1"}, {32768, "32768"}};
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct jail_resources res = {.has_pids_limit = true, .pids_limit = c[i].v};
		assert_int_equal(jail_cgroup_apply(f->cg, &res, NULL), 0);
		ASSERT_FILE(f, "pids.max", c[i].want);
	}
}

static void expect_missing(struct fake *f, const struct jail_resources *res, const char *field,
			   const char *controller)
{
	struct husk_err err = {0};
	assert_int_equal(jail_cgroup_apply(f->cg, res, &err), -EOPNOTSUPP);
	char want[PATH_MAX + 128];
	snprintf(want, sizeof(want), "%s: the %s controller is not available in %s", field,
		 controller, f->dir);
	assert_string_equal(err.msg, want);
}

static void test_apply_missing_controllers(void **state)
{
	struct fake *f = *state; /* an empty directory */
	struct jail_resources res = {.has_memory_limit = true, .memory_limit = 1 << 20};
	expect_missing(f, &res, "linux.resources.memory.limit", "memory");
	res = (struct jail_resources){.has_memory_reservation = true, .memory_reservation = 1};
	expect_missing(f, &res, "linux.resources.memory.reservation", "memory");
	res = (struct jail_resources){.has_memory_limit = true,
				      .memory_limit = 1 << 20,
				      .has_memory_swap = true,
				      .memory_swap = 2 << 20};
	expect_missing(f, &res, "linux.resources.memory.swap", "memory");
	res = (struct jail_resources){.has_cpu_shares = true, .cpu_shares = 1024};
	expect_missing(f, &res, "linux.resources.cpu.shares", "cpu");
	res = (struct jail_resources){.has_cpu_quota = true, .cpu_quota = 1000};
	expect_missing(f, &res, "linux.resources.cpu.quota", "cpu");
	res = (struct jail_resources){.cpu_cpus = "0"};
	expect_missing(f, &res, "linux.resources.cpu.cpus", "cpuset");
	res = (struct jail_resources){.has_pids_limit = true, .pids_limit = 5};
	expect_missing(f, &res, "linux.resources.pids.limit", "pids");
	res = (struct jail_resources){.has_blkio_weight = true, .blkio_weight = 100};
	expect_missing(f, &res, "linux.resources.blockIO.weight", "io");
	res = (struct jail_resources){.throttle_write_iops = wiops, .n_throttle_write_iops = 1};
	expect_missing(f, &res, "linux.resources.blockIO.throttleWriteIOPSDevice", "io");
	struct jail_kv kv[] = {{"hugetlb.1GB.max", "0"}};
	res = (struct jail_resources){.unified = kv, .n_unified = 1};
	expect_missing(f, &res, "linux.resources.unified.hugetlb.1GB.max", "hugetlb");
	/* Nothing asked: nothing needed. */
	res = (struct jail_resources){0};
	assert_int_equal(jail_cgroup_apply(f->cg, &res, NULL), 0);
}

static void test_apply_unified_names(void **state)
{
	struct fake *f = *state;
	static const char *const bad[] = {"../memory.max", "a/b", "..", "", "/memory.max",
					  "memory..max"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct jail_kv kv[] = {{(char *)bad[i], "1"}};
		struct jail_resources res = {.unified = kv, .n_unified = 1};
		struct husk_err err = {0};
		assert_int_equal(jail_cgroup_apply(f->cg, &res, &err), -EINVAL);
		assert_non_null(strstr(err.msg, "linux.resources.unified"));
		char quoted[64];
		snprintf(quoted, sizeof(quoted), "\"%s\"", bad[i]);
		assert_non_null(strstr(err.msg, quoted));
	}
	char outside[PATH_MAX];
	snprintf(outside, sizeof(outside), "%s/memory.max", f->root);
	assert_false(exists(outside));
	ASSERT_FILE(f, "memory.max", "");

	/* Values are written verbatim. */
	struct jail_kv kv[] = {{"memory.high", "123 456\n"}};
	struct jail_resources res = {.unified = kv, .n_unified = 1};
	assert_int_equal(jail_cgroup_apply(f->cg, &res, NULL), 0);
	ASSERT_FILE(f, "memory.high", "123 456\n");
}

/* ---- (b) stats and state parsing ----------------------------------------- */

static const char memory_stat[] =
	"anon 1000\nfile 2000\nkernel 9999\nkernel_stack 3000\npagetables 1\nsec_pagetables 0\n"
	"percpu 2\nsock 4000\nvmalloc 0\nshmem 5000\nzswap 0\nzswapped 0\nfile_mapped 6000\n"
	"file_dirty 7000\nfile_writeback 8000\nswapcached 0\nanon_thp 9000\nfile_thp 0\n"
	"shmem_thp 0\ninactive_anon 10000\nactive_anon 11000\ninactive_file 12000\n"
	"active_file 13000\nunevictable 14000\nslab_reclaimable 15000\n"
	"slab_unreclaimable 16000\nslab 31000\nworkingset_refault_anon 1\n"
	"workingset_refault_file 2\nworkingset_refault 17\nworkingset_activate 18\n"
	"workingset_nodereclaim 19\npgscan 20\npgsteal 21\npgscan_kswapd 0\npgrefill 22\n"
	"pgactivate 23\npgdeactivate 24\npglazyfree 25\npglazyfreed 26\nthp_fault_alloc 27\n"
	"thp_collapse_alloc 28\npgfault 29\npgmajfault 30\n";

static void test_stats_parse(void **state)
{
	struct fake *f = *state;
	write_file(f->dir, "pids.current", "7\n");
	write_file(f->dir, "pids.max", "max\n");
	write_file(f->dir, "cpu.stat",
		   "usage_usec 100\nuser_usec 60\nsystem_usec 40\ncore_sched.force_idle_usec 0\n"
		   "nr_periods 5\nnr_throttled 2\nthrottled_usec 300\nnr_bursts 0\n"
		   "burst_usec 0\n");
	write_file(f->dir, "memory.current", "123456\n");
	write_file(f->dir, "memory.max", "max\n");
	write_file(f->dir, "memory.swap.current", "42\n");
	write_file(f->dir, "memory.swap.max", "1048576\n");
	write_file(f->dir, "memory.stat", memory_stat);
	write_file(f->dir, "memory.events", "low 1\nhigh 2\nmax 3\noom 4\noom_kill 5\n"
					    "oom_group_kill 0\n");
	write_file(f->dir, "io.stat",
		   "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0\n"
		   "253:16 rbytes=1099511627776 wbytes=20 rios=30 wios=40 dbytes=5 dios=6\n");

	struct jail_cgroup_stats st;
	struct husk_err err = {0};
	assert_int_equal(jail_cgroup_stats(f->cg, &st, &err), 0);
	assert_int_equal(st.pids.current, 7);
	assert_true(st.pids.limit == UINT64_MAX);
	assert_int_equal(st.cpu.usage_usec, 100);
	assert_int_equal(st.cpu.user_usec, 60);
	assert_int_equal(st.cpu.system_usec, 40);
	assert_int_equal(st.cpu.nr_periods, 5);
	assert_int_equal(st.cpu.nr_throttled, 2);
	assert_int_equal(st.cpu.throttled_usec, 300);
	assert_int_equal(st.memory.usage, 123456);
	assert_true(st.memory.usage_limit == UINT64_MAX);
	assert_int_equal(st.memory.swap_usage, 42);
	assert_int_equal(st.memory.swap_limit, 1048576);
	assert_int_equal(st.memory.anon, 1000);
	assert_int_equal(st.memory.file, 2000);
	assert_int_equal(st.memory.kernel_stack, 3000);
	assert_int_equal(st.memory.slab, 31000);
	assert_int_equal(st.memory.sock, 4000);
	assert_int_equal(st.memory.shmem, 5000);
	assert_int_equal(st.memory.file_mapped, 6000);
	assert_int_equal(st.memory.file_dirty, 7000);
	assert_int_equal(st.memory.file_writeback, 8000);
	assert_int_equal(st.memory.anon_thp, 9000);
	assert_int_equal(st.memory.inactive_anon, 10000);
	assert_int_equal(st.memory.active_anon, 11000);
	assert_int_equal(st.memory.inactive_file, 12000);
	assert_int_equal(st.memory.active_file, 13000);
	assert_int_equal(st.memory.unevictable, 14000);
	assert_int_equal(st.memory.slab_reclaimable, 15000);
	assert_int_equal(st.memory.slab_unreclaimable, 16000);
	assert_int_equal(st.memory.workingset_refault, 17);
	assert_int_equal(st.memory.workingset_activate, 18);
	assert_int_equal(st.memory.workingset_nodereclaim, 19);
	assert_int_equal(st.memory.pgscan, 20);
	assert_int_equal(st.memory.pgsteal, 21);
	assert_int_equal(st.memory.pgrefill, 22);
	assert_int_equal(st.memory.pgactivate, 23);
	assert_int_equal(st.memory.pgdeactivate, 24);
	assert_int_equal(st.memory.pglazyfree, 25);
	assert_int_equal(st.memory.pglazyfreed, 26);
	assert_int_equal(st.memory.thp_fault_alloc, 27);
	assert_int_equal(st.memory.thp_collapse_alloc, 28);
	assert_int_equal(st.memory.pgfault, 29);
	assert_int_equal(st.memory.pgmajfault, 30);
	assert_true(st.memory_events.present);
	assert_int_equal(st.memory_events.low, 1);
	assert_int_equal(st.memory_events.high, 2);
	assert_int_equal(st.memory_events.max, 3);
	assert_int_equal(st.memory_events.oom, 4);
	assert_int_equal(st.memory_events.oom_kill, 5);
	assert_int_equal(st.n_io, 2);
	assert_int_equal(st.io[0].major, 8);
	assert_int_equal(st.io[0].minor, 0);
	assert_int_equal(st.io[0].rbytes, 1);
	assert_int_equal(st.io[0].wbytes, 2);
	assert_int_equal(st.io[0].rios, 3);
	assert_int_equal(st.io[0].wios, 4);
	assert_int_equal(st.io[1].major, 253);
	assert_int_equal(st.io[1].minor, 16);
	assert_true(st.io[1].rbytes == 1099511627776ull);
	assert_int_equal(st.io[1].wbytes, 20);
	assert_int_equal(st.io[1].rios, 30);
	assert_int_equal(st.io[1].wios, 40);
	jail_cgroup_stats_free(&st);
	assert_null(st.io);

	uint64_t kills = 0;
	assert_int_equal(jail_cgroup_oom_kills(f->cg, &kills, &err), 0);
	assert_int_equal(kills, 5);
}

static void test_stats_missing_files(void **state)
{
	struct fake *f = *state; /* empty: no controller enabled */
	struct jail_cgroup_stats st, zero;
	memset(&st, 0xa5, sizeof(st));
	memset(&zero, 0, sizeof(zero));
	struct husk_err err = {0};
	assert_int_equal(jail_cgroup_stats(f->cg, &st, &err), 0);
	assert_memory_equal(&st, &zero, sizeof(st));
	jail_cgroup_stats_free(&st);
	uint64_t kills = 99;
	assert_int_equal(jail_cgroup_oom_kills(f->cg, &kills, &err), 0);
	assert_int_equal(kills, 0);
	assert_false(jail_cgroup_populated(f->cg));
}

static void test_pids_and_events_fake(void **state)
{
	struct fake *f = *state;
	write_file(f->dir, "cgroup.procs", "12\n34\n5678\n");
	pid_t *pids = NULL;
	size_t n = 0;
	struct husk_err err = {0};
	assert_int_equal(jail_cgroup_pids(f->cg, &pids, &n, &err), 0);
	assert_int_equal(n, 3);
	assert_int_equal(pids[0], 12);
	assert_int_equal(pids[1], 34);
	assert_int_equal(pids[2], 5678);
	free(pids);

	write_file(f->dir, "cgroup.procs", "");
	assert_int_equal(jail_cgroup_pids(f->cg, &pids, &n, &err), 0);
	assert_int_equal(n, 0);
	assert_null(pids);

	write_file(f->dir, "cgroup.events", "populated 1\nfrozen 0\n");
	assert_true(jail_cgroup_populated(f->cg));
	write_file(f->dir, "cgroup.events", "populated 0\nfrozen 0\n");
	assert_false(jail_cgroup_populated(f->cg));
}

/* The cgroup.kill fallback: a fake cgroup (no cgroup.kill) listing a live
 * child. A thread reaps it so the fallback sees it gone. */
struct reaper {
	pid_t pid;
	int status;
};

static void *reap(void *arg)
{
	struct reaper *r = arg;
	while (waitpid(r->pid, &r->status, 0) < 0 && errno == EINTR) {
	}
	return NULL;
}

static void test_kill_fallback_fake(void **state)
{
	struct fake *f = *state;
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		for (;;)
			pause();
	}
	char line[32];
	snprintf(line, sizeof(line), "%d\n", (int)child);
	write_file(f->dir, "cgroup.procs", line);
	struct reaper rp = {.pid = child};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, reap, &rp), 0);
	struct husk_err err = {0};
	int r = jail_cgroup_kill(f->cg, &err);
	if (r < 0) {
		kill(child, SIGKILL);
		pthread_join(t, NULL);
		fail_msg("kill: %s", err.msg);
	}
	pthread_join(t, NULL);
	assert_true(WIFSIGNALED(rp.status));
	assert_int_equal(WTERMSIG(rp.status), SIGKILL);
}

/* ---- (a) the real cgroup2 hierarchy --------------------------------------- */

struct real {
	const char *mount;
	char top[256];	     /* absolute path of this test's top cgroup */
	char name[64];	     /* "/husk-test-PID-N" */
};

static const char *real_mount(void)
{
	static const char *const cands[] = {"/sys/fs/cgroup/unified", "/sys/fs/cgroup"};
	for (size_t i = 0; i < 2; i++)
		if (is_cgroup2(cands[i]))
			return cands[i];
	return NULL;
}

static int real_setup(void **state)
{
	static int counter;
	struct real *rl = calloc(1, sizeof(*rl));
	assert_non_null(rl);
	rl->mount = real_mount();
	snprintf(rl->name, sizeof(rl->name), "/husk-test-%d-%d", (int)getpid(), ++counter);
	if (rl->mount)
		snprintf(rl->top, sizeof(rl->top), "%s%s", rl->mount, rl->name);
	*state = rl;
	return 0;
}

#define REQUIRE_REAL(rl)                                                                   \
	do {                                                                               \
		if (!(rl)->mount || geteuid() != 0) {                                      \
			print_message("no cgroup2 mount or not root: skipped\n");           \
			skip();                                                            \
		}                                                                          \
	} while (0)

/* Best-effort removal of whatever a failed test left below `path`. */
static void force_remove(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return;
	write_file(path, "cgroup.kill", "1");
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_type != DT_DIR || de->d_name[0] == '.')
			continue;
		char sub[PATH_MAX];
		snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
		force_remove(sub);
	}
	closedir(d);
	for (int i = 0; i < 100 && rmdir(path) < 0 && errno == EBUSY; i++)
		sleep_ms(10);
}

static int real_teardown(void **state)
{
	struct real *rl = *state;
	if (rl->mount && exists(rl->top))
		force_remove(rl->top);
	free(rl);
	return 0;
}

static const char *events_value(const char *dir, const char *key)
{
	const char *c = read_file(dir, "cgroup.events");
	if (!c)
		return NULL;
	const char *p = strstr(c, key);
	return p ? p + strlen(key) + 1 : NULL;
}

static void test_check_usable(void **state)
{
	struct real *rl = *state;
	struct husk_err err = {0};
	char tmp[] = "/tmp/husk-cgnot-XXXXXX";
	assert_non_null(mkdtemp(tmp));
	assert_int_equal(jail_cgroup_check_usable(tmp, &err), -EOPNOTSUPP);
	rmdir(tmp);
	char want[128];
	snprintf(want, sizeof(want), "%s is not a cgroup2 mount (hybrid or v1 host)", tmp);
	assert_non_null(strstr(err.msg, want));
	assert_non_null(strstr(err.msg, "--no-cgroups"));

	assert_true(jail_cgroup_check_usable("/nonexistent-husk", &err) < 0);
	assert_non_null(strstr(err.msg, "/nonexistent-husk"));
	assert_non_null(strstr(err.msg, "--no-cgroups"));

	REQUIRE_REAL(rl);
	assert_int_equal(jail_cgroup_check_usable(rl->mount, &err), 0);
	if (!is_cgroup2("/sys/fs/cgroup")) {
		/* This host: hybrid, tmpfs at /sys/fs/cgroup. */
		assert_int_equal(jail_cgroup_check_usable("/sys/fs/cgroup", &err), -EOPNOTSUPP);
		assert_non_null(strstr(err.msg, "/sys/fs/cgroup is not a cgroup2 mount (hybrid "
						"or v1 host)"));
		assert_non_null(strstr(err.msg, "run with --no-cgroups or mount cgroup2"));
	}
}

/* Child for the freeze test: a byte on `fd` every 50 ms. */
static void ticker(int fd)
{
	for (;;) {
		if (write(fd, "x", 1) < 0)
			_exit(1);
		sleep_ms(50);
	}
}

static size_t drain(int fd)
{
	char buf[4096];
	size_t total = 0;
	ssize_t n;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		total += (size_t)n;
	return total;
}

static void test_lifecycle(void **state)
{
	struct real *rl = *state;
	REQUIRE_REAL(rl);
	struct husk_err err = {0};
	struct jail_cgroup *cg = NULL;
	int r = jail_cgroup_open(rl->mount, rl->name, true, &cg, &err);
	if (r < 0)
		fail_msg("open: %s", err.msg);
	assert_string_equal(jail_cgroup_path(cg), rl->top);
	assert_true(exists(rl->top));
	assert_false(jail_cgroup_populated(cg));

	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		close(p[0]);
		ticker(p[1]);
	}
	close(p[1]);
	assert_int_equal(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);

	assert_int_equal(jail_cgroup_enter(cg, child, &err), 0);
	pid_t *pids = NULL;
	size_t n = 0;
	assert_int_equal(jail_cgroup_pids(cg, &pids, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(pids[0], child);
	free(pids);
	assert_true(jail_cgroup_populated(cg));

	int evfd = jail_cgroup_events_fd(cg);
	assert_true(evfd >= 0);

	/* Frozen: the kernel says so, and the child's writes stop. */
	r = jail_cgroup_freeze(cg, true, &err);
	if (r < 0)
		fail_msg("freeze: %s", err.msg);
	assert_non_null(events_value(rl->top, "frozen"));
	assert_int_equal(events_value(rl->top, "frozen")[0], '1');
	drain(p[0]);
	sleep_ms(300);
	assert_int_equal(drain(p[0]), 0);

	/* Thawed: the writes resume. */
	r = jail_cgroup_freeze(cg, false, &err);
	if (r < 0)
		fail_msg("thaw: %s", err.msg);
	assert_int_equal(events_value(rl->top, "frozen")[0], '0');
	struct pollfd pfd = {.fd = p[0], .events = POLLIN};
	assert_int_equal(poll(&pfd, 1, HANG_GUARD_MS), 1);
	assert_true(drain(p[0]) > 0);

	/* The freeze and thaw were noticed on the events fd; consume that. */
	drain(evfd);

	/* Kill: the child dies of SIGKILL and the cgroup empties, which the
	 * events fd reports. */
	r = jail_cgroup_kill(cg, &err);
	if (r < 0)
		fail_msg("kill: %s", err.msg);
	int status;
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGKILL);
	pfd = (struct pollfd){.fd = evfd, .events = POLLIN};
	assert_int_equal(poll(&pfd, 1, HANG_GUARD_MS), 1);
	assert_false(jail_cgroup_populated(cg));
	assert_int_equal(jail_cgroup_pids(cg, &pids, &n, &err), 0);
	assert_int_equal(n, 0);
	close(evfd);
	close(p[0]);

	r = jail_cgroup_destroy(cg, &err);
	if (r < 0)
		fail_msg("destroy: %s", err.msg);
	assert_false(exists(rl->top));
	assert_int_equal(errno, ENOENT);
}

static void test_enter_self(void **state)
{
	struct real *rl = *state;
	REQUIRE_REAL(rl);
	struct husk_err err = {0};
	struct jail_cgroup *cg = NULL;
	assert_int_equal(jail_cgroup_open(rl->mount, rl->name, true, &cg, &err), 0);
	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		/* pid 0: the caller moves itself. */
		char ok = jail_cgroup_enter(cg, 0, NULL) == 0 ? 'y' : 'n';
		if (write(p[1], &ok, 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(p[1]);
	char ok = 0;
	assert_int_equal(read(p[0], &ok, 1), 1);
	close(p[0]);
	assert_int_equal(ok, 'y');
	pid_t *pids = NULL;
	size_t n = 0;
	assert_int_equal(jail_cgroup_pids(cg, &pids, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(pids[0], child);
	free(pids);

	/* destroy kills what is left, frozen or not, waits for it, and
	 * removes the group. */
	int r = jail_cgroup_freeze(cg, true, &err);
	if (r < 0)
		fail_msg("freeze: %s", err.msg);
	r = jail_cgroup_destroy(cg, &err);
	if (r < 0)
		fail_msg("destroy: %s", err.msg);
	int status;
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGKILL);
	assert_false(exists(rl->top));
}

static void test_nested(void **state)
{
	struct real *rl = *state;
	REQUIRE_REAL(rl);
	struct husk_err err = {0};
	char path[PATH_MAX], a[PATH_MAX], b[PATH_MAX], c1[PATH_MAX], c2[PATH_MAX];
	snprintf(a, sizeof(a), "%s/a", rl->top);
	snprintf(b, sizeof(b), "%s/a/b", rl->top);

	/* All of top/a/b made, all removed. */
	snprintf(path, sizeof(path), "%s/a/b", rl->name);
	struct jail_cgroup *cg = NULL;
	assert_int_equal(jail_cgroup_open(rl->mount, path, true, &cg, &err), 0);
	assert_true(exists(b));
	/* Ancestors offer the leaf what the mount offers (here: hugetlb). */
	const char *avail = read_file(rl->mount, "cgroup.controllers");
	assert_non_null(avail);
	if (strstr(avail, "hugetlb")) {
		const char *sc = read_file(a, "cgroup.subtree_control");
		assert_non_null(sc);
		assert_non_null(strstr(sc, "hugetlb"));
		const char *leaf = read_file(b, "cgroup.controllers");
		assert_non_null(leaf);
		assert_non_null(strstr(leaf, "hugetlb"));
		/* ... and the leaf itself enables nothing, so it can hold
		 * processes. */
		assert_string_equal(read_file(b, "cgroup.subtree_control"), "");
	}
	assert_int_equal(jail_cgroup_destroy(cg, &err), 0);
	assert_false(exists(b));
	assert_false(exists(a));
	assert_false(exists(rl->top));

	/* A pre-existing ancestor is not ours to remove. */
	assert_int_equal(mkdir(rl->top, 0755), 0);
	assert_int_equal(jail_cgroup_open(rl->mount, path, true, &cg, &err), 0);
	assert_int_equal(jail_cgroup_destroy(cg, &err), 0);
	assert_false(exists(a));
	assert_true(exists(rl->top));

	/* Two leaves share created ancestors: removing the first leaves the
	 * ancestors its sibling needs (EBUSY is fine), and the second, which
	 * created no ancestor, removes only itself. */
	snprintf(path, sizeof(path), "%s/a/c1", rl->name);
	snprintf(c1, sizeof(c1), "%s/a/c1", rl->top);
	snprintf(c2, sizeof(c2), "%s/a/c2", rl->top);
	struct jail_cgroup *cg1 = NULL, *cg2 = NULL;
	assert_int_equal(jail_cgroup_open(rl->mount, path, true, &cg1, &err), 0);
	snprintf(path, sizeof(path), "%s/a/c2", rl->name);
	assert_int_equal(jail_cgroup_open(rl->mount, path, true, &cg2, &err), 0);
	assert_int_equal(jail_cgroup_destroy(cg1, &err), 0);
	assert_false(exists(c1));
	assert_true(exists(c2));
	assert_true(exists(a));
	assert_int_equal(jail_cgroup_destroy(cg2, &err), 0);
	assert_false(exists(c2));
	assert_true(exists(a));

	/* Opening without create, destroy removes the leaf only, including
	 * child cgroups the container made below it. */
	assert_int_equal(mkdir(b, 0755), 0);
	snprintf(path, sizeof(path), "%s/a/b/inner", rl->top);
	assert_int_equal(mkdir(path, 0755), 0);
	snprintf(path, sizeof(path), "%s/a/b", rl->name);
	assert_int_equal(jail_cgroup_open(rl->mount, path, false, &cg, &err), 0);
	assert_int_equal(jail_cgroup_destroy(cg, &err), 0);
	assert_false(exists(b));
	assert_true(exists(a));

	assert_int_equal(rmdir(a), 0);
	assert_int_equal(rmdir(rl->top), 0);
}

static void test_escape_real(void **state)
{
	struct real *rl = *state;
	REQUIRE_REAL(rl);
	struct husk_err err = {0};
	struct jail_cgroup *cg = NULL;
	assert_int_equal(jail_cgroup_open(rl->mount, "../x", true, &cg, &err), -EINVAL);
	assert_null(cg);
	assert_non_null(strstr(err.msg, "\"../x\""));
	char sib[PATH_MAX];
	snprintf(sib, sizeof(sib), "%s/../x", rl->mount);
	assert_false(exists(sib));
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/../../x", rl->name);
	assert_int_equal(jail_cgroup_open(rl->mount, path, true, &cg, &err), -EINVAL);
	assert_false(exists(rl->top));
}

static void test_memory_unavailable_real(void **state)
{
	struct real *rl = *state;
	REQUIRE_REAL(rl);
	const char *avail = read_file(rl->mount, "cgroup.controllers");
	assert_non_null(avail);
	if (strstr(avail, "memory")) {
		print_message("this host has the v2 memory controller: skipped\n");
		skip();
	}
	struct husk_err err = {0};
	struct jail_cgroup *cg = NULL;
	assert_int_equal(jail_cgroup_open(rl->mount, rl->name, true, &cg, &err), 0);
	struct jail_resources res = {.has_memory_limit = true, .memory_limit = 64 << 20};
	assert_int_equal(jail_cgroup_apply(cg, &res, &err), -EOPNOTSUPP);
	char want[PATH_MAX + 128];
	snprintf(want, sizeof(want),
		 "linux.resources.memory.limit: the memory controller is not available in %s",
		 rl->top);
	assert_string_equal(err.msg, want);
	/* An empty set of resources, and unified files every cgroup has, work. */
	struct jail_kv kv[] = {{"cgroup.max.descendants", "5"}};
	res = (struct jail_resources){.unified = kv, .n_unified = 1};
	assert_int_equal(jail_cgroup_apply(cg, &res, &err), 0);
	assert_string_equal(read_file(rl->top, "cgroup.max.descendants"), "5\n");
	assert_int_equal(jail_cgroup_destroy(cg, &err), 0);
}

static void test_stats_real(void **state)
{
	struct real *rl = *state;
	REQUIRE_REAL(rl);
	struct husk_err err = {0};
	struct jail_cgroup *cg = NULL;
	assert_int_equal(jail_cgroup_open(rl->mount, rl->name, true, &cg, &err), 0);
	int go[2], done[2];
	assert_int_equal(pipe2(go, O_CLOEXEC), 0);
	assert_int_equal(pipe2(done, O_CLOEXEC), 0);
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		char c;
		/* Wait until moved, then use some CPU inside the group. */
		if (read(go[0], &c, 1) != 1)
			_exit(1);
		volatile uint64_t x = 0;
		for (uint64_t i = 0; i < 50000000; i++)
			x += i;
		if (write(done[1], "d", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(go[0]);
	close(done[1]);
	assert_int_equal(jail_cgroup_enter(cg, child, &err), 0);
	assert_int_equal(write(go[1], "g", 1), 1);
	char c = 0;
	assert_int_equal(read(done[0], &c, 1), 1);
	close(go[1]);
	close(done[0]);
	struct jail_cgroup_stats st;
	assert_int_equal(jail_cgroup_stats(cg, &st, &err), 0);
	/* cpu.stat's core fields exist in every v2 cgroup. */
	assert_true(st.cpu.usage_usec > 0);
	assert_true(st.cpu.usage_usec >= st.cpu.user_usec);
	jail_cgroup_stats_free(&st);
	assert_int_equal(jail_cgroup_destroy(cg, &err), 0);
	int status;
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFSIGNALED(status));
}

/* ---- why a container's init died during setup ------------------------------ */

/* The OOM killer cannot be made to strike during setup on a host whose
 * cgroup2 mount has no memory controller (the development machine), so a
 * createRuntime hook plays it on a fake cgroup: it SIGKILLs the init, which
 * waits for the runtime's go, and, as the kernel would, counts the kill in
 * memory.events. Create must then say why the init died. */
static struct jail_container *create_with_killer(struct fake *f, const char *mode,
						 const char *resources, struct husk_err *err,
						 int *r)
{
	char hook[512], json[8192];
	snprintf(hook, sizeof(hook), "%s/oom-hook.sh", f->root);
	write_file(f->root, "oom-hook.sh",
		   "#!/bin/sh\n"
		   "pid=$(sed -n 's/.*\"pid\":\\([0-9]*\\).*/\\1/p')\n"
		   "[ \"$1\" = oom ] && printf 'low 0\\nhigh 0\\nmax 3\\noom 1\\noom_kill 1\\n' "
		   ">\"$2/memory.events\"\n"
		   "kill -9 \"$pid\"\n");
	assert_int_equal(chmod(hook, 0755), 0);
	snprintf(json, sizeof(json),
		 "{\"ociVersion\":\"1.0.2\",\"root\":{\"path\":\"/\"},"
		 "\"process\":{\"user\":{\"uid\":0,\"gid\":0},\"args\":[\"true\"],\"cwd\":\"/\"},"
		 "\"hooks\":{\"createRuntime\":[{\"path\":\"%s\",\"args\":[\"hook\",\"%s\",\"%s\"]}]},"
		 "\"linux\":{\"namespaces\":[{\"type\":\"mount\"}],\"cgroupsPath\":\"/ctr\"%s}}",
		 hook, mode, f->dir, resources);
	struct jail_spec *spec = NULL;
	assert_int_equal(jail_spec_parse(json, strlen(json), NULL, &spec, err), 0);
	struct jail_create_opts opts = {
		.id = "early",
		.bundle = f->root,
		.state_dir = f->root,
		.cgroup_mount = f->root,
		.stdio = { -1, -1, -1 },
		.no_exec_fifo = true,
	};
	struct jail_container *c = NULL;
	*r = jail_container_create(spec, &opts, &c, err);
	jail_spec_free(spec);
	unlink(hook);
	return c;
}

static void test_init_oom_killed_names_limit(void **state)
{
	struct fake *f = *state;
	if (geteuid() != 0)
		skip();
	struct husk_err err = {0};
	int r;
	struct jail_container *c = create_with_killer(
		f, "oom", ",\"resources\":{\"memory\":{\"limit\":4096}}", &err, &r);
	assert_null(c);
	assert_int_equal(r, -ENOMEM);
	assert_string_equal(err.msg, "linux.resources.memory.limit 4096: too small for the "
				     "container's init (killed by the OOM killer before exec)");
	/* create wrote the limit before the init existed */
	ASSERT_FILE(f, "memory.max", "4096");

	/* The OOM killer without a limit of ours (an ancestor's): the
	 * cgroup is named instead. */
	write_file(f->dir, "memory.events", "oom_kill 0\n");
	c = create_with_killer(f, "oom", "", &err, &r);
	assert_null(c);
	assert_int_equal(r, -ENOMEM);
	assert_non_null(strstr(err.msg, "the init was killed by the OOM killer of cgroup"));
	assert_non_null(strstr(err.msg, "/ctr before exec (memory.events oom_kill 1)"));
}

/* Killed by something else: the wait status says so, the OOM killer is
 * not blamed. */
static void test_init_killed_says_signal(void **state)
{
	struct fake *f = *state;
	if (geteuid() != 0)
		skip();
	struct husk_err err = {0};
	int r;
	struct jail_container *c = create_with_killer(
		f, "kill", ",\"resources\":{\"memory\":{\"limit\":1048576}}", &err, &r);
	assert_null(c);
	assert_int_equal(r, -EPIPE);
	assert_string_equal(err.msg, "container setup: init process exited early: killed by "
				     "signal 9 (Killed)");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_open_fake_path, fake_setup, fake_teardown),
		cmocka_unit_test(test_open_refuses_escape),
		cmocka_unit_test_setup_teardown(test_apply_full, fake_setup, fake_teardown),
		cmocka_unit_test_setup_teardown(test_apply_nothing, fake_setup, fake_teardown),
		cmocka_unit_test_setup_teardown(test_apply_bfq, fake_setup, fake_teardown),
		cmocka_unit_test_setup_teardown(test_apply_io_weight_without_scheduler, fake_setup,
						fake_teardown),
		cmocka_unit_test_setup_teardown(test_apply_conversions, fake_setup, fake_teardown),
		cmocka_unit_test_setup_teardown(test_apply_cpu_max, fake_setup, fake_teardown),
		cmocka_unit_test_setup_teardown(test_apply_memory_swap, fake_setup, fake_teardown),
		cmocka_unit_test_setup_teardown(test_apply_no_swap_accounting, fake_setup,
						fake_teardown),
		cmocka_unit_test_setup_teardown(test_apply_pids, fake_setup, fake_teardown),
		cmocka_unit_test_setup_teardown(test_apply_missing_controllers, fake_setup_empty,
						fake_teardown),
		cmocka_unit_test_setup_teardown(test_apply_unified_names, fake_setup,
						fake_teardown),
		cmocka_unit_test_setup_teardown(test_stats_parse, fake_setup_empty, fake_teardown),
		cmocka_unit_test_setup_teardown(test_stats_missing_files, fake_setup_empty,
						fake_teardown),
		cmocka_unit_test_setup_teardown(test_pids_and_events_fake, fake_setup_empty,
						fake_teardown),
		cmocka_unit_test_setup_teardown(test_kill_fallback_fake, fake_setup_empty,
						fake_teardown),
		cmocka_unit_test_setup_teardown(test_init_oom_killed_names_limit,
						fake_setup_container, fake_teardown),
		cmocka_unit_test_setup_teardown(test_init_killed_says_signal, fake_setup_container,
						fake_teardown),
		cmocka_unit_test_setup_teardown(test_check_usable, real_setup, real_teardown),
		cmocka_unit_test_setup_teardown(test_lifecycle, real_setup, real_teardown),
		cmocka_unit_test_setup_teardown(test_enter_self, real_setup, real_teardown),
		cmocka_unit_test_setup_teardown(test_nested, real_setup, real_teardown),
		cmocka_unit_test_setup_teardown(test_escape_real, real_setup, real_teardown),
		cmocka_unit_test_setup_teardown(test_memory_unavailable_real, real_setup,
						real_teardown),
		cmocka_unit_test_setup_teardown(test_stats_real, real_setup, real_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
