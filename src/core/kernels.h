/* kernels.h — the kernel interface shared by every kernel source: the launch-parameter
 * block (described once, expanded into C and into each kernel language), source assembly
 * and the per-context cache of compiled kernels. */
#ifndef ATTN_CORE_KERNELS_H
#define ATTN_CORE_KERNELS_H

#include "core/context.h"

/* Run-time sizes and strides of a launch, all in elements. One table: the C struct
 * below and the kernels' `attn_params` declaration are both generated from it. */
#define ATTN__KPARAMS_I64(X)                                                                  \
    X(q_off) X(q_s0) X(q_s1) X(q_s2) X(q_s3)                                                  \
    X(k_off) X(k_s0) X(k_s1) X(k_s2) X(k_s3)                                                  \
    X(v_off) X(v_s0) X(v_s1) X(v_s2) X(v_s3)                                                  \
    X(o_off) X(o_s0) X(o_s1) X(o_s2) X(o_s3)                                                  \
    X(m_off) X(m_s0) X(m_s1) X(m_s2) X(m_s3)                                                  \
    X(l_off) X(l_s0) X(l_s1) X(l_s2)                                                          \
    X(batch) X(num_heads) X(num_kv_heads) X(q_len) X(kv_len)                                  \
    X(ld_kv) /* keys per (batch, kv head) in packed K^T / V scratch */                        \
    X(kv_direct) /* Vulkan CPU-class kernel: K/V read where they are, no packed copies */      \
    X(causal) X(has_kv_lens) X(want_lse) /* run-time switches: no extra JIT variants */      \
    X(q_pos) X(k_pos)     /* global index of this launch's first query row / first key */  \
    X(q_total) X(kv_total) /* the whole problem's q_len / kv_len (causal alignment) */      \
    X(chunk_first) X(chunk_last) /* merge kernel: first / last key chunk of a segment */   \
    X(num_splits) X(split_len) /* decode: key ranges per (batch, kv head), keys per range */ \
    X(b_pos) X(h_pos) X(heads_total) /* global batch / first head of the launch; all heads */ \
    X(partial) /* 1: the launch writes a partial result that the merge kernel finishes */    \
    /* issue 6, word offsets into the aux buffer (src/core/sparse.h) and table sizes */       \
    X(a_maps) X(a_ptr) X(a_runs) X(map_nqb) X(map_qb)                                         \
    X(a_alibi) X(a_t5) X(t5_max) X(a_sinks) X(a_rope_q) X(a_rope_k) X(rope_pairs)            \
    X(rope_interleaved)
#define ATTN__KPARAMS_F32(X)                                                                  \
    X(scale_log2) /* softmax scale times log2(e): kernels work in base 2 */                   \
    X(softcap2) /* soft-cap times log2(e); 0: off */

typedef struct attn__kparams {
#define ATTN__X(n) int64_t n;
    ATTN__KPARAMS_I64(ATTN__X)
#undef ATTN__X
#define ATTN__X(n) float n;
    ATTN__KPARAMS_F32(ATTN__X)
#undef ATTN__X
} attn__kparams;
_Static_assert(sizeof(attn__kparams) <= ATTN__MAX_PARAMS_BYTES, "the params block outgrew a launch's slot");

#define ATTN__MAX_PROGRAM_KERNELS 4

/* Whether the backend's language has a source for kernel `entry` of shader file `file`
 * (each GLSL entry is its own .comp file). */
int attn__kernel_available(const attn_context *ctx, const char *file, const char *entry);

/* The kernels `entries` of one program built from the shader files `files` (after the
 * parameter block and attn_common.cl) specialised by `defines`: from the context's cache,
 * or compiled now. The kernels stay owned by the context. */
attn_status attn__kernels_get(attn_context *ctx, const char *const *files, uint32_t num_files,
                              const char *const *entries, uint32_t num_entries,
                              const attn__define *defines, uint32_t num_defines, void **kernels);

#endif
