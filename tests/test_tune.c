/* test_tune.c — the tuning database and the autotuner: rows are looked up user overlay ->
 * device (with driver, then any driver) -> vendor -> built-in; rows that do not fit the
 * device, malformed lines and damaged databases are ignored; a small tuning run on a real
 * device writes rows that the next plans use, and their results stay exact. */
#define _DEFAULT_SOURCE
#include <attn/attn.h>
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/jit_cache.h"
#include "test_util.h"

static char root[64]; /* the suite's temporary folder */

/* One kernel family on one backend, with three distinct valid row values for d=64, what
 * the plan info shows for each, and one value the device must refuse. */
typedef struct fam_case {
    attn_backend backend;
    attn_kernel_family family;
    const char *word;   /* family in rows */
    const char *vals[3];
    uint32_t expect[3];
    const char *invalid, *invalid_why;
} fam_case;

static const fam_case cases[] = {
    {ATTN_BACKEND_OPENCL, ATTN_FAMILY_CPU, "cpu", {"vd_vec=4", "vd_vec=8", "vd_vec=16"}, {4, 8, 16},
     "vd_vec=5", "not 4, 8 or 16"},
    {ATTN_BACKEND_OPENCL, ATTN_FAMILY_GPU, "gpu",
     {"block_m=16 block_n=8", "block_m=32 block_n=8", "block_m=128 block_n=16"}, {16, 32, 128},
     "block_m=8192", "max work-group size"},
    {ATTN_BACKEND_VULKAN, ATTN_FAMILY_CPU, "cpu",
     {"rows=1 unroll_d=0", "rows=2 unroll_d=0", "rows=4 unroll_d=0"}, {1, 2, 4}, "rows=3",
     "not 1, 2 or 4"},
    /* llvmpipe: 32 KiB of shared memory, 64 keys of 129 + 64 floats need 49 KiB. */
    {ATTN_BACKEND_VULKAN, ATTN_FAMILY_GPU, "gpu",
     {"block_m=16 block_n=8", "block_m=32 block_n=8", "block_m=128 block_n=16"}, {16, 32, 128},
     "block_m=32 block_n=64", "local memory"},
};

static uint32_t observe(const fam_case *c, const attn_plan_info *i)
{
    if (c->family == ATTN_FAMILY_GPU)
        return i->block_m;
    return c->backend == ATTN_BACKEND_OPENCL ? i->vec_width : i->block_m / i->block_n;
}

static int present(attn_backend b)
{
    uint32_t n = 0;
    return attn_device_count(b, &n) == ATTN_OK && n > 0;
}

/* Debug log lines mentioning the tuning database. */
static char logbuf[16384];
static void log_fn(void *user, attn_log_level level, const char *m)
{
    (void)user;
    (void)level;
    if (strstr(m, "tuning:") && strlen(logbuf) + strlen(m) + 2 < sizeof logbuf) {
        strcat(logbuf, m);
        strcat(logbuf, "\n");
    }
}

static attn_context *make_ctx(attn_backend b, attn_kernel_family fam, const char *cache)
{
    attn_context_params p = ATTN_CONTEXT_PARAMS_INIT;
    p.backend = b;
    p.kernel_family = fam;
    p.cache_dir = cache;
    p.log_fn = log_fn;
    p.log_level = ATTN_LOG_DEBUG;
    attn_context *ctx = NULL;
    attn_status s = attn_context_create(&p, &ctx);
    ck_assert_msg(s == ATTN_OK, "context: %s", attn_last_detail());
    return ctx;
}

static void subdir(char *dst, size_t n, const char *name)
{
    snprintf(dst, n, "%s/%s", root, name);
    ck_assert(mkdir(dst, 0700) == 0);
}

/* "backend "vendor" "device" "driver" family d dtype values\n", strings quoted. */
static void add_row(char *text, size_t n, const char *backend, const char *vendor,
                    const char *device, const char *driver, const char *family, int d,
                    const char *dtype, const char *vals)
{
    const char *s[3] = {vendor, device, driver};
    size_t k = strlen(text);
    k += (size_t)snprintf(text + k, n - k, "%s", backend);
    for (int i = 0; i < 3; i++) {
        k += (size_t)snprintf(text + k, n - k, " \"");
        for (const char *p = s[i]; *p && k + 3 < n; p++) {
            if (*p == '"' || *p == '\\')
                text[k++] = '\\';
            text[k++] = *p;
        }
        k += (size_t)snprintf(text + k, n - k, "\"");
    }
    snprintf(text + k, n - k, " %s %d %s %s\n", family, d, dtype, vals);
}

static const char *bword(attn_backend b) { return b == ATTN_BACKEND_OPENCL ? "opencl" : "vulkan"; }

/* A database the way the library writes one: header, rows, "end <rows> <checksum>". The
 * checksum is FNV-1a (the JIT cache's) over every byte before the end line. */
static void write_db(const char *dir, const char *rows)
{
    char path[256], text[16384];
    snprintf(path, sizeof path, "%s/tuning.txt", dir);
    snprintf(text, sizeof text, "attn-tune 1\n# test rows\n%s", rows);
    unsigned n = 0;
    for (const char *p = rows; *p; p = strchr(p, '\n') + 1)
        n += *p != '#' && *p != '\n';
    FILE *f = fopen(path, "w");
    ck_assert(f);
    fprintf(f, "%send %u %016llx\n", text, n,
            (unsigned long long)attn__fnv1a(0xcbf29ce484222325ull, text, strlen(text)));
    ck_assert(fclose(f) == 0);
}

static void write_file(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "w");
    ck_assert(f);
    ck_assert(fwrite(text, 1, len, f) == len);
    ck_assert(fclose(f) == 0);
}

/* A plan of d=64 f32 (q 40, kv 50), its info, and its output against the reference. */
static attn_plan_info plan_and_check(attn_context *ctx, int64_t d, int64_t q_len, int64_t heads,
                                     int64_t kv_heads, int64_t kv_len)
{
    attn_desc desc = ATTN_DESC_INIT;
    desc.num_heads = heads, desc.num_kv_heads = kv_heads, desc.q_len = q_len;
    desc.kv_len = kv_len, desc.head_dim = d;
    size_t nq = (size_t)(q_len * heads * d), nk = (size_t)(kv_len * kv_heads * d);
    float *q = malloc(nq * 4), *k = malloc(nk * 4), *v = malloc(nk * 4), *o = malloc(nq * 4),
          *r = malloc(nq * 4);
    tu_fill_uniform(q, nq, 1);
    tu_fill_uniform(k, nk, 2);
    tu_fill_uniform(v, nk, 3);
    attn_run_args a = ATTN_RUN_ARGS_INIT;
    a.q = attn_tensor_host(ATTN_DTYPE_F32, 1, q_len, heads, d, q);
    a.k = attn_tensor_host(ATTN_DTYPE_F32, 1, kv_len, kv_heads, d, k);
    a.v = attn_tensor_host(ATTN_DTYPE_F32, 1, kv_len, kv_heads, d, v);
    a.o = attn_tensor_host(ATTN_DTYPE_F32, 1, q_len, heads, d, o);
    attn_plan *plan = NULL;
    attn_status s = attn_plan_create(ctx, &desc, &plan);
    ck_assert_msg(s == ATTN_OK, "plan: %s", attn_context_detail(ctx));
    attn_plan_info info = {.struct_size = sizeof info};
    ck_assert(attn_plan_get_info(plan, &info) == ATTN_OK);
    s = attn_plan_run(plan, &a);
    ck_assert_msg(s == ATTN_OK, "run: %s", attn_context_detail(ctx));
    char msg[512];
    a.o.data = r;
    ck_assert_msg(tu_reference_run(&desc, &a, msg, sizeof msg) == ATTN_OK, "%s", msg);
    tu_compare_result res;
    int ok = tu_compare(o, r, nq, TU_TOL_F32, &res);
    tu_compare_describe(&res, msg, sizeof msg);
    ck_assert_msg(ok, "tuned plan (%s) against the reference: %s", info.kernel, msg);
    attn_plan_destroy(plan);
    free(q), free(k), free(v), free(o), free(r);
    return info;
}

static attn_plan_info plan64(attn_context *ctx) { return plan_and_check(ctx, 64, 40, 2, 2, 50); }

static void expect(const fam_case *c, attn_plan_info i, attn_tune_source src, uint32_t value,
                   const char *what)
{
    ck_assert_msg(i.tune_source == (uint32_t)src && observe(c, &i) == value,
                  "%s %s: %s: source %u value %u; expected source %u value %u\nlog:\n%s",
                  bword(c->backend), c->word, what, i.tune_source, observe(c, &i), (unsigned)src,
                  value, logbuf);
}

START_TEST(test_lookup_order)
{
    const fam_case *c = &cases[_i];
    if (!present(c->backend)) {
        printf("lookup order %s %s: skipped, no device\n", bword(c->backend), c->word);
        return;
    }
    char dir[128], name[32], overlay[192];
    snprintf(name, sizeof name, "order%d", _i);
    subdir(dir, sizeof dir, name);
    attn_context *ctx = make_ctx(c->backend, c->family, dir);
    attn_device_info dev = {.struct_size = sizeof dev};
    ck_assert(attn_context_device_info(ctx, &dev) == ATTN_OK);
    const char *b = bword(c->backend);
    const attn_plan_info first = plan64(ctx);
    const uint32_t builtin = observe(c, &first);
    logbuf[0] = '\0';
    expect(c, plan64(ctx), ATTN_TUNE_DEFAULT, builtin, "no database");

    /* Rows for other devices, classes and dtypes never apply. */
    char rows[8192] = "";
    add_row(rows, sizeof rows, b, dev.vendor, "another device", dev.driver_version, c->word, 64,
            "f32", c->vals[1]);
    add_row(rows, sizeof rows, b, "another vendor", "*", "*", c->word, 64, "f32", c->vals[1]);
    add_row(rows, sizeof rows, b, dev.vendor, dev.name, dev.driver_version, c->word, 128, "f32",
            c->vals[1]);
    add_row(rows, sizeof rows, b, dev.vendor, dev.name, dev.driver_version, c->word, 64, "f16",
            c->vals[1]);
    add_row(rows, sizeof rows, b, dev.vendor, dev.name, "another driver", c->word, 64, "f32",
            c->vals[1]);
    write_db(dir, rows);
    expect(c, plan64(ctx), ATTN_TUNE_DEFAULT, builtin, "rows for others only");

    add_row(rows, sizeof rows, b, dev.vendor, "*", "*", c->word, 64, "f32", c->vals[0]);
    write_db(dir, rows);
    expect(c, plan64(ctx), ATTN_TUNE_VENDOR, c->expect[0], "vendor row");

    add_row(rows, sizeof rows, b, dev.vendor, dev.name, "*", c->word, 64, "f32", c->vals[1]);
    write_db(dir, rows);
    expect(c, plan64(ctx), ATTN_TUNE_DEVICE, c->expect[1], "device row beats vendor row");

    /* Written before the any-driver row: specificity, not the order of lines, decides. */
    char exact[1024] = "";
    add_row(exact, sizeof exact, b, dev.vendor, dev.name, dev.driver_version, c->word, 64, "f32",
            c->vals[2]);
    memmove(rows + strlen(exact), rows, strlen(rows) + 1);
    memcpy(rows, exact, strlen(exact));
    write_db(dir, rows);
    expect(c, plan64(ctx), ATTN_TUNE_DEVICE, c->expect[2], "device+driver row beats device row");

    char ov[1024] = "";
    add_row(ov, sizeof ov, b, "*", "*", "*", c->word, 64, "f32", c->vals[0]);
    snprintf(overlay, sizeof overlay, "%s/overlay.txt", dir);
    write_file(overlay, ov, strlen(ov));
    setenv("ATTN_TUNE_FILE", overlay, 1);
    expect(c, plan64(ctx), ATTN_TUNE_OVERLAY, c->expect[0], "overlay beats the database");
    setenv("ATTN_TUNE", "0", 1);
    expect(c, plan64(ctx), ATTN_TUNE_DEFAULT, builtin, "ATTN_TUNE=0");
    unsetenv("ATTN_TUNE");
    unsetenv("ATTN_TUNE_FILE");
    attn_context_destroy(ctx);
}
END_TEST

START_TEST(test_invalid_rows_ignored)
{
    const fam_case *c = &cases[_i];
    if (!present(c->backend)) {
        printf("invalid rows %s %s: skipped, no device\n", bword(c->backend), c->word);
        return;
    }
    char dir[128], name[32], overlay[192];
    snprintf(name, sizeof name, "invalid%d", _i);
    subdir(dir, sizeof dir, name);
    attn_context *ctx = make_ctx(c->backend, c->family, dir);
    attn_device_info dev = {.struct_size = sizeof dev};
    ck_assert(attn_context_device_info(ctx, &dev) == ATTN_OK);
    const char *b = bword(c->backend);
    char rows[8192] = "";
    add_row(rows, sizeof rows, b, dev.vendor, "*", "*", c->word, 64, "f32", c->vals[1]);
    add_row(rows, sizeof rows, b, dev.vendor, dev.name, dev.driver_version, c->word, 64, "f32",
            c->invalid);
    write_db(dir, rows);
    logbuf[0] = '\0';
    expect(c, plan64(ctx), ATTN_TUNE_VENDOR, c->expect[1], "an invalid device row is skipped");
    ck_assert_msg(strstr(logbuf, "ignored") && strstr(logbuf, c->invalid_why),
                  "the log says why the row was ignored:\n%s", logbuf);

    /* The overlay: malformed lines, a value of another family, a value the device cannot
     * take; none is trusted, the database row still applies. */
    char ov[4096] = "garbage line\n\"unterminated\n";
    add_row(ov, sizeof ov, b, "*", "*", "*", c->word, 64, "f32", "unknown_name=3");
    add_row(ov, sizeof ov, b, "*", "*", "*", c->word, 64, "f32", "splits_per_cu=4");
    add_row(ov, sizeof ov, b, "*", "*", "*", c->word, 64, "f32", c->invalid);
    add_row(ov, sizeof ov, b, "*", "*", "*", c->word, 48, "f32", c->vals[0]);
    add_row(ov, sizeof ov, b, "*", "*", "*", c->word, 64, "bf16", c->vals[0]);
    snprintf(overlay, sizeof overlay, "%s/overlay.txt", dir);
    write_file(overlay, ov, strlen(ov));
    setenv("ATTN_TUNE_FILE", overlay, 1);
    logbuf[0] = '\0';
    expect(c, plan64(ctx), ATTN_TUNE_VENDOR, c->expect[1], "nothing usable in the overlay");
    ck_assert_msg(strstr(logbuf, "does not apply"), "log:\n%s", logbuf);
    /* One good line after the bad ones is used: an overlay is read line by line. */
    add_row(ov, sizeof ov, b, "*", "*", "*", c->word, 64, "f32", c->vals[0]);
    write_file(overlay, ov, strlen(ov));
    expect(c, plan64(ctx), ATTN_TUNE_OVERLAY, c->expect[0], "a good overlay line after bad ones");
    unsetenv("ATTN_TUNE_FILE");
    attn_context_destroy(ctx);
}
END_TEST

/* keys_per_lane on the Vulkan CPU family: a row that sets it applies (the result checked
 * against the reference) and a value the shader has no variant for is ignored. d=128:
 * O's loops unrolled, 4 keys a lane built in. */
START_TEST(test_keys_per_lane_rows)
{
    if (!present(ATTN_BACKEND_VULKAN)) {
        printf("keys_per_lane: skipped, no Vulkan device\n");
        return;
    }
    char dir[128], overlay[192];
    subdir(dir, sizeof dir, "kpl");
    attn_context *ctx = make_ctx(ATTN_BACKEND_VULKAN, ATTN_FAMILY_CPU, dir);
    attn_plan_info i = plan_and_check(ctx, 128, 40, 2, 2, 70);
    ck_assert_uint_eq(i.tune_source, ATTN_TUNE_DEFAULT);
    char ov[1024] = "";
    add_row(ov, sizeof ov, "vulkan", "*", "*", "*", "cpu", 128, "f32", "keys_per_lane=3");
    snprintf(overlay, sizeof overlay, "%s/overlay.txt", dir);
    write_file(overlay, ov, strlen(ov));
    setenv("ATTN_TUNE_FILE", overlay, 1);
    logbuf[0] = '\0';
    i = plan_and_check(ctx, 128, 40, 2, 2, 70);
    ck_assert_msg(i.tune_source == ATTN_TUNE_DEFAULT && strstr(logbuf, "keys_per_lane 3"),
                  "keys_per_lane=3 is ignored, saying why; log:\n%s", logbuf);
    add_row(ov, sizeof ov, "vulkan", "*", "*", "*", "cpu", 128, "f32", "keys_per_lane=1");
    write_file(overlay, ov, strlen(ov));
    i = plan_and_check(ctx, 128, 40, 2, 2, 70);
    ck_assert_uint_eq(i.tune_source, ATTN_TUNE_OVERLAY);
    unsetenv("ATTN_TUNE_FILE");
    attn_context_destroy(ctx);
}
END_TEST

START_TEST(test_damaged_db_ignored)
{
    const fam_case *c = present(ATTN_BACKEND_OPENCL) ? &cases[0] : &cases[2];
    char dir[128], path[192];
    subdir(dir, sizeof dir, "damaged");
    snprintf(path, sizeof path, "%s/tuning.txt", dir);
    attn_context *ctx = make_ctx(c->backend, c->family, dir);
    attn_device_info dev = {.struct_size = sizeof dev};
    ck_assert(attn_context_device_info(ctx, &dev) == ATTN_OK);
    const attn_plan_info first = plan64(ctx);
    const uint32_t builtin = observe(c, &first);
    char rows[4096] = "";
    add_row(rows, sizeof rows, bword(c->backend), dev.vendor, dev.name, dev.driver_version,
            c->word, 64, "f32", c->vals[0]);
    write_db(dir, rows);
    expect(c, plan64(ctx), ATTN_TUNE_DEVICE, c->expect[0], "an intact database");

    size_t len = 0;
    char *good = NULL;
    {
        FILE *f = fopen(path, "rb");
        ck_assert(f);
        good = calloc(1, 65536);
        len = fread(good, 1, 65535, f);
        fclose(f);
    }
    char *bad = malloc(len + 64);
    char *row = strstr(good, c->vals[0]);
    ck_assert(row);
    const size_t at = (size_t)(row - good) + strlen(c->vals[0]) - 1;
    struct {
        const char *what;
        size_t cut;     /* bytes kept */
        long flip;      /* byte changed, or -1 */
        const char *text; /* replaces the file (cut bytes of it) */
    } damage[] = {
        {"a value edited (checksum)", len, (long)at, NULL},
        {"truncated: no end line", (size_t)(strstr(good, "end ") - good), -1, NULL},
        {"truncated inside a row", (size_t)(row - good) + 3, -1, NULL},
        {"no header", 33, -1, "# nothing\nend 0 cbf29ce484222325\n"},
        {"empty", 0, -1, ""},
        {"binary", 10, -1, "\x7f" "ELF\x02\x01\x01\0\0\0"},
    };
    for (size_t i = 0; i < sizeof damage / sizeof damage[0]; i++) {
        size_t n = damage[i].cut;
        memcpy(bad, damage[i].text ? damage[i].text : good, n);
        if (damage[i].flip >= 0)
            bad[damage[i].flip] = bad[damage[i].flip] == '4' ? '8' : '4';
        write_file(path, bad, n);
        logbuf[0] = '\0';
        expect(c, plan64(ctx), ATTN_TUNE_DEFAULT, builtin, damage[i].what);
    }
    /* A row count that disagrees with the rows. */
    char *end = strstr(good, "end 1 ");
    ck_assert(end);
    end[4] = '2';
    write_file(path, good, len);
    expect(c, plan64(ctx), ATTN_TUNE_DEFAULT, builtin, "row count mismatch");
    free(good);
    free(bad);
    attn_context_destroy(ctx);
}
END_TEST

typedef struct seen {
    int groups, tuned, rejected;
    char winners[4][64];
    int decode[4];
} seen;

static void on_group(void *user, const attn_tune_group *g)
{
    seen *s = user;
    printf("  tune group %s%s: %s\n", g->decode ? "decode " : "", g->problem,
           g->skipped[0] ? g->skipped : "tuned");
    for (uint32_t i = 0; i < g->num_candidates; i++) {
        const attn_tune_candidate *c = &g->candidates[i];
        printf("    %-22s outcome %d  %8.3f ms %7.2f GFLOP/s  compile %6.0f ms  err %.1e %s%s\n",
               c->values, (int)c->outcome, c->ms, c->gflops, c->compile_ms, c->max_err,
               (int32_t)i == g->winner ? "chosen " : "", c->note);
        s->rejected += c->outcome == ATTN_TUNE_REJECTED;
    }
    if (s->groups < 4 && g->winner >= 0) {
        snprintf(s->winners[s->groups], sizeof s->winners[0], "%s", g->candidates[g->winner].values);
        s->decode[s->groups] = g->decode;
        s->tuned++;
    }
    s->groups++;
}

START_TEST(test_tune_run_writes_rows)
{
    const attn_backend b = present(ATTN_BACKEND_OPENCL) ? ATTN_BACKEND_OPENCL : ATTN_BACKEND_VULKAN;
    char dir[128], path[192];
    subdir(dir, sizeof dir, "run");
    snprintf(path, sizeof path, "%s/tuning.txt", dir);
    /* A damaged database is replaced; a valid row of another device survives the merge. */
    write_file(path, "attn-tune 1\nsomething\n", 22);
    attn_context *ctx = make_ctx(b, ATTN_FAMILY_AUTO, dir);

    attn_tune_params tp = ATTN_TUNE_PARAMS_INIT;
    tp.head_dims = 1u << 1; /* head dims up to 32 */
    tp.dtypes = 1u << ATTN_DTYPE_F32;
    tp.num_heads = 2;
    tp.tokens = 192;
    tp.decode_kv_len = 1024;
    tp.time_budget_s = 120;
    seen s;
    memset(&s, 0, sizeof s);
    tp.report = on_group;
    tp.report_user = &s;
    attn_tune_result r = {.struct_size = sizeof r};
    attn_status st = attn_context_tune(ctx, &tp, &r);
    ck_assert_msg(st == ATTN_OK, "tune: %s", attn_context_detail(ctx));
    ck_assert_msg(r.groups_tuned == 2 && s.tuned == 2 && r.rows_stored == 2 && s.rejected == 0,
                  "tuned %u (seen %d), stored %u, rejected %d: %s", r.groups_tuned, s.tuned,
                  r.rows_stored, s.rejected, r.store_note);
    ck_assert_str_eq(r.db_path, path);
    attn_context_destroy(ctx);

    /* A second tuning run of another class keeps the first run's rows. */
    ctx = make_ctx(b, ATTN_FAMILY_AUTO, dir);
    tp.head_dims = 1u << 0;
    tp.decode = 0;
    tp.report = NULL;
    st = attn_context_tune(ctx, &tp, &r);
    ck_assert_msg(st == ATTN_OK && r.rows_stored == 1, "second run: %s", attn_context_detail(ctx));
    attn_context_destroy(ctx);

    /* A fresh context plans with the rows: prefill d=32 (a length no tile divides) and
     * decode, both tuned and exact against the reference. */
    ctx = make_ctx(b, ATTN_FAMILY_AUTO, dir);
    logbuf[0] = '\0';
    attn_plan_info pi = plan_and_check(ctx, 32, 77, 2, 2, 93);
    ck_assert_msg(pi.tune_source == ATTN_TUNE_DEVICE, "prefill source %u\n%s", pi.tune_source, logbuf);
    ck_assert_msg(strstr(logbuf, s.winners[0]), "the winner %s is what the plan used:\n%s",
                  s.winners[0], logbuf);
    attn_plan_info di = plan_and_check(ctx, 32, 1, 8, 2, 1000);
    ck_assert_msg(di.tune_source == ATTN_TUNE_DEVICE && strstr(di.kernel, "decode"),
                  "decode source %u kernel %s\n%s", di.tune_source, di.kernel, logbuf);
    ck_assert_msg(strstr(logbuf, s.winners[1]), "the decode winner %s:\n%s", s.winners[1], logbuf);
    /* d=64 was not tuned: the built-in choice. */
    pi = plan_and_check(ctx, 64, 20, 2, 2, 20);
    ck_assert_uint_eq(pi.tune_source, ATTN_TUNE_DEFAULT);
    attn_context_destroy(ctx);
}
END_TEST

START_TEST(test_tune_budget_and_arguments)
{
    const attn_backend b = present(ATTN_BACKEND_OPENCL) ? ATTN_BACKEND_OPENCL : ATTN_BACKEND_VULKAN;
    char dir[128];
    subdir(dir, sizeof dir, "budget");
    attn_context *ctx = make_ctx(b, ATTN_FAMILY_AUTO, dir);
    attn_tune_params tp = ATTN_TUNE_PARAMS_INIT;
    tp.time_budget_s = 1e-9; /* spent before the first group */
    seen s;
    memset(&s, 0, sizeof s);
    tp.report = on_group;
    tp.report_user = &s;
    attn_tune_result r = {.struct_size = sizeof r};
    ck_assert(attn_context_tune(ctx, &tp, &r) == ATTN_OK);
    ck_assert_msg(r.groups_tuned == 0 && r.groups_skipped == 20 && s.groups == 20 &&
                      r.rows_stored == 0 && r.store_note[0],
                  "tuned %u skipped %u reported %d stored %u", r.groups_tuned, r.groups_skipped,
                  s.groups, r.rows_stored);

    attn_tune_params bad = tp;
    bad.struct_size = 8;
    ck_assert_int_eq(attn_context_tune(ctx, &bad, NULL), ATTN_ERROR_STRUCT_SIZE);
    bad = tp;
    bad.tokens = -5;
    ck_assert_int_eq(attn_context_tune(ctx, &bad, NULL), ATTN_ERROR_INVALID_ARGUMENT);
    bad = tp;
    bad.head_dims = 1u << 7;
    ck_assert_int_eq(attn_context_tune(ctx, &bad, NULL), ATTN_ERROR_INVALID_ARGUMENT);
    ck_assert_int_eq(attn_context_tune(NULL, &tp, NULL), ATTN_ERROR_NULL_POINTER);
    attn_context_destroy(ctx);

    attn_context_params rp = ATTN_CONTEXT_PARAMS_INIT;
    rp.backend = ATTN_BACKEND_REFERENCE;
    ck_assert(attn_context_create(&rp, &ctx) == ATTN_OK);
    ck_assert_int_eq(attn_context_tune(ctx, NULL, NULL), ATTN_ERROR_UNSUPPORTED);
    attn_context_destroy(ctx);
}
END_TEST

int main(void)
{
    if (!present(ATTN_BACKEND_OPENCL) && !present(ATTN_BACKEND_VULKAN)) {
        printf("tune: no OpenCL or Vulkan device; skipped\n");
        return 77;
    }
    unsetenv("ATTN_TUNE_FILE");
    unsetenv("ATTN_TUNE");
    snprintf(root, sizeof root, "/tmp/attn-tune-test-XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    Suite *su = suite_create("tune");
    TCase *tc = tcase_create("tune");
    tcase_set_timeout(tc, 600);
    const int n = (int)(sizeof cases / sizeof cases[0]);
    tcase_add_loop_test(tc, test_lookup_order, 0, n);
    tcase_add_loop_test(tc, test_invalid_rows_ignored, 0, n);
    tcase_add_test(tc, test_keys_per_lane_rows);
    tcase_add_test(tc, test_damaged_db_ignored);
    tcase_add_test(tc, test_tune_run_writes_rows);
    tcase_add_test(tc, test_tune_budget_and_arguments);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    tu_release();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    return failed ? 1 : 0;
}
