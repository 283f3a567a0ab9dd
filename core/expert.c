/* Expert files: parse a safetensors buffer, validate every z vector
 * against the model's SVF matrices, decode metadata. See expert.h. */
#include "expert.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

#define NAME_MAX_LEN 64

bool t2_expert_name_valid(const char *name)
{
    if (!name)
        return false;
    size_t n = strlen(name);
    /* a leading '.' would make a hidden file (and covers "." and "..") */
    if (n == 0 || n > NAME_MAX_LEN || name[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

t2_expert *t2_expert_ref(t2_expert *e)
{
    if (e)
        atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
    return e;
}

static void expert_free(t2_expert *e)
{
    if (e->z)
        for (size_t i = 0; i < e->n_mats; i++)
            free(e->z[i]);
    free(e->z);
    free(e->name);
    free(e->task);
    free(e->description);
    free(e->base_model);
    free(e->parametrization);
    free(e->adapted);
    free(e);
}

void t2_expert_unref(t2_expert *e)
{
    /* acq_rel: the last owner must see every other owner's writes before freeing */
    if (e && atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1)
        expert_free(e);
}

/* FNV-1a 64 of the file: identical bytes give the same version, without
 * any process-wide counter. */
static uint64_t fnv1a64(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* The decoded parametrisation, shared by every tensor of one file. */
typedef struct param {
    bool sigmoid;
    double max_mult;
} param;

static int dup_field(char **dst, const char *src, t2_err *err)
{
    *dst = strdup(src);
    return *dst ? 0 : t2_err_set(err, "out of memory");
}

static int require_meta(const t2_safetensors *st, const char *key, const char **out, t2_err *err)
{
    *out = t2_st_meta_get(st, key);
    if (!*out)
        return t2_err_set(err, "__metadata__ lacks '%s'", key);
    return 0;
}

static int decode_param(const t2_safetensors *st, param *p, t2_err *err)
{
    const char *kind;
    if (require_meta(st, "parametrization", &kind, err) != 0)
        return -1;
    if (strcmp(kind, "direct") == 0) {
        p->sigmoid = false;
        p->max_mult = 1.0;
        return 0;
    }
    if (strcmp(kind, "sigmoid") != 0)
        return t2_err_set(err, "parametrization '%s' is not supported (direct, sigmoid are)", kind);
    p->sigmoid = true;
    p->max_mult = 1.0;
    const char *mm = t2_st_meta_get(st, "max_mult");
    if (!mm)
        return 0;
    char *end;
    p->max_mult = strtod(mm, &end);
    if (end == mm || *end != '\0' || !isfinite(p->max_mult) || p->max_mult <= 0)
        return t2_err_set(err, "max_mult '%s' is not a finite number > 0", mm);
    return 0;
}

static int decode_name(t2_expert *e, const t2_safetensors *st, const char *name_override,
                       t2_err *err)
{
    const char *name = name_override;
    if (!name && require_meta(st, "name", &name, err) != 0)
        return -1;
    if (!t2_expert_name_valid(name))
        return t2_err_set(
            err, "invalid expert name '%s' (1-64 of A-Z a-z 0-9 . _ -, not starting with '.')",
            name);
    return dup_field(&e->name, name, err);
}

static int decode_meta(t2_expert *e, const t2_safetensors *st, const t2_svf *svf,
                       const char *base_model_name, const char *name_override, t2_err *err)
{
    if (decode_name(e, st, name_override, err) != 0)
        return -1;
    const char *base, *kind;
    if (require_meta(st, "base_model", &base, err) != 0 ||
        require_meta(st, "parametrization", &kind, err) != 0)
        return -1;
    if (base_model_name && strcmp(base, base_model_name) != 0)
        return t2_err_set(err, "expert was trained for base model '%s', this server runs '%s'",
                          base, base_model_name);
    const char *task = t2_st_meta_get(st, "task");
    const char *desc = t2_st_meta_get(st, "description");
    const char *adapted = t2_st_meta_get(st, "adapted");
    if (!task || !*task)
        task = e->name;
    if (dup_field(&e->base_model, base, err) != 0 ||
        dup_field(&e->parametrization, kind, err) != 0 || dup_field(&e->task, task, err) != 0 ||
        dup_field(&e->description, desc ? desc : "", err) != 0)
        return -1;
    return dup_field(&e->adapted, adapted ? adapted : t2_svf_set_name(svf->set), err);
}

/* Linear search: files hold at most a few hundred tensors. */
static int find_matrix(const t2_svf *svf, const char *name)
{
    for (size_t i = 0; i < svf->n; i++)
        if (strcmp(svf->mats[i].name, name) == 0)
            return (int)i;
    return -1;
}

static int check_finite(const char *tname, const float *v, size_t n, t2_err *err)
{
    for (size_t i = 0; i < n; i++) {
        if (isnan(v[i]))
            return t2_err_set(err, "tensor '%s': value %zu is NaN", tname, i);
        if (isinf(v[i]))
            return t2_err_set(err, "tensor '%s': value %zu is %sInf", tname, i,
                              v[i] < 0 ? "-" : "+");
    }
    return 0;
}

/* z = max_mult * sigmoid(p), in double: finite for every finite p. */
static void apply_param(float *v, size_t n, const param *p)
{
    if (!p->sigmoid)
        return;
    for (size_t i = 0; i < n; i++)
        v[i] = (float)(p->max_mult / (1.0 + exp(-(double)v[i])));
}

static int decode_tensor(t2_expert *e, const t2_st_tensor *t, const t2_svf *svf, const param *p,
                         t2_err *err)
{
    int idx = find_matrix(svf, t->name);
    if (idx < 0)
        return t2_err_set(err,
                          "tensor '%s' is not an adaptable matrix of this model (adapted set: %s)",
                          t->name, t2_svf_set_name(svf->set));
    const t2_svf_matrix *mat = &svf->mats[idx];
    if (t->n_dims != 1)
        return t2_err_set(err, "tensor '%s': %d dimensions, expected 1 (a vector of %d)", t->name,
                          t->n_dims, mat->r);
    if (t->shape[0] != (uint64_t)mat->r)
        return t2_err_set(err, "tensor '%s': length %llu, expected %d", t->name,
                          (unsigned long long)t->shape[0], mat->r);
    if (e->z[idx]) /* the JSON parser rejects duplicate keys; kept as a guard */
        return t2_err_set(err, "tensor '%s' appears twice", t->name);
    float *v = malloc((size_t)mat->r * sizeof *v);
    if (!v)
        return t2_err_set(err, "out of memory");
    e->z[idx] = v;
    t2_st_to_f32(t, v);
    if (check_finite(t->name, v, (size_t)mat->r, err) != 0)
        return -1;
    apply_param(v, (size_t)mat->r, p);
    return check_finite(t->name, v, (size_t)mat->r, err);
}

static int decode_tensors(t2_expert *e, const t2_safetensors *st, const t2_svf *svf, t2_err *err)
{
    if (st->n_tensors == 0)
        return t2_err_set(err, "no tensors (an expert holds at least one z vector)");
    param p = {false, 1.0};
    if (decode_param(st, &p, err) != 0)
        return -1;
    for (size_t i = 0; i < st->n_tensors; i++)
        if (decode_tensor(e, &st->tensors[i], svf, &p, err) != 0)
            return -1;
    return 0;
}

static t2_expert *expert_alloc(size_t n_mats)
{
    t2_expert *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    atomic_init(&e->refs, 1);
    e->n_mats = n_mats;
    e->z = calloc(n_mats ? n_mats : 1, sizeof *e->z);
    if (!e->z) {
        free(e);
        return NULL;
    }
    return e;
}

int t2_expert_parse(t2_expert **out, const uint8_t *buf, size_t len, const char *source,
                    const t2_svf *svf, const char *base_model_name, const char *name_override,
                    t2_err *err)
{
    *out = NULL;
    if (!source)
        source = "upload";
    t2_safetensors st;
    memset(&st, 0, sizeof st); /* t2_st_parse reads st->file before clearing it */
    if (t2_st_parse(&st, buf, len, source, err) != 0)
        return -1; /* already prefixed with source */
    t2_expert *e = expert_alloc(svf->n);
    if (!e) {
        t2_st_close(&st);
        t2_err_set(err, "out of memory");
        return t2_err_prefix(err, source);
    }
    int rc = decode_meta(e, &st, svf, base_model_name, name_override, err);
    if (rc == 0)
        rc = decode_tensors(e, &st, svf, err);
    t2_st_close(&st);
    if (rc != 0) {
        expert_free(e);
        return t2_err_prefix(err, source);
    }
    e->version = fnv1a64(buf, len);
    e->file_bytes = len;
    *out = e;
    return 0;
}
