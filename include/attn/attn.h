/* attn.h — the public API of libattn: exact attention on OpenCL and Vulkan devices,
 * JIT-specialised per device and problem. C11, usable from C++. One include. */
#ifndef ATTN_ATTN_H
#define ATTN_ATTN_H

#include <stddef.h>
#include <stdint.h>

#include <attn/attn_version.h>

#if defined(ATTN_STATIC)
#define ATTN_API
#elif defined(_WIN32)
#ifdef ATTN_BUILDING
#define ATTN_API __declspec(dllexport)
#else
#define ATTN_API __declspec(dllimport)
#endif
#elif defined(__GNUC__)
#define ATTN_API __attribute__((visibility("default")))
#else
#define ATTN_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status codes ------------------------------------------------------------------
 * One table generates the enum, attn_status_name() and attn_status_string().
 * Values never change once released; new codes are appended. */
#define ATTN_STATUS_MAP(X)                                                                     \
    X(OK, 0, "success")                                                                        \
    X(ERROR_NULL_POINTER, -1, "a required pointer argument is NULL")                           \
    X(ERROR_STRUCT_SIZE, -2, "struct_size of a params struct is wrong (too small or unset)")   \
    X(ERROR_INVALID_ARGUMENT, -3, "an argument has a value outside its allowed range")         \
    X(ERROR_INVALID_SHAPE, -4, "a size is zero, negative or inconsistent")                     \
    X(ERROR_HEADS_MISMATCH, -5, "num_heads is not a multiple of num_kv_heads")                 \
    X(ERROR_HEAD_DIM_UNSUPPORTED, -6, "head_dim or v_head_dim is larger than any kernel supports") \
    X(ERROR_OVERFLOW, -7, "a size or byte count overflows 64 bits")                            \
    X(ERROR_DTYPE_MISMATCH, -8, "a tensor's dtype does not match the description")             \
    X(ERROR_SHAPE_MISMATCH, -9, "a tensor's shape does not match the plan")                    \
    X(ERROR_INVALID_STRIDE, -10, "a stride is negative, or a tensor does not fit its storage") \
    X(ERROR_ALIASING, -11, "an output overlaps an input or overlaps itself")                   \
    X(ERROR_NO_DEVICE, -12, "no device with that backend and index")                           \
    X(ERROR_UNSUPPORTED, -13, "not supported by this build or this device")                    \
    X(ERROR_OUT_OF_HOST_MEMORY, -14, "out of host memory")                                     \
    X(ERROR_OUT_OF_DEVICE_MEMORY, -15, "out of device memory")                                 \
    X(ERROR_OVER_BUDGET, -16, "the device-memory budget is too small for this problem")        \
    X(ERROR_JIT_FAILED, -17, "kernel compilation failed; the build log is in the detail message") \
    X(ERROR_BACKEND, -18, "the device API reported an error; see the detail message")          \
    X(ERROR_WRONG_CONTEXT, -19, "an object belongs to another context")                        \
    X(ERROR_CANCELLED, -20, "cancelled by the caller")                                         \
    X(ERROR_OUT_OF_RANGE, -21, "an offset or size lies outside the buffer")

typedef enum attn_status {
#define ATTN__STATUS_ENUM(name, value, msg) ATTN_##name = value,
    ATTN_STATUS_MAP(ATTN__STATUS_ENUM)
#undef ATTN__STATUS_ENUM
} attn_status;

/* "ATTN_ERROR_NULL_POINTER"-style name; "ATTN_UNKNOWN_STATUS" for values not in the map. */
ATTN_API const char *attn_status_name(attn_status s);
/* One-line English description. Never NULL. */
ATTN_API const char *attn_status_string(attn_status s);

/* Runtime version: major*10000 + minor*100 + patch, and "major.minor.patch". */
ATTN_API uint32_t attn_version_number(void);
ATTN_API const char *attn_version_string(void);

/* Detail of the most recent failure on the calling thread (any function), e.g. the
 * device's build log after ATTN_ERROR_JIT_FAILED. Never NULL; "" when none. The string
 * stays valid until the next failing call on this thread. */
ATTN_API const char *attn_last_detail(void);

/* ---- devices --------------------------------------------------------------------------*/
typedef enum attn_backend {
    ATTN_BACKEND_AUTO = 0,      /* context: pick the best device; enumeration: all backends */
    ATTN_BACKEND_REFERENCE = 1, /* exact double-precision attention on the host (the oracle) */
    ATTN_BACKEND_OPENCL = 2,
    ATTN_BACKEND_VULKAN = 3
} attn_backend;

typedef enum attn_device_type {
    ATTN_DEVICE_OTHER = 0,
    ATTN_DEVICE_CPU = 1,
    ATTN_DEVICE_INTEGRATED_GPU = 2,
    ATTN_DEVICE_DISCRETE_GPU = 3
} attn_device_type;

/* What the planner knows of a device. Plain data; thread-compatible. */
typedef struct attn_device_info {
    size_t struct_size;          /* set by the caller: sizeof(attn_device_info) */
    attn_backend backend;
    uint32_t index;              /* index within its backend */
    attn_device_type type;
    char name[256];
    char vendor[128];
    char driver_version[128];
    char api_version[128];       /* e.g. "OpenCL 3.0 PoCL 3.1" */
    char platform[128];
    uint32_t vendor_id;
    uint32_t compute_units;
    uint64_t global_mem_bytes;
    uint64_t max_alloc_bytes;    /* largest single buffer (OpenCL max allocation) */
    uint64_t max_binding_bytes;  /* largest range one kernel argument may address */
    uint64_t local_mem_bytes;
    uint32_t max_work_group_size;
    uint32_t subgroup_size;      /* 0 when unknown */
    int fp16_compute;            /* arithmetic in half precision */
    int fp16_storage;            /* f16 tensors can be read/written (attn always converts) */
    int fp64;
    int unified_memory;
    uint32_t subgroup_ops;       /* ATTN_SUBGROUP_* bits usable in compute kernels; 0 when
                                  * unknown (the planner then avoids subgroup operations) */
} attn_device_info;

/* attn_device_info.subgroup_ops: Vulkan's VkSubgroupFeatureFlagBits of the same names. */
#define ATTN_SUBGROUP_VOTE 0x1u    /* all / any */
#define ATTN_SUBGROUP_BALLOT 0x2u  /* ballot, broadcast */
#define ATTN_SUBGROUP_SHUFFLE 0x4u /* shuffle by lane index */

/* Number of devices of `backend` (ATTN_BACKEND_AUTO: of every backend built, the reference
 * backend included). A backend that is built but finds no driver reports 0, not an error. */
ATTN_API attn_status attn_device_count(attn_backend backend, uint32_t *count);
/* Info of device `index` in the same order as attn_device_count. */
ATTN_API attn_status attn_device_get_info(attn_backend backend, uint32_t index,
                                          attn_device_info *info);

/* ---- context ---------------------------------------------------------------------------*/
/* A context owns one device, its compiled kernels and its buffers. A context may be used
 * from several threads as long as each plan and buffer is used by one thread at a time. */
typedef struct attn_context attn_context;

typedef enum attn_log_level {
    ATTN_LOG_ERROR = 0,
    ATTN_LOG_WARN = 1,
    ATTN_LOG_INFO = 2,
    ATTN_LOG_DEBUG = 3
} attn_log_level;

typedef void (*attn_log_fn)(void *user, attn_log_level level, const char *message);

typedef enum attn_kernel_family {
    ATTN_FAMILY_AUTO = 0, /* by device class; ATTN_KERNEL_FAMILY=cpu|gpu overrides it */
    ATTN_FAMILY_CPU = 1,  /* a work-item owns a register tile of query rows, vectors over keys */
    ATTN_FAMILY_GPU = 2   /* work-group-cooperative K/V tiles in local memory */
} attn_kernel_family;

typedef struct attn_context_params {
    size_t struct_size;              /* sizeof(attn_context_params) */
    attn_backend backend;            /* AUTO: a GPU if any, else OpenCL, Vulkan, reference */
    uint32_t device_index;           /* within the backend (ignored for AUTO) */
    uint64_t memory_budget;          /* bytes of device memory to use at most; 0 = device's */
    const char *cache_dir;           /* persistent JIT cache; NULL: $ATTN_CACHE_DIR, else
                                        $XDG_CACHE_HOME/attn, else ~/.cache/attn; "" (or
                                        ATTN_CACHE_DIR set empty): no disk cache */
    attn_log_fn log_fn;              /* NULL: the library never prints */
    void *log_user;
    attn_log_level log_level;        /* messages at or below this level reach log_fn */
    attn_kernel_family kernel_family;/* AUTO: planner's choice */
} attn_context_params;

#define ATTN_CONTEXT_PARAMS_INIT                                                              \
    {                                                                                          \
        sizeof(attn_context_params), ATTN_BACKEND_AUTO, 0, 0, NULL, NULL, NULL, ATTN_LOG_WARN, \
            ATTN_FAMILY_AUTO                                                                   \
    }

/* params may be NULL (defaults). On failure *out is NULL and attn_last_detail() says why. */
ATTN_API attn_status attn_context_create(const attn_context_params *params, attn_context **out);
/* Accepts NULL. Destroys the plans and buffers still alive in the context. */
ATTN_API void attn_context_destroy(attn_context *ctx);
ATTN_API attn_status attn_context_device_info(const attn_context *ctx, attn_device_info *info);
/* Detail of the most recent failure in this context ("" if none). Valid until the next
 * call on the context. */
ATTN_API const char *attn_context_detail(const attn_context *ctx);

typedef struct attn_stats {
    size_t struct_size;         /* sizeof(attn_stats) */
    uint64_t device_bytes;      /* allocated now */
    uint64_t peak_device_bytes; /* high-water mark since creation or reset */
    uint64_t memory_budget;     /* the budget in force */
    uint64_t bytes_uploaded;
    uint64_t bytes_downloaded;
    uint64_t kernels_compiled;
    uint64_t compile_cache_hits;
    uint64_t launches;
    uint64_t plans_created;
    uint64_t disk_cache_hits;   /* programs loaded from the persistent JIT cache */
} attn_stats;

ATTN_API attn_status attn_context_get_stats(const attn_context *ctx, attn_stats *stats);
/* Zeroes the counters; the peak restarts at the bytes allocated now. */
ATTN_API attn_status attn_context_reset_stats(attn_context *ctx);

/* ---- buffers ----------------------------------------------------------------------------
 * Device memory owned by the library. Counted against the context's budget. */
typedef struct attn_buffer attn_buffer;

ATTN_API attn_status attn_buffer_create(attn_context *ctx, uint64_t bytes, attn_buffer **out);
ATTN_API attn_status attn_buffer_upload(attn_buffer *buf, uint64_t offset, const void *src,
                                        uint64_t bytes);
ATTN_API attn_status attn_buffer_download(attn_buffer *buf, uint64_t offset, void *dst,
                                          uint64_t bytes);
ATTN_API uint64_t attn_buffer_size(const attn_buffer *buf);
/* Accepts NULL. */
ATTN_API void attn_buffer_destroy(attn_buffer *buf);

/* ---- tensors ----------------------------------------------------------------------------*/
typedef enum attn_dtype {
    ATTN_DTYPE_NONE = 0, /* tensor absent */
    ATTN_DTYPE_F32 = 1,
    ATTN_DTYPE_F16 = 2,  /* IEEE binary16 storage; arithmetic in f32 */
    ATTN_DTYPE_U8 = 3    /* boolean masks: nonzero = attend */
} attn_dtype;

/* A 4-D strided view of host memory (data) or of a library buffer (buffer + offset).
 * Q, O: [batch, q_len, heads, dim]; K, V: [batch, kv_len, kv_heads, dim];
 * bias/mask: [batch or 1, heads or 1, q_len, kv_len]; lse: [batch, heads, q_len, 1].
 * Strides are in elements; all four zero means the default dense row-major layout. */
typedef struct attn_tensor {
    attn_dtype dtype;
    int64_t shape[4];
    int64_t stride[4];
    void *data;           /* host pointer, or NULL when buffer is set */
    attn_buffer *buffer;  /* library buffer, or NULL */
    uint64_t offset;      /* byte offset into buffer; a multiple of the element size */
} attn_tensor;

/* A dense host tensor (convenience). */
static inline attn_tensor attn_tensor_host(attn_dtype dtype, int64_t d0, int64_t d1, int64_t d2,
                                           int64_t d3, void *data)
{
    attn_tensor t;
    t.dtype = dtype;
    t.shape[0] = d0, t.shape[1] = d1, t.shape[2] = d2, t.shape[3] = d3;
    t.stride[0] = t.stride[1] = t.stride[2] = t.stride[3] = 0;
    t.data = data;
    t.buffer = NULL;
    t.offset = 0;
    return t;
}

/* A dense tensor in a library buffer (convenience). */
static inline attn_tensor attn_tensor_buffer(attn_dtype dtype, int64_t d0, int64_t d1, int64_t d2,
                                             int64_t d3, attn_buffer *buffer, uint64_t offset)
{
    attn_tensor t = attn_tensor_host(dtype, d0, d1, d2, d3, NULL);
    t.buffer = buffer;
    t.offset = offset;
    return t;
}

/* ---- attention description and plans -------------------------------------------------- */
typedef enum attn_mask_kind {
    ATTN_MASK_NONE = 0,
    ATTN_MASK_ADDITIVE = 1, /* f32 bias tensor added to the scaled scores (-INFINITY masks) */
    ATTN_MASK_BOOLEAN = 2   /* u8 tensor: nonzero = attend, zero = masked */
} attn_mask_kind;

/* O = softmax(scale · Q Kᵀ + bias) V per (batch, head); head h reads kv head
 * h / (num_heads / num_kv_heads). A row whose keys are all masked gives zeros (lse -inf). */
typedef struct attn_desc {
    size_t struct_size;    /* sizeof(attn_desc) */
    int64_t batch;
    int64_t num_heads;
    int64_t num_kv_heads;  /* 0 = num_heads; must divide num_heads (GQA, MQA) */
    int64_t q_len;
    int64_t kv_len;
    int64_t head_dim;
    int64_t v_head_dim;    /* 0 = head_dim */
    attn_dtype dtype;      /* storage of Q, K, V, O: F32 or F16 */
    float scale;           /* 0 = 1/sqrt(head_dim) */
    int causal;            /* query i sees keys j <= i + (kv_length - q_len): bottom-right */
    const int32_t *kv_lens;/* optional [batch] key lengths (padding), copied at plan creation;
                              causal alignment uses each batch's length */
    attn_mask_kind mask_kind;
    int want_lse;          /* run writes log-sum-exp (natural log) of each row to args.lse */
    /* ---- structured sparsity, positions and logits (see "Patterns and positions" below;
     * every field's zero means off, so descriptions written before them are unchanged).
     * So far only the reference backend runs them: attn_plan_create on OpenCL or Vulkan
     * returns ATTN_ERROR_UNSUPPORTED naming the feature. */
    const struct attn_pattern *patterns; /* NULL: dense; else num_patterns patterns, copied */
    int64_t num_patterns;  /* 1: one pattern for every head; num_heads: pattern h for head h */
    int alibi;             /* 1: ALiBi bias -slope[h] * |pos(i) - j| */
    const float *alibi_slopes; /* [num_heads], copied; NULL: 2^(-8 (h+1) / num_heads) */
    const float *t5_table; /* [num_heads][t5_num_buckets] bias per bucket, copied; NULL: off */
    int64_t t5_num_buckets;
    int64_t t5_max_distance;
    int t5_bidirectional;  /* 1: buckets for keys before and after the query (encoder) */
    int rope;              /* 1: rotate Q and K (rotary position embedding) before Q Kᵀ */
    float rope_base;       /* 0 = 10000 */
    int64_t rope_dims;     /* leading head dims rotated, even, <= head_dim; 0 = head_dim */
    int rope_interleaved;  /* 1: pairs (2m, 2m+1) (GPT-J); 0: (m, m + rope_dims/2) (NeoX) */
    int64_t rope_q_offset; /* query row i has rotary position rope_q_offset + i ... */
    int64_t rope_k_offset; /* ... and key j rope_k_offset + j (decode: q offset kv_len - 1) */
    float softcap;         /* > 0: score s becomes softcap * tanh(s / softcap); 0: off */
    const float *sinks;    /* [num_heads] sink logits, copied; NULL: off */
    int want_probs;        /* attn_probs_mode: run writes softmax probabilities to args.probs */
    int64_t probs_head;    /* with ATTN_PROBS_ONE_HEAD: the head written */
} attn_desc;

#define ATTN_DESC_INIT                                                                        \
    {                                                                                          \
        sizeof(attn_desc), 1, 1, 0, 1, 1, 64, 0, ATTN_DTYPE_F32, 0.0f, 0, NULL, ATTN_MASK_NONE, 0, \
            NULL, 0, 0, NULL, NULL, 0, 0, 0, 0, 0.0f, 0, 0, 0, 0, 0.0f, NULL, 0, 0            \
    }

/* ---- patterns and positions ----------------------------------------------------------------
 * Positions. Batch b has len = its key length (kv_lens[b], else kv_len). Key j sits at
 * position j; query row i sits at position pos(i) = i + len - q_len (bottom-right, as
 * causal). Window, dilation, global tokens, random blocks and ALiBi/T5 use these positions;
 * RoPE uses its own offsets (attn_desc.rope_*_offset); the block-sparse layout indexes the
 * score matrix by row i and column j.
 *
 * Which keys a query sees. visible(b, h, i, j) =
 *     j < len                                  (padding)
 *  && (!causal || j <= pos(i))                 (causal)
 *  && pattern_h allows (i, j)                  (pattern; dense when none)
 *  && (boolean mask absent or nonzero)         (explicit mask)
 * A pattern allows (i, j) when ANY of its enabled parts does (the union of its parts); a
 * pattern with no part enabled allows everything. An additive mask, ALiBi and T5 biases
 * are then added to the scores of visible keys (an additive -inf masks too).
 *
 * Score of a visible key: s = scale · rope(q_i) · rope(k_j); if softcap > 0,
 * s = softcap · tanh(s / softcap); then s += additive mask + ALiBi + T5 bias.
 * p_j = exp(s_j) / (sum over visible keys of exp(s_k) + exp(sink[h])) (the sink term only
 * with sinks), o_i = sum p_j v_j, lse_i = log of that denominator. A row with no visible
 * key is zero, its lse -inf and its probabilities 0, with or without a sink. */

/* A pattern's value for an unbounded window extent. */
#define ATTN_UNBOUNDED (-1)

/* One attention pattern: the union of its enabled parts. Plain data; the library copies
 * every array at plan creation. Arrays of patterns are strided by patterns[0].struct_size. */
typedef struct attn_pattern {
    size_t struct_size;      /* sizeof(attn_pattern) */
    /* Sliding window (local): j in [pos(i) - window_left, pos(i) + window_right]. Each
     * extent >= 0 or ATTN_UNBOUNDED; with causal, window_right is cut to 0 by causality. */
    int window;              /* 1: part on */
    int64_t window_left, window_right;
    /* Dilated / strided: (pos(i) - j) is a multiple of dilation, and lies in
     * [-dilation_right, dilation_left] (ATTN_UNBOUNDED: no limit on that side). E.g.
     * Longformer dilation d over w keys: dilation = d, dilation_left = w·d. */
    int64_t dilation;        /* 0: part off; >= 1: on (1 = every key in the extents) */
    int64_t dilation_left, dilation_right;
    /* Global tokens: positions in [0, kv_len), strictly ascending. A query at a global
     * position sees every key; every query sees the keys at global positions. */
    const int64_t *global_tokens;
    int64_t num_global;      /* 0: part off */
    /* BigBird random blocks: key blocks of random_block_size positions, nkb =
     * ceil(kv_len / random_block_size) of them. A query with pos(i) >= 0 is in query block
     * qb = pos(i) / random_block_size and sees key block kb(h, qb, t) for t in
     * [0, random_blocks), where (all uint64_t arithmetic, wrapping; h the query head):
     *     mix(x) = splitmix64 finaliser: x += 0x9E3779B97F4A7C15;
     *              x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9;
     *              x = (x ^ (x >> 27)) * 0x94D049BB133111EB; x ^ (x >> 31)
     *     kb = mix(mix(mix(random_seed ^ h) ^ qb) ^ t) % nkb
     * Draws may repeat (then fewer distinct blocks). Same seed, same blocks, any backend. */
    int64_t random_block_size; /* 0: part off */
    int64_t random_blocks;     /* r >= 1 when on */
    uint64_t random_seed;
    /* Explicit block-sparse layout (BSR): the [q_len, kv_len] score matrix in blocks of
     * bsr_block_q rows x bsr_block_k columns; block row R = i / bsr_block_q lists its block
     * columns bsr_col_idx[bsr_row_ptr[R] .. bsr_row_ptr[R + 1]) strictly ascending, each
     * < ceil(kv_len / bsr_block_k); bsr_row_ptr has ceil(q_len / bsr_block_q) + 1 entries,
     * starts at 0 and never decreases. (i, j) is allowed when its block is listed. */
    int64_t bsr_block_q, bsr_block_k; /* 0: part off */
    const int32_t *bsr_row_ptr;
    const int32_t *bsr_col_idx;
} attn_pattern;

#define ATTN_PATTERN_INIT                                                                    \
    {                                                                                         \
        sizeof(attn_pattern), 0, 0, 0, 0, 0, 0, NULL, 0, 0, 0, 0, 0, 0, NULL, NULL             \
    }

/* T5 relative-position bucket of key j for a query at position pos(i), with n =
 * t5_num_buckets and M = t5_max_distance (T5's relative_position_bucket, in double):
 *     r = j - pos(i); bucket = 0
 *     bidirectional: n /= 2; if r > 0: bucket = n; a = |r|
 *     else:          a = r < 0 ? -r : 0
 *     e = n / 2 (integer); a < e: bucket += a
 *     else bucket += min(n - 1, e + (int64_t)(log(a / e) / log(M / e) · (n - e)))
 * The bias is t5_table[h · t5_num_buckets + bucket]. Needs n >= 2 (bidirectional: even and
 * >= 4) and M > e. Kernels should take a host-computed bucket-per-distance table, so that
 * float rounding in the logarithm cannot move a bucket edge.
 *
 * RoPE: for each pair (a, b) of a rotated head vector (pair m of rope_dims / 2), the angle
 * is position · rope_base^(-2m / rope_dims) and (a, b) becomes
 * (a cos - b sin, a sin + b cos). Dims from rope_dims on are left as they are. */

typedef enum attn_probs_mode {
    ATTN_PROBS_NONE = 0,
    ATTN_PROBS_ALL_HEADS = 1, /* args.probs: f32 [batch, num_heads, q_len, kv_len] */
    ATTN_PROBS_ONE_HEAD = 2   /* args.probs: f32 [batch, 1, q_len, kv_len] of desc.probs_head */
} attn_probs_mode;

/* A plan is bound to its context and used by one thread at a time. */
typedef struct attn_plan attn_plan;

/* Called during long runs with the work units done so far and their total; return
 * nonzero to cancel (the run then returns ATTN_ERROR_CANCELLED, the output is incomplete,
 * and the context and plan stay usable). */
typedef int (*attn_progress_fn)(void *user, uint64_t done, uint64_t total);

typedef struct attn_run_args {
    size_t struct_size;       /* sizeof(attn_run_args) */
    attn_tensor q, k, v, o;
    attn_tensor mask;         /* with mask_kind != NONE */
    attn_tensor lse;          /* with want_lse: f32 [batch, heads, q_len, 1] */
    const int32_t *kv_lens;   /* optional override of the plan's key lengths for this run
                                 (the plan must have been created with kv_lens) */
    attn_progress_fn progress;/* optional */
    void *progress_user;
    attn_tensor probs;        /* with desc.want_probs: f32 [batch, num_heads or 1, q_len,
                                 kv_len] (see attn_probs_mode); for inspecting small problems */
} attn_run_args;

/* An absent tensor (dtype NONE). */
#define ATTN_TENSOR_NONE {ATTN_DTYPE_NONE, {0, 0, 0, 0}, {0, 0, 0, 0}, NULL, NULL, 0}
#define ATTN_RUN_ARGS_INIT                                                                    \
    {                                                                                          \
        sizeof(attn_run_args), ATTN_TENSOR_NONE, ATTN_TENSOR_NONE, ATTN_TENSOR_NONE,          \
            ATTN_TENSOR_NONE, ATTN_TENSOR_NONE, ATTN_TENSOR_NONE, NULL, NULL, NULL,            \
            ATTN_TENSOR_NONE                                                                   \
    }

typedef struct attn_plan_info {
    size_t struct_size;       /* sizeof(attn_plan_info) */
    attn_kernel_family family;
    uint32_t block_m;         /* query rows per work-item (CPU) or per work-group (GPU) */
    uint32_t block_n;         /* keys per inner tile */
    uint32_t vec_width;       /* explicit vector width of the inner loops (1 = scalar) */
    uint32_t work_group_size;
    char kernel[64];          /* kernel source name */
    uint64_t device_bytes;    /* device memory one run needs at most in one pass (host
                                 tensors staged, full-size mask, packing scratch) */
    int scheduled;            /* 1: the problem exceeds the budget in one pass and runs as
                                 query segments x key chunks merged exactly */
    uint32_t segment_rows;    /* when scheduled: query rows per segment ... */
    uint32_t chunk_keys;      /* ... and keys per chunk, as planned (halved on OOM) */
    uint64_t min_device_bytes;/* the least device memory the scheduler can run it in */
    uint32_t tune_source;     /* attn_tune_source (below): ATTN_TUNE_DEFAULT when the tiles
                                 are the planner's built-in choice, else where the tuned
                                 row they came from was found */
    uint64_t tiles_computed;  /* with a pattern: score tiles (block_m rows x 16 keys, over
                                 every batch entry and head) the kernels compute, for the
                                 plan's key lengths; tiles no row sees are skipped */
    uint64_t tiles_total;     /* ... out of all tiles of the score matrix (0 without a
                                 pattern: every tile up to causality is computed) */
} attn_plan_info;

/* Validates the description, chooses kernels and tiles, and JIT-compiles them (compiled
 * kernels are shared by the plans of a context). */
ATTN_API attn_status attn_plan_create(attn_context *ctx, const attn_desc *desc, attn_plan **out);
/* Runs the plan; returns when the output is written (host tensors) or complete on the device. */
ATTN_API attn_status attn_plan_run(attn_plan *plan, const attn_run_args *args);
ATTN_API attn_status attn_plan_get_info(const attn_plan *plan, attn_plan_info *info);
/* Accepts NULL. */
ATTN_API void attn_plan_destroy(attn_plan *plan);

/* ---- KV cache -----------------------------------------------------------------------------
 * Keys and values of a growing sequence (an inference loop's cache), kept in device memory
 * when they fit the context's budget, else in host memory (the scheduler then streams
 * them). Appending uploads only the new tokens. Used from one thread at a time. */
typedef struct attn_kv_cache attn_kv_cache;

typedef struct attn_kv_cache_params {
    size_t struct_size;    /* sizeof(attn_kv_cache_params) */
    int64_t batch;
    int64_t num_kv_heads;
    int64_t head_dim;
    int64_t v_head_dim;    /* 0 = head_dim */
    attn_dtype dtype;      /* F32 or F16 */
    int64_t capacity;      /* tokens reserved per batch entry; appends beyond it double it */
    int host_resident;     /* 1: always host memory; 0: device memory when it fits */
} attn_kv_cache_params;

#define ATTN_KV_CACHE_PARAMS_INIT                                                            \
    {                                                                                         \
        sizeof(attn_kv_cache_params), 1, 1, 64, 0, ATTN_DTYPE_F32, 4096, 0                    \
    }

ATTN_API attn_status attn_kv_cache_create(attn_context *ctx, const attn_kv_cache_params *params,
                                          attn_kv_cache **out);
/* Appends n tokens to every batch entry: k [batch, n, kv_heads, head_dim] and
 * v [batch, n, kv_heads, v_head_dim], host tensors of the cache's dtype, any strides. */
ATTN_API attn_status attn_kv_cache_append(attn_kv_cache *cache, const attn_tensor *k,
                                          const attn_tensor *v);
/* Tokens held per batch entry. */
ATTN_API int64_t attn_kv_cache_length(const attn_kv_cache *cache);
ATTN_API int64_t attn_kv_cache_capacity(const attn_kv_cache *cache);
ATTN_API int attn_kv_cache_on_device(const attn_kv_cache *cache);
/* Views of the whole capacity, [batch, capacity, kv_heads, dim], for a plan created with
 * kv_len = capacity and kv_lens (pass attn_kv_cache_lengths() as args.kv_lens; tokens
 * past the length are never read). Valid until the next append that grows the capacity. */
ATTN_API attn_status attn_kv_cache_tensors(const attn_kv_cache *cache, attn_tensor *k,
                                           attn_tensor *v);
/* Per-batch lengths (batch values, all equal to attn_kv_cache_length()). */
ATTN_API const int32_t *attn_kv_cache_lengths(const attn_kv_cache *cache);
/* Accepts NULL. */
ATTN_API void attn_kv_cache_destroy(attn_kv_cache *cache);

/* ---- streams: segment after segment, with recurrent memory ----------------------------------
 * The caller pushes consecutive segments of one long sequence and gets each segment's
 * output; the stream keeps the memory between segments. Used from one thread at a time. */
typedef struct attn_stream attn_stream;

typedef enum attn_stream_mode {
    /* Segment recurrence (Transformer-XL): a segment attends to the K/V of the previous
     * mem_len tokens and, causally, to itself. */
    ATTN_STREAM_RECURRENCE = 1,
    /* Compressive memory (Infini-attention): per kv head a head_dim x v_head_dim matrix M
     * and a head_dim vector z accumulate s(K)^T V and s(K) of past segments (s = elu + 1).
     * A query reads A_mem = s(q) M / (s(q) z) (zero while z is zero) and the output is
     * g A_mem + (1 - g) A_local with g = sigmoid(gate[h]) and A_local causal attention
     * within the segment. Device memory stays constant however long the stream. */
    ATTN_STREAM_COMPRESSIVE = 2,
    /* Memory tokens (RMT): the caller's num_mem_tokens memory rows (their q, k, v) are
     * prepended to each segment; memory rows attend to memory and segment, segment rows to
     * the memory and causally to the segment; the memory rows' outputs are handed back. */
    ATTN_STREAM_MEMORY_TOKENS = 3
} attn_stream_mode;

typedef struct attn_stream_params {
    size_t struct_size;       /* sizeof(attn_stream_params) */
    attn_stream_mode mode;
    int64_t batch, num_heads, num_kv_heads, head_dim, v_head_dim; /* as in attn_desc */
    attn_dtype dtype;
    float scale;              /* 0 = 1/sqrt(head_dim) */
    int64_t mem_len;          /* RECURRENCE: cached tokens */
    const float *gate;        /* COMPRESSIVE: [num_heads] gate logits, copied; NULL = zeros */
    int64_t num_mem_tokens;   /* MEMORY_TOKENS: memory rows per segment */
} attn_stream_params;

#define ATTN_STREAM_PARAMS_INIT                                                              \
    {                                                                                         \
        sizeof(attn_stream_params), ATTN_STREAM_RECURRENCE, 1, 1, 0, 64, 0, ATTN_DTYPE_F32,   \
            0.0f, 0, NULL, 0                                                                  \
    }

typedef struct attn_stream_segment {
    size_t struct_size;       /* sizeof(attn_stream_segment) */
    attn_tensor q, k, v, o;   /* [batch, seg_len, heads or kv_heads, dim] */
    attn_tensor mem_q, mem_k, mem_v; /* MEMORY_TOKENS: [batch, num_mem_tokens, ...] */
    attn_tensor mem_o;        /* MEMORY_TOKENS: receives the memory rows' outputs */
} attn_stream_segment;

#define ATTN_STREAM_SEGMENT_INIT                                                             \
    {                                                                                         \
        sizeof(attn_stream_segment), ATTN_TENSOR_NONE, ATTN_TENSOR_NONE, ATTN_TENSOR_NONE,    \
            ATTN_TENSOR_NONE, ATTN_TENSOR_NONE, ATTN_TENSOR_NONE, ATTN_TENSOR_NONE,           \
            ATTN_TENSOR_NONE                                                                  \
    }

ATTN_API attn_status attn_stream_create(attn_context *ctx, const attn_stream_params *params,
                                        attn_stream **out);
/* Processes the next segment (host tensors; seg_len may vary between pushes). */
ATTN_API attn_status attn_stream_push(attn_stream *stream, const attn_stream_segment *segment);
/* Forgets the memory: the next push starts a new sequence. */
ATTN_API attn_status attn_stream_reset(attn_stream *stream);
/* Tokens pushed since creation or reset. */
ATTN_API int64_t attn_stream_position(const attn_stream *stream);
/* Accepts NULL. */
ATTN_API void attn_stream_destroy(attn_stream *stream);

/* The largest head_dim / v_head_dim any kernel supports. */
#define ATTN_MAX_HEAD_DIM 256

/* ---- autotuning ---------------------------------------------------------------------------
 * The planner's tile choices (register tiles, work-group and local-memory tiles, decode
 * splits) can come from a tuning database: rows keyed by device (backend, vendor, device
 * name, driver version; "*" matches any), kernel family, head-dim class (head dims up to
 * 16, 32, 64, 128 or 256) and dtype. attn_context_tune times candidates on the context's
 * device and stores the winners in `tuning.txt` in the context's cache directory (README
 * "Autotuning" has the format). A plan looks up, in order: the user's file named by
 * $ATTN_TUNE_FILE (same format, edited by hand), a database row for this device (this
 * driver version before "*"), a row for the vendor, and the built-in choice. A row whose
 * values do not fit the device or the problem is skipped (a debug log says why); a damaged
 * database is ignored as a whole. ATTN_TUNE=0 makes every plan use the built-in choice. */
typedef enum attn_tune_source {
    ATTN_TUNE_DEFAULT = 0, /* the planner's built-in choice */
    ATTN_TUNE_OVERLAY = 1, /* a row of the user's file ($ATTN_TUNE_FILE) */
    ATTN_TUNE_DEVICE = 2,  /* a database row for this device */
    ATTN_TUNE_VENDOR = 3,  /* a database row for any device of the vendor */
    ATTN_TUNE_SEARCH = 4   /* a candidate timed inside attn_context_tune */
} attn_tune_source;

typedef enum attn_tune_outcome {
    ATTN_TUNE_TIMED = 0,    /* ran, matched the default's output, timed */
    ATTN_TUNE_REJECTED = 1, /* ran, but its output differs from the default's */
    ATTN_TUNE_FAILED = 2,   /* plan creation or a run failed (note says why) */
    ATTN_TUNE_SKIPPED = 3   /* not run: time budget, compile-time cap, duplicate (note) */
} attn_tune_outcome;

/* One candidate tile configuration of a group. */
typedef struct attn_tune_candidate {
    char values[64];        /* its row values, e.g. "vd_vec=8" or "rows=2 unroll_d=1" */
    int is_default;         /* the planner's built-in choice (values spelled out) */
    attn_tune_outcome outcome;
    double plan_ms;         /* attn_plan_create: JIT compile, or a cache load */
    double compile_ms;      /* plan_ms plus the first run's excess over the best run (drivers
                               that compile at the first dispatch, e.g. llvmpipe) */
    int compiled;           /* 1: the JIT compiled it now; 0: from the memory or disk cache */
    double ms;              /* best of the timed runs */
    double gflops;          /* of that run */
    double max_err;         /* max |o - o_default| / (1 + |o_default|) over the output */
    char note[160];         /* why it was rejected, failed or skipped */
    double vs_builtin;      /* median over the rounds of its time / the built-in choice's
                               in the same round (< 1: faster); the choice goes by this */
} attn_tune_candidate;

/* One (family, head-dim class, dtype) search, reported when it ends. */
typedef struct attn_tune_group {
    attn_kernel_family family;
    int decode;             /* 1: the decode (split-KV) kernel's splits */
    int64_t head_dim;       /* the class: head dims up to this; also the problem's */
    attn_dtype dtype;
    char problem[96];       /* "B1 H8 q1024 kv1024 d64 f32" */
    uint32_t num_candidates;
    const attn_tune_candidate *candidates; /* valid during the callback only */
    int32_t winner;         /* index of the chosen candidate; -1 when not tuned */
    char skipped[160];      /* non-empty: the group was not tuned, and why */
} attn_tune_group;

typedef void (*attn_tune_report_fn)(void *user, const attn_tune_group *group);

typedef struct attn_tune_params {
    size_t struct_size;          /* sizeof(attn_tune_params) */
    uint32_t head_dims;          /* classes to tune, bit i = head dims up to 16 << i
                                    (16, 32, 64, 128, 256); 0 = all five */
    uint32_t dtypes;             /* bits (1u << ATTN_DTYPE_F32) | (1u << ATTN_DTYPE_F16);
                                    0 = both */
    int decode;                  /* also tune the decode kernel's key splits */
    int64_t num_heads, tokens;   /* prefill problem: batch 1, q_len = kv_len = tokens;
                                    0 = 8 heads, 1024 tokens */
    int64_t decode_kv_len;       /* decode problem: 32 heads / 8 kv heads, q_len 1; 0 = 4096 */
    double time_budget_s;        /* candidates that would start after it are skipped and
                                    reported; 0 = 300 s */
    int store;                   /* 1: write the winners to the database */
    attn_tune_report_fn report;  /* optional: called after each group */
    void *report_user;
} attn_tune_params;

#define ATTN_TUNE_PARAMS_INIT                                                                \
    {                                                                                         \
        sizeof(attn_tune_params), 0, 0, 1, 0, 0, 0, 0.0, 1, NULL, NULL                        \
    }

typedef struct attn_tune_result {
    size_t struct_size;          /* sizeof(attn_tune_result) */
    uint32_t groups_tuned, groups_skipped;
    uint32_t candidates_timed, candidates_rejected, candidates_failed, candidates_skipped;
    uint32_t rows_stored;
    double seconds;
    char db_path[1024];          /* the database written ("" when nothing was stored) */
    char store_note[256];        /* why nothing was stored, when so */
} attn_tune_result;

/* Times candidate tiles for each selected (head-dim class, dtype) of the kernel family the
 * context's planner picks (attn_context_params.kernel_family or $ATTN_KERNEL_FAMILY choose
 * another), and of the decode kernel, on the context's device with a representative problem, checks each candidate's output against the
 * built-in choice's (and that one against the reference on a few rows), and stores each
 * group's fastest as a database row: the built-in choice unless another is at least 5%
 * faster as the median of its time over the built-in choice's in interleaved rounds, and
 * faster in its best run too. Plans created later in any context on this device and cache directory use the
 * rows. Other threads may use the context meanwhile (their plans never see the candidates);
 * the candidates' kernels stay in the context's kernel cache. result may be NULL. */
ATTN_API attn_status attn_context_tune(attn_context *ctx, const attn_tune_params *params,
                                       attn_tune_result *result);

#ifdef __cplusplus
}
#endif
#endif
