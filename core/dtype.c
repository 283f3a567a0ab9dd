#include "dtype.h"

#include <math.h>
#include <string.h>

/* Without a branch (NaN: kept a quiet NaN), and static so that it
 * inlines (-fPIC keeps the exported one out of line): t2_bf16_round's
 * loop, which rounds every factored product's X in a q8_0 model, then
 * vectorises. */
static inline uint16_t f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    uint32_t nearest = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    uint32_t quiet_nan = (u >> 16) | 0x40u;
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : nearest);
}

uint16_t t2_f32_to_bf16(float f)
{
    return f32_to_bf16(f);
}

void t2_bf16_round(const float *x, size_t n, uint16_t *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = f32_to_bf16(x[i]);
}

float t2_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t u;
    if (exp == 0) {
        if (mant == 0) {
            u = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                mant <<= 1;
            } while (!(mant & 0x400u));
            mant &= 0x3ffu;
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | (mant << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (mant << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

uint16_t t2_f32_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t absu = u & 0x7fffffffu;
    if (absu > 0x7f800000u)
        return (uint16_t)(sign | 0x7e00u);
    if (absu >= 0x477ff000u) /* rounds to >= 65536: infinity */
        return (uint16_t)(sign | 0x7c00u);
    if (absu < 0x38800000u) { /* subnormal or zero in f16 */
        float a;
        memcpy(&a, &absu, sizeof a);
        /* scale so that the f16 subnormal unit (2^-24) becomes 1, round to nearest even */
        float scaled = a * 16777216.0f;
        uint32_t m = (uint32_t)nearbyintf(scaled);
        return (uint16_t)(sign | m);
    }
    uint32_t exp = (absu >> 23) - 127 + 15;
    uint32_t mant = absu & 0x7fffffu;
    uint32_t h = (exp << 10) | (mant >> 13);
    uint32_t rest = mant & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u)))
        h++;
    return (uint16_t)(sign | h);
}

void t2_q8_0_dequantize(const uint8_t *src, float *dst, size_t n)
{
    for (size_t b = 0; b < n / T2_Q8_0_BLOCK; b++) {
        const uint8_t *blk = src + b * T2_Q8_0_BYTES;
        float d = t2_f16_to_f32(t2_load_u16(blk));
        const int8_t *q = (const int8_t *)(blk + 2);
        for (int i = 0; i < T2_Q8_0_BLOCK; i++)
            dst[b * T2_Q8_0_BLOCK + (size_t)i] = d * (float)q[i];
    }
}

void t2_q8_0_quantize(const float *src, uint8_t *dst, size_t n)
{
    for (size_t b = 0; b < n / T2_Q8_0_BLOCK; b++) {
        const float *x = src + b * T2_Q8_0_BLOCK;
        uint8_t *blk = dst + b * T2_Q8_0_BYTES;
        float amax = 0.0f;
        for (int i = 0; i < T2_Q8_0_BLOCK; i++)
            amax = fmaxf(amax, fabsf(x[i]));
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t dh = t2_f32_to_f16(d);
        blk[0] = (uint8_t)(dh & 0xff);
        blk[1] = (uint8_t)(dh >> 8);
        for (int i = 0; i < T2_Q8_0_BLOCK; i++)
            blk[2 + i] = (uint8_t)(int8_t)roundf(x[i] * id);
    }
}
