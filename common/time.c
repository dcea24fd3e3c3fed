/* The clock for timeouts and durations: see husk/time.h. */
#include "husk/time.h"

#include <time.h>

uint64_t husk_monotonic_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
