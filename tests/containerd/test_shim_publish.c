/* The shim's event publisher (host-connector/shim/publish.c) against a real
 * ttrpc Events/Forward server on a unix socket that comes and goes, as
 * containerd does across a restart: nothing published while it is away is
 * lost, order is kept, and the bounds hold. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "github.com/containerd/containerd/api/events/task.pb-c.h"
#include "github.com/containerd/containerd/api/services/ttrpc/events/v1/events.pb-c.h"
#include "google/protobuf/empty.pb-c.h"
#include "husk/sock.h"
#include "../../host-connector/shim/publish.h"
#include "ttrpc/server.h"

struct sink {
	struct ev_loop *loop;
	struct ttrpc_server *srv;
	char path[108];
	char topics[64][64];
	char ids[64][64];
	unsigned n;
	bool refuse; /* answer Forward with an error */
};

static void on_forward(struct ttrpc_call *call, const ProtobufCMessage *req, void *data)
{
	struct sink *k = data;
	const Containerd__Services__Events__Ttrpc__V1__ForwardRequest *r =
		(const Containerd__Services__Events__Ttrpc__V1__ForwardRequest *)req;
	if (k->refuse) {
		ttrpc_call_fail(call, TTRPC_INVALID_ARGUMENT, "refused");
		return;
	}
	assert_non_null(r->envelope);
	assert_string_equal(r->envelope->namespace_, "ns1");
	assert_string_equal(ttrpc_call_metadata(call, "containerd-namespace-ttrpc"), "ns1");
	assert_string_equal(r->envelope->event->type_url, "containerd.events.TaskExit");
	Containerd__Events__TaskExit *ev = containerd__events__task_exit__unpack(
		NULL, r->envelope->event->value.len, r->envelope->event->value.data);
	assert_non_null(ev);
	if (k->n < 64) {
		snprintf(k->topics[k->n], sizeof(k->topics[0]), "%s", r->envelope->topic);
		snprintf(k->ids[k->n], sizeof(k->ids[0]), "%s", ev->id);
		k->n++;
	}
	containerd__events__task_exit__free_unpacked(ev, NULL);
	static const Google__Protobuf__Empty empty = GOOGLE__PROTOBUF__EMPTY__INIT;
	ttrpc_call_reply(call, &empty.base);
}

static void sink_up(struct sink *k)
{
	struct husk_err err = { 0 };
	static const struct ttrpc_named_method m[] = { { "Forward", on_forward } };
	assert_int_equal(ttrpc_server_new(k->loop, NULL, &k->srv, &err), 0);
	assert_int_equal(ttrpc_server_add_service_named(
				 k->srv, &containerd__services__events__ttrpc__v1__events__descriptor,
				 m, 1, k, &err),
			 0);
	int fd = husk_unix_listen(k->path, &err);
	assert_true(fd >= 0);
	assert_int_equal(ttrpc_server_add_listener(k->srv, fd, &err), 0);
}

static void sink_down(struct sink *k)
{
	ttrpc_server_free(k->srv);
	k->srv = NULL;
	unlink(k->path);
}

static void send_exit(struct publisher *p, const char *id)
{
	Containerd__Events__TaskExit ev = CONTAINERD__EVENTS__TASK_EXIT__INIT;
	ev.container_id = (char *)"c1";
	ev.id = (char *)id;
	ev.exit_status = 3;
	publisher_send(p, "/tasks/exit", &ev.base);
}

/* Runs the loop for about `ms`. */
static void run_for(struct ev_loop *loop, unsigned ms)
{
	uint64_t end = ev_now_ns() + ms * 1000000ull;
	while (ev_now_ns() < end)
		ev_run_once(loop, 10);
}

static void run_until_empty(struct ev_loop *loop, struct publisher *p, unsigned max_ms)
{
	uint64_t end = ev_now_ns() + max_ms * 1000000ull;
	while (publisher_queued(p) && ev_now_ns() < end)
		ev_run_once(loop, 10);
}

static int setup(void **state)
{
	struct sink *k = calloc(1, sizeof(*k));
	struct husk_err err = { 0 };
	assert_int_equal(ev_loop_new(&k->loop, &err), 0);
	snprintf(k->path, sizeof(k->path), "/tmp/husk-pub-test-%d.sock", getpid());
	unlink(k->path);
	*state = k;
	return 0;
}

static int teardown(void **state)
{
	struct sink *k = *state;
	if (k->srv)
		sink_down(k);
	ev_loop_free(k->loop);
	free(k);
	return 0;
}

static void delivered_in_order(void **state)
{
	struct sink *k = *state;
	sink_up(k);
	char addr[128];
	snprintf(addr, sizeof(addr), "unix://%s", k->path);
	struct publisher *p = publisher_new(k->loop, addr, "ns1");
	assert_non_null(p);
	send_exit(p, "a");
	send_exit(p, "b");
	send_exit(p, "c");
	run_until_empty(k->loop, p, 5000);
	assert_int_equal(publisher_queued(p), 0);
	assert_int_equal(k->n, 3);
	assert_string_equal(k->ids[0], "a");
	assert_string_equal(k->ids[1], "b");
	assert_string_equal(k->ids[2], "c");
	assert_string_equal(k->topics[2], "/tasks/exit");
	publisher_free(p);
}

/* containerd away when the events are published, and again in the middle:
 * every event arrives once it is back, in order. */
static void survives_restarts(void **state)
{
	struct sink *k = *state;
	struct publisher *p = publisher_new(k->loop, k->path, "ns1");
	assert_non_null(p);
	send_exit(p, "1");
	send_exit(p, "2");
	run_for(k->loop, 300);
	assert_int_equal(k->n, 0);
	assert_int_equal(publisher_queued(p), 2);
	sink_up(k);
	run_until_empty(k->loop, p, 10000);
	assert_int_equal(k->n, 2);
	/* Down again: a connection that was good breaks. */
	sink_down(k);
	send_exit(p, "3");
	run_for(k->loop, 300);
	send_exit(p, "4");
	assert_int_equal(publisher_queued(p), 2);
	sink_up(k);
	run_until_empty(k->loop, p, 10000);
	assert_int_equal(publisher_queued(p), 0);
	assert_int_equal(k->n, 4);
	for (unsigned i = 0; i < 4; i++) {
		char want[16];
		snprintf(want, sizeof(want), "%u", i + 1);
		assert_string_equal(k->ids[i], want);
	}
	publisher_free(p);
}

/* Bounded: an event nobody takes is dropped after its window, and the
 * queue keeps at most its maximum (the oldest go). */
static void bounded(void **state)
{
	struct sink *k = *state;
	struct publisher *p = publisher_new(k->loop, k->path, "ns1");
	publisher_set_limits(p, 3, 400ull * 1000000ull);
	for (int i = 0; i < 5; i++) {
		char id[16];
		snprintf(id, sizeof(id), "x%d", i);
		send_exit(p, id);
	}
	assert_int_equal(publisher_queued(p), 3);
	run_until_empty(k->loop, p, 10000);
	assert_int_equal(publisher_queued(p), 0);
	/* Kept while within the window: back in time, delivered. */
	publisher_set_limits(p, 3, 30ull * 1000000000ull);
	send_exit(p, "late");
	run_for(k->loop, 200);
	sink_up(k);
	run_until_empty(k->loop, p, 10000);
	assert_int_equal(k->n, 1);
	assert_string_equal(k->ids[0], "late");
	/* A containerd that refuses the event: retried, then dropped. */
	k->refuse = true;
	publisher_set_limits(p, 3, 300ull * 1000000ull);
	send_exit(p, "refused");
	run_until_empty(k->loop, p, 10000);
	assert_int_equal(publisher_queued(p), 0);
	assert_int_equal(k->n, 1);
	publisher_free(p);
}

/* No TTRPC_ADDRESS: events are dropped at once, nothing waits. */
static void no_address(void **state)
{
	struct sink *k = *state;
	struct publisher *p = publisher_new(k->loop, "", "ns1");
	send_exit(p, "z");
	assert_int_equal(publisher_queued(p), 0);
	publisher_free(p);
}

/* Freed with events queued and one in flight: no leak, no callback after. */
static void free_with_queue(void **state)
{
	struct sink *k = *state;
	sink_up(k);
	struct publisher *p = publisher_new(k->loop, k->path, "ns1");
	send_exit(p, "q1");
	send_exit(p, "q2");
	publisher_free(p);
	run_for(k->loop, 100);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(delivered_in_order, setup, teardown),
		cmocka_unit_test_setup_teardown(survives_restarts, setup, teardown),
		cmocka_unit_test_setup_teardown(bounded, setup, teardown),
		cmocka_unit_test_setup_teardown(no_address, setup, teardown),
		cmocka_unit_test_setup_teardown(free_with_queue, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
