/* attn_common.glsl — what the Vulkan kernels share: the params block, storage types,
 * buffer bindings (plain or windowed) and helpers. Each .comp includes it first; the JIT
 * inlines the #include lines from the embedded sources and passes the specialisation
 * constants as #defines right after #version. Every constant has a default here, so a
 * shader compiles on its own (glslangValidator checks them all at build time).
 *
 * Constants the Vulkan backend sets from the device (ATTN_VK_*):
 *   ATTN_VK_INT64     shaderInt64: the params block has int64 fields
 *   ATTN_VK_F16       storageBuffer16BitAccess: f16 tensors are float16_t buffers; else
 *                     they are uint buffers of packed pairs (unpackHalf2x16)
 *   ATTN_VK_SUBGROUP  subgroup vote operations in compute shaders
 *   ATTN_VK_WINDOWED  tensors may be larger than one binding (maxStorageBufferRange):
 *                     every buffer slot is bound as ATTN_VK_MAX_WIN windows of
 *                     2^ATTN_VK_WIN_SHIFT bytes, and each access picks its window
 *   ATTN_VK_TEXEL     slots declared with ATTN_WORDS_RO are read through uniform texel
 *                     buffers (a CPU device, where they load faster; never windowed)
 *   (STORE_S is a statement: brace the branches it is used in.)
 * Buffer slot s, window w is binding s * ATTN_VK_MAX_WIN + w; the params block follows
 * the slots. Offsets and strides in the params are in elements of each buffer's type. */
#extension GL_EXT_shader_explicit_arithmetic_types_int64 : enable
#extension GL_EXT_shader_16bit_storage : enable
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_vote : enable

#ifndef STORAGE_F16
#define STORAGE_F16 0
#endif
#ifndef MASK_KIND
#define MASK_KIND 0 /* 0 none, 1 additive f32, 2 boolean u8 */
#endif
#ifndef ATTN_VK_INT64
#define ATTN_VK_INT64 1
#endif
#ifndef ATTN_VK_F16
#define ATTN_VK_F16 1
#endif
#ifndef ATTN_VK_SUBGROUP
#define ATTN_VK_SUBGROUP 1
#endif
#ifndef ATTN_VK_WINDOWED
#define ATTN_VK_WINDOWED 0
#endif
#ifndef ATTN_VK_TEXEL
#define ATTN_VK_TEXEL 0
#endif
#ifndef ATTN_VK_WIN_SHIFT
#define ATTN_VK_WIN_SHIFT 27 /* 128 MiB: llvmpipe's maxStorageBufferRange */
#endif
#define ATTN_VK_MAX_WIN 4
#define ATTN_VK_PARAMS_BINDING (8 * ATTN_VK_MAX_WIN)

#include "attn_params.glsl"

/* Element index type. Without windows a buffer is one binding of at most 4 GiB - 1 bytes,
 * so 32 bits index every element; windowed buffers may be larger. */
#if ATTN_VK_WINDOWED && ATTN_VK_INT64
#define IDX int64_t
#else
#define IDX uint
#endif
/* A params field as an index (offsets, strides: never negative) or as an int (sizes,
 * switches: the validator keeps them below 2^31). */
#define PI(n) IDX(p.n)
#define PN(n) int(p.n)

#define ATTN_BINDING(slot, w) ((slot) * ATTN_VK_MAX_WIN + (w))

/* ---- buffer slots ----------------------------------------------------------------------
 * ATTN_BUF_RO(slot, T, R, ES, name) declares slot `slot` as a buffer of T (2^ES bytes
 * each) and `R name_ld(IDX i)`, which reads element i converted to R. ATTN_BUF_WO adds
 * `void name_st(IDX i, R v)` and ATTN_BUF_AT (uint only) `name_and`/`name_or`, atomic on
 * one word. Windowed accessors branch on the window: named bindings, no descriptor
 * indexing, so divergent indices are legal on every device. */
#if ATTN_VK_WINDOWED
#define ATTN_DECL_(slot, w, T, name, q)                                                      \
    layout(std430, binding = ATTN_BINDING(slot, w)) q buffer name##_b##w { T name##w[]; };
#define ATTN_DECL(slot, T, name, q)                                                          \
    ATTN_DECL_(slot, 0, T, name, q) ATTN_DECL_(slot, 1, T, name, q)                          \
    ATTN_DECL_(slot, 2, T, name, q) ATTN_DECL_(slot, 3, T, name, q)
#define ATTN_WIN(ES, i)                                                                      \
    const uint w_ = uint((i) >> (ATTN_VK_WIN_SHIFT - (ES)));                                 \
    const uint o_ = uint((i) & ((IDX(1) << (ATTN_VK_WIN_SHIFT - (ES))) - IDX(1)));
#define ATTN_RD(name, R, ES)                                                                 \
    R name##_ld(IDX i)                                                                       \
    {                                                                                        \
        ATTN_WIN(ES, i)                                                                      \
        if (w_ == 0u) return R(name##0[o_]);                                                 \
        if (w_ == 1u) return R(name##1[o_]);                                                 \
        if (w_ == 2u) return R(name##2[o_]);                                                 \
        return R(name##3[o_]);                                                               \
    }
#define ATTN_WR(name, T, R, ES)                                                              \
    void name##_st(IDX i, R v)                                                               \
    {                                                                                        \
        ATTN_WIN(ES, i)                                                                      \
        if (w_ == 0u) name##0[o_] = T(v);                                                    \
        else if (w_ == 1u) name##1[o_] = T(v);                                               \
        else if (w_ == 2u) name##2[o_] = T(v);                                               \
        else name##3[o_] = T(v);                                                             \
    }
#define ATTN_AT_OP(name, op, fn)                                                             \
    void name##_##op(IDX i, uint v)                                                          \
    {                                                                                        \
        ATTN_WIN(2, i)                                                                       \
        if (w_ == 0u) fn(name##0[o_], v);                                                    \
        else if (w_ == 1u) fn(name##1[o_], v);                                               \
        else if (w_ == 2u) fn(name##2[o_], v);                                               \
        else fn(name##3[o_], v);                                                             \
    }
#else
#define ATTN_DECL(slot, T, name, q)                                                          \
    layout(std430, binding = ATTN_BINDING(slot, 0)) q buffer name##_b0 { T name##0[]; };
#define ATTN_RD(name, R, ES)                                                                 \
    R name##_ld(IDX i) { return R(name##0[i]); }
#define ATTN_WR(name, T, R, ES)                                                              \
    void name##_st(IDX i, R v) { name##0[i] = T(v); }
#define ATTN_AT_OP(name, op, fn)                                                             \
    void name##_##op(IDX i, uint v) { fn(name##0[i], v); }
#endif

#define ATTN_BUF_RO(slot, T, R, ES, name) ATTN_DECL(slot, T, name, readonly) ATTN_RD(name, R, ES)

/* ATTN_WORDS_RO(slot, name): slot `slot` read as 32-byte words, `u64vec4 name_ld(IDX i)`
 * (shaderInt64). In the texel variant through the slot's R32G32B32A32_UINT view, bound at
 * ATTN_TEXEL_BINDING(slot): llvmpipe fetches a texel with one 16-byte load per lane, where
 * a storage-buffer load is a loop over the lanes with a scalar load and a bounds check per
 * component (a read-only loop over 134 MB: 4-5x the bytes per second). */
#define ATTN_TEXEL_BINDING(slot) (ATTN_VK_PARAMS_BINDING + 1 + (slot))
#if ATTN_VK_TEXEL && !ATTN_VK_WINDOWED
#define ATTN_WORDS_RO(slot, name)                                                            \
    layout(binding = ATTN_TEXEL_BINDING(slot)) uniform usamplerBuffer name##_tx;             \
    u64vec4 name##_ld(IDX i)                                                                 \
    {                                                                                        \
        const int t_ = int(i) * 2;                                                           \
        const uvec4 a_ = texelFetch(name##_tx, t_), b_ = texelFetch(name##_tx, t_ + 1);      \
        return u64vec4(pack64(a_.xy), pack64(a_.zw), pack64(b_.xy), pack64(b_.zw));          \
    }
#else
#define ATTN_WORDS_RO(slot, name) ATTN_BUF_RO(slot, u64vec4, u64vec4, 5, name)
#endif
#define ATTN_BUF_WO(slot, T, R, ES, name)                                                    \
    ATTN_DECL(slot, T, name, restrict) ATTN_RD(name, R, ES) ATTN_WR(name, T, R, ES)
#define ATTN_BUF_AT(slot, name)                                                              \
    ATTN_DECL(slot, uint, name, coherent) ATTN_RD(name, uint, 2)                             \
    ATTN_AT_OP(name, and, atomicAnd) ATTN_AT_OP(name, or, atomicOr)

/* ---- Q/K/V/O storage ---------------------------------------------------------------------
 * Storage type and arithmetic are separate: kernels read and write f32 through LOAD_S and
 * STORE_S whatever the storage. Packed f16: element i is half (i & 1) of word i >> 1, and
 * a store changes only its own half with two atomics, because the invocation writing the
 * other half of the word (the next row, another head) may run at the same time. */
#if !STORAGE_F16
#define ATTN_STORE_RO(slot, name) ATTN_BUF_RO(slot, float, float, 2, name)
#define ATTN_STORE_WO(slot, name) ATTN_BUF_WO(slot, float, float, 2, name)
#define LOAD_S(name, i) name##_ld(i)
#define STORE_S(name, i, x) name##_st((i), (x))
#elif ATTN_VK_F16
#define ATTN_STORE_RO(slot, name) ATTN_BUF_RO(slot, float16_t, float, 1, name)
#define ATTN_STORE_WO(slot, name) ATTN_BUF_WO(slot, float16_t, float, 1, name)
#define LOAD_S(name, i) name##_ld(i)
#define STORE_S(name, i, x) name##_st((i), (x))
#else
#define ATTN_STORE_RO(slot, name) ATTN_BUF_RO(slot, uint, uint, 2, name)
#define ATTN_STORE_WO(slot, name) ATTN_BUF_AT(slot, name)
#define LOAD_S(name, i) attn_half_of(name##_ld((i) >> 1), uint(i) & 1u)
#define STORE_S(name, i, x)                                                                  \
    {                                                                                        \
        const IDX wi_ = (i) >> 1;                                                            \
        const uint sh_ = (uint(i) & 1u) * 16u;                                               \
        name##_and(wi_, ~(0xffffu << sh_));                                                  \
        name##_or(wi_, (packHalf2x16(vec2((x), 0.0)) & 0xffffu) << sh_);                     \
    }
#endif

float attn_half_of(uint word, uint half_index)
{
    const vec2 h = unpackHalf2x16(word);
    return half_index == 0u ? h.x : h.y;
}

/* Masks: additive f32, or boolean bytes read as packed words (no 8-bit storage needed). */
#if MASK_KIND == 2
#define ATTN_MASK_RO(slot) ATTN_BUF_RO(slot, uint, uint, 2, mask)
#define MASK_LD(i) float((mask_ld((i) >> 2) >> ((uint(i) & 3u) * 8u)) & 0xffu)
#else
#define ATTN_MASK_RO(slot) ATTN_BUF_RO(slot, float, float, 2, mask)
#define MASK_LD(i) mask_ld(i)
#endif

#define ATTN_LOG2E 1.4426950408889634
#define ATTN_LN2 0.6931471805599453
#define ATTN_NEG_INF uintBitsToFloat(0xff800000u)

/* Output storage: partial results of the scheduler are f32 whatever the input storage. */
#ifndef OUT_F32
#define OUT_F32 0
#endif
#if OUT_F32
#define ATTN_OUT_WO(slot, name) ATTN_BUF_WO(slot, float, float, 2, name)
#define STORE_O(name, i, x) name##_st((i), (x))
#else
#define ATTN_OUT_WO(slot, name) ATTN_STORE_WO(slot, name)
#define STORE_O(name, i, x) STORE_S(name, i, x)
#endif

/* Key count of batch b in the whole problem (the kernel's kv_lens slot). */
#define ATTN_BATCH_KV_LEN(b)                                                                 \
    (PN(has_kv_lens) != 0 ? clamp(kv_lens_ld(IDX(b)), 0, PN(kv_total)) : PN(kv_total))
/* Keys of batch b this launch may read: those of the batch from k_pos on, at most kv_len. */
#define ATTN_KV_LEN(b) clamp(ATTN_BATCH_KV_LEN(b) - PN(k_pos), 0, PN(kv_len))
/* Causal, bottom-right aligned on the whole problem: launch row i sees launch key j iff
 * j <= i + shift (global row q_pos + i sees global key k_pos + j). */
#define ATTN_CAUSAL_SHIFT(b) (PN(q_pos) - PN(k_pos) + ATTN_BATCH_KV_LEN(b) - PN(q_total))
