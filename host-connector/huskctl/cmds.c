/* huskctl's commands on a running VM: kill, pause, resume, stats, ps,
 * ping, console; and info, ls, image. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "husk/cleanup.h"
#include "husk/time.h"
#include "huskctl.h"
#include "runspec.h"

static int parse_signal(const char *s, int *sig)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (*s && !*end && v > 0 && v < NSIG) {
		*sig = (int)v;
		return 0;
	}
	if (strncmp(s, "SIG", 3) == 0)
		s += 3;
	for (int i = 1; i < NSIG; i++) {
		const char *abbrev = sigabbrev_np(i);
		if (abbrev && strcasecmp(abbrev, s) == 0) {
			*sig = i;
			return 0;
		}
	}
	return -EINVAL;
}

/* huskctl update NAME [--limit-memory SIZE] [--limit-pids N] */
int cmd_update(const struct global_opts *g, int argc, char **argv)
{
	if (argc < 4 || (argc - 2) % 2)
		return fail("usage: huskctl update NAME [--limit-memory SIZE] [--limit-pids N]");
	const char *name = argv[1];
	struct husk_err err = { 0 };
	json_object *res = json_object_new_object();
	for (int i = 2; i + 1 < argc; i += 2) {
		uint64_t v = 0;
		if (husk_parse_size(argv[i + 1], &v, &err) < 0 || v == 0 || v > INT64_MAX) {
			json_object_put(res);
			return fail("update: %s %s: %s", argv[i], argv[i + 1],
				    err.msg[0] ? err.msg : "want a positive number");
		}
		const char *group, *key;
		if (strcmp(argv[i], "--limit-memory") == 0) {
			group = "memory";
			key = "limit";
		} else if (strcmp(argv[i], "--limit-pids") == 0) {
			group = "pids";
			key = "limit";
		} else {
			json_object_put(res);
			return fail("update: unknown option %s", argv[i]);
		}
		json_object *o = json_object_new_object();
		json_object_object_add(o, key, json_object_new_int64((int64_t)v));
		json_object_object_add(res, group, o);
	}
	struct husk_vm *vm = NULL;
	struct husk_agent *a = NULL;
	int r = husk_vm_open(g->state_dir, name, &vm, &err);
	if (r == 0)
		r = husk_agent_open(vm, 30000, &a, &err);
	if (r == 0)
		r = husk_task_update(a, name, json_object_to_json_string(res), &err);
	json_object_put(res);
	husk_agent_close(a);
	husk_vm_free(vm);
	return r < 0 ? fail("update %s: %s", name, err.msg) : 0;
}

int cmd_simple(const struct global_opts *g, const char *cmd, int argc, char **argv)
{
	bool is_kill = strcmp(cmd, "kill") == 0;
	if (argc < 2 || argc > (is_kill ? 3 : 2))
		return fail("usage: huskctl %s NAME%s", cmd, is_kill ? " [SIGNAL]" : "");
	const char *name = argv[1];
	int sig = SIGTERM;
	if (is_kill && argc == 3 && parse_signal(argv[2], &sig) < 0)
		return fail("kill: unknown signal \"%s\"", argv[2]);
	struct husk_err err = { 0 };
	struct husk_vm *vm = NULL;
	if (husk_vm_open(g->state_dir, name, &vm, &err) < 0)
		return fail("%s", err.msg);
	struct husk_agent *a = NULL;
	int r = husk_agent_open(vm, 30000, &a, &err);
	if (r == 0) {
		if (is_kill) {
			r = husk_task_kill(a, name, NULL, sig, false, &err);
		} else if (strcmp(cmd, "pause") == 0) {
			r = husk_task_pause(a, name, &err);
		} else if (strcmp(cmd, "resume") == 0) {
			r = husk_task_resume(a, name, &err);
		} else if (strcmp(cmd, "ping") == 0) {
			char version[64];
			uint64_t t0 = husk_monotonic_ns();
			r = husk_agent_check(a, version, sizeof(version), &err);
			if (r == 0)
				printf("%s: agent %s answered in %.3f ms\n", name, version,
				       (double)(husk_monotonic_ns() - t0) / 1e6);
		} else if (strcmp(cmd, "stats") == 0) {
			struct husk_stats s;
			r = husk_task_stats(a, name, &s, &err);
			if (r == 0)
				printf("cpu_usage_usec %llu\ncpu_user_usec %llu\ncpu_system_usec %llu\n"
				       "memory_usage_bytes %llu\nmemory_limit_bytes %llu\n"
				       "pids_current %llu\npids_limit %llu\noom_kills %llu\n"
				       "io_read_bytes %llu\nio_write_bytes %llu\n",
				       (unsigned long long)s.cpu_usage_usec,
				       (unsigned long long)s.cpu_user_usec,
				       (unsigned long long)s.cpu_system_usec,
				       (unsigned long long)s.memory_usage,
				       (unsigned long long)s.memory_limit,
				       (unsigned long long)s.pids_current,
				       (unsigned long long)s.pids_limit,
				       (unsigned long long)s.oom_kills,
				       (unsigned long long)s.io_read_bytes,
				       (unsigned long long)s.io_write_bytes);
		} else { /* ps */
			uint32_t pids[1024];
			size_t n = 0;
			r = husk_task_pids(a, name, pids, 1024, &n, &err);
			for (size_t i = 0; r == 0 && i < n && i < 1024; i++)
				printf("%u\n", pids[i]);
		}
	}
	husk_agent_close(a);
	husk_vm_free(vm);
	return r < 0 ? fail("%s %s: %s", cmd, name, err.msg) : 0;
}

/* Our terminal (or pipe) to the guest's debug shell until either side
 * closes. */
int cmd_console(const struct global_opts *g, int argc, char **argv)
{
	if (argc != 2)
		return fail("usage: huskctl console NAME");
	struct husk_err err = { 0 };
	struct husk_vm *vm = NULL;
	if (husk_vm_open(g->state_dir, argv[1], &vm, &err) < 0)
		return fail("%s", err.msg);
	int fd = husk_vm_connect(vm, HUSK_CONSOLE_PORT, 0, &err);
	husk_vm_free(vm);
	if (fd < 0)
		return fail("console of %s: %s (was the VM started with --debug-console?)", argv[1],
			    err.msg);
	struct termios saved;
	bool raw = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0;
	if (raw) {
		struct termios t = saved;
		cfmakeraw(&t);
		raw = tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0;
		fprintf(stderr, "huskctl: attached to %s; the shell's exit detaches\r\n", argv[1]);
	}
	struct pollfd p[2] = { { .fd = STDIN_FILENO, .events = POLLIN }, { .fd = fd, .events = POLLIN } };
	char buf[16384];
	int ret = 0;
	for (;;) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents) {
			ssize_t n = read(fd, buf, sizeof(buf));
			if (n <= 0)
				break;
			if (write(STDOUT_FILENO, buf, (size_t)n) != n) {
				ret = EXIT_HUSK;
				break;
			}
		}
		if (p[0].revents) {
			ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
			if (n <= 0) {
				/* Our input ended: the guest side is a pty, so say it
				 * the way a terminal does (^D), and read on until the
				 * shell leaves. Closing our half would end the session
				 * before the shell read what we sent. */
				(void)!write(fd, "\x04", 1);
				p[0].fd = -1;
			} else if (write(fd, buf, (size_t)n) != n) {
				break;
			}
		}
	}
	if (raw)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved);
	close(fd);
	return ret;
}

static void qemu_version(char *buf, size_t len)
{
	snprintf(buf, len, "not found");
	_cleanup_free_ char *line = NULL;
	size_t cap = 0;
	FILE *f = popen("qemu-system-x86_64 --version 2>/dev/null", "re");
	if (!f)
		return;
	if (getline(&line, &cap, f) > 0) {
		line[strcspn(line, "\n")] = '\0';
		snprintf(buf, len, "%s", line);
	}
	pclose(f);
}

int cmd_info(const struct global_opts *g, int argc, char **argv)
{
	if (argc > 2)
		return fail("usage: huskctl info [NAME]");
	char why[256], qv[128], state[256];
	struct husk_err err = { 0 };
	printf("huskctl %s\n", HUSKCTL_VERSION);
	enum husk_accel accel = husk_accel_detect(why, sizeof(why));
	printf("accel %s (%s)\n", husk_accel_name(accel), why);
	enum husk_transport tr = husk_transport_detect(why, sizeof(why));
	printf("transport %s (%s)\n", husk_transport_name(tr), why);
	qemu_version(qv, sizeof(qv));
	printf("qemu %s\n", qv);
	const char *what[] = { "kernel", "initrd", "vsockd" };
	for (int i = 0; i < 3; i++) {
		_cleanup_free_ char *p = husk_default_path(what[i], &err);
		printf("%s %s\n", what[i], p ? p : "not found");
	}
	printf("state_dir %s\n", g->state_dir ? g->state_dir :
					       husk_default_state_dir(state, sizeof(state)));
	printf("image_cache %s\n", husk_default_image_cache(state, sizeof(state)));
	if (argc < 2)
		return 0;
	struct husk_vm *vm = NULL;
	if (husk_vm_open(g->state_dir, argv[1], &vm, &err) < 0)
		return fail("%s", err.msg);
	struct husk_agent *a = NULL;
	struct husk_guest_details d;
	int r = husk_agent_open(vm, 30000, &a, &err);
	if (r == 0)
		r = husk_agent_guest_details(a, &d, &err);
	if (r == 0)
		printf("vm %s\nvm_vmm %s\nvm_accel %s\nvm_transport %s\nvm_cid %u\nvmm_pid %d\n"
		       "guest_kernel %s\n"
		       "guest_cpus %u\nguest_mem_bytes %llu\nagent %s\nagent_rss_bytes %llu\n"
		       "agent_fds %u\ncontainers %u\n",
		       argv[1], husk_vm_vmm(vm), husk_accel_name(husk_vm_accel(vm)),
		       husk_transport_name(husk_vm_transport(vm)), husk_vm_cid(vm),
		       (int)husk_vm_vmm_pid(vm),
		       d.kernel_release, d.cpus, (unsigned long long)d.mem_total_bytes,
		       d.agent_version, (unsigned long long)d.agent_rss_bytes, d.agent_fds,
		       d.containers);
	husk_agent_close(a);
	husk_vm_free(vm);
	return r < 0 ? fail("info %s: %s", argv[1], err.msg) : 0;
}

int cmd_ls(const struct global_opts *g, int argc, char **argv)
{
	(void)argv;
	if (argc != 1)
		return fail("usage: huskctl ls");
	char buf[256];
	const char *dir = g->state_dir ? g->state_dir : husk_default_state_dir(buf, sizeof(buf));
	DIR *d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : fail("%s: %s", dir, strerror(errno));
	printf("%-32s %-8s %s\n", "NAME", "PID", "STATE");
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		struct husk_vm *vm = NULL;
		struct husk_err err = { 0 };
		int r = husk_vm_open(dir, e->d_name, &vm, &err);
		printf("%-32s %-8d %s\n", e->d_name, r == 0 ? (int)husk_vm_vmm_pid(vm) : 0,
		       r == 0 ? "running" : r == -ESRCH ? "stale" : "unknown");
		husk_vm_free(vm);
	}
	closedir(d);
	return 0;
}

/* 1536 -> "1.5K": 1024-based, as husk_parse_size reads them. */
static void human_size(uint64_t b, char *out, size_t len)
{
	static const char units[] = "KMGTPE";
	if (b < 1024) {
		snprintf(out, len, "%" PRIu64 "B", b);
		return;
	}
	double v = (double)b;
	int u = -1;
	while (v >= 1024 && u + 1 < (int)sizeof(units) - 1) {
		v /= 1024;
		u++;
	}
	snprintf(out, len, v < 10 ? "%.1f%c" : "%.0f%c", v, units[u]);
}

static int image_ls(const char *cache, const char *dir)
{
	struct husk_err err = { 0 };
	_cleanup_free_ struct husk_image_info *v = NULL;
	size_t n = 0;
	if (husk_image_cache_list(cache, &v, &n, &err) < 0)
		return fail("image ls: %s", err.msg);
	printf("%-70s %7s %-19s %s\n", "IMAGE", "SIZE", "LAST USE", "IN USE");
	uint64_t total = 0;
	/* Most recently used first. */
	for (size_t i = n; i-- > 0;) {
		char size[16], when[32] = "-";
		human_size(v[i].bytes, size, sizeof(size));
		time_t t = (time_t)v[i].last_use;
		struct tm tm;
		if (localtime_r(&t, &tm))
			strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
		printf("%-70s %7s %-19s %s\n", v[i].name, size, when, v[i].in_use ? "yes" : "no");
		total += v[i].bytes;
	}
	char size[16], budget_s[32] = "no limit";
	human_size(total, size, sizeof(size));
	uint64_t budget = 0;
	if (husk_image_cache_max(&budget, &err) < 0)
		snprintf(budget_s, sizeof(budget_s), "invalid");
	else if (budget)
		human_size(budget, budget_s, sizeof(budget_s));
	printf("%zu image%s, %s in %s (budget %s)\n", n, n == 1 ? "" : "s", size, dir, budget_s);
	return 0;
}

static int image_prune(const char *cache, const char *dir, const char *max_arg)
{
	struct husk_err err = { 0 };
	uint64_t max = 0;
	if (max_arg) {
		if (husk_parse_size(max_arg, &max, &err) < 0)
			return fail("image prune --max: %s", err.msg);
	} else if (husk_image_cache_max(&max, &err) < 0) {
		return fail("image prune: %s", err.msg);
	} else if (!max) {
		return fail("image prune: HUSK_IMAGE_CACHE_MAX says no limit: give --max SIZE");
	}
	struct husk_image_prune res;
	if (husk_image_cache_prune(cache, max, &res, &err) < 0)
		return fail("image prune: %s", err.msg);
	char removed[16], kept[16], limit[16];
	human_size(res.removed_bytes, removed, sizeof(removed));
	human_size(res.kept_bytes, kept, sizeof(kept));
	human_size(max, limit, sizeof(limit));
	printf("%s: removed %zu image%s (%s), kept %zu (%s, budget %s)", dir, res.removed,
	       res.removed == 1 ? "" : "s", removed, res.kept, kept, limit);
	if (res.busy)
		printf(", %zu in use kept over the budget", res.busy);
	printf("\n");
	return 0;
}

/* huskctl image ls|prune [--max SIZE] [--image-cache DIR] */
int cmd_image(const struct global_opts *g, int argc, char **argv)
{
	(void)g;
	static const char use[] =
		"usage: huskctl image ls [--image-cache DIR] | image prune [--max SIZE] "
		"[--image-cache DIR]";
	if (argc < 2)
		return fail("%s", use);
	const char *sub = argv[1], *cache = NULL, *max = NULL;
	bool prune = strcmp(sub, "prune") == 0;
	if (!prune && strcmp(sub, "ls") != 0)
		return fail("image: unknown command \"%s\"; %s", sub, use);
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--image-cache") == 0 && i + 1 < argc)
			cache = argv[++i];
		else if (prune && strcmp(argv[i], "--max") == 0 && i + 1 < argc)
			max = argv[++i];
		else
			return fail("image %s: unexpected \"%s\"; %s", sub, argv[i], use);
	}
	char buf[PATH_MAX];
	const char *dir = cache ? cache : husk_default_image_cache(buf, sizeof(buf));
	if (!dir)
		return fail("image: no image cache directory: set HUSK_IMAGE_CACHE or HOME");
	return prune ? image_prune(dir, dir, max) : image_ls(dir, dir);
}
