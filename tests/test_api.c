/* test_api.c — the public API's contracts: status table, version, devices, contexts,
 * buffers, statistics, family forcing, and the bad-input table (every invalid call returns
 * its specific status with a message, crashes nothing and leaks nothing). */
#include <attn/attn.h>
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ----------------------------------------------------------------------- */
static attn_context *make_ctx(attn_backend backend, attn_kernel_family family, uint64_t budget)
{
    attn_context_params p = ATTN_CONTEXT_PARAMS_INIT;
    p.backend = backend;
    p.kernel_family = family;
    p.memory_budget = budget;
    attn_context *ctx = NULL;
    attn_status s = attn_context_create(&p, &ctx);
    ck_assert_msg(s == ATTN_OK, "context on backend %d: %s", (int)backend, attn_last_detail());
    return ctx;
}

/* The backends to exercise: the reference always, OpenCL/Vulkan where a device exists. */
static int backend_present(attn_backend b)
{
    uint32_t n = 0;
    return attn_device_count(b, &n) == ATTN_OK && n > 0;
}

/* ---- status table, version ----------------------------------------------------------- */
START_TEST(test_status_table)
{
    int count = 0;
#define CHECK_STATUS(name, value, msg)                                                         \
    ck_assert_str_eq(attn_status_name(ATTN_##name), "ATTN_" #name);                           \
    ck_assert_str_eq(attn_status_string(ATTN_##name), msg);                                   \
    ck_assert_int_eq((int)ATTN_##name, value);                                                \
    ++count;
    ATTN_STATUS_MAP(CHECK_STATUS)
#undef CHECK_STATUS
    ck_assert_int_ge(count, 20);
    ck_assert_int_eq(ATTN_OK, 0);
    ck_assert_str_eq(attn_status_name((attn_status)12345), "ATTN_UNKNOWN_STATUS");
    ck_assert_ptr_nonnull(attn_status_string((attn_status)-9999));
}
END_TEST

START_TEST(test_version)
{
    ck_assert_uint_eq(attn_version_number(), ATTN_VERSION_NUMBER);
    ck_assert_str_eq(attn_version_string(), ATTN_VERSION_STRING);
    char buf[32];
    snprintf(buf, sizeof buf, "%d.%d.%d", ATTN_VERSION_MAJOR, ATTN_VERSION_MINOR,
             ATTN_VERSION_PATCH);
    ck_assert_str_eq(buf, ATTN_VERSION_STRING);
}
END_TEST

/* ---- devices --------------------------------------------------------------------------- */
START_TEST(test_devices)
{
    uint32_t all = 0, ref = 0, cl = 0, vk = 0;
    ck_assert_int_eq(attn_device_count(ATTN_BACKEND_AUTO, &all), ATTN_OK);
    ck_assert_int_eq(attn_device_count(ATTN_BACKEND_REFERENCE, &ref), ATTN_OK);
    ck_assert_int_eq(attn_device_count(ATTN_BACKEND_OPENCL, &cl), ATTN_OK);
    ck_assert_int_eq(attn_device_count(ATTN_BACKEND_VULKAN, &vk), ATTN_OK);
    ck_assert_uint_eq(ref, 1);
    ck_assert_uint_eq(all, ref + cl + vk);
    for (uint32_t i = 0; i < all; ++i) {
        attn_device_info info;
        memset(&info, 0, sizeof info);
        info.struct_size = sizeof info;
        ck_assert_int_eq(attn_device_get_info(ATTN_BACKEND_AUTO, i, &info), ATTN_OK);
        ck_assert_uint_eq(info.struct_size, sizeof info);
        ck_assert_msg(info.name[0], "device %u has no name", i);
        ck_assert_msg(info.backend >= ATTN_BACKEND_REFERENCE && info.backend <= ATTN_BACKEND_VULKAN,
                      "device %u: backend %d", i, (int)info.backend);
        ck_assert_uint_gt(info.global_mem_bytes, 0);
        ck_assert_uint_gt(info.max_alloc_bytes, 0);
        ck_assert_uint_gt(info.max_work_group_size, 0);
        /* The per-backend index addresses the same device. */
        attn_device_info again;
        memset(&again, 0, sizeof again);
        again.struct_size = sizeof again;
        ck_assert_int_eq(attn_device_get_info(info.backend, info.index, &again), ATTN_OK);
        ck_assert_str_eq(again.name, info.name);
    }
    attn_device_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    ck_assert_int_eq(attn_device_get_info(ATTN_BACKEND_AUTO, all, &info), ATTN_ERROR_NO_DEVICE);
}
END_TEST

/* ---- contexts, buffers, stats ----------------------------------------------------------- */
static int log_calls;
static void count_log(void *user, attn_log_level level, const char *msg)
{
    (void)level;
    ck_assert_ptr_eq(user, &log_calls);
    ck_assert_ptr_nonnull(msg);
    ++log_calls;
}

START_TEST(test_context_defaults_and_log)
{
    attn_context *ctx = NULL;
    ck_assert_int_eq(attn_context_create(NULL, &ctx), ATTN_OK);
    attn_device_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    ck_assert_int_eq(attn_context_device_info(ctx, &info), ATTN_OK);
    ck_assert_msg(info.name[0], "default device has a name");
    ck_assert_str_eq(attn_context_detail(ctx), "");
    attn_context_destroy(ctx);

    attn_context_params p = ATTN_CONTEXT_PARAMS_INIT;
    p.backend = ATTN_BACKEND_REFERENCE;
    p.log_fn = count_log;
    p.log_user = &log_calls;
    p.log_level = ATTN_LOG_DEBUG;
    log_calls = 0;
    ck_assert_int_eq(attn_context_create(&p, &ctx), ATTN_OK);
    ck_assert_int_gt(log_calls, 0);
    attn_buffer *buf = NULL;
    int before = log_calls;
    ck_assert_int_eq(attn_buffer_create(ctx, 0, &buf), ATTN_ERROR_INVALID_SHAPE);
    ck_assert_int_gt(log_calls, before); /* errors reach the callback */
    ck_assert_msg(strstr(attn_context_detail(ctx), "0 bytes"), "detail: %s",
                  attn_context_detail(ctx));
    attn_context_destroy(ctx);
    attn_context_destroy(NULL);
    attn_plan_destroy(NULL);
    attn_buffer_destroy(NULL);
}
END_TEST

START_TEST(test_buffers_and_stats)
{
    attn_backend backends[3] = {ATTN_BACKEND_REFERENCE, ATTN_BACKEND_OPENCL, ATTN_BACKEND_VULKAN};
    for (int bi = 0; bi < 3; ++bi) {
        if (!backend_present(backends[bi]))
            continue;
        attn_context *ctx = make_ctx(backends[bi], ATTN_FAMILY_AUTO, 0);
        attn_buffer *buf = NULL;
        float src[64], dst[64];
        for (int i = 0; i < 64; ++i)
            src[i] = (float)i * 0.5f;
        ck_assert_int_eq(attn_buffer_create(ctx, sizeof src, &buf), ATTN_OK);
        ck_assert_uint_eq(attn_buffer_size(buf), sizeof src);
        ck_assert_int_eq(attn_buffer_upload(buf, 0, src, sizeof src), ATTN_OK);
        memset(dst, 0, sizeof dst);
        ck_assert_int_eq(attn_buffer_download(buf, 16, dst, 32), ATTN_OK);
        ck_assert(memcmp(dst, src + 4, 32) == 0);
        attn_stats st;
        memset(&st, 0, sizeof st);
        st.struct_size = sizeof st;
        ck_assert_int_eq(attn_context_get_stats(ctx, &st), ATTN_OK);
        ck_assert_uint_eq(st.device_bytes, sizeof src);
        ck_assert_uint_ge(st.peak_device_bytes, sizeof src);
        ck_assert_uint_eq(st.bytes_uploaded, sizeof src);
        ck_assert_uint_eq(st.bytes_downloaded, 32);
        attn_buffer_destroy(buf);
        ck_assert_int_eq(attn_context_get_stats(ctx, &st), ATTN_OK);
        ck_assert_uint_eq(st.device_bytes, 0);
        ck_assert_int_eq(attn_context_reset_stats(ctx), ATTN_OK);
        ck_assert_int_eq(attn_context_get_stats(ctx, &st), ATTN_OK);
        ck_assert_uint_eq(st.peak_device_bytes, 0);
        ck_assert_uint_eq(st.bytes_uploaded, 0);
        /* A forgotten buffer is freed by the context (the sanitizer build checks it). */
        ck_assert_int_eq(attn_buffer_create(ctx, 100, &buf), ATTN_OK);
        attn_context_destroy(ctx);
    }
}
END_TEST

/* A small problem whose plan compiles once per (context, family). */
#define T_B 2
#define T_H 4
#define T_HK 2
#define T_SQ 5
#define T_SK 9
#define T_D 8

static float qd[T_B * T_SQ * T_H * T_D], kd[T_B * T_SK * T_HK * T_D], vd[T_B * T_SK * T_HK * T_D];
static float od[T_B * T_SQ * T_H * T_D];

static attn_desc small_desc(void)
{
    attn_desc d = ATTN_DESC_INIT;
    d.batch = T_B;
    d.num_heads = T_H;
    d.num_kv_heads = T_HK;
    d.q_len = T_SQ;
    d.kv_len = T_SK;
    d.head_dim = T_D;
    return d;
}

static attn_run_args small_args(void)
{
    attn_run_args a = ATTN_RUN_ARGS_INIT;
    a.q = attn_tensor_host(ATTN_DTYPE_F32, T_B, T_SQ, T_H, T_D, qd);
    a.k = attn_tensor_host(ATTN_DTYPE_F32, T_B, T_SK, T_HK, T_D, kd);
    a.v = attn_tensor_host(ATTN_DTYPE_F32, T_B, T_SK, T_HK, T_D, vd);
    a.o = attn_tensor_host(ATTN_DTYPE_F32, T_B, T_SQ, T_H, T_D, od);
    return a;
}

static void fill_inputs(void)
{
    unsigned x = 12345;
    float *arrays[3] = {qd, kd, vd};
    size_t sizes[3] = {sizeof qd / 4, sizeof kd / 4, sizeof vd / 4};
    for (int a = 0; a < 3; ++a)
        for (size_t i = 0; i < sizes[a]; ++i) {
            x = x * 1103515245u + 12345u;
            arrays[a][i] = (float)((x >> 8) & 0xffff) / 32768.0f - 1.0f;
        }
}

START_TEST(test_stats_cache_and_family)
{
    fill_inputs();
    if (!backend_present(ATTN_BACKEND_OPENCL) && !backend_present(ATTN_BACKEND_VULKAN))
        return; /* nothing compiles on the reference backend */
    attn_backend b = backend_present(ATTN_BACKEND_OPENCL) ? ATTN_BACKEND_OPENCL
                                                            : ATTN_BACKEND_VULKAN;
    attn_kernel_family fams[2] = {ATTN_FAMILY_CPU, ATTN_FAMILY_GPU};
    for (int f = 0; f < 2; ++f) {
        attn_context *ctx = make_ctx(b, fams[f], 0);
        attn_desc d = small_desc();
        attn_plan *p1 = NULL, *p2 = NULL;
        ck_assert_int_eq(attn_plan_create(ctx, &d, &p1), ATTN_OK);
        d.q_len = T_SQ - 1; /* lengths are run-time values: same kernels */
        ck_assert_int_eq(attn_plan_create(ctx, &d, &p2), ATTN_OK);
        attn_plan_info info;
        memset(&info, 0, sizeof info);
        info.struct_size = sizeof info;
        ck_assert_int_eq(attn_plan_get_info(p1, &info), ATTN_OK);
        ck_assert_int_eq(info.family, fams[f]);
        ck_assert_uint_gt(info.block_m, 0);
        ck_assert_uint_gt(info.device_bytes, 0);
        attn_stats st;
        memset(&st, 0, sizeof st);
        st.struct_size = sizeof st;
        ck_assert_int_eq(attn_context_get_stats(ctx, &st), ATTN_OK);
        /* One program: compiled now, or loaded from the persistent cache. */
        ck_assert_uint_eq(st.kernels_compiled + st.disk_cache_hits, 1);
        ck_assert_uint_eq(st.compile_cache_hits, 1);
        ck_assert_uint_eq(st.plans_created, 2);
        attn_run_args a = small_args();
        ck_assert_int_eq(attn_plan_run(p1, &a), ATTN_OK);
        ck_assert_int_eq(attn_context_get_stats(ctx, &st), ATTN_OK);
        ck_assert_uint_ge(st.launches, 1);
        ck_assert_uint_gt(st.bytes_uploaded, 0);
        ck_assert_uint_eq(st.bytes_downloaded, sizeof od);
        ck_assert_uint_le(st.peak_device_bytes, st.memory_budget);
        attn_plan_destroy(p1);
        /* p2 is left for attn_context_destroy to free. */
        attn_context_destroy(ctx);
    }
    /* ATTN_KERNEL_FAMILY applies when the context option is AUTO, and only then. */
    setenv("ATTN_KERNEL_FAMILY", "gpu", 1);
    attn_context *ctx = make_ctx(b, ATTN_FAMILY_AUTO, 0);
    attn_context *forced = make_ctx(b, ATTN_FAMILY_CPU, 0);
    unsetenv("ATTN_KERNEL_FAMILY");
    attn_desc d = small_desc();
    attn_plan *p = NULL, *pf = NULL;
    ck_assert_int_eq(attn_plan_create(ctx, &d, &p), ATTN_OK);
    ck_assert_int_eq(attn_plan_create(forced, &d, &pf), ATTN_OK);
    attn_plan_info info, finfo;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    finfo = info;
    attn_plan_get_info(p, &info);
    attn_plan_get_info(pf, &finfo);
    ck_assert_int_eq(info.family, ATTN_FAMILY_GPU);
    ck_assert_int_eq(finfo.family, ATTN_FAMILY_CPU);
    attn_context_destroy(ctx);
    attn_context_destroy(forced);
}
END_TEST

/* Keys past a batch entry's length are never read: NaN there must not reach the output
 * (padding, or a KV cache's unwritten capacity). Checked against the reference, which
 * skips them by construction. */
START_TEST(test_padding_never_read)
{
    enum { B = 2, SQ = 5, SK = 40, H = 2, D = 24 };
    static float q[B * SQ * H * D], k[B * SK * H * D], v[B * SK * H * D], o[B * SQ * H * D],
        oref[B * SQ * H * D];
    unsigned x = 99;
    for (size_t i = 0; i < sizeof q / 4; ++i)
        q[i] = (float)((x = x * 1103515245u + 12345u) >> 20) / 4096.0f - 0.5f;
    for (size_t i = 0; i < sizeof k / 4; ++i) {
        k[i] = (float)((x = x * 1103515245u + 12345u) >> 20) / 4096.0f - 0.5f;
        v[i] = (float)((x = x * 1103515245u + 12345u) >> 20) / 4096.0f - 0.5f;
    }
    int32_t lens[B] = {7, 33};
    for (int b = 0; b < B; ++b)
        for (int j = lens[b]; j < SK; ++j)
            for (int e = 0; e < H * D; ++e)
                k[(b * SK + j) * H * D + e] = v[(b * SK + j) * H * D + e] = NAN;
    attn_desc d = ATTN_DESC_INIT;
    d.batch = B, d.num_heads = H, d.q_len = SQ, d.kv_len = SK, d.head_dim = D, d.kv_lens = lens;
    attn_backend backends[3] = {ATTN_BACKEND_REFERENCE, ATTN_BACKEND_OPENCL, ATTN_BACKEND_VULKAN};
    for (int bi = 0; bi < 3; ++bi) {
        if (!backend_present(backends[bi]))
            continue;
        for (int fam = ATTN_FAMILY_CPU; fam <= ATTN_FAMILY_GPU; ++fam) {
            for (int causal = 0; causal < 2; ++causal) {
                attn_context *ctx = make_ctx(backends[bi], (attn_kernel_family)fam, 0);
                attn_plan *p = NULL;
                d.causal = causal;
                ck_assert_int_eq(attn_plan_create(ctx, &d, &p), ATTN_OK);
                attn_run_args a = ATTN_RUN_ARGS_INIT;
                a.q = attn_tensor_host(ATTN_DTYPE_F32, B, SQ, H, D, q);
                a.k = attn_tensor_host(ATTN_DTYPE_F32, B, SK, H, D, k);
                a.v = attn_tensor_host(ATTN_DTYPE_F32, B, SK, H, D, v);
                a.o = attn_tensor_host(ATTN_DTYPE_F32, B, SQ, H, D,
                                       backends[bi] == ATTN_BACKEND_REFERENCE ? oref : o);
                ck_assert_int_eq(attn_plan_run(p, &a), ATTN_OK);
                attn_context_destroy(ctx);
                if (backends[bi] == ATTN_BACKEND_REFERENCE)
                    continue;
                /* The reference ran first (causal 0 and 1 alternate): compare. */
                attn_context *rc = make_ctx(ATTN_BACKEND_REFERENCE, ATTN_FAMILY_AUTO, 0);
                ck_assert_int_eq(attn_plan_create(rc, &d, &p), ATTN_OK);
                a.o = attn_tensor_host(ATTN_DTYPE_F32, B, SQ, H, D, oref);
                ck_assert_int_eq(attn_plan_run(p, &a), ATTN_OK);
                attn_context_destroy(rc);
                for (size_t i = 0; i < sizeof o / 4; ++i)
                    ck_assert_msg(isfinite(o[i]) && fabsf(o[i] - oref[i]) <= 1e-4f * (1 + fabsf(oref[i])),
                                  "backend %d family %d causal %d: o[%zu] = %g, reference %g",
                                  (int)backends[bi], fam, causal, i, o[i], oref[i]);
            }
        }
    }
}
END_TEST

/* ---- the bad-input table --------------------------------------------------------------- */
typedef enum { K_CTX, K_PLAN, K_RUN, K_BUF, K_MISC } kind;

typedef struct bad_case {
    const char *what;
    kind k;
    attn_status expect;
    const char *needle; /* must appear in the detail message */
} bad_case;

static attn_context *g_ctx, *g_other;
static attn_plan *g_plan, *g_mask_plan, *g_lse_plan;
static attn_buffer *g_buf, *g_other_buf;

/* Runs case `i` and returns its status; each case makes exactly one invalid call. */
static attn_status run_case(int i)
{
    attn_context_params cp = ATTN_CONTEXT_PARAMS_INIT;
    attn_context *tmp = NULL;
    attn_desc d = small_desc();
    attn_plan *plan = NULL;
    attn_run_args a = small_args();
    attn_status s;
    int32_t lens[T_B] = {3, 99};
    switch (i) {
    case 0: return attn_context_create(NULL, NULL);
    case 1: cp.struct_size = 0; s = attn_context_create(&cp, &tmp); break;
    case 2: cp.struct_size = sizeof cp - 4; s = attn_context_create(&cp, &tmp); break;
    case 3: cp.backend = (attn_backend)99; s = attn_context_create(&cp, &tmp); break;
    case 4: cp.backend = ATTN_BACKEND_REFERENCE; cp.device_index = 1000;
            s = attn_context_create(&cp, &tmp); break;
    case 5: cp.kernel_family = (attn_kernel_family)7; s = attn_context_create(&cp, &tmp); break;
    case 6: return attn_plan_create(g_ctx, NULL, &plan);
    case 7: return attn_plan_create(NULL, &d, &plan);
    case 8: return attn_plan_create(g_ctx, &d, NULL);
    case 9: d.struct_size = 0; s = attn_plan_create(g_ctx, &d, &plan); break;
    case 10: d.batch = 0; s = attn_plan_create(g_ctx, &d, &plan); break;
    case 11: d.num_heads = -3; s = attn_plan_create(g_ctx, &d, &plan); break;
    case 12: d.q_len = 0; s = attn_plan_create(g_ctx, &d, &plan); break;
    case 13: d.head_dim = 0; s = attn_plan_create(g_ctx, &d, &plan); break;
    case 14: d.num_heads = 8; d.num_kv_heads = 3; s = attn_plan_create(g_ctx, &d, &plan); break;
    case 15: d.head_dim = 512; s = attn_plan_create(g_ctx, &d, &plan); break;
    case 16: d.v_head_dim = 300; s = attn_plan_create(g_ctx, &d, &plan); break;
    case 17: d.batch = (int64_t)1 << 20; d.q_len = (int64_t)1 << 40; d.num_heads = 1 << 10;
             d.num_kv_heads = 1; s = attn_plan_create(g_ctx, &d, &plan); break;
    case 18: d.dtype = ATTN_DTYPE_U8; s = attn_plan_create(g_ctx, &d, &plan); break;
    case 19: d.scale = NAN; s = attn_plan_create(g_ctx, &d, &plan); break;
    case 20: d.mask_kind = (attn_mask_kind)9; s = attn_plan_create(g_ctx, &d, &plan); break;
    case 21: d.kv_lens = lens; s = attn_plan_create(g_ctx, &d, &plan); break;
    case 22: return attn_plan_run(g_plan, NULL);
    case 23: a.struct_size = 0; return attn_plan_run(g_plan, &a);
    case 24: a.q.dtype = ATTN_DTYPE_F16; return attn_plan_run(g_plan, &a);
    case 25: a.k.shape[1] = T_SK + 1; return attn_plan_run(g_plan, &a);
    case 26: a.q.data = NULL; return attn_plan_run(g_plan, &a);
    case 27: a.v.stride[0] = -1; a.v.stride[1] = 8; a.v.stride[2] = 8; a.v.stride[3] = 1;
             return attn_plan_run(g_plan, &a);
    case 28: /* heads of O written to the same place */
        a.o.stride[0] = T_SQ * T_D; a.o.stride[1] = T_D; a.o.stride[2] = 0; a.o.stride[3] = 1;
        return attn_plan_run(g_plan, &a);
    case 29: a.o.data = qd; return attn_plan_run(g_plan, &a);
    case 30: a.k.stride[0] = INT64_MAX / 2; a.k.stride[1] = 1; a.k.stride[2] = 1;
             a.k.stride[3] = 1; return attn_plan_run(g_plan, &a);
    case 31: a.q = attn_tensor_buffer(ATTN_DTYPE_F32, T_B, T_SQ, T_H, T_D, g_buf, 64);
             return attn_plan_run(g_plan, &a);
    case 32: a.q = attn_tensor_buffer(ATTN_DTYPE_F32, T_B, T_SQ, T_H, T_D, g_buf, 2);
             return attn_plan_run(g_plan, &a);
    case 33: a.mask = attn_tensor_host(ATTN_DTYPE_F32, 1, 1, T_SQ, T_SK, od);
             return attn_plan_run(g_plan, &a);
    case 34: return attn_plan_run(g_mask_plan, &a); /* mask missing */
    case 35: a.q = attn_tensor_buffer(ATTN_DTYPE_F32, T_B, T_SQ, T_H, T_D, g_other_buf, 0);
             return attn_plan_run(g_plan, &a);
    case 36: {
        attn_buffer *b = g_buf;
        s = attn_buffer_create(g_ctx, 0, &b);
        ck_assert_ptr_null(b); /* cleared on failure */
        return s;
    }
    case 37: return attn_buffer_upload(g_buf, sizeof qd, qd, 8);
    case 38: return attn_buffer_upload(g_buf, 0, NULL, 8);
    case 39: {
        attn_buffer *b = NULL;
        attn_context_params bp = ATTN_CONTEXT_PARAMS_INIT;
        bp.backend = ATTN_BACKEND_REFERENCE;
        bp.memory_budget = 1 << 20;
        ck_assert_int_eq(attn_context_create(&bp, &tmp), ATTN_OK);
        s = attn_buffer_create(tmp, 2 << 20, &b);
        ck_assert_ptr_null(b);
        break;
    }
    case 40: {
        attn_device_info info;
        memset(&info, 0, sizeof info);
        return attn_device_get_info(ATTN_BACKEND_AUTO, 0, &info);
    }
    case 41: return attn_device_count(ATTN_BACKEND_AUTO, NULL);
    case 42: return attn_plan_get_info(g_plan, NULL);
    case 43: a.lse = attn_tensor_host(ATTN_DTYPE_F32, T_B, T_H, T_SQ, 1, od);
             return attn_plan_run(g_plan, &a);
    case 44: a.kv_lens = lens; lens[1] = 4; return attn_plan_run(g_plan, &a);
    case 45: a.q.shape[2] = T_H * 2; return attn_plan_run(g_plan, &a); /* another shape */
    case 46: return attn_plan_run(g_lse_plan, &a); /* lse missing */
    case 47: a.q.data = (char *)qd + 1; return attn_plan_run(g_plan, &a);
    case 48: a.q.buffer = g_buf; return attn_plan_run(g_plan, &a); /* data and buffer */
    case 49: d.num_kv_heads = -1; s = attn_plan_create(g_ctx, &d, &plan); break;
    default: ck_abort_msg("no case %d", i); return ATTN_OK;
    }
    /* Cases that may have produced an object must not have. */
    ck_assert_ptr_null(plan);
    if (i >= 1 && i <= 5)
        ck_assert_ptr_null(tmp);
    attn_context_destroy(tmp);
    return s;
}

static const bad_case bad_cases[] = {
    {"context_create out NULL", K_CTX, ATTN_ERROR_NULL_POINTER, "out is NULL"},
    {"context params struct_size 0", K_CTX, ATTN_ERROR_STRUCT_SIZE, "struct_size"},
    {"context params struct_size too small", K_CTX, ATTN_ERROR_STRUCT_SIZE, "struct_size"},
    {"unknown backend", K_CTX, ATTN_ERROR_INVALID_ARGUMENT, "backend"},
    {"device index out of range", K_CTX, ATTN_ERROR_NO_DEVICE, "device_index"},
    {"unknown kernel family", K_CTX, ATTN_ERROR_INVALID_ARGUMENT, "family"},
    {"plan desc NULL", K_PLAN, ATTN_ERROR_NULL_POINTER, "desc is NULL"},
    {"plan ctx NULL", K_PLAN, ATTN_ERROR_NULL_POINTER, "ctx is NULL"},
    {"plan out NULL", K_PLAN, ATTN_ERROR_NULL_POINTER, "out is NULL"},
    {"desc struct_size 0", K_PLAN, ATTN_ERROR_STRUCT_SIZE, "struct_size"},
    {"batch 0", K_PLAN, ATTN_ERROR_INVALID_SHAPE, "batch"},
    {"num_heads negative", K_PLAN, ATTN_ERROR_INVALID_SHAPE, "num_heads"},
    {"q_len 0", K_PLAN, ATTN_ERROR_INVALID_SHAPE, "q_len"},
    {"head_dim 0", K_PLAN, ATTN_ERROR_INVALID_SHAPE, "head_dim"},
    {"heads not a multiple of kv heads", K_PLAN, ATTN_ERROR_HEADS_MISMATCH, "multiple"},
    {"head_dim above every kernel", K_PLAN, ATTN_ERROR_HEAD_DIM_UNSUPPORTED, "at most"},
    {"v_head_dim above every kernel", K_PLAN, ATTN_ERROR_HEAD_DIM_UNSUPPORTED, "at most"},
    {"byte count overflows 64 bits", K_PLAN, ATTN_ERROR_OVERFLOW, "64 bits"},
    {"dtype u8 for Q/K/V/O", K_PLAN, ATTN_ERROR_INVALID_ARGUMENT, "dtype"},
    {"scale NaN", K_PLAN, ATTN_ERROR_INVALID_ARGUMENT, "scale"},
    {"unknown mask kind", K_PLAN, ATTN_ERROR_INVALID_ARGUMENT, "mask_kind"},
    {"kv_lens above kv_len", K_PLAN, ATTN_ERROR_INVALID_ARGUMENT, "kv_lens[1]"},
    {"run args NULL", K_RUN, ATTN_ERROR_NULL_POINTER, "args is NULL"},
    {"run args struct_size 0", K_RUN, ATTN_ERROR_STRUCT_SIZE, "struct_size"},
    {"Q dtype differs from the plan", K_RUN, ATTN_ERROR_DTYPE_MISMATCH, "tensor q"},
    {"K shape differs from the plan", K_RUN, ATTN_ERROR_SHAPE_MISMATCH, "tensor k"},
    {"Q without storage", K_RUN, ATTN_ERROR_NULL_POINTER, "neither data nor buffer"},
    {"negative stride", K_RUN, ATTN_ERROR_INVALID_STRIDE, "negative"},
    {"output strides overlap", K_RUN, ATTN_ERROR_ALIASING, "overlap"},
    {"output aliases Q", K_RUN, ATTN_ERROR_ALIASING, "overlaps tensor q"},
    {"strides overflow", K_RUN, ATTN_ERROR_OVERFLOW, "overflow"},
    {"tensor past the end of its buffer", K_RUN, ATTN_ERROR_OUT_OF_RANGE, "do not fit"},
    {"buffer offset misaligned", K_RUN, ATTN_ERROR_INVALID_ARGUMENT, "multiple of the element"},
    {"mask given to a plan without mask", K_RUN, ATTN_ERROR_INVALID_ARGUMENT, "mask_kind is NONE"},
    {"mask missing for an additive plan", K_RUN, ATTN_ERROR_DTYPE_MISMATCH, "tensor mask"},
    {"buffer of another context", K_RUN, ATTN_ERROR_WRONG_CONTEXT, "another context"},
    {"buffer of 0 bytes", K_BUF, ATTN_ERROR_INVALID_SHAPE, "0 bytes"},
    {"upload past the end", K_BUF, ATTN_ERROR_OUT_OF_RANGE, "outside the buffer"},
    {"upload from NULL", K_BUF, ATTN_ERROR_NULL_POINTER, "host pointer is NULL"},
    {"buffer over the budget", K_BUF, ATTN_ERROR_OVER_BUDGET, "budget"},
    {"device info struct_size 0", K_MISC, ATTN_ERROR_STRUCT_SIZE, "struct_size"},
    {"device count NULL", K_MISC, ATTN_ERROR_NULL_POINTER, "count is NULL"},
    {"plan info NULL", K_MISC, ATTN_ERROR_NULL_POINTER, "NULL"},
    {"lse given without want_lse", K_RUN, ATTN_ERROR_INVALID_ARGUMENT, "want_lse"},
    {"run kv_lens on a plan without", K_RUN, ATTN_ERROR_INVALID_ARGUMENT, "kv_lens"},
    {"run with Q of another shape", K_RUN, ATTN_ERROR_SHAPE_MISMATCH, "shape"},
    {"lse missing for a want_lse plan", K_RUN, ATTN_ERROR_DTYPE_MISMATCH, "tensor lse"},
    {"Q host pointer misaligned", K_RUN, ATTN_ERROR_INVALID_ARGUMENT, "aligned"},
    {"Q with both data and buffer", K_RUN, ATTN_ERROR_INVALID_ARGUMENT, "both data and buffer"},
    {"num_kv_heads negative", K_PLAN, ATTN_ERROR_INVALID_SHAPE, "num_kv_heads"},
};
#define NUM_BAD ((int)(sizeof bad_cases / sizeof bad_cases[0]))

static void bad_setup(attn_backend b)
{
    fill_inputs();
    g_ctx = make_ctx(b, ATTN_FAMILY_AUTO, 0);
    g_other = make_ctx(ATTN_BACKEND_REFERENCE, ATTN_FAMILY_AUTO, 0);
    attn_desc d = small_desc();
    ck_assert_int_eq(attn_plan_create(g_ctx, &d, &g_plan), ATTN_OK);
    d.mask_kind = ATTN_MASK_ADDITIVE;
    ck_assert_int_eq(attn_plan_create(g_ctx, &d, &g_mask_plan), ATTN_OK);
    d.mask_kind = ATTN_MASK_NONE;
    d.want_lse = 1;
    ck_assert_int_eq(attn_plan_create(g_ctx, &d, &g_lse_plan), ATTN_OK);
    ck_assert_int_eq(attn_buffer_create(g_ctx, sizeof qd, &g_buf), ATTN_OK);
    ck_assert_int_eq(attn_buffer_upload(g_buf, 0, qd, sizeof qd), ATTN_OK);
    ck_assert_int_eq(attn_buffer_create(g_other, sizeof qd, &g_other_buf), ATTN_OK);
}

static void bad_teardown(void)
{
    attn_context_destroy(g_ctx);
    attn_context_destroy(g_other);
    g_ctx = g_other = NULL;
    g_plan = g_mask_plan = g_lse_plan = NULL;
    g_buf = g_other_buf = NULL;
}

static void check_bad_table(attn_backend b)
{
    ck_assert_int_ge(NUM_BAD, 25);
    bad_setup(b);
    for (int i = 0; i < NUM_BAD; ++i) {
        const bad_case *c = &bad_cases[i];
        attn_status s = run_case(i);
        ck_assert_msg(s == c->expect, "case %d (%s) on backend %d: got %s, expected %s (%s)", i,
                      c->what, (int)b, attn_status_name(s), attn_status_name(c->expect),
                      attn_last_detail());
        const char *detail = attn_last_detail();
        ck_assert_msg(strstr(detail, c->needle) != NULL,
                      "case %d (%s): detail \"%s\" lacks \"%s\"", i, c->what, detail, c->needle);
        ck_assert_msg(strstr(detail, attn_status_name(c->expect)) != NULL,
                      "case %d (%s): detail \"%s\" does not name the status", i, c->what, detail);
    }
    /* After all of that, the plan still runs and the budget is intact. */
    attn_run_args a = small_args();
    ck_assert_int_eq(attn_plan_run(g_plan, &a), ATTN_OK);
    for (size_t i = 0; i < sizeof od / 4; ++i)
        ck_assert_msg(isfinite(od[i]), "output %zu is not finite", i);
    bad_teardown();
}

START_TEST(test_bad_inputs_reference) { check_bad_table(ATTN_BACKEND_REFERENCE); }
END_TEST

START_TEST(test_bad_inputs_devices)
{
    attn_backend backends[2] = {ATTN_BACKEND_OPENCL, ATTN_BACKEND_VULKAN};
    for (int i = 0; i < 2; ++i)
        if (backend_present(backends[i]))
            check_bad_table(backends[i]);
}
END_TEST

/* ---- issue 6: patterns and positions -------------------------------------------------- */
typedef struct feat_case {
    const char *what;
    attn_status expect;
    const char *needle;
} feat_case;

static const feat_case feat_cases[] = {
    {"negative window extent", ATTN_ERROR_INVALID_ARGUMENT, "window_left"},
    {"dilation negative", ATTN_ERROR_INVALID_ARGUMENT, "dilation"},
    {"dilation extents with stride 0", ATTN_ERROR_INVALID_ARGUMENT, "dilation (the stride) is 0"},
    {"global token past kv_len", ATTN_ERROR_OUT_OF_RANGE, "global_tokens[1]"},
    {"global tokens unsorted", ATTN_ERROR_INVALID_ARGUMENT, "strictly ascending"},
    {"global tokens NULL", ATTN_ERROR_NULL_POINTER, "global_tokens NULL"},
    {"random blocks 0 with a block size", ATTN_ERROR_INVALID_ARGUMENT, "random_blocks"},
    {"BSR block size 0", ATTN_ERROR_INVALID_SHAPE, "bsr_block_q"},
    {"BSR row pointers decrease", ATTN_ERROR_INVALID_ARGUMENT, "decreases"},
    {"BSR overflows the grid", ATTN_ERROR_OUT_OF_RANGE, "block grid"},
    {"BSR column out of range", ATTN_ERROR_OUT_OF_RANGE, "bsr_col_idx[1]"},
    {"BSR columns unsorted", ATTN_ERROR_INVALID_ARGUMENT, "not strictly ascending"},
    {"num_patterns neither 1 nor heads", ATTN_ERROR_INVALID_ARGUMENT, "num_patterns"},
    {"pattern struct_size 0", ATTN_ERROR_STRUCT_SIZE, "ATTN_PATTERN_INIT"},
    {"rotary dims odd", ATTN_ERROR_INVALID_ARGUMENT, "rope_dims"},
    {"rotary dims above head_dim", ATTN_ERROR_INVALID_ARGUMENT, "rope_dims"},
    {"rope fields without rope", ATTN_ERROR_INVALID_ARGUMENT, "rope = 1"},
    {"T5 bucket table missing", ATTN_ERROR_NULL_POINTER, "bucket table"},
    {"T5 max distance too small", ATTN_ERROR_INVALID_ARGUMENT, "t5_max_distance"},
    {"softcap negative", ATTN_ERROR_INVALID_ARGUMENT, "softcap"},
    {"sink NaN", ATTN_ERROR_INVALID_ARGUMENT, "sinks[2]"},
    {"alibi slopes without alibi", ATTN_ERROR_INVALID_ARGUMENT, "alibi = 1"},
    {"probs head out of range", ATTN_ERROR_INVALID_ARGUMENT, "probs_head"},
    {"probs tensor wrong shape", ATTN_ERROR_SHAPE_MISMATCH, "tensor probs"},
    {"probs tensor missing", ATTN_ERROR_DTYPE_MISMATCH, "tensor probs"},
    {"probs given without want_probs", ATTN_ERROR_INVALID_ARGUMENT, "want_probs"},
    {"probs aliases O", ATTN_ERROR_ALIASING, "overlaps tensor probs"},
};
#define NUM_FEAT ((int)(sizeof feat_cases / sizeof feat_cases[0]))

/* Case i: one invalid description or run; returns its status. */
static attn_status run_feat_case(attn_context *ctx, int i)
{
    attn_desc d = small_desc();
    attn_run_args a = small_args();
    attn_pattern pat = ATTN_PATTERN_INIT;
    attn_pattern two[2] = {ATTN_PATTERN_INIT, ATTN_PATTERN_INIT};
    int64_t g_out[2] = {0, T_SK}, g_unsorted[2] = {3, 1};
    int32_t rp_dec[3] = {0, 2, 1}, rp_big[3] = {0, 5, 12}, rp_ok[3] = {0, 2, 3};
    int32_t ci_out[3] = {0, 7, 1}, ci_unsorted[3] = {1, 0, 2};
    float t5[T_H * 8] = {0}, sinks[T_H] = {0, 0, NAN, 0}, slopes[T_H] = {1, 1, 1, 1};
    static float probs[T_B * T_H * T_SQ * T_SK];
    int run = 0;
    d.patterns = &pat;
    d.num_patterns = 1;
    pat.window = 1;
    switch (i) {
    case 0: pat.window_left = -2; break;
    case 1: pat.dilation = -1; break;
    case 2: pat.dilation_left = 4; break;
    case 3: pat.global_tokens = g_out; pat.num_global = 2; break;
    case 4: pat.global_tokens = g_unsorted; pat.num_global = 2; break;
    case 5: pat.num_global = 2; break;
    case 6: pat.random_block_size = 4; break;
    case 7: pat.bsr_block_q = 0; pat.bsr_block_k = 3; pat.bsr_row_ptr = rp_ok; break;
    case 8: pat.bsr_block_q = 3; pat.bsr_block_k = 3; pat.bsr_row_ptr = rp_dec;
            pat.bsr_col_idx = ci_out; break;
    case 9: pat.bsr_block_q = 3; pat.bsr_block_k = 3; pat.bsr_row_ptr = rp_big;
            pat.bsr_col_idx = ci_out; break;
    case 10: pat.bsr_block_q = 3; pat.bsr_block_k = 3; pat.bsr_row_ptr = rp_ok;
             pat.bsr_col_idx = ci_out; break; /* 3 block columns: 7 is outside */
    case 11: pat.bsr_block_q = 3; pat.bsr_block_k = 3; pat.bsr_row_ptr = rp_ok;
             pat.bsr_col_idx = ci_unsorted; break;
    case 12: d.patterns = two; d.num_patterns = 2; break;
    case 13: pat.struct_size = 0; break;
    case 14: d.rope = 1; d.rope_dims = 3; break;
    case 15: d.rope = 1; d.rope_dims = T_D + 2; break;
    case 16: d.rope_q_offset = 5; break;
    case 17: d.t5_num_buckets = 8; d.t5_max_distance = 16; break;
    case 18: d.t5_table = t5; d.t5_num_buckets = 8; d.t5_max_distance = 2; break;
    case 19: d.softcap = -1.0f; break;
    case 20: d.sinks = sinks; break;
    case 21: d.alibi_slopes = slopes; break;
    case 22: d.want_probs = ATTN_PROBS_ONE_HEAD; d.probs_head = T_H; break;
    case 23: d.want_probs = ATTN_PROBS_ONE_HEAD; d.probs_head = 1; run = 1;
             a.probs = attn_tensor_host(ATTN_DTYPE_F32, T_B, T_H, T_SQ, T_SK, probs); break;
    case 24: d.want_probs = ATTN_PROBS_ALL_HEADS; run = 1; break;
    case 25: run = 1; a.probs = attn_tensor_host(ATTN_DTYPE_F32, T_B, T_H, T_SQ, T_SK, probs);
             break;
    case 26: d.want_probs = ATTN_PROBS_ALL_HEADS; run = 1;
             a.probs = attn_tensor_host(ATTN_DTYPE_F32, T_B, T_H, T_SQ, T_SK, od); break;
    default: ck_abort_msg("no case %d", i);
    }
    attn_plan *plan = NULL;
    attn_status s = attn_plan_create(ctx, &d, &plan);
    if (!run) {
        ck_assert_ptr_null(plan);
        return s;
    }
    ck_assert_msg(s == ATTN_OK, "case %d: plan: %s", i, attn_last_detail());
    s = attn_plan_run(plan, &a);
    attn_plan_destroy(plan);
    return s;
}

START_TEST(test_feature_validation)
{
    fill_inputs();
    attn_context *ctx = make_ctx(ATTN_BACKEND_REFERENCE, ATTN_FAMILY_AUTO, 0);
    for (int i = 0; i < NUM_FEAT; ++i) {
        const feat_case *c = &feat_cases[i];
        attn_status s = run_feat_case(ctx, i);
        const char *detail = attn_last_detail();
        ck_assert_msg(s == c->expect, "case %d (%s): got %s, expected %s (%s)", i, c->what,
                      attn_status_name(s), attn_status_name(c->expect), detail);
        ck_assert_msg(strstr(detail, c->needle) != NULL, "case %d (%s): detail \"%s\" lacks \"%s\"",
                      i, c->what, detail, c->needle);
    }
    /* A valid window plan with a probability output runs on the reference backend. */
    attn_desc d = small_desc();
    attn_pattern pat = ATTN_PATTERN_INIT;
    pat.window = 1;
    pat.window_left = 2;
    d.patterns = &pat;
    d.num_patterns = 1;
    d.want_probs = ATTN_PROBS_ALL_HEADS;
    static float probs[T_B * T_H * T_SQ * T_SK];
    attn_run_args a = small_args();
    a.probs = attn_tensor_host(ATTN_DTYPE_F32, T_B, T_H, T_SQ, T_SK, probs);
    attn_plan *plan = NULL;
    ck_assert_int_eq(attn_plan_create(ctx, &d, &plan), ATTN_OK);
    ck_assert_int_eq(attn_plan_run(plan, &a), ATTN_OK);
    attn_plan_destroy(plan);
    attn_context_destroy(ctx);
}
END_TEST

/* Every feature plans on both device backends (their results: test_features.c and
 * test_probs.c). */
START_TEST(test_features_on_devices)
{
    attn_backend backends[2] = {ATTN_BACKEND_OPENCL, ATTN_BACKEND_VULKAN};
    for (int bi = 0; bi < 2; ++bi) {
        if (!backend_present(backends[bi]))
            continue;
        attn_context *ctx = make_ctx(backends[bi], ATTN_FAMILY_AUTO, 0);
        static const float t5[T_H * 8], sinks[T_H];
        int64_t g[1] = {0};
        int32_t rp[3] = {0, 1, 1}, ci[1] = {0};
        const char *needles[] = {"sliding-window", "dilated", "global-token", "BigBird",
                                 "block-sparse", "per-head", "ALiBi", "T5", "RoPE",
                                 "soft-capped", "sinks", "probability"};
        for (int f = 0; f < (int)(sizeof needles / sizeof needles[0]); ++f) {
            attn_desc d = small_desc();
            attn_pattern pat = ATTN_PATTERN_INIT;
            attn_pattern per_head[T_H] = {ATTN_PATTERN_INIT, ATTN_PATTERN_INIT,
                                          ATTN_PATTERN_INIT, ATTN_PATTERN_INIT};
            d.patterns = &pat;
            d.num_patterns = 1;
            switch (f) {
            case 0: pat.window = 1; break;
            case 1: pat.dilation = 2; break;
            case 2: pat.global_tokens = g; pat.num_global = 1; break;
            case 3: pat.random_block_size = 3; pat.random_blocks = 1; break;
            case 4: pat.bsr_block_q = 3; pat.bsr_block_k = 3; pat.bsr_row_ptr = rp;
                    pat.bsr_col_idx = ci; break;
            case 5: d.patterns = per_head; d.num_patterns = T_H; break; /* even all dense */
            default: d.patterns = NULL; d.num_patterns = 0; break;
            }
            if (f == 6) d.alibi = 1;
            if (f == 7) { d.t5_table = t5; d.t5_num_buckets = 8; d.t5_max_distance = 16; }
            if (f == 8) d.rope = 1;
            if (f == 9) d.softcap = 30.0f;
            if (f == 10) d.sinks = sinks;
            if (f == 11) d.want_probs = ATTN_PROBS_ALL_HEADS;
            attn_plan *plan = NULL;
            attn_status s = attn_plan_create(ctx, &d, &plan);
            const char *detail = attn_context_detail(ctx);
            ck_assert_msg(s == ATTN_OK, "backend %d feature %s: %s (%s)", (int)backends[bi],
                          needles[f], attn_status_name(s), detail);
            attn_plan_destroy(plan);
        }
        attn_context_destroy(ctx);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("api");
    TCase *tc = tcase_create("api");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_status_table);
    tcase_add_test(tc, test_version);
    tcase_add_test(tc, test_devices);
    tcase_add_test(tc, test_context_defaults_and_log);
    tcase_add_test(tc, test_buffers_and_stats);
    tcase_add_test(tc, test_stats_cache_and_family);
    tcase_add_test(tc, test_padding_never_read);
    tcase_add_test(tc, test_bad_inputs_reference);
    tcase_add_test(tc, test_bad_inputs_devices);
    tcase_add_test(tc, test_feature_validation);
    tcase_add_test(tc, test_features_on_devices);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
