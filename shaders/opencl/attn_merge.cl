/* attn_merge.cl — the exact merge of the scheduler: folds the partial result of one key
 * chunk (normalised output oc and log-sum-exp lc of a query segment) into the segment's
 * running result (oa, la); on the segment's last chunk it writes the final output in the
 * storage type and layout of the caller's O (and lse). Two partial results over disjoint
 * keys combine as lse = log(e^a + e^c), O = (e^a·Oa + e^c·Oc) / (e^a + e^c).
 * Partial layouts: O [q_len, num_heads, V_HEAD_DIM], lse [num_heads, q_len], f32.
 * Launch: one work-item per (row, head), groups of any size. */
#ifndef V_HEAD_DIM
#define V_HEAD_DIM 64
#endif

__kernel void attn_merge(__global const float *oc, __global const float *lc,
                         __global float *oa, __global float *la, __global STORE_T *o,
                         __global float *lse, __global const int *aux, const attn_params p)
{
    const long idx = get_global_id(0);
    if (idx >= p.q_len * p.num_heads)
        return;
    const long row = idx / p.num_heads, h = idx - row * p.num_heads;
    const long pbase = idx * V_HEAD_DIM;
    const long lidx = h * p.q_len + row;
    const float c = lc[lidx];
    float wa = 0.0f, wc = c == -INFINITY ? 0.0f : 1.0f, lnew = c;
    if (!p.chunk_first) {
        const float a = la[lidx], m = fmax(a, c);
        if (m == -INFINITY) {
            wc = 0.0f;
        } else {
            const float ea = exp(a - m), ec = exp(c - m), s = ea + ec;
            wa = ea / s;
            wc = ec / s;
            lnew = m + log(s);
        }
    }
#if POS_SINKS
    /* The segment's last chunk adds the head's sink to the denominator, once: O scales by
     * e^lse / (e^lse + e^sink). A row that saw no key stays zero with lse -inf. */
    if (p.chunk_last && lnew != -INFINITY) {
        const float sk = as_float(aux[p.a_sinks + p.h_pos + h]) * ATTN_LN2;
        const float mm = fmax(lnew, sk), ea = exp(lnew - mm), s = ea + exp(sk - mm);
        wa *= ea / s;
        wc *= ea / s;
        lnew = mm + log(s);
    }
#endif
    const long obase = p.o_off + row * p.o_s1 + h * p.o_s2;
    for (int d = 0; d < V_HEAD_DIM; ++d) {
        /* Rows with no visible key carry zeros and weight 0: never 0·NaN. */
        float x = wc != 0.0f ? wc * oc[pbase + d] : 0.0f;
        if (wa != 0.0f)
            x += wa * oa[pbase + d];
        if (p.chunk_last)
            STORE_S(o, obase + d * p.o_s3, x);
        else
            oa[pbase + d] = x;
    }
    if (!p.chunk_last)
        la[lidx] = lnew;
    else if (p.want_lse)
        lse[p.l_off + h * p.l_s1 + row * p.l_s2] = lnew;
}
