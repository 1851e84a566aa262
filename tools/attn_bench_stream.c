/* attn_bench_stream.c — attn-bench --stream. Every segment carries the same inputs (the
 * stream's state still changes from segment to segment, so the work is the real one):
 * generating a million tokens of fresh input would measure the generator. What it
 * reports is what a long-context user asks of a stream: device memory that does not grow
 * with the sequence, and time that grows linearly. */
#include "attn_bench_stream.h"

#include <math.h>
#include <stdlib.h>

int bench_stream(const bench_opts *o)
{
    const int64_t seg = o->segment, H = o->heads, Hk = o->kv_heads;
    const int64_t D = o->head_dim, Dv = o->v_head_dim;
    const int64_t segments = (o->q_len + seg - 1) / seg;
    size_t nq, nk, nv, no;
    if (!bench_count4(o->batch, seg, H, D, &nq) || !bench_count4(o->batch, seg, Hk, D, &nk) ||
        !bench_count4(o->batch, seg, Hk, Dv, &nv) || !bench_count4(o->batch, seg, H, Dv, &no)) {
        fprintf(stderr, "attn-bench: the segment is too large for this machine\n");
        return EXIT_USAGE;
    }
    uint64_t rng = 0x5eed;
    void *q = bench_make_input(nq, o->dtype, &rng), *k = bench_make_input(nk, o->dtype, &rng);
    void *v = bench_make_input(nv, o->dtype, &rng), *out = bench_make_input(no, o->dtype, &rng);
    double *times = calloc((size_t)segments, sizeof *times);
    attn_context *ctx = NULL;
    attn_stream *st = NULL;
    int rc = 1;
    if (!q || !k || !v || !out || !times) {
        fprintf(stderr, "attn-bench: out of host memory\n");
        goto done;
    }
    attn_context_params cp = bench_context_params(o);
    attn_status s = attn_context_create(&cp, &ctx);
    if (s != ATTN_OK) {
        rc = bench_fail("attn_context_create", s);
        goto done;
    }
    attn_device_info dev = {.struct_size = sizeof dev};
    attn_context_device_info(ctx, &dev);
    attn_stream_params sp = ATTN_STREAM_PARAMS_INIT;
    sp.mode = o->stream_mode;
    sp.batch = o->batch;
    sp.num_heads = H;
    sp.num_kv_heads = Hk;
    sp.head_dim = D;
    sp.v_head_dim = Dv;
    sp.dtype = o->dtype;
    sp.mem_len = seg;
    if ((s = attn_stream_create(ctx, &sp, &st)) != ATTN_OK) {
        rc = bench_fail("attn_stream_create", s);
        goto done;
    }
    attn_stream_segment sg = ATTN_STREAM_SEGMENT_INIT;
    double total = 0;
    for (int64_t i = 0; i < segments; ++i) {
        const int64_t len = i + 1 < segments ? seg : o->q_len - i * seg;
        sg.q = attn_tensor_host(o->dtype, o->batch, len, H, D, q);
        sg.k = attn_tensor_host(o->dtype, o->batch, len, Hk, D, k);
        sg.v = attn_tensor_host(o->dtype, o->batch, len, Hk, Dv, v);
        sg.o = attn_tensor_host(o->dtype, o->batch, len, H, Dv, out);
        const double t0 = bench_now_ms();
        if ((s = attn_stream_push(st, &sg)) != ATTN_OK) {
            rc = bench_fail("attn_stream_push", s);
            goto done;
        }
        times[i] = bench_now_ms() - t0;
        total += times[i];
    }
    /* A finite output: a stream that lost its state would still run. */
    for (size_t i = 0; i < no; ++i)
        if (!isfinite(bench_element(out, o->dtype, i))) {
            fprintf(stderr, "attn-bench: non-finite output at element %zu\n", i);
            goto done;
        }
    attn_stats stats = {.struct_size = sizeof stats};
    attn_context_get_stats(ctx, &stats);
    const double first = times[0];
    const double med = bench_median(times, (size_t)segments);
    printf("attn-bench %s --stream\n", attn_version_string());
    printf("device:   %s (%s #%u)\n", dev.name,
           dev.backend == ATTN_BACKEND_OPENCL   ? "opencl"
           : dev.backend == ATTN_BACKEND_VULKAN ? "vulkan"
                                                : "reference",
           dev.index);
    printf("stream:   %s, batch %lld, heads %lld (kv %lld), head_dim %lld, %s, %lld tokens in "
           "%lld segments of %lld\n",
           o->stream_mode == ATTN_STREAM_COMPRESSIVE ? "compressive memory"
           : o->stream_mode == ATTN_STREAM_RECURRENCE ? "segment recurrence (mem_len = segment)"
                                                      : "memory tokens",
           (long long)o->batch, (long long)H, (long long)Hk, (long long)D,
           o->dtype == ATTN_DTYPE_F16 ? "f16" : "f32", (long long)o->q_len, (long long)segments,
           (long long)seg);
    printf("time:     %.1f ms in all; first segment %.1f ms (JIT included), median %.2f ms; "
           "%.0f tokens/s\n",
           total, first, med, (double)o->q_len / (total / 1e3));
    printf("memory:   peak device bytes %llu (%.1f MiB)\n",
           (unsigned long long)stats.peak_device_bytes, stats.peak_device_bytes / 1048576.0);
    rc = 0;
done:
    attn_stream_destroy(st);
    attn_context_destroy(ctx);
    free(q);
    free(k);
    free(v);
    free(out);
    free(times);
    return rc;
}
