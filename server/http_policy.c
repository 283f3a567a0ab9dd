/* CORS origins, bearer keys, media types. */
#include "http_policy.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

bool t2_http_origin_allowed(const char *list, const char *origin, bool *wildcard)
{
    *wildcard = false;
    if (!origin || !list || !list[0])
        return false;
    if (strcmp(list, "*") == 0) {
        *wildcard = true;
        return true;
    }
    size_t on = strlen(origin);
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, ",");
        const char *o = p;
        size_t len = n;
        while (len && *o == ' ')
            o++, len--;
        while (len && o[len - 1] == ' ')
            len--;
        if (len == on && strncasecmp(o, origin, on) == 0)
            return true;
        p += n + (p[n] == ',');
    }
    return false;
}

bool t2_http_bearer_ok(const char *authorization, const char *key)
{
    size_t kn = strlen(key);
    if (!authorization || kn == 0 || strncasecmp(authorization, "Bearer ", 7) != 0)
        return false;
    const char *given = authorization + 7;
    while (*given == ' ')
        given++;
    size_t gn = strlen(given);
    while (gn && given[gn - 1] == ' ')
        gn--;
    /* every byte of the key is compared whatever the input, so the time
     * does not tell how much of a guess was right */
    volatile unsigned char diff = gn != kn;
    for (size_t i = 0; i < kn; i++)
        diff |= (unsigned char)((i < gn ? (unsigned char)given[i] : 0) ^ (unsigned char)key[i]);
    return diff == 0;
}

bool t2_http_media_type_is(const char *content_type, const char *type)
{
    if (!content_type)
        return false;
    while (*content_type == ' ')
        content_type++;
    size_t n = strlen(type);
    if (strncasecmp(content_type, type, n) != 0)
        return false;
    char next = content_type[n];
    return next == '\0' || next == ';' || next == ' ' || next == '\t';
}

bool t2_http_header_list_ok(const char *list)
{
    if (!list || strlen(list) > 1024)
        return false;
    for (const char *p = list; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("-_, ", *p))
            return false;
    return true;
}
