/* Sizes as people write them: see husk/size.h. */
#include "husk/size.h"

#include <errno.h>
#include <inttypes.h>

int husk_parse_size(const char *s, uint64_t *out, struct husk_err *err)
{
	static const char expect[] = "want a number of bytes with an optional K, M, G or T suffix "
				     "(1024-based), e.g. 64M, 10G or 1Gi";
	if (!s || *s < '0' || *s > '9')
		return husk_err_set(err, -EINVAL, "size \"%s\": %s", s ? s : "", expect);
	const char *p = s;
	uint64_t v = 0;
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return husk_err_set(err, -ERANGE, "size \"%s\": more than %" PRIu64 " bytes",
					    s, UINT64_MAX);
		v = v * 10 + d;
	}
	const char *suffix = p;
	unsigned shift = 0;
	switch (*p) {
	case 'k': case 'K': shift = 10; break;
	case 'm': case 'M': shift = 20; break;
	case 'g': case 'G': shift = 30; break;
	case 't': case 'T': shift = 40; break;
	default: break;
	}
	if (shift) {
		p++;
		if (*p == 'i')
			p++;
	}
	if (*p == 'B' || *p == 'b')
		p++;
	if (*p)
		return husk_err_set(err, -EINVAL, "size \"%s\": unknown suffix \"%s\"; %s", s, suffix,
				    expect);
	if (shift && v > UINT64_MAX >> shift)
		return husk_err_set(err, -ERANGE, "size \"%s\": more than %" PRIu64 " bytes", s,
				    UINT64_MAX);
	*out = v << shift;
	return 0;
}
