/* Pass-1 decisions: copied out of the scheduler's callback, rendered as the
 * "adaptation" object. */
#include <stdlib.h>
#include <string.h>

#include "api_json.h"
#include "api_render.h"

void t2_api_decision_free(t2_api_decision *d)
{
    for (size_t i = 0; i < d->n_labels; i++)
        free(d->labels[i]);
    for (size_t i = 0; i < d->n_terms; i++)
        free(d->experts[i]);
    free(d->labels);
    free(d->probs);
    free(d->experts);
    free(d->alpha);
    free(d->raw_answer);
    memset(d, 0, sizeof *d);
}

int t2_api_decision_copy(t2_api_decision *dst, const t2_decision *src)
{
    memset(dst, 0, sizeof *dst);
    dst->strategy = src->strategy;
    memcpy(dst->label, src->label, sizeof dst->label);
    dst->label[sizeof dst->label - 1] = '\0';
    dst->pass1_ms = src->pass1_ms;
    dst->pass1_tokens = src->pass1_tokens;
    dst->pass1_cached_tokens = src->pass1_cached_tokens;
    size_t nl = src->labels && src->probs ? src->n_labels : 0, nt = src->mixture.n;
    dst->labels = calloc(nl + 1, sizeof *dst->labels);
    dst->probs = calloc(nl + 1, sizeof *dst->probs);
    dst->experts = calloc(nt + 1, sizeof *dst->experts);
    dst->alpha = calloc(nt + 1, sizeof *dst->alpha);
    bool ok = dst->labels && dst->probs && dst->experts && dst->alpha;
    for (size_t i = 0; ok && i < nl; i++) {
        ok = (dst->labels[i] = strdup(src->labels[i])) != NULL;
        dst->probs[i] = src->probs[i];
        dst->n_labels = i + 1;
    }
    for (size_t i = 0; ok && i < nt; i++) {
        ok = (dst->experts[i] = strdup(src->mixture.terms[i].expert->name)) != NULL;
        dst->alpha[i] = src->mixture.terms[i].alpha;
        dst->n_terms = i + 1;
    }
    if (ok && src->raw_answer)
        ok = (dst->raw_answer = strdup(src->raw_answer)) != NULL;
    if (!ok) {
        t2_api_decision_free(dst);
        return -1;
    }
    return 0;
}

json_t *t2_api_text(const char *s, size_t len)
{
    json_t *j = json_stringn(s, len);
    if (j || !s)
        return j;
    char *copy = malloc(len + 1);
    if (!copy)
        return NULL;
    memcpy(copy, s, len);
    copy[len] = '\0';
    t2_api_utf8_sanitize(copy); /* also stops at an embedded NUL */
    j = json_string(copy);
    free(copy);
    return j;
}

json_t *t2_api_decision_json(const t2_api_decision *d, double pass2_ms)
{
    json_t *probs = json_object(), *alpha = json_object(), *root = json_object();
    if (!probs || !alpha || !root) {
        json_decref(probs);
        json_decref(alpha);
        json_decref(root);
        return NULL;
    }
    for (size_t i = 0; i < d->n_labels; i++)
        json_object_set_new(probs, d->labels[i], json_real(d->probs[i]));
    for (size_t i = 0; i < d->n_terms; i++)
        json_object_set_new(alpha, d->experts[i], json_real(d->alpha[i]));
    json_object_set_new(root, "strategy", json_string(t2_strategy_name(d->strategy)));
    json_object_set_new(root, "label",
                        d->label[0] ? t2_api_text(d->label, strlen(d->label)) : json_null());
    json_object_set_new(root, "probabilities", probs);
    json_object_set_new(root, "alpha", alpha);
    json_object_set_new(root, "pass1_ms", json_real(d->pass1_ms));
    json_object_set_new(root, "pass2_ms", pass2_ms >= 0 ? json_real(pass2_ms) : json_null());
    json_object_set_new(root, "pass1_tokens", json_integer(d->pass1_tokens));
    json_object_set_new(root, "pass1_cached_tokens", json_integer(d->pass1_cached_tokens));
    if (d->raw_answer)
        json_object_set_new(root, "raw_answer", t2_api_text(d->raw_answer, strlen(d->raw_answer)));
    return root;
}
