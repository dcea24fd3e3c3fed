#include "ttrpc/server.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "husk/cleanup.h"
#include "ttrpc/frame.h"
#include "ttrpc/ttrpc.pb-c.h"

#define DEFAULT_MAX_CALLS 1024
/* After accept() fails for lack of fds, stop accepting for a while rather
 * than spin on a listener that stays readable. */
#define ACCEPT_BACKOFF_NS (100ull * 1000 * 1000)

struct service {
	const ProtobufCServiceDescriptor *desc;
	const ttrpc_method_fn *handlers;
	ttrpc_method_fn *owned; /* handlers built by add_service_named, freed with the server */
	void *data;
};

struct listener {
	struct ttrpc_server *srv;
	int fd;
	struct ev_io *io;
	struct ev_timer *backoff;
	ttrpc_accept_filter_fn filter;
	void *filter_data;
	struct listener *next;
};

struct srv_conn {
	struct ttrpc_server *srv;
	struct ttrpc_conn *conn;
	struct ttrpc_call *calls;
	unsigned ncalls;
	struct srv_conn *prev, *next;
};

struct ttrpc_call {
	struct srv_conn *sc;
	uint32_t stream_id;
	Ttrpc__Request *request;
	ProtobufCMessage *req;
	const ProtobufCMethodDescriptor *method;
	uint64_t deadline;
	struct ev_timer *timer;
	bool in_handler, answered, deferred;
	ttrpc_cancel_fn on_cancel;
	void *cancel_data;
	struct ttrpc_call *prev, *next;
};

struct ttrpc_server {
	struct ev_loop *loop;
	struct ttrpc_server_opts opts;
	struct service *services;
	size_t nservices;
	struct listener *listeners;
	struct srv_conn *conns;
	size_t nconns;
};

static const Ttrpc__Request *call_request(const struct ttrpc_call *call)
{
	return call->request;
}

/* ---- replies ---- */

static int send_response(struct ttrpc_conn *conn, uint32_t stream_id, int code, const char *message,
			 const uint8_t *payload, size_t len)
{
	Ttrpc__Response resp = TTRPC__RESPONSE__INIT;
	Google__Rpc__Status status = GOOGLE__RPC__STATUS__INIT;
	if (code != TTRPC_OK) {
		status.code = code;
		status.message = (char *)message;
		resp.status = &status;
	} else {
		resp.payload.data = (uint8_t *)payload;
		resp.payload.len = len;
	}
	return ttrpc_conn_send(conn, stream_id, TTRPC_TYPE_RESPONSE, &resp.base, NULL, 0);
}

static void call_unlink(struct ttrpc_call *call)
{
	struct srv_conn *sc = call->sc;
	if (call->prev)
		call->prev->next = call->next;
	else
		sc->calls = call->next;
	if (call->next)
		call->next->prev = call->prev;
	sc->ncalls--;
}

static void call_free(struct ttrpc_call *call)
{
	ev_timer_cancel(call->timer);
	if (call->req)
		protobuf_c_message_free_unpacked(call->req, NULL);
	if (call->request)
		ttrpc__request__free_unpacked(call->request, NULL);
	free(call);
}

/* Ends the call after its answer was queued: freed now, or right after the
 * handler returns when it answered from inside the handler. */
static void call_end(struct ttrpc_call *call)
{
	call->answered = true;
	call_unlink(call);
	if (!call->in_handler)
		call_free(call);
}

static int call_answer(struct ttrpc_call *call, int code, const char *message, const uint8_t *payload,
		       size_t len)
{
	if (call->answered)
		return -EALREADY;
	int r = send_response(call->sc->conn, call->stream_id, code, message, payload, len);
	call_end(call);
	return r;
}

int ttrpc_call_reply(struct ttrpc_call *call, const ProtobufCMessage *resp)
{
	size_t len = protobuf_c_message_get_packed_size(resp);
	/* Response framing adds a tag and a length varint to the payload. */
	if (len > TTRPC_MAX_PAYLOAD - 16) {
		char msg[128];
		snprintf(msg, sizeof(msg), "response of %zu bytes exceeds maximum message size of %u",
			 len, TTRPC_MAX_PAYLOAD);
		return call_answer(call, TTRPC_RESOURCE_EXHAUSTED, msg, NULL, 0);
	}
	uint8_t small[4096];
	uint8_t *buf = len <= sizeof(small) ? small : malloc(len);
	if (!buf) {
		call_answer(call, TTRPC_RESOURCE_EXHAUSTED, "out of memory packing response", NULL, 0);
		return -ENOMEM;
	}
	protobuf_c_message_pack(resp, buf);
	int r = call_answer(call, TTRPC_OK, NULL, buf, len);
	if (buf != small)
		free(buf);
	return r;
}

int ttrpc_call_fail(struct ttrpc_call *call, int code, const char *fmt, ...)
{
	char msg[TTRPC_STATUS_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (code == TTRPC_OK)
		code = TTRPC_UNKNOWN;
	return call_answer(call, code, msg, NULL, 0);
}

void ttrpc_call_defer(struct ttrpc_call *call, ttrpc_cancel_fn on_cancel, void *data)
{
	call->deferred = true;
	call->on_cancel = on_cancel;
	call->cancel_data = data;
}

const char *ttrpc_call_metadata(const struct ttrpc_call *call, const char *key)
{
	const Ttrpc__Request *r = call_request(call);
	for (size_t i = 0; i < r->n_metadata; i++)
		if (strcmp(r->metadata[i]->key, key) == 0)
			return r->metadata[i]->value;
	return NULL;
}

size_t ttrpc_call_metadata_count(const struct ttrpc_call *call)
{
	return call_request(call)->n_metadata;
}

void ttrpc_call_metadata_at(const struct ttrpc_call *call, size_t i, const char **key,
			    const char **value)
{
	const Ttrpc__Request *r = call_request(call);
	*key = r->metadata[i]->key;
	*value = r->metadata[i]->value;
}

uint64_t ttrpc_call_deadline(const struct ttrpc_call *call)
{
	return call->deadline;
}

const char *ttrpc_call_method(const struct ttrpc_call *call)
{
	return call->method ? call->method->name : "";
}

/* The call ends without the handler's reply: tell the handler, then free. */
static void call_cancel(struct ttrpc_call *call)
{
	ttrpc_cancel_fn fn = call->on_cancel;
	void *data = call->cancel_data;
	call->answered = true;
	call_unlink(call);
	if (fn)
		fn(call, data);
	call_free(call);
}

static void on_deadline(void *data)
{
	struct ttrpc_call *call = data;
	call->timer = NULL; /* fired timers are gone */
	send_response(call->sc->conn, call->stream_id, TTRPC_DEADLINE_EXCEEDED,
		      "context deadline exceeded", NULL, 0);
	call_cancel(call);
}

/* ---- request dispatch ---- */

static const struct service *find_service(const struct ttrpc_server *srv, const char *name)
{
	for (size_t i = 0; i < srv->nservices; i++)
		if (strcmp(srv->services[i].desc->name, name) == 0)
			return &srv->services[i];
	return NULL;
}

static bool stream_in_use(const struct srv_conn *sc, uint32_t id)
{
	for (const struct ttrpc_call *c = sc->calls; c; c = c->next)
		if (c->stream_id == id)
			return true;
	return false;
}

static int reject(struct srv_conn *sc, uint32_t id, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int reject(struct srv_conn *sc, uint32_t id, int code, const char *fmt, ...)
{
	char msg[TTRPC_STATUS_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	int r = send_response(sc->conn, id, code, msg, NULL, 0);
	return r == -EMSGSIZE ? 0 : r;
}

static void run_handler(const struct service *svc, unsigned index, struct ttrpc_call *call)
{
	call->in_handler = true;
	svc->handlers[index](call, call->req, svc->data);
	call->in_handler = false;
	if (call->answered) {
		call_free(call);
		return;
	}
	if (!call->deferred)
		ttrpc_call_fail(call, TTRPC_INTERNAL, "%s/%s: handler returned without a reply",
				svc->desc->name, call->method->name);
}

static int on_request(struct srv_conn *sc, const struct ttrpc_header *h, const uint8_t *payload)
{
	struct ttrpc_server *srv = sc->srv;
	Ttrpc__Request *request = ttrpc__request__unpack(NULL, h->length, payload);
	if (!request)
		return reject(sc, h->stream_id, TTRPC_INVALID_ARGUMENT,
			      "unmarshal request error: invalid ttrpc Request of %u bytes", h->length);
	if (h->stream_id % 2 != 1) {
		ttrpc__request__free_unpacked(request, NULL);
		return reject(sc, h->stream_id, TTRPC_INVALID_ARGUMENT,
			      "StreamID must be odd for client initiated streams");
	}
	if (stream_in_use(sc, h->stream_id)) {
		ttrpc__request__free_unpacked(request, NULL);
		return -EPROTO; /* answers would be ambiguous: drop the connection */
	}
	unsigned max = srv->opts.max_calls_per_conn ? srv->opts.max_calls_per_conn : DEFAULT_MAX_CALLS;
	const struct service *svc = find_service(srv, request->service);
	const ProtobufCMethodDescriptor *method =
		svc ? protobuf_c_service_descriptor_get_method_by_name(svc->desc, request->method)
		    : NULL;
	int r;
	if (sc->ncalls >= max) {
		r = reject(sc, h->stream_id, TTRPC_RESOURCE_EXHAUSTED,
			   "too many calls in flight on this connection (limit %u)", max);
		goto refused;
	}
	if (!svc) {
		r = reject(sc, h->stream_id, TTRPC_UNIMPLEMENTED, "service %s", request->service);
		goto refused;
	}
	if (!method || !svc->handlers[method - svc->desc->methods]) {
		r = reject(sc, h->stream_id, TTRPC_UNIMPLEMENTED, "method %s", request->method);
		goto refused;
	}
	if (request->timeout_nano < 0) {
		r = reject(sc, h->stream_id, TTRPC_DEADLINE_EXCEEDED, "context deadline exceeded");
		goto refused;
	}

	ProtobufCMessage *req = protobuf_c_message_unpack(method->input, NULL, request->payload.len,
							   request->payload.data);
	if (!req) {
		r = reject(sc, h->stream_id, TTRPC_INVALID_ARGUMENT,
			   "%s/%s: payload is not a valid %s", svc->desc->name, method->name,
			   method->input->name);
		goto refused;
	}
	struct ttrpc_call *call = calloc(1, sizeof(*call));
	if (!call) {
		protobuf_c_message_free_unpacked(req, NULL);
		ttrpc__request__free_unpacked(request, NULL);
		return reject(sc, h->stream_id, TTRPC_RESOURCE_EXHAUSTED, "out of memory");
	}
	call->sc = sc;
	call->stream_id = h->stream_id;
	call->request = request;
	call->req = req;
	call->method = method;
	call->next = sc->calls;
	if (sc->calls)
		sc->calls->prev = call;
	sc->calls = call;
	sc->ncalls++;
	if (request->timeout_nano > 0) {
		call->deadline = ev_now_ns() + (uint64_t)request->timeout_nano;
		if (ev_timer_add(srv->loop, (uint64_t)request->timeout_nano, on_deadline, call,
				 &call->timer) < 0) {
			ttrpc_call_fail(call, TTRPC_RESOURCE_EXHAUSTED, "out of memory");
			return 0;
		}
	}
	if (srv->opts.before_call)
		srv->opts.before_call(svc->desc->name, method->name, srv->opts.before_call_data);
	run_handler(svc, (unsigned)(method - svc->desc->methods), call);
	return 0;

refused:
	ttrpc__request__free_unpacked(request, NULL);
	return r;
}

static int srv_on_frame(void *owner, const struct ttrpc_header *h, const uint8_t *payload)
{
	struct srv_conn *sc = owner;
	if (h->stream_id == 0)
		return -EPROTO;
	switch (h->type) {
	case TTRPC_TYPE_REQUEST:
		break;
	case TTRPC_TYPE_DATA:
		return 0; /* streams are not offered; ignored as ttrpc 1.1 does */
	default:
		return -EPROTO;
	}
	if (!payload)
		return reject(sc, h->stream_id, TTRPC_RESOURCE_EXHAUSTED,
			      "message length %u exceed maximum message size of %u", h->length,
			      TTRPC_MAX_PAYLOAD);
	return on_request(sc, h, payload);
}

static void srv_conn_free(struct srv_conn *sc)
{
	struct ttrpc_server *srv = sc->srv;
	while (sc->calls)
		call_cancel(sc->calls);
	if (sc->prev)
		sc->prev->next = sc->next;
	else
		srv->conns = sc->next;
	if (sc->next)
		sc->next->prev = sc->prev;
	srv->nconns--;
	free(sc);
}

static void srv_on_close(void *owner, int reason)
{
	(void)reason;
	srv_conn_free(owner);
}

static const struct ttrpc_conn_ops srv_conn_ops = {
	.on_frame = srv_on_frame,
	.on_close = srv_on_close,
};

static bool peer_allowed(const struct ttrpc_server *srv, int fd)
{
	if (!srv->opts.require_same_uid)
		return true;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return false;
	if (ss.ss_family != AF_UNIX)
		return true;
	struct ucred cred;
	len = sizeof(cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return false;
	return cred.uid == getuid();
}

int ttrpc_server_add_conn(struct ttrpc_server *srv, int fd, struct husk_err *err)
{
	if (!peer_allowed(srv, fd)) {
		close(fd);
		return husk_err_set(err, -EPERM, "ttrpc: peer uid differs from ours");
	}
	struct srv_conn *sc = calloc(1, sizeof(*sc));
	if (!sc) {
		close(fd);
		return husk_err_set(err, -ENOMEM, "ttrpc: out of memory");
	}
	sc->srv = srv;
	int r = ttrpc_conn_new(srv->loop, fd, &srv_conn_ops, sc, &sc->conn, err);
	if (r < 0) {
		free(sc);
		return r;
	}
	sc->next = srv->conns;
	if (srv->conns)
		srv->conns->prev = sc;
	srv->conns = sc;
	srv->nconns++;
	return 0;
}

size_t ttrpc_server_conn_count(const struct ttrpc_server *srv)
{
	return srv->nconns;
}

static void resume_accept(void *data)
{
	struct listener *l = data;
	l->backoff = NULL;
	ev_io_set_events(l->io, EPOLLIN);
}

static void on_accept(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io;
	(void)events;
	struct listener *l = data;
	for (int i = 0; i < 64; i++) {
		int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (c < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				ev_io_set_events(l->io, 0);
				ev_timer_add(l->srv->loop, ACCEPT_BACKOFF_NS, resume_accept, l,
					     &l->backoff);
			}
			return;
		}
		if (l->filter && l->filter(c, l->filter_data) < 0) {
			close(c);
			continue;
		}
		ttrpc_server_add_conn(l->srv, c, NULL);
	}
}

int ttrpc_server_add_listener(struct ttrpc_server *srv, int listen_fd, struct husk_err *err)
{
	return ttrpc_server_add_listener_filtered(srv, listen_fd, NULL, NULL, err);
}

int ttrpc_server_add_listener_filtered(struct ttrpc_server *srv, int listen_fd,
				       ttrpc_accept_filter_fn filter, void *data,
				       struct husk_err *err)
{
	struct listener *l = calloc(1, sizeof(*l));
	if (!l) {
		close(listen_fd);
		return husk_err_set(err, -ENOMEM, "ttrpc: out of memory");
	}
	l->srv = srv;
	l->fd = listen_fd;
	l->filter = filter;
	l->filter_data = data;
	int r = ev_io_add(srv->loop, listen_fd, EPOLLIN, on_accept, l, &l->io, err);
	if (r < 0) {
		close(listen_fd);
		free(l);
		return r;
	}
	l->next = srv->listeners;
	srv->listeners = l;
	return 0;
}

int ttrpc_server_add_service(struct ttrpc_server *srv, const ProtobufCServiceDescriptor *desc,
			     const ttrpc_method_fn *handlers, void *data, struct husk_err *err)
{
	if (find_service(srv, desc->name))
		return husk_err_set(err, -EEXIST, "ttrpc: service %s registered twice", desc->name);
	struct service *s = realloc(srv->services, (srv->nservices + 1) * sizeof(*s));
	if (!s)
		return husk_err_set(err, -ENOMEM, "ttrpc: out of memory");
	srv->services = s;
	srv->services[srv->nservices++] = (struct service){ desc, handlers, NULL, data };
	return 0;
}

int ttrpc_server_add_service_named(struct ttrpc_server *srv, const ProtobufCServiceDescriptor *desc,
				   const struct ttrpc_named_method *methods, size_t n, void *data,
				   struct husk_err *err)
{
	ttrpc_method_fn *handlers = calloc(desc->n_methods ? desc->n_methods : 1, sizeof(*handlers));
	if (!handlers)
		return husk_err_set(err, -ENOMEM, "ttrpc: out of memory");
	for (size_t i = 0; i < n; i++) {
		const ProtobufCMethodDescriptor *m =
			protobuf_c_service_descriptor_get_method_by_name(desc, methods[i].name);
		if (!m) {
			free(handlers);
			return husk_err_set(err, -EINVAL, "ttrpc: service %s has no method %s",
					    desc->name, methods[i].name);
		}
		handlers[m - desc->methods] = methods[i].fn;
	}
	int r = ttrpc_server_add_service(srv, desc, handlers, data, err);
	if (r < 0) {
		free(handlers);
		return r;
	}
	srv->services[srv->nservices - 1].owned = handlers;
	return 0;
}

int ttrpc_server_new(struct ev_loop *loop, const struct ttrpc_server_opts *opts,
		     struct ttrpc_server **out, struct husk_err *err)
{
	struct ttrpc_server *srv = calloc(1, sizeof(*srv));
	if (!srv)
		return husk_err_set(err, -ENOMEM, "ttrpc: out of memory");
	srv->loop = loop;
	if (opts)
		srv->opts = *opts;
	*out = srv;
	return 0;
}

void ttrpc_server_free(struct ttrpc_server *srv)
{
	if (!srv)
		return;
	while (srv->listeners) {
		struct listener *l = srv->listeners;
		srv->listeners = l->next;
		ev_io_del(l->io);
		ev_timer_cancel(l->backoff);
		close(l->fd);
		free(l);
	}
	while (srv->conns) {
		struct srv_conn *sc = srv->conns;
		ttrpc_conn_close(sc->conn);
		srv_conn_free(sc);
	}
	for (size_t i = 0; i < srv->nservices; i++)
		free(srv->services[i].owned);
	free(srv->services);
	free(srv);
}
