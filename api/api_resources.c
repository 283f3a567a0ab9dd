/* Experts, profiles and model ids as JSON. */
#include <stdio.h>
#include <string.h>

#include "api_render.h"

static json_t *str_or_null(const char *s)
{
    return s ? t2_api_text(s, strlen(s)) : json_null();
}

json_t *t2_api_expert_json(const t2_expert *x)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "name", str_or_null(x->name));
    json_object_set_new(o, "task", str_or_null(x->task));
    json_object_set_new(o, "description", str_or_null(x->description));
    json_object_set_new(o, "base_model", str_or_null(x->base_model));
    json_object_set_new(o, "parametrization", str_or_null(x->parametrization));
    json_object_set_new(o, "adapted", str_or_null(x->adapted));
    json_object_set_new(o, "file_bytes", json_integer((json_int_t)x->file_bytes));
    /* a 64-bit content version: a string, since JSON numbers lose bits past 2^53 */
    char v[24];
    snprintf(v, sizeof v, "%llu", (unsigned long long)x->version);
    json_object_set_new(o, "version", json_string(v));
    return o;
}

json_t *t2_api_profile_json(const t2_profile *p)
{
    json_t *alpha = json_object(), *o = json_object();
    if (!alpha || !o) {
        json_decref(alpha);
        json_decref(o);
        return NULL;
    }
    for (size_t i = 0; i < p->n; i++)
        json_object_set_new(alpha, p->experts[i], json_real(p->alpha[i]));
    json_object_set_new(o, "name", str_or_null(p->name));
    json_object_set_new(o, "alpha", alpha);
    json_object_set_new(o, "source", str_or_null(p->source));
    json_object_set_new(o, "accuracy", p->accuracy >= 0 ? json_real(p->accuracy) : json_null());
    json_object_set_new(o, "created", json_integer((json_int_t)p->created));
    return o;
}

json_t *t2_api_model_json(const char *id, long long created)
{
    return json_pack("{s:o, s:s, s:I, s:s}", "id", t2_api_text(id, strlen(id)), "object", "model",
                     "created", (json_int_t)created, "owned_by", "t2");
}

json_t *t2_api_models_json(const char *model, long long created, char *const *experts,
                           size_t n_experts, char *const *profiles, size_t n_profiles)
{
    json_t *data = json_array();
    if (!data)
        return NULL;
    json_array_append_new(data, t2_api_model_json(model, created));
    char id[512];
    for (size_t i = 0; i < n_experts; i++) {
        snprintf(id, sizeof id, "%s:%s", model, experts[i]);
        json_array_append_new(data, t2_api_model_json(id, created));
    }
    for (size_t i = 0; i < n_profiles; i++) {
        snprintf(id, sizeof id, "%s:profile:%s", model, profiles[i]);
        json_array_append_new(data, t2_api_model_json(id, created));
    }
    return json_pack("{s:s, s:o}", "object", "list", "data", data);
}
