#version 450
/* attn_decode.comp — decode (split-KV) for Vulkan: few query rows over many keys. The
 * keys of each (batch, kv head) are split into ranges of split_len keys; the ROWS rows of
 * the kv head (q_len x heads of the group) into NRC groups of RC rows; one work-group per
 * (range, row group). Inside it, invocation t of LANES takes keys t, t + LANES,
 * t + 2 * LANES, ... and runs its own online softmax over them for its group's rows, then
 * writes its partial result (normalised O and log-sum-exp) as one of num_splits partials;
 * attn_decode_merge.comp combines them exactly. K and V are read where they are.
 *
 * Why this shape (same algorithm as shaders/opencl/attn_decode.cl, another layout):
 *   - llvmpipe ends every loop of an invocation once the invocation has run 65535 loop
 *     iterations in all, silently (quirk max_loop_iterations, src/core/quirks.c); the
 *     first version of this shader looped over head_dim per key and row, so a range of a
 *     few hundred keys at head_dim 64 ran past the cap and left its partials unwritten.
 *     Here the loops over rows and the keys of a block are unrolled, and so are those over
 *     head dims where K/V load as words (KV_VEC below): the one dynamic loop is then over
 *     blocks of LANES * KB keys. Element by element (KV_VEC 0) the head-dim loops stay
 *     loops, NQ4 + NV4 iterations per key; the planner sizes split_len for that case;
 *   - llvmpipe's compile time grows steeply with the values an invocation keeps live
 *     (d=128: 8 rows of Q and O, 2048 floats, took 86 s at the first dispatch, 2 rows 6 s),
 *     so a group holds RC rows, about 512 floats of Q and O, and re-reads K/V per group;
 *   - lanes never exchange data (no shared memory, no barriers, no subgroup operations),
 *     and each lane's arithmetic is useful: on llvmpipe the LANES invocations are the
 *     lanes of one vector, each with its own key;
 *   - llvmpipe pays a loop over the lanes per load instruction and a scalar load per
 *     component, so K/V rows load in the widest words the layout allows (KV_VEC).
 * Buffers: 0 q, 1 k, 2 v, 3 mask, 4 kv_lens, 5 opart, 6 lpart.
 * Launch: groups (num_splits / LANES * NRC, num_kv_heads, batch), local (LANES, 1, 1).
 * Partials: O [batch][kv_heads][num_splits][ROWS][V_HEAD_DIM], lse [..][num_splits][ROWS],
 * f32, natural log; partial index = range * LANES + lane. */
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : enable
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
#define LANES 8 /* invocations per group, each a partial */
#endif
#ifndef KB
#define KB 1 /* keys per invocation per block: one rescale of O per block */
#endif
#ifndef RC
#define RC ROWS /* rows per group: its invocations hold RC Q rows and O accumulators */
#endif
#define NRC ((ROWS + RC - 1) / RC) /* groups per key range */
#define NQ4 ((HEAD_DIM + 3) / 4)
#define NV4 ((V_HEAD_DIM + 3) / 4)

layout(local_size_x = LANES, local_size_x_id = 0, local_size_y_id = 1, local_size_z_id = 2) in;

/* K and V rows as words of several elements (KV_VEC, attn_kv_words.glsl). Element by
 * element, the head-dim loops stay loops (one per key each): unrolled, every element load
 * is a loop over the lanes of its own, and llvmpipe takes minutes to compile a d=256
 * kernel. One key per block there. */
#define ATTN_KV_SLOT_K 1
#define ATTN_KV_SLOT_V 2
#include "attn_kv_words.glsl"
#if !KV_VEC
#undef KB
#define KB 1
#endif
#if KV_VEC
/* Row `base` (a multiple of KV_EPW) of K or V as n4 vec4s. */
#define ATTN_ROW_W(dst, n4, name, base)                                                      \
    [[unroll]] for (int c = 0; c < (n4) / (KV_EPW / 4); ++c) {                               \
        const KV_WORD w = name##_ld((base) / IDX(KV_EPW) + IDX(c));                          \
        KV_UNPACK(dst, c * (KV_EPW / 4), w)                                                  \
    }
#endif
ATTN_STORE_RO(0, q)
ATTN_MASK_RO(3)
ATTN_BUF_RO(4, int, int, 2, kv_lens)
ATTN_BUF_WO(5, float, float, 2, opart)
ATTN_BUF_WO(6, float, float, 2, lpart)

/* Element e (< dim) of a row of K or V, any element stride, zero past dim. */
#define ATTN_ELEM(name, base, s3, e, dim) ((e) < (dim) ? LOAD_S(name, (base) + IDX(e) * (s3)) : 0.0)

void main()
{
    const int lane = int(gl_LocalInvocationID.x);
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

    /* The group's rows r0 .. r0 + RC - 1 (those past ROWS compute row r0 and are not
     * written): Q in base-2 logits, zero-padded to whole vec4s; O accumulators; softmax. */
    vec4 q4[RC * NQ4];
    vec4 a4[RC * NV4];
    float m[RC], l[RC];
    int row_i[RC];
    [[unroll]] for (int rr = 0; rr < RC; ++rr) {
        const int r = r0 + rr < ROWS ? r0 + rr : r0;
        const int i = r / G, h = hk * G + r % G;
        row_i[rr] = i;
        const IDX base = PI(q_off) + IDX(b) * PI(q_s0) + IDX(i) * PI(q_s1) + IDX(h) * PI(q_s2);
        [[unroll]] for (int c = 0; c < NQ4; ++c)
            q4[rr * NQ4 + c] = vec4(ATTN_ELEM(q, base, PI(q_s3), 4 * c, HEAD_DIM),
                                    ATTN_ELEM(q, base, PI(q_s3), 4 * c + 1, HEAD_DIM),
                                    ATTN_ELEM(q, base, PI(q_s3), 4 * c + 2, HEAD_DIM),
                                    ATTN_ELEM(q, base, PI(q_s3), 4 * c + 3, HEAD_DIM)) *
                               p.scale_log2;
        [[unroll]] for (int c = 0; c < NV4; ++c)
            a4[rr * NV4 + c] = vec4(0.0);
        m[rr] = ATTN_NEG_INF;
        l[rr] = 0.0;
    }

    const IDX kbase = PI(k_off) + IDX(b) * PI(k_s0) + IDX(hk) * PI(k_s2);
    const IDX vbase = PI(v_off) + IDX(b) * PI(v_s0) + IDX(hk) * PI(v_s2);
    [[dont_unroll]] for (int j0 = j_begin + lane; j0 < j_end; j0 += LANES * KB) {
        /* Scores of this lane's KB keys of the block (-inf past the range or masked). */
        float sc[RC * KB];
        [[unroll]] for (int t = 0; t < KB; ++t) {
            const int j = j0 + t * LANES;
            const bool live = j < j_end;
            const IDX kb = kbase + IDX(live ? j : j_begin) * PI(k_s1);
            float x[RC];
#if KV_VEC
            vec4 kr[NQ4];
            ATTN_ROW_W(kr, NQ4, kw, kb)
            [[unroll]] for (int rr = 0; rr < RC; ++rr) {
                x[rr] = 0.0;
                [[unroll]] for (int c = 0; c < NQ4; ++c)
                    x[rr] += dot(q4[rr * NQ4 + c], kr[c]);
            }
#else
            [[unroll]] for (int rr = 0; rr < RC; ++rr)
                x[rr] = 0.0;
            [[dont_unroll]] for (int c = 0; c < NQ4; ++c) {
                const vec4 kr = vec4(ATTN_ELEM(k, kb, PI(k_s3), 4 * c, HEAD_DIM),
                                     ATTN_ELEM(k, kb, PI(k_s3), 4 * c + 1, HEAD_DIM),
                                     ATTN_ELEM(k, kb, PI(k_s3), 4 * c + 2, HEAD_DIM),
                                     ATTN_ELEM(k, kb, PI(k_s3), 4 * c + 3, HEAD_DIM));
                [[unroll]] for (int rr = 0; rr < RC; ++rr)
                    x[rr] += dot(q4[rr * NQ4 + c], kr);
            }
#endif
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
            const int j = j0 + t * LANES;
            /* Past the range: any in-range row, weighted 0 (pr is 0 there). */
            const IDX vb = vbase + IDX(j < j_end ? j : j_begin) * PI(v_s1);
#if KV_VEC
            vec4 vr[NV4];
            ATTN_ROW_W(vr, NV4, vw, vb)
            [[unroll]] for (int rr = 0; rr < RC; ++rr)
                [[unroll]] for (int c = 0; c < NV4; ++c)
                    a4[rr * NV4 + c] = fma(vec4(pr[rr * KB + t]), vr[c],
                                           t == 0 ? a4[rr * NV4 + c] * alpha[rr] : a4[rr * NV4 + c]);
#else
            [[dont_unroll]] for (int c = 0; c < NV4; ++c) {
                const vec4 vr = vec4(ATTN_ELEM(v, vb, PI(v_s3), 4 * c, V_HEAD_DIM),
                                     ATTN_ELEM(v, vb, PI(v_s3), 4 * c + 1, V_HEAD_DIM),
                                     ATTN_ELEM(v, vb, PI(v_s3), 4 * c + 2, V_HEAD_DIM),
                                     ATTN_ELEM(v, vb, PI(v_s3), 4 * c + 3, V_HEAD_DIM));
                [[unroll]] for (int rr = 0; rr < RC; ++rr)
                    a4[rr * NV4 + c] = fma(vec4(pr[rr * KB + t]), vr, a4[rr * NV4 + c] * alpha[rr]);
            }
#endif
        }
    }

    const IDX part = IDX(s) * IDX(LANES) + IDX(lane);
    const IDX slot = ((IDX(b) * PI(num_kv_heads) + IDX(hk)) * PI(num_splits) + part) * IDX(ROWS);
    [[unroll]] for (int rr = 0; rr < RC; ++rr) {
        if (r0 + rr >= ROWS)
            break;
        const IDX r = IDX(r0 + rr);
        const bool any = m[rr] != ATTN_NEG_INF && l[rr] > 0.0;
        const float inv = any ? 1.0 / l[rr] : 0.0;
        [[unroll]] for (int c = 0; c < NV4; ++c)
            [[unroll]] for (int e = 0; e < 4; ++e)
                if (4 * c + e < V_HEAD_DIM)
                    opart_st((slot + r) * IDX(V_HEAD_DIM) + IDX(4 * c + e), a4[rr * NV4 + c][e] * inv);
        lpart_st(slot + r, any ? (m[rr] + log2(l[rr])) * float(ATTN_LN2) : ATTN_NEG_INF);
    }
}
