/* Strict JSON field access for request parsing: each getter checks the
 * type and range of one field and fails with a 422 naming it; absent and
 * null fields keep their defaults. */
#ifndef T2_API_JSON_H
#define T2_API_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "api_error.h"

/* Longest string accepted in any field (prompts are bounded by the body
 * size limit anyway; this guards lengths stored in ints). */
#define T2_API_MAX_STRING ((size_t)1 << 30)

/* Parses a request body into a JSON object: 400 when it is not JSON (the
 * message has jansson's line/column), not an object, has duplicate keys,
 * nests too deeply or holds invalid UTF-8. */
int t2_api_parse_body(const char *body, size_t len, json_t **out, t2_api_err *e);

/* Well-formed UTF-8 (no overlongs, surrogates or code points past
 * U+10FFFF); NUL bytes are rejected too. */
bool t2_api_utf8_valid(const char *s, size_t len);
/* Replaces every byte that is not part of well-formed UTF-8 with '?'. */
void t2_api_utf8_sanitize(char *s);

/* `prefix.key` (or `key`) into buf, for messages and error params. */
const char *t2_api_field(char *buf, size_t cap, const char *prefix, const char *key);

/* 422 naming the first key of obj not in allowed (NULL-terminated). */
int t2_api_only_fields(json_t *obj, const char *const *allowed, const char *prefix, t2_api_err *e);

/* Getters: 0 when absent or null, 1 when set, -1 on error (422). */
int t2_api_get_str(json_t *obj, const char *key, const char *prefix, size_t max_len,
                   const char **out, size_t *len, t2_api_err *e);
int t2_api_get_int(json_t *obj, const char *key, const char *prefix, long long lo, long long hi,
                   long long *out, t2_api_err *e);
int t2_api_get_num(json_t *obj, const char *key, const char *prefix, double lo, double hi,
                   bool lo_open, double *out, t2_api_err *e);
int t2_api_get_bool(json_t *obj, const char *key, const char *prefix, bool *out, t2_api_err *e);

/* Serialises compactly; NULL only when out of memory. */
char *t2_api_dump(const json_t *j, size_t *len);

#endif
