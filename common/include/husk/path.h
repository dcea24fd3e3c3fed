/* Bounded path formatting. */
#ifndef HUSK_PATH_H
#define HUSK_PATH_H

#include <stddef.h>

/* snprintf for paths: when the result does not fit, `buf` is set to "" (so a
 * following open or stat fails rather than using a truncated path) and
 * -ENAMETOOLONG is returned; 0 otherwise. */
__attribute__((format(printf, 3, 4)))
int husk_path_fmt(char *buf, size_t size, const char *fmt, ...);

#endif
