/* vk_backend.c — the Vulkan backend: device discovery (every physical device type, CPU
 * ones such as llvmpipe included), one compute queue per context, buffers, staging
 * copies, the command batches that launches are recorded into (vk_kernel.c), and uploads
 * that overlap compute (timeline semaphores). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vulkan/vk_internal.h"

#define ATTN_VK_STAGING_BYTES (8u << 20) /* bounce buffer for unmapped buffers */

/* ---- errors ------------------------------------------------------------------------- */

const char *attn_vk_result_name(VkResult r)
{
    switch (r) {
#define ATTN_VK_NAME(code) \
    case code:             \
        return #code;
        ATTN_VK_NAME(VK_SUCCESS)
        ATTN_VK_NAME(VK_NOT_READY)
        ATTN_VK_NAME(VK_TIMEOUT)
        ATTN_VK_NAME(VK_INCOMPLETE)
        ATTN_VK_NAME(VK_ERROR_OUT_OF_HOST_MEMORY)
        ATTN_VK_NAME(VK_ERROR_OUT_OF_DEVICE_MEMORY)
        ATTN_VK_NAME(VK_ERROR_INITIALIZATION_FAILED)
        ATTN_VK_NAME(VK_ERROR_DEVICE_LOST)
        ATTN_VK_NAME(VK_ERROR_MEMORY_MAP_FAILED)
        ATTN_VK_NAME(VK_ERROR_LAYER_NOT_PRESENT)
        ATTN_VK_NAME(VK_ERROR_EXTENSION_NOT_PRESENT)
        ATTN_VK_NAME(VK_ERROR_FEATURE_NOT_PRESENT)
        ATTN_VK_NAME(VK_ERROR_INCOMPATIBLE_DRIVER)
        ATTN_VK_NAME(VK_ERROR_TOO_MANY_OBJECTS)
        ATTN_VK_NAME(VK_ERROR_FORMAT_NOT_SUPPORTED)
        ATTN_VK_NAME(VK_ERROR_FRAGMENTED_POOL)
        ATTN_VK_NAME(VK_ERROR_UNKNOWN)
        ATTN_VK_NAME(VK_ERROR_OUT_OF_POOL_MEMORY)
        ATTN_VK_NAME(VK_ERROR_INVALID_EXTERNAL_HANDLE)
        ATTN_VK_NAME(VK_ERROR_FRAGMENTATION)
        ATTN_VK_NAME(VK_ERROR_INVALID_OPAQUE_CAPTURE_ADDRESS)
        ATTN_VK_NAME(VK_ERROR_VALIDATION_FAILED_EXT)
#undef ATTN_VK_NAME
    default:
        return "unknown VkResult";
    }
}

attn_status attn_vk_status(VkResult r)
{
    switch (r) {
    case VK_SUCCESS:
        return ATTN_OK;
    case VK_ERROR_OUT_OF_HOST_MEMORY:
        return ATTN_ERROR_OUT_OF_HOST_MEMORY;
    case VK_ERROR_OUT_OF_DEVICE_MEMORY:
    case VK_ERROR_TOO_MANY_OBJECTS: /* maxMemoryAllocationCount: the scheduler retries smaller */
        return ATTN_ERROR_OUT_OF_DEVICE_MEMORY;
    default:
        return ATTN_ERROR_BACKEND;
    }
}

attn_status attn_vk_fail(attn_vk_device *d, VkResult r, const char *call, const char *what)
{
    return attn__fail(d->ctx, attn_vk_status(r), "Vulkan: %s failed with %s (%d) %s", call,
                      attn_vk_result_name(r), (int)r, what);
}

/* ---- enumeration ------------------------------------------------------------------------
 * Enumeration needs an instance but no context: one is created once per process and kept
 * (the once-initialisation DESIGN.md §6 allows); each context makes its own instance and
 * device, so nothing it does depends on this one. Devices below Vulkan 1.1 are not listed:
 * the kernels need SPIR-V 1.3 (subgroups), 16-bit storage structs and vkCmdDispatchBase. */
static pthread_once_t enum_once = PTHREAD_ONCE_INIT;
static VkInstance enum_instance;

static VkResult attn_vk_create_instance(VkInstance *out)
{
    uint32_t loader = VK_API_VERSION_1_0;
    if (vkEnumerateInstanceVersion(&loader) != VK_SUCCESS || loader < VK_API_VERSION_1_1)
        return VK_ERROR_INCOMPATIBLE_DRIVER;
    VkApplicationInfo app = {
        .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
        .pApplicationName = "libattn",
        .pEngineName = "attn",
        .engineVersion = ATTN_VERSION_NUMBER,
        .apiVersion = VK_API_VERSION_1_1,
    };
    VkInstanceCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
        .pApplicationInfo = &app,
    };
    return vkCreateInstance(&ci, NULL, out);
}

static void attn_vk_enum_init(void)
{
    if (attn_vk_create_instance(&enum_instance) != VK_SUCCESS)
        enum_instance = VK_NULL_HANDLE;
}

/* The usable physical devices of `instance` in driver order, malloc'ed (NULL when none). */
static VkPhysicalDevice *attn_vk_list(VkInstance instance, uint32_t *count)
{
    *count = 0;
    uint32_t n = 0;
    if (!instance || vkEnumeratePhysicalDevices(instance, &n, NULL) != VK_SUCCESS || !n)
        return NULL;
    VkPhysicalDevice *all = malloc(n * sizeof *all);
    if (!all)
        return NULL;
    if (vkEnumeratePhysicalDevices(instance, &n, all) < 0) {
        free(all);
        return NULL;
    }
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; ++i) {
        VkPhysicalDeviceProperties p;
        vkGetPhysicalDeviceProperties(all[i], &p);
        uint32_t nq = 0;
        vkGetPhysicalDeviceQueueFamilyProperties(all[i], &nq, NULL);
        VkQueueFamilyProperties q[16];
        if (nq > 16)
            nq = 16;
        vkGetPhysicalDeviceQueueFamilyProperties(all[i], &nq, q);
        int compute = 0;
        for (uint32_t f = 0; f < nq; ++f)
            compute |= (q[f].queueFlags & VK_QUEUE_COMPUTE_BIT) != 0;
        if (p.apiVersion >= VK_API_VERSION_1_1 && compute)
            all[k++] = all[i];
    }
    *count = k;
    return all;
}

static attn_status attn_vk_device_count(uint32_t *count)
{
    if (!count)
        return ATTN_ERROR_NULL_POINTER;
    pthread_once(&enum_once, attn_vk_enum_init);
    free(attn_vk_list(enum_instance, count));
    return ATTN_OK;
}

static const char *attn_vk_vendor_name(uint32_t id)
{
    switch (id) {
    case 0x1002: return "AMD";
    case 0x10DE: return "NVIDIA";
    case 0x8086: return "Intel";
    case 0x13B5: return "ARM";
    case 0x5143: return "Qualcomm";
    case 0x106B: return "Apple";
    case 0x1010: return "Imagination";
    case 0x144D: return "Samsung";
    case VK_VENDOR_ID_MESA: return "Mesa";
    default: return NULL;
    }
}

/* Capabilities of a physical device: what its driver offers. */
typedef struct attn_vk_caps {
    VkPhysicalDeviceProperties props;
    VkPhysicalDeviceSubgroupProperties subgroup;
    VkPhysicalDeviceMaintenance3Properties maint3;
    VkPhysicalDeviceDriverProperties driver;
    int has_driver_props;
    VkPhysicalDeviceFeatures features;
    VkPhysicalDevice16BitStorageFeatures storage16;
    VkPhysicalDeviceShaderFloat16Int8Features float16;
    VkPhysicalDeviceTimelineSemaphoreFeatures timeline; /* with VK_KHR_timeline_semaphore */
    int has_timeline_ext;
    VkPhysicalDeviceMemoryProperties mem;
    int texel_words; /* R32G32B32A32_UINT uniform texel buffers */
} attn_vk_caps;

static void attn_vk_query(VkPhysicalDevice phys, attn_vk_caps *c)
{
    memset(c, 0, sizeof *c);
    vkGetPhysicalDeviceProperties(phys, &c->props);
    c->has_driver_props = c->props.apiVersion >= VK_API_VERSION_1_2;
    c->subgroup.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES;
    c->maint3.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES;
    c->driver.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES;
    c->subgroup.pNext = &c->maint3;
    c->maint3.pNext = c->has_driver_props ? &c->driver : NULL;
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
                                      .pNext = &c->subgroup};
    vkGetPhysicalDeviceProperties2(phys, &p2);

    c->storage16.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES;
    c->float16.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES;
    c->storage16.pNext = c->props.apiVersion >= VK_API_VERSION_1_2 ? &c->float16 : NULL;
    /* Timeline semaphores through the extension (also listed by Vulkan 1.2+ drivers), as
     * the instance asks for Vulkan 1.1 only. */
    uint32_t next = 0;
    VkExtensionProperties ext[256];
    if (vkEnumerateDeviceExtensionProperties(phys, NULL, &next, NULL) == VK_SUCCESS) {
        if (next > 256)
            next = 256;
        if (vkEnumerateDeviceExtensionProperties(phys, NULL, &next, ext) < 0)
            next = 0;
    }
    for (uint32_t i = 0; i < next; ++i)
        c->has_timeline_ext |= !strcmp(ext[i].extensionName, VK_KHR_TIMELINE_SEMAPHORE_EXTENSION_NAME);
    c->timeline.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_TIMELINE_SEMAPHORE_FEATURES;
    if (c->has_timeline_ext) {
        c->timeline.pNext = c->storage16.pNext;
        c->storage16.pNext = &c->timeline;
    }
    VkPhysicalDeviceFeatures2 f2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
                                    .pNext = &c->storage16};
    vkGetPhysicalDeviceFeatures2(phys, &f2);
    c->features = f2.features;
    vkGetPhysicalDeviceMemoryProperties(phys, &c->mem);
    VkFormatProperties fp;
    vkGetPhysicalDeviceFormatProperties(phys, VK_FORMAT_R32G32B32A32_UINT, &fp);
    c->texel_words = (fp.bufferFeatures & VK_FORMAT_FEATURE_UNIFORM_TEXEL_BUFFER_BIT) != 0;
}

static int attn_vk_env_flag(const char *name)
{
    const char *e = getenv(name);
    return e && *e && strcmp(e, "0") != 0;
}

static uint32_t attn_vk_log2_floor(uint64_t x)
{
    uint32_t s = 0;
    while (x >> (s + 1))
        ++s;
    return s;
}

static void attn_vk_fill_info(const attn_vk_caps *c, uint32_t index, attn_device_info *info)
{
    const VkPhysicalDeviceProperties *p = &c->props;
    const VkPhysicalDeviceLimits *lim = &p->limits;
    info->backend = ATTN_BACKEND_VULKAN;
    info->index = index;
    switch (p->deviceType) {
    case VK_PHYSICAL_DEVICE_TYPE_CPU: info->type = ATTN_DEVICE_CPU; break;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: info->type = ATTN_DEVICE_INTEGRATED_GPU; break;
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: info->type = ATTN_DEVICE_DISCRETE_GPU; break;
    default: info->type = ATTN_DEVICE_OTHER; break;
    }
    attn__strlcpy(info->name, p->deviceName, sizeof info->name);
    const char *vendor = attn_vk_vendor_name(p->vendorID);
    if (vendor)
        attn__strlcpy(info->vendor, vendor, sizeof info->vendor);
    else
        snprintf(info->vendor, sizeof info->vendor, "0x%04x", (unsigned)p->vendorID);
    if (c->has_driver_props) {
        attn__strlcpy(info->driver_version, c->driver.driverInfo, sizeof info->driver_version);
        attn__strlcpy(info->platform, c->driver.driverName, sizeof info->platform);
    } else {
        snprintf(info->driver_version, sizeof info->driver_version, "0x%08x",
                 (unsigned)p->driverVersion);
        attn__strlcpy(info->platform, "Vulkan", sizeof info->platform);
    }
    snprintf(info->api_version, sizeof info->api_version, "Vulkan %u.%u.%u",
             VK_API_VERSION_MAJOR(p->apiVersion), VK_API_VERSION_MINOR(p->apiVersion),
             VK_API_VERSION_PATCH(p->apiVersion));
    info->vendor_id = p->vendorID;
    /* Vulkan does not say how many compute units a GPU has; a CPU device (llvmpipe) runs
     * on the host's cores. */
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    info->compute_units = info->type == ATTN_DEVICE_CPU && ncpu > 0 ? (uint32_t)ncpu : 0;

    uint64_t heap = 0;
    for (uint32_t h = 0; h < c->mem.memoryHeapCount; ++h)
        if ((c->mem.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) &&
            c->mem.memoryHeaps[h].size > heap)
            heap = c->mem.memoryHeaps[h].size;
    info->global_mem_bytes = heap;
    uint64_t alloc = c->maint3.maxMemoryAllocationSize ? c->maint3.maxMemoryAllocationSize : heap;
    if (heap && alloc > heap)
        alloc = heap;
    info->max_alloc_bytes = alloc;
    /* A kernel argument is bound as up to ATTN_VK_MAX_WIN windows of the largest power of
     * two within maxStorageBufferRange (vk_kernel.c), so that is what one may address. */
    uint64_t win = (uint64_t)1 << attn_vk_log2_floor(lim->maxStorageBufferRange);
    uint64_t binding = win * ATTN_VK_MAX_WIN;
    info->max_binding_bytes = binding < alloc ? binding : alloc;
    info->local_mem_bytes = lim->maxComputeSharedMemorySize;
    uint32_t wg = lim->maxComputeWorkGroupInvocations;
    if (lim->maxComputeWorkGroupSize[0] < wg)
        wg = lim->maxComputeWorkGroupSize[0];
    info->max_work_group_size = wg;
    info->subgroup_size =
        (c->subgroup.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) ? c->subgroup.subgroupSize : 0;
    info->subgroup_ops = 0;
    if (info->subgroup_size) {
        const VkSubgroupFeatureFlags ops = c->subgroup.supportedOperations;
        info->subgroup_ops = ((ops & VK_SUBGROUP_FEATURE_VOTE_BIT) ? ATTN_SUBGROUP_VOTE : 0) |
                             ((ops & VK_SUBGROUP_FEATURE_BALLOT_BIT) ? ATTN_SUBGROUP_BALLOT : 0) |
                             ((ops & VK_SUBGROUP_FEATURE_SHUFFLE_BIT) ? ATTN_SUBGROUP_SHUFFLE : 0);
        /* Testing only: as if the device had no subgroup shuffles (the decode shader's
         * whole-row variant). */
        if (attn_vk_env_flag("ATTN_VK_NO_SHUFFLE"))
            info->subgroup_ops &= ~ATTN_SUBGROUP_SHUFFLE;
    }
    info->fp16_compute = c->float16.shaderFloat16 ? 1 : 0;
    info->fp16_storage = 1; /* 16-bit storage, or packed words without it */
    info->fp64 = c->features.shaderFloat64 ? 1 : 0;
    info->unified_memory = info->type != ATTN_DEVICE_DISCRETE_GPU;
}

static attn_status attn_vk_device_info(uint32_t index, attn_device_info *info)
{
    if (!info)
        return ATTN_ERROR_NULL_POINTER;
    if (info->struct_size < sizeof(attn_device_info))
        return ATTN_ERROR_STRUCT_SIZE;
    pthread_once(&enum_once, attn_vk_enum_init);
    uint32_t n = 0;
    VkPhysicalDevice *list = attn_vk_list(enum_instance, &n);
    if (index >= n) {
        free(list);
        return ATTN_ERROR_NO_DEVICE;
    }
    attn_vk_caps c;
    attn_vk_query(list[index], &c);
    free(list);
    attn_vk_fill_info(&c, index, info);
    return ATTN_OK;
}

/* ---- memory ------------------------------------------------------------------------------ */

/* A memory type allowed by `bits` with all of `want`, preferring those with `prefer` too. */
static int attn_vk_memory_type(const attn_vk_device *d, uint32_t bits, VkMemoryPropertyFlags want,
                               VkMemoryPropertyFlags prefer)
{
    int found = -1;
    for (uint32_t i = 0; i < d->mem.memoryTypeCount; ++i) {
        VkMemoryPropertyFlags f = d->mem.memoryTypes[i].propertyFlags;
        if (!(bits & (1u << i)) || (f & want) != want)
            continue;
        if ((f & prefer) == prefer)
            return (int)i;
        if (found < 0)
            found = (int)i;
    }
    return found;
}

/* What the library's buffers may be bound as: storage buffers, and on devices that read
 * through texel views (d->texel) their R32G32B32A32_UINT views. */
static const VkBufferUsageFlags attn_vk_usage =
    VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_UNIFORM_TEXEL_BUFFER_BIT |
    VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;

/* The size of a buffer of `bytes` that is read through texel views (d->texel; else just
 * `bytes`). llvmpipe keys a compiled shader on the static state of each bound texture
 * (lp_sampler_static_texture_state, Mesa 22.3), texel buffers included: whether the
 * buffer's size in bytes is a power of two, and "level_zero_only", which for a buffer view
 * reads bits 8-15 of its size in bytes (a union with the mip levels). Buffers that differed
 * in either compiled a kernel again: 5-14 s at d=128, doubling the test matrix's llvmpipe
 * time. So such a buffer gets 16 to 272 bytes more, up to a size that is not a power of
 * two and has a bit of 8-15 set, and its view covers all of it (vk_kernel.c,
 * attn_vk_texel_view). */
static uint64_t attn_vk_texel_bytes(const attn_vk_device *d, uint64_t bytes)
{
    if (!d->texel)
        return bytes;
    uint64_t padded = (bytes + 15) / 16 * 16 + 16;
    while (!(padded & (padded - 1)) || !((padded >> 8) & 0xff))
        padded += 16;
    return padded;
}

/* A buffer with its own memory. host: host-visible and coherent (params; host == 2:
 * staging, which prefers memory that is not device-local, so that on a discrete GPU it is
 * system memory and takes nothing from the device's budget) — otherwise device-local,
 * mapped too where that memory is host-coherent (UMA, llvmpipe). */
static attn_status attn_vk_make_buffer(attn_vk_device *d, uint64_t bytes, int host,
                                       VkBufferUsageFlags usage, attn_vk_buffer *b)
{
    memset(b, 0, sizeof *b);
    /* Rounded up to 16 bytes: kernels read u8 masks and packed f16 as 32-bit words, and the
     * binding covers the whole last word. */
    const uint64_t size = bytes ? (bytes + 15) / 16 * 16 : 16;
    VkBufferCreateInfo bi = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
        .size = size,
        .usage = usage,
        .sharingMode = VK_SHARING_MODE_EXCLUSIVE,
    };
    char what[96];
    snprintf(what, sizeof what, "allocating %llu bytes", (unsigned long long)bytes);
    VkResult r = vkCreateBuffer(d->device, &bi, NULL, &b->buffer);
    if (r != VK_SUCCESS)
        return attn_vk_fail(d, r, "vkCreateBuffer", what);
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(d->device, b->buffer, &req);
    const VkMemoryPropertyFlags coherent =
        VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    int type = -1;
    for (uint32_t i = 0; host == 2 && type < 0 && i < d->mem.memoryTypeCount; ++i) {
        const VkMemoryPropertyFlags f = d->mem.memoryTypes[i].propertyFlags;
        if ((req.memoryTypeBits & (1u << i)) && (f & coherent) == coherent &&
            !(f & VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT))
            type = (int)i;
    }
    if (type < 0)
        type = host ? attn_vk_memory_type(d, req.memoryTypeBits, coherent, 0)
                    : attn_vk_memory_type(d, req.memoryTypeBits,
                                          VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT,
                                          VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT | coherent);
    if (type < 0 && !host)
        type = attn_vk_memory_type(d, req.memoryTypeBits, 0, 0);
    if (type < 0) {
        vkDestroyBuffer(d->device, b->buffer, NULL);
        b->buffer = VK_NULL_HANDLE;
        return attn__fail(d->ctx, ATTN_ERROR_BACKEND,
                          "Vulkan: no suitable memory type for %s", what);
    }
    VkMemoryAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
        .allocationSize = req.size,
        .memoryTypeIndex = (uint32_t)type,
    };
    r = vkAllocateMemory(d->device, &ai, NULL, &b->memory);
    if (r == VK_SUCCESS)
        r = vkBindBufferMemory(d->device, b->buffer, b->memory, 0);
    if (r == VK_SUCCESS && (d->mem.memoryTypes[type].propertyFlags & coherent) == coherent)
        r = vkMapMemory(d->device, b->memory, 0, VK_WHOLE_SIZE, 0, &b->mapped);
    if (r != VK_SUCCESS) {
        attn_status st = attn_vk_fail(d, r, "vkAllocateMemory/vkBindBufferMemory/vkMapMemory", what);
        vkDestroyBuffer(d->device, b->buffer, NULL);
        if (b->memory)
            vkFreeMemory(d->device, b->memory, NULL);
        memset(b, 0, sizeof *b);
        return st;
    }
    b->size = size; /* what may be bound; the core counts the bytes it asked for */
    return ATTN_OK;
}

static void attn_vk_destroy_buffer(attn_vk_device *d, attn_vk_buffer *b)
{
    if (b->view)
        vkDestroyBufferView(d->device, b->view, NULL);
    if (b->memory) { /* only the library's own: a wrapped buffer has no memory here */
        vkDestroyBuffer(d->device, b->buffer, NULL);
        vkFreeMemory(d->device, b->memory, NULL); /* unmaps */
    }
    memset(b, 0, sizeof *b);
}

/* ---- command batches ---------------------------------------------------------------------- */

void attn_vk_barrier(attn_vk_device *d)
{
    VkMemoryBarrier mb = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
        .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
        .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                         VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
    };
    const VkPipelineStageFlags stages =
        VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
    vkCmdPipelineBarrier(d->cmd, stages, stages, 0, 1, &mb, 0, NULL, 0, NULL);
}

attn_status attn_vk_begin(attn_vk_device *d)
{
    if (d->recording)
        return ATTN_OK;
    VkCommandBufferBeginInfo bi = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
        .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT,
    };
    VkResult r = vkBeginCommandBuffer(d->cmd, &bi);
    if (r != VK_SUCCESS)
        return attn_vk_fail(d, r, "vkBeginCommandBuffer", "recording launches");
    d->recording = 1;
    d->dispatched = 0;
    /* Earlier submissions' writes are visible to this batch's commands. */
    attn_vk_barrier(d);
    return ATTN_OK;
}

/* Ends the recording batch: device writes become visible to the host (mapped reads) once
 * it has completed. */
static VkResult attn_vk_end(attn_vk_device *d)
{
    VkMemoryBarrier mb = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
        .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
        .dstAccessMask = VK_ACCESS_HOST_READ_BIT,
    };
    vkCmdPipelineBarrier(d->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                         VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &mb, 0, NULL, 0, NULL);
    d->recording = 0;
    return vkEndCommandBuffer(d->cmd);
}

/* The recording batch's command buffer, descriptors and params are free again. */
static void attn_vk_recycle(attn_vk_device *d)
{
    vkResetCommandPool(d->device, d->cmd_pool, 0);
    vkResetDescriptorPool(d->device, d->desc_pool, 0);
    d->params_used = 0;
    d->dispatched = 0;
}

static attn_status attn_vk_flush_async(attn_vk_device *d);
static void attn_vk_async_free(attn_vk_device *d);

attn_status attn_vk_flush(attn_vk_device *d)
{
    if (d->async)
        return attn_vk_flush_async(d);
    if (!d->recording)
        return ATTN_OK;
    VkResult r = attn_vk_end(d);
    const char *call = "vkEndCommandBuffer";
    if (r == VK_SUCCESS) {
        VkSubmitInfo si = {
            .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
            .commandBufferCount = 1,
            .pCommandBuffers = &d->cmd,
        };
        call = "vkQueueSubmit";
        r = vkQueueSubmit(d->queue, 1, &si, d->fence);
        if (r == VK_SUCCESS) {
            call = "vkWaitForFences";
            r = vkWaitForFences(d->device, 1, &d->fence, VK_TRUE, UINT64_MAX);
        }
    }
    /* Recycle whatever happened: a failed batch must not wedge the next one. */
    vkResetFences(d->device, 1, &d->fence);
    attn_vk_recycle(d);
    if (r != VK_SUCCESS)
        return attn_vk_fail(d, r, call, "running a batch of launches");
    return ATTN_OK;
}

/* ---- overlapped uploads ---------------------------------------------------------------------
 * The scheduler uploads the next key chunk while the current one computes (backend.h:
 * write_async, compute_marker, event_wait, event_release). Two timeline semaphores order
 * the work: `compute` counts the submitted batches of launches, `copy` the submitted
 * uploads. A compute marker submits the recording batch without waiting for it; a launch
 * that waits for an upload makes its batch wait for the upload's `copy` value on the
 * device; an upload waits for the `compute` value of the last batch that read its slot.
 *   - Batches in flight keep their command pool, descriptor pool and params ring
 *     (frames): the device's cmd / desc_pool / params fields, which vk_kernel.c records
 *     into, are the recording frame; submitted frames wait in `spare` until their compute
 *     value retires them, and the next batch takes the one that retired first.
 *   - An upload into host-visible memory (UMA devices, llvmpipe) is a host copy once the
 *     awaited batch has completed: no staging memory, and the host waits only for work
 *     submitted two chunks earlier while the previous chunk computes.
 *   - Any other upload is a copy from a staging ring (host memory, preferably not
 *     device-local: attn_vk_make_buffer) on the transfer queue: a second queue of the
 *     compute family where it has one, else the compute queue itself.
 * ATTN_VK_STAGED_UPLOADS=1 sends every upload through the ring (tests cover the transfer
 * path on llvmpipe with it); ATTN_VK_NO_ASYNC=1 leaves it all off (every batch waited for,
 * uploads synchronous: the fallback of devices without timeline semaphores). */

#define ATTN_VK_FRAMES 3     /* batches: the recording one and two in flight */
#define ATTN_VK_COPY_SLOTS 4 /* parts of the staging ring, one upload submission each */

typedef struct attn_vk_frame {
    VkCommandPool cmd_pool;
    VkCommandBuffer cmd;
    VkDescriptorPool desc_pool;
    attn_vk_buffer params;
    uint64_t retire; /* compute value after which it is free (0: free now) */
} attn_vk_frame;

typedef struct attn_vk_copy_slot {
    VkCommandBuffer cmd;
    uint64_t retire; /* copy value after which its part of the ring is free */
} attn_vk_copy_slot;

struct attn_vk_async {
    VkSemaphore compute, copy;       /* timelines */
    uint64_t compute_sent, copy_sent; /* values of the last submissions */
    uint64_t copy_wait;              /* the next batch waits for copy >= this */
    PFN_vkWaitSemaphoresKHR wait_semaphores;
    PFN_vkGetSemaphoreCounterValueKHR counter_value;
    attn_vk_frame spare[ATTN_VK_FRAMES - 1];
    VkQueue tqueue;                  /* uploads: a second queue, or d->queue */
    VkCommandPool tpool;
    attn_vk_copy_slot slots[ATTN_VK_COPY_SLOTS];
    uint32_t next_slot;
    attn_vk_buffer ring;             /* staging, made on first use */
    int staged;                      /* ATTN_VK_STAGED_UPLOADS */
};

/* An event: a value on one of the two timelines; 0 is complete from the start. */
typedef struct attn_vk_event {
    int copy;
    uint64_t value;
} attn_vk_event;

/* Waits on the host until timeline `sem` reaches `value` (no lock needed). */
static attn_status attn_vk_wait(attn_vk_device *d, VkSemaphore sem, uint64_t value)
{
    if (!value)
        return ATTN_OK;
    VkSemaphoreWaitInfo wi = {
        .sType = VK_STRUCTURE_TYPE_SEMAPHORE_WAIT_INFO,
        .semaphoreCount = 1,
        .pSemaphores = &sem,
        .pValues = &value,
    };
    VkResult r = d->async->wait_semaphores(d->device, &wi, UINT64_MAX);
    return r == VK_SUCCESS ? ATTN_OK : attn_vk_fail(d, r, "vkWaitSemaphores", "waiting for the device");
}

static attn_status attn_vk_frame_make(attn_vk_device *d, attn_vk_frame *f)
{
    VkResult r;
    VkCommandPoolCreateInfo pi = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
        .flags = VK_COMMAND_POOL_CREATE_TRANSIENT_BIT,
        .queueFamilyIndex = d->queue_family,
    };
    if ((r = vkCreateCommandPool(d->device, &pi, NULL, &f->cmd_pool)) != VK_SUCCESS)
        return attn_vk_fail(d, r, "vkCreateCommandPool", "making a command batch");
    VkCommandBufferAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
        .commandPool = f->cmd_pool,
        .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
        .commandBufferCount = 1,
    };
    if ((r = vkAllocateCommandBuffers(d->device, &ai, &f->cmd)) != VK_SUCCESS)
        return attn_vk_fail(d, r, "vkAllocateCommandBuffers", "making a command batch");
    /* Every set of a batch may be windowed: 8 slots x 4 windows + the params block. */
    VkDescriptorPoolSize sizes[3] = {
        {VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, ATTN_VK_BATCH * ATTN_VK_PARAMS_BINDING},
        {VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER, ATTN_VK_BATCH},
        {VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER, ATTN_VK_BATCH * ATTN__MAX_LAUNCH_BUFFERS},
    };
    VkDescriptorPoolCreateInfo dpi = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
        .maxSets = ATTN_VK_BATCH,
        .poolSizeCount = 3,
        .pPoolSizes = sizes,
    };
    if ((r = vkCreateDescriptorPool(d->device, &dpi, NULL, &f->desc_pool)) != VK_SUCCESS)
        return attn_vk_fail(d, r, "vkCreateDescriptorPool", "making a command batch");
    return attn_vk_make_buffer(d, (uint64_t)d->params_stride * ATTN_VK_BATCH, 1,
                               VK_BUFFER_USAGE_UNIFORM_BUFFER_BIT, &f->params);
}

static void attn_vk_frame_free(attn_vk_device *d, attn_vk_frame *f)
{
    attn_vk_destroy_buffer(d, &f->params);
    if (f->desc_pool)
        vkDestroyDescriptorPool(d->device, f->desc_pool, NULL);
    if (f->cmd_pool)
        vkDestroyCommandPool(d->device, f->cmd_pool, NULL);
    memset(f, 0, sizeof *f);
}

/* Exchanges the recording frame (the device's fields) with `f`. */
static void attn_vk_frame_swap(attn_vk_device *d, attn_vk_frame *f)
{
    const attn_vk_frame cur = {d->cmd_pool, d->cmd, d->desc_pool, d->params, 0};
    d->cmd_pool = f->cmd_pool;
    d->cmd = f->cmd;
    d->desc_pool = f->desc_pool;
    d->params = f->params;
    *f = cur;
}

/* Submits the recording batch without waiting for it (after the uploads it waits for) and
 * makes the frame that retired first the recording one (lock held). */
static attn_status attn_vk_submit(attn_vk_device *d)
{
    struct attn_vk_async *a = d->async;
    if (!d->recording)
        return ATTN_OK;
    VkResult r = attn_vk_end(d);
    const uint64_t wait = a->copy_wait, signal = a->compute_sent + 1;
    if (r == VK_SUCCESS) {
        const VkTimelineSemaphoreSubmitInfo ts = {
            .sType = VK_STRUCTURE_TYPE_TIMELINE_SEMAPHORE_SUBMIT_INFO,
            .waitSemaphoreValueCount = wait ? 1 : 0,
            .pWaitSemaphoreValues = &wait,
            .signalSemaphoreValueCount = 1,
            .pSignalSemaphoreValues = &signal,
        };
        const VkPipelineStageFlags stage =
            VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
        const VkSubmitInfo si = {
            .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
            .pNext = &ts,
            .waitSemaphoreCount = wait ? 1 : 0,
            .pWaitSemaphores = &a->copy,
            .pWaitDstStageMask = &stage,
            .commandBufferCount = 1,
            .pCommandBuffers = &d->cmd,
            .signalSemaphoreCount = 1,
            .pSignalSemaphores = &a->compute,
        };
        r = vkQueueSubmit(d->queue, 1, &si, VK_NULL_HANDLE);
    }
    if (r != VK_SUCCESS) {
        attn_vk_recycle(d); /* nothing is pending: the frame records again */
        return attn_vk_fail(d, r, "vkEndCommandBuffer/vkQueueSubmit", "submitting a batch of launches");
    }
    a->compute_sent = signal;
    attn_vk_frame *f = &a->spare[0];
    for (int i = 1; i < ATTN_VK_FRAMES - 1; ++i)
        if (a->spare[i].retire < f->retire)
            f = &a->spare[i];
    attn_status st = attn_vk_wait(d, a->compute, f->retire);
    if (st != ATTN_OK)
        return st; /* the device is lost: keep the frames as they are */
    attn_vk_frame_swap(d, f);
    f->retire = signal;
    attn_vk_recycle(d);
    return ATTN_OK;
}

static attn_status attn_vk_flush_async(attn_vk_device *d)
{
    struct attn_vk_async *a = d->async;
    attn_status st = attn_vk_submit(d);
    attn_status w = attn_vk_wait(d, a->compute, a->compute_sent);
    attn_status c = attn_vk_wait(d, a->copy, a->copy_sent);
    return st != ATTN_OK ? st : w != ATTN_OK ? w : c;
}

/* Timeline semaphores, spare frames and the upload command buffers, where the device
 * was created with timeline semaphores; `tqueue` takes the uploads. Failing here only
 * leaves uploads synchronous. */
static void attn_vk_async_init(attn_vk_device *d, VkQueue tqueue)
{
    struct attn_vk_async *a = calloc(1, sizeof *a);
    if (!a)
        return;
    a->wait_semaphores =
        (PFN_vkWaitSemaphoresKHR)vkGetDeviceProcAddr(d->device, "vkWaitSemaphoresKHR");
    a->counter_value = (PFN_vkGetSemaphoreCounterValueKHR)vkGetDeviceProcAddr(
        d->device, "vkGetSemaphoreCounterValueKHR");
    a->tqueue = tqueue;
    a->staged = attn_vk_env_flag("ATTN_VK_STAGED_UPLOADS");
    d->async = a; /* attn_vk_async_free below takes whatever was made */
    VkSemaphoreTypeCreateInfo ti = {
        .sType = VK_STRUCTURE_TYPE_SEMAPHORE_TYPE_CREATE_INFO,
        .semaphoreType = VK_SEMAPHORE_TYPE_TIMELINE,
    };
    VkSemaphoreCreateInfo si = {.sType = VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO, .pNext = &ti};
    VkCommandPoolCreateInfo pi = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
        .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
        .queueFamilyIndex = d->queue_family,
    };
    VkCommandBuffer cmds[ATTN_VK_COPY_SLOTS];
    VkCommandBufferAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
        .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
        .commandBufferCount = ATTN_VK_COPY_SLOTS,
    };
    int ok = a->wait_semaphores && a->counter_value &&
             vkCreateSemaphore(d->device, &si, NULL, &a->compute) == VK_SUCCESS &&
             vkCreateSemaphore(d->device, &si, NULL, &a->copy) == VK_SUCCESS &&
             vkCreateCommandPool(d->device, &pi, NULL, &a->tpool) == VK_SUCCESS;
    ai.commandPool = a->tpool;
    ok = ok && vkAllocateCommandBuffers(d->device, &ai, cmds) == VK_SUCCESS;
    for (int i = 0; ok && i < ATTN_VK_COPY_SLOTS; ++i)
        a->slots[i].cmd = cmds[i];
    for (int i = 0; ok && i < ATTN_VK_FRAMES - 1; ++i)
        ok = attn_vk_frame_make(d, &a->spare[i]) == ATTN_OK;
    if (!ok) {
        attn__log(d->ctx, ATTN_LOG_INFO, "Vulkan: uploads stay synchronous (setting up "
                  "timeline semaphores and batches failed)");
        attn_vk_async_free(d);
    }
}

/* Everything of the overlapped uploads (the device idle: after a flush, or never used). */
static void attn_vk_async_free(attn_vk_device *d)
{
    struct attn_vk_async *a = d->async;
    if (!a)
        return;
    d->async = NULL;
    for (int i = 0; i < ATTN_VK_FRAMES - 1; ++i)
        attn_vk_frame_free(d, &a->spare[i]);
    attn_vk_destroy_buffer(d, &a->ring);
    if (a->tpool)
        vkDestroyCommandPool(d->device, a->tpool, NULL); /* frees the slots' buffers */
    if (a->compute)
        vkDestroySemaphore(d->device, a->compute, NULL);
    if (a->copy)
        vkDestroySemaphore(d->device, a->copy, NULL);
    free(a);
}
/* ---- device ------------------------------------------------------------------------------- */

static void attn_vk_close(void *dev);

/* The recording frame (command pool and buffer, descriptor pool, params ring: what
 * attn_vk_frame_make makes for every frame), fence, pipeline cache and dummy buffer: the
 * per-device objects the library creates on whichever VkDevice (its own or the
 * application's). On failure what exists is the device's, for attn_vk_close. */
static attn_status attn_vk_setup(attn_vk_device *d)
{
    uint64_t align = d->props.limits.minUniformBufferOffsetAlignment;
    if (align < 16)
        align = 16;
    d->params_stride = (uint32_t)((ATTN__MAX_PARAMS_BYTES + align - 1) / align * align);
    attn_vk_frame f = {0};
    attn_status st = attn_vk_frame_make(d, &f);
    attn_vk_frame_swap(d, &f); /* the device's fields were empty: f is empty again */
    if (st != ATTN_OK)
        return st;
    if (!d->params.mapped)
        return attn__fail(d->ctx, ATTN_ERROR_BACKEND, "Vulkan: the params buffer is not mappable");
    VkResult r;
    VkFenceCreateInfo fi = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    if ((r = vkCreateFence(d->device, &fi, NULL, &d->fence)) != VK_SUCCESS)
        return attn_vk_fail(d, r, "vkCreateFence", "opening the device");
    VkPipelineCacheCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO};
    if ((r = vkCreatePipelineCache(d->device, &ci, NULL, &d->pipeline_cache)) != VK_SUCCESS)
        return attn_vk_fail(d, r, "vkCreatePipelineCache", "opening the device");
    st = attn_vk_make_buffer(d, attn_vk_texel_bytes(d, 256), 0, attn_vk_usage, &d->dummy);
    d->dummy.texel = d->texel;
    return st;
}

/* Fills the capability fields from what the device offers and what is enabled. */
static void attn_vk_set_caps(attn_vk_device *d, const attn_vk_caps *c, int int64, int f16)
{
    d->props = c->props;
    d->mem = c->mem;
    d->int64 = int64;
    d->f16_storage = f16;
    d->subgroup_vote = (c->subgroup.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                       (c->subgroup.supportedOperations & VK_SUBGROUP_FEATURE_VOTE_BIT) &&
                       !attn_vk_env_flag("ATTN_VK_NO_SUBGROUP");
    d->max_range = c->props.limits.maxStorageBufferRange;
    d->win_shift = attn_vk_log2_floor(d->max_range);
    /* On a CPU (llvmpipe) a storage-buffer load is a loop over the lanes with a scalar load
     * and a bounds check per component, and a texel fetch is one 16-byte load per lane
     * (measured: 4-5x the bytes per second); on a GPU both are plain loads. A view must
     * reach as far as one binding does, so the texel variant needs no windows. */
    d->texel = c->props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU && c->texel_words &&
               (uint64_t)c->props.limits.maxTexelBufferElements * 16 >= d->max_range &&
               !attn_vk_env_flag("ATTN_VK_NO_TEXEL");
}

static attn_status attn_vk_open(attn_context *ctx, uint32_t index, void **out)
{
    *out = NULL;
    attn_vk_device *d = calloc(1, sizeof *d);
    if (!d)
        return attn__fail(ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "Vulkan: out of host memory");
    d->ctx = ctx;
    d->owns_device = 1;
    pthread_mutex_init(&d->lock, NULL);
    *out = d;
    VkResult r = attn_vk_create_instance(&d->instance);
    if (r != VK_SUCCESS) {
        attn_status st = attn_vk_fail(d, r, "vkCreateInstance", "(Vulkan 1.1 needed)");
        attn_vk_close(d);
        *out = NULL;
        return st;
    }
    uint32_t n = 0;
    VkPhysicalDevice *list = attn_vk_list(d->instance, &n);
    if (index >= n) {
        free(list);
        attn_vk_close(d);
        *out = NULL;
        return attn__fail(ctx, ATTN_ERROR_NO_DEVICE, "Vulkan: no device with index %u",
                          (unsigned)index);
    }
    d->phys = list[index];
    free(list);

    attn_vk_caps c;
    attn_vk_query(d->phys, &c);
    uint32_t nq = 0;
    VkQueueFamilyProperties q[16];
    vkGetPhysicalDeviceQueueFamilyProperties(d->phys, &nq, NULL);
    if (nq > 16)
        nq = 16;
    vkGetPhysicalDeviceQueueFamilyProperties(d->phys, &nq, q);
    /* A compute family without graphics is the async-compute queue where there is one. */
    int fam = -1;
    for (uint32_t f = 0; f < nq; ++f) {
        if (!(q[f].queueFlags & VK_QUEUE_COMPUTE_BIT))
            continue;
        if (fam < 0 || ((q[fam].queueFlags & VK_QUEUE_GRAPHICS_BIT) &&
                        !(q[f].queueFlags & VK_QUEUE_GRAPHICS_BIT)))
            fam = (int)f;
    }
    d->queue_family = (uint32_t)fam;

    /* Enable only what the kernels use and the driver offers.
     * ATTN_VK_NO_16BIT_STORAGE=1 leaves 16-bit storage off, so f16 tensors take the packed
     * path (tests use it to cover devices without the feature). */
    int int64 = c.features.shaderInt64 == VK_TRUE;
    int f16 = c.storage16.storageBuffer16BitAccess == VK_TRUE &&
              !attn_vk_env_flag("ATTN_VK_NO_16BIT_STORAGE");
    /* Timeline semaphores order overlapped uploads and compute (ATTN_VK_NO_ASYNC=1: off,
     * every batch is waited for, as on a device without them). */
    const int timeline = c.has_timeline_ext && c.timeline.timelineSemaphore == VK_TRUE &&
                         !attn_vk_env_flag("ATTN_VK_NO_ASYNC");
    VkPhysicalDeviceTimelineSemaphoreFeatures tl = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_TIMELINE_SEMAPHORE_FEATURES,
        .timelineSemaphore = VK_TRUE,
    };
    const char *const extensions[] = {VK_KHR_TIMELINE_SEMAPHORE_EXTENSION_NAME};
    VkPhysicalDevice16BitStorageFeatures s16 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES,
        .pNext = timeline ? &tl : NULL,
        .storageBuffer16BitAccess = f16 ? VK_TRUE : VK_FALSE,
    };
    VkPhysicalDeviceFeatures2 feats = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
        .pNext = &s16,
    };
    feats.features.shaderInt64 = int64 ? VK_TRUE : VK_FALSE;
    /* A second queue of the family, where it has one, takes the overlapped uploads. */
    const float prio[2] = {1.0f, 1.0f};
    const uint32_t nqueues = timeline && q[fam].queueCount >= 2 ? 2 : 1;
    VkDeviceQueueCreateInfo qi = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
        .queueFamilyIndex = d->queue_family,
        .queueCount = nqueues,
        .pQueuePriorities = prio,
    };
    VkDeviceCreateInfo di = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
        .pNext = &feats,
        .queueCreateInfoCount = 1,
        .pQueueCreateInfos = &qi,
        .enabledExtensionCount = timeline ? 1 : 0,
        .ppEnabledExtensionNames = timeline ? extensions : NULL,
    };
    r = vkCreateDevice(d->phys, &di, NULL, &d->device);
    if (r != VK_SUCCESS) {
        attn_status st = attn_vk_fail(d, r, "vkCreateDevice", "opening the device");
        attn_vk_close(d);
        *out = NULL;
        return st;
    }
    vkGetDeviceQueue(d->device, d->queue_family, 0, &d->queue);
    attn_vk_set_caps(d, &c, int64, f16);
    attn_status st = attn_vk_setup(d);
    if (st != ATTN_OK) {
        attn_vk_close(d);
        *out = NULL;
        return st;
    }
    if (timeline) {
        VkQueue tqueue = d->queue;
        if (nqueues == 2)
            vkGetDeviceQueue(d->device, d->queue_family, 1, &tqueue);
        attn_vk_async_init(d, tqueue);
    }
    return ATTN_OK;
}

/* The application's instance, physical device, device and queue. Which optional features
 * the application enabled on its VkDevice cannot be queried, so none are assumed: f16
 * tensors take the packed path and indices are 32-bit (buffers below 4 GiB). */
static attn_status attn_vk_open_native(attn_context *ctx, const void *native,
                                       attn_device_info *info, void **out)
{
    const attn__vulkan_native *n = native;
    *out = NULL;
    if (!n || !n->instance || !n->physical_device || !n->device || !n->queue)
        return attn__fail(ctx, ATTN_ERROR_NULL_POINTER,
                          "Vulkan interop: instance, physical device, device and queue must "
                          "not be NULL");
    attn_vk_caps c;
    attn_vk_query((VkPhysicalDevice)n->physical_device, &c);
    if (c.props.apiVersion < VK_API_VERSION_1_1)
        return attn__fail(ctx, ATTN_ERROR_UNSUPPORTED,
                          "Vulkan interop: the device supports Vulkan %u.%u; 1.1 is needed",
                          VK_API_VERSION_MAJOR(c.props.apiVersion),
                          VK_API_VERSION_MINOR(c.props.apiVersion));
    uint32_t nq = 0;
    VkQueueFamilyProperties q[16];
    vkGetPhysicalDeviceQueueFamilyProperties((VkPhysicalDevice)n->physical_device, &nq, NULL);
    if (nq > 16)
        nq = 16;
    vkGetPhysicalDeviceQueueFamilyProperties((VkPhysicalDevice)n->physical_device, &nq, q);
    if (n->queue_family >= nq || !(q[n->queue_family].queueFlags & VK_QUEUE_COMPUTE_BIT))
        return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                          "Vulkan interop: queue family %u has no compute",
                          (unsigned)n->queue_family);
    attn_vk_device *d = calloc(1, sizeof *d);
    if (!d)
        return attn__fail(ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "Vulkan: out of host memory");
    d->ctx = ctx;
    d->owns_device = 0;
    pthread_mutex_init(&d->lock, NULL);
    d->instance = (VkInstance)n->instance;
    d->phys = (VkPhysicalDevice)n->physical_device;
    d->device = (VkDevice)n->device;
    d->queue = (VkQueue)n->queue;
    d->queue_family = n->queue_family;
    attn_vk_set_caps(d, &c, 0, 0);
    memset(info, 0, sizeof *info);
    info->struct_size = sizeof *info;
    attn_vk_fill_info(&c, 0, info);
    attn_status st = attn_vk_setup(d);
    if (st != ATTN_OK) {
        attn_vk_close(d);
        return st;
    }
    *out = d;
    return ATTN_OK;
}

static void attn_vk_close(void *dev)
{
    attn_vk_device *d = dev;
    if (!d)
        return;
    if (d->device) {
        pthread_mutex_lock(&d->lock);
        attn_vk_flush(d);
        pthread_mutex_unlock(&d->lock);
        /* The timelines are signalled before a driver is done with a submission (llvmpipe's
         * queue thread still releases it, semaphores included): the queues go idle first.
         * (Uploads overlap compute only on the library's own device.) */
        if (d->async && d->owns_device)
            vkDeviceWaitIdle(d->device);
        attn_vk_async_free(d);
        /* Only our own objects; the queue may be the application's, so no vkDeviceWaitIdle
         * on its behalf: our work has finished at the flush above. */
        attn_vk_destroy_buffer(d, &d->staging);
        attn_vk_destroy_buffer(d, &d->dummy);
        if (d->pipeline_cache)
            vkDestroyPipelineCache(d->device, d->pipeline_cache, NULL);
        if (d->fence)
            vkDestroyFence(d->device, d->fence, NULL);
        attn_vk_frame rec = {0}; /* the recording frame, as attn_vk_setup made it */
        attn_vk_frame_swap(d, &rec);
        attn_vk_frame_free(d, &rec);
        if (d->owns_device)
            vkDestroyDevice(d->device, NULL);
    }
    if (d->owns_device && d->instance)
        vkDestroyInstance(d->instance, NULL);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

/* ---- buffers ------------------------------------------------------------------------------ */

static attn_status attn_vk_buffer_alloc(void *dev, uint64_t bytes, void **out)
{
    attn_vk_device *d = dev;
    *out = NULL;
    attn_vk_buffer *b = calloc(1, sizeof *b);
    if (!b)
        return attn__fail(d->ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "Vulkan: out of host memory");
    /* Read through texel views where they are used and the padded size still fits one
     * binding (a larger buffer is bound in windows, through storage buffers only). The
     * core still counts the bytes it asked for. */
    const uint64_t padded = attn_vk_texel_bytes(d, bytes);
    const int texel = d->texel && padded <= d->max_range;
    attn_status st = attn_vk_make_buffer(d, texel ? padded : bytes, 0, attn_vk_usage, b);
    if (st != ATTN_OK) {
        free(b);
        return st;
    }
    b->texel = texel;
    *out = b;
    return ATTN_OK;
}

/* The application's VkBuffer: remembered, never destroyed. */
static attn_status attn_vk_buffer_wrap(void *dev, const void *native, uint64_t *bytes, void **out)
{
    attn_vk_device *d = dev;
    const attn__vulkan_buffer *nb = native;
    *out = NULL;
    if (!nb->buffer || !nb->size)
        return attn__fail(d->ctx, ATTN_ERROR_INVALID_ARGUMENT,
                          "Vulkan interop: the VkBuffer is NULL or its size is 0");
    attn_vk_buffer *b = calloc(1, sizeof *b);
    if (!b)
        return attn__fail(d->ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "Vulkan: out of host memory");
    b->buffer = (VkBuffer)(uintptr_t)nb->buffer; /* 64-bit hosts: handles are pointers */
    b->size = nb->size;
    *bytes = nb->size;
    *out = b;
    return ATTN_OK;
}

static void attn_vk_buffer_free(void *dev, void *buf)
{
    attn_vk_device *d = dev;
    if (!buf)
        return;
    /* The core finishes before it frees; nothing recorded can still use the buffer. */
    attn_vk_destroy_buffer(d, buf);
    free(buf);
}

/* Copies between host memory and an unmapped buffer through the staging buffer, one
 * submission per staging-sized piece (lock held, batch flushed). */
static attn_status attn_vk_staged(attn_vk_device *d, attn_vk_buffer *b, uint64_t offset,
                                  void *host, uint64_t bytes, int upload)
{
    attn_status st = ATTN_OK;
    if (!d->staging.buffer)
        st = attn_vk_make_buffer(d, ATTN_VK_STAGING_BYTES, 2,
                                 VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                                 &d->staging);
    for (uint64_t done = 0; st == ATTN_OK && done < bytes;) {
        uint64_t n = bytes - done < ATTN_VK_STAGING_BYTES ? bytes - done : ATTN_VK_STAGING_BYTES;
        if (upload)
            memcpy(d->staging.mapped, (char *)host + done, n);
        if ((st = attn_vk_begin(d)) != ATTN_OK)
            break;
        VkBufferCopy region = {
            .srcOffset = upload ? 0 : offset + done,
            .dstOffset = upload ? offset + done : 0,
            .size = n,
        };
        if (upload)
            vkCmdCopyBuffer(d->cmd, d->staging.buffer, b->buffer, 1, &region);
        else
            vkCmdCopyBuffer(d->cmd, b->buffer, d->staging.buffer, 1, &region);
        if ((st = attn_vk_flush(d)) != ATTN_OK)
            break;
        if (!upload)
            memcpy((char *)host + done, d->staging.mapped, n);
        done += n;
    }
    return st;
}

static attn_status attn_vk_buffer_write(void *dev, void *buf, uint64_t offset, const void *src,
                                        uint64_t bytes)
{
    attn_vk_device *d = dev;
    attn_vk_buffer *b = buf;
    if (!bytes)
        return ATTN_OK;
    pthread_mutex_lock(&d->lock);
    /* Launches recorded earlier read the old contents: they run first. */
    attn_status st = attn_vk_flush(d);
    if (st == ATTN_OK) {
        if (b->mapped)
            memcpy((char *)b->mapped + offset, src, bytes);
        else
            st = attn_vk_staged(d, b, offset, (void *)src, bytes, 1);
    }
    pthread_mutex_unlock(&d->lock);
    return st;
}

static attn_status attn_vk_buffer_read(void *dev, void *buf, uint64_t offset, void *dst,
                                       uint64_t bytes)
{
    attn_vk_device *d = dev;
    attn_vk_buffer *b = buf;
    if (!bytes)
        return ATTN_OK;
    pthread_mutex_lock(&d->lock);
    attn_status st = attn_vk_flush(d);
    if (st == ATTN_OK) {
        if (b->mapped)
            memcpy(dst, (const char *)b->mapped + offset, bytes);
        else
            st = attn_vk_staged(d, b, offset, dst, bytes, 0);
    }
    pthread_mutex_unlock(&d->lock);
    return st;
}

static void *attn_vk_buffer_host_ptr(void *dev, void *buf)
{
    (void)dev;
    (void)buf;
    return NULL;
}

static attn_status attn_vk_finish(void *dev)
{
    attn_vk_device *d = dev;
    pthread_mutex_lock(&d->lock);
    attn_status st = attn_vk_flush(d);
    pthread_mutex_unlock(&d->lock);
    return st;
}

/* ---- overlapped uploads: the backend.h ops ------------------------------------------------ */

/* The latest value on each timeline among the events `wait`. */
static void attn_vk_event_max(void *const *wait, uint32_t num_wait, uint64_t *compute,
                              uint64_t *copy)
{
    *compute = *copy = 0;
    for (uint32_t i = 0; i < num_wait; ++i) {
        const attn_vk_event *e = wait[i];
        uint64_t *v = e && e->copy ? copy : compute;
        if (e && e->value > *v)
            *v = e->value;
    }
}

/* An upload through the staging ring on the transfer queue once compute has reached
 * `after`; *done receives the copy value that completes it (lock held). */
static attn_status attn_vk_upload_staged(attn_vk_device *d, attn_vk_buffer *b, uint64_t offset,
                                         const char *src, uint64_t bytes, uint64_t after,
                                         uint64_t *done)
{
    struct attn_vk_async *a = d->async;
    const uint64_t part = ATTN_VK_STAGING_BYTES / ATTN_VK_COPY_SLOTS;
    attn_status st = ATTN_OK;
    if (!a->ring.buffer)
        st = attn_vk_make_buffer(d, ATTN_VK_STAGING_BYTES, 2, VK_BUFFER_USAGE_TRANSFER_SRC_BIT,
                                 &a->ring);
    for (uint64_t at = 0; st == ATTN_OK && at < bytes;) {
        const uint64_t n = bytes - at < part ? bytes - at : part;
        const uint32_t i = a->next_slot;
        attn_vk_copy_slot *slot = &a->slots[i];
        a->next_slot = (i + 1) % ATTN_VK_COPY_SLOTS;
        /* The slot's part of the ring is free once its previous upload has run. */
        if ((st = attn_vk_wait(d, a->copy, slot->retire)) != ATTN_OK)
            break;
        memcpy((char *)a->ring.mapped + i * part, src + at, n);
        const VkCommandBufferBeginInfo bi = {
            .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
            .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT,
        };
        VkResult r = vkResetCommandBuffer(slot->cmd, 0);
        if (r == VK_SUCCESS)
            r = vkBeginCommandBuffer(slot->cmd, &bi);
        if (r == VK_SUCCESS) {
            const VkBufferCopy region = {i * part, offset + at, n};
            vkCmdCopyBuffer(slot->cmd, a->ring.buffer, b->buffer, 1, &region);
            r = vkEndCommandBuffer(slot->cmd);
        }
        const uint64_t signal = a->copy_sent + 1;
        if (r == VK_SUCCESS) {
            const VkTimelineSemaphoreSubmitInfo ts = {
                .sType = VK_STRUCTURE_TYPE_TIMELINE_SEMAPHORE_SUBMIT_INFO,
                .waitSemaphoreValueCount = after ? 1 : 0,
                .pWaitSemaphoreValues = &after,
                .signalSemaphoreValueCount = 1,
                .pSignalSemaphoreValues = &signal,
            };
            const VkPipelineStageFlags stage = VK_PIPELINE_STAGE_TRANSFER_BIT;
            const VkSubmitInfo si = {
                .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
                .pNext = &ts,
                .waitSemaphoreCount = after ? 1 : 0,
                .pWaitSemaphores = &a->compute,
                .pWaitDstStageMask = &stage,
                .commandBufferCount = 1,
                .pCommandBuffers = &slot->cmd,
                .signalSemaphoreCount = 1,
                .pSignalSemaphores = &a->copy,
            };
            r = vkQueueSubmit(a->tqueue, 1, &si, VK_NULL_HANDLE);
        }
        if (r != VK_SUCCESS) {
            st = attn_vk_fail(d, r, "vkQueueSubmit", "an overlapped upload");
            break;
        }
        a->copy_sent = slot->retire = signal;
        at += n;
    }
    *done = a->copy_sent;
    return st;
}

static attn_status attn_vk_write_async(void *dev, void *buf, uint64_t offset, const void *src,
                                       uint64_t bytes, void *const *wait, uint32_t num_wait,
                                       void **event)
{
    attn_vk_device *d = dev;
    attn_vk_buffer *b = buf;
    struct attn_vk_async *a = d->async;
    *event = NULL;
    if (offset > b->size || bytes > b->size - offset)
        return attn__fail(d->ctx, ATTN_ERROR_INVALID_ARGUMENT,
                          "Vulkan: an upload of %llu bytes at %llu into a buffer of %llu",
                          (unsigned long long)bytes, (unsigned long long)offset,
                          (unsigned long long)b->size);
    attn_vk_event *e = calloc(1, sizeof *e);
    if (!e)
        return attn__fail(d->ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "Vulkan: out of host memory");
    e->copy = 1;
    attn_status st = ATTN_OK;
    if (!a) {
        st = attn_vk_buffer_write(dev, buf, offset, src, bytes); /* after everything */
    } else {
        uint64_t after, after_copy, now = 0;
        attn_vk_event_max(wait, num_wait, &after, &after_copy);
        pthread_mutex_lock(&d->lock);
        const uint64_t sent = a->compute_sent;
        /* The order of events, for tests and diagnosis: this upload starts while a batch
         * submitted earlier still computes. */
        if (a->counter_value(d->device, a->compute, &now) == VK_SUCCESS && now < sent)
            attn__log(d->ctx, ATTN_LOG_DEBUG,
                      "Vulkan: upload of %llu bytes overlaps compute (batch %llu of %llu "
                      "running)", (unsigned long long)bytes, (unsigned long long)now + 1,
                      (unsigned long long)sent);
        if (!b->mapped || a->staged)
            st = attn_vk_upload_staged(d, b, offset, src, bytes, after, &e->value);
        pthread_mutex_unlock(&d->lock);
        if (b->mapped && !a->staged) {
            /* A host copy once the slot's last readers have run; the batches submitted
             * after them keep the device busy meanwhile. */
            st = attn_vk_wait(d, a->compute, after);
            if (st == ATTN_OK)
                st = attn_vk_wait(d, a->copy, after_copy);
            if (st == ATTN_OK && bytes)
                memcpy((char *)b->mapped + offset, src, bytes);
        }
    }
    if (st != ATTN_OK) {
        free(e);
        return st;
    }
    *event = e;
    return ATTN_OK;
}

static attn_status attn_vk_compute_marker(void *dev, void **event)
{
    attn_vk_device *d = dev;
    *event = NULL;
    attn_vk_event *e = calloc(1, sizeof *e);
    if (!e)
        return attn__fail(d->ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "Vulkan: out of host memory");
    attn_status st = ATTN_OK;
    if (d->async) { /* without, every upload waits for everything: the marker is complete */
        pthread_mutex_lock(&d->lock);
        st = attn_vk_submit(d);
        e->value = d->async->compute_sent;
        pthread_mutex_unlock(&d->lock);
    }
    if (st != ATTN_OK) {
        free(e);
        return st;
    }
    *event = e;
    return ATTN_OK;
}

static attn_status attn_vk_event_wait(void *dev, void *event)
{
    attn_vk_device *d = dev;
    const attn_vk_event *e = event;
    if (!e || !e->value || !d->async)
        return ATTN_OK;
    return attn_vk_wait(d, e->copy ? d->async->copy : d->async->compute, e->value);
}

static void attn_vk_event_release(void *dev, void *event)
{
    (void)dev;
    free(event);
}

/* A launch after the uploads it waits for: its batch waits for their copy value on the
 * device, and launches recorded before it go first, in a batch of their own. */
static attn_status attn_vk_launch_after(void *dev, void *kernel, const attn__launch *l)
{
    attn_vk_device *d = dev;
    if (d->async && l && l->num_wait) {
        uint64_t compute, copy;
        attn_vk_event_max(l->wait, l->num_wait, &compute, &copy);
        attn_status st = ATTN_OK;
        pthread_mutex_lock(&d->lock);
        if (copy > d->async->copy_wait) {
            if (d->recording && d->dispatched)
                st = attn_vk_submit(d);
            d->async->copy_wait = copy;
        }
        pthread_mutex_unlock(&d->lock);
        if (st != ATTN_OK)
            return st;
    }
    return attn_vk_launch(dev, kernel, l);
}

const attn__backend_ops attn__vulkan_ops = {
    .id = ATTN_BACKEND_VULKAN,
    .name = "vulkan",
    .lang = ATTN__LANG_GLSL,
    .device_count = attn_vk_device_count,
    .device_info = attn_vk_device_info,
    .open = attn_vk_open,
    .open_native = attn_vk_open_native,
    .close = attn_vk_close,
    .buffer_wrap = attn_vk_buffer_wrap,
    .buffer_alloc = attn_vk_buffer_alloc,
    .buffer_free = attn_vk_buffer_free,
    .buffer_write = attn_vk_buffer_write,
    .buffer_read = attn_vk_buffer_read,
    .buffer_host_ptr = attn_vk_buffer_host_ptr,
    .compile = attn_vk_compile,
    .kernel_free = attn_vk_kernel_free,
    .launch = attn_vk_launch_after,
    .finish = attn_vk_finish,
    .write_async = attn_vk_write_async,
    .compute_marker = attn_vk_compute_marker,
    .event_wait = attn_vk_event_wait,
    .event_release = attn_vk_event_release,
};
