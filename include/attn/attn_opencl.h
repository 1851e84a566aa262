/* attn_opencl.h — OpenCL interop: run attention in the application's own cl_context and
 * queue, on its own cl_mem buffers. The library never releases what it did not create
 * beyond the references it took. */
#ifndef ATTN_ATTN_OPENCL_H
#define ATTN_ATTN_OPENCL_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>
#include <attn/attn.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A context on the application's device. `queue` may be NULL (the library makes its own,
 * in the same cl_context); otherwise work is enqueued there, in order. params as for
 * attn_context_create (backend and device_index are ignored). */
ATTN_API attn_status attn_context_create_opencl(const attn_context_params *params,
                                                cl_context context, cl_device_id device,
                                                cl_command_queue queue, attn_context **out);

/* An attn_buffer naming the application's cl_mem (same cl_context); usable in tensors
 * like any buffer. attn_buffer_destroy releases only the library's reference. */
ATTN_API attn_status attn_buffer_wrap_opencl(attn_context *ctx, cl_mem mem, attn_buffer **out);

#ifdef __cplusplus
}
#endif
#endif
