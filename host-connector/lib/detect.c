/* What this host offers: accelerator, vsock transport, TSC rate, default
 * paths and directories. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <linux/vhost.h>

#include "husk/cleanup.h"
#include "husk/path.h"
#include "internal.h"

static const char *const accel_names[] = { "auto", "kvm", "tcg" };
static const char *const transport_names[] = { "auto", "vhost", "hybrid", "unix" };

const char *husk_accel_name(enum husk_accel a)
{
	return (unsigned)a < ARRAY_SIZE(accel_names) ? accel_names[a] : "?";
}

const char *husk_transport_name(enum husk_transport t)
{
	return (unsigned)t < ARRAY_SIZE(transport_names) ? transport_names[t] : "?";
}

int husk_accel_parse(const char *s, enum husk_accel *out, struct husk_err *err)
{
	for (unsigned i = 0; i < ARRAY_SIZE(accel_names); i++)
		if (s && strcmp(s, accel_names[i]) == 0) {
			*out = (enum husk_accel)i;
			return 0;
		}
	return husk_err_set(err, -EINVAL, "accel \"%s\": want auto, kvm or tcg", s ? s : "");
}

int husk_transport_parse(const char *s, enum husk_transport *out, struct husk_err *err)
{
	for (unsigned i = 0; i < ARRAY_SIZE(transport_names); i++)
		if (s && strcmp(s, transport_names[i]) == 0) {
			*out = (enum husk_transport)i;
			return 0;
		}
	return husk_err_set(err, -EINVAL, "vsock transport \"%s\": want auto, vhost or hybrid",
			    s ? s : "");
}

int husk_host_limits(struct husk_host_limits *out, struct husk_err *err)
{
	struct sysinfo si;
	if (sysinfo(&si) < 0)
		return husk_err_sys(err, -errno, "sysinfo: the host's memory");
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	if (cpus < 1)
		return husk_err_sys(err, -errno, "sysconf: the host's online CPUs");
	/* sysinfo's totalram is /proc/meminfo's MemTotal. */
	uint64_t mib = (uint64_t)si.totalram * si.mem_unit >> 20;
	out->memory_mib = mib > UINT_MAX ? UINT_MAX : (unsigned)mib;
	out->cpus = (unsigned)cpus;
	return 0;
}

/* Hardware virtualisation shows as vmx (Intel) or svm (AMD) in the flags. */
static bool cpu_has_hw_virt(void)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/cpuinfo", "re");
	if (!f)
		return false;
	char line[4096];
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "flags", 5) != 0)
			continue;
		return strstr(line, " vmx") || strstr(line, " svm");
	}
	return false;
}

enum husk_accel husk_accel_detect(char *why, size_t why_len)
{
	char dummy[8];
	if (!why) {
		why = dummy;
		why_len = sizeof(dummy);
	}
	_cleanup_fd_ int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, why_len, "/dev/kvm: %s", strerror(errno));
		return HUSK_ACCEL_TCG;
	}
	/* PVM runs KVM without hardware support; stock kernels hang on it. */
	if (access("/sys/module/kvm_pvm", F_OK) == 0) {
		snprintf(why, why_len, "/dev/kvm is PVM-backed (kvm_pvm loaded)");
		return HUSK_ACCEL_TCG;
	}
	if (!cpu_has_hw_virt()) {
		snprintf(why, why_len, "/dev/kvm without vmx/svm in /proc/cpuinfo");
		return HUSK_ACCEL_TCG;
	}
	snprintf(why, why_len, "/dev/kvm with hardware virtualisation");
	return HUSK_ACCEL_KVM;
}

enum husk_transport husk_transport_detect(char *why, size_t why_len)
{
	char dummy[8];
	if (!why) {
		why = dummy;
		why_len = sizeof(dummy);
	}
	_cleanup_fd_ int fd = open("/dev/vhost-vsock", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, why_len, "/dev/vhost-vsock: %s; using husk-vsockd", strerror(errno));
		return HUSK_TRANSPORT_HYBRID;
	}
	snprintf(why, why_len, "/dev/vhost-vsock opens");
	return HUSK_TRANSPORT_VHOST;
}

int husk_vhost_vsock_alloc_cid(int fd, uint32_t *cid, struct husk_err *err)
{
	/* The kernel refuses a CID another VM holds (EADDRINUSE): try random
	 * ones; the fd keeps the CID reserved until QEMU takes it over. */
	unsigned seed = (unsigned)husk_monotonic_ns() ^ (unsigned)getpid();
	for (int i = 0; i < 64; i++) {
		uint64_t c = 3 + (uint64_t)(rand_r(&seed) % 0x7ffffff0u);
		if (ioctl(fd, VHOST_VSOCK_SET_GUEST_CID, &c) == 0) {
			*cid = (uint32_t)c;
			return 0;
		}
		if (errno != EADDRINUSE)
			return husk_err_sys(err, -errno, "VHOST_VSOCK_SET_GUEST_CID %llu",
					    (unsigned long long)c);
	}
	return husk_err_set(err, -EADDRINUSE, "no free vsock CID found in 64 tries");
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("lfence; rdtsc" : "=a"(lo), "=d"(hi)::"memory");
	return ((uint64_t)hi << 32) | lo;
}

/* One (tsc, ns) point: the narrowest bracket of 32 tries, so preemption at
 * either end cannot skew it. */
static void tsc_sample(uint64_t *tsc, uint64_t *ns)
{
	uint64_t best = UINT64_MAX;
	for (int i = 0; i < 32; i++) {
		struct timespec ts;
		uint64_t t0 = rdtsc();
		clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
		uint64_t t1 = rdtsc();
		if (t1 - t0 < best) {
			best = t1 - t0;
			*tsc = t0 + (t1 - t0) / 2;
			*ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
		}
	}
}

bool husk_kernel_at_least(unsigned major, unsigned minor)
{
	struct utsname u;
	unsigned ma = 0, mi = 0;
	if (uname(&u) < 0 || sscanf(u.release, "%u.%u", &ma, &mi) != 2)
		return false;
	return ma > major || (ma == major && mi >= minor);
}

unsigned long husk_tsc_khz(void)
{
	/* The kernel's own figure when it exposes one. */
	_cleanup_fclose_ FILE *f = fopen("/sys/devices/system/cpu/cpu0/tsc_freq_khz", "re");
	unsigned long khz = 0;
	if (f && fscanf(f, "%lu", &khz) == 1 && khz)
		return khz;
	/* Otherwise measure against CLOCK_MONOTONIC_RAW over 50 ms: the guest
	 * tolerates a small error, and this is on the boot path. */
	uint64_t tsc0, ns0, tsc1, ns1;
	tsc_sample(&tsc0, &ns0);
	struct timespec pause = { .tv_nsec = 50 * 1000 * 1000 };
	while (nanosleep(&pause, &pause) < 0 && errno == EINTR)
		;
	tsc_sample(&tsc1, &ns1);
	if (ns1 <= ns0 || tsc1 <= tsc0)
		return 0;
	return (unsigned long)((tsc1 - tsc0) * 1000000ull / (ns1 - ns0));
}

void husk_file_tail(const char *path, char *buf, size_t max)
{
	buf[0] = '\0';
	if (max < 2)
		return;
	_cleanup_fd_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0)
		return;
	off_t from = st.st_size > (off_t)(max - 1) ? st.st_size - (off_t)(max - 1) : 0;
	ssize_t n = pread(fd, buf, max - 1, from);
	buf[n > 0 ? n : 0] = '\0';
	/* Console logs carry NULs and CRs from the serial line. */
	for (ssize_t i = 0; i < n; i++)
		if (buf[i] == '\0' || buf[i] == '\r')
			buf[i] = ' ';
}

/* Candidates, in order: the build tree around the running executable
 * (build/bin/huskctl -> build/kernel/bzImage), then the install prefix. */
char *husk_default_path(const char *what, struct husk_err *err)
{
	static const struct {
		const char *what, *env, *build_rel, *installed[2];
	} table[] = {
		{ "kernel", "HUSK_KERNEL", "../kernel/bzImage",
		  { "/usr/local/share/husk/bzImage", "/usr/share/husk/bzImage" } },
		{ "initrd", "HUSK_INITRD", "../initramfs.cpio.gz",
		  { "/usr/local/share/husk/initramfs.cpio.gz", "/usr/share/husk/initramfs.cpio.gz" } },
		{ "vsockd", "HUSK_VSOCKD", "husk-vsockd",
		  { "/usr/local/libexec/husk/husk-vsockd", "/usr/libexec/husk/husk-vsockd" } },
	};
	for (unsigned i = 0; i < ARRAY_SIZE(table); i++) {
		if (strcmp(what, table[i].what) != 0)
			continue;
		const char *env = getenv(table[i].env);
		if (env && *env) {
			if (access(env, R_OK) == 0)
				return strdup(env);
			husk_err_sys(err, -errno, "%s=%s", table[i].env, env);
			return NULL;
		}
		char exe[PATH_MAX], cand[PATH_MAX];
		ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		if (n > 0) {
			exe[n] = '\0';
			char *slash = strrchr(exe, '/');
			if (slash) {
				*slash = '\0';
				if (husk_path_fmt(cand, sizeof(cand), "%s/%s", exe, table[i].build_rel) == 0 &&
				    access(cand, R_OK) == 0)
					return realpath(cand, NULL);
			}
		}
		for (unsigned j = 0; j < 2; j++)
			if (access(table[i].installed[j], R_OK) == 0)
				return strdup(table[i].installed[j]);
		husk_err_set(err, -ENOENT,
			     "no %s found: set %s, build it (make) next to this program (%s/%s), "
			     "or install it (make install: %s)",
			     what, table[i].env, n > 0 ? exe : "?", table[i].build_rel,
			     table[i].installed[0]);
		return NULL;
	}
	husk_err_set(err, -EINVAL, "unknown default path \"%s\"", what);
	return NULL;
}

const char *husk_default_state_dir(char *buf, size_t len)
{
	const char *env = getenv("HUSK_STATE_DIR");
	if (env && *env)
		snprintf(buf, len, "%s", env);
	else if (geteuid() == 0)
		snprintf(buf, len, "/run/husk");
	else if ((env = getenv("XDG_RUNTIME_DIR")) && *env)
		snprintf(buf, len, "%s/husk", env);
	else
		snprintf(buf, len, "/tmp/husk-%u", (unsigned)geteuid());
	return buf;
}

const char *husk_image_fstype(const char *path, struct husk_err *err)
{
	_cleanup_fd_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		husk_err_sys(err, -errno, "disk image %s", path);
		return NULL;
	}
	unsigned char sb[1024];
	if (pread(fd, sb, sizeof(sb), 1024) != (ssize_t)sizeof(sb)) {
		husk_err_set(err, -EINVAL, "disk image %s: too small for a filesystem", path);
		return NULL;
	}
	/* erofs: le32 0xE0F5E1E2 at 1024; ext2/3/4: le16 0xEF53 at 1024+56. */
	if (sb[0] == 0xe2 && sb[1] == 0xe1 && sb[2] == 0xf5 && sb[3] == 0xe0)
		return "erofs";
	if (sb[56] == 0x53 && sb[57] == 0xef)
		return "ext4";
	husk_err_set(err, -EINVAL, "disk image %s: neither erofs nor ext2/3/4 (no superblock magic)",
		     path);
	return NULL;
}
