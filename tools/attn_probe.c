/* attn_probe.c — attn-probe: every device of every backend libattn was built with, what it
 * can do, what the planner picks on it and how long a context fits in one pass. This file
 * holds the options, the device list, the text report and main; the facts, --verify/--bench
 * and the JSON report live in attn_probe_facts.c, attn_probe_run.c and attn_probe_json.c. */
#include "attn_probe.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define EXIT_USAGE 2

const probe_backend probe_backends[PROBE_NUM_BACKENDS] = {
#ifdef ATTN_HAVE_OPENCL
    {ATTN_BACKEND_OPENCL, "opencl", "OpenCL", true},
#else
    {ATTN_BACKEND_OPENCL, "opencl", "OpenCL", false},
#endif
#ifdef ATTN_HAVE_VULKAN
    {ATTN_BACKEND_VULKAN, "vulkan", "Vulkan", true},
#else
    {ATTN_BACKEND_VULKAN, "vulkan", "Vulkan", false},
#endif
    {ATTN_BACKEND_REFERENCE, "reference", "reference", true},
};

const probe_backend *probe_backend_of(attn_backend id)
{
    for (size_t i = 0; i < PROBE_NUM_BACKENDS; i++)
        if (probe_backends[i].id == id)
            return &probe_backends[i];
    return &probe_backends[PROBE_NUM_BACKENDS - 1];
}

const char *probe_family_word(int f)
{
    return f == ATTN_FAMILY_CPU ? "cpu" : f == ATTN_FAMILY_GPU ? "gpu" : "auto";
}

const char *probe_type_word(attn_device_type t)
{
    switch (t) {
    case ATTN_DEVICE_CPU: return "cpu";
    case ATTN_DEVICE_INTEGRATED_GPU: return "integrated_gpu";
    case ATTN_DEVICE_DISCRETE_GPU: return "discrete_gpu";
    default: return "other";
    }
}

static const char *type_title(attn_device_type t)
{
    switch (t) {
    case ATTN_DEVICE_CPU: return "CPU";
    case ATTN_DEVICE_INTEGRATED_GPU: return "integrated GPU";
    case ATTN_DEVICE_DISCRETE_GPU: return "discrete GPU";
    default: return "other";
    }
}

bool probe_is_gpu(const attn_device_info *d)
{
    return d->type == ATTN_DEVICE_INTEGRATED_GPU || d->type == ATTN_DEVICE_DISCRETE_GPU;
}

/* ---- options ---------------------------------------------------------------------------*/

typedef struct probe_opts {
    bool json, verify, bench, help;
    bool tune, tune_dry_run, tune_no_decode;
    probe_tune_opts t;
    bool have_backend, have_device;
    attn_backend backend;
    uint32_t device;
} probe_opts;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: attn-probe [--json] [--verify] [--bench] [--backend B] [--device N]\n"
            "       attn-probe --tune [--backend B] [--device N] [--tune-seconds S]\n"
            "                  [--tune-head-dim D[,D...]] [--tune-dtype f32|f16]\n"
            "                  [--tune-tokens N] [--tune-no-decode] [--tune-dry-run]\n"
            "Lists every device libattn can use and what attention does on it.\n"
            "\n"
            "  (no flags)    one block per device: capabilities, the kernel family and tiles the\n"
            "                planner picks for head_dim 64 and 128, the largest head_dim, and the\n"
            "                longest context that runs in one pass in the device's memory\n"
            "  --verify      run a small set of problems (dense, causal, GQA, f16 storage, odd\n"
            "                head_dim, q_len != kv_len, padding, fully masked rows) on each\n"
            "                device and compare with the reference backend or hand-computed\n"
            "                answers; PASS/FAIL per device; exit 1 if any device fails\n"
            "  --bench       prefill and decode GFLOP/s and the JIT time per device (skips the\n"
            "                reference backend unless --backend reference); kernels already in\n"
            "                libattn's disk cache load instead: ATTN_CACHE_DIR=$(mktemp -d)\n"
            "                times a cold JIT\n"
            "  --json        the same as one JSON document on stdout\n"
            "  --tune        autotune each selected device (not the reference): time candidate\n"
            "                tiles per kernel family, head-dim class and dtype (8 heads x 1024\n"
            "                tokens), check them against the built-in choice, print them all and\n"
            "                store the winners in the tuning database of the cache directory\n"
            "                ($ATTN_CACHE_DIR, else $XDG_CACHE_HOME/attn, else ~/.cache/attn)\n"
            "  --tune-seconds S     time budget per device (default 300); later candidates\n"
            "                       are skipped and listed\n"
            "  --tune-head-dim D    only the classes holding these head dims (16, 32, 64, 128,\n"
            "                       256; a comma-separated list)\n"
            "  --tune-dtype T       only f32 or f16 storage\n"
            "  --tune-tokens N      prefill problem length (default 1024)\n"
            "  --tune-no-decode     skip the decode kernel's splits\n"
            "  --tune-dry-run       measure and print, store nothing\n"
            "  --backend B   only devices of backend B: opencl | vulkan | reference\n"
            "  --device N    only device N: the index within --backend if given, else the\n"
            "                device number of the listing\n"
            "  --help        this text\n"
            "\n"
            "Options take their value as '--flag N' or '--flag=N'.\n"
            "Exit status: 0 success (also when no device is present), 1 a failed --verify or\n"
            "--bench, or a library error, 2 bad usage.\n");
}

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "attn-probe: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'attn-probe --help' for the list of options.\n");
    return EXIT_USAGE;
}

/* --tune-seconds / --tune-head-dim / --tune-dtype / --tune-tokens. */
static int parse_tune_option(const char *name, size_t len, const char *value, probe_tune_opts *t)
{
    char *end = NULL;
    errno = 0;
    if (len == 12 && !strncmp(name, "tune-seconds", 12)) {
        double v = strtod(value, &end);
        if (end == value || *end || errno || !(v > 0 && v < 1e6))
            return usage_error("invalid --tune-seconds '%s' (a positive number)", value);
        t->seconds = v;
    } else if (len == 13 && !strncmp(name, "tune-head-dim", 13)) {
        for (const char *p = value; *p; p = *end ? end + 1 : end) {
            unsigned long d = strtoul(p, &end, 10);
            if (end == p || (*end && *end != ',') || d < 1 || d > ATTN_MAX_HEAD_DIM)
                return usage_error("invalid --tune-head-dim '%s' (head dims 1..256, commas)", value);
            int c = 0;
            while ((16ul << c) < d)
                c++;
            t->head_dims |= 1u << c;
        }
    } else if (len == 10 && !strncmp(name, "tune-dtype", 10)) {
        if (strcmp(value, "f32") && strcmp(value, "f16"))
            return usage_error("invalid --tune-dtype '%s' (f32 or f16)", value);
        t->dtypes |= 1u << (strcmp(value, "f16") ? ATTN_DTYPE_F32 : ATTN_DTYPE_F16);
    } else if (len == 11 && !strncmp(name, "tune-tokens", 11)) {
        unsigned long long v = strtoull(value, &end, 10);
        if (!(*value >= '0' && *value <= '9') || *end || errno || v < 1 || v > (1u << 20))
            return usage_error("invalid --tune-tokens '%s' (1..1048576)", value);
        t->tokens = (int64_t)v;
    } else {
        char opt[64];
        snprintf(opt, sizeof opt, "--%.*s", (int)len, name);
        return usage_error("unknown option '%s'", opt);
    }
    return 0;
}

static int parse_args(int argc, char **argv, probe_opts *o)
{
    memset(o, 0, sizeof *o);
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            o->help = true;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0 || !arg[2])
            return usage_error("unexpected argument '%s'", arg);
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        bool *flag = len == 4 && !strncmp(name, "json", 4)            ? &o->json
                     : len == 6 && !strncmp(name, "verify", 6)        ? &o->verify
                     : len == 5 && !strncmp(name, "bench", 5)         ? &o->bench
                     : len == 4 && !strncmp(name, "tune", 4)          ? &o->tune
                     : len == 12 && !strncmp(name, "tune-dry-run", 12) ? &o->tune_dry_run
                     : len == 14 && !strncmp(name, "tune-no-decode", 14) ? &o->tune_no_decode
                                                                      : NULL;
        if (flag) {
            if (eq)
                return usage_error("option '%s' takes no value", arg);
            *flag = true;
            continue;
        }
        bool is_backend = len == 7 && !strncmp(name, "backend", 7);
        bool is_device = len == 6 && !strncmp(name, "device", 6);
        bool is_tune = len > 5 && !strncmp(name, "tune-", 5);
        if (!is_backend && !is_device && !is_tune)
            return usage_error("unknown option '%s'", arg);
        const char *value = eq ? eq + 1 : i + 1 < argc ? argv[++i] : NULL;
        if (!value)
            return usage_error("option '%s' needs a value", arg);
        if (is_tune) {
            int rc = parse_tune_option(name, len, value, &o->t);
            if (rc)
                return rc;
        } else if (is_backend) {
            const probe_backend *b = NULL;
            for (size_t k = 0; k < PROBE_NUM_BACKENDS; k++)
                if (!strcmp(value, probe_backends[k].word))
                    b = &probe_backends[k];
            if (!b)
                return usage_error("invalid backend '%s' (one of: opencl, vulkan, reference)",
                                   value);
            o->have_backend = true;
            o->backend = b->id;
        } else {
            char *end = NULL;
            errno = 0;
            unsigned long long v = strtoull(value, &end, 10);
            if (!(*value >= '0' && *value <= '9') || errno || *end || v > UINT32_MAX)
                return usage_error("invalid device number '%s' (a number from 0)", value);
            o->have_device = true;
            o->device = (uint32_t)v;
        }
    }
    bool tune_opts = o->tune_dry_run || o->tune_no_decode || o->t.seconds > 0 || o->t.head_dims ||
                     o->t.dtypes || o->t.tokens;
    if (tune_opts && !o->tune)
        return usage_error("%s", "the --tune-* options need --tune");
    if (o->tune && (o->json || o->verify || o->bench))
        return usage_error("%s", "--tune runs on its own (not with --json, --verify or --bench)");
    o->t.decode = !o->tune_no_decode;
    o->t.store = !o->tune_dry_run;
    return 0;
}

/* ---- text report -----------------------------------------------------------------------*/

static const char *fmt_bytes(uint64_t b, char *buf, size_t size)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
    if (b < 1024) {
        snprintf(buf, size, "%" PRIu64 " bytes", b);
        return buf;
    }
    double v = (double)b / 1024.0;
    int u = 0;
    while (v >= 1024.0 && u < 3) {
        v /= 1024.0;
        u++;
    }
    snprintf(buf, size, v == floor(v) ? "%.0f %s" : "%.2f %s", v, units[u]);
    return buf;
}

/* 1234567 -> "1,234,567" */
static const char *fmt_count(int64_t n, char *buf, size_t size)
{
    char digits[32];
    int len = snprintf(digits, sizeof digits, "%" PRId64, n), o = 0;
    for (int i = 0; i < len && (size_t)o + 2 < size; i++) {
        if (i > 0 && digits[i - 1] != '-' && (len - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
    return buf;
}

static const char *yes_no(int v) { return v ? "yes" : "no"; }

static const char *limit_title(const char *why)
{
    if (!why)
        return "?";
    if (!strcmp(why, "memory_budget"))
        return "the memory budget";
    if (!strcmp(why, "max_alloc"))
        return "the largest single allocation";
    if (!strcmp(why, "max_binding"))
        return "the largest binding range";
    if (!strcmp(why, "plan_error"))
        return "the library";
    if (!strcmp(why, "no_scheduler"))
        return "the lack of a scheduler";
    return "the end of the search (2^31 tokens)";
}

#define ROW "  %-26s "  /* a device field */
#define AROW "    %-24s " /* an attention fact, under its heading */

static void print_device_header(const probe_device *pd)
{
    const attn_device_info *i = &pd->info;
    printf("Device %" PRIu32 ": %s [%s #%" PRIu32 "]\n", pd->number, i->name,
           probe_backend_of(i->backend)->title, i->index);
}

static void print_facts(const probe_device *pd)
{
    const probe_facts *f = &pd->facts;
    const attn_device_info *dev = &pd->info;
    char b1[32], b2[32], b3[32], n1[32];
    const char *env = getenv("ATTN_KERNEL_FAMILY");
    printf("  attention (f32, batch 1, 8 heads; the planner's choice%s%s)\n",
           env && *env ? ", forced by ATTN_KERNEL_FAMILY=" : "", env && *env ? env : "");
    if (!f->ok) {
        printf(AROW "%s\n", "error", f->error);
        return;
    }
    for (int k = 0; k < 2; k++) {
        const probe_plan_fact *p = &f->plans[k];
        char label[32];
        snprintf(label, sizeof label, "head_dim %" PRId64, p->head_dim);
        if (!p->ok)
            printf(AROW "not supported: %s\n", label, p->error);
        else if (dev->backend == ATTN_BACKEND_REFERENCE)
            printf(AROW "no kernel: exact attention on the host (%s)\n", label, p->info.kernel);
        else
            printf(AROW "%s family: block_m %" PRIu32 ", block_n %" PRIu32 ", vec_width %" PRIu32
                       ", work-group %" PRIu32 ", %s (plan %.0f ms%s%s)\n",
                   label, probe_family_word(p->info.family), p->info.block_m, p->info.block_n,
                   p->info.vec_width, p->info.work_group_size, p->info.kernel, p->ms,
                   p->info.tune_source ? "; tuned: " : "",
                   p->info.tune_source ? probe_tune_source_word(p->info.tune_source) : "");
    }
    if (f->max_head_dim > 0)
        printf(AROW "%" PRId64 "%s%s%s\n", "largest head_dim", f->max_head_dim,
               f->max_head_dim < ATTN_MAX_HEAD_DIM ? " (" : "",
               f->max_head_dim < ATTN_MAX_HEAD_DIM ? f->max_head_dim_note : "",
               f->max_head_dim < ATTN_MAX_HEAD_DIM ? ")" : "");
    else
        printf(AROW "none works: %s\n", "largest head_dim", f->max_head_dim_note);
    const probe_one_pass *op = &f->one_pass;
    const char *cap = getenv("ATTN_MEMORY_BUDGET");
    printf(AROW "%s%s%s%s\n", "memory budget", fmt_bytes(f->memory_budget, b1, sizeof b1),
           cap && *cap ? " (ATTN_MEMORY_BUDGET=" : "", cap && *cap ? cap : "",
           cap && *cap ? ")" : "");
    if (op->tokens > 0)
        printf(AROW "%s tokens (head_dim %d, causal): needs %s\n" AROW
                   "largest tensor %s; limited by %s\n",
               "one-pass context", fmt_count(op->tokens, n1, sizeof n1), ONE_PASS_DIM,
               fmt_bytes(op->device_bytes, b2, sizeof b2), "",
               fmt_bytes(op->largest_tensor, b3, sizeof b3), limit_title(op->limited_by));
    else
        printf(AROW "none: not even 1 token fits (%s%s%s)\n", "one-pass context",
               limit_title(op->limited_by), op->error[0] ? ": " : "", op->error);
    const probe_sched *sc = &f->sched;
    if (dev->backend == ATTN_BACKEND_REFERENCE)
        printf(AROW "no scheduler: the reference computes in host memory\n", "beyond one pass");
    else if (!sc->known)
        printf(AROW "not yet: one pass only (scheduler pending)\n", "beyond one pass");
    else
        printf(AROW "the scheduler: up to %s tokens, in segments of %" PRIu32 " rows x chunks "
                    "of %" PRIu32 " keys\n" AROW "needs at least %s of device memory; limited by "
                    "%s%s%s\n",
               "beyond one pass", fmt_count(sc->max_tokens, n1, sizeof n1), sc->segment_rows,
               sc->chunk_keys, "", fmt_bytes(sc->min_device_bytes, b1, sizeof b1),
               limit_title(sc->limited_by), sc->note[0] ? ": " : "", sc->note);
    printf(AROW "unknown (not reported by libattn)\n", "quirk flags");
}

static void print_device(const probe_device *pd)
{
    const attn_device_info *i = &pd->info;
    char b[32];
    uint32_t count = 0;
    attn_device_count(i->backend, &count);
    print_device_header(pd);
    printf(ROW "%s, device %" PRIu32 " of %" PRIu32 "; %s\n", "backend",
           probe_backend_of(i->backend)->title, i->index, count, i->api_version);
    printf(ROW "%s\n", "platform", i->platform);
    printf(ROW "%s\n", "driver version", i->driver_version);
    if (i->vendor_id)
        printf(ROW "%s (vendor id 0x%04" PRIx32 ")\n", "vendor", i->vendor, i->vendor_id);
    else
        printf(ROW "%s\n", "vendor", i->vendor);
    printf(ROW "%s\n", "type", type_title(i->type));
    if (i->compute_units)
        printf(ROW "%" PRIu32 "\n", "compute units", i->compute_units);
    else
        printf(ROW "unknown\n", "compute units");
    printf(ROW "%s\n", "global memory",
           i->global_mem_bytes ? fmt_bytes(i->global_mem_bytes, b, sizeof b) : "unknown");
    printf(ROW "%s\n", "max single allocation", fmt_bytes(i->max_alloc_bytes, b, sizeof b));
    /* max_binding_bytes is what one kernel argument may address through libattn: on
     * Vulkan, several windows of maxStorageBufferRange, so it is not that limit itself. */
    printf(ROW "%s\n", "max binding range", fmt_bytes(i->max_binding_bytes, b, sizeof b));
    if (i->backend == ATTN_BACKEND_VULKAN)
        printf(ROW "unknown (not reported by libattn)\n", "maxStorageBufferRange");
    printf(ROW "%s\n", "local/shared memory",
           i->local_mem_bytes ? fmt_bytes(i->local_mem_bytes, b, sizeof b) : "none");
    printf(ROW "%" PRIu32 "\n", "max work-group size", i->max_work_group_size);
    if (i->subgroup_size)
        printf(ROW "%" PRIu32 "\n", "subgroup size", i->subgroup_size);
    else
        printf(ROW "unknown\n", "subgroup size");
    if (i->subgroup_ops)
        printf(ROW "%s%s%s\n", "subgroup operations",
               (i->subgroup_ops & ATTN_SUBGROUP_VOTE) ? "vote " : "",
               (i->subgroup_ops & ATTN_SUBGROUP_BALLOT) ? "ballot " : "",
               (i->subgroup_ops & ATTN_SUBGROUP_SHUFFLE) ? "shuffle" : "");
    else
        printf(ROW "none usable\n", "subgroup operations");
    printf(ROW "%s\n", "f16 compute", yes_no(i->fp16_compute));
    printf(ROW "%s\n", "f16 storage", yes_no(i->fp16_storage));
    printf(ROW "%s\n", "f64", yes_no(i->fp64));
    printf(ROW "unknown (not reported by libattn)\n", "integer dot product");
    printf(ROW "unknown (not reported by libattn)\n", "cooperative matrix");
    printf(ROW "%s\n", "unified memory", yes_no(i->unified_memory));
    if (pd->have_facts)
        print_facts(pd);
    printf("\n");
}

static void print_bench(const probe_device *pd)
{
    const bench_result *r = &pd->bench;
    if (!r->ran) {
        printf("  bench: skipped: %s\n", r->skipped);
        return;
    }
    for (int k = 0; k < 2; k++) {
        const bench_shape_result *s = &r->shapes[k];
        char shape[96];
        snprintf(shape, sizeof shape, "%s B%" PRId64 " H%" PRId64 "/%" PRId64 " q%" PRId64
                 " kv%" PRId64 " d%" PRId64 " f32", s->name, s->batch, s->heads, s->kv_heads,
                 s->q_len, s->kv_len, s->head_dim);
        if (!s->ran)
            printf("    %-36s FAILED: %s\n", shape, s->error);
        else
            printf("    %-36s %8.2f GFLOP/s  median %.3f ms of 3\n"
                   "    %-36s plan+JIT %.0f ms: %" PRIu64 " compiled, %" PRIu64 " from the disk "
                   "cache; %s family, %s\n",
                   shape, s->gflops, s->ms_median, "", s->plan_ms, s->kernels_compiled,
                   s->disk_cache_hits, probe_family_word(s->family), s->kernel);
    }
}

/* ---- main ------------------------------------------------------------------------------*/

/* Every device in listing order into *out (NULL when none). False: out of memory. */
static bool enumerate(probe_device **out, uint32_t *n)
{
    uint32_t count = 0;
    *out = NULL;
    *n = 0;
    attn_status s = attn_device_count(ATTN_BACKEND_AUTO, &count);
    if (s != ATTN_OK || count == 0) {
        if (s != ATTN_OK)
            fprintf(stderr, "attn-probe: attn_device_count: %s: %s\n", attn_status_name(s),
                    attn_last_detail());
        return true;
    }
    probe_device *devs = calloc(count, sizeof *devs);
    if (!devs)
        return false;
    for (uint32_t i = 0; i < count; i++) {
        probe_device *pd = &devs[*n];
        pd->info.struct_size = sizeof pd->info;
        s = attn_device_get_info(ATTN_BACKEND_AUTO, i, &pd->info);
        if (s != ATTN_OK) {
            fprintf(stderr, "attn-probe: device %" PRIu32 ": attn_device_get_info: %s: %s\n", i,
                    attn_status_name(s), attn_last_detail());
            continue;
        }
        pd->number = i;
        (*n)++;
    }
    *out = devs;
    return true;
}

static void print_summary(const probe_device *devs, uint32_t n)
{
    uint32_t gpus = 0, api_devices = 0;
    for (uint32_t i = 0; i < n; i++) {
        gpus += probe_is_gpu(&devs[i].info);
        api_devices += devs[i].info.backend != ATTN_BACKEND_REFERENCE;
    }
    printf("attn-probe %s: %" PRIu32 " device%s (", attn_version_string(), n, n == 1 ? "" : "s");
    for (size_t b = 0; b < PROBE_NUM_BACKENDS; b++) {
        uint32_t c = 0;
        attn_device_count(probe_backends[b].id, &c);
        printf("%s%s %" PRIu32 "%s", b ? ", " : "", probe_backends[b].title, c,
               probe_backends[b].built ? "" : " (backend not built)");
    }
    printf(")\n");
    if (!api_devices)
        printf("No OpenCL or Vulkan device found: no GPU devices; only the reference backend "
               "(host) is available.\n");
    else if (!gpus)
        printf("GPUs: none found (no integrated or discrete GPU; the devices below are CPU "
               "or other).\n");
    else
        printf("GPUs: %" PRIu32 "\n", gpus);
    printf("\n");
}

int main(int argc, char **argv)
{
    probe_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc)
        return rc;
    if (o.help) {
        usage(stdout);
        return 0;
    }

    uint32_t total = 0, n = 0;
    probe_device *all = NULL;
    if (!enumerate(&all, &total)) {
        fprintf(stderr, "attn-probe: out of memory\n");
        return 1;
    }
    /* Select in place: --backend, then --device within it (or within the listing). */
    uint32_t in_backend = 0;
    for (uint32_t i = 0; i < total; i++) {
        const probe_device *pd = &all[i];
        if (o.have_backend && pd->info.backend != o.backend)
            continue;
        in_backend++;
        if (o.have_device && (o.have_backend ? pd->info.index : pd->number) != o.device)
            continue;
        all[n++] = *pd;
    }
    if (n == 0 && o.have_device && in_backend > 0) {
        fprintf(stderr,
                "attn-probe: no device %" PRIu32 " %s%s (there %s %" PRIu32 "; see attn-probe "
                "without --device)\n",
                o.device, o.have_backend ? "in backend " : "in the listing",
                o.have_backend ? probe_backend_of(o.backend)->word : "",
                in_backend == 1 ? "is" : "are", in_backend);
        free(all);
        return EXIT_USAGE;
    }
    if (n == 0) {
        /* Not an error: a machine without a driver is an answer, not a failure. */
        const probe_backend *b = o.have_backend ? probe_backend_of(o.backend) : NULL;
        fprintf(o.json ? stderr : stdout, "attn-probe: no %s device found%s\n",
                b ? b->title : "attention",
                !b ? "" : b->built ? " (no driver, or no device, visible to its loader)"
                                   : " (this libattn was built without it)");
    }

    if (o.tune) {
        int failed_tune = 0;
        for (uint32_t i = 0; i < n; i++) {
            print_device_header(&all[i]);
            if (all[i].info.backend == ATTN_BACKEND_REFERENCE)
                printf("  tune: skipped: the reference backend has no tiles to tune\n");
            else
                failed_tune |= probe_tune(all[i].info.backend, all[i].info.index, &o.t);
            printf("\n");
            fflush(stdout);
        }
        free(all);
        return failed_tune ? 1 : 0;
    }

    const bool listing = !o.verify && !o.bench;
    const bool bench_ref = o.have_backend && o.backend == ATTN_BACKEND_REFERENCE;
    bool failed = false, verify_failed = false;
    if (!o.json && listing && n > 0)
        print_summary(all, n);
    bool has_ref = false;
    for (uint32_t i = 0; i < n; i++)
        has_ref |= all[i].info.backend == ATTN_BACKEND_REFERENCE;
    if (!o.json && o.bench && has_ref && !bench_ref)
        printf("--bench skips the reference backend (slow by design); --backend reference "
               "runs it.\n\n");

    for (uint32_t i = 0; i < n; i++) {
        probe_device *pd = &all[i];
        if (listing) {
            pd->have_facts = true;
            probe_attention(&pd->info, &pd->facts);
            if (!o.json)
                print_device(pd);
            fflush(stdout);
            continue;
        }
        if (!o.json) {
            print_device_header(pd);
            fflush(stdout); /* a first-time compile can take a while: show where it is */
        }
        if (o.verify) {
            if (!o.json)
                printf("  verify (%s)\n", pd->info.backend == ATTN_BACKEND_REFERENCE
                                              ? "against hand-computed answers"
                                              : "kernel family chosen by the planner");
            probe_verify(pd->info.backend, pd->info.index, o.json ? NULL : stdout, &pd->verify);
            verify_failed |= !pd->verify.pass;
            if (!o.json)
                printf("  => %" PRIu32 " problems, %" PRIu32 " failed, max |err| %.2e "
                       "(%.3g of the tolerance), %s: %s\n",
                       pd->verify.num_cases, pd->verify.num_failed, pd->verify.max_err,
                       pd->verify.worst_of_tol,
                       pd->info.backend == ATTN_BACKEND_REFERENCE ? "no kernel (host)"
                       : pd->verify.family == ATTN_FAMILY_GPU     ? "gpu family"
                       : pd->verify.family == ATTN_FAMILY_CPU     ? "cpu family"
                                                                  : "no plan",
                       pd->verify.pass ? "PASS" : "FAIL");
        }
        if (o.bench) {
            if (pd->info.backend == ATTN_BACKEND_REFERENCE && !bench_ref) {
                memset(&pd->bench, 0, sizeof pd->bench);
                snprintf(pd->bench.skipped, sizeof pd->bench.skipped,
                         "the reference backend is slow by design (use --backend reference)");
            } else {
                if (!o.json)
                    printf("  bench (f32, library buffers, median of 3 runs after a warm-up)\n");
                probe_bench(pd->info.backend, pd->info.index, &pd->bench);
                for (int k = 0; k < 2; k++)
                    failed |= !pd->bench.shapes[k].ran;
            }
            if (!o.json)
                print_bench(pd);
        }
        if (!o.json)
            printf("\n");
        fflush(stdout);
    }

    if (o.json)
        probe_json_report(stdout, all, n, o.verify, o.bench, !verify_failed);
    free(all);
    if (fflush(stdout) != 0) {
        fprintf(stderr, "attn-probe: writing the report failed: %s\n", strerror(errno));
        return 1;
    }
    return failed || verify_failed ? 1 : 0;
}
