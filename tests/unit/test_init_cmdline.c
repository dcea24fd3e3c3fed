/* Unit tests for the husk.* kernel command line parser (init/cmdline.h):
 * defaults, every key, quoting as the kernel does it, "--", malformed
 * values (the error names key and value, and the rest still applies),
 * unknown keys, and reading /proc/cmdline. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "init/cmdline.h"
#include "init/net.h"

static struct init_config cfg;
static struct husk_err err;

static int parse(const char *line)
{
	memset(&err, 0, sizeof(err));
	memset(&cfg, 0xa5, sizeof(cfg)); /* the parser must reset everything */
	return init_parse_cmdline(line, &cfg, &err);
}

static void assert_defaults_except(const char *which)
{
	if (strcmp(which, "log_level") != 0)
		assert_int_equal(cfg.log_level, 6);
	if (strcmp(which, "debug_console") != 0)
		assert_false(cfg.debug_console);
	if (strcmp(which, "agent_port") != 0)
		assert_int_equal(cfg.agent_port, 1024);
	if (strcmp(which, "log_port") != 0)
		assert_int_equal(cfg.log_port, 1025);
	if (strcmp(which, "hostname") != 0)
		assert_string_equal(cfg.hostname, "");
	if (strcmp(which, "modules") != 0)
		assert_int_equal(cfg.n_modules, 0);
}

/* ---- defaults and plain keys --------------------------------------------- */

static void test_defaults(void **state)
{
	(void)state;
	assert_int_equal(parse(""), 0);
	assert_defaults_except("");
	assert_false(cfg.husk_keys_seen);
	assert_int_equal(cfg.n_unknown, 0);

	assert_int_equal(parse("console=ttyS0 quiet panic=-1 rdinit=/init"), 0);
	assert_defaults_except("");
	assert_false(cfg.husk_keys_seen);

	assert_int_equal(init_parse_cmdline(NULL, &cfg, &err), 0);
	assert_defaults_except("");
}

static void test_log_level(void **state)
{
	(void)state;
	for (int l = 0; l <= 7; l++) {
		char line[64];
		snprintf(line, sizeof(line), "console=ttyS0 husk.log_level=%d quiet", l);
		assert_int_equal(parse(line), 0);
		assert_int_equal(cfg.log_level, l);
		assert_true(cfg.husk_keys_seen);
		assert_defaults_except("log_level");
	}
}

static void test_debug_console(void **state)
{
	(void)state;
	assert_int_equal(parse("husk.debug_console=1"), 0);
	assert_true(cfg.debug_console);
	assert_defaults_except("debug_console");
	assert_int_equal(parse("husk.debug_console"), 0); /* bare key */
	assert_true(cfg.debug_console);
	assert_int_equal(parse("husk.debug_console=0"), 0);
	assert_false(cfg.debug_console);
	assert_int_equal(parse("husk.debug_console=1 husk.debug_console=off"), 0);
	assert_false(cfg.debug_console);
	assert_int_equal(parse("husk.debug_console=yes"), 0);
	assert_true(cfg.debug_console);
}

static void test_agent_port(void **state)
{
	(void)state;
	assert_int_equal(parse("husk.agent_port=2048"), 0);
	assert_int_equal(cfg.agent_port, 2048);
	assert_defaults_except("agent_port");
	assert_int_equal(parse("husk.agent_port=1"), 0);
	assert_int_equal(cfg.agent_port, 1);
	assert_int_equal(parse("husk.agent_port=4294967294"), 0);
	assert_int_equal(cfg.agent_port, 4294967294u);
	/* Last one wins, as for the kernel's own parameters. */
	assert_int_equal(parse("husk.agent_port=5000 husk.agent_port=6000"), 0);
	assert_int_equal(cfg.agent_port, 6000);
}

static void test_log_port(void **state)
{
	(void)state;
	assert_int_equal(parse("husk.log_port=268435459"), 0);
	assert_int_equal(cfg.log_port, 268435459u);
	assert_defaults_except("log_port");
	assert_int_equal(parse("husk.log_port=0"), -EINVAL);
	assert_non_null(strstr(err.msg, "husk.log_port"));
	assert_int_equal(parse("husk.log_port=4294967295"), -EINVAL);
}

static void test_hostname(void **state)
{
	(void)state;
	assert_int_equal(parse("husk.hostname=sandbox-1.example"), 0);
	assert_string_equal(cfg.hostname, "sandbox-1.example");
	assert_defaults_except("hostname");

	/* 64 characters, the most; labels are at most 63. */
	char line[128], name[65];
	memset(name, 'a', 64);
	name[31] = '.';
	name[64] = '\0';
	snprintf(line, sizeof(line), "husk.hostname=%s", name);
	assert_int_equal(parse(line), 0);
	assert_string_equal(cfg.hostname, name);
}

static void test_modules(void **state)
{
	(void)state;
	assert_int_equal(parse("husk.modules=virtio_blk,vsock,vmw_vsock_virtio_transport"), 0);
	assert_int_equal(cfg.n_modules, 3);
	assert_string_equal(cfg.modules[0], "virtio_blk");
	assert_string_equal(cfg.modules[1], "vsock");
	assert_string_equal(cfg.modules[2], "vmw_vsock_virtio_transport");
	assert_defaults_except("modules");

	/* Repeated keys add; empty elements are harmless. */
	assert_int_equal(parse("husk.modules=a,,b, husk.modules=erofs husk.modules="), 0);
	assert_int_equal(cfg.n_modules, 3);
	assert_string_equal(cfg.modules[2], "erofs");

	const char *names[INIT_MAX_MODULES];
	assert_int_equal(init_config_module_names(&cfg, names), 3);
	assert_ptr_equal(names[0], cfg.modules[0]);
	assert_string_equal(names[1], "b");
}

static void test_all_keys_together(void **state)
{
	(void)state;
	assert_int_equal(parse("  console=ttyS0 husk.log_level=7\thusk.debug_console=1 "
			       "husk.agent_port=1500 husk.hostname=h husk.modules=m1,m-2  \n"),
			 0);
	assert_int_equal(cfg.log_level, 7);
	assert_true(cfg.debug_console);
	assert_int_equal(cfg.agent_port, 1500);
	assert_string_equal(cfg.hostname, "h");
	assert_int_equal(cfg.n_modules, 2);
	assert_string_equal(cfg.modules[1], "m-2");
	assert_int_equal(cfg.n_unknown, 0);
}

/* ---- quoting and "--" ----------------------------------------------------- */

static void test_quotes(void **state)
{
	(void)state;
	/* Quoted value, and a quoted whole word, as the kernel strips them. */
	assert_int_equal(parse("husk.hostname=\"quoted\" \"husk.agent_port=77\""), 0);
	assert_string_equal(cfg.hostname, "quoted");
	assert_int_equal(cfg.agent_port, 77);
	/* A quoted value may hold spaces: one word, here a malformed value. */
	assert_int_equal(parse("husk.hostname=\"a b\" husk.log_level=3"), -EINVAL);
	assert_non_null(strstr(err.msg, "husk.hostname"));
	assert_non_null(strstr(err.msg, "\"a b\""));
	assert_int_equal(cfg.log_level, 3);
	/* A quoted word that is not ours hides nothing. */
	assert_int_equal(parse("foo=\"husk.log_level=1\" husk.log_level=2"), 0);
	assert_int_equal(cfg.log_level, 2);
}

static void test_double_dash(void **state)
{
	(void)state;
	/* Words after "--" are init's arguments, ours as much as those before:
	 * libhusk puts its keys there. */
	assert_int_equal(parse("husk.log_level=5 -- husk.log_level=1 husk.bogus"), 0);
	assert_int_equal(cfg.log_level, 1);
	assert_int_equal(cfg.n_unknown, 1);
	assert_string_equal(cfg.unknown[0], "husk.bogus");
	assert_int_equal(parse("console=ttyS0 -- single husk.hostname=h x"), 0);
	assert_string_equal(cfg.hostname, "h");
	assert_true(cfg.husk_keys_seen);
	/* Nobody gets the words after a second "--", nor do we. */
	assert_int_equal(parse("-- husk.log_level=2 -- husk.log_level=3 husk.bogus"), 0);
	assert_int_equal(cfg.log_level, 2);
	assert_int_equal(cfg.n_unknown, 0);
	/* Every space the kernel knows separates words. */
	assert_int_equal(parse("a\vhusk.log_level=4\xa0husk.hostname=s"), 0);
	assert_int_equal(cfg.log_level, 4);
	assert_string_equal(cfg.hostname, "s");
	assert_true(init_cmdline_is_husk("console=ttyS0 -- husk.log_level=1"));
	assert_true(init_cmdline_is_husk("console=ttyS0 husk.x=1 --"));
	assert_false(init_cmdline_is_husk("console=ttyS0 -- single x=husk.y"));
	assert_false(init_cmdline_is_husk("console=ttyS0 nohusk.log_level=1 xhusk."));
	assert_false(init_cmdline_is_husk(""));
	/* The host's real command line is not a husk guest's. */
	char buf[INIT_CMDLINE_MAX];
	assert_int_equal(init_read_cmdline(buf, sizeof(buf), &err), 0);
	assert_false(init_cmdline_is_husk(buf));
}

/* init's arguments (argv[1..] of PID 1): one word each, quotes already
 * stripped by the kernel, the same keys, errors and defaults. */
static void test_args(void **state)
{
	(void)state;
	char *none[] = { "single", "x=1" };
	memset(&cfg, 0xa5, sizeof(cfg));
	assert_int_equal(init_parse_args(2, none, &cfg, &err), 0);
	assert_defaults_except("");
	assert_false(cfg.husk_keys_seen);
	assert_int_equal(init_parse_args(0, NULL, &cfg, &err), 0);
	assert_false(cfg.husk_keys_seen);

	char *keys[] = { "husk.log_level=3", "husk.log_port=2000", "husk.debug_console",
			 "husk.hostname=a b", "husk.modules=vsock,virtio_blk",
			 "husk.modules=erofs", "husk.hostname=vm-1", "husk.what=1", NULL };
	memset(&err, 0, sizeof(err));
	memset(&cfg, 0xa5, sizeof(cfg));
	/* "a b" is one argument (the kernel kept it whole): a bad hostname,
	 * reported, and the later good one applies. */
	assert_int_equal(init_parse_args(9, keys, &cfg, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "husk.hostname"));
	assert_non_null(strstr(err.msg, "\"a b\""));
	assert_true(cfg.husk_keys_seen);
	assert_int_equal(cfg.log_level, 3);
	assert_int_equal(cfg.log_port, 2000);
	assert_true(cfg.debug_console);
	assert_string_equal(cfg.hostname, "vm-1");
	assert_int_equal(cfg.n_modules, 3);
	assert_string_equal(cfg.modules[2], "erofs");
	assert_int_equal(cfg.n_unknown, 1);
	assert_string_equal(cfg.unknown[0], "husk.what");
	assert_int_equal(cfg.agent_port, 1024);

	/* An argument too long to be a key is an error, not a crash. */
	static char huge[INIT_CMDLINE_MAX + 10];
	memcpy(huge, "husk.hostname=", 14);
	memset(huge + 14, 'h', sizeof(huge) - 15);
	char *big[] = { huge, "husk.log_level=2" };
	memset(&err, 0, sizeof(err));
	assert_int_equal(init_parse_args(2, big, &cfg, &err), -E2BIG);
	assert_non_null(strstr(err.msg, "init argument 0"));
	assert_int_equal(cfg.log_level, 2);
}

/* ---- malformed values ---------------------------------------------------- */

struct bad_case {
	const char *line;
	int code;
	const char *key, *value; /* both must appear in the message */
};

static void test_malformed(void **state)
{
	(void)state;
	static const struct bad_case cases[] = {
		{ "husk.log_level=8", -EINVAL, "husk.log_level", "\"8\"" },
		{ "husk.log_level=-1", -EINVAL, "husk.log_level", "\"-1\"" },
		{ "husk.log_level=6x", -EINVAL, "husk.log_level", "\"6x\"" },
		{ "husk.log_level=", -EINVAL, "husk.log_level", "\"\"" },
		{ "husk.log_level= 6", -EINVAL, "husk.log_level", "\"\"" },
		{ "husk.log_level", -EINVAL, "husk.log_level", "missing value" },
		{ "husk.debug_console=2", -EINVAL, "husk.debug_console", "\"2\"" },
		{ "husk.agent_port=0", -EINVAL, "husk.agent_port", "\"0\"" },
		{ "husk.agent_port=4294967295", -EINVAL, "husk.agent_port", "\"4294967295\"" },
		{ "husk.agent_port=99999999999999999999999", -EINVAL, "husk.agent_port",
		  "\"99999999999999999999999\"" },
		{ "husk.agent_port=0x400", -EINVAL, "husk.agent_port", "\"0x400\"" },
		{ "husk.agent_port=+5", -EINVAL, "husk.agent_port", "\"+5\"" },
		{ "husk.hostname=", -EINVAL, "husk.hostname", "\"\"" },
		{ "husk.hostname=-lead", -EINVAL, "husk.hostname", "\"-lead\"" },
		{ "husk.hostname=trail-", -EINVAL, "husk.hostname", "\"trail-\"" },
		{ "husk.hostname=a..b", -EINVAL, "husk.hostname", "\"a..b\"" },
		{ "husk.hostname=under_score", -EINVAL, "husk.hostname", "\"under_score\"" },
		{ "husk.hostname=a/b", -EINVAL, "husk.hostname", "\"a/b\"" },
		{ "husk.hostname", -EINVAL, "husk.hostname", "missing value" },
		{ "husk.modules=ok,bad/name", -EINVAL, "husk.modules", "\"bad/name\"" },
		{ "husk.modules=a.b", -EINVAL, "husk.modules", "\"a.b\"" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct bad_case *c = &cases[i];
		int r = parse(c->line);
		if (r != c->code || !strstr(err.msg, c->key) || !strstr(err.msg, c->value))
			fail_msg("%s: got %d \"%s\"", c->line, r, err.msg);
		assert_int_equal(err.code, c->code);
	}

	/* 65 characters: too long for a host name. */
	char line[128];
	snprintf(line, sizeof(line), "husk.hostname=%065d", 0);
	assert_int_equal(parse(line), -EINVAL);
	assert_string_equal(cfg.hostname, "");

	/* Long values are cut in the message, which stays bounded. */
	char big[1024] = "husk.log_level=";
	memset(big + strlen(big), '9', 600);
	assert_int_equal(parse(big), -EINVAL);
	assert_non_null(strstr(err.msg, "...\""));
	assert_true(strlen(err.msg) < 200);
}

static void test_malformed_keeps_the_rest(void **state)
{
	(void)state;
	/* The first error is returned, later good keys still apply, and the
	 * bad keys keep their defaults. */
	assert_int_equal(parse("husk.log_level=9 husk.agent_port=2000 husk.agent_port=zero "
			       "husk.hostname=ok"),
			 -EINVAL);
	assert_non_null(strstr(err.msg, "husk.log_level"));
	assert_null(strstr(err.msg, "agent_port"));
	assert_int_equal(cfg.log_level, 6);
	assert_int_equal(cfg.agent_port, 2000);
	assert_string_equal(cfg.hostname, "ok");
	/* With no error object at all. */
	assert_int_equal(init_parse_cmdline("husk.log_level=x", &cfg, NULL), -EINVAL);
}

static void test_too_many_modules(void **state)
{
	(void)state;
	char line[2048] = "husk.modules=";
	for (int i = 0; i < INIT_MAX_MODULES + 3; i++)
		snprintf(line + strlen(line), sizeof(line) - strlen(line), "m%d,", i);
	assert_int_equal(parse(line), -E2BIG);
	assert_non_null(strstr(err.msg, "husk.modules"));
	assert_int_equal(cfg.n_modules, INIT_MAX_MODULES);
	assert_string_equal(cfg.modules[INIT_MAX_MODULES - 1], "m31");

	char name[80] = "husk.modules=";
	memset(name + strlen(name), 'x', INIT_MODULE_NAME_MAX);
	assert_int_equal(parse(name), -EINVAL);
	assert_int_equal(cfg.n_modules, 0);
}

/* ---- unknown keys ----------------------------------------------------------- */

static void test_unknown_keys(void **state)
{
	(void)state;
	assert_int_equal(parse("husk.future=1 husk.log_level=4 husk. husk.flag"), 0);
	assert_int_equal(cfg.log_level, 4);
	assert_int_equal(cfg.n_unknown, 3);
	assert_string_equal(cfg.unknown[0], "husk.future");
	assert_string_equal(cfg.unknown[1], "husk.");
	assert_string_equal(cfg.unknown[2], "husk.flag");

	/* More than fit: all counted, the first ones kept. */
	char line[2048] = "";
	for (int i = 0; i < INIT_MAX_UNKNOWN + 4; i++)
		snprintf(line + strlen(line), sizeof(line) - strlen(line), "husk.k%d=v ", i);
	assert_int_equal(parse(line), 0);
	assert_int_equal(cfg.n_unknown, INIT_MAX_UNKNOWN + 4);
	assert_string_equal(cfg.unknown[INIT_MAX_UNKNOWN - 1], "husk.k15");

	/* A very long unknown key is cut, not overflowing. */
	char longkey[256] = "husk.";
	memset(longkey + 5, 'k', 200);
	assert_int_equal(parse(longkey), 0);
	assert_int_equal(strlen(cfg.unknown[0]), INIT_UNKNOWN_KEY_MAX - 1);
}

/* ---- hostname rule, /proc/cmdline ------------------------------------------- */

static void test_hostname_rule(void **state)
{
	(void)state;
	assert_true(init_hostname_valid("a"));
	assert_true(init_hostname_valid("a-b.c-d.e"));
	assert_true(init_hostname_valid("123"));
	assert_false(init_hostname_valid(""));
	assert_false(init_hostname_valid("."));
	assert_false(init_hostname_valid("a."));
	assert_false(init_hostname_valid(".a"));
	assert_false(init_hostname_valid("a b"));
	char label[70];
	memset(label, 'x', 64);
	label[64] = '\0';
	assert_false(init_hostname_valid(label)); /* one 64-character label */
}

static void test_read_cmdline(void **state)
{
	(void)state;
	char buf[INIT_CMDLINE_MAX];
	assert_int_equal(init_read_cmdline(buf, sizeof(buf), &err), 0);
	assert_true(strlen(buf) > 0);
	assert_null(strchr(buf, '\n'));

	char small[4];
	memset(&err, 0, sizeof(err));
	assert_int_equal(init_read_cmdline(small, sizeof(small), &err), -ENOBUFS);
	assert_non_null(strstr(err.msg, "/proc/cmdline"));
	assert_string_equal(small, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_log_level),
		cmocka_unit_test(test_debug_console),
		cmocka_unit_test(test_agent_port),
		cmocka_unit_test(test_log_port),
		cmocka_unit_test(test_hostname),
		cmocka_unit_test(test_modules),
		cmocka_unit_test(test_all_keys_together),
		cmocka_unit_test(test_quotes),
		cmocka_unit_test(test_double_dash),
		cmocka_unit_test(test_args),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_malformed_keeps_the_rest),
		cmocka_unit_test(test_too_many_modules),
		cmocka_unit_test(test_unknown_keys),
		cmocka_unit_test(test_hostname_rule),
		cmocka_unit_test(test_read_cmdline),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
