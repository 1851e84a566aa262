/* test_probs.c — probabilities returned by attn_plan_run (attn_desc.want_probs, issue 6)
 * on every device entry: a 256-token problem whose rows sum to 1 and equal the
 * reference's, for all heads and for one head, in host memory and in a library buffer
 * with strides; a problem that would need the scheduler is refused with a message. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

#define B 1
#define H 4
#define HK 2
#define S 256
#define D 32

static float q[B * S * H * D], k[B * S * HK * D], v[B * S * HK * D];

static attn_desc make_desc(int mode, int64_t head)
{
    static attn_pattern pat;
    attn_pattern z = ATTN_PATTERN_INIT;
    pat = z;
    pat.window = 1;
    pat.window_left = 40;
    pat.window_right = 0;
    static int64_t globals[2] = {0, 3};
    pat.global_tokens = globals;
    pat.num_global = 2;
    attn_desc d = ATTN_DESC_INIT;
    d.batch = B;
    d.num_heads = H;
    d.num_kv_heads = HK;
    d.q_len = S;
    d.kv_len = S;
    d.head_dim = D;
    d.causal = 1;
    d.patterns = &pat;
    d.num_patterns = 1;
    d.alibi = 1;
    d.rope = 1;
    static const float sinks[H] = {0.5f, -1.0f, 0.0f, 2.0f};
    d.sinks = sinks;
    d.want_probs = mode;
    d.probs_head = head;
    return d;
}

static attn_run_args make_args(float *o)
{
    attn_run_args a = ATTN_RUN_ARGS_INIT;
    a.q = attn_tensor_host(ATTN_DTYPE_F32, B, S, H, D, q);
    a.k = attn_tensor_host(ATTN_DTYPE_F32, B, S, HK, D, k);
    a.v = attn_tensor_host(ATTN_DTYPE_F32, B, S, HK, D, v);
    a.o = attn_tensor_host(ATTN_DTYPE_F32, B, S, H, D, o);
    return a;
}

static void check_against_reference(const tu_device *dev, int mode, int64_t head, int in_buffer)
{
    const int64_t hp = mode == ATTN_PROBS_ONE_HEAD ? 1 : H;
    const size_t n = (size_t)(B * hp * S * S);
    float *ref = calloc(n, sizeof *ref), *got = calloc(n, sizeof *got);
    float *o = calloc((size_t)(B * S * H * D), sizeof *o);
    attn_desc d = make_desc(mode, head);
    attn_run_args a = make_args(o);
    a.probs = attn_tensor_host(ATTN_DTYPE_F32, B, hp, S, S, ref);
    char msg[256];
    ck_assert_msg(tu_reference_run(&d, &a, msg, sizeof msg) == ATTN_OK, "reference: %s", msg);

    attn_plan *plan = NULL;
    attn_status s = attn_plan_create(dev->ctx, &d, &plan);
    ck_assert_msg(s == ATTN_OK, "%s: plan: %s (%s)", dev->label, attn_status_name(s),
                  attn_context_detail(dev->ctx));
    attn_buffer *buf = NULL;
    /* In a buffer: rows padded to S + 5 floats, after a 7-float offset. */
    const int64_t ld = S + 5, off = 7;
    if (in_buffer) {
        const uint64_t bytes = (uint64_t)(off + B * hp * S * ld) * 4;
        ck_assert_int_eq(attn_buffer_create(dev->ctx, bytes, &buf), ATTN_OK);
        a.probs = attn_tensor_buffer(ATTN_DTYPE_F32, B, hp, S, S, buf, off * 4);
        const int64_t st[4] = {hp * S * ld, S * ld, ld, 1};
        memcpy(a.probs.stride, st, sizeof st);
    } else {
        a.probs = attn_tensor_host(ATTN_DTYPE_F32, B, hp, S, S, got);
    }
    s = attn_plan_run(plan, &a);
    ck_assert_msg(s == ATTN_OK, "%s: run: %s (%s)", dev->label, attn_status_name(s),
                  attn_context_detail(dev->ctx));
    if (in_buffer) {
        const uint64_t bytes = (uint64_t)(off + B * hp * S * ld) * 4;
        float *all = malloc(bytes);
        ck_assert_int_eq(attn_buffer_download(buf, 0, all, bytes), ATTN_OK);
        for (int64_t r = 0; r < B * hp * S; ++r)
            memcpy(got + r * S, all + off + r * ld, S * sizeof *got);
        free(all);
        attn_buffer_destroy(buf);
    }
    attn_plan_destroy(plan);

    tu_compare_result r;
    char why[256];
    if (!tu_compare(got, ref, n, 1e-5, &r)) {
        tu_compare_describe(&r, why, sizeof why);
        ck_abort_msg("%s mode %d%s: probabilities: %s", dev->label, mode,
                     in_buffer ? " (buffer)" : "", why);
    }
    /* Rows sum to 1 less the sink's share: exp(sink) / (sum + exp(sink)); with the lse
     * that is 1 - exp(sink - lse). Here, without the sinks' share, compare the sums of
     * the reference (exact in double) and the device. */
    for (int64_t row = 0; row < B * hp * S; ++row) {
        double sg = 0, sr = 0;
        for (int64_t j = 0; j < S; ++j)
            sg += got[row * S + j], sr += ref[row * S + j];
        ck_assert_msg(fabs(sg - sr) < 1e-5 && sg <= 1.0 + 1e-5, "%s: row %lld sums to %.7f, "
                      "reference %.7f", dev->label, (long long)row, sg, sr);
    }
    free(ref);
    free(got);
    free(o);
}

START_TEST(test_probs_match)
{
    const tu_device *devs;
    const size_t nd = tu_devices(&devs, NULL);
    const size_t e = (size_t)_i;
    if (e >= nd || !devs[e].ctx)
        return;
    check_against_reference(&devs[e], ATTN_PROBS_ALL_HEADS, 0, 0);
    check_against_reference(&devs[e], ATTN_PROBS_ONE_HEAD, 3, 1);
}
END_TEST

/* Without sinks, every row with a visible key sums to 1. */
START_TEST(test_probs_sum_to_one)
{
    const tu_device *devs;
    const size_t nd = tu_devices(&devs, NULL);
    const size_t e = (size_t)_i;
    if (e >= nd || !devs[e].ctx)
        return;
    attn_desc d = make_desc(ATTN_PROBS_ALL_HEADS, 0);
    d.sinks = NULL;
    float *p = calloc((size_t)(B * H * S * S), sizeof *p);
    float *o = calloc((size_t)(B * S * H * D), sizeof *o);
    attn_run_args a = make_args(o);
    a.probs = attn_tensor_host(ATTN_DTYPE_F32, B, H, S, S, p);
    attn_plan *plan = NULL;
    ck_assert_int_eq(attn_plan_create(devs[e].ctx, &d, &plan), ATTN_OK);
    ck_assert_int_eq(attn_plan_run(plan, &a), ATTN_OK);
    attn_plan_destroy(plan);
    for (int64_t row = 0; row < B * H * S; ++row) {
        double sum = 0;
        for (int64_t j = 0; j < S; ++j)
            sum += p[row * S + j];
        ck_assert_msg(fabs(sum - 1.0) < 1e-5, "%s: row %lld sums to %.7f", devs[e].label,
                      (long long)row, sum);
    }
    free(p);
    free(o);
}
END_TEST

/* A problem over the budget would run scheduled: no probabilities, and a message. */
START_TEST(test_probs_need_one_pass)
{
    const tu_device *devs;
    const size_t nd = tu_devices(&devs, NULL);
    const size_t e = (size_t)_i;
    if (e >= nd || !devs[e].ctx)
        return;
    attn_context_params cp = ATTN_CONTEXT_PARAMS_INIT;
    cp.backend = devs[e].backend;
    cp.device_index = devs[e].index;
    cp.kernel_family = devs[e].family;
    cp.memory_budget = 64 * 1024;
    attn_context *ctx = NULL;
    ck_assert_int_eq(attn_context_create(&cp, &ctx), ATTN_OK);
    attn_desc d = make_desc(ATTN_PROBS_ALL_HEADS, 0);
    attn_plan *plan = NULL;
    attn_status s = attn_plan_create(ctx, &d, &plan);
    ck_assert_msg(s == ATTN_ERROR_OVER_BUDGET && strstr(attn_context_detail(ctx), "one pass"),
                  "%s: %s (%s)", devs[e].label, attn_status_name(s), attn_context_detail(ctx));
    ck_assert_ptr_null(plan);
    attn_context_destroy(ctx);
}
END_TEST

int main(void)
{
    const tu_device *devs;
    uint32_t found = 0;
    const size_t nd = tu_devices(&devs, &found);
    if (!found) {
        printf("no OpenCL or Vulkan device: skipped\n");
        return 77;
    }
    tu_fill_uniform(q, sizeof q / sizeof q[0], 1);
    tu_fill_uniform(k, sizeof k / sizeof k[0], 2);
    tu_fill_uniform(v, sizeof v / sizeof v[0], 3);
    for (size_t i = 0; i < sizeof q / sizeof q[0]; ++i)
        q[i] *= 3.0f; /* peaked rows: probabilities far from uniform */
    Suite *s = suite_create("probs");
    TCase *tc = tcase_create("probs");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_probs_match, 0, (int)nd);
    tcase_add_loop_test(tc, test_probs_sum_to_one, 0, (int)nd);
    tcase_add_loop_test(tc, test_probs_need_one_pass, 0, (int)nd);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    const int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    tu_release();
    return failed ? 1 : 0;
}
