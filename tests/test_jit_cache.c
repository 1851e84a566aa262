/* test_jit_cache.c — the persistent JIT cache: a second context loads what the first
 * compiled (same results, nothing compiled), and truncated, corrupted, foreign or
 * mismatched cache files are ignored and rebuilt, never trusted. */
#define _DEFAULT_SOURCE
#include <attn/attn.h>
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_util.h"

static char dir[64];

static int opencl_present(void)
{
    uint32_t n = 0;
    return attn_device_count(ATTN_BACKEND_OPENCL, &n) == ATTN_OK && n > 0;
}

/* Creates a context on the cache dir, runs one plan, returns its stats; out gets O. */
static attn_stats run_once(const char *cache, int64_t head_dim, float *out)
{
    attn_context_params p = ATTN_CONTEXT_PARAMS_INIT;
    p.backend = ATTN_BACKEND_OPENCL;
    p.cache_dir = cache;
    attn_context *ctx = NULL;
    ck_assert_msg(attn_context_create(&p, &ctx) == ATTN_OK, "%s", attn_last_detail());
    attn_desc d = ATTN_DESC_INIT;
    d.num_heads = 2, d.q_len = 40, d.kv_len = 50, d.head_dim = head_dim, d.causal = 1;
    attn_plan *plan = NULL;
    ck_assert_msg(attn_plan_create(ctx, &d, &plan) == ATTN_OK, "%s", attn_last_detail());
    static float q[40 * 2 * 64], k[50 * 2 * 64];
    tu_fill_uniform(q, sizeof q / 4, 1);
    tu_fill_uniform(k, sizeof k / 4, 2);
    attn_run_args a = ATTN_RUN_ARGS_INIT;
    a.q = attn_tensor_host(ATTN_DTYPE_F32, 1, 40, 2, head_dim, q);
    a.k = attn_tensor_host(ATTN_DTYPE_F32, 1, 50, 2, head_dim, k);
    a.v = a.k;
    a.o = attn_tensor_host(ATTN_DTYPE_F32, 1, 40, 2, head_dim, out);
    ck_assert_int_eq(attn_plan_run(plan, &a), ATTN_OK);
    attn_stats st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    attn_context_get_stats(ctx, &st);
    attn_context_destroy(ctx);
    return st;
}

/* The single cache file in dir (the test uses one plan shape per step). */
static int cache_files(char names[][600], int max)
{
    int n = 0;
    DIR *dp = opendir(dir);
    if (!dp)
        return 0;
    struct dirent *e;
    while ((e = readdir(dp)))
        if (e->d_name[0] != '.' && n < max)
            snprintf(names[n++], 600, "%s/%s", dir, e->d_name);
    closedir(dp);
    return n;
}

static long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
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

START_TEST(test_cache_roundtrip_and_damage)
{
    if (!opencl_present()) {
        printf("jit_cache: no OpenCL device; nothing to cache\n");
        return;
    }
    static float o1[40 * 2 * 64], o2[40 * 2 * 64];
    char names[4][600];
    double t0 = tu_now();
    attn_stats s = run_once(dir, 64, o1);
    double cold = tu_now() - t0;
    ck_assert_uint_eq(s.kernels_compiled, 1);
    ck_assert_uint_eq(s.disk_cache_hits, 0);
    ck_assert_int_eq(cache_files(names, 4), 1);
    const long full = file_size(names[0]);
    ck_assert_int_gt(full, 64);

    t0 = tu_now();
    s = run_once(dir, 64, o2);
    double warm = tu_now() - t0;
    ck_assert_uint_eq(s.kernels_compiled, 0);
    ck_assert_uint_eq(s.disk_cache_hits, 1);
    ck_assert(memcmp(o1, o2, sizeof o1) == 0);
    printf("jit_cache: context + plan + run cold %.0f ms, warm %.0f ms\n", cold * 1e3, warm * 1e3);

    /* Truncated: rebuilt and rewritten whole. */
    rewrite(names[0], full / 2, -1, NULL);
    s = run_once(dir, 64, o2);
    ck_assert_uint_eq(s.kernels_compiled, 1);
    ck_assert_int_eq(file_size(names[0]), full);
    ck_assert(memcmp(o1, o2, sizeof o1) == 0);

    /* One flipped byte in the payload (checksum), and one in the header. */
    rewrite(names[0], -1, full - 10, NULL);
    s = run_once(dir, 64, o2);
    ck_assert_uint_eq(s.kernels_compiled, 1);
    rewrite(names[0], -1, 9, NULL);
    s = run_once(dir, 64, o2);
    ck_assert_uint_eq(s.kernels_compiled, 1);
    ck_assert(memcmp(o1, o2, sizeof o1) == 0);

    /* A foreign file under the same name. */
    rewrite(names[0], -1, -1, "not a cache file at all");
    s = run_once(dir, 64, o2);
    ck_assert_uint_eq(s.kernels_compiled, 1);
    ck_assert_uint_eq(s.disk_cache_hits, 0);

    /* Another plan's (valid) file under this name: its key differs, so it is not used. */
    static float o3[40 * 2 * 32];
    s = run_once(dir, 32, o3);
    ck_assert_uint_eq(s.kernels_compiled, 1);
    ck_assert_int_eq(cache_files(names, 4), 2);
    const char *other = file_size(names[0]) == full ? names[1] : names[0];
    const char *mine = other == names[0] ? names[1] : names[0];
    char cmd[1300];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", other, mine);
    ck_assert_int_eq(system(cmd), 0);
    s = run_once(dir, 64, o2);
    ck_assert_uint_eq(s.kernels_compiled, 1);
    ck_assert(memcmp(o1, o2, sizeof o1) == 0);
    s = run_once(dir, 64, o2);
    ck_assert_uint_eq(s.disk_cache_hits, 1);

    /* cache_dir "" turns the disk cache off. */
    char empty_dir[128];
    snprintf(empty_dir, sizeof empty_dir, "%s/off", dir);
    setenv("ATTN_CACHE_DIR", empty_dir, 1);
    s = run_once("", 64, o2);
    ck_assert_uint_eq(s.disk_cache_hits, 0);
    ck_assert_int_ne(access(empty_dir, F_OK), 0);
    unsetenv("ATTN_CACHE_DIR");
}
END_TEST

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/attn-jit-test-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    Suite *su = suite_create("jit_cache");
    TCase *tc = tcase_create("jit_cache");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_cache_roundtrip_and_damage);
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
