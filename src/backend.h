/* backend.h — the one internal interface between the core and a device API (OpenCL,
 * Vulkan, the host reference). A backend knows its API and nothing about attention. */
#ifndef ATTN_BACKEND_H
#define ATTN_BACKEND_H

#include <attn/attn.h>

/* Kernel source language a backend compiles; the core prepares source text for it. */
typedef enum attn__lang {
    ATTN__LANG_NONE = 0,     /* reference backend: runs on the host, compiles nothing */
    ATTN__LANG_OPENCL_C = 1, /* OpenCL C 1.2 */
    ATTN__LANG_GLSL = 2      /* GLSL 450 compute, compiled to SPIR-V at run time */
} attn__lang;

/* One JIT specialisation constant: becomes -DNAME=VALUE (OpenCL) or #define (GLSL). */
typedef struct attn__define {
    const char *name;
    long long value;
} attn__define;

#define ATTN__MAX_LAUNCH_BUFFERS 8
/* The largest params block of a launch (the Vulkan backend's uniform slots are this big;
 * src/core/kernels.h checks attn__kparams against it). */
#define ATTN__MAX_PARAMS_BYTES 1024

/* One kernel launch. Buffers bind to the kernel's buffer arguments in order (OpenCL: the
 * first arguments; GLSL: bindings 0..n-1); a NULL buffer binds nothing/NULL. The params
 * blob is the kernel's last argument (OpenCL: a struct by value) or its push constants. */
typedef struct attn__launch {
    void *wait[4];        /* events (from write_async) the launch waits for */
    uint32_t num_wait;
    void *buffers[ATTN__MAX_LAUNCH_BUFFERS];
    uint32_t num_buffers;
    const void *params;
    size_t params_size;
    size_t groups[3];     /* number of work-groups per dimension */
    size_t local[3];      /* work-group size per dimension */
} attn__launch;

typedef struct attn__backend_ops {
    attn_backend id;
    const char *name;     /* "opencl", "vulkan", "reference" */
    attn__lang lang;

    /* Enumeration works without a context. A missing driver is count 0, not an error. */
    attn_status (*device_count)(uint32_t *count);
    attn_status (*device_info)(uint32_t index, attn_device_info *info);

    /* Open device `index` for a context. Errors go to attn__fail(ctx, ...). */
    attn_status (*open)(attn_context *ctx, uint32_t index, void **dev);
    /* Interop: open the application's own device objects (`native` is the backend's
     * attn__*_native below) and describe the device in *info. The library takes
     * references where the API has them and never destroys what it did not create.
     * NULL where the backend has no interop. */
    attn_status (*open_native)(attn_context *ctx, const void *native, attn_device_info *info,
                               void **dev);
    void (*close)(void *dev);

    /* Interop: a buffer handle for the application's buffer (`native` points at a cl_mem
     * or an attn__vulkan_buffer); *bytes receives its size. buffer_free of the handle
     * releases only what the library took. NULL where unsupported. */
    attn_status (*buffer_wrap)(void *dev, const void *native, uint64_t *bytes, void **buf);

    attn_status (*buffer_alloc)(void *dev, uint64_t bytes, void **buf);
    void (*buffer_free)(void *dev, void *buf);
    /* Blocking copies between host memory and a buffer range. */
    attn_status (*buffer_write)(void *dev, void *buf, uint64_t offset, const void *src,
                                uint64_t bytes);
    attn_status (*buffer_read)(void *dev, void *buf, uint64_t offset, void *dst,
                               uint64_t bytes);
    /* Host address of a buffer's storage where the backend keeps buffers in host memory
     * (the reference backend); NULL otherwise. */
    void *(*buffer_host_ptr)(void *dev, void *buf);

    /* Compile `source` with `defines` once and return one kernel per entry point (each
     * freed on its own with kernel_free). On a compiler error, return
     * ATTN_ERROR_JIT_FAILED with the full build log in the context detail. */
    attn_status (*compile)(void *dev, const char *source, const attn__define *defines,
                           uint32_t num_defines, const char *const *entries,
                           uint32_t num_entries, void **kernels);
    void (*kernel_free)(void *dev, void *kernel);
    /* Persistent JIT cache (both NULL where the API has no program binaries): the binary
     * of the program a compiled kernel came from (malloc'ed), and kernels made from such
     * a binary. A binary the driver rejects is an error the core answers by compiling
     * from source. */
    attn_status (*program_binary)(void *dev, void *kernel, void **data, size_t *bytes);
    attn_status (*compile_binary)(void *dev, const void *data, size_t bytes,
                                  const char *const *entries, uint32_t num_entries,
                                  void **kernels);
    /* Enqueue one launch (may return before it completes). */
    attn_status (*launch)(void *dev, void *kernel, const attn__launch *launch);
    /* Wait for everything enqueued. */
    attn_status (*finish)(void *dev);

    /* Overlapped uploads (all NULL where the backend has none: the core then copies
     * synchronously). write_async enqueues a copy on a transfer queue once the events in
     * `wait` have completed and returns its event; `src` must stay untouched until then.
     * compute_marker returns an event that completes when all compute work enqueued so
     * far has. Events are waited for / released by the core. */
    attn_status (*write_async)(void *dev, void *buf, uint64_t offset, const void *src,
                               uint64_t bytes, void *const *wait, uint32_t num_wait,
                               void **event);
    attn_status (*compute_marker)(void *dev, void **event);
    attn_status (*event_wait)(void *dev, void *event);
    void (*event_release)(void *dev, void *event);
} attn__backend_ops;

/* Native objects handed over for interop (kept as void pointers here so the core does not
 * include any device API header). */
typedef struct attn__opencl_native {
    void *context;   /* cl_context */
    void *device;    /* cl_device_id */
    void *queue;     /* cl_command_queue, or NULL */
} attn__opencl_native;

typedef struct attn__vulkan_native {
    void *instance;          /* VkInstance */
    void *physical_device;   /* VkPhysicalDevice */
    void *device;            /* VkDevice */
    void *queue;             /* VkQueue with compute */
    uint32_t queue_family;
} attn__vulkan_native;

typedef struct attn__vulkan_buffer {
    uint64_t buffer;         /* VkBuffer (a non-dispatchable handle) */
    uint64_t size;
} attn__vulkan_buffer;

/* Each backend's table; a backend not built is a stub whose device_count says 0 and
 * whose open returns ATTN_ERROR_UNSUPPORTED with a message saying it was not built. */
extern const attn__backend_ops attn__reference_ops;
extern const attn__backend_ops attn__opencl_ops;
extern const attn__backend_ops attn__vulkan_ops;

/* Core services for backends (src/core/context.c). */

/* Records `status` and a printf-style detail on the context (and the thread); returns
 * `status` so a backend can write `return attn__fail(ctx, ATTN_ERROR_BACKEND, ...)`. */
attn_status attn__fail(attn_context *ctx, attn_status status, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Sends a message to the context's log callback, if any, at `level`. */
void attn__log(attn_context *ctx, attn_log_level level, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Copies at most dst_size-1 bytes and terminates. */
void attn__strlcpy(char *dst, const char *src, size_t dst_size);

#endif
