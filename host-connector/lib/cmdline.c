/* The guest kernel command line: see husk_cmdline_build in internal.h.
 *
 * The husk.* keys go after "--": the kernel hands every word there to init
 * as an argument, so the agent has its configuration before it mounts
 * /proc (under TCG, a mount and a read of /proc/cmdline before the first
 * Check cost the boot about 1,000 translated blocks). Before "--" the
 * kernel would take a husk.* word for a module parameter and drop it. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* The kernel panics past CONFIG_INIT_ENV_ARG_LIMIT (32) init arguments,
 * argv[0] and any bare unknown kernel words included: stay well below. */
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

/* Splits off one word as the kernel's next_arg() does: spaces separate
 * words, except inside double quotes. Returns its length, 0 at the end. */
static size_t next_word(const char **p)
{
	const char *s = *p;
	while (*s == ' ' || *s == '\t' || *s == '\n')
		s++;
	bool in_quote = false;
	size_t n = 0;
	for (; s[n]; n++) {
		if ((s[n] == ' ' || s[n] == '\t' || s[n] == '\n') && !in_quote)
			break;
		if (s[n] == '"')
			in_quote = !in_quote;
	}
	*p = s;
	return n;
}

/* A husk.* key, quoted whole ("husk.x=1") or not. */
static bool is_husk_word(const char *w, size_t n)
{
	if (n > 0 && w[0] == '"') {
		w++;
		n--;
	}
	return n >= 5 && strncmp(w, "husk.", 5) == 0;
}

/* "--", which the kernel also sees in "\"--\"" (it strips the quotes). */
static bool is_dashes(const char *w, size_t n)
{
	return (n == 2 && strncmp(w, "--", 2) == 0) || (n == 4 && strncmp(w, "\"--\"", 4) == 0);
}

static size_t count_words(const char *s)
{
	size_t k = 0, n;
	while ((n = next_word(&s)) > 0) {
		k++;
		s += n;
	}
	return k;
}

int husk_cmdline_build(char *buf, size_t size, const char *kernel, const char *init,
		       const char *extra, struct husk_err *err)
{
	struct out o = { .buf = buf, .size = size };
	if (size == 0)
		return husk_err_set(err, -ENOBUFS, "kernel command line: no room");
	buf[0] = '\0';
	const char *p;
	size_t n, init_words = count_words(init);

	p = kernel;
	while ((n = next_word(&p)) > 0) {
		put(&o, p, n);
		p += n;
	}
	/* The kernel's words of `extra`: those before any "--" but husk.*. */
	p = extra ? extra : "";
	while ((n = next_word(&p)) > 0) {
		if (is_dashes(p, n))
			break;
		if (!is_husk_word(p, n))
			put(&o, p, n);
		p += n;
	}
	put(&o, "--", 2);
	p = init;
	while ((n = next_word(&p)) > 0) {
		put(&o, p, n);
		p += n;
	}
	/* Then init's: the husk.* words of `extra`, after ours so that they
	 * win (the last of a key does), and all words after its "--". */
	bool after_dashes = false;
	p = extra ? extra : "";
	while ((n = next_word(&p)) > 0) {
		if (!after_dashes && is_dashes(p, n)) {
			after_dashes = true;
		} else if (after_dashes || is_husk_word(p, n)) {
			put(&o, p, n);
			init_words++;
		}
		p += n;
	}
	if (init_words > INIT_WORDS_MAX)
		return husk_err_set(err, -E2BIG,
				    "cmdline_extra: %zu words for init (husk.* keys and words after "
				    "\"--\") with libhusk's own; at most %d (the kernel panics past "
				    "32 init arguments)",
				    init_words, INIT_WORDS_MAX);
	if (o.overflow)
		return husk_err_set(err, -E2BIG,
				    "cmdline_extra: the kernel command line would exceed %zu bytes",
				    size - 1);
	return 0;
}
