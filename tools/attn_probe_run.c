/* attn_probe_run.c — the parts of attn-probe that run attention: --verify (a small set of
 * problems checked against the reference backend or hand-computed answers) and --bench. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#endif

#include "attn_probe.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Tolerances of DESIGN.md §7, relative to 1 + |expected|. */
#define TOL_F32 1e-4
#define TOL_F16 2e-3

void probe_error_text(char *dst, size_t size, attn_status s, const char *detail)
{
    const char *d = detail ? detail : "", *name = attn_status_name(s);
    size_t line = strcspn(d, "\n");
    if (line > 200)
        line = 200;
    if (!strncmp(d, name, strlen(name))) /* the detail already names the status */
        snprintf(dst, size, "%.*s", (int)line, d);
    else
        snprintf(dst, size, "%s%s%.*s", name, line ? ": " : "", (int)line, d);
}

double probe_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* ---- host data ------------------------------------------------------------------------
 * Inputs are multiples of 1/1024 in [-1, 1]: exact in f16 and f32 alike, so a problem's
 * values do not depend on its storage type. */

static uint64_t rng_next(uint64_t *s) /* splitmix64 */
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static float rng_value(uint64_t *s) { return (float)((int)(rng_next(s) % 2049) - 1024) / 1024.0f; }

/* binary32 -> binary16, round to nearest even. Inputs here are finite and small; overflow
 * still gives infinity and tiny values go subnormal, so the routine is general. */
static uint16_t to_half(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint32_t sign = (x >> 16) & 0x8000u, exp = (x >> 23) & 0xffu, mant = x & 0x7fffffu;
    if (exp == 0xffu)
        return (uint16_t)(sign | 0x7c00u | (mant ? 0x200u : 0u));
    int e = (int)exp - 112; /* rebias 127 -> 15 */
    if (e >= 31)
        return (uint16_t)(sign | 0x7c00u);
    uint32_t shift = 13, m = mant;
    if (e <= 0) { /* subnormal: put the implicit bit back and shift further */
        if (e < -10)
            return (uint16_t)sign;
        m |= 0x800000u;
        shift = (uint32_t)(14 - e);
        e = 0;
    }
    uint32_t h = ((uint32_t)e << 10) + (m >> shift), rest = m & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1);
    if (rest > half || (rest == half && (h & 1u)))
        h++; /* a carry into the exponent is still the right answer */
    return (uint16_t)(sign | h);
}

static float from_half(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    if (exp == 0) {
        float v = ldexpf((float)mant, -24);
        return sign ? -v : v;
    }
    uint32_t x = sign | (exp == 31 ? 0x7f800000u | (mant << 13) : ((exp + 112) << 23) | (mant << 13));
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

/* A host tensor: values as float, and the same in the storage type handed to the library. */
typedef struct htensor {
    size_t n;
    attn_dtype dtype;
    float *val;
    void *raw;
} htensor;

static bool ht_alloc(htensor *t, size_t n, attn_dtype dtype)
{
    t->n = n;
    t->dtype = dtype;
    t->val = calloc(n ? n : 1, sizeof(float));
    t->raw = calloc(n ? n : 1, dtype == ATTN_DTYPE_F16 ? 2 : 4);
    return t->val && t->raw;
}

static void ht_free(htensor *t)
{
    free(t->val);
    free(t->raw);
    memset(t, 0, sizeof *t);
}

static void ht_store(htensor *t) /* val -> raw */
{
    for (size_t i = 0; i < t->n; i++) {
        if (t->dtype == ATTN_DTYPE_F16)
            ((uint16_t *)t->raw)[i] = to_half(t->val[i]);
        else
            ((float *)t->raw)[i] = t->val[i];
    }
}

static void ht_load(htensor *t) /* raw -> val */
{
    for (size_t i = 0; i < t->n; i++)
        t->val[i] = t->dtype == ATTN_DTYPE_F16 ? from_half(((uint16_t *)t->raw)[i])
                                               : ((float *)t->raw)[i];
}

static size_t ht_bytes(const htensor *t) { return t->n * (t->dtype == ATTN_DTYPE_F16 ? 2 : 4); }

/* ---- one problem -----------------------------------------------------------------------*/

typedef enum oracle {
    ORACLE_REFERENCE,     /* the reference backend on the same inputs */
    ORACLE_UNIFORM,       /* Q = 0: every score equal, so O = mean of the visible V rows */
    ORACLE_TWO_KEYS,      /* K = ±e0, Q = a·e0, scale 1: weights 1/(1+e^-2a) and the rest */
    ORACLE_MASKED_ROWS    /* Q = 0, causal with q_len > kv_len: leading rows see no key */
} oracle;

typedef struct vcase {
    const char *name;
    int64_t batch, heads, kv_heads, q_len, kv_len, head_dim, v_head_dim;
    attn_dtype dtype;
    int causal, want_lse;
    bool buffers;         /* Q/K/V/O in library buffers rather than host memory */
    const int32_t *kv_lens;
    oracle oracle;
    uint64_t budget;      /* nonzero: run in a context with a budget this small, raised to
                             what the scheduler needs on the device, so that it is scheduled */
} vcase;

static const int32_t padding_lens[2] = {50, 17};

/* The hand-checked cases run everywhere, the reference backend included, so that its
 * PASS means something; the rest compare a device with the reference. There are only three
 * specialisations (d 64 f32, d 64 f16, d 7 f32) because each is a compile per device, and
 * llvmpipe compiles a d-64 kernel at its first dispatch for minutes when its cache is cold. */
static const vcase verify_cases[] = {
    {"uniform scores = mean of V", 1, 4, 2, 9, 9, 64, 64, ATTN_DTYPE_F32, 1, 1, false, NULL, ORACLE_UNIFORM, 0},
    {"uniform scores, f16", 1, 2, 2, 12, 12, 64, 64, ATTN_DTYPE_F16, 0, 0, false, NULL, ORACLE_UNIFORM, 0},
    {"two keys, closed form", 1, 1, 1, 3, 2, 64, 64, ATTN_DTYPE_F32, 0, 1, false, NULL, ORACLE_TWO_KEYS, 0},
    {"fully masked rows = 0", 1, 2, 2, 4, 2, 64, 64, ATTN_DTYPE_F32, 1, 1, false, NULL, ORACLE_MASKED_ROWS, 0},
    {"dense", 1, 4, 4, 67, 67, 64, 64, ATTN_DTYPE_F32, 0, 0, false, NULL, ORACLE_REFERENCE, 0},
    {"causal + lse", 2, 3, 3, 45, 45, 64, 64, ATTN_DTYPE_F32, 1, 1, false, NULL, ORACLE_REFERENCE, 0},
    {"GQA 8:2, buffers", 1, 8, 2, 33, 50, 64, 64, ATTN_DTYPE_F32, 0, 0, true, NULL, ORACLE_REFERENCE, 0},
    {"f16 storage", 1, 2, 2, 40, 40, 64, 64, ATTN_DTYPE_F16, 1, 0, false, NULL, ORACLE_REFERENCE, 0},
    {"head_dim 7", 1, 3, 3, 29, 29, 7, 7, ATTN_DTYPE_F32, 0, 0, false, NULL, ORACLE_REFERENCE, 0},
    {"decode, GQA 4:1", 1, 4, 1, 1, 300, 64, 64, ATTN_DTYPE_F32, 1, 1, false, NULL, ORACLE_REFERENCE, 0},
    {"q_len > kv_len, causal", 1, 2, 2, 12, 5, 64, 64, ATTN_DTYPE_F32, 1, 1, false, NULL, ORACLE_REFERENCE, 0},
    {"padding (kv_lens)", 2, 2, 2, 20, 50, 64, 64, ATTN_DTYPE_F32, 0, 1, false, padding_lens, ORACLE_REFERENCE, 0},
    /* ~64 KiB cannot hold Q (300 KiB) in one pass: segments x chunks, merged. */
    {"small budget (scheduled)", 1, 4, 2, 300, 300, 64, 64, ATTN_DTYPE_F32, 1, 1, false, NULL, ORACLE_REFERENCE, 64 * 1024},
};
#define NUM_VERIFY_CASES (sizeof verify_cases / sizeof verify_cases[0])

/* The problem's tensors: inputs, the device's outputs and the expected ones. */
typedef struct vdata {
    htensor q, k, v, o, o_exp;
    float *lse, *lse_exp;
} vdata;

static void vdata_free(vdata *d)
{
    ht_free(&d->q);
    ht_free(&d->k);
    ht_free(&d->v);
    ht_free(&d->o);
    ht_free(&d->o_exp);
    free(d->lse);
    free(d->lse_exp);
}

static attn_desc case_desc(const vcase *c)
{
    attn_desc d = ATTN_DESC_INIT;
    d.batch = c->batch;
    d.num_heads = c->heads;
    d.num_kv_heads = c->kv_heads;
    d.q_len = c->q_len;
    d.kv_len = c->kv_len;
    d.head_dim = c->head_dim;
    d.v_head_dim = c->v_head_dim;
    d.dtype = c->dtype;
    d.causal = c->causal;
    d.kv_lens = c->kv_lens;
    d.want_lse = c->want_lse;
    d.scale = c->oracle == ORACLE_TWO_KEYS ? 1.0f : 0.0f;
    return d;
}

/* Runs the case's description on ctx with inputs d->q/k/v, writing *o (raw) and lse. With
 * `buffers`, Q/K/V/O travel through library buffers. Returns the first failure. */
static attn_status run_case(attn_context *ctx, const vcase *c, vdata *d, htensor *o, float *lse,
                            bool buffers, attn_plan_info *pinfo, char *err, size_t err_size)
{
    attn_desc desc = case_desc(c);
    attn_plan *plan = NULL;
    attn_buffer *bufs[4] = {NULL, NULL, NULL, NULL};
    htensor *ts[4] = {&d->q, &d->k, &d->v, o};
    const int64_t shapes[4][4] = {{c->batch, c->q_len, c->heads, c->head_dim},
                                  {c->batch, c->kv_len, c->kv_heads, c->head_dim},
                                  {c->batch, c->kv_len, c->kv_heads, c->v_head_dim},
                                  {c->batch, c->q_len, c->heads, c->v_head_dim}};
    attn_tensor at[4];
    const char *what = "attn_plan_create";
    attn_status s = attn_plan_create(ctx, &desc, &plan);
    if (s == ATTN_OK && pinfo) {
        pinfo->struct_size = sizeof *pinfo;
        s = attn_plan_get_info(plan, pinfo);
    }
    for (int i = 0; i < 4 && s == ATTN_OK; i++) {
        const int64_t *sh = shapes[i];
        if (!buffers) {
            at[i] = attn_tensor_host(c->dtype, sh[0], sh[1], sh[2], sh[3], ts[i]->raw);
            continue;
        }
        what = "attn_buffer_create/upload";
        s = attn_buffer_create(ctx, ht_bytes(ts[i]), &bufs[i]);
        if (s == ATTN_OK && i < 3)
            s = attn_buffer_upload(bufs[i], 0, ts[i]->raw, ht_bytes(ts[i]));
        at[i] = attn_tensor_buffer(c->dtype, sh[0], sh[1], sh[2], sh[3], bufs[i], 0);
    }
    if (s == ATTN_OK) {
        attn_run_args args = ATTN_RUN_ARGS_INIT;
        args.q = at[0];
        args.k = at[1];
        args.v = at[2];
        args.o = at[3];
        if (c->want_lse)
            args.lse = attn_tensor_host(ATTN_DTYPE_F32, c->batch, c->heads, c->q_len, 1, lse);
        what = "attn_plan_run";
        s = attn_plan_run(plan, &args);
    }
    if (s == ATTN_OK && buffers) {
        what = "attn_buffer_download";
        s = attn_buffer_download(bufs[3], 0, o->raw, ht_bytes(o));
    }
    if (s != ATTN_OK) {
        char msg[PROBE_MSG];
        probe_error_text(msg, sizeof msg, s, attn_last_detail());
        snprintf(err, err_size, "%s: %.280s", what, msg);
    }
    for (int i = 0; i < 4; i++)
        attn_buffer_destroy(bufs[i]);
    attn_plan_destroy(plan);
    if (s == ATTN_OK)
        ht_load(o);
    return s;
}

/* Fills the inputs of a case and, for a hand oracle, the expected output and lse. */
static void fill_case(const vcase *c, vdata *d, uint64_t seed)
{
    uint64_t rng = seed;
    for (size_t i = 0; i < d->q.n; i++)
        d->q.val[i] = c->oracle == ORACLE_REFERENCE ? rng_value(&rng) : 0.0f;
    for (size_t i = 0; i < d->k.n; i++)
        d->k.val[i] = rng_value(&rng);
    for (size_t i = 0; i < d->v.n; i++)
        d->v.val[i] = rng_value(&rng);
    if (c->oracle == ORACLE_TWO_KEYS) { /* K0 = e0, K1 = -e0; Q row i = a_i e0 */
        static const float a[3] = {0.0f, 1.5f, -3.0f};
        memset(d->k.val, 0, d->k.n * sizeof(float));
        d->k.val[0] = 1.0f;
        d->k.val[c->head_dim] = -1.0f;
        for (int64_t i = 0; i < c->q_len; i++)
            d->q.val[i * c->head_dim] = a[i % 3];
    }
    ht_store(&d->q);
    ht_store(&d->k);
    ht_store(&d->v);
    if (c->oracle == ORACLE_REFERENCE)
        return;

    /* Hand answers (batch 1). Row i sees keys j <= i + kv_len - q_len (bottom-right). */
    const int64_t group = c->heads / c->kv_heads, dv = c->v_head_dim;
    for (int64_t i = 0; i < c->q_len; i++)
        for (int64_t h = 0; h < c->heads; h++) {
            const int64_t kh = h / group;
            double *acc = calloc((size_t)dv, sizeof(double)), lse = -INFINITY;
            if (!acc)
                continue; /* the comparison then fails on the zero answer: visible, not silent */
            const float *v0 = &d->v.val[(size_t)(0 * c->kv_heads + kh) * (size_t)dv];
            const float *v1 = &d->v.val[(size_t)(1 * c->kv_heads + kh) * (size_t)dv];
            if (c->oracle == ORACLE_TWO_KEYS) {
                double av = d->q.val[(size_t)(i * c->heads + h) * (size_t)c->head_dim];
                double w0 = 1.0 / (1.0 + exp(-2.0 * av));
                for (int64_t e = 0; e < dv; e++)
                    acc[e] = w0 * v0[e] + (1.0 - w0) * v1[e];
                lse = fabs(av) + log1p(exp(-2.0 * fabs(av))); /* log(e^a + e^-a) */
            } else {
                int64_t last = c->causal ? i + c->kv_len - c->q_len : c->kv_len - 1;
                if (last >= c->kv_len)
                    last = c->kv_len - 1;
                for (int64_t j = 0; j <= last; j++)
                    for (int64_t e = 0; e < dv; e++)
                        acc[e] += d->v.val[(size_t)(j * c->kv_heads + kh) * (size_t)dv + (size_t)e];
                for (int64_t e = 0; last >= 0 && e < dv; e++)
                    acc[e] /= (double)(last + 1);
                lse = last >= 0 ? log((double)(last + 1)) : -INFINITY;
            }
            for (int64_t e = 0; e < dv; e++)
                d->o_exp.val[(size_t)(i * c->heads + h) * (size_t)dv + (size_t)e] = (float)acc[e];
            if (d->lse_exp)
                d->lse_exp[h * c->q_len + i] = (float)lse;
            free(acc);
        }
    /* The device stores O in the case's dtype: round the expected value the same way. */
    ht_store(&d->o_exp);
    ht_load(&d->o_exp);
}

/* Adds the comparison of n values to r. An expected -inf (an empty row's lse) must be met
 * exactly; any other non-finite value on either side is a failure. */
static void compare(const float *got, const float *exp_, size_t n, verify_case_result *r)
{
    for (size_t i = 0; i < n; i++) {
        double g = got[i], e = exp_[i];
        if (isinf(e) && e < 0 && isinf(g) && g < 0)
            continue;
        if (!isfinite(g) || !isfinite(e)) {
            r->nonfinite++;
            continue;
        }
        double err = fabs(g - e), ratio = err / (1.0 + fabs(e));
        if (err > r->max_err)
            r->max_err = err;
        if (ratio > r->worst_ratio)
            r->worst_ratio = ratio;
    }
}

static void case_shape(const vcase *c, char *dst, size_t size)
{
    snprintf(dst, size, "B%lld H%lld/%lld q%lld kv%lld d%lld %s%s%s%s%s", (long long)c->batch,
             (long long)c->heads, (long long)c->kv_heads, (long long)c->q_len, (long long)c->kv_len,
             (long long)c->head_dim, c->dtype == ATTN_DTYPE_F16 ? "f16" : "f32",
             c->causal ? " causal" : "", c->want_lse ? " lse" : "", c->kv_lens ? " kv_lens" : "",
             c->buffers ? " buffers" : "");
}

static void case_result_init(const vcase *c, verify_case_result *r)
{
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", c->name);
    case_shape(c, r->shape, sizeof r->shape);
    r->oracle = c->oracle == ORACLE_REFERENCE ? "reference" : "hand";
    r->tolerance = c->dtype == ATTN_DTYPE_F16 ? TOL_F16 : TOL_F32;
}

static void verify_one(attn_context *ctx, attn_context *ref, const vcase *c, uint64_t seed,
                       int *family, verify_case_result *r)
{
    case_result_init(c, r);

    vdata d;
    memset(&d, 0, sizeof d);
    const size_t nq = (size_t)(c->batch * c->q_len * c->heads * c->head_dim);
    const size_t nk = (size_t)(c->batch * c->kv_len * c->kv_heads * c->head_dim);
    const size_t nv = (size_t)(c->batch * c->kv_len * c->kv_heads * c->v_head_dim);
    const size_t no = (size_t)(c->batch * c->q_len * c->heads * c->v_head_dim);
    const size_t nl = (size_t)(c->batch * c->heads * c->q_len);
    bool ok = ht_alloc(&d.q, nq, c->dtype) && ht_alloc(&d.k, nk, c->dtype) &&
              ht_alloc(&d.v, nv, c->dtype) && ht_alloc(&d.o, no, c->dtype) &&
              ht_alloc(&d.o_exp, no, c->dtype);
    if (ok && c->want_lse) {
        d.lse = calloc(nl, sizeof(float));
        d.lse_exp = calloc(nl, sizeof(float));
        ok = d.lse && d.lse_exp;
    }
    if (!ok) {
        snprintf(r->error, sizeof r->error, "out of host memory");
        vdata_free(&d);
        return;
    }
    fill_case(c, &d, seed);
    char err[PROBE_MSG];
    attn_plan_info pi;
    memset(&pi, 0, sizeof pi);
    attn_status s = run_case(ctx, c, &d, &d.o, d.lse, c->buffers, &pi, err, sizeof err);
    if (pi.struct_size && !c->budget) /* the plan was made, whether or not it ran */
        *family = pi.family;
    if (s == ATTN_OK && c->budget && !pi.scheduled) {
        /* Correct but not what the case is for: say so rather than pass silently. */
        size_t len = strlen(r->shape);
        snprintf(r->shape + len, sizeof r->shape - len, " (not scheduled)");
    }
    if (s == ATTN_OK && c->oracle == ORACLE_REFERENCE) {
        s = run_case(ref, c, &d, &d.o_exp, d.lse_exp, false, NULL, err, sizeof err);
        if (s != ATTN_OK) {
            char tmp[PROBE_MSG];
            snprintf(tmp, sizeof tmp, "reference: %.300s", err);
            snprintf(err, sizeof err, "%s", tmp);
        }
    }
    if (s != ATTN_OK) {
        snprintf(r->error, sizeof r->error, "%s", err);
        vdata_free(&d);
        return;
    }
    r->ran = true;
    compare(d.o.val, d.o_exp.val, no, r);
    if (c->want_lse)
        compare(d.lse, d.lse_exp, nl, r);
    r->pass = r->nonfinite == 0 && r->worst_ratio <= r->tolerance;
    vdata_free(&d);
}

static attn_status open_context(attn_backend backend, uint32_t index, uint64_t budget,
                                attn_context **ctx)
{
    attn_context_params p = ATTN_CONTEXT_PARAMS_INIT;
    p.backend = backend;
    p.device_index = index;
    p.memory_budget = budget;
    p.kernel_family = ATTN_FAMILY_AUTO;
    return attn_context_create(&p, ctx);
}

/* The budget of a scheduled case: c->budget, or 1.5x the least the scheduler can run the
 * problem in on this device if that is more (a GPU-class tile needs more than a CPU one),
 * kept below what one pass needs so that the problem is still scheduled. */
static uint64_t scheduled_budget(attn_context *ctx, const vcase *c)
{
    attn_desc d = case_desc(c);
    attn_plan *plan = NULL;
    attn_plan_info pi = {.struct_size = sizeof pi};
    uint64_t budget = c->budget;
    if (attn_plan_create(ctx, &d, &plan) == ATTN_OK && attn_plan_get_info(plan, &pi) == ATTN_OK) {
        uint64_t want = pi.min_device_bytes + pi.min_device_bytes / 2;
        if (want > budget)
            budget = want;
        if (pi.device_bytes && budget >= pi.device_bytes)
            budget = pi.min_device_bytes > c->budget ? pi.min_device_bytes : c->budget;
    }
    attn_plan_destroy(plan);
    return budget;
}

void probe_verify(attn_backend backend, uint32_t index, FILE *progress, verify_result *r)
{
    memset(r, 0, sizeof *r);
    r->ran = true;
    r->family = ATTN_FAMILY_AUTO;
    attn_context *ctx = NULL, *ref = NULL, *small = NULL;
    char err[PROBE_MSG] = "";
    attn_status s = open_context(backend, index, 0, &ctx);
    if (s != ATTN_OK)
        probe_error_text(err, sizeof err, s, attn_last_detail());
    else if ((s = open_context(ATTN_BACKEND_REFERENCE, 0, 0, &ref)) != ATTN_OK)
        probe_error_text(err, sizeof err, s, attn_last_detail());

    const bool is_ref = backend == ATTN_BACKEND_REFERENCE;
    for (size_t i = 0; i < NUM_VERIFY_CASES && r->num_cases < VERIFY_MAX_CASES; i++) {
        const vcase *c = &verify_cases[i];
        if (is_ref && c->oracle == ORACLE_REFERENCE)
            continue; /* the reference against itself proves nothing */
        verify_case_result *cr = &r->cases[r->num_cases++];
        attn_context *use = ctx;
        if (s == ATTN_OK && c->budget) { /* one context per budget; there is one budget */
            attn_context_destroy(small);
            small = NULL;
            attn_status bs = open_context(backend, index, scheduled_budget(ctx, c), &small);
            if (bs != ATTN_OK) {
                case_result_init(c, cr);
                char msg[PROBE_MSG];
                probe_error_text(msg, sizeof msg, bs, attn_last_detail());
                snprintf(cr->error, sizeof cr->error, "attn_context_create: %.280s", msg);
                use = NULL;
            }
            if (use)
                use = small;
        }
        if (s != ATTN_OK) {
            case_result_init(c, cr);
            snprintf(cr->error, sizeof cr->error, "attn_context_create: %.280s", err);
        } else if (use) {
            verify_one(use, ref, c, UINT64_C(0x9e57) + i, &r->family, cr);
        }
        if (!cr->pass)
            r->num_failed++;
        if (cr->ran && cr->max_err > r->max_err)
            r->max_err = cr->max_err;
        if (cr->ran && cr->worst_ratio / cr->tolerance > r->worst_of_tol)
            r->worst_of_tol = cr->worst_ratio / cr->tolerance;
        if (progress) {
            fprintf(progress, "    %-28s %-42s ", cr->name, cr->shape);
            if (!cr->ran)
                fprintf(progress, "FAIL  %s\n", cr->error);
            else
                fprintf(progress, "max|err| %.2e%s  %s\n", cr->max_err,
                        cr->nonfinite ? "  NON-FINITE" : "", cr->pass ? "PASS" : "FAIL");
            fflush(progress);
        }
    }
    r->pass = r->num_cases > 0 && r->num_failed == 0;
    attn_context_destroy(small);
    attn_context_destroy(ref);
    attn_context_destroy(ctx);
}

/* ---- --bench ----------------------------------------------------------------------------*/

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One shape in a fresh context, so that plan creation includes the JIT (a driver's own
 * cache, such as PoCL's, may still shorten it). Inputs live in library buffers. */
static void bench_shape(attn_backend backend, uint32_t index, bench_shape_result *r)
{
    attn_context *ctx = NULL;
    attn_plan *plan = NULL;
    attn_buffer *b[4] = {NULL, NULL, NULL, NULL};
    float *host = NULL;
    const char *what = "attn_context_create";
    attn_status s = open_context(backend, index, 0, &ctx);

    const int64_t sh[4][4] = {{r->batch, r->q_len, r->heads, r->head_dim},
                              {r->batch, r->kv_len, r->kv_heads, r->head_dim},
                              {r->batch, r->kv_len, r->kv_heads, r->head_dim},
                              {r->batch, r->q_len, r->heads, r->head_dim}};
    attn_tensor t[4];
    for (int i = 0; i < 4 && s == ATTN_OK; i++) {
        size_t n = (size_t)(sh[i][0] * sh[i][1] * sh[i][2] * sh[i][3]);
        what = "attn_buffer_create/upload";
        s = attn_buffer_create(ctx, n * sizeof(float), &b[i]);
        if (s == ATTN_OK && i < 3) {
            uint64_t rng = (uint64_t)i + 1;
            free(host);
            host = malloc(n * sizeof(float));
            if (!host) {
                snprintf(r->error, sizeof r->error, "out of host memory");
                goto done;
            }
            for (size_t j = 0; j < n; j++)
                host[j] = rng_value(&rng);
            s = attn_buffer_upload(b[i], 0, host, n * sizeof(float));
        }
        t[i] = attn_tensor_buffer(ATTN_DTYPE_F32, sh[i][0], sh[i][1], sh[i][2], sh[i][3], b[i], 0);
    }
    if (s == ATTN_OK) {
        attn_desc d = ATTN_DESC_INIT;
        d.batch = r->batch;
        d.num_heads = r->heads;
        d.num_kv_heads = r->kv_heads;
        d.q_len = r->q_len;
        d.kv_len = r->kv_len;
        d.head_dim = r->head_dim;
        what = "attn_plan_create";
        double t0 = probe_now_ms();
        s = attn_plan_create(ctx, &d, &plan);
        r->plan_ms = probe_now_ms() - t0;
        attn_stats st = {.struct_size = sizeof st};
        if (s == ATTN_OK && attn_context_get_stats(ctx, &st) == ATTN_OK) {
            r->kernels_compiled = st.kernels_compiled;
            r->disk_cache_hits = st.disk_cache_hits;
        }
        attn_plan_info pi = {.struct_size = sizeof pi};
        if (s == ATTN_OK && attn_plan_get_info(plan, &pi) == ATTN_OK) {
            r->family = pi.family;
            snprintf(r->kernel, sizeof r->kernel, "%s", pi.kernel);
        }
    }
    if (s == ATTN_OK) {
        attn_run_args a = ATTN_RUN_ARGS_INIT;
        a.q = t[0];
        a.k = t[1];
        a.v = t[2];
        a.o = t[3];
        double ms[3];
        what = "attn_plan_run";
        s = attn_plan_run(plan, &a); /* warm-up */
        for (int i = 0; i < 3 && s == ATTN_OK; i++) {
            double t0 = probe_now_ms();
            s = attn_plan_run(plan, &a);
            ms[i] = probe_now_ms() - t0;
        }
        if (s == ATTN_OK) {
            qsort(ms, 3, sizeof ms[0], cmp_double);
            r->ms_median = ms[1];
            r->gflop = 4.0 * (double)r->batch * (double)r->heads * (double)r->q_len *
                       (double)r->kv_len * (double)r->head_dim * 1e-9;
            r->gflops = r->ms_median > 0 ? r->gflop / (r->ms_median * 1e-3) : 0.0;
            r->ran = true;
        }
    }
    if (s != ATTN_OK) {
        char msg[PROBE_MSG];
        probe_error_text(msg, sizeof msg, s, attn_last_detail());
        snprintf(r->error, sizeof r->error, "%s: %.280s", what, msg);
    }
done:
    free(host);
    attn_plan_destroy(plan);
    for (int i = 0; i < 4; i++)
        attn_buffer_destroy(b[i]);
    attn_context_destroy(ctx);
}

void probe_bench(attn_backend backend, uint32_t index, bench_result *r)
{
    memset(r, 0, sizeof *r);
    r->ran = true;
    /* Prefill: 8 heads, 1024 tokens, d 64. Decode: one query over a 4096-token cache,
     * 32 heads on 8 KV heads, d 128. Both f32, non-causal: FLOPs = 4·B·H·Sq·Skv·d. */
    r->shapes[0] = (bench_shape_result){.name = "prefill", .batch = 1, .heads = 8,
                                        .kv_heads = 8, .q_len = 1024, .kv_len = 1024,
                                        .head_dim = 64};
    r->shapes[1] = (bench_shape_result){.name = "decode", .batch = 1, .heads = 32,
                                        .kv_heads = 8, .q_len = 1, .kv_len = 4096,
                                        .head_dim = 128};
    for (int i = 0; i < 2; i++)
        bench_shape(backend, index, &r->shapes[i]);
}
