/* A process's stdio between containerd and the guest (proc_io.c). */
#ifndef HUSK_SHIM_PROC_IO_H
#define HUSK_SHIM_PROC_IO_H

#include "shim.h"

/* A binary:// stdout: its logger starts with the process (Create, Exec),
 * as containerd-shim-runc-v2 starts it in createIO; CONTAINER_ID is the
 * task's id (the exec id for an exec). Nothing for other URIs. */
int proc_open_logger(struct proc *p, struct husk_err *err);
/* At Create or Exec, as containerd-shim-runc-v2 does: containerd's FIFOs
 * (or log file, or logger pipes) are opened at once, so that they are
 * ours even if their files go before the VM is ready (a ctr that died). */
int proc_open_stdio(struct proc *p, struct husk_err *err);
/* After the agent's Create or Exec: its stdio ports listen; connect before
 * Start so no output is produced before we are there to take it. Without
 * blocking the loop: `done` runs once every stream relays (rc 0) or one
 * failed (what was connected stays in p: proc_close_io drops it), never
 * from inside this call. A negative return: nothing started, no `done`. */
typedef void (*proc_io_done_fn)(struct proc *p, int rc, const struct husk_err *err, void *data);
int proc_connect_io(struct proc *p, proc_io_done_fn done, void *data, struct husk_err *err);
/* CloseIO: stdin ends once what containerd wrote has been copied. */
void proc_close_input(struct proc *p);

#endif
