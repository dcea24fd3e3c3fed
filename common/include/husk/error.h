/* Error reporting shared by every husk module.
 *
 * Functions return 0 on success or a negative errno, and fill a caller-owned
 * struct husk_err with a human-readable message that names what failed
 * (operation, path, field). The message is fixed-size so that filling it
 * never allocates and never fails.
 */
#ifndef HUSK_ERROR_H
#define HUSK_ERROR_H

#include <stddef.h>

#define HUSK_ERR_MSG_MAX 512

struct husk_err {
	int code;                    /* negative errno, 0 when clear */
	char msg[HUSK_ERR_MSG_MAX];
};

/* Records an error; returns `code` (a negative errno) so callers can write
 * `return husk_err_set(err, -EINVAL, "bad %s", field);`. `err` may be NULL. */
__attribute__((format(printf, 3, 4)))
int husk_err_set(struct husk_err *err, int code, const char *fmt, ...);

/* Like husk_err_set and appends ": strerror(-code)". */
__attribute__((format(printf, 3, 4)))
int husk_err_sys(struct husk_err *err, int code, const char *fmt, ...);

/* Prepends context to an existing message: "ctx: previous". Returns err->code. */
__attribute__((format(printf, 2, 3)))
int husk_err_wrap(struct husk_err *err, const char *fmt, ...);

void husk_err_clear(struct husk_err *err);

#endif
