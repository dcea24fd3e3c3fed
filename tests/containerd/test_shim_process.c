/* The shim's process states and table (host-connector/shim/process.c),
 * without a VM: the transitions runc-v2's init_state.go allows, the verdict
 * every Task call gets in every state, and the exit bookkeeping (an exit
 * reaches containerd only once its output is copied and an OOM check has
 * answered, once). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "github.com/containerd/containerd/api/events/task.pb-c.h"
#include "../../host-connector/shim/shim.h"

/* What service.c would publish, recorded. */
static char published[16][32];
static uint32_t exit_status[16];
static unsigned n_published;

void shim_publish(struct shim *s, const char *topic, const ProtobufCMessage *event)
{
	(void)s;
	if (n_published < 16) {
		snprintf(published[n_published], sizeof(published[0]), "%s", topic);
		if (strcmp(topic, "/tasks/exit") == 0)
			exit_status[n_published] =
				((const Containerd__Events__TaskExit *)event)->exit_status;
		n_published++;
	}
}

uint32_t shim_reported_pid(const struct proc *p)
{
	return p->state == PROC_CREATING ? 0 : 4242;
}

static int setup(void **state)
{
	struct shim *s = calloc(1, sizeof(*s));
	*state = s;
	n_published = 0;
	return 0;
}

static int teardown(void **state)
{
	struct shim *s = *state;
	shim_table_free(s);
	free(s);
	return 0;
}

static void transitions(void **state)
{
	(void)state;
	/* runc-v2's lifecycle, and ours around it. */
	static const enum proc_state path[] = { PROC_CREATING, PROC_CREATED, PROC_STARTING,
						PROC_RUNNING, PROC_PAUSED, PROC_RUNNING,
						PROC_EXITING, PROC_STOPPED, PROC_DELETED };
	for (size_t i = 0; i + 1 < sizeof(path) / sizeof(path[0]); i++)
		assert_true(proc_transition_ok(path[i], path[i + 1]));
	/* Created processes may be deleted, or die before Start. */
	assert_true(proc_transition_ok(PROC_CREATED, PROC_DELETED));
	assert_true(proc_transition_ok(PROC_CREATED, PROC_EXITING));
	/* A failed Start leaves it created; a Create the agent refused
	 * leaves nothing. */
	assert_true(proc_transition_ok(PROC_STARTING, PROC_CREATED));
	assert_true(proc_transition_ok(PROC_CREATING, PROC_DELETED));
	/* Never: a running process deleted, a stopped one revived, anything
	 * out of DELETED, skipping CREATED. */
	assert_false(proc_transition_ok(PROC_RUNNING, PROC_DELETED));
	assert_false(proc_transition_ok(PROC_PAUSED, PROC_DELETED));
	assert_false(proc_transition_ok(PROC_EXITING, PROC_DELETED));
	assert_false(proc_transition_ok(PROC_STOPPED, PROC_RUNNING));
	assert_false(proc_transition_ok(PROC_CREATING, PROC_RUNNING));
	assert_false(proc_transition_ok(PROC_RUNNING, PROC_STOPPED));
	for (int to = 0; to < PROC_STATES; to++)
		assert_false(proc_transition_ok(PROC_DELETED, (enum proc_state)to));
	assert_false(proc_transition_ok((enum proc_state)99, PROC_CREATED));
}

static void verdict(enum proc_state s, enum proc_op op, enum proc_verdict want, int want_code,
		    const char *want_msg)
{
	int code = -1;
	char msg[128];
	enum proc_verdict v = proc_check(s, op, &code, msg, sizeof(msg));
	if (v != want || (want == PROC_REFUSE && code != want_code) ||
	    (want_msg && !strstr(msg, want_msg)))
		fail_msg("%s op %d: verdict %d code %d \"%s\", want %d code %d \"%s\"",
			 proc_state_name(s), (int)op, (int)v, code, msg, (int)want, want_code,
			 want_msg ? want_msg : "");
}

/* The calls containerd makes in each state get what runc-v2 gives. */
static void checks(void **state)
{
	(void)state;
	const int FP = TTRPC_FAILED_PRECONDITION, NF = TTRPC_NOT_FOUND;
	/* Kill and Delete of a created, never started process work. */
	verdict(PROC_CREATED, PROC_OP_KILL, PROC_ALLOW, 0, NULL);
	verdict(PROC_CREATED, PROC_OP_DELETE, PROC_ALLOW, 0, NULL);
	verdict(PROC_CREATED, PROC_OP_START, PROC_ALLOW, 0, NULL);
	/* A Delete while the VM still boots waits for the Create. */
	verdict(PROC_CREATING, PROC_OP_DELETE, PROC_LATER, 0, NULL);
	verdict(PROC_CREATING, PROC_OP_KILL, PROC_LATER, 0, NULL);
	verdict(PROC_CREATING, PROC_OP_START, PROC_REFUSE, FP, "being created");
	verdict(PROC_CREATING, PROC_OP_STATE, PROC_ALLOW, 0, NULL);
	verdict(PROC_RUNNING, PROC_OP_START, PROC_REFUSE, FP, "cannot start a running process");
	verdict(PROC_RUNNING, PROC_OP_DELETE, PROC_REFUSE, FP, "cannot delete a running process");
	verdict(PROC_RUNNING, PROC_OP_PAUSE, PROC_ALLOW, 0, NULL);
	verdict(PROC_RUNNING, PROC_OP_EXEC, PROC_ALLOW, 0, NULL);
	verdict(PROC_PAUSED, PROC_OP_EXEC, PROC_REFUSE, FP, "paused");
	verdict(PROC_PAUSED, PROC_OP_DELETE, PROC_REFUSE, FP, "cannot delete a paused process");
	verdict(PROC_PAUSED, PROC_OP_RESUME, PROC_ALLOW, 0, NULL);
	verdict(PROC_PAUSED, PROC_OP_KILL, PROC_ALLOW, 0, NULL);
	/* Gone in the guest, its output still arriving: a kill has nothing
	 * to do, containerd still sees it running. */
	verdict(PROC_EXITING, PROC_OP_KILL, PROC_NOOP, 0, NULL);
	verdict(PROC_EXITING, PROC_OP_DELETE, PROC_REFUSE, FP, "running");
	verdict(PROC_STOPPED, PROC_OP_KILL, PROC_REFUSE, NF, "process already finished");
	verdict(PROC_STOPPED, PROC_OP_DELETE, PROC_ALLOW, 0, NULL);
	verdict(PROC_STOPPED, PROC_OP_START, PROC_REFUSE, FP, "cannot start a stopped process");
	verdict(PROC_STOPPED, PROC_OP_EXEC, PROC_REFUSE, FP, "not running");
	verdict(PROC_STOPPED, PROC_OP_IO, PROC_NOOP, 0, NULL);
	/* Every (state, op) has a verdict, and every refusal a reason. */
	for (int st = 0; st < PROC_STATES; st++)
		for (int op = 0; op <= PROC_OP_STATE; op++) {
			int code;
			char msg[128];
			if (proc_check((enum proc_state)st, (enum proc_op)op, &code, msg,
				       sizeof(msg)) == PROC_REFUSE) {
				assert_true(code == FP || code == NF);
				assert_true(strlen(msg) > 0);
			}
		}
	verdict((enum proc_state)42, PROC_OP_KILL, PROC_REFUSE, TTRPC_INTERNAL, NULL);
}

static struct proc *new_proc(struct shim *s, const char *id, const char *exec_id)
{
	struct ctr *c = ctr_find(s, id);
	if (!c)
		c = ctr_new(s, id, "/bundle", SHIM_POD_NONE);
	assert_non_null(c);
	struct proc *p = proc_new(c, exec_id, "", "/fifo-out", "/fifo-err", false);
	assert_non_null(p);
	return p;
}

static void table(void **state)
{
	struct shim *s = *state;
	struct proc *init = new_proc(s, "c1", "");
	struct proc *e1 = new_proc(s, "c1", "e1");
	struct ctr *c = ctr_find(s, "c1");
	assert_ptr_equal(c->init, init);
	assert_ptr_equal(proc_find(c, NULL), init);
	assert_ptr_equal(proc_find(c, ""), init);
	assert_ptr_equal(proc_find(c, "e1"), e1);
	assert_null(proc_find(c, "e2"));
	assert_string_equal(proc_task_id(init), "c1");
	assert_string_equal(proc_task_id(e1), "e1");
	assert_int_equal(ctr_count(s), 1);
	/* Stdio ports: only for the streams given, never the agent's. */
	assert_int_equal(init->ports.in, 0);
	assert_true(init->ports.out > 1026 && init->ports.err == init->ports.out + 1);
	assert_int_equal(init->state, PROC_CREATING);
	/* An exec whose Exec the agent refused leaves nothing. */
	proc_set_state(e1, PROC_DELETED);
	assert_null(proc_find(c, "e1"));
	/* A process held by a call in flight outlives its deletion. */
	struct proc *e2 = new_proc(s, "c1", "e2");
	proc_ref(e2);
	proc_set_state(e2, PROC_DELETED);
	assert_null(proc_find(c, "e2"));
	assert_string_equal(e2->exec_id, "e2"); /* still valid: ASan would say */
	proc_unref(e2);
	/* An illegal transition is refused (and logged), the state kept. */
	proc_set_state(init, PROC_RUNNING);
	assert_int_equal(init->state, PROC_CREATING);
	proc_set_state(init, PROC_DELETED);
	assert_null(c->init);
	ctr_unlist(c);
	assert_null(ctr_find(s, "c1"));
	assert_int_equal(ctr_count(s), 0);
}

/* An exit is published once, when the output is all there and the OOM
 * check answered; the first status wins. */
static void exits(void **state)
{
	struct shim *s = *state;
	struct proc *p = new_proc(s, "c2", "");
	proc_set_state(p, PROC_CREATED);
	proc_set_state(p, PROC_STARTING);
	proc_set_state(p, PROC_RUNNING);
	p->outputs_open = 1;
	p->oom_check = true;
	proc_exited(p, 137, NULL);
	assert_int_equal(p->state, PROC_EXITING);
	assert_int_equal(n_published, 0);
	/* A second report (the VM lost later) changes nothing. */
	proc_exited(p, 255, NULL);
	assert_int_equal(p->status, 137);
	p->outputs_open = 0;
	proc_maybe_stopped(p);
	assert_int_equal(p->state, PROC_EXITING); /* the OOM check is pending */
	p->oom_check = false;
	proc_maybe_stopped(p);
	assert_int_equal(p->state, PROC_STOPPED);
	assert_int_equal(n_published, 1);
	assert_string_equal(published[0], "/tasks/exit");
	assert_int_equal(exit_status[0], 137);
	assert_true(p->exited_at.tv_sec > 0);
	proc_maybe_stopped(p);
	assert_int_equal(n_published, 1);
	proc_set_state(p, PROC_DELETED);
	assert_null(ctr_find(s, "c2")->init);
}

/* A created process that dies before Start (killed) exits as any other. */
static void created_killed(void **state)
{
	struct shim *s = *state;
	struct proc *p = new_proc(s, "c3", "");
	proc_set_state(p, PROC_CREATED);
	struct timespec at = { 1000, 5 };
	proc_exited(p, 137, &at);
	assert_int_equal(p->state, PROC_STOPPED);
	assert_int_equal(p->exited_at.tv_sec, 1000);
	assert_int_equal(n_published, 1);
	/* CREATING processes have nothing to exit: the report is dropped. */
	struct proc *q = new_proc(s, "c4", "");
	proc_exited(q, 1, NULL);
	assert_int_equal(q->state, PROC_CREATING);
	assert_int_equal(n_published, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(transitions),
		cmocka_unit_test(checks),
		cmocka_unit_test_setup_teardown(table, setup, teardown),
		cmocka_unit_test_setup_teardown(exits, setup, teardown),
		cmocka_unit_test_setup_teardown(created_killed, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
