/* Q8_0 weights times quantised X on AMX int8 tiles (TDPBSSD), for a
 * prompt's rows of X (kernels_amx.c says why not a decode step's), up to
 * 64 of them (four tiles) per pass over the weights.
 *
 * A Q8_0 block has its own scale, so each tile product covers one block:
 * C[t][r] = sum over its 32 columns of x[t] * q[r], a tile of up to 16
 * rows of X times 16 weight rows, converted to float and scaled (x's
 * scale times the weight's) into float sums per row of X. The tiles want
 * the weights as the right-hand operand in their "VNNI" layout, row u
 * holding quants 4u..4u+3 of each of 16 weight rows; t2's rows hold, per
 * 64 bytes, quants 4u..4u+3 of each of a group's 16 blocks (kernels.h).
 * So a 16 x 16 transpose of 32-bit values turns one 64-byte line of 16
 * weight rows into row u of 16 blocks' tiles: 64 shuffles per 1024
 * weights, shared by every row of X of the pass (VNNI does 64
 * multiply-adds per instruction; with 64 rows of X this does 65536 per
 * 64 shuffles and four tile products per block). The quants are stored
 * as q + 128; they are flipped back to signed bytes once, after the
 * transpose, so the sums need no correction. X is unpacked once per pass
 * into blocks of 32 values in order, 32 blocks at a time. The 16 rows are
 * read a line of each at a time, which the hardware prefetchers do not
 * follow: each line of the next 16 rows is prefetched into L2 (one core
 * from memory, 16 rows of X: 57-73 -> 84-90 GMAC/s; VNNI 79).
 *
 * Passes of 64 rows instead of 16 (the prefill's calls,
 * t2_kernels.prompt_rows): device Xeon, smollm2-360m q8_0, pp 512: 646,
 * 502 -> 740, 820 tok/s (2 threads), 1455, 1256 -> 1755, 2055 (8);
 * llama-3.2-1b pp 256, 8 threads: 497 -> 894.
 *
 * Sums are exact in int32 per block; the float sums add the blocks in
 * order, as the scalar reference does, with one rounding more (the
 * block's sum times x's scale is rounded before the weight's scale). */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"
#include "kernels_amx.h"

enum {
    ROWS = 16,         /* weight rows per tile */
    XROWS = 16,        /* rows of X per tile */
    XTILES = 4,        /* tiles of X per pass over the weights: 64 rows */
    BLOCK = 32,        /* columns (bytes) per tile product */
    CHUNK_BLOCKS = 32, /* blocks of X unpacked at a time: two groups */
};

/* Tiles 0-3 hold sums (16 rows of X x 16 weight rows, int32) for up to
 * four tiles of X, 4-5 X (16 x 32 bytes), 6 a block's weights (8 x 64
 * bytes); the tile intrinsics take literal numbers. A last tile of X
 * with fewer than 16 rows is padded with zero rows, whose sums are not
 * used. */
TARGET_AMX static void load_config(void)
{
    t2_tile_config cfg __attribute__((aligned(64)));
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 4; t++) {
        cfg.rows[t] = XROWS;
        cfg.colsb[t] = 64;
    }
    for (int t = 4; t < 6; t++) {
        cfg.rows[t] = XROWS;
        cfg.colsb[t] = BLOCK;
    }
    cfg.rows[6] = BLOCK / 4;
    cfg.colsb[6] = 64;
    _tile_loadconfig(&cfg);
}

/* Blocks [b0, b0 + nbc) of rows [0, nx) of X (b0 a multiple of 16) in
 * order, 16 rows to a tile: xa[t / 16][b][t % 16] = values 0..31 of block
 * b0 + b of row t, the rows after nx up to a whole tile zero. X's group
 * order has value 4u + i of block j at 64 u + 4 j + i: a transpose of
 * the group's 8 lines. */
TARGET_AMX static void unpack_x(const t2_q8_act *x, int cols, int nx, int b0, int nbc,
                                int8_t xa[XTILES][CHUNK_BLOCKS][XROWS][BLOCK])
{
    size_t ldq = t2_q8_act_row_bytes(cols);
    int padded = (nx + XROWS - 1) / XROWS * XROWS;
    for (int t = 0; t < padded; t++)
        for (int b = 0; b < nbc; b += T2_Q8_0_GROUP) {
            int m = nbc - b < T2_Q8_0_GROUP ? nbc - b : T2_Q8_0_GROUP;
            int8_t(*dst)[XROWS][BLOCK] = xa[t / XROWS] + b;
            if (t >= nx) {
                for (int j = 0; j < m; j++)
                    memset(dst[j][t % XROWS], 0, BLOCK);
                continue;
            }
            const int8_t *xg =
                x->q + (size_t)t * ldq + (size_t)((b0 + b) / T2_Q8_0_GROUP) * T2_Q8_0_GROUP_X;
            __m512i r[16];
            for (int u = 0; u < 8; u++)
                r[u] = _mm512_load_si512((const void *)(xg + 64 * u));
            for (int u = 8; u < 16; u++)
                r[u] = _mm512_setzero_si512();
            t2_transpose16(r);
            for (int j = 0; j < m; j++)
                _mm256_store_si256((__m256i *)(void *)dst[j][t % XROWS],
                                   _mm512_castsi512_si256(r[j]));
        }
}

/* Group g of weight rows w[0..16) as the tiles' right-hand operands:
 * wb[j] = block j's 8 x 64 bytes (row u: quants 4u..4u+3 of each weight
 * row, signed), and sw[j] = block j's scale in each weight row. */
TARGET_AMX static void stage_group(const uint8_t *w, size_t ldw, int nb, int g,
                                   int8_t wb[T2_Q8_0_GROUP][BLOCK / 4][64],
                                   float sw[T2_Q8_0_GROUP][ROWS])
{
    int m = t2_q8_0_group_blocks(nb, g);
    __mmask16 mask = (__mmask16)t2_q8_0_group_lanes(nb, g);
    const uint8_t *wg = w + t2_q8_0_group_offset(g);
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    for (int u = 0; u < BLOCK / 4; u++) {
        __m512i r[16];
        for (int i = 0; i < ROWS; i++) {
            const char *p = (const char *)wg + (size_t)i * ldw + (size_t)(4 * m * u);
            _mm_prefetch(p + ROWS * ldw, _MM_HINT_T1); /* the next 16 rows' line */
            r[i] = m == T2_Q8_0_GROUP ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi32(mask, p);
        }
        t2_transpose16(r);
        for (int j = 0; j < m; j++)
            _mm512_store_si512((void *)wb[j][u], _mm512_xor_si512(r[j], flip));
    }
    __m512i s[16];
    for (int i = 0; i < ROWS; i++)
        s[i] = _mm512_castps_si512(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(
            mask, t2_q8_0_row_scale(w + (size_t)i * ldw, nb, T2_Q8_0_GROUP * g))));
    t2_transpose16(s);
    for (int j = 0; j < m; j++)
        _mm512_store_si512((void *)sw[j], s[j]);
}

/* The int32 sums of one block (cs[t]: 16 weight rows) into the float
 * sums: times x's scale, then the weights'. */
TARGET_AMX static inline void scale_block(const int32_t cs[XROWS][ROWS], const float *xd, int nb,
                                          int b, const float *sw, int nt, __m512 acc[XROWS])
{
    __m512 s = _mm512_load_ps(sw);
    for (int t = 0; t < nt; t++) {
        __m512 v = _mm512_cvtepi32_ps(_mm512_load_si512((const void *)cs[t]));
        v = _mm512_mul_ps(v, _mm512_set1_ps(xd[(size_t)t * (size_t)nb + (size_t)b]));
        acc[t] = _mm512_fmadd_ps(v, s, acc[t]);
    }
}

/* tile_rows' block g0 + j of X tile k (xa) times the block's weights
 * (tile 6) into sum tile C, through X tile A (literal tile numbers, as
 * the intrinsics want) */
#define XTILE_PRODUCT(C, A, k)                                                                     \
    do {                                                                                           \
        _tile_loadd(A, xa[k][g0 + j], BLOCK);                                                      \
        _tile_zero(C);                                                                             \
        _tile_dpbssd(C, A, 6);                                                                     \
    } while (0)

/* Weight rows [0, 16) times blocks [b0, b0 + nbc) of nx rows of X
 * (unpacked in xa; scales xd, rows nb apart) into acc[0..nx). Each group
 * of the weights is staged once for all the tiles of X. */
TARGET_AMX static void tile_rows(const uint8_t *w, size_t ldw, int nb, int b0, int nbc,
                                 const int8_t xa[XTILES][CHUNK_BLOCKS][XROWS][BLOCK],
                                 const float *xd, int nx, __m512 acc[XTILES * XROWS])
{
    int8_t wb[T2_Q8_0_GROUP][BLOCK / 4][64] __attribute__((aligned(64)));
    float sw[T2_Q8_0_GROUP][ROWS] __attribute__((aligned(64)));
    int32_t cs[XTILES][XROWS][ROWS] __attribute__((aligned(64)));
    int tiles = (nx + XROWS - 1) / XROWS;
    for (int g0 = 0; g0 < nbc; g0 += T2_Q8_0_GROUP) {
        int g = (b0 + g0) / T2_Q8_0_GROUP, m = t2_q8_0_group_blocks(nb, g);
        stage_group(w, ldw, nb, g, wb, sw);
        for (int j = 0; j < m; j++) {
            _tile_loadd(6, wb[j], 64);
            XTILE_PRODUCT(0, 4, 0);
            if (tiles > 1)
                XTILE_PRODUCT(1, 5, 1);
            if (tiles > 2)
                XTILE_PRODUCT(2, 4, 2);
            if (tiles > 3)
                XTILE_PRODUCT(3, 5, 3);
            _tile_stored(0, cs[0], 64);
            if (tiles > 1)
                _tile_stored(1, cs[1], 64);
            if (tiles > 2)
                _tile_stored(2, cs[2], 64);
            if (tiles > 3)
                _tile_stored(3, cs[3], 64);
            for (int k = 0; k < tiles; k++) {
                int nt = nx - k * XROWS < XROWS ? nx - k * XROWS : XROWS;
                scale_block((const int32_t(*)[ROWS])cs[k], xd + (size_t)k * XROWS * (size_t)nb, nb,
                            b0 + g0 + j, sw[j], nt, acc + k * XROWS);
            }
        }
    }
}

TARGET_AMX void t2_q8_0_amx_tiles(const uint8_t *w, size_t ldw, int rows, int cols,
                                  const t2_q8_act *x, int n, float *y, size_t ldy)
{
    int8_t xa[XTILES][CHUNK_BLOCKS][XROWS][BLOCK] __attribute__((aligned(64)));
    int nb = cols / T2_Q8_0_BLOCK;
    load_config();
    for (int t0 = 0; t0 < n; t0 += XTILES * XROWS) {
        int nx = n - t0 < XTILES * XROWS ? n - t0 : XTILES * XROWS;
        t2_q8_act xt = t2_q8_act_rows(x, cols, t0);
        float *yt = y + (size_t)t0 * ldy;
        for (int b0 = 0; b0 < nb; b0 += CHUNK_BLOCKS) {
            int nbc = nb - b0 < CHUNK_BLOCKS ? nb - b0 : CHUNK_BLOCKS;
            unpack_x(&xt, cols, nx, b0, nbc, xa);
            for (int r = 0; r < rows; r += ROWS) {
                __m512 acc[XTILES * XROWS];
                for (int t = 0; t < nx; t++)
                    acc[t] = b0 == 0 ? _mm512_setzero_ps()
                                     : _mm512_loadu_ps(yt + (size_t)t * ldy + (size_t)r);
                tile_rows(w + (size_t)r * ldw, ldw, nb, b0, nbc,
                          (const int8_t(*)[CHUNK_BLOCKS][XROWS][BLOCK])xa, xt.d, nx, acc);
                for (int t = 0; t < nx; t++)
                    _mm512_storeu_ps(yt + (size_t)t * ldy + (size_t)r, acc[t]);
            }
        }
    }
    _tile_release();
}
