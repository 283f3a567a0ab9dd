/* AMX kernels (Intel Sapphire Rapids and later): bf16 weights times bf16
 * X by tile dot products (TDPBF16PS) for bf16_x16, the entry a q8_0
 * model's factored products use, and Q8_0 weights times 16 or more rows
 * of X on int8 tiles (kernels_amx_q8.c). Every other entry is avx512bf16's.
 *
 * One TDPBF16PS adds a 16 x 32 bf16 tile of weights (16 rows, 64 bytes of
 * each: loaded straight from the row-major matrix) times a 32 x 16 tile of
 * X to a 16 x 16 float tile: 8192 multiply-adds in one instruction, where
 * AVX512-BF16 does 32. Each product of two bf16 values is exact in float,
 * as in vdpbf16ps (and subnormal inputs count as zero there too). X must
 * be in the "VNNI" layout: row k of the X tile holds, for each row t of X,
 * the pair of columns 2k, 2k + 1: a 32-bit transpose, packed once per call
 * for up to CHUNK_BLOCKS blocks of 32 columns.
 *
 * No software prefetch: the tile loads of 16 (or 64) rows at a time keep
 * enough misses in flight; prefetching 2-16 blocks ahead into L1 or L2
 * was slower on the Sapphire Rapids Xeon we measure (one core, 16 rows of
 * X from memory: 105-160 vs 194 GMAC/s without).
 *
 * Used only when the CPU has AMX-TILE, AMX-BF16 and AMX-INT8 and Linux
 * lets the process use the tile registers (kernels.c asks once). */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"
#include "kernels_amx.h"

enum {
    TILE_ROWS = 16,   /* weight rows per accumulator tile */
    TILE_X = 16,      /* rows of X per tile */
    X_TILES = 4,      /* tiles of X per pass over the weights */
    BLOCK_COLS = 32,  /* bf16 columns per tile dot product */
    CHUNK_BLOCKS = 32 /* blocks of X packed at a time: 32 KiB a tile */
};

/* Palette 1: tiles 0-3 accumulate 64 weight rows, 4-5 hold weights,
 * 6 holds X; every tile 16 rows of 64 bytes. */
TARGET_AMX static void load_config(void)
{
    t2_tile_config cfg __attribute__((aligned(64)));
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 7; t++) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = 16;
    }
    _tile_loadconfig(&cfg);
}

/* X's blocks [b0, b0 + nb) in the VNNI layout: xp[b][k][t] is the pair of
 * columns 2k, 2k + 1 of block b in row t of X (zero for t >= n), by a
 * transpose in registers per block (every worker packs X for its own
 * rows; element by element that took ~5 us a call). */
TARGET_AMX static void pack_x(const uint16_t *x, int cols, int n, int b0, int nb,
                              uint32_t xp[][BLOCK_COLS / 2][TILE_X])
{
    for (int b = 0; b < nb; b++) {
        __m512i r[16];
        for (int t = 0; t < TILE_X; t++)
            r[t] = t < n ? _mm512_loadu_si512(x + (size_t)t * (size_t)cols +
                                              (size_t)(b0 + b) * BLOCK_COLS)
                         : _mm512_setzero_si512();
        t2_transpose16(r);
        for (int k = 0; k < BLOCK_COLS / 2; k++)
            _mm512_store_si512(xp[b][k], r[k]);
    }
}

/* acc (16 weight rows x 16 rows of X) into y: stored, or added to what an
 * earlier chunk of columns stored. */
static void put_rows(const float acc[TILE_ROWS][TILE_X], int n, int first_chunk, float *y,
                     size_t ldy)
{
    for (int t = 0; t < n; t++) {
        float *yt = y + (size_t)t * ldy;
        for (int r = 0; r < TILE_ROWS; r++)
            yt[r] = first_chunk ? acc[r][t] : yt[r] + acc[r][t];
    }
}

/* Rows [0, rows) (rows % 16 == 0) times blocks [b0, b0 + nb) of X's
 * tiles xp[0..tiles) (16 rows of X each, the last one nt_last rows):
 * each group of 64 weight rows against every tile of X in turn, so it is
 * read from memory once and from L2 for the other tiles. One tile of X
 * (a decode batch, bound by streaming the weights) goes 32 rows at a time:
 * fewer rows streamed side by side per core. Device Xeon, 8 threads, 8
 * sequences over 4 experts (q8_0, bf16 factors), 64 -> 32 rows: smollm2-360m
 * 394, 415 -> 470, 469 tok/s; llama-3.2-1b 122, 129 -> 166, 170 (16 rows:
 * 438, 367 and 171, 165); 2 threads 187, 154 -> 165. */
TARGET_AMX static void rows_times_chunk(const char *w, size_t ldw, int rows, int b0, int nb,
                                        const uint32_t xp[][CHUNK_BLOCKS][BLOCK_COLS / 2][TILE_X],
                                        int tiles, int nt_last, int first_chunk, float *y,
                                        size_t ldy)
{
    float acc[4][TILE_ROWS][TILE_X] __attribute__((aligned(64)));
    const size_t col0 = (size_t)b0 * BLOCK_COLS * 2, step = BLOCK_COLS * 2;
    const size_t tile = TILE_ROWS * ldw;
    /* weight tiles per pass: 4 (64 rows) for a prompt, 2 for a decode batch */
    const int quad = tiles > 1, group = quad ? 4 : 2;
    int r = 0;
    for (; r + group * TILE_ROWS <= rows; r += group * TILE_ROWS) {
        const char *wr = w + (size_t)r * ldw + col0;
        for (int k = 0; k < tiles; k++) {
            _tile_zero(0);
            _tile_zero(1);
            if (quad) {
                _tile_zero(2);
                _tile_zero(3);
            }
            for (int b = 0; b < nb; b++) {
                const char *wb = wr + (size_t)b * step;
                _tile_loadd(6, xp[k][b], 64);
                _tile_loadd(4, wb, ldw);
                _tile_loadd(5, wb + tile, ldw);
                _tile_dpbf16ps(0, 4, 6);
                _tile_dpbf16ps(1, 5, 6);
                if (quad) {
                    _tile_loadd(4, wb + 2 * tile, ldw);
                    _tile_loadd(5, wb + 3 * tile, ldw);
                    _tile_dpbf16ps(2, 4, 6);
                    _tile_dpbf16ps(3, 5, 6);
                }
            }
            _tile_stored(0, acc[0], 64);
            _tile_stored(1, acc[1], 64);
            if (quad) {
                _tile_stored(2, acc[2], 64);
                _tile_stored(3, acc[3], 64);
            }
            int nt = k == tiles - 1 ? nt_last : TILE_X;
            float *yk = y + (size_t)k * TILE_X * ldy;
            for (int q = 0; q < group; q++)
                put_rows(acc[q], nt, first_chunk, yk + r + q * TILE_ROWS, ldy);
        }
    }
    for (; r < rows; r += TILE_ROWS) {
        const char *wr = w + (size_t)r * ldw + col0;
        for (int k = 0; k < tiles; k++) {
            _tile_zero(0);
            for (int b = 0; b < nb; b++) {
                _tile_loadd(6, xp[k][b], 64);
                _tile_loadd(4, wr + (size_t)b * step, ldw);
                _tile_dpbf16ps(0, 4, 6);
            }
            _tile_stored(0, acc[0], 64);
            put_rows(acc[0], k == tiles - 1 ? nt_last : TILE_X, first_chunk,
                     y + (size_t)k * TILE_X * ldy + r, ldy);
        }
    }
}

/* Up to 64 rows of X (a prompt's, t2_kernels.prompt_rows at a time) per pass
 * over the weights, 16 to a tile. */
TARGET_AMX static void bf16_x16_amx(const uint16_t *w, size_t ldw, int rows, int cols,
                                    const uint16_t *x, int n, float *y, size_t ldy)
{
    int tiled = rows / TILE_ROWS * TILE_ROWS;
    /* one or two rows of X are bound by memory, where avx512bf16 widens X
     * for its streaming loops; columns not in whole blocks and the last
     * rows (< 16) go there too */
    if (n <= 2 || cols % BLOCK_COLS || tiled == 0) {
        t2_kernels_avx512bf16.bf16_x16(w, ldw, rows, cols, x, n, y, ldy);
        return;
    }
    if (tiled < rows)
        t2_kernels_avx512bf16.bf16_x16(
            (const uint16_t *)(const void *)((const char *)w + (size_t)tiled * ldw), ldw,
            rows - tiled, cols, x, n, y + tiled, ldy);
    uint32_t xp[X_TILES][CHUNK_BLOCKS][BLOCK_COLS / 2][TILE_X] __attribute__((aligned(64)));
    int blocks = cols / BLOCK_COLS;
    load_config();
    for (int t0 = 0; t0 < n; t0 += X_TILES * TILE_X) {
        int nx = n - t0 < X_TILES * TILE_X ? n - t0 : X_TILES * TILE_X;
        int tiles = (nx + TILE_X - 1) / TILE_X, nt_last = nx - (tiles - 1) * TILE_X;
        for (int b0 = 0; b0 < blocks; b0 += CHUNK_BLOCKS) {
            int nb = blocks - b0 < CHUNK_BLOCKS ? blocks - b0 : CHUNK_BLOCKS;
            for (int k = 0; k < tiles; k++)
                pack_x(x + (size_t)(t0 + k * TILE_X) * (size_t)cols, cols,
                       k == tiles - 1 ? nt_last : TILE_X, b0, nb, xp[k]);
            rows_times_chunk((const char *)w, ldw, tiled, b0, nb,
                             (const uint32_t(*)[CHUNK_BLOCKS][BLOCK_COLS / 2][TILE_X]) xp, tiles,
                             nt_last, b0 == 0, y + (size_t)t0 * ldy, ldy);
        }
    }
    _tile_release();
}

static void f32_amx(const float *w, size_t ldw, int rows, int cols, const float *x, int n, float *y,
                    size_t ldy)
{
    t2_kernels_avx512bf16.f32(w, ldw, rows, cols, x, n, y, ldy);
}

static void bf16_amx(const uint16_t *w, size_t ldw, int rows, int cols, const float *x, int n,
                     float *y, size_t ldy)
{
    t2_kernels_avx512bf16.bf16(w, ldw, rows, cols, x, n, y, ldy);
}

/* 16 or more rows of X (a prompt's, 64 at a time: prompt_rows) on int8 tiles
 * (kernels_amx_q8.c); the last weight rows (< 16) and fewer rows of X (a
 * decode step's) on VNNI. Device Xeon, smollm2-360m q8_0: prefill of 512
 * tokens 356, 405 -> 592, 555 tok/s (2 threads) with 16 rows a call;
 * but a decode batch of 8 on one expert 874-879 -> 612-642 tok/s (8
 * threads) on tiles: their path streams the weights slower than VNNI's
 * loops. */
static void q8_0_amx(const uint8_t *w, size_t ldw, int rows, int cols, const t2_q8_act *x, int n,
                     float *y, size_t ldy)
{
    int tiled = rows / 16 * 16;
    if (n < 16 || tiled == 0) {
        t2_kernels_avx512bf16.q8_0(w, ldw, rows, cols, x, n, y, ldy);
        return;
    }
    if (tiled < rows)
        t2_kernels_avx512bf16.q8_0(w + (size_t)tiled * ldw, ldw, rows - tiled, cols, x, n,
                                   y + tiled, ldy);
    t2_q8_0_amx_tiles(w, ldw, tiled, cols, x, n, y, ldy);
}

static void q8_act_amx(const float *x, int n, int cols, t2_q8_act *out)
{
    t2_kernels_avx512bf16.q8_act(x, n, cols, out);
}

static void silu_mul_amx(float *g, const float *u, size_t n)
{
    t2_kernels_avx512bf16.silu_mul(g, u, n);
}

static void attn_scores_amx(const float *k, size_t ld, int n, int d, const float *q, float scale,
                            float *s)
{
    t2_kernels_avx512bf16.attn_scores(k, ld, n, d, q, scale, s);
}

static void attn_mix_amx(const float *v, size_t ld, int n, int d, const float *w, float scale,
                         float *out)
{
    t2_kernels_avx512bf16.attn_mix(v, ld, n, d, w, scale, out);
}

static void attn_scores_f16_amx(const uint16_t *k, size_t ld, int n, int d, const float *q,
                                float scale, float *s)
{
    t2_kernels_avx512bf16.attn_scores_f16(k, ld, n, d, q, scale, s);
}

static void attn_mix_f16_amx(const uint16_t *v, size_t ld, int n, int d, const float *w,
                             float scale, float *out)
{
    t2_kernels_avx512bf16.attn_mix_f16(v, ld, n, d, w, scale, out);
}

static void bf16_t_amx(const uint16_t *w, size_t ldw, int rows, int c0, int c1, const uint16_t *x,
                       size_t ldx, int n, float *y, size_t ldy)
{
    t2_kernels_avx512bf16.bf16_t(w, ldw, rows, c0, c1, x, ldx, n, y, ldy);
}

static float exp_shift_amx(float *s, int n, float mx)
{
    return t2_kernels_avx512bf16.exp_shift(s, n, mx);
}

static void attn16_amx(const float *k, const float *v, size_t ld, int d, const float *qt, int nq,
                       const int *n, int gap_from, int gap_to, float *s, float *const *out)
{
    t2_kernels_avx512bf16.attn16(k, v, ld, d, qt, nq, n, gap_from, gap_to, s, out);
}

static void attn16_f16_amx(const uint16_t *k, const uint16_t *v, size_t ld, int d, const float *qt,
                           int nq, const int *n, int gap_from, int gap_to, float *s,
                           float *const *out)
{
    t2_kernels_avx512bf16.attn16_f16(k, v, ld, d, qt, nq, n, gap_from, gap_to, s, out);
}

static void rank_add_amx(const float *a, int n, int k, const float *b, size_t ldb, int cols,
                         float *y, size_t ldy)
{
    t2_kernels_avx512bf16.rank_add(a, n, k, b, ldb, cols, y, ldy);
}

const t2_kernels t2_kernels_amx = {"amx",
                                   f32_amx,
                                   bf16_amx,
                                   q8_0_amx,
                                   q8_act_amx,
                                   bf16_x16_amx,
                                   bf16_t_amx,
                                   silu_mul_amx,
                                   attn_scores_amx,
                                   attn_mix_amx,
                                   exp_shift_amx,
                                   t2_f16_store_f16c,
                                   attn_scores_f16_amx,
                                   attn_mix_f16_amx,
                                   attn16_amx,
                                   attn16_f16_amx,
                                   1,
                                   64,
                                   0,
                                   NULL,
                                   64,
                                   rank_add_amx};
