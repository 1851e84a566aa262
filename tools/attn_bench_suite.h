/* attn_bench_suite.h — attn-bench --suite: a fixed set of prefill and decode problems on
 * every device, each against a clBLAST GEMM + softmax baseline timed in the same run. */
#ifndef ATTN_BENCH_SUITE_H
#define ATTN_BENCH_SUITE_H

#include "attn_bench_util.h"

/* Runs the suite on the devices o->backend / o->device select; prints a table per device
 * (or JSON). Returns the exit status: 1 if a row failed, 0 otherwise. */
int bench_suite(const bench_opts *o);

#endif
