/* t2 bench internals: the machine's limits (memory read bandwidth, sgemm
 * throughput, pool dispatch cost) and synthetic models of real shapes. */
#ifndef T2_BENCH_H
#define T2_BENCH_H

#include <stdbool.h>
#include <stddef.h>

#include "adapt.h"
#include "error.h"
#include "forward.h"
#include "kernels.h"
#include "model.h"
#include "pool.h"

/* Monotonic clock in seconds. */
double t2_bench_now(void);

/* Bytes of the last-level cache (0 if unknown). */
size_t t2_bench_llc_bytes(void);

/* An array of n floats (rounded up to 64) written by every worker, so
 * its pages are backed; free() it. NULL on failure. */
float *t2_bench_touched_array(t2_pool *pool, size_t n, t2_err *err);
/* Writes a[n] again with the same values (each worker its share). */
void t2_bench_fill_array(t2_pool *pool, float *a, size_t n);

/* Best of reps read bandwidth in GB/s (1e9 bytes/s) summing a[n] with
 * every worker of the pool; -1 on failure. With *reader < 0 every way of
 * reading the CPU runs is tried (plain SSE sums, AVX2 and AVX-512 with
 * and without software prefetch) and *reader is set to the fastest;
 * otherwise only that one runs. */
double t2_bench_read_bandwidth(t2_pool *pool, const float *a, size_t n, int reps, int *reader);

/* Best of reps GB/s of single-threaded OpenBLAS sgemv per worker over
 * a[n] viewed as a [n/4096][4096] matrix: the decode kernel's ceiling. */
double t2_bench_sgemv_gbs(t2_pool *pool, const float *a, size_t n, int reps);

/* Best of reps GB/s of the engine's matrix-vector kernel for `type`
 * (t2_kernels_get()) over the array a of `bytes`, viewed as weights
 * [rows][4096] in that format (overwritten with valid values), split by
 * rows over the pool as decode runs it; -1 on failure. */
double t2_bench_kernel_gbs(t2_pool *pool, void *a, size_t bytes, t2_wtype type, int reps);

/* The materialised weights of expert `name` (dir/name.safetensors) for m,
 * and the SVF factors they came from (free both). */
int t2_bench_expert(const t2_model *m, t2_pool *pool, const char *dir, const char *name,
                    t2_svf **svf_out, t2_adapted **out, t2_err *err);

/* --kernels: every kernel variant, format and 1..16 rows of x on one core,
 * in cache and out of it (out_mib MiB; 0: sized from the last-level
 * cache), next to one core's sgemm (kernels.c); a table, or one JSON
 * object with json. */
int t2_bench_kernels(int out_mib, bool json, t2_err *err);

/* Uniform in [-scale, scale) from a xorshift64 state. */
float t2_bench_rnd(uint64_t *s, float scale);
/* SVF factors of m's MLP matrices with random values (U, Vt in
 * [-0.05, 0.05), S in [0.5, 1.5)), and bf16 copies for a bf16 model as
 * t2_svf_build makes them; t2_svf_free it. */
int t2_bench_random_svf(const t2_model *m, t2_svf **out, t2_err *err);

/* --fresh: the factored weights a never-seen mixture starts with (random
 * U, s, Vt of every MLP matrix, fresh.c) and the factors (free both). */
int t2_bench_fresh(const t2_model *m, t2_svf **svf_out, t2_adapted **out, t2_err *err);

/* Best of reps GFLOP/s of an n x n x n sgemm split by rows over the pool,
 * each worker running single-threaded OpenBLAS as core/forward.c does;
 * -1 on failure. */
double t2_bench_sgemm_gflops(t2_pool *pool, int n, int reps, t2_err *err);

/* Microseconds per t2_pool_run of an empty job (the fixed cost that every
 * matrix product of a decode step pays). */
double t2_bench_dispatch_us(t2_pool *pool, int iters);

/* Load from other processes while we measure (see cpuload.c). */
typedef struct t2_cpu_sample {
    double t, busy_s, steal_s, self_s;
    bool ok;
} t2_cpu_sample;

typedef struct t2_cpu_load {
    double cpu_s, other_s, steal_s; /* summed over the measured intervals */
    bool ok;                        /* start true; false if /proc/stat is unreadable */
} t2_cpu_load;

void t2_cpu_sample_take(t2_cpu_sample *s);
/* Adds the interval [a, b] to l. */
void t2_cpu_load_add(t2_cpu_load *l, const t2_cpu_sample *a, const t2_cpu_sample *b);
/* Other processes' CPU time / all CPUs' time, and the VM's steal time
 * likewise; -1 if unknown. */
double t2_cpu_load_other(const t2_cpu_load *l);
double t2_cpu_load_steal(const t2_cpu_load *l);

/* --batch: N sequences decoded together over K weight sets (batch.c). */
#define T2_BENCH_MAX_STREAMS 16
typedef struct t2_batch_opts {
    int streams, sets, pp, tg, reps;
    bool profile; /* one more run of each variant with t2_pass_profile */
} t2_batch_opts;

/* one stream, same set, mixed (shared U/Vt), mixed (each set read) */
#define T2_BATCH_VARIANTS 4

typedef struct t2_batch_figures {
    double one_tps;     /* one sequence, base weights, t2_forward per token */
    double same_tps;    /* aggregate: all sequences on one expert's weights */
    double mixed_tps;   /* aggregate: sequence i on set i mod K, shared U/Vt products */
    double grouped_tps; /* the same batch without views: each distinct matrix read once */
    t2_cpu_load load;
    t2_pass_profile prof[T2_BATCH_VARIANTS]; /* --profile: its run of each variant */
    int workers;                             /* the pool's */
} t2_batch_figures;

int t2_bench_batch(t2_model *m, t2_pool *pool, const t2_batch_opts *o, t2_batch_figures *f,
                   t2_err *err);
/* The table or one JSON object on stdout. */
int t2_bench_batch_print(const t2_batch_opts *o, const t2_model *m, const t2_batch_figures *f,
                         double read_gbs, bool json);

/* Builds a model of a known shape (see t2_bench_shapes) with random
 * weights, no tokenizer, max_pos at least min_pos. */
int t2_bench_synthetic(t2_model **out, const char *shape, int min_pos, t2_pool *pool, t2_err *err);

/* The shape names, comma separated, for usage text. */
const char *t2_bench_shapes(void);

#endif
