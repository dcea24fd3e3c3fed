/* ttrpc framing: a 10-byte big-endian header (u32 payload length, u32 stream
 * id, u8 type, u8 flags) followed by the payload, at most 4 MiB.
 *
 * The parser is transport-free: the caller reads straight into the parser's
 * buffer (ttrpc_parser_space/commit), and each complete frame is handed to a
 * callback. A frame whose length exceeds the cap is reported once with a NULL
 * payload and its bytes are skipped, so the connection stays usable. */
#ifndef TTRPC_FRAME_H
#define TTRPC_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define TTRPC_HEADER_SIZE 10
#define TTRPC_MAX_PAYLOAD (4u << 20)

enum ttrpc_type {
	TTRPC_TYPE_REQUEST = 1,
	TTRPC_TYPE_RESPONSE = 2,
	TTRPC_TYPE_DATA = 3, /* streaming (ttrpc >= 1.2); not used by unary calls */
};

struct ttrpc_header {
	uint32_t length;
	uint32_t stream_id;
	uint8_t type;
	uint8_t flags;
};

void ttrpc_header_encode(const struct ttrpc_header *h, uint8_t out[TTRPC_HEADER_SIZE]);
void ttrpc_header_decode(const uint8_t in[TTRPC_HEADER_SIZE], struct ttrpc_header *h);

/* Called per frame. `payload` is NULL when h->length > TTRPC_MAX_PAYLOAD
 * (the payload is being discarded). Returning a negative errno stops the
 * parser; ttrpc_parser_commit() then returns that value. */
typedef int (*ttrpc_frame_fn)(void *data, const struct ttrpc_header *h, const uint8_t *payload);

struct ttrpc_parser {
	uint8_t *buf;
	size_t cap, start, end;
	uint64_t discard; /* payload bytes of an oversized frame still to skip */
};

void ttrpc_parser_init(struct ttrpc_parser *p);
void ttrpc_parser_free(struct ttrpc_parser *p);
/* Returns where the next read should land and how much fits (>0), or
 * -ENOMEM. */
int ttrpc_parser_space(struct ttrpc_parser *p, uint8_t **where, size_t *len);
/* Accounts `n` bytes written into the space and dispatches complete frames. */
int ttrpc_parser_commit(struct ttrpc_parser *p, size_t n, ttrpc_frame_fn fn, void *data);
/* Convenience for tests and fuzzing: copies `len` bytes in and commits. */
int ttrpc_parser_feed(struct ttrpc_parser *p, const uint8_t *bytes, size_t len, ttrpc_frame_fn fn,
		      void *data);

#endif
