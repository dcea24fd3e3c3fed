/* Drives Sandbox.SetupNetwork through libhusk for tests/agent/net.sh.
 *
 *   agent-net-client AGENT_BINARY TMPDIR
 *
 * Starts AGENT_BINARY (build/test/husk-agent) as libhusk's fake VMM does
 * (--listen unix:, in the caller's network namespace), prints "ready",
 * then reads one request a line from stdin and answers each with "ok" or
 * "error <errno name>: <message>" on one line. A request is words:
 *
 *   if=NAME,MAC,MTU[,ADDRESS/PREFIX...]   route=DESTINATION,GATEWAY,DEVICE
 *
 * where an empty field is "" in the request. At the end of input the VM is
 * stopped. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "husk.h"

#define MAX_IFS 16
#define MAX_ADDRS 20
#define MAX_ROUTES 80

struct request {
	char line[8192];
	struct husk_net_if ifs[MAX_IFS];
	struct husk_net_addr addrs[MAX_IFS][MAX_ADDRS];
	struct husk_net_route routes[MAX_ROUTES];
	struct husk_net_config cfg;
};

/* The next comma-separated field of *s ("" when there is none). */
static char *field(char **s)
{
	char *f = strsep(s, ",");
	return f ? f : (char *)"";
}

static int parse(struct request *r)
{
	memset(&r->cfg, 0, sizeof(r->cfg));
	r->cfg.ifs = r->ifs;
	r->cfg.routes = r->routes;
	char *save = NULL;
	for (char *w = strtok_r(r->line, " \t\n", &save); w; w = strtok_r(NULL, " \t\n", &save)) {
		if (strncmp(w, "if=", 3) == 0 && r->cfg.n_ifs < MAX_IFS) {
			char *s = w + 3;
			struct husk_net_if *f = &r->ifs[r->cfg.n_ifs];
			struct husk_net_addr *a = r->addrs[r->cfg.n_ifs++];
			*f = (struct husk_net_if){ .name = field(&s), .mac = field(&s),
						   .mtu = (unsigned)strtoul(field(&s), NULL, 10),
						   .addrs = a };
			while (s && f->n_addrs < MAX_ADDRS) {
				char *addr = field(&s), *slash = strrchr(addr, '/');
				unsigned prefix = 0;
				if (slash) {
					*slash = '\0';
					prefix = (unsigned)strtoul(slash + 1, NULL, 10);
				}
				a[f->n_addrs++] = (struct husk_net_addr){ addr, prefix };
			}
		} else if (strncmp(w, "route=", 6) == 0 && r->cfg.n_routes < MAX_ROUTES) {
			char *s = w + 6;
			struct husk_net_route *rt = &r->routes[r->cfg.n_routes++];
			rt->destination = field(&s);
			rt->gateway = field(&s);
			rt->device = field(&s);
		} else {
			return -1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s AGENT_BINARY TMPDIR\n", argv[0]);
		return 2;
	}
	char kernel[4096];
	snprintf(kernel, sizeof(kernel), "%s/kernel", argv[2]);
	FILE *k = fopen(kernel, "w");
	if (!k) {
		perror(kernel);
		return 1;
	}
	fclose(k);
	const struct husk_vm_config cfg = { .name = "net", .vmm = "fake", .vmm_binary = argv[1],
					    .state_dir = argv[2], .kernel = kernel, .initrd = kernel,
					    .die_with_parent = true };
	struct husk_err err = { 0 };
	struct husk_vm *vm = NULL;
	struct husk_agent *a = NULL;
	if (husk_vm_start(&cfg, &vm, &err) < 0 || husk_agent_open(vm, 60000, &a, &err) < 0) {
		fprintf(stderr, "agent-net-client: %s\n", err.msg);
		husk_vm_free(vm);
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	static struct request r;
	while (fgets(r.line, sizeof(r.line), stdin)) {
		husk_err_clear(&err);
		if (parse(&r) < 0)
			printf("error EINVAL: agent-net-client: bad request line\n");
		else if (husk_agent_setup_network(a, &r.cfg, &err) < 0)
			printf("error %s: %s\n", strerrorname_np(-err.code) ?: "?", err.msg);
		else
			printf("ok\n");
		fflush(stdout);
	}
	husk_agent_close(a);
	int rc = husk_vm_stop(vm, 2000, &err);
	if (rc < 0)
		fprintf(stderr, "agent-net-client: stopping: %s\n", err.msg);
	husk_vm_free(vm);
	return rc < 0;
}
