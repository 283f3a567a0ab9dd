/* Quick answers on the loop: /health, /ready, /metrics, /v1/models. */
#include <stdlib.h>
#include <string.h>

#include "api_render.h"
#include "serve.h"
#include "serve_work.h"

const char *t2_serve_model_id(const t2_server *s)
{
    return s->engine ? s->engine->model->name : "t2";
}

void t2_h_health(t2_server *s, t2_req *r, const char *param)
{
    (void)s;
    (void)param;
    t2_req_respond_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

void t2_h_ready(t2_server *s, t2_req *r, const char *param)
{
    (void)param;
    if (s->draining) {
        t2_serve_fail(r, 503, "the server is shutting down");
    } else if (!s->ready) {
        t2_req_add_header(r, "Retry-After", "5");
        t2_serve_fail(r, 503, "the model is still loading");
    } else {
        t2_expert **list = NULL;
        size_t n = s->engine->experts ? t2_store_list(s->engine->experts, &list) : 0;
        for (size_t i = 0; i < n; i++)
            t2_expert_unref(list[i]);
        free(list);
        t2_req_respond_json(r, 200,
                            json_pack("{s:s, s:s, s:i}", "status", "ready", "model",
                                      t2_serve_model_id(s), "experts", (int)n));
    }
}

void t2_h_metrics(t2_server *s, t2_req *r, const char *param)
{
    (void)param;
    t2_metrics_gauges g = {.ready = s->ready && !s->draining};
    if (s->sched) {
        t2_sched_counts(s->sched, &g.queued, &g.running);
        g.builds = t2_sched_builds(s->sched);
    }
    if (s->engine) {
        t2_expert **list = NULL;
        g.experts = s->engine->experts ? t2_store_list(s->engine->experts, &list) : 0;
        for (size_t i = 0; i < g.experts; i++)
            t2_expert_unref(list[i]);
        free(list);
        t2_adapt_cache_stats(s->engine->cache, &g.cache_hits, &g.cache_misses, &g.cache_bytes,
                             &g.cache_entries);
    }
    size_t len = 0;
    char *text = t2_metrics_render(&s->metrics, &g, &len);
    if (!text)
        t2_serve_fail(r, 500, "out of memory");
    else
        t2_req_respond(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
}

/* Names of the experts and profiles for the model list. */
static void names(t2_server *s, char ***ex, size_t *n_ex, char ***pr, size_t *n_pr)
{
    t2_expert **list = NULL;
    *n_ex = s->engine->experts ? t2_store_list(s->engine->experts, &list) : 0;
    *ex = calloc(*n_ex + 1, sizeof **ex);
    for (size_t i = 0; i < *n_ex; i++) {
        if (*ex)
            (*ex)[i] = strdup(list[i]->name);
        t2_expert_unref(list[i]);
    }
    free(list);
    t2_profile **pl = NULL;
    *n_pr = s->engine->profiles ? t2_profiles_list(s->engine->profiles, &pl) : 0;
    *pr = calloc(*n_pr + 1, sizeof **pr);
    for (size_t i = 0; i < *n_pr; i++) {
        if (*pr)
            (*pr)[i] = strdup(pl[i]->name);
        t2_profile_free(pl[i]);
    }
    free(pl);
    if (!*ex)
        *n_ex = 0;
    if (!*pr)
        *n_pr = 0;
}

static void free_names(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static bool all_set(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!v[i])
            return false;
    return true;
}

/* The model list includes the profiles, which are read from disk: these
 * two run off the loop. */
static json_t *models_json(t2_server *s, const char *param, int *status, t2_api_err *e)
{
    (void)param;
    (void)status;
    char **ex, **pr;
    size_t n_ex, n_pr;
    names(s, &ex, &n_ex, &pr, &n_pr);
    json_t *j = all_set(ex, n_ex) && all_set(pr, n_pr)
                    ? t2_api_models_json(t2_serve_model_id(s), s->started, ex, n_ex, pr, n_pr)
                    : NULL;
    free_names(ex, n_ex);
    free_names(pr, n_pr);
    if (!j)
        t2_api_fail(e, 500, NULL, NULL, "out of memory");
    return j;
}

static json_t *model_json(t2_server *s, const char *id, int *status, t2_api_err *e)
{
    (void)status;
    char **ex, **pr;
    size_t n_ex, n_pr;
    names(s, &ex, &n_ex, &pr, &n_pr);
    const char *base = t2_serve_model_id(s);
    size_t nb = strlen(base);
    bool found = strcmp(id, base) == 0;
    if (!found && strncmp(id, base, nb) == 0 && id[nb] == ':') {
        const char *rest = id + nb + 1;
        for (size_t i = 0; i < n_ex && !found; i++)
            found = ex[i] && strcmp(rest, ex[i]) == 0;
        for (size_t i = 0; i < n_pr && !found; i++)
            found = pr[i] && strncmp(rest, "profile:", 8) == 0 && strcmp(rest + 8, pr[i]) == 0;
    }
    free_names(ex, n_ex);
    free_names(pr, n_pr);
    if (!found) {
        t2_api_fail(e, 404, "model_not_found", NULL, "the model '%.200s' does not exist", id);
        return NULL;
    }
    return t2_api_model_json(id, s->started);
}

void t2_h_models(t2_server *s, t2_req *r, const char *param)
{
    if (t2_serve_offload_json(s, r, models_json, param) != 0)
        t2_serve_fail(r, 500, "cannot queue the request");
}

void t2_h_model(t2_server *s, t2_req *r, const char *id)
{
    if (t2_serve_offload_json(s, r, model_json, id) != 0)
        t2_serve_fail(r, 500, "cannot queue the request");
}
