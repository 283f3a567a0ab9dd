/* The error -> status/type map and the error body. */
#include "api_error.h"

#include "api_json.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int t2_api_fail(t2_api_err *e, int status, const char *code, const char *param, const char *fmt,
                ...)
{
    if (!e)
        return -1;
    e->status = status;
    snprintf(e->code, sizeof e->code, "%s", code ? code : t2_api_status_code(status));
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

typedef struct status_info {
    int status;
    const char *type, *code;
} status_info;

static const status_info infos[] = {
    {400, "invalid_request_error", "bad_request"},
    {401, "authentication_error", "invalid_api_key"},
    {403, "permission_error", "forbidden"},
    {404, "not_found_error", "not_found"},
    {405, "invalid_request_error", "method_not_allowed"},
    {408, "timeout_error", "timeout"},
    {413, "invalid_request_error", "body_too_large"},
    {415, "invalid_request_error", "unsupported_media_type"},
    {422, "invalid_request_error", "invalid_value"},
    {429, "rate_limit_error", "queue_full"},
    {500, "server_error", "internal_error"},
    {503, "server_error", "unavailable"},
    {507, "server_error", "insufficient_storage"},
};

static const status_info *find(int status)
{
    for (size_t i = 0; i < sizeof infos / sizeof infos[0]; i++)
        if (infos[i].status == status)
            return &infos[i];
    return NULL;
}

const char *t2_api_status_type(int status)
{
    const status_info *s = find(status);
    return s ? s->type : status >= 500 ? "server_error" : "invalid_request_error";
}

const char *t2_api_status_code(int status)
{
    const status_info *s = find(status);
    return s ? s->code : status >= 500 ? "internal_error" : "bad_request";
}

json_t *t2_api_error_json(const t2_api_err *e)
{
    json_t *inner = json_object();
    json_t *root = json_object();
    if (!inner || !root) {
        json_decref(inner);
        json_decref(root);
        return NULL;
    }
    /* messages may quote user input or be cut mid-character: only valid
     * UTF-8 goes out */
    char msg[sizeof e->message];
    snprintf(msg, sizeof msg, "%s", e->message);
    t2_api_utf8_sanitize(msg);
    json_object_set_new(inner, "message", json_string(msg));
    json_object_set_new(inner, "type", json_string(t2_api_status_type(e->status)));
    json_object_set_new(inner, "code",
                        json_string(e->code[0] ? e->code : t2_api_status_code(e->status)));
    json_t *param = e->param[0] ? json_string(e->param) : NULL;
    json_object_set_new(inner, "param", param ? param : json_null());
    json_object_set_new(root, "error", inner);
    return root;
}
