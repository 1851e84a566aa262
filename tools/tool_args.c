/* tool_args.c — command-line value parsing shared by the tools. */
#include "tool_args.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Parses a decimal integer with an optional k/K suffix into *out; false if malformed,
 * out of [min, max] or overflowing. */
bool tool_parse_int(const char *s, bool suffix, int64_t min, int64_t max, int64_t *out)
{
    if (!(*s >= '0' && *s <= '9') && !(*s == '-' && min < 0))
        return false; /* strtoll would accept spaces, a sign or nothing */
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s)
        return false;
    if (suffix && *end) {
        int64_t mul = (*end == 'k' || *end == 'K') ? 1024
                      : (*end == 'm' || *end == 'M') ? INT64_C(1) << 20
                      : (*end == 'g' || *end == 'G') ? INT64_C(1) << 30
                                                     : 0;
        if (!mul || v > INT64_MAX / mul || v < INT64_MIN / mul)
            return false;
        v *= mul;
        end++;
        if (!strcmp(end, "iB") || !strcmp(end, "B"))
            end += strlen(end);
    }
    if (*end || v < min || v > max)
        return false;
    *out = v;
    return true;
}
