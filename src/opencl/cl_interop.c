/* cl_interop.c — the public OpenCL interop entry points (attn_opencl.h). */
#include <attn/attn_opencl.h>

#include "core/context.h"

attn_status attn_context_create_opencl(const attn_context_params *params, cl_context context,
                                       cl_device_id device, cl_command_queue queue,
                                       attn_context **out)
{
    attn__opencl_native n = {context, device, queue};
    return attn__context_create_native(params, ATTN_BACKEND_OPENCL, &n, out);
}

attn_status attn_buffer_wrap_opencl(attn_context *ctx, cl_mem mem, attn_buffer **out)
{
    if (!mem)
        return attn__fail(ctx, ATTN_ERROR_NULL_POINTER, "attn_buffer_wrap_opencl: mem is NULL");
    return attn__buffer_wrap(ctx, ATTN_BACKEND_OPENCL, &mem, out);
}
