/* vk_stub.c — the Vulkan backend of a build without Vulkan (disabled, no loader or glslang,
 * or a version with no Vulkan backend yet): it lists no devices and refuses to open one. */
#include "backend.h"

static attn_status attn_vk_stub_device_count(uint32_t *count)
{
    if (count)
        *count = 0;
    return ATTN_OK;
}

static attn_status attn_vk_stub_device_info(uint32_t index, attn_device_info *info)
{
    (void)index;
    (void)info;
    return ATTN_ERROR_NO_DEVICE;
}

static attn_status attn_vk_stub_open(attn_context *ctx, uint32_t index, void **dev)
{
    (void)index;
    if (dev)
        *dev = NULL;
    return attn__fail(ctx, ATTN_ERROR_UNSUPPORTED,
                      "libattn was built without the Vulkan backend");
}

static void attn_vk_stub_close(void *dev)
{
    (void)dev;
}

static attn_status attn_vk_stub_buffer_alloc(void *dev, uint64_t bytes, void **buf)
{
    (void)dev;
    (void)bytes;
    if (buf)
        *buf = NULL;
    return ATTN_ERROR_UNSUPPORTED;
}

static void attn_vk_stub_buffer_free(void *dev, void *buf)
{
    (void)dev;
    (void)buf;
}

static attn_status attn_vk_stub_buffer_write(void *dev, void *buf, uint64_t offset,
                                             const void *src, uint64_t bytes)
{
    (void)dev;
    (void)buf;
    (void)offset;
    (void)src;
    (void)bytes;
    return ATTN_ERROR_UNSUPPORTED;
}

static attn_status attn_vk_stub_buffer_read(void *dev, void *buf, uint64_t offset, void *dst,
                                            uint64_t bytes)
{
    (void)dev;
    (void)buf;
    (void)offset;
    (void)dst;
    (void)bytes;
    return ATTN_ERROR_UNSUPPORTED;
}

static void *attn_vk_stub_buffer_host_ptr(void *dev, void *buf)
{
    (void)dev;
    (void)buf;
    return NULL;
}

static attn_status attn_vk_stub_compile(void *dev, const char *source,
                                        const attn__define *defines, uint32_t num_defines,
                                        const char *const *entries, uint32_t num_entries,
                                        void **kernels)
{
    (void)dev;
    (void)source;
    (void)defines;
    (void)num_defines;
    (void)entries;
    for (uint32_t i = 0; kernels && i < num_entries; ++i)
        kernels[i] = NULL;
    return ATTN_ERROR_UNSUPPORTED;
}

static void attn_vk_stub_kernel_free(void *dev, void *kernel)
{
    (void)dev;
    (void)kernel;
}

static attn_status attn_vk_stub_launch(void *dev, void *kernel, const attn__launch *launch)
{
    (void)dev;
    (void)kernel;
    (void)launch;
    return ATTN_ERROR_UNSUPPORTED;
}

static attn_status attn_vk_stub_finish(void *dev)
{
    (void)dev;
    return ATTN_ERROR_UNSUPPORTED;
}

const attn__backend_ops attn__vulkan_ops = {
    .id = ATTN_BACKEND_VULKAN,
    .name = "vulkan",
    .lang = ATTN__LANG_GLSL,
    .device_count = attn_vk_stub_device_count,
    .device_info = attn_vk_stub_device_info,
    .open = attn_vk_stub_open,
    .close = attn_vk_stub_close,
    .buffer_alloc = attn_vk_stub_buffer_alloc,
    .buffer_free = attn_vk_stub_buffer_free,
    .buffer_write = attn_vk_stub_buffer_write,
    .buffer_read = attn_vk_stub_buffer_read,
    .buffer_host_ptr = attn_vk_stub_buffer_host_ptr,
    .compile = attn_vk_stub_compile,
    .kernel_free = attn_vk_stub_kernel_free,
    .launch = attn_vk_stub_launch,
    .finish = attn_vk_stub_finish,
};
