/* Unit tests for the guest kernel command line libhusk builds
 * (husk_cmdline_build, host-connector/lib/cmdline.c): husk.* keys after
 * "--" for init, the kernel's words before it, quoting as the kernel splits
 * words, a "--" in the user's words, and the limits, with errors naming
 * cmdline_extra. The result is read back with the agent's own parser. */
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
#include "../../host-connector/lib/internal.h"

#define KERNEL "console=ttyS0 quiet panic=-1"
#define INIT "husk.log_level=6 husk.log_port=1025"

static char line[HUSK_CMDLINE_MAX];
static struct husk_err err;

static int build(const char *extra)
{
	memset(&err, 0, sizeof(err));
	memset(line, 'x', sizeof(line));
	return husk_cmdline_build(line, sizeof(line), KERNEL, INIT, extra, &err);
}

static void test_no_extra(void **state)
{
	(void)state;
	assert_int_equal(build(NULL), 0);
	assert_string_equal(line, KERNEL " -- " INIT);
	assert_int_equal(build(""), 0);
	assert_string_equal(line, KERNEL " -- " INIT);
	assert_int_equal(build("   "), 0);
	assert_string_equal(line, KERNEL " -- " INIT);
}

static void test_extra_split(void **state)
{
	(void)state;
	assert_int_equal(build("loglevel=7 husk.hostname=vm1  husk.modules=a,b nokaslr"), 0);
	assert_string_equal(line, KERNEL " loglevel=7 nokaslr -- " INIT
				  " husk.hostname=vm1 husk.modules=a,b");
	/* The user's key comes last, so it wins over libhusk's. */
	assert_int_equal(build("husk.log_port=9"), 0);
	struct init_config cfg;
	assert_int_equal(init_parse_cmdline(line, &cfg, NULL), 0);
	assert_int_equal(cfg.log_port, 9);
	assert_int_equal(cfg.log_level, 6);
	/* Words that merely contain "husk." stay the kernel's. */
	assert_int_equal(build("nohusk.x=1 foo=husk.y"), 0);
	assert_string_equal(line, KERNEL " nohusk.x=1 foo=husk.y -- " INIT);
}

static void test_quotes(void **state)
{
	(void)state;
	/* A quoted value holding spaces is one word; a quoted husk.* word is
	 * init's, quotes kept for the kernel to strip. */
	assert_int_equal(build("dyndbg=\"file a.c +p\" \"husk.hostname=q\" husk.hostname=\"r\""), 0);
	assert_string_equal(line, KERNEL " dyndbg=\"file a.c +p\" -- " INIT
				  " \"husk.hostname=q\" husk.hostname=\"r\"");
	struct init_config cfg;
	assert_int_equal(init_parse_cmdline(line, &cfg, NULL), 0);
	assert_string_equal(cfg.hostname, "r");
}

static void test_user_dashes(void **state)
{
	(void)state;
	/* Everything after the user's own "--" was meant for init already. */
	assert_int_equal(build("quiet2 -- single husk.hostname=h x"), 0);
	assert_string_equal(line, KERNEL " quiet2 -- " INIT " single husk.hostname=h x");
	/* The kernel hands the words after a second "--" to nobody. */
	assert_int_equal(build("-- a -- husk.hostname=x"), -EINVAL);
	assert_non_null(strstr(err.msg, "cmdline_extra"));
	assert_non_null(strstr(err.msg, "second \"--\""));
	assert_int_equal(build("--"), 0);
	assert_string_equal(line, KERNEL " -- " INIT);
	/* The kernel strips quotes before it looks for "--". */
	assert_int_equal(build("a \"--\" b"), 0);
	assert_string_equal(line, KERNEL " a -- " INIT " b");
}

/* An open quote runs to the end of the line, over libhusk's own "--" and
 * keys: refused, naming the word. */
static void test_unbalanced_quote(void **state)
{
	(void)state;
	assert_int_equal(build("foo=\"a b"), -EINVAL);
	assert_non_null(strstr(err.msg, "cmdline_extra: unbalanced double quote"));
	assert_non_null(strstr(err.msg, "foo=\"a b"));
	assert_int_equal(build("husk.hostname=\"x\"y z\" w=1"), -EINVAL);
	assert_int_equal(build("ok=\"a b\" \"--\""), 0);
	assert_string_equal(line, KERNEL " ok=\"a b\" -- " INIT);
}

/* Every character the kernel's isspace() knows separates words. */
static void test_kernel_spaces(void **state)
{
	(void)state;
	assert_int_equal(build("a\rhusk.hostname=x\vb\fc\xa0husk.log_level=7"), 0);
	assert_string_equal(line, KERNEL " a b c -- " INIT " husk.hostname=x husk.log_level=7");
}

static void test_limits(void **state)
{
	(void)state;
	/* More words for init than the kernel takes: refused, named. */
	char extra[1024] = "";
	for (int i = 0; i < 30; i++)
		snprintf(extra + strlen(extra), sizeof(extra) - strlen(extra), " husk.k%d=1", i);
	assert_int_equal(build(extra), -E2BIG);
	assert_non_null(strstr(err.msg, "cmdline_extra"));
	assert_non_null(strstr(err.msg, "init"));
	/* Bare words the kernel may not know go to init too. */
	extra[0] = '\0';
	for (int i = 0; i < 23; i++)
		snprintf(extra + strlen(extra), sizeof(extra) - strlen(extra), " w%d", i);
	assert_int_equal(build(extra), -E2BIG);
	/* name=value words without a '.' may go to init's environment. */
	extra[0] = '\0';
	for (int i = 0; i < 24; i++)
		snprintf(extra + strlen(extra), sizeof(extra) - strlen(extra), " k%d=1", i);
	assert_int_equal(build(extra), 0);
	strcat(extra, " k24=1");
	assert_int_equal(build(extra), -E2BIG);
	assert_non_null(strstr(err.msg, "environment"));
	/* Module parameters (a '.' in the name) go to neither. */
	extra[0] = '\0';
	for (int i = 0; i < 30; i++)
		snprintf(extra + strlen(extra), sizeof(extra) - strlen(extra), " m.p%d=1", i);
	assert_int_equal(build(extra), 0);
	/* A line longer than the kernel keeps. */
	char big[3000];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(build(big), -E2BIG);
	assert_non_null(strstr(err.msg, "cmdline_extra"));
	assert_non_null(strstr(err.msg, "2047"));
	/* Exactly full still fits. */
	char small[sizeof(KERNEL " -- " INIT)];
	assert_int_equal(husk_cmdline_build(small, sizeof(small), KERNEL, INIT, NULL, &err), 0);
	assert_string_equal(small, KERNEL " -- " INIT);
	assert_int_equal(husk_cmdline_build(small, sizeof(small) - 1, KERNEL, INIT, NULL, &err),
			 -E2BIG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_extra),
		cmocka_unit_test(test_extra_split),
		cmocka_unit_test(test_quotes),
		cmocka_unit_test(test_user_dashes),
		cmocka_unit_test(test_unbalanced_quote),
		cmocka_unit_test(test_kernel_spaces),
		cmocka_unit_test(test_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
