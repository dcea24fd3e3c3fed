/* The event queue to containerd (publish.h). Only the head is in flight,
 * so events arrive in the order published even across reconnects. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "github.com/containerd/containerd/api/services/ttrpc/events/v1/events.pb-c.h"
#include "husk/cleanup.h"
#include "husk/sock.h"
#include "log.h"
#include "publish.h"
#include "ttrpc/client.h"

#define EVENTS_SERVICE "containerd.services.events.ttrpc.v1.Events"
#define FORWARD_TIMEOUT_NS (5ull * 1000000000ull)
#define BACKOFF_MIN_NS (100ull * 1000000ull)
#define BACKOFF_MAX_NS (5ull * 1000000000ull)

struct item {
	char *topic;
	uint8_t *req; /* a packed ForwardRequest */
	size_t len;
	uint64_t queued_ns;
	unsigned attempts;
	struct item *next;
};

struct publisher {
	struct ev_loop *loop;
	char *path, *ns;
	struct ttrpc_client *client;
	bool client_broken; /* closed: replaced before the next send */
	struct item *head, **tail;
	size_t n;
	bool in_flight;
	struct ev_timer *retry;
	uint64_t backoff_ns;
	size_t max;
	uint64_t give_up_ns;
};

static void item_free(struct item *it)
{
	free(it->topic);
	free(it->req);
	free(it);
}

static void drop_head(struct publisher *p, const char *why)
{
	struct item *it = p->head;
	shim_log_at("error", NULL, "event %s dropped: %s", it->topic, why);
	p->head = it->next;
	if (!p->head)
		p->tail = &p->head;
	p->n--;
	item_free(it);
}

static void pump(struct publisher *p);

static void on_retry(void *data)
{
	struct publisher *p = data;
	p->retry = NULL;
	pump(p);
}

static void on_closed(int reason, void *data)
{
	(void)reason;
	struct publisher *p = data;
	/* Freed on the next send: not from inside its own callback. */
	p->client_broken = true;
}

/* The head failed: try again later, or give it up. */
static void retry_later(struct publisher *p, const char *why)
{
	struct item *it = p->head;
	if (ev_now_ns() - it->queued_ns >= p->give_up_ns) {
		drop_head(p, why);
		p->backoff_ns = 0;
		pump(p);
		return;
	}
	if (it->attempts == 1)
		shim_log_at("warning", NULL, "publishing %s: %s; retrying", it->topic, why);
	p->backoff_ns = p->backoff_ns ? p->backoff_ns * 2 : BACKOFF_MIN_NS;
	if (p->backoff_ns > BACKOFF_MAX_NS)
		p->backoff_ns = BACKOFF_MAX_NS;
	if (ev_timer_add(p->loop, p->backoff_ns, on_retry, p, &p->retry) < 0) {
		p->retry = NULL;
		drop_head(p, "no timer for the retry");
	}
}

static void on_forwarded(struct ttrpc_reply *reply, void *data)
{
	struct publisher *p = data;
	p->in_flight = false;
	if (!p->head) /* the publisher is being freed */
		return;
	if (reply->status.code == TTRPC_OK) {
		struct item *it = p->head;
		if (it->attempts > 1)
			shim_log("published %s after %u attempts", it->topic, it->attempts);
		p->head = it->next;
		if (!p->head)
			p->tail = &p->head;
		p->n--;
		item_free(it);
		p->backoff_ns = 0;
		pump(p);
		return;
	}
	/* containerd going away mid-call (UNAVAILABLE, CANCELLED) or a slow
	 * containerd: the same again later. A refusal of the event itself
	 * would come back the same each time: dropped after its window. */
	if (reply->status.code == TTRPC_UNAVAILABLE || reply->status.code == TTRPC_CANCELLED)
		p->client_broken = true;
	char why[TTRPC_STATUS_MSG_MAX + 32];
	snprintf(why, sizeof(why), "%s: %s", ttrpc_code_name(reply->status.code),
		 reply->status.message);
	retry_later(p, why);
}

static int connect_client(struct publisher *p, struct husk_err *err)
{
	if (p->client && !p->client_broken)
		return 0;
	ttrpc_client_free(p->client);
	p->client = NULL;
	p->client_broken = false;
	if (!*p->path)
		return husk_err_set(err, -ENOENT, "TTRPC_ADDRESS is not set");
	int fd = husk_unix_connect(p->path, err);
	if (fd < 0)
		return fd;
	int r = ttrpc_client_new(p->loop, fd, &p->client, err);
	if (r < 0)
		return r;
	ttrpc_client_on_close(p->client, on_closed, p);
	return 0;
}

/* Sends the head unless one is in flight or a retry is pending. */
static void pump(struct publisher *p)
{
	if (!p->head || p->in_flight || p->retry)
		return;
	struct item *it = p->head;
	it->attempts++;
	struct husk_err err = { 0 };
	if (connect_client(p, &err) < 0) {
		if (!*p->path) {
			drop_head(p, err.msg);
			pump(p);
			return;
		}
		retry_later(p, err.msg);
		return;
	}
	const struct ttrpc_kv md[] = { { "containerd-namespace-ttrpc", p->ns } };
	const struct ttrpc_call_opts opts = { .timeout_ns = FORWARD_TIMEOUT_NS, .metadata = md,
					      .n_metadata = 1 };
	int r = ttrpc_client_start(p->client, EVENTS_SERVICE, "Forward", NULL, it->req, it->len,
				   NULL, &opts, on_forwarded, p);
	if (r < 0) {
		p->client_broken = true;
		retry_later(p, strerror(-r));
		return;
	}
	p->in_flight = true;
}

struct publisher *publisher_new(struct ev_loop *loop, const char *address, const char *namespace_)
{
	struct publisher *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	const char *path = address ? address : "";
	if (strncmp(path, "unix://", 7) == 0)
		path += 7;
	p->loop = loop;
	p->path = strdup(path);
	p->ns = strdup(namespace_ ? namespace_ : "");
	p->tail = &p->head;
	p->max = PUBLISH_QUEUE_MAX;
	p->give_up_ns = PUBLISH_GIVE_UP_NS;
	if (!p->path || !p->ns) {
		publisher_free(p);
		return NULL;
	}
	return p;
}

/* The ForwardRequest for `event`, packed, stamped now. */
static uint8_t *pack_forward(const struct publisher *p, const char *topic,
			     const ProtobufCMessage *event, size_t *len)
{
	size_t elen = protobuf_c_message_get_packed_size(event);
	_cleanup_free_ uint8_t *ebuf = malloc(elen ? elen : 1);
	if (!ebuf)
		return NULL;
	protobuf_c_message_pack(event, ebuf);
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	ts.seconds = now.tv_sec;
	ts.nanos = (int32_t)now.tv_nsec;
	Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
	/* containerd's typeurl names events by their proto message name. */
	any.type_url = (char *)event->descriptor->name;
	any.value.data = ebuf;
	any.value.len = elen;
	Containerd__Services__Events__Ttrpc__V1__Envelope env =
		CONTAINERD__SERVICES__EVENTS__TTRPC__V1__ENVELOPE__INIT;
	env.timestamp = &ts;
	env.namespace_ = p->ns;
	env.topic = (char *)topic;
	env.event = &any;
	Containerd__Services__Events__Ttrpc__V1__ForwardRequest req =
		CONTAINERD__SERVICES__EVENTS__TTRPC__V1__FORWARD_REQUEST__INIT;
	req.envelope = &env;
	*len = protobuf_c_message_get_packed_size(&req.base);
	uint8_t *buf = malloc(*len ? *len : 1);
	if (buf)
		protobuf_c_message_pack(&req.base, buf);
	return buf;
}

void publisher_send(struct publisher *p, const char *topic, const ProtobufCMessage *event)
{
	struct item *it = calloc(1, sizeof(*it));
	if (it) {
		it->topic = strdup(topic);
		it->req = pack_forward(p, topic, event, &it->len);
		it->queued_ns = ev_now_ns();
	}
	if (!it || !it->topic || !it->req) {
		shim_log_at("error", NULL, "event %s dropped: out of memory", topic);
		if (it)
			item_free(it);
		return;
	}
	if (p->n >= p->max) {
		/* Never the one in flight: its reply pops the head. */
		if (p->in_flight && p->head->next) {
			struct item *old = p->head->next;
			p->head->next = old->next;
			if (p->tail == &old->next)
				p->tail = &p->head->next;
			p->n--;
			shim_log_at("error", NULL, "event %s dropped: %zu events queued",
				    old->topic, p->max);
			item_free(old);
		} else if (!p->in_flight) {
			char why[64];
			snprintf(why, sizeof(why), "%zu events queued", p->max);
			drop_head(p, why);
		}
	}
	*p->tail = it;
	p->tail = &it->next;
	p->n++;
	pump(p);
}

void publisher_set_limits(struct publisher *p, size_t max, uint64_t give_up_ns)
{
	p->max = max ? max : 1;
	p->give_up_ns = give_up_ns;
}

size_t publisher_queued(const struct publisher *p)
{
	return p ? p->n : 0;
}

void publisher_drain(struct publisher *p, unsigned timeout_ms)
{
	if (!p)
		return;
	uint64_t end = ev_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	while (p->n && ev_now_ns() < end) {
		uint64_t left_ms = (end - ev_now_ns()) / 1000000ull;
		if (ev_run_once(p->loop, (int)(left_ms ? left_ms : 1)) < 0)
			break;
	}
}

void publisher_free(struct publisher *p)
{
	if (!p)
		return;
	ev_timer_cancel(p->retry);
	/* Empty the queue first: the cancelled Forward's callback (run by
	 * ttrpc_client_free) sees no head and does nothing. */
	while (p->head)
		drop_head(p, "the shim is exiting");
	ttrpc_client_free(p->client);
	free(p->path);
	free(p->ns);
	free(p);
}
