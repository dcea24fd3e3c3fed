/* Unix stream socket helpers. Return an fd (CLOEXEC) or a negative errno. */
#ifndef HUSK_SOCK_H
#define HUSK_SOCK_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "husk/error.h"

/* Binds and listens on `path`, replacing a stale socket file there. */
int husk_unix_listen(const char *path, struct husk_err *err);
int husk_unix_connect(const char *path, struct husk_err *err);

/* The same for SOCK_SEQPACKET: one message a read, with the fds it
 * carries (huskd's socket). The listener is nonblocking. */
int husk_seqpacket_listen(const char *path, struct husk_err *err);
int husk_seqpacket_connect(const char *path, struct husk_err *err);

/* The loopback address of `family` (AF_INET: 127.0.0.1, AF_INET6: ::1)
 * at TCP/UDP `port`, in *ss; returns its length for bind or connect. */
socklen_t husk_loopback_addr(int family, unsigned port, struct sockaddr_storage *ss);

#define HUSK_MSG_FDS_MAX 8
/* Sends one message with n_fds descriptors (SCM_RIGHTS), whole or not at
 * all: 0 or a negative errno (-EPIPE: the peer is gone). */
int husk_msg_send(int fd, const void *buf, size_t len, const int *fds, size_t n_fds);
/* Receives one message of at most `len` bytes and up to HUSK_MSG_FDS_MAX
 * fds (CLOEXEC, the caller's to close). Returns its length (0: the peer
 * closed), or a negative errno: -EMSGSIZE for a message or fd list that
 * did not fit, whose fds are closed. */
ssize_t husk_msg_recv(int fd, void *buf, size_t len, int *fds, size_t *n_fds);

#endif
