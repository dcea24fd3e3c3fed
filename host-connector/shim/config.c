/* The shim's configuration: containerd passes no flags to a shim, so VM
 * settings come from JSON files. Layers, later keys replacing earlier ones:
 *
 *   1. libhusk's defaults;
 *   2. $HUSK_CONFIG (must exist when set), else /etc/husk/config.json
 *      (skipped when missing);
 *   3. the runtime options (runtimeoptions.v1.Options): config_path (must
 *      exist), else config_body when it is a JSON object.
 *
 * A key that is unknown or of the wrong type is an error naming the file and
 * the key: a typo must not silently leave a default in place. See
 * docs/config-file.md. */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "husk/cleanup.h"
#include "husk/file.h"
#include "shim.h"
#include "shim/runtimeoptions.pb-c.h"

#define DEFAULT_CONFIG "/etc/husk/config.json"
#define RUNTIME_OPTIONS_TYPE "runtimeoptions.v1.Options"
#define CONFIG_MAX (1 << 20)

enum kind { K_ABSPATH, K_STRING, K_UINT, K_BOOL, K_ACCEL, K_TRANSPORT, K_SIZE };

static const struct key {
	const char *name;
	enum kind kind;
	size_t off;
	long long min, max;
} keys[] = {
#define F(f) offsetof(struct shim_config, f)
	{ "kernel", K_ABSPATH, F(kernel), 0, 0 },
	{ "initrd", K_ABSPATH, F(initrd), 0, 0 },
	{ "vmm", K_STRING, F(vmm), 0, 0 },
	{ "vmm_binary", K_STRING, F(vmm_binary), 0, 0 },
	/* Before there was a VMM seam: the QEMU program, the same field. */
	{ "qemu", K_STRING, F(vmm_binary), 0, 0 },
	{ "vsockd", K_ABSPATH, F(vsockd), 0, 0 },
	{ "cmdline_extra", K_STRING, F(cmdline_extra), 0, 0 },
	{ "vcpus", K_UINT, F(vcpus), 1, 255 },
	{ "memory_mib", K_UINT, F(memory_mib), 64, 1048576 },
	{ "accel", K_ACCEL, F(accel), 0, 0 },
	{ "transport", K_TRANSPORT, F(transport), 0, 0 },
	{ "debug_console", K_BOOL, F(debug_console), 0, 0 },
	{ "merge_memory", K_BOOL, F(merge_memory), 0, 0 },
	{ "tcg_cache_mib", K_UINT, F(tcg_cache_mib), 1, HUSK_TCG_CACHE_MAX },
	/* huskd's socket, or "off" (libhusk: husk_vm_config.pool). */
	{ "pool", K_STRING, F(pool), 0, 0 },
	{ "log_level", K_UINT, F(log_level), 1, 7 },
	{ "boot_timeout_ms", K_UINT, F(boot_timeout_ms), 1, 3600000 },
	{ "state_dir", K_ABSPATH, F(state_dir), 0, 0 },
	{ "image_cache", K_ABSPATH, F(image_cache), 0, 0 },
	{ "overlay_size", K_SIZE, F(overlay_bytes), 0, 0 },
#undef F
};

static void known_keys(char *buf, size_t len)
{
	size_t n = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < ARRAY_SIZE(keys) && n < len; i++) {
		int w = snprintf(buf + n, len - n, "%s%s", i ? ", " : "", keys[i].name);
		if (w < 0)
			break;
		n += (size_t)w;
	}
}

static int set_key(struct shim_config *c, const char *src, const struct key *k,
		   struct json_object *v, struct husk_err *err)
{
	char *field = (char *)c + k->off;
	static const char *const want[] = {
		[K_ABSPATH] = "an absolute path (string)", [K_STRING] = "a string",
		[K_UINT] = "an integer", [K_BOOL] = "true or false",
		[K_ACCEL] = "\"auto\", \"kvm\" or \"tcg\"",
		[K_TRANSPORT] = "\"auto\", \"vhost\" or \"hybrid\"",
		[K_SIZE] = "a size (\"512M\", \"1Gi\") or a number of bytes",
	};
	enum json_type t = json_object_get_type(v);
	if (t == json_type_null) { /* back to the default */
		if (k->kind == K_ABSPATH || k->kind == K_STRING) {
			free(*(char **)field);
			*(char **)field = NULL;
		} else if (k->kind == K_BOOL) {
			*(bool *)field = false;
		} else if (k->kind == K_UINT) {
			*(unsigned *)field = 0;
		} else if (k->kind == K_SIZE) {
			*(uint64_t *)field = 0;
		} else if (k->kind == K_ACCEL) {
			*(enum husk_accel *)field = HUSK_ACCEL_AUTO;
		} else {
			*(enum husk_transport *)field = HUSK_TRANSPORT_AUTO;
		}
		return 0;
	}
	bool ok;
	switch (k->kind) {
	case K_ABSPATH:
	case K_STRING:
	case K_ACCEL:
	case K_TRANSPORT:
		ok = t == json_type_string;
		break;
	case K_UINT:
		ok = t == json_type_int;
		break;
	case K_SIZE:
		ok = t == json_type_int || t == json_type_string;
		break;
	default:
		ok = t == json_type_boolean;
		break;
	}
	if (!ok)
		return husk_err_set(err, -EINVAL, "config %s: key \"%s\": want %s, got %s", src,
				    k->name, want[k->kind], json_type_to_name(t));
	const char *s = t == json_type_string ? json_object_get_string(v) : NULL;
	switch (k->kind) {
	case K_ABSPATH:
	case K_STRING: {
		if (k->kind == K_ABSPATH && s[0] != '/')
			return husk_err_set(err, -EINVAL,
					    "config %s: key \"%s\": \"%s\" is not an absolute path",
					    src, k->name, s);
		if (k->kind == K_STRING && !*s)
			return husk_err_set(err, -EINVAL, "config %s: key \"%s\": empty", src,
					    k->name);
		char *dup = strdup(s);
		if (!dup)
			return husk_err_set(err, -ENOMEM, "config %s", src);
		free(*(char **)field);
		*(char **)field = dup;
		return 0;
	}
	case K_UINT: {
		int64_t n = json_object_get_int64(v);
		if (n < k->min || n > k->max)
			return husk_err_set(err, -ERANGE,
					    "config %s: key \"%s\": %lld is out of range "
					    "(%lld to %lld)",
					    src, k->name, (long long)n, k->min, k->max);
		*(unsigned *)field = (unsigned)n;
		return 0;
	}
	case K_BOOL:
		*(bool *)field = json_object_get_boolean(v);
		return 0;
	case K_SIZE: {
		uint64_t n = 0;
		if (t == json_type_int) {
			int64_t i = json_object_get_int64(v);
			if (i < 0)
				return husk_err_set(err, -ERANGE, "config %s: key \"%s\": %lld is negative",
						    src, k->name, (long long)i);
			n = (uint64_t)i;
		} else if (husk_parse_size(s, &n, NULL) < 0) {
			return husk_err_set(err, -EINVAL, "config %s: key \"%s\": want %s, got \"%s\"",
					    src, k->name, want[K_SIZE], s);
		}
		/* 0 would silently mean the default: say so instead. */
		if (n == 0)
			return husk_err_set(err, -ERANGE,
					    "config %s: key \"%s\": 0 (leave it out, or null, for "
					    "the default)",
					    src, k->name);
		*(uint64_t *)field = n;
		return 0;
	}
	case K_ACCEL:
		if (husk_accel_parse(s, (enum husk_accel *)field, NULL) < 0)
			return husk_err_set(err, -EINVAL,
					    "config %s: key \"accel\": want %s, got \"%s\"", src,
					    want[K_ACCEL], s);
		return 0;
	case K_TRANSPORT:
		if (husk_transport_parse(s, (enum husk_transport *)field, NULL) < 0)
			return husk_err_set(err, -EINVAL,
					    "config %s: key \"transport\": want %s, got \"%s\"",
					    src, want[K_TRANSPORT], s);
		return 0;
	}
	return 0;
}

/* Applies one JSON document (`src` names it in errors). */
static int apply_json(struct shim_config *c, const char *src, const char *text, size_t len,
		      struct husk_err *err)
{
	struct json_tokener *tok = json_tokener_new();
	if (!tok)
		return husk_err_set(err, -ENOMEM, "config %s", src);
	struct json_object *o = json_tokener_parse_ex(tok, text, (int)len);
	enum json_tokener_error jerr = json_tokener_get_error(tok);
	size_t end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	while (o && end < len && strchr(" \t\r\n", text[end]))
		end++;
	if (!o || jerr != json_tokener_success || end < len) {
		unsigned line = 1, col = 1;
		for (size_t i = 0; i < end && i < len; i++, col++)
			if (text[i] == '\n')
				line++, col = 0;
		bool parsed = o && jerr == json_tokener_success;
		json_object_put(o);
		/* json-c says "continue" when the text ended inside the value. */
		const char *why = parsed ? "text after the JSON object"
				  : (jerr == json_tokener_continue || jerr == json_tokener_success)
					  ? "the JSON ends before it is complete (a truncated file?)"
					  : json_tokener_error_desc(jerr);
		return husk_err_set(err, -EINVAL, "config %s: line %u, column %u: %s", src, line,
				    col, why);
	}
	int rc = 0;
	if (!json_object_is_type(o, json_type_object)) {
		rc = husk_err_set(err, -EINVAL, "config %s: want a JSON object, got %s", src,
				  json_type_to_name(json_object_get_type(o)));
		goto out;
	}
	json_object_object_foreach(o, name, v)
	{
		const struct key *k = NULL;
		for (size_t i = 0; i < ARRAY_SIZE(keys) && !k; i++)
			if (strcmp(keys[i].name, name) == 0)
				k = &keys[i];
		if (!k) {
			char known[512];
			known_keys(known, sizeof(known));
			rc = husk_err_set(err, -EINVAL, "config %s: unknown key \"%s\" (known: %s)",
					  src, name, known);
			goto out;
		}
		if ((rc = set_key(c, src, k, v, err)) < 0)
			goto out;
	}
out:
	json_object_put(o);
	return rc;
}

/* Reads and applies `path`. -ENOENT (err set) when it does not exist. */
static int apply_file(struct shim_config *c, const char *path, struct husk_err *err)
{
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	int r = husk_read_file(path, CONFIG_MAX, &buf, &len, err);
	if (r < 0) {
		husk_err_wrap(err, "config");
		return r; /* -ENOENT tells a missing default file */
	}
	int rc = apply_json(c, path, buf, len, err);
	if (rc == 0) {
		size_t n = strlen(c->sources);
		snprintf(c->sources + n, sizeof(c->sources) - n, "%s%s", n ? ", " : "", path);
	}
	return rc;
}

static bool is_json_object(const uint8_t *b, size_t len)
{
	size_t i = 0;
	while (i < len && strchr(" \t\r\n", b[i]) && b[i])
		i++;
	return i < len && b[i] == '{';
}

static int apply_runtime_options(struct shim_config *c, const Google__Protobuf__Any *any,
				 struct husk_err *err)
{
	if (!any || (!*any->type_url && !any->value.len))
		return 0;
	const char *slash = strrchr(any->type_url, '/');
	const char *type = slash ? slash + 1 : any->type_url;
	if (strcmp(type, RUNTIME_OPTIONS_TYPE) != 0)
		return husk_err_set(err, -EINVAL,
				    "runtime options of type \"%s\": husk takes %s (ctr run "
				    "--runtime-config-path, or ConfigPath in the CRI runtime's "
				    "options)",
				    any->type_url, RUNTIME_OPTIONS_TYPE);
	Runtimeoptions__V1__Options *o =
		runtimeoptions__v1__options__unpack(NULL, any->value.len, any->value.data);
	if (!o)
		return husk_err_set(err, -EINVAL, "runtime options: not a valid %s message",
				    RUNTIME_OPTIONS_TYPE);
	int rc = 0;
	if (*o->config_path) {
		if (o->config_path[0] != '/')
			rc = husk_err_set(err, -EINVAL,
					  "runtime options: config_path \"%s\" is not an absolute "
					  "path",
					  o->config_path);
		else
			rc = apply_file(c, o->config_path, err);
	} else if (o->config_body.len && is_json_object(o->config_body.data, o->config_body.len)) {
		/* containerd 1.7's CRI sends the runtime's TOML options table
		 * here; only a JSON object is husk configuration. */
		rc = apply_json(c, "runtime options config_body", (const char *)o->config_body.data,
				o->config_body.len, err);
		if (rc == 0) {
			size_t n = strlen(c->sources);
			snprintf(c->sources + n, sizeof(c->sources) - n, "%sconfig_body",
				 n ? ", " : "");
		}
	} else if (o->config_body.len) {
		snprintf(c->warning, sizeof(c->warning),
			 "runtime options: config_body (%zu bytes) is not a JSON object "
			 "(containerd's TOML runtime options?): ignored; husk reads JSON, "
			 "name a file with ConfigPath",
			 o->config_body.len);
	}
	runtimeoptions__v1__options__free_unpacked(o, NULL);
	return rc;
}

int shim_config_load(struct shim_config *c, const Google__Protobuf__Any *opts,
		     struct husk_err *err)
{
	*c = (struct shim_config){ 0 };
	const char *env = getenv("HUSK_CONFIG");
	int rc = apply_file(c, env && *env ? env : DEFAULT_CONFIG, err);
	if (rc == -ENOENT && !(env && *env)) {
		husk_err_clear(err);
		rc = 0;
	} else if (rc < 0 && env && *env) {
		husk_err_wrap(err, "HUSK_CONFIG");
	}
	if (rc == 0)
		rc = apply_runtime_options(c, opts, err);
	if (rc < 0)
		shim_config_free(c);
	return rc;
}

void shim_config_free(struct shim_config *c)
{
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		if (keys[i].kind == K_ABSPATH || keys[i].kind == K_STRING) {
			char **p = (char **)((char *)c + keys[i].off);
			free(*p);
			*p = NULL;
		}
}

const char *shim_config_state_dir(const struct shim_config *c, char *buf, size_t len)
{
	if (c && c->state_dir) {
		snprintf(buf, len, "%s", c->state_dir);
		return buf;
	}
	return husk_default_state_dir(buf, len);
}
