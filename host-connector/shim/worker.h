/* A serial worker thread for the shim's slow, blocking work (building a
 * rootfs image, booting the VM, hot-adding or removing a disk, stopping
 * the VM), so that the event loop keeps serving every other call
 * meanwhile. Jobs run one at a time, in submission order: libhusk's VM
 * object takes one mutating call at a time. Each job's `done` runs on the
 * loop's thread once its `run` has returned.
 *
 * The thread lives as long as the worker: children it spawns (QEMU,
 * husk-vsockd) get PR_SET_PDEATHSIG from it, which the kernel ties to the
 * spawning thread, not the process. Free the worker only after every VM
 * it started has been stopped. */
#ifndef HUSK_SHIM_WORKER_H
#define HUSK_SHIM_WORKER_H

#include "husk/error.h"
#include "ttrpc/loop.h"

struct shim_worker;

/* On the worker thread: returns 0 or a negative errno with `err` filled. */
typedef int (*shim_job_run_fn)(void *data, struct husk_err *err);
/* On the loop's thread: rc and err are what `run` returned; rc is
 * -ECANCELED when the worker was freed before the job ran. */
typedef void (*shim_job_done_fn)(void *data, int rc, const struct husk_err *err);

int shim_worker_new(struct ev_loop *loop, struct shim_worker **out, struct husk_err *err);
/* Queues a job. On failure (-ENOMEM) neither callback runs. */
int shim_worker_submit(struct shim_worker *w, shim_job_run_fn run, shim_job_done_fn done,
		       void *data, struct husk_err *err);
/* Jobs queued or running. */
unsigned shim_worker_pending(const struct shim_worker *w);
/* Waits for the running job, then calls every queued job's `done` with
 * -ECANCELED (their `run` never happens) and every finished job's with its
 * result, on this thread; then stops the thread. NULL is ignored. */
void shim_worker_free(struct shim_worker *w);

#endif
