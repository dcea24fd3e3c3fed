/* ttrpc-bench --socket PATH [--calls N] [--concurrency C] [--payload BYTES]
 * Unary husk.test.Echo round trips on one connection with C calls kept in
 * flight; prints "calls_per_sec X". The same client drives every server
 * compared in `make bench`. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "husk/sock.h"
#include "test/echo.pb-c.h"
#include "ttrpc/client.h"

struct bench {
	struct ev_loop *loop;
	struct ttrpc_client *client;
	Husk__Test__Bytes req;
	long started, done, total, errors;
};

static void issue(struct bench *b);

static void on_reply(struct ttrpc_reply *reply, void *data)
{
	struct bench *b = data;
	if (reply->status.code != TTRPC_OK && b->errors++ == 0)
		fprintf(stderr, "ttrpc-bench: %s: %s\n", ttrpc_code_name(reply->status.code),
			reply->status.message);
	b->done++;
	if (b->started < b->total)
		issue(b);
}

static void issue(struct bench *b)
{
	b->started++;
	if (ttrpc_client_start(b->client, "husk.test.Echo", "Echo", &b->req.base, NULL, 0, NULL, NULL,
			       on_reply, b) < 0) {
		b->errors++;
		b->done++;
	}
}

int main(int argc, char **argv)
{
	const char *path = NULL;
	long calls = 20000, conc = 1, payload = 16;
	static const struct option opts[] = { { "socket", required_argument, NULL, 's' },
					      { "calls", required_argument, NULL, 'n' },
					      { "concurrency", required_argument, NULL, 'c' },
					      { "payload", required_argument, NULL, 'p' },
					      { 0 } };
	for (int o; (o = getopt_long(argc, argv, "s:n:c:p:", opts, NULL)) != -1;) {
		switch (o) {
		case 's': path = optarg; break;
		case 'n': calls = atol(optarg); break;
		case 'c': conc = atol(optarg); break;
		case 'p': payload = atol(optarg); break;
		default: return 2;
		}
	}
	if (!path || calls <= 0 || conc <= 0 || payload < 0) {
		fprintf(stderr, "usage: %s --socket PATH [--calls N] [--concurrency C] [--payload B]\n",
			argv[0]);
		return 2;
	}
	struct husk_err err = { 0 };
	struct bench b = { .total = calls };
	husk__test__bytes__init(&b.req);
	b.req.value.len = (size_t)payload;
	b.req.value.data = calloc(1, (size_t)payload + 1);
	int fd;
	if (ev_loop_new(&b.loop, &err) < 0 || (fd = husk_unix_connect(path, &err)) < 0 ||
	    ttrpc_client_new(b.loop, fd, &b.client, &err) < 0) {
		fprintf(stderr, "ttrpc-bench: %s\n", err.msg);
		return 1;
	}
	uint64_t t0 = ev_now_ns();
	for (long i = 0; i < conc && b.started < b.total; i++)
		issue(&b);
	while (b.done < b.total)
		if (ev_run_once(b.loop, 10000) <= 0) {
			fprintf(stderr, "ttrpc-bench: stalled after %ld calls\n", b.done);
			return 1;
		}
	double secs = (double)(ev_now_ns() - t0) / 1e9;
	printf("calls_per_sec %.0f\n", (double)calls / secs);
	ttrpc_client_free(b.client);
	ev_loop_free(b.loop);
	free(b.req.value.data);
	return b.errors ? 1 : 0;
}
