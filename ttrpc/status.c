#include "ttrpc/status.h"

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
