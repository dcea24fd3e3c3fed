/* Unit tests for the OCI runtime spec parser (jail/spec.c).
 *
 * JSON is written with single quotes for readability; dq() turns them into
 * double quotes before parsing. Every test runs under ASan/LSan, so error
 * paths that leak a partially parsed spec fail the suite. */
#include <errno.h>
#include <fcntl.h>
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
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "jail/spec.h"

/* ---- helpers ------------------------------------------------------------ */

static char *dq(const char *sq)
{
	char *s = strdup(sq);
	assert_non_null(s);
	for (char *p = s; *p; p++)
		if (*p == '\'')
			*p = '"';
	return s;
}

static struct jail_spec *parse_ok(const char *sq)
{
	char *json = dq(sq);
	struct jail_spec *s = NULL;
	struct husk_err err = { 0 };
	int r = jail_spec_parse(json, strlen(json), NULL, &s, &err);
	if (r != 0)
		print_error("unexpected failure %d: %s\n", r, err.msg);
	assert_int_equal(r, 0);
	assert_non_null(s);
	free(json);
	return s;
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

/* Parses `sq`; it must fail, leave *out NULL and say every needle. */
static int expect_fail_v(const char *sq, const char *const *needles)
{
	char *json = dq(sq);
	struct jail_spec *s = (struct jail_spec *)&s; /* must be reset to NULL */
	struct husk_err err = { 0 };
	int r = jail_spec_parse(json, strlen(json), NULL, &s, &err);
	free(json);
	if (r >= 0)
		jail_spec_free(s);
	assert_true(r < 0);
	assert_null(s);
	assert_int_equal(err.code, r);
	assert_true(strncmp(err.msg, "config.json: ", 13) == 0);
	assert_msg_has(err.msg, needles);
	return r;
}
#define EXPECT_FAIL(sq, ...) expect_fail_v((sq), (const char *const[]){ __VA_ARGS__, NULL })

static int expect_process_fail_v(const char *sq, const char *const *needles)
{
	char *json = dq(sq);
	struct jail_process *p = (struct jail_process *)&p;
	struct husk_err err = { 0 };
	int r = jail_process_parse(json, strlen(json), &p, &err);
	free(json);
	if (r >= 0)
		jail_process_free(p);
	assert_true(r < 0);
	assert_null(p);
	assert_int_equal(err.code, r);
	assert_msg_has(err.msg, needles);
	return r;
}
#define EXPECT_PROCESS_FAIL(sq, ...)                                                             \
	expect_process_fail_v((sq), (const char *const[]){ __VA_ARGS__, NULL })

/* A minimal valid container spec around `body`, and a valid process with
 * `extra` members appended. */
#define SPEC(body) "{'ociVersion':'1.0.2','root':{'path':'rootfs'}," body "}"
#define PROC(extra) "'process':{'user':{'uid':0,'gid':0},'args':['sh'],'cwd':'/'" extra "}"
#define SPEC_PROC(extra) SPEC(PROC(extra))
#define SPEC_LINUX(linux) SPEC(PROC("") ",'linux':{" linux "}")

static bool has_cap(uint64_t mask, const char *name)
{
	int n = jail_cap_from_name(name);
	assert_true(n >= 0);
	return (mask >> n) & 1;
}

/* ---- the full config ------------------------------------------------------ */

/* `runc spec` output plus everything else the parser understands, and a few
 * fields it must ignore (leafWeight, realtimeRuntime, resources.devices,
 * an unknown top-level and nested member). */
static const char full_config[] =
	"{\n"
	" 'ociVersion': '1.0.2-dev',\n"
	" 'process': {\n"
	"  'terminal': true,\n"
	"  'consoleSize': {'height': 25, 'width': 80},\n"
	"  'user': {'uid': 1000, 'gid': 1001, 'umask': 18, 'additionalGids': [5, 2147483647]},\n"
	"  'args': ['sh', '-c', 'echo hi'],\n"
	"  'env': ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',\n"
	"          'TERM=xterm', 'EMPTY='],\n"
	"  'cwd': '/work',\n"
	"  'capabilities': {\n"
	"   'bounding': ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'],\n"
	"   'effective': ['CAP_AUDIT_WRITE', 'CAP_KILL'],\n"
	"   'inheritable': [],\n"
	"   'permitted': ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE',\n"
	"                 'CAP_CHECKPOINT_RESTORE'],\n"
	"   'ambient': ['CAP_NET_BIND_SERVICE']\n"
	"  },\n"
	"  'rlimits': [{'type': 'RLIMIT_NOFILE', 'hard': 1024, 'soft': 1024},\n"
	"              {'type': 'RLIMIT_CORE', 'hard': 18446744073709551615, 'soft': 0}],\n"
	"  'noNewPrivileges': true,\n"
	"  'oomScoreAdj': -500,\n"
	"  'apparmorProfile': 'husk-default',\n"
	"  'selinuxLabel': 'system_u:system_r:container_t:s0',\n"
	"  'ioPriority': {'class': 'IOPRIO_CLASS_IDLE'}\n"
	" },\n"
	" 'root': {'path': 'rootfs', 'readonly': true},\n"
	" 'hostname': 'runc',\n"
	" 'domainname': 'example.org',\n"
	" 'mounts': [\n"
	"  {'destination': '/proc', 'type': 'proc', 'source': 'proc'},\n"
	"  {'destination': '/dev', 'type': 'tmpfs', 'source': 'tmpfs',\n"
	"   'options': ['nosuid', 'strictatime', 'mode=755', 'size=65536k']},\n"
	"  {'destination': '/dev/pts', 'type': 'devpts', 'source': 'devpts',\n"
	"   'options': ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5']},\n"
	"  {'destination': '/dev/shm', 'type': 'tmpfs', 'source': 'shm',\n"
	"   'options': ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k']},\n"
	"  {'destination': '/dev/mqueue', 'type': 'mqueue', 'source': 'mqueue',\n"
	"   'options': ['nosuid', 'noexec', 'nodev']},\n"
	"  {'destination': '/sys', 'type': 'sysfs', 'source': 'sysfs',\n"
	"   'options': ['nosuid', 'noexec', 'nodev', 'ro']},\n"
	"  {'destination': '/sys/fs/cgroup', 'type': 'cgroup', 'source': 'cgroup',\n"
	"   'options': ['nosuid', 'noexec', 'nodev', 'relatime', 'ro']},\n"
	"  {'destination': '/data', 'type': 'bind', 'source': '/srv/data',\n"
	"   'options': ['rbind', 'rprivate', 'rw']},\n"
	"  {'destination': '/etc/resolv.conf', 'type': 'none', 'source': '/run/resolv.conf',\n"
	"   'options': ['bind', 'ro', 'x-systemd.automount']}\n"
	" ],\n"
	" 'hooks': {\n"
	"  'prestart': [{'path': '/usr/bin/fix-mounts', 'args': ['fix-mounts', 'arg1'],\n"
	"                'env': ['KEY=value']}],\n"
	"  'createRuntime': [{'path': '/usr/bin/net-setup', 'timeout': 5}],\n"
	"  'createContainer': [{'path': '/usr/bin/cc'}],\n"
	"  'startContainer': [{'path': '/usr/bin/refresh-ldcache'}],\n"
	"  'poststart': [{'path': '/usr/bin/notify-start', 'timeout': 7}],\n"
	"  'poststop': [{'path': '/usr/sbin/cleanup.sh', 'args': ['cleanup.sh', '-f']},\n"
	"               {'path': '/bin/true'}]\n"
	" },\n"
	" 'annotations': {'com.example.key1': 'value1', 'com.example.key2': 'value2'},\n"
	" 'futureField': {'anything': [1, 2, 3]},\n"
	" 'linux': {\n"
	"  'uidMappings': [{'containerID': 0, 'hostID': 100000, 'size': 65536}],\n"
	"  'gidMappings': [{'containerID': 0, 'hostID': 200000, 'size': 65536},\n"
	"                  {'containerID': 65536, 'hostID': 1, 'size': 1}],\n"
	"  'sysctl': {'net.ipv4.ip_forward': '1', 'kernel.shm_rmid_forced': '1'},\n"
	"  'resources': {\n"
	"   'devices': [{'allow': false, 'access': 'rwm'}],\n"
	"   'memory': {'limit': 536870912, 'reservation': 268435456, 'swap': -1, 'kernel': -1},\n"
	"   'cpu': {'shares': 1024, 'quota': 50000, 'period': 100000, 'cpus': '0-1', 'mems': '0',\n"
	"           'realtimeRuntime': 0},\n"
	"   'pids': {'limit': 32},\n"
	"   'blockIO': {'weight': 500, 'leafWeight': 300,\n"
	"    'weightDevice': [{'major': 8, 'minor': 0, 'weight': 600, 'leafWeight': 300},\n"
	"                     {'major': 8, 'minor': 16}],\n"
	"    'throttleReadBpsDevice': [{'major': 8, 'minor': 0, 'rate': 104857600}],\n"
	"    'throttleWriteBpsDevice': [{'major': 8, 'minor': 0, 'rate': 52428800}],\n"
	"    'throttleReadIOPSDevice': [{'major': 8, 'minor': 0, 'rate': 1000}],\n"
	"    'throttleWriteIOPSDevice': [{'major': 8, 'minor': 0, 'rate': 500},\n"
	"                                {'major': 8, 'minor': 16, 'rate': 400}]},\n"
	"   'unified': {'memory.high': '400000000', 'io.weight': 'default 100'}\n"
	"  },\n"
	"  'cgroupsPath': '/husk/test',\n"
	"  'namespaces': [{'type': 'pid'}, {'type': 'network', 'path': '/var/run/netns/n1'},\n"
	"                 {'type': 'ipc'}, {'type': 'uts'}, {'type': 'mount'}, {'type': 'user'},\n"
	"                 {'type': 'cgroup'}],\n"
	"  'devices': [{'path': '/dev/fuse', 'type': 'c', 'major': 10, 'minor': 229,\n"
	"               'fileMode': 438, 'uid': 0, 'gid': 0},\n"
	"              {'path': '/dev/sda', 'type': 'b', 'major': 8, 'minor': 0},\n"
	"              {'path': '/dev/fifo', 'type': 'p'}],\n"
	"  'seccomp': {\n"
	"   'defaultAction': 'SCMP_ACT_ERRNO', 'defaultErrnoRet': 38,\n"
	"   'architectures': ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],\n"
	"   'flags': ['SECCOMP_FILTER_FLAG_LOG'],\n"
	"   'syscalls': [\n"
	"    {'names': ['read', 'write', 'exit_group'], 'action': 'SCMP_ACT_ALLOW'},\n"
	"    {'names': ['personality'], 'action': 'SCMP_ACT_ALLOW',\n"
	"     'args': [{'index': 0, 'value': 0, 'op': 'SCMP_CMP_EQ'},\n"
	"              {'index': 1, 'value': 8, 'op': 'SCMP_CMP_LT'},\n"
	"              {'index': 2, 'value': 9, 'op': 'SCMP_CMP_LE'},\n"
	"              {'index': 3, 'value': 10, 'op': 'SCMP_CMP_GE'}]},\n"
	"    {'names': ['clone'], 'action': 'SCMP_ACT_ALLOW',\n"
	"     'args': [{'index': 0, 'value': 2114060288, 'valueTwo': 0, 'op': 'SCMP_CMP_MASKED_EQ'}]},\n"
	"    {'names': ['mkdir'], 'action': 'SCMP_ACT_ERRNO', 'errnoRet': 1},\n"
	"    {'names': ['ptrace'], 'action': 'SCMP_ACT_KILL_PROCESS'},\n"
	"    {'names': ['kexec_load'], 'action': 'SCMP_ACT_KILL_THREAD'},\n"
	"    {'names': ['socket'], 'action': 'SCMP_ACT_ERRNO',\n"
	"     'args': [{'index': 5, 'value': 18446744073709551615, 'op': 'SCMP_CMP_GT'},\n"
	"              {'index': 1, 'value': 1, 'valueTwo': 3, 'op': 'SCMP_CMP_NE'}]},\n"
	"    {'names': ['reboot'], 'action': 'SCMP_ACT_TRAP'},\n"
	"    {'names': ['uname'], 'action': 'SCMP_ACT_LOG'},\n"
	"    {'names': ['getpid'], 'action': 'SCMP_ACT_TRACE', 'errnoRet': 7},\n"
	"    {'names': ['kill'], 'action': 'SCMP_ACT_KILL'}\n"
	"   ]\n"
	"  },\n"
	"  'rootfsPropagation': 'rslave',\n"
	"  'maskedPaths': ['/proc/acpi', '/proc/kcore', '/sys/firmware'],\n"
	"  'readonlyPaths': ['/proc/bus', '/proc/sys'],\n"
	"  'mountLabel': 'system_u:object_r:container_file_t:s0',\n"
	"  'intelRdt': {'closID': 'x'}\n"
	" }\n"
	"}\n";

static int full_setup(void **state)
{
	*state = parse_ok(full_config);
	return 0;
}

static int full_teardown(void **state)
{
	jail_spec_free(*state);
	return 0;
}

static void test_full_top_level(void **state)
{
	const struct jail_spec *s = *state;
	assert_string_equal(s->oci_version, "1.0.2-dev");
	assert_string_equal(s->root_path, "rootfs"); /* no bundle: kept as is */
	assert_true(s->root_readonly);
	assert_string_equal(s->hostname, "runc");
	assert_string_equal(s->domainname, "example.org");
	assert_true(s->has_process);
	assert_int_equal(s->n_annotations, 2);
	bool k1 = false, k2 = false;
	for (size_t i = 0; i < s->n_annotations; i++) {
		if (strcmp(s->annotations[i].key, "com.example.key1") == 0) {
			assert_string_equal(s->annotations[i].value, "value1");
			k1 = true;
		} else if (strcmp(s->annotations[i].key, "com.example.key2") == 0) {
			assert_string_equal(s->annotations[i].value, "value2");
			k2 = true;
		}
	}
	assert_true(k1 && k2);
}

static void test_full_process(void **state)
{
	const struct jail_spec *s = *state;
	const struct jail_process *p = &s->process;
	assert_true(p->terminal);
	assert_true(p->has_console_size);
	assert_int_equal(p->console_height, 25);
	assert_int_equal(p->console_width, 80);
	assert_int_equal(p->user.uid, 1000);
	assert_int_equal(p->user.gid, 1001);
	assert_true(p->user.has_umask);
	assert_int_equal(p->user.umask, 022);
	assert_int_equal(p->user.n_additional_gids, 2);
	assert_int_equal(p->user.additional_gids[0], 5);
	assert_int_equal(p->user.additional_gids[1], INT32_MAX);
	assert_int_equal(p->n_args, 3);
	assert_string_equal(p->args[0], "sh");
	assert_string_equal(p->args[2], "echo hi");
	assert_null(p->args[3]);
	assert_int_equal(p->n_env, 3);
	assert_string_equal(p->env[1], "TERM=xterm");
	assert_string_equal(p->env[2], "EMPTY=");
	assert_null(p->env[3]);
	assert_string_equal(p->cwd, "/work");
	assert_true(p->no_new_privileges);
	assert_true(p->has_oom_score_adj);
	assert_int_equal(p->oom_score_adj, -500);
	assert_string_equal(p->apparmor_profile, "husk-default");
	assert_string_equal(p->selinux_label, "system_u:system_r:container_t:s0");
}

static void test_full_capabilities(void **state)
{
	const struct jail_caps *c = &((const struct jail_spec *)*state)->process.caps;
	assert_true(((const struct jail_spec *)*state)->process.has_caps);
	uint64_t three = (UINT64_C(1) << 29) | (UINT64_C(1) << 5) | (UINT64_C(1) << 10);
	assert_int_equal(c->bounding, three);
	assert_int_equal(c->effective, (UINT64_C(1) << 29) | (UINT64_C(1) << 5));
	assert_int_equal(c->inheritable, 0);
	assert_int_equal(c->permitted, three | (UINT64_C(1) << 40));
	assert_int_equal(c->ambient, UINT64_C(1) << 10);
	assert_true(has_cap(c->permitted, "CAP_CHECKPOINT_RESTORE"));
}

static void test_full_rlimits(void **state)
{
	const struct jail_process *p = &((const struct jail_spec *)*state)->process;
	assert_int_equal(p->n_rlimits, 2);
	assert_int_equal(p->rlimits[0].resource, RLIMIT_NOFILE);
	assert_int_equal(p->rlimits[0].soft, 1024);
	assert_int_equal(p->rlimits[0].hard, 1024);
	assert_int_equal(p->rlimits[1].resource, RLIMIT_CORE);
	assert_int_equal(p->rlimits[1].soft, 0);
	assert_true(p->rlimits[1].hard == UINT64_MAX); /* RLIM_INFINITY */
}

static void test_full_mounts(void **state)
{
	const struct jail_spec *s = *state;
	assert_int_equal(s->n_mounts, 9);
	const struct jail_mount *m = s->mounts;
	assert_string_equal(m[0].destination, "/proc");
	assert_string_equal(m[0].type, "proc");
	assert_string_equal(m[0].source, "proc");
	assert_int_equal(m[0].flags, 0);
	assert_null(m[0].data);

	assert_string_equal(m[1].type, "tmpfs");
	assert_int_equal(m[1].flags, MS_NOSUID | MS_STRICTATIME);
	assert_string_equal(m[1].data, "mode=755,size=65536k");

	assert_int_equal(m[2].flags, MS_NOSUID | MS_NOEXEC);
	assert_string_equal(m[2].data, "newinstance,ptmxmode=0666,mode=0620,gid=5");

	assert_int_equal(m[3].flags, MS_NOSUID | MS_NOEXEC | MS_NODEV);
	assert_int_equal(m[5].flags, MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RDONLY);
	assert_int_equal(m[6].flags, MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RELATIME | MS_RDONLY);
	assert_string_equal(m[6].destination, "/sys/fs/cgroup");

	/* rbind + rprivate + rw */
	assert_string_equal(m[7].type, "bind");
	assert_string_equal(m[7].source, "/srv/data");
	assert_int_equal(m[7].flags, MS_BIND | MS_REC);
	assert_int_equal(m[7].clear_flags, MS_RDONLY);
	assert_int_equal(m[7].propagation, MS_PRIVATE | MS_REC);
	assert_null(m[7].data);

	/* "bind" option with type "none": a bind mount; x- options dropped */
	assert_string_equal(m[8].type, "bind");
	assert_int_equal(m[8].flags, MS_BIND | MS_RDONLY);
	assert_int_equal(m[8].propagation, 0);
	assert_null(m[8].data);
}

static void test_full_hooks(void **state)
{
	const struct jail_hooks *h = &((const struct jail_spec *)*state)->hooks;
	assert_int_equal(h->n_prestart, 1);
	assert_string_equal(h->prestart[0].path, "/usr/bin/fix-mounts");
	assert_string_equal(h->prestart[0].args[0], "fix-mounts");
	assert_string_equal(h->prestart[0].args[1], "arg1");
	assert_null(h->prestart[0].args[2]);
	assert_string_equal(h->prestart[0].env[0], "KEY=value");
	assert_null(h->prestart[0].env[1]);
	assert_false(h->prestart[0].has_timeout);
	assert_int_equal(h->n_create_runtime, 1);
	assert_string_equal(h->create_runtime[0].path, "/usr/bin/net-setup");
	assert_true(h->create_runtime[0].has_timeout);
	assert_int_equal(h->create_runtime[0].timeout, 5);
	assert_null(h->create_runtime[0].args);
	assert_null(h->create_runtime[0].env);
	assert_int_equal(h->n_create_container, 1);
	assert_string_equal(h->create_container[0].path, "/usr/bin/cc");
	assert_int_equal(h->n_start_container, 1);
	assert_string_equal(h->start_container[0].path, "/usr/bin/refresh-ldcache");
	assert_int_equal(h->n_poststart, 1);
	assert_int_equal(h->poststart[0].timeout, 7);
	assert_int_equal(h->n_poststop, 2);
	assert_string_equal(h->poststop[0].args[1], "-f");
	assert_string_equal(h->poststop[1].path, "/bin/true");
}

static void test_full_linux(void **state)
{
	const struct jail_spec *s = *state;
	assert_int_equal(s->n_uid_mappings, 1);
	assert_int_equal(s->uid_mappings[0].container_id, 0);
	assert_int_equal(s->uid_mappings[0].host_id, 100000);
	assert_int_equal(s->uid_mappings[0].size, 65536);
	assert_int_equal(s->n_gid_mappings, 2);
	assert_int_equal(s->gid_mappings[0].host_id, 200000);
	assert_int_equal(s->gid_mappings[1].container_id, 65536);
	assert_int_equal(s->gid_mappings[1].host_id, 1);
	assert_int_equal(s->gid_mappings[1].size, 1);

	assert_int_equal(s->n_sysctl, 2);
	for (size_t i = 0; i < s->n_sysctl; i++)
		assert_string_equal(s->sysctl[i].value, "1");
	assert_string_equal(s->cgroups_path, "/husk/test");

	assert_int_equal(s->n_namespaces, 7);
	int types[] = { CLONE_NEWPID, CLONE_NEWNET,  CLONE_NEWIPC,   CLONE_NEWUTS,
			CLONE_NEWNS,  CLONE_NEWUSER, CLONE_NEWCGROUP };
	for (size_t i = 0; i < 7; i++)
		assert_int_equal(s->namespaces[i].type, types[i]);
	assert_string_equal(s->namespaces[1].path, "/var/run/netns/n1");
	assert_null(s->namespaces[0].path);

	assert_int_equal(s->n_devices, 3);
	assert_int_equal(s->devices[0].type, 'c');
	assert_string_equal(s->devices[0].path, "/dev/fuse");
	assert_int_equal(s->devices[0].major, 10);
	assert_int_equal(s->devices[0].minor, 229);
	assert_true(s->devices[0].has_mode && s->devices[0].has_uid && s->devices[0].has_gid);
	assert_int_equal(s->devices[0].file_mode, 0666);
	assert_int_equal(s->devices[1].type, 'b');
	assert_int_equal(s->devices[1].major, 8);
	assert_false(s->devices[1].has_mode || s->devices[1].has_uid || s->devices[1].has_gid);
	assert_int_equal(s->devices[2].type, 'p');

	assert_int_equal(s->rootfs_propagation, MS_SLAVE | MS_REC);
	assert_int_equal(s->n_masked_paths, 3);
	assert_string_equal(s->masked_paths[2], "/sys/firmware");
	assert_null(s->masked_paths[3]);
	assert_int_equal(s->n_readonly_paths, 2);
	assert_string_equal(s->readonly_paths[1], "/proc/sys");
	assert_string_equal(s->mount_label, "system_u:object_r:container_file_t:s0");
}

static void test_full_resources(void **state)
{
	const struct jail_spec *s = *state;
	const struct jail_resources *r = &s->resources;
	assert_true(s->has_resources);
	assert_true(r->has_memory_limit && r->has_memory_reservation && r->has_memory_swap &&
		    r->has_memory_kernel);
	assert_int_equal(r->memory_limit, 536870912);
	assert_int_equal(r->memory_reservation, 268435456);
	assert_int_equal(r->memory_swap, -1);
	assert_true(r->has_cpu_shares && r->has_cpu_quota && r->has_cpu_period);
	assert_int_equal(r->cpu_shares, 1024);
	assert_int_equal(r->cpu_quota, 50000);
	assert_int_equal(r->cpu_period, 100000);
	assert_string_equal(r->cpu_cpus, "0-1");
	assert_string_equal(r->cpu_mems, "0");
	assert_true(r->has_pids_limit);
	assert_int_equal(r->pids_limit, 32);
	assert_true(r->has_blkio_weight);
	assert_int_equal(r->blkio_weight, 500);
	assert_int_equal(r->n_blkio_weight_device, 2);
	assert_int_equal(r->blkio_weight_device[0].major, 8);
	assert_true(r->blkio_weight_device[0].has_weight);
	assert_int_equal(r->blkio_weight_device[0].weight, 600);
	assert_int_equal(r->blkio_weight_device[1].minor, 16);
	assert_false(r->blkio_weight_device[1].has_weight);
	assert_int_equal(r->n_throttle_read_bps, 1);
	assert_int_equal(r->throttle_read_bps[0].rate, 104857600);
	assert_int_equal(r->n_throttle_write_bps, 1);
	assert_int_equal(r->throttle_write_bps[0].rate, 52428800);
	assert_int_equal(r->n_throttle_read_iops, 1);
	assert_int_equal(r->throttle_read_iops[0].rate, 1000);
	assert_int_equal(r->n_throttle_write_iops, 2);
	assert_int_equal(r->throttle_write_iops[1].minor, 16);
	assert_int_equal(r->throttle_write_iops[1].rate, 400);
	assert_int_equal(r->n_unified, 2);
	bool high = false;
	for (size_t i = 0; i < r->n_unified; i++)
		if (strcmp(r->unified[i].key, "memory.high") == 0) {
			assert_string_equal(r->unified[i].value, "400000000");
			high = true;
		}
	assert_true(high);
}

static void test_full_seccomp(void **state)
{
	const struct jail_spec *s = *state;
	const struct jail_seccomp *sc = &s->seccomp;
	assert_true(s->has_seccomp);
	assert_int_equal(sc->default_action, JAIL_SCMP_ERRNO);
	assert_true(sc->has_default_errno);
	assert_int_equal(sc->default_errno, 38);
	assert_int_equal(sc->n_architectures, 3);
	assert_string_equal(sc->architectures[0], "SCMP_ARCH_X86_64");
	assert_string_equal(sc->architectures[2], "SCMP_ARCH_X32");
	assert_null(sc->architectures[3]);
	assert_int_equal(sc->n_flags, 1);
	assert_string_equal(sc->flags[0], "SECCOMP_FILTER_FLAG_LOG");

	assert_int_equal(sc->n_rules, 11);
	const struct jail_seccomp_rule *r = sc->rules;
	assert_int_equal(r[0].n_names, 3);
	assert_string_equal(r[0].names[2], "exit_group");
	assert_null(r[0].names[3]);
	assert_int_equal(r[0].action, JAIL_SCMP_ALLOW);
	assert_int_equal(r[0].n_args, 0);

	assert_int_equal(r[1].n_args, 4);
	enum jail_seccomp_op ops[] = { JAIL_SCMP_CMP_EQ, JAIL_SCMP_CMP_LT, JAIL_SCMP_CMP_LE,
				       JAIL_SCMP_CMP_GE };
	for (unsigned i = 0; i < 4; i++) {
		assert_int_equal(r[1].args[i].index, i);
		assert_int_equal(r[1].args[i].op, ops[i]);
	}
	assert_int_equal(r[1].args[3].value, 10);

	assert_int_equal(r[2].args[0].op, JAIL_SCMP_CMP_MASKED_EQ);
	assert_int_equal(r[2].args[0].value, 2114060288);
	assert_int_equal(r[2].args[0].value_two, 0);

	assert_int_equal(r[3].action, JAIL_SCMP_ERRNO);
	assert_true(r[3].has_errno);
	assert_int_equal(r[3].errno_ret, 1);
	assert_int_equal(r[4].action, JAIL_SCMP_KILL_PROCESS);
	assert_int_equal(r[5].action, JAIL_SCMP_KILL); /* KILL_THREAD */
	assert_int_equal(r[6].action, JAIL_SCMP_ERRNO);
	assert_false(r[6].has_errno);
	assert_int_equal(r[6].errno_ret, EPERM);
	assert_int_equal(r[6].args[0].index, 5);
	assert_true(r[6].args[0].value == UINT64_MAX);
	assert_int_equal(r[6].args[0].op, JAIL_SCMP_CMP_GT);
	assert_int_equal(r[6].args[1].op, JAIL_SCMP_CMP_NE);
	assert_int_equal(r[6].args[1].value_two, 3);
	assert_int_equal(r[7].action, JAIL_SCMP_TRAP);
	assert_int_equal(r[8].action, JAIL_SCMP_LOG);
	assert_int_equal(r[9].action, JAIL_SCMP_TRACE);
	assert_int_equal(r[9].errno_ret, 7);
	assert_int_equal(r[10].action, JAIL_SCMP_KILL);
}

static void test_spec_namespace_lookup(void **state)
{
	const struct jail_spec *s = *state;
	const struct jail_namespace *ns = jail_spec_namespace(s, CLONE_NEWNET);
	assert_non_null(ns);
	assert_string_equal(ns->path, "/var/run/netns/n1");
	assert_ptr_equal(jail_spec_namespace(s, CLONE_NEWPID), &s->namespaces[0]);

	struct jail_spec *min = parse_ok(SPEC_LINUX("'namespaces':[{'type':'mount'}]"));
	assert_non_null(jail_spec_namespace(min, CLONE_NEWNS));
	assert_null(jail_spec_namespace(min, CLONE_NEWNET));
	assert_null(jail_spec_namespace(min, CLONE_NEWUSER));
	jail_spec_free(min);
	assert_null(jail_spec_namespace(NULL, CLONE_NEWNS));
}

/* ---- defaults and leniency -------------------------------------------------- */

static void test_minimal_defaults(void **state)
{
	(void)state;
	struct jail_spec *s = parse_ok(SPEC_PROC(""));
	assert_string_equal(s->oci_version, "1.0.2");
	assert_false(s->root_readonly);
	assert_null(s->hostname);
	assert_true(s->has_process);
	assert_false(s->process.terminal);
	assert_false(s->process.has_console_size);
	assert_false(s->process.has_caps); /* absent: keep what we have */
	assert_false(s->process.has_oom_score_adj);
	assert_false(s->process.user.has_umask);
	assert_int_equal(s->process.n_env, 0);
	assert_null(s->process.env);
	assert_int_equal(s->n_mounts, 0);
	assert_int_equal(s->n_namespaces, 0);
	assert_false(s->has_resources);
	assert_false(s->has_seccomp);
	assert_int_equal(s->rootfs_propagation, 0);
	assert_null(s->cgroups_path);
	jail_spec_free(s);

	/* process is optional in config.json */
	s = parse_ok(SPEC("'hostname':'h'"));
	assert_false(s->has_process);
	assert_string_equal(s->hostname, "h");
	jail_spec_free(s);
}

static void test_null_is_absent_and_unknown_ignored(void **state)
{
	(void)state;
	struct jail_spec *s = parse_ok(SPEC("'hostname':null,'mounts':null,'linux':{'seccomp':null,"
					    "'sysctl':null,'personality':{'domain':'LINUX'},"
					    "'namespaces':[{'type':'pid','path':null,'x':1}]},"
					    "'vm':{'hypervisor':{'path':'/q'}}," PROC(
						    ",'terminal':null,'scheduler':{'policy':'x'},"
						    "'user':{'uid':1,'gid':2,'username':'u'}")));
	assert_null(s->hostname);
	assert_false(s->has_seccomp);
	assert_int_equal(s->n_namespaces, 1);
	assert_null(s->namespaces[0].path);
	assert_int_equal(s->process.user.uid, 1);
	assert_false(s->process.terminal);
	jail_spec_free(s);
}

static void test_console_size_without_terminal(void **state)
{
	(void)state;
	struct jail_spec *s = parse_ok(SPEC_PROC(",'consoleSize':{'height':10,'width':20}"));
	assert_false(s->process.terminal);
	assert_true(s->process.has_console_size);
	assert_int_equal(s->process.console_height, 10);
	assert_int_equal(s->process.console_width, 20);
	jail_spec_free(s);
}

static void test_seccomp_defaults(void **state)
{
	(void)state;
	struct jail_spec *s = parse_ok(SPEC_LINUX(
		"'seccomp':{'defaultAction':'SCMP_ACT_ALLOW','syscalls':[{'names':['mount'],"
		"'action':'SCMP_ACT_ERRNO'}]}"));
	assert_true(s->has_seccomp);
	assert_int_equal(s->seccomp.default_action, JAIL_SCMP_ALLOW);
	assert_false(s->seccomp.has_default_errno);
	assert_int_equal(s->seccomp.default_errno, EPERM);
	/* always allocated, empty */
	assert_non_null(s->seccomp.architectures);
	assert_null(s->seccomp.architectures[0]);
	assert_non_null(s->seccomp.flags);
	assert_int_equal(s->seccomp.n_flags, 0);
	assert_false(s->seccomp.rules[0].has_errno);
	assert_int_equal(s->seccomp.rules[0].errno_ret, EPERM);
	jail_spec_free(s);
}

static void test_uint64_limits_accepted(void **state)
{
	(void)state;
	struct jail_spec *s = parse_ok(SPEC_PROC(
		",'rlimits':[{'type':'RLIMIT_NOFILE','soft':18446744073709551615,"
		"'hard':18446744073709551615}],'user':{'uid':2147483647,'gid':0},'oomScoreAdj':1000"));
	assert_true(s->process.rlimits[0].soft == UINT64_MAX);
	assert_int_equal(s->process.user.uid, INT32_MAX);
	assert_int_equal(s->process.oom_score_adj, 1000);
	jail_spec_free(s);
}

/* ---- mount options ---------------------------------------------------------- */

static void test_mount_option_flags(void **state)
{
	(void)state;
	static const struct {
		const char *opt;
		unsigned long set, clear;
	} cases[] = {
		{ "ro", MS_RDONLY, 0 },		  { "rw", 0, MS_RDONLY },
		{ "nosuid", MS_NOSUID, 0 },	  { "suid", 0, MS_NOSUID },
		{ "nodev", MS_NODEV, 0 },	  { "dev", 0, MS_NODEV },
		{ "noexec", MS_NOEXEC, 0 },	  { "exec", 0, MS_NOEXEC },
		{ "sync", MS_SYNCHRONOUS, 0 },	  { "async", 0, MS_SYNCHRONOUS },
		{ "dirsync", MS_DIRSYNC, 0 },	  { "remount", MS_REMOUNT, 0 },
		{ "mand", MS_MANDLOCK, 0 },	  { "nomand", 0, MS_MANDLOCK },
		{ "atime", 0, MS_NOATIME },	  { "noatime", MS_NOATIME, 0 },
		{ "diratime", 0, MS_NODIRATIME }, { "nodiratime", MS_NODIRATIME, 0 },
		{ "relatime", MS_RELATIME, 0 },	  { "norelatime", 0, MS_RELATIME },
		{ "strictatime", MS_STRICTATIME, 0 }, { "nostrictatime", 0, MS_STRICTATIME },
		{ "bind", MS_BIND, 0 },		  { "rbind", MS_BIND | MS_REC, 0 },
		{ "defaults", 0, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char json[256];
		snprintf(json, sizeof(json),
			 SPEC("'mounts':[{'destination':'/m','type':'tmpfs','options':['%s']}]"),
			 cases[i].opt);
		struct jail_spec *s = parse_ok(json);
		const struct jail_mount *m = &s->mounts[0];
		if (m->flags != cases[i].set || m->clear_flags != cases[i].clear)
			print_error("option %s: flags %#lx clear %#lx\n", cases[i].opt,
				    s->mounts[0].flags, s->mounts[0].clear_flags);
		assert_int_equal(s->mounts[0].flags, cases[i].set);
		assert_int_equal(s->mounts[0].clear_flags, cases[i].clear);
		assert_null(s->mounts[0].data);
		assert_int_equal(s->mounts[0].propagation, 0);
		bool bind = cases[i].set & MS_BIND;
		assert_string_equal(s->mounts[0].type, bind ? "bind" : "tmpfs");
		jail_spec_free(s);
	}
}

static void test_mount_option_order_and_propagation(void **state)
{
	(void)state;
	static const struct {
		const char *opt;
		unsigned long prop;
	} props[] = {
		{ "private", MS_PRIVATE },	       { "rprivate", MS_PRIVATE | MS_REC },
		{ "shared", MS_SHARED },	       { "rshared", MS_SHARED | MS_REC },
		{ "slave", MS_SLAVE },		       { "rslave", MS_SLAVE | MS_REC },
		{ "unbindable", MS_UNBINDABLE },       { "runbindable", MS_UNBINDABLE | MS_REC },
	};
	for (size_t i = 0; i < sizeof(props) / sizeof(props[0]); i++) {
		char json[256];
		snprintf(json, sizeof(json),
			 SPEC("'mounts':[{'destination':'/m','source':'/s','options':['bind','%s']}]"),
			 props[i].opt);
		struct jail_spec *s = parse_ok(json);
		assert_int_equal(s->mounts[0].propagation, props[i].prop);
		assert_int_equal(s->mounts[0].flags, MS_BIND);
		jail_spec_free(s);
	}
	/* later options win, as in runc: ro then rw leaves rw (cleared). */
	struct jail_spec *s = parse_ok(SPEC(
		"'mounts':[{'destination':'/m','type':'tmpfs','options':['ro','nosuid','rw','suid',"
		"'nosuid','size=1m','','x-foo=bar','uid=0']}]"));
	assert_int_equal(s->mounts[0].flags, MS_NOSUID);
	assert_int_equal(s->mounts[0].clear_flags, MS_RDONLY);
	assert_string_equal(s->mounts[0].data, "size=1m,uid=0");
	jail_spec_free(s);
}

static void test_bind_by_type(void **state)
{
	(void)state;
	/* type "bind" without a bind option is still a bind mount */
	struct jail_spec *s = parse_ok(SPEC(
		"'mounts':[{'destination':'/a','type':'bind','source':'/x'},"
		"{'destination':'/b','source':'rel/dir','options':['rbind']},"
		"{'destination':'/c','type':'overlay','source':'overlay'}]"));
	assert_string_equal(s->mounts[0].type, "bind");
	assert_int_equal(s->mounts[0].flags, MS_BIND);
	assert_string_equal(s->mounts[1].type, "bind");
	assert_string_equal(s->mounts[1].source, "rel/dir"); /* no bundle: kept */
	assert_int_equal(s->mounts[1].flags, MS_BIND | MS_REC);
	assert_string_equal(s->mounts[2].type, "overlay");
	assert_int_equal(s->mounts[2].flags, 0);
	jail_spec_free(s);
}

static void test_recursive_mount_attrs_refused(void **state)
{
	(void)state;
	EXPECT_FAIL(SPEC("'mounts':[{'destination':'/m','source':'/s','options':['rbind','rro']}]"),
		    "mounts[0].options[1]", "\"rro\"", "not supported");
	EXPECT_FAIL(SPEC("'mounts':[{'destination':'/m','source':'/s','options':['idmap']}]"),
		    "mounts[0].options[0]", "\"idmap\"");
	EXPECT_FAIL(SPEC("'mounts':[{'destination':'/m','source':'/s','type':'bind',"
			 "'uidMappings':[{'containerID':0,'hostID':1,'size':1}]}]"),
		    "mounts[0].uidMappings", "not supported");
}

/* ---- validation errors -------------------------------------------------------- */

static void test_error_message_format(void **state)
{
	(void)state;
	char *json = dq(SPEC("'mounts':[{'destination':'/proc','type':'proc'},"
			     "{'destination':'/dev','type':'tmpfs'},{'destination':'tmp'}]"));
	struct jail_spec *s = NULL;
	struct husk_err err = { 0 };
	assert_int_equal(jail_spec_parse(json, strlen(json), NULL, &s, &err), -EINVAL);
	assert_string_equal(err.msg,
			    "config.json: mounts[2].destination: \"tmp\" is not an absolute path");
	free(json);

	json = dq(SPEC("'process':{'user':{'uid':-1,'gid':0},'args':['sh'],'cwd':'/'}"));
	assert_int_equal(jail_spec_parse(json, strlen(json), NULL, &s, &err), -EINVAL);
	assert_string_equal(
		err.msg,
		"config.json: process.user.uid: expected a uid or gid in range 0-2147483647, got -1");
	free(json);

	/* err may be NULL */
	json = dq("{}");
	assert_int_equal(jail_spec_parse(json, strlen(json), NULL, &s, NULL), -EINVAL);
	assert_null(s);
	free(json);
}

static void test_malformed_json_position(void **state)
{
	(void)state;
	const char *bad = "{\n  \"ociVersion\": \"1.0.2\",\n  \"root\": {\"path\": \"r\",}\n}";
	struct jail_spec *s = NULL;
	struct husk_err err = { 0 };
	assert_int_equal(jail_spec_parse(bad, strlen(bad), NULL, &s, &err), -EINVAL);
	assert_null(s);
	/* the offending '}' is on line 3, column 24 */
	assert_msg_has(err.msg, (const char *const[]){ "config.json: malformed JSON", "line 3",
						      "column 24", "offset 50", NULL });

	const char *cut = "{\"ociVersion\": \"1.0";
	assert_int_equal(jail_spec_parse(cut, strlen(cut), NULL, &s, &err), -EINVAL);
	assert_msg_has(err.msg,
		       (const char *const[]){ "line 1", "unexpected end of input", NULL });

	const char *trail = "{\"ociVersion\": \"1\", \"root\": {\"path\": \"r\"}}\n  x";
	assert_int_equal(jail_spec_parse(trail, strlen(trail), NULL, &s, &err), -EINVAL);
	assert_msg_has(err.msg, (const char *const[]){ "malformed JSON", "line 2", NULL });

	assert_int_equal(jail_spec_parse("", 0, NULL, &s, &err), -EINVAL);
	assert_msg_has(err.msg, (const char *const[]){ "malformed JSON", NULL });

	/* the length is honoured: no terminating NUL is needed nor read */
	const char good[] = "{\"ociVersion\":\"1\",\"root\":{\"path\":\"r\"}}garbage";
	assert_int_equal(jail_spec_parse(good, sizeof(good) - 1 - 7, NULL, &s, &err), 0);
	jail_spec_free(s);
	/* an embedded NUL byte is not a silent end of input */
	const char nul[] = "{\"ociVersion\":\"1\",\"root\":{\"path\":\"r\"}}\0{";
	assert_true(jail_spec_parse(nul, sizeof(nul) - 1, NULL, &s, &err) < 0);
	assert_null(s);
}

static void test_truncated_input_every_length(void **state)
{
	(void)state;
	char *json = dq(full_config);
	size_t len = strlen(json);
	/* Whitespace trails the final '}': stop before it. */
	while (len && json[len - 1] != '}')
		len--;
	for (size_t n = 0; n < len; n++) {
		struct jail_spec *s = NULL;
		struct husk_err err = { 0 };
		int r = jail_spec_parse(json, n, NULL, &s, &err);
		if (r >= 0)
			print_error("prefix of %zu bytes parsed\n", n);
		assert_true(r < 0);
		assert_null(s);
		assert_non_null(strstr(err.msg, "malformed JSON"));
	}
	free(json);
}

static void test_not_an_object(void **state)
{
	(void)state;
	EXPECT_FAIL("[1,2]", "expected an object", "[1,2]");
	EXPECT_FAIL("\"x\"", "expected an object");
	EXPECT_PROCESS_FAIL("42", "process", "expected an object", "42");
}

static void test_required_fields(void **state)
{
	(void)state;
	EXPECT_FAIL("{'root':{'path':'r'}}", "ociVersion", "required");
	EXPECT_FAIL("{'ociVersion':'','root':{'path':'r'}}", "ociVersion", "\"\"");
	EXPECT_FAIL("{'ociVersion':'1.0.2'}", "root", "required");
	EXPECT_FAIL("{'ociVersion':'1.0.2','root':{'readonly':true}}", "root.path", "required");
	EXPECT_FAIL("{'ociVersion':'1.0.2','root':{'path':''}}", "root.path", "\"\"");
	EXPECT_FAIL(SPEC("'process':{'user':{'uid':0,'gid':0},'cwd':'/'}"), "process.args",
		    "required");
	EXPECT_FAIL(SPEC("'process':{'user':{'uid':0,'gid':0},'args':[],'cwd':'/'}"),
		    "process.args", "[]");
	EXPECT_FAIL(SPEC("'process':{'user':{'uid':0,'gid':0},'args':[''],'cwd':'/'}"),
		    "process.args[0]", "\"\"");
	EXPECT_FAIL(SPEC("'process':{'user':{'uid':0,'gid':0},'args':['sh']}"), "process.cwd",
		    "required");
	EXPECT_FAIL(SPEC("'process':{'args':['sh'],'cwd':'/'}"), "process.user", "required");
	EXPECT_FAIL(SPEC("'process':{'user':{'gid':0},'args':['sh'],'cwd':'/'}"),
		    "process.user.uid", "required");
	EXPECT_FAIL(SPEC("'process':{'user':{'uid':0},'args':['sh'],'cwd':'/'}"),
		    "process.user.gid", "required");
	EXPECT_FAIL(SPEC("'mounts':[{'type':'tmpfs'}]"), "mounts[0].destination", "required");
	EXPECT_FAIL(SPEC("'hooks':{'prestart':[{'args':['x']}]}"), "hooks.prestart[0].path",
		    "required");
	EXPECT_FAIL(SPEC_LINUX("'namespaces':[{'path':'/x'}]"), "linux.namespaces[0].type",
		    "required");
	EXPECT_FAIL(SPEC_LINUX("'uidMappings':[{'containerID':0,'hostID':0}]"),
		    "linux.uidMappings[0].size", "required");
	EXPECT_FAIL(SPEC_LINUX("'devices':[{'type':'c','path':'/dev/x','major':1}]"),
		    "linux.devices[0].minor", "required");
	EXPECT_FAIL(SPEC_LINUX("'seccomp':{'syscalls':[]}"), "linux.seccomp.defaultAction",
		    "required");
	EXPECT_FAIL(SPEC_LINUX("'seccomp':{'defaultAction':'SCMP_ACT_ALLOW','syscalls':["
			       "{'action':'SCMP_ACT_ERRNO'}]}"),
		    "linux.seccomp.syscalls[0].names", "required");
	EXPECT_FAIL(SPEC_LINUX("'seccomp':{'defaultAction':'SCMP_ACT_ALLOW','syscalls':["
			       "{'names':[],'action':'SCMP_ACT_ERRNO'}]}"),
		    "linux.seccomp.syscalls[0].names", "[]");
	EXPECT_FAIL(SPEC_PROC(",'rlimits':[{'type':'RLIMIT_NOFILE','soft':1}]"),
		    "process.rlimits[0].hard", "required");
}

static void test_wrong_types(void **state)
{
	(void)state;
	EXPECT_FAIL("{'ociVersion':1,'root':{'path':'r'}}", "ociVersion", "expected a string",
		    "got 1");
	EXPECT_FAIL(SPEC("'hostname':['h']"), "hostname", "expected a string", "[\"h\"]");
	EXPECT_FAIL(SPEC_PROC(",'terminal':'yes'"), "process.terminal", "expected a boolean",
		    "\"yes\"");
	EXPECT_FAIL(SPEC_PROC(",'env':'A=1'"), "process.env", "expected an array");
	EXPECT_FAIL(SPEC_PROC(",'env':['A=1',2]"), "process.env[1]", "expected a string", "got 2");
	EXPECT_FAIL(SPEC("'mounts':{}"), "mounts", "expected an array", "{}");
	EXPECT_FAIL(SPEC("'annotations':{'a':'b','c':3}"), "annotations.c", "got 3");
	EXPECT_FAIL(SPEC_LINUX("'resources':{'memory':{'limit':'1G'}}"),
		    "linux.resources.memory.limit", "expected a signed 64-bit integer", "\"1G\"");
	EXPECT_FAIL(SPEC_LINUX("'resources':{'memory':{'limit':1.5}}"),
		    "linux.resources.memory.limit", "1.5");
	EXPECT_FAIL(SPEC_LINUX("'resources':{'memory':{'limit':9223372036854775808}}"),
		    "linux.resources.memory.limit", "9223372036854775808");
	EXPECT_FAIL(SPEC_LINUX("'resources':{'blockIO':{'weight':65536}}"),
		    "linux.resources.blockIO.weight", "16-bit", "65536");
	EXPECT_FAIL(SPEC_LINUX("'resources':{'cpu':{'shares':-2}}"), "linux.resources.cpu.shares",
		    "-2");
	EXPECT_FAIL(SPEC_LINUX("'resources':{'devices':{}}"), "linux.resources.devices",
		    "expected an array");
	EXPECT_FAIL(SPEC_LINUX("'sysctl':['a']"), "linux.sysctl", "expected an object");
	/* a NUL inside a string would silently cut a path in C */
	EXPECT_FAIL(SPEC("'mounts':[{'destination':'/a\\u0000/../../etc'}]"),
		    "mounts[0].destination", "NUL");
}

static void test_id_ranges(void **state)
{
	(void)state;
	EXPECT_FAIL(SPEC("'process':{'user':{'uid':0,'gid':4294967296},'args':['sh'],'cwd':'/'}"),
		    "process.user.gid", "4294967296");
	EXPECT_FAIL(SPEC("'process':{'user':{'uid':1.0,'gid':0},'args':['sh'],'cwd':'/'}"),
		    "process.user.uid", "1.0");
	EXPECT_FAIL(SPEC_PROC(",'user':{'uid':0,'gid':0,'additionalGids':[1,-1]}"),
		    "process.user.additionalGids[1]", "-1");
	EXPECT_FAIL(SPEC_PROC(",'user':{'uid':0,'gid':0,'umask':-18}"), "process.user.umask",
		    "-18");
	EXPECT_FAIL(SPEC_LINUX("'uidMappings':[{'containerID':-1,'hostID':0,'size':1}]"),
		    "linux.uidMappings[0].containerID", "-1");
	EXPECT_FAIL(SPEC_LINUX("'gidMappings':[{'containerID':0,'hostID':4294967296,'size':1}]"),
		    "linux.gidMappings[0].hostID", "4294967296");
	EXPECT_FAIL(SPEC_LINUX("'uidMappings':[{'containerID':0,'hostID':0,'size':0}]"),
		    "linux.uidMappings[0].size", "got 0");
	EXPECT_FAIL(SPEC_LINUX("'gidMappings':[{'containerID':0,'hostID':4294967295,'size':2}]"),
		    "linux.gidMappings[0].size", "4294967295");
	EXPECT_FAIL(SPEC_LINUX("'devices':[{'type':'c','path':'/dev/x','major':1,'minor':1,"
			       "'uid':-5}]"),
		    "linux.devices[0].uid", "-5");
	EXPECT_FAIL(SPEC_PROC(",'consoleSize':{'height':-1,'width':80}"),
		    "process.consoleSize.height", "-1");
	EXPECT_FAIL(SPEC_PROC(",'oomScoreAdj':1001"), "process.oomScoreAdj", "1001");
}

/* runc's range for the process's ids (0-2147483647): (uid_t)-1 would make
 * setresuid keep the runtime's root, and setgroups refuses it. */
static void test_process_id_range(void **state)
{
	(void)state;
	EXPECT_FAIL(SPEC("'process':{'user':{'uid':4294967295,'gid':0},'args':['sh'],'cwd':'/'}"),
		    "process.user.uid", "range 0-2147483647", "got 4294967295");
	EXPECT_FAIL(SPEC("'process':{'user':{'uid':2147483648,'gid':0},'args':['sh'],'cwd':'/'}"),
		    "process.user.uid", "range 0-2147483647", "got 2147483648");
	EXPECT_FAIL(SPEC("'process':{'user':{'uid':0,'gid':4294967295},'args':['sh'],'cwd':'/'}"),
		    "process.user.gid", "range 0-2147483647", "got 4294967295");
	EXPECT_FAIL(SPEC_PROC(",'user':{'uid':0,'gid':0,'additionalGids':[5,4294967295]}"),
		    "process.user.additionalGids[1]", "range 0-2147483647", "got 4294967295");
	/* husk-jail exec --process and Task.Exec go through the same check */
	EXPECT_PROCESS_FAIL("{'user':{'uid':4294967295,'gid':0},'args':['sh'],'cwd':'/'}",
			    "process.user.uid", "range 0-2147483647");
	/* the top of the range, and ids of mappings and devices, which are
	 * not process ids (runc leaves those to the kernel), still parse */
	struct jail_spec *s = parse_ok(SPEC(
		"'process':{'user':{'uid':2147483647,'gid':2147483647,'additionalGids':[2147483647]},"
		"'args':['sh'],'cwd':'/'},'linux':{'uidMappings':[{'containerID':0,"
		"'hostID':4294967294,'size':1}],'devices':[{'type':'c','path':'/dev/x','major':1,"
		"'minor':1,'uid':4294967295}]}"));
	assert_int_equal(s->process.user.uid, INT32_MAX);
	assert_int_equal(s->process.user.gid, INT32_MAX);
	assert_int_equal(s->process.user.additional_gids[0], INT32_MAX);
	assert_int_equal(s->uid_mappings[0].host_id, 4294967294u);
	assert_int_equal(s->devices[0].uid, UINT32_MAX);
	jail_spec_free(s);
}

/* A negative byte count other than -1 (unlimited) is refused naming the
 * field, whether or not cgroups are in use (runc's write to the cgroup
 * fails with EINVAL; husk-jail --no-cgroups used to accept it). */
static void test_memory_negative(void **state)
{
	(void)state;
	EXPECT_FAIL(SPEC_LINUX("'resources':{'memory':{'limit':-2}}"),
		    "linux.resources.memory.limit", "-2", "-1 means unlimited");
	EXPECT_FAIL(SPEC_LINUX("'resources':{'memory':{'limit':-9223372036854775808}}"),
		    "linux.resources.memory.limit", "-9223372036854775808");
	EXPECT_FAIL(SPEC_LINUX("'resources':{'memory':{'limit':1048576,'reservation':-5}}"),
		    "linux.resources.memory.reservation", "-5");
	EXPECT_FAIL(SPEC_LINUX("'resources':{'memory':{'limit':1048576,'swap':-3}}"),
		    "linux.resources.memory.swap", "-3");
	struct jail_spec *s = parse_ok(
		SPEC_LINUX("'resources':{'memory':{'limit':-1,'reservation':-1,'swap':-1}}"));
	assert_int_equal(s->resources.memory_limit, -1);
	jail_spec_free(s);
	s = parse_ok(SPEC_LINUX("'resources':{'memory':{'limit':0,'kernel':-2}}"));
	assert_int_equal(s->resources.memory_limit, 0);
	jail_spec_free(s);
}

/* Intel RDT is not implemented: a schema (a limit) is refused, as runc
 * refuses it where RDT is not enabled; a bare closID is accepted. */
static void test_intel_rdt(void **state)
{
	(void)state;
	EXPECT_FAIL(SPEC_LINUX("'intelRdt':{'closID':'x','l3CacheSchema':'L3:0=ff'}"),
		    "linux.intelRdt.l3CacheSchema", "\"L3:0=ff\"", "not supported");
	EXPECT_FAIL(SPEC_LINUX("'intelRdt':{'memBwSchema':'MB:0=70'}"),
		    "linux.intelRdt.memBwSchema", "not supported");
	EXPECT_FAIL(SPEC_LINUX("'intelRdt':{'closID':3}"), "linux.intelRdt.closID",
		    "expected a string");
	struct jail_spec *s = parse_ok(SPEC_LINUX("'intelRdt':{'closID':'x','l3CacheSchema':''}"));
	jail_spec_free(s);
}

static void test_paths(void **state)
{
	(void)state;
	EXPECT_FAIL(SPEC("'mounts':[{'destination':'tmp'}]"), "mounts[0].destination",
		    "\"tmp\"", "not an absolute path");
	EXPECT_FAIL(SPEC("'mounts':[{'destination':'/a/../../etc'}]"), "mounts[0].destination",
		    "\"/a/../../etc\"", "\"..\"");
	EXPECT_FAIL(SPEC("'mounts':[{'destination':'/..'}]"), "mounts[0].destination", "\"/..\"");
	EXPECT_FAIL(SPEC_PROC(",'cwd':'work'"), "process.cwd", "\"work\"",
		    "not an absolute path");
	EXPECT_FAIL(SPEC("'hooks':{'poststop':[{'path':'/ok'},{'path':'bin/hook'}]}"),
		    "hooks.poststop[1].path", "\"bin/hook\"", "not an absolute path");
	EXPECT_FAIL(SPEC_LINUX("'namespaces':[{'type':'net','path':'/x'}]"),
		    "linux.namespaces[0].type", "\"net\"");
	EXPECT_FAIL(SPEC_LINUX("'namespaces':[{'type':'network','path':'proc/1/ns/net'}]"),
		    "linux.namespaces[0].path", "\"proc/1/ns/net\"");
	EXPECT_FAIL(SPEC_LINUX("'devices':[{'type':'c','path':'dev/x','major':1,'minor':1}]"),
		    "linux.devices[0].path", "\"dev/x\"");
	EXPECT_FAIL(SPEC_LINUX("'maskedPaths':['/proc/kcore','proc/x']"), "linux.maskedPaths[1]",
		    "\"proc/x\"");
	EXPECT_FAIL(SPEC_LINUX("'readonlyPaths':['sys']"), "linux.readonlyPaths[0]", "\"sys\"");

	/* ".." inside a name is not a ".." component */
	struct jail_spec *s = parse_ok(SPEC("'mounts':[{'destination':'/a..b/..c/d..'}]"));
	assert_string_equal(s->mounts[0].destination, "/a..b/..c/d..");
	jail_spec_free(s);
}

static void test_hook_timeout(void **state)
{
	(void)state;
	EXPECT_FAIL(SPEC("'hooks':{'prestart':[{'path':'/h','timeout':0}]}"),
		    "hooks.prestart[0].timeout", "got 0");
	EXPECT_FAIL(SPEC("'hooks':{'createRuntime':[{'path':'/h','timeout':-5}]}"),
		    "hooks.createRuntime[0].timeout", "-5");
	EXPECT_FAIL(SPEC("'hooks':{'poststart':[{'path':'/h','timeout':'5'}]}"),
		    "hooks.poststart[0].timeout", "\"5\"");
	EXPECT_FAIL(SPEC("'hooks':{'startContainer':[{'path':'/h','args':'x'}]}"),
		    "hooks.startContainer[0].args", "expected an array");
}

static void test_namespaces(void **state)
{
	(void)state;
	EXPECT_FAIL(SPEC_LINUX("'namespaces':[{'type':'pid'},{'type':'time'}]"),
		    "linux.namespaces[1].type", "unknown namespace type", "\"time\"");
	EXPECT_FAIL(SPEC_LINUX("'namespaces':[{'type':'pid'},{'type':'ipc'},{'type':'pid'}]"),
		    "linux.namespaces[2].type", "duplicate", "\"pid\"");
}

static void test_capabilities(void **state)
{
	(void)state;
	/* Unknown names are left out and listed once each, as runc ignores
	 * them with a warning (runtime-spec 1.1: not an error). */
	struct jail_spec *s = parse_ok(SPEC_PROC(",'capabilities':{'bounding':['CAP_KILL','CAP_FLY'],"
						 "'effective':['CAP_KILL','CAP_FLY'],"
						 "'ambient':['kill']}"));
	assert_true(s->process.has_caps);
	assert_int_equal(s->process.caps.bounding, UINT64_C(1) << 5);
	assert_int_equal(s->process.caps.effective, UINT64_C(1) << 5);
	assert_int_equal(s->process.caps.ambient, 0);
	assert_string_equal(s->process.unknown_caps, "CAP_FLY, kill");
	jail_spec_free(s);
	EXPECT_FAIL(SPEC_PROC(",'capabilities':{'ambient':['CAP_KILL',5]}"),
		    "process.capabilities.ambient[1]", "expected a string");
	/* the list is for a warning: bounded, however many names */
	char json[8192] = "{'user':{'uid':0,'gid':0},'args':['sh'],'cwd':'/','capabilities':{"
			  "'bounding':[";
	for (int i = 0; i < 400; i++)
		snprintf(json + strlen(json), sizeof(json) - strlen(json), "%s'CAP_X%d'",
			 i ? "," : "", i);
	strcat(json, "]}}");
	char *dj = dq(json);
	struct jail_process *p = NULL;
	struct husk_err err = { 0 };
	assert_int_equal(jail_process_parse(dj, strlen(dj), &p, &err), 0);
	size_t n = strlen(p->unknown_caps);
	assert_true(n <= 1024 + 5);
	assert_string_equal(p->unknown_caps + n - 5, ", ...");
	assert_int_equal(strncmp(p->unknown_caps, "CAP_X0, CAP_X1, ", 16), 0);
	jail_process_free(p);
	free(dj);
	/* present but empty: has_caps with empty sets (drop everything) */
	s = parse_ok(SPEC_PROC(",'capabilities':{}"));
	assert_true(s->process.has_caps);
	assert_int_equal(s->process.caps.bounding, 0);
	assert_null(s->process.unknown_caps);
	jail_spec_free(s);
}

static void test_cap_names(void **state)
{
	(void)state;
	static const char *const names[] = {
		"CAP_CHOWN",	      "CAP_DAC_OVERRIDE",   "CAP_DAC_READ_SEARCH",
		"CAP_FOWNER",	      "CAP_FSETID",	    "CAP_KILL",
		"CAP_SETGID",	      "CAP_SETUID",	    "CAP_SETPCAP",
		"CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
		"CAP_NET_ADMIN",      "CAP_NET_RAW",	    "CAP_IPC_LOCK",
		"CAP_IPC_OWNER",      "CAP_SYS_MODULE",	    "CAP_SYS_RAWIO",
		"CAP_SYS_CHROOT",     "CAP_SYS_PTRACE",	    "CAP_SYS_PACCT",
		"CAP_SYS_ADMIN",      "CAP_SYS_BOOT",	    "CAP_SYS_NICE",
		"CAP_SYS_RESOURCE",   "CAP_SYS_TIME",	    "CAP_SYS_TTY_CONFIG",
		"CAP_MKNOD",	      "CAP_LEASE",	    "CAP_AUDIT_WRITE",
		"CAP_AUDIT_CONTROL",  "CAP_SETFCAP",	    "CAP_MAC_OVERRIDE",
		"CAP_MAC_ADMIN",      "CAP_SYSLOG",	    "CAP_WAKE_ALARM",
		"CAP_BLOCK_SUSPEND",  "CAP_AUDIT_READ",	    "CAP_PERFMON",
		"CAP_BPF",	      "CAP_CHECKPOINT_RESTORE",
	};
	assert_int_equal(sizeof(names) / sizeof(names[0]), 41);
	for (int i = 0; i < 41; i++)
		assert_int_equal(jail_cap_from_name(names[i]), i);
	/* numbers agree with the kernel's, where the libc headers know them */
	assert_int_equal(jail_cap_from_name("CAP_SYS_ADMIN"), 21);
	assert_int_equal(jail_cap_from_name("CAP_BPF"), 39);
	assert_int_equal(jail_cap_from_name("CAP_UNKNOWN"), -1);
	assert_int_equal(jail_cap_from_name("cap_chown"), -1);
	assert_int_equal(jail_cap_from_name("CHOWN"), -1);
	assert_int_equal(jail_cap_from_name(""), -1);
	assert_int_equal(jail_cap_from_name(NULL), -1);
}

static void test_rlimits(void **state)
{
	(void)state;
	static const struct {
		const char *name;
		int res;
	} all[] = {
		{ "RLIMIT_CPU", RLIMIT_CPU },		{ "RLIMIT_FSIZE", RLIMIT_FSIZE },
		{ "RLIMIT_DATA", RLIMIT_DATA },		{ "RLIMIT_STACK", RLIMIT_STACK },
		{ "RLIMIT_CORE", RLIMIT_CORE },		{ "RLIMIT_RSS", RLIMIT_RSS },
		{ "RLIMIT_NPROC", RLIMIT_NPROC },	{ "RLIMIT_NOFILE", RLIMIT_NOFILE },
		{ "RLIMIT_MEMLOCK", RLIMIT_MEMLOCK },	{ "RLIMIT_AS", RLIMIT_AS },
		{ "RLIMIT_LOCKS", RLIMIT_LOCKS },	{ "RLIMIT_SIGPENDING", RLIMIT_SIGPENDING },
		{ "RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE }, { "RLIMIT_NICE", RLIMIT_NICE },
		{ "RLIMIT_RTPRIO", RLIMIT_RTPRIO },	{ "RLIMIT_RTTIME", RLIMIT_RTTIME },
	};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		char json[256];
		snprintf(json, sizeof(json),
			 SPEC_PROC(",'rlimits':[{'type':'%s','soft':1,'hard':2}]"), all[i].name);
		struct jail_spec *s = parse_ok(json);
		assert_int_equal(s->process.rlimits[0].resource, all[i].res);
		jail_spec_free(s);
	}
	EXPECT_FAIL(SPEC_PROC(",'rlimits':[{'type':'RLIMIT_FOO','soft':1,'hard':2}]"),
		    "process.rlimits[0].type", "unknown rlimit", "\"RLIMIT_FOO\"");
	EXPECT_FAIL(SPEC_PROC(",'rlimits':[{'type':'RLIMIT_NOFILE','soft':2048,'hard':1024}]"),
		    "process.rlimits[0].soft", "2048", "1024");
	EXPECT_FAIL(SPEC_PROC(",'rlimits':[{'type':'RLIMIT_NOFILE','soft':1,'hard':2},"
			      "{'type':'RLIMIT_NOFILE','soft':1,'hard':2}]"),
		    "process.rlimits[1].type", "duplicate", "\"RLIMIT_NOFILE\"");
	EXPECT_FAIL(SPEC_PROC(",'rlimits':[{'type':'RLIMIT_NOFILE','soft':-1,'hard':2}]"),
		    "process.rlimits[0].soft", "-1");
}

static void test_seccomp_errors(void **state)
{
	(void)state;
#define SC(rules) SPEC_LINUX("'seccomp':{'defaultAction':'SCMP_ACT_ALLOW','syscalls':[" rules "]}")
	EXPECT_FAIL(SPEC_LINUX("'seccomp':{'defaultAction':'SCMP_ACT_NOTIFY'}"),
		    "linux.seccomp.defaultAction", "unknown seccomp action", "\"SCMP_ACT_NOTIFY\"");
	EXPECT_FAIL(SC("{'names':['a'],'action':'SCMP_ACT_ALLOW'},{'names':['b'],'action':'ALLOW'}"),
		    "linux.seccomp.syscalls[1].action", "\"ALLOW\"");
	EXPECT_FAIL(SC("{'names':['a'],'action':'SCMP_ACT_ALLOW','args':[{'index':0,'value':1,"
		       "'op':'SCMP_CMP_EQ'},{'index':1,'value':1,'op':'SCMP_CMP_XX'}]}"),
		    "linux.seccomp.syscalls[0].args[1].op", "unknown seccomp operator",
		    "\"SCMP_CMP_XX\"");
	EXPECT_FAIL(SC("{'names':['a'],'action':'SCMP_ACT_ALLOW','args':[{'index':6,'value':1,"
		       "'op':'SCMP_CMP_EQ'}]}"),
		    "linux.seccomp.syscalls[0].args[0].index", "got 6");
	EXPECT_FAIL(SC("{'names':['a'],'action':'SCMP_ACT_ALLOW','args':[{'index':0,"
		       "'op':'SCMP_CMP_EQ'}]}"),
		    "linux.seccomp.syscalls[0].args[0].value", "required");
	EXPECT_FAIL(SC("{'names':['a'],'action':'SCMP_ACT_ERRNO','errnoRet':-1}"),
		    "linux.seccomp.syscalls[0].errnoRet", "-1");
	EXPECT_FAIL(SC("{'names':['a',1],'action':'SCMP_ACT_ALLOW'}"),
		    "linux.seccomp.syscalls[0].names[1]", "got 1");
	EXPECT_FAIL(SPEC_LINUX("'seccomp':{'defaultAction':'SCMP_ACT_KILL','architectures':"
			       "'SCMP_ARCH_X86_64'}"),
		    "linux.seccomp.architectures", "expected an array");
#undef SC
	/* syscall names and architectures are not checked here */
	struct jail_spec *s = parse_ok(SPEC_LINUX(
		"'seccomp':{'defaultAction':'SCMP_ACT_KILL_PROCESS','architectures':['SCMP_ARCH_NONE'],"
		"'syscalls':[{'names':['no_such_syscall'],'action':'SCMP_ACT_LOG'}]}"));
	assert_string_equal(s->seccomp.architectures[0], "SCMP_ARCH_NONE");
	assert_string_equal(s->seccomp.rules[0].names[0], "no_such_syscall");
	jail_spec_free(s);
}

static void test_devices_and_propagation(void **state)
{
	(void)state;
	EXPECT_FAIL(SPEC_LINUX("'devices':[{'type':'x','path':'/dev/x','major':1,'minor':1}]"),
		    "linux.devices[0].type", "\"x\"");
	EXPECT_FAIL(SPEC_LINUX("'devices':[{'type':'cc','path':'/dev/x','major':1,'minor':1}]"),
		    "linux.devices[0].type", "\"cc\"");
	EXPECT_FAIL(SPEC_LINUX("'devices':[{'type':'c','major':1,'minor':1}]"),
		    "linux.devices[0].path", "required");
	EXPECT_FAIL(SPEC_LINUX("'rootfsPropagation':'recursive'"), "linux.rootfsPropagation",
		    "\"recursive\"");
	static const struct {
		const char *name;
		unsigned long flags;
	} props[] = {
		{ "private", MS_PRIVATE },	 { "rprivate", MS_PRIVATE | MS_REC },
		{ "slave", MS_SLAVE },		 { "rslave", MS_SLAVE | MS_REC },
		{ "shared", MS_SHARED },	 { "rshared", MS_SHARED | MS_REC },
		{ "unbindable", MS_UNBINDABLE }, { "runbindable", MS_UNBINDABLE | MS_REC },
		{ "", 0 },
	};
	for (size_t i = 0; i < sizeof(props) / sizeof(props[0]); i++) {
		char json[256];
		snprintf(json, sizeof(json), SPEC_LINUX("'rootfsPropagation':'%s'"), props[i].name);
		struct jail_spec *s = parse_ok(json);
		assert_int_equal(s->rootfs_propagation, props[i].flags);
		jail_spec_free(s);
	}
	/* 'u' is a character device; a pipe needs no numbers */
	struct jail_spec *s =
		parse_ok(SPEC_LINUX("'devices':[{'type':'u','path':'/dev/u','major':1,'minor':3},"
				    "{'type':'p','path':'/dev/p'}]"));
	assert_int_equal(s->devices[0].type, 'u');
	assert_int_equal(s->devices[0].minor, 3);
	assert_int_equal(s->devices[1].type, 'p');
	jail_spec_free(s);
}

static void test_env_format(void **state)
{
	(void)state;
	EXPECT_FAIL(SPEC_PROC(",'env':['A=1','NOEQUALS']"), "process.env[1]", "\"NOEQUALS\"",
		    "KEY=VALUE");
	EXPECT_FAIL(SPEC_PROC(",'env':['=value']"), "process.env[0]", "\"=value\"");
	struct jail_spec *s = parse_ok(SPEC_PROC(",'env':['A==b','B=']"));
	assert_string_equal(s->process.env[0], "A==b");
	jail_spec_free(s);
}

static void test_size_limit(void **state)
{
	(void)state;
	size_t len = (16u << 20) + 1;
	char *big = malloc(len);
	assert_non_null(big);
	/* a valid document padded with whitespace past the bound */
	const char *doc = "{\"ociVersion\":\"1\",\"root\":{\"path\":\"r\"}}";
	memset(big, ' ', len);
	memcpy(big, doc, strlen(doc));
	struct jail_spec *s = NULL;
	struct husk_err err = { 0 };
	assert_int_equal(jail_spec_parse(big, len, NULL, &s, &err), -EFBIG);
	assert_null(s);
	assert_msg_has(err.msg, (const char *const[]){ "config.json", "16 MiB", NULL });
	/* exactly at the bound is fine */
	assert_int_equal(jail_spec_parse(big, len - 1, NULL, &s, &err), 0);
	jail_spec_free(s);
	free(big);
}

/* ---- every field: wrong type, and absent ------------------------------------------ */

struct walk {
	struct json_object *root;
	unsigned mutated, failed;
	int mode; /* 0: replace with a wrong type; 1: remove */
};

static bool ignored_path(const char *path)
{
	/* fields the parser deliberately does not read */
	return strstr(path, "leafWeight") || strstr(path, "realtimeRuntime") ||
	       strstr(path, "ioPriority") || strstr(path, "futureField") ||
	       strstr(path, "intelRdt") || strncmp(path, "linux.resources.devices[", 24) == 0;
}

static struct json_object *wrong_type_for(struct json_object *v)
{
	switch (json_object_get_type(v)) {
	case json_type_string:
		return json_object_new_int(42);
	case json_type_object:
	case json_type_array:
		return json_object_new_int(7);
	default:
		return json_object_new_string("wrong");
	}
}

/* Serializes the mutated tree, parses it; a wrong type must fail naming the
 * path; a removal must either parse or fail cleanly. */
static void check_mutation(struct walk *w, const char *path)
{
	int flags = JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE;
	const char *text = json_object_to_json_string_ext(w->root, flags);
	struct jail_spec *s = NULL;
	struct husk_err err = { 0 };
	int r = jail_spec_parse(text, strlen(text), NULL, &s, &err);
	w->mutated++;
	if (r < 0) {
		w->failed++;
		assert_null(s);
		assert_true(strncmp(err.msg, "config.json: ", 13) == 0);
	} else {
		jail_spec_free(s);
	}
	if (w->mode == 0 && !ignored_path(path)) {
		char want[320];
		snprintf(want, sizeof(want), "config.json: %s: expected", path);
		if (r >= 0 || strncmp(err.msg, want, strlen(want)) != 0)
			print_error("%s: r=%d msg=%s\n", path, r, err.msg);
		assert_true(r < 0);
		assert_true(strncmp(err.msg, want, strlen(want)) == 0);
	}
}

static void walk(struct walk *w, struct json_object *node, const char *path)
{
	if (json_object_is_type(node, json_type_object)) {
		/* collect keys first: mutation during iteration is not allowed */
		size_t n = (size_t)json_object_object_length(node), i = 0;
		char **keys = calloc(n + 1, sizeof(*keys));
		assert_non_null(keys);
		json_object_object_foreach(node, key, val)
		{
			(void)val;
			keys[i++] = strdup(key);
		}
		for (i = 0; i < n; i++) {
			char sub[256];
			snprintf(sub, sizeof(sub), "%s%s%s", path, *path ? "." : "", keys[i]);
			struct json_object *orig = json_object_object_get(node, keys[i]);
			json_object_get(orig); /* keep it while replaced */
			if (w->mode == 0)
				json_object_object_add(node, keys[i], wrong_type_for(orig));
			else
				json_object_object_del(node, keys[i]);
			check_mutation(w, sub);
			json_object_object_add(node, keys[i], orig);
			walk(w, orig, sub);
			free(keys[i]);
		}
		free(keys);
	} else if (json_object_is_type(node, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(node); i++) {
			char sub[256];
			snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
			struct json_object *orig = json_object_array_get_idx(node, i);
			json_object_get(orig);
			if (w->mode == 0) {
				json_object_array_put_idx(node, i, wrong_type_for(orig));
				check_mutation(w, sub);
			}
			json_object_array_put_idx(node, i, orig);
			walk(w, orig, sub);
		}
	}
}

static void test_every_field_wrong_type(void **state)
{
	(void)state;
	char *json = dq(full_config);
	struct walk w = { .root = json_tokener_parse(json), .mode = 0 };
	assert_non_null(w.root);
	walk(&w, w.root, "");
	print_message("%u fields mutated, %u refused\n", w.mutated, w.failed);
	/* the full config has a few hundred fields; nearly all must fail */
	assert_true(w.mutated > 300);
	assert_true(w.failed > 290);
	json_object_put(w.root);
	free(json);
}

static void test_every_field_removed(void **state)
{
	(void)state;
	char *json = dq(full_config);
	struct walk w = { .root = json_tokener_parse(json), .mode = 1 };
	assert_non_null(w.root);
	walk(&w, w.root, "");
	print_message("%u fields removed, %u refused\n", w.mutated, w.failed);
	assert_true(w.mutated > 150);
	/* required ones (ociVersion, root, args, cwd, user, destination, ...) */
	assert_true(w.failed >= 20);
	json_object_put(w.root);
	free(json);
}

/* ---- jail_spec_load ------------------------------------------------------------- */

struct bundle {
	char dir[64];
};

static void write_file(const char *dir, const char *name, const char *text)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static int bundle_setup(void **state)
{
	struct bundle *b = calloc(1, sizeof(*b));
	if (!b)
		return -1;
	strcpy(b->dir, "/tmp/husk-spec-test.XXXXXX");
	if (!mkdtemp(b->dir))
		return -1;
	*state = b;
	return 0;
}

static int bundle_teardown(void **state)
{
	struct bundle *b = *state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", b->dir);
	int r = system(cmd);
	free(b);
	return r == 0 ? 0 : -1;
}

static void test_load_relative_root(void **state)
{
	struct bundle *b = *state;
	char path[256], *json;
	snprintf(path, sizeof(path), "%s/rootfs", b->dir);
	assert_int_equal(mkdir(path, 0755), 0);
	json = dq(SPEC("'mounts':[{'destination':'/data','type':'bind','source':'data'},"
		       "{'destination':'/abs','options':['bind'],'source':'/abs'},"
		       "{'destination':'/tmp','type':'tmpfs','source':'tmpfs'}]"));
	write_file(b->dir, "config.json", json);
	free(json);

	struct jail_spec *s = NULL;
	struct husk_err err = { 0 };
	int r = jail_spec_load(b->dir, &s, &err);
	if (r)
		print_error("%s\n", err.msg);
	assert_int_equal(r, 0);
	char *real = realpath(path, NULL);
	assert_non_null(real);
	assert_string_equal(s->root_path, real);
	assert_true(s->root_path[0] == '/');
	/* relative bind sources are relative to the bundle; others untouched */
	char *bundle_real = realpath(b->dir, NULL);
	char want[300];
	snprintf(want, sizeof(want), "%s/data", bundle_real);
	assert_string_equal(s->mounts[0].source, want);
	assert_string_equal(s->mounts[1].source, "/abs");
	assert_string_equal(s->mounts[2].source, "tmpfs");
	free(bundle_real);
	free(real);
	jail_spec_free(s);

	/* a relative bundle path gives an absolute root too */
	char cwd[PATH_MAX];
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir("/tmp"), 0);
	r = jail_spec_load(b->dir + strlen("/tmp/"), &s, &err);
	assert_int_equal(chdir(cwd), 0);
	assert_int_equal(r, 0);
	assert_true(s->root_path[0] == '/');
	assert_non_null(strstr(s->root_path, "/rootfs"));
	jail_spec_free(s);
}

static void test_load_absolute_root(void **state)
{
	struct bundle *b = *state;
	char path[256], json[512];
	snprintf(path, sizeof(path), "%s/elsewhere", b->dir);
	assert_int_equal(mkdir(path, 0755), 0);
	snprintf(json, sizeof(json), "{\"ociVersion\":\"1.0.2\",\"root\":{\"path\":\"%s\"}}",
		 path);
	write_file(b->dir, "config.json", json);
	struct jail_spec *s = NULL;
	struct husk_err err = { 0 };
	assert_int_equal(jail_spec_load(b->dir, &s, &err), 0);
	char *real = realpath(path, NULL);
	assert_string_equal(s->root_path, real);
	free(real);
	jail_spec_free(s);
}

static void test_load_missing_rootfs(void **state)
{
	struct bundle *b = *state;
	char *json = dq(SPEC_PROC(""));
	write_file(b->dir, "config.json", json);
	free(json);
	struct jail_spec *s = (struct jail_spec *)&s;
	struct husk_err err = { 0 };
	assert_int_equal(jail_spec_load(b->dir, &s, &err), -ENOENT);
	assert_null(s);
	char want[256];
	snprintf(want, sizeof(want), "%s/rootfs", b->dir);
	assert_msg_has(err.msg, (const char *const[]){ "config.json: root.path", "\"rootfs\"",
						      want, "No such file", NULL });

	/* a file where the rootfs should be */
	write_file(b->dir, "rootfs", "not a dir");
	assert_int_equal(jail_spec_load(b->dir, &s, &err), -ENOTDIR);
	assert_msg_has(err.msg, (const char *const[]){ "root.path", "rootfs", "not a directory",
						      NULL });
}

static void test_load_errors(void **state)
{
	struct bundle *b = *state;
	struct jail_spec *s = (struct jail_spec *)&s;
	struct husk_err err = { 0 };
	/* no config.json */
	assert_int_equal(jail_spec_load(b->dir, &s, &err), -ENOENT);
	assert_null(s);
	assert_msg_has(err.msg, (const char *const[]){ "config.json", b->dir, NULL });
	/* no bundle */
	assert_int_equal(jail_spec_load("/nonexistent/husk-bundle", &s, &err), -ENOENT);
	assert_msg_has(err.msg, (const char *const[]){ "/nonexistent/husk-bundle", NULL });
	/* malformed file: position reported */
	write_file(b->dir, "config.json", "{\n\"ociVersion\": 1.0.2\n}");
	assert_int_equal(jail_spec_load(b->dir, &s, &err), -EINVAL);
	assert_msg_has(err.msg, (const char *const[]){ "malformed JSON", "line 2", NULL });
	/* oversize file refused before parsing */
	char path[256];
	snprintf(path, sizeof(path), "%s/config.json", b->dir);
	int fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (16 << 20) + 1), 0);
	close(fd);
	assert_int_equal(jail_spec_load(b->dir, &s, &err), -EFBIG);
	assert_msg_has(err.msg, (const char *const[]){ "16 MiB", NULL });
	/* validation errors come through with field and value */
	char *json = dq(SPEC("'mounts':[{'destination':'rel'}]"));
	write_file(b->dir, "config.json", json);
	free(json);
	assert_int_equal(jail_spec_load(b->dir, &s, &err), -EINVAL);
	assert_msg_has(err.msg, (const char *const[]){ "mounts[0].destination", "\"rel\"", NULL });
	assert_null(s);
}

/* ---- jail_process_parse ----------------------------------------------------------- */

static void test_process_parse(void **state)
{
	(void)state;
	char *json = dq("{'terminal':true,'user':{'uid':5,'gid':6,'additionalGids':[7]},"
			"'args':['/bin/ls','-l'],'env':['A=b'],'cwd':'/tmp',"
			"'capabilities':{'bounding':['CAP_SYS_ADMIN']},'noNewPrivileges':true,"
			"'rlimits':[{'type':'RLIMIT_NPROC','soft':10,'hard':20}],"
			"'apparmorProfile':'p','unknown':1}");
	struct jail_process *p = NULL;
	struct husk_err err = { 0 };
	assert_int_equal(jail_process_parse(json, strlen(json), &p, &err), 0);
	free(json);
	assert_true(p->terminal);
	assert_int_equal(p->user.uid, 5);
	assert_int_equal(p->user.additional_gids[0], 7);
	assert_int_equal(p->n_args, 2);
	assert_string_equal(p->args[1], "-l");
	assert_string_equal(p->env[0], "A=b");
	assert_string_equal(p->cwd, "/tmp");
	assert_true(p->has_caps);
	assert_int_equal(p->caps.bounding, UINT64_C(1) << 21);
	assert_true(p->no_new_privileges);
	assert_int_equal(p->rlimits[0].resource, RLIMIT_NPROC);
	assert_string_equal(p->apparmor_profile, "p");
	jail_process_free(p);
	jail_process_free(NULL);
}

static void test_process_parse_errors(void **state)
{
	(void)state;
	EXPECT_PROCESS_FAIL("{'user':{'uid':0,'gid':0},'args':['sh'],'cwd':'rel'}", "process.cwd",
			    "\"rel\"");
	EXPECT_PROCESS_FAIL("{'user':{'uid':0,'gid':0},'args':[],'cwd':'/'}", "process.args");
	EXPECT_PROCESS_FAIL("{'user':{'uid':-1,'gid':0},'args':['sh'],'cwd':'/'}",
			    "process.user.uid", "-1");
	EXPECT_PROCESS_FAIL("{'user':{'uid':0,'gid':0},'args':['sh'],'cwd':'/',"
			    "'capabilities':{'permitted':[7]}}",
			    "process.capabilities.permitted[0]", "expected a string");
	EXPECT_PROCESS_FAIL("{'user':{'uid':0,'gid':0},'args':['sh'],'cwd':'/',"
			    "'rlimits':[{'type':'RLIMIT_AS','soft':5,'hard':4}]}",
			    "process.rlimits[0].soft", "5");
	EXPECT_PROCESS_FAIL("{'user':", "process", "malformed JSON", "line 1");
	/* messages start with the field path, not a file name */
	char *json = dq("{'user':{'uid':0,'gid':0},'args':['sh']}");
	struct jail_process *p = NULL;
	struct husk_err err = { 0 };
	assert_int_equal(jail_process_parse(json, strlen(json), &p, &err), -EINVAL);
	assert_string_equal(err.msg, "process.cwd: required field is missing");
	free(json);
	/* an unknown capability is left out and listed, as in config.json */
	json = dq("{'user':{'uid':0,'gid':0},'args':['sh'],'cwd':'/',"
		  "'capabilities':{'permitted':['CAP_NOPE','CAP_KILL']}}");
	assert_int_equal(jail_process_parse(json, strlen(json), &p, &err), 0);
	assert_int_equal(p->caps.permitted, UINT64_C(1) << 5);
	assert_string_equal(p->unknown_caps, "CAP_NOPE");
	jail_process_free(p);
	free(json);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_full_top_level, full_setup, full_teardown),
		cmocka_unit_test_setup_teardown(test_full_process, full_setup, full_teardown),
		cmocka_unit_test_setup_teardown(test_full_capabilities, full_setup, full_teardown),
		cmocka_unit_test_setup_teardown(test_full_rlimits, full_setup, full_teardown),
		cmocka_unit_test_setup_teardown(test_full_mounts, full_setup, full_teardown),
		cmocka_unit_test_setup_teardown(test_full_hooks, full_setup, full_teardown),
		cmocka_unit_test_setup_teardown(test_full_linux, full_setup, full_teardown),
		cmocka_unit_test_setup_teardown(test_full_resources, full_setup, full_teardown),
		cmocka_unit_test_setup_teardown(test_full_seccomp, full_setup, full_teardown),
		cmocka_unit_test_setup_teardown(test_spec_namespace_lookup, full_setup,
						full_teardown),
		cmocka_unit_test(test_minimal_defaults),
		cmocka_unit_test(test_null_is_absent_and_unknown_ignored),
		cmocka_unit_test(test_console_size_without_terminal),
		cmocka_unit_test(test_seccomp_defaults),
		cmocka_unit_test(test_uint64_limits_accepted),
		cmocka_unit_test(test_mount_option_flags),
		cmocka_unit_test(test_mount_option_order_and_propagation),
		cmocka_unit_test(test_bind_by_type),
		cmocka_unit_test(test_recursive_mount_attrs_refused),
		cmocka_unit_test(test_error_message_format),
		cmocka_unit_test(test_malformed_json_position),
		cmocka_unit_test(test_truncated_input_every_length),
		cmocka_unit_test(test_not_an_object),
		cmocka_unit_test(test_required_fields),
		cmocka_unit_test(test_wrong_types),
		cmocka_unit_test(test_id_ranges),
		cmocka_unit_test(test_process_id_range),
		cmocka_unit_test(test_memory_negative),
		cmocka_unit_test(test_intel_rdt),
		cmocka_unit_test(test_paths),
		cmocka_unit_test(test_hook_timeout),
		cmocka_unit_test(test_namespaces),
		cmocka_unit_test(test_capabilities),
		cmocka_unit_test(test_cap_names),
		cmocka_unit_test(test_rlimits),
		cmocka_unit_test(test_seccomp_errors),
		cmocka_unit_test(test_devices_and_propagation),
		cmocka_unit_test(test_env_format),
		cmocka_unit_test(test_size_limit),
		cmocka_unit_test(test_every_field_wrong_type),
		cmocka_unit_test(test_every_field_removed),
		cmocka_unit_test_setup_teardown(test_load_relative_root, bundle_setup,
						bundle_teardown),
		cmocka_unit_test_setup_teardown(test_load_absolute_root, bundle_setup,
						bundle_teardown),
		cmocka_unit_test_setup_teardown(test_load_missing_rootfs, bundle_setup,
						bundle_teardown),
		cmocka_unit_test_setup_teardown(test_load_errors, bundle_setup, bundle_teardown),
		cmocka_unit_test(test_process_parse),
		cmocka_unit_test(test_process_parse_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
