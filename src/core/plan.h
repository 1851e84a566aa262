/* plan.h — the plan object and run-time tensor binding, shared by validate.c and plan.c. */
#ifndef ATTN_CORE_PLAN_H
#define ATTN_CORE_PLAN_H

#include "core/context.h"
#include "core/kernels.h"

enum { ATTN__T_Q, ATTN__T_K, ATTN__T_V, ATTN__T_O, ATTN__T_MASK, ATTN__T_LSE, ATTN__T_COUNT };

/* A run argument after validation. */
typedef struct attn__bound {
    int present;
    attn__view view;       /* strides resolved; data = host pointer for host tensors */
    attn_buffer *buffer;   /* library buffer, or NULL for host tensors */
    uint64_t elem_off;     /* element offset into buffer */
    uint64_t span;         /* elements from the first to one past the last addressed */
    int dense;             /* strides are the default dense layout */
} attn__bound;

/* Specialisation constants of the attention kernels, described once: the define list
 * of every program is expanded from this table. What changes per run (causal, key
 * lengths, lse) is a run-time switch in attn_params instead, so it costs no compile. */
typedef struct attn__kspec {
#define ATTN__KSPEC(X)                                                                        \
    X(HEAD_DIM, head_dim)                                                                     \
    X(V_HEAD_DIM, v_head_dim)                                                                 \
    X(STORAGE_F16, storage_f16)                                                               \
    X(MASK_KIND, mask_kind)                                                                   \
    X(BLOCK_M, block_m)  /* CPU: rows per work-item; GPU: rows (= work-items) per group */    \
    X(BLOCK_N, block_n)  /* keys per tile */                                                  \
    X(VD_VEC, vd_vec)    /* CPU: v_head_dim columns per P·V register tile */                  \
    X(VD_PAD, vd_pad)    /* CPU: v_head_dim padded to VD_VEC */                               \
    X(KD_PAD, kd_pad)    /* CPU: floats per packed K row (Vulkan: head_dim padded to 4) */    \
    X(UNROLL_D, unroll_d) /* Vulkan CPU: head-dim loops unrolled (1), O's only (2), none (0) */ \
    X(KEYS_PER_LANE, keys_per_lane) /* Vulkan CPU: keys each lane loads per block */        \
    X(OUT_F32, out_f32)  /* scheduler: partial outputs in f32 whatever the storage */     \
    X(SUBGROUP_OPS, subgroup_ops) /* GPU: subgroup operations allowed (caps + quirks) */  \
    X(SPARSE, sparse)    /* issue 6: a tile map lists the key tiles of each query block */  \
    X(POS_FLAGS, pos_flags) /* issue 6: ALiBi 1, T5 2, soft-cap 4, sinks 8, RoPE 16 */
#define ATTN__X(NAME, field) long long field;
    ATTN__KSPEC(ATTN__X)
#undef ATTN__X
} attn__kspec;

/* Device scratch kept by a plan between runs. */
enum {
    ATTN__S_Q, ATTN__S_K, ATTN__S_V, ATTN__S_O, ATTN__S_MASK, ATTN__S_LSE, /* host staging */
    ATTN__S_KV_LENS, ATTN__S_KT, ATTN__S_VP, ATTN__S_OPART, ATTN__S_LPART,
    ATTN__S_AUX, /* the tile map and position tables (src/core/sparse.h) */
    ATTN__S_PROBS, ATTN__S_PLSE, /* probabilities: host staging; lse when the caller has none */
    ATTN__S_COUNT
};

typedef struct attn__scratch {
    void *handle;
    uint64_t bytes;
} attn__scratch;

struct attn_plan {
    attn_context *ctx;
    attn__problem pb;
    int32_t *kv_lens;     /* plan's copy, or NULL */
    attn_plan_info info;
    uint32_t vd_pad;      /* CPU family: v_head_dim padded to the vector width */
    uint32_t kd_pad;      /* CPU family: floats per key in the packed K copy */
    attn__kspec spec;     /* the specialisation chosen by the planner */
    void *k_pack, *k_main;
    /* Vulkan: packing kernels in K/V words narrower than the plan's (KV_VEC 0 and 1), for
     * runs whose layout does not fit them; compiled on first need (attn__plan_pack_kernel). */
    void *k_pack_narrow[2];
    /* The scheduler's kernels (attention with f32 partial output, packing, merge),
     * compiled when the plan is scheduled or first falls back to the scheduler. */
    void *k_cpack, *k_cmain, *k_merge;
    /* Decode (split-KV): few query rows per kv head over many keys. */
    int decode;
    uint32_t num_splits, split_len;
    uint32_t dec_dl, dec_rc; /* Vulkan: lanes per key, rows per group (attn_decode.comp) */
    void *k_dec, *k_dec_merge;
    void *k_probs; /* desc.want_probs on a device (src/core/probs.c) */
    attn__scratch scratch[ATTN__S_COUNT];
    /* Issue 6 features on a device: the aux words (tile map, position tables), rebuilt
     * when a run's key lengths differ from those it was built for; NULL without features. */
    struct attn__aux *aux;
    int aux_uploaded;     /* scratch[ATTN__S_AUX] holds aux's words */
    struct attn_plan *prev, *next;
};

size_t attn__dtype_size(attn_dtype t);
/* Whether a tensor of the plan's problem may be bound in windows on Vulkan (see plan.c). */
int attn__plan_may_window(const attn_plan *plan);

#define ATTN__CPU_KEY_VEC 16 /* keys per score vector in the CPU family (float16) */
#define ATTN__PACK_GROUP 16  /* work-items per group of the packing kernel */

/* Issue 6 features: builds the plan's aux words for these key lengths if needed, uploads
 * them once, sets their launch parameters and gives the buffer (NULL without features). */
attn_status attn__plan_aux(attn_plan *plan, const int32_t *kv_lens, attn__kparams *kp,
                           void **handle);

/* Device scratch of at least `bytes` in slot `s`, kept for later runs (plan.c). */
attn_status attn__plan_scratch(attn_plan *plan, int s, uint64_t bytes, void **handle);

/* Probabilities on a device (src/core/probs.c): the kernel, the device bytes they add, and
 * the launch after the attention kernel of a one-pass run has written the rows' lse. */
attn_status attn__probs_compile(attn_plan *plan, const attn__define *defs, uint32_t nd);
uint64_t attn__probs_bytes(const attn_plan *plan);
attn_status attn__probs_run(attn_plan *plan, const attn__kparams *main_kp, void *q, void *k,
                            void *mask, void *lens, void *lse, void *aux);

/* Whether the Vulkan CPU-class kernel reads a launch's K and V (kp) where they are, with no
 * packed copies and no packing launch (attn_fwd_cpu.comp, kv_direct). */
int attn__plan_kv_direct(const attn_plan *plan, const attn__kparams *kp);

/* Keys per iteration of a prefill kernel's key loop: block_n, times keys_per_lane in the
 * Vulkan CPU-class kernel (attn_fwd_cpu.comp, KB). */
uint64_t attn__plan_key_block(const attn_plan *plan);

/* Rows per (batch, kv head) of the CPU family's packed K/V copies for `keys` keys: whole
 * 16-key tiles, and whole key blocks of the Vulkan kernel (block_n x keys_per_lane),
 * which reads every key of its last block. */
uint64_t attn__plan_kv_ld(const attn_plan *plan, uint64_t keys);

/* The CPU family's packing kernel for a launch's K/V (kp): `planned` (k_pack or k_cpack),
 * or on Vulkan, where their layout does not fit its K/V words, a narrower variant (plan.c). */
attn_status attn__plan_pack_kernel(attn_plan *plan, const attn__kparams *kp, void *planned,
                                   void **kernel);

/* Compiles the scheduler's kernels of a plan (idempotent). */
attn_status attn__plan_chunk_kernels(attn_plan *plan);

/* Runs a plan as query segments x key chunks within the device-memory budget, merging
 * partial results exactly (src/core/schedule.c). */
attn_status attn__run_scheduled(attn_plan *plan, const attn__bound bound[ATTN__T_COUNT],
                                const int32_t *kv_lens, const attn_run_args *args);

/* Keys one launch of the plan may cover on a loop-capped device (UINT64_MAX: no limit). */
uint64_t attn__keys_cap(const attn_plan *plan);

/* Plans segment rows / chunk keys for the budget; fills plan->info's scheduler fields. */
void attn__schedule_plan(attn_plan *plan);

/* Row-major strides (in elements) of a dense tensor of `shape`. */
void attn__dense_strides(const int64_t shape[4], int64_t out[4]);

/* Copies a 4-D strided tensor of `es`-byte elements between two layouts. */
void attn__copy_strided(char *dst, const int64_t ds[4], const char *src, const int64_t ss[4],
                        const int64_t shape[4], size_t es);

/* Checks a description and resolves its defaults. On success *kv_lens is a copy of the
 * description's lengths (or NULL); the caller frees it. */
attn_status attn__validate_desc(attn_context *ctx, const attn_desc *desc, attn__problem *pb,
                                int32_t **kv_lens);

/* Checks run arguments against the plan and binds them. */
attn_status attn__validate_run(const attn_plan *plan, const attn_run_args *args,
                               attn__bound bound[ATTN__T_COUNT]);

#endif
