#version 450
/* attn_fwd_gpu.comp — forward attention for GPU-class devices. Mirrors
 * shaders/opencl/attn_fwd_gpu.cl: a work-group of BLOCK_M invocations owns BLOCK_M query
 * rows of one (batch, head), one row per invocation; the group loads each tile of BLOCK_N
 * keys and values into shared memory cooperatively and every row reads it from there.
 * Online softmax in base 2, one rescale per tile. With SUBGROUP_OPS (the planner: device
 * has subgroups and no quirk against them) and ATTN_VK_SUBGROUP (the backend: vote
 * operations supported in compute), a subgroup whose rows all see no key in a tile skips
 * it together; without them each row decides alone, with the same result.
 * Issue 6 (attn_features.glsl): with a tile map the group's tiles come from the runs of
 * its query block (BLOCK_N <= 16 keys, so a tile never straddles two map tiles); RoPE
 * rotates Q at its load and K at the tile load; soft-cap, ALiBi and T5 apply per score;
 * sinks fold into the row at the end.
 * Buffers: 0 q, 1 k, 2 v, 3 o, 4 mask, 5 kv_lens, 6 lse, 7 aux (issue 6).
 * Launch: groups (ceil(q_len / BLOCK_M), num_heads, batch), local (BLOCK_M, 1, 1). */
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : enable
#include "attn_common.glsl"

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
#ifndef SUBGROUP_OPS
#define SUBGROUP_OPS 1
#endif

/* Head-dim loops step 8 elements per iteration, unrolled by hand: llvmpipe ends an
 * invocation's loops after 65535 dynamic iterations in all (src/core/quirks.c), so fewer
 * iterations per key means longer key ranges per launch; a full [[unroll]] instead would
 * turn the per-invocation arrays into registers that every barrier must save, and
 * llvmpipe's compile time explodes. */
#define ATTN_DOT8(x, a, b, boff, n)                                                          \
    {                                                                                        \
        int d_ = 0;                                                                          \
        [[dont_unroll]] for (; d_ + 8 <= (n); d_ += 8) {                                     \
            [[unroll]] for (int e_ = 0; e_ < 8; ++e_)                                         \
                x = fma(a[d_ + e_], b[(boff) + d_ + e_], x);                                 \
        }                                                                                    \
        [[dont_unroll]] for (; d_ < (n); ++d_)                                               \
            x = fma(a[d_], b[(boff) + d_], x);                                               \
    }
#define ATTN_AXPY8(y, w, b, boff, n)                                                         \
    {                                                                                        \
        int d_ = 0;                                                                          \
        [[dont_unroll]] for (; d_ + 8 <= (n); d_ += 8) {                                     \
            [[unroll]] for (int e_ = 0; e_ < 8; ++e_)                                         \
                y[d_ + e_] = fma(w, b[(boff) + d_ + e_], y[d_ + e_]);                        \
        }                                                                                    \
        [[dont_unroll]] for (; d_ < (n); ++d_)                                               \
            y[d_] = fma(w, b[(boff) + d_], y[d_]);                                           \
    }
#define ATTN_SCALE8(y, w, n)                                                                 \
    {                                                                                        \
        int d_ = 0;                                                                          \
        [[dont_unroll]] for (; d_ + 8 <= (n); d_ += 8) {                                     \
            [[unroll]] for (int e_ = 0; e_ < 8; ++e_)                                         \
                y[d_ + e_] *= w;                                                             \
        }                                                                                    \
        [[dont_unroll]] for (; d_ < (n); ++d_)                                               \
            y[d_] *= w;                                                                      \
    }

/* +1 column: rows of the K tile start in different banks. */
#define KS_LD (HEAD_DIM + 1)

layout(local_size_x = BLOCK_M, local_size_x_id = 0, local_size_y_id = 1, local_size_z_id = 2) in;

ATTN_STORE_RO(0, q)
ATTN_STORE_RO(1, k)
ATTN_STORE_RO(2, v)
ATTN_OUT_WO(3, o)
ATTN_MASK_RO(4)
ATTN_BUF_RO(5, int, int, 2, kv_lens)
ATTN_BUF_WO(6, float, float, 2, lse)
#define ATTN_AUX_SLOT 7
#include "attn_features.glsl"

shared float ks[BLOCK_N * KS_LD];
shared float vs[BLOCK_N * V_HEAD_DIM];

void main()
{
    const int lid = int(gl_LocalInvocationID.x);
    const int nthreads = int(gl_WorkGroupSize.x);
    const int i0 = int(gl_WorkGroupID.x) * nthreads;
    const int i = i0 + lid;
    const int h = int(gl_WorkGroupID.y);
    const int b = int(gl_WorkGroupID.z);
    const int q_len = PN(q_len);
    const int hk = h / (PN(num_heads) / PN(num_kv_heads));
    const int len = ATTN_KV_LEN(b);
    const int shift = ATTN_CAUSAL_SHIFT(b);
    const bool causal = PN(causal) != 0;
    const bool valid = i < q_len;
    /* Causal: the group stops after the last key its last row can see. */
    const int kend = causal ? clamp(min(i0 + nthreads, q_len) + shift, 0, len) : len;

    float qr[HEAD_DIM];
    float acc[V_HEAD_DIM];
    float m = ATTN_NEG_INF, l = 0.0;
    {
        const IDX base = PI(q_off) + IDX(b) * PI(q_s0) + IDX(valid ? i : 0) * PI(q_s1) + IDX(h) * PI(q_s2);
#if POS_ROPE
        [[dont_unroll]] for (int d = 0; d < HEAD_DIM; ++d)
            qr[d] = valid ? ATTN_ROPE_LOAD(q, base, PI(q_s3), d, PN(q_pos) + i, PI(a_rope_q)) *
                                p.scale_log2
                          : 0.0;
#else
        [[dont_unroll]] for (int d = 0; d < HEAD_DIM; ++d)
            qr[d] = valid ? LOAD_S(q, base + IDX(d) * PI(q_s3)) * p.scale_log2 : 0.0;
#endif
        [[dont_unroll]] for (int d = 0; d < V_HEAD_DIM; ++d)
            acc[d] = 0.0;
    }
    const IDX kb = PI(k_off) + IDX(b) * PI(k_s0) + IDX(hk) * PI(k_s2);
    const IDX vb = PI(v_off) + IDX(b) * PI(v_s0) + IDX(hk) * PI(v_s2);
#if POS_ALIBI || POS_T5 || POS_SINKS
    const int gh = PN(h_pos) + h;            /* the head in the whole problem */
    const int qpos = i + shift;              /* the row's position, keys counted from k_pos */
#endif

#if SPARSE
    /* The tiles the group's query block computes: runs of tiles, then each run's key
     * tiles. Runs ascend, so the first past kend ends the loop (uniform in the group). */
    const ivec2 runs = attn_runs(b, h, i0);
    [[dont_unroll]] for (int ru = runs.x; ru < runs.y; ++ru) {
        int tbits;
        const ivec2 keys = attn_run_keys(ru, kend, tbits);
        if (keys.x >= kend)
            break;
        const int vis = attn_row_bits(tbits, lid); /* this row's bits in the run's tiles */
    for (int j0 = keys.x; j0 < keys.y; j0 += BLOCK_N) {
#else
    for (int j0 = 0; j0 < kend; j0 += BLOCK_N) {
#endif
        barrier();
        for (int idx = lid; idx < BLOCK_N * HEAD_DIM; idx += nthreads) {
            const int jj = idx / HEAD_DIM, d = idx - jj * HEAD_DIM;
            const int j = j0 + jj;
#if POS_ROPE
            ks[jj * KS_LD + d] = j < kend ? ATTN_ROPE_LOAD(k, kb + IDX(j) * PI(k_s1), PI(k_s3), d,
                                                           PN(k_pos) + j, PI(a_rope_k))
                                          : 0.0;
#else
            ks[jj * KS_LD + d] = j < kend ? LOAD_S(k, kb + IDX(j) * PI(k_s1) + IDX(d) * PI(k_s3)) : 0.0;
#endif
        }
        for (int idx = lid; idx < BLOCK_N * V_HEAD_DIM; idx += nthreads) {
            const int jj = idx / V_HEAD_DIM, d = idx - jj * V_HEAD_DIM;
            const int j = j0 + jj;
            vs[idx] = j < kend ? LOAD_S(v, vb + IDX(j) * PI(v_s1) + IDX(d) * PI(v_s3)) : 0.0;
        }
        barrier();

        float s[BLOCK_N];
        float mx = ATTN_NEG_INF;
        for (int jj = 0; jj < BLOCK_N; ++jj) {
            const int j = j0 + jj;
            bool ok = valid && j < len && (!causal || j <= i + shift);
            float x = 0.0;
            ATTN_DOT8(x, qr, ks, jj * KS_LD, HEAD_DIM)
#if POS_SOFTCAP
            x = attn_softcap(x);
#endif
#if SPARSE
            ok = ok && ((vis >> ((PN(k_pos) + j) & 15)) & 1) != 0;
#endif
#if POS_ALIBI || POS_T5
            x += attn_pos_bias(gh, qpos, j);
#endif
#if MASK_KIND != 0
            if (ok) {
                const float mv = MASK_LD(PI(m_off) + IDX(b) * PI(m_s0) + IDX(h) * PI(m_s1) +
                                         IDX(i) * PI(m_s2) + IDX(j) * PI(m_s3));
#if MASK_KIND == 1
                x += mv * float(ATTN_LOG2E);
#else
                ok = mv != 0.0;
#endif
            }
#endif
            s[jj] = ok ? x : ATTN_NEG_INF;
            mx = max(mx, s[jj]);
        }
        const float mnew = max(m, mx);
#if SUBGROUP_OPS && ATTN_VK_SUBGROUP
        if (subgroupAll(mnew == ATTN_NEG_INF))
            continue;
#endif
        if (mnew == ATTN_NEG_INF)
            continue;
        const float alpha = exp2(m - mnew);
        l *= alpha;
        ATTN_SCALE8(acc, alpha, V_HEAD_DIM)
        for (int jj = 0; jj < BLOCK_N; ++jj) {
            const float pj = exp2(s[jj] - mnew);
            l += pj;
            ATTN_AXPY8(acc, pj, vs, jj * V_HEAD_DIM, V_HEAD_DIM)
        }
        m = mnew;
    }
#if SPARSE
    }
#endif

    if (!valid)
        return;
    float inv = l > 0.0 ? 1.0 / l : 0.0;
#if POS_SINKS
    if (PN(partial) == 0 && l > 0.0) /* a partial's sink is added once, by the merge */
        inv *= attn_sink_fold(gh, m, l);
#endif
    const IDX base = PI(o_off) + IDX(b) * PI(o_s0) + IDX(i) * PI(o_s1) + IDX(h) * PI(o_s2);
    [[dont_unroll]] for (int d = 0; d < V_HEAD_DIM; ++d)
        STORE_O(o, base + IDX(d) * PI(o_s3), acc[d] * inv);
    if (PN(want_lse) != 0)
        lse_st(PI(l_off) + IDX(b) * PI(l_s0) + IDX(h) * PI(l_s1) + IDX(i) * PI(l_s2),
               l > 0.0 ? (m + log2(l)) * float(ATTN_LN2) : ATTN_NEG_INF);
}
