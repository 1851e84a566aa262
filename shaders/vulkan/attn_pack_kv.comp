#version 450
/* attn_pack_kv.comp — packs K and V per (batch, kv head) as ld_kv rows of KD_PAD and
 * VD_PAD floats, converting storage to f32 and zero-padding keys up to ld_kv and columns
 * up to the pads, for the CPU-class kernel (attn_fwd_cpu.comp), whose invocations each
 * load one key's rows as vec4s. (The OpenCL CPU kernel wants K transposed instead:
 * shaders/opencl/attn_pack.cl.) With RoPE (attn_features.glsl), K is rotated here, once
 * per key. Buffers: 0 k, 1 v, 2 kr, 3 vp, 4 aux (issue 6).
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
#ifndef KD_PAD
#define KD_PAD HEAD_DIM
#endif
#ifndef VD_PAD
#define VD_PAD V_HEAD_DIM
#endif

layout(local_size_x = 16, local_size_x_id = 0, local_size_y_id = 1, local_size_z_id = 2) in;

ATTN_STORE_RO(0, k)
ATTN_STORE_RO(1, v)
ATTN_BUF_WO(2, float, float, 2, kr)
ATTN_BUF_WO(3, float, float, 2, vp)
#define ATTN_AUX_SLOT 4
#include "attn_features.glsl"

void main()
{
    const int j = int(gl_GlobalInvocationID.x);
    const IDX hk = IDX(gl_GlobalInvocationID.y);
    const IDX b = IDX(gl_GlobalInvocationID.z);
    const IDX ld = PI(ld_kv);
    if (IDX(j) >= ld)
        return;
    const IDX slab = b * PI(num_kv_heads) + hk;
    const IDX krb = (slab * ld + IDX(j)) * IDX(KD_PAD);
    const IDX vpb = (slab * ld + IDX(j)) * IDX(VD_PAD);
    if (j < PN(kv_len)) {
        const IDX kbase = PI(k_off) + b * PI(k_s0) + IDX(j) * PI(k_s1) + hk * PI(k_s2);
#if POS_ROPE
        [[dont_unroll]] for (int d = 0; d < HEAD_DIM; ++d)
            kr_st(krb + IDX(d), ATTN_ROPE_LOAD(k, kbase, PI(k_s3), d, PN(k_pos) + j, PI(a_rope_k)));
#else
        [[dont_unroll]] for (int d = 0; d < HEAD_DIM; ++d)
            kr_st(krb + IDX(d), LOAD_S(k, kbase + IDX(d) * PI(k_s3)));
#endif
        const IDX vbase = PI(v_off) + b * PI(v_s0) + IDX(j) * PI(v_s1) + hk * PI(v_s2);
        [[dont_unroll]] for (int d = 0; d < V_HEAD_DIM; ++d)
            vp_st(vpb + IDX(d), LOAD_S(v, vbase + IDX(d) * PI(v_s3)));
    } else {
        [[dont_unroll]] for (int d = 0; d < HEAD_DIM; ++d)
            kr_st(krb + IDX(d), 0.0);
        [[dont_unroll]] for (int d = 0; d < V_HEAD_DIM; ++d)
            vp_st(vpb + IDX(d), 0.0);
    }
    [[dont_unroll]] for (int d = HEAD_DIM; d < KD_PAD; ++d)
        kr_st(krb + IDX(d), 0.0);
    [[dont_unroll]] for (int d = V_HEAD_DIM; d < VD_PAD; ++d)
        vp_st(vpb + IDX(d), 0.0);
}
