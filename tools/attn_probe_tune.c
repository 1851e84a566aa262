/* attn_probe_tune.c — attn-probe --tune: runs the library's autotuner (attn_context_tune)
 * on a device and prints every candidate it tried (best time, GFLOP/s, compile time,
 * error against the built-in choice, chosen or why not) and where the rows were written. */
#include "attn_probe.h"

#include <inttypes.h>
#include <string.h>

const char *probe_tune_source_word(uint32_t source)
{
    switch (source) {
    case ATTN_TUNE_DEFAULT: return "built-in";
    case ATTN_TUNE_OVERLAY: return "overlay";
    case ATTN_TUNE_DEVICE: return "device row";
    case ATTN_TUNE_VENDOR: return "vendor row";
    default: return "search";
    }
}

static const char *outcome_word(const attn_tune_candidate *c)
{
    switch (c->outcome) {
    case ATTN_TUNE_TIMED: return "";
    case ATTN_TUNE_REJECTED: return "REJECTED: ";
    case ATTN_TUNE_FAILED: return "failed: ";
    default: return "skipped: ";
    }
}

static void print_group(void *user, const attn_tune_group *g)
{
    FILE *f = user;
    fprintf(f, "  %s, %s\n", g->decode ? "decode splits" : g->family == ATTN_FAMILY_GPU ? "gpu family" : "cpu family",
            g->problem);
    if (g->skipped[0] && g->num_candidates <= 1) {
        fprintf(f, "    not tuned: %s\n", g->skipped);
        return;
    }
    fprintf(f, "    %-34s %9s %9s %8s %11s %9s\n", "candidate", "ms", "GFLOP/s", "vs b-in",
            "compile ms", "max err");
    for (uint32_t i = 0; i < g->num_candidates; i++) {
        const attn_tune_candidate *c = &g->candidates[i];
        char name[80];
        snprintf(name, sizeof name, "%s%s", c->values, c->is_default ? " (built-in)" : "");
        if (c->outcome == ATTN_TUNE_TIMED)
            fprintf(f, "    %-34s %9.2f %9.2f %8.2f %8.0f%-3s %9.1e %s\n", name, c->ms, c->gflops,
                    c->vs_builtin, c->compile_ms, c->compiled ? "" : " c", c->max_err,
                    (int32_t)i == g->winner ? "chosen" : "");
        else if (c->outcome == ATTN_TUNE_SKIPPED)
            fprintf(f, "    %-34s %s%s\n", name, outcome_word(c), c->note);
        else
            fprintf(f, "    %-34s %9s %9s %8s %8.0f%-3s %9.1e %s%s\n", name, "-", "-", "-",
                    c->compile_ms, c->compiled ? "" : " c", c->max_err, outcome_word(c), c->note);
    }
    if (g->skipped[0])
        fprintf(f, "    not tuned: %s\n", g->skipped);
}

int probe_tune(attn_backend backend, uint32_t index, const probe_tune_opts *o)
{
    attn_context_params cp = ATTN_CONTEXT_PARAMS_INIT;
    cp.backend = backend;
    cp.device_index = index;
    attn_context *ctx = NULL;
    attn_status s = attn_context_create(&cp, &ctx);
    if (s != ATTN_OK) {
        printf("  tune: no context: %s: %s\n", attn_status_name(s), attn_last_detail());
        return 1;
    }
    attn_tune_params tp = ATTN_TUNE_PARAMS_INIT;
    tp.head_dims = o->head_dims;
    tp.dtypes = o->dtypes;
    tp.decode = o->decode;
    tp.tokens = o->tokens;
    tp.time_budget_s = o->seconds;
    tp.store = o->store;
    tp.report = print_group;
    tp.report_user = stdout;
    printf("  tune (time budget %.0f s). ms: best of 3-15 interleaved runs; vs b-in: median time\n"
           "  ratio to the built-in choice in the same rounds (a winner needs <= 0.95 and a better\n"
           "  best run); compile ms: plan creation + first-run excess, 'c': kernel from a cache\n",
           tp.time_budget_s > 0 ? tp.time_budget_s : 300.0);
    fflush(stdout);
    attn_tune_result r = {.struct_size = sizeof r};
    s = attn_context_tune(ctx, &tp, &r);
    printf("  => %" PRIu32 " groups tuned, %" PRIu32 " skipped; candidates: %" PRIu32
           " timed, %" PRIu32 " rejected, %" PRIu32 " failed, %" PRIu32 " skipped; %.1f s\n",
           r.groups_tuned, r.groups_skipped, r.candidates_timed, r.candidates_rejected,
           r.candidates_failed, r.candidates_skipped, r.seconds);
    if (r.rows_stored)
        printf("  => %" PRIu32 " rows written to %s\n", r.rows_stored, r.db_path);
    else
        printf("  => no rows written: %s\n", r.store_note);
    if (s != ATTN_OK)
        printf("  => %s: %s\n", attn_status_name(s), attn_context_detail(ctx));
    attn_context_destroy(ctx);
    return s != ATTN_OK || r.candidates_rejected > 0;
}
