#version 450
/* attn_infini_read.comp — compressive memory of the Infini-attention stream: a query reads
 * the memory of the past segments and mixes it with the segment's local attention.
 * Mirrors attn_infini_read in shaders/opencl/attn_infini.cl (GLSL has one entry point per
 * file; attn_infini_update.comp is the other). Per (batch, kv head) a HEAD_DIM x V_HEAD_DIM
 * matrix M and a HEAD_DIM vector z (f32) summarise all past segments, s = elu + 1:
 * A_mem = s(q) M / (s(q) z), o = g A_mem + (1 - g) A_local, g = sigmoid(gate[h]).
 * The loops over head_dim are unrolled, so an invocation loops V_HEAD_DIM times in all
 * (llvmpipe stops an invocation's loops after 65535 iterations: src/core/quirks.c).
 * Buffers: 0 q, 1 alocal, 2 mem, 3 z, 4 gate, 5 o; the o strides also address alocal;
 * M [batch][kv_heads][HEAD_DIM][V_HEAD_DIM], z [batch][kv_heads][HEAD_DIM].
 * Launch: groups (ceil(q_len / local x), num_heads, batch), local (any, 1, 1). */
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : enable
#include "attn_common.glsl"

#ifndef HEAD_DIM
#define HEAD_DIM 64
#endif
#ifndef V_HEAD_DIM
#define V_HEAD_DIM HEAD_DIM
#endif

layout(local_size_x = 1, local_size_x_id = 0, local_size_y_id = 1, local_size_z_id = 2) in;

ATTN_STORE_RO(0, q)
ATTN_STORE_RO(1, alocal)
ATTN_BUF_RO(2, float, float, 2, mem)
ATTN_BUF_RO(3, float, float, 2, z)
ATTN_BUF_RO(4, float, float, 2, gate)
ATTN_STORE_WO(5, o)

float attn_sigma(float x) { return x > 0.0 ? x + 1.0 : exp(x); }

void main()
{
    const int i = int(gl_GlobalInvocationID.x);
    const int h = int(gl_WorkGroupID.y), b = int(gl_WorkGroupID.z);
    if (i >= PN(q_len))
        return;
    const int hk = h / (PN(num_heads) / PN(num_kv_heads));
    const IDX slab = IDX(b) * PI(num_kv_heads) + IDX(hk);
    const IDX mb = slab * IDX(HEAD_DIM * V_HEAD_DIM);
    const IDX qb = PI(q_off) + IDX(b) * PI(q_s0) + IDX(i) * PI(q_s1) + IDX(h) * PI(q_s2);
    float sq[HEAD_DIM];
    float den = 0.0;
    [[unroll]] for (int d = 0; d < HEAD_DIM; ++d) {
        sq[d] = attn_sigma(LOAD_S(q, qb + IDX(d) * PI(q_s3)));
        den = fma(sq[d], z_ld(slab * IDX(HEAD_DIM) + IDX(d)), den);
    }
    const float g = 1.0 / (1.0 + exp(-gate_ld(IDX(h))));
    const IDX ob = PI(o_off) + IDX(b) * PI(o_s0) + IDX(i) * PI(o_s1) + IDX(h) * PI(o_s2);
    [[dont_unroll]] for (int c = 0; c < V_HEAD_DIM; ++c) {
        float num = 0.0;
        [[unroll]] for (int d = 0; d < HEAD_DIM; ++d)
            num = fma(sq[d], mem_ld(mb + IDX(d * V_HEAD_DIM + c)), num);
        const float amem = den > 0.0 ? num / den : 0.0;
        const float loc = LOAD_S(alocal, ob + IDX(c) * PI(o_s3));
        STORE_S(o, ob + IDX(c) * PI(o_s3), g * amem + (1.0 - g) * loc);
    }
}
