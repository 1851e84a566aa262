/* probe_info.c — the test oracle of test_probe.py: what the public API itself says about
 * devices and plans, one JSON object per line, for comparison with attn-probe --json.
 *
 *   probe_info devices                        every device, in attn_device_get_info order
 *   probe_info plan BACKEND INDEX DIM TOKENS  the plan of batch 1, 8 heads, head_dim DIM,
 *                                             q_len = kv_len = TOKENS, f32, causal */
#include <attn/attn.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void json_string(const char *key, const char *s)
{
    printf("\"%s\": \"", key);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    printf("\", ");
}

static const char *backend_word(attn_backend b)
{
    return b == ATTN_BACKEND_OPENCL   ? "opencl"
           : b == ATTN_BACKEND_VULKAN ? "vulkan"
           : b == ATTN_BACKEND_REFERENCE ? "reference"
                                         : "auto";
}

static int devices(void)
{
    uint32_t n = 0;
    attn_status s = attn_device_count(ATTN_BACKEND_AUTO, &n);
    if (s != ATTN_OK) {
        fprintf(stderr, "attn_device_count: %s\n", attn_status_name(s));
        return 1;
    }
    for (uint32_t i = 0; i < n; i++) {
        attn_device_info d = {.struct_size = sizeof d};
        s = attn_device_get_info(ATTN_BACKEND_AUTO, i, &d);
        if (s != ATTN_OK) {
            fprintf(stderr, "attn_device_get_info(%" PRIu32 "): %s\n", i, attn_status_name(s));
            return 1;
        }
        printf("{\"number\": %" PRIu32 ", ", i);
        json_string("backend", backend_word(d.backend));
        printf("\"backend_index\": %" PRIu32 ", \"type\": %d, ", d.index, (int)d.type);
        json_string("name", d.name);
        json_string("vendor", d.vendor);
        json_string("driver_version", d.driver_version);
        json_string("api_version", d.api_version);
        json_string("platform", d.platform);
        printf("\"vendor_id\": %" PRIu32 ", \"compute_units\": %" PRIu32
               ", \"global_mem_bytes\": %" PRIu64 ", \"max_alloc_bytes\": %" PRIu64
               ", \"max_binding_bytes\": %" PRIu64 ", \"local_mem_bytes\": %" PRIu64
               ", \"max_work_group_size\": %" PRIu32 ", \"subgroup_size\": %" PRIu32
               ", \"fp16_compute\": %d, \"fp16_storage\": %d, \"fp64\": %d"
               ", \"unified_memory\": %d}\n",
               d.vendor_id, d.compute_units, d.global_mem_bytes, d.max_alloc_bytes,
               d.max_binding_bytes, d.local_mem_bytes, d.max_work_group_size, d.subgroup_size,
               d.fp16_compute, d.fp16_storage, d.fp64, d.unified_memory);
    }
    return 0;
}

static int plan(const char *backend, const char *index, const char *dim, const char *tokens)
{
    attn_context_params p = ATTN_CONTEXT_PARAMS_INIT;
    p.backend = !strcmp(backend, "opencl")   ? ATTN_BACKEND_OPENCL
                : !strcmp(backend, "vulkan") ? ATTN_BACKEND_VULKAN
                                             : ATTN_BACKEND_REFERENCE;
    p.device_index = (uint32_t)strtoul(index, NULL, 10);
    attn_context *ctx = NULL;
    attn_plan *pl = NULL;
    attn_status s = attn_context_create(&p, &ctx);
    attn_stats st = {.struct_size = sizeof st};
    if (s == ATTN_OK)
        s = attn_context_get_stats(ctx, &st);
    if (s != ATTN_OK) {
        fprintf(stderr, "context: %s: %s\n", attn_status_name(s), attn_last_detail());
        return 1;
    }
    attn_desc d = ATTN_DESC_INIT;
    d.num_heads = 8;
    d.head_dim = strtoll(dim, NULL, 10);
    d.q_len = d.kv_len = strtoll(tokens, NULL, 10);
    d.causal = 1;
    attn_plan_info info = {.struct_size = sizeof info};
    s = attn_plan_create(ctx, &d, &pl);
    if (s == ATTN_OK)
        s = attn_plan_get_info(pl, &info);
    if (s != ATTN_OK) {
        printf("{\"ok\": false, \"status\": \"%s\", \"memory_budget\": %" PRIu64 "}\n",
               attn_status_name(s), st.memory_budget);
    } else {
        printf("{\"ok\": true, \"family\": %d, \"block_m\": %" PRIu32 ", \"block_n\": %" PRIu32
               ", \"vec_width\": %" PRIu32 ", \"work_group_size\": %" PRIu32 ", ",
               (int)info.family, info.block_m, info.block_n, info.vec_width,
               info.work_group_size);
        json_string("kernel", info.kernel);
        printf("\"device_bytes\": %" PRIu64 ", \"memory_budget\": %" PRIu64
               ", \"scheduled\": %d, \"segment_rows\": %" PRIu32 ", \"chunk_keys\": %" PRIu32
               ", \"min_device_bytes\": %" PRIu64 "}\n",
               info.device_bytes, st.memory_budget, info.scheduled, info.segment_rows,
               info.chunk_keys, info.min_device_bytes);
    }
    attn_plan_destroy(pl);
    attn_context_destroy(ctx);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "devices"))
        return devices();
    if (argc == 6 && !strcmp(argv[1], "plan"))
        return plan(argv[2], argv[3], argv[4], argv[5]);
    fprintf(stderr, "usage: probe_info devices | plan BACKEND INDEX DIM TOKENS\n");
    return 2;
}
