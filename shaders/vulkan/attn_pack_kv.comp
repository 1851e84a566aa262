#version 450
/* attn_pack_kv.comp — packs K as K^T (HEAD_DIM rows of ld_kv keys) and V as ld_kv rows of
 * VD_PAD floats per (batch, kv head), converting storage to f32 and zero-padding keys up
 * to ld_kv and V columns up to VD_PAD, for the CPU-class kernel (attn_fwd_cpu.comp).
 * Mirrors shaders/opencl/attn_pack.cl. Buffers: 0 k, 1 v, 2 kt, 3 vp.
 * Launch: groups (ld_kv / 16, num_kv_heads, batch), local (16, 1, 1). */
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : enable
#include "attn_common.glsl"

#ifndef HEAD_DIM
#define HEAD_DIM 64
#endif
#ifndef V_HEAD_DIM
#define V_HEAD_DIM HEAD_DIM
#endif
#ifndef VD_PAD
#define VD_PAD V_HEAD_DIM
#endif

layout(local_size_x = 16, local_size_x_id = 0, local_size_y_id = 1, local_size_z_id = 2) in;

ATTN_STORE_RO(0, k)
ATTN_STORE_RO(1, v)
ATTN_BUF_WO(2, float, float, 2, kt)
ATTN_BUF_WO(3, float, float, 2, vp)

void main()
{
    const int j = int(gl_GlobalInvocationID.x);
    const IDX hk = IDX(gl_GlobalInvocationID.y);
    const IDX b = IDX(gl_GlobalInvocationID.z);
    const IDX ld = PI(ld_kv);
    if (IDX(j) >= ld)
        return;
    const IDX slab = b * PI(num_kv_heads) + hk;
    const IDX ktb = slab * IDX(HEAD_DIM) * ld + IDX(j);
    const IDX vpb = (slab * ld + IDX(j)) * IDX(VD_PAD);
    if (j < PN(kv_len)) {
        const IDX kbase = PI(k_off) + b * PI(k_s0) + IDX(j) * PI(k_s1) + hk * PI(k_s2);
        [[dont_unroll]] for (int d = 0; d < HEAD_DIM; ++d)
            kt_st(ktb + IDX(d) * ld, LOAD_S(k, kbase + IDX(d) * PI(k_s3)));
        const IDX vbase = PI(v_off) + b * PI(v_s0) + IDX(j) * PI(v_s1) + hk * PI(v_s2);
        [[dont_unroll]] for (int d = 0; d < V_HEAD_DIM; ++d)
            vp_st(vpb + IDX(d), LOAD_S(v, vbase + IDX(d) * PI(v_s3)));
    } else {
        [[dont_unroll]] for (int d = 0; d < HEAD_DIM; ++d)
            kt_st(ktb + IDX(d) * ld, 0.0);
        [[dont_unroll]] for (int d = 0; d < V_HEAD_DIM; ++d)
            vp_st(vpb + IDX(d), 0.0);
    }
    [[dont_unroll]] for (int d = V_HEAD_DIM; d < VD_PAD; ++d)
        vp_st(vpb + IDX(d), 0.0);
}
