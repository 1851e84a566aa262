/* tune.c — tuned tile choices: the tuning database (a text file of rows in the cache
 * directory, and the user's overlay file), its lookup for the planner, and
 * attn_context_tune, which times candidates on the device and stores the winners. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/jit_cache.h"
#include "core/sparse.h"
#include "core/tune.h"

#define DB_NAME "tuning.txt"
#define DB_MAGIC "attn-tune 1"
#define FNV_SEED 0xcbf29ce484222325ull
#define MAX_FILE (1u << 20) /* a tuning file is a few kB; anything larger is not one */
#define UNSET ATTN__TUNE_UNSET

enum {
#define ATTN__X(name) P_##name,
    ATTN__TUNE_PARAMS(ATTN__X)
#undef ATTN__X
    P_COUNT
};

static const char *const param_names[P_COUNT] = {
#define ATTN__X(name) #name,
    ATTN__TUNE_PARAMS(ATTN__X)
#undef ATTN__X
};

static int32_t *val_at(attn__tune_vals *v, int i)
{
    switch (i) {
#define ATTN__X(name)                                                                        \
    case P_##name:                                                                           \
        return &v->name;
        ATTN__TUNE_PARAMS(ATTN__X)
#undef ATTN__X
    }
    return NULL;
}

static int32_t val_get(const attn__tune_vals *v, int i) { return *val_at((attn__tune_vals *)v, i); }

static void vals_unset(attn__tune_vals *v)
{
    for (int i = 0; i < P_COUNT; ++i)
        *val_at(v, i) = UNSET;
}

/* Which tunables a (language, kind) has; a row that sets another is a mistake. */
static int applies(attn__lang lang, attn__tune_kind kind, int i)
{
    switch (i) {
    case P_vd_vec: return kind == ATTN__TUNE_CPU && lang == ATTN__LANG_OPENCL_C;
    case P_block_m:
    case P_block_n: return kind == ATTN__TUNE_GPU;
    case P_rows:
    case P_unroll_d:
    case P_keys_per_lane: return kind == ATTN__TUNE_CPU && lang == ATTN__LANG_GLSL;
    case P_splits_per_cu: return kind == ATTN__TUNE_DECODE;
    }
    return 0;
}

static const char *kind_word(attn__tune_kind k)
{
    return k == ATTN__TUNE_CPU ? "cpu" : k == ATTN__TUNE_GPU ? "gpu" : "decode";
}

static const char *backend_word(attn_backend b)
{
    return b == ATTN_BACKEND_OPENCL ? "opencl" : b == ATTN_BACKEND_VULKAN ? "vulkan" : "reference";
}

static const char *dtype_word(attn_dtype t) { return t == ATTN_DTYPE_F16 ? "f16" : "f32"; }

/* The head-dim class of a problem: the smallest of 16, 32, ..., 256 holding both dims. */
static int64_t class_of(int64_t d, int64_t dv)
{
    const int64_t m = d > dv ? d : dv;
    int64_t c = 16;
    while (c < m && c < ATTN_MAX_HEAD_DIM)
        c *= 2;
    return c;
}

static uint64_t round4(int64_t x) { return ((uint64_t)x + 3) / 4 * 4; }
static int pow2(int32_t x) { return x > 0 && !(x & (x - 1)); }

/* "vd_vec=8 block_m=64": the values a row sets. */
static void vals_text(const attn__tune_vals *v, char *dst, size_t n)
{
    size_t k = 0;
    dst[0] = '\0';
    for (int i = 0; i < P_COUNT && k < n; ++i)
        if (val_get(v, i) != UNSET) {
            int w = snprintf(dst + k, n - k, "%s%s=%d", k ? " " : "", param_names[i],
                             (int)val_get(v, i));
            k += w > 0 ? (size_t)w : 0;
        }
}

/* Whether values may run the plan's problem on its device; why not in `why`. Only what
 * breaks a kernel or cannot compile in reasonable time is refused; slow is allowed. */
static int vals_valid(const attn_plan *plan, attn__tune_kind kind, const attn__tune_vals *v,
                      char *why, size_t n)
{
    const attn_device_info *dev = &plan->ctx->info;
    const attn__problem *p = &plan->pb;
    for (int i = 0; i < P_COUNT; ++i)
        if (val_get(v, i) != UNSET && !applies(plan->ctx->ops->lang, kind, i)) {
            snprintf(why, n, "%s does not apply to the %s kernel on %s", param_names[i],
                     kind_word(kind), backend_word(dev->backend));
            return 0;
        }
    if (v->vd_vec != UNSET && v->vd_vec != 4 && v->vd_vec != 8 && v->vd_vec != 16) {
        snprintf(why, n, "vd_vec %d is not 4, 8 or 16", (int)v->vd_vec);
        return 0;
    }
    const uint32_t wg = dev->max_work_group_size ? dev->max_work_group_size : 64;
    if (v->block_m != UNSET && (!pow2(v->block_m) || (uint32_t)v->block_m > wg)) {
        snprintf(why, n, "block_m %d is not a power of two up to the max work-group size %u",
                 (int)v->block_m, wg);
        return 0;
    }
    if (v->block_n != UNSET) {
        /* attn_fwd_gpu: a K tile of (head_dim + 1) and a V tile of v_head_dim floats per key. */
        const uint64_t per_key = (uint64_t)(p->head_dim + 1 + p->v_head_dim) * 4;
        const uint64_t local = dev->local_mem_bytes ? dev->local_mem_bytes : 16384;
        if (!pow2(v->block_n) || v->block_n > 128) {
            snprintf(why, n, "block_n %d is not a power of two up to 128", (int)v->block_n);
            return 0;
        }
        if ((uint64_t)v->block_n * per_key > local) {
            snprintf(why, n, "block_n %d needs %llu bytes of local memory; the device has %llu",
                     (int)v->block_n, (unsigned long long)(v->block_n * per_key),
                     (unsigned long long)local);
            return 0;
        }
    }
    if (v->rows != UNSET && v->rows != 1 && v->rows != 2 && v->rows != 4) {
        snprintf(why, n, "rows %d is not 1, 2 or 4", (int)v->rows);
        return 0;
    }
    if (v->keys_per_lane != UNSET &&
        ((v->keys_per_lane != 1 && v->keys_per_lane != 2 && v->keys_per_lane != 4) ||
         (v->keys_per_lane != 1 && attn__sparse_on(p)))) {
        snprintf(why, n, "keys_per_lane %d: 1, 2 or 4, and 1 with a pattern's tile map",
                 (int)v->keys_per_lane);
        return 0;
    }
    /* Unrolled head-dim loops beyond 128 floats of Q and O per row: llvmpipe took 82 s to
     * compile one at d=128 (plan.c), so such a row is not trusted. */
    if (v->unroll_d != UNSET &&
        (v->unroll_d < 0 || v->unroll_d > 1 ||
         (v->unroll_d && round4(p->head_dim) + round4(p->v_head_dim) > 128))) {
        snprintf(why, n, "unroll_d %d: 0, or 1 only while head_dim + v_head_dim <= 128",
                 (int)v->unroll_d);
        return 0;
    }
    if (v->splits_per_cu != UNSET && (v->splits_per_cu < 1 || v->splits_per_cu > 1024)) {
        snprintf(why, n, "splits_per_cu %d is not in 1..1024", (int)v->splits_per_cu);
        return 0;
    }
    return 1;
}

/* ---- rows and files ----------------------------------------------------------------------
 * One row per line: backend vendor device driver family head_dim dtype name=value...
 * Strings with spaces are "quoted" (\" and \\ escape); "*" matches anything; '#' starts a
 * comment. The database starts with DB_MAGIC and ends with "end <rows> <checksum>", the
 * FNV-1a of every byte before that line: a file that fails it is ignored whole. */

typedef struct tune_row {
    char backend[16], vendor[128], device[256], driver[128];
    attn__tune_kind kind;
    int64_t head_dim; /* the class */
    attn_dtype dtype;
    attn__tune_vals v;
    char comment[200];
    int line;
} tune_row;

typedef struct row_list {
    tune_row *rows;
    size_t n, cap;
} row_list;

static int rows_push(row_list *l, const tune_row *r)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        tune_row *t = realloc(l->rows, cap * sizeof *t);
        if (!t)
            return 0;
        l->rows = t;
        l->cap = cap;
    }
    l->rows[l->n++] = *r;
    return 1;
}

/* The next field at *s into dst. 1: a field; 0: the end of the line or a comment; -1:
 * malformed (an unterminated quote, or longer than dst). */
static int next_field(const char **s, char *dst, size_t n)
{
    const char *p = *s;
    size_t k = 0;
    while (*p == ' ' || *p == '\t')
        ++p;
    if (!*p || *p == '#' || *p == '\n' || *p == '\r') {
        *s = p;
        return 0;
    }
    if (*p == '"') {
        for (++p; *p != '"'; ++p) {
            if (!*p || *p == '\n')
                return -1;
            if (*p == '\\' && (p[1] == '"' || p[1] == '\\'))
                ++p;
            if (k + 1 >= n)
                return -1;
            dst[k++] = *p;
        }
        ++p;
    } else {
        for (; *p && *p != ' ' && *p != '\t' && *p != '#' && *p != '\n' && *p != '\r'; ++p) {
            if (k + 1 >= n)
                return -1;
            dst[k++] = *p;
        }
    }
    dst[k] = '\0';
    *s = p;
    return 1;
}

/* Parses one row line (without its newline); 0 with why on a malformed one. */
static int parse_row(const char *line, tune_row *r, char *why, size_t n)
{
    char f[256], *end = NULL;
    memset(r, 0, sizeof *r);
    vals_unset(&r->v);
    const char *s = line;
    if (next_field(&s, r->backend, sizeof r->backend) != 1 ||
        next_field(&s, r->vendor, sizeof r->vendor) != 1 ||
        next_field(&s, r->device, sizeof r->device) != 1 ||
        next_field(&s, r->driver, sizeof r->driver) != 1) {
        snprintf(why, n, "expected backend, vendor, device and driver");
        return 0;
    }
    if (strcmp(r->backend, "opencl") && strcmp(r->backend, "vulkan")) {
        snprintf(why, n, "unknown backend '%s'", r->backend);
        return 0;
    }
    if (next_field(&s, f, sizeof f) != 1 || (strcmp(f, "cpu") && strcmp(f, "gpu") && strcmp(f, "decode"))) {
        snprintf(why, n, "expected a family: cpu, gpu or decode");
        return 0;
    }
    r->kind = !strcmp(f, "cpu") ? ATTN__TUNE_CPU : !strcmp(f, "gpu") ? ATTN__TUNE_GPU : ATTN__TUNE_DECODE;
    if (next_field(&s, f, sizeof f) != 1 || (r->head_dim = strtol(f, &end, 10), *end) ||
        class_of(r->head_dim, 0) != r->head_dim || r->head_dim < 16) {
        snprintf(why, n, "expected a head-dim class: 16, 32, 64, 128 or 256");
        return 0;
    }
    if (next_field(&s, f, sizeof f) != 1 || (strcmp(f, "f32") && strcmp(f, "f16"))) {
        snprintf(why, n, "expected a dtype: f32 or f16");
        return 0;
    }
    r->dtype = !strcmp(f, "f16") ? ATTN_DTYPE_F16 : ATTN_DTYPE_F32;
    int k, count = 0;
    while ((k = next_field(&s, f, sizeof f)) == 1) {
        char *eq = strchr(f, '=');
        int i = 0;
        if (eq)
            *eq = '\0';
        while (i < P_COUNT && strcmp(param_names[i], f))
            ++i;
        errno = 0;
        long x = eq && eq[1] ? strtol(eq + 1, &end, 10) : 0;
        if (!eq || i == P_COUNT || !eq[1] || *end || errno || x < -1000000 || x > 1000000 ||
            val_get(&r->v, i) != UNSET) {
            snprintf(why, n, "'%.60s%s%.40s' is not a known name=value (or repeats one)", f,
                     eq ? "=" : "", eq ? eq + 1 : "");
            return 0;
        }
        *val_at(&r->v, i) = (int32_t)x;
        ++count;
    }
    if (k < 0 || !count) {
        snprintf(why, n, k < 0 ? "malformed field" : "no values");
        return 0;
    }
    if (*s == '#') {
        for (++s; *s == ' '; ++s) {
        }
        attn__strlcpy(r->comment, s, sizeof r->comment);
        r->comment[strcspn(r->comment, "\r\n")] = '\0';
    }
    return 1;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    struct stat sb;
    if (!f)
        return NULL;
    const int ok = fstat(fileno(f), &sb) == 0 && sb.st_size >= 0 && sb.st_size <= MAX_FILE;
    char *buf = ok ? malloc((size_t)sb.st_size + 1) : NULL;
    /* One byte more than the size: a file that grew meanwhile is read again next time. */
    const size_t n = buf ? fread(buf, 1, (size_t)sb.st_size + 1, f) : 0;
    fclose(f);
    if (!buf || n != (size_t)sb.st_size) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* The rows of a tuning file into *out. The database (checked) is taken whole or not at
 * all; the user's overlay line by line, a malformed line skipped. 0: nothing usable. */
static int load_rows(attn_context *ctx, const char *path, int checked, row_list *out)
{
    size_t len = 0;
    char *text = read_file(path, &len), why[160];
    if (!text)
        return 0;
    const char *damage = NULL;
    unsigned rows = 0;
    if (checked) {
        /* The last line: "end <rows> <16 hex digits>", over everything before it. */
        size_t e = len;
        while (e > 0 && (text[e - 1] == '\n' || text[e - 1] == '\r' || text[e - 1] == ' '))
            --e;
        size_t b = e;
        while (b > 0 && text[b - 1] != '\n')
            --b;
        unsigned long long sum = 0;
        char tail[8];
        if (strncmp(text, DB_MAGIC "\n", sizeof DB_MAGIC) != 0)
            damage = "no header";
        else if (sscanf(text + b, "end %u %16llx%7s", &rows, &sum, tail) != 2)
            damage = "no end line (truncated?)";
        else if (attn__fnv1a(FNV_SEED, text, b) != sum)
            damage = "checksum mismatch";
        if (!damage) {
            text[b] = '\0';
            len = b;
        }
    }
    const size_t first = out->n;
    int line = 0, ok = !damage;
    for (char *s = text, *nl; ok && *s; s = nl ? nl + 1 : s + strlen(s)) {
        nl = strchr(s, '\n');
        if (nl)
            *nl = '\0';
        ++line;
        const char *t = s + strspn(s, " \t\r");
        if (!*t || *t == '#' || (line == 1 && !strcmp(s, DB_MAGIC)))
            continue;
        tune_row r;
        if (!parse_row(t, &r, why, sizeof why)) {
            attn__log(ctx, ATTN_LOG_DEBUG, "tuning: %s:%d ignored: %s", path, line, why);
            if (checked) {
                damage = "a malformed row";
                ok = 0;
            }
            continue;
        }
        r.line = line;
        ok = rows_push(out, &r);
    }
    if (ok && checked && out->n - first != rows) {
        damage = "row count mismatch";
        ok = 0;
    }
    if (damage)
        attn__log(ctx, ATTN_LOG_DEBUG, "tuning: database %s ignored: %s", path, damage);
    if (!ok)
        out->n = 0;
    free(text);
    return ok;
}

/* How closely a row names the device: 3 device and driver, 2 device (any driver), 1 the
 * vendor (any device), 0 anything; -1: another device. */
static int specificity(const tune_row *r, const attn_device_info *dev)
{
    const int vendor = !strcmp(r->vendor, "*") ? 0 : !strcmp(r->vendor, dev->vendor) ? 1 : -1;
    const int device = !strcmp(r->device, "*") ? 0 : !strcmp(r->device, dev->name) ? 1 : -1;
    const int driver = !strcmp(r->driver, "*") ? 0 : !strcmp(r->driver, dev->driver_version) ? 1 : -1;
    if (strcmp(r->backend, backend_word(dev->backend)) || vendor < 0 || device < 0 || driver < 0)
        return -1;
    return device ? 2 + driver : vendor;
}

/* The first valid row for the plan, most specific first and, among equals, the last line
 * first (a later line overrides an earlier one). */
static attn_tune_source pick(const attn_plan *plan, attn__tune_kind kind, const row_list *l,
                             const char *path, int overlay, attn__tune_vals *out)
{
    const attn__problem *p = &plan->pb;
    const int64_t dclass = class_of(p->head_dim, p->v_head_dim);
    char why[160], vals[96];
    for (int level = 3; level >= 0; --level)
        for (size_t i = l->n; i-- > 0;) {
            const tune_row *r = &l->rows[i];
            if (r->kind != kind || r->head_dim != dclass || r->dtype != p->dtype ||
                specificity(r, &plan->ctx->info) != level)
                continue;
            vals_text(&r->v, vals, sizeof vals);
            if (!vals_valid(plan, kind, &r->v, why, sizeof why)) {
                attn__log(plan->ctx, ATTN_LOG_DEBUG, "tuning: %s:%d (%s) ignored: %s", path,
                          r->line, vals, why);
                continue;
            }
            attn__log(plan->ctx, ATTN_LOG_DEBUG, "tuning: %s d<=%lld %s from %s:%d: %s",
                      kind_word(kind), (long long)dclass, dtype_word(p->dtype), path, r->line,
                      vals);
            *out = r->v;
            return overlay ? ATTN_TUNE_OVERLAY : level >= 2 ? ATTN_TUNE_DEVICE : ATTN_TUNE_VENDOR;
        }
    return ATTN_TUNE_DEFAULT;
}

static char *db_path(const attn_context *ctx)
{
    if (!ctx->cache_dir || !*ctx->cache_dir)
        return NULL;
    size_t n = strlen(ctx->cache_dir) + sizeof DB_NAME + 1;
    char *path = malloc(n);
    if (path)
        snprintf(path, n, "%s/%s", ctx->cache_dir, DB_NAME);
    return path;
}

/* attn_context_tune's candidate for plans created on this thread (NULL otherwise): the
 * search plans through attn_plan_create, so the planner itself applies a candidate. */
static _Thread_local const attn__tune_vals *search_vals;

attn_tune_source attn__tune_lookup(const attn_plan *plan, attn__tune_kind kind,
                                   attn__tune_vals *out)
{
    attn_context *ctx = plan->ctx;
    char why[160];
    vals_unset(out);
    if (search_vals) {
        attn__tune_vals v;
        int any = 0;
        vals_unset(&v);
        for (int i = 0; i < P_COUNT; ++i)
            if (applies(ctx->ops->lang, kind, i) && val_get(search_vals, i) != UNSET) {
                *val_at(&v, i) = val_get(search_vals, i);
                any = 1;
            }
        if (!any)
            return ATTN_TUNE_DEFAULT;
        if (!vals_valid(plan, kind, &v, why, sizeof why)) {
            attn__log(ctx, ATTN_LOG_DEBUG, "tuning: candidate ignored: %s", why);
            return ATTN_TUNE_DEFAULT;
        }
        *out = v;
        return ATTN_TUNE_SEARCH;
    }
    const char *off = getenv("ATTN_TUNE");
    if (off && !strcmp(off, "0"))
        return ATTN_TUNE_DEFAULT;
    attn_tune_source src = ATTN_TUNE_DEFAULT;
    row_list l = {0};
    const char *overlay = getenv("ATTN_TUNE_FILE");
    if (overlay && *overlay && load_rows(ctx, overlay, 0, &l))
        src = pick(plan, kind, &l, overlay, 1, out);
    char *db = src == ATTN_TUNE_DEFAULT ? db_path(ctx) : NULL;
    l.n = 0;
    if (db && load_rows(ctx, db, 1, &l))
        src = pick(plan, kind, &l, db, 0, out);
    free(db);
    free(l.rows);
    return src;
}

/* ---- writing the database ------------------------------------------------------------- */

static void put_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; ++s) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        fputc((unsigned char)*s < 0x20 ? '?' : *s, f);
    }
    fputs("\" ", f);
}

/* Writes the rows as the database at `path`, atomically (temporary file, rename). */
static int write_db(const char *dir, const char *path, const row_list *l, char *why, size_t n)
{
    char *text = NULL, vals[96];
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    if (!m) {
        snprintf(why, n, "out of memory");
        return 0;
    }
    fprintf(m, DB_MAGIC "\n"
               "# libattn tuning database, written by attn_context_tune (attn-probe --tune).\n"
               "# backend vendor device driver family head_dim<= dtype values  (\"*\": any)\n"
               "# Edits break the checksum and the file is then ignored: put your own rows in\n"
               "# the file named by $ATTN_TUNE_FILE (same rows, no checksum); they win.\n");
    for (size_t i = 0; i < l->n; ++i) {
        const tune_row *r = &l->rows[i];
        fprintf(m, "%s ", r->backend);
        put_string(m, r->vendor);
        put_string(m, r->device);
        put_string(m, r->driver);
        vals_text(&r->v, vals, sizeof vals);
        fprintf(m, "%s %lld %s %s", kind_word(r->kind), (long long)r->head_dim,
                dtype_word(r->dtype), vals);
        if (r->comment[0])
            fprintf(m, "  # %s", r->comment);
        fputc('\n', m);
    }
    if (fclose(m) != 0 || !text) {
        free(text);
        snprintf(why, n, "out of memory");
        return 0;
    }
    char end[64];
    snprintf(end, sizeof end, "end %zu %016llx\n", l->n,
             (unsigned long long)attn__fnv1a(FNV_SEED, text, len));
    const void *parts[2] = {text, end};
    const size_t sizes[2] = {len, strlen(end)};
    errno = 0;
    const int ok = attn__write_atomic(dir, path, parts, sizes, 2);
    if (!ok)
        snprintf(why, n, "writing %s: %s", path, errno ? strerror(errno) : "failed");
    free(text);
    return ok;
}

/* Merges new rows into the database (replacing rows with the same key) and writes it. */
static int store_rows(attn_context *ctx, const row_list *add, char *path_out, size_t path_n,
                      char *why, size_t n)
{
    char *path = db_path(ctx);
    if (!path) {
        snprintf(why, n, "the context has no cache directory");
        return 0;
    }
    row_list all = {0};
    load_rows(ctx, path, 1, &all);
    int ok = 1;
    for (size_t i = 0; ok && i < add->n; ++i) {
        const tune_row *a = &add->rows[i];
        for (size_t j = 0; j < all.n; ++j) {
            const tune_row *o = &all.rows[j];
            if (!strcmp(o->backend, a->backend) && !strcmp(o->vendor, a->vendor) &&
                !strcmp(o->device, a->device) && !strcmp(o->driver, a->driver) &&
                o->kind == a->kind && o->head_dim == a->head_dim && o->dtype == a->dtype)
                all.rows[j--] = all.rows[--all.n];
        }
        ok = rows_push(&all, a);
    }
    ok = ok && write_db(ctx->cache_dir, path, &all, why, n);
    if (ok)
        attn__strlcpy(path_out, path, path_n);
    free(all.rows);
    free(path);
    return ok;
}

/* ---- the search ------------------------------------------------------------------------ */

#define MAX_CANDS 24
#define ROUNDS 3          /* timed runs per candidate at least, interleaved: the best counts */
#define MAX_ROUNDS 15     /* ... and at most, while a candidate has run for under TIMED_MS */
#define TIMED_MS 250.0
#define WIN_MARGIN 0.95   /* a winner's median time ratio to the built-in choice (noise) */
#define REF_ROWS 8        /* query rows of the built-in choice checked against the reference */

typedef struct tuner {
    attn_context *ctx;
    attn_tune_params prm;
    attn_tune_result res;
    double t0_ms;
    double compile_est_ms; /* the slowest compile so far: the estimate for the next */
    row_list rows;         /* the winners, to store */
} tuner;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static double left_ms(const tuner *t) { return t->prm.time_budget_s * 1e3 - (now_ms() - t->t0_ms); }

/* The representative problem's tensors: inputs in library buffers (and on the host for
 * the reference check), the built-in choice's output and a candidate's. */
typedef struct problem_io {
    attn_desc desc;
    attn_buffer *buf[4]; /* q, k, v, o */
    void *host[4];       /* q, k, v as stored; o as downloaded */
    size_t n[4];         /* elements */
    float *o_def, *o;
} problem_io;

static void io_free(problem_io *io)
{
    for (int i = 0; i < 4; ++i) {
        attn_buffer_destroy(io->buf[i]);
        free(io->host[i]);
    }
    free(io->o_def);
    free(io->o);
}

static attn_status io_setup(attn_context *ctx, problem_io *io)
{
    const attn_desc *d = &io->desc;
    const size_t es = attn__dtype_size(d->dtype);
    io->n[0] = (size_t)(d->batch * d->q_len * d->num_heads * d->head_dim);
    io->n[1] = (size_t)(d->batch * d->kv_len * d->num_kv_heads * d->head_dim);
    io->n[2] = (size_t)(d->batch * d->kv_len * d->num_kv_heads * d->v_head_dim);
    io->n[3] = (size_t)(d->batch * d->q_len * d->num_heads * d->v_head_dim);
    uint64_t seed = 0x9e3779b97f4a7c15ull * (uint64_t)(d->head_dim + 7 * d->dtype);
    attn_status st = ATTN_OK;
    for (int i = 0; i < 4 && st == ATTN_OK; ++i) {
        io->host[i] = malloc(io->n[i] * es);
        if (!io->host[i])
            return attn__fail(ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "tuning: test tensors");
        for (size_t e = 0; i < 3 && e < io->n[i]; ++e) {
            uint64_t z = (seed += 0x9e3779b97f4a7c15ull); /* splitmix64 */
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
            const float x = (float)((double)((z ^ (z >> 31)) >> 11) / 4503599627370496.0 - 1.0);
            if (d->dtype == ATTN_DTYPE_F16)
                ((uint16_t *)io->host[i])[e] = attn__float_to_half(x);
            else
                ((float *)io->host[i])[e] = x;
        }
        st = attn_buffer_create(ctx, io->n[i] * es, &io->buf[i]);
        if (st == ATTN_OK && i < 3)
            st = attn_buffer_upload(io->buf[i], 0, io->host[i], io->n[i] * es);
    }
    io->o_def = malloc(io->n[3] * sizeof(float));
    io->o = malloc(io->n[3] * sizeof(float));
    if (st == ATTN_OK && (!io->o_def || !io->o))
        st = attn__fail(ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "tuning: test tensors");
    return st;
}

static attn_run_args io_args(const problem_io *io)
{
    const attn_desc *d = &io->desc;
    attn_run_args a = ATTN_RUN_ARGS_INIT;
    a.q = attn_tensor_buffer(d->dtype, d->batch, d->q_len, d->num_heads, d->head_dim, io->buf[0], 0);
    a.k = attn_tensor_buffer(d->dtype, d->batch, d->kv_len, d->num_kv_heads, d->head_dim, io->buf[1], 0);
    a.v = attn_tensor_buffer(d->dtype, d->batch, d->kv_len, d->num_kv_heads, d->v_head_dim, io->buf[2], 0);
    a.o = attn_tensor_buffer(d->dtype, d->batch, d->q_len, d->num_heads, d->v_head_dim, io->buf[3], 0);
    return a;
}

static attn_status io_output(problem_io *io, float *dst)
{
    const int f16 = io->desc.dtype == ATTN_DTYPE_F16;
    attn_status st = attn_buffer_download(io->buf[3], 0, io->host[3], io->n[3] * (f16 ? 2 : 4));
    for (size_t e = 0; st == ATTN_OK && e < io->n[3]; ++e)
        dst[e] = f16 ? attn__half_to_float(((uint16_t *)io->host[3])[e]) : ((float *)io->host[3])[e];
    return st;
}

/* max |a - b| / (1 + |b|); infinity where either is NaN. */
static double max_err(const float *a, const float *b, size_t n)
{
    double w = 0.0;
    for (size_t i = 0; i < n; ++i) {
        const double e = fabs((double)a[i] - (double)b[i]) / (1.0 + fabs((double)b[i]));
        if (!(e <= w))
            w = e != e ? INFINITY : e;
    }
    return w;
}

/* The built-in choice's first query rows against the double-precision reference. */
static double reference_err(const problem_io *io)
{
    const attn_desc *d = &io->desc;
    const int64_t m = d->q_len < REF_ROWS ? d->q_len : REF_ROWS;
    attn__problem p = {.batch = 1, .num_heads = d->num_heads, .num_kv_heads = d->num_kv_heads,
                       .q_len = m, .kv_len = d->kv_len, .head_dim = d->head_dim,
                       .v_head_dim = d->v_head_dim, .dtype = d->dtype,
                       .scale = 1.0 / sqrt((double)d->head_dim)};
    const size_t no = (size_t)(m * d->num_heads * d->v_head_dim);
    float *ref = malloc(no * sizeof *ref);
    if (!ref)
        return INFINITY;
    attn__view q = {d->dtype, {1, m, d->num_heads, d->head_dim}, {0, 0, 0, 0}, io->host[0]};
    attn__view k = {d->dtype, {1, d->kv_len, d->num_kv_heads, d->head_dim}, {0, 0, 0, 0}, io->host[1]};
    attn__view v = {d->dtype, {1, d->kv_len, d->num_kv_heads, d->v_head_dim}, {0, 0, 0, 0}, io->host[2]};
    attn__view o = {ATTN_DTYPE_F32, {1, m, d->num_heads, d->v_head_dim}, {0, 0, 0, 0}, ref};
    attn__dense_strides(q.shape, q.stride);
    attn__dense_strides(k.shape, k.stride);
    attn__dense_strides(v.shape, v.stride);
    attn__dense_strides(o.shape, o.stride);
    attn__ref_attention(&p, &q, &k, &v, &o, NULL, NULL, NULL);
    const double e = max_err(io->o_def, ref, no);
    free(ref);
    return e;
}

typedef struct cand {
    attn__tune_vals v;      /* what the search asks the planner for (unset: built-in) */
    attn_plan *plan;
    double first_ms;
    int alive;              /* planned, ran and matched: timed in the rounds */
    double run_ms[MAX_ROUNDS]; /* per round; 0: not run */
} cand;

static void note_error(attn_tune_candidate *pc, attn_tune_outcome o, attn_status st, const char *what)
{
    const char *d = attn_last_detail();
    pc->outcome = o;
    snprintf(pc->note, sizeof pc->note, "%s: %s%s%.*s", what, attn_status_name(st), *d ? ": " : "",
             (int)strcspn(d, "\n"), d);
}

/* The median over the rounds both ran of a's time / b's. */
static double median_ratio(const cand *a, const cand *b)
{
    double q[MAX_ROUNDS];
    int n = 0;
    for (int r = 0; r < MAX_ROUNDS; ++r)
        if (a->run_ms[r] > 0.0 && b->run_ms[r] > 0.0) {
            int k = n++;
            for (; k > 0 && q[k - 1] > a->run_ms[r] / b->run_ms[r]; --k)
                q[k] = q[k - 1];
            q[k] = a->run_ms[r] / b->run_ms[r];
        }
    return !n ? 0.0 : n % 2 ? q[n / 2] : 0.5 * (q[n / 2 - 1] + q[n / 2]);
}

/* Plans a candidate through the planner, and runs it once against the built-in output
 * (ref; NULL for the built-in choice itself). */
static void try_candidate(tuner *t, problem_io *io, cand *c, attn_tune_candidate *pc, const float *ref)
{
    attn_stats s0 = {.struct_size = sizeof s0}, s1 = s0;
    attn_context_get_stats(t->ctx, &s0);
    search_vals = &c->v;
    double t0 = now_ms();
    attn_status st = attn_plan_create(t->ctx, &io->desc, &c->plan);
    pc->plan_ms = now_ms() - t0;
    search_vals = NULL;
    attn_context_get_stats(t->ctx, &s1);
    pc->compiled = s1.kernels_compiled > s0.kernels_compiled;
    if (st != ATTN_OK) {
        note_error(pc, ATTN_TUNE_FAILED, st, "plan");
        return;
    }
    if (ref && c->plan->info.tune_source != ATTN_TUNE_SEARCH) {
        pc->outcome = ATTN_TUNE_FAILED;
        snprintf(pc->note, sizeof pc->note, "the planner did not take these values");
        return;
    }
    /* The output starts as NaN, so a candidate that leaves rows unwritten cannot pass with
     * what an earlier one wrote. */
    const size_t ob = io->n[3] * attn__dtype_size(io->desc.dtype);
    memset(io->host[3], 0xff, ob);
    st = attn_buffer_upload(io->buf[3], 0, io->host[3], ob);
    attn_run_args a = io_args(io);
    t0 = now_ms();
    if (st == ATTN_OK)
        st = attn_plan_run(c->plan, &a);
    c->first_ms = now_ms() - t0;
    if (st == ATTN_OK)
        st = io_output(io, ref ? io->o : io->o_def);
    if (st != ATTN_OK) {
        note_error(pc, ATTN_TUNE_FAILED, st, "run");
        return;
    }
    const double tol = io->desc.dtype == ATTN_DTYPE_F16 ? 2e-3 : 1e-4;
    /* The built-in output against itself: infinite where it is not finite. */
    pc->max_err = max_err(ref ? io->o : io->o_def, ref ? ref : io->o_def, io->n[3]);
    if (!(pc->max_err <= tol)) {
        pc->outcome = ATTN_TUNE_REJECTED;
        snprintf(pc->note, sizeof pc->note, ref ? "output differs from the built-in choice's by %.3g (tolerance %g)"
                                                : "output not finite everywhere (%g; tolerance %g)",
                 pc->max_err, tol);
        return;
    }
    pc->outcome = ATTN_TUNE_TIMED;
    c->alive = 1;
    if (pc->plan_ms + c->first_ms > t->compile_est_ms)
        t->compile_est_ms = pc->plan_ms + c->first_ms;
}

/* The built-in choice of a plan, spelled out as row values. */
static void builtin_vals(const attn_plan *plan, attn__tune_kind kind, attn__tune_vals *v)
{
    vals_unset(v);
    if (kind == ATTN__TUNE_DECODE) {
        v->splits_per_cu = ATTN__DECODE_SPLITS_PER_CU(&plan->ctx->info);
    } else if (kind == ATTN__TUNE_GPU) {
        v->block_m = (int32_t)plan->spec.block_m;
        v->block_n = (int32_t)plan->spec.block_n;
    } else if (plan->ctx->ops->lang == ATTN__LANG_GLSL) {
        v->rows = (int32_t)(plan->spec.block_m / plan->spec.block_n);
        v->unroll_d = (int32_t)plan->spec.unroll_d;
        v->keys_per_lane = (int32_t)plan->spec.keys_per_lane;
    } else {
        v->vd_vec = (int32_t)plan->spec.vd_vec;
    }
}

/* The candidates of a kind on the backend's language; the caller drops the built-in one. */
static uint32_t candidate_list(attn__lang lang, attn__tune_kind kind, attn__tune_vals *out)
{
    static const int32_t vd[] = {16, 8, 4}, rows[] = {1, 2, 4}, kpl[] = {1, 2, 4}, bm[] = {32, 64, 128, 256},
                         bn[] = {8, 16, 32, 64}, splits[] = {1, 2, 4, 8, 16, 32, 64};
    uint32_t n = 0;
    for (size_t i = 0; kind == ATTN__TUNE_CPU && lang != ATTN__LANG_GLSL && i < 3; ++i) {
        vals_unset(&out[n]);
        out[n++].vd_vec = vd[i];
    }
    for (size_t i = 0; kind == ATTN__TUNE_CPU && lang == ATTN__LANG_GLSL && i < 6; ++i) {
        vals_unset(&out[n]);
        out[n].rows = rows[i / 2];
        out[n++].unroll_d = (int32_t)(i % 2);
    }
    /* Keys per lane on their own: the other values stay the planner's. */
    for (size_t i = 0; kind == ATTN__TUNE_CPU && lang == ATTN__LANG_GLSL && i < 3; ++i) {
        vals_unset(&out[n]);
        out[n++].keys_per_lane = kpl[i];
    }
    for (size_t i = 0; kind == ATTN__TUNE_GPU && i < 16; ++i) {
        vals_unset(&out[n]);
        out[n].block_m = bm[i / 4];
        out[n++].block_n = bn[i % 4];
    }
    for (size_t i = 0; kind == ATTN__TUNE_DECODE && i < 7; ++i) {
        vals_unset(&out[n]);
        out[n++].splits_per_cu = splits[i];
    }
    return n;
}

static void tune_group(tuner *t, int decode, int64_t d, attn_dtype dt)
{
    attn_tune_group g;
    cand c[MAX_CANDS];
    attn_tune_candidate pc[MAX_CANDS];
    problem_io io;
    memset(&g, 0, sizeof g);
    memset(c, 0, sizeof c);
    memset(pc, 0, sizeof pc);
    memset(&io, 0, sizeof io);
    g.decode = decode;
    g.head_dim = d;
    g.dtype = dt;
    g.winner = -1;
    g.candidates = pc;
    attn_desc desc = ATTN_DESC_INIT;
    desc.num_heads = decode ? 32 : t->prm.num_heads;
    desc.num_kv_heads = decode ? 8 : t->prm.num_heads;
    desc.q_len = decode ? 1 : t->prm.tokens;
    desc.kv_len = decode ? t->prm.decode_kv_len : t->prm.tokens;
    desc.head_dim = desc.v_head_dim = d;
    desc.dtype = dt;
    io.desc = desc;
    snprintf(g.problem, sizeof g.problem, "B1 H%lld/%lld q%lld kv%lld d%lld %s",
             (long long)desc.num_heads, (long long)desc.num_kv_heads, (long long)desc.q_len,
             (long long)desc.kv_len, (long long)d, dtype_word(dt));
    const double gflop = 4.0 * (double)(desc.num_heads * desc.q_len * desc.kv_len * d) / 1e9;
    const attn__lang lang = t->ctx->ops->lang;
    attn_status st;
    uint32_t n = 0; /* candidates listed so far */
    if (left_ms(t) <= 0) {
        snprintf(g.skipped, sizeof g.skipped, "time budget spent");
        goto done;
    }
    if ((st = io_setup(t->ctx, &io)) != ATTN_OK) {
        note_error(&pc[0], ATTN_TUNE_FAILED, st, "test tensors");
        snprintf(g.skipped, sizeof g.skipped, "%s", pc[0].note);
        goto done;
    }
    /* The built-in choice: its plan with every value unset, so no database row applies. */
    vals_unset(&c[0].v);
    pc[0].is_default = 1;
    n = 1;
    try_candidate(t, &io, &c[0], &pc[0], NULL);
    if (!c[0].alive) {
        snprintf(g.skipped, sizeof g.skipped, "the built-in choice failed: %.120s", pc[0].note);
        goto done;
    }
    g.family = c[0].plan->info.family;
    const attn__tune_kind kind = decode ? ATTN__TUNE_DECODE
                                 : g.family == ATTN_FAMILY_CPU ? ATTN__TUNE_CPU : ATTN__TUNE_GPU;
    if (decode && !c[0].plan->decode) {
        snprintf(g.skipped, sizeof g.skipped, "the planner does not use the decode kernel for this problem here");
        goto done;
    }
    attn__tune_vals def, list[MAX_CANDS];
    builtin_vals(c[0].plan, kind, &def);
    vals_text(&def, pc[0].values, sizeof pc[0].values);
    const double ref_err = reference_err(&io);
    if (!(ref_err <= (dt == ATTN_DTYPE_F16 ? 2e-3 : 1e-4))) {
        snprintf(g.skipped, sizeof g.skipped,
                 "the built-in choice differs from the reference by %.3g: not tuned", ref_err);
        goto done;
    }
    const uint32_t m = candidate_list(lang, kind, list);
    char why[160];
    for (uint32_t i = 0; i < m && n < MAX_CANDS; ++i) {
        if (!memcmp(&list[i], &def, sizeof def))
            continue;
        cand *ci = &c[n];
        attn_tune_candidate *p = &pc[n++];
        ci->v = list[i];
        vals_text(&ci->v, p->values, sizeof p->values);
        p->outcome = ATTN_TUNE_SKIPPED;
        if (!vals_valid(c[0].plan, kind, &ci->v, why, sizeof why)) {
            snprintf(p->note, sizeof p->note, "not valid here: %.140s", why);
            continue;
        }
        /* llvmpipe's compile time grows steeply with unrolled code; vals_valid already
         * refuses unrolling above 128 floats per row, so an unrolled candidate holds at most
         * 4 x 128 floats a lane (~4 s cold; plan.c). */
        if (left_ms(t) < t->compile_est_ms + (ROUNDS + 1) * c[0].first_ms) {
            snprintf(p->note, sizeof p->note, "time budget (%.1f s left)", left_ms(t) / 1e3);
            continue;
        }
        try_candidate(t, &io, ci, p, io.o_def);
        /* A candidate that leaves the planner's other values in place can come out as the
         * built-in choice itself. */
        attn__tune_vals got;
        if (ci->alive && (builtin_vals(ci->plan, kind, &got), !memcmp(&got, &def, sizeof got))) {
            ci->alive = 0;
            p->outcome = ATTN_TUNE_SKIPPED;
            snprintf(p->note, sizeof p->note, "the same values as the built-in choice");
            continue;
        }
        for (uint32_t j = 0; decode && ci->alive && j + 1 < n; ++j)
            if (c[j].alive && c[j].plan->num_splits == ci->plan->num_splits) {
                ci->alive = 0;
                p->outcome = ATTN_TUNE_SKIPPED;
                char same[sizeof p->note];
                snprintf(same, sizeof same, "the same %u splits as %.60s", ci->plan->num_splits,
                         pc[j].values);
                memcpy(p->note, same, sizeof same);
                break;
            }
    }
    /* Interleaved rounds, in alternating order, so that a burst of load on a shared machine
     * hits every candidate alike. A candidate's time is its best run; the choice goes by
     * its median ratio to the built-in choice's time in the same round. */
    const int rounds = c[0].first_ms * ROUNDS >= TIMED_MS ? ROUNDS
                       : c[0].first_ms * MAX_ROUNDS <= TIMED_MS ? MAX_ROUNDS
                                                                : (int)(TIMED_MS / c[0].first_ms) + 1;
    for (int r = 0; r < rounds; ++r) {
        double round_ms = 0.0;
        for (uint32_t i = 0; i < n; ++i)
            round_ms += c[i].alive ? (pc[i].ms > 0 ? pc[i].ms : c[i].first_ms) : 0.0;
        if (r > 0 && left_ms(t) < round_ms)
            break;
        for (uint32_t k = 0; k < n; ++k) {
            const uint32_t i = r % 2 ? n - 1 - k : k;
            if (!c[i].alive)
                continue;
            attn_run_args a = io_args(&io);
            const double t0 = now_ms();
            st = attn_plan_run(c[i].plan, &a);
            const double ms = now_ms() - t0;
            if (st != ATTN_OK) {
                note_error(&pc[i], ATTN_TUNE_FAILED, st, "run");
                c[i].alive = 0;
            } else {
                c[i].run_ms[r] = ms;
                if (pc[i].ms == 0.0 || ms < pc[i].ms)
                    pc[i].ms = ms;
            }
        }
    }
    int32_t w = c[0].alive ? 0 : -1;
    for (uint32_t i = 0; i < n; ++i) {
        if (!c[i].alive)
            continue;
        pc[i].gflops = gflop / (pc[i].ms / 1e3);
        pc[i].compile_ms = pc[i].plan_ms + (c[i].first_ms > pc[i].ms ? c[i].first_ms - pc[i].ms : 0.0);
        pc[i].vs_builtin = c[0].alive ? median_ratio(&c[i], &c[0]) : 0.0;
        /* Both statistics must agree: typical (paired median) and best run. */
        if (i > 0 && w >= 0 && pc[i].vs_builtin <= WIN_MARGIN && pc[i].vs_builtin > 0.0 &&
            pc[i].ms < pc[0].ms && (w == 0 || pc[i].vs_builtin < pc[w].vs_builtin))
            w = (int32_t)i;
    }
    if (w < 0) {
        snprintf(g.skipped, sizeof g.skipped, "the built-in choice failed in the timed runs: %.110s",
                 pc[0].note);
        goto done;
    }
    g.winner = w;
    tune_row row;
    memset(&row, 0, sizeof row);
    attn__strlcpy(row.backend, backend_word(t->ctx->info.backend), sizeof row.backend);
    attn__strlcpy(row.vendor, t->ctx->info.vendor, sizeof row.vendor);
    attn__strlcpy(row.device, t->ctx->info.name, sizeof row.device);
    attn__strlcpy(row.driver, t->ctx->info.driver_version, sizeof row.driver);
    row.kind = kind;
    row.head_dim = d;
    row.dtype = dt;
    row.v = w ? c[w].v : def;
    snprintf(row.comment, sizeof row.comment, "%.1f GFLOP/s, %.2fx the built-in %s (%.1f); %s",
             pc[w].gflops, w ? pc[w].vs_builtin : 1.0, pc[0].values, pc[0].gflops, g.problem);
    if (!rows_push(&t->rows, &row))
        snprintf(g.skipped, sizeof g.skipped, "out of memory");
done:
    g.num_candidates = n;
    for (uint32_t i = 0; i < n; ++i) {
        attn_plan_destroy(c[i].plan);
        if (g.skipped[0] && !i)
            continue;
        t->res.candidates_timed += pc[i].outcome == ATTN_TUNE_TIMED;
        t->res.candidates_rejected += pc[i].outcome == ATTN_TUNE_REJECTED;
        t->res.candidates_failed += pc[i].outcome == ATTN_TUNE_FAILED;
        t->res.candidates_skipped += pc[i].outcome == ATTN_TUNE_SKIPPED;
    }
    if (g.skipped[0])
        t->res.groups_skipped++;
    else
        t->res.groups_tuned++;
    io_free(&io);
    if (t->prm.report)
        t->prm.report(t->prm.report_user, &g);
}

attn_status attn_context_tune(attn_context *ctx, const attn_tune_params *params,
                              attn_tune_result *result)
{
    if (!ctx)
        return attn__fail_thread(ATTN_ERROR_NULL_POINTER, "attn_context_tune: ctx is NULL");
    if (result && ATTN__BAD_STRUCT_SIZE(result, attn_tune_result))
        return attn__fail(ctx, ATTN_ERROR_STRUCT_SIZE, "attn_tune_result.struct_size is %zu; expected %zu",
                          result->struct_size, sizeof(attn_tune_result));
    tuner t;
    memset(&t, 0, sizeof t);
    t.ctx = ctx;
    const attn_tune_params defaults = ATTN_TUNE_PARAMS_INIT;
    t.prm = defaults;
    if (params) {
        if (ATTN__BAD_STRUCT_SIZE(params, attn_tune_params))
            return attn__fail(ctx, ATTN_ERROR_STRUCT_SIZE,
                              "attn_tune_params.struct_size is %zu; expected %zu (use ATTN_TUNE_PARAMS_INIT)",
                              params->struct_size, sizeof(attn_tune_params));
        t.prm = *params;
    }
    attn_tune_params *p = &t.prm;
    const uint32_t all_dtypes = (1u << ATTN_DTYPE_F32) | (1u << ATTN_DTYPE_F16);
    p->head_dims = p->head_dims ? p->head_dims : 0x1f;
    p->dtypes = p->dtypes ? p->dtypes : all_dtypes;
    p->num_heads = p->num_heads ? p->num_heads : 8;
    p->tokens = p->tokens ? p->tokens : 1024;
    p->decode_kv_len = p->decode_kv_len ? p->decode_kv_len : 4096;
    p->time_budget_s = p->time_budget_s != 0.0 ? p->time_budget_s : 300.0;
    if ((p->head_dims & ~0x1fu) || (p->dtypes & ~all_dtypes) || p->num_heads < 1 ||
        p->num_heads > 256 || p->tokens < 1 || p->tokens > (1 << 20) || p->decode_kv_len < 1 ||
        p->decode_kv_len > (1 << 24) || !(p->time_budget_s > 0.0))
        return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                          "attn_tune_params: head_dims within 0x1f, dtypes F32/F16 bits, 1..256 "
                          "heads, 1..2^20 tokens, decode_kv_len 1..2^24 and a positive time "
                          "budget expected");
    if (ctx->ops->lang == ATTN__LANG_NONE)
        return attn__fail(ctx, ATTN_ERROR_UNSUPPORTED,
                          "the reference backend has no tiles to tune");
    t.t0_ms = now_ms();
    t.res.struct_size = sizeof t.res;
    for (int decode = 0; decode <= (p->decode != 0); ++decode)
        for (attn_dtype dt = ATTN_DTYPE_F32; dt <= ATTN_DTYPE_F16; ++dt)
            for (int i = 0; i < 5; ++i)
                if ((p->dtypes & (1u << dt)) && (p->head_dims & (1u << i)))
                    tune_group(&t, decode, (int64_t)16 << i, dt);
    attn_status st = ATTN_OK;
    if (!p->store)
        snprintf(t.res.store_note, sizeof t.res.store_note, "not stored (store = 0)");
    else if (!t.rows.n)
        snprintf(t.res.store_note, sizeof t.res.store_note, "nothing to store: no group was tuned");
    else if (store_rows(ctx, &t.rows, t.res.db_path, sizeof t.res.db_path, t.res.store_note,
                        sizeof t.res.store_note))
        t.res.rows_stored = (uint32_t)t.rows.n;
    else
        st = attn__fail(ctx, ATTN_ERROR_UNSUPPORTED, "tuning database not written: %s",
                        t.res.store_note);
    free(t.rows.rows);
    t.res.seconds = (now_ms() - t.t0_ms) / 1e3;
    if (result) {
        const size_t keep = result->struct_size;
        memcpy(result, &t.res, sizeof t.res);
        result->struct_size = keep;
    }
    return st;
}
