/* Guest memory and split virtqueues as seen by a vhost-user backend.
 *
 * Everything the guest writes (descriptor addresses, lengths, indexes, flags)
 * is untrusted: each descriptor is copied out of guest memory once, every
 * guest-physical range is translated through the memory table with overflow
 * checks, and chains are bounded. A malformed chain marks the queue broken
 * (it is not processed again until it is set up anew) instead of crashing. */
#ifndef VSOCKD_VIRTQ_H
#define VSOCKD_VIRTQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <linux/virtio_ring.h>

#include "husk/error.h"

/* vhost-user allows 8 regions without CONFIGURE_MEM_SLOTS. */
#define VMEM_MAX_REGIONS 8
/* The largest split ring the virtio spec allows. */
#define VQ_MAX_SIZE 32768
/* Buffers one chain may map to; Linux's vsock driver uses at most 19. */
#define VQ_MAX_IOV 64

struct vmem_region {
	uint64_t gpa;    /* guest physical start */
	uint64_t size;
	uint64_t uva;    /* the front-end's (QEMU's) virtual address */
	uint8_t *hva;    /* where the region starts in this process */
	void *map;       /* what munmap() takes: the mapping includes mmap_offset */
	size_t map_len;
};

struct vmem {
	unsigned n;
	struct vmem_region r[VMEM_MAX_REGIONS];
};

/* Host pointer for [gpa, gpa+len) when it lies inside one region, else NULL. */
void *vmem_gpa(const struct vmem *m, uint64_t gpa, uint64_t len);
/* The same for a front-end virtual address (vring addresses use those). */
void *vmem_uva(const struct vmem *m, uint64_t uva, uint64_t len);
/* Appends iovecs covering [gpa, gpa+len), split at region boundaries, to
 * iov[*n..max). Returns 0, -EFAULT when part of the range is not guest
 * memory, or -E2BIG when more than `max` iovecs would be needed. */
int vmem_gpa_iov(const struct vmem *m, uint64_t gpa, uint64_t len, struct iovec *iov,
		 unsigned max, unsigned *n);

/* One chain popped from the available ring: device-readable buffers first
 * (iov[0..n_out)), then device-writable ones (iov[n_out..n_out+n_in)). */
struct vq_chain {
	uint16_t head;
	unsigned n_out, n_in;
	size_t out_len, in_len;
	struct iovec iov[VQ_MAX_IOV];
};

struct virtq {
	uint16_t num; /* 0: not set up */
	bool broken;
	bool indirect; /* VIRTIO_RING_F_INDIRECT_DESC negotiated */
	uint16_t last_avail; /* next available entry to pop */
	uint16_t used_idx;   /* our copy of used->idx */
	bool pushed;         /* used entries added since the last notify check */
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
};

/* Points `vq` at rings given as front-end virtual addresses, checking that
 * `num` is a power of two up to VQ_MAX_SIZE and that each ring lies inside
 * one memory region. Keeps last_avail/used_idx (set by SET_VRING_BASE). */
int virtq_map(struct virtq *vq, const struct vmem *m, uint16_t num, uint64_t desc_uva,
	      uint64_t avail_uva, uint64_t used_uva, struct husk_err *err);

/* Pops the next available chain into `c`. Returns 1 when one was popped, 0
 * when the ring is empty, or a negative errno when the guest's ring or chain
 * is malformed (out-of-range index or address, loop, overlong chain, bad
 * indirect table); the queue is then marked broken. */
int virtq_pop(struct virtq *vq, const struct vmem *m, struct vq_chain *c, struct husk_err *err);
/* Gives back the chain popped last (it had no use yet). */
void virtq_unpop(struct virtq *vq);
/* Returns a chain to the guest with `len` bytes written into it. */
void virtq_push(struct virtq *vq, uint16_t head, uint32_t len);
/* Whether the guest wants an interrupt for what was pushed since the last
 * call (VRING_AVAIL_F_NO_INTERRUPT respected); resets the pushed state. */
bool virtq_need_notify(struct virtq *vq);
/* Whether the ring has chains to pop (false when broken or not set up). */
bool virtq_has_avail(const struct virtq *vq);

/* iovec helpers: copy between a flat buffer and the bytes of iov[0..n)
 * starting `off` bytes in. Return the number of bytes copied. */
size_t iov_to_buf(const struct iovec *iov, unsigned n, size_t off, void *buf, size_t len);
size_t iov_from_buf(const struct iovec *iov, unsigned n, size_t off, const void *buf,
		    size_t len);
/* Fills dst with the part of iov[0..n) from `off`, at most `max` bytes;
 * returns the number of iovecs used (at most dst_max). */
unsigned iov_slice(const struct iovec *iov, unsigned n, size_t off, size_t max,
		   struct iovec *dst, unsigned dst_max);

#endif
