/* A stand-in for stress(1) as the resource-consumer image carries it, for
 * `stress -m N --vm-bytes SIZE --vm-hang 0 -t SECS` (what containerd's
 * TestContainerConsumedStats runs): N workers each allocate and touch SIZE
 * bytes and hold them; after SECS seconds (0: forever) all exit 0.
 * Other stress options are accepted and ignored. Built static by images.sh. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static unsigned long long parse_size(const char *s)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);

	switch (*end) {
	case 'k': case 'K': return v << 10;
	case 'm': case 'M': return v << 20;
	case 'g': case 'G': return v << 30;
	case 'b': case 'B': case '\0': return v;
	}
	fprintf(stderr, "stress: bad size %s\n", s);
	exit(1);
}

int main(int argc, char **argv)
{
	int workers = 0, i;
	unsigned long long bytes = 256ULL << 20;
	unsigned timeout = 0;
	pid_t pids[64];

	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if ((!strcmp(a, "-m") || !strcmp(a, "--vm")) && v) {
			workers = atoi(v);
			i++;
		} else if (!strcmp(a, "--vm-bytes") && v) {
			bytes = parse_size(v);
			i++;
		} else if ((!strcmp(a, "-t") || !strcmp(a, "--timeout")) && v) {
			timeout = (unsigned)atoi(v);
			i++;
		} else if (a[0] == '-' && v && v[0] != '-') {
			i++; /* an option we ignore, and its value */
		}
	}
	if (workers < 0 || workers > 64)
		workers = 64;
	printf("stress: info: [%d] dispatching hogs: 0 cpu, 0 io, %d vm, 0 hdd\n", getpid(), workers);
	fflush(stdout);
	for (i = 0; i < workers; i++) {
		pids[i] = fork();
		if (pids[i] < 0) {
			perror("stress: fork");
			return 1;
		}
		if (pids[i] == 0) {
			/* volatile: the compiler must not drop the stores to
			 * memory nothing reads (gcc -O2 removes the memset) */
			volatile char *p = malloc(bytes);
			unsigned long long off;

			if (!p) {
				perror("stress: malloc");
				_exit(1);
			}
			for (off = 0; off < bytes; off += 4096)
				p[off] = 'Z';
			for (;;)
				pause();
		}
	}
	if (timeout)
		sleep(timeout);
	else
		for (;;)
			pause();
	for (i = 0; i < workers; i++)
		kill(pids[i], SIGKILL);
	while (wait(NULL) > 0)
		;
	printf("stress: info: [%d] successful run completed\n", getpid());
	return 0;
}
