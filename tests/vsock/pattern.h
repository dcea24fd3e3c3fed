/* Shared by the guest and host test programs of tests/vsock: a
 * deterministic byte stream (xorshift32) and the FNV-1a 64-bit hash, so
 * each side can check what the other sent without storing it. */
#ifndef VSOCK_TEST_PATTERN_H
#define VSOCK_TEST_PATTERN_H

#include <stddef.h>
#include <stdint.h>

struct pattern {
	uint32_t x;
};

static inline void pattern_init(struct pattern *p)
{
	p->x = 2463534242u;
}

static inline void pattern_fill(struct pattern *p, uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		p->x ^= p->x << 13;
		p->x ^= p->x >> 17;
		p->x ^= p->x << 5;
		buf[i] = (uint8_t)p->x;
	}
}

#define FNV_INIT 0xcbf29ce484222325ull

static inline uint64_t fnv_update(uint64_t h, const uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		h ^= buf[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

#endif
