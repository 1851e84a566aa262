/* test_ref.c — the double-precision reference and the half conversions, checked against
 * numbers worked out by hand (never against the reference itself). */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "core/problem.h"

#define LN2 0.69314718055994530942
#define LN3 1.09861228866810969140

/* ---- helpers ------------------------------------------------------------------------ */

static attn__view view4(attn_dtype dtype, int64_t d0, int64_t d1, int64_t d2, int64_t d3,
                        void *data)
{
    attn__view v;
    v.dtype = dtype;
    v.shape[0] = d0, v.shape[1] = d1, v.shape[2] = d2, v.shape[3] = d3;
    v.stride[3] = 1;
    v.stride[2] = d3;
    v.stride[1] = d2 * d3;
    v.stride[0] = d1 * d2 * d3;
    v.data = data;
    return v;
}

static attn__problem problem(int64_t batch, int64_t heads, int64_t kv_heads, int64_t q_len,
                             int64_t kv_len, int64_t head_dim, int64_t v_head_dim, double scale)
{
    attn__problem p;
    memset(&p, 0, sizeof p);
    p.batch = batch;
    p.num_heads = heads;
    p.num_kv_heads = kv_heads;
    p.q_len = q_len;
    p.kv_len = kv_len;
    p.head_dim = head_dim;
    p.v_head_dim = v_head_dim;
    p.dtype = ATTN_DTYPE_F32;
    p.scale = scale;
    p.mask_kind = ATTN_MASK_NONE;
    return p;
}

/* Runs an F32 problem with dense Q, K, V, O, lse (lse [B, H, Sq, 1], always requested). */
static void run_dense(attn__problem *p, const float *q, const float *k, const float *v,
                      float *o, float *lse, const attn__view *mask, const int32_t *kv_lens)
{
    attn__view qv = view4(ATTN_DTYPE_F32, p->batch, p->q_len, p->num_heads, p->head_dim,
                          (void *)q);
    attn__view kv = view4(ATTN_DTYPE_F32, p->batch, p->kv_len, p->num_kv_heads, p->head_dim,
                          (void *)k);
    attn__view vv = view4(ATTN_DTYPE_F32, p->batch, p->kv_len, p->num_kv_heads,
                          p->v_head_dim, (void *)v);
    attn__view ov = view4(ATTN_DTYPE_F32, p->batch, p->q_len, p->num_heads, p->v_head_dim, o);
    attn__view lv = view4(ATTN_DTYPE_F32, p->batch, p->num_heads, p->q_len, 1, lse);
    p->want_lse = lse != NULL;
    attn__ref_attention(p, &qv, &kv, &vv, &ov, mask, lse ? &lv : NULL, kv_lens);
}

static void fill_nan(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = NAN;
}

#define ck_close(got, want)                                                                   \
    do {                                                                                      \
        double g_ = (got), w_ = (want);                                                       \
        ck_assert_msg(fabs(g_ - w_) <= 1e-6 * (1.0 + fabs(w_)), "%s = %.9g, want %.9g", #got, \
                      g_, w_);                                                                \
    } while (0)

#define ck_neg_inf(x)                                                                         \
    ck_assert_msg(isinf(x) && (x) < 0, "%s = %g, want -inf", #x, (double)(x))

/* ---- attention -------------------------------------------------------------------------*/

/* One query, two keys: scores ln2 and 0, so the weights are 2/3 and 1/3. */
START_TEST(test_two_keys)
{
    attn__problem p = problem(1, 1, 1, 1, 2, 2, 2, LN2);
    float q[] = {1, 0};
    float k[] = {1, 0, /**/ 0, 5};
    float v[] = {1, 2, /**/ 3, 4};
    float o[2], lse[1];
    fill_nan(o, 2);
    run_dense(&p, q, k, v, o, lse, NULL, NULL);
    ck_close(o[0], 2.0 / 3 * 1 + 1.0 / 3 * 3); /* 5/3 */
    ck_close(o[1], 2.0 / 3 * 2 + 1.0 / 3 * 4); /* 8/3 */
    ck_close(lse[0], LN3);                     /* log(2 + 1) */
}
END_TEST

/* Scale applies to the dot product: q.k0 = 2, scale 0.5 -> scores 1 and 0. */
START_TEST(test_scale_and_lse)
{
    attn__problem p = problem(1, 1, 1, 1, 2, 2, 1, 0.5);
    float q[] = {1, 1};
    float k[] = {1, 1, /**/ 0, 0};
    float v[] = {1, /**/ 0};
    float o[1], lse[1];
    run_dense(&p, q, k, v, o, lse, NULL, NULL);
    double e = exp(1.0);
    ck_close(o[0], e / (e + 1)); /* 0.7310585786 */
    ck_close(lse[0], 1.3132616875182228);
}
END_TEST

/* Scores of 1000 overflow exp() unless the maximum is subtracted first. */
START_TEST(test_large_scores)
{
    attn__problem p = problem(1, 1, 1, 1, 2, 1, 1, 1.0);
    float q[] = {1000};
    float k[] = {1, 1};
    float v[] = {2, 6};
    float o[1], lse[1];
    run_dense(&p, q, k, v, o, lse, NULL, NULL);
    ck_close(o[0], 4.0);
    ck_close(lse[0], 1000.0 + LN2);
}
END_TEST

/* Equal scores: O is the mean of V, lse = log(number of keys). */
START_TEST(test_uniform_mean)
{
    attn__problem p = problem(1, 1, 1, 2, 4, 3, 2, 0.125);
    float q[2 * 3] = {0};
    float k[4 * 3] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    float v[4 * 2] = {0, 0, 1, 10, 2, 20, 3, 30};
    float o[2 * 2], lse[2];
    run_dense(&p, q, k, v, o, lse, NULL, NULL);
    for (int i = 0; i < 2; i++) {
        ck_close(o[i * 2 + 0], 1.5);
        ck_close(o[i * 2 + 1], 15.0);
        ck_close(lse[i], log(4.0));
    }
}
END_TEST

/* Causal, bottom-right aligned, q_len 3 < kv_len 5: query i sees keys 0..i+2. With equal
 * scores and v_j = j the output is the mean of 0..i+2. */
START_TEST(test_causal_short_queries)
{
    attn__problem p = problem(1, 1, 1, 3, 5, 1, 1, 1.0);
    p.causal = 1;
    float q[3] = {0}, k[5] = {1, 1, 1, 1, 1}, v[5] = {0, 1, 2, 3, 4};
    float o[3], lse[3];
    run_dense(&p, q, k, v, o, lse, NULL, NULL);
    ck_close(o[0], 1.0); /* keys 0,1,2 */
    ck_close(o[1], 1.5); /* keys 0..3 */
    ck_close(o[2], 2.0); /* keys 0..4 */
    ck_close(lse[0], log(3.0));
    ck_close(lse[1], log(4.0));
    ck_close(lse[2], log(5.0));
}
END_TEST

/* Causal with q_len 3 > kv_len 2: query i sees j <= i - 1, so query 0 sees nothing. */
START_TEST(test_causal_long_queries)
{
    attn__problem p = problem(1, 1, 1, 3, 2, 1, 1, 1.0);
    p.causal = 1;
    float q[3] = {0}, k[2] = {1, 1}, v[2] = {4, 8};
    float o[3], lse[3];
    fill_nan(o, 3);
    run_dense(&p, q, k, v, o, lse, NULL, NULL);
    ck_assert(o[0] == 0.0f);
    ck_neg_inf(lse[0]);
    ck_close(o[1], 4.0);
    ck_close(lse[1], 0.0);
    ck_close(o[2], 6.0);
    ck_close(lse[2], LN2);
}
END_TEST

/* Square causal with distinct scores: the lower-triangular pattern shows in the output. */
START_TEST(test_causal_square)
{
    attn__problem p = problem(1, 1, 1, 3, 3, 1, 1, 1.0);
    p.causal = 1;
    float q[3] = {LN3, LN3, LN3};
    float k[3] = {0, 1, 0}; /* scores 0, ln3, 0 */
    float v[3] = {8, 4, 0};
    float o[3], lse[3];
    run_dense(&p, q, k, v, o, lse, NULL, NULL);
    ck_close(o[0], 8.0);                   /* key 0 only */
    ck_close(o[1], (8.0 + 3 * 4.0) / 4.0); /* weights 1:3 -> 5 */
    ck_close(o[2], (8.0 + 3 * 4.0) / 5.0); /* weights 1:3:1 -> 4 */
    ck_close(lse[0], 0.0);
    ck_close(lse[1], log(4.0));
    ck_close(lse[2], log(5.0));
}
END_TEST

/* Per-batch lengths: 2 keys, 9 (clamped to 4), 0 (nothing visible), -3 (clamped to 0). */
START_TEST(test_padding)
{
    attn__problem p = problem(4, 1, 1, 1, 4, 1, 1, 1.0);
    p.has_kv_lens = 1;
    const int32_t lens[4] = {2, 9, 0, -3};
    float q[4] = {0}, k[16], v[16];
    for (int b = 0; b < 4; b++)
        for (int j = 0; j < 4; j++) {
            k[b * 4 + j] = 1.0f;
            v[b * 4 + j] = (float)(b * 100 + j);
        }
    float o[4], lse[4];
    fill_nan(o, 4);
    run_dense(&p, q, k, v, o, lse, NULL, lens);
    ck_close(o[0], 0.5);   /* mean of 0, 1 */
    ck_close(o[1], 101.5); /* mean of 100..103 */
    ck_close(lse[0], LN2);
    ck_close(lse[1], log(4.0));
    for (int b = 2; b < 4; b++) {
        ck_assert(o[b] == 0.0f);
        ck_neg_inf(lse[b]);
    }
}
END_TEST

/* Padding and causal together: the causal offset uses the batch's own length (3). */
START_TEST(test_padding_causal)
{
    attn__problem p = problem(1, 1, 1, 2, 4, 1, 1, 1.0);
    p.causal = 1;
    p.has_kv_lens = 1;
    const int32_t lens[1] = {3};
    float q[2] = {0}, k[4] = {1, 1, 1, 1}, v[4] = {0, 1, 2, 100};
    float o[2], lse[2];
    run_dense(&p, q, k, v, o, lse, NULL, lens);
    ck_close(o[0], 0.5); /* keys 0, 1 (j <= 0 + 3 - 2) */
    ck_close(o[1], 1.0); /* keys 0, 1, 2 */
}
END_TEST

/* Additive bias: scores 0, -inf, ln3 -> weights 1/4, 0, 3/4. */
START_TEST(test_additive_bias)
{
    attn__problem p = problem(1, 1, 1, 1, 3, 1, 1, 1.0);
    p.mask_kind = ATTN_MASK_ADDITIVE;
    float q[1] = {0}, k[3] = {1, 1, 1}, v[3] = {4, 100, 8};
    float bias[3] = {0, -INFINITY, LN3};
    attn__view m = view4(ATTN_DTYPE_F32, 1, 1, 1, 3, bias);
    float o[1], lse[1];
    run_dense(&p, q, k, v, o, lse, &m, NULL);
    ck_close(o[0], 4.0 / 4 + 3.0 * 8 / 4); /* 7 */
    ck_close(lse[0], log(4.0));
}
END_TEST

/* Boolean mask: nonzero attends (any nonzero value), zero masks. */
START_TEST(test_boolean_mask)
{
    attn__problem p = problem(1, 1, 1, 2, 3, 1, 1, 1.0);
    p.mask_kind = ATTN_MASK_BOOLEAN;
    float q[2] = {0}, k[3] = {1, 1, 1}, v[3] = {1, 10, 100};
    uint8_t mask[6] = {1, 0, 7, /**/ 0, 255, 0};
    attn__view m = view4(ATTN_DTYPE_U8, 1, 1, 2, 3, mask);
    float o[2], lse[2];
    run_dense(&p, q, k, v, o, lse, &m, NULL);
    ck_close(o[0], 50.5);
    ck_close(o[1], 10.0);
    ck_close(lse[0], LN2);
    ck_close(lse[1], 0.0);
}
END_TEST

/* GQA: two query heads share one kv head and differ only in Q. */
START_TEST(test_gqa_shared_head)
{
    attn__problem p = problem(1, 2, 1, 1, 2, 1, 1, 1.0);
    float q[2] = {LN3, 0}; /* [S=1][H=2][D=1] */
    float k[2] = {1, 0}, v[2] = {0, 4};
    float o[2], lse[2];
    run_dense(&p, q, k, v, o, lse, NULL, NULL);
    ck_close(o[0], 1.0); /* weights 3/4, 1/4 */
    ck_close(o[1], 2.0); /* weights 1/2, 1/2 */
    ck_close(lse[0], log(4.0));
    ck_close(lse[1], LN2);
}
END_TEST

/* GQA mapping is h / (H / Hkv): heads 0,1 -> kv 0 and heads 2,3 -> kv 1 (not h % Hkv). */
START_TEST(test_gqa_mapping)
{
    attn__problem p = problem(1, 4, 2, 1, 2, 1, 1, 1.0);
    float q[4] = {0};
    float k[4] = {1, 1, 1, 1};     /* [S=2][Hkv=2][D=1] */
    float v[4] = {1, 10, 3, 30};  /* kv0: 1, 3; kv1: 10, 30 */
    float o[4], lse[4];
    run_dense(&p, q, k, v, o, lse, NULL, NULL);
    ck_close(o[0], 2.0);
    ck_close(o[1], 2.0);
    ck_close(o[2], 20.0);
    ck_close(o[3], 20.0);
}
END_TEST

/* A row whose keys are all masked gives zeros and lse -inf, never NaN; the next row is
 * unaffected. Covers a boolean row of zeros and an additive row of -inf. */
START_TEST(test_fully_masked)
{
    attn__problem p = problem(1, 1, 1, 2, 2, 1, 2, 1.0);
    float q[2] = {1, 1}, k[2] = {1, 2}, v[4] = {1, 2, 3, 4};
    float o[4], lse[2];

    p.mask_kind = ATTN_MASK_BOOLEAN;
    uint8_t bm[4] = {0, 0, /**/ 1, 0};
    attn__view m = view4(ATTN_DTYPE_U8, 1, 1, 2, 2, bm);
    fill_nan(o, 4);
    run_dense(&p, q, k, v, o, lse, &m, NULL);
    ck_assert(o[0] == 0.0f && o[1] == 0.0f);
    ck_neg_inf(lse[0]);
    ck_close(o[2], 1.0);
    ck_close(o[3], 2.0);
    ck_close(lse[1], 1.0);

    p.mask_kind = ATTN_MASK_ADDITIVE;
    float am[4] = {-INFINITY, -INFINITY, /**/ -INFINITY, 0};
    m = view4(ATTN_DTYPE_F32, 1, 1, 2, 2, am);
    fill_nan(o, 4);
    run_dense(&p, q, k, v, o, lse, &m, NULL);
    for (int i = 0; i < 2; i++)
        ck_assert(o[i] == 0.0f);
    ck_neg_inf(lse[0]);
    ck_close(o[2], 3.0);
    ck_close(o[3], 4.0);
    ck_close(lse[1], 2.0);
    for (int i = 0; i < 4; i++)
        ck_assert(!isnan(o[i]));
}
END_TEST

/* Without lse requested (view NULL or want_lse 0) nothing is written there. */
START_TEST(test_no_lse)
{
    attn__problem p = problem(1, 1, 1, 1, 2, 1, 1, LN2);
    float q[1] = {1}, k[2] = {1, 0}, v[2] = {1, 3};
    float o[1];
    run_dense(&p, q, k, v, o, NULL, NULL, NULL);
    ck_close(o[0], 5.0 / 3);

    float lse[1] = {123.0f};
    attn__view qv = view4(ATTN_DTYPE_F32, 1, 1, 1, 1, q);
    attn__view kv = view4(ATTN_DTYPE_F32, 1, 2, 1, 1, k);
    attn__view vv = view4(ATTN_DTYPE_F32, 1, 2, 1, 1, v);
    attn__view ov = view4(ATTN_DTYPE_F32, 1, 1, 1, 1, o);
    attn__view lv = view4(ATTN_DTYPE_F32, 1, 1, 1, 1, lse);
    p.want_lse = 0;
    attn__ref_attention(&p, &qv, &kv, &vv, &ov, NULL, &lv, NULL);
    ck_assert(lse[0] == 123.0f);
}
END_TEST

/* Q, K, V and O stored [B, H, S, D] and described through strides; O has gaps that must
 * stay untouched. Per head: k = (1, 0); v(h0) = (0, 4), v(h1) = (8, 0). */
START_TEST(test_strides_bhsd)
{
    attn__problem p = problem(1, 2, 2, 2, 2, 1, 1, 1.0);
    float qb[4] = {LN3, 0, /* h1 */ -LN3, 0}; /* [h][s] */
    float kb[4] = {1, 0, /* h1 */ 1, 0};
    float vb[4] = {0, 4, /* h1 */ 8, 0};
    float ob[8];
    for (int i = 0; i < 8; i++)
        ob[i] = -7.0f;
    attn__view q = {ATTN_DTYPE_F32, {1, 2, 2, 1}, {4, 1, 2, 1}, qb};
    attn__view k = {ATTN_DTYPE_F32, {1, 2, 2, 1}, {4, 1, 2, 1}, kb};
    attn__view v = {ATTN_DTYPE_F32, {1, 2, 2, 1}, {4, 1, 2, 1}, vb};
    attn__view o = {ATTN_DTYPE_F32, {1, 2, 2, 1}, {8, 1, 4, 1}, ob}; /* slots 0,1,4,5 */
    attn__ref_attention(&p, &q, &k, &v, &o, NULL, NULL, NULL);
    ck_close(ob[0], 1.0); /* h0 s0: weights 3/4, 1/4 */
    ck_close(ob[1], 2.0); /* h0 s1: 1/2, 1/2 */
    ck_close(ob[4], 2.0); /* h1 s0: weights 1/4, 3/4 */
    ck_close(ob[5], 4.0); /* h1 s1: 1/2, 1/2 */
    ck_assert(ob[2] == -7.0f && ob[3] == -7.0f && ob[6] == -7.0f && ob[7] == -7.0f);
}
END_TEST

/* Zero strides broadcast inputs: two batches share one K and V; D is broadcast too. */
START_TEST(test_zero_stride_inputs)
{
    attn__problem p = problem(2, 1, 1, 1, 2, 3, 1, 1.0);
    float qb[2] = {LN3, 0}; /* one value per batch, repeated along D (stride 0) */
    float kb[2] = {1.0f / 3, 0};
    float vb[2] = {0, 4};
    float ob[2];
    attn__view q = {ATTN_DTYPE_F32, {2, 1, 1, 3}, {1, 1, 1, 0}, qb};
    attn__view k = {ATTN_DTYPE_F32, {2, 2, 1, 3}, {0, 1, 1, 0}, kb};
    attn__view v = {ATTN_DTYPE_F32, {2, 2, 1, 1}, {0, 1, 1, 1}, vb};
    attn__view o = view4(ATTN_DTYPE_F32, 2, 1, 1, 1, ob);
    attn__ref_attention(&p, &q, &k, &v, &o, NULL, NULL, NULL);
    ck_close(ob[0], 1.0); /* scores 3 * ln3 / 3 = ln3, 0 */
    ck_close(ob[1], 2.0);
}
END_TEST

/* An additive mask of shape [1, 1, Sq, Skv] applies to every batch and head. */
START_TEST(test_broadcast_mask)
{
    attn__problem p = problem(2, 2, 2, 1, 2, 1, 1, 1.0);
    p.mask_kind = ATTN_MASK_ADDITIVE;
    float q[4] = {0}, k[8];
    for (int i = 0; i < 8; i++)
        k[i] = 1.0f;
    /* v[b][j][h]: batch 0 (0, 4) per head; batch 1 (0, 8) per head. */
    float v[8] = {0, 0, 4, 4, /**/ 0, 0, 8, 8};
    float bias[2] = {0, LN3};
    attn__view m = view4(ATTN_DTYPE_F32, 1, 1, 1, 2, bias);
    float o[4], lse[4];
    run_dense(&p, q, k, v, o, lse, &m, NULL);
    ck_close(o[0], 3.0);
    ck_close(o[1], 3.0);
    ck_close(o[2], 6.0);
    ck_close(o[3], 6.0);
    for (int i = 0; i < 4; i++)
        ck_close(lse[i], log(4.0));
}
END_TEST

/* A boolean mask of shape [B, 1, Sq, Skv]: per batch, shared by the heads. */
START_TEST(test_broadcast_mask_heads)
{
    attn__problem p = problem(2, 2, 1, 1, 2, 1, 1, 1.0);
    p.mask_kind = ATTN_MASK_BOOLEAN;
    float q[4] = {0}, k[4] = {1, 1, 1, 1}, v[4] = {5, 9, /**/ 6, 10};
    uint8_t mask[4] = {1, 0, /**/ 0, 1};
    attn__view m = view4(ATTN_DTYPE_U8, 2, 1, 1, 2, mask);
    float o[4], lse[4];
    run_dense(&p, q, k, v, o, lse, &m, NULL);
    ck_close(o[0], 5.0);
    ck_close(o[1], 5.0);
    ck_close(o[2], 10.0);
    ck_close(o[3], 10.0);
}
END_TEST

/* F16 storage: inputs exactly representable, outputs rounded to half. 5/3 and 8/3 round
 * to 0x3EAB (1 + 683/1024) and 0x4155 (2 * (1 + 341/1024)). */
START_TEST(test_f16_storage)
{
    attn__problem p = problem(1, 1, 1, 1, 2, 2, 2, LN2);
    p.dtype = ATTN_DTYPE_F16;
    uint16_t q[2] = {0x3C00, 0x0000};                 /* 1, 0 */
    uint16_t k[4] = {0x3C00, 0x0000, 0x0000, 0x4500}; /* (1, 0), (0, 5) */
    uint16_t v[4] = {0x3C00, 0x4000, 0x4200, 0x4400}; /* (1, 2), (3, 4) */
    uint16_t o[2] = {0xFFFF, 0xFFFF};
    float lse[1];
    attn__view qv = view4(ATTN_DTYPE_F16, 1, 1, 1, 2, q);
    attn__view kv = view4(ATTN_DTYPE_F16, 1, 2, 1, 2, k);
    attn__view vv = view4(ATTN_DTYPE_F16, 1, 2, 1, 2, v);
    attn__view ov = view4(ATTN_DTYPE_F16, 1, 1, 1, 2, o);
    attn__view lv = view4(ATTN_DTYPE_F32, 1, 1, 1, 1, lse);
    p.want_lse = 1;
    attn__ref_attention(&p, &qv, &kv, &vv, &ov, NULL, &lv, NULL);
    ck_assert_uint_eq(o[0], 0x3EAB);
    ck_assert_uint_eq(o[1], 0x4155);
    ck_close(lse[0], LN3);

    /* Equal rows of 0.1 (0x2E66 = 0.0999755859375) average back to the same bits. */
    uint16_t v2[4] = {0x2E66, 0xAE66, 0x2E66, 0xAE66};
    uint16_t q2[2] = {0, 0};
    qv.data = q2;
    vv.data = v2;
    attn__ref_attention(&p, &qv, &kv, &vv, &ov, NULL, &lv, NULL);
    ck_assert_uint_eq(o[0], 0x2E66);
    ck_assert_uint_eq(o[1], 0xAE66);
}
END_TEST

/* ---- half conversion ------------------------------------------------------------------ */

static uint32_t float_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

START_TEST(test_half_to_float)
{
    ck_assert(attn__half_to_float(0x3C00) == 1.0f);
    ck_assert(attn__half_to_float(0xC000) == -2.0f);
    ck_assert(attn__half_to_float(0x3555) == 0.333251953125f);
    ck_assert(attn__half_to_float(0x7BFF) == 65504.0f);
    ck_assert(attn__half_to_float(0x0400) == 0x1p-14f);    /* smallest normal */
    ck_assert(attn__half_to_float(0x0001) == 0x1p-24f);    /* smallest subnormal */
    ck_assert(attn__half_to_float(0x03FF) == 1023 * 0x1p-24f); /* largest subnormal */
    ck_assert(attn__half_to_float(0x8001) == -0x1p-24f);
    ck_assert_uint_eq(float_bits(attn__half_to_float(0x0000)), 0x00000000u);
    ck_assert_uint_eq(float_bits(attn__half_to_float(0x8000)), 0x80000000u); /* -0 */
    ck_assert(isinf(attn__half_to_float(0x7C00)) && attn__half_to_float(0x7C00) > 0);
    ck_assert(isinf(attn__half_to_float(0xFC00)) && attn__half_to_float(0xFC00) < 0);
    ck_assert(isnan(attn__half_to_float(0x7E00)));
    ck_assert(isnan(attn__half_to_float(0x7C01))); /* signalling NaN stays NaN */
    ck_assert(isnan(attn__half_to_float(0xFFFF)));
}
END_TEST

START_TEST(test_float_to_half)
{
    ck_assert_uint_eq(attn__float_to_half(1.0f), 0x3C00);
    ck_assert_uint_eq(attn__float_to_half(-2.0f), 0xC000);
    ck_assert_uint_eq(attn__float_to_half(0.0f), 0x0000);
    ck_assert_uint_eq(attn__float_to_half(-0.0f), 0x8000);
    ck_assert_uint_eq(attn__float_to_half(65504.0f), 0x7BFF);
    ck_assert_uint_eq(attn__float_to_half(65519.0f), 0x7BFF);  /* below the midpoint */
    ck_assert_uint_eq(attn__float_to_half(65520.0f), 0x7C00);  /* tie -> even = inf */
    ck_assert_uint_eq(attn__float_to_half(1e10f), 0x7C00);
    ck_assert_uint_eq(attn__float_to_half(-1e10f), 0xFC00);
    ck_assert_uint_eq(attn__float_to_half(INFINITY), 0x7C00);
    ck_assert_uint_eq(attn__float_to_half(-INFINITY), 0xFC00);
    ck_assert_uint_eq(attn__float_to_half(0x1p-14f), 0x0400);
    ck_assert_uint_eq(attn__float_to_half(0x1p-24f), 0x0001);
    ck_assert_uint_eq(attn__float_to_half(-0x1p-24f), 0x8001);
    ck_assert_uint_eq(attn__float_to_half(1023 * 0x1p-24f), 0x03FF);
    ck_assert_uint_eq(attn__float_to_half(1023.5f * 0x1p-24f), 0x0400); /* tie -> even */
    ck_assert_uint_eq(attn__float_to_half(0x1p-25f), 0x0000);  /* tie -> even = 0 */
    ck_assert_uint_eq(attn__float_to_half(-0x1p-25f), 0x8000);
    ck_assert_uint_eq(attn__float_to_half(nextafterf(0x1p-25f, 1.0f)), 0x0001);
    ck_assert_uint_eq(attn__float_to_half(0x1.8p-24f), 0x0002); /* 1.5 ulp: tie -> 2 */
    ck_assert_uint_eq(attn__float_to_half(0x1.4p-23f), 0x0002); /* 2.5 ulp: tie -> 2 */
    ck_assert_uint_eq(attn__float_to_half(0x1.8p-25f), 0x0001); /* 0.75 ulp -> 1 */
    ck_assert_uint_eq(attn__float_to_half(1e-40f), 0x0000);     /* float subnormal */
    ck_assert_uint_eq(attn__float_to_half(1.0f + 0x1p-11f), 0x3C00);      /* tie -> even */
    ck_assert_uint_eq(attn__float_to_half(1.0f + 3 * 0x1p-11f), 0x3C02);  /* tie -> even */
    ck_assert_uint_eq(attn__float_to_half(1.0f + 0x1.2p-11f), 0x3C01);    /* above tie */
    ck_assert_uint_eq(attn__float_to_half(2049.0f), 0x6800);
    ck_assert_uint_eq(attn__float_to_half(2051.0f), 0x6802);
    ck_assert_uint_eq(attn__float_to_half(0.1f), 0x2E66);
    ck_assert_uint_eq(attn__float_to_half(1.0f / 3), 0x3555);
    ck_assert_uint_eq(attn__float_to_half(2047.5f * 0x1p-25f), 0x0400); /* rounds into normal */

    uint16_t n = attn__float_to_half(NAN);
    ck_assert((n & 0x7C00) == 0x7C00 && (n & 0x03FF) != 0);
    /* A NaN whose payload lies only in the low float bits must not become inf. */
    uint32_t low_nan_bits = 0x7F800001u;
    float low_nan;
    memcpy(&low_nan, &low_nan_bits, sizeof low_nan);
    n = attn__float_to_half(low_nan);
    ck_assert((n & 0x7C00) == 0x7C00 && (n & 0x03FF) != 0);
}
END_TEST

/* Every non-NaN half survives half -> float -> half; every NaN stays a NaN. */
START_TEST(test_half_round_trip)
{
    for (uint32_t h = 0; h <= 0xFFFF; h++) {
        float f = attn__half_to_float((uint16_t)h);
        uint16_t back = attn__float_to_half(f);
        if ((h & 0x7C00) == 0x7C00 && (h & 0x03FF)) {
            ck_assert_msg(isnan(f), "0x%04x", (unsigned)h);
            ck_assert_msg((back & 0x7C00) == 0x7C00 && (back & 0x03FF), "0x%04x", (unsigned)h);
        } else {
            ck_assert_msg(back == h, "0x%04x -> %a -> 0x%04x", (unsigned)h, (double)f,
                          (unsigned)back);
        }
    }
}
END_TEST

/* ---- the reference backend's host "device" ----------------------------------------- */

START_TEST(test_backend_device)
{
    const attn__backend_ops *ops = &attn__reference_ops;
    ck_assert_int_eq(ops->id, ATTN_BACKEND_REFERENCE);
    ck_assert_str_eq(ops->name, "reference");
    ck_assert_int_eq(ops->lang, ATTN__LANG_NONE);

    uint32_t count = 0;
    ck_assert_int_eq(ops->device_count(&count), ATTN_OK);
    ck_assert_uint_eq(count, 1);

    attn_device_info info;
    memset(&info, 0xAB, sizeof info);
    info.struct_size = sizeof info;
    ck_assert_int_eq(ops->device_info(0, &info), ATTN_OK);
    ck_assert_uint_eq(info.struct_size, sizeof info);
    ck_assert_int_eq(info.backend, ATTN_BACKEND_REFERENCE);
    ck_assert_int_eq(info.type, ATTN_DEVICE_CPU);
    ck_assert_str_eq(info.name, "attn reference (double precision, host)");
    ck_assert_str_eq(info.vendor, "attn");
    ck_assert_str_eq(info.api_version, "host C");
    ck_assert_uint_eq(info.compute_units, 1);
    ck_assert(info.global_mem_bytes > 0);
    ck_assert(info.max_alloc_bytes == info.global_mem_bytes);
    ck_assert(info.max_binding_bytes == info.global_mem_bytes);
    ck_assert(info.local_mem_bytes == 0);
    ck_assert_uint_eq(info.max_work_group_size, 1);
    ck_assert(info.fp16_storage == 1 && info.fp64 == 1 && info.unified_memory == 1);
    ck_assert_int_eq(ops->device_info(1, &info), ATTN_ERROR_NO_DEVICE);
}
END_TEST

/* Buffers are host memory: writes and reads are copies, a 0-byte buffer is valid. Only
 * success paths here, so no context is needed for error details. */
START_TEST(test_backend_buffers)
{
    const attn__backend_ops *ops = &attn__reference_ops;
    void *dev = NULL, *buf = NULL, *empty = NULL;
    ck_assert_int_eq(ops->open(NULL, 0, &dev), ATTN_OK);
    ck_assert_ptr_nonnull(dev);

    ck_assert_int_eq(ops->buffer_alloc(dev, 16, &buf), ATTN_OK);
    unsigned char *host = ops->buffer_host_ptr(dev, buf);
    ck_assert_ptr_nonnull(host);
    for (int i = 0; i < 16; i++)
        ck_assert_uint_eq(host[i], 0); /* zero-initialised */
    const unsigned char src[4] = {1, 2, 3, 4};
    ck_assert_int_eq(ops->buffer_write(dev, buf, 6, src, 4), ATTN_OK);
    ck_assert(host[5] == 0 && host[6] == 1 && host[9] == 4 && host[10] == 0);
    unsigned char dst[3] = {0};
    ck_assert_int_eq(ops->buffer_read(dev, buf, 7, dst, 3), ATTN_OK);
    ck_assert(dst[0] == 2 && dst[1] == 3 && dst[2] == 4);

    ck_assert_int_eq(ops->buffer_alloc(dev, 0, &empty), ATTN_OK);
    ck_assert_ptr_nonnull(empty);
    ck_assert_int_eq(ops->buffer_write(dev, empty, 0, src, 0), ATTN_OK);
    ck_assert_int_eq(ops->finish(dev), ATTN_OK);

    ops->buffer_free(dev, empty);
    ops->buffer_free(dev, buf);
    ops->close(dev);
}
END_TEST

/* ---- patterns, positions and logit transforms (issue 6), through the public API on the
 * reference backend; expected values are worked out by hand or by direct formulas here. */
#include <attn/attn.h>

/* Runs d on a fresh reference context. mask: f32 or u8 [B, H, Sq, Skv] by d->mask_kind;
 * lse / probs are written when the description asks for them. Returns the plan status. */
static attn_status api_run(const attn_desc *d, const float *q, const float *k, const float *v,
                           void *mask, float *o, float *lse, float *probs)
{
    attn_context_params cp = ATTN_CONTEXT_PARAMS_INIT;
    cp.backend = ATTN_BACKEND_REFERENCE;
    cp.cache_dir = "";
    attn_context *ctx = NULL;
    ck_assert_int_eq(attn_context_create(&cp, &ctx), ATTN_OK);
    attn_plan *plan = NULL;
    attn_status st = attn_plan_create(ctx, d, &plan);
    if (st == ATTN_OK) {
        const int64_t B = d->batch, H = d->num_heads, Hk = d->num_kv_heads ? d->num_kv_heads : H;
        const int64_t Dv = d->v_head_dim ? d->v_head_dim : d->head_dim;
        attn_run_args a = ATTN_RUN_ARGS_INIT;
        a.q = attn_tensor_host(ATTN_DTYPE_F32, B, d->q_len, H, d->head_dim, (void *)q);
        a.k = attn_tensor_host(ATTN_DTYPE_F32, B, d->kv_len, Hk, d->head_dim, (void *)k);
        a.v = attn_tensor_host(ATTN_DTYPE_F32, B, d->kv_len, Hk, Dv, (void *)v);
        a.o = attn_tensor_host(ATTN_DTYPE_F32, B, d->q_len, H, Dv, o);
        if (d->mask_kind != ATTN_MASK_NONE)
            a.mask = attn_tensor_host(d->mask_kind == ATTN_MASK_ADDITIVE ? ATTN_DTYPE_F32
                                                                         : ATTN_DTYPE_U8,
                                      B, H, d->q_len, d->kv_len, mask);
        if (d->want_lse)
            a.lse = attn_tensor_host(ATTN_DTYPE_F32, B, H, d->q_len, 1, lse);
        if (d->want_probs)
            a.probs = attn_tensor_host(ATTN_DTYPE_F32, B,
                                       d->want_probs == ATTN_PROBS_ONE_HEAD ? 1 : H, d->q_len,
                                       d->kv_len, probs);
        st = attn_plan_run(plan, &a);
        ck_assert_msg(st == ATTN_OK, "run: %s", attn_last_detail());
        attn_plan_destroy(plan);
    }
    attn_context_destroy(ctx);
    return st;
}

static void fill_rand(float *x, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; ++i) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)((seed >> 8) * (2.0 / 16777216.0) - 1.0);
    }
}

/* 1 head, 6 tokens, d = 1, q = 0: every visible key scores 0, so o_i is the mean of the
 * visible v_j = j and lse_i = log(count). */
#define PT 6
static void run_pattern_rows(const attn_pattern *pat, int causal, float o[PT], float lse[PT])
{
    float q[PT] = {0}, k[PT] = {0}, v[PT];
    for (int j = 0; j < PT; ++j)
        v[j] = (float)j;
    attn_desc d = ATTN_DESC_INIT;
    d.q_len = d.kv_len = PT;
    d.head_dim = 1;
    d.causal = causal;
    d.want_lse = 1;
    d.patterns = pat;
    d.num_patterns = 1;
    ck_assert_int_eq(api_run(&d, q, k, v, NULL, o, lse, NULL), ATTN_OK);
}

START_TEST(test_window_edges)
{
    attn_pattern pat = ATTN_PATTERN_INIT;
    pat.window = 1;
    pat.window_left = 1;
    pat.window_right = 1;
    float o[PT], lse[PT];
    run_pattern_rows(&pat, 0, o, lse);
    ck_close(o[0], 0.5); /* keys 0, 1: the left edge */
    ck_close(lse[0], LN2);
    ck_close(o[2], 2.0); /* keys 1, 2, 3 */
    ck_close(lse[2], LN3);
    ck_close(o[5], 4.5); /* keys 4, 5: the right edge */
    /* causal cuts the right side; left 2 keeps three keys */
    pat.window_left = 2;
    pat.window_right = ATTN_UNBOUNDED;
    run_pattern_rows(&pat, 1, o, lse);
    ck_close(o[0], 0.0);
    ck_close(o[1], 0.5);
    ck_close(o[4], 3.0); /* keys 2, 3, 4 */
    ck_close(lse[4], LN3);
    /* window 0/0: the diagonal only */
    pat.window_left = pat.window_right = 0;
    run_pattern_rows(&pat, 0, o, lse);
    for (int i = 0; i < PT; ++i) {
        ck_close(o[i], (double)i);
        ck_close(lse[i], 0.0);
    }
}
END_TEST

START_TEST(test_dilated)
{
    attn_pattern pat = ATTN_PATTERN_INIT;
    pat.dilation = 2;
    pat.dilation_left = ATTN_UNBOUNDED;
    pat.dilation_right = ATTN_UNBOUNDED;
    float o[PT], lse[PT];
    run_pattern_rows(&pat, 1, o, lse);
    ck_close(o[5], 3.0); /* keys 1, 3, 5 */
    ck_close(lse[5], LN3);
    ck_close(o[4], 2.0); /* keys 0, 2, 4 */
    pat.dilation_left = 2; /* distances 0 and 2 only */
    run_pattern_rows(&pat, 1, o, lse);
    ck_close(o[5], 4.0);
    ck_close(lse[5], LN2);
    /* non-causal, both sides: row 2 sees 0, 2, 4 */
    run_pattern_rows(&pat, 0, o, lse);
    ck_close(o[2], 2.0);
    ck_close(lse[2], LN3);
    /* union with a window 0/0: still the same set (the diagonal is in both) */
    pat.window = 1;
    run_pattern_rows(&pat, 0, o, lse);
    ck_close(o[2], 2.0);
}
END_TEST

START_TEST(test_global_tokens_at_ends)
{
    int64_t g[2] = {0, PT - 1};
    attn_pattern pat = ATTN_PATTERN_INIT;
    pat.window = 1; /* diagonal */
    pat.global_tokens = g;
    pat.num_global = 2;
    float o[PT], lse[PT];
    run_pattern_rows(&pat, 0, o, lse);
    ck_close(o[0], 2.5); /* a global query sees everything */
    ck_close(o[PT - 1], 2.5);
    ck_close(lse[0], log(6.0));
    ck_close(o[2], 7.0 / 3.0); /* keys 0, 2, 5 */
    ck_close(lse[2], LN3);
    /* causal: the global last row still only sees the past, row 2 sees 0 and 2 */
    run_pattern_rows(&pat, 1, o, lse);
    ck_close(o[PT - 1], 2.5);
    ck_close(o[2], 1.0);
    ck_close(o[0], 0.0);
}
END_TEST

/* The documented generator, written again from attn.h. */
static uint64_t doc_mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

START_TEST(test_bigbird_reproducible)
{
    enum { S = 32, BS = 4, R = 2, H = 2 };
    float q[S * H] = {0}, k[S * H] = {0}, v[S * H] = {0};
    static float p1[H * S * S], p2[H * S * S], p3[H * S * S];
    float o[S * H];
    attn_pattern pat = ATTN_PATTERN_INIT;
    pat.random_block_size = BS;
    pat.random_blocks = R;
    pat.random_seed = 12345;
    attn_desc d = ATTN_DESC_INIT;
    d.num_heads = H;
    d.q_len = d.kv_len = S;
    d.head_dim = 1;
    d.patterns = &pat;
    d.num_patterns = 1;
    d.want_probs = ATTN_PROBS_ALL_HEADS;
    ck_assert_int_eq(api_run(&d, q, k, v, NULL, o, NULL, p1), ATTN_OK);
    ck_assert_int_eq(api_run(&d, q, k, v, NULL, o, NULL, p2), ATTN_OK);
    ck_assert(memcmp(p1, p2, sizeof p1) == 0);
    pat.random_seed = 54321;
    ck_assert_int_eq(api_run(&d, q, k, v, NULL, o, NULL, p3), ATTN_OK);
    ck_assert(memcmp(p1, p3, sizeof p1) != 0);
    /* seed 12345: row i sees exactly the key blocks of the documented draws, uniformly */
    for (int h = 0; h < H; ++h)
        for (int i = 0; i < S; ++i) {
            int seen[S / BS] = {0}, count = 0;
            for (int t = 0; t < R; ++t) {
                uint64_t x = doc_mix(doc_mix(doc_mix(12345ull ^ (uint64_t)h) ^ (uint64_t)(i / BS)) ^
                                     (uint64_t)t);
                seen[x % (S / BS)] = 1;
            }
            for (int b = 0; b < S / BS; ++b)
                count += seen[b] * BS;
            for (int j = 0; j < S; ++j)
                ck_close(p1[(h * S + i) * S + j], seen[j / BS] ? 1.0 / count : 0.0);
        }
}
END_TEST

START_TEST(test_bsr_equals_mask)
{
    enum { B = 2, H = 2, SQ = 10, SK = 13, D = 8 };
    static float q[B * SQ * H * D], k[B * SK * H * D], v[B * SK * H * D];
    static float o1[B * SQ * H * D], o2[B * SQ * H * D], l1[B * H * SQ], l2[B * H * SQ];
    static uint8_t mask[B * H * SQ * SK];
    fill_rand(q, sizeof q / 4, 1);
    fill_rand(k, sizeof k / 4, 2);
    fill_rand(v, sizeof v / 4, 3);
    /* blocks 4 x 3: 3 block rows, 5 block columns (ragged at both ends) */
    const int32_t row_ptr[4] = {0, 2, 2, 5};
    const int32_t col_idx[5] = {0, 4, 1, 2, 4};
    attn_pattern pat = ATTN_PATTERN_INIT;
    pat.bsr_block_q = 4;
    pat.bsr_block_k = 3;
    pat.bsr_row_ptr = row_ptr;
    pat.bsr_col_idx = col_idx;
    for (int b = 0; b < B; ++b)
        for (int h = 0; h < H; ++h)
            for (int i = 0; i < SQ; ++i)
                for (int j = 0; j < SK; ++j) {
                    int r = i / 4, c = j / 3, on = 0;
                    for (int e = row_ptr[r]; e < row_ptr[r + 1]; ++e)
                        on |= col_idx[e] == c;
                    mask[((b * H + h) * SQ + i) * SK + j] = (uint8_t)on;
                }
    attn_desc d = ATTN_DESC_INIT;
    d.batch = B;
    d.num_heads = H;
    d.q_len = SQ;
    d.kv_len = SK;
    d.head_dim = D;
    d.want_lse = 1;
    d.patterns = &pat;
    d.num_patterns = 1;
    ck_assert_int_eq(api_run(&d, q, k, v, NULL, o1, l1, NULL), ATTN_OK);
    attn_desc m = ATTN_DESC_INIT;
    m.batch = B;
    m.num_heads = H;
    m.q_len = SQ;
    m.kv_len = SK;
    m.head_dim = D;
    m.want_lse = 1;
    m.mask_kind = ATTN_MASK_BOOLEAN;
    ck_assert_int_eq(api_run(&m, q, k, v, mask, o2, l2, NULL), ATTN_OK);
    ck_assert(memcmp(o1, o2, sizeof o1) == 0);
    ck_assert(memcmp(l1, l2, sizeof l1) == 0);
    ck_neg_inf(l1[4]); /* block row 1 lists nothing: row 4 is fully masked */
    ck_close(o1[4 * H * D], 0.0);
}
END_TEST

START_TEST(test_per_head_mix)
{
    enum { H = 3, S = 12, D = 4 };
    static float q[S * H * D], k[S * H * D], v[S * H * D], o[S * H * D];
    static float q1[S * D], k1[S * D], v1[S * D], o1[S * D];
    fill_rand(q, sizeof q / 4, 7);
    fill_rand(k, sizeof k / 4, 8);
    fill_rand(v, sizeof v / 4, 9);
    int64_t g[2] = {0, 5};
    attn_pattern pats[H] = {ATTN_PATTERN_INIT, ATTN_PATTERN_INIT, ATTN_PATTERN_INIT};
    pats[0].window = 1; /* Longformer local */
    pats[0].window_left = 2;
    pats[0].window_right = 2;
    pats[1].dilation = 3; /* strided */
    pats[1].dilation_left = pats[1].dilation_right = ATTN_UNBOUNDED;
    pats[2].window = 1; /* local + global */
    pats[2].global_tokens = g;
    pats[2].num_global = 2;
    attn_desc d = ATTN_DESC_INIT;
    d.num_heads = H;
    d.q_len = d.kv_len = S;
    d.head_dim = D;
    d.patterns = pats;
    d.num_patterns = H;
    ck_assert_int_eq(api_run(&d, q, k, v, NULL, o, NULL, NULL), ATTN_OK);
    for (int h = 0; h < H; ++h) {
        for (int t = 0; t < S; ++t)
            for (int c = 0; c < D; ++c) {
                q1[t * D + c] = q[(t * H + h) * D + c];
                k1[t * D + c] = k[(t * H + h) * D + c];
                v1[t * D + c] = v[(t * H + h) * D + c];
            }
        attn_desc one = d;
        one.num_heads = 1;
        one.patterns = &pats[h];
        one.num_patterns = 1;
        ck_assert_int_eq(api_run(&one, q1, k1, v1, NULL, o1, NULL, NULL), ATTN_OK);
        for (int t = 0; t < S; ++t)
            for (int c = 0; c < D; ++c)
                ck_assert_float_eq(o[(t * H + h) * D + c], o1[t * D + c]);
    }
}
END_TEST

START_TEST(test_rope_hand_and_decode)
{
    /* d = 2, one pair, angle = position (theta_0 = base^0 = 1). q = k_j = (1, 0):
     * score_j = scale cos(pos_q - pos_k). */
    {
        float q[2] = {1, 0}, k[4] = {1, 0, 1, 0}, v[2] = {0, 1}, o[1], lse[1];
        attn_desc d = ATTN_DESC_INIT;
        d.kv_len = 2;
        d.head_dim = 2;
        d.v_head_dim = 1;
        d.scale = 1.0f;
        d.want_lse = 1;
        d.rope = 1;
        d.rope_q_offset = 3;
        d.rope_k_offset = 2; /* keys at 2 and 3 */
        ck_assert_int_eq(api_run(&d, q, k, v, NULL, o, lse, NULL), ATTN_OK);
        double s0 = cos(1.0), s1 = 1.0;
        ck_close(o[0], exp(s1) / (exp(s0) + exp(s1)));
        ck_close(lse[0], log(exp(s0) + exp(s1)));
    }
    /* A decode row at offset p equals that row of the full causal run, for both layouts
     * and a partial rotary width. */
    enum { S = 9, H = 2, D = 8 };
    static float q[S * H * D], k[S * H * D], v[S * H * D], o[S * H * D], od[H * D];
    fill_rand(q, sizeof q / 4, 11);
    fill_rand(k, sizeof k / 4, 12);
    fill_rand(v, sizeof v / 4, 13);
    for (int inter = 0; inter < 2; ++inter) {
        attn_desc d = ATTN_DESC_INIT;
        d.num_heads = H;
        d.q_len = d.kv_len = S;
        d.head_dim = D;
        d.causal = 1;
        d.rope = 1;
        d.rope_dims = 6;
        d.rope_base = 100.0f;
        d.rope_interleaved = inter;
        ck_assert_int_eq(api_run(&d, q, k, v, NULL, o, NULL, NULL), ATTN_OK);
        attn_desc dd = d;
        dd.q_len = 1;
        dd.rope_q_offset = S - 1;
        ck_assert_int_eq(api_run(&dd, q + (S - 1) * H * D, k, v, NULL, od, NULL, NULL), ATTN_OK);
        for (int c = 0; c < H * D; ++c)
            ck_assert_msg(fabs(od[c] - o[(S - 1) * H * D + c]) <= 1e-6, "layout %d: %g vs %g",
                          inter, od[c], o[(S - 1) * H * D + c]);
        /* shifting every position by the same amount changes nothing (relative) */
        attn_desc sh = d;
        sh.rope_q_offset = sh.rope_k_offset = 1000;
        static float os[S * H * D];
        ck_assert_int_eq(api_run(&sh, q, k, v, NULL, os, NULL, NULL), ATTN_OK);
        for (int c = 0; c < S * H * D; ++c)
            ck_assert(fabs(os[c] - o[c]) <= 1e-5);
    }
}
END_TEST

START_TEST(test_alibi_equals_bias)
{
    enum { H = 4, SQ = 5, SK = 7, D = 4 };
    static float q[SQ * H * D], k[SK * H * D], v[SK * H * D], o1[SQ * H * D], o2[SQ * H * D];
    static float bias[H * SQ * SK];
    fill_rand(q, sizeof q / 4, 21);
    fill_rand(k, sizeof k / 4, 22);
    fill_rand(v, sizeof v / 4, 23);
    const float slopes[H] = {0.5f, 0.25f, 1.0f, 2.0f};
    for (int pass = 0; pass < 2; ++pass) {
        attn_desc d = ATTN_DESC_INIT;
        d.num_heads = H;
        d.q_len = SQ;
        d.kv_len = SK;
        d.head_dim = D;
        d.causal = 1;
        d.alibi = 1;
        d.alibi_slopes = pass ? slopes : NULL;
        ck_assert_int_eq(api_run(&d, q, k, v, NULL, o1, NULL, NULL), ATTN_OK);
        for (int h = 0; h < H; ++h)
            for (int i = 0; i < SQ; ++i)
                for (int j = 0; j < SK; ++j) {
                    double slope = pass ? slopes[h] : pow(2.0, -8.0 * (h + 1) / H);
                    int pos = i + SK - SQ;
                    bias[(h * SQ + i) * SK + j] = (float)(-slope * abs(pos - j));
                }
        attn_desc m = d;
        m.alibi = 0;
        m.alibi_slopes = NULL;
        m.mask_kind = ATTN_MASK_ADDITIVE;
        ck_assert_int_eq(api_run(&m, q, k, v, bias, o2, NULL, NULL), ATTN_OK);
        for (size_t c = 0; c < sizeof o1 / 4; ++c)
            ck_assert(fabs(o1[c] - o2[c]) <= 1e-6);
    }
}
END_TEST

START_TEST(test_t5_buckets_and_bias)
{
    /* worked by hand from T5's formula */
    ck_assert_int_eq(attn__t5_bucket(-3, 32, 128, 1), 3);
    ck_assert_int_eq(attn__t5_bucket(3, 32, 128, 1), 19);
    ck_assert_int_eq(attn__t5_bucket(0, 32, 128, 1), 0);
    ck_assert_int_eq(attn__t5_bucket(-20, 32, 128, 1), 10); /* 8 + int(8 ln2.5 / ln16) */
    ck_assert_int_eq(attn__t5_bucket(-200, 32, 128, 1), 15);
    ck_assert_int_eq(attn__t5_bucket(200, 32, 128, 1), 31);
    ck_assert_int_eq(attn__t5_bucket(5, 32, 128, 0), 0);
    ck_assert_int_eq(attn__t5_bucket(-5, 32, 128, 0), 5);
    ck_assert_int_eq(attn__t5_bucket(-40, 32, 128, 0), 23); /* 16 + int(16 ln2.5 / ln8) */
    /* The bias: one head, 8 buckets bidirectional (4 per side, 2 exact), max distance 6.
     * Offsets r = j - i over 5 tokens: bucket(r) listed by hand. */
    enum { S = 5, NB = 8 };
    const float table[NB] = {0.1f, -0.7f, 0.4f, 1.3f, -0.2f, 0.9f, -1.1f, 0.6f};
    static const int hand[9] = {/* r = -4..4 */ 3, 2, 2, 1, 0, 5, 6, 6, 7};
    for (int r = -4; r <= 4; ++r)
        ck_assert_int_eq(attn__t5_bucket(r, NB, 6, 1), hand[r + 4]);
    float q[S * 4], k[S * 4], v[S * 4], o1[S * 4], o2[S * 4], bias[S * S];
    fill_rand(q, S * 4, 31);
    fill_rand(k, S * 4, 32);
    fill_rand(v, S * 4, 33);
    attn_desc d = ATTN_DESC_INIT;
    d.q_len = d.kv_len = S;
    d.head_dim = 4;
    d.t5_table = table;
    d.t5_num_buckets = NB;
    d.t5_max_distance = 6;
    d.t5_bidirectional = 1;
    ck_assert_int_eq(api_run(&d, q, k, v, NULL, o1, NULL, NULL), ATTN_OK);
    for (int i = 0; i < S; ++i)
        for (int j = 0; j < S; ++j)
            bias[i * S + j] = table[hand[j - i + 4]];
    attn_desc m = ATTN_DESC_INIT;
    m.q_len = m.kv_len = S;
    m.head_dim = 4;
    m.mask_kind = ATTN_MASK_ADDITIVE;
    ck_assert_int_eq(api_run(&m, q, k, v, bias, o2, NULL, NULL), ATTN_OK);
    for (int c = 0; c < S * 4; ++c)
        ck_assert(fabs(o1[c] - o2[c]) <= 1e-6);
}
END_TEST

START_TEST(test_softcap_and_sinks)
{
    /* two keys, d = 1, scale 1: raw scores 3 and -1 */
    float q[1] = {1}, k[2] = {3, -1}, v[2] = {1, 0}, o[1], lse[1], pr[2];
    attn_desc d = ATTN_DESC_INIT;
    d.kv_len = 2;
    d.head_dim = 1;
    d.scale = 1.0f;
    d.want_lse = 1;
    d.softcap = 2.0f;
    ck_assert_int_eq(api_run(&d, q, k, v, NULL, o, lse, NULL), ATTN_OK);
    double a = 2.0 * tanh(1.5), b = 2.0 * tanh(-0.5);
    ck_close(o[0], exp(a) / (exp(a) + exp(b)));
    ck_close(lse[0], log(exp(a) + exp(b)));
    /* sink 0.5 joins the denominator only */
    const float sink[1] = {0.5f};
    d.softcap = 0.0f;
    d.sinks = sink;
    d.want_probs = ATTN_PROBS_ALL_HEADS;
    ck_assert_int_eq(api_run(&d, q, k, v, NULL, o, lse, pr), ATTN_OK);
    double den = exp(3.0) + exp(-1.0) + exp(0.5);
    ck_close(o[0], exp(3.0) / den);
    ck_close(lse[0], log(den));
    ck_close(pr[0], exp(3.0) / den);
    ck_close(pr[1], exp(-1.0) / den);
    /* a sink far above every score: exact, no overflow */
    const float big[1] = {80.0f};
    d.sinks = big;
    ck_assert_int_eq(api_run(&d, q, k, v, NULL, o, lse, pr), ATTN_OK);
    ck_close(o[0], exp(3.0 - 80.0) / (1.0 + exp(3.0 - 80.0) + exp(-81.0)));
    ck_close(lse[0], 80.0 + log(1.0 + exp(-77.0) + exp(-81.0)));
}
END_TEST

START_TEST(test_probs_256)
{
    enum { H = 2, S = 256, D = 16 };
    float *q = malloc(sizeof(float) * S * H * D), *k = malloc(sizeof(float) * S * H * D);
    float *v = malloc(sizeof(float) * S * H * D), *o = malloc(sizeof(float) * S * H * D);
    float *pr = malloc(sizeof(float) * H * S * S), *p1 = malloc(sizeof(float) * S * S);
    double *row = malloc(sizeof(double) * S);
    ck_assert(q && k && v && o && pr && p1 && row);
    fill_rand(q, (size_t)S * H * D, 41);
    fill_rand(k, (size_t)S * H * D, 42);
    fill_rand(v, (size_t)S * H * D, 43);
    for (size_t c = 0; c < (size_t)S * H * D; ++c)
        q[c] *= 4.0f; /* sharper rows */
    attn_desc d = ATTN_DESC_INIT;
    d.num_heads = H;
    d.q_len = d.kv_len = S;
    d.head_dim = D;
    d.causal = 1;
    d.want_probs = ATTN_PROBS_ALL_HEADS;
    ck_assert_int_eq(api_run(&d, q, k, v, NULL, o, NULL, pr), ATTN_OK);
    const double scale = 1.0 / sqrt((double)D);
    for (int h = 0; h < H; ++h)
        for (int i = 0; i < S; ++i) {
            double m = -INFINITY, sum = 0.0, got = 0.0;
            for (int j = 0; j <= i; ++j) {
                double s = 0.0;
                for (int c = 0; c < D; ++c)
                    s += (double)q[(i * H + h) * D + c] * k[(j * H + h) * D + c];
                row[j] = s * scale;
                m = row[j] > m ? row[j] : m;
            }
            for (int j = 0; j <= i; ++j)
                sum += exp(row[j] - m);
            for (int j = 0; j < S; ++j) {
                const double p = (double)pr[((size_t)h * S + i) * S + j];
                const double want = j <= i ? exp(row[j] - m) / sum : 0.0;
                ck_assert_msg(fabs(p - want) <= 1e-6, "h %d row %d key %d: %g, want %g", h, i,
                              j, p, want);
                got += p;
            }
            ck_assert_msg(fabs(got - 1.0) <= 1e-5, "row %d sums to %.9g", i, got);
        }
    d.want_probs = ATTN_PROBS_ONE_HEAD;
    d.probs_head = 1;
    ck_assert_int_eq(api_run(&d, q, k, v, NULL, o, NULL, p1), ATTN_OK);
    ck_assert(memcmp(p1, pr + (size_t)S * S, sizeof(float) * S * S) == 0);
    free(q), free(k), free(v), free(o), free(pr), free(p1), free(row);
}
END_TEST

START_TEST(test_features_fully_masked)
{
    /* padding leaves 2 keys; a window 0/0 with bottom-right positions: query i sits at
     * i + 2 - 4, so rows 0 and 1 (positions -2, -1) see nothing; the sink changes nothing. */
    float q[4] = {1, 1, 1, 1}, k[4] = {1, 2, 3, 4}, v[4] = {5, 6, 7, 8}, o[4], lse[4], pr[16];
    int32_t lens[1] = {2};
    const float sink[1] = {1.0f};
    attn_pattern pat = ATTN_PATTERN_INIT;
    pat.window = 1;
    attn_desc d = ATTN_DESC_INIT;
    d.q_len = d.kv_len = 4;
    d.head_dim = 1;
    d.kv_lens = lens;
    d.want_lse = 1;
    d.patterns = &pat;
    d.num_patterns = 1;
    d.sinks = sink;
    d.rope = 0;
    d.want_probs = ATTN_PROBS_ALL_HEADS;
    fill_nan(o, 4);
    fill_nan(pr, 16);
    ck_assert_int_eq(api_run(&d, q, k, v, NULL, o, lse, pr), ATTN_OK);
    for (int i = 0; i < 2; ++i) {
        ck_assert(o[i] == 0.0f);
        ck_neg_inf(lse[i]);
        for (int j = 0; j < 4; ++j)
            ck_assert(pr[i * 4 + j] == 0.0f);
    }
    /* row 2 (position 0) sees key 0 beside the sink: e^1 / (e^1 + e^1) */
    ck_close(o[2], 5.0 * 0.5);
    ck_close(pr[2 * 4 + 0], 0.5);
    ck_assert(pr[2 * 4 + 2] == 0.0f); /* padding */
}
END_TEST

static Suite *ref_suite(void)
{
    Suite *s = suite_create("ref");
    TCase *tc = tcase_create("attention");
    tcase_add_test(tc, test_two_keys);
    tcase_add_test(tc, test_scale_and_lse);
    tcase_add_test(tc, test_large_scores);
    tcase_add_test(tc, test_uniform_mean);
    tcase_add_test(tc, test_causal_short_queries);
    tcase_add_test(tc, test_causal_long_queries);
    tcase_add_test(tc, test_causal_square);
    tcase_add_test(tc, test_padding);
    tcase_add_test(tc, test_padding_causal);
    tcase_add_test(tc, test_additive_bias);
    tcase_add_test(tc, test_boolean_mask);
    tcase_add_test(tc, test_gqa_shared_head);
    tcase_add_test(tc, test_gqa_mapping);
    tcase_add_test(tc, test_fully_masked);
    tcase_add_test(tc, test_no_lse);
    tcase_add_test(tc, test_strides_bhsd);
    tcase_add_test(tc, test_zero_stride_inputs);
    tcase_add_test(tc, test_broadcast_mask);
    tcase_add_test(tc, test_broadcast_mask_heads);
    tcase_add_test(tc, test_f16_storage);
    suite_add_tcase(s, tc);

    TCase *th = tcase_create("half");
    tcase_add_test(th, test_half_to_float);
    tcase_add_test(th, test_float_to_half);
    tcase_add_test(th, test_half_round_trip);
    suite_add_tcase(s, th);

    TCase *tb = tcase_create("backend");
    tcase_add_test(tb, test_backend_device);
    tcase_add_test(tb, test_backend_buffers);
    suite_add_tcase(s, tb);

    TCase *tp = tcase_create("patterns");
    tcase_add_test(tp, test_window_edges);
    tcase_add_test(tp, test_dilated);
    tcase_add_test(tp, test_global_tokens_at_ends);
    tcase_add_test(tp, test_bigbird_reproducible);
    tcase_add_test(tp, test_bsr_equals_mask);
    tcase_add_test(tp, test_per_head_mix);
    tcase_add_test(tp, test_rope_hand_and_decode);
    tcase_add_test(tp, test_alibi_equals_bias);
    tcase_add_test(tp, test_t5_buckets_and_bias);
    tcase_add_test(tp, test_softcap_and_sinks);
    tcase_add_test(tp, test_probs_256);
    tcase_add_test(tp, test_features_fully_masked);
    suite_add_tcase(s, tp);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ref_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
