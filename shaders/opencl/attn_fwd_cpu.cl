/* attn_fwd_cpu.cl — forward attention for CPU-class devices (PoCL and other CPU OpenCL).
 *
 * One work-item owns 16 query rows held transposed: lane r of every float16 is row r. The
 * online softmax (running max, rescale, running sum) is then vertical vector arithmetic
 * with no horizontal reductions, and exp2 runs on whole vectors. The rows are the
 * (query, head) pairs of one kv head in the order f = i·G + g (G = num_heads / num_kv_heads),
 * so heads that share K/V share every K/V load, and decode (q_len 1) fills lanes with the
 * G heads of a group instead of leaving 15 of 16 idle.
 *   S = Q·K^T: per head_dim element d, one Q^T vector (16 rows) times K^T[d][j] broadcast
 *     for 16 keys: the 16 score vectors stay in registers for the whole d loop.
 *   O += P·V: per block of VD_VEC columns, VD_VEC accumulators (16 rows each) stay in
 *     registers while each probability vector meets V[j][c] broadcast.
 * Both loops read 16-key tiles packed by attn_pack.cl (f32), sequentially; every FMA takes
 * its broadcast straight from memory. Masks, causal and key-length limits are applied only
 * on tiles that need them. Logits are base 2 (Q is pre-scaled by scale·log2 e).
 *
 * Launch: groups (ceil(q_len / 16), num_heads, batch), local (1, 1, 1) — one work-item per
 * 16 rows of one head, as a row-per-lane kernel would have. Work-item (x, h, b) takes tile
 * w = (h mod G)·ceil(q_len / 16) + x of the ceil(q_len·G / 16) flat-row tiles of kv head
 * h / G; the launch always has at least that many work-items, and the rest return. */
#ifndef HEAD_DIM
#define HEAD_DIM 64
#endif
#ifndef V_HEAD_DIM
#define V_HEAD_DIM HEAD_DIM
#endif
#ifndef BLOCK_M
#define BLOCK_M 16
#endif
#ifndef BLOCK_N
#define BLOCK_N 16
#endif
#ifndef VD_VEC
#define VD_VEC 16 /* V columns per P·V register tile: VD_VEC accumulators of 16 rows */
#endif
#ifndef VD_PAD
#define VD_PAD V_HEAD_DIM /* V_HEAD_DIM rounded up to VD_VEC, as packed */
#endif
#if BLOCK_M != 16 || BLOCK_N != 16
#error "attn_fwd_cpu.cl: BLOCK_M and BLOCK_N must be 16 (the lanes of a float16)"
#endif

/* Lane-wise max without fmax's NaN rules, which cost a compare, a mask-or and a blend in
 * one dependent chain per vector (no NaN arrives here unless the inputs hold one). */
inline float16 attn_vmax(float16 a, float16 b) { return a > b ? a : b; }

/* 2^x for x <= 0 on 16 lanes; 0 below -126 and at -inf. 2^x = 2^n · 2^f, n = round(x),
 * f in [-0.5, 0.5]: a degree-6 polynomial with 2^0 = 1 exactly (relative error 9e-8 after
 * float rounding, under 1 ulp) times 2^n built in the exponent field. About 12 vector
 * instructions where the library exp2 takes ~25 and range checks this use cannot need.
 * n comes from the bits of x + 1.5·2^23 and f = x - float(n), so no reassociation of the
 * float arithmetic can cancel the rounding. */
inline float16 attn_exp2_neg(float16 x)
{
    const int16 n = as_int16(x + (float16)(12582912.0f)) - (int16)(0x4b400000);
    const float16 f = x - convert_float16(n);
    float16 r = (float16)(1.537070335e-04f);
    r = fma(r, f, (float16)(1.339984831e-03f));
    r = fma(r, f, (float16)(9.618373257e-03f));
    r = fma(r, f, (float16)(5.550329035e-02f));
    r = fma(r, f, (float16)(2.402264846e-01f));
    r = fma(r, f, (float16)(6.931472056e-01f));
    r = fma(r, f, (float16)(1.0f));
    const float16 scale = as_float16((n + (int16)(127)) << 23);
    return x < (float16)(-126.0f) ? (float16)(0.0f) : r * scale;
}

/* x[0], x[stride], ..., x[15 * stride] of private memory as one vector: how Q^T and O rows
 * cross between rows and lanes (16 loads and inserts; gathers and scatters on global
 * memory cost several times more on CPUs). */
inline float16 attn_strided16(const float *x, int stride)
{
    return (float16)(x[0], x[stride], x[2 * stride], x[3 * stride], x[4 * stride],
                     x[5 * stride], x[6 * stride], x[7 * stride], x[8 * stride], x[9 * stride],
                     x[10 * stride], x[11 * stride], x[12 * stride], x[13 * stride],
                     x[14 * stride], x[15 * stride]);
}

__kernel void attn_fwd_cpu(__global const STORE_T *q, __global const float *kt,
                           __global const float *vp, __global OUT_T *o,
                           __global const MASK_T *mask, __global const int *kv_lens,
                           __global float *lse, __global const int *aux, const attn_params p)
{
    const long h = get_global_id(1);
    const long b = get_global_id(2);
    const long G = p.num_heads / p.num_kv_heads;
    const long hk = h / G;
#if SPARSE
    /* A tile map row belongs to one head: the work-item takes 16 rows of head h (flat row
     * f = i·G + h mod G below, rows i = x·16 ...). */
    const long M = p.q_len * G;
    const long x0 = (long)get_global_id(0) * 16;
    if (x0 >= p.q_len)
        return;
    const int rows = (int)min(16L, p.q_len - x0);
#define ATTN_FLAT(r) ((x0 + (r)) * G + h % G)
#else
    const long M = p.q_len * G; /* flat rows of kv head hk */
    const long f0 = ((h % G) * ((p.q_len + 15) / 16) + (long)get_global_id(0)) * 16;
    if (f0 >= M)
        return;
    const int rows = (int)min(16L, M - f0);
#define ATTN_FLAT(r) (f0 + (r))
#endif
    const long len = attn_kv_len(p, kv_lens, b);
    const long shift = attn_causal_shift(p, kv_lens, b); /* row i sees keys j <= i + shift */
    const long ilo = ATTN_FLAT(0) / G, ihi = ATTN_FLAT(rows - 1) / G;
    const long kend = p.causal ? clamp(ihi + shift + 1, 0L, len) : len;
    const long kfull = p.causal ? clamp(ilo + shift + 1, 0L, len) : len; /* seen by every row */

    /* Per-lane rows. Lanes past the last row repeat it: their reads stay in bounds and
     * their results are never stored. */
    long qrow[16], orow[16], irow[16], hrow[16];
    int last[16];
#if MASK_KIND != 0
    long mrow[16];
#endif
    /* Row and head of each lane, stepped from the first flat row: two divisions per
     * work-item instead of two per lane (32 64-bit divisions were ~0.4 us of it). */
    long ii = ATTN_FLAT(0) / G, gg = ATTN_FLAT(0) % G;
    for (int r = 0; r < 16; ++r) {
        if (r > 0 && r < rows) {
#if SPARSE
            ++ii; /* rows of one head */
#else
            if (++gg == G) {
                gg = 0;
                ++ii;
            }
#endif
        }
        const long i = ii, hh = hk * G + gg;
        irow[r] = i;
        hrow[r] = hh;
        last[r] = (int)(i + shift);
        qrow[r] = p.q_off + b * p.q_s0 + i * p.q_s1 + hh * p.q_s2;
        orow[r] = p.o_off + b * p.o_s0 + i * p.o_s1 + hh * p.o_s2;
#if MASK_KIND != 0
        mrow[r] = p.m_off + b * p.m_s0 + hh * p.m_s1 + i * p.m_s2;
#endif
    }
    /* Q's rows are read now and O's written at the end, each a separate run of memory
     * (rows of one head are heads x head_dim apart): ask for all their lines at once
     * rather than waiting on them one load at a time, and for the Q rows of the next
     * work-item, which a CPU device usually runs next on this thread. */
    {
#if SPARSE
        const long step = 16 * p.q_s1;
#else
        const long step = max(16 / G, 1L) * p.q_s1;
#endif
        for (int r = 0; r < rows; ++r) {
            ATTN_PREFETCH_ROW(q + qrow[r], HEAD_DIM * sizeof(STORE_T));
            ATTN_PREFETCH_ROW(q + qrow[r] + step, HEAD_DIM * sizeof(STORE_T));
            ATTN_PREFETCH_ROW_W(o + orow[r], V_HEAD_DIM * sizeof(OUT_T));
        }
    }
    const int16 last_key = vload16(0, last); /* causal: the last key each row sees */
#if POS_ALIBI
    /* Per lane: the head's slope and the row's position (pos(i) = last + k_pos). */
    float16 slope, qposf;
    {
        float sv[16], pv[16];
        for (int r = 0; r < 16; ++r) {
            sv[r] = as_float(aux[p.a_alibi + p.h_pos + hrow[r]]);
            pv[r] = (float)(p.k_pos + last[r]);
        }
        slope = vload16(0, sv);
        qposf = vload16(0, pv);
    }
#endif
#if POS_T5
    long t5row[16]; /* the word of relative position 0 in each lane's head's T5 row */
    for (int r = 0; r < 16; ++r)
        t5row[r] = p.a_t5 + (p.h_pos + hrow[r]) * (2 * p.t5_max + 1) + p.t5_max;
#endif

    /* Q^T, pre-scaled into base-2 logits (RoPE'd first where on). */
    float16 qT[HEAD_DIM];
    /* Rows to private memory as they lie (contiguous runs when q_s3 is 1), then each Q^T
     * vector from 16 of them. */
    {
        float qb[16 * HEAD_DIM];
        for (int r = 0; r < 16; ++r)
            for (int d = 0; d < HEAD_DIM; ++d)
                qb[r * HEAD_DIM + d] =
                    attn_rope_load(q, qrow[r], p.q_s3, d, p.q_pos + irow[r], p.a_rope_q, aux, p);
        for (int d = 0; d < HEAD_DIM; ++d)
            qT[d] = attn_strided16(qb + d, HEAD_DIM) * p.scale_log2;
    }

    float16 oT[VD_PAD]; /* O^T, unnormalised */
    for (int c = 0; c < VD_PAD; ++c)
        oT[c] = (float16)(0.0f);
    float16 m = (float16)(-INFINITY), l = (float16)(0.0f);

    const long slab = b * p.num_kv_heads + hk;
    __global const float *ktb = kt + slab * HEAD_DIM * p.ld_kv;
    __global const float *vpb = vp + slab * VD_PAD * p.ld_kv;

    const int2 runs = attn_runs(aux, p, b, h, ilo);
    for (int ru = runs.x; ru < runs.y; ++ru) {
        int tbits;
        const long2 keys = attn_run_keys(aux, p, ru, kend, &tbits);
        for (long j0 = keys.x; j0 < keys.y; j0 += 16) {
            __global const float *kr = ktb + j0 * HEAD_DIM;
            float16 s[16];
#pragma unroll
            for (int t = 0; t < 16; ++t)
                s[t] = (float16)(0.0f);
            for (int d = 0; d < HEAD_DIM; ++d) {
                const float16 qd = qT[d];
#pragma unroll
                for (int t = 0; t < 16; ++t)
                    s[t] = fma(qd, (float16)(kr[d * 16 + t]), s[t]);
            }

#if POS_SOFTCAP
#pragma unroll
            for (int t = 0; t < 16; ++t)
                s[t] = p.softcap2 * tanh(s[t] / p.softcap2);
#endif
            if (MASK_KIND != 0 || POS_ADDITIVE || tbits >= 0 || j0 + 16 > kfull) {
#if SPARSE
                int vis[16]; /* partial tile: row r's 16 visibility bits */
                for (int r = 0; r < 16; ++r)
                    vis[r] = tbits < 0 ? 0xffff : (aux[tbits + r / 2] >> (16 * (r & 1))) & 0xffff;
                const int16 visv = vload16(0, vis);
#endif
#pragma unroll
                for (int t = 0; t < 16; ++t) {
                    const int j = (int)j0 + t;
                    int16 ok = (int16)(j < len ? -1 : 0);
                    if (p.causal)
                        ok &= (int16)(j) <= last_key;
#if SPARSE
                    ok &= ((visv >> t) & 1) != 0;
#endif
#if POS_ALIBI
                    s[t] -= slope * fabs(qposf - (float)(p.k_pos + j));
#endif
#if POS_T5
                    {
                        float bv[16];
                        for (int r = 0; r < 16; ++r) {
                            const long rel = clamp((long)(j - last[r]), -p.t5_max, p.t5_max);
                            bv[r] = as_float(aux[t5row[r] + rel]);
                        }
                        s[t] += vload16(0, bv);
                    }
#endif
#if MASK_KIND != 0
                    float mv[16];
                    const long jm = min((long)j, len - 1) * p.m_s3;
                    for (int r = 0; r < 16; ++r)
                        mv[r] = (float)mask[mrow[r] + jm];
#if MASK_KIND == 1
                    s[t] = fma(vload16(0, mv), (float16)(ATTN_LOG2E), s[t]);
#else
                    ok &= vload16(0, mv) != (float16)(0.0f);
#endif
#endif
                    s[t] = select((float16)(-INFINITY), s[t], ok);
                }
            }

            /* Running max as a tree, not one 16-long dependency chain. */
            float16 mx[8];
#pragma unroll
            for (int t = 0; t < 8; ++t)
                mx[t] = attn_vmax(s[t], s[t + 8]);
            const float16 mnew = attn_vmax(
                m, attn_vmax(attn_vmax(attn_vmax(mx[0], mx[4]), attn_vmax(mx[1], mx[5])),
                             attn_vmax(attn_vmax(mx[2], mx[6]), attn_vmax(mx[3], mx[7]))));
            /* Rows that have seen no key keep base 0, so -inf - base is -inf, never NaN. */
            const float16 base = mnew == (float16)(-INFINITY) ? (float16)(0.0f) : mnew;
            /* A row's max rises on few tiles: rescale O^T only then. */
            if (any(mnew > m)) {
                const float16 alpha = attn_exp2_neg(m - base);
                l *= alpha;
                for (int c = 0; c < VD_PAD; ++c)
                    oT[c] *= alpha;
                m = mnew;
            }
            float16 sum[4];
#pragma unroll
            for (int t = 0; t < 16; ++t) {
                s[t] = attn_exp2_neg(s[t] - base);
                sum[t % 4] = t < 4 ? s[t] : sum[t % 4] + s[t];
            }
            l += (sum[0] + sum[1]) + (sum[2] + sum[3]);
            /* P through private memory, the key loop below not unrolled: one vector load per
             * VD_VEC FMAs costs nothing measurable, and PoCL's first-launch compile is ~0.7 s
             * shorter than with all 16 x VD_VEC FMAs unrolled. */
            float16 pr[16];
#pragma unroll
            for (int t = 0; t < 16; ++t)
                pr[t] = s[t];

            /* Keys past the batch's length may hold anything (padding, a KV cache's unwritten
             * capacity): their P is 0, but 0 * NaN is NaN, so they are never read. */
            const int nk = (int)min(16L, len - j0);
            __global const float *vr = vpb + j0 * VD_PAD;
            for (int c0 = 0; c0 < VD_PAD; c0 += VD_VEC) {
                __global const float *vt = vr + c0 * 16;
                float16 a[VD_VEC];
#pragma unroll
                for (int e = 0; e < VD_VEC; ++e)
                    a[e] = oT[c0 + e];
                for (int t = 0; t < nk; ++t) {
                    const float16 pt = pr[t];
#pragma unroll
                    for (int e = 0; e < VD_VEC; ++e)
                        a[e] = fma(pt, (float16)(vt[t * VD_VEC + e]), a[e]);
                }
#pragma unroll
                for (int e = 0; e < VD_VEC; ++e)
                    oT[c0 + e] = a[e];
            }
        }
    }

    /* A row that saw no key has l = 0: zeros and lse -inf. */
    const int16 seen = l > (float16)(0.0f);
    float16 inv = select((float16)(0.0f), (float16)(1.0f) / l, seen);
#if POS_SINKS
    if (!p.partial) { /* a partial's sink is added once, by the merge kernel */
        float mv[16], lv[16], fv[16];
        vstore16(m, 0, mv);
        vstore16(l, 0, lv);
        for (int r = 0; r < 16; ++r)
            fv[r] = lv[r] > 0.0f ? attn_sink_fold(aux, p, p.h_pos + hrow[r], &mv[r], &lv[r]) : 0.0f;
        inv *= vload16(0, fv);
        m = vload16(0, mv);
        l = vload16(0, lv);
    }
#endif
    /* O^T to private memory as whole vectors, then out row by row, 16 columns at a time
     * where O's rows are contiguous. */
    {
        float ob[V_HEAD_DIM * 16];
        for (int c = 0; c < V_HEAD_DIM; ++c)
            vstore16(oT[c] * inv, c, ob);
        for (int r = 0; r < rows; ++r) {
            int c = 0;
            if (p.o_s3 == 1)
                for (; c + 16 <= V_HEAD_DIM; c += 16)
                    STORE16_O(o, orow[r] + c, attn_strided16(ob + c * 16 + r, 16));
            for (; c < V_HEAD_DIM; ++c)
                STORE_O(o, orow[r] + c * p.o_s3, ob[c * 16 + r]);
        }
    }
    if (p.want_lse) {
        float lv[16];
        vstore16(select((float16)(-INFINITY), (m + log2(l)) * ATTN_LN2, seen), 0, lv);
        for (int r = 0; r < rows; ++r)
            lse[p.l_off + b * p.l_s0 + hrow[r] * p.l_s1 + irow[r] * p.l_s2] = lv[r];
    }
}
#undef ATTN_FLAT
