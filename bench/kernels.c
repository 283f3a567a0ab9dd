/* --kernels: the engine's matrix kernels on one core, for every variant
 * this CPU has, every weight format and 1..16 rows of x, on a matrix that
 * stays in cache and on one that cannot. Speeds in GMAC/s (multiply-adds
 * of weights by x values), next to single-threaded OpenBLAS sgemm of the
 * same run as the limit of the arithmetic. What it answers: how much of
 * the core a batched decode step's products use, and what a kernel
 * change did, without a model. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "clock.h"
#include "dtype.h"
#include "kernels.h"
#include "model.h"
#include "pool.h"

#define COLS 960        /* SmolLM2-360M's hidden size */
#define ROWS_CACHED 256 /* 960 KiB of f32: L2 or L3 */
#define BYTES_OUT_MIN ((size_t)64 << 20)
#define BYTES_OUT_MAX ((size_t)2 << 30)
#define MIN_SECONDS 0.03 /* per timing; best of TIMINGS */
#define TIMINGS 2

static const int row_counts[] = {1, 2, 4, 8, 16};
#define N_COUNTS (int)(sizeof row_counts / sizeof row_counts[0])
static const t2_wtype formats[] = {T2_W_F32, T2_W_BF16, T2_W_Q8_0};
#define N_FORMATS 3

typedef struct kmat {
    t2_wmat w[N_FORMATS];
    void *data[N_FORMATS];
} kmat;

static void kmat_free(kmat *k)
{
    for (int f = 0; f < N_FORMATS; f++)
        free(k->data[f]);
}

/* Bytes of each format's out-of-cache matrix: out_mib MiB where given,
 * else four times the last-level cache, so a pass cannot be served from it
 * (a fixed 64 MiB stayed in a Xeon's L3 and reported L3 rates as memory
 * rates); 64 MiB at least, 2 GiB at most. */
static size_t bytes_out(int out_mib)
{
    if (out_mib > 0)
        return (size_t)out_mib << 20;
    size_t b = 4 * t2_bench_llc_bytes();
    return b < BYTES_OUT_MIN ? BYTES_OUT_MIN : b > BYTES_OUT_MAX ? BYTES_OUT_MAX : b;
}

/* Each format's matrix: `rows` rows, or (rows 0) as many as make
 * `bytes` in that format, filled 4096 rows at a time. */
static int kmat_make(kmat *k, int rows, size_t bytes, t2_err *err)
{
    memset(k, 0, sizeof *k);
    enum { STEP = 4096 };
    float *src = malloc((size_t)STEP * COLS * sizeof *src);
    if (!src)
        return t2_err_set(err, "out of memory");
    uint64_t s = 1; /* one block of random rows, repeated: speed does not depend on them */
    for (size_t i = 0; i < (size_t)STEP * COLS; i++)
        src[i] = t2_bench_rnd(&s, 0.5f);
    for (int f = 0; f < N_FORMATS; f++) {
        size_t rb = t2_wtype_row_bytes(formats[f], COLS);
        int n = rows ? rows : (int)(bytes / rb);
        k->data[f] = aligned_alloc(64, t2_wmat_alloc_bytes(formats[f], n, COLS));
        if (!k->data[f]) {
            free(src);
            kmat_free(k);
            return t2_err_set(err, "out of memory");
        }
        for (int r0 = 0; r0 < n; r0 += STEP) {
            int m = n - r0 < STEP ? n - r0 : STEP;
            t2_wmat_from_f32(formats[f], (char *)k->data[f] + (size_t)r0 * rb, src, m, COLS);
        }
        k->w[f] = (t2_wmat){formats[f], k->data[f], n, COLS, rb};
    }
    free(src);
    return 0;
}

/* How a row of the table multiplies: the format's kernel, the bf16 x
 * bf16 one (x rounded to bf16), or the transposed bf16 one (bf16_t: x
 * has a value per weight row, y one per column). */
enum { BY_FORMAT, BY_X16, BY_TRANSPOSED };

/* GMAC/s of one kernel call over the whole matrix with n rows of x;
 * x16 and transposed (bf16 weights only) as above, on xb. */
static double time_kernel(const t2_kernels *kern, const t2_wmat *w, const float *x,
                          const t2_q8_act *xq, const uint16_t *xb, int how, int n, float *y)
{
    double best = 0.0;
    for (int t = 0; t < TIMINGS; t++) {
        double t0 = t2_now_ms() / 1e3, dt;
        long calls = 0;
        do {
            if (how == BY_TRANSPOSED)
                kern->bf16_t(w->data, w->stride, w->rows, 0, w->cols, xb, (size_t)w->rows, n, y,
                             (size_t)w->cols);
            else if (how == BY_X16)
                kern->bf16_x16(w->data, w->stride, w->rows, w->cols, xb, n, y, (size_t)w->rows);
            else
                t2_wmat_mul(kern, w, 0, w->rows, x, xq, n, y, (size_t)w->rows);
            calls++;
        } while ((dt = t2_now_ms() / 1e3 - t0) < MIN_SECONDS);
        double gmacs = (double)calls * w->rows * w->cols * n / dt * 1e-9;
        best = gmacs > best ? gmacs : best;
    }
    return best;
}

int t2_bench_kernels(int out_mib, bool json, t2_err *err)
{
    kmat cached, big;
    size_t out_bytes = bytes_out(out_mib);
    fprintf(stderr, "t2 bench: kernels on one core, %d x %d (in cache) and %zu MiB...\n",
            ROWS_CACHED, COLS, out_bytes >> 20);
    if (kmat_make(&cached, ROWS_CACHED, 0, err) != 0)
        return -1;
    if (kmat_make(&big, 0, out_bytes, err) != 0) {
        kmat_free(&cached);
        return -1;
    }
    int rows_out = big.w[N_FORMATS - 1].rows; /* the most: q8_0's */
    float *x = malloc(16 * COLS * sizeof *x), *y = malloc((size_t)16 * rows_out * sizeof *y);
    /* bf16 x for bf16_x16 (16 rows of COLS) and bf16_t (16 rows of rows_out) */
    size_t xb_n = (size_t)16 * (size_t)(rows_out > COLS ? rows_out : COLS);
    uint16_t *xb = malloc(xb_n * sizeof *xb);
    t2_q8_act xq = {NULL, NULL, NULL};
    int rc = -1;
    json_t *out = json_object(), *list = json_array();
    if (!x || !y || !xb || t2_q8_act_alloc(&xq, 16, COLS) != 0 || !out || !list) {
        t2_err_set(err, "out of memory");
        goto done;
    }
    uint64_t s = 7;
    for (int i = 0; i < 16 * COLS; i++)
        x[i] = t2_bench_rnd(&s, 0.5f);
    for (size_t i = 0; i < xb_n; i++)
        xb[i] = t2_f32_to_bf16(x[i % (16 * COLS)]);
    t2_pool *one = NULL;
    if (t2_pool_create(&one, 1, err) != 0)
        goto done;
    double sgemm = t2_bench_sgemm_gflops(one, 1024, 5, err);
    t2_pool_free(one);
    if (sgemm < 0)
        goto done;
    json_object_set_new(out, "cols", json_integer(COLS));
    json_object_set_new(out, "rows_cached", json_integer(ROWS_CACHED));
    json_object_set_new(out, "bytes_out_of_cache", json_integer((json_int_t)out_bytes));
    json_object_set_new(out, "sgemm_gflops_one_core", json_real(sgemm));
    if (!json) {
        printf("kernels on one core, %d columns; sgemm (OpenBLAS, one core) %.1f GFLOP/s = %.1f "
               "GMAC/s\n",
               COLS, sgemm, sgemm / 2);
        printf("%-10s %-5s %-9s", "variant", "fmt", "matrix");
        for (int c = 0; c < N_COUNTS; c++)
            printf("   n=%-2d GMAC/s", row_counts[c]);
        printf("\n");
    }
    for (int v = 0; t2_kernels_variant_name(v); v++) {
        const t2_kernels *kern = t2_kernels_variant(t2_kernels_variant_name(v));
        if (!kern)
            continue;
        kern->q8_act(x, 16, COLS, &xq);
        /* the formats, then bf16 weights times bf16 x ("bf16x", where the
         * variant has that kernel) and the transposed product ("bf16t") */
        for (int f = 0; f <= N_FORMATS + 1; f++)
            /* the scalar reference only in cache: out of it, one call of 16
             * rows takes a second and says nothing about the memory */
            for (int where = 0; where < (v == 0 ? 1 : 2); where++) {
                int how = f < N_FORMATS ? BY_FORMAT : f == N_FORMATS ? BY_X16 : BY_TRANSPOSED;
                if (how == BY_X16 && !kern->bf16_x16) /* the engine widens X for bf16 there */
                    continue;
                int wf = how != BY_FORMAT ? 1 : f; /* formats[1]: bf16 */
                const char *fmt = how == BY_X16          ? "bf16x"
                                  : how == BY_TRANSPOSED ? "bf16t"
                                                         : t2_wtype_name(formats[f]);
                const t2_wmat *w = where ? &big.w[wf] : &cached.w[wf];
                json_t *row = json_pack("{s:s,s:s,s:s}", "variant", kern->name, "format", fmt,
                                        "matrix", where ? "out_of_cache" : "cached");
                json_t *g = json_object();
                if (!json)
                    printf("%-10s %-5s %-9s", kern->name, fmt, where ? "memory" : "cache");
                for (int c = 0; c < N_COUNTS; c++) {
                    double r = time_kernel(kern, w, x, &xq, xb, how, row_counts[c], y);
                    char key[8];
                    snprintf(key, sizeof key, "%d", row_counts[c]);
                    json_object_set_new(g, key, json_real(r));
                    if (!json)
                        printf(" %13.2f", r);
                }
                json_object_set_new(row, "gmacs", g);
                json_array_append_new(list, row);
                if (!json)
                    printf("\n");
                fflush(stdout);
            }
    }
    json_object_set_new(out, "results", list);
    list = NULL;
    if (json) {
        json_dumpf(out, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
        putchar('\n');
    }
    rc = 0;
done:
    json_decref(list);
    json_decref(out);
    free(x);
    free(xb);
    free(y);
    t2_q8_act_free(&xq);
    kmat_free(&cached);
    kmat_free(&big);
    return rc;
}
