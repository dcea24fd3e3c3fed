/* The one owner of SIGCHLD in the agent: reaps every child (and, as PID 1
 * or a child subreaper, every orphan) from the event loop and hands each
 * exit status to whoever watches that pid.
 *
 *   init_reaper_new(loop, &r, &err);      blocks SIGCHLD, watches a signalfd
 *   pid = fork() ...;
 *   init_reaper_watch(r, pid, on_exit, data);
 *
 * Reaping happens only inside the loop's callbacks, so code running in any
 * other callback may fork a helper and waitpid(pid) for it synchronously
 * (libjail does) without the reaper stealing it. Nothing else in the
 * process may wait for "any child" (waitpid(-1), wait()).
 *
 * The classic race is covered: when a pid exits (and is reaped) before it
 * is watched, its status is kept in a bounded table of unclaimed exits (the
 * last INIT_REAPER_UNCLAIMED) and delivered when the watch comes. A pid that
 * is our live child at watch time is always the new process, never an old
 * entry of a reused pid. Orphans nobody watches are reaped and, once pushed
 * out of that table, forgotten.
 *
 * Signal state: SIGCHLD stays blocked while the reaper exists (children
 * inherit the mask across fork and exec: whatever a child execs must have
 * its mask reset first, container processes included) and its disposition
 * is set to SIG_DFL (SIG_IGN would make the
 * kernel reap children itself). Both are restored by init_reaper_free().
 * When not PID 1, the process becomes a child subreaper, so that orphans of
 * its descendants are reparented to it rather than to the host's init. */
#ifndef INIT_REAPER_H
#define INIT_REAPER_H

#include <sys/types.h>

#include "husk/error.h"
#include "ttrpc/loop.h"

#define INIT_REAPER_UNCLAIMED 256

struct init_reaper;

/* `status` is the raw wait status (WIFEXITED, WEXITSTATUS, WTERMSIG...).
 * The watch is gone when this runs; the callback may watch, unwatch, or
 * free the reaper. */
typedef void (*init_reaper_fn)(pid_t pid, int status, void *data);

/* One per process (the signal mask is shared). Free it before the loop. */
int init_reaper_new(struct ev_loop *loop, struct init_reaper **out, struct husk_err *err);

/* Calls `on_exit` once, from the loop, when `pid` exits, or on the next
 * loop iteration when it has already exited unclaimed. Errors: -EEXIST
 * when the pid is watched already, -ECHILD when it is neither our child nor
 * an unclaimed exit, -ENOMEM. */
int init_reaper_watch(struct init_reaper *r, pid_t pid, init_reaper_fn on_exit, void *data);

/* Drops the watch on `pid` (-ENOENT when there is none); its exit will be
 * kept as unclaimed. */
int init_reaper_unwatch(struct init_reaper *r, pid_t pid);

/* Stops reaping and restores the signal mask and SIGCHLD disposition.
 * Pending deliveries are dropped. NULL is ignored. */
void init_reaper_free(struct init_reaper *r);

/* The shell's and containerd's exit code of a wait status: the exit status,
 * or 128 + the signal number. */
int init_exit_code(int status);

/* Counters, for tests and the agent's diagnostics. */
struct init_reaper_stats {
	unsigned long reaped;    /* every pid reaped */
	unsigned long delivered; /* exits handed to a watcher */
	unsigned long dropped;   /* unclaimed exits pushed out of the table */
	unsigned unclaimed;      /* currently in the table */
	unsigned watched;        /* current watches */
};
void init_reaper_stats(const struct init_reaper *r, struct init_reaper_stats *out);

#endif
