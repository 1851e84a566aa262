/* device.c — device enumeration across every backend the library was built with. */
#include <string.h>

#include "core/context.h"

/* Maps a flat AUTO index onto (backend, index). */
static attn_status locate(attn_backend backend, uint32_t index, const attn__backend_ops **ops,
                          uint32_t *local)
{
    for (size_t i = 0; i < 3; ++i) {
        const attn__backend_ops *b = attn__backends[i];
        if (backend != ATTN_BACKEND_AUTO && b->id != backend)
            continue;
        uint32_t n = 0;
        if (b->device_count(&n) != ATTN_OK)
            n = 0;
        if (index < n) {
            *ops = b;
            *local = index;
            return ATTN_OK;
        }
        index -= n;
    }
    return ATTN_ERROR_NO_DEVICE;
}

attn_status attn_device_count(attn_backend backend, uint32_t *count)
{
    if (!count)
        return attn__fail_thread(ATTN_ERROR_NULL_POINTER, "attn_device_count: count is NULL");
    *count = 0;
    if ((unsigned)backend > ATTN_BACKEND_VULKAN)
        return attn__fail_thread(ATTN_ERROR_INVALID_ARGUMENT, "unknown backend %d", (int)backend);
    for (size_t i = 0; i < 3; ++i) {
        if (backend != ATTN_BACKEND_AUTO && attn__backends[i]->id != backend)
            continue;
        uint32_t n = 0;
        if (attn__backends[i]->device_count(&n) == ATTN_OK)
            *count += n;
    }
    return ATTN_OK;
}

attn_status attn_device_get_info(attn_backend backend, uint32_t index, attn_device_info *info)
{
    if (!info)
        return attn__fail_thread(ATTN_ERROR_NULL_POINTER, "attn_device_get_info: info is NULL");
    if (ATTN__BAD_STRUCT_SIZE(info, attn_device_info))
        return attn__fail_thread(ATTN_ERROR_STRUCT_SIZE,
                                 "attn_device_info.struct_size is %zu; expected %zu",
                                 info->struct_size, sizeof(attn_device_info));
    if ((unsigned)backend > ATTN_BACKEND_VULKAN)
        return attn__fail_thread(ATTN_ERROR_INVALID_ARGUMENT, "unknown backend %d", (int)backend);
    const attn__backend_ops *ops = NULL;
    uint32_t local = 0;
    if (locate(backend, index, &ops, &local) != ATTN_OK)
        return attn__fail_thread(ATTN_ERROR_NO_DEVICE, "no device %u for backend %d", index,
                                 (int)backend);
    size_t keep = info->struct_size;
    attn_device_info tmp;
    memset(&tmp, 0, sizeof tmp);
    tmp.struct_size = sizeof tmp;
    attn_status st = ops->device_info(local, &tmp);
    if (st != ATTN_OK)
        return st;
    tmp.backend = ops->id;
    tmp.index = local;
    memcpy(info, &tmp, sizeof tmp);
    info->struct_size = keep;
    return ATTN_OK;
}
