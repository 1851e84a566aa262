/* attn_infini.cl — compressive memory of the Infini-attention stream. Per (batch, kv head)
 * a HEAD_DIM x V_HEAD_DIM matrix M and a HEAD_DIM vector z (f32) summarise all past
 * segments: M += s(K)^T V, z += sum_t s(k_t), with s = elu + 1. A query reads
 * A_mem = s(q) M / (s(q) z) and the output mixes it with the segment's local attention:
 * o = g A_mem + (1 - g) A_local, g = sigmoid(gate[h]).
 * Layouts: q/k/v/o/A_local strided as in attn_params (o strides also address A_local);
 * M [batch][kv_heads][HEAD_DIM][V_HEAD_DIM], z [batch][kv_heads][HEAD_DIM]. */
#ifndef HEAD_DIM
#define HEAD_DIM 64
#endif
#ifndef V_HEAD_DIM
#define V_HEAD_DIM HEAD_DIM
#endif

inline float attn_sigma(float x) { return x > 0.0f ? x + 1.0f : exp(x); }

/* One work-item per (row, head, batch): reads memory as it was before this segment. */
__kernel void attn_infini_read(__global const STORE_T *q, __global const STORE_T *alocal,
                               __global const float *mem, __global const float *z,
                               __global const float *gate, __global STORE_T *o,
                               const attn_params p)
{
    const long i = get_global_id(0), h = get_global_id(1), b = get_global_id(2);
    if (i >= p.q_len)
        return;
    const long hk = h / (p.num_heads / p.num_kv_heads);
    const long slab = b * p.num_kv_heads + hk;
    __global const float *m = mem + slab * HEAD_DIM * V_HEAD_DIM;
    float sq[HEAD_DIM];
    float den = 0.0f;
    const long qb = p.q_off + b * p.q_s0 + i * p.q_s1 + h * p.q_s2;
    for (int d = 0; d < HEAD_DIM; ++d) {
        sq[d] = attn_sigma(LOAD_S(q, qb + d * p.q_s3));
        den = fma(sq[d], z[slab * HEAD_DIM + d], den);
    }
    const float g = 1.0f / (1.0f + exp(-gate[h]));
    const long ob = p.o_off + b * p.o_s0 + i * p.o_s1 + h * p.o_s2;
    for (int c = 0; c < V_HEAD_DIM; ++c) {
        float num = 0.0f;
        for (int d = 0; d < HEAD_DIM; ++d)
            num = fma(sq[d], m[d * V_HEAD_DIM + c], num);
        const float amem = den > 0.0f ? num / den : 0.0f;
        const float loc = LOAD_S(alocal, ob + c * p.o_s3);
        STORE_S(o, ob + c * p.o_s3, g * amem + (1.0f - g) * loc);
    }
}

/* One work-item per (head_dim row d, kv head, batch): folds the segment's keys/values in. */
__kernel void attn_infini_update(__global const STORE_T *k, __global const STORE_T *v,
                                 __global float *mem, __global float *z, const attn_params p)
{
    const long d = get_global_id(0), hk = get_global_id(1), b = get_global_id(2);
    if (d >= HEAD_DIM)
        return;
    const long slab = b * p.num_kv_heads + hk;
    float acc[V_HEAD_DIM];
    for (int c = 0; c < V_HEAD_DIM; ++c)
        acc[c] = 0.0f;
    float zs = 0.0f;
    for (long t = 0; t < p.kv_len; ++t) {
        const float sk = attn_sigma(LOAD_S(k, p.k_off + b * p.k_s0 + t * p.k_s1 + hk * p.k_s2 + d * p.k_s3));
        zs += sk;
        const long vb = p.v_off + b * p.v_s0 + t * p.v_s1 + hk * p.v_s2;
        for (int c = 0; c < V_HEAD_DIM; ++c)
            acc[c] = fma(sk, LOAD_S(v, vb + c * p.v_s3), acc[c]);
    }
    __global float *m = mem + (slab * HEAD_DIM + d) * V_HEAD_DIM;
    for (int c = 0; c < V_HEAD_DIM; ++c)
        m[c] += acc[c];
    z[slab * HEAD_DIM + d] += zs;
}
