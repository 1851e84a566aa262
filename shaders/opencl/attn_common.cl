/* attn_common.cl — storage/accumulation types and helpers shared by the OpenCL kernels.
 * The core prepends the `attn_params` declaration before this file and passes the
 * specialisation constants as -D options; every one has a default here. */
#ifndef STORAGE_F16
#define STORAGE_F16 0
#endif
#ifndef MASK_KIND
#define MASK_KIND 0 /* 0 none, 1 additive f32, 2 boolean u8 */
#endif

/* Storage type of Q/K/V/O (STORE_T) is separate from arithmetic, which is always float.
 * Without cl_khr_fp16, half may only be addressed through vload_half/vstore_half. */
#if STORAGE_F16
#define STORE_T half
#define LOAD_S(p, i) vload_half((size_t)(i), (p))
#define STORE_S(p, i, x) vstore_half_rte((x), (size_t)(i), (p))
#define LOAD8_S(p, i) vload_half8(0, (p) + (i))
#else
#define STORE_T float
#define LOAD_S(p, i) ((p)[(i)])
#define STORE_S(p, i, x) ((p)[(i)] = (x))
#define LOAD8_S(p, i) vload8(0, (p) + (i))
#endif

#if MASK_KIND == 2
#define MASK_T uchar
#else
#define MASK_T float
#endif

#define ATTN_LOG2E 1.4426950408889634f
#define ATTN_LN2 0.6931471805599453f

#define ATTN_CAT_(a, b) a##b
#define ATTN_CAT(a, b) ATTN_CAT_(a, b)

/* Output storage: partial results of the scheduler are f32 whatever the input storage. */
#ifndef OUT_F32
#define OUT_F32 0
#endif
/* STORE16_O: 16 consecutive elements from a float16. */
#if OUT_F32
#define OUT_T float
#define STORE_O(p, i, x) ((p)[(i)] = (x))
#define STORE16_O(p, i, x) vstore16((x), 0, (p) + (i))
#else
#define OUT_T STORE_T
#define STORE_O(p, i, x) STORE_S(p, i, x)
#if STORAGE_F16
#define STORE16_O(p, i, x) vstore_half16_rte((x), 0, (p) + (i))
#else
#define STORE16_O(p, i, x) vstore16((x), 0, (p) + (i))
#endif
#endif

/* Software prefetch where the compiler has it and the target is a CPU (PoCL on x86-64):
 * rows that are far apart in memory (a head's rows with the heads interleaved, 2 KiB and
 * more apart) defeat the hardware prefetchers, which follow strides within a 4 KiB page.
 * ATTN_PREFETCH_ROW(p, bytes) touches every 64-byte line of bytes from p; `w` marks lines
 * about to be written. Elsewhere, and with -DATTN_PREFETCH=0, they are no-ops. */
#ifndef ATTN_PREFETCH
#if defined(__clang__) && defined(__x86_64__)
#define ATTN_PREFETCH 1
#else
#define ATTN_PREFETCH 0
#endif
#endif
#if ATTN_PREFETCH
#define ATTN_PREFETCH_LINES_(ptr, bytes, rw)                                                  \
    do {                                                                                       \
        __global const char *attn_pf_ = (__global const char *)(ptr);                         \
        for (int attn_pc_ = 0; attn_pc_ < (int)(bytes); attn_pc_ += 64)                        \
            __builtin_prefetch(attn_pf_ + attn_pc_, rw);                                       \
    } while (0)
#else
#define ATTN_PREFETCH_LINES_(ptr, bytes, rw) ((void)0)
#endif
#define ATTN_PREFETCH_ROW(ptr, bytes) ATTN_PREFETCH_LINES_(ptr, bytes, 0)
#define ATTN_PREFETCH_ROW_W(ptr, bytes) ATTN_PREFETCH_LINES_(ptr, bytes, 1)

/* Key count of batch b in the whole problem. */
inline long attn_batch_kv_len(const attn_params p, __global const int *kv_lens, long b)
{
    return p.has_kv_lens ? clamp((long)kv_lens[b], 0L, p.kv_total) : p.kv_total;
}

/* Keys of batch b this launch may read: those of the batch from k_pos on, at most kv_len. */
inline long attn_kv_len(const attn_params p, __global const int *kv_lens, long b)
{
    return clamp(attn_batch_kv_len(p, kv_lens, b) - p.k_pos, 0L, p.kv_len);
}

/* Causal, bottom-right aligned on the whole problem: launch row i sees launch key j iff
 * j <= i + shift (global row q_pos + i sees global key k_pos + j). */
inline long attn_causal_shift(const attn_params p, __global const int *kv_lens, long b)
{
    return p.q_pos - p.k_pos + attn_batch_kv_len(p, kv_lens, b) - p.q_total;
}

/* ---- patterns, positions and logit transforms (issue 6; src/core/sparse.h) -------------
 * SPARSE: a tile map in the aux buffer lists the 16-key tiles each query block computes.
 * POS_FLAGS: which of ALiBi (1), T5 (2), soft-cap (4), sinks (8), RoPE (16) are on. Their
 * tables are in the aux buffer too (floats as bits), scaled to base-2 logits. */
#ifndef SPARSE
#define SPARSE 0
#endif
#ifndef POS_FLAGS
#define POS_FLAGS 0
#endif
#define POS_ALIBI (POS_FLAGS & 1)
#define POS_T5 (POS_FLAGS & 2)
#define POS_SOFTCAP (POS_FLAGS & 4)
#define POS_SINKS (POS_FLAGS & 8)
#define POS_ROPE (POS_FLAGS & 16)
#define POS_ADDITIVE (POS_ALIBI || POS_T5) /* terms added to every visible score */

/* The key tiles a query block computes, as runs of consecutive tiles: with SPARSE the
 * runs [e0, e1) of the block's map row, else one run of every key up to kend. Kernels
 * loop over runs, then over the run's keys (attn_run_keys), a structure every compiler
 * handles with barriers inside (PoCL did not, with one loop stepping through runs). */
inline int2 attn_runs(__global const int *aux, const attn_params p, long b, long h, long i0)
{
#if SPARSE
    const long m = aux[p.a_maps + (p.b_pos + b) * p.heads_total + p.h_pos + h];
    const long row = p.a_ptr + m * (p.map_nqb + 1) + (p.q_pos + i0) / p.map_qb;
    return (int2)(aux[row], aux[row + 1]);
#else
    return (int2)(0, 1);
#endif
}

/* Run e's launch-local keys [x, y) within [0, kend), and in *bits the partial tile's
 * visibility words in aux, or -1 for tiles every row of the block sees whole. */
inline long2 attn_run_keys(__global const int *aux, const attn_params p, int e, long kend, int *bits)
{
#if SPARSE
    __global const int *run = aux + p.a_runs + 3L * e;
    *bits = run[2];
    return (long2)(max((long)run[0] * 16 - p.k_pos, 0L),
                   min((long)(run[0] + run[1]) * 16 - p.k_pos, kend));
#else
    *bits = -1;
    return (long2)(0L, kend);
#endif
}

/* Whether row r of the query block sees global key jg of a partial tile. */
inline bool attn_tile_sees(__global const int *aux, int bits, int r, long jg)
{
    return bits < 0 || ((aux[bits + r / 2] >> (16 * (r & 1) + (int)(jg & 15))) & 1) != 0;
}

/* Element d of a Q or K row (stored at x[base + d·s3]) after RoPE at table row `row` of the
 * table at word `tab`: pair m of elements (a, b) becomes (a cos - b sin, a sin + b cos). */
inline float attn_rope_load(__global const STORE_T *x, long base, long s3, int d, long row, long tab,
                            __global const int *aux, const attn_params p)
{
    const float v = LOAD_S(x, base + d * s3);
#if POS_ROPE
    const int R = (int)(2 * p.rope_pairs), hp = R / 2;
    if (d < R) {
        int m, pd;
        float sg;
        if (p.rope_interleaved) {
            m = d >> 1;
            pd = d ^ 1;
            sg = (d & 1) ? 1.0f : -1.0f;
        } else {
            m = d < hp ? d : d - hp;
            pd = d < hp ? d + hp : d - hp;
            sg = d < hp ? -1.0f : 1.0f;
        }
        const long t = tab + (row * p.rope_pairs + m) * 2;
        return v * as_float(aux[t]) + sg * LOAD_S(x, base + pd * s3) * as_float(aux[t + 1]);
    }
#endif
    return v;
}

/* Base-2 soft-cap: c·tanh(s / c) of the natural score, in base-2 units (c2 = c·log2 e). */
inline float attn_softcap(float s2, const attn_params p)
{
    return p.softcap2 * tanh(s2 / p.softcap2);
}

/* ALiBi and T5 terms (base 2) of head h for a query at position pos and key jg. */
inline float attn_pos_bias(__global const int *aux, const attn_params p, long h, long pos, long jg)
{
    float x = 0.0f;
#if POS_ALIBI
    x -= as_float(aux[p.a_alibi + h]) * (float)(pos > jg ? pos - jg : jg - pos);
#endif
#if POS_T5
    const long r = clamp(jg - pos, -p.t5_max, p.t5_max);
    x += as_float(aux[p.a_t5 + h * (2 * p.t5_max + 1) + r + p.t5_max]);
#endif
    return x;
}

/* Folds head h's sink (base 2) into a row's final max m and sum l: returns the factor that
 * turns the row's O (already divided by l) into the result, and updates m, l. */
inline float attn_sink_fold(__global const int *aux, const attn_params p, long h, float *m, float *l)
{
    const float s = as_float(aux[p.a_sinks + h]);
    const float mm = fmax(*m, s), a = exp2(*m - mm);
    const float l2 = *l * a + exp2(s - mm);
    const float f = *l * a / l2;
    *m = mm;
    *l = l2;
    return f;
}
