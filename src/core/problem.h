/* problem.h — a validated attention problem with every default resolved, and resolved
 * tensor views; shared by the planner, the kernels' launch code and the reference. */
#ifndef ATTN_CORE_PROBLEM_H
#define ATTN_CORE_PROBLEM_H

#include <attn/attn.h>

/* A tensor with its strides resolved (never all zero) and its data in host memory. */
typedef struct attn__view {
    attn_dtype dtype;
    int64_t shape[4];
    int64_t stride[4];
    void *data;
} attn__view;

/* One validated attn_pattern (attn.h defines the semantics); arrays point into the
 * plan's copy. */
typedef struct attn__pattern {
    int any;                       /* some part is on (else the pattern is dense) */
    int window;
    int64_t win_left, win_right;   /* ATTN_UNBOUNDED (-1): no limit */
    int64_t dilation, dil_left, dil_right;
    const int64_t *global;
    int64_t num_global;
    int64_t rnd_block, rnd_count;
    uint64_t rnd_seed;
    int64_t bsr_bq, bsr_bk;        /* 0: no block-sparse part */
    const int32_t *bsr_row_ptr, *bsr_col_idx;
} attn__pattern;

/* Patterns, positions and logit transforms of issue 6, resolved (defaults filled, arrays
 * copied, floats widened). Owned by the plan (allocated with its kv_lens copy). */
typedef struct attn__features {
    const attn__pattern *patterns; /* NULL: dense */
    int64_t num_patterns;          /* 1: every head; num_heads: one per head */
    const double *alibi_slopes;    /* [num_heads] or NULL */
    const double *t5_table;        /* [num_heads][t5_buckets] or NULL */
    int64_t t5_buckets, t5_max_distance;
    int t5_bidirectional;
    int rope, rope_interleaved;
    double rope_base;
    int64_t rope_dims, rope_q_offset, rope_k_offset;
    double softcap;                /* 0: off */
    const double *sinks;           /* [num_heads] or NULL */
    int probs_mode;                /* attn_probs_mode */
    int64_t probs_head;
    attn__view probs;              /* set by attn__validate_run for each run; data NULL: none */
    /* Devices: the probs tensor of the run (present), in a device buffer (handle, element
     * offset) or in host memory (probs.data). */
    int probs_present;
    void *probs_handle;
    int64_t probs_off;
} attn__features;

typedef struct attn__problem {
    int64_t batch, num_heads, num_kv_heads, q_len, kv_len, head_dim, v_head_dim;
    attn_dtype dtype;     /* F32 or F16 */
    double scale;         /* resolved: never 0 */
    int causal;
    attn_mask_kind mask_kind;
    int has_kv_lens;
    int want_lse;
    attn__features *feat; /* NULL: no pattern, position or logit feature (issue 6) */
} attn__problem;

/* Pattern pieces shared by the reference and the kernels' host code (sparse.c), ref.c:
 * whether pattern pat allows row i (at position qpos) and key j for query head h; the
 * BigBird key block of draw t; the T5 bucket of relative position r = j - qpos. */
int attn__pattern_allows(const attn__problem *p, const attn__pattern *pat, int64_t h, int64_t i,
                         int64_t qpos, int64_t j);
int64_t attn__bigbird_block(uint64_t seed, int64_t h, int64_t qb, int64_t t, int64_t nkb);
int64_t attn__t5_bucket(int64_t r, int64_t num_buckets, int64_t max_distance, int bidirectional);

/* Exact attention in double precision on host views (src/core/ref/ref.c).
 * mask and lse may be NULL (or have data NULL) when the problem has none; kv_lens NULL
 * means every batch has p->kv_len keys. Rows whose keys are all masked are zero and
 * their lse is -INFINITY. With p->feat, its patterns, positions and logit transforms
 * apply and p->feat->probs (when its data is set) receives the probabilities. */
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
