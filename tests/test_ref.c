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
