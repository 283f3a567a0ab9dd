/* Routing and the checks every request passes before its handler runs:
 * route and method (404, 405 with Allow), CORS (preflight and headers),
 * API key (401), readiness (503), content type (415). Then, once the body
 * is in, the route's handler. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "http_policy.h"
#include "serve.h"

enum { M_GET = 1, M_POST = 2, M_PUT = 4, M_DELETE = 8 };

enum body_kind { BODY_NONE, BODY_JSON, BODY_UPLOAD };

typedef struct route {
    const char *path; /* exact, or a prefix ending in '/' followed by one segment */
    bool param;
    const char *label; /* for logs and metrics */
    unsigned methods;
    unsigned auth;       /* methods that need the API key */
    bool admin;          /* CORS: cors_admin_origins instead of cors_origins */
    bool engine;         /* 503 until the model is loaded and while draining */
    enum body_kind body; /* what POST/PUT bodies must be */
    t2_handler handler;
} route;

static const route routes[] = {
    {"/health", false, "/health", M_GET, 0, false, false, BODY_NONE, t2_h_health},
    {"/ready", false, "/ready", M_GET, 0, false, false, BODY_NONE, t2_h_ready},
    {"/metrics", false, "/metrics", M_GET, 0, false, false, BODY_NONE, t2_h_metrics},
    {"/v1/generate", false, "/v1/generate", M_POST, 0, false, true, BODY_JSON, t2_h_generate},
    {"/v1/chat/completions", false, "/v1/chat/completions", M_POST, 0, false, true, BODY_JSON,
     t2_h_chat},
    {"/v1/completions", false, "/v1/completions", M_POST, 0, false, true, BODY_JSON,
     t2_h_completions},
    {"/v1/classify", false, "/v1/classify", M_POST, 0, false, true, BODY_JSON, t2_h_classify},
    {"/v1/adapt", false, "/v1/adapt", M_POST, M_POST, true, true, BODY_JSON, t2_h_adapt},
    {"/v1/experts", false, "/v1/experts", M_GET | M_POST, M_POST, true, true, BODY_UPLOAD,
     t2_h_experts},
    {"/v1/experts/", true, "/v1/experts/{name}", M_GET | M_PUT | M_DELETE, M_PUT | M_DELETE, true,
     true, BODY_UPLOAD, t2_h_expert},
    {"/v1/profiles", false, "/v1/profiles", M_GET, 0, true, true, BODY_NONE, t2_h_profiles},
    {"/v1/profiles/", true, "/v1/profiles/{name}", M_GET | M_DELETE, M_DELETE, true, true,
     BODY_NONE, t2_h_profile},
    {"/v1/models", false, "/v1/models", M_GET, 0, false, true, BODY_NONE, t2_h_models},
    {"/v1/models/", true, "/v1/models/{id}", M_GET, 0, false, true, BODY_NONE, t2_h_model},
};

static const route *match(const char *path, const char **param)
{
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const route *rt = &routes[i];
        size_t n = strlen(rt->path);
        if (!rt->param && strcmp(path, rt->path) == 0)
            return rt;
        if (rt->param && strncmp(path, rt->path, n) == 0 && path[n] && !strchr(path + n, '/')) {
            *param = path + n;
            return rt;
        }
    }
    return NULL;
}

static unsigned method_bit(const char *m)
{
    if (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0)
        return M_GET;
    if (strcmp(m, "POST") == 0)
        return M_POST;
    if (strcmp(m, "PUT") == 0)
        return M_PUT;
    if (strcmp(m, "DELETE") == 0)
        return M_DELETE;
    return 0;
}

static void allow_list(unsigned methods, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s%s%s%sOPTIONS", methods & M_GET ? "GET, HEAD, " : "",
             methods & M_POST ? "POST, " : "", methods & M_PUT ? "PUT, " : "",
             methods & M_DELETE ? "DELETE, " : "");
}

void t2_serve_fail(t2_req *r, int status, const char *fmt, ...)
{
    t2_api_err e = {.status = status};
    snprintf(e.code, sizeof e.code, "%s", t2_api_status_code(status));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof e.message, fmt, ap);
    va_end(ap);
    t2_req_respond_error(r, &e);
}

/* CORS: the allow headers of the route's origin list, when the request
 * has an Origin that the list admits. */
static bool cors_headers(t2_server *s, t2_req *r, const route *rt)
{
    const char *origin = t2_req_header(r, "Origin");
    bool wildcard;
    const char *list = rt->admin ? s->conf->cors_admin_origins : s->conf->cors_origins;
    if (!t2_http_origin_allowed(list, origin, &wildcard))
        return false;
    t2_req_add_header(r, "Access-Control-Allow-Origin", wildcard ? "*" : origin);
    if (!wildcard)
        t2_req_add_header(r, "Vary", "Origin");
    return true;
}

static void preflight(t2_server *s, t2_req *r, const route *rt)
{
    if (cors_headers(s, r, rt)) {
        char allow[64];
        allow_list(rt->methods, allow, sizeof allow);
        const char *asked = t2_req_header(r, "Access-Control-Request-Headers");
        t2_req_add_header(r, "Access-Control-Allow-Methods", allow);
        t2_req_add_header(r, "Access-Control-Allow-Headers",
                          t2_http_header_list_ok(asked) ? asked : "Authorization, Content-Type");
        t2_req_add_header(r, "Access-Control-Max-Age", "600");
    }
    t2_req_respond(r, 204, NULL, NULL, 0);
}

static bool needs_key(const t2_server *s, const route *rt, unsigned m)
{
    if (!s->conf->api_key[0])
        return false;
    if (rt->auth & m)
        return true;
    return s->conf->api_key_all && rt->handler != t2_h_health && rt->handler != t2_h_ready;
}

static bool content_type_ok(t2_req *r, const route *rt, unsigned m)
{
    const char *ct = t2_req_header(r, "Content-Type");
    if (!(m & (M_POST | M_PUT)) || !ct)
        return true; /* no type: taken as what the route expects */
    if (rt->body == BODY_JSON && !t2_http_media_type_is(ct, "application/json")) {
        t2_serve_fail(r, 415, "Content-Type must be application/json (got '%.100s')", ct);
        return false;
    }
    if (rt->body == BODY_UPLOAD && !t2_http_media_type_is(ct, "application/octet-stream") &&
        !t2_http_media_type_is(ct, "multipart/form-data")) {
        t2_serve_fail(r, 415,
                      "expert uploads are application/octet-stream or multipart/form-data "
                      "(got '%.100s')",
                      ct);
        return false;
    }
    return true;
}

void t2_serve_admit(void *srv, t2_req *r)
{
    t2_server *s = srv;
    const char *param = NULL, *method = t2_req_method(r);
    const route *rt = match(t2_req_path(r), &param);
    if (!rt) {
        t2_serve_fail(r, 404, "no route for %.200s %.200s", method, t2_req_path(r));
        return;
    }
    t2_req_set_label(r, rt->label);
    if (strcmp(method, "OPTIONS") == 0) {
        preflight(s, r, rt);
        return;
    }
    cors_headers(s, r, rt);
    unsigned m = method_bit(method);
    if (!(rt->methods & m)) {
        char allow[64];
        allow_list(rt->methods, allow, sizeof allow);
        t2_req_add_header(r, "Allow", allow);
        t2_serve_fail(r, 405, "method %.32s is not allowed on %s (allowed: %s)", method, rt->label,
                      allow);
        return;
    }
    if (needs_key(s, rt, m) &&
        !t2_http_bearer_ok(t2_req_header(r, "Authorization"), s->conf->api_key)) {
        t2_req_add_header(r, "WWW-Authenticate", "Bearer");
        t2_serve_fail(r, 401, "a valid API key is required: Authorization: Bearer KEY");
        return;
    }
    if (rt->engine && s->draining) {
        t2_req_add_header(r, "Connection", "close");
        t2_req_add_header(r, "Retry-After", "5");
        t2_serve_fail(r, 503, "the server is shutting down");
        return;
    }
    if (rt->engine && !s->ready) {
        t2_req_add_header(r, "Retry-After", "5");
        t2_serve_fail(r, 503, "the model is still loading (GET /ready says when it is done)");
        return;
    }
    if (!content_type_ok(r, rt, m))
        return;
    if (s->draining)
        t2_req_add_header(r, "Connection", "close");
}

void t2_serve_dispatch(void *srv, t2_req *r)
{
    t2_server *s = srv;
    const char *param = NULL;
    const route *rt = match(t2_req_path(r), &param);
    if (rt)
        rt->handler(s, r, param);
    else /* admit answered already; not reached */
        t2_serve_fail(r, 404, "no route");
}

void t2_serve_completed(void *srv, t2_req *r, bool ok)
{
    t2_server *s = srv;
    /* a request whose client left before any response: 499, as nginx logs it */
    int status = t2_req_status(r) ? t2_req_status(r) : 499;
    t2_metrics_request(&s->metrics, t2_req_label(r), status);
    t2_log_access(&s->log, t2_req_method(r), t2_req_path(r), status, t2_req_elapsed_ms(r),
                  t2_req_tokens(r), !ok);
    t2_serve_check_drained(s);
}
