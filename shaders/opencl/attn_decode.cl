/* attn_decode.cl — decode (split-KV): few query rows over many keys. The keys of each
 * (batch, kv head) are split into num_splits ranges, one work-item each, so one query row
 * still spreads over the whole device; every work-item owns all the ROWS rows of its kv
 * head (q_len x heads of the group, a compile-time constant), reads K and V once, directly
 * from their storage (no packing pass), and writes a partial result (normalised O and
 * log-sum-exp); attn_decode_merge then combines the splits exactly.
 * Launch: attn_decode groups (num_splits, num_kv_heads, batch), local (1, 1, 1);
 *         attn_decode_merge groups (q_len * G, num_kv_heads, batch), local (1, 1, 1).
 * Partials: O [batch][kv_heads][splits][rows][V_HEAD_DIM], lse [..][splits][rows], f32.
 *
 * The inner loops are written for throughput, not latency: a dot product chained over
 * head_dim (or a P.V sum chained over keys) waits on each fma, and a CPU then idles most
 * of its vector units. Scores are computed for a block of 8 keys at once, one accumulator
 * per key (8 independent chains), then reduced to one float8 of scores; P.V updates the
 * rows' accumulators with the key loop innermost, rows and head-dim vectors interleaved. */
#ifndef HEAD_DIM
#define HEAD_DIM 64
#endif
#ifndef V_HEAD_DIM
#define V_HEAD_DIM HEAD_DIM
#endif
#ifndef ROWS
#define ROWS 1
#endif

/* head_dim / v_head_dim rounded up to whole float8 vectors, zero-padded. */
#define HD8 ((HEAD_DIM + 7) / 8)
#define VD8 ((V_HEAD_DIM + 7) / 8)

inline float attn_hsum8(float8 x)
{
    float4 a = x.lo + x.hi;
    float2 b = a.lo + a.hi;
    return b.x + b.y;
}

/* (sum of d[0]), ..., (sum of d[7]) as one vector: three rounds of pairwise adds. */
inline float8 attn_hsum8x8(const float8 *d)
{
    const float8 x01 = (float8)(d[0].lo + d[0].hi, d[1].lo + d[1].hi);
    const float8 x23 = (float8)(d[2].lo + d[2].hi, d[3].lo + d[3].hi);
    const float8 x45 = (float8)(d[4].lo + d[4].hi, d[5].lo + d[5].hi);
    const float8 x67 = (float8)(d[6].lo + d[6].hi, d[7].lo + d[7].hi);
    const float8 y0 = (float8)(x01.even + x01.odd, x23.even + x23.odd);
    const float8 y1 = (float8)(x45.even + x45.odd, x67.even + x67.odd);
    return (float8)(y0.even + y0.odd, y1.even + y1.odd);
}

__kernel void attn_decode(__global const STORE_T *q, __global const STORE_T *k,
                          __global const STORE_T *v, __global const MASK_T *mask,
                          __global const int *kv_lens, __global float *opart,
                          __global float *lpart, const attn_params p)
{
    const long s = get_global_id(0), hk = get_global_id(1), b = get_global_id(2);
    const long G = p.num_heads / p.num_kv_heads;
    const long len = attn_kv_len(p, kv_lens, b);
    const long shift = attn_causal_shift(p, kv_lens, b);
    const long j_begin = s * p.split_len;
    long j_end = min(len, j_begin + p.split_len);
    if (p.causal) /* the last row sees the most keys */
        j_end = min(j_end, p.q_len - 1 + shift + 1);

    float8 qr[ROWS][HD8];
    float8 acc[ROWS][VD8];
    float m[ROWS], l[ROWS];
    for (int r = 0; r < ROWS; ++r) {
        const long i = r / G, h = hk * G + r % G;
        const long base = p.q_off + b * p.q_s0 + i * p.q_s1 + h * p.q_s2;
        float tmp[HD8 * 8];
        for (int d = 0; d < HD8 * 8; ++d)
            tmp[d] = d < HEAD_DIM ? LOAD_S(q, base + d * p.q_s3) * p.scale_log2 : 0.0f;
        for (int c = 0; c < HD8; ++c)
            qr[r][c] = vload8(c, tmp);
        for (int c = 0; c < VD8; ++c)
            acc[r][c] = (float8)(0.0f);
        m[r] = -INFINITY;
        l[r] = 0.0f;
    }

    /* Keys go in blocks of 8: one vector exp2 and one rescale per row and block. kt/vt
     * hold the block's keys and values, zero-padded past head_dim and past the keys of a
     * short last block (so its unused keys add 0 x 0). */
    float kt[8][HD8 * 8], vt[8][VD8 * 8];
    for (int t = 0; t < 8; ++t) {
        for (int d = 0; d < HD8 * 8; ++d)
            kt[t][d] = 0.0f;
        for (int d = 0; d < VD8 * 8; ++d)
            vt[t][d] = 0.0f;
    }
    for (long j0 = j_begin; j0 < j_end; j0 += 8) {
        const int nk = (int)min(8L, j_end - j0);
        if (nk < 8)
            for (int t = nk; t < 8; ++t) {
                for (int d = 0; d < HEAD_DIM; ++d)
                    kt[t][d] = 0.0f;
                for (int d = 0; d < V_HEAD_DIM; ++d)
                    vt[t][d] = 0.0f;
            }
        /* The next-but-one block's K and V rows: with heads interleaved in memory, a
         * head's rows are too far apart for the hardware prefetcher (attn_common.cl). */
        for (int t = 0; t < 8; ++t) {
            const long jn = min(j0 + 16 + t, j_end - 1);
            ATTN_PREFETCH_ROW(k + p.k_off + b * p.k_s0 + jn * p.k_s1 + hk * p.k_s2, HEAD_DIM * sizeof(STORE_T));
            ATTN_PREFETCH_ROW(v + p.v_off + b * p.v_s0 + jn * p.v_s1 + hk * p.v_s2, V_HEAD_DIM * sizeof(STORE_T));
        }
        for (int t = 0; t < nk; ++t) {
            const long kb = p.k_off + b * p.k_s0 + (j0 + t) * p.k_s1 + hk * p.k_s2;
            const long vb = p.v_off + b * p.v_s0 + (j0 + t) * p.v_s1 + hk * p.v_s2;
            /* Rows with unit element stride load 8 at a time (the common layouts). */
#if HEAD_DIM % 8 == 0
            if (p.k_s3 == 1) {
                for (int c = 0; c < HEAD_DIM / 8; ++c)
                    vstore8(LOAD8_S(k, kb + c * 8), c, kt[t]);
            } else
#endif
            {
                for (int d = 0; d < HEAD_DIM; ++d)
                    kt[t][d] = LOAD_S(k, kb + d * p.k_s3);
            }
#if V_HEAD_DIM % 8 == 0
            if (p.v_s3 == 1) {
                for (int c = 0; c < V_HEAD_DIM / 8; ++c)
                    vstore8(LOAD8_S(v, vb + c * 8), c, vt[t]);
            } else
#endif
            {
                for (int d = 0; d < V_HEAD_DIM; ++d)
                    vt[t][d] = LOAD_S(v, vb + d * p.v_s3);
            }
        }
        const int8 jv = (int8)(0, 1, 2, 3, 4, 5, 6, 7);
        float8 pr[ROWS];
        float alpha[ROWS];
#pragma unroll 1
        for (int r = 0; r < ROWS; ++r) {
            const long i = r / G;
            float8 dot[8];
#pragma unroll
            for (int t = 0; t < 8; ++t)
                dot[t] = (float8)(0.0f);
            for (int c = 0; c < HD8; ++c) {
                const float8 qc = qr[r][c];
#pragma unroll
                for (int t = 0; t < 8; ++t)
                    dot[t] = fma(qc, vload8(c, kt[t]), dot[t]);
            }
            float8 s8 = attn_hsum8x8(dot);
            int8 ok = jv < (int8)(nk);
            if (p.causal)
                ok &= (int8)((int)(j0 - i - shift)) + jv <= (int8)(0);
#if MASK_KIND != 0
            {
                const long h = hk * G + r % G;
                float mk[8];
                for (int t = 0; t < 8; ++t)
                    mk[t] = t < nk ? mask[p.m_off + b * p.m_s0 + h * p.m_s1 + i * p.m_s2 + (j0 + t) * p.m_s3]
                                   : 0.0f;
                const float8 mv = vload8(0, mk);
#if MASK_KIND == 1
                s8 = fma(mv, (float8)(ATTN_LOG2E), s8);
#else
                ok &= mv != (float8)(0.0f);
#endif
            }
#endif
            s8 = select((float8)(-INFINITY), s8, ok);
            const float4 m4 = fmax(s8.lo, s8.hi);
            const float2 m2 = fmax(m4.lo, m4.hi);
            const float mn = fmax(m[r], fmax(m2.x, m2.y));
            /* A row that has seen no key yet keeps m = -inf and adds nothing (p = 0). */
            const float safe = mn == -INFINITY ? 0.0f : mn;
            alpha[r] = exp2(m[r] - safe);
            pr[r] = exp2(s8 - (float8)(safe));
            l[r] = l[r] * alpha[r] + attn_hsum8(pr[r]);
            m[r] = mn;
        }
        /* Each row's accumulator is one chain over the block's 8 keys; 4 rows unrolled
         * interleave 4 chains, and the unrolled code (and the compile time) does not grow
         * with ROWS. */
        for (int c = 0; c < VD8; ++c) {
            float8 vc[8];
#pragma unroll
            for (int t = 0; t < 8; ++t)
                vc[t] = vload8(c, vt[t]);
#pragma unroll 4
            for (int r = 0; r < ROWS; ++r) {
                float8 a = acc[r][c] * alpha[r];
                a = fma((float8)(pr[r].s0), vc[0], a);
                a = fma((float8)(pr[r].s1), vc[1], a);
                a = fma((float8)(pr[r].s2), vc[2], a);
                a = fma((float8)(pr[r].s3), vc[3], a);
                a = fma((float8)(pr[r].s4), vc[4], a);
                a = fma((float8)(pr[r].s5), vc[5], a);
                a = fma((float8)(pr[r].s6), vc[6], a);
                a = fma((float8)(pr[r].s7), vc[7], a);
                acc[r][c] = a;
            }
        }
    }

    const long slot = ((b * p.num_kv_heads + hk) * p.num_splits + s) * ROWS;
    for (int r = 0; r < ROWS; ++r) {
        const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
        float out[VD8 * 8];
        for (int c = 0; c < VD8; ++c)
            vstore8(acc[r][c] * inv, c, out);
        for (int d = 0; d < V_HEAD_DIM; ++d)
            opart[(slot + r) * V_HEAD_DIM + d] = out[d];
        lpart[slot + r] = l[r] > 0.0f ? (m[r] + log2(l[r])) * ATTN_LN2 : -INFINITY;
    }
}

/* Combines the splits of one row: O = sum_s w_s O_s / sum_s w_s, w_s = e^(lse_s - max). */
__kernel void attn_decode_merge(__global const float *opart, __global const float *lpart,
                                __global STORE_T *o, __global float *lse, const attn_params p)
{
    const long r = get_global_id(0), hk = get_global_id(1), b = get_global_id(2);
    const long G = p.num_heads / p.num_kv_heads;
    const long rows = p.q_len * G;
    if (r >= rows)
        return;
    const long i = r / G, h = hk * G + r % G;
    const long first = (b * p.num_kv_heads + hk) * p.num_splits * rows + r;
    float mx = -INFINITY;
    for (long s = 0; s < p.num_splits; ++s)
        mx = fmax(mx, lpart[first + s * rows]);
    float out[V_HEAD_DIM];
    for (int d = 0; d < V_HEAD_DIM; ++d)
        out[d] = 0.0f;
    float wsum = 0.0f;
    if (mx != -INFINITY) {
        for (long s = 0; s < p.num_splits; ++s) {
            const float ls = lpart[first + s * rows];
            if (ls == -INFINITY)
                continue;
            const float w = exp(ls - mx);
            wsum += w;
            for (int d = 0; d < V_HEAD_DIM; ++d)
                out[d] = fma(w, opart[(first + s * rows) * V_HEAD_DIM + d], out[d]);
        }
    }
    const float inv = wsum > 0.0f ? 1.0f / wsum : 0.0f;
    const long ob = p.o_off + b * p.o_s0 + i * p.o_s1 + h * p.o_s2;
    for (int d = 0; d < V_HEAD_DIM; ++d)
        STORE_S(o, ob + d * p.o_s3, out[d] * inv);
    if (p.want_lse)
        lse[p.l_off + b * p.l_s0 + h * p.l_s1 + i * p.l_s2] =
            wsum > 0.0f ? mx + log(wsum) : -INFINITY;
}
