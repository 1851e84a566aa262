/* test_matrix.c — the parametrised matrix of DESIGN.md §8: every (backend device, kernel
 * family) against the reference over dtype × head_dim × heads × mask, each case run with
 * length / batch / layout variants taken in rotation from one list.
 *
 * Check's loop index is entry × 224 + case; a failure message names the entry and the
 * case in full. For work on one failure: ATTN_MATRIX_CASES=37 (or 30-40) runs only those
 * cases, ATTN_MATRIX_DEVICE=<text> only the entries whose label contains it (e.g.
 * "family=gpu"), ATTN_MATRIX_VERBOSE=1 prints one line per run with its timings and plan,
 * ATTN_MATRIX_BUDGET_S=0 lifts the time budget. */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "test_util.h"

/* ---- the axes ------------------------------------------------------------------------- */
enum { MK_NONE, MK_CAUSAL, MK_PADDING, MK_BIAS, MK_COUNT };
static const char *const mask_names[MK_COUNT] = {"none", "causal", "padding", "bias"};

static const int64_t head_dims[] = {1, 7, 32, 64, 80, 128, 256};
#define NUM_HEAD_DIMS ((int)(sizeof head_dims / sizeof head_dims[0]))
/* v_head_dim used by the variants that make it differ from head_dim: some larger, some
 * smaller. */
static const int64_t other_v_dims[] = {8, 3, 64, 32, 128, 64, 80};

static const int64_t head_cfgs[][2] = {{1, 1}, {8, 8}, {8, 2}, {8, 1}}; /* (heads, kv_heads) */
#define NUM_HEAD_CFGS ((int)(sizeof head_cfgs / sizeof head_cfgs[0]))

#define NUM_CASES (2 * NUM_HEAD_DIMS * NUM_HEAD_CFGS * MK_COUNT) /* 224 */
#define VARIANTS_PER_CASE 2

/* The explicit masks of the MK_BIAS cases, taken in rotation. */
typedef struct bias_kind {
    attn_mask_kind kind;
    int bcast_batch, bcast_heads; /* 1: that dimension of the mask tensor is 1 */
    const char *name;
} bias_kind;

static const bias_kind bias_kinds[] = {
    {ATTN_MASK_ADDITIVE, 0, 0, "additive[B,H]"},
    {ATTN_MASK_ADDITIVE, 1, 1, "additive[1,1]"},
    {ATTN_MASK_BOOLEAN, 0, 0, "boolean[B,H]"},
    {ATTN_MASK_ADDITIVE, 1, 0, "additive[1,H]"},
    {ATTN_MASK_BOOLEAN, 1, 1, "boolean[1,1]"},
    {ATTN_MASK_ADDITIVE, 0, 1, "additive[B,1]"},
};
#define NUM_BIAS_KINDS ((int)(sizeof bias_kinds / sizeof bias_kinds[0]))

/* ---- the variants ----------------------------------------------------------------------- */
enum {
    V_BUFFERS = 1u << 0,     /* every tensor in a library buffer, at a nonzero offset */
    V_ODD_OFFSET = 1u << 1,  /* ... an offset that is only a multiple of the element size */
    V_Q_BHSD = 1u << 2,      /* Q and O stored as [B,H,S,D] through strides */
    V_K_PAD = 1u << 3,       /* K with padded head and row strides */
    V_O_GAP = 1u << 4,       /* O inside a larger allocation with gaps at every level */
    V_KV_FUSED = 1u << 5,    /* K and V interleaved in one allocation, [B,S,(K|V),Hkv,D] */
    V_V_BHSD = 1u << 6,      /* V stored as [B,Hkv,S,D] */
    V_V_INNER2 = 1u << 7,    /* V with an element stride of 2 */
    V_LSE = 1u << 8,         /* want_lse */
    V_LSE_GAP = 1u << 9,     /* lse with gaps between its elements */
    V_VDIM = 1u << 10,       /* v_head_dim != head_dim */
    V_SCALE = 1u << 11,      /* scale != 1/sqrt(head_dim) */
    V_KVLENS_RUN = 1u << 12, /* padding: key lengths overridden in attn_run_args */
    V_CAUSAL_MIX = 1u << 13, /* padding and explicit masks: also causal */
    V_MASK_PAD = 1u << 14,   /* mask tensor with padded rows */
};

typedef struct variant {
    int64_t batch, q_len, kv_len;
    unsigned flags;
} variant;

/* Lengths: 1, tile multiples (16, 32, 64, 128) and non-multiples; q < kv and q > kv (with
 * causal, q > kv leaves the top rows fully masked). Small sizes keep the reference and
 * PoCL cheap even at 8 heads × head_dim 256. The list has a prime length so that the
 * rotation meets every mask kind and head configuration. */
static const variant variants[] = {
    {1, 1, 1, 0},
    {1, 16, 16, V_LSE},
    {2, 32, 32, V_BUFFERS},
    {1, 64, 64, V_Q_BHSD | V_LSE},
    {1, 17, 33, V_K_PAD | V_CAUSAL_MIX},
    {3, 33, 17, V_LSE | V_O_GAP},
    {2, 47, 100, V_BUFFERS | V_ODD_OFFSET | V_K_PAD | V_O_GAP},
    {1, 100, 47, V_LSE | V_CAUSAL_MIX},
    {2, 1, 100, V_LSE | V_KV_FUSED},
    {1, 1, 64, V_BUFFERS},
    {2, 16, 47, V_VDIM | V_V_BHSD},
    {1, 64, 17, V_SCALE | V_LSE},
    {4, 5, 9, V_K_PAD | V_MASK_PAD | V_KVLENS_RUN},
    {1, 100, 100, V_LSE | V_LSE_GAP},
    {2, 32, 64, V_O_GAP | V_BUFFERS | V_LSE | V_CAUSAL_MIX},
    {1, 48, 16, V_Q_BHSD},
    {3, 7, 130, V_KVLENS_RUN | V_V_INNER2 | V_LSE},
    {2, 64, 33, V_Q_BHSD | V_O_GAP | V_LSE | V_BUFFERS | V_ODD_OFFSET},
    {1, 2, 3, V_MASK_PAD},
    {2, 33, 33, V_BUFFERS | V_K_PAD | V_LSE | V_CAUSAL_MIX | V_KV_FUSED},
    {1, 17, 1, V_LSE | V_LSE_GAP},
    {2, 31, 65, V_VDIM | V_LSE | V_Q_BHSD | V_BUFFERS},
    {1, 128, 64, V_CAUSAL_MIX | V_O_GAP},
};
#define NUM_VARIANTS ((int)(sizeof variants / sizeof variants[0]))
#define MAX_BATCH 4

static const struct {
    unsigned flag;
    const char *name;
} flag_names[] = {
    {V_BUFFERS, "buffers"}, {V_ODD_OFFSET, "odd_offset"}, {V_Q_BHSD, "qo_bhsd"},
    {V_K_PAD, "k_pad"}, {V_O_GAP, "o_gap"}, {V_KV_FUSED, "kv_fused"}, {V_V_BHSD, "v_bhsd"},
    {V_V_INNER2, "v_stride2"}, {V_LSE_GAP, "lse_gap"}, {V_MASK_PAD, "mask_pad"},
};

/* ---- one case ------------------------------------------------------------------------------ */
typedef struct mcase {
    int index, slot, vi;
    unsigned flags;
    attn_dtype dtype;
    int64_t batch, heads, kv_heads, q_len, kv_len, hd, vd;
    int mask;               /* MK_* */
    int causal;
    attn_mask_kind mask_kind;
    int64_t mask_b, mask_h; /* mask tensor dims 0 and 1 */
    const char *mask_desc;
    float scale;            /* 0 = default */
    int want_lse;
    int has_kv_lens, kv_lens_at_run;
    int32_t plan_kv_lens[MAX_BATCH]; /* given to the device's attn_desc */
    int32_t kv_lens[MAX_BATCH];      /* the lengths in force (run override or plan) */
    char name[512];
} mcase;

static void build_case(int index, int slot, mcase *c)
{
    memset(c, 0, sizeof *c);
    c->index = index;
    c->slot = slot;
    c->mask = index % MK_COUNT;
    int hc = (index / MK_COUNT) % NUM_HEAD_CFGS;
    int hdi = (index / (MK_COUNT * NUM_HEAD_CFGS)) % NUM_HEAD_DIMS;
    c->dtype = index < NUM_CASES / 2 ? ATTN_DTYPE_F32 : ATTN_DTYPE_F16;
    c->vi = (VARIANTS_PER_CASE * index + slot) % NUM_VARIANTS;
    const variant *v = &variants[c->vi];
    c->flags = v->flags;
    c->batch = v->batch;
    c->q_len = v->q_len;
    c->kv_len = v->kv_len;
    c->heads = head_cfgs[hc][0];
    c->kv_heads = head_cfgs[hc][1];
    c->hd = head_dims[hdi];
    c->vd = (c->flags & V_VDIM) ? other_v_dims[hdi] : c->hd;
    c->scale = (c->flags & V_SCALE) ? 0.37f : 0.0f;
    c->want_lse = (c->flags & V_LSE) != 0;
    c->mask_kind = ATTN_MASK_NONE;
    c->mask_desc = mask_names[c->mask];

    switch (c->mask) {
    case MK_CAUSAL:
        c->causal = 1;
        break;
    case MK_PADDING: {
        c->causal = (c->flags & V_CAUSAL_MIX) != 0;
        c->has_kv_lens = 1;
        c->kv_lens_at_run = (c->flags & V_KVLENS_RUN) != 0;
        int64_t n = c->kv_len;
        /* With batch > 1 one batch has no keys at all (its rows must be zeros); the others
         * mix full, partial and single-key lengths. */
        const int64_t pattern[] = {n, (n + 1) / 2, 1, n > 1 ? n - 1 : 1};
        int64_t zero_b = c->batch > 1 ? (int64_t)c->vi % c->batch : -1;
        for (int64_t b = 0; b < c->batch; b++) {
            int64_t len = c->batch == 1 ? n - n / 4 : pattern[(b + c->vi) % 4];
            c->kv_lens[b] = b == zero_b ? 0 : (int32_t)len;
            /* The plan's lengths differ from the run's, so an override that is ignored
             * shows up as a wrong answer. */
            c->plan_kv_lens[b] = c->kv_lens_at_run ? (int32_t)n : c->kv_lens[b];
        }
        break;
    }
    case MK_BIAS: {
        const bias_kind *bk = &bias_kinds[(index / MK_COUNT + c->vi) % NUM_BIAS_KINDS];
        c->causal = (c->flags & V_CAUSAL_MIX) != 0;
        c->mask_kind = bk->kind;
        c->mask_b = bk->bcast_batch ? 1 : c->batch;
        c->mask_h = bk->bcast_heads ? 1 : c->heads;
        c->mask_desc = bk->name;
        break;
    }
    default:
        break;
    }

    int len = snprintf(c->name, sizeof c->name,
                       "case %d.%d (variant %d): %s d=%lld dv=%lld heads=%lld/%lld mask=%s "
                       "causal=%d B=%lld Sq=%lld Skv=%lld lse=%d scale=%s",
                       index, slot, c->vi, tu_dtype_name(c->dtype), (long long)c->hd,
                       (long long)c->vd, (long long)c->heads, (long long)c->kv_heads,
                       c->mask_desc, c->causal, (long long)c->batch, (long long)c->q_len,
                       (long long)c->kv_len, c->want_lse, c->scale != 0.0f ? "0.37" : "default");
    if (c->has_kv_lens) {
        len += snprintf(c->name + len, sizeof c->name - (size_t)len, " kv_lens=[");
        for (int64_t b = 0; b < c->batch; b++)
            len += snprintf(c->name + len, sizeof c->name - (size_t)len, "%s%d", b ? "," : "",
                            (int)c->kv_lens[b]);
        len += snprintf(c->name + len, sizeof c->name - (size_t)len, "]%s",
                        c->kv_lens_at_run ? " (run override)" : "");
    }
    len += snprintf(c->name + len, sizeof c->name - (size_t)len, " layout=");
    int any = 0;
    for (size_t f = 0; f < sizeof flag_names / sizeof flag_names[0]; f++)
        if (c->flags & flag_names[f].flag)
            len += snprintf(c->name + len, sizeof c->name - (size_t)len, "%s%s", any++ ? "," : "",
                            flag_names[f].name);
    if (!any)
        snprintf(c->name + len, sizeof c->name - (size_t)len, "dense");
}

static void make_desc(const mcase *c, attn_desc *d, const int32_t *kv_lens)
{
    attn_desc init = ATTN_DESC_INIT;
    *d = init;
    d->batch = c->batch;
    d->num_heads = c->heads;
    d->num_kv_heads = c->kv_heads;
    d->q_len = c->q_len;
    d->kv_len = c->kv_len;
    d->head_dim = c->hd;
    d->v_head_dim = c->vd == c->hd ? 0 : c->vd;
    d->dtype = c->dtype;
    d->scale = c->scale;
    d->causal = c->causal;
    d->kv_lens = c->has_kv_lens ? kv_lens : NULL;
    d->mask_kind = c->mask_kind;
    d->want_lse = c->want_lse;
}

/* ---- the data, dense, shared by the reference and every device --------------------------- */
typedef struct case_data {
    int64_t nq, nk, nv, no, nmask, nlse; /* element counts */
    float *q, *k, *v, *mask;             /* values (already rounded to half for f16) */
    float *ref_o, *ref_lse;              /* the reference's answer, as floats */
} case_data;

static void free_data(case_data *d)
{
    free(d->q);
    free(d->k);
    free(d->v);
    free(d->mask);
    free(d->ref_o);
    free(d->ref_lse);
    memset(d, 0, sizeof *d);
}

/* Dense row-major buffer of `n` values in `dtype` (f32, f16 or u8). */
static void *dense_encode(const float *x, int64_t n, attn_dtype dtype)
{
    void *p = malloc((size_t)(n > 0 ? n : 1) * tu_dtype_size(dtype));
    if (!p)
        return NULL;
    for (int64_t i = 0; i < n; i++)
        tu_store_elem(p, dtype, i, x[i]);
    return p;
}

static void fill_mask(const mcase *c, float *m)
{
    tu_rng rng;
    tu_rng_seed(&rng, tu_seed((uint64_t)c->index, (uint64_t)c->slot, 'M'));
    int64_t sq = c->q_len, skv = c->kv_len, slices = c->mask_b * c->mask_h;
    for (int64_t s = 0; s < slices; s++) {
        for (int64_t i = 0; i < sq; i++) {
            /* One fully masked row in the first and in the last slice (not when that would
             * mask the whole problem: one query row and one slice). */
            int full = (sq > 1 || slices > 1) &&
                       ((s == 0 && i == (sq - 1) / 2) || (s == slices - 1 && i == sq - 1));
            for (int64_t j = 0; j < skv; j++) {
                float *e = &m[(s * sq + i) * skv + j];
                uint32_t r = tu_rng_below(&rng, 8);
                if (c->mask_kind == ATTN_MASK_BOOLEAN)
                    *e = (full || r < 2) ? 0.0f : 1.0f;
                else
                    *e = (full || r == 0) ? -INFINITY : 2.0f * tu_rng_float(&rng);
            }
        }
    }
}

static float *ref_cache[NUM_CASES * VARIANTS_PER_CASE]; /* reference O then lse */

/* Generates the inputs and computes (or recalls) the reference output. Returns 0, or 1
 * with msg. */
static int prepare(const mcase *c, case_data *d, char *msg, size_t msz)
{
    memset(d, 0, sizeof *d);
    d->nq = c->batch * c->q_len * c->heads * c->hd;
    d->nk = c->batch * c->kv_len * c->kv_heads * c->hd;
    d->nv = c->batch * c->kv_len * c->kv_heads * c->vd;
    d->no = c->batch * c->q_len * c->heads * c->vd;
    d->nmask = c->mask_kind != ATTN_MASK_NONE ? c->mask_b * c->mask_h * c->q_len * c->kv_len : 0;
    d->nlse = c->batch * c->heads * c->q_len;
    d->q = malloc((size_t)d->nq * sizeof(float));
    d->k = malloc((size_t)d->nk * sizeof(float));
    d->v = malloc((size_t)d->nv * sizeof(float));
    d->mask = malloc((size_t)(d->nmask ? d->nmask : 1) * sizeof(float));
    d->ref_o = malloc((size_t)d->no * sizeof(float));
    d->ref_lse = malloc((size_t)d->nlse * sizeof(float));
    if (!d->q || !d->k || !d->v || !d->mask || !d->ref_o || !d->ref_lse) {
        snprintf(msg, msz, "out of host memory");
        return 1;
    }
    tu_fill_uniform(d->q, (size_t)d->nq, tu_seed((uint64_t)c->index, (uint64_t)c->slot, 'Q'));
    tu_fill_uniform(d->k, (size_t)d->nk, tu_seed((uint64_t)c->index, (uint64_t)c->slot, 'K'));
    tu_fill_uniform(d->v, (size_t)d->nv, tu_seed((uint64_t)c->index, (uint64_t)c->slot, 'V'));
    if (c->dtype == ATTN_DTYPE_F16) {
        tu_round_to_half(d->q, (size_t)d->nq);
        tu_round_to_half(d->k, (size_t)d->nk);
        tu_round_to_half(d->v, (size_t)d->nv);
    }
    if (d->nmask)
        fill_mask(c, d->mask);

    /* Every entry runs the same cases: the reference answers once per case and slot. */
    float **cached = &ref_cache[c->index * VARIANTS_PER_CASE + c->slot];
    if (*cached) {
        memcpy(d->ref_o, *cached, (size_t)d->no * sizeof(float));
        memcpy(d->ref_lse, *cached + d->no, (size_t)d->nlse * sizeof(float));
        return 0;
    }

    /* The reference gets dense host tensors with the same values. */
    attn_dtype mdt = c->mask_kind == ATTN_MASK_BOOLEAN ? ATTN_DTYPE_U8 : ATTN_DTYPE_F32;
    void *q = dense_encode(d->q, d->nq, c->dtype);
    void *k = dense_encode(d->k, d->nk, c->dtype);
    void *v = dense_encode(d->v, d->nv, c->dtype);
    void *m = d->nmask ? dense_encode(d->mask, d->nmask, mdt) : NULL;
    void *o = malloc((size_t)d->no * tu_dtype_size(c->dtype));
    int rc = 1;
    if (!q || !k || !v || (d->nmask && !m) || !o) {
        snprintf(msg, msz, "out of host memory");
        goto done;
    }
    /* NaN everywhere first: an element the reference fails to write cannot pass. */
    memset(o, 0xff, (size_t)d->no * tu_dtype_size(c->dtype));
    for (int64_t i = 0; i < d->nlse; i++)
        d->ref_lse[i] = NAN;

    attn_desc desc;
    make_desc(c, &desc, c->kv_lens);
    attn_run_args args = ATTN_RUN_ARGS_INIT;
    args.q = attn_tensor_host(c->dtype, c->batch, c->q_len, c->heads, c->hd, q);
    args.k = attn_tensor_host(c->dtype, c->batch, c->kv_len, c->kv_heads, c->hd, k);
    args.v = attn_tensor_host(c->dtype, c->batch, c->kv_len, c->kv_heads, c->vd, v);
    args.o = attn_tensor_host(c->dtype, c->batch, c->q_len, c->heads, c->vd, o);
    if (d->nmask)
        args.mask = attn_tensor_host(mdt, c->mask_b, c->mask_h, c->q_len, c->kv_len, m);
    if (c->want_lse)
        args.lse = attn_tensor_host(ATTN_DTYPE_F32, c->batch, c->heads, c->q_len, 1, d->ref_lse);
    if (tu_reference_run(&desc, &args, msg, msz) != ATTN_OK)
        goto done;
    for (int64_t i = 0; i < d->no; i++)
        d->ref_o[i] = tu_load_elem(o, c->dtype, i);
    *cached = malloc((size_t)(d->no + d->nlse) * sizeof(float));
    if (*cached) {
        memcpy(*cached, d->ref_o, (size_t)d->no * sizeof(float));
        memcpy(*cached + d->no, d->ref_lse, (size_t)d->nlse * sizeof(float));
    }
    rc = 0;
done:
    free(q);
    free(k);
    free(v);
    free(m);
    free(o);
    return rc;
}

/* ---- strided storage for the device run ------------------------------------------------ */
enum { S_Q, S_K, S_V, S_O, S_MASK, S_LSE, S_COUNT };
static const char *const store_names[S_COUNT] = {"Q", "K", "V", "O", "mask", "lse"};

typedef struct store {
    attn_dtype dtype;
    int64_t elems;
    unsigned char *host;     /* the storage image */
    unsigned char *pristine; /* the image before the run */
    unsigned char *covered;  /* output stores: 1 where an element of the view lives */
    attn_buffer *buf;
    uint64_t buf_off;        /* bytes */
} store;

typedef struct view {
    tu_layout l;             /* shape, strides, base: element offsets in the store */
    int store;
    int dense;               /* pass all-zero strides (the default layout) */
} view;

static int64_t layout(view *v, const int64_t shape[4], const int order[4], int64_t inner,
                      const int64_t pad[4])
{
    return tu_layout_make(&v->l, shape, order, inner, pad);
}

static void scatter(const view *v, store *s, const float *x)
{
    tu_scatter(&v->l, s->host, s->dtype, x);
}

static void gather(const view *v, const store *s, float *x)
{
    tu_gather(&v->l, s->host, s->dtype, x);
}

/* Gap fill: inputs get NaN (a kernel that reads a gap poisons its result), outputs a
 * recognisable finite value (an element the kernel fails to write cannot pass). */
static void fill_store(store *s, int output)
{
    for (int64_t i = 0; i < s->elems; i++) {
        if (s->dtype == ATTN_DTYPE_F32) {
            uint32_t bits = output ? 0xc4411000u /* -772.25 */ : 0x7fc0beefu;
            memcpy(s->host + 4 * i, &bits, 4);
        } else if (s->dtype == ATTN_DTYPE_F16) {
            uint16_t bits = output ? 0xdeadu : 0x7e5au;
            memcpy(s->host + 2 * i, &bits, 2);
        } else {
            s->host[i] = 0xa5;
        }
    }
}

static attn_tensor to_tensor(const view *v, const store *stores, int use_buffers)
{
    const store *s = &stores[v->store];
    const tu_layout *l = &v->l;
    attn_tensor t = attn_tensor_host(s->dtype, l->shape[0], l->shape[1], l->shape[2], l->shape[3],
                                     NULL);
    if (!v->dense)
        memcpy(t.stride, l->stride, sizeof t.stride);
    uint64_t byte_off = (uint64_t)l->base * tu_dtype_size(s->dtype);
    if (use_buffers) {
        t.buffer = s->buf;
        t.offset = s->buf_off + byte_off;
    } else {
        t.data = s->host + byte_off;
    }
    return t;
}

/* Flat dense index -> "[a,b,c,d]" for a shape. */
static void index_str(int64_t idx, const int64_t shape[4], char *buf, size_t size)
{
    int64_t c[4];
    for (int k = 3; k >= 0; k--) {
        c[k] = shape[k] ? idx % shape[k] : 0;
        idx = shape[k] ? idx / shape[k] : 0;
    }
    snprintf(buf, size, "[%lld,%lld,%lld,%lld]", (long long)c[0], (long long)c[1],
             (long long)c[2], (long long)c[3]);
}

/* ---- per-device bookkeeping ---------------------------------------------------------------- */
#define MAX_ENTRIES 64
typedef struct dev_stats {
    int cases, failures, family_mismatch, skipped;
    int started;
    double start_s, share_s; /* when the entry began; the wall seconds it may use */
    double plan_s, run_s;    /* wall seconds in plan_create and run */
    double longest_s;        /* the slowest single run (plan_create + run), usually a cold JIT */
    double cpu_s;            /* process CPU seconds of plan_create + run, for the summary */
} dev_stats;
static dev_stats stats[MAX_ENTRIES];
static size_t active[MAX_ENTRIES]; /* indices of the entries under test, in order */
static size_t num_active;
static double reference_s;
static int case_lo = 0, case_hi = NUM_CASES; /* ATTN_MATRIX_CASES=a or a-b narrows the run */
static int verbose;                          /* ATTN_MATRIX_VERBOSE=1: one line per run */
static const char *device_filter; /* ATTN_MATRIX_DEVICE=text: only entries whose label has it */

/* Wall seconds the whole matrix may take (ATTN_MATRIX_BUDGET_S overrides it; 0: no
 * limit), inside meson's 600 s timeout. The matrix compiles about 70 kernels per (device,
 * family); a JIT that needs a minute per kernel would take over an hour, and meson would
 * kill the suite with no result for any device. Entries run one after another; each may
 * use half of the time left (the last one all of it), so a slow entry cannot starve the
 * others. An entry stops before a run that could cross its share (judged by its slowest
 * run so far, usually a cold compile); its remaining runs are skipped and the suite
 * fails, saying so. */
#define TOTAL_BUDGET_S 480.0
static double budget_s, deadline_s;

/* The budget cannot interrupt a run: one cold compile has taken minutes. Rather than let
 * meson's timeout (600 s) kill the suite silently, a watchdog names the run in progress
 * and exits first (ATTN_MATRIX_WATCHDOG_S overrides WATCHDOG_S; 0: no watchdog). */
#define WATCHDOG_S 570.0
static pthread_mutex_t running_lock = PTHREAD_MUTEX_INITIALIZER;
static char running[1024]; /* "<entry>: <case>" of the run in progress, or "" */
static double running_since;

static void set_running(const char *label, const char *case_name)
{
    pthread_mutex_lock(&running_lock);
    if (label)
        snprintf(running, sizeof running, "%s: %s", label, case_name);
    else
        running[0] = 0;
    running_since = tu_now();
    pthread_mutex_unlock(&running_lock);
}

static void *watchdog(void *arg)
{
    double limit = *(const double *)arg, start = tu_now();
    for (double left; (left = start + limit - tu_now()) > 0;) {
        struct timespec ts = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
        nanosleep(&ts, NULL);
    }
    pthread_mutex_lock(&running_lock);
    printf("matrix: watchdog: the suite has run %.0f s (ATTN_MATRIX_WATCHDOG_S); %s%s for "
           "%.0f s; giving up before meson's timeout\n", limit,
           running[0] ? "in progress: " : "between runs", running, tu_now() - running_since);
    fflush(stdout);
    _exit(1);
}

/* Runs case `c` on device entry `d` and compares with the reference. Returns 0 on pass,
 * 1 with a message on failure. */
static int run_device(const tu_device *d, dev_stats *st, const mcase *c, const case_data *cd,
                      char *msg, size_t msz)
{
    static const int order_bshd[4] = {3, 2, 1, 0};
    static const int order_bhsd[4] = {3, 1, 2, 0};
    const int use_buf = (c->flags & V_BUFFERS) != 0;
    attn_dtype mdt = c->mask_kind == ATTN_MASK_BOOLEAN ? ATTN_DTYPE_U8 : ATTN_DTYPE_F32;
    store s[S_COUNT];
    view vq, vk, vv, vo, vm, vl;
    memset(s, 0, sizeof s);
    memset(&vq, 0, sizeof vq), memset(&vk, 0, sizeof vk), memset(&vv, 0, sizeof vv);
    memset(&vo, 0, sizeof vo), memset(&vm, 0, sizeof vm), memset(&vl, 0, sizeof vl);
    attn_plan *plan = NULL;
    int rc = 1;
    float *got_o = NULL, *got_lse = NULL;
    char where[96];

    /* Q and O: [B,S,H,D], or [B,H,S,D] through strides; O possibly with gaps. */
    const int *qo_order = (c->flags & V_Q_BHSD) ? order_bhsd : order_bshd;
    const int qo_dense = !(c->flags & V_Q_BHSD);
    {
        int64_t shape[4] = {c->batch, c->q_len, c->heads, c->hd};
        vq.store = S_Q;
        vq.dense = qo_dense;
        s[S_Q].elems = layout(&vq, shape, qo_order, 1, NULL);
        s[S_Q].dtype = c->dtype;
    }
    {
        static const int64_t gaps[4] = {2, 3, 5, 7};
        int64_t shape[4] = {c->batch, c->q_len, c->heads, c->vd};
        vo.store = S_O;
        vo.dense = qo_dense && !(c->flags & V_O_GAP);
        vo.l.base = (c->flags & V_O_GAP) ? 11 : 0;
        s[S_O].elems = vo.l.base + layout(&vo, shape, qo_order, 1,
                                        (c->flags & V_O_GAP) ? gaps : NULL);
        s[S_O].dtype = c->dtype;
    }
    /* K and V: dense, padded, fused into one allocation, [B,H,S,D], or element stride 2. */
    {
        int64_t kshape[4] = {c->batch, c->kv_len, c->kv_heads, c->hd};
        int64_t vshape[4] = {c->batch, c->kv_len, c->kv_heads, c->vd};
        s[S_K].dtype = s[S_V].dtype = c->dtype;
        vk.store = S_K;
        vv.store = S_V;
        if (c->flags & V_KV_FUSED) {
            int64_t row = c->kv_heads * (c->hd + c->vd);
            memcpy(vk.l.shape, kshape, sizeof kshape);
            memcpy(vv.l.shape, vshape, sizeof vshape);
            int64_t ks[4] = {c->kv_len * row, row, c->hd, 1};
            int64_t vs[4] = {c->kv_len * row, row, c->vd, 1};
            memcpy(vk.l.stride, ks, sizeof ks);
            memcpy(vv.l.stride, vs, sizeof vs);
            vv.store = S_K;
            vv.l.base = c->kv_heads * c->hd;
            s[S_K].elems = c->batch * c->kv_len * row;
        } else {
            static const int64_t kpad[4] = {3, 5, 0, 0};
            vk.dense = !(c->flags & V_K_PAD);
            s[S_K].elems = layout(&vk, kshape, order_bshd, 1, (c->flags & V_K_PAD) ? kpad : NULL);
            vv.dense = !(c->flags & (V_V_BHSD | V_V_INNER2));
            s[S_V].elems = layout(&vv, vshape, (c->flags & V_V_BHSD) ? order_bhsd : order_bshd,
                                  (c->flags & V_V_INNER2) ? 2 : 1, NULL);
        }
    }
    if (cd->nmask) {
        static const int64_t mpad[4] = {3, 1, 0, 0};
        int64_t shape[4] = {c->mask_b, c->mask_h, c->q_len, c->kv_len};
        vm.store = S_MASK;
        vm.dense = !(c->flags & V_MASK_PAD);
        s[S_MASK].elems = layout(&vm, shape, order_bshd, 1, (c->flags & V_MASK_PAD) ? mpad : NULL);
        s[S_MASK].dtype = mdt;
    }
    if (c->want_lse) {
        static const int64_t lpad[4] = {1, 0, 1, 3};
        int64_t shape[4] = {c->batch, c->heads, c->q_len, 1};
        vl.store = S_LSE;
        vl.dense = !(c->flags & V_LSE_GAP);
        s[S_LSE].elems = layout(&vl, shape, order_bshd, 1, (c->flags & V_LSE_GAP) ? lpad : NULL);
        s[S_LSE].dtype = ATTN_DTYPE_F32;
    }

    for (int i = 0; i < S_COUNT; i++) {
        if (!s[i].elems)
            continue;
        size_t bytes = (size_t)s[i].elems * tu_dtype_size(s[i].dtype);
        s[i].host = malloc(bytes);
        s[i].pristine = malloc(bytes);
        s[i].covered = calloc((size_t)s[i].elems, 1);
        if (!s[i].host || !s[i].pristine || !s[i].covered) {
            snprintf(msg, msz, "out of host memory");
            goto done;
        }
        fill_store(&s[i], i == S_O || i == S_LSE);
    }
    scatter(&vq, &s[S_Q], cd->q);
    scatter(&vk, &s[S_K], cd->k);
    scatter(&vv, &s[vv.store], cd->v);
    if (cd->nmask)
        scatter(&vm, &s[S_MASK], cd->mask);
    tu_layout_mark(&vo.l, s[S_O].covered);
    if (c->want_lse)
        tu_layout_mark(&vl.l, s[S_LSE].covered);
    for (int i = 0; i < S_COUNT; i++)
        if (s[i].elems)
            memcpy(s[i].pristine, s[i].host, (size_t)s[i].elems * tu_dtype_size(s[i].dtype));

    if (use_buf) {
        for (int i = 0; i < S_COUNT; i++) {
            if (!s[i].elems)
                continue;
            size_t esz = tu_dtype_size(s[i].dtype);
            size_t bytes = (size_t)s[i].elems * esz;
            s[i].buf_off = (c->flags & V_ODD_OFFSET) ? 128 + 3 * esz : 256;
            attn_status bst = attn_buffer_create(d->ctx, s[i].buf_off + bytes + 64, &s[i].buf);
            if (bst == ATTN_OK)
                bst = attn_buffer_upload(s[i].buf, s[i].buf_off, s[i].host, bytes);
            if (bst != ATTN_OK) {
                snprintf(msg, msz, "%s buffer (%zu bytes at offset %llu): %s: %s", store_names[i],
                         bytes, (unsigned long long)s[i].buf_off, attn_status_name(bst),
                         attn_last_detail());
                goto done;
            }
        }
    }

    attn_desc desc;
    make_desc(c, &desc, c->plan_kv_lens);
    double c0 = tu_cpu_now(), t0 = tu_now();
    attn_status stt = attn_plan_create(d->ctx, &desc, &plan);
    double t1 = tu_now();
    st->plan_s += t1 - t0;
    st->cpu_s += tu_cpu_now() - c0;
    if (stt != ATTN_OK) {
        snprintf(msg, msz, "attn_plan_create: %s: %.300s", attn_status_name(stt),
                 attn_last_detail());
        goto done;
    }
    attn_plan_info pinfo;
    memset(&pinfo, 0, sizeof pinfo);
    pinfo.struct_size = sizeof pinfo;
    if (attn_plan_get_info(plan, &pinfo) == ATTN_OK && pinfo.family != d->family)
        st->family_mismatch++;

    attn_run_args args = ATTN_RUN_ARGS_INIT;
    args.q = to_tensor(&vq, s, use_buf);
    args.k = to_tensor(&vk, s, use_buf);
    args.v = to_tensor(&vv, s, use_buf);
    args.o = to_tensor(&vo, s, use_buf);
    if (cd->nmask)
        args.mask = to_tensor(&vm, s, use_buf);
    if (c->want_lse)
        args.lse = to_tensor(&vl, s, use_buf);
    if (c->kv_lens_at_run)
        args.kv_lens = c->kv_lens;
    double c2 = tu_cpu_now(), t2 = tu_now();
    stt = attn_plan_run(plan, &args);
    double t3 = tu_now(), c3 = tu_cpu_now();
    st->run_s += t3 - t2;
    st->cpu_s += c3 - c2;
    if (t3 - t2 + t1 - t0 > st->longest_s)
        st->longest_s = t3 - t2 + t1 - t0;
    if (verbose) {
        printf("matrix: %s: %s: plan %.3f s, run %.3f s (%.3f CPU s), kernel %s block %ux%u\n",
               d->label, c->name, t1 - t0, t3 - t2, c3 - c0, pinfo.kernel, pinfo.block_m,
               pinfo.block_n);
        fflush(stdout);
    }
    if (stt != ATTN_OK) {
        snprintf(msg, msz, "attn_plan_run: %s: %.300s", attn_status_name(stt), attn_last_detail());
        goto done;
    }
    if (use_buf) {
        for (int i = 0; i < S_COUNT; i++) {
            if (!s[i].elems)
                continue;
            size_t bytes = (size_t)s[i].elems * tu_dtype_size(s[i].dtype);
            attn_status bst = attn_buffer_download(s[i].buf, s[i].buf_off, s[i].host, bytes);
            if (bst != ATTN_OK) {
                snprintf(msg, msz, "%s download: %s: %s", store_names[i], attn_status_name(bst),
                         attn_last_detail());
                goto done;
            }
        }
    }

    /* Nothing outside the outputs' elements may change: input storage and gaps alike. */
    for (int i = 0; i < S_COUNT; i++) {
        size_t esz = tu_dtype_size(s[i].dtype);
        for (int64_t e = 0; e < s[i].elems; e++) {
            if (s[i].covered[e])
                continue;
            if (memcmp(s[i].host + e * (int64_t)esz, s[i].pristine + e * (int64_t)esz, esz)) {
                snprintf(msg, msz, "%s storage element %lld (outside the %s) was modified",
                         store_names[i], (long long)e,
                         (i == S_O || i == S_LSE) ? "tensor's elements" : "outputs");
                goto done;
            }
        }
    }

    got_o = malloc((size_t)cd->no * sizeof(float));
    got_lse = malloc((size_t)cd->nlse * sizeof(float));
    if (!got_o || !got_lse) {
        snprintf(msg, msz, "out of host memory");
        goto done;
    }
    gather(&vo, &s[S_O], got_o);
    tu_compare_result r;
    if (!tu_compare(got_o, cd->ref_o, (size_t)cd->no, tu_tolerance(c->dtype), &r)) {
        char desc_buf[256];
        tu_compare_describe(&r, desc_buf, sizeof desc_buf);
        index_str((int64_t)r.worst, vo.l.shape, where, sizeof where);
        snprintf(msg, msz, "O [b,s,h,d]: %s; worst at %s", desc_buf, where);
        goto done;
    }
    if (c->want_lse) {
        gather(&vl, &s[S_LSE], got_lse);
        /* The lse is f32 storage, accumulated in f32 from the same inputs for both. */
        if (!tu_compare(got_lse, cd->ref_lse, (size_t)cd->nlse, TU_TOL_F32, &r)) {
            char desc_buf[256];
            tu_compare_describe(&r, desc_buf, sizeof desc_buf);
            index_str((int64_t)r.worst, vl.l.shape, where, sizeof where);
            snprintf(msg, msz, "lse [b,h,s,0]: %s; worst at %s", desc_buf, where);
            goto done;
        }
    }
    rc = 0;
done:
    attn_plan_destroy(plan);
    for (int i = 0; i < S_COUNT; i++) {
        attn_buffer_destroy(s[i].buf);
        free(s[i].host);
        free(s[i].pristine);
        free(s[i].covered);
    }
    free(got_o);
    free(got_lse);
    return rc;
}

/* ---- the tests -------------------------------------------------------------------------------- */
START_TEST(test_contexts)
{
    const tu_device *devs;
    size_t n = tu_devices(&devs, NULL);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (!devs[i].ctx) {
            fprintf(stderr, "matrix: %s: no context: %s: %s\n", devs[i].label,
                    attn_status_name(devs[i].create_status), devs[i].detail);
            bad++;
        }
    }
    ck_assert_msg(bad == 0, "%d device context(s) could not be created (see above)", bad);
}
END_TEST

/* Loop index: entry-major, so each (device, family) runs its whole matrix in turn. */
START_TEST(test_case)
{
    size_t e = (size_t)_i / NUM_CASES;
    int ci = _i % NUM_CASES;
    if (ci < case_lo || ci >= case_hi || e >= num_active)
        return;
    const tu_device *devs;
    tu_devices(&devs, NULL);
    const tu_device *d = &devs[active[e]];
    dev_stats *st = &stats[active[e]];
    if (!d->ctx)
        return; /* test_contexts reports it */
    if (!st->started) {
        st->started = 1;
        st->start_s = tu_now();
        double left = deadline_s - st->start_s;
        st->share_s = e + 1 < num_active ? left / 2 : left;
    }
    int failures = 0;
    char first[1536] = "";
    for (int slot = 0; slot < VARIANTS_PER_CASE; slot++) {
        mcase c;
        case_data cd;
        char msg[768] = "";
        build_case(ci, slot, &c);
        if (budget_s > 0 && tu_now() - st->start_s + st->longest_s > st->share_s) {
            if (!st->skipped++) {
                snprintf(msg, sizeof msg, "time budget spent: %.1f of its %.1f s "
                         "(ATTN_MATRIX_BUDGET_S) after %d runs (plan_create %.1f s, run %.1f s, "
                         "slowest run %.1f s); this entry's remaining runs are skipped",
                         tu_now() - st->start_s, st->share_s, st->cases, st->plan_s, st->run_s,
                         st->longest_s);
                fprintf(stderr, "FAIL %s: %s: %s\n", d->label, c.name, msg);
                failures++;
                snprintf(first, sizeof first, "%s: %s", d->label, msg);
            }
            continue;
        }
        double t0 = tu_now();
        int prc = prepare(&c, &cd, msg, sizeof msg);
        reference_s += tu_now() - t0;
        if (prc) {
            fprintf(stderr, "FAIL reference: %s: %s\n", c.name, msg);
            if (!failures++)
                snprintf(first, sizeof first, "reference: %s: %s", c.name, msg);
            free_data(&cd);
            continue;
        }
        st->cases++;
        msg[0] = 0;
        set_running(d->label, c.name);
        int failed = run_device(d, st, &c, &cd, msg, sizeof msg);
        set_running(NULL, NULL);
        if (failed) {
            st->failures++;
            fprintf(stderr, "FAIL %s: %s: %s\n", d->label, c.name, msg);
            if (!failures++)
                snprintf(first, sizeof first, "%s: %s: %s", d->label, c.name, msg);
        }
        free_data(&cd);
    }
    ck_assert_msg(failures == 0, "%d failure(s); first: %s", failures, first);
}
END_TEST

static void parse_case_range(void)
{
    const char *e = getenv("ATTN_MATRIX_CASES");
    if (!e || !*e)
        return;
    char *end;
    long lo = strtol(e, &end, 10), hi = lo + 1;
    if (*end == '-')
        hi = strtol(end + 1, NULL, 10) + 1;
    if (lo >= 0 && hi > lo && hi <= NUM_CASES) {
        case_lo = (int)lo;
        case_hi = (int)hi;
        printf("matrix: ATTN_MATRIX_CASES=%s: running cases %d..%d only\n", e, case_lo,
               case_hi - 1);
    }
}

int main(void)
{
    const tu_device *devs;
    uint32_t found = 0;
    size_t n = tu_devices(&devs, &found);
    if (found == 0) {
        printf("matrix: no OpenCL or Vulkan device exists (see above); nothing to test against "
               "the reference, skipping\n");
        tu_release();
        return 77;
    }
    parse_case_range();
    verbose = getenv("ATTN_MATRIX_VERBOSE") && atoi(getenv("ATTN_MATRIX_VERBOSE")) > 0;
    device_filter = getenv("ATTN_MATRIX_DEVICE");
    for (size_t i = 0; i < n && i < MAX_ENTRIES; i++)
        if (!device_filter || strstr(devs[i].label, device_filter))
            active[num_active++] = i;
    budget_s = TOTAL_BUDGET_S;
    if (getenv("ATTN_MATRIX_BUDGET_S"))
        budget_s = atof(getenv("ATTN_MATRIX_BUDGET_S"));
    if (budget_s <= 0)
        budget_s = 0;
    deadline_s = tu_now() + (budget_s > 0 ? budget_s : 1e12);
    if (device_filter)
        printf("matrix: ATTN_MATRIX_DEVICE=%s: %zu of %zu entries\n", device_filter, num_active,
               n);
    if (budget_s > 0)
        printf("matrix: time budget %g s for all entries (ATTN_MATRIX_BUDGET_S)\n", budget_s);

    Suite *s = suite_create("matrix");
    TCase *tc = tcase_create("contexts");
    tcase_add_test(tc, test_contexts);
    suite_add_tcase(s, tc);
    TCase *tm = tcase_create("matrix");
    tcase_add_loop_test(tm, test_case, 0, (int)num_active * NUM_CASES);
    suite_add_tcase(s, tm);

    SRunner *sr = srunner_create(s);
    /* One context per (device, family) lives for the whole run so that each kernel is
     * compiled once; a forked child could not share it (an OpenCL or Vulkan context does
     * not survive fork), so the tests run in this process. A failing assertion only ends
     * its own test. Check's timeouts need fork, so the time budget and the watchdog
     * bound the run instead. */
    srunner_set_fork_status(sr, CK_NOFORK);
    static double watchdog_s = WATCHDOG_S;
    if (getenv("ATTN_MATRIX_WATCHDOG_S"))
        watchdog_s = atof(getenv("ATTN_MATRIX_WATCHDOG_S"));
    pthread_t wd;
    if (watchdog_s > 0 && pthread_create(&wd, NULL, watchdog, &watchdog_s) == 0)
        pthread_detach(wd);
    double t0 = tu_now();
    srunner_run_all(sr, CK_NORMAL);
    double total = tu_now() - t0;
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);

    printf("matrix: %d cases x %d variants per device, reference %.1f s, total %.1f s\n",
           case_hi - case_lo, VARIANTS_PER_CASE, reference_s, total);
    for (size_t e = 0; e < num_active; e++) {
        size_t i = active[e];
        attn_stats cs;
        memset(&cs, 0, sizeof cs);
        cs.struct_size = sizeof cs;
        if (!devs[i].ctx || attn_context_get_stats(devs[i].ctx, &cs) != ATTN_OK)
            memset(&cs, 0, sizeof cs);
        printf("matrix: %s: %d runs, %d failed; plan_create %.1f s (%llu kernels compiled, "
               "%llu cache hits), run %.1f s; %.1f CPU s%s\n",
               devs[i].label, stats[i].cases, stats[i].failures, stats[i].plan_s,
               (unsigned long long)cs.kernels_compiled, (unsigned long long)cs.compile_cache_hits,
               stats[i].run_s, stats[i].cpu_s, devs[i].ctx ? "" : " (no context)");
        if (stats[i].skipped)
            printf("matrix: %s: %d runs skipped: time budget spent\n", devs[i].label,
                   stats[i].skipped);
        if (stats[i].family_mismatch)
            printf("matrix: %s: note: %d plans used another kernel family than the one forced\n",
                   devs[i].label, stats[i].family_mismatch);
    }
    for (size_t i = 0; i < sizeof ref_cache / sizeof ref_cache[0]; i++)
        free(ref_cache[i]);
    tu_release();
    return failed ? 1 : 0;
}
