/* huskd's clients: one request a connection (SOCK_SEQPACKET, JSON),
 * answered from the loop without waiting for anything.
 *
 *   {"take": {"shape": KEY, "slots": N}}  -> the VM's hand-over message and
 *        its fds with the lifeline last, or {"error": TEXT, "errno": N}
 *        (EAGAIN: none ready, ENOMSG: no such shape)
 *   {"status": {}}                        -> {"shapes": [...]}
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <json-c/json.h>

#include "husk/cleanup.h"
#include "huskd.h"

/* A client that says nothing this long is dropped. */
#define REQUEST_WAIT_NS (5000ull * 1000000ull)

struct client {
	struct huskd *d;
	int fd;
	struct ev_io *io;
	struct ev_timer *timer;
};

static void client_free(struct client *c)
{
	ev_timer_cancel(c->timer);
	ev_io_del(c->io);
	close(c->fd);
	free(c);
}

static void client_silent(void *data)
{
	struct client *c = data;
	c->timer = NULL; /* fired: gone */
	client_free(c);
}

static void send_json(int fd, json_object *o, const int *fds, size_t n_fds)
{
	size_t len;
	const char *text = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
	husk_msg_send(fd, text, len, fds, n_fds);
}

static void send_error(int fd, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void send_error(int fd, int code, const char *fmt, ...)
{
	char text[HUSK_ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	json_object *o = json_object_new_object();
	json_object_object_add(o, "error", json_object_new_string(text));
	json_object_object_add(o, "errno", json_object_new_int(code));
	send_json(fd, o, NULL, 0);
	json_object_put(o);
}

static void take(struct huskd *d, int fd, json_object *req)
{
	json_object *k = NULL, *sl = NULL;
	if (!json_object_object_get_ex(req, "shape", &k) || !json_object_is_type(k, json_type_string)) {
		send_error(fd, EINVAL, "take: \"shape\" missing");
		return;
	}
	int64_t slots = json_object_object_get_ex(req, "slots", &sl) ? json_object_get_int64(sl) : 0;
	if (slots < 0 || slots > HUSK_HOTPLUG_MAX) {
		send_error(fd, EINVAL, "take: slots %lld: want 0 to %d", (long long)slots,
			   HUSK_HOTPLUG_MAX);
		return;
	}
	bool known;
	const char *key = json_object_get_string(k);
	struct pool_vm *v = pool_find_ready(d, key, (unsigned)slots, &known);
	if (!known) {
		/* A client with a rebuilt kernel (or initrd, husk-vsockd) asks for
		 * a shape whose files changed under us: a few stat calls. */
		pool_refresh_keys(d);
		v = pool_find_ready(d, key, (unsigned)slots, &known);
	}
	if (!known) {
		send_error(fd, ENOMSG, "no shape here serves that VM with %lld slots", (long long)slots);
		return;
	}
	if (!v) {
		send_error(fd, EAGAIN, "no VM of that shape is ready");
		return;
	}
	int fds[HUSK_MSG_FDS_MAX];
	memcpy(fds, v->fds, v->n_fds * sizeof(int));
	fds[v->n_fds] = v->lifeline_fd;
	/* A client gone before the VM reached it changes nothing: the VM
	 * stays ready. Once sent, it is the client's, even if the client dies
	 * before reading it: the lifeline then closes with its socket. */
	if (husk_msg_send(fd, v->msg, strlen(v->msg), fds, v->n_fds + 1) < 0) {
		huskd_log("VM %s: the client left before it was handed over; still ready", v->name);
		return;
	}
	huskd_log("VM %s (shape %s) handed out", v->name, v->shape->name);
	pool_handed(d, v);
}

static void status(struct huskd *d, int fd)
{
	json_object *o = json_object_new_object(), *list = json_object_new_array();
	for (struct shape *s = d->shapes; s; s = s->next) {
		json_object *j = json_object_new_object();
		json_object_object_add(j, "name", json_object_new_string(s->name));
		json_object_object_add(j, "key", json_object_new_string(s->key));
		json_object_object_add(j, "slots", json_object_new_int((int)s->slots));
		json_object_object_add(j, "target", json_object_new_int((int)s->ready_target));
		json_object_object_add(j, "warm_up",
				       json_object_new_boolean(s->warm_up && s->d->warm_image));
		json_object_object_add(j, "ready", json_object_new_int((int)s->ready));
		json_object_object_add(j, "booting", json_object_new_int((int)s->booting));
		json_object_object_add(j, "handed_out", json_object_new_int((int)s->handed));
		json_object_object_add(j, "taken", json_object_new_int64((int64_t)s->taken));
		json_object_object_add(j, "boot_failures",
				       json_object_new_int64((int64_t)s->boot_failures));
		json_object_object_add(j, "ready_vm_deaths", json_object_new_int64((int64_t)s->vm_deaths));
		json_object_object_add(j, "last_boot_ms",
				       json_object_new_int64((int64_t)(s->last_boot_ns / 1000000u)));
		json_object_object_add(j, "last_error", json_object_new_string(s->last_error));
		json_object *names = json_object_new_array();
		for (struct pool_vm *v = d->vms; v; v = v->next)
			if (v->shape == s && v->state == PVM_READY)
				json_object_array_add(names, json_object_new_string(v->name));
		json_object_object_add(j, "ready_vms", names);
		json_object_array_add(list, j);
	}
	json_object_object_add(o, "shapes", list);
	send_json(fd, o, NULL, 0);
	json_object_put(o);
}

static void on_request(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io, (void)events;
	struct client *c = data;
	char buf[HUSKD_MSG_MAX + 1];
	int fds[HUSK_MSG_FDS_MAX];
	size_t n_fds = 0;
	ssize_t n = husk_msg_recv(fd, buf, HUSKD_MSG_MAX, fds, &n_fds);
	if (n == -EAGAIN)
		return;
	for (size_t i = 0; i < n_fds; i++)
		close(fds[i]); /* requests carry none */
	if (n > 0) {
		buf[n] = '\0';
		json_object *msg = json_tokener_parse(buf), *req;
		if (msg && json_object_object_get_ex(msg, "take", &req))
			take(c->d, fd, req);
		else if (msg && json_object_object_get_ex(msg, "status", &req))
			status(c->d, fd);
		else
			send_error(fd, EINVAL, "a request is {\"take\": {...}} or {\"status\": {}}");
		json_object_put(msg);
	} else if (n == -EMSGSIZE) {
		send_error(fd, EMSGSIZE, "request larger than %d bytes", HUSKD_MSG_MAX);
	}
	client_free(c);
}

void serve_accept(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io, (void)events;
	struct huskd *d = data;
	for (;;) {
		int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (cfd < 0)
			return;
		struct client *c = calloc(1, sizeof(*c));
		if (!c) {
			close(cfd);
			continue;
		}
		c->d = d;
		c->fd = cfd;
		if (ev_io_add(d->loop, cfd, EPOLLIN, on_request, c, &c->io, NULL) < 0 ||
		    ev_timer_add(d->loop, REQUEST_WAIT_NS, client_silent, c, &c->timer) < 0)
			client_free(c);
	}
}
