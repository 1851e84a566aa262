/* buffer.c — library-owned device buffers (attn_buffer), counted against the budget. */
#include <stdlib.h>

#include "core/context.h"

static void link_buffer(attn_context *ctx, attn_buffer *buf)
{
    pthread_mutex_lock(&ctx->lock);
    buf->next = ctx->buffers;
    if (ctx->buffers)
        ctx->buffers->prev = buf;
    ctx->buffers = buf;
    pthread_mutex_unlock(&ctx->lock);
}

attn_status attn__buffer_wrap(attn_context *ctx, attn_backend backend, const void *native,
                              attn_buffer **out)
{
    if (!out)
        return attn__fail_thread(ATTN_ERROR_NULL_POINTER, "buffer wrap: out is NULL");
    *out = NULL;
    if (!ctx || !native)
        return attn__fail_thread(ATTN_ERROR_NULL_POINTER, "buffer wrap: ctx or buffer is NULL");
    if (ctx->ops->id != backend || !ctx->ops->buffer_wrap)
        return attn__fail(ctx, ATTN_ERROR_WRONG_CONTEXT,
                          "buffer wrap: the context runs on backend %s", ctx->ops->name);
    attn_buffer *buf = calloc(1, sizeof *buf);
    if (!buf)
        return attn__fail(ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "allocating a buffer object");
    attn_status st = ctx->ops->buffer_wrap(ctx->dev, native, &buf->size, &buf->handle);
    if (st != ATTN_OK) {
        free(buf);
        return st;
    }
    buf->ctx = ctx;
    buf->wrapped = 1;
    link_buffer(ctx, buf);
    *out = buf;
    return ATTN_OK;
}

attn_status attn_buffer_create(attn_context *ctx, uint64_t bytes, attn_buffer **out)
{
    if (!out)
        return attn__fail(ctx, ATTN_ERROR_NULL_POINTER, "attn_buffer_create: out is NULL");
    *out = NULL;
    if (!ctx)
        return attn__fail_thread(ATTN_ERROR_NULL_POINTER, "attn_buffer_create: ctx is NULL");
    if (bytes == 0)
        return attn__fail(ctx, ATTN_ERROR_INVALID_SHAPE, "attn_buffer_create: 0 bytes");
    attn_buffer *buf = calloc(1, sizeof *buf);
    if (!buf)
        return attn__fail(ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "allocating a buffer object");
    attn_status st = attn__dev_alloc(ctx, bytes, &buf->handle);
    if (st != ATTN_OK) {
        free(buf);
        return st;
    }
    buf->ctx = ctx;
    buf->size = bytes;
    link_buffer(ctx, buf);
    *out = buf;
    return ATTN_OK;
}

static attn_status check_range(const attn_buffer *buf, uint64_t offset, const void *ptr,
                               uint64_t bytes, const char *what)
{
    if (!buf)
        return attn__fail_thread(ATTN_ERROR_NULL_POINTER, "%s: buffer is NULL", what);
    if (!ptr && bytes)
        return attn__fail(buf->ctx, ATTN_ERROR_NULL_POINTER, "%s: host pointer is NULL", what);
    if (offset > buf->size || bytes > buf->size - offset)
        return attn__fail(buf->ctx, ATTN_ERROR_OUT_OF_RANGE,
                          "%s: [%llu, +%llu) is outside the buffer of %llu bytes", what,
                          (unsigned long long)offset, (unsigned long long)bytes,
                          (unsigned long long)buf->size);
    return ATTN_OK;
}

attn_status attn_buffer_upload(attn_buffer *buf, uint64_t offset, const void *src, uint64_t bytes)
{
    attn_status st = check_range(buf, offset, src, bytes, "attn_buffer_upload");
    if (st != ATTN_OK)
        return st;
    return attn__dev_write(buf->ctx, buf->handle, offset, src, bytes);
}

attn_status attn_buffer_download(attn_buffer *buf, uint64_t offset, void *dst, uint64_t bytes)
{
    attn_status st = check_range(buf, offset, dst, bytes, "attn_buffer_download");
    if (st != ATTN_OK)
        return st;
    st = buf->ctx->ops->finish(buf->ctx->dev);
    if (st != ATTN_OK)
        return st;
    return attn__dev_read(buf->ctx, buf->handle, offset, dst, bytes);
}

uint64_t attn_buffer_size(const attn_buffer *buf) { return buf ? buf->size : 0; }

void attn_buffer_destroy(attn_buffer *buf)
{
    if (!buf)
        return;
    attn_context *ctx = buf->ctx;
    pthread_mutex_lock(&ctx->lock);
    if (buf->prev)
        buf->prev->next = buf->next;
    else
        ctx->buffers = buf->next;
    if (buf->next)
        buf->next->prev = buf->prev;
    pthread_mutex_unlock(&ctx->lock);
    ctx->ops->finish(ctx->dev);
    if (buf->wrapped)
        ctx->ops->buffer_free(ctx->dev, buf->handle); /* gives back our reference only */
    else
        attn__dev_free(ctx, buf->handle, buf->size);
    free(buf);
}
