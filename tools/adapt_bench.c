/* t2-adapt-bench: what Transformer² adaptation costs on a model, as
 * ratios to the base model measured in the same run: SVD decomposition,
 * building a materialised mixture, decode speed with base / materialised /
 * factored weights, and pass-1 time by strategy and method.
 *   t2-adapt-bench --model DIR [--experts DIR] [--tg 128] [--reps 3] [--threads N] */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "engine.h"

typedef struct opts {
    const char *model, *experts;
    int tg, reps, threads;
} opts;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

/* decode tokens/s of tg greedy tokens after a short prompt, with weights w */
static double decode_tps(t2_ctx *ctx, const t2_adapted *w, int tg, int reps)
{
    int32_t prompt[16];
    for (int i = 0; i < 16; i++)
        prompt[i] = 100 + i;
    double tps[16];
    t2_err err;
    for (int r = 0; r <= reps; r++) { /* r = 0 warms up */
        t2_ctx_truncate(ctx, 0);
        t2_ctx_set_layers(ctx, w ? w->layers : NULL);
        const float *l;
        if (t2_forward(ctx, prompt, 16, false, &l, &err) != 0)
            return 0;
        int32_t tok = 5;
        double t0 = t2_now_ms();
        for (int i = 0; i < tg; i++)
            if (t2_forward(ctx, &tok, 1, false, &l, &err) != 0)
                return 0;
        if (r > 0)
            tps[r - 1] = tg / ((t2_now_ms() - t0) / 1e3);
    }
    t2_ctx_set_layers(ctx, NULL);
    return median(tps, reps);
}

static t2_adapted *expert_weights(t2_engine *e, const char *name, bool factored, double *ms)
{
    t2_expert *x = t2_store_get(e->experts, name);
    if (!x)
        return NULL;
    t2_mixture mx = {0};
    t2_err err;
    float **z = NULL;
    t2_adapted *w = NULL;
    double t0 = t2_now_ms();
    if (t2_mixture_add(&mx, x, 1.0f, NULL, 0, &err) == 0 && t2_mix_z(e->svf, &mx, &z, &err) == 0) {
        if (factored)
            t2_adapted_build_factored(&w, e->model, e->svf, z, &err);
        else
            t2_adapted_build(&w, e->model, e->svf, z, e->pool, &err);
    }
    *ms = t2_now_ms() - t0;
    t2_mix_z_free(e->svf, z);
    t2_mixture_clear(&mx);
    t2_expert_unref(x);
    return w;
}

/* Pass 1 on a different question each time (a repeated one would find
 * all of its prompt cached); cold: on a fresh context, so nothing of the
 * classification prompt is cached either. */
static double pass1_ms(t2_engine *e, t2_ctx *ctx, enum t2_strategy s, enum t2_cls_method m,
                       bool cold, int reps, int *tokens, int *cached)
{
    double v[16];
    t2_adapt_req req = {.strategy = s, .method = m};
    for (int r = 0; r <= reps; r++) {
        t2_decision d;
        int code;
        t2_err err;
        char q[64];
        snprintf(q, sizeof q, "What is %d + %d?", 461 + 17 * r, 129 + 5 * r);
        t2_ctx *c = ctx;
        if (cold && t2_ctx_create(&c, e->model, t2_ctx_pool(ctx), t2_ctx_n_ctx(ctx), &err) != 0) {
            fprintf(stderr, "t2-adapt-bench: %s\n", err.msg);
            return 0;
        }
        int rc = t2_engine_decide(e, c, &req, q, &d, &code, &err);
        if (c != ctx)
            t2_ctx_free(c);
        if (rc != 0) {
            fprintf(stderr, "t2-adapt-bench: %s\n", err.msg);
            return 0;
        }
        if (r > 0)
            v[r - 1] = d.pass1_ms;
        *tokens = d.pass1_tokens;
        *cached = d.pass1_cached_tokens;
        t2_decision_clear(&d);
    }
    return median(v, reps);
}

/* Time to first token of a chat prompt: the weights decision (a mixture
 * never seen before: factored, as the server starts it; or base) and the
 * prefill up to the first token's logits. */
static double ttft_ms(t2_engine *e, t2_ctx *ctx, bool fresh, int reps, t2_err *err)
{
    double v[16];
    t2_chat_msg msg = {"user", "What is 461 + 129? Explain the steps."};
    int32_t *ids = NULL;
    size_t n = 0;
    if (t2_engine_chat_ids(e, &msg, 1, &ids, &n, err) != 0)
        return 0;
    for (int r = 0; r <= reps; r++) {
        t2_mixture mx = {0};
        t2_expert *a = t2_store_get(e->experts, "math"), *b = t2_store_get(e->experts, "code");
        t2_adapted *w = NULL;
        const float *l;
        double t0 = t2_now_ms();
        int rc = !a || !b ? t2_err_set(err, "needs experts math and code") : 0;
        if (rc == 0 && fresh)
            rc = t2_mixture_add(&mx, a, 0.5f + 1e-4f * (float)(r + 1), NULL, 0, err);
        if (rc == 0 && fresh)
            rc = t2_mixture_add(&mx, b, 0.5f, NULL, 0, err);
        if (rc == 0)
            rc = t2_engine_weights(e, &mx, 0, &w, err);
        if (rc == 0) {
            t2_ctx_truncate(ctx, 0);
            t2_ctx_set_layers(ctx, w ? w->layers : NULL);
            rc = t2_forward(ctx, ids, (int)n, false, &l, err);
        }
        double ms = t2_now_ms() - t0;
        t2_ctx_set_layers(ctx, NULL);
        t2_adapted_unref(w);
        t2_mixture_clear(&mx);
        t2_expert_unref(a);
        t2_expert_unref(b);
        if (rc != 0) {
            free(ids);
            return 0;
        }
        if (r > 0)
            v[r - 1] = ms;
    }
    free(ids);
    return median(v, reps);
}

static void log_line(void *user, const char *msg)
{
    (void)user;
    fprintf(stderr, "t2-adapt-bench: %s\n", msg);
}

int main(int argc, char **argv)
{
    opts o = {.tg = 128, .reps = 3};
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'},   {"experts", required_argument, 0, 'e'},
        {"tg", required_argument, 0, 'g'},      {"reps", required_argument, 0, 'r'},
        {"threads", required_argument, 0, 't'}, {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'm': o.model = optarg; break;
        case 'e': o.experts = optarg; break;
        case 'g': o.tg = atoi(optarg); break;
        case 'r': o.reps = atoi(optarg); break;
        case 't': o.threads = atoi(optarg); break;
        default: return 2;
        }
    }
    if (!o.model || o.tg < 1 || o.reps < 1 || o.reps > 15) {
        fprintf(stderr, "usage: t2-adapt-bench --model DIR [--experts DIR] [--tg N] [--reps 1..15] "
                        "[--threads N]\n");
        return 2;
    }
    char experts[4096];
    snprintf(experts, sizeof experts, "%s/experts", o.model);
    t2_engine_opts eo;
    t2_engine_opts_defaults(&eo);
    eo.model_path = o.model;
    eo.experts_dir = o.experts ? o.experts : experts;
    eo.threads = o.threads;
    eo.log = log_line;
    /* the classifier's short prompt of seedling; other models: the default */
    eo.classify_prompt =
        "Classify the question into one of: {labels}. Answer as \\boxed{category}.";
    t2_engine *e;
    t2_ctx *ctx;
    t2_err err;
    if (t2_engine_open(&e, &eo, &err) != 0 ||
        t2_ctx_create(&ctx, e->model, e->pool, 512, &err) != 0) {
        fprintf(stderr, "t2-adapt-bench: %s\n", err.msg);
        return 1;
    }
    double mat_ms, fac_ms;
    t2_adapted *mat = expert_weights(e, "math", false, &mat_ms);
    t2_adapted *fac = expert_weights(e, "math", true, &fac_ms);
    if (!mat || !fac) {
        fprintf(stderr, "t2-adapt-bench: needs an expert named 'math'\n");
        return 1;
    }
    double base = decode_tps(ctx, NULL, o.tg, o.reps);
    double dm = decode_tps(ctx, mat, o.tg, o.reps);
    double df = decode_tps(ctx, fac, o.tg, o.reps);
    typedef struct {
        const char *name;
        enum t2_strategy s;
        enum t2_cls_method m;
        bool cold;
    } pass1_case;
    static const pass1_case cases[] = {
        {"prompt, likelihood", T2_STRATEGY_PROMPT, T2_CLS_LIKELIHOOD, false},
        {"prompt, likelihood, cold", T2_STRATEGY_PROMPT, T2_CLS_LIKELIHOOD, true},
        {"prompt, generate", T2_STRATEGY_PROMPT, T2_CLS_GENERATE, false},
        {"classifier, likelihood", T2_STRATEGY_CLASSIFIER, T2_CLS_LIKELIHOOD, false},
    };
    enum { N_CASES = sizeof cases / sizeof cases[0] };
    double p1[N_CASES];
    int p1_tokens[N_CASES], p1_cached[N_CASES];
    for (int i = 0; i < N_CASES; i++)
        p1[i] = pass1_ms(e, ctx, cases[i].s, cases[i].m, cases[i].cold, o.reps, &p1_tokens[i],
                         &p1_cached[i]);
    printf("| figure | value | ratio |\n|---|---|---|\n");
    printf("| SVD of %zu matrices (%s), cold | %.2f s | |\n", e->svf->n,
           t2_svf_set_name(e->svf->set), e->svf_stats.seconds);
    printf("| materialised mixture build (1 expert) | %.1f ms | %.1f decode tokens of the base |\n",
           mat_ms, mat_ms / (1e3 / base));
    printf("| factored set build | %.3f ms | |\n", fac_ms);
    printf("| decode, base | %.1f tok/s | 1.00 |\n", base);
    printf("| decode, expert materialised | %.1f tok/s | %.2f |\n", dm, dm / base);
    printf("| decode, expert factored | %.1f tok/s | %.2f |\n", df, df / base);
    t2_err terr;
    double tb = ttft_ms(e, ctx, false, o.reps, &terr), tf = ttft_ms(e, ctx, true, o.reps, &terr);
    printf("| time to first token, base | %.2f ms | 1.00 |\n", tb);
    printf("| time to first token, never-seen mixture (factored) | %.2f ms | %.2f |\n", tf,
           tb > 0 ? tf / tb : 0.0);
    /* share of a request answering tg tokens: pass 1 / (pass 1 + tg decode tokens) */
    double answer_ms = o.tg * (1e3 / base);
    for (int i = 0; i < N_CASES; i++)
        printf("| pass 1, %s | %.1f ms (%d tokens evaluated, %d cached) | %.1f decode tokens, "
               "%.1f %% of a %d-token answer |\n",
               cases[i].name, p1[i], p1_tokens[i], p1_cached[i], p1[i] / (1e3 / base),
               100.0 * p1[i] / (p1[i] + answer_ms), o.tg);
    t2_adapted_unref(mat);
    t2_adapted_unref(fac);
    t2_ctx_free(ctx);
    t2_engine_free(e);
    return 0;
}
