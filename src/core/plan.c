/* plan.c — plans: choosing the kernel family and tiles for the device, JIT through the
 * kernel cache, and running (staging host tensors, launching, reading results back). */
#include <stdlib.h>
#include <string.h>

#include "core/kernels.h"
#include "core/plan.h"
#include "core/quirks.h"
#include "core/sparse.h"
#include "core/tune.h"


static uint32_t spec_defines(const attn__kspec *s, attn__define *out)
{
    uint32_t n = 0;
#define ATTN__X(NAME, field) out[n++] = (attn__define){#NAME, s->field};
    ATTN__KSPEC(ATTN__X)
#undef ATTN__X
    return n;
}

#define CPU_KEY_VEC ATTN__CPU_KEY_VEC
#define PACK_GROUP ATTN__PACK_GROUP

static uint64_t round_up(uint64_t x, uint64_t m) { return (x + m - 1) / m * m; }

uint64_t attn__plan_key_block(const attn_plan *plan)
{
    const uint64_t bn = plan->info.block_n ? plan->info.block_n : 1;
    return plan->spec.keys_per_lane > 1 ? bn * (uint64_t)plan->spec.keys_per_lane : bn;
}

uint64_t attn__plan_kv_ld(const attn_plan *plan, uint64_t keys)
{
    const uint64_t kb = attn__plan_key_block(plan);
    return round_up(keys, kb > CPU_KEY_VEC ? kb : CPU_KEY_VEC);
}

/* The planner: family from the device class (or forced), tiles from its limits. */
static attn_status choose_config(attn_plan *plan, attn__kspec *spec)
{
    attn_context *ctx = plan->ctx;
    const attn__problem *p = &plan->pb;
    const attn_device_info *dev = &ctx->info;
    attn_plan_info *info = &plan->info;
    memset(spec, 0, sizeof *spec);
    spec->head_dim = p->head_dim;
    spec->v_head_dim = p->v_head_dim;
    spec->storage_f16 = p->dtype == ATTN_DTYPE_F16;
    spec->mask_kind = p->mask_kind;
    /* Subgroup operations where the device has subgroups and no quirk says otherwise (the
     * backend still compiles them out where its API lacks them). */
    spec->subgroup_ops = dev->subgroup_size > 0 && !attn__quirks_of(dev).no_subgroup_ops;
    spec->sparse = attn__sparse_on(p);
    spec->pos_flags = attn__pos_flags(p);

    attn_kernel_family fam = ctx->family;
    if (fam == ATTN_FAMILY_AUTO)
        fam = dev->type == ATTN_DEVICE_CPU ? ATTN_FAMILY_CPU : ATTN_FAMILY_GPU;
    /* A CPU behind Vulkan (llvmpipe) runs a subgroup as the lanes of one vector; its
     * CPU-class shader shuffles keys between lanes, so it needs subgroup shuffles and a
     * subgroup of 8 or 16 (attn_fwd_cpu.comp). Without them the GPU-class shader runs. */
    const int glsl = ctx->ops->lang == ATTN__LANG_GLSL;
    const int vk_sg = spec->subgroup_ops && (dev->subgroup_ops & ATTN_SUBGROUP_SHUFFLE) &&
                      (dev->subgroup_size == 8 || dev->subgroup_size == 16);
    if (fam == ATTN_FAMILY_CPU && glsl && !vk_sg) {
        if (ctx->family == ATTN_FAMILY_CPU)
            return attn__fail(ctx, ATTN_ERROR_UNSUPPORTED,
                              "the Vulkan CPU-class kernel needs subgroup shuffles in a "
                              "subgroup of 8 or 16 invocations; this device has subgroups of "
                              "%u%s",
                              dev->subgroup_size,
                              spec->subgroup_ops && (dev->subgroup_ops & ATTN_SUBGROUP_SHUFFLE)
                                  ? ""
                                  : " and no usable shuffles");
        fam = ATTN_FAMILY_GPU;
    }
    info->struct_size = sizeof *info;
    info->family = fam;
    if (fam == ATTN_FAMILY_CPU && glsl) {
        /* A subgroup takes keys in blocks of its size and owns ROWS query rows per lane,
         * from K and V packed as rows of vec4s; each shuffled K/V vec4 serves ROWS rows.
         * Unrolled head-dim loops keep Q and O in registers, but the driver's compile time
         * grows steeply with the unrolled code (perf: llvmpipe 22.3 spends most of it in
         * LLVM's buildCoroutineFrame). Measured on llvmpipe, 8 heads x 1024-2048 tokens,
         * under load 3-4 (same-run ratios): d=64 unrolled with ROWS 2 vs loops with ROWS
         * 4: 19.2 vs 13.1 GFLOP/s, d=16: 17.4 vs 9.3; cold compile d=64 unrolled ROWS 2
         * 1.7 s (ROWS 4: 23 s); loops, ROWS 4: d=128 0.7 s and 17 GFLOP/s, d=256 1.2 s
         * and 17 GFLOP/s (unrolled d=128 ROWS 4: 82 s). Since the unrolled shader loads
         * its packed rows in 64-bit words (half the load instructions), d=64 unrolled
         * compiles cold in 2.3 s with ROWS 2, 2.7 s with 3 and 3.8-4.2 s with 4 (quiet), and
         * runs 8 heads x 2048 tokens in 214, 155 and 145 ms. So 4 rows, with every head-dim
         * loop unrolled (UNROLL_D 1) while Q and O fit in 128 floats per row (d <= 64).
         * Above, only O's loops unrolled (UNROLL_D 2: O in registers, at most 512 floats a
         * lane; Q in per-lane memory, which the score loop only reads): d=128, 8 heads x
         * 1024 tokens, 88-96 against 112-115 ms with all loops rolled (alternating runs),
         * 3.3 s cold. (Unrolled d=128 with 2 rows ran 96 against 122 ms but took 4.5 s.) */
        const uint64_t per_row = round_up((uint64_t)p->head_dim, 4) + round_up((uint64_t)p->v_head_dim, 4);
        attn__tune_vals tv; /* a tuned row's rows / unroll_d, where one applies */
        info->tune_source = attn__tune_lookup(plan, ATTN__TUNE_CPU, &tv);
        const uint32_t rows = tv.rows != ATTN__TUNE_UNSET ? (uint32_t)tv.rows : 4;
        spec->unroll_d = tv.unroll_d != ATTN__TUNE_UNSET ? tv.unroll_d
                         : per_row <= 128                                          ? 1
                         : rows * round_up((uint64_t)p->v_head_dim, 4) <= 512       ? 2
                                                                                    : 0;
        spec->block_n = dev->subgroup_size;
        spec->block_m = (long long)rows * spec->block_n;
        /* Keys per lane and block (KPL): blocks of 8 keys paid for Q's per-lane reads and
         * O's rescale once per 8 keys; see attn_fwd_cpu.comp for the measurements. With O's
         * loops unrolled, 4 keys cost 1.8 s more cold compile than 2 at d=128 (5.4 against
         * 3.5 s; 1 key: 2.6 s) and ran 5.6% faster. Unrolled, KPL 2 gained 4% for a second
         * more, so it stays 1 there; with a tile map a block must stay within one tile.
         * Blocks stay at 32 keys with 16-lane subgroups (not measured: none here). */
        spec->keys_per_lane = tv.keys_per_lane != ATTN__TUNE_UNSET ? tv.keys_per_lane
                              : spec->sparse || spec->unroll_d == 1          ? 1
                              : dev->subgroup_size >= 16                     ? 2 /* 32 keys */
                                                                             : 4;
        spec->vd_vec = 4;
        spec->vd_pad = (long long)round_up((uint64_t)p->v_head_dim, 4);
        spec->kd_pad = (long long)round_up((uint64_t)p->head_dim, 4);
        info->block_m = (uint32_t)spec->block_m;
        info->block_n = (uint32_t)spec->block_n;
        info->vec_width = 4;
        info->work_group_size = dev->subgroup_size;
    } else if (fam == ATTN_FAMILY_CPU) {
        /* A work-item owns 16 query rows as the lanes of a float16 (softmax without
         * horizontal reductions), against 16-key tiles of K^T and V packed per (batch, kv
         * head); P·V keeps vd_vec columns x 16 rows of O in registers. */
        attn__tune_vals tv; /* a tuned row's vd_vec, where one applies */
        info->tune_source = attn__tune_lookup(plan, ATTN__TUNE_CPU, &tv);
        spec->block_m = CPU_KEY_VEC;
        spec->block_n = CPU_KEY_VEC;
        spec->vd_vec = tv.vd_vec != ATTN__TUNE_UNSET ? tv.vd_vec
                       : p->v_head_dim >= 16         ? 16
                       : p->v_head_dim >= 8          ? 8
                                                     : 4;
        spec->vd_pad = (long long)round_up((uint64_t)p->v_head_dim, (uint64_t)spec->vd_vec);
        spec->kd_pad = p->head_dim;
        info->block_m = CPU_KEY_VEC;
        info->block_n = CPU_KEY_VEC;
        info->vec_width = (uint32_t)spec->vd_vec;
        info->work_group_size = 1;
        attn__strlcpy(info->kernel, "attn_fwd_cpu.cl", sizeof info->kernel);
    } else {
        /* One query row per work-item, the group's K/V tile in local memory. */
        uint32_t wg = dev->max_work_group_size ? dev->max_work_group_size : 64;
        uint32_t bm = 64;
        while (bm > wg)
            bm /= 2;
        uint64_t per_key = (uint64_t)(p->head_dim + 1 + p->v_head_dim) * 4;
        uint64_t local = dev->local_mem_bytes ? dev->local_mem_bytes : 16384;
        uint32_t bn = 32;
        while (bn > 1 && bn * per_key > local / 2)
            bn /= 2;
        attn__tune_vals tv; /* a tuned row's tiles (checked against these limits) */
        info->tune_source = attn__tune_lookup(plan, ATTN__TUNE_GPU, &tv);
        bm = tv.block_m != ATTN__TUNE_UNSET ? (uint32_t)tv.block_m : bm;
        bn = tv.block_n != ATTN__TUNE_UNSET ? (uint32_t)tv.block_n : bn;
        /* A tile map lists 16-key tiles: a key tile must not straddle two. */
        if (spec->sparse && bn > ATTN__TILE_KEYS)
            bn = ATTN__TILE_KEYS;
        if (bn * per_key > local)
            return attn__fail(ctx, ATTN_ERROR_UNSUPPORTED,
                              "head_dim %lld + v_head_dim %lld need %llu bytes of local memory "
                              "per key; the device has %llu",
                              (long long)p->head_dim, (long long)p->v_head_dim,
                              (unsigned long long)per_key, (unsigned long long)local);
        spec->block_m = bm;
        spec->block_n = bn;
        spec->vd_pad = p->v_head_dim;
        spec->kd_pad = p->head_dim;
        spec->vd_vec = 1;
        info->block_m = bm;
        info->block_n = bn;
        info->vec_width = 1;
        info->work_group_size = bm;
        attn__strlcpy(info->kernel, "attn_fwd_gpu.cl", sizeof info->kernel);
    }
    plan->vd_pad = (uint32_t)spec->vd_pad;
    plan->kd_pad = (uint32_t)spec->kd_pad;
    if (glsl) /* the same kernel, in its Vulkan source */
        attn__strlcpy(info->kernel, fam == ATTN_FAMILY_CPU ? "attn_fwd_cpu.comp" : "attn_fwd_gpu.comp",
                      sizeof info->kernel);
    return ATTN_OK;
}

/* Device bytes of one run with every tensor staged from host memory: what run() allocates
 * at most. Sizes were checked for overflow by validation; the sum saturates. */
static uint64_t one_pass_bytes(const attn_plan *plan)
{
    const attn__problem *p = &plan->pb;
    const uint64_t es = attn__dtype_size(p->dtype);
    const uint64_t B = (uint64_t)p->batch, H = (uint64_t)p->num_heads;
    const uint64_t Hk = (uint64_t)p->num_kv_heads, Sq = (uint64_t)p->q_len;
    const uint64_t Skv = (uint64_t)p->kv_len, D = (uint64_t)p->head_dim;
    const uint64_t Dv = (uint64_t)p->v_head_dim;
    long double total = (long double)B * Sq * H * (D + Dv) * es   /* Q, O */
                        + (long double)B * Skv * Hk * (D + Dv) * es /* K, V */
                        + (long double)B * H * Sq * 4 + B * 4;      /* lse, kv_lens */
    if (p->mask_kind != ATTN_MASK_NONE)
        total += (long double)B * H * Sq * Skv * (p->mask_kind == ATTN_MASK_ADDITIVE ? 4 : 1);
    if (plan->aux)
        total += (long double)plan->aux->count * 4;
    total += (long double)attn__probs_bytes(plan);
    if (plan->decode) {
        const long double rows = (long double)B * Sq * H * plan->num_splits;
        total += rows * (Dv + 1) * 4; /* partial O and lse per split */
    } else if (plan->info.family == ATTN_FAMILY_CPU) {
        const uint64_t ld = attn__plan_kv_ld(plan, Skv);
        total += (long double)B * Hk * ld * (plan->kd_pad + plan->vd_pad) * 4;
    }
    return total >= 18446744073709551615.0L ? UINT64_MAX : (uint64_t)total;
}

/* Whether a tensor of the problem may be bound in windows on Vulkan: larger than one of
 * the backend's four windows of maxStorageBufferRange (max_binding_bytes / 4, or less when
 * the maximum allocation caps it; conservative). Chunks of a scheduled run are no larger
 * than the whole tensors, so "no" holds for every launch of the plan. `packed`: count the
 * CPU family's packed K/V copies too (its prefill kernels read them; decode does not). */
static int may_window(const attn_plan *plan, int packed)
{
    const attn__problem *p = &plan->pb;
    if (plan->ctx->ops->lang != ATTN__LANG_GLSL)
        return 0;
    const uint64_t es = attn__dtype_size(p->dtype);
    const uint64_t d = (uint64_t)(p->head_dim > p->v_head_dim ? p->head_dim : p->v_head_dim);
    const uint64_t kv = (uint64_t)p->batch * (uint64_t)p->kv_len * (uint64_t)p->num_kv_heads * d * es;
    const uint64_t qo = (uint64_t)p->batch * (uint64_t)p->q_len * (uint64_t)p->num_heads * d * es;
    uint64_t big = kv > qo ? kv : qo;
    if (packed) {
        /* f32 rows of KD_PAD / VD_PAD floats, keys padded. */
        const uint64_t pad = plan->kd_pad > plan->vd_pad ? plan->kd_pad : plan->vd_pad;
        const uint64_t copies = (uint64_t)p->batch * (uint64_t)p->num_kv_heads *
                                attn__plan_kv_ld(plan, (uint64_t)p->kv_len) * pad * 4;
        if (copies > big)
            big = copies;
    }
    return big > plan->ctx->info.max_binding_bytes / 4;
}

int attn__plan_may_window(const attn_plan *plan)
{
    return may_window(plan, !plan->decode && plan->info.family == ATTN_FAMILY_CPU);
}

#define DECODE_MAX_ROWS 16 /* query rows per kv head the decode kernel holds */

/* Vulkan, the shaders that read K/V where they are (decode, and the CPU family's packing):
 * elements per K/V load of the variant kv_vec (KV_VEC, attn_kv_words.glsl), the widest
 * variant whose words divide both head dims (the plan's), and the widest up to `planned`
 * that a launch's K/V allow: unit element stride, offsets and strides multiples of its
 * words. */
static int64_t kv_vec_epw(const attn_plan *plan, int kv_vec)
{
    return kv_vec == 2 ? (plan->pb.dtype == ATTN_DTYPE_F16 ? 16 : 8) : kv_vec == 1 ? 4 : 1;
}

static int kv_vec_widest(const attn_plan *plan)
{
    int v = 2;
    while (v > 0 && (plan->pb.head_dim % kv_vec_epw(plan, v) || plan->pb.v_head_dim % kv_vec_epw(plan, v)))
        --v;
    return v;
}

/* Whether a launch's K and V rows can be read in words of wk and wv elements: unit element
 * stride, offsets and strides multiples of the words. */
static int kv_words_fit(const attn__kparams *kp, int64_t wk, int64_t wv)
{
    const int64_t k_or = kp->k_off | kp->k_s0 | kp->k_s1 | kp->k_s2;
    const int64_t v_or = kp->v_off | kp->v_s0 | kp->v_s1 | kp->v_s2;
    return kp->k_s3 == 1 && kp->v_s3 == 1 && k_or % wk == 0 && v_or % wv == 0;
}

static int kv_vec_fit(const attn_plan *plan, int planned, const attn__kparams *kp)
{
    int fits = planned;
    while (fits > 0 && !kv_words_fit(kp, kv_vec_epw(plan, fits), kv_vec_epw(plan, fits)))
        --fits;
    return fits;
}

/* Vulkan: invocations per decode group (LANES in attn_decode.comp): one subgroup where its
 * size is reasonable (on llvmpipe the 8 lanes of one vector), else 16. */
static uint64_t decode_lanes(const attn_plan *plan)
{
    const uint32_t sg = plan->ctx->info.subgroup_size;
    return sg >= 4 && sg <= 64 ? sg : 16;
}

/* Vulkan: lanes per key (DL). The lanes of a group split each K/V row between them, in
 * words of the plan's widest K/V variant, and add their parts of a score with subgroup
 * shuffles: as many lanes as the row has words, a power of 2 dividing the group, which
 * must be one subgroup. Without shuffles a lane takes whole rows (1). */
static int64_t decode_dl(const attn_plan *plan)
{
    const attn__problem *p = &plan->pb;
    const attn_device_info *dev = &plan->ctx->info;
    const uint64_t lanes = decode_lanes(plan);
    if (!plan->spec.subgroup_ops || !(dev->subgroup_ops & ATTN_SUBGROUP_SHUFFLE) || lanes != dev->subgroup_size)
        return 1;
    const int64_t epw = kv_vec_epw(plan, kv_vec_widest(plan));
    const int64_t d = p->head_dim > p->v_head_dim ? p->head_dim : p->v_head_dim;
    const int64_t words = (d + epw - 1) / epw;
    int64_t dl = 1;
    while (dl * 2 <= words && (uint64_t)(dl * 2) <= lanes && lanes % (uint64_t)(dl * 2) == 0)
        dl *= 2;
    return dl;
}

/* Vulkan: the floats of Q and O a lane holds per row: its words of a K row and a V row. */
static int64_t decode_lane_floats(const attn_plan *plan)
{
    const attn__problem *p = &plan->pb;
    const int64_t dl = decode_dl(plan), epw = kv_vec_epw(plan, kv_vec_widest(plan));
    return ((p->head_dim + epw - 1) / epw + dl - 1) / dl * epw +
           ((p->v_head_dim + epw - 1) / epw + dl - 1) / dl * epw;
}

/* Vulkan: rows per work-group (RC). The shader unrolls them, and llvmpipe's compile time at
 * the first dispatch grows steeply with the Q and O values an invocation keeps live
 * (measured with whole rows per lane, head_dim 128, 4 rows, f16, cold, under load: 4 rows
 * x 4 keys a block 27 s, 4 x 1 8.6 s, 2 x 1 2.7 s); so a lane holds about 512 floats of Q
 * and O, and where the rows need more they go to several groups, each reading K/V. With
 * the rows split over DL lanes that is rarely needed. */
static int64_t decode_rc(const attn_plan *plan)
{
    const attn__problem *p = &plan->pb;
    const int64_t rows = p->q_len * (p->num_heads / p->num_kv_heads);
    const int64_t rc = 512 / decode_lane_floats(plan);
    return rc < 1 ? 1 : rc > rows ? rows : rc;
}

/* Keys per lane cluster and block on Vulkan (KB): one rescale of O per block, and on a
 * CPU-class device one read-ahead of KB keys' cache lines, whose misses then overlap (on
 * llvmpipe, 32/8 heads, d=128, f16, 4096 keys, interleaved runs: best of 41 runs 3.8-4.8
 * ms with 4 keys against 4.5-7.4 with 2; 1.3 s cold compile). */
#define DECODE_KB 4

/* The decode kernels' defines. Both are specialised to the exact rows per kv head (ROWS);
 * the Vulkan shader also to its LANES invocations per group (the plan's work-group size),
 * DL lanes per key, RC rows per group, KB keys per block, its K/V words (kv_vec), and, on
 * a CPU-class device, a read-ahead of the K/V rows (TOUCH). */
static uint32_t decode_defines(const attn_plan *plan, int kv_vec, attn__define *d)
{
    const attn__problem *p = &plan->pb;
    const int64_t rows = p->q_len * (p->num_heads / p->num_kv_heads);
    uint32_t n = 0;
    d[n++] = (attn__define){"HEAD_DIM", p->head_dim};
    d[n++] = (attn__define){"V_HEAD_DIM", p->v_head_dim};
    d[n++] = (attn__define){"STORAGE_F16", p->dtype == ATTN_DTYPE_F16};
    d[n++] = (attn__define){"MASK_KIND", p->mask_kind};
    d[n++] = (attn__define){"ROWS", rows};
    if (plan->ctx->ops->lang != ATTN__LANG_GLSL)
        return n;
    d[n++] = (attn__define){"RC", plan->dec_rc};
    d[n++] = (attn__define){"LANES", plan->info.work_group_size};
    d[n++] = (attn__define){"DL", plan->dec_dl};
    d[n++] = (attn__define){"KB", DECODE_KB};
    d[n++] = (attn__define){"KV_VEC", kv_vec};
    d[n++] = (attn__define){"TOUCH", plan->info.family == ATTN_FAMILY_CPU};
    return n;
}

static attn_status decode_kernels(attn_plan *plan, int kv_vec, void *k[2])
{
    static const char *const files[] = {"attn_decode.cl"};
    static const char *const entries[] = {"attn_decode", "attn_decode_merge"};
    attn__define defs[11];
    const uint32_t nd = decode_defines(plan, kv_vec, defs);
    return attn__kernels_get(plan->ctx, files, 1, entries, 2, defs, nd, k);
}

/* Decode (split-KV) when each kv head has few query rows and many keys: the keys are split
 * so that the device gets enough work-items, and the splits are merged exactly. On Vulkan
 * a split is a group of LANES invocations in KL = LANES / DL clusters, each a partial over
 * every KL-th key of the group's range, so num_splits counts partials (groups x KL) and
 * split_len is the keys of a group; ranges also stay within a loop-capped device's
 * iterations per invocation. */
static attn_status plan_decode(attn_plan *plan)
{
    const attn__problem *p = &plan->pb;
    const attn_device_info *dev = &plan->ctx->info;
    const int glsl = plan->ctx->ops->lang == ATTN__LANG_GLSL;
    const int64_t rows = p->q_len * (p->num_heads / p->num_kv_heads);
    if (rows > DECODE_MAX_ROWS || p->kv_len < 128)
        return ATTN_OK;
    /* Patterns, positions and logit transforms are in the prefill kernels only. */
    if (p->feat)
        return ATTN_OK;
    /* The Vulkan decode shader unrolls its rows and a lane's words, and the driver's
     * compile time grows steeply with that code: on llvmpipe 4 rows at head_dim 128 with
     * whole rows per lane (1024 floats of Q and O per invocation) took 21 s cold under
     * load, 7 rows at head_dim 256 more than 4 minutes. Beyond 1024 floats a lane the
     * prefill kernels run instead (exact, slower). */
    if (glsl && (uint64_t)rows * (uint64_t)decode_lane_floats(plan) > 1024)
        return ATTN_OK;
    /* Nor where a tensor may be bound in windows: every load of the windowed variant
     * branches over the windows, and llvmpipe took 42 s to compile it for a 141 MiB K
     * (1200 heads, 480 keys). The prefill shader keeps its loops rolled there (1 s). */
    if (glsl && may_window(plan, 0))
        return ATTN_OK;
    /* A backend without the decode kernels runs the prefill kernels instead. */
    if (!attn__kernel_available(plan->ctx, "attn_decode.cl", "attn_decode") ||
        !attn__kernel_available(plan->ctx, "attn_decode.cl", "attn_decode_merge"))
        return ATTN_OK;
    /* Vulkan: KL clusters of DL lanes each take a key at a time; groups of RC rows. */
    const uint64_t lanes = glsl ? decode_lanes(plan) : 1;
    plan->dec_dl = glsl ? (uint32_t)decode_dl(plan) : 1;
    plan->dec_rc = glsl ? (uint32_t)decode_rc(plan) : (uint32_t)rows;
    const uint64_t kl = lanes / plan->dec_dl;
    const uint64_t block = kl * (uint64_t)(glsl ? DECODE_KB : 1);
    const uint64_t cu = dev->compute_units ? dev->compute_units : 1;
    attn__tune_vals tv; /* a tuned row's splits per compute unit, where one applies */
    const attn_tune_source tuned = attn__tune_lookup(plan, ATTN__TUNE_DECODE, &tv);
    const uint64_t want = (uint64_t)(tv.splits_per_cu != ATTN__TUNE_UNSET
                                         ? tv.splits_per_cu
                                         : ATTN__DECODE_SPLITS_PER_CU(dev)) * cu;
    const uint64_t slabs = (uint64_t)(p->batch * p->num_kv_heads);
    uint64_t splits = (want + slabs - 1) / slabs;
    /* At least 64 keys a split (Vulkan: 8 blocks of a group, and 64 keys). */
    const uint64_t min_keys = glsl ? (8 * block > 64 ? 8 * block : 64) : 64;
    const uint64_t most = ((uint64_t)p->kv_len + min_keys - 1) / min_keys;
    if (splits > most)
        splits = most;
    /* llvmpipe's cap (quirk max_loop_iterations): an invocation of the Vulkan shader loops
     * once per block of its cluster's keys (every other loop is unrolled); a range holds
     * what cap / 2 blocks allow (a safety factor of 2, as in schedule.c). */
    const uint32_t cap = attn__quirks_of(dev).max_loop_iterations;
    if (glsl && cap) {
        const uint64_t keys = ((uint64_t)cap / 2 - 16) * block;
        const uint64_t least = ((uint64_t)p->kv_len + keys - 1) / keys;
        if (splits < least)
            splits = least;
    }
    if (splits < 1)
        splits = 1;
    plan->info.work_group_size = (uint32_t)lanes;
    void *k[2] = {NULL, NULL};
    attn_status st = decode_kernels(plan, glsl ? kv_vec_widest(plan) : 0, k);
    if (st != ATTN_OK)
        return st;
    plan->decode = 1;
    plan->num_splits = (uint32_t)(splits * kl);
    plan->split_len = (uint32_t)(((uint64_t)p->kv_len + splits - 1) / splits);
    plan->k_dec = k[0];
    plan->k_dec_merge = k[1];
    plan->info.block_m = (uint32_t)rows;
    plan->info.block_n = plan->split_len;
    plan->info.vec_width = glsl ? 4 : 8;
    plan->info.tune_source = tuned;
    attn__strlcpy(plan->info.kernel, glsl ? "attn_decode.comp" : "attn_decode.cl",
                  sizeof plan->info.kernel);
    return ATTN_OK;
}

/* One program per family: the CPU family's K/V packing kernel is built with its attention
 * kernel, so a plan costs one compile. The scheduler's program adds the merge kernel and
 * writes partial outputs in f32. */
static attn_status compile_program(attn_plan *plan, int chunked)
{
    static const char *const cpu_files[] = {"attn_pack.cl", "attn_fwd_cpu.cl", "attn_merge.cl"};
    static const char *const cpu_entries[] = {"attn_fwd_cpu", "attn_pack_kv", "attn_merge"};
    static const char *const gpu_files[] = {"attn_fwd_gpu.cl", "attn_merge.cl"};
    static const char *const gpu_entries[] = {"attn_fwd_gpu", "attn_merge"};
    const int cpu = plan->info.family == ATTN_FAMILY_CPU;
    attn__kspec spec = plan->spec;
    spec.out_f32 = chunked && plan->pb.dtype != ATTN_DTYPE_F32;
    attn__define defs[16];
    uint32_t nd = spec_defines(&spec, defs);
    /* Vulkan: the packing shader loads K/V in the widest words the head dims allow (a run
     * whose layout does not fit them gets a narrower one: attn__plan_pack_kernel); the
     * other shaders of the program do not use KV_VEC. */
    if (cpu && plan->ctx->ops->lang == ATTN__LANG_GLSL)
        defs[nd++] = (attn__define){"KV_VEC", kv_vec_widest(plan)};
    uint32_t nf = (cpu ? 2u : 1u) + (chunked ? 1u : 0u);
    void *k[3] = {NULL, NULL, NULL};
    attn_status st = attn__kernels_get(plan->ctx, cpu ? cpu_files : gpu_files, nf,
                                       cpu ? cpu_entries : gpu_entries, nf, defs, nd, k);
    if (st != ATTN_OK)
        return st;
    if (!chunked) {
        plan->k_main = k[0];
        plan->k_pack = cpu ? k[1] : NULL;
    } else {
        plan->k_cmain = k[0];
        plan->k_cpack = cpu ? k[1] : NULL;
        plan->k_merge = k[cpu ? 2 : 1];
    }
    return ATTN_OK;
}

/* The packing exists to convert storage to f32, rotate K (RoPE) and pad the head dims to
 * whole vec4s; where none of that is needed, the kernel's K and V words can come straight
 * from the caller's rows: unit element stride, offsets and strides in whole words. A word
 * is 8 floats where the kernel loads u64vec4 words (unroll_d 1 or 2, padded dims of whole
 * words; attn_fwd_cpu.comp, KWK / KWV), else 4 (conservative: without int64 or with
 * windows the kernel takes 4 anyway). Packing a 65,536-key problem took llvmpipe ~190
 * ms, 12% of a sliding-window run over it. */
int attn__plan_kv_direct(const attn_plan *plan, const attn__kparams *kp)
{
    const attn__problem *p = &plan->pb;
    if (plan->ctx->ops->lang != ATTN__LANG_GLSL || plan->info.family != ATTN_FAMILY_CPU ||
        p->dtype != ATTN_DTYPE_F32 || (plan->spec.pos_flags & ATTN__POS_ROPE) ||
        plan->kd_pad != (uint32_t)p->head_dim || plan->vd_pad != (uint32_t)p->v_head_dim)
        return 0;
    return kv_words_fit(kp, plan->kd_pad % 8 == 0 && plan->spec.unroll_d != 0 ? 8 : 4,
                        plan->vd_pad % 8 == 0 && plan->spec.unroll_d != 0 ? 8 : 4);
}

attn_status attn__plan_pack_kernel(attn_plan *plan, const attn__kparams *kp, void *planned,
                                   void **kernel)
{
    *kernel = planned;
    if (plan->ctx->ops->lang != ATTN__LANG_GLSL)
        return ATTN_OK;
    const int widest = kv_vec_widest(plan), fits = kv_vec_fit(plan, widest, kp);
    if (fits == widest)
        return ATTN_OK;
    /* The packing shader does not read OUT_F32, so one variant serves both programs. */
    if (!plan->k_pack_narrow[fits]) {
        static const char *const files[] = {"attn_pack.cl"};
        static const char *const entries[] = {"attn_pack_kv"};
        attn__define defs[16];
        uint32_t nd = spec_defines(&plan->spec, defs);
        defs[nd++] = (attn__define){"KV_VEC", fits};
        attn_status st = attn__kernels_get(plan->ctx, files, 1, entries, 1, defs, nd,
                                           &plan->k_pack_narrow[fits]);
        if (st != ATTN_OK)
            return st;
    }
    *kernel = plan->k_pack_narrow[fits];
    return ATTN_OK;
}

attn_status attn__plan_chunk_kernels(attn_plan *plan)
{
    return plan->k_merge ? ATTN_OK : compile_program(plan, 1);
}

attn_status attn_plan_create(attn_context *ctx, const attn_desc *desc, attn_plan **out)
{
    if (!out)
        return ctx ? attn__fail(ctx, ATTN_ERROR_NULL_POINTER, "attn_plan_create: out is NULL")
                   : attn__fail_thread(ATTN_ERROR_NULL_POINTER, "attn_plan_create: out is NULL");
    *out = NULL;
    if (!ctx)
        return attn__fail_thread(ATTN_ERROR_NULL_POINTER, "attn_plan_create: ctx is NULL");
    attn_plan *plan = calloc(1, sizeof *plan);
    if (!plan)
        return attn__fail(ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "allocating a plan");
    plan->ctx = ctx;
    attn_status st = attn__validate_desc(ctx, desc, &plan->pb, &plan->kv_lens);
    if (st != ATTN_OK) {
        free(plan);
        return st;
    }
    if (ctx->ops->lang == ATTN__LANG_NONE) {
        plan->info.struct_size = sizeof plan->info;
        plan->info.family = ATTN_FAMILY_AUTO;
        attn__strlcpy(plan->info.kernel, "reference", sizeof plan->info.kernel);
    } else {
        st = choose_config(plan, &plan->spec);
        if (st == ATTN_OK)
            st = plan_decode(plan);
        if (st == ATTN_OK && !plan->decode)
            st = compile_program(plan, 0);
        if (st == ATTN_OK && plan->pb.feat && plan->pb.feat->probs_mode) {
            attn__define defs[16];
            const uint32_t nd = spec_defines(&plan->spec, defs);
            st = attn__probs_compile(plan, defs, nd);
        }
        if (st == ATTN_OK && plan->pb.feat) {
            /* The tile map and tables for the description's key lengths: their size
             * counts in the plan's device memory, their tiles in its info. */
            plan->aux = calloc(1, sizeof *plan->aux);
            st = plan->aux ? attn__aux_build(plan, plan->kv_lens, plan->info.block_m, plan->aux)
                           : attn__fail(ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "allocating a plan");
            if (st == ATTN_OK && plan->spec.sparse) {
                plan->info.tiles_computed = plan->aux->tiles_computed;
                plan->info.tiles_total = plan->aux->tiles_total;
            }
        }
        if (st == ATTN_OK) {
            plan->info.device_bytes = one_pass_bytes(plan);
            attn__schedule_plan(plan);
            /* A decode plan that fits the budget runs in one pass: its splits already
             * respect a loop-capped device's keys per launch, the prefill chunks' cap
             * does not apply to it. */
            if (plan->decode && plan->info.scheduled &&
                plan->info.device_bytes <= plan->ctx->budget) {
                plan->info.scheduled = 0;
                plan->info.segment_rows = (uint32_t)plan->pb.q_len;
                plan->info.chunk_keys = (uint32_t)plan->pb.kv_len;
            }
            if (plan->info.scheduled && plan->k_probs)
                st = attn__fail(ctx, ATTN_ERROR_OVER_BUDGET,
                                "probability outputs need the problem to run in one pass: it "
                                "needs %llu bytes of device memory, the budget is %llu",
                                (unsigned long long)plan->info.device_bytes,
                                (unsigned long long)plan->ctx->budget);
            else if (plan->info.scheduled)
                st = attn__plan_chunk_kernels(plan);
        }
        if (st != ATTN_OK) {
            if (plan->aux)
                attn__aux_free(plan->aux);
            free(plan->aux);
            free(plan->kv_lens);
            free(plan);
            return st;
        }
    }
    if (ctx->ops->lang == ATTN__LANG_NONE)
        plan->info.device_bytes = one_pass_bytes(plan);
    attn__plan_link(ctx, plan);
    *out = plan;
    return ATTN_OK;
}

static void free_scratch(attn_plan *plan)
{
    plan->ctx->ops->finish(plan->ctx->dev);
    for (int i = 0; i < ATTN__S_COUNT; ++i) {
        attn__dev_free(plan->ctx, plan->scratch[i].handle, plan->scratch[i].bytes);
        plan->scratch[i].handle = NULL;
        plan->scratch[i].bytes = 0;
    }
    plan->aux_uploaded = 0;
}

void attn_plan_destroy(attn_plan *plan)
{
    if (!plan)
        return;
    attn_context *ctx = plan->ctx;
    attn__plan_unlink(ctx, plan);
    if (ctx->dev)
        free_scratch(plan);
    if (plan->aux)
        attn__aux_free(plan->aux);
    free(plan->aux);
    free(plan->kv_lens);
    free(plan);
}

attn_status attn_plan_get_info(const attn_plan *plan, attn_plan_info *info)
{
    if (!plan || !info)
        return attn__fail_thread(ATTN_ERROR_NULL_POINTER, "attn_plan_get_info: NULL argument");
    if (ATTN__BAD_STRUCT_SIZE(info, attn_plan_info))
        return attn__fail(plan->ctx, ATTN_ERROR_STRUCT_SIZE,
                          "attn_plan_info.struct_size is %zu; expected %zu", info->struct_size,
                          sizeof(attn_plan_info));
    size_t keep = info->struct_size;
    memcpy(info, &plan->info, sizeof *info);
    info->struct_size = keep;
    return ATTN_OK;
}

/* ---- running -------------------------------------------------------------------------- */

/* Device scratch of at least `bytes` in slot `s`, kept for later runs. */
attn_status attn__plan_scratch(attn_plan *plan, int s, uint64_t bytes, void **handle)
{
    attn__scratch *sc = &plan->scratch[s];
    if (!bytes)
        bytes = 4;
    if (sc->handle && sc->bytes >= bytes) {
        *handle = sc->handle;
        return ATTN_OK;
    }
    if (sc->handle) {
        plan->ctx->ops->finish(plan->ctx->dev);
        attn__dev_free(plan->ctx, sc->handle, sc->bytes);
        sc->handle = NULL;
        sc->bytes = 0;
    }
    attn_status st = attn__dev_alloc(plan->ctx, bytes, &sc->handle);
    if (st == ATTN_OK)
        sc->bytes = bytes;
    *handle = sc->handle;
    return st;
}

void attn__dense_strides(const int64_t shape[4], int64_t out[4])
{
    out[3] = 1;
    for (int i = 2; i >= 0; --i)
        out[i] = out[i + 1] * shape[i + 1];
}

void attn__copy_strided(char *dst, const int64_t ds[4], const char *src, const int64_t ss[4],
                         const int64_t shape[4], size_t es)
{
    for (int64_t a = 0; a < shape[0]; ++a)
        for (int64_t b = 0; b < shape[1]; ++b)
            for (int64_t c = 0; c < shape[2]; ++c) {
                char *d = dst + (size_t)(a * ds[0] + b * ds[1] + c * ds[2]) * es;
                const char *s = src + (size_t)(a * ss[0] + b * ss[1] + c * ss[2]) * es;
                if (ds[3] == 1 && ss[3] == 1) {
                    memcpy(d, s, (size_t)shape[3] * es);
                } else {
                    for (int64_t e = 0; e < shape[3]; ++e)
                        memcpy(d + (size_t)(e * ds[3]) * es, s + (size_t)(e * ss[3]) * es, es);
                }
            }
}

/* Where a bound tensor lives on the device for this run. */
typedef struct dev_tensor {
    void *handle;
    int64_t off;
    int64_t stride[4];
} dev_tensor;

static uint64_t dense_bytes(const attn__view *v)
{
    return (uint64_t)v->shape[0] * (uint64_t)v->shape[1] * (uint64_t)v->shape[2] *
           (uint64_t)v->shape[3] * attn__dtype_size(v->dtype);
}

/* Inputs in host memory go up densely packed; buffers bind as they are. */
static attn_status stage_in(attn_plan *plan, const attn__bound *b, int slot, dev_tensor *d)
{
    if (!b->present) {
        memset(d, 0, sizeof *d);
        return ATTN_OK;
    }
    if (b->buffer) {
        d->handle = b->buffer->handle;
        d->off = (int64_t)b->elem_off;
        memcpy(d->stride, b->view.stride, sizeof d->stride);
        return ATTN_OK;
    }
    uint64_t bytes = dense_bytes(&b->view);
    attn_status st = attn__plan_scratch(plan, slot, bytes, &d->handle);
    if (st != ATTN_OK)
        return st;
    d->off = 0;
    attn__dense_strides(b->view.shape, d->stride);
    if (b->dense)
        return attn__dev_write(plan->ctx, d->handle, 0, b->view.data, bytes);
    char *tmp = malloc(bytes ? bytes : 1);
    if (!tmp)
        return attn__fail(plan->ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "staging tensor");
    attn__copy_strided(tmp, d->stride, b->view.data, b->view.stride, b->view.shape,
                 attn__dtype_size(b->view.dtype));
    st = attn__dev_write(plan->ctx, d->handle, 0, tmp, bytes);
    free(tmp);
    return st;
}

/* Outputs in host memory are written densely on the device and scattered on the way back. */
static attn_status stage_out(attn_plan *plan, const attn__bound *b, int slot, dev_tensor *d)
{
    if (!b->present || b->buffer)
        return stage_in(plan, b, slot, d); /* absent, or a buffer bound in place */
    attn_status st = attn__plan_scratch(plan, slot, dense_bytes(&b->view), &d->handle);
    d->off = 0;
    attn__dense_strides(b->view.shape, d->stride);
    return st;
}

static attn_status read_out(attn_plan *plan, const attn__bound *b, const dev_tensor *d)
{
    if (!b->present || b->buffer)
        return ATTN_OK;
    uint64_t bytes = dense_bytes(&b->view);
    if (b->dense)
        return attn__dev_read(plan->ctx, d->handle, 0, b->view.data, bytes);
    char *tmp = malloc(bytes ? bytes : 1);
    if (!tmp)
        return attn__fail(plan->ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "reading back a tensor");
    attn_status st = attn__dev_read(plan->ctx, d->handle, 0, tmp, bytes);
    if (st == ATTN_OK)
        attn__copy_strided(b->view.data, b->view.stride, tmp, d->stride, b->view.shape,
                     attn__dtype_size(b->view.dtype));
    free(tmp);
    return st;
}

/* The reference backend: its buffers are host memory, so every tensor is a host view. */
static attn_status run_reference(attn_plan *plan, attn__bound *bound, const int32_t *kv_lens)
{
    attn_context *ctx = plan->ctx;
    attn__view views[ATTN__T_COUNT];
    for (int t = 0; t < ATTN__T_COUNT; ++t) {
        views[t] = bound[t].view;
        if (bound[t].present && bound[t].buffer) {
            char *base = ctx->ops->buffer_host_ptr(ctx->dev, bound[t].buffer->handle);
            views[t].data = base + bound[t].elem_off * attn__dtype_size(views[t].dtype);
        }
    }
    attn__ref_attention(&plan->pb, &views[ATTN__T_Q], &views[ATTN__T_K], &views[ATTN__T_V],
                        &views[ATTN__T_O], bound[ATTN__T_MASK].present ? &views[ATTN__T_MASK] : NULL,
                        bound[ATTN__T_LSE].present ? &views[ATTN__T_LSE] : NULL, kv_lens);
    return ATTN_OK;
}

#define SET_TENSOR_PARAMS(kp, pre, dt)                                                        \
    do {                                                                                      \
        (kp).pre##_off = (dt).off;                                                            \
        (kp).pre##_s0 = (dt).stride[0];                                                       \
        (kp).pre##_s1 = (dt).stride[1];                                                       \
        (kp).pre##_s2 = (dt).stride[2];                                                       \
    } while (0)

static attn_status run_one_pass(attn_plan *plan, const attn__bound *bound,
                                const int32_t *kv_lens);

attn_status attn__plan_aux(attn_plan *plan, const int32_t *kv_lens, attn__kparams *kp,
                           void **handle)
{
    *handle = NULL;
    if (!plan->aux)
        return ATTN_OK;
    const uint64_t gen = plan->aux->gen;
    attn_status st = attn__aux_build(plan, kv_lens, plan->info.block_m, plan->aux);
    if (st != ATTN_OK)
        return st;
    if (plan->aux->gen != gen || !plan->scratch[ATTN__S_AUX].handle)
        plan->aux_uploaded = 0;
    const uint64_t bytes = plan->aux->count * sizeof(int32_t);
    if ((st = attn__plan_scratch(plan, ATTN__S_AUX, bytes, handle)))
        return st;
    if (!plan->aux_uploaded) {
        if ((st = attn__dev_write(plan->ctx, *handle, 0, plan->aux->words, bytes)))
            return st;
        plan->aux_uploaded = 1;
    }
    attn__aux_params(plan, plan->aux, kp);
    return ATTN_OK;
}

attn_status attn_plan_run(attn_plan *plan, const attn_run_args *args)
{
    if (!plan)
        return attn__fail_thread(ATTN_ERROR_NULL_POINTER, "attn_plan_run: plan is NULL");
    attn_context *ctx = plan->ctx;
    attn__bound bound[ATTN__T_COUNT];
    attn_status st = attn__validate_run(plan, args, bound);
    if (st != ATTN_OK)
        return st;
    if (args->kv_lens && !plan->pb.has_kv_lens)
        return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                          "args.kv_lens needs a plan created with attn_desc.kv_lens");
    const int32_t *kv_lens = args->kv_lens ? args->kv_lens : plan->kv_lens;
    if (ctx->ops->lang == ATTN__LANG_NONE)
        return run_reference(plan, bound, kv_lens);

    if (plan->info.scheduled)
        return attn__run_scheduled(plan, bound, kv_lens, args);
    /* A one-pass plan that a loop-capped device allows only thanks to its tile map: this
     * run's key lengths give another map, whose busiest query block must fit too. */
    if (plan->spec.sparse && kv_lens &&
        attn__quirks_of(&ctx->info).max_loop_iterations) {
        attn__kparams unused;
        void *h = NULL;
        if ((st = attn__plan_aux(plan, kv_lens, &unused, &h)))
            return st;
        if ((uint64_t)plan->pb.kv_len > attn__keys_cap(plan))
            return attn__run_scheduled(plan, bound, kv_lens, args);
    }
    st = run_one_pass(plan, bound, kv_lens);
    if (st == ATTN_ERROR_OUT_OF_DEVICE_MEMORY || st == ATTN_ERROR_OVER_BUDGET) {
        /* Out of memory in one pass: give the scratch back and let the scheduler split. */
        free_scratch(plan);
        attn__log(ctx, ATTN_LOG_WARN, "one pass does not fit (%s); running scheduled",
                  attn_status_name(st));
        st = attn__run_scheduled(plan, bound, kv_lens, args);
    }
    return st;
}

static attn_status run_one_pass(attn_plan *plan, const attn__bound *bound, const int32_t *kv_lens)
{
    attn_context *ctx = plan->ctx;
    attn_status st;
    const attn__problem *p = &plan->pb;
    dev_tensor q, k, v, o, m, l;
    if ((st = stage_in(plan, &bound[ATTN__T_Q], ATTN__S_Q, &q)) ||
        (st = stage_in(plan, &bound[ATTN__T_K], ATTN__S_K, &k)) ||
        (st = stage_in(plan, &bound[ATTN__T_V], ATTN__S_V, &v)) ||
        (st = stage_in(plan, &bound[ATTN__T_MASK], ATTN__S_MASK, &m)) ||
        (st = stage_out(plan, &bound[ATTN__T_O], ATTN__S_O, &o)) ||
        (st = stage_out(plan, &bound[ATTN__T_LSE], ATTN__S_LSE, &l)))
        return st;
    void *lens = NULL;
    if (kv_lens) {
        uint64_t bytes = (uint64_t)p->batch * sizeof(int32_t);
        if ((st = attn__plan_scratch(plan, ATTN__S_KV_LENS, bytes, &lens)) ||
            (st = attn__dev_write(ctx, lens, 0, kv_lens, bytes)))
            return st;
    }

    attn__kparams kp;
    memset(&kp, 0, sizeof kp);
    SET_TENSOR_PARAMS(kp, q, q);
    kp.q_s3 = q.stride[3];
    SET_TENSOR_PARAMS(kp, k, k);
    kp.k_s3 = k.stride[3];
    SET_TENSOR_PARAMS(kp, v, v);
    kp.v_s3 = v.stride[3];
    SET_TENSOR_PARAMS(kp, o, o);
    kp.o_s3 = o.stride[3];
    if (bound[ATTN__T_MASK].present) {
        /* A broadcast dimension (size 1) reads index 0: stride 0. */
        SET_TENSOR_PARAMS(kp, m, m);
        kp.m_s3 = m.stride[3];
        if (bound[ATTN__T_MASK].view.shape[0] == 1)
            kp.m_s0 = 0;
        if (bound[ATTN__T_MASK].view.shape[1] == 1)
            kp.m_s1 = 0;
    }
    if (bound[ATTN__T_LSE].present)
        SET_TENSOR_PARAMS(kp, l, l);
    kp.batch = p->batch;
    kp.num_heads = p->num_heads;
    kp.num_kv_heads = p->num_kv_heads;
    kp.q_len = p->q_len;
    kp.kv_len = p->kv_len;
    kp.q_total = p->q_len;
    kp.kv_total = p->kv_len;
    kp.causal = p->causal;
    kp.has_kv_lens = kv_lens != NULL;
    kp.want_lse = p->want_lse;
    kp.scale_log2 = (float)(p->scale * 1.4426950408889634);
    kp.heads_total = p->num_heads;
    /* Probabilities need every row's lse: the caller's, or one of our own. */
    const int probs = plan->k_probs && p->feat->probs_present;
    if (probs && !bound[ATTN__T_LSE].present) {
        const uint64_t rows = (uint64_t)(p->batch * p->num_heads * p->q_len);
        if ((st = attn__plan_scratch(plan, ATTN__S_PLSE, rows * 4, &l.handle)))
            return st;
        l.off = 0;
        kp.l_off = 0, kp.l_s2 = 1, kp.l_s1 = p->q_len, kp.l_s0 = p->num_heads * p->q_len;
        kp.want_lse = 1;
    }
    void *aux = NULL;
    if ((st = attn__plan_aux(plan, kv_lens, &kp, &aux)))
        return st;

    attn__launch la;
    memset(&la, 0, sizeof la);
    la.params = &kp;
    la.params_size = sizeof kp;
    void *kt = NULL, *vp = NULL;
    if (plan->decode) {
        /* Split-KV: partial results per key range, then their exact merge. */
        const uint64_t rows = (uint64_t)(p->batch * p->num_heads * p->q_len) * plan->num_splits;
        void *op = NULL, *lp = NULL;
        if ((st = attn__plan_scratch(plan, ATTN__S_OPART, rows * (uint64_t)p->v_head_dim * 4, &op)) ||
            (st = attn__plan_scratch(plan, ATTN__S_LPART, rows * 4, &lp)))
            return st;
        kp.num_splits = plan->num_splits;
        kp.split_len = plan->split_len;
        /* Vulkan: the plan's kernel reads K/V rows in the widest words the head dims
         * allow; a layout whose element stride or offsets do not fit them takes a narrower
         * variant, compiled on first use. */
        void *kdec = plan->k_dec, *kmerge = plan->k_dec_merge;
        const int glsl = ctx->ops->lang == ATTN__LANG_GLSL;
        const int planned = glsl ? kv_vec_widest(plan) : 0;
        const int fits = kv_vec_fit(plan, planned, &kp);
        if (fits != planned) {
            void *kv[2] = {NULL, NULL};
            if ((st = decode_kernels(plan, fits, kv)))
                return st;
            kdec = kv[0], kmerge = kv[1];
        }
        const size_t lanes = plan->info.work_group_size ? plan->info.work_group_size : 1;
        const size_t kl = lanes / plan->dec_dl;
        la.buffers[0] = q.handle;
        la.buffers[1] = k.handle;
        la.buffers[2] = v.handle;
        la.buffers[3] = m.handle;
        la.buffers[4] = lens;
        la.buffers[5] = op;
        la.buffers[6] = lp;
        la.num_buffers = 7;
        /* A group per (key range, group of RC rows), KL partials each (OpenCL: a work-item
         * per partial, all rows). */
        const int64_t rc = plan->dec_rc, drows = p->q_len * (p->num_heads / p->num_kv_heads);
        la.groups[0] = plan->num_splits / kl * (size_t)((drows + rc - 1) / rc);
        la.groups[1] = (size_t)p->num_kv_heads;
        la.groups[2] = (size_t)p->batch;
        la.local[0] = lanes;
        la.local[1] = la.local[2] = 1;
        if ((st = attn__enqueue(ctx, kdec, &la)))
            return st;
        la.buffers[0] = op;
        la.buffers[1] = lp;
        la.buffers[2] = o.handle;
        la.buffers[3] = l.handle;
        la.num_buffers = 4;
        /* OpenCL merges a row per work-item, Vulkan a (row, column) per invocation. */
        const size_t mrows = (size_t)(p->q_len * (p->num_heads / p->num_kv_heads));
        la.local[0] = glsl ? 64 : 1;
        la.groups[0] = glsl ? (mrows * (size_t)p->v_head_dim + 63) / 64 : mrows;
        if ((st = attn__enqueue(ctx, kmerge, &la)))
            return st;
        if ((st = read_out(plan, &bound[ATTN__T_O], &o)) ||
            (st = read_out(plan, &bound[ATTN__T_LSE], &l)))
            return st;
        return ctx->ops->finish(ctx->dev);
    }
    kp.kv_direct = attn__plan_kv_direct(plan, &kp);
    const int packed = plan->info.family == ATTN_FAMILY_CPU && !kp.kv_direct;
    if (packed) {
        /* Pack K and V per (batch, kv head) into f32 tiles of 16 keys (K^T, and V in
         * vd_vec-column blocks), zero-padded to a multiple of 16 keys, so the main loops read
         * each tile sequentially (attn_pack.cl). */
        uint64_t ld = attn__plan_kv_ld(plan, (uint64_t)p->kv_len);
        uint64_t heads = (uint64_t)p->batch * (uint64_t)p->num_kv_heads;
        kp.ld_kv = (int64_t)ld;
        if ((st = attn__plan_scratch(plan, ATTN__S_KT, heads * ld * plan->kd_pad * 4, &kt)) ||
            (st = attn__plan_scratch(plan, ATTN__S_VP, heads * ld * plan->vd_pad * 4, &vp)))
            return st;
        void *pack = NULL;
        if ((st = attn__plan_pack_kernel(plan, &kp, plan->k_pack, &pack)))
            return st;
        la.buffers[0] = k.handle;
        la.buffers[1] = v.handle;
        la.buffers[2] = kt;
        la.buffers[3] = vp;
        la.buffers[4] = aux;
        la.num_buffers = 5;
        la.groups[0] = ld / PACK_GROUP;
        la.groups[1] = (size_t)p->num_kv_heads;
        la.groups[2] = (size_t)p->batch;
        la.local[0] = PACK_GROUP;
        la.local[1] = la.local[2] = 1;
        if ((st = attn__enqueue(ctx, pack, &la)))
            return st;
    }
    la.buffers[0] = q.handle;
    la.buffers[1] = packed ? kt : k.handle;
    la.buffers[2] = packed ? vp : v.handle;
    la.buffers[3] = o.handle;
    la.buffers[4] = m.handle;
    la.buffers[5] = lens;
    la.buffers[6] = l.handle;
    la.buffers[7] = aux;
    la.num_buffers = 8;
    la.groups[0] = (size_t)((p->q_len + plan->info.block_m - 1) / plan->info.block_m);
    la.groups[1] = (size_t)p->num_heads;
    la.groups[2] = (size_t)p->batch;
    la.local[0] = plan->info.work_group_size;
    la.local[1] = la.local[2] = 1;
    if ((st = attn__enqueue(ctx, plan->k_main, &la)))
        return st;
    if (probs && (st = attn__probs_run(plan, &kp, q.handle, k.handle, m.handle, lens, l.handle, aux)))
        return st;
    if ((st = read_out(plan, &bound[ATTN__T_O], &o)) ||
        (st = read_out(plan, &bound[ATTN__T_LSE], &l)))
        return st;
    return ctx->ops->finish(ctx->dev);
}
