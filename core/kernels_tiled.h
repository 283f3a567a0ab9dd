/* How the SIMD kernels (kernels_avx2.c, kernels_avx512.c) go over
 * Y = X·Wᵀ for several rows of x: tiles of `tile_rows` weight rows (the
 * last rows one by one), each against all rows of x in groups of up to
 * MAX_NX, so a tile is read from memory once and then from cache.
 * TILE(w, ldw, cols, x, ldx, nw, nx, pf, y, ldy) computes one tile; nw and
 * nx are constants in each call, so its accumulators stay in registers;
 * pf is the next tile (prefetched while the first group of x reads this
 * one) or NULL. XT is the type of x's values (float, or uint16_t for bf16).
 * The including file defines MAX_NX and INLINE. */
#ifndef T2_KERNELS_TILED_H
#define T2_KERNELS_TILED_H

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

#endif
