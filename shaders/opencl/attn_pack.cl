/* attn_pack.cl — packs K and V of each (batch, kv head) into tiles of 16 keys for the
 * CPU-class kernel (attn_fwd_cpu.cl), converting storage to f32 and zero-padding keys up to
 * ld_kv (a multiple of 16) and V columns up to VD_PAD; with RoPE, K is rotated here
 * (attn_rope_load), once per key. Tile T of a slab starts at key 16·T:
 *   K: HEAD_DIM rows of 16 floats — K^T of the tile, row d holding element d of its 16 keys;
 *   V: VD_PAD / VD_VEC blocks of 16 keys x VD_VEC columns.
 * Every read of the attention kernel's inner loops is then sequential within a tile, and
 * the elements it broadcasts together share a cache line.
 * Launch: one work-item per key of ld_kv, groups (ld_kv / 16, num_kv_heads, batch) of
 * (16, 1, 1); correctness does not depend on the group size. Work-item j of tile T writes
 * the K^T rows d ≡ j (mod 16) and the V row of key j, so every write is a contiguous run. */
#ifndef HEAD_DIM
#define HEAD_DIM 64
#endif
#ifndef V_HEAD_DIM
#define V_HEAD_DIM HEAD_DIM
#endif
#ifndef BLOCK_N
#define BLOCK_N 16
#endif
#ifndef VD_VEC
#define VD_VEC 16
#endif
#ifndef VD_PAD
#define VD_PAD V_HEAD_DIM
#endif
#if BLOCK_N != 16
#error "attn_pack.cl: BLOCK_N must be 16 (a key tile is one float16 of attn_fwd_cpu.cl)"
#endif

/* 16 consecutive stored elements as float16 (unit stride only). */
#if STORAGE_F16
#define LOAD16_S(p, i) vload_half16(0, (p) + (i))
#else
#define LOAD16_S(p, i) vload16(0, (p) + (i))
#endif

__kernel void attn_pack_kv(__global const STORE_T *k, __global const STORE_T *v,
                           __global float *kt, __global float *vp, __global const int *aux,
                           const attn_params p)
{
    const long j = get_global_id(0);
    const long hk = get_global_id(1);
    const long b = get_global_id(2);
    if (j >= p.ld_kv)
        return;
    const long slab = b * p.num_kv_heads + hk;
    const long j0 = j & ~15L; /* first key of the tile */
    const int t = (int)(j & 15);
    const int keys = (int)clamp(p.kv_len - j0, 0L, 16L); /* real keys in the tile */

    /* K^T rows d = t, t + 16, ...: element d of the tile's 16 keys. */
    __global float *kd = kt + slab * HEAD_DIM * p.ld_kv + j0 * HEAD_DIM;
    const long kb = p.k_off + b * p.k_s0 + j0 * p.k_s1 + hk * p.k_s2;
    for (int d = t; d < HEAD_DIM; d += 16) {
        float row[16];
        for (int u = 0; u < 16; ++u)
            row[u] = u < keys ? attn_rope_load(k, kb + u * p.k_s1, p.k_s3, d, p.k_pos + j0 + u,
                                               p.a_rope_k, aux, p)
                              : 0.0f;
        vstore16(vload16(0, row), d, kd);
    }

    /* V row of key j, in VD_VEC-column blocks; whole 16-column runs as vectors when V is
     * contiguous along v_head_dim. */
    __global float *vd = vp + slab * VD_PAD * p.ld_kv + j0 * VD_PAD + t * VD_VEC;
    const long vrow = p.v_off + b * p.v_s0 + j * p.v_s1 + hk * p.v_s2;
    int c = 0;
#if VD_VEC == 16
    if (t < keys && p.v_s3 == 1)
        for (; c + 16 <= V_HEAD_DIM; c += 16)
            vstore16(LOAD16_S(v, vrow + c), 0, vd + c * 16);
#endif
    for (; c < VD_PAD; ++c)
        vd[(c / VD_VEC) * (16 * VD_VEC) + c % VD_VEC] =
            t < keys && c < V_HEAD_DIM ? LOAD_S(v, vrow + c * p.v_s3) : 0.0f;
}
