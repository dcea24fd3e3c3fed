/* husk.* kernel command line keys: see init/cmdline.h. */
#include "init/cmdline.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "husk/cleanup.h"
#include "init/net.h"

#define PREFIX "husk."
#define PREFIX_LEN (sizeof(PREFIX) - 1)
/* Values quoted in error messages are cut to this many characters. */
#define SHOW_MAX 64

void init_config_defaults(struct init_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->log_level = 6;
	cfg->agent_port = INIT_DEFAULT_AGENT_PORT;
	cfg->log_port = INIT_DEFAULT_LOG_PORT;
}

/* The kernel's isspace() (lib/ctype.c), 0xa0 included. */
static bool is_space(char c)
{
	unsigned char u = (unsigned char)c;
	return u == ' ' || (u >= '\t' && u <= '\r') || u == 0xa0;
}

static char *skip_spaces(char *s)
{
	while (is_space(*s))
		s++;
	return s;
}

/* The kernel's next_arg() (lib/cmdline.c), so that quoting means here what
 * it means to the kernel: splits off one word, sets *param and *val (NULL
 * when there is no '='), strips the quotes, returns the rest. */
static char *next_arg(char *args, char **param, char **val)
{
	size_t i, equals = 0;
	bool in_quote = false, quoted = false;

	if (*args == '"') {
		args++;
		in_quote = quoted = true;
	}
	for (i = 0; args[i]; i++) {
		if (is_space(args[i]) && !in_quote)
			break;
		if (equals == 0 && args[i] == '=')
			equals = i;
		if (args[i] == '"')
			in_quote = !in_quote;
	}
	*param = args;
	if (!equals) {
		*val = NULL;
	} else {
		args[equals] = '\0';
		*val = args + equals + 1;
		if (**val == '"') {
			(*val)++;
			if (args[i - 1] == '"')
				args[i - 1] = '\0';
		}
	}
	if (quoted && i > 0 && args[i - 1] == '"')
		args[i - 1] = '\0';
	if (args[i]) {
		args[i] = '\0';
		args += i + 1;
	} else {
		args += i;
	}
	return skip_spaces(args);
}

/* Decimal digits only (no sign, no spaces, no base prefix) within [min, max]. */
static bool parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	if (!*s)
		return false;
	uint64_t v = 0;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		unsigned d = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	if (v < min || v > max)
		return false;
	*out = v;
	return true;
}

/* The kernel's kstrtobool spellings that make sense on a command line. */
static bool parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "1", "y", "yes", "on", "true" };
	static const char *const no[] = { "0", "n", "no", "off", "false" };
	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		if (strcmp(s, yes[i]) == 0) {
			*out = true;
			return true;
		}
		if (strcmp(s, no[i]) == 0) {
			*out = false;
			return true;
		}
	}
	return false;
}

static bool valid_module_name(const char *s, size_t len)
{
	if (len == 0 || len >= INIT_MODULE_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '_' || c == '-';
		if (!ok)
			return false;
	}
	return true;
}

/* Records the first error only (later ones are dropped: parsing carries
 * on); returns it. */
__attribute__((format(printf, 4, 5)))
static int first_err(struct husk_err *err, int *first, int code, const char *fmt, ...)
{
	if (*first)
		return *first;
	*first = code;
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
		err->code = code;
	}
	return code;
}

static int bad_value(struct husk_err *err, int *first, const char *key, const char *val,
		     const char *expected)
{
	return first_err(err, first, -EINVAL, "%s: invalid value \"%.*s%s\" (expected %s)", key,
			 SHOW_MAX, val, strlen(val) > SHOW_MAX ? "..." : "", expected);
}

static void add_modules(struct init_config *cfg, const char *key, const char *val,
			struct husk_err *err, int *first)
{
	const char *p = val;
	while (*p) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len > 0) { /* "a,,b" and a trailing comma are harmless */
			if (!valid_module_name(p, len)) {
				first_err(err, first, -EINVAL,
					  "%s: invalid module name \"%.*s\" in \"%.*s\"", key,
					  (int)(len > SHOW_MAX ? SHOW_MAX : len), p, SHOW_MAX,
					  val);
			} else if (cfg->n_modules >= INIT_MAX_MODULES) {
				first_err(err, first, -E2BIG, "%s: more than %d modules", key,
					  INIT_MAX_MODULES);
			} else {
				memcpy(cfg->modules[cfg->n_modules], p, len);
				cfg->modules[cfg->n_modules][len] = '\0';
				cfg->n_modules++;
			}
		}
		if (!end)
			break;
		p = end + 1;
	}
}

static void parse_key(struct init_config *cfg, const char *key, const char *val,
		      struct husk_err *err, int *first)
{
	const char *name = key + PREFIX_LEN;
	uint64_t n;

	if (strcmp(name, "debug_console") == 0) {
		bool b = true; /* bare key */
		if (val && !parse_bool(val, &b))
			bad_value(err, first, key, val, "0 or 1");
		else
			cfg->debug_console = b;
		return;
	}

	bool known = strcmp(name, "log_level") == 0 || strcmp(name, "agent_port") == 0 ||
		     strcmp(name, "log_port") == 0 ||
		     strcmp(name, "hostname") == 0 || strcmp(name, "modules") == 0;
	if (!known) {
		if (cfg->n_unknown < INIT_MAX_UNKNOWN) {
			snprintf(cfg->unknown[cfg->n_unknown], INIT_UNKNOWN_KEY_MAX, "%s", key);
		}
		cfg->n_unknown++;
		return;
	}
	if (!val) {
		first_err(err, first, -EINVAL, "%s: missing value (%s=...)", key, key);
		return;
	}

	if (strcmp(name, "log_level") == 0) {
		if (parse_uint(val, 0, 7, &n))
			cfg->log_level = (int)n;
		else
			bad_value(err, first, key, val, "0..7");
	} else if (strcmp(name, "agent_port") == 0 || strcmp(name, "log_port") == 0) {
		/* 0xffffffff is VMADDR_PORT_ANY. */
		if (!parse_uint(val, 1, UINT32_MAX - 1, &n))
			bad_value(err, first, key, val, "1..4294967294");
		else if (name[0] == 'a')
			cfg->agent_port = (unsigned)n;
		else
			cfg->log_port = (unsigned)n;
	} else if (strcmp(name, "hostname") == 0) {
		if (init_hostname_valid(val))
			snprintf(cfg->hostname, sizeof(cfg->hostname), "%s", val);
		else
			bad_value(err, first, key, val,
				  "a host name of 1..64 characters [A-Za-z0-9.-]");
	} else {
		add_modules(cfg, key, val, err, first);
	}
}

int init_parse_cmdline(const char *cmdline, struct init_config *cfg, struct husk_err *err)
{
	init_config_defaults(cfg);
	_cleanup_free_ char *copy = strdup(cmdline ? cmdline : "");
	if (!copy)
		return husk_err_set(err, -ENOMEM, "kernel command line: out of memory");

	int first = 0, dashes = 0;
	char *args = skip_spaces(copy);
	while (*args) {
		char *param, *val;
		args = next_arg(args, &param, &val);
		/* Words after "--" are init's arguments: ours too. The kernel
		 * passes those after a second "--" to nobody. */
		if (!val && strcmp(param, "--") == 0 && ++dashes == 2)
			break;
		if (strncmp(param, PREFIX, PREFIX_LEN) != 0)
			continue;
		cfg->husk_keys_seen = true;
		parse_key(cfg, param, val, err, &first);
	}
	return first;
}

int init_parse_args(int argc, char *const argv[], struct init_config *cfg, struct husk_err *err)
{
	init_config_defaults(cfg);
	int first = 0;
	for (int i = 0; i < argc; i++) {
		if (!argv[i] || strncmp(argv[i], PREFIX, PREFIX_LEN) != 0)
			continue;
		/* The kernel hands each word over whole, quotes stripped: split
		 * it at its first '=' as next_arg() would. */
		char word[INIT_CMDLINE_MAX];
		size_t len = strlen(argv[i]);
		if (len >= sizeof(word)) {
			first_err(err, &first, -E2BIG, "init argument %d: longer than %zu bytes", i,
				  sizeof(word) - 1);
			continue;
		}
		memcpy(word, argv[i], len + 1);
		char *eq = strchr(word, '=');
		if (eq)
			*eq = '\0';
		cfg->husk_keys_seen = true;
		parse_key(cfg, word, eq ? eq + 1 : NULL, err, &first);
	}
	return first;
}

bool init_cmdline_is_husk(const char *cmdline)
{
	struct init_config cfg;
	init_parse_cmdline(cmdline, &cfg, NULL);
	return cfg.husk_keys_seen;
}

int init_read_cmdline(char *buf, size_t size, struct husk_err *err)
{
	if (size == 0)
		return husk_err_set(err, -ENOBUFS, "read /proc/cmdline: empty buffer");
	_cleanup_fd_ int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return husk_err_sys(err, -errno, "open /proc/cmdline");
	size_t len = 0;
	for (;;) {
		if (len == size - 1) {
			/* Full: fine only if the file ends here. */
			char c;
			ssize_t n = read(fd, &c, 1);
			if (n < 0 && errno == EINTR)
				continue;
			if (n != 0) {
				buf[0] = '\0';
				return husk_err_set(err, -ENOBUFS,
						    "read /proc/cmdline: longer than %zu bytes",
						    size - 1);
			}
			break;
		}
		ssize_t n = read(fd, buf + len, size - 1 - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			int r = -errno;
			buf[0] = '\0';
			return husk_err_sys(err, r, "read /proc/cmdline");
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == ' '))
		len--;
	buf[len] = '\0';
	return 0;
}

size_t init_config_module_names(const struct init_config *cfg,
				const char *names[INIT_MAX_MODULES])
{
	for (size_t i = 0; i < cfg->n_modules; i++)
		names[i] = cfg->modules[i];
	return cfg->n_modules;
}
