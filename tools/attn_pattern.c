/* attn_pattern.c — attn-pattern: draws which keys each query sees under an attention
 * description's pattern (or, with --probs, its softmax probabilities for random inputs)
 * as a PNG. Public API only: the reference backend computes it, want_probs reads it out. */
#include <attn/attn.h>

#include "tool_args.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <png.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define EXIT_USAGE 2
/* The probability tensor the reference backend fills: f32 [1, heads or 1, q_len, kv_len]. */
#define PROBS_MAX_BYTES (INT64_C(256) << 20)
#define IMAGE_MAX_SIDE INT64_C(32768)
#define IMAGE_MAX_PIXELS (INT64_C(32) << 20)
/* --cell auto: a panel's longer side at most this many pixels. */
#define AUTO_PANEL_PX 512
/* --probs colour scale: decades below the row's largest probability that still get a colour. */
#define PROBS_DECADES 3.0

static void usage(FILE *f)
{
    fprintf(f,
            "usage: attn-pattern --out FILE.png [options]\n"
            "Draws which keys each query row sees under an attention pattern (rows = queries\n"
            "top to bottom, columns = keys left to right), or with --probs the softmax\n"
            "probabilities for random inputs, computed by libattn's reference backend.\n"
            "\n"
            "problem (batch 1):\n"
            "  --heads N         query heads (4)\n"
            "  --kv-heads N      key/value heads, must divide --heads (= heads)\n"
            "  --q-len N         query tokens, k/K suffix = x1024 (256)\n"
            "  --kv-len N        key tokens, k/K suffix = x1024 (= q-len); query row i sits at\n"
            "                    position i + kv-len - q-len (bottom-right, as --causal)\n"
            "  --head-dim N      Q/K/V head dimension of the --probs inputs, at most %d (64)\n"
            "  --causal          causal mask, aligned bottom-right\n"
            "  --alibi           ALiBi bias with the default slopes 2^(-8(h+1)/heads); changes\n"
            "                    probabilities only, so only --probs shows it\n"
            "pattern parts (one pattern for every head: the union of the parts given; none =\n"
            "dense). An extent is a number >= 0 or 'inf' (unbounded):\n"
            "  --window L[:R]    sliding window: keys at positions [pos - L, pos + R]; a bare L\n"
            "                    means R = L; causal cuts R to 0\n"
            "  --dilation D[:L[:R]]  dilated: pos - key a multiple of D within [-R, L]; D alone:\n"
            "                    both extents inf; a bare L means R = L\n"
            "  --global LIST     global token positions, e.g. 0,64,128 (sorted, duplicates\n"
            "                    dropped): they see every key and every query sees them\n"
            "  --bigbird B:R[:SEED]  random blocks: each query block of B positions sees R key\n"
            "                    blocks drawn per head by attn.h's generator (SEED 0)\n"
            "  --bsr BQ:BK:ROWPTR:COLIDX  block-sparse layout, blocks of BQ rows x BK keys;\n"
            "                    ROWPTR and COLIDX comma lists as in attn_pattern (CSR)\n"
            "per-head mixes (the part options above then set the mix's parameters):\n"
            "  --longformer      head h by h mod 3: 0 = window W; 1 = window W + dilation D over\n"
            "                    the same number of keys (extents W*D); 2 = window W + global\n"
            "                    tokens G. W from --window (default kv-len/16 each side, at\n"
            "                    least 1), D from --dilation (default 4; its extents, when given,\n"
            "                    replace W*D), G from --global (default 0)\n"
            "  --bigbird-mix     every head: window + global + random blocks (BigBird; the\n"
            "                    random blocks differ per head). Block B and R from --bigbird\n"
            "                    (default B = kv-len/16, at least 1; R = 2; SEED 0); window from\n"
            "                    --window (default B each side); global from --global (default\n"
            "                    the first and the last block)\n"
            "image:\n"
            "  --out FILE.png    where to write the image (required)\n"
            "  --all-heads       every head, side by side left to right (default)\n"
            "  --head H          only head H (0-based)\n"
            "  --cell N | 1/N    N pixels per score cell; 1/N: one pixel per N x N block of\n"
            "                    cells, drawn as visible when any cell of the block is (--probs:\n"
            "                    the block's darkest cell). Default auto: up to 8 pixels per\n"
            "                    cell with a head's longer side at most %d pixels; longer\n"
            "                    problems 1/N with the smallest N that fits %d\n"
            "  --gap N           grey pixels between heads, 0-256 (8); a 1-pixel grey frame\n"
            "                    surrounds the image\n"
            "  --probs           heatmap of the probabilities for random Q, K, V uniform in\n"
            "                    [-1, 1) instead of the pattern. Scale: per query row, log10 of\n"
            "                    p / (the row's largest p), from -%.0f (palest yellow) to 0\n"
            "                    (darkest red); smaller p gets the palest colour; white = not\n"
            "                    visible (p exactly 0)\n"
            "  --seed N          seed of the --probs inputs (1)\n"
            "  --help            this text\n"
            "\n"
            "Without --probs, Q = K = 0 and no bias, so each visible key of a row has probability\n"
            "1/count > 0 and every other key exactly 0: visible cells are drawn dark on white.\n"
            "The probability tensor (4 bytes x heads drawn x q-len x kv-len) and each of Q, K,\n"
            "V, O may take at most 256 MiB, the image at most %" PRId64 " pixels a side and "
            "%" PRId64 " Mi pixels.\n"
            "Options take their value as '--flag V' or '--flag=V'.\n"
            "Exit status: 0 success, 1 failure (library, memory, file), 2 bad usage or a\n"
            "description the library refuses.\n",
            ATTN_MAX_HEAD_DIM, AUTO_PANEL_PX, AUTO_PANEL_PX, PROBS_DECADES, IMAGE_MAX_SIDE,
            IMAGE_MAX_PIXELS >> 20);
}

#if defined(__GNUC__)
static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#endif
static void usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("attn-pattern: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry 'attn-pattern --help' for the list of options.\n", stderr);
}

/* ---- options ---------------------------------------------------------------------------*/

typedef struct opts {
    int64_t heads, kv_heads, q_len, kv_len, head_dim, head, gap;
    uint64_t seed;
    bool causal, alibi, probs, all_heads, longformer, bigbird_mix, help;
    int64_t cell_up, cell_down; /* pixels per cell / cells per pixel; 0 = auto */
    const char *out;
    /* Pattern parts; has_* says the option was given. */
    bool has_window, has_dilation, has_dilation_extent, has_global, has_bigbird, has_bsr;
    int64_t win_left, win_right;
    int64_t dilation, dil_left, dil_right;
    int64_t *global;
    int64_t num_global;
    int64_t bb_block, bb_blocks;
    uint64_t bb_seed;
    int64_t bsr_bq, bsr_bk;
    int32_t *bsr_row_ptr, *bsr_col_idx;
    int64_t bsr_num_rows, bsr_num_cols; /* entries in each list */
} opts;

static void opts_free(opts *o)
{
    free(o->global);
    free(o->bsr_row_ptr);
    free(o->bsr_col_idx);
}


static bool parse_u64(const char *s, uint64_t *out)
{
    if (!(*s >= '0' && *s <= '9'))
        return false;
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end)
        return false;
    *out = v;
    return true;
}

/* A window or dilation extent: a number >= 0 or "inf" (ATTN_UNBOUNDED). */
static bool parse_extent(const char *s, int64_t *out)
{
    if (!strcmp(s, "inf")) {
        *out = ATTN_UNBOUNDED;
        return true;
    }
    return tool_parse_int(s, false, 0, INT64_C(1) << 40, out);
}

/* Splits s in place at sep into at most max fields; returns their count, or max + 1 when
 * there are more. */
static int split(char *s, char sep, char **fields, int max)
{
    int n = 0;
    for (;;) {
        if (n == max)
            return max + 1;
        fields[n++] = s;
        char *p = strchr(s, sep);
        if (!p)
            return n;
        *p = '\0';
        s = p + 1;
    }
}

/* A comma list of integers in [min, max] into a new array (*out, *count). */
static bool parse_list(const char *s, int64_t min, int64_t max, int64_t **out, int64_t *count)
{
    size_t n = 1;
    for (const char *p = s; *p; p++)
        n += *p == ',';
    int64_t *v = malloc(n * sizeof *v);
    char *copy = strdup(s);
    bool ok = v && copy;
    char *field = copy;
    for (size_t i = 0; ok && i < n; i++) {
        char *comma = strchr(field, ',');
        if (comma)
            *comma = '\0';
        ok = tool_parse_int(field, false, min, max, &v[i]);
        field = comma ? comma + 1 : field;
    }
    free(copy);
    if (!ok) {
        free(v);
        return false;
    }
    *out = v;
    *count = (int64_t)n;
    return true;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Sorts a list and drops duplicates. */
static void sort_unique(int64_t *v, int64_t *n)
{
    if (*n == 0)
        return;
    qsort(v, (size_t)*n, sizeof *v, cmp_i64);
    int64_t k = 1;
    for (int64_t i = 1; i < *n; i++)
        if (v[i] != v[k - 1])
            v[k++] = v[i];
    *n = k;
}

/* A comma list of int32 values >= 0 (the BSR arrays). */
static bool parse_list32(const char *s, int32_t **out, int64_t *count)
{
    int64_t *v = NULL, n = 0;
    if (!parse_list(s, 0, INT32_MAX, &v, &n))
        return false;
    int32_t *w = malloc((size_t)n * sizeof *w);
    if (!w) {
        free(v);
        return false;
    }
    for (int64_t i = 0; i < n; i++)
        w[i] = (int32_t)v[i];
    free(v);
    *out = w;
    *count = n;
    return true;
}

/* One option with a value: fills o; false (after printing why) when the value is bad. */
static bool parse_valued(opts *o, const char *name, const char *value)
{
    const int64_t len_max = INT64_C(1) << 31;
    const struct {
        const char *name;
        int64_t *dst;
        int64_t min, max;
        bool suffix;
    } ints[] = {
        {"heads", &o->heads, 1, 65535, false},
        {"kv-heads", &o->kv_heads, 1, 65535, false},
        {"q-len", &o->q_len, 1, len_max, true},
        {"kv-len", &o->kv_len, 1, len_max, true},
        {"head-dim", &o->head_dim, 1, ATTN_MAX_HEAD_DIM, false},
        {"head", &o->head, 0, 65534, false},
        {"gap", &o->gap, 0, 256, false},
    };
    for (size_t f = 0; f < sizeof ints / sizeof ints[0]; f++) {
        if (strcmp(name, ints[f].name) != 0)
            continue;
        if (!tool_parse_int(value, ints[f].suffix, ints[f].min, ints[f].max, ints[f].dst)) {
            usage_error("invalid value '%s' for --%s (an integer from %" PRId64 " to %" PRId64
                        "%s)",
                        value, name, ints[f].min, ints[f].max,
                        ints[f].suffix ? "; k/K suffix = x1024" : "");
            return false;
        }
        return true;
    }

    char *copy = strdup(value);
    if (!copy) {
        fprintf(stderr, "attn-pattern: out of memory\n");
        return false;
    }
    char *fld[5];
    bool ok = false;
    const char *want = "";
    if (!strcmp(name, "out")) {
        o->out = value;
        ok = *value != '\0';
        want = "a file name";
    } else if (!strcmp(name, "seed")) {
        ok = parse_u64(value, &o->seed);
        want = "an unsigned integer";
    } else if (!strcmp(name, "cell")) {
        want = "N pixels per cell, 1-64, or 1/N cells per pixel, N >= 1";
        int64_t n;
        if (!strncmp(value, "1/", 2)) {
            ok = tool_parse_int(value + 2, false, 1, INT64_C(1) << 31, &n);
            o->cell_up = 1, o->cell_down = n;
        } else {
            ok = tool_parse_int(value, false, 1, 64, &n);
            o->cell_up = n, o->cell_down = 1;
        }
    } else if (!strcmp(name, "window")) {
        want = "L or L:R, each a number >= 0 or inf";
        int n = split(copy, ':', fld, 2);
        ok = n <= 2 && parse_extent(fld[0], &o->win_left) &&
             parse_extent(n == 2 ? fld[1] : fld[0], &o->win_right);
        o->has_window = true;
    } else if (!strcmp(name, "dilation")) {
        want = "D[:L[:R]], D >= 1, extents a number >= 0 or inf";
        int n = split(copy, ':', fld, 3);
        ok = n <= 3 && tool_parse_int(fld[0], false, 1, INT64_C(1) << 31, &o->dilation);
        o->dil_left = o->dil_right = ATTN_UNBOUNDED;
        if (ok && n >= 2)
            ok = parse_extent(fld[1], &o->dil_left) &&
                 parse_extent(n == 3 ? fld[2] : fld[1], &o->dil_right);
        o->has_dilation = true;
        o->has_dilation_extent = n >= 2;
    } else if (!strcmp(name, "global")) {
        want = "a comma list of positions >= 0, e.g. 0,64,128";
        free(o->global);
        o->global = NULL;
        ok = parse_list(value, 0, len_max - 1, &o->global, &o->num_global);
        if (ok)
            sort_unique(o->global, &o->num_global);
        o->has_global = true;
    } else if (!strcmp(name, "bigbird")) {
        want = "B:R[:SEED], block B >= 1, R >= 1 blocks";
        int n = split(copy, ':', fld, 3);
        o->bb_seed = 0;
        ok = n >= 2 && n <= 3 && tool_parse_int(fld[0], false, 1, len_max, &o->bb_block) &&
             tool_parse_int(fld[1], false, 1, len_max, &o->bb_blocks) &&
             (n < 3 || parse_u64(fld[2], &o->bb_seed));
        o->has_bigbird = true;
    } else if (!strcmp(name, "bsr")) {
        want = "BQ:BK:ROWPTR:COLIDX, e.g. 64:64:0,1,3:0,0,1";
        int n = split(copy, ':', fld, 4);
        free(o->bsr_row_ptr);
        free(o->bsr_col_idx);
        o->bsr_row_ptr = o->bsr_col_idx = NULL;
        o->bsr_num_cols = 0;
        ok = n == 4 && tool_parse_int(fld[0], false, 1, len_max, &o->bsr_bq) &&
             tool_parse_int(fld[1], false, 1, len_max, &o->bsr_bk) &&
             parse_list32(fld[2], &o->bsr_row_ptr, &o->bsr_num_rows) &&
             (!*fld[3] || parse_list32(fld[3], &o->bsr_col_idx, &o->bsr_num_cols));
        o->has_bsr = true;
    } else {
        free(copy);
        usage_error("unknown option '--%s'", name);
        return false;
    }
    free(copy);
    if (!ok)
        usage_error("invalid value '%s' for --%s (%s)", value, name, want);
    return ok;
}

/* Fills *o from argv. Returns 0, or EXIT_USAGE after printing why. */
static int parse_args(int argc, char **argv, opts *o)
{
    *o = (opts){.heads = 4, .kv_heads = -1, .q_len = 256, .kv_len = -1, .head_dim = 64,
                .head = -1, .gap = 8, .seed = 1};
    const struct {
        const char *name;
        bool *dst;
    } bools[] = {{"causal", &o->causal},         {"alibi", &o->alibi},
                 {"probs", &o->probs},           {"all-heads", &o->all_heads},
                 {"longformer", &o->longformer}, {"bigbird-mix", &o->bigbird_mix},
                 {"help", &o->help}};
    static const char *const valued[] = {"heads",  "kv-heads", "q-len",  "kv-len",
                                         "head-dim", "head",   "gap",    "out",
                                         "seed",   "cell",     "window", "dilation",
                                         "global", "bigbird",  "bsr"};

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "-h")) {
            o->help = true;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0 || !arg[2]) {
            usage_error("unexpected argument '%s'", arg);
            return EXIT_USAGE;
        }
        /* "--name=value", or the value in the next argument. */
        char name[32];
        const char *eq = strchr(arg + 2, '=');
        size_t len = eq ? (size_t)(eq - (arg + 2)) : strlen(arg + 2);
        if (len >= sizeof name) {
            usage_error("unknown option '%s'", arg);
            return EXIT_USAGE;
        }
        memcpy(name, arg + 2, len);
        name[len] = '\0';

        bool found = false;
        for (size_t b = 0; b < sizeof bools / sizeof bools[0] && !found; b++) {
            if (strcmp(name, bools[b].name) != 0)
                continue;
            if (eq) {
                usage_error("option '--%s' takes no value", name);
                return EXIT_USAGE;
            }
            *bools[b].dst = true;
            found = true;
        }
        if (found)
            continue;
        for (size_t v = 0; v < sizeof valued / sizeof valued[0] && !found; v++)
            found = !strcmp(name, valued[v]);
        if (!found) {
            usage_error("unknown option '%s'", arg);
            return EXIT_USAGE;
        }
        const char *value;
        if (eq) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            usage_error("option '--%s' needs a value", name);
            return EXIT_USAGE;
        }
        if (!parse_valued(o, name, value))
            return EXIT_USAGE;
    }
    if (o->help)
        return 0;

    if (o->kv_heads < 0)
        o->kv_heads = o->heads;
    if (o->kv_len < 0)
        o->kv_len = o->q_len;
    if (!o->out) {
        usage_error("--out FILE.png is required");
        return EXIT_USAGE;
    }
    if (o->heads % o->kv_heads) {
        usage_error("--kv-heads %" PRId64 " does not divide --heads %" PRId64, o->kv_heads,
                    o->heads);
        return EXIT_USAGE;
    }
    if (o->head >= 0 && o->all_heads) {
        usage_error("--head and --all-heads exclude each other");
        return EXIT_USAGE;
    }
    if (o->head >= o->heads) {
        usage_error("--head %" PRId64 " is not below --heads %" PRId64, o->head, o->heads);
        return EXIT_USAGE;
    }
    o->all_heads = o->head < 0;
    if (o->longformer && o->bigbird_mix) {
        usage_error("--longformer and --bigbird-mix exclude each other");
        return EXIT_USAGE;
    }
    if ((o->longformer || o->bigbird_mix) && o->has_bsr) {
        usage_error("--bsr is not part of --%s", o->longformer ? "longformer" : "bigbird-mix");
        return EXIT_USAGE;
    }
    if (o->longformer && o->has_bigbird) {
        usage_error("--bigbird is not part of --longformer (see --bigbird-mix)");
        return EXIT_USAGE;
    }
    if (o->bigbird_mix && o->has_dilation) {
        usage_error("--dilation is not part of --bigbird-mix (see --longformer)");
        return EXIT_USAGE;
    }
    if (o->has_bsr) {
        /* The library reads ceil(q_len / BQ) + 1 row pointers and row_ptr[last] column
         * indices: the lists must hold exactly that many. */
        const int64_t nrows = (o->q_len + o->bsr_bq - 1) / o->bsr_bq;
        if (o->bsr_num_rows != nrows + 1) {
            usage_error("--bsr: ROWPTR has %" PRId64 " entries; q-len %" PRId64 " in blocks of "
                        "%" PRId64 " needs %" PRId64,
                        o->bsr_num_rows, o->q_len, o->bsr_bq, nrows + 1);
            return EXIT_USAGE;
        }
        for (int64_t r = 0; r < nrows; r++)
            if (o->bsr_row_ptr[0] != 0 || o->bsr_row_ptr[r + 1] < o->bsr_row_ptr[r]) {
                usage_error("--bsr: ROWPTR must start at 0 and never decrease");
                return EXIT_USAGE;
            }
        if (o->bsr_row_ptr[nrows] != o->bsr_num_cols) {
            usage_error("--bsr: COLIDX has %" PRId64 " entries; ROWPTR ends at %" PRId32,
                        o->bsr_num_cols, o->bsr_row_ptr[nrows]);
            return EXIT_USAGE;
        }
    }
    for (int64_t g = 0; g < o->num_global; g++)
        if (o->global[g] >= o->kv_len) {
            usage_error("global position %" PRId64 " is not below --kv-len %" PRId64,
                        o->global[g], o->kv_len);
            return EXIT_USAGE;
        }
    return 0;
}

/* ---- the description ------------------------------------------------------------------*/

/* The patterns of the description and the arrays they point to. */
typedef struct patterns {
    attn_pattern *p;
    int64_t count; /* 0: dense */
    int64_t *global;
} patterns;

/* Builds the description's patterns from the options; false when out of memory. */
static bool make_patterns(const opts *o, patterns *ps)
{
    *ps = (patterns){0};
    const attn_pattern init = ATTN_PATTERN_INIT;
    const int64_t sixteenth = o->kv_len / 16 > 0 ? o->kv_len / 16 : 1;

    if (o->longformer) {
        const int64_t wl = o->has_window ? o->win_left : sixteenth;
        const int64_t wr = o->has_window ? o->win_right : sixteenth;
        const int64_t d = o->has_dilation ? o->dilation : 4;
        ps->count = o->heads;
        ps->p = malloc((size_t)o->heads * sizeof *ps->p);
        ps->global = malloc(sizeof *ps->global); /* the default global token: 0 */
        if (!ps->p || !ps->global)
            return false;
        ps->global[0] = 0;
        for (int64_t h = 0; h < o->heads; h++) {
            attn_pattern *p = &ps->p[h];
            *p = init;
            p->window = 1, p->window_left = wl, p->window_right = wr;
            if (h % 3 == 1) {
                p->dilation = d;
                if (o->has_dilation_extent) {
                    p->dilation_left = o->dil_left, p->dilation_right = o->dil_right;
                } else {
                    /* d over the window's key count: extents W*d (unbounded stays so). */
                    p->dilation_left = wl < 0 ? ATTN_UNBOUNDED : wl * d;
                    p->dilation_right = wr < 0 ? ATTN_UNBOUNDED : wr * d;
                }
            } else if (h % 3 == 2) {
                p->global_tokens = o->has_global ? o->global : ps->global;
                p->num_global = o->has_global ? o->num_global : 1;
            }
        }
        return true;
    }

    attn_pattern p = init;
    if (o->bigbird_mix) {
        const int64_t b = o->has_bigbird ? o->bb_block : sixteenth;
        p.random_block_size = b;
        p.random_blocks = o->has_bigbird ? o->bb_blocks : 2;
        p.random_seed = o->has_bigbird ? o->bb_seed : 0;
        p.window = 1;
        p.window_left = o->has_window ? o->win_left : b;
        p.window_right = o->has_window ? o->win_right : b;
        if (o->has_global) {
            p.global_tokens = o->global, p.num_global = o->num_global;
        } else {
            /* The first and the last block (BigBird-ITC's global blocks). */
            const int64_t first = b < o->kv_len ? b : o->kv_len;
            ps->global = malloc(2 * (size_t)first * sizeof *ps->global);
            if (!ps->global)
                return false;
            int64_t n = 0;
            for (int64_t j = 0; j < first; j++)
                ps->global[n++] = j;
            for (int64_t j = o->kv_len - first; j < o->kv_len; j++)
                ps->global[n++] = j;
            sort_unique(ps->global, &n);
            p.global_tokens = ps->global, p.num_global = n;
        }
    } else {
        if (o->has_window)
            p.window = 1, p.window_left = o->win_left, p.window_right = o->win_right;
        if (o->has_dilation)
            p.dilation = o->dilation, p.dilation_left = o->dil_left,
            p.dilation_right = o->dil_right;
        if (o->has_global)
            p.global_tokens = o->global, p.num_global = o->num_global;
        if (o->has_bigbird)
            p.random_block_size = o->bb_block, p.random_blocks = o->bb_blocks,
            p.random_seed = o->bb_seed;
        if (o->has_bsr)
            p.bsr_block_q = o->bsr_bq, p.bsr_block_k = o->bsr_bk,
            p.bsr_row_ptr = o->bsr_row_ptr, p.bsr_col_idx = o->bsr_col_idx;
        if (!(o->has_window || o->has_dilation || o->has_global || o->has_bigbird ||
              o->has_bsr))
            return true; /* dense */
    }
    ps->p = malloc(sizeof *ps->p);
    if (!ps->p)
        return false;
    ps->p[0] = p;
    ps->count = 1;
    return true;
}

static void patterns_free(patterns *ps)
{
    free(ps->p);
    free(ps->global);
}

/* ---- the image ---------------------------------------------------------------------------*/

typedef struct rgb {
    uint8_t r, g, b;
} rgb;

static const rgb WHITE = {255, 255, 255}, FRAME = {200, 200, 200}, DARK = {20, 33, 61};

/* The --probs colour of t in [0, 1] (0 palest, 1 darkest): yellow, orange, red, dark purple. */
static rgb heat(double t)
{
    static const rgb stops[] = {{255, 237, 160}, {253, 141, 60}, {189, 0, 38}, {45, 0, 45}};
    const int n = (int)(sizeof stops / sizeof stops[0]) - 1;
    double x = t * n;
    int k = (int)x;
    if (k >= n)
        return stops[n];
    double f = x - k;
    rgb c = {(uint8_t)lround(stops[k].r + f * (stops[k + 1].r - stops[k].r)),
             (uint8_t)lround(stops[k].g + f * (stops[k + 1].g - stops[k].g)),
             (uint8_t)lround(stops[k].b + f * (stops[k + 1].b - stops[k].b))};
    return c;
}

/* Shade of one score cell: -1 not visible; pattern: 1; --probs: the position on the
 * per-row log scale, in [0, 1]. */
static float cell_shade(bool probs, float p, float row_max)
{
    if (!(p > 0.0f))
        return -1.0f;
    if (!probs)
        return 1.0f;
    double t = 1.0 + log10((double)p / (double)row_max) / PROBS_DECADES;
    return t < 0.0 ? 0.0f : (float)t;
}

/* Draws one head's probabilities [q_len, kv_len] at (x0, y0) of the image: grid (rows x
 * cols, reused scratch) holds each pixel block's darkest shade. */
static void draw_head(const opts *o, const float *pr, float *grid, int64_t rows, int64_t cols,
                      uint8_t *img, int64_t width, int64_t x0, int64_t y0)
{
    const int64_t up = o->cell_up, down = o->cell_down;
    for (int64_t c = 0; c < rows * cols; c++)
        grid[c] = -1.0f;
    for (int64_t i = 0; i < o->q_len; i++) {
        const float *row = pr + i * o->kv_len;
        float row_max = 0.0f;
        for (int64_t j = 0; j < o->kv_len; j++)
            row_max = row[j] > row_max ? row[j] : row_max;
        float *g = grid + (i / down) * cols;
        for (int64_t j = 0; j < o->kv_len; j++) {
            float s = cell_shade(o->probs, row[j], row_max);
            if (s > g[j / down])
                g[j / down] = s;
        }
    }
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            const float s = grid[r * cols + c];
            const rgb col = s < 0.0f ? WHITE : o->probs ? heat(s) : DARK;
            for (int64_t dy = 0; dy < up; dy++) {
                uint8_t *px = img + ((y0 + r * up + dy) * width + x0 + c * up) * 3;
                for (int64_t dx = 0; dx < up; dx++, px += 3)
                    px[0] = col.r, px[1] = col.g, px[2] = col.b;
            }
        }
}

static void png_error_fn(png_structp png, png_const_charp msg)
{
    fprintf(stderr, "attn-pattern: libpng: %s\n", msg);
    png_longjmp(png, 1);
}

static void png_warning_fn(png_structp png, png_const_charp msg)
{
    (void)png;
    fprintf(stderr, "attn-pattern: libpng warning: %s\n", msg);
}

/* What write_png must release however it ends; in memory, so a longjmp cannot clobber it. */
typedef struct png_out {
    FILE *f;
    png_structp png;
    png_infop info;
} png_out;

/* Everything libpng does that may longjmp back to write_png's setjmp. */
static void png_write_all(png_out *w, const uint8_t *img, uint32_t width, uint32_t height)
{
    png_init_io(w->png, w->f);
    png_set_IHDR(w->png, w->info, width, height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_set_compression_level(w->png, 9);
    char key[] = "Software", text[64];
    snprintf(text, sizeof text, "attn-pattern (libattn %s)", attn_version_string());
    png_text t = {.compression = PNG_TEXT_COMPRESSION_NONE, .key = key, .text = text};
    png_set_text(w->png, w->info, &t, 1);
    png_write_info(w->png, w->info);
    for (uint32_t y = 0; y < height; y++)
        png_write_row(w->png, img + (size_t)y * width * 3);
    png_write_end(w->png, NULL);
}

/* Writes an 8-bit RGB PNG; on failure says why, removes the partial file, returns false. */
static bool write_png(const char *path, const uint8_t *img, uint32_t width, uint32_t height)
{
    /* A partial file is removed on failure, but never a device or pipe (/dev/stdout). */
    struct stat st;
    const bool removable = stat(path, &st) != 0 || S_ISREG(st.st_mode);
    png_out w = {0};
    w.f = fopen(path, "wb");
    if (!w.f) {
        fprintf(stderr, "attn-pattern: cannot open '%s' for writing: %s\n", path,
                strerror(errno));
        return false;
    }
    w.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, png_error_fn, png_warning_fn);
    w.info = w.png ? png_create_info_struct(w.png) : NULL;
    if (!w.info) {
        fprintf(stderr, "attn-pattern: libpng could not start (out of memory?)\n");
        png_destroy_write_struct(&w.png, NULL);
        fclose(w.f);
        if (removable)
            remove(path);
        return false;
    }
    png_out *wp = &w;
    if (setjmp(png_jmpbuf(w.png))) {
        png_destroy_write_struct(&wp->png, &wp->info);
        fclose(wp->f);
        if (removable)
            remove(path);
        return false;
    }
    png_write_all(wp, img, width, height);
    png_destroy_write_struct(&wp->png, &wp->info);
    if (fclose(wp->f) != 0) {
        fprintf(stderr, "attn-pattern: writing '%s' failed: %s\n", path, strerror(errno));
        if (removable)
            remove(path);
        return false;
    }
    return true;
}

/* ---- running it ------------------------------------------------------------------------*/

/* Everything that must be freed, whichever way the run ends. */
typedef struct job {
    attn_context *ctx;
    attn_plan *plan;
    patterns pats;
    float *q, *k, *v, *o, *probs, *grid;
    uint8_t *img;
} job;

static void job_free(job *j)
{
    attn_plan_destroy(j->plan);
    attn_context_destroy(j->ctx);
    patterns_free(&j->pats);
    free(j->q);
    free(j->k);
    free(j->v);
    free(j->o);
    free(j->probs);
    free(j->grid);
    free(j->img);
}

static int lib_fail(const char *what, attn_status s)
{
    const char *detail = attn_last_detail(); /* names the status itself */
    if (*detail)
        fprintf(stderr, "attn-pattern: %s: %s\n", what, detail);
    else
        fprintf(stderr, "attn-pattern: %s: %s (%s)\n", what, attn_status_name(s),
                attn_status_string(s));
    /* A description the library refuses is the caller's mistake, not a failure. */
    return s == ATTN_ERROR_INVALID_ARGUMENT || s == ATTN_ERROR_INVALID_SHAPE ||
                   s == ATTN_ERROR_HEADS_MISMATCH || s == ATTN_ERROR_HEAD_DIM_UNSUPPORTED
               ? EXIT_USAGE
               : 1;
}

/* Uniform in [-1, 1) from a splitmix64 state. */
static float rng_uniform(uint64_t *state)
{
    uint64_t x = (*state += UINT64_C(0x9E3779B97F4A7C15));
    x = (x ^ (x >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94D049BB133111EB);
    x ^= x >> 31;
    return (float)((double)(x >> 11) * 0x1p-52 - 1.0);
}

static int run(opts *o, job *j)
{
    /* Pixels per cell and cells per pixel (auto: see --help). */
    const int64_t longest = o->q_len > o->kv_len ? o->q_len : o->kv_len;
    if (!o->cell_up) {
        o->cell_up = longest <= AUTO_PANEL_PX ? AUTO_PANEL_PX / longest : 1;
        o->cell_up = o->cell_up > 8 ? 8 : o->cell_up;
        o->cell_down = (longest + AUTO_PANEL_PX - 1) / AUTO_PANEL_PX;
    }
    const int64_t drawn = o->all_heads ? o->heads : 1;
    const int64_t rows = (o->q_len + o->cell_down - 1) / o->cell_down;
    const int64_t cols = (o->kv_len + o->cell_down - 1) / o->cell_down;
    const int64_t pw = cols * o->cell_up, ph = rows * o->cell_up;
    const int64_t width = 2 + drawn * pw + (drawn - 1) * o->gap, height = 2 + ph;

    /* Sizes first, before anything is computed. q_len, kv_len <= 2^31 and heads < 2^16, so
     * these products fit in 64 bits. */
    const double probs_bytes = 4.0 * (double)drawn * (double)o->q_len * (double)o->kv_len;
    if (probs_bytes > (double)PROBS_MAX_BYTES) {
        fprintf(stderr,
                "attn-pattern: the probability tensor would take %.0f MiB (4 bytes x %" PRId64
                " head(s) x %" PRId64 " x %" PRId64 "); at most 256 MiB: use fewer heads (--head),"
                " or shorter --q-len/--kv-len\n",
                probs_bytes / 1048576.0, drawn, o->q_len, o->kv_len);
        return EXIT_USAGE;
    }
    if (width > IMAGE_MAX_SIDE || height > IMAGE_MAX_SIDE || width * height > IMAGE_MAX_PIXELS) {
        fprintf(stderr,
                "attn-pattern: the image would be %" PRId64 " x %" PRId64 " pixels; at most "
                "%" PRId64 " a side and %" PRId64 " Mi pixels: use a smaller --cell (1/N "
                "downscales)\n",
                width, height, IMAGE_MAX_SIDE, IMAGE_MAX_PIXELS >> 20);
        return EXIT_USAGE;
    }

    /* The pattern image needs no head dimension: Q = K = 0 makes every visible score 0. */
    const int64_t d = o->probs ? o->head_dim : 1;
    const int64_t longest_len = o->q_len > o->kv_len ? o->q_len : o->kv_len;
    if (4.0 * (double)o->heads * (double)longest_len * (double)d > (double)PROBS_MAX_BYTES) {
        fprintf(stderr,
                "attn-pattern: Q, K, V or O would take more than 256 MiB (4 bytes x %" PRId64
                " heads x %" PRId64 " tokens x %" PRId64 " dims): use fewer --heads or a "
                "smaller --head-dim\n",
                o->heads, longest_len, d);
        return EXIT_USAGE;
    }
    const size_t nq = (size_t)(o->q_len * o->heads * d), nk = (size_t)(o->kv_len * o->kv_heads * d);
    const size_t np = (size_t)(drawn * o->q_len * o->kv_len);
    j->q = calloc(nq, sizeof *j->q);
    j->k = calloc(nk, sizeof *j->k);
    j->v = calloc(nk, sizeof *j->v);
    j->o = calloc(nq, sizeof *j->o);
    j->probs = malloc(np * sizeof *j->probs);
    j->grid = malloc((size_t)(rows * cols) * sizeof *j->grid);
    j->img = malloc((size_t)(width * height) * 3);
    if (!j->q || !j->k || !j->v || !j->o || !j->probs || !j->grid || !j->img) {
        fprintf(stderr, "attn-pattern: out of host memory\n");
        return 1;
    }
    if (o->probs) {
        /* One generator, Q then K then V, so a problem always gets the same inputs. */
        uint64_t rng = o->seed;
        for (size_t i = 0; i < nq; i++)
            j->q[i] = rng_uniform(&rng);
        for (size_t i = 0; i < nk; i++)
            j->k[i] = rng_uniform(&rng);
        for (size_t i = 0; i < nk; i++)
            j->v[i] = rng_uniform(&rng);
    }
    if (!make_patterns(o, &j->pats)) {
        fprintf(stderr, "attn-pattern: out of host memory\n");
        return 1;
    }

    attn_context_params cp = ATTN_CONTEXT_PARAMS_INIT;
    cp.backend = ATTN_BACKEND_REFERENCE;
    cp.cache_dir = ""; /* nothing to compile, nothing to cache */
    attn_status s = attn_context_create(&cp, &j->ctx);
    if (s != ATTN_OK)
        return lib_fail("attn_context_create (reference)", s);

    attn_desc desc = ATTN_DESC_INIT;
    desc.num_heads = o->heads;
    desc.num_kv_heads = o->kv_heads;
    desc.q_len = o->q_len;
    desc.kv_len = o->kv_len;
    desc.head_dim = d;
    desc.causal = o->causal;
    desc.patterns = j->pats.p;
    desc.num_patterns = j->pats.count;
    desc.alibi = o->probs && o->alibi; /* a bias would not change what is visible */
    desc.want_probs = o->all_heads ? ATTN_PROBS_ALL_HEADS : ATTN_PROBS_ONE_HEAD;
    desc.probs_head = o->all_heads ? 0 : o->head;
    s = attn_plan_create(j->ctx, &desc, &j->plan);
    if (s != ATTN_OK)
        return lib_fail("attn_plan_create", s);

    attn_run_args args = ATTN_RUN_ARGS_INIT;
    args.q = attn_tensor_host(ATTN_DTYPE_F32, 1, o->q_len, o->heads, d, j->q);
    args.k = attn_tensor_host(ATTN_DTYPE_F32, 1, o->kv_len, o->kv_heads, d, j->k);
    args.v = attn_tensor_host(ATTN_DTYPE_F32, 1, o->kv_len, o->kv_heads, d, j->v);
    args.o = attn_tensor_host(ATTN_DTYPE_F32, 1, o->q_len, o->heads, d, j->o);
    args.probs = attn_tensor_host(ATTN_DTYPE_F32, 1, drawn, o->q_len, o->kv_len, j->probs);
    s = attn_plan_run(j->plan, &args);
    if (s != ATTN_OK)
        return lib_fail("attn_plan_run", s);

    /* Grey frame and gaps, each head's panel drawn over them. */
    for (int64_t p = 0; p < width * height; p++)
        memcpy(j->img + p * 3, &FRAME, 3);
    const size_t per_head = (size_t)(o->q_len * o->kv_len);
    for (int64_t h = 0; h < drawn; h++)
        draw_head(o, j->probs + (size_t)h * per_head, j->grid, rows, cols, j->img, width,
                  1 + h * (pw + o->gap), 1);
    if (!write_png(o->out, j->img, (uint32_t)width, (uint32_t)height))
        return 1;

    printf("attn-pattern: wrote %s, %" PRId64 " x %" PRId64 " pixels: ", o->out, width, height);
    if (o->all_heads)
        printf("%" PRId64 " head%s", drawn, drawn > 1 ? "s side by side" : "");
    else
        printf("head %" PRId64 " of %" PRId64, o->head, o->heads);
    printf(", q_len %" PRId64 ", kv_len %" PRId64 ", ", o->q_len, o->kv_len);
    if (o->cell_down > 1)
        printf("one pixel per %" PRId64 " x %" PRId64 " cells\n", o->cell_down, o->cell_down);
    else
        printf("%" PRId64 " pixel%s per cell\n", o->cell_up, o->cell_up > 1 ? "s" : "");
    if (!o->probs)
        for (int64_t h = 0; h < drawn; h++) {
            uint64_t seen = 0;
            for (size_t c = 0; c < per_head; c++)
                seen += j->probs[(size_t)h * per_head + c] > 0.0f;
            printf("  head %" PRId64 ": %" PRIu64 " of %zu pairs visible (%.1f%%)\n",
                   o->all_heads ? h : o->head, seen, per_head,
                   100.0 * (double)seen / (double)per_head);
        }
    if (fflush(stdout) != 0) {
        fprintf(stderr, "attn-pattern: writing the summary failed: %s\n", strerror(errno));
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc || o.help) {
        if (!rc)
            usage(stdout);
        opts_free(&o);
        return rc;
    }
    job j = {0};
    rc = run(&o, &j);
    job_free(&j);
    opts_free(&o);
    return rc;
}
