/* Scope-bound cleanup for fds, heap memory and files.
 *
 *   _cleanup_fd_ int fd = open(...);      closed on every return path
 *   _cleanup_free_ char *s = strdup(...);  freed on every return path
 *
 * Hand ownership out with take_fd()/take_ptr(), which clear the local. */
#ifndef HUSK_CLEANUP_H
#define HUSK_CLEANUP_H

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static inline void husk_closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}

static inline void husk_freep(void *p)
{
	free(*(void **)p);
}

static inline void husk_fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}

static inline void husk_closedirp(DIR **d)
{
	if (*d)
		closedir(*d);
}

#define _cleanup_fd_ __attribute__((cleanup(husk_closep)))
#define _cleanup_free_ __attribute__((cleanup(husk_freep)))
#define _cleanup_fclose_ __attribute__((cleanup(husk_fclosep)))
#define _cleanup_closedir_ __attribute__((cleanup(husk_closedirp)))

static inline int take_fd(int *fd)
{
	int r = *fd;
	*fd = -1;
	return r;
}

#define take_ptr(p)                                                            \
	({                                                                     \
		__typeof__(p) _tp = (p);                                       \
		(p) = NULL;                                                    \
		_tp;                                                           \
	})

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
