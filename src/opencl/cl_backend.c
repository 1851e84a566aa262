/* cl_backend.c — the OpenCL backend: device enumeration through the ICD loader, one
 * context and in-order queue per opened device, buffers, JIT of OpenCL C, launches. */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <CL/cl_ext.h>

#include <pthread.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"

#ifndef CL_PLATFORM_NOT_FOUND_KHR
#define CL_PLATFORM_NOT_FOUND_KHR -1001
#endif
/* Vendor queries guarded by their extensions (cl_nv_device_attribute_query,
 * cl_amd_device_attribute_query); values from the Khronos registry. */
#ifndef CL_DEVICE_WARP_SIZE_NV
#define CL_DEVICE_WARP_SIZE_NV 0x4003
#endif
#ifndef CL_DEVICE_WAVEFRONT_WIDTH_AMD
#define CL_DEVICE_WAVEFRONT_WIDTH_AMD 0x4043
#endif

typedef struct attn_cl_device {
    attn_context *ctx; /* where errors are reported */
    cl_platform_id platform;
    cl_device_id device;
    cl_context context;
    cl_command_queue queue;
    cl_command_queue tqueue; /* transfers overlapping compute; made on first use */
} attn_cl_device;

/* The kernel owns its program. Kernel arguments are state on the cl_kernel, and a
 * compiled kernel is shared by the plans of a context, which may run on different
 * threads: the lock makes "set arguments + enqueue" one step. */
typedef struct attn_cl_kernel {
    cl_program program;
    cl_kernel kernel;
    pthread_mutex_t lock;
} attn_cl_kernel;

/* ---- error reporting ------------------------------------------------------------------ */

static const char *attn_cl_error_name(cl_int err)
{
    switch (err) {
#define ATTN_CL_NAME(code) \
    case code:             \
        return #code;
        ATTN_CL_NAME(CL_SUCCESS)
        ATTN_CL_NAME(CL_DEVICE_NOT_FOUND)
        ATTN_CL_NAME(CL_DEVICE_NOT_AVAILABLE)
        ATTN_CL_NAME(CL_COMPILER_NOT_AVAILABLE)
        ATTN_CL_NAME(CL_MEM_OBJECT_ALLOCATION_FAILURE)
        ATTN_CL_NAME(CL_OUT_OF_RESOURCES)
        ATTN_CL_NAME(CL_OUT_OF_HOST_MEMORY)
        ATTN_CL_NAME(CL_PROFILING_INFO_NOT_AVAILABLE)
        ATTN_CL_NAME(CL_MEM_COPY_OVERLAP)
        ATTN_CL_NAME(CL_IMAGE_FORMAT_MISMATCH)
        ATTN_CL_NAME(CL_IMAGE_FORMAT_NOT_SUPPORTED)
        ATTN_CL_NAME(CL_BUILD_PROGRAM_FAILURE)
        ATTN_CL_NAME(CL_MAP_FAILURE)
        ATTN_CL_NAME(CL_MISALIGNED_SUB_BUFFER_OFFSET)
        ATTN_CL_NAME(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
        ATTN_CL_NAME(CL_COMPILE_PROGRAM_FAILURE)
        ATTN_CL_NAME(CL_LINKER_NOT_AVAILABLE)
        ATTN_CL_NAME(CL_LINK_PROGRAM_FAILURE)
        ATTN_CL_NAME(CL_DEVICE_PARTITION_FAILED)
        ATTN_CL_NAME(CL_KERNEL_ARG_INFO_NOT_AVAILABLE)
        ATTN_CL_NAME(CL_INVALID_VALUE)
        ATTN_CL_NAME(CL_INVALID_DEVICE_TYPE)
        ATTN_CL_NAME(CL_INVALID_PLATFORM)
        ATTN_CL_NAME(CL_INVALID_DEVICE)
        ATTN_CL_NAME(CL_INVALID_CONTEXT)
        ATTN_CL_NAME(CL_INVALID_QUEUE_PROPERTIES)
        ATTN_CL_NAME(CL_INVALID_COMMAND_QUEUE)
        ATTN_CL_NAME(CL_INVALID_HOST_PTR)
        ATTN_CL_NAME(CL_INVALID_MEM_OBJECT)
        ATTN_CL_NAME(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR)
        ATTN_CL_NAME(CL_INVALID_IMAGE_SIZE)
        ATTN_CL_NAME(CL_INVALID_SAMPLER)
        ATTN_CL_NAME(CL_INVALID_BINARY)
        ATTN_CL_NAME(CL_INVALID_BUILD_OPTIONS)
        ATTN_CL_NAME(CL_INVALID_PROGRAM)
        ATTN_CL_NAME(CL_INVALID_PROGRAM_EXECUTABLE)
        ATTN_CL_NAME(CL_INVALID_KERNEL_NAME)
        ATTN_CL_NAME(CL_INVALID_KERNEL_DEFINITION)
        ATTN_CL_NAME(CL_INVALID_KERNEL)
        ATTN_CL_NAME(CL_INVALID_ARG_INDEX)
        ATTN_CL_NAME(CL_INVALID_ARG_VALUE)
        ATTN_CL_NAME(CL_INVALID_ARG_SIZE)
        ATTN_CL_NAME(CL_INVALID_KERNEL_ARGS)
        ATTN_CL_NAME(CL_INVALID_WORK_DIMENSION)
        ATTN_CL_NAME(CL_INVALID_WORK_GROUP_SIZE)
        ATTN_CL_NAME(CL_INVALID_WORK_ITEM_SIZE)
        ATTN_CL_NAME(CL_INVALID_GLOBAL_OFFSET)
        ATTN_CL_NAME(CL_INVALID_EVENT_WAIT_LIST)
        ATTN_CL_NAME(CL_INVALID_EVENT)
        ATTN_CL_NAME(CL_INVALID_OPERATION)
        ATTN_CL_NAME(CL_INVALID_GL_OBJECT)
        ATTN_CL_NAME(CL_INVALID_BUFFER_SIZE)
        ATTN_CL_NAME(CL_INVALID_MIP_LEVEL)
        ATTN_CL_NAME(CL_INVALID_GLOBAL_WORK_SIZE)
        ATTN_CL_NAME(CL_INVALID_PROPERTY)
        ATTN_CL_NAME(CL_INVALID_IMAGE_DESCRIPTOR)
        ATTN_CL_NAME(CL_INVALID_COMPILER_OPTIONS)
        ATTN_CL_NAME(CL_INVALID_LINKER_OPTIONS)
        ATTN_CL_NAME(CL_INVALID_DEVICE_PARTITION_COUNT)
        ATTN_CL_NAME(CL_PLATFORM_NOT_FOUND_KHR)
#undef ATTN_CL_NAME
    /* Codes of later OpenCL versions, spelled out because this file targets 1.2 headers. */
    case -69:
        return "CL_INVALID_PIPE_SIZE";
    case -70:
        return "CL_INVALID_DEVICE_QUEUE";
    case -71:
        return "CL_INVALID_SPEC_ID";
    case -72:
        return "CL_MAX_SIZE_RESTRICTION_EXCEEDED";
    default:
        return "unknown OpenCL error";
    }
}

/* Status for a failed call. Drivers often allocate device memory lazily, at the first
 * enqueue that touches a buffer, so CL_MEM_OBJECT_ALLOCATION_FAILURE means out of device
 * memory wherever it appears (the scheduler retries smaller). CL_OUT_OF_RESOURCES and
 * CL_INVALID_BUFFER_SIZE mean that only at allocation: at a launch they usually mean the
 * kernel itself failed (NVIDIA reports faults that way). */
static attn_status attn_cl_status(cl_int err, int allocating)
{
    switch (err) {
    case CL_OUT_OF_HOST_MEMORY:
        return ATTN_ERROR_OUT_OF_HOST_MEMORY;
    case CL_MEM_OBJECT_ALLOCATION_FAILURE:
        return ATTN_ERROR_OUT_OF_DEVICE_MEMORY;
    case CL_OUT_OF_RESOURCES:
    case CL_INVALID_BUFFER_SIZE:
        return allocating ? ATTN_ERROR_OUT_OF_DEVICE_MEMORY : ATTN_ERROR_BACKEND;
    default:
        return ATTN_ERROR_BACKEND;
    }
}

/* Reports `err` from API call `call` on the context; `what` says what was being done. */
static attn_status attn_cl_fail(const attn_cl_device *d, cl_int err, int allocating,
                                const char *call, const char *what)
{
    return attn__fail(d->ctx, attn_cl_status(err, allocating), "OpenCL: %s failed with %s (%d) %s",
                      call, attn_cl_error_name(err), (int)err, what);
}

/* ---- enumeration ---------------------------------------------------------------------- */

/* Walks every platform's devices (CL_DEVICE_TYPE_ALL) in platform order, the one flat
 * index space of this backend. Re-queried each time: nothing global to keep in sync.
 * Returns the total in *count and, when index < total, that device in *platform and
 * *device. A platform whose device query fails is skipped: one broken driver must not
 * hide the others, and the skip is the same on every walk, so indices stay stable. */
static attn_status attn_cl_walk(uint32_t index, uint32_t *count, cl_platform_id *platform,
                                cl_device_id *device)
{
    *count = 0;
    cl_uint num_platforms = 0;
    cl_int err = clGetPlatformIDs(0, NULL, &num_platforms);
    if (err == CL_PLATFORM_NOT_FOUND_KHR || (err == CL_SUCCESS && num_platforms == 0))
        return ATTN_OK;
    if (err != CL_SUCCESS)
        return attn_cl_status(err, 0);

    cl_platform_id *platforms = malloc(num_platforms * sizeof *platforms);
    if (!platforms)
        return ATTN_ERROR_OUT_OF_HOST_MEMORY;
    cl_uint got_platforms = 0;
    err = clGetPlatformIDs(num_platforms, platforms, &got_platforms);
    if (err != CL_SUCCESS) {
        free(platforms);
        return err == CL_PLATFORM_NOT_FOUND_KHR ? ATTN_OK : attn_cl_status(err, 0);
    }
    if (got_platforms < num_platforms)
        num_platforms = got_platforms;

    attn_status status = ATTN_OK;
    uint32_t total = 0;
    for (cl_uint p = 0; p < num_platforms; p++) {
        cl_uint num_devices = 0;
        err = clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, 0, NULL, &num_devices);
        if (err != CL_SUCCESS || num_devices == 0)
            continue;
        if (num_devices > UINT32_MAX - total)
            num_devices = (cl_uint)(UINT32_MAX - total);
        if (index >= total && index - total < num_devices) {
            cl_device_id *devices = malloc(num_devices * sizeof *devices);
            if (!devices) {
                status = ATTN_ERROR_OUT_OF_HOST_MEMORY;
                break;
            }
            cl_uint got = 0;
            err = clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, num_devices, devices, &got);
            if (err == CL_SUCCESS && index - total < got) {
                *platform = platforms[p];
                *device = devices[index - total];
            } else {
                status = err != CL_SUCCESS ? attn_cl_status(err, 0) : ATTN_ERROR_NO_DEVICE;
            }
            free(devices);
        }
        total += num_devices;
    }
    free(platforms);
    *count = total;
    return status;
}

static attn_status attn_cl_device_count(uint32_t *count)
{
    if (!count)
        return ATTN_ERROR_NULL_POINTER;
    cl_platform_id platform;
    cl_device_id device;
    return attn_cl_walk(UINT32_MAX, count, &platform, &device);
}

/* Looks device `index` up; ATTN_ERROR_NO_DEVICE when out of range. */
static attn_status attn_cl_find(uint32_t index, cl_platform_id *platform, cl_device_id *device)
{
    uint32_t count = 0;
    attn_status status = attn_cl_walk(index, &count, platform, device);
    if (status != ATTN_OK)
        return status;
    return index < count ? ATTN_OK : ATTN_ERROR_NO_DEVICE;
}

/* A device or platform string of any length, malloc'ed; NULL on any failure. */
static char *attn_cl_device_string(cl_device_id device, cl_device_info param)
{
    size_t size = 0;
    if (clGetDeviceInfo(device, param, 0, NULL, &size) != CL_SUCCESS)
        return NULL;
    char *s = malloc(size + 1);
    if (!s)
        return NULL;
    if (clGetDeviceInfo(device, param, size, s, NULL) != CL_SUCCESS) {
        free(s);
        return NULL;
    }
    s[size] = '\0';
    return s;
}

static void attn_cl_copy_device_string(cl_device_id device, cl_device_info param, char *dst,
                                       size_t dst_size)
{
    char *s = attn_cl_device_string(device, param);
    attn__strlcpy(dst, s ? s : "", dst_size);
    free(s);
}

/* Whole-token match in a space-separated extension list. */
static int attn_cl_has_extension(const char *extensions, const char *name)
{
    size_t len = strlen(name);
    const char *p = extensions;
    while (p && *p) {
        while (*p == ' ')
            p++;
        const char *end = p;
        while (*end && *end != ' ')
            end++;
        if ((size_t)(end - p) == len && memcmp(p, name, len) == 0)
            return 1;
        p = end;
    }
    return 0;
}

/* Scalar queries; a failed query leaves 0, which the info fields read as "unknown/none". */
static cl_uint attn_cl_uint(cl_device_id device, cl_device_info param)
{
    cl_uint v = 0;
    if (clGetDeviceInfo(device, param, sizeof v, &v, NULL) != CL_SUCCESS)
        v = 0;
    return v;
}

static cl_ulong attn_cl_ulong(cl_device_id device, cl_device_info param)
{
    cl_ulong v = 0;
    if (clGetDeviceInfo(device, param, sizeof v, &v, NULL) != CL_SUCCESS)
        v = 0;
    return v;
}

static cl_bool attn_cl_bool(cl_device_id device, cl_device_info param)
{
    cl_bool v = CL_FALSE;
    if (clGetDeviceInfo(device, param, sizeof v, &v, NULL) != CL_SUCCESS)
        v = CL_FALSE;
    return v;
}

static attn_status attn_cl_fill_info(cl_platform_id platform, cl_device_id device,
                                     uint32_t index, attn_device_info *info)
{
    char *extensions = attn_cl_device_string(device, CL_DEVICE_EXTENSIONS);
    if (!extensions)
        return ATTN_ERROR_OUT_OF_HOST_MEMORY;

    info->backend = ATTN_BACKEND_OPENCL;
    info->index = index;

    cl_device_type type = 0;
    if (clGetDeviceInfo(device, CL_DEVICE_TYPE, sizeof type, &type, NULL) != CL_SUCCESS)
        type = 0;
    cl_bool unified = attn_cl_bool(device, CL_DEVICE_HOST_UNIFIED_MEMORY);
    if (type & CL_DEVICE_TYPE_CPU)
        info->type = ATTN_DEVICE_CPU;
    else if (type & CL_DEVICE_TYPE_GPU)
        info->type = unified ? ATTN_DEVICE_INTEGRATED_GPU : ATTN_DEVICE_DISCRETE_GPU;
    else
        info->type = ATTN_DEVICE_OTHER;

    attn_cl_copy_device_string(device, CL_DEVICE_NAME, info->name, sizeof info->name);
    attn_cl_copy_device_string(device, CL_DEVICE_VENDOR, info->vendor, sizeof info->vendor);
    attn_cl_copy_device_string(device, CL_DRIVER_VERSION, info->driver_version,
                               sizeof info->driver_version);
    attn_cl_copy_device_string(device, CL_DEVICE_VERSION, info->api_version,
                               sizeof info->api_version);

    info->platform[0] = '\0';
    size_t size = 0;
    if (clGetPlatformInfo(platform, CL_PLATFORM_NAME, 0, NULL, &size) == CL_SUCCESS) {
        char *s = malloc(size + 1);
        if (s && clGetPlatformInfo(platform, CL_PLATFORM_NAME, size, s, NULL) == CL_SUCCESS) {
            s[size] = '\0';
            attn__strlcpy(info->platform, s, sizeof info->platform);
        }
        free(s);
    }

    info->vendor_id = attn_cl_uint(device, CL_DEVICE_VENDOR_ID);
    info->compute_units = attn_cl_uint(device, CL_DEVICE_MAX_COMPUTE_UNITS);
    info->global_mem_bytes = attn_cl_ulong(device, CL_DEVICE_GLOBAL_MEM_SIZE);
    info->max_alloc_bytes = attn_cl_ulong(device, CL_DEVICE_MAX_MEM_ALLOC_SIZE);
    /* An OpenCL kernel argument can address its whole buffer. */
    info->max_binding_bytes = info->max_alloc_bytes;
    info->local_mem_bytes = attn_cl_ulong(device, CL_DEVICE_LOCAL_MEM_SIZE);

    size_t wg = 0;
    if (clGetDeviceInfo(device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof wg, &wg, NULL) != CL_SUCCESS)
        wg = 0;
    info->max_work_group_size = wg > UINT32_MAX ? UINT32_MAX : (uint32_t)wg;

    /* OpenCL 1.2 has no subgroup query; where a vendor extension states a fixed width, use
     * it. Intel's cl_intel_required_subgroup_size lists several sizes the compiler picks
     * from, so no single number is true there: 0. */
    info->subgroup_size = 0;
    if (attn_cl_has_extension(extensions, "cl_nv_device_attribute_query"))
        info->subgroup_size = attn_cl_uint(device, CL_DEVICE_WARP_SIZE_NV);
    else if (attn_cl_has_extension(extensions, "cl_amd_device_attribute_query"))
        info->subgroup_size = attn_cl_uint(device, CL_DEVICE_WAVEFRONT_WIDTH_AMD);
    info->subgroup_ops = 0; /* OpenCL C 1.2 kernels: none */

    info->fp16_compute = attn_cl_has_extension(extensions, "cl_khr_fp16");
    info->fp16_storage = 1; /* vload_half/vstore_half are core OpenCL C */
    info->fp64 = attn_cl_has_extension(extensions, "cl_khr_fp64") ||
                 attn_cl_ulong(device, CL_DEVICE_DOUBLE_FP_CONFIG) != 0;
    info->unified_memory = unified ? 1 : 0;

    free(extensions);
    return ATTN_OK;
}

static attn_status attn_cl_device_info(uint32_t index, attn_device_info *info)
{
    if (!info)
        return ATTN_ERROR_NULL_POINTER;
    if (info->struct_size < sizeof(attn_device_info))
        return ATTN_ERROR_STRUCT_SIZE;
    cl_platform_id platform = NULL;
    cl_device_id device = NULL;
    attn_status status = attn_cl_find(index, &platform, &device);
    if (status != ATTN_OK)
        return status;
    return attn_cl_fill_info(platform, device, index, info);
}

/* ---- device --------------------------------------------------------------------------- */

static attn_status attn_cl_open(attn_context *ctx, uint32_t index, void **out)
{
    if (!out)
        return attn__fail(ctx, ATTN_ERROR_NULL_POINTER, "OpenCL: open without an out pointer");
    *out = NULL;
    cl_platform_id platform = NULL;
    cl_device_id device = NULL;
    attn_status status = attn_cl_find(index, &platform, &device);
    if (status == ATTN_ERROR_NO_DEVICE)
        return attn__fail(ctx, status, "OpenCL: no device with index %u", (unsigned)index);
    if (status != ATTN_OK)
        return attn__fail(ctx, status, "OpenCL: enumerating devices for index %u failed",
                          (unsigned)index);

    attn_cl_device *d = calloc(1, sizeof *d);
    if (!d)
        return attn__fail(ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "OpenCL: out of host memory");
    d->ctx = ctx;
    d->platform = platform;
    d->device = device;

    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)platform, 0};
    cl_int err = CL_SUCCESS;
    d->context = clCreateContext(props, 1, &device, NULL, NULL, &err);
    if (!d->context || err != CL_SUCCESS) {
        status = attn_cl_fail(d, err, 0, "clCreateContext", "opening the device");
        free(d);
        return status;
    }
    d->queue = clCreateCommandQueue(d->context, device, 0, &err);
    if (!d->queue || err != CL_SUCCESS) {
        status = attn_cl_fail(d, err, 0, "clCreateCommandQueue", "opening the device");
        clReleaseContext(d->context);
        free(d);
        return status;
    }
    *out = d;
    return ATTN_OK;
}

static void attn_cl_close(void *dev)
{
    attn_cl_device *d = dev;
    if (!d)
        return;
    /* Releasing the queue flushes it and waits for nothing; the core finishes before it
     * closes, and OpenCL keeps objects alive until enqueued work that uses them is done. */
    if (d->tqueue)
        clReleaseCommandQueue(d->tqueue);
    clReleaseCommandQueue(d->queue);
    clReleaseContext(d->context);
    free(d);
}

/* Opens the application's own context/device/queue. The library takes references
 * (clRetain*) and gives back only those: it never destroys what it did not create. A NULL
 * queue gets one of the library's own. */
static attn_status attn_cl_open_native(attn_context *ctx, const void *native,
                                       attn_device_info *info, void **out)
{
    const attn__opencl_native *n = native;
    *out = NULL;
    if (!n || !n->context || !n->device)
        return attn__fail(ctx, ATTN_ERROR_NULL_POINTER,
                          "OpenCL interop: the cl_context and cl_device_id must not be NULL");
    cl_platform_id platform = NULL;
    cl_int err = clGetDeviceInfo(n->device, CL_DEVICE_PLATFORM, sizeof platform, &platform, NULL);
    if (err != CL_SUCCESS)
        return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                          "OpenCL interop: clGetDeviceInfo(CL_DEVICE_PLATFORM) failed with %s (%d)",
                          attn_cl_error_name(err), (int)err);
    memset(info, 0, sizeof *info);
    info->struct_size = sizeof *info;
    attn_status status = attn_cl_fill_info(platform, n->device, 0, info);
    if (status != ATTN_OK)
        return attn__fail(ctx, status, "OpenCL interop: querying the device failed");
    attn_cl_device *d = calloc(1, sizeof *d);
    if (!d)
        return attn__fail(ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "OpenCL: out of host memory");
    d->ctx = ctx;
    d->platform = platform;
    d->device = n->device;
    d->context = n->context;
    clRetainContext(d->context);
    if (n->queue) {
        d->queue = n->queue;
        clRetainCommandQueue(d->queue);
    } else {
        d->queue = clCreateCommandQueue(d->context, d->device, 0, &err);
        if (!d->queue || err != CL_SUCCESS) {
            status = attn_cl_fail(d, err, 0, "clCreateCommandQueue", "opening the device");
            clReleaseContext(d->context);
            free(d);
            return status;
        }
    }
    *out = d;
    return ATTN_OK;
}

/* ---- buffers -------------------------------------------------------------------------- */

/* Wraps the application's cl_mem: a reference is taken and buffer_free gives it back. */
static attn_status attn_cl_buffer_wrap(void *dev, const void *native, uint64_t *bytes, void **buf)
{
    attn_cl_device *d = dev;
    cl_mem mem = *(const cl_mem *)native;
    *buf = NULL;
    cl_context owner = NULL;
    size_t size = 0;
    cl_int err = clGetMemObjectInfo(mem, CL_MEM_CONTEXT, sizeof owner, &owner, NULL);
    if (err == CL_SUCCESS)
        err = clGetMemObjectInfo(mem, CL_MEM_SIZE, sizeof size, &size, NULL);
    if (err != CL_SUCCESS)
        return attn__fail(d->ctx, ATTN_ERROR_INVALID_ARGUMENT,
                          "OpenCL interop: the cl_mem is not valid (%s, %d)",
                          attn_cl_error_name(err), (int)err);
    if (owner != d->context)
        return attn__fail(d->ctx, ATTN_ERROR_WRONG_CONTEXT,
                          "OpenCL interop: the cl_mem belongs to another cl_context");
    clRetainMemObject(mem);
    *bytes = size;
    *buf = mem;
    return ATTN_OK;
}

static attn_status attn_cl_buffer_alloc(void *dev, uint64_t bytes, void **buf)
{
    attn_cl_device *d = dev;
    *buf = NULL;
    if (bytes > SIZE_MAX)
        return attn__fail(d->ctx, ATTN_ERROR_OUT_OF_DEVICE_MEMORY,
                          "OpenCL: a buffer of %llu bytes exceeds this host's address size",
                          (unsigned long long)bytes);
    /* OpenCL rejects 0-byte buffers; an empty tensor still needs a valid handle. */
    size_t size = bytes ? (size_t)bytes : 1;
    cl_int err = CL_SUCCESS;
    cl_mem mem = clCreateBuffer(d->context, CL_MEM_READ_WRITE, size, NULL, &err);
    if (!mem || err != CL_SUCCESS) {
        char what[64];
        snprintf(what, sizeof what, "allocating %llu bytes", (unsigned long long)bytes);
        return attn_cl_fail(d, err, 1, "clCreateBuffer", what);
    }
    *buf = mem; /* the handle is the cl_mem itself */
    return ATTN_OK;
}

static void attn_cl_buffer_free(void *dev, void *buf)
{
    (void)dev;
    if (buf)
        clReleaseMemObject((cl_mem)buf);
}

/* offset+bytes must lie in size_t; the core has checked them against the buffer size. */
static attn_status attn_cl_check_range(const attn_cl_device *d, uint64_t offset, uint64_t bytes)
{
    if (offset > SIZE_MAX || bytes > SIZE_MAX - offset)
        return attn__fail(d->ctx, ATTN_ERROR_OUT_OF_RANGE,
                          "OpenCL: range %llu+%llu exceeds this host's address size",
                          (unsigned long long)offset, (unsigned long long)bytes);
    return ATTN_OK;
}

static attn_status attn_cl_buffer_write(void *dev, void *buf, uint64_t offset, const void *src,
                                   uint64_t bytes)
{
    attn_cl_device *d = dev;
    if (bytes == 0) /* OpenCL calls a 0-byte copy CL_INVALID_VALUE */
        return ATTN_OK;
    attn_status status = attn_cl_check_range(d, offset, bytes);
    if (status != ATTN_OK)
        return status;
    cl_int err = clEnqueueWriteBuffer(d->queue, (cl_mem)buf, CL_TRUE, (size_t)offset,
                                      (size_t)bytes, src, 0, NULL, NULL);
    if (err != CL_SUCCESS) {
        char what[96];
        snprintf(what, sizeof what, "writing %llu bytes at offset %llu",
                 (unsigned long long)bytes, (unsigned long long)offset);
        return attn_cl_fail(d, err, 0, "clEnqueueWriteBuffer", what);
    }
    return ATTN_OK;
}

static attn_status attn_cl_buffer_read(void *dev, void *buf, uint64_t offset, void *dst,
                                  uint64_t bytes)
{
    attn_cl_device *d = dev;
    if (bytes == 0)
        return ATTN_OK;
    attn_status status = attn_cl_check_range(d, offset, bytes);
    if (status != ATTN_OK)
        return status;
    cl_int err = clEnqueueReadBuffer(d->queue, (cl_mem)buf, CL_TRUE, (size_t)offset,
                                     (size_t)bytes, dst, 0, NULL, NULL);
    if (err != CL_SUCCESS) {
        char what[96];
        snprintf(what, sizeof what, "reading %llu bytes at offset %llu",
                 (unsigned long long)bytes, (unsigned long long)offset);
        return attn_cl_fail(d, err, 0, "clEnqueueReadBuffer", what);
    }
    return ATTN_OK;
}

static void *attn_cl_buffer_host_ptr(void *dev, void *buf)
{
    (void)dev;
    (void)buf;
    return NULL;
}

/* ---- JIT ------------------------------------------------------------------------------ */

static int attn_cl_is_identifier(const char *s)
{
    if (!s || !*s || (*s >= '0' && *s <= '9'))
        return 0;
    for (; *s; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return 0;
    }
    return 1;
}

/* "-cl-std=CL1.2 -DNAME=VALUE ...", malloc'ed; NULL when out of host memory. */
static char *attn_cl_build_options(const attn__define *defines, uint32_t num_defines)
{
    static const char base[] = "-cl-std=CL1.2";
    size_t len = sizeof base; /* includes the terminator */
    for (uint32_t i = 0; i < num_defines; i++)
        len += strlen(defines[i].name) + 4 + 21; /* " -D" "=" and a long long */
    char *options = malloc(len);
    if (!options)
        return NULL;
    size_t pos = (size_t)snprintf(options, len, "%s", base);
    for (uint32_t i = 0; i < num_defines && pos < len; i++)
        pos += (size_t)snprintf(options + pos, len - pos, " -D%s=%lld", defines[i].name,
                                defines[i].value);
    return options;
}

/* The build log of `program` for `device`, malloc'ed, any length; NULL if unavailable. */
static char *attn_cl_build_log(cl_program program, cl_device_id device)
{
    size_t size = 0;
    if (clGetProgramBuildInfo(program, device, CL_PROGRAM_BUILD_LOG, 0, NULL, &size) !=
        CL_SUCCESS)
        return NULL;
    char *log = malloc(size + 1);
    if (!log)
        return NULL;
    if (clGetProgramBuildInfo(program, device, CL_PROGRAM_BUILD_LOG, size, log, NULL) !=
        CL_SUCCESS) {
        free(log);
        return NULL;
    }
    log[size] = '\0';
    /* Logs end in newlines and NULs in a driver-specific way; trim for a tidy detail. */
    size_t n = strlen(log);
    while (n > 0 && (log[n - 1] == '\n' || log[n - 1] == '\r' || log[n - 1] == ' '))
        log[--n] = '\0';
    return log;
}

/* One kernel object of a built program; takes a reference on the program. */
static attn_status attn_cl_make_kernel(attn_cl_device *d, cl_program program, const char *entry,
                                       const char *options, void **kernel)
{
    cl_int err = CL_SUCCESS;
    attn_cl_kernel *k = calloc(1, sizeof *k);
    if (!k)
        return attn__fail(d->ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "OpenCL: out of host memory");
    if (pthread_mutex_init(&k->lock, NULL) != 0) {
        free(k);
        return attn__fail(d->ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY,
                          "OpenCL: cannot create a kernel lock");
    }
    k->kernel = clCreateKernel(program, entry, &err);
    if (!k->kernel || err != CL_SUCCESS) {
        /* A missing entry point is a fault of the kernel source, like a compile error. */
        attn_status status =
            err == CL_INVALID_KERNEL_NAME ? ATTN_ERROR_JIT_FAILED : attn_cl_status(err, 0);
        pthread_mutex_destroy(&k->lock);
        free(k);
        return attn__fail(d->ctx, status,
                          "OpenCL: clCreateKernel failed with %s (%d) for entry \"%s\" "
                          "(options: %s)",
                          attn_cl_error_name(err), (int)err, entry, options);
    }
    clRetainProgram(program);
    k->program = program;
    *kernel = k;
    return ATTN_OK;
}

static void attn_cl_kernel_free(void *dev, void *kernel);

static attn_status attn_cl_compile(void *dev, const char *source, const attn__define *defines,
                                   uint32_t num_defines, const char *const *entries,
                                   uint32_t num_entries, void **kernels)
{
    attn_cl_device *d = dev;
    for (uint32_t i = 0; i < num_entries; ++i)
        kernels[i] = NULL;
    const char *entry = num_entries ? entries[0] : NULL;
    if (!source || !entry || (num_defines && !defines))
        return attn__fail(d->ctx, ATTN_ERROR_NULL_POINTER, "OpenCL: compile without %s",
                          !source ? "source" : !entry ? "an entry point" : "defines");
    for (uint32_t i = 0; i < num_defines; i++)
        if (!attn_cl_is_identifier(defines[i].name))
            return attn__fail(d->ctx, ATTN_ERROR_INVALID_ARGUMENT,
                              "OpenCL: define %u has an invalid name \"%s\"", (unsigned)i,
                              defines[i].name ? defines[i].name : "(null)");

    char *options = attn_cl_build_options(defines, num_defines);
    if (!options)
        return attn__fail(d->ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "OpenCL: out of host memory");

    attn_status status;
    cl_int err = CL_SUCCESS;
    cl_program program = clCreateProgramWithSource(d->context, 1, &source, NULL, &err);
    if (!program || err != CL_SUCCESS) {
        status = attn_cl_fail(d, err, 0, "clCreateProgramWithSource", "creating a program");
        free(options);
        return status;
    }

    err = clBuildProgram(program, 1, &d->device, options, NULL, NULL);
    if (err != CL_SUCCESS) {
        char *log = attn_cl_build_log(program, d->device);
        /* A program the compiler rejects, options it rejects, or no compiler at all are
         * JIT failures; anything else (e.g. out of host memory) keeps its own status. */
        status = (err == CL_BUILD_PROGRAM_FAILURE || err == CL_INVALID_BUILD_OPTIONS ||
                  err == CL_COMPILER_NOT_AVAILABLE)
                     ? ATTN_ERROR_JIT_FAILED
                     : attn_cl_status(err, 0);
        status = attn__fail(d->ctx, status,
                            "OpenCL: clBuildProgram failed with %s (%d) building \"%s\"\n"
                            "options: %s\nbuild log:\n%s",
                            attn_cl_error_name(err), (int)err, entry, options,
                            log ? log : "(not available)");
        free(log);
        free(options);
        clReleaseProgram(program);
        return status;
    }

    /* Warnings are worth seeing when debugging a kernel, never worth failing for. */
    char *log = attn_cl_build_log(program, d->device);
    if (log && log[0])
        attn__log(d->ctx, ATTN_LOG_DEBUG, "OpenCL: build log of \"%s\" (options: %s):\n%s",
                  entry, options, log);
    free(log);

    status = ATTN_OK;
    for (uint32_t i = 0; i < num_entries && status == ATTN_OK; ++i)
        status = attn_cl_make_kernel(d, program, entries[i], options, &kernels[i]);
    if (status != ATTN_OK)
        for (uint32_t i = 0; i < num_entries; ++i) {
            attn_cl_kernel_free(dev, kernels[i]);
            kernels[i] = NULL;
        }
    free(options);
    clReleaseProgram(program);
    return status;
}

/* The persistent cache's failures are not the caller's: a debug log line, no detail. */
static attn_status attn_cl_quiet(attn_cl_device *d, attn_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static attn_status attn_cl_quiet(attn_cl_device *d, attn_status st, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    attn__log(d->ctx, ATTN_LOG_DEBUG, "%s", msg);
    return st;
}

/* The program binary for this device (PoCL, vendor drivers: their own formats). */
static attn_status attn_cl_program_binary(void *dev, void *kernel, void **data, size_t *bytes)
{
    attn_cl_device *d = dev;
    attn_cl_kernel *k = kernel;
    *data = NULL;
    *bytes = 0;
    size_t size = 0;
    cl_int err = clGetProgramInfo(k->program, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL);
    if (err != CL_SUCCESS || size == 0)
        return attn_cl_quiet(d, ATTN_ERROR_UNSUPPORTED, "OpenCL: the driver gives no program binary (%s, %d)",
                          attn_cl_error_name(err), (int)err);
    unsigned char *bin = malloc(size);
    if (!bin)
        return attn_cl_quiet(d, ATTN_ERROR_OUT_OF_HOST_MEMORY, "OpenCL: program binary");
    err = clGetProgramInfo(k->program, CL_PROGRAM_BINARIES, sizeof bin, &bin, NULL);
    if (err != CL_SUCCESS) {
        free(bin);
        return attn_cl_quiet(d, ATTN_ERROR_BACKEND, "OpenCL: reading the program binary: %s (%d)",
                          attn_cl_error_name(err), (int)err);
    }
    *data = bin;
    *bytes = size;
    return ATTN_OK;
}

static attn_status attn_cl_compile_binary(void *dev, const void *data, size_t bytes,
                                          const char *const *entries, uint32_t num_entries,
                                          void **kernels)
{
    attn_cl_device *d = dev;
    for (uint32_t i = 0; i < num_entries; ++i)
        kernels[i] = NULL;
    const unsigned char *bin = data;
    cl_int status = CL_SUCCESS, err = CL_SUCCESS;
    cl_program program =
        clCreateProgramWithBinary(d->context, 1, &d->device, &bytes, &bin, &status, &err);
    if (!program || err != CL_SUCCESS || status != CL_SUCCESS) {
        if (program)
            clReleaseProgram(program);
        return attn_cl_quiet(d, ATTN_ERROR_JIT_FAILED, "OpenCL: the driver rejects the cached binary (%s, %d)",
                          attn_cl_error_name(err != CL_SUCCESS ? err : status),
                          (int)(err != CL_SUCCESS ? err : status));
    }
    err = clBuildProgram(program, 1, &d->device, "", NULL, NULL);
    attn_status st = err == CL_SUCCESS
                         ? ATTN_OK
                         : attn_cl_quiet(d, ATTN_ERROR_JIT_FAILED,
                                         "OpenCL: building the cached binary failed (%s, %d)",
                                         attn_cl_error_name(err), (int)err);
    for (uint32_t i = 0; i < num_entries && st == ATTN_OK; ++i)
        st = attn_cl_make_kernel(d, program, entries[i], "(binary)", &kernels[i]);
    if (st != ATTN_OK)
        for (uint32_t i = 0; i < num_entries; ++i) {
            attn_cl_kernel_free(dev, kernels[i]);
            kernels[i] = NULL;
        }
    clReleaseProgram(program);
    return st;
}

static void attn_cl_kernel_free(void *dev, void *kernel)
{
    (void)dev;
    attn_cl_kernel *k = kernel;
    if (!k)
        return;
    clReleaseKernel(k->kernel);
    clReleaseProgram(k->program);
    pthread_mutex_destroy(&k->lock);
    free(k);
}

/* ---- launches ------------------------------------------------------------------------- */

static attn_status attn_cl_launch(void *dev, void *kernel, const attn__launch *launch)
{
    attn_cl_device *d = dev;
    attn_cl_kernel *k = kernel;
    if (!k || !launch)
        return attn__fail(d->ctx, ATTN_ERROR_NULL_POINTER, "OpenCL: launch without %s",
                          !k ? "a kernel" : "a launch description");
    if (launch->num_buffers > ATTN__MAX_LAUNCH_BUFFERS)
        return attn__fail(d->ctx, ATTN_ERROR_INVALID_ARGUMENT,
                          "OpenCL: launch with %u buffers (at most %d)",
                          (unsigned)launch->num_buffers, ATTN__MAX_LAUNCH_BUFFERS);
    if (launch->params_size > 0 && !launch->params)
        return attn__fail(d->ctx, ATTN_ERROR_NULL_POINTER,
                          "OpenCL: launch with %zu bytes of params but no params pointer",
                          launch->params_size);

    size_t global[3];
    for (int i = 0; i < 3; i++) {
        if (launch->local[i] == 0)
            return attn__fail(d->ctx, ATTN_ERROR_INVALID_ARGUMENT,
                              "OpenCL: launch with local size 0 in dimension %d", i);
        if (launch->groups[i] == 0) /* OpenCL 1.2 rejects an empty range; nothing to run */
            return ATTN_OK;
        if (launch->groups[i] > SIZE_MAX / launch->local[i])
            return attn__fail(d->ctx, ATTN_ERROR_OVERFLOW,
                              "OpenCL: launch size %zu x %zu overflows in dimension %d",
                              launch->groups[i], launch->local[i], i);
        global[i] = launch->groups[i] * launch->local[i];
    }

    attn_status status = ATTN_OK;
    pthread_mutex_lock(&k->lock);
    cl_int err = CL_SUCCESS;
    for (uint32_t i = 0; i < launch->num_buffers && err == CL_SUCCESS; i++) {
        cl_mem mem = (cl_mem)launch->buffers[i]; /* NULL binds a NULL pointer argument */
        err = clSetKernelArg(k->kernel, i, sizeof mem, &mem);
        if (err != CL_SUCCESS) {
            char what[48];
            snprintf(what, sizeof what, "binding buffer argument %u", (unsigned)i);
            status = attn_cl_fail(d, err, 0, "clSetKernelArg", what);
        }
    }
    if (err == CL_SUCCESS && launch->params_size > 0) {
        err = clSetKernelArg(k->kernel, launch->num_buffers, launch->params_size, launch->params);
        if (err != CL_SUCCESS) {
            char what[80];
            snprintf(what, sizeof what, "setting the %zu-byte params argument %u",
                     launch->params_size, (unsigned)launch->num_buffers);
            status = attn_cl_fail(d, err, 0, "clSetKernelArg", what);
        }
    }
    if (err == CL_SUCCESS) {
        err = clEnqueueNDRangeKernel(d->queue, k->kernel, 3, NULL, global, launch->local,
                                     launch->num_wait,
                                     launch->num_wait ? (const cl_event *)launch->wait : NULL,
                                     NULL);
        if (err != CL_SUCCESS) {
            char what[160];
            snprintf(what, sizeof what, "launching global %zux%zux%zu, local %zux%zux%zu",
                     global[0], global[1], global[2], launch->local[0], launch->local[1],
                     launch->local[2]);
            status = attn_cl_fail(d, err, 0, "clEnqueueNDRangeKernel", what);
        }
    }
    pthread_mutex_unlock(&k->lock);
    return status;
}

static attn_status attn_cl_finish(void *dev)
{
    attn_cl_device *d = dev;
    cl_int err = d->tqueue ? clFinish(d->tqueue) : CL_SUCCESS;
    if (err == CL_SUCCESS)
        err = clFinish(d->queue);
    if (err != CL_SUCCESS)
        return attn_cl_fail(d, err, 0, "clFinish", "waiting for the device");
    return ATTN_OK;
}

/* ---- overlapped transfers ------------------------------------------------------------- */

static attn_status attn_cl_write_async(void *dev, void *buf, uint64_t offset, const void *src,
                                       uint64_t bytes, void *const *wait, uint32_t num_wait,
                                       void **event)
{
    attn_cl_device *d = dev;
    *event = NULL;
    cl_int err = CL_SUCCESS;
    if (!d->tqueue) {
        d->tqueue = clCreateCommandQueue(d->context, d->device, 0, &err);
        if (!d->tqueue || err != CL_SUCCESS) {
            d->tqueue = NULL;
            return attn_cl_fail(d, err, 0, "clCreateCommandQueue", "making the transfer queue");
        }
    }
    attn_status st = attn_cl_check_range(d, offset, bytes);
    if (st != ATTN_OK)
        return st;
    cl_event ev = NULL;
    err = clEnqueueWriteBuffer(d->tqueue, (cl_mem)buf, CL_FALSE, (size_t)offset, (size_t)bytes,
                               src, num_wait, num_wait ? (const cl_event *)wait : NULL, &ev);
    if (err != CL_SUCCESS)
        return attn_cl_fail(d, err, 0, "clEnqueueWriteBuffer", "an overlapped upload");
    /* Start it now: the compute queue will wait for it. */
    clFlush(d->tqueue);
    *event = ev;
    return ATTN_OK;
}

static attn_status attn_cl_compute_marker(void *dev, void **event)
{
    attn_cl_device *d = dev;
    cl_event ev = NULL;
    cl_int err = clEnqueueMarkerWithWaitList(d->queue, 0, NULL, &ev);
    if (err != CL_SUCCESS)
        return attn_cl_fail(d, err, 0, "clEnqueueMarkerWithWaitList", "marking compute work");
    clFlush(d->queue);
    *event = ev;
    return ATTN_OK;
}

static attn_status attn_cl_event_wait(void *dev, void *event)
{
    attn_cl_device *d = dev;
    cl_event ev = event;
    cl_int err = clWaitForEvents(1, &ev);
    if (err != CL_SUCCESS)
        return attn_cl_fail(d, err, 0, "clWaitForEvents", "waiting for a transfer");
    return ATTN_OK;
}

static void attn_cl_event_release(void *dev, void *event)
{
    (void)dev;
    if (event)
        clReleaseEvent((cl_event)event);
}

const attn__backend_ops attn__opencl_ops = {
    .id = ATTN_BACKEND_OPENCL,
    .name = "opencl",
    .lang = ATTN__LANG_OPENCL_C,
    .device_count = attn_cl_device_count,
    .device_info = attn_cl_device_info,
    .open = attn_cl_open,
    .close = attn_cl_close,
    .open_native = attn_cl_open_native,
    .buffer_wrap = attn_cl_buffer_wrap,
    .buffer_alloc = attn_cl_buffer_alloc,
    .buffer_free = attn_cl_buffer_free,
    .buffer_write = attn_cl_buffer_write,
    .buffer_read = attn_cl_buffer_read,
    .buffer_host_ptr = attn_cl_buffer_host_ptr,
    .compile = attn_cl_compile,
    .kernel_free = attn_cl_kernel_free,
    .program_binary = attn_cl_program_binary,
    .compile_binary = attn_cl_compile_binary,
    .launch = attn_cl_launch,
    .finish = attn_cl_finish,
    .write_async = attn_cl_write_async,
    .compute_marker = attn_cl_compute_marker,
    .event_wait = attn_cl_event_wait,
    .event_release = attn_cl_event_release,
};
