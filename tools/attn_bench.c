/* attn_bench.c — attn-bench: times one attention problem on a device through the public
 * API and, with --check, compares its output with the reference backend; --suite and
 * --startup (attn_bench_suite.c, attn_bench_startup.c) measure a fixed set of problems
 * against a clBLAST baseline, and the cold and warm start-up time. */
#include "attn_bench_startup.h"
#include "attn_bench_stream.h"
#include "attn_bench_suite.h"
#include "attn_bench_util.h"
#include "tool_args.h"

#include <attn/attn.h>

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- options ---------------------------------------------------------------------------*/

/* An integer flag: where it goes, its range, and whether k/K (x1024) is accepted. */
typedef struct int_flag {
    const char *name;
    int64_t *dst;
    int64_t min, max;
    bool suffix;
} int_flag;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: attn-bench [options]\n"
            "       attn-bench --suite [--quick] [--max-seconds-per-row S] [device, measurement]\n"
            "       attn-bench --startup [--trials N] [problem, device]\n"
            "       attn-bench --stream recurrence|compressive [--segment N] [problem, device]\n"
            "Times attention O = softmax(Q K^T / sqrt(d)) V on one device.\n"
            "\n"
            "problem:\n"
            "  --batch N         batch size (1)\n"
            "  --heads N         query heads (8)\n"
            "  --kv-heads N      key/value heads, must divide --heads (= heads)\n"
            "  --q-len N         query tokens, k/K suffix = x1024 (2048)\n"
            "  --kv-len N        key/value tokens, k/K suffix = x1024 (= q-len)\n"
            "  --head-dim N      Q/K head dimension, at most %d (64)\n"
            "  --v-head-dim N    V/O head dimension, at most %d (= head-dim)\n"
            "  --dtype T         storage type: f32 | f16 (f32)\n"
            "  --causal          causal mask, aligned bottom-right\n"
            "patterns and positions (one pattern for every head; parts combine as a union):\n"
            "  --window L[:R]    sliding window: L keys back, R ahead (bare L: R = L); inf =\n"
            "                    unbounded\n"
            "  --dilation D[:L[:R]]  every D-th key, up to L back and R ahead (default inf)\n"
            "  --global LIST     global tokens: positions and ranges, e.g. 0,5,100-163\n"
            "  --random B:R[:S]  BigBird random blocks: R blocks of B keys per query block, seed S\n"
            "  --alibi           ALiBi biases with the default slopes\n"
            "  --rope            RoPE on Q and K (base 10000, all head dims, half-split)\n"
            "  --softcap C       soft-cap the logits at C\n"
            "  With a pattern, the run prints the fraction of score tiles computed and GFLOP/s\n"
            "  counted on the computed tiles only (block_m rows x 16 keys each).\n"
            "device:\n"
            "  --backend B       auto | opencl | vulkan | reference (auto)\n"
            "  --device N        device index within the backend; ignored with auto (0);\n"
            "                    --suite and --startup: only that index (needs --backend)\n"
            "  --family F        kernel family: auto | cpu | gpu (auto)\n"
            "measurement:\n"
            "  --reps N          timed runs; the median is reported (5)\n"
            "  --warmup N        untimed runs first (default: until 50 runs or 0.25 s, at\n"
            "                    least 1: a CPU device's idle threads wake slowly at first;\n"
            "                    --suite: 1)\n"
            "  --check           compare the output with the reference backend; exit 1 on FAIL\n"
            "  --check-rows N    with --check: compare only N query rows (all heads), spread over\n"
            "                    the sequence incl. the first and last; for long problems\n"
            "  --budget BYTES    device-memory budget, K/M/G suffixes (0 = the device's memory)\n"
            "  --host            Q/K/V/O in host memory: runs include the transfers, and the\n"
            "                    scheduler streams what does not fit the budget\n"
            "  --json            print one JSON object on stdout instead of text\n"
            "suite (every OpenCL and Vulkan device unless --backend/--device say otherwise):\n"
            "  --suite           prefill (1k and 4k tokens, d 64/128, 8 heads with 8 or 2 kv\n"
            "                    heads, f32/f16, causal or not) and decode (q_len 1, 4k and 64k\n"
            "                    cache, 32/8 heads, d 128, f16), each with the ratio to a clBLAST\n"
            "                    GEMM + softmax baseline timed in the same run\n"
            "  --quick           only the 1k prefill rows and the 4k decode row\n"
            "  --max-seconds-per-row S  skip rows whose runs are estimated, from the rows already\n"
            "                    measured on the device, to take longer than S s; 0 = no cap (60)\n"
            "start-up:\n"
            "  --startup         cold (empty caches) and warm time to create a context and a plan\n"
            "                    for the problem (default: the main prefill), fresh processes\n"
            "  --trials N        start-up trials; the median is reported (5)\n"
            "streams:\n"
            "  --stream MODE     push --q-len tokens through an attn_stream in segments:\n"
            "                    recurrence (Transformer-XL, mem_len = segment) or compressive\n"
            "                    (Infini-attention); prints time and peak device memory\n"
            "  --segment N       tokens per segment, k/K suffix = x1024 (4096)\n"
            "  --help            this text\n"
            "\n"
            "Options take their value as '--flag N' or '--flag=N'.\n"
            "Exit status: 0 success, 1 library error or failed check, 2 bad usage.\n",
            ATTN_MAX_HEAD_DIM, ATTN_MAX_HEAD_DIM);
}

static void usage_error(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "attn-bench: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\nTry 'attn-bench --help' for the list of options.\n");
}

/* ---- pattern options ---------------------------------------------------------------- */

static bool is_pattern_flag(const char *name)
{
    return !strcmp(name, "window") || !strcmp(name, "dilation") || !strcmp(name, "global") ||
           !strcmp(name, "random") || !strcmp(name, "softcap");
}

/* A count: decimal, k/K suffix, or "inf" (ATTN_UNBOUNDED) where unbounded is allowed. */
static bool parse_extent(const char *s, size_t n, bool inf_ok, int64_t *out)
{
    char buf[32];
    if (n == 0 || n >= sizeof buf)
        return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (inf_ok && !strcmp(buf, "inf")) {
        *out = ATTN_UNBOUNDED;
        return true;
    }
    char *end = NULL;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno || end == buf || v < 0)
        return false;
    if (*end == 'k' || *end == 'K') {
        if (v > INT64_MAX / 1024)
            return false;
        v *= 1024;
        end++;
    }
    if (*end)
        return false;
    *out = v;
    return true;
}

/* Up to `max` colon-separated extents of s into out[]; returns how many, 0 if malformed. */
static int parse_extents(const char *s, int max, bool inf_ok, int64_t *out)
{
    int n = 0;
    for (;;) {
        const char *c = strchr(s, ':');
        size_t len = c ? (size_t)(c - s) : strlen(s);
        if (n == max || !parse_extent(s, len, inf_ok, &out[n]))
            return 0;
        n++;
        if (!c)
            return n;
        s = c + 1;
    }
}

static bool parse_pattern_flag(bench_opts *o, const char *name, const char *value)
{
    attn_pattern *pt = &o->pattern;
    int64_t v[3];
    int n;
    if (!strcmp(name, "softcap")) {
        char *end = NULL;
        o->softcap = strtod(value, &end);
        return end != value && !*end && o->softcap > 0 && isfinite(o->softcap);
    }
    pt->struct_size = sizeof *pt;
    o->has_pattern = true;
    if (!strcmp(name, "window")) {
        if (!(n = parse_extents(value, 2, true, v)))
            return false;
        pt->window = 1;
        pt->window_left = v[0];
        pt->window_right = n > 1 ? v[1] : v[0];
        return true;
    }
    if (!strcmp(name, "dilation")) {
        if (!(n = parse_extents(value, 3, true, v)) || v[0] < 1)
            return false;
        pt->dilation = v[0];
        pt->dilation_left = n > 1 ? v[1] : ATTN_UNBOUNDED;
        pt->dilation_right = n > 2 ? v[2] : ATTN_UNBOUNDED;
        return true;
    }
    if (!strcmp(name, "random")) {
        if ((n = parse_extents(value, 3, false, v)) < 2 || v[0] < 1 || v[1] < 1)
            return false;
        pt->random_block_size = v[0];
        pt->random_blocks = v[1];
        pt->random_seed = n > 2 ? (uint64_t)v[2] : 1;
        return true;
    }
    /* --global: ascending positions and ranges a-b. */
    int64_t count = 0;
    for (const char *s = value; *s;) {
        const char *c = strchr(s, ',');
        size_t len = c ? (size_t)(c - s) : strlen(s);
        const char *dash = memchr(s, '-', len);
        int64_t a, b;
        if (!parse_extent(s, dash ? (size_t)(dash - s) : len, false, &a))
            return false;
        b = a;
        if (dash && !parse_extent(dash + 1, len - (size_t)(dash - s) - 1, false, &b))
            return false;
        for (int64_t x = a; x <= b; ++x) {
            if (count == (int64_t)(sizeof o->globals / sizeof o->globals[0]) ||
                (count && x <= o->globals[count - 1]))
                return false; /* too many, or not ascending */
            o->globals[count++] = x;
        }
        s += len + (c ? 1 : 0);
    }
    pt->global_tokens = o->globals;
    pt->num_global = count;
    return count > 0;
}

static bool parse_word(const word_value *table, const char *s, int *out)
{
    for (; table->word; table++)
        if (!strcmp(table->word, s)) {
            *out = table->value;
            return true;
        }
    return false;
}

/* Fills *o from argv. Returns 0, or EXIT_USAGE after printing why. */
static int parse_args(int argc, char **argv, bench_opts *o)
{
    *o = (bench_opts){.batch = 1, .heads = 8, .kv_heads = -1, .q_len = 2048, .kv_len = -1,
                      .head_dim = 64, .v_head_dim = -1, .device = -1, .reps = 5, .warmup = -1,
                      .max_seconds_per_row = 60, .trials = 5, .segment = 4096,
                      .dtype = ATTN_DTYPE_F32,
                      .backend = ATTN_BACKEND_AUTO, .family = ATTN_FAMILY_AUTO};
    /* Lengths up to 2^31 keep bench_visible_pairs() exact in 64 bits. */
    const int64_t len_max = INT64_C(1) << 31, count_max = INT64_C(1) << 20;
    const int_flag ints[] = {
        {"batch", &o->batch, 1, count_max, true},
        {"heads", &o->heads, 1, count_max, false},
        {"kv-heads", &o->kv_heads, 1, count_max, false},
        {"q-len", &o->q_len, 1, len_max, true},
        {"kv-len", &o->kv_len, 1, len_max, true},
        {"head-dim", &o->head_dim, 1, ATTN_MAX_HEAD_DIM, false},
        {"v-head-dim", &o->v_head_dim, 1, ATTN_MAX_HEAD_DIM, false},
        {"device", &o->device, 0, UINT32_MAX, false},
        {"reps", &o->reps, 1, 1000000, false},
        {"warmup", &o->warmup, 0, 1000000, false},
        {"budget", &o->budget, 0, INT64_MAX, true},
        {"check-rows", &o->check_rows, 0, len_max, false},
        {"max-seconds-per-row", &o->max_seconds_per_row, 0, INT32_MAX, false},
        {"trials", &o->trials, 1, 1000, false},
        {"segment", &o->segment, 1, len_max, true},
    };
    /* --startup-child is not in the usage: --startup runs this program with it, one
     * measurement per process (attn_bench_startup.c). */
    const struct {
        const char *name;
        bool *dst;
    } bools[] = {{"causal", &o->causal}, {"check", &o->check}, {"json", &o->json},
                 {"help", &o->help}, {"host", &o->host}, {"suite", &o->suite},
                 {"quick", &o->quick}, {"startup", &o->startup},
                 {"startup-child", &o->startup_child}, {"alibi", &o->alibi}, {"rope", &o->rope}};

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "-h")) {
            o->help = true;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0 || !arg[2]) {
            usage_error("unexpected argument '%s'%s", arg, "");
            return EXIT_USAGE;
        }
        /* Split "--name=value" or take the value from the next argument. */
        char name[32];
        const char *eq = strchr(arg + 2, '='), *value = NULL;
        size_t len = eq ? (size_t)(eq - (arg + 2)) : strlen(arg + 2);
        if (len >= sizeof name) {
            usage_error("unknown option '%s'%s", arg, "");
            return EXIT_USAGE;
        }
        memcpy(name, arg + 2, len);
        name[len] = '\0';

        bool found = false;
        for (size_t b = 0; b < sizeof bools / sizeof bools[0]; b++) {
            if (strcmp(name, bools[b].name) != 0)
                continue;
            if (eq) {
                usage_error("option '--%s' takes no value%s", name, "");
                return EXIT_USAGE;
            }
            *bools[b].dst = true;
            found = true;
        }
        if (found)
            continue;

        bool takes_value = !strcmp(name, "dtype") || !strcmp(name, "backend") ||
                           !strcmp(name, "family") || !strcmp(name, "stream") ||
                           is_pattern_flag(name);
        for (size_t f = 0; f < sizeof ints / sizeof ints[0]; f++)
            takes_value |= !strcmp(name, ints[f].name);
        if (!takes_value) {
            usage_error("unknown option '%s'%s", arg, "");
            return EXIT_USAGE;
        }
        if (eq) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            usage_error("option '--%s' needs a value%s", name, "");
            return EXIT_USAGE;
        }

        if (is_pattern_flag(name)) {
            if (!parse_pattern_flag(o, name, value)) {
                fprintf(stderr, "attn-bench: invalid value '%s' for --%s\n", value, name);
                fprintf(stderr, "Try 'attn-bench --help' for the list of options.\n");
                return EXIT_USAGE;
            }
            continue;
        }
        static const word_value stream_words[] = {{"recurrence", ATTN_STREAM_RECURRENCE},
                                                  {"compressive", ATTN_STREAM_COMPRESSIVE},
                                                  {NULL, 0}};
        const word_value *words = !strcmp(name, "dtype")     ? bench_dtype_words
                                  : !strcmp(name, "backend") ? bench_backend_words
                                  : !strcmp(name, "family")  ? bench_family_words
                                  : !strcmp(name, "stream")  ? stream_words
                                                             : NULL;
        if (words) {
            int v;
            if (!parse_word(words, value, &v)) {
                char allowed[96] = "";
                for (const word_value *w = words; w->word; w++) {
                    strcat(allowed, w == words ? "" : ", ");
                    strcat(allowed, w->word);
                }
                fprintf(stderr, "attn-bench: invalid value '%s' for --%s (one of: %s)\n", value,
                        name, allowed);
                fprintf(stderr, "Try 'attn-bench --help' for the list of options.\n");
                return EXIT_USAGE;
            }
            if (words == bench_dtype_words)
                o->dtype = (attn_dtype)v;
            else if (words == bench_backend_words)
                o->backend = (attn_backend)v;
            else if (words == stream_words)
                o->stream_mode = v;
            else
                o->family = (attn_kernel_family)v;
            continue;
        }
        for (size_t f = 0; f < sizeof ints / sizeof ints[0]; f++) {
            const int_flag *fl = &ints[f];
            if (strcmp(name, fl->name) != 0)
                continue;
            if (!tool_parse_int(value, fl->suffix, fl->min, fl->max, fl->dst)) {
                fprintf(stderr,
                        "attn-bench: invalid value '%s' for --%s (an integer from %" PRId64
                        " to %" PRId64 "%s)\n",
                        value, name, fl->min, fl->max,
                        fl->suffix ? "; suffixes k/K = x1024, M, G" : "");
                fprintf(stderr, "Try 'attn-bench --help' for the list of options.\n");
                return EXIT_USAGE;
            }
        }
    }
    if (o->kv_heads < 0)
        o->kv_heads = o->heads;
    if (o->kv_len < 0)
        o->kv_len = o->q_len;
    if (o->v_head_dim < 0)
        o->v_head_dim = o->head_dim;
    if (o->stream_mode && (o->suite || o->startup || o->check || o->host || o->json)) {
        usage_error("%s%s", "--stream is a run of its own: without --suite, --startup, ",
                    "--check, --host or --json");
        return EXIT_USAGE;
    }
    if (o->suite && o->startup) {
        usage_error("%s%s", "--suite and --startup are separate runs", "");
        return EXIT_USAGE;
    }
    if ((o->suite || o->startup) && o->backend == ATTN_BACKEND_REFERENCE) {
        usage_error("%s%s", "--suite and --startup measure OpenCL and Vulkan devices, not the ",
                    "reference");
        return EXIT_USAGE;
    }
    if ((o->suite || o->startup) && o->device >= 0 && o->backend == ATTN_BACKEND_AUTO) {
        usage_error("%s%s", "with --suite or --startup, --device needs ",
                    "--backend opencl or vulkan");
        return EXIT_USAGE;
    }
    if (o->has_pattern && o->check && o->check_rows) {
        /* Rows checked one by one are one-row problems: their positions, and with them
         * the pattern, would not be those of the row in the whole problem. */
        usage_error("%s%s", "--check-rows cannot check a pattern; use --check on a smaller ",
                    "problem");
        return EXIT_USAGE;
    }
    if ((o->has_pattern || o->alibi || o->rope || o->softcap > 0) &&
        (o->suite || o->startup || o->stream_mode)) {
        usage_error("%s%s", "patterns and positions apply to a single run, not to --suite, ",
                    "--startup or --stream");
        return EXIT_USAGE;
    }
    if (o->quick && !o->suite) {
        usage_error("%s%s", "--quick is an option of --suite", "");
        return EXIT_USAGE;
    }
    return 0;
}

/* ---- the benchmark ---------------------------------------------------------------------*/

#define TRY(what, call)                                                                        \
    do {                                                                                       \
        attn_status s_ = (call);                                                               \
        if (s_ != ATTN_OK)                                                                     \
            return bench_fail(what, s_);                                                       \
    } while (0)

/* Everything that must be freed, whichever way the run ends. */
typedef struct bench {
    attn_context *ctx, *ref_ctx;
    attn_plan *plan, *ref_plan;
    attn_buffer *qb, *kb, *vb, *ob;
    void *q, *k, *v, *o, *o_ref;
    double *times;
} bench;

static void bench_free(bench *b)
{
    attn_plan_destroy(b->ref_plan);
    attn_plan_destroy(b->plan);
    attn_buffer_destroy(b->qb);
    attn_buffer_destroy(b->kb);
    attn_buffer_destroy(b->vb);
    attn_buffer_destroy(b->ob);
    attn_context_destroy(b->ref_ctx);
    attn_context_destroy(b->ctx);
    free(b->q);
    free(b->k);
    free(b->v);
    free(b->o);
    free(b->o_ref);
    free(b->times);
}

/* Results of the check; checked = false when --check was not given. max_err and
 * worst_ratio cover the finite outputs; nonfinite counts NaN/inf ones (any fails). */
typedef struct check_result {
    bool checked, pass;
    double max_err, worst_ratio, tolerance;
    size_t nonfinite;
} check_result;

static int run(const bench_opts *o, bench *b)
{
    const bool text = !o->json;
    const attn_dtype dt = o->dtype;
    const size_t esize = dt == ATTN_DTYPE_F16 ? 2 : 4;

    size_t nq, nk, nv, no, bq, bk, bv, bo;
    if (!bench_count4(o->batch, o->q_len, o->heads, o->head_dim, &nq) ||
        !bench_count4(o->batch, o->kv_len, o->kv_heads, o->head_dim, &nk) ||
        !bench_count4(o->batch, o->kv_len, o->kv_heads, o->v_head_dim, &nv) ||
        !bench_count4(o->batch, o->q_len, o->heads, o->v_head_dim, &no) ||
        !bench_mul_size(nq, esize, &bq) || !bench_mul_size(nk, esize, &bk) ||
        !bench_mul_size(nv, esize, &bv) || !bench_mul_size(no, esize, &bo)) {
        fprintf(stderr, "attn-bench: the problem is too large for this machine's address space\n");
        return EXIT_USAGE;
    }

    /* Context and device. */
    attn_context_params cp = bench_context_params(o);
    TRY("attn_context_create", attn_context_create(&cp, &b->ctx));
    attn_device_info dev = {.struct_size = sizeof dev};
    TRY("attn_context_device_info", attn_context_device_info(b->ctx, &dev));
    if (text) {
        printf("attn-bench %s\n", attn_version_string());
        printf("device:   %s (%s #%" PRIu32 ", %s; %s)\n", dev.name,
               bench_word_of(bench_backend_words, dev.backend), dev.index,
               bench_device_type_name(dev.type), dev.api_version);
        printf("problem:  batch %" PRId64 ", heads %" PRId64 " (kv %" PRId64 "), q_len %" PRId64
               ", kv_len %" PRId64 ", head_dim %" PRId64 ", v_head_dim %" PRId64 ", %s, %s\n",
               o->batch, o->heads, o->kv_heads, o->q_len, o->kv_len, o->head_dim, o->v_head_dim,
               bench_word_of(bench_dtype_words, dt), o->causal ? "causal" : "non-causal");
        fflush(stdout);
    }

    /* Device buffers first, so a problem the device cannot hold fails before the host
     * copies are filled; timed runs then measure device work, not transfers. */
    if (!o->host) {
        TRY("attn_buffer_create (Q)", attn_buffer_create(b->ctx, bq, &b->qb));
        TRY("attn_buffer_create (K)", attn_buffer_create(b->ctx, bk, &b->kb));
        TRY("attn_buffer_create (V)", attn_buffer_create(b->ctx, bv, &b->vb));
        TRY("attn_buffer_create (O)", attn_buffer_create(b->ctx, bo, &b->ob));
    }

    /* Inputs: one generator, Q then K then V, so a shape always gets the same values. */
    uint64_t rng = UINT64_C(0x5eed0a77e2024);
    b->q = bench_make_input(nq, dt, &rng);
    b->k = bench_make_input(nk, dt, &rng);
    b->v = bench_make_input(nv, dt, &rng);
    b->o = malloc(bo ? bo : 1);
    if (!b->q || !b->k || !b->v || !b->o) {
        fprintf(stderr, "attn-bench: out of host memory for the inputs and output\n");
        return 1;
    }
    if (!o->host) {
        TRY("attn_buffer_upload (Q)", attn_buffer_upload(b->qb, 0, b->q, bq));
        TRY("attn_buffer_upload (K)", attn_buffer_upload(b->kb, 0, b->k, bk));
        TRY("attn_buffer_upload (V)", attn_buffer_upload(b->vb, 0, b->v, bv));
    }

    attn_desc desc = bench_desc(o);

    double t0 = bench_now_ms();
    TRY("attn_plan_create", attn_plan_create(b->ctx, &desc, &b->plan));
    double plan_ms = bench_now_ms() - t0;
    attn_plan_info info = {.struct_size = sizeof info};
    TRY("attn_plan_get_info", attn_plan_get_info(b->plan, &info));
    if (text) {
        printf("plan:     family %s, block_m %" PRIu32 ", block_n %" PRIu32 ", vec_width %" PRIu32
               ", work_group %" PRIu32 ", kernel %s\n",
               bench_word_of(bench_family_words, info.family), info.block_m, info.block_n,
               info.vec_width, info.work_group_size, info.kernel);
        printf("plan+JIT: %.1f ms\n", plan_ms);
        if (info.scheduled)
            printf("schedule: segments of %" PRIu32 " rows x chunks of %" PRIu32
                   " keys (one pass would need %" PRIu64 " bytes; at least %" PRIu64 ")\n",
                   info.segment_rows, info.chunk_keys, info.device_bytes, info.min_device_bytes);
        fflush(stdout);
    }

    attn_run_args args = {.struct_size = sizeof args};
    args.q = attn_tensor_buffer(dt, o->batch, o->q_len, o->heads, o->head_dim, b->qb, 0);
    args.k = attn_tensor_buffer(dt, o->batch, o->kv_len, o->kv_heads, o->head_dim, b->kb, 0);
    args.v = attn_tensor_buffer(dt, o->batch, o->kv_len, o->kv_heads, o->v_head_dim, b->vb, 0);
    args.o = attn_tensor_buffer(dt, o->batch, o->q_len, o->heads, o->v_head_dim, b->ob, 0);
    if (o->host) {
        args.q = attn_tensor_host(dt, o->batch, o->q_len, o->heads, o->head_dim, b->q);
        args.k = attn_tensor_host(dt, o->batch, o->kv_len, o->kv_heads, o->head_dim, b->k);
        args.v = attn_tensor_host(dt, o->batch, o->kv_len, o->kv_heads, o->v_head_dim, b->v);
        args.o = attn_tensor_host(dt, o->batch, o->q_len, o->heads, o->v_head_dim, b->o);
    }

    /* Warm-up: the runs given, else until 50 runs or 0.25 s. On this 2-core virtual
     * machine a 1 ms decode run took 2.2 ms in ~half of its first 20 runs (one of PoCL's
     * two threads woke too late to take work), and 1.1 ms steadily after them. */
    int64_t warm = 0;
    for (const double w0 = bench_now_ms();; warm++) {
        if (o->warmup >= 0 ? warm >= o->warmup
                           : warm >= 1 && (warm >= 50 || bench_now_ms() - w0 >= 250.0))
            break;
        TRY("attn_plan_run (warmup)", attn_plan_run(b->plan, &args));
    }
    b->times = malloc((size_t)o->reps * sizeof *b->times);
    if (!b->times) {
        fprintf(stderr, "attn-bench: out of host memory\n");
        return 1;
    }
    for (int64_t i = 0; i < o->reps; i++) {
        t0 = bench_now_ms();
        TRY("attn_plan_run", attn_plan_run(b->plan, &args));
        b->times[i] = bench_now_ms() - t0;
    }
    double ms_median = bench_median(b->times, (size_t)o->reps);
    double ms_min = b->times[0]; /* bench_median sorted them */
    double flops = 2.0 * (double)o->batch * (double)o->heads *
                   (double)bench_visible_pairs(o->q_len, o->kv_len, o->causal) *
                   (double)(o->head_dim + o->v_head_dim);
    if (info.tiles_total) /* a pattern: the work of the tiles the kernels compute */
        flops = 2.0 * (double)info.tiles_computed * info.block_m * 16.0 *
                (double)(o->head_dim + o->v_head_dim);
    double gflops = ms_median > 0 ? flops / (ms_median * 1e6) : NAN;

    attn_stats stats = {.struct_size = sizeof stats};
    TRY("attn_context_get_stats", attn_context_get_stats(b->ctx, &stats));
    if (text) {
        printf("run:      median %.3f ms, min %.3f ms over %" PRId64 " reps (%" PRId64
               " warmup); %.2f GFLOP/s (%.3f GFLOP per run)\n",
               ms_median, ms_min, o->reps, warm, gflops, flops * 1e-9);
        if (info.tiles_total)
            printf("pattern:  %" PRIu64 " of %" PRIu64 " score tiles computed (fraction %.4f); "
                   "GFLOP/s above counted on computed tiles\n",
                   info.tiles_computed, info.tiles_total,
                   (double)info.tiles_computed / (double)info.tiles_total);
        printf("memory:   peak device bytes %" PRIu64 " (%.1f MiB) of budget %.1f MiB, kernels "
               "compiled %" PRIu64 ", tensors in %s memory\n",
               stats.peak_device_bytes, (double)stats.peak_device_bytes / 1048576.0,
               (double)stats.memory_budget / 1048576.0, stats.kernels_compiled,
               o->host ? "host" : "device");
        fflush(stdout);
    }

    /* The check: the same description on the reference backend, same inputs on the host. */
    check_result chk = {.checked = o->check, .tolerance = dt == ATTN_DTYPE_F16 ? TOL_F16 : TOL_F32};
    if (o->check) {
        if (text) {
            printf("check:    computing the reference on the host (double precision)\n");
            fflush(stdout);
        }
        if (!o->host)
            TRY("attn_buffer_download (O)", attn_buffer_download(b->ob, 0, b->o, bo));
        b->o_ref = malloc(bo ? bo : 1);
        if (!b->o_ref) {
            fprintf(stderr, "attn-bench: out of host memory for the reference output\n");
            return 1;
        }
        attn_context_params rp = ATTN_CONTEXT_PARAMS_INIT;
        rp.backend = ATTN_BACKEND_REFERENCE;
        TRY("attn_context_create (reference)", attn_context_create(&rp, &b->ref_ctx));
        /* Rows to compare: all, or --check-rows of them evenly spread (first and last
         * included), each computed as its own one-row reference problem over the keys it
         * sees: with q_len 1 the causal alignment sees all of its kv_len. */
        int64_t rows = o->check_rows && o->check_rows < o->q_len ? o->check_rows : o->q_len;
        const size_t row_elems = (size_t)(o->heads * o->v_head_dim);
        for (int64_t r = 0; r < rows; ++r) {
            int64_t i = rows == o->q_len ? r : (rows == 1 ? 0 : r * (o->q_len - 1) / (rows - 1));
            attn_desc rd = desc;
            int64_t seen = o->kv_len;
            if (rows != o->q_len) {
                rd.q_len = 1;
                if (o->causal)
                    seen = i + 1 + o->kv_len - o->q_len;
                rd.kv_len = seen < 1 ? 1 : seen;
                rd.causal = 0;
            }
            attn_run_args rargs = {.struct_size = sizeof rargs};
            const int64_t qs[4] = {o->q_len * o->heads * o->head_dim, o->heads * o->head_dim,
                                   o->head_dim, 1};
            const int64_t ks[4] = {o->kv_len * o->kv_heads * o->head_dim,
                                   o->kv_heads * o->head_dim, o->head_dim, 1};
            const int64_t vs[4] = {o->kv_len * o->kv_heads * o->v_head_dim,
                                   o->kv_heads * o->v_head_dim, o->v_head_dim, 1};
            const int64_t os[4] = {o->q_len * o->heads * o->v_head_dim,
                                   o->heads * o->v_head_dim, o->v_head_dim, 1};
            int64_t rq = rows == o->q_len ? o->q_len : 1, first = rows == o->q_len ? 0 : i;
            rargs.q = attn_tensor_host(dt, o->batch, rq, o->heads, o->head_dim,
                                       (char *)b->q + (size_t)(first * qs[1]) * esize);
            rargs.k = attn_tensor_host(dt, o->batch, rd.kv_len, o->kv_heads, o->head_dim, b->k);
            rargs.v = attn_tensor_host(dt, o->batch, rd.kv_len, o->kv_heads, o->v_head_dim, b->v);
            rargs.o = attn_tensor_host(dt, o->batch, rq, o->heads, o->v_head_dim,
                                       (char *)b->o_ref + (size_t)(first * os[1]) * esize);
            memcpy(rargs.q.stride, qs, sizeof qs);
            memcpy(rargs.k.stride, ks, sizeof ks);
            memcpy(rargs.v.stride, vs, sizeof vs);
            memcpy(rargs.o.stride, os, sizeof os);
            attn_plan_destroy(b->ref_plan);
            b->ref_plan = NULL;
            if (rows != o->q_len && seen < 1) {
                /* A row that sees no key: the expected output is zeros. */
                for (int64_t bb = 0; bb < o->batch; ++bb)
                    memset((char *)b->o_ref + (size_t)(bb * os[0] + i * os[1]) * esize, 0,
                           row_elems * esize);
                continue;
            }
            TRY("attn_plan_create (reference)", attn_plan_create(b->ref_ctx, &rd, &b->ref_plan));
            TRY("attn_plan_run (reference)", attn_plan_run(b->ref_plan, &rargs));
            if (rows == o->q_len)
                break;
        }

        for (size_t i = 0; i < no; i++) {
            if (rows != o->q_len) {
                /* Only the sampled rows were computed. */
                const int64_t row = (int64_t)(i / row_elems) % o->q_len;
                bool sampled = false;
                for (int64_t r = 0; r < rows && !sampled; ++r)
                    sampled = row == (rows == 1 ? 0 : r * (o->q_len - 1) / (rows - 1));
                if (!sampled)
                    continue;
            }
            double got = bench_element(b->o, dt, i), ref = bench_element(b->o_ref, dt, i);
            double err = fabs(got - ref), ratio = err / (1.0 + fabs(ref));
            if (!isfinite(got) || !isfinite(ref)) {
                chk.nonfinite++;
                continue;
            }
            if (err > chk.max_err)
                chk.max_err = err;
            if (ratio > chk.worst_ratio)
                chk.worst_ratio = ratio;
        }
        chk.pass = chk.nonfinite == 0 && chk.worst_ratio <= chk.tolerance;
        if (text) {
            printf("check:    max |err| %.3g, worst err/(1+|ref|) %.3g, tolerance %.0e",
                   chk.max_err, chk.worst_ratio, chk.tolerance);
            if (chk.nonfinite)
                printf(", %zu non-finite values", chk.nonfinite);
            printf(": %s\n", chk.pass ? "PASS" : "FAIL");
        }
    }

    if (o->json) {
        FILE *f = stdout;
        fputs("{\"device\": ", f);
        tool_json_string(f, dev.name);
        fputs(", \"backend\": ", f);
        tool_json_string(f, bench_word_of(bench_backend_words, dev.backend));
        fprintf(f, ", \"device_index\": %" PRIu32 ", \"device_type\": ", dev.index);
        tool_json_string(f, bench_device_type_name(dev.type));
        fputs(", \"api_version\": ", f);
        tool_json_string(f, dev.api_version);
        fputs(", \"version\": ", f);
        tool_json_string(f, attn_version_string());
        fprintf(f,
                ", \"batch\": %" PRId64 ", \"heads\": %" PRId64 ", \"kv_heads\": %" PRId64
                ", \"q_len\": %" PRId64 ", \"kv_len\": %" PRId64 ", \"head_dim\": %" PRId64
                ", \"v_head_dim\": %" PRId64 ", \"dtype\": \"%s\", \"causal\": %s",
                o->batch, o->heads, o->kv_heads, o->q_len, o->kv_len, o->head_dim, o->v_head_dim,
                bench_word_of(bench_dtype_words, dt), o->causal ? "true" : "false");
        fprintf(f,
                ", \"family\": \"%s\", \"block_m\": %" PRIu32 ", \"block_n\": %" PRIu32
                ", \"vec_width\": %" PRIu32 ", \"work_group_size\": %" PRIu32 ", \"kernel\": ",
                bench_word_of(bench_family_words, info.family), info.block_m, info.block_n,
                info.vec_width, info.work_group_size);
        tool_json_string(f, info.kernel);
        fprintf(f, ", \"reps\": %" PRId64 ", \"warmup\": %" PRId64 ", \"plan_ms\": ", o->reps,
                warm);
        bench_json_number(f, plan_ms);
        fputs(", \"ms_median\": ", f);
        bench_json_number(f, ms_median);
        fputs(", \"ms_min\": ", f);
        bench_json_number(f, ms_min);
        fputs(", \"flops\": ", f);
        bench_json_number(f, flops);
        fputs(", \"gflops\": ", f);
        bench_json_number(f, gflops);
        fprintf(f, ", \"tiles_computed\": %" PRIu64 ", \"tiles_total\": %" PRIu64,
                info.tiles_computed, info.tiles_total);
        fputs(", \"max_err\": ", f);
        bench_json_number(f, chk.checked ? chk.max_err : NAN);
        fputs(", \"max_err_ratio\": ", f);
        bench_json_number(f, chk.checked ? chk.worst_ratio : NAN);
        fputs(", \"tolerance\": ", f);
        bench_json_number(f, chk.checked ? chk.tolerance : NAN);
        fprintf(f, ", \"nonfinite\": %zu", chk.nonfinite);
        fprintf(f, ", \"check\": %s", !chk.checked ? "null" : chk.pass ? "\"pass\"" : "\"fail\"");
        fprintf(f,
                ", \"peak_device_bytes\": %" PRIu64 ", \"memory_budget\": %" PRIu64
                ", \"kernels_compiled\": %" PRIu64 ", \"compile_cache_hits\": %" PRIu64 "}\n",
                stats.peak_device_bytes, stats.memory_budget, stats.kernels_compiled,
                stats.compile_cache_hits);
    }
    if (fflush(stdout) != 0) {
        fprintf(stderr, "attn-bench: writing the results failed: %s\n", strerror(errno));
        return 1;
    }
    return chk.checked && !chk.pass ? 1 : 0;
}

int main(int argc, char **argv)
{
    bench_opts opts;
    int rc = parse_args(argc, argv, &opts);
    if (rc)
        return rc;
    if (opts.help) {
        usage(stdout);
        return 0;
    }
    if (opts.startup_child)
        return bench_startup_child(&opts);
    if (opts.startup)
        return bench_startup(&opts, argv[0]);
    if (opts.suite)
        return bench_suite(&opts);
    if (opts.stream_mode)
        return bench_stream(&opts);
    bench b = {0};
    rc = run(&opts, &b);
    bench_free(&b);
    return rc;
}
