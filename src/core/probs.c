/* probs.c — the probabilities output of device plans (attn_desc.want_probs): after the
 * attention kernel has written each row's log-sum-exp, attn_probs recomputes the scores
 * with the same transforms and writes p = exp(s - lse) (shaders/opencl/attn_probs.cl,
 * shaders/vulkan/attn_probs.comp). For problems a person inspects: one pass only. */
#include <stdlib.h>
#include <string.h>

#include "core/kernels.h"
#include "core/plan.h"
#include "core/quirks.h"
#include "core/sparse.h"

attn_status attn__probs_compile(attn_plan *plan, const attn__define *defs, uint32_t nd)
{
    /* An invocation loops about twice per key (zeroing the row, then the keys); on a
     * device that stops loops after a number of iterations (llvmpipe), with the usual
     * safety factor of 2, that bounds the keys. */
    const uint32_t cap = attn__quirks_of(&plan->ctx->info).max_loop_iterations;
    if (cap && (uint64_t)plan->pb.kv_len * 4 > cap)
        return attn__fail(plan->ctx, ATTN_ERROR_UNSUPPORTED,
                          "probability outputs on this device take at most %u keys (kv_len is "
                          "%lld): its shaders stop loops after %u iterations",
                          cap / 4, (long long)plan->pb.kv_len, cap);
    static const char *const files[] = {"attn_probs.cl"};
    static const char *const entries[] = {"attn_probs"};
    return attn__kernels_get(plan->ctx, files, 1, entries, 1, defs, nd, &plan->k_probs);
}

/* Bytes of device memory the probabilities add to a one-pass run: a staging copy of the
 * tensor (host outputs) and an lse for the rows when the caller has none. */
uint64_t attn__probs_bytes(const attn_plan *plan)
{
    const attn__problem *p = &plan->pb;
    if (!p->feat || !p->feat->probs_mode)
        return 0;
    const uint64_t heads = p->feat->probs_mode == ATTN_PROBS_ONE_HEAD ? 1 : (uint64_t)p->num_heads;
    return (uint64_t)p->batch * heads * (uint64_t)p->q_len * (uint64_t)p->kv_len * 4 +
           (uint64_t)p->batch * (uint64_t)p->num_heads * (uint64_t)p->q_len * 4;
}

attn_status attn__probs_run(attn_plan *plan, const attn__kparams *main_kp, void *q, void *k,
                            void *mask, void *lens, void *lse, void *aux)
{
    attn_context *ctx = plan->ctx;
    const attn__problem *p = &plan->pb;
    const attn__features *f = p->feat;
    const int one = f->probs_mode == ATTN_PROBS_ONE_HEAD;
    const int64_t heads = one ? 1 : p->num_heads;
    attn__kparams kp = *main_kp;
    kp.num_splits = one ? f->probs_head : -1; /* the one head written, or every head */
    void *out;
    const attn__view *v = &f->probs;
    attn_status st;
    if (f->probs_handle) {
        out = f->probs_handle;
        kp.o_off = f->probs_off;
        kp.o_s0 = v->stride[0], kp.o_s1 = v->stride[1], kp.o_s2 = v->stride[2], kp.o_s3 = v->stride[3];
    } else {
        const uint64_t bytes = (uint64_t)p->batch * (uint64_t)heads * (uint64_t)p->q_len *
                               (uint64_t)p->kv_len * 4;
        if ((st = attn__plan_scratch(plan, ATTN__S_PROBS, bytes, &out)))
            return st;
        kp.o_off = 0;
        kp.o_s3 = 1, kp.o_s2 = p->kv_len, kp.o_s1 = p->q_len * p->kv_len, kp.o_s0 = heads * kp.o_s1;
    }
    attn__launch la;
    memset(&la, 0, sizeof la);
    la.params = &kp;
    la.params_size = sizeof kp;
    la.buffers[0] = q;
    la.buffers[1] = k;
    la.buffers[2] = mask;
    la.buffers[3] = lens;
    la.buffers[4] = lse;
    la.buffers[5] = out;
    la.buffers[6] = aux;
    la.num_buffers = 7;
    la.groups[0] = (size_t)p->q_len;
    la.groups[1] = (size_t)heads;
    la.groups[2] = (size_t)p->batch;
    la.local[0] = la.local[1] = la.local[2] = 1;
    if ((st = attn__enqueue(ctx, plan->k_probs, &la)))
        return st;
    if (f->probs_handle)
        return ATTN_OK;
    /* Host output: read the dense copy back into the caller's layout. */
    const int64_t shape[4] = {p->batch, heads, p->q_len, p->kv_len};
    int64_t ds[4];
    attn__dense_strides(shape, ds);
    const uint64_t bytes = (uint64_t)(shape[0] * shape[1] * shape[2] * shape[3]) * 4;
    char *tmp = malloc(bytes ? bytes : 1);
    if (!tmp)
        return attn__fail(ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "reading back the probabilities");
    st = attn__dev_read(ctx, out, 0, tmp, bytes);
    if (st == ATTN_OK)
        attn__copy_strided(v->data, v->stride, tmp, ds, shape, 4);
    free(tmp);
    return st;
}
