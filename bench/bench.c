/* t2 bench: prefill and decode speed of a model next to the limits of
 * the machine measured in the same run (memory read bandwidth for
 * decode, sgemm throughput for prefill), so every figure reads as a
 * fraction of what the hardware allows. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>

#include "bench.h"
#include "cli.h"
#include "forward.h"
#include "model.h"

#define SGEMM_N 1024
#define LIMIT_REPS 5
#define MAX_REPS 100 /* --reps at most */
#define DISPATCH_ITERS 20000
#define WARMUP_TG 8    /* decode steps of the warm-up: every weight is read once per step */
#define BUSY_WARN 0.10 /* other processes' share of the CPUs that makes figures suspect */

typedef struct bench_opts {
    const char *model;
    const char *synthetic;
    int pp, tg, threads, reps;
    bool json;
    t2_wtype format;     /* weights in memory */
    const char *expert;  /* time decode with this expert too (NULL: no) */
    const char *experts; /* its directory (default <model>/experts) */
    int batch, sets;     /* --batch N --sets K (batch.c); 0: single-stream figures */
    bool fresh;          /* time a never-seen mixture's factored weights too (fresh.c) */
    bool kernels;        /* only the kernels on one core, no model (kernels.c) */
    int kernels_mib;     /* --kernels' out-of-cache matrix; 0: 4x the last-level cache */
    bool kv_f16;         /* --kv-cache f16 */
    bool profile;        /* --profile: where a step's time goes (--batch) */
} bench_opts;

/* What the machine allows, measured with the benchmark's pool. */
typedef struct limits {
    size_t bw_bytes; /* size of the bandwidth array */
    double read_gbs; /* summing the array, all workers */
    int reader;      /* the fastest way of reading (t2_bench_read_bandwidth) */
    float *bw_array; /* kept to probe again next to every decode run */
    size_t bw_n;
    double sgemv_gbs;    /* OpenBLAS sgemv per worker over the same array */
    double kernel_gbs;   /* the engine's kernel for the format, same array */
    double sgemm_gflops; /* SGEMM_N^3, split as core/forward.c splits it */
    double dispatch_us;  /* one t2_pool_run of an empty job */
} limits;

/* The model's sizes and speeds. */
typedef struct figures {
    double params;             /* every distinct tensor */
    double bytes_per_token;    /* weights (in their format) read by one decode step */
    double kv_bytes_per_token; /* K/V cache read by one decode step, averaged */
    double pp_flops;           /* FLOPs of one prefill of pp tokens */
    double pp_tps, tg_tps;     /* medians over the reps */
    double pp_tps_min, pp_tps_max, tg_tps_min, tg_tps_max;
    double tg_tps_expert, tg_tps_expert_min, tg_tps_expert_max; /* --expert */
    double pp_tps_expert, expert_build_ms;
    /* decode runs of the base weights paired with a bandwidth probe just
     * before each: per run, achieved weight traffic / that probe */
    double paired_bw[MAX_REPS], paired_ratio[MAX_REPS];
    double bw_paired, tg_fraction_paired; /* medians */
    bool finite;      /* the last logits were finite (sanity of synthetic weights) */
    t2_cpu_load load; /* other processes, during the limits and the timed runs */
} figures;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: t2 bench --model PATH | --synthetic SHAPE [options]\n"
            "       t2 bench --kernels [--kernels-mib N] [--json]\n"
            "\n"
            "  -m, --model PATH        Hugging Face model directory or GGUF file\n"
            "  -s, --synthetic SHAPE   random weights of a real model's shape, no files:\n"
            "                          %s\n"
            "      --format FMT        weights in memory: f32 (default), bf16, q8_0\n"
            "      --kv-cache FMT      K/V cache: f32 (default), f16\n"
            "      --expert NAME       also time decode with this expert's materialised\n"
            "                          weights (--model only; from --experts DIR, default\n"
            "                          <model>/experts)\n"
            "      --fresh             also time prefill (= time to first token) and decode\n"
            "                          with a never-seen mixture's factored weights\n"
            "                          (random factors of the MLP shapes)\n"
            "      --batch N --sets K  instead: aggregate decode of N sequences together\n"
            "                          (one expert, and spread over K weight sets) vs one\n"
            "      --profile           with --batch: where a step's time goes, by stage\n"
            "      --kernels           instead: every kernel variant and format with 1..16\n"
            "                          rows of x on one core, in cache and out of it\n"
            "      --kernels-mib N     --kernels' out-of-cache matrix in MiB (default: 4x the\n"
            "                          last-level cache, 64..2048)\n"
            "      --pp N              prompt tokens of the prefill (default 512)\n"
            "      --tg N              tokens decoded after it (default 128)\n"
            "  -t, --threads N         worker threads (default: all cores)\n"
            "  -r, --reps R            timed runs; the median is reported (default 3)\n"
            "      --json              print one JSON object instead of the table\n"
            "\n"
            "Progress goes to stderr; the table or JSON to stdout.\n",
            t2_bench_shapes());
}

static int parse_int(const char *s, long lo, long hi, const char *what, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "t2 bench: invalid %s '%s' (expected %ld..%ld)\n", what, s, lo, hi);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int parse_args(int argc, char **argv, bench_opts *o)
{
    static const struct option longopts[] = {{"model", required_argument, 0, 'm'},
                                             {"synthetic", required_argument, 0, 's'},
                                             {"pp", required_argument, 0, 'P'},
                                             {"tg", required_argument, 0, 'G'},
                                             {"threads", required_argument, 0, 't'},
                                             {"reps", required_argument, 0, 'r'},
                                             {"json", no_argument, 0, 'j'},
                                             {"format", required_argument, 0, 'F'},
                                             {"expert", required_argument, 0, 'E'},
                                             {"experts", required_argument, 0, 'X'},
                                             {"batch", required_argument, 0, 'B'},
                                             {"sets", required_argument, 0, 'S'},
                                             {"fresh", no_argument, 0, 'N'},
                                             {"kernels", no_argument, 0, 'K'},
                                             {"kernels-mib", required_argument, 0, 'M'},
                                             {"kv-cache", required_argument, 0, 'V'},
                                             {"profile", no_argument, 0, 'p'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "m:s:t:r:h", longopts, NULL)) != -1) {
        int bad = 0;
        switch (ch) {
        case 'm': o->model = optarg; break;
        case 's': o->synthetic = optarg; break;
        case 'P': bad = parse_int(optarg, 1, 1 << 20, "--pp", &o->pp); break;
        case 'G': bad = parse_int(optarg, 1, 1 << 20, "--tg", &o->tg); break;
        case 't': bad = parse_int(optarg, 1, 1024, "--threads", &o->threads); break;
        case 'r': bad = parse_int(optarg, 1, MAX_REPS, "--reps", &o->reps); break;
        case 'j': o->json = true; break;
        case 'F': {
            t2_err err;
            if ((bad = t2_wtype_parse(optarg, &o->format, &err)) != 0)
                fprintf(stderr, "t2 bench: %s\n", err.msg);
            break;
        }
        case 'E': o->expert = optarg; break;
        case 'X': o->experts = optarg; break;
        case 'B': bad = parse_int(optarg, 1, T2_BENCH_MAX_STREAMS, "--batch", &o->batch); break;
        case 'S': bad = parse_int(optarg, 1, T2_BENCH_MAX_STREAMS, "--sets", &o->sets); break;
        case 'N': o->fresh = true; break;
        case 'p': o->profile = true; break;
        case 'K': o->kernels = true; break;
        case 'M': bad = parse_int(optarg, 1, 2048, "--kernels-mib", &o->kernels_mib); break;
        case 'V': {
            t2_err err;
            if ((bad = t2_kv_cache_parse(optarg, &o->kv_f16, &err)) != 0)
                fprintf(stderr, "t2 bench: --kv-cache: %s\n", err.msg);
            break;
        }
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
        if (bad)
            return -1;
    }
    if (optind < argc) {
        fprintf(stderr, "t2 bench: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (o->kernels) {
        if (o->model || o->synthetic || o->expert || o->batch || o->fresh) {
            fprintf(stderr, "t2 bench: --kernels goes alone (no model is used)\n");
            return -1;
        }
        return 0;
    }
    if (o->kernels_mib) {
        fprintf(stderr, "t2 bench: --kernels-mib goes with --kernels\n");
        return -1;
    }
    if (o->profile && !o->batch) {
        fprintf(stderr, "t2 bench: --profile goes with --batch\n");
        return -1;
    }
    if (o->expert && !o->model) {
        fprintf(stderr, "t2 bench: --expert needs --model (a synthetic model has no experts)\n");
        return -1;
    }
    if (o->fresh && (o->expert || o->batch)) {
        fprintf(stderr, "t2 bench: --fresh goes alone (not with --expert or --batch)\n");
        return -1;
    }
    if (!o->model == !o->synthetic) {
        fprintf(stderr, "t2 bench: give exactly one of --model and --synthetic\n");
        usage(stderr);
        return -1;
    }
    return 0;
}

/* ---- the machine ---- */

/* Large enough that caches cannot serve it: 1 GiB or 8x the last-level
 * cache, whichever is larger, but at most a quarter of the RAM. */
static size_t bandwidth_bytes(void)
{
    size_t bytes = (size_t)1 << 30, llc8 = 8 * t2_bench_llc_bytes();
    if (llc8 > bytes)
        bytes = llc8;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0 && bytes > (size_t)pages * (size_t)page / 4)
        bytes = (size_t)pages * (size_t)page / 4;
    return bytes;
}

static int measure_limits(t2_pool *pool, t2_wtype format, limits *lim, t2_cpu_load *load,
                          t2_err *err)
{
    t2_cpu_sample s0, s1;
    t2_cpu_sample_take(&s0);
    lim->bw_bytes = bandwidth_bytes();
    size_t n = lim->bw_bytes / sizeof(float);
    fprintf(stderr, "t2 bench: memory read bandwidth over %zu MiB...\n", lim->bw_bytes >> 20);
    float *a = t2_bench_touched_array(pool, n, err);
    if (!a)
        return -1;
    lim->reader = -1; /* try every reader; the fastest serves the later probes */
    lim->read_gbs = t2_bench_read_bandwidth(pool, a, n, LIMIT_REPS, &lim->reader);
    lim->sgemv_gbs = t2_bench_sgemv_gbs(pool, a, n, LIMIT_REPS);
    lim->kernel_gbs = t2_bench_kernel_gbs(pool, a, n * sizeof(float), format, LIMIT_REPS);
    /* the kernel probe overwrote it in its format (bytes that could read
     * as NaN or subnormal floats): refill it for the later sums */
    t2_bench_fill_array(pool, a, n);
    lim->bw_array = a;
    lim->bw_n = n;
    if (lim->read_gbs <= 0 || lim->sgemv_gbs <= 0 || lim->kernel_gbs <= 0)
        return t2_err_set(err, "out of memory measuring bandwidth");
    fprintf(stderr, "t2 bench: sgemm %dx%dx%d...\n", SGEMM_N, SGEMM_N, SGEMM_N);
    lim->sgemm_gflops = t2_bench_sgemm_gflops(pool, SGEMM_N, 2 * LIMIT_REPS, err);
    if (lim->sgemm_gflops < 0)
        return -1;
    lim->dispatch_us = t2_bench_dispatch_us(pool, DISPATCH_ITERS);
    t2_cpu_sample_take(&s1);
    t2_cpu_load_add(load, &s0, &s1);
    return 0;
}

/* ---- the model ---- */

static int load_model(const bench_opts *o, t2_pool *pool, t2_model **m, t2_err *err)
{
    int need = o->pp + o->tg;
    if (o->synthetic) {
        if (t2_bench_synthetic(m, o->synthetic, need, pool, err) != 0)
            return -1;
        (*m)->kv_f16 = o->kv_f16;
        fprintf(stderr, "t2 bench: weights as %s...\n", t2_wtype_name(o->format));
        return t2_model_convert(*m, o->format, err);
    }
    fprintf(stderr, "t2 bench: loading %s as %s...\n", o->model, t2_wtype_name(o->format));
    if (t2_model_load_as(m, o->model, o->format, err) != 0)
        return -1;
    (*m)->kv_f16 = o->kv_f16;
    if ((*m)->cfg.max_pos < need) {
        /* positions past the trained length cost the same: time them anyway */
        fprintf(stderr,
                "t2 bench: note: max_position_embeddings %d < pp + tg = %d; extended for timing\n",
                (*m)->cfg.max_pos, need);
        (*m)->cfg.max_pos = need;
    }
    return 0;
}

static double slot_floats(const t2_model *m, size_t i)
{
    return (double)m->slot_rows[i] * (double)m->slot_cols[i];
}

/* Weights one decode step reads, in their format: every matrix, norm and
 * bias (norms and biases are f32), and the output head once. The
 * embedding table is not read (one row is) unless it is the tied head,
 * counted then as the head. */
static double weight_bytes_per_token(const t2_model *m)
{
    double bytes = 0;
    for (size_t i = 0; i < m->n_slots; i++)
        if (m->slot_cols[i] == 1) /* norms and biases */
            bytes += slot_floats(m, i) * sizeof(float);
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int k = 0; k < T2_N_FACTOR_KINDS; k++) {
            t2_wmat w = t2_layer_wmat(&m->layers[l], &m->cfg, k);
            bytes += (double)w.rows * (double)w.stride;
        }
    return bytes + (double)m->head.rows * (double)m->head.stride;
}

static double count_params(const t2_model *m)
{
    double n = 0;
    for (size_t i = 0; i < m->n_slots; i++)
        n += slot_floats(m, i);
    return n;
}

/* FLOPs the forward pass performs for a pp-token prompt from position 0:
 * 2 per weight of the layer matrices per token, the head for the last
 * token only (t2_forward computes no other logits), and attention:
 * q·k and p·v, 2 x 2 x head_dim per query head per visible position. */
static double prefill_flops(const t2_model *m, int pp)
{
    const t2_config *c = &m->cfg;
    double layer_w = 0;
    for (int k = 0; k < T2_N_FACTOR_KINDS; k++) {
        t2_wmat w = t2_layer_wmat(&m->layers[0], c, k);
        layer_w += (double)w.rows * (double)w.cols * c->n_layers;
    }
    double head_w = (double)c->vocab * c->hidden;
    double visible = (double)pp * (pp + 1) / 2; /* sum over tokens of positions 0..t */
    double attn = 4.0 * c->head_dim * c->n_heads * visible * c->n_layers;
    return 2 * layer_w * pp + 2 * head_w + attn;
}

/* K and V of every layer for every cached position, read by one decode
 * step, averaged over the decoded positions pp..pp+tg-1. */
static double kv_bytes_per_token(const t2_model *m, int pp, int tg)
{
    const t2_config *c = &m->cfg;
    double kv_dim = (double)c->n_kv_heads * c->head_dim;
    double avg_pos = pp + (tg + 1) / 2.0;
    return 2 * kv_dim * c->n_layers * avg_pos * (m->kv_f16 ? sizeof(uint16_t) : sizeof(float));
}

static void random_tokens(int32_t *t, int n, int vocab, uint32_t seed)
{
    for (int i = 0; i < n; i++) {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        t[i] = (int32_t)(seed % (uint32_t)vocab);
    }
}

/* One prefill of pp tokens and tg single-token steps from an empty
 * cache; the two phases' seconds. */
static int timed_run(t2_ctx *ctx, const int32_t *tok, int pp, int tg, double *pp_s, double *tg_s,
                     const float **logits, t2_err *err)
{
    t2_ctx_truncate(ctx, 0);
    double t0 = t2_bench_now();
    if (t2_forward(ctx, tok, pp, false, logits, err) != 0)
        return -1;
    double t1 = t2_bench_now();
    for (int i = 0; i < tg; i++)
        if (t2_forward(ctx, tok + pp + i, 1, false, logits, err) != 0)
            return -1;
    *pp_s = t1 - t0;
    *tg_s = t2_bench_now() - t1;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* median, min and max of v[n] (sorts v) */
static void stats(double *v, int n, double *med, double *lo, double *hi)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    *med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    *lo = v[0];
    *hi = v[n - 1];
}

/* Runs of the base weights and, when `expert` is set, of the expert's
 * weights alternate (base, expert, base, ...) so that both see the same
 * state of a shared machine. */
static int time_model(const bench_opts *o, t2_ctx *ctx, const t2_model *m, const t2_layer *expert,
                      const limits *l, figures *f, t2_err *err)
{
    int32_t *tok = malloc((size_t)(o->pp + o->tg) * sizeof *tok);
    size_t nr = (size_t)o->reps;
    double *v = calloc(4 * nr, sizeof(double)); /* pp, tg, pp expert, tg expert */
    const float *logits = NULL;
    double pp_s, tg_s;
    int rc = -1;
    if (!tok || !v) {
        t2_err_set(err, "out of memory");
        goto out;
    }
    random_tokens(tok, o->pp + o->tg, m->cfg.vocab, 12345);
    fprintf(stderr, "t2 bench: warm-up (pp %d, tg %d)...\n", o->pp,
            o->tg < WARMUP_TG ? o->tg : WARMUP_TG);
    for (int e = 0; e < (expert ? 2 : 1); e++) {
        t2_ctx_set_layers(ctx, e ? expert : NULL);
        if (timed_run(ctx, tok, o->pp, o->tg < WARMUP_TG ? o->tg : WARMUP_TG, &pp_s, &tg_s, &logits,
                      err) != 0)
            goto out;
    }
    t2_cpu_sample s0, s1;
    t2_cpu_sample_take(&s0);
    for (int r = 0; r < o->reps; r++) {
        /* The bandwidth a shared machine gives moves by tens of percent
         * from one minute to the next (other guests on the host), so each
         * run's decode is compared with a probe taken just before it. */
        int reader = l->reader;
        f->paired_bw[r] =
            t2_bench_read_bandwidth(t2_ctx_pool(ctx), l->bw_array, l->bw_n, 2, &reader);
        for (int e = 0; e < (expert ? 2 : 1); e++) {
            t2_ctx_set_layers(ctx, e ? expert : NULL);
            if (timed_run(ctx, tok, o->pp, o->tg, &pp_s, &tg_s, &logits, err) != 0)
                goto out;
            if (e == 0)
                f->paired_ratio[r] = f->bytes_per_token * (o->tg / tg_s) / 1e9 / f->paired_bw[r];
            v[(size_t)(2 * e) * nr + (size_t)r] = o->pp / pp_s;
            v[(size_t)(2 * e + 1) * nr + (size_t)r] = o->tg / tg_s;
            fprintf(stderr, "t2 bench: run %d/%d%s: prefill %.1f tok/s, decode %.2f tok/s\n", r + 1,
                    o->reps, e ? (o->fresh ? " (never-seen mixture)" : " (expert)") : "",
                    o->pp / pp_s, o->tg / tg_s);
        }
    }
    t2_ctx_set_layers(ctx, NULL);
    t2_cpu_sample_take(&s1);
    t2_cpu_load_add(&f->load, &s0, &s1);
    stats(v, o->reps, &f->pp_tps, &f->pp_tps_min, &f->pp_tps_max);
    stats(v + nr, o->reps, &f->tg_tps, &f->tg_tps_min, &f->tg_tps_max);
    double lo, hi, tmp[MAX_REPS];
    memcpy(tmp, f->paired_bw, sizeof tmp);
    stats(tmp, o->reps, &f->bw_paired, &lo, &hi);
    memcpy(tmp, f->paired_ratio, sizeof tmp);
    stats(tmp, o->reps, &f->tg_fraction_paired, &lo, &hi);
    if (expert) {
        stats(v + 2 * nr, o->reps, &f->pp_tps_expert, &lo, &hi);
        stats(v + 3 * nr, o->reps, &f->tg_tps_expert, &f->tg_tps_expert_min, &f->tg_tps_expert_max);
    }
    f->finite = true;
    for (int i = 0; i < m->cfg.vocab; i++)
        f->finite = f->finite && isfinite(logits[i]);
    rc = 0;
out:
    free(tok);
    free(v);
    return rc;
}

static int measure_model(const bench_opts *o, t2_pool *pool, const t2_model *m, const limits *l,
                         figures *f, t2_err *err)
{
    f->params = count_params(m);
    f->bytes_per_token = weight_bytes_per_token(m);
    f->kv_bytes_per_token = kv_bytes_per_token(m, o->pp, o->tg);
    f->pp_flops = prefill_flops(m, o->pp);
    t2_svf *svf = NULL;
    t2_adapted *a = NULL;
    if (o->expert) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/experts", o->model);
        if (t2_bench_expert(m, pool, o->experts ? o->experts : dir, o->expert, &svf, &a, err) != 0)
            return -1;
        f->expert_build_ms = a->build_ms;
    } else if (o->fresh && t2_bench_fresh(m, &svf, &a, err) != 0) {
        return -1;
    }
    t2_ctx *ctx = NULL;
    int rc = t2_ctx_create(&ctx, m, pool, o->pp + o->tg, err);
    if (rc == 0)
        rc = time_model(o, ctx, m, a ? a->layers : NULL, l, f, err);
    t2_ctx_free(ctx);
    t2_adapted_unref(a);
    t2_svf_free(svf);
    return rc;
}

/* ---- output ---- */

typedef struct derived {
    double tg_gbs, tg_fraction, tg_limit_tps, pp_gflops, pp_fraction;
    double tg_kv_gbs, tg_fraction_kv; /* weights and the K/V cache read */
} derived;

static derived derive(const bench_opts *o, const limits *l, const figures *f)
{
    derived d;
    d.tg_gbs = f->bytes_per_token * f->tg_tps / 1e9;
    d.tg_fraction = f->tg_fraction_paired;
    d.tg_limit_tps = f->bw_paired * 1e9 / f->bytes_per_token;
    /* at long contexts a step also reads the whole K/V cache */
    double with_kv = (f->bytes_per_token + f->kv_bytes_per_token) / f->bytes_per_token;
    d.tg_kv_gbs = d.tg_gbs * with_kv;
    d.tg_fraction_kv = d.tg_fraction * with_kv;
    d.pp_gflops = f->pp_flops * f->pp_tps / o->pp / 1e9; /* flops / seconds of one prefill */
    d.pp_fraction = d.pp_gflops / l->sgemm_gflops;
    return d;
}

static const char *model_label(const bench_opts *o, const t2_model *m)
{
    return o->synthetic ? m->path : m->name;
}

static void print_table(const bench_opts *o, int threads, const t2_model *m, const limits *l,
                        const figures *f, const derived *d)
{
    printf("t2 bench: %s, %.3f B params, %d threads, pp %d, tg %d, K/V cache %s, median of %d\n\n",
           model_label(o, m), f->params / 1e9, threads, o->pp, o->tg, t2_kv_cache_name(m->kv_f16),
           o->reps);
    printf("%-30s %14s %22s %7s\n", "figure", "measured", "limit (same run)", "ratio");
    printf("%-30s %10.2f GB/s %22s %7s\n", "memory read bandwidth", l->read_gbs, "", "");
    printf("%-30s %10.2f GB/s %22s %7s\n", "  next to each decode run", f->bw_paired, "", "");
    printf("%-30s %10.2f GB/s %17.2f GB/s %7.2f\n", "sgemv (decode kernel)", l->sgemv_gbs,
           l->read_gbs, l->sgemv_gbs / l->read_gbs);
    char kname[64];
    snprintf(kname, sizeof kname, "%s kernel (%s)", t2_wtype_name(o->format),
             t2_kernels_get()->name);
    printf("%-30s %10.2f GB/s %17.2f GB/s %7.2f\n", kname, l->kernel_gbs, l->read_gbs,
           l->kernel_gbs / l->read_gbs);
    char sname[64];
    snprintf(sname, sizeof sname, "sgemm 1024^3 (%s)", openblas_get_corename());
    printf("%-30s %7.1f GFLOP/s %22s %7s\n", sname, l->sgemm_gflops, "", "");
    printf("%-30s %12.2f us %22s %7s\n", "pool dispatch (empty job)", l->dispatch_us, "", "");
    char wname[64];
    snprintf(wname, sizeof wname, "weights read per token (%s)", t2_wtype_name(o->format));
    printf("%-30s %11.1f MB %22s %7s\n", wname, f->bytes_per_token / 1e6, "", "");
    printf("%-30s %11.1f MB %22s %7s\n", "KV cache read per token (avg)",
           f->kv_bytes_per_token / 1e6, "", "");
    printf("%-30s %9.1f tok/s %22s %7s\n", "prefill", f->pp_tps, "", "");
    printf("%-30s %7.1f GFLOP/s %14.1f GFLOP/s %7.2f\n", "prefill compute", d->pp_gflops,
           l->sgemm_gflops, d->pp_fraction);
    printf("%-30s %9.2f tok/s %16.2f tok/s %7.2f\n", "decode", f->tg_tps, d->tg_limit_tps,
           d->tg_fraction);
    printf("%-30s %10.2f GB/s %17.2f GB/s %7.2f\n", "decode weight traffic", d->tg_gbs,
           f->bw_paired, d->tg_fraction);
    printf("%-30s %10.2f GB/s %17.2f GB/s %7.2f\n", "  with the K/V cache read", d->tg_kv_gbs,
           f->bw_paired, d->tg_fraction_kv);
    if (o->expert) {
        printf("%-30s %9.2f tok/s %16.2f tok/s %7.2f\n", "decode with the expert", f->tg_tps_expert,
               f->tg_tps, f->tg_tps_expert / f->tg_tps);
        printf("%-30s %12.1f ms %22s %7s\n", "expert weights build", f->expert_build_ms, "", "");
    }
    if (o->fresh) { /* the never-seen mixture against the base: time ratios */
        printf("%-30s %9.1f tok/s %16.1f tok/s %7.2f\n", "prefill, never-seen mixture",
               f->pp_tps_expert, f->pp_tps, f->pp_tps_expert / f->pp_tps);
        printf("%-30s %14s %22s %7.2f\n", "time to first token / base", "", "",
               f->pp_tps / f->pp_tps_expert);
        printf("%-30s %9.2f tok/s %16.2f tok/s %7.2f\n", "decode, never-seen mixture",
               f->tg_tps_expert, f->tg_tps, f->tg_tps_expert / f->tg_tps);
    }
    printf("\nspread over %d runs: prefill %.1f..%.1f tok/s, decode %.2f..%.2f tok/s\n", o->reps,
           f->pp_tps_min, f->pp_tps_max, f->tg_tps_min, f->tg_tps_max);
    double other = t2_cpu_load_other(&f->load), steal = t2_cpu_load_steal(&f->load);
    if (other >= 0)
        printf("other processes used %.0f%% of the CPUs while measuring (VM steal %.0f%%)\n",
               100 * other, 100 * steal);
    if (other > BUSY_WARN || steal > BUSY_WARN)
        printf("warning: the machine was shared; these figures understate it\n");
    if (!f->finite)
        printf("warning: the last logits were not all finite\n");
}

/* the first "model name" of /proc/cpuinfo, or "" */
static void cpu_name(char *buf, size_t n)
{
    buf[0] = '\0';
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && colon) {
            snprintf(buf, n, "%s", colon + 2);
            buf[strcspn(buf, "\n")] = '\0';
            break;
        }
    }
    fclose(f);
}

static void set_num(json_t *o, const char *key, double v)
{
    json_object_set_new(o, key, isfinite(v) ? json_real(v) : json_null());
}

static int print_json(const bench_opts *o, int threads, const t2_model *m, const limits *l,
                      const figures *f, const derived *d)
{
    char cpu[128];
    cpu_name(cpu, sizeof cpu);
    json_t *j = json_object();
    json_object_set_new(j, "model", json_string(model_label(o, m)));
    json_object_set_new(j, "synthetic", json_boolean(o->synthetic != NULL));
    json_object_set_new(j, "cpu", json_string(cpu));
    json_object_set_new(j, "threads", json_integer(threads));
    json_object_set_new(j, "pp", json_integer(o->pp));
    json_object_set_new(j, "tg", json_integer(o->tg));
    json_object_set_new(j, "reps", json_integer(o->reps));
    json_object_set_new(j, "params", json_integer((json_int_t)(f->params)));
    set_num(j, "pp_tps", f->pp_tps);
    set_num(j, "tg_tps", f->tg_tps);
    json_object_set_new(j, "bytes_per_token", json_integer((json_int_t)(f->bytes_per_token)));
    json_object_set_new(j, "kv_bytes_per_token", json_integer((json_int_t)(f->kv_bytes_per_token)));
    set_num(j, "read_bandwidth_gbs", f->bw_paired);
    set_num(j, "read_bandwidth_gbs_start", l->read_gbs);
    json_t *runs = json_array();
    for (int r = 0; r < o->reps; r++)
        json_array_append_new(runs, json_pack("{s:f,s:f}", "read_bandwidth_gbs", f->paired_bw[r],
                                              "tg_fraction_of_limit", f->paired_ratio[r]));
    json_object_set_new(j, "paired_runs", runs);
    json_object_set_new(j, "bandwidth_array_bytes", json_integer((json_int_t)l->bw_bytes));
    json_object_set_new(j, "format", json_string(t2_wtype_name(o->format)));
    json_object_set_new(j, "kernels", json_string(t2_kernels_get()->name));
    json_object_set_new(j, "blas_core", json_string(openblas_get_corename()));
    json_object_set_new(j, "kv_cache", json_string(t2_kv_cache_name(m->kv_f16)));
    set_num(j, "sgemv_gbs", l->sgemv_gbs);
    set_num(j, "kernel_gbs", l->kernel_gbs);
    set_num(j, "tg_gbs", d->tg_gbs);
    set_num(j, "tg_limit_tps", d->tg_limit_tps);
    set_num(j, "tg_fraction_of_limit", d->tg_fraction);
    set_num(j, "tg_fraction_of_limit_with_kv", d->tg_fraction_kv);
    set_num(j, "sgemm_gflops", l->sgemm_gflops);
    json_object_set_new(j, "pp_flops", json_integer((json_int_t)(f->pp_flops)));
    set_num(j, "pp_gflops", d->pp_gflops);
    set_num(j, "pp_fraction_of_sgemm", d->pp_fraction);
    set_num(j, "dispatch_us", l->dispatch_us);
    json_object_set_new(j, "pp_tps_range", json_pack("[f,f]", f->pp_tps_min, f->pp_tps_max));
    json_object_set_new(j, "tg_tps_range", json_pack("[f,f]", f->tg_tps_min, f->tg_tps_max));
    if (o->expert) {
        json_object_set_new(j, "expert", json_string(o->expert));
        set_num(j, "tg_tps_expert", f->tg_tps_expert);
        set_num(j, "pp_tps_expert", f->pp_tps_expert);
        set_num(j, "expert_tg_ratio", f->tg_tps_expert / f->tg_tps);
        set_num(j, "expert_build_ms", f->expert_build_ms);
        json_object_set_new(j, "tg_tps_expert_range",
                            json_pack("[f,f]", f->tg_tps_expert_min, f->tg_tps_expert_max));
    }
    if (o->fresh) {
        set_num(j, "pp_tps_fresh", f->pp_tps_expert);
        set_num(j, "tg_tps_fresh", f->tg_tps_expert);
        set_num(j, "fresh_ttft_ratio", f->pp_tps / f->pp_tps_expert);
        set_num(j, "fresh_tg_ratio", f->tg_tps_expert / f->tg_tps);
    }
    json_object_set_new(j, "logits_finite", json_boolean(f->finite));
    set_num(j, "other_cpu_load", t2_cpu_load_other(&f->load));
    set_num(j, "steal", t2_cpu_load_steal(&f->load));
    int rc = json_dumpf(j, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(8));
    json_decref(j);
    putchar('\n');
    return rc;
}

static int run(const bench_opts *o)
{
    t2_err err = {{0}};
    t2_pool *pool = NULL;
    t2_model *m = NULL;
    limits l = {0};
    figures f = {.load.ok = true};
    int status = 1;
    if (t2_pool_create(&pool, o->threads, &err) != 0 || load_model(o, pool, &m, &err) != 0 ||
        measure_limits(pool, o->format, &l, &f.load, &err) != 0) {
        fprintf(stderr, "t2 bench: %s\n", err.msg[0] ? err.msg : "failed");
    } else if (o->batch) {
        t2_batch_opts bo = {o->batch, o->sets ? o->sets : 1, o->pp, o->tg, o->reps, o->profile};
        t2_batch_figures bf = {.load.ok = true};
        if (t2_bench_batch(m, pool, &bo, &bf, &err) != 0)
            fprintf(stderr, "t2 bench: %s\n", err.msg[0] ? err.msg : "failed");
        else
            status = t2_bench_batch_print(&bo, m, &bf, l.read_gbs, o->json) != 0;
    } else if (measure_model(o, pool, m, &l, &f, &err) != 0) {
        fprintf(stderr, "t2 bench: %s\n", err.msg[0] ? err.msg : "failed");
    } else {
        derived d = derive(o, &l, &f);
        if (o->json) {
            status = print_json(o, t2_pool_size(pool), m, &l, &f, &d) != 0;
        } else {
            print_table(o, t2_pool_size(pool), m, &l, &f, &d);
            status = 0;
        }
    }
    free(l.bw_array);
    t2_model_free(m);
    t2_pool_free(pool);
    return status;
}

int t2_cli_bench(int argc, char **argv)
{
    bench_opts o = {.pp = 512, .tg = 128, .reps = 3};
    if (parse_args(argc, argv, &o) != 0)
        return 2;
    if (o.kernels) {
        t2_err err = {{0}};
        if (t2_bench_kernels(o.kernels_mib, o.json, &err) != 0) {
            fprintf(stderr, "t2 bench: %s\n", err.msg[0] ? err.msg : "failed");
            return 1;
        }
        return 0;
    }
    return run(&o);
}
