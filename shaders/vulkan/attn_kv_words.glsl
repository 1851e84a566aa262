/* attn_kv_words.glsl — K and V rows read as words of several elements (KV_VEC), for the
 * shaders that read K/V where the caller put them (attn_decode.comp, attn_pack_kv.comp).
 * A run-time switch would not do: llvmpipe runs both sides of a branch. There, a load
 * instruction costs a loop over the lanes with one scalar load per component, so the
 * widest components load the most per instruction:
 *   KV_VEC 2: u64vec4 words, 8 floats or 16 halves (shaderInt64; else as KV_VEC 1);
 *   KV_VEC 1: vec4 words, or 4 halves as a uvec2;
 *   KV_VEC 0: element by element, any strides.
 * The planner picks the widest whose element count divides both head dims, and a run whose
 * K and V do not have unit element stride and offsets and strides that are multiples of it
 * (KV_EPW elements) takes a narrower variant (src/core/plan.c, kv_vec_fit); a variant
 * whose words do not divide the head dims compiles as a narrower one here.
 * The including shader defines ATTN_KV_SLOT_K and ATTN_KV_SLOT_V; they are declared as kw
 * and vw (words, KV_WORD) or, element by element, as k and v (storage, LOAD_S). */
#ifndef KV_VEC
#define KV_VEC 1
#endif
#if STORAGE_F16
#define KV_EPW2_ 16 /* elements of a u64vec4 word (no ?: in #if) */
#else
#define KV_EPW2_ 8
#endif
#if KV_VEC == 2 && (!ATTN_VK_INT64 || HEAD_DIM % KV_EPW2_ != 0 || V_HEAD_DIM % KV_EPW2_ != 0)
#undef KV_VEC
#define KV_VEC 1
#endif
#if KV_VEC == 1 && (HEAD_DIM % 4 != 0 || V_HEAD_DIM % 4 != 0)
#undef KV_VEC
#define KV_VEC 0
#endif
#if KV_VEC == 2
#define KV_EPW KV_EPW2_
#define KV_WORD u64vec4
ATTN_WORDS_RO(ATTN_KV_SLOT_K, kw)
ATTN_WORDS_RO(ATTN_KV_SLOT_V, vw)
#elif KV_VEC == 1 && STORAGE_F16
#define KV_EPW 4
#define KV_WORD uvec2
ATTN_BUF_RO(ATTN_KV_SLOT_K, uvec2, uvec2, 3, kw)
ATTN_BUF_RO(ATTN_KV_SLOT_V, uvec2, uvec2, 3, vw)
#elif KV_VEC == 1
#define KV_EPW 4
#define KV_WORD vec4
ATTN_BUF_RO(ATTN_KV_SLOT_K, vec4, vec4, 4, kw)
ATTN_BUF_RO(ATTN_KV_SLOT_V, vec4, vec4, 4, vw)
#else
#define KV_EPW 1
ATTN_STORE_RO(ATTN_KV_SLOT_K, k)
ATTN_STORE_RO(ATTN_KV_SLOT_V, v)
#endif
/* Word w_ as KV_EPW / 4 vec4s into dst[at], dst[at + 1], ... */
#if KV_VEC == 2 && STORAGE_F16
#define KV_UNPACK(dst, at, w_)                                                               \
    [[unroll]] for (int u_ = 0; u_ < 4; ++u_) {                                              \
        const uvec2 h_ = unpack32(w_[u_]);                                                   \
        dst[(at) + u_] = vec4(unpackHalf2x16(h_.x), unpackHalf2x16(h_.y));                   \
    }
#elif KV_VEC == 2
#define KV_UNPACK(dst, at, w_)                                                               \
    dst[at] = uintBitsToFloat(uvec4(unpack32(w_.x), unpack32(w_.y)));                        \
    dst[(at) + 1] = uintBitsToFloat(uvec4(unpack32(w_.z), unpack32(w_.w)));
#elif KV_VEC == 1 && STORAGE_F16
#define KV_UNPACK(dst, at, w_) dst[at] = vec4(unpackHalf2x16(w_.x), unpackHalf2x16(w_.y));
#elif KV_VEC == 1
#define KV_UNPACK(dst, at, w_) dst[at] = w_;
#endif
