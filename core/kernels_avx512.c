/* AVX-512 kernels (F, BW, VL, VNNI), compiled with target attributes so
 * the build needs no -march flag; used only when the CPU has them
 * (kernels.c). Same structure as kernels_avx2.c at twice the width; Q8_0
 * takes two blocks per 512-bit register and multiplies with VNNI.
 * BF16 weights are widened to float and multiplied in float32 rather than
 * with AVX512-BF16's dot product, which would round x to bf16 too and
 * lose the "exact to float rounding" guarantee; decode is bound by memory,
 * not by these multiplies. */
#include <immintrin.h>

#include "dtype.h"
#include "kernels.h"

#define TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define INLINE TARGET static inline __attribute__((always_inline))
#define MAX_NX 4

INLINE __m512 load_f32(const float *p)
{
    return _mm512_loadu_ps(p);
}

INLINE __m512 load_bf16(const uint16_t *p)
{
    __m256i h = _mm256_loadu_si256((const __m256i *)(const void *)p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

INLINE __m512 load_f32_tail(const float *p, __mmask16 m)
{
    return _mm512_maskz_loadu_ps(m, p);
}

INLINE __m512 load_bf16_tail(const uint16_t *p, __mmask16 m)
{
    __m256i h = _mm256_maskz_loadu_epi16(m, p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* One weight row against nx (1..4) rows of x; the tail is masked. */
#define DEFINE_ROW(NAME, WT, LOADW, LOADW_TAIL)                                                    \
    INLINE void NAME(const WT *wr, int cols, const float *x, int nx, float *y, size_t ldy)         \
    {                                                                                              \
        __m512 acc[MAX_NX][2];                                                                     \
        for (int i = 0; i < MAX_NX; i++)                                                           \
            acc[i][0] = acc[i][1] = _mm512_setzero_ps();                                           \
        int c = 0;                                                                                 \
        for (; c + 32 <= cols; c += 32) {                                                          \
            __m512 w0 = LOADW(wr + c), w1 = LOADW(wr + c + 16);                                    \
            for (int i = 0; i < nx; i++) {                                                         \
                const float *xi = x + (size_t)i * (size_t)cols + c;                                \
                acc[i][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xi), acc[i][0]);                   \
                acc[i][1] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xi + 16), acc[i][1]);              \
            }                                                                                      \
        }                                                                                          \
        for (; c < cols; c += 16) {                                                                \
            int left = cols - c;                                                                   \
            __mmask16 m = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);         \
            __m512 w0 = LOADW_TAIL(wr + c, m);                                                     \
            for (int i = 0; i < nx; i++) {                                                         \
                const float *xi = x + (size_t)i * (size_t)cols + c;                                \
                acc[i][0] = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(m, xi), acc[i][0]);          \
            }                                                                                      \
        }                                                                                          \
        for (int i = 0; i < nx; i++)                                                               \
            y[(size_t)i * ldy] = _mm512_reduce_add_ps(_mm512_add_ps(acc[i][0], acc[i][1]));        \
    }

DEFINE_ROW(row_f32, float, load_f32, load_f32_tail)
DEFINE_ROW(row_bf16, uint16_t, load_bf16, load_bf16_tail)

TARGET static void f32_avx512(const float *w, size_t ldw, int rows, int cols, const float *x, int n,
                              float *y, size_t ldy)
{
    for (int r = 0; r < rows; r++) {
        const float *wr = (const float *)(const void *)((const char *)w + (size_t)r * ldw);
        for (int i = 0; i < n; i += MAX_NX) {
            int nx = n - i < MAX_NX ? n - i : MAX_NX;
            const float *xi = x + (size_t)i * (size_t)cols;
            float *yi = y + (size_t)i * ldy + r;
            switch (nx) { /* constant nx: the accumulators stay in registers */
            case 1: row_f32(wr, cols, xi, 1, yi, ldy); break;
            case 2: row_f32(wr, cols, xi, 2, yi, ldy); break;
            case 3: row_f32(wr, cols, xi, 3, yi, ldy); break;
            default: row_f32(wr, cols, xi, 4, yi, ldy); break;
            }
        }
    }
}

TARGET static void bf16_avx512(const uint16_t *w, size_t ldw, int rows, int cols, const float *x,
                               int n, float *y, size_t ldy)
{
    for (int r = 0; r < rows; r++) {
        const uint16_t *wr = (const uint16_t *)(const void *)((const char *)w + (size_t)r * ldw);
        for (int i = 0; i < n; i += MAX_NX) {
            int nx = n - i < MAX_NX ? n - i : MAX_NX;
            const float *xi = x + (size_t)i * (size_t)cols;
            float *yi = y + (size_t)i * ldy + r;
            switch (nx) {
            case 1: row_bf16(wr, cols, xi, 1, yi, ldy); break;
            case 2: row_bf16(wr, cols, xi, 2, yi, ldy); break;
            case 3: row_bf16(wr, cols, xi, 3, yi, ldy); break;
            default: row_bf16(wr, cols, xi, 4, yi, ldy); break;
            }
        }
    }
}

/* Exact int32 sums of 4-byte groups of w·x (signed x signed): VNNI's
 * dpbusd wants an unsigned operand, so |x| times w with x's sign. */
INLINE __m512i dot_i8(__m512i w, __m512i x)
{
    __mmask64 neg = _mm512_movepi8_mask(x);
    __m512i sw = _mm512_mask_sub_epi8(w, neg, _mm512_setzero_si512(), w);
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(x), sw);
}

INLINE __m256i dot_i8_256(__m256i w, __m256i x)
{
    __m256i ax = _mm256_sign_epi8(x, x);
    __m256i sw = _mm256_sign_epi8(w, x);
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), ax, sw);
}

INLINE void row_q8_0(const uint8_t *wr, int nb, const int8_t *xq, const float *xd, int cols, int nx,
                     float *y, size_t ldy)
{
    /* lanes 0-7 take the first block's scale, lanes 8-15 the second's */
    const __m512i halves = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    __m512 acc[MAX_NX];
    for (int i = 0; i < MAX_NX; i++)
        acc[i] = _mm512_setzero_ps();
    int b = 0;
    for (; b + 2 <= nb; b += 2) {
        const uint8_t *b0 = wr + (size_t)b * T2_Q8_0_BYTES, *b1 = b0 + T2_Q8_0_BYTES;
        __m512i qw = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)(b0 + 2))),
            _mm256_loadu_si256((const __m256i *)(const void *)(b1 + 2)), 1);
        __m128 dw =
            _mm_cvtph_ps(_mm_cvtsi32_si128((int)(t2_load_u16(b0) | (t2_load_u16(b1) << 16))));
        for (int i = 0; i < nx; i++) {
            const int8_t *qx = xq + (size_t)i * (size_t)cols + (size_t)b * T2_Q8_0_BLOCK;
            const float *dx = xd + (size_t)i * (size_t)nb + b;
            __m512i d = dot_i8(qw, _mm512_loadu_si512((const void *)qx));
            /* the two blocks' x scales: an unaligned 8-byte load */
            __m128 s2 = _mm_mul_ps(dw, _mm_castsi128_ps(_mm_loadu_si64((const void *)dx)));
            __m512 scale = _mm512_permutexvar_ps(halves, _mm512_castps128_ps512(s2));
            acc[i] = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(d), acc[i]);
        }
    }
    for (int i = 0; i < nx; i++) {
        float s = _mm512_reduce_add_ps(acc[i]);
        if (b < nb) { /* an odd last block */
            const uint8_t *blk = wr + (size_t)b * T2_Q8_0_BYTES;
            const int8_t *qx = xq + (size_t)i * (size_t)cols + (size_t)b * T2_Q8_0_BLOCK;
            __m256i d = dot_i8_256(_mm256_loadu_si256((const __m256i *)(const void *)(blk + 2)),
                                   _mm256_loadu_si256((const __m256i *)(const void *)qx));
            __m256i h = _mm256_hadd_epi32(d, d);
            h = _mm256_hadd_epi32(h, h);
            int32_t isum = _mm256_extract_epi32(h, 0) + _mm256_extract_epi32(h, 4);
            s += (float)isum * (_cvtsh_ss(t2_load_u16(blk)) * xd[(size_t)i * (size_t)nb + b]);
        }
        y[(size_t)i * ldy] = s;
    }
}

TARGET static void q8_0_avx512(const uint8_t *w, size_t ldw, int rows, int cols, const int8_t *xq,
                               const float *xd, int n, float *y, size_t ldy)
{
    int nb = cols / T2_Q8_0_BLOCK;
    for (int r = 0; r < rows; r++) {
        const uint8_t *wr = w + (size_t)r * ldw;
        for (int i = 0; i < n; i += MAX_NX) {
            int nx = n - i < MAX_NX ? n - i : MAX_NX;
            const int8_t *qi = xq + (size_t)i * (size_t)cols;
            const float *di = xd + (size_t)i * (size_t)nb;
            float *yi = y + (size_t)i * ldy + r;
            switch (nx) {
            case 1: row_q8_0(wr, nb, qi, di, cols, 1, yi, ldy); break;
            case 2: row_q8_0(wr, nb, qi, di, cols, 2, yi, ldy); break;
            case 3: row_q8_0(wr, nb, qi, di, cols, 3, yi, ldy); break;
            default: row_q8_0(wr, nb, qi, di, cols, 4, yi, ldy); break;
            }
        }
    }
}

const t2_kernels t2_kernels_avx512 = {"avx512", f32_avx512, bf16_avx512, q8_0_avx512};
