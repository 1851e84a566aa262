/* attn_fwd_gpu.cl — forward attention for GPU-class devices. A work-group of BLOCK_M
 * work-items owns BLOCK_M query rows of one (batch, head), one row per work-item; the
 * group loads each tile of BLOCK_N keys and values into local memory cooperatively and
 * every row reads it from there. Online softmax in base 2, one rescale per tile.
 * Launch: groups (ceil(q_len / BLOCK_M), num_heads, batch), local (BLOCK_M, 1, 1). */
#ifndef HEAD_DIM
#define HEAD_DIM 64
#endif
#ifndef V_HEAD_DIM
#define V_HEAD_DIM HEAD_DIM
#endif
#ifndef BLOCK_M
#define BLOCK_M 64
#endif
#ifndef BLOCK_N
#define BLOCK_N 16
#endif

/* +1 column: rows of the K tile start in different banks. */
#define KS_LD (HEAD_DIM + 1)

__kernel __attribute__((reqd_work_group_size(BLOCK_M, 1, 1))) void
attn_fwd_gpu(__global const STORE_T *q, __global const STORE_T *k, __global const STORE_T *v,
             __global OUT_T *o, __global const MASK_T *mask, __global const int *kv_lens,
             __global float *lse, __global const int *aux, const attn_params p)
{
    __local float ks[BLOCK_N * KS_LD];
    __local float vs[BLOCK_N * V_HEAD_DIM];

    const int lid = (int)get_local_id(0);
    const long i0 = (long)get_group_id(0) * BLOCK_M;
    const long i = i0 + lid;
    const long h = get_group_id(1);
    const long b = get_group_id(2);
    const long hk = h / (p.num_heads / p.num_kv_heads);
    const long len = attn_kv_len(p, kv_lens, b);
    const long shift = attn_causal_shift(p, kv_lens, b);
    const bool valid = i < p.q_len;
    /* Causal: the group stops after the last key its last row can see. */
    const long kend = p.causal ? clamp(min(i0 + BLOCK_M, p.q_len) + shift, 0L, len) : len;

    float qr[HEAD_DIM];
    float acc[V_HEAD_DIM];
    float m = -INFINITY, l = 0.0f;
    {
        const long base = p.q_off + b * p.q_s0 + i * p.q_s1 + h * p.q_s2;
        for (int d = 0; d < HEAD_DIM; ++d)
            qr[d] = valid ? attn_rope_load(q, base, p.q_s3, d, p.q_pos + i, p.a_rope_q, aux, p) *
                                p.scale_log2
                          : 0.0f;
        for (int d = 0; d < V_HEAD_DIM; ++d)
            acc[d] = 0.0f;
    }
    const long gh = p.h_pos + h;           /* the head in the whole problem */
    const long qpos = p.k_pos + i + shift; /* the row's position: it sees keys <= qpos */

    /* Tiles in order (with a tile map: only those the group's rows see; BLOCK_N <= 16). */
    const int2 runs = attn_runs(aux, p, b, h, i0);
    for (int ru = runs.x; ru < runs.y; ++ru) {
        int tbits;
        const long2 keys = attn_run_keys(aux, p, ru, kend, &tbits);
        for (long j0 = keys.x; j0 < keys.y; j0 += BLOCK_N) {
            barrier(CLK_LOCAL_MEM_FENCE);
            for (int idx = lid; idx < BLOCK_N * HEAD_DIM; idx += BLOCK_M) {
                const int jj = idx / HEAD_DIM, d = idx - jj * HEAD_DIM;
                const long j = j0 + jj;
                ks[jj * KS_LD + d] =
                    j < kend ? attn_rope_load(k, p.k_off + b * p.k_s0 + j * p.k_s1 + hk * p.k_s2, p.k_s3,
                                              d, p.k_pos + j, p.a_rope_k, aux, p)
                             : 0.0f;
            }
            for (int idx = lid; idx < BLOCK_N * V_HEAD_DIM; idx += BLOCK_M) {
                const int jj = idx / V_HEAD_DIM, d = idx - jj * V_HEAD_DIM;
                const long j = j0 + jj;
                vs[idx] =
                    j < kend ? LOAD_S(v, p.v_off + b * p.v_s0 + j * p.v_s1 + hk * p.v_s2 + d * p.v_s3)
                             : 0.0f;
            }
            barrier(CLK_LOCAL_MEM_FENCE);
            if (!valid)
                continue;

            float s[BLOCK_N];
            float mx = -INFINITY;
            for (int jj = 0; jj < BLOCK_N; ++jj) {
                const long j = j0 + jj;
                bool ok = j < len && (!p.causal || j <= i + shift);
                float x = 0.0f;
                for (int d = 0; d < HEAD_DIM; ++d)
                    x = fma(qr[d], ks[jj * KS_LD + d], x);
#if POS_SOFTCAP
                x = attn_softcap(x, p);
#endif
#if SPARSE
                ok = ok && attn_tile_sees(aux, tbits, (int)(i - i0), p.k_pos + j);
#endif
#if POS_ADDITIVE
                x += attn_pos_bias(aux, p, gh, qpos, p.k_pos + j);
#endif
#if MASK_KIND != 0
                if (ok) {
                    const float mv = mask[p.m_off + b * p.m_s0 + h * p.m_s1 + i * p.m_s2 + j * p.m_s3];
#if MASK_KIND == 1
                    x += mv * ATTN_LOG2E;
#else
                    ok = mv != 0.0f;
#endif
                }
#endif
                s[jj] = ok ? x : -INFINITY;
                mx = fmax(mx, s[jj]);
            }
            const float mnew = fmax(m, mx);
            if (mnew == -INFINITY)
                continue;
            const float alpha = exp2(m - mnew);
            l *= alpha;
            for (int d = 0; d < V_HEAD_DIM; ++d)
                acc[d] *= alpha;
            for (int jj = 0; jj < BLOCK_N; ++jj) {
                const float pj = exp2(s[jj] - mnew);
                l += pj;
                for (int d = 0; d < V_HEAD_DIM; ++d)
                    acc[d] = fma(pj, vs[jj * V_HEAD_DIM + d], acc[d]);
            }
            m = mnew;
        }
    }

    if (!valid)
        return;
    float inv = l > 0.0f ? 1.0f / l : 0.0f;
#if POS_SINKS
    if (!p.partial && l > 0.0f) /* a partial's sink is added once, by the merge kernel */
        inv *= attn_sink_fold(aux, p, gh, &m, &l);
#endif
    const long base = p.o_off + b * p.o_s0 + i * p.o_s1 + h * p.o_s2;
    for (int d = 0; d < V_HEAD_DIM; ++d)
        STORE_O(o, base + d * p.o_s3, acc[d] * inv);
    if (p.want_lse)
        lse[p.l_off + b * p.l_s0 + h * p.l_s1 + i * p.l_s2] =
            l > 0.0f ? (m + log2(l)) * ATTN_LN2 : -INFINITY;
}
