/* Helpers shared by the unit tests: paths into ../shared, reference data. */
#ifndef T2_TEST_UTIL_H
#define T2_TEST_UTIL_H

#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* T2_TEST_QUICK=1 (the valgrind setup in tests/meson.build): the heavy tests
 * trim their numeric work (fewer reference prompts, shorter generations,
 * smaller loops) but keep every code path and every assertion that still
 * applies; the normal build runs the full numeric checks. */
static inline bool test_quick(void)
{
    const char *v = getenv("T2_TEST_QUICK");
    return v && *v && strcmp(v, "0") != 0;
}

/* Quick mode: the tests share the seedling's SVF factors through an SVD
 * cache dir, so that the SVD (minutes under valgrind) runs once, in
 * whichever test comes first (the cache is locked while written, and checks
 * the weights' hash and its own checksum on load; test_svf still decomposes
 * its tiny model); T2_TEST_SVD_CACHE names the directory (default
 * $TMPDIR/t2-test-quick-svd-cache). NULL otherwise: each test decomposes. */
static inline const char *test_svd_cache_dir(void)
{
    static char dir[512];
    if (!test_quick())
        return NULL;
    const char *given = getenv("T2_TEST_SVD_CACHE"); /* tools/test.sh fills one */
    if (given && *given)
        return given;
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/t2-test-quick-svd-cache", tmp && *tmp ? tmp : "/tmp");
    return dir;
}

/* $T2_SHARED/<rel> into buf */
static inline const char *shared_path(char *buf, size_t cap, const char *rel)
{
    const char *root = getenv("T2_SHARED");
    snprintf(buf, cap, "%s/%s", root ? root : "../shared", rel);
    return buf;
}

/* Reads a little-endian float32 file of exactly n values; NULL on error. */
static inline float *read_f32_file(const char *path, size_t n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    float *v = malloc(n * sizeof *v);
    size_t got = v ? fread(v, sizeof *v, n, f) : 0;
    int extra = fgetc(f);
    fclose(f);
    if (got != n || extra != EOF) {
        free(v);
        return NULL;
    }
    return v;
}

/* relative L2 error |a - b| / |b| */
static inline double rel_l2(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* JSON int array -> malloc'd int32 array */
static inline int32_t *json_ids(json_t *arr, size_t *n)
{
    *n = json_array_size(arr);
    int32_t *ids = malloc((*n + 1) * sizeof *ids);
    for (size_t i = 0; i < *n; i++)
        ids[i] = (int32_t)json_integer_value(json_array_get(arr, i));
    return ids;
}

/* The seedling reference logits (1024 floats) that a vectors.json entry
 * names in `field` (e.g. "logits_base"); NULL if unreadable. */
static inline float *reference_logits(json_t *vec, const char *field)
{
    char rel[512], p[1024];
    snprintf(rel, sizeof rel, "models/seedling/reference/%s",
             json_string_value(json_object_get(vec, field)));
    return read_f32_file(shared_path(p, sizeof p, rel), 1024);
}

/* Reference prompt i of vectors.json's "vectors": the entry, its token
 * ids and the reference logits that `field` names. false (and nothing
 * to free) when either is missing; else free with ref_prompt_free. */
typedef struct ref_prompt {
    json_t *v;
    int32_t *ids;
    size_t n;
    float *logits; /* 1024 */
} ref_prompt;

static inline bool ref_prompt_load(ref_prompt *r, json_t *vectors, size_t i, const char *field)
{
    r->v = json_array_get(vectors, i);
    r->ids = json_ids(json_object_get(r->v, "ids"), &r->n);
    r->logits = reference_logits(r->v, field);
    if (r->ids && r->logits)
        return true;
    free(r->ids);
    free(r->logits);
    return false;
}

static inline void ref_prompt_free(ref_prompt *r)
{
    free(r->ids);
    free(r->logits);
}

static inline json_t *load_vectors(void)
{
    char p[1024];
    return json_load_file(shared_path(p, sizeof p, "models/seedling/reference/vectors.json"), 0,
                          NULL);
}

#endif
