/* The guest kernel command line: see husk_cmdline_build in internal.h.
 *
 * The husk.* keys go after "--": the kernel hands every word there to init
 * as an argument, so the agent has its configuration before it mounts
 * /proc (under TCG, a mount and a read of /proc/cmdline before the first
 * Check cost the boot about 1,000 translated blocks). Before "--" the
 * kernel would take a husk.* word for a module parameter and drop it.
 *
 * Words are split as the kernel's next_arg() (lib/cmdline.c) splits them,
 * and what it would do with `extra` is checked first: an open quote would
 * swallow libhusk's own words, words after a second "--" reach nobody, and
 * too many init arguments or environment words panic the kernel. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* The kernel panics past CONFIG_INIT_ENV_ARG_LIMIT (32) init arguments or
 * environment words, argv[0], HOME and TERM included: stay well below. */
#define INIT_WORDS_MAX 24

struct out {
	char *buf;
	size_t size, len;
	bool overflow;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->len + (o->len ? 1 : 0) + n >= o->size) {
		o->overflow = true;
		return;
	}
	if (o->len)
		o->buf[o->len++] = ' ';
	memcpy(o->buf + o->len, s, n);
	o->len += n;
	o->buf[o->len] = '\0';
}

/* The kernel's isspace() (lib/ctype.c), 0xa0 included. */
static bool is_space(char c)
{
	unsigned char u = (unsigned char)c;
	return u == ' ' || (u >= '\t' && u <= '\r') || u == 0xa0;
}

/* Splits off one word: spaces separate words, except inside double
 * quotes. Returns its length, 0 at the end; *open tells whether a quote is
 * still open where the word ends (it then runs to the end of the line). */
static size_t next_word(const char **p, bool *open)
{
	const char *s = *p;
	while (is_space(*s))
		s++;
	bool in_quote = false;
	size_t n = 0;
	for (; s[n]; n++) {
		if (is_space(s[n]) && !in_quote)
			break;
		if (s[n] == '"')
			in_quote = !in_quote;
	}
	*p = s;
	if (open)
		*open = in_quote;
	return n;
}

/* The word without the quotes the kernel strips from its ends. */
static void unquoted(const char **w, size_t *n)
{
	if (*n > 0 && (*w)[0] == '"') {
		(*w)++;
		(*n)--;
	}
	if (*n > 0 && (*w)[*n - 1] == '"')
		(*n)--;
}

static bool is_husk_word(const char *w, size_t n)
{
	unquoted(&w, &n);
	return n >= 5 && strncmp(w, "husk.", 5) == 0;
}

/* "--", also quoted: the kernel strips the quotes before it looks. */
static bool is_dashes(const char *w, size_t n)
{
	unquoted(&w, &n);
	return n == 2 && strncmp(w, "--", 2) == 0;
}

static size_t count_words(const char *s)
{
	size_t k = 0, n;
	while ((n = next_word(&s, NULL)) > 0) {
		k++;
		s += n;
	}
	return k;
}

/* What the kernel would make of `extra`: refuses what would lose words or
 * panic it; counts the words init gets as arguments (husk.* words, bare
 * words it does not know: any, to be safe, and words after "--") and as
 * environment (name=value words without a '.'). */
static int check_extra(const char *extra, size_t init_words, struct husk_err *err)
{
	size_t env_words = 0, n;
	int dashes = 0;
	bool open;
	for (const char *p = extra; (n = next_word(&p, &open)) > 0; p += n) {
		if (open)
			return husk_err_set(err, -EINVAL,
					    "cmdline_extra: unbalanced double quote in \"%.*s\"",
					    (int)(n > 64 ? 64 : n), p);
		if (is_dashes(p, n)) {
			if (++dashes > 1)
				return husk_err_set(err, -EINVAL,
						    "cmdline_extra: a second \"--\": the kernel "
						    "passes the words after it to nobody");
			continue;
		}
		const char *w = p;
		size_t len = n;
		unquoted(&w, &len);
		const char *eq = memchr(w, '=', len);
		if (dashes || is_husk_word(p, n) || !eq)
			init_words++;
		else if (!memchr(w, '.', (size_t)(eq - w)))
			env_words++;
	}
	if (init_words > INIT_WORDS_MAX || env_words > INIT_WORDS_MAX)
		return husk_err_set(err, -E2BIG,
				    "cmdline_extra: %zu words that may go to init as arguments and "
				    "%zu as environment, with libhusk's own; at most %d each (the "
				    "kernel panics past 32)",
				    init_words, env_words, INIT_WORDS_MAX);
	return 0;
}

int husk_cmdline_build(char *buf, size_t size, const char *kernel, const char *init,
		       const char *extra, struct husk_err *err)
{
	struct out o = { .buf = buf, .size = size };
	if (size == 0)
		return husk_err_set(err, -E2BIG, "kernel command line: no room");
	buf[0] = '\0';
	if (!extra)
		extra = "";
	int r = check_extra(extra, count_words(init), err);
	if (r < 0)
		return r;

	const char *p;
	size_t n;
	for (p = kernel; (n = next_word(&p, NULL)) > 0; p += n)
		put(&o, p, n);
	/* The kernel's words of `extra`: those before any "--" but husk.*. */
	for (p = extra; (n = next_word(&p, NULL)) > 0 && !is_dashes(p, n); p += n)
		if (!is_husk_word(p, n))
			put(&o, p, n);
	put(&o, "--", 2);
	for (p = init; (n = next_word(&p, NULL)) > 0; p += n)
		put(&o, p, n);
	/* Then init's: the husk.* words of `extra`, after ours so that they
	 * win (the last of a key does), and the words after its "--". */
	bool after_dashes = false;
	for (p = extra; (n = next_word(&p, NULL)) > 0; p += n) {
		if (is_dashes(p, n))
			after_dashes = true;
		else if (after_dashes || is_husk_word(p, n))
			put(&o, p, n);
	}
	if (o.overflow)
		return husk_err_set(err, -E2BIG,
				    "cmdline_extra: the kernel command line would exceed %zu bytes",
				    size - 1);
	return 0;
}
