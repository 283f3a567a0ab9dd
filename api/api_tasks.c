/* /v1/classify and /v1/adapt requests and responses. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api_json.h"
#include "api_tasks.h"

int t2_api_parse_classify(const char *body, size_t len, const t2_api_limits *lim, t2_api_gen_req *r,
                          t2_api_err *e)
{
    memset(r, 0, sizeof *r);
    if (t2_api_parse_body(body, len, &r->root, e) != 0)
        return -1;
    json_t *root = r->root;
    static const char *const allowed[] = {"prompt", "messages", "strategy", "method", NULL};
    if (t2_api_only_fields(root, allowed, NULL, e) != 0)
        return -1;
    if (t2_api_parse_prompt_or_messages(root, r, e) != 0)
        return -1;
    const char *strategy = "prompt", *method = NULL;
    if (t2_api_get_str(root, "strategy", NULL, 32, &strategy, NULL, e) < 0 ||
        t2_api_get_str(root, "method", NULL, 32, &method, NULL, e) < 0)
        return -1;
    r->adapt.method = lim->default_method;
    if (strcmp(strategy, "prompt") == 0)
        r->adapt.strategy = T2_STRATEGY_PROMPT;
    else if (strcmp(strategy, "classifier") == 0)
        r->adapt.strategy = T2_STRATEGY_CLASSIFIER;
    else
        return t2_api_fail(e, 422, "invalid_value", "strategy",
                           "'strategy' must be prompt or classifier");
    if (method && t2_cls_method_parse(method, &r->adapt.method) != 0)
        return t2_api_fail(e, 422, "invalid_value", "method",
                           "'method' must be likelihood or generate");
    r->adapt_explicit = true;
    return 0;
}

json_t *t2_api_classify_json(const t2_api_decision *d, enum t2_cls_method method)
{
    json_t *probs = json_object();
    if (!probs)
        return NULL;
    for (size_t i = 0; i < d->n_labels; i++)
        json_object_set_new(probs, d->labels[i], json_real(d->probs[i]));
    json_t *o = json_pack("{s:o, s:o, s:s, s:s, s:f, s:i, s:i}", "label",
                          t2_api_text(d->label, strlen(d->label)), "probabilities", probs,
                          "strategy", t2_strategy_name(d->strategy), "method",
                          t2_cls_method_name(method), "pass1_ms", d->pass1_ms, "pass1_tokens",
                          d->pass1_tokens, "pass1_cached_tokens", d->pass1_cached_tokens);
    if (o && d->raw_answer)
        json_object_set_new(o, "raw_answer", t2_api_text(d->raw_answer, strlen(d->raw_answer)));
    return o;
}

void t2_api_adapt_req_free(t2_api_adapt_req *r)
{
    free(r->examples);
    free(r->experts);
    json_decref(r->root);
    memset(r, 0, sizeof *r);
}

static int parse_examples(json_t *arr, t2_api_adapt_req *r, t2_api_err *e)
{
    if (!json_is_array(arr))
        return t2_api_fail(e, 422, arr ? "invalid_type" : "missing_field", "examples",
                           "'examples' must be an array of {question, answer} objects");
    size_t n = json_array_size(arr);
    if (n == 0 || n > T2_API_MAX_EXAMPLES)
        return t2_api_fail(e, 422, "invalid_value", "examples",
                           "'examples' must hold 1 to %d examples", T2_API_MAX_EXAMPLES);
    r->examples = calloc(n, sizeof *r->examples);
    if (!r->examples)
        return t2_api_fail(e, 500, NULL, NULL, "out of memory");
    static const char *const fields[] = {"question", "answer", NULL};
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_array_get(arr, i);
        char f[48];
        snprintf(f, sizeof f, "examples[%zu]", i);
        if (!json_is_object(x))
            return t2_api_fail(e, 422, "invalid_type", f,
                               "'%s' must be a {question, answer} object", f);
        size_t ql = 0, al = 0;
        const char *q = NULL, *a = NULL;
        if (t2_api_only_fields(x, fields, f, e) != 0 ||
            t2_api_get_str(x, "question", f, 1 << 16, &q, &ql, e) < 0 ||
            t2_api_get_str(x, "answer", f, 1 << 12, &a, &al, e) < 0)
            return -1;
        if (!q || ql == 0 || !a || al == 0)
            return t2_api_fail(e, 422, "missing_field", f,
                               "'%s' needs a non-empty question and answer", f);
        r->examples[i] = (t2_example){q, a};
    }
    r->n_examples = n;
    return 0;
}

static int parse_expert_names(json_t *arr, t2_api_adapt_req *r, t2_api_err *e)
{
    if (!arr || json_is_null(arr))
        return 0;
    if (!json_is_array(arr) || json_array_size(arr) == 0 || json_array_size(arr) > 64)
        return t2_api_fail(e, 422, "invalid_value", "experts",
                           "'experts' must be an array of 1 to 64 expert names");
    r->experts = calloc(json_array_size(arr), sizeof *r->experts);
    if (!r->experts)
        return t2_api_fail(e, 500, NULL, NULL, "out of memory");
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const char *name = json_string_value(json_array_get(arr, i));
        if (!name || !t2_expert_name_valid(name)) {
            char f[32];
            snprintf(f, sizeof f, "experts[%zu]", i);
            return t2_api_fail(e, 422, "invalid_value", f,
                               "'%s' must be an expert name ([A-Za-z0-9._-]{1,64})", f);
        }
        r->experts[r->n_experts++] = name;
    }
    return 0;
}

int t2_api_parse_adapt(const char *body, size_t len, t2_api_adapt_req *r, t2_api_err *e)
{
    memset(r, 0, sizeof *r);
    t2_cem_opts_defaults(&r->cem);
    if (t2_api_parse_body(body, len, &r->root, e) != 0)
        return -1;
    json_t *root = r->root;
    static const char *const allowed[] = {"name",       "examples", "experts", "generations",
                                          "population", "seed",     NULL};
    if (t2_api_only_fields(root, allowed, NULL, e) != 0)
        return -1;
    if (t2_api_get_str(root, "name", NULL, 64, &r->name, NULL, e) < 0)
        return -1;
    if (!r->name)
        return t2_api_fail(e, 422, "missing_field", "name",
                           "'name' (the profile to store) is required");
    if (!t2_expert_name_valid(r->name))
        return t2_api_fail(e, 422, "invalid_value", "name",
                           "'name' must match [A-Za-z0-9._-]{1,64} (not starting with a dot)");
    long long gens = r->cem.generations, pop = r->cem.population, seed = (long long)r->cem.seed;
    if (parse_examples(json_object_get(root, "examples"), r, e) != 0 ||
        parse_expert_names(json_object_get(root, "experts"), r, e) != 0 ||
        t2_api_get_int(root, "generations", NULL, 1, 1000, &gens, e) < 0 ||
        t2_api_get_int(root, "population", NULL, 2, 4096, &pop, e) < 0 ||
        t2_api_get_int(root, "seed", NULL, 0, INT64_MAX, &seed, e) < 0)
        return -1;
    r->cem.generations = (int)gens;
    r->cem.population = (int)pop;
    r->cem.seed = (uint64_t)seed;
    return 0;
}

/* jansson refuses NaN and infinities: those become null */
static json_t *num(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

json_t *t2_api_adapt_json(const t2_profile *p, const t2_cem_result *res)
{
    json_t *o = t2_api_profile_json(p), *s = json_object();
    if (!o || !s) {
        json_decref(o);
        json_decref(s);
        return NULL;
    }
    json_object_set_new(s, "accuracy", num(res->accuracy));
    json_object_set_new(s, "base_accuracy", num(res->base_accuracy));
    json_object_set_new(s, "mean_loglik", num(res->mean_loglik));
    json_object_set_new(s, "evaluations", json_integer(res->evaluations));
    json_object_set_new(s, "ms", num(res->ms));
    json_object_set_new(o, "search", s);
    return o;
}
