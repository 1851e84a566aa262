/* problem.h — a validated attention problem with every default resolved, and resolved
 * tensor views; shared by the planner, the kernels' launch code and the reference. */
#ifndef ATTN_CORE_PROBLEM_H
#define ATTN_CORE_PROBLEM_H

#include <attn/attn.h>

typedef struct attn__problem {
    int64_t batch, num_heads, num_kv_heads, q_len, kv_len, head_dim, v_head_dim;
    attn_dtype dtype;     /* F32 or F16 */
    double scale;         /* resolved: never 0 */
    int causal;
    attn_mask_kind mask_kind;
    int has_kv_lens;
    int want_lse;
} attn__problem;

/* A tensor with its strides resolved (never all zero) and its data in host memory. */
typedef struct attn__view {
    attn_dtype dtype;
    int64_t shape[4];
    int64_t stride[4];
    void *data;
} attn__view;

/* Exact attention in double precision on host views (src/core/ref/ref.c).
 * mask and lse may be NULL (or have data NULL) when the problem has none; kv_lens NULL
 * means every batch has p->kv_len keys. Rows whose keys are all masked are zero and
 * their lse is -INFINITY. */
void attn__ref_attention(const attn__problem *p, const attn__view *q, const attn__view *k,
                         const attn__view *v, const attn__view *o, const attn__view *mask,
                         const attn__view *lse, const int32_t *kv_lens);

/* The scheduler's exact merge, in double: two partial results (normalised rows o1, o2 of
 * `dim` values and their log-sum-exp) over disjoint key sets combine into (o, lse). Rows
 * with lse -inf on both sides stay zero with lse -inf. The device merge kernel
 * (shaders/opencl/attn_merge.cl) implements the same formula in f32. */
void attn__ref_merge(size_t rows, size_t dim, const double *o1, const double *lse1,
                     const double *o2, const double *lse2, double *o, double *lse);

/* Compressive memory (Infini-attention) in double: read (A_mem mixed with A_local through
 * sigmoid(gate[h]); q_len rows) and update (M += s(K)^T V, z += sum s(k) over kv_len rows).
 * M is [batch][kv_heads][head_dim][v_head_dim], z [batch][kv_heads][head_dim]. */
void attn__ref_infini_read(const attn__problem *p, const attn__view *q, const attn__view *alocal,
                           const double *mem, const double *z, const float *gate,
                           const attn__view *o);
void attn__ref_infini_update(const attn__problem *p, const attn__view *k, const attn__view *v,
                             double *mem, double *z);

/* Effective key length of batch b (clamped to [0, kv_len]) and the causal offset:
 * query i sees key j iff j < len && (!causal || j <= i + len - q_len). */
static inline int64_t attn__kv_len_of(const attn__problem *p, const int32_t *kv_lens, int64_t b)
{
    int64_t n = kv_lens ? kv_lens[b] : p->kv_len;
    return n < 0 ? 0 : (n > p->kv_len ? p->kv_len : n);
}

/* IEEE binary16 <-> binary32 (round to nearest even), src/core/half.c. */
float attn__half_to_float(uint16_t h);
uint16_t attn__float_to_half(float f);

#endif
