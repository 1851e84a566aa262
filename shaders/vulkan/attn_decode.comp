#version 450
/* attn_decode.comp — decode (split-KV); mirrors attn_decode in shaders/opencl/attn_decode.cl.
 * The keys of each (batch, kv head) are split into num_splits ranges, one invocation
 * each; every invocation owns all the rows of its kv head (q_len x heads of the group, at
 * most MAX_ROWS), reads K and V once from their storage and writes a partial result
 * (normalised O and log-sum-exp) that attn_decode_merge.comp combines exactly.
 * Buffers: 0 q, 1 k, 2 v, 3 mask, 4 kv_lens, 5 opart, 6 lpart.
 * Launch: groups (num_splits, num_kv_heads, batch), local (1, 1, 1).
 * Partials: O [batch][kv_heads][splits][rows][V_HEAD_DIM], lse [..][splits][rows], f32.
 * NOT EMBEDDED YET (meson.build): wrong results on llvmpipe for head_dim != 32, cause not
 * found; the planner falls back to the prefill kernels while the JIT does not find it. */
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : enable
#include "attn_common.glsl"

#ifndef HEAD_DIM
#define HEAD_DIM 64
#endif
#ifndef V_HEAD_DIM
#define V_HEAD_DIM HEAD_DIM
#endif
#ifndef MAX_ROWS
#define MAX_ROWS 16
#endif

layout(local_size_x = 1, local_size_x_id = 0, local_size_y_id = 1, local_size_z_id = 2) in;

ATTN_STORE_RO(0, q)
ATTN_STORE_RO(1, k)
ATTN_STORE_RO(2, v)
ATTN_MASK_RO(3)
ATTN_BUF_RO(4, int, int, 2, kv_lens)
ATTN_BUF_WO(5, float, float, 2, opart)
ATTN_BUF_WO(6, float, float, 2, lpart)

void main()
{
    const int s = int(gl_GlobalInvocationID.x), hk = int(gl_GlobalInvocationID.y);
    const int b = int(gl_GlobalInvocationID.z);
    const int G = PN(num_heads) / PN(num_kv_heads);
    const int rows = min(PN(q_len) * G, MAX_ROWS);
    const int len = ATTN_KV_LEN(b);
    const int shift = ATTN_CAUSAL_SHIFT(b);
    const bool causal = PN(causal) != 0;
    const int j_begin = s * PN(split_len);
    int j_end = min(len, j_begin + PN(split_len));
    if (causal) /* the last row sees the most keys */
        j_end = min(j_end, PN(q_len) - 1 + shift + 1);

    float qr[MAX_ROWS * HEAD_DIM];
    float acc[MAX_ROWS * V_HEAD_DIM];
    float m[MAX_ROWS], l[MAX_ROWS];
    for (int r = 0; r < rows; ++r) {
        const int i = r / G, h = hk * G + r % G;
        const IDX base = PI(q_off) + IDX(b) * PI(q_s0) + IDX(i) * PI(q_s1) + IDX(h) * PI(q_s2);
        for (int d = 0; d < HEAD_DIM; ++d)
            qr[r * HEAD_DIM + d] = LOAD_S(q, base + IDX(d) * PI(q_s3)) * p.scale_log2;
        for (int d = 0; d < V_HEAD_DIM; ++d)
            acc[r * V_HEAD_DIM + d] = 0.0;
        m[r] = ATTN_NEG_INF;
        l[r] = 0.0;
    }

    float kt[HEAD_DIM], vt[V_HEAD_DIM];
    for (int j = j_begin; j < j_end; ++j) {
        const IDX kb = PI(k_off) + IDX(b) * PI(k_s0) + IDX(j) * PI(k_s1) + IDX(hk) * PI(k_s2);
        const IDX vb = PI(v_off) + IDX(b) * PI(v_s0) + IDX(j) * PI(v_s1) + IDX(hk) * PI(v_s2);
        for (int d = 0; d < HEAD_DIM; ++d)
            kt[d] = LOAD_S(k, kb + IDX(d) * PI(k_s3));
        for (int d = 0; d < V_HEAD_DIM; ++d)
            vt[d] = LOAD_S(v, vb + IDX(d) * PI(v_s3));
        for (int r = 0; r < rows; ++r) {
            const int i = r / G, h = hk * G + r % G;
            if (causal && j > i + shift)
                continue;
            float x = 0.0;
            for (int d = 0; d < HEAD_DIM; ++d)
                x = fma(qr[r * HEAD_DIM + d], kt[d], x);
#if MASK_KIND != 0
            const float mv = MASK_LD(PI(m_off) + IDX(b) * PI(m_s0) + IDX(h) * PI(m_s1) +
                                     IDX(i) * PI(m_s2) + IDX(j) * PI(m_s3));
#if MASK_KIND == 1
            x += mv * float(ATTN_LOG2E);
#else
            if (mv == 0.0)
                continue;
#endif
#endif
            if (x == ATTN_NEG_INF)
                continue;
            const float mn = max(m[r], x);
            const float alpha = exp2(m[r] - mn), pj = exp2(x - mn);
            l[r] = l[r] * alpha + pj;
            for (int d = 0; d < V_HEAD_DIM; ++d)
                acc[r * V_HEAD_DIM + d] = fma(pj, vt[d], acc[r * V_HEAD_DIM + d] * alpha);
            m[r] = mn;
        }
    }

    const IDX slot = ((IDX(b) * PI(num_kv_heads) + IDX(hk)) * PI(num_splits) + IDX(s)) * IDX(rows);
    for (int r = 0; r < rows; ++r) {
        const float inv = l[r] > 0.0 ? 1.0 / l[r] : 0.0;
        for (int d = 0; d < V_HEAD_DIM; ++d)
            opart_st((slot + IDX(r)) * IDX(V_HEAD_DIM) + IDX(d), acc[r * V_HEAD_DIM + d] * inv);
        lpart_st(slot + IDX(r), l[r] > 0.0 ? (m[r] + log2(l[r])) * float(ATTN_LN2) : ATTN_NEG_INF);
    }
}
