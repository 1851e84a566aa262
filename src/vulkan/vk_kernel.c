/* vk_kernel.c — the Vulkan backend's kernels: GLSL to SPIR-V with glslang's C interface,
 * the persistent cache of that SPIR-V and of the device's VkPipelineCache, compute
 * pipelines, and launches (descriptor sets, the params block, windowed bindings of buffers
 * larger than maxStorageBufferRange, dispatches split to the device's limits). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <glslang/Include/glslang_c_interface.h>
#include <glslang/Public/resource_limits_c.h>
#include <glslang/build_info.h>

#include "core/context.h"
#include "core/jit_cache.h"
#include "vulkan/vk_internal.h"

/* The variants of a kernel's module: plain (every buffer fits one binding), windowed
 * (ATTN_VK_WINDOWED) and, on devices that read words faster through texel buffers (d->texel),
 * texel (ATTN_VK_TEXEL: ATTN_WORDS_RO slots bound as views too). */
enum { ATTN_VK_V_PLAIN, ATTN_VK_V_WINDOWED, ATTN_VK_V_TEXEL, ATTN_VK_V_COUNT };
static const char *const attn_vk_variant_word[ATTN_VK_V_COUNT] = {"", " (windowed)", " (texel)"};

/* One SPIR-V module of a kernel (one variant). */
typedef struct attn_vk_module {
    VkShaderModule module;
    VkDescriptorSetLayout set_layout;
    VkPipelineLayout layout;
    uint32_t bindings[ATTN_VK_MAX_BINDING + 1]; /* the shader's bindings, params included */
    uint32_t num_bindings;
    uint32_t local[3];         /* the shader's own work-group size (OpExecutionMode) */
} attn_vk_module;

/* A pipeline: module x work-group size (specialisation constants 0-2). */
typedef struct attn_vk_pipeline {
    int variant;
    uint32_t local[3];
    VkPipeline pipeline;
} attn_vk_pipeline;

#define ATTN_VK_MAX_PIPELINES 8

/* A kernel keeps its source and defines: the windowed module is compiled only when a
 * launch first binds a buffer larger than one binding. Guarded by the device lock. */
typedef struct attn_vk_kernel {
    char name[64];
    char *source;
    char *preamble;            /* the defines, without the backend's window settings */
    attn_vk_module mod[ATTN_VK_V_COUNT]; /* by variant (module 0 until compiled) */
    attn_vk_pipeline pipes[ATTN_VK_MAX_PIPELINES];
    uint32_t num_pipes;
} attn_vk_kernel;

/* ---- GLSL -> SPIR-V --------------------------------------------------------------------- */

/* glslang's settings, named once: the SPIR-V cache key (attn_vk_spirv_key) records them. */
#define ATTN_VK_GLSLANG_CLIENT GLSLANG_TARGET_VULKAN_1_1
#define ATTN_VK_GLSLANG_SPV GLSLANG_TARGET_SPV_1_3
#define ATTN_VK_GLSLANG_OPTIMIZE 1

static pthread_once_t glslang_once = PTHREAD_ONCE_INIT;
static int glslang_ready;

static void attn_vk_glslang_init(void)
{
    glslang_ready = glslang_initialize_process() != 0;
}

/* Appends printf-style text to a malloc'ed string; NULL (and *s freed) on failure. */
static char *attn_vk_appendf(char *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#include <stdarg.h>
static char *attn_vk_appendf(char *s, const char *fmt, ...)
{
    if (!s)
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    size_t len = strlen(s);
    char *t = n < 0 ? NULL : realloc(s, len + (size_t)n + 1);
    if (!t) {
        free(s);
        return NULL;
    }
    va_start(ap, fmt);
    vsnprintf(t + len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return t;
}

/* Compiles `k`'s source with `preamble` (its defines plus the window settings) into
 * SPIR-V words. */
static attn_status attn_vk_to_spirv(attn_vk_device *d, const attn_vk_kernel *k,
                                    const char *preamble, uint32_t **words, size_t *count)
{
    *words = NULL;
    *count = 0;
    pthread_once(&glslang_once, attn_vk_glslang_init);
    if (!glslang_ready)
        return attn__fail(d->ctx, ATTN_ERROR_JIT_FAILED, "glslang_initialize_process failed");
    const glslang_input_t input = {
        .language = GLSLANG_SOURCE_GLSL,
        .stage = GLSLANG_STAGE_COMPUTE,
        .client = GLSLANG_CLIENT_VULKAN,
        .client_version = ATTN_VK_GLSLANG_CLIENT,
        .target_language = GLSLANG_TARGET_SPV,
        .target_language_version = ATTN_VK_GLSLANG_SPV,
        .code = k->source,
        .default_version = 450,
        .default_profile = GLSLANG_NO_PROFILE,
        .force_default_version_and_profile = 0,
        .forward_compatible = 0,
        .messages = GLSLANG_MSG_DEFAULT_BIT | GLSLANG_MSG_SPV_RULES_BIT | GLSLANG_MSG_VULKAN_RULES_BIT,
        .resource = glslang_default_resource(),
    };
    attn_status st = ATTN_OK;
    glslang_program_t *program = NULL;
    glslang_shader_t *shader = glslang_shader_create(&input);
    if (!shader)
        return attn__fail(d->ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "glslang_shader_create failed");
    glslang_shader_set_preamble(shader, preamble);
    const char *stage = NULL;
    if (!glslang_shader_preprocess(shader, &input))
        stage = "preprocessing";
    else if (!glslang_shader_parse(shader, &input))
        stage = "compiling";
    if (stage) {
        st = attn__fail(d->ctx, ATTN_ERROR_JIT_FAILED,
                        "glslang: %s %s.comp failed\ndefines:\n%sbuild log:\n%s%s", stage, k->name,
                        preamble, glslang_shader_get_info_log(shader),
                        glslang_shader_get_info_debug_log(shader));
        goto done;
    }
    program = glslang_program_create();
    glslang_program_add_shader(program, shader);
    if (!glslang_program_link(program, GLSLANG_MSG_SPV_RULES_BIT | GLSLANG_MSG_VULKAN_RULES_BIT)) {
        st = attn__fail(d->ctx, ATTN_ERROR_JIT_FAILED, "glslang: linking %s.comp failed\n%s%s",
                        k->name, glslang_program_get_info_log(program),
                        glslang_program_get_info_debug_log(program));
        goto done;
    }
    glslang_spv_options_t opts = {.validate = false,
                                  .disable_optimizer = !ATTN_VK_GLSLANG_OPTIMIZE};
    glslang_program_SPIRV_generate_with_options(program, GLSLANG_STAGE_COMPUTE, &opts);
    const char *msgs = glslang_program_SPIRV_get_messages(program);
    if (msgs && *msgs)
        attn__log(d->ctx, ATTN_LOG_DEBUG, "glslang: %s.comp: %s", k->name, msgs);
    size_t n = glslang_program_SPIRV_get_size(program);
    *words = n ? malloc(n * sizeof **words) : NULL;
    if (!*words) {
        st = attn__fail(d->ctx, ATTN_ERROR_JIT_FAILED, "glslang: no SPIR-V for %s.comp", k->name);
        goto done;
    }
    glslang_program_SPIRV_get(program, *words);
    *count = n;
done:
    if (program)
        glslang_program_delete(program);
    glslang_shader_delete(shader);
    return st;
}

/* ---- persistent cache ---------------------------------------------------------------------
 * Two kinds of file in the context's cache directory (src/core/jit_cache.c: header, key,
 * checksum, atomic writes). "vulkan-spirv": what glslang made of one kernel source with
 * its defines, so a hit skips glslang (process initialisation included), most of a cold
 * plan's cost. "vulkan-pipelines": the device's VkPipelineCache data, for drivers that
 * keep compiled pipelines in it. Any file that fails a check is ignored and rewritten. */

static double attn_vk_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

/* What every cache file of the device depends on: this library, the device, and its
 * driver (pipelineCacheUUID changes whenever the driver's compiled code would; the driver
 * name and info strings cover drivers that forget to change it). NULL: no disk cache. */
static char *attn_vk_cache_key(const attn_vk_device *d, const char *kind)
{
    const attn_context *ctx = d->ctx;
    if (!ctx->cache_dir)
        return NULL;
    const VkPhysicalDeviceProperties *p = &d->props;
    char uuid[2 * VK_UUID_SIZE + 1];
    for (unsigned i = 0; i < VK_UUID_SIZE; ++i)
        snprintf(uuid + 2 * i, 3, "%02x", (unsigned)p->pipelineCacheUUID[i]);
    return attn_vk_appendf(strdup(""),
                           "attn %s|vulkan %s|vendor %04x|device %04x|driver %08x|uuid %s|"
                           "%s|%s|%s",
                           ATTN_VERSION_STRING, kind, (unsigned)p->vendorID,
                           (unsigned)p->deviceID, (unsigned)p->driverVersion, uuid,
                           p->deviceName, ctx->info.platform, ctx->info.driver_version);
}

/* The SPIR-V key adds the compiler and everything it reads: glslang's version and the
 * options of attn_vk_to_spirv, the hash of the whole (include-expanded) source and the
 * complete preamble — device capabilities, the planner's defines, the window settings. */
static char *attn_vk_spirv_key(const attn_vk_device *d, const attn_vk_kernel *k,
                               const char *preamble)
{
    char *key = attn_vk_cache_key(d, "spirv");
    const uint64_t src = attn__fnv1a(0xcbf29ce484222325ull, k->source, strlen(k->source));
    return attn_vk_appendf(key, "|glslang %d.%d.%d%s client %x spv %x opt %d|%s|"
                           "src %016llx %zu|%s",
                           GLSLANG_VERSION_MAJOR, GLSLANG_VERSION_MINOR, GLSLANG_VERSION_PATCH,
                           GLSLANG_VERSION_FLAVOR, (unsigned)ATTN_VK_GLSLANG_CLIENT,
                           (unsigned)ATTN_VK_GLSLANG_SPV, ATTN_VK_GLSLANG_OPTIMIZE, k->name,
                           (unsigned long long)src, strlen(k->source), preamble);
}

/* A SPIR-V module at least in outline: whole words, the magic number, a header. */
static int attn_vk_spirv_plausible(const void *data, size_t bytes)
{
    uint32_t magic;
    if (bytes < 5 * sizeof magic || bytes % sizeof magic)
        return 0;
    memcpy(&magic, data, sizeof magic);
    return magic == 0x07230203u;
}

/* Counts a kernel module loaded from disk in the context's statistics. */
static void attn_vk_count_disk_hit(attn_vk_device *d)
{
    pthread_mutex_lock(&d->ctx->lock);
    d->ctx->stats.disk_cache_hits++;
    pthread_mutex_unlock(&d->ctx->lock);
}

/* Whether `data` is pipeline-cache data this device wrote: the header Vulkan defines
 * (VkPipelineCacheHeaderVersionOne) with this device's vendor, device and UUID. Checked
 * here because the checksum only proves the file is whole: data from another device or
 * driver must never reach vkCreatePipelineCache, whatever the driver would do with it. */
static int attn_vk_pipeline_data_ours(const attn_vk_device *d, const void *data, size_t bytes)
{
    VkPipelineCacheHeaderVersionOne h;
    if (bytes < sizeof h)
        return 0;
    memcpy(&h, data, sizeof h);
    return h.headerSize == sizeof h /* the only valid size for version one */ &&
           h.headerVersion == VK_PIPELINE_CACHE_HEADER_VERSION_ONE &&
           h.vendorID == d->props.vendorID && h.deviceID == d->props.deviceID &&
           !memcmp(h.pipelineCacheUUID, d->props.pipelineCacheUUID, VK_UUID_SIZE);
}

/* Merges the pipeline-cache data on disk into the device's cache (lock held). Also used
 * before each store, so pipelines another process or context stored since are kept. */
static void attn_vk_pipeline_cache_merge(attn_vk_device *d, const char *key)
{
    void *data = NULL;
    size_t bytes = 0;
    if (!attn__jit_cache_load(d->ctx->cache_dir, "vulkan-pipelines", key, &data, &bytes))
        return;
    const uint64_t sum = attn__fnv1a(0xcbf29ce484222325ull, data, bytes);
    if (sum == d->pipeline_cache_sum) {
        free(data); /* what we last read or wrote: nothing new */
        return;
    }
    if (!attn_vk_pipeline_data_ours(d, data, bytes)) {
        attn__log(d->ctx, ATTN_LOG_DEBUG,
                  "Vulkan: pipeline cache on disk is for another device or driver; ignored");
        free(data);
        return;
    }
    VkPipelineCacheCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO,
        .initialDataSize = bytes,
        .pInitialData = data,
    };
    VkPipelineCache disk = VK_NULL_HANDLE;
    VkResult r = vkCreatePipelineCache(d->device, &ci, NULL, &disk);
    if (r == VK_SUCCESS)
        r = vkMergePipelineCaches(d->device, d->pipeline_cache, 1, &disk);
    if (disk)
        vkDestroyPipelineCache(d->device, disk, NULL);
    if (r == VK_SUCCESS) {
        d->pipeline_cache_sum = sum;
        attn__log(d->ctx, ATTN_LOG_DEBUG, "Vulkan: pipeline cache loaded (%zu bytes)", bytes);
    } else {
        attn__log(d->ctx, ATTN_LOG_DEBUG, "Vulkan: pipeline cache on disk rejected (%s)",
                  attn_vk_result_name(r));
    }
    free(data);
}

/* Before the first pipeline: the cache on disk, if any (lock held). */
static void attn_vk_pipeline_cache_load(attn_vk_device *d)
{
    if (d->pipeline_cache_loaded)
        return;
    d->pipeline_cache_loaded = 1;
    char *key = attn_vk_cache_key(d, "pipelines");
    if (key)
        attn_vk_pipeline_cache_merge(d, key);
    free(key);
}

/* Writes the device's pipeline cache when it holds something the disk does not (lock
 * held). Called right after a pipeline is created rather than when the device closes:
 * pipelines are made at plan creation, which is already the slow moment, and the cache
 * then survives a process that exits or crashes without destroying its context. */
static void attn_vk_pipeline_cache_store(attn_vk_device *d)
{
    char *key = attn_vk_cache_key(d, "pipelines");
    void *data = NULL;
    for (int pass = 0; key && pass < 2; ++pass) {
        size_t bytes = 0;
        free(data);
        data = NULL;
        if (vkGetPipelineCacheData(d->device, d->pipeline_cache, &bytes, NULL) != VK_SUCCESS ||
            !bytes || !(data = malloc(bytes)) ||
            vkGetPipelineCacheData(d->device, d->pipeline_cache, &bytes, data) != VK_SUCCESS)
            break; /* VK_INCOMPLETE too: the cache grew in between; the next store has it */
        const uint64_t sum = attn__fnv1a(0xcbf29ce484222325ull, data, bytes);
        /* Data we would refuse to load is not worth writing. */
        if (sum == d->pipeline_cache_sum || !attn_vk_pipeline_data_ours(d, data, bytes))
            break;
        if (pass == 0) {
            /* New pipelines: first take in what others stored since, then write the union. */
            attn_vk_pipeline_cache_merge(d, key);
            continue;
        }
        if (attn__jit_cache_store(d->ctx->cache_dir, "vulkan-pipelines", key, data, bytes))
            d->pipeline_cache_sum = sum;
        else
            attn__log(d->ctx, ATTN_LOG_DEBUG, "Vulkan: could not write the pipeline cache in %s",
                      d->ctx->cache_dir);
    }
    free(data);
    free(key);
}

/* The descriptor bindings a module declares (OpDecorate Binding), sorted, each once (blocks
 * of several types may alias one binding), and its work-group size (OpExecutionMode
 * LocalSize). */
static void attn_vk_reflect(const uint32_t *w, size_t n, attn_vk_module *m)
{
    m->num_bindings = 0;
    m->local[0] = m->local[1] = m->local[2] = 1;
    for (size_t i = 5; i < n;) {
        uint32_t op = w[i] & 0xffffu, wc = w[i] >> 16;
        if (!wc || i + wc > n)
            break;
        if (op == 16 /* OpExecutionMode */ && wc >= 6 && w[i + 2] == 17 /* LocalSize */)
            memcpy(m->local, &w[i + 3], sizeof m->local);
        if (op == 71 /* OpDecorate */ && wc >= 4 && w[i + 2] == 33 /* Binding */ &&
            w[i + 3] <= ATTN_VK_MAX_BINDING && m->num_bindings <= ATTN_VK_MAX_BINDING) {
            uint32_t b = w[i + 3], j = m->num_bindings, seen = 0;
            for (uint32_t e = 0; e < j; ++e)
                seen |= m->bindings[e] == b;
            for (; !seen && j > 0 && m->bindings[j - 1] > b; --j)
                m->bindings[j] = m->bindings[j - 1];
            if (!seen) {
                m->bindings[j] = b;
                ++m->num_bindings;
            }
        }
        i += wc;
    }
}

static void attn_vk_module_free(attn_vk_device *d, attn_vk_module *m)
{
    if (m->layout)
        vkDestroyPipelineLayout(d->device, m->layout, NULL);
    if (m->set_layout)
        vkDestroyDescriptorSetLayout(d->device, m->set_layout, NULL);
    if (m->module)
        vkDestroyShaderModule(d->device, m->module, NULL);
    memset(m, 0, sizeof *m);
}

/* The SPIR-V of `k` (plain or windowed): from the disk cache, or from glslang and then
 * stored. A cached module is trusted once its file passed the checks (whole, checksum,
 * exactly this key, SPIR-V magic): it is then the very output glslang gave for this key. */
static attn_status attn_vk_spirv(attn_vk_device *d, const attn_vk_kernel *k, int variant,
                                 uint32_t **words, size_t *count)
{
    char *preamble = attn_vk_appendf(strdup(k->preamble), "#define ATTN_VK_WINDOWED %d\n"
                                     "#define ATTN_VK_WIN_SHIFT %u\n#define ATTN_VK_TEXEL %d\n",
                                     variant == ATTN_VK_V_WINDOWED, (unsigned)d->win_shift,
                                     variant == ATTN_VK_V_TEXEL);
    if (!preamble)
        return attn__fail(d->ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "Vulkan: shader preamble");
    const char *what = attn_vk_variant_word[variant];
    char *key = attn_vk_spirv_key(d, k, preamble);
    void *data = NULL;
    size_t bytes = 0;
    if (key && attn__jit_cache_load(d->ctx->cache_dir, "vulkan-spirv", key, &data, &bytes)) {
        if (attn_vk_spirv_plausible(data, bytes)) {
            free(key);
            free(preamble);
            *words = data;
            *count = bytes / sizeof **words;
            attn_vk_count_disk_hit(d);
            attn__log(d->ctx, ATTN_LOG_DEBUG, "Vulkan: %s.comp%s: SPIR-V from the disk cache",
                      k->name, what);
            return ATTN_OK;
        }
        free(data);
    }
    const double t0 = attn_vk_now_ms();
    attn_status st = attn_vk_to_spirv(d, k, preamble, words, count);
    if (st == ATTN_OK) {
        attn__log(d->ctx, ATTN_LOG_DEBUG, "Vulkan: %s.comp%s: glslang %.1f ms", k->name, what,
                  attn_vk_now_ms() - t0);
        if (key && !attn__jit_cache_store(d->ctx->cache_dir, "vulkan-spirv", key, *words,
                                          *count * sizeof **words))
            attn__log(d->ctx, ATTN_LOG_DEBUG, "Vulkan: could not write the JIT cache in %s",
                      d->ctx->cache_dir);
    }
    free(key);
    free(preamble);
    return st;
}

/* The descriptor type of a binding (attn_common.glsl's numbering). */
static VkDescriptorType attn_vk_binding_type(uint32_t b)
{
    return b < ATTN_VK_PARAMS_BINDING    ? VK_DESCRIPTOR_TYPE_STORAGE_BUFFER
           : b == ATTN_VK_PARAMS_BINDING ? VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER
                                         : VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER;
}

static attn_status attn_vk_module_make(attn_vk_device *d, attn_vk_kernel *k, int variant)
{
    attn_vk_module *m = &k->mod[variant];
    uint32_t *words = NULL;
    size_t count = 0;
    attn_status st = attn_vk_spirv(d, k, variant, &words, &count);
    if (st != ATTN_OK)
        return st;
    attn_vk_reflect(words, count, m);
    uint32_t storage = 0;
    VkDescriptorSetLayoutBinding lb[ATTN_VK_MAX_BINDING + 1];
    for (uint32_t i = 0; i < m->num_bindings; ++i) {
        storage += m->bindings[i] < ATTN_VK_PARAMS_BINDING;
        lb[i] = (VkDescriptorSetLayoutBinding){
            .binding = m->bindings[i],
            .descriptorType = attn_vk_binding_type(m->bindings[i]),
            .descriptorCount = 1,
            .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
        };
    }
    if (storage > d->props.limits.maxPerStageDescriptorStorageBuffers) {
        free(words);
        attn_vk_module_free(d, m);
        return attn__fail(d->ctx, ATTN_ERROR_UNSUPPORTED,
                          "Vulkan: %s%s needs %u storage buffers; the device binds %u per stage",
                          k->name, variant == ATTN_VK_V_WINDOWED ? " (windowed for large tensors)" : "",
                          (unsigned)storage,
                          (unsigned)d->props.limits.maxPerStageDescriptorStorageBuffers);
    }
    VkShaderModuleCreateInfo si = {
        .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
        .codeSize = count * sizeof *words,
        .pCode = words,
    };
    VkResult r = vkCreateShaderModule(d->device, &si, NULL, &m->module);
    free(words);
    VkDescriptorSetLayoutCreateInfo li = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
        .bindingCount = m->num_bindings,
        .pBindings = lb,
    };
    if (r == VK_SUCCESS)
        r = vkCreateDescriptorSetLayout(d->device, &li, NULL, &m->set_layout);
    VkPipelineLayoutCreateInfo pli = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
        .setLayoutCount = 1,
        .pSetLayouts = &m->set_layout,
    };
    if (r == VK_SUCCESS)
        r = vkCreatePipelineLayout(d->device, &pli, NULL, &m->layout);
    if (r != VK_SUCCESS) {
        attn_vk_module_free(d, m);
        return attn_vk_fail(d, r, "vkCreateShaderModule/DescriptorSetLayout/PipelineLayout",
                            k->name);
    }
    return ATTN_OK;
}

/* The pipeline of `k` for (variant, local), created on first use. */
static attn_status attn_vk_pipeline_get(attn_vk_device *d, attn_vk_kernel *k, int variant,
                                        const uint32_t local[3], VkPipeline *out)
{
    for (uint32_t i = 0; i < k->num_pipes; ++i)
        if (k->pipes[i].variant == variant && !memcmp(k->pipes[i].local, local, 3 * sizeof *local)) {
            *out = k->pipes[i].pipeline;
            return ATTN_OK;
        }
    if (k->num_pipes == ATTN_VK_MAX_PIPELINES)
        return attn__fail(d->ctx, ATTN_ERROR_UNSUPPORTED,
                          "Vulkan: %s launched with more than %d work-group shapes", k->name,
                          ATTN_VK_MAX_PIPELINES);
    if (!k->mod[variant].module) {
        attn_status st = attn_vk_module_make(d, k, variant);
        if (st != ATTN_OK)
            return st;
    }
    const VkSpecializationMapEntry entries[3] = {
        {0, 0, sizeof(uint32_t)}, {1, sizeof(uint32_t), sizeof(uint32_t)},
        {2, 2 * sizeof(uint32_t), sizeof(uint32_t)}};
    const VkSpecializationInfo spec = {3, entries, 3 * sizeof(uint32_t), local};
    VkComputePipelineCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .flags = VK_PIPELINE_CREATE_DISPATCH_BASE_BIT,
        .stage = {
            .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
            .stage = VK_SHADER_STAGE_COMPUTE_BIT,
            .module = k->mod[variant].module,
            .pName = "main",
            .pSpecializationInfo = &spec,
        },
        .layout = k->mod[variant].layout,
    };
    attn_vk_pipeline_cache_load(d);
    VkPipeline pipe = VK_NULL_HANDLE;
    const double t0 = attn_vk_now_ms();
    VkResult r = vkCreateComputePipelines(d->device, d->pipeline_cache, 1, &ci, NULL, &pipe);
    attn__log(d->ctx, ATTN_LOG_DEBUG, "Vulkan: %s%s pipeline (local %ux%ux%u): %.1f ms",
              k->name, attn_vk_variant_word[variant], local[0], local[1], local[2],
              attn_vk_now_ms() - t0);
    if (r != VK_SUCCESS) {
        char what[96];
        snprintf(what, sizeof what, "for %s (local %ux%ux%u)", k->name, local[0], local[1],
                 local[2]);
        return attn_vk_fail(d, r, "vkCreateComputePipelines", what);
    }
    attn_vk_pipeline_cache_store(d);
    attn_vk_pipeline *p = &k->pipes[k->num_pipes++];
    p->variant = variant;
    memcpy(p->local, local, sizeof p->local);
    p->pipeline = pipe;
    *out = pipe;
    return ATTN_OK;
}

attn_status attn_vk_compile(void *dev, const char *source, const attn__define *defines,
                            uint32_t num_defines, const char *const *entries,
                            uint32_t num_entries, void **kernels)
{
    attn_vk_device *d = dev;
    for (uint32_t i = 0; i < num_entries; ++i)
        kernels[i] = NULL;
    if (!source || num_entries != 1 || !entries[0])
        return attn__fail(d->ctx, ATTN_ERROR_INVALID_ARGUMENT,
                          "Vulkan: compile takes one shader file per entry point");
    attn_vk_kernel *k = calloc(1, sizeof *k);
    if (!k)
        return attn__fail(d->ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "Vulkan: out of host memory");
    attn__strlcpy(k->name, entries[0], sizeof k->name);
    k->source = strdup(source);
    /* The device's capabilities, then the planner's specialisation constants. */
    char *pre = attn_vk_appendf(strdup(""),
                                "#define ATTN_VK_INT64 %d\n#define ATTN_VK_F16 %d\n"
                                "#define ATTN_VK_SUBGROUP %d\n",
                                d->int64, d->f16_storage, d->subgroup_vote);
    for (uint32_t i = 0; i < num_defines && pre; ++i)
        pre = attn_vk_appendf(pre, "#define %s %lld\n", defines[i].name, defines[i].value);
    k->preamble = pre;
    if (!k->source || !k->preamble) {
        attn_vk_kernel_free(dev, k);
        return attn__fail(d->ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "Vulkan: out of host memory");
    }
    /* Compile the plain module and its pipeline at the shader's own work-group size now,
     * at plan creation: launches with that size then compile nothing. */
    pthread_mutex_lock(&d->lock);
    VkPipeline pipe;
    const int v = d->texel ? ATTN_VK_V_TEXEL : ATTN_VK_V_PLAIN;
    attn_status st = attn_vk_module_make(d, k, v);
    if (st == ATTN_OK)
        st = attn_vk_pipeline_get(d, k, v, k->mod[v].local, &pipe);
    pthread_mutex_unlock(&d->lock);
    if (st != ATTN_OK) {
        attn_vk_kernel_free(dev, k);
        return st;
    }
    kernels[0] = k;
    return ATTN_OK;
}

void attn_vk_kernel_free(void *dev, void *kernel)
{
    attn_vk_device *d = dev;
    attn_vk_kernel *k = kernel;
    if (!k)
        return;
    for (uint32_t i = 0; i < k->num_pipes; ++i)
        vkDestroyPipeline(d->device, k->pipes[i].pipeline, NULL);
    for (int v = 0; v < ATTN_VK_V_COUNT; ++v)
        attn_vk_module_free(d, &k->mod[v]);
    free(k->source);
    free(k->preamble);
    free(k);
}

/* ---- launches ------------------------------------------------------------------------------ */

/* The texel view of a buffer with b->texel, made once (device lock held): R32G32B32A32_UINT
 * over the whole buffer, whose size vk_backend.c chose (attn_vk_texel_bytes) at most one
 * binding, which maxTexelBufferElements covers (d->texel). */
static attn_status attn_vk_texel_view(attn_vk_device *d, attn_vk_buffer *b, VkBufferView *out)
{
    if (!b->view) {
        VkBufferViewCreateInfo vi = {
            .sType = VK_STRUCTURE_TYPE_BUFFER_VIEW_CREATE_INFO,
            .buffer = b->buffer,
            .format = VK_FORMAT_R32G32B32A32_UINT,
            .offset = 0,
            .range = VK_WHOLE_SIZE,
        };
        VkResult r = vkCreateBufferView(d->device, &vi, NULL, &b->view);
        if (r != VK_SUCCESS) {
            b->view = VK_NULL_HANDLE;
            return attn_vk_fail(d, r, "vkCreateBufferView", "a texel view of a buffer");
        }
    }
    *out = b->view;
    return ATTN_OK;
}

/* The launch's buffer for the kernel's binding `bnd` (a storage window or a texel view of
 * a slot), or NULL where the launch passes none. */
static attn_vk_buffer *attn_vk_slot_buffer(const attn__launch *l, uint32_t bnd)
{
    const uint32_t s = bnd > ATTN_VK_PARAMS_BINDING ? bnd - ATTN_VK_TEXEL_BINDING(0)
                                                    : bnd / ATTN_VK_MAX_WIN;
    return s < l->num_buffers ? l->buffers[s] : NULL;
}

attn_status attn_vk_launch(void *dev, void *kernel, const attn__launch *l)
{
    attn_vk_device *d = dev;
    attn_vk_kernel *k = kernel;
    const VkPhysicalDeviceLimits *lim = &d->props.limits;
    if (!k || !l)
        return attn__fail(d->ctx, ATTN_ERROR_NULL_POINTER, "Vulkan: launch without %s",
                          !k ? "a kernel" : "a launch description");
    if (l->num_buffers > ATTN__MAX_LAUNCH_BUFFERS || l->params_size > d->params_stride ||
        (l->params_size && !l->params))
        return attn__fail(d->ctx, ATTN_ERROR_INVALID_ARGUMENT,
                          "Vulkan: launch of %s with %u buffers and %zu bytes of params", k->name,
                          (unsigned)l->num_buffers, l->params_size);
    uint64_t invocations = 1;
    uint32_t local[3];
    for (int i = 0; i < 3; ++i) {
        if (!l->local[i] || l->local[i] > lim->maxComputeWorkGroupSize[i])
            return attn__fail(d->ctx, ATTN_ERROR_INVALID_ARGUMENT,
                              "Vulkan: %s: local size %zu in dimension %d (device limit %u)",
                              k->name, l->local[i], i, (unsigned)lim->maxComputeWorkGroupSize[i]);
        local[i] = (uint32_t)l->local[i];
        invocations *= local[i];
        if (!l->groups[i])
            return ATTN_OK; /* nothing to run */
        if (l->groups[i] > UINT32_MAX)
            return attn__fail(d->ctx, ATTN_ERROR_OVERFLOW, "Vulkan: %s: %zu work-groups",
                              k->name, l->groups[i]);
    }
    if (invocations > lim->maxComputeWorkGroupInvocations)
        return attn__fail(d->ctx, ATTN_ERROR_INVALID_ARGUMENT,
                          "Vulkan: %s: work-group of %llu invocations (device limit %u)", k->name,
                          (unsigned long long)invocations,
                          (unsigned)lim->maxComputeWorkGroupInvocations);

    /* A buffer larger than one binding makes the launch windowed; never truncated. */
    int windowed = 0;
    for (uint32_t i = 0; i < l->num_buffers; ++i) {
        const attn_vk_buffer *b = l->buffers[i];
        if (!b)
            continue;
        if (!d->int64 && b->size >= ((uint64_t)1 << 32))
            return attn__fail(d->ctx, ATTN_ERROR_UNSUPPORTED,
                              "Vulkan: buffer %u of %s has %llu bytes; 4 GiB or more needs "
                              "shaderInt64", (unsigned)i, k->name, (unsigned long long)b->size);
        if (b->size > d->max_range)
            windowed = 1;
        if (b->size > ((uint64_t)ATTN_VK_MAX_WIN << d->win_shift))
            return attn__fail(d->ctx, ATTN_ERROR_UNSUPPORTED,
                              "Vulkan: buffer %u of %s has %llu bytes; one launch binds at most "
                              "%d windows of %llu bytes (maxStorageBufferRange %llu)",
                              (unsigned)i, k->name, (unsigned long long)b->size, ATTN_VK_MAX_WIN,
                              (unsigned long long)1 << d->win_shift,
                              (unsigned long long)d->max_range);
    }

    pthread_mutex_lock(&d->lock);
    /* The texel variant where the device prefers it, unless a buffer its texel slots read
     * cannot have a view (an application's buffer, made without the texel usage). */
    int variant = windowed ? ATTN_VK_V_WINDOWED : d->texel ? ATTN_VK_V_TEXEL : ATTN_VK_V_PLAIN;
    attn_status st = ATTN_OK;
    if (variant == ATTN_VK_V_TEXEL && !k->mod[variant].module)
        st = attn_vk_module_make(d, k, variant);
    for (uint32_t i = 0; st == ATTN_OK && variant == ATTN_VK_V_TEXEL && i < k->mod[variant].num_bindings; ++i) {
        const uint32_t bnd = k->mod[variant].bindings[i];
        const attn_vk_buffer *b = bnd > ATTN_VK_PARAMS_BINDING ? attn_vk_slot_buffer(l, bnd) : NULL;
        if (b && !b->texel)
            variant = ATTN_VK_V_PLAIN;
    }
    VkPipeline pipe = VK_NULL_HANDLE;
    if (st == ATTN_OK)
        st = attn_vk_pipeline_get(d, k, variant, local, &pipe);
    if (st == ATTN_OK && (d->dispatched >= ATTN_VK_BATCH || d->params_used >= ATTN_VK_BATCH))
        st = attn_vk_flush(d);
    if (st == ATTN_OK)
        st = attn_vk_begin(d);
    VkDescriptorSet set = VK_NULL_HANDLE;
    const attn_vk_module *m = &k->mod[variant];
    if (st == ATTN_OK) {
        VkDescriptorSetAllocateInfo ai = {
            .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
            .descriptorPool = d->desc_pool,
            .descriptorSetCount = 1,
            .pSetLayouts = &m->set_layout,
        };
        VkResult r = vkAllocateDescriptorSets(d->device, &ai, &set);
        if (r != VK_SUCCESS)
            st = attn_vk_fail(d, r, "vkAllocateDescriptorSets", k->name);
    }
    if (st != ATTN_OK) {
        pthread_mutex_unlock(&d->lock);
        return st;
    }

    uint32_t slot = d->params_used++;
    VkDeviceSize poff = (VkDeviceSize)slot * d->params_stride;
    if (l->params_size)
        memcpy((char *)d->params.mapped + poff, l->params, l->params_size);
    VkDescriptorBufferInfo infos[ATTN_VK_MAX_BINDING + 1];
    VkBufferView views[ATTN_VK_MAX_BINDING + 1];
    VkWriteDescriptorSet writes[ATTN_VK_MAX_BINDING + 1];
    for (uint32_t i = 0; i < m->num_bindings; ++i) {
        uint32_t bnd = m->bindings[i];
        VkDescriptorBufferInfo *bi = &infos[i];
        views[i] = VK_NULL_HANDLE;
        if (bnd > ATTN_VK_PARAMS_BINDING) {
            attn_vk_buffer *b = attn_vk_slot_buffer(l, bnd);
            if (!b)
                b = &d->dummy;
            if (st == ATTN_OK)
                st = attn_vk_texel_view(d, b, &views[i]);
        } else if (bnd == ATTN_VK_PARAMS_BINDING) {
            *bi = (VkDescriptorBufferInfo){d->params.buffer, poff,
                                           l->params_size ? l->params_size : 16};
        } else {
            const uint32_t w = bnd % ATTN_VK_MAX_WIN;
            const attn_vk_buffer *b = attn_vk_slot_buffer(l, bnd);
            uint64_t off = windowed ? (uint64_t)w << d->win_shift : 0;
            if (!b || off >= b->size || (!windowed && w)) {
                /* NULL buffer, or a window past the end: never read by the kernel. */
                *bi = (VkDescriptorBufferInfo){d->dummy.buffer, 0, VK_WHOLE_SIZE};
            } else {
                uint64_t range = b->size - off;
                if (windowed && range > ((uint64_t)1 << d->win_shift))
                    range = (uint64_t)1 << d->win_shift;
                *bi = (VkDescriptorBufferInfo){b->buffer, off, range};
            }
        }
        writes[i] = (VkWriteDescriptorSet){
            .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
            .dstSet = set,
            .dstBinding = bnd,
            .descriptorCount = 1,
            .descriptorType = attn_vk_binding_type(bnd),
            .pBufferInfo = bi,
            .pTexelBufferView = &views[i],
        };
    }
    if (st != ATTN_OK) {
        /* The set goes back with the batch's pool; the params slot stays used. */
        pthread_mutex_unlock(&d->lock);
        return st;
    }
    vkUpdateDescriptorSets(d->device, m->num_bindings, writes, 0, NULL);

    /* Each launch may read what the previous one (or a copy) wrote. */
    attn_vk_barrier(d);
    vkCmdBindPipeline(d->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, pipe);
    vkCmdBindDescriptorSets(d->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, m->layout, 0, 1, &set, 0,
                            NULL);
    /* Grids beyond maxComputeWorkGroupCount run as several dispatches with a base group,
     * which gl_WorkGroupID includes: the kernel sees one grid. */
    const uint32_t *maxg = lim->maxComputeWorkGroupCount;
    for (uint32_t z = 0; z < l->groups[2]; z += maxg[2])
        for (uint32_t y = 0; y < l->groups[1]; y += maxg[1])
            for (uint32_t x = 0; x < l->groups[0]; x += maxg[0]) {
                uint32_t nx = (uint32_t)l->groups[0] - x, ny = (uint32_t)l->groups[1] - y,
                         nz = (uint32_t)l->groups[2] - z;
                vkCmdDispatchBase(d->cmd, x, y, z, nx < maxg[0] ? nx : maxg[0],
                                  ny < maxg[1] ? ny : maxg[1], nz < maxg[2] ? nz : maxg[2]);
            }
    d->dispatched++;
    pthread_mutex_unlock(&d->lock);
    return ATTN_OK;
}
