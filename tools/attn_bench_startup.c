/* attn_bench_startup.c — attn-bench --startup: cold and warm context + plan creation, each
 * trial in fresh processes, because a driver reads its cache settings when it loads and
 * an earlier load in the same process would already hold compiled programs. */
#define _XOPEN_SOURCE 700 /* nftw, on top of the project's POSIX 2008 */

#include "attn_bench_startup.h"

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <spawn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* One process's measurement. */
typedef struct startup_sample {
    double context_ms, plan_ms, total_ms, run_ms, process_ms;
    uint64_t compiled, disk_hits;
} startup_sample;

/* ---- the child -------------------------------------------------------------------------*/

int bench_startup_child(const bench_opts *o)
{
    attn_context_params cp = bench_context_params(o);
    attn_desc desc = bench_desc(o);
    const size_t esize = o->dtype == ATTN_DTYPE_F16 ? 2 : 4;
    size_t n[4];
    if (!bench_count4(o->batch, o->q_len, o->heads, o->head_dim, &n[0]) ||
        !bench_count4(o->batch, o->kv_len, o->kv_heads, o->head_dim, &n[1]) ||
        !bench_count4(o->batch, o->kv_len, o->kv_heads, o->v_head_dim, &n[2]) ||
        !bench_count4(o->batch, o->q_len, o->heads, o->v_head_dim, &n[3])) {
        fprintf(stderr, "attn-bench: the problem is too large for this machine's address space\n");
        return EXIT_USAGE;
    }

    attn_context *ctx = NULL;
    attn_plan *plan = NULL;
    attn_buffer *bufs[4] = {NULL, NULL, NULL, NULL};
    void *host = NULL;
    int rc = 1;
    attn_status s;
    const double t0 = bench_now_ms();
    if ((s = attn_context_create(&cp, &ctx)) != ATTN_OK) {
        rc = bench_fail("attn_context_create", s);
        goto done;
    }
    const double t1 = bench_now_ms();
    if ((s = attn_plan_create(ctx, &desc, &plan)) != ATTN_OK) {
        rc = bench_fail("attn_plan_create", s);
        goto done;
    }
    const double t2 = bench_now_ms();

    /* The first run too: some drivers finish compiling only at the first launch. */
    uint64_t rng = UINT64_C(0x5eed0a77e2024);
    for (int i = 0; i < 4; i++) {
        if ((s = attn_buffer_create(ctx, n[i] * esize, &bufs[i])) != ATTN_OK) {
            rc = bench_fail("attn_buffer_create", s);
            goto done;
        }
        if (i == 3)
            break;
        free(host);
        host = bench_make_input(n[i], o->dtype, &rng);
        if (!host) {
            fprintf(stderr, "attn-bench: out of host memory\n");
            goto done;
        }
        if ((s = attn_buffer_upload(bufs[i], 0, host, n[i] * esize)) != ATTN_OK) {
            rc = bench_fail("attn_buffer_upload", s);
            goto done;
        }
    }
    attn_run_args args = ATTN_RUN_ARGS_INIT;
    const attn_dtype dt = o->dtype;
    args.q = attn_tensor_buffer(dt, o->batch, o->q_len, o->heads, o->head_dim, bufs[0], 0);
    args.k = attn_tensor_buffer(dt, o->batch, o->kv_len, o->kv_heads, o->head_dim, bufs[1], 0);
    args.v = attn_tensor_buffer(dt, o->batch, o->kv_len, o->kv_heads, o->v_head_dim, bufs[2], 0);
    args.o = attn_tensor_buffer(dt, o->batch, o->q_len, o->heads, o->v_head_dim, bufs[3], 0);
    const double t3 = bench_now_ms();
    if ((s = attn_plan_run(plan, &args)) != ATTN_OK) {
        rc = bench_fail("attn_plan_run", s);
        goto done;
    }
    const double t4 = bench_now_ms();
    attn_stats stats = {.struct_size = sizeof stats};
    if ((s = attn_context_get_stats(ctx, &stats)) != ATTN_OK) {
        rc = bench_fail("attn_context_get_stats", s);
        goto done;
    }
    printf("startup %.3f %.3f %.3f %" PRIu64 " %" PRIu64 "\n", t1 - t0, t2 - t1, t4 - t3,
           stats.kernels_compiled, stats.disk_cache_hits);
    rc = fflush(stdout) == 0 ? 0 : 1;
done:
    free(host);
    for (int i = 0; i < 4; i++)
        attn_buffer_destroy(bufs[i]);
    attn_plan_destroy(plan);
    attn_context_destroy(ctx);
    return rc;
}

/* ---- the parent ------------------------------------------------------------------------*/

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* The caches a measurement depends on, each pointed into a trial's directory, and the
 * switches that would turn a cache off (a warm trial would then be cold), removed. */
static const char *const cache_vars[] = {"ATTN_CACHE_DIR", "POCL_CACHE_DIR",
                                         "MESA_SHADER_CACHE_DIR", "MESA_GLSL_CACHE_DIR",
                                         "XDG_CACHE_HOME"};
static const char *const cache_dirs[] = {"attn", "pocl", "mesa", "mesa", "xdg"};
static const char *const cache_switches[] = {"MESA_SHADER_CACHE_DISABLE",
                                             "MESA_GLSL_CACHE_DISABLE", "POCL_KERNEL_CACHE"};
#define NUM_CACHE_VARS (sizeof cache_vars / sizeof cache_vars[0])

static bool names_var(const char *entry, const char *name)
{
    const size_t len = strlen(name);
    return strncmp(entry, name, len) == 0 && entry[len] == '=';
}

/* Our environment with the cache variables set into `root`: ours, then
 * NUM_CACHE_VARS strings of its own at the end. NULL if out of memory. */
static char **child_env(const char *root)
{
    size_t count = 0;
    while (environ[count])
        count++;
    char **env = calloc(count + NUM_CACHE_VARS + 1, sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < count; i++) {
        bool keep = true;
        for (size_t j = 0; j < NUM_CACHE_VARS; j++)
            keep = keep && !names_var(environ[i], cache_vars[j]);
        for (size_t j = 0; j < sizeof cache_switches / sizeof cache_switches[0]; j++)
            keep = keep && !names_var(environ[i], cache_switches[j]);
        if (keep)
            env[k++] = environ[i];
    }
    for (size_t j = 0; j < NUM_CACHE_VARS; j++) {
        size_t len = strlen(cache_vars[j]) + strlen(root) + strlen(cache_dirs[j]) + 3;
        char *e = malloc(len);
        if (!e) { /* without every directory a cold trial would not be cold */
            while (j-- > 0)
                free(env[--k]);
            free(env);
            return NULL;
        }
        snprintf(e, len, "%s=%s/%s", cache_vars[j], root, cache_dirs[j]);
        env[k++] = e;
    }
    return env;
}

static void child_env_free(char **env)
{
    if (!env)
        return;
    size_t n = 0;
    while (env[n])
        n++;
    for (size_t i = n - NUM_CACHE_VARS; i < n; i++)
        free(env[i]);
    free(env);
}

/* Runs one child in `root`'s caches; 0 with *out filled, or -1 after saying why. */
static int run_child(const char *exe, char *const argv[], const char *root, startup_sample *out)
{
    char **env = child_env(root);
    int fds[2] = {-1, -1};
    if (!env || pipe(fds) != 0) {
        fprintf(stderr, "attn-bench: cannot start a measurement: %s\n", strerror(errno));
        child_env_free(env);
        return -1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_addclose(&fa, fds[1]);
    pid_t pid;
    const double t0 = bench_now_ms();
    int err = posix_spawn(&pid, exe, &fa, NULL, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    child_env_free(env);
    if (err) {
        close(fds[0]);
        fprintf(stderr, "attn-bench: cannot run %s: %s\n", exe, strerror(err));
        return -1;
    }
    char line[256] = "";
    size_t len = 0;
    ssize_t got;
    while ((got = read(fds[0], line + len, sizeof line - 1 - len)) > 0 && len < sizeof line - 1)
        len += (size_t)got;
    line[len] = '\0';
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    out->process_ms = bench_now_ms() - t0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
        sscanf(line, "startup %lf %lf %lf %" SCNu64 " %" SCNu64, &out->context_ms, &out->plan_ms,
               &out->run_ms, &out->compiled, &out->disk_hits) != 5) {
        fprintf(stderr, "attn-bench: a measurement process failed (status %d)\n", status);
        return -1;
    }
    out->total_ms = out->context_ms + out->plan_ms;
    return 0;
}

/* The median of one double field of n samples. */
static double field_median(const startup_sample *s, size_t n, size_t offset, double *scratch)
{
    for (size_t i = 0; i < n; i++)
        memcpy(&scratch[i], (const char *)&s[i] + offset, sizeof scratch[i]);
    return bench_median(scratch, n);
}

static const struct {
    const char *name;
    size_t offset;
} startup_fields[] = {
    {"context_ms", offsetof(startup_sample, context_ms)},
    {"plan_ms", offsetof(startup_sample, plan_ms)},
    {"context_plan_ms", offsetof(startup_sample, total_ms)},
    {"first_run_ms", offsetof(startup_sample, run_ms)},
    {"process_ms", offsetof(startup_sample, process_ms)},
};
#define NUM_FIELDS (sizeof startup_fields / sizeof startup_fields[0])

static void print_samples(const bench_opts *o, const char *label, const char *cache,
                          const startup_sample *s, size_t n, double *scratch)
{
    double med[NUM_FIELDS];
    for (size_t f = 0; f < NUM_FIELDS; f++)
        med[f] = field_median(s, n, startup_fields[f].offset, scratch);
    /* The counters do not vary between trials of the same kind; the last one's. */
    if (o->json) {
        printf("\"%s\": {", cache);
        for (size_t f = 0; f < NUM_FIELDS; f++) {
            printf("%s\"%s\": ", f ? ", " : "", startup_fields[f].name);
            bench_json_number(stdout, med[f]);
        }
        printf(", \"kernels_compiled\": %" PRIu64 ", \"disk_cache_hits\": %" PRIu64 "}",
               s[n - 1].compiled, s[n - 1].disk_hits);
        return;
    }
    printf("%-44s %-5s %10.1f %10.1f %11.1f %12.1f %10.1f %9" PRIu64 " %9" PRIu64 "\n", label,
           cache, med[0], med[1], med[2], med[3], med[4], s[n - 1].compiled, s[n - 1].disk_hits);
}

int bench_startup(const bench_opts *o, const char *argv0)
{
    /* This program, by its real path: a child of a child must find it too. */
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0)
        exe[len] = '\0';
    else
        snprintf(exe, sizeof exe, "%s", argv0);
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp)
        tmp = "/tmp";

    char num[9][24];
    snprintf(num[0], sizeof num[0], "%" PRId64, o->batch);
    snprintf(num[1], sizeof num[1], "%" PRId64, o->heads);
    snprintf(num[2], sizeof num[2], "%" PRId64, o->kv_heads);
    snprintf(num[3], sizeof num[3], "%" PRId64, o->q_len);
    snprintf(num[4], sizeof num[4], "%" PRId64, o->kv_len);
    snprintf(num[5], sizeof num[5], "%" PRId64, o->head_dim);
    snprintf(num[6], sizeof num[6], "%" PRId64, o->v_head_dim);
    char *argv[] = {exe, "--startup-child", "--backend", NULL, "--device", num[7],
                    "--batch", num[0], "--heads", num[1], "--kv-heads", num[2],
                    "--q-len", num[3], "--kv-len", num[4], "--head-dim", num[5],
                    "--v-head-dim", num[6], "--dtype",
                    (char *)bench_word_of(bench_dtype_words, o->dtype), "--family",
                    (char *)bench_word_of(bench_family_words, o->family),
                    o->causal ? "--causal" : NULL, NULL};

    const size_t trials = (size_t)o->trials;
    startup_sample *cold = calloc(trials, sizeof *cold), *warm = calloc(trials, sizeof *warm);
    double *scratch = calloc(trials, sizeof *scratch);
    if (!cold || !warm || !scratch) {
        fprintf(stderr, "attn-bench: out of host memory\n");
        free(cold);
        free(warm);
        free(scratch);
        return 1;
    }

    const double load_start = bench_load_average();
    if (o->json) {
        printf("{\"mode\": \"startup\", \"version\": ");
        tool_json_string(stdout, attn_version_string());
        printf(", \"trials\": %zu, \"batch\": %" PRId64 ", \"heads\": %" PRId64
               ", \"kv_heads\": %" PRId64 ", \"q_len\": %" PRId64 ", \"kv_len\": %" PRId64
               ", \"head_dim\": %" PRId64 ", \"v_head_dim\": %" PRId64
               ", \"dtype\": \"%s\", \"causal\": %s, \"load_average_start\": ",
               trials, o->batch, o->heads, o->kv_heads, o->q_len, o->kv_len, o->head_dim,
               o->v_head_dim, bench_word_of(bench_dtype_words, o->dtype),
               o->causal ? "true" : "false");
        bench_json_number(stdout, load_start);
        printf(", \"devices\": [");
    } else {
        printf("attn-bench %s --startup: context + plan for batch %" PRId64 ", %" PRId64
               " heads (kv %" PRId64 "), q_len %" PRId64 ", kv_len %" PRId64 ", head_dim %" PRId64
               ", %s, %s\n"
               "each trial: fresh temporary ATTN_CACHE_DIR, POCL_CACHE_DIR,\n"
               "MESA_SHADER_CACHE_DIR and XDG_CACHE_HOME; cold = the first process in them (every\n"
               "cache empty), warm = a second process with the same directories.\n"
               "Median of %zu trials; load average (1 min) at start: %.2f\n\n",
               attn_version_string(), o->batch, o->heads, o->kv_heads, o->q_len, o->kv_len,
               o->head_dim, bench_word_of(bench_dtype_words, o->dtype),
               o->causal ? "causal" : "non-causal", trials, load_start);
        printf("%-44s %-5s %10s %10s %11s %12s %10s %9s %9s\n", "device", "cache", "context ms",
               "plan ms", "ctx+plan ms", "first run ms", "process ms", "compiled", "disk hits");
    }
    fflush(stdout);

    int rc = 0;
    bool first = true;
    for (int b = 0; b < 2; b++) {
        const attn_backend backend = b == 0 ? ATTN_BACKEND_OPENCL : ATTN_BACKEND_VULKAN;
        uint32_t count = 0;
        if ((o->backend != ATTN_BACKEND_AUTO && o->backend != backend) ||
            attn_device_count(backend, &count) != ATTN_OK)
            continue;
        argv[3] = (char *)bench_word_of(bench_backend_words, backend);
        for (uint32_t i = 0; i < count; i++) {
            if (o->device >= 0 && (uint32_t)o->device != i)
                continue;
            attn_device_info info = {.struct_size = sizeof info};
            if (attn_device_get_info(backend, i, &info) != ATTN_OK)
                continue;
            snprintf(num[7], sizeof num[7], "%" PRIu32, i);
            bool ok = true;
            for (size_t t = 0; t < trials && ok; t++) {
                char root[4096];
                snprintf(root, sizeof root, "%s/attn-startup-XXXXXX", tmp);
                if (!mkdtemp(root)) {
                    fprintf(stderr, "attn-bench: cannot make a directory in %s: %s\n", tmp,
                            strerror(errno));
                    ok = false;
                    break;
                }
                ok = run_child(exe, argv, root, &cold[t]) == 0 &&
                     run_child(exe, argv, root, &warm[t]) == 0;
                nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
            }
            char label[300];
            snprintf(label, sizeof label, "%s #%" PRIu32 " %.33s", argv[3], i, info.name);
            if (!ok) {
                fprintf(stderr, "attn-bench: %s: no startup measurement\n", label);
                rc = 1;
                continue;
            }
            if (o->json) {
                printf("%s{\"device\": ", first ? "" : ", ");
                tool_json_string(stdout, info.name);
                printf(", \"backend\": \"%s\", \"device_index\": %" PRIu32 ", ", argv[3], i);
                print_samples(o, label, "cold", cold, trials, scratch);
                printf(", ");
                print_samples(o, label, "warm", warm, trials, scratch);
                printf("}");
            } else {
                print_samples(o, label, "cold", cold, trials, scratch);
                print_samples(o, "", "warm", warm, trials, scratch);
            }
            first = false;
            fflush(stdout);
        }
    }
    if (first) {
        fprintf(stderr, "attn-bench: no OpenCL or Vulkan device to measure\n");
        rc = 1;
    }
    const double load_end = bench_load_average();
    if (o->json) {
        printf("], \"load_average_end\": ");
        bench_json_number(stdout, load_end);
        printf("}\n");
    } else {
        printf("\ncontext ms: attn_context_create (driver loading included); plan ms:\n"
               "attn_plan_create (JIT or cache load); first run ms: the first attn_plan_run (some\n"
               "drivers compile at the first launch); process ms: the whole child process;\n"
               "compiled / disk hits: kernels compiled and programs loaded from attn's disk\n"
               "cache.\n"
               "load average (1 min) at the end: %.2f\n",
               load_end);
    }
    free(cold);
    free(warm);
    free(scratch);
    return rc;
}
