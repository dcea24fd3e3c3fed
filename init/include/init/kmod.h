/* Kernel module loading for the guest (libkmod).
 *
 * Modules come from /lib/modules/$(uname -r) in the initramfs, indexed by
 * depmod (initramfs/build.sh runs it): libkmod reads modules.dep.bin, not
 * the text modules.dep. The static libkmod of the musl build has no
 * decompression, so the modules must be plain .ko files (build.sh
 * decompresses .ko.xz / .ko.zst / .ko.gz when staging). */
#ifndef INIT_KMOD_H
#define INIT_KMOD_H

#include <stdbool.h>
#include <stddef.h>

#include "husk/error.h"

struct kmod_module;

/* Loads each module in `names` (module names or aliases, '-' and '_' alike)
 * with its dependencies first, like `modprobe NAME`: modules already live
 * or built into the kernel are skipped. Stops at the first failure; the
 * error names the module. n == 0 does nothing. When /lib/modules/<release>
 * does not exist, a module is accepted only if /sys/module/<name> shows it
 * already present (built in): otherwise -ENOENT naming the module. */
int init_load_modules(const char *const *names, size_t n, struct husk_err *err);

/* The same with libkmod rooted at `dir` (a /lib/modules/<release> tree;
 * NULL for the running kernel's), extra KMOD_PROBE_* `probe_flags`, and
 * `print_action` called for each module about to be inserted, dependencies
 * first. With KMOD_PROBE_DRY_RUN nothing is inserted: tests use it to see
 * the order on the host. */
int init_load_modules_at(const char *dir, const char *const *names, size_t n,
			 unsigned probe_flags,
			 void (*print_action)(struct kmod_module *m, bool install,
					      const char *options),
			 struct husk_err *err);

#endif
