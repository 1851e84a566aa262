/* attn_vulkan.h — Vulkan interop: run attention on the application's own VkDevice and
 * queue, on its own VkBuffers. The library never destroys what it did not create. */
#ifndef ATTN_ATTN_VULKAN_H
#define ATTN_ATTN_VULKAN_H

#include <vulkan/vulkan.h>
#include <attn/attn.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A context on the application's device. `device` must have been created from
 * `physical_device` of `instance` with a queue of family `queue_family` that supports
 * compute, and `queue` is that queue. The library creates its own pools, pipelines and
 * buffers on `device` and destroys only those; the application destroys the device after
 * attn_context_destroy. Vulkan requires external synchronisation of a queue: the
 * application must not submit to `queue` from another thread while the library works on
 * it (the library waits for its own submissions before each call returns, except
 * attn_plan_run on buffers, which returns once its work is submitted and waited for too).
 * Device features the library uses when the application enabled them: shaderInt64,
 * storageBuffer16BitAccess (f16 tensors; without it they are read as packed words).
 * params as for attn_context_create (backend and device_index are ignored). */
ATTN_API attn_status attn_context_create_vulkan(const attn_context_params *params,
                                                VkInstance instance,
                                                VkPhysicalDevice physical_device,
                                                VkDevice device, VkQueue queue,
                                                uint32_t queue_family, attn_context **out);

/* An attn_buffer naming the application's VkBuffer on the context's device (`size` bytes,
 * created with VK_BUFFER_USAGE_STORAGE_BUFFER_BIT, and TRANSFER_SRC/DST for
 * attn_buffer_upload/download; its memory bound). Usable in tensors like any buffer; not
 * counted in the budget. attn_buffer_destroy forgets it; the VkBuffer stays the
 * application's. */
ATTN_API attn_status attn_buffer_wrap_vulkan(attn_context *ctx, VkBuffer buffer, VkDeviceSize size,
                                             attn_buffer **out);

#ifdef __cplusplus
}
#endif
#endif
