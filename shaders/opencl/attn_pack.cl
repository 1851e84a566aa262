/* attn_pack.cl — packs K as K^T (head_dim rows of ld_kv keys) and V as ld_kv rows of
 * VD_PAD floats per (batch, kv head), converting storage to f32 and zero-padding keys
 * up to ld_kv and V columns up to VD_PAD, so the CPU-class kernel reads aligned vectors. */
#ifndef HEAD_DIM
#define HEAD_DIM 64
#endif
#ifndef V_HEAD_DIM
#define V_HEAD_DIM HEAD_DIM
#endif
#ifndef VD_PAD
#define VD_PAD V_HEAD_DIM
#endif

__kernel void attn_pack_kv(__global const STORE_T *k, __global const STORE_T *v,
                           __global float *kt, __global float *vp, const attn_params p)
{
    const long j = get_global_id(0);
    const long hk = get_global_id(1);
    const long b = get_global_id(2);
    const long slab = b * p.num_kv_heads + hk;
    __global float *ktb = kt + slab * HEAD_DIM * p.ld_kv;
    __global float *vpb = vp + (slab * p.ld_kv + j) * VD_PAD;
    if (j < p.kv_len) {
        const long kbase = p.k_off + b * p.k_s0 + j * p.k_s1 + hk * p.k_s2;
        for (int d = 0; d < HEAD_DIM; ++d)
            ktb[d * p.ld_kv + j] = LOAD_S(k, kbase + d * p.k_s3);
        const long vbase = p.v_off + b * p.v_s0 + j * p.v_s1 + hk * p.v_s2;
        for (int d = 0; d < V_HEAD_DIM; ++d)
            vpb[d] = LOAD_S(v, vbase + d * p.v_s3);
    } else {
        for (int d = 0; d < HEAD_DIM; ++d)
            ktb[d * p.ld_kv + j] = 0.0f;
        for (int d = 0; d < V_HEAD_DIM; ++d)
            vpb[d] = 0.0f;
    }
    for (int d = V_HEAD_DIM; d < VD_PAD; ++d)
        vpb[d] = 0.0f;
}
