/* The parts of the attn16 kernels (kernels.h) that do not depend on the
 * vector width, shared by kernels_avx2.c and kernels_avx512.c. The
 * including file defines INLINE and KEY_STEP (keys scored per step). */
#ifndef T2_KERNELS_ATTN16_H
#define T2_KERNELS_ATTN16_H

#include "kernels.h"

/* The most keys any of the nq lanes attends to. */
static inline int t2_attn16_keys(const int *n, int nq)
{
    int nmax = 0;
    for (int j = 0; j < nq; j++)
        nmax = n[j] > nmax ? n[j] : nmax;
    return nmax;
}

/* Each lane's key limit into lim[T2_ATTN_LANES] (unused lanes nmax: they
 * mask nothing); returns the smallest, below which no key is masked. */
static inline int t2_attn16_limits(const int *n, int nq, int nmax, int *lim)
{
    int nmin = nmax;
    for (int j = 0; j < T2_ATTN_LANES; j++) {
        lim[j] = j < nq ? n[j] : nmax;
        nmin = lim[j] < nmin ? lim[j] : nmin;
    }
    return nmin;
}

/* NAME(k, ld, n, d, qt, s, half): s[16 p + j] = k_p . q_j for p < n, by
 * ROWS(k, ld, nk, d, qt, s) over float rows. f16 keys are widened first
 * (WIDEN(rows, ld, p, d, dst, true): one row, PAD floats of room past the
 * buffer for whole vectors) into a 16 KiB buffer, a block of rows at a
 * time (the same values, so the same sums): the broadcasts then read
 * lines stored long before (read right after a store, they wait for it). */
#define T2_DEFINE_SCORES16(NAME, ROWS, WIDEN, PAD)                                                 \
    INLINE void NAME(const void *k, size_t ld, int n, int d, const float *qt, float *s, bool half) \
    {                                                                                              \
        if (!half) {                                                                               \
            ROWS((const float *)k, ld, n, d, qt, s);                                               \
            return;                                                                                \
        }                                                                                          \
        enum { BUF = 4096 };                                                                       \
        float kb[BUF + PAD];                                                                       \
        int block = BUF / d / KEY_STEP * KEY_STEP;                                                 \
        for (int p0 = 0; p0 < n; p0 += block) {                                                    \
            int nk = n - p0 < block ? n - p0 : block;                                              \
            for (int i = 0; i < nk; i++)                                                           \
                WIDEN(k, ld, p0 + i, d, kb + (size_t)i * (size_t)d, true);                         \
            ROWS(kb, (size_t)d, nk, d, qt, s + (size_t)T2_ATTN_LANES * (size_t)p0);                \
        }                                                                                          \
    }

#endif
