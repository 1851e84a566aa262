/* attn_features.glsl — patterns, positions and logit transforms (issue 6) in the Vulkan
 * shaders; mirrors the issue-6 section of shaders/opencl/attn_common.cl (aux layout in
 * src/core/sparse.h). SPARSE: a tile map in the aux buffer lists the 16-key tiles each
 * query block computes; POS_FLAGS: which of ALiBi (1), T5 (2), soft-cap (4), sinks (8),
 * RoPE (16) are on, their tables in the aux buffer too (floats as bits, base-2 logits).
 * A shader defines ATTN_AUX_SLOT, its aux buffer slot, and includes this file after its
 * other buffers: GLSL passes no buffers to functions, so the helpers read aux_ld. With
 * SPARSE 0 and POS_FLAGS 0 this file declares nothing, and the dense code is unchanged. */
#ifndef SPARSE
#define SPARSE 0
#endif
#ifndef POS_FLAGS
#define POS_FLAGS 0
#endif
#define POS_ALIBI ((POS_FLAGS & 1) != 0)
#define POS_T5 ((POS_FLAGS & 2) != 0)
#define POS_SOFTCAP ((POS_FLAGS & 4) != 0)
#define POS_SINKS ((POS_FLAGS & 8) != 0)
#define POS_ROPE ((POS_FLAGS & 16) != 0)

#if SPARSE || POS_FLAGS != 0
ATTN_BUF_RO(ATTN_AUX_SLOT, int, int, 2, aux)
#define AUX_F(i) intBitsToFloat(aux_ld(i))
#endif

#if SPARSE
/* The runs [x, y) of the tile map row of the query block at launch row i0 of batch b,
 * head h (launch-local), from the first run that reaches this launch's keys on: a
 * scheduled launch binary-searches past the runs of earlier key chunks rather than
 * stepping through them (llvmpipe counts every loop iteration, see keys_cap). */
ivec2 attn_runs(int b, int h, int i0)
{
    const int m = aux_ld(PI(a_maps) + IDX((PN(b_pos) + b) * PN(heads_total) + PN(h_pos) + h));
    const IDX row = PI(a_ptr) + IDX(m) * IDX(PN(map_nqb) + 1) + IDX((PN(q_pos) + i0) / PN(map_qb));
    int lo = aux_ld(row);
    const int hi = aux_ld(row + 1);
    if (PN(k_pos) > 0) {
        const int t0 = PN(k_pos) / 16; /* the launch's first tile */
        int top = hi;
        [[dont_unroll]] while (lo < top) {
            const int mid = (lo + top) / 2;
            const IDX r = PI(a_runs) + IDX(3 * mid);
            if (aux_ld(r) + aux_ld(r + 1) <= t0)
                lo = mid + 1;
            else
                top = mid;
        }
    }
    return ivec2(lo, hi);
}

/* Run e's launch-local keys [x, y), clipped to [0, kend), and in bits the word offset of
 * its partial tile's visibility in aux, or -1 for tiles every row of the block sees
 * whole. Runs ascend: x >= kend means no later run has keys either. */
ivec2 attn_run_keys(int e, int kend, out int bits)
{
    const IDX r = PI(a_runs) + IDX(3 * e);
    const int t = aux_ld(r), n = aux_ld(r + 1);
    bits = aux_ld(r + 2);
    return ivec2(max(t * 16 - PN(k_pos), 0), min((t + n) * 16 - PN(k_pos), kend));
}

/* Row r of the block: its 16 visibility bits in the run's tile (all 16 for whole tiles;
 * one load either way, no branch). Key jg (global) is bit jg & 15. */
int attn_row_bits(int bits, int r)
{
    const int w = aux_ld(IDX(max(bits, 0) + r / 2));
    return bits < 0 ? 0xffff : (w >> (16 * (r & 1))) & 0xffff;
}
#endif

#if POS_ROPE
/* RoPE pair m of a row: elements (a, b) become (a cos - b sin, a sin + b cos), with the
 * (cos, sin) of table row `row` in the table at word `tab`. Pairs are (2m, 2m + 1)
 * interleaved, else (m, m + rope_pairs). */
int attn_rope_partner(int d)
{
    const int hp = PN(rope_pairs);
    if (d >= 2 * hp)
        return d;
    return PN(rope_interleaved) != 0 ? d ^ 1 : d < hp ? d + hp : d - hp;
}

/* Element d of a row after RoPE, from its value v and its partner's value pv. */
float attn_rope_mix(float v, float pv, int d, int row, IDX tab)
{
    const int hp = PN(rope_pairs);
    const bool il = PN(rope_interleaved) != 0, rot = d < 2 * hp;
    const int m = !rot ? 0 : il ? d >> 1 : d < hp ? d : d - hp;
    const float sg = (il ? (d & 1) != 0 : d >= hp) ? 1.0 : -1.0;
    const IDX t = tab + (IDX(row) * IDX(hp) + IDX(m)) * IDX(2);
    const float c = AUX_F(t), s = AUX_F(t + IDX(1));
    return rot ? v * c + sg * pv * s : v;
}

/* Element d of the row at x[base + d·s3] after RoPE at table row `row` of table `tab`. */
#define ATTN_ROPE_LOAD(name, base, s3, d, row, tab)                                          \
    attn_rope_mix(LOAD_S(name, (base) + IDX(d) * (s3)),                                      \
                  LOAD_S(name, (base) + IDX(attn_rope_partner(d)) * (s3)), (d), (row), (tab))
#endif

#if POS_SOFTCAP
/* Base-2 soft-cap: c·tanh(s / c) of the natural score, in base-2 units (c2 = c·log2 e). */
float attn_softcap(float s2)
{
    return p.softcap2 * tanh(s2 / p.softcap2);
}
#endif

#if POS_T5
/* The T5 bias (base 2) of global head gh at relative position rel = key - query. */
float attn_t5_bias(int gh, int rel)
{
    const int T = PN(t5_max);
    return AUX_F(PI(a_t5) + IDX(gh) * IDX(2 * T + 1) + IDX(clamp(rel, -T, T) + T));
}
#endif

#if POS_ALIBI || POS_T5
/* ALiBi and T5 terms (base 2) of global head gh for a query at position pos and key jg
 * (any common origin: only jg - pos matters). */
float attn_pos_bias(int gh, int pos, int jg)
{
    float x = 0.0;
#if POS_ALIBI
    x -= AUX_F(PI(a_alibi) + IDX(gh)) * float(abs(pos - jg));
#endif
#if POS_T5
    x += attn_t5_bias(gh, jg - pos);
#endif
    return x;
}
#endif

#if POS_SINKS
/* Folds global head gh's sink (base 2) into a row's final max m and sum l (l > 0): returns
 * the factor that turns the row's O (already divided by l) into the result. */
float attn_sink_fold(int gh, inout float m, inout float l)
{
    const float s = AUX_F(PI(a_sinks) + IDX(gh));
    const float mm = max(m, s), a = exp2(m - mm);
    const float l2 = l * a + exp2(s - mm);
    const float f = l * a / l2;
    m = mm;
    l = l2;
    return f;
}
#endif
