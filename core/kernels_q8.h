/* How the AVX2 Q8_0 kernel (kernels_avx2.c; kernels_avx512.c tiles its own) goes over
 * Y = X·Wᵀ with X quantised (t2_q8_act): one row of X by PAIRS(w, ldw,
 * rows, nb, xq, xsum, xd, y) over all rows; more rows of X weight row by
 * weight row, each against all rows of X MAX_NX at a time while it is in
 * cache, so the weights are read from memory once: ROW(wr, ldw, nb, xq,
 * ldq, xsum, xd, nx, y, ldy) with nx (1..MAX_NX) a constant per call, so
 * its sums stay in registers (xsum and xd rows are nb apart). The
 * including file defines MAX_NX and INLINE. */
#ifndef T2_KERNELS_Q8_H
#define T2_KERNELS_Q8_H

#define T2_DEFINE_Q8_ROWS(NAME, PAIRS, ROW)                                                        \
    INLINE void NAME(const uint8_t *w, size_t ldw, int rows, int cols, const t2_q8_act *x, int n,  \
                     float *y, size_t ldy)                                                         \
    {                                                                                              \
        int nb = cols / T2_Q8_0_BLOCK;                                                             \
        size_t ldq = t2_q8_act_row_bytes(cols);                                                    \
        if (n == 1) {                                                                              \
            PAIRS(w, ldw, rows, nb, x->q, x->sum, x->d, y);                                        \
            return;                                                                                \
        }                                                                                          \
        for (int r = 0; r < rows; r++)                                                             \
            for (int i = 0; i < n; i += MAX_NX) {                                                  \
                const uint8_t *wr = w + (size_t)r * ldw;                                           \
                const int8_t *xi = x->q + (size_t)i * ldq;                                         \
                const int32_t *si = x->sum + (size_t)i * (size_t)nb;                               \
                const float *di = x->d + (size_t)i * (size_t)nb;                                   \
                float *yi = y + (size_t)i * ldy + (size_t)r;                                       \
                switch (n - i < MAX_NX ? n - i : MAX_NX) {                                         \
                case 1: ROW(wr, ldw, nb, xi, ldq, si, di, 1, yi, ldy); break;                      \
                case 2: ROW(wr, ldw, nb, xi, ldq, si, di, 2, yi, ldy); break;                      \
                case 3: ROW(wr, ldw, nb, xi, ldq, si, di, 3, yi, ldy); break;                      \
                default: ROW(wr, ldw, nb, xi, ldq, si, di, 4, yi, ldy); break;                     \
                }                                                                                  \
            }                                                                                      \
    }

#endif
