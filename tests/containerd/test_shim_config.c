/* Unit tests for the shim's config layers (host-connector/shim/config.c) and
 * containerd stdio URI parsing (host-connector/shim/logio.c), and pod roles
 * and namespace rewriting (host-connector/shim/pod.c): what the
 * containerd suite cannot reach with ctr 1.6 (config_body, null resets,
 * every error message) and the URI corner cases. Files live in a temporary
 * directory removed by the teardown; HUSK_CONFIG always points into it, so
 * the host's /etc/husk/config.json never matters. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../host-connector/shim/io.h"
#include "../../host-connector/shim/shim.h"
#include "shim/runtimeoptions.pb-c.h"

static char dir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/husk-shim-config-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	unsetenv("HUSK_CONFIG");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Writes `text` to <dir>/<name>; returns the path (static buffer per slot). */
static const char *file(int slot, const char *name, const char *text)
{
	static char paths[4][PATH_MAX];
	snprintf(paths[slot], sizeof(paths[slot]), "%s/%s", dir, name);
	FILE *f = fopen(paths[slot], "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return paths[slot];
}

/* A runtimeoptions.v1.Options in an Any, as containerd sends it. */
struct opts {
	Google__Protobuf__Any any;
	uint8_t buf[4096];
};

static const Google__Protobuf__Any *options(struct opts *o, const char *type_url,
					    const char *config_path, const char *body)
{
	Runtimeoptions__V1__Options m = RUNTIMEOPTIONS__V1__OPTIONS__INIT;
	m.config_path = (char *)(config_path ? config_path : "");
	if (body) {
		m.config_body.data = (uint8_t *)body;
		m.config_body.len = strlen(body);
	}
	assert_true(runtimeoptions__v1__options__get_packed_size(&m) <= sizeof(o->buf));
	google__protobuf__any__init(&o->any);
	o->any.type_url = (char *)type_url;
	o->any.value.data = o->buf;
	o->any.value.len = runtimeoptions__v1__options__pack(&m, o->buf);
	return &o->any;
}

static void load_fails(const Google__Protobuf__Any *any, const char *want1, const char *want2)
{
	struct shim_config c;
	struct husk_err err = { 0 };
	assert_true(shim_config_load(&c, any, &err) < 0);
	if (!strstr(err.msg, want1) || (want2 && !strstr(err.msg, want2))) {
		print_error("error \"%s\" lacks \"%s\" / \"%s\"\n", err.msg, want1,
			    want2 ? want2 : "");
		fail();
	}
}

static void test_layers(void **state)
{
	(void)state;
	const char *base = file(0, "base.json",
				"{ \"vcpus\": 1, \"memory_mib\": 128, \"accel\": \"tcg\",\n"
				"  \"kernel\": \"/k\", \"debug_console\": true,\n"
				"  \"log_level\": 7, \"merge_memory\": true, \"tcg_cache_mib\": 64 }\n");
	setenv("HUSK_CONFIG", base, 1);
	const char *over = file(1, "over.json",
				"{ \"memory_mib\": 200, \"vcpus\": 2, \"kernel\": null,\n"
				"  \"transport\": \"hybrid\", \"state_dir\": \"/run/x\",\n"
				"  \"overlay_size\": \"64Mi\", \"vmm\": \"qemu\",\n"
				"  \"qemu\": \"/usr/bin/qemu-system-x86_64\" }");
	struct opts o;
	struct shim_config c;
	struct husk_err err = { 0 };
	assert_int_equal(shim_config_load(&c, options(&o, "runtimeoptions.v1.Options", over, NULL),
					  &err),
			 0);
	assert_int_equal(c.vcpus, 2);
	assert_int_equal(c.memory_mib, 200);
	assert_int_equal(c.accel, HUSK_ACCEL_TCG);
	assert_int_equal(c.transport, HUSK_TRANSPORT_HYBRID);
	assert_null(c.kernel); /* null: back to the default */
	assert_true(c.debug_console);
	assert_int_equal(c.log_level, 7);
	assert_true(c.merge_memory);
	assert_int_equal(c.tcg_cache_mib, 64);
	assert_string_equal(c.state_dir, "/run/x");
	assert_int_equal(c.overlay_bytes, 64ull << 20);
	assert_string_equal(c.vmm, "qemu");
	assert_string_equal(c.vmm_binary, "/usr/bin/qemu-system-x86_64");
	char buf[PATH_MAX];
	assert_string_equal(shim_config_state_dir(&c, buf, sizeof(buf)), "/run/x");
	assert_non_null(strstr(c.sources, base));
	assert_non_null(strstr(c.sources, over));
	shim_config_free(&c);
}

static void test_body(void **state)
{
	(void)state;
	setenv("HUSK_CONFIG", file(0, "base.json", "{}"), 1);
	struct opts o;
	struct shim_config c;
	struct husk_err err = { 0 };
	/* A JSON body applies; with the type URL containerd 2 writes too. */
	assert_int_equal(
		shim_config_load(&c,
				 options(&o, "type.googleapis.com/runtimeoptions.v1.Options", NULL,
					 " { \"memory_mib\": 300 }"),
				 &err),
		0);
	assert_int_equal(c.memory_mib, 300);
	assert_string_equal(c.warning, "");
	shim_config_free(&c);
	/* containerd 1.7's CRI TOML: ignored, with a warning. */
	assert_int_equal(shim_config_load(&c,
					  options(&o, "runtimeoptions.v1.Options", NULL,
						  "memory_mib = 300\n"),
					  &err),
			 0);
	assert_int_equal(c.memory_mib, 0);
	assert_non_null(strstr(c.warning, "not a JSON object"));
	shim_config_free(&c);
	/* config_path wins over the body. */
	const char *p = file(1, "p.json", "{ \"vcpus\": 3 }");
	assert_int_equal(shim_config_load(&c,
					  options(&o, "runtimeoptions.v1.Options", p,
						  "{ \"vcpus\": 4 }"),
					  &err),
			 0);
	assert_int_equal(c.vcpus, 3);
	shim_config_free(&c);
	/* An error in the body names it. */
	load_fails(options(&o, "runtimeoptions.v1.Options", NULL, "{ \"cpus\": 4 }"),
		   "runtime options config_body", "unknown key \"cpus\"");
}

static void test_defaults(void **state)
{
	(void)state;
	struct shim_config c;
	struct husk_err err = { 0 };
	setenv("HUSK_CONFIG", file(0, "empty.json", "{}"), 1);
	assert_int_equal(shim_config_load(&c, NULL, &err), 0);
	assert_int_equal(c.vcpus, 0);
	assert_null(c.vmm);
	assert_null(c.vmm_binary);
	assert_int_equal(c.overlay_bytes, 0);
	assert_int_equal(c.accel, HUSK_ACCEL_AUTO);
	shim_config_free(&c);
	/* HUSK_CONFIG set: it must exist. */
	char missing[PATH_MAX];
	snprintf(missing, sizeof(missing), "%s/missing.json", dir);
	setenv("HUSK_CONFIG", missing, 1);
	load_fails(NULL, "HUSK_CONFIG", missing);
}

static void test_errors(void **state)
{
	(void)state;
	struct opts o;
	setenv("HUSK_CONFIG", file(0, "e.json", "{ \"memroy_mib\": 1 }"), 1);
	load_fails(NULL, "e.json: unknown key \"memroy_mib\"", "known: kernel");
	setenv("HUSK_CONFIG", file(0, "e.json", "{ \"vcpus\": \"two\" }"), 1);
	load_fails(NULL, "key \"vcpus\": want an integer, got string", NULL);
	setenv("HUSK_CONFIG", file(0, "e.json", "{ \"vcpus\": 2.5 }"), 1);
	load_fails(NULL, "key \"vcpus\": want an integer, got double", NULL);
	setenv("HUSK_CONFIG", file(0, "e.json", "{ \"memory_mib\": 16 }"), 1);
	load_fails(NULL, "key \"memory_mib\": 16 is out of range (64 to 1048576)", NULL);
	setenv("HUSK_CONFIG", file(0, "e.json", "{ \"kernel\": \"bzImage\" }"), 1);
	load_fails(NULL, "key \"kernel\": \"bzImage\" is not an absolute path", NULL);
	setenv("HUSK_CONFIG", file(0, "e.json", "{ \"accel\": \"hvf\" }"), 1);
	load_fails(NULL, "key \"accel\"", "\"hvf\"");
	setenv("HUSK_CONFIG", file(0, "e.json", "{ \"debug_console\": 1 }"), 1);
	load_fails(NULL, "key \"debug_console\": want true or false", NULL);
	setenv("HUSK_CONFIG", file(0, "e.json", "{\n  \"vcpus\": 2,\n  oops\n}"), 1);
	load_fails(NULL, "e.json: line 3", NULL);
	setenv("HUSK_CONFIG", file(0, "e.json", "{ \"vcpus\": 2 } x"), 1);
	load_fails(NULL, "text after the JSON object", NULL);
	setenv("HUSK_CONFIG", file(0, "e.json", "[1]"), 1);
	load_fails(NULL, "want a JSON object, got array", NULL);
	/* A truncated file says so (json-c's own word is "continue"). */
	setenv("HUSK_CONFIG", file(0, "e.json", "{ \"vcpus\": 2,\n  \"memory_mib\""), 1);
	load_fails(NULL, "e.json: line 2", "ends before it is complete (a truncated file?)");
	setenv("HUSK_CONFIG", file(0, "e.json", ""), 1);
	load_fails(NULL, "e.json", "truncated");
	setenv("HUSK_CONFIG", file(0, "e.json", "{ \"tcg_cache_mib\": 5000 }"), 1);
	load_fails(NULL, "key \"tcg_cache_mib\"", NULL);
	/* Sizes: the one parser, no 0, no negative, no junk. */
	setenv("HUSK_CONFIG", file(0, "e.json", "{ \"overlay_size\": 0 }"), 1);
	load_fails(NULL, "key \"overlay_size\": 0", "default");
	setenv("HUSK_CONFIG", file(0, "e.json", "{ \"overlay_size\": -5 }"), 1);
	load_fails(NULL, "key \"overlay_size\": -5 is negative", NULL);
	setenv("HUSK_CONFIG", file(0, "e.json", "{ \"overlay_size\": \"lots\" }"), 1);
	load_fails(NULL, "key \"overlay_size\": want a size", "\"lots\"");
	setenv("HUSK_CONFIG", file(0, "e.json", "{ \"vmm\": \"\" }"), 1);
	load_fails(NULL, "key \"vmm\": empty", NULL);
	setenv("HUSK_CONFIG", file(0, "e.json", "{}"), 1);
	load_fails(options(&o, "containerd.runc.v1.Options", NULL, NULL),
		   "containerd.runc.v1.Options", "runtimeoptions.v1.Options");
	load_fails(options(&o, "runtimeoptions.v1.Options", "rel.json", NULL), "\"rel.json\"",
		   "not an absolute path");
	char missing[PATH_MAX];
	snprintf(missing, sizeof(missing), "%s/nope.json", dir);
	load_fails(options(&o, "runtimeoptions.v1.Options", missing, NULL), missing, NULL);
}

static void test_uris(void **state)
{
	(void)state;
	struct stdio_uri u;
	struct husk_err err = { 0 };
	assert_int_equal(stdio_uri_parse("/run/ctr/fifo-1", &u, &err), 0);
	assert_int_equal(u.kind, STDIO_FIFO);
	assert_string_equal(u.path, "/run/ctr/fifo-1");
	stdio_uri_free(&u);
	assert_int_equal(stdio_uri_parse("file:///var/log/a%20b.log", &u, &err), 0);
	assert_int_equal(u.kind, STDIO_FILE);
	assert_string_equal(u.path, "/var/log/a b.log");
	stdio_uri_free(&u);
	/* Each key once (its first value), in query order; "+" is a space. */
	assert_int_equal(stdio_uri_parse("binary:///usr/bin/log?b=2&a=x+y&b=3&flag", &u, &err), 0);
	assert_int_equal(u.kind, STDIO_BINARY);
	assert_string_equal(u.path, "/usr/bin/log");
	assert_int_equal(u.n_args, 6);
	const char *want[] = { "b", "2", "a", "x y", "flag", "" };
	for (size_t i = 0; i < 6; i++)
		assert_string_equal(u.args[i], want[i]);
	assert_null(u.args[6]);
	stdio_uri_free(&u);
	assert_int_equal(stdio_uri_parse("binary://host/opt/l", &u, &err), 0);
	assert_string_equal(u.path, "/opt/l");
	assert_int_equal(u.n_args, 0);
	stdio_uri_free(&u);
	assert_true(stdio_uri_parse("syslog:///x", &u, &err) < 0);
	assert_non_null(strstr(err.msg, "unknown scheme"));
	assert_true(stdio_uri_parse("binary:///bin/x?a=%zz", &u, &err) < 0);
	assert_non_null(strstr(err.msg, "bad query escape"));
	assert_true(stdio_uri_parse("file://rel", &u, &err) < 0);
}

#define ANN(type, sb)                                                                              \
	"\"annotations\":{\"io.kubernetes.cri.container-type\":\"" type "\""                      \
	",\"io.kubernetes.cri.sandbox-id\":\"" sb "\"}"

static void test_pod_roles(void **state)
{
	(void)state;
	struct husk_err err = { 0 };
	enum shim_pod_role role;
	char sb[64];
	assert_int_equal(shim_pod_role("{}", &role, sb, sizeof(sb), &err), 0);
	assert_int_equal(role, SHIM_POD_NONE);
	assert_int_equal(shim_pod_role("{" ANN("sandbox", "p1") "}", &role, sb, sizeof(sb), &err), 0);
	assert_int_equal(role, SHIM_POD_SANDBOX);
	assert_string_equal(sb, "p1");
	assert_int_equal(shim_pod_role("{" ANN("container", "p1") "}", &role, sb, sizeof(sb), &err),
			 0);
	assert_int_equal(role, SHIM_POD_CONTAINER);
	assert_string_equal(sb, "p1");
	/* Refused, naming the annotation. */
	assert_true(shim_pod_role("{" ANN("podlet", "p1") "}", &role, sb, sizeof(sb), &err) < 0);
	assert_non_null(strstr(err.msg, "podlet"));
	assert_true(shim_pod_role("{" ANN("container", "") "}", &role, sb, sizeof(sb), &err) < 0);
	assert_non_null(strstr(err.msg, "io.kubernetes.cri.sandbox-id"));
	assert_true(shim_pod_role("{", &role, sb, sizeof(sb), &err) < 0);
	assert_true(shim_pod_role("{" ANN("sandbox", "a-sandbox-id-longer-than-the-buffer") "}",
				  &role, sb, 8, &err) < 0);
}

static void test_pod_rewrite(void **state)
{
	(void)state;
	struct husk_err err = { 0 };
	const char *spec = "{\"linux\":{\"namespaces\":[{\"type\":\"pid\",\"path\":\"/proc/9/ns/pid\"},"
			   "{\"type\":\"network\",\"path\":\"/var/run/netns/cni-1\"},"
			   "{\"type\":\"ipc\"},{\"type\":\"mount\",\"path\":\"/proc/9/ns/mnt\"}]}}";
	char *c = shim_pod_rewrite_spec(spec, SHIM_POD_CONTAINER, 42, &err);
	assert_non_null(c);
	/* Shared types with a path join the sandbox; the rest lose the path. */
	assert_non_null(strstr(c, "{\"type\":\"pid\",\"path\":\"\\/proc\\/42\\/ns\\/pid\"}"));
	assert_non_null(strstr(c, "{\"type\":\"network\",\"path\":\"\\/proc\\/42\\/ns\\/net\"}"));
	assert_non_null(strstr(c, "{\"type\":\"ipc\"}"));
	assert_non_null(strstr(c, "{\"type\":\"mount\"}"));
	free(c);
	char *s = shim_pod_rewrite_spec(spec, SHIM_POD_SANDBOX, 0, &err);
	assert_non_null(s);
	assert_null(strstr(s, "path"));
	free(s);
	assert_null(shim_pod_rewrite_spec("[", SHIM_POD_SANDBOX, 0, &err));
	assert_non_null(strstr(err.msg, "config.json"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_layers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_body, setup, teardown),
		cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uris, setup, teardown),
		cmocka_unit_test(test_pod_roles),
		cmocka_unit_test(test_pod_rewrite),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
