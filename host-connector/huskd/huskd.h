/* huskd: keeps ready VMs per shape and hands them out (docs/pool.md).
 *
 *   main.c    options, the socket, signals, the loop
 *   shape.c   a shape from its --shape words
 *   pool.c    the VMs: keepers booting them, ready ones, hand-outs, refill
 *   serve.c   the clients' requests: take, status
 */
#ifndef HUSKD_H
#define HUSKD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "husk.h"
#include "husk/sock.h"
#include "ttrpc/loop.h"

#define HUSKD_MSG_MAX 8192
#define HUSKD_NAME_MAX 32

/* One VM of the pool. BOOTING (its keeper boots it) -> READY (the keeper
 * sent it; huskd holds its lifeline) -> HANDED (a client holds the
 * lifeline; huskd only reaps the keeper); READY -> ENDING when its VMM
 * died (huskd let go of the lifeline; the keeper cleans up). Any state ->
 * gone, when the keeper exits. */
enum pool_vm_state { PVM_BOOTING, PVM_READY, PVM_ENDING, PVM_HANDED };

struct shape;
struct huskd;

struct pool_vm {
	struct huskd *d;
	struct shape *shape;
	enum pool_vm_state state;
	char name[HUSKD_NAME_MAX + 1];
	char *key; /* the shape's key when it booted */
	pid_t keeper_pid;
	int keeper_pidfd;
	struct ev_io *keeper_io;
	int report_fd; /* BOOTING: the keeper's report */
	struct ev_io *report_io;
	int lifeline_fd; /* BOOTING, READY: ours; the keeper's status when the VMM exits */
	struct ev_io *lifeline_io;
	char *msg; /* READY: the hand-over message and its fds */
	int fds[HUSK_MSG_FDS_MAX];
	size_t n_fds;
	uint64_t started_ns, ready_ns;
	struct pool_vm *next;
};

struct shape {
	struct huskd *d;
	char name[HUSKD_NAME_MAX + 1];
	struct husk_vm_config cfg; /* strings owned (shape.c) */
	char key[HUSK_POOL_KEY_MAX];
	unsigned slots;
	unsigned ready_target;
	bool warm_up; /* a throwaway first container in each VM (docs/pool.md) */
	unsigned booting, ready, handed;
	uint64_t taken, boot_failures, vm_deaths;
	uint64_t last_boot_ns;
	unsigned fail_streak; /* failed boots since the last good one */
	struct ev_timer *retry;
	bool retry_due; /* the wait after a failure is over: boot once */
	char last_error[HUSK_ERR_MSG_MAX];
	struct shape *next;
};

struct huskd {
	struct ev_loop *loop;
	const char *socket_path;
	const char *state_dir;
	unsigned boot_parallel; /* keepers booting at once, all shapes */
	char *warm_image;       /* husk_pool_keep's; NULL: no warm-up */
	unsigned booting;
	bool stopping;
	int listen_fd;
	struct ev_io *listen_io;
	struct shape *shapes;
	struct pool_vm *vms;
};

/* shape.c: "ready=2,vcpus=1,memory=256,..." (docs/pool.md); defaults for
 * what it leaves out. */
int shape_parse(const char *spec, struct shape **out, struct husk_err *err);
void shape_free(struct shape *s);

/* pool.c */
void pool_refill(struct huskd *d);
/* The oldest ready VM of a shape serving `key` with `slots`; NULL when
 * the shape has none ready (*shape_found says whether any shape serves). */
struct pool_vm *pool_find_ready(struct huskd *d, const char *key, unsigned slots,
				bool *shape_found);
/* Recomputes each shape's key from its files (a kernel replaced since):
 * ready VMs of an old key end, new ones boot. */
void pool_refresh_keys(struct huskd *d);
/* After its message went to a client: the VM is the client's. */
void pool_handed(struct huskd *d, struct pool_vm *v);
/* Ends every VM not handed out and waits (bounded) for their keepers. */
void pool_shutdown(struct huskd *d);

/* serve.c */
void serve_accept(struct ev_io *io, int fd, uint32_t events, void *data);

void huskd_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
