/* AVX2 + FMA (+ F16C for Q8_0 scales) kernels, compiled with target
 * attributes so the build needs no -march flag; used only when the CPU
 * has these features (kernels.c). f32/bf16 work in tiles of 2 weight rows
 * by up to 4 rows of X, Q8_0 one weight row against up to 4 rows of X,
 * so every weight row is read from memory once. */
#include <immintrin.h>

#include "dtype.h"
#include "kernels.h"
#include "kernels_tiled.h"

#define TARGET __attribute__((target("avx2,fma,f16c")))
#define INLINE TARGET static inline __attribute__((always_inline))
#define MAX_NX 4

INLINE float hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 8 bf16 -> 8 floats: a bf16 is the top half of a float */
INLINE __m256 load_bf16(const uint16_t *p)
{
    __m128i h = _mm_loadu_si128((const __m128i *)(const void *)p);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* A tile of nw (1..2) weight rows against nx (1..4) rows of x, one
 * accumulator per pair (8 of the 16 registers): each weight vector is
 * loaded once for all nx rows of x and each x vector once for both weight
 * rows, 6 loads per 8 FMAs instead of 10 (one row against 4 rows of x).
 * The columns past the last multiple of 8 are added one by one. */
#define DEFINE_TILE(NAME, WT, LOADW, TO_F32)                                                       \
    INLINE void NAME(const char *w, size_t ldw, int cols, const float *x, size_t ldx, int nw,      \
                     int nx, const char *pf, float *y, size_t ldy)                                 \
    {                                                                                              \
        (void)pf; /* software prefetch gave AVX2 nothing (docs/PERFORMANCE.md) */                  \
        __m256 acc[2][MAX_NX];                                                                     \
        for (int r = 0; r < 2; r++)                                                                \
            for (int i = 0; i < MAX_NX; i++)                                                       \
                acc[r][i] = _mm256_setzero_ps();                                                   \
        int c = 0;                                                                                 \
        for (; c + 8 <= cols; c += 8) {                                                            \
            __m256 wv[2];                                                                          \
            for (int r = 0; r < nw; r++)                                                           \
                wv[r] = LOADW((const WT *)(const void *)(w + (size_t)r * ldw) + c);                \
            for (int i = 0; i < nx; i++) {                                                         \
                __m256 xv = _mm256_loadu_ps(x + (size_t)i * ldx + c);                              \
                for (int r = 0; r < nw; r++)                                                       \
                    acc[r][i] = _mm256_fmadd_ps(wv[r], xv, acc[r][i]);                             \
            }                                                                                      \
        }                                                                                          \
        for (int r = 0; r < nw; r++) {                                                             \
            const WT *wr = (const WT *)(const void *)(w + (size_t)r * ldw);                        \
            for (int i = 0; i < nx; i++) {                                                         \
                const float *xi = x + (size_t)i * ldx;                                             \
                float s = hsum256(acc[r][i]);                                                      \
                for (int k = c; k < cols; k++)                                                     \
                    s += TO_F32(wr[k]) * xi[k];                                                    \
                y[(size_t)i * ldy + (size_t)r] = s;                                                \
            }                                                                                      \
        }                                                                                          \
    }

#define F32_ID(v) (v)
DEFINE_TILE(tile_f32, float, _mm256_loadu_ps, F32_ID)
DEFINE_TILE(tile_bf16, uint16_t, load_bf16, t2_bf16_to_f32)

/* One weight row against one row of x (decode): two accumulators over 16
 * columns per step, which runs faster than a 2 x 1 tile's two chains of 8
 * (in cache: f32 16.5 vs 15.0, bf16 18.6 vs 16.0 GMAC/s, one Zen 4 core). */
#define DEFINE_ROW1(NAME, WT, LOADW, TO_F32)                                                       \
    INLINE void NAME(const WT *wr, int cols, const float *x, float *y)                             \
    {                                                                                              \
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();                                 \
        int c = 0;                                                                                 \
        for (; c + 16 <= cols; c += 16) {                                                          \
            a0 = _mm256_fmadd_ps(LOADW(wr + c), _mm256_loadu_ps(x + c), a0);                       \
            a1 = _mm256_fmadd_ps(LOADW(wr + c + 8), _mm256_loadu_ps(x + c + 8), a1);               \
        }                                                                                          \
        float s = hsum256(_mm256_add_ps(a0, a1));                                                  \
        for (; c < cols; c++)                                                                      \
            s += TO_F32(wr[c]) * x[c];                                                             \
        *y = s;                                                                                    \
    }

DEFINE_ROW1(row1_f32, float, _mm256_loadu_ps, F32_ID)
DEFINE_ROW1(row1_bf16, uint16_t, load_bf16, t2_bf16_to_f32)

/* 2 x 4 tiles (kernels_tiled.h) */
T2_DEFINE_TILED(tiled_f32, tile_f32, 2)
T2_DEFINE_TILED(tiled_bf16, tile_bf16, 2)

TARGET static void f32_avx2(const float *w, size_t ldw, int rows, int cols, const float *x, int n,
                            float *y, size_t ldy)
{
    if (n == 1) {
        for (int r = 0; r < rows; r++)
            row1_f32((const float *)(const void *)((const char *)w + (size_t)r * ldw), cols, x,
                     y + r);
        return;
    }
    tiled_f32((const char *)w, ldw, rows, cols, x, n, y, ldy);
}

TARGET static void bf16_avx2(const uint16_t *w, size_t ldw, int rows, int cols, const float *x,
                             int n, float *y, size_t ldy)
{
    if (n == 1) {
        for (int r = 0; r < rows; r++)
            row1_bf16((const uint16_t *)(const void *)((const char *)w + (size_t)r * ldw), cols, x,
                      y + r);
        return;
    }
    tiled_bf16((const char *)w, ldw, rows, cols, x, n, y, ldy);
}

/* Exact int32 sums of 4-byte groups of w·x (signed x signed): maddubs
 * wants an unsigned operand, so |x| times w with x's sign (llama.cpp's
 * trick; |x| <= 127 keeps the 16-bit pair sums from saturating). */
INLINE __m256i dot_i8(__m256i w, __m256i x)
{
    __m256i ax = _mm256_sign_epi8(x, x);
    __m256i sw = _mm256_sign_epi8(w, x);
    __m256i p16 = _mm256_maddubs_epi16(ax, sw);
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

INLINE void row_q8_0(const uint8_t *wr, int nb, const int8_t *xq, const float *xd, int cols, int nx,
                     float *y, size_t ldy)
{
    __m256 acc[MAX_NX];
    for (int i = 0; i < MAX_NX; i++)
        acc[i] = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        float dw = _cvtsh_ss(t2_load_u16(t2_q8_0_row_scale(wr, nb, b)));
        __m256i qw = _mm256_loadu_si256((const __m256i *)(const void *)t2_q8_0_row_quants(wr, b));
        for (int i = 0; i < nx; i++) {
            const int8_t *qx = xq + (size_t)i * (size_t)cols + (size_t)b * T2_Q8_0_BLOCK;
            __m256i d = dot_i8(qw, _mm256_loadu_si256((const __m256i *)(const void *)qx));
            __m256 scale = _mm256_set1_ps(dw * xd[(size_t)i * (size_t)nb + (size_t)b]);
            acc[i] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(d), acc[i]);
        }
    }
    for (int i = 0; i < nx; i++)
        y[(size_t)i * ldy] = hsum256(acc[i]);
}

TARGET static void q8_0_avx2(const uint8_t *w, size_t ldw, int rows, int cols, const int8_t *xq,
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

const t2_kernels t2_kernels_avx2 = {"avx2", f32_avx2, bf16_avx2, q8_0_avx2, t2_q8_act_quantize};
