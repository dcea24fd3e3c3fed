/* Unit tests for husk-vsockd's guest memory translation and split
 * virtqueue: chain layouts the Linux driver uses, indirect tables, and every
 * kind of malformed ring or chain a guest could write (out-of-range
 * addresses and indexes, overflowing lengths, loops), which must stop the
 * queue without touching memory outside the guest's. */
#include <endian.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../host-connector/vsockd/virtq.h"

/* The fake guest: MEM_SIZE bytes at guest-physical GPA_BASE, which the
 * "front-end" sees at UVA_BASE. Rings at fixed offsets, data above. */
#define MEM_SIZE (1u << 20)
#define GPA_BASE 0x100000ull
#define UVA_BASE 0x7f0000000000ull
#define DESC_OFF 0x0000u
#define AVAIL_OFF 0x1000u
#define USED_OFF 0x2000u
#define INDIRECT_OFF 0x4000u
#define DATA_OFF 0x10000u
#define QSIZE 8

struct fx {
	uint8_t *mem;
	struct vmem vm;
	struct virtq vq;
	struct vq_chain chain;
	uint16_t avail_idx;
};

static uint64_t gpa(uint32_t off)
{
	return GPA_BASE + off;
}

static struct vring_desc *desc_at(struct fx *f, uint32_t table_off, unsigned i)
{
	return (struct vring_desc *)(f->mem + table_off) + i;
}

static void set_desc_in(struct fx *f, uint32_t table_off, unsigned i, uint64_t addr,
			uint32_t len, uint16_t flags, uint16_t next)
{
	struct vring_desc *d = desc_at(f, table_off, i);
	d->addr = htole64(addr);
	d->len = htole32(len);
	d->flags = htole16(flags);
	d->next = htole16(next);
}

static void set_desc(struct fx *f, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	set_desc_in(f, DESC_OFF, i, addr, len, flags, next);
}

static struct vring_avail *avail(struct fx *f)
{
	return (struct vring_avail *)(f->mem + AVAIL_OFF);
}

static struct vring_used *used(struct fx *f)
{
	return (struct vring_used *)(f->mem + USED_OFF);
}

static void post(struct fx *f, uint16_t head)
{
	avail(f)->ring[f->avail_idx % QSIZE] = htole16(head);
	f->avail_idx++;
	avail(f)->idx = htole16(f->avail_idx);
}

static int setup_n(void **state, unsigned nregions)
{
	struct fx *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	f->mem = aligned_alloc(4096, MEM_SIZE);
	assert_non_null(f->mem);
	memset(f->mem, 0, MEM_SIZE);
	/* One region, or the same bytes as two regions meeting half way. */
	uint32_t part = MEM_SIZE / nregions;
	for (unsigned i = 0; i < nregions; i++)
		f->vm.r[i] = (struct vmem_region){
			.gpa = GPA_BASE + (uint64_t)i * part,
			.size = part,
			.uva = UVA_BASE + (uint64_t)i * part,
			.hva = f->mem + (size_t)i * part,
		};
	f->vm.n = nregions;
	struct husk_err err = { 0 };
	assert_int_equal(virtq_map(&f->vq, &f->vm, QSIZE, UVA_BASE + DESC_OFF,
				   UVA_BASE + AVAIL_OFF, UVA_BASE + USED_OFF, &err),
			 0);
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_n(state, 1);
}

static int setup_two_regions(void **state)
{
	return setup_n(state, 2);
}

static int teardown(void **state)
{
	struct fx *f = *state;
	free(f->mem);
	free(f);
	return 0;
}

static int pop(struct fx *f, struct husk_err *err)
{
	return virtq_pop(&f->vq, &f->vm, &f->chain, err);
}

/* A broken queue yields nothing more, whatever the guest posts. */
static void assert_broken(struct fx *f)
{
	assert_true(f->vq.broken);
	assert_false(virtq_has_avail(&f->vq));
	set_desc(f, 0, gpa(DATA_OFF), 64, 0, 0);
	post(f, 0);
	assert_int_equal(pop(f, NULL), 0);
}

/* ---- memory translation ------------------------------------------------------ */

static void test_vmem_bounds(void **state)
{
	struct fx *f = *state;
	assert_ptr_equal(vmem_gpa(&f->vm, GPA_BASE, MEM_SIZE), f->mem);
	assert_ptr_equal(vmem_gpa(&f->vm, GPA_BASE + MEM_SIZE - 1, 1), f->mem + MEM_SIZE - 1);
	assert_null(vmem_gpa(&f->vm, GPA_BASE + MEM_SIZE - 1, 2));
	assert_null(vmem_gpa(&f->vm, GPA_BASE + MEM_SIZE, 1));
	assert_null(vmem_gpa(&f->vm, GPA_BASE - 1, 1));
	assert_null(vmem_gpa(&f->vm, GPA_BASE, (uint64_t)MEM_SIZE + 1));
	/* Lengths that would wrap the address space. */
	assert_null(vmem_gpa(&f->vm, GPA_BASE + 16, UINT64_MAX));
	assert_null(vmem_gpa(&f->vm, UINT64_MAX, 2));
	assert_ptr_equal(vmem_uva(&f->vm, UVA_BASE + 8, 8), f->mem + 8);
	assert_null(vmem_uva(&f->vm, GPA_BASE, 8));

	struct iovec iov[4];
	unsigned n = 0;
	assert_int_equal(vmem_gpa_iov(&f->vm, GPA_BASE + MEM_SIZE - 4, 8, iov, 4, &n), -EFAULT);
	n = 0;
	assert_int_equal(vmem_gpa_iov(&f->vm, GPA_BASE + 4, 8, iov, 4, &n), 0);
	assert_int_equal(n, 1);
	assert_ptr_equal(iov[0].iov_base, f->mem + 4);
	assert_int_equal(iov[0].iov_len, 8);
}

static void test_vmem_split_regions(void **state)
{
	struct fx *f = *state;
	uint64_t mid = GPA_BASE + MEM_SIZE / 2;
	/* Not contiguous in one region... */
	assert_null(vmem_gpa(&f->vm, mid - 4, 8));
	/* ...but a buffer may straddle two: it becomes two iovecs. */
	struct iovec iov[4];
	unsigned n = 0;
	assert_int_equal(vmem_gpa_iov(&f->vm, mid - 4, 8, iov, 4, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(iov[0].iov_len, 4);
	assert_int_equal(iov[1].iov_len, 4);
	assert_ptr_equal(iov[1].iov_base, f->mem + MEM_SIZE / 2);
	n = 0;
	assert_int_equal(vmem_gpa_iov(&f->vm, mid - 4, 8, iov, 1, &n), -E2BIG);

	set_desc(f, 0, mid - 40, 100, 0, 0);
	post(f, 0);
	assert_int_equal(pop(f, NULL), 1);
	assert_int_equal(f->chain.n_out, 2);
	assert_int_equal(f->chain.out_len, 100);
}

/* ---- ring setup ------------------------------------------------------------------ */

static void test_map_rejects(void **state)
{
	struct fx *f = *state;
	struct virtq vq = { 0 };
	struct husk_err err = { 0 };
	assert_int_equal(virtq_map(&vq, &f->vm, 6, UVA_BASE, UVA_BASE + AVAIL_OFF,
				   UVA_BASE + USED_OFF, &err),
			 -EINVAL);
	assert_non_null(strstr(err.msg, "power of two"));
	assert_int_equal(virtq_map(&vq, &f->vm, 0, UVA_BASE, UVA_BASE + AVAIL_OFF,
				   UVA_BASE + USED_OFF, &err),
			 -EINVAL);
	/* Used ring running past the end of guest memory. */
	assert_int_equal(virtq_map(&vq, &f->vm, 256, UVA_BASE, UVA_BASE + AVAIL_OFF,
				   UVA_BASE + MEM_SIZE - 64, &err),
			 -EFAULT);
	assert_non_null(strstr(err.msg, "not inside guest memory"));
	/* A ring at an address the front-end never described. */
	assert_int_equal(virtq_map(&vq, &f->vm, 8, 0x1000, UVA_BASE + AVAIL_OFF,
				   UVA_BASE + USED_OFF, &err),
			 -EFAULT);
	assert_int_equal(virtq_map(&vq, &f->vm, 8, UVA_BASE + 8, UVA_BASE + AVAIL_OFF,
				   UVA_BASE + USED_OFF, &err),
			 -EINVAL);
	assert_non_null(strstr(err.msg, "misaligned"));
	assert_int_equal(vq.num, 0);
}

/* ---- chain layouts ------------------------------------------------------------------ */

static void test_empty(void **state)
{
	struct fx *f = *state;
	assert_false(virtq_has_avail(&f->vq));
	assert_int_equal(pop(f, NULL), 0);
	struct virtq unset = { 0 };
	assert_int_equal(virtq_pop(&unset, &f->vm, &f->chain, NULL), 0);
}

static void test_single_desc(void **state)
{
	struct fx *f = *state;
	/* Header and payload in one readable buffer (newer Linux tx). */
	memcpy(f->mem + DATA_OFF, "header+payload", 14);
	set_desc(f, 3, gpa(DATA_OFF), 44 + 100, 0, 0);
	post(f, 3);
	assert_true(virtq_has_avail(&f->vq));
	assert_int_equal(pop(f, NULL), 1);
	assert_int_equal(f->chain.head, 3);
	assert_int_equal(f->chain.n_out, 1);
	assert_int_equal(f->chain.n_in, 0);
	assert_int_equal(f->chain.out_len, 144);
	assert_ptr_equal(f->chain.iov[0].iov_base, f->mem + DATA_OFF);
	assert_int_equal(pop(f, NULL), 0);
}

static void test_split_three(void **state)
{
	struct fx *f = *state;
	/* Header alone, then the payload split over two buffers. */
	set_desc(f, 0, gpa(DATA_OFF), 44, VRING_DESC_F_NEXT, 5);
	set_desc(f, 5, gpa(DATA_OFF + 0x1000), 10, VRING_DESC_F_NEXT, 2);
	set_desc(f, 2, gpa(DATA_OFF + 0x3000), 4000, 0, 0);
	post(f, 0);
	assert_int_equal(pop(f, NULL), 1);
	assert_int_equal(f->chain.n_out, 3);
	assert_int_equal(f->chain.out_len, 44 + 10 + 4000);
	assert_ptr_equal(f->chain.iov[1].iov_base, f->mem + DATA_OFF + 0x1000);
	assert_ptr_equal(f->chain.iov[2].iov_base, f->mem + DATA_OFF + 0x3000);
}

static void test_rx_layout(void **state)
{
	struct fx *f = *state;
	/* Linux 6.1 rx: a writable header buffer and a writable 4 KiB one. */
	set_desc(f, 1, gpa(DATA_OFF), 44, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 2);
	set_desc(f, 2, gpa(DATA_OFF + 64), 4096, VRING_DESC_F_WRITE, 0);
	post(f, 1);
	assert_int_equal(pop(f, NULL), 1);
	assert_int_equal(f->chain.n_out, 0);
	assert_int_equal(f->chain.n_in, 2);
	assert_int_equal(f->chain.in_len, 44 + 4096);
}

static void test_readable_then_writable(void **state)
{
	struct fx *f = *state;
	set_desc(f, 0, gpa(DATA_OFF), 16, VRING_DESC_F_NEXT, 1);
	set_desc(f, 1, gpa(DATA_OFF + 16), 16, VRING_DESC_F_WRITE, 0);
	post(f, 0);
	assert_int_equal(pop(f, NULL), 1);
	assert_int_equal(f->chain.n_out, 1);
	assert_int_equal(f->chain.n_in, 1);
	assert_ptr_equal(f->chain.iov[1].iov_base, f->mem + DATA_OFF + 16);
}

static void test_zero_length_desc(void **state)
{
	struct fx *f = *state;
	set_desc(f, 0, gpa(DATA_OFF), 0, VRING_DESC_F_NEXT, 1);
	set_desc(f, 1, gpa(DATA_OFF), 44, 0, 0);
	post(f, 0);
	assert_int_equal(pop(f, NULL), 1);
	assert_int_equal(f->chain.n_out, 1);
	assert_int_equal(f->chain.out_len, 44);
}

static void test_indirect(void **state)
{
	struct fx *f = *state;
	f->vq.indirect = true;
	set_desc_in(f, INDIRECT_OFF, 0, gpa(DATA_OFF), 44, VRING_DESC_F_NEXT, 2);
	set_desc_in(f, INDIRECT_OFF, 2, gpa(DATA_OFF + 0x100), 500, VRING_DESC_F_NEXT, 1);
	set_desc_in(f, INDIRECT_OFF, 1, gpa(DATA_OFF + 0x800), 20, VRING_DESC_F_WRITE, 0);
	set_desc(f, 4, gpa(INDIRECT_OFF), 3 * sizeof(struct vring_desc), VRING_DESC_F_INDIRECT,
		 0);
	post(f, 4);
	assert_int_equal(pop(f, NULL), 1);
	assert_int_equal(f->chain.head, 4);
	assert_int_equal(f->chain.n_out, 2);
	assert_int_equal(f->chain.n_in, 1);
	assert_int_equal(f->chain.out_len, 544);
	assert_int_equal(f->chain.in_len, 20);
}

static void test_indirect_not_negotiated(void **state)
{
	struct fx *f = *state;
	set_desc_in(f, INDIRECT_OFF, 0, gpa(DATA_OFF), 44, 0, 0);
	set_desc(f, 0, gpa(INDIRECT_OFF), sizeof(struct vring_desc), VRING_DESC_F_INDIRECT, 0);
	post(f, 0);
	struct husk_err err = { 0 };
	assert_int_equal(pop(f, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "indirect"));
	assert_broken(f);
}

static void test_indirect_nested(void **state)
{
	struct fx *f = *state;
	f->vq.indirect = true;
	set_desc_in(f, INDIRECT_OFF, 0, gpa(INDIRECT_OFF), 16, VRING_DESC_F_INDIRECT, 0);
	set_desc(f, 0, gpa(INDIRECT_OFF), sizeof(struct vring_desc), VRING_DESC_F_INDIRECT, 0);
	post(f, 0);
	assert_int_equal(pop(f, NULL), -EINVAL);
	assert_broken(f);
}

static void test_indirect_with_next(void **state)
{
	struct fx *f = *state;
	f->vq.indirect = true;
	set_desc_in(f, INDIRECT_OFF, 0, gpa(DATA_OFF), 44, 0, 0);
	set_desc(f, 0, gpa(INDIRECT_OFF), 16, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, 1);
	set_desc(f, 1, gpa(DATA_OFF), 44, 0, 0);
	post(f, 0);
	assert_int_equal(pop(f, NULL), -EINVAL);
	assert_broken(f);
}

static void test_indirect_bad_length(void **state)
{
	struct fx *f = *state;
	f->vq.indirect = true;
	set_desc(f, 0, gpa(INDIRECT_OFF), 24, VRING_DESC_F_INDIRECT, 0);
	post(f, 0);
	struct husk_err err = { 0 };
	assert_int_equal(pop(f, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "bad length"));
	assert_broken(f);
}

static void test_indirect_out_of_memory(void **state)
{
	struct fx *f = *state;
	f->vq.indirect = true;
	set_desc(f, 0, gpa(MEM_SIZE - 16), 32, VRING_DESC_F_INDIRECT, 0);
	post(f, 0);
	assert_int_equal(pop(f, NULL), -EINVAL);
	assert_broken(f);
}

static void test_indirect_loop(void **state)
{
	struct fx *f = *state;
	f->vq.indirect = true;
	set_desc_in(f, INDIRECT_OFF, 0, gpa(DATA_OFF), 4, VRING_DESC_F_NEXT, 1);
	set_desc_in(f, INDIRECT_OFF, 1, gpa(DATA_OFF), 4, VRING_DESC_F_NEXT, 0);
	set_desc(f, 0, gpa(INDIRECT_OFF), 32, VRING_DESC_F_INDIRECT, 0);
	post(f, 0);
	struct husk_err err = { 0 };
	assert_int_equal(pop(f, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "loops"));
	assert_broken(f);
}

static void test_too_many_buffers(void **state)
{
	struct fx *f = *state;
	f->vq.indirect = true;
	/* A legal but absurd chain: more buffers than VQ_MAX_IOV. */
	unsigned n = VQ_MAX_IOV + 1;
	for (unsigned i = 0; i < n; i++)
		set_desc_in(f, INDIRECT_OFF, i, gpa(DATA_OFF + i), 1,
			    i + 1 < n ? VRING_DESC_F_NEXT : 0, (uint16_t)(i + 1));
	set_desc(f, 0, gpa(INDIRECT_OFF), n * sizeof(struct vring_desc), VRING_DESC_F_INDIRECT,
		 0);
	post(f, 0);
	struct husk_err err = { 0 };
	assert_int_equal(pop(f, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "too many buffers"));
}

/* ---- malformed rings and chains ------------------------------------------------------ */

static void test_addr_out_of_range(void **state)
{
	struct fx *f = *state;
	set_desc(f, 0, 0x1000, 44, 0, 0);
	post(f, 0);
	struct husk_err err = { 0 };
	assert_int_equal(pop(f, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "not in guest memory"));
	assert_broken(f);
}

static void test_len_past_end(void **state)
{
	struct fx *f = *state;
	set_desc(f, 0, gpa(MEM_SIZE - 8), 16, 0, 0);
	post(f, 0);
	assert_int_equal(pop(f, NULL), -EINVAL);
	assert_broken(f);
}

static void test_len_overflow(void **state)
{
	struct fx *f = *state;
	/* addr + len wraps past 2^64 back into guest memory. */
	set_desc(f, 0, UINT64_MAX - 0xff, 0x1000, 0, 0);
	post(f, 0);
	assert_int_equal(pop(f, NULL), -EINVAL);
	assert_broken(f);
}

static void test_len_huge(void **state)
{
	struct fx *f = *state;
	set_desc(f, 0, gpa(DATA_OFF), UINT32_MAX, VRING_DESC_F_WRITE, 0);
	post(f, 0);
	assert_int_equal(pop(f, NULL), -EINVAL);
	assert_broken(f);
}

static void test_loop(void **state)
{
	struct fx *f = *state;
	set_desc(f, 0, gpa(DATA_OFF), 4, VRING_DESC_F_NEXT, 1);
	set_desc(f, 1, gpa(DATA_OFF), 4, VRING_DESC_F_NEXT, 2);
	set_desc(f, 2, gpa(DATA_OFF), 4, VRING_DESC_F_NEXT, 0);
	post(f, 0);
	struct husk_err err = { 0 };
	assert_int_equal(pop(f, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "loops"));
	assert_broken(f);
}

static void test_self_loop(void **state)
{
	struct fx *f = *state;
	set_desc(f, 7, gpa(DATA_OFF), 4, VRING_DESC_F_NEXT, 7);
	post(f, 7);
	assert_int_equal(pop(f, NULL), -EINVAL);
	assert_broken(f);
}

static void test_next_out_of_range(void **state)
{
	struct fx *f = *state;
	set_desc(f, 0, gpa(DATA_OFF), 4, VRING_DESC_F_NEXT, QSIZE);
	post(f, 0);
	struct husk_err err = { 0 };
	assert_int_equal(pop(f, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "next descriptor index out of range"));
	assert_broken(f);
}

static void test_head_out_of_range(void **state)
{
	struct fx *f = *state;
	post(f, 0xffff);
	struct husk_err err = { 0 };
	assert_int_equal(pop(f, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "head index out of range"));
	assert_broken(f);
}

static void test_avail_idx_runaway(void **state)
{
	struct fx *f = *state;
	avail(f)->idx = htole16(QSIZE + 1);
	struct husk_err err = { 0 };
	assert_int_equal(pop(f, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "runs ahead"));
	assert_true(f->vq.broken);
}

static void test_writable_then_readable(void **state)
{
	struct fx *f = *state;
	set_desc(f, 0, gpa(DATA_OFF), 16, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	set_desc(f, 1, gpa(DATA_OFF + 16), 16, 0, 0);
	post(f, 0);
	assert_int_equal(pop(f, NULL), -EINVAL);
	assert_broken(f);
}

static void test_remap_clears_broken(void **state)
{
	struct fx *f = *state;
	post(f, 0xffff);
	assert_int_equal(pop(f, NULL), -EINVAL);
	assert_true(f->vq.broken);
	/* Setting the ring up again (a device reset) starts afresh. */
	f->vq.last_avail = f->avail_idx;
	assert_int_equal(virtq_map(&f->vq, &f->vm, QSIZE, UVA_BASE + DESC_OFF,
				   UVA_BASE + AVAIL_OFF, UVA_BASE + USED_OFF, NULL),
			 0);
	assert_false(f->vq.broken);
	set_desc(f, 0, gpa(DATA_OFF), 4, 0, 0);
	post(f, 0);
	assert_int_equal(pop(f, NULL), 1);
}

/* ---- used ring and notification ----------------------------------------------------- */

static void test_push_and_notify(void **state)
{
	struct fx *f = *state;
	assert_false(virtq_need_notify(&f->vq));
	set_desc(f, 2, gpa(DATA_OFF), 64, VRING_DESC_F_WRITE, 0);
	set_desc(f, 6, gpa(DATA_OFF + 64), 64, VRING_DESC_F_WRITE, 0);
	post(f, 2);
	post(f, 6);
	assert_int_equal(pop(f, NULL), 1);
	virtq_push(&f->vq, f->chain.head, 50);
	assert_int_equal(pop(f, NULL), 1);
	virtq_push(&f->vq, f->chain.head, 7);
	assert_int_equal(le16toh(used(f)->idx), 2);
	assert_int_equal(le32toh(used(f)->ring[0].id), 2);
	assert_int_equal(le32toh(used(f)->ring[0].len), 50);
	assert_int_equal(le32toh(used(f)->ring[1].id), 6);
	assert_int_equal(le32toh(used(f)->ring[1].len), 7);
	assert_true(virtq_need_notify(&f->vq));
	/* Once per batch. */
	assert_false(virtq_need_notify(&f->vq));

	/* The guest asked for no interrupts. */
	avail(f)->flags = htole16(VRING_AVAIL_F_NO_INTERRUPT);
	post(f, 2);
	assert_int_equal(pop(f, NULL), 1);
	virtq_push(&f->vq, f->chain.head, 1);
	assert_false(virtq_need_notify(&f->vq));
}

static void test_used_wraps(void **state)
{
	struct fx *f = *state;
	set_desc(f, 0, gpa(DATA_OFF), 64, VRING_DESC_F_WRITE, 0);
	/* 16-bit indexes wrap; ring positions are taken modulo the size. */
	f->avail_idx = 0xfffe;
	f->vq.last_avail = 0xfffe;
	f->vq.used_idx = 0xfffe;
	for (int i = 0; i < 4; i++) {
		post(f, 0);
		assert_int_equal(pop(f, NULL), 1);
		virtq_push(&f->vq, 0, 1);
	}
	assert_int_equal(le16toh(used(f)->idx), 2);
	assert_int_equal(f->vq.last_avail, 2);
}

static void test_unpop(void **state)
{
	struct fx *f = *state;
	set_desc(f, 3, gpa(DATA_OFF), 64, VRING_DESC_F_WRITE, 0);
	set_desc(f, 4, gpa(DATA_OFF), 64, VRING_DESC_F_WRITE, 0);
	post(f, 3);
	post(f, 4);
	assert_int_equal(pop(f, NULL), 1);
	assert_int_equal(f->chain.head, 3);
	virtq_unpop(&f->vq);
	assert_int_equal(pop(f, NULL), 1);
	assert_int_equal(f->chain.head, 3);
	assert_int_equal(pop(f, NULL), 1);
	assert_int_equal(f->chain.head, 4);
}

/* ---- iovec helpers -------------------------------------------------------------------- */

static void test_iov_helpers(void **state)
{
	(void)state;
	char a[5] = "abcde", b[3] = "fgh", c[4] = "ijkl";
	struct iovec iov[3] = { { a, 5 }, { b, 3 }, { c, 4 } };
	char out[16] = { 0 };
	assert_int_equal(iov_to_buf(iov, 3, 3, out, 6), 6);
	assert_memory_equal(out, "defghi", 6);
	assert_int_equal(iov_to_buf(iov, 3, 10, out, 16), 2);
	assert_memory_equal(out, "kl", 2);
	assert_int_equal(iov_to_buf(iov, 3, 12, out, 16), 0);

	assert_int_equal(iov_from_buf(iov, 3, 4, "XYZW", 4), 4);
	assert_memory_equal(a, "abcdX", 5);
	assert_memory_equal(b, "YZW", 3);

	struct iovec part[3];
	unsigned n = iov_slice(iov, 3, 6, 4, part, 3);
	assert_int_equal(n, 2);
	assert_ptr_equal(part[0].iov_base, b + 1);
	assert_int_equal(part[0].iov_len, 2);
	assert_ptr_equal(part[1].iov_base, c);
	assert_int_equal(part[1].iov_len, 2);
	assert_int_equal(iov_slice(iov, 3, 12, 4, part, 3), 0);
	assert_int_equal(iov_slice(iov, 3, 0, 100, part, 1), 1);
	assert_int_equal(part[0].iov_len, 5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_vmem_bounds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vmem_split_regions, setup_two_regions,
						teardown),
		cmocka_unit_test_setup_teardown(test_map_rejects, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty, setup, teardown),
		cmocka_unit_test_setup_teardown(test_single_desc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_split_three, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_layout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_readable_then_writable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_zero_length_desc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_indirect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_indirect_not_negotiated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_indirect_nested, setup, teardown),
		cmocka_unit_test_setup_teardown(test_indirect_with_next, setup, teardown),
		cmocka_unit_test_setup_teardown(test_indirect_bad_length, setup, teardown),
		cmocka_unit_test_setup_teardown(test_indirect_out_of_memory, setup, teardown),
		cmocka_unit_test_setup_teardown(test_indirect_loop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_too_many_buffers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_addr_out_of_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_len_past_end, setup, teardown),
		cmocka_unit_test_setup_teardown(test_len_overflow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_len_huge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_loop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_self_loop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_next_out_of_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_head_out_of_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_avail_idx_runaway, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writable_then_readable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remap_clears_broken, setup, teardown),
		cmocka_unit_test_setup_teardown(test_push_and_notify, setup, teardown),
		cmocka_unit_test_setup_teardown(test_used_wraps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unpop, setup, teardown),
		cmocka_unit_test(test_iov_helpers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
