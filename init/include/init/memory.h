/* The guest's memory as the host sees it: what a VM gives back. */
#ifndef INIT_MEMORY_H
#define INIT_MEMORY_H

#include "husk/error.h"

/* Free blocks of 2^order pages are reported to the host (virtio-balloon
 * free page reporting), which drops them from the VM's memory. The kernel
 * picks its pageblock order (4 MiB here), which leaves the memory freed
 * at boot, in smaller pieces, on the host; measured per order in
 * docs/performance.md. */
#define INIT_PAGE_REPORTING_ORDER 6

/* Sets the guest kernel's page reporting order. Returns 0 without doing
 * anything when the kernel has no page reporting (no parameter file);
 * with page reporting but no balloon device the write is harmless. A
 * negative errno, with `err` naming the file, when the write fails. */
int init_set_page_reporting_order(unsigned order, struct husk_err *err);

#endif
