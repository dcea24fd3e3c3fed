/* Kernel module loading: see init/kmod.h. */
#include "init/kmod.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>

#include <libkmod.h>

#include "husk/path.h"
#include "init/console.h"

__attribute__((format(printf, 6, 0)))
static void kmod_log_fn(void *data, int priority, const char *file, int line, const char *fn,
			const char *format, va_list args)
{
	(void)data, (void)file, (void)line, (void)fn;
	/* libkmod says "context released" and the like at info: only its
	 * errors and warnings matter to a guest's log. */
	if (priority > INIT_LOG_WARNING)
		priority = INIT_LOG_DEBUG;
	if (!init_log_enabled(priority))
		return;
	char msg[512];
	vsnprintf(msg, sizeof(msg), format, args);
	init_log(priority, "libkmod: %s", msg);
}

/* Built into the kernel, or loaded already: /sys/module/<name> exists for
 * every loaded module and for built-in ones with parameters. */
static bool module_present(const char *name)
{
	char path[256];
	char norm[128];
	snprintf(norm, sizeof(norm), "%s", name);
	for (char *c = norm; *c; c++)
		if (*c == '-')
			*c = '_';
	if (husk_path_fmt(path, sizeof(path), "/sys/module/%s", norm) < 0)
		return false;
	struct stat st;
	return stat(path, &st) == 0;
}

static int load_one(struct kmod_ctx *ctx, const char *dir, const char *name, unsigned flags,
		    void (*print_action)(struct kmod_module *, bool, const char *),
		    struct husk_err *err)
{
	struct kmod_list *list = NULL;
	int r = kmod_module_new_from_lookup(ctx, name, &list);
	if (r < 0)
		return husk_err_sys(err, r, "module %s: lookup in %s", name, dir);
	if (!list) {
		if (module_present(name))
			return 0;
		return husk_err_set(err, -ENOENT, "module %s: not found in %s (modules.dep.bin)",
				    name, dir);
	}
	struct kmod_list *l;
	kmod_list_foreach(l, list) {
		struct kmod_module *mod = kmod_module_get_module(l);
		/* Default modprobe semantics: skip what is live or built in;
		 * KMOD_PROBE_IGNORE_LOADED would try to insert built-in
		 * modules and fail. */
		r = kmod_module_probe_insert_module(mod, flags, NULL, NULL, NULL, print_action);
		if (r < 0) {
			const char *path = kmod_module_get_path(mod);
			husk_err_sys(err, r, "module %s: insert %s", name,
				     path ? path : kmod_module_get_name(mod));
		} else if (r > 0) {
			/* Stopped by a flag (blacklist): not loaded. */
			husk_err_set(err, -EPERM, "module %s: refused by probe flags (%d)", name, r);
			r = -EPERM;
		} else {
			init_log(INIT_LOG_DEBUG, "module %s: loaded", kmod_module_get_name(mod));
		}
		kmod_module_unref(mod);
		if (r < 0)
			break;
	}
	kmod_module_unref_list(list);
	return r;
}

int init_load_modules_at(const char *dir, const char *const *names, size_t n,
			 unsigned probe_flags,
			 void (*print_action)(struct kmod_module *m, bool install,
					      const char *options),
			 struct husk_err *err)
{
	if (n == 0)
		return 0;

	char def[256];
	if (!dir) {
		struct utsname u;
		if (uname(&u) < 0)
			return husk_err_sys(err, -errno, "uname");
		if (husk_path_fmt(def, sizeof(def), "/lib/modules/%s", u.release) < 0)
			return husk_err_set(err, -ENAMETOOLONG, "kernel release %s too long",
					    u.release);
		dir = def;
	}
	struct stat st;
	if (stat(dir, &st) < 0) {
		/* A kernel with everything built in needs no module tree. */
		for (size_t i = 0; i < n; i++)
			if (!module_present(names[i]))
				return husk_err_set(err, -ENOENT,
						    "module %s: not built in, and %s does not exist",
						    names[i], dir);
		return 0;
	}

	/* Only the directory is ours to choose: no /etc/modprobe.d exists in
	 * the guest, so the default configuration paths find nothing. */
	struct kmod_ctx *ctx = kmod_new(dir, NULL);
	if (!ctx)
		return husk_err_set(err, -ENOMEM, "kmod_new(%s) failed", dir);
	kmod_set_log_fn(ctx, kmod_log_fn, NULL);
	kmod_set_log_priority(ctx, init_log_get_level());

	int r = 0;
	for (size_t i = 0; i < n && r == 0; i++)
		r = load_one(ctx, dir, names[i], probe_flags, print_action, err);
	kmod_unref(ctx);
	return r;
}

int init_load_modules(const char *const *names, size_t n, struct husk_err *err)
{
	return init_load_modules_at(NULL, names, n, 0, NULL, err);
}
