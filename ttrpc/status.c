#include "ttrpc/status.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

const char *ttrpc_code_name(int code)
{
	static const char *const names[] = {
		"OK",		   "CANCELLED",		"UNKNOWN",	   "INVALID_ARGUMENT",
		"DEADLINE_EXCEEDED", "NOT_FOUND",		"ALREADY_EXISTS",  "PERMISSION_DENIED",
		"RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",	   "OUT_OF_RANGE",
		"UNIMPLEMENTED",	   "INTERNAL",		"UNAVAILABLE",	   "DATA_LOSS",
		"UNAUTHENTICATED",
	};
	if (code >= 0 && (unsigned)code < sizeof(names) / sizeof(names[0]))
		return names[code];
	static __thread char buf[24];
	snprintf(buf, sizeof(buf), "CODE(%d)", code);
	return buf;
}

/* The first row for a code is the errno its clients get back; the others
 * are errnos that mean the same to a caller. */
static const struct {
	int code;
	int err;
	/* Client side only. CANCELLED and UNAVAILABLE say what became of
	 * the call itself (dropped, its connection gone); a server's own
	 * -ECANCELED or -EPIPE (a hook that failed, a container's init that
	 * died early) is not that, and callers that see these codes give
	 * up on the peer. */
	bool reply_only;
} errno_map[] = {
	{ TTRPC_NOT_FOUND, ENOENT, false },
	{ TTRPC_NOT_FOUND, ESRCH, false }, /* no such process */
	/* The object is there but not in a state for this (running,
	 * mounted, not on a hotplug slot): husk.h documents -EBUSY. */
	{ TTRPC_FAILED_PRECONDITION, EBUSY, false },
	{ TTRPC_FAILED_PRECONDITION, ENODEV, false },
	{ TTRPC_INVALID_ARGUMENT, EINVAL, false },
	{ TTRPC_INVALID_ARGUMENT, ENAMETOOLONG, false },
	{ TTRPC_INVALID_ARGUMENT, E2BIG, false },
	{ TTRPC_ALREADY_EXISTS, EEXIST, false },
	{ TTRPC_DEADLINE_EXCEEDED, ETIMEDOUT, false },
	{ TTRPC_UNIMPLEMENTED, ENOSYS, false },
	{ TTRPC_UNIMPLEMENTED, EOPNOTSUPP, false },
	{ TTRPC_RESOURCE_EXHAUSTED, ENOSPC, false },
	{ TTRPC_RESOURCE_EXHAUSTED, ENOMEM, false },
	{ TTRPC_PERMISSION_DENIED, EPERM, false },
	{ TTRPC_PERMISSION_DENIED, EACCES, false },
	{ TTRPC_UNAVAILABLE, EPIPE, true },
	{ TTRPC_CANCELLED, ECANCELED, true },
	/* Whatever no row above says: a server's INTERNAL, a client's -EIO. */
	{ TTRPC_INTERNAL, EIO, false },
};

int ttrpc_code_from_errno(int neg_errno)
{
	int e = neg_errno < 0 ? -neg_errno : neg_errno;
	if (!e)
		return TTRPC_OK;
	for (size_t i = 0; i < sizeof(errno_map) / sizeof(errno_map[0]); i++)
		if (errno_map[i].err == e && !errno_map[i].reply_only)
			return errno_map[i].code;
	return TTRPC_INTERNAL;
}

int ttrpc_errno_from_code(int code)
{
	if (code == TTRPC_OK)
		return 0;
	for (size_t i = 0; i < sizeof(errno_map) / sizeof(errno_map[0]); i++)
		if (errno_map[i].code == code)
			return -errno_map[i].err;
	return -EIO;
}
