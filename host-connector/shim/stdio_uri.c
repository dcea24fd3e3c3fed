/* containerd's stdio URIs, as containerd-shim-runc-v2 reads them
 * (containerd 1.6 pkg/process/io.go): a bare path or fifo://PATH is a FIFO;
 * file:///PATH appends stdout and stderr to one file; binary:///PATH?k=v
 * runs PATH with the arguments k v as the process's logger (logger.c). The
 * scheme of the stdout URI decides, for stderr too. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "husk/cleanup.h"
#include "husk/path.h"
#include "io.h"

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0'
	       : c >= 'a' && c <= 'f' ? c - 'a' + 10
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10
				      : -1;
}

/* Percent-decodes [s, s+n) (and '+' as a space in a query, as Go's
 * url.QueryUnescape). NULL on a bad escape or no memory. */
static char *unescape(const char *s, size_t n, bool query)
{
	char *out = malloc(n + 1), *o = out;
	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '%') {
			int a = i + 1 < n ? hexval(s[i + 1]) : -1;
			int b = i + 2 < n ? hexval(s[i + 2]) : -1;
			if (a < 0 || b < 0) {
				free(out);
				return NULL;
			}
			*o++ = (char)(a * 16 + b);
			i += 2;
		} else {
			*o++ = query && s[i] == '+' ? ' ' : s[i];
		}
	}
	*o = '\0';
	return out;
}

static int add_arg(struct stdio_uri *u, char *a)
{
	char **n = realloc(u->args, (u->n_args + 2) * sizeof(*n));
	if (!n) {
		free(a);
		return -ENOMEM;
	}
	u->args = n;
	u->args[u->n_args++] = a;
	u->args[u->n_args] = NULL;
	return 0;
}

static bool has_key(const struct stdio_uri *u, const char *k)
{
	for (size_t i = 0; i + 1 < u->n_args; i += 2)
		if (strcmp(u->args[i], k) == 0)
			return true;
	return false;
}

/* binary: the query as arguments, "k v" per key; a key's first value only,
 * as NewBinaryCmd takes url.Query()'s first value (in query order here,
 * where Go's map order is random). */
static int parse_query(struct stdio_uri *u, const char *q, const char *uri, struct husk_err *err)
{
	while (*q) {
		size_t n = strcspn(q, "&;");
		const char *eq = memchr(q, '=', n);
		size_t kn = eq ? (size_t)(eq - q) : n;
		if (n) {
			char *k = unescape(q, kn, true);
			char *v = eq ? unescape(eq + 1, n - kn - 1, true) : strdup("");
			if (!k || !v) {
				free(k);
				free(v);
				return husk_err_set(err, -EINVAL, "log URI %s: bad query escape",
						    uri);
			}
			if (has_key(u, k)) {
				free(k);
				free(v);
			} else if (add_arg(u, k) < 0 || add_arg(u, v) < 0) {
				return husk_err_set(err, -ENOMEM, "log URI %s", uri);
			}
		}
		q += n;
		if (*q)
			q++;
	}
	return 0;
}

int stdio_uri_parse(const char *uri, struct stdio_uri *u, struct husk_err *err)
{
	*u = (struct stdio_uri){ .kind = STDIO_FIFO };
	const char *sep = strstr(uri, "://");
	const char *rest = uri;
	if (sep) {
		size_t sn = (size_t)(sep - uri);
		if (sn == 4 && strncmp(uri, "fifo", 4) == 0)
			u->kind = STDIO_FIFO;
		else if (sn == 4 && strncmp(uri, "file", 4) == 0)
			u->kind = STDIO_FILE;
		else if (sn == 6 && strncmp(uri, "binary", 6) == 0)
			u->kind = STDIO_BINARY;
		else
			return husk_err_set(err, -EINVAL,
					    "stdio %s: unknown scheme (fifo, file and binary are "
					    "known)",
					    uri);
		/* Skip the authority: the path starts at the next '/'. */
		rest = sep + 3;
		rest += strcspn(rest, "/?");
	}
	if (u->kind == STDIO_FIFO) { /* a FIFO path is taken as it is */
		u->path = strdup(rest);
		return u->path ? 0 : husk_err_set(err, -ENOMEM, "stdio %s", uri);
	}
	size_t pn = strcspn(rest, "?#");
	u->path = unescape(rest, pn, false);
	if (!u->path) {
		stdio_uri_free(u);
		return husk_err_set(err, -EINVAL, "log URI %s: bad path escape", uri);
	}
	if (u->path[0] != '/') {
		stdio_uri_free(u);
		return husk_err_set(err, -EINVAL, "log URI %s: the path must be absolute", uri);
	}
	if (u->kind == STDIO_BINARY && rest[pn] == '?') {
		_cleanup_free_ char *q = strndup(rest + pn + 1, strcspn(rest + pn + 1, "#"));
		int rc = q ? parse_query(u, q, uri, err) : husk_err_set(err, -ENOMEM, "%s", uri);
		if (rc < 0) {
			stdio_uri_free(u);
			return rc;
		}
	}
	return 0;
}

void stdio_uri_free(struct stdio_uri *u)
{
	free(u->path);
	for (size_t i = 0; i < u->n_args; i++)
		free(u->args[i]);
	free(u->args);
	*u = (struct stdio_uri){ 0 };
}

/* file://: containerd creates the directory and the file (0644), then
 * appends. */
int stdio_open_file(const char *path, struct husk_err *err)
{
	_cleanup_free_ char *dir = strdup(path);
	if (!dir)
		return husk_err_set(err, -ENOMEM, "log file %s", path);
	for (char *p = dir + 1; (p = strchr(p, '/')); p++) {
		*p = '\0';
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			return husk_err_sys(err, -errno, "log file %s: mkdir %s", path, dir);
		*p = '/';
	}
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	return fd < 0 ? husk_err_sys(err, -errno, "log file %s", path) : fd;
}

