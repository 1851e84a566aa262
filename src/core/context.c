/* context.c — contexts: device choice, budget, detail messages and logging, statistics,
 * and the accounting allocator every device allocation goes through. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/context.h"
#include "core/plan.h"

/* ---- status table ------------------------------------------------------------------- */
const char *attn_status_name(attn_status s)
{
    switch (s) {
#define ATTN__STATUS_NAME(name, value, msg)                                                    \
    case ATTN_##name:                                                                          \
        return "ATTN_" #name;
        ATTN_STATUS_MAP(ATTN__STATUS_NAME)
#undef ATTN__STATUS_NAME
    }
    return "ATTN_UNKNOWN_STATUS";
}

const char *attn_status_string(attn_status s)
{
    switch (s) {
#define ATTN__STATUS_MSG(name, value, msg)                                                     \
    case ATTN_##name:                                                                          \
        return msg;
        ATTN_STATUS_MAP(ATTN__STATUS_MSG)
#undef ATTN__STATUS_MSG
    }
    return "unknown status code";
}

uint32_t attn_version_number(void) { return ATTN_VERSION_NUMBER; }
const char *attn_version_string(void) { return ATTN_VERSION_STRING; }

/* ---- detail messages ------------------------------------------------------------------ */
static _Thread_local char *thread_detail;

const char *attn_last_detail(void) { return thread_detail ? thread_detail : ""; }

void attn__strlcpy(char *dst, const char *src, size_t dst_size)
{
    if (!dst_size)
        return;
    size_t n = src ? strlen(src) : 0;
    if (n >= dst_size)
        n = dst_size - 1;
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
}

static char *vformat(const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (s)
        vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

static void set_thread_detail(const char *msg)
{
    char *copy = msg ? strdup(msg) : NULL;
    free(thread_detail);
    thread_detail = copy;
}

static attn_status record_failure(attn_context *ctx, attn_status status, const char *fmt,
                                  va_list ap)
{
    char *body = vformat(fmt, ap);
    const char *text = body ? body : attn_status_string(status);
    char *msg = NULL;
    size_t n = strlen(text) + strlen(attn_status_name(status)) + 4;
    msg = malloc(n);
    if (msg)
        snprintf(msg, n, "%s: %s", attn_status_name(status), text);
    set_thread_detail(msg ? msg : text);
    if (ctx) {
        pthread_mutex_lock(&ctx->lock);
        free(ctx->detail);
        ctx->detail = msg ? strdup(msg) : NULL;
        pthread_mutex_unlock(&ctx->lock);
        attn__log(ctx, ATTN_LOG_ERROR, "%s", msg ? msg : text);
    }
    free(msg);
    free(body);
    return status;
}

attn_status attn__fail(attn_context *ctx, attn_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    record_failure(ctx, status, fmt, ap);
    va_end(ap);
    return status;
}

attn_status attn__fail_thread(attn_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    record_failure(NULL, status, fmt, ap);
    va_end(ap);
    return status;
}

void attn__log(attn_context *ctx, attn_log_level level, const char *fmt, ...)
{
    if (!ctx || !ctx->params.log_fn || level > ctx->params.log_level)
        return;
    va_list ap;
    va_start(ap, fmt);
    char *msg = vformat(fmt, ap);
    va_end(ap);
    if (msg)
        ctx->params.log_fn(ctx->params.log_user, level, msg);
    free(msg);
}

const char *attn_context_detail(const attn_context *ctx)
{
    if (!ctx)
        return "";
    return ctx->detail ? ctx->detail : "";
}

/* ---- backends ----------------------------------------------------------------------- */
const attn__backend_ops *const attn__backends[3] = {&attn__opencl_ops, &attn__vulkan_ops,
                                                    &attn__reference_ops};

const attn__backend_ops *attn__backend_by_id(attn_backend id)
{
    for (size_t i = 0; i < 3; ++i)
        if (attn__backends[i]->id == id)
            return attn__backends[i];
    return NULL;
}

/* AUTO: a discrete GPU, else an integrated one, else the first OpenCL device, else the
 * first Vulkan device, else the reference. */
static void pick_auto_device(const attn__backend_ops **ops, uint32_t *index)
{
    int best_rank = -1;
    for (size_t bi = 0; bi < 2; ++bi) {
        uint32_t n = 0;
        if (attn__backends[bi]->device_count(&n) != ATTN_OK)
            continue;
        for (uint32_t i = 0; i < n; ++i) {
            attn_device_info info;
            memset(&info, 0, sizeof info);
            info.struct_size = sizeof info;
            if (attn__backends[bi]->device_info(i, &info) != ATTN_OK)
                continue;
            int rank = info.type == ATTN_DEVICE_DISCRETE_GPU   ? 40
                       : info.type == ATTN_DEVICE_INTEGRATED_GPU ? 30
                                                                 : 20 - (int)bi;
            if (rank > best_rank) {
                best_rank = rank;
                *ops = attn__backends[bi];
                *index = i;
            }
        }
    }
    if (best_rank < 0) {
        *ops = &attn__reference_ops;
        *index = 0;
    }
}

/* Parses "123", "64MiB", "2G", "512k" (binary units). Returns 0 on error. */
static uint64_t parse_bytes(const char *s)
{
    if (!s || !*s)
        return 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s)
        return 0;
    while (*end == ' ')
        ++end;
    uint64_t mul = 1;
    switch (toupper((unsigned char)*end)) {
    case 'K': mul = 1ull << 10; break;
    case 'M': mul = 1ull << 20; break;
    case 'G': mul = 1ull << 30; break;
    case 'T': mul = 1ull << 40; break;
    case '\0': break;
    default: return 0;
    }
    if (v > UINT64_MAX / mul)
        return 0;
    return v * mul;
}

static attn_kernel_family family_from_env(void)
{
    const char *e = getenv("ATTN_KERNEL_FAMILY");
    if (!e)
        return ATTN_FAMILY_AUTO;
    if (!strcmp(e, "cpu"))
        return ATTN_FAMILY_CPU;
    if (!strcmp(e, "gpu"))
        return ATTN_FAMILY_GPU;
    return ATTN_FAMILY_AUTO;
}

static char *default_cache_dir(const char *given)
{
    const char *e;
    char buf[4096];
    if (given)
        return *given ? strdup(given) : NULL;
    if ((e = getenv("ATTN_CACHE_DIR")))
        return *e ? strdup(e) : NULL;
    if ((e = getenv("XDG_CACHE_HOME")) && *e) {
        snprintf(buf, sizeof buf, "%s/attn", e);
        return strdup(buf);
    }
    if ((e = getenv("HOME")) && *e) {
        snprintf(buf, sizeof buf, "%s/.cache/attn", e);
        return strdup(buf);
    }
    return NULL;
}

/* Validates params into *p (defaults where NULL). */
static attn_status read_params(const attn_context_params *params, attn_context_params *p)
{
    attn_context_params defaults = ATTN_CONTEXT_PARAMS_INIT;
    *p = defaults;
    if (params) {
        if (ATTN__BAD_STRUCT_SIZE(params, attn_context_params))
            return attn__fail_thread(ATTN_ERROR_STRUCT_SIZE,
                                     "attn_context_params.struct_size is %zu; expected %zu "
                                     "(use ATTN_CONTEXT_PARAMS_INIT)",
                                     params->struct_size, sizeof(attn_context_params));
        memcpy(p, params, sizeof *p);
        p->struct_size = sizeof *p;
    }
    if ((unsigned)p->backend > ATTN_BACKEND_VULKAN)
        return attn__fail_thread(ATTN_ERROR_INVALID_ARGUMENT, "unknown backend %d",
                                 (int)p->backend);
    if ((unsigned)p->kernel_family > ATTN_FAMILY_GPU)
        return attn__fail_thread(ATTN_ERROR_INVALID_ARGUMENT, "unknown kernel family %d",
                                 (int)p->kernel_family);
    if ((unsigned)p->log_level > ATTN_LOG_DEBUG)
        return attn__fail_thread(ATTN_ERROR_INVALID_ARGUMENT, "unknown log level %d",
                                 (int)p->log_level);
    return ATTN_OK;
}

static attn_context *new_context(const attn_context_params *p, const attn__backend_ops *ops)
{
    attn_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return NULL;
    ctx->params = *p;
    ctx->params.backend = ops->id;
    ctx->ops = ops;
    ctx->cache_dir = default_cache_dir(p->cache_dir);
    ctx->params.cache_dir = ctx->cache_dir;
    pthread_mutex_init(&ctx->lock, NULL);
    return ctx;
}

/* Once the device is open: kernel family, budget, statistics. */
static void finish_context(attn_context *ctx)
{
    const attn_context_params *p = &ctx->params;
    ctx->family = p->kernel_family != ATTN_FAMILY_AUTO ? p->kernel_family : family_from_env();
    uint64_t budget = ctx->info.global_mem_bytes;
    uint64_t cap = p->memory_budget ? p->memory_budget : parse_bytes(getenv("ATTN_MEMORY_BUDGET"));
    if (cap && (!budget || cap < budget))
        budget = cap;
    ctx->budget = budget ? budget : UINT64_MAX;
    ctx->stats.struct_size = sizeof ctx->stats;
    ctx->stats.memory_budget = ctx->budget;
    attn__log(ctx, ATTN_LOG_INFO, "attn %s: %s device %u: %s (budget %llu bytes)",
              ATTN_VERSION_STRING, ctx->ops->name, ctx->info.index, ctx->info.name,
              (unsigned long long)ctx->budget);
}

attn_status attn_context_create(const attn_context_params *params, attn_context **out)
{
    if (!out)
        return attn__fail_thread(ATTN_ERROR_NULL_POINTER, "attn_context_create: out is NULL");
    *out = NULL;
    attn_context_params p;
    attn_status st = read_params(params, &p);
    if (st != ATTN_OK)
        return st;

    const attn__backend_ops *ops = NULL;
    uint32_t index = p.device_index;
    if (p.backend == ATTN_BACKEND_AUTO)
        pick_auto_device(&ops, &index);
    else
        ops = attn__backend_by_id(p.backend);

    attn_context *ctx = new_context(&p, ops);
    if (!ctx)
        return attn__fail_thread(ATTN_ERROR_OUT_OF_HOST_MEMORY, "allocating the context");
    uint32_t count = 0;
    st = ops->device_count(&count);
    if (st == ATTN_OK && index >= count)
        st = attn__fail(ctx, ATTN_ERROR_NO_DEVICE,
                        "backend %s has %u device(s); device_index %u does not exist", ops->name,
                        count, index);
    if (st == ATTN_OK) {
        ctx->info.struct_size = sizeof ctx->info;
        st = ops->device_info(index, &ctx->info);
        ctx->info.backend = ops->id;
        ctx->info.index = index;
    }
    if (st == ATTN_OK)
        st = ops->open(ctx, index, &ctx->dev);
    if (st != ATTN_OK) {
        attn_context_destroy(ctx);
        return st;
    }
    finish_context(ctx);
    *out = ctx;
    return ATTN_OK;
}

attn_status attn__context_create_native(const attn_context_params *params, attn_backend backend,
                                        const void *native, attn_context **out)
{
    if (!out)
        return attn__fail_thread(ATTN_ERROR_NULL_POINTER, "interop context: out is NULL");
    *out = NULL;
    attn_context_params p;
    attn_status st = read_params(params, &p);
    if (st != ATTN_OK)
        return st;
    const attn__backend_ops *ops = attn__backend_by_id(backend);
    if (!ops || !ops->open_native)
        return attn__fail_thread(ATTN_ERROR_UNSUPPORTED,
                                 "this build has no interop for backend %d", (int)backend);
    attn_context *ctx = new_context(&p, ops);
    if (!ctx)
        return attn__fail_thread(ATTN_ERROR_OUT_OF_HOST_MEMORY, "allocating the context");
    st = ops->open_native(ctx, native, &ctx->info, &ctx->dev);
    if (st != ATTN_OK) {
        attn_context_destroy(ctx);
        return st;
    }
    ctx->info.struct_size = sizeof ctx->info;
    ctx->info.backend = ops->id;
    finish_context(ctx);
    *out = ctx;
    return ATTN_OK;
}

void attn_context_destroy(attn_context *ctx)
{
    if (!ctx)
        return;
    while (ctx->plans)
        attn_plan_destroy(ctx->plans);
    while (ctx->buffers)
        attn_buffer_destroy(ctx->buffers);
    for (attn__kcache_entry *e = ctx->kcache, *next; e; e = next) {
        next = e->next;
        for (uint32_t i = 0; i < e->num_kernels; ++i)
            ctx->ops->kernel_free(ctx->dev, e->kernels[i]);
        free(e->key);
        free(e);
    }
    if (ctx->dev)
        ctx->ops->close(ctx->dev);
    pthread_mutex_destroy(&ctx->lock);
    free(ctx->detail);
    free(ctx->cache_dir);
    free(ctx);
}

attn_status attn_context_device_info(const attn_context *ctx, attn_device_info *info)
{
    if (!ctx || !info)
        return attn__fail_thread(ATTN_ERROR_NULL_POINTER,
                                 "attn_context_device_info: ctx or info is NULL");
    if (ATTN__BAD_STRUCT_SIZE(info, attn_device_info))
        return attn__fail_thread(ATTN_ERROR_STRUCT_SIZE,
                                 "attn_device_info.struct_size is %zu; expected %zu",
                                 info->struct_size, sizeof(attn_device_info));
    size_t keep = info->struct_size;
    memcpy(info, &ctx->info, sizeof *info);
    info->struct_size = keep;
    return ATTN_OK;
}

attn_status attn_context_get_stats(const attn_context *ctx, attn_stats *stats)
{
    if (!ctx || !stats)
        return attn__fail_thread(ATTN_ERROR_NULL_POINTER,
                                 "attn_context_get_stats: ctx or stats is NULL");
    if (ATTN__BAD_STRUCT_SIZE(stats, attn_stats))
        return attn__fail_thread(ATTN_ERROR_STRUCT_SIZE,
                                 "attn_stats.struct_size is %zu; expected %zu",
                                 stats->struct_size, sizeof(attn_stats));
    size_t keep = stats->struct_size;
    pthread_mutex_lock((pthread_mutex_t *)&ctx->lock);
    memcpy(stats, &ctx->stats, sizeof *stats);
    pthread_mutex_unlock((pthread_mutex_t *)&ctx->lock);
    stats->struct_size = keep;
    return ATTN_OK;
}

attn_status attn_context_reset_stats(attn_context *ctx)
{
    if (!ctx)
        return attn__fail_thread(ATTN_ERROR_NULL_POINTER, "attn_context_reset_stats: ctx is NULL");
    pthread_mutex_lock(&ctx->lock);
    uint64_t now = ctx->stats.device_bytes;
    memset(&ctx->stats, 0, sizeof ctx->stats);
    ctx->stats.struct_size = sizeof ctx->stats;
    ctx->stats.device_bytes = now;
    ctx->stats.peak_device_bytes = now;
    ctx->stats.memory_budget = ctx->budget;
    pthread_mutex_unlock(&ctx->lock);
    return ATTN_OK;
}

/* ---- the accounting allocator ---------------------------------------------------------- */
attn_status attn__dev_alloc(attn_context *ctx, uint64_t bytes, void **handle)
{
    *handle = NULL;
    /* Test hook: ATTN_DEBUG_FAIL_ALLOC_ABOVE=N makes every allocation above N bytes fail
     * as a device out-of-memory would, so recovery paths can be tested on any device. */
    const char *inject = getenv("ATTN_DEBUG_FAIL_ALLOC_ABOVE");
    if (inject && *inject && bytes > parse_bytes(inject))
        return attn__fail(ctx, ATTN_ERROR_OUT_OF_DEVICE_MEMORY,
                          "injected allocation failure: %llu bytes > ATTN_DEBUG_FAIL_ALLOC_ABOVE",
                          (unsigned long long)bytes);
    if (bytes > ctx->info.max_alloc_bytes && ctx->info.max_alloc_bytes)
        return attn__fail(ctx, ATTN_ERROR_OUT_OF_DEVICE_MEMORY,
                          "a buffer of %llu bytes exceeds the device's largest allocation "
                          "(%llu bytes)",
                          (unsigned long long)bytes,
                          (unsigned long long)ctx->info.max_alloc_bytes);
    pthread_mutex_lock(&ctx->lock);
    const uint64_t now = ctx->stats.device_bytes;
    const int over = bytes > ctx->budget || now > ctx->budget - bytes;
    if (!over)
        ctx->stats.device_bytes += bytes; /* reserve before the (slow) allocation */
    pthread_mutex_unlock(&ctx->lock);
    if (over)
        return attn__fail(ctx, ATTN_ERROR_OVER_BUDGET,
                          "allocating %llu bytes would exceed the device-memory budget of "
                          "%llu bytes (%llu in use)",
                          (unsigned long long)bytes, (unsigned long long)ctx->budget,
                          (unsigned long long)now);
    attn_status st = ctx->ops->buffer_alloc(ctx->dev, bytes, handle);
    pthread_mutex_lock(&ctx->lock);
    if (st != ATTN_OK) {
        ctx->stats.device_bytes -= bytes;
        *handle = NULL;
    } else if (ctx->stats.device_bytes > ctx->stats.peak_device_bytes) {
        ctx->stats.peak_device_bytes = ctx->stats.device_bytes;
    }
    pthread_mutex_unlock(&ctx->lock);
    return st;
}

void attn__dev_free(attn_context *ctx, void *handle, uint64_t bytes)
{
    if (!handle)
        return;
    ctx->ops->buffer_free(ctx->dev, handle);
    pthread_mutex_lock(&ctx->lock);
    ctx->stats.device_bytes -= bytes;
    pthread_mutex_unlock(&ctx->lock);
}

static void count_upload(attn_context *ctx, uint64_t bytes)
{
    pthread_mutex_lock(&ctx->lock);
    ctx->stats.bytes_uploaded += bytes;
    pthread_mutex_unlock(&ctx->lock);
}

attn_status attn__dev_write(attn_context *ctx, void *handle, uint64_t offset, const void *src,
                            uint64_t bytes)
{
    if (!bytes)
        return ATTN_OK;
    attn_status st = ctx->ops->buffer_write(ctx->dev, handle, offset, src, bytes);
    if (st == ATTN_OK)
        count_upload(ctx, bytes);
    return st;
}

attn_status attn__dev_write_async(attn_context *ctx, void *handle, const void *src,
                                  uint64_t bytes, void *wait, void **event)
{
    attn_status st = ctx->ops->write_async(ctx->dev, handle, 0, src, bytes, wait ? &wait : NULL,
                                           wait ? 1u : 0u, event);
    if (st == ATTN_OK)
        count_upload(ctx, bytes);
    return st;
}

attn_status attn__dev_read(attn_context *ctx, void *handle, uint64_t offset, void *dst,
                           uint64_t bytes)
{
    if (!bytes)
        return ATTN_OK;
    attn_status st = ctx->ops->buffer_read(ctx->dev, handle, offset, dst, bytes);
    if (st == ATTN_OK) {
        pthread_mutex_lock(&ctx->lock);
        ctx->stats.bytes_downloaded += bytes;
        pthread_mutex_unlock(&ctx->lock);
    }
    return st;
}

attn_status attn__enqueue(attn_context *ctx, void *kernel, const attn__launch *l)
{
    attn_status st = ctx->ops->launch(ctx->dev, kernel, l);
    if (st == ATTN_OK) {
        pthread_mutex_lock(&ctx->lock);
        ctx->stats.launches++;
        pthread_mutex_unlock(&ctx->lock);
    }
    return st;
}

void attn__plan_link(attn_context *ctx, struct attn_plan *plan)
{
    pthread_mutex_lock(&ctx->lock);
    plan->prev = NULL;
    plan->next = ctx->plans;
    if (ctx->plans)
        ctx->plans->prev = plan;
    ctx->plans = plan;
    ctx->stats.plans_created++;
    pthread_mutex_unlock(&ctx->lock);
}

void attn__plan_unlink(attn_context *ctx, struct attn_plan *plan)
{
    pthread_mutex_lock(&ctx->lock);
    if (plan->prev)
        plan->prev->next = plan->next;
    else if (ctx->plans == plan)
        ctx->plans = plan->next;
    if (plan->next)
        plan->next->prev = plan->prev;
    plan->prev = plan->next = NULL;
    pthread_mutex_unlock(&ctx->lock);
}
