/* plan.h — the plan object and run-time tensor binding, shared by validate.c and plan.c. */
#ifndef ATTN_CORE_PLAN_H
#define ATTN_CORE_PLAN_H

#include "core/context.h"

enum { ATTN__T_Q, ATTN__T_K, ATTN__T_V, ATTN__T_O, ATTN__T_MASK, ATTN__T_LSE, ATTN__T_COUNT };

/* A run argument after validation. */
typedef struct attn__bound {
    int present;
    attn__view view;       /* strides resolved; data = host pointer for host tensors */
    attn_buffer *buffer;   /* library buffer, or NULL for host tensors */
    uint64_t elem_off;     /* element offset into buffer */
    uint64_t span;         /* elements from the first to one past the last addressed */
    int dense;             /* strides are the default dense layout */
} attn__bound;

/* Device scratch kept by a plan between runs. */
enum {
    ATTN__S_Q, ATTN__S_K, ATTN__S_V, ATTN__S_O, ATTN__S_MASK, ATTN__S_LSE, /* host staging */
    ATTN__S_KV_LENS, ATTN__S_KT, ATTN__S_VP, ATTN__S_COUNT
};

typedef struct attn__scratch {
    void *handle;
    uint64_t bytes;
} attn__scratch;

struct attn_plan {
    attn_context *ctx;
    attn__problem pb;
    int32_t *kv_lens;     /* plan's copy, or NULL */
    attn_plan_info info;
    uint32_t vd_pad;      /* CPU family: v_head_dim padded to the vector width */
    void *k_pack, *k_main;
    attn__scratch scratch[ATTN__S_COUNT];
    struct attn_plan *prev, *next;
};

size_t attn__dtype_size(attn_dtype t);

/* Checks a description and resolves its defaults. On success *kv_lens is a copy of the
 * description's lengths (or NULL); the caller frees it. */
attn_status attn__validate_desc(attn_context *ctx, const attn_desc *desc, attn__problem *pb,
                                int32_t **kv_lens);

/* Checks run arguments against the plan and binds them. */
attn_status attn__validate_run(const attn_plan *plan, const attn_run_args *args,
                               attn__bound bound[ATTN__T_COUNT]);

#endif
