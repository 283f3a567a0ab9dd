/* Engine lifetime and the helpers shared by pass 1 and pass 2. */
#include "engine.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"

void t2_engine_opts_defaults(t2_engine_opts *o)
{
    memset(o, 0, sizeof *o);
    o->svf_set = T2_SVF_MLP;
    o->adapted_cache_mb = 512;
    o->materialise_min_tokens = T2_MATERIALISE_MIN_TOKENS;
}

static void log_msg(const t2_engine_opts *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void log_msg(const t2_engine_opts *o, const char *fmt, ...)
{
    if (!o->log)
        return;
    char buf[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    o->log(o->log_user, buf);
}

typedef struct progress_state {
    const t2_engine_opts *o;
    double last_report;
} progress_state;

static void svd_progress(void *user, size_t done, size_t total, double elapsed)
{
    progress_state *p = user;
    if (done != total && elapsed - p->last_report < 2.0 && done != 1)
        return;
    p->last_report = elapsed;
    double left = done ? elapsed / (double)done * (double)(total - done) : 0.0;
    log_msg(p->o, "SVD %zu/%zu matrices, %.1f s elapsed, ~%.1f s left", done, total, elapsed, left);
}

static void store_warn(void *user, const char *msg)
{
    log_msg(user, "warning: %s", msg);
}

int t2_engine_open(t2_engine **out, const t2_engine_opts *o, t2_err *err)
{
    *out = NULL;
    t2_engine *e = calloc(1, sizeof *e);
    if (!e)
        return t2_err_set(err, "out of memory");
    e->policy.materialise_min_tokens =
        o->materialise_min_tokens > 0 ? o->materialise_min_tokens : T2_MATERIALISE_MIN_TOKENS;
    e->classify_prompt =
        strdup(o->classify_prompt ? o->classify_prompt : T2_DEFAULT_CLASSIFY_PROMPT);
    progress_state ps = {o, 0.0};
    size_t rejected = 0;
    int rc = e->classify_prompt ? 0 : t2_err_set(err, "out of memory");
    if (rc == 0)
        rc = t2_model_load_as(&e->model, o->model_path, o->weights, err);
    if (rc == 0) {
        e->model->kv_f16 = o->kv_f16;
        log_msg(o, "model %s: %d layers, hidden %d, vocab %d, K/V cache %s", e->model->name,
                e->model->cfg.n_layers, e->model->cfg.hidden, e->model->cfg.vocab,
                t2_kv_cache_name(o->kv_f16));
    }
    if (rc == 0)
        rc = t2_pool_create(&e->pool, o->threads, err);
    /* the factors are only needed to apply experts */
    if (rc == 0 && o->experts_dir)
        rc = t2_svf_build(&e->svf, e->model, o->svf_set ? o->svf_set : T2_SVF_MLP, o->svd_cache_dir,
                          svd_progress, &ps, &e->svf_stats, err);
    if (rc == 0 && e->svf)
        rc = t2_adapt_attach_base(e->model, e->svf, &e->base_views, err);
    if (rc == 0 && e->svf)
        log_msg(o, "SVF factors for %zu matrices (%s): %zu decomposed, %zu from cache, %.1f s",
                e->svf->n, t2_svf_set_name(e->svf->set), e->svf_stats.decomposed,
                e->svf_stats.from_cache, e->svf_stats.seconds);
    if (rc == 0 && e->svf && e->svf_stats.lock_wait_seconds >= 0.1)
        log_msg(o, "waited %.1f s for another process decomposing the same SVD cache file",
                e->svf_stats.lock_wait_seconds);
    if (rc == 0 && e->svf && e->svf_stats.cache_error[0])
        log_msg(o, "warning: SVD cache not written: %s", e->svf_stats.cache_error);
    if (rc == 0 && o->experts_dir) {
        rc = t2_store_open(&e->experts, o->experts_dir, e->svf, e->model->name, store_warn,
                           (void *)o, &rejected, err);
        if (rc == 0 && rejected)
            log_msg(o, "%zu expert file(s) rejected", rejected);
    }
    if (rc == 0 && o->profiles_dir)
        rc = t2_profiles_open(&e->profiles, o->profiles_dir, err);
    if (rc == 0)
        rc = t2_adapt_cache_create(&e->cache, o->adapted_cache_mb << 20, err);
    /* a set the cache cannot keep would be built again for every job */
    size_t set_bytes = rc == 0 && e->svf ? t2_adapted_max_bytes(e->model, e->svf) : 0;
    e->sets_fit = rc == 0 && e->svf && set_bytes <= t2_adapt_cache_capacity(e->cache);
    if (e->sets_fit)
        log_msg(o,
                "a mixture not in the cache is materialised after %d tokens on its factored form",
                e->policy.materialise_min_tokens);
    else if (rc == 0 && e->svf)
        log_msg(o,
                "a materialised weight set (%zu MB) does not fit adapted_cache_mb (%zu MB): "
                "t2 serve runs mixtures on their factored form",
                set_bytes >> 20, o->adapted_cache_mb);
    if (rc != 0) {
        t2_engine_free(e);
        return -1;
    }
    *out = e;
    return 0;
}

void t2_engine_free(t2_engine *e)
{
    if (!e)
        return;
    t2_adapt_cache_free(e->cache);
    if (e->profiles)
        t2_profiles_free(e->profiles);
    if (e->experts)
        t2_store_free(e->experts);
    t2_svf_free(e->svf);
    free(e->base_views);
    t2_pool_free(e->pool);
    t2_model_free(e->model);
    free(e->classify_prompt);
    free(e);
}

const char *t2_strategy_name(enum t2_strategy s)
{
    static const char *names[] = {"none",       "expert",   "mixture", "prompt",
                                  "classifier", "few_shot", "profile"};
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "unknown";
}

int t2_strategy_parse(const char *name, enum t2_strategy *out)
{
    for (int s = T2_STRATEGY_NONE; s <= T2_STRATEGY_PROFILE; s++)
        if (strcmp(name, t2_strategy_name((enum t2_strategy)s)) == 0) {
            *out = (enum t2_strategy)s;
            return 0;
        }
    return -1;
}

const char *t2_cls_method_name(enum t2_cls_method m)
{
    return m == T2_CLS_GENERATE ? "generate" : "likelihood";
}

int t2_cls_method_parse(const char *name, enum t2_cls_method *out)
{
    if (strcmp(name, "likelihood") == 0)
        *out = T2_CLS_LIKELIHOOD;
    else if (strcmp(name, "generate") == 0)
        *out = T2_CLS_GENERATE;
    else
        return -1;
    return 0;
}

void t2_decision_clear(t2_decision *d)
{
    for (size_t i = 0; i < d->n_labels; i++)
        free(d->labels[i]);
    free(d->labels);
    free(d->probs);
    free(d->raw_answer);
    t2_mixture_clear(&d->mixture);
    memset(d, 0, sizeof *d);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

size_t t2_engine_labels(t2_engine *e, char ***out)
{
    *out = NULL;
    t2_expert **list = NULL;
    size_t n = e->experts ? t2_store_list(e->experts, &list) : 0;
    char **labels = calloc(n + 2, sizeof *labels);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *task = list[i]->task;
        bool dup = strcmp(task, "cls") == 0 || strcmp(task, "other") == 0;
        for (size_t j = 0; j < k && !dup; j++)
            dup = strcmp(labels[j], task) == 0;
        if (labels && !dup)
            labels[k++] = strdup(task);
        t2_expert_unref(list[i]);
    }
    free(list);
    if (!labels)
        return 0;
    qsort(labels, k, sizeof *labels, cmp_str);
    labels[k++] = strdup("other");
    *out = labels;
    return k;
}

/* The rendered conversation is encoded with special tokens parsed (the
 * template's markup needs them), so a message must not smuggle in the
 * text of one: "<|im_end|>" inside a user message would end the turn. */
static int reject_special_text(const t2_tokenizer *tok, const t2_chat_msg *m, t2_err *err)
{
    int32_t *ids = NULL;
    size_t n = 0;
    if (t2_tok_encode(tok, m->content, strlen(m->content), false, true, &ids, &n, err) != 0)
        return -1;
    int32_t bad = -1;
    for (size_t i = 0; i < n && bad < 0; i++)
        if (t2_tok_is_special(tok, ids[i]))
            bad = ids[i];
    free(ids);
    if (bad < 0)
        return 0;
    char text[128];
    int k = t2_tok_token_bytes(tok, bad, text, sizeof text - 1);
    text[k > 0 ? k : 0] = '\0';
    return t2_err_set(err, "%s message contains the special token text '%s'", m->role, text);
}

int t2_engine_chat_ids(t2_engine *e, const t2_chat_msg *msgs, size_t n, int32_t **ids,
                       size_t *n_ids, t2_err *err)
{
    const t2_tokenizer *tok = e->model->tok;
    bool known;
    enum t2_chat_format f = t2_chat_detect(t2_tok_chat_template(tok), &known);
    char bos_text[256] = "";
    int bos = t2_tok_bos(tok);
    if (bos >= 0 && f != T2_CHAT_CHATML) {
        int k = t2_tok_token_bytes(tok, bos, bos_text, sizeof bos_text - 1);
        bos_text[k > 0 ? k : 0] = '\0';
    }
    for (size_t i = 0; i < n; i++)
        if (reject_special_text(tok, &msgs[i], err) != 0)
            return -1;
    char *text;
    if (t2_chat_render(f, msgs, n, true, bos_text, &text, err) != 0)
        return -1;
    int rc = t2_tok_encode(tok, text, strlen(text), false, true, ids, n_ids, err);
    free(text);
    return rc;
}

int t2_engine_weights(t2_engine *e, const t2_mixture *mx, int max_tokens, t2_adapted **out,
                      t2_err *err)
{
    return t2_engine_weights_on(e, mx, max_tokens, e->pool, out, err);
}

int t2_engine_weights_on(t2_engine *e, const t2_mixture *mx, int max_tokens, t2_pool *pool,
                         t2_adapted **out, t2_err *err)
{
    return t2_adapt_weights(out, e->model, e->svf, mx, e->cache, pool, &e->policy, max_tokens, err);
}

int t2_engine_weights_factored(t2_engine *e, const t2_mixture *mx, t2_adapted **out, t2_err *err)
{
    return t2_adapt_weights_factored(out, e->model, e->svf, mx, e->cache, err);
}

bool t2_answer_matches(const char *generated, const char *answer)
{
    while (*generated == ' ' || *generated == '\n' || *generated == '\t' || *generated == '\r')
        generated++;
    size_t n = strlen(generated);
    while (n && (generated[n - 1] == ' ' || generated[n - 1] == '\n' || generated[n - 1] == '\t' ||
                 generated[n - 1] == '\r'))
        n--;
    return strlen(answer) == n && strncmp(generated, answer, n) == 0;
}
