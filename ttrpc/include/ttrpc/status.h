/* gRPC status codes as carried by ttrpc's google.rpc.Status. */
#ifndef TTRPC_STATUS_H
#define TTRPC_STATUS_H

enum ttrpc_code {
	TTRPC_OK = 0,
	TTRPC_CANCELLED = 1,
	TTRPC_UNKNOWN = 2,
	TTRPC_INVALID_ARGUMENT = 3,
	TTRPC_DEADLINE_EXCEEDED = 4,
	TTRPC_NOT_FOUND = 5,
	TTRPC_ALREADY_EXISTS = 6,
	TTRPC_PERMISSION_DENIED = 7,
	TTRPC_RESOURCE_EXHAUSTED = 8,
	TTRPC_FAILED_PRECONDITION = 9,
	TTRPC_ABORTED = 10,
	TTRPC_OUT_OF_RANGE = 11,
	TTRPC_UNIMPLEMENTED = 12,
	TTRPC_INTERNAL = 13,
	TTRPC_UNAVAILABLE = 14,
	TTRPC_DATA_LOSS = 15,
	TTRPC_UNAUTHENTICATED = 16,
};

#define TTRPC_STATUS_MSG_MAX 512

/* The outcome of one call as the client sees it: the server's status, or a
 * local one (UNAVAILABLE when the connection is gone, DEADLINE_EXCEEDED when
 * the call's own deadline passed, RESOURCE_EXHAUSTED for an oversized
 * request). Messages longer than the buffer are truncated. */
struct ttrpc_status {
	int code;
	char message[TTRPC_STATUS_MSG_MAX];
};

/* "NOT_FOUND", "INTERNAL", ... ; "CODE(n)" for unknown values. */
const char *ttrpc_code_name(int code);

/* The one mapping between husk's negative errnos and status codes: a
 * server answering with a husk_err, a client handing one back. Each code
 * has one errno and back again: NOT_FOUND -ENOENT, FAILED_PRECONDITION
 * -EBUSY, INVALID_ARGUMENT -EINVAL, ALREADY_EXISTS -EEXIST,
 * DEADLINE_EXCEEDED -ETIMEDOUT, UNIMPLEMENTED -ENOSYS, RESOURCE_EXHAUSTED
 * -ENOSPC, PERMISSION_DENIED -EPERM; some more errnos map onto the same
 * codes (-ESRCH NOT_FOUND, -ENODEV FAILED_PRECONDITION, -ENOMEM
 * RESOURCE_EXHAUSTED, ...: status.c). UNAVAILABLE -EPIPE and CANCELLED
 * -ECANCELED go one way only: they describe the call (its connection
 * gone, it was dropped), so a server's own -EPIPE or -ECANCELED is
 * INTERNAL. Any other errno is INTERNAL, any other code -EIO; 0 is OK
 * and back. A positive errno is taken as its negative. */
int ttrpc_code_from_errno(int neg_errno);
int ttrpc_errno_from_code(int code);

#endif
