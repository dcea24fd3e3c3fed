/* libFuzzer target: husk-vsockd's split virtqueue against a hostile guest.
 *
 * Guest memory is three regions, each its own heap block (so ASan sees any
 * access outside them): A and B adjacent in guest-physical space, so a
 * buffer may straddle them, and C apart. The input writes the queue size,
 * the ring indexes, the descriptor table, the available ring and an
 * indirect table; descriptor addresses point into a region or just past
 * its end, or are taken raw. Then chains are popped until the ring is
 * empty or the queue is stopped as broken. Every popped chain must map only
 * guest memory, its lengths must add up, and its buffers are read and
 * written (as the daemon does with packets) before it is pushed back; the
 * writes may land on the rings themselves, as a guest's could. */
#include <endian.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../host-connector/vsockd/virtq.h"

#define REGION_A_GPA 0x10000ull
#define REGION_B_GPA 0x20000ull /* right after A */
#define REGION_C_GPA 0x100000ull
#define REGION_SIZE 0x10000u
#define UVA_BASE 0x7f0000000000ull
/* Ring offsets in region A; the indirect table ends where region B does,
 * so reading past it is an access ASan reports. */
#define DESC_OFF 0x000u
#define AVAIL_OFF 0x400u
#define USED_OFF 0x800u
#define INDIRECT_MAX 64
#define INDIRECT_OFF (REGION_SIZE - INDIRECT_MAX * 16u)

struct input {
	const uint8_t *p;
	size_t left;
};

static uint64_t take(struct input *in, unsigned bytes)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < bytes; i++) {
		v <<= 8;
		if (in->left) {
			v |= *in->p++;
			in->left--;
		}
	}
	return v;
}

static const uint64_t region_gpa[3] = { REGION_A_GPA, REGION_B_GPA, REGION_C_GPA };

/* A descriptor address: mostly inside a region or up to 256 bytes past its
 * end, sometimes whatever the input says. */
static uint64_t fuzz_addr(struct input *in)
{
	uint8_t how = (uint8_t)take(in, 1);
	uint64_t v = take(in, 8);
	if (how % 8 == 0)
		return v;
	return region_gpa[how % 3] + v % (REGION_SIZE + 256);
}

static void fill_desc(struct input *in, struct vring_desc *d, uint16_t next_mod)
{
	d->addr = htole64(fuzz_addr(in));
	uint32_t len = (uint32_t)take(in, 4);
	/* Mostly lengths a ring buffer could have; sometimes huge ones. */
	d->len = htole32((len & 0x80000000u) ? len : len % (2 * REGION_SIZE));
	d->flags = htole16((uint16_t)take(in, 2));
	/* Mostly an index in the table or just past it; sometimes far out. */
	uint16_t next = (uint16_t)take(in, 2);
	d->next = htole16((next & 0x8000) ? next & 0x7fff : next % next_mod);
}

static bool in_region(const struct vmem *m, const struct iovec *v)
{
	for (unsigned i = 0; i < m->n; i++) {
		const uint8_t *lo = m->r[i].hva, *hi = lo + m->r[i].size;
		const uint8_t *b = v->iov_base;
		if (b >= lo && b <= hi && v->iov_len <= (size_t)(hi - b))
			return true;
	}
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = { data, size };
	struct vmem m = { .n = 3 };
	for (unsigned i = 0; i < 3; i++) {
		m.r[i].gpa = region_gpa[i];
		m.r[i].size = REGION_SIZE;
		m.r[i].uva = UVA_BASE + region_gpa[i];
		m.r[i].hva = calloc(1, REGION_SIZE);
		if (!m.r[i].hva)
			abort();
	}
	uint8_t cfg = (uint8_t)take(&in, 1);
	uint16_t num = (uint16_t)(1u << (1 + (cfg >> 1) % 4)); /* 2 .. 16 */
	struct virtq vq = { .indirect = cfg & 1 };
	struct husk_err err = { 0 };
	uint8_t *a = m.r[0].hva;
	if (virtq_map(&vq, &m, num, UVA_BASE + REGION_A_GPA + DESC_OFF,
		      UVA_BASE + REGION_A_GPA + AVAIL_OFF, UVA_BASE + REGION_A_GPA + USED_OFF,
		      &err) < 0)
		abort(); /* a valid layout: mapping it must work */

	/* Where the device stands and how far the guest claims to be: up to
	 * num + 2 entries ahead (more than num is itself malformed). */
	vq.last_avail = (uint16_t)take(&in, 2);
	vq.used_idx = vq.last_avail;
	uint16_t ahead = (uint16_t)(take(&in, 1) % (num + 3u));
	struct vring_avail *avail = (struct vring_avail *)(a + AVAIL_OFF);
	avail->flags = htole16((uint16_t)take(&in, 1) & 1);
	avail->idx = htole16((uint16_t)(vq.last_avail + ahead));
	for (unsigned i = 0; i < num; i++) {
		uint16_t head = (uint16_t)take(&in, 2);
		avail->ring[i] = htole16((head & 0x8000) ? head & 0x7fff : head % (num + 1u));
	}
	struct vring_desc *desc = (struct vring_desc *)(a + DESC_OFF);
	for (unsigned i = 0; i < num; i++)
		fill_desc(&in, &desc[i], (uint16_t)(num + 1u));
	struct vring_desc *ind = (struct vring_desc *)((uint8_t *)m.r[1].hva + INDIRECT_OFF);
	unsigned n_ind = (unsigned)take(&in, 1) % (INDIRECT_MAX + 1);
	for (unsigned i = 0; i < n_ind; i++)
		fill_desc(&in, &ind[i], (uint16_t)(n_ind + 1u));
	/* The rest of the input is the bytes the device writes into chains. */
	const uint8_t *payload = in.p;
	size_t payload_len = in.left;

	static struct vq_chain c;
	for (unsigned pops = 0; pops < 2u * num + 4; pops++) {
		int r = virtq_pop(&vq, &m, &c, &err);
		if (r < 0) {
			if (!vq.broken || virtq_has_avail(&vq))
				abort(); /* an error must stop the queue */
			break;
		}
		if (r == 0)
			break;
		if (c.head >= num || c.n_out + c.n_in > VQ_MAX_IOV)
			abort();
		size_t out = 0, inl = 0;
		for (unsigned i = 0; i < c.n_out + c.n_in; i++) {
			if (!in_region(&m, &c.iov[i]))
				abort(); /* a chain mapped memory that is not the guest's */
			if (i < c.n_out)
				out += c.iov[i].iov_len;
			else
				inl += c.iov[i].iov_len;
		}
		if (out != c.out_len || inl != c.in_len)
			abort();
		/* Read what the guest sent, as a packet header and payload. */
		uint8_t hdr[44];
		size_t got = iov_to_buf(c.iov, c.n_out, 0, hdr, sizeof(hdr));
		if (got > sizeof(hdr) || got > c.out_len)
			abort();
		struct iovec slice[VQ_MAX_IOV];
		unsigned ns = iov_slice(c.iov, c.n_out, sizeof(hdr), 4096, slice, VQ_MAX_IOV);
		volatile uint8_t sink = 0;
		for (unsigned i = 0; i < ns; i++)
			for (size_t j = 0; j < slice[i].iov_len; j++)
				sink ^= ((uint8_t *)slice[i].iov_base)[j];
		(void)sink;
		/* Write into the device-writable part. */
		size_t put = iov_from_buf(c.iov + c.n_out, c.n_in, 0, payload, payload_len);
		if (put > c.in_len || put > payload_len)
			abort();
		virtq_push(&vq, c.head, (uint32_t)put);
		(void)virtq_need_notify(&vq);
	}
	for (unsigned i = 0; i < 3; i++)
		free(m.r[i].hva);
	return 0;
}
