/* Copies a container process's stdio between this terminal (or pipes,
 * files) and the guest's vsock stdio streams until its output ends, each
 * direction a relay of libttrpc's (ttrpc/relay.h). */
#ifndef HUSKCTL_RELAY_H
#define HUSKCTL_RELAY_H

#include <stdbool.h>

#include "husk.h"

struct relay_opts {
	int in;  /* guest stdin stream, -1: none (our stdin is not read) */
	int out; /* guest stdout (or the pty) stream */
	int err; /* guest stderr stream, -1 with a terminal */
	int log; /* the agent's log stream, copied to our stderr; -1: none */
	int vm_pidfd;  /* readable when QEMU exits: -1 when not ours */
	int agent_fd;  /* hang-up means the VM went away */
	bool terminal; /* put our tty in raw mode, forward SIGWINCH */
	/* Called for SIGWINCH and forwarded signals. */
	struct husk_agent *agent;
	const char *id, *exec_id;
};

/* Returns 0 when the guest closed stdout and stderr, or a negative errno
 * with `err` saying why (the VM died, a write failed). The caller must
 * have called relay_block_signals(): INT, TERM, HUP, QUIT, USR1 and USR2
 * are read from a signalfd and forwarded to the container process (a
 * second INT or TERM sends KILL); WINCH resizes its terminal. */
int relay_run(const struct relay_opts *o, struct husk_err *err);

/* Blocks the signals relay_run forwards; call before starting the VM so a
 * ^C during boot is handled in order rather than killing us. */
void relay_block_signals(void);

#endif
