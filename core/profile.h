/* Adaptation profiles: a named mixture (alpha per expert name) found by
 * the few-shot search, persisted as <dir>/<name>.json (atomic writes) so
 * later requests and restarts can reuse it. Thread-safe. */
#ifndef T2_PROFILE_H
#define T2_PROFILE_H

#include <stddef.h>

#include "error.h"

typedef struct t2_profile {
    char *name;
    size_t n;
    char **experts; /* expert names */
    float *alpha;
    char *source;      /* e.g. "few_shot" */
    double accuracy;   /* on the examples it was fitted to, or -1 */
    long long created; /* unix seconds */
} t2_profile;

void t2_profile_free(t2_profile *p); /* frees the fields and p */
t2_profile *t2_profile_copy(const t2_profile *p);
/* JSON text <-> profile (for the API and the files). */
char *t2_profile_to_json(const t2_profile *p);
int t2_profile_from_json(t2_profile **out, const char *text, size_t len, t2_err *err);

typedef struct t2_profile_store t2_profile_store;

int t2_profiles_open(t2_profile_store **out, const char *dir, t2_err *err);
void t2_profiles_free(t2_profile_store *ps);
/* Saves (replacing a profile of the same name). err_code: 422 bad name,
 * 507 disk full, 500 I/O. */
int t2_profiles_put(t2_profile_store *ps, const t2_profile *p, int *err_code, t2_err *err);
/* A copy, or NULL when unknown. */
t2_profile *t2_profiles_get(t2_profile_store *ps, const char *name);
/* Copies of all, sorted by name; free each and the array. */
size_t t2_profiles_list(t2_profile_store *ps, t2_profile ***out);
int t2_profiles_remove(t2_profile_store *ps, const char *name, int *err_code, t2_err *err);

#endif
