/* The shim's byte plumbing: containerd's stdio URIs (stdio_uri.c),
 * binary:// loggers (logger.c), and the relays that copy between
 * containerd's side and the guest's vsock stdio streams (relay.c over
 * ttrpc/relay.h). */
#ifndef HUSK_SHIM_IO_H
#define HUSK_SHIM_IO_H

#include <stdbool.h>
#include <stddef.h>

#include "husk/error.h"
#include "ttrpc/loop.h"

/* ---- stdio_uri.c ---- */
enum stdio_kind { STDIO_FIFO, STDIO_FILE, STDIO_BINARY };
struct stdio_uri {
	enum stdio_kind kind;
	char *path;  /* decoded */
	char **args; /* binary: "key", "value", ... from the query */
	size_t n_args;
};
int stdio_uri_parse(const char *uri, struct stdio_uri *u, struct husk_err *err);
void stdio_uri_free(struct stdio_uri *u);
/* file://: creates the directories and opens for appending. */
int stdio_open_file(const char *path, struct husk_err *err);

/* ---- logger.c ---- */
struct logger;
int logger_start(struct ev_loop *loop, const struct stdio_uri *u, const char *ns, const char *id,
		 const char *cwd, struct logger **out, struct husk_err *err);
/* The write end of the logger's stdout (which 1) or stderr (2) pipe, once. */
int logger_take_fd(struct logger *l, int which);
/* Ready: it closed (or wrote to) fd 5, or exited. */
bool logger_ready(const struct logger *l);
void logger_when_ready(struct logger *l, void (*fn)(void *data), void *data);
/* Closes our pipe ends, SIGTERM, SIGKILL 12 s later. False when it has
 * exited already; else `done` runs once it has. */
bool logger_stop(struct logger *l, void (*done)(void *data), void *data);
/* SIGKILL if still running, reap, free. NULL is ignored. */
void logger_free(struct logger *l);

/* ---- relay.c: copies one byte stream from src to dst (both owned, made
 * nonblocking), on ttrpc/relay.h's relay. A broken dst drains src. ---- */
struct relay;
typedef void (*relay_done_fn)(void *data, int tag);
/* `done(data, tag)` runs once the stream has ended, the relay already
 * freed; dst_is_socket: it is shut down for writing after the last byte. */
int relay_new(struct ev_loop *loop, int src, int dst, bool dst_is_socket, relay_done_fn done,
	      void *data, int tag, struct relay **out, struct husk_err *err);
/* Input side ends after what is readable now has been copied (CloseIO). */
void relay_close_input(struct relay *r);
/* Drops the source: copies what is buffered, then ends (VM lost). */
void relay_abort_source(struct relay *r);
/* Closes both fds at once; no callback. NULL is ignored. relay_close_input
 * and relay_abort_source may end (free) the relay and call `done`. */
void relay_free(struct relay *r);

#endif
