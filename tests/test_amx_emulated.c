/* The amx kernel variant (kernels_amx.c, kernels_amx_q8.c) run on the
 * software model of the tile instructions (amx_emulate.h), so CPUs
 * without AMX test its logic, its hand-offs to avx512bf16 included: each
 * result against the exact sum of the products of the values it was
 * given. Needs AVX512-BF16 (the variant's other kernels); skipped
 * without it (and under valgrind, which hides AVX-512). */
#include <math.h>
#include <stdbool.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dtype.h"
#include "kernels.h"

/* kernels_amx.c compiled for this test under this name (meson.build) */
extern const t2_kernels t2_kernels_amx_emulated;

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

    t2_kernels_amx_emulated.q8_0(w, ldw, rows, cols, &xq, n, y, ldy);

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

/* bf16 weights times X rounded to bf16: each result against the exact
 * sum of the products of the bf16 values, within float rounding of the
 * sum of their magnitudes; y's columns past `rows` untouched. */
static void check_bf16(int rows, int cols, int n)
{
    size_t ldw = (size_t)cols + 32; /* elements; rows 64 bytes apart plus */
    uint16_t *w = malloc(sizeof *w * (size_t)rows * ldw);
    uint16_t *x = malloc(sizeof *x * (size_t)n * (size_t)cols);
    size_t ldy = (size_t)rows + 3;
    float *y = malloc(sizeof *y * (size_t)n * ldy);
    assert_true(w && x && y);
    for (size_t i = 0; i < (size_t)rows * ldw; i++)
        w[i] = t2_f32_to_bf16(frand());
    for (size_t i = 0; i < (size_t)n * (size_t)cols; i++)
        x[i] = t2_f32_to_bf16(frand() * 3.0f);
    for (size_t i = 0; i < (size_t)n * ldy; i++)
        y[i] = 12345.0f;

    t2_kernels_amx_emulated.bf16_x16(w, ldw * sizeof *w, rows, cols, x, n, y, ldy);

    for (int t = 0; t < n; t++)
        for (int r = 0; r < rows; r++) {
            double exact = 0.0, scale = 0.0;
            for (int k = 0; k < cols; k++) {
                double p = (double)t2_bf16_to_f32(w[(size_t)r * ldw + (size_t)k]) *
                           t2_bf16_to_f32(x[(size_t)t * (size_t)cols + (size_t)k]);
                exact += p;
                scale += fabs(p);
            }
            double got = y[(size_t)t * ldy + (size_t)r];
            if (fabs(got - exact) > 1e-6 * scale + 1e-30)
                fail_msg("bf16 rows %d cols %d n %d: y[%d][%d] = %.9g, exact %.9g", rows, cols, n,
                         t, r, got, exact);
        }
    for (int t = 0; t < n; t++)
        for (size_t r = (size_t)rows; r < ldy; r++)
            assert_true(y[(size_t)t * ldy + r] == 12345.0f);
    free(w);
    free(x);
    free(y);
}

static bool variant_runs(void)
{
    return t2_kernels_variant("avx512bf16") != NULL;
}

/* q8_0: 16 and 48 weight rows (tiles only), 69 (the last 5 on VNNI); one
 * group, groups ending short (17, 30, 33 blocks), two unpacked chunks of
 * X (1024 + 32, 2560 columns); 1 and 5 rows of X (VNNI), 16 (one tile of
 * X), 21 and 40 (the last tile padded), 64 (four tiles) and 70 (a second
 * pass of 6). */
static void test_q8_0(void **state)
{
    (void)state;
    if (!variant_runs())
        skip();
    static const int rows[] = {16, 48, 69};
    static const int cols[] = {32, 512, 544, 960, 1056, 2560};
    static const int ns[] = {1, 5, 16, 21, 40, 64, 70};
    for (size_t a = 0; a < sizeof rows / sizeof rows[0]; a++)
        for (size_t b = 0; b < sizeof cols / sizeof cols[0]; b++)
            for (size_t c = 0; c < sizeof ns / sizeof ns[0]; c++)
                check(rows[a], cols[b], ns[c]);
}

/* bf16 x bf16: 64 weight rows at a time, then 16, the rest (< 16) on
 * avx512bf16; one chunk of packed X (32 blocks) or several (1056, 2560
 * columns), widths not a multiple of 32 (1000) and 1 or 2 rows of X on
 * avx512bf16; 16 rows of X to a tile, up to four tiles a pass (21, 40:
 * the last tile short; 64; 70: a second pass of 6). */
static void test_bf16_x16(void **state)
{
    (void)state;
    if (!variant_runs())
        skip();
    static const int rows[] = {16, 64, 80, 100, 133};
    static const int cols[] = {32, 960, 1000, 1056, 2560};
    static const int ns[] = {2, 3, 16, 21, 40, 64, 70};
    for (size_t a = 0; a < sizeof rows / sizeof rows[0]; a++)
        for (size_t b = 0; b < sizeof cols / sizeof cols[0]; b++)
            for (size_t c = 0; c < sizeof ns / sizeof ns[0]; c++)
                check_bf16(rows[a], cols[b], ns[c]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_q8_0),
        cmocka_unit_test(test_bf16_x16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
