/* schedule.c — the memory-budget scheduler: runs a problem that does not fit the device
 * budget in one pass as query segments x key chunks, per (batch, kv head), merging the
 * partial results of disjoint key chunks exactly (DESIGN.md §4). Halves its segment/chunk
 * on out-of-memory and retries; reports progress and honours cancellation. */
#include <stdlib.h>
#include <string.h>

#include "core/kernels.h"
#include "core/plan.h"
#include "core/sparse.h"
#include "core/quirks.h"

typedef struct step_shape {
    uint64_t sm; /* query rows per segment */
    uint64_t cn; /* keys per chunk */
} step_shape;

/* What one step allocates, given which tensors live in host memory (NULL: all). */
enum { B_Q, B_K, B_V, B_MASK, B_KT, B_VP, B_OC, B_LC, B_OA, B_LA, B_O, B_LSE,
       B_K2, B_V2, B_MASK2, /* second slots: the next chunk uploads while this one computes */
       B_COUNT };

/* Overlapped uploads where the backend has a transfer queue. */
static int overlapped(const attn_plan *plan) { return plan->ctx->ops->write_async != NULL; }


static int host_tensor(const attn__bound *bound, int t)
{
    return !bound || (bound[t].present && !bound[t].buffer);
}

static void step_buffers(const attn_plan *plan, const attn__bound *bound, step_shape s,
                         uint64_t bytes[B_COUNT])
{
    const attn__problem *p = &plan->pb;
    const uint64_t es = attn__dtype_size(p->dtype);
    const uint64_t G = (uint64_t)(p->num_heads / p->num_kv_heads);
    const uint64_t D = (uint64_t)p->head_dim, Dv = (uint64_t)p->v_head_dim;
    memset(bytes, 0, sizeof(uint64_t) * B_COUNT);
    if (host_tensor(bound, ATTN__T_Q))
        bytes[B_Q] = s.sm * G * D * es;
    if (host_tensor(bound, ATTN__T_K))
        bytes[B_K] = s.cn * D * es;
    if (host_tensor(bound, ATTN__T_V))
        bytes[B_V] = s.cn * Dv * es;
    if (p->mask_kind != ATTN_MASK_NONE && host_tensor(bound, ATTN__T_MASK)) {
        uint64_t mh = bound && bound[ATTN__T_MASK].view.shape[1] == 1 ? 1 : G;
        bytes[B_MASK] = mh * s.sm * s.cn * (p->mask_kind == ATTN_MASK_ADDITIVE ? 4 : 1);
    }
    if (plan->info.family == ATTN_FAMILY_CPU) {
        bytes[B_KT] = attn__plan_kv_ld(plan, s.cn) * plan->kd_pad * 4;
        bytes[B_VP] = attn__plan_kv_ld(plan, s.cn) * plan->vd_pad * 4;
    }
    bytes[B_OC] = bytes[B_OA] = s.sm * G * Dv * 4;
    bytes[B_LC] = bytes[B_LA] = G * s.sm * 4;
    if (host_tensor(bound, ATTN__T_O))
        bytes[B_O] = s.sm * G * Dv * es;
    if (p->want_lse && host_tensor(bound, ATTN__T_LSE))
        bytes[B_LSE] = G * s.sm * 4;
    if (overlapped(plan)) {
        bytes[B_K2] = bytes[B_K];
        bytes[B_V2] = bytes[B_V];
        bytes[B_MASK2] = bytes[B_MASK];
    }
}

/* Total bytes of a step, or UINT64_MAX when one buffer exceeds what the device can bind. */
static uint64_t step_total(const attn_plan *plan, const attn__bound *bound, step_shape s)
{
    uint64_t bytes[B_COUNT], total = 0;
    const attn_device_info *dev = &plan->ctx->info;
    uint64_t limit = dev->max_alloc_bytes;
    if (dev->max_binding_bytes && (!limit || dev->max_binding_bytes < limit))
        limit = dev->max_binding_bytes;
    step_buffers(plan, bound, s, bytes);
    for (int i = 0; i < B_COUNT; ++i) {
        if (limit && bytes[i] > limit)
            return UINT64_MAX;
        total += bytes[i];
    }
    if (plan->aux) /* the tile map and position tables stay on the device throughout */
        total += plan->aux->count * sizeof(int32_t);
    return total;
}

static step_shape min_shape(const attn_plan *plan)
{
    const attn__problem *p = &plan->pb;
    step_shape s;
    s.sm = (uint64_t)p->q_len < plan->info.block_m ? (uint64_t)p->q_len : plan->info.block_m;
    s.cn = (uint64_t)p->kv_len < ATTN__CPU_KEY_VEC ? (uint64_t)p->kv_len : ATTN__CPU_KEY_VEC;
    return s;
}

/* One halving step: the dimension whose buffers weigh more, down to the minimum. Returns
 * 0 when both are at their minimum. */
static int halve(const attn_plan *plan, const attn__bound *bound, step_shape *s)
{
    const step_shape lo = min_shape(plan);
    step_shape a = *s, b = *s;
    /* Segments stay multiples of the kernel's row tile while they can. */
    const uint64_t bm = plan->info.block_m ? plan->info.block_m : 1;
    a.sm = a.sm / 2 >= bm ? a.sm / 2 / bm * bm : lo.sm;
    if (a.sm < lo.sm)
        a.sm = lo.sm;
    b.cn = b.cn / 2 < lo.cn ? lo.cn : (b.cn / 2 + ATTN__CPU_KEY_VEC - 1) / ATTN__CPU_KEY_VEC * ATTN__CPU_KEY_VEC;
    int can_a = a.sm < s->sm, can_b = b.cn < s->cn;
    if (!can_a && !can_b)
        return 0;
    if (can_a && can_b)
        *s = step_total(plan, bound, a) <= step_total(plan, bound, b) ? a : b;
    else
        *s = can_a ? a : b;
    return 1;
}

/* Keys one launch may cover on a device whose kernels' loops are capped (quirk
 * max_loop_iterations: llvmpipe stops an invocation's loops silently after 65535 dynamic
 * iterations in all, and every loop it enters runs its body once more than its trip
 * count: the pass that finds no lane left). Iterations per block of keys follow each
 * family's loop structure, with a safety factor of 2 that also covers the loops run once
 * per launch (Q loads, stores, RoPE of Q: rows x pairs, the tile map's binary search).
 * The Vulkan CPU-class shader loops once per block of block_n x keys_per_lane keys, plus
 * once per key of the block for a mask tensor and for T5 biases, plus once per vec4 of the
 * K and V rows (kept as loops where UNROLL_D is 0 and in every windowed variant; the keys
 * of a lane are unrolled inside them). The GPU-class shader
 * loops per block over its K and V tile loads, twice over the block's keys, per key over
 * 8 head-dim elements of K and of V (and a remainder loop each), and over V to rescale.
 * With a tile map both add two per 16-key tile (the run loop: a run per tile at most,
 * and the exit of the run's block loop), counted per block. UINT64_MAX where there is no
 * cap. */
static uint64_t keys_cap_loops(const attn_plan *plan)
{
    const attn__quirks q = attn__quirks_of(&plan->ctx->info);
    if (!q.max_loop_iterations)
        return UINT64_MAX;
    const uint64_t runs = plan->spec.sparse ? 2 : 0;
    const uint64_t bn = attn__plan_key_block(plan);
    uint64_t per_block;
    if (plan->info.family == ATTN_FAMILY_CPU) {
        /* The windowed variant keeps its head-dim loops whatever UNROLL_D says
         * (attn_fwd_cpu.comp). */
        per_block = 1 + (plan->pb.mask_kind != ATTN_MASK_NONE ? bn : 0);
        const int win = attn__plan_may_window(plan);
        if (plan->spec.unroll_d != 1 || win) /* the score loop over K's vec4s */
            per_block += (uint64_t)plan->spec.kd_pad / 4;
        if (plan->spec.unroll_d == 0 || win) /* the P.V loop over V's vec4s */
            per_block += (uint64_t)plan->spec.vd_pad / 4;
        if (plan->spec.pos_flags & ATTN__POS_T5)
            per_block += bn + 1;
    } else {
        const uint64_t D = (uint64_t)plan->pb.head_dim, Dv = (uint64_t)plan->pb.v_head_dim;
        const uint64_t bm = plan->info.block_m ? plan->info.block_m : 1;
        const uint64_t dot = D / 8 + D % 8 + 2, axpy = Dv / 8 + Dv % 8 + 2;
        per_block = 1 + (bn * D + bm - 1) / bm + 1 + (bn * Dv + bm - 1) / bm + 1 /* loads */
                    + 2 * (bn + 1) + bn * (dot + axpy) + axpy;
    }
    per_block += runs;
    uint64_t cap = (uint64_t)q.max_loop_iterations / 2 / per_block * bn;
    cap = cap / ATTN__CPU_KEY_VEC * ATTN__CPU_KEY_VEC;
    return cap < ATTN__CPU_KEY_VEC ? ATTN__CPU_KEY_VEC : cap;
}

/* Whether one launch may cover all of the plan's keys: with a tile map an invocation
 * visits only its query block's tiles, however many keys the launch covers, so the
 * busiest block's tiles are what must fit (attn_plan_run checks again for each run's
 * map). Chunks of a scheduled run still follow keys_cap_loops: smaller chunks are also
 * what lets a pattern skip them. */
uint64_t attn__keys_cap(const attn_plan *plan)
{
    const uint64_t cap = keys_cap_loops(plan);
    if (cap != UINT64_MAX && plan->spec.sparse && plan->aux && plan->aux->words &&
        plan->aux->max_row_tiles * ATTN__TILE_KEYS <= cap)
        return UINT64_MAX;
    return cap;
}

/* The largest shape (from 4096 rows x 4096 keys down) whose step fits `avail`. */
static int pick_shape(const attn_plan *plan, const attn__bound *bound, uint64_t avail,
                      step_shape *out)
{
    const attn__problem *p = &plan->pb;
    step_shape s;
    s.sm = p->q_len < 4096 ? (uint64_t)p->q_len : 4096;
    s.cn = p->kv_len < 4096 ? (uint64_t)p->kv_len : 4096;
    const uint64_t cap = keys_cap_loops(plan);
    if (s.cn > cap)
        s.cn = cap;
    while (step_total(plan, bound, s) > avail)
        if (!halve(plan, bound, &s))
            return 0;
    *out = s;
    return 1;
}

void attn__schedule_plan(attn_plan *plan)
{
    attn_plan_info *info = &plan->info;
    step_shape lo = min_shape(plan), s;
    info->min_device_bytes = step_total(plan, NULL, lo);
    if (info->min_device_bytes > info->device_bytes)
        info->min_device_bytes = info->device_bytes;
    if (info->device_bytes <= plan->ctx->budget && (uint64_t)plan->pb.kv_len <= attn__keys_cap(plan)) {
        info->scheduled = 0;
        info->segment_rows = (uint32_t)plan->pb.q_len;
        info->chunk_keys = (uint32_t)plan->pb.kv_len;
        return;
    }
    info->scheduled = 1;
    if (pick_shape(plan, NULL, plan->ctx->budget, &s)) {
        info->segment_rows = (uint32_t)s.sm;
        info->chunk_keys = (uint32_t)s.cn;
    } else {
        info->segment_rows = (uint32_t)lo.sm;
        info->chunk_keys = (uint32_t)lo.cn;
    }
}

/* ---- one run at a given shape --------------------------------------------------------- */
typedef struct run_state {
    attn_plan *plan;
    const attn__bound *bound;
    step_shape s;
    void *dev[B_COUNT];
    uint64_t bytes[B_COUNT];
    char *tmp;          /* host staging, large enough for any gathered block */
    uint64_t done, total;
    /* Overlap: per slot, host staging for a chunk's K, V and mask, their upload events, and
     * a marker after the compute that last read the slot. */
    char *ctmp[2];
    void *wev[2][3];
    void *cev[2];
    uint64_t steps;
} run_state;

/* Waits for and releases the uploads from slot `par` (its host staging is then free). */
static attn_status wait_slot(run_state *r, int par)
{
    attn_context *ctx = r->plan->ctx;
    attn_status st = ATTN_OK;
    for (int t = 0; t < 3; ++t) {
        if (!r->wev[par][t])
            continue;
        attn_status w = ctx->ops->event_wait(ctx->dev, r->wev[par][t]);
        if (st == ATTN_OK)
            st = w;
        ctx->ops->event_release(ctx->dev, r->wev[par][t]);
        r->wev[par][t] = NULL;
    }
    return st;
}

static void release(run_state *r)
{
    attn_context *ctx = r->plan->ctx;
    ctx->ops->finish(ctx->dev);
    for (int par = 0; par < 2; ++par) {
        wait_slot(r, par);
        if (r->cev[par])
            ctx->ops->event_release(ctx->dev, r->cev[par]);
        free(r->ctmp[par]);
    }
    for (int i = 0; i < B_COUNT; ++i)
        attn__dev_free(ctx, r->dev[i], r->bytes[i]);
    free(r->tmp);
}

/* Element offset of index (a, b, c, d) in a view. */
static int64_t at(const attn__view *v, int64_t a, int64_t b, int64_t c, int64_t d)
{
    return a * v->stride[0] + b * v->stride[1] + c * v->stride[2] + d * v->stride[3];
}

static int64_t at_index(const attn__view *v, const int64_t i[4])
{
    return at(v, i[0], i[1], i[2], i[3]);
}

/* Puts block `shape` of tensor t at index `org` on the device: host tensors are gathered
 * densely into buffer `slot`; buffer tensors are addressed in place. Fills the params'
 * offset and strides (in elements) through off/st. */
static attn_status stage_block(run_state *r, int t, int slot, const int64_t org[4],
                               const int64_t shape[4], void **handle, int64_t *off,
                               int64_t st[4])
{
    const attn__bound *b = &r->bound[t];
    const size_t es = attn__dtype_size(b->view.dtype);
    if (b->buffer) {
        *handle = b->buffer->handle;
        *off = (int64_t)b->elem_off + at(&b->view, org[0], org[1], org[2], org[3]);
        memcpy(st, b->view.stride, 4 * sizeof *st);
        return ATTN_OK;
    }
    attn__dense_strides(shape, st);
    *handle = r->dev[slot];
    *off = 0;
    const char *src = (const char *)b->view.data +
                      (size_t)at(&b->view, org[0], org[1], org[2], org[3]) * es;
    attn__copy_strided(r->tmp, st, src, b->view.stride, shape, es);
    uint64_t bytes = (uint64_t)(shape[0] * shape[1] * shape[2] * shape[3]) * es;
    return attn__dev_write(r->plan->ctx, r->dev[slot], 0, r->tmp, bytes);
}

/* A chunk's block (K, V or mask: index t3 = 0, 1, 2) of host tensor t: gathered into the
 * slot's host staging and uploaded on the transfer queue after the slot's last compute. */
static attn_status stage_chunk(run_state *r, int t, int t3, int par, const int64_t org[4],
                               const int64_t shape[4], void **handle, int64_t *off,
                               int64_t st[4])
{
    const attn__bound *b = &r->bound[t];
    if (b->buffer || !overlapped(r->plan)) {
        static const int slots[3] = {B_K, B_V, B_MASK};
        return stage_block(r, t, slots[t3], org, shape, handle, off, st);
    }
    attn_context *ctx = r->plan->ctx;
    static const int slots[2][3] = {{B_K, B_V, B_MASK}, {B_K2, B_V2, B_MASK2}};
    const size_t es = attn__dtype_size(b->view.dtype);
    attn__dense_strides(shape, st);
    *handle = r->dev[slots[par][t3]];
    *off = 0;
    /* K, then V, then the mask, each at its slot's largest size. */
    uint64_t at = 0;
    for (int i = 0; i < t3; ++i)
        at += r->bytes[slots[0][i]];
    char *dst = r->ctmp[par] + at;
    const char *src = (const char *)b->view.data +
                      (size_t)at_index(&b->view, org) * es;
    attn__copy_strided(dst, st, src, b->view.stride, shape, es);
    const uint64_t bytes = (uint64_t)(shape[0] * shape[1] * shape[2] * shape[3]) * es;
    void *wait = r->cev[par];
    return attn__dev_write_async(ctx, *handle, dst, bytes, wait, &r->wev[par][t3]);
}

/* Reads a dense block back and scatters it into a host output at `org`. */
static attn_status unstage_block(run_state *r, int t, int slot, const int64_t org[4],
                                 const int64_t shape[4])
{
    const attn__bound *b = &r->bound[t];
    const size_t es = attn__dtype_size(b->view.dtype);
    int64_t st[4];
    attn__dense_strides(shape, st);
    uint64_t bytes = (uint64_t)(shape[0] * shape[1] * shape[2] * shape[3]) * es;
    attn_status s = attn__dev_read(r->plan->ctx, r->dev[slot], 0, r->tmp, bytes);
    if (s != ATTN_OK)
        return s;
    char *dst = (char *)b->view.data + (size_t)at(&b->view, org[0], org[1], org[2], org[3]) * es;
    attn__copy_strided(dst, b->view.stride, r->tmp, st, shape, es);
    return ATTN_OK;
}

/* One past the last key that rows [i0, i0+sm) of a batch with len_b keys can see. */
static int64_t keys_end(const attn__problem *p, int64_t len_b, int64_t i0, int64_t sm)
{
    if (!p->causal)
        return len_b;
    const int64_t kend = i0 + sm + len_b - p->q_len;
    return kend < 0 ? 0 : kend > len_b ? len_b : kend;
}

static uint64_t chunks_of(const attn__problem *p, int64_t len_b, int64_t i0, int64_t sm, uint64_t cn)
{
    const uint64_t n = ((uint64_t)keys_end(p, len_b, i0, sm) + cn - 1) / cn;
    return n ? n : 1; /* an empty segment still writes its zeros */
}

static attn_status run_shape(run_state *r, const int32_t *kv_lens, const attn_run_args *args)
{
    attn_plan *plan = r->plan;
    attn_context *ctx = plan->ctx;
    const attn__problem *p = &plan->pb;
    const attn__bound *bound = r->bound;
    const int64_t G = p->num_heads / p->num_kv_heads;
    const int64_t D = p->head_dim, Dv = p->v_head_dim;
    const int cpu = plan->info.family == ATTN_FAMILY_CPU;
    const int64_t sm_max = (int64_t)r->s.sm, cn_max = (int64_t)r->s.cn;
    attn_status st;

    step_buffers(plan, bound, r->s, r->bytes);
    uint64_t tmp_bytes = 0;
    for (int i = 0; i < B_COUNT; ++i) {
        if (r->bytes[i] && (st = attn__dev_alloc(ctx, r->bytes[i], &r->dev[i])) != ATTN_OK)
            return st;
        if (i != B_KT && i != B_VP && i < B_K2 && r->bytes[i] > tmp_bytes)
            tmp_bytes = r->bytes[i];
    }
    r->tmp = malloc(tmp_bytes ? tmp_bytes : 1);
    if (!r->tmp)
        return attn__fail(ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "scheduler staging");
    if (overlapped(plan))
        for (int par = 0; par < 2; ++par) {
            r->ctmp[par] = malloc(r->bytes[B_K] + r->bytes[B_V] + r->bytes[B_MASK] + 1);
            if (!r->ctmp[par])
                return attn__fail(ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "scheduler staging");
        }

    r->done = 0;
    r->total = 0;
    for (int64_t b = 0; b < p->batch; ++b)
        for (int64_t i0 = 0; i0 < p->q_len; i0 += sm_max)
            r->total += (uint64_t)p->num_kv_heads *
                        chunks_of(p, attn__kv_len_of(p, kv_lens, b), i0,
                                  p->q_len - i0 < sm_max ? p->q_len - i0 : sm_max, (uint64_t)cn_max);

    /* Issue 6 features: one aux buffer for every launch (a template of its params). */
    attn__kparams ap;
    memset(&ap, 0, sizeof ap);
    void *aux = NULL;
    if ((st = attn__plan_aux(plan, kv_lens, &ap, &aux)))
        return st;

    const attn__bound *mb = &bound[ATTN__T_MASK];
    for (int64_t b = 0; b < p->batch; ++b) {
        const int64_t len_b = attn__kv_len_of(p, kv_lens, b);
        for (int64_t hk = 0; hk < p->num_kv_heads; ++hk) {
            for (int64_t i0 = 0; i0 < p->q_len; i0 += sm_max) {
                const int64_t sm = p->q_len - i0 < sm_max ? p->q_len - i0 : sm_max;
                attn__kparams kp = ap;
                kp.b_pos = b;
                kp.h_pos = hk * G;
                kp.partial = 1;
                void *qh;
                {
                    const int64_t org[4] = {b, i0, hk * G, 0}, shape[4] = {1, sm, G, D};
                    int64_t s4[4];
                    if ((st = stage_block(r, ATTN__T_Q, B_Q, org, shape, &qh, &kp.q_off, s4)))
                        return st;
                    kp.q_s0 = s4[0], kp.q_s1 = s4[1], kp.q_s2 = s4[2], kp.q_s3 = s4[3];
                }
                const uint64_t nchunks = chunks_of(p, len_b, i0, sm, (uint64_t)cn_max);
                const int64_t kend = keys_end(p, len_b, i0, sm);
                /* With a tile map, chunks no tile of the segment needs are neither uploaded
                 * nor computed; the merge runs from the first needed chunk to the last. A
                 * segment that needs none runs its first chunk with no keys: its zeros. */
                int64_t cfirst = -1, clast = -1;
                for (uint64_t c = 0; c < nchunks; ++c) {
                    const int64_t j0 = (int64_t)c * cn_max;
                    const int64_t cn = kend - j0 < cn_max ? (kend - j0 > 0 ? kend - j0 : 0) : cn_max;
                    if (attn__aux_needs(plan->aux, p, b, hk * G, G, i0, sm, j0, cn)) {
                        if (cfirst < 0)
                            cfirst = (int64_t)c;
                        clast = (int64_t)c;
                    }
                }
                const int none = cfirst < 0;
                if (none)
                    cfirst = clast = 0;
                for (uint64_t c = 0; c < nchunks; ++c) {
                    const int64_t j0 = (int64_t)c * cn_max;
                    int64_t cn = kend - j0 < cn_max ? (kend - j0 > 0 ? kend - j0 : 0) : cn_max;
                    if (none)
                        cn = 0;
                    if ((int64_t)c < cfirst || (int64_t)c > clast ||
                        (!none && !attn__aux_needs(plan->aux, p, b, hk * G, G, i0, sm, j0, cn))) {
                        r->done++;
                        continue;
                    }
                    void *kh = NULL, *vh = NULL, *mh = NULL;
                    int64_t s4[4];
                    /* Slots alternate: this chunk's uploads overlap the previous chunk's
                     * compute, once the uploads from two chunks ago have left the staging. */
                    const int par = (int)(r->steps++ & 1);
                    if (overlapped(plan) && (st = wait_slot(r, par)))
                        return st;
                    if (cn > 0) {
                        const int64_t org[4] = {b, j0, hk, 0}, ks[4] = {1, cn, 1, D},
                                      vs[4] = {1, cn, 1, Dv};
                        if ((st = stage_chunk(r, ATTN__T_K, 0, par, org, ks, &kh, &kp.k_off, s4)))
                            return st;
                        kp.k_s0 = s4[0], kp.k_s1 = s4[1], kp.k_s2 = s4[2], kp.k_s3 = s4[3];
                        if ((st = stage_chunk(r, ATTN__T_V, 1, par, org, vs, &vh, &kp.v_off, s4)))
                            return st;
                        kp.v_s0 = s4[0], kp.v_s1 = s4[1], kp.v_s2 = s4[2], kp.v_s3 = s4[3];
                        if (mb->present) {
                            const int64_t mhs = mb->view.shape[1] == 1 ? 1 : G;
                            const int64_t morg[4] = {mb->view.shape[0] == 1 ? 0 : b,
                                                     mb->view.shape[1] == 1 ? 0 : hk * G, i0, j0};
                            const int64_t ms[4] = {1, mhs, sm, cn};
                            if ((st = stage_chunk(r, ATTN__T_MASK, 2, par, morg, ms, &mh,
                                                  &kp.m_off, s4)))
                                return st;
                            kp.m_s0 = 0, kp.m_s1 = mhs == 1 ? 0 : s4[1], kp.m_s2 = s4[2],
                            kp.m_s3 = s4[3];
                        }
                    }
                    /* The chunk's attention into the f32 partial (oc, lc). */
                    kp.batch = 1;
                    kp.num_heads = G;
                    kp.num_kv_heads = 1;
                    kp.q_len = sm;
                    kp.kv_len = cn;
                    kp.q_pos = i0;
                    kp.k_pos = j0;
                    kp.q_total = p->q_len;
                    kp.kv_total = len_b;
                    kp.causal = p->causal;
                    kp.has_kv_lens = 0;
                    kp.want_lse = 1;
                    kp.o_off = 0, kp.o_s0 = sm * G * Dv, kp.o_s1 = G * Dv, kp.o_s2 = Dv, kp.o_s3 = 1;
                    kp.l_off = 0, kp.l_s0 = G * sm, kp.l_s1 = sm, kp.l_s2 = 1;
                    kp.scale_log2 = (float)(p->scale * 1.4426950408889634);
                    attn__launch la;
                    memset(&la, 0, sizeof la);
                    la.params = &kp;
                    la.params_size = sizeof kp;
                    /* The chunk's first kernel waits for its uploads. */
                    for (int t = 0; t < 3; ++t)
                        if (r->wev[par][t])
                            la.wait[la.num_wait++] = r->wev[par][t];
                    kp.kv_direct = attn__plan_kv_direct(plan, &kp);
                    const int packed = cpu && !kp.kv_direct;
                    if (packed && cn > 0) {
                        void *pack = NULL;
                        if ((st = attn__plan_pack_kernel(plan, &kp, plan->k_cpack, &pack)))
                            return st;
                        kp.ld_kv = (int64_t)attn__plan_kv_ld(plan, (uint64_t)cn);
                        la.buffers[0] = kh;
                        la.buffers[1] = vh;
                        la.buffers[2] = r->dev[B_KT];
                        la.buffers[3] = r->dev[B_VP];
                        la.buffers[4] = aux;
                        la.num_buffers = 5;
                        la.groups[0] = (size_t)kp.ld_kv / ATTN__PACK_GROUP;
                        la.groups[1] = la.groups[2] = 1;
                        la.local[0] = ATTN__PACK_GROUP;
                        la.local[1] = la.local[2] = 1;
                        if ((st = attn__enqueue(ctx, pack, &la)))
                            return st;
                        la.num_wait = 0;
                    }
                    la.buffers[0] = qh;
                    la.buffers[1] = packed ? r->dev[B_KT] : kh;
                    la.buffers[2] = packed ? r->dev[B_VP] : vh;
                    la.buffers[3] = r->dev[B_OC];
                    la.buffers[4] = mh;
                    la.buffers[5] = NULL;
                    la.buffers[6] = r->dev[B_LC];
                    la.buffers[7] = aux;
                    la.num_buffers = 8;
                    la.groups[0] = (size_t)((sm + plan->info.block_m - 1) / plan->info.block_m);
                    la.groups[1] = (size_t)G;
                    la.groups[2] = 1;
                    la.local[0] = plan->info.work_group_size;
                    la.local[1] = la.local[2] = 1;
                    if ((st = attn__enqueue(ctx, plan->k_cmain, &la)))
                        return st;

                    /* Merge into (oa, la); the last chunk writes the caller's layout. */
                    attn__kparams mp = ap;
                    mp.q_len = sm;
                    mp.num_heads = G;
                    mp.h_pos = hk * G;
                    mp.chunk_first = (int64_t)c == cfirst;
                    mp.chunk_last = (int64_t)c == clast;
                    mp.want_lse = p->want_lse;
                    void *oh = r->dev[B_O], *lh = r->dev[B_LSE];
                    if (mp.chunk_last) {
                        const int64_t oorg[4] = {b, i0, hk * G, 0};
                        if (bound[ATTN__T_O].buffer) {
                            const attn__bound *ob = &bound[ATTN__T_O];
                            oh = ob->buffer->handle;
                            mp.o_off = (int64_t)ob->elem_off + at(&ob->view, oorg[0], oorg[1], oorg[2], oorg[3]);
                            mp.o_s1 = ob->view.stride[1], mp.o_s2 = ob->view.stride[2],
                            mp.o_s3 = ob->view.stride[3];
                        } else {
                            mp.o_off = 0, mp.o_s1 = G * Dv, mp.o_s2 = Dv, mp.o_s3 = 1;
                        }
                        const attn__bound *lb = &bound[ATTN__T_LSE];
                        if (p->want_lse && lb->buffer) {
                            lh = lb->buffer->handle;
                            mp.l_off = (int64_t)lb->elem_off + at(&lb->view, b, hk * G, i0, 0);
                            mp.l_s1 = lb->view.stride[1], mp.l_s2 = lb->view.stride[2];
                        } else {
                            mp.l_off = 0, mp.l_s1 = sm, mp.l_s2 = 1;
                        }
                    }
                    memset(&la, 0, sizeof la);
                    la.params = &mp;
                    la.params_size = sizeof mp;
                    la.buffers[0] = r->dev[B_OC];
                    la.buffers[1] = r->dev[B_LC];
                    la.buffers[2] = r->dev[B_OA];
                    la.buffers[3] = r->dev[B_LA];
                    la.buffers[4] = oh;
                    la.buffers[5] = p->want_lse ? lh : NULL;
                    la.buffers[6] = aux;
                    la.num_buffers = 7;
                    la.local[0] = plan->ctx->info.max_work_group_size >= 64 ? 64 : 1;
                    la.local[1] = la.local[2] = 1;
                    la.groups[0] = ((size_t)(sm * G) + la.local[0] - 1) / la.local[0];
                    la.groups[1] = la.groups[2] = 1;
                    if ((st = attn__enqueue(ctx, plan->k_merge, &la)))
                        return st;
                    if (overlapped(plan)) {
                        if (r->cev[par])
                            ctx->ops->event_release(ctx->dev, r->cev[par]);
                        r->cev[par] = NULL;
                        if ((st = ctx->ops->compute_marker(ctx->dev, &r->cev[par])))
                            return st;
                    }

                    r->done++;
                    if (args->progress && args->progress(args->progress_user, r->done, r->total)) {
                        ctx->ops->finish(ctx->dev);
                        return attn__fail(ctx, ATTN_ERROR_CANCELLED,
                                          "cancelled by the progress callback after %llu of "
                                          "%llu work units",
                                          (unsigned long long)r->done,
                                          (unsigned long long)r->total);
                    }
                }
                if (!bound[ATTN__T_O].buffer) {
                    const int64_t org[4] = {b, i0, hk * G, 0}, shape[4] = {1, sm, G, Dv};
                    if ((st = unstage_block(r, ATTN__T_O, B_O, org, shape)))
                        return st;
                }
                if (p->want_lse && !bound[ATTN__T_LSE].buffer) {
                    const int64_t org[4] = {b, hk * G, i0, 0}, shape[4] = {1, G, sm, 1};
                    if ((st = unstage_block(r, ATTN__T_LSE, B_LSE, org, shape)))
                        return st;
                }
            }
        }
    }
    return ctx->ops->finish(ctx->dev);
}

attn_status attn__run_scheduled(attn_plan *plan, const attn__bound bound[ATTN__T_COUNT],
                                const int32_t *kv_lens, const attn_run_args *args)
{
    attn_context *ctx = plan->ctx;
    attn_status st = attn__plan_chunk_kernels(plan);
    if (st != ATTN_OK)
        return st;
    attn_stats now;
    now.struct_size = sizeof now;
    attn_context_get_stats(ctx, &now);
    const uint64_t avail = ctx->budget > now.device_bytes ? ctx->budget - now.device_bytes : 0;
    step_shape s;
    if (!pick_shape(plan, bound, avail, &s)) {
        step_shape lo = min_shape(plan);
        return attn__fail(ctx, ATTN_ERROR_OVER_BUDGET,
                          "the scheduler needs at least %llu bytes of device memory (segments "
                          "of %llu rows, chunks of %llu keys); %llu of the budget's %llu are free",
                          (unsigned long long)step_total(plan, bound, lo),
                          (unsigned long long)lo.sm, (unsigned long long)lo.cn,
                          (unsigned long long)avail, (unsigned long long)ctx->budget);
    }
    for (;;) {
        run_state r;
        memset(&r, 0, sizeof r);
        r.plan = plan;
        r.bound = bound;
        r.s = s;
        plan->info.segment_rows = (uint32_t)s.sm;
        plan->info.chunk_keys = (uint32_t)s.cn;
        st = run_shape(&r, kv_lens, args);
        release(&r);
        if (st != ATTN_ERROR_OUT_OF_DEVICE_MEMORY && st != ATTN_ERROR_OVER_BUDGET)
            return st;
        step_shape before = s;
        if (!halve(plan, bound, &s))
            return attn__fail(ctx, st,
                              "out of device memory even at the scheduler's minimum: segments of "
                              "%llu rows and chunks of %llu keys (%llu bytes)",
                              (unsigned long long)s.sm, (unsigned long long)s.cn,
                              (unsigned long long)step_total(plan, bound, s));
        attn__log(ctx, ATTN_LOG_WARN,
                  "out of device memory at segments of %llu rows x chunks of %llu keys; "
                  "retrying at %llu x %llu",
                  (unsigned long long)before.sm, (unsigned long long)before.cn,
                  (unsigned long long)s.sm, (unsigned long long)s.cn);
    }
}
