#version 450
/* attn_infini_update.comp — compressive memory of the Infini-attention stream: folds a
 * segment's keys and values into the memory, M += s(K)^T V, z += sum_t s(k_t), s = elu + 1.
 * Mirrors attn_infini_update in shaders/opencl/attn_infini.cl (attn_infini_read.comp is
 * the reading side). One invocation per (head_dim row d, kv head, batch) over the keys
 * [0, kv_len) from k_off / v_off; the loop over V_HEAD_DIM is unrolled, so an invocation
 * loops kv_len times, and on a device that caps loop iterations (llvmpipe, see
 * src/core/quirks.c) the stream launches a long segment in parts, each adding its keys.
 * Buffers: 0 k, 1 v, 2 mem, 3 z (layouts as in attn_infini_read.comp).
 * Launch: groups (ceil(HEAD_DIM / local x), num_kv_heads, batch), local (any, 1, 1). */
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : enable
#include "attn_common.glsl"

#ifndef HEAD_DIM
#define HEAD_DIM 64
#endif
#ifndef V_HEAD_DIM
#define V_HEAD_DIM HEAD_DIM
#endif

layout(local_size_x = 1, local_size_x_id = 0, local_size_y_id = 1, local_size_z_id = 2) in;

ATTN_STORE_RO(0, k)
ATTN_STORE_RO(1, v)
ATTN_BUF_WO(2, float, float, 2, mem)
ATTN_BUF_WO(3, float, float, 2, z)

float attn_sigma(float x) { return x > 0.0 ? x + 1.0 : exp(x); }

void main()
{
    const int d = int(gl_GlobalInvocationID.x);
    const int hk = int(gl_WorkGroupID.y), b = int(gl_WorkGroupID.z);
    if (d >= HEAD_DIM)
        return;
    const IDX slab = IDX(b) * PI(num_kv_heads) + IDX(hk);
    const IDX kb = PI(k_off) + IDX(b) * PI(k_s0) + IDX(hk) * PI(k_s2) + IDX(d) * PI(k_s3);
    const IDX vb = PI(v_off) + IDX(b) * PI(v_s0) + IDX(hk) * PI(v_s2);
    float acc[V_HEAD_DIM];
    [[unroll]] for (int c = 0; c < V_HEAD_DIM; ++c)
        acc[c] = 0.0;
    float zs = 0.0;
    [[dont_unroll]] for (int t = 0; t < PN(kv_len); ++t) {
        const float sk = attn_sigma(LOAD_S(k, kb + IDX(t) * PI(k_s1)));
        zs += sk;
        const IDX vt = vb + IDX(t) * PI(v_s1);
        [[unroll]] for (int c = 0; c < V_HEAD_DIM; ++c)
            acc[c] = fma(sk, LOAD_S(v, vt + IDX(c) * PI(v_s3)), acc[c]);
    }
    const IDX row = (slab * IDX(HEAD_DIM) + IDX(d)) * IDX(V_HEAD_DIM);
    [[unroll]] for (int c = 0; c < V_HEAD_DIM; ++c)
        mem_st(row + IDX(c), mem_ld(row + IDX(c)) + acc[c]);
    z_st(slab * IDX(HEAD_DIM) + IDX(d), z_ld(slab * IDX(HEAD_DIM) + IDX(d)) + zs);
}
