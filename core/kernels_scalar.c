/* The portable reference kernels: plain C, one float accumulator per
 * output, in column order. Every vector variant is tested against these. */
#include <string.h>

#include "dtype.h"
#include "kernels.h"

static void f32_scalar(const float *w, size_t ldw, int rows, int cols, const float *x, int n,
                       float *y, size_t ldy)
{
    for (int r = 0; r < rows; r++) {
        const float *wr = (const float *)(const void *)((const char *)w + (size_t)r * ldw);
        for (int i = 0; i < n; i++) {
            const float *xi = x + (size_t)i * (size_t)cols;
            float s = 0.0f;
            for (int c = 0; c < cols; c++)
                s += wr[c] * xi[c];
            y[(size_t)i * ldy + (size_t)r] = s;
        }
    }
}

static void bf16_scalar(const uint16_t *w, size_t ldw, int rows, int cols, const float *x, int n,
                        float *y, size_t ldy)
{
    for (int r = 0; r < rows; r++) {
        const uint16_t *wr = (const uint16_t *)(const void *)((const char *)w + (size_t)r * ldw);
        for (int i = 0; i < n; i++) {
            const float *xi = x + (size_t)i * (size_t)cols;
            float s = 0.0f;
            for (int c = 0; c < cols; c++)
                s += t2_bf16_to_f32(wr[c]) * xi[c];
            y[(size_t)i * ldy + (size_t)r] = s;
        }
    }
}

/* As ggml's q8_0 x q8_0 dot: an exact integer sum per block, times the
 * two blocks' scales, accumulated in float. */
static void q8_0_scalar(const uint8_t *w, size_t ldw, int rows, int cols, const int8_t *xq,
                        const float *xd, int n, float *y, size_t ldy)
{
    int nb = cols / T2_Q8_0_BLOCK;
    for (int r = 0; r < rows; r++) {
        const uint8_t *wr = w + (size_t)r * ldw;
        int8_t qw[T2_Q8_0_BLOCK];
        for (int i = 0; i < n; i++) {
            const int8_t *qx = xq + (size_t)i * (size_t)cols;
            const float *dx = xd + (size_t)i * (size_t)nb;
            float s = 0.0f;
            for (int b = 0; b < nb; b++) {
                t2_q8_0_row_get(wr, nb, b, qw);
                int32_t isum = 0;
                for (int k = 0; k < T2_Q8_0_BLOCK; k++)
                    isum += (int32_t)qw[k] * (int32_t)qx[b * T2_Q8_0_BLOCK + k];
                float dw = t2_f16_to_f32(t2_load_u16(t2_q8_0_row_scale(wr, nb, b)));
                s += (float)isum * (dw * dx[b]);
            }
            y[(size_t)i * ldy + (size_t)r] = s;
        }
    }
}

const t2_kernels t2_kernels_scalar = {"scalar", f32_scalar, bf16_scalar, q8_0_scalar,
                                      t2_q8_act_quantize};
