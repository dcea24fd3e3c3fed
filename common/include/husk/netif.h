/* Network interface basics shared by the guest's PID 1 and the jail. */
#ifndef HUSK_NETIF_H
#define HUSK_NETIF_H

#include "husk/error.h"

/* Brings "lo" of the caller's network namespace up (the kernel then adds
 * 127.0.0.1/8 and ::1 itself). Nothing to do when it is up already. Needs
 * CAP_NET_ADMIN over that namespace. */
int husk_loopback_up(struct husk_err *err);

#endif
