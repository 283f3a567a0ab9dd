/* API errors: every failure of a request is one t2_api_err (HTTP status,
 * machine-readable code, the field at fault and a message for people),
 * rendered as {"error": {"message", "type", "code", "param"}}. */
#ifndef T2_API_ERROR_H
#define T2_API_ERROR_H

#include <jansson.h>

typedef struct t2_api_err {
    int status;     /* HTTP status: 400, 401, 404, 405, 413, 415, 422, 429, 500, 503, 507 */
    char code[40];  /* e.g. "invalid_json", "unknown_field", "invalid_value" */
    char param[96]; /* the field at fault ("adaptation.expert"), or "" */
    char message[600];
} t2_api_err;

/* Fills e (when not NULL) and returns -1. param may be NULL. */
int t2_api_fail(t2_api_err *e, int status, const char *code, const char *param, const char *fmt,
                ...) __attribute__((format(printf, 5, 6)));

/* The error's "type" for a status, in the OpenAI spirit
 * ("invalid_request_error", "authentication_error", ...). */
const char *t2_api_status_type(int status);
/* The default code for a status when the source gives none (core errors). */
const char *t2_api_status_code(int status);

/* {"error": {...}}; NULL only when out of memory. */
json_t *t2_api_error_json(const t2_api_err *e);

#endif
