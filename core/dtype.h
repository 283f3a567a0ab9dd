/* Scalar conversions between storage formats and float32. */
#ifndef T2_DTYPE_H
#define T2_DTYPE_H

#include <stddef.h>
#include <stdint.h>

/* Inline: loops widen rows and vectors of bf16 value by value (a bf16
 * model's prefill widens every weight row it multiplies), and a call per
 * value kept them scalar. */
static inline float t2_bf16_to_f32(uint16_t h)
{
    union {
        uint32_t u;
        float f;
    } v = {(uint32_t)h << 16};
    return v.f;
}
uint16_t t2_f32_to_bf16(float f); /* round to nearest even */
/* x[0..n) rounded to bf16 as t2_f32_to_bf16 does. */
void t2_bf16_round(const float *x, size_t n, uint16_t *out);
float t2_f16_to_f32(uint16_t h);
uint16_t t2_f32_to_f16(float f); /* round to nearest even */

/* GGUF Q8_0: blocks of 32 values, each an f16 scale d followed by 32 int8
 * q; value = d * q. 34 bytes per block. */
#define T2_Q8_0_BLOCK 32
#define T2_Q8_0_BYTES 34
void t2_q8_0_dequantize(const uint8_t *src, float *dst, size_t n); /* n % 32 == 0 */
void t2_q8_0_quantize(const float *src, uint8_t *dst, size_t n);   /* as ggml does */

/* Unaligned little-endian loads for parsers. */
static inline uint16_t t2_load_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t t2_load_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t t2_load_u64(const uint8_t *p)
{
    return (uint64_t)t2_load_u32(p) | ((uint64_t)t2_load_u32(p + 4) << 32);
}

#endif
