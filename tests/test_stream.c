/* test_stream.c — streams with recurrent memory against oracles written here in double
 * precision from the definitions (not from the library): segment recurrence
 * (Transformer-XL), compressive memory (Infini-attention), memory tokens (RMT). Each runs
 * on the reference backend and on every OpenCL and Vulkan device, f32 and f16, GQA, varied
 * segment lengths. */
#include <attn/attn.h>
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

enum { B = 2, H = 4, HK = 2, D = 12, DV = 10, TOTAL = 96, MEM_TOKENS = 5 };
static const int64_t seg_lens[] = {17, 1, 32, 9, 37}; /* sums to TOTAL */

/* Whole-sequence inputs, rounded to f16 when the stream stores f16 so both see the same. */
static float q[B][TOTAL][H][D], k[B][TOTAL][HK][D], v[B][TOTAL][HK][DV];
static float got[B][TOTAL][H][DV], want[B][TOTAL][H][DV];

static void make_inputs(int f16)
{
    tu_fill_uniform(&q[0][0][0][0], sizeof q / 4, 31);
    tu_fill_uniform(&k[0][0][0][0], sizeof k / 4, 32);
    tu_fill_uniform(&v[0][0][0][0], sizeof v / 4, 33);
    if (f16) {
        tu_round_to_half(&q[0][0][0][0], sizeof q / 4);
        tu_round_to_half(&k[0][0][0][0], sizeof k / 4);
        tu_round_to_half(&v[0][0][0][0], sizeof v / 4);
    }
}

/* softmax attention of query row (b, t, h) over keys `keys[0..n)` (sequence positions). */
static void attend(const float (*qs)[H][D], const float (*ks)[HK][D], const float (*vs)[HK][DV],
                   int b_unused, int t, int h, const int *keys, int n, double *out)
{
    (void)b_unused;
    const int hk = h / (H / HK);
    double m = -INFINITY, l = 0, acc[DV] = {0};
    for (int e = 0; e < n; ++e) {
        const int j = keys[e];
        double s = 0;
        for (int d = 0; d < D; ++d)
            s += (double)qs[t][h][d] * ks[j][hk][d];
        s /= sqrt((double)D);
        const double mn = s > m ? s : m, a = exp(m - mn), p = exp(s - mn);
        l = l * a + p;
        for (int c = 0; c < DV; ++c)
            acc[c] = acc[c] * a + p * vs[j][hk][c];
        m = mn;
    }
    for (int c = 0; c < DV; ++c)
        out[c] = n ? acc[c] / l : 0.0;
}

/* Tensors for a segment [t0, t0+S) of the whole-sequence arrays, f32 or f16 copies. */
typedef struct seg_bufs {
    void *q, *k, *v, *o;
} seg_bufs;

static void *copy_rows(const float *src, int64_t row_elems, int64_t rows_total, int64_t t0,
                       int64_t S, int f16)
{
    size_t n = (size_t)(B * S * row_elems);
    void *dst = malloc(n * (f16 ? 2 : 4));
    for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < S; ++t)
            for (int64_t e = 0; e < row_elems; ++e) {
                float x = src[(b * rows_total + t0 + t) * row_elems + e];
                size_t at = (size_t)((b * S + t) * row_elems + e);
                if (f16)
                    ((uint16_t *)dst)[at] = tu_float_to_half(x);
                else
                    ((float *)dst)[at] = x;
            }
    return dst;
}

static void store_rows(float *dst, const void *src, int64_t row_elems, int64_t rows_total,
                       int64_t t0, int64_t S, int f16)
{
    for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < S; ++t)
            for (int64_t e = 0; e < row_elems; ++e) {
                size_t at = (size_t)((b * S + t) * row_elems + e);
                dst[(b * rows_total + t0 + t) * row_elems + e] =
                    f16 ? tu_half_to_float(((const uint16_t *)src)[at]) : ((const float *)src)[at];
            }
}

static attn_context *ctx_for(attn_backend backend, int dev)
{
    if (dev < 0)
        dev = 0;
    attn_context_params p = ATTN_CONTEXT_PARAMS_INIT;
    p.backend = backend;
    p.device_index = (uint32_t)dev;
    attn_context *c = NULL;
    ck_assert_msg(attn_context_create(&p, &c) == ATTN_OK, "%s", attn_last_detail());
    return c;
}

static void check_all(const char *what, int f16, attn_backend backend)
{
    tu_compare_result res;
    char msg[256];
    int ok = tu_compare(&got[0][0][0][0], &want[0][0][0][0], sizeof got / 4,
                        f16 ? TU_TOL_F16 : TU_TOL_F32, &res);
    tu_compare_describe(&res, msg, sizeof msg);
    ck_assert_msg(ok, "%s (%s, %s): %s", what, tu_backend_name(backend), f16 ? "f16" : "f32", msg);
}

/* Runs the stream over the whole sequence in segments; RMT memory rows per segment come
 * from a fixed generator, their outputs into mem_out[segment]. */
static float mem_q[B][MEM_TOKENS][H][D], mem_k[B][MEM_TOKENS][HK][D], mem_v[B][MEM_TOKENS][HK][DV];
static float mem_got[5][B][MEM_TOKENS][H][DV], mem_want[5][B][MEM_TOKENS][H][DV];

static void run_stream(attn_context *ctx, attn_stream_params *sp, int f16)
{
    attn_stream *s = NULL;
    ck_assert_msg(attn_stream_create(ctx, sp, &s) == ATTN_OK, "%s", attn_last_detail());
    const attn_dtype dt = f16 ? ATTN_DTYPE_F16 : ATTN_DTYPE_F32;
    int64_t t0 = 0;
    for (size_t si = 0; si < sizeof seg_lens / sizeof seg_lens[0]; ++si) {
        const int64_t S = seg_lens[si];
        seg_bufs sb = {copy_rows(&q[0][0][0][0], H * D, TOTAL, t0, S, f16),
                       copy_rows(&k[0][0][0][0], HK * D, TOTAL, t0, S, f16),
                       copy_rows(&v[0][0][0][0], HK * DV, TOTAL, t0, S, f16),
                       malloc((size_t)(B * S * H * DV) * 4)};
        attn_stream_segment g = ATTN_STREAM_SEGMENT_INIT;
        g.q = attn_tensor_host(dt, B, S, H, D, sb.q);
        g.k = attn_tensor_host(dt, B, S, HK, D, sb.k);
        g.v = attn_tensor_host(dt, B, S, HK, DV, sb.v);
        g.o = attn_tensor_host(dt, B, S, H, DV, sb.o);
        void *mq = NULL, *mk = NULL, *mv = NULL, *mo = NULL;
        if (sp->mode == ATTN_STREAM_MEMORY_TOKENS) {
            tu_fill_uniform(&mem_q[0][0][0][0], sizeof mem_q / 4, 40 + si);
            tu_fill_uniform(&mem_k[0][0][0][0], sizeof mem_k / 4, 50 + si);
            tu_fill_uniform(&mem_v[0][0][0][0], sizeof mem_v / 4, 60 + si);
            if (f16) {
                tu_round_to_half(&mem_q[0][0][0][0], sizeof mem_q / 4);
                tu_round_to_half(&mem_k[0][0][0][0], sizeof mem_k / 4);
                tu_round_to_half(&mem_v[0][0][0][0], sizeof mem_v / 4);
            }
            mq = copy_rows(&mem_q[0][0][0][0], H * D, MEM_TOKENS, 0, MEM_TOKENS, f16);
            mk = copy_rows(&mem_k[0][0][0][0], HK * D, MEM_TOKENS, 0, MEM_TOKENS, f16);
            mv = copy_rows(&mem_v[0][0][0][0], HK * DV, MEM_TOKENS, 0, MEM_TOKENS, f16);
            mo = malloc((size_t)(B * MEM_TOKENS * H * DV) * 4);
            g.mem_q = attn_tensor_host(dt, B, MEM_TOKENS, H, D, mq);
            g.mem_k = attn_tensor_host(dt, B, MEM_TOKENS, HK, D, mk);
            g.mem_v = attn_tensor_host(dt, B, MEM_TOKENS, HK, DV, mv);
            g.mem_o = attn_tensor_host(dt, B, MEM_TOKENS, H, DV, mo);
        }
        ck_assert_msg(attn_stream_push(s, &g) == ATTN_OK, "segment %zu: %s", si, attn_last_detail());
        store_rows(&got[0][0][0][0], sb.o, H * DV, TOTAL, t0, S, f16);
        if (mo)
            store_rows(&mem_got[si][0][0][0][0], mo, H * DV, MEM_TOKENS, 0, MEM_TOKENS, f16);
        if (sp->mode == ATTN_STREAM_MEMORY_TOKENS) {
            /* Oracle for this segment: rows [mem ; seg], mem rows see all, seg rows see mem
             * and causally the segment. */
            static float cq[B][MEM_TOKENS + 64][H][D], ck_[B][MEM_TOKENS + 64][HK][D],
                cv[B][MEM_TOKENS + 64][HK][DV];
            const int T = MEM_TOKENS + (int)S;
            for (int b = 0; b < B; ++b) {
                memcpy(cq[b], mem_q[b], sizeof mem_q[b]);
                memcpy(ck_[b], mem_k[b], sizeof mem_k[b]);
                memcpy(cv[b], mem_v[b], sizeof mem_v[b]);
                memcpy(cq[b][MEM_TOKENS], q[b][t0], (size_t)S * sizeof q[b][0]);
                memcpy(ck_[b][MEM_TOKENS], k[b][t0], (size_t)S * sizeof k[b][0]);
                memcpy(cv[b][MEM_TOKENS], v[b][t0], (size_t)S * sizeof v[b][0]);
                int keys[MEM_TOKENS + 64];
                for (int r = 0; r < T; ++r) {
                    int n = 0;
                    for (int c = 0; c < T; ++c)
                        if (r < MEM_TOKENS || c < MEM_TOKENS || c <= r)
                            keys[n++] = c;
                    for (int h = 0; h < H; ++h) {
                        double out[DV];
                        attend(cq[b], ck_[b], cv[b], b, r, h, keys, n, out);
                        for (int c = 0; c < DV; ++c) {
                            if (r < MEM_TOKENS)
                                mem_want[si][b][r][h][c] = (float)out[c];
                            else
                                want[b][t0 + r - MEM_TOKENS][h][c] = (float)out[c];
                        }
                    }
                }
            }
        }
        free(sb.q), free(sb.k), free(sb.v), free(sb.o), free(mq), free(mk), free(mv), free(mo);
        t0 += S;
    }
    ck_assert_int_eq(attn_stream_position(s), TOTAL);
    attn_stream_destroy(s);
}

static int num_devices(attn_backend backend)
{
    uint32_t n = 0;
    attn_device_count(backend, &n);
    return (int)n;
}

/* Slot 0 is the reference, then each OpenCL device, then each Vulkan device; *dev is the
 * device's index within its backend. */
static attn_backend slot_backend(int slot, int *dev)
{
    const int ncl = num_devices(ATTN_BACKEND_OPENCL);
    *dev = slot == 0 ? 0 : slot <= ncl ? slot - 1 : slot - 1 - ncl;
    return slot == 0 ? ATTN_BACKEND_REFERENCE : slot <= ncl ? ATTN_BACKEND_OPENCL : ATTN_BACKEND_VULKAN;
}

#define FOR_BACKENDS(backend, dev)                                                              \
    for (int slot_ = 0, dev = 0;                                                                \
         slot_ <= num_devices(ATTN_BACKEND_OPENCL) + num_devices(ATTN_BACKEND_VULKAN); ++slot_) \
        for (attn_backend backend = slot_backend(slot_, &dev); backend != ATTN_BACKEND_AUTO;    \
             backend = ATTN_BACKEND_AUTO)

START_TEST(test_recurrence)
{
    const int64_t mem_lens[3] = {0, 20, 200};
    for (int f16 = 0; f16 < 2; ++f16) {
        make_inputs(f16);
        for (int mi = 0; mi < 3; ++mi) {
            /* Oracle: token t of segment [t0, t0+S) sees [max(0, t0 - mem), t]. */
            int64_t t0 = 0;
            for (size_t si = 0; si < sizeof seg_lens / sizeof seg_lens[0]; ++si) {
                for (int64_t t = t0; t < t0 + seg_lens[si]; ++t) {
                    int keys[TOTAL], n = 0;
                    for (int64_t j = t0 - mem_lens[mi] < 0 ? 0 : t0 - mem_lens[mi]; j <= t; ++j)
                        keys[n++] = (int)j;
                    for (int b = 0; b < B; ++b)
                        for (int h = 0; h < H; ++h) {
                            double out[DV];
                            attend(q[b], k[b], v[b], b, (int)t, h, keys, n, out);
                            for (int c = 0; c < DV; ++c)
                                want[b][t][h][c] = (float)out[c];
                        }
                }
                t0 += seg_lens[si];
            }
            FOR_BACKENDS(backend, dev)
            {
                attn_context *ctx = ctx_for(backend, dev);
                attn_stream_params sp = ATTN_STREAM_PARAMS_INIT;
                sp.mode = ATTN_STREAM_RECURRENCE;
                sp.batch = B, sp.num_heads = H, sp.num_kv_heads = HK, sp.head_dim = D;
                sp.v_head_dim = DV, sp.dtype = f16 ? ATTN_DTYPE_F16 : ATTN_DTYPE_F32;
                sp.mem_len = mem_lens[mi];
                run_stream(ctx, &sp, f16);
                check_all("recurrence", f16, backend);
                attn_context_destroy(ctx);
            }
        }
    }
}
END_TEST

START_TEST(test_memory_tokens)
{
    for (int f16 = 0; f16 < 2; ++f16) {
        make_inputs(f16);
        FOR_BACKENDS(backend, dev)
        {
            attn_context *ctx = ctx_for(backend, dev);
            attn_stream_params sp = ATTN_STREAM_PARAMS_INIT;
            sp.mode = ATTN_STREAM_MEMORY_TOKENS;
            sp.batch = B, sp.num_heads = H, sp.num_kv_heads = HK, sp.head_dim = D;
            sp.v_head_dim = DV, sp.dtype = f16 ? ATTN_DTYPE_F16 : ATTN_DTYPE_F32;
            sp.num_mem_tokens = MEM_TOKENS;
            run_stream(ctx, &sp, f16);
            check_all("memory tokens: segment rows", f16, backend);
            tu_compare_result res;
            char msg[256];
            int ok = tu_compare(&mem_got[0][0][0][0][0], &mem_want[0][0][0][0][0],
                                sizeof mem_got / 4, f16 ? TU_TOL_F16 : TU_TOL_F32, &res);
            tu_compare_describe(&res, msg, sizeof msg);
            ck_assert_msg(ok, "memory tokens: memory rows (%s): %s", tu_backend_name(backend), msg);
            attn_context_destroy(ctx);
        }
    }
}
END_TEST

static double sigma(double x) { return x > 0 ? x + 1 : exp(x); }

START_TEST(test_compressive)
{
    const float gate[H] = {-1.5f, 0.0f, 0.7f, 3.0f};
    for (int f16 = 0; f16 < 2; ++f16) {
        make_inputs(f16);
        /* Oracle: M, z per (b, kv head) from past segments; local causal attention. */
        static double M[B][HK][D][DV], z[B][HK][D];
        memset(M, 0, sizeof M), memset(z, 0, sizeof z);
        int64_t t0 = 0;
        for (size_t si = 0; si < sizeof seg_lens / sizeof seg_lens[0]; ++si) {
            const int64_t S = seg_lens[si];
            for (int b = 0; b < B; ++b)
                for (int64_t t = t0; t < t0 + S; ++t)
                    for (int h = 0; h < H; ++h) {
                        int keys[TOTAL], n = 0;
                        for (int64_t j = t0; j <= t; ++j)
                            keys[n++] = (int)j;
                        double loc[DV];
                        attend(q[b], k[b], v[b], b, (int)t, h, keys, n, loc);
                        const int hk = h / (H / HK);
                        double sq[D], den = 0;
                        for (int d = 0; d < D; ++d) {
                            sq[d] = sigma(q[b][t][h][d]);
                            den += sq[d] * z[b][hk][d];
                        }
                        const double g = 1 / (1 + exp(-(double)gate[h]));
                        for (int c = 0; c < DV; ++c) {
                            double num = 0;
                            for (int d = 0; d < D; ++d)
                                num += sq[d] * M[b][hk][d][c];
                            want[b][t][h][c] = (float)(g * (den > 0 ? num / den : 0) + (1 - g) * loc[c]);
                        }
                    }
            for (int b = 0; b < B; ++b)
                for (int hk = 0; hk < HK; ++hk)
                    for (int64_t t = t0; t < t0 + S; ++t)
                        for (int d = 0; d < D; ++d) {
                            const double sk = sigma(k[b][t][hk][d]);
                            z[b][hk][d] += sk;
                            for (int c = 0; c < DV; ++c)
                                M[b][hk][d][c] += sk * v[b][t][hk][c];
                        }
            t0 += S;
        }
        FOR_BACKENDS(backend, dev)
        {
            attn_context *ctx = ctx_for(backend, dev);
            attn_stream_params sp = ATTN_STREAM_PARAMS_INIT;
            sp.mode = ATTN_STREAM_COMPRESSIVE;
            sp.batch = B, sp.num_heads = H, sp.num_kv_heads = HK, sp.head_dim = D;
            sp.v_head_dim = DV, sp.dtype = f16 ? ATTN_DTYPE_F16 : ATTN_DTYPE_F32;
            sp.gate = gate;
            /* Device memory constant over the stream: measured after each run below. */
            run_stream(ctx, &sp, f16);
            check_all("compressive", f16, backend);
            attn_context_destroy(ctx);
        }
    }
}
END_TEST

/* Device memory of a compressive stream does not grow with the number of segments. */
START_TEST(test_compressive_constant_memory)
{
    FOR_BACKENDS(backend, dev)
    {
        if (backend == ATTN_BACKEND_REFERENCE)
            continue;
        attn_context *ctx = ctx_for(backend, dev);
        attn_stream_params sp = ATTN_STREAM_PARAMS_INIT;
        sp.mode = ATTN_STREAM_COMPRESSIVE;
        sp.batch = 1, sp.num_heads = 2, sp.head_dim = 16;
        attn_stream *s = NULL;
        ck_assert_int_eq(attn_stream_create(ctx, &sp, &s), ATTN_OK);
        float qs[32 * 2 * 16], os[32 * 2 * 16];
        uint64_t first = 0;
        for (int i = 0; i < 50; ++i) {
            tu_fill_uniform(qs, sizeof qs / 4, (uint64_t)i);
            attn_stream_segment g = ATTN_STREAM_SEGMENT_INIT;
            g.q = attn_tensor_host(ATTN_DTYPE_F32, 1, 32, 2, 16, qs);
            g.k = g.q, g.v = g.q;
            g.o = attn_tensor_host(ATTN_DTYPE_F32, 1, 32, 2, 16, os);
            ck_assert_int_eq(attn_stream_push(s, &g), ATTN_OK);
            attn_stats st;
            memset(&st, 0, sizeof st);
            st.struct_size = sizeof st;
            attn_context_get_stats(ctx, &st);
            if (i == 0)
                first = st.device_bytes;
            ck_assert_uint_eq(st.device_bytes, first);
        }
        ck_assert_int_eq(attn_stream_position(s), 50 * 32);
        ck_assert_int_eq(attn_stream_reset(s), ATTN_OK);
        ck_assert_int_eq(attn_stream_position(s), 0);
        attn_stream_destroy(s);
        attn_context_destroy(ctx);
    }
}
END_TEST

/* A segment longer than llvmpipe lets one invocation loop (65535 iterations: the stream
 * then folds it into the memory in parts, src/core/stream.c): the next segment reads the
 * memory of all its keys. Oracle for the second segment from the definitions. */
START_TEST(test_compressive_long_segment)
{
    enum { LD = 4, S1 = 70000, S2 = 8 };
    const float gate[1] = {0.5f};
    float *q1 = malloc(S1 * LD * 4), *k1 = malloc(S1 * LD * 4), *v1 = malloc(S1 * LD * 4);
    float *o1 = malloc(S1 * LD * 4);
    float q2[S2 * LD], k2[S2 * LD], v2[S2 * LD], o2[S2 * LD], want2[S2 * LD];
    tu_fill_uniform(q1, S1 * LD, 71);
    tu_fill_uniform(k1, S1 * LD, 72);
    tu_fill_uniform(v1, S1 * LD, 73);
    tu_fill_uniform(q2, S2 * LD, 74);
    tu_fill_uniform(k2, S2 * LD, 75);
    tu_fill_uniform(v2, S2 * LD, 76);
    double M[LD][LD] = {{0}}, z[LD] = {0};
    for (int t = 0; t < S1; ++t)
        for (int d = 0; d < LD; ++d) {
            const double sk = sigma(k1[t * LD + d]);
            z[d] += sk;
            for (int c = 0; c < LD; ++c)
                M[d][c] += sk * v1[t * LD + c];
        }
    const double g = 1 / (1 + exp(-(double)gate[0]));
    for (int t = 0; t < S2; ++t) {
        double m = -INFINITY, l = 0, acc[LD] = {0}, sq[LD], den = 0;
        for (int j = 0; j <= t; ++j) {
            double x = 0;
            for (int d = 0; d < LD; ++d)
                x += (double)q2[t * LD + d] * k2[j * LD + d];
            x /= sqrt((double)LD);
            const double mn = x > m ? x : m, a = exp(m - mn), pj = exp(x - mn);
            l = l * a + pj;
            for (int c = 0; c < LD; ++c)
                acc[c] = acc[c] * a + pj * v2[j * LD + c];
            m = mn;
        }
        for (int d = 0; d < LD; ++d) {
            sq[d] = sigma(q2[t * LD + d]);
            den += sq[d] * z[d];
        }
        for (int c = 0; c < LD; ++c) {
            double num = 0;
            for (int d = 0; d < LD; ++d)
                num += sq[d] * M[d][c];
            want2[t * LD + c] = (float)(g * num / den + (1 - g) * acc[c] / l);
        }
    }
    FOR_BACKENDS(backend, dev)
    {
        if (backend == ATTN_BACKEND_REFERENCE)
            continue;
        attn_context *ctx = ctx_for(backend, dev);
        attn_stream_params sp = ATTN_STREAM_PARAMS_INIT;
        sp.mode = ATTN_STREAM_COMPRESSIVE;
        sp.batch = 1, sp.num_heads = 1, sp.head_dim = LD, sp.gate = gate;
        attn_stream *st = NULL;
        ck_assert_msg(attn_stream_create(ctx, &sp, &st) == ATTN_OK, "%s", attn_last_detail());
        attn_stream_segment g1 = ATTN_STREAM_SEGMENT_INIT;
        g1.q = attn_tensor_host(ATTN_DTYPE_F32, 1, S1, 1, LD, q1);
        g1.k = attn_tensor_host(ATTN_DTYPE_F32, 1, S1, 1, LD, k1);
        g1.v = attn_tensor_host(ATTN_DTYPE_F32, 1, S1, 1, LD, v1);
        g1.o = attn_tensor_host(ATTN_DTYPE_F32, 1, S1, 1, LD, o1);
        ck_assert_msg(attn_stream_push(st, &g1) == ATTN_OK, "%s", attn_last_detail());
        attn_stream_segment g2 = ATTN_STREAM_SEGMENT_INIT;
        g2.q = attn_tensor_host(ATTN_DTYPE_F32, 1, S2, 1, LD, q2);
        g2.k = attn_tensor_host(ATTN_DTYPE_F32, 1, S2, 1, LD, k2);
        g2.v = attn_tensor_host(ATTN_DTYPE_F32, 1, S2, 1, LD, v2);
        g2.o = attn_tensor_host(ATTN_DTYPE_F32, 1, S2, 1, LD, o2);
        ck_assert_msg(attn_stream_push(st, &g2) == ATTN_OK, "%s", attn_last_detail());
        tu_compare_result res;
        char msg[256];
        const int ok = tu_compare(o2, want2, S2 * LD, TU_TOL_F32, &res);
        tu_compare_describe(&res, msg, sizeof msg);
        ck_assert_msg(ok, "compressive after a %d-token segment (%s): %s", S1,
                      tu_backend_name(backend), msg);
        attn_stream_destroy(st);
        attn_context_destroy(ctx);
    }
    free(q1), free(k1), free(v1), free(o1);
}
END_TEST

START_TEST(test_stream_bad_input)
{
    attn_context *ctx = ctx_for(ATTN_BACKEND_REFERENCE, 0);
    attn_stream_params sp = ATTN_STREAM_PARAMS_INIT;
    attn_stream *s = NULL;
    sp.mode = (attn_stream_mode)9;
    ck_assert_int_eq(attn_stream_create(ctx, &sp, &s), ATTN_ERROR_INVALID_ARGUMENT);
    sp.mode = ATTN_STREAM_MEMORY_TOKENS;
    ck_assert_int_eq(attn_stream_create(ctx, &sp, &s), ATTN_ERROR_INVALID_SHAPE);
    sp.mode = ATTN_STREAM_RECURRENCE;
    sp.num_heads = 3, sp.num_kv_heads = 2;
    ck_assert_int_eq(attn_stream_create(ctx, &sp, &s), ATTN_ERROR_HEADS_MISMATCH);
    sp.num_heads = sp.num_kv_heads = 1;
    sp.mem_len = 4;
    ck_assert_int_eq(attn_stream_create(ctx, &sp, &s), ATTN_OK);
    float x[8 * 64];
    attn_stream_segment g = ATTN_STREAM_SEGMENT_INIT;
    g.q = attn_tensor_host(ATTN_DTYPE_F32, 1, 8, 1, 64, x);
    g.k = g.q, g.v = g.q;
    g.o = attn_tensor_host(ATTN_DTYPE_F32, 1, 7, 1, 64, x);
    ck_assert_int_eq(attn_stream_push(s, &g), ATTN_ERROR_SHAPE_MISMATCH);
    g.o = attn_tensor_host(ATTN_DTYPE_F16, 1, 8, 1, 64, x);
    ck_assert_int_eq(attn_stream_push(s, &g), ATTN_ERROR_DTYPE_MISMATCH);
    ck_assert_int_eq(attn_stream_push(s, NULL), ATTN_ERROR_NULL_POINTER);
    ck_assert_int_eq(attn_stream_push(NULL, &g), ATTN_ERROR_NULL_POINTER);
    attn_stream_destroy(s);
    attn_stream_destroy(NULL);
    attn_context_destroy(ctx);
}
END_TEST

int main(void)
{
    Suite *su = suite_create("stream");
    TCase *tc = tcase_create("stream");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_stream_bad_input);
    tcase_add_test(tc, test_recurrence);
    tcase_add_test(tc, test_memory_tokens);
    tcase_add_test(tc, test_compressive);
    tcase_add_test(tc, test_compressive_constant_memory);
    tcase_add_test(tc, test_compressive_long_segment);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    tu_release();
    return failed ? 1 : 0;
}
