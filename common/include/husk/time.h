/* The clock for timeouts and durations. */
#ifndef HUSK_TIME_H
#define HUSK_TIME_H

#include <stdint.h>

/* CLOCK_MONOTONIC in nanoseconds: never steps back when the wall clock is
 * set, so deadlines computed from it hold. */
uint64_t husk_monotonic_ns(void);

#endif
