/* Events to containerd: containerd.services.events.ttrpc.v1.Events/Forward
 * on $TTRPC_ADDRESS, one envelope per event, on one connection so that they
 * arrive in the order published. Best effort: a failure is logged, never
 * fatal (containerd learns exits through Wait as well). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "github.com/containerd/containerd/api/services/ttrpc/events/v1/events.pb-c.h"
#include "husk/sock.h"
#include "shim.h"

#define EVENTS_SERVICE "containerd.services.events.ttrpc.v1.Events"

static void on_forwarded(struct ttrpc_reply *reply, void *data)
{
	char *topic = data;
	if (reply->status.code != TTRPC_OK)
		shim_log("publishing %s: %s: %s", topic, ttrpc_code_name(reply->status.code),
			 reply->status.message);
	free(topic);
}

static void on_events_closed(int reason, void *data)
{
	(void)reason;
	struct shim *s = data;
	/* Reconnect on the next event; freeing here would free the client from
	 * inside its own callback. */
	s->events_broken = true;
}

static int events_client(struct shim *s, struct husk_err *err)
{
	if (s->events && !s->events_broken)
		return 0;
	ttrpc_client_free(s->events);
	s->events = NULL;
	s->events_broken = false;
	if (!s->opt.ttrpc_address || !*s->opt.ttrpc_address)
		return husk_err_set(err, -ENOENT, "TTRPC_ADDRESS is not set");
	const char *path = s->opt.ttrpc_address;
	if (strncmp(path, "unix://", 7) == 0)
		path += 7;
	int fd = husk_unix_connect(path, err);
	if (fd < 0)
		return fd;
	int r = ttrpc_client_new(s->loop, fd, &s->events, err);
	if (r < 0)
		return r;
	ttrpc_client_on_close(s->events, on_events_closed, s);
	return 0;
}

void shim_publish(struct shim *s, const char *topic, const ProtobufCMessage *event)
{
	struct husk_err err = { 0 };
	if (events_client(s, &err) < 0) {
		shim_log("publishing %s: %s", topic, err.msg);
		return;
	}
	size_t len = protobuf_c_message_get_packed_size(event);
	uint8_t *buf = malloc(len ? len : 1);
	char type_url[128];
	char *topic_copy = strdup(topic);
	if (!buf || !topic_copy) {
		free(buf);
		free(topic_copy);
		shim_log("publishing %s: out of memory", topic);
		return;
	}
	protobuf_c_message_pack(event, buf);
	/* containerd's typeurl names events by their proto message name. */
	snprintf(type_url, sizeof(type_url), "%s", event->descriptor->name);
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	ts.seconds = now.tv_sec;
	ts.nanos = (int32_t)now.tv_nsec;
	Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
	any.type_url = type_url;
	any.value.data = buf;
	any.value.len = len;
	Containerd__Services__Events__Ttrpc__V1__Envelope env =
		CONTAINERD__SERVICES__EVENTS__TTRPC__V1__ENVELOPE__INIT;
	env.timestamp = &ts;
	env.namespace_ = (char *)s->opt.namespace_;
	env.topic = (char *)topic;
	env.event = &any;
	Containerd__Services__Events__Ttrpc__V1__ForwardRequest req =
		CONTAINERD__SERVICES__EVENTS__TTRPC__V1__FORWARD_REQUEST__INIT;
	req.envelope = &env;
	const struct ttrpc_kv md[] = { { "containerd-namespace-ttrpc", s->opt.namespace_ } };
	const struct ttrpc_call_opts opts = { .timeout_ns = 5000000000ull, .metadata = md,
					      .n_metadata = 1 };
	int r = ttrpc_client_start(s->events, EVENTS_SERVICE, "Forward", &req.base, NULL, 0, NULL,
				   &opts, on_forwarded, topic_copy);
	free(buf);
	if (r < 0) {
		shim_log("publishing %s: %s", topic, strerror(-r));
		free(topic_copy);
	}
}
