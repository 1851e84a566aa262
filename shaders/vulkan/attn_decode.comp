#version 450
/* attn_decode.comp — decode (split-KV) for Vulkan: few query rows over many keys. The
 * keys of each (batch, kv head) are split into ranges of split_len keys; the ROWS rows of
 * the kv head (q_len x heads of the group) into NRC groups of RC rows; one work-group of
 * LANES invocations per (range, row group). The lanes form KL = LANES / DL clusters of DL
 * lanes: cluster c takes keys c, c + KL, c + 2 KL, ... of the range, KB at a time, and the
 * DL lanes of a cluster split each K and V row between them (lane d owns words d, d + DL,
 * ... of the row, KV_VEC words, attn_kv_words.glsl). A lane multiplies its words with its
 * part of the Q rows; DL - 1 shuffles (a butterfly) add the parts into the score, which
 * every lane of the cluster then holds bit for bit (addition is commutative), so the
 * cluster runs one online softmax and each lane keeps the O columns of its words. Each
 * cluster writes its partial result (normalised O and log-sum-exp) as one of num_splits
 * partials; attn_decode_merge.comp combines them exactly. K and V are read where they are.
 *
 * Why this shape (same algorithm as shaders/opencl/attn_decode.cl, another layout):
 *   - llvmpipe runs the LANES invocations as the lanes of one vector and pays a loop over
 *     the lanes, with a scalar load and a branch per component, for every load
 *     instruction; K and V rows therefore load in the widest words the layout allows, and
 *     every byte once per group. With a whole row per lane (DL 1, the earlier layout) a
 *     lane held all of Q and O, and llvmpipe's compile time grows steeply with the values
 *     an invocation keeps live (head_dim 128, 8 rows: 86 s at the first dispatch), so rows
 *     went to several groups that each read K/V again. Split over DL lanes, a lane holds
 *     RC x (HEAD_DIM + V_HEAD_DIM) / DL floats, and one group takes all the rows;
 *   - the loads of a row follow each other closely, but the next row is far away (the
 *     rows of a kv head are num_kv_heads rows apart) and the loop between them is long, so
 *     few cache misses overlap; with TOUCH each lane first reads one 32-bit word per cache
 *     line of the next block's keys (perf: the first load of each line had most of the
 *     samples);
 *   - llvmpipe ends every loop of an invocation once the invocation has run 65535 loop
 *     iterations in all, silently (quirk max_loop_iterations, src/core/quirks.c): the
 *     loops over rows, keys of a block and words are unrolled, and the one dynamic loop is
 *     over blocks of KL * KB keys; the planner sizes split_len for the cap.
 * Without subgroup shuffles DL is 1: a lane owns whole rows, and no lane exchanges data.
 * Buffers: 0 q, 1 k, 2 v, 3 mask, 4 kv_lens, 5 opart, 6 lpart.
 * Launch: groups (num_splits / KL * NRC, num_kv_heads, batch), local (LANES, 1, 1).
 * Partials: O [batch][kv_heads][num_splits][ROWS][V_HEAD_DIM], lse [..][num_splits][ROWS],
 * f32, natural log; partial index = range * KL + cluster. */
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : enable
#extension GL_KHR_shader_subgroup_shuffle : enable
#include "attn_common.glsl"

#ifndef HEAD_DIM
#define HEAD_DIM 64
#endif
#ifndef V_HEAD_DIM
#define V_HEAD_DIM HEAD_DIM
#endif
#ifndef ROWS
#define ROWS 4 /* query rows per kv head: q_len * num_heads / num_kv_heads, exactly */
#endif
#ifndef LANES
#define LANES 8 /* invocations per group: one subgroup */
#endif
#ifndef DL
#define DL 8 /* lanes per key (a power of 2 dividing LANES; 1 without subgroup shuffles) */
#endif
#ifndef KB
#define KB 1 /* keys per cluster per block: one rescale of O per block */
#endif
#ifndef RC
#define RC ROWS /* rows per group */
#endif
#ifndef TOUCH
#define TOUCH 0 /* read ahead one word per cache line of K/V (CPU-class devices) */
#endif
#define KL (LANES / DL) /* clusters: keys taken at once, partials per group */
#define NRC ((ROWS + RC - 1) / RC) /* groups per key range */

layout(local_size_x = LANES, local_size_x_id = 0, local_size_y_id = 1, local_size_z_id = 2) in;

#define ATTN_KV_SLOT_K 1
#define ATTN_KV_SLOT_V 2
#include "attn_kv_words.glsl"
#if KV_VEC
#define EPW KV_EPW
#else
#define EPW 1
#endif
#define NWK ((HEAD_DIM + EPW - 1) / EPW) /* words of a K row */
#define NWV ((V_HEAD_DIM + EPW - 1) / EPW)
#define WK ((NWK + DL - 1) / DL) /* words of a K row per lane */
#define WV ((NWV + DL - 1) / DL)
#define EK (WK * EPW) /* elements of a K row per lane */
#define EV (WV * EPW)
ATTN_STORE_RO(0, q)
ATTN_MASK_RO(3)
ATTN_BUF_RO(4, int, int, 2, kv_lens)
ATTN_BUF_WO(5, float, float, 2, opart)
ATTN_BUF_WO(6, float, float, 2, lpart)
#if TOUCH && KV_VEC
/* K and V again, as 32-bit words: the read-ahead loads one per cache line. */
ATTN_BUF_RO(ATTN_KV_SLOT_K, uint, uint, 2, ktouch)
ATTN_BUF_RO(ATTN_KV_SLOT_V, uint, uint, 2, vtouch)
#define WORD_U32 (EPW * (STORAGE_F16 != 0 ? 2 : 4) / 4) /* 32-bit words per K/V word */
/* Whether word g of a row starts a 64-byte line (rows start on one where they can). */
#define TOUCHES(g) ((g) * WORD_U32 * 4 % 64 < WORD_U32 * 4)
#endif

/* Adds x over the DL lanes of the cluster, the same sum in each lane. Written out, not as
 * a loop: llvmpipe keeps a loop whose count it cannot see, and its iterations count
 * against the cap above. */
#if DL > 64
#error "DL above 64"
#endif
#if DL > 1
#define ATTN_BF_(x, o) if (DL > (o)) x += subgroupShuffleXor(x, uint(o));
#else
#define ATTN_BF_(x, o) /* no shuffles in the SPIR-V: the device may lack them */
#endif
#define ATTN_BUTTERFLY(x) ATTN_BF_(x, 32) ATTN_BF_(x, 16) ATTN_BF_(x, 8) ATTN_BF_(x, 4) ATTN_BF_(x, 2) ATTN_BF_(x, 1)

/* Element e (< dim) of a row of K, V or Q, any element stride, zero past dim. */
#define ATTN_ELEM(name, base, s3, e, dim) ((e) < (dim) ? LOAD_S(name, (base) + IDX(e) * (s3)) : 0.0)

/* This lane's elements of the row at `base` (elements of the buffer): words dl, dl + DL,
 * ... of the row's n_w, w_n words' elements into dst (zero past the row; the test folds
 * away where every lane has w_n words). */
#if KV_VEC
#define ATTN_LANE_ROW(dst, name, base, dim, n_w, w_n)                                        \
    [[unroll]] for (int w = 0; w < (w_n); ++w) {                                             \
        const int g = dl + DL * w, gl = (n_w) % DL == 0 ? g : min(g, (n_w) - 1);             \
        const KV_WORD wd = name##w_ld((base) / IDX(EPW) + IDX(gl));                          \
        vec4 u4[EPW / 4];                                                                    \
        KV_UNPACK(u4, 0, wd)                                                                 \
        [[unroll]] for (int e = 0; e < EPW; ++e)                                             \
            dst[w * EPW + e] = (n_w) % DL == 0 || g < (n_w) ? u4[e / 4][e % 4] : 0.0;        \
    }
#else
#define ATTN_LANE_ROW(dst, name, base, dim, n_w, w_n)                                        \
    [[unroll]] for (int w = 0; w < (w_n); ++w)                                               \
        dst[w] = ATTN_ELEM(name, base, PI(name##_s3), dl + DL * w, dim);
#endif

void main()
{
    const int lane = int(gl_LocalInvocationID.x);
    const int ks = lane / DL, dl = lane % DL;
    const int hk = int(gl_WorkGroupID.y), b = int(gl_WorkGroupID.z);
    const int s = int(gl_WorkGroupID.x) / NRC, r0 = int(gl_WorkGroupID.x) % NRC * RC;
    const int G = PN(num_heads) / PN(num_kv_heads);
    const int len = ATTN_KV_LEN(b);
    const int shift = ATTN_CAUSAL_SHIFT(b);
    const bool causal = PN(causal) != 0;
    const int j_begin = s * PN(split_len);
    int j_end = min(len, j_begin + PN(split_len));
    if (causal) /* the group's last row sees the most keys */
        j_end = min(j_end, (min(r0 + RC, ROWS) - 1) / G + shift + 1);

    /* The lane's part of the group's rows r0 .. r0 + RC - 1 (those past ROWS compute row
     * r0 and are not written): Q in base-2 logits, zero past the row; O accumulators;
     * the cluster's softmax state. */
    float qv[RC * EK];
    float acc[RC * EV];
    float m[RC], l[RC];
    int row_i[RC];
    [[unroll]] for (int rr = 0; rr < RC; ++rr) {
        const int r = r0 + rr < ROWS ? r0 + rr : r0;
        const int i = r / G, h = hk * G + r % G;
        row_i[rr] = i;
        const IDX base = PI(q_off) + IDX(b) * PI(q_s0) + IDX(i) * PI(q_s1) + IDX(h) * PI(q_s2);
        [[unroll]] for (int w = 0; w < WK; ++w)
            [[unroll]] for (int e = 0; e < EPW; ++e)
                qv[rr * EK + w * EPW + e] =
                    ATTN_ELEM(q, base, PI(q_s3), (dl + DL * w) * EPW + e, HEAD_DIM) * p.scale_log2;
        [[unroll]] for (int e = 0; e < EV; ++e)
            acc[rr * EV + e] = 0.0;
        m[rr] = ATTN_NEG_INF;
        l[rr] = 0.0;
    }

    const IDX kbase = PI(k_off) + IDX(b) * PI(k_s0) + IDX(hk) * PI(k_s2);
    const IDX vbase = PI(v_off) + IDX(b) * PI(v_s0) + IDX(hk) * PI(v_s2);
#if TOUCH && KV_VEC
    uint touched = 0u;
#endif
    [[dont_unroll]] for (int j0 = j_begin + ks; j0 < j_end; j0 += KL * KB) {
#if TOUCH && KV_VEC
        [[unroll]] for (int t = 0; t < KB; ++t) {
            const int jn = min(j0 + (KB + t) * KL, len - 1); /* the next block's key t */
            const IDX kw0 = (kbase + IDX(jn) * PI(k_s1)) / IDX(EPW) * IDX(WORD_U32);
            const IDX vw0 = (vbase + IDX(jn) * PI(v_s1)) / IDX(EPW) * IDX(WORD_U32);
            [[unroll]] for (int w = 0; w < WK; ++w)
                if (TOUCHES(dl + DL * w) && dl + DL * w < NWK)
                    touched ^= ktouch_ld(kw0 + IDX((dl + DL * w) * WORD_U32));
            [[unroll]] for (int w = 0; w < WV; ++w)
                if (TOUCHES(dl + DL * w) && dl + DL * w < NWV)
                    touched ^= vtouch_ld(vw0 + IDX((dl + DL * w) * WORD_U32));
        }
#endif
        /* Scores of the cluster's KB keys of the block (-inf past the range or masked). */
        float sc[RC * KB];
        [[unroll]] for (int t = 0; t < KB; ++t) {
            const int j = j0 + t * KL;
            const bool live = j < j_end;
            float kr[EK];
            ATTN_LANE_ROW(kr, k, kbase + IDX(live ? j : j_begin) * PI(k_s1), HEAD_DIM, NWK, WK)
            float x[RC];
            [[unroll]] for (int rr = 0; rr < RC; ++rr) {
                x[rr] = 0.0;
                [[unroll]] for (int e = 0; e < EK; ++e)
                    x[rr] = fma(qv[rr * EK + e], kr[e], x[rr]);
                ATTN_BUTTERFLY(x[rr])
            }
            [[unroll]] for (int rr = 0; rr < RC; ++rr) {
                const int i = row_i[rr];
                bool ok = live && !(causal && j > i + shift);
#if MASK_KIND != 0
                if (ok) {
                    const int r = r0 + rr < ROWS ? r0 + rr : r0;
                    const int h = hk * G + r % G;
                    const float mv = MASK_LD(PI(m_off) + IDX(b) * PI(m_s0) + IDX(h) * PI(m_s1) +
                                             IDX(i) * PI(m_s2) + IDX(j) * PI(m_s3));
#if MASK_KIND == 1
                    x[rr] += mv * float(ATTN_LOG2E);
#else
                    ok = mv != 0.0;
#endif
                }
#endif
                sc[rr * KB + t] = ok ? x[rr] : ATTN_NEG_INF;
            }
        }
        /* One rescale per row and block (folded into the first key's update); a row with
         * nothing visible yet stays at zero (reference point 0: no -inf - -inf). */
        float pr[RC * KB], alpha[RC];
        [[unroll]] for (int rr = 0; rr < RC; ++rr) {
            float mn = m[rr];
            [[unroll]] for (int t = 0; t < KB; ++t)
                mn = max(mn, sc[rr * KB + t]);
            const float ref = mn == ATTN_NEG_INF ? 0.0 : mn;
            alpha[rr] = m[rr] == ATTN_NEG_INF ? 0.0 : exp2(m[rr] - ref);
            float sum = 0.0;
            [[unroll]] for (int t = 0; t < KB; ++t) {
                const float y = sc[rr * KB + t];
                pr[rr * KB + t] = y == ATTN_NEG_INF ? 0.0 : exp2(y - ref);
                sum += pr[rr * KB + t];
            }
            l[rr] = l[rr] * alpha[rr] + sum;
            m[rr] = mn;
        }
        [[unroll]] for (int t = 0; t < KB; ++t) {
            const int j = j0 + t * KL;
            /* Past the range: any in-range row, weighted 0 (pr is 0 there). */
            float vr[EV];
            ATTN_LANE_ROW(vr, v, vbase + IDX(j < j_end ? j : j_begin) * PI(v_s1), V_HEAD_DIM, NWV, WV)
            [[unroll]] for (int rr = 0; rr < RC; ++rr)
                [[unroll]] for (int e = 0; e < EV; ++e)
                    acc[rr * EV + e] = fma(pr[rr * KB + t], vr[e],
                                           t == 0 ? acc[rr * EV + e] * alpha[rr] : acc[rr * EV + e]);
        }
    }

    const IDX part = IDX(s) * IDX(KL) + IDX(ks);
    const IDX slot = ((IDX(b) * PI(num_kv_heads) + IDX(hk)) * PI(num_splits) + part) * IDX(ROWS);
    [[unroll]] for (int rr = 0; rr < RC; ++rr) {
        if (r0 + rr >= ROWS)
            break;
        const IDX r = IDX(r0 + rr);
        const bool any = m[rr] != ATTN_NEG_INF && l[rr] > 0.0;
        const float inv = any ? 1.0 / l[rr] : 0.0;
        [[unroll]] for (int w = 0; w < WV; ++w)
            [[unroll]] for (int e = 0; e < EPW; ++e) {
                const int c = (dl + DL * w) * EPW + e;
                if (c < V_HEAD_DIM)
                    opart_st((slot + r) * IDX(V_HEAD_DIM) + IDX(c), acc[rr * EV + w * EPW + e] * inv);
            }
        if (dl == 0)
            lpart_st(slot + r, any ? (m[rr] + log2(l[rr])) * float(ATTN_LN2) : ATTN_NEG_INF);
    }
#if TOUCH && KV_VEC
    if (PN(num_splits) < 0) /* never: keeps the read-ahead loads */
        lpart_st(slot, float(touched));
#endif
}
