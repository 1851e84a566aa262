#version 450
/* attn_merge.comp — the exact merge of the scheduler; mirrors shaders/opencl/attn_merge.cl.
 * Folds the partial result of one key chunk (normalised output oc and log-sum-exp lc of a
 * query segment) into the segment's running result (oa, la); on the segment's last chunk
 * it writes the final output in the storage type and layout of the caller's O (and lse).
 * Two partial results over disjoint keys combine as lse = log(e^a + e^c),
 * O = (e^a·Oa + e^c·Oc) / (e^a + e^c).
 * Partial layouts: O [q_len, num_heads, V_HEAD_DIM], lse [num_heads, q_len], f32.
 * With sinks (attn_features.glsl) the segment's last chunk adds the head's sink once.
 * Buffers: 0 oc, 1 lc, 2 oa, 3 la, 4 o, 5 lse, 6 aux (issue 6).
 * Launch: one invocation per (row, head), groups of any size. */
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : enable
#include "attn_common.glsl"

#ifndef V_HEAD_DIM
#define V_HEAD_DIM 64
#endif

layout(local_size_x = 64, local_size_x_id = 0, local_size_y_id = 1, local_size_z_id = 2) in;

ATTN_BUF_RO(0, float, float, 2, oc)
ATTN_BUF_RO(1, float, float, 2, lc)
ATTN_BUF_WO(2, float, float, 2, oa)
ATTN_BUF_WO(3, float, float, 2, la)
ATTN_STORE_WO(4, o)
ATTN_BUF_WO(5, float, float, 2, lse)
#define ATTN_AUX_SLOT 6
#include "attn_features.glsl"

void main()
{
    const IDX idx = IDX(gl_GlobalInvocationID.x);
    const IDX q_len = PI(q_len), heads = PI(num_heads);
    if (idx >= q_len * heads)
        return;
    const IDX row = idx / heads, h = idx - row * heads;
    const IDX pbase = idx * IDX(V_HEAD_DIM);
    const IDX lidx = h * q_len + row;
    const float c = lc_ld(lidx);
    float wa = 0.0, wc = c == ATTN_NEG_INF ? 0.0 : 1.0, lnew = c;
    if (PN(chunk_first) == 0) {
        const float a = la_ld(lidx), m = max(a, c);
        if (m == ATTN_NEG_INF) {
            wc = 0.0;
        } else {
            const float ea = exp(a - m), ec = exp(c - m), s = ea + ec;
            wa = ea / s;
            wc = ec / s;
            lnew = m + log(s);
        }
    }
    const bool last = PN(chunk_last) != 0;
#if POS_SINKS
    /* The segment's last chunk adds the head's sink to the denominator, once: O scales by
     * e^lse / (e^lse + e^sink). A row that saw no key stays zero with lse -inf. */
    if (last && lnew != ATTN_NEG_INF) {
        const float sk = AUX_F(PI(a_sinks) + IDX(PN(h_pos)) + h) * float(ATTN_LN2);
        const float mm = max(lnew, sk), ea = exp(lnew - mm), sm = ea + exp(sk - mm);
        wa *= ea / sm;
        wc *= ea / sm;
        lnew = mm + log(sm);
    }
#endif
    const IDX obase = PI(o_off) + row * PI(o_s1) + h * PI(o_s2);
    [[dont_unroll]] for (int d = 0; d < V_HEAD_DIM; ++d) {
        /* Rows with no visible key carry zeros and weight 0: never 0·NaN. */
        float x = wc != 0.0 ? wc * oc_ld(pbase + IDX(d)) : 0.0;
        if (wa != 0.0)
            x += wa * oa_ld(pbase + IDX(d));
        if (last) {
            STORE_S(o, obase + IDX(d) * PI(o_s3), x);
        } else {
            oa_st(pbase + IDX(d), x);
        }
    }
    if (!last)
        la_st(lidx, lnew);
    else if (PN(want_lse) != 0)
        lse_st(PI(l_off) + h * PI(l_s1) + row * PI(l_s2), lnew);
}
