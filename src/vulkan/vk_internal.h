/* vk_internal.h — the Vulkan backend's objects, shared by vk_backend.c (devices, memory,
 * command batches) and vk_kernel.c (GLSL JIT, pipelines, launches). */
#ifndef ATTN_VK_INTERNAL_H
#define ATTN_VK_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include <vulkan/vulkan.h>

#include "backend.h"

/* Windows per buffer slot when a tensor is larger than one binding; must match
 * ATTN_VK_MAX_WIN in shaders/vulkan/attn_common.glsl (bindings are slot * 4 + window, the
 * params uniform block is binding 8 * 4). */
#define ATTN_VK_MAX_WIN 4
#define ATTN_VK_PARAMS_BINDING (ATTN__MAX_LAUNCH_BUFFERS * ATTN_VK_MAX_WIN)
/* Slot s read through a uniform texel buffer (R32G32B32A32_UINT view of the whole buffer;
 * ATTN_WORDS_RO in attn_common.glsl, the texel variant of a kernel); must match
 * ATTN_TEXEL_BINDING there. */
#define ATTN_VK_TEXEL_BINDING(s) (ATTN_VK_PARAMS_BINDING + 1 + (s))
#define ATTN_VK_MAX_BINDING ATTN_VK_TEXEL_BINDING(ATTN__MAX_LAUNCH_BUFFERS - 1)

/* Launches recorded into one command buffer before it is submitted; also the size of the
 * descriptor pool and of the params ring. A batch is submitted earlier when the core
 * reads, writes or finishes. */
#define ATTN_VK_BATCH 64

typedef struct attn_vk_buffer {
    VkBuffer buffer;
    VkDeviceMemory memory; /* VK_NULL_HANDLE: the application's buffer (wrapped) */
    void *mapped;          /* persistently mapped host-coherent memory, or NULL */
    uint64_t size;
    int texel;             /* made with VK_BUFFER_USAGE_UNIFORM_TEXEL_BUFFER_BIT */
    VkBufferView view;     /* its texel view, made at the first launch that needs it */
} attn_vk_buffer;

typedef struct attn_vk_device {
    attn_context *ctx;       /* where errors are reported */
    int owns_device;         /* instance and device are the library's (else the app's) */
    VkInstance instance;
    VkPhysicalDevice phys;
    VkDevice device;
    VkQueue queue;
    uint32_t queue_family;
    VkPhysicalDeviceProperties props;
    VkPhysicalDeviceMemoryProperties mem;

    /* Capabilities the kernels may use (enabled on the device, or safe to assume). */
    int int64;               /* shaderInt64 enabled */
    int f16_storage;         /* storageBuffer16BitAccess enabled */
    int subgroup_vote;       /* subgroup vote operations in compute shaders */
    uint32_t win_shift;      /* log2 of the window size: largest power of 2 <= range */
    uint64_t max_range;      /* maxStorageBufferRange */
    int texel;               /* kernels read words through texel buffers (a CPU device) */

    pthread_mutex_t lock;    /* guards everything below, and the queue */
    VkCommandPool cmd_pool;
    VkCommandBuffer cmd;
    VkFence fence;
    int recording;           /* cmd is begun */
    uint32_t dispatched;     /* launches recorded in cmd */
    VkDescriptorPool desc_pool;
    attn_vk_buffer params;   /* ATTN_VK_BATCH uniform slots, host-coherent */
    uint32_t params_stride;  /* bytes per slot (minUniformBufferOffsetAlignment) */
    uint32_t params_used;
    attn_vk_buffer staging;  /* host-coherent bounce buffer for unmapped buffers */
    attn_vk_buffer dummy;    /* bound where a launch passes a NULL buffer */
    VkPipelineCache pipeline_cache;
    /* Its copy on disk (vk_kernel.c): merged in before the first pipeline is created; the
     * checksum of the data last read or written, so that unchanged data is not rewritten. */
    int pipeline_cache_loaded;
    uint64_t pipeline_cache_sum;
    /* Overlapped uploads and batches in flight (vk_backend.c); NULL where the device has no
     * timeline semaphores (or they are off): then every batch is waited for. */
    struct attn_vk_async *async;
} attn_vk_device;

/* vk_backend.c */
attn_status attn_vk_fail(attn_vk_device *d, VkResult r, const char *call, const char *what);
attn_status attn_vk_status(VkResult r);
const char *attn_vk_result_name(VkResult r);
/* A memory barrier: earlier compute/transfer writes before later reads and writes. */
void attn_vk_barrier(attn_vk_device *d);
/* Begins the batch's command buffer if needed (lock held). */
attn_status attn_vk_begin(attn_vk_device *d);
/* Submits the batch, waits for it and for everything submitted before (uploads included),
 * and recycles its descriptors and params (lock held). */
attn_status attn_vk_flush(attn_vk_device *d);

/* vk_kernel.c */
attn_status attn_vk_compile(void *dev, const char *source, const attn__define *defines,
                            uint32_t num_defines, const char *const *entries,
                            uint32_t num_entries, void **kernels);
void attn_vk_kernel_free(void *dev, void *kernel);
attn_status attn_vk_launch(void *dev, void *kernel, const attn__launch *launch);

#endif
