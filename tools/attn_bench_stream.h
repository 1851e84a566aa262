/* attn_bench_stream.h — attn-bench --stream: a long sequence pushed segment by segment
 * through a recurrent-memory stream (attn_stream_*), timed per segment. */
#ifndef ATTN_BENCH_STREAM_H
#define ATTN_BENCH_STREAM_H

#include "attn_bench_util.h"

/* Pushes o->q_len tokens in segments of o->segment tokens through a stream of mode
 * o->stream_mode on the selected device; prints the time, the rate and the peak device
 * memory. Returns the exit status. */
int bench_stream(const bench_opts *o);

#endif
