/* Events to containerd: containerd.services.events.ttrpc.v1.Events/Forward
 * on $TTRPC_ADDRESS. Events are queued and delivered one at a time, in the
 * order published, over one connection. When containerd is away (a
 * restart), the head event is retried with backoff (100 ms doubling to
 * 5 s) on a fresh connection, as containerd-shim-runc-v2's publisher
 * requeues; bounded: an event still undelivered PUBLISH_GIVE_UP_NS after it
 * was published is dropped, and at most PUBLISH_QUEUE_MAX wait (the oldest
 * goes first), each drop logged as an error. */
#ifndef HUSK_SHIM_PUBLISH_H
#define HUSK_SHIM_PUBLISH_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "ttrpc/loop.h"

#define PUBLISH_QUEUE_MAX 2048
#define PUBLISH_GIVE_UP_NS (120ull * 1000000000ull)

struct publisher;

/* `address` (unix://PATH or PATH; may be empty: every event is dropped with
 * a log line) and `namespace_` are copied. */
struct publisher *publisher_new(struct ev_loop *loop, const char *address, const char *namespace_);
/* Tighter bounds (tests): at most `max` queued, each kept `give_up_ns`. */
void publisher_set_limits(struct publisher *p, size_t max, uint64_t give_up_ns);
/* Queues `event` (packed now, stamped now) under `topic`. */
void publisher_send(struct publisher *p, const char *topic, const ProtobufCMessage *event);
/* Events not yet delivered. */
size_t publisher_queued(const struct publisher *p);
/* Runs the loop until the queue is empty or `timeout_ms` passed (shim
 * exit: what containerd can still take). */
void publisher_drain(struct publisher *p, unsigned timeout_ms);
/* Drops what is queued (logged) and frees. NULL is ignored. */
void publisher_free(struct publisher *p);

#endif
