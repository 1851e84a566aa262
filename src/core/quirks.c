/* quirks.c — the one table of driver quirks (STYLE.md: named booleans set in one place,
 * each with the device/driver and the reason; never vendor-string checks elsewhere).
 * A row matches on backend, PCI vendor id and the driver's name as the backend reports it
 * in attn_device_info.platform (Vulkan: VkPhysicalDeviceDriverProperties::driverName),
 * compared whole, never as a substring. 0 / NULL fields match anything. */
#include <string.h>

#include "core/quirks.h"

typedef struct quirk_row {
    attn_backend backend;
    uint32_t vendor_id;
    const char *driver; /* exact attn_device_info.platform, or NULL */
    attn__quirks set;
} quirk_row;

static const quirk_row quirk_table[] = {
    /* MoltenVK on AMD GPUs (macOS): subgroup operations are advertised for compute but
     * have been reported to give wrong results on some MoltenVK/AMD stacks (they become
     * Metal SIMD-group functions, and divergent control flow is where they go wrong); the
     * GPU-class kernel takes its path without them. */
    {.backend = ATTN_BACKEND_VULKAN, .vendor_id = 0x1002, .driver = "MoltenVK",
     .set = {.no_subgroup_ops = 1}},
    /* llvmpipe (Mesa's CPU Vulkan driver; seen on Mesa 22.3): gallivm guards every shader
     * against endless loops with one counter per invocation (LP_MAX_TGSI_LOOP_ITERATIONS,
     * 65535) that all its non-unrolled loops count down; at 0 they exit silently, so a
     * long key range in one invocation yields wrong output, no error. Consumed by the
     * scheduler (keys_cap in schedule.c: keys per launch from each shader's loop
     * structure, chunks merged exactly), by plan_decode (keys per split) and by the
     * compressive stream (long segments folded into the memory in parts). */
    {.backend = ATTN_BACKEND_VULKAN, .vendor_id = 0x10005, .driver = "llvmpipe",
     .set = {.max_loop_iterations = 65535}},
};

attn__quirks attn__quirks_of(const attn_device_info *info)
{
    attn__quirks q;
    memset(&q, 0, sizeof q);
    for (size_t i = 0; i < sizeof quirk_table / sizeof quirk_table[0]; ++i) {
        const quirk_row *r = &quirk_table[i];
        if ((r->backend && r->backend != info->backend) ||
            (r->vendor_id && r->vendor_id != info->vendor_id) ||
            (r->driver && strcmp(r->driver, info->platform) != 0))
            continue;
        q.no_subgroup_ops |= r->set.no_subgroup_ops;
        if (r->set.max_loop_iterations)
            q.max_loop_iterations = r->set.max_loop_iterations;
    }
    return q;
}
