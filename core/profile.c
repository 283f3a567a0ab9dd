/* Adaptation profiles on disk: one small JSON file each. Reads go to the
 * directory every time, so several processes sharing it stay coherent. */
#include "profile.h"

#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "atomic_file.h"
#include "expert.h"
#include "fileio.h"

#define MAX_PROFILE_BYTES (1u << 20)
#define MAX_PROFILE_TERMS 256

struct t2_profile_store {
    char *dir;
    pthread_mutex_t mu; /* serialises writers of this process */
};

void t2_profile_free(t2_profile *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        free(p->experts[i]);
    free(p->experts);
    free(p->alpha);
    free(p->name);
    free(p->source);
    free(p);
}

char *t2_profile_to_json(const t2_profile *p)
{
    json_t *alpha = json_object();
    for (size_t i = 0; i < p->n; i++)
        json_object_set_new(alpha, p->experts[i], json_real(p->alpha[i]));
    json_t *root = json_pack("{s:s, s:o, s:s, s:I}", "name", p->name, "alpha", alpha, "source",
                             p->source ? p->source : "", "created", (json_int_t)p->created);
    if (root && p->accuracy >= 0)
        json_object_set_new(root, "accuracy", json_real(p->accuracy));
    char *text = root ? json_dumps(root, JSON_INDENT(1) | JSON_SORT_KEYS) : NULL;
    json_decref(root);
    return text;
}

static int fill_alpha(t2_profile *p, json_t *alpha, t2_err *err)
{
    if (!json_is_object(alpha) || json_object_size(alpha) == 0)
        return t2_err_set(err, "profile: 'alpha' must be a non-empty object of expert weights");
    if (json_object_size(alpha) > MAX_PROFILE_TERMS)
        return t2_err_set(err, "profile: at most %d experts", MAX_PROFILE_TERMS);
    size_t n = json_object_size(alpha);
    p->experts = calloc(n, sizeof *p->experts);
    p->alpha = calloc(n, sizeof *p->alpha);
    if (!p->experts || !p->alpha)
        return t2_err_set(err, "out of memory");
    const char *k;
    json_t *v;
    json_object_foreach(alpha, k, v)
    {
        if (!t2_expert_name_valid(k))
            return t2_err_set(err, "profile: invalid expert name '%.64s'", k);
        if (!json_is_number(v) || !isfinite(json_number_value(v)) ||
            fabs(json_number_value(v)) > 100)
            return t2_err_set(err, "profile: weight of '%s' must be a number in [-100, 100]", k);
        p->experts[p->n] = strdup(k);
        p->alpha[p->n] = (float)json_number_value(v);
        p->n++;
        if (!p->experts[p->n - 1])
            return t2_err_set(err, "out of memory");
    }
    return 0;
}

int t2_profile_from_json(t2_profile **out, const char *text, size_t len, t2_err *err)
{
    *out = NULL;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(root)) {
        json_decref(root);
        return t2_err_set(err, "profile: not a JSON object");
    }
    t2_profile *p = calloc(1, sizeof *p);
    int rc = p ? 0 : t2_err_set(err, "out of memory");
    const char *name = json_string_value(json_object_get(root, "name"));
    if (rc == 0 && (!name || !t2_expert_name_valid(name)))
        rc = t2_err_set(err, "profile: 'name' must match [A-Za-z0-9._-]{1,64}");
    if (rc == 0)
        rc = fill_alpha(p, json_object_get(root, "alpha"), err);
    if (rc == 0) {
        const char *src = json_string_value(json_object_get(root, "source"));
        json_t *acc = json_object_get(root, "accuracy");
        p->name = strdup(name);
        p->source = strdup(src ? src : "");
        p->accuracy = json_is_number(acc) ? json_number_value(acc) : -1.0;
        p->created = json_is_integer(json_object_get(root, "created"))
                         ? (long long)json_integer_value(json_object_get(root, "created"))
                         : 0;
        if (!p->name || !p->source)
            rc = t2_err_set(err, "out of memory");
    }
    json_decref(root);
    if (rc != 0) {
        t2_profile_free(p);
        return -1;
    }
    *out = p;
    return 0;
}

t2_profile *t2_profile_copy(const t2_profile *p)
{
    char *text = t2_profile_to_json(p);
    t2_profile *c = NULL;
    if (text)
        t2_profile_from_json(&c, text, strlen(text), NULL);
    free(text);
    return c;
}

int t2_profiles_open(t2_profile_store **out, const char *dir, t2_err *err)
{
    *out = NULL;
    if (t2_mkdir_p(dir, err) != 0)
        return -1;
    t2_atomic_cleanup(dir);
    t2_profile_store *ps = calloc(1, sizeof *ps);
    if (!ps || !(ps->dir = strdup(dir))) {
        free(ps);
        return t2_err_set(err, "out of memory");
    }
    pthread_mutex_init(&ps->mu, NULL);
    *out = ps;
    return 0;
}

void t2_profiles_free(t2_profile_store *ps)
{
    if (!ps)
        return;
    pthread_mutex_destroy(&ps->mu);
    free(ps->dir);
    free(ps);
}

int t2_profiles_put(t2_profile_store *ps, const t2_profile *p, int *err_code, t2_err *err)
{
    if (!t2_expert_name_valid(p->name)) {
        *err_code = 422;
        return t2_err_set(err, "profile name must match [A-Za-z0-9._-]{1,64}");
    }
    char *text = t2_profile_to_json(p);
    if (!text) {
        *err_code = 500;
        return t2_err_set(err, "out of memory");
    }
    char file[128];
    snprintf(file, sizeof file, "%s.json", p->name);
    pthread_mutex_lock(&ps->mu);
    int rc = t2_write_file_atomic(ps->dir, file, text, strlen(text), err_code, err);
    pthread_mutex_unlock(&ps->mu);
    free(text);
    return rc;
}

t2_profile *t2_profiles_get(t2_profile_store *ps, const char *name)
{
    if (!t2_expert_name_valid(name))
        return NULL;
    char file[128];
    snprintf(file, sizeof file, "%s.json", name);
    char *path = t2_path_join(ps->dir, file), *text = NULL;
    size_t len;
    t2_profile *p = NULL;
    if (path && t2_file_exists(path) &&
        t2_read_file(path, MAX_PROFILE_BYTES, &text, &len, NULL) == 0)
        t2_profile_from_json(&p, text, len, NULL);
    if (p && strcmp(p->name, name) != 0) { /* a file renamed by hand: the file name wins */
        free(p->name);
        p->name = strdup(name);
    }
    free(text);
    free(path);
    return p;
}

static int cmp_profiles(const void *a, const void *b)
{
    return strcmp((*(t2_profile *const *)a)->name, (*(t2_profile *const *)b)->name);
}

size_t t2_profiles_list(t2_profile_store *ps, t2_profile ***out)
{
    *out = NULL;
    DIR *d = opendir(ps->dir);
    if (!d)
        return 0;
    size_t n = 0, cap = 0;
    t2_profile **list = NULL;
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        size_t len = strlen(ent->d_name);
        if (len <= 5 || strcmp(ent->d_name + len - 5, ".json") != 0 || len - 5 > 64)
            continue;
        char name[72];
        memcpy(name, ent->d_name, len - 5);
        name[len - 5] = '\0';
        t2_profile *p = t2_profiles_get(ps, name);
        if (!p)
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 8;
            t2_profile **l = realloc(list, cap * sizeof *l);
            if (!l) {
                t2_profile_free(p);
                break;
            }
            list = l;
        }
        list[n++] = p;
    }
    closedir(d);
    if (n)
        qsort(list, n, sizeof *list, cmp_profiles);
    *out = list;
    return n;
}

int t2_profiles_remove(t2_profile_store *ps, const char *name, int *err_code, t2_err *err)
{
    if (!t2_expert_name_valid(name)) {
        *err_code = 404;
        return t2_err_set(err, "unknown profile '%.64s'", name);
    }
    char file[128];
    snprintf(file, sizeof file, "%s.json", name);
    pthread_mutex_lock(&ps->mu);
    int rc = t2_remove_file_durable(ps->dir, file, err_code, err);
    pthread_mutex_unlock(&ps->mu);
    if (rc != 0 && *err_code == 404)
        t2_err_set(err, "unknown profile '%s'", name);
    return rc;
}
