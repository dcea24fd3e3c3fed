/* Whole-file reads, complete writes, directory trees, string vectors. */
#ifndef HUSK_FILE_H
#define HUSK_FILE_H

#include <stddef.h>
#include <sys/types.h>

#include "husk/error.h"

/* Reads `fd` to EOF into a malloc'd buffer with a NUL after the data
 * (which may itself hold NULs: *len, when given, says how much there is).
 * Pipes and generated files (/proc, cgroupfs) work: st_size is at most a
 * hint. More than `max` bytes: -EFBIG, naming `name` and the limit. On
 * failure *out is NULL and `err` names `name`. */
int husk_read_fd(int fd, const char *name, size_t max, char **out, size_t *len,
		 struct husk_err *err);
/* The same for `path`, opened O_RDONLY | O_CLOEXEC (relative to `dirfd`
 * for the _at form; AT_FDCWD allowed). */
int husk_read_file(const char *path, size_t max, char **out, size_t *len, struct husk_err *err);
int husk_read_file_at(int dirfd, const char *path, size_t max, char **out, size_t *len,
		      struct husk_err *err);

/* write(2) until all of `buf` is written, across short writes and EINTR.
 * 0 or a negative errno (-EAGAIN from a nonblocking fd is returned, not
 * waited out; what was written before an error stays written). */
int husk_write_all(int fd, const void *buf, size_t len);

/* mkdir -p: the missing components of `path` are created with `mode`;
 * existing ones are left as they are. 0 once `path` is a directory;
 * -ENOTDIR when it (or a component) is something else. */
int husk_mkdir_p(const char *path, mode_t mode, struct husk_err *err);

/* Frees a NULL-terminated vector of malloc'd strings and the vector; NULL
 * is allowed. */
void husk_strv_free(char **v);

#endif
