/* libFuzzer target: ttrpc framing plus Request/Response decoding.
 *
 * Input: one byte that picks how the rest is split into reads, then the
 * byte stream as a peer would send it. The stream is fed in those pieces
 * and, separately, in one piece; both must yield the same frames. Each
 * request is decoded, re-encoded and decoded again, which must agree;
 * each response is decoded and walked. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "google/rpc/status.pb-c.h"
#include "ttrpc/frame.h"
#include "ttrpc/ttrpc.pb-c.h"

/* Keeps reads of decoded fields from being optimised away. */
static volatile uint64_t sink;

static void touch_bytes(const uint8_t *p, size_t len)
{
	uint64_t h = 0;
	for (size_t i = 0; i < len; i++)
		h = h * 31 + p[i];
	sink += h + len;
}

static void touch_str(const char *s)
{
	if (s)
		touch_bytes((const uint8_t *)s, strlen(s));
}

static bool str_eq(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "") == 0;
}

static bool bin_eq(const ProtobufCBinaryData *a, const ProtobufCBinaryData *b)
{
	return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

static void check_request(const uint8_t *payload, size_t len)
{
	Ttrpc__Request *req = ttrpc__request__unpack(NULL, len, payload);
	if (!req)
		return; /* malformed protobuf is rejected, which is fine */
	touch_str(req->service);
	touch_str(req->method);
	touch_bytes(req->payload.data, req->payload.len);
	sink += (uint64_t)req->timeout_nano;
	for (size_t i = 0; i < req->n_metadata; i++) {
		touch_str(req->metadata[i]->key);
		touch_str(req->metadata[i]->value);
	}

	/* Whatever decoded must survive a round trip through our encoder.
	 * Unknown fields are exempt: protobuf-c accepts a field number 0 given
	 * as a non-canonical varint tag (85 00) but re-encodes it canonically
	 * (05), which it then refuses. We never read unknown fields. */
	bool unknown = req->base.n_unknown_fields > 0;
	for (size_t i = 0; i < req->n_metadata; i++)
		unknown |= req->metadata[i]->base.n_unknown_fields > 0;
	if (unknown) {
		ttrpc__request__free_unpacked(req, NULL);
		return;
	}
	size_t size = ttrpc__request__get_packed_size(req);
	uint8_t *buf = malloc(size ? size : 1);
	if (!buf)
		abort();
	if (ttrpc__request__pack(req, buf) != size)
		abort();
	Ttrpc__Request *again = ttrpc__request__unpack(NULL, size, buf);
	if (!again)
		abort();
	if (!str_eq(req->service, again->service) || !str_eq(req->method, again->method) ||
	    !bin_eq(&req->payload, &again->payload) || req->timeout_nano != again->timeout_nano ||
	    req->n_metadata != again->n_metadata)
		abort();
	for (size_t i = 0; i < req->n_metadata; i++)
		if (!str_eq(req->metadata[i]->key, again->metadata[i]->key) ||
		    !str_eq(req->metadata[i]->value, again->metadata[i]->value))
			abort();
	ttrpc__request__free_unpacked(again, NULL);
	free(buf);
	ttrpc__request__free_unpacked(req, NULL);
}

static void check_response(const uint8_t *payload, size_t len)
{
	Ttrpc__Response *resp = ttrpc__response__unpack(NULL, len, payload);
	if (!resp)
		return;
	touch_bytes(resp->payload.data, resp->payload.len);
	const Google__Rpc__Status *st = resp->status;
	if (st) {
		sink += (uint64_t)(int64_t)st->code;
		touch_str(st->message);
		for (size_t i = 0; i < st->n_details; i++) {
			touch_str(st->details[i]->type_url);
			touch_bytes(st->details[i]->value.data, st->details[i]->value.len);
		}
	}

	bool unknown = resp->base.n_unknown_fields > 0 ||
		       (st && st->base.n_unknown_fields > 0);
	for (size_t i = 0; st && i < st->n_details; i++)
		unknown |= st->details[i]->base.n_unknown_fields > 0;
	if (unknown) { /* see check_request */
		ttrpc__response__free_unpacked(resp, NULL);
		return;
	}
	size_t size = ttrpc__response__get_packed_size(resp);
	uint8_t *buf = malloc(size ? size : 1);
	if (!buf)
		abort();
	if (ttrpc__response__pack(resp, buf) != size)
		abort();
	Ttrpc__Response *again = ttrpc__response__unpack(NULL, size, buf);
	if (!again)
		abort();
	if (!bin_eq(&resp->payload, &again->payload) || !st != !again->status ||
	    (st && (st->code != again->status->code ||
		    !str_eq(st->message, again->status->message) ||
		    st->n_details != again->status->n_details)))
		abort();
	ttrpc__response__free_unpacked(again, NULL);
	free(buf);
	ttrpc__response__free_unpacked(resp, NULL);
}

/* A digest of every frame seen, so the split and unsplit runs can be
 * compared without storing frames. */
struct run {
	uint64_t digest;
	size_t frames;
	bool decode;
};

static uint64_t mix(uint64_t h, uint64_t v)
{
	h ^= v;
	h *= 0x100000001b3ull;
	return h ^ (h >> 29);
}

static int on_frame(void *data, const struct ttrpc_header *h, const uint8_t *payload)
{
	struct run *r = data;
	r->frames++;
	r->digest = mix(r->digest, h->length);
	r->digest = mix(r->digest, h->stream_id);
	r->digest = mix(r->digest, (uint64_t)h->type << 8 | h->flags);
	r->digest = mix(r->digest, payload != NULL);
	if (!payload) {
		if (h->length <= TTRPC_MAX_PAYLOAD)
			abort(); /* NULL payload is only for oversized frames */
		return 0;
	}
	if (h->length > TTRPC_MAX_PAYLOAD)
		abort();
	for (size_t i = 0; i < h->length; i++)
		r->digest = mix(r->digest, payload[i]);
	if (!r->decode)
		return 0;
	if (h->type == TTRPC_TYPE_REQUEST)
		check_request(payload, h->length);
	else if (h->type == TTRPC_TYPE_RESPONSE)
		check_response(payload, h->length);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t mode = data[0];
	data++;
	size--;

	/* Split: low 3 bits pick a largest read size (1 byte up to "all at
	 * once"); the high bits seed which sizes up to it are used. */
	static const size_t max_piece[8] = { 1, 2, 7, 10, 11, 64, 4096, SIZE_MAX };
	size_t maxp = max_piece[mode & 7];
	uint32_t rng = (uint32_t)(mode >> 3) * 2654435761u + 1;

	struct run split = { .digest = 0xcbf29ce484222325ull, .decode = true };
	struct ttrpc_parser p;
	ttrpc_parser_init(&p);
	size_t off = 0;
	while (off < size) {
		size_t n = size - off;
		if (maxp != SIZE_MAX) {
			rng = rng * 1103515245u + 12345u;
			size_t piece = 1 + (rng >> 16) % maxp;
			if (piece < n)
				n = piece;
		}
		if (ttrpc_parser_feed(&p, data + off, n, on_frame, &split) < 0)
			abort(); /* on_frame never fails; only -ENOMEM could */
		off += n;
		/* The read buffer never sits empty at full size. */
		uint8_t *where;
		size_t room;
		if (ttrpc_parser_space(&p, &where, &room) < 0 || room == 0)
			abort();
	}
	ttrpc_parser_free(&p);

	struct run whole = { .digest = 0xcbf29ce484222325ull };
	ttrpc_parser_init(&p);
	if (ttrpc_parser_feed(&p, data, size, on_frame, &whole) < 0)
		abort();
	ttrpc_parser_free(&p);
	if (whole.frames != split.frames || whole.digest != split.digest)
		abort();
	return 0;
}
