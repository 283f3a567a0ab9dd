/* Experts and profiles: listing and reading answer on the loop (the
 * stores are in memory); uploads and deletions write to disk with fsync,
 * so they run on a libuv worker. */
#include <stdlib.h>
#include <string.h>

#include "api_json.h"
#include "api_render.h"
#include "http_policy.h"
#include "multipart.h"
#include "serve.h"
#include "serve_work.h"

static bool name_ok(t2_req *r, const char *what, const char *name)
{
    if (t2_expert_name_valid(name))
        return true;
    t2_api_err e;
    t2_api_fail(
        &e, 422, "invalid_name", "name",
        "invalid %s name '%.80s': names match [A-Za-z0-9._-]{1,64}, not starting with a dot", what,
        name);
    t2_req_respond_error(r, &e);
    return false;
}

static bool experts_enabled(t2_server *s, t2_req *r)
{
    if (s->engine->experts)
        return true;
    t2_api_err e;
    t2_api_fail(&e, 404, "experts_disabled", NULL,
                "experts are disabled: start t2 serve with --experts DIR");
    t2_req_respond_error(r, &e);
    return false;
}

/* ---- GET ---- */

static void list_experts(t2_server *s, t2_req *r)
{
    t2_expert **list = NULL;
    size_t n = s->engine->experts ? t2_store_list(s->engine->experts, &list) : 0;
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        if (arr)
            json_array_append_new(arr, t2_api_expert_json(list[i]));
        t2_expert_unref(list[i]);
    }
    free(list);
    t2_req_respond_json(r, 200, arr ? json_pack("{s:o}", "experts", arr) : NULL);
}

static void get_expert(t2_server *s, t2_req *r, const char *name)
{
    t2_expert *x = s->engine->experts ? t2_store_get(s->engine->experts, name) : NULL;
    if (!x) {
        t2_serve_fail(r, 404, "no expert named '%s'", name);
        return;
    }
    t2_req_respond_json(r, 200, t2_api_expert_json(x));
    t2_expert_unref(x);
}

/* ---- upload ---- */

typedef struct upload {
    t2_server *s;
    char name[65];
    const uint8_t *data; /* in the request body, kept alive by the offload's hold */
    size_t len;
    bool replaced;
    t2_expert *stored; /* what was stored, even if deleted again meanwhile */
    int rc, code;
    t2_err err;
} upload;

static void upload_run(void *arg)
{
    upload *u = arg;
    u->rc = t2_store_put_ref(u->s->engine->experts, u->name, u->data, u->len, &u->replaced,
                             &u->stored, &u->code, &u->err);
}

static void upload_after(t2_server *s, t2_req *r, void *arg)
{
    upload *u = arg;
    if (u->rc != 0) {
        t2_api_err e;
        int status = u->code == 422 || u->code == 507 ? u->code : 500;
        t2_api_fail(&e, status, status == 422 ? "invalid_expert" : NULL, NULL, "%s", u->err.msg);
        t2_req_respond_error(r, &e);
        t2_log_msg(&s->log, T2_LOG_WARN, "expert upload '%s' refused: %s", u->name, u->err.msg);
    } else {
        t2_log_msg(&s->log, T2_LOG_INFO, "expert '%s' %s (%zu bytes)", u->name,
                   u->replaced ? "replaced" : "added", u->len);
        /* the expert this upload stored: looking the name up again could
         * find nothing (a concurrent DELETE) or another upload's version */
        char loc[96];
        snprintf(loc, sizeof loc, "/v1/experts/%s", u->name);
        t2_req_add_header(r, "Location", loc);
        t2_req_respond_json(r, u->replaced ? 200 : 201,
                            u->stored ? t2_api_expert_json(u->stored) : NULL);
    }
    if (u->stored)
        t2_expert_unref(u->stored);
    free(u);
}

/* The expert's bytes and its name: raw body, or a multipart file part
 * (named "file", else the first with a filename) with an optional "name"
 * field. url_name (from the path or ?name=) wins; both must agree. */
static int upload_source(t2_req *r, const char *url_name, upload *u, t2_api_err *e)
{
    size_t len;
    const char *body = t2_req_body(r, &len);
    const char *ct = t2_req_header(r, "Content-Type");
    const char *name = url_name;
    char field[65] = "";
    if (ct && t2_http_media_type_is(ct, "multipart/form-data")) {
        t2_mp_part parts[T2_MP_MAX_PARTS];
        size_t n;
        if (t2_mp_parse(ct, (const uint8_t *)body, len, parts, T2_MP_MAX_PARTS, &n, e) != 0)
            return -1;
        const t2_mp_part *file = t2_mp_find(parts, n, "file");
        for (size_t i = 0; i < n && !file; i++)
            if (parts[i].filename)
                file = &parts[i];
        if (!file)
            return t2_api_fail(e, 422, "missing_field", "file",
                               "the multipart body has no file part (a part named 'file')");
        const t2_mp_part *np = t2_mp_find(parts, n, "name");
        if (np) {
            if (np->len == 0 || np->len > 64)
                return t2_api_fail(e, 422, "invalid_name", "name",
                                   "the 'name' field must be 1 to 64 characters");
            memcpy(field, np->data, np->len);
            field[np->len] = '\0';
            if (strlen(field) != np->len || !t2_expert_name_valid(field))
                return t2_api_fail(e, 422, "invalid_name", "name",
                                   "invalid expert name: names match [A-Za-z0-9._-]{1,64}");
            if (name && strcmp(name, field) != 0)
                return t2_api_fail(e, 422, "invalid_name", "name",
                                   "the URL names '%s' but the form field names '%s'", name, field);
            name = field;
        }
        u->data = file->data;
        u->len = file->len;
    } else {
        u->data = (const uint8_t *)body;
        u->len = len;
    }
    if (!name)
        return t2_api_fail(e, 422, "missing_field", "name",
                           "name the expert: ?name=NAME, a multipart field 'name', or PUT "
                           "/v1/experts/NAME");
    if (!t2_expert_name_valid(name))
        return t2_api_fail(e, 422, "invalid_name", "name",
                           "invalid expert name '%.80s': names match [A-Za-z0-9._-]{1,64}", name);
    if (u->len == 0)
        return t2_api_fail(e, 422, "invalid_expert", NULL, "the upload is empty");
    snprintf(u->name, sizeof u->name, "%s", name);
    return 0;
}

static void put_expert(t2_server *s, t2_req *r, const char *url_name)
{
    if (!experts_enabled(s, r))
        return;
    upload *u = calloc(1, sizeof *u);
    if (!u) {
        t2_serve_fail(r, 500, "out of memory");
        return;
    }
    u->s = s;
    t2_api_err e;
    if (upload_source(r, url_name, u, &e) != 0) {
        t2_req_respond_error(r, &e);
        free(u);
        return;
    }
    if (t2_serve_offload(s, r, upload_run, upload_after, u) != 0) {
        free(u);
        t2_serve_fail(r, 500, "cannot queue the upload");
    }
}

/* ---- delete (experts and profiles) ---- */

typedef struct removal {
    t2_server *s;
    char name[65];
    bool profile;
    int rc, code;
    t2_err err;
} removal;

static void remove_run(void *arg)
{
    removal *d = arg;
    t2_engine *e = d->s->engine;
    d->rc = d->profile ? t2_profiles_remove(e->profiles, d->name, &d->code, &d->err)
                       : t2_store_remove(e->experts, d->name, &d->code, &d->err);
}

static void remove_after(t2_server *s, t2_req *r, void *arg)
{
    removal *d = arg;
    if (d->rc != 0) {
        int status = d->code == 404 ? 404 : 500;
        t2_serve_fail(r, status, "%s", d->err.msg);
    } else {
        t2_log_msg(&s->log, T2_LOG_INFO, "%s '%s' deleted", d->profile ? "profile" : "expert",
                   d->name);
        t2_req_respond_json(r, 200, json_pack("{s:s, s:b}", "name", d->name, "deleted", 1));
    }
    free(d);
}

static void delete_named(t2_server *s, t2_req *r, const char *name, bool profile)
{
    removal *d = calloc(1, sizeof *d);
    if (!d) {
        t2_serve_fail(r, 500, "out of memory");
        return;
    }
    d->s = s;
    d->profile = profile;
    snprintf(d->name, sizeof d->name, "%s", name);
    if (t2_serve_offload(s, r, remove_run, remove_after, d) != 0) {
        free(d);
        t2_serve_fail(r, 500, "cannot queue the deletion");
    }
}

/* ---- routes ---- */

void t2_h_experts(t2_server *s, t2_req *r, const char *param)
{
    (void)param;
    if (strcmp(t2_req_method(r), "POST") == 0)
        put_expert(s, r, t2_req_query(r, "name"));
    else
        list_experts(s, r);
}

void t2_h_expert(t2_server *s, t2_req *r, const char *name)
{
    const char *m = t2_req_method(r);
    if (!name_ok(r, "expert", name))
        return;
    if (strcmp(m, "PUT") == 0)
        put_expert(s, r, name);
    else if (strcmp(m, "DELETE") == 0 && experts_enabled(s, r))
        delete_named(s, r, name, false);
    else if (strcmp(m, "DELETE") != 0)
        get_expert(s, r, name);
}

/* Profiles live on disk (every read goes to the directory): off the loop. */
static json_t *profiles_json(t2_server *s, const char *param, int *status, t2_api_err *e)
{
    (void)param;
    (void)status;
    t2_profile **list = NULL;
    size_t n = s->engine->profiles ? t2_profiles_list(s->engine->profiles, &list) : 0;
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        if (arr)
            json_array_append_new(arr, t2_api_profile_json(list[i]));
        t2_profile_free(list[i]);
    }
    free(list);
    json_t *o = arr ? json_pack("{s:o}", "profiles", arr) : NULL;
    if (!o)
        t2_api_fail(e, 500, NULL, NULL, "out of memory");
    return o;
}

static json_t *profile_json(t2_server *s, const char *name, int *status, t2_api_err *e)
{
    (void)status;
    t2_profile *p = s->engine->profiles ? t2_profiles_get(s->engine->profiles, name) : NULL;
    if (!p) {
        t2_api_fail(e, 404, NULL, NULL, "no profile named '%s'", name);
        return NULL;
    }
    json_t *o = t2_api_profile_json(p);
    t2_profile_free(p);
    if (!o)
        t2_api_fail(e, 500, NULL, NULL, "out of memory");
    return o;
}

void t2_h_profiles(t2_server *s, t2_req *r, const char *param)
{
    if (t2_serve_offload_json(s, r, profiles_json, param) != 0)
        t2_serve_fail(r, 500, "cannot queue the request");
}

void t2_h_profile(t2_server *s, t2_req *r, const char *name)
{
    if (!name_ok(r, "profile", name))
        return;
    if (strcmp(t2_req_method(r), "DELETE") == 0) {
        if (!s->engine->profiles)
            t2_serve_fail(r, 404, "no profile named '%s'", name);
        else
            delete_named(s, r, name, true);
    } else if (t2_serve_offload_json(s, r, profile_json, name) != 0) {
        t2_serve_fail(r, 500, "cannot queue the request");
    }
}
