/* attn_bench_startup.h — attn-bench --startup: the time to create a context and a plan,
 * cold (empty caches) and warm (cache hits), each measured in a fresh process. */
#ifndef ATTN_BENCH_STARTUP_H
#define ATTN_BENCH_STARTUP_H

#include "attn_bench_util.h"

/* Measures every device o->backend / o->device select, o->trials times each, by running
 * this program (argv0 where /proc/self/exe is missing) with --startup-child. Returns the
 * exit status. */
int bench_startup(const bench_opts *o, const char *argv0);

/* The child's side: creates the context and the plan of the problem in o once, runs it
 * once, and prints one line for the parent. Returns the exit status. */
int bench_startup_child(const bench_opts *o);

#endif
