/* Profile JSON (core/profile.c: the files under profiles/ and what
 * GET /v1/profiles renders): parse, and a parsed profile must survive a
 * render -> parse round trip unchanged (the file lists experts sorted, so
 * they are compared by name). */
#include <string.h>

#include "fuzz.h"
#include "profile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    t2_profile *p;
    t2_err err;
    if (t2_profile_from_json(&p, (const char *)data, size, &err) != 0)
        return 0;
    char *text = t2_profile_to_json(p);
    FUZZ_CHECK(text != NULL);
    t2_profile *q;
    FUZZ_CHECK(t2_profile_from_json(&q, text, strlen(text), &err) == 0);
    FUZZ_CHECK(strcmp(p->name, q->name) == 0 && p->n == q->n);
    for (size_t i = 0; i < p->n; i++) {
        size_t j = 0;
        while (j < q->n && strcmp(p->experts[i], q->experts[j]) != 0)
            j++;
        FUZZ_CHECK(j < q->n && p->alpha[i] == q->alpha[j]);
    }
    free(text);
    t2_profile_free(p);
    t2_profile_free(q);
    return 0;
}
