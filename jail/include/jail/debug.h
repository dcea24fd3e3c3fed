/* Debug-level notes: what runc logs at debug level and goes on (an ambient
 * capability that cannot be raised, a seccomp syscall name libseccomp does
 * not know). Off until a caller names an fd. */
#ifndef JAIL_DEBUG_H
#define JAIL_DEBUG_H

/* Where notes go, one line each, or -1 (the default) for nowhere. The
 * container's init writes there too, up to its execve: make the fd
 * close-on-exec and keep it off 0-2, which become the container's stdio. */
void jail_set_debug_fd(int fd);

/* Writes "husk-jail: debug: <message>\n" to the debug fd, if any. Safe in
 * the forked children (no allocation, one write). */
void jail_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
