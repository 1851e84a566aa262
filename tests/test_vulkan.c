/* test_vulkan.c — the Vulkan backend's own suite: a K tensor larger than one binding
 * (maxStorageBufferRange), interop with an application's VkDevice/VkBuffers (and its
 * cl_context/cl_mem), the f16 paths (16-bit storage and packed words) and subgroup-less
 * kernels, the scheduler's merge kernel, the CPU family's K/V packing for K/V layouts that
 * do and do not fit its word loads, and 500 plans created, run and destroyed with
 * device memory back at its start. Every result is checked against the double-precision
 * reference. Exits 77 only when no Vulkan device exists. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

#ifdef ATTN_HAVE_VULKAN
#include <attn/attn_vulkan.h>
#ifdef ATTN_HAVE_OPENCL
#include <attn/attn_opencl.h>
#endif

/* ---- helpers ------------------------------------------------------------------------- */

static void tlog(void *user, attn_log_level level, const char *message)
{
    (void)user;
    if (level <= ATTN_LOG_WARN)
        fprintf(stderr, "[vulkan test] %s\n", message);
}

static attn_context *vk_context(attn_kernel_family family, uint64_t budget)
{
    attn_context_params p = ATTN_CONTEXT_PARAMS_INIT;
    p.backend = ATTN_BACKEND_VULKAN;
    p.kernel_family = family;
    p.memory_budget = budget;
    p.log_fn = tlog;
    attn_context *ctx = NULL;
    attn_status st = attn_context_create(&p, &ctx);
    ck_assert_msg(st == ATTN_OK, "attn_context_create(vulkan): %s: %s", attn_status_name(st),
                  attn_last_detail());
    return ctx;
}

static uint64_t device_bytes(const attn_context *ctx)
{
    attn_stats s;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    ck_assert_int_eq(attn_context_get_stats(ctx, &s), ATTN_OK);
    return s.device_bytes;
}

/* Host data of one problem in f32 (values representable in f16 when dtype is f16) and its
 * reference output. */
typedef struct problem {
    attn_desc d;
    size_t nq, nk, nv, no, nl, nm;
    float *q, *k, *v, *o_ref, *l_ref, *mask;
    uint8_t *bmask;
} problem;

static void problem_make(problem *pr, const attn_desc *d, uint64_t seed)
{
    memset(pr, 0, sizeof *pr);
    pr->d = *d;
    const int64_t hk = d->num_kv_heads ? d->num_kv_heads : d->num_heads;
    const int64_t dv = d->v_head_dim ? d->v_head_dim : d->head_dim;
    pr->nq = (size_t)(d->batch * d->q_len * d->num_heads * d->head_dim);
    pr->nk = (size_t)(d->batch * d->kv_len * hk * d->head_dim);
    pr->nv = (size_t)(d->batch * d->kv_len * hk * dv);
    pr->no = (size_t)(d->batch * d->q_len * d->num_heads * dv);
    pr->nl = (size_t)(d->batch * d->num_heads * d->q_len);
    pr->nm = (size_t)(d->batch * d->num_heads * d->q_len * d->kv_len);
    pr->q = malloc(pr->nq * 4);
    pr->k = malloc(pr->nk * 4);
    pr->v = malloc(pr->nv * 4);
    pr->o_ref = malloc(pr->no * 4);
    pr->l_ref = malloc(pr->nl * 4);
    ck_assert(pr->q && pr->k && pr->v && pr->o_ref && pr->l_ref);
    tu_fill_uniform(pr->q, pr->nq, tu_seed(seed, 1, 0));
    tu_fill_uniform(pr->k, pr->nk, tu_seed(seed, 2, 0));
    tu_fill_uniform(pr->v, pr->nv, tu_seed(seed, 3, 0));
    if (d->dtype == ATTN_DTYPE_F16) {
        tu_round_to_half(pr->q, pr->nq);
        tu_round_to_half(pr->k, pr->nk);
        tu_round_to_half(pr->v, pr->nv);
    }
    attn_run_args a = ATTN_RUN_ARGS_INIT;
    attn_desc rd = *d;
    rd.dtype = ATTN_DTYPE_F32;
    rd.want_lse = 1;
    a.q = attn_tensor_host(ATTN_DTYPE_F32, d->batch, d->q_len, d->num_heads, d->head_dim, pr->q);
    a.k = attn_tensor_host(ATTN_DTYPE_F32, d->batch, d->kv_len, hk, d->head_dim, pr->k);
    a.v = attn_tensor_host(ATTN_DTYPE_F32, d->batch, d->kv_len, hk, dv, pr->v);
    a.o = attn_tensor_host(ATTN_DTYPE_F32, d->batch, d->q_len, d->num_heads, dv, pr->o_ref);
    a.lse = attn_tensor_host(ATTN_DTYPE_F32, d->batch, d->num_heads, d->q_len, 1, pr->l_ref);
    if (d->mask_kind == ATTN_MASK_ADDITIVE) {
        pr->mask = malloc(pr->nm * 4);
        tu_fill_uniform(pr->mask, pr->nm, tu_seed(seed, 4, 0));
        for (size_t i = 0; i < pr->nm; i += 7)
            pr->mask[i] = -INFINITY;
        a.mask = attn_tensor_host(ATTN_DTYPE_F32, d->batch, d->num_heads, d->q_len, d->kv_len,
                                  pr->mask);
    } else if (d->mask_kind == ATTN_MASK_BOOLEAN) {
        pr->bmask = malloc(pr->nm ? pr->nm : 1);
        tu_rng rng;
        tu_rng_seed(&rng, tu_seed(seed, 5, 0));
        for (size_t i = 0; i < pr->nm; ++i)
            pr->bmask[i] = tu_rng_below(&rng, 4) != 0;
        a.mask = attn_tensor_host(ATTN_DTYPE_U8, d->batch, d->num_heads, d->q_len, d->kv_len,
                                  pr->bmask);
    }
    char msg[512];
    attn_status st = tu_reference_run(&rd, &a, msg, sizeof msg);
    ck_assert_msg(st == ATTN_OK, "%s", msg);
}

static void problem_free(problem *pr)
{
    free(pr->q);
    free(pr->k);
    free(pr->v);
    free(pr->o_ref);
    free(pr->l_ref);
    free(pr->mask);
    free(pr->bmask);
}

/* f32 -> storage bytes of `dtype` (malloc'ed). */
static void *to_storage(const float *x, size_t n, attn_dtype dtype)
{
    if (dtype == ATTN_DTYPE_F32) {
        float *c = malloc(n * 4 + 4);
        memcpy(c, x, n * 4);
        return c;
    }
    uint16_t *h = malloc(n * 2 + 2);
    for (size_t i = 0; i < n; ++i)
        h[i] = tu_float_to_half(x[i]);
    return h;
}

static void from_storage(float *dst, const void *src, size_t n, attn_dtype dtype)
{
    if (dtype == ATTN_DTYPE_F32) {
        memcpy(dst, src, n * 4);
        return;
    }
    for (size_t i = 0; i < n; ++i)
        dst[i] = tu_half_to_float(((const uint16_t *)src)[i]);
}

static void expect_close(const float *got, const float *ref, size_t n, attn_dtype dtype,
                         const char *what)
{
    tu_compare_result r;
    if (!tu_compare(got, ref, n, tu_tolerance(dtype), &r)) {
        char buf[512];
        tu_compare_describe(&r, buf, sizeof buf);
        ck_abort_msg("%s: %s", what, buf);
    }
}

/* Runs pr on ctx with host tensors; checks O and lse. */
static void run_host(attn_context *ctx, const problem *pr, const char *what)
{
    const attn_desc *d = &pr->d;
    const int64_t hk = d->num_kv_heads ? d->num_kv_heads : d->num_heads;
    const int64_t dv = d->v_head_dim ? d->v_head_dim : d->head_dim;
    attn_plan *plan = NULL;
    attn_status st = attn_plan_create(ctx, d, &plan);
    ck_assert_msg(st == ATTN_OK, "%s: plan: %s: %s", what, attn_status_name(st), attn_last_detail());
    void *q = to_storage(pr->q, pr->nq, d->dtype), *k = to_storage(pr->k, pr->nk, d->dtype);
    void *v = to_storage(pr->v, pr->nv, d->dtype), *o = calloc(pr->no + 1, 4);
    float *of = malloc(pr->no * 4 + 4), *l = malloc(pr->nl * 4 + 4);
    attn_run_args a = ATTN_RUN_ARGS_INIT;
    a.q = attn_tensor_host(d->dtype, d->batch, d->q_len, d->num_heads, d->head_dim, q);
    a.k = attn_tensor_host(d->dtype, d->batch, d->kv_len, hk, d->head_dim, k);
    a.v = attn_tensor_host(d->dtype, d->batch, d->kv_len, hk, dv, v);
    a.o = attn_tensor_host(d->dtype, d->batch, d->q_len, d->num_heads, dv, o);
    if (d->want_lse)
        a.lse = attn_tensor_host(ATTN_DTYPE_F32, d->batch, d->num_heads, d->q_len, 1, l);
    if (d->mask_kind == ATTN_MASK_ADDITIVE)
        a.mask = attn_tensor_host(ATTN_DTYPE_F32, d->batch, d->num_heads, d->q_len, d->kv_len,
                                  pr->mask);
    else if (d->mask_kind == ATTN_MASK_BOOLEAN)
        a.mask = attn_tensor_host(ATTN_DTYPE_U8, d->batch, d->num_heads, d->q_len, d->kv_len,
                                  pr->bmask);
    st = attn_plan_run(plan, &a);
    ck_assert_msg(st == ATTN_OK, "%s: run: %s: %s", what, attn_status_name(st), attn_last_detail());
    from_storage(of, o, pr->no, d->dtype);
    expect_close(of, pr->o_ref, pr->no, d->dtype, what);
    if (d->want_lse)
        expect_close(l, pr->l_ref, pr->nl, ATTN_DTYPE_F32, what);
    attn_plan_destroy(plan);
    free(q);
    free(k);
    free(v);
    free(o);
    free(of);
    free(l);
}

/* ---- a K tensor larger than one binding ---------------------------------------------- */

/* K and V of 1200 kv heads x 480 keys x 64 floats: 141 MiB each, above llvmpipe's 128 MiB
 * maxStorageBufferRange, in library buffers; 4 query rows keep the reference cheap. The
 * CPU family's packed K^T scratch is as large, so both families bind in windows. (Many
 * heads rather than many keys: llvmpipe ends any invocation's loops after 65535 dynamic
 * iterations in all, see the quirk in src/core/quirks.c, which long key ranges per
 * invocation would hit until the planner chunks keys for it.) */
START_TEST(test_large_k)
{
    attn_kernel_family fam = _i ? ATTN_FAMILY_GPU : ATTN_FAMILY_CPU;
    attn_desc d = ATTN_DESC_INIT;
    d.batch = 1;
    d.num_heads = 1200;
    d.num_kv_heads = 1200;
    d.q_len = 4;
    d.kv_len = 480;
    d.head_dim = 64;
    d.want_lse = 1;
    d.causal = _i; /* the GPU pass also checks causal alignment over the windows */
    problem pr;
    problem_make(&pr, &d, 42);
    const uint64_t kbytes = pr.nk * 4;
    attn_device_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    ck_assert_int_eq(attn_device_get_info(ATTN_BACKEND_VULKAN, 0, &info), ATTN_OK);
    printf("vulkan: large K: %llu bytes; device binds %llu per kernel argument\n",
           (unsigned long long)kbytes, (unsigned long long)info.max_binding_bytes);
    ck_assert_uint_gt(kbytes, 128ull << 20);

    attn_context *ctx = vk_context(fam, 0);
    attn_buffer *kb = NULL, *vb = NULL;
    ck_assert_int_eq(attn_buffer_create(ctx, kbytes, &kb), ATTN_OK);
    ck_assert_int_eq(attn_buffer_create(ctx, kbytes, &vb), ATTN_OK);
    ck_assert_int_eq(attn_buffer_upload(kb, 0, pr.k, kbytes), ATTN_OK);
    ck_assert_int_eq(attn_buffer_upload(vb, 0, pr.v, kbytes), ATTN_OK);
    attn_plan *plan = NULL;
    ck_assert_int_eq(attn_plan_create(ctx, &d, &plan), ATTN_OK);
    float *o = calloc(pr.no, 4), *l = calloc(pr.nl, 4);
    attn_run_args a = ATTN_RUN_ARGS_INIT;
    a.q = attn_tensor_host(ATTN_DTYPE_F32, 1, d.q_len, d.num_heads, 64, pr.q);
    a.k = attn_tensor_buffer(ATTN_DTYPE_F32, 1, d.kv_len, d.num_kv_heads, 64, kb, 0);
    a.v = attn_tensor_buffer(ATTN_DTYPE_F32, 1, d.kv_len, d.num_kv_heads, 64, vb, 0);
    a.o = attn_tensor_host(ATTN_DTYPE_F32, 1, d.q_len, d.num_heads, 64, o);
    a.lse = attn_tensor_host(ATTN_DTYPE_F32, 1, d.num_heads, d.q_len, 1, l);
    double t0 = tu_now();
    attn_status st = attn_plan_run(plan, &a);
    ck_assert_msg(st == ATTN_OK, "run: %s: %s", attn_status_name(st), attn_last_detail());
    printf("vulkan: large K, family %s: %.2f s\n", tu_family_name(fam), tu_now() - t0);
    expect_close(o, pr.o_ref, pr.no, ATTN_DTYPE_F32, "large K: O");
    expect_close(l, pr.l_ref, pr.nl, ATTN_DTYPE_F32, "large K: lse");
    attn_plan_destroy(plan);
    attn_buffer_destroy(kb);
    attn_buffer_destroy(vb);
    ck_assert_uint_eq(device_bytes(ctx), 0);
    attn_context_destroy(ctx);
    free(o);
    free(l);
    problem_free(&pr);
}
END_TEST

/* ---- f16 storage: native and packed; kernels without subgroups --------------------------- */

/* f16 problems with odd head dims on both families; the output lives in a buffer with a
 * gap of 3 halves after every row, pre-filled with a sentinel, so a packed half-word store
 * that touched its neighbour would show. */
static void f16_cases(const char *mode)
{
    for (int f = 0; f < 2; ++f) {
        attn_context *ctx = vk_context(f ? ATTN_FAMILY_GPU : ATTN_FAMILY_CPU, 0);
        const int64_t dims[][2] = {{7, 7}, {32, 5}, {64, 64}, {80, 33}};
        for (size_t c = 0; c < sizeof dims / sizeof dims[0]; ++c) {
            attn_desc d = ATTN_DESC_INIT;
            d.batch = 2;
            d.num_heads = 4;
            d.num_kv_heads = 2;
            d.q_len = 19 + (int64_t)c;
            d.kv_len = 41;
            d.head_dim = dims[c][0];
            d.v_head_dim = dims[c][1];
            d.dtype = ATTN_DTYPE_F16;
            d.causal = (int)(c & 1);
            d.want_lse = 1;
            d.mask_kind = c == 2 ? ATTN_MASK_BOOLEAN : c == 3 ? ATTN_MASK_ADDITIVE : ATTN_MASK_NONE;
            problem pr;
            problem_make(&pr, &d, 100 + c);
            char what[160];
            snprintf(what, sizeof what, "%s f16 family %s d=%lld/%lld (host)", mode,
                     f ? "gpu" : "cpu", (long long)d.head_dim, (long long)d.v_head_dim);
            run_host(ctx, &pr, what);

            /* Output in a library buffer, rows strided with a sentinel-filled gap. */
            const int64_t dv = d.v_head_dim, row = dv + 3;
            const size_t rows = (size_t)(d.batch * d.q_len * d.num_heads);
            const size_t nbuf = rows * (size_t)row;
            uint16_t *obuf = malloc(nbuf * 2);
            for (size_t i = 0; i < nbuf; ++i)
                obuf[i] = 0x7bff; /* 65504 */
            attn_buffer *ob = NULL;
            ck_assert_int_eq(attn_buffer_create(ctx, nbuf * 2, &ob), ATTN_OK);
            ck_assert_int_eq(attn_buffer_upload(ob, 0, obuf, nbuf * 2), ATTN_OK);
            void *q = to_storage(pr.q, pr.nq, d.dtype), *k = to_storage(pr.k, pr.nk, d.dtype);
            void *v = to_storage(pr.v, pr.nv, d.dtype);
            float *l = malloc(pr.nl * 4);
            attn_plan *plan = NULL;
            ck_assert_int_eq(attn_plan_create(ctx, &d, &plan), ATTN_OK);
            attn_run_args a = ATTN_RUN_ARGS_INIT;
            a.q = attn_tensor_host(d.dtype, d.batch, d.q_len, d.num_heads, d.head_dim, q);
            a.k = attn_tensor_host(d.dtype, d.batch, d.kv_len, 2, d.head_dim, k);
            a.v = attn_tensor_host(d.dtype, d.batch, d.kv_len, 2, dv, v);
            a.o = attn_tensor_buffer(d.dtype, d.batch, d.q_len, d.num_heads, dv, ob, 0);
            a.o.stride[3] = 1;
            a.o.stride[2] = row;
            a.o.stride[1] = row * d.num_heads;
            a.o.stride[0] = row * d.num_heads * d.q_len;
            a.lse = attn_tensor_host(ATTN_DTYPE_F32, d.batch, d.num_heads, d.q_len, 1, l);
            if (pr.mask)
                a.mask = attn_tensor_host(ATTN_DTYPE_F32, d.batch, 4, d.q_len, d.kv_len, pr.mask);
            if (pr.bmask)
                a.mask = attn_tensor_host(ATTN_DTYPE_U8, d.batch, 4, d.q_len, d.kv_len, pr.bmask);
            attn_status st = attn_plan_run(plan, &a);
            ck_assert_msg(st == ATTN_OK, "%s: %s", what, attn_last_detail());
            ck_assert_int_eq(attn_buffer_download(ob, 0, obuf, nbuf * 2), ATTN_OK);
            float *got = malloc(pr.no * 4);
            for (size_t r = 0; r < rows; ++r) {
                for (int64_t e = 0; e < dv; ++e)
                    got[r * (size_t)dv + (size_t)e] = tu_half_to_float(obuf[r * (size_t)row + (size_t)e]);
                for (int64_t e = dv; e < row; ++e)
                    ck_assert_msg(obuf[r * (size_t)row + (size_t)e] == 0x7bff,
                                  "%s: gap half %lld of row %zu overwritten (0x%04x)", what,
                                  (long long)e, r, obuf[r * (size_t)row + (size_t)e]);
            }
            snprintf(what + strlen(what) - 6, 12, "(buffer)");
            expect_close(got, pr.o_ref, pr.no, d.dtype, what);
            attn_plan_destroy(plan);
            attn_buffer_destroy(ob);
            free(obuf);
            free(got);
            free(q);
            free(k);
            free(v);
            free(l);
            problem_free(&pr);
        }
        attn_context_destroy(ctx);
    }
}

START_TEST(test_f16_native)
{
    unsetenv("ATTN_VK_NO_16BIT_STORAGE");
    unsetenv("ATTN_VK_NO_SUBGROUP");
    f16_cases("16-bit storage");
}
END_TEST

/* The packed path (no 16-bit storage) and the GPU kernel's path without subgroups, forced
 * through the backend's test switches. */
START_TEST(test_f16_packed_no_subgroups)
{
    setenv("ATTN_VK_NO_16BIT_STORAGE", "1", 1);
    setenv("ATTN_VK_NO_SUBGROUP", "1", 1);
    f16_cases("packed");
    unsetenv("ATTN_VK_NO_16BIT_STORAGE");
    unsetenv("ATTN_VK_NO_SUBGROUP");
}
END_TEST

/* ---- the scheduler on Vulkan: chunks merged by attn_merge.comp ------------------------- */

START_TEST(test_scheduled)
{
    for (int f = 0; f < 2; ++f)
        for (int dt = 0; dt < 2; ++dt) {
            attn_context *ctx = vk_context(f ? ATTN_FAMILY_GPU : ATTN_FAMILY_CPU, 192 << 10);
            attn_desc d = ATTN_DESC_INIT;
            d.batch = 2;
            d.num_heads = 4;
            d.num_kv_heads = 2;
            d.q_len = 150;
            d.kv_len = 700;
            d.head_dim = 32;
            d.dtype = dt ? ATTN_DTYPE_F16 : ATTN_DTYPE_F32;
            d.causal = 1;
            d.want_lse = 1;
            problem pr;
            problem_make(&pr, &d, 7 + (uint64_t)f);
            attn_plan *plan = NULL;
            ck_assert_int_eq(attn_plan_create(ctx, &d, &plan), ATTN_OK);
            attn_plan_info info;
            memset(&info, 0, sizeof info);
            info.struct_size = sizeof info;
            attn_plan_get_info(plan, &info);
            ck_assert_msg(info.scheduled, "192 KiB budget: expected a scheduled plan");
            attn_plan_destroy(plan);
            char what[96];
            snprintf(what, sizeof what, "scheduled %s family %s", dt ? "f16" : "f32",
                     f ? "gpu" : "cpu");
            run_host(ctx, &pr, what);
            ck_assert_uint_eq(device_bytes(ctx), 0);
            attn_context_destroy(ctx);
            problem_free(&pr);
        }
}
END_TEST

/* ---- the CPU family's K/V packing: words where the layout allows ------------------------ */

enum { PK_B = 2, PK_H = 4, PK_HK = 2, PK_S = 120, PK_SK = 77, PK_D = 64 };

/* A library buffer holding x ([PK_B][PK_SK][PK_HK][PK_D] floats) in storage dt from
 * element `off` on, with element stride `step` and `pad` elements after each key's row. */
static attn_buffer *pack_kv_buffer(attn_context *ctx, const float *x, attn_dtype dt,
                                   int64_t off, int64_t pad, int64_t step, int64_t st[4])
{
    const size_t es = dt == ATTN_DTYPE_F16 ? 2 : 4;
    st[3] = step, st[2] = PK_D * step, st[1] = PK_HK * PK_D * step + pad, st[0] = PK_SK * st[1];
    const size_t n = (size_t)(off + PK_B * st[0]);
    char *host = calloc(n, es);
    for (int64_t b = 0; b < PK_B; ++b)
        for (int64_t j = 0; j < PK_SK; ++j)
            for (int64_t h = 0; h < PK_HK; ++h)
                for (int64_t e = 0; e < PK_D; ++e) {
                    const size_t at = (size_t)(off + b * st[0] + j * st[1] + h * st[2] + e * st[3]);
                    const float v = x[((b * PK_SK + j) * PK_HK + h) * PK_D + e];
                    if (dt == ATTN_DTYPE_F16)
                        ((uint16_t *)host)[at] = tu_float_to_half(v);
                    else
                        ((float *)host)[at] = v;
                }
    attn_buffer *buf = NULL;
    ck_assert_int_eq(attn_buffer_create(ctx, n * es, &buf), ATTN_OK);
    ck_assert_int_eq(attn_buffer_upload(buf, 0, host, n * es), ATTN_OK);
    free(host);
    return buf;
}

/* attn_pack_kv.comp loads K/V in the widest words their layout allows (KV_VEC): K and V in
 * library buffers at element offsets and row pads that fit the widest words (8 floats, 16
 * halves), only vec4 words, or none (an odd offset; V with element stride 2), in f32 and
 * f16 (native and packed f16 storage), in one pass and scheduled (the chunks' offsets),
 * each against the reference. In f32 the layouts whose offsets and strides are whole
 * 8-float words (the first three) skip the packing: attn_fwd_cpu.comp reads K/V where
 * they are (attn__plan_kv_direct); the others are packed. */
START_TEST(test_pack_layouts)
{
    static const struct {
        int64_t off, pad, vstep;
    } lay[] = {{0, 0, 1}, {16, 16, 1}, {8, 0, 1}, {4, 8, 1}, {1, 3, 1}, {0, 0, 2}};
    for (int c = 0; c < 6; ++c) { /* f32, f16, f16 packed; one pass, then scheduled */
        const int f16 = c % 3 != 0, packed = c % 3 == 2, sched = c >= 3;
        if (packed)
            setenv("ATTN_VK_NO_16BIT_STORAGE", "1", 1);
        const attn_dtype dt = f16 ? ATTN_DTYPE_F16 : ATTN_DTYPE_F32;
        attn_context *ctx = vk_context(ATTN_FAMILY_CPU, sched ? 448 << 10 : 0);
        attn_desc d = ATTN_DESC_INIT;
        d.batch = PK_B, d.num_heads = PK_H, d.num_kv_heads = PK_HK, d.q_len = PK_S;
        d.kv_len = PK_SK, d.head_dim = PK_D, d.dtype = dt, d.causal = 1, d.want_lse = 1;
        problem pr;
        problem_make(&pr, &d, 300 + (uint64_t)f16);
        attn_plan *plan = NULL;
        ck_assert_msg(attn_plan_create(ctx, &d, &plan) == ATTN_OK, "%s", attn_last_detail());
        attn_plan_info info;
        memset(&info, 0, sizeof info);
        info.struct_size = sizeof info;
        attn_plan_get_info(plan, &info);
        ck_assert_str_eq(info.kernel, "attn_fwd_cpu.comp");
        ck_assert_msg(info.scheduled == sched, "scheduled %d, expected %d (%llu bytes)",
                      info.scheduled, sched, (unsigned long long)info.device_bytes);
        void *q = to_storage(pr.q, pr.nq, dt), *o = calloc(pr.no, 4);
        float *of = malloc(pr.no * 4), *l = malloc(pr.nl * 4);
        for (size_t li = 0; li < sizeof lay / sizeof lay[0]; ++li) {
            const size_t es = f16 ? 2 : 4;
            int64_t kst[4], vst[4];
            attn_buffer *kb = pack_kv_buffer(ctx, pr.k, dt, lay[li].off, lay[li].pad, 1, kst);
            attn_buffer *vb =
                pack_kv_buffer(ctx, pr.v, dt, lay[li].off, lay[li].pad, lay[li].vstep, vst);
            attn_run_args a = ATTN_RUN_ARGS_INIT;
            a.q = attn_tensor_host(dt, PK_B, PK_S, PK_H, PK_D, q);
            a.k = attn_tensor_buffer(dt, PK_B, PK_SK, PK_HK, PK_D, kb, (uint64_t)lay[li].off * es);
            a.v = attn_tensor_buffer(dt, PK_B, PK_SK, PK_HK, PK_D, vb, (uint64_t)lay[li].off * es);
            memcpy(a.k.stride, kst, sizeof kst);
            memcpy(a.v.stride, vst, sizeof vst);
            a.o = attn_tensor_host(dt, PK_B, PK_S, PK_H, PK_D, o);
            a.lse = attn_tensor_host(ATTN_DTYPE_F32, PK_B, PK_H, PK_S, 1, l);
            ck_assert_msg(attn_plan_run(plan, &a) == ATTN_OK, "%s", attn_last_detail());
            char what[160];
            snprintf(what, sizeof what, "pack %s%s%s: offset %lld, pad %lld, V step %lld",
                     tu_dtype_name(dt), packed ? " (packed)" : "", sched ? ", scheduled" : "",
                     (long long)lay[li].off, (long long)lay[li].pad, (long long)lay[li].vstep);
            from_storage(of, o, pr.no, dt);
            expect_close(of, pr.o_ref, pr.no, dt, what);
            expect_close(l, pr.l_ref, pr.nl, ATTN_DTYPE_F32, what);
            attn_buffer_destroy(kb);
            attn_buffer_destroy(vb);
        }
        attn_plan_destroy(plan);
        attn_context_destroy(ctx);
        unsetenv("ATTN_VK_NO_16BIT_STORAGE");
        free(q), free(o), free(of), free(l);
        problem_free(&pr);
    }
}
END_TEST

/* ---- interop ------------------------------------------------------------------------------ */

typedef struct app_vk {
    VkInstance instance;
    VkPhysicalDevice phys;
    VkDevice device;
    VkQueue queue;
    uint32_t family;
    VkPhysicalDeviceMemoryProperties mem;
    VkCommandPool pool;
} app_vk;

typedef struct app_buf {
    VkBuffer buffer;
    VkDeviceMemory memory;
    void *map;
    VkDeviceSize size;
} app_buf;

static void app_vk_create(app_vk *a)
{
    memset(a, 0, sizeof *a);
    VkApplicationInfo ai = {.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
                            .pApplicationName = "test_vulkan",
                            .apiVersion = VK_API_VERSION_1_1};
    VkInstanceCreateInfo ici = {.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
                                .pApplicationInfo = &ai};
    ck_assert_int_eq(vkCreateInstance(&ici, NULL, &a->instance), VK_SUCCESS);
    uint32_t n = 1;
    VkResult r = vkEnumeratePhysicalDevices(a->instance, &n, &a->phys);
    ck_assert(r == VK_SUCCESS || r == VK_INCOMPLETE);
    ck_assert_uint_ge(n, 1);
    uint32_t nq = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(a->phys, &nq, NULL);
    VkQueueFamilyProperties qp[16];
    nq = nq > 16 ? 16 : nq;
    vkGetPhysicalDeviceQueueFamilyProperties(a->phys, &nq, qp);
    a->family = UINT32_MAX;
    for (uint32_t i = 0; i < nq && a->family == UINT32_MAX; ++i)
        if (qp[i].queueFlags & VK_QUEUE_COMPUTE_BIT)
            a->family = i;
    ck_assert_uint_ne(a->family, UINT32_MAX);
    float prio = 1.0f;
    VkDeviceQueueCreateInfo qi = {.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
                                  .queueFamilyIndex = a->family,
                                  .queueCount = 1,
                                  .pQueuePriorities = &prio};
    VkDeviceCreateInfo dci = {.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
                              .queueCreateInfoCount = 1,
                              .pQueueCreateInfos = &qi};
    ck_assert_int_eq(vkCreateDevice(a->phys, &dci, NULL, &a->device), VK_SUCCESS);
    vkGetDeviceQueue(a->device, a->family, 0, &a->queue);
    vkGetPhysicalDeviceMemoryProperties(a->phys, &a->mem);
    VkCommandPoolCreateInfo pci = {.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                                   .queueFamilyIndex = a->family};
    ck_assert_int_eq(vkCreateCommandPool(a->device, &pci, NULL, &a->pool), VK_SUCCESS);
}

static void app_buf_create(app_vk *a, VkDeviceSize size, app_buf *b)
{
    memset(b, 0, sizeof *b);
    b->size = size;
    VkBufferCreateInfo bi = {.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
                             .size = size,
                             .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT |
                                      VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                                      VK_BUFFER_USAGE_TRANSFER_DST_BIT};
    ck_assert_int_eq(vkCreateBuffer(a->device, &bi, NULL, &b->buffer), VK_SUCCESS);
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(a->device, b->buffer, &req);
    const VkMemoryPropertyFlags want =
        VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    uint32_t type = UINT32_MAX;
    for (uint32_t i = 0; i < a->mem.memoryTypeCount && type == UINT32_MAX; ++i)
        if ((req.memoryTypeBits & (1u << i)) && (a->mem.memoryTypes[i].propertyFlags & want) == want)
            type = i;
    ck_assert_uint_ne(type, UINT32_MAX);
    VkMemoryAllocateInfo mai = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
                                .allocationSize = req.size,
                                .memoryTypeIndex = type};
    ck_assert_int_eq(vkAllocateMemory(a->device, &mai, NULL, &b->memory), VK_SUCCESS);
    ck_assert_int_eq(vkBindBufferMemory(a->device, b->buffer, b->memory, 0), VK_SUCCESS);
    ck_assert_int_eq(vkMapMemory(a->device, b->memory, 0, VK_WHOLE_SIZE, 0, &b->map), VK_SUCCESS);
}

static void app_buf_destroy(app_vk *a, app_buf *b)
{
    vkDestroyBuffer(a->device, b->buffer, NULL);
    vkFreeMemory(a->device, b->memory, NULL);
}

/* The application keeps using its device after the library is gone: a fill on its queue. */
static void app_fill(app_vk *a, app_buf *b, uint32_t value)
{
    VkCommandBufferAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                      .commandPool = a->pool,
                                      .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                      .commandBufferCount = 1};
    VkCommandBuffer cb;
    ck_assert_int_eq(vkAllocateCommandBuffers(a->device, &ai, &cb), VK_SUCCESS);
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
    vkBeginCommandBuffer(cb, &bi);
    vkCmdFillBuffer(cb, b->buffer, 0, VK_WHOLE_SIZE, value);
    VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                          .srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT,
                          .dstAccessMask = VK_ACCESS_HOST_READ_BIT};
    vkCmdPipelineBarrier(cb, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &mb,
                         0, NULL, 0, NULL);
    vkEndCommandBuffer(cb);
    VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
                       .commandBufferCount = 1,
                       .pCommandBuffers = &cb};
    ck_assert_int_eq(vkQueueSubmit(a->queue, 1, &si, VK_NULL_HANDLE), VK_SUCCESS);
    ck_assert_int_eq(vkQueueWaitIdle(a->queue), VK_SUCCESS);
    vkFreeCommandBuffers(a->device, a->pool, 1, &cb);
    ck_assert_uint_eq(((uint32_t *)b->map)[0], value);
}

/* The application's own VkInstance/VkDevice/queue and host-visible VkBuffers: attention
 * runs on them in f32 and f16 (the packed path: interop assumes no optional features), on
 * both kernel families; then the library is destroyed and the device and buffers still
 * work. */
START_TEST(test_interop_vulkan)
{
    app_vk app;
    app_vk_create(&app);
    for (int f = 0; f < 2; ++f)
        for (int dt = 0; dt < 2; ++dt) {
            attn_desc d = ATTN_DESC_INIT;
            d.batch = 2;
            d.num_heads = 4;
            d.num_kv_heads = 2;
            d.q_len = 33;
            d.kv_len = 77;
            d.head_dim = 40;
            d.dtype = dt ? ATTN_DTYPE_F16 : ATTN_DTYPE_F32;
            d.causal = 1;
            problem pr;
            problem_make(&pr, &d, 900 + (uint64_t)(2 * f + dt));
            const size_t es = dt ? 2 : 4;
            app_buf qb, kb, vb, ob;
            app_buf_create(&app, pr.nq * es, &qb);
            app_buf_create(&app, pr.nk * es, &kb);
            app_buf_create(&app, pr.nv * es, &vb);
            app_buf_create(&app, pr.no * es, &ob);
            void *q = to_storage(pr.q, pr.nq, d.dtype), *k = to_storage(pr.k, pr.nk, d.dtype);
            void *v = to_storage(pr.v, pr.nv, d.dtype);
            memcpy(qb.map, q, pr.nq * es);
            memcpy(kb.map, k, pr.nk * es);
            memcpy(vb.map, v, pr.nv * es);
            memset(ob.map, 0, pr.no * es);

            attn_context_params p = ATTN_CONTEXT_PARAMS_INIT;
            p.kernel_family = f ? ATTN_FAMILY_GPU : ATTN_FAMILY_CPU;
            p.log_fn = tlog;
            attn_context *ctx = NULL;
            attn_status st = attn_context_create_vulkan(&p, app.instance, app.phys, app.device,
                                                        app.queue, app.family, &ctx);
            ck_assert_msg(st == ATTN_OK, "attn_context_create_vulkan: %s", attn_last_detail());
            attn_buffer *aq, *ak, *av, *ao;
            ck_assert_int_eq(attn_buffer_wrap_vulkan(ctx, qb.buffer, qb.size, &aq), ATTN_OK);
            ck_assert_int_eq(attn_buffer_wrap_vulkan(ctx, kb.buffer, kb.size, &ak), ATTN_OK);
            ck_assert_int_eq(attn_buffer_wrap_vulkan(ctx, vb.buffer, vb.size, &av), ATTN_OK);
            ck_assert_int_eq(attn_buffer_wrap_vulkan(ctx, ob.buffer, ob.size, &ao), ATTN_OK);
            ck_assert_uint_eq(device_bytes(ctx), 0); /* not the library's memory */
            attn_plan *plan = NULL;
            ck_assert_int_eq(attn_plan_create(ctx, &d, &plan), ATTN_OK);
            attn_run_args a = ATTN_RUN_ARGS_INIT;
            a.q = attn_tensor_buffer(d.dtype, 2, d.q_len, 4, 40, aq, 0);
            a.k = attn_tensor_buffer(d.dtype, 2, d.kv_len, 2, 40, ak, 0);
            a.v = attn_tensor_buffer(d.dtype, 2, d.kv_len, 2, 40, av, 0);
            a.o = attn_tensor_buffer(d.dtype, 2, d.q_len, 4, 40, ao, 0);
            st = attn_plan_run(plan, &a);
            ck_assert_msg(st == ATTN_OK, "interop run: %s", attn_last_detail());
            /* Read through the library (staging copy) and through the app's mapping. */
            void *o = malloc(pr.no * es);
            float *of = malloc(pr.no * 4);
            ck_assert_int_eq(attn_buffer_download(ao, 0, o, pr.no * es), ATTN_OK);
            from_storage(of, o, pr.no, d.dtype);
            expect_close(of, pr.o_ref, pr.no, d.dtype, "vulkan interop (download)");
            from_storage(of, ob.map, pr.no, d.dtype);
            expect_close(of, pr.o_ref, pr.no, d.dtype, "vulkan interop (app mapping)");
            attn_plan_destroy(plan);
            attn_buffer_destroy(aq);
            attn_context_destroy(ctx); /* ak, av, ao go with it */

            app_fill(&app, &ob, 0x3f800000u); /* device, queue and buffer are still the app's */
            app_buf_destroy(&app, &qb);
            app_buf_destroy(&app, &kb);
            app_buf_destroy(&app, &vb);
            app_buf_destroy(&app, &ob);
            free(q);
            free(k);
            free(v);
            free(o);
            free(of);
            problem_free(&pr);
        }
    vkDestroyCommandPool(app.device, app.pool, NULL);
    vkDestroyDevice(app.device, NULL);
    vkDestroyInstance(app.instance, NULL);
}
END_TEST

/* The same with the application's own cl_context, queue and cl_mem buffers. */
START_TEST(test_interop_opencl)
{
#ifdef ATTN_HAVE_OPENCL
    cl_platform_id plat;
    cl_uint np = 0;
    cl_device_id dev;
    cl_uint nd = 0;
    if (clGetPlatformIDs(1, &plat, &np) != CL_SUCCESS || !np ||
        clGetDeviceIDs(plat, CL_DEVICE_TYPE_ALL, 1, &dev, &nd) != CL_SUCCESS || !nd) {
        printf("vulkan: OpenCL interop: no OpenCL device; that half is skipped\n");
        return;
    }
    cl_int err;
    cl_context clctx = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    cl_command_queue queue = clCreateCommandQueue(clctx, dev, 0, &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    attn_desc d = ATTN_DESC_INIT;
    d.batch = 1;
    d.num_heads = 4;
    d.num_kv_heads = 1;
    d.q_len = 21;
    d.kv_len = 50;
    d.head_dim = 32;
    d.want_lse = 1;
    problem pr;
    problem_make(&pr, &d, 77);
    cl_mem mq = clCreateBuffer(clctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, pr.nq * 4, pr.q, &err);
    cl_mem mk = clCreateBuffer(clctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, pr.nk * 4, pr.k, &err);
    cl_mem mv = clCreateBuffer(clctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, pr.nv * 4, pr.v, &err);
    cl_mem mo = clCreateBuffer(clctx, CL_MEM_READ_WRITE, pr.no * 4, NULL, &err);
    ck_assert(mq && mk && mv && mo);
    attn_context *ctx = NULL;
    attn_status st = attn_context_create_opencl(NULL, clctx, dev, queue, &ctx);
    ck_assert_msg(st == ATTN_OK, "attn_context_create_opencl: %s", attn_last_detail());
    attn_buffer *aq, *ak, *av, *ao;
    ck_assert_int_eq(attn_buffer_wrap_opencl(ctx, mq, &aq), ATTN_OK);
    ck_assert_int_eq(attn_buffer_wrap_opencl(ctx, mk, &ak), ATTN_OK);
    ck_assert_int_eq(attn_buffer_wrap_opencl(ctx, mv, &av), ATTN_OK);
    ck_assert_int_eq(attn_buffer_wrap_opencl(ctx, mo, &ao), ATTN_OK);
    attn_plan *plan = NULL;
    ck_assert_int_eq(attn_plan_create(ctx, &d, &plan), ATTN_OK);
    float *l = malloc(pr.nl * 4), *o = malloc(pr.no * 4);
    attn_run_args a = ATTN_RUN_ARGS_INIT;
    a.q = attn_tensor_buffer(ATTN_DTYPE_F32, 1, d.q_len, 4, 32, aq, 0);
    a.k = attn_tensor_buffer(ATTN_DTYPE_F32, 1, d.kv_len, 1, 32, ak, 0);
    a.v = attn_tensor_buffer(ATTN_DTYPE_F32, 1, d.kv_len, 1, 32, av, 0);
    a.o = attn_tensor_buffer(ATTN_DTYPE_F32, 1, d.q_len, 4, 32, ao, 0);
    a.lse = attn_tensor_host(ATTN_DTYPE_F32, 1, 4, d.q_len, 1, l);
    st = attn_plan_run(plan, &a);
    ck_assert_msg(st == ATTN_OK, "opencl interop run: %s", attn_last_detail());
    attn_plan_destroy(plan);
    attn_context_destroy(ctx);
    /* The application's queue and buffer outlive the library's context. */
    ck_assert_int_eq(clEnqueueReadBuffer(queue, mo, CL_TRUE, 0, pr.no * 4, o, 0, NULL, NULL),
                     CL_SUCCESS);
    expect_close(o, pr.o_ref, pr.no, ATTN_DTYPE_F32, "opencl interop");
    expect_close(l, pr.l_ref, pr.nl, ATTN_DTYPE_F32, "opencl interop lse");
    clReleaseMemObject(mq);
    clReleaseMemObject(mk);
    clReleaseMemObject(mv);
    clReleaseMemObject(mo);
    clReleaseCommandQueue(queue);
    clReleaseContext(clctx);
    free(l);
    free(o);
    problem_free(&pr);
#else
    printf("vulkan: OpenCL interop: built without OpenCL; skipped\n");
#endif
}
END_TEST

/* ---- 500 plans ------------------------------------------------------------------------------ */

/* 500 plans of varied shapes (dtype, head dims, GQA, masks, lengths, lse, buffers or host
 * tensors) alternately on a CPU-family and a GPU-family context: create, run, check,
 * destroy; device memory returns to its start after every plan and after everything. */
START_TEST(test_500_plans)
{
    attn_context *ctx[2] = {vk_context(ATTN_FAMILY_CPU, 0), vk_context(ATTN_FAMILY_GPU, 0)};
    const uint64_t start[2] = {device_bytes(ctx[0]), device_bytes(ctx[1])};
    /* Shapes vary freely; the compiled variants (head dims x dtype x mask x family) are kept
     * to a few dozen so the test stays quick on llvmpipe. */
    static const int64_t dims[] = {7, 32, 64};
    tu_rng rng;
    tu_rng_seed(&rng, 500);
    double t0 = tu_now();
    for (int it = 0; it < 500; ++it) {
        attn_context *c = ctx[it & 1];
        attn_desc d = ATTN_DESC_INIT;
        d.batch = 1 + tu_rng_below(&rng, 2);
        d.num_kv_heads = 1 + tu_rng_below(&rng, 2);
        d.num_heads = d.num_kv_heads * (1 + tu_rng_below(&rng, 3));
        d.q_len = 1 + tu_rng_below(&rng, 40);
        d.kv_len = 1 + tu_rng_below(&rng, 90);
        d.head_dim = dims[tu_rng_below(&rng, 3)];
        d.v_head_dim = tu_rng_below(&rng, 8) ? 0 : 32;
        d.dtype = tu_rng_below(&rng, 3) ? ATTN_DTYPE_F32 : ATTN_DTYPE_F16;
        d.causal = tu_rng_below(&rng, 2);
        d.want_lse = tu_rng_below(&rng, 2);
        d.mask_kind = (attn_mask_kind)tu_rng_below(&rng, 3);
        problem pr;
        problem_make(&pr, &d, 5000 + (uint64_t)it);
        const int64_t hk = d.num_kv_heads, dv = d.v_head_dim ? d.v_head_dim : d.head_dim;
        const size_t es = d.dtype == ATTN_DTYPE_F16 ? 2 : 4;
        attn_plan *plan = NULL;
        attn_status st = attn_plan_create(c, &d, &plan);
        ck_assert_msg(st == ATTN_OK, "plan %d: %s", it, attn_last_detail());
        void *q = to_storage(pr.q, pr.nq, d.dtype), *k = to_storage(pr.k, pr.nk, d.dtype);
        void *v = to_storage(pr.v, pr.nv, d.dtype), *o = calloc(pr.no + 1, es);
        float *of = malloc(pr.no * 4 + 4), *l = malloc(pr.nl * 4 + 4);
        attn_buffer *kb = NULL;
        attn_run_args a = ATTN_RUN_ARGS_INIT;
        a.q = attn_tensor_host(d.dtype, d.batch, d.q_len, d.num_heads, d.head_dim, q);
        if (it % 3 == 0) { /* K in a library buffer at an offset */
            ck_assert_int_eq(attn_buffer_create(c, pr.nk * es + 64, &kb), ATTN_OK);
            ck_assert_int_eq(attn_buffer_upload(kb, 64, k, pr.nk * es), ATTN_OK);
            a.k = attn_tensor_buffer(d.dtype, d.batch, d.kv_len, hk, d.head_dim, kb, 64);
        } else {
            a.k = attn_tensor_host(d.dtype, d.batch, d.kv_len, hk, d.head_dim, k);
        }
        a.v = attn_tensor_host(d.dtype, d.batch, d.kv_len, hk, dv, v);
        a.o = attn_tensor_host(d.dtype, d.batch, d.q_len, d.num_heads, dv, o);
        if (d.want_lse)
            a.lse = attn_tensor_host(ATTN_DTYPE_F32, d.batch, d.num_heads, d.q_len, 1, l);
        if (pr.mask)
            a.mask = attn_tensor_host(ATTN_DTYPE_F32, d.batch, d.num_heads, d.q_len, d.kv_len, pr.mask);
        if (pr.bmask)
            a.mask = attn_tensor_host(ATTN_DTYPE_U8, d.batch, d.num_heads, d.q_len, d.kv_len, pr.bmask);
        st = attn_plan_run(plan, &a);
        ck_assert_msg(st == ATTN_OK, "run %d: %s", it, attn_last_detail());
        char what[200];
        snprintf(what, sizeof what,
                 "plan %d (%s, %s, b%lld h%lld/%lld q%lld kv%lld d%lld/%lld causal %d mask %d)",
                 it, it & 1 ? "gpu" : "cpu", tu_dtype_name(d.dtype), (long long)d.batch,
                 (long long)d.num_heads, (long long)hk, (long long)d.q_len, (long long)d.kv_len,
                 (long long)d.head_dim, (long long)dv, d.causal, (int)d.mask_kind);
        from_storage(of, o, pr.no, d.dtype);
        expect_close(of, pr.o_ref, pr.no, d.dtype, what);
        if (d.want_lse)
            expect_close(l, pr.l_ref, pr.nl, ATTN_DTYPE_F32, what);
        attn_plan_destroy(plan);
        attn_buffer_destroy(kb);
        ck_assert_msg(device_bytes(c) == start[it & 1],
                      "%s: %llu device bytes after destroy, %llu at start", what,
                      (unsigned long long)device_bytes(c), (unsigned long long)start[it & 1]);
        free(q);
        free(k);
        free(v);
        free(o);
        free(of);
        free(l);
        problem_free(&pr);
    }
    printf("vulkan: 500 plans in %.1f s\n", tu_now() - t0);
    for (int i = 0; i < 2; ++i) {
        attn_stats s;
        memset(&s, 0, sizeof s);
        s.struct_size = sizeof s;
        attn_context_get_stats(ctx[i], &s);
        printf("vulkan: %s family: %llu kernels compiled, %llu cache hits, peak %llu bytes\n",
               i ? "gpu" : "cpu", (unsigned long long)s.kernels_compiled,
               (unsigned long long)s.compile_cache_hits, (unsigned long long)s.peak_device_bytes);
        ck_assert_uint_eq(s.device_bytes, start[i]);
        attn_context_destroy(ctx[i]);
    }
}
END_TEST

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    uint32_t n = 0;
    if (attn_device_count(ATTN_BACKEND_VULKAN, &n) != ATTN_OK || n == 0) {
        printf("vulkan: no Vulkan device (no loader, driver or Vulkan 1.1 device); skipping\n");
        return 77;
    }
    attn_device_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    attn_device_get_info(ATTN_BACKEND_VULKAN, 0, &info);
    printf("vulkan: device 0: %s [%s, %s]\n", info.name, info.api_version, info.driver_version);

    Suite *s = suite_create("vulkan");
    /* One test case each, so that CK_RUN_CASE=<name> runs one alone. */
    struct {
        const char *name;
        const TTest *test;
        int loops;
    } cases[] = {
        {"large_k", test_large_k, 1}, /* CPU family; the GPU-class pass (loop index 1) works
                                        too but takes ~2.5 min on llvmpipe */
        {"f16_native", test_f16_native, 1},
        {"f16_packed", test_f16_packed_no_subgroups, 1},
        {"scheduled", test_scheduled, 1},
        {"pack_layouts", test_pack_layouts, 1},
        {"interop_vulkan", test_interop_vulkan, 1},
        {"interop_opencl", test_interop_opencl, 1},
        {"plans500", test_500_plans, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_set_timeout(tc, 600);
        tcase_add_loop_test(tc, cases[i].test, 0, cases[i].loops);
        suite_add_tcase(s, tc);
    }
    SRunner *sr = srunner_create(s);
    /* Device contexts do not survive fork(): run in this process. */
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    tu_release();
    return failed ? 1 : 0;
}

#else /* !ATTN_HAVE_VULKAN */
int main(void)
{
    printf("vulkan: libattn was built without the Vulkan backend; skipping\n");
    return 77;
}
#endif
