/* Unit tests for the ttrpc frame header codec and the incremental parser. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ttrpc/frame.h"

/* The parser's idle buffer size (PARSER_BASE_CAP in frame.c). */
#define IDLE_CAP_MAX (64u * 1024)

/* ---- helpers ------------------------------------------------------------ */

/* Deterministic xorshift64*, so failures reproduce. */
static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1Dull;
}

static uint64_t rng_below(uint64_t *s, uint64_t n)
{
	return rng_next(s) % n;
}

static uint64_t fnv1a(const uint8_t *p, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

/* What the callback saw for one frame. Payloads are kept as a hash so that
 * multi-megabyte frames need not be copied. */
struct rec {
	struct ttrpc_header h;
	bool null_payload;
	uint64_t hash;
};

struct recorder {
	struct rec *v;
	size_t n, cap;
	size_t fail_at; /* 1-based frame index whose callback fails; 0: never */
	int fail_code;
};

static int record_fn(void *data, const struct ttrpc_header *h, const uint8_t *payload)
{
	struct recorder *r = data;
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 16;
		r->v = realloc(r->v, r->cap * sizeof(*r->v));
		assert_non_null(r->v);
	}
	struct rec *e = &r->v[r->n++];
	e->h = *h;
	e->null_payload = payload == NULL;
	e->hash = payload ? fnv1a(payload, h->length) : 0;
	if (r->fail_at && r->n == r->fail_at)
		return r->fail_code;
	return 0;
}

static void recorder_free(struct recorder *r)
{
	free(r->v);
	memset(r, 0, sizeof(*r));
}

/* A growable byte stream of frames plus what the parser should report. */
struct stream {
	uint8_t *buf;
	size_t len, cap;
	struct recorder want;
	size_t *bounds; /* stream offsets where a frame ends */
	size_t nbounds, bounds_cap;
};

static void stream_put(struct stream *s, const void *p, size_t len)
{
	if (s->len + len > s->cap) {
		size_t cap = s->cap ? s->cap : 4096;
		while (cap < s->len + len)
			cap *= 2;
		s->buf = realloc(s->buf, cap);
		assert_non_null(s->buf);
		s->cap = cap;
	}
	memcpy(s->buf + s->len, p, len);
	s->len += len;
}

/* Appends a frame whose header says `length`; `body_len` bytes of body
 * follow (equal to `length` for a well-formed stream). */
static void stream_frame(struct stream *s, uint32_t length, uint32_t stream_id, uint8_t type,
			 uint8_t flags, size_t body_len, uint64_t *seed)
{
	struct ttrpc_header h = { .length = length, .stream_id = stream_id, .type = type,
				  .flags = flags };
	uint8_t hdr[TTRPC_HEADER_SIZE];
	ttrpc_header_encode(&h, hdr);
	stream_put(s, hdr, sizeof(hdr));
	size_t body_at = s->len;
	if (body_len) {
		uint8_t *body = malloc(body_len);
		assert_non_null(body);
		for (size_t i = 0; i < body_len; i++)
			body[i] = (uint8_t)(seed ? rng_next(seed) : i * 7 + 3);
		stream_put(s, body, body_len);
		free(body);
	}
	bool oversized = length > TTRPC_MAX_PAYLOAD;
	record_fn(&s->want, &h,
		  oversized ? NULL : (s->buf + body_at)); /* hash of the body as sent */
	if (s->nbounds == s->bounds_cap) {
		s->bounds_cap = s->bounds_cap ? s->bounds_cap * 2 : 64;
		s->bounds = realloc(s->bounds, s->bounds_cap * sizeof(*s->bounds));
		assert_non_null(s->bounds);
	}
	s->bounds[s->nbounds++] = s->len;
}

static void stream_free(struct stream *s)
{
	free(s->buf);
	free(s->bounds);
	recorder_free(&s->want);
	memset(s, 0, sizeof(*s));
}

static void assert_same_frames(const struct recorder *got, const struct recorder *want)
{
	assert_int_equal(got->n, want->n);
	for (size_t i = 0; i < want->n; i++) {
		const struct rec *g = &got->v[i], *w = &want->v[i];
		assert_int_equal(g->h.length, w->h.length);
		assert_int_equal(g->h.stream_id, w->h.stream_id);
		assert_int_equal(g->h.type, w->h.type);
		assert_int_equal(g->h.flags, w->h.flags);
		assert_int_equal(g->null_payload, w->null_payload);
		assert_true(g->hash == w->hash);
	}
}

/* Feeds `len` bytes in pieces of `chunk` through space/commit, checking the
 * room offered each time. Returns the first error. */
static int feed_chunked(struct ttrpc_parser *p, const uint8_t *bytes, size_t len, size_t chunk,
			struct recorder *r)
{
	while (len > 0) {
		uint8_t *where;
		size_t room;
		int rc = ttrpc_parser_space(p, &where, &room);
		assert_int_equal(rc, 0);
		assert_true(room > 0);
		size_t n = len < chunk ? len : chunk;
		if (n > room)
			n = room;
		memcpy(where, bytes, n);
		rc = ttrpc_parser_commit(p, n, record_fn, r);
		if (rc < 0)
			return rc;
		bytes += n;
		len -= n;
	}
	return 0;
}

/* ---- header codec ------------------------------------------------------- */

static void test_header_layout(void **state)
{
	(void)state;
	struct ttrpc_header h = { .length = 0x01020304, .stream_id = 0xa0b0c0d0, .type = 2,
				  .flags = 0x81 };
	uint8_t out[TTRPC_HEADER_SIZE];
	ttrpc_header_encode(&h, out);
	static const uint8_t want[TTRPC_HEADER_SIZE] = { 0x01, 0x02, 0x03, 0x04, 0xa0,
							 0xb0, 0xc0, 0xd0, 0x02, 0x81 };
	assert_memory_equal(out, want, sizeof(want));

	struct ttrpc_header d;
	memset(&d, 0xee, sizeof(d));
	ttrpc_header_decode(want, &d);
	assert_int_equal(d.length, 0x01020304);
	assert_int_equal(d.stream_id, 0xa0b0c0d0);
	assert_int_equal(d.type, 2);
	assert_int_equal(d.flags, 0x81);

	/* A request header as containerd's Go client writes it: 5-byte body,
	 * stream 1, type 1, no flags. */
	static const uint8_t go[TTRPC_HEADER_SIZE] = { 0, 0, 0, 5, 0, 0, 0, 1, 1, 0 };
	ttrpc_header_decode(go, &d);
	assert_int_equal(d.length, 5);
	assert_int_equal(d.stream_id, 1);
	assert_int_equal(d.type, TTRPC_TYPE_REQUEST);
	assert_int_equal(d.flags, 0);
}

static void test_header_round_trip(void **state)
{
	(void)state;
	uint64_t seed = 0x1234;
	static const uint32_t edges[] = { 0, 1, 0xff, 0x100, 0x7fffffff, 0x80000000, 0xffffffff };
	for (int i = 0; i < 2000; i++) {
		struct ttrpc_header h;
		if (i < 49) {
			h.length = edges[i % 7];
			h.stream_id = edges[i / 7];
		} else {
			h.length = (uint32_t)rng_next(&seed);
			h.stream_id = (uint32_t)rng_next(&seed);
		}
		h.type = (uint8_t)rng_next(&seed);
		h.flags = (uint8_t)rng_next(&seed);
		uint8_t out[TTRPC_HEADER_SIZE];
		ttrpc_header_encode(&h, out);
		assert_int_equal(out[0], h.length >> 24);
		assert_int_equal(out[3], h.length & 0xff);
		assert_int_equal(out[4], h.stream_id >> 24);
		assert_int_equal(out[7], h.stream_id & 0xff);
		struct ttrpc_header d;
		ttrpc_header_decode(out, &d);
		assert_int_equal(d.length, h.length);
		assert_int_equal(d.stream_id, h.stream_id);
		assert_int_equal(d.type, h.type);
		assert_int_equal(d.flags, h.flags);
	}
}

/* ---- parser ------------------------------------------------------------- */

static void test_parser_one_frame(void **state)
{
	(void)state;
	static const uint8_t bytes[] = { 0, 0, 0, 3, 0, 0, 0, 7, 1, 0, 'a', 'b', 'c' };
	struct ttrpc_parser p;
	struct recorder got = { 0 };
	ttrpc_parser_init(&p);
	assert_int_equal(ttrpc_parser_feed(&p, bytes, sizeof(bytes), record_fn, &got), 0);
	assert_int_equal(got.n, 1);
	assert_int_equal(got.v[0].h.length, 3);
	assert_int_equal(got.v[0].h.stream_id, 7);
	assert_int_equal(got.v[0].h.type, TTRPC_TYPE_REQUEST);
	assert_int_equal(got.v[0].h.flags, 0);
	assert_false(got.v[0].null_payload);
	assert_true(got.v[0].hash == fnv1a((const uint8_t *)"abc", 3));
	assert_true(p.cap <= IDLE_CAP_MAX);
	ttrpc_parser_free(&p);
	assert_null(p.buf);
	recorder_free(&got);
}

/* Payload pointer and contents, checked inside the callback. */
struct exact {
	const uint8_t *want;
	size_t want_len;
	int calls;
};

static int exact_fn(void *data, const struct ttrpc_header *h, const uint8_t *payload)
{
	struct exact *e = data;
	e->calls++;
	assert_int_equal(h->length, e->want_len);
	assert_non_null(payload);
	if (e->want_len)
		assert_memory_equal(payload, e->want, e->want_len);
	return 0;
}

static void test_parser_byte_at_a_time(void **state)
{
	(void)state;
	struct stream s = { 0 };
	uint64_t seed = 99;
	stream_frame(&s, 300, 1, TTRPC_TYPE_REQUEST, 0, 300, &seed);
	stream_frame(&s, 0, 3, TTRPC_TYPE_RESPONSE, 1, 0, &seed);
	stream_frame(&s, 17, 5, TTRPC_TYPE_DATA, 2, 17, &seed);

	struct ttrpc_parser p;
	struct recorder got = { 0 };
	ttrpc_parser_init(&p);
	size_t b = 0;
	for (size_t i = 0; i < s.len; i++) {
		assert_int_equal(ttrpc_parser_feed(&p, s.buf + i, 1, record_fn, &got), 0);
		/* A frame is delivered exactly when its last byte arrives. */
		if (b < s.nbounds && i + 1 == s.bounds[b])
			b++;
		assert_int_equal(got.n, b);
	}
	assert_same_frames(&got, &s.want);
	ttrpc_parser_free(&p);
	recorder_free(&got);
	stream_free(&s);
}

static void test_parser_many_frames_one_feed(void **state)
{
	(void)state;
	struct stream s = { 0 };
	uint64_t seed = 7;
	/* Well over one 64 KiB buffer's worth, so feed() crosses buffer
	 * refills with frames straddling them. */
	for (uint32_t i = 0; i < 5000; i++) {
		uint32_t len = (uint32_t)rng_below(&seed, 100);
		stream_frame(&s, len, 2 * i + 1, TTRPC_TYPE_REQUEST, 0, len, &seed);
	}
	struct ttrpc_parser p;
	struct recorder got = { 0 };
	ttrpc_parser_init(&p);
	assert_int_equal(ttrpc_parser_feed(&p, s.buf, s.len, record_fn, &got), 0);
	assert_same_frames(&got, &s.want);
	assert_true(p.cap <= IDLE_CAP_MAX);
	ttrpc_parser_free(&p);
	recorder_free(&got);
	stream_free(&s);
}

static void test_parser_zero_length(void **state)
{
	(void)state;
	static const uint8_t bytes[] = { 0, 0, 0, 0, 0, 0, 0, 9, 2, 0 };
	struct ttrpc_parser p;
	struct exact e = { .want_len = 0 };
	ttrpc_parser_init(&p);
	/* The header alone completes the frame; payload is non-NULL even
	 * though it is empty, so it cannot be mistaken for an oversized one. */
	assert_int_equal(ttrpc_parser_feed(&p, bytes, sizeof(bytes), exact_fn, &e), 0);
	assert_int_equal(e.calls, 1);
	assert_int_equal(ttrpc_parser_feed(&p, bytes, sizeof(bytes), exact_fn, &e), 0);
	assert_int_equal(e.calls, 2);
	ttrpc_parser_free(&p);
}

static void test_parser_max_payload(void **state)
{
	(void)state;
	size_t total = TTRPC_HEADER_SIZE + TTRPC_MAX_PAYLOAD;
	uint8_t *bytes = malloc(total);
	assert_non_null(bytes);
	struct ttrpc_header h = { .length = TTRPC_MAX_PAYLOAD, .stream_id = 1, .type = 1 };
	ttrpc_header_encode(&h, bytes);
	uint64_t seed = 5;
	for (size_t i = TTRPC_HEADER_SIZE; i < total; i++)
		bytes[i] = (uint8_t)rng_next(&seed);

	struct exact e = { .want = bytes + TTRPC_HEADER_SIZE, .want_len = TTRPC_MAX_PAYLOAD };
	struct ttrpc_parser p;
	ttrpc_parser_init(&p);
	assert_int_equal(ttrpc_parser_feed(&p, bytes, total, exact_fn, &e), 0);
	assert_int_equal(e.calls, 1);
	/* Idle again: the 4 MiB buffer has been given back. */
	assert_true(p.cap <= IDLE_CAP_MAX);

	/* Same frame in odd-sized pieces. */
	for (size_t off = 0; off < total;) {
		size_t n = total - off < 12345 ? total - off : 12345;
		assert_int_equal(ttrpc_parser_feed(&p, bytes + off, n, exact_fn, &e), 0);
		off += n;
		assert_int_equal(e.calls, off == total ? 2 : 1);
	}
	assert_true(p.cap <= IDLE_CAP_MAX);
	ttrpc_parser_free(&p);
	free(bytes);
}

/* Oversized header, its body, then a normal frame, all in one stream. */
static void make_oversized_stream(struct stream *s, uint32_t length)
{
	uint64_t seed = 11;
	stream_frame(s, 4, 1, TTRPC_TYPE_REQUEST, 0, 4, &seed);
	stream_frame(s, length, 3, TTRPC_TYPE_REQUEST, 0, length, NULL);
	stream_frame(s, 6, 5, TTRPC_TYPE_REQUEST, 0, 6, &seed);
	stream_frame(s, 0, 7, TTRPC_TYPE_REQUEST, 0, 0, &seed);
}

static void test_parser_oversized_one_feed(void **state)
{
	(void)state;
	struct stream s = { 0 };
	make_oversized_stream(&s, TTRPC_MAX_PAYLOAD + 1);
	assert_true(s.want.v[1].null_payload);

	struct ttrpc_parser p;
	struct recorder got = { 0 };
	ttrpc_parser_init(&p);
	assert_int_equal(ttrpc_parser_feed(&p, s.buf, s.len, record_fn, &got), 0);
	assert_same_frames(&got, &s.want);
	assert_int_equal(got.v[1].h.length, TTRPC_MAX_PAYLOAD + 1);
	assert_int_equal(p.discard, 0);
	assert_true(p.cap <= IDLE_CAP_MAX);

	/* And the parser keeps working in a later feed. */
	recorder_free(&got);
	assert_int_equal(ttrpc_parser_feed(&p, s.buf, s.len, record_fn, &got), 0);
	assert_same_frames(&got, &s.want);
	ttrpc_parser_free(&p);
	recorder_free(&got);
	stream_free(&s);
}

static void test_parser_oversized_pieces(void **state)
{
	(void)state;
	struct stream s = { 0 };
	make_oversized_stream(&s, TTRPC_MAX_PAYLOAD + 1);
	/* Piece sizes such that pieces end inside the oversized header, inside
	 * its body, exactly at its end, and inside the following header. */
	static const size_t chunks[] = { 1, 3, 7, 13, 4096, 65536, 100000, 1 << 20 };
	for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
		struct ttrpc_parser p;
		struct recorder got = { 0 };
		ttrpc_parser_init(&p);
		for (size_t off = 0; off < s.len;) {
			size_t n = s.len - off < chunks[c] ? s.len - off : chunks[c];
			assert_int_equal(feed_chunked(&p, s.buf + off, n, n, &got), 0);
			off += n;
			/* The oversized frame is reported as soon as its header
			 * is complete, and only once while its body is skipped. */
			if (off >= s.bounds[0] + TTRPC_HEADER_SIZE && off < s.bounds[1])
				assert_int_equal(got.n, 2);
		}
		assert_same_frames(&got, &s.want);
		assert_int_equal(p.discard, 0);
		assert_true(p.cap <= IDLE_CAP_MAX);
		ttrpc_parser_free(&p);
		recorder_free(&got);
	}
	stream_free(&s);
}

static void test_parser_oversized_huge_length(void **state)
{
	(void)state;
	/* Length 0xffffffff: reported once, then every byte fed is skipped. */
	struct ttrpc_parser p;
	struct recorder got = { 0 };
	ttrpc_parser_init(&p);
	static const uint8_t hdr[] = { 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 1, 0 };
	assert_int_equal(ttrpc_parser_feed(&p, hdr, sizeof(hdr), record_fn, &got), 0);
	assert_int_equal(got.n, 1);
	assert_true(got.v[0].null_payload);
	assert_int_equal(got.v[0].h.length, 0xffffffffu);
	uint8_t junk[1000];
	memset(junk, 0, sizeof(junk)); /* would be zero-length frames if parsed */
	for (int i = 0; i < 10; i++)
		assert_int_equal(ttrpc_parser_feed(&p, junk, sizeof(junk), record_fn, &got), 0);
	assert_int_equal(got.n, 1);
	assert_int_equal(p.discard, 0xffffffffull - 10 * sizeof(junk));
	ttrpc_parser_free(&p);
	recorder_free(&got);
}

static void test_parser_callback_error(void **state)
{
	(void)state;
	struct stream s = { 0 };
	uint64_t seed = 3;
	for (uint32_t i = 0; i < 6; i++)
		stream_frame(&s, 10 * i, 2 * i + 1, TTRPC_TYPE_REQUEST, 0, 10 * i, &seed);

	/* Via feed(). */
	struct ttrpc_parser p;
	struct recorder got = { .fail_at = 3, .fail_code = -EPROTO };
	ttrpc_parser_init(&p);
	assert_int_equal(ttrpc_parser_feed(&p, s.buf, s.len, record_fn, &got), -EPROTO);
	assert_int_equal(got.n, 3); /* frames after the failing one are not delivered */
	ttrpc_parser_free(&p);
	recorder_free(&got);

	/* Via space/commit: commit returns the callback's value as is. */
	got = (struct recorder){ .fail_at = 1, .fail_code = -EBADMSG };
	ttrpc_parser_init(&p);
	uint8_t *where;
	size_t room;
	assert_int_equal(ttrpc_parser_space(&p, &where, &room), 0);
	assert_true(room >= s.len);
	memcpy(where, s.buf, s.len);
	assert_int_equal(ttrpc_parser_commit(&p, s.len, record_fn, &got), -EBADMSG);
	assert_int_equal(got.n, 1);
	/* The parser still offers room after stopping mid-buffer. */
	assert_int_equal(ttrpc_parser_space(&p, &where, &room), 0);
	assert_true(room > 0);
	ttrpc_parser_free(&p);
	recorder_free(&got);
	stream_free(&s);

	/* An oversized frame's callback can stop the parser too. */
	struct stream o = { 0 };
	make_oversized_stream(&o, TTRPC_MAX_PAYLOAD + 1);
	got = (struct recorder){ .fail_at = 2, .fail_code = -EMSGSIZE };
	ttrpc_parser_init(&p);
	assert_int_equal(ttrpc_parser_feed(&p, o.buf, o.len, record_fn, &got), -EMSGSIZE);
	assert_int_equal(got.n, 2);
	assert_true(got.v[1].null_payload);
	ttrpc_parser_free(&p);
	recorder_free(&got);
	stream_free(&o);
}

static void test_parser_shrinks_after_large(void **state)
{
	(void)state;
	struct stream s = { 0 };
	uint64_t seed = 17;
	stream_frame(&s, 1u << 20, 1, TTRPC_TYPE_REQUEST, 0, 1u << 20, &seed);
	size_t first_end = s.len;
	stream_frame(&s, 20, 3, TTRPC_TYPE_REQUEST, 0, 20, &seed);

	struct ttrpc_parser p;
	struct recorder got = { 0 };
	ttrpc_parser_init(&p);
	/* Everything but the last byte of the large frame: the buffer must
	 * have grown to hold it. */
	assert_int_equal(ttrpc_parser_feed(&p, s.buf, first_end - 1, record_fn, &got), 0);
	assert_int_equal(got.n, 0);
	assert_true(p.cap >= (1u << 20) + TTRPC_HEADER_SIZE);
	/* Last byte plus part of the next header: not idle yet. */
	assert_int_equal(ttrpc_parser_feed(&p, s.buf + first_end - 1, 5, record_fn, &got), 0);
	assert_int_equal(got.n, 1);
	/* Rest: idle, buffer back to small. */
	assert_int_equal(
		ttrpc_parser_feed(&p, s.buf + first_end + 4, s.len - first_end - 4, record_fn, &got),
		0);
	assert_int_equal(got.n, 2);
	assert_same_frames(&got, &s.want);
	assert_true(p.cap <= IDLE_CAP_MAX);
	ttrpc_parser_free(&p);
	recorder_free(&got);
	stream_free(&s);
}

static void test_parser_space_always_room(void **state)
{
	(void)state;
	struct ttrpc_parser p;
	uint8_t *where;
	size_t room;
	ttrpc_parser_init(&p);
	assert_int_equal(ttrpc_parser_space(&p, &where, &room), 0);
	assert_true(room >= TTRPC_HEADER_SIZE);
	assert_non_null(where);

	/* Fill every offered byte with partial frames: a 64 KiB-ish frame
	 * whose header lands at the very end of the buffer. */
	struct stream s = { 0 };
	uint64_t seed = 23;
	stream_frame(&s, (uint32_t)(room - 3 - TTRPC_HEADER_SIZE), 1, 1, 0,
		     room - 3 - TTRPC_HEADER_SIZE, &seed);
	stream_frame(&s, 40000, 3, 1, 0, 40000, &seed);
	stream_frame(&s, 200000, 5, 1, 0, 200000, &seed);
	struct recorder got = { 0 };
	size_t off = 0;
	while (off < s.len) {
		assert_int_equal(ttrpc_parser_space(&p, &where, &room), 0);
		assert_true(room > 0);
		/* Always fill the buffer completely. */
		size_t n = room < s.len - off ? room : s.len - off;
		memcpy(where, s.buf + off, n);
		assert_int_equal(ttrpc_parser_commit(&p, n, record_fn, &got), 0);
		off += n;
	}
	assert_same_frames(&got, &s.want);
	assert_int_equal(ttrpc_parser_space(&p, &where, &room), 0);
	assert_true(room > 0);
	ttrpc_parser_free(&p);
	recorder_free(&got);
	stream_free(&s);
}

/* A random stream: mostly small frames, some large, and two oversized ones,
 * with random stream ids, types and flags. */
static void make_random_stream(struct stream *s, uint64_t seed)
{
	for (int i = 0; i < 400; i++) {
		uint64_t pick = rng_below(&seed, 1000);
		uint32_t len;
		if (i == 150)
			len = TTRPC_MAX_PAYLOAD + 1;
		else if (i == 151)
			len = TTRPC_MAX_PAYLOAD + 1 + (uint32_t)rng_below(&seed, 100000);
		else if (pick < 700)
			len = (uint32_t)rng_below(&seed, 64);
		else if (pick < 950)
			len = (uint32_t)rng_below(&seed, 8192);
		else if (pick < 995)
			len = (uint32_t)rng_below(&seed, 300000);
		else
			len = TTRPC_MAX_PAYLOAD - (uint32_t)rng_below(&seed, 3);
		stream_frame(s, len, (uint32_t)rng_next(&seed), (uint8_t)rng_next(&seed),
			     (uint8_t)rng_next(&seed), len, &seed);
	}
}

static void test_parser_random_splits(void **state)
{
	(void)state;
	struct stream s = { 0 };
	make_random_stream(&s, 0x5eed);

	/* Reference: the whole stream in one feed. */
	struct ttrpc_parser p;
	struct recorder whole = { 0 };
	ttrpc_parser_init(&p);
	assert_int_equal(ttrpc_parser_feed(&p, s.buf, s.len, record_fn, &whole), 0);
	assert_same_frames(&whole, &s.want);
	assert_true(p.cap <= IDLE_CAP_MAX);
	ttrpc_parser_free(&p);

	uint64_t seed = 0xc0ffee;
	for (int round = 0; round < 12; round++) {
		struct recorder got = { 0 };
		ttrpc_parser_init(&p);
		size_t off = 0, b = 0;
		while (off < s.len) {
			/* Mix tiny, medium and large pieces. */
			uint64_t kind = rng_below(&seed, 10);
			size_t want = kind < 3	 ? 1 + rng_below(&seed, 16)
				      : kind < 7 ? 1 + rng_below(&seed, 2048)
						 : 1 + rng_below(&seed, 300000);
			if (want > s.len - off)
				want = s.len - off;
			if (rng_below(&seed, 4) == 0) {
				assert_int_equal(ttrpc_parser_feed(&p, s.buf + off, want, record_fn,
								   &got),
						 0);
				off += want;
			} else {
				uint8_t *where;
				size_t room;
				assert_int_equal(ttrpc_parser_space(&p, &where, &room), 0);
				assert_true(room > 0);
				size_t n = want < room ? want : room;
				memcpy(where, s.buf + off, n);
				assert_int_equal(ttrpc_parser_commit(&p, n, record_fn, &got), 0);
				off += n;
			}
			while (b < s.nbounds && s.bounds[b] < off)
				b++;
			/* At a frame boundary the parser is idle and small. */
			if (b < s.nbounds && s.bounds[b] == off) {
				assert_int_equal(got.n, b + 1);
				assert_true(p.cap <= IDLE_CAP_MAX);
			}
		}
		assert_same_frames(&got, &whole);
		ttrpc_parser_free(&p);
		recorder_free(&got);
	}
	recorder_free(&whole);
	stream_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_layout),
		cmocka_unit_test(test_header_round_trip),
		cmocka_unit_test(test_parser_one_frame),
		cmocka_unit_test(test_parser_byte_at_a_time),
		cmocka_unit_test(test_parser_many_frames_one_feed),
		cmocka_unit_test(test_parser_zero_length),
		cmocka_unit_test(test_parser_max_payload),
		cmocka_unit_test(test_parser_oversized_one_feed),
		cmocka_unit_test(test_parser_oversized_pieces),
		cmocka_unit_test(test_parser_oversized_huge_length),
		cmocka_unit_test(test_parser_callback_error),
		cmocka_unit_test(test_parser_shrinks_after_large),
		cmocka_unit_test(test_parser_space_always_room),
		cmocka_unit_test(test_parser_random_splits),
	};
	return cmocka_run_group_tests_name("frame", tests, NULL, NULL);
}
