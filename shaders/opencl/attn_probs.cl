/* attn_probs.cl — the softmax probabilities of a run, for inspecting small problems
 * (attn_desc.want_probs): p(i, j) = 2^(s2(i, j) - lse2(i)) for visible keys, else 0, with
 * the score s2 in base 2 exactly as the attention kernels form it (RoPE, scale, soft-cap,
 * mask, ALiBi, T5; the tile map for the pattern) and lse2 the row's log-sum-exp that the
 * attention kernel just wrote (sinks included). One work-item per (row, output head,
 * batch): it loops over the keys, so this is for problems a person looks at, not for
 * speed. Output strides in pr_s*, pr_off (p.a_* fields hold the aux layout as usual).
 * Launch: groups (q_len, heads written, batch), local (1, 1, 1). */
#ifndef HEAD_DIM
#define HEAD_DIM 64
#endif

__kernel void attn_probs(__global const STORE_T *q, __global const STORE_T *k,
                         __global const MASK_T *mask, __global const int *kv_lens,
                         __global const float *lse, __global float *pr, __global const int *aux,
                         const attn_params p)
{
    const long i = get_global_id(0);
    const long ho = get_global_id(1); /* head written: h, or 0 for one head */
    const long b = get_global_id(2);
    const long h = p.num_splits >= 0 ? p.num_splits : ho; /* num_splits: the one head, or -1 */
    const long hk = h / (p.num_heads / p.num_kv_heads);
    const long len = attn_kv_len(p, kv_lens, b);
    const long shift = attn_causal_shift(p, kv_lens, b);
    const long qpos = p.k_pos + i + shift;
    const float l2 = lse[p.l_off + b * p.l_s0 + h * p.l_s1 + i * p.l_s2] * ATTN_LOG2E;
    __global float *row = pr + p.o_off + b * p.o_s0 + ho * p.o_s1 + i * p.o_s2;
    for (long j = 0; j < p.kv_len; ++j)
        row[j * p.o_s3] = 0.0f;
    if (l2 == -INFINITY)
        return;
    float qr[HEAD_DIM];
    const long qb = p.q_off + b * p.q_s0 + i * p.q_s1 + h * p.q_s2;
    for (int d = 0; d < HEAD_DIM; ++d)
        qr[d] = attn_rope_load(q, qb, p.q_s3, d, p.q_pos + i, p.a_rope_q, aux, p) * p.scale_log2;
#if SPARSE
    const long i0 = i / p.map_qb * p.map_qb; /* the row's query block */
#else
    const long i0 = i;
#endif
    const int2 runs = attn_runs(aux, p, b, h, i0);
    for (int ru = runs.x; ru < runs.y; ++ru) {
        int bits;
        const long2 keys = attn_run_keys(aux, p, ru, len, &bits);
        for (long j = keys.x; j < keys.y; ++j) {
            if (p.causal && j > i + shift)
                continue;
#if SPARSE
            if (!attn_tile_sees(aux, bits, (int)(i - i0), p.k_pos + j))
                continue;
#endif
            const long kb = p.k_off + b * p.k_s0 + j * p.k_s1 + hk * p.k_s2;
            float x = 0.0f;
            for (int d = 0; d < HEAD_DIM; ++d)
                x = fma(qr[d], attn_rope_load(k, kb, p.k_s3, d, p.k_pos + j, p.a_rope_k, aux, p), x);
#if POS_SOFTCAP
            x = attn_softcap(x, p);
#endif
#if POS_ADDITIVE
            x += attn_pos_bias(aux, p, h, qpos, p.k_pos + j);
#endif
#if MASK_KIND != 0
            const float mv = mask[p.m_off + b * p.m_s0 + h * p.m_s1 + i * p.m_s2 + j * p.m_s3];
#if MASK_KIND == 1
            x += mv * ATTN_LOG2E;
#else
            if (mv == 0.0f)
                continue;
#endif
#endif
            row[j * p.o_s3] = exp2(x - l2);
        }
    }
}
