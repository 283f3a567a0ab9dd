/* Setting one key from text: parsing and validation against the schema. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf.h"

const t2_conf_key *t2_conf_find(const char *key)
{
    for (size_t i = 0; i < t2_conf_n_keys; i++)
        if (strcmp(t2_conf_schema[i].key, key) == 0)
            return &t2_conf_schema[i];
    return NULL;
}

static int bad(char *err, size_t cap, const t2_conf_key *k, const char *value, const char *source,
               const char *expected)
{
    snprintf(err, cap, "invalid value '%.100s%s' for %s (from %s): %s", value,
             strlen(value) > 100 ? "..." : "", k->key, source, expected);
    return -1;
}

static int parse_bool(const char *v, bool *out)
{
    static const char *yes[] = {"1", "true", "yes", "on"}, *no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0)
            return *out = true, 0;
        if (strcasecmp(v, no[i]) == 0)
            return *out = false, 0;
    }
    return -1;
}

static bool in_choices(const char *choices, const char *v)
{
    size_t n = strlen(v);
    for (const char *p = choices; *p;) {
        size_t len = strcspn(p, "|");
        if (len == n && strncmp(p, v, n) == 0)
            return true;
        p += len + (p[len] == '|');
    }
    return false;
}

int t2_conf_set(t2_conf *c, const char *key, const char *value, const char *source, char *err,
                size_t cap)
{
    const t2_conf_key *k = t2_conf_find(key);
    if (!k) {
        snprintf(err, cap, "unknown key '%.64s' (from %s)", key, source);
        return -1;
    }
    char msg[256];
    char *field = (char *)c + k->offset;
    switch (k->type) {
    case T2_CONF_STR: {
        if (k->choices && !in_choices(k->choices, value)) {
            snprintf(msg, sizeof msg, "expected one of %s", k->choices);
            return bad(err, cap, k, value, source, msg);
        }
        if (k->check && k->check(value, msg, sizeof msg) != 0)
            return bad(err, cap, k, value, source, msg);
        char *copy = strdup(value);
        if (!copy) {
            snprintf(err, cap, "out of memory");
            return -1;
        }
        free(*(char **)field);
        *(char **)field = copy;
        return 0;
    }
    case T2_CONF_INT: {
        char *end;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (errno || end == value || *end || v < (long long)k->lo || v > (long long)k->hi) {
            snprintf(msg, sizeof msg, "expected an integer in %.0f..%.0f", k->lo, k->hi);
            return bad(err, cap, k, value, source, msg);
        }
        *(int *)field = (int)v;
        return 0;
    }
    case T2_CONF_NUM: {
        char *end;
        errno = 0;
        double v = strtod(value, &end);
        if (errno || end == value || *end || !isfinite(v) || v < k->lo || v > k->hi) {
            snprintf(msg, sizeof msg, "expected a number in %g..%g", k->lo, k->hi);
            return bad(err, cap, k, value, source, msg);
        }
        *(double *)field = v;
        return 0;
    }
    case T2_CONF_BOOL:
        if (parse_bool(value, (bool *)field) != 0)
            return bad(err, cap, k, value, source, "expected true or false");
        return 0;
    }
    return -1;
}

int t2_conf_defaults(t2_conf *c, char *err, size_t cap)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < t2_conf_n_keys; i++)
        if (t2_conf_set(c, t2_conf_schema[i].key, t2_conf_schema[i].def, "defaults", err, cap))
            return -1;
    return 0;
}

void t2_conf_free(t2_conf *c)
{
    for (size_t i = 0; i < t2_conf_n_keys; i++)
        if (t2_conf_schema[i].type == T2_CONF_STR) {
            char **f = (char **)((char *)c + t2_conf_schema[i].offset);
            free(*f);
            *f = NULL;
        }
    free(c->config);
    c->config = NULL;
}
