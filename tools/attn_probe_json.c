/* attn_probe_json.c — attn-probe --json: the report as one JSON document, written by a
 * small streaming writer (JSON has no inf or NaN: those become null). */
#include "attn_probe.h"
#include "tool_json.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>

/* A small streaming writer: it places commas and indentation; values are written whole. */
typedef struct jw {
    FILE *f;
    int depth;
    bool first[16];
} jw;

static void jw_key(jw *w, const char *key)
{
    if (!w->first[w->depth])
        fputc(',', w->f);
    w->first[w->depth] = false;
    if (w->depth > 0)
        fprintf(w->f, "\n%*s", 2 * w->depth, "");
    if (key) {
        tool_json_string(w->f, key);
        fputs(": ", w->f);
    }
}

static void jw_open(jw *w, const char *key, char c)
{
    jw_key(w, key);
    fputc(c, w->f);
    w->first[++w->depth] = true;
}

static void jw_close(jw *w, char c)
{
    bool empty = w->first[w->depth--];
    if (!empty)
        fprintf(w->f, "\n%*s", 2 * w->depth, "");
    fputc(c, w->f);
}

static void jw_string(jw *w, const char *key, const char *v)
{
    jw_key(w, key);
    if (v)
        tool_json_string(w->f, v);
    else
        fputs("null", w->f);
}

static void jw_u64(jw *w, const char *key, uint64_t v)
{
    jw_key(w, key);
    fprintf(w->f, "%" PRIu64, v);
}

static void jw_i64(jw *w, const char *key, int64_t v)
{
    jw_key(w, key);
    fprintf(w->f, "%" PRId64, v);
}

static void jw_num(jw *w, const char *key, double v)
{
    jw_key(w, key);
    if (isfinite(v))
        fprintf(w->f, "%.6g", v);
    else
        fputs("null", w->f); /* JSON has no inf or NaN */
}

static void jw_bool(jw *w, const char *key, bool v)
{
    jw_key(w, key);
    fputs(v ? "true" : "false", w->f);
}

static void jw_null(jw *w, const char *key)
{
    jw_key(w, key);
    fputs("null", w->f);
}

static void json_facts(jw *w, const probe_device *pd)
{
    const probe_facts *f = &pd->facts;
    const char *env = getenv("ATTN_KERNEL_FAMILY");
    jw_open(w, "attention", '{');
    jw_string(w, "error", f->ok ? NULL : f->error);
    jw_string(w, "family_override", env && *env ? env : NULL);
    if (f->ok) {
        jw_u64(w, "memory_budget_bytes", f->memory_budget);
        jw_open(w, "plans", '[');
        for (int k = 0; k < 2; k++) {
            const probe_plan_fact *p = &f->plans[k];
            jw_open(w, NULL, '{');
            jw_i64(w, "head_dim", p->head_dim);
            jw_string(w, "dtype", "f32");
            jw_string(w, "error", p->ok ? NULL : p->error);
            if (p->ok) {
                jw_string(w, "family", probe_family_word(p->info.family));
                jw_u64(w, "block_m", p->info.block_m);
                jw_u64(w, "block_n", p->info.block_n);
                jw_u64(w, "vec_width", p->info.vec_width);
                jw_u64(w, "work_group_size", p->info.work_group_size);
                jw_string(w, "kernel", p->info.kernel);
                jw_string(w, "tiles_from", probe_tune_source_word(p->info.tune_source));
                jw_num(w, "plan_ms", p->ms);
            }
            jw_close(w, '}');
        }
        jw_close(w, ']');
        jw_i64(w, "max_head_dim", f->max_head_dim);
        const probe_one_pass *op = &f->one_pass;
        jw_open(w, "one_pass", '{');
        jw_i64(w, "batch", 1);
        jw_i64(w, "heads", ONE_PASS_HEADS);
        jw_i64(w, "head_dim", ONE_PASS_DIM);
        jw_string(w, "dtype", "f32");
        jw_bool(w, "causal", true);
        jw_i64(w, "max_context", op->tokens);
        jw_u64(w, "device_bytes", op->device_bytes);
        jw_u64(w, "largest_tensor_bytes", op->largest_tensor);
        jw_string(w, "limited_by", op->limited_by);
        jw_close(w, '}');
        jw_i64(w, "one_pass_max_context", op->tokens);
    }
    if (f->ok && f->sched.known) {
        const probe_sched *sc = &f->sched;
        jw_i64(w, "scheduler_max_context", sc->max_tokens);
        jw_open(w, "scheduler", '{');
        jw_i64(w, "max_context", sc->max_tokens);
        jw_string(w, "limited_by", sc->limited_by);
        jw_string(w, "limit_detail", sc->note[0] ? sc->note : NULL);
        jw_u64(w, "segment_rows", sc->segment_rows);
        jw_u64(w, "chunk_keys", sc->chunk_keys);
        jw_u64(w, "min_device_bytes", sc->min_device_bytes);
        jw_close(w, '}');
    } else {
        jw_null(w, "scheduler_max_context"); /* no scheduler here */
        jw_null(w, "scheduler");
    }
    jw_null(w, "quirks");                /* not exposed by the API */
    jw_close(w, '}');
}

static void json_verify(jw *w, const verify_result *r)
{
    jw_open(w, "verify", '{');
    jw_bool(w, "pass", r->pass);
    jw_string(w, "family", probe_family_word(r->family));
    jw_u64(w, "problems", r->num_cases);
    jw_u64(w, "failed", r->num_failed);
    jw_num(w, "max_err", r->max_err);
    jw_num(w, "worst_fraction_of_tolerance", r->worst_of_tol);
    jw_open(w, "cases", '[');
    for (uint32_t k = 0; k < r->num_cases; k++) {
        const verify_case_result *c = &r->cases[k];
        jw_open(w, NULL, '{');
        jw_string(w, "name", c->name);
        jw_string(w, "shape", c->shape);
        jw_string(w, "oracle", c->oracle);
        jw_bool(w, "pass", c->pass);
        jw_string(w, "error", c->ran ? NULL : c->error);
        jw_num(w, "max_err", c->ran ? c->max_err : NAN);
        jw_num(w, "max_rel_err", c->ran ? c->worst_ratio : NAN);
        jw_num(w, "tolerance", c->tolerance);
        jw_u64(w, "nonfinite", c->nonfinite);
        jw_close(w, '}');
    }
    jw_close(w, ']');
    jw_close(w, '}');
}

static void json_bench(jw *w, const bench_result *r)
{
    jw_open(w, "bench", '{');
    jw_string(w, "skipped", r->ran ? NULL : r->skipped);
    for (int k = 0; r->ran && k < 2; k++) {
        const bench_shape_result *s = &r->shapes[k];
        jw_open(w, s->name, '{');
        jw_i64(w, "batch", s->batch);
        jw_i64(w, "heads", s->heads);
        jw_i64(w, "kv_heads", s->kv_heads);
        jw_i64(w, "q_len", s->q_len);
        jw_i64(w, "kv_len", s->kv_len);
        jw_i64(w, "head_dim", s->head_dim);
        jw_string(w, "dtype", "f32");
        jw_string(w, "error", s->ran ? NULL : s->error);
        jw_num(w, "plan_ms", s->ran ? s->plan_ms : NAN);
        jw_u64(w, "kernels_compiled", s->kernels_compiled);
        jw_u64(w, "disk_cache_hits", s->disk_cache_hits);
        jw_string(w, "kernel", s->ran ? s->kernel : NULL);
        jw_num(w, "ms_median", s->ran ? s->ms_median : NAN);
        jw_num(w, "gflop", s->gflop);
        jw_num(w, "gflops", s->ran ? s->gflops : NAN);
        jw_string(w, "family", s->ran ? probe_family_word(s->family) : NULL);
        jw_close(w, '}');
    }
    jw_close(w, '}');
}

static void json_device(jw *w, const probe_device *pd, bool verify, bool bench)
{
    const attn_device_info *i = &pd->info;
    jw_open(w, NULL, '{');
    jw_u64(w, "number", pd->number);
    jw_string(w, "backend", probe_backend_of(i->backend)->word);
    jw_u64(w, "backend_index", i->index);
    jw_string(w, "name", i->name);
    jw_string(w, "vendor", i->vendor);
    jw_u64(w, "vendor_id", i->vendor_id);
    jw_string(w, "platform", i->platform);
    jw_string(w, "driver_version", i->driver_version);
    jw_string(w, "api_version", i->api_version);
    jw_string(w, "type", probe_type_word(i->type));
    if (i->compute_units)
        jw_u64(w, "compute_units", i->compute_units);
    else
        jw_null(w, "compute_units"); /* the API's 0 = unknown (Vulkan GPUs) */
    jw_u64(w, "global_mem_bytes", i->global_mem_bytes);
    jw_u64(w, "max_alloc_bytes", i->max_alloc_bytes);
    jw_u64(w, "max_binding_bytes", i->max_binding_bytes);
    /* Not max_binding_bytes: on Vulkan libattn binds several windows of the limit. */
    jw_null(w, "max_storage_buffer_range"); /* not exposed by the API */
    jw_u64(w, "local_mem_bytes", i->local_mem_bytes);
    jw_u64(w, "max_work_group_size", i->max_work_group_size);
    if (i->subgroup_size) {
        jw_open(w, "subgroup_sizes", '[');
        jw_u64(w, NULL, i->subgroup_size);
        jw_close(w, ']');
    } else {
        jw_null(w, "subgroup_sizes");
    }
    jw_open(w, "subgroup_ops", '[');
    if (i->subgroup_ops & ATTN_SUBGROUP_VOTE)
        jw_string(w, NULL, "vote");
    if (i->subgroup_ops & ATTN_SUBGROUP_BALLOT)
        jw_string(w, NULL, "ballot");
    if (i->subgroup_ops & ATTN_SUBGROUP_SHUFFLE)
        jw_string(w, NULL, "shuffle");
    jw_close(w, ']');
    jw_bool(w, "fp16_compute", i->fp16_compute);
    jw_bool(w, "fp16_storage", i->fp16_storage);
    jw_bool(w, "fp64", i->fp64);
    jw_null(w, "integer_dot_product"); /* not exposed by the API */
    jw_null(w, "cooperative_matrix");  /* not exposed by the API */
    jw_bool(w, "unified_memory", i->unified_memory);
    if (pd->have_facts)
        json_facts(w, pd);
    else
        jw_null(w, "attention");
    if (verify)
        json_verify(w, &pd->verify);
    else
        jw_null(w, "verify");
    if (bench)
        json_bench(w, &pd->bench);
    else
        jw_null(w, "bench");
    jw_close(w, '}');
}

void probe_json_report(FILE *out, const probe_device *devs, uint32_t n, bool verify, bool bench,
                       bool verify_pass)
{
    jw w = {.f = out, .depth = 0, .first = {true}};
    uint32_t gpus = 0;
    for (uint32_t i = 0; i < n; i++)
        gpus += probe_is_gpu(&devs[i].info);
    jw_open(&w, NULL, '{');
    jw_string(&w, "tool", "attn-probe");
    jw_string(&w, "attn_version", attn_version_string());
    jw_open(&w, "backends", '[');
    for (size_t b = 0; b < PROBE_NUM_BACKENDS; b++) {
        uint32_t c = 0;
        attn_device_count(probe_backends[b].id, &c);
        jw_open(&w, NULL, '{');
        jw_string(&w, "name", probe_backends[b].word);
        jw_bool(&w, "built", probe_backends[b].built);
        jw_u64(&w, "device_count", c);
        jw_close(&w, '}');
    }
    jw_close(&w, ']');
    jw_u64(&w, "gpu_count", gpus);
    if (verify)
        jw_bool(&w, "verify_pass", verify_pass);
    else
        jw_null(&w, "verify_pass");
    jw_open(&w, "devices", '[');
    for (uint32_t i = 0; i < n; i++)
        json_device(&w, &devs[i], verify, bench);
    jw_close(&w, ']');
    jw_close(&w, '}');
    fputc('\n', out);
}
