/* vk_interop.c — the public Vulkan interop entry points (attn_vulkan.h). */
#include <attn/attn_vulkan.h>

#include "core/context.h"

attn_status attn_context_create_vulkan(const attn_context_params *params, VkInstance instance,
                                       VkPhysicalDevice physical_device, VkDevice device,
                                       VkQueue queue, uint32_t queue_family, attn_context **out)
{
    attn__vulkan_native n = {(void *)instance, (void *)physical_device, (void *)device,
                             (void *)queue, queue_family};
    return attn__context_create_native(params, ATTN_BACKEND_VULKAN, &n, out);
}

attn_status attn_buffer_wrap_vulkan(attn_context *ctx, VkBuffer buffer, VkDeviceSize size,
                                    attn_buffer **out)
{
    if (buffer == VK_NULL_HANDLE)
        return attn__fail(ctx, ATTN_ERROR_NULL_POINTER, "attn_buffer_wrap_vulkan: buffer is NULL");
    attn__vulkan_buffer b = {(uint64_t)buffer, (uint64_t)size};
    return attn__buffer_wrap(ctx, ATTN_BACKEND_VULKAN, &b, out);
}
