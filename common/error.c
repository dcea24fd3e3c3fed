#include "husk/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int husk_err_set(struct husk_err *err, int code, const char *fmt, ...)
{
	if (!err)
		return code;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	err->code = code;
	return code;
}

int husk_err_sys(struct husk_err *err, int code, const char *fmt, ...)
{
	if (!err)
		return code;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	if (n >= 0 && (size_t)n < sizeof(err->msg))
		snprintf(err->msg + n, sizeof(err->msg) - (size_t)n, ": %s", strerror(-code));
	err->code = code;
	return code;
}

int husk_err_wrap(struct husk_err *err, const char *fmt, ...)
{
	if (!err)
		return -1;
	char prefix[HUSK_ERR_MSG_MAX];
	char old[HUSK_ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof(old));
	/* Truncation keeps the message bounded; the return value is checked
	 * only to say so to the compiler. */
	if (snprintf(err->msg, sizeof(err->msg), "%s: %s", prefix, old) < 0)
		err->msg[0] = '\0';
	return err->code;
}

void husk_err_clear(struct husk_err *err)
{
	if (!err)
		return;
	err->code = 0;
	err->msg[0] = '\0';
}
