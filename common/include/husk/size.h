/* Sizes as people write them. */
#ifndef HUSK_SIZE_H
#define HUSK_SIZE_H

#include <stdint.h>

#include "husk/error.h"

/* "10G", "512M", "2GiB", "1Gi", "64MB", "1048576": bytes with an optional
 * K, M, G or T suffix (1024-based, either case), optionally followed by
 * "i", then optionally "B". The one size syntax of huskctl, libhusk's
 * settings (HUSK_IMAGE_CACHE_MAX) and the shim. -EINVAL for anything else,
 * -ERANGE past UINT64_MAX; the message quotes `s`. *out is untouched on
 * failure. husk.h repeats this declaration for libhusk's users, whose
 * installed header stands alone. */
int husk_parse_size(const char *s, uint64_t *out, struct husk_err *err);

#endif
