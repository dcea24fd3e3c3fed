/* Guest networking basics: see init/net.h. */
#include "init/net.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>


/* RFC 1123 host name: dot-separated labels of [A-Za-z0-9-], each 1..63
 * characters and not starting or ending with '-'; 64 characters at most
 * (the kernel's __NEW_UTS_LEN). */
bool init_hostname_valid(const char *s)
{
	size_t len = strlen(s);
	if (len == 0 || len > 64)
		return false;
	size_t label = 0;
	for (size_t i = 0; i <= len; i++) {
		char c = s[i];
		if (c == '.' || c == '\0') {
			if (label == 0 || label > 63 || s[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '-';
		if (!ok || (label == 0 && c == '-'))
			return false;
		label++;
	}
	return true;
}

int init_set_hostname(const char *name, struct husk_err *err)
{
	if (!name || !init_hostname_valid(name))
		return husk_err_set(err, -EINVAL, "hostname \"%.64s\": not a valid host name",
				    name ? name : "(null)");
	if (sethostname(name, strlen(name)) < 0)
		return husk_err_sys(err, -errno, "sethostname %s", name);
	return 0;
}
