/* half.c — IEEE binary16 <-> binary32 conversion in portable C (bit manipulation only),
 * rounding to nearest, ties to even. */
#include <string.h>

#include "core/problem.h"

float attn__half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t bits;

    if (exp == 0x1f) {
        /* Inf or NaN; the NaN payload moves to the top of the float mantissa, so a NaN
         * stays a NaN (its mantissa is non-zero). */
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + (127 - 15)) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else {
        /* Subnormal half: man * 2^-24. Normalise it; every such value is a normal float. */
        uint32_t e = 127 - 14;
        while (!(man & 0x400u)) {
            man <<= 1;
            e--;
        }
        bits = sign | (e << 23) | ((man & 0x3ffu) << 13);
    }

    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

uint16_t attn__float_to_half(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);

    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t exp = (x >> 23) & 0xffu;
    uint32_t man = x & 0x7fffffu;

    if (exp == 0xff) {
        if (man == 0)
            return (uint16_t)(sign | 0x7c00u);
        /* Keep the top payload bits and force the quiet bit so truncation cannot turn a
         * NaN into an infinity. */
        return (uint16_t)(sign | 0x7e00u | (man >> 13));
    }

    int32_t e = (int32_t)exp - 127 + 15; /* biased half exponent */
    if (e >= 31)
        return (uint16_t)(sign | 0x7c00u);

    if (e <= 0) {
        /* Below 2^-25 everything rounds to (signed) zero; 2^-25 itself is a tie that goes
         * to the even neighbour, zero, which the general path below also gives. */
        if (e < -10)
            return sign;
        /* Half subnormal: value / 2^-24 = (1.man as a 24-bit integer) >> (14 - e). */
        uint32_t m = man | 0x800000u;
        uint32_t shift = (uint32_t)(14 - e); /* 14..24 */
        uint32_t half = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1u);
        uint32_t tie = 1u << (shift - 1u);
        if (rem > tie || (rem == tie && (half & 1u)))
            half++; /* may carry into 0x400: the smallest normal, correctly encoded */
        return (uint16_t)(sign | half);
    }

    uint32_t half = ((uint32_t)e << 10) | (man >> 13);
    uint32_t rem = man & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (half & 1u)))
        half++; /* a carry out of the mantissa bumps the exponent; 0x7c00 is inf */
    return (uint16_t)(sign | half);
}
