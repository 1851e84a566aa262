/* test_schedule.c — the memory-budget scheduler: the same problem at several budgets gives
 * the same output with peak device memory within each budget; buffer tensors, f16, masks
 * and lse under a budget; out-of-memory recovery by halving (injected failures); progress
 * and cancellation; and the exact merge in the double-precision reference. */
#include <attn/attn.h>
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/problem.h"
#include "test_util.h"

/* Device contexts for the scheduler: devices 0 .. device_count() - 1 are the OpenCL ones,
 * which every test runs on; the 16k-token budget test and the decode, mixed-budget,
 * progress and overlap tests also run on the Vulkan devices, numbered after them up to
 * all_device_count() - 1 (the halving tests stay on OpenCL: their injected failures are
 * backend-independent). */
static int device_count(void)
{
    uint32_t n = 0;
    attn_device_count(ATTN_BACKEND_OPENCL, &n);
    return (int)n;
}

static int all_device_count(void)
{
    uint32_t n = 0;
    attn_device_count(ATTN_BACKEND_VULKAN, &n);
    return device_count() + (int)n;
}

static attn_backend device_backend(int index)
{
    return index < device_count() ? ATTN_BACKEND_OPENCL : ATTN_BACKEND_VULKAN;
}

static attn_context *device_ctx(int index, attn_kernel_family fam, uint64_t budget)
{
    attn_context_params p = ATTN_CONTEXT_PARAMS_INIT;
    p.backend = device_backend(index);
    p.device_index = (uint32_t)(index < device_count() ? index : index - device_count());
    p.kernel_family = fam;
    p.memory_budget = budget;
    attn_context *ctx = NULL;
    ck_assert_msg(attn_context_create(&p, &ctx) == ATTN_OK, "%s", attn_last_detail());
    return ctx;
}

/* Statistics of a context, and a zeroed plan-info to fill. */
static attn_stats stats_of(const attn_context *ctx)
{
    attn_stats st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    ck_assert_int_eq(attn_context_get_stats(ctx, &st), ATTN_OK);
    return st;
}

static attn_plan_info info_blank(void)
{
    attn_plan_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    return info;
}

/* Exact attention of one query row (all in double), for spot checks of long problems. */
static void ref_row(const float *q, const float *k, const float *v, int64_t S, int64_t H,
                    int64_t Hk, int64_t D, int64_t i, int64_t h, int causal, double *out)
{
    const int64_t hk = h / (H / Hk);
    const int64_t n = causal ? i + 1 : S;
    double m = -INFINITY, l = 0.0;
    double *acc = calloc((size_t)D, sizeof *acc);
    const double scale = 1.0 / sqrt((double)D);
    for (int64_t j = 0; j < n; ++j) {
        double s = 0.0;
        for (int64_t d = 0; d < D; ++d)
            s += (double)q[(i * H + h) * D + d] * k[(j * Hk + hk) * D + d];
        s *= scale;
        const double mn = s > m ? s : m, a = exp(m - mn), p = exp(s - mn);
        l = l * a + p;
        for (int64_t d = 0; d < D; ++d)
            acc[d] = acc[d] * a + p * v[(j * Hk + hk) * D + d];
        m = mn;
    }
    for (int64_t d = 0; d < D; ++d)
        out[d] = acc[d] / l;
    free(acc);
}

/* The problem: causal, 8 heads, GQA 8:2, d=64, 16k tokens, host tensors, at
 * budgets {unlimited, 64 MiB, 8 MiB, 2 MiB}, on every OpenCL and Vulkan device. */
START_TEST(test_budgets_same_output)
{
    const int64_t S = 16384, H = 8, Hk = 2, D = 64;
    const uint64_t budgets[4] = {0, 64ull << 20, 8ull << 20, 2ull << 20};
    const size_t nq = (size_t)(S * H * D), nk = (size_t)(S * Hk * D);
    float *q = malloc(nq * 4), *k = malloc(nk * 4), *v = malloc(nk * 4);
    float *o[4];
    tu_fill_uniform(q, nq, 1);
    tu_fill_uniform(k, nk, 2);
    tu_fill_uniform(v, nk, 3);
    for (int dev = 0; dev < all_device_count(); ++dev) {
        for (int bi = 0; bi < 4; ++bi) {
            attn_context *ctx = device_ctx(dev, ATTN_FAMILY_AUTO, budgets[bi]);
            attn_desc d = ATTN_DESC_INIT;
            d.num_heads = H;
            d.num_kv_heads = Hk;
            d.q_len = d.kv_len = S;
            d.head_dim = D;
            d.causal = 1;
            attn_plan *plan = NULL;
            ck_assert_msg(attn_plan_create(ctx, &d, &plan) == ATTN_OK, "%s", attn_last_detail());
            attn_plan_info info = info_blank();
            attn_plan_get_info(plan, &info);
            ck_assert_int_eq(info.scheduled, budgets[bi] != 0);
            o[bi] = malloc(nq * 4);
            attn_run_args a = ATTN_RUN_ARGS_INIT;
            a.q = attn_tensor_host(ATTN_DTYPE_F32, 1, S, H, D, q);
            a.k = attn_tensor_host(ATTN_DTYPE_F32, 1, S, Hk, D, k);
            a.v = attn_tensor_host(ATTN_DTYPE_F32, 1, S, Hk, D, v);
            a.o = attn_tensor_host(ATTN_DTYPE_F32, 1, S, H, D, o[bi]);
            double t0 = tu_now();
            ck_assert_msg(attn_plan_run(plan, &a) == ATTN_OK, "budget %llu: %s",
                          (unsigned long long)budgets[bi], attn_last_detail());
            attn_stats st = stats_of(ctx);
            attn_plan_get_info(plan, &info);
            printf("schedule: device %d budget %llu MiB: %.2f s, peak %.2f MiB, segments %u x "
                   "chunks %u, %llu launches\n",
                   dev, (unsigned long long)(budgets[bi] >> 20), tu_now() - t0,
                   st.peak_device_bytes / 1048576.0, info.segment_rows, info.chunk_keys,
                   (unsigned long long)st.launches);
            if (budgets[bi])
                ck_assert_msg(st.peak_device_bytes <= budgets[bi], "peak %llu > budget %llu",
                              (unsigned long long)st.peak_device_bytes,
                              (unsigned long long)budgets[bi]);
            attn_context_destroy(ctx);
        }
        for (int bi = 1; bi < 4; ++bi) {
            tu_compare_result res;
            ck_assert_msg(tu_compare(o[bi], o[0], nq, tu_tolerance(ATTN_DTYPE_F32), &res),
                          "budget %llu differs from unlimited",
                          (unsigned long long)(budgets[bi] >> 20));
        }
        /* Spot checks against exact attention, including the last row. */
        const int64_t rows[4] = {0, 1, 8191, S - 1};
        double ref[64];
        for (int r = 0; r < 4; ++r)
            for (int64_t h = 0; h < H; ++h) {
                ref_row(q, k, v, S, H, Hk, D, rows[r], h, 1, ref);
                for (int64_t dd = 0; dd < D; ++dd)
                    for (int bi = 0; bi < 4; ++bi) {
                        double got = o[bi][(rows[r] * H + h) * D + dd];
                        ck_assert_msg(fabs(got - ref[dd]) <= 1e-4 * (1 + fabs(ref[dd])),
                                      "row %lld head %lld d %lld budget %d: %g vs %g",
                                      (long long)rows[r], (long long)h, (long long)dd, bi, got,
                                      ref[dd]);
                    }
            }
        for (int bi = 0; bi < 4; ++bi)
            free(o[bi]);
    }
    free(q);
    free(k);
    free(v);
}
END_TEST

/* A mixed problem under a tight budget against the reference: f32 and f16, both families,
 * masks, padding, lse, tensors in library buffers and in host memory. */
static void run_mixed(int dev, attn_kernel_family fam, attn_dtype dt, attn_mask_kind mk,
                      int buffers, uint64_t budget)
{
    const int64_t B = 2, H = 4, Hk = 2, Sq = 150, Sk = 333, D = 40, Dv = 24;
    const size_t es = dt == ATTN_DTYPE_F16 ? 2 : 4;
    const size_t nq = (size_t)(B * Sq * H * D), nk = (size_t)(B * Sk * Hk * D),
                 nv = (size_t)(B * Sk * Hk * Dv), no = (size_t)(B * Sq * H * Dv),
                 nm = (size_t)(Sq * Sk), nl = (size_t)(B * H * Sq);
    float *qf = malloc(nq * 4), *kf = malloc(nk * 4), *vf = malloc(nv * 4);
    float *mf = malloc(nm * 4);
    uint8_t *mb = malloc(nm);
    tu_fill_uniform(qf, nq, 11);
    tu_fill_uniform(kf, nk, 12);
    tu_fill_uniform(vf, nv, 13);
    for (size_t i = 0; i < nm; ++i) {
        mf[i] = (i % 7 == 0) ? -INFINITY : (float)((int)(i % 5) - 2) * 0.25f;
        mb[i] = (uint8_t)(i % 3 != 0);
    }
    void *q = malloc(nq * es), *k = malloc(nk * es), *v = malloc(nv * es);
    if (dt == ATTN_DTYPE_F16) {
        for (size_t i = 0; i < nq; ++i) ((uint16_t *)q)[i] = tu_float_to_half(qf[i]);
        for (size_t i = 0; i < nk; ++i) ((uint16_t *)k)[i] = tu_float_to_half(kf[i]);
        for (size_t i = 0; i < nv; ++i) ((uint16_t *)v)[i] = tu_float_to_half(vf[i]);
    } else {
        memcpy(q, qf, nq * 4), memcpy(k, kf, nk * 4), memcpy(v, vf, nv * 4);
    }
    int32_t lens[2] = {(int32_t)Sk, 200};
    attn_desc d = ATTN_DESC_INIT;
    d.batch = B, d.num_heads = H, d.num_kv_heads = Hk, d.q_len = Sq, d.kv_len = Sk;
    d.head_dim = D, d.v_head_dim = Dv, d.dtype = dt, d.causal = 1, d.kv_lens = lens;
    d.mask_kind = mk, d.want_lse = 1;

    void *o = calloc(no, es), *o_ref = calloc(no, es);
    float *l = calloc(nl, 4), *l_ref = calloc(nl, 4);
    attn_run_args a = ATTN_RUN_ARGS_INIT;
    a.q = attn_tensor_host(dt, B, Sq, H, D, q);
    a.k = attn_tensor_host(dt, B, Sk, Hk, D, k);
    a.v = attn_tensor_host(dt, B, Sk, Hk, Dv, v);
    a.o = attn_tensor_host(dt, B, Sq, H, Dv, o_ref);
    a.lse = attn_tensor_host(ATTN_DTYPE_F32, B, H, Sq, 1, l_ref);
    if (mk == ATTN_MASK_ADDITIVE)
        a.mask = attn_tensor_host(ATTN_DTYPE_F32, 1, 1, Sq, Sk, mf);
    else if (mk == ATTN_MASK_BOOLEAN)
        a.mask = attn_tensor_host(ATTN_DTYPE_U8, 1, 1, Sq, Sk, mb);

    attn_context_params rp = ATTN_CONTEXT_PARAMS_INIT;
    rp.backend = ATTN_BACKEND_REFERENCE;
    attn_context *ref = NULL;
    attn_plan *rplan = NULL;
    ck_assert_int_eq(attn_context_create(&rp, &ref), ATTN_OK);
    ck_assert_int_eq(attn_plan_create(ref, &d, &rplan), ATTN_OK);
    ck_assert_int_eq(attn_plan_run(rplan, &a), ATTN_OK);

    attn_context *ctx = device_ctx(dev, fam, budget);
    attn_plan *plan = NULL;
    ck_assert_msg(attn_plan_create(ctx, &d, &plan) == ATTN_OK, "%s", attn_last_detail());
    attn_buffer *bq = NULL, *bk = NULL, *bv = NULL, *bo = NULL;
    if (buffers) {
        /* Library buffers count against the same budget: keep them small here. */
        ck_assert_int_eq(attn_buffer_create(ctx, nq * es, &bq), ATTN_OK);
        ck_assert_int_eq(attn_buffer_create(ctx, nk * es, &bk), ATTN_OK);
        ck_assert_int_eq(attn_buffer_create(ctx, nv * es, &bv), ATTN_OK);
        ck_assert_int_eq(attn_buffer_create(ctx, no * es, &bo), ATTN_OK);
        attn_buffer_upload(bq, 0, q, nq * es);
        attn_buffer_upload(bk, 0, k, nk * es);
        attn_buffer_upload(bv, 0, v, nv * es);
        a.q = attn_tensor_buffer(dt, B, Sq, H, D, bq, 0);
        a.k = attn_tensor_buffer(dt, B, Sk, Hk, D, bk, 0);
        a.v = attn_tensor_buffer(dt, B, Sk, Hk, Dv, bv, 0);
        a.o = attn_tensor_buffer(dt, B, Sq, H, Dv, bo, 0);
    } else {
        a.o = attn_tensor_host(dt, B, Sq, H, Dv, o);
    }
    a.lse = attn_tensor_host(ATTN_DTYPE_F32, B, H, Sq, 1, l);
    attn_status s = attn_plan_run(plan, &a);
    ck_assert_msg(s == ATTN_OK, "%s", attn_last_detail());
    if (buffers)
        ck_assert_int_eq(attn_buffer_download(bo, 0, o, no * es), ATTN_OK);
    attn_plan_info info = info_blank();
    attn_plan_get_info(plan, &info);
    attn_stats st = stats_of(ctx);
    ck_assert_msg(st.peak_device_bytes <= budget, "peak %llu > budget %llu",
                  (unsigned long long)st.peak_device_bytes, (unsigned long long)budget);

    float *got = malloc(no * 4), *want = malloc(no * 4);
    for (size_t i = 0; i < no; ++i) {
        got[i] = es == 2 ? tu_half_to_float(((uint16_t *)o)[i]) : ((float *)o)[i];
        want[i] = es == 2 ? tu_half_to_float(((uint16_t *)o_ref)[i]) : ((float *)o_ref)[i];
    }
    tu_compare_result res;
    char msg[256];
    int ok = tu_compare(got, want, no, tu_tolerance(dt), &res);
    tu_compare_describe(&res, msg, sizeof msg);
    ck_assert_msg(ok, "%s fam %d dt %d mask %d buffers %d budget %llu (segments %u, chunks %u): %s",
                  tu_backend_name(device_backend(dev)), (int)fam, (int)dt, (int)mk, buffers, (unsigned long long)budget,
                  info.segment_rows, info.chunk_keys, msg);
    ok = tu_compare(l, l_ref, nl, 1e-4, &res);
    tu_compare_describe(&res, msg, sizeof msg);
    ck_assert_msg(ok, "lse: %s", msg);

    attn_context_destroy(ctx);
    attn_context_destroy(ref);
    free(q), free(k), free(v), free(qf), free(kf), free(vf), free(mf), free(mb);
    free(o), free(o_ref), free(l), free(l_ref), free(got), free(want);
}

START_TEST(test_mixed_under_budget)
{
    const attn_kernel_family fams[2] = {ATTN_FAMILY_CPU, ATTN_FAMILY_GPU};
    for (int dev = 0; dev < all_device_count(); ++dev)
        for (int f = 0; f < 2; ++f) {
            run_mixed(dev, fams[f], ATTN_DTYPE_F32, ATTN_MASK_NONE, 0, 160 << 10);
            run_mixed(dev, fams[f], ATTN_DTYPE_F16, ATTN_MASK_ADDITIVE, 0, 200 << 10);
            run_mixed(dev, fams[f], ATTN_DTYPE_F32, ATTN_MASK_BOOLEAN, 1, 800 << 10);
            run_mixed(dev, fams[f], ATTN_DTYPE_F16, ATTN_MASK_NONE, 1, 500 << 10);
        }
}
END_TEST

/* Injected device out-of-memory: the plan halves until its buffers fit, and fails with a
 * clear status below its minimum. */
START_TEST(test_oom_recovery)
{
    for (int dev = 0; dev < device_count(); ++dev) {
        setenv("ATTN_DEBUG_FAIL_ALLOC_ABOVE", "65536", 1);
        run_mixed(dev, ATTN_FAMILY_CPU, ATTN_DTYPE_F32, ATTN_MASK_NONE, 0, 1ull << 40);
        run_mixed(dev, ATTN_FAMILY_GPU, ATTN_DTYPE_F16, ATTN_MASK_ADDITIVE, 0, 1ull << 40);

        setenv("ATTN_DEBUG_FAIL_ALLOC_ABOVE", "64", 1);
        attn_context *ctx = device_ctx(dev, ATTN_FAMILY_CPU, 0);
        attn_desc d = ATTN_DESC_INIT;
        d.num_heads = 2, d.q_len = 64, d.kv_len = 64, d.head_dim = 32;
        float *q = calloc(64 * 2 * 32, 4), *o = calloc(64 * 2 * 32, 4);
        attn_plan *plan = NULL;
        ck_assert_int_eq(attn_plan_create(ctx, &d, &plan), ATTN_OK);
        attn_run_args a = ATTN_RUN_ARGS_INIT;
        a.q = attn_tensor_host(ATTN_DTYPE_F32, 1, 64, 2, 32, q);
        a.k = a.q;
        a.v = a.q;
        a.o = attn_tensor_host(ATTN_DTYPE_F32, 1, 64, 2, 32, o);
        attn_status s = attn_plan_run(plan, &a);
        ck_assert_int_eq(s, ATTN_ERROR_OUT_OF_DEVICE_MEMORY);
        ck_assert_msg(strstr(attn_last_detail(), "minimum"), "%s", attn_last_detail());
        unsetenv("ATTN_DEBUG_FAIL_ALLOC_ABOVE");
        /* The context is still usable, and nothing is left allocated by the failed run. */
        ck_assert_int_eq(attn_plan_run(plan, &a), ATTN_OK);
        attn_plan_destroy(plan);
        attn_stats st = stats_of(ctx);
        ck_assert_uint_eq(st.device_bytes, 0);
        attn_context_destroy(ctx);
        free(q), free(o);
    }
}
END_TEST

/* Budget below the scheduler's minimum: a clear status that states the minimum. */
START_TEST(test_budget_too_small)
{
    for (int dev = 0; dev < device_count(); ++dev) {
        attn_context *ctx = device_ctx(dev, ATTN_FAMILY_CPU, 4096);
        attn_desc d = ATTN_DESC_INIT;
        d.num_heads = 8, d.q_len = 512, d.kv_len = 512, d.head_dim = 128;
        attn_plan *plan = NULL;
        ck_assert_int_eq(attn_plan_create(ctx, &d, &plan), ATTN_OK);
        attn_plan_info info = info_blank();
        attn_plan_get_info(plan, &info);
        ck_assert_int_eq(info.scheduled, 1);
        ck_assert_uint_gt(info.min_device_bytes, 4096);
        float *q = calloc(512 * 8 * 128, 4), *o = calloc(512 * 8 * 128, 4);
        attn_run_args a = ATTN_RUN_ARGS_INIT;
        a.q = attn_tensor_host(ATTN_DTYPE_F32, 1, 512, 8, 128, q);
        a.k = a.q, a.v = a.q;
        a.o = attn_tensor_host(ATTN_DTYPE_F32, 1, 512, 8, 128, o);
        ck_assert_int_eq(attn_plan_run(plan, &a), ATTN_ERROR_OVER_BUDGET);
        ck_assert_msg(strstr(attn_last_detail(), "at least"), "%s", attn_last_detail());
        attn_context_destroy(ctx);
        free(q), free(o);
    }
}
END_TEST

typedef struct progress_log {
    uint64_t calls, last_done, total, cancel_at;
    int monotonic;
} progress_log;

static int on_progress(void *user, uint64_t done, uint64_t total)
{
    progress_log *p = user;
    if (done <= p->last_done || (p->total && total != p->total) || done > total)
        p->monotonic = 0;
    p->last_done = done;
    p->total = total;
    p->calls++;
    return p->cancel_at && done >= p->cancel_at;
}

START_TEST(test_progress_and_cancel)
{
    const int64_t S = 1000, H = 2, D = 32;
    float *q = malloc(S * H * D * 4), *o = malloc(S * H * D * 4);
    tu_fill_uniform(q, (size_t)(S * H * D), 5);
    for (int dev = 0; dev < all_device_count(); ++dev) {
        attn_context *ctx = device_ctx(dev, ATTN_FAMILY_AUTO, 256 << 10);
        attn_desc d = ATTN_DESC_INIT;
        d.num_heads = H, d.q_len = S, d.kv_len = S, d.head_dim = D, d.causal = 1;
        attn_plan *plan = NULL;
        ck_assert_int_eq(attn_plan_create(ctx, &d, &plan), ATTN_OK);
        attn_run_args a = ATTN_RUN_ARGS_INIT;
        a.q = attn_tensor_host(ATTN_DTYPE_F32, 1, S, H, D, q);
        a.k = a.q, a.v = a.q;
        a.o = attn_tensor_host(ATTN_DTYPE_F32, 1, S, H, D, o);
        progress_log log = {0, 0, 0, 0, 1};
        a.progress = on_progress;
        a.progress_user = &log;
        ck_assert_int_eq(attn_plan_run(plan, &a), ATTN_OK);
        ck_assert_msg(log.monotonic, "progress went backwards");
        ck_assert_uint_gt(log.calls, 2);
        ck_assert_uint_eq(log.last_done, log.total);

        progress_log cancel = {0, 0, 0, log.total / 2, 1};
        a.progress_user = &cancel;
        ck_assert_int_eq(attn_plan_run(plan, &a), ATTN_ERROR_CANCELLED);
        ck_assert_uint_eq(cancel.last_done, log.total / 2);
        /* Still usable afterwards, nothing left allocated beyond the plan. */
        a.progress = NULL;
        ck_assert_int_eq(attn_plan_run(plan, &a), ATTN_OK);
        attn_plan_destroy(plan);
        attn_stats st = stats_of(ctx);
        ck_assert_uint_eq(st.device_bytes, 0);
        attn_context_destroy(ctx);
    }
    free(q), free(o);
}
END_TEST

/* The reference's merge: attention over keys [0,a) and [a,n) merged equals attention over
 * [0,n), including rows whose one side is empty (an all -inf additive mask). */
START_TEST(test_reference_merge)
{
    if (device_count() == 0)
        printf("schedule: no OpenCL device; only the reference merge runs\n");
    const int64_t S = 6, N = 11, A = 4, D = 5;
    float q[6 * 5], k[11 * 5], v[11 * 5], mask[6 * 11];
    tu_fill_uniform(q, sizeof q / 4, 21);
    tu_fill_uniform(k, sizeof k / 4, 22);
    tu_fill_uniform(v, sizeof v / 4, 23);
    for (int64_t i = 0; i < S; ++i)
        for (int64_t j = 0; j < N; ++j)
            mask[i * N + j] = (i == 2 && j < A) || i == 5 ? -INFINITY : 0.0f;
    attn__problem p;
    memset(&p, 0, sizeof p);
    p.batch = 1, p.num_heads = 1, p.num_kv_heads = 1, p.q_len = S, p.head_dim = D;
    p.v_head_dim = D, p.dtype = ATTN_DTYPE_F32, p.scale = 0.7, p.mask_kind = ATTN_MASK_ADDITIVE;
    p.want_lse = 1;
    float of[3][6 * 5], lf[3][6];
    const int64_t starts[3] = {0, 0, A}, lens[3] = {N, A, N - A};
    for (int c = 0; c < 3; ++c) {
        p.kv_len = lens[c];
        attn__view vq = {ATTN_DTYPE_F32, {1, S, 1, D}, {S * D, D, D, 1}, q};
        attn__view vk = {ATTN_DTYPE_F32, {1, lens[c], 1, D}, {N * D, D, D, 1}, k + starts[c] * D};
        attn__view vv = {ATTN_DTYPE_F32, {1, lens[c], 1, D}, {N * D, D, D, 1}, v + starts[c] * D};
        attn__view vo = {ATTN_DTYPE_F32, {1, S, 1, D}, {S * D, D, D, 1}, of[c]};
        attn__view vm = {ATTN_DTYPE_F32, {1, 1, S, lens[c]}, {0, 0, N, 1}, mask + starts[c]};
        attn__view vl = {ATTN_DTYPE_F32, {1, 1, S, 1}, {S, S, 1, 1}, lf[c]};
        attn__ref_attention(&p, &vq, &vk, &vv, &vo, &vm, &vl, NULL);
    }
    double o1[30], o2[30], l1[6], l2[6], om[30], lm[6];
    for (int i = 0; i < 30; ++i)
        o1[i] = of[1][i], o2[i] = of[2][i];
    for (int i = 0; i < 6; ++i)
        l1[i] = lf[1][i], l2[i] = lf[2][i];
    attn__ref_merge(6, 5, o1, l1, o2, l2, om, lm);
    for (int i = 0; i < 30; ++i)
        ck_assert_msg(fabs(om[i] - of[0][i]) < 1e-6, "o[%d] %g vs %g", i, om[i], of[0][i]);
    for (int i = 0; i < 6; ++i) {
        if (i == 5)
            ck_assert(isinf(lm[i]) && lm[i] < 0 && om[i * 5] == 0.0);
        else
            ck_assert_msg(fabs(lm[i] - lf[0][i]) < 1e-5, "lse[%d] %g vs %g", i, lm[i], lf[0][i]);
    }
}
END_TEST

/* A decode loop on a KV cache: one token appended per step (the capacity grows), q_len 1
 * attends to the whole cache; device-resident appends upload only the new token. The
 * host-resident cache runs under a budget smaller than the cache, through the scheduler. */
static void decode_loop(int dev, int host_resident, uint64_t budget)
{
    const int64_t B = 2, H = 4, Hk = 2, D = 16, steps = 40;
    attn_context *ctx = device_ctx(dev, ATTN_FAMILY_AUTO, budget);
    attn_kv_cache_params cp = ATTN_KV_CACHE_PARAMS_INIT;
    cp.batch = B, cp.num_kv_heads = Hk, cp.head_dim = D, cp.capacity = 8;
    cp.host_resident = host_resident;
    attn_kv_cache *cache = NULL;
    ck_assert_msg(attn_kv_cache_create(ctx, &cp, &cache) == ATTN_OK, "%s", attn_last_detail());
    ck_assert_int_eq(attn_kv_cache_on_device(cache), !host_resident);
    float *kall = calloc((size_t)(B * steps * Hk * D), 4), *vall = calloc((size_t)(B * steps * Hk * D), 4);
    float q[2 * 4 * 16], o[2 * 4 * 16], oref[2 * 4 * 16], kt[2 * 2 * 16], vt[2 * 2 * 16];
    attn_plan *plan = NULL;
    int64_t plan_cap = 0;
    for (int64_t s = 0; s < steps; ++s) {
        tu_fill_uniform(kt, sizeof kt / 4, 100 + (uint64_t)s);
        tu_fill_uniform(vt, sizeof vt / 4, 200 + (uint64_t)s);
        tu_fill_uniform(q, sizeof q / 4, 300 + (uint64_t)s);
        for (int64_t b = 0; b < B; ++b) {
            memcpy(kall + ((b * steps + s) * Hk) * D, kt + b * Hk * D, Hk * D * 4);
            memcpy(vall + ((b * steps + s) * Hk) * D, vt + b * Hk * D, Hk * D * 4);
        }
        attn_stats before, after;
        memset(&before, 0, sizeof before);
        before.struct_size = sizeof before;
        after = before;
        attn_context_get_stats(ctx, &before);
        const int64_t cap_before = attn_kv_cache_capacity(cache);
        attn_tensor tk = attn_tensor_host(ATTN_DTYPE_F32, B, 1, Hk, D, kt);
        attn_tensor tv = attn_tensor_host(ATTN_DTYPE_F32, B, 1, Hk, D, vt);
        ck_assert_int_eq(attn_kv_cache_append(cache, &tk, &tv), ATTN_OK);
        ck_assert_int_eq(attn_kv_cache_length(cache), s + 1);
        attn_context_get_stats(ctx, &after);
        if (!host_resident && attn_kv_cache_capacity(cache) == cap_before)
            ck_assert_uint_eq(after.bytes_uploaded - before.bytes_uploaded, sizeof kt + sizeof vt);
        if (attn_kv_cache_capacity(cache) != plan_cap) {
            attn_plan_destroy(plan);
            plan_cap = attn_kv_cache_capacity(cache);
            attn_desc d = ATTN_DESC_INIT;
            d.batch = B, d.num_heads = H, d.num_kv_heads = Hk, d.q_len = 1, d.kv_len = plan_cap;
            d.head_dim = D, d.kv_lens = attn_kv_cache_lengths(cache);
            ck_assert_int_eq(attn_plan_create(ctx, &d, &plan), ATTN_OK);
        }
        attn_run_args a = ATTN_RUN_ARGS_INIT;
        ck_assert_int_eq(attn_kv_cache_tensors(cache, &a.k, &a.v), ATTN_OK);
        a.q = attn_tensor_host(ATTN_DTYPE_F32, B, 1, H, D, q);
        a.o = attn_tensor_host(ATTN_DTYPE_F32, B, 1, H, D, o);
        a.kv_lens = attn_kv_cache_lengths(cache);
        ck_assert_msg(attn_plan_run(plan, &a) == ATTN_OK, "step %lld: %s", (long long)s,
                      attn_last_detail());
        for (int64_t b = 0; b < B; ++b)
            for (int64_t h = 0; h < H; ++h) {
                double r[16];
                ref_row(q + b * H * D, kall + b * steps * Hk * D, vall + b * steps * Hk * D, s + 1,
                        H, Hk, D, 0, h, 0, r);
                for (int64_t dd = 0; dd < D; ++dd)
                    oref[(b * H + h) * D + dd] = (float)r[dd];
            }
        tu_compare_result res;
        char msg[256];
        int ok = tu_compare(o, oref, sizeof o / 4, 1e-4, &res);
        tu_compare_describe(&res, msg, sizeof msg);
        ck_assert_msg(ok, "decode step %lld (host %d): %s", (long long)s, host_resident, msg);
    }
    if (budget) {
        attn_stats st = stats_of(ctx);
        ck_assert_uint_le(st.peak_device_bytes, budget);
    }
    attn_plan_destroy(plan);
    attn_kv_cache_destroy(cache);
    attn_context_destroy(ctx);
    free(kall), free(vall);
}

START_TEST(test_kv_cache_decode)
{
    for (int dev = 0; dev < all_device_count(); ++dev) {
        decode_loop(dev, 0, 0);
        decode_loop(dev, 1, 24 << 10);
    }
}
END_TEST

/* Decode (split-KV): few query rows per kv head over many keys, against the reference. */
typedef struct decode_case {
    int64_t B, H, Hk, Sq, Sk, D, Dv;
    attn_dtype dt;
    int causal, lens, lse;
    attn_mask_kind mask;
} decode_case;

/* Floats of Q and O per row that the Vulkan decode shader keeps in one lane, as the planner
 * counts them (src/core/plan.c, decode_lane_floats): a lane owns DL-th of a row's words
 * (16 halves or 8 floats where the head dims allow, else 4, else 1) when the device has
 * subgroup shuffles, else whole rows. */
static int64_t vk_decode_lane_floats(int dev, const decode_case *c)
{
    attn_device_info di;
    memset(&di, 0, sizeof di);
    di.struct_size = sizeof di;
    ck_assert_int_eq(attn_device_get_info(ATTN_BACKEND_VULKAN, (uint32_t)(dev - device_count()), &di), ATTN_OK);
    const uint32_t lanes = di.subgroup_size >= 4 && di.subgroup_size <= 64 ? di.subgroup_size : 16;
    int64_t epw = c->dt == ATTN_DTYPE_F16 ? 16 : 8;
    while (epw > 1 && (c->D % epw || c->Dv % epw))
        epw = epw == 16 || epw == 8 ? 4 : 1;
    const int64_t words = ((c->D > c->Dv ? c->D : c->Dv) + epw - 1) / epw;
    int64_t dl = 1;
    if ((di.subgroup_ops & ATTN_SUBGROUP_SHUFFLE) && lanes == di.subgroup_size)
        while (dl * 2 <= words && dl * 2 <= (int64_t)lanes && lanes % (uint32_t)(dl * 2) == 0)
            dl *= 2;
    return ((c->D + epw - 1) / epw + dl - 1) / dl * epw + ((c->Dv + epw - 1) / epw + dl - 1) / dl * epw;
}

static void run_decode_case(int dev, const decode_case *c)
{
    const size_t es = c->dt == ATTN_DTYPE_F16 ? 2 : 4;
    const size_t nq = (size_t)(c->B * c->Sq * c->H * c->D), nk = (size_t)(c->B * c->Sk * c->Hk * c->D);
    const size_t nv = (size_t)(c->B * c->Sk * c->Hk * c->Dv), no = (size_t)(c->B * c->Sq * c->H * c->Dv);
    const size_t nm = (size_t)(c->Sq * c->Sk), nl = (size_t)(c->B * c->H * c->Sq);
    float *f = malloc((nq + nk + nv) * 4), *mf = malloc(nm * 4);
    uint8_t *mb = malloc(nm);
    tu_fill_uniform(f, nq + nk + nv, 77);
    for (size_t i = 0; i < nm; ++i) {
        mf[i] = i % 5 == 0 ? -INFINITY : 0.1f * (float)(i % 3);
        mb[i] = (uint8_t)(i % 4 != 1);
    }
    char *in = malloc((nq + nk + nv) * es);
    for (size_t i = 0; i < nq + nk + nv; ++i) {
        if (es == 2)
            ((uint16_t *)in)[i] = tu_float_to_half(f[i]);
        else
            ((float *)in)[i] = f[i];
    }
    int32_t lens[4] = {(int32_t)c->Sk, (int32_t)(c->Sk / 3), 0, (int32_t)c->Sk - 1};
    attn_desc d = ATTN_DESC_INIT;
    d.batch = c->B, d.num_heads = c->H, d.num_kv_heads = c->Hk, d.q_len = c->Sq, d.kv_len = c->Sk;
    d.head_dim = c->D, d.v_head_dim = c->Dv, d.dtype = c->dt, d.causal = c->causal;
    d.kv_lens = c->lens ? lens : NULL, d.mask_kind = c->mask, d.want_lse = c->lse;
    void *o = calloc(no, es), *oref = calloc(no, es);
    float *l = calloc(nl, 4), *lref = calloc(nl, 4);
    attn_run_args a = ATTN_RUN_ARGS_INIT;
    a.q = attn_tensor_host(c->dt, c->B, c->Sq, c->H, c->D, in);
    a.k = attn_tensor_host(c->dt, c->B, c->Sk, c->Hk, c->D, in + nq * es);
    a.v = attn_tensor_host(c->dt, c->B, c->Sk, c->Hk, c->Dv, in + (nq + nk) * es);
    if (c->mask == ATTN_MASK_ADDITIVE)
        a.mask = attn_tensor_host(ATTN_DTYPE_F32, 1, 1, c->Sq, c->Sk, mf);
    else if (c->mask == ATTN_MASK_BOOLEAN)
        a.mask = attn_tensor_host(ATTN_DTYPE_U8, 1, 1, c->Sq, c->Sk, mb);
    /* Without subgroup shuffles the Vulkan CPU family is refused; decode still runs. */
    const char *ns = getenv("ATTN_VK_NO_SHUFFLE");
    const int no_shuffle = device_backend(dev) == ATTN_BACKEND_VULKAN && ns && *ns && strcmp(ns, "0");
    for (int fam = no_shuffle ? ATTN_FAMILY_GPU : ATTN_FAMILY_CPU; fam <= ATTN_FAMILY_GPU; ++fam) {
        attn_context *ctx = device_ctx(dev, (attn_kernel_family)fam, 0);
        attn_context_params rp = ATTN_CONTEXT_PARAMS_INIT;
        rp.backend = ATTN_BACKEND_REFERENCE;
        attn_context *ref = NULL;
        ck_assert_int_eq(attn_context_create(&rp, &ref), ATTN_OK);
        attn_plan *plan = NULL, *rplan = NULL;
        ck_assert_msg(attn_plan_create(ctx, &d, &plan) == ATTN_OK, "%s", attn_last_detail());
        ck_assert_int_eq(attn_plan_create(ref, &d, &rplan), ATTN_OK);
        attn_plan_info info = info_blank();
        attn_plan_get_info(plan, &info);
        /* Vulkan's decode shader unrolls its rows and a lane's part of the head dims, so
         * the planner keeps it to at most 1024 floats of them a lane (compile time,
         * src/core/plan.c); the prefill shaders take the rest, and the result must be as
         * exact either way. */
        const int64_t rows = c->Sq * (c->H / c->Hk);
        if (device_backend(dev) == ATTN_BACKEND_OPENCL)
            ck_assert_str_eq(info.kernel, "attn_decode.cl");
        else if (rows * vk_decode_lane_floats(dev, c) <= 1024)
            ck_assert_str_eq(info.kernel, "attn_decode.comp");
        else
            ck_assert_str_ne(info.kernel, "attn_decode.comp");
        ck_assert_int_eq(info.scheduled, 0);
        a.o = attn_tensor_host(c->dt, c->B, c->Sq, c->H, c->Dv, oref);
        if (c->lse)
            a.lse = attn_tensor_host(ATTN_DTYPE_F32, c->B, c->H, c->Sq, 1, lref);
        ck_assert_int_eq(attn_plan_run(rplan, &a), ATTN_OK);
        a.o = attn_tensor_host(c->dt, c->B, c->Sq, c->H, c->Dv, o);
        if (c->lse)
            a.lse = attn_tensor_host(ATTN_DTYPE_F32, c->B, c->H, c->Sq, 1, l);
        ck_assert_msg(attn_plan_run(plan, &a) == ATTN_OK, "%s", attn_last_detail());
        float *got = malloc(no * 4), *want = malloc(no * 4);
        for (size_t i = 0; i < no; ++i) {
            got[i] = es == 2 ? tu_half_to_float(((uint16_t *)o)[i]) : ((float *)o)[i];
            want[i] = es == 2 ? tu_half_to_float(((uint16_t *)oref)[i]) : ((float *)oref)[i];
        }
        tu_compare_result res;
        char msg[256];
        int ok = tu_compare(got, want, no, tu_tolerance(c->dt), &res);
        tu_compare_describe(&res, msg, sizeof msg);
        ck_assert_msg(ok, "%s: decode B%lld H%lld/%lld Sq%lld Sk%lld D%lld/%lld family %d: %s",
                      tu_backend_name(device_backend(dev)), (long long)c->B, (long long)c->H, (long long)c->Hk, (long long)c->Sq,
                      (long long)c->Sk, (long long)c->D, (long long)c->Dv, fam, msg);
        if (c->lse) {
            ok = tu_compare(l, lref, nl, 1e-4, &res);
            tu_compare_describe(&res, msg, sizeof msg);
            ck_assert_msg(ok, "decode lse: %s", msg);
        }
        free(got), free(want);
        attn_context_destroy(ctx);
        attn_context_destroy(ref);
    }
    free(f), free(mf), free(mb), free(in), free(o), free(oref), free(l), free(lref);
}

START_TEST(test_decode_split)
{
    const decode_case cases[] = {
        {1, 8, 2, 1, 1000, 64, 64, ATTN_DTYPE_F32, 0, 0, 0, ATTN_MASK_NONE},
        {2, 4, 1, 2, 300, 32, 32, ATTN_DTYPE_F16, 1, 1, 1, ATTN_MASK_NONE},
        {1, 16, 16, 1, 517, 7, 5, ATTN_DTYPE_F32, 0, 0, 1, ATTN_MASK_ADDITIVE},
        {3, 4, 1, 4, 129, 80, 80, ATTN_DTYPE_F16, 1, 1, 0, ATTN_MASK_BOOLEAN},
        {4, 32, 8, 1, 4096, 128, 128, ATTN_DTYPE_F16, 0, 1, 1, ATTN_MASK_NONE},
        {1, 2, 2, 3, 200, 256, 256, ATTN_DTYPE_F32, 1, 0, 1, ATTN_MASK_NONE},
        /* Whole rows a lane (no shuffles): Vulkan spreads these rows over groups of 2 (the
         * last one short). */
        {1, 3, 1, 1, 1000, 128, 128, ATTN_DTYPE_F32, 0, 0, 1, ATTN_MASK_NONE},
        {2, 2, 2, 3, 700, 128, 128, ATTN_DTYPE_F16, 1, 1, 1, ATTN_MASK_BOOLEAN},
        /* Rows split over 8 lanes: 16 rows x 64 floats a lane go to groups of 8. */
        {1, 16, 1, 1, 600, 256, 256, ATTN_DTYPE_F32, 0, 1, 1, ATTN_MASK_NONE},
    };
    for (int dev = 0; dev < all_device_count(); ++dev)
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i)
            run_decode_case(dev, &cases[i]);
    /* Vulkan: the shader's variant for devices without subgroup shuffles (a lane owns
     * whole K/V rows), on the cases it takes (at most 1024 floats of rows). */
    setenv("ATTN_VK_NO_SHUFFLE", "1", 1);
    for (int dev = device_count(); dev < all_device_count(); ++dev)
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i)
            if (cases[i].Sq * (cases[i].H / cases[i].Hk) * (cases[i].D + cases[i].Dv) <= 1024)
                run_decode_case(dev, &cases[i]);
    unsetenv("ATTN_VK_NO_SHUFFLE");
    /* Vulkan: K/V words through storage buffers, as on devices where texel views are not
     * used (GPUs) or cannot be made (an application's buffers); llvmpipe reads them
     * through texel views otherwise. */
    setenv("ATTN_VK_NO_TEXEL", "1", 1);
    for (int dev = device_count(); dev < all_device_count(); ++dev)
        for (size_t i = 0; i < 5; ++i)
            run_decode_case(dev, &cases[i]);
    unsetenv("ATTN_VK_NO_TEXEL");
}
END_TEST

/* Decode with K/V in library buffers at offsets and strides that the Vulkan kernel's wide
 * loads do not fit, so that it takes its narrower variants: element offsets 0, 16, 4 and 1,
 * rows padded by 0, 16, 8 or 3 elements, and V with element stride 2. */
START_TEST(test_decode_layouts)
{
    enum { B = 2, H = 8, Hk = 2, Sk = 300, D = 64 };
    static const struct {
        int64_t off, pad, vstep;
    } lay[] = {{0, 0, 1}, {16, 16, 1}, {4, 8, 1}, {1, 3, 1}, {0, 0, 2}};
    const size_t nq = (size_t)B * H * D, nk = (size_t)B * Sk * Hk * D;
    float *q = malloc(nq * 4), *k = malloc(nk * 4), *v = malloc(nk * 4);
    float *o = malloc(nq * 4), *o_ref = malloc(nq * 4);
    tu_fill_uniform(q, nq, 91);
    tu_fill_uniform(k, nk, 92);
    tu_fill_uniform(v, nk, 93);
    tu_round_to_half(q, nq), tu_round_to_half(k, nk), tu_round_to_half(v, nk);
    attn_desc d = ATTN_DESC_INIT;
    d.batch = B, d.num_heads = H, d.num_kv_heads = Hk, d.q_len = 1, d.kv_len = Sk, d.head_dim = D;
    attn_run_args a = ATTN_RUN_ARGS_INIT;
    a.q = attn_tensor_host(ATTN_DTYPE_F32, B, 1, H, D, q);
    a.k = attn_tensor_host(ATTN_DTYPE_F32, B, Sk, Hk, D, k);
    a.v = attn_tensor_host(ATTN_DTYPE_F32, B, Sk, Hk, D, v);
    a.o = attn_tensor_host(ATTN_DTYPE_F32, B, 1, H, D, o_ref);
    char msg[256];
    ck_assert_msg(tu_reference_run(&d, &a, msg, sizeof msg) == ATTN_OK, "%s", msg);
    for (int dev = 0; dev < all_device_count(); ++dev)
        for (int f16 = 0; f16 < 2; ++f16) {
            const attn_dtype dt = f16 ? ATTN_DTYPE_F16 : ATTN_DTYPE_F32;
            const size_t es = f16 ? 2 : 4;
            attn_context *ctx = device_ctx(dev, ATTN_FAMILY_AUTO, 0);
            d.dtype = dt;
            attn_plan *plan = NULL;
            ck_assert_msg(attn_plan_create(ctx, &d, &plan) == ATTN_OK, "%s", attn_last_detail());
            attn_plan_info info = info_blank();
            attn_plan_get_info(plan, &info);
            ck_assert_msg(strstr(info.kernel, "attn_decode") == info.kernel, "%s", info.kernel);
            void *qs = malloc(nq * es);
            uint16_t *oh = malloc(nq * 2);
            for (size_t i = 0; i < nq; ++i) {
                if (f16)
                    ((uint16_t *)qs)[i] = tu_float_to_half(q[i]);
                else
                    ((float *)qs)[i] = q[i];
            }
            for (size_t li = 0; li < sizeof lay / sizeof lay[0]; ++li) {
                /* K rows of Hk * D elements plus pad; V the same with its element stride. */
                int64_t st[2][4];
                attn_buffer *buf[2] = {NULL, NULL};
                for (int t = 0; t < 2; ++t) {
                    const int64_t step = t ? lay[li].vstep : 1;
                    st[t][3] = step, st[t][2] = D * step, st[t][1] = Hk * D * step + lay[li].pad;
                    st[t][0] = Sk * st[t][1];
                    const size_t n = (size_t)(lay[li].off + B * st[t][0]);
                    char *host = calloc(n, es);
                    const float *src = t ? v : k;
                    for (int64_t b = 0; b < B; ++b)
                        for (int64_t j = 0; j < Sk; ++j)
                            for (int64_t h = 0; h < Hk; ++h)
                                for (int64_t e = 0; e < D; ++e) {
                                    const size_t at = (size_t)(lay[li].off + b * st[t][0] +
                                                               j * st[t][1] + h * st[t][2] + e * st[t][3]);
                                    const float x = src[((b * Sk + j) * Hk + h) * D + e];
                                    if (f16)
                                        ((uint16_t *)host)[at] = tu_float_to_half(x);
                                    else
                                        ((float *)host)[at] = x;
                                }
                    ck_assert_int_eq(attn_buffer_create(ctx, n * es, &buf[t]), ATTN_OK);
                    ck_assert_int_eq(attn_buffer_upload(buf[t], 0, host, n * es), ATTN_OK);
                    free(host);
                }
                attn_run_args r = ATTN_RUN_ARGS_INIT;
                r.q = attn_tensor_host(dt, B, 1, H, D, qs);
                r.k = attn_tensor_buffer(dt, B, Sk, Hk, D, buf[0], (uint64_t)lay[li].off * es);
                r.v = attn_tensor_buffer(dt, B, Sk, Hk, D, buf[1], (uint64_t)lay[li].off * es);
                memcpy(r.k.stride, st[0], sizeof st[0]);
                memcpy(r.v.stride, st[1], sizeof st[1]);
                r.o = attn_tensor_host(dt, B, 1, H, D, f16 ? (void *)oh : (void *)o);
                ck_assert_msg(attn_plan_run(plan, &r) == ATTN_OK, "%s", attn_last_detail());
                for (size_t i = 0; f16 && i < nq; ++i)
                    o[i] = tu_half_to_float(oh[i]);
                tu_compare_result res;
                const int ok = tu_compare(o, o_ref, nq, tu_tolerance(dt), &res);
                tu_compare_describe(&res, msg, sizeof msg);
                ck_assert_msg(ok, "%s %s: offset %lld, pad %lld, V step %lld: %s",
                              tu_backend_name(device_backend(dev)), tu_dtype_name(dt),
                              (long long)lay[li].off, (long long)lay[li].pad,
                              (long long)lay[li].vstep, msg);
                attn_buffer_destroy(buf[0]);
                attn_buffer_destroy(buf[1]);
            }
            free(qs), free(oh);
            attn_plan_destroy(plan);
            attn_context_destroy(ctx);
        }
    free(q), free(k), free(v), free(o), free(o_ref);
}
END_TEST

/* Overlapped uploads on Vulkan: a budgeted run with host tensors streams many key chunks;
 * with timeline semaphores each chunk's upload starts while an earlier chunk still
 * computes (the backend says so in a debug message when it issues the upload: the order
 * of events, not a timing), and the output is exact and within the budget in every mode:
 * overlapped host copies (UMA memory, llvmpipe), copies on the transfer queue from a
 * staging ring (ATTN_VK_STAGED_UPLOADS=1), and synchronous uploads (ATTN_VK_NO_ASYNC=1). */
static int overlap_messages;

static void overlap_log(void *user, attn_log_level level, const char *message)
{
    (void)user;
    (void)level;
    if (strstr(message, "overlaps compute"))
        overlap_messages++;
}

START_TEST(test_overlap_vulkan)
{
    uint32_t nvk = 0;
    attn_device_count(ATTN_BACKEND_VULKAN, &nvk);
    const int64_t B = 2, H = 4, Hk = 2, Sq = 40, Sk = 3000, D = 64;
    const size_t nq = (size_t)(B * Sq * H * D), nk = (size_t)(B * Sk * Hk * D);
    float *q = malloc(nq * 4), *k = malloc(nk * 4), *v = malloc(nk * 4);
    float *o = malloc(nq * 4), *o_ref = malloc(nq * 4);
    tu_fill_uniform(q, nq, 31);
    tu_fill_uniform(k, nk, 32);
    tu_fill_uniform(v, nk, 33);
    attn_desc d = ATTN_DESC_INIT;
    d.batch = B, d.num_heads = H, d.num_kv_heads = Hk, d.q_len = Sq, d.kv_len = Sk;
    d.head_dim = D, d.causal = 1;
    attn_run_args a = ATTN_RUN_ARGS_INIT;
    a.q = attn_tensor_host(ATTN_DTYPE_F32, B, Sq, H, D, q);
    a.k = attn_tensor_host(ATTN_DTYPE_F32, B, Sk, Hk, D, k);
    a.v = attn_tensor_host(ATTN_DTYPE_F32, B, Sk, Hk, D, v);
    a.o = attn_tensor_host(ATTN_DTYPE_F32, B, Sq, H, D, o_ref);
    char msg[256];
    ck_assert_msg(tu_reference_run(&d, &a, msg, sizeof msg) == ATTN_OK, "%s", msg);
    a.o = attn_tensor_host(ATTN_DTYPE_F32, B, Sq, H, D, o);
    static const char *const modes[3] = {"overlapped", "ATTN_VK_STAGED_UPLOADS", "ATTN_VK_NO_ASYNC"};
    for (uint32_t dev = 0; dev < nvk; ++dev) {
        /* Twice the plan's least memory: segments and chunks far smaller than the problem. */
        attn_context *probe = device_ctx(device_count() + (int)dev, ATTN_FAMILY_AUTO, 0);
        attn_plan *pp = NULL;
        ck_assert_msg(attn_plan_create(probe, &d, &pp) == ATTN_OK, "%s", attn_last_detail());
        attn_plan_info pinfo = info_blank();
        attn_plan_get_info(pp, &pinfo);
        const uint64_t budget = 2 * pinfo.min_device_bytes;
        attn_plan_destroy(pp);
        attn_context_destroy(probe);
        for (int m = 0; m < 3; ++m) {
            if (m)
                setenv(modes[m], "1", 1);
            attn_context_params p = ATTN_CONTEXT_PARAMS_INIT;
            p.backend = ATTN_BACKEND_VULKAN;
            p.device_index = dev;
            p.memory_budget = budget;
            p.log_fn = overlap_log;
            p.log_level = ATTN_LOG_DEBUG;
            attn_context *ctx = NULL;
            ck_assert_msg(attn_context_create(&p, &ctx) == ATTN_OK, "%s", attn_last_detail());
            if (m)
                unsetenv(modes[m]);
            attn_plan *plan = NULL;
            ck_assert_msg(attn_plan_create(ctx, &d, &plan) == ATTN_OK, "%s", attn_last_detail());
            memset(o, 0, nq * 4);
            overlap_messages = 0;
            const double t0 = tu_now();
            ck_assert_msg(attn_plan_run(plan, &a) == ATTN_OK, "%s: %s", modes[m], attn_last_detail());
            const double t = tu_now() - t0;
            attn_plan_info info = info_blank();
            attn_plan_get_info(plan, &info);
            const attn_stats st = stats_of(ctx);
            printf("schedule: vulkan:%u %s: %.3f s, segments of %u rows x chunks of %u keys, "
                   "%d uploads issued while compute ran, peak %llu of %llu bytes\n",
                   dev, modes[m], t, info.segment_rows, info.chunk_keys, overlap_messages,
                   (unsigned long long)st.peak_device_bytes, (unsigned long long)budget);
            ck_assert_int_eq(info.scheduled, 1);
            ck_assert_uint_lt(info.chunk_keys, Sk / 4); /* several chunks per segment */
            ck_assert_uint_le(st.peak_device_bytes, budget);
            tu_compare_result res;
            const int ok = tu_compare(o, o_ref, nq, TU_TOL_F32, &res);
            tu_compare_describe(&res, msg, sizeof msg);
            ck_assert_msg(ok, "vulkan:%u %s: %s", dev, modes[m], msg);
            if (m == 2)
                ck_assert_int_eq(overlap_messages, 0);
            else
                ck_assert_msg(overlap_messages > 0, "vulkan:%u %s: no upload overlapped compute",
                              dev, modes[m]);
            attn_plan_destroy(plan);
            ck_assert_uint_eq(stats_of(ctx).device_bytes, 0);
            attn_context_destroy(ctx);
        }
    }
    free(q), free(k), free(v), free(o), free(o_ref);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("schedule");
    TCase *tc = tcase_create("schedule");
    tcase_set_timeout(tc, 900);
    tcase_add_test(tc, test_reference_merge);
    tcase_add_test(tc, test_budget_too_small);
    tcase_add_test(tc, test_progress_and_cancel);
    tcase_add_test(tc, test_kv_cache_decode);
    tcase_add_test(tc, test_decode_split);
    tcase_add_test(tc, test_decode_layouts);
    tcase_add_test(tc, test_overlap_vulkan);
    tcase_add_test(tc, test_oom_recovery);
    tcase_add_test(tc, test_mixed_under_budget);
    tcase_add_test(tc, test_budgets_same_output);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    /* No fork: an OpenCL runtime initialised in a parent does not survive fork() (PoCL's
     * worker threads stay behind), and one process keeps the JIT cache warm. */
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    tu_release();
    return failed ? 1 : 0;
}
