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

#endif
