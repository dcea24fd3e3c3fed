#include "virtq.h"

#include <endian.h>
#include <errno.h>
#include <string.h>

void *vmem_gpa(const struct vmem *m, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < m->n; i++) {
		const struct vmem_region *r = &m->r[i];
		if (gpa < r->gpa || gpa - r->gpa >= r->size)
			continue;
		uint64_t off = gpa - r->gpa;
		if (len > r->size - off)
			return NULL;
		return r->hva + off;
	}
	return NULL;
}

void *vmem_uva(const struct vmem *m, uint64_t uva, uint64_t len)
{
	for (unsigned i = 0; i < m->n; i++) {
		const struct vmem_region *r = &m->r[i];
		if (uva < r->uva || uva - r->uva >= r->size)
			continue;
		uint64_t off = uva - r->uva;
		if (len > r->size - off)
			return NULL;
		return r->hva + off;
	}
	return NULL;
}

int vmem_gpa_iov(const struct vmem *m, uint64_t gpa, uint64_t len, struct iovec *iov,
		 unsigned max, unsigned *n)
{
	while (len > 0) {
		const struct vmem_region *r = NULL;
		for (unsigned i = 0; i < m->n; i++) {
			if (gpa >= m->r[i].gpa && gpa - m->r[i].gpa < m->r[i].size) {
				r = &m->r[i];
				break;
			}
		}
		if (!r)
			return -EFAULT;
		if (*n >= max)
			return -E2BIG;
		uint64_t off = gpa - r->gpa;
		uint64_t chunk = r->size - off < len ? r->size - off : len;
		iov[*n] = (struct iovec){ .iov_base = r->hva + off, .iov_len = (size_t)chunk };
		(*n)++;
		/* Cannot wrap: regions are validated not to reach past 2^64. */
		gpa += chunk;
		len -= chunk;
	}
	return 0;
}

static bool aligned(const void *p, size_t a)
{
	return ((uintptr_t)p & (a - 1)) == 0;
}

int virtq_map(struct virtq *vq, const struct vmem *m, uint16_t num, uint64_t desc_uva,
	      uint64_t avail_uva, uint64_t used_uva, struct husk_err *err)
{
	if (num == 0 || (num & (num - 1)) != 0)
		return husk_err_set(err, -EINVAL, "vring size %u is not a power of two", num);
	/* num is a uint16_t, so it cannot exceed VQ_MAX_SIZE (32768) once it
	 * is a power of two. */
	void *desc = vmem_uva(m, desc_uva, (uint64_t)num * sizeof(struct vring_desc));
	void *avail = vmem_uva(m, avail_uva, 4 + 2ull * num + 2);
	void *used = vmem_uva(m, used_uva, 4 + 8ull * num + 2);
	if (!desc || !avail || !used)
		return husk_err_set(err, -EFAULT,
				    "vring of %u entries (desc 0x%llx, avail 0x%llx, used 0x%llx) is "
				    "not inside guest memory",
				    num, (unsigned long long)desc_uva, (unsigned long long)avail_uva,
				    (unsigned long long)used_uva);
	if (!aligned(desc, 16) || !aligned(avail, 2) || !aligned(used, 4))
		return husk_err_set(err, -EINVAL,
				    "vring addresses (desc 0x%llx, avail 0x%llx, used 0x%llx) are "
				    "misaligned",
				    (unsigned long long)desc_uva, (unsigned long long)avail_uva,
				    (unsigned long long)used_uva);
	vq->num = num;
	vq->desc = desc;
	vq->avail = avail;
	vq->used = used;
	vq->broken = false;
	vq->pushed = false;
	return 0;
}

static int broken(struct virtq *vq, struct husk_err *err, const char *what, unsigned a,
		  unsigned b)
{
	vq->broken = true;
	return husk_err_set(err, -EINVAL, "virtqueue: %s (%u, %u); queue stopped", what, a, b);
}

bool virtq_has_avail(const struct virtq *vq)
{
	if (!vq->num || vq->broken)
		return false;
	return le16toh(__atomic_load_n(&vq->avail->idx, __ATOMIC_ACQUIRE)) != vq->last_avail;
}

int virtq_pop(struct virtq *vq, const struct vmem *m, struct vq_chain *c, struct husk_err *err)
{
	if (!vq->num || vq->broken)
		return 0;
	/* Acquire: the ring entry and descriptors are read after the index. */
	uint16_t avail_idx = le16toh(__atomic_load_n(&vq->avail->idx, __ATOMIC_ACQUIRE));
	uint16_t pending = (uint16_t)(avail_idx - vq->last_avail);
	if (pending == 0)
		return 0;
	if (pending > vq->num)
		return broken(vq, err, "available index runs ahead by more than the ring size",
			      pending, vq->num);
	uint16_t head = le16toh(__atomic_load_n(&vq->avail->ring[vq->last_avail & (vq->num - 1)],
						__ATOMIC_RELAXED));
	if (head >= vq->num)
		return broken(vq, err, "available head index out of range", head, vq->num);

	c->head = head;
	c->n_out = c->n_in = 0;
	c->out_len = c->in_len = 0;
	const struct vring_desc *table = vq->desc;
	uint32_t table_len = vq->num;
	bool in_indirect = false;
	uint32_t idx = head;
	uint32_t count = 0;
	for (;;) {
		struct vring_desc d;
		/* One copy: the guest may rewrite the descriptor meanwhile. */
		memcpy(&d, &table[idx], sizeof(d));
		if (++count > table_len)
			return broken(vq, err, "descriptor chain loops", head, table_len);
		uint16_t flags = le16toh(d.flags);
		uint64_t addr = le64toh(d.addr);
		uint32_t len = le32toh(d.len);
		if (flags & VRING_DESC_F_INDIRECT) {
			if (!vq->indirect || in_indirect || (flags & VRING_DESC_F_NEXT))
				return broken(vq, err, "indirect descriptor not allowed here", idx,
					      flags);
			if (len == 0 || len % sizeof(struct vring_desc) != 0 ||
			    len / sizeof(struct vring_desc) > VQ_MAX_SIZE)
				return broken(vq, err, "indirect table has a bad length", idx, len);
			table = vmem_gpa(m, addr, len);
			if (!table || !aligned(table, 8))
				return broken(vq, err, "indirect table not in guest memory", idx, len);
			table_len = len / sizeof(struct vring_desc);
			in_indirect = true;
			idx = 0;
			count = 0;
			continue;
		}
		if (flags & VRING_DESC_F_WRITE) {
			unsigned n = c->n_out + c->n_in;
			int r = vmem_gpa_iov(m, addr, len, c->iov, VQ_MAX_IOV, &n);
			if (r < 0)
				return broken(vq, err,
					      r == -E2BIG ? "chain has too many buffers"
							  : "buffer not in guest memory",
					      idx, len);
			c->n_in = n - c->n_out;
			c->in_len += len;
		} else {
			if (c->n_in > 0)
				return broken(vq, err, "readable buffer after a writable one", idx,
					      flags);
			unsigned n = c->n_out;
			int r = vmem_gpa_iov(m, addr, len, c->iov, VQ_MAX_IOV, &n);
			if (r < 0)
				return broken(vq, err,
					      r == -E2BIG ? "chain has too many buffers"
							  : "buffer not in guest memory",
					      idx, len);
			c->n_out = n;
			c->out_len += len;
		}
		if (!(flags & VRING_DESC_F_NEXT))
			break;
		idx = le16toh(d.next);
		if (idx >= table_len)
			return broken(vq, err, "next descriptor index out of range", idx, table_len);
	}
	vq->last_avail++;
	return 1;
}

void virtq_unpop(struct virtq *vq)
{
	vq->last_avail--;
}

void virtq_push(struct virtq *vq, uint16_t head, uint32_t len)
{
	struct vring_used_elem *e = &vq->used->ring[vq->used_idx & (vq->num - 1)];
	e->id = htole32(head);
	e->len = htole32(len);
	vq->used_idx++;
	/* Release: the element is visible before the index that publishes it. */
	__atomic_store_n(&vq->used->idx, htole16(vq->used_idx), __ATOMIC_RELEASE);
	vq->pushed = true;
}

bool virtq_need_notify(struct virtq *vq)
{
	if (!vq->pushed || !vq->num)
		return false;
	vq->pushed = false;
	/* The used index store must be ordered before reading the flags, or
	 * the guest could miss both the interrupt and the new entries. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	uint16_t flags = le16toh(__atomic_load_n(&vq->avail->flags, __ATOMIC_RELAXED));
	return !(flags & VRING_AVAIL_F_NO_INTERRUPT);
}

size_t iov_to_buf(const struct iovec *iov, unsigned n, size_t off, void *buf, size_t len)
{
	size_t done = 0;
	for (unsigned i = 0; i < n && done < len; i++) {
		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		size_t chunk = iov[i].iov_len - off;
		if (chunk > len - done)
			chunk = len - done;
		memcpy((char *)buf + done, (char *)iov[i].iov_base + off, chunk);
		done += chunk;
		off = 0;
	}
	return done;
}

size_t iov_from_buf(const struct iovec *iov, unsigned n, size_t off, const void *buf,
		    size_t len)
{
	size_t done = 0;
	for (unsigned i = 0; i < n && done < len; i++) {
		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		size_t chunk = iov[i].iov_len - off;
		if (chunk > len - done)
			chunk = len - done;
		memcpy((char *)iov[i].iov_base + off, (const char *)buf + done, chunk);
		done += chunk;
		off = 0;
	}
	return done;
}

unsigned iov_slice(const struct iovec *iov, unsigned n, size_t off, size_t max,
		   struct iovec *dst, unsigned dst_max)
{
	unsigned k = 0;
	for (unsigned i = 0; i < n && max > 0 && k < dst_max; i++) {
		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		size_t chunk = iov[i].iov_len - off;
		if (chunk > max)
			chunk = max;
		dst[k++] = (struct iovec){ .iov_base = (char *)iov[i].iov_base + off,
					   .iov_len = chunk };
		max -= chunk;
		off = 0;
	}
	return k;
}
