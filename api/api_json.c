/* Strict JSON field access and UTF-8 checks. */
#include "api_json.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

int t2_api_parse_body(const char *body, size_t len, json_t **out, t2_api_err *e)
{
    *out = NULL;
    if (len == 0)
        return t2_api_fail(e, 400, "invalid_json", NULL,
                           "the request body is empty (JSON expected)");
    if (!t2_api_utf8_valid(body, len))
        return t2_api_fail(e, 400, "invalid_json", NULL, "the request body is not valid UTF-8");
    json_error_t jerr;
    /* jansson also rejects NUL in strings, lone surrogates, nesting deeper than
     * its parser limit and integers beyond 64 bits */
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return t2_api_fail(e, 400, "invalid_json", NULL, "invalid JSON at line %d, column %d: %s",
                           jerr.line, jerr.column, jerr.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return t2_api_fail(e, 400, "invalid_json", NULL, "the request body must be a JSON object");
    }
    *out = root;
    return 0;
}

bool t2_api_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < len;) {
        unsigned c = s[i];
        if (c == 0)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        unsigned cp, min;
        if (c >= 0xc2 && c <= 0xdf)
            n = 1, cp = c & 0x1f, min = 0x80;
        else if (c >= 0xe0 && c <= 0xef)
            n = 2, cp = c & 0x0f, min = 0x800;
        else if (c >= 0xf0 && c <= 0xf4)
            n = 3, cp = c & 0x07, min = 0x10000;
        else
            return false;
        if (len - i <= n)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += n + 1;
    }
    return true;
}

void t2_api_utf8_sanitize(char *s)
{
    size_t len = strlen(s);
    for (size_t i = 0; i < len;) {
        size_t n = 1;
        unsigned c = (unsigned char)s[i];
        if (c >= 0x80) {
            n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
            if (n > len - i || !t2_api_utf8_valid(s + i, n)) {
                s[i++] = '?';
                continue;
            }
        }
        i += n;
    }
}

const char *t2_api_field(char *buf, size_t cap, const char *prefix, const char *key)
{
    if (prefix && prefix[0])
        snprintf(buf, cap, "%s.%s", prefix, key);
    else
        snprintf(buf, cap, "%s", key);
    return buf;
}

int t2_api_only_fields(json_t *obj, const char *const *allowed, const char *prefix, t2_api_err *e)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        bool ok = false;
        for (size_t i = 0; allowed[i] && !ok; i++)
            ok = strcmp(allowed[i], key) == 0;
        if (!ok) {
            char f[96], shown[72];
            snprintf(shown, sizeof shown, "%s", key);
            t2_api_utf8_sanitize(shown);
            t2_api_field(f, sizeof f, prefix, shown);
            return t2_api_fail(e, 422, "unknown_field", f, "unknown field '%s'", f);
        }
    }
    return 0;
}

int t2_api_get_str(json_t *obj, const char *key, const char *prefix, size_t max_len,
                   const char **out, size_t *len, t2_api_err *e)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    char f[96];
    t2_api_field(f, sizeof f, prefix, key);
    if (!json_is_string(v))
        return t2_api_fail(e, 422, "invalid_type", f, "'%s' must be a string", f);
    size_t n = json_string_length(v);
    if (n > max_len)
        return t2_api_fail(e, 422, "invalid_value", f, "'%s' is longer than %zu bytes", f, max_len);
    if (!t2_api_utf8_valid(json_string_value(v), n))
        return t2_api_fail(e, 422, "invalid_utf8", f, "'%s' is not valid UTF-8 text", f);
    *out = json_string_value(v);
    if (len)
        *len = n;
    return 1;
}

int t2_api_get_int(json_t *obj, const char *key, const char *prefix, long long lo, long long hi,
                   long long *out, t2_api_err *e)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    char f[96];
    t2_api_field(f, sizeof f, prefix, key);
    if (!json_is_integer(v))
        return t2_api_fail(e, 422, "invalid_type", f, "'%s' must be an integer", f);
    long long x = (long long)json_integer_value(v);
    if (x < lo || x > hi)
        return t2_api_fail(e, 422, "invalid_value", f, "'%s' must be in %lld..%lld (got %lld)", f,
                           lo, hi, x);
    *out = x;
    return 1;
}

int t2_api_get_num(json_t *obj, const char *key, const char *prefix, double lo, double hi,
                   bool lo_open, double *out, t2_api_err *e)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    char f[96];
    t2_api_field(f, sizeof f, prefix, key);
    if (!json_is_number(v))
        return t2_api_fail(e, 422, "invalid_type", f, "'%s' must be a number", f);
    double x = json_number_value(v);
    if (!isfinite(x) || x > hi || x < lo || (lo_open && x == lo))
        return t2_api_fail(e, 422, "invalid_value", f, "'%s' must be in %s%g, %g] (got %g)", f,
                           lo_open ? "(" : "[", lo, hi, x);
    *out = x;
    return 1;
}

int t2_api_get_bool(json_t *obj, const char *key, const char *prefix, bool *out, t2_api_err *e)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    char f[96];
    t2_api_field(f, sizeof f, prefix, key);
    if (!json_is_boolean(v))
        return t2_api_fail(e, 422, "invalid_type", f, "'%s' must be true or false", f);
    *out = json_is_true(v);
    return 1;
}

char *t2_api_dump(const json_t *j, size_t *len)
{
    /* 7 significant digits: float32 values (alphas, probabilities) print as
     * people wrote them (0.7, not 0.69999998807907104) */
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(7));
    if (s && len)
        *len = strlen(s);
    return s;
}
