#version 450
/* attn_fwd_cpu.comp — forward attention for CPU-class devices (llvmpipe and other CPU
 * Vulkan drivers). Mirrors shaders/opencl/attn_fwd_cpu.cl: an invocation owns BLOCK_M
 * query rows of one (batch, head); scores for 16 keys are four vec4 built from broadcast
 * FMAs against K^T (packed by attn_pack_kv.comp), so every K vector serves all BLOCK_M
 * rows; P·V walks keys outside and vec4s of v_head_dim inside, so every V vector serves
 * all rows. Online softmax in base 2 (FlashAttention recurrence).
 * Buffers: 0 q, 1 kt, 2 vp, 3 o, 4 mask, 5 kv_lens, 6 lse.
 * Launch: groups (ceil(q_len / BLOCK_M), num_heads, batch), local (1, 1, 1); a larger
 * local x splits the group's rows among its invocations. */
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : enable
#include "attn_common.glsl"

#ifndef HEAD_DIM
#define HEAD_DIM 64
#endif
#ifndef V_HEAD_DIM
#define V_HEAD_DIM HEAD_DIM
#endif
#ifndef BLOCK_M
#define BLOCK_M 8
#endif
#ifndef VD_PAD
#define VD_PAD ((V_HEAD_DIM + 3) / 4 * 4)
#endif
#define NV4 (VD_PAD / 4) /* vec4s per packed V row (VD_PAD is a multiple of 4) */

layout(local_size_x = 1, local_size_x_id = 0, local_size_y_id = 1, local_size_z_id = 2) in;

ATTN_STORE_RO(0, q)
ATTN_BUF_RO(1, vec4, vec4, 4, kt)
ATTN_BUF_RO(2, vec4, vec4, 4, vp)
ATTN_OUT_WO(3, o)
ATTN_MASK_RO(4)
ATTN_BUF_RO(5, int, int, 2, kv_lens)
ATTN_BUF_WO(6, float, float, 2, lse)

void main()
{
    const int lsize = int(gl_WorkGroupSize.x);
    const int rpi = (BLOCK_M + lsize - 1) / lsize; /* rows per invocation */
    const int i0 = int(gl_WorkGroupID.x) * BLOCK_M + int(gl_LocalInvocationID.x) * rpi;
    const int h = int(gl_GlobalInvocationID.y);
    const int b = int(gl_GlobalInvocationID.z);
    const int q_len = PN(q_len);
    if (i0 >= q_len || i0 >= (int(gl_WorkGroupID.x) + 1) * BLOCK_M)
        return;
    const int hk = h / (PN(num_heads) / PN(num_kv_heads));
    const int len = ATTN_KV_LEN(b);
    const int rows = min(min(rpi, BLOCK_M), q_len - i0);
    const int shift = ATTN_CAUSAL_SHIFT(b); /* causal: row i sees keys j <= i + shift */
    const bool causal = PN(causal) != 0;
    const int kend = causal ? clamp(i0 + rows + shift, 0, len) : len;
    const float scale = p.scale_log2;

    /* Q rows, pre-scaled into base-2 logits. Rows past q_len are zero and masked later. */
    float qs[BLOCK_M * HEAD_DIM];
    for (int r = 0; r < BLOCK_M; ++r) {
        const IDX base = PI(q_off) + IDX(b) * PI(q_s0) + IDX(i0 + r) * PI(q_s1) + IDX(h) * PI(q_s2);
        [[dont_unroll]] for (int d = 0; d < HEAD_DIM; ++d)
            qs[r * HEAD_DIM + d] = r < rows ? LOAD_S(q, base + IDX(d) * PI(q_s3)) * scale : 0.0;
    }

    float m[BLOCK_M], l[BLOCK_M];
    vec4 acc[BLOCK_M * NV4];
    float pr[BLOCK_M * 16];
    for (int r = 0; r < BLOCK_M; ++r) {
        m[r] = ATTN_NEG_INF;
        l[r] = 0.0;
        [[dont_unroll]] for (int c = 0; c < NV4; ++c)
            acc[r * NV4 + c] = vec4(0.0);
    }

    const IDX ld = PI(ld_kv);
    const IDX slab = IDX(b) * PI(num_kv_heads) + IDX(hk);
    const IDX ktb4 = slab * IDX(HEAD_DIM) * (ld >> 2);   /* in vec4s */
    const IDX vpb4 = slab * ld * IDX(NV4);

    for (int j0 = 0; j0 < kend; j0 += 16) {
        vec4 s[BLOCK_M * 4];
        for (int r = 0; r < BLOCK_M * 4; ++r)
            s[r] = vec4(0.0);
        IDX kp = ktb4 + IDX(j0 >> 2);
        [[dont_unroll]] for (int d = 0; d < HEAD_DIM; ++d, kp += ld >> 2) {
            const vec4 k0 = kt_ld(kp), k1 = kt_ld(kp + 1u), k2 = kt_ld(kp + 2u), k3 = kt_ld(kp + 3u);
            for (int r = 0; r < BLOCK_M; ++r) {
                const vec4 qv = vec4(qs[r * HEAD_DIM + d]);
                s[r * 4 + 0] = fma(qv, k0, s[r * 4 + 0]);
                s[r * 4 + 1] = fma(qv, k1, s[r * 4 + 1]);
                s[r * 4 + 2] = fma(qv, k2, s[r * 4 + 2]);
                s[r * 4 + 3] = fma(qv, k3, s[r * 4 + 3]);
            }
        }

        for (int r = 0; r < BLOCK_M; ++r) {
            const int i = i0 + r;
            float mx = ATTN_NEG_INF;
            for (int t = 0; t < 16; ++t) {
                const int j = j0 + t;
                bool ok = j < len && r < rows && (!causal || j <= i + shift);
                float x = s[r * 4 + (t >> 2)][t & 3];
#if MASK_KIND != 0
                if (ok) {
                    const float mv = MASK_LD(PI(m_off) + IDX(b) * PI(m_s0) + IDX(h) * PI(m_s1) +
                                             IDX(i) * PI(m_s2) + IDX(j) * PI(m_s3));
#if MASK_KIND == 1
                    x += mv * float(ATTN_LOG2E);
#else
                    ok = mv != 0.0;
#endif
                }
#endif
                x = ok ? x : ATTN_NEG_INF;
                pr[r * 16 + t] = x;
                mx = max(mx, x);
            }
            const float mnew = max(m[r], mx);
            if (mnew == ATTN_NEG_INF) {
                for (int t = 0; t < 16; ++t)
                    pr[r * 16 + t] = 0.0;
                continue;
            }
            const float alpha = exp2(m[r] - mnew);
            float sum = 0.0;
            for (int t = 0; t < 16; ++t) {
                const float e = exp2(pr[r * 16 + t] - mnew);
                pr[r * 16 + t] = e;
                sum += e;
            }
            l[r] = l[r] * alpha + sum;
            m[r] = mnew;
            if (alpha != 1.0)
                [[dont_unroll]] for (int c = 0; c < NV4; ++c)
                    acc[r * NV4 + c] *= alpha;
        }

        const int nk = min(16, kend - j0);
        for (int t = 0; t < nk; ++t) {
            const IDX vrow = vpb4 + IDX(j0 + t) * IDX(NV4);
            [[dont_unroll]] for (int c = 0; c < NV4; ++c) {
                const vec4 vv = vp_ld(vrow + IDX(c));
                for (int r = 0; r < BLOCK_M; ++r)
                    acc[r * NV4 + c] = fma(vec4(pr[r * 16 + t]), vv, acc[r * NV4 + c]);
            }
        }
    }

    for (int r = 0; r < rows; ++r) {
        const int i = i0 + r;
        const float inv = l[r] > 0.0 ? 1.0 / l[r] : 0.0;
        const IDX base = PI(o_off) + IDX(b) * PI(o_s0) + IDX(i) * PI(o_s1) + IDX(h) * PI(o_s2);
        [[dont_unroll]] for (int d = 0; d < V_HEAD_DIM; ++d)
            STORE_O(o, base + IDX(d) * PI(o_s3), acc[r * NV4 + (d >> 2)][d & 3] * inv);
        if (PN(want_lse) != 0)
            lse_st(PI(l_off) + IDX(b) * PI(l_s0) + IDX(h) * PI(l_s1) + IDX(i) * PI(l_s2),
                   l[r] > 0.0 ? (m[r] + log2(l[r])) * float(ATTN_LN2) : ATTN_NEG_INF);
    }
}
