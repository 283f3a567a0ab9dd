/* Q8_0 weights times quantised X on AMX int8 tiles (TDPBSSD), 16 rows of
 * X at a time (a prompt's; kernels_amx.c says why not a decode step's).
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
 * weights, shared by every row of X (VNNI does 64 multiply-adds per
 * instruction; with 16 rows of X this does 16384 per 64 shuffles and one
 * tile product per block). The quants are stored as q + 128; they are
 * flipped back to signed bytes once, after the transpose, so the sums
 * need no correction. X is unpacked once per call into blocks of 32
 * values in order, 32 blocks at a time. The 16 rows are read a line of
 * each at a time, which the hardware prefetchers do not follow: each
 * line of the next 16 rows is prefetched into L2 (one core from memory,
 * 16 rows of X: 57-73 -> 84-90 GMAC/s; VNNI 79).
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
    XROWS = 16,        /* most rows of X per tile */
    BLOCK = 32,        /* columns (bytes) per tile product */
    CHUNK_BLOCKS = 32, /* blocks of X unpacked at a time: 16 KiB, two groups */
};

/* Tiles 0-3 hold sums (nt x 16 int32), 4-5 X (nt x 32 bytes), 6-7 the
 * weights (8 x 64 bytes); the tile intrinsics take literal numbers. */

TARGET_AMX static void load_config(int nt)
{
    t2_tile_config cfg __attribute__((aligned(64)));
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 4; t++) {
        cfg.rows[t] = (uint8_t)nt;
        cfg.colsb[t] = 64;
    }
    for (int t = 4; t < 6; t++) {
        cfg.rows[t] = (uint8_t)nt;
        cfg.colsb[t] = BLOCK;
    }
    for (int t = 6; t < 8; t++) {
        cfg.rows[t] = BLOCK / 4;
        cfg.colsb[t] = 64;
    }
    _tile_loadconfig(&cfg);
}

/* The mask of the blocks of group g (16 blocks) that a row of nb blocks
 * has. */
static inline __mmask16 group_mask(int nb, int g)
{
    int left = nb - T2_Q8_0_GROUP * g;
    return left >= T2_Q8_0_GROUP ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);
}

/* Blocks [b0, b0 + nbc) of rows [0, nt) of X (b0 a multiple of 16) in
 * order: xa[b][t] = values 0..31 of block b0 + b of row t. X's group
 * order has value 4u + i of block j at 64 u + 4 j + i: a transpose of
 * the group's 8 lines. */
TARGET_AMX static void unpack_x(const t2_q8_act *x, int cols, int nt, int b0, int nbc,
                                int8_t xa[][XROWS][BLOCK])
{
    size_t ldq = t2_q8_act_row_bytes(cols);
    for (int t = 0; t < nt; t++)
        for (int b = 0; b < nbc; b += T2_Q8_0_GROUP) {
            const int8_t *xg =
                x->q + (size_t)t * ldq + (size_t)((b0 + b) / T2_Q8_0_GROUP) * T2_Q8_0_GROUP_X;
            __m512i r[16];
            for (int u = 0; u < 8; u++)
                r[u] = _mm512_load_si512((const void *)(xg + 64 * u));
            for (int u = 8; u < 16; u++)
                r[u] = _mm512_setzero_si512();
            t2_transpose16(r);
            int m = nbc - b < T2_Q8_0_GROUP ? nbc - b : T2_Q8_0_GROUP;
            for (int j = 0; j < m; j++)
                _mm256_store_si256((__m256i *)(void *)xa[b + j][t], _mm512_castsi512_si256(r[j]));
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
    __mmask16 mask = group_mask(nb, g);
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

/* tile_rows' block jj of group g0 (xa, wb) into sum tile C, through X
 * tile A and weight tile B (literal tile numbers, as the intrinsics want) */
#define BLOCK_PRODUCT(C, A, B, jj)                                                                 \
    do {                                                                                           \
        _tile_loadd(A, xa[g0 + (jj)], BLOCK);                                                      \
        _tile_loadd(B, wb[jj], 64);                                                                \
        _tile_zero(C);                                                                             \
        _tile_dpbssd(C, A, B);                                                                     \
    } while (0)

/* Weight rows [0, 16) times blocks [b0, b0 + nbc) of X (unpacked in xa)
 * into acc. */
TARGET_AMX static void tile_rows(const uint8_t *w, size_t ldw, int nb, int b0, int nbc,
                                 const int8_t xa[][XROWS][BLOCK], const float *xd, int nt,
                                 __m512 acc[XROWS])
{
    int8_t wb[T2_Q8_0_GROUP][BLOCK / 4][64] __attribute__((aligned(64)));
    float sw[T2_Q8_0_GROUP][ROWS] __attribute__((aligned(64)));
    int32_t cs[4][XROWS][ROWS] __attribute__((aligned(64)));
    for (int g0 = 0; g0 < nbc; g0 += T2_Q8_0_GROUP) {
        int g = (b0 + g0) / T2_Q8_0_GROUP, m = t2_q8_0_group_blocks(nb, g);
        stage_group(w, ldw, nb, g, wb, sw);
        int j = 0;
        for (; j + 4 <= m; j += 4) { /* four sum tiles in flight */
            BLOCK_PRODUCT(0, 4, 6, j);
            BLOCK_PRODUCT(1, 5, 7, j + 1);
            BLOCK_PRODUCT(2, 4, 6, j + 2);
            BLOCK_PRODUCT(3, 5, 7, j + 3);
            _tile_stored(0, cs[0], 64);
            _tile_stored(1, cs[1], 64);
            _tile_stored(2, cs[2], 64);
            _tile_stored(3, cs[3], 64);
            for (int q = 0; q < 4; q++)
                scale_block((const int32_t(*)[ROWS])cs[q], xd, nb, b0 + g0 + j + q, sw[j + q], nt,
                            acc);
        }
        for (; j < m; j++) {
            BLOCK_PRODUCT(0, 4, 6, j);
            _tile_stored(0, cs[0], 64);
            scale_block((const int32_t(*)[ROWS])cs[0], xd, nb, b0 + g0 + j, sw[j], nt, acc);
        }
    }
}

TARGET_AMX void t2_q8_0_amx_tiles(const uint8_t *w, size_t ldw, int rows, int cols,
                                  const t2_q8_act *x, int n, float *y, size_t ldy)
{
    int8_t xa[CHUNK_BLOCKS][XROWS][BLOCK] __attribute__((aligned(64)));
    int nb = cols / T2_Q8_0_BLOCK;
    for (int t0 = 0; t0 < n; t0 += XROWS) {
        int nt = n - t0 < XROWS ? n - t0 : XROWS;
        t2_q8_act xt = t2_q8_act_rows(x, cols, t0);
        float *yt = y + (size_t)t0 * ldy;
        load_config(nt);
        for (int b0 = 0; b0 < nb; b0 += CHUNK_BLOCKS) {
            int nbc = nb - b0 < CHUNK_BLOCKS ? nb - b0 : CHUNK_BLOCKS;
            unpack_x(&xt, cols, nt, b0, nbc, xa);
            for (int r = 0; r < rows; r += ROWS) {
                __m512 acc[XROWS];
                for (int t = 0; t < nt; t++)
                    acc[t] = b0 == 0 ? _mm512_setzero_ps()
                                     : _mm512_loadu_ps(yt + (size_t)t * ldy + (size_t)r);
                tile_rows(w + (size_t)r * ldw, ldw, nb, b0, nbc, (const int8_t(*)[XROWS][BLOCK])xa,
                          xt.d, nt, acc);
                for (int t = 0; t < nt; t++)
                    _mm512_storeu_ps(yt + (size_t)t * ldy + (size_t)r, acc[t]);
            }
        }
    }
    _tile_release();
}
