/* Unit tests for the byte relay (ttrpc/relay.h) on pipes, socketpairs, a
 * pty and regular files: order under partial writes and a slow reader,
 * backpressure both ways without a busy loop, EOF and the half-close, a
 * broken destination with and without draining, close-input, abort, an fd
 * two relays share, a pty's EIO, fds epoll cannot watch, a blocking
 * source, EINTR, and the buffer's lifetime. Then ev_splice, a connection
 * relayed both ways: bytes both ways, the half-close crossing over, a
 * broken peer, a loss ending the other way, an early free, failing starts.
 *
 * The binary is linked with --wrap=read and --wrap=write: every read(2)
 * and write(2) comes through the wrappers below, which count the calls on
 * one fd and can make the next ones fail with EINTR. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include <cmocka.h>

#include "ttrpc/loop.h"
#include "ttrpc/relay.h"

extern size_t __sanitizer_get_current_allocated_bytes(void) __attribute__((weak));

/* ---- the link seam ------------------------------------------------------- */

static struct {
	int fd;		      /* the fd whose calls are counted, -1: none */
	unsigned reads;	      /* reads of it */
	unsigned short_writes; /* writes to it that took less than offered */
	unsigned eintr_reads, eintr_writes; /* to fail with EINTR next */
} seam = { .fd = -1 };

ssize_t __real_read(int fd, void *buf, size_t len);
ssize_t __real_write(int fd, const void *buf, size_t len);
ssize_t __wrap_read(int fd, void *buf, size_t len);
ssize_t __wrap_write(int fd, const void *buf, size_t len);

ssize_t __wrap_read(int fd, void *buf, size_t len)
{
	if (fd != seam.fd)
		return __real_read(fd, buf, len);
	seam.reads++;
	if (seam.eintr_reads) {
		seam.eintr_reads--;
		errno = EINTR;
		return -1;
	}
	return __real_read(fd, buf, len);
}

ssize_t __wrap_write(int fd, const void *buf, size_t len)
{
	if (fd != seam.fd)
		return __real_write(fd, buf, len);
	if (seam.eintr_writes) {
		seam.eintr_writes--;
		errno = EINTR;
		return -1;
	}
	ssize_t n = __real_write(fd, buf, len);
	if (n >= 0 && (size_t)n < len)
		seam.short_writes++;
	return n;
}

/* ---- helpers --------------------------------------------------------------- */

struct fx {
	struct ev_loop *loop;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	struct husk_err err = { 0 };
	assert_int_equal(ev_loop_new(&f->loop, &err), 0);
	seam = (typeof(seam)){ .fd = -1 };
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	ev_loop_free(f->loop);
	free(f);
	return 0;
}

/* What `done` reported. */
struct end {
	int calls;
	int rc;
};

static void on_done(void *data, int rc)
{
	struct end *e = data;
	e->calls++;
	e->rc = rc;
}

/* Runs the loop until nothing is left to do; the relay must then be idle,
 * not spinning on a level-triggered event. */
static void settle(struct ev_loop *loop)
{
	int idle = 0;
	for (int i = 0; i < 100000 && idle < 3; i++)
		idle = ev_run_once(loop, 0) == 0 ? idle + 1 : 0;
	assert_int_equal(idle, 3);
}

static struct ev_relay *relay(struct fx *f, int src, int dst, unsigned flags, struct end *e)
{
	struct ev_relay *r = NULL;
	struct husk_err err = { 0 };
	struct ev_relay_opts o = { .src = src, .dst = dst, .flags = flags, .done = on_done,
				   .data = e };
	assert_int_equal(ev_relay_new(f->loop, &o, &r, &err), 0);
	assert_non_null(r);
	return r;
}

static void sockets(int sv[2], int bufsize)
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
	if (bufsize)
		for (int i = 0; i < 2; i++) {
			assert_int_equal(setsockopt(sv[i], SOL_SOCKET, SO_SNDBUF, &bufsize,
						    sizeof(bufsize)), 0);
			assert_int_equal(setsockopt(sv[i], SOL_SOCKET, SO_RCVBUF, &bufsize,
						    sizeof(bufsize)), 0);
		}
}

static void pipes(int p[2])
{
	assert_int_equal(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
}

static uint8_t pattern(size_t i)
{
	return (uint8_t)(i * 7 + i / 251);
}

/* Writes pattern bytes [*off, total) into nonblocking `fd` until it is full. */
static void put(int fd, size_t *off, size_t total)
{
	uint8_t buf[8192];
	while (*off < total) {
		size_t n = total - *off < sizeof(buf) ? total - *off : sizeof(buf);
		for (size_t i = 0; i < n; i++)
			buf[i] = pattern(*off + i);
		ssize_t w = write(fd, buf, n);
		if (w < 0) {
			assert_int_equal(errno, EAGAIN);
			return;
		}
		*off += (size_t)w;
	}
}

/* Reads at most `max` bytes from nonblocking `fd`, which must continue the
 * pattern at *off. Returns the count, 0 at EOF, -1 when none is there. */
static ssize_t take(int fd, size_t *off, size_t max)
{
	uint8_t buf[65536];
	ssize_t n = read(fd, buf, max < sizeof(buf) ? max : sizeof(buf));
	if (n < 0) {
		assert_int_equal(errno, EAGAIN);
		return -1;
	}
	for (ssize_t i = 0; i < n; i++)
		if (buf[i] != pattern(*off + (size_t)i))
			fail_msg("byte %zu: %u, want %u", *off + (size_t)i, buf[i],
				 pattern(*off + (size_t)i));
	*off += (size_t)n;
	return n;
}

static int pending(int fd)
{
	int n = -1;
	assert_int_equal(ioctl(fd, FIONREAD, &n), 0);
	return n;
}

static bool fd_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

/* ---- tests ----------------------------------------------------------------- */

/* 1 MiB from a pipe to a socket whose reader takes 1000 bytes a turn: all
 * of it, in order, through partial writes; at the writer's EOF the reader
 * sees EOF after the last byte while the relay's socket (not its own)
 * stays open, half-closed. */
static void test_order_partial_writes_slow_reader(void **state)
{
	struct fx *f = *state;
	int p[2], sv[2];
	pipes(p);
	sockets(sv, 4096);
	struct end e = { 0 };
	relay(f, p[0], sv[0], EV_RELAY_OWN_SRC | EV_RELAY_SHUT_DST, &e);
	seam.fd = sv[0];
	const size_t total = 1u << 20;
	size_t in = 0, out = 0;
	while (out < total) {
		put(p[1], &in, total);
		settle(f->loop);
		assert_true(take(sv[1], &out, 1000) != 0);
	}
	assert_true(seam.short_writes > 0);
	assert_int_equal(e.calls, 0);
	close(p[1]);
	settle(f->loop);
	assert_int_equal(e.calls, 1);
	assert_int_equal(e.rc, 0);
	assert_int_equal(take(sv[1], &out, 1000), 0);
	/* Half-closed, not closed: the other direction still works. */
	assert_true(fd_open(sv[0]));
	assert_int_equal(write(sv[1], "back", 4), 4);
	char buf[8] = { 0 };
	assert_int_equal(read(sv[0], buf, sizeof(buf)), 4);
	assert_string_equal(buf, "back");
	assert_false(fd_open(p[0])); /* owned: closed */
	close(sv[0]);
	close(sv[1]);
}

/* A destination that takes nothing stops the reading: the source keeps
 * its bytes and the loop goes idle. An empty source leaves the writable
 * destination unwatched: idle too. Reading resumes as the reader does. */
static void test_backpressure_both_ways(void **state)
{
	struct fx *f = *state;
	int src[2], dst[2];
	sockets(src, 4096);
	sockets(dst, 4096);
	struct end e = { 0 };
	relay(f, src[0], dst[0], 0, &e);
	settle(f->loop); /* nothing to read, the destination writable: idle */
	seam.fd = src[0];
	const size_t total = 4u << 20;
	size_t in = 0, out = 0;
	/* Into the destination, into the relay's buffer, then behind it. */
	for (int i = 0; i < 10 && (i == 0 || pending(src[0]) == 0); i++) {
		put(src[1], &in, total);
		settle(f->loop);
	}
	unsigned reads = seam.reads;
	assert_true(reads > 0);
	assert_true(pending(src[0]) > 0); /* left where it was */
	for (int i = 0; i < 5; i++)
		assert_int_equal(ev_run_once(f->loop, 0), 0);
	assert_int_equal(seam.reads, reads);
	while (out < total) {
		while (take(dst[1], &out, 65536) > 0)
			;
		put(src[1], &in, total);
		settle(f->loop);
	}
	assert_true(seam.reads > reads);
	assert_int_equal(e.calls, 0);
	/* The writer leaves while the destination is full. The source's
	 * hang-up, which epoll reports unasked, must neither make the loop
	 * spin nor read over the bytes still waiting in the buffer (the
	 * shim's own relay did: ctr run lost the last 28-32 KiB of stdin
	 * about one run in ten); the rest arrives in order, then the end. */
	in = out = 0;
	for (int i = 0; i < 10 && (i == 0 || pending(src[0]) == 0); i++) {
		put(src[1], &in, total);
		settle(f->loop);
	}
	close(src[1]);
	settle(f->loop);
	assert_int_equal(e.calls, 0);
	for (int i = 0; i < 100000 && e.calls == 0; i++) {
		take(dst[1], &out, 65536);
		settle(f->loop);
	}
	while (take(dst[1], &out, 65536) > 0)
		;
	assert_int_equal(out, in);
	assert_int_equal(e.calls, 1);
	assert_int_equal(e.rc, 0);
	close(src[0]);
	close(dst[0]);
	close(dst[1]);
}

/* EOF on a socket: the destination socket is shut down for writing after
 * the last byte; without EV_RELAY_SHUT_DST it is left alone. */
static void test_eof_half_close(void **state)
{
	struct fx *f = *state;
	for (int shut = 0; shut < 2; shut++) {
		int src[2], dst[2];
		sockets(src, 0);
		sockets(dst, 0);
		struct end e = { 0 };
		relay(f, src[0], dst[0], EV_RELAY_OWN_SRC | (shut ? EV_RELAY_SHUT_DST : 0), &e);
		assert_int_equal(write(src[1], "hello", 5), 5);
		assert_int_equal(shutdown(src[1], SHUT_WR), 0);
		settle(f->loop);
		assert_int_equal(e.calls, 1);
		assert_int_equal(e.rc, 0);
		char buf[16] = { 0 };
		assert_int_equal(read(dst[1], buf, sizeof(buf)), 5);
		assert_string_equal(buf, "hello");
		if (shut) {
			assert_int_equal(read(dst[1], buf, sizeof(buf)), 0);
		} else {
			assert_int_equal(read(dst[1], buf, sizeof(buf)), -1);
			assert_int_equal(errno, EAGAIN);
		}
		assert_false(fd_open(src[0]));
		close(src[1]);
		close(dst[0]);
		close(dst[1]);
	}
}

/* A pipe relayed to a socket whose reader then leaves: at once (idle) or
 * with 2 MiB written and bytes still in the pipe. p and sv are left open
 * as the relay left them; *in counts the bytes written. */
static void break_destination(struct fx *f, unsigned flags, bool idle, int p[2], int sv[2],
			      struct end *e, size_t *in)
{
	pipes(p);
	sockets(sv, 4096);
	relay(f, p[0], sv[0], flags, e);
	*in = 0;
	if (!idle) {
		for (int i = 0; i < 2; i++) {
			put(p[1], in, 1u << 20);
			settle(f->loop);
		}
		assert_true(pending(p[0]) > 0);
	}
	close(sv[1]);
	settle(f->loop);
}

/* Without EV_RELAY_DRAIN a broken destination ends the relay: it reads no
 * more, so the source's writer sees its bytes stay (and, the read end
 * being the relay's, EPIPE once it is closed). Broken while idle (the
 * reader left before any byte) or while holding bytes. */
static void test_broken_destination_stops(void **state)
{
	struct fx *f = *state;
	for (int idle = 0; idle < 2; idle++) {
		int p[2], sv[2];
		struct end e = { 0 };
		size_t in = 0;
		break_destination(f, EV_RELAY_OWN_SRC | EV_RELAY_OWN_DST | EV_RELAY_SHUT_DST, idle, p, sv, &e, &in);
		assert_int_equal(e.calls, 1);
		assert_int_equal(e.rc, -EPIPE);
		assert_false(fd_open(sv[0]));
		assert_int_equal(write(p[1], "x", 1), -1);
		assert_int_equal(errno, EPIPE);
		close(p[1]);
	}
}

/* With EV_RELAY_DRAIN the source is read on and its bytes dropped, so its
 * writer never blocks; the relay ends at the source's EOF with the loss. */
static void test_broken_destination_drains(void **state)
{
	struct fx *f = *state;
	for (int idle = 0; idle < 2; idle++) {
		int p[2], sv[2];
		struct end e = { 0 };
		size_t in = 0;
		break_destination(f, EV_RELAY_OWN_SRC | EV_RELAY_OWN_DST | EV_RELAY_DRAIN, idle, p, sv, &e, &in);
		assert_int_equal(e.calls, 0);
		size_t more = in + (4u << 20);
		while (in < more) {
			put(p[1], &in, more);
			settle(f->loop);
			assert_int_equal(pending(p[0]), 0);
		}
		assert_int_equal(e.calls, 0);
		close(p[1]);
		settle(f->loop);
		assert_int_equal(e.calls, 1);
		assert_int_equal(e.rc, -EPIPE);
		assert_false(fd_open(p[0]));
		assert_false(fd_open(sv[0]));
	}
}

/* close-input: what is readable when it is asked (more than one buffer,
 * into a slow destination) is delivered, then the relay ends without the
 * writer's EOF; later bytes are not read. With nothing readable it ends at
 * once. */
static void test_close_input(void **state)
{
	struct fx *f = *state;
	int src[2], dst[2];
	sockets(src, 0);
	sockets(dst, 4096);
	int big = 1 << 20;
	assert_int_equal(setsockopt(src[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big)), 0);
	assert_int_equal(setsockopt(src[0], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big)), 0);
	struct end e = { 0 };
	struct ev_relay *r = relay(f, src[0], dst[0], EV_RELAY_OWN_SRC | EV_RELAY_SHUT_DST, &e);
	const size_t total = 200000;
	size_t in = 0, out = 0;
	put(src[1], &in, total);
	assert_int_equal(in, total);
	ev_relay_close_input(r);
	assert_int_equal(e.calls, 0); /* the destination is full */
	while (e.calls == 0) {
		assert_true(take(dst[1], &out, 65536) != 0);
		settle(f->loop);
	}
	assert_int_equal(e.rc, 0);
	while (take(dst[1], &out, 65536) > 0)
		;
	assert_int_equal(out, total);
	assert_int_equal(take(dst[1], &out, 65536), 0); /* shut down after the last byte */
	assert_false(fd_open(src[0]));
	close(src[1]);
	close(dst[0]);
	close(dst[1]);

	/* Nothing readable: it ends before close_input returns. */
	sockets(src, 0);
	sockets(dst, 0);
	e = (struct end){ 0 };
	r = relay(f, src[0], dst[0], EV_RELAY_OWN_SRC | EV_RELAY_OWN_DST, &e);
	ev_relay_close_input(r);
	assert_int_equal(e.calls, 1);
	assert_int_equal(e.rc, 0);
	assert_false(fd_open(src[0]));
	close(src[1]);
	close(dst[1]);
}

/* abort: the bytes held go out if the destination takes them now, else
 * they are dropped (-ECANCELED); either way `done` runs before it returns
 * and the destination is shut down. */
static void test_abort(void **state)
{
	struct fx *f = *state;
	for (int full = 0; full < 2; full++) {
		int src[2], dst[2];
		sockets(src, 0);
		sockets(dst, 4096);
		struct end e = { 0 };
		struct ev_relay *r =
			relay(f, src[0], dst[0], EV_RELAY_OWN_SRC | EV_RELAY_SHUT_DST, &e);
		size_t in = 0, out = 0;
		if (full) {
			put(src[1], &in, 1u << 20);
			settle(f->loop);
		}
		ev_relay_abort(r);
		assert_int_equal(e.calls, 1);
		assert_int_equal(e.rc, full ? -ECANCELED : 0);
		while (take(dst[1], &out, 65536) > 0)
			;
		assert_int_equal(take(dst[1], &out, 65536), 0);
		assert_true(out < in || !full);
		settle(f->loop);
		assert_int_equal(e.calls, 1);
		close(src[1]);
		close(dst[0]);
		close(dst[1]);
	}
}

/* ev_relay_free: no `done`; owned fds closed, a SHUT_DST destination
 * shut down; also with its turn still queued (a regular file's). */
static void test_stop_without_done(void **state)
{
	struct fx *f = *state;
	int src[2], dst[2];
	sockets(src, 0);
	sockets(dst, 0);
	struct end e = { 0 };
	struct ev_relay *r = relay(f, src[0], dst[0], EV_RELAY_OWN_SRC | EV_RELAY_SHUT_DST, &e);
	assert_int_equal(write(src[1], "abc", 3), 3);
	settle(f->loop);
	ev_relay_free(r);
	settle(f->loop);
	assert_int_equal(e.calls, 0);
	assert_false(fd_open(src[0]));
	char buf[8] = { 0 };
	assert_int_equal(read(dst[1], buf, sizeof(buf)), 3);
	assert_int_equal(read(dst[1], buf, sizeof(buf)), 0);
	close(src[1]);
	close(dst[0]);
	close(dst[1]);

	FILE *tf = tmpfile();
	assert_non_null(tf);
	assert_int_equal(fwrite("data", 1, 4, tf), 4);
	fflush(tf);
	rewind(tf);
	sockets(dst, 0);
	r = relay(f, dup(fileno(tf)), dst[0], EV_RELAY_OWN_SRC | EV_RELAY_OWN_DST, &e);
	ev_relay_free(r); /* before its queued turn ran: that turn frees it */
	settle(f->loop);
	assert_int_equal(e.calls, 0);
	assert_false(fd_open(dst[0]));
	close(dst[1]);
	fclose(tf);
	ev_relay_free(NULL);
}

/* One socket, two relays: one reads it, the other writes it (a pty
 * master relayed both ways). Both work, neither closes it. */
static void test_shared_fd(void **state)
{
	struct fx *f = *state;
	int sv[2], to[2], from[2];
	sockets(sv, 0);
	pipes(to);
	pipes(from);
	struct end ex = { 0 }, ey = { 0 };
	relay(f, sv[0], to[1], EV_RELAY_OWN_DST, &ex);
	relay(f, from[0], sv[0], EV_RELAY_OWN_SRC, &ey);
	assert_int_equal(write(sv[1], "ping", 4), 4);
	assert_int_equal(write(from[1], "pong", 4), 4);
	settle(f->loop);
	char buf[8] = { 0 };
	assert_int_equal(read(to[0], buf, sizeof(buf)), 4);
	assert_string_equal(buf, "ping");
	memset(buf, 0, sizeof(buf));
	assert_int_equal(read(sv[1], buf, sizeof(buf)), 4);
	assert_string_equal(buf, "pong");
	shutdown(sv[1], SHUT_WR);
	close(from[1]);
	settle(f->loop);
	assert_int_equal(ex.calls, 1);
	assert_int_equal(ey.calls, 1);
	assert_int_equal(ex.rc, 0);
	assert_int_equal(ey.rc, 0);
	assert_false(fd_open(to[1]));
	assert_false(fd_open(from[0]));
	assert_int_equal(close(sv[0]), 0); /* still ours, open once */
	close(sv[1]);
	close(to[0]);
}

/* A pty master relayed both ways, as the agent does for a terminal: input
 * reaches the terminal; when the terminal closes, the master's EIO is the
 * output's EOF (all of it delivered) and the input's destination is
 * broken. The master stays open for its owner. */
static void test_pty(void **state)
{
	struct fx *f = *state;
	int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
	if (master < 0)
		skip();
	assert_int_equal(grantpt(master), 0);
	assert_int_equal(unlockpt(master), 0);
	int slave = open(ptsname(master), O_RDWR | O_NOCTTY | O_CLOEXEC);
	assert_true(slave >= 0);
	struct termios t;
	assert_int_equal(tcgetattr(slave, &t), 0);
	cfmakeraw(&t);
	assert_int_equal(tcsetattr(slave, TCSANOW, &t), 0);
	int in[2], out[2];
	sockets(in, 0);
	sockets(out, 0);
	struct end ein = { 0 }, eout = { 0 };
	relay(f, in[0], master, EV_RELAY_OWN_SRC, &ein);
	relay(f, master, out[0], EV_RELAY_OWN_DST | EV_RELAY_SHUT_DST, &eout);
	assert_int_equal(write(in[1], "typed", 5), 5);
	settle(f->loop);
	char buf[16] = { 0 };
	assert_int_equal(read(slave, buf, sizeof(buf)), 5);
	assert_string_equal(buf, "typed");
	assert_int_equal(write(slave, "printed", 7), 7);
	close(slave);
	settle(f->loop);
	assert_int_equal(eout.calls, 1);
	assert_int_equal(eout.rc, 0);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(read(out[1], buf, sizeof(buf)), 7);
	assert_string_equal(buf, "printed");
	assert_int_equal(read(out[1], buf, sizeof(buf)), 0);
	assert_int_equal(ein.calls, 1);
	assert_int_equal(ein.rc, -EPIPE);
	assert_int_equal(close(master), 0);
	close(in[1]);
	close(out[1]);
}

/* Regular files and /dev/null cannot be watched: always ready. */
static void test_unwatchable_fds(void **state)
{
	struct fx *f = *state;
	FILE *src = tmpfile();
	assert_non_null(src);
	const size_t total = 300000;
	for (size_t i = 0; i < total; i++)
		fputc(pattern(i), src);
	fflush(src);
	rewind(src);
	int sv[2];
	sockets(sv, 4096);
	struct end e = { 0 };
	relay(f, dup(fileno(src)), sv[0], EV_RELAY_OWN_SRC | EV_RELAY_OWN_DST | EV_RELAY_SHUT_DST,
	      &e);
	size_t out = 0;
	for (int i = 0; i < 100000 && take(sv[1], &out, 5000) != 0; i++)
		settle(f->loop);
	assert_int_equal(out, total);
	assert_int_equal(e.calls, 1);
	assert_int_equal(e.rc, 0);
	fclose(src);
	close(sv[1]);

	/* A regular file as destination. */
	FILE *dst = tmpfile();
	assert_non_null(dst);
	sockets(sv, 0);
	e = (struct end){ 0 };
	relay(f, sv[0], dup(fileno(dst)), EV_RELAY_OWN_SRC | EV_RELAY_OWN_DST, &e);
	assert_int_equal(write(sv[1], "to a file", 9), 9);
	close(sv[1]);
	settle(f->loop);
	assert_int_equal(e.calls, 1);
	assert_int_equal(e.rc, 0);
	char buf[16] = { 0 };
	rewind(dst);
	assert_int_equal(fread(buf, 1, sizeof(buf), dst), 9);
	assert_string_equal(buf, "to a file");
	fclose(dst);

	/* /dev/null: EOF at once. */
	sockets(sv, 0);
	e = (struct end){ 0 };
	relay(f, open("/dev/null", O_RDONLY | O_CLOEXEC), sv[0],
	      EV_RELAY_OWN_SRC | EV_RELAY_SHUT_DST, &e);
	settle(f->loop);
	assert_int_equal(e.calls, 1);
	assert_int_equal(read(sv[1], buf, sizeof(buf)), 0);
	close(sv[0]);
	close(sv[1]);
}

/* A blocking source (huskctl's terminal) is read once per readiness, so
 * the relay never waits in read(2) while the loop has other work. */
static void test_blocking_source(void **state)
{
	struct fx *f = *state;
	int p[2], sv[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	sockets(sv, 0);
	struct end e = { 0 };
	relay(f, p[0], sv[0], EV_RELAY_OWN_SRC | EV_RELAY_OWN_DST, &e);
	seam.fd = p[0];
	char buf[16] = { 0 };
	for (unsigned i = 1; i <= 3; i++) {
		assert_int_equal(write(p[1], "chunk", 5), 5);
		settle(f->loop);
		assert_int_equal(seam.reads, i);
		assert_int_equal(read(sv[1], buf, sizeof(buf)), 5);
	}
	close(p[1]);
	settle(f->loop);
	assert_int_equal(seam.reads, 4);
	assert_int_equal(e.calls, 1);
	close(sv[1]);
}

/* An interrupted read or write is retried. */
static void test_eintr(void **state)
{
	struct fx *f = *state;
	int src[2], dst[2];
	sockets(src, 0);
	sockets(dst, 0);
	struct end e1 = { 0 }, e2 = { 0 };
	relay(f, src[0], dst[0], EV_RELAY_OWN_SRC | EV_RELAY_OWN_DST, &e1);
	seam.fd = src[0];
	seam.eintr_reads = 2;
	assert_int_equal(write(src[1], "abc", 3), 3);
	settle(f->loop);
	assert_int_equal(seam.eintr_reads, 0);
	char buf[8] = { 0 };
	assert_int_equal(read(dst[1], buf, sizeof(buf)), 3);
	assert_string_equal(buf, "abc");
	close(src[1]);
	settle(f->loop);
	assert_int_equal(e1.calls, 1);
	assert_int_equal(e1.rc, 0);
	close(dst[1]);

	sockets(src, 0);
	sockets(dst, 0);
	relay(f, src[0], dst[0], EV_RELAY_OWN_SRC | EV_RELAY_OWN_DST, &e2);
	seam.fd = dst[0];
	seam.eintr_writes = 2;
	assert_int_equal(write(src[1], "xyz", 3), 3);
	settle(f->loop);
	assert_int_equal(seam.eintr_writes, 0);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(read(dst[1], buf, sizeof(buf)), 3);
	assert_string_equal(buf, "xyz");
	close(src[1]);
	settle(f->loop);
	assert_int_equal(e2.calls, 1);
	assert_int_equal(e2.rc, 0);
	close(dst[1]);
}

/* The buffer comes with the first read and goes with the relay: a relay
 * nobody writes into costs no buffer (the agent's stdin and stderr). */
static void test_buffer_lifetime(void **state)
{
	struct fx *f = *state;
	if (!__sanitizer_get_current_allocated_bytes)
		skip();
	int src[2], dst[2];
	sockets(src, 0);
	sockets(dst, 0);
	struct end e = { 0 };
	size_t before = __sanitizer_get_current_allocated_bytes();
	struct ev_relay *r = NULL;
	struct ev_relay_opts o = { .src = src[0], .dst = dst[0], .done = on_done, .data = &e,
				   .flags = EV_RELAY_OWN_SRC | EV_RELAY_OWN_DST };
	int rc = ev_relay_new(f->loop, &o, &r, NULL);
	ev_run_once(f->loop, 0);
	size_t idle = __sanitizer_get_current_allocated_bytes();
	(void)!write(src[1], "x", 1);
	ev_run_once(f->loop, 0);
	size_t busy = __sanitizer_get_current_allocated_bytes();
	close(src[1]);
	ev_run_once(f->loop, 0);
	ev_run_once(f->loop, 0);
	size_t after = __sanitizer_get_current_allocated_bytes();
	assert_int_equal(rc, 0);
	assert_true(idle - before < 4096);
	assert_true(busy - before >= 65536);
	assert_int_equal(e.calls, 1);
	assert_true(after <= before);
	close(dst[1]);
}

/* ---- both ways: ev_splice ------------------------------------------------- */

/* A connection spliced between X1 and Y1; the test plays the peers X0 and
 * Y0 of those ends. */
struct conn {
	int x0, x1, y0, y1;
	struct end e;
	struct ev_splice *sp;
};

static void splice_conn(struct fx *f, struct conn *c, const int x[2], const int y[2])
{
	*c = (struct conn){ .x0 = x[0], .x1 = x[1], .y0 = y[0], .y1 = y[1] };
	struct husk_err err = { 0 };
	assert_int_equal(ev_splice_new(f->loop, c->x1, c->y1, on_done, &c->e, &c->sp, &err), 0);
	assert_non_null(c->sp);
}

/* Over two socketpairs. */
static void splice_pairs(struct fx *f, struct conn *c, int bufsize)
{
	int x[2], y[2];
	sockets(x, bufsize);
	sockets(y, bufsize);
	splice_conn(f, c, x, y);
}

/* A TCP connection over loopback with small buffers, both ends
 * nonblocking; false where there is no loopback. */
static bool tcp_pair(int sv[2], int bufsize)
{
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l < 0)
		return false;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	if (bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&a, &len) < 0) {
		close(l);
		return false;
	}
	sv[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(sv[0] >= 0);
	/* Before the handshake, which fixes the window scale; the accepted
	 * socket inherits the listener's. */
	for (int i = 0; i < 2; i++) {
		int fd = i ? l : sv[0];
		assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof(bufsize)), 0);
		assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof(bufsize)), 0);
	}
	assert_int_equal(connect(sv[0], (struct sockaddr *)&a, sizeof(a)), 0);
	sv[1] = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	assert_true(sv[1] >= 0);
	assert_int_equal(fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK), 0);
	close(l);
	return true;
}

/* Closed, not merely shut down. Only meaningful before any new fd is
 * opened: the number may be reused. */
static bool fd_closed(int fd)
{
	errno = 0;
	return fcntl(fd, F_GETFD) == -1 && errno == EBADF;
}

/* Reads nonblocking `fd` to its end: true at EOF or a read error (a
 * reset), false while it would still wait. */
static bool at_end(int fd)
{
	char buf[4096];
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			return true;
		if (n < 0 && errno == EAGAIN)
			return false;
	}
}

/* Writes pattern bytes into `fd` as put() does, but the fd may be broken:
 * false once a write fails other than with EAGAIN. */
static bool put_maybe(int fd, size_t *off, size_t total)
{
	uint8_t buf[8192];
	while (*off < total) {
		size_t n = total - *off < sizeof(buf) ? total - *off : sizeof(buf);
		for (size_t i = 0; i < n; i++)
			buf[i] = pattern(*off + i);
		ssize_t w = write(fd, buf, n);
		if (w < 0)
			return errno == EAGAIN;
		*off += (size_t)w;
	}
	return true;
}

static size_t heap_bytes(void)
{
	return __sanitizer_get_current_allocated_bytes ? __sanitizer_get_current_allocated_bytes()
						       : 0;
}

/* Bytes both ways, intact and in order: a round trip, then 1 MiB each way
 * at once (16 relay buffers), the peers sending through wide socket
 * buffers, the spliced ends through 4 KiB ones (a relay reads much, writes
 * little at a time). While neither peer reads, both ways stop with bytes
 * left in X1 and Y1 and the loop idles; as the peers read, everything
 * arrives, through partial writes, with no deadlock between the two ways.
 * No `done` meanwhile. */
static void test_splice_both_ways(void **state)
{
	struct fx *f = *state;
	int x[2], y[2], small = 4096;
	sockets(x, 0);
	sockets(y, 0);
	assert_int_equal(setsockopt(x[1], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
	assert_int_equal(setsockopt(y[1], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
	struct conn c;
	splice_conn(f, &c, x, y);
	settle(f->loop); /* nothing to move: idle */
	char buf[8] = { 0 };
	assert_int_equal(write(c.x0, "ping", 4), 4);
	settle(f->loop);
	assert_int_equal(read(c.y0, buf, sizeof(buf)), 4);
	assert_string_equal(buf, "ping");
	memset(buf, 0, sizeof(buf));
	assert_int_equal(write(c.y0, "pong", 4), 4);
	settle(f->loop);
	assert_int_equal(read(c.x0, buf, sizeof(buf)), 4);
	assert_string_equal(buf, "pong");

	seam.fd = c.y1;
	const size_t total = 1u << 20;
	size_t xin = 0, xout = 0, yin = 0, yout = 0;
	for (int i = 0; i < 10 && (i == 0 || pending(c.x1) == 0 || pending(c.y1) == 0); i++) {
		put(c.x0, &xin, total);
		put(c.y0, &yin, total);
		settle(f->loop);
	}
	assert_true(pending(c.x1) > 0); /* left where it was: backpressure */
	assert_true(pending(c.y1) > 0);
	assert_true(xin < total && yin < total);
	for (int i = 0; i < 100000 && (xout < total || yout < total); i++) {
		take(c.y0, &xout, 5000);
		take(c.x0, &yout, 5000);
		put(c.x0, &xin, total);
		put(c.y0, &yin, total);
		settle(f->loop);
	}
	assert_int_equal(xout, total);
	assert_int_equal(yout, total);
	assert_true(seam.short_writes > 0);
	assert_int_equal(take(c.y0, &xout, 5000), -1); /* nothing more, no end */
	assert_int_equal(take(c.x0, &yout, 5000), -1);
	assert_int_equal(c.e.calls, 0);
	ev_splice_free(c.sp);
	close(c.x0);
	close(c.y0);
}

/* A half-close crosses over, from either side: the peer that shuts its
 * write half down has its bytes then EOF delivered to the other, which can
 * still send back (more than a relay buffer); the splice ends when that
 * one shuts down too: `done` once with 0, both spliced fds closed, the
 * first peer reads the last byte then EOF. */
static void test_splice_half_close(void **state)
{
	struct fx *f = *state;
	for (int first = 0; first < 2; first++) {
		struct conn c;
		splice_pairs(f, &c, 4096);
		int a = first ? c.y0 : c.x0, b = first ? c.x0 : c.y0;
		char buf[16] = { 0 };
		assert_int_equal(write(a, "request", 7), 7);
		assert_int_equal(shutdown(a, SHUT_WR), 0);
		settle(f->loop);
		assert_int_equal(read(b, buf, sizeof(buf)), 7);
		assert_string_equal(buf, "request");
		assert_int_equal(read(b, buf, sizeof(buf)), 0);
		assert_int_equal(c.e.calls, 0);
		assert_true(fd_open(c.x1));
		assert_true(fd_open(c.y1));

		const size_t total = 300000;
		size_t in = 0, out = 0;
		for (int i = 0; i < 100000 && out < total; i++) {
			put(b, &in, total);
			settle(f->loop);
			take(a, &out, 5000);
		}
		assert_int_equal(out, total);
		assert_int_equal(c.e.calls, 0);

		assert_int_equal(shutdown(b, SHUT_WR), 0);
		settle(f->loop);
		assert_int_equal(c.e.calls, 1);
		assert_int_equal(c.e.rc, 0);
		assert_true(fd_closed(c.x1));
		assert_true(fd_closed(c.y1));
		assert_int_equal(take(a, &out, 5000), 0);
		settle(f->loop);
		assert_int_equal(c.e.calls, 1);
		close(a);
		close(b);
	}
}

/* A broken peer: X0 leaves (closes; over TCP with a reset) while Y0 keeps
 * sending more than the way to X0 holds. The splice ends by itself:
 * `done` once with a loss, both spliced fds closed; Y0 has had X0's last
 * words, then reads the end and can send no more. */
static void test_splice_broken_peer(void **state)
{
	struct fx *f = *state;
	for (int tcp = 0; tcp < 2; tcp++) {
		struct conn c;
		if (tcp) {
			int x[2], y[2];
			if (!tcp_pair(x, 4096))
				skip();
			assert_true(tcp_pair(y, 4096));
			splice_conn(f, &c, x, y);
		} else {
			splice_pairs(f, &c, 4096);
		}
		char buf[8] = { 0 };
		assert_int_equal(write(c.x0, "bye", 3), 3);
		settle(f->loop);
		assert_int_equal(read(c.y0, buf, sizeof(buf)), 3);
		assert_string_equal(buf, "bye");
		const size_t total = 16u << 20;
		size_t in = 0;
		for (int i = 0; i < 10 && (i == 0 || pending(c.y1) == 0); i++) {
			put(c.y0, &in, total);
			settle(f->loop);
		}
		assert_true(pending(c.y1) > 0); /* the way to X0 is full */
		assert_int_equal(c.e.calls, 0);
		if (tcp) {
			struct linger l = { .l_onoff = 1, .l_linger = 0 };
			assert_int_equal(setsockopt(c.x0, SOL_SOCKET, SO_LINGER, &l, sizeof(l)), 0);
		}
		close(c.x0);
		for (int i = 0; i < 200 && c.e.calls == 0; i++) {
			put_maybe(c.y0, &in, total);
			ev_run_once(f->loop, 10);
			settle(f->loop);
		}
		assert_int_equal(c.e.calls, 1);
		assert_true(c.e.rc < 0);
		if (!tcp)
			assert_int_equal(c.e.rc, -EPIPE);
		assert_true(fd_closed(c.x1));
		assert_true(fd_closed(c.y1));
		assert_true(at_end(c.y0));
		assert_int_equal(write(c.y0, "x", 1), -1);
		assert_true(errno == EPIPE || errno == ECONNRESET);
		settle(f->loop);
		assert_int_equal(c.e.calls, 1);
		close(c.y0);
	}
}

/* A loss one way ends the other way at once, though its source would go
 * on: Y0 stops reading (shutdown SHUT_RD) but not writing, so X0's bytes
 * meet EPIPE at Y1; the way from Y1 is ended too: `done` once with
 * -EPIPE, both fds closed, X0 reads EOF, Y0 can send no more. */
static void test_splice_loss_ends_other_way(void **state)
{
	struct fx *f = *state;
	struct conn c;
	splice_pairs(f, &c, 0);
	assert_int_equal(write(c.y0, "early", 5), 5);
	settle(f->loop);
	char buf[8] = { 0 };
	assert_int_equal(read(c.x0, buf, sizeof(buf)), 5);
	assert_string_equal(buf, "early");
	assert_int_equal(shutdown(c.y0, SHUT_RD), 0);
	settle(f->loop);
	assert_int_equal(c.e.calls, 0);
	assert_int_equal(write(c.x0, "lost", 4), 4);
	settle(f->loop);
	assert_int_equal(c.e.calls, 1);
	assert_int_equal(c.e.rc, -EPIPE);
	assert_true(fd_closed(c.x1));
	assert_true(fd_closed(c.y1));
	assert_int_equal(read(c.x0, buf, sizeof(buf)), 0);
	assert_int_equal(write(c.y0, "x", 1), -1);
	assert_int_equal(errno, EPIPE);
	close(c.x0);
	close(c.y0);
}

/* ev_splice_free before the end: no `done`, ever; both fds closed, and
 * everything the splice held (its relays' buffers included) is freed.
 * While both ways hold bytes, and after one way has ended (X0 shut its
 * write half down). The peers see the connection end. */
static void test_splice_free_early(void **state)
{
	struct fx *f = *state;
	for (int half = 0; half < 2; half++) {
		size_t before = heap_bytes();
		struct conn c;
		splice_pairs(f, &c, 4096);
		const size_t total = 1u << 20;
		size_t xin = 0, yin = 0;
		if (half) {
			assert_int_equal(shutdown(c.x0, SHUT_WR), 0);
			settle(f->loop);
			assert_true(at_end(c.y0));
		}
		for (int i = 0; i < 10 && (i == 0 || pending(c.y1) == 0 ||
					   (!half && pending(c.x1) == 0));
		     i++) {
			if (!half)
				put(c.x0, &xin, total);
			put(c.y0, &yin, total);
			settle(f->loop);
		}
		assert_true(pending(c.y1) > 0);
		assert_int_equal(c.e.calls, 0);
		ev_splice_free(c.sp);
		assert_true(fd_closed(c.x1));
		assert_true(fd_closed(c.y1));
		settle(f->loop);
		assert_int_equal(c.e.calls, 0);
		if (__sanitizer_get_current_allocated_bytes)
			assert_true(heap_bytes() <= before);
		assert_true(at_end(c.x0));
		assert_true(at_end(c.y0));
		close(c.x0);
		close(c.y0);
	}
	ev_splice_free(NULL);
}

/* ev_splice_new failing closes both fds, calls no `done` and keeps
 * nothing: an fd epoll rejects (a number nothing holds) on either side,
 * which fails the first way; and no fd left for the duplicate the second
 * way watches through (the first way watches both fds already), which
 * fails after the first way has started. */
static void test_splice_new_fails(void **state)
{
	struct fx *f = *state;
	for (int bad_a = 0; bad_a < 2; bad_a++) {
		int x[2];
		sockets(x, 0);
		int bad = dup(x[1]);
		assert_true(bad >= 0);
		close(bad);
		size_t before = heap_bytes();
		struct end e = { 0 };
		struct husk_err err = { 0 };
		struct ev_splice *sp = NULL;
		int rc = bad_a ? ev_splice_new(f->loop, bad, x[1], on_done, &e, &sp, &err)
			       : ev_splice_new(f->loop, x[1], bad, on_done, &e, &sp, &err);
		assert_int_equal(rc, -EBADF);
		assert_int_equal(err.code, -EBADF);
		assert_null(sp);
		assert_true(fd_closed(x[1]));
		settle(f->loop);
		assert_int_equal(e.calls, 0);
		assert_true(heap_bytes() <= before);
		assert_int_equal(read(x[0], &rc, 1), 0);
		close(x[0]);
	}

	int x[2], y[2];
	sockets(x, 0);
	sockets(y, 0);
	struct rlimit old;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	int lowest = fcntl(x[0], F_DUPFD_CLOEXEC, 0);
	assert_true(lowest > 3);
	close(lowest);
	size_t before = heap_bytes();
	struct end e = { 0 };
	struct husk_err err = { 0 };
	struct ev_splice *sp = NULL;
	/* Every number below the limit is taken: no fd can be opened. */
	struct rlimit low = { .rlim_cur = (rlim_t)lowest, .rlim_max = old.rlim_max };
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	int rc = ev_splice_new(f->loop, x[1], y[1], on_done, &e, &sp, &err);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
	assert_int_equal(rc, -EMFILE);
	assert_int_equal(err.code, -EMFILE);
	assert_null(sp);
	assert_true(fd_closed(x[1]));
	assert_true(fd_closed(y[1]));
	settle(f->loop);
	assert_int_equal(e.calls, 0);
	assert_true(heap_bytes() <= before);
	assert_true(at_end(x[0]));
	assert_true(at_end(y[0]));
	close(x[0]);
	close(y[0]);
}

/* A peer that sends, then closes (not a half-close): an HTTP/1.0 server's
 * last response, a client's last request. Everything it sent before
 * closing reaches the other peer, then EOF; the splice ends. Over AF_UNIX
 * a closed peer is a hang-up at its spliced end, which breaks the way
 * into that end: the way out of it must still deliver what it holds. From
 * either side, a few bytes or more than the splice holds at once. */
static void test_splice_send_then_close(void **state)
{
	struct fx *f = *state;
	for (int side = 0; side < 2; side++)
		for (int big = 0; big < 2; big++) {
			struct conn c;
			splice_pairs(f, &c, 4096);
			int from = side ? c.x0 : c.y0, to = side ? c.y0 : c.x0;
			int spliced = side ? c.x1 : c.y1;
			const size_t total = big ? 1u << 20 : 1000;
			size_t in = 0, out = 0;
			for (int i = 0; i < 10 && (i == 0 || (big && pending(spliced) == 0)); i++) {
				put(from, &in, total);
				settle(f->loop);
			}
			if (big)
				assert_true(pending(spliced) > 0); /* more than the splice took */
			close(from);
			for (int i = 0; i < 100000 && c.e.calls == 0; i++) {
				take(to, &out, 5000);
				settle(f->loop);
			}
			assert_int_equal(c.e.calls, 1);
			while (take(to, &out, 65536) > 0)
				;
			assert_int_equal(out, in);
			assert_int_equal(take(to, &out, 65536), 0);
			close(to);
		}
}

int main(void)
{
	/* As in every program that relays: a reader gone is EPIPE, not death. */
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
		T(test_order_partial_writes_slow_reader),
		T(test_backpressure_both_ways),
		T(test_eof_half_close),
		T(test_broken_destination_stops),
		T(test_broken_destination_drains),
		T(test_close_input),
		T(test_abort),
		T(test_stop_without_done),
		T(test_shared_fd),
		T(test_pty),
		T(test_unwatchable_fds),
		T(test_blocking_source),
		T(test_eintr),
		T(test_buffer_lifetime),
		T(test_splice_both_ways),
		T(test_splice_half_close),
		T(test_splice_broken_peer),
		T(test_splice_loss_ends_other_way),
		T(test_splice_free_early),
		T(test_splice_new_fails),
		T(test_splice_send_then_close),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
