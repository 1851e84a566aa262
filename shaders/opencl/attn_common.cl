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
#if OUT_F32
#define OUT_T float
#define STORE_O(p, i, x) ((p)[(i)] = (x))
#else
#define OUT_T STORE_T
#define STORE_O(p, i, x) STORE_S(p, i, x)
#endif

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
