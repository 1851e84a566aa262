/* attn_fwd_cpu.cl — forward attention for CPU-class devices (PoCL and other CPU OpenCL).
 * One work-item owns BLOCK_M query rows of one (batch, head). Scores for 16 keys are one
 * float16 built from scalar-broadcast FMAs against K^T (packed by attn_pack.cl), so every
 * K vector serves all BLOCK_M rows; P·V walks keys outside and v_head_dim vectors inside,
 * so every V vector serves all rows. Online softmax in base 2 (FlashAttention recurrence).
 * Launch: groups (ceil(q_len / BLOCK_M), num_heads, batch), local (1, 1, 1). */
#ifndef HEAD_DIM
#define HEAD_DIM 64
#endif
#ifndef V_HEAD_DIM
#define V_HEAD_DIM HEAD_DIM
#endif
#ifndef BLOCK_M
#define BLOCK_M 8
#endif
#ifndef VD_VEC
#define VD_VEC 16
#endif
#ifndef VD_PAD
#define VD_PAD V_HEAD_DIM
#endif

#define NVC (VD_PAD / VD_VEC)          /* vectors per V row */
#define floatV ATTN_CAT(float, VD_VEC)
#define vloadV ATTN_CAT(vload, VD_VEC)
#define vstoreV ATTN_CAT(vstore, VD_VEC)

inline float hmax16(float16 x)
{
    float8 a = fmax(x.lo, x.hi);
    float4 b = fmax(a.lo, a.hi);
    float2 c = fmax(b.lo, b.hi);
    return fmax(c.x, c.y);
}

inline float hsum16(float16 x)
{
    float8 a = x.lo + x.hi;
    float4 b = a.lo + a.hi;
    float2 c = b.lo + b.hi;
    return c.x + c.y;
}

__kernel void attn_fwd_cpu(__global const STORE_T *q, __global const float *kt,
                           __global const float *vp, __global OUT_T *o,
                           __global const MASK_T *mask, __global const int *kv_lens,
                           __global float *lse, const attn_params p)
{
    const long i0 = (long)get_global_id(0) * BLOCK_M;
    const long h = get_global_id(1);
    const long b = get_global_id(2);
    if (i0 >= p.q_len)
        return;
    const long hk = h / (p.num_heads / p.num_kv_heads);
    const long len = attn_kv_len(p, kv_lens, b);
    const int rows = (int)min((long)BLOCK_M, p.q_len - i0);
    const long shift = attn_causal_shift(p, kv_lens, b); /* causal: row i sees j <= i + shift */
    const long kend = p.causal ? clamp(i0 + rows + shift, 0L, len) : len;

    /* Q rows, pre-scaled into base-2 logits. Rows past q_len are zero and masked later. */
    float qs[BLOCK_M][HEAD_DIM];
    for (int r = 0; r < BLOCK_M; ++r) {
        const long base = p.q_off + b * p.q_s0 + (i0 + r) * p.q_s1 + h * p.q_s2;
        for (int d = 0; d < HEAD_DIM; ++d)
            qs[r][d] = r < rows ? LOAD_S(q, base + d * p.q_s3) * p.scale_log2 : 0.0f;
    }

    float m[BLOCK_M], l[BLOCK_M];
    floatV acc[BLOCK_M][NVC];
    float pr[BLOCK_M][16];
    for (int r = 0; r < BLOCK_M; ++r) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
        for (int c = 0; c < NVC; ++c)
            acc[r][c] = (floatV)(0.0f);
    }

    const long slab = b * p.num_kv_heads + hk;
    __global const float *ktb = kt + slab * HEAD_DIM * p.ld_kv;
    __global const float *vpb = vp + slab * p.ld_kv * VD_PAD;
    const int16 lane = (int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);

    for (long j0 = 0; j0 < kend; j0 += 16) {
        float16 s[BLOCK_M];
        for (int r = 0; r < BLOCK_M; ++r)
            s[r] = (float16)(0.0f);
        for (int d = 0; d < HEAD_DIM; ++d) {
            const float16 kv = vload16(0, ktb + d * p.ld_kv + j0);
#pragma unroll
            for (int r = 0; r < BLOCK_M; ++r)
                s[r] = fma((float16)(qs[r][d]), kv, s[r]);
        }

        const int16 jj = (int16)((int)j0) + lane;
        for (int r = 0; r < BLOCK_M; ++r) {
            int16 ok = jj < (int16)((int)len);
            if (p.causal)
                ok &= jj <= (int16)((int)(i0 + r + shift));
            if (r >= rows)
                ok = (int16)(0);
#if MASK_KIND != 0
            {
                float mv[16];
                const long mrow = p.m_off + b * p.m_s0 + h * p.m_s1 + (i0 + r) * p.m_s2;
                for (int t = 0; t < 16; ++t) {
                    const long j = j0 + t;
#if MASK_KIND == 1
                    mv[t] = (j < len && r < rows) ? mask[mrow + j * p.m_s3] * ATTN_LOG2E : 0.0f;
#else
                    mv[t] = (j < len && r < rows) ? (float)mask[mrow + j * p.m_s3] : 1.0f;
#endif
                }
#if MASK_KIND == 1
                s[r] += vload16(0, mv);
#else
                ok &= vload16(0, mv) != (float16)(0.0f);
#endif
            }
#endif
            s[r] = select((float16)(-INFINITY), s[r], ok);
            const float mnew = fmax(m[r], hmax16(s[r]));
            if (mnew == -INFINITY) {
                vstore16((float16)(0.0f), 0, pr[r]);
                continue;
            }
            const float alpha = exp2(m[r] - mnew);
            const float16 pv = exp2(s[r] - (float16)(mnew));
            l[r] = l[r] * alpha + hsum16(pv);
            m[r] = mnew;
            if (alpha != 1.0f)
                for (int c = 0; c < NVC; ++c)
                    acc[r][c] *= alpha;
            vstore16(pv, 0, pr[r]);
        }

        const int nk = (int)min(16L, kend - j0);
        for (int c = 0; c < NVC; ++c) {
            floatV a[BLOCK_M];
            for (int r = 0; r < BLOCK_M; ++r)
                a[r] = acc[r][c];
            for (int t = 0; t < nk; ++t) {
                const floatV vv = vloadV(0, vpb + (j0 + t) * VD_PAD + c * VD_VEC);
#pragma unroll
                for (int r = 0; r < BLOCK_M; ++r)
                    a[r] = fma((floatV)(pr[r][t]), vv, a[r]);
            }
            for (int r = 0; r < BLOCK_M; ++r)
                acc[r][c] = a[r];
        }
    }

    for (int r = 0; r < rows; ++r) {
        const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
        float out[VD_PAD];
        for (int c = 0; c < NVC; ++c)
            vstoreV(acc[r][c] * inv, 0, out + c * VD_VEC);
        const long base = p.o_off + b * p.o_s0 + (i0 + r) * p.o_s1 + h * p.o_s2;
        for (int d = 0; d < V_HEAD_DIM; ++d)
            STORE_O(o, base + d * p.o_s3, out[d]);
        if (p.want_lse)
            lse[p.l_off + b * p.l_s0 + h * p.l_s1 + (i0 + r) * p.l_s2] =
                l[r] > 0.0f ? (m[r] + log2(l[r])) * ATTN_LN2 : -INFINITY;
    }
}
