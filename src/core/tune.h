/* tune.h — tuned tile choices: the tuning database (rows per device, kernel family,
 * head-dim class and dtype, looked up user overlay -> device -> vendor -> built-in) and
 * the search that fills it (src/core/tune.c). */
#ifndef ATTN_CORE_TUNE_H
#define ATTN_CORE_TUNE_H

#include <stdint.h>

#include "core/plan.h"

/* What a row tunes: the prefill kernel of a family, or the decode kernel. */
typedef enum attn__tune_kind { ATTN__TUNE_CPU, ATTN__TUNE_GPU, ATTN__TUNE_DECODE } attn__tune_kind;

/* The tunables, described once: parsing, printing, validation and the search expand it.
 * Which apply depends on the backend's language and the kind (tune.c: applies()). */
#define ATTN__TUNE_PARAMS(X)                                                                 \
    X(vd_vec)        /* OpenCL CPU family: V columns per P·V register tile (4, 8, 16) */    \
    X(block_m)       /* GPU family: query rows = work-items per group */                    \
    X(block_n)       /* GPU family: keys per local-memory tile */                           \
    X(rows)          /* Vulkan CPU family: query rows per lane (1, 2, 4) */                 \
    X(unroll_d)      /* Vulkan CPU family: head-dim loops unrolled (0, 1; built-in 2: O's only) */ \
    X(keys_per_lane) /* Vulkan CPU family: keys each lane loads per block (1, 2, 4) */    \
    X(splits_per_cu) /* decode: key splits wanted per compute unit */

#define ATTN__TUNE_UNSET INT32_MIN /* a value the row does not set: the built-in choice */

typedef struct attn__tune_vals {
#define ATTN__X(name) int32_t name;
    ATTN__TUNE_PARAMS(ATTN__X)
#undef ATTN__X
} attn__tune_vals;

/* The decode kernel's built-in key splits per compute unit (plan_decode). */
#define ATTN__DECODE_SPLITS_PER_CU(dev) ((dev)->type == ATTN_DEVICE_CPU ? 4 : 32)

/* The values for `kind` of the plan's problem on its device: those of the first matching
 * row that is valid for the device and problem, or all ATTN__TUNE_UNSET (and
 * ATTN_TUNE_DEFAULT) when none is. Reads the overlay and the database on each call (a
 * plan creation), so a new database takes effect without restarting. */
attn_tune_source attn__tune_lookup(const attn_plan *plan, attn__tune_kind kind,
                                   attn__tune_vals *out);

#endif
