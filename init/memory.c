/* Memory the guest gives back to the host. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>

#include "husk/cleanup.h"
#include "husk/file.h"
#include "init/memory.h"

#define PAGE_REPORTING_ORDER "/sys/module/page_reporting/parameters/page_reporting_order"

int init_set_page_reporting_order(unsigned order, struct husk_err *err)
{
	/* The balloon driver sets the order as it probes its device: built
	 * in, before init runs; as a module (a stock kernel), when the agent
	 * loads it, which is before this. Without a device nothing is
	 * reported and the write is harmless. */
	_cleanup_fd_ int fd = open(PAGE_REPORTING_ORDER, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : husk_err_sys(err, -errno, "open %s", PAGE_REPORTING_ORDER);
	char buf[16];
	int n = snprintf(buf, sizeof(buf), "%u\n", order);
	int r = husk_write_all(fd, buf, (size_t)n);
	return r < 0 ? husk_err_sys(err, r, "write %u to %s", order, PAGE_REPORTING_ORDER) : 0;
}
