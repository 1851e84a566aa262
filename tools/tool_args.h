/* tool_args.h — command-line value parsing shared by the tools. */
#ifndef ATTN_TOOL_ARGS_H
#define ATTN_TOOL_ARGS_H

#include <stdbool.h>
#include <stdint.h>

/* A decimal integer with an optional k/K (x1024), M or G suffix (when `suffix`; "KiB" and
 * "KB" spellings too) into *out; false if malformed, out of [min, max] or overflowing. */
bool tool_parse_int(const char *s, bool suffix, int64_t min, int64_t max, int64_t *out);

#endif
