/* sparse.h — what the device kernels need of a plan's patterns, positions and logit
 * transforms (issue 6), built on the host into one word array, the "aux" buffer:
 *
 *   tile map   per (batch, head) a map id; per (map, query block of QB rows) the runs of
 *              16-key tiles that block computes, in ascending key order. A run is three
 *              words {first tile, tile count, bits}: bits < 0 for tiles every row of the
 *              block sees whole (only padding and causality left to check, which the map
 *              already folded in), else the word offset of a partial tile's visibility:
 *              QB rows x 16 bits, two rows per word (row r: word r / 2, bit 16 (r % 2) + t).
 *              Tiles no row sees are in no run: never loaded, never computed.
 *   ALiBi      per head, slope · log2 e.
 *   T5         per head, the bias · log2 e of relative positions r = j - pos(i) in
 *              [-T, T] (T = t5_max: beyond it the bucket no longer changes).
 *   sinks      per head, sink · log2 e.
 *   RoPE       (cos, sin) per (row, pair) for the query rows, then for the keys, computed
 *              in double (float angles lose the position's low bits at long contexts).
 *
 * Floats are stored as their bits. Kernels find every part through attn_params (the a_*
 * offsets); their defines SPARSE and POS_FLAGS say which parts exist. */
#ifndef ATTN_CORE_SPARSE_H
#define ATTN_CORE_SPARSE_H

#include "core/kernels.h"
#include "core/plan.h"

#define ATTN__TILE_KEYS 16 /* keys per tile of the map */

enum {
    ATTN__POS_ALIBI = 1,
    ATTN__POS_T5 = 2,
    ATTN__POS_SOFTCAP = 4,
    ATTN__POS_SINKS = 8,
    ATTN__POS_ROPE = 16
};

typedef struct attn__aux {
    int32_t *words;
    uint64_t count;
    int64_t a_maps, a_ptr, a_runs, a_alibi, a_t5, a_sinks, a_rope_q, a_rope_k;
    int64_t nqb, qb, t5_max, rope_pairs;
    uint64_t tiles_computed, tiles_total; /* over every (batch, head), tiles of QB x 16 */
    uint64_t max_row_tiles;               /* the most tiles one query block computes */
    int32_t *lens;                        /* the key lengths it was built for (batch) */
    uint64_t gen;                         /* counts builds: a new build is uploaded again */
} attn__aux;

/* The POS_FLAGS define of a problem (0 without features). */
int attn__pos_flags(const attn__problem *p);
/* Whether the problem has a pattern with some part on (the SPARSE define). */
int attn__sparse_on(const attn__problem *p);

/* Builds (or keeps, when the key lengths are those it was built for) the aux words of
 * a plan for query blocks of qb rows. kv_lens may be NULL. */
attn_status attn__aux_build(attn_plan *plan, const int32_t *kv_lens, int64_t qb, attn__aux *aux);
void attn__aux_free(attn__aux *aux);
/* Sets the a_* and feature fields of launch parameters. */
void attn__aux_params(const attn_plan *plan, const attn__aux *aux, attn__kparams *kp);
/* Whether some head in [h0, h0 + nh) of batch b, rows [i0, i0 + sm), sees a key in
 * [j0, j0 + cn) (always 1 without a tile map). */
int attn__aux_needs(const attn__aux *aux, const attn__problem *p, int64_t b, int64_t h0,
                    int64_t nh, int64_t i0, int64_t sm, int64_t j0, int64_t cn);

#endif
