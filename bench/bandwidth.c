/* The machine's limits, measured with the same pool the model uses, so
 * the model's figures can be read as fractions of what the hardware
 * gives this process: memory read bandwidth (the ceiling of decode),
 * sgemm throughput (the ceiling of prefill), and the fixed cost of one
 * pool dispatch (what a small model pays per matrix product). */
#include "bench.h"

#include <cblas.h>
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double t2_bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

size_t t2_bench_llc_bytes(void)
{
    long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (l3 > 0)
        return (size_t)l3;
    long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    return l2 > 0 ? (size_t)l2 : 0;
}

/* [begin, end) of n items for worker w of nw, in multiples of 64 floats
 * (one 256-byte block) so shares never split a cache line. */
static void share_sz(size_t n, int w, int nw, size_t *begin, size_t *end)
{
    size_t blocks = (n + 63) / 64;
    size_t b0 = blocks * (size_t)w / (size_t)nw, b1 = blocks * (size_t)(w + 1) / (size_t)nw;
    *begin = b0 * 64 < n ? b0 * 64 : n;
    *end = b1 * 64 < n ? b1 * 64 : n;
}

/* ---- read bandwidth ---- */

/* GCC/Clang vector type of 4 floats: native SSE2 width, so the eight
 * accumulators below stay in registers on any x86-64 build (wider
 * generic vectors get split and spilled without -mavx). Independent
 * lanes need no reassociation licence to vectorise the sum. */
typedef float v4f __attribute__((vector_size(16)));

static volatile double bench_sink;

/* One cache line per worker so the partial sums do not false-share. */
typedef struct partial {
    double v;
    char pad[56];
} partial;

static inline v4f load4(const float *p)
{
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}

static float sum_range(const float *a, size_t n)
{
    v4f s[8] = {{0}};
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 8; k++)
            s[k] += load4(a + i + 4 * k);
    v4f t4 = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    float t = (t4[0] + t4[1]) + (t4[2] + t4[3]);
    for (; i < n; i++)
        t += a[i];
    return t;
}

/* The same sum as the decode kernels stream weights: the widest loads
 * the CPU has, and software prefetch `pf` bytes ahead (one core keeps only
 * so many misses in flight; the hardware prefetcher stops at 4 KiB page
 * ends). Without these the probe reads slower than the f32 decode kernel
 * itself and every ratio to it flatters the kernels. The best distance
 * depends on the machine and the thread count, so several are tried. */
#define PF_BYTES 2048

#define SUM_AVX512(name, pf)                                                                       \
    __attribute__((target("avx512f"))) static float name(const float *a, size_t n)                 \
    {                                                                                              \
        __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;                                \
        size_t i = 0;                                                                              \
        for (; i + 64 <= n; i += 64) { /* 256 bytes = 4 lines per step */                          \
            if (pf) {                                                                              \
                const char *p = (const char *)(a + i) + (pf);                                      \
                _mm_prefetch(p, _MM_HINT_T0);                                                      \
                _mm_prefetch(p + 64, _MM_HINT_T0);                                                 \
                _mm_prefetch(p + 128, _MM_HINT_T0);                                                \
                _mm_prefetch(p + 192, _MM_HINT_T0);                                                \
            }                                                                                      \
            s0 = _mm512_add_ps(s0, _mm512_loadu_ps(a + i));                                        \
            s1 = _mm512_add_ps(s1, _mm512_loadu_ps(a + i + 16));                                   \
            s2 = _mm512_add_ps(s2, _mm512_loadu_ps(a + i + 32));                                   \
            s3 = _mm512_add_ps(s3, _mm512_loadu_ps(a + i + 48));                                   \
        }                                                                                          \
        float t =                                                                                  \
            _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));     \
        for (; i < n; i++)                                                                         \
            t += a[i];                                                                             \
        return t;                                                                                  \
    }

SUM_AVX512(sum_range_avx512_nopf, 0)
SUM_AVX512(sum_range_avx512_pf2k, 2048)
SUM_AVX512(sum_range_avx512_pf4k, 4096)

__attribute__((target("avx2"))) static float sum_range_avx2(const float *a, size_t n)
{
    __m256 s[8];
    for (int k = 0; k < 8; k++)
        s[k] = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        const char *p = (const char *)(a + i) + PF_BYTES;
        for (int k = 0; k < 4; k++)
            _mm_prefetch(p + 64 * k, _MM_HINT_T0);
        for (int k = 0; k < 8; k++)
            s[k] = _mm256_add_ps(s[k], _mm256_loadu_ps(a + i + 8 * k));
    }
    for (int k = 1; k < 8; k++)
        s[0] = _mm256_add_ps(s[0], s[k]);
    float v[8], t = 0.0f;
    _mm256_storeu_ps(v, s[0]);
    for (int k = 0; k < 8; k++)
        t += v[k];
    for (; i < n; i++)
        t += a[i];
    return t;
}

typedef float (*sum_fn)(const float *a, size_t n);

typedef struct sum_job {
    const float *a;
    size_t n;
    partial *out;
    sum_fn sum;
} sum_job;

static void sum_worker(void *arg, int w, int nw)
{
    sum_job *j = arg;
    size_t b, e;
    share_sz(j->n, w, nw, &b, &e);
    j->out[w].v = j->sum(j->a + b, e - b);
}

/* Each worker writes its own share first, so pages are really backed
 * (an untouched page reads as the shared zero page, from cache), with
 * values that never repeat page to page (identical pages could be
 * merged by KSM and read from cache too). */
typedef struct fill_job {
    float *a;
    size_t n;
} fill_job;

static void fill_worker(void *arg, int w, int nw)
{
    fill_job *j = arg;
    size_t b, e;
    share_sz(j->n, w, nw, &b, &e);
    for (size_t i = b; i < e; i++)
        j->a[i] = (float)(i % 1000003) * 1e-6f;
}

void t2_bench_fill_array(t2_pool *pool, float *a, size_t n)
{
    fill_job j = {a, n};
    t2_pool_run(pool, fill_worker, &j);
}

float *t2_bench_touched_array(t2_pool *pool, size_t n, t2_err *err)
{
    n = (n + 63) / 64 * 64;
    float *a = aligned_alloc(64, n * sizeof(float));
    if (!a) {
        t2_err_set(err, "out of memory for a %zu MiB bandwidth array", (n * sizeof(float)) >> 20);
        return NULL;
    }
    t2_bench_fill_array(pool, a, n);
    return a;
}

double t2_bench_read_bandwidth(t2_pool *pool, const float *a, size_t n, int reps, int *reader)
{
    int nw = t2_pool_size(pool);
    partial *out = aligned_alloc(64, (size_t)nw * sizeof(partial));
    if (!out)
        return -1;
    /* every reader the CPU runs, the best of all their runs: the limit is
     * what this process can get, not what one way of reading gets */
    __builtin_cpu_init();
    sum_fn readers[5] = {sum_range};
    int n_readers = 1;
    if (__builtin_cpu_supports("avx2"))
        readers[n_readers++] = sum_range_avx2;
    if (__builtin_cpu_supports("avx512f")) {
        readers[n_readers++] = sum_range_avx512_nopf;
        readers[n_readers++] = sum_range_avx512_pf2k;
        readers[n_readers++] = sum_range_avx512_pf4k;
    }
    double best = 0.0, sink = 0.0;
    int first = *reader >= 0 && *reader < n_readers ? *reader : 0;
    int last = *reader >= 0 && *reader < n_readers ? *reader + 1 : n_readers;
    for (int k = first; k < last; k++) {
        sum_job j = {a, n, out, readers[k]};
        t2_pool_run(pool, sum_worker, &j); /* warm-up: TLB, page tables, clocks */
        for (int r = 0; r < reps; r++) {
            double t0 = t2_bench_now();
            t2_pool_run(pool, sum_worker, &j);
            double dt = t2_bench_now() - t0;
            for (int w = 0; w < nw; w++)
                sink += out[w].v;
            double gbs = (double)(n * sizeof(float)) / dt / 1e9;
            if (gbs > best) {
                best = gbs;
                *reader = k;
            }
        }
    }
    free(out);
    bench_sink = sink; /* the sums are used: the reads cannot be optimised away */
    return best;
}

/* ---- sgemv: y[rows] = W[rows][cols] · x, as matmul_worker for one token ---- */

typedef struct gemv_job {
    float *y;
    const float *x, *w;
    int rows, cols;
} gemv_job;

static void gemv_worker(void *arg, int w, int nw)
{
    const gemv_job *j = arg;
    int r0, r1;
    t2_pool_share(j->rows, w, nw, 16, &r0, &r1);
    if (r0 < r1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, r1 - r0, j->cols, 1.0f,
                    j->w + (size_t)r0 * (size_t)j->cols, j->cols, j->x, 1, 0.0f, j->y + r0, 1);
}

double t2_bench_sgemv_gbs(t2_pool *pool, const float *a, size_t n, int reps)
{
    enum { COLS = 4096 };
    int rows = (int)(n / COLS);
    float *x = aligned_alloc(64, COLS * sizeof(float));
    float *y = aligned_alloc(64, (size_t)rows * sizeof(float));
    if (!x || !y || rows == 0) {
        free(x);
        free(y);
        return -1;
    }
    for (int i = 0; i < COLS; i++)
        x[i] = 1.0f / (float)(i + 1);
    openblas_set_num_threads(1);
    gemv_job j = {y, x, a, rows, COLS};
    t2_pool_run(pool, gemv_worker, &j);
    double best = 0.0;
    for (int r = 0; r < reps; r++) {
        double t0 = t2_bench_now();
        t2_pool_run(pool, gemv_worker, &j);
        double gbs = (double)rows * COLS * sizeof(float) / (t2_bench_now() - t0) / 1e9;
        best = gbs > best ? gbs : best;
    }
    bench_sink = y[0];
    free(x);
    free(y);
    return best;
}

/* ---- sgemm: Y[n][rows] = X[n][cols] · W[rows][cols]ᵀ, as matmul_worker ---- */

typedef struct gemm_job {
    float *y;
    const float *x, *w;
    int n, rows, cols;
} gemm_job;

static void gemm_worker(void *arg, int w, int nw)
{
    const gemm_job *j = arg;
    int r0, r1;
    t2_pool_share(j->rows, w, nw, 16, &r0, &r1);
    if (r0 >= r1)
        return;
    const float *wr = j->w + (size_t)r0 * (size_t)j->cols;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->n, r1 - r0, j->cols, 1.0f, j->x,
                j->cols, wr, j->cols, 0.0f, j->y + r0, j->rows);
}

static void fill_random(float *a, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        a[i] = (float)(seed >> 8) * (1.0f / 16777216.0f) - 0.5f;
    }
}

double t2_bench_sgemm_gflops(t2_pool *pool, int n, int reps, t2_err *err)
{
    size_t nn = (size_t)n * (size_t)n;
    float *x = aligned_alloc(64, nn * sizeof(float));
    float *w = aligned_alloc(64, nn * sizeof(float));
    float *y = aligned_alloc(64, nn * sizeof(float));
    if (!x || !w || !y) {
        free(x);
        free(w);
        free(y);
        return t2_err_set(err, "out of memory for a %d^3 sgemm", n);
    }
    fill_random(x, nn, 1);
    fill_random(w, nn, 2);
    /* the pool owns the parallelism, as in t2_ctx_create */
    openblas_set_num_threads(1);
    gemm_job j = {y, x, w, n, n, n};
    t2_pool_run(pool, gemm_worker, &j); /* warm-up: OpenBLAS buffers, clocks */
    double best = 0.0;
    for (int r = 0; r < reps; r++) {
        double t0 = t2_bench_now();
        t2_pool_run(pool, gemm_worker, &j);
        double g = 2.0 * (double)nn * (double)n / (t2_bench_now() - t0) / 1e9;
        best = g > best ? g : best;
    }
    free(x);
    free(w);
    free(y);
    return best;
}

/* ---- dispatch ---- */

static void empty_worker(void *arg, int w, int nw)
{
    (void)arg;
    (void)w;
    (void)nw;
}

double t2_bench_dispatch_us(t2_pool *pool, int iters)
{
    for (int i = 0; i < iters / 10; i++)
        t2_pool_run(pool, empty_worker, NULL);
    double t0 = t2_bench_now();
    for (int i = 0; i < iters; i++)
        t2_pool_run(pool, empty_worker, NULL);
    return (t2_bench_now() - t0) / iters * 1e6;
}
