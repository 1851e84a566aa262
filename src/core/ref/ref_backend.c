/* ref_backend.c — the reference backend: one host "device" whose buffers are host memory.
 * It compiles and launches nothing; the core runs attn__ref_attention on its buffers. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(_WIN32)
#include <windows.h>
#else
#include <unistd.h>
#endif

#include "backend.h"

typedef struct ref_device {
    attn_context *ctx; /* for error details */
} ref_device;

/* The size travels with the storage so that copies can be range-checked here too. */
typedef struct ref_buffer {
    uint64_t size;
    unsigned char *data;
} ref_buffer;

static uint64_t ref_physical_memory(void)
{
#if defined(_WIN32)
    MEMORYSTATUSEX st;
    st.dwLength = sizeof st;
    if (GlobalMemoryStatusEx(&st))
        return (uint64_t)st.ullTotalPhys;
#elif defined(_SC_PHYS_PAGES) && defined(_SC_PAGE_SIZE)
    long pages = sysconf(_SC_PHYS_PAGES);
    long page_size = sysconf(_SC_PAGE_SIZE);
    if (pages > 0 && page_size > 0)
        return (uint64_t)pages * (uint64_t)page_size;
#endif
    return (uint64_t)1 << 30; /* unknown: claim 1 GiB rather than nothing */
}

static attn_status ref_device_count(uint32_t *count)
{
    *count = 1;
    return ATTN_OK;
}

static attn_status ref_device_info(uint32_t index, attn_device_info *info)
{
    if (index != 0)
        return ATTN_ERROR_NO_DEVICE;
    size_t struct_size = info->struct_size;
    memset(info, 0, sizeof *info);
    info->struct_size = struct_size;
    info->backend = ATTN_BACKEND_REFERENCE;
    info->index = 0;
    info->type = ATTN_DEVICE_CPU;
    attn__strlcpy(info->name, "attn reference (double precision, host)", sizeof info->name);
    attn__strlcpy(info->vendor, "attn", sizeof info->vendor);
    attn__strlcpy(info->driver_version, ATTN_VERSION_STRING, sizeof info->driver_version);
    attn__strlcpy(info->api_version, "host C", sizeof info->api_version);
    attn__strlcpy(info->platform, "host", sizeof info->platform);
    info->compute_units = 1;
    uint64_t mem = ref_physical_memory();
    info->global_mem_bytes = mem;
    info->max_alloc_bytes = mem;
    info->max_binding_bytes = mem;
    info->local_mem_bytes = 0;
    info->max_work_group_size = 1;
    info->subgroup_size = 0;
    info->fp16_compute = 0;
    info->fp16_storage = 1;
    info->fp64 = 1;
    info->unified_memory = 1;
    return ATTN_OK;
}

static attn_status ref_open(attn_context *ctx, uint32_t index, void **dev)
{
    *dev = NULL;
    if (index != 0)
        return attn__fail(ctx, ATTN_ERROR_NO_DEVICE,
                          "the reference backend has one device (index 0), not index %u",
                          (unsigned)index);
    ref_device *d = calloc(1, sizeof *d);
    if (!d)
        return attn__fail(ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY,
                          "cannot allocate the reference device");
    d->ctx = ctx;
    *dev = d;
    return ATTN_OK;
}

static void ref_close(void *dev)
{
    free(dev);
}

static attn_status ref_buffer_alloc(void *dev, uint64_t bytes, void **buf)
{
    ref_device *d = dev;
    *buf = NULL;
    ref_buffer *b = malloc(sizeof *b);
    /* A zero-byte buffer is valid; it still gets a distinct (unused) byte of storage. */
    unsigned char *data = (b && bytes <= SIZE_MAX) ? calloc(bytes ? (size_t)bytes : 1, 1) : NULL;
    if (!data) {
        free(b);
        return attn__fail(d->ctx, ATTN_ERROR_OUT_OF_DEVICE_MEMORY,
                          "reference backend: cannot allocate %llu bytes of host memory",
                          (unsigned long long)bytes);
    }
    b->size = bytes;
    b->data = data;
    *buf = b;
    return ATTN_OK;
}

static void ref_buffer_free(void *dev, void *buf)
{
    (void)dev;
    ref_buffer *b = buf;
    if (b) {
        free(b->data);
        free(b);
    }
}

static attn_status ref_check_range(ref_device *d, const ref_buffer *b, uint64_t offset,
                                   uint64_t bytes)
{
    if (offset > b->size || bytes > b->size - offset)
        return attn__fail(d->ctx, ATTN_ERROR_OUT_OF_RANGE,
                          "reference backend: range [%llu, +%llu) outside a %llu-byte buffer",
                          (unsigned long long)offset, (unsigned long long)bytes,
                          (unsigned long long)b->size);
    return ATTN_OK;
}

static attn_status ref_buffer_write(void *dev, void *buf, uint64_t offset, const void *src,
                                    uint64_t bytes)
{
    ref_buffer *b = buf;
    attn_status st = ref_check_range(dev, b, offset, bytes);
    if (st == ATTN_OK && bytes)
        memcpy(b->data + offset, src, (size_t)bytes);
    return st;
}

static attn_status ref_buffer_read(void *dev, void *buf, uint64_t offset, void *dst,
                                   uint64_t bytes)
{
    ref_buffer *b = buf;
    attn_status st = ref_check_range(dev, b, offset, bytes);
    if (st == ATTN_OK && bytes)
        memcpy(dst, b->data + offset, (size_t)bytes);
    return st;
}

static void *ref_buffer_host_ptr(void *dev, void *buf)
{
    (void)dev;
    return buf ? ((ref_buffer *)buf)->data : NULL;
}

static attn_status ref_compile(void *dev, const char *source, const attn__define *defines,
                               uint32_t num_defines, const char *const *entries,
                               uint32_t num_entries, void **kernels)
{
    (void)source, (void)defines, (void)num_defines, (void)entries;
    for (uint32_t i = 0; kernels && i < num_entries; ++i)
        kernels[i] = NULL;
    return attn__fail(((ref_device *)dev)->ctx, ATTN_ERROR_UNSUPPORTED,
                      "the reference backend runs no kernels");
}

static void ref_kernel_free(void *dev, void *kernel)
{
    (void)dev, (void)kernel; /* compile never hands out a kernel */
}

static attn_status ref_launch(void *dev, void *kernel, const attn__launch *launch)
{
    (void)kernel, (void)launch;
    return attn__fail(((ref_device *)dev)->ctx, ATTN_ERROR_UNSUPPORTED,
                      "the reference backend runs no kernels");
}

static attn_status ref_finish(void *dev)
{
    (void)dev; /* every operation is synchronous */
    return ATTN_OK;
}

const attn__backend_ops attn__reference_ops = {
    .id = ATTN_BACKEND_REFERENCE,
    .name = "reference",
    .lang = ATTN__LANG_NONE,
    .device_count = ref_device_count,
    .device_info = ref_device_info,
    .open = ref_open,
    .close = ref_close,
    .buffer_alloc = ref_buffer_alloc,
    .buffer_free = ref_buffer_free,
    .buffer_write = ref_buffer_write,
    .buffer_read = ref_buffer_read,
    .buffer_host_ptr = ref_buffer_host_ptr,
    .compile = ref_compile,
    .kernel_free = ref_kernel_free,
    .launch = ref_launch,
    .finish = ref_finish,
};
