/* attn_probe_facts.c — attn-probe's attention facts for one device: the planner's kernel
 * family and tiles, the largest head_dim, the longest context that runs in one pass and how
 * far the memory-budget scheduler goes beyond it. Only the public API is used. */
#include "attn_probe.h"

#include <string.h>

static attn_desc square_desc(int64_t tokens, int64_t heads, int64_t head_dim)
{
    attn_desc d = ATTN_DESC_INIT;
    d.num_heads = heads;
    d.q_len = tokens;
    d.kv_len = tokens;
    d.head_dim = head_dim;
    d.causal = 1;
    return d;
}

static bool try_plan(attn_context *ctx, const attn_desc *d, attn_plan_info *info, double *ms,
                     char *err, size_t err_size)
{
    attn_plan *plan = NULL;
    double t0 = probe_now_ms();
    attn_status s = attn_plan_create(ctx, d, &plan);
    if (ms)
        *ms = probe_now_ms() - t0;
    if (s == ATTN_OK) {
        info->struct_size = sizeof *info;
        s = attn_plan_get_info(plan, info);
    }
    if (s != ATTN_OK && err)
        probe_error_text(err, err_size, s, attn_last_detail());
    attn_plan_destroy(plan);
    return s == ATTN_OK;
}

/* Whether `tokens` fits in one pass; *why names the limit when it does not. The total must
 * fit the context's budget and the largest tensor each single-buffer limit. attn_plan_info
 * gives only the total, so the largest buffer is taken as a Q/K/V/O tensor with its length
 * rounded up to 64 keys (the padding a kernel may add to its packed copies). */
static bool one_pass_fits(attn_context *ctx, const attn_device_info *dev, uint64_t budget,
                          int64_t tokens, probe_one_pass *r, const char **why)
{
    attn_desc d = square_desc(tokens, ONE_PASS_HEADS, ONE_PASS_DIM);
    attn_plan_info info;
    char err[PROBE_MSG];
    if (!try_plan(ctx, &d, &info, NULL, err, sizeof err)) {
        *why = "plan_error";
        if (tokens == 1)
            snprintf(r->error, sizeof r->error, "%s", err);
        return false;
    }
    const uint64_t padded = ((uint64_t)tokens + 63) / 64 * 64;
    const uint64_t tensor = padded * ONE_PASS_HEADS * ONE_PASS_DIM * sizeof(float);
    *why = info.device_bytes > budget                                        ? "memory_budget"
           : dev->max_alloc_bytes && tensor > dev->max_alloc_bytes           ? "max_alloc"
           : dev->max_binding_bytes && tensor > dev->max_binding_bytes       ? "max_binding"
                                                                             : NULL;
    if (*why)
        return false;
    r->device_bytes = info.device_bytes;
    r->largest_tensor = tensor;
    return true;
}

/* Binary search over the length: plan creation after the first is cheap, since kernels are
 * cached per context and lengths are not part of their key. */
static void find_one_pass(attn_context *ctx, const attn_device_info *dev, uint64_t budget,
                          probe_one_pass *r)
{
    const int64_t max_len = INT64_C(1) << 31;
    const char *why = NULL;
    if (!one_pass_fits(ctx, dev, budget, 1, r, &why)) {
        r->tokens = 0;
        r->limited_by = why;
        return;
    }
    int64_t lo = 1, hi = max_len; /* lo fits; hi is unknown until tested */
    if (one_pass_fits(ctx, dev, budget, hi, r, &why)) {
        r->tokens = hi;
        r->limited_by = "length_searched";
        return;
    }
    r->limited_by = why;
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (one_pass_fits(ctx, dev, budget, mid, r, &why)) {
            lo = mid;
        } else {
            hi = mid;
            r->limited_by = why; /* the limit just above the answer */
        }
    }
    r->tokens = lo;
    one_pass_fits(ctx, dev, budget, lo, r, &why); /* its byte counts */
}

/* Whether the scheduler takes `tokens`: the plan is created, scheduled, and its smallest
 * step fits the budget. */
static bool sched_takes(attn_context *ctx, uint64_t budget, int64_t tokens, probe_sched *r,
                        const char **why, char *err, size_t err_size)
{
    attn_desc d = square_desc(tokens, ONE_PASS_HEADS, ONE_PASS_DIM);
    attn_plan_info info;
    err[0] = '\0';
    if (!try_plan(ctx, &d, &info, NULL, err, err_size)) {
        *why = "plan_error";
        return false;
    }
    if (!info.scheduled && info.device_bytes > budget) {
        *why = "no_scheduler";
        return false;
    }
    if (info.scheduled && info.min_device_bytes > budget) {
        *why = "memory_budget";
        return false;
    }
    r->segment_rows = info.segment_rows;
    r->chunk_keys = info.chunk_keys;
    r->min_device_bytes = info.min_device_bytes;
    return true;
}

static void find_scheduled(attn_context *ctx, uint64_t budget, int64_t one_pass, probe_sched *r)
{
    const int64_t max_len = INT64_C(1) << 31;
    const char *why = NULL;
    char err[PROBE_MSG];
    int64_t lo = one_pass, hi = max_len; /* lo is taken (one pass), hi unknown */
    if (one_pass >= max_len)
        return;
    if (sched_takes(ctx, budget, hi, r, &why, err, sizeof err)) {
        r->known = true;
        r->max_tokens = hi;
        r->limited_by = "length_searched";
        return;
    }
    r->limited_by = why;
    snprintf(r->note, sizeof r->note, "%s", err);
    if (!strcmp(why, "no_scheduler")) /* beyond one pass the library has nothing */
        return;
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (sched_takes(ctx, budget, mid, r, &why, err, sizeof err)) {
            lo = mid;
        } else {
            hi = mid;
            r->limited_by = why; /* the limit just above the answer */
            snprintf(r->note, sizeof r->note, "%s", err);
        }
    }
    if (lo > one_pass && sched_takes(ctx, budget, lo, r, &why, err, sizeof err)) {
        r->known = true;
        r->max_tokens = lo;
    }
}

void probe_attention(const attn_device_info *dev, probe_facts *f)
{
    memset(f, 0, sizeof *f);
    attn_context_params p = ATTN_CONTEXT_PARAMS_INIT;
    p.backend = dev->backend;
    p.device_index = dev->index;
    p.kernel_family = ATTN_FAMILY_AUTO;
    attn_context *ctx = NULL;
    attn_status s = attn_context_create(&p, &ctx);
    attn_stats st = {.struct_size = sizeof st};
    if (s == ATTN_OK)
        s = attn_context_get_stats(ctx, &st);
    if (s != ATTN_OK) {
        probe_error_text(f->error, sizeof f->error, s, attn_last_detail());
        attn_context_destroy(ctx);
        return;
    }
    f->ok = true;
    f->memory_budget = st.memory_budget;

    static const int64_t dims[2] = {64, 128};
    for (int i = 0; i < 2; i++) {
        probe_plan_fact *pf = &f->plans[i];
        pf->head_dim = dims[i];
        attn_desc d = square_desc(1024, 8, dims[i]);
        pf->ok = try_plan(ctx, &d, &pf->info, &pf->ms, pf->error, sizeof pf->error);
    }

    /* Largest head_dim: the API's ceiling first; below it, a binary search (each step is a
     * compile, so it only runs on a device that refuses the ceiling). */
    attn_plan_info info;
    attn_desc d = square_desc(64, 8, ATTN_MAX_HEAD_DIM);
    if (try_plan(ctx, &d, &info, NULL, f->max_head_dim_note, sizeof f->max_head_dim_note)) {
        f->max_head_dim = ATTN_MAX_HEAD_DIM;
        f->max_head_dim_note[0] = '\0';
    } else {
        int64_t lo = 0, hi = ATTN_MAX_HEAD_DIM; /* lo works (0 = none), hi does not */
        while (hi - lo > 1) {
            int64_t mid = lo + (hi - lo) / 2;
            d = square_desc(64, 8, mid);
            if (try_plan(ctx, &d, &info, NULL, NULL, 0))
                lo = mid;
            else
                hi = mid;
        }
        f->max_head_dim = lo;
    }
    find_one_pass(ctx, dev, f->memory_budget, &f->one_pass);
    if (dev->backend != ATTN_BACKEND_REFERENCE) /* the host needs no scheduler */
        find_scheduled(ctx, f->memory_budget, f->one_pass.tokens, &f->sched);
    attn_context_destroy(ctx);
}

