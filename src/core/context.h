/* context.h — the context, buffer and plan objects shared by the core's modules, the
 * accounting allocator and the kernel cache. */
#ifndef ATTN_CORE_CONTEXT_H
#define ATTN_CORE_CONTEXT_H

#include <pthread.h>

#include "backend.h"
#include "core/problem.h"

typedef struct attn__kcache_entry {
    char *key;          /* source files + entries + defines */
    void *kernels[4];   /* backend kernels, one per entry */
    uint32_t num_kernels;
    struct attn__kcache_entry *next;
} attn__kcache_entry;

struct attn_buffer {
    attn_context *ctx;
    void *handle;             /* backend buffer */
    uint64_t size;
    int wrapped;              /* the application's buffer: not ours, not in the budget */
    struct attn_buffer *prev, *next;
};

struct attn_context {
    attn_context_params params;
    char *cache_dir;
    const attn__backend_ops *ops;
    void *dev;
    attn_device_info info;
    attn_kernel_family family;   /* forced family, or AUTO */
    uint64_t budget;

    pthread_mutex_t lock;        /* guards everything below */
    char *detail;
    attn_stats stats;
    attn__kcache_entry *kcache;
    struct attn_buffer *buffers;
    struct attn_plan *plans;
};

/* Device memory through the budget: every allocation of the library comes here. */
attn_status attn__dev_alloc(attn_context *ctx, uint64_t bytes, void **handle);
void attn__dev_free(attn_context *ctx, void *handle, uint64_t bytes);
attn_status attn__dev_write(attn_context *ctx, void *handle, uint64_t offset, const void *src,
                            uint64_t bytes);
attn_status attn__dev_read(attn_context *ctx, void *handle, uint64_t offset, void *dst,
                           uint64_t bytes);

/* An upload on the backend's transfer queue after event `wait` (may be NULL); counted
 * like attn__dev_write. Only for backends with write_async. */
attn_status attn__dev_write_async(attn_context *ctx, void *handle, const void *src,
                                  uint64_t bytes, void *wait, void **event);

/* Counts one launch and enqueues it. */
attn_status attn__enqueue(attn_context *ctx, void *kernel, const attn__launch *l);

/* Registers/unregisters a plan so that context_destroy can free what the caller forgot. */
void attn__plan_link(attn_context *ctx, struct attn_plan *plan);
void attn__plan_unlink(attn_context *ctx, struct attn_plan *plan);

/* Sets the thread's detail message without a context (e.g. context creation). */
attn_status attn__fail_thread(attn_status status, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Interop entry points behind the public attn_opencl.h / attn_vulkan.h wrappers. */
attn_status attn__context_create_native(const attn_context_params *params, attn_backend backend,
                                        const void *native, attn_context **out);
attn_status attn__buffer_wrap(attn_context *ctx, attn_backend backend, const void *native,
                              attn_buffer **out);

/* Backend tables in enumeration order (OpenCL, Vulkan, reference). */
extern const attn__backend_ops *const attn__backends[3];
const attn__backend_ops *attn__backend_by_id(attn_backend id);

/* True when a caller's struct_size is not one this library accepts: smaller than the
 * first released layout (v1 = today's sizeof) or absurdly large (an uninitialised field).
 * Larger sizes from newer headers are accepted; the library reads what it knows. */
#define ATTN__BAD_STRUCT_SIZE(ptr, type)                                                    \
    ((ptr)->struct_size < sizeof(type) || (ptr)->struct_size > ((size_t)1 << 16))

#endif
