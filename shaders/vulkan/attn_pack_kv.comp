#version 450
/* attn_pack_kv.comp — packs K and V per (batch, kv head) as ld_kv rows of KD_PAD and
 * VD_PAD floats, converting storage to f32 and zero-padding keys up to ld_kv and columns
 * up to the pads, for the CPU-class kernel (attn_fwd_cpu.comp), whose invocations each
 * load one key's rows as vec4s. (The OpenCL CPU kernel wants K transposed instead:
 * shaders/opencl/attn_pack.cl.) With RoPE (attn_features.glsl), K is rotated here, once
 * per key. K and V load in the widest words their layout allows (KV_VEC,
 * attn_kv_words.glsl), and the rows store as words too: on llvmpipe every load and store
 * is a loop over the lanes, and element by element the packing took ~0.75 us per key and
 * kv head (one thread, d=64 f32), in u64vec4 words ~0.35 us. The word loops stay rolled:
 * unrolled, d=256 took 0.6 s longer to compile at the first dispatch for ~10%.
 * Buffers: 0 k, 1 v, 2 kr, 3 vp, 4 aux (issue 6).
 * Launch: groups (ld_kv / 16, num_kv_heads, batch), local (16, 1, 1). */
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : enable
#include "attn_common.glsl"

#ifndef HEAD_DIM
#define HEAD_DIM 64
#endif
#ifndef V_HEAD_DIM
#define V_HEAD_DIM HEAD_DIM
#endif
#ifndef KD_PAD
#define KD_PAD HEAD_DIM
#endif
#ifndef VD_PAD
#define VD_PAD V_HEAD_DIM
#endif

layout(local_size_x = 16, local_size_x_id = 0, local_size_y_id = 1, local_size_z_id = 2) in;

#define ATTN_KV_SLOT_K 0
#define ATTN_KV_SLOT_V 1
#include "attn_kv_words.glsl"
/* The packed rows as words of PK_EPW floats: u64vec4 where K/V load as u64vec4 (an f32
 * word is then copied as it is), else vec4. Word variants need no zero columns: their
 * head dims are whole words (and the planner pads them to 4 only). */
#if KV_VEC && (KD_PAD != HEAD_DIM || VD_PAD != V_HEAD_DIM)
#error "attn_pack_kv.comp: KV_VEC words need KD_PAD == HEAD_DIM and VD_PAD == V_HEAD_DIM"
#endif
#if KV_VEC == 2
#define PK_EPW 8
#define PK_ZERO u64vec4(0)
ATTN_BUF_WO(2, u64vec4, u64vec4, 5, kr)
ATTN_BUF_WO(3, u64vec4, u64vec4, 5, vp)
#define PK_WORD(t, i)                                                                        \
    u64vec4(pack64(floatBitsToUint(t[2 * (i)].xy)), pack64(floatBitsToUint(t[2 * (i)].zw)),  \
            pack64(floatBitsToUint(t[2 * (i) + 1].xy)), pack64(floatBitsToUint(t[2 * (i) + 1].zw)))
#elif KV_VEC == 1
#define PK_EPW 4
#define PK_ZERO vec4(0.0)
ATTN_BUF_WO(2, vec4, vec4, 4, kr)
ATTN_BUF_WO(3, vec4, vec4, 4, vp)
#define PK_WORD(t, i) t[i]
#else
ATTN_BUF_WO(2, float, float, 2, kr)
ATTN_BUF_WO(3, float, float, 2, vp)
#endif
#define ATTN_AUX_SLOT 4
#include "attn_features.glsl"
#if KV_VEC && POS_ROPE
/* RoPE reads K element by element (each element with its partner), as storage elements
 * at the same binding as kw (the backend binds a slot once, however many blocks alias it). */
ATTN_STORE_RO(ATTN_KV_SLOT_K, k)
#endif

#if KV_VEC
/* Row `src` (storage elements, a multiple of KV_EPW) of kw or vw into `n` floats of the
 * packed row at word `dst` (PK words), in dynamic loops of one load word each. */
#if KV_VEC == 2 && !STORAGE_F16
#define PACK_ROW(wname, pname, src, dst, n)                                                  \
    [[dont_unroll]] for (int c = 0; c < (n) / KV_EPW; ++c)                                   \
        pname##_st((dst) + IDX(c), wname##_ld((src) / IDX(KV_EPW) + IDX(c)));
#else
#define PACK_ROW(wname, pname, src, dst, n)                                                  \
    [[dont_unroll]] for (int c = 0; c < (n) / KV_EPW; ++c) {                                 \
        const KV_WORD w = wname##_ld((src) / IDX(KV_EPW) + IDX(c));                          \
        vec4 t[KV_EPW / 4];                                                                  \
        KV_UNPACK(t, 0, w)                                                                   \
        [[unroll]] for (int i = 0; i < KV_EPW / PK_EPW; ++i)                                 \
            pname##_st((dst) + IDX(c * (KV_EPW / PK_EPW) + i), PK_WORD(t, i));               \
    }
#endif

void main()
{
    const int j = int(gl_GlobalInvocationID.x);
    const IDX hk = IDX(gl_GlobalInvocationID.y);
    const IDX b = IDX(gl_GlobalInvocationID.z);
    const IDX ld = PI(ld_kv);
    if (IDX(j) >= ld)
        return;
    const IDX slab = b * PI(num_kv_heads) + hk;
    const IDX krb = (slab * ld + IDX(j)) * IDX(KD_PAD / PK_EPW);
    const IDX vpb = (slab * ld + IDX(j)) * IDX(VD_PAD / PK_EPW);
    if (j < PN(kv_len)) {
        const IDX kbase = PI(k_off) + b * PI(k_s0) + IDX(j) * PI(k_s1) + hk * PI(k_s2);
#if POS_ROPE
        [[dont_unroll]] for (int c = 0; c < HEAD_DIM / PK_EPW; ++c) {
            vec4 t[PK_EPW / 4];
            [[unroll]] for (int e = 0; e < PK_EPW; ++e)
                t[e / 4][e % 4] = ATTN_ROPE_LOAD(k, kbase, IDX(1), c * PK_EPW + e, PN(k_pos) + j,
                                                 PI(a_rope_k));
            kr_st(krb + IDX(c), PK_WORD(t, 0));
        }
#else
        PACK_ROW(kw, kr, kbase, krb, HEAD_DIM)
#endif
        const IDX vbase = PI(v_off) + b * PI(v_s0) + IDX(j) * PI(v_s1) + hk * PI(v_s2);
        PACK_ROW(vw, vp, vbase, vpb, V_HEAD_DIM)
    } else {
        [[dont_unroll]] for (int c = 0; c < KD_PAD / PK_EPW; ++c)
            kr_st(krb + IDX(c), PK_ZERO);
        [[dont_unroll]] for (int c = 0; c < VD_PAD / PK_EPW; ++c)
            vp_st(vpb + IDX(c), PK_ZERO);
    }
}
#else /* element by element, any layout */
void main()
{
    const int j = int(gl_GlobalInvocationID.x);
    const IDX hk = IDX(gl_GlobalInvocationID.y);
    const IDX b = IDX(gl_GlobalInvocationID.z);
    const IDX ld = PI(ld_kv);
    if (IDX(j) >= ld)
        return;
    const IDX slab = b * PI(num_kv_heads) + hk;
    const IDX krb = (slab * ld + IDX(j)) * IDX(KD_PAD);
    const IDX vpb = (slab * ld + IDX(j)) * IDX(VD_PAD);
    if (j < PN(kv_len)) {
        const IDX kbase = PI(k_off) + b * PI(k_s0) + IDX(j) * PI(k_s1) + hk * PI(k_s2);
#if POS_ROPE
        [[dont_unroll]] for (int d = 0; d < HEAD_DIM; ++d)
            kr_st(krb + IDX(d), ATTN_ROPE_LOAD(k, kbase, PI(k_s3), d, PN(k_pos) + j, PI(a_rope_k)));
#else
        [[dont_unroll]] for (int d = 0; d < HEAD_DIM; ++d)
            kr_st(krb + IDX(d), LOAD_S(k, kbase + IDX(d) * PI(k_s3)));
#endif
        const IDX vbase = PI(v_off) + b * PI(v_s0) + IDX(j) * PI(v_s1) + hk * PI(v_s2);
        [[dont_unroll]] for (int d = 0; d < V_HEAD_DIM; ++d)
            vp_st(vpb + IDX(d), LOAD_S(v, vbase + IDX(d) * PI(v_s3)));
    } else {
        [[dont_unroll]] for (int d = 0; d < HEAD_DIM; ++d)
            kr_st(krb + IDX(d), 0.0);
        [[dont_unroll]] for (int d = 0; d < V_HEAD_DIM; ++d)
            vp_st(vpb + IDX(d), 0.0);
    }
    [[dont_unroll]] for (int d = HEAD_DIM; d < KD_PAD; ++d)
        kr_st(krb + IDX(d), 0.0);
    [[dont_unroll]] for (int d = V_HEAD_DIM; d < VD_PAD; ++d)
        vp_st(vpb + IDX(d), 0.0);
}
#endif
