/* validate.c — every check on caller input: descriptions at plan creation, tensors at
 * run time. Sizes are checked for overflow before any product reaches an allocator. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/plan.h"

size_t attn__dtype_size(attn_dtype t)
{
    switch (t) {
    case ATTN_DTYPE_F32: return 4;
    case ATTN_DTYPE_F16: return 2;
    case ATTN_DTYPE_U8: return 1;
    default: return 0;
    }
}

static const char *dtype_name(attn_dtype t)
{
    switch (t) {
    case ATTN_DTYPE_NONE: return "none";
    case ATTN_DTYPE_F32: return "f32";
    case ATTN_DTYPE_F16: return "f16";
    case ATTN_DTYPE_U8: return "u8";
    default: return "invalid";
    }
}

/* a*b into *r; 0 on overflow. Operands are non-negative. */
static int mul_ok(uint64_t a, uint64_t b, uint64_t *r)
{
    if (a && b > UINT64_MAX / a)
        return 0;
    *r = a * b;
    return 1;
}

static int product_ok(const int64_t *v, int n, uint64_t elem, uint64_t *r)
{
    uint64_t acc = elem;
    for (int i = 0; i < n; ++i)
        if (!mul_ok(acc, (uint64_t)v[i], &acc))
            return 0;
    *r = acc;
    return 1;
}

/* ---- patterns, positions and logit transforms (issue 6) ------------------------------- */

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Bytes rounded up to 16, so that every piece of the features block stays aligned. */
static size_t round16(uint64_t n) { return (size_t)((n + 15) & ~(uint64_t)15); }

static int extent_ok(int64_t e) { return e >= 0 || e == ATTN_UNBOUNDED; }

static const attn_pattern *pattern_at(const attn_desc *d, int64_t i)
{
    return (const attn_pattern *)(const void *)((const char *)d->patterns +
                                                (size_t)i * d->patterns[0].struct_size);
}

/* Checks pattern idx; adds the bytes its arrays need to *bytes. */
static attn_status check_pattern(attn_context *ctx, const attn__problem *p, const attn_desc *d,
                                 int64_t idx, uint64_t *bytes)
{
    const attn_pattern *a = pattern_at(d, idx);
    const long long n = (long long)idx;
    if (a->struct_size != d->patterns[0].struct_size)
        return attn__fail(ctx, ATTN_ERROR_STRUCT_SIZE,
                          "patterns[%lld].struct_size is %zu; patterns[0] says %zu (an array "
                          "of patterns shares one struct_size)",
                          n, a->struct_size, d->patterns[0].struct_size);
    if (a->window) {
        if (!extent_ok(a->window_left) || !extent_ok(a->window_right))
            return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                              "patterns[%lld]: window_left %lld / window_right %lld; each must be "
                              ">= 0 or ATTN_UNBOUNDED",
                              n, (long long)a->window_left, (long long)a->window_right);
    }
    if (a->dilation < 0)
        return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                          "patterns[%lld].dilation is %lld; it must be >= 1 (0: part off)", n,
                          (long long)a->dilation);
    if (a->dilation == 0 && (a->dilation_left || a->dilation_right))
        return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                          "patterns[%lld]: dilation extents are set but dilation (the stride) is "
                          "0; set dilation >= 1",
                          n);
    if (a->dilation > 0 && (!extent_ok(a->dilation_left) || !extent_ok(a->dilation_right)))
        return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                          "patterns[%lld]: dilation_left %lld / dilation_right %lld; each must "
                          "be >= 0 or ATTN_UNBOUNDED",
                          n, (long long)a->dilation_left, (long long)a->dilation_right);
    if (a->num_global < 0 || (a->num_global > 0 && !a->global_tokens))
        return attn__fail(ctx,
                          a->num_global < 0 ? ATTN_ERROR_INVALID_ARGUMENT
                                            : ATTN_ERROR_NULL_POINTER,
                          "patterns[%lld]: num_global %lld with global_tokens %s", n,
                          (long long)a->num_global, a->global_tokens ? "set" : "NULL");
    for (int64_t g = 0; g < a->num_global; ++g) {
        int64_t t = a->global_tokens[g];
        if (t < 0 || t >= p->kv_len)
            return attn__fail(ctx, ATTN_ERROR_OUT_OF_RANGE,
                              "patterns[%lld].global_tokens[%lld] = %lld is outside [0, kv_len "
                              "= %lld)",
                              n, (long long)g, (long long)t, (long long)p->kv_len);
        if (g > 0 && t <= a->global_tokens[g - 1])
            return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                              "patterns[%lld].global_tokens must be strictly ascending; [%lld] = "
                              "%lld follows %lld",
                              n, (long long)g, (long long)t, (long long)a->global_tokens[g - 1]);
    }
    if (a->random_block_size < 0 || (a->random_block_size > 0 && a->random_blocks < 1) ||
        (a->random_block_size == 0 && a->random_blocks != 0))
        return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                          "patterns[%lld]: random_block_size %lld, random_blocks %lld; both > 0 "
                          "(BigBird part on) or both 0",
                          n, (long long)a->random_block_size, (long long)a->random_blocks);
    if (a->random_block_size > p->kv_len || a->random_blocks > INT32_MAX)
        return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                          "patterns[%lld]: random_block_size %lld exceeds kv_len %lld or "
                          "random_blocks %lld is above 2^31-1",
                          n, (long long)a->random_block_size, (long long)p->kv_len,
                          (long long)a->random_blocks);
    int bsr = a->bsr_block_q || a->bsr_block_k || a->bsr_row_ptr || a->bsr_col_idx;
    uint64_t bsr_ints = 0;
    if (bsr) {
        if (a->bsr_block_q <= 0 || a->bsr_block_k <= 0)
            return attn__fail(ctx, ATTN_ERROR_INVALID_SHAPE,
                              "patterns[%lld]: bsr_block_q %lld and bsr_block_k %lld must both be "
                              "> 0 for a block-sparse part",
                              n, (long long)a->bsr_block_q, (long long)a->bsr_block_k);
        if (!a->bsr_row_ptr)
            return attn__fail(ctx, ATTN_ERROR_NULL_POINTER,
                              "patterns[%lld]: bsr_row_ptr is NULL", n);
        const int64_t rows = ceil_div(p->q_len, a->bsr_block_q);
        const int64_t cols = ceil_div(p->kv_len, a->bsr_block_k);
        if (a->bsr_row_ptr[0] != 0)
            return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                              "patterns[%lld].bsr_row_ptr[0] is %d; it must be 0", n,
                              a->bsr_row_ptr[0]);
        for (int64_t r = 0; r < rows; ++r)
            if (a->bsr_row_ptr[r + 1] < a->bsr_row_ptr[r])
                return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                                  "patterns[%lld].bsr_row_ptr decreases at block row %lld (%d "
                                  "then %d)",
                                  n, (long long)r, a->bsr_row_ptr[r], a->bsr_row_ptr[r + 1]);
        const int64_t nnz = a->bsr_row_ptr[rows];
        if (nnz > rows * cols)
            return attn__fail(ctx, ATTN_ERROR_OUT_OF_RANGE,
                              "patterns[%lld]: bsr_row_ptr ends at %lld blocks; a %lld x %lld "
                              "block grid has %lld",
                              n, (long long)nnz, (long long)rows, (long long)cols,
                              (long long)(rows * cols));
        if (nnz > 0 && !a->bsr_col_idx)
            return attn__fail(ctx, ATTN_ERROR_NULL_POINTER,
                              "patterns[%lld]: bsr_col_idx is NULL with %lld blocks", n,
                              (long long)nnz);
        for (int64_t r = 0; r < rows; ++r)
            for (int32_t e = a->bsr_row_ptr[r]; e < a->bsr_row_ptr[r + 1]; ++e) {
                int32_t c = a->bsr_col_idx[e];
                if (c < 0 || c >= cols)
                    return attn__fail(ctx, ATTN_ERROR_OUT_OF_RANGE,
                                      "patterns[%lld].bsr_col_idx[%d] = %d is outside [0, %lld) "
                                      "block columns",
                                      n, e, c, (long long)cols);
                if (e > a->bsr_row_ptr[r] && c <= a->bsr_col_idx[e - 1])
                    return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                                      "patterns[%lld].bsr_col_idx is not strictly ascending in "
                                      "block row %lld (%d after %d)",
                                      n, (long long)r, c, a->bsr_col_idx[e - 1]);
            }
        bsr_ints = (uint64_t)(rows + 1) + (uint64_t)nnz;
    }
    *bytes += round16((uint64_t)a->num_global * 8) + round16(bsr_ints * 4);
    return ATTN_OK;
}

static int wants_features(const attn_desc *d)
{
    return d->patterns || d->num_patterns || d->alibi || d->alibi_slopes || d->t5_table ||
           d->t5_num_buckets || d->t5_max_distance || d->t5_bidirectional || d->rope ||
           d->rope_base != 0.0f || d->rope_dims || d->rope_interleaved || d->rope_q_offset ||
           d->rope_k_offset || d->softcap != 0.0f || d->sinks || d->want_probs || d->probs_head;
}

static int finite_array(const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; ++i)
        if (!isfinite(x[i]))
            return 0;
    return 1;
}

/* Checks the issue-6 fields and, when any is set, replaces *kv_lens by one block that holds
 * the key lengths (the caller's, or kv_len each) followed by the resolved features; the
 * plan frees the block as its kv_lens copy. */
static attn_status validate_features(attn_context *ctx, const attn_desc *d, attn__problem *p,
                                     int32_t **kv_lens)
{
    if (!wants_features(d))
        return ATTN_OK;
    const int64_t H = p->num_heads;
    uint64_t bytes = round16((uint64_t)p->batch * 4) + round16(sizeof(attn__features));
    attn_status st;

    /* Patterns. */
    if (!d->patterns != !d->num_patterns)
        return attn__fail(ctx, d->patterns ? ATTN_ERROR_INVALID_ARGUMENT : ATTN_ERROR_NULL_POINTER,
                          "attn_desc: patterns is %s but num_patterns is %lld",
                          d->patterns ? "set" : "NULL", (long long)d->num_patterns);
    if (d->patterns) {
        if (d->num_patterns != 1 && d->num_patterns != H)
            return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                              "attn_desc.num_patterns is %lld; it must be 1 (all heads) or "
                              "num_heads = %lld (one per head)",
                              (long long)d->num_patterns, (long long)H);
        if (ATTN__BAD_STRUCT_SIZE(&d->patterns[0], attn_pattern))
            return attn__fail(ctx, ATTN_ERROR_STRUCT_SIZE,
                              "patterns[0].struct_size is %zu; expected %zu (use "
                              "ATTN_PATTERN_INIT)",
                              d->patterns[0].struct_size, sizeof(attn_pattern));
        bytes += round16((uint64_t)d->num_patterns * sizeof(attn__pattern));
        for (int64_t i = 0; i < d->num_patterns; ++i)
            if ((st = check_pattern(ctx, p, d, i, &bytes)))
                return st;
    }

    /* ALiBi. */
    if (d->alibi_slopes && !d->alibi)
        return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                          "attn_desc.alibi_slopes is set but alibi is 0; set alibi = 1");
    if (d->alibi && d->alibi != 1)
        return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT, "attn_desc.alibi is %d; 0 or 1",
                          d->alibi);
    if (d->alibi_slopes && !finite_array(d->alibi_slopes, H))
        return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                          "attn_desc.alibi_slopes has a value that is not finite");
    if (d->alibi)
        bytes += round16((uint64_t)H * 8);

    /* T5 relative bias. */
    if (d->t5_table || d->t5_num_buckets || d->t5_max_distance || d->t5_bidirectional) {
        if (!d->t5_table)
            return attn__fail(ctx, ATTN_ERROR_NULL_POINTER,
                              "attn_desc.t5_table is NULL: T5 relative bias needs a [num_heads]"
                              "[t5_num_buckets] bucket table");
        const int64_t nb = d->t5_num_buckets;
        const int64_t half = d->t5_bidirectional ? nb / 2 : nb;
        if (nb < 2 || nb > 65536 || (d->t5_bidirectional && (nb < 4 || nb % 2)))
            return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                              "attn_desc.t5_num_buckets is %lld; it must be in [2, 65536] (even "
                              "and >= 4 when bidirectional)",
                              (long long)nb);
        if (d->t5_max_distance <= half / 2)
            return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                              "attn_desc.t5_max_distance is %lld; it must exceed the %lld exact "
                              "buckets",
                              (long long)d->t5_max_distance, (long long)(half / 2));
        if (!finite_array(d->t5_table, H * nb))
            return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                              "attn_desc.t5_table has a value that is not finite");
        bytes += round16((uint64_t)(H * nb) * 8);
    }

    /* RoPE. */
    if (!d->rope && (d->rope_base != 0.0f || d->rope_dims || d->rope_interleaved ||
                     d->rope_q_offset || d->rope_k_offset))
        return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                          "attn_desc.rope_* fields are set but rope is 0; set rope = 1");
    if (d->rope) {
        const int64_t rd = d->rope_dims ? d->rope_dims : p->head_dim;
        if (d->rope != 1)
            return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT, "attn_desc.rope is %d; 0 or 1",
                              d->rope);
        if (rd < 0 || rd % 2 || rd > p->head_dim)
            return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                              "attn_desc.rope_dims is %lld; it must be even and in [2, head_dim "
                              "= %lld] (0: head_dim)",
                              (long long)rd, (long long)p->head_dim);
        if (!isfinite(d->rope_base) || d->rope_base < 0.0f ||
            (d->rope_base != 0.0f && d->rope_base <= 1.0f))
            return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                              "attn_desc.rope_base is %g; it must be > 1 (0: 10000)",
                              (double)d->rope_base);
        if (d->rope_q_offset < 0 || d->rope_k_offset < 0 ||
            d->rope_q_offset > INT32_MAX - p->q_len || d->rope_k_offset > INT32_MAX - p->kv_len)
            return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                              "attn_desc.rope_q_offset %lld / rope_k_offset %lld: positions must "
                              "lie in [0, 2^31)",
                              (long long)d->rope_q_offset, (long long)d->rope_k_offset);
        if (d->rope_interleaved != 0 && d->rope_interleaved != 1)
            return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                              "attn_desc.rope_interleaved is %d; 0 or 1", d->rope_interleaved);
    }

    /* Soft-cap and sinks. */
    if (!isfinite(d->softcap) || d->softcap < 0.0f)
        return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                          "attn_desc.softcap is %g; it must be finite and >= 0 (0: off)",
                          (double)d->softcap);
    if (d->sinks) {
        for (int64_t h = 0; h < H; ++h)
            if (isnan(d->sinks[h]) || d->sinks[h] == INFINITY)
                return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                                  "attn_desc.sinks[%lld] is %g; a sink logit is finite or -inf",
                                  (long long)h, (double)d->sinks[h]);
        bytes += round16((uint64_t)H * 8);
    }

    /* Probabilities. */
    if (d->want_probs < ATTN_PROBS_NONE || d->want_probs > ATTN_PROBS_ONE_HEAD)
        return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT, "attn_desc.want_probs %d is unknown",
                          d->want_probs);
    if (d->probs_head && d->want_probs != ATTN_PROBS_ONE_HEAD)
        return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                          "attn_desc.probs_head is set but want_probs is not "
                          "ATTN_PROBS_ONE_HEAD");
    if (d->want_probs == ATTN_PROBS_ONE_HEAD && (d->probs_head < 0 || d->probs_head >= H))
        return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                          "attn_desc.probs_head is %lld; it must be in [0, num_heads = %lld)",
                          (long long)d->probs_head, (long long)H);
    if (d->want_probs) {
        int64_t pd[4] = {p->batch, d->want_probs == ATTN_PROBS_ONE_HEAD ? 1 : H, p->q_len,
                         p->kv_len};
        uint64_t pbytes;
        if (!product_ok(pd, 4, 4, &pbytes))
            return attn__fail(ctx, ATTN_ERROR_OVERFLOW,
                              "the probabilities tensor [%lld, %lld, %lld, %lld] has more bytes "
                              "than 64 bits can count",
                              (long long)pd[0], (long long)pd[1], (long long)pd[2],
                              (long long)pd[3]);
    }

    /* One block: lengths, the features, then every copied array. */
    if (bytes > SIZE_MAX)
        return attn__fail(ctx, ATTN_ERROR_OVERFLOW, "the plan's copy of the patterns is too big");
    char *block = calloc(1, (size_t)bytes), *at = block;
    if (!block)
        return attn__fail(ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY,
                          "copying the patterns and position tables (%llu bytes)",
                          (unsigned long long)bytes);
    int32_t *lens = (int32_t *)(void *)at;
    for (int64_t b = 0; b < p->batch; ++b)
        lens[b] = *kv_lens ? (*kv_lens)[b] : (int32_t)p->kv_len;
    at += round16((uint64_t)p->batch * 4);
    attn__features *f = (attn__features *)(void *)at;
    at += round16(sizeof *f);

    if (d->patterns) {
        attn__pattern *pats = (attn__pattern *)(void *)at;
        at += round16((uint64_t)d->num_patterns * sizeof *pats);
        for (int64_t i = 0; i < d->num_patterns; ++i) {
            const attn_pattern *a = pattern_at(d, i);
            attn__pattern *o = &pats[i];
            o->window = a->window != 0;
            o->win_left = a->window_left;
            o->win_right = a->window_right;
            o->dilation = a->dilation;
            o->dil_left = a->dilation_left;
            o->dil_right = a->dilation_right;
            if (a->num_global > 0) {
                int64_t *g = (int64_t *)(void *)at;
                memcpy(g, a->global_tokens, (size_t)a->num_global * sizeof *g);
                o->global = g;
                o->num_global = a->num_global;
                at += round16((uint64_t)a->num_global * 8);
            }
            o->rnd_block = a->random_block_size;
            o->rnd_count = a->random_blocks;
            o->rnd_seed = a->random_seed;
            if (a->bsr_block_q > 0) {
                const int64_t rows = ceil_div(p->q_len, a->bsr_block_q);
                const int64_t nnz = a->bsr_row_ptr[rows];
                int32_t *rp = (int32_t *)(void *)at;
                memcpy(rp, a->bsr_row_ptr, (size_t)(rows + 1) * sizeof *rp);
                if (nnz)
                    memcpy(rp + rows + 1, a->bsr_col_idx, (size_t)nnz * sizeof *rp);
                o->bsr_bq = a->bsr_block_q;
                o->bsr_bk = a->bsr_block_k;
                o->bsr_row_ptr = rp;
                o->bsr_col_idx = rp + rows + 1;
                at += round16((uint64_t)(rows + 1 + nnz) * 4);
            }
            o->any = o->window || o->dilation > 0 || o->num_global > 0 || o->rnd_block > 0 ||
                     o->bsr_bq > 0;
        }
        f->patterns = pats;
        f->num_patterns = d->num_patterns;
    }
    if (d->alibi) {
        double *s = (double *)(void *)at;
        for (int64_t h = 0; h < H; ++h)
            s[h] = d->alibi_slopes ? (double)d->alibi_slopes[h]
                                   : pow(2.0, -8.0 * (double)(h + 1) / (double)H);
        f->alibi_slopes = s;
        at += round16((uint64_t)H * 8);
    }
    if (d->t5_table) {
        double *t = (double *)(void *)at;
        for (int64_t e = 0; e < H * d->t5_num_buckets; ++e)
            t[e] = d->t5_table[e];
        f->t5_table = t;
        f->t5_buckets = d->t5_num_buckets;
        f->t5_max_distance = d->t5_max_distance;
        f->t5_bidirectional = d->t5_bidirectional != 0;
        at += round16((uint64_t)(H * d->t5_num_buckets) * 8);
    }
    if (d->rope) {
        f->rope = 1;
        f->rope_interleaved = d->rope_interleaved;
        f->rope_base = d->rope_base != 0.0f ? (double)d->rope_base : 10000.0;
        f->rope_dims = d->rope_dims ? d->rope_dims : p->head_dim;
        f->rope_q_offset = d->rope_q_offset;
        f->rope_k_offset = d->rope_k_offset;
    }
    f->softcap = d->softcap;
    if (d->sinks) {
        double *s = (double *)(void *)at;
        for (int64_t h = 0; h < H; ++h)
            s[h] = d->sinks[h];
        f->sinks = s;
        at += round16((uint64_t)H * 8);
    }
    f->probs_mode = d->want_probs;
    f->probs_head = d->probs_head;

    free(*kv_lens);
    *kv_lens = lens;
    p->feat = f;
    return ATTN_OK;
}

attn_status attn__validate_desc(attn_context *ctx, const attn_desc *d, attn__problem *pb,
                                int32_t **kv_lens)
{
    *kv_lens = NULL;
    if (!d)
        return attn__fail(ctx, ATTN_ERROR_NULL_POINTER, "attn_plan_create: desc is NULL");
    if (ATTN__BAD_STRUCT_SIZE(d, attn_desc))
        return attn__fail(ctx, ATTN_ERROR_STRUCT_SIZE,
                          "attn_desc.struct_size is %zu; expected %zu (use ATTN_DESC_INIT)",
                          d->struct_size, sizeof(attn_desc));
    attn__problem p;
    memset(&p, 0, sizeof p);
    p.batch = d->batch;
    p.num_heads = d->num_heads;
    p.num_kv_heads = d->num_kv_heads ? d->num_kv_heads : d->num_heads;
    p.q_len = d->q_len;
    p.kv_len = d->kv_len;
    p.head_dim = d->head_dim;
    p.v_head_dim = d->v_head_dim ? d->v_head_dim : d->head_dim;

    const struct { const char *name; int64_t v; } sizes[] = {
        {"batch", p.batch},       {"num_heads", p.num_heads}, {"num_kv_heads", p.num_kv_heads},
        {"q_len", p.q_len},       {"kv_len", p.kv_len},       {"head_dim", p.head_dim},
        {"v_head_dim", p.v_head_dim},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; ++i)
        if (sizes[i].v <= 0)
            return attn__fail(ctx, ATTN_ERROR_INVALID_SHAPE, "attn_desc.%s is %lld; it must be > 0",
                              sizes[i].name, (long long)sizes[i].v);
    if (p.num_heads % p.num_kv_heads)
        return attn__fail(ctx, ATTN_ERROR_HEADS_MISMATCH,
                          "num_heads %lld is not a multiple of num_kv_heads %lld",
                          (long long)p.num_heads, (long long)p.num_kv_heads);
    if (p.head_dim > ATTN_MAX_HEAD_DIM || p.v_head_dim > ATTN_MAX_HEAD_DIM)
        return attn__fail(ctx, ATTN_ERROR_HEAD_DIM_UNSUPPORTED,
                          "head_dim %lld / v_head_dim %lld: kernels support at most %d",
                          (long long)p.head_dim, (long long)p.v_head_dim, ATTN_MAX_HEAD_DIM);
    if (d->dtype != ATTN_DTYPE_F32 && d->dtype != ATTN_DTYPE_F16)
        return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                          "attn_desc.dtype is %s (%d); Q/K/V/O are f32 or f16",
                          dtype_name(d->dtype), (int)d->dtype);
    p.dtype = d->dtype;
    if (!isfinite(d->scale))
        return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT, "attn_desc.scale is not finite");
    p.scale = d->scale != 0.0f ? (double)d->scale : 1.0 / sqrt((double)p.head_dim);
    p.causal = d->causal != 0;
    if ((unsigned)d->mask_kind > ATTN_MASK_BOOLEAN)
        return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT, "attn_desc.mask_kind %d is unknown",
                          (int)d->mask_kind);
    p.mask_kind = d->mask_kind;
    p.want_lse = d->want_lse != 0;

    /* Every tensor's byte count must fit in 64 bits: Q, O, K, V and the mask. */
    uint64_t bytes;
    int64_t qdims[4] = {p.batch, p.q_len, p.num_heads, p.head_dim > p.v_head_dim ? p.head_dim : p.v_head_dim};
    int64_t kdims[4] = {p.batch, p.kv_len, p.num_kv_heads, qdims[3]};
    int64_t mdims[4] = {p.batch, p.num_heads, p.q_len, p.kv_len};
    if (!product_ok(qdims, 4, 4, &bytes) || !product_ok(kdims, 4, 4, &bytes) ||
        (p.mask_kind != ATTN_MASK_NONE && !product_ok(mdims, 4, 4, &bytes)))
        return attn__fail(ctx, ATTN_ERROR_OVERFLOW,
                          "the tensors of batch %lld, heads %lld, q_len %lld, kv_len %lld, "
                          "head_dim %lld have more bytes than 64 bits can count",
                          (long long)p.batch, (long long)p.num_heads, (long long)p.q_len,
                          (long long)p.kv_len, (long long)qdims[3]);
    if (p.q_len > INT32_MAX - 64 || p.kv_len > INT32_MAX - 64 || p.num_heads > 65535 ||
        p.batch > 65535)
        return attn__fail(ctx, ATTN_ERROR_UNSUPPORTED,
                          "q_len/kv_len above 2^31-65 or batch/num_heads above 65535 are not "
                          "supported");

    if (d->kv_lens) {
        int32_t *copy = malloc((size_t)p.batch * sizeof *copy);
        if (!copy)
            return attn__fail(ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "copying kv_lens");
        for (int64_t b = 0; b < p.batch; ++b) {
            if (d->kv_lens[b] < 0 || d->kv_lens[b] > p.kv_len) {
                free(copy);
                return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                                  "kv_lens[%lld] = %d is outside [0, kv_len = %lld]", (long long)b,
                                  d->kv_lens[b], (long long)p.kv_len);
            }
            copy[b] = d->kv_lens[b];
        }
        *kv_lens = copy;
        p.has_kv_lens = 1;
    }
    attn_status st = validate_features(ctx, d, &p, kv_lens);
    if (st != ATTN_OK) {
        free(*kv_lens);
        *kv_lens = NULL;
        return st;
    }
    *pb = p;
    return ATTN_OK;
}

/* ---- run-time tensors ----------------------------------------------------------------- */
/* One past the plan's tensors: the probabilities output, bound only by validate.c. */
#define T_PROBS ATTN__T_COUNT
static const char *const tensor_names[ATTN__T_COUNT + 1] = {"q", "k", "v", "o", "mask", "lse",
                                                            "probs"};

/* Binds one tensor: dtype, shape (mask: dims 0 and 1 may be 1), strides, storage. */
static attn_status bind(const attn_plan *plan, int which, const attn_tensor *t, attn_dtype dtype,
                        const int64_t want[4], attn__bound *out)
{
    attn_context *ctx = plan->ctx;
    const char *nm = tensor_names[which];
    memset(out, 0, sizeof *out);
    if (t->dtype != dtype)
        return attn__fail(ctx, ATTN_ERROR_DTYPE_MISMATCH, "tensor %s is %s; the plan needs %s", nm,
                          dtype_name(t->dtype), dtype_name(dtype));
    for (int i = 0; i < 4; ++i) {
        int broadcast = which == ATTN__T_MASK && i < 2 && t->shape[i] == 1;
        if (t->shape[i] != want[i] && !broadcast)
            return attn__fail(ctx, ATTN_ERROR_SHAPE_MISMATCH,
                              "tensor %s has shape [%lld, %lld, %lld, %lld]; the plan needs "
                              "[%lld, %lld, %lld, %lld]%s",
                              nm, (long long)t->shape[0], (long long)t->shape[1],
                              (long long)t->shape[2], (long long)t->shape[3], (long long)want[0],
                              (long long)want[1], (long long)want[2], (long long)want[3],
                              which == ATTN__T_MASK ? " (dims 0 and 1 may be 1)" : "");
    }
    if (!t->data && !t->buffer)
        return attn__fail(ctx, ATTN_ERROR_NULL_POINTER, "tensor %s has neither data nor buffer",
                          nm);
    if (t->data && t->buffer)
        return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                          "tensor %s has both data and buffer; set one", nm);
    if (t->buffer && t->buffer->ctx != ctx)
        return attn__fail(ctx, ATTN_ERROR_WRONG_CONTEXT,
                          "tensor %s's buffer belongs to another context", nm);

    attn__view *v = &out->view;
    v->dtype = t->dtype;
    memcpy(v->shape, t->shape, sizeof v->shape);
    int64_t dense[4];
    attn__dense_strides(t->shape, dense);
    int all_zero = !t->stride[0] && !t->stride[1] && !t->stride[2] && !t->stride[3];
    for (int i = 0; i < 4; ++i) {
        if (t->stride[i] < 0)
            return attn__fail(ctx, ATTN_ERROR_INVALID_STRIDE,
                              "tensor %s: stride[%d] = %lld is negative", nm, i,
                              (long long)t->stride[i]);
        v->stride[i] = all_zero ? dense[i] : t->stride[i];
    }
    out->dense = !memcmp(v->stride, dense, sizeof dense);
    /* span = 1 + sum (shape-1)*stride, checked. */
    uint64_t span = 1;
    for (int i = 0; i < 4; ++i) {
        uint64_t term;
        if (!mul_ok((uint64_t)(t->shape[i] - 1), (uint64_t)v->stride[i], &term) ||
            span > UINT64_MAX - term)
            return attn__fail(ctx, ATTN_ERROR_OVERFLOW, "tensor %s: its strides overflow 64 bits",
                              nm);
        span += term;
    }
    uint64_t es = attn__dtype_size(dtype), span_bytes;
    if (!mul_ok(span, es, &span_bytes))
        return attn__fail(ctx, ATTN_ERROR_OVERFLOW, "tensor %s: its byte span overflows 64 bits",
                          nm);
    out->span = span;
    if (t->buffer) {
        if (t->offset % es)
            return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                              "tensor %s: buffer offset %llu is not a multiple of the element "
                              "size %llu",
                              nm, (unsigned long long)t->offset, (unsigned long long)es);
        if (t->offset > t->buffer->size || span_bytes > t->buffer->size - t->offset)
            return attn__fail(ctx, ATTN_ERROR_OUT_OF_RANGE,
                              "tensor %s: %llu bytes at offset %llu do not fit its buffer of %llu "
                              "bytes",
                              nm, (unsigned long long)span_bytes, (unsigned long long)t->offset,
                              (unsigned long long)t->buffer->size);
        out->buffer = t->buffer;
        out->elem_off = t->offset / es;
    } else {
        if ((uintptr_t)t->data % es)
            return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                              "tensor %s: host pointer is not aligned to its element size", nm);
        v->data = t->data;
    }
    out->present = 1;
    return ATTN_OK;
}

/* An output must not write one element twice: sorted by stride, each dimension's stride
 * must exceed the extent of the faster ones. */
static int self_overlaps(const attn__view *v)
{
    int idx[4] = {0, 1, 2, 3};
    for (int i = 0; i < 4; ++i)
        for (int j = i + 1; j < 4; ++j)
            if (v->stride[idx[j]] < v->stride[idx[i]]) {
                int tmp = idx[i];
                idx[i] = idx[j];
                idx[j] = tmp;
            }
    int64_t extent = 1; /* elements covered by the faster dims, plus one */
    for (int i = 0; i < 4; ++i) {
        int d = idx[i];
        if (v->shape[d] == 1)
            continue;
        if (v->stride[d] < extent)
            return 1;
        extent = v->stride[d] * (v->shape[d] - 1) + extent;
    }
    return 0;
}

/* Byte ranges of two bound tensors intersect (same host memory or same buffer). */
static int ranges_meet(const attn__bound *a, const attn__bound *b)
{
    if (!a->present || !b->present || a->buffer != b->buffer)
        return 0;
    uint64_t ea = attn__dtype_size(a->view.dtype), eb = attn__dtype_size(b->view.dtype);
    uint64_t a0, b0;
    if (a->buffer) {
        a0 = a->elem_off * ea;
        b0 = b->elem_off * eb;
    } else {
        a0 = (uint64_t)(uintptr_t)a->view.data;
        b0 = (uint64_t)(uintptr_t)b->view.data;
    }
    uint64_t a1 = a0 + a->span * ea, b1 = b0 + b->span * eb;
    return a0 < b1 && b0 < a1;
}

attn_status attn__validate_run(const attn_plan *plan, const attn_run_args *a,
                               attn__bound bound[ATTN__T_COUNT])
{
    attn_context *ctx = plan->ctx;
    const attn__problem *p = &plan->pb;
    memset(bound, 0, sizeof(attn__bound) * ATTN__T_COUNT);
    if (!a)
        return attn__fail(ctx, ATTN_ERROR_NULL_POINTER, "attn_plan_run: args is NULL");
    if (ATTN__BAD_STRUCT_SIZE(a, attn_run_args))
        return attn__fail(ctx, ATTN_ERROR_STRUCT_SIZE,
                          "attn_run_args.struct_size is %zu; expected %zu (use ATTN_RUN_ARGS_INIT)",
                          a->struct_size, sizeof(attn_run_args));
    const int64_t qs[4] = {p->batch, p->q_len, p->num_heads, p->head_dim};
    const int64_t ks[4] = {p->batch, p->kv_len, p->num_kv_heads, p->head_dim};
    const int64_t vs[4] = {p->batch, p->kv_len, p->num_kv_heads, p->v_head_dim};
    const int64_t os[4] = {p->batch, p->q_len, p->num_heads, p->v_head_dim};
    const int64_t ms[4] = {p->batch, p->num_heads, p->q_len, p->kv_len};
    const int64_t ls[4] = {p->batch, p->num_heads, p->q_len, 1};
    attn_status st;
    if ((st = bind(plan, ATTN__T_Q, &a->q, p->dtype, qs, &bound[ATTN__T_Q])) ||
        (st = bind(plan, ATTN__T_K, &a->k, p->dtype, ks, &bound[ATTN__T_K])) ||
        (st = bind(plan, ATTN__T_V, &a->v, p->dtype, vs, &bound[ATTN__T_V])) ||
        (st = bind(plan, ATTN__T_O, &a->o, p->dtype, os, &bound[ATTN__T_O])))
        return st;
    if (p->mask_kind != ATTN_MASK_NONE) {
        attn_dtype mt = p->mask_kind == ATTN_MASK_ADDITIVE ? ATTN_DTYPE_F32 : ATTN_DTYPE_U8;
        if ((st = bind(plan, ATTN__T_MASK, &a->mask, mt, ms, &bound[ATTN__T_MASK])))
            return st;
    } else if (a->mask.dtype != ATTN_DTYPE_NONE || a->mask.data || a->mask.buffer) {
        return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                          "a mask tensor was given but the plan's mask_kind is NONE");
    }
    if (p->want_lse) {
        if ((st = bind(plan, ATTN__T_LSE, &a->lse, ATTN_DTYPE_F32, ls, &bound[ATTN__T_LSE])))
            return st;
    } else if (a->lse.dtype != ATTN_DTYPE_NONE || a->lse.data || a->lse.buffer) {
        return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                          "an lse tensor was given but the plan was created without want_lse");
    }
    if (a->kv_lens) {
        for (int64_t b = 0; b < p->batch; ++b)
            if (a->kv_lens[b] < 0 || a->kv_lens[b] > p->kv_len)
                return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                                  "args.kv_lens[%lld] = %d is outside [0, kv_len = %lld]",
                                  (long long)b, a->kv_lens[b], (long long)p->kv_len);
    }
    /* The probabilities output (issue 6): only plans with features have it; the reference
     * backend reads it from p->feat->probs, which each run rebinds. */
    attn__bound all[ATTN__T_COUNT + 1];
    memcpy(all, bound, sizeof(attn__bound) * ATTN__T_COUNT);
    memset(&all[T_PROBS], 0, sizeof all[T_PROBS]);
    attn__features *feat = p->feat;
    if (feat) {
        feat->probs.data = NULL;
        feat->probs_present = 0;
        feat->probs_handle = NULL;
        feat->probs_off = 0;
    }
    if (feat && feat->probs_mode) {
        const int64_t ps[4] = {p->batch, feat->probs_mode == ATTN_PROBS_ONE_HEAD ? 1 : p->num_heads,
                               p->q_len, p->kv_len};
        if ((st = bind(plan, T_PROBS, &a->probs, ATTN_DTYPE_F32, ps, &all[T_PROBS])))
            return st;
    } else if (a->probs.dtype != ATTN_DTYPE_NONE || a->probs.data || a->probs.buffer) {
        return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                          "a probs tensor was given but the plan was created without want_probs");
    }
    /* Outputs: no element written twice, and no overlap with any other tensor. */
    const int outs[3] = {ATTN__T_O, ATTN__T_LSE, T_PROBS};
    for (int oi = 0; oi < 3; ++oi) {
        const attn__bound *o = &all[outs[oi]];
        if (!o->present)
            continue;
        if (self_overlaps(&o->view))
            return attn__fail(ctx, ATTN_ERROR_ALIASING,
                              "tensor %s: its strides make elements overlap", tensor_names[outs[oi]]);
        for (int t = 0; t <= T_PROBS; ++t)
            if (t != outs[oi] && ranges_meet(o, &all[t]))
                return attn__fail(ctx, ATTN_ERROR_ALIASING, "output %s overlaps tensor %s",
                                  tensor_names[outs[oi]], tensor_names[t]);
    }
    if (all[T_PROBS].present) {
        feat->probs = all[T_PROBS].view;
        feat->probs_present = 1;
        if (all[T_PROBS].buffer) {
            /* The reference backend's buffers are host memory; a device writes its own. */
            char *base = ctx->ops->buffer_host_ptr
                             ? ctx->ops->buffer_host_ptr(ctx->dev, all[T_PROBS].buffer->handle)
                             : NULL;
            if (base) {
                feat->probs.data = base + all[T_PROBS].elem_off * 4;
            } else {
                feat->probs_handle = all[T_PROBS].buffer->handle;
                feat->probs_off = (int64_t)all[T_PROBS].elem_off;
            }
        }
    }
    return ATTN_OK;
}
