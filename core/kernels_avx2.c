/* AVX2 + FMA (+ F16C for Q8_0 scales) kernels, compiled with target
 * attributes so the build needs no -march flag; used only when the CPU
 * has these features (kernels.c). For each weight row, up to 4 rows of X
 * are computed together so the row is read from memory once. */
#include <immintrin.h>

#include "dtype.h"
#include "kernels.h"

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

/* One weight row against nx (1..4) rows of x. ELEM is the weight type. */
#define DEFINE_ROW(NAME, WT, LOADW, TO_F32)                                                        \
    INLINE void NAME(const WT *wr, int cols, const float *x, int nx, float *y, size_t ldy)         \
    {                                                                                              \
        __m256 acc[MAX_NX][2];                                                                     \
        for (int i = 0; i < MAX_NX; i++)                                                           \
            acc[i][0] = acc[i][1] = _mm256_setzero_ps();                                           \
        int c = 0;                                                                                 \
        for (; c + 16 <= cols; c += 16) {                                                          \
            __m256 w0 = LOADW(wr + c), w1 = LOADW(wr + c + 8);                                     \
            for (int i = 0; i < nx; i++) {                                                         \
                const float *xi = x + (size_t)i * (size_t)cols + c;                                \
                acc[i][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xi), acc[i][0]);                   \
                acc[i][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xi + 8), acc[i][1]);               \
            }                                                                                      \
        }                                                                                          \
        for (int i = 0; i < nx; i++) {                                                             \
            const float *xi = x + (size_t)i * (size_t)cols;                                        \
            float s = hsum256(_mm256_add_ps(acc[i][0], acc[i][1]));                                \
            for (int k = c; k < cols; k++)                                                         \
                s += TO_F32(wr[k]) * xi[k];                                                        \
            y[(size_t)i * ldy] = s;                                                                \
        }                                                                                          \
    }

#define F32_ID(v) (v)
DEFINE_ROW(row_f32, float, _mm256_loadu_ps, F32_ID)
DEFINE_ROW(row_bf16, uint16_t, load_bf16, t2_bf16_to_f32)

TARGET static void f32_avx2(const float *w, size_t ldw, int rows, int cols, const float *x, int n,
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

TARGET static void bf16_avx2(const uint16_t *w, size_t ldw, int rows, int cols, const float *x,
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
        const uint8_t *blk = wr + (size_t)b * T2_Q8_0_BYTES;
        float dw = _cvtsh_ss(t2_load_u16(blk));
        __m256i qw = _mm256_loadu_si256((const __m256i *)(const void *)(blk + 2));
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
