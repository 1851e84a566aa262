#version 450
/* attn_probs.comp — the softmax probabilities of a run (attn_desc.want_probs), as
 * shaders/opencl/attn_probs.cl: p(i, j) = 2^(s2(i, j) - lse2(i)) for visible keys, else 0,
 * the score formed exactly as the attention shaders form it (RoPE, scale, soft-cap, mask,
 * ALiBi, T5; the tile map for the pattern) and lse the row's log-sum-exp the attention
 * shader just wrote. One invocation per (row, output head, batch), looping over the keys:
 * for problems a person inspects. The head-dim loops are unrolled, so an invocation's loop
 * iterations stay near 2 per key (llvmpipe's 65535 cap; the planner checks kv_len).
 * Buffers: 0 q, 1 k, 2 mask, 3 kv_lens, 4 lse, 5 probs (f32), 6 aux. Output strides in
 * o_*; num_splits: the one head written, or -1 for every head.
 * Launch: groups (q_len, heads written, batch), local (1, 1, 1). */
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : enable
#include "attn_common.glsl"

#ifndef HEAD_DIM
#define HEAD_DIM 64
#endif

layout(local_size_x = 1, local_size_x_id = 0, local_size_y_id = 1, local_size_z_id = 2) in;

ATTN_STORE_RO(0, q)
ATTN_STORE_RO(1, k)
ATTN_MASK_RO(2)
ATTN_BUF_RO(3, int, int, 2, kv_lens)
ATTN_BUF_RO(4, float, float, 2, lse)
ATTN_BUF_WO(5, float, float, 2, pr)
#define ATTN_AUX_SLOT 6
#include "attn_features.glsl"

void main()
{
    const int i = int(gl_WorkGroupID.x);
    const int ho = int(gl_WorkGroupID.y);
    const int b = int(gl_WorkGroupID.z);
    const int h = PN(num_splits) >= 0 ? PN(num_splits) : ho;
    const int hk = h / (PN(num_heads) / PN(num_kv_heads));
    const int len = ATTN_KV_LEN(b);
    const int shift = ATTN_CAUSAL_SHIFT(b);
    const bool causal = PN(causal) != 0;
    const float l2 = lse_ld(PI(l_off) + IDX(b) * PI(l_s0) + IDX(h) * PI(l_s1) + IDX(i) * PI(l_s2)) *
                     float(ATTN_LOG2E);
    const IDX rb = PI(o_off) + IDX(b) * PI(o_s0) + IDX(ho) * PI(o_s1) + IDX(i) * PI(o_s2);
    [[dont_unroll]] for (int j = 0; j < PN(kv_len); ++j)
        pr_st(rb + IDX(j) * PI(o_s3), 0.0);
    if (l2 == ATTN_NEG_INF)
        return;
    float qr[HEAD_DIM];
    const IDX qb = PI(q_off) + IDX(b) * PI(q_s0) + IDX(i) * PI(q_s1) + IDX(h) * PI(q_s2);
    [[unroll]] for (int d = 0; d < HEAD_DIM; ++d)
#if POS_ROPE
        qr[d] = ATTN_ROPE_LOAD(q, qb, PI(q_s3), d, PN(q_pos) + i, PI(a_rope_q)) * p.scale_log2;
#else
        qr[d] = LOAD_S(q, qb + IDX(d) * PI(q_s3)) * p.scale_log2;
#endif
#if POS_ALIBI || POS_T5
    const int gh = PN(h_pos) + h;
    const int qpos = i + shift; /* keys counted from k_pos */
#endif
    const IDX kb = PI(k_off) + IDX(b) * PI(k_s0) + IDX(hk) * PI(k_s2);
#if SPARSE
    const int i0 = i / PN(map_qb) * PN(map_qb);
    const ivec2 runs = attn_runs(b, h, i0);
    [[dont_unroll]] for (int ru = runs.x; ru < runs.y; ++ru) {
        int tbits;
        const ivec2 keys = attn_run_keys(ru, len, tbits);
        const int vis = attn_row_bits(tbits, i - i0);
    [[dont_unroll]] for (int j = keys.x; j < keys.y; ++j) {
        if (((vis >> ((PN(k_pos) + j) & 15)) & 1) == 0)
            continue;
#else
    [[dont_unroll]] for (int j = 0; j < len; ++j) {
#endif
        if (causal && j > i + shift)
            continue;
        float x = 0.0;
        [[unroll]] for (int d = 0; d < HEAD_DIM; ++d)
#if POS_ROPE
            x = fma(qr[d], ATTN_ROPE_LOAD(k, kb + IDX(j) * PI(k_s1), PI(k_s3), d, PN(k_pos) + j,
                                          PI(a_rope_k)), x);
#else
            x = fma(qr[d], LOAD_S(k, kb + IDX(j) * PI(k_s1) + IDX(d) * PI(k_s3)), x);
#endif
#if POS_SOFTCAP
        x = attn_softcap(x);
#endif
#if POS_ALIBI || POS_T5
        x += attn_pos_bias(gh, qpos, j);
#endif
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
        pr_st(rb + IDX(j) * PI(o_s3), exp2(x - l2));
    }
#if SPARSE
    }
#endif
}
