/* A stand-in for Kubernetes' pause container (build/pause/linux/pause.c):
 * sleeps in pause() until SIGINT or SIGTERM (exit 0), reaping any child
 * it inherits as a pod's PID 1. Built static by tests/cri/images.sh. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void sigdown(int sig)
{
	(void)sig;
	_exit(0);
}

static void sigreap(int sig)
{
	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

int main(int argc, char **argv)
{
	struct sigaction sa;

	/* Handlers first: as PID 1 of its pid namespace, a signal without a
	 * handler (CRI's SIGTERM, a test's kill) would be dropped. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = sigdown;
	if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0)
		return 1;
	sa.sa_handler = sigreap;
	sa.sa_flags = SA_NOCLDSTOP;
	if (sigaction(SIGCHLD, &sa, NULL) < 0)
		return 3;
	if (argc > 1 && strcmp(argv[1], "-v") == 0) {
		puts("pause.c (husk tests/cri stand-in)");
		return 0;
	}
	if (getpid() != 1)
		fprintf(stderr, "Warning: pause should be the first process\n");
	for (;;)
		pause();
}
