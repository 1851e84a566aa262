/* attn_bench_util.h — what attn-bench's files share: the options, reproducible inputs,
 * f16 conversion, timing, FLOP counting and JSON helpers. */
#ifndef ATTN_BENCH_UTIL_H
#define ATTN_BENCH_UTIL_H

#include <attn/attn.h>

#include "tool_json.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define EXIT_USAGE 2

/* Tolerances of DESIGN.md §7, relative to 1 + |ref|. */
#define TOL_F32 1e-4
#define TOL_F16 2e-3

typedef struct bench_opts {
    int64_t batch, heads, kv_heads, q_len, kv_len, head_dim, v_head_dim;
    int64_t device; /* -1: not given */
    int64_t reps, warmup, budget, check_rows;
    int64_t max_seconds_per_row, trials;
    int64_t segment;          /* --stream: tokens per pushed segment */
    int stream_mode;          /* --stream: attn_stream_mode; 0 = not a stream run */
    attn_dtype dtype;
    attn_backend backend;
    attn_kernel_family family;
    bool causal, check, json, help, host;
    bool suite, quick, startup, startup_child;
    /* Patterns and positions (--window, --dilation, --global, --random, --alibi, --rope,
     * --softcap): one pattern for every head; has_pattern when some part is on. */
    attn_pattern pattern;
    bool has_pattern, alibi, rope;
    int64_t globals[256];
    double softcap;
} bench_opts;

/* A flag whose value is one of a few words. */
typedef struct word_value {
    const char *word;
    int value;
} word_value;

extern const word_value bench_dtype_words[];
extern const word_value bench_backend_words[];
extern const word_value bench_family_words[];

const char *bench_word_of(const word_value *table, int value);
const char *bench_device_type_name(attn_device_type t);

/* Uniform in [-1, 1) from a splitmix64 state: the same values on every machine and run. */
float bench_rng_uniform(uint64_t *state);
/* n elements of storage `dtype` (f32 or f16) from the generator; NULL if out of memory. */
void *bench_make_input(size_t n, attn_dtype dtype, uint64_t *rng);
/* Element i of f32 or f16 storage, as a double. */
double bench_element(const void *p, attn_dtype dtype, size_t i);

/* IEEE binary32 <-> binary16, round to nearest even. */
uint16_t bench_half_from_float(float f);
float bench_half_to_float(uint16_t h);

double bench_now_ms(void);
/* The 1-minute load average (/proc/loadavg); NAN where there is none. */
double bench_load_average(void);
/* The median of n values (sorts them); NAN for n == 0. */
double bench_median(double *v, size_t n);

/* a * b into *out unless it overflows size_t. */
bool bench_mul_size(size_t a, size_t b, size_t *out);
/* The element count of a [a, b, c, d] tensor (all positive) unless it overflows size_t. */
bool bench_count4(int64_t a, int64_t b, int64_t c, int64_t d, size_t *out);

/* Query-key pairs a problem computes: all without a mask; with causal (bottom-right),
 * query i sees keys j <= i + kv_len - q_len. Exact for lengths up to 2^31. */
uint64_t bench_visible_pairs(int64_t q_len, int64_t kv_len, bool causal);

/* A finite number, or null (JSON has no inf/NaN); strings: tool_json_string. */
void bench_json_number(FILE *f, double v);

/* The context parameters (backend, device, family, budget) and the attention description
 * (shape, dtype, causal) that the options ask for. */
attn_context_params bench_context_params(const bench_opts *o);
attn_desc bench_desc(const bench_opts *o);

/* Prints a failing call's status and the library's detail to stderr; returns 1. */
int bench_fail(const char *what, attn_status s);

#endif
