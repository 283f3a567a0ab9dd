/* Pass 1: turn a request's adaptation strategy into a mixture. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "clock.h"

#define CLS_MAX_TOKENS 16
/* the labels' answers are scored in one pass of at most this many rows */
#define MAX_BRANCH_TOKENS 128

static int fail(int *err_code, int code)
{
    *err_code = code;
    return -1;
}

static int add_named(t2_engine *e, t2_mixture *mx, const char *name, float alpha, int *err_code,
                     t2_err *err)
{
    t2_expert *x = e->experts ? t2_store_get(e->experts, name) : NULL;
    if (!x) {
        t2_err_set(err, "unknown expert '%s'", name);
        return fail(err_code, 404);
    }
    int rc = t2_mixture_add(mx, x, alpha, NULL, 0, err);
    t2_expert_unref(x);
    return rc == 0 ? 0 : fail(err_code, 500);
}

static int decide_mixture(t2_engine *e, const t2_adapt_req *req, t2_decision *d, int *err_code,
                          t2_err *err)
{
    if (req->n_mix == 0) {
        t2_err_set(err, "mixture needs at least one expert");
        return fail(err_code, 422);
    }
    for (size_t i = 0; i < req->n_mix; i++) {
        float a = req->mix_alpha[i];
        if (!isfinite(a) || fabsf(a) > 100.0f) {
            t2_err_set(err, "mixture weight of '%s' must be a finite number in [-100, 100]",
                       req->mix_names[i]);
            return fail(err_code, 422);
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(req->mix_names[i], req->mix_names[j]) == 0) {
                t2_err_set(err, "expert '%s' appears twice in the mixture", req->mix_names[i]);
                return fail(err_code, 422);
            }
        if (add_named(e, &d->mixture, req->mix_names[i], a, err_code, err) != 0)
            return -1;
    }
    return 0;
}

static int decide_profile(t2_engine *e, const char *name, t2_decision *d, int *err_code,
                          t2_err *err)
{
    t2_profile *p = e->profiles && name ? t2_profiles_get(e->profiles, name) : NULL;
    if (!p) {
        t2_err_set(err, "unknown profile '%s'", name ? name : "");
        return fail(err_code, 404);
    }
    int rc = 0;
    for (size_t i = 0; i < p->n && rc == 0; i++)
        rc = add_named(e, &d->mixture, p->experts[i], p->alpha[i], err_code, err);
    t2_profile_free(p);
    return rc;
}

/* ---- classification ---- */

/* The system prompt with {labels} and {descriptions} filled in. */
static char *classify_system(t2_engine *e, char **labels, size_t n)
{
    size_t cap = strlen(e->classify_prompt) + 64 + n * 600;
    char *lab = calloc(1, cap), *desc = calloc(1, cap), *out = calloc(1, 3 * cap);
    if (!lab || !desc || !out) {
        free(lab);
        free(desc);
        free(out);
        return NULL;
    }
    size_t ll = 0, dl = 0;
    for (size_t i = 0; i < n; i++) {
        ll += (size_t)snprintf(lab + ll, cap - ll, "%s'%s'",
                               i == 0 ? "" : (i + 1 == n ? " or " : ", "), labels[i]);
        t2_expert *x = e->experts && strcmp(labels[i], "other")
                           ? t2_store_find_task(e->experts, labels[i])
                           : NULL;
        const char *d = x && x->description && x->description[0] ? x->description
                        : strcmp(labels[i], "other") == 0        ? "anything else"
                                                                 : labels[i];
        dl += (size_t)snprintf(desc + dl, cap - dl, "%s- %s: %.500s", i ? "\n" : "", labels[i], d);
        if (x)
            t2_expert_unref(x);
    }
    /* substitute the two placeholders; everything else is literal */
    const char *s = e->classify_prompt;
    size_t ol = 0;
    while (*s && ol < 3 * cap - 1) {
        if (strncmp(s, "{labels}", 8) == 0) {
            ol += (size_t)snprintf(out + ol, 3 * cap - ol, "%s", lab);
            s += 8;
        } else if (strncmp(s, "{descriptions}", 14) == 0) {
            ol += (size_t)snprintf(out + ol, 3 * cap - ol, "%s", desc);
            s += 14;
        } else {
            out[ol++] = *s++;
        }
    }
    out[ol < 3 * cap ? ol : 3 * cap - 1] = '\0';
    free(lab);
    free(desc);
    return out;
}

/* The label inside the last \boxed{...}, if it is one of the labels. */
static const char *parse_boxed(const char *text, char **labels, size_t n)
{
    const char *p = NULL, *q = text;
    while ((q = strstr(q, "\\boxed{")) != NULL)
        p = q++;
    if (!p)
        return NULL;
    p += 7;
    const char *end = strchr(p, '}');
    if (!end)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (strlen(labels[i]) == (size_t)(end - p) && strncmp(p, labels[i], (size_t)(end - p)) == 0)
            return labels[i];
    return NULL;
}

/* Positions ctx after the longest prefix of ids whose KV it still holds
 * from an earlier pass 1 under the same weights (the classification
 * prompt's fixed system part, typically) and returns its length. */
static int reuse_prefix(t2_ctx *ctx, const t2_adapted *w, const int32_t *ids, size_t n,
                        t2_decision *d)
{
    const char *key = t2_adapted_key(w);
    int keep = key ? t2_ctx_reuse_prefix(ctx, key, ids, (int)n) : 0;
    d->pass1_cached_tokens += keep;
    return keep;
}

static int classify_generate(t2_engine *e, t2_ctx *ctx, const t2_adapted *w, const int32_t *ids,
                             size_t n_ids, t2_decision *d, t2_err *err)
{
    t2_gen_params gp;
    t2_gen_params_defaults(&gp);
    gp.max_tokens = CLS_MAX_TOKENS;
    t2_gen_result res;
    int keep = reuse_prefix(ctx, w, ids, n_ids, d);
    if (t2_generate(ctx, e->model, ids + keep, n_ids - (size_t)keep, &gp, NULL, NULL, &res, err) !=
        0)
        return -1;
    d->pass1_tokens = (int)n_ids - keep + res.n_tokens;
    const char *label = parse_boxed(res.text, d->labels, d->n_labels);
    if (!label)
        label = "other";
    snprintf(d->label, sizeof d->label, "%s", label);
    for (size_t i = 0; i < d->n_labels; i++)
        d->probs[i] = strcmp(d->labels[i], label) == 0 ? 1.0f : 0.0f;
    d->raw_answer = res.text;
    res.text = NULL;
    t2_gen_result_free(&res);
    return 0;
}

static int32_t turn_end_id(const t2_engine *e)
{
    int32_t eos = t2_tok_eos(e->model->tok);
    return eos >= 0 ? eos : (e->model->cfg.n_eos ? e->model->cfg.eos_ids[0] : -1);
}

static int label_answer_ids(t2_engine *e, const char *label, int32_t **ids, size_t *n, t2_err *err)
{
    char text[128];
    snprintf(text, sizeof text, "\\boxed{%s}", label);
    if (t2_tok_encode(e->model->tok, text, strlen(text), false, false, ids, n, err) != 0)
        return -1;
    int32_t eos = turn_end_id(e);
    if (eos >= 0) {
        int32_t *p = realloc(*ids, (*n + 1) * sizeof *p);
        if (!p)
            return t2_err_set(err, "out of memory");
        p[(*n)++] = eos;
        *ids = p;
    }
    return 0;
}

/* The labels' answers as token ids, and how many leading ids all share
 * (at most one less than the shortest, so each keeps a token of its own). */
static int label_answers(t2_engine *e, const t2_decision *d, int32_t **ans, size_t *na,
                         size_t *common, t2_err *err)
{
    for (size_t i = 0; i < d->n_labels; i++) {
        if (label_answer_ids(e, d->labels[i], &ans[i], &na[i], err) != 0)
            return -1;
        if (na[i] == 0)
            return t2_err_set(err, "label '%s' encodes to nothing", d->labels[i]);
    }
    size_t c = na[0] - 1;
    for (size_t i = 1; i < d->n_labels; i++) {
        size_t k = 0;
        while (k < c && k + 1 < na[i] && ans[i][k] == ans[0][k])
            k++;
        c = k;
    }
    *common = c;
    return 0;
}

/* Scores every label's answer as a continuation of the prompt. The
 * answers' shared beginning ("\boxed{") adds the same log-probability to
 * every label, so it is evaluated once with the prompt and not scored;
 * the rest of all answers runs as independent branches in one pass. */
static int classify_likelihood(t2_engine *e, t2_ctx *ctx, const t2_adapted *w, const int32_t *ids,
                               size_t n_ids, t2_decision *d, t2_err *err)
{
    int V = e->model->cfg.vocab;
    size_t nl = d->n_labels, common = 0, n_seq = 0, n_br = 0;
    int32_t **ans = calloc(nl, sizeof *ans);
    size_t *na = calloc(nl, sizeof *na);
    int *lens = calloc(nl, sizeof *lens);
    double *lp = calloc(nl, sizeof *lp);
    int32_t *seq = NULL, *br = NULL;
    float *last = malloc((size_t)V * sizeof *last);
    int rc = !ans || !na || !lens || !lp || !last ? t2_err_set(err, "out of memory") : 0;
    if (rc == 0)
        rc = label_answers(e, d, ans, na, &common, err);
    for (size_t i = 0; rc == 0 && i < nl; i++)
        n_br += na[i] - common - 1;
    if (rc == 0 && n_ids + common + n_br + 1 >= (size_t)t2_ctx_n_ctx(ctx))
        rc = t2_err_set(err, "prompt of %zu tokens is too long to classify (context %d)", n_ids,
                        t2_ctx_n_ctx(ctx));
    if (rc == 0 && n_br > MAX_BRANCH_TOKENS)
        rc = t2_err_set(err, "the labels' answers are too long to score (%zu tokens)", n_br);
    if (rc == 0) {
        n_seq = n_ids + common;
        seq = malloc(n_seq * sizeof *seq);
        br = malloc((n_br + 1) * sizeof *br);
        rc = !seq || !br ? t2_err_set(err, "out of memory") : 0;
    }
    const float *out = NULL;
    if (rc == 0) { /* the prompt and the shared beginning of the answers */
        memcpy(seq, ids, n_ids * sizeof *seq);
        memcpy(seq + n_ids, ans[0], common * sizeof *seq);
        int keep = reuse_prefix(ctx, w, seq, n_seq, d);
        d->pass1_tokens = (int)n_seq - keep;
        rc = t2_forward(ctx, seq + keep, (int)n_seq - keep, false, &out, err);
    }
    if (rc == 0) {
        memcpy(last, out, (size_t)V * sizeof *last);
        size_t k = 0; /* branch i: its answer's own ids but the last */
        for (size_t i = 0; i < nl; i++) {
            lens[i] = (int)(na[i] - common - 1);
            memcpy(br + k, ans[i] + common, (size_t)lens[i] * sizeof *br);
            k += (size_t)lens[i];
        }
        d->pass1_tokens += (int)n_br;
        if (n_br > 0)
            rc = t2_forward_branches(ctx, br, lens, (int)nl, &out, err);
    }
    for (size_t i = 0, row = 0; rc == 0 && i < nl; i++) {
        const int32_t *a = ans[i] + common;
        lp[i] = t2_log_softmax_at(last, V, a[0]);
        for (int t = 0; t < lens[i]; t++, row++)
            lp[i] += t2_log_softmax_at(out + row * (size_t)V, V, a[t + 1]);
    }
    if (rc == 0) {
        size_t best = 0;
        double mx = lp[0], sum = 0.0;
        for (size_t i = 1; i < nl; i++)
            if (lp[i] > mx) {
                mx = lp[i];
                best = i;
            }
        for (size_t i = 0; i < nl; i++)
            sum += exp(lp[i] - mx);
        for (size_t i = 0; i < nl; i++)
            d->probs[i] = (float)(exp(lp[i] - mx) / sum);
        snprintf(d->label, sizeof d->label, "%s", d->labels[best]);
    }
    for (size_t i = 0; ans && i < nl; i++)
        free(ans[i]);
    free(ans);
    free(na);
    free(lens);
    free(lp);
    free(seq);
    free(br);
    free(last);
    return rc;
}

/* The text with every special token's text removed (malloc'd). */
static char *plain_text(t2_engine *e, const char *text, t2_err *err)
{
    int32_t *ids = NULL;
    size_t n = 0;
    if (t2_tok_encode(e->model->tok, text, strlen(text), false, true, &ids, &n, err) != 0)
        return NULL;
    size_t kept = 0;
    for (size_t i = 0; i < n; i++)
        if (!t2_tok_is_special(e->model->tok, ids[i]))
            ids[kept++] = ids[i];
    char *out = NULL;
    size_t len;
    int rc = t2_tok_decode(e->model->tok, ids, kept, true, &out, &len, err);
    free(ids);
    return rc == 0 ? out : NULL;
}

static int pass1_weights(t2_engine *e, t2_pool *pool, bool classifier, t2_adapted **w,
                         int *err_code, t2_err *err)
{
    *w = NULL;
    if (!classifier)
        return 0;
    t2_expert *cls = e->experts ? t2_store_find_task(e->experts, "cls") : NULL;
    if (!cls) {
        t2_err_set(err, "no classification expert (an expert with task 'cls') is loaded");
        return fail(err_code, 404);
    }
    t2_mixture mx = {0};
    int rc = t2_mixture_add(&mx, cls, 1.0f, NULL, 0, err);
    t2_expert_unref(cls);
    /* the classifier serves every request: materialise and cache it */
    if (rc == 0)
        rc = t2_engine_weights_on(e, &mx, 1 << 30, pool, w, err);
    t2_mixture_clear(&mx);
    return rc == 0 ? 0 : fail(err_code, 500);
}

static int decide_classify(t2_engine *e, t2_ctx *ctx, const t2_adapt_req *req, const char *question,
                           t2_decision *d, int *err_code, t2_err *err)
{
    d->n_labels = t2_engine_labels(e, &d->labels);
    d->probs = calloc(d->n_labels + 1, sizeof *d->probs);
    char *system = d->labels && d->probs ? classify_system(e, d->labels, d->n_labels) : NULL;
    if (!system) {
        t2_err_set(err, "out of memory");
        return fail(err_code, 500);
    }
    /* a raw prompt may carry chat markup: classify its text only */
    char *plain = plain_text(e, question, err);
    if (!plain) {
        free(system);
        return fail(err_code, 422);
    }
    t2_chat_msg msgs[2] = {{"system", system}, {"user", plain}};
    int32_t *ids = NULL;
    size_t n_ids = 0;
    t2_adapted *w = NULL;
    int rc = t2_engine_chat_ids(e, msgs, 2, &ids, &n_ids, err);
    free(system);
    free(plain);
    if (rc != 0)
        return fail(err_code, 422);
    if (n_ids + CLS_MAX_TOKENS + 8 >= (size_t)t2_ctx_n_ctx(ctx)) {
        free(ids);
        t2_err_set(err, "prompt of %zu tokens is too long to classify (context %d)", n_ids,
                   t2_ctx_n_ctx(ctx));
        return fail(err_code, 422);
    }
    if (pass1_weights(e, t2_ctx_pool(ctx), req->strategy == T2_STRATEGY_CLASSIFIER, &w, err_code,
                      err) != 0) {
        free(ids);
        return -1;
    }
    t2_ctx_truncate(ctx, 0); /* reuse_prefix moves it on when the record serves */
    t2_ctx_set_layers(ctx, w ? w->layers : NULL);
    rc = req->method == T2_CLS_GENERATE ? classify_generate(e, ctx, w, ids, n_ids, d, err)
                                        : classify_likelihood(e, ctx, w, ids, n_ids, d, err);
    t2_ctx_set_layers(ctx, NULL);
    t2_ctx_truncate(ctx, 0);
    t2_adapted_unref(w);
    free(ids);
    if (rc != 0)
        return fail(err_code, 500);
    if (strcmp(d->label, "other") == 0)
        return 0;
    t2_expert *x = t2_store_find_task(e->experts, d->label);
    if (!x) /* removed meanwhile: fall back to base weights */
        return 0;
    rc = t2_mixture_add(&d->mixture, x, 1.0f, NULL, 0, err);
    t2_expert_unref(x);
    return rc == 0 ? 0 : fail(err_code, 500);
}

int t2_engine_warm_pass1(t2_engine *e, t2_ctx *ctx, t2_err *err)
{
    /* an empty question: everything before the user's text is what the
     * next requests share */
    t2_adapt_req req = {.strategy = T2_STRATEGY_PROMPT, .method = T2_CLS_LIKELIHOOD};
    t2_decision d;
    int code;
    if (t2_engine_decide(e, ctx, &req, "", &d, &code, err) != 0)
        return -1;
    t2_decision_clear(&d);
    return 0;
}

int t2_engine_decide(t2_engine *e, t2_ctx *ctx, const t2_adapt_req *req, const char *question,
                     t2_decision *d, int *err_code, t2_err *err)
{
    memset(d, 0, sizeof *d);
    *err_code = 0;
    d->strategy = req->strategy;
    double t0 = t2_now_ms();
    int rc;
    switch (req->strategy) {
    case T2_STRATEGY_NONE: rc = 0; break;
    case T2_STRATEGY_EXPERT:
        rc = req->expert
                 ? add_named(e, &d->mixture, req->expert, 1.0f, err_code, err)
                 : (t2_err_set(err, "strategy 'expert' needs an expert name"), fail(err_code, 422));
        break;
    case T2_STRATEGY_MIXTURE: rc = decide_mixture(e, req, d, err_code, err); break;
    case T2_STRATEGY_PROFILE: rc = decide_profile(e, req->profile, d, err_code, err); break;
    case T2_STRATEGY_PROMPT:
    case T2_STRATEGY_CLASSIFIER:
        rc = decide_classify(e, ctx, req, question, d, err_code, err);
        break;
    default:
        t2_err_set(err, "strategy '%s' is not a per-request decision (use the few-shot search)",
                   t2_strategy_name(req->strategy));
        rc = fail(err_code, 422);
    }
    d->pass1_ms = t2_now_ms() - t0;
    if (rc != 0) {
        t2_decision_clear(d);
        return -1;
    }
    return 0;
}
