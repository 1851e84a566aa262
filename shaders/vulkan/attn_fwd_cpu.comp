#version 450
/* attn_fwd_cpu.comp — forward attention for CPU-class Vulkan devices (llvmpipe and other
 * drivers that run a subgroup as the lanes of one CPU vector).
 *
 * Why this shape: such a driver gives every invocation one lane of a SIMD register, and
 * a load from a storage buffer or from shared memory costs a loop over the lanes (Mesa
 * 22.3's llvmpipe: one scalar load, insert and branch per lane), whether or not the
 * address is the same in every lane. Arithmetic between registers, on the other hand, is
 * one vector instruction for all lanes, and moving one lane's value to all of them
 * (subgroupShuffle) costs a few. So loads must be few and useful in every lane, and each
 * shuffled value must feed several FMAs:
 *   - a subgroup of SG invocations owns BLOCK_M = SG * ROWS query rows of one (batch,
 *     head): lane t holds rows i0 + t + r * SG (r < ROWS), their Q rows and O
 *     accumulators in registers;
 *   - keys go in blocks of KB = SG * KPL: lane t loads the K rows (and later the V rows)
 *     of keys j0 + t + k * SG (k < KPL) as vec4s from the packed copy (attn_pack_kv.comp)
 *     or where they are; every lane then takes key k * SG + t's values from lane t by
 *     shuffle, and each shuffled vec4 serves the lane's ROWS rows;
 *   - scores, softmax and the O update stay in each lane: no reductions across lanes.
 * Measured on llvmpipe (8 heads, 2048 tokens, d=64): subgroupBroadcast costs ~5x a
 * subgroupShuffle there, hence the shuffle with a lane index.
 * With UNROLL_D 1 the head-dim loops are unrolled, so the Q rows and the accumulators are
 * registers, not per-lane memory, and the only loop left per invocation is the one over
 * key blocks (llvmpipe's 65535-iteration cap allows KB * 65535 keys per launch). The
 * driver's compile time grows steeply with the unrolled code, so for larger head dims the
 * planner unrolls only O's loops (UNROLL_D 2: Q lives in per-lane memory, as 64-bit
 * words), and beyond that none (UNROLL_D 0: Q and O in per-lane memory, slower to run but
 * quick to compile). Online softmax in base 2 (FlashAttention recurrence), one rescale
 * per block.
 * KPL (keys per lane and block) spreads what a block pays once over more keys: with Q in
 * per-lane memory (UNROLL_D 2, 0) the score loop reads Q once per block, lane by lane,
 * and O's rescale (UNROLL_D 0: O's reads and writes too) is once per block. perf on
 * llvmpipe, d=128: in the score loop of one block of 8 keys, 512 of 1750 instructions
 * were arithmetic and ~30% of its samples went to reading Q. 8 heads x 4096 tokens: d=128
 * 1165 ms with KPL 2 and 1110 with 4 against 1450 with 1; d=256 (8 x 1024) 168 and 145
 * against 211 ms. Unrolled (UNROLL_D 1) KPL 2 gained 4% at d=64 for 1 s more compile.
 * KB must not straddle a tile map's 16-key tiles, so KPL is 1 with SPARSE.
 * Issue 6 (attn_features.glsl): with a tile map the key blocks come from the runs of
 * 16-key tiles the group's query block computes (a tile is one or two blocks), a partial
 * tile's bits per row; RoPE rotates the loaded Q rows (K is rotated by the packing
 * shader); soft-cap, ALiBi and T5 apply per score; sinks fold into each row at the end.
 * Buffers: 0 q, 1 kr (K rows, KD_PAD floats; or K itself), 2 vp (V rows, VD_PAD floats;
 * or V itself), 3 o, 4 mask, 5 kv_lens, 6 lse, 7 aux (issue 6). Launch: groups
 * (ceil(q_len / BLOCK_M), num_heads, batch), local (SG, 1, 1); the group must be one
 * subgroup (the planner sets SG to the device's subgroup size). */
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : enable
#extension GL_KHR_shader_subgroup_shuffle : enable
#include "attn_common.glsl"

#ifndef HEAD_DIM
#define HEAD_DIM 64
#endif
#ifndef V_HEAD_DIM
#define V_HEAD_DIM HEAD_DIM
#endif
#ifndef BLOCK_N
#define BLOCK_N 8 /* SG: keys per block = invocations per group = the subgroup size */
#endif
#ifndef BLOCK_M
#define BLOCK_M (2 * BLOCK_N) /* rows per group: ROWS per lane */
#endif
#ifndef KD_PAD
#define KD_PAD ((HEAD_DIM + 3) / 4 * 4)
#endif
#ifndef VD_PAD
#define VD_PAD ((V_HEAD_DIM + 3) / 4 * 4)
#endif
#ifndef UNROLL_D
#define UNROLL_D 1 /* 1: head-dim loops unrolled, 2: only O's, 0: none (see the top) */
#endif
#ifndef KEYS_PER_LANE
#define KEYS_PER_LANE 1 /* keys each lane loads per block (see the top) */
#endif
#define SG BLOCK_N
#define KPL KEYS_PER_LANE
#define KB (SG * KPL) /* keys per block */
#define ROWS (BLOCK_M / BLOCK_N)
#if KPL != 1 && KPL != 2 && KPL != 4 || KPL > 1 && SPARSE
#error "KEYS_PER_LANE is 1, 2 or 4 (1 with a tile map: a block must stay within a 16-key tile)"
#endif
/* Windowed bindings turn every load into a branch over the windows, and unrolled those
 * made llvmpipe's first-dispatch compile take 19 s (1200 heads, 141 MiB K): loops there. */
#if UNROLL_D == 1 && !ATTN_VK_WINDOWED
#define ATTN_D_LOOP [[unroll]]
#else
#define ATTN_D_LOOP [[dont_unroll]]
#endif
/* The loops over O's columns: unrolled with UNROLL_D 2 too (O in registers, Q in per-lane
 * memory). */
#if UNROLL_D && !ATTN_VK_WINDOWED
#define ATTN_DV_LOOP [[unroll]]
#else
#define ATTN_DV_LOOP [[dont_unroll]]
#endif
#define NK4 (KD_PAD / 4) /* vec4s per packed K row */
#define NV4 (VD_PAD / 4) /* vec4s per packed V row */

layout(local_size_x = SG, local_size_x_id = 0, local_size_y_id = 1, local_size_z_id = 2) in;

ATTN_STORE_RO(0, q)
/* The packed rows load as words of 8 floats (u64vec4) where the padded head dims allow
 * and O's loops are unrolled: a load costs llvmpipe a loop over the lanes with one scalar
 * load per component, so 64-bit components halve the loads of 32-bit ones (8 heads x 2048
 * tokens, d=64, interleaved runs: 214 against 270 ms). With every loop rolled (Q and O in
 * per-lane memory) the words were slower (d=128: 146-181 against 122 ms). KWK, KWV:
 * vec4s per K / V word (2 or 1); ATTN_LD_W<n>: word c of a packed row (at word `row`) as
 * vec4s dst[at .. at + n - 1]. */
#define ATTN_LD_W1(dst, at, name, row, c) dst[at] = name##_ld((row) + IDX(c));
#define ATTN_LD_W2(dst, at, name, row, c)                                                    \
    {                                                                                        \
        const u64vec4 w_ = name##_ld((row) + IDX(c));                                        \
        dst[at] = uintBitsToFloat(uvec4(unpack32(w_.x), unpack32(w_.y)));                    \
        dst[(at) + 1] = uintBitsToFloat(uvec4(unpack32(w_.z), unpack32(w_.w)));              \
    }
#if ATTN_VK_INT64 && KD_PAD % 8 == 0 && UNROLL_D != 0 && !ATTN_VK_WINDOWED
#define KWK 2
ATTN_WORDS_RO(1, kr)
#define ATTN_K_LD ATTN_LD_W2
#else
#define KWK 1
ATTN_BUF_RO(1, vec4, vec4, 4, kr)
#define ATTN_K_LD ATTN_LD_W1
#endif
/* With UNROLL_D 2 the score loop reads Q from per-lane memory as u64vec4 words too (QW):
 * llvmpipe loads that memory lane by lane and component by component like a buffer (d=128,
 * 8 heads x 1024 tokens, alternating builds: 80-83 against 85-94 ms with vec4s). */
#if KWK == 2 && UNROLL_D == 2
#define QW 1
#else
#define QW 0
#endif
#if ATTN_VK_INT64 && VD_PAD % 8 == 0 && UNROLL_D != 0 && !ATTN_VK_WINDOWED
#define KWV 2
ATTN_WORDS_RO(2, vp)
#define ATTN_V_LD ATTN_LD_W2
#else
#define KWV 1
ATTN_BUF_RO(2, vec4, vec4, 4, vp)
#define ATTN_V_LD ATTN_LD_W1
#endif
ATTN_OUT_WO(3, o)
ATTN_MASK_RO(4)
ATTN_BUF_RO(5, int, int, 2, kv_lens)
ATTN_BUF_WO(6, float, float, 2, lse)
#define ATTN_AUX_SLOT 7
#include "attn_features.glsl"

void main()
{
    const int lane = int(gl_LocalInvocationID.x);
    const int i0 = int(gl_WorkGroupID.x) * BLOCK_M;
    const int h = int(gl_WorkGroupID.y);
    const int b = int(gl_WorkGroupID.z);
    const int q_len = PN(q_len);
    const int hk = h / (PN(num_heads) / PN(num_kv_heads));
    const int len = ATTN_KV_LEN(b);
    const int shift = ATTN_CAUSAL_SHIFT(b); /* causal: row i sees keys j <= i + shift */
    const bool causal = PN(causal) != 0;
    /* The group stops after the last key its last row can see. Every lane runs every
     * block, with valid rows or not: the shuffles need all lanes. */
    const int kend = causal ? clamp(min(i0 + BLOCK_M, q_len) + shift, 0, len) : len;

    /* Q rows, pre-scaled into base-2 logits, zero-padded to KD_PAD; rows past q_len are
     * zero and masked. */
    vec4 q4[ROWS * NK4];
    [[unroll]] for (int r = 0; r < ROWS; ++r) {
        const int i = i0 + lane + r * SG;
        const bool valid = i < q_len;
        const IDX base = PI(q_off) + IDX(b) * PI(q_s0) + IDX(valid ? i : 0) * PI(q_s1) + IDX(h) * PI(q_s2);
        ATTN_D_LOOP for (int c = 0; c < NK4; ++c) {
            vec4 x = vec4(0.0);
            [[unroll]] for (int e = 0; e < 4; ++e)
                if (4 * c + e < HEAD_DIM)
                    x[e] = valid ? LOAD_S(q, base + IDX(4 * c + e) * PI(q_s3)) * p.scale_log2 : 0.0;
            q4[r * NK4 + c] = x;
        }
    }
#if POS_ROPE
    /* RoPE on the loaded rows (pre-scaled: the rotation is linear), in a rolled loop over
     * pairs. Where q4 is in registers (unrolled head-dim loops) each pair's elements are
     * picked and put back by selects over static indices: a dynamic index would move q4
     * to memory, and rotating at the load instead (partner and table loads per element,
     * unrolled) took llvmpipe ~4 s more to compile; the selects ~0.4 s. Rows past q_len
     * are zeros and stay zeros. */
    {
        const int hp = PN(rope_pairs);
        const bool il = PN(rope_interleaved) != 0;
        [[dont_unroll]] for (int pm = 0; pm < hp; ++pm) {
            const int da = il ? 2 * pm : pm, db = da + (il ? 1 : hp);
            [[unroll]] for (int r = 0; r < ROWS; ++r) {
                const int i = min(i0 + lane + r * SG, q_len - 1);
                const IDX t = PI(a_rope_q) + (IDX(PN(q_pos) + i) * IDX(hp) + IDX(pm)) * IDX(2);
                const float cs = AUX_F(t), sn = AUX_F(t + IDX(1));
#if UNROLL_D == 1 && !ATTN_VK_WINDOWED
                float xa = 0.0, xb = 0.0;
                [[unroll]] for (int c = 0; c < NK4; ++c)
                    [[unroll]] for (int e = 0; e < 4; ++e) {
                        xa = 4 * c + e == da ? q4[r * NK4 + c][e] : xa;
                        xb = 4 * c + e == db ? q4[r * NK4 + c][e] : xb;
                    }
                const float ya = xa * cs - xb * sn, yb = xa * sn + xb * cs;
                [[unroll]] for (int c = 0; c < NK4; ++c)
                    [[unroll]] for (int e = 0; e < 4; ++e)
                        q4[r * NK4 + c][e] = 4 * c + e == da   ? ya
                                             : 4 * c + e == db ? yb
                                                               : q4[r * NK4 + c][e];
#else
                const float xa = q4[r * NK4 + da / 4][da % 4], xb = q4[r * NK4 + db / 4][db % 4];
                q4[r * NK4 + da / 4][da % 4] = xa * cs - xb * sn;
                q4[r * NK4 + db / 4][db % 4] = xa * sn + xb * cs;
#endif
            }
        }
    }
#endif
#if QW
    u64vec4 qw[ROWS * NK4 / 2];
    [[dont_unroll]] for (int c = 0; c < ROWS * NK4 / 2; ++c) {
        const uvec4 x = floatBitsToUint(q4[2 * c]), y = floatBitsToUint(q4[2 * c + 1]);
        qw[c] = u64vec4(pack64(x.xy), pack64(x.zw), pack64(y.xy), pack64(y.zw));
    }
#endif
    vec4 a4[ROWS * NV4];
    ATTN_DV_LOOP for (int c = 0; c < ROWS * NV4; ++c)
        a4[c] = vec4(0.0);
    float m[ROWS], l[ROWS];
    [[unroll]] for (int r = 0; r < ROWS; ++r) {
        m[r] = ATTN_NEG_INF;
        l[r] = 0.0;
    }

    /* Key j's K row is word krb + j * krs, its V row vpb + j * vps: in the packed copies
     * (ld_kv rows per (batch, kv head)), or, with kv_direct, where the caller put them
     * (f32, unit element stride, offsets and strides in whole words: the planner checks,
     * attn__plan_kv_direct), rows past kv_len clamped to the last one (masked anyway). */
    const bool direct = PN(kv_direct) != 0;
    const IDX slab = IDX(b) * PI(num_kv_heads) + IDX(hk);
    const IDX krb = direct ? (PI(k_off) + IDX(b) * PI(k_s0) + IDX(hk) * PI(k_s2)) / IDX(4 * KWK)
                           : slab * PI(ld_kv) * IDX(NK4 / KWK);
    const IDX vpb = direct ? (PI(v_off) + IDX(b) * PI(v_s0) + IDX(hk) * PI(v_s2)) / IDX(4 * KWV)
                           : slab * PI(ld_kv) * IDX(NV4 / KWV);
    const IDX krs = direct ? PI(k_s1) / IDX(4 * KWK) : IDX(NK4 / KWK);
    const IDX vps = direct ? PI(v_s1) / IDX(4 * KWV) : IDX(NV4 / KWV);
    const int jlast = direct ? PN(kv_len) - 1 : 0x7fffffff;
#if POS_ALIBI || POS_T5 || POS_SINKS
    const int gh = PN(h_pos) + h; /* the head in the whole problem */
#endif
#if POS_ALIBI
    const float slope = AUX_F(PI(a_alibi) + IDX(gh));
#endif

#if SPARSE
    /* The blocks of the tiles the query block computes: runs of tiles, then each run's
     * blocks (a 16-key tile is one or two). Runs ascend, so the first past kend ends. */
    const ivec2 runs = attn_runs(b, h, i0);
    [[dont_unroll]] for (int ru = runs.x; ru < runs.y; ++ru) {
        int tbits;
        const ivec2 keys = attn_run_keys(ru, kend, tbits);
        if (keys.x >= kend)
            break;
        int vis[ROWS]; /* the rows' visibility bits in the run's tiles */
        [[unroll]] for (int r = 0; r < ROWS; ++r)
            vis[r] = attn_row_bits(tbits, lane + r * SG);
    [[dont_unroll]] for (int j0 = keys.x; j0 < keys.y; j0 += KB) {
#else
    [[dont_unroll]] for (int j0 = 0; j0 < kend; j0 += KB) {
#endif
        /* This lane's keys of the block: the packed copy has ld rows, kend rounded up to KB
         * at least, and direct rows are clamped, so the loads are in range; V rows past the
         * batch's length read as zero (the source may hold anything there). */
        float s[ROWS * KB];
        [[unroll]] for (int t = 0; t < ROWS * KB; ++t)
            s[t] = 0.0;
        {
            IDX row[KPL]; /* this lane's keys: j0 + lane + k * SG */
            [[unroll]] for (int k = 0; k < KPL; ++k)
                row[k] = krb + IDX(min(j0 + lane + k * SG, jlast)) * krs;
            ATTN_D_LOOP for (int cw = 0; cw < NK4 / KWK; ++cw) {
                vec4 kw[KPL * KWK];
                [[unroll]] for (int k = 0; k < KPL; ++k)
                    ATTN_K_LD(kw, k * KWK, kr, row[k], cw)
#if QW
                vec4 qv[ROWS * 2];
                [[unroll]] for (int r = 0; r < ROWS; ++r) {
                    const u64vec4 w = qw[r * (NK4 / 2) + cw];
                    qv[2 * r] = uintBitsToFloat(uvec4(unpack32(w.x), unpack32(w.y)));
                    qv[2 * r + 1] = uintBitsToFloat(uvec4(unpack32(w.z), unpack32(w.w)));
                }
#define ATTN_QV(r, u, c) qv[2 * (r) + (u)]
#else
#define ATTN_QV(r, u, c) q4[(r) * NK4 + (c)]
#endif
                [[unroll]] for (int u = 0; u < KWK; ++u) {
                    const int c = cw * KWK + u;
                    [[unroll]] for (int k = 0; k < KPL; ++k)
                        [[unroll]] for (int t = 0; t < SG; ++t) {
                            const vec4 kt = subgroupShuffle(kw[k * KWK + u], uint(t));
                            [[unroll]] for (int r = 0; r < ROWS; ++r)
                                s[r * KB + k * SG + t] += dot(ATTN_QV(r, u, c), kt);
                        }
                }
#undef ATTN_QV
            }
        }
#if MASK_KIND != 0
        /* The mask's values for the lanes' rows and the block's keys: loaded in a loop
         * over keys rather than unrolled (each load is a branchy loop over lanes, and
         * unrolled they made llvmpipe's compile take 20 s); value t lands in mk[] by a
         * chain of selects, so mk stays in registers. */
        float mk[ROWS * KB];
        [[unroll]] for (int u = 0; u < ROWS * KB; ++u)
            mk[u] = 0.0;
        [[dont_unroll]] for (int t = 0; t < KB; ++t) {
            [[unroll]] for (int r = 0; r < ROWS; ++r) {
                const int i = i0 + lane + r * SG, j = j0 + t;
                float mv = 0.0;
                if (i < q_len && j < kend)
                    mv = MASK_LD(PI(m_off) + IDX(b) * PI(m_s0) + IDX(h) * PI(m_s1) +
                                 IDX(i) * PI(m_s2) + IDX(j) * PI(m_s3));
                [[unroll]] for (int u = 0; u < KB; ++u)
                    mk[r * KB + u] = u == t ? mv : mk[r * KB + u];
            }
        }
#endif
#if POS_T5
        /* The T5 biases of the lanes' rows and the block's keys, one load per (row, key),
         * in a loop over keys as for the mask. */
        float t5[ROWS * KB];
        [[unroll]] for (int u = 0; u < ROWS * KB; ++u)
            t5[u] = 0.0;
        [[dont_unroll]] for (int t = 0; t < KB; ++t) {
            [[unroll]] for (int r = 0; r < ROWS; ++r) {
                const float bv = attn_t5_bias(gh, j0 + t - (i0 + lane + r * SG + shift));
                [[unroll]] for (int u = 0; u < KB; ++u)
                    t5[r * KB + u] = u == t ? bv : t5[r * KB + u];
            }
        }
#endif
        float pr[ROWS * KB], alpha[ROWS];
        [[unroll]] for (int r = 0; r < ROWS; ++r) {
            const int i = i0 + lane + r * SG;
            float mx = ATTN_NEG_INF;
#if SPARSE
            const int vb = vis[r] >> ((PN(k_pos) + j0) & 15); /* bit t: key j0 + t */
#endif
            [[unroll]] for (int t = 0; t < KB; ++t) {
                const int j = j0 + t;
                bool ok = i < q_len && j < kend && (!causal || j <= i + shift);
                float x = s[r * KB + t];
#if SPARSE
                ok = ok && (vb & (1 << t)) != 0;
#endif
#if POS_SOFTCAP
                x = attn_softcap(x);
#endif
#if POS_ALIBI
                x -= slope * float(abs(i + shift - j)); /* |query - key| positions */
#endif
#if POS_T5
                x += t5[r * KB + t];
#endif
#if MASK_KIND == 1
                x += mk[r * KB + t] * float(ATTN_LOG2E);
#elif MASK_KIND == 2
                ok = ok && mk[r * KB + t] != 0.0;
#endif
                s[r * KB + t] = ok ? x : ATTN_NEG_INF;
                mx = max(mx, s[r * KB + t]);
            }
            /* A row that has seen no key yet keeps m = -inf: exponents taken against 0
             * give p = 0 and leave its (zero) accumulator alone, without a branch that
             * would split the subgroup. */
            const float mnew = max(m[r], mx);
            const float mref = mnew == ATTN_NEG_INF ? 0.0 : mnew;
            alpha[r] = exp2(m[r] - mref);
            float sum = 0.0;
            [[unroll]] for (int t = 0; t < KB; ++t) {
                pr[r * KB + t] = exp2(s[r * KB + t] - mref);
                sum += pr[r * KB + t];
            }
            l[r] = l[r] * alpha[r] + sum;
            m[r] = mnew;
        }
        {
            bool mine[KPL];
            IDX row[KPL];
            [[unroll]] for (int k = 0; k < KPL; ++k) {
                const int j = j0 + lane + k * SG;
                mine[k] = j < len;
                row[k] = vpb + IDX(min(j, jlast)) * vps;
            }
            ATTN_DV_LOOP for (int cw = 0; cw < NV4 / KWV; ++cw) {
                vec4 vw[KPL * KWV];
                [[unroll]] for (int k = 0; k < KPL; ++k)
                    ATTN_V_LD(vw, k * KWV, vp, row[k], cw) /* in range */
                [[unroll]] for (int e = 0; e < KPL * KWV; ++e) /* a select, not a branch */
                    vw[e] = mine[e / KWV] ? vw[e] : vec4(0.0);
                [[unroll]] for (int u = 0; u < KWV; ++u) {
                    const int c = cw * KWV + u;
                    vec4 acc[ROWS];
                    [[unroll]] for (int r = 0; r < ROWS; ++r)
                        acc[r] = a4[r * NV4 + c] * alpha[r];
                    [[unroll]] for (int k = 0; k < KPL; ++k)
                        [[unroll]] for (int t = 0; t < SG; ++t) {
                            const vec4 vt = subgroupShuffle(vw[k * KWV + u], uint(t));
                            [[unroll]] for (int r = 0; r < ROWS; ++r)
                                acc[r] += pr[r * KB + k * SG + t] * vt;
                        }
                    [[unroll]] for (int r = 0; r < ROWS; ++r)
                        a4[r * NV4 + c] = acc[r];
                }
            }
        }
    }
#if SPARSE
    }
#endif

    [[unroll]] for (int r = 0; r < ROWS; ++r) {
        const int i = i0 + lane + r * SG;
        if (i < q_len) {
            float inv = l[r] > 0.0 ? 1.0 / l[r] : 0.0;
#if POS_SINKS
            if (PN(partial) == 0 && l[r] > 0.0) /* a partial's sink is added by the merge */
                inv *= attn_sink_fold(gh, m[r], l[r]);
#endif
            const IDX base = PI(o_off) + IDX(b) * PI(o_s0) + IDX(i) * PI(o_s1) + IDX(h) * PI(o_s2);
            ATTN_DV_LOOP for (int c = 0; c < NV4; ++c)
                [[unroll]] for (int e = 0; e < 4; ++e)
                    if (4 * c + e < V_HEAD_DIM) {
                        STORE_O(o, base + IDX(4 * c + e) * PI(o_s3), a4[r * NV4 + c][e] * inv);
                    }
            if (PN(want_lse) != 0)
                lse_st(PI(l_off) + IDX(b) * PI(l_s0) + IDX(h) * PI(l_s1) + IDX(i) * PI(l_s2),
                       l[r] > 0.0 ? (m[r] + log2(l[r])) * float(ATTN_LN2) : ATTN_NEG_INF);
        }
    }
}
