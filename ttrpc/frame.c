#include "ttrpc/frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Small frames are the common case; the buffer grows to a whole frame only
 * for large payloads and shrinks back once it drains, so idle connections
 * hold little memory. */
#define PARSER_BASE_CAP (64u * 1024)

void ttrpc_header_encode(const struct ttrpc_header *h, uint8_t out[TTRPC_HEADER_SIZE])
{
	out[0] = (uint8_t)(h->length >> 24);
	out[1] = (uint8_t)(h->length >> 16);
	out[2] = (uint8_t)(h->length >> 8);
	out[3] = (uint8_t)h->length;
	out[4] = (uint8_t)(h->stream_id >> 24);
	out[5] = (uint8_t)(h->stream_id >> 16);
	out[6] = (uint8_t)(h->stream_id >> 8);
	out[7] = (uint8_t)h->stream_id;
	out[8] = h->type;
	out[9] = h->flags;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void ttrpc_header_decode(const uint8_t in[TTRPC_HEADER_SIZE], struct ttrpc_header *h)
{
	h->length = be32(in);
	h->stream_id = be32(in + 4);
	h->type = in[8];
	h->flags = in[9];
}

void ttrpc_parser_init(struct ttrpc_parser *p)
{
	memset(p, 0, sizeof(*p));
}

void ttrpc_parser_free(struct ttrpc_parser *p)
{
	free(p->buf);
	memset(p, 0, sizeof(*p));
}

/* Ensures the buffer can hold `need` bytes from the current frame start and
 * has room for at least one more byte. After a commit the buffer never holds
 * a complete frame, so compaction plus growth to `need` always leaves room. */
static int reserve(struct ttrpc_parser *p, size_t need)
{
	size_t have = p->end - p->start;
	if (p->start > 0 && (p->cap - p->start < need || p->end == p->cap)) {
		memmove(p->buf, p->buf + p->start, have);
		p->start = 0;
		p->end = have;
	}
	size_t want = need > PARSER_BASE_CAP ? need : PARSER_BASE_CAP;
	if (want <= p->cap && p->end < p->cap)
		return 0;
	if (want <= p->cap)
		want = p->cap + PARSER_BASE_CAP;
	uint8_t *buf = realloc(p->buf, want);
	if (!buf)
		return -ENOMEM;
	p->buf = buf;
	p->cap = want;
	return 0;
}

int ttrpc_parser_space(struct ttrpc_parser *p, uint8_t **where, size_t *len)
{
	/* Room for the whole current frame once its length is known, but grown
	 * at most twofold per step: a peer has to send bytes to make us hold
	 * memory, a bare header claiming 4 MiB is not enough. */
	size_t need = TTRPC_HEADER_SIZE;
	size_t have = p->end - p->start;
	if (p->discard == 0 && have >= TTRPC_HEADER_SIZE) {
		uint32_t length = be32(p->buf + p->start);
		if (length <= TTRPC_MAX_PAYLOAD)
			need = TTRPC_HEADER_SIZE + (size_t)length;
		size_t step = have > PARSER_BASE_CAP ? 2 * have : PARSER_BASE_CAP;
		if (need > step)
			need = step;
	}
	int r = reserve(p, need);
	if (r < 0)
		return r;
	*where = p->buf + p->end;
	*len = p->cap - p->end;
	return 0;
}

static void shrink_if_idle(struct ttrpc_parser *p)
{
	if (p->start == p->end) {
		p->start = p->end = 0;
		if (p->cap > PARSER_BASE_CAP) {
			free(p->buf);
			p->buf = NULL;
			p->cap = 0;
		}
	}
}

int ttrpc_parser_commit(struct ttrpc_parser *p, size_t n, ttrpc_frame_fn fn, void *data)
{
	p->end += n;
	for (;;) {
		size_t have = p->end - p->start;
		if (p->discard > 0) {
			size_t skip = have < p->discard ? have : (size_t)p->discard;
			p->start += skip;
			p->discard -= skip;
			if (p->discard > 0)
				break;
			continue;
		}
		if (have < TTRPC_HEADER_SIZE)
			break;
		struct ttrpc_header h;
		ttrpc_header_decode(p->buf + p->start, &h);
		if (h.length > TTRPC_MAX_PAYLOAD) {
			p->start += TTRPC_HEADER_SIZE;
			p->discard = h.length;
			int r = fn(data, &h, NULL);
			if (r < 0)
				return r;
			continue;
		}
		if (have < TTRPC_HEADER_SIZE + (size_t)h.length)
			break;
		const uint8_t *payload = p->buf + p->start + TTRPC_HEADER_SIZE;
		p->start += TTRPC_HEADER_SIZE + (size_t)h.length;
		int r = fn(data, &h, payload);
		if (r < 0)
			return r;
	}
	shrink_if_idle(p);
	return 0;
}

int ttrpc_parser_feed(struct ttrpc_parser *p, const uint8_t *bytes, size_t len, ttrpc_frame_fn fn,
		      void *data)
{
	while (len > 0) {
		uint8_t *where;
		size_t room;
		int r = ttrpc_parser_space(p, &where, &room);
		if (r < 0)
			return r;
		size_t n = len < room ? len : room;
		memcpy(where, bytes, n);
		r = ttrpc_parser_commit(p, n, fn, data);
		if (r < 0)
			return r;
		bytes += n;
		len -= n;
	}
	return 0;
}
