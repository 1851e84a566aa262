/* validate.c — every check on caller input: descriptions at plan creation, tensors at
 * run time. Sizes are checked for overflow before any product reaches an allocator. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/plan.h"

size_t attn__dtype_size(attn_dtype t)
{
    switch (t) {
    case ATTN_DTYPE_F32: return 4;
    case ATTN_DTYPE_F16: return 2;
    case ATTN_DTYPE_U8: return 1;
    default: return 0;
    }
}

static const char *dtype_name(attn_dtype t)
{
    switch (t) {
    case ATTN_DTYPE_NONE: return "none";
    case ATTN_DTYPE_F32: return "f32";
    case ATTN_DTYPE_F16: return "f16";
    case ATTN_DTYPE_U8: return "u8";
    default: return "invalid";
    }
}

/* a*b into *r; 0 on overflow. Operands are non-negative. */
static int mul_ok(uint64_t a, uint64_t b, uint64_t *r)
{
    if (a && b > UINT64_MAX / a)
        return 0;
    *r = a * b;
    return 1;
}

static int product_ok(const int64_t *v, int n, uint64_t elem, uint64_t *r)
{
    uint64_t acc = elem;
    for (int i = 0; i < n; ++i)
        if (!mul_ok(acc, (uint64_t)v[i], &acc))
            return 0;
    *r = acc;
    return 1;
}

attn_status attn__validate_desc(attn_context *ctx, const attn_desc *d, attn__problem *pb,
                                int32_t **kv_lens)
{
    *kv_lens = NULL;
    if (!d)
        return attn__fail(ctx, ATTN_ERROR_NULL_POINTER, "attn_plan_create: desc is NULL");
    if (ATTN__BAD_STRUCT_SIZE(d, attn_desc))
        return attn__fail(ctx, ATTN_ERROR_STRUCT_SIZE,
                          "attn_desc.struct_size is %zu; expected %zu (use ATTN_DESC_INIT)",
                          d->struct_size, sizeof(attn_desc));
    attn__problem p;
    memset(&p, 0, sizeof p);
    p.batch = d->batch;
    p.num_heads = d->num_heads;
    p.num_kv_heads = d->num_kv_heads ? d->num_kv_heads : d->num_heads;
    p.q_len = d->q_len;
    p.kv_len = d->kv_len;
    p.head_dim = d->head_dim;
    p.v_head_dim = d->v_head_dim ? d->v_head_dim : d->head_dim;

    const struct { const char *name; int64_t v; } sizes[] = {
        {"batch", p.batch},       {"num_heads", p.num_heads}, {"num_kv_heads", p.num_kv_heads},
        {"q_len", p.q_len},       {"kv_len", p.kv_len},       {"head_dim", p.head_dim},
        {"v_head_dim", p.v_head_dim},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; ++i)
        if (sizes[i].v <= 0)
            return attn__fail(ctx, ATTN_ERROR_INVALID_SHAPE, "attn_desc.%s is %lld; it must be > 0",
                              sizes[i].name, (long long)sizes[i].v);
    if (p.num_heads % p.num_kv_heads)
        return attn__fail(ctx, ATTN_ERROR_HEADS_MISMATCH,
                          "num_heads %lld is not a multiple of num_kv_heads %lld",
                          (long long)p.num_heads, (long long)p.num_kv_heads);
    if (p.head_dim > ATTN_MAX_HEAD_DIM || p.v_head_dim > ATTN_MAX_HEAD_DIM)
        return attn__fail(ctx, ATTN_ERROR_HEAD_DIM_UNSUPPORTED,
                          "head_dim %lld / v_head_dim %lld: kernels support at most %d",
                          (long long)p.head_dim, (long long)p.v_head_dim, ATTN_MAX_HEAD_DIM);
    if (d->dtype != ATTN_DTYPE_F32 && d->dtype != ATTN_DTYPE_F16)
        return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                          "attn_desc.dtype is %s (%d); Q/K/V/O are f32 or f16",
                          dtype_name(d->dtype), (int)d->dtype);
    p.dtype = d->dtype;
    if (!isfinite(d->scale))
        return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT, "attn_desc.scale is not finite");
    p.scale = d->scale != 0.0f ? (double)d->scale : 1.0 / sqrt((double)p.head_dim);
    p.causal = d->causal != 0;
    if ((unsigned)d->mask_kind > ATTN_MASK_BOOLEAN)
        return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT, "attn_desc.mask_kind %d is unknown",
                          (int)d->mask_kind);
    p.mask_kind = d->mask_kind;
    p.want_lse = d->want_lse != 0;

    /* Every tensor's byte count must fit in 64 bits: Q, O, K, V and the mask. */
    uint64_t bytes;
    int64_t qdims[4] = {p.batch, p.q_len, p.num_heads, p.head_dim > p.v_head_dim ? p.head_dim : p.v_head_dim};
    int64_t kdims[4] = {p.batch, p.kv_len, p.num_kv_heads, qdims[3]};
    int64_t mdims[4] = {p.batch, p.num_heads, p.q_len, p.kv_len};
    if (!product_ok(qdims, 4, 4, &bytes) || !product_ok(kdims, 4, 4, &bytes) ||
        (p.mask_kind != ATTN_MASK_NONE && !product_ok(mdims, 4, 4, &bytes)))
        return attn__fail(ctx, ATTN_ERROR_OVERFLOW,
                          "the tensors of batch %lld, heads %lld, q_len %lld, kv_len %lld, "
                          "head_dim %lld have more bytes than 64 bits can count",
                          (long long)p.batch, (long long)p.num_heads, (long long)p.q_len,
                          (long long)p.kv_len, (long long)qdims[3]);
    if (p.q_len > INT32_MAX - 64 || p.kv_len > INT32_MAX - 64 || p.num_heads > 65535 ||
        p.batch > 65535)
        return attn__fail(ctx, ATTN_ERROR_UNSUPPORTED,
                          "q_len/kv_len above 2^31-65 or batch/num_heads above 65535 are not "
                          "supported");

    if (d->kv_lens) {
        int32_t *copy = malloc((size_t)p.batch * sizeof *copy);
        if (!copy)
            return attn__fail(ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "copying kv_lens");
        for (int64_t b = 0; b < p.batch; ++b) {
            if (d->kv_lens[b] < 0 || d->kv_lens[b] > p.kv_len) {
                free(copy);
                return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                                  "kv_lens[%lld] = %d is outside [0, kv_len = %lld]", (long long)b,
                                  d->kv_lens[b], (long long)p.kv_len);
            }
            copy[b] = d->kv_lens[b];
        }
        *kv_lens = copy;
        p.has_kv_lens = 1;
    }
    *pb = p;
    return ATTN_OK;
}

/* ---- run-time tensors ----------------------------------------------------------------- */
static const char *const tensor_names[ATTN__T_COUNT] = {"q", "k", "v", "o", "mask", "lse"};

/* Binds one tensor: dtype, shape (mask: dims 0 and 1 may be 1), strides, storage. */
static attn_status bind(const attn_plan *plan, int which, const attn_tensor *t, attn_dtype dtype,
                        const int64_t want[4], attn__bound *out)
{
    attn_context *ctx = plan->ctx;
    const char *nm = tensor_names[which];
    memset(out, 0, sizeof *out);
    if (t->dtype != dtype)
        return attn__fail(ctx, ATTN_ERROR_DTYPE_MISMATCH, "tensor %s is %s; the plan needs %s", nm,
                          dtype_name(t->dtype), dtype_name(dtype));
    for (int i = 0; i < 4; ++i) {
        int broadcast = which == ATTN__T_MASK && i < 2 && t->shape[i] == 1;
        if (t->shape[i] != want[i] && !broadcast)
            return attn__fail(ctx, ATTN_ERROR_SHAPE_MISMATCH,
                              "tensor %s has shape [%lld, %lld, %lld, %lld]; the plan needs "
                              "[%lld, %lld, %lld, %lld]%s",
                              nm, (long long)t->shape[0], (long long)t->shape[1],
                              (long long)t->shape[2], (long long)t->shape[3], (long long)want[0],
                              (long long)want[1], (long long)want[2], (long long)want[3],
                              which == ATTN__T_MASK ? " (dims 0 and 1 may be 1)" : "");
    }
    if (!t->data && !t->buffer)
        return attn__fail(ctx, ATTN_ERROR_NULL_POINTER, "tensor %s has neither data nor buffer",
                          nm);
    if (t->data && t->buffer)
        return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                          "tensor %s has both data and buffer; set one", nm);
    if (t->buffer && t->buffer->ctx != ctx)
        return attn__fail(ctx, ATTN_ERROR_WRONG_CONTEXT,
                          "tensor %s's buffer belongs to another context", nm);

    attn__view *v = &out->view;
    v->dtype = t->dtype;
    memcpy(v->shape, t->shape, sizeof v->shape);
    int64_t dense[4];
    attn__dense_strides(t->shape, dense);
    int all_zero = !t->stride[0] && !t->stride[1] && !t->stride[2] && !t->stride[3];
    for (int i = 0; i < 4; ++i) {
        if (t->stride[i] < 0)
            return attn__fail(ctx, ATTN_ERROR_INVALID_STRIDE,
                              "tensor %s: stride[%d] = %lld is negative", nm, i,
                              (long long)t->stride[i]);
        v->stride[i] = all_zero ? dense[i] : t->stride[i];
    }
    out->dense = !memcmp(v->stride, dense, sizeof dense);
    /* span = 1 + sum (shape-1)*stride, checked. */
    uint64_t span = 1;
    for (int i = 0; i < 4; ++i) {
        uint64_t term;
        if (!mul_ok((uint64_t)(t->shape[i] - 1), (uint64_t)v->stride[i], &term) ||
            span > UINT64_MAX - term)
            return attn__fail(ctx, ATTN_ERROR_OVERFLOW, "tensor %s: its strides overflow 64 bits",
                              nm);
        span += term;
    }
    uint64_t es = attn__dtype_size(dtype), span_bytes;
    if (!mul_ok(span, es, &span_bytes))
        return attn__fail(ctx, ATTN_ERROR_OVERFLOW, "tensor %s: its byte span overflows 64 bits",
                          nm);
    out->span = span;
    if (t->buffer) {
        if (t->offset % es)
            return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                              "tensor %s: buffer offset %llu is not a multiple of the element "
                              "size %llu",
                              nm, (unsigned long long)t->offset, (unsigned long long)es);
        if (t->offset > t->buffer->size || span_bytes > t->buffer->size - t->offset)
            return attn__fail(ctx, ATTN_ERROR_OUT_OF_RANGE,
                              "tensor %s: %llu bytes at offset %llu do not fit its buffer of %llu "
                              "bytes",
                              nm, (unsigned long long)span_bytes, (unsigned long long)t->offset,
                              (unsigned long long)t->buffer->size);
        out->buffer = t->buffer;
        out->elem_off = t->offset / es;
    } else {
        if ((uintptr_t)t->data % es)
            return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                              "tensor %s: host pointer is not aligned to its element size", nm);
        v->data = t->data;
    }
    out->present = 1;
    return ATTN_OK;
}

/* An output must not write one element twice: sorted by stride, each dimension's stride
 * must exceed the extent of the faster ones. */
static int self_overlaps(const attn__view *v)
{
    int idx[4] = {0, 1, 2, 3};
    for (int i = 0; i < 4; ++i)
        for (int j = i + 1; j < 4; ++j)
            if (v->stride[idx[j]] < v->stride[idx[i]]) {
                int tmp = idx[i];
                idx[i] = idx[j];
                idx[j] = tmp;
            }
    int64_t extent = 1; /* elements covered by the faster dims, plus one */
    for (int i = 0; i < 4; ++i) {
        int d = idx[i];
        if (v->shape[d] == 1)
            continue;
        if (v->stride[d] < extent)
            return 1;
        extent = v->stride[d] * (v->shape[d] - 1) + extent;
    }
    return 0;
}

/* Byte ranges of two bound tensors intersect (same host memory or same buffer). */
static int ranges_meet(const attn__bound *a, const attn__bound *b)
{
    if (!a->present || !b->present || a->buffer != b->buffer)
        return 0;
    uint64_t ea = attn__dtype_size(a->view.dtype), eb = attn__dtype_size(b->view.dtype);
    uint64_t a0, b0;
    if (a->buffer) {
        a0 = a->elem_off * ea;
        b0 = b->elem_off * eb;
    } else {
        a0 = (uint64_t)(uintptr_t)a->view.data;
        b0 = (uint64_t)(uintptr_t)b->view.data;
    }
    uint64_t a1 = a0 + a->span * ea, b1 = b0 + b->span * eb;
    return a0 < b1 && b0 < a1;
}

attn_status attn__validate_run(const attn_plan *plan, const attn_run_args *a,
                               attn__bound bound[ATTN__T_COUNT])
{
    attn_context *ctx = plan->ctx;
    const attn__problem *p = &plan->pb;
    memset(bound, 0, sizeof(attn__bound) * ATTN__T_COUNT);
    if (!a)
        return attn__fail(ctx, ATTN_ERROR_NULL_POINTER, "attn_plan_run: args is NULL");
    if (ATTN__BAD_STRUCT_SIZE(a, attn_run_args))
        return attn__fail(ctx, ATTN_ERROR_STRUCT_SIZE,
                          "attn_run_args.struct_size is %zu; expected %zu (use ATTN_RUN_ARGS_INIT)",
                          a->struct_size, sizeof(attn_run_args));
    const int64_t qs[4] = {p->batch, p->q_len, p->num_heads, p->head_dim};
    const int64_t ks[4] = {p->batch, p->kv_len, p->num_kv_heads, p->head_dim};
    const int64_t vs[4] = {p->batch, p->kv_len, p->num_kv_heads, p->v_head_dim};
    const int64_t os[4] = {p->batch, p->q_len, p->num_heads, p->v_head_dim};
    const int64_t ms[4] = {p->batch, p->num_heads, p->q_len, p->kv_len};
    const int64_t ls[4] = {p->batch, p->num_heads, p->q_len, 1};
    attn_status st;
    if ((st = bind(plan, ATTN__T_Q, &a->q, p->dtype, qs, &bound[ATTN__T_Q])) ||
        (st = bind(plan, ATTN__T_K, &a->k, p->dtype, ks, &bound[ATTN__T_K])) ||
        (st = bind(plan, ATTN__T_V, &a->v, p->dtype, vs, &bound[ATTN__T_V])) ||
        (st = bind(plan, ATTN__T_O, &a->o, p->dtype, os, &bound[ATTN__T_O])))
        return st;
    if (p->mask_kind != ATTN_MASK_NONE) {
        attn_dtype mt = p->mask_kind == ATTN_MASK_ADDITIVE ? ATTN_DTYPE_F32 : ATTN_DTYPE_U8;
        if ((st = bind(plan, ATTN__T_MASK, &a->mask, mt, ms, &bound[ATTN__T_MASK])))
            return st;
    } else if (a->mask.dtype != ATTN_DTYPE_NONE || a->mask.data || a->mask.buffer) {
        return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                          "a mask tensor was given but the plan's mask_kind is NONE");
    }
    if (p->want_lse) {
        if ((st = bind(plan, ATTN__T_LSE, &a->lse, ATTN_DTYPE_F32, ls, &bound[ATTN__T_LSE])))
            return st;
    } else if (a->lse.dtype != ATTN_DTYPE_NONE || a->lse.data || a->lse.buffer) {
        return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                          "an lse tensor was given but the plan was created without want_lse");
    }
    if (a->kv_lens) {
        for (int64_t b = 0; b < p->batch; ++b)
            if (a->kv_lens[b] < 0 || a->kv_lens[b] > p->kv_len)
                return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                                  "args.kv_lens[%lld] = %d is outside [0, kv_len = %lld]",
                                  (long long)b, a->kv_lens[b], (long long)p->kv_len);
    }
    /* Outputs: no element written twice, and no overlap with any other tensor. */
    const int outs[2] = {ATTN__T_O, ATTN__T_LSE};
    for (int oi = 0; oi < 2; ++oi) {
        const attn__bound *o = &bound[outs[oi]];
        if (!o->present)
            continue;
        if (self_overlaps(&o->view))
            return attn__fail(ctx, ATTN_ERROR_ALIASING,
                              "tensor %s: its strides make elements overlap", tensor_names[outs[oi]]);
        for (int t = 0; t < ATTN__T_COUNT; ++t)
            if (t != outs[oi] && ranges_meet(o, &bound[t]))
                return attn__fail(ctx, ATTN_ERROR_ALIASING, "output %s overlaps tensor %s",
                                  tensor_names[outs[oi]], tensor_names[t]);
    }
    return ATTN_OK;
}
