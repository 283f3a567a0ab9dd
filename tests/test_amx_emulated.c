/* kernels_amx_q8.c's int8 tile product, run on the software model of the
 * tile instructions (amx_emulate.h), so CPUs without AMX test its logic:
 * each result against the exact sum of the Q8_0 blocks' products. Needs
 * AVX-512 (F, BW) for the transposes; skipped without it (and under
 * valgrind, which hides AVX-512). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dtype.h"
#include "kernels.h"

/* kernels_amx_q8.c compiled for this test under this name (meson.build) */
void t2_q8_0_amx_tiles_emulated(const uint8_t *w, size_t ldw, int rows, int cols,
                                const t2_q8_act *x, int n, float *y, size_t ldy);

static uint32_t rng = 12345u;
static float frand(void) /* uniform in [-1, 1) */
{
    rng = rng * 1664525u + 1013904223u;
    return (float)(rng >> 8) / 8388608.0f - 1.0f;
}

/* rows x cols weights in t2's Q8_0 row layout, ldw bytes apart (padded),
 * and n rows of X quantised; each y against the exact sum over the
 * blocks of d_w d_x sum(q_w q_x), within float rounding of the sum of
 * the magnitudes; y's columns past `rows` untouched. */
static void check(int rows, int cols, int n)
{
    int nb = cols / 32;
    size_t ldw = t2_wtype_row_bytes(T2_W_Q8_0, cols) + 64;
    float *wf = malloc(sizeof *wf * (size_t)rows * (size_t)cols);
    float *x = malloc(sizeof *x * (size_t)n * (size_t)cols);
    uint8_t *blocks = malloc((size_t)rows * (size_t)nb * T2_Q8_0_BYTES);
    uint8_t *xblocks = malloc((size_t)n * (size_t)nb * T2_Q8_0_BYTES);
    uint8_t *w = aligned_alloc(64, ((size_t)rows * ldw + 63) / 64 * 64);
    size_t ldy = (size_t)rows + 3;
    float *y = malloc(sizeof *y * (size_t)n * ldy);
    assert_true(wf && x && blocks && xblocks && w && y);
    for (size_t i = 0; i < (size_t)rows * (size_t)cols; i++)
        wf[i] = frand();
    for (size_t i = 0; i < (size_t)n * (size_t)cols; i++)
        x[i] = frand() * 3.0f;
    t2_q8_0_quantize(wf, blocks, (size_t)rows * (size_t)cols);
    t2_q8_0_quantize(x, xblocks, (size_t)n * (size_t)cols);
    memset(w, 0xa5, (size_t)rows * ldw);
    for (int r = 0; r < rows; r++)
        t2_q8_0_row_from_blocks(blocks + (size_t)r * nb * T2_Q8_0_BYTES, nb, w + (size_t)r * ldw);
    t2_q8_act xq = {NULL, NULL, NULL};
    assert_int_equal(t2_q8_act_alloc(&xq, n, cols), 0);
    t2_q8_act_quantize(x, n, cols, &xq);
    for (size_t i = 0; i < (size_t)n * ldy; i++)
        y[i] = 12345.0f;

    t2_q8_0_amx_tiles_emulated(w, ldw, rows, cols, &xq, n, y, ldy);

    for (int t = 0; t < n; t++)
        for (int r = 0; r < rows; r++) {
            double exact = 0.0, scale = 0.0;
            for (int b = 0; b < nb; b++) {
                const uint8_t *wb = blocks + ((size_t)r * nb + b) * T2_Q8_0_BYTES;
                const uint8_t *xb = xblocks + ((size_t)t * nb + b) * T2_Q8_0_BYTES;
                double d = (double)t2_f16_to_f32(t2_load_u16(wb)) * t2_f16_to_f32(t2_load_u16(xb));
                long dot = 0, mag = 0;
                for (int k = 0; k < 32; k++) {
                    int p = (int8_t)wb[2 + k] * (int8_t)xb[2 + k];
                    dot += p;
                    mag += labs(p);
                }
                exact += d * (double)dot;
                scale += fabs(d) * (double)mag;
            }
            double got = y[(size_t)t * ldy + (size_t)r];
            if (fabs(got - exact) > 1e-6 * scale + 1e-30)
                fail_msg("rows %d cols %d n %d: y[%d][%d] = %.9g, exact %.9g", rows, cols, n, t, r,
                         got, exact);
        }
    for (int t = 0; t < n; t++)
        for (size_t r = (size_t)rows; r < ldy; r++)
            assert_true(y[(size_t)t * ldy + r] == 12345.0f);
    t2_q8_act_free(&xq);
    free(wf);
    free(x);
    free(blocks);
    free(xblocks);
    free(w);
    free(y);
}

/* 16 and 48 weight rows; one group, groups ending short (17, 30, 33
 * blocks), two unpacked chunks of X (1024 + 32, 2560 columns); 1 to 16
 * rows of X, and 21 (a second pass of 5). */
static void test_q8_0_tiles(void **state)
{
    (void)state;
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw"))
        skip();
    static const int rows[] = {16, 48};
    static const int cols[] = {32, 512, 544, 960, 1056, 2560};
    static const int ns[] = {1, 5, 16, 21};
    for (size_t a = 0; a < sizeof rows / sizeof rows[0]; a++)
        for (size_t b = 0; b < sizeof cols / sizeof cols[0]; b++)
            for (size_t c = 0; c < sizeof ns / sizeof ns[0]; c++)
                check(rows[a], cols[b], ns[c]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_q8_0_tiles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
