/* ref.c — exact attention in double precision on host views: the project's test oracle.
 * Written for obviousness, not speed; one Skv-length score row is its only allocation. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/problem.h"

static double ref_load(const attn__view *t, int64_t i0, int64_t i1, int64_t i2, int64_t i3)
{
    int64_t off = i0 * t->stride[0] + i1 * t->stride[1] + i2 * t->stride[2] + i3 * t->stride[3];
    switch (t->dtype) {
    case ATTN_DTYPE_F32:
        return ((const float *)t->data)[off];
    case ATTN_DTYPE_F16:
        return attn__half_to_float(((const uint16_t *)t->data)[off]);
    case ATTN_DTYPE_U8:
        return ((const uint8_t *)t->data)[off];
    default:
        return 0.0;
    }
}

static void ref_store(const attn__view *t, int64_t i0, int64_t i1, int64_t i2, int64_t i3,
                      double value)
{
    int64_t off = i0 * t->stride[0] + i1 * t->stride[1] + i2 * t->stride[2] + i3 * t->stride[3];
    switch (t->dtype) {
    case ATTN_DTYPE_F32:
        ((float *)t->data)[off] = (float)value;
        break;
    case ATTN_DTYPE_F16:
        ((uint16_t *)t->data)[off] = attn__float_to_half((float)value);
        break;
    default:
        break;
    }
}

/* lse is always F32 [B, H, Sq, 1]. */
static void ref_store_lse(const attn__view *t, int64_t b, int64_t h, int64_t i, double value)
{
    ((float *)t->data)[b * t->stride[0] + h * t->stride[1] + i * t->stride[2]] = (float)value;
}

/* Mask element for (b, h, i, j); a mask dimension of size 1 broadcasts. */
static double ref_mask(const attn__view *m, int64_t b, int64_t h, int64_t i, int64_t j)
{
    return ref_load(m, m->shape[0] == 1 ? 0 : b, m->shape[1] == 1 ? 0 : h,
                    m->shape[2] == 1 ? 0 : i, m->shape[3] == 1 ? 0 : j);
}

void attn__ref_attention(const attn__problem *p, const attn__view *q, const attn__view *k,
                         const attn__view *v, const attn__view *o, const attn__view *mask,
                         const attn__view *lse, const int32_t *kv_lens)
{
    if (!p || !q || !k || !v || !o || p->num_kv_heads <= 0 || p->num_heads % p->num_kv_heads)
        return;
    const int64_t B = p->batch, H = p->num_heads, Sq = p->q_len, Skv = p->kv_len;
    const int64_t D = p->head_dim, Dv = p->v_head_dim;
    const int64_t group = H / p->num_kv_heads;
    const int use_mask = p->mask_kind != ATTN_MASK_NONE && mask && mask->data;
    const int use_lse = p->want_lse && lse && lse->data;

    if (Skv < 0 || (uint64_t)Skv > SIZE_MAX / sizeof(double))
        return;
    /* w[j]: the score of key j, then exp(score - max); 0 for keys that are not visible. */
    double *w = malloc(Skv > 0 ? (size_t)Skv * sizeof(double) : 1);
    if (!w)
        return;

    for (int64_t b = 0; b < B; b++) {
        const int64_t len = attn__kv_len_of(p, kv_lens, b);
        for (int64_t h = 0; h < H; h++) {
            const int64_t hk = h / group;
            for (int64_t i = 0; i < Sq; i++) {
                /* Keys [0, end) pass the padding and causal tests. */
                int64_t end = len;
                if (p->causal) {
                    int64_t last = i + len - Sq; /* bottom-right aligned */
                    end = last < 0 ? 0 : (last + 1 < len ? last + 1 : len);
                }

                double max = -INFINITY;
                for (int64_t j = 0; j < end; j++) {
                    double s = -INFINITY;
                    if (!(use_mask && p->mask_kind == ATTN_MASK_BOOLEAN &&
                          ref_mask(mask, b, h, i, j) == 0.0)) {
                        double dot = 0.0;
                        for (int64_t d = 0; d < D; d++)
                            dot += ref_load(q, b, i, h, d) * ref_load(k, b, j, hk, d);
                        s = p->scale * dot;
                        if (use_mask && p->mask_kind == ATTN_MASK_ADDITIVE)
                            s += ref_mask(mask, b, h, i, j);
                    }
                    w[j] = s;
                    if (s > max)
                        max = s;
                }

                if (max == -INFINITY) {
                    /* Nothing visible: zeros and lse -inf, never exp(-inf - -inf) = NaN. */
                    for (int64_t d = 0; d < Dv; d++)
                        ref_store(o, b, i, h, d, 0.0);
                    if (use_lse)
                        ref_store_lse(lse, b, h, i, -INFINITY);
                    continue;
                }

                double sum = 0.0;
                for (int64_t j = 0; j < end; j++) {
                    w[j] = w[j] == -INFINITY ? 0.0 : exp(w[j] - max);
                    sum += w[j];
                }
                for (int64_t d = 0; d < Dv; d++) {
                    double acc = 0.0;
                    for (int64_t j = 0; j < end; j++)
                        if (w[j] != 0.0) /* a masked key's V is never read */
                            acc += w[j] * ref_load(v, b, j, hk, d);
                    ref_store(o, b, i, h, d, acc / sum);
                }
                if (use_lse)
                    ref_store_lse(lse, b, h, i, max + log(sum));
            }
        }
    }
    free(w);
}

void attn__ref_merge(size_t rows, size_t dim, const double *o1, const double *lse1,
                     const double *o2, const double *lse2, double *o, double *lse)
{
    for (size_t r = 0; r < rows; ++r) {
        const double a = lse1[r], c = lse2[r], m = a > c ? a : c;
        double wa = 0.0, wc = 0.0, l = -INFINITY;
        if (m != -INFINITY) {
            const double ea = exp(a - m), ec = exp(c - m);
            wa = ea / (ea + ec);
            wc = ec / (ea + ec);
            l = m + log(ea + ec);
        }
        for (size_t d = 0; d < dim; ++d)
            o[r * dim + d] = (wa != 0.0 ? wa * o1[r * dim + d] : 0.0) +
                             (wc != 0.0 ? wc * o2[r * dim + d] : 0.0);
        lse[r] = l;
    }
}

static double ref_sigma(double x) { return x > 0.0 ? x + 1.0 : exp(x); }

void attn__ref_infini_read(const attn__problem *p, const attn__view *q, const attn__view *alocal,
                           const double *mem, const double *z, const float *gate,
                           const attn__view *o)
{
    const int64_t G = p->num_heads / p->num_kv_heads, D = p->head_dim, Dv = p->v_head_dim;
    double *sq = malloc((size_t)D * sizeof *sq);
    if (!sq)
        return;
    for (int64_t b = 0; b < p->batch; ++b)
        for (int64_t i = 0; i < p->q_len; ++i)
            for (int64_t h = 0; h < p->num_heads; ++h) {
                const int64_t slab = b * p->num_kv_heads + h / G;
                double den = 0.0;
                for (int64_t d = 0; d < D; ++d) {
                    sq[d] = ref_sigma(ref_load(q, b, i, h, d));
                    den += sq[d] * z[slab * D + d];
                }
                const double g = 1.0 / (1.0 + exp(-(double)(gate ? gate[h] : 0.0f)));
                for (int64_t c = 0; c < Dv; ++c) {
                    double num = 0.0;
                    for (int64_t d = 0; d < D; ++d)
                        num += sq[d] * mem[(slab * D + d) * Dv + c];
                    const double amem = den > 0.0 ? num / den : 0.0;
                    ref_store(o, b, i, h, c, g * amem + (1.0 - g) * ref_load(alocal, b, i, h, c));
                }
            }
    free(sq);
}

void attn__ref_infini_update(const attn__problem *p, const attn__view *k, const attn__view *v,
                             double *mem, double *z)
{
    const int64_t D = p->head_dim, Dv = p->v_head_dim;
    for (int64_t b = 0; b < p->batch; ++b)
        for (int64_t hk = 0; hk < p->num_kv_heads; ++hk) {
            const int64_t slab = b * p->num_kv_heads + hk;
            for (int64_t t = 0; t < p->kv_len; ++t)
                for (int64_t d = 0; d < D; ++d) {
                    const double sk = ref_sigma(ref_load(k, b, t, hk, d));
                    z[slab * D + d] += sk;
                    for (int64_t c = 0; c < Dv; ++c)
                        mem[(slab * D + d) * Dv + c] += sk * ref_load(v, b, t, hk, c);
                }
        }
}
