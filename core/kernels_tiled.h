/* How the SIMD kernels (kernels_avx2.c, kernels_avx512.c) go over
 * Y = X·Wᵀ for several rows of x: tiles of `tile_rows` weight rows (the
 * last rows one by one), each against all rows of x in groups of up to
 * MAX_NX, so a tile is read from memory once and then from cache.
 * TILE(w, ldw, cols, x, ldx, nw, nx, pf, y, ldy) computes one tile; nw and
 * nx are constants in each call, so its accumulators stay in registers;
 * pf is the next tile (prefetched while the first group of x reads this
 * one) or NULL. XT is the type of x's values (float, or uint16_t for bf16).
 * The including file defines MAX_NX and INLINE. Also the block size of
 * the transposed bf16 product (t2_bf16_t_block_rows). */
#ifndef T2_KERNELS_TILED_H
#define T2_KERNELS_TILED_H

#include <stddef.h>

#define T2_TILE_NX(TILE, NW, XT)                                                                   \
    for (int i = 0; i < n; i += MAX_NX) {                                                          \
        const XT *xi = x + (size_t)i * (size_t)cols;                                               \
        float *yi = y + (size_t)i * ldy + r;                                                       \
        const char *pf = i == 0 ? wr + (size_t)(NW)*ldw : NULL;                                    \
        switch (n - i < MAX_NX ? n - i : MAX_NX) {                                                 \
        case 1: TILE(wr, ldw, cols, xi, (size_t)cols, NW, 1, pf, yi, ldy); break;                  \
        case 2: TILE(wr, ldw, cols, xi, (size_t)cols, NW, 2, pf, yi, ldy); break;                  \
        case 3: TILE(wr, ldw, cols, xi, (size_t)cols, NW, 3, pf, yi, ldy); break;                  \
        default: TILE(wr, ldw, cols, xi, (size_t)cols, NW, 4, pf, yi, ldy); break;                 \
        }                                                                                          \
    }

#define T2_DEFINE_TILED(NAME, TILE, TILE_ROWS, XT)                                                 \
    INLINE void NAME(const char *w, size_t ldw, int rows, int cols, const XT *x, int n, float *y,  \
                     size_t ldy)                                                                   \
    {                                                                                              \
        int r = 0;                                                                                 \
        for (; r + (TILE_ROWS) <= rows; r += (TILE_ROWS)) {                                        \
            const char *wr = w + (size_t)r * ldw;                                                  \
            T2_TILE_NX(TILE, TILE_ROWS, XT)                                                        \
        }                                                                                          \
        for (; r < rows; r++) {                                                                    \
            const char *wr = w + (size_t)r * ldw;                                                  \
            T2_TILE_NX(TILE, 1, XT)                                                                \
        }                                                                                          \
    }

/* The transposed bf16 product (bf16_t) walks w in blocks of rows that stay
 * in L2 while its column strips are read: at most 256 KiB of w (an even
 * number of rows, for vdpbf16ps's pairs), at least 16 rows, and at most
 * max_rows (the size of a caller's scratch for the block's x). */
#define T2_BF16_T_BLOCK_BYTES (256 * 1024)
static inline int t2_bf16_t_block_rows(size_t ldw, int max_rows)
{
    int block = ldw * 16 >= T2_BF16_T_BLOCK_BYTES ? 16 : (int)(T2_BF16_T_BLOCK_BYTES / ldw) & ~1;
    return block < max_rows ? block : max_rows;
}

#endif
