/* test_util.c — shared test helpers (see test_util.h); public API only, so the suites test
 * the library the way an application sees it. */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- random numbers ------------------------------------------------------------------ */
void tu_rng_seed(tu_rng *rng, uint64_t seed)
{
    rng->state = seed;
}

uint64_t tu_rng_u64(tu_rng *rng)
{
    uint64_t z = (rng->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint32_t tu_rng_below(tu_rng *rng, uint32_t n)
{
    /* The modulo bias is below 2^-32 for the small n tests use; irrelevant here. */
    return (uint32_t)(tu_rng_u64(rng) % n);
}

float tu_rng_float(tu_rng *rng)
{
    /* 24 random bits -> k / (2^24 - 1) in [0, 1], exactly representable -> [-1, 1]. */
    uint32_t k = (uint32_t)(tu_rng_u64(rng) >> 40);
    return (float)((double)k / 16777215.0 * 2.0 - 1.0);
}

void tu_fill_uniform(float *dst, size_t n, uint64_t seed)
{
    tu_rng rng;
    tu_rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++)
        dst[i] = tu_rng_float(&rng);
}

uint64_t tu_seed(uint64_t a, uint64_t b, uint64_t c)
{
    tu_rng rng;
    tu_rng_seed(&rng, a * 0x100000001b3ull ^ 0x84222325cbf29ce4ull);
    rng.state ^= tu_rng_u64(&rng) + b;
    rng.state ^= tu_rng_u64(&rng) + c;
    return tu_rng_u64(&rng);
}

/* ---- IEEE binary16 -------------------------------------------------------------------- */
uint16_t tu_float_to_half(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t a = x & 0x7fffffffu;

    if (a >= 0x7f800000u) /* inf stays inf; a NaN keeps a non-zero, quiet mantissa */
        return (uint16_t)(sign | 0x7c00u | (a > 0x7f800000u ? 0x200u | ((a >> 13) & 0x3ffu) : 0));
    if (a >= 0x477ff000u) /* 65520 and above round to inf (65504 is the largest half) */
        return (uint16_t)(sign | 0x7c00u);
    if (a >= 0x38800000u) { /* normal half: re-bias the exponent, round 13 mantissa bits */
        uint32_t h = (a >> 13) - (112u << 10);
        uint32_t rem = a & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
            h++;
        return (uint16_t)(sign | h);
    }
    /* Subnormal half (or zero): the value in units of 2^-24 is mant >> (126 - exp). */
    uint32_t exp = a >> 23;
    if (exp < 102) /* below 2^-25: rounds to zero (2^-25 itself is exp 102, a tie -> 0) */
        return sign;
    uint32_t mant = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - exp; /* 14 .. 24 */
    uint32_t h = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1u);
    uint32_t tie = 1u << (shift - 1u);
    if (rem > tie || (rem == tie && (h & 1u)))
        h++; /* a carry to 0x400 is the smallest normal, correctly encoded */
    return (uint16_t)(sign | h);
}

float tu_half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (mant << 13);
    } else {
        /* zero or subnormal: mant * 2^-24, exact in float */
        float f = ldexpf((float)mant, -24);
        return sign ? -f : f;
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

void tu_round_to_half(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = tu_half_to_float(tu_float_to_half(x[i]));
}

size_t tu_dtype_size(attn_dtype dtype)
{
    switch (dtype) {
    case ATTN_DTYPE_F32: return 4;
    case ATTN_DTYPE_F16: return 2;
    case ATTN_DTYPE_U8: return 1;
    default: return 0;
    }
}

const char *tu_dtype_name(attn_dtype dtype)
{
    switch (dtype) {
    case ATTN_DTYPE_F32: return "f32";
    case ATTN_DTYPE_F16: return "f16";
    case ATTN_DTYPE_U8: return "u8";
    case ATTN_DTYPE_NONE: return "none";
    }
    return "?";
}

const char *tu_backend_name(attn_backend backend)
{
    switch (backend) {
    case ATTN_BACKEND_AUTO: return "auto";
    case ATTN_BACKEND_REFERENCE: return "reference";
    case ATTN_BACKEND_OPENCL: return "opencl";
    case ATTN_BACKEND_VULKAN: return "vulkan";
    }
    return "?";
}

const char *tu_family_name(attn_kernel_family family)
{
    switch (family) {
    case ATTN_FAMILY_AUTO: return "auto";
    case ATTN_FAMILY_CPU: return "cpu";
    case ATTN_FAMILY_GPU: return "gpu";
    }
    return "?";
}

/* ---- the reference oracle ------------------------------------------------------------- */
static attn_context *ref_ctx;

attn_context *tu_reference_context(void)
{
    if (!ref_ctx) {
        attn_context_params p = ATTN_CONTEXT_PARAMS_INIT;
        p.backend = ATTN_BACKEND_REFERENCE;
        attn_status st = attn_context_create(&p, &ref_ctx);
        if (st != ATTN_OK) {
            fprintf(stderr, "test_util: reference context: %s: %s\n", attn_status_name(st),
                    attn_last_detail());
            ref_ctx = NULL;
        }
    }
    return ref_ctx;
}

attn_status tu_reference_run(const attn_desc *desc, const attn_run_args *args, char *msg,
                             size_t msg_size)
{
    attn_context *ctx = tu_reference_context();
    if (!ctx) {
        if (msg_size)
            snprintf(msg, msg_size, "reference context unavailable");
        return ATTN_ERROR_NO_DEVICE;
    }
    attn_plan *plan = NULL;
    attn_status st = attn_plan_create(ctx, desc, &plan);
    if (st != ATTN_OK) {
        if (msg_size)
            snprintf(msg, msg_size, "reference attn_plan_create: %s: %s", attn_status_name(st),
                     attn_last_detail());
        return st;
    }
    st = attn_plan_run(plan, args);
    if (st != ATTN_OK && msg_size)
        snprintf(msg, msg_size, "reference attn_plan_run: %s: %s", attn_status_name(st),
                 attn_last_detail());
    attn_plan_destroy(plan);
    return st;
}

/* ---- comparison ------------------------------------------------------------------------ */
double tu_tolerance(attn_dtype dtype)
{
    return dtype == ATTN_DTYPE_F16 ? TU_TOL_F16 : TU_TOL_F32;
}

int tu_compare(const float *got, const float *ref, size_t n, double tol, tu_compare_result *res)
{
    tu_compare_result r;
    memset(&r, 0, sizeof r);
    r.count = n;
    r.tol = tol;
    r.worst_ratio = -1.0;
    for (size_t i = 0; i < n; i++) {
        double g = got[i], e = ref[i], ratio;
        if (isnan(g) || isnan(e)) {
            if (!r.nans++)
                r.first_nan = i;
            ratio = INFINITY;
        } else if (isinf(e) || isinf(g)) {
            ratio = (g == e) ? 0.0 : INFINITY;
        } else {
            ratio = fabs(g - e) / (tol * (1.0 + fabs(e)));
        }
        if (!(ratio <= 1.0))
            r.bad++;
        /* The first NaN or infinity mismatch is the most telling "worst" element. */
        if (ratio > r.worst_ratio) {
            r.worst_ratio = ratio;
            r.worst = i;
            r.worst_got = got[i];
            r.worst_ref = ref[i];
        }
    }
    if (n == 0)
        r.worst_ratio = 0.0;
    if (res)
        *res = r;
    return r.bad == 0;
}

void tu_compare_describe(const tu_compare_result *r, char *buf, size_t size)
{
    if (!size)
        return;
    double err = fabs((double)r->worst_got - (double)r->worst_ref);
    double allowed = r->tol * (1.0 + fabs((double)r->worst_ref));
    int len = snprintf(buf, size, "%zu/%zu out of tolerance; worst [%zu] got %.9g ref %.9g "
                       "(|err| %.3g, allowed %.3g)", r->bad, r->count, r->worst,
                       (double)r->worst_got, (double)r->worst_ref, err, allowed);
    if (r->nans && len > 0 && (size_t)len < size)
        snprintf(buf + len, size - (size_t)len, "; %zu NaN, first at [%zu]", r->nans,
                 r->first_nan);
}

/* ---- strided tensors ---------------------------------------------------------------------- */
int64_t tu_layout_make(tu_layout *l, const int64_t shape[4], const int order[4], int64_t inner,
                       const int64_t pad[4])
{
    int64_t s = inner;
    for (int k = 0; k < 4; k++) {
        int dim = order[k];
        l->shape[dim] = shape[dim];
        l->stride[dim] = s;
        s = s * shape[dim] + (pad ? pad[k] : 0);
    }
    return s;
}

void tu_store_elem(void *storage, attn_dtype dtype, int64_t i, float x)
{
    unsigned char *p = storage;
    if (dtype == ATTN_DTYPE_F32) {
        memcpy(p + 4 * i, &x, 4);
    } else if (dtype == ATTN_DTYPE_F16) {
        uint16_t h = tu_float_to_half(x);
        memcpy(p + 2 * i, &h, 2);
    } else {
        p[i] = x != 0.0f;
    }
}

float tu_load_elem(const void *storage, attn_dtype dtype, int64_t i)
{
    const unsigned char *p = storage;
    if (dtype == ATTN_DTYPE_F32) {
        float x;
        memcpy(&x, p + 4 * i, 4);
        return x;
    }
    if (dtype == ATTN_DTYPE_F16) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        return tu_half_to_float(h);
    }
    return p[i];
}

/* Every element of the layout in dense row-major order: dense index d, storage index e. */
#define TU_FOR_LAYOUT(l, d, e)                                                                 \
    for (int64_t i0 = 0, d = 0; i0 < (l)->shape[0]; i0++)                                     \
        for (int64_t i1 = 0; i1 < (l)->shape[1]; i1++)                                         \
            for (int64_t i2 = 0; i2 < (l)->shape[2]; i2++)                                     \
                for (int64_t i3 = 0, e = (l)->base + i0 * (l)->stride[0] +                     \
                                         i1 * (l)->stride[1] + i2 * (l)->stride[2];            \
                     i3 < (l)->shape[3]; i3++, e += (l)->stride[3], d++)

void tu_scatter(const tu_layout *l, void *storage, attn_dtype dtype, const float *dense)
{
    TU_FOR_LAYOUT(l, d, e)
    tu_store_elem(storage, dtype, e, dense[d]);
}

void tu_gather(const tu_layout *l, const void *storage, attn_dtype dtype, float *dense)
{
    TU_FOR_LAYOUT(l, d, e)
    dense[d] = tu_load_elem(storage, dtype, e);
}

void tu_layout_mark(const tu_layout *l, unsigned char *covered)
{
    TU_FOR_LAYOUT(l, d, e)
    {
        (void)d;
        covered[e] = 1;
    }
}

/* ---- devices ------------------------------------------------------------------------------ */
static tu_device *dev_list;
static size_t dev_count;
static uint32_t dev_found;
static int dev_enumerated;

static void tu_log(void *user, attn_log_level level, const char *message)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    fprintf(stderr, "[%s] %s: %s\n", (const char *)user,
            (unsigned)level < 4 ? names[level] : "?", message);
}

static void add_entries(attn_backend backend, uint32_t index, const attn_device_info *info)
{
    static const attn_kernel_family families[] = {ATTN_FAMILY_CPU, ATTN_FAMILY_GPU};
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++) {
        tu_device *d = &dev_list[dev_count++];
        memset(d, 0, sizeof *d);
        d->backend = backend;
        d->index = index;
        d->family = families[f];
        d->info = *info;
        snprintf(d->label, sizeof d->label, "%s:%u family=%s (%.120s)", tu_backend_name(backend),
                 index, tu_family_name(families[f]), info->name);

        attn_context_params p = ATTN_CONTEXT_PARAMS_INIT;
        p.backend = backend;
        p.device_index = index;
        p.kernel_family = families[f];
        p.log_fn = tu_log;
        p.log_user = d->label;
        p.log_level = ATTN_LOG_WARN;
        d->create_status = attn_context_create(&p, &d->ctx);
        if (d->create_status != ATTN_OK) {
            d->ctx = NULL;
            snprintf(d->detail, sizeof d->detail, "%s", attn_last_detail());
            printf("test_util: %s: attn_context_create failed: %s: %s\n", d->label,
                   attn_status_name(d->create_status), d->detail);
        }
    }
}

size_t tu_devices(const tu_device **list, uint32_t *num_devices)
{
    static const attn_backend backends[] = {ATTN_BACKEND_OPENCL, ATTN_BACKEND_VULKAN};
    if (!dev_enumerated) {
        dev_enumerated = 1;
        uint32_t counts[2] = {0, 0};
        attn_status status[2];
        uint32_t total = 0;
        for (int b = 0; b < 2; b++) {
            status[b] = attn_device_count(backends[b], &counts[b]);
            if (status[b] != ATTN_OK)
                counts[b] = 0;
            total += counts[b];
        }
        dev_list = calloc(total ? 2u * total : 1u, sizeof *dev_list);
        if (!dev_list) {
            fprintf(stderr, "test_util: out of memory\n");
            total = 0;
        }
        for (int b = 0; b < 2 && dev_list; b++) {
            if (counts[b] == 0) {
                if (status[b] == ATTN_OK)
                    printf("test_util: %s: no device found; skipped\n", tu_backend_name(backends[b]));
                else
                    printf("test_util: %s: no device (attn_device_count: %s: %s); skipped\n",
                           tu_backend_name(backends[b]), attn_status_name(status[b]),
                           attn_last_detail());
                continue;
            }
            for (uint32_t i = 0; i < counts[b]; i++) {
                attn_device_info info;
                memset(&info, 0, sizeof info);
                info.struct_size = sizeof info;
                attn_status st = attn_device_get_info(backends[b], i, &info);
                if (st != ATTN_OK) {
                    printf("test_util: %s:%u: attn_device_get_info failed: %s: %s\n",
                           tu_backend_name(backends[b]), i, attn_status_name(st), attn_last_detail());
                    snprintf(info.name, sizeof info.name, "(no info)");
                }
                printf("test_util: %s:%u: %s [%s]\n", tu_backend_name(backends[b]), i, info.name,
                       info.api_version);
                add_entries(backends[b], i, &info);
            }
        }
        dev_found = total;
        fflush(stdout);
    }
    if (list)
        *list = dev_list;
    if (num_devices)
        *num_devices = dev_found;
    return dev_count;
}

void tu_release(void)
{
    for (size_t i = 0; i < dev_count; i++)
        attn_context_destroy(dev_list[i].ctx);
    free(dev_list);
    dev_list = NULL;
    dev_count = 0;
    dev_found = 0;
    dev_enumerated = 0;
    attn_context_destroy(ref_ctx);
    ref_ctx = NULL;
}

double tu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double tu_cpu_now(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0)
        return (double)clock() / CLOCKS_PER_SEC;
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
