/* --batch N --sets K: aggregate decode tokens/s of N sequences stepped
 * together (t2_forward_batch) against one sequence alone, with every
 * sequence on the same weights and with the sequences spread over K
 * weight sets (the base and K-1 "experts"). The experts are built like
 * materialised expert sets: MLP matrices of their own (copies of the
 * base's, so the bytes are real) plus factored views on shared U and Vt
 * (random factors of the right shapes: speed does not depend on values,
 * and a real SVD of a 0.4 B model would take minutes). The mixed batch
 * is timed twice: with the views (one U and one Vt product for all rows)
 * and without them (each distinct matrix read once per step). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "forward.h"
#include "svf.h"

enum { V_ONE, V_SAME, V_MIXED, V_GROUPED, N_VARIANTS };
_Static_assert(N_VARIANTS == T2_BATCH_VARIANTS, "bench.h counts the variants");

typedef struct weight_set {
    t2_layer *layers; /* with views (mix) */
    t2_layer *plain;  /* the same without views */
    t2_factor *views; /* [n_layers * T2_N_FACTOR_KINDS] */
    float *s;         /* scaled singular values of every view */
    void **copies;    /* [svf->n] matrix copies */
} weight_set;

static float **layer_field(t2_layer *L, int kind)
{
    return kind == T2_WGATE ? &L->w_gate : kind == T2_WUP ? &L->w_up : &L->w_down;
}

static void set_free(weight_set *w, size_t n)
{
    if (w->copies)
        for (size_t i = 0; i < n; i++)
            free(w->copies[i]);
    free(w->copies);
    free(w->layers);
    free(w->plain);
    free(w->views);
    free(w->s);
}

/* An expert-like set: its own copies of the MLP matrices, views with
 * its own singular values; or (base) the model's layers. */
static int set_build(weight_set *w, const t2_model *m, const t2_svf *svf, bool base, int id,
                     t2_err *err)
{
    size_t nl = (size_t)m->cfg.n_layers;
    memset(w, 0, sizeof *w);
    w->layers = malloc(nl * sizeof *w->layers);
    w->plain = malloc(nl * sizeof *w->plain);
    w->copies = calloc(svf->n, sizeof *w->copies);
    float **s = calloc(svf->n, sizeof *s);
    size_t floats = 0;
    for (size_t i = 0; i < svf->n; i++)
        floats += (size_t)svf->mats[i].r;
    w->s = malloc(floats * sizeof(float));
    if (!w->layers || !w->plain || !w->copies || !s || !w->s) {
        free(s);
        return t2_err_set(err, "out of memory");
    }
    memcpy(w->layers, m->layers, nl * sizeof *w->layers);
    uint64_t seed = 77 + (uint64_t)id;
    size_t off = 0;
    for (size_t i = 0; i < svf->n; i++) {
        const t2_svf_matrix *mat = &svf->mats[i];
        s[i] = w->s + off;
        off += (size_t)mat->r;
        for (int k = 0; k < mat->r; k++)
            s[i][k] = base ? mat->s[k] : mat->s[k] * (1.0f + t2_bench_rnd(&seed, 0.1f));
        if (base)
            continue;
        size_t bytes = (size_t)mat->wm.rows * mat->wm.stride;
        w->copies[i] = aligned_alloc(64, (bytes + 63) / 64 * 64);
        if (!w->copies[i]) {
            free(s);
            return t2_err_set(err, "out of memory for an expert set");
        }
        memcpy(w->copies[i], mat->wm.data, bytes);
        t2_layer *L = &w->layers[mat->layer];
        L->mat[mat->kind] = mat->wm;
        L->mat[mat->kind].data = w->copies[i];
        *layer_field(L, mat->kind) = mat->wm.type == T2_W_F32 ? w->copies[i] : NULL;
    }
    w->views = t2_svf_views(m, svf, s, err);
    free(s);
    if (!w->views)
        return -1;
    for (size_t l = 0; l < nl; l++)
        w->layers[l].mix = w->views + l * T2_N_FACTOR_KINDS;
    memcpy(w->plain, w->layers, nl * sizeof *w->plain);
    for (size_t l = 0; l < nl; l++)
        w->plain[l].mix = NULL;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* tg steps of the variant from position pp of every context. */
static int time_variant(int v, t2_ctx **ctx, const weight_set *sets, int streams, int n_sets,
                        int pp, int tg, double *tps, t2_err *err)
{
    int n = v == V_ONE ? 1 : streams;
    for (int i = 0; i < n; i++) {
        const weight_set *w = &sets[v == V_SAME ? 1 % n_sets : i % n_sets];
        t2_ctx_set_layers(ctx[i], v == V_GROUPED ? w->plain : w->layers);
        t2_ctx_truncate(ctx[i], pp);
    }
    int32_t tok[T2_BENCH_MAX_STREAMS];
    const float *logits;
    double t0 = t2_bench_now();
    for (int step = 0; step < tg; step++) {
        for (int i = 0; i < n; i++)
            tok[i] = (int32_t)((7 + 131 * i + 17 * step) % t2_ctx_model(ctx[0])->cfg.vocab);
        int rc = v == V_ONE ? t2_forward(ctx[0], tok, 1, false, &logits, err)
                            : t2_forward_batch(ctx, tok, n, &logits, err);
        if (rc != 0)
            return -1;
    }
    *tps = (double)n * tg / (t2_bench_now() - t0);
    return 0;
}

int t2_bench_batch(t2_model *m, t2_pool *pool, const t2_batch_opts *o, t2_batch_figures *f,
                   t2_err *err)
{
    memset(f, 0, sizeof *f);
    f->load.ok = true;
    f->workers = t2_pool_size(pool);
    if (o->streams < 1 || o->streams > T2_BENCH_MAX_STREAMS || o->sets < 1 || o->sets > o->streams)
        return t2_err_set(err, "--batch 1..%d, --sets 1..batch", T2_BENCH_MAX_STREAMS);
    t2_svf *svf = NULL;
    t2_factor *base_views = NULL;
    weight_set *sets = calloc((size_t)o->sets + 1, sizeof *sets);
    t2_ctx **ctx = calloc((size_t)o->streams, sizeof *ctx);
    double *v = calloc((size_t)N_VARIANTS * (size_t)o->reps, sizeof *v);
    int32_t *prompt = malloc((size_t)(o->pp > 0 ? o->pp : 1) * sizeof *prompt);
    int rc = -1, built = 0;
    if (!sets || !ctx || !v || !prompt) {
        t2_err_set(err, "out of memory");
        goto out;
    }
    fprintf(stderr, "t2 bench: %d weight sets (random factors, copied MLP matrices)...\n", o->sets);
    if (t2_bench_random_svf(m, &svf, err) != 0 ||
        t2_adapt_attach_base(m, svf, &base_views, err) != 0)
        goto out;
    /* sets[0] is the base; V_SAME uses sets[1] (an expert), or the base */
    for (; built < o->sets; built++)
        if (set_build(&sets[built], m, svf, built == 0, built, err) != 0)
            goto out;
    for (int i = 0; i < o->pp; i++)
        prompt[i] = (int32_t)((13 + 29 * i) % m->cfg.vocab);
    const float *logits;
    for (int i = 0; i < o->streams; i++)
        if (t2_ctx_create(&ctx[i], m, pool, o->pp + o->tg + 1, err) != 0 ||
            (o->pp > 0 && t2_forward(ctx[i], prompt, o->pp, false, &logits, err) != 0))
            goto out;
    fprintf(stderr, "t2 bench: warm-up of the batch variants...\n");
    double tps;
    for (int var = 0; var < N_VARIANTS; var++)
        if (time_variant(var, ctx, sets, o->streams, o->sets, o->pp, o->tg < 4 ? o->tg : 4, &tps,
                         err) != 0)
            goto out;
    static const char *names[N_VARIANTS] = {"1 stream", "same set", "mixed, shared factors",
                                            "mixed, each set read"};
    t2_cpu_sample s0, s1;
    t2_cpu_sample_take(&s0);
    for (int r = 0; r < o->reps; r++)
        for (int var = 0; var < N_VARIANTS; var++) {
            if (time_variant(var, ctx, sets, o->streams, o->sets, o->pp, o->tg, &tps, err) != 0)
                goto out;
            v[(size_t)var * (size_t)o->reps + (size_t)r] = tps;
            fprintf(stderr, "t2 bench: run %d/%d, %s: %.2f tok/s\n", r + 1, o->reps, names[var],
                    tps);
        }
    t2_cpu_sample_take(&s1);
    t2_cpu_load_add(&f->load, &s0, &s1);
    for (int var = 0; o->profile && var < N_VARIANTS; var++) {
        for (int i = 0; i < o->streams; i++)
            t2_ctx_set_profile(ctx[i], &f->prof[var]);
        int rc_var = time_variant(var, ctx, sets, o->streams, o->sets, o->pp, o->tg, &tps, err);
        for (int i = 0; i < o->streams; i++)
            t2_ctx_set_profile(ctx[i], NULL);
        if (rc_var != 0)
            goto out;
    }
    double *med[N_VARIANTS] = {&f->one_tps, &f->same_tps, &f->mixed_tps, &f->grouped_tps};
    for (int var = 0; var < N_VARIANTS; var++) {
        double *x = v + (size_t)var * (size_t)o->reps;
        qsort(x, (size_t)o->reps, sizeof *x, cmp_double);
        *med[var] = o->reps % 2 ? x[o->reps / 2] : (x[o->reps / 2 - 1] + x[o->reps / 2]) / 2;
    }
    rc = 0;
out:
    for (int i = 0; ctx && i < o->streams; i++)
        t2_ctx_free(ctx[i]);
    for (int i = 0; sets && i <= built && i < o->sets; i++)
        set_free(&sets[i], svf ? svf->n : 0);
    for (int l = 0; base_views && l < m->cfg.n_layers; l++)
        m->layers[l].mix = NULL;
    free(base_views);
    t2_svf_free(svf);
    free(sets);
    free(ctx);
    free(v);
    free(prompt);
    return rc;
}

static const char *const variant_keys[N_VARIANTS] = {"one", "same", "mixed", "mixed_grouped"};

/* x per pass of a variant's profile (NAN when it has none) */
static double per_pass(const t2_pass_profile *p, double x)
{
    return p->passes ? x / (double)p->passes : NAN;
}

/* ms per step of a stage (-1: the rest of the pass) of a variant's profile */
static double stage_ms(const t2_pass_profile *p, int stage)
{
    double sec = p->total_sec;
    if (stage >= 0)
        sec = p->sec[stage];
    else
        for (int s = 0; s < T2_N_STAGES; s++)
            if (s != T2_STAGE_ROTATION)
                sec -= p->sec[s];
    return per_pass(p, sec * 1e3);
}

/* ms per step the workers spent in the matrix kernels: their mean, or
 * (busiest) the most any one spent */
static double worker_ms(const t2_batch_figures *f, const t2_pass_profile *p, bool busiest)
{
    int n = f->workers < T2_PROF_WORKERS ? f->workers : T2_PROF_WORKERS;
    double sum = 0, most = 0;
    for (int w = 0; w < n; w++) {
        sum += p->worker_sec[w];
        most = p->worker_sec[w] > most ? p->worker_sec[w] : most;
    }
    return per_pass(p, (busiest ? most : sum / (n > 0 ? n : 1)) * 1e3);
}

/* wall ms per step of the stages that are matrix products */
static double matrix_ms(const t2_pass_profile *p)
{
    static const int stages[] = {T2_STAGE_QKV, T2_STAGE_O, T2_STAGE_GATE_UP, T2_STAGE_DOWN,
                                 T2_STAGE_HEAD};
    double ms = 0;
    for (size_t i = 0; i < sizeof stages / sizeof stages[0]; i++)
        ms += stage_ms(p, stages[i]);
    return ms;
}

/* The profile's rows past the stages: name and value per variant. */
enum { ROW_STEP, ROW_MATRIX, ROW_KERNELS_MEAN, ROW_KERNELS_MAX, ROW_HANDOFFS, N_ROWS };
static const char *const row_keys[N_ROWS] = {"step", "matrix_stages", "worker_kernels_mean",
                                             "worker_kernels_max", "pool_runs"};
static const char *const row_labels[N_ROWS] = {"whole step", "matrix stages", "kernels, mean",
                                               "kernels, max", "pool hand-offs"};

static double row_value(const t2_batch_figures *f, const t2_pass_profile *p, int row)
{
    switch (row) {
    case ROW_STEP: return per_pass(p, p->total_sec * 1e3);
    case ROW_MATRIX: return matrix_ms(p);
    case ROW_KERNELS_MEAN: return worker_ms(f, p, false);
    case ROW_KERNELS_MAX: return worker_ms(f, p, true);
    default: return per_pass(p, (double)p->pool_runs);
    }
}

static json_t *json_num(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *profile_json(const t2_batch_figures *f)
{
    json_t *all = json_object();
    for (int v = 0; v < N_VARIANTS; v++) {
        const t2_pass_profile *p = &f->prof[v];
        json_t *j = json_object();
        for (int s = -1; s < T2_N_STAGES; s++)
            json_object_set_new(j, s < 0 ? "other" : t2_stage_name((t2_stage)s),
                                json_num(stage_ms(p, s)));
        for (int r = 0; r < N_ROWS; r++)
            json_object_set_new(j, row_keys[r], json_num(row_value(f, p, r)));
        json_object_set_new(all, variant_keys[v], j);
    }
    return all;
}

static void profile_print(const t2_batch_figures *f)
{
    printf("\nwhere a step's time goes (ms per step, one more run of each variant; kernels:\n"
           "a worker's time inside the matrix kernels, of the matrix stages' wall time)\n");
    printf("%-16s", "stage");
    for (int v = 0; v < N_VARIANTS; v++)
        printf(" %14s", variant_keys[v]);
    printf("\n");
    for (int s = 0; s <= T2_N_STAGES; s++) {
        int stage = s < T2_N_STAGES ? s : -1;
        printf("%-16s", stage < 0 ? "other" : t2_stage_name((t2_stage)stage));
        for (int v = 0; v < N_VARIANTS; v++)
            printf(" %14.3f", stage_ms(&f->prof[v], stage));
        printf("\n");
    }
    for (int r = 0; r < N_ROWS; r++) {
        printf("%-16s", row_labels[r]);
        for (int v = 0; v < N_VARIANTS; v++)
            printf(r == ROW_HANDOFFS ? " %14.1f" : " %14.3f", row_value(f, &f->prof[v], r));
        printf("\n");
    }
    printf("kernel ms per step by worker, mixed:");
    const t2_pass_profile *pm = &f->prof[V_MIXED];
    for (int w = 0; w < f->workers && w < T2_PROF_WORKERS; w++)
        printf(" %.2f", per_pass(pm, pm->worker_sec[w] * 1e3));
    printf("\n");
}

int t2_bench_batch_print(const t2_batch_opts *o, const t2_model *m, const t2_batch_figures *f,
                         double read_gbs, bool json)
{
    double other = t2_cpu_load_other(&f->load);
    if (json) {
        json_t *j = json_pack("{s:s, s:s, s:i, s:i, s:i, s:i}", "model", m->name, "format",
                              t2_wtype_name(m->wtype), "batch", o->streams, "sets", o->sets, "pp",
                              o->pp, "tg", o->tg);
        double v[] = {read_gbs,
                      f->one_tps,
                      f->same_tps,
                      f->mixed_tps,
                      f->grouped_tps,
                      f->same_tps / f->one_tps,
                      f->mixed_tps / f->one_tps,
                      f->grouped_tps / f->one_tps,
                      other};
        const char *k[] = {"read_bandwidth_gbs", "one_stream_tps",      "same_tps",
                           "mixed_tps",          "mixed_grouped_tps",   "same_x_one",
                           "mixed_x_one",        "mixed_grouped_x_one", "other_cpu_load"};
        for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
            json_object_set_new(j, k[i], json_num(v[i]));
        if (o->profile)
            json_object_set_new(j, "profile_ms_per_step", profile_json(f));
        int rc = json_dumpf(j, stdout, JSON_COMPACT) != 0 ? -1 : 0;
        json_decref(j);
        printf("\n");
        return rc;
    }
    printf("model %s (%s), %d sequences over %d weight sets, pp %d, tg %d, median of %d\n", m->name,
           t2_wtype_name(m->wtype), o->streams, o->sets, o->pp, o->tg, o->reps);
    printf("read bandwidth %.1f GB/s, other processes %.0f %% of the CPUs\n", read_gbs,
           other * 100);
    printf("%-34s %10s %10s\n", "decode", "tok/s", "x 1 stream");
    printf("%-34s %10.2f %10.2f\n", "1 stream", f->one_tps, 1.0);
    printf("%-34s %10.2f %10.2f\n", "batch, one expert", f->same_tps, f->same_tps / f->one_tps);
    printf("%-34s %10.2f %10.2f\n", "batch, mixed: shared U/Vt", f->mixed_tps,
           f->mixed_tps / f->one_tps);
    printf("%-34s %10.2f %10.2f\n", "batch, mixed: each set read once", f->grouped_tps,
           f->grouped_tps / f->one_tps);
    if (o->profile)
        profile_print(f);
    return 0;
}
