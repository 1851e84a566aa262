/* attn_bench_ocl.h — attn-bench's own OpenCL side: devices in the library's order, one
 * context and queue per device that attn shares (interop), and the baseline the suite
 * compares against: QKᵀ and PV as clBLAST batched GEMMs around a softmax kernel. */
#ifndef ATTN_BENCH_OCL_H
#define ATTN_BENCH_OCL_H

#include <attn/attn.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BENCH_ERR 320 /* room for a failing call and its status */

/* One attention problem, Q/O [batch, q_len, heads, d], K/V [batch, kv_len, kv_heads, d]. */
typedef struct bench_shape {
    int64_t batch, heads, kv_heads, q_len, kv_len, head_dim, v_head_dim;
    attn_dtype dtype;
    bool causal;
} bench_shape;

/* One OpenCL device, opened by the tool. */
typedef struct bench_cl bench_cl;
/* One problem's Q, K, V and outputs on a bench_cl, and the baseline's scratch. */
typedef struct bench_cl_problem bench_cl_problem;

/* One baseline run, each stage finished before the next starts. */
typedef struct bench_base_times {
    double convert_ms; /* f16 storage without HGEMM: Q/K/V to f32 and O back */
    double qk_ms, softmax_ms, pv_ms;
    double total_ms;
} bench_base_times;

/* NULL when this build can run the baseline, else why not. */
const char *bench_cl_baseline_missing(void);
/* "clBLAST 1.5.3"; only meaningful when the baseline is built. */
const char *bench_cl_baseline_name(void);

/* OpenCL device `index` in the library's numbering (platforms in order, every device
 * type), with its own context and in-order queue. 0, or -1 with *err filled. */
int bench_cl_open(uint32_t index, bench_cl **out, char err[BENCH_ERR]);
/* Accepts NULL. */
void bench_cl_close(bench_cl *cl);
const char *bench_cl_device_name(const bench_cl *cl);
/* The device does arithmetic in half precision (cl_khr_fp16): the baseline uses HGEMM. */
bool bench_cl_has_fp16(const bench_cl *cl);
/* How the baseline computes rows of this dtype on this device, for the output. */
const char *bench_cl_gemm_kind(const bench_cl *cl, attn_dtype dtype);

/* An attn context in the device's own context and queue. */
attn_status bench_cl_attn_context(bench_cl *cl, const attn_context_params *params,
                                  attn_context **out);

/* Uploads Q, K, V (host, dense, the shape's dtype). 0, or -1 with *err filled. */
int bench_cl_problem_create(bench_cl *cl, const bench_shape *shape, const void *q,
                            const void *k, const void *v, bench_cl_problem **out,
                            char err[BENCH_ERR]);
/* Q, K, V and an output for attn, as buffers of ctx (an interop context of the same
 * device): attn and the baseline read the same memory. Destroy them before ctx. */
attn_status bench_cl_problem_wrap(bench_cl_problem *p, attn_context *ctx, attn_buffer **q_out,
                                  attn_buffer **k_out, attn_buffer **v_out, attn_buffer **o_out);
/* One run of the baseline. 0, or -1 with *err filled. */
int bench_cl_baseline_run(bench_cl_problem *p, bench_base_times *t, char err[BENCH_ERR]);
/* The baseline's output, dense in the shape's dtype. 0, or -1 with *err filled. */
int bench_cl_baseline_read(bench_cl_problem *p, void *dst, char err[BENCH_ERR]);
/* Accepts NULL. */
void bench_cl_problem_free(bench_cl_problem *p);

#endif
