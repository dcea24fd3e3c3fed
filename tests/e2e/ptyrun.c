/* ptyrun: runs a command on a new pty of a given size, as a terminal
 * would, copying what it prints to our stdout until it exits; optional
 * input is typed into the terminal first. Exits with the command's status.
 * Unlike script(1), it never ends the session early when its own stdin
 * closes.
 *   ptyrun [--size ROWSxCOLS] [--input TEXT] -- CMD [ARG...]
 */
#include <errno.h>
#include <fcntl.h>
#include <pty.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct winsize ws = { .ws_row = 24, .ws_col = 80 };
	const char *input = NULL;
	int i = 1;
	for (; i < argc; i++) {
		if (strcmp(argv[i], "--size") == 0 && i + 1 < argc) {
			unsigned r, c;
			if (sscanf(argv[++i], "%ux%u", &r, &c) != 2)
				return 2;
			ws.ws_row = (unsigned short)r;
			ws.ws_col = (unsigned short)c;
		} else if (strcmp(argv[i], "--input") == 0 && i + 1 < argc) {
			input = argv[++i];
		} else if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		} else {
			break;
		}
	}
	if (i >= argc) {
		fprintf(stderr, "usage: ptyrun [--size RxC] [--input TEXT] -- CMD [ARG...]\n");
		return 2;
	}
	int master;
	pid_t pid = forkpty(&master, NULL, NULL, &ws);
	if (pid < 0) {
		perror("ptyrun: forkpty");
		return 1;
	}
	if (pid == 0) {
		execvp(argv[i], argv + i);
		perror("ptyrun: exec");
		_exit(127);
	}
	if (input)
		(void)!write(master, input, strlen(input));
	char buf[4096];
	for (;;) {
		ssize_t n = read(master, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break; /* EIO: every slave descriptor is closed */
		if (write(STDOUT_FILENO, buf, (size_t)n) < 0)
			break;
	}
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
