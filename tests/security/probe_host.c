/* sec-probe-host: the host half of the container-to-agent isolation test.
 * Runs tests/security/probe.c (husk-probe, copied into the container's
 * rootfs) in a running huskctl VM and judges, from outside, what it saw.
 * Works over either transport: libhusk picks husk-vsockd's hybrid socket or
 * the kernel's vhost-vsock from the VM's state.
 *
 *   sec-probe-host --state-dir DIR --name NAME [--label PREFIX]
 *                  [--probe PATH] [--direct-only] [--hang-guard-s N] [--cid N]...
 *
 * 1. direct, as root and as uid 65534: husk-probe connects to ports 1024
 *    (then sends a GuestDetails request) and 1026 at CID 1, the guest's
 *    own CID, 3 and each --cid (another VM's, say). Every attempt must be
 *    refused and nothing answered.
 * 2. race (unless --direct-only): husk-probe connects in rounds to the
 *    stdio ports of a second process, "the victim", that the host Execs
 *    while it races. The host waits until the probe has finished three
 *    rounds that began after the Exec put the victim's ports up, and only
 *    then connects to them: a container that can reach a stdio port wins
 *    it every time. The probe must win nothing, and the victim's stdin,
 *    stdout, stderr and exit code must be the host's.
 * 3. the agent still serves the host: a new connection, GuestDetails.
 *
 * Prints PASS/FAIL lines (tests/run.sh counts them) with the probe's own
 * lines indented under a failure; exits 1 when anything failed. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "husk.h"
#include "husk/cleanup.h"

#define CALL_TIMEOUT_MS 120000
#define CONNECT_TIMEOUT_MS 5000
#define RACE_ROUNDS_AFTER_EXEC 3
#define LOG_MAX (64u << 10)

struct ctx {
	struct husk_vm *vm;
	struct husk_agent *agent;
	const char *id, *probe, *label;
	uint32_t cid;
	/* what the probe tries besides CID 1: the guest's own, 3 (husk-vsockd's
	 * usual guest CID), and --cid extras (another VM's) */
	char cid_args[8][16];
	size_t ncids;
	int guard_ms; /* a hang guard, never a verdict */
	unsigned failed;
};

struct proc {
	char exec_id[48];
	struct husk_stdio io;
	int in, out, err;
	bool exists;
	/* stdout, line-buffered, and everything read so far (for a FAIL) */
	char buf[4096];
	size_t len;
	char log[LOG_MAX];
	size_t log_len;
};

static void pass(struct ctx *c, const char *name)
{
	printf("PASS %s%s\n", c->label, name);
	fflush(stdout);
}

static void fail(struct ctx *c, const char *name, const char *log, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void fail(struct ctx *c, const char *name, const char *log, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("FAIL %s%s: ", c->label, name);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	if (log && *log) {
		printf("    --- what the probe printed:\n");
		for (const char *l = log; *l;) {
			const char *nl = strchr(l, '\n');
			int n = nl ? (int)(nl - l) : (int)strlen(l);
			printf("    %.*s\n", n, l);
			l += n + (nl ? 1 : 0);
		}
	}
	fflush(stdout);
	c->failed++;
}

static struct husk_stdio pick_ports(void)
{
	uint32_t r = 0;
	(void)!getrandom(&r, sizeof(r), 0);
	uint32_t base = 0x10000 + (r % 0x3fff0000u) / 4 * 4;
	return (struct husk_stdio){ .in = base, .out = base + 1, .err = base + 2 };
}

static void proc_init(struct proc *p, const char *what)
{
	memset(p, 0, sizeof(*p));
	uint32_t r = 0;
	(void)!getrandom(&r, sizeof(r), 0);
	snprintf(p->exec_id, sizeof(p->exec_id), "sec-%s-%08x", what, r);
	p->in = p->out = p->err = -1;
}

static void proc_close_streams(struct proc *p)
{
	int *fds[3] = { &p->in, &p->out, &p->err };
	for (int i = 0; i < 3; i++) {
		if (*fds[i] >= 0)
			close(*fds[i]);
		*fds[i] = -1;
	}
}

/* Exec with stdio on `io`, connect the host's ends, Start. */
static int proc_run(struct ctx *c, struct proc *p, const struct husk_stdio *io, uint32_t uid,
		    const char *const *args, struct husk_err *err)
{
	char json[2048];
	size_t n = (size_t)snprintf(json, sizeof(json),
				    "{\"terminal\":false,\"user\":{\"uid\":%u,\"gid\":%u},"
				    "\"env\":[\"PATH=/bin:/sbin:/usr/bin:/usr/sbin\"],\"cwd\":\"/\","
				    "\"noNewPrivileges\":true,\"args\":[",
				    uid, uid);
	for (size_t i = 0; args[i] && n < sizeof(json); i++)
		n += (size_t)snprintf(json + n, sizeof(json) - n, "%s\"%s\"", i ? "," : "", args[i]);
	if (n >= sizeof(json) - 3)
		return husk_err_set(err, -E2BIG, "process spec too long");
	strcpy(json + n, "]}");
	p->io = *io;
	int r = husk_task_exec(c->agent, c->id, p->exec_id, json, io, err);
	if (r < 0)
		return r;
	p->exists = true;
	return 0;
}

static int proc_connect_start(struct ctx *c, struct proc *p, struct husk_err *err)
{
	const uint32_t ports[3] = { p->io.in, p->io.out, p->io.err };
	int *fds[3] = { &p->in, &p->out, &p->err };
	for (int i = 0; i < 3; i++) {
		if (!ports[i])
			continue;
		*fds[i] = husk_vm_connect(c->vm, ports[i], CONNECT_TIMEOUT_MS, err);
		if (*fds[i] < 0) {
			proc_close_streams(p);
			return husk_err_wrap(err, "the host's connection to stdio port %u", ports[i]);
		}
	}
	return husk_task_start(c->agent, c->id, p->exec_id, NULL, err);
}

/* Next stdout line of `p` into `line`: 1, 0 at EOF, negative on the guard
 * or an error. */
static int proc_line(struct ctx *c, struct proc *p, char *line, size_t max)
{
	for (;;) {
		char *nl = memchr(p->buf, '\n', p->len);
		if (nl) {
			size_t n = (size_t)(nl - p->buf);
			size_t k = n < max - 1 ? n : max - 1;
			memcpy(line, p->buf, k);
			line[k] = '\0';
			memmove(p->buf, nl + 1, p->len - n - 1);
			p->len -= n + 1;
			return 1;
		}
		if (p->out < 0)
			return 0;
		if (p->len == sizeof(p->buf))
			p->len = 0; /* a line that long is not ours: drop it */
		struct pollfd pf = { .fd = p->out, .events = POLLIN };
		int r = poll(&pf, 1, c->guard_ms);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0)
			return -ETIMEDOUT;
		ssize_t k = read(p->out, p->buf + p->len, sizeof(p->buf) - p->len);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			close(p->out);
			p->out = -1;
			if (p->len) {
				memcpy(line, p->buf, p->len < max - 1 ? p->len : max - 1);
				line[p->len < max - 1 ? p->len : max - 1] = '\0';
				p->len = 0;
				return 1;
			}
			return 0;
		}
		size_t room = LOG_MAX - 1 - p->log_len;
		size_t take = (size_t)k < room ? (size_t)k : room;
		memcpy(p->log + p->log_len, p->buf + p->len, take);
		p->log_len += take;
		p->log[p->log_len] = '\0';
		p->len += (size_t)k;
	}
}

/* Everything left on fd `fd` (stderr, a victim's stdout) into buf. */
static size_t drain(struct ctx *c, int fd, char *buf, size_t max)
{
	size_t got = 0;
	while (fd >= 0 && got < max - 1) {
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		int r = poll(&pf, 1, c->guard_ms);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		ssize_t k = read(fd, buf + got, max - 1 - got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		got += (size_t)k;
	}
	buf[got] = '\0';
	return got;
}

/* Wait and Delete; the exit status, or -1. Kills a process that never
 * started (the host could not connect its stdio) so it can be deleted. */
static int proc_finish(struct ctx *c, struct proc *p, bool started)
{
	proc_close_streams(p);
	if (!p->exists)
		return -1;
	struct husk_err err = { 0 };
	uint32_t status = 0;
	int r = -1;
	if (!started)
		husk_task_kill(c->agent, c->id, p->exec_id, 9, false, &err);
	else if (husk_task_wait(c->agent, c->id, p->exec_id, &status, &err) == 0)
		r = (int)status;
	husk_task_delete(c->agent, c->id, p->exec_id, NULL, &err);
	p->exists = false;
	return r;
}

static void add_cid(struct ctx *c, uint32_t cid)
{
	char v[16];
	snprintf(v, sizeof(v), "%u", cid);
	for (size_t i = 0; i < c->ncids; i++)
		if (strcmp(c->cid_args[i], v) == 0)
			return;
	if (c->ncids < sizeof(c->cid_args) / sizeof(c->cid_args[0]))
		strcpy(c->cid_args[c->ncids++], v);
}

/* Appends "--cid N" for each CID at args[n], NULL-terminated. */
static void add_cid_args(const struct ctx *c, const char **args, size_t n)
{
	for (size_t i = 0; i < c->ncids; i++) {
		args[n++] = "--cid";
		args[n++] = c->cid_args[i];
	}
	args[n] = NULL;
}

/* 1. From inside, ports 1024 and 1026 at every CID the guest could name. */
static void direct(struct ctx *c, uint32_t uid)
{
	char name[96];
	snprintf(name, sizeof(name), "container-uid-%u-cannot-reach-agent", uid);
	const char *args[48] = { c->probe, "direct", "--port", "1024", "--port", "1026" };
	add_cid_args(c, args, 6);
	struct proc *p = calloc(1, sizeof(*p));
	if (!p) {
		fail(c, name, NULL, "out of memory");
		return;
	}
	proc_init(p, "direct");
	struct husk_stdio io = pick_ports();
	io.in = 0;
	struct husk_err err = { 0 };
	if (proc_run(c, p, &io, uid, args, &err) < 0 || proc_connect_start(c, p, &err) < 0) {
		fail(c, name, NULL, "running the probe: %s", err.msg);
		proc_finish(c, p, false);
		free(p);
		return;
	}
	char line[1024];
	unsigned attempts = 0, refused = 0;
	bool done = false, done_clean = false;
	int r;
	while ((r = proc_line(c, p, line, sizeof(line))) > 0) {
		if (strncmp(line, "attempt ", 8) == 0) {
			attempts++;
			refused += strstr(line, " refused ") != NULL;
		} else if (strncmp(line, "done ", 5) == 0) {
			done = true;
			done_clean = strstr(line, " connected=0 answered=0") != NULL;
		}
	}
	char errs[2048];
	drain(c, p->err, errs, sizeof(errs));
	int status = proc_finish(c, p, true);
	/* CID 1 and the guest's own, at least, times the two ports. */
	if (r == 0 && done && done_clean && attempts >= 4 && refused == attempts && status == 0)
		pass(c, name);
	else
		fail(c, name, p->log,
		     "%u of %u attempts refused, probe %s, exit status %d%s%s", refused, attempts,
		     r < 0 ? "hung (guard)" : done ? "finished" : "did not finish", status,
		     *errs ? "; stderr: " : "", errs);
	free(p);
}

/* Asks the racing probe for `k` more rounds and waits until they are
 * over (its "synced" line). */
static int sync_probe(struct ctx *c, struct proc *p, unsigned k)
{
	char cmd[32], line[1024];
	int n = snprintf(cmd, sizeof(cmd), "sync %u\n", k);
	if (p->in < 0 || write(p->in, cmd, (size_t)n) != n)
		return -EPIPE;
	int r;
	while ((r = proc_line(c, p, line, sizeof(line))) > 0)
		if (strncmp(line, "synced ", 7) == 0)
			return 0;
	return r < 0 ? r : -EPIPE;
}

/* 2. The probe races the host for a second process's stdio ports. */
static void race(struct ctx *c)
{
	struct proc *pr = calloc(1, sizeof(*pr)), *v = calloc(1, sizeof(*v));
	if (!pr || !v) {
		fail(c, "container-cannot-take-stdio-port", NULL, "out of memory");
		free(pr);
		free(v);
		return;
	}
	proc_init(pr, "race");
	proc_init(v, "victim");
	struct husk_stdio vio = pick_ports(), pio = pick_ports();
	while (pio.in == vio.in)
		pio = pick_ports();
	char p0[16], p1[16], p2[16];
	snprintf(p0, sizeof(p0), "%u", vio.in);
	snprintf(p1, sizeof(p1), "%u", vio.out);
	snprintf(p2, sizeof(p2), "%u", vio.err);
	const char *args[48] = { c->probe, "race", "--port", p0, "--port", p1, "--port", p2 };
	add_cid_args(c, args, 8);
	struct husk_err err = { 0 };
	char line[1024];
	int r = 0;
	unsigned rounds_after = 0;
	bool racing = false, v_started = false, host_ok = false;
	char vdetail[1024] = "";
	if (proc_run(c, pr, &pio, 0, args, &err) < 0 || proc_connect_start(c, pr, &err) < 0) {
		fail(c, "container-cannot-take-stdio-port", NULL, "running the probe: %s", err.msg);
		goto out;
	}
	/* Racing, and a round done since: it is connecting right now. */
	while (!racing && (r = proc_line(c, pr, line, sizeof(line))) > 0)
		racing = strcmp(line, "racing") == 0;
	if (!racing || sync_probe(c, pr, 1) < 0) {
		fail(c, "container-cannot-take-stdio-port", pr->log, "the probe never raced");
		goto stop;
	}
	/* The victim's ports are up once Exec returns. */
	const char *vargs[] = { "sh", "-c",
				"read x; echo victim-got-$x; echo victim-err >&2; exit 5", NULL };
	if (proc_run(c, v, &vio, 0, vargs, &err) < 0) {
		fail(c, "host-keeps-stdio-port", NULL, "Exec of the victim: %s", err.msg);
		goto stop;
	}
	/* Rounds that all began after this point, i.e. while the ports were
	 * listening for the host, which has not connected yet. */
	if (sync_probe(c, pr, RACE_ROUNDS_AFTER_EXEC) == 0)
		rounds_after = RACE_ROUNDS_AFTER_EXEC;
	if (proc_connect_start(c, v, &err) < 0) {
		snprintf(vdetail, sizeof(vdetail), "%s", err.msg);
	} else {
		v_started = true;
		(void)!write(v->in, "hello\n", 6);
		close(v->in);
		v->in = -1;
		char out[256], errs[256];
		drain(c, v->out, out, sizeof(out));
		drain(c, v->err, errs, sizeof(errs));
		int st = proc_finish(c, v, true);
		host_ok = strcmp(out, "victim-got-hello\n") == 0 && strcmp(errs, "victim-err\n") == 0 &&
			  st == 5;
		snprintf(vdetail, sizeof(vdetail), "stdout '%s' stderr '%s' status %d", out, errs, st);
	}
stop:
	if (pr->in >= 0)
		(void)!write(pr->in, "stop\n", 5);
	bool done = false, clean = false;
	while ((r = proc_line(c, pr, line, sizeof(line))) > 0) {
		if (strncmp(line, "done ", 5) == 0) {
			done = true;
			clean = strstr(line, " connected=0 ") != NULL;
		}
	}
	char errs[2048];
	drain(c, pr->err, errs, sizeof(errs));
	int st = proc_finish(c, pr, true);
	if (racing) {
		if (done && clean && st == 0 && rounds_after == RACE_ROUNDS_AFTER_EXEC)
			pass(c, "container-cannot-take-stdio-port");
		else
			fail(c, "container-cannot-take-stdio-port", pr->log,
			     "probe %s, %u rounds after the victim's Exec, exit status %d%s%s",
			     r < 0 ? "hung (guard)" : done ? "finished" : "did not finish",
			     rounds_after, st, *errs ? "; stderr: " : "", errs);
		if (host_ok)
			pass(c, "host-keeps-stdio-port");
		else if (v->exists || v_started || *vdetail)
			fail(c, "host-keeps-stdio-port", NULL, "%s", vdetail);
	}
out:
	proc_finish(c, v, v_started);
	proc_finish(c, pr, false);
	free(pr);
	free(v);
}

/* 3. A fresh connection from the host is served. */
static void agent_serves(struct ctx *c)
{
	struct husk_agent *a = NULL;
	struct husk_err err = { 0 };
	struct husk_guest_details d;
	if (husk_agent_open(c->vm, CALL_TIMEOUT_MS, &a, &err) == 0 &&
	    husk_agent_guest_details(a, &d, &err) == 0 && d.cpus > 0)
		pass(c, "agent-serves-host-after-probes");
	else
		fail(c, "agent-serves-host-after-probes", NULL, "%s", err.msg);
	husk_agent_close(a);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "state-dir", required_argument, NULL, 's' }, { "name", required_argument, NULL, 'n' },
		{ "label", required_argument, NULL, 'l' },     { "probe", required_argument, NULL, 'p' },
		{ "direct-only", no_argument, NULL, 'd' },     { "hang-guard-s", required_argument, NULL, 'g' },
		{ "cid", required_argument, NULL, 'c' },       { 0 },
	};
	const char *state = NULL;
	bool direct_only = false;
	uint32_t extra[4];
	size_t nextra = 0;
	struct ctx c = { .probe = "/husk-probe", .label = "", .guard_ms = 600000 };
	for (int o; (o = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
		switch (o) {
		case 's': state = optarg; break;
		case 'n': c.id = optarg; break;
		case 'l': c.label = optarg; break;
		case 'p': c.probe = optarg; break;
		case 'd': direct_only = true; break;
		case 'g': c.guard_ms = atoi(optarg) * 1000; break;
		case 'c': extra[nextra < 4 ? nextra++ : 3] = (uint32_t)strtoul(optarg, NULL, 10); break;
		default: return 2;
		}
	}
	if (!state || !c.id || c.guard_ms <= 0) {
		fprintf(stderr, "usage: sec-probe-host --state-dir DIR --name NAME [--label PREFIX] "
				"[--probe PATH] [--direct-only] [--hang-guard-s N] [--cid N]...\n");
		return 2;
	}
	struct husk_err err = { 0 };
	if (husk_vm_open(state, c.id, &c.vm, &err) < 0 ||
	    husk_agent_open(c.vm, CALL_TIMEOUT_MS, &c.agent, &err) < 0) {
		printf("FAIL %sprobe-host-attach: %s\n", c.label, err.msg);
		husk_vm_free(c.vm);
		return 1;
	}
	c.cid = husk_vm_cid(c.vm);
	add_cid(&c, c.cid);
	add_cid(&c, 3);
	for (size_t i = 0; i < nextra; i++)
		add_cid(&c, extra[i]);
	direct(&c, 0);
	direct(&c, 65534);
	if (!direct_only)
		race(&c);
	agent_serves(&c);
	husk_agent_close(c.agent);
	husk_vm_free(c.vm);
	return c.failed ? 1 : 0;
}
