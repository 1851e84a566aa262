/* sparse.c — the host side of patterns, positions and logit transforms on devices: the
 * tile map and the per-head tables of the aux buffer (layout in sparse.h). The map folds
 * padding, causality and the pattern together, decided element by element with the same
 * function the reference uses (attn__pattern_allows), so kernels and reference agree on
 * every key; the parts' extents only choose which tiles to examine and prove whole tiles
 * visible without looking at each element. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/sparse.h"

#define TK ATTN__TILE_KEYS
#define LOG2E 1.4426950408889634

int attn__sparse_on(const attn__problem *p)
{
    const attn__features *f = p->feat;
    for (int64_t i = 0; f && f->patterns && i < f->num_patterns; ++i)
        if (f->patterns[i].any)
            return 1;
    return 0;
}

int attn__pos_flags(const attn__problem *p)
{
    const attn__features *f = p->feat;
    if (!f)
        return 0;
    return (f->alibi_slopes ? ATTN__POS_ALIBI : 0) | (f->t5_table ? ATTN__POS_T5 : 0) |
           (f->softcap > 0.0 ? ATTN__POS_SOFTCAP : 0) | (f->sinks ? ATTN__POS_SINKS : 0) |
           (f->rope ? ATTN__POS_ROPE : 0);
}

/* A growable array of words. */
typedef struct wvec {
    int32_t *w;
    uint64_t n, cap;
} wvec;

static int wv_reserve(wvec *v, uint64_t more)
{
    if (v->n + more <= v->cap)
        return 1;
    uint64_t cap = v->cap ? v->cap : 1024;
    while (cap < v->n + more)
        cap *= 2;
    int32_t *w = realloc(v->w, cap * sizeof *w);
    if (!w)
        return 0;
    v->w = w;
    v->cap = cap;
    return 1;
}

static int wv_push(wvec *v, int32_t x)
{
    if (!wv_reserve(v, 1))
        return 0;
    v->w[v->n++] = x;
    return 1;
}

static int32_t fbits(double x)
{
    float f = (float)x;
    int32_t w;
    memcpy(&w, &f, sizeof w);
    return w;
}

static int64_t len_of(const attn__problem *p, const int32_t *lens, int64_t b)
{
    int64_t n = lens ? lens[b] : p->kv_len;
    return n < 0 ? 0 : n > p->kv_len ? p->kv_len : n;
}

static const attn__pattern *pattern_of(const attn__problem *p, int64_t h)
{
    const attn__features *f = p->feat;
    return f->num_patterns == 1 ? &f->patterns[0] : &f->patterns[h];
}

/* Builds one map's row pointers, runs and partial-tile bits. */
typedef struct map_builder {
    const attn__problem *p;
    int64_t qb, nqb;
    uint8_t *mark; /* per tile of the longest batch */
    int64_t mlo, mhi; /* marked tiles lie in [mlo, mhi] */
    uint32_t *rowbits; /* qb rows of one tile */
} map_builder;

static void mark_keys(map_builder *mb, int64_t lo, int64_t hi, int64_t kmax)
{
    if (lo < 0)
        lo = 0;
    if (hi > kmax)
        hi = kmax;
    if (lo > hi)
        return;
    for (int64_t t = lo / TK; t <= hi / TK; ++t)
        mb->mark[t] = 1;
    if (lo / TK < mb->mlo)
        mb->mlo = lo / TK;
    if (hi / TK > mb->mhi)
        mb->mhi = hi / TK;
}

/* The first index of the ascending list g[0..n) whose value is at least x (n if none). */
static int64_t first_at_least(const int64_t *g, int64_t n, int64_t x)
{
    int64_t a = 0, b = n;
    while (a < b) {
        const int64_t mid = a + (b - a) / 2;
        if (g[mid] < x)
            a = mid + 1;
        else
            b = mid;
    }
    return a;
}

/* Whether the strictly ascending list g[0..n) holds every value of [lo, hi]. */
static int holds_range(const int64_t *g, int64_t n, int64_t lo, int64_t hi)
{
    const int64_t a = first_at_least(g, n, lo);
    return a + (hi - lo) < n && g[a] == lo && g[a + (hi - lo)] == hi;
}

/* Whether every row of [i0, i1] sees every key of tile t below len, proven from the
 * pattern's parts alone (0 means "look at the elements", not "no"). A part that allows
 * every pair suffices, since the parts combine as a union (attn__pattern_allows). */
static int tile_whole(const attn__problem *p, const attn__pattern *pat, int64_t h, int64_t len,
                      int64_t i0, int64_t i1, int64_t t)
{
    const int64_t k0 = t * TK, k1 = (t + 1) * TK - 1 < len - 1 ? (t + 1) * TK - 1 : len - 1;
    const int64_t pos0 = i0 + len - p->q_len, pos1 = i1 + len - p->q_len;
    if (p->causal && k1 > pos0)
        return 0;
    if (!pat->any)
        return 1;
    if (pat->window && (pat->win_left < 0 || k0 >= pos1 - pat->win_left) &&
        (pat->win_right < 0 || k1 <= pos0 + pat->win_right))
        return 1;
    if (pat->dilation == 1 && (pat->dil_left < 0 || k0 >= pos1 - pat->dil_left) &&
        (pat->dil_right < 0 || k1 <= pos0 + pat->dil_right))
        return 1;
    /* Global keys, seen by every row; or rows at global positions, which see every key. */
    if (pat->num_global > 0 && (holds_range(pat->global, pat->num_global, k0, k1) ||
                                (pos0 >= 0 && holds_range(pat->global, pat->num_global, pos0, pos1))))
        return 1;
    /* One query block's rows and a tile inside one of its random key blocks (BigBird
     * blocks are usually multiples of the tile: without this, every random tile was
     * decided element by element, ~0.7 s for 8 heads at 16k). */
    if (pat->rnd_block > 0 && pos0 >= 0 && pos0 / pat->rnd_block == pos1 / pat->rnd_block &&
        k0 / pat->rnd_block == k1 / pat->rnd_block) {
        const int64_t nkb = (p->kv_len + pat->rnd_block - 1) / pat->rnd_block;
        for (int64_t r = 0; r < pat->rnd_count; ++r)
            if (attn__bigbird_block(pat->rnd_seed, h, pos0 / pat->rnd_block, r, nkb) == k0 / pat->rnd_block)
                return 1;
    }
    return 0;
}

static int build_map(map_builder *mb, int64_t len, int64_t h, const attn__pattern *pat,
                     wvec *ptr, wvec *runs, wvec *bits)
{
    const attn__problem *p = mb->p;
    const int64_t QB = mb->qb;
    for (int64_t r = 0; r < mb->nqb; ++r) {
        if (!wv_push(ptr, (int32_t)(runs->n / 3)))
            return 0;
        const int64_t i0 = r * QB, i1 = (r + 1) * QB - 1 < p->q_len - 1 ? (r + 1) * QB - 1 : p->q_len - 1;
        const int64_t pos0 = i0 + len - p->q_len, pos1 = i1 + len - p->q_len;
        int64_t kmax = len - 1;
        if (p->causal && pos1 < kmax)
            kmax = pos1;
        if (kmax < 0)
            continue;
        mb->mlo = INT64_MAX;
        mb->mhi = -1;
        if (!pat->any) {
            mark_keys(mb, 0, kmax, kmax);
        } else {
            if (pat->window)
                mark_keys(mb, pat->win_left < 0 ? 0 : pos0 - pat->win_left,
                          pat->win_right < 0 ? kmax : pos1 + pat->win_right, kmax);
            if (pat->dilation > 0)
                mark_keys(mb, pat->dil_left < 0 ? 0 : pos0 - pat->dil_left,
                          pat->dil_right < 0 ? kmax : pos1 + pat->dil_right, kmax);
            if (pat->num_global > 0) {
                const int64_t lo = first_at_least(pat->global, pat->num_global, pos0);
                if (lo < pat->num_global && pat->global[lo] <= pos1)
                    mark_keys(mb, 0, kmax, kmax);
                for (int64_t g = 0; g < pat->num_global && pat->global[g] <= kmax; ++g)
                    mark_keys(mb, pat->global[g], pat->global[g], kmax);
            }
            if (pat->rnd_block > 0 && pos1 >= 0) {
                const int64_t rb = pat->rnd_block, nkb = (p->kv_len + rb - 1) / rb;
                for (int64_t q = (pos0 > 0 ? pos0 : 0) / rb; q <= pos1 / rb; ++q)
                    for (int64_t t = 0; t < pat->rnd_count; ++t) {
                        const int64_t kb = attn__bigbird_block(pat->rnd_seed, h, q, t, nkb);
                        mark_keys(mb, kb * rb, kb * rb + rb - 1, kmax);
                    }
            }
            if (pat->bsr_bq > 0)
                for (int64_t R = i0 / pat->bsr_bq; R <= i1 / pat->bsr_bq; ++R)
                    for (int32_t e = pat->bsr_row_ptr[R]; e < pat->bsr_row_ptr[R + 1]; ++e) {
                        const int64_t c = pat->bsr_col_idx[e];
                        mark_keys(mb, c * pat->bsr_bk, c * pat->bsr_bk + pat->bsr_bk - 1, kmax);
                    }
        }
        int64_t open = -1; /* index of the run of whole tiles being extended */
        for (int64_t t = mb->mlo; t <= mb->mhi; ++t) {
            if (!mb->mark[t])
                continue;
            mb->mark[t] = 0;
            int whole = tile_whole(p, pat, h, len, i0, i1, t);
            int any = whole;
            if (!whole) {
                /* Element by element, exactly as the reference decides. */
                whole = 1;
                memset(mb->rowbits, 0, (size_t)QB * sizeof *mb->rowbits);
                for (int64_t i = i0; i <= i1; ++i) {
                    const int64_t pos = i + len - p->q_len;
                    uint32_t row = 0;
                    for (int64_t u = 0; u < TK; ++u) {
                        const int64_t j = t * TK + u;
                        if (j >= len)
                            break;
                        if ((!p->causal || j <= pos) && attn__pattern_allows(p, pat, h, i, pos, j))
                            row |= 1u << u;
                        else
                            whole = 0;
                    }
                    mb->rowbits[i - i0] = row;
                    any |= row != 0;
                }
            }
            if (!any)
                continue;
            if (whole) {
                if (open >= 0 && runs->w[open] + runs->w[open + 1] == t) {
                    runs->w[open + 1] += 1;
                    continue;
                }
                if (!wv_reserve(runs, 3))
                    return 0;
                open = (int64_t)runs->n;
                runs->w[runs->n++] = (int32_t)t;
                runs->w[runs->n++] = 1;
                runs->w[runs->n++] = -1;
                continue;
            }
            open = -1;
            if (!wv_reserve(runs, 3) || !wv_reserve(bits, (uint64_t)(QB / 2)))
                return 0;
            runs->w[runs->n++] = (int32_t)t;
            runs->w[runs->n++] = 1;
            runs->w[runs->n++] = (int32_t)bits->n; /* relative; made absolute below */
            for (int64_t q = 0; q < QB; q += 2)
                bits->w[bits->n++] = (int32_t)(mb->rowbits[q] | mb->rowbits[q + 1] << 16);
        }
    }
    return wv_push(ptr, (int32_t)(runs->n / 3));
}

void attn__aux_free(attn__aux *aux)
{
    const uint64_t gen = aux->gen;
    free(aux->words);
    free(aux->lens);
    memset(aux, 0, sizeof *aux);
    aux->gen = gen;
}

attn_status attn__aux_build(attn_plan *plan, const int32_t *kv_lens, int64_t qb, attn__aux *aux)
{
    const attn__problem *p = &plan->pb;
    const int64_t B = p->batch, H = p->num_heads;
    if (aux->words && aux->qb == qb &&
        ((!kv_lens && !aux->lens) ||
         (kv_lens && aux->lens && !memcmp(kv_lens, aux->lens, (size_t)B * sizeof *kv_lens))))
        return ATTN_OK;
    attn__aux_free(aux);
    const attn__features *f = p->feat;
    const int sparse = attn__sparse_on(p);
    const int flags = attn__pos_flags(p);
    wvec w = {0}, ptr = {0}, runs = {0}, bits = {0};
    map_builder mb;
    memset(&mb, 0, sizeof mb);
    int64_t *keys = NULL; /* per map: len, pattern index, head (-1 unless random) */
    int ok = 1;
    aux->qb = qb;
    aux->nqb = (p->q_len + qb - 1) / qb;
    if (sparse) {
        mb.p = p;
        mb.qb = qb;
        mb.nqb = aux->nqb;
        mb.mark = calloc((size_t)((p->kv_len + TK - 1) / TK + 1), 1);
        mb.rowbits = calloc((size_t)qb, sizeof *mb.rowbits);
        keys = malloc((size_t)(B * H) * 3 * sizeof *keys);
        ok = mb.mark && mb.rowbits && keys && wv_reserve(&w, (uint64_t)(B * H));
        int64_t nmaps = 0;
        for (int64_t b = 0; ok && b < B; ++b)
            for (int64_t h = 0; ok && h < H; ++h) {
                const int64_t len = len_of(p, kv_lens, b), pi = f->num_patterns == 1 ? 0 : h;
                const attn__pattern *pat = pattern_of(p, h);
                const int64_t kh = pat->rnd_block > 0 ? h : -1;
                int64_t m = 0;
                while (m < nmaps && !(keys[3 * m] == len && keys[3 * m + 1] == pi && keys[3 * m + 2] == kh))
                    ++m;
                if (m == nmaps) {
                    keys[3 * m] = len, keys[3 * m + 1] = pi, keys[3 * m + 2] = kh;
                    ++nmaps;
                    ok = build_map(&mb, len, h, pat, &ptr, &runs, &bits);
                }
                w.w[w.n++] = (int32_t)m;
            }
        /* Tiles computed over every (batch, head), from the runs of each one's map. */
        if (ok) {
            for (int64_t x = 0; x < B * H; ++x) {
                const int64_t m = w.w[x];
                const int32_t *pp = ptr.w + m * (aux->nqb + 1);
                for (int64_t r = 0; r < aux->nqb; ++r) {
                    uint64_t row = 0;
                    for (int32_t e = pp[r]; e < pp[r + 1]; ++e)
                        row += (uint64_t)runs.w[3 * e + 1];
                    aux->tiles_computed += row;
                    if (row > aux->max_row_tiles)
                        aux->max_row_tiles = row;
                }
            }
            aux->tiles_total = (uint64_t)(B * H) * (uint64_t)aux->nqb * (uint64_t)((p->kv_len + TK - 1) / TK);
        }
        aux->a_maps = 0;
        aux->a_ptr = (int64_t)w.n;
        ok = ok && wv_reserve(&w, ptr.n + runs.n + bits.n);
        if (ok) {
            if (ptr.n) /* never memcpy from NULL, even 0 bytes */
                memcpy(w.w + w.n, ptr.w, ptr.n * sizeof *w.w);
            w.n += ptr.n;
            aux->a_runs = (int64_t)w.n;
            const int64_t a_bits = (int64_t)(w.n + runs.n);
            for (uint64_t e = 0; e < runs.n; e += 3) {
                w.w[w.n++] = runs.w[e];
                w.w[w.n++] = runs.w[e + 1];
                w.w[w.n++] = runs.w[e + 2] < 0 ? -1 : (int32_t)(a_bits + runs.w[e + 2]);
            }
            if (bits.n)
                memcpy(w.w + w.n, bits.w, bits.n * sizeof *w.w);
            w.n += bits.n;
        }
    }
    if (ok && (flags & ATTN__POS_ALIBI)) {
        aux->a_alibi = (int64_t)w.n;
        for (int64_t h = 0; ok && h < H; ++h)
            ok = wv_push(&w, fbits(f->alibi_slopes[h] * LOG2E));
    }
    if (ok && (flags & ATTN__POS_T5)) {
        /* Relative positions beyond the problem's extent, or beyond max_distance (where
         * every bucket has saturated), read the table's ends. */
        int64_t T = p->kv_len + p->q_len;
        if (f->t5_max_distance < T)
            T = f->t5_max_distance;
        aux->t5_max = T;
        aux->a_t5 = (int64_t)w.n;
        ok = wv_reserve(&w, (uint64_t)(H * (2 * T + 1)));
        for (int64_t h = 0; ok && h < H; ++h)
            for (int64_t r = -T; r <= T; ++r)
                w.w[w.n++] = fbits(f->t5_table[h * f->t5_buckets +
                                              attn__t5_bucket(r, f->t5_buckets, f->t5_max_distance,
                                                              f->t5_bidirectional)] *
                                   LOG2E);
    }
    if (ok && (flags & ATTN__POS_SINKS)) {
        aux->a_sinks = (int64_t)w.n;
        for (int64_t h = 0; ok && h < H; ++h)
            ok = wv_push(&w, fbits(f->sinks[h] * LOG2E));
    }
    if (ok && (flags & ATTN__POS_ROPE)) {
        const int64_t pairs = f->rope_dims / 2;
        aux->rope_pairs = pairs;
        ok = wv_reserve(&w, (uint64_t)((p->q_len + p->kv_len) * pairs * 2));
        for (int side = 0; ok && side < 2; ++side) {
            const int64_t n = side ? p->kv_len : p->q_len;
            const int64_t off = side ? f->rope_k_offset : f->rope_q_offset;
            if (side)
                aux->a_rope_k = (int64_t)w.n;
            else
                aux->a_rope_q = (int64_t)w.n;
            for (int64_t i = 0; i < n; ++i)
                for (int64_t m = 0; m < pairs; ++m) {
                    const double ang = (double)(off + i) *
                                       pow(f->rope_base, -2.0 * (double)m / (double)f->rope_dims);
                    w.w[w.n++] = fbits(cos(ang));
                    w.w[w.n++] = fbits(sin(ang));
                }
        }
    }
    if (ok && !w.n)
        ok = wv_push(&w, 0); /* never an empty buffer */
    if (ok && kv_lens) {
        aux->lens = malloc((size_t)B * sizeof *kv_lens);
        ok = aux->lens != NULL;
        if (ok)
            memcpy(aux->lens, kv_lens, (size_t)B * sizeof *kv_lens);
    }
    free(keys);
    free(mb.mark);
    free(mb.rowbits);
    free(ptr.w);
    free(runs.w);
    free(bits.w);
    if (!ok) {
        free(w.w);
        attn__aux_free(aux);
        return attn__fail(plan->ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY,
                          "building the tile map and position tables");
    }
    aux->words = w.w;
    aux->count = w.n;
    aux->gen++;
    return ATTN_OK;
}

void attn__aux_params(const attn_plan *plan, const attn__aux *aux, attn__kparams *kp)
{
    const attn__features *f = plan->pb.feat;
    kp->heads_total = plan->pb.num_heads;
    kp->a_maps = aux->a_maps;
    kp->a_ptr = aux->a_ptr;
    kp->a_runs = aux->a_runs;
    kp->map_nqb = aux->nqb;
    kp->map_qb = aux->qb;
    kp->a_alibi = aux->a_alibi;
    kp->a_t5 = aux->a_t5;
    kp->t5_max = aux->t5_max;
    kp->a_sinks = aux->a_sinks;
    kp->a_rope_q = aux->a_rope_q;
    kp->a_rope_k = aux->a_rope_k;
    kp->rope_pairs = aux->rope_pairs;
    kp->rope_interleaved = f ? f->rope_interleaved : 0;
    kp->softcap2 = f && f->softcap > 0.0 ? (float)(f->softcap * LOG2E) : 0.0f;
}

int attn__aux_needs(const attn__aux *aux, const attn__problem *p, int64_t b, int64_t h0,
                    int64_t nh, int64_t i0, int64_t sm, int64_t j0, int64_t cn)
{
    if (!attn__sparse_on(p) || !aux->words)
        return 1;
    if (sm <= 0 || cn <= 0)
        return 0;
    const int64_t t0 = j0 / TK, t1 = (j0 + cn - 1) / TK;
    for (int64_t h = h0; h < h0 + nh; ++h) {
        const int32_t m = aux->words[aux->a_maps + b * p->num_heads + h];
        const int32_t *pp = aux->words + aux->a_ptr + (int64_t)m * (aux->nqb + 1);
        for (int64_t r = i0 / aux->qb; r <= (i0 + sm - 1) / aux->qb && r < aux->nqb; ++r)
            for (int32_t e = pp[r]; e < pp[r + 1]; ++e) {
                const int32_t *run = aux->words + aux->a_runs + 3 * (int64_t)e;
                if (run[0] <= t1 && run[0] + run[1] - 1 >= t0)
                    return 1;
            }
    }
    return 0;
}
