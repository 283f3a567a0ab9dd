/* Server-Sent Events framing: an optional "event:" line, one "data:" line
 * of compact JSON (which never contains a newline), a blank line. */
#include <stdlib.h>
#include <string.h>

#include "api_json.h"
#include "api_render.h"

char *t2_sse_event(const char *name, const json_t *data, size_t *len)
{
    size_t n;
    char *json = t2_api_dump(data, &n);
    if (!json)
        return NULL;
    size_t cap = (name ? strlen(name) + 8 : 0) + n + 9;
    char *out = malloc(cap);
    if (out) {
        int k = name ? snprintf(out, cap, "event: %s\n", name) : 0;
        memcpy(out + k, "data: ", 6);
        memcpy(out + k + 6, json, n);
        memcpy(out + k + 6 + n, "\n\n", 3);
        *len = (size_t)k + 6 + n + 2;
    }
    free(json);
    return out;
}
