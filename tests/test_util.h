/* test_util.h — helpers shared by the test suites, written against the public API only:
 * a seeded PRNG, f32<->f16 conversion, the reference oracle, the DESIGN.md §7 comparison
 * and the list of device contexts (backend × device × kernel family) to test. */
#ifndef ATTN_TEST_UTIL_H
#define ATTN_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <attn/attn.h>

/* ---- random numbers ------------------------------------------------------------------
 * splitmix64: tiny, and the same sequence on every platform for a given seed. */
typedef struct tu_rng {
    uint64_t state;
} tu_rng;

void tu_rng_seed(tu_rng *rng, uint64_t seed);
uint64_t tu_rng_u64(tu_rng *rng);
/* Uniform in [0, n); n > 0. */
uint32_t tu_rng_below(tu_rng *rng, uint32_t n);
/* Uniform in [-1, 1]. */
float tu_rng_float(tu_rng *rng);
/* Fills dst[0..n) with values in [-1, 1] from a fresh generator seeded with `seed`. */
void tu_fill_uniform(float *dst, size_t n, uint64_t seed);
/* Mixes several numbers into one seed (for per-case, per-tensor seeds). */
uint64_t tu_seed(uint64_t a, uint64_t b, uint64_t c);

/* ---- IEEE binary16 (round to nearest, ties to even) -------------------------------- */
uint16_t tu_float_to_half(float f);
float tu_half_to_float(uint16_t h);
/* Rounds each value to the nearest half and back, so data generated as floats can be
 * stored as f16 without changing value. */
void tu_round_to_half(float *x, size_t n);

/* Bytes per element of a dtype (0 for ATTN_DTYPE_NONE). */
size_t tu_dtype_size(attn_dtype dtype);
const char *tu_dtype_name(attn_dtype dtype);
const char *tu_backend_name(attn_backend backend);
const char *tu_family_name(attn_kernel_family family);

/* ---- the reference oracle ------------------------------------------------------------
 * A context on ATTN_BACKEND_REFERENCE, created on first use and kept for the process. */
attn_context *tu_reference_context(void);
/* Runs `desc` on the reference context with `args` (host tensors only: a library buffer
 * belongs to its own context). On failure returns the status and writes a message with
 * the library's detail to msg (when msg_size > 0). */
attn_status tu_reference_run(const attn_desc *desc, const attn_run_args *args, char *msg,
                             size_t msg_size);

/* ---- comparison against the reference (DESIGN.md §7) -------------------------------
 * An element passes when |got - ref| <= tol * (1 + |ref|). A NaN in either array fails;
 * an infinity passes only against the same infinity (an lse of -inf must match -inf). */
#define TU_TOL_F32 1e-4
#define TU_TOL_F16 2e-3

/* The tolerance for outputs of a problem whose Q/K/V/O storage is `dtype`. */
double tu_tolerance(attn_dtype dtype);

typedef struct tu_compare_result {
    size_t count;        /* elements compared */
    size_t bad;          /* elements out of tolerance, NaN included */
    size_t nans;         /* elements where got or ref is NaN */
    size_t first_nan;    /* index of the first NaN (valid when nans > 0) */
    size_t worst;        /* index of the largest err / allowed (valid when count > 0) */
    double worst_ratio;  /* |err| / allowed there; <= 1 passes, inf for an inf mismatch */
    float worst_got, worst_ref;
    double tol;
} tu_compare_result;

/* Compares n elements; returns 1 when all pass. `res` may be NULL. */
int tu_compare(const float *got, const float *ref, size_t n, double tol,
               tu_compare_result *res);
/* One line: "3/4096 out of tolerance; worst [17] got ... ref ... (|err| ..., allowed ...)". */
void tu_compare_describe(const tu_compare_result *res, char *buf, size_t size);

/* ---- strided tensors -----------------------------------------------------------------
 * Where the elements of a 4-D tensor lie in a larger storage, in elements, the way a
 * caller's strided layout places them; the suites scatter dense row-major data into such
 * storage and gather results back. */
typedef struct tu_layout {
    int64_t shape[4], stride[4];
    int64_t base; /* element index of [0,0,0,0]; tu_layout_make leaves it alone */
} tu_layout;

/* Strides for `shape` with its dims ordered inner -> outer as `order` (e.g. {3,2,1,0} is
 * row-major), the innermost at element stride `inner`, and pad[k] elements of gap after
 * each level k (pad may be NULL). Returns the storage extent from base, in elements. */
int64_t tu_layout_make(tu_layout *l, const int64_t shape[4], const int order[4], int64_t inner,
                       const int64_t pad[4]);
/* Element i of a storage of f32, f16 or u8 (u8: x != 0 stores 1). */
void tu_store_elem(void *storage, attn_dtype dtype, int64_t i, float x);
float tu_load_elem(const void *storage, attn_dtype dtype, int64_t i);
void tu_scatter(const tu_layout *l, void *storage, attn_dtype dtype, const float *dense);
void tu_gather(const tu_layout *l, const void *storage, attn_dtype dtype, float *dense);
/* Sets covered[e] = 1 for every storage element e of the tensor. */
void tu_layout_mark(const tu_layout *l, unsigned char *covered);

/* ---- devices to test -----------------------------------------------------------------
 * One entry per (backend, device, kernel family) for ATTN_BACKEND_OPENCL and
 * ATTN_BACKEND_VULKAN, with one context created for the whole process. Backends without
 * a device are listed on stdout as skipped. */
typedef struct tu_device {
    attn_backend backend;
    uint32_t index;               /* within the backend */
    attn_kernel_family family;    /* ATTN_FAMILY_CPU or ATTN_FAMILY_GPU, forced */
    attn_device_info info;
    attn_context *ctx;            /* NULL when attn_context_create failed */
    attn_status create_status;
    char detail[512];             /* attn_last_detail() of a failed creation */
    char label[192];              /* "opencl:0 family=cpu (pthread-...)" */
} tu_device;

/* Enumerates once per process and returns the entries; *num_devices (may be NULL) is the
 * number of non-reference devices found, whether or not their contexts could be created. */
size_t tu_devices(const tu_device **list, uint32_t *num_devices);
/* Destroys the device contexts and the reference context. */
void tu_release(void);

/* Monotonic wall-clock seconds, and CPU seconds of the whole process (all threads). */
double tu_now(void);
double tu_cpu_now(void);

#endif
