/* attn_bench_util.c — attn-bench's shared helpers: inputs, f16 conversion, timing, FLOP
 * counting, JSON. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#endif

#include "attn_bench_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const word_value bench_dtype_words[] = {
    {"f32", ATTN_DTYPE_F32}, {"f16", ATTN_DTYPE_F16}, {NULL, 0}};
const word_value bench_backend_words[] = {{"auto", ATTN_BACKEND_AUTO},
                                           {"opencl", ATTN_BACKEND_OPENCL},
                                           {"vulkan", ATTN_BACKEND_VULKAN},
                                           {"reference", ATTN_BACKEND_REFERENCE},
                                           {NULL, 0}};
const word_value bench_family_words[] = {
    {"auto", ATTN_FAMILY_AUTO}, {"cpu", ATTN_FAMILY_CPU}, {"gpu", ATTN_FAMILY_GPU}, {NULL, 0}};

const char *bench_word_of(const word_value *table, int value)
{
    for (; table->word; table++)
        if (table->value == value)
            return table->word;
    return "unknown";
}

/* splitmix64: a fixed seed gives the same inputs on every machine and run. */
static uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* Uniform in [-1, 1): 24 random bits, so every value is exact in f32. */
float bench_rng_uniform(uint64_t *state)
{
    return (float)(rng_next(state) >> 40) * (2.0f / 16777216.0f) - 1.0f;
}

/* IEEE binary32 -> binary16, round to nearest, ties to even; overflow gives infinity. */
uint16_t bench_half_from_float(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t exp = (x >> 23) & 0xffu, mant = x & 0x7fffffu;
    if (exp == 0xffu) /* inf stays inf; NaN stays a (quiet) NaN */
        return (uint16_t)(sign | 0x7c00u | (mant ? 0x200u | (mant >> 13) : 0u));
    int e = (int)exp - 127 + 15;
    if (e >= 31)
        return (uint16_t)(sign | 0x7c00u);
    if (e <= 0) { /* half subnormal (or zero): shift the full significand into place */
        int shift = 14 - e;
        if (shift > 24)
            return sign;
        mant |= 0x800000u;
        uint32_t h = mant >> shift, rem = mant & ((1u << shift) - 1u), tie = 1u << (shift - 1);
        if (rem > tie || (rem == tie && (h & 1u)))
            h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((uint32_t)e << 10) | (mant >> 13), rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
        h++; /* a carry into the exponent is the right result, up to infinity */
    return (uint16_t)(sign | h);
}

float bench_half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    if (exp == 0) {
        float v = ldexpf((float)mant, -24);
        return sign ? -v : v;
    }
    uint32_t x = sign | (mant << 13) | (exp == 31 ? 0x7f800000u : (exp + 112) << 23);
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

double bench_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

double bench_load_average(void)
{
    double v = NAN;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &v) != 1)
            v = NAN;
        fclose(f);
    }
    return v;
}

/* a * b into *out unless it overflows size_t. */
bool bench_mul_size(size_t a, size_t b, size_t *out)
{
    if (a && b > SIZE_MAX / a)
        return false;
    *out = a * b;
    return true;
}

/* The element count of a [a, b, c, d] tensor (all positive) unless it overflows size_t. */
bool bench_count4(int64_t a, int64_t b, int64_t c, int64_t d, size_t *out)
{
    const int64_t dims[4] = {a, b, c, d};
    size_t n = 1;
    for (int i = 0; i < 4; i++)
        if ((uint64_t)dims[i] > SIZE_MAX || !bench_mul_size(n, (size_t)dims[i], &n))
            return false;
    *out = n;
    return true;
}

/* Number of (i, j) pairs a problem computes: all of them without a mask; with causal,
 * query i sees keys j <= i + kv_len - q_len (bottom-right alignment), clipped to
 * [0, kv_len). Exact for lengths up to 2^31 (the total stays below 2^62). */
uint64_t bench_visible_pairs(int64_t q_len, int64_t kv_len, bool causal)
{
    if (!causal)
        return (uint64_t)q_len * (uint64_t)kv_len;
    /* Row i sees i + off + 1 keys: none for i < -off, then a ramp 1, 2, ... that the
     * last row, i = q_len - 1, always ends at exactly kv_len. */
    const int64_t off = kv_len - q_len;
    const int64_t first = off < 0 ? -off : 0; /* first row that sees a key */
    if (first > q_len - 1)
        return 0;
    const uint64_t lo = (uint64_t)(first + off + 1), hi = (uint64_t)kv_len;
    const uint64_t rows = hi - lo + 1; /* = q_len - first */
    /* lo + ... + hi; one of (lo + hi), rows is even. */
    return (lo + hi) % 2 == 0 ? (lo + hi) / 2 * rows : (lo + hi) * (rows / 2);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *v, size_t n)
{
    if (n == 0)
        return NAN;
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

const char *bench_device_type_name(attn_device_type t)
{
    switch (t) {
    case ATTN_DEVICE_CPU: return "cpu";
    case ATTN_DEVICE_INTEGRATED_GPU: return "integrated gpu";
    case ATTN_DEVICE_DISCRETE_GPU: return "discrete gpu";
    default: return "other";
    }
}

int bench_fail(const char *what, attn_status s)
{
    const char *detail = attn_last_detail();
    fprintf(stderr, "attn-bench: %s failed: %s: %s\n", what, attn_status_name(s),
            attn_status_string(s));
    if (detail && *detail)
        fprintf(stderr, "  detail: %s\n", detail);
    return 1;
}

/* A finite number, or null: JSON has no inf or NaN. */
void bench_json_number(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, "%.9g", v);
    else
        fputs("null", f);
}

/* Allocates n elements of storage `dtype` filled from the generator. */
void *bench_make_input(size_t n, attn_dtype dtype, uint64_t *rng)
{
    if (dtype == ATTN_DTYPE_F16) {
        uint16_t *p = malloc(n ? n * sizeof *p : 1);
        for (size_t i = 0; p && i < n; i++)
            p[i] = bench_half_from_float(bench_rng_uniform(rng));
        return p;
    }
    float *p = malloc(n ? n * sizeof *p : 1);
    for (size_t i = 0; p && i < n; i++)
        p[i] = bench_rng_uniform(rng);
    return p;
}

double bench_element(const void *p, attn_dtype dtype, size_t i)
{
    if (dtype == ATTN_DTYPE_F16)
        return bench_half_to_float(((const uint16_t *)p)[i]);
    return ((const float *)p)[i];
}

attn_context_params bench_context_params(const bench_opts *o)
{
    attn_context_params cp = ATTN_CONTEXT_PARAMS_INIT;
    cp.backend = o->backend;
    cp.device_index = (uint32_t)(o->device < 0 ? 0 : o->device);
    cp.kernel_family = o->family;
    cp.memory_budget = (uint64_t)o->budget;
    return cp;
}

attn_desc bench_desc(const bench_opts *o)
{
    attn_desc desc = ATTN_DESC_INIT;
    desc.batch = o->batch;
    desc.num_heads = o->heads;
    desc.num_kv_heads = o->kv_heads;
    desc.q_len = o->q_len;
    desc.kv_len = o->kv_len;
    desc.head_dim = o->head_dim;
    desc.v_head_dim = o->v_head_dim;
    desc.dtype = o->dtype;
    desc.causal = o->causal;
    if (o->has_pattern) {
        desc.patterns = &o->pattern;
        desc.num_patterns = 1;
    }
    desc.alibi = o->alibi;
    desc.rope = o->rope;
    desc.softcap = (float)o->softcap;
    return desc;
}
