/* attn_bench_ocl_none.c — attn-bench's OpenCL side in a build without OpenCL: no device
 * opens, so the suite runs Vulkan devices only and says the baseline is unavailable. */
#include "attn_bench_ocl.h"

#include <stdio.h>

const char *bench_cl_baseline_missing(void)
{
    return "attn-bench was built without OpenCL, which clBLAST needs";
}

const char *bench_cl_baseline_name(void) { return "clBLAST (not built)"; }

int bench_cl_open(uint32_t index, bench_cl **out, char err[BENCH_ERR])
{
    (void)index;
    *out = NULL;
    snprintf(err, BENCH_ERR, "%s", bench_cl_baseline_missing());
    return -1;
}

/* Nothing below is reached without an opened device; they exist for the linker. */
void bench_cl_close(bench_cl *cl) { (void)cl; }
const char *bench_cl_device_name(const bench_cl *cl) { (void)cl; return ""; }
bool bench_cl_has_fp16(const bench_cl *cl) { (void)cl; return false; }
const char *bench_cl_gemm_kind(const bench_cl *cl, attn_dtype dtype)
{
    (void)cl, (void)dtype;
    return "";
}

attn_status bench_cl_attn_context(bench_cl *cl, const attn_context_params *params,
                                  attn_context **out)
{
    (void)cl, (void)params, (void)out;
    return ATTN_ERROR_UNSUPPORTED;
}

int bench_cl_problem_create(bench_cl *cl, const bench_shape *shape, const void *q,
                            const void *k, const void *v, bench_cl_problem **out,
                            char err[BENCH_ERR])
{
    (void)cl, (void)shape, (void)q, (void)k, (void)v;
    *out = NULL;
    snprintf(err, BENCH_ERR, "%s", bench_cl_baseline_missing());
    return -1;
}

attn_status bench_cl_problem_wrap(bench_cl_problem *p, attn_context *ctx, attn_buffer **q_out,
                                  attn_buffer **k_out, attn_buffer **v_out, attn_buffer **o_out)
{
    (void)p, (void)ctx;
    *q_out = *k_out = *v_out = *o_out = NULL;
    return ATTN_ERROR_UNSUPPORTED;
}

int bench_cl_baseline_run(bench_cl_problem *p, bench_base_times *t, char err[BENCH_ERR])
{
    (void)p;
    *t = (bench_base_times){0};
    snprintf(err, BENCH_ERR, "%s", bench_cl_baseline_missing());
    return -1;
}

int bench_cl_baseline_read(bench_cl_problem *p, void *dst, char err[BENCH_ERR])
{
    (void)p, (void)dst;
    snprintf(err, BENCH_ERR, "%s", bench_cl_baseline_missing());
    return -1;
}

void bench_cl_problem_free(bench_cl_problem *p) { (void)p; }
