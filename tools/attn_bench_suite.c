/* attn_bench_suite.c — attn-bench --suite: the fixed prefill and decode set on every
 * OpenCL and Vulkan device, each row timed against the clBLAST baseline in the same run
 * (attn_bench_ocl.c), with rows too slow for a device skipped by an estimate, and said. */
#include "attn_bench_suite.h"

#include "attn_bench_ocl.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ROWS 40

typedef struct suite_row {
    bool decode;
    bench_shape s;
} suite_row;

/* The suite warms each row up with one run of attn and one of the baseline unless
 * --warmup says otherwise; they alternate, so neither side's threads idle in between. */
static int64_t suite_warmup(const bench_opts *o) { return o->warmup < 0 ? 1 : o->warmup; }

/* The fixed set of issue 7: prefill over two lengths, two head_dims, GQA 8:2 and plain
 * 8:8, f32 and f16, causal and not; decode over a 4k and a 64k cache. Cheaper rows first
 * within each kind, so the estimates for the long rows come from rows already measured. */
static size_t suite_rows(suite_row rows[MAX_ROWS])
{
    static const int64_t lens[] = {1024, 4096}, dims[] = {64, 128}, kv_heads[] = {8, 2};
    static const int64_t caches[] = {4096, 65536};
    static const attn_dtype dtypes[] = {ATTN_DTYPE_F32, ATTN_DTYPE_F16};
    size_t n = 0;
    for (size_t l = 0; l < 2; l++)
        for (size_t d = 0; d < 2; d++)
            for (size_t g = 0; g < 2; g++)
                for (size_t t = 0; t < 2; t++)
                    for (int causal = 0; causal < 2; causal++)
                        rows[n++] = (suite_row){
                            .s = {.batch = 1, .heads = 8, .kv_heads = kv_heads[g],
                                  .q_len = lens[l], .kv_len = lens[l], .head_dim = dims[d],
                                  .v_head_dim = dims[d], .dtype = dtypes[t], .causal = causal}};
    for (size_t c = 0; c < 2; c++)
        rows[n++] = (suite_row){
            .decode = true,
            .s = {.batch = 1, .heads = 32, .kv_heads = 8, .q_len = 1, .kv_len = caches[c],
                  .head_dim = 128, .v_head_dim = 128, .dtype = ATTN_DTYPE_F16}};
    return n;
}

/* What --quick keeps: the short prefill rows and the short decode row. */
static bool quick_row(const suite_row *r)
{
    return r->decode ? r->s.kv_len <= 4096 : r->s.q_len <= 1024;
}

typedef struct row_result {
    char skipped[200];         /* why the row did not run; "" when it ran */
    char error[BENCH_ERR];     /* attn failed on it */
    int64_t reps;
    double flops, bytes, plan_ms, ms, ms_min;
    double gemm_flops;         /* the baseline's two GEMMs: every pair, masked or not */
    attn_plan_info plan;
    char base_note[BENCH_ERR]; /* why there is no baseline time */
    bool base_ran;
    bench_base_times base;     /* medians: of each stage and of the totals */
    uint64_t nonfinite;        /* outputs where attn or the baseline is NaN/inf */
    double max_err, worst_ratio;
} row_result;

/* The slowest rate of the rows of one kind measured so far: it predicts the next ones. */
typedef struct rate {
    double spf;     /* seconds per FLOP; 0 = none measured yet */
    char from[112]; /* "x GFLOP/s on <row>" */
} rate;

typedef struct suite_device {
    attn_device_info info;
    attn_context *ctx;
    bench_cl *cl;             /* the device itself, when it is an OpenCL one we opened */
    bench_cl *base_cl;        /* where the baseline runs: cl, or the same hardware's */
    uint32_t base_index;      /* OpenCL index of base_cl */
    char base_why[BENCH_ERR]; /* no baseline: why */
    rate attn_rate[2], base_rate[2]; /* [decode] */
} suite_device;

typedef struct suite {
    const bench_opts *o;
    bench_cl **cls; /* OpenCL devices opened so far, by index */
    char (*cl_err)[BENCH_ERR];
    uint32_t num_cl;
    bool json, converted_f16, any_skipped;
    int failed;
} suite;

static void row_label(const suite_row *r, char *buf, size_t size)
{
    const bench_shape *s = &r->s;
    char heads[24];
    snprintf(heads, sizeof heads, "h%" PRId64 "/%" PRId64, s->heads, s->kv_heads);
    if (r->decode)
        snprintf(buf, size, "decode  1x%-6" PRId64 " %-6s d%-3" PRId64 " %s", s->kv_len, heads,
                 s->head_dim, bench_word_of(bench_dtype_words, s->dtype));
    else
        snprintf(buf, size, "prefill %-8" PRId64 " %-6s d%-3" PRId64 " %s %-6s", s->q_len, heads,
                 s->head_dim, bench_word_of(bench_dtype_words, s->dtype),
                 s->causal ? "causal" : "full");
}

/* OpenCL device `index`, opened once for the whole suite; NULL with *why set if it
 * cannot be. */
static bench_cl *suite_cl(suite *st, uint32_t index, const char **why)
{
    if (index >= st->num_cl) {
        *why = "no such OpenCL device";
        return NULL;
    }
    if (!st->cls[index] && !st->cl_err[index][0])
        bench_cl_open(index, &st->cls[index], st->cl_err[index]);
    *why = st->cl_err[index];
    return st->cls[index];
}

/* The OpenCL device that is the same hardware as a Vulkan device, or -1. Without a
 * shared identifier (a PCI address) across the two APIs: a CPU-type device is the
 * machine's CPU in either API; a GPU matches the first OpenCL device of the same type and
 * PCI vendor id. */
static int64_t same_hardware(const attn_device_info *vk, uint32_t num_cl)
{
    for (uint32_t i = 0; i < num_cl; i++) {
        attn_device_info cl = {.struct_size = sizeof cl};
        if (attn_device_get_info(ATTN_BACKEND_OPENCL, i, &cl) != ATTN_OK || cl.type != vk->type)
            continue;
        if (vk->type == ATTN_DEVICE_CPU || (vk->type != ATTN_DEVICE_OTHER &&
                                            cl.vendor_id == vk->vendor_id))
            return i;
    }
    return -1;
}

/* ---- one row ---------------------------------------------------------------------------*/

static void rate_update(rate *rt, double ms, double flops, const suite_row *r)
{
    const double spf = ms * 1e-3 / flops;
    if (spf <= rt->spf)
        return;
    rt->spf = spf;
    char label[64];
    row_label(r, label, sizeof label);
    size_t k = 0; /* the label without its column padding */
    for (size_t i = 0; label[i]; i++)
        if (label[i] != ' ' || (k > 0 && label[k - 1] != ' '))
            label[k++] = label[i];
    label[k > 0 && label[k - 1] == ' ' ? k - 1 : k] = '\0';
    snprintf(rt->from, sizeof rt->from, "%.3g GFLOP/s on %s", 1e-9 / spf, label);
}

/* Everything a row allocates. */
typedef struct row_work {
    void *q, *k, *v, *o, *o_base;
    bench_cl_problem *attn_problem, *base_problem; /* the same one on an OpenCL device */
    attn_buffer *qb, *kb, *vb, *ob;
    attn_plan *plan;
    double *times, *base_times[5];
} row_work;

static void row_work_free(row_work *w)
{
    attn_plan_destroy(w->plan);
    attn_buffer_destroy(w->qb);
    attn_buffer_destroy(w->kb);
    attn_buffer_destroy(w->vb);
    attn_buffer_destroy(w->ob);
    if (w->base_problem != w->attn_problem)
        bench_cl_problem_free(w->base_problem);
    bench_cl_problem_free(w->attn_problem);
    free(w->q);
    free(w->k);
    free(w->v);
    free(w->o);
    free(w->o_base);
    free(w->times);
    for (int i = 0; i < 5; i++)
        free(w->base_times[i]);
}

/* Records an attn failure in the row; returns -1. */
static int attn_error(row_result *res, const char *what, attn_status s)
{
    snprintf(res->error, sizeof res->error, "%s: %s: %s", what, attn_status_name(s),
             attn_last_detail());
    return -1;
}

/* Q, K, V and O where the attn context can use them, and the plan. */
static int attn_setup(suite_device *dv, const bench_shape *s, row_work *w, size_t bytes[4],
                      row_result *res)
{
    attn_status st;
    if (dv->cl) {
        char err[BENCH_ERR];
        if (bench_cl_problem_create(dv->cl, s, w->q, w->k, w->v, &w->attn_problem, err)) {
            snprintf(res->error, sizeof res->error, "%s", err);
            return -1;
        }
        st = bench_cl_problem_wrap(w->attn_problem, dv->ctx, &w->qb, &w->kb, &w->vb, &w->ob);
        if (st != ATTN_OK)
            return attn_error(res, "wrapping the OpenCL buffers", st);
    } else {
        attn_buffer **bufs[4] = {&w->qb, &w->kb, &w->vb, &w->ob};
        const void *host[3] = {w->q, w->k, w->v};
        for (int i = 0; i < 4; i++) {
            if ((st = attn_buffer_create(dv->ctx, bytes[i], bufs[i])) != ATTN_OK)
                return attn_error(res, "attn_buffer_create", st);
            if (i < 3 && (st = attn_buffer_upload(*bufs[i], 0, host[i], bytes[i])) != ATTN_OK)
                return attn_error(res, "attn_buffer_upload", st);
        }
    }
    attn_desc desc = ATTN_DESC_INIT;
    desc.batch = s->batch;
    desc.num_heads = s->heads;
    desc.num_kv_heads = s->kv_heads;
    desc.q_len = s->q_len;
    desc.kv_len = s->kv_len;
    desc.head_dim = s->head_dim;
    desc.v_head_dim = s->v_head_dim;
    desc.dtype = s->dtype;
    desc.causal = s->causal;
    double t0 = bench_now_ms();
    if ((st = attn_plan_create(dv->ctx, &desc, &w->plan)) != ATTN_OK)
        return attn_error(res, "attn_plan_create", st);
    res->plan_ms = bench_now_ms() - t0;
    res->plan.struct_size = sizeof res->plan;
    if ((st = attn_plan_get_info(w->plan, &res->plan)) != ATTN_OK)
        return attn_error(res, "attn_plan_get_info", st);
    return 0;
}

/* Runs one row: attn and the baseline alternately (warm-up runs first), so both see the
 * same machine load; then compares their outputs. */
static void run_row(suite *st, suite_device *dv, const suite_row *r, row_result *res)
{
    const bench_opts *o = st->o;
    const bench_shape *s = &r->s;
    const size_t esize = s->dtype == ATTN_DTYPE_F16 ? 2 : 4;
    size_t n[4]; /* the fixed shapes: far from overflowing */
    bench_count4(s->batch, s->q_len, s->heads, s->head_dim, &n[0]);
    bench_count4(s->batch, s->kv_len, s->kv_heads, s->head_dim, &n[1]);
    bench_count4(s->batch, s->kv_len, s->kv_heads, s->v_head_dim, &n[2]);
    bench_count4(s->batch, s->q_len, s->heads, s->v_head_dim, &n[3]);
    size_t bytes[4] = {n[0] * esize, n[1] * esize, n[2] * esize, n[3] * esize};
    res->flops = 2.0 * (double)s->batch * (double)s->heads *
                 (double)bench_visible_pairs(s->q_len, s->kv_len, s->causal) *
                 (double)(s->head_dim + s->v_head_dim);
    res->bytes = (double)(bytes[0] + bytes[1] + bytes[2] + bytes[3]);
    res->gemm_flops = 2.0 * (double)s->batch * (double)s->heads *
                      (double)bench_visible_pairs(s->q_len, s->kv_len, false) *
                      (double)(s->head_dim + s->v_head_dim);

    if (o->quick && !quick_row(r)) {
        snprintf(res->skipped, sizeof res->skipped, "--quick");
        return;
    }
    /* attn first: a row whose baseline alone would exceed the cap keeps its attn time. */
    const double cap_ms = (double)o->max_seconds_per_row * 1e3;
    const int64_t warmup = suite_warmup(o);
    const double runs = (double)(warmup + o->reps);
    const rate *ar = &dv->attn_rate[r->decode], *br = &dv->base_rate[r->decode];
    const double est_ms = res->flops * ar->spf * runs * 1e3;
    const double est_base_ms = res->gemm_flops * br->spf * runs * 1e3;
    if (cap_ms > 0 && est_ms > cap_ms) {
        snprintf(res->skipped, sizeof res->skipped,
                 "estimated %.1f s > --max-seconds-per-row %" PRId64 " (rate %s)",
                 est_ms * 1e-3, o->max_seconds_per_row, ar->from);
        return;
    }

    row_work w = {0};
    uint64_t rng = UINT64_C(0x5eed0a77e2024); /* attn-bench's seed: the same inputs */
    w.q = bench_make_input(n[0], s->dtype, &rng);
    w.k = bench_make_input(n[1], s->dtype, &rng);
    w.v = bench_make_input(n[2], s->dtype, &rng);
    w.o = malloc(bytes[3]);
    w.o_base = malloc(bytes[3]);
    w.times = malloc((size_t)o->reps * sizeof *w.times);
    for (int i = 0; i < 5; i++)
        w.base_times[i] = malloc((size_t)o->reps * sizeof *w.base_times[i]);
    bool allocated = w.q && w.k && w.v && w.o && w.o_base && w.times;
    for (int i = 0; i < 5; i++)
        allocated = allocated && w.base_times[i];
    if (!allocated) {
        snprintf(res->error, sizeof res->error, "out of host memory");
        row_work_free(&w);
        return;
    }
    if (attn_setup(dv, s, &w, bytes, res)) {
        row_work_free(&w);
        return;
    }
    attn_run_args args = ATTN_RUN_ARGS_INIT;
    args.q = attn_tensor_buffer(s->dtype, s->batch, s->q_len, s->heads, s->head_dim, w.qb, 0);
    args.k = attn_tensor_buffer(s->dtype, s->batch, s->kv_len, s->kv_heads, s->head_dim, w.kb, 0);
    args.v = attn_tensor_buffer(s->dtype, s->batch, s->kv_len, s->kv_heads, s->v_head_dim, w.vb, 0);
    args.o = attn_tensor_buffer(s->dtype, s->batch, s->q_len, s->heads, s->v_head_dim, w.ob, 0);

    /* The baseline: on the device itself, reading attn's own Q/K/V buffers, or on the
     * OpenCL device that is the same hardware, with the same inputs. */
    char err[BENCH_ERR] = "";
    bool base = dv->base_cl != NULL;
    if (!base) {
        snprintf(res->base_note, sizeof res->base_note, "%s", dv->base_why);
    } else if (cap_ms > 0 && est_ms + est_base_ms > cap_ms) {
        snprintf(res->base_note, sizeof res->base_note,
                 "baseline skipped: estimated %.1f s with it > %" PRId64 " s; baseline %s",
                 (est_ms + est_base_ms) * 1e-3, o->max_seconds_per_row, br->from);
        st->any_skipped = true;
        base = false;
    } else if (w.attn_problem) {
        w.base_problem = w.attn_problem;
    } else if (bench_cl_problem_create(dv->base_cl, s, w.q, w.k, w.v, &w.base_problem, err)) {
        snprintf(res->base_note, sizeof res->base_note, "%s", err);
        base = false;
    }

    attn_status as = ATTN_OK;
    bench_base_times bt;
    for (int64_t i = 0; i < warmup; i++) {
        if ((as = attn_plan_run(w.plan, &args)) != ATTN_OK) {
            attn_error(res, "attn_plan_run", as);
            row_work_free(&w);
            return;
        }
        if (base && bench_cl_baseline_run(w.base_problem, &bt, err)) {
            snprintf(res->base_note, sizeof res->base_note, "%s", err);
            base = false;
        }
    }
    /* A row that the estimate let through but that is slower than the cap allows (the
     * first of its kind) stops its reps at the cap, after one at least. */
    double spent_ms = 0, last_ms = 0;
    for (res->reps = 0; res->reps < o->reps; res->reps++) {
        const int64_t i = res->reps;
        if (cap_ms > 0 && i > 0 && spent_ms + last_ms > cap_ms)
            break;
        double t0 = bench_now_ms();
        if ((as = attn_plan_run(w.plan, &args)) != ATTN_OK) {
            attn_error(res, "attn_plan_run", as);
            row_work_free(&w);
            return;
        }
        w.times[i] = bench_now_ms() - t0;
        if (base && bench_cl_baseline_run(w.base_problem, &bt, err)) {
            snprintf(res->base_note, sizeof res->base_note, "%s", err);
            base = false;
        }
        if (base) {
            const double stage[5] = {bt.convert_ms, bt.qk_ms, bt.softmax_ms, bt.pv_ms,
                                     bt.total_ms};
            for (int j = 0; j < 5; j++)
                w.base_times[j][i] = stage[j];
        }
        last_ms = w.times[i] + (base ? bt.total_ms : 0);
        spent_ms += last_ms;
    }
    res->ms = bench_median(w.times, (size_t)res->reps);
    res->ms_min = w.times[0]; /* bench_median sorted them */
    if ((as = attn_buffer_download(w.ob, 0, w.o, bytes[3])) != ATTN_OK) {
        attn_error(res, "attn_buffer_download", as);
        row_work_free(&w);
        return;
    }

    if (base && bench_cl_baseline_read(w.base_problem, w.o_base, err)) {
        snprintf(res->base_note, sizeof res->base_note, "%s", err);
        base = false;
    }
    if (base) {
        res->base_ran = true;
        double *med[5] = {&res->base.convert_ms, &res->base.qk_ms, &res->base.softmax_ms,
                          &res->base.pv_ms, &res->base.total_ms};
        for (int j = 0; j < 5; j++)
            *med[j] = bench_median(w.base_times[j], (size_t)res->reps);
        for (size_t i = 0; i < n[3]; i++) {
            const double a = bench_element(w.o, s->dtype, i);
            const double b = bench_element(w.o_base, s->dtype, i);
            if (!isfinite(a) || !isfinite(b)) {
                res->nonfinite++;
                continue;
            }
            const double e = fabs(a - b), ratio = e / (1.0 + fabs(b));
            res->max_err = e > res->max_err ? e : res->max_err;
            res->worst_ratio = ratio > res->worst_ratio ? ratio : res->worst_ratio;
        }
        st->converted_f16 |= s->dtype == ATTN_DTYPE_F16 && !bench_cl_has_fp16(dv->base_cl);
    }

    rate_update(&dv->attn_rate[r->decode], res->ms, res->flops, r);
    if (base)
        rate_update(&dv->base_rate[r->decode], res->base.total_ms, res->gemm_flops, r);
    row_work_free(&w);
}

/* ---- output ----------------------------------------------------------------------------*/

static void text_header(const suite_device *dv)
{
    printf("\n%s [%s #%" PRIu32 ", %s; %s; %s]\n", dv->info.name,
           bench_word_of(bench_backend_words, dv->info.backend), dv->info.index,
           bench_device_type_name(dv->info.type), dv->info.api_version, dv->info.driver_version);
    if (dv->base_cl && dv->cl)
        printf("  baseline: %s on this device, in the same context and on the same buffers\n",
               bench_cl_baseline_name());
    else if (dv->base_cl)
        printf("  baseline: %s on OpenCL #%" PRIu32 " %s, the same hardware (%s)\n",
               bench_cl_baseline_name(), dv->base_index, bench_cl_device_name(dv->base_cl),
               dv->info.type == ATTN_DEVICE_CPU ? "both are the CPU"
                                                : "same device type and PCI vendor id");
    else
        printf("  baseline: n/a (%s)\n", dv->base_why);
    printf("  %-36s %4s %9s %8s %6s %10s %7s %9s %9s\n", "row", "reps", "ms", "GFLOP/s", "GB/s",
           "clBLAST ms", "GEMM/s", "base/attn", "max|err|");
    fflush(stdout);
}

static void text_row(const suite_row *r, const row_result *res)
{
    char label[64];
    row_label(r, label, sizeof label);
    if (res->skipped[0]) {
        printf("  %-36s skipped: %s\n", label, res->skipped);
    } else if (res->error[0]) {
        printf("  %-36s FAILED: %s\n", label, res->error);
    } else {
        char gbs[16] = "-";
        if (r->decode)
            snprintf(gbs, sizeof gbs, "%.1f", res->bytes / (res->ms * 1e6));
        printf("  %-36s %4" PRId64 " %9.3f %8.2f %6s", label, res->reps, res->ms,
               res->flops / (res->ms * 1e6), gbs);
        if (res->base_ran) {
            printf(" %10.3f %7.2f %8.2fx ", res->base.total_ms,
                   res->gemm_flops / ((res->base.qk_ms + res->base.pv_ms) * 1e6),
                   res->base.total_ms / res->ms);
            if (res->nonfinite)
                printf("%" PRIu64 " non-finite\n", res->nonfinite);
            else
                printf("%9.2e\n", res->max_err);
        } else {
            printf(" %10s  (%s)\n", "n/a", res->base_note);
        }
    }
    fflush(stdout);
}

static void json_device_open(const suite_device *dv, bool first)
{
    printf("%s{\"device\": ", first ? "" : ", ");
    tool_json_string(stdout, dv->info.name);
    printf(", \"backend\": ");
    tool_json_string(stdout, bench_word_of(bench_backend_words, dv->info.backend));
    printf(", \"device_index\": %" PRIu32 ", \"device_type\": ", dv->info.index);
    tool_json_string(stdout, bench_device_type_name(dv->info.type));
    printf(", \"api_version\": ");
    tool_json_string(stdout, dv->info.api_version);
    printf(", \"driver_version\": ");
    tool_json_string(stdout, dv->info.driver_version);
    printf(", \"baseline_device\": ");
    if (dv->base_cl)
        tool_json_string(stdout, bench_cl_device_name(dv->base_cl));
    else
        printf("null");
    printf(", \"baseline_opencl_index\": ");
    if (dv->base_cl)
        printf("%" PRIu32, dv->base_index);
    else
        printf("null");
    printf(", \"baseline_unavailable\": ");
    if (dv->base_cl)
        printf("null");
    else
        tool_json_string(stdout, dv->base_why);
    printf(", \"rows\": [");
}

static void json_row(const suite_device *dv, const suite_row *r, const row_result *res,
                     bool first)
{
    const bench_shape *s = &r->s;
    const bool ran = !res->skipped[0] && !res->error[0];
    printf("%s\n  {\"kind\": \"%s\", \"batch\": %" PRId64 ", \"heads\": %" PRId64
           ", \"kv_heads\": %" PRId64 ", \"q_len\": %" PRId64 ", \"kv_len\": %" PRId64
           ", \"head_dim\": %" PRId64 ", \"v_head_dim\": %" PRId64
           ", \"dtype\": \"%s\", \"causal\": %s",
           first ? "" : ",", r->decode ? "decode" : "prefill", s->batch, s->heads, s->kv_heads,
           s->q_len, s->kv_len, s->head_dim, s->v_head_dim,
           bench_word_of(bench_dtype_words, s->dtype), s->causal ? "true" : "false");
    printf(", \"skipped\": ");
    if (res->skipped[0])
        tool_json_string(stdout, res->skipped);
    else
        printf("null");
    printf(", \"error\": ");
    if (res->error[0])
        tool_json_string(stdout, res->error);
    else
        printf("null");
    printf(", \"flops\": ");
    bench_json_number(stdout, res->flops);
    printf(", \"bytes\": ");
    bench_json_number(stdout, res->bytes);
    printf(", \"reps\": %" PRId64, ran ? res->reps : 0);
    if (ran) {
        printf(", \"family\": \"%s\", \"kernel\": ",
               bench_word_of(bench_family_words, res->plan.family));
        tool_json_string(stdout, res->plan.kernel);
    }
    const struct {
        const char *name;
        double v;
    } nums[] = {
        {"plan_ms", ran ? res->plan_ms : NAN},
        {"ms_median", ran ? res->ms : NAN},
        {"ms_min", ran ? res->ms_min : NAN},
        {"gflops", ran ? res->flops / (res->ms * 1e6) : NAN},
        {"gbs", ran && r->decode ? res->bytes / (res->ms * 1e6) : NAN},
        {"baseline_ms", res->base_ran ? res->base.total_ms : NAN},
        {"baseline_convert_ms", res->base_ran ? res->base.convert_ms : NAN},
        {"baseline_qk_ms", res->base_ran ? res->base.qk_ms : NAN},
        {"baseline_softmax_ms", res->base_ran ? res->base.softmax_ms : NAN},
        {"baseline_pv_ms", res->base_ran ? res->base.pv_ms : NAN},
        {"baseline_gemm_gflops",
         res->base_ran ? res->gemm_flops / ((res->base.qk_ms + res->base.pv_ms) * 1e6) : NAN},
        {"baseline_over_attn", res->base_ran ? res->base.total_ms / res->ms : NAN},
        {"max_err_vs_baseline", res->base_ran && !res->nonfinite ? res->max_err : NAN},
        {"max_err_ratio_vs_baseline", res->base_ran && !res->nonfinite ? res->worst_ratio : NAN},
    };
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
        printf(", \"%s\": ", nums[i].name);
        bench_json_number(stdout, nums[i].v);
    }
    printf(", \"nonfinite_vs_baseline\": %" PRIu64 ", \"baseline_gemm\": ", res->nonfinite);
    if (res->base_ran)
        tool_json_string(stdout, bench_cl_gemm_kind(dv->base_cl, s->dtype));
    else
        printf("null");
    printf(", \"baseline_note\": ");
    if (ran && !res->base_ran)
        tool_json_string(stdout, res->base_note);
    else
        printf("null");
    printf("}");
    fflush(stdout);
}

static void text_notes(const suite *st)
{
    const bench_opts *o = st->o;
    printf("\nms: median of %" PRId64 " runs of attn_plan_run on device buffers (after %" PRId64
           " warm-up), each returning when the output is complete.\n"
           "GFLOP/s: 2*(head_dim + v_head_dim) per visible query-key pair, times batch and heads;\n"
           "  causal counts only the visible pairs (about half), as attn-bench always does.\n"
           "GB/s (decode): bytes of Q, K, V read and O written per run, over the median time.\n"
           "clBLAST ms: median of the baseline's runs, alternating with attn's: QK^T as a batched\n"
           "  GEMM, a softmax kernel (scaled, maximum subtracted, causal mask applied to the full\n"
           "  score matrix), PV as a batched GEMM, each stage finished before the next; its sum.\n"
           "GEMM/s: the baseline's two GEMMs in GFLOP/s (every query-key pair; causal or not).\n"
           "base/attn: clBLAST ms / attn ms (above 1: attn is faster).\n"
           "max|err|: largest |attn - baseline| over the whole output; it shows the two compute\n"
           "  the same thing; the baseline is not the oracle (--check uses the reference).\n",
           o->reps, suite_warmup(o));
    if (st->converted_f16)
        printf("f16 rows: the baseline's device has no cl_khr_fp16 (no HGEMM), so the baseline\n"
               "  converts Q, K, V to f32 on the device, runs SGEMM and converts O back to f16;\n"
               "  the conversions are included in its time.\n");
    if (st->any_skipped)
        printf("skipped: --max-seconds-per-row %" PRId64 " caps a row's runs (warm-up included),\n"
               "  estimated from the slowest rate of the rows of the same kind already measured\n"
               "  on that device: first attn's, then with the baseline's (skipped alone when attn\n"
               "  fits); the first row of a kind always runs, its reps stopped at the cap.\n"
               "  --quick keeps only the short rows.\n",
               o->max_seconds_per_row);
}

/* ---- the suite -------------------------------------------------------------------------*/

/* Opens the device: attn context, the OpenCL device itself when it is one, and the
 * baseline's device. 0, or -1 with the reason in dv->base_why and on stderr. */
static int open_device(suite *st, suite_device *dv)
{
    const bench_opts *o = st->o;
    attn_context_params cp = ATTN_CONTEXT_PARAMS_INIT;
    cp.backend = dv->info.backend;
    cp.device_index = dv->info.index;
    cp.kernel_family = o->family;
    cp.memory_budget = (uint64_t)o->budget;
    const char *why = "";
    attn_status s;
    if (dv->info.backend == ATTN_BACKEND_OPENCL) {
        dv->cl = suite_cl(st, dv->info.index, &why);
        if (dv->cl && strcmp(bench_cl_device_name(dv->cl), dv->info.name) != 0) {
            fprintf(stderr, "attn-bench: OpenCL device %" PRIu32 " is '%s' to attn but '%s' here\n",
                    dv->info.index, dv->info.name, bench_cl_device_name(dv->cl));
            return -1;
        }
        s = dv->cl ? bench_cl_attn_context(dv->cl, &cp, &dv->ctx)
                   : attn_context_create(&cp, &dv->ctx);
        dv->base_cl = dv->cl;
        dv->base_index = dv->info.index;
    } else {
        s = attn_context_create(&cp, &dv->ctx);
        int64_t same = same_hardware(&dv->info, st->num_cl);
        if (same < 0) {
            why = "no OpenCL device";
        } else {
            dv->base_index = (uint32_t)same;
            dv->base_cl = suite_cl(st, dv->base_index, &why);
        }
    }
    if (s != ATTN_OK) {
        bench_fail("attn_context_create", s);
        return -1;
    }
    if (bench_cl_baseline_missing()) {
        dv->base_cl = NULL;
        why = bench_cl_baseline_missing();
    }
    snprintf(dv->base_why, sizeof dv->base_why, "%s", why);
    return 0;
}

int bench_suite(const bench_opts *o)
{
    suite st = {.o = o, .json = o->json};
    uint32_t num_vk = 0;
    if (attn_device_count(ATTN_BACKEND_OPENCL, &st.num_cl) != ATTN_OK)
        st.num_cl = 0;
    if (attn_device_count(ATTN_BACKEND_VULKAN, &num_vk) != ATTN_OK)
        num_vk = 0;
    st.cls = calloc(st.num_cl + 1, sizeof *st.cls);
    st.cl_err = calloc(st.num_cl + 1, sizeof *st.cl_err);
    if (!st.cls || !st.cl_err) {
        fprintf(stderr, "attn-bench: out of host memory\n");
        free(st.cls);
        free(st.cl_err);
        return 1;
    }

    suite_row rows[MAX_ROWS];
    const size_t num_rows = suite_rows(rows);
    const double load_start = bench_load_average();
    if (st.json) {
        printf("{\"mode\": \"suite\", \"version\": ");
        tool_json_string(stdout, attn_version_string());
        printf(", \"reps\": %" PRId64 ", \"warmup\": %" PRId64 ", \"max_seconds_per_row\": %" PRId64
               ", \"quick\": %s, \"baseline\": ",
               o->reps, suite_warmup(o), o->max_seconds_per_row, o->quick ? "true" : "false");
        tool_json_string(stdout, bench_cl_baseline_name());
        printf(", \"load_average_start\": ");
        bench_json_number(stdout, load_start);
        printf(", \"devices\": [");
    } else {
        printf("attn-bench %s --suite: OpenCL devices %" PRIu32 ", Vulkan devices %" PRIu32
               "; median of %" PRId64 " reps after %" PRId64 " warm-up; ",
               attn_version_string(), st.num_cl, num_vk, o->reps, suite_warmup(o));
        if (o->max_seconds_per_row > 0)
            printf("rows estimated above %" PRId64 " s skipped", o->max_seconds_per_row);
        else
            printf("no time cap");
        printf("%s\nload average (1 min) at start: %.2f\n", o->quick ? "; --quick" : "",
               load_start);
    }
    fflush(stdout);

    bool first_device = true;
    for (int b = 0; b < 2; b++) {
        const attn_backend backend = b == 0 ? ATTN_BACKEND_OPENCL : ATTN_BACKEND_VULKAN;
        const uint32_t count = b == 0 ? st.num_cl : num_vk;
        if (o->backend != ATTN_BACKEND_AUTO && o->backend != backend)
            continue;
        for (uint32_t i = 0; i < count; i++) {
            if (o->device >= 0 && (uint32_t)o->device != i)
                continue;
            suite_device dv = {.info = {.struct_size = sizeof dv.info}};
            if (attn_device_get_info(backend, i, &dv.info) != ATTN_OK || open_device(&st, &dv)) {
                st.failed = 1;
                attn_context_destroy(dv.ctx);
                continue;
            }
            if (st.json)
                json_device_open(&dv, first_device);
            else
                text_header(&dv);
            first_device = false;
            for (size_t r = 0; r < num_rows; r++) {
                row_result res;
                memset(&res, 0, sizeof res);
                run_row(&st, &dv, &rows[r], &res);
                st.failed |= res.error[0] != 0;
                st.any_skipped |= res.skipped[0] != 0;
                if (st.json)
                    json_row(&dv, &rows[r], &res, r == 0);
                else
                    text_row(&rows[r], &res);
            }
            if (st.json)
                printf("]}");
            attn_context_destroy(dv.ctx);
        }
    }
    if (first_device && o->device >= 0)
        fprintf(stderr, "attn-bench: no device %" PRId64 " to run the suite on\n", o->device);
    if (first_device)
        st.failed = 1;

    const double load_end = bench_load_average();
    if (st.json) {
        printf("], \"load_average_end\": ");
        bench_json_number(stdout, load_end);
        printf(", \"failed\": %s}\n", st.failed ? "true" : "false");
    } else {
        text_notes(&st);
        printf("load average (1 min) at the end: %.2f\n", load_end);
    }
    for (uint32_t i = 0; i < st.num_cl; i++)
        bench_cl_close(st.cls[i]);
    free(st.cls);
    free(st.cl_err);
    return st.failed;
}
