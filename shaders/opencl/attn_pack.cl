/* attn_pack.cl — packs K and V of each (batch, kv head) into tiles of 16 keys for the
 * CPU-class kernel (attn_fwd_cpu.cl), converting storage to f32 and zero-padding keys up to
 * ld_kv (a multiple of 16) and V columns up to VD_PAD; with RoPE, K is rotated here
 * (attn_rope_load), once per key. Tile T of a slab starts at key 16·T:
 *   K: HEAD_DIM rows of 16 floats — K^T of the tile, row d holding element d of its 16 keys;
 *   V: VD_PAD / VD_VEC blocks of 16 keys x VD_VEC columns.
 * Every read of the attention kernel's inner loops is then sequential within a tile, and
 * the elements it broadcasts together share a cache line.
 * Launch: one work-item per key of ld_kv, groups (ld_kv / 16, num_kv_heads, batch) of
 * (16, 1, 1); correctness does not depend on the group size. Work-item j of tile T reads
 * key j's K and V rows and writes column j mod 16 of the tile's K^T and V's row j. */
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

    /* Column t of the tile's K^T: element d of key j goes to row d. Each work-item reads
     * its own key's row front to back (16 elements at a time where K is contiguous and
     * unrotated) and stores 4-byte elements 64 bytes apart; the tile's 16 work-items fill
     * its 4 KiB between them. (Gathering one element of 16 keys per K^T row instead read
     * 16 rows far apart for every 64 bytes written, through a private array that the
     * vector load then read back: on PoCL, 20% and 38% of that kernel's samples.) */
    __global float *kd = kt + slab * HEAD_DIM * p.ld_kv + j0 * HEAD_DIM + t;
    const long krow = p.k_off + b * p.k_s0 + j * p.k_s1 + hk * p.k_s2;
    /* Two tiles ahead: a head's rows are far apart when heads interleave (attn_common.cl). */
    if (j + 32 < p.kv_len) {
        ATTN_PREFETCH_ROW(k + krow + 32 * p.k_s1, HEAD_DIM * sizeof(STORE_T));
        ATTN_PREFETCH_ROW(v + p.v_off + b * p.v_s0 + (j + 32) * p.v_s1 + hk * p.v_s2,
                          V_HEAD_DIM * sizeof(STORE_T));
    }
    int d = 0;
#if !POS_ROPE
    if (p.k_s3 == 1)
        for (; d + 16 <= HEAD_DIM; d += 16) {
            const float16 x = t < keys ? LOAD16_S(k, krow + d) : (float16)(0.0f);
            float e[16];
            vstore16(x, 0, e);
#pragma unroll
            for (int u = 0; u < 16; ++u)
                kd[(d + u) * 16] = e[u];
        }
#endif
    for (; d < HEAD_DIM; ++d)
        kd[d * 16] = t < keys ? attn_rope_load(k, krow, p.k_s3, d, p.k_pos + j, p.a_rope_k, aux, p) : 0.0f;

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
