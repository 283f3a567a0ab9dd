/* Request policy checks that need no connection: CORS origin lists, the
 * bearer API key (compared in constant time), media types. Pure functions,
 * unit-tested in tests/test_api_http.c. */
#ifndef T2_HTTP_POLICY_H
#define T2_HTTP_POLICY_H

#include <stdbool.h>

/* list: "*" (any origin), "" (none) or comma-separated origins. *wildcard
 * tells whether to answer "*" rather than echo the origin. */
bool t2_http_origin_allowed(const char *list, const char *origin, bool *wildcard);
/* authorization: the header value; key: the configured secret. The time
 * taken depends only on the key's length. */
bool t2_http_bearer_ok(const char *authorization, const char *key);
/* Content-Type's media type (parameters ignored, case-insensitive). */
bool t2_http_media_type_is(const char *content_type, const char *type);
/* Access-Control-Request-Headers echoed back when it is a plain list of
 * header names (at most 1 KiB), else NULL. */
bool t2_http_header_list_ok(const char *list);

#endif
