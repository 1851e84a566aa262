/* quirks.h — driver quirks: named flags the planner consults, set in one table. */
#ifndef ATTN_CORE_QUIRKS_H
#define ATTN_CORE_QUIRKS_H

#include <attn/attn.h>

typedef struct attn__quirks {
    int no_subgroup_ops; /* subgroup operations advertised but not to be trusted */
    uint32_t max_loop_iterations; /* a kernel invocation's loops stop after this many
                                     dynamic iterations in all (0: no limit); the planner
                                     must keep keys per invocation below it */
} attn__quirks;

/* The quirks of a device (all zero for a device no row names). */
attn__quirks attn__quirks_of(const attn_device_info *info);

#endif
