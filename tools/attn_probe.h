/* attn_probe.h — what attn-probe's two files share: the per-device results of --verify
 * and --bench (attn_probe_run.c) that the report (attn_probe.c) prints. */
#ifndef ATTN_PROBE_H
#define ATTN_PROBE_H

#include <attn/attn.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define PROBE_MSG 320 /* room for a status name and the first line of a detail */

/* "ATTN_ERROR_X: detail" of a failed call, the detail cut at its first line. */
void probe_error_text(char *dst, size_t size, attn_status s, const char *detail);

/* ---- --verify ---------------------------------------------------------------------------*/

/* One problem on one device, against the reference backend or a hand-computed answer. */
typedef struct verify_case_result {
    char name[48];
    char shape[96];       /* "B1 H8/2 q33 kv50 d64 f32 causal" */
    const char *oracle;   /* "reference" or "hand" */
    double tolerance;     /* relative to 1 + |expected| */
    double max_err;       /* largest |got - expected| over finite values */
    double worst_ratio;   /* largest |got - expected| / (1 + |expected|) */
    uint64_t nonfinite;   /* NaN/inf where a finite value was expected (or the reverse) */
    bool ran, pass;
    char error[PROBE_MSG];/* why it did not run */
} verify_case_result;

#define VERIFY_MAX_CASES 16

typedef struct verify_result {
    bool ran;
    int family;           /* the planner's family on this device (attn_kernel_family) */
    uint32_t num_cases, num_failed;
    double max_err;       /* largest |got - expected| of all problems */
    double worst_of_tol;  /* largest (error / (1 + |expected|)) / tolerance: PASS needs <= 1 */
    bool pass;
    verify_case_result cases[VERIFY_MAX_CASES];
} verify_result;

/* Runs the verification set on device (backend, index); text progress goes to `progress`
 * (NULL: silent). Fills *r; never fails as a whole (a failed problem is a FAIL). */
void probe_verify(attn_backend backend, uint32_t index, FILE *progress, verify_result *r);

/* ---- --bench ----------------------------------------------------------------------------*/

typedef struct bench_shape_result {
    const char *name;     /* "prefill" or "decode" */
    int64_t batch, heads, kv_heads, q_len, kv_len, head_dim;
    bool ran;
    double plan_ms;       /* attn_plan_create in a fresh context: JIT (or driver cache) */
    uint64_t kernels_compiled; /* by the JIT in that plan creation ... */
    uint64_t disk_cache_hits;  /* ... and loaded from libattn's persistent cache instead */
    double ms_median, gflop, gflops;
    int family;
    char kernel[64];
    char error[PROBE_MSG];
} bench_shape_result;

typedef struct bench_result {
    bool ran;
    char skipped[128];    /* why not, when not */
    bench_shape_result shapes[2];
} bench_result;

void probe_bench(attn_backend backend, uint32_t index, bench_result *r);

/* ---- --tune (attn_probe_tune.c) ----------------------------------------------------------*/

typedef struct probe_tune_opts {
    uint32_t head_dims;  /* attn_tune_params.head_dims: 0 = all classes */
    uint32_t dtypes;     /* attn_tune_params.dtypes: 0 = f32 and f16 */
    int decode;          /* also the decode kernel's splits */
    int64_t tokens;      /* 0: the library's default */
    double seconds;      /* time budget; 0: the library's default */
    int store;           /* write the winners to the database */
} probe_tune_opts;

/* Tunes device (backend, index), printing each group's candidates. 0 ok; 1 when the
 * context or the tuner failed, or a candidate's output was rejected. */
int probe_tune(attn_backend backend, uint32_t index, const probe_tune_opts *o);

/* "built-in", "overlay", "device row", "vendor row" (attn_plan_info.tune_source). */
const char *probe_tune_source_word(uint32_t source);

/* ---- backends and words (attn_probe.c) --------------------------------------------------*/

/* Backends in the order attn_device_get_info(ATTN_BACKEND_AUTO, i) lists their devices. */
typedef struct probe_backend {
    attn_backend id;
    const char *word, *title;
    bool built; /* from the build's configuration: the API cannot tell "not built" from
                   "built, no driver" (both count 0 devices) */
} probe_backend;

#define PROBE_NUM_BACKENDS 3
extern const probe_backend probe_backends[PROBE_NUM_BACKENDS];

const probe_backend *probe_backend_of(attn_backend id);
const char *probe_family_word(int family); /* "cpu", "gpu", "auto" */
const char *probe_type_word(attn_device_type t); /* "cpu", "integrated_gpu", ... */
bool probe_is_gpu(const attn_device_info *d);
double probe_now_ms(void); /* a monotonic clock (attn_probe_run.c) */

/* ---- attention facts (attn_probe_facts.c) -----------------------------------------------*/

typedef struct probe_plan_fact {
    int64_t head_dim;
    bool ok;
    attn_plan_info info;
    double ms;
    char error[PROBE_MSG];
} probe_plan_fact;

/* The one-pass problem: batch 1, 8 heads, head_dim 64, f32, causal, q_len = kv_len. */
#define ONE_PASS_HEADS 8
#define ONE_PASS_DIM 64

typedef struct probe_one_pass {
    int64_t tokens;            /* largest length that fits; 0 when not even 1 does */
    uint64_t device_bytes;     /* the plan's device_bytes at that length */
    uint64_t largest_tensor;   /* the size the single-buffer limits were held against */
    const char *limited_by;    /* what stops tokens + 1 */
    char error[PROBE_MSG];
} probe_one_pass;

/* Beyond one pass: the memory-budget scheduler (segments x chunks merged exactly). */
typedef struct probe_sched {
    bool known;                /* false: no scheduler (or the reference backend) */
    int64_t max_tokens;        /* largest length whose plan the scheduler takes */
    const char *limited_by;
    uint32_t segment_rows, chunk_keys; /* its step at max_tokens */
    uint64_t min_device_bytes; /* the least memory it can run that in */
    char note[PROBE_MSG];
} probe_sched;

typedef struct probe_facts {
    bool ok;
    char error[PROBE_MSG];     /* the context could not be created */
    uint64_t memory_budget;
    probe_plan_fact plans[2];        /* head_dim 64 and 128 */
    int64_t max_head_dim;      /* 0 when none works */
    char max_head_dim_note[PROBE_MSG];
    probe_one_pass one_pass;
    probe_sched sched;
} probe_facts;

/* One device of the report and everything found out about it. */
typedef struct probe_device {
    uint32_t number;           /* position in attn_device_get_info(ATTN_BACKEND_AUTO, ·) */
    attn_device_info info;
    bool have_facts;
    probe_facts facts;
    verify_result verify;
    bench_result bench;
} probe_device;

/* What the planner does on the device: fills *f, never fails as a whole. */
void probe_attention(const attn_device_info *dev, probe_facts *f);

/* ---- JSON report (attn_probe_json.c) ----------------------------------------------------*/

/* The whole report as one JSON document on `out`. verify/bench: whether those ran;
 * verify_pass: their verdict. */
void probe_json_report(FILE *out, const probe_device *devs, uint32_t n, bool verify, bool bench,
                       bool verify_pass);

#endif
