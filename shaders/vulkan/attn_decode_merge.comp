#version 450
/* attn_decode_merge.comp — combines the partials of attn_decode.comp exactly:
 * O = sum_s w_s O_s / sum_s w_s, w_s = e^(lse_s - max), lse = max + ln(sum_s w_s).
 * Same merge as attn_decode_merge in shaders/opencl/attn_decode.cl, one invocation per
 * (row, column) instead of per row: an invocation then loops 2 x num_splits times, well
 * below llvmpipe's per-invocation loop cap (src/core/quirks.c), where a row's
 * num_splits x V_HEAD_DIM could pass it.
 * Buffers: 0 opart, 1 lpart, 2 o, 3 lse.
 * Launch: groups (ceil(ROWS * V_HEAD_DIM / 64), num_kv_heads, batch), local (64, 1, 1). */
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : enable
#include "attn_common.glsl"

#ifndef V_HEAD_DIM
#define V_HEAD_DIM 64
#endif

layout(local_size_x = 64, local_size_x_id = 0, local_size_y_id = 1, local_size_z_id = 2) in;

ATTN_BUF_RO(0, float, float, 2, opart)
ATTN_BUF_RO(1, float, float, 2, lpart)
ATTN_STORE_WO(2, o)
ATTN_BUF_WO(3, float, float, 2, lse)

void main()
{
    const IDX x = IDX(gl_GlobalInvocationID.x), hk = IDX(gl_WorkGroupID.y);
    const IDX b = IDX(gl_WorkGroupID.z);
    const IDX G = PI(num_heads) / PI(num_kv_heads);
    const IDX rows = PI(q_len) * G;
    const IDX r = x / IDX(V_HEAD_DIM), d = x % IDX(V_HEAD_DIM);
    if (r >= rows)
        return;
    const IDX i = r / G, h = hk * G + r % G;
    const IDX splits = PI(num_splits);
    const IDX first = (b * PI(num_kv_heads) + hk) * splits * rows + r;
    float mx = ATTN_NEG_INF;
    for (IDX s = 0; s < splits; ++s)
        mx = max(mx, lpart_ld(first + s * rows));
    float res = 0.0, wsum = 0.0;
    if (mx != ATTN_NEG_INF) {
        for (IDX s = 0; s < splits; ++s) {
            const float ls = lpart_ld(first + s * rows);
            const float w = ls == ATTN_NEG_INF ? 0.0 : exp(ls - mx);
            wsum += w;
            res = fma(w, opart_ld((first + s * rows) * IDX(V_HEAD_DIM) + d), res);
        }
    }
    const float inv = wsum > 0.0 ? 1.0 / wsum : 0.0;
    const IDX ob = PI(o_off) + b * PI(o_s0) + i * PI(o_s1) + h * PI(o_s2);
    STORE_S(o, ob + d * PI(o_s3), res * inv);
    if (PN(want_lse) != 0 && d == IDX(0))
        lse_st(PI(l_off) + b * PI(l_s0) + h * PI(l_s1) + i * PI(l_s2),
               wsum > 0.0 ? mx + log(wsum) : ATTN_NEG_INF);
}
