/* AVX2 + FMA (+ F16C for Q8_0 scales) kernels, compiled with target
 * attributes so the build needs no -march flag; used only when the CPU
 * has these features (kernels.c). f32/bf16 work in tiles of 2 weight rows
 * by up to 4 rows of X, Q8_0 one weight row against up to 4 rows of X
 * (kernels_q8.h), so every weight row is read from memory once. */
#include <immintrin.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "dtype.h"
#include "kernels.h"
#include "kernels_attn16.h"
#include "kernels_exp.h"
#include "kernels_q8.h"
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
T2_DEFINE_TILED(tiled_f32, tile_f32, 2, float)
T2_DEFINE_TILED(tiled_bf16, tile_bf16, 2, float)

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

/* Exact int32 sums of 4-byte groups of w·x: w as stored (q + 128), x
 * signed. maddubs wants an unsigned operand, so the weights go back to
 * signed q and |x| multiplies q with x's sign (llama.cpp's trick; |x| <=
 * 127 keeps the 16-bit pair sums from saturating). */
INLINE __m256i dot_i8(__m256i w, __m256i x)
{
    __m256i q = _mm256_xor_si256(w, _mm256_set1_epi8((char)0x80));
    __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(q, x));
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

/* Lanes 0..n-1 of 8 (n may be <= 0 or > 8), for maskload. */
INLINE __m256i lanes(int n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0));
}

/* One weight row against nx rows of x (kernels_q8.h), one group of 16
 * blocks at a time as two halves of 8 (lane j = block j):
 * per half, the int32 sums of the group's 8 loads accumulate exactly, and
 * are scaled once. A short last group loads only its blocks' lanes. */
INLINE void row_q8_0(const uint8_t *wr, size_t ldw, int nb, const int8_t *xq, size_t ldq,
                     const int32_t *xsum, const float *xd, const int nx, float *y, size_t ldy)
{
    (void)ldw, (void)xsum; /* no prefetch; the weights go back to signed */
    int ng = t2_q8_0_groups(nb);
    __m256 acc[MAX_NX];
    for (int i = 0; i < MAX_NX; i++)
        acc[i] = _mm256_setzero_ps();
    for (int g = 0; g < ng; g++) {
        int m = t2_q8_0_group_blocks(nb, g), full = m == T2_Q8_0_GROUP;
        const uint8_t *wg = wr + t2_q8_0_group_offset(g);
        __m256i lo = lanes(m), hi = lanes(m - 8);
        __m256i slo[MAX_NX], shi[MAX_NX];
        for (int i = 0; i < nx; i++)
            slo[i] = shi[i] = _mm256_setzero_si256();
        for (int u = 0; u < 8; u++) {
            const int *p = (const int *)(const void *)(wg + 4 * m * u);
            __m256i wlo = full ? _mm256_loadu_si256((const __m256i *)(const void *)p)
                               : _mm256_maskload_epi32(p, lo);
            __m256i whi = full ? _mm256_loadu_si256((const __m256i *)(const void *)(p + 8))
                               : _mm256_maskload_epi32(p + 8, hi);
            for (int i = 0; i < nx; i++) {
                const int8_t *xg = xq + (size_t)i * ldq + (size_t)g * T2_Q8_0_GROUP_X + 64 * u;
                slo[i] = _mm256_add_epi32(
                    slo[i], dot_i8(wlo, _mm256_loadu_si256((const __m256i *)(const void *)xg)));
                shi[i] = _mm256_add_epi32(
                    shi[i],
                    dot_i8(whi, _mm256_loadu_si256((const __m256i *)(const void *)(xg + 32))));
            }
        }
        uint16_t sc[T2_Q8_0_GROUP] = {0};
        memcpy(sc, t2_q8_0_row_scale(wr, nb, T2_Q8_0_GROUP * g), 2 * (size_t)m);
        __m256 dlo = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)sc));
        __m256 dhi = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(sc + 8)));
        for (int i = 0; i < nx; i++) {
            const float *dx = xd + (size_t)i * (size_t)nb + T2_Q8_0_GROUP * g;
            __m256 xlo = _mm256_maskload_ps(dx, lo), xhi = _mm256_maskload_ps(dx + 8, hi);
            acc[i] = _mm256_fmadd_ps(_mm256_mul_ps(dlo, xlo), _mm256_cvtepi32_ps(slo[i]), acc[i]);
            acc[i] = _mm256_fmadd_ps(_mm256_mul_ps(dhi, xhi), _mm256_cvtepi32_ps(shi[i]), acc[i]);
        }
    }
    for (int i = 0; i < nx; i++)
        y[(size_t)i * ldy] = hsum256(acc[i]);
}

INLINE void rows_q8_0(const uint8_t *w, size_t ldw, int rows, int nb, const int8_t *xq,
                      const int32_t *xsum, const float *xd, float *y)
{
    for (int r = 0; r < rows; r++)
        row_q8_0(w + (size_t)r * ldw, ldw, nb, xq, 0, xsum, xd, 1, y + r, 1);
}

T2_DEFINE_Q8_ROWS(q8_0_rows, rows_q8_0, row_q8_0)

TARGET static void q8_0_avx2(const uint8_t *w, size_t ldw, int rows, int cols, const t2_q8_act *x,
                             int n, float *y, size_t ldy)
{
    q8_0_rows(w, ldw, rows, cols, x, n, y, ldy);
}

/* exp(x) for x in [-87.3, 88.3] (callers clamp) as kernels_exp.h says,
 * 2^n built in the exponent bits (n in [-126, 127]: a normal float). */
INLINE __m256 exp_avx2(__m256 x)
{
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(T2_EXP_LOG2E)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(T2_EXP_LN2_HI), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(T2_EXP_LN2_LO), r);
    __m256 p = _mm256_set1_ps(t2_exp_poly[0]);
    for (int i = 1; i < T2_EXP_DEGREE; i++)
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(t2_exp_poly[i]));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

INLINE __m256 silu_mul8(__m256 v, __m256 w)
{
    __m256 x = _mm256_sub_ps(_mm256_setzero_ps(), v);
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
    __m256 den = _mm256_add_ps(_mm256_set1_ps(1.0f), exp_avx2(x));
    return _mm256_mul_ps(_mm256_div_ps(v, den), w);
}

/* Lanes [0, left) of 8 as a maskload / maskstore mask. */
INLINE __m256i lanes_below(int left)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(left), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* Whole vectors by plain loads and stores (vmaskmovps stores are slow on
 * some AMD cores, and valgrind emulates masked moves slowly); the last
 * n % 8 values through masks, so every value gets the same arithmetic.
 * Below -88.3, exp(-g) is clamped to 2.2e38 (the result: ~g / 2.2e38
 * instead of -0); above 87.3 to 1.2e-38 (the result: g, as libm's). */
/* ---- the transposed bf16 product (bf16_t) ---- */

/* Columns c..c+15 for nx <= 4 rows of x already widened, xf[k * 4 + i],
 * as bf16_t_cols_wide in the AVX-512 file (even and odd columns by a
 * shift and a mask, interleaved when stored); stored to y, or added
 * (add); a short last strip goes through a zero-padded copy of the row. */
INLINE void bf16_t_cols(const uint16_t *w, size_t ldw, int rows, int c, int cols, const float *xf,
                        int nx, float *y, size_t ldy, bool add)
{
    __m256 even[4], odd[4];
    for (int i = 0; i < nx; i++)
        even[i] = odd[i] = _mm256_setzero_ps();
    const __m256i high = _mm256_set1_epi32((int)0xffff0000u);
    const char *wp = (const char *)w + (size_t)c * sizeof(uint16_t);
    for (int k = 0; k < rows; k++, wp += ldw, xf += 4) {
        _mm_prefetch(wp + 8 * ldw, _MM_HINT_T0);
        __m256i raw;
        if (cols >= 16) {
            raw = _mm256_loadu_si256((const __m256i *)(const void *)wp);
        } else {
            uint16_t tail[16] = {0};
            memcpy(tail, wp, (size_t)cols * sizeof *tail);
            raw = _mm256_loadu_si256((const __m256i *)(const void *)tail);
        }
        __m256 e = _mm256_castsi256_ps(_mm256_slli_epi32(raw, 16));
        __m256 o = _mm256_castsi256_ps(_mm256_and_si256(raw, high));
        for (int i = 0; i < nx; i++) {
            __m256 xv = _mm256_broadcast_ss(xf + i);
            even[i] = _mm256_fmadd_ps(xv, e, even[i]);
            odd[i] = _mm256_fmadd_ps(xv, o, odd[i]);
        }
    }
    for (int i = 0; i < nx; i++) {
        __m256 lo = _mm256_unpacklo_ps(even[i], odd[i]); /* columns 0-3, 8-11 */
        __m256 hi = _mm256_unpackhi_ps(even[i], odd[i]); /* 4-7, 12-15 */
        float out[16];
        _mm256_storeu_ps(out, _mm256_permute2f128_ps(lo, hi, 0x20));
        _mm256_storeu_ps(out + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
        float *yc = y + (size_t)i * ldy + c;
        for (int j = 0; j < (cols < 16 ? cols : 16); j++)
            yc[j] = add ? yc[j] + out[j] : out[j];
    }
}

/* the most rows of w per block of bf16_t_avx2 (xf's size) */
#define BF16_T_BLOCK_ROWS 512

/* Blocks of rows of w (t2_bf16_t_block_rows), each walked across all
 * its columns before the next, and in each, every group of 4 rows of x
 * widened once into xf (k-major) for all of the block's column strips;
 * blocks after the first add to y. */
TARGET static void bf16_t_avx2(const uint16_t *w, size_t ldw, int rows, int c0, int c1,
                               const uint16_t *x, size_t ldx, int n, float *y, size_t ldy)
{
    float xf[BF16_T_BLOCK_ROWS * 4];
    int block = t2_bf16_t_block_rows(ldw, BF16_T_BLOCK_ROWS);
    for (int k0 = 0; k0 < rows; k0 += block) {
        int kn = rows - k0 < block ? rows - k0 : block;
        const uint16_t *wk = (const uint16_t *)(const void *)((const char *)w + (size_t)k0 * ldw);
        bool add = k0 > 0;
        for (int i0 = 0; i0 < n; i0 += 4) {
            int nx = n - i0 < 4 ? n - i0 : 4;
            for (int k = 0; k < kn; k++)
                for (int i = 0; i < nx; i++)
                    xf[k * 4 + i] = t2_bf16_to_f32(x[(size_t)(i0 + i) * ldx + (size_t)(k0 + k)]);
            float *yi = y + (size_t)i0 * ldy;
            for (int c = c0; c < c1; c += 16) {
                int cols = c1 - c;
                switch (nx) {
                case 1: bf16_t_cols(wk, ldw, kn, c, cols, xf, 1, yi, ldy, add); break;
                case 2: bf16_t_cols(wk, ldw, kn, c, cols, xf, 2, yi, ldy, add); break;
                case 3: bf16_t_cols(wk, ldw, kn, c, cols, xf, 3, yi, ldy, add); break;
                default: bf16_t_cols(wk, ldw, kn, c, cols, xf, 4, yi, ldy, add); break;
                }
            }
        }
    }
}

TARGET static void silu_mul_avx2(float *g, const float *u, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(g + i, silu_mul8(_mm256_loadu_ps(g + i), _mm256_loadu_ps(u + i)));
    if (i < n) {
        __m256i m = lanes_below((int)(n - i));
        __m256 v = silu_mul8(_mm256_maskload_ps(g + i, m), _mm256_maskload_ps(u + i, m));
        _mm256_maskstore_ps(g + i, m, v);
    }
}

/* A row's 8 columns from c: plain load when all lie before d. */
INLINE __m256 load_cols8(const float *row, int c, int d)
{
    return c + 8 <= d ? _mm256_loadu_ps(row + c) : _mm256_maskload_ps(row + c, lanes_below(d - c));
}

/* 8 columns from c of row `at` (floats, or f16 when half), zero past d;
 * f16 tails go through a zeroed copy (no 16-bit masked loads in AVX2) */
INLINE __m256 load_any8(const void *row, size_t at, int c, int d, bool half)
{
    if (!half)
        return load_cols8((const float *)row + at, c, d);
    const uint16_t *h = (const uint16_t *)row + at + c;
    if (c + 8 <= d)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)h));
    uint16_t tail[8] = {0};
    if (c < d)
        memcpy(tail, h, (size_t)(d - c) * sizeof *h);
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)tail));
}

/* As attn_scores_avx512: four positions at a time. */
INLINE void attn_scores_any(const void *k, size_t ld, int n, int d, const float *q, float scale,
                            float *s, bool half)
{
    int p = 0;
    for (; p + 4 <= n; p += 4) {
        size_t k0 = (size_t)p * ld;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int c = 0; c < d; c += 8) {
            __m256 qv = load_cols8(q, c, d);
            a0 = _mm256_fmadd_ps(load_any8(k, k0, c, d, half), qv, a0);
            a1 = _mm256_fmadd_ps(load_any8(k, k0 + ld, c, d, half), qv, a1);
            a2 = _mm256_fmadd_ps(load_any8(k, k0 + 2 * ld, c, d, half), qv, a2);
            a3 = _mm256_fmadd_ps(load_any8(k, k0 + 3 * ld, c, d, half), qv, a3);
        }
        s[p] = scale * hsum256(a0);
        s[p + 1] = scale * hsum256(a1);
        s[p + 2] = scale * hsum256(a2);
        s[p + 3] = scale * hsum256(a3);
    }
    for (; p < n; p++) {
        __m256 a = _mm256_setzero_ps();
        for (int c = 0; c < d; c += 8)
            a = _mm256_fmadd_ps(load_any8(k, (size_t)p * ld, c, d, half), load_cols8(q, c, d), a);
        s[p] = scale * hsum256(a);
    }
}

/* As attn_mix_avx512, 32 columns at a time. */
INLINE void attn_mix_any(const void *v, size_t ld, int n, int d, const float *w, float scale,
                         float *out, bool half)
{
    for (int c = 0; c < d; c += 32) {
        __m256 a[4], b[4];
        for (int i = 0; i < 4; i++)
            a[i] = b[i] = _mm256_setzero_ps();
        int p = 0;
        for (; p + 2 <= n; p += 2) {
            size_t v0 = (size_t)p * ld, v1 = v0 + ld;
            __m256 w0 = _mm256_set1_ps(w[p]), w1 = _mm256_set1_ps(w[p + 1]);
            for (int i = 0; i < 4; i++) {
                a[i] = _mm256_fmadd_ps(w0, load_any8(v, v0, c + 8 * i, d, half), a[i]);
                b[i] = _mm256_fmadd_ps(w1, load_any8(v, v1, c + 8 * i, d, half), b[i]);
            }
        }
        if (p < n) {
            __m256 w0 = _mm256_set1_ps(w[p]);
            for (int i = 0; i < 4; i++)
                a[i] = _mm256_fmadd_ps(w0, load_any8(v, (size_t)p * ld, c + 8 * i, d, half), a[i]);
        }
        __m256 sc = _mm256_set1_ps(scale);
        for (int i = 0; i < 4; i++) {
            int col = c + 8 * i;
            __m256 r = _mm256_mul_ps(sc, _mm256_add_ps(a[i], b[i]));
            if (col + 8 <= d)
                _mm256_storeu_ps(out + col, r);
            else if (col < d)
                _mm256_maskstore_ps(out + col, lanes_below(d - col), r);
        }
    }
}

TARGET static void attn_scores_avx2(const float *k, size_t ld, int n, int d, const float *q,
                                    float scale, float *s)
{
    attn_scores_any(k, ld, n, d, q, scale, s, false);
}

TARGET static void attn_mix_avx2(const float *v, size_t ld, int n, int d, const float *w,
                                 float scale, float *out)
{
    attn_mix_any(v, ld, n, d, w, scale, out, false);
}

TARGET static void attn_scores_f16_avx2(const uint16_t *k, size_t ld, int n, int d, const float *q,
                                        float scale, float *s)
{
    attn_scores_any(k, ld, n, d, q, scale, s, true);
}

TARGET static void attn_mix_f16_avx2(const uint16_t *v, size_t ld, int n, int d, const float *w,
                                     float scale, float *out)
{
    attn_mix_any(v, ld, n, d, w, scale, out, true);
}

/* exp(s - mx) of 8 values, 0 below -87.3 (where exp_avx2 would clamp), as
 * libm's expf gives for a masked position's -inf. */
INLINE __m256 exp_shift8(__m256 s, __m256 mx)
{
    const __m256 lo = _mm256_set1_ps(-87.3f);
    __m256 x = _mm256_sub_ps(s, mx);
    __m256 keep = _mm256_cmp_ps(x, lo, _CMP_GE_OQ);
    return _mm256_and_ps(exp_avx2(_mm256_max_ps(x, lo)), keep);
}

TARGET static float exp_shift_avx2(float *s, int n, float mx)
{
    __m256 sum = _mm256_setzero_ps(), vmx = _mm256_set1_ps(mx);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp_shift8(_mm256_loadu_ps(s + i), vmx);
        _mm256_storeu_ps(s + i, e);
        sum = _mm256_add_ps(sum, e);
    }
    if (i < n) {
        __m256i m = lanes_below(n - i);
        __m256 e =
            _mm256_and_ps(exp_shift8(_mm256_maskload_ps(s + i, m), vmx), _mm256_castsi256_ps(m));
        _mm256_maskstore_ps(s + i, m, e);
        sum = _mm256_add_ps(sum, e);
    }
    return hsum256(sum);
}

/* ---- attn16 (kernels.h): 16 queries as two 8-lane halves ----
 * As attn16_avx512 with half the registers: 4 keys in flight for the
 * scores, 2 queries x 32 columns per mix step. */

enum { KEY_STEP = 4, MIX_KEYS = 64, MIX_COLS = 32, MIX_Q = 2 };

/* d values of row p as floats into dst, whole vectors of 8 (dst has room
 * for d rounded up to 8: the next row's widening overwrites the rest). */
INLINE void widen_row8(const void *rows, size_t ld, int p, int d, float *dst, bool half)
{
    for (int c = 0; c < d; c += 8)
        _mm256_storeu_ps(dst + c, load_any8(rows, (size_t)p * ld, c, d, half));
}

INLINE void scores16_keys(const float *k, size_t ld, int d, const float *qt, const int nk, float *s)
{
    __m256 lo[KEY_STEP], hi[KEY_STEP];
    for (int i = 0; i < KEY_STEP; i++)
        lo[i] = hi[i] = _mm256_setzero_ps();
    for (int c = 0; c < d; c++) {
        __m256 ql = _mm256_load_ps(qt + T2_ATTN_LANES * c);
        __m256 qh = _mm256_load_ps(qt + T2_ATTN_LANES * c + 8);
        for (int i = 0; i < nk; i++) {
            __m256 kv = _mm256_broadcast_ss(k + (size_t)i * ld + (size_t)c);
            lo[i] = _mm256_fmadd_ps(kv, ql, lo[i]);
            hi[i] = _mm256_fmadd_ps(kv, qh, hi[i]);
        }
    }
    for (int i = 0; i < nk; i++) {
        _mm256_store_ps(s + T2_ATTN_LANES * i, lo[i]);
        _mm256_store_ps(s + T2_ATTN_LANES * i + 8, hi[i]);
    }
}

INLINE void scores16_rows(const float *k, size_t ld, int nk, int d, const float *qt, float *s)
{
    int p = 0;
    for (; p + KEY_STEP <= nk; p += KEY_STEP)
        scores16_keys(k + (size_t)p * ld, ld, d, qt, KEY_STEP, s + (size_t)T2_ATTN_LANES * p);
    for (; p < nk; p++)
        scores16_keys(k + (size_t)p * ld, ld, d, qt, 1, s + (size_t)T2_ATTN_LANES * p);
}

T2_DEFINE_SCORES16(scores16, scores16_rows, widen_row8, 8)

/* Masks, then exp(s - each lane's max) in place; one over each lane's
 * sum into inv[16]. */
INLINE void softmax16(float *s, int nmax, const int *n, int nq, int gap_from, int gap_to,
                      float *inv)
{
    int lim[T2_ATTN_LANES], nmin = t2_attn16_limits(n, nq, nmax, lim);
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    __m256i ll = _mm256_loadu_si256((const __m256i *)(const void *)lim);
    __m256i lh = _mm256_loadu_si256((const __m256i *)(const void *)(lim + 8));
    for (int p = nmin; p < nmax; p++) {
        float *sp = s + T2_ATTN_LANES * p;
        __m256i vp = _mm256_set1_epi32(p);
        __m256 kl = _mm256_castsi256_ps(_mm256_cmpgt_epi32(ll, vp));
        __m256 kh = _mm256_castsi256_ps(_mm256_cmpgt_epi32(lh, vp));
        _mm256_store_ps(sp, _mm256_blendv_ps(ninf, _mm256_load_ps(sp), kl));
        _mm256_store_ps(sp + 8, _mm256_blendv_ps(ninf, _mm256_load_ps(sp + 8), kh));
    }
    for (int p = gap_from < 0 ? 0 : gap_from; p < gap_to && p < nmax; p++) {
        _mm256_store_ps(s + T2_ATTN_LANES * p, ninf);
        _mm256_store_ps(s + T2_ATTN_LANES * p + 8, ninf);
    }
    __m256 ml = ninf, mh = ninf;
    for (int p = 0; p < nmax; p++) {
        ml = _mm256_max_ps(ml, _mm256_load_ps(s + T2_ATTN_LANES * p));
        mh = _mm256_max_ps(mh, _mm256_load_ps(s + T2_ATTN_LANES * p + 8));
    }
    __m256 sl = _mm256_setzero_ps(), sh = _mm256_setzero_ps();
    for (int p = 0; p < nmax; p++) {
        float *sp = s + T2_ATTN_LANES * p;
        __m256 el = exp_shift8(_mm256_load_ps(sp), ml), eh = exp_shift8(_mm256_load_ps(sp + 8), mh);
        _mm256_store_ps(sp, el);
        _mm256_store_ps(sp + 8, eh);
        sl = _mm256_add_ps(sl, el);
        sh = _mm256_add_ps(sh, eh);
    }
    _mm256_storeu_ps(inv, _mm256_div_ps(_mm256_set1_ps(1.0f), sl));
    _mm256_storeu_ps(inv + 8, _mm256_div_ps(_mm256_set1_ps(1.0f), sh));
}

/* out[j][c0 + ...] for nj (1..MIX_Q) queries from j0 over nk value rows
 * (row p at v + p * ld, its columns c.., zero from dd on). */
INLINE void mix16_block(const float *v, size_t ld, int c, int dd, int nk, int c0, int d,
                        const float *w, int j0, const int nj, float *const *out, bool first,
                        bool last, const float *inv)
{
    __m256 acc[MIX_Q][MIX_COLS / 8];
    for (int q = 0; q < MIX_Q; q++)
        for (int i = 0; i < MIX_COLS / 8; i++)
            acc[q][i] = _mm256_setzero_ps();
    for (int p = 0; p < nk; p++) {
        __m256 vv[MIX_COLS / 8];
        for (int i = 0; i < MIX_COLS / 8; i++)
            vv[i] = load_cols8(v + (size_t)p * ld, c + 8 * i, dd);
        for (int q = 0; q < nj; q++) {
            __m256 wq = _mm256_broadcast_ss(w + T2_ATTN_LANES * p + j0 + q);
            for (int i = 0; i < MIX_COLS / 8; i++)
                acc[q][i] = _mm256_fmadd_ps(wq, vv[i], acc[q][i]);
        }
    }
    for (int q = 0; q < nj; q++) {
        float *o = out[j0 + q];
        __m256 sc = _mm256_set1_ps(inv[j0 + q]);
        for (int i = 0; i < MIX_COLS / 8; i++) {
            int col = c0 + 8 * i;
            __m256 a = acc[q][i];
            if (!first)
                a = _mm256_add_ps(a, load_cols8(o, col, d));
            if (last)
                a = _mm256_mul_ps(a, sc);
            if (col + 8 <= d)
                _mm256_storeu_ps(o + col, a);
            else if (col < d)
                _mm256_maskstore_ps(o + col, lanes_below(d - col), a);
        }
    }
}

INLINE void mix16(const void *v, size_t ld, int n, int d, const float *w, int nq, const float *inv,
                  float *const *out, bool half)
{
    float vb[MIX_KEYS * MIX_COLS + 8];
    for (int c0 = 0; c0 < d; c0 += MIX_COLS) {
        int cols = d - c0 < MIX_COLS ? d - c0 : MIX_COLS;
        for (int p0 = 0; p0 < n; p0 += MIX_KEYS) {
            int nk = n - p0 < MIX_KEYS ? n - p0 : MIX_KEYS;
            const float *vr = vb;
            size_t ldv = MIX_COLS;
            int c = 0, dd = cols;
            if (half) {
                const uint16_t *vh = (const uint16_t *)v + (size_t)p0 * ld + c0;
                for (int p = 0; p < nk; p++)
                    widen_row8(vh, ld, p, cols, vb + (size_t)p * MIX_COLS, true);
            } else {
                vr = (const float *)v + (size_t)p0 * ld;
                ldv = ld;
                c = c0;
                dd = d;
            }
            const float *wb = w + (size_t)T2_ATTN_LANES * (size_t)p0;
            bool first = p0 == 0, last = p0 + nk >= n;
            for (int j0 = 0; j0 < nq; j0 += MIX_Q) {
                if (nq - j0 >= 2)
                    mix16_block(vr, ldv, c, dd, nk, c0, d, wb, j0, 2, out, first, last, inv);
                else
                    mix16_block(vr, ldv, c, dd, nk, c0, d, wb, j0, 1, out, first, last, inv);
            }
        }
    }
}

INLINE void attn16_any(const void *k, const void *v, size_t ld, int d, const float *qt, int nq,
                       const int *n, int gap_from, int gap_to, float *s, float *const *out,
                       bool half)
{
    int nmax = t2_attn16_keys(n, nq);
    scores16(k, ld, nmax, d, qt, s, half);
    float inv[T2_ATTN_LANES];
    softmax16(s, nmax, n, nq, gap_from, gap_to, inv);
    mix16(v, ld, nmax, d, s, nq, inv, out, half);
}

TARGET static void attn16_avx2(const float *k, const float *v, size_t ld, int d, const float *qt,
                               int nq, const int *n, int gap_from, int gap_to, float *s,
                               float *const *out)
{
    attn16_any(k, v, ld, d, qt, nq, n, gap_from, gap_to, s, out, false);
}

TARGET static void attn16_f16_avx2(const uint16_t *k, const uint16_t *v, size_t ld, int d,
                                   const float *qt, int nq, const int *n, int gap_from, int gap_to,
                                   float *s, float *const *out)
{
    attn16_any(k, v, ld, d, qt, nq, n, gap_from, gap_to, s, out, true);
}

/* max(lo, v) and min(hi, v) return v when v is NaN (the second operand) */
TARGET void t2_f16_store_f16c(const float *x, size_t n, uint16_t *out)
{
    const __m256 hi = _mm256_set1_ps(65504.0f), lo = _mm256_set1_ps(-65504.0f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_min_ps(hi, _mm256_max_ps(lo, _mm256_loadu_ps(x + i)));
        _mm_storeu_si128((__m128i *)(void *)(out + i),
                         _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    for (; i < n; i++) {
        __m128 v =
            _mm_min_ss(_mm_set_ss(65504.0f), _mm_max_ss(_mm_set_ss(-65504.0f), _mm_set_ss(x[i])));
        out[i] = (uint16_t)_mm_extract_epi16(
            _mm_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), 0);
    }
}

const t2_kernels t2_kernels_avx2 = {"avx2",
                                    f32_avx2,
                                    bf16_avx2,
                                    q8_0_avx2,
                                    t2_q8_act_quantize,
                                    NULL,
                                    bf16_t_avx2,
                                    silu_mul_avx2,
                                    attn_scores_avx2,
                                    attn_mix_avx2,
                                    exp_shift_avx2,
                                    t2_f16_store_f16c,
                                    attn_scores_f16_avx2,
                                    attn_mix_f16_avx2,
                                    attn16_avx2,
                                    attn16_f16_avx2,
                                    16,
                                    16,
                                    0,
                                    NULL,
                                    0,
                                    t2_rank_add_scalar};
