/* A shape from huskd's --shape words: comma-separated key=value, keys as
 * huskctl's options (docs/pool.md). What a key names is checked here;
 * what the VM cannot be (too large, files missing) is refused by its first
 * boot, and shows in `huskd status`. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "husk/cleanup.h"
#include "huskd.h"

#define DEFAULT_READY 1
/* A container's rootfs, its extra disks, a pod's later containers: the
 * shim asks for 1 disk plus 8 slots for a pod sandbox. */
#define DEFAULT_SLOTS 9

void shape_free(struct shape *s)
{
	if (!s)
		return;
	free((char *)s->cfg.kernel);
	free((char *)s->cfg.initrd);
	free((char *)s->cfg.vsockd);
	free((char *)s->cfg.vmm);
	free((char *)s->cfg.vmm_binary);
	free((char *)s->cfg.cmdline_extra);
	free(s);
}

static int parse_uint(const char *key, const char *v, unsigned min, unsigned max, unsigned *out,
		      struct husk_err *err)
{
	char *end;
	errno = 0;
	unsigned long n = strtoul(v, &end, 10);
	if (!*v || *end || errno || n < min || n > max)
		return husk_err_set(err, -EINVAL, "--shape %s=%s: want a number from %u to %u", key, v,
				    min, max);
	*out = (unsigned)n;
	return 0;
}

static int set_string(const char **field, const char *v)
{
	free((char *)*field);
	*field = strdup(v);
	return *field ? 0 : -ENOMEM;
}

static int set_key(struct shape *s, const char *key, const char *v, struct husk_err *err)
{
	struct husk_vm_config *c = &s->cfg;
	unsigned n;
	int r;
	if (!strcmp(key, "name")) {
		size_t l = strlen(v);
		if (l == 0 || l > HUSKD_NAME_MAX || strspn(v, "abcdefghijklmnopqrstuvwxyz"
							     "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") != l)
			return husk_err_set(err, -EINVAL, "--shape name=%s: want 1-%d of [A-Za-z0-9_.-]",
					    v, HUSKD_NAME_MAX);
		snprintf(s->name, sizeof(s->name), "%s", v);
		return 0;
	}
	if (!strcmp(key, "ready"))
		return parse_uint(key, v, 0, 64, &s->ready_target, err);
	if (!strcmp(key, "slots"))
		return parse_uint(key, v, 1, HUSK_HOTPLUG_MAX, &s->slots, err);
	if (!strcmp(key, "cpus") || !strcmp(key, "vcpus"))
		return parse_uint(key, v, 1, 255, &c->vcpus, err);
	if (!strcmp(key, "memory")) {
		uint64_t bytes;
		/* A plain number is MiB, as huskctl's --memory. */
		if (strspn(v, "0123456789") == strlen(v))
			return parse_uint(key, v, 64, 1024 * 1024, &c->memory_mib, err);
		if ((r = husk_parse_size(v, &bytes, err)) < 0)
			return husk_err_wrap(err, "--shape memory");
		if (bytes < (64ull << 20) || bytes > (1ull << 40))
			return husk_err_set(err, -EINVAL, "--shape memory=%s: want 64M to 1T", v);
		c->memory_mib = (unsigned)(bytes >> 20);
		return 0;
	}
	if (!strcmp(key, "tcg-cache"))
		return parse_uint(key, v, 1, HUSK_TCG_CACHE_MAX, &c->tcg_cache_mib, err);
	if (!strcmp(key, "log-level")) {
		if ((r = parse_uint(key, v, 1, 7, &n, err)) < 0)
			return r;
		c->log_level = (int)n;
		return 0;
	}
	if (!strcmp(key, "warm-up")) {
		if ((r = parse_uint(key, v, 0, 1, &n, err)) < 0)
			return r;
		s->warm_up = n;
		return 0;
	}
	if (!strcmp(key, "debug-console") || !strcmp(key, "merge-memory")) {
		if ((r = parse_uint(key, v, 0, 1, &n, err)) < 0)
			return r;
		*(key[0] == 'd' ? &c->debug_console : &c->merge_memory) = n;
		return 0;
	}
	if (!strcmp(key, "accel"))
		return husk_accel_parse(v, &c->accel, err) < 0 ? husk_err_wrap(err, "--shape accel") : 0;
	if (!strcmp(key, "transport"))
		return husk_transport_parse(v, &c->transport, err) < 0 ?
			       husk_err_wrap(err, "--shape transport") :
			       0;
	const char **field = !strcmp(key, "kernel") ? &c->kernel :
			     !strcmp(key, "initrd") ? &c->initrd :
			     !strcmp(key, "vsockd") ? &c->vsockd :
			     !strcmp(key, "vmm")    ? &c->vmm :
			     !strcmp(key, "qemu")   ? &c->vmm_binary :
			     !strcmp(key, "cmdline") ? &c->cmdline_extra :
						      NULL;
	if (!field)
		return husk_err_set(err, -EINVAL,
				    "--shape: unknown key \"%s\" (want name, ready, kernel, initrd, "
				    "cpus, memory, slots, accel, transport, tcg-cache, warm-up, vsockd, "
				    "vmm, qemu, debug-console, merge-memory, log-level, cmdline)",
				    key);
	if (set_string(field, v) < 0)
		return husk_err_set(err, -ENOMEM, "--shape %s", key);
	return 0;
}

int shape_parse(const char *spec, struct shape **out, struct husk_err *err)
{
	struct shape *s = calloc(1, sizeof(*s));
	if (!s)
		return husk_err_set(err, -ENOMEM, "shape");
	snprintf(s->name, sizeof(s->name), "default");
	s->ready_target = DEFAULT_READY;
	s->slots = DEFAULT_SLOTS;
	_cleanup_free_ char *copy = strdup(spec ? spec : "");
	int r = copy ? 0 : husk_err_set(err, -ENOMEM, "shape");
	for (char *w = copy, *next; r == 0 && w && *w; w = next) {
		/* cmdline= takes the rest: a kernel command line has commas. */
		bool rest = !strncmp(w, "cmdline=", 8);
		next = rest ? NULL : strchr(w, ',');
		if (next)
			*next++ = '\0';
		char *eq = strchr(w, '=');
		if (!eq) {
			r = husk_err_set(err, -EINVAL, "--shape: \"%s\" is not key=value", w);
			break;
		}
		*eq = '\0';
		r = set_key(s, w, eq + 1, err);
	}
	if (r == 0 && !s->cfg.kernel && !(s->cfg.kernel = husk_default_path("kernel", err)))
		r = err->code ? err->code : -ENOMEM;
	if (r == 0 && !s->cfg.initrd && !(s->cfg.initrd = husk_default_path("initrd", err)))
		r = err->code ? err->code : -ENOMEM;
	s->cfg.hotplug_slots = s->slots;
	if (r == 0 && (r = husk_pool_shape(&s->cfg, s->key, sizeof(s->key), NULL, err)) < 0)
		husk_err_wrap(err, "shape %s", s->name);
	if (r < 0) {
		shape_free(s);
		return r;
	}
	*out = s;
	return 0;
}
