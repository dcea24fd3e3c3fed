/* The husk.test.Echo service (proto/test/echo.proto) served by libttrpc,
 * shared by the unit tests, the interop server and the benchmark. */
#ifndef HUSK_TEST_ECHO_SERVICE_H
#define HUSK_TEST_ECHO_SERVICE_H

#include "husk/error.h"
#include "ttrpc/server.h"

/* Caller-owned; must outlive the server. */
struct echo_service {
	struct ev_loop *loop;
	unsigned cancelled; /* deferred calls cancelled (deadline or disconnect) */
};

int echo_service_register(struct ttrpc_server *srv, struct echo_service *svc,
			  struct husk_err *err);

#endif
