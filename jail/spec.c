/* OCI runtime spec (config.json 1.0/1.1) parser and validator.
 *
 * The JSON is parsed with json-c into a tree, then walked once into the
 * plain structs of jail/spec.h. Every error names the JSON field path
 * ("mounts[2].destination") and the offending value. As runc does, unknown
 * fields are ignored (forward compatibility) and a JSON null counts as an
 * absent field. Partially filled specs are always freeable: arrays are
 * allocated zeroed and attached before their elements are filled. */
#include "jail/spec.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "husk/cleanup.h"
#include "husk/error.h"
#include "husk/file.h"

/* A config.json is a few KiB; the bound keeps a hostile one from costing
 * the guest agent real memory. */
#define FIELD_MAX 256 /* a field path: "linux.seccomp.syscalls[12].args[3].op" */
#define SHOW_MAX 96   /* a value quoted in a message */

struct pctx {
	struct husk_err *err;
	const char *file;   /* message prefix ("config.json") or NULL */
	const char *bundle; /* absolute bundle directory or NULL */
};

static void json_putp(struct json_object **o)
{
	if (*o)
		json_object_put(*o);
}
#define _cleanup_json_ __attribute__((cleanup(json_putp)))

__attribute__((format(printf, 4, 5))) static int fail(const struct pctx *c, int code,
						      const char *field, const char *fmt, ...)
{
	char msg[HUSK_ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	const char *sep = *field ? ": " : "";
	if (c->file)
		return husk_err_set(c->err, code, "%s: %s%s%s", c->file, field, sep, msg);
	return husk_err_set(c->err, code, "%s%s%s", field, sep, msg);
}

static int fail_nomem(const struct pctx *c, const char *field)
{
	return fail(c, -ENOMEM, field, "out of memory");
}

/* Renders a JSON value for a message, shortened to stay readable. */
static const char *show(struct json_object *v, char *buf, size_t n)
{
	const char *s = "null";
	if (v)
		s = json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN |
							      JSON_C_TO_STRING_NOSLASHESCAPE);
	if (!s)
		s = "(unprintable)";
	size_t len = strlen(s);
	if (len < n) {
		memcpy(buf, s, len + 1);
	} else {
		memcpy(buf, s, n - 4);
		memcpy(buf + n - 4, "...", 4);
	}
	return buf;
}
#define SHOW(v) show((v), (char[SHOW_MAX]){0}, SHOW_MAX)

/* A path too long for the buffer (only user map keys can do that) ends
 * in "..." rather than being silently cut. */
static const char *mark_cut(char *buf, int n)
{
	if (n < 0 || n >= FIELD_MAX)
		memcpy(buf + FIELD_MAX - 4, "...", 4);
	return buf;
}

static const char *key_path(char *buf, const char *parent, const char *key)
{
	return mark_cut(buf, snprintf(buf, FIELD_MAX, "%s%s%s", parent, *parent ? "." : "", key));
}

static const char *idx_path(char *buf, const char *parent, size_t i)
{
	return mark_cut(buf, snprintf(buf, FIELD_MAX, "%s[%zu]", parent, i));
}

/* obj[key], or NULL when absent or null (null means absent, as in Go). */
static struct json_object *member(struct json_object *obj, const char *key)
{
	struct json_object *v = NULL;
	if (!json_object_object_get_ex(obj, key, &v))
		return NULL;
	return v;
}

static const char *type_word(enum json_type t)
{
	switch (t) {
	case json_type_object:
		return "an object";
	case json_type_array:
		return "an array";
	case json_type_string:
		return "a string";
	case json_type_boolean:
		return "a boolean";
	case json_type_int:
		return "an integer";
	default:
		return "a value";
	}
}

static int want(const struct pctx *c, const char *f, struct json_object *v, enum json_type t)
{
	if (v && json_object_is_type(v, t))
		return 0;
	return fail(c, -EINVAL, f, "expected %s, got %s", type_word(t), SHOW(v));
}

static int missing(const struct pctx *c, const char *f)
{
	return fail(c, -EINVAL, f, "required field is missing");
}

/* ---- scalars ---------------------------------------------------------------- */

/* json-c keeps integers as int64 or, above INT64_MAX, uint64: read both
 * views to get the exact value. Doubles ("1.0", "1e3") are refused as Go's
 * encoding/json refuses them for integer fields. */
static bool int_value(struct json_object *v, bool *neg, uint64_t *mag, int64_t *sval)
{
	if (!v || !json_object_is_type(v, json_type_int))
		return false;
	int64_t i = json_object_get_int64(v);
	*neg = i < 0;
	*sval = i;
	*mag = i < 0 ? 0 : json_object_get_uint64(v);
	return true;
}

static int get_uint(const struct pctx *c, const char *f, struct json_object *v, uint64_t max,
		    const char *what, uint64_t *out)
{
	bool neg;
	uint64_t u;
	int64_t s;
	if (int_value(v, &neg, &u, &s) && !neg && u <= max) {
		*out = u;
		return 0;
	}
	return fail(c, -EINVAL, f, "expected %s, got %s", what, SHOW(v));
}

static int get_sint(const struct pctx *c, const char *f, struct json_object *v, int64_t min,
		    int64_t max, const char *what, int64_t *out)
{
	bool neg;
	uint64_t u;
	int64_t s;
	if (int_value(v, &neg, &u, &s) && (neg || u <= (uint64_t)INT64_MAX) && s >= min &&
	    s <= max) {
		*out = s;
		return 0;
	}
	return fail(c, -EINVAL, f, "expected %s, got %s", what, SHOW(v));
}

static int get_u64(const struct pctx *c, const char *f, struct json_object *v, uint64_t *out)
{
	return get_uint(c, f, v, UINT64_MAX, "an unsigned 64-bit integer", out);
}

static int get_u32(const struct pctx *c, const char *f, struct json_object *v, uint32_t *out)
{
	uint64_t u;
	int r = get_uint(c, f, v, UINT32_MAX, "an unsigned 32-bit integer", &u);
	if (r == 0)
		*out = (uint32_t)u;
	return r;
}

/* Process uids and gids: runc's range (user.GetExecUser), 31 bits so that
 * no value is (uid_t)-1, which setresuid and setgroups read as "leave
 * unchanged" or refuse. */
#define ID_MAX INT32_MAX

static int get_id(const struct pctx *c, const char *f, struct json_object *v, uint32_t *out)
{
	uint64_t u;
	int r = get_uint(c, f, v, ID_MAX, "a uid or gid in range 0-2147483647", &u);
	if (r == 0)
		*out = (uint32_t)u;
	return r;
}

static int req_id(const struct pctx *c, const char *parent, struct json_object *obj,
		  const char *key, uint32_t *out)
{
	struct json_object *v = member(obj, key);
	char f[FIELD_MAX];
	key_path(f, parent, key);
	return v ? get_id(c, f, v, out) : missing(c, f);
}

static int get_u16(const struct pctx *c, const char *f, struct json_object *v, uint16_t *out)
{
	uint64_t u;
	int r = get_uint(c, f, v, UINT16_MAX, "an unsigned 16-bit integer", &u);
	if (r == 0)
		*out = (uint16_t)u;
	return r;
}

static int get_i64(const struct pctx *c, const char *f, struct json_object *v, int64_t *out)
{
	return get_sint(c, f, v, INT64_MIN, INT64_MAX, "a signed 64-bit integer", out);
}

static int get_bool(const struct pctx *c, const char *f, struct json_object *v, bool *out)
{
	int r = want(c, f, v, json_type_boolean);
	if (r == 0)
		*out = json_object_get_boolean(v);
	return r;
}

/* Borrows the string of `v`; refuses embedded NULs, which C would silently
 * truncate (a path "/a\u0000/../x" must not become "/a"). */
static int peek_str(const struct pctx *c, const char *f, struct json_object *v, const char **out)
{
	int r = want(c, f, v, json_type_string);
	if (r < 0)
		return r;
	const char *s = json_object_get_string(v);
	if (strlen(s) != (size_t)json_object_get_string_len(v))
		return fail(c, -EINVAL, f, "%s contains a NUL byte", SHOW(v));
	*out = s;
	return 0;
}

static int get_str(const struct pctx *c, const char *f, struct json_object *v, char **out)
{
	const char *s;
	int r = peek_str(c, f, v, &s);
	if (r < 0)
		return r;
	*out = strdup(s);
	return *out ? 0 : fail_nomem(c, f);
}

/* Optional members: absent (or null) leaves *out untouched. */
static int opt_str(const struct pctx *c, const char *parent, struct json_object *obj,
		   const char *key, char **out)
{
	struct json_object *v = member(obj, key);
	char f[FIELD_MAX];
	return v ? get_str(c, key_path(f, parent, key), v, out) : 0;
}

static int opt_bool(const struct pctx *c, const char *parent, struct json_object *obj,
		    const char *key, bool *out)
{
	struct json_object *v = member(obj, key);
	char f[FIELD_MAX];
	return v ? get_bool(c, key_path(f, parent, key), v, out) : 0;
}

static int opt_u32(const struct pctx *c, const char *parent, struct json_object *obj,
		   const char *key, bool *has, uint32_t *out)
{
	struct json_object *v = member(obj, key);
	char f[FIELD_MAX];
	if (!v)
		return 0;
	int r = get_u32(c, key_path(f, parent, key), v, out);
	if (r == 0 && has)
		*has = true;
	return r;
}

static int opt_u64(const struct pctx *c, const char *parent, struct json_object *obj,
		   const char *key, bool *has, uint64_t *out)
{
	struct json_object *v = member(obj, key);
	char f[FIELD_MAX];
	if (!v)
		return 0;
	int r = get_u64(c, key_path(f, parent, key), v, out);
	if (r == 0 && has)
		*has = true;
	return r;
}

static int opt_i64(const struct pctx *c, const char *parent, struct json_object *obj,
		   const char *key, bool *has, int64_t *out)
{
	struct json_object *v = member(obj, key);
	char f[FIELD_MAX];
	if (!v)
		return 0;
	int r = get_i64(c, key_path(f, parent, key), v, out);
	if (r == 0 && has)
		*has = true;
	return r;
}

static int req_u32(const struct pctx *c, const char *parent, struct json_object *obj,
		   const char *key, uint32_t *out)
{
	struct json_object *v = member(obj, key);
	char f[FIELD_MAX];
	key_path(f, parent, key);
	return v ? get_u32(c, f, v, out) : missing(c, f);
}

static int req_u64(const struct pctx *c, const char *parent, struct json_object *obj,
		   const char *key, uint64_t *out)
{
	struct json_object *v = member(obj, key);
	char f[FIELD_MAX];
	key_path(f, parent, key);
	return v ? get_u64(c, f, v, out) : missing(c, f);
}

static int req_i64(const struct pctx *c, const char *parent, struct json_object *obj,
		   const char *key, int64_t *out)
{
	struct json_object *v = member(obj, key);
	char f[FIELD_MAX];
	key_path(f, parent, key);
	return v ? get_i64(c, f, v, out) : missing(c, f);
}

/* ---- arrays and maps ---------------------------------------------------------- */

static void free_kv(struct jail_kv *kv, size_t n)
{
	if (!kv)
		return;
	for (size_t i = 0; i < n; i++) {
		free(kv[i].key);
		free(kv[i].value);
	}
	free(kv);
}

/* Checks that `v` is an array and allocates `len` zeroed elements (NULL
 * when empty). The caller attaches the array before filling it. */
static int get_array(const struct pctx *c, const char *f, struct json_object *v, size_t elem,
		     void **out, size_t *len)
{
	int r = want(c, f, v, json_type_array);
	if (r < 0)
		return r;
	*len = json_object_array_length(v);
	*out = NULL;
	if (*len == 0)
		return 0;
	*out = calloc(*len, elem);
	return *out ? 0 : fail_nomem(c, f);
}

/* A NULL-terminated string vector, always allocated (empty when []). */
static int get_strv(const struct pctx *c, const char *f, struct json_object *v, char ***out,
		    size_t *n)
{
	int r = want(c, f, v, json_type_array);
	if (r < 0)
		return r;
	size_t len = json_object_array_length(v);
	char **a = calloc(len + 1, sizeof(*a));
	if (!a)
		return fail_nomem(c, f);
	*out = a;
	*n = 0;
	for (size_t i = 0; i < len; i++) {
		char fi[FIELD_MAX];
		r = get_str(c, idx_path(fi, f, i), json_object_array_get_idx(v, i), &a[i]);
		if (r < 0)
			return r;
		*n = i + 1;
	}
	return 0;
}

static int opt_strv(const struct pctx *c, const char *parent, struct json_object *obj,
		    const char *key, char ***out, size_t *n)
{
	struct json_object *v = member(obj, key);
	char f[FIELD_MAX];
	return v ? get_strv(c, key_path(f, parent, key), v, out, n) : 0;
}

/* A JSON object of string values (annotations, sysctl, unified). */
static int get_kv(const struct pctx *c, const char *f, struct json_object *v, struct jail_kv **out,
		  size_t *n)
{
	int r = want(c, f, v, json_type_object);
	if (r < 0)
		return r;
	size_t len = (size_t)json_object_object_length(v);
	*n = 0;
	if (len == 0)
		return 0;
	struct jail_kv *kv = calloc(len, sizeof(*kv));
	if (!kv)
		return fail_nomem(c, f);
	*out = kv;
	size_t i = 0;
	json_object_object_foreach(v, key, val)
	{
		char fk[FIELD_MAX];
		key_path(fk, f, key);
		*n = i + 1;
		kv[i].key = strdup(key);
		if (!kv[i].key)
			return fail_nomem(c, fk);
		r = get_str(c, fk, val, &kv[i].value);
		if (r < 0)
			return r;
		i++;
	}
	return 0;
}

/* ---- name tables ----------------------------------------------------------------- */

struct name_value {
	const char *name;
	long value;
};

static bool lookup(const struct name_value *t, size_t n, const char *name, long *out)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(t[i].name, name) == 0) {
			*out = t[i].value;
			return true;
		}
	}
	return false;
}

/* Indexed by capability number; our own table so that parsing does not
 * depend on the libcap version the binary was built against. */
static const char *const cap_names[] = {
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
	"CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID",
	"CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
	"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
	"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
	"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD",
	"CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
	"CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
	"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
};

int jail_cap_from_name(const char *name)
{
	if (!name)
		return -1;
	for (size_t i = 0; i < ARRAY_SIZE(cap_names); i++)
		if (strcmp(cap_names[i], name) == 0)
			return (int)i;
	return -1;
}

static const struct name_value ns_types[] = {
	{ "pid", CLONE_NEWPID },   { "network", CLONE_NEWNET }, { "mount", CLONE_NEWNS },
	{ "ipc", CLONE_NEWIPC },   { "uts", CLONE_NEWUTS },	{ "user", CLONE_NEWUSER },
	{ "cgroup", CLONE_NEWCGROUP },
};

static const struct name_value rlimit_types[] = {
	{ "RLIMIT_CPU", RLIMIT_CPU },	      { "RLIMIT_FSIZE", RLIMIT_FSIZE },
	{ "RLIMIT_DATA", RLIMIT_DATA },	      { "RLIMIT_STACK", RLIMIT_STACK },
	{ "RLIMIT_CORE", RLIMIT_CORE },	      { "RLIMIT_RSS", RLIMIT_RSS },
	{ "RLIMIT_NPROC", RLIMIT_NPROC },     { "RLIMIT_NOFILE", RLIMIT_NOFILE },
	{ "RLIMIT_MEMLOCK", RLIMIT_MEMLOCK }, { "RLIMIT_AS", RLIMIT_AS },
	{ "RLIMIT_LOCKS", RLIMIT_LOCKS },     { "RLIMIT_SIGPENDING", RLIMIT_SIGPENDING },
	{ "RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE }, { "RLIMIT_NICE", RLIMIT_NICE },
	{ "RLIMIT_RTPRIO", RLIMIT_RTPRIO },   { "RLIMIT_RTTIME", RLIMIT_RTTIME },
};

static const struct name_value seccomp_actions[] = {
	{ "SCMP_ACT_KILL", JAIL_SCMP_KILL },
	{ "SCMP_ACT_KILL_THREAD", JAIL_SCMP_KILL },
	{ "SCMP_ACT_KILL_PROCESS", JAIL_SCMP_KILL_PROCESS },
	{ "SCMP_ACT_TRAP", JAIL_SCMP_TRAP },
	{ "SCMP_ACT_ERRNO", JAIL_SCMP_ERRNO },
	{ "SCMP_ACT_TRACE", JAIL_SCMP_TRACE },
	{ "SCMP_ACT_ALLOW", JAIL_SCMP_ALLOW },
	{ "SCMP_ACT_LOG", JAIL_SCMP_LOG },
};

static const struct name_value seccomp_ops[] = {
	{ "SCMP_CMP_NE", JAIL_SCMP_CMP_NE },	       { "SCMP_CMP_LT", JAIL_SCMP_CMP_LT },
	{ "SCMP_CMP_LE", JAIL_SCMP_CMP_LE },	       { "SCMP_CMP_EQ", JAIL_SCMP_CMP_EQ },
	{ "SCMP_CMP_GE", JAIL_SCMP_CMP_GE },	       { "SCMP_CMP_GT", JAIL_SCMP_CMP_GT },
	{ "SCMP_CMP_MASKED_EQ", JAIL_SCMP_CMP_MASKED_EQ },
};

static const struct name_value propagations[] = {
	{ "private", MS_PRIVATE },
	{ "rprivate", MS_PRIVATE | MS_REC },
	{ "shared", MS_SHARED },
	{ "rshared", MS_SHARED | MS_REC },
	{ "slave", MS_SLAVE },
	{ "rslave", MS_SLAVE | MS_REC },
	{ "unbindable", MS_UNBINDABLE },
	{ "runbindable", MS_UNBINDABLE | MS_REC },
};

/* Mount options as runc's specconv maps them: `clear` options remove the
 * flag (and record it in clear_flags so a remount can drop it). */
static const struct mount_opt {
	const char *name;
	bool clear;
	unsigned long flag;
} mount_opts[] = {
	{ "acl", false, MS_POSIXACL },
	{ "async", true, MS_SYNCHRONOUS },
	{ "atime", true, MS_NOATIME },
	{ "bind", false, MS_BIND },
	{ "defaults", false, 0 },
	{ "dev", true, MS_NODEV },
	{ "diratime", true, MS_NODIRATIME },
	{ "dirsync", false, MS_DIRSYNC },
	{ "exec", true, MS_NOEXEC },
	{ "iversion", false, MS_I_VERSION },
	{ "lazytime", false, MS_LAZYTIME },
	{ "loud", true, MS_SILENT },
	{ "mand", false, MS_MANDLOCK },
	{ "noacl", true, MS_POSIXACL },
	{ "noatime", false, MS_NOATIME },
	{ "nodev", false, MS_NODEV },
	{ "nodiratime", false, MS_NODIRATIME },
	{ "noexec", false, MS_NOEXEC },
	{ "noiversion", true, MS_I_VERSION },
	{ "nolazytime", true, MS_LAZYTIME },
	{ "nomand", true, MS_MANDLOCK },
	{ "norelatime", true, MS_RELATIME },
	{ "nostrictatime", true, MS_STRICTATIME },
	{ "nosuid", false, MS_NOSUID },
	{ "nosymfollow", false, MS_NOSYMFOLLOW },
	{ "rbind", false, MS_BIND | MS_REC },
	{ "relatime", false, MS_RELATIME },
	{ "remount", false, MS_REMOUNT },
	{ "ro", false, MS_RDONLY },
	{ "rw", true, MS_RDONLY },
	{ "silent", false, MS_SILENT },
	{ "strictatime", false, MS_STRICTATIME },
	{ "suid", true, MS_NOSUID },
	{ "symfollow", true, MS_NOSYMFOLLOW },
	{ "sync", false, MS_SYNCHRONOUS },
};

/* runc's recursive (mount_setattr) and id-mapping options: the data model
 * has no place for them, and silently dropping "rro" would leave a
 * writable mount, so they are refused. */
static const char *const unsupported_mount_opts[] = {
	"rro", "rrw", "rnosuid", "rsuid", "rnodev", "rdev",
	"rnoexec", "rexec", "rnodiratime", "rdiratime", "rrelatime", "rnorelatime",
	"rnoatime", "ratime", "rstrictatime", "rnostrictatime", "rnosymfollow", "rsymfollow",
	"idmap", "ridmap",
};

/* ---- small validators ------------------------------------------------------------ */

static bool has_dotdot(const char *path)
{
	for (const char *p = path; *p;) {
		while (*p == '/')
			p++;
		size_t n = strcspn(p, "/");
		if (n == 2 && p[0] == '.' && p[1] == '.')
			return true;
		p += n;
	}
	return false;
}

static int check_abs(const struct pctx *c, const char *f, struct json_object *v, const char *s)
{
	if (s[0] != '/')
		return fail(c, -EINVAL, f, "%s is not an absolute path", SHOW(v));
	return 0;
}

/* A required absolute path member. */
static int req_abs_path(const struct pctx *c, const char *parent, struct json_object *obj,
			const char *key, char **out)
{
	struct json_object *v = member(obj, key);
	char f[FIELD_MAX];
	key_path(f, parent, key);
	if (!v)
		return missing(c, f);
	const char *s;
	int r = peek_str(c, f, v, &s);
	if (r == 0)
		r = check_abs(c, f, v, s);
	if (r == 0 && !(*out = strdup(s)))
		r = fail_nomem(c, f);
	return r;
}

/* Absolute path vectors (maskedPaths, readonlyPaths). */
static int opt_abs_strv(const struct pctx *c, const char *parent, struct json_object *obj,
			const char *key, char ***out, size_t *n)
{
	struct json_object *v = member(obj, key);
	char f[FIELD_MAX], fi[FIELD_MAX];
	if (!v)
		return 0;
	int r = get_strv(c, key_path(f, parent, key), v, out, n);
	for (size_t i = 0; r == 0 && i < *n; i++)
		r = check_abs(c, idx_path(fi, f, i), json_object_array_get_idx(v, i), (*out)[i]);
	return r;
}

static int lookup_member(const struct pctx *c, const char *f, struct json_object *v,
			 const struct name_value *t, size_t n, const char *what, long *out)
{
	const char *s;
	int r = peek_str(c, f, v, &s);
	if (r < 0)
		return r;
	if (!lookup(t, n, s, out))
		return fail(c, -EINVAL, f, "unknown %s %s", what, SHOW(v));
	return 0;
}

/* ---- process ---------------------------------------------------------------------- */

static void process_clear(struct jail_process *p)
{
	free(p->user.additional_gids);
	husk_strv_free(p->args);
	husk_strv_free(p->env);
	free(p->cwd);
	free(p->rlimits);
	free(p->apparmor_profile);
	free(p->selinux_label);
	free(p->unknown_caps);
	memset(p, 0, sizeof(*p));
}

static int parse_user(const struct pctx *c, const char *f, struct json_object *o,
		      struct jail_user *u)
{
	int r = want(c, f, o, json_type_object);
	if (r == 0)
		r = req_id(c, f, o, "uid", &u->uid);
	if (r == 0)
		r = req_id(c, f, o, "gid", &u->gid);
	if (r == 0)
		r = opt_u32(c, f, o, "umask", &u->has_umask, &u->umask);
	if (r < 0)
		return r;
	struct json_object *v = member(o, "additionalGids");
	if (!v)
		return 0;
	char fa[FIELD_MAX], fi[FIELD_MAX];
	key_path(fa, f, "additionalGids");
	void *arr;
	size_t n;
	r = get_array(c, fa, v, sizeof(uint32_t), &arr, &n);
	if (r < 0)
		return r;
	u->additional_gids = arr;
	u->n_additional_gids = n;
	for (size_t i = 0; r == 0 && i < n; i++)
		r = get_id(c, idx_path(fi, fa, i), json_object_array_get_idx(v, i),
			   &u->additional_gids[i]);
	return r;
}

/* Adds `name` to the ", "-separated list *list unless it is there. The
 * list is for a warning: past UNKNOWN_CAPS_MAX bytes it ends in "...",
 * so that a hostile spec cannot make the scan quadratic. */
#define UNKNOWN_CAPS_MAX 1024

static int note_unknown_cap(const struct pctx *c, const char *f, char **list, const char *name)
{
	size_t nl = strlen(name);
	size_t len = *list ? strlen(*list) : 0;
	if (len + nl > UNKNOWN_CAPS_MAX) {
		if (len >= 3 && strcmp(*list + len - 3, "...") == 0)
			return 0;
		name = "...";
		nl = 3;
	}
	for (const char *p = *list; p && *p;) {
		size_t l = strcspn(p, ",");
		if (l == nl && memcmp(p, name, nl) == 0)
			return 0;
		p += l;
		p += strspn(p, ", ");
	}
	size_t old = len;
	char *n = realloc(*list, old + (old ? 2 : 0) + nl + 1);
	if (!n)
		return fail_nomem(c, f);
	if (old) {
		memcpy(n + old, ", ", 2);
		old += 2;
	}
	memcpy(n + old, name, nl + 1);
	*list = n;
	return 0;
}

/* Unknown names are left out and listed in *unknown, not refused: runc
 * ignores them with a warning, and runtime-spec 1.1 asks runtimes not to
 * fail on capabilities they cannot grant. */
static int parse_caps(const struct pctx *c, const char *f, struct json_object *o,
		      struct jail_caps *caps, char **unknown)
{
	static const struct {
		const char *key;
		size_t off;
	} sets[] = {
		{ "bounding", offsetof(struct jail_caps, bounding) },
		{ "effective", offsetof(struct jail_caps, effective) },
		{ "inheritable", offsetof(struct jail_caps, inheritable) },
		{ "permitted", offsetof(struct jail_caps, permitted) },
		{ "ambient", offsetof(struct jail_caps, ambient) },
	};
	int r = want(c, f, o, json_type_object);
	if (r < 0)
		return r;
	for (size_t s = 0; s < ARRAY_SIZE(sets); s++) {
		struct json_object *v = member(o, sets[s].key);
		if (!v)
			continue;
		char fs[FIELD_MAX], fi[FIELD_MAX];
		key_path(fs, f, sets[s].key);
		if ((r = want(c, fs, v, json_type_array)) < 0)
			return r;
		uint64_t mask = 0;
		for (size_t i = 0; i < json_object_array_length(v); i++) {
			struct json_object *e = json_object_array_get_idx(v, i);
			const char *name;
			idx_path(fi, fs, i);
			if ((r = peek_str(c, fi, e, &name)) < 0)
				return r;
			int cap = jail_cap_from_name(name);
			if (cap >= 0)
				mask |= UINT64_C(1) << cap;
			else if ((r = note_unknown_cap(c, fi, unknown, name)) < 0)
				return r;
		}
		*(uint64_t *)((char *)caps + sets[s].off) = mask;
	}
	return 0;
}

static int parse_rlimits(const struct pctx *c, const char *f, struct json_object *v,
			 struct jail_process *p)
{
	void *arr;
	size_t n;
	int r = get_array(c, f, v, sizeof(struct jail_rlimit), &arr, &n);
	if (r < 0)
		return r;
	p->rlimits = arr;
	p->n_rlimits = n;
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(v, i);
		struct jail_rlimit *rl = &p->rlimits[i];
		char fi[FIELD_MAX], ft[FIELD_MAX], fs[FIELD_MAX];
		idx_path(fi, f, i);
		if ((r = want(c, fi, e, json_type_object)) < 0)
			return r;
		struct json_object *t = member(e, "type");
		key_path(ft, fi, "type");
		if (!t)
			return missing(c, ft);
		long res;
		if ((r = lookup_member(c, ft, t, rlimit_types, ARRAY_SIZE(rlimit_types), "rlimit",
				       &res)) < 0)
			return r;
		rl->resource = (int)res;
		for (size_t j = 0; j < i; j++)
			if (p->rlimits[j].resource == rl->resource)
				return fail(c, -EINVAL, ft, "duplicate rlimit %s", SHOW(t));
		if ((r = req_u64(c, fi, e, "soft", &rl->soft)) < 0 ||
		    (r = req_u64(c, fi, e, "hard", &rl->hard)) < 0)
			return r;
		if (rl->soft > rl->hard)
			return fail(c, -EINVAL, key_path(fs, fi, "soft"),
				    "%" PRIu64 " exceeds the hard limit %" PRIu64, rl->soft,
				    rl->hard);
	}
	return 0;
}

static int parse_env(const struct pctx *c, const char *f, struct json_object *v,
		     struct jail_process *p)
{
	int r = get_strv(c, f, v, &p->env, &p->n_env);
	for (size_t i = 0; r == 0 && i < p->n_env; i++) {
		const char *eq = strchr(p->env[i], '=');
		if (!eq || eq == p->env[i]) {
			char fi[FIELD_MAX];
			r = fail(c, -EINVAL, idx_path(fi, f, i), "%s is not of the form KEY=VALUE",
				 SHOW(json_object_array_get_idx(v, i)));
		}
	}
	return r;
}

static int parse_process(const struct pctx *c, const char *f, struct json_object *o,
			 struct jail_process *p)
{
	char fk[FIELD_MAX];
	struct json_object *v;
	int r = want(c, f, o, json_type_object);
	if (r == 0)
		r = opt_bool(c, f, o, "terminal", &p->terminal);
	if (r < 0)
		return r;

	if ((v = member(o, "consoleSize"))) {
		/* Meaningful only with a terminal; accepted without one, as runc does. */
		uint32_t h = 0, w = 0;
		key_path(fk, f, "consoleSize");
		if ((r = want(c, fk, v, json_type_object)) < 0 ||
		    (r = opt_u32(c, fk, v, "height", NULL, &h)) < 0 ||
		    (r = opt_u32(c, fk, v, "width", NULL, &w)) < 0)
			return r;
		p->has_console_size = true;
		p->console_height = h;
		p->console_width = w;
	}

	key_path(fk, f, "user");
	if (!(v = member(o, "user")))
		return missing(c, fk);
	if ((r = parse_user(c, fk, v, &p->user)) < 0)
		return r;

	key_path(fk, f, "args");
	if (!(v = member(o, "args")))
		return missing(c, fk);
	if ((r = get_strv(c, fk, v, &p->args, &p->n_args)) < 0)
		return r;
	if (p->n_args == 0)
		return fail(c, -EINVAL, fk, "must name the program to run, got %s", SHOW(v));
	if (p->args[0][0] == '\0') {
		char fi[FIELD_MAX];
		return fail(c, -EINVAL, idx_path(fi, fk, 0), "the program name is empty (\"\")");
	}

	if ((v = member(o, "env")) && (r = parse_env(c, key_path(fk, f, "env"), v, p)) < 0)
		return r;

	if ((r = req_abs_path(c, f, o, "cwd", &p->cwd)) < 0)
		return r;

	if ((v = member(o, "capabilities"))) {
		if ((r = parse_caps(c, key_path(fk, f, "capabilities"), v, &p->caps,
				    &p->unknown_caps)) < 0)
			return r;
		p->has_caps = true;
	}

	if ((r = opt_bool(c, f, o, "noNewPrivileges", &p->no_new_privileges)) < 0)
		return r;

	if ((v = member(o, "oomScoreAdj"))) {
		int64_t adj;
		if ((r = get_sint(c, key_path(fk, f, "oomScoreAdj"), v, -1000, 1000,
				  "an integer between -1000 and 1000", &adj)) < 0)
			return r;
		p->has_oom_score_adj = true;
		p->oom_score_adj = (int)adj;
	}

	if ((v = member(o, "rlimits")) &&
	    (r = parse_rlimits(c, key_path(fk, f, "rlimits"), v, p)) < 0)
		return r;

	if ((r = opt_str(c, f, o, "apparmorProfile", &p->apparmor_profile)) < 0 ||
	    (r = opt_str(c, f, o, "selinuxLabel", &p->selinux_label)) < 0)
		return r;
	return 0;
}

/* ---- mounts ----------------------------------------------------------------------- */

static int append_data(const struct pctx *c, const char *f, char **data, const char *opt)
{
	size_t old = *data ? strlen(*data) : 0, add = strlen(opt);
	char *n = realloc(*data, old + add + 2);
	if (!n)
		return fail_nomem(c, f);
	if (old)
		n[old++] = ',';
	memcpy(n + old, opt, add + 1);
	*data = n;
	return 0;
}

static int mount_options(const struct pctx *c, const char *f, struct json_object *v,
			 struct jail_mount *m)
{
	int r = want(c, f, v, json_type_array);
	for (size_t i = 0; r == 0 && i < json_object_array_length(v); i++) {
		struct json_object *e = json_object_array_get_idx(v, i);
		char fi[FIELD_MAX];
		const char *opt;
		idx_path(fi, f, i);
		if ((r = peek_str(c, fi, e, &opt)) < 0)
			return r;
		bool done = false;
		for (size_t k = 0; !done && k < ARRAY_SIZE(mount_opts); k++) {
			if (strcmp(mount_opts[k].name, opt) != 0)
				continue;
			done = true;
			if (mount_opts[k].clear) {
				m->flags &= ~mount_opts[k].flag;
				m->clear_flags |= mount_opts[k].flag;
			} else {
				m->flags |= mount_opts[k].flag;
				m->clear_flags &= ~mount_opts[k].flag;
			}
		}
		long prop;
		if (!done && lookup(propagations, ARRAY_SIZE(propagations), opt, &prop)) {
			m->propagation = (unsigned long)prop;
			done = true;
		}
		for (size_t k = 0; !done && k < ARRAY_SIZE(unsupported_mount_opts); k++)
			if (strcmp(unsupported_mount_opts[k], opt) == 0)
				return fail(c, -EOPNOTSUPP, fi, "mount option %s is not supported",
					    SHOW(e));
		/* "x-" options are for userspace helpers only, as in mount(8). */
		if (!done && strncmp(opt, "x-", 2) != 0 && opt[0])
			r = append_data(c, fi, &m->data, opt);
	}
	return r;
}

static char *path_join(const char *dir, const char *rel)
{
	char *out;
	size_t n = strlen(dir);
	if (asprintf(&out, "%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/", rel) < 0)
		return NULL;
	return out;
}

static int parse_mount(const struct pctx *c, const char *f, struct json_object *o,
		       struct jail_mount *m)
{
	char fk[FIELD_MAX];
	struct json_object *v;
	int r = want(c, f, o, json_type_object);
	if (r < 0)
		return r;

	key_path(fk, f, "destination");
	if (!(v = member(o, "destination")))
		return missing(c, fk);
	const char *dest;
	if ((r = peek_str(c, fk, v, &dest)) < 0 || (r = check_abs(c, fk, v, dest)) < 0)
		return r;
	/* ".." could walk out of the rootfs before the mount code's own
	 * checks; refuse it early with the field named. */
	if (has_dotdot(dest))
		return fail(c, -EINVAL, fk, "%s contains a \"..\" component", SHOW(v));
	if (!(m->destination = strdup(dest)))
		return fail_nomem(c, fk);

	if ((r = opt_str(c, f, o, "type", &m->type)) < 0 ||
	    (r = opt_str(c, f, o, "source", &m->source)) < 0)
		return r;
	if ((v = member(o, "options")) &&
	    (r = mount_options(c, key_path(fk, f, "options"), v, m)) < 0)
		return r;
	if (member(o, "uidMappings") || member(o, "gidMappings"))
		return fail(c, -EOPNOTSUPP, key_path(fk, f, "uidMappings"),
			    "idmapped mounts are not supported");

	bool bind = (m->flags & MS_BIND) || (m->type && strcmp(m->type, "bind") == 0);
	if (bind) {
		/* As runc: any type given for a bind mount is meaningless. */
		m->flags |= MS_BIND;
		free(m->type);
		if (!(m->type = strdup("bind")))
			return fail_nomem(c, f);
		/* Relative bind sources are relative to the bundle (config.md). */
		if (m->source && m->source[0] != '/' && c->bundle) {
			char *abs = path_join(c->bundle, m->source);
			if (!abs)
				return fail_nomem(c, f);
			free(m->source);
			m->source = abs;
		}
	}
	return 0;
}

/* ---- hooks ------------------------------------------------------------------------ */

static void free_hooks(struct jail_hook *h, size_t n)
{
	if (!h)
		return;
	for (size_t i = 0; i < n; i++) {
		free(h[i].path);
		husk_strv_free(h[i].args);
		husk_strv_free(h[i].env);
	}
	free(h);
}

static int parse_hook_list(const struct pctx *c, const char *f, struct json_object *v,
			   struct jail_hook **out, size_t *n_out)
{
	void *arr;
	size_t n;
	int r = get_array(c, f, v, sizeof(struct jail_hook), &arr, &n);
	if (r < 0)
		return r;
	*out = arr;
	*n_out = n;
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(v, i), *t;
		struct jail_hook *h = &(*out)[i];
		size_t dummy;
		char fi[FIELD_MAX], fk[FIELD_MAX];
		idx_path(fi, f, i);
		if ((r = want(c, fi, e, json_type_object)) < 0 ||
		    (r = req_abs_path(c, fi, e, "path", &h->path)) < 0 ||
		    (r = opt_strv(c, fi, e, "args", &h->args, &dummy)) < 0 ||
		    (r = opt_strv(c, fi, e, "env", &h->env, &dummy)) < 0)
			return r;
		if ((t = member(e, "timeout"))) {
			int64_t to;
			if ((r = get_sint(c, key_path(fk, fi, "timeout"), t, 1, INT_MAX,
					  "a timeout in seconds greater than zero", &to)) < 0)
				return r;
			h->has_timeout = true;
			h->timeout = (int)to;
		}
	}
	return 0;
}

static int parse_hooks(const struct pctx *c, const char *f, struct json_object *o,
		       struct jail_hooks *h)
{
	const struct {
		const char *key;
		struct jail_hook **list;
		size_t *n;
	} kinds[] = {
		{ "prestart", &h->prestart, &h->n_prestart },
		{ "createRuntime", &h->create_runtime, &h->n_create_runtime },
		{ "createContainer", &h->create_container, &h->n_create_container },
		{ "startContainer", &h->start_container, &h->n_start_container },
		{ "poststart", &h->poststart, &h->n_poststart },
		{ "poststop", &h->poststop, &h->n_poststop },
	};
	int r = want(c, f, o, json_type_object);
	for (size_t k = 0; r == 0 && k < ARRAY_SIZE(kinds); k++) {
		struct json_object *v = member(o, kinds[k].key);
		char fk[FIELD_MAX];
		if (v)
			r = parse_hook_list(c, key_path(fk, f, kinds[k].key), v, kinds[k].list,
					    kinds[k].n);
	}
	return r;
}

/* ---- linux ------------------------------------------------------------------------ */

static int parse_namespaces(const struct pctx *c, const char *f, struct json_object *v,
			    struct jail_spec *s)
{
	void *arr;
	size_t n;
	int r = get_array(c, f, v, sizeof(struct jail_namespace), &arr, &n);
	if (r < 0)
		return r;
	s->namespaces = arr;
	s->n_namespaces = n;
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(v, i), *t, *p;
		struct jail_namespace *ns = &s->namespaces[i];
		char fi[FIELD_MAX], ft[FIELD_MAX];
		idx_path(fi, f, i);
		if ((r = want(c, fi, e, json_type_object)) < 0)
			return r;
		key_path(ft, fi, "type");
		if (!(t = member(e, "type")))
			return missing(c, ft);
		long type;
		if ((r = lookup_member(c, ft, t, ns_types, ARRAY_SIZE(ns_types), "namespace type",
				       &type)) < 0)
			return r;
		ns->type = (int)type;
		for (size_t j = 0; j < i; j++)
			if (s->namespaces[j].type == ns->type)
				return fail(c, -EINVAL, ft, "duplicate namespace type %s",
					    SHOW(t));
		if ((p = member(e, "path"))) {
			char fp[FIELD_MAX];
			const char *path;
			key_path(fp, fi, "path");
			if ((r = peek_str(c, fp, p, &path)) < 0 ||
			    (r = check_abs(c, fp, p, path)) < 0)
				return r;
			if (!(ns->path = strdup(path)))
				return fail_nomem(c, fp);
		}
	}
	return 0;
}

static int parse_id_maps(const struct pctx *c, const char *f, struct json_object *v,
			 struct jail_id_map **out, size_t *n_out)
{
	void *arr;
	size_t n;
	int r = get_array(c, f, v, sizeof(struct jail_id_map), &arr, &n);
	if (r < 0)
		return r;
	*out = arr;
	*n_out = n;
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(v, i);
		struct jail_id_map *m = &(*out)[i];
		char fi[FIELD_MAX], fk[FIELD_MAX];
		idx_path(fi, f, i);
		if ((r = want(c, fi, e, json_type_object)) < 0 ||
		    (r = req_u32(c, fi, e, "containerID", &m->container_id)) < 0 ||
		    (r = req_u32(c, fi, e, "hostID", &m->host_id)) < 0 ||
		    (r = req_u32(c, fi, e, "size", &m->size)) < 0)
			return r;
		if (m->size == 0)
			return fail(c, -EINVAL, key_path(fk, fi, "size"),
				    "must be greater than zero, got 0");
		uint64_t end_c = (uint64_t)m->container_id + m->size;
		uint64_t end_h = (uint64_t)m->host_id + m->size;
		if (end_c > UINT64_C(1) << 32 || end_h > UINT64_C(1) << 32)
			return fail(c, -EINVAL, key_path(fk, fi, "size"),
				    "%" PRIu32 " makes the range %" PRIu32 "/%" PRIu32
				    " exceed 32-bit ids",
				    m->size, m->container_id, m->host_id);
	}
	return 0;
}

static int parse_devices(const struct pctx *c, const char *f, struct json_object *v,
			 struct jail_spec *s)
{
	void *arr;
	size_t n;
	int r = get_array(c, f, v, sizeof(struct jail_device), &arr, &n);
	if (r < 0)
		return r;
	s->devices = arr;
	s->n_devices = n;
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(v, i), *t;
		struct jail_device *d = &s->devices[i];
		char fi[FIELD_MAX], ft[FIELD_MAX];
		const char *type;
		idx_path(fi, f, i);
		if ((r = want(c, fi, e, json_type_object)) < 0)
			return r;
		key_path(ft, fi, "type");
		if (!(t = member(e, "type")))
			return missing(c, ft);
		if ((r = peek_str(c, ft, t, &type)) < 0)
			return r;
		if (strlen(type) != 1 || !strchr("cbup", type[0]))
			return fail(c, -EINVAL, ft, "unknown device type %s", SHOW(t));
		d->type = type[0];
		if ((r = req_abs_path(c, fi, e, "path", &d->path)) < 0)
			return r;
		if (d->type != 'p') {
			if ((r = req_i64(c, fi, e, "major", &d->major)) < 0 ||
			    (r = req_i64(c, fi, e, "minor", &d->minor)) < 0)
				return r;
		} else if ((r = opt_i64(c, fi, e, "major", NULL, &d->major)) < 0 ||
			   (r = opt_i64(c, fi, e, "minor", NULL, &d->minor)) < 0) {
			return r;
		}
		if ((r = opt_u32(c, fi, e, "fileMode", &d->has_mode, &d->file_mode)) < 0 ||
		    (r = opt_u32(c, fi, e, "uid", &d->has_uid, &d->uid)) < 0 ||
		    (r = opt_u32(c, fi, e, "gid", &d->has_gid, &d->gid)) < 0)
			return r;
	}
	return 0;
}

static int parse_throttle(const struct pctx *c, const char *f, struct json_object *v,
			  struct jail_throttle **out, size_t *n_out)
{
	void *arr;
	size_t n;
	int r = get_array(c, f, v, sizeof(struct jail_throttle), &arr, &n);
	if (r < 0)
		return r;
	*out = arr;
	*n_out = n;
	for (size_t i = 0; r == 0 && i < n; i++) {
		struct json_object *e = json_object_array_get_idx(v, i);
		struct jail_throttle *t = &(*out)[i];
		char fi[FIELD_MAX];
		idx_path(fi, f, i);
		if ((r = want(c, fi, e, json_type_object)) == 0 &&
		    (r = req_i64(c, fi, e, "major", &t->major)) == 0 &&
		    (r = req_i64(c, fi, e, "minor", &t->minor)) == 0)
			r = req_u64(c, fi, e, "rate", &t->rate);
	}
	return r;
}

static int parse_blkio(const struct pctx *c, const char *f, struct json_object *o,
		       struct jail_resources *res)
{
	struct json_object *v;
	char fk[FIELD_MAX];
	int r = want(c, f, o, json_type_object);
	if (r < 0)
		return r;
	if ((v = member(o, "weight"))) {
		if ((r = get_u16(c, key_path(fk, f, "weight"), v, &res->blkio_weight)) < 0)
			return r;
		res->has_blkio_weight = true;
	}
	if ((v = member(o, "weightDevice"))) {
		void *arr;
		size_t n;
		key_path(fk, f, "weightDevice");
		if ((r = get_array(c, fk, v, sizeof(struct jail_weight_device), &arr, &n)) < 0)
			return r;
		res->blkio_weight_device = arr;
		res->n_blkio_weight_device = n;
		for (size_t i = 0; i < n; i++) {
			struct json_object *e = json_object_array_get_idx(v, i), *w;
			struct jail_weight_device *wd = &res->blkio_weight_device[i];
			char fi[FIELD_MAX], fw[FIELD_MAX];
			idx_path(fi, fk, i);
			if ((r = want(c, fi, e, json_type_object)) < 0 ||
			    (r = req_i64(c, fi, e, "major", &wd->major)) < 0 ||
			    (r = req_i64(c, fi, e, "minor", &wd->minor)) < 0)
				return r;
			if ((w = member(e, "weight"))) {
				key_path(fw, fi, "weight");
				if ((r = get_u16(c, fw, w, &wd->weight)) < 0)
					return r;
				wd->has_weight = true;
			}
		}
	}
	const struct {
		const char *key;
		struct jail_throttle **list;
		size_t *n;
	} throttles[] = {
		{ "throttleReadBpsDevice", &res->throttle_read_bps, &res->n_throttle_read_bps },
		{ "throttleWriteBpsDevice", &res->throttle_write_bps, &res->n_throttle_write_bps },
		{ "throttleReadIOPSDevice", &res->throttle_read_iops, &res->n_throttle_read_iops },
		{ "throttleWriteIOPSDevice", &res->throttle_write_iops,
		  &res->n_throttle_write_iops },
	};
	for (size_t k = 0; r == 0 && k < ARRAY_SIZE(throttles); k++)
		if ((v = member(o, throttles[k].key)))
			r = parse_throttle(c, key_path(fk, f, throttles[k].key), v,
					   throttles[k].list, throttles[k].n);
	return r;
}

static int parse_resources(const struct pctx *c, const char *f, struct json_object *o,
			   struct jail_resources *res)
{
	struct json_object *v;
	char fk[FIELD_MAX];
	int r = want(c, f, o, json_type_object);
	if (r < 0)
		return r;
	if ((v = member(o, "memory"))) {
		int64_t kernel;
		key_path(fk, f, "memory");
		if ((r = want(c, fk, v, json_type_object)) < 0 ||
		    (r = opt_i64(c, fk, v, "limit", &res->has_memory_limit, &res->memory_limit)) <
			    0 ||
		    (r = opt_i64(c, fk, v, "reservation", &res->has_memory_reservation,
				 &res->memory_reservation)) < 0 ||
		    (r = opt_i64(c, fk, v, "swap", &res->has_memory_swap, &res->memory_swap)) < 0 ||
		    /* Deprecated and absent from cgroup v2: only noted. */
		    (r = opt_i64(c, fk, v, "kernel", &res->has_memory_kernel, &kernel)) < 0)
			return r;
		/* Checked here, not only when the cgroup is written, so that
		 * a spec is refused the same with or without cgroups (the
		 * kernel refuses these values; runc reports its write). */
		const struct {
			const char *key;
			bool has;
			int64_t value;
		} bytes[] = {
			{ "limit", res->has_memory_limit, res->memory_limit },
			{ "reservation", res->has_memory_reservation, res->memory_reservation },
			{ "swap", res->has_memory_swap, res->memory_swap },
		};
		for (size_t i = 0; i < ARRAY_SIZE(bytes); i++) {
			char fb[FIELD_MAX];
			if (bytes[i].has && bytes[i].value < -1)
				return fail(c, -EINVAL, key_path(fb, fk, bytes[i].key),
					    "%" PRId64 " is not a byte count (-1 means unlimited)",
					    bytes[i].value);
		}
	}
	if ((v = member(o, "cpu"))) {
		key_path(fk, f, "cpu");
		if ((r = want(c, fk, v, json_type_object)) < 0 ||
		    (r = opt_u64(c, fk, v, "shares", &res->has_cpu_shares, &res->cpu_shares)) < 0 ||
		    (r = opt_i64(c, fk, v, "quota", &res->has_cpu_quota, &res->cpu_quota)) < 0 ||
		    (r = opt_u64(c, fk, v, "period", &res->has_cpu_period, &res->cpu_period)) < 0 ||
		    (r = opt_str(c, fk, v, "cpus", &res->cpu_cpus)) < 0 ||
		    (r = opt_str(c, fk, v, "mems", &res->cpu_mems)) < 0)
			return r;
	}
	if ((v = member(o, "pids"))) {
		key_path(fk, f, "pids");
		if ((r = want(c, fk, v, json_type_object)) < 0 ||
		    (r = opt_i64(c, fk, v, "limit", &res->has_pids_limit, &res->pids_limit)) < 0)
			return r;
	}
	if ((v = member(o, "blockIO")) &&
	    (r = parse_blkio(c, key_path(fk, f, "blockIO"), v, res)) < 0)
		return r;
	if ((v = member(o, "unified")) &&
	    (r = get_kv(c, key_path(fk, f, "unified"), v, &res->unified, &res->n_unified)) < 0)
		return r;
	/* cgroup v1 device rules: the guest is cgroup2-only and has no devices
	 * controller; device access is set by linux.devices. Checked for shape only. */
	if ((v = member(o, "devices")) && (r = want(c, key_path(fk, f, "devices"), v,
						      json_type_array)) < 0)
		return r;
	return 0;
}

static void seccomp_clear(struct jail_seccomp *sc)
{
	husk_strv_free(sc->architectures);
	husk_strv_free(sc->flags);
	if (sc->rules) {
		for (size_t i = 0; i < sc->n_rules; i++) {
			husk_strv_free(sc->rules[i].names);
			free(sc->rules[i].args);
		}
		free(sc->rules);
	}
}

static int parse_action(const struct pctx *c, const char *f, struct json_object *v,
			enum jail_seccomp_action *out)
{
	long a;
	int r = lookup_member(c, f, v, seccomp_actions, ARRAY_SIZE(seccomp_actions),
			      "seccomp action", &a);
	if (r == 0)
		*out = (enum jail_seccomp_action)a;
	return r;
}

static int parse_seccomp_args(const struct pctx *c, const char *f, struct json_object *v,
			      struct jail_seccomp_rule *rule)
{
	void *arr;
	size_t n;
	int r = get_array(c, f, v, sizeof(struct jail_seccomp_arg), &arr, &n);
	if (r < 0)
		return r;
	rule->args = arr;
	rule->n_args = n;
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(v, i), *x;
		struct jail_seccomp_arg *a = &rule->args[i];
		char fi[FIELD_MAX], fk[FIELD_MAX];
		uint64_t index;
		long op;
		idx_path(fi, f, i);
		if ((r = want(c, fi, e, json_type_object)) < 0)
			return r;
		key_path(fk, fi, "index");
		if (!(x = member(e, "index")))
			return missing(c, fk);
		if ((r = get_uint(c, fk, x, 5, "a syscall argument index from 0 to 5", &index)) < 0)
			return r;
		a->index = (unsigned)index;
		if ((r = req_u64(c, fi, e, "value", &a->value)) < 0 ||
		    (r = opt_u64(c, fi, e, "valueTwo", NULL, &a->value_two)) < 0)
			return r;
		key_path(fk, fi, "op");
		if (!(x = member(e, "op")))
			return missing(c, fk);
		if ((r = lookup_member(c, fk, x, seccomp_ops, ARRAY_SIZE(seccomp_ops),
				       "seccomp operator", &op)) < 0)
			return r;
		a->op = (enum jail_seccomp_op)op;
	}
	return 0;
}

static int parse_seccomp_rules(const struct pctx *c, const char *f, struct json_object *v,
			       struct jail_seccomp *sc)
{
	void *arr;
	size_t n;
	int r = get_array(c, f, v, sizeof(struct jail_seccomp_rule), &arr, &n);
	if (r < 0)
		return r;
	sc->rules = arr;
	sc->n_rules = n;
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(v, i), *x;
		struct jail_seccomp_rule *rule = &sc->rules[i];
		char fi[FIELD_MAX], fk[FIELD_MAX];
		idx_path(fi, f, i);
		if ((r = want(c, fi, e, json_type_object)) < 0)
			return r;
		key_path(fk, fi, "names");
		if (!(x = member(e, "names")))
			return missing(c, fk);
		if ((r = get_strv(c, fk, x, &rule->names, &rule->n_names)) < 0)
			return r;
		if (rule->n_names == 0)
			return fail(c, -EINVAL, fk, "must name at least one syscall, got []");
		key_path(fk, fi, "action");
		if (!(x = member(e, "action")))
			return missing(c, fk);
		if ((r = parse_action(c, fk, x, &rule->action)) < 0)
			return r;
		rule->errno_ret = EPERM;
		if ((r = opt_u32(c, fi, e, "errnoRet", &rule->has_errno, &rule->errno_ret)) < 0)
			return r;
		if ((x = member(e, "args")) &&
		    (r = parse_seccomp_args(c, key_path(fk, fi, "args"), x, rule)) < 0)
			return r;
	}
	return 0;
}

static int parse_seccomp(const struct pctx *c, const char *f, struct json_object *o,
			 struct jail_seccomp *sc)
{
	struct json_object *v;
	char fk[FIELD_MAX];
	int r = want(c, f, o, json_type_object);
	if (r < 0)
		return r;
	key_path(fk, f, "defaultAction");
	if (!(v = member(o, "defaultAction")))
		return missing(c, fk);
	if ((r = parse_action(c, fk, v, &sc->default_action)) < 0)
		return r;
	sc->default_errno = EPERM;
	if ((r = opt_u32(c, f, o, "defaultErrnoRet", &sc->has_default_errno, &sc->default_errno)) <
	    0)
		return r;
	/* Always allocated, so that consumers can walk them without NULL checks. */
	key_path(fk, f, "architectures");
	if ((v = member(o, "architectures")))
		r = get_strv(c, fk, v, &sc->architectures, &sc->n_architectures);
	else if (!(sc->architectures = calloc(1, sizeof(char *))))
		r = fail_nomem(c, fk);
	if (r < 0)
		return r;
	key_path(fk, f, "flags");
	if ((v = member(o, "flags")))
		r = get_strv(c, fk, v, &sc->flags, &sc->n_flags);
	else if (!(sc->flags = calloc(1, sizeof(char *))))
		r = fail_nomem(c, fk);
	if (r < 0)
		return r;
	if ((v = member(o, "syscalls")) &&
	    (r = parse_seccomp_rules(c, key_path(fk, f, "syscalls"), v, sc)) < 0)
		return r;
	return 0;
}

/* Intel RDT is not implemented (a guest has no resctrl): a schema, which
 * would limit the container, is refused rather than silently dropped, as
 * runc refuses it where RDT is not enabled; a bare closID, which runc
 * ignores there too, is accepted. */
static int parse_intel_rdt(const struct pctx *c, const char *f, struct json_object *o)
{
	static const char *const schemas[] = { "l3CacheSchema", "memBwSchema" };
	int r = want(c, f, o, json_type_object);
	if (r < 0)
		return r;
	char fk[FIELD_MAX];
	const char *closid;
	struct json_object *v = member(o, "closID");
	if (v && (r = peek_str(c, key_path(fk, f, "closID"), v, &closid)) < 0)
		return r;
	for (size_t i = 0; i < ARRAY_SIZE(schemas); i++) {
		const char *schema;
		if (!(v = member(o, schemas[i])))
			continue;
		key_path(fk, f, schemas[i]);
		if ((r = peek_str(c, fk, v, &schema)) < 0)
			return r;
		if (*schema)
			return fail(c, -EOPNOTSUPP, fk, "%s: Intel RDT is not supported", SHOW(v));
	}
	return 0;
}

static int parse_linux(const struct pctx *c, const char *f, struct json_object *o,
		       struct jail_spec *s)
{
	struct json_object *v;
	char fk[FIELD_MAX];
	int r = want(c, f, o, json_type_object);
	if (r < 0)
		return r;
	if ((v = member(o, "namespaces")) &&
	    (r = parse_namespaces(c, key_path(fk, f, "namespaces"), v, s)) < 0)
		return r;
	if ((v = member(o, "uidMappings")) &&
	    (r = parse_id_maps(c, key_path(fk, f, "uidMappings"), v, &s->uid_mappings,
			       &s->n_uid_mappings)) < 0)
		return r;
	if ((v = member(o, "gidMappings")) &&
	    (r = parse_id_maps(c, key_path(fk, f, "gidMappings"), v, &s->gid_mappings,
			       &s->n_gid_mappings)) < 0)
		return r;
	if ((v = member(o, "devices")) &&
	    (r = parse_devices(c, key_path(fk, f, "devices"), v, s)) < 0)
		return r;
	if ((r = opt_str(c, f, o, "cgroupsPath", &s->cgroups_path)) < 0)
		return r;
	if ((v = member(o, "resources"))) {
		if ((r = parse_resources(c, key_path(fk, f, "resources"), v, &s->resources)) < 0)
			return r;
		s->has_resources = true;
	}
	if ((v = member(o, "sysctl")) &&
	    (r = get_kv(c, key_path(fk, f, "sysctl"), v, &s->sysctl, &s->n_sysctl)) < 0)
		return r;
	if ((v = member(o, "seccomp"))) {
		/* Set first: a half-parsed filter must still be freed. */
		s->has_seccomp = true;
		if ((r = parse_seccomp(c, key_path(fk, f, "seccomp"), v, &s->seccomp)) < 0)
			return r;
	}
	if ((v = member(o, "rootfsPropagation"))) {
		const char *p;
		key_path(fk, f, "rootfsPropagation");
		if ((r = peek_str(c, fk, v, &p)) < 0)
			return r;
		long prop = 0;
		if (*p && !lookup(propagations, ARRAY_SIZE(propagations), p, &prop))
			return fail(c, -EINVAL, fk, "unknown propagation %s", SHOW(v));
		s->rootfs_propagation = (unsigned long)prop;
	}
	if ((v = member(o, "intelRdt")) &&
	    (r = parse_intel_rdt(c, key_path(fk, f, "intelRdt"), v)) < 0)
		return r;
	if ((r = opt_abs_strv(c, f, o, "maskedPaths", &s->masked_paths, &s->n_masked_paths)) < 0 ||
	    (r = opt_abs_strv(c, f, o, "readonlyPaths", &s->readonly_paths,
			      &s->n_readonly_paths)) < 0 ||
	    (r = opt_str(c, f, o, "mountLabel", &s->mount_label)) < 0)
		return r;
	return 0;
}

/* ---- top level -------------------------------------------------------------------- */

static int parse_root(const struct pctx *c, struct json_object *o, struct jail_spec *s)
{
	struct json_object *v;
	if (!o)
		return missing(c, "root");
	int r = want(c, "root", o, json_type_object);
	if (r < 0)
		return r;
	if (!(v = member(o, "path")))
		return missing(c, "root.path");
	const char *path;
	if ((r = peek_str(c, "root.path", v, &path)) < 0)
		return r;
	if (!*path)
		return fail(c, -EINVAL, "root.path", "must not be empty, got \"\"");
	if ((r = opt_bool(c, "root", o, "readonly", &s->root_readonly)) < 0)
		return r;
	s->root_path = path[0] == '/' || !c->bundle ? strdup(path) : path_join(c->bundle, path);
	return s->root_path ? 0 : fail_nomem(c, "root.path");
}

/* With a bundle, root.path must name a directory; it is made canonical so
 * later checks against the rootfs compare real paths. Done after the whole
 * document validated, so that field errors come before filesystem ones. */
static int resolve_root(const struct pctx *c, struct json_object *o, struct jail_spec *s)
{
	struct json_object *v = member(member(o, "root"), "path");
	char *real = realpath(s->root_path, NULL);
	if (!real) {
		int e = errno;
		return fail(c, -e, "root.path", "%s (%s): %s", SHOW(v), s->root_path, strerror(e));
	}
	free(s->root_path);
	s->root_path = real;
	struct stat st;
	if (stat(real, &st) < 0) {
		int e = errno;
		return fail(c, -e, "root.path", "%s (%s): %s", SHOW(v), real, strerror(e));
	}
	if (!S_ISDIR(st.st_mode))
		return fail(c, -ENOTDIR, "root.path", "%s (%s) is not a directory", SHOW(v), real);
	return 0;
}

static int parse_spec(const struct pctx *c, struct json_object *o, struct jail_spec *s)
{
	struct json_object *v;
	int r = want(c, "", o, json_type_object);
	if (r < 0)
		return r;
	if (!(v = member(o, "ociVersion")))
		return missing(c, "ociVersion");
	if ((r = get_str(c, "ociVersion", v, &s->oci_version)) < 0)
		return r;
	if (!*s->oci_version)
		return fail(c, -EINVAL, "ociVersion", "must not be empty, got \"\"");
	if ((r = parse_root(c, member(o, "root"), s)) < 0)
		return r;
	if ((r = opt_str(c, "", o, "hostname", &s->hostname)) < 0 ||
	    (r = opt_str(c, "", o, "domainname", &s->domainname)) < 0)
		return r;
	if ((v = member(o, "process"))) {
		/* Set first: a half-parsed process must still be freed. */
		s->has_process = true;
		if ((r = parse_process(c, "process", v, &s->process)) < 0)
			return r;
	}
	if ((v = member(o, "mounts"))) {
		void *arr;
		size_t n;
		if ((r = get_array(c, "mounts", v, sizeof(struct jail_mount), &arr, &n)) < 0)
			return r;
		s->mounts = arr;
		s->n_mounts = n;
		for (size_t i = 0; i < n; i++) {
			char fi[FIELD_MAX];
			if ((r = parse_mount(c, idx_path(fi, "mounts", i),
					     json_object_array_get_idx(v, i), &s->mounts[i])) < 0)
				return r;
		}
	}
	if ((v = member(o, "hooks")) && (r = parse_hooks(c, "hooks", v, &s->hooks)) < 0)
		return r;
	if ((v = member(o, "annotations")) &&
	    (r = get_kv(c, "annotations", v, &s->annotations, &s->n_annotations)) < 0)
		return r;
	if ((v = member(o, "linux")) && (r = parse_linux(c, "linux", v, s)) < 0)
		return r;
	if (c->bundle && (r = resolve_root(c, o, s)) < 0)
		return r;
	return 0;
}

/* Parses `len` bytes of strict JSON; errors carry line, column and offset. */
static int tokenize(const struct pctx *c, const char *json, size_t len, struct json_object **out)
{
	*out = NULL;
	if (len > JAIL_SPEC_MAX_BYTES)
		return fail(c, -EFBIG, "", "%zu bytes is more than the %u MiB limit", len,
			    JAIL_SPEC_MAX_BYTES >> 20);
	struct json_tokener *tok = json_tokener_new();
	if (!tok)
		return fail_nomem(c, "");
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	struct json_object *obj = json_tokener_parse_ex(tok, json, (int)len);
	enum json_tokener_error e = json_tokener_get_error(tok);
	size_t end = json_tokener_get_parse_end(tok);

	const char *why = NULL;
	if (e == json_tokener_continue) {
		/* A NUL marks the end of input: a bare top-level number
		 * completes, anything unfinished stays an error. */
		obj = json_tokener_parse_ex(tok, "", 1);
		e = json_tokener_get_error(tok);
		end = len;
		if (e != json_tokener_success)
			why = "unexpected end of input";
	} else if (e != json_tokener_success) {
		why = json_tokener_error_desc(e);
	} else {
		while (end < len && json[end] && strchr(" \t\r\n", json[end]))
			end++;
	}
	json_tokener_free(tok);
	if (!why && end < len)
		why = "unexpected data after the JSON value";
	if (why) {
		json_object_put(obj);
		if (end > len)
			end = len;
		size_t line = 1, col = 1;
		for (size_t i = 0; i < end; i++) {
			col++;
			if (json[i] == '\n') {
				line++;
				col = 1;
			}
		}
		return fail(c, -EINVAL, "",
			    "malformed JSON at line %zu, column %zu (offset %zu): %s", line, col,
			    end, why);
	}
	*out = obj;
	return 0;
}

int jail_spec_parse(const char *json, size_t len, const char *bundle_dir, struct jail_spec **out,
		    struct husk_err *err)
{
	struct pctx c = { .err = err, .file = "config.json" };
	*out = NULL;
	_cleanup_free_ char *bundle = NULL;
	if (bundle_dir) {
		bundle = realpath(bundle_dir, NULL);
		if (!bundle)
			return husk_err_sys(err, -errno, "config.json: bundle directory %s",
					    bundle_dir);
		c.bundle = bundle;
	}
	_cleanup_json_ struct json_object *root = NULL;
	int r = tokenize(&c, json, len, &root);
	if (r < 0)
		return r;
	struct jail_spec *s = calloc(1, sizeof(*s));
	if (!s)
		return fail_nomem(&c, "");
	r = parse_spec(&c, root, s);
	if (r < 0) {
		jail_spec_free(s);
		return r;
	}
	*out = s;
	return 0;
}

int jail_spec_read(const char *path, char **data, size_t *len_out, struct husk_err *err)
{
	*data = NULL;
	*len_out = 0;
	_cleanup_fd_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return husk_err_sys(err, -errno, "open %s", path);
	struct stat st;
	if (fstat(fd, &st) < 0)
		return husk_err_sys(err, -errno, "stat %s", path);
	if (!S_ISREG(st.st_mode))
		return husk_err_set(err, -EINVAL, "%s: not a regular file", path);
	return husk_read_fd(fd, path, JAIL_SPEC_MAX_BYTES, data, len_out, err);
}

int jail_spec_load(const char *bundle_dir, struct jail_spec **out, struct husk_err *err)
{
	*out = NULL;
	_cleanup_free_ char *path = path_join(bundle_dir, "config.json");
	if (!path)
		return husk_err_set(err, -ENOMEM, "config.json: out of memory");
	_cleanup_free_ char *buf = NULL;
	size_t len;
	int r = jail_spec_read(path, &buf, &len, err);
	if (r < 0)
		return r;
	return jail_spec_parse(buf, len, bundle_dir, out, err);
}

int jail_process_parse(const char *json, size_t len, struct jail_process **out,
		       struct husk_err *err)
{
	/* Field paths already start with "process."; only JSON syntax errors
	 * need the prefix. */
	struct pctx c = { .err = err, .file = NULL };
	struct pctx syntax = { .err = err, .file = "process" };
	*out = NULL;
	_cleanup_json_ struct json_object *root = NULL;
	int r = tokenize(&syntax, json, len, &root);
	if (r < 0)
		return r;
	struct jail_process *p = calloc(1, sizeof(*p));
	if (!p)
		return fail_nomem(&c, "process");
	r = parse_process(&c, "process", root, p);
	if (r < 0) {
		jail_process_free(p);
		return r;
	}
	*out = p;
	return 0;
}

void jail_process_free(struct jail_process *p)
{
	if (!p)
		return;
	process_clear(p);
	free(p);
}

void jail_spec_free(struct jail_spec *s)
{
	if (!s)
		return;
	free(s->oci_version);
	free(s->root_path);
	free(s->hostname);
	free(s->domainname);
	process_clear(&s->process);
	if (s->mounts) {
		for (size_t i = 0; i < s->n_mounts; i++) {
			free(s->mounts[i].destination);
			free(s->mounts[i].type);
			free(s->mounts[i].source);
			free(s->mounts[i].data);
		}
		free(s->mounts);
	}
	free_hooks(s->hooks.prestart, s->hooks.n_prestart);
	free_hooks(s->hooks.create_runtime, s->hooks.n_create_runtime);
	free_hooks(s->hooks.create_container, s->hooks.n_create_container);
	free_hooks(s->hooks.start_container, s->hooks.n_start_container);
	free_hooks(s->hooks.poststart, s->hooks.n_poststart);
	free_hooks(s->hooks.poststop, s->hooks.n_poststop);
	free_kv(s->annotations, s->n_annotations);
	if (s->namespaces) {
		for (size_t i = 0; i < s->n_namespaces; i++)
			free(s->namespaces[i].path);
		free(s->namespaces);
	}
	free(s->uid_mappings);
	free(s->gid_mappings);
	if (s->devices) {
		for (size_t i = 0; i < s->n_devices; i++)
			free(s->devices[i].path);
		free(s->devices);
	}
	free(s->cgroups_path);
	struct jail_resources *res = &s->resources;
	free(res->cpu_cpus);
	free(res->cpu_mems);
	free(res->blkio_weight_device);
	free(res->throttle_read_bps);
	free(res->throttle_write_bps);
	free(res->throttle_read_iops);
	free(res->throttle_write_iops);
	free_kv(res->unified, res->n_unified);
	free_kv(s->sysctl, s->n_sysctl);
	seccomp_clear(&s->seccomp);
	husk_strv_free(s->masked_paths);
	husk_strv_free(s->readonly_paths);
	free(s->mount_label);
	free(s);
}

const struct jail_namespace *jail_spec_namespace(const struct jail_spec *spec, int type)
{
	if (!spec)
		return NULL;
	for (size_t i = 0; i < spec->n_namespaces; i++)
		if (spec->namespaces[i].type == type)
			return &spec->namespaces[i];
	return NULL;
}
