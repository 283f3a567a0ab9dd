/* Loading the engine on a libuv worker while the loop already answers
 * /health (and /ready with 503), then creating the scheduler. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "serve.h"

static void engine_log(void *user, const char *msg)
{
    t2_log_msg(user, T2_LOG_INFO, "%s", msg); /* loader thread: one write per line */
}

static void load_run(uv_work_t *w)
{
    t2_server *s = w->data;
    s->load_rc = t2_engine_open(&s->engine, &s->engine_opts, &s->load_err);
}

/* The default adaptation actually used: strategies that need experts fall
 * back to none when there are none. */
static const char *effective_default(t2_server *s)
{
    const char *d = s->conf->default_strategy;
    if (!s->engine->experts && strcmp(d, "none") != 0 && strncmp(d, "profile:", 8) != 0) {
        t2_log_msg(&s->log, T2_LOG_INFO, "no experts loaded: default strategy '%s' becomes 'none'",
                   d);
        return "none";
    }
    return d;
}

static void describe(t2_server *s)
{
    t2_engine *e = s->engine;
    t2_expert **list = NULL;
    size_t n = e->experts ? t2_store_list(e->experts, &list) : 0;
    char names[512] = "";
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (o < sizeof names)
            o +=
                (size_t)snprintf(names + o, sizeof names - o, "%s%s", i ? ", " : "", list[i]->name);
        t2_expert_unref(list[i]);
    }
    free(list);
    t2_profile **pl = NULL;
    size_t np = e->profiles ? t2_profiles_list(e->profiles, &pl) : 0;
    for (size_t i = 0; i < np; i++)
        t2_profile_free(pl[i]);
    free(pl);
    t2_log_msg(
        &s->log, T2_LOG_INFO,
        "ready: model %s (%d layers, hidden %d, %s weights), %zu expert(s)%s%s%s, %zu profile(s), "
        "default strategy %s, %d sequences, queue %d",
        e->model->name, e->model->cfg.n_layers, e->model->cfg.hidden,
        t2_wtype_name(e->model->wtype), n, n ? " [" : "", names, n ? "]" : "", np,
        s->limits.default_strategy, s->conf->max_seqs, s->conf->queue);
}

/* Another replica may change the shared experts directory: rescan it on a
 * worker every conf->experts_rescan seconds (file I/O stays off the loop). */
static void rescan_run(uv_work_t *w)
{
    t2_server *s = w->data;
    s->rescan_rc = t2_store_rescan(s->engine->experts, &s->rescan_changes, &s->rescan_err);
}

static void rescan_after(uv_work_t *w, int status)
{
    (void)status;
    t2_server *s = w->data;
    s->rescan_busy = false;
    if (s->rescan_rc != 0)
        t2_log_msg(&s->log, T2_LOG_WARN, "experts rescan: %s", s->rescan_err.msg);
    else if (s->rescan_changes)
        t2_log_msg(&s->log, T2_LOG_INFO, "experts: %zu change(s) from the shared directory",
                   s->rescan_changes);
}

static void on_rescan(uv_timer_t *t)
{
    t2_server *s = t->data;
    if (s->rescan_busy || s->draining || !s->engine || !s->engine->experts)
        return;
    s->rescan_busy = true;
    s->rescan_work.data = s;
    if (uv_queue_work(&s->loop, &s->rescan_work, rescan_run, rescan_after) != 0)
        s->rescan_busy = false;
}

static void load_after(uv_work_t *w, int status)
{
    (void)status;
    t2_server *s = w->data;
    s->loading = false;
    if (s->load_rc != 0) {
        t2_log_msg(&s->log, T2_LOG_ERROR, "cannot load the model: %s", s->load_err.msg);
        s->exit_code = 1;
        t2_serve_shutdown(s, NULL);
        return;
    }
    if (s->draining) { /* a signal came while loading */
        t2_serve_check_drained(s);
        return;
    }
    t2_sched_opts so;
    t2_sched_opts_defaults(&so);
    so.max_seqs = s->conf->max_seqs;
    so.queue_len = s->conf->queue;
    so.pass1_workers = s->conf->pass1_workers;
    /* the context per sequence, decided here (the scheduler's default rule)
     * because the request limits below depend on it too */
    int max_pos = s->engine->model->cfg.max_pos;
    so.n_ctx = s->conf->ctx > 0 ? s->conf->ctx : (max_pos > 0 && max_pos < 4096 ? max_pos : 4096);
    t2_err err = {{0}};
    if (t2_sched_create(&s->sched, s->engine, &so, &err) != 0) {
        t2_log_msg(&s->log, T2_LOG_ERROR, "cannot start the scheduler: %s", err.msg);
        s->exit_code = 1;
        t2_serve_shutdown(s, NULL);
        return;
    }
    if (s->engine->experts && s->conf->experts_rescan > 0) {
        uint64_t ms = (uint64_t)(s->conf->experts_rescan * 1000.0);
        uv_timer_start(&s->rescan_timer, on_rescan, ms ? ms : 1, ms ? ms : 1);
    }
    free(s->default_strategy);
    s->default_strategy = strdup(effective_default(s));
    s->limits = (t2_api_limits){
        /* more tokens than the whole context can never be generated: 422 */
        .max_tokens = s->conf->max_tokens < so.n_ctx ? s->conf->max_tokens : so.n_ctx,
        .default_max_tokens = s->conf->default_max_tokens,
        .default_strategy = s->default_strategy ? s->default_strategy : "none",
        .default_method =
            strcmp(s->conf->classify_method, "generate") == 0 ? T2_CLS_GENERATE : T2_CLS_LIKELIHOOD,
        .model_name = s->engine->model->name,
    };
    s->ready = true;
    describe(s);
}

/* conf's "auto" / "none" directory values into paths or NULL. */
static char *resolve_dir(const char *v, const char *model, const char *sub)
{
    if (strcmp(v, "none") == 0)
        return NULL;
    if (strcmp(v, "auto") != 0)
        return strdup(v);
    size_t n = strlen(model) + strlen(sub) + 2;
    char *p = malloc(n);
    if (!p)
        return NULL;
    snprintf(p, n, "%s/%s", model, sub);
    struct stat st;
    if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) {
        free(p);
        return NULL;
    }
    return p;
}

int t2_serve_start_loading(t2_server *s)
{
    t2_conf *c = s->conf;
    s->experts_dir = resolve_dir(c->experts, c->model, "experts");
    s->profiles_dir = resolve_dir(c->profiles, c->model, "profiles");
    s->svd_cache_dir = resolve_dir(c->svd_cache, c->model, "svd-cache");
    t2_engine_opts *o = &s->engine_opts;
    t2_engine_opts_defaults(o);
    o->model_path = c->model;
    o->experts_dir = s->experts_dir;
    o->profiles_dir = s->profiles_dir;
    o->svd_cache_dir = s->svd_cache_dir;
    o->threads = c->threads;
    o->adapted_cache_mb = (size_t)c->adapted_cache_mb;
    o->materialise_min_tokens = c->materialise_min_tokens;
    o->classify_prompt = c->classify_prompt[0] ? c->classify_prompt : NULL;
    o->log = engine_log;
    o->log_user = &s->log;
    t2_err err;
    if (t2_svf_parse_set(c->svf_set, &o->svf_set, &err) != 0) {
        t2_log_msg(&s->log, T2_LOG_ERROR, "svf_set: %s", err.msg);
        return -1;
    }
    if (t2_wtype_parse(c->weights, &o->weights, &err) != 0) {
        t2_log_msg(&s->log, T2_LOG_ERROR, "weights: %s", err.msg);
        return -1;
    }
    if (t2_kv_cache_parse(c->kv_cache, &o->kv_f16, &err) != 0) {
        t2_log_msg(&s->log, T2_LOG_ERROR, "kv_cache: %s", err.msg);
        return -1;
    }
    t2_log_msg(&s->log, T2_LOG_INFO, "loading model %s (experts: %s, profiles: %s, SVD cache: %s)",
               c->model, s->experts_dir ? s->experts_dir : "none",
               s->profiles_dir ? s->profiles_dir : "none",
               s->svd_cache_dir ? s->svd_cache_dir : "none");
    s->loading = true;
    s->load_work.data = s;
    if (uv_queue_work(&s->loop, &s->load_work, load_run, load_after) != 0) {
        s->loading = false;
        t2_log_msg(&s->log, T2_LOG_ERROR, "cannot start loading the model");
        return -1;
    }
    return 0;
}
