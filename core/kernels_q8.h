/* How the SIMD Q8_0 kernels (kernels_avx2.c, kernels_avx512.c) go over
 * Y = X·Wᵀ: x is first copied into the weights' interleaved group order
 * (t2_q8_0_x_interleave) on the stack, T2_Q8_X_BYTES at most, so rows of
 * x are taken T2_Q8_X_ROWS at a time and long rows in slices of whole
 * groups (partial sums added into y). Within a slice every weight row
 * meets all its rows of x, MAX_NX at a time, while it is in cache, so the
 * weights are read from memory once.
 *
 * PREP(xil, ng, state) computes, per row of x, what the kernel needs of
 * x alone for each of the slice's ng groups (state[0..ng), of STATE_T);
 * PAIRS(w, ldw, rows, nb, xil, state, xd, add, y) multiplies all rows
 * with one row of x; ROW(wr, ldw, nb, xil, ldx, state, ng, xd, ldd, nx,
 * add, y, ldy) one weight row (ldw apart from the next) with nx (1..4, a constant per call) rows of
 * x. add: add to y (a later slice) instead of storing. The including file defines MAX_NX and
 * INLINE. */
#ifndef T2_KERNELS_Q8_H
#define T2_KERNELS_Q8_H

#define T2_Q8_X_BYTES 65536
#define T2_Q8_X_GROUPS (T2_Q8_X_BYTES / T2_Q8_0_GROUP_X)
#define T2_Q8_X_ROWS 32

#define T2_DEFINE_Q8_SLICED(NAME, STATE_T, PREP, PAIRS, ROW)                                       \
    INLINE void NAME(const uint8_t *w, size_t ldw, int rows, int cols, const int8_t *xq,           \
                     const float *xd, int n, float *y, size_t ldy)                                 \
    {                                                                                              \
        int nb = cols / T2_Q8_0_BLOCK;                                                             \
        for (int i0 = 0; i0 < n; i0 += T2_Q8_X_ROWS) {                                             \
            int nxb = n - i0 < T2_Q8_X_ROWS ? n - i0 : T2_Q8_X_ROWS;                               \
            int slice = T2_Q8_X_BYTES / nxb / T2_Q8_0_GROUP_X * T2_Q8_0_GROUP_X;                   \
            for (int c0 = 0; c0 < cols; c0 += slice) {                                             \
                int snb = (cols - c0 < slice ? cols - c0 : slice) / T2_Q8_0_BLOCK;                 \
                int ng = (snb + T2_Q8_0_GROUP - 1) / T2_Q8_0_GROUP, add = c0 > 0;                  \
                size_t ldx = (size_t)ng * T2_Q8_0_GROUP_X;                                         \
                const uint8_t *ws = w + t2_q8_0_group_offset(c0 / T2_Q8_0_GROUP_X);                \
                const float *xds = xd + (size_t)i0 * (size_t)nb + c0 / T2_Q8_0_BLOCK;              \
                _Alignas(64) int8_t xil[T2_Q8_X_BYTES];                                            \
                STATE_T state[T2_Q8_X_GROUPS];                                                     \
                for (int i = 0; i < nxb; i++) {                                                    \
                    t2_q8_0_x_interleave(xq + (size_t)(i0 + i) * (size_t)cols + c0, snb,           \
                                         xil + (size_t)i * ldx);                                   \
                    PREP(xil + (size_t)i * ldx, ng, state + (size_t)i * (size_t)ng);               \
                }                                                                                  \
                if (nxb == 1) {                                                                    \
                    PAIRS(ws, ldw, rows, snb, xil, state, xds, add, y + (size_t)i0 * ldy);         \
                    continue;                                                                      \
                }                                                                                  \
                for (int r = 0; r < rows; r++)                                                     \
                    for (int i = 0; i < nxb; i += MAX_NX) {                                        \
                        const uint8_t *wr = ws + (size_t)r * ldw;                                  \
                        const int8_t *xi = xil + (size_t)i * ldx;                                  \
                        const STATE_T *si = state + (size_t)i * (size_t)ng;                        \
                        const float *di = xds + (size_t)i * (size_t)nb;                            \
                        float *yi = y + (size_t)(i0 + i) * ldy + (size_t)r;                        \
                        switch (nxb - i < MAX_NX ? nxb - i : MAX_NX) {                             \
                        case 1: ROW(wr, ldw, snb, xi, ldx, si, ng, di, nb, 1, add, yi, ldy);       \
                            break;                                                                 \
                        case 2: ROW(wr, ldw, snb, xi, ldx, si, ng, di, nb, 2, add, yi, ldy);       \
                            break;                                                                 \
                        case 3: ROW(wr, ldw, snb, xi, ldx, si, ng, di, nb, 3, add, yi, ldy);       \
                            break;                                                                 \
                        default: ROW(wr, ldw, snb, xi, ldx, si, ng, di, nb, 4, add, yi, ldy);      \
                            break;                                                                 \
                        }                                                                          \
                    }                                                                              \
            }                                                                                      \
        }                                                                                          \
    }

#endif
