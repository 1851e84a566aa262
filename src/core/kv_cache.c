/* kv_cache.c — a growing key/value cache for decode loops: device-resident while it fits
 * the budget (appends upload only the new tokens), host-resident otherwise. */
#include <stdlib.h>
#include <string.h>

#include "core/context.h"
#include "core/plan.h"

struct attn_kv_cache {
    attn_context *ctx;
    attn_kv_cache_params p;
    int64_t length, capacity;
    int32_t *lengths;          /* [batch], all = length */
    attn_buffer *kb, *vb;      /* device storage, or */
    char *kh, *vh;             /* host storage */
};

static uint64_t row_bytes(const attn_kv_cache *c, int64_t dim)
{
    return (uint64_t)c->p.num_kv_heads * (uint64_t)dim * attn__dtype_size(c->p.dtype);
}

static uint64_t store_bytes(const attn_kv_cache *c, int64_t cap, int64_t dim)
{
    return (uint64_t)c->p.batch * (uint64_t)cap * row_bytes(c, dim);
}

/* Device residence while K and V take at most half of the budget still free. */
static int fits_device(const attn_kv_cache *c, int64_t cap)
{
    if (c->p.host_resident)
        return 0;
    attn_stats st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    attn_context_get_stats(c->ctx, &st);
    uint64_t free_bytes = c->ctx->budget > st.device_bytes ? c->ctx->budget - st.device_bytes : 0;
    uint64_t need = store_bytes(c, cap, c->p.head_dim) + store_bytes(c, cap, c->p.v_head_dim);
    return need <= free_bytes / 2;
}

/* Moves the contents to storage of capacity `cap` (device if it fits, else host). */
static attn_status regrow(attn_kv_cache *c, int64_t cap)
{
    attn_context *ctx = c->ctx;
    const int64_t dims[2] = {c->p.head_dim, c->p.v_head_dim};
    attn_buffer *nb[2] = {NULL, NULL};
    char *nh[2] = {NULL, NULL};
    const int dev = fits_device(c, cap);
    attn_status st = ATTN_OK;
    for (int t = 0; t < 2 && st == ATTN_OK; ++t) {
        uint64_t bytes = store_bytes(c, cap, dims[t]);
        if (dev) {
            st = attn_buffer_create(ctx, bytes ? bytes : 1, &nb[t]);
        } else {
            nh[t] = calloc(1, bytes ? bytes : 1);
            if (!nh[t])
                st = attn__fail(ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "KV cache of %llu bytes",
                                (unsigned long long)bytes);
        }
    }
    /* Copy what is held, batch entry by batch entry (rows move with the capacity). */
    for (int t = 0; t < 2 && st == ATTN_OK && c->length > 0; ++t) {
        const uint64_t rb = row_bytes(c, dims[t]), used = (uint64_t)c->length * rb;
        char *tmp = malloc(used);
        if (!tmp) {
            st = attn__fail(ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "growing the KV cache");
            break;
        }
        attn_buffer *ob = t ? c->vb : c->kb;
        char *oh = t ? c->vh : c->kh;
        for (int64_t b = 0; b < c->p.batch && st == ATTN_OK; ++b) {
            const uint64_t old_off = (uint64_t)b * (uint64_t)c->capacity * rb;
            const uint64_t new_off = (uint64_t)b * (uint64_t)cap * rb;
            if (ob)
                st = attn_buffer_download(ob, old_off, tmp, used);
            else
                memcpy(tmp, oh + old_off, used);
            if (st == ATTN_OK && nb[t])
                st = attn_buffer_upload(nb[t], new_off, tmp, used);
            else if (st == ATTN_OK)
                memcpy(nh[t] + new_off, tmp, used);
        }
        free(tmp);
    }
    if (st != ATTN_OK) {
        for (int t = 0; t < 2; ++t) {
            attn_buffer_destroy(nb[t]);
            free(nh[t]);
        }
        return st;
    }
    attn_buffer_destroy(c->kb);
    attn_buffer_destroy(c->vb);
    free(c->kh);
    free(c->vh);
    c->kb = nb[0], c->vb = nb[1], c->kh = nh[0], c->vh = nh[1];
    c->capacity = cap;
    return ATTN_OK;
}

attn_status attn_kv_cache_create(attn_context *ctx, const attn_kv_cache_params *params,
                                 attn_kv_cache **out)
{
    if (!out)
        return attn__fail_thread(ATTN_ERROR_NULL_POINTER, "attn_kv_cache_create: out is NULL");
    *out = NULL;
    if (!ctx || !params)
        return attn__fail_thread(ATTN_ERROR_NULL_POINTER,
                                 "attn_kv_cache_create: ctx or params is NULL");
    if (ATTN__BAD_STRUCT_SIZE(params, attn_kv_cache_params))
        return attn__fail(ctx, ATTN_ERROR_STRUCT_SIZE,
                          "attn_kv_cache_params.struct_size is %zu; expected %zu",
                          params->struct_size, sizeof(attn_kv_cache_params));
    attn_kv_cache_params p = *params;
    if (!p.v_head_dim)
        p.v_head_dim = p.head_dim;
    if (p.batch <= 0 || p.num_kv_heads <= 0 || p.head_dim <= 0 || p.v_head_dim <= 0 ||
        p.capacity <= 0 || p.batch > 65535 || p.num_kv_heads > 65535 ||
        p.capacity > INT32_MAX / 2)
        return attn__fail(ctx, ATTN_ERROR_INVALID_SHAPE,
                          "KV cache: batch, num_kv_heads, head_dim and capacity must be > 0 "
                          "(batch and heads at most 65535, capacity below 2^30)");
    if (p.head_dim > ATTN_MAX_HEAD_DIM || p.v_head_dim > ATTN_MAX_HEAD_DIM)
        return attn__fail(ctx, ATTN_ERROR_HEAD_DIM_UNSUPPORTED,
                          "KV cache: head_dim %lld / v_head_dim %lld above %d",
                          (long long)p.head_dim, (long long)p.v_head_dim, ATTN_MAX_HEAD_DIM);
    if (p.dtype != ATTN_DTYPE_F32 && p.dtype != ATTN_DTYPE_F16)
        return attn__fail(ctx, ATTN_ERROR_INVALID_ARGUMENT, "KV cache: dtype must be f32 or f16");
    attn_kv_cache *c = calloc(1, sizeof *c);
    if (!c)
        return attn__fail(ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "KV cache");
    c->ctx = ctx;
    c->p = p;
    c->lengths = calloc((size_t)p.batch, sizeof *c->lengths);
    attn_status st = c->lengths ? regrow(c, p.capacity)
                                : attn__fail(ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "KV cache");
    if (st != ATTN_OK) {
        attn_kv_cache_destroy(c);
        return st;
    }
    *out = c;
    return ATTN_OK;
}

static attn_status check_input(attn_kv_cache *c, const attn_tensor *t, int64_t dim,
                               const char *name, int64_t n)
{
    if (!t || !t->data)
        return attn__fail(c->ctx, ATTN_ERROR_NULL_POINTER,
                          "attn_kv_cache_append: %s must be a host tensor", name);
    if (t->dtype != c->p.dtype)
        return attn__fail(c->ctx, ATTN_ERROR_DTYPE_MISMATCH,
                          "attn_kv_cache_append: %s has another dtype than the cache", name);
    if (t->shape[0] != c->p.batch || t->shape[1] != n || t->shape[2] != c->p.num_kv_heads ||
        t->shape[3] != dim)
        return attn__fail(c->ctx, ATTN_ERROR_SHAPE_MISMATCH,
                          "attn_kv_cache_append: %s must be [%lld, n, %lld, %lld]", name,
                          (long long)c->p.batch, (long long)c->p.num_kv_heads, (long long)dim);
    for (int i = 0; i < 4; ++i)
        if (t->stride[i] < 0)
            return attn__fail(c->ctx, ATTN_ERROR_INVALID_STRIDE,
                              "attn_kv_cache_append: %s has a negative stride", name);
    return ATTN_OK;
}

attn_status attn_kv_cache_append(attn_kv_cache *c, const attn_tensor *k, const attn_tensor *v)
{
    if (!c)
        return attn__fail_thread(ATTN_ERROR_NULL_POINTER, "attn_kv_cache_append: cache is NULL");
    if (!k || !v)
        return attn__fail(c->ctx, ATTN_ERROR_NULL_POINTER, "attn_kv_cache_append: k or v is NULL");
    const int64_t n = k->shape[1];
    attn_status st;
    if (n <= 0 || n > INT32_MAX / 2 - c->length)
        return attn__fail(c->ctx, ATTN_ERROR_INVALID_SHAPE,
                          "attn_kv_cache_append: %lld tokens", (long long)n);
    if ((st = check_input(c, k, c->p.head_dim, "k", n)) ||
        (st = check_input(c, v, c->p.v_head_dim, "v", n)))
        return st;
    if (c->length + n > c->capacity) {
        int64_t cap = c->capacity * 2;
        if (cap < c->length + n)
            cap = c->length + n;
        if ((st = regrow(c, cap)))
            return st;
    }
    const size_t es = attn__dtype_size(c->p.dtype);
    const attn_tensor *src[2] = {k, v};
    const int64_t dims[2] = {c->p.head_dim, c->p.v_head_dim};
    for (int t = 0; t < 2; ++t) {
        const uint64_t rb = row_bytes(c, dims[t]);
        const int64_t shape[4] = {1, n, c->p.num_kv_heads, dims[t]};
        int64_t ss[4], ds[4];
        const attn_tensor *s = src[t];
        attn__dense_strides(shape, ds);
        if (!s->stride[0] && !s->stride[1] && !s->stride[2] && !s->stride[3])
            attn__dense_strides(s->shape, ss);
        else
            memcpy(ss, s->stride, sizeof ss);
        char *tmp = c->kb ? malloc((size_t)n * rb) : NULL;
        if (c->kb && !tmp)
            return attn__fail(c->ctx, ATTN_ERROR_OUT_OF_HOST_MEMORY, "KV cache append");
        for (int64_t b = 0; b < c->p.batch && st == ATTN_OK; ++b) {
            const uint64_t off = ((uint64_t)b * (uint64_t)c->capacity + (uint64_t)c->length) * rb;
            const char *from = (const char *)s->data + (size_t)(b * ss[0]) * es;
            char *to = tmp ? tmp : (t ? c->vh : c->kh) + off;
            attn__copy_strided(to, ds, from, ss, shape, es);
            if (tmp)
                st = attn_buffer_upload(t ? c->vb : c->kb, off, tmp, (uint64_t)n * rb);
        }
        free(tmp);
        if (st)
            return st;
    }
    c->length += n;
    for (int64_t b = 0; b < c->p.batch; ++b)
        c->lengths[b] = (int32_t)c->length;
    return ATTN_OK;
}

int64_t attn_kv_cache_length(const attn_kv_cache *c) { return c ? c->length : 0; }
int64_t attn_kv_cache_capacity(const attn_kv_cache *c) { return c ? c->capacity : 0; }
int attn_kv_cache_on_device(const attn_kv_cache *c) { return c && c->kb != NULL; }
const int32_t *attn_kv_cache_lengths(const attn_kv_cache *c) { return c ? c->lengths : NULL; }

attn_status attn_kv_cache_tensors(const attn_kv_cache *c, attn_tensor *k, attn_tensor *v)
{
    if (!c || !k || !v)
        return attn__fail_thread(ATTN_ERROR_NULL_POINTER, "attn_kv_cache_tensors: NULL argument");
    if (c->kb) {
        *k = attn_tensor_buffer(c->p.dtype, c->p.batch, c->capacity, c->p.num_kv_heads,
                                c->p.head_dim, c->kb, 0);
        *v = attn_tensor_buffer(c->p.dtype, c->p.batch, c->capacity, c->p.num_kv_heads,
                                c->p.v_head_dim, c->vb, 0);
    } else {
        *k = attn_tensor_host(c->p.dtype, c->p.batch, c->capacity, c->p.num_kv_heads,
                              c->p.head_dim, c->kh);
        *v = attn_tensor_host(c->p.dtype, c->p.batch, c->capacity, c->p.num_kv_heads,
                              c->p.v_head_dim, c->vh);
    }
    return ATTN_OK;
}

void attn_kv_cache_destroy(attn_kv_cache *c)
{
    if (!c)
        return;
    attn_buffer_destroy(c->kb);
    attn_buffer_destroy(c->vb);
    free(c->kh);
    free(c->vh);
    free(c->lengths);
    free(c);
}
