/* test_features.c — patterns, positions and logit transforms (issue 6) on every device
 * entry (backend × device × kernel family) against the double-precision reference:
 * each pattern part and the per-head mixes, ALiBi, T5, RoPE in both layouts, soft-cap and
 * sinks, with causal, key lengths per batch entry, GQA, f16 and an odd head_dim, in one
 * pass and scheduled under a small budget; plus the checks that make "cost follows
 * sparsity" true: the plan's computed tiles are exactly the tiles with a visible key, and
 * a scheduled run of a sliding window uploads less than the dense run.
 *
 * Cases share kernel variants where they can (a pattern is data, not a compile: only
 * head_dim, storage and which position features are on make a new program). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

enum {
    P_NONE,
    P_WINDOW,        /* window 9 back, 4 ahead */
    P_WINDOW_LEFT,   /* window 20 back, nothing ahead (with causal: local causal) */
    P_WINDOW_EDGES,  /* 0 back, unbounded ahead: rows at the end see one key */
    P_DILATED,       /* every 3rd key up to 60 back, and a window of 2 */
    P_GLOBAL,        /* global tokens at both ends + window 4 */
    P_BIGBIRD,       /* random blocks of 16 (2 per query block) + window 8 + global 0 */
    P_BSR,           /* a block-sparse layout of 16 x 32 blocks */
    P_LONGFORMER,    /* per head: local, local + dilated, local + global, dense */
    P_BIGBIRD_MIX,   /* per head: random, local, strided, global */
    P_COUNT
};
static const char *const pattern_names[P_COUNT] = {
    "dense", "window", "window-left", "window-edges", "dilated", "global", "bigbird", "bsr",
    "longformer-mix", "bigbird-mix"};

enum { F_ALIBI = 1, F_T5 = 2, F_ROPE = 4, F_ROPE_IL = 8, F_SOFTCAP = 16, F_SINKS = 32 };

typedef struct fcase {
    int pattern;
    unsigned feats;
    int64_t batch, heads, kv_heads, q_len, kv_len, head_dim;
    attn_dtype dtype;
    int causal;
    int lens;        /* 1: key lengths per batch entry (kv_len, then shorter) */
    int scheduled;   /* run under a budget that forces the scheduler */
} fcase;

#define F32 ATTN_DTYPE_F32
#define F16 ATTN_DTYPE_F16
static const fcase cases[] = {
    /* Patterns, no positions: one compiled variant per (head_dim, dtype). */
    {P_WINDOW, 0, 1, 2, 2, 150, 150, 64, F32, 0, 0, 0},
    {P_WINDOW_LEFT, 0, 1, 2, 2, 150, 150, 64, F32, 1, 0, 0},
    {P_WINDOW_EDGES, 0, 2, 2, 1, 70, 133, 64, F32, 0, 1, 0},
    {P_DILATED, 0, 1, 8, 2, 140, 140, 64, F32, 1, 0, 0},
    {P_GLOBAL, 0, 1, 2, 2, 161, 161, 64, F32, 0, 0, 0},
    {P_GLOBAL, 0, 1, 2, 2, 161, 161, 64, F32, 1, 0, 0},
    {P_BIGBIRD, 0, 1, 4, 4, 200, 200, 64, F32, 0, 0, 0},
    {P_BSR, 0, 1, 2, 1, 100, 130, 64, F32, 0, 0, 0},
    {P_LONGFORMER, 0, 2, 4, 2, 170, 170, 64, F32, 1, 1, 0},
    {P_BIGBIRD_MIX, 0, 1, 4, 4, 190, 190, 64, F32, 0, 0, 0},
    /* Every position feature at once (one variant), with and without patterns. */
    {P_NONE, F_ALIBI | F_T5 | F_ROPE | F_SOFTCAP | F_SINKS, 2, 4, 2, 90, 120, 64, F32, 1, 1, 0},
    {P_LONGFORMER, F_ALIBI | F_T5 | F_ROPE | F_SOFTCAP | F_SINKS, 1, 4, 2, 150, 150, 64, F32, 1, 0, 0},
    {P_BIGBIRD_MIX, F_ALIBI | F_T5 | F_ROPE | F_SOFTCAP | F_SINKS, 1, 4, 4, 160, 160, 64, F32, 0, 0, 0},
    /* The position features in two disjoint sets (each set is one kernel variant; every
     * variant is a compile per device entry, which the suite's time pays for). */
    {P_NONE, F_ALIBI | F_SOFTCAP, 1, 8, 2, 100, 100, 64, F32, 1, 0, 0},
    {P_NONE, F_T5 | F_ROPE | F_ROPE_IL | F_SINKS, 1, 2, 1, 100, 100, 64, F32, 0, 0, 0},
    /* f16 storage and an odd head_dim, everything on (both RoPE layouts: one variant). */
    {P_LONGFORMER, F_ALIBI | F_T5 | F_ROPE | F_SOFTCAP | F_SINKS, 1, 4, 2, 120, 120, 7, F16, 1, 0, 0},
    {P_BIGBIRD, F_ALIBI | F_T5 | F_ROPE | F_ROPE_IL | F_SOFTCAP | F_SINKS, 2, 2, 1, 130, 130, 7, F16, 0, 1, 0},
    /* Scheduled: segments x chunks merged exactly, empty chunks skipped, sinks added once. */
    {P_WINDOW_LEFT, F_ALIBI | F_T5 | F_ROPE | F_SOFTCAP | F_SINKS, 1, 4, 2, 1024, 1024, 64, F32, 1, 0, 1},
    {P_BIGBIRD_MIX, 0, 1, 4, 4, 1024, 1024, 64, F32, 0, 0, 1},
};
#define NUM_CASES ((int)(sizeof cases / sizeof cases[0]))

#define SCHED_BUDGET (1u << 20) /* bytes: a 1024-token case needs ~2.5 MiB in one pass */

/* Everything a description points at, owned by one case. */
typedef struct fdesc {
    attn_desc d;
    attn_pattern pats[8];
    int64_t globals[4];
    int32_t bsr_ptr[16], bsr_col[64];
    float t5[8 * 16], sinks[8];
    int32_t lens[4];
} fdesc;

static void set_pattern(attn_pattern *pt, int kind)
{
    attn_pattern z = ATTN_PATTERN_INIT;
    *pt = z;
    switch (kind) {
    case 1: pt->window = 1, pt->window_left = 9, pt->window_right = 4; break;
    case 2: pt->window = 1, pt->window_left = 20, pt->window_right = 0; break;
    case 3: pt->window = 1, pt->window_left = 0, pt->window_right = ATTN_UNBOUNDED; break;
    case 4: pt->dilation = 3, pt->dilation_left = 60, pt->dilation_right = 0;
            pt->window = 1, pt->window_left = 2, pt->window_right = 2; break;
    case 5: pt->random_block_size = 16, pt->random_blocks = 2, pt->random_seed = 77; break;
    default: break;
    }
}

static void make_desc(const fcase *c, fdesc *f)
{
    attn_desc d = ATTN_DESC_INIT;
    memset(f, 0, sizeof *f);
    d.batch = c->batch;
    d.num_heads = c->heads;
    d.num_kv_heads = c->kv_heads;
    d.q_len = c->q_len;
    d.kv_len = c->kv_len;
    d.head_dim = c->head_dim;
    d.dtype = c->dtype;
    d.causal = c->causal;
    d.want_lse = 1;
    const int64_t S = c->kv_len;
    if (c->lens) {
        for (int64_t b = 0; b < c->batch; ++b)
            f->lens[b] = (int32_t)(c->kv_len - 13 * b);
        d.kv_lens = f->lens;
    }
    attn_pattern *pt = f->pats;
    d.patterns = pt;
    d.num_patterns = 1;
    switch (c->pattern) {
    case P_NONE: d.patterns = NULL, d.num_patterns = 0; break;
    case P_WINDOW: set_pattern(pt, 1); break;
    case P_WINDOW_LEFT: set_pattern(pt, 2); break;
    case P_WINDOW_EDGES: set_pattern(pt, 3); break;
    case P_DILATED: set_pattern(pt, 4); break;
    case P_GLOBAL:
        set_pattern(pt, 0);
        f->globals[0] = 0, f->globals[1] = 1, f->globals[2] = S - 1;
        pt->global_tokens = f->globals, pt->num_global = 3;
        pt->window = 1, pt->window_left = 4, pt->window_right = 4;
        break;
    case P_BIGBIRD:
        set_pattern(pt, 5);
        pt->window = 1, pt->window_left = 8, pt->window_right = 8;
        f->globals[0] = 0;
        pt->global_tokens = f->globals, pt->num_global = 1;
        break;
    case P_BSR: {
        set_pattern(pt, 0);
        const int64_t nbr = (c->q_len + 15) / 16, nbc = (S + 31) / 32;
        int32_t n = 0;
        for (int64_t r = 0; r < nbr; ++r) {
            f->bsr_ptr[r] = n;
            for (int64_t col = 0; col < nbc; ++col)
                if ((r * 7 + col * 3) % 4 == 0 || col == r / 2)
                    f->bsr_col[n++] = (int32_t)col;
        }
        f->bsr_ptr[nbr] = n;
        pt->bsr_block_q = 16, pt->bsr_block_k = 32;
        pt->bsr_row_ptr = f->bsr_ptr, pt->bsr_col_idx = f->bsr_col;
        break;
    }
    case P_LONGFORMER:
    case P_BIGBIRD_MIX:
        d.num_patterns = c->heads;
        for (int64_t h = 0; h < c->heads; ++h) {
            attn_pattern *p = &pt[h];
            const int k = (int)(h % 4);
            f->globals[0] = 0, f->globals[1] = S - 1;
            if (c->pattern == P_LONGFORMER) {
                set_pattern(p, k == 3 ? 0 : 2);
                if (k == 1)
                    p->dilation = 4, p->dilation_left = 64, p->dilation_right = 0;
                if (k == 2)
                    p->global_tokens = f->globals, p->num_global = 2;
            } else {
                set_pattern(p, k == 0 ? 5 : k == 1 ? 1 : 0);
                if (k == 2)
                    p->dilation = 5, p->dilation_left = ATTN_UNBOUNDED, p->dilation_right = ATTN_UNBOUNDED;
                if (k == 3)
                    p->global_tokens = f->globals, p->num_global = 2, p->window = 1,
                    p->window_left = 1, p->window_right = 1;
            }
        }
        break;
    default: break;
    }
    if (c->feats & F_ALIBI)
        d.alibi = 1;
    if (c->feats & F_T5) {
        for (int i = 0; i < 8 * 16; ++i)
            f->t5[i] = (float)((i * 37) % 23 - 11) / 8.0f;
        d.t5_table = f->t5;
        d.t5_num_buckets = 16;
        d.t5_max_distance = 64;
        d.t5_bidirectional = !c->causal;
    }
    if (c->feats & F_ROPE) {
        d.rope = 1;
        d.rope_interleaved = (c->feats & F_ROPE_IL) != 0;
        d.rope_dims = c->head_dim >= 32 ? 32 : (c->head_dim & ~1);
        d.rope_k_offset = 3; /* query rows at the positions of the last q_len keys */
        d.rope_q_offset = 3 + (c->kv_len - c->q_len);
        d.rope_base = 500.0f;
    }
    if (c->feats & F_SOFTCAP)
        d.softcap = 1.5f;
    if (c->feats & F_SINKS) {
        for (int h = 0; h < 8; ++h)
            f->sinks[h] = (float)(h % 3) - 0.5f;
        d.sinks = f->sinks;
    }
    f->d = d;
}

/* Host tensors of a case in its storage dtype (f16 values are exact halves). */
typedef struct fdata {
    void *q, *k, *v, *o, *o_ref;
    float *lse, *lse_ref, *of, *of_ref;
    int64_t nq, nk, no;
} fdata;

static void *encode(const float *x, int64_t n, attn_dtype dt)
{
    void *p = malloc((size_t)n * tu_dtype_size(dt));
    for (int64_t i = 0; i < n; ++i)
        tu_store_elem(p, dt, i, x[i]);
    return p;
}

static void make_data(const fcase *c, uint64_t seed, fdata *fd)
{
    fd->nq = c->batch * c->q_len * c->heads * c->head_dim;
    fd->nk = c->batch * c->kv_len * c->kv_heads * c->head_dim;
    fd->no = fd->nq;
    float *t = malloc((size_t)(fd->nq > fd->nk ? fd->nq : fd->nk) * sizeof *t);
    const attn_dtype dt = c->dtype;
    tu_fill_uniform(t, (size_t)fd->nq, tu_seed(seed, 1, 0));
    for (int64_t i = 0; i < fd->nq; ++i)
        t[i] *= 2.0f; /* scores of a few units: the soft-cap and biases matter */
    fd->q = encode(t, fd->nq, dt);
    tu_fill_uniform(t, (size_t)fd->nk, tu_seed(seed, 2, 0));
    fd->k = encode(t, fd->nk, dt);
    tu_fill_uniform(t, (size_t)fd->nk, tu_seed(seed, 3, 0));
    fd->v = encode(t, fd->nk, dt);
    free(t);
    fd->o = calloc((size_t)fd->no, tu_dtype_size(dt));
    fd->o_ref = calloc((size_t)fd->no, tu_dtype_size(dt));
    const int64_t nl = c->batch * c->heads * c->q_len;
    fd->lse = calloc((size_t)nl, sizeof(float));
    fd->lse_ref = calloc((size_t)nl, sizeof(float));
    fd->of = calloc((size_t)fd->no, sizeof(float));
    fd->of_ref = calloc((size_t)fd->no, sizeof(float));
}

static void free_data(fdata *fd)
{
    free(fd->q), free(fd->k), free(fd->v), free(fd->o), free(fd->o_ref);
    free(fd->lse), free(fd->lse_ref), free(fd->of), free(fd->of_ref);
}

static attn_run_args make_args(const fcase *c, const fdata *fd, void *o, float *lse)
{
    attn_run_args a = ATTN_RUN_ARGS_INIT;
    const attn_dtype dt = c->dtype;
    a.q = attn_tensor_host(dt, c->batch, c->q_len, c->heads, c->head_dim, fd->q);
    a.k = attn_tensor_host(dt, c->batch, c->kv_len, c->kv_heads, c->head_dim, fd->k);
    a.v = attn_tensor_host(dt, c->batch, c->kv_len, c->kv_heads, c->head_dim, fd->v);
    a.o = attn_tensor_host(dt, c->batch, c->q_len, c->heads, c->head_dim, o);
    a.lse = attn_tensor_host(ATTN_DTYPE_F32, c->batch, c->heads, c->q_len, 1, lse);
    return a;
}

static void case_name(const fcase *c, char *buf, size_t n)
{
    snprintf(buf, n, "%s%s%s%s%s%s%s B%lld H%lld/%lld q%lld kv%lld d%lld %s%s%s%s",
             pattern_names[c->pattern], c->feats & F_ALIBI ? "+alibi" : "",
             c->feats & F_T5 ? "+t5" : "", c->feats & F_ROPE ? (c->feats & F_ROPE_IL ? "+rope-il" : "+rope") : "",
             c->feats & F_SOFTCAP ? "+softcap" : "", c->feats & F_SINKS ? "+sinks" : "", "",
             (long long)c->batch, (long long)c->heads, (long long)c->kv_heads,
             (long long)c->q_len, (long long)c->kv_len, (long long)c->head_dim,
             tu_dtype_name(c->dtype), c->causal ? " causal" : "", c->lens ? " kv_lens" : "",
             c->scheduled ? " scheduled" : "");
}

/* ATTN_FEATURES_DEVICE=text: only the entries whose label has it (for work on one). */
static int skip_entry(const tu_device *d)
{
    const char *f = getenv("ATTN_FEATURES_DEVICE");
    return f && *f && !strstr(d->label, f);
}

/* One context per device entry with the scheduling budget, made on first use. */
static attn_context *budget_ctx[64];

static attn_context *context_for(const tu_device *dev, size_t e, int scheduled)
{
    if (!scheduled)
        return dev->ctx;
    if (!budget_ctx[e]) {
        attn_context_params p = ATTN_CONTEXT_PARAMS_INIT;
        p.backend = dev->backend;
        p.device_index = dev->index;
        p.kernel_family = dev->family;
        p.memory_budget = SCHED_BUDGET;
        ck_assert_int_eq(attn_context_create(&p, &budget_ctx[e]), ATTN_OK);
    }
    return budget_ctx[e];
}

static void to_f32(const void *x, attn_dtype dt, int64_t n, float *out)
{
    for (int64_t i = 0; i < n; ++i)
        out[i] = tu_load_elem(x, dt, i);
}

START_TEST(test_case)
{
    const tu_device *devs;
    const size_t nd = tu_devices(&devs, NULL);
    const size_t e = (size_t)_i / NUM_CASES;
    const fcase *c = &cases[_i % NUM_CASES];
    if (e >= nd || !devs[e].ctx || skip_entry(&devs[e]))
        return;
    const tu_device *dev = &devs[e];
    char name[256], msg[512];
    case_name(c, name, sizeof name);
    fdesc f;
    make_desc(c, &f);
    fdata fd;
    make_data(c, tu_seed((uint64_t)(_i % NUM_CASES), 99, 1), &fd);

    attn_run_args ra = make_args(c, &fd, fd.o_ref, fd.lse_ref);
    ck_assert_msg(tu_reference_run(&f.d, &ra, msg, sizeof msg) == ATTN_OK, "%s: reference: %s",
                  name, msg);

    attn_context *ctx = context_for(dev, e, c->scheduled);
    attn_plan *plan = NULL;
    attn_status s = attn_plan_create(ctx, &f.d, &plan);
    ck_assert_msg(s == ATTN_OK, "%s on %s: plan: %s (%s)", name, dev->label, attn_status_name(s),
                  attn_context_detail(ctx));
    attn_plan_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    ck_assert_int_eq(attn_plan_get_info(plan, &info), ATTN_OK);
    ck_assert_msg(info.scheduled == c->scheduled, "%s on %s: scheduled %d", name, dev->label,
                  info.scheduled);
    attn_run_args a = make_args(c, &fd, fd.o, fd.lse);
    s = attn_plan_run(plan, &a);
    ck_assert_msg(s == ATTN_OK, "%s on %s: run: %s (%s)", name, dev->label, attn_status_name(s),
                  attn_context_detail(ctx));

    to_f32(fd.o, c->dtype, fd.no, fd.of);
    to_f32(fd.o_ref, c->dtype, fd.no, fd.of_ref);
    tu_compare_result r;
    char why[256];
    const double tol = tu_tolerance(c->dtype);
    if (!tu_compare(fd.of, fd.of_ref, (size_t)fd.no, tol, &r)) {
        tu_compare_describe(&r, why, sizeof why);
        ck_abort_msg("%s on %s (%s): O: %s", name, dev->label, info.kernel, why);
    }
    if (!tu_compare(fd.lse, fd.lse_ref, (size_t)(c->batch * c->heads * c->q_len), tol, &r)) {
        tu_compare_describe(&r, why, sizeof why);
        ck_abort_msg("%s on %s (%s): lse: %s", name, dev->label, info.kernel, why);
    }
    attn_plan_destroy(plan);
    free_data(&fd);
}
END_TEST

/* The plan's computed tiles are exactly the (block_m rows x 16 keys) tiles with a visible
 * key, counted from the reference's probabilities of an all-zero Q/K (every visible key
 * gets 1/count > 0, every other one 0). */
START_TEST(test_tiles_exact)
{
    const tu_device *devs;
    const size_t nd = tu_devices(&devs, NULL);
    for (size_t e = 0; e < nd; ++e) {
        if (!devs[e].ctx || skip_entry(&devs[e]))
            continue;
        const int which[] = {0, 2, 3, 4, 6, 7, 8, 9}; /* pattern cases */
        for (size_t w = 0; w < sizeof which / sizeof which[0]; ++w) {
            const fcase *c = &cases[which[w]];
            fdesc f;
            make_desc(c, &f);
            attn_plan *plan = NULL;
            ck_assert_int_eq(attn_plan_create(devs[e].ctx, &f.d, &plan), ATTN_OK);
            attn_plan_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
            ck_assert_int_eq(attn_plan_get_info(plan, &info), ATTN_OK);
            attn_plan_destroy(plan);

            const int64_t B = c->batch, H = c->heads, Sq = c->q_len, Skv = c->kv_len;
            const size_t nprob = (size_t)(B * H * Sq * Skv);
            float *probs = calloc(nprob, sizeof *probs);
            fdata fd;
            make_data(c, 5, &fd);
            memset(fd.q, 0, (size_t)fd.nq * tu_dtype_size(c->dtype));
            memset(fd.k, 0, (size_t)fd.nk * tu_dtype_size(c->dtype));
            attn_desc d = f.d;
            d.want_probs = ATTN_PROBS_ALL_HEADS;
            attn_run_args a = make_args(c, &fd, fd.o_ref, fd.lse_ref);
            a.probs = attn_tensor_host(ATTN_DTYPE_F32, B, H, Sq, Skv, probs);
            char msg[256];
            ck_assert_msg(tu_reference_run(&d, &a, msg, sizeof msg) == ATTN_OK, "%s", msg);
            const int64_t bm = info.block_m, nt = (Skv + 15) / 16;
            uint64_t want = 0;
            for (int64_t bh = 0; bh < B * H; ++bh)
                for (int64_t r = 0; r < (Sq + bm - 1) / bm; ++r)
                    for (int64_t t = 0; t < nt; ++t) {
                        int any = 0;
                        for (int64_t i = r * bm; i < (r + 1) * bm && i < Sq && !any; ++i)
                            for (int64_t j = t * 16; j < (t + 1) * 16 && j < Skv && !any; ++j)
                                any = probs[(bh * Sq + i) * Skv + j] > 0.0f;
                        want += (uint64_t)any;
                    }
            char name[256];
            case_name(c, name, sizeof name);
            ck_assert_msg(info.tiles_computed == want && info.tiles_total == (uint64_t)(B * H) * (uint64_t)((Sq + bm - 1) / bm) * (uint64_t)nt,
                          "%s on %s: tiles computed %llu of %llu; visible tiles %llu", name,
                          devs[e].label, (unsigned long long)info.tiles_computed,
                          (unsigned long long)info.tiles_total, (unsigned long long)want);
            free(probs);
            free_data(&fd);
        }
    }
}
END_TEST

/* Scheduled under a budget, a sliding window uploads only the key chunks its segments
 * need: fewer bytes than the same problem dense, and the same result as one pass. */
START_TEST(test_chunks_skipped)
{
    const tu_device *devs;
    const size_t nd = tu_devices(&devs, NULL);
    for (size_t e = 0; e < nd; ++e) {
        if (!devs[e].ctx || skip_entry(&devs[e]))
            continue;
        fcase c = {P_WINDOW, 0, 1, 2, 2, 2048, 2048, 64, F32, 0, 0, 1};
        uint64_t up[2];
        unsigned seg = 0, chunk = 0;
        for (int dense = 0; dense < 2; ++dense) {
            c.pattern = dense ? P_NONE : P_WINDOW;
            fdesc f;
            make_desc(&c, &f);
            attn_context *ctx = context_for(&devs[e], e, 1);
            attn_plan *plan = NULL;
            ck_assert_int_eq(attn_plan_create(ctx, &f.d, &plan), ATTN_OK);
            attn_plan_info info;
            memset(&info, 0, sizeof info);
            info.struct_size = sizeof info;
            ck_assert_int_eq(attn_plan_get_info(plan, &info), ATTN_OK);
            seg = info.segment_rows, chunk = info.chunk_keys;
            fdata fd;
            make_data(&c, 11, &fd);
            attn_run_args a = make_args(&c, &fd, fd.o, fd.lse);
            attn_stats s0, s1;
            memset(&s0, 0, sizeof s0);
            memset(&s1, 0, sizeof s1);
            s0.struct_size = s1.struct_size = sizeof s0;
            ck_assert_int_eq(attn_context_get_stats(ctx, &s0), ATTN_OK);
            ck_assert_int_eq(attn_plan_run(plan, &a), ATTN_OK);
            ck_assert_int_eq(attn_context_get_stats(ctx, &s1), ATTN_OK);
            up[dense] = s1.bytes_uploaded - s0.bytes_uploaded;
            attn_plan_destroy(plan);
            free_data(&fd);
        }
        /* Q goes up once either way. A segment of the window (9 back, 4 ahead) needs the
         * chunks around its rows, 3 or 4 of the 2048 / chunk_keys (8 at 256 keys), so its
         * K and V uploads are well under half the dense run's. */
        const uint64_t qb = (uint64_t)(c.q_len * c.heads * c.head_dim) * 4;
        ck_assert_msg(up[0] > qb && (up[0] - qb) * 2 < up[1] - qb, "%s: window uploaded %llu bytes, dense %llu (segments of %u rows, chunks of %u keys)",
                      devs[e].label, (unsigned long long)up[0], (unsigned long long)up[1], seg, chunk);
    }
}
END_TEST

/* RoPE: a decode step at position offset p equals row p of the full causal run. */
START_TEST(test_rope_decode_row)
{
    const tu_device *devs;
    const size_t nd = tu_devices(&devs, NULL);
    for (size_t e = 0; e < nd; ++e) {
        if (!devs[e].ctx || skip_entry(&devs[e]))
            continue;
        const int64_t S = 97, H = 4, Hk = 2, D = 64;
        /* Every position feature on: the variant of the dense all-features case. */
        fcase c = {P_NONE, F_ALIBI | F_T5 | F_ROPE | F_SOFTCAP | F_SINKS, 1, H, Hk, S, S, D, F32, 1, 0, 0};
        fdesc f;
        make_desc(&c, &f);
        f.d.rope_q_offset = 0;
        f.d.rope_k_offset = 0;
        fdata fd;
        make_data(&c, 21, &fd);
        attn_plan *plan = NULL;
        ck_assert_int_eq(attn_plan_create(devs[e].ctx, &f.d, &plan), ATTN_OK);
        attn_run_args a = make_args(&c, &fd, fd.o, fd.lse);
        ck_assert_int_eq(attn_plan_run(plan, &a), ATTN_OK);
        attn_plan_destroy(plan);

        /* The last row alone: q_len 1 at rotary position S - 1. */
        attn_desc d1 = f.d;
        d1.q_len = 1;
        d1.rope_q_offset = S - 1;
        float o1[4 * 64], l1[4];
        attn_run_args a1 = a;
        a1.q = attn_tensor_host(F32, 1, 1, H, D, (float *)fd.q + (S - 1) * H * D);
        a1.o = attn_tensor_host(F32, 1, 1, H, D, o1);
        a1.lse = attn_tensor_host(F32, 1, H, 1, 1, l1);
        ck_assert_int_eq(attn_plan_create(devs[e].ctx, &d1, &plan), ATTN_OK);
        ck_assert_int_eq(attn_plan_run(plan, &a1), ATTN_OK);
        attn_plan_destroy(plan);
        const float *full = (const float *)fd.o + (S - 1) * H * D;
        tu_compare_result r;
        char why[256];
        if (!tu_compare(o1, full, (size_t)(H * D), 1e-5, &r)) {
            tu_compare_describe(&r, why, sizeof why);
            ck_abort_msg("%s: decode row vs full run: %s", devs[e].label, why);
        }
        free_data(&fd);
    }
}
END_TEST

/* A run's own kv_lens give another tile map: here one that makes a row global (it then
 * sees every key), where the plan's lengths had none. On a loop-capped device (llvmpipe)
 * the plan ran in one pass thanks to its narrow map; this run must not (it is scheduled
 * instead), and the result must be exact either way. */
START_TEST(test_run_lengths_new_map)
{
    const tu_device *devs;
    const size_t nd = tu_devices(&devs, NULL);
    for (size_t e = 0; e < nd; ++e) {
        if (!devs[e].ctx || skip_entry(&devs[e]))
            continue;
        const int64_t S = 2000, Q = 100;
        fcase c = {P_NONE, 0, 1, 2, 2, Q, S, 64, F32, 0, 0, 0};
        fdesc f;
        make_desc(&c, &f);
        attn_pattern *pt = &f.pats[0];
        set_pattern(pt, 1); /* window 9 back, 4 ahead */
        f.globals[0] = 1950;
        pt->global_tokens = f.globals;
        pt->num_global = 1;
        f.d.patterns = pt;
        f.d.num_patterns = 1;
        f.lens[0] = 1900; /* rows at positions 1800..1899: none global */
        f.d.kv_lens = f.lens;
        attn_plan *plan = NULL;
        ck_assert_int_eq(attn_plan_create(devs[e].ctx, &f.d, &plan), ATTN_OK);
        fdata fd;
        make_data(&c, 31, &fd);
        const int32_t run_lens[1] = {2000}; /* row 50 at position 1950: global */
        attn_run_args a = make_args(&c, &fd, fd.o, fd.lse);
        a.kv_lens = run_lens;
        attn_status st = attn_plan_run(plan, &a);
        ck_assert_msg(st == ATTN_OK, "%s: %s (%s)", devs[e].label, attn_status_name(st),
                      attn_context_detail(devs[e].ctx));
        attn_plan_destroy(plan);
        attn_desc rd = f.d;
        int32_t rl[1] = {2000};
        rd.kv_lens = rl;
        attn_run_args ra = make_args(&c, &fd, fd.o_ref, fd.lse_ref);
        char msg[256];
        ck_assert_msg(tu_reference_run(&rd, &ra, msg, sizeof msg) == ATTN_OK, "%s", msg);
        tu_compare_result r;
        char why[256];
        if (!tu_compare(fd.o, fd.o_ref, (size_t)fd.no, tu_tolerance(F32), &r)) {
            tu_compare_describe(&r, why, sizeof why);
            ck_abort_msg("%s: O: %s", devs[e].label, why);
        }
        free_data(&fd);
    }
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
    Suite *s = suite_create("features");
    TCase *tc = tcase_create("features");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, test_case, 0, (int)nd * NUM_CASES);
    tcase_add_test(tc, test_tiles_exact);
    tcase_add_test(tc, test_chunks_skipped);
    tcase_add_test(tc, test_rope_decode_row);
    tcase_add_test(tc, test_run_lengths_new_map);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    const int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    for (size_t e = 0; e < 64; ++e)
        attn_context_destroy(budget_ctx[e]);
    tu_release();
    return failed ? 1 : 0;
}
