/* GB/s of the engine's matrix-vector kernel for one weight format over the
 * bandwidth array, split by rows over the pool as decode splits a product:
 * how much of the raw read bandwidth the kernel itself reaches. */
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "dtype.h"
#include "kernels.h"

#define COLS 4096

static volatile float kernel_sink;

typedef struct kjob {
    const t2_kernels *k;
    const t2_wmat *w;
    const float *x;
    const t2_q8_act *xq;
    float *y;
} kjob;

static void kernel_worker(void *arg, int w, int nw)
{
    const kjob *j = arg;
    int r0, r1;
    t2_pool_share(j->w->rows, w, nw, 16, &r0, &r1);
    t2_wmat_mul(j->k, j->w, r0, r1, j->x, j->xq, 1, j->y, (size_t)j->w->rows);
}

/* Valid values of the format (no NaN or subnormal slowing the kernel). */
static void fill(uint8_t *a, size_t rows, size_t row_bytes, t2_wtype type)
{
    if (type == T2_W_F32)
        return; /* the array already holds ordinary floats */
    for (size_t r = 0; r < rows; r++) {
        uint8_t *row = a + r * row_bytes;
        if (type == T2_W_BF16) {
            for (size_t c = 0; c < row_bytes / 2; c++) {
                uint16_t h = t2_f32_to_bf16((float)((r + c) % 97) * 1e-3f);
                memcpy(row + 2 * c, &h, 2);
            }
        } else {
            int nb = (int)(row_bytes / T2_Q8_0_BYTES);
            for (int b = 0; b < nb; b++) {
                uint8_t blk[T2_Q8_0_BYTES];
                uint16_t d = t2_f32_to_f16(1e-3f);
                memcpy(blk, &d, 2);
                for (int i = 0; i < T2_Q8_0_BLOCK; i++)
                    blk[2 + i] = (uint8_t)(int8_t)((int)((r + (size_t)b + (size_t)i) % 255) - 127);
                t2_q8_0_row_put(row, nb, b, blk);
            }
        }
    }
}

double t2_bench_kernel_gbs(t2_pool *pool, void *a, size_t bytes, t2_wtype type, int reps)
{
    size_t row_bytes = t2_wtype_row_bytes(type, COLS);
    int rows = (int)(bytes / row_bytes);
    float *x = malloc(COLS * sizeof *x), *y = malloc((size_t)rows * sizeof *y);
    t2_q8_act xq = {NULL, NULL, NULL};
    if (!x || !y || t2_q8_act_alloc(&xq, 1, COLS) != 0 || rows == 0) {
        free(x), free(y), t2_q8_act_free(&xq);
        return -1;
    }
    fill(a, (size_t)rows, row_bytes, type);
    for (int i = 0; i < COLS; i++)
        x[i] = 1.0f / (float)(i + 1);
    t2_q8_act_quantize(x, 1, COLS, &xq);
    t2_wmat w = {type, a, rows, COLS, row_bytes};
    kjob j = {t2_kernels_get(), &w, x, &xq, y};
    t2_pool_run(pool, kernel_worker, &j);
    double best = 0.0;
    for (int r = 0; r < reps; r++) {
        double t0 = t2_bench_now();
        t2_pool_run(pool, kernel_worker, &j);
        double gbs = (double)rows * (double)row_bytes / (t2_bench_now() - t0) / 1e9;
        best = gbs > best ? gbs : best;
    }
    kernel_sink = y[0];
    free(x), free(y), t2_q8_act_free(&xq);
    return best;
}
