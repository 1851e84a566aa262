/* stream.c — streams of segments with recurrent memory: segment recurrence
 * (Transformer-XL), compressive memory (Infini-attention) and memory tokens (RMT). Each
 * push composes the plans of the library with the stream's memory. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/kernels.h"
#include "core/plan.h"
#include "core/quirks.h"

struct attn_stream {
    attn_context *ctx;
    attn_stream_params p;     /* resolved: num_kv_heads, v_head_dim set */
    float *gate;              /* [num_heads] */
    int64_t position;

    attn_plan *plan;          /* the last plan, reused while the shape is the same */
    int64_t plan_q, plan_kv;

    /* RECURRENCE: the last mem_fill tokens' K/V, dense [batch, mem_len, kv_heads, dim]. */
    char *mem_k, *mem_v;
    int64_t mem_fill;

    /* Host staging, grown on demand. */
    char *hq, *hk, *hv, *ho;
    size_t cap_q, cap_k, cap_v, cap_o;
    uint8_t *mask;
    int64_t mask_t;

    /* COMPRESSIVE: memory on the device (f32), or in double on the host for the reference
     * backend; per-segment device staging. */
    attn_buffer *m_buf, *z_buf, *gate_buf, *bq, *bk, *bv, *ba, *bo;
    double *m_ref, *z_ref;
    void *k_read, *k_update;
};

static size_t es_of(const attn_stream *s) { return attn__dtype_size(s->p.dtype); }

static attn_status grow(attn_stream *s, char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return ATTN_OK;
    char *n = realloc(*buf, need);
    if (!n)
        return attn__fail(s->ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "stream staging of %zu bytes", need);
    *buf = n;
    *cap = need;
    return ATTN_OK;
}

/* A caller's strides, the dense default where all four are zero. */
static void resolved_strides(const attn_tensor *t, int64_t st[4])
{
    if (!t->stride[0] && !t->stride[1] && !t->stride[2] && !t->stride[3])
        attn__dense_strides(t->shape, st);
    else
        memcpy(st, t->stride, 4 * sizeof *st);
}


/* Copies rows [0, shape[1]) of host tensor t into rows starting at `row` of a dense
 * [batch, rows_total, heads, dim] array. */
static void put_rows(char *dst, int64_t rows_total, int64_t row, const attn_tensor *t, size_t es)
{
    int64_t ss[4], ds[4];
    const int64_t full[4] = {t->shape[0], rows_total, t->shape[2], t->shape[3]};
    resolved_strides(t, ss);
    attn__dense_strides(full, ds);
    attn__copy_strided(dst + (size_t)(row * ds[1]) * es, ds, t->data, ss, t->shape, es);
}

/* Copies rows [row, row + shape[1]) of a dense array into host tensor t. */
static void get_rows(attn_tensor *t, const char *src, int64_t rows_total, int64_t row, size_t es)
{
    int64_t ds[4], ss[4];
    const int64_t full[4] = {t->shape[0], rows_total, t->shape[2], t->shape[3]};
    resolved_strides(t, ds);
    attn__dense_strides(full, ss);
    attn__copy_strided(t->data, ds, src + (size_t)(row * ss[1]) * es, ss, t->shape, es);
}

static attn_status check_tensor(attn_stream *s, const attn_tensor *t, const char *name,
                                int64_t rows, int64_t heads, int64_t dim)
{
    if (!t->data || t->buffer)
        return attn__fail(s->ctx, ATTN_ERROR_NULL_POINTER,
                          "stream segment: %s must be a host tensor", name);
    if (t->dtype != s->p.dtype)
        return attn__fail(s->ctx, ATTN_ERROR_DTYPE_MISMATCH,
                          "stream segment: %s has another dtype than the stream", name);
    if (t->shape[0] != s->p.batch || (rows >= 0 && t->shape[1] != rows) || t->shape[1] <= 0 ||
        t->shape[2] != heads || t->shape[3] != dim)
        return attn__fail(s->ctx, ATTN_ERROR_SHAPE_MISMATCH,
                          "stream segment: %s has shape [%lld, %lld, %lld, %lld]; expected [%lld, "
                          "%s, %lld, %lld]",
                          name, (long long)t->shape[0], (long long)t->shape[1],
                          (long long)t->shape[2], (long long)t->shape[3], (long long)s->p.batch,
                          rows >= 0 ? "n" : "seg_len", (long long)heads, (long long)dim);
    for (int i = 0; i < 4; ++i)
        if (t->stride[i] < 0)
            return attn__fail(s->ctx, ATTN_ERROR_INVALID_STRIDE,
                              "stream segment: %s has a negative stride", name);
    return ATTN_OK;
}

/* The stream's plan for (q_len, kv_len); recreated when the shape changes. */
static attn_status need_plan(attn_stream *s, int64_t q_len, int64_t kv_len, int causal,
                             attn_mask_kind mask)
{
    if (s->plan && s->plan_q == q_len && s->plan_kv == kv_len)
        return ATTN_OK;
    attn_plan_destroy(s->plan);
    s->plan = NULL;
    attn_desc d = ATTN_DESC_INIT;
    d.batch = s->p.batch;
    d.num_heads = s->p.num_heads;
    d.num_kv_heads = s->p.num_kv_heads;
    d.q_len = q_len;
    d.kv_len = kv_len;
    d.head_dim = s->p.head_dim;
    d.v_head_dim = s->p.v_head_dim;
    d.dtype = s->p.dtype;
    d.scale = s->p.scale;
    d.causal = causal;
    d.mask_kind = mask;
    attn_status st = attn_plan_create(s->ctx, &d, &s->plan);
    if (st == ATTN_OK)
        s->plan_q = q_len, s->plan_kv = kv_len;
    return st;
}

/* ---- segment recurrence ---------------------------------------------------------------- */
static attn_status push_recurrence(attn_stream *s, const attn_stream_segment *g)
{
    const attn_stream_params *p = &s->p;
    const size_t es = es_of(s);
    const int64_t S = g->q.shape[1], m = s->mem_fill, kv = m + S;
    const int64_t kshape[4] = {p->batch, kv, p->num_kv_heads, p->head_dim};
    const int64_t vshape[4] = {p->batch, kv, p->num_kv_heads, p->v_head_dim};
    const size_t krow = (size_t)(p->num_kv_heads * p->head_dim) * es;
    const size_t vrow = (size_t)(p->num_kv_heads * p->v_head_dim) * es;
    attn_status st;
    if ((st = grow(s, &s->hk, &s->cap_k, (size_t)(p->batch * kv) * krow)) ||
        (st = grow(s, &s->hv, &s->cap_v, (size_t)(p->batch * kv) * vrow)))
        return st;
    /* [memory ; segment] per batch entry. */
    for (int64_t b = 0; b < p->batch; ++b) {
        memcpy(s->hk + (size_t)(b * kv) * krow, s->mem_k + (size_t)(b * p->mem_len) * krow, (size_t)m * krow);
        memcpy(s->hv + (size_t)(b * kv) * vrow, s->mem_v + (size_t)(b * p->mem_len) * vrow, (size_t)m * vrow);
    }
    put_rows(s->hk, kv, m, &g->k, es);
    put_rows(s->hv, kv, m, &g->v, es);
    if ((st = need_plan(s, S, kv, 1, ATTN_MASK_NONE)))
        return st;
    attn_run_args a = ATTN_RUN_ARGS_INIT;
    a.q = g->q;
    a.k = attn_tensor_host(p->dtype, kshape[0], kshape[1], kshape[2], kshape[3], s->hk);
    a.v = attn_tensor_host(p->dtype, vshape[0], vshape[1], vshape[2], vshape[3], s->hv);
    a.o = g->o;
    if ((st = attn_plan_run(s->plan, &a)))
        return st;
    /* Keep the last mem_len tokens. */
    const int64_t keep = kv < p->mem_len ? kv : p->mem_len;
    for (int64_t b = 0; b < p->batch; ++b) {
        memcpy(s->mem_k + (size_t)(b * p->mem_len) * krow, s->hk + (size_t)(b * kv + kv - keep) * krow, (size_t)keep * krow);
        memcpy(s->mem_v + (size_t)(b * p->mem_len) * vrow, s->hv + (size_t)(b * kv + kv - keep) * vrow, (size_t)keep * vrow);
    }
    s->mem_fill = keep;
    return ATTN_OK;
}

/* ---- memory tokens ------------------------------------------------------------------------ */
static attn_status push_memory_tokens(attn_stream *s, const attn_stream_segment *g)
{
    const attn_stream_params *p = &s->p;
    const size_t es = es_of(s);
    const int64_t M = p->num_mem_tokens, S = g->q.shape[1], T = M + S;
    attn_status st;
    if ((st = check_tensor(s, &g->mem_q, "mem_q", M, p->num_heads, p->head_dim)) ||
        (st = check_tensor(s, &g->mem_k, "mem_k", M, p->num_kv_heads, p->head_dim)) ||
        (st = check_tensor(s, &g->mem_v, "mem_v", M, p->num_kv_heads, p->v_head_dim)) ||
        (st = check_tensor(s, &g->mem_o, "mem_o", M, p->num_heads, p->v_head_dim)))
        return st;
    const size_t rows = (size_t)(p->batch * T);
    if ((st = grow(s, &s->hq, &s->cap_q, rows * (size_t)(p->num_heads * p->head_dim) * es)) ||
        (st = grow(s, &s->hk, &s->cap_k, rows * (size_t)(p->num_kv_heads * p->head_dim) * es)) ||
        (st = grow(s, &s->hv, &s->cap_v, rows * (size_t)(p->num_kv_heads * p->v_head_dim) * es)) ||
        (st = grow(s, &s->ho, &s->cap_o, rows * (size_t)(p->num_heads * p->v_head_dim) * es)))
        return st;
    put_rows(s->hq, T, 0, &g->mem_q, es);
    put_rows(s->hq, T, M, &g->q, es);
    put_rows(s->hk, T, 0, &g->mem_k, es);
    put_rows(s->hk, T, M, &g->k, es);
    put_rows(s->hv, T, 0, &g->mem_v, es);
    put_rows(s->hv, T, M, &g->v, es);
    if (s->mask_t != T) {
        uint8_t *mk = realloc(s->mask, (size_t)(T * T));
        if (!mk)
            return attn__fail(s->ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "stream mask");
        s->mask = mk;
        /* Memory rows see everything; segment rows see the memory and, causally, the
         * segment. */
        for (int64_t r = 0; r < T; ++r)
            for (int64_t c = 0; c < T; ++c)
                mk[r * T + c] = (uint8_t)(r < M || c < M || c <= r);
        s->mask_t = T;
    }
    if ((st = need_plan(s, T, T, 0, ATTN_MASK_BOOLEAN)))
        return st;
    attn_run_args a = ATTN_RUN_ARGS_INIT;
    a.q = attn_tensor_host(p->dtype, p->batch, T, p->num_heads, p->head_dim, s->hq);
    a.k = attn_tensor_host(p->dtype, p->batch, T, p->num_kv_heads, p->head_dim, s->hk);
    a.v = attn_tensor_host(p->dtype, p->batch, T, p->num_kv_heads, p->v_head_dim, s->hv);
    a.o = attn_tensor_host(p->dtype, p->batch, T, p->num_heads, p->v_head_dim, s->ho);
    a.mask = attn_tensor_host(ATTN_DTYPE_U8, 1, 1, T, T, s->mask);
    if ((st = attn_plan_run(s->plan, &a)))
        return st;
    attn_tensor mo = g->mem_o, so = g->o;
    get_rows(&mo, s->ho, T, 0, es);
    get_rows(&so, s->ho, T, M, es);
    return ATTN_OK;
}

/* ---- compressive memory ------------------------------------------------------------------ */
static attn_status need_buffer(attn_stream *s, attn_buffer **b, uint64_t bytes)
{
    if (*b && attn_buffer_size(*b) >= bytes)
        return ATTN_OK;
    attn_buffer_destroy(*b);
    *b = NULL;
    return attn_buffer_create(s->ctx, bytes ? bytes : 1, b);
}

static void dense_params(attn__kparams *kp, const attn_stream_params *p, int64_t S)
{
    memset(kp, 0, sizeof *kp);
    const int64_t H = p->num_heads, Hk = p->num_kv_heads, D = p->head_dim, Dv = p->v_head_dim;
    kp->q_s0 = S * H * D, kp->q_s1 = H * D, kp->q_s2 = D, kp->q_s3 = 1;
    kp->k_s0 = S * Hk * D, kp->k_s1 = Hk * D, kp->k_s2 = D, kp->k_s3 = 1;
    kp->v_s0 = S * Hk * Dv, kp->v_s1 = Hk * Dv, kp->v_s2 = Dv, kp->v_s3 = 1;
    kp->o_s0 = S * H * Dv, kp->o_s1 = H * Dv, kp->o_s2 = Dv, kp->o_s3 = 1;
    kp->batch = p->batch, kp->num_heads = H, kp->num_kv_heads = Hk;
    kp->q_len = S, kp->kv_len = S;
}

static attn_status push_compressive(attn_stream *s, const attn_stream_segment *g)
{
    attn_context *ctx = s->ctx;
    const attn_stream_params *p = &s->p;
    const size_t es = es_of(s);
    const int64_t S = g->q.shape[1];
    const uint64_t nq = (uint64_t)(p->batch * S * p->num_heads * p->head_dim) * es;
    const uint64_t nk = (uint64_t)(p->batch * S * p->num_kv_heads * p->head_dim) * es;
    const uint64_t nv = (uint64_t)(p->batch * S * p->num_kv_heads * p->v_head_dim) * es;
    const uint64_t no = (uint64_t)(p->batch * S * p->num_heads * p->v_head_dim) * es;
    attn_status st;
    if ((st = need_plan(s, S, S, 1, ATTN_MASK_NONE)))
        return st;
    /* Dense copies of the segment: the local attention and the memory kernels share them. */
    if ((st = grow(s, &s->hq, &s->cap_q, nq)) || (st = grow(s, &s->hk, &s->cap_k, nk)) ||
        (st = grow(s, &s->hv, &s->cap_v, nv)) || (st = grow(s, &s->ho, &s->cap_o, 2 * no)))
        return st;
    put_rows(s->hq, S, 0, &g->q, es);
    put_rows(s->hk, S, 0, &g->k, es);
    put_rows(s->hv, S, 0, &g->v, es);
    attn__problem pb;
    memset(&pb, 0, sizeof pb);
    pb.batch = p->batch, pb.num_heads = p->num_heads, pb.num_kv_heads = p->num_kv_heads;
    pb.q_len = S, pb.kv_len = S, pb.head_dim = p->head_dim, pb.v_head_dim = p->v_head_dim;
    pb.dtype = p->dtype;

    attn_run_args a = ATTN_RUN_ARGS_INIT;
    const int64_t qsh[4] = {p->batch, S, p->num_heads, p->head_dim};
    const int64_t ksh[4] = {p->batch, S, p->num_kv_heads, p->head_dim};
    const int64_t vsh[4] = {p->batch, S, p->num_kv_heads, p->v_head_dim};
    const int64_t osh[4] = {p->batch, S, p->num_heads, p->v_head_dim};
    if (ctx->ops->lang == ATTN__LANG_NONE) {
        /* The reference: local attention on the host, memory in double. */
        char *alocal = s->ho + no;
        a.q = attn_tensor_host(p->dtype, qsh[0], qsh[1], qsh[2], qsh[3], s->hq);
        a.k = attn_tensor_host(p->dtype, ksh[0], ksh[1], ksh[2], ksh[3], s->hk);
        a.v = attn_tensor_host(p->dtype, vsh[0], vsh[1], vsh[2], vsh[3], s->hv);
        a.o = attn_tensor_host(p->dtype, osh[0], osh[1], osh[2], osh[3], alocal);
        if ((st = attn_plan_run(s->plan, &a)))
            return st;
        attn__view vq = {p->dtype, {0}, {0}, s->hq}, vk = {p->dtype, {0}, {0}, s->hk};
        attn__view vv = {p->dtype, {0}, {0}, s->hv}, va = {p->dtype, {0}, {0}, alocal};
        attn__view vo = {p->dtype, {0}, {0}, s->ho};
        memcpy(vq.shape, qsh, sizeof qsh), attn__dense_strides(qsh, vq.stride);
        memcpy(vk.shape, ksh, sizeof ksh), attn__dense_strides(ksh, vk.stride);
        memcpy(vv.shape, vsh, sizeof vsh), attn__dense_strides(vsh, vv.stride);
        memcpy(va.shape, osh, sizeof osh), attn__dense_strides(osh, va.stride);
        memcpy(vo.shape, osh, sizeof osh), attn__dense_strides(osh, vo.stride);
        attn__ref_infini_read(&pb, &vq, &va, s->m_ref, s->z_ref, s->gate, &vo);
        attn__ref_infini_update(&pb, &vk, &vv, s->m_ref, s->z_ref);
    } else {
        if ((st = need_buffer(s, &s->bq, nq)) || (st = need_buffer(s, &s->bk, nk)) ||
            (st = need_buffer(s, &s->bv, nv)) || (st = need_buffer(s, &s->ba, no)) ||
            (st = need_buffer(s, &s->bo, no)) || (st = attn_buffer_upload(s->bq, 0, s->hq, nq)) ||
            (st = attn_buffer_upload(s->bk, 0, s->hk, nk)) ||
            (st = attn_buffer_upload(s->bv, 0, s->hv, nv)))
            return st;
        a.q = attn_tensor_buffer(p->dtype, qsh[0], qsh[1], qsh[2], qsh[3], s->bq, 0);
        a.k = attn_tensor_buffer(p->dtype, ksh[0], ksh[1], ksh[2], ksh[3], s->bk, 0);
        a.v = attn_tensor_buffer(p->dtype, vsh[0], vsh[1], vsh[2], vsh[3], s->bv, 0);
        a.o = attn_tensor_buffer(p->dtype, osh[0], osh[1], osh[2], osh[3], s->ba, 0);
        if ((st = attn_plan_run(s->plan, &a)))
            return st;
        attn__kparams kp;
        dense_params(&kp, p, S);
        attn__launch la;
        memset(&la, 0, sizeof la);
        la.params = &kp;
        la.params_size = sizeof kp;
        la.buffers[0] = s->bq->handle;
        la.buffers[1] = s->ba->handle;
        la.buffers[2] = s->m_buf->handle;
        la.buffers[3] = s->z_buf->handle;
        la.buffers[4] = s->gate_buf->handle;
        la.buffers[5] = s->bo->handle;
        la.num_buffers = 6;
        /* Vulkan: rows (then head-dim rows) as the 8 lanes of a group, which llvmpipe runs
         * as one vector; OpenCL: one work-item per group, as its kernels were tuned. */
        const size_t lanes = ctx->ops->lang == ATTN__LANG_GLSL ? 8 : 1;
        la.groups[0] = ((size_t)S + lanes - 1) / lanes;
        la.groups[1] = (size_t)p->num_heads, la.groups[2] = (size_t)p->batch;
        la.local[0] = lanes;
        la.local[1] = la.local[2] = 1;
        if ((st = attn__enqueue(ctx, s->k_read, &la)))
            return st;
        la.buffers[0] = s->bk->handle;
        la.buffers[1] = s->bv->handle;
        la.buffers[2] = s->m_buf->handle;
        la.buffers[3] = s->z_buf->handle;
        la.num_buffers = 4;
        la.groups[0] = ((size_t)p->head_dim + lanes - 1) / lanes;
        la.groups[1] = (size_t)p->num_kv_heads;
        /* The update loops once per key: on a device that caps an invocation's loop
         * iterations (quirk, llvmpipe) a long segment goes in parts, each adding its keys
         * to the memory (launches run in order). */
        const uint32_t cap = attn__quirks_of(&ctx->info).max_loop_iterations;
        const int64_t part = cap ? (int64_t)cap / 2 - 64 : S;
        for (int64_t t0 = 0; t0 < S; t0 += part) {
            kp.k_off = t0 * kp.k_s1;
            kp.v_off = t0 * kp.v_s1;
            kp.kv_len = S - t0 < part ? S - t0 : part;
            if ((st = attn__enqueue(ctx, s->k_update, &la)))
                return st;
        }
        if ((st = attn_buffer_download(s->bo, 0, s->ho, no)))
            return st;
    }
    attn_tensor o = g->o;
    get_rows(&o, s->ho, S, 0, es);
    return ATTN_OK;
}

/* Zeroes the compressive memory. */
static attn_status clear_memory(attn_stream *s)
{
    const attn_stream_params *p = &s->p;
    const size_t nm = (size_t)(p->batch * p->num_kv_heads * p->head_dim * p->v_head_dim);
    const size_t nz = (size_t)(p->batch * p->num_kv_heads * p->head_dim);
    if (s->m_ref) {
        memset(s->m_ref, 0, nm * sizeof *s->m_ref);
        memset(s->z_ref, 0, nz * sizeof *s->z_ref);
        return ATTN_OK;
    }
    if (!s->m_buf)
        return ATTN_OK;
    float *zeros = calloc(nm, sizeof *zeros);
    if (!zeros)
        return attn__fail(s->ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "stream memory");
    attn_status st = attn_buffer_upload(s->m_buf, 0, zeros, nm * sizeof *zeros);
    if (st == ATTN_OK)
        st = attn_buffer_upload(s->z_buf, 0, zeros, nz * sizeof *zeros);
    free(zeros);
    return st;
}

static attn_status setup_compressive(attn_stream *s)
{
    attn_context *ctx = s->ctx;
    const attn_stream_params *p = &s->p;
    const size_t nm = (size_t)(p->batch * p->num_kv_heads * p->head_dim * p->v_head_dim);
    const size_t nz = (size_t)(p->batch * p->num_kv_heads * p->head_dim);
    if (ctx->ops->lang == ATTN__LANG_NONE) {
        s->m_ref = calloc(nm, sizeof *s->m_ref);
        s->z_ref = calloc(nz, sizeof *s->z_ref);
        return s->m_ref && s->z_ref ? ATTN_OK
                                    : attn__fail(ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "stream memory");
    }
    static const char *const files[] = {"attn_infini.cl"};
    static const char *const entries[] = {"attn_infini_read", "attn_infini_update"};
    if (!attn__kernel_available(ctx, files[0], entries[0]) ||
        !attn__kernel_available(ctx, files[0], entries[1]))
        return attn__fail(ctx, ATTN_ERROR_UNSUPPORTED,
                          "compressive-memory streams: the %s backend has no %s / %s kernels",
                          ctx->ops->name, entries[0], entries[1]);
    const attn__define defs[] = {{"HEAD_DIM", p->head_dim},
                                 {"V_HEAD_DIM", p->v_head_dim},
                                 {"STORAGE_F16", p->dtype == ATTN_DTYPE_F16}};
    void *k[2] = {NULL, NULL};
    attn_status st = attn__kernels_get(ctx, files, 1, entries, 2, defs, 3, k);
    if (st != ATTN_OK)
        return st;
    s->k_read = k[0];
    s->k_update = k[1];
    if ((st = attn_buffer_create(ctx, nm * sizeof(float), &s->m_buf)) ||
        (st = attn_buffer_create(ctx, nz * sizeof(float), &s->z_buf)) ||
        (st = attn_buffer_create(ctx, (uint64_t)p->num_heads * sizeof(float), &s->gate_buf)) ||
        (st = attn_buffer_upload(s->gate_buf, 0, s->gate, (uint64_t)p->num_heads * sizeof(float))))
        return st;
    return clear_memory(s);
}

/* ---- the public functions --------------------------------------------------------------- */
attn_status attn_stream_create(attn_context *ctx, const attn_stream_params *params,
                               attn_stream **out)
{
    if (!out)
        return attn__fail_thread(ATTN_ERROR_NULL_POINTER, "attn_stream_create: out is NULL");
    *out = NULL;
    if (!ctx || !params)
        return attn__fail_thread(ATTN_ERROR_NULL_POINTER, "attn_stream_create: ctx or params is NULL");
    if (ATTN__BAD_STRUCT_SIZE(params, attn_stream_params))
        return attn__fail(ctx, ATTN_ERROR_STRUCT_SIZE,
                          "attn_stream_params.struct_size is %zu; expected %zu",
                          params->struct_size, sizeof(attn_stream_params));
    attn_stream_params p = *params;
    if (!p.num_kv_heads)
        p.num_kv_heads = p.num_heads;
    if (!p.v_head_dim)
        p.v_head_dim = p.head_dim;
    if (p.mode < ATTN_STREAM_RECURRENCE || p.mode > ATTN_STREAM_MEMORY_TOKENS)
        return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT, "unknown stream mode %d", (int)p.mode);
    if (p.mem_len < 0 || p.num_mem_tokens < 0 || p.mem_len > INT32_MAX / 2 ||
        p.num_mem_tokens > 65536 || (p.mode == ATTN_STREAM_MEMORY_TOKENS && !p.num_mem_tokens))
        return attn__fail(ctx, ATTN_ERROR_INVALID_SHAPE,
                          "stream: mem_len / num_mem_tokens out of range (memory tokens need "
                          "num_mem_tokens > 0)");
    /* The shape rules are the plans' own: validate them once through a description. */
    attn_desc d = ATTN_DESC_INIT;
    d.batch = p.batch, d.num_heads = p.num_heads, d.num_kv_heads = p.num_kv_heads;
    d.q_len = d.kv_len = 1, d.head_dim = p.head_dim, d.v_head_dim = p.v_head_dim;
    d.dtype = p.dtype, d.scale = p.scale;
    attn__problem pb;
    int32_t *lens = NULL;
    attn_status st = attn__validate_desc(ctx, &d, &pb, &lens);
    if (st != ATTN_OK)
        return st;
    attn_stream *s = calloc(1, sizeof *s);
    if (!s)
        return attn__fail(ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "stream");
    s->ctx = ctx;
    s->p = p;
    s->gate = calloc((size_t)p.num_heads, sizeof *s->gate);
    if (s->gate && p.gate)
        memcpy(s->gate, p.gate, (size_t)p.num_heads * sizeof *s->gate);
    s->p.gate = NULL;
    const size_t es = attn__dtype_size(p.dtype);
    if (p.mode == ATTN_STREAM_RECURRENCE) {
        s->mem_k = malloc((size_t)(p.batch * p.mem_len * p.num_kv_heads * p.head_dim) * es + 1);
        s->mem_v = malloc((size_t)(p.batch * p.mem_len * p.num_kv_heads * p.v_head_dim) * es + 1);
    }
    if (!s->gate || (p.mode == ATTN_STREAM_RECURRENCE && (!s->mem_k || !s->mem_v)))
        st = attn__fail(ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "stream memory");
    else if (p.mode == ATTN_STREAM_COMPRESSIVE)
        st = setup_compressive(s);
    if (st != ATTN_OK) {
        attn_stream_destroy(s);
        return st;
    }
    *out = s;
    return ATTN_OK;
}

attn_status attn_stream_push(attn_stream *s, const attn_stream_segment *g)
{
    if (!s)
        return attn__fail_thread(ATTN_ERROR_NULL_POINTER, "attn_stream_push: stream is NULL");
    if (!g)
        return attn__fail(s->ctx, ATTN_ERROR_NULL_POINTER, "attn_stream_push: segment is NULL");
    if (ATTN__BAD_STRUCT_SIZE(g, attn_stream_segment))
        return attn__fail(s->ctx, ATTN_ERROR_STRUCT_SIZE,
                          "attn_stream_segment.struct_size is %zu; expected %zu", g->struct_size,
                          sizeof(attn_stream_segment));
    const attn_stream_params *p = &s->p;
    const int64_t S = g->q.shape[1];
    attn_status st;
    if ((st = check_tensor(s, &g->q, "q", -1, p->num_heads, p->head_dim)) ||
        (st = check_tensor(s, &g->k, "k", S, p->num_kv_heads, p->head_dim)) ||
        (st = check_tensor(s, &g->v, "v", S, p->num_kv_heads, p->v_head_dim)) ||
        (st = check_tensor(s, &g->o, "o", S, p->num_heads, p->v_head_dim)))
        return st;
    switch (p->mode) {
    case ATTN_STREAM_RECURRENCE: st = push_recurrence(s, g); break;
    case ATTN_STREAM_COMPRESSIVE: st = push_compressive(s, g); break;
    default: st = push_memory_tokens(s, g); break;
    }
    if (st == ATTN_OK)
        s->position += S;
    return st;
}

attn_status attn_stream_reset(attn_stream *s)
{
    if (!s)
        return attn__fail_thread(ATTN_ERROR_NULL_POINTER, "attn_stream_reset: stream is NULL");
    s->position = 0;
    s->mem_fill = 0;
    return s->p.mode == ATTN_STREAM_COMPRESSIVE ? clear_memory(s) : ATTN_OK;
}

int64_t attn_stream_position(const attn_stream *s) { return s ? s->position : 0; }

void attn_stream_destroy(attn_stream *s)
{
    if (!s)
        return;
    attn_plan_destroy(s->plan);
    attn_buffer *bufs[] = {s->m_buf, s->z_buf, s->gate_buf, s->bq, s->bk, s->bv, s->ba, s->bo};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; ++i)
        attn_buffer_destroy(bufs[i]);
    free(s->gate), free(s->mem_k), free(s->mem_v);
    free(s->hq), free(s->hk), free(s->hv), free(s->ho), free(s->mask);
    free(s->m_ref), free(s->z_ref);
    free(s);
}
