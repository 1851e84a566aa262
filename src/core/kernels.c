/* kernels.c — assembles kernel sources (parameter block + common helpers + kernel files)
 * for the backend's language and caches compiled programs per context. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/kernels.h"
#include "core/jit_cache.h"
#include "core/shaders.h"

const char *attn__shader_source(const char *name)
{
    for (const attn__shader *s = attn__shaders; s->name; ++s)
        if (!strcmp(s->name, name))
            return s->source;
    return NULL;
}

/* The `attn_params` declaration in OpenCL C, generated from ATTN__KPARAMS_*. */
static const char opencl_params_decl[] =
    "typedef struct attn_params {\n"
#define ATTN__X(n) "    long " #n ";\n"
    ATTN__KPARAMS_I64(ATTN__X)
#undef ATTN__X
#define ATTN__X(n) "    float " #n ";\n"
    ATTN__KPARAMS_F32(ATTN__X)
#undef ATTN__X
    "} attn_params;\n";

/* Appends src to the growing string *s (NULL on allocation failure, *s freed). */
static char *append(char *s, size_t *len, const char *src)
{
    if (!s)
        return NULL;
    size_t n = strlen(src);
    char *t = realloc(s, *len + n + 1);
    if (!t) {
        free(s);
        return NULL;
    }
    memcpy(t + *len, src, n + 1);
    *len += n;
    return t;
}

static char *make_key(const char *const *files, uint32_t nf, const char *const *entries,
                      uint32_t ne, const attn__define *d, uint32_t nd)
{
    size_t len = 0;
    char *key = calloc(1, 1), num[32];
    for (uint32_t i = 0; i < nf; ++i) {
        key = append(key, &len, files[i]);
        key = append(key, &len, "+");
    }
    for (uint32_t i = 0; i < ne; ++i) {
        key = append(key, &len, ":");
        key = append(key, &len, entries[i]);
    }
    for (uint32_t i = 0; i < nd; ++i) {
        key = append(key, &len, ";");
        key = append(key, &len, d[i].name);
        snprintf(num, sizeof num, "=%lld", d[i].value);
        key = append(key, &len, num);
    }
    return key;
}

static attn__kcache_entry *lookup(attn_context *ctx, const char *key)
{
    for (attn__kcache_entry *e = ctx->kcache; e; e = e->next)
        if (!strcmp(e->key, key))
            return e;
    return NULL;
}

/* Adds compiled kernels to the context's cache (the entry takes over `key`), counts them
 * and hands them out. */
static void cache_insert(attn_context *ctx, attn__kcache_entry *e, char *key,
                         uint32_t num_entries, int from_disk, void **kernels)
{
    e->key = key;
    e->num_kernels = num_entries;
    pthread_mutex_lock(&ctx->lock);
    e->next = ctx->kcache;
    ctx->kcache = e;
    if (from_disk)
        ctx->stats.disk_cache_hits++;
    else
        ctx->stats.kernels_compiled++;
    pthread_mutex_unlock(&ctx->lock);
    attn__log(ctx, ATTN_LOG_DEBUG, "%s %s", from_disk ? "loaded" : "compiled", key);
    memcpy(kernels, e->kernels, num_entries * sizeof *kernels);
}

/* ---- GLSL (Vulkan) ----------------------------------------------------------------------
 * GLSL has one `main` per module, so each entry point is its own shader file named after
 * it: entry "attn_fwd_cpu" is shaders/vulkan/attn_fwd_cpu.comp (the OpenCL file list of
 * the request does not apply). A shader file starts with #version and includes
 * attn_common.glsl, which includes attn_params.glsl, generated at build time from
 * ATTN__KPARAMS_* (src/gen_glsl_params.c); the same files compile standalone under
 * glslangValidator. glslang's C interface of Debian 12 has no include callbacks, so the
 * #include lines are expanded here from the embedded sources; the backend puts the
 * defines right after #version. */

/* The text of embedded file `name` with its `#include "x"` lines replaced by the
 * (expanded) embedded file x; malloc'ed, NULL with *missing set when a file is absent. */
static char *glsl_expand(const char *name, int depth, const char **missing)
{
    const char *text = attn__shader_source(name);
    if (!text || depth > 8) {
        *missing = name;
        return NULL;
    }
    size_t len = 0;
    char *out = calloc(1, 1);
    while (*text && out) {
        const char *eol = strchr(text, '\n');
        size_t n = eol ? (size_t)(eol - text) + 1 : strlen(text);
        const char *t = text;
        while (t < text + n && (*t == ' ' || *t == '\t'))
            ++t;
        if (!strncmp(t, "#include", 8)) {
            const char *q0 = memchr(t, '"', n - (size_t)(t - text));
            const char *q1 = q0 ? memchr(q0 + 1, '"', n - (size_t)(q0 + 1 - text)) : NULL;
            char inc[128];
            if (!q1 || (size_t)(q1 - q0) >= sizeof inc) {
                free(out);
                *missing = name;
                return NULL;
            }
            memcpy(inc, q0 + 1, (size_t)(q1 - q0 - 1));
            inc[q1 - q0 - 1] = '\0';
            char *sub = glsl_expand(inc, depth + 1, missing);
            if (!sub) {
                free(out);
                return NULL;
            }
            out = append(out, &len, sub);
            out = append(out, &len, "\n");
            free(sub);
        } else {
            char *t2 = realloc(out, len + n + 1);
            if (!t2) {
                free(out);
                return NULL;
            }
            out = t2;
            memcpy(out + len, text, n);
            len += n;
            out[len] = '\0';
        }
        text += n;
    }
    return out;
}

/* Compiles each entry from its own file; caches the set under `key` (taken over). */
static attn_status glsl_kernels_get(attn_context *ctx, char *key, const char *const *entries,
                                    uint32_t num_entries, const attn__define *defines,
                                    uint32_t num_defines, void **kernels)
{
    attn__kcache_entry *e = calloc(1, sizeof *e);
    attn_status st = e ? ATTN_OK : attn__fail(ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "kernel cache");
    for (uint32_t i = 0; i < num_entries && st == ATTN_OK; ++i) {
        char file[96];
        const char *missing = NULL;
        snprintf(file, sizeof file, "%s.comp", entries[i]);
        char *source = glsl_expand(file, 0, &missing);
        if (!source)
            st = missing ? attn__fail(ctx, ATTN_ERROR_UNSUPPORTED,
                                      "kernel source %s (for %s) is not embedded or has a bad "
                                      "#include", missing, file)
                         : attn__fail(ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "kernel source");
        else
            st = ctx->ops->compile(ctx->dev, source, defines, num_defines, &entries[i], 1,
                                   &e->kernels[i]);
        free(source);
    }
    if (st != ATTN_OK) {
        for (uint32_t i = 0; e && i < num_entries; ++i)
            if (e->kernels[i])
                ctx->ops->kernel_free(ctx->dev, e->kernels[i]);
        free(e);
        free(key);
        return st;
    }
    cache_insert(ctx, e, key, num_entries, 0, kernels);
    return ATTN_OK;
}

/* The persistent cache's key: everything a program binary depends on — the device and
 * its driver, this library's version, the whole source text, the defines (in `key`). */
static char *disk_key(const attn_context *ctx, const char *key, const char *source)
{
    const attn_device_info *d = &ctx->info;
    const uint64_t h = attn__fnv1a(0xcbf29ce484222325ull, source, strlen(source));
    size_t n = strlen(key) + strlen(d->name) + strlen(d->driver_version) + strlen(d->api_version) +
               strlen(d->platform) + strlen(ctx->ops->name) + 128;
    char *k = malloc(n);
    if (k)
        snprintf(k, n, "attn %s|%s|%s|%s|%s|%s|vendor %u|src %016llx|%s", ATTN_VERSION_STRING,
                 ctx->ops->name, d->platform, d->name, d->driver_version, d->api_version,
                 d->vendor_id, (unsigned long long)h, key);
    return k;
}

/* Compiles through the persistent cache where the backend has program binaries: a cached
 * binary is tried first, and a fresh compile is stored. Any cache failure falls back to
 * compiling the source. */
static attn_status compile_cached(attn_context *ctx, const char *key, const char *source,
                                  const attn__define *defines, uint32_t num_defines,
                                  const char *const *entries, uint32_t num_entries,
                                  void **kernels, int *from_disk)
{
    *from_disk = 0;
    const int usable = ctx->cache_dir && ctx->ops->compile_binary && ctx->ops->program_binary;
    char *dkey = usable ? disk_key(ctx, key, source) : NULL;
    void *bin = NULL;
    size_t nbin = 0;
    if (dkey && attn__jit_cache_load(ctx->cache_dir, ctx->ops->name, dkey, &bin, &nbin)) {
        attn_status st =
            ctx->ops->compile_binary(ctx->dev, bin, nbin, entries, num_entries, kernels);
        free(bin);
        if (st == ATTN_OK) {
            *from_disk = 1;
            free(dkey);
            return ATTN_OK;
        }
        attn__log(ctx, ATTN_LOG_DEBUG, "cached binary of %s rejected; compiling", key);
    }
    attn_status st =
        ctx->ops->compile(ctx->dev, source, defines, num_defines, entries, num_entries, kernels);
    if (st == ATTN_OK && dkey &&
        ctx->ops->program_binary(ctx->dev, kernels[0], &bin, &nbin) == ATTN_OK) {
        if (!attn__jit_cache_store(ctx->cache_dir, ctx->ops->name, dkey, bin, nbin))
            attn__log(ctx, ATTN_LOG_DEBUG, "could not write the JIT cache in %s", ctx->cache_dir);
        free(bin);
    }
    free(dkey);
    return st;
}

int attn__kernel_available(const attn_context *ctx, const char *file, const char *entry)
{
    char name[96];
    switch (ctx->ops->lang) {
    case ATTN__LANG_OPENCL_C:
        return attn__shader_source(file) != NULL;
    case ATTN__LANG_GLSL:
        snprintf(name, sizeof name, "%s.comp", entry);
        return attn__shader_source(name) != NULL;
    default:
        return 0;
    }
}

attn_status attn__kernels_get(attn_context *ctx, const char *const *files, uint32_t num_files,
                              const char *const *entries, uint32_t num_entries,
                              const attn__define *defines, uint32_t num_defines, void **kernels)
{
    if (num_entries > ATTN__MAX_PROGRAM_KERNELS)
        return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT, "too many kernels in one program");
    char *key = make_key(files, num_files, entries, num_entries, defines, num_defines);
    if (!key)
        return attn__fail(ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "kernel cache key");

    pthread_mutex_lock(&ctx->lock);
    attn__kcache_entry *hit = lookup(ctx, key);
    if (hit) {
        memcpy(kernels, hit->kernels, num_entries * sizeof *kernels);
        ctx->stats.compile_cache_hits++;
    }
    pthread_mutex_unlock(&ctx->lock);
    if (hit) {
        free(key);
        return ATTN_OK;
    }

    if (ctx->ops->lang == ATTN__LANG_GLSL)
        return glsl_kernels_get(ctx, key, entries, num_entries, defines, num_defines, kernels);
    if (ctx->ops->lang != ATTN__LANG_OPENCL_C) {
        free(key);
        return attn__fail(ctx, ATTN_ERROR_UNSUPPORTED, "backend %s compiles no %s kernels",
                          ctx->ops->name, files[0]);
    }
    size_t len = 0;
    char *source = append(calloc(1, 1), &len, opencl_params_decl);
    const char *common = attn__shader_source("attn_common.cl");
    source = append(source, &len, common ? common : "");
    for (uint32_t i = 0; i < num_files; ++i) {
        const char *body = attn__shader_source(files[i]);
        if (!body) {
            free(source);
            free(key);
            return attn__fail(ctx, ATTN_ERROR_UNSUPPORTED, "kernel source %s is not embedded",
                              files[i]);
        }
        source = append(source, &len, body);
    }
    attn__kcache_entry *e = calloc(1, sizeof *e);
    if (!source || !e) {
        free(source);
        free(e);
        free(key);
        return attn__fail(ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "kernel source");
    }
    int from_disk = 0;
    attn_status st = compile_cached(ctx, key, source, defines, num_defines, entries,
                                    num_entries, e->kernels, &from_disk);
    free(source);
    if (st != ATTN_OK) {
        free(e);
        free(key);
        return st;
    }
    cache_insert(ctx, e, key, num_entries, from_disk, kernels);
    return ATTN_OK;
}
