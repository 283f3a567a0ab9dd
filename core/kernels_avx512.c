/* AVX-512 kernels (F, BW, VL, VNNI), compiled with target attributes so
 * the build needs no -march flag; used only when the CPU has them
 * (kernels.c). f32/bf16 as kernels_avx2.c at twice the width; Q8_0 takes
 * a group's 16 blocks per 512-bit register (lane j = block j, the row
 * layout of kernels.h) and multiplies with VNNI.
 * BF16 weights times float x are widened to float and multiplied in
 * float32 (a bf16 model's products stay exact to float rounding); only
 * bf16_x16, where x is already bf16 (a q8_0 model's factored products),
 * uses AVX512-BF16's dot product, in the avx512bf16 variant at the end. */
#include <immintrin.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "dtype.h"
#include "kernels.h"
#include "kernels_attn16.h"
#include "kernels_exp.h"
#include "kernels_tiled.h"

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

/* Software prefetch: one core keeps only so many cache misses in flight
 * from its out-of-order window, and at one vector operation per few bytes
 * that is below the memory's bandwidth. So while a pair of weight rows is
 * multiplied, the next pair (the next 2 * ldw bytes) is prefetched, two
 * lines per step. Into L2 (T1), not L1: on the device Xeon, smollm2-360m
 * at 2 threads, bf16 decode went from 0.77-0.79 to 0.85-0.90 of the paired
 * bandwidth in four alternating rounds, f32 and q8_0 within the noise
 * (docs/PERFORMANCE.md). T2_NO_PREFETCH turns it off (for measurements). */
#ifndef T2_PREFETCH_HINT
#define T2_PREFETCH_HINT _MM_HINT_T1
#endif
#ifdef T2_NO_PREFETCH
#define PF2(p) ((void)(p))
#define PF1(p) ((void)(p))
#else
#define PF1(p) _mm_prefetch((const char *)(p), T2_PREFETCH_HINT)
#define PF2(p)                                                                                     \
    (_mm_prefetch((const char *)(p), T2_PREFETCH_HINT),                                            \
     _mm_prefetch((const char *)(p) + 64, T2_PREFETCH_HINT))
#endif

/* [sum a, sum b, sum c, sum d], each added up in _mm512_reduce_add_ps's
 * order (the 256-bit halves, then the 128-bit quarters, then (0 + 2) +
 * (1 + 3)), so a tile's outputs are bit-identical to one row's
 * (q8_0_rows_1): a batch decodes each sequence as it would alone. Four
 * sums in 14 operations instead of 4 x 8. */
INLINE __m128 reduce4_ps(__m512 a, __m512 b, __m512 c, __m512 d)
{
    __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                              _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
    __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(1, 0, 1, 0)),
                              _mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(3, 2, 3, 2)));
    /* quarter j: the 4 partial sums of vector j */
    __m512 q = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(ab, cd, _MM_SHUFFLE(3, 1, 3, 1)));
    __m512 t = _mm512_add_ps(q, _mm512_permute_ps(q, _MM_SHUFFLE(1, 0, 3, 2)));
    __m512 r = _mm512_add_ps(t, _mm512_permute_ps(t, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm512_castps512_ps128(_mm512_maskz_compress_ps(0x1111, r));
}

/* A tile's sums into y (row i of x at y + i ldy, weight rows side by
 * side): four weight rows at once (reduce4_ps), else one by one. */
INLINE void store_tile_sums(__m512 acc[][MAX_NX], int nw, int nx, float *y, size_t ldy)
{
    for (int i = 0; i < nx; i++) {
        if (nw == 4)
            _mm_storeu_ps(y + (size_t)i * ldy,
                          reduce4_ps(acc[0][i], acc[1][i], acc[2][i], acc[3][i]));
        else
            for (int r = 0; r < nw; r++)
                y[(size_t)i * ldy + (size_t)r] = _mm512_reduce_add_ps(acc[r][i]);
    }
}

/* A tile of nw (1..4) weight rows against nx (1..4) rows of x, one
 * accumulator per pair: each weight vector loaded (and widened) once for
 * all nx rows of x and each x vector once for all nw weight rows, so a
 * tile of 4 x 4 does 16 FMAs per 8 loads instead of 4 per 5 (one weight
 * row against 4 rows of x), and the rows of x are read from L1 once per 4
 * weight rows. The tail is masked. With pf, the same columns of the nw
 * rows at pf (the next tile) are prefetched as these are read: alone, one
 * core keeps too few misses in flight to stream (see prefetch_ahead). */
#define DEFINE_TILE(NAME, WT, LOADW, LOADW_TAIL)                                                   \
    INLINE void NAME(const char *w, size_t ldw, int cols, const float *x, size_t ldx, int nw,      \
                     int nx, const char *pf, float *y, size_t ldy)                                 \
    {                                                                                              \
        __m512 acc[MAX_NX][MAX_NX];                                                                \
        for (int r = 0; r < MAX_NX; r++)                                                           \
            for (int i = 0; i < MAX_NX; i++)                                                       \
                acc[r][i] = _mm512_setzero_ps();                                                   \
        int c = 0;                                                                                 \
        for (; c + 16 <= cols; c += 16) {                                                          \
            __m512 wv[MAX_NX];                                                                     \
            if (pf)                                                                                \
                for (int r = 0; r < nw; r++)                                                       \
                    PF1(pf + (size_t)r * ldw + (size_t)c * sizeof(WT));                            \
            for (int r = 0; r < nw; r++)                                                           \
                wv[r] = LOADW((const WT *)(const void *)(w + (size_t)r * ldw) + c);                \
            for (int i = 0; i < nx; i++) {                                                         \
                __m512 xv = _mm512_loadu_ps(x + (size_t)i * ldx + c);                              \
                for (int r = 0; r < nw; r++)                                                       \
                    acc[r][i] = _mm512_fmadd_ps(wv[r], xv, acc[r][i]);                             \
            }                                                                                      \
        }                                                                                          \
        if (c < cols) {                                                                            \
            __mmask16 m = (__mmask16)((1u << (cols - c)) - 1u);                                    \
            __m512 wv[MAX_NX];                                                                     \
            for (int r = 0; r < nw; r++)                                                           \
                wv[r] = LOADW_TAIL((const WT *)(const void *)(w + (size_t)r * ldw) + c, m);        \
            for (int i = 0; i < nx; i++) {                                                         \
                __m512 xv = _mm512_maskz_loadu_ps(m, x + (size_t)i * ldx + c);                     \
                for (int r = 0; r < nw; r++)                                                       \
                    acc[r][i] = _mm512_fmadd_ps(wv[r], xv, acc[r][i]);                             \
            }                                                                                      \
        }                                                                                          \
        store_tile_sums(acc, nw, nx, y, ldy);                                                      \
    }

DEFINE_TILE(tile_f32, float, load_f32, load_f32_tail)
DEFINE_TILE(tile_bf16, uint16_t, load_bf16, load_bf16_tail)

/* 4 x 4 tiles (kernels_tiled.h) */
T2_DEFINE_TILED(tiled_f32, tile_f32, 4, float)
T2_DEFINE_TILED(tiled_bf16, tile_bf16, 4, float)

/* How far ahead the one-row kernels prefetch: the next pair of rows, or
 * further for short rows, so that at least T2_PREFETCH_AHEAD bytes are in
 * flight (two rows of 960 q8_0 columns are only 2 KiB, which arrives too
 * late). 8 KiB: of 4, 8 and 16 KiB on the device Xeon (smollm2-360m, 2 and
 * 8 threads, docs/PERFORMANCE.md) 4 KiB was behind at 8 threads and 8 and
 * 16 KiB were within the noise of each other. */
#ifndef T2_PREFETCH_AHEAD
#define T2_PREFETCH_AHEAD 8192
#endif
static inline size_t prefetch_ahead(size_t ldw)
{
    size_t ahead = 2 * ldw;
    while (ahead < T2_PREFETCH_AHEAD)
        ahead += 2 * ldw;
    return ahead;
}

/* One row of X against f32 weights (cols % 32 == 0), as bf16_avx512_1:
 * two weight rows per pass, and the next pair prefetched while these are
 * multiplied (the hardware prefetcher alone keeps too few lines in
 * flight for one core to stream at the memory's rate). */
TARGET static void f32_avx512_1(const float *w, size_t ldw, int rows, int cols, const float *x,
                                float *y)
{
    int nc = cols / 32;
    size_t ahead = prefetch_ahead(ldw);
    int r = 0;
    for (; r + 2 <= rows; r += 2) {
        const char *w0 = (const char *)w + (size_t)r * ldw, *w1 = w0 + ldw;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
        for (int c = 0; c < nc; c++) {
            PF2(w0 + ahead + 256 * c);
            PF2(w0 + ahead + 256 * c + 128);
            const float *u = (const float *)(const void *)(w0 + 128 * c);
            const float *v = (const float *)(const void *)(w1 + 128 * c);
            __m512 x0 = _mm512_loadu_ps(x + 32 * c), x1 = _mm512_loadu_ps(x + 32 * c + 16);
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(u), x0, a0);
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(u + 16), x1, a1);
            b0 = _mm512_fmadd_ps(_mm512_loadu_ps(v), x0, b0);
            b1 = _mm512_fmadd_ps(_mm512_loadu_ps(v + 16), x1, b1);
        }
        y[r] = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
        y[r + 1] = _mm512_reduce_add_ps(_mm512_add_ps(b0, b1));
    }
    if (r < rows)
        tile_f32((const char *)w + (size_t)r * ldw, ldw, cols, x, (size_t)cols, 1, 1, NULL, y + r,
                 1);
}

TARGET static void f32_avx512(const float *w, size_t ldw, int rows, int cols, const float *x, int n,
                              float *y, size_t ldy)
{
    if (n == 1 && cols % 32 == 0) {
        f32_avx512_1(w, ldw, rows, cols, x, y);
        return;
    }
    tiled_f32((const char *)w, ldw, rows, cols, x, n, y, ldy);
}

/* nx rows of x (ldx apart), columns [0, len) (len % 32 == 0), into xp
 * (64-byte aligned): per 32 columns, the nx rows' 16 even columns and 16
 * odd ones side by side (32 nx floats), so a kernel that splits 32 bf16
 * weights into even and odd ones (bf16_avx512_1, the bf16 prompt's
 * tiles) reads each step's x at fixed offsets from one pointer. */
INLINE void pair_rows(const float *x, size_t ldx, int nx, int len, float *xp)
{
    const __m512i ev = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
    for (int c = 0; c < len; c += 32)
        for (int i = 0; i < nx; i++) {
            __m512 x0 = _mm512_loadu_ps(x + (size_t)i * ldx + c);
            __m512 x1 = _mm512_loadu_ps(x + (size_t)i * ldx + c + 16);
            float *o = xp + (size_t)c * (size_t)nx + (size_t)i * 32;
            _mm512_store_ps(o, _mm512_permutex2var_ps(x0, ev, x1));
            _mm512_store_ps(o + 16, _mm512_permutex2var_ps(x0, od, x1));
        }
}

/* One row of X against bf16 weights (cols % 32 == 0, cols <= FAST_COLS):
 * 32 weights per 512-bit load, split into the even elements (shifted
 * up) and the odd ones (masked) with no shuffle, against a copy of x
 * de-interleaved the same way once per call. Two weight rows per pass. */
#define FAST_COLS 8192
TARGET static void bf16_avx512_1(const uint16_t *w, size_t ldw, int rows, int cols, const float *x,
                                 float *y)
{
    __m512 xp[FAST_COLS / 16];
    const __m512i hi = _mm512_set1_epi32((int)0xffff0000u);
    int nc = cols / 32;
    pair_rows(x, (size_t)cols, 1, cols, (float *)(void *)xp); /* xp[2c], xp[2c + 1] */
    size_t ahead = prefetch_ahead(ldw);
    int r = 0;
    for (; r + 2 <= rows; r += 2) {
        const char *w0 = (const char *)w + (size_t)r * ldw, *w1 = w0 + ldw;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
        for (int c = 0; c < nc; c++) {
            PF2(w0 + ahead + 128 * c);
            __m512i u = _mm512_loadu_si512((const void *)(w0 + 64 * c));
            __m512i v = _mm512_loadu_si512((const void *)(w1 + 64 * c));
            a0 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(u, 16)), xp[2 * c], a0);
            a1 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(u, hi)), xp[2 * c + 1], a1);
            b0 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(v, 16)), xp[2 * c], b0);
            b1 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(v, hi)), xp[2 * c + 1], b1);
        }
        y[r] = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
        y[r + 1] = _mm512_reduce_add_ps(_mm512_add_ps(b0, b1));
    }
    if (r < rows) {
        const char *w0 = (const char *)w + (size_t)r * ldw;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        for (int c = 0; c < nc; c++) {
            __m512i u = _mm512_loadu_si512((const void *)(w0 + 64 * c));
            a0 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(u, 16)), xp[2 * c], a0);
            a1 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(u, hi)), xp[2 * c + 1], a1);
        }
        y[r] = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    }
}

TARGET static void bf16_avx512(const uint16_t *w, size_t ldw, int rows, int cols, const float *x,
                               int n, float *y, size_t ldy)
{
    if (n == 1 && cols % 32 == 0 && cols <= FAST_COLS) {
        bf16_avx512_1(w, ldw, rows, cols, x, y);
        return;
    }
    tiled_bf16((const char *)w, ldw, rows, cols, x, n, y, ldy);
}

/* The mask of the blocks of group g (16 blocks) that a row of nb blocks
 * has. */
INLINE __mmask16 group_mask(int nb, int g)
{
    return (__mmask16)t2_q8_0_group_lanes(nb, g);
}

/* The 16 weight scales of group g of a Q8_0 row, as floats. */
INLINE __m512 q8_group_scales(const uint8_t *row, int nb, int g)
{
    return _mm512_cvtph_ps(
        _mm256_maskz_loadu_epi16(group_mask(nb, g), t2_q8_0_row_scale(row, nb, T2_Q8_0_GROUP * g)));
}

/* Load u (0..7) of group g's quants: 4 quants (+ 128) of each block, lane
 * j = block j; a short group's missing lanes are zero. */
INLINE __m512i q8_group_load(const uint8_t *row, int nb, int g, int u)
{
    int m = t2_q8_0_group_blocks(nb, g);
    const void *p = row + t2_q8_0_group_offset(g) + (size_t)(4 * m * u);
    return m == T2_Q8_0_GROUP ? _mm512_loadu_si512(p)
                              : _mm512_maskz_loadu_epi32(group_mask(nb, g), p);
}

/* Group g's -128 * (each block's sum of x): the start of the VNNI sums
 * of the weights stored as q + 128, so that the int32 sums come out as
 * the exact sums of q x. */
INLINE __m512i q8_x_corr(const int32_t *xsum, int nb, int g)
{
    __m512i s = _mm512_maskz_loadu_epi32(group_mask(nb, g), xsum + T2_Q8_0_GROUP * g);
    return _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(s, 7));
}

/* One row of X against Q8_0 weights, two weight rows per pass. Per group
 * of 16 blocks and row: 8 VNNI products of 64 weights (lane j sums block
 * j, exactly, starting from the correction), one conversion and one FMA
 * with the weight scales times the x scales. The next rows are
 * prefetched (the pair takes 1088 bytes per group: 17 lines). */
TARGET static void q8_0_rows_1(const uint8_t *w, size_t ldw, int rows, int nb, const int8_t *xq,
                               const int32_t *xsum, const float *xd, float *y)
{
    int ng = t2_q8_0_groups(nb);
    size_t ahead = prefetch_ahead(ldw);
    for (int r = 0; r < rows; r += 2) {
        int pair = r + 1 < rows;
        const uint8_t *w0 = w + (size_t)r * ldw, *w1 = pair ? w0 + ldw : w0;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        for (int g = 0; g < ng; g++) {
            const char *pf = (const char *)w0 + ahead + 2 * t2_q8_0_group_offset(g);
            PF1(pf + 1024);
            __m512i i0 = q8_x_corr(xsum, nb, g), i1 = i0;
            for (int u = 0; u < 8; u++) {
                PF2(pf + 128 * u);
                __m512i xv = _mm512_load_si512((const void *)(xq + T2_Q8_0_GROUP_X * g + 64 * u));
                i0 = _mm512_dpbusd_epi32(i0, q8_group_load(w0, nb, g, u), xv);
                i1 = _mm512_dpbusd_epi32(i1, q8_group_load(w1, nb, g, u), xv);
            }
            __m512 dx = _mm512_maskz_loadu_ps(group_mask(nb, g), xd + T2_Q8_0_GROUP * g);
            a0 = _mm512_fmadd_ps(_mm512_mul_ps(q8_group_scales(w0, nb, g), dx),
                                 _mm512_cvtepi32_ps(i0), a0);
            a1 = _mm512_fmadd_ps(_mm512_mul_ps(q8_group_scales(w1, nb, g), dx),
                                 _mm512_cvtepi32_ps(i1), a1);
        }
        y[r] = _mm512_reduce_add_ps(a0);
        if (pair)
            y[r + 1] = _mm512_reduce_add_ps(a1);
    }
}

/* Group g's 8 loads of quants (4 of each block, lane j = block j) for nw
 * weight rows ldw apart, multiplied into s[r][i] with the 8 vectors of
 * each of nx rows of X. u outermost: 4 x 4 independent chains of
 * products, each weight and x vector loaded once per group. */
#define Q8_TILE_PRODUCTS(LOAD)                                                                     \
    _Pragma("GCC unroll 8") for (int u = 0; u < 8; u++)                                            \
    {                                                                                              \
        __m512i wv[4];                                                                             \
        for (int r = 0; r < nw; r++) {                                                             \
            if (pf)                                                                                \
                PF1(pf + (size_t)r * ldw + t2_q8_0_group_offset(g) + 64 * u);                      \
            wv[r] = LOAD;                                                                          \
        }                                                                                          \
        for (int i = 0; i < nx; i++) {                                                             \
            __m512i xv = _mm512_load_si512((const void *)(xg + (size_t)i * ldq + 64 * u));         \
            for (int r = 0; r < nw; r++)                                                           \
                s[r][i] = _mm512_dpbusd_epi32(s[r][i], wv[r], xv);                                 \
        }                                                                                          \
    }

/* A tile of nw (1 or 4) weight rows against nx (1..4) rows of X (a
 * batched decode step, or a prompt's rows 16 at a time). One weight row
 * against up to 4 rows of X (the loop before) ran at 63-67 GMAC/s on an
 * Ice Lake core in cache, 4 x 4 at 100-113 (docs/PERFORMANCE.md):
 * sixteen chains of VNNI products per group instead of four, and the
 * horizontal sums four at a time. Each pair's float sums are those of
 * q8_0_rows_1 (per group: weight scales times x scales, times the exact
 * int32 sums), so the results are too. With pf, the same groups of later
 * rows are prefetched (into L2) while the first rows of X go by, a line
 * beside each load (a burst of the group's 9 lines per row at its start
 * streamed 5-8 % slower: 2 threads from memory, n = 8, 15-16 against
 * 16-17 GB/s). */
INLINE void q8_0_tile(const uint8_t *w, size_t ldw, int nb, const int8_t *xq, size_t ldq,
                      const int32_t *xsum, const float *xd, const int nw, const int nx,
                      const char *pf, float *y, size_t ldy)
{
    int ng = t2_q8_0_groups(nb);
    __m512 acc[4][MAX_NX];
    for (int r = 0; r < nw; r++)
        for (int i = 0; i < nx; i++)
            acc[r][i] = _mm512_setzero_ps();
    for (int g = 0; g < ng; g++) {
        int m = t2_q8_0_group_blocks(nb, g);
        __mmask16 mask = group_mask(nb, g);
        const uint8_t *wg = w + t2_q8_0_group_offset(g);
        const int8_t *xg = xq + T2_Q8_0_GROUP_X * (size_t)g;
        if (pf) /* the group's last line (its scales); the others with the loads */
            for (int r = 0; r < nw; r++)
                PF1(pf + (size_t)r * ldw + t2_q8_0_group_offset(g) + T2_Q8_0_GROUP_X);
        __m512i s[4][MAX_NX];
        for (int i = 0; i < nx; i++) {
            __m512i c = q8_x_corr(xsum + (size_t)i * (size_t)nb, nb, g);
            for (int r = 0; r < nw; r++)
                s[r][i] = c;
        }
        if (m == T2_Q8_0_GROUP)
            Q8_TILE_PRODUCTS(_mm512_loadu_si512(wg + (size_t)r * ldw + 64 * u))
        else /* the short last group: its quants are 4 m bytes apart */
            Q8_TILE_PRODUCTS(
                _mm512_maskz_loadu_epi32(mask, wg + (size_t)r * ldw + (size_t)(4 * m * u)))
        for (int r = 0; r < nw; r++) {
            __m512 sw = q8_group_scales(w + (size_t)r * ldw, nb, g);
            for (int i = 0; i < nx; i++) {
                __m512 dx =
                    _mm512_maskz_loadu_ps(mask, xd + (size_t)i * (size_t)nb + T2_Q8_0_GROUP * g);
                acc[r][i] =
                    _mm512_fmadd_ps(_mm512_mul_ps(sw, dx), _mm512_cvtepi32_ps(s[r][i]), acc[r][i]);
            }
        }
    }
    store_tile_sums(acc, nw, nx, y, ldy);
}

/* Rows of W this far ahead are prefetched by a tile's first rows of X:
 * 16 KB for 960 columns. 4, 8, 16 and 32 rows streamed 64-73 GMAC/s
 * (n = 8, one Ice Lake core, 67 MB), none 55-59. */
#define Q8_PF_ROWS 16

/* nw rows of W from wr (row r of rows) against every row of X, MAX_NX at
 * a time. */
#define Q8_TILE_NX(NW)                                                                             \
    for (int i = 0; i < n; i += MAX_NX) {                                                          \
        const char *pf =                                                                           \
            i == 0 && r + Q8_PF_ROWS + (NW) <= rows ? (const char *)wr + Q8_PF_ROWS * ldw : NULL;  \
        const int8_t *xi = x->q + (size_t)i * ldq;                                                 \
        const int32_t *si = x->sum + (size_t)i * (size_t)nb;                                       \
        const float *di = x->d + (size_t)i * (size_t)nb;                                           \
        float *yi = y + (size_t)i * ldy + r;                                                       \
        switch (n - i < MAX_NX ? n - i : MAX_NX) {                                                 \
        case 1: q8_0_tile(wr, ldw, nb, xi, ldq, si, di, NW, 1, pf, yi, ldy); break;                \
        case 2: q8_0_tile(wr, ldw, nb, xi, ldq, si, di, NW, 2, pf, yi, ldy); break;                \
        case 3: q8_0_tile(wr, ldw, nb, xi, ldq, si, di, NW, 3, pf, yi, ldy); break;                \
        default: q8_0_tile(wr, ldw, nb, xi, ldq, si, di, NW, 4, pf, yi, ldy); break;               \
        }                                                                                          \
    }

TARGET static void q8_0_avx512(const uint8_t *w, size_t ldw, int rows, int cols, const t2_q8_act *x,
                               int n, float *y, size_t ldy)
{
    int nb = cols / T2_Q8_0_BLOCK;
    if (n == 1) {
        q8_0_rows_1(w, ldw, rows, nb, x->q, x->sum, x->d, y);
        return;
    }
    size_t ldq = t2_q8_act_row_bytes(cols);
    int r = 0;
    for (; r + 4 <= rows; r += 4) {
        const uint8_t *wr = w + (size_t)r * ldw;
        Q8_TILE_NX(4)
    }
    for (; r < rows; r++) {
        const uint8_t *wr = w + (size_t)r * ldw;
        Q8_TILE_NX(1)
    }
}

/* t2_q8_act_quantize 16 values at a time, with the same result: the
 * block maximum of |x|, d and 1/d computed as there (scalar), and
 * roundf (half away from zero) as truncation plus one where the dropped
 * fraction is >= 0.5 (exact: x - trunc(x) has no rounding error). Each
 * 4 values go to their place in the group order (t2_q8_0_x_offset). */
TARGET static void q8_act_avx512(const float *x, int n, int cols, t2_q8_act *out)
{
    int nb = cols / T2_Q8_0_BLOCK;
    size_t ldq = t2_q8_act_row_bytes(cols);
    const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u);
    for (int i = 0; i < n; i++) {
        const float *xr = x + (size_t)i * (size_t)cols;
        int8_t *q = out->q + (size_t)i * ldq;
        float *d = out->d + (size_t)i * (size_t)nb;
        int32_t *sum = out->sum + (size_t)i * (size_t)nb;
        if (nb % T2_Q8_0_GROUP) /* the short last group's missing lanes */
            memset(q + ldq - T2_Q8_0_GROUP_X, 0, T2_Q8_0_GROUP_X);
        for (int b = 0; b < nb; b++) {
            int8_t *qb = q + t2_q8_0_x_offset(b, 0);
            __m512i s = _mm512_setzero_si512();
            __m512 v0 = _mm512_loadu_ps(xr + 32 * b), v1 = _mm512_loadu_ps(xr + 32 * b + 16);
            float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
            float db = amax / 127.0f;
            float id = db != 0.0f ? 1.0f / db : 0.0f;
            d[b] = t2_f16_to_f32(t2_f32_to_f16(db));
            __m512 vid = _mm512_set1_ps(id);
            __m512 p[2] = {_mm512_mul_ps(v0, vid), _mm512_mul_ps(v1, vid)};
            for (int h = 0; h < 2; h++) {
                __m512 t = _mm512_roundscale_ps(p[h], _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
                __mmask16 up =
                    _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(p[h], t)), half, _CMP_GE_OQ);
                __m512 s1 = _mm512_castsi512_ps(_mm512_or_si512(
                    _mm512_and_si512(_mm512_castps_si512(p[h]), sign), _mm512_castps_si512(one)));
                t = _mm512_mask_add_ps(t, up, t, s1);
                __m512i ti = _mm512_cvttps_epi32(t);
                s = _mm512_add_epi32(s, ti);
                __m128i q16 = _mm512_cvtepi32_epi8(ti);
                /* values 16h + 4v.. of the block: 64 (4h + v) bytes on */
                _mm_storeu_si32(qb + 64 * (4 * h + 0), q16);
                _mm_storeu_si32(qb + 64 * (4 * h + 1), _mm_srli_si128(q16, 4));
                _mm_storeu_si32(qb + 64 * (4 * h + 2), _mm_srli_si128(q16, 8));
                _mm_storeu_si32(qb + 64 * (4 * h + 3), _mm_srli_si128(q16, 12));
            }
            sum[b] = _mm512_reduce_add_epi32(s);
        }
    }
}

/* exp(x) for x in [-104, 89] (callers clamp, to keep k finite) as
 * kernels_exp.h says, 2^k applied by scalef, which saturates to inf or 0
 * as libm's expf does. */
INLINE __m512 exp_avx512(__m512 x)
{
    __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(T2_EXP_LOG2E)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(T2_EXP_LN2_HI), x);
    r = _mm512_fnmadd_ps(k, _mm512_set1_ps(T2_EXP_LN2_LO), r);
    __m512 p = _mm512_set1_ps(t2_exp_poly[0]);
    for (int i = 1; i < T2_EXP_DEGREE; i++)
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(t2_exp_poly[i]));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, k);
}

INLINE __m512 clamp_exp_arg(__m512 x)
{
    return _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.0f)), _mm512_set1_ps(89.0f));
}

/* ---- a bf16 prompt (t2_kernels.bf16_prompt) ----
 *
 * Widening a bf16 vector to float takes a shuffle and a shift (both on
 * the FMA ports of an Ice Lake core), so DEFINE_TILE's 4 x 4 tile spends
 * 8 of every 24 of those ports' operations widening: at most 67 % of the
 * FMA rate (52-56 GMAC/s measured). Here 32 weights per 512-bit load
 * split into the even elements (shifted up) and the odd ones (masked),
 * as in bf16_avx512_1, against x de-interleaved the same way once per
 * segment of PAIR_SEG columns: 2 operations per 32 weights, in tiles of
 * 2 weight rows x 8 rows of x, so 4 per 32 FMAs. The 8 rows' segment
 * (32 KiB) stays in L1 while every weight row of the block passes. Sums
 * in a different order than bf16(): within float rounding of it
 * (test_kernels). */
#define PAIR_NX 8
#define PAIR_SEG 1024

/* nw (1..2) weight rows against nx (1..PAIR_NX) rows of x (xp as
 * pair_rows leaves it) over len columns; the sums go to y (row i of x at
 * y + i ldy), added to what is there when `add` (a later segment). The
 * next tile's weights (pf, or NULL) are prefetched beside each load. */
INLINE void tile_pairs(const char *w, size_t ldw, int len, const float *xp, int nw, int nx,
                       const char *pf, float *y, size_t ldy, bool add)
{
    const __m512i hi = _mm512_set1_epi32((int)0xffff0000u);
    __m512 acc[2][PAIR_NX];
    for (int r = 0; r < 2; r++)
        for (int i = 0; i < PAIR_NX; i++)
            acc[r][i] = _mm512_setzero_ps();
    const float *xs = xp;
    /* two steps per pass: 57 -> 62 GMAC/s (one Ice Lake core, in cache) */
#pragma GCC unroll 2
    for (int c = 0; c < len; c += 32, xs += 32 * nx) {
        __m512 we[2], wo[2];
        for (int r = 0; r < nw; r++) {
            if (pf)
                PF1(pf + (size_t)r * ldw + (size_t)c * 2);
            __m512i u = _mm512_loadu_si512((const void *)(w + (size_t)r * ldw + (size_t)c * 2));
            we[r] = _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
            wo[r] = _mm512_castsi512_ps(_mm512_and_si512(u, hi));
        }
        for (int i = 0; i < nx; i++) {
            __m512 xe = _mm512_load_ps(xs + 32 * i), xo = _mm512_load_ps(xs + 32 * i + 16);
            /* in registers: gcc otherwise folds each load into both
             * weight rows' FMAs, and the doubled loads ran at 39 GMAC/s
             * instead of 57 (one Ice Lake core, in cache) */
            __asm__("" : "+v"(xe), "+v"(xo));
            for (int r = 0; r < nw; r++) {
                acc[r][i] = _mm512_fmadd_ps(we[r], xe, acc[r][i]);
                acc[r][i] = _mm512_fmadd_ps(wo[r], xo, acc[r][i]);
            }
        }
    }
    for (int i = 0; i < nx; i++)
        for (int r = 0; r < nw; r++) {
            float sum = _mm512_reduce_add_ps(acc[r][i]);
            float *o = y + (size_t)i * ldy + (size_t)r;
            *o = add ? *o + sum : sum;
        }
}

#define PAIR_TILES(NW)                                                                             \
    switch (nx) {                                                                                  \
    case 1: tile_pairs(wr, ldw, len, xp, NW, 1, pf, yr, ldy, add); break;                          \
    case 2: tile_pairs(wr, ldw, len, xp, NW, 2, pf, yr, ldy, add); break;                          \
    case 3: tile_pairs(wr, ldw, len, xp, NW, 3, pf, yr, ldy, add); break;                          \
    case 4: tile_pairs(wr, ldw, len, xp, NW, 4, pf, yr, ldy, add); break;                          \
    case 5: tile_pairs(wr, ldw, len, xp, NW, 5, pf, yr, ldy, add); break;                          \
    case 6: tile_pairs(wr, ldw, len, xp, NW, 6, pf, yr, ldy, add); break;                          \
    case 7: tile_pairs(wr, ldw, len, xp, NW, 7, pf, yr, ldy, add); break;                          \
    default: tile_pairs(wr, ldw, len, xp, NW, 8, pf, yr, ldy, add); break;                         \
    }

/* bf16_prompt: for each PAIR_NX rows of x and each segment of their
 * columns, every weight row (2 at a time) against them. Meant for a
 * block of weight rows that fits in L2 (the caller's), read from memory
 * with the first rows of x (prefetching the next tile) and from L2 for
 * the others. */
TARGET static void bf16_prompt_avx512(const uint16_t *w, size_t ldw, int rows, int cols,
                                      const float *x, int n, float *y, size_t ldy)
{
    if (cols % 32 != 0) {
        tiled_bf16((const char *)w, ldw, rows, cols, x, n, y, ldy);
        return;
    }
    float xp[PAIR_NX * PAIR_SEG] __attribute__((aligned(64)));
    for (int i0 = 0; i0 < n; i0 += PAIR_NX) {
        int nx = n - i0 < PAIR_NX ? n - i0 : PAIR_NX;
        for (int c0 = 0; c0 < cols; c0 += PAIR_SEG) {
            int len = cols - c0 < PAIR_SEG ? cols - c0 : PAIR_SEG;
            bool add = c0 > 0;
            pair_rows(x + (size_t)i0 * (size_t)cols + c0, (size_t)cols, nx, len, xp);
            int r = 0;
            for (; r + 2 <= rows; r += 2) {
                const char *wr = (const char *)w + (size_t)r * ldw + (size_t)c0 * 2;
                const char *pf = i0 == 0 && r + 4 <= rows ? wr + 2 * ldw : NULL;
                float *yr = y + (size_t)i0 * ldy + (size_t)r;
                PAIR_TILES(2)
            }
            if (r < rows) {
                const char *wr = (const char *)w + (size_t)r * ldw + (size_t)c0 * 2, *pf = NULL;
                float *yr = y + (size_t)i0 * ldy + (size_t)r;
                PAIR_TILES(1)
            }
        }
    }
}

/* ---- the transposed bf16 product (bf16_t) ---- */

/* y = v, or y += v (a later block of rows of bf16_t) */
INLINE void store_or_add(float *y, __mmask16 m, __m512 v, bool add)
{
    if (add)
        v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, y), v);
    _mm512_mask_storeu_ps(y, m, v);
}

/* A 32-column strip's nx rows of bf16_t, each held as two vectors a[i]
 * and b[i] whose lanes permutex2var's index vectors first and second put
 * back in column order: stored to y (columns c.. under mask m), or added. */
INLINE void store_strip(float *y, size_t ldy, int c, __mmask32 m, const __m512 *a, const __m512 *b,
                        int nx, __m512i first, __m512i second, bool add)
{
    for (int i = 0; i < nx; i++) {
        store_or_add(y + (size_t)i * ldy + c, (__mmask16)m,
                     _mm512_permutex2var_ps(a[i], first, b[i]), add);
        store_or_add(y + (size_t)i * ldy + c + 16, (__mmask16)(m >> 16),
                     _mm512_permutex2var_ps(a[i], second, b[i]), add);
    }
}

/* bf16_t's entry: blocks of rows of w (t2_bf16_t_block_rows), each
 * walked across all its columns before the next, so a block is read from
 * memory once, in order, and its column strips come from cache (one strip
 * at a time down all the rows left each 64-byte line to a separate miss);
 * 32-column strips, up to 8 rows of x per call of cols_fn (nx a constant
 * in each case, so its accumulators stay in registers); blocks after the
 * first add to y. */
#define DEFINE_BF16_T(name, target, cols_fn)                                                       \
    target static void name(const uint16_t *w, size_t ldw, int rows, int c0, int c1,               \
                            const uint16_t *x, size_t ldx, int n, float *y, size_t ldy)            \
    {                                                                                              \
        int block = t2_bf16_t_block_rows(ldw, INT_MAX);                                            \
        for (int k0 = 0; k0 < rows; k0 += block) {                                                 \
            int kn = rows - k0 < block ? rows - k0 : block;                                        \
            const uint16_t *wk =                                                                   \
                (const uint16_t *)(const void *)((const char *)w + (size_t)k0 * ldw);              \
            bool add = k0 > 0;                                                                     \
            for (int c = c0; c < c1; c += 32) {                                                    \
                __mmask32 m =                                                                      \
                    c1 - c >= 32 ? (__mmask32)0xffffffffu : (__mmask32)((1u << (c1 - c)) - 1u);    \
                for (int i0 = 0; i0 < n; i0 += 8) {                                                \
                    const uint16_t *xi = x + (size_t)i0 * ldx + (size_t)k0;                        \
                    float *yi = y + (size_t)i0 * ldy;                                              \
                    switch (n - i0 < 8 ? n - i0 : 8) {                                             \
                    case 1: cols_fn(wk, ldw, kn, c, m, xi, ldx, 1, yi, ldy, add); break;           \
                    case 2: cols_fn(wk, ldw, kn, c, m, xi, ldx, 2, yi, ldy, add); break;           \
                    case 3: cols_fn(wk, ldw, kn, c, m, xi, ldx, 3, yi, ldy, add); break;           \
                    case 4: cols_fn(wk, ldw, kn, c, m, xi, ldx, 4, yi, ldy, add); break;           \
                    case 5: cols_fn(wk, ldw, kn, c, m, xi, ldx, 5, yi, ldy, add); break;           \
                    case 6: cols_fn(wk, ldw, kn, c, m, xi, ldx, 6, yi, ldy, add); break;           \
                    case 7: cols_fn(wk, ldw, kn, c, m, xi, ldx, 7, yi, ldy, add); break;           \
                    default: cols_fn(wk, ldw, kn, c, m, xi, ldx, 8, yi, ldy, add); break;          \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

/* Columns c..c+31 (those under mask m) for nx <= 8 rows of x already
 * widened, xf[k * 8 + i]: each broadcast a plain load, not a scalar
 * bf16 widened and moved into a vector (on a core without AVX512-BF16
 * those moves, 8 a line of w, ran on the shuffle port the FMAs share:
 * 12 GMAC/s at 8 rows on an Ice Lake core). A line of w is widened by a
 * shift (its even columns) and a mask (its odd ones), two in-lane
 * operations; the two sets of accumulators are interleaved when stored.
 * Each column's sum in k order, as the scalar reference's. */
INLINE void bf16_t_cols_wide(const uint16_t *w, size_t ldw, int rows, int c, __mmask32 m,
                             const float *xf, int nx, float *y, size_t ldy, bool add)
{
    __m512 even[8], odd[8];
    for (int i = 0; i < nx; i++)
        even[i] = odd[i] = _mm512_setzero_ps();
    const __m512i high = _mm512_set1_epi32((int)0xffff0000u);
    const char *wp = (const char *)w + (size_t)c * sizeof(uint16_t);
    for (int k = 0; k < rows; k++, wp += ldw, xf += 8) {
        _mm_prefetch(wp + 8 * ldw, _MM_HINT_T0); /* a column walk: no stream for the hardware */
        _mm_prefetch(wp + 64, _MM_HINT_T0);      /* this row's line of the next strip */
        __m512i raw = _mm512_maskz_loadu_epi16(m, wp);
        __m512 e = _mm512_castsi512_ps(_mm512_slli_epi32(raw, 16));
        __m512 o = _mm512_castsi512_ps(_mm512_and_si512(raw, high));
        for (int i = 0; i < nx; i++) {
            __m512 xv = _mm512_set1_ps(xf[i]);
            even[i] = _mm512_fmadd_ps(xv, e, even[i]);
            odd[i] = _mm512_fmadd_ps(xv, o, odd[i]);
        }
    }
    const __m512i first = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i second =
        _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    store_strip(y, ldy, c, m, even, odd, nx, first, second, add);
}

/* the most rows of w per block of bf16_t_avx512 (xf's size) */
#define BF16_T_WIDE_ROWS 512

/* bf16_t without AVX512-BF16: DEFINE_BF16_T's blocks of rows, and in
 * each, every group of 8 rows of x widened once into xf (k-major) for
 * all of the block's column strips. */
TARGET static void bf16_t_avx512(const uint16_t *w, size_t ldw, int rows, int c0, int c1,
                                 const uint16_t *x, size_t ldx, int n, float *y, size_t ldy)
{
    float xf[BF16_T_WIDE_ROWS * 8];
    int block = t2_bf16_t_block_rows(ldw, BF16_T_WIDE_ROWS);
    for (int k0 = 0; k0 < rows; k0 += block) {
        int kn = rows - k0 < block ? rows - k0 : block;
        const uint16_t *wk = (const uint16_t *)(const void *)((const char *)w + (size_t)k0 * ldw);
        bool add = k0 > 0;
        for (int i0 = 0; i0 < n; i0 += 8) {
            int nx = n - i0 < 8 ? n - i0 : 8;
            for (int k = 0; k < kn; k++)
                for (int i = 0; i < nx; i++)
                    xf[k * 8 + i] = t2_bf16_to_f32(x[(size_t)(i0 + i) * ldx + (size_t)(k0 + k)]);
            float *yi = y + (size_t)i0 * ldy;
            for (int c = c0; c < c1; c += 32) {
                __mmask32 m =
                    c1 - c >= 32 ? (__mmask32)0xffffffffu : (__mmask32)((1u << (c1 - c)) - 1u);
                switch (nx) {
                case 1: bf16_t_cols_wide(wk, ldw, kn, c, m, xf, 1, yi, ldy, add); break;
                case 2: bf16_t_cols_wide(wk, ldw, kn, c, m, xf, 2, yi, ldy, add); break;
                case 3: bf16_t_cols_wide(wk, ldw, kn, c, m, xf, 3, yi, ldy, add); break;
                case 4: bf16_t_cols_wide(wk, ldw, kn, c, m, xf, 4, yi, ldy, add); break;
                case 5: bf16_t_cols_wide(wk, ldw, kn, c, m, xf, 5, yi, ldy, add); break;
                case 6: bf16_t_cols_wide(wk, ldw, kn, c, m, xf, 6, yi, ldy, add); break;
                case 7: bf16_t_cols_wide(wk, ldw, kn, c, m, xf, 7, yi, ldy, add); break;
                default: bf16_t_cols_wide(wk, ldw, kn, c, m, xf, 8, yi, ldy, add); break;
                }
            }
        }
    }
}

/* g / (1 + exp(-g)) * u, 16 at a time (the last n % 16 masked). */
TARGET static void silu_mul_avx512(float *g, const float *u, size_t n)
{
    for (size_t i = 0; i < n; i += 16) {
        size_t left = n - i < 16 ? n - i : 16;
        __mmask16 m = (__mmask16)((1u << left) - 1);
        __m512 v = _mm512_maskz_loadu_ps(m, g + i), w = _mm512_maskz_loadu_ps(m, u + i);
        __m512 e = exp_avx512(clamp_exp_arg(_mm512_sub_ps(_mm512_setzero_ps(), v)));
        __m512 den = _mm512_add_ps(_mm512_set1_ps(1.0f), e);
        _mm512_mask_storeu_ps(g + i, m, _mm512_mul_ps(_mm512_div_ps(v, den), w));
    }
}

TARGET static float exp_shift_avx512(float *s, int n, float mx)
{
    __m512 sum = _mm512_setzero_ps(), vmx = _mm512_set1_ps(mx);
    for (int i = 0; i < n; i += 16) {
        int left = n - i < 16 ? n - i : 16;
        __mmask16 m = (__mmask16)((1u << left) - 1);
        __m512 e = exp_avx512(clamp_exp_arg(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + i), vmx)));
        _mm512_mask_storeu_ps(s + i, m, e);
        sum = _mm512_add_ps(sum, _mm512_maskz_mov_ps(m, e));
    }
    return _mm512_reduce_add_ps(sum);
}

/* Lanes of the 16 columns from c that lie before d. */
INLINE __mmask16 cols_mask(int c, int d)
{
    int left = d - c;
    return left >= 16 ? (__mmask16)0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
}

/* 16 columns from c of row `at` (floats, or f16 when half), zero past d */
INLINE __m512 load_cols16(const void *row, size_t at, int c, int d, bool half)
{
    __mmask16 m = cols_mask(c, d);
    if (half)
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)row + at + c));
    return _mm512_maskz_loadu_ps(m, (const float *)row + at + c);
}

/* Four positions at a time (four independent sums), each a 16-lane
 * accumulator over the columns, reduced at the end. */
INLINE void attn_scores_any(const void *k, size_t ld, int n, int d, const float *q, float scale,
                            float *s, bool half)
{
    int p = 0;
    for (; p + 4 <= n; p += 4) {
        size_t k0 = (size_t)p * ld;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int c = 0; c < d; c += 16) {
            __m512 qv = _mm512_maskz_loadu_ps(cols_mask(c, d), q + c);
            a0 = _mm512_fmadd_ps(load_cols16(k, k0, c, d, half), qv, a0);
            a1 = _mm512_fmadd_ps(load_cols16(k, k0 + ld, c, d, half), qv, a1);
            a2 = _mm512_fmadd_ps(load_cols16(k, k0 + 2 * ld, c, d, half), qv, a2);
            a3 = _mm512_fmadd_ps(load_cols16(k, k0 + 3 * ld, c, d, half), qv, a3);
        }
        s[p] = scale * _mm512_reduce_add_ps(a0);
        s[p + 1] = scale * _mm512_reduce_add_ps(a1);
        s[p + 2] = scale * _mm512_reduce_add_ps(a2);
        s[p + 3] = scale * _mm512_reduce_add_ps(a3);
    }
    for (; p < n; p++) {
        __m512 a = _mm512_setzero_ps();
        for (int c = 0; c < d; c += 16)
            a = _mm512_fmadd_ps(load_cols16(k, (size_t)p * ld, c, d, half),
                                _mm512_maskz_loadu_ps(cols_mask(c, d), q + c), a);
        s[p] = scale * _mm512_reduce_add_ps(a);
    }
}

/* 64 columns at a time in four accumulators, two positions per step into
 * two sets of them (FMA latency), added at the end. */
INLINE void attn_mix_any(const void *v, size_t ld, int n, int d, const float *w, float scale,
                         float *out, bool half)
{
    for (int c = 0; c < d; c += 64) {
        __m512 a[4], b[4];
        for (int i = 0; i < 4; i++)
            a[i] = b[i] = _mm512_setzero_ps();
        int p = 0;
        for (; p + 2 <= n; p += 2) {
            size_t v0 = (size_t)p * ld, v1 = v0 + ld;
            __m512 w0 = _mm512_set1_ps(w[p]), w1 = _mm512_set1_ps(w[p + 1]);
            for (int i = 0; i < 4; i++) {
                a[i] = _mm512_fmadd_ps(w0, load_cols16(v, v0, c + 16 * i, d, half), a[i]);
                b[i] = _mm512_fmadd_ps(w1, load_cols16(v, v1, c + 16 * i, d, half), b[i]);
            }
        }
        if (p < n) {
            __m512 w0 = _mm512_set1_ps(w[p]);
            for (int i = 0; i < 4; i++)
                a[i] =
                    _mm512_fmadd_ps(w0, load_cols16(v, (size_t)p * ld, c + 16 * i, d, half), a[i]);
        }
        __m512 sc = _mm512_set1_ps(scale);
        for (int i = 0; i < 4; i++)
            _mm512_mask_storeu_ps(out + c + 16 * i, cols_mask(c + 16 * i, d),
                                  _mm512_mul_ps(sc, _mm512_add_ps(a[i], b[i])));
    }
}

TARGET static void attn_scores_avx512(const float *k, size_t ld, int n, int d, const float *q,
                                      float scale, float *s)
{
    attn_scores_any(k, ld, n, d, q, scale, s, false);
}

TARGET static void attn_mix_avx512(const float *v, size_t ld, int n, int d, const float *w,
                                   float scale, float *out)
{
    attn_mix_any(v, ld, n, d, w, scale, out, false);
}

/* ---- rank_add: Y += A · B, A of few columns ---- */

/* nr rows of Y, 64 columns from c: the 4 x nr accumulators start from Y,
 * and each of B's k rows adds one FMA per (row, 16 columns); B's 64
 * columns of k rows stay in L1 across the rows of Y. */
INLINE void rank_add_tile(const float *a, int k, const float *b, size_t ldb, int c, int cols,
                          float *y, size_t ldy, int nr)
{
    __m512 acc[4][4];
    __mmask16 m[4];
    for (int q = 0; q < 4; q++)
        m[q] = cols_mask(c + 16 * q, cols);
    for (int r = 0; r < nr; r++)
        for (int q = 0; q < 4; q++)
            acc[r][q] = _mm512_maskz_loadu_ps(m[q], y + (size_t)r * ldy + (size_t)(c + 16 * q));
    for (int p = 0; p < k; p++) {
        __m512 bv[4];
        for (int q = 0; q < 4; q++)
            bv[q] = _mm512_maskz_loadu_ps(m[q], b + (size_t)p * ldb + (size_t)(c + 16 * q));
        for (int r = 0; r < nr; r++) {
            __m512 av = _mm512_set1_ps(a[(size_t)r * (size_t)k + (size_t)p]);
            for (int q = 0; q < 4; q++)
                acc[r][q] = _mm512_fmadd_ps(av, bv[q], acc[r][q]);
        }
    }
    for (int r = 0; r < nr; r++)
        for (int q = 0; q < 4; q++)
            _mm512_mask_storeu_ps(y + (size_t)r * ldy + (size_t)(c + 16 * q), m[q], acc[r][q]);
}

TARGET static void rank_add_avx512(const float *a, int n, int k, const float *b, size_t ldb,
                                   int cols, float *y, size_t ldy)
{
    for (int c = 0; c < cols; c += 64) {
        int i = 0;
        for (; i + 4 <= n; i += 4)
            rank_add_tile(a + (size_t)i * (size_t)k, k, b, ldb, c, cols, y + (size_t)i * ldy, ldy,
                          4);
        for (; i < n; i++)
            rank_add_tile(a + (size_t)i * (size_t)k, k, b, ldb, c, cols, y + (size_t)i * ldy, ldy,
                          1);
    }
}

TARGET static void attn_scores_f16_avx512(const uint16_t *k, size_t ld, int n, int d,
                                          const float *q, float scale, float *s)
{
    attn_scores_any(k, ld, n, d, q, scale, s, true);
}

TARGET static void attn_mix_f16_avx512(const uint16_t *v, size_t ld, int n, int d, const float *w,
                                       float scale, float *out)
{
    attn_mix_any(v, ld, n, d, w, scale, out, true);
}

/* ---- attn16: up to 16 queries in the lanes of one vector ---- */

enum { KEY_STEP = 8, MIX_KEYS = 64, MIX_COLS = 64, MIX_Q = 4 };

/* d values of row p (floats, or f16 when half) into dst as floats. */
INLINE void widen_row(const void *rows, size_t ld, int p, int d, float *dst, bool half)
{
    for (int c = 0; c < d; c += 16)
        _mm512_mask_storeu_ps(dst + c, cols_mask(c, d),
                              load_cols16(rows, (size_t)p * ld, c, d, half));
}

/* Scores of nk (<= KEY_STEP) float key rows ld apart: s[16 i + j] =
 * k_i . q_j, one accumulator per key, each FMA a broadcast key value
 * times the 16 queries' column. */
INLINE void scores16_keys(const float *k, size_t ld, int d, const float *qt, const int nk, float *s)
{
    __m512 acc[KEY_STEP];
    for (int i = 0; i < KEY_STEP; i++)
        acc[i] = _mm512_setzero_ps();
    for (int c = 0; c < d; c++) {
        __m512 qc = _mm512_load_ps(qt + T2_ATTN_LANES * c);
        for (int i = 0; i < nk; i++)
            acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(k[(size_t)i * ld + (size_t)c]), qc, acc[i]);
    }
    for (int i = 0; i < nk; i++)
        _mm512_store_ps(s + T2_ATTN_LANES * i, acc[i]);
}

/* Keys [p0, p0 + nk) of float rows ld apart, KEY_STEP at a time. */
INLINE void scores16_rows(const float *k, size_t ld, int nk, int d, const float *qt, float *s)
{
    int p = 0;
    for (; p + KEY_STEP <= nk; p += KEY_STEP)
        scores16_keys(k + (size_t)p * ld, ld, d, qt, KEY_STEP, s + (size_t)T2_ATTN_LANES * p);
    for (; p < nk; p++)
        scores16_keys(k + (size_t)p * ld, ld, d, qt, 1, s + (size_t)T2_ATTN_LANES * p);
}

T2_DEFINE_SCORES16(scores16, scores16_rows, widen_row, 0)

/* The masks (keys past each lane's n, the gap), then each lane's
 * exp(s - its max) in place; returns one over each lane's sum. */
INLINE __m512 softmax16(float *s, int nmax, const int *n, int nq, int gap_from, int gap_to)
{
    int lim[T2_ATTN_LANES], nmin = t2_attn16_limits(n, nq, nmax, lim);
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    __m512i vlim = _mm512_loadu_si512((const void *)lim);
    for (int p = nmin; p < nmax; p++) {
        __mmask16 past = _mm512_cmple_epi32_mask(vlim, _mm512_set1_epi32(p));
        _mm512_mask_store_ps(s + T2_ATTN_LANES * p, past, ninf);
    }
    for (int p = gap_from < 0 ? 0 : gap_from; p < gap_to && p < nmax; p++)
        _mm512_store_ps(s + T2_ATTN_LANES * p, ninf);
    __m512 mx = ninf;
    for (int p = 0; p < nmax; p++)
        mx = _mm512_max_ps(mx, _mm512_load_ps(s + T2_ATTN_LANES * p));
    __m512 sum = _mm512_setzero_ps();
    for (int p = 0; p < nmax; p++) {
        __m512 e =
            exp_avx512(clamp_exp_arg(_mm512_sub_ps(_mm512_load_ps(s + T2_ATTN_LANES * p), mx)));
        _mm512_store_ps(s + T2_ATTN_LANES * p, e);
        sum = _mm512_add_ps(sum, e);
    }
    return _mm512_div_ps(_mm512_set1_ps(1.0f), sum);
}

/* out[j][c0..c0+63] (masked to d) += sum over nk keys of w[16 p + j0 + i]
 * times value row p, for nj (1..MIX_Q) queries from j0: 16 accumulators,
 * each value vector loaded once for the nj queries. first: store instead
 * of add; last: times inv[j]. */
INLINE void mix16_block(const float *v, size_t ld, int nk, int c0, int d, const float *w, int j0,
                        const int nj, float *const *out, bool first, bool last, const float *inv)
{
    __m512 acc[MIX_Q][4];
    __mmask16 m[4];
    for (int i = 0; i < 4; i++)
        m[i] = cols_mask(c0 + 16 * i, d);
    for (int q = 0; q < MIX_Q; q++)
        for (int i = 0; i < 4; i++)
            acc[q][i] = _mm512_setzero_ps();
    for (int p = 0; p < nk; p++) {
        __m512 vv[4];
        for (int i = 0; i < 4; i++)
            vv[i] = _mm512_maskz_loadu_ps(m[i], v + (size_t)p * ld + 16 * i);
        for (int q = 0; q < nj; q++) {
            __m512 wq = _mm512_set1_ps(w[T2_ATTN_LANES * p + j0 + q]);
            for (int i = 0; i < 4; i++)
                acc[q][i] = _mm512_fmadd_ps(wq, vv[i], acc[q][i]);
        }
    }
    for (int q = 0; q < nj; q++) {
        float *o = out[j0 + q] + c0;
        __m512 sc = _mm512_set1_ps(inv[j0 + q]);
        for (int i = 0; i < 4; i++) {
            __m512 a = acc[q][i];
            if (!first)
                a = _mm512_add_ps(a, _mm512_maskz_loadu_ps(m[i], o + 16 * i));
            if (last)
                a = _mm512_mul_ps(a, sc);
            _mm512_mask_storeu_ps(o + 16 * i, m[i], a);
        }
    }
}

/* out[j] = inv[j] * sum_p w[16 p + j] v_p: MIX_COLS columns and
 * MIX_KEYS values at a time (16 KiB, in L1 for every group of MIX_Q
 * queries); f16 values widened into a buffer once per block. */
INLINE void mix16(const void *v, size_t ld, int n, int d, const float *w, int nq, const float *inv,
                  float *const *out, bool half)
{
    float vb[MIX_KEYS * MIX_COLS];
    for (int c0 = 0; c0 < d; c0 += MIX_COLS) {
        int cols = d - c0 < MIX_COLS ? d - c0 : MIX_COLS;
        for (int p0 = 0; p0 < n; p0 += MIX_KEYS) {
            int nk = n - p0 < MIX_KEYS ? n - p0 : MIX_KEYS;
            const float *vr = vb;
            size_t ldv = MIX_COLS;
            if (half) {
                const uint16_t *vh = (const uint16_t *)v + (size_t)p0 * ld + c0;
                for (int p = 0; p < nk; p++)
                    widen_row(vh, ld, p, cols, vb + (size_t)p * MIX_COLS, true);
            } else {
                vr = (const float *)v + (size_t)p0 * ld + c0;
                ldv = ld;
            }
            const float *wb = w + (size_t)T2_ATTN_LANES * (size_t)p0;
            bool first = p0 == 0, last = p0 + nk >= n;
            for (int j0 = 0; j0 < nq; j0 += MIX_Q) {
                switch (nq - j0 < MIX_Q ? nq - j0 : MIX_Q) {
                case 1: mix16_block(vr, ldv, nk, c0, d, wb, j0, 1, out, first, last, inv); break;
                case 2: mix16_block(vr, ldv, nk, c0, d, wb, j0, 2, out, first, last, inv); break;
                case 3: mix16_block(vr, ldv, nk, c0, d, wb, j0, 3, out, first, last, inv); break;
                default: mix16_block(vr, ldv, nk, c0, d, wb, j0, 4, out, first, last, inv); break;
                }
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
    float inv[T2_ATTN_LANES] __attribute__((aligned(64)));
    _mm512_store_ps(inv, softmax16(s, nmax, n, nq, gap_from, gap_to));
    mix16(v, ld, nmax, d, s, nq, inv, out, half);
}

TARGET static void attn16_avx512(const float *k, const float *v, size_t ld, int d, const float *qt,
                                 int nq, const int *n, int gap_from, int gap_to, float *s,
                                 float *const *out)
{
    attn16_any(k, v, ld, d, qt, nq, n, gap_from, gap_to, s, out, false);
}

TARGET static void attn16_f16_avx512(const uint16_t *k, const uint16_t *v, size_t ld, int d,
                                     const float *qt, int nq, const int *n, int gap_from,
                                     int gap_to, float *s, float *const *out)
{
    attn16_any(k, v, ld, d, qt, nq, n, gap_from, gap_to, s, out, true);
}

const t2_kernels t2_kernels_avx512 = {"avx512",
                                      f32_avx512,
                                      bf16_avx512,
                                      q8_0_avx512,
                                      q8_act_avx512,
                                      NULL,
                                      bf16_t_avx512,
                                      silu_mul_avx512,
                                      attn_scores_avx512,
                                      attn_mix_avx512,
                                      exp_shift_avx512,
                                      t2_f16_store_f16c,
                                      attn_scores_f16_avx512,
                                      attn_mix_f16_avx512,
                                      attn16_avx512,
                                      attn16_f16_avx512,
                                      16,
                                      16,
                                      1,
                                      bf16_prompt_avx512,
                                      64,
                                      rank_add_avx512};

/* ---- with AVX512-BF16: bf16 weights times bf16 x by its dot product ---- */

#undef INLINE
#define TARGET_BF16                                                                                \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512bf16,avx2,fma,f16c")))
#define INLINE TARGET_BF16 static inline __attribute__((always_inline))

/* As DEFINE_TILE's tiles, 32 columns per step: one vdpbf16ps multiplies
 * 16 pairs of bf16 weights with 16 pairs of bf16 x and adds both products
 * (exact in float) to each lane, so a 4 x 4 tile does 16 dot products,
 * 512 multiply-adds, per 8 loads, and nothing is widened. */
INLINE void tile_dp_bf16(const char *w, size_t ldw, int cols, const uint16_t *x, size_t ldx, int nw,
                         int nx, const char *pf, float *y, size_t ldy)
{
    __m512 acc[MAX_NX][MAX_NX];
    for (int r = 0; r < MAX_NX; r++)
        for (int i = 0; i < MAX_NX; i++)
            acc[r][i] = _mm512_setzero_ps();
    int c = 0;
    for (; c + 32 <= cols; c += 32) {
        __m512i wv[MAX_NX];
        if (pf)
            for (int r = 0; r < nw; r++)
                PF1(pf + (size_t)r * ldw + (size_t)c * 2);
        for (int r = 0; r < nw; r++)
            wv[r] = _mm512_loadu_si512((const void *)(w + (size_t)r * ldw + (size_t)c * 2));
        for (int i = 0; i < nx; i++) {
            __m512i xv = _mm512_loadu_si512((const void *)(x + (size_t)i * ldx + c));
            for (int r = 0; r < nw; r++)
                acc[r][i] = _mm512_dpbf16_ps(acc[r][i], (__m512bh)wv[r], (__m512bh)xv);
        }
    }
    if (c < cols) {
        __mmask32 m = (__mmask32)((1u << (cols - c)) - 1u);
        __m512i wv[MAX_NX];
        for (int r = 0; r < nw; r++)
            wv[r] = _mm512_maskz_loadu_epi16(m, w + (size_t)r * ldw + (size_t)c * 2);
        for (int i = 0; i < nx; i++) {
            __m512i xv = _mm512_maskz_loadu_epi16(m, x + (size_t)i * ldx + c);
            for (int r = 0; r < nw; r++)
                acc[r][i] = _mm512_dpbf16_ps(acc[r][i], (__m512bh)wv[r], (__m512bh)xv);
        }
    }
    store_tile_sums(acc, nw, nx, y, ldy);
}

T2_DEFINE_TILED(tiled_dp_bf16, tile_dp_bf16, 4, uint16_t)

TARGET_BF16 static void bf16_x16_avx512bf16(const uint16_t *w, size_t ldw, int rows, int cols,
                                            const uint16_t *x, int n, float *y, size_t ldy)
{
    /* One or two rows of x: bound by memory, where the widening kernels
     * (longer steps, prefetch further ahead) stream faster: out of cache,
     * one core, 14-15 vs 12-13 GMAC/s (n = 1), 28-30 vs 20 (n = 2). The
     * same products: x widened from bf16 is exact. */
    if (n <= 2 && cols <= FAST_COLS) {
        float xf[2 * FAST_COLS];
        for (size_t i = 0; i < (size_t)n * (size_t)cols; i++)
            xf[i] = t2_bf16_to_f32(x[i]);
        bf16_avx512(w, ldw, rows, cols, xf, n, y, ldy);
        return;
    }
    tiled_dp_bf16((const char *)w, ldw, rows, cols, x, n, y, ldy);
}

/* bf16_t with vdpbf16ps: two rows of w at a time, interleaved into
 * (w[k][c], w[k + 1][c]) pairs, against x's (x[k], x[k + 1]) pair (two
 * adjacent bf16 values: one 32-bit broadcast). The pairs of a 32-column
 * line come out of unpacklo/hi in the column order 0-3, 8-11, 16-19,
 * 24-27 (lo) and 4-7, 12-15, ... (hi), put back in order at the end. */
INLINE void bf16_t_dp_cols(const uint16_t *w, size_t ldw, int rows, int c, __mmask32 m,
                           const uint16_t *x, size_t ldx, int nx, float *y, size_t ldy, bool add)
{
    __m512 lo[8], hi[8];
    for (int i = 0; i < nx; i++)
        lo[i] = hi[i] = _mm512_setzero_ps();
    const char *wp = (const char *)w + (size_t)c * sizeof(uint16_t);
    int k = 0;
    for (; k + 2 <= rows; k += 2, wp += 2 * ldw) {
        _mm_prefetch(wp + 8 * ldw, _MM_HINT_T0);
        _mm_prefetch(wp + 9 * ldw, _MM_HINT_T0);
        _mm_prefetch(wp + 64, _MM_HINT_T0);
        _mm_prefetch(wp + ldw + 64, _MM_HINT_T0);
        __m512i a = _mm512_maskz_loadu_epi16(m, wp), b = _mm512_maskz_loadu_epi16(m, wp + ldw);
        __m512bh pl = (__m512bh)_mm512_unpacklo_epi16(a, b),
                 ph = (__m512bh)_mm512_unpackhi_epi16(a, b);
        for (int i = 0; i < nx; i++) {
            uint32_t pair;
            memcpy(&pair, x + (size_t)i * ldx + (size_t)k, sizeof pair);
            __m512bh xp = (__m512bh)_mm512_set1_epi32((int)pair);
            lo[i] = _mm512_dpbf16_ps(lo[i], pl, xp);
            hi[i] = _mm512_dpbf16_ps(hi[i], ph, xp);
        }
    }
    if (k < rows) { /* an odd last row, paired with zeros */
        __m512i a = _mm512_maskz_loadu_epi16(m, wp), z = _mm512_setzero_si512();
        __m512bh pl = (__m512bh)_mm512_unpacklo_epi16(a, z),
                 ph = (__m512bh)_mm512_unpackhi_epi16(a, z);
        for (int i = 0; i < nx; i++) {
            __m512bh xp = (__m512bh)_mm512_set1_epi32((int)x[(size_t)i * ldx + (size_t)k]);
            lo[i] = _mm512_dpbf16_ps(lo[i], pl, xp);
            hi[i] = _mm512_dpbf16_ps(hi[i], ph, xp);
        }
    }
    const __m512i first = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
    const __m512i second =
        _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
    store_strip(y, ldy, c, m, lo, hi, nx, first, second, add);
}

DEFINE_BF16_T(bf16_t_avx512bf16, TARGET_BF16, bf16_t_dp_cols)

const t2_kernels t2_kernels_avx512bf16 = {"avx512bf16",
                                          f32_avx512,
                                          bf16_avx512,
                                          q8_0_avx512,
                                          q8_act_avx512,
                                          bf16_x16_avx512bf16,
                                          bf16_t_avx512bf16,
                                          silu_mul_avx512,
                                          attn_scores_avx512,
                                          attn_mix_avx512,
                                          exp_shift_avx512,
                                          t2_f16_store_f16c,
                                          attn_scores_f16_avx512,
                                          attn_mix_f16_avx512,
                                          attn16_avx512,
                                          attn16_f16_avx512,
                                          16,
                                          16,
                                          0,
                                          NULL,
                                          64,
                                          rank_add_avx512};
