/* Names derived from containerd's ids: short and stable, so that `delete`
 * finds what a dead shim left, and a pod's containers find its shim. */
#include <stdint.h>
#include <stdio.h>

#include "shim.h"

static uint64_t fnv64(uint64_t h, const char *s)
{
	for (; s && *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ull;
	return (h ^ '/') * 1099511628211ull;
}

void shim_vm_name(const char *ns, const char *id, char *out, size_t len)
{
	uint64_t h = fnv64(fnv64(1469598103934665603ull, ns), id);
	snprintf(out, len, "ctr-%016llx", (unsigned long long)h);
}

void shim_socket_name(const struct shim_opts *o, char *out, size_t len)
{
	uint64_t h = fnv64(fnv64(fnv64(1469598103934665603ull, o->address), o->namespace_),
			   o->group ? o->group : o->id);
	snprintf(out, len, "%016llx.sock", (unsigned long long)h);
}
