/* Unix stream socket helpers. Return an fd (CLOEXEC) or a negative errno. */
#ifndef HUSK_SOCK_H
#define HUSK_SOCK_H

#include "husk/error.h"

/* Binds and listens on `path`, replacing a stale socket file there. */
int husk_unix_listen(const char *path, struct husk_err *err);
int husk_unix_connect(const char *path, struct husk_err *err);

#endif
