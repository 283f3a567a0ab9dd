/* The matrix-vector kernels: every vector variant this CPU supports
 * against the scalar reference on random data, and the scalar reference
 * against a double-precision computation. Tolerances: F32 and BF16 within
 * 1e-5 of sum_k |w_k x_k| (float rounding of a differently ordered sum);
 * Q8_0 within 1e-6 of sum_b d_w d_x sum_k |qw_k qx_k| around the exact
 * integer sums (the int8 products are exact; only the scaling of partial
 * sums is rounded). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "dtype.h"
#include "kernels.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static float frand(void) /* uniform in [-1, 1) */
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

/* A random weight matrix in `type`, rows `pad` bytes longer than needed
 * (strided access), plus its exact float32 values. */
typedef struct mat {
    t2_wmat w;
    uint8_t *bytes;
    float *f; /* [rows][cols] the values the kernels must use */
} mat;

static void make_mat(mat *m, t2_wtype type, int rows, int cols, size_t pad)
{
    size_t rb = t2_wtype_row_bytes(type, cols), stride = rb + pad;
    m->bytes = calloc((size_t)rows, stride);
    m->f = malloc((size_t)rows * (size_t)cols * sizeof *m->f);
    float *tmp = malloc((size_t)cols * sizeof *tmp);
    uint8_t *blocks = malloc((size_t)cols / 32 * T2_Q8_0_BYTES + 1);
    assert_non_null(blocks);
    assert_non_null(m->bytes);
    assert_non_null(m->f);
    assert_non_null(tmp);
    for (int r = 0; r < rows; r++) {
        uint8_t *row = m->bytes + (size_t)r * stride;
        for (int c = 0; c < cols; c++)
            tmp[c] = frand() * (r % 3 == 0 ? 0.01f : 1.0f); /* varied magnitudes */
        if (type == T2_W_F32)
            memcpy(row, tmp, rb);
        else if (type == T2_W_BF16)
            for (int c = 0; c < cols; c++) {
                uint16_t h = t2_f32_to_bf16(tmp[c]);
                memcpy(row + 2 * c, &h, 2);
            }
        else {
            /* GGUF blocks, then the kernels' row layout (quants, then scales) */
            t2_q8_0_quantize(tmp, blocks, (size_t)cols);
            t2_q8_0_row_from_blocks(blocks, cols / 32, row);
        }
        m->w = (t2_wmat){type, m->bytes, rows, cols, stride};
        float *fr = m->f + (size_t)r * (size_t)cols;
        t2_wmat_row_f32(&m->w, r, fr);
        if (type == T2_W_Q8_0) { /* the row layout holds the blocks' values */
            t2_q8_0_dequantize(blocks, tmp, (size_t)cols);
            assert_memory_equal(fr, tmp, (size_t)cols * sizeof *tmp);
            /* block 0's scale after the first group's quants */
            int first = cols / 32 < 16 ? cols / 32 : 16;
            assert_memory_equal(row + 32 * first, blocks, 2);
        }
    }
    free(tmp);
    free(blocks);
}

static void free_mat(mat *m)
{
    free(m->bytes);
    free(m->f);
}

static float *rand_x(int n, int cols)
{
    float *x = malloc((size_t)n * (size_t)cols * sizeof *x);
    assert_non_null(x);
    for (size_t i = 0; i < (size_t)n * (size_t)cols; i++)
        x[i] = frand() * 2.0f;
    return x;
}

/* expected y and its error scale, in double */
static void reference(const mat *m, const float *x, const t2_q8_act *xq, int n, double *exact,
                      double *scale)
{
    int rows = m->w.rows, cols = m->w.cols, nb = cols / 32;
    for (int i = 0; i < n; i++)
        for (int r = 0; r < rows; r++) {
            double s = 0, a = 0;
            if (m->w.type == T2_W_Q8_0) {
                const uint8_t *row = m->bytes + (size_t)r * m->w.stride;
                for (int b = 0; b < nb; b++) {
                    int8_t qw[32];
                    t2_q8_0_row_get(row, nb, b, qw);
                    long isum = 0, iabs = 0;
                    for (int k = 0; k < 32; k++) {
                        long p =
                            (long)qw[k] *
                            xq->q[(size_t)i * t2_q8_act_row_bytes(cols) + t2_q8_0_x_offset(b, k)];
                        isum += p;
                        iabs += labs(p);
                    }
                    double d = (double)t2_f16_to_f32(t2_load_u16(t2_q8_0_row_scale(row, nb, b))) *
                               (double)xq->d[(size_t)i * nb + (size_t)b];
                    s += (double)isum * d;
                    a += fabs((double)iabs * d);
                }
            } else {
                for (int c = 0; c < cols; c++) {
                    double p = (double)m->f[(size_t)r * cols + c] * (double)x[(size_t)i * cols + c];
                    s += p;
                    a += fabs(p);
                }
            }
            exact[(size_t)i * rows + r] = s;
            scale[(size_t)i * rows + r] = a;
        }
}

/* The outputs of one check: the variant's y and the scalar one's yref
 * (rows ldy apart; the padding must stay untouched), and the exact values
 * with their error scale, in double. */
typedef struct outputs {
    int rows, n;
    size_t ldy;
    float *y, *yref;
    double *exact, *scale;
} outputs;

static void outputs_alloc(outputs *o, int rows, int n)
{
    size_t ny = (size_t)n * ((size_t)rows + 3);
    *o = (outputs){rows,
                   n,
                   (size_t)rows + 3,
                   malloc(ny * sizeof(float)),
                   malloc(ny * sizeof(float)),
                   malloc((size_t)n * rows * sizeof(double)),
                   malloc((size_t)n * rows * sizeof(double))};
    assert_non_null(o->y);
    assert_non_null(o->yref);
    assert_non_null(o->exact);
    assert_non_null(o->scale);
    for (size_t i = 0; i < ny; i++)
        o->y[i] = o->yref[i] = 12345.0f;
}

static void outputs_free(outputs *o)
{
    free(o->y);
    free(o->yref);
    free(o->exact);
    free(o->scale);
}

/* The scalar result within tol * scale of the exact one and the
 * variant's within as much of the scalar one; the padding untouched. */
static void outputs_check(const outputs *o, double tol, const t2_kernels *k, const char *what,
                          int cols)
{
    for (int i = 0; i < o->n; i++) {
        for (int r = 0; r < o->rows; r++) {
            size_t at = (size_t)i * o->ldy + (size_t)r, e = (size_t)i * o->rows + (size_t)r;
            double lim = tol * o->scale[e] + 1e-30;
            if (fabs((double)o->yref[at] - o->exact[e]) > lim ||
                fabs((double)o->y[at] - o->yref[at]) > lim)
                fail_msg("%s %s rows %d cols %d n %d: y[%d][%d] = %.9g, scalar %.9g, exact %.9g",
                         k->name, what, o->rows, cols, o->n, i, r, (double)o->y[at],
                         (double)o->yref[at], o->exact[e]);
        }
        for (size_t r = (size_t)o->rows; r < o->ldy; r++) {
            assert_true(o->y[(size_t)i * o->ldy + r] == 12345.0f);
            assert_true(o->yref[(size_t)i * o->ldy + r] == 12345.0f);
        }
    }
}

static void check_variant(const t2_kernels *k, t2_wtype type, int rows, int cols, int n)
{
    mat m;
    make_mat(&m, type, rows, cols, type == T2_W_Q8_0 ? 34 : 12);
    float *x = rand_x(n, cols);
    t2_q8_act xq = {NULL, NULL, NULL};
    if (type == T2_W_Q8_0) {
        assert_int_equal(t2_q8_act_alloc(&xq, n, cols), 0);
        t2_q8_act_quantize(x, n, cols, &xq);
    }
    outputs o;
    outputs_alloc(&o, rows, n);
    /* two row ranges: [0, rows/2) and [rows/2, rows), as pool workers split */
    t2_wmat_mul(&t2_kernels_scalar, &m.w, 0, rows / 2, x, &xq, n, o.yref, o.ldy);
    t2_wmat_mul(&t2_kernels_scalar, &m.w, rows / 2, rows, x, &xq, n, o.yref, o.ldy);
    t2_wmat_mul(k, &m.w, 0, rows / 2, x, &xq, n, o.y, o.ldy);
    t2_wmat_mul(k, &m.w, rows / 2, rows, x, &xq, n, o.y, o.ldy);
    reference(&m, x, &xq, n, o.exact, o.scale);
    outputs_check(&o, type == T2_W_Q8_0 ? 1e-6 : 1e-5, k, t2_wtype_name(type), cols);
    outputs_free(&o);
    free(x);
    t2_q8_act_free(&xq);
    free_mat(&m);
}

/* bf16 weights times x rounded to bf16 (variants that have the kernel):
 * both results within the float tolerance of the exact products of the
 * rounded values (each product of two bf16 is exact in float). */
static void check_x16(const t2_kernels *k, int rows, int cols, int n)
{
    if (!k->bf16_x16) /* the caller widens X and uses bf16 (checked above) */
        return;
    mat m;
    make_mat(&m, T2_W_BF16, rows, cols, 12);
    float *x = rand_x(n, cols);
    size_t nx = (size_t)n * (size_t)cols;
    uint16_t *xb = malloc(nx * sizeof *xb);
    assert_non_null(xb);
    t2_bf16_round(x, nx, xb);
    for (size_t i = 0; i < nx; i++)
        x[i] = t2_bf16_to_f32(xb[i]); /* the values the kernels must use */
    outputs o;
    outputs_alloc(&o, rows, n);
    int half = rows / 2; /* two row ranges, as pool workers split */
    const uint16_t *w1 = (const uint16_t *)(const void *)(m.bytes + (size_t)half * m.w.stride);
    t2_kernels_scalar.bf16_x16(m.w.data, m.w.stride, half, cols, xb, n, o.yref, o.ldy);
    t2_kernels_scalar.bf16_x16(w1, m.w.stride, rows - half, cols, xb, n, o.yref + half, o.ldy);
    k->bf16_x16(m.w.data, m.w.stride, half, cols, xb, n, o.y, o.ldy);
    k->bf16_x16(w1, m.w.stride, rows - half, cols, xb, n, o.y + half, o.ldy);
    reference(&m, x, NULL, n, o.exact, o.scale);
    outputs_check(&o, 1e-5, k, "bf16 x bf16", cols);
    outputs_free(&o);
    free(x);
    free(xb);
    free_mat(&m);
}

/* A bf16 prompt's kernel (variants that have one): against the scalar
 * bf16 kernel within the float tolerance, over two row ranges (as pool
 * workers split), with rows of x past one group of 8 and columns past
 * one segment of 1024 (the partial sums of a row added across
 * segments), and columns that are not a multiple of 32 (the fallback). */
static void check_prompt(const t2_kernels *k, int rows, int cols, int n)
{
    if (!k->bf16_prompt)
        return;
    mat m;
    make_mat(&m, T2_W_BF16, rows, cols, 12);
    float *x = rand_x(n, cols);
    outputs o;
    outputs_alloc(&o, rows, n);
    int half = rows / 2;
    const uint16_t *w1 = (const uint16_t *)(const void *)(m.bytes + (size_t)half * m.w.stride);
    t2_kernels_scalar.bf16(m.w.data, m.w.stride, half, cols, x, n, o.yref, o.ldy);
    t2_kernels_scalar.bf16(w1, m.w.stride, rows - half, cols, x, n, o.yref + half, o.ldy);
    k->bf16_prompt(m.w.data, m.w.stride, half, cols, x, n, o.y, o.ldy);
    k->bf16_prompt(w1, m.w.stride, rows - half, cols, x, n, o.y + half, o.ldy);
    reference(&m, x, NULL, n, o.exact, o.scale);
    outputs_check(&o, 1e-5, k, "bf16 prompt", cols);
    outputs_free(&o);
    free(x);
    free_mat(&m);
}

static void check_all_shapes(const t2_kernels *k)
{
    static const int rows[] = {1, 5, 33};
    /* Q8_0: groups of 16 blocks, the last one 1, 2, 3, 14, 15 or 16 blocks */
    static const int cols_q8[] = {32, 64, 96, 544, 960, 1504, 2560};
    static const int cols_f[] = {1, 15, 17, 40, 64, 960, 1000};
    static const int ns[] = {1, 2, 3, 4, 5, 8, 16};
    for (size_t a = 0; a < sizeof rows / sizeof rows[0]; a++)
        for (size_t c = 0; c < sizeof ns / sizeof ns[0]; c++) {
            for (size_t b = 0; b < sizeof cols_f / sizeof cols_f[0]; b++) {
                check_variant(k, T2_W_F32, rows[a], cols_f[b], ns[c]);
                check_variant(k, T2_W_BF16, rows[a], cols_f[b], ns[c]);
                check_x16(k, rows[a], cols_f[b], ns[c]);
            }
            for (size_t b = 0; b < sizeof cols_q8 / sizeof cols_q8[0]; b++)
                check_variant(k, T2_W_Q8_0, rows[a], cols_q8[b], ns[c]);
        }
    /* Q8_0: more than one pass of the vector kernels over x (64 KiB of
     * interleaved x: 32 rows, or fewer rows of 65536 / n columns), the last
     * slice ending in a short group */
    check_variant(k, T2_W_Q8_0, 3, 65536 + 96, 1);
    check_variant(k, T2_W_Q8_0, 3, 16384 + 3 * 512 + 96, 5);
    check_variant(k, T2_W_Q8_0, 3, 960, 33);
    static const int prompt_rows[] = {1, 2, 5, 64};
    static const int prompt_cols[] = {15, 40, 64, 960, 1056, 2080};
    static const int prompt_ns[] = {1, 3, 8, 9, 17};
    for (size_t a = 0; a < sizeof prompt_rows / sizeof prompt_rows[0]; a++)
        for (size_t b = 0; b < sizeof prompt_cols / sizeof prompt_cols[0]; b++)
            for (size_t c = 0; c < sizeof prompt_ns / sizeof prompt_ns[0]; c++)
                check_prompt(k, prompt_rows[a], prompt_cols[b], prompt_ns[c]);
}

/* T2_KERNELS picks the variant (this runs first: the choice is made once
 * per process). */
static void test_env_forces_variant(void **state)
{
    (void)state;
    setenv("T2_KERNELS", "scalar", 1);
    assert_string_equal(t2_kernels_get()->name, "scalar");
    assert_ptr_equal(t2_kernels_get(), &t2_kernels_scalar);
    assert_null(t2_kernels_variant("nonsense"));
    assert_ptr_equal(t2_kernels_variant("scalar"), &t2_kernels_scalar);
}

static void test_scalar(void **state)
{
    (void)state;
    check_all_shapes(&t2_kernels_scalar);
}

static void test_avx2(void **state)
{
    (void)state;
    const t2_kernels *k = t2_kernels_variant("avx2");
    if (!k)
        skip();
    check_all_shapes(k);
}

static void test_avx512(void **state)
{
    (void)state;
    const t2_kernels *k = t2_kernels_variant("avx512");
    if (!k)
        skip();
    check_all_shapes(k);
}

static void test_avx512bf16(void **state)
{
    (void)state;
    const t2_kernels *k = t2_kernels_variant("avx512bf16");
    if (!k)
        skip();
    check_all_shapes(k);
    check_x16(k, 5, 8192, 1);      /* the widest rows of one or two x rows... */
    check_x16(k, 5, 8192 + 32, 2); /* ...and wider ones, on the dot product */
}

/* AMX (where the CPU has it; not on AMD, so CI's Zen 4 skips this): its
 * bf16 tiles take 64 weight rows and then 16 at a time, hand the last rows
 * (< 16) and one or two rows of X to avx512bf16, pack X 32 blocks of 32
 * columns at a time (1024 columns: one chunk, or several whose sums add
 * up), 16 rows of X to a tile and up to four tiles a pass. Its int8
 * tiles (q8_0, 16 or more rows of X) take 16 weight rows at a time, up
 * to 64 rows of X a pass (4 tiles, the last padded), the same chunks of
 * X and groups of 16 blocks, the last one short (960, 1056, 2560
 * columns). */
static void test_amx(void **state)
{
    (void)state;
    const t2_kernels *k = t2_kernels_variant("amx");
    if (!k)
        skip();
    check_all_shapes(k);
    static const int rows[] = {16, 64, 80, 100, 133};
    static const int cols[] = {32, 960, 1024, 1056, 2560};
    static const int ns[] = {3, 8, 16, 21, 40, 70};
    for (size_t a = 0; a < sizeof rows / sizeof rows[0]; a++)
        for (size_t b = 0; b < sizeof cols / sizeof cols[0]; b++)
            for (size_t c = 0; c < sizeof ns / sizeof ns[0]; c++)
                check_x16(k, rows[a], cols[b], ns[c]);
    static const int cols_q8[] = {32, 544, 960, 1024, 1056, 2560};
    static const int ns_q8[] = {3, 8, 16, 21, 64, 70};
    for (size_t a = 0; a < sizeof rows / sizeof rows[0]; a++)
        for (size_t b = 0; b < sizeof cols_q8 / sizeof cols_q8[0]; b++)
            for (size_t c = 0; c < sizeof ns_q8 / sizeof ns_q8[0]; c++)
                check_variant(k, T2_W_Q8_0, rows[a], cols_q8[b], ns_q8[c]);
}

/* t2_bf16_round rounds as t2_f32_to_bf16: to nearest, ties to even,
 * infinities kept, NaN kept a (quiet) NaN, subnormals rounded too. */
static void test_bf16_round(void **state)
{
    (void)state;
    const uint32_t bits[] = {0x3f808000u, /* tie, even below: down */
                             0x3f818000u, /* tie, odd below: up */
                             0x3f808001u, 0x3f807fffu,
                             0xbf818000u, 0x7f7fffffu /* to inf */,
                             0x7f800000u, 0xff800000u,
                             0x7fc00001u, 0x7f800001u /* NaNs */,
                             0x00000001u, 0x00018000u /* subnormals */,
                             0x80000000u, 0u};
    enum { N = sizeof bits / sizeof bits[0] };
    float x[N + 37];
    for (int i = 0; i < N; i++)
        memcpy(&x[i], &bits[i], sizeof x[i]);
    for (int i = N; i < N + 37; i++)
        x[i] = frand() * 1e3f;
    uint16_t out[N + 37];
    t2_bf16_round(x, N + 37, out);
    for (int i = 0; i < N + 37; i++)
        assert_int_equal(out[i], t2_f32_to_bf16(x[i]));
    assert_int_equal(out[0], 0x3f80);
    assert_int_equal(out[1], 0x3f82);
    assert_int_equal(out[5], 0x7f80);
    assert_true((out[9] & 0x7f80) == 0x7f80 && (out[9] & 0x7f) != 0);
}

/* The activations are quantised exactly as ggml quantises a Q8_0 row:
 * the same values (in the weights' group order, t2_q8_0_x_offset: the 4
 * bytes at 512 g + 64 u + 4 j are values 4u..4u+3 of block 16 g + j), the
 * same scales, and each block's sum; a short last group's other lanes 0. */
static void test_act_quantize_matches_ggml(void **state)
{
    (void)state;
    enum { N = 3, COLS = 608, NB = COLS / 32 }; /* 19 blocks: groups of 16 + 3 */
    float *x = rand_x(N, COLS);
    x[5] = 0.0f;
    for (int k = 32; k < 64; k++) /* an all-zero block: d = 0 */
        x[k] = 0.0f;
    t2_q8_act a = {NULL, NULL, NULL};
    assert_int_equal(t2_q8_act_alloc(&a, N, COLS), 0);
    assert_int_equal(t2_q8_act_row_bytes(COLS), 2 * 512);
    memset(a.q, 0x55, N * 2 * 512);
    t2_q8_act_quantize(x, N, COLS, &a);
    uint8_t blocks[N * NB * T2_Q8_0_BYTES];
    t2_q8_0_quantize(x, blocks, N * COLS);
    for (int i = 0; i < N; i++) {
        const int8_t *q = a.q + i * 2 * 512;
        for (int g = 0; g < 2; g++)
            for (int u = 0; u < 8; u++)
                for (int j = 0; j < 16; j++)
                    for (int k = 0; k < 4; k++) {
                        int b = 16 * g + j;
                        int8_t want = 0;
                        if (b < NB)
                            want = (int8_t)blocks[(i * NB + b) * T2_Q8_0_BYTES + 2 + 4 * u + k];
                        assert_int_equal(q[512 * g + 64 * u + 4 * j + k], want);
                        if (b < NB)
                            assert_int_equal(t2_q8_0_x_offset(b, 4 * u + k),
                                             512 * g + 64 * u + 4 * j + k);
                    }
        for (int b = 0; b < NB; b++) {
            const uint8_t *blk = blocks + (i * NB + b) * T2_Q8_0_BYTES;
            assert_true(a.d[i * NB + b] == t2_f16_to_f32(t2_load_u16(blk)));
            int32_t sum = 0;
            for (int k = 0; k < 32; k++)
                sum += (int8_t)blk[2 + k];
            assert_int_equal(a.sum[i * NB + b], sum);
        }
    }
    assert_true(a.d[1] == 0.0f);
    assert_int_equal(a.sum[1], 0);
    t2_q8_act_free(&a);
    free(x);
}

/* Every variant's activation quantisation equals the reference, bit for
 * bit, ties of the rounding and the zero lanes included. */
static void test_act_quantize_variants(void **state)
{
    (void)state;
    enum { N = 4, COLS = 960, NB = COLS / 32, LDQ = 2 * 512 };
    float *x = rand_x(N, COLS);
    for (int k = 0; k < 31; k++) /* d = 0.5: x / d hits every tie k + 0.5 */
        x[k] = ((float)k - 16.0f) * 0.25f;
    x[31] = 63.5f;
    for (int k = 64; k < 96; k++)
        x[k] = 0.0f;
    t2_q8_act a = {NULL, NULL, NULL}, ar = {NULL, NULL, NULL};
    assert_int_equal(t2_q8_act_alloc(&a, N, COLS), 0);
    assert_int_equal(t2_q8_act_alloc(&ar, N, COLS), 0);
    t2_q8_act_quantize(x, N, COLS, &ar);
    for (int v = 0; t2_kernels_variant_name(v); v++) {
        const t2_kernels *k = t2_kernels_variant(t2_kernels_variant_name(v));
        if (!k)
            continue;
        memset(a.q, 0x55, N * LDQ);
        memset(a.sum, 0x55, N * NB * sizeof *a.sum);
        k->q8_act(x, N, COLS, &a);
        assert_memory_equal(a.q, ar.q, N * LDQ);
        assert_memory_equal(a.d, ar.d, N * NB * sizeof *a.d);
        assert_memory_equal(a.sum, ar.sum, N * NB * sizeof *a.sum);
    }
    t2_q8_act_free(&a);
    t2_q8_act_free(&ar);
    free(x);
}

/* SwiGLU's elementwise step: the scalar reference against libm in
 * double, and every variant against it within 1e-6 relative (their exp
 * is a polynomial), over the range activations take, both saturations of
 * exp, zeros, and lengths that leave 1..15 values past the last full
 * vector. */
static void test_silu_mul(void **state)
{
    (void)state;
    enum { N = 1000 };
    static const float edges[] = {0.0f,   -0.0f, 1e-30f, -1e-30f, 87.0f,   88.5f, -87.0f,
                                  -88.5f, 95.0f, -95.0f, 110.0f,  -110.0f, 20.0f, -20.0f};
    enum { N_EDGES = sizeof edges / sizeof edges[0] };
    float *g0 = malloc(N * sizeof *g0), *u = malloc(N * sizeof *u), *ref = malloc(N * sizeof *ref),
          *got = malloc(N * sizeof *got);
    assert_non_null(g0);
    assert_non_null(u);
    assert_non_null(ref);
    assert_non_null(got);
    for (int i = 0; i < N; i++) {
        g0[i] = i < N_EDGES ? edges[i] : 12.0f * frand();
        u[i] = 2.0f * frand();
    }
    memcpy(ref, g0, N * sizeof *ref);
    t2_kernels_variant("scalar")->silu_mul(ref, u, N);
    for (int i = 0; i < N; i++) {
        double g = g0[i], want = g / (1.0 + exp(-g)) * u[i];
        assert_true(fabs(ref[i] - want) <= 1e-6 * fabs(want) + 1e-30);
    }
    for (int v = 0; t2_kernels_variant_name(v); v++) {
        const t2_kernels *k = t2_kernels_variant(t2_kernels_variant_name(v));
        if (!k)
            continue;
        static const size_t lengths[] = {N, 1, 7, 15, 17, 999};
        for (size_t l = 0; l < sizeof lengths / sizeof lengths[0]; l++) {
            size_t n = lengths[l];
            for (int i = 0; i < N; i++)
                got[i] = g0[i] + 1.0f; /* past n: must stay as it is */
            memcpy(got, g0, n * sizeof *got);
            k->silu_mul(got, u, n);
            for (size_t i = 0; i < n; i++)
                if (!(fabsf(got[i] - ref[i]) <= 1e-6f * fabsf(ref[i]) + 1e-30f))
                    fail_msg("%s: silu_mul(%g) * %g = %g, reference %g", k->name, (double)g0[i],
                             (double)u[i], (double)got[i], (double)ref[i]);
            for (size_t i = n; i < N; i++)
                assert_true(got[i] == g0[i] + 1.0f);
        }
    }
    free(g0);
    free(u);
    free(ref);
    free(got);
}

/* rank_add, Y += A · B: every variant (the scalar one included) against
 * double sums within 1e-5 of the sum of the absolute terms, for row
 * counts across the groups of 4, column counts that leave 1..15 columns
 * past the last vector or 64-column step, B and Y rows wider than the
 * columns read; Y's other columns stay as they are. */
static void test_rank_add(void **state)
{
    (void)state;
    static const int ns[] = {1, 3, 4, 5, 9};
    static const int ks[] = {1, 7, 32};
    static const int colss[] = {1, 15, 16, 17, 64, 65, 130};
    enum { MAX_N = 9, MAX_K = 32, MAX_C = 130, LD = MAX_C + 3 };
    float a[MAX_N * MAX_K], b[MAX_K * LD], y0[MAX_N * LD], y[MAX_N * LD];
    for (int i = 0; i < MAX_N * MAX_K; i++)
        a[i] = frand();
    for (int i = 0; i < MAX_K * LD; i++)
        b[i] = frand();
    for (int i = 0; i < MAX_N * LD; i++)
        y0[i] = frand();
    for (int v = 0; t2_kernels_variant_name(v); v++) {
        const t2_kernels *kern = t2_kernels_variant(t2_kernels_variant_name(v));
        if (!kern)
            continue;
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
            for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++)
                for (size_t ci = 0; ci < sizeof colss / sizeof colss[0]; ci++) {
                    int n = ns[ni], k = ks[ki], cols = colss[ci];
                    memcpy(y, y0, sizeof y);
                    kern->rank_add(a, n, k, b, LD, cols, y, LD);
                    for (int i = 0; i < MAX_N; i++)
                        for (int c = 0; c < LD; c++) {
                            size_t at = (size_t)i * LD + (size_t)c;
                            if (i >= n || c >= cols) {
                                assert_true(y[at] == y0[at]);
                                continue;
                            }
                            double want = y0[at], mag = fabs(y0[at]);
                            for (int p = 0; p < k; p++) {
                                double t = (double)a[i * k + p] * b[(size_t)p * LD + (size_t)c];
                                want += t;
                                mag += fabs(t);
                            }
                            if (!(fabs(y[at] - want) <= 1e-5 * mag))
                                fail_msg("%s rank_add n=%d k=%d cols=%d [%d][%d]: %g vs %g",
                                         kern->name, n, k, cols, i, c, (double)y[at], want);
                        }
                }
    }
}

/* The transposed bf16 product: every variant (the scalar reference
 * included) against double sums over the bf16 values, within 1e-5 of
 * the sum of the absolute products, for column ranges that start off a
 * vector boundary and end in a partial vector, row counts across the
 * kernels' groups of 4 and 8 rows of x, and rows wider than the columns
 * read (the stride); nothing outside [c0, c1) of a y row is written. */
static void test_bf16_transposed(void **state)
{
    (void)state;
    /* two strides: rows 212 bytes apart (one block of rows), and 16400
     * (kernels that walk blocks of rows, 256 KiB each, take 16 at a
     * time: blocks of 16, 16 and an odd 5 added up) */
    enum { K = 37, COLS = 100, MAX_LDW = 8200, MAX_N = 17, LDX = K + 3, LDY = COLS + 5 };
    static const int strides[] = {COLS + 6, MAX_LDW};
    static const int ranges[][2] = {{0, COLS}, {5, 77}, {32, 64}, {64, 65}, {99, 100}};
    static const int counts[] = {1, 3, 8, 9, 17};
    uint16_t *w = malloc((size_t)K * MAX_LDW * sizeof *w);
    uint16_t *x = malloc((size_t)MAX_N * LDX * sizeof *x);
    float *y = malloc((size_t)MAX_N * LDY * sizeof *y);
    assert_non_null(w);
    assert_non_null(x);
    assert_non_null(y);
    for (int i = 0; i < K * MAX_LDW; i++)
        w[i] = t2_f32_to_bf16(frand() * (i % 5 == 0 ? 0.01f : 1.0f));
    for (int i = 0; i < MAX_N * LDX; i++)
        x[i] = t2_f32_to_bf16(frand());
    for (int v = 0; t2_kernels_variant_name(v); v++) {
        const t2_kernels *k = t2_kernels_variant(t2_kernels_variant_name(v));
        if (!k)
            continue;
        for (size_t si = 0; si < sizeof strides / sizeof strides[0]; si++)
            for (size_t ri = 0; ri < sizeof ranges / sizeof ranges[0]; ri++)
                for (size_t ni = 0; ni < sizeof counts / sizeof counts[0]; ni++) {
                    int c0 = ranges[ri][0], c1 = ranges[ri][1], n = counts[ni], ldw = strides[si];
                    for (int i = 0; i < MAX_N * LDY; i++)
                        y[i] = 42.0f;
                    k->bf16_t(w, (size_t)ldw * sizeof *w, K, c0, c1, x, LDX, n, y, LDY);
                    for (int i = 0; i < MAX_N; i++)
                        for (int c = 0; c < LDY; c++) {
                            float got = y[i * LDY + c];
                            if (i >= n || c < c0 || c >= c1) {
                                if (got != 42.0f)
                                    fail_msg("%s bf16_t ldw %d [%d, %d) n=%d wrote y[%d][%d]",
                                             k->name, ldw, c0, c1, n, i, c);
                                continue;
                            }
                            double exact = 0, mag = 0;
                            for (int r = 0; r < K; r++) {
                                double p = (double)t2_bf16_to_f32(x[i * LDX + r]) *
                                           t2_bf16_to_f32(w[r * ldw + c]);
                                exact += p;
                                mag += fabs(p);
                            }
                            if (!(fabs(got - exact) <= 1e-5 * mag))
                                fail_msg("%s bf16_t ldw %d [%d, %d) n=%d y[%d][%d] = %g, exact %g",
                                         k->name, ldw, c0, c1, n, i, c, (double)got, exact);
                        }
                }
    }
    free(w);
    free(x);
    free(y);
}

/* The softmax's exponentials: every variant, the scalar one (libm's
 * expf) included, within 2e-6 relative of exp in double, and so their
 * sums; masked positions (-inf) and ones far below the maximum give
 * exactly 0. (Not against the scalar variant: under valgrind, which
 * does not fuse the FMAs of glibc's expf, that is off by 1e-6.) */
static void test_exp_shift(void **state)
{
    (void)state;
    enum { N = 300 };
    float s0[N], got[N];
    double exact[N];
    for (int i = 0; i < N; i++)
        s0[i] = 15.0f * frand() - 10.0f;
    s0[3] = -INFINITY;
    s0[10] = -200.0f;
    s0[11] = 5.0f; /* the maximum */
    const float mx = 5.0f;
    for (int i = 0; i < N; i++)
        exact[i] = exp((double)s0[i] - mx);
    for (int v = 0; t2_kernels_variant_name(v); v++) {
        const t2_kernels *k = t2_kernels_variant(t2_kernels_variant_name(v));
        if (!k)
            continue;
        static const int lengths[] = {N, 1, 7, 12, 15, 17, 33};
        for (size_t l = 0; l < sizeof lengths / sizeof lengths[0]; l++) {
            int n = lengths[l];
            for (int i = 0; i < N; i++)
                got[i] = s0[i] + 1.0f; /* past n: must stay as it is */
            memcpy(got, s0, (size_t)n * sizeof *got);
            double sum = k->exp_shift(got, n, mx), want = 0;
            for (int i = 0; i < n; i++) {
                want += exact[i];
                if (!(fabs(got[i] - exact[i]) <= 2e-6 * exact[i] + 1e-38))
                    fail_msg("%s: exp(%g - %g) = %g, exact %g", k->name, (double)s0[i], (double)mx,
                             (double)got[i], exact[i]);
            }
            assert_true(fabs(sum - want) <= 2e-6 * want);
            if (n == N)
                assert_true(got[3] == 0.0f && got[10] == 0.0f && got[11] == 1.0f);
            for (int i = n; i < N; i++)
                assert_true(got[i] == s0[i] + 1.0f);
        }
    }
}

/* The f16 K/V cache's rounding: every variant bit-identical to the
 * scalar one (itself t2_f32_to_f16 after clamping to +-65504), specials
 * included; nothing written past n. */
static void test_f16_kv(void **state)
{
    (void)state;
    enum { N = 300 };
    float x[N];
    uint16_t ref[N], got[N + 1];
    for (int i = 0; i < N; i++)
        x[i] = (frand() - 0.5f) * powf(2.0f, (float)(i % 40) - 26.0f); /* 2^-27..2^13 */
    const float specials[] = {0.0f,    -0.0f,  65504.0f,          65519.0f,  65520.0f,
                              7e4f,    -1e9f,  INFINITY,          -INFINITY, 6e-8f,
                              2.9e-8f, -3e-5f, 1.0f + 1.0f / 2048};
    memcpy(x, specials, sizeof specials);
    x[20] = NAN;
    const t2_kernels *scalar = t2_kernels_variant("scalar");
    scalar->f16_store(x, N, ref);
    assert_int_equal(ref[2], 0x7bff);  /* 65504 */
    assert_int_equal(ref[4], 0x7bff);  /* 65520 saturates, where t2_f32_to_f16 gives inf */
    assert_int_equal(ref[7], 0x7bff);  /* +inf saturates too */
    assert_int_equal(ref[8], 0xfbff);  /* -inf */
    assert_int_equal(ref[9], 0x0001);  /* 6e-8: the smallest subnormal */
    assert_int_equal(ref[12], 0x3c00); /* 1 + 2^-11: a tie, to even */
    assert_true((ref[20] & 0x7c00) == 0x7c00 && (ref[20] & 0x3ff)); /* NaN */
    for (int v = 0; t2_kernels_variant_name(v); v++) {
        const t2_kernels *k = t2_kernels_variant(t2_kernels_variant_name(v));
        if (!k)
            continue;
        static const int lengths[] = {N, 1, 7, 8, 15, 17};
        for (size_t l = 0; l < sizeof lengths / sizeof lengths[0]; l++) {
            int n = lengths[l];
            got[n] = 0xabcd;
            k->f16_store(x, (size_t)n, got);
            for (int i = 0; i < n; i++) {
                bool nan = (ref[i] & 0x7c00) == 0x7c00 && (ref[i] & 0x3ff);
                if (nan ? !((got[i] & 0x7c00) == 0x7c00 && (got[i] & 0x3ff)) : got[i] != ref[i])
                    fail_msg("%s: f16(%g) = %#x, scalar %#x", k->name, (double)x[i], got[i],
                             ref[i]);
            }
            assert_int_equal(got[n], 0xabcd);
        }
    }
}

/* Attention over one head's cache rows: the scalar reference against
 * double sums, every variant against it, within 1e-5 of the sum of the
 * absolute products (float rounding of differently ordered sums), for
 * head sizes that fill whole vectors and ones that leave 1..15 columns,
 * position counts around the kernels' steps of 2 and 4, and rows further
 * apart than d (the cache's layout); nothing past out[d - 1] is written.
 * K and V hold f16 values, so each variant's f16 entries on f16 copies
 * must give exactly its f32 entries' results. */
static void test_attention(void **state)
{
    (void)state;
    static const int dims[] = {64, 128, 80, 23, 17, 3};
    static const int counts[] = {1, 2, 3, 4, 5, 33, 130};
    enum { MAX_D = 128, MAX_N = 130, LD = 3 * MAX_D + 5 };
    float *k = malloc((size_t)MAX_N * LD * sizeof *k), *v = malloc((size_t)MAX_N * LD * sizeof *v);
    float q[MAX_D], w[MAX_N], s_ref[MAX_N], s_got[MAX_N], o_ref[MAX_D + 1], o_got[MAX_D + 1];
    uint16_t *kh = malloc((size_t)MAX_N * LD * sizeof *kh);
    uint16_t *vh = malloc((size_t)MAX_N * LD * sizeof *vh);
    assert_non_null(k);
    assert_non_null(v);
    assert_non_null(kh);
    assert_non_null(vh);
    for (size_t i = 0; i < (size_t)MAX_N * LD; i++) {
        kh[i] = t2_f32_to_f16(frand());
        vh[i] = t2_f32_to_f16(frand());
        k[i] = t2_f16_to_f32(kh[i]);
        v[i] = t2_f16_to_f32(vh[i]);
    }
    for (int i = 0; i < MAX_D; i++)
        q[i] = frand();
    for (int i = 0; i < MAX_N; i++)
        w[i] = 0.5f * (frand() + 1.0f);
    const t2_kernels *ref = t2_kernels_variant("scalar");
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++)
        for (size_t ni = 0; ni < sizeof counts / sizeof counts[0]; ni++) {
            int d = dims[di], n = counts[ni];
            const float scale = 0.125f, mix_scale = 0.3f;
            ref->attn_scores(k, LD, n, d, q, scale, s_ref);
            ref->attn_mix(v, LD, n, d, w, mix_scale, o_ref);
            for (int p = 0; p < n; p++) {
                double exact = 0, mag = 0;
                for (int c = 0; c < d; c++) {
                    exact += (double)k[(size_t)p * LD + c] * q[c];
                    mag += fabs((double)k[(size_t)p * LD + c] * q[c]);
                }
                assert_true(fabs(s_ref[p] - scale * exact) <= 1e-5 * scale * mag);
            }
            for (int c = 0; c < d; c++) {
                double exact = 0, mag = 0;
                for (int p = 0; p < n; p++) {
                    exact += (double)w[p] * v[(size_t)p * LD + c];
                    mag += fabs((double)w[p] * v[(size_t)p * LD + c]);
                }
                assert_true(fabs(o_ref[c] - mix_scale * exact) <= 1e-5 * mix_scale * mag);
            }
            for (int vi = 0; t2_kernels_variant_name(vi); vi++) {
                const t2_kernels *kern = t2_kernels_variant(t2_kernels_variant_name(vi));
                if (!kern)
                    continue;
                float s16[MAX_N], o16[MAX_D + 1];
                kern->attn_scores(k, LD, n, d, q, scale, s_got);
                kern->attn_scores_f16(kh, LD, n, d, q, scale, s16);
                kern->attn_mix(v, LD, n, d, w, mix_scale, o_got);
                o16[d] = 42.0f;
                kern->attn_mix_f16(vh, LD, n, d, w, mix_scale, o16);
                if (memcmp(s16, s_got, (size_t)n * sizeof *s16) != 0 ||
                    memcmp(o16, o_got, (size_t)d * sizeof *o16) != 0)
                    fail_msg("%s: f16 attention d=%d n=%d differs from f32 on the same values",
                             kern->name, d, n);
                assert_true(o16[d] == 42.0f);
                kern->attn_scores(k, LD, n, d, q, scale, s_got);
                o_got[d] = 42.0f;
                kern->attn_mix(v, LD, n, d, w, mix_scale, o_got);
                for (int p = 0; p < n; p++) {
                    double mag = 0;
                    for (int c = 0; c < d; c++)
                        mag += fabs((double)k[(size_t)p * LD + c] * q[c]);
                    if (!(fabs(s_got[p] - s_ref[p]) <= 1e-5 * scale * mag))
                        fail_msg("%s attn_scores d=%d n=%d p=%d: %g vs %g", kern->name, d, n, p,
                                 (double)s_got[p], (double)s_ref[p]);
                }
                for (int c = 0; c < d; c++) {
                    double mag = 0;
                    for (int p = 0; p < n; p++)
                        mag += fabs((double)w[p] * v[(size_t)p * LD + c]);
                    if (!(fabs(o_got[c] - o_ref[c]) <= 1e-5 * mix_scale * mag))
                        fail_msg("%s attn_mix d=%d n=%d c=%d: %g vs %g", kern->name, d, n, c,
                                 (double)o_got[c], (double)o_ref[c]);
                }
                assert_true(o_got[d] == 42.0f);
            }
        }
    free(k);
    free(v);
    free(kh);
    free(vh);
}

/* attn16 (queries in lanes): every variant that has it against softmax
 * attention computed in double per query, for head sizes that fill whole
 * vectors and ones that do not, 1..16 queries, each lane seeing its own
 * number of keys (rows of a prompt: consecutive counts) around the
 * kernels' steps of 8 and 64 keys, with and without a gap of masked keys;
 * outputs within 2e-5 (values in [-1, 1], so outputs are too), nothing
 * written past out[j][d - 1]; f16 keys and values give exactly the f32
 * entry's results on the same values. */
static void test_attention16(void **state)
{
    (void)state;
    static const int dims[] = {64, 128, 32, 80, 17};
    static const int queries[] = {16, 15, 12, 5, 1};
    static const int counts[] = {1, 7, 8, 9, 64, 65, 200};
    enum { MAX_D = 128, MAX_N = 216, LD = 2 * MAX_D + 3, L = T2_ATTN_LANES };
    float *k = malloc((size_t)MAX_N * LD * sizeof *k), *v = malloc((size_t)MAX_N * LD * sizeof *v);
    uint16_t *kh = malloc((size_t)MAX_N * LD * sizeof *kh);
    uint16_t *vh = malloc((size_t)MAX_N * LD * sizeof *vh);
    float *s = aligned_alloc(64, (size_t)MAX_N * L * sizeof *s);
    static float qt[MAX_D * L] __attribute__((aligned(64)));
    static float o32[L][MAX_D + 1], o16[L][MAX_D + 1], q[L][MAX_D];
    assert_true(k && v && kh && vh && s);
    for (size_t i = 0; i < (size_t)MAX_N * LD; i++) {
        kh[i] = t2_f32_to_f16(frand());
        vh[i] = t2_f32_to_f16(frand());
        k[i] = t2_f16_to_f32(kh[i]);
        v[i] = t2_f16_to_f32(vh[i]);
    }
    float *p32[L], *p16[L];
    for (int j = 0; j < L; j++) {
        p32[j] = o32[j];
        p16[j] = o16[j];
    }
    int checked = 0;
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++)
        for (size_t qi = 0; qi < sizeof queries / sizeof queries[0]; qi++)
            for (size_t ni = 0; ni < sizeof counts / sizeof counts[0]; ni++)
                for (int gapped = 0; gapped < 2; gapped++) {
                    int d = dims[di], nq = queries[qi], n[L];
                    /* lane j: row j / 3 of a prompt (three heads per kv head) */
                    for (int j = 0; j < nq; j++)
                        n[j] = counts[ni] + j / 3;
                    int gap_from = gapped ? counts[ni] / 3 : 0;
                    int gap_to = gapped ? counts[ni] / 3 + counts[ni] / 4 : 0;
                    if (gap_to >= counts[ni])
                        gap_from = gap_to = 0; /* every lane keeps its own key */
                    memset(qt, 0, sizeof qt);
                    for (int j = 0; j < nq; j++)
                        for (int c = 0; c < d; c++) {
                            q[j][c] = frand() * 0.5f;
                            qt[L * c + j] = q[j][c];
                        }
                    for (int vi = 0; t2_kernels_variant_name(vi); vi++) {
                        const t2_kernels *kern = t2_kernels_variant(t2_kernels_variant_name(vi));
                        if (!kern || !kern->attn16)
                            continue;
                        for (int j = 0; j < L; j++)
                            o32[j][d] = o16[j][d] = 42.0f;
                        kern->attn16(k, v, LD, d, qt, nq, n, gap_from, gap_to, s, p32);
                        kern->attn16_f16(kh, vh, LD, d, qt, nq, n, gap_from, gap_to, s, p16);
                        for (int j = 0; j < nq; j++) {
                            if (memcmp(o32[j], o16[j], (size_t)d * sizeof(float)) != 0)
                                fail_msg("%s: attn16_f16 d=%d nq=%d n=%d lane %d differs from f32",
                                         kern->name, d, nq, counts[ni], j);
                            assert_true(o32[j][d] == 42.0f && o16[j][d] == 42.0f);
                            double w[MAX_N], mx = -INFINITY, sum = 0;
                            for (int p = 0; p < n[j]; p++) {
                                double dot = 0;
                                for (int c = 0; c < d; c++)
                                    dot += (double)q[j][c] * k[(size_t)p * LD + c];
                                w[p] = p >= gap_from && p < gap_to ? -INFINITY : dot;
                                mx = w[p] > mx ? w[p] : mx;
                            }
                            for (int p = 0; p < n[j]; p++)
                                sum += w[p] = exp(w[p] - mx);
                            for (int c = 0; c < d; c++) {
                                double exact = 0;
                                for (int p = 0; p < n[j]; p++)
                                    exact += w[p] / sum * v[(size_t)p * LD + c];
                                if (!(fabs(o32[j][c] - exact) <= 2e-5))
                                    fail_msg("%s attn16 d=%d nq=%d n=%d gap=%d lane %d c=%d: %g vs "
                                             "%g",
                                             kern->name, d, nq, n[j], gapped, j, c,
                                             (double)o32[j][c], exact);
                            }
                            checked++;
                        }
                    }
                }
    assert_true(checked > 0);
    free(k);
    free(v);
    free(kh);
    free(vh);
    free(s);
}

/* The Q8_0 row layout as kernels.h documents it, byte for byte: groups of
 * 16 blocks (here 16 + 3), quants interleaved by 4 and stored + 128, then
 * the group's scales. */
static void test_q8_0_row_layout(void **state)
{
    (void)state;
    enum { NB = 19 };
    uint8_t blocks[NB * T2_Q8_0_BYTES], row[NB * T2_Q8_0_BYTES];
    for (int b = 0; b < NB; b++) {
        uint8_t *blk = blocks + b * T2_Q8_0_BYTES;
        blk[0] = (uint8_t)b, blk[1] = 0x3c;
        for (int k = 0; k < 32; k++)
            blk[2 + k] = (uint8_t)(int8_t)(b * 5 - k * 3);
    }
    memset(row, 0xee, sizeof row);
    t2_q8_0_row_from_blocks(blocks, NB, row);
    for (int b = 0; b < NB; b++) {
        int g = b / 16, m = g == 0 ? 16 : 3, j = b % 16;
        const uint8_t *grp = row + g * 16 * T2_Q8_0_BYTES;
        for (int k = 0; k < 32; k++)
            assert_int_equal(grp[4 * m * (k / 4) + 4 * j + k % 4],
                             (uint8_t)(blocks[b * T2_Q8_0_BYTES + 2 + k] ^ 0x80));
        assert_memory_equal(grp + 32 * m + 2 * j, blocks + b * T2_Q8_0_BYTES, 2);
        assert_ptr_equal(t2_q8_0_row_scale(row, NB, b), grp + 32 * m + 2 * j);
        int8_t q[32];
        t2_q8_0_row_get(row, NB, b, q);
        assert_memory_equal(q, blocks + b * T2_Q8_0_BYTES + 2, 32);
    }
}

/* A q8_0 product of several rows of X (a batched decode step, a prompt's
 * rows) gives each row bit for bit what that row alone gives: the vector
 * variants' tiles add their sums in the one-row kernel's order, so a
 * sequence decodes the same in a batch as alone. Rows 37 (4-row tiles
 * and a remainder), groups full and short. */
static void test_q8_0_batch_rows_identical(void **state)
{
    (void)state;
    static const char *const variants[] = {"scalar", "avx2", "avx512", "avx512bf16"};
    static const int cols[] = {64, 960, 1504, 2560};
    enum { ROWS = 37, N = 16 };
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        const t2_kernels *k = t2_kernels_variant(variants[v]);
        if (!k)
            continue;
        for (size_t c = 0; c < sizeof cols / sizeof cols[0]; c++) {
            mat m;
            make_mat(&m, T2_W_Q8_0, ROWS, cols[c], 34);
            float *x = rand_x(N, cols[c]);
            t2_q8_act xq;
            assert_int_equal(t2_q8_act_alloc(&xq, N, cols[c]), 0);
            t2_q8_act_quantize(x, N, cols[c], &xq);
            float alone[N * ROWS], batch[N * ROWS];
            for (int i = 0; i < N; i++) {
                t2_q8_act xi = t2_q8_act_rows(&xq, cols[c], i);
                k->q8_0(m.w.data, m.w.stride, ROWS, cols[c], &xi, 1, alone + i * ROWS, ROWS);
            }
            for (int n = 2; n <= N; n++) {
                memset(batch, 0, sizeof batch);
                k->q8_0(m.w.data, m.w.stride, ROWS, cols[c], &xq, n, batch, ROWS);
                for (int i = 0; i < n * ROWS; i++)
                    if (memcmp(&batch[i], &alone[i], sizeof(float)) != 0)
                        fail_msg("%s cols %d n %d: y[%d][%d] = %.9g in the batch, %.9g alone",
                                 k->name, cols[c], n, i / ROWS, i % ROWS, (double)batch[i],
                                 (double)alone[i]);
            }
            free(x);
            t2_q8_act_free(&xq);
            free_mat(&m);
        }
    }
}

static void test_wtype_names(void **state)
{
    (void)state;
    t2_err err = {{0}};
    t2_wtype t;
    assert_int_equal(t2_wtype_parse("bf16", &t, &err), 0);
    assert_int_equal(t, T2_W_BF16);
    assert_int_equal(t2_wtype_parse("q8_0", &t, &err), 0);
    assert_int_equal(t, T2_W_Q8_0);
    assert_int_equal(t2_wtype_parse("f32", &t, &err), 0);
    assert_int_equal(t, T2_W_F32);
    assert_int_not_equal(t2_wtype_parse("q4_0", &t, &err), 0);
    assert_non_null(strstr(err.msg, "q4_0"));
    assert_int_equal(t2_wtype_row_bytes(T2_W_Q8_0, 64), 68);
    assert_int_equal(t2_wtype_row_bytes(T2_W_BF16, 64), 128);
    assert_int_equal(t2_wtype_row_bytes(T2_W_F32, 64), 256);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_env_forces_variant),
        cmocka_unit_test(test_wtype_names),
        cmocka_unit_test(test_q8_0_row_layout),
        cmocka_unit_test(test_q8_0_batch_rows_identical),
        cmocka_unit_test(test_act_quantize_matches_ggml),
        cmocka_unit_test(test_act_quantize_variants),
        cmocka_unit_test(test_f16_kv),
        cmocka_unit_test(test_scalar),
        cmocka_unit_test(test_avx2),
        cmocka_unit_test(test_avx512),
        cmocka_unit_test(test_avx512bf16),
        cmocka_unit_test(test_amx),
        cmocka_unit_test(test_bf16_round),
        cmocka_unit_test(test_bf16_transposed),
        cmocka_unit_test(test_silu_mul),
        cmocka_unit_test(test_rank_add),
        cmocka_unit_test(test_exp_shift),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_attention16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
