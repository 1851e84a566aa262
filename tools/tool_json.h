/* tool_json.h — what attn-bench and attn-probe share of their JSON output. */
#ifndef ATTN_TOOL_JSON_H
#define ATTN_TOOL_JSON_H

#include <stdio.h>

/* s as a JSON string literal: quotes, backslashes and control characters escaped. */
void tool_json_string(FILE *f, const char *s);

#endif
