/* attn_bench_ocl.c — attn-bench's OpenCL side: opening the library's OpenCL devices itself,
 * so that attn (through interop) and the baseline share one device, queue and data; and
 * the baseline, what one would write without attn: QKᵀ and PV as clBLAST batched GEMMs
 * around a softmax kernel, with the whole score matrix in device memory. */
#define CL_TARGET_OPENCL_VERSION 120

#include "attn_bench_ocl.h"
#include "attn_bench_util.h"

#include <attn/attn_opencl.h>

#ifdef ATTN_BENCH_CLBLAST_VERSION
#include <clblast_c.h>
#endif

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Softmax over score rows, and f16 <-> f32 copies for devices without cl_khr_fp16.
 * SCORES_F16 selects half storage of the scores (HGEMM); half is only ever loaded and
 * stored with vload_half/vstore_half, which need no extension. Rows are read as float8:
 * PoCL vectorises exp only on vector types (scalar exp made this kernel ~7x slower). */
static const char kernel_source[] =
    "#ifndef WG\n"
    "#define WG 64\n"
    "#endif\n"
    "#if SCORES_F16\n"
    "#define score_t half\n"
    "#define LOAD(p, i) vload_half((i), (p))\n"
    "#define STORE(x, p, i) vstore_half_rte((x), (i), (p))\n"
    "#define LOAD8(p, c) vload_half8((c), (p))\n"
    "#define STORE8(x, p, c) vstore_half8_rte((x), (c), (p))\n"
    "#else\n"
    "#define score_t float\n"
    "#define LOAD(p, i) ((p)[i])\n"
    "#define STORE(x, p, i) ((p)[i] = (x))\n"
    "#define LOAD8(p, c) vload8((c), (p))\n"
    "#define STORE8(x, p, c) vstore8((x), (c), (p))\n"
    "#endif\n"
    "\n"
    "static float group_reduce(__local float *red, float x, int take_max)\n"
    "{\n"
    "    const uint lid = get_local_id(0);\n"
    "    red[lid] = x;\n"
    "    barrier(CLK_LOCAL_MEM_FENCE);\n"
    "    for (uint n = WG / 2; n > 0; n >>= 1) {\n"
    "        if (lid < n)\n"
    "            red[lid] = take_max ? fmax(red[lid], red[lid + n]) : red[lid] + red[lid + n];\n"
    "        barrier(CLK_LOCAL_MEM_FENCE);\n"
    "    }\n"
    "    const float r = red[0];\n"
    "    barrier(CLK_LOCAL_MEM_FENCE); /* red is reused by the next reduction */\n"
    "    return r;\n"
    "}\n"
    "\n"
    "/* One work-group per row of a [rows, kv_len] score block: P = softmax(scale * S) in\n"
    " * place, the row's maximum subtracted before exp. Row r is query r % q_len, which the\n"
    " * causal mask (bottom-right, as attn aligns it) lets see keys j <= r % q_len + kv_len -\n"
    " * q_len; masked keys get 0, a row that sees no key is all zeros. scale > 0. */\n"
    "__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))\n"
    "void softmax_rows(__global score_t *s, uint q_len, uint kv_len, float scale, int causal)\n"
    "{\n"
    "    __local float red[WG];\n"
    "    const uint lid = get_local_id(0);\n"
    "    const size_t r = get_group_id(0);\n"
    "    __global score_t *row = s + r * kv_len;\n"
    "    long seen = kv_len;\n"
    "    if (causal)\n"
    "        seen = clamp((long)(r % q_len) + (long)kv_len - (long)q_len + 1, 0L, (long)kv_len);\n"
    "    /* Vectors only when kv_len is a multiple of 8, so every row starts on a vector:\n"
    "     * vload_half8 from a row that did not crashed PoCL 3.1. Else the scalar loops. */\n"
    "    const uint vec = kv_len % 8 == 0, see = (uint)seen, see8 = vec ? see / 8 : 0;\n"
    "\n"
    "    float8 m8 = (float8)(-INFINITY);\n"
    "    for (uint c = lid; c < see8; c += WG)\n"
    "        m8 = fmax(m8, LOAD8(row, c));\n"
    "    float m = fmax(fmax(fmax(m8.s0, m8.s1), fmax(m8.s2, m8.s3)),\n"
    "                   fmax(fmax(m8.s4, m8.s5), fmax(m8.s6, m8.s7)));\n"
    "    for (uint j = see8 * 8 + lid; j < see; j += WG)\n"
    "        m = fmax(m, LOAD(row, j));\n"
    "    m = group_reduce(red, m, 1) * scale;\n"
    "\n"
    "    float8 l8 = (float8)(0.0f);\n"
    "    for (uint c = lid; c < see8; c += WG) {\n"
    "        const float8 e = exp(LOAD8(row, c) * scale - m);\n"
    "        STORE8(e, row, c);\n"
    "        l8 += e;\n"
    "    }\n"
    "    float l = (l8.s0 + l8.s1) + (l8.s2 + l8.s3) + (l8.s4 + l8.s5) + (l8.s6 + l8.s7);\n"
    "    for (uint j = see8 * 8 + lid; j < see; j += WG) {\n"
    "        const float e = exp(LOAD(row, j) * scale - m);\n"
    "        STORE(e, row, j);\n"
    "        l += e;\n"
    "    }\n"
    "    l = group_reduce(red, l, 0);\n"
    "\n"
    "    const float inv = see ? 1.0f / l : 0.0f;\n"
    "    const int8 lane = (int8)(0, 1, 2, 3, 4, 5, 6, 7);\n"
    "    for (uint c = lid; c < (vec ? kv_len / 8 : 0); c += WG) {\n"
    "        const int8 j = (int8)(c * 8) + lane;\n"
    "        STORE8(select((float8)(0.0f), LOAD8(row, c) * inv, j < (int8)(see)), row, c);\n"
    "    }\n"
    "    for (uint j = (vec ? kv_len / 8 * 8 : 0) + lid; j < kv_len; j += WG)\n"
    "        STORE(j < see ? LOAD(row, j) * inv : 0.0f, row, j);\n"
    "}\n"
    "\n"
    "__kernel void half_to_float(__global const half *src, __global float *dst)\n"
    "{\n"
    "    const size_t i = get_global_id(0);\n"
    "    dst[i] = vload_half(i, src);\n"
    "}\n"
    "\n"
    "__kernel void float_to_half(__global const float *src, __global half *dst)\n"
    "{\n"
    "    const size_t i = get_global_id(0);\n"
    "    vstore_half_rte(src[i], i, dst);\n"
    "}\n";

struct bench_cl {
    cl_context context;
    cl_device_id device;
    cl_command_queue queue;
    char name[256];
    bool fp16;
    uint64_t max_alloc;
    size_t softmax_wg;
    cl_program program[2]; /* [SCORES_F16]; built on first use */
    cl_kernel softmax[2], to_f32, to_f16;
};

struct bench_cl_problem {
    bench_cl *cl;
    bench_shape s;
    size_t nq, nk, nv, no, esize;
    cl_mem q, k, v, o_attn, o_base;
    /* The baseline's GEMM decomposition: `entries` independent products of m query rows
     * (one head's q_len rows; with q_len 1, the heads sharing a kv head), `per_pass`
     * entries at a time so that one pass's scores fit one allocation. Made on first run. */
    bool ready, half, convert;
    size_t entries, m, per_pass, q_ld, k_ld, v_ld, o_ld;
    size_t *q_off, *k_off, *v_off, *o_off, *s_off;
    float *ones, *zeros;
    uint16_t *ones_h, *zeros_h;
    cl_mem scores, qf, kf, vf, of; /* f32 copies: f16 storage computed with SGEMM */
};

static int errf(char err[BENCH_ERR], const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, BENCH_ERR, fmt, ap);
    va_end(ap);
    return -1;
}

const char *bench_cl_baseline_missing(void)
{
#ifdef ATTN_BENCH_CLBLAST_VERSION
    return NULL;
#else
    return "attn-bench was built without clBLAST (libclblast-dev)";
#endif
}

const char *bench_cl_baseline_name(void)
{
#ifdef ATTN_BENCH_CLBLAST_VERSION
    return "clBLAST " ATTN_BENCH_CLBLAST_VERSION;
#else
    return "clBLAST (not built)";
#endif
}

/* ---- devices ---------------------------------------------------------------------------*/

/* Device `index` of the walk the library does (src/opencl: platforms in order, every
 * device type, a platform whose device query fails skipped), so indices agree. */
static int find_device(uint32_t index, cl_platform_id *platform, cl_device_id *device,
                       char err[BENCH_ERR])
{
    cl_uint num_platforms = 0;
    cl_int e = clGetPlatformIDs(0, NULL, &num_platforms);
    if (e != CL_SUCCESS || num_platforms == 0)
        return errf(err, "no OpenCL platform (clGetPlatformIDs: %d)", (int)e);
    cl_platform_id *platforms = malloc(num_platforms * sizeof *platforms);
    if (!platforms)
        return errf(err, "out of host memory");
    e = clGetPlatformIDs(num_platforms, platforms, &num_platforms);
    uint32_t first = 0;
    bool found = false;
    for (cl_uint p = 0; e == CL_SUCCESS && p < num_platforms && !found; p++) {
        cl_uint n = 0;
        if (clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, 0, NULL, &n) != CL_SUCCESS || !n)
            continue;
        if (index - first < n) {
            cl_device_id *devices = malloc(n * sizeof *devices);
            if (devices &&
                clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, n, devices, &n) == CL_SUCCESS &&
                index - first < n) {
                *platform = platforms[p];
                *device = devices[index - first];
                found = true;
            }
            free(devices);
            break;
        }
        first += n;
    }
    free(platforms);
    return found ? 0 : errf(err, "no OpenCL device %u", (unsigned)index);
}

int bench_cl_open(uint32_t index, bench_cl **out, char err[BENCH_ERR])
{
    *out = NULL;
    cl_platform_id platform = NULL;
    cl_device_id device = NULL;
    if (find_device(index, &platform, &device, err))
        return -1;
    bench_cl *cl = calloc(1, sizeof *cl);
    if (!cl)
        return errf(err, "out of host memory");
    cl->device = device;
    const cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)platform,
                                           0};
    cl_int e = CL_SUCCESS;
    cl->context = clCreateContext(props, 1, &device, NULL, NULL, &e);
    if (cl->context)
        cl->queue = clCreateCommandQueue(cl->context, device, 0, &e);
    if (!cl->queue) {
        bench_cl_close(cl);
        return errf(err, "OpenCL device %u: creating a context and queue failed (%d)",
                    (unsigned)index, (int)e);
    }

    size_t ext_size = 0;
    char *ext = NULL;
    if (clGetDeviceInfo(device, CL_DEVICE_EXTENSIONS, 0, NULL, &ext_size) == CL_SUCCESS)
        ext = calloc(ext_size + 1, 1);
    if (ext && clGetDeviceInfo(device, CL_DEVICE_EXTENSIONS, ext_size, ext, NULL) != CL_SUCCESS)
        ext[0] = '\0';
    cl_ulong max_alloc = 0;
    cl_device_type type = 0;
    size_t max_wg = 1;
    clGetDeviceInfo(device, CL_DEVICE_NAME, sizeof cl->name - 1, cl->name, NULL);
    clGetDeviceInfo(device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof max_alloc, &max_alloc, NULL);
    clGetDeviceInfo(device, CL_DEVICE_TYPE, sizeof type, &type, NULL);
    clGetDeviceInfo(device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof max_wg, &max_wg, NULL);
    /* Extensions are a space-separated list: match a whole name. */
    static const char fp16[] = "cl_khr_fp16";
    const size_t len = sizeof fp16 - 1;
    for (const char *x = ext ? strstr(ext, fp16) : NULL; x && !cl->fp16; x = strstr(x + 1, fp16))
        cl->fp16 = (x == ext || x[-1] == ' ') && (x[len] == '\0' || x[len] == ' ');
    free(ext);
    cl->max_alloc = max_alloc;
    /* A row per work-group. A CPU runs a work-group's items in one thread, one after
     * another between barriers: small groups are best there (PoCL, 8 x 1024 x 1024
     * scores: 16 ms with 4 items, 28 ms with 64); a GPU wants a full group. */
    size_t wg = type & CL_DEVICE_TYPE_CPU ? 4 : 256;
    while (wg > max_wg)
        wg /= 2;
    cl->softmax_wg = wg;
    *out = cl;
    return 0;
}

void bench_cl_close(bench_cl *cl)
{
    if (!cl)
        return;
    for (int i = 0; i < 2; i++) {
        if (cl->softmax[i])
            clReleaseKernel(cl->softmax[i]);
        if (cl->program[i])
            clReleaseProgram(cl->program[i]);
    }
    if (cl->to_f32)
        clReleaseKernel(cl->to_f32);
    if (cl->to_f16)
        clReleaseKernel(cl->to_f16);
    if (cl->queue)
        clReleaseCommandQueue(cl->queue);
    if (cl->context)
        clReleaseContext(cl->context);
    free(cl);
}

const char *bench_cl_device_name(const bench_cl *cl) { return cl->name; }

bool bench_cl_has_fp16(const bench_cl *cl) { return cl->fp16; }

const char *bench_cl_gemm_kind(const bench_cl *cl, attn_dtype dtype)
{
    if (dtype != ATTN_DTYPE_F16)
        return "SGEMM";
    return cl->fp16 ? "HGEMM" : "SGEMM on f32 copies";
}

attn_status bench_cl_attn_context(bench_cl *cl, const attn_context_params *params,
                                  attn_context **out)
{
    return attn_context_create_opencl(params, cl->context, cl->device, cl->queue, out);
}

/* Builds the softmax program for f32 or f16 scores (and, with f32, the conversions). */
static int build_program(bench_cl *cl, int f16, char err[BENCH_ERR])
{
    if (cl->softmax[f16])
        return 0;
    if (cl->program[f16])
        return errf(err, "the softmax kernel failed to build before");
    const char *src = kernel_source;
    cl_int e = CL_SUCCESS;
    cl->program[f16] = clCreateProgramWithSource(cl->context, 1, &src, NULL, &e);
    if (!cl->program[f16])
        return errf(err, "clCreateProgramWithSource failed (%d)", (int)e);
    char options[64];
    snprintf(options, sizeof options, "-DWG=%zu -DSCORES_F16=%d", cl->softmax_wg, f16);
    e = clBuildProgram(cl->program[f16], 1, &cl->device, options, NULL, NULL);
    if (e != CL_SUCCESS) {
        char log[BENCH_ERR - 64] = "";
        clGetProgramBuildInfo(cl->program[f16], cl->device, CL_PROGRAM_BUILD_LOG, sizeof log - 1,
                              log, NULL);
        return errf(err, "building the softmax kernel failed (%d): %s", (int)e, log);
    }
    cl->softmax[f16] = clCreateKernel(cl->program[f16], "softmax_rows", &e);
    if (!f16 && cl->softmax[f16]) {
        cl->to_f32 = clCreateKernel(cl->program[f16], "half_to_float", &e);
        cl->to_f16 = clCreateKernel(cl->program[f16], "float_to_half", &e);
    }
    if (!cl->softmax[f16] || (!f16 && (!cl->to_f32 || !cl->to_f16)))
        return errf(err, "clCreateKernel failed (%d)", (int)e);
    return 0;
}

/* ---- problems --------------------------------------------------------------------------*/

static cl_mem make_buffer(bench_cl *cl, size_t bytes, const void *init, char err[BENCH_ERR])
{
    cl_int e = CL_SUCCESS;
    cl_mem m = clCreateBuffer(cl->context, CL_MEM_READ_WRITE, bytes, NULL, &e);
    if (m && init)
        e = clEnqueueWriteBuffer(cl->queue, m, CL_TRUE, 0, bytes, init, 0, NULL, NULL);
    if (!m || e != CL_SUCCESS) {
        if (m)
            clReleaseMemObject(m);
        errf(err, "allocating %zu bytes on %s failed (%d)", bytes, cl->name, (int)e);
        return NULL;
    }
    return m;
}

int bench_cl_problem_create(bench_cl *cl, const bench_shape *shape, const void *q,
                            const void *k, const void *v, bench_cl_problem **out,
                            char err[BENCH_ERR])
{
    *out = NULL;
    bench_cl_problem *p = calloc(1, sizeof *p);
    if (!p)
        return errf(err, "out of host memory");
    const bench_shape *s = &p->s;
    p->cl = cl;
    p->s = *shape;
    p->esize = s->dtype == ATTN_DTYPE_F16 ? 2 : 4;
    if (!bench_count4(s->batch, s->q_len, s->heads, s->head_dim, &p->nq) ||
        !bench_count4(s->batch, s->kv_len, s->kv_heads, s->head_dim, &p->nk) ||
        !bench_count4(s->batch, s->kv_len, s->kv_heads, s->v_head_dim, &p->nv) ||
        !bench_count4(s->batch, s->q_len, s->heads, s->v_head_dim, &p->no)) {
        free(p);
        return errf(err, "the problem is too large for this machine's address space");
    }
    if (!(p->q = make_buffer(cl, p->nq * p->esize, q, err)) ||
        !(p->k = make_buffer(cl, p->nk * p->esize, k, err)) ||
        !(p->v = make_buffer(cl, p->nv * p->esize, v, err)) ||
        !(p->o_base = make_buffer(cl, p->no * p->esize, NULL, err))) {
        bench_cl_problem_free(p);
        return -1;
    }
    *out = p;
    return 0;
}

attn_status bench_cl_problem_wrap(bench_cl_problem *p, attn_context *ctx, attn_buffer **q_out,
                                  attn_buffer **k_out, attn_buffer **v_out, attn_buffer **o_out)
{
    *q_out = *k_out = *v_out = *o_out = NULL;
    if (!p->o_attn) {
        char err[BENCH_ERR];
        p->o_attn = make_buffer(p->cl, p->no * p->esize, NULL, err);
        if (!p->o_attn)
            return ATTN_ERROR_OUT_OF_DEVICE_MEMORY;
    }
    attn_status st = attn_buffer_wrap_opencl(ctx, p->q, q_out);
    if (st == ATTN_OK)
        st = attn_buffer_wrap_opencl(ctx, p->k, k_out);
    if (st == ATTN_OK)
        st = attn_buffer_wrap_opencl(ctx, p->v, v_out);
    if (st == ATTN_OK)
        st = attn_buffer_wrap_opencl(ctx, p->o_attn, o_out);
    if (st != ATTN_OK) {
        attn_buffer *made[4] = {*q_out, *k_out, *v_out, *o_out};
        for (int i = 0; i < 4; i++)
            attn_buffer_destroy(made[i]);
        *q_out = *k_out = *v_out = *o_out = NULL;
    }
    return st;
}

void bench_cl_problem_free(bench_cl_problem *p)
{
    if (!p)
        return;
    cl_mem mems[] = {p->q, p->k, p->v, p->o_attn, p->o_base, p->scores, p->qf, p->kf, p->vf, p->of};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (mems[i])
            clReleaseMemObject(mems[i]);
    free(p->q_off);
    free(p->k_off);
    free(p->v_off);
    free(p->o_off);
    free(p->s_off);
    free(p->ones);
    free(p->zeros);
    free(p->ones_h);
    free(p->zeros_h);
    free(p);
}

/* ---- the baseline ----------------------------------------------------------------------*/

/* Offsets (in elements) of every GEMM entry, the scratch, and the kernels. */
static int baseline_setup(bench_cl_problem *p, char err[BENCH_ERR])
{
    const bench_shape *s = &p->s;
    const size_t b = (size_t)s->batch, h = (size_t)s->heads, hk = (size_t)s->kv_heads;
    const size_t sq = (size_t)s->q_len, skv = (size_t)s->kv_len, group = h / hk;
    const size_t d = (size_t)s->head_dim, dv = (size_t)s->v_head_dim;
    p->half = s->dtype == ATTN_DTYPE_F16 && p->cl->fp16;
    p->convert = s->dtype == ATTN_DTYPE_F16 && !p->cl->fp16;
    if (build_program(p->cl, 0, err) || (p->half && build_program(p->cl, 1, err)))
        return -1;

    /* With q_len 1 the heads of a kv head are consecutive rows of Q and O, so one GEMM
     * reads each K/V once for all of them, as a decode baseline should. */
    const bool decode = sq == 1;
    p->entries = decode ? b * hk : b * h;
    p->m = decode ? group : sq;
    p->q_ld = decode ? d : h * d;
    p->o_ld = decode ? dv : h * dv;
    p->k_ld = hk * d;
    p->v_ld = hk * dv;
    const size_t ssize = p->half ? 2 : 4, block = p->m * skv * ssize;
    p->per_pass = block ? (size_t)(p->cl->max_alloc / block) : 0;
    if (p->per_pass == 0)
        return errf(err, "one %zu x %zu score block exceeds the device's largest allocation",
                    p->m, skv);
    if (p->per_pass > p->entries)
        p->per_pass = p->entries;

    const size_t n = p->entries;
    p->q_off = malloc(n * sizeof *p->q_off);
    p->k_off = malloc(n * sizeof *p->k_off);
    p->v_off = malloc(n * sizeof *p->v_off);
    p->o_off = malloc(n * sizeof *p->o_off);
    p->s_off = malloc(p->per_pass * sizeof *p->s_off);
    p->ones = malloc(p->per_pass * sizeof *p->ones);
    p->zeros = malloc(p->per_pass * sizeof *p->zeros);
    p->ones_h = malloc(p->per_pass * sizeof *p->ones_h);
    p->zeros_h = malloc(p->per_pass * sizeof *p->zeros_h);
    if (!p->q_off || !p->k_off || !p->v_off || !p->o_off || !p->s_off || !p->ones ||
        !p->zeros || !p->ones_h || !p->zeros_h)
        return errf(err, "out of host memory");
    for (size_t e = 0; e < n; e++) {
        /* decode: entry = (batch, kv head); else entry = (batch, head). */
        const size_t bi = decode ? e / hk : e / h, hi = decode ? (e % hk) * group : e % h;
        const size_t kh = hi / group;
        p->q_off[e] = bi * sq * h * d + hi * d;
        p->o_off[e] = bi * sq * h * dv + hi * dv;
        p->k_off[e] = bi * skv * hk * d + kh * d;
        p->v_off[e] = bi * skv * hk * dv + kh * dv;
    }
    for (size_t e = 0; e < p->per_pass; e++) {
        p->s_off[e] = e * p->m * skv;
        p->ones[e] = 1.0f;
        p->zeros[e] = 0.0f;
        p->ones_h[e] = bench_half_from_float(1.0f);
        p->zeros_h[e] = 0;
    }

    if (!(p->scores = make_buffer(p->cl, p->per_pass * block, NULL, err)))
        return -1;
    if (p->convert && (!(p->qf = make_buffer(p->cl, p->nq * 4, NULL, err)) ||
                       !(p->kf = make_buffer(p->cl, p->nk * 4, NULL, err)) ||
                       !(p->vf = make_buffer(p->cl, p->nv * 4, NULL, err)) ||
                       !(p->of = make_buffer(p->cl, p->no * 4, NULL, err))))
        return -1;
    p->ready = true;
    return 0;
}

/* count row-major products C = A · B (B transposed for QKᵀ), alpha 1, beta 0. */
static int gemm(bench_cl_problem *p, bool trans_b, size_t m, size_t n, size_t k, cl_mem a,
                const size_t *a_off, size_t a_ld, cl_mem b, const size_t *b_off, size_t b_ld,
                cl_mem c, const size_t *c_off, size_t c_ld, size_t count, char err[BENCH_ERR])
{
#ifdef ATTN_BENCH_CLBLAST_VERSION
    const CLBlastTranspose tb = trans_b ? CLBlastTransposeYes : CLBlastTransposeNo;
    CLBlastStatusCode st =
        p->half ? CLBlastHgemmBatched(CLBlastLayoutRowMajor, CLBlastTransposeNo, tb, m, n, k,
                                      p->ones_h, a, a_off, a_ld, b, b_off, b_ld, p->zeros_h, c,
                                      c_off, c_ld, count, &p->cl->queue, NULL)
                : CLBlastSgemmBatched(CLBlastLayoutRowMajor, CLBlastTransposeNo, tb, m, n, k,
                                      p->ones, a, a_off, a_ld, b, b_off, b_ld, p->zeros, c,
                                      c_off, c_ld, count, &p->cl->queue, NULL);
    if (st != CLBlastSuccess)
        return errf(err, "CLBlast%cgemmBatched (%zu x %zu x %zu, %zu entries) failed: status %d",
                    p->half ? 'H' : 'S', m, n, k, count, (int)st);
    return 0;
#else
    (void)p, (void)trans_b, (void)m, (void)n, (void)k, (void)a, (void)a_off, (void)a_ld;
    (void)b, (void)b_off, (void)b_ld, (void)c, (void)c_off, (void)c_ld, (void)count;
    return errf(err, "%s", bench_cl_baseline_missing());
#endif
}

/* Waits for the queue; adds the time since *t0 to *acc and restarts *t0. */
static int finish(bench_cl_problem *p, double *t0, double *acc, char err[BENCH_ERR])
{
    cl_int e = clFinish(p->cl->queue);
    double t = bench_now_ms();
    *acc += t - *t0;
    *t0 = t;
    return e == CL_SUCCESS ? 0 : errf(err, "clFinish failed (%d)", (int)e);
}

static int convert(bench_cl_problem *p, cl_kernel k, cl_mem src, cl_mem dst, size_t n,
                   char err[BENCH_ERR])
{
    cl_int e = clSetKernelArg(k, 0, sizeof src, &src);
    e |= clSetKernelArg(k, 1, sizeof dst, &dst);
    if (e == CL_SUCCESS)
        e = clEnqueueNDRangeKernel(p->cl->queue, k, 1, NULL, &n, NULL, 0, NULL, NULL);
    return e == CL_SUCCESS ? 0 : errf(err, "the f16 conversion kernel failed (%d)", (int)e);
}

int bench_cl_baseline_run(bench_cl_problem *p, bench_base_times *t, char err[BENCH_ERR])
{
    *t = (bench_base_times){0};
    if (bench_cl_baseline_missing())
        return errf(err, "%s", bench_cl_baseline_missing());
    if (!p->ready && baseline_setup(p, err))
        return -1;
    const bench_shape *s = &p->s;
    bench_cl *cl = p->cl;
    cl_mem q = p->convert ? p->qf : p->q, k = p->convert ? p->kf : p->k;
    cl_mem v = p->convert ? p->vf : p->v, o = p->convert ? p->of : p->o_base;
    const size_t d = (size_t)s->head_dim, dv = (size_t)s->v_head_dim, skv = (size_t)s->kv_len;

    double t0 = bench_now_ms();
    if (p->convert) {
        if (convert(p, cl->to_f32, p->q, q, p->nq, err) ||
            convert(p, cl->to_f32, p->k, k, p->nk, err) ||
            convert(p, cl->to_f32, p->v, v, p->nv, err) || finish(p, &t0, &t->convert_ms, err))
            return -1;
    }
    cl_kernel sm = cl->softmax[p->half];
    const cl_uint q_len = (cl_uint)s->q_len, kv_len = (cl_uint)s->kv_len;
    const float scale = 1.0f / sqrtf((float)s->head_dim);
    const cl_int causal = s->causal;
    for (size_t e0 = 0; e0 < p->entries; e0 += p->per_pass) {
        const size_t n = p->entries - e0 < p->per_pass ? p->entries - e0 : p->per_pass;
        if (gemm(p, true, p->m, skv, d, q, p->q_off + e0, p->q_ld, k, p->k_off + e0, p->k_ld,
                 p->scores, p->s_off, skv, n, err) ||
            finish(p, &t0, &t->qk_ms, err))
            return -1;
        const size_t local = cl->softmax_wg, global = n * p->m * local;
        cl_int e = clSetKernelArg(sm, 0, sizeof p->scores, &p->scores);
        e |= clSetKernelArg(sm, 1, sizeof q_len, &q_len);
        e |= clSetKernelArg(sm, 2, sizeof kv_len, &kv_len);
        e |= clSetKernelArg(sm, 3, sizeof scale, &scale);
        e |= clSetKernelArg(sm, 4, sizeof causal, &causal);
        if (e == CL_SUCCESS)
            e = clEnqueueNDRangeKernel(cl->queue, sm, 1, NULL, &global, &local, 0, NULL, NULL);
        if (e != CL_SUCCESS)
            return errf(err, "the softmax kernel failed (%d)", (int)e);
        if (finish(p, &t0, &t->softmax_ms, err) ||
            gemm(p, false, p->m, dv, skv, p->scores, p->s_off, skv, v, p->v_off + e0, p->v_ld, o,
                 p->o_off + e0, p->o_ld, n, err) ||
            finish(p, &t0, &t->pv_ms, err))
            return -1;
    }
    if (p->convert &&
        (convert(p, cl->to_f16, o, p->o_base, p->no, err) || finish(p, &t0, &t->convert_ms, err)))
        return -1;
    t->total_ms = t->convert_ms + t->qk_ms + t->softmax_ms + t->pv_ms;
    return 0;
}

int bench_cl_baseline_read(bench_cl_problem *p, void *dst, char err[BENCH_ERR])
{
    cl_int e = clEnqueueReadBuffer(p->cl->queue, p->o_base, CL_TRUE, 0, p->no * p->esize, dst, 0,
                                   NULL, NULL);
    return e == CL_SUCCESS ? 0 : errf(err, "reading the baseline's output failed (%d)", (int)e);
}
