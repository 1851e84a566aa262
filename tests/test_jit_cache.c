/* test_jit_cache.c — the persistent JIT cache: a second context loads what the first
 * compiled (same results, nothing compiled), and truncated, corrupted, foreign or
 * mismatched cache files are ignored and rebuilt, never trusted; concurrent writers never
 * leave half a file. OpenCL program binaries; Vulkan SPIR-V and VkPipelineCache data. */
#define _DEFAULT_SOURCE
#include <attn/attn.h>
#include <check.h>
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/jit_cache.h"
#include "test_util.h"

static char dir[64];   /* the test's root; each test case caches in its own subfolder */

static int backend_present(attn_backend backend)
{
    uint32_t n = 0;
    return attn_device_count(backend, &n) == ATTN_OK && n > 0;
}

/* What the library logged about its Vulkan cache during one context's life. */
typedef struct log_counts {
    int glslang;          /* modules compiled by glslang */
    int spirv_hits;       /* modules loaded from disk */
    int foreign_pipeline; /* pipeline-cache data refused before reaching the driver */
    int pipeline_loaded;  /* pipeline-cache data handed to the driver */
} log_counts;

static void count_log(void *user, attn_log_level level, const char *m)
{
    log_counts *c = user;
    (void)level;
    if (strstr(m, "Vulkan: ") && strstr(m, ": glslang "))
        c->glslang++;
    if (strstr(m, "SPIR-V from the disk cache"))
        c->spirv_hits++;
    if (strstr(m, "pipeline cache on disk is for another device"))
        c->foreign_pipeline++;
    if (strstr(m, "pipeline cache loaded"))
        c->pipeline_loaded++;
}

#define Q_LEN 40
#define KV_LEN 50
#define HEADS 2
static float q[Q_LEN * HEADS * 64], k[KV_LEN * HEADS * 64];

static attn_desc problem(int64_t head_dim)
{
    attn_desc d = ATTN_DESC_INIT;
    d.num_heads = HEADS, d.q_len = Q_LEN, d.kv_len = KV_LEN, d.head_dim = head_dim;
    d.causal = 1;
    return d;
}

static attn_run_args run_args(int64_t head_dim, float *out)
{
    tu_fill_uniform(q, sizeof q / 4, 1);
    tu_fill_uniform(k, sizeof k / 4, 2);
    attn_run_args a = ATTN_RUN_ARGS_INIT;
    a.q = attn_tensor_host(ATTN_DTYPE_F32, 1, Q_LEN, HEADS, head_dim, q);
    a.k = attn_tensor_host(ATTN_DTYPE_F32, 1, KV_LEN, HEADS, head_dim, k);
    a.v = a.k;
    a.o = attn_tensor_host(ATTN_DTYPE_F32, 1, Q_LEN, HEADS, head_dim, out);
    return a;
}

/* One context on `backend` with its cache in `cache`, one plan, one run: ATTN_OK and its
 * stats, or the failing status with the detail in msg. No Check asserts: the child
 * processes of the concurrency test use it too. */
static attn_status try_run(attn_backend backend, const char *cache, int64_t head_dim,
                           float *out, log_counts *logs, attn_stats *st, char *msg, size_t msz)
{
    attn_context_params p = ATTN_CONTEXT_PARAMS_INIT;
    p.backend = backend;
    p.cache_dir = cache;
    if (logs) {
        memset(logs, 0, sizeof *logs);
        p.log_fn = count_log;
        p.log_user = logs;
        p.log_level = ATTN_LOG_DEBUG;
    }
    attn_context *ctx = NULL;
    attn_status s = attn_context_create(&p, &ctx);
    if (s != ATTN_OK) {
        snprintf(msg, msz, "context: %s", attn_last_detail());
        return s;
    }
    attn_desc d = problem(head_dim);
    attn_plan *plan = NULL;
    s = attn_plan_create(ctx, &d, &plan);
    if (s == ATTN_OK) {
        attn_run_args a = run_args(head_dim, out);
        s = attn_plan_run(plan, &a);
    }
    if (s != ATTN_OK)
        snprintf(msg, msz, "%s", attn_context_detail(ctx));
    memset(st, 0, sizeof *st);
    st->struct_size = sizeof *st;
    attn_context_get_stats(ctx, st);
    attn_context_destroy(ctx);
    return s;
}

static attn_stats run_on(attn_backend backend, const char *cache, int64_t head_dim, float *out,
                         log_counts *logs)
{
    attn_stats st;
    char msg[1024];
    attn_status s = try_run(backend, cache, head_dim, out, logs, &st, msg, sizeof msg);
    ck_assert_msg(s == ATTN_OK, "%s: %s", attn_status_name(s), msg);
    return st;
}

static attn_stats run_once(const char *cache, int64_t head_dim, float *out)
{
    return run_on(ATTN_BACKEND_OPENCL, cache, head_dim, out, NULL);
}

/* The output against the double-precision reference (DESIGN.md §7). */
static void check_reference(int64_t head_dim, const float *out)
{
    static float ref[Q_LEN * HEADS * 64];
    attn_desc d = problem(head_dim);
    attn_run_args a = run_args(head_dim, ref);
    char msg[512];
    ck_assert_msg(tu_reference_run(&d, &a, msg, sizeof msg) == ATTN_OK, "%s", msg);
    tu_compare_result r;
    int ok = tu_compare(out, ref, (size_t)(Q_LEN * HEADS * head_dim), TU_TOL_F32, &r);
    tu_compare_describe(&r, msg, sizeof msg);
    ck_assert_msg(ok, "against the reference: %s", msg);
}

/* Cache files in `where` whose names start with `prefix` (temporary files included when
 * the prefix matches them), sorted so that runs list them in the same order. */
static int cache_files(const char *where, const char *prefix, char names[][600], int max)
{
    int n = 0;
    DIR *dp = opendir(where);
    if (!dp)
        return 0;
    struct dirent *e;
    while ((e = readdir(dp)))
        if (e->d_name[0] != '.' && !strncmp(e->d_name, prefix, strlen(prefix)) && n < max)
            snprintf(names[n++], 600, "%s/%s", where, e->d_name);
    closedir(dp);
    qsort(names, (size_t)n, sizeof names[0], (int (*)(const void *, const void *))strcmp);
    return n;
}

static int tmp_files(const char *where)
{
    char names[64][600];
    int n = cache_files(where, "", names, 64), tmp = 0;
    for (int i = 0; i < n; ++i)
        tmp += strstr(names[i], ".tmp.") != NULL;
    return tmp;
}

static long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

/* A cache file whole and with its checksum: its payload (malloc'ed), or NULL. */
static void *file_payload(const char *path, size_t *bytes, char **key)
{
    char *kk = NULL;
    void *data = NULL;
    if (!attn__jit_cache_read(path, &kk, &data, bytes))
        return NULL;
    if (key)
        *key = kk;
    else
        free(kk);
    return data;
}

static void rewrite(const char *path, long keep, long flip_at, const char *replace)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    static char buf[1 << 22];
    long n = (long)fread(buf, 1, sizeof buf, f);
    fclose(f);
    if (flip_at >= 0)
        buf[flip_at] ^= 0x5a;
    f = fopen(path, "wb");
    if (replace)
        fputs(replace, f);
    else
        fwrite(buf, 1, (size_t)(keep >= 0 && keep < n ? keep : n), f);
    fclose(f);
}

static void subdir(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", dir, name);
}

START_TEST(test_cache_roundtrip_and_damage)
{
    if (!backend_present(ATTN_BACKEND_OPENCL)) {
        printf("jit_cache: no OpenCL device; nothing to cache\n");
        return;
    }
    char cl[128];
    subdir(cl, sizeof cl, "opencl");
    static float o1[Q_LEN * HEADS * 64], o2[Q_LEN * HEADS * 64];
    char names[4][600], mine[600];
    double t0 = tu_now();
    attn_stats s = run_once(cl, 64, o1);
    double cold = tu_now() - t0;
    ck_assert_uint_eq(s.kernels_compiled, 1);
    ck_assert_uint_eq(s.disk_cache_hits, 0);
    check_reference(64, o1);
    ck_assert_int_eq(cache_files(cl, "", names, 4), 1);
    snprintf(mine, sizeof mine, "%s", names[0]);
    const long full = file_size(mine);
    ck_assert_int_gt(full, 64);

    t0 = tu_now();
    s = run_once(cl, 64, o2);
    double warm = tu_now() - t0;
    ck_assert_uint_eq(s.kernels_compiled, 0);
    ck_assert_uint_eq(s.disk_cache_hits, 1);
    ck_assert(memcmp(o1, o2, sizeof o1) == 0);
    printf("jit_cache: OpenCL context + plan + run cold %.0f ms, warm %.0f ms\n", cold * 1e3,
           warm * 1e3);

    /* Truncated: rebuilt and rewritten whole. (Not necessarily at the same size: PoCL's
     * binary also carries what its own kernel cache held at the time.) */
    rewrite(mine, full / 2, -1, NULL);
    s = run_once(cl, 64, o2);
    ck_assert_uint_eq(s.kernels_compiled, 1);
    size_t bytes = 0;
    void *payload = file_payload(mine, &bytes, NULL);
    ck_assert_ptr_nonnull(payload);
    free(payload);
    ck_assert(memcmp(o1, o2, sizeof o1) == 0);
    s = run_once(cl, 64, o2);
    ck_assert_uint_eq(s.disk_cache_hits, 1);

    /* One flipped byte in the payload (checksum), and one in the header. */
    rewrite(mine, -1, file_size(mine) - 10, NULL);
    s = run_once(cl, 64, o2);
    ck_assert_uint_eq(s.kernels_compiled, 1);
    rewrite(mine, -1, 9, NULL);
    s = run_once(cl, 64, o2);
    ck_assert_uint_eq(s.kernels_compiled, 1);
    ck_assert(memcmp(o1, o2, sizeof o1) == 0);

    /* A foreign file under the same name. */
    rewrite(mine, -1, -1, "not a cache file at all");
    s = run_once(cl, 64, o2);
    ck_assert_uint_eq(s.kernels_compiled, 1);
    ck_assert_uint_eq(s.disk_cache_hits, 0);

    /* Another plan's (valid) file under this name: its key differs, so it is not used. */
    static float o3[Q_LEN * HEADS * 32];
    s = run_once(cl, 32, o3);
    ck_assert_uint_eq(s.kernels_compiled, 1);
    ck_assert_int_eq(cache_files(cl, "", names, 4), 2);
    const char *other = strcmp(names[0], mine) ? names[0] : names[1];
    char cmd[1300];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", other, mine);
    ck_assert_int_eq(system(cmd), 0);
    s = run_once(cl, 64, o2);
    ck_assert_uint_eq(s.kernels_compiled, 1);
    ck_assert(memcmp(o1, o2, sizeof o1) == 0);
    s = run_once(cl, 64, o2);
    ck_assert_uint_eq(s.disk_cache_hits, 1);

    /* cache_dir "" turns the disk cache off. */
    char empty_dir[160];
    snprintf(empty_dir, sizeof empty_dir, "%s/off", cl);
    setenv("ATTN_CACHE_DIR", empty_dir, 1);
    s = run_once("", 64, o2);
    ck_assert_uint_eq(s.disk_cache_hits, 0);
    ck_assert_int_ne(access(empty_dir, F_OK), 0);
    unsetenv("ATTN_CACHE_DIR");
}
END_TEST

/* ---- Vulkan ------------------------------------------------------------------------------
 * Files "vulkan-spirv-*" (one per module glslang made) and one "vulkan-pipelines-*" per
 * device. The number of modules a plan needs is the planner's business; the tests count
 * the files the first run wrote and expect exactly that many hits afterwards. */

static float vk_out[Q_LEN * HEADS * 64];

/* A fresh cache in subfolder `name`, filled by one cold run (checked against the
 * reference); returns the number of SPIR-V files, and the pipeline file in pipes. */
static int vk_fill(char *cache, size_t size, const char *name, char pipes[600])
{
    subdir(cache, size, name);
    log_counts lg;
    attn_stats s = run_on(ATTN_BACKEND_VULKAN, cache, 64, vk_out, &lg);
    check_reference(64, vk_out);
    char names[16][600];
    int n = cache_files(cache, "vulkan-spirv-", names, 16);
    ck_assert_int_ge(n, 1);
    ck_assert_int_eq(lg.glslang, n);
    ck_assert_int_eq(lg.spirv_hits, 0);
    ck_assert_uint_eq(s.disk_cache_hits, 0);
    ck_assert_int_eq(cache_files(cache, "vulkan-pipelines-", names, 16), 1);
    snprintf(pipes, 600, "%s", names[0]);
    ck_assert_int_eq(tmp_files(cache), 0);
    return n;
}

/* One more run on the cache: same output as the cold run, and how it went. */
static log_counts vk_rerun(const char *cache, attn_stats *st)
{
    static float o[Q_LEN * HEADS * 64];
    log_counts lg;
    *st = run_on(ATTN_BACKEND_VULKAN, cache, 64, o, &lg);
    ck_assert(memcmp(o, vk_out, sizeof o) == 0);
    return lg;
}

START_TEST(test_vulkan_roundtrip)
{
    if (!backend_present(ATTN_BACKEND_VULKAN)) {
        printf("jit_cache: no Vulkan device; nothing to cache\n");
        return;
    }
    char cache[128], pipes[600];
    double t0 = tu_now();
    const int n = vk_fill(cache, sizeof cache, "vulkan", pipes);
    double cold = tu_now() - t0;
    size_t pbytes = 0;
    void *pdata = file_payload(pipes, &pbytes, NULL);
    ck_assert_ptr_nonnull(pdata);
    ck_assert_uint_ge(pbytes, 32); /* at least VkPipelineCacheHeaderVersionOne */
    free(pdata);

    /* A second context in the same folder: every module from disk, glslang never runs,
     * the pipeline-cache data reaches the driver, nothing is rewritten. */
    attn_stats s;
    t0 = tu_now();
    log_counts lg = vk_rerun(cache, &s);
    double warm = tu_now() - t0;
    ck_assert_uint_eq(s.disk_cache_hits, (uint64_t)n);
    ck_assert_int_eq(lg.spirv_hits, n);
    ck_assert_int_eq(lg.glslang, 0);
    ck_assert_int_eq(lg.pipeline_loaded, 1);
    ck_assert_int_eq(lg.foreign_pipeline, 0);
    printf("jit_cache: Vulkan context + plan + run cold %.0f ms, warm %.0f ms (%d modules)\n",
           cold * 1e3, warm * 1e3, n);

    /* cache_dir "" (or ATTN_CACHE_DIR set empty) turns the disk cache off. */
    char off[160];
    snprintf(off, sizeof off, "%s/off", cache);
    setenv("ATTN_CACHE_DIR", off, 1);
    log_counts lo;
    static float o[Q_LEN * HEADS * 64];
    s = run_on(ATTN_BACKEND_VULKAN, "", 64, o, &lo);
    ck_assert_uint_eq(s.disk_cache_hits, 0);
    ck_assert_int_eq(lo.glslang, n);
    ck_assert_int_ne(access(off, F_OK), 0);
    setenv("ATTN_CACHE_DIR", "", 1);
    s = run_on(ATTN_BACKEND_VULKAN, NULL, 64, o, &lo);
    ck_assert_uint_eq(s.disk_cache_hits, 0);
    ck_assert_int_eq(lo.glslang, n);
    unsetenv("ATTN_CACHE_DIR");
    ck_assert(memcmp(o, vk_out, sizeof o) == 0);
}
END_TEST

/* Damage to one SPIR-V file: exactly that module is compiled again, the rest load, the
 * result does not change, and the file is whole again afterwards. */
static void vk_expect_rebuilt(const char *cache, int n, const char *what)
{
    attn_stats s;
    log_counts lg = vk_rerun(cache, &s);
    ck_assert_msg(lg.glslang == 1 && lg.spirv_hits == n - 1,
                  "%s: %d compiled, %d loaded of %d", what, lg.glslang, lg.spirv_hits, n);
    ck_assert_uint_eq(s.disk_cache_hits, (uint64_t)(n - 1));
    lg = vk_rerun(cache, &s);
    ck_assert_msg(lg.glslang == 0 && lg.spirv_hits == n, "%s: not rewritten", what);
}

START_TEST(test_vulkan_damaged_spirv)
{
    if (!backend_present(ATTN_BACKEND_VULKAN)) {
        printf("jit_cache: no Vulkan device; nothing to cache\n");
        return;
    }
    char cache[128], pipes[600], names[16][600], f[600];
    const int n = vk_fill(cache, sizeof cache, "vulkan-spirv", pipes);
    ck_assert_int_eq(cache_files(cache, "vulkan-spirv-", names, 16), n);
    memcpy(f, names[0], sizeof f); /* names is listed again below */
    const long full = file_size(f);

    rewrite(f, full / 2, -1, NULL);
    vk_expect_rebuilt(cache, n, "truncated");
    rewrite(f, 3, -1, NULL);
    vk_expect_rebuilt(cache, n, "truncated to 3 bytes");
    rewrite(f, -1, full - 17, NULL);
    vk_expect_rebuilt(cache, n, "flipped byte in the SPIR-V");
    rewrite(f, -1, 9, NULL);
    vk_expect_rebuilt(cache, n, "flipped byte in the header");
    rewrite(f, -1, 50, NULL);
    vk_expect_rebuilt(cache, n, "flipped byte in the key");
    rewrite(f, -1, -1, "not a cache file at all");
    vk_expect_rebuilt(cache, n, "foreign file");

    /* A whole file with the right key and checksum whose payload is not SPIR-V. */
    size_t bytes = 0;
    char *key = NULL;
    void *spv = file_payload(f, &bytes, &key);
    ck_assert_ptr_nonnull(spv);
    memset(spv, 0x42, bytes);
    ck_assert(attn__jit_cache_store(cache, "vulkan-spirv", key, spv, bytes));
    ck_assert_int_eq(file_size(f), full);
    vk_expect_rebuilt(cache, n, "not SPIR-V");

    /* Another key's (valid) file under this name: another kernel, another device or
     * another glslang. Made here from this file with one define changed in its key. */
    char *other = strdup(key);
    char *def = strstr(other, "#define HEAD_DIM ");
    ck_assert_ptr_nonnull(def);
    def[strlen("#define HEAD_DIM ")] ^= 1;
    ck_assert(attn__jit_cache_store(cache, "vulkan-spirv", other, spv, bytes));
    char cmd[2000], otherfile[600];
    int m = cache_files(cache, "vulkan-spirv-", names, 16);
    ck_assert_int_eq(m, n + 1);
    for (int i = 0; i < m; ++i) {
        char *kk = NULL;
        size_t b = 0;
        void *p = file_payload(names[i], &b, &kk);
        if (p && !strcmp(kk, other))
            memcpy(otherfile, names[i], sizeof otherfile);
        free(p);
        free(kk);
    }
    snprintf(cmd, sizeof cmd, "mv '%s' '%s'", otherfile, f);
    ck_assert_int_eq(system(cmd), 0);
    vk_expect_rebuilt(cache, n, "another key's file");
    free(other);
    free(key);
    free(spv);

    /* Every module's file at once. */
    m = cache_files(cache, "vulkan-spirv-", names, 16);
    ck_assert_int_eq(m, n);
    for (int i = 0; i < m; ++i)
        rewrite(names[i], file_size(names[i]) - 1, -1, NULL);
    attn_stats s;
    log_counts lg = vk_rerun(cache, &s);
    ck_assert_int_eq(lg.glslang, n);
    ck_assert_uint_eq(s.disk_cache_hits, 0);
    ck_assert_int_eq(tmp_files(cache), 0);
}
END_TEST

/* After damage to the pipeline-cache file: the run is right, the driver never got the
 * data when `foreign` (a whole file with a wrong Vulkan header), and the file is whole
 * again with this device's header. */
static void vk_expect_pipeline_rebuilt(const char *cache, const char *pipes,
                                       const unsigned char *header, int foreign,
                                       const char *what)
{
    attn_stats s;
    log_counts lg = vk_rerun(cache, &s);
    ck_assert_msg(lg.pipeline_loaded == 0, "%s: handed to the driver", what);
    ck_assert_msg(lg.foreign_pipeline >= foreign, "%s: not refused", what);
    size_t bytes = 0;
    unsigned char *data = file_payload(pipes, &bytes, NULL);
    ck_assert_msg(data && bytes >= 32 && !memcmp(data, header, 32), "%s: not rewritten", what);
    free(data);
    lg = vk_rerun(cache, &s);
    ck_assert_msg(lg.pipeline_loaded == 1 && lg.foreign_pipeline == 0, "%s: not reloaded", what);
}

START_TEST(test_vulkan_damaged_pipeline_cache)
{
    if (!backend_present(ATTN_BACKEND_VULKAN)) {
        printf("jit_cache: no Vulkan device; nothing to cache\n");
        return;
    }
    char cache[128], pipes[600];
    vk_fill(cache, sizeof cache, "vulkan-pipelines", pipes);
    size_t bytes = 0;
    char *key = NULL;
    unsigned char *data = file_payload(pipes, &bytes, &key);
    ck_assert_ptr_nonnull(data);
    unsigned char header[32];
    memcpy(header, data, sizeof header);
    const long full = file_size(pipes);

    rewrite(pipes, full - 1, -1, NULL);
    vk_expect_pipeline_rebuilt(cache, pipes, header, 0, "truncated");
    rewrite(pipes, -1, full - 5, NULL);
    vk_expect_pipeline_rebuilt(cache, pipes, header, 0, "flipped byte");
    rewrite(pipes, -1, -1, "not a cache file at all");
    vk_expect_pipeline_rebuilt(cache, pipes, header, 0, "foreign file");

    /* Whole files (right key, right checksum) whose VkPipelineCacheHeaderVersionOne says
     * another vendor, device, UUID, header version or an impossible header size. */
    const struct {
        size_t at;
        const char *what;
    } fields[] = {{0, "headerSize"}, {4, "headerVersion"}, {8, "vendorID"},
                  {12, "deviceID"}, {16, "pipelineCacheUUID"}, {31, "pipelineCacheUUID end"}};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; ++i) {
        unsigned char *bad = malloc(bytes);
        memcpy(bad, data, bytes);
        bad[fields[i].at] ^= 0x10;
        ck_assert(attn__jit_cache_store(cache, "vulkan-pipelines", key, bad, bytes));
        free(bad);
        vk_expect_pipeline_rebuilt(cache, pipes, header, 1, fields[i].what);
    }
    /* Shorter than the header. */
    ck_assert(attn__jit_cache_store(cache, "vulkan-pipelines", key, data, 16));
    vk_expect_pipeline_rebuilt(cache, pipes, header, 1, "16 bytes");
    free(key);
    free(data);
    ck_assert_int_eq(tmp_files(cache), 0);
}
END_TEST

/* ---- concurrent writers -------------------------------------------------------------- */

#define STORE_BYTES (256 * 1024)
#define STORERS 4

typedef struct store_job {
    const char *cache;
    int id;
    int stored, loaded, bad;
    volatile int *stop;
} store_job;

/* Stores its own payload (every byte = its id) again and again under one shared key. */
static void *storer(void *arg)
{
    store_job *j = arg;
    unsigned char *p = malloc(STORE_BYTES);
    memset(p, j->id, STORE_BYTES);
    for (int i = 0; i < 40; ++i)
        j->stored += attn__jit_cache_store(j->cache, "race", "one key", p, STORE_BYTES);
    free(p);
    return NULL;
}

/* Loads while the others store: whatever it gets must be one writer's whole payload. */
static void *loader(void *arg)
{
    store_job *j = arg;
    while (!*j->stop) {
        void *data = NULL;
        size_t bytes = 0;
        if (!attn__jit_cache_load(j->cache, "race", "one key", &data, &bytes))
            continue;
        const unsigned char *b = data;
        int ok = bytes == STORE_BYTES && b[0] >= 1 && b[0] <= STORERS;
        for (size_t i = 1; ok && i < bytes; ++i)
            ok = b[i] == b[0];
        j->loaded++;
        j->bad += !ok;
        free(data);
    }
    return NULL;
}

START_TEST(test_concurrent_stores_threads)
{
    char cache[128];
    subdir(cache, sizeof cache, "race");
    /* Static: should an assert below leave early, running threads still point at them. */
    static volatile int stop;
    static store_job jobs[STORERS + 1];
    static pthread_t th[STORERS + 1];
    stop = 0;
    for (int i = 0; i <= STORERS; ++i) {
        jobs[i] = (store_job){.cache = cache, .id = i, .stop = &stop};
        if (i)
            ck_assert_int_eq(pthread_create(&th[i], NULL, storer, &jobs[i]), 0);
    }
    ck_assert_int_eq(pthread_create(&th[0], NULL, loader, &jobs[0]), 0);
    /* Every thread joined before the counts are asserted. */
    for (int i = 1; i <= STORERS; ++i)
        pthread_join(th[i], NULL);
    stop = 1;
    pthread_join(th[0], NULL);
    for (int i = 1; i <= STORERS; ++i)
        ck_assert_msg(jobs[i].stored == 40, "thread %d: %d of 40 stores", i, jobs[i].stored);
    ck_assert_int_eq(jobs[0].bad, 0);
    printf("jit_cache: %d stores from %d threads, %d loads in between, none torn\n",
           40 * STORERS, STORERS, jobs[0].loaded);
    ck_assert_int_eq(tmp_files(cache), 0);
    char names[4][600];
    ck_assert_int_eq(cache_files(cache, "", names, 4), 1);
}
END_TEST

/* Child processes (this executable with --child) fill one Vulkan cache at once, starting
 * their plans at the same instant: every file left is whole, none is temporary, and a
 * later context loads everything. */
START_TEST(test_concurrent_stores_processes)
{
    if (!backend_present(ATTN_BACKEND_VULKAN)) {
        printf("jit_cache: no Vulkan device; nothing to cache\n");
        return;
    }
    char cache[128];
    subdir(cache, sizeof cache, "vulkan-race");
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    char start[32];
    snprintf(start, sizeof start, "%.3f", (double)now.tv_sec + now.tv_nsec * 1e-9 + 1.0);
    enum { CHILDREN = 3 };
    pid_t pids[CHILDREN];
    for (int i = 0; i < CHILDREN; ++i) {
        pids[i] = fork();
        ck_assert_int_ge(pids[i], 0);
        if (pids[i] == 0) {
            execl("/proc/self/exe", "test_jit_cache", "--child", cache, start, (char *)NULL);
            _exit(127);
        }
    }
    for (int i = 0; i < CHILDREN; ++i) {
        int status = 0;
        ck_assert_int_eq(waitpid(pids[i], &status, 0), pids[i]);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d: status %d", i,
                      status);
    }
    ck_assert_int_eq(tmp_files(cache), 0);
    char names[32][600];
    int n = cache_files(cache, "", names, 32);
    ck_assert_int_ge(n, 2);
    for (int i = 0; i < n; ++i) {
        size_t bytes = 0;
        void *p = file_payload(names[i], &bytes, NULL);
        ck_assert_msg(p != NULL, "%s is not a whole cache file", names[i]);
        free(p);
    }
    static float o[Q_LEN * HEADS * 64];
    log_counts lg;
    attn_stats s = run_on(ATTN_BACKEND_VULKAN, cache, 64, o, &lg);
    ck_assert_int_eq(lg.glslang, 0);
    ck_assert_int_eq(lg.spirv_hits, n - 1);
    ck_assert_int_eq(lg.pipeline_loaded, 1);
    ck_assert_uint_eq(s.disk_cache_hits, (uint64_t)(n - 1));
    check_reference(64, o);
}
END_TEST

/* --child <cache> <start>: a context, then at wall-clock time `start` a plan and a run. */
static int child_main(const char *cache, const char *start)
{
    attn_context_params p = ATTN_CONTEXT_PARAMS_INIT;
    p.backend = ATTN_BACKEND_VULKAN;
    attn_context *warmup = NULL;
    if (attn_context_create(&p, &warmup) != ATTN_OK)
        return 2;
    attn_context_destroy(warmup); /* the driver is loaded: the runs below start together */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    double wait = atof(start) - ((double)now.tv_sec + now.tv_nsec * 1e-9);
    if (wait > 0 && wait < 10)
        usleep((useconds_t)(wait * 1e6));
    static float o[Q_LEN * HEADS * 64];
    attn_stats st;
    char msg[1024];
    attn_status s = try_run(ATTN_BACKEND_VULKAN, cache, 64, o, NULL, &st, msg, sizeof msg);
    if (s != ATTN_OK)
        fprintf(stderr, "child: %s: %s\n", attn_status_name(s), msg);
    return s == ATTN_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "--child"))
        return child_main(argv[2], argv[3]);
    snprintf(dir, sizeof dir, "/tmp/attn-jit-test-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    Suite *su = suite_create("jit_cache");
    TCase *tc = tcase_create("jit_cache");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_cache_roundtrip_and_damage);
    tcase_add_test(tc, test_vulkan_roundtrip);
    tcase_add_test(tc, test_vulkan_damaged_spirv);
    tcase_add_test(tc, test_vulkan_damaged_pipeline_cache);
    tcase_add_test(tc, test_concurrent_stores_threads);
    tcase_add_test(tc, test_concurrent_stores_processes);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    tu_release();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return failed ? 1 : 0;
}
