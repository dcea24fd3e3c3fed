/* Guest networking basics of PID 1. */
#ifndef INIT_NET_H
#define INIT_NET_H

#include <stdbool.h>

#include "husk/error.h"

/* Sets the kernel host name (UTS namespace of the caller) after checking
 * it is 1..64 characters of [A-Za-z0-9.-] in labels not starting or ending
 * with '-' (-EINVAL naming it otherwise). */
int init_set_hostname(const char *name, struct husk_err *err);

/* The check init_set_hostname makes. */
bool init_hostname_valid(const char *name);

#endif
