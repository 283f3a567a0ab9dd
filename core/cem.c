/* Few-shot adaptation: the cross-entropy method over mixture weights, as
 * in the Transformer² reference (population 32, elite ratio 0.2, alpha
 * clamped to [0, 1], initial mean 1/K and std 0.5, the best member kept,
 * ties on accuracy broken by the mean log-likelihood of the answers).
 * Candidates run in the factored form: no weight rebuild per candidate. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "clock.h"

void t2_cem_opts_defaults(t2_cem_opts *o)
{
    memset(o, 0, sizeof *o);
    o->population = 32;
    o->elite_ratio = 0.2f;
    o->init_std = 0.5f;
    o->generations = 10;
    o->max_tokens = 16;
}

void t2_cem_result_clear(t2_cem_result *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->experts[i]);
    free(r->experts);
    free(r->alpha);
    memset(r, 0, sizeof *r);
}

/* ---- seeded normal draws (splitmix64 + Box-Muller) ---- */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double rng_normal(uint64_t *s)
{
    double u1 = ((double)(rng_next(s) >> 11) + 1.0) / 9007199254740993.0;
    double u2 = (double)(rng_next(s) >> 11) / 9007199254740992.0;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* ---- scoring one candidate ---- */

typedef struct encoded_example {
    int32_t *prompt, *answer; /* answer ends with the turn-end token */
    size_t n_prompt, n_answer;
    const char *answer_text;
} encoded_example;

enum { CEM_SEQS = 16, CEM_MAX_TOKENS = 64 };

typedef struct search {
    t2_engine *e;
    encoded_example *ex;
    size_t n_ex;
    t2_expert **experts;
    size_t k;
    int max_tokens;
    t2_ctx *seq[CEM_SEQS]; /* the examples of a group, one each */
    int n_seq;
    float *last; /* [n_seq][vocab]: each example's logits after its prompt */
    int evaluations;
} search;

/* Example x's prompt on c, then its answer teacher-forced: the answer's
 * log-likelihood into *ll, the logits after the prompt into last; c
 * keeps the prompt only. */
static int prompt_and_answer(search *s, t2_ctx *c, const encoded_example *x, float *last,
                             double *ll, t2_err *err)
{
    int V = s->e->model->cfg.vocab;
    const float *out;
    t2_ctx_truncate(c, 0);
    if (t2_forward(c, x->prompt, (int)x->n_prompt, false, &out, err) != 0)
        return -1;
    memcpy(last, out, (size_t)V * sizeof *last);
    *ll = t2_log_softmax_at(last, V, x->answer[0]);
    if (x->n_answer > 1) {
        if (t2_forward(c, x->answer, (int)x->n_answer - 1, true, &out, err) != 0)
            return -1;
        for (size_t i = 1; i < x->n_answer; i++)
            *ll += t2_log_softmax_at(out + (i - 1) * (size_t)V, V, x->answer[i]);
    }
    t2_ctx_truncate(c, (int)x->n_prompt);
    return 0;
}

/* Greedy continuations of the group's n examples (from x), decoded
 * together; an answer is right iff its text matches the example's.
 * Adds the right ones to *right. */
static int greedy_group(search *s, const encoded_example *x, int n, int *right, t2_err *err)
{
    const t2_model *m = s->e->model;
    int V = m->cfg.vocab, cap = s->max_tokens < CEM_MAX_TOKENS ? s->max_tokens : CEM_MAX_TOKENS;
    int32_t gen[CEM_SEQS][CEM_MAX_TOKENS], tok[CEM_SEQS];
    int len[CEM_SEQS] = {0};
    bool done[CEM_SEQS];
    const float *logits = s->last;
    size_t stride = (size_t)V; /* rows of logits: s->last now, the batch's later */
    int at[CEM_SEQS], live = n;
    for (int j = 0; j < n; j++)
        at[j] = j;
    for (;;) {
        /* each live sequence's next token from its row of logits */
        int k = 0;
        t2_ctx *ctxs[CEM_SEQS];
        for (int r = 0; r < live; r++) {
            int j = at[r];
            int32_t t = t2_argmax(logits + (size_t)r * stride, V);
            done[j] = t2_model_is_eos(m, t);
            if (!done[j]) {
                gen[j][len[j]++] = t;
                done[j] = len[j] == cap;
            }
            if (!done[j]) {
                tok[k] = t;
                ctxs[k] = s->seq[j];
                at[k++] = j;
            }
        }
        live = k;
        if (live == 0)
            break;
        if (t2_forward_batch(ctxs, tok, live, &logits, err) != 0)
            return -1;
    }
    for (int j = 0; j < n; j++) {
        char *text = NULL;
        size_t tlen;
        if (t2_tok_decode(m->tok, gen[j], (size_t)len[j], true, &text, &tlen, err) != 0)
            return -1;
        *right += t2_answer_matches(text, x[j].answer_text);
        free(text);
    }
    return 0;
}

/* accuracy and mean log-likelihood of one alpha vector (NULL = base):
 * the examples in groups of n_seq, each group's prompts and answers
 * scored one by one, then its greedy answers decoded together */
static int evaluate(search *s, const float *alpha, double *acc, double *mean_ll, t2_err *err)
{
    t2_adapted *w = NULL;
    if (alpha) {
        t2_mixture mx = {0};
        int rc = 0;
        for (size_t i = 0; i < s->k && rc == 0; i++)
            rc = t2_mixture_add(&mx, s->experts[i], alpha[i], NULL, 0, err);
        float **z = NULL;
        if (rc == 0)
            rc = t2_mix_z(s->e->svf, &mx, &z, err);
        if (rc == 0)
            rc = t2_adapted_build_factored(&w, s->e->model, s->e->svf, z, err);
        t2_mix_z_free(s->e->svf, z);
        t2_mixture_clear(&mx);
        if (rc != 0)
            return -1;
    }
    for (int j = 0; j < s->n_seq; j++)
        t2_ctx_set_layers(s->seq[j], w ? w->layers : NULL);
    int right = 0, rc = 0;
    size_t V = (size_t)s->e->model->cfg.vocab;
    double ll_sum = 0.0;
    for (size_t i0 = 0; i0 < s->n_ex && rc == 0; i0 += (size_t)s->n_seq) {
        int n = s->n_ex - i0 < (size_t)s->n_seq ? (int)(s->n_ex - i0) : s->n_seq;
        for (int j = 0; j < n && rc == 0; j++) {
            double ll = 0.0;
            rc = prompt_and_answer(s, s->seq[j], &s->ex[i0 + (size_t)j], s->last + (size_t)j * V,
                                   &ll, err);
            ll_sum += ll;
        }
        if (rc == 0)
            rc = greedy_group(s, &s->ex[i0], n, &right, err);
    }
    for (int j = 0; j < s->n_seq; j++)
        t2_ctx_set_layers(s->seq[j], NULL);
    t2_adapted_unref(w);
    s->evaluations++;
    *acc = (double)right / (double)s->n_ex;
    *mean_ll = ll_sum / (double)s->n_ex;
    return rc;
}

/* ---- setup ---- */

static void free_examples(encoded_example *ex, size_t n)
{
    for (size_t i = 0; ex && i < n; i++) {
        free(ex[i].prompt);
        free(ex[i].answer);
    }
    free(ex);
}

static int encode_examples(t2_engine *e, const t2_example *in, size_t n, encoded_example **out,
                           t2_err *err)
{
    encoded_example *ex = calloc(n, sizeof *ex);
    if (!ex)
        return t2_err_set(err, "out of memory");
    int32_t eos = t2_tok_eos(e->model->tok);
    if (eos < 0 && e->model->cfg.n_eos)
        eos = e->model->cfg.eos_ids[0];
    for (size_t i = 0; i < n; i++) {
        t2_chat_msg msg = {"user", in[i].question};
        ex[i].answer_text = in[i].answer;
        size_t alen = strlen(in[i].answer);
        int rc = t2_engine_chat_ids(e, &msg, 1, &ex[i].prompt, &ex[i].n_prompt, err);
        if (rc == 0)
            rc = t2_tok_encode(e->model->tok, in[i].answer, alen, false, false, &ex[i].answer,
                               &ex[i].n_answer, err);
        if (rc == 0) {
            int32_t *p = realloc(ex[i].answer, (ex[i].n_answer + 1) * sizeof *p);
            if (!p)
                rc = t2_err_set(err, "out of memory");
            else {
                ex[i].answer = p;
                if (eos >= 0)
                    p[ex[i].n_answer++] = eos;
            }
        }
        if (rc == 0 && ex[i].n_answer == 0)
            rc = t2_err_set(err, "example %zu: empty answer", i);
        if (rc != 0) {
            free_examples(ex, n);
            return t2_err_prefix(err, "few-shot example");
        }
    }
    *out = ex;
    return 0;
}

static int collect_experts(t2_engine *e, const char **names, size_t n_names, t2_expert ***out,
                           size_t *k, int *err_code, t2_err *err)
{
    *out = NULL;
    *k = 0;
    if (!e->experts) {
        *err_code = 422;
        return t2_err_set(err, "no experts are loaded");
    }
    t2_expert **list = NULL;
    size_t n = 0;
    if (n_names == 0) {
        n = t2_store_list(e->experts, &list);
        size_t kept = 0;
        for (size_t i = 0; i < n; i++) {
            if (strcmp(list[i]->task, "cls") == 0)
                t2_expert_unref(list[i]);
            else
                list[kept++] = list[i];
        }
        n = kept;
    } else {
        list = calloc(n_names, sizeof *list);
        for (size_t i = 0; list && i < n_names; i++) {
            list[i] = t2_store_get(e->experts, names[i]);
            if (!list[i]) {
                for (size_t j = 0; j < i; j++)
                    t2_expert_unref(list[j]);
                free(list);
                *err_code = 404;
                return t2_err_set(err, "unknown expert '%s'", names[i]);
            }
            n++;
        }
    }
    if (n == 0) {
        free(list);
        *err_code = 422;
        return t2_err_set(err, "no experts to mix");
    }
    *out = list;
    *k = n;
    return 0;
}

/* ---- the search ---- */

typedef struct candidate {
    float *alpha;
    double acc, ll;
} candidate;

static int better(const candidate *a, const candidate *b)
{
    return a->acc > b->acc || (a->acc == b->acc && a->ll > b->ll);
}

static int cmp_candidates(const void *x, const void *y)
{
    const candidate *a = x, *b = y;
    return better(a, b) ? -1 : better(b, a) ? 1 : 0;
}

static int run_cem(search *s, const t2_cem_opts *o, float *best_alpha, double *best_acc,
                   double *best_ll, t2_err *err)
{
    size_t k = s->k, pop = (size_t)o->population;
    size_t n_elite = (size_t)floor((double)pop * o->elite_ratio);
    if (n_elite < 1)
        n_elite = 1;
    float *mean = malloc(k * sizeof *mean), *std = malloc(k * sizeof *std);
    float *alphas = malloc(pop * k * sizeof *alphas);
    candidate *c = malloc(pop * sizeof *c);
    if (!mean || !std || !alphas || !c) {
        free(mean);
        free(std);
        free(alphas);
        free(c);
        return t2_err_set(err, "out of memory");
    }
    uint64_t rng = o->seed;
    for (size_t j = 0; j < k; j++) {
        mean[j] = 1.0f / (float)k;
        std[j] = o->init_std;
    }
    bool have_best = false;
    int rc = 0;
    for (int g = 0; g < o->generations && rc == 0; g++) {
        for (size_t i = 0; i < pop; i++) {
            c[i].alpha = alphas + i * k;
            for (size_t j = 0; j < k; j++) {
                double a = mean[j] + std[j] * rng_normal(&rng);
                c[i].alpha[j] = (float)(a < 0 ? 0 : a > 1 ? 1 : a);
            }
        }
        size_t first = 0;
        if (have_best) { /* the best so far stays in the population */
            memcpy(c[0].alpha, best_alpha, k * sizeof *best_alpha);
            c[0].acc = *best_acc;
            c[0].ll = *best_ll;
            first = 1;
        }
        for (size_t i = first; i < pop && rc == 0; i++)
            rc = evaluate(s, c[i].alpha, &c[i].acc, &c[i].ll, err);
        if (rc != 0)
            break;
        qsort(c, pop, sizeof *c, cmp_candidates);
        if (!have_best || better(&c[0], &(candidate){best_alpha, *best_acc, *best_ll})) {
            memmove(best_alpha, c[0].alpha, k * sizeof *best_alpha);
            *best_acc = c[0].acc;
            *best_ll = c[0].ll;
            have_best = true;
        }
        for (size_t j = 0; j < k; j++) {
            double mu = 0.0, var = 0.0;
            for (size_t i = 0; i < n_elite; i++)
                mu += c[i].alpha[j];
            mu /= (double)n_elite;
            for (size_t i = 0; i < n_elite; i++)
                var += (c[i].alpha[j] - mu) * (c[i].alpha[j] - mu);
            mean[j] = (float)mu;
            std[j] = (float)sqrt(var / (double)n_elite);
        }
        if (o->progress)
            o->progress(o->user, g + 1, o->generations, *best_acc, *best_ll);
    }
    free(mean);
    free(std);
    free(alphas);
    free(c);
    return rc;
}

static int check_opts(const t2_cem_opts *o, size_t n_ex, t2_err *err)
{
    if (n_ex == 0)
        return t2_err_set(err, "few-shot search needs at least one example");
    if (n_ex > 1024)
        return t2_err_set(err, "at most 1024 few-shot examples");
    if (o->population < 2 || o->population > 1024)
        return t2_err_set(err, "population must be in [2, 1024]");
    if (o->generations < 1 || o->generations > 1000)
        return t2_err_set(err, "generations must be in [1, 1000]");
    if (!(o->elite_ratio > 0 && o->elite_ratio <= 1))
        return t2_err_set(err, "elite_ratio must be in (0, 1]");
    if (!(o->init_std >= 0 && o->init_std <= 10))
        return t2_err_set(err, "init_std must be in [0, 10]");
    if (o->max_tokens < 1 || o->max_tokens > 64)
        return t2_err_set(err, "max_tokens for scoring must be in [1, 64]");
    return 0;
}

int t2_engine_few_shot(t2_engine *e, t2_ctx *ctx, const t2_example *ex, size_t n_ex,
                       const char **names, size_t n_names, const t2_cem_opts *o, t2_cem_result *res,
                       int *err_code, t2_err *err)
{
    memset(res, 0, sizeof *res);
    *err_code = 422;
    if (check_opts(o, n_ex, err) != 0)
        return -1;
    double t0 = t2_now_ms();
    search s = {.e = e, .n_ex = n_ex, .max_tokens = o->max_tokens};
    if (collect_experts(e, names, n_names, &s.experts, &s.k, err_code, err) != 0)
        return -1;
    int rc = encode_examples(e, ex, n_ex, &s.ex, err);
    s.n_seq = n_ex < CEM_SEQS ? (int)n_ex : CEM_SEQS;
    s.last = malloc((size_t)s.n_seq * (size_t)e->model->cfg.vocab * sizeof *s.last);
    res->alpha = calloc(s.k, sizeof *res->alpha);
    res->experts = calloc(s.k, sizeof *res->experts);
    if (rc == 0 && (!s.last || !res->alpha || !res->experts))
        rc = t2_err_set(err, "out of memory");
    size_t longest = 0;
    for (size_t i = 0; rc == 0 && i < n_ex; i++) {
        size_t need = s.ex[i].n_prompt + s.ex[i].n_answer + (size_t)o->max_tokens + 1;
        if (need >= (size_t)t2_ctx_n_ctx(ctx))
            rc = t2_err_set(err, "few-shot example %zu is too long for the context", i);
        longest = need > longest ? need : longest;
    }
    /* the group's contexts: the caller's, then more on its pool (the
     * caller's thread's), each for the longest example */
    s.seq[0] = ctx;
    for (int j = 1; rc == 0 && j < s.n_seq; j++)
        rc = t2_ctx_create(&s.seq[j], e->model, t2_ctx_pool(ctx), (int)longest + 1, err);
    double ll;
    if (rc == 0)
        rc = evaluate(&s, NULL, &res->base_accuracy, &ll, err);
    if (rc == 0)
        rc = run_cem(&s, o, res->alpha, &res->accuracy, &res->mean_loglik, err);
    res->n = s.k;
    for (size_t i = 0; i < s.k; i++) {
        if (res->experts)
            res->experts[i] = strdup(s.experts[i]->name);
        t2_expert_unref(s.experts[i]);
    }
    free(s.experts);
    free_examples(s.ex, n_ex);
    free(s.last);
    for (int j = 1; j < s.n_seq; j++)
        t2_ctx_free(s.seq[j]);
    t2_ctx_truncate(ctx, 0);
    res->evaluations = s.evaluations;
    res->ms = t2_now_ms() - t0;
    if (rc != 0) {
        t2_cem_result_clear(res);
        *err_code = 500;
        return -1;
    }
    *err_code = 0;
    return 0;
}
