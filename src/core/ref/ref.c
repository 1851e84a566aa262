/* ref.c — exact attention in double precision on host views: the project's test oracle,
 * with the patterns, positions and logit transforms of issue 6. Written for obviousness,
 * not speed; one score row (plus a query and a key row) is its only allocation. */
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

/* ---- patterns and positions (issue 6): the definitions live in attn.h ---------------- */

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

int64_t attn__bigbird_block(uint64_t seed, int64_t h, int64_t qb, int64_t t, int64_t nkb)
{
    uint64_t x = splitmix64(splitmix64(splitmix64(seed ^ (uint64_t)h) ^ (uint64_t)qb) ^
                            (uint64_t)t);
    return (int64_t)(x % (uint64_t)nkb);
}

int64_t attn__t5_bucket(int64_t r, int64_t num_buckets, int64_t max_distance, int bidirectional)
{
    int64_t n = num_buckets, bucket = 0, a;
    if (bidirectional) {
        n /= 2;
        if (r > 0)
            bucket = n;
        a = r < 0 ? -r : r;
    } else {
        a = r < 0 ? -r : 0;
    }
    const int64_t e = n / 2; /* buckets of one distance each */
    if (a < e)
        return bucket + a;
    int64_t big = e + (int64_t)(log((double)a / (double)e) / log((double)max_distance / (double)e) *
                                (double)(n - e));
    return bucket + (big < n - 1 ? big : n - 1);
}

static int sorted_has(const int64_t *x, int64_t n, int64_t v)
{
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (x[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && x[lo] == v;
}

/* d = pos(i) - j lies in [-right, left] (a negative extent is unbounded). */
static int in_extent(int64_t d, int64_t left, int64_t right)
{
    return (left < 0 || d <= left) && (right < 0 || -d <= right);
}

int attn__pattern_allows(const attn__problem *p, const attn__pattern *pat, int64_t h, int64_t i,
                         int64_t qpos, int64_t j)
{
    if (!pat || !pat->any)
        return 1;
    const int64_t d = qpos - j;
    if (pat->window && in_extent(d, pat->win_left, pat->win_right))
        return 1;
    if (pat->dilation > 0 && d % pat->dilation == 0 && in_extent(d, pat->dil_left, pat->dil_right))
        return 1;
    if (pat->num_global > 0 &&
        (sorted_has(pat->global, pat->num_global, j) || sorted_has(pat->global, pat->num_global, qpos)))
        return 1;
    if (pat->rnd_block > 0 && qpos >= 0) {
        const int64_t nkb = (p->kv_len + pat->rnd_block - 1) / pat->rnd_block;
        const int64_t qb = qpos / pat->rnd_block, kb = j / pat->rnd_block;
        for (int64_t t = 0; t < pat->rnd_count; ++t)
            if (attn__bigbird_block(pat->rnd_seed, h, qb, t, nkb) == kb)
                return 1;
    }
    if (pat->bsr_bq > 0) {
        const int64_t r = i / pat->bsr_bq, c = j / pat->bsr_bk;
        for (int32_t e = pat->bsr_row_ptr[r]; e < pat->bsr_row_ptr[r + 1]; ++e)
            if (pat->bsr_col_idx[e] == c)
                return 1;
    }
    return 0;
}

/* Rotates the first rope_dims values of x for position pos. */
static void ref_rope(const attn__features *f, double *x, int64_t pos)
{
    const int64_t half = f->rope_dims / 2;
    for (int64_t m = 0; m < half; ++m) {
        const double ang = (double)pos * pow(f->rope_base, -2.0 * (double)m / (double)f->rope_dims);
        const int64_t ia = f->rope_interleaved ? 2 * m : m;
        const int64_t ib = f->rope_interleaved ? 2 * m + 1 : m + half;
        const double a = x[ia], b = x[ib], c = cos(ang), s = sin(ang);
        x[ia] = a * c - b * s;
        x[ib] = a * s + b * c;
    }
}

static void store_probs(const attn__features *f, int64_t b, int64_t h, int64_t i, int64_t j,
                        double value)
{
    const attn__view *t = &f->probs;
    if (f->probs_mode == ATTN_PROBS_ONE_HEAD) {
        if (h != f->probs_head)
            return;
        h = 0;
    }
    ((float *)t->data)[b * t->stride[0] + h * t->stride[1] + i * t->stride[2] +
                       j * t->stride[3]] = (float)value;
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
    const attn__features *f = p->feat;
    const int use_probs = f && f->probs_mode && f->probs.data;

    if (Skv < 0 || D < 0 || (uint64_t)Skv > SIZE_MAX / sizeof(double) - (uint64_t)(2 * D))
        return;
    /* w[j]: the score of key j, then exp(score - max); 0 for keys that are not visible.
     * qr, kr: a query and a key row (rotated with RoPE). */
    double *w = malloc(((size_t)Skv + 2 * (size_t)D + 1) * sizeof(double));
    if (!w)
        return;
    double *qr = w + Skv, *kr = qr + D;

    for (int64_t b = 0; b < B; b++) {
        const int64_t len = attn__kv_len_of(p, kv_lens, b);
        for (int64_t h = 0; h < H; h++) {
            const int64_t hk = h / group;
            const attn__pattern *pat =
                f && f->patterns ? &f->patterns[f->num_patterns > 1 ? h : 0] : NULL;
            for (int64_t i = 0; i < Sq; i++) {
                const int64_t qpos = i + len - Sq; /* bottom-right aligned */
                /* Keys [0, end) pass the padding and causal tests. */
                int64_t end = len;
                if (p->causal)
                    end = qpos < 0 ? 0 : (qpos + 1 < len ? qpos + 1 : len);
                for (int64_t d = 0; d < D; d++)
                    qr[d] = ref_load(q, b, i, h, d);
                if (f && f->rope)
                    ref_rope(f, qr, f->rope_q_offset + i);

                double max = -INFINITY;
                for (int64_t j = 0; j < end; j++) {
                    double s = -INFINITY;
                    if (!(use_mask && p->mask_kind == ATTN_MASK_BOOLEAN &&
                          ref_mask(mask, b, h, i, j) == 0.0) &&
                        attn__pattern_allows(p, pat, h, i, qpos, j)) {
                        for (int64_t d = 0; d < D; d++)
                            kr[d] = ref_load(k, b, j, hk, d);
                        if (f && f->rope)
                            ref_rope(f, kr, f->rope_k_offset + j);
                        double dot = 0.0;
                        for (int64_t d = 0; d < D; d++)
                            dot += qr[d] * kr[d];
                        s = p->scale * dot;
                        if (f && f->softcap > 0.0)
                            s = f->softcap * tanh(s / f->softcap);
                        if (use_mask && p->mask_kind == ATTN_MASK_ADDITIVE)
                            s += ref_mask(mask, b, h, i, j);
                        if (f && f->alibi_slopes)
                            s -= f->alibi_slopes[h] * (double)(qpos > j ? qpos - j : j - qpos);
                        if (f && f->t5_table)
                            s += f->t5_table[h * f->t5_buckets +
                                             attn__t5_bucket(j - qpos, f->t5_buckets,
                                                             f->t5_max_distance,
                                                             f->t5_bidirectional)];
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
                    for (int64_t j = 0; use_probs && j < Skv; j++)
                        store_probs(f, b, h, i, j, 0.0);
                    continue;
                }

                /* A sink adds exp(sink) to the denominator only; it may exceed every score. */
                const double sink = f && f->sinks ? f->sinks[h] : -INFINITY;
                if (sink > max)
                    max = sink;
                double sum = sink == -INFINITY ? 0.0 : exp(sink - max);
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
                for (int64_t j = 0; use_probs && j < Skv; j++)
                    store_probs(f, b, h, i, j, j < end ? w[j] / sum : 0.0);
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
