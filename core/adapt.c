/* Mixtures, adapted weight sets and the policy choosing between them. */
#include "adapt.h"
#include "clock.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- mixtures ---- */

int t2_mixture_add(t2_mixture *mx, t2_expert *e, float alpha, const float *alpha_per_mat,
                   size_t n_mats, t2_err *err)
{
    if (!isfinite(alpha))
        return t2_err_set(err, "mixture weight of '%s' is not finite", e->name);
    t2_mix_term *t = realloc(mx->terms, (mx->n + 1) * sizeof *t);
    if (!t)
        return t2_err_set(err, "out of memory");
    mx->terms = t;
    t2_mix_term *term = &mx->terms[mx->n];
    term->alpha = alpha;
    term->alpha_per_mat = NULL;
    if (alpha_per_mat) {
        term->alpha_per_mat = malloc(n_mats * sizeof(float));
        if (!term->alpha_per_mat)
            return t2_err_set(err, "out of memory");
        memcpy(term->alpha_per_mat, alpha_per_mat, n_mats * sizeof(float));
    }
    term->expert = t2_expert_ref(e);
    mx->n++;
    return 0;
}

void t2_mixture_clear(t2_mixture *mx)
{
    for (size_t i = 0; i < mx->n; i++) {
        t2_expert_unref(mx->terms[i].expert);
        free(mx->terms[i].alpha_per_mat);
    }
    free(mx->terms);
    mx->terms = NULL;
    mx->n = 0;
}

static int cmp_terms(const void *a, const void *b)
{
    const t2_mix_term *x = *(const t2_mix_term *const *)a, *y = *(const t2_mix_term *const *)b;
    return strcmp(x->expert->name, y->expert->name);
}

static bool term_is_zero(const t2_mix_term *t)
{
    return t->alpha == 0.0f && !t->alpha_per_mat;
}

char *t2_mixture_key(const t2_mixture *mx)
{
    const t2_mix_term **sorted = malloc((mx->n + 1) * sizeof *sorted);
    if (!sorted)
        return NULL;
    for (size_t i = 0; i < mx->n; i++)
        sorted[i] = &mx->terms[i];
    qsort(sorted, mx->n, sizeof *sorted, cmp_terms);
    size_t cap = 64 + mx->n * 128, len = 0;
    char *key = malloc(cap);
    if (!key) {
        free(sorted);
        return NULL;
    }
    key[0] = '\0';
    for (size_t i = 0; i < mx->n; i++) {
        const t2_mix_term *t = sorted[i];
        if (term_is_zero(t))
            continue;
        /* per-matrix alphas are keyed by a hash of their bits */
        uint64_t h = 1469598103934665603ULL;
        if (t->alpha_per_mat) {
            const uint8_t *p = (const uint8_t *)t->alpha_per_mat;
            for (size_t b = 0; b < t->expert->n_mats * sizeof(float); b++)
                h = (h ^ p[b]) * 1099511628211ULL;
        }
        len += (size_t)snprintf(key + len, cap - len, "%s%s@%016llx:%.9g%s%016llx", len ? ";" : "",
                                t->expert->name, (unsigned long long)t->expert->version,
                                (double)t->alpha, t->alpha_per_mat ? "/" : "",
                                t->alpha_per_mat ? (unsigned long long)h : 0ULL);
        if (len >= cap) { /* names are <= 64 chars, so this cannot happen; be safe */
            free(key);
            free(sorted);
            return NULL;
        }
    }
    free(sorted);
    return key;
}

/* ---- z' ---- */

void t2_mix_z_free(const t2_svf *svf, float **z)
{
    if (!z)
        return;
    for (size_t i = 0; i < svf->n; i++)
        free(z[i]);
    free(z);
}

static bool any_term_adapts(const t2_mixture *mx, size_t i)
{
    for (size_t k = 0; k < mx->n; k++)
        if (!term_is_zero(&mx->terms[k]) && mx->terms[k].expert->z[i])
            return true;
    return false;
}

int t2_mix_z(const t2_svf *svf, const t2_mixture *mx, float ***z_out, t2_err *err)
{
    *z_out = NULL;
    for (size_t k = 0; k < mx->n; k++)
        if (mx->terms[k].expert->n_mats != svf->n)
            return t2_err_set(err, "expert '%s' was built for another matrix set",
                              mx->terms[k].expert->name);
    float **z = calloc(svf->n, sizeof *z);
    if (!z)
        return t2_err_set(err, "out of memory");
    for (size_t i = 0; i < svf->n; i++) {
        if (!any_term_adapts(mx, i))
            continue;
        const t2_svf_matrix *mat = &svf->mats[i];
        float *zi = calloc((size_t)mat->r, sizeof *zi);
        if (!zi) {
            t2_mix_z_free(svf, z);
            return t2_err_set(err, "out of memory");
        }
        for (size_t k = 0; k < mx->n; k++) {
            const t2_mix_term *t = &mx->terms[k];
            float a = t->alpha_per_mat ? t->alpha_per_mat[i] : t->alpha;
            const float *zk = t->expert->z[i];
            for (int j = 0; j < mat->r; j++)
                zi[j] += a * (zk ? zk[j] : 1.0f);
        }
        double ssz = 0.0;
        for (int j = 0; j < mat->r; j++)
            ssz += (double)mat->s[j] * zi[j];
        if (fabs(ssz) < 1e-12 * mat->s_sum) { /* the scale would blow up: keep base */
            free(zi);
            zi = NULL;
        }
        z[i] = zi;
    }
    *z_out = z;
    return 0;
}

/* ---- adapted weight sets ---- */

static float **layer_field(t2_layer *L, int kind)
{
    switch (kind) {
    case T2_SVF_Q: return &L->wq;
    case T2_SVF_K: return &L->wk;
    case T2_SVF_V: return &L->wv;
    case T2_SVF_O: return &L->wo;
    case T2_SVF_GATE: return &L->w_gate;
    case T2_SVF_UP: return &L->w_up;
    default: return &L->w_down;
    }
}

static t2_adapted *adapted_new(const t2_model *m, size_t bytes, t2_err *err)
{
    t2_adapted *a = calloc(1, sizeof *a);
    if (!a) {
        t2_err_set(err, "out of memory");
        return NULL;
    }
    atomic_init(&a->refs, 1);
    a->layers = malloc((size_t)m->cfg.n_layers * sizeof *a->layers);
    a->storage = bytes ? aligned_alloc(64, (bytes + 63) / 64 * 64) : NULL;
    a->bytes = bytes;
    if (!a->layers || (bytes && !a->storage)) {
        t2_adapted_unref(a);
        t2_err_set(err, "out of memory for adapted weights (%zu MB)", bytes >> 20);
        return NULL;
    }
    memcpy(a->layers, m->layers, (size_t)m->cfg.n_layers * sizeof *a->layers);
    return a;
}

typedef struct build_job {
    const t2_svf *svf;
    float *const *z;
    t2_wtype wtype;
    void **dst;   /* [svf->n] destination per matrix, NULL = not adapted */
    t2_wmat *out; /* [svf->n] what was written there */
    size_t max_mr, max_mn;
    bool failed;
    const atomic_bool *stop; /* NULL: never */
    atomic_bool stopped;
} build_job;

/* W' in float32, then (for a bf16/q8_0 model) in the model's format, so an
 * expert reads as many bytes per token as the base model. */
static void build_worker(void *arg, int w, int nw)
{
    build_job *j = arg;
    float *tmp = malloc(j->max_mr * sizeof *tmp);
    float *f32 = j->wtype == T2_W_F32 ? NULL : malloc(j->max_mn * sizeof *f32);
    if (!tmp || (j->wtype != T2_W_F32 && !f32)) {
        free(tmp);
        j->failed = true;
        return;
    }
    for (size_t i = (size_t)w; i < j->svf->n; i += (size_t)nw) {
        if (j->stop && atomic_load(j->stop)) {
            atomic_store(&j->stopped, true);
            break;
        }
        if (!j->dst[i])
            continue;
        const t2_svf_matrix *mat = &j->svf->mats[i];
        float *wf = f32 ? f32 : j->dst[i];
        t2_svf_materialise(mat, j->z[i], wf, tmp);
        j->out[i] = t2_wmat_from_f32(j->wtype, j->dst[i], wf, mat->m, mat->n);
    }
    free(tmp);
    free(f32);
}

/* A matrix's factored view with singular values s: its factors, bf16
 * and Q8_0 copies (NULL where not built) and the model's own matrix. */
static t2_factor mat_factor(const t2_svf_matrix *mat, const float *s)
{
    bool rot = mat->rot_q8_bytes != NULL, fac = rot && mat->fac_q8.data;
    bool v_square = mat->r == mat->n;
    return (t2_factor){.u = mat->u,
                       .vt = mat->vt,
                       .s = s,
                       .m = mat->m,
                       .n = mat->n,
                       .r = mat->r,
                       .u_bf16 = mat->u_bf16,
                       .vt_bf16 = mat->vt_bf16,
                       .base = &mat->wm,
                       .sigma = mat->s,
                       .rot_q8 = rot ? &mat->rot_q8 : NULL,
                       .rot_q8_t = rot ? &mat->rot_q8_t : NULL,
                       .u_q8 = fac ? (v_square ? &mat->fac_q8 : &mat->rot_q8) : NULL,
                       .vt_q8 = fac ? (v_square ? &mat->rot_q8 : &mat->fac_q8) : NULL,
                       .u_head = fac ? mat->u_head : NULL};
}

t2_factor *t2_svf_views(const t2_model *m, const t2_svf *svf, float *const *s, t2_err *err)
{
    t2_factor *t = calloc((size_t)m->cfg.n_layers * T2_N_FACTOR_KINDS, sizeof *t);
    if (!t) {
        t2_err_set(err, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < svf->n; i++) {
        const t2_svf_matrix *mat = &svf->mats[i];
        t[(size_t)mat->layer * T2_N_FACTOR_KINDS + (size_t)mat->kind] =
            mat_factor(mat, s && s[i] ? s[i] : mat->s);
    }
    return t;
}

int t2_adapt_attach_base(t2_model *m, const t2_svf *svf, t2_factor **table, t2_err *err)
{
    *table = t2_svf_views(m, svf, NULL, err);
    if (!*table)
        return -1;
    for (int l = 0; l < m->cfg.n_layers; l++)
        m->layers[l].mix = *table + (size_t)l * T2_N_FACTOR_KINDS;
    return 0;
}

/* A materialised set also carries its scaled singular values (r floats
 * per matrix, appended to a->views_s), so its rows can run factored when
 * they share a batch with other weight sets. */
static int attach_views(t2_adapted *a, const t2_model *m, const t2_svf *svf, float *const *z,
                        t2_err *err)
{
    size_t floats = 0;
    for (size_t i = 0; i < svf->n; i++)
        if (z[i])
            floats += (size_t)svf->mats[i].r;
    float **s = calloc(svf->n + 1, sizeof *s);
    a->views_s = malloc((floats ? floats : 1) * sizeof(float));
    if (!s || !a->views_s) {
        free(s);
        return t2_err_set(err, "out of memory");
    }
    size_t off = 0;
    for (size_t i = 0; i < svf->n; i++) {
        if (!z[i])
            continue;
        s[i] = a->views_s + off;
        off += (size_t)svf->mats[i].r;
        t2_svf_scaled_s(&svf->mats[i], z[i], s[i]);
    }
    a->factors = t2_svf_views(m, svf, s, err);
    free(s);
    if (!a->factors)
        return -1;
    for (int l = 0; l < m->cfg.n_layers; l++)
        a->layers[l].mix = a->factors + (size_t)l * T2_N_FACTOR_KINDS;
    return 0;
}

size_t t2_adapted_max_bytes(const t2_model *m, const t2_svf *svf)
{
    size_t bytes = 0;
    for (size_t i = 0; i < svf->n; i++)
        bytes += t2_wmat_alloc_bytes(m->wtype, svf->mats[i].m, svf->mats[i].n);
    return bytes;
}

int t2_adapted_build(t2_adapted **out, const t2_model *m, const t2_svf *svf, float *const *z,
                     t2_pool *pool, t2_err *err)
{
    return t2_adapted_build_until(out, m, svf, z, pool, NULL, err);
}

int t2_adapted_build_until(t2_adapted **out, const t2_model *m, const t2_svf *svf, float *const *z,
                           t2_pool *pool, const atomic_bool *stop, t2_err *err)
{
    double t0 = t2_now_ms();
    *out = NULL;
    size_t bytes = 0, max_mr = 0, max_mn = 0;
    for (size_t i = 0; i < svf->n; i++) {
        const t2_svf_matrix *mat = &svf->mats[i];
        if (z[i])
            bytes += t2_wmat_alloc_bytes(m->wtype, mat->m, mat->n);
        if ((size_t)mat->m * (size_t)mat->r > max_mr)
            max_mr = (size_t)mat->m * (size_t)mat->r;
        if ((size_t)mat->m * (size_t)mat->n > max_mn)
            max_mn = (size_t)mat->m * (size_t)mat->n;
    }
    t2_adapted *a = adapted_new(m, bytes, err);
    if (!a)
        return -1;
    void **dst = calloc(svf->n + 1, sizeof *dst);
    t2_wmat *mats = calloc(svf->n + 1, sizeof *mats);
    if (!dst || !mats) {
        free(dst);
        free(mats);
        t2_adapted_unref(a);
        return t2_err_set(err, "out of memory");
    }
    size_t off = 0;
    for (size_t i = 0; i < svf->n; i++) {
        const t2_svf_matrix *mat = &svf->mats[i];
        if (!z[i])
            continue;
        dst[i] = (char *)a->storage + off;
        off += t2_wmat_alloc_bytes(m->wtype, mat->m, mat->n);
    }
    build_job j = {svf, z, m->wtype, dst, mats, max_mr, max_mn, false, stop, false};
    t2_pool_run(pool, build_worker, &j);
    bool stopped = atomic_load(&j.stopped);
    for (size_t i = 0; i < svf->n && !j.failed && !stopped; i++) {
        const t2_svf_matrix *mat = &svf->mats[i];
        if (!dst[i])
            continue;
        t2_layer *L = &a->layers[mat->layer];
        L->mat[mat->kind] = mats[i];
        *layer_field(L, mat->kind) = m->wtype == T2_W_F32 ? dst[i] : NULL;
    }
    free(dst);
    free(mats);
    if (j.failed || stopped) {
        t2_adapted_unref(a);
        return t2_err_set(err, stopped ? "cancelled"
                                       : "out of memory while materialising adapted weights");
    }
    if (attach_views(a, m, svf, z, err) != 0) {
        t2_adapted_unref(a);
        return -1;
    }
    a->build_ms = t2_now_ms() - t0;
    *out = a;
    return 0;
}

int t2_adapted_build_factored(t2_adapted **out, const t2_model *m, const t2_svf *svf,
                              float *const *z, t2_err *err)
{
    double t0 = t2_now_ms();
    *out = NULL;
    size_t floats = 0;
    for (size_t i = 0; i < svf->n; i++)
        if (z[i])
            floats += (size_t)svf->mats[i].r;
    t2_adapted *a = adapted_new(m, floats * sizeof(float), err);
    if (!a)
        return -1;
    a->factored = true;
    size_t nf = (size_t)m->cfg.n_layers * T2_N_FACTOR_KINDS;
    a->factors = calloc(nf, sizeof *a->factors);
    if (!a->factors) {
        t2_adapted_unref(a);
        return t2_err_set(err, "out of memory");
    }
    size_t off = 0;
    for (size_t i = 0; i < svf->n; i++) {
        const t2_svf_matrix *mat = &svf->mats[i];
        if (!z[i])
            continue;
        float *s = a->storage + off;
        off += (size_t)mat->r;
        t2_svf_scaled_s(mat, z[i], s);
        a->factors[(size_t)mat->layer * T2_N_FACTOR_KINDS + (size_t)mat->kind] = mat_factor(mat, s);
    }
    for (int l = 0; l < m->cfg.n_layers; l++)
        a->layers[l].factors = a->factors + (size_t)l * T2_N_FACTOR_KINDS;
    a->build_ms = t2_now_ms() - t0;
    *out = a;
    return 0;
}

t2_adapted *t2_adapted_ref(t2_adapted *a)
{
    atomic_fetch_add(&a->refs, 1);
    return a;
}

void t2_adapted_unref(t2_adapted *a)
{
    if (!a || atomic_fetch_sub(&a->refs, 1) != 1)
        return;
    free(a->layers);
    free(a->factors);
    free(a->views_s);
    free(a->storage);
    free(a->key);
    free(a);
}

/* ---- policy ---- */

int t2_adapt_weights(t2_adapted **out, const t2_model *m, const t2_svf *svf, const t2_mixture *mx,
                     t2_adapt_cache *cache, t2_pool *pool, const t2_weights_policy *policy,
                     int max_tokens, t2_err *err)
{
    *out = NULL;
    char *key = t2_mixture_key(mx);
    if (!key)
        return t2_err_set(err, "out of memory");
    if (!key[0]) { /* nothing to adapt: base weights */
        free(key);
        return 0;
    }
    t2_adapted *a = cache ? t2_adapt_cache_get(cache, key) : NULL;
    if (a) {
        free(key);
        *out = a;
        return 0;
    }
    uint64_t tokens = max_tokens > 0 ? (uint64_t)max_tokens : 0;
    bool materialise =
        cache && policy &&
        t2_adapt_cache_tokens(cache, key) + tokens >=
            (uint64_t)(policy->materialise_min_tokens > 0 ? policy->materialise_min_tokens : 1);
    if (cache && policy && !materialise)
        t2_adapt_cache_charge(cache, key, tokens);
    a = cache && !materialise ? t2_adapt_cache_factored_get(cache, key) : NULL;
    if (a) { /* the mixture's factored set, shared with its other requests */
        free(key);
        *out = a;
        return 0;
    }
    float **z;
    if (t2_mix_z(svf, mx, &z, err) != 0) {
        free(key);
        return -1;
    }
    int rc = materialise ? t2_adapted_build(&a, m, svf, z, pool, err)
                         : t2_adapted_build_factored(&a, m, svf, z, err);
    t2_mix_z_free(svf, z);
    if (rc != 0) {
        free(key);
        return -1;
    }
    a->key = key;
    if (materialise)
        t2_adapt_cache_put(cache, key, a);
    else if (cache)
        t2_adapt_cache_factored_put(cache, key, a);
    *out = a;
    return 0;
}

int t2_adapt_weights_factored(t2_adapted **out, const t2_model *m, const t2_svf *svf,
                              const t2_mixture *mx, t2_adapt_cache *cache, t2_err *err)
{
    return t2_adapt_weights(out, m, svf, mx, cache, NULL, NULL, 0, err);
}

int t2_adapt_materialise(t2_adapted **out, const t2_model *m, const t2_svf *svf,
                         const t2_mixture *mx, t2_adapt_cache *cache, t2_pool *pool,
                         const atomic_bool *stop, t2_err *err)
{
    *out = NULL;
    char *key = t2_mixture_key(mx);
    if (!key)
        return t2_err_set(err, "out of memory");
    t2_adapted *a = key[0] ? t2_adapt_cache_peek(cache, key) : NULL;
    float **z = NULL;
    if (!key[0] || a) {
        free(key);
        *out = a;
        return 0;
    }
    if (t2_mix_z(svf, mx, &z, err) != 0 ||
        t2_adapted_build_until(&a, m, svf, z, pool, stop, err) != 0) {
        t2_mix_z_free(svf, z);
        free(key);
        return -1;
    }
    t2_mix_z_free(svf, z);
    a->key = key;
    if (cache)
        t2_adapt_cache_put(cache, key, a);
    *out = a;
    return 0;
}
