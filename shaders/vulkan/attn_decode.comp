#version 450
/* attn_decode.comp — decode (split-KV) for Vulkan: few query rows over many keys. The
 * keys of each (batch, kv head) are split into ranges of split_len keys, one work-group
 * each; inside a range, invocation t of LANES takes keys t, t + LANES, t + 2 * LANES, ...
 * and runs its own online softmax over them for all ROWS rows of the kv head (q_len x
 * heads of the group). Every invocation writes its partial result (normalised O and
 * log-sum-exp) as one of num_splits partials; attn_decode_merge.comp combines them
 * exactly. K and V are read where they are (no packing pass).
 *
 * Why this shape (same algorithm as shaders/opencl/attn_decode.cl, another layout):
 *   - llvmpipe ends every loop of an invocation once the invocation has run 65535 loop
 *     iterations in all, silently (quirk max_loop_iterations, src/core/quirks.c); the
 *     first version of this shader looped over head_dim per key and row, so a range of a
 *     few hundred keys at head_dim 64 ran past the cap and left its partials unwritten.
 *     Here every loop over rows, dims and the keys of a block is unrolled (compile-time
 *     bounds: ROWS, HEAD_DIM, V_HEAD_DIM, KB), so the one dynamic loop is over blocks of
 *     LANES * KB keys and one invocation may cover about 65535 * KB keys per launch;
 *   - lanes never exchange data (no shared memory, no barriers, no subgroup operations),
 *     and each lane's arithmetic is useful: on llvmpipe the LANES invocations are the
 *     lanes of one vector, each with its own key;
 *   - K/V rows load as wide words where the layout allows (KV_VEC below): llvmpipe pays
 *     a loop over the lanes per load instruction and a scalar load per component.
 * Buffers: 0 q, 1 k, 2 v, 3 mask, 4 kv_lens, 5 opart, 6 lpart.
 * Launch: groups (num_splits / LANES, num_kv_heads, batch), local (LANES, 1, 1).
 * Partials: O [batch][kv_heads][num_splits][ROWS][V_HEAD_DIM], lse [..][num_splits][ROWS],
 * f32, natural log; partial index = group * LANES + lane. */
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
#define KB 4 /* keys per invocation per block: one rescale of O per block */
#endif
#define NQ4 ((HEAD_DIM + 3) / 4)
#define NV4 ((V_HEAD_DIM + 3) / 4)

layout(local_size_x = LANES, local_size_x_id = 0, local_size_y_id = 1, local_size_z_id = 2) in;

/* K and V rows as words of several elements (a run-time switch would not do: llvmpipe
 * runs both sides of a branch). There, a load instruction costs a loop over the lanes with
 * one scalar load per component, so the widest components load the most per instruction:
 *   KV_VEC 2: u64vec4 words, 8 floats or 16 halves (shaderInt64; else as KV_VEC 1);
 *   KV_VEC 1: vec4 words, or 4 halves as a uvec2;
 *   KV_VEC 0: element by element, any strides.
 * The planner picks the widest whose element count divides the head dims, and at run time
 * falls back to a narrower one unless K and V have unit element stride and offsets that
 * are multiples of it (KV_EPW elements). */
#ifndef KV_VEC
#define KV_VEC 1
#endif
#if KV_VEC == 2 && !ATTN_VK_INT64
#undef KV_VEC
#define KV_VEC 1
#endif
#if KV_VEC == 2
#define KV_EPW (STORAGE_F16 != 0 ? 16 : 8)
#define KV_WORD u64vec4
ATTN_BUF_RO(1, u64vec4, u64vec4, 5, kw)
ATTN_BUF_RO(2, u64vec4, u64vec4, 5, vw)
#elif KV_VEC == 1 && STORAGE_F16
#define KV_EPW 4
#define KV_WORD uvec2
ATTN_BUF_RO(1, uvec2, uvec2, 3, kw)
ATTN_BUF_RO(2, uvec2, uvec2, 3, vw)
#elif KV_VEC == 1
#define KV_EPW 4
#define KV_WORD vec4
ATTN_BUF_RO(1, vec4, vec4, 4, kw)
ATTN_BUF_RO(2, vec4, vec4, 4, vw)
#else
ATTN_STORE_RO(1, k)
ATTN_STORE_RO(2, v)
#endif
/* Word w_ as KV_EPW / 4 vec4s into dst[at], dst[at + 1], ... */
#if KV_VEC == 2 && STORAGE_F16
#define KV_UNPACK(dst, at, w_)                                                               \
    [[unroll]] for (int u_ = 0; u_ < 4; ++u_) {                                              \
        const uvec2 h_ = unpack32(w_[u_]);                                                   \
        dst[(at) + u_] = vec4(unpackHalf2x16(h_.x), unpackHalf2x16(h_.y));                   \
    }
#elif KV_VEC == 2
#define KV_UNPACK(dst, at, w_)                                                               \
    dst[at] = uintBitsToFloat(uvec4(unpack32(w_.x), unpack32(w_.y)));                        \
    dst[(at) + 1] = uintBitsToFloat(uvec4(unpack32(w_.z), unpack32(w_.w)));
#elif KV_VEC == 1 && STORAGE_F16
#define KV_UNPACK(dst, at, w_) dst[at] = vec4(unpackHalf2x16(w_.x), unpackHalf2x16(w_.y));
#elif KV_VEC == 1
#define KV_UNPACK(dst, at, w_) dst[at] = w_;
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

/* Row `base` of K or V as NQ4 / NV4 vec4s, zero-padded. */
#define ATTN_ROW(dst, n4, dim, name, base, s3)                                               \
    [[unroll]] for (int c = 0; c < n4; ++c) {                                                \
        vec4 x_ = vec4(0.0);                                                                 \
        [[unroll]] for (int e = 0; e < 4; ++e)                                               \
            if (4 * c + e < dim)                                                             \
                x_[e] = LOAD_S(name, (base) + IDX(4 * c + e) * (s3));                        \
        dst[c] = x_;                                                                         \
    }

void main()
{
    const int lane = int(gl_LocalInvocationID.x);
    const int s = int(gl_WorkGroupID.x), hk = int(gl_WorkGroupID.y), b = int(gl_WorkGroupID.z);
    const int G = PN(num_heads) / PN(num_kv_heads);
    const int len = ATTN_KV_LEN(b);
    const int shift = ATTN_CAUSAL_SHIFT(b);
    const bool causal = PN(causal) != 0;
    const int j_begin = s * PN(split_len);
    int j_end = min(len, j_begin + PN(split_len));
    if (causal) /* the last row sees the most keys */
        j_end = min(j_end, PN(q_len) - 1 + shift + 1);

    /* Q rows in base-2 logits, zero-padded to whole vec4s; O accumulators; softmax state. */
    vec4 q4[ROWS * NQ4];
    vec4 a4[ROWS * NV4];
    float m[ROWS], l[ROWS];
    [[unroll]] for (int r = 0; r < ROWS; ++r) {
        const int i = r / G, h = hk * G + r % G;
        const IDX base = PI(q_off) + IDX(b) * PI(q_s0) + IDX(i) * PI(q_s1) + IDX(h) * PI(q_s2);
        vec4 qr[NQ4];
        ATTN_ROW(qr, NQ4, HEAD_DIM, q, base, PI(q_s3))
        [[unroll]] for (int c = 0; c < NQ4; ++c)
            q4[r * NQ4 + c] = qr[c] * p.scale_log2;
        [[unroll]] for (int c = 0; c < NV4; ++c)
            a4[r * NV4 + c] = vec4(0.0);
        m[r] = ATTN_NEG_INF;
        l[r] = 0.0;
    }

    const IDX kbase = PI(k_off) + IDX(b) * PI(k_s0) + IDX(hk) * PI(k_s2);
    const IDX vbase = PI(v_off) + IDX(b) * PI(v_s0) + IDX(hk) * PI(v_s2);
    [[dont_unroll]] for (int j0 = j_begin + lane; j0 < j_end; j0 += LANES * KB) {
        /* Scores of this lane's KB keys of the block (-inf past the range or masked). */
        float sc[ROWS * KB];
        [[unroll]] for (int t = 0; t < KB; ++t) {
            const int j = j0 + t * LANES;
            const bool live = j < j_end;
            const IDX kb = kbase + IDX(live ? j : j_begin) * PI(k_s1);
            vec4 kr[NQ4];
#if KV_VEC
            ATTN_ROW_W(kr, NQ4, kw, kb)
#else
            ATTN_ROW(kr, NQ4, HEAD_DIM, k, kb, PI(k_s3))
#endif
            [[unroll]] for (int r = 0; r < ROWS; ++r) {
                const int i = r / G;
                float x = 0.0;
                [[unroll]] for (int c = 0; c < NQ4; ++c)
                    x += dot(q4[r * NQ4 + c], kr[c]);
                bool ok = live && !(causal && j > i + shift);
#if MASK_KIND != 0
                if (ok) {
                    const int h = hk * G + r % G;
                    const float mv = MASK_LD(PI(m_off) + IDX(b) * PI(m_s0) + IDX(h) * PI(m_s1) +
                                             IDX(i) * PI(m_s2) + IDX(j) * PI(m_s3));
#if MASK_KIND == 1
                    x += mv * float(ATTN_LOG2E);
#else
                    ok = mv != 0.0;
#endif
                }
#endif
                sc[r * KB + t] = ok ? x : ATTN_NEG_INF;
            }
        }
        /* One rescale per row and block; a row with nothing visible yet stays at zero
         * (its reference point is 0 so that no -inf - -inf appears). */
        float pr[ROWS * KB];
        [[unroll]] for (int r = 0; r < ROWS; ++r) {
            float mn = m[r];
            [[unroll]] for (int t = 0; t < KB; ++t)
                mn = max(mn, sc[r * KB + t]);
            const float ref = mn == ATTN_NEG_INF ? 0.0 : mn;
            const float alpha = m[r] == ATTN_NEG_INF ? 0.0 : exp2(m[r] - ref);
            float sum = 0.0;
            [[unroll]] for (int t = 0; t < KB; ++t) {
                const float x = sc[r * KB + t];
                pr[r * KB + t] = x == ATTN_NEG_INF ? 0.0 : exp2(x - ref);
                sum += pr[r * KB + t];
            }
            l[r] = l[r] * alpha + sum;
            m[r] = mn;
            [[unroll]] for (int c = 0; c < NV4; ++c)
                a4[r * NV4 + c] *= alpha;
        }
        [[unroll]] for (int t = 0; t < KB; ++t) {
            const int j = j0 + t * LANES;
            /* Past the range: any in-range row, weighted 0 (pr is 0 there). */
            const IDX vb = vbase + IDX(j < j_end ? j : j_begin) * PI(v_s1);
            vec4 vr[NV4];
#if KV_VEC
            ATTN_ROW_W(vr, NV4, vw, vb)
#else
            ATTN_ROW(vr, NV4, V_HEAD_DIM, v, vb, PI(v_s3))
#endif
            [[unroll]] for (int r = 0; r < ROWS; ++r)
                [[unroll]] for (int c = 0; c < NV4; ++c)
                    a4[r * NV4 + c] = fma(vec4(pr[r * KB + t]), vr[c], a4[r * NV4 + c]);
        }
    }

    const IDX part = IDX(s) * IDX(LANES) + IDX(lane);
    const IDX slot = ((IDX(b) * PI(num_kv_heads) + IDX(hk)) * PI(num_splits) + part) * IDX(ROWS);
    [[unroll]] for (int r = 0; r < ROWS; ++r) {
        const bool any = m[r] != ATTN_NEG_INF && l[r] > 0.0;
        const float inv = any ? 1.0 / l[r] : 0.0;
        [[unroll]] for (int c = 0; c < NV4; ++c)
            [[unroll]] for (int e = 0; e < 4; ++e)
                if (4 * c + e < V_HEAD_DIM)
                    opart_st((slot + IDX(r)) * IDX(V_HEAD_DIM) + IDX(4 * c + e),
                             a4[r * NV4 + c][e] * inv);
        lpart_st(slot + IDX(r), any ? (m[r] + log2(l[r])) * float(ATTN_LN2) : ATTN_NEG_INF);
    }
}
