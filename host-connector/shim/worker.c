/* The shim's worker thread (worker.h). The loop learns of finished jobs
 * through an eventfd; the queues are guarded by one mutex. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "worker.h"

struct job {
	shim_job_run_fn run;
	shim_job_done_fn done;
	void *data;
	int rc;
	struct husk_err err;
	struct job *next;
};

/* A FIFO of jobs. */
struct job_queue {
	struct job *head, **tail;
};

struct shim_worker {
	struct ev_loop *loop;
	int efd;
	struct ev_io *io;
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stopping;		  /* guarded by lock */
	struct job_queue queued;  /* guarded by lock */
	struct job_queue finished; /* guarded by lock */
	unsigned pending;	  /* queued or running; loop thread only */
};

static void queue_init(struct job_queue *q)
{
	q->head = NULL;
	q->tail = &q->head;
}

static void queue_push(struct job_queue *q, struct job *j)
{
	j->next = NULL;
	*q->tail = j;
	q->tail = &j->next;
}

static struct job *queue_take_all(struct job_queue *q)
{
	struct job *all = q->head;
	queue_init(q);
	return all;
}

static struct job *queue_pop(struct job_queue *q)
{
	struct job *j = q->head;
	if (j) {
		q->head = j->next;
		if (!q->head)
			q->tail = &q->head;
	}
	return j;
}

static void *worker_main(void *arg)
{
	struct shim_worker *w = arg;
	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (!w->stopping && !w->queued.head)
			pthread_cond_wait(&w->wake, &w->lock);
		if (w->stopping)
			break;
		struct job *j = queue_pop(&w->queued);
		pthread_mutex_unlock(&w->lock);
		j->rc = j->run(j->data, &j->err);
		pthread_mutex_lock(&w->lock);
		queue_push(&w->finished, j);
		uint64_t one = 1;
		/* A full counter still wakes the loop: nothing to retry. */
		(void)!write(w->efd, &one, sizeof(one));
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

static void run_done(struct shim_worker *w, struct job *list)
{
	while (list) {
		struct job *j = list;
		list = j->next;
		if (w->pending)
			w->pending--;
		j->done(j->data, j->rc, &j->err);
		free(j);
	}
}

static void on_finished(struct ev_io *io, int fd, uint32_t events, void *data)
{
	(void)io, (void)events;
	struct shim_worker *w = data;
	uint64_t n;
	(void)!read(fd, &n, sizeof(n));
	pthread_mutex_lock(&w->lock);
	struct job *done = queue_take_all(&w->finished);
	pthread_mutex_unlock(&w->lock);
	run_done(w, done);
}

int shim_worker_new(struct ev_loop *loop, struct shim_worker **out, struct husk_err *err)
{
	struct shim_worker *w = calloc(1, sizeof(*w));
	if (!w)
		return husk_err_set(err, -ENOMEM, "worker: out of memory");
	w->loop = loop;
	queue_init(&w->queued);
	queue_init(&w->finished);
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->wake, NULL);
	w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int rc;
	if (w->efd < 0) {
		rc = husk_err_sys(err, -errno, "worker: eventfd");
		goto fail;
	}
	if ((rc = ev_io_add(loop, w->efd, EPOLLIN, on_finished, w, &w->io, err)) < 0)
		goto fail;
	if ((rc = pthread_create(&w->thread, NULL, worker_main, w)) != 0) {
		rc = husk_err_set(err, -rc, "worker: pthread_create: %s", strerror(rc));
		goto fail;
	}
	w->thread_started = true;
	*out = w;
	return 0;
fail:
	shim_worker_free(w);
	return rc;
}

int shim_worker_submit(struct shim_worker *w, shim_job_run_fn run, shim_job_done_fn done,
		       void *data, struct husk_err *err)
{
	struct job *j = calloc(1, sizeof(*j));
	if (!j)
		return husk_err_set(err, -ENOMEM, "worker: out of memory");
	*j = (struct job){ .run = run, .done = done, .data = data };
	pthread_mutex_lock(&w->lock);
	queue_push(&w->queued, j);
	pthread_cond_signal(&w->wake);
	pthread_mutex_unlock(&w->lock);
	w->pending++;
	return 0;
}

unsigned shim_worker_pending(const struct shim_worker *w)
{
	return w ? w->pending : 0;
}

void shim_worker_free(struct shim_worker *w)
{
	if (!w)
		return;
	if (w->thread_started) {
		pthread_mutex_lock(&w->lock);
		w->stopping = true;
		pthread_cond_signal(&w->wake);
		pthread_mutex_unlock(&w->lock);
		pthread_join(w->thread, NULL);
	}
	/* Results first (they ran), then what never ran, in order. */
	struct job *done = queue_take_all(&w->finished);
	struct job *never = queue_take_all(&w->queued);
	run_done(w, done);
	for (struct job *j = never; j; j = j->next) {
		j->rc = -ECANCELED;
		husk_err_set(&j->err, -ECANCELED, "the shim is shutting down");
	}
	run_done(w, never);
	ev_io_del(w->io);
	if (w->efd >= 0)
		close(w->efd);
	pthread_cond_destroy(&w->wake);
	pthread_mutex_destroy(&w->lock);
	free(w);
}
