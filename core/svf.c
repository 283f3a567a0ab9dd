/* SVF factors: the adaptable matrices of a model, their SVDs (computed in
 * parallel or loaded from the cache in svf_cache.c) and the ways to apply
 * an expert vector z to them. */
#include "svf.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "dtype.h"
#include "kernels.h"
#include "svf_cache.h"

/* Matrices are decomposed two at a time, each SVD single-threaded: LAPACK's
 * SVD parallelises poorly, whole matrices in parallel scale well. */
#define SVF_THREADS 2

/* ---- sets ---- */

int t2_svf_parse_set(const char *text, unsigned *set, t2_err *err)
{
    static const struct {
        const char *text;
        unsigned set;
    } names[] = {
        {"mlp", T2_SVF_MLP},
        {"attn", T2_SVF_ATTN},
        {"mlp,attn", T2_SVF_MLP | T2_SVF_ATTN},
        {"attn,mlp", T2_SVF_MLP | T2_SVF_ATTN},
        {"all", T2_SVF_MLP | T2_SVF_ATTN},
    };
    if (!text)
        return t2_err_set(err, "missing SVF matrix set (expected mlp, attn, mlp,attn or all)");
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(text, names[i].text) == 0) {
            *set = names[i].set;
            return 0;
        }
    }
    return t2_err_set(err, "invalid SVF matrix set '%.200s' (expected mlp, attn, mlp,attn or all)",
                      text);
}

const char *t2_svf_set_name(unsigned set)
{
    switch (set) {
    case T2_SVF_MLP: return "mlp";
    case T2_SVF_ATTN: return "attn";
    case T2_SVF_MLP | T2_SVF_ATTN: return "mlp,attn";
    default: return "invalid";
    }
}

/* ---- the matrices of a set ---- */

static const struct {
    const char *name; /* between "model.layers.N." and ".weight" */
    int kind;
    unsigned set;
} KINDS[] = {
    {"self_attn.q_proj", T2_SVF_Q, T2_SVF_ATTN}, {"self_attn.k_proj", T2_SVF_K, T2_SVF_ATTN},
    {"self_attn.v_proj", T2_SVF_V, T2_SVF_ATTN}, {"self_attn.o_proj", T2_SVF_O, T2_SVF_ATTN},
    {"mlp.gate_proj", T2_SVF_GATE, T2_SVF_MLP},  {"mlp.up_proj", T2_SVF_UP, T2_SVF_MLP},
    {"mlp.down_proj", T2_SVF_DOWN, T2_SVF_MLP},
};
#define N_KINDS (sizeof KINDS / sizeof KINDS[0])

static int fill_matrix(t2_svf_matrix *mat, const t2_model *m, int l, size_t k, t2_err *err)
{
    char name[128];
    snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, KINDS[k].name);
    mat->name = strdup(name);
    if (!mat->name)
        return t2_err_set(err, "out of memory");
    mat->layer = l;
    mat->kind = KINDS[k].kind;
    mat->wm = t2_layer_wmat(&m->layers[l], &m->cfg, mat->kind);
    mat->w = mat->wm.type == T2_W_F32 ? mat->wm.data : NULL;
    mat->m = mat->wm.rows;
    mat->n = mat->wm.cols;
    mat->r = mat->m < mat->n ? mat->m : mat->n;
    if (!mat->wm.data || mat->m <= 0 || mat->n <= 0)
        return t2_err_set(err, "%s: the model has no such weights", name);
    return 0;
}

/* s->mats in model order: per layer, the set's kinds in KINDS order. */
static int list_matrices(t2_svf *s, const t2_model *m, t2_err *err)
{
    size_t per_layer = 0;
    for (size_t k = 0; k < N_KINDS; k++)
        per_layer += (KINDS[k].set & s->set) != 0;
    size_t total = per_layer * (size_t)m->cfg.n_layers;
    s->mats = calloc(total ? total : 1, sizeof *s->mats);
    if (!s->mats)
        return t2_err_set(err, "out of memory");
    for (int l = 0; l < m->cfg.n_layers; l++) {
        for (size_t k = 0; k < N_KINDS; k++) {
            if (!(KINDS[k].set & s->set))
                continue;
            if (fill_matrix(&s->mats[s->n++], m, l, k, err) != 0)
                return -1;
        }
    }
    return 0;
}

/* ---- factor memory ---- */

/* floats rounded up to a 64-byte multiple: each factor starts aligned */
static size_t pad16(size_t n)
{
    return (n + 15) & ~(size_t)15;
}

int t2_svf_factors_alloc(t2_svf_matrix *mat)
{
    size_t nu = pad16((size_t)mat->m * mat->r), ns = pad16((size_t)mat->r);
    size_t nv = pad16((size_t)mat->r * mat->n);
    float *p = aligned_alloc(64, (nu + ns + nv) * sizeof(float));
    if (!p)
        return -1;
    mat->u = p;
    mat->s = p + nu;
    mat->vt = p + nu + ns;
    return 0;
}

void t2_svf_factors_free(t2_svf_matrix *mat)
{
    free(mat->u);
    free(mat->u_bf16);
    free(mat->vt_bf16);
    free(mat->rot_q8_bytes);
    mat->u = mat->s = mat->vt = NULL;
    mat->u_bf16 = mat->vt_bf16 = NULL;
    mat->rot_q8_bytes = NULL;
    mat->rot_q8 = mat->rot_q8_t = mat->fac_q8 = (t2_wmat){0};
    mat->u_head = NULL;
}

/* 64-byte aligned, as the model's own matrices: the kernels load whole
 * cache lines of a row (AMX tile rows are 64 bytes), and malloc's 16-byte
 * alignment split every such load over two lines. */
static uint16_t *to_bf16(const float *src, size_t n)
{
    uint16_t *dst = aligned_alloc(64, (n * sizeof *dst + 63) / 64 * 64);
    for (size_t i = 0; dst && i < n; i++)
        dst[i] = t2_f32_to_bf16(src[i]);
    return dst;
}

/* The square factor R (r x r: Vt where r = n, else U) and its transpose
 * in Q8_0, and the other factor where its columns are whole Q8_0 blocks,
 * in one allocation (t2_svf_matrix.rot_q8). The transpose is quantised
 * 32 rows at a time from a small buffer, not from a whole f32 copy (3.7
 * MB per matrix for smollm2-360m, which left the heap ~170 MB larger
 * after the 96 of them). */
static int rot_q8_copies(t2_svf_matrix *mat)
{
    enum { B = 32 };
    int r = mat->r;
    bool v_square = mat->r == mat->n;
    const float *sq = v_square ? mat->vt : mat->u;
    const float *other = v_square ? mat->u : mat->vt;
    int o_rows = v_square ? mat->m : r, o_cols = v_square ? r : mat->n;
    /* multiples of 64 bytes: each copy starts on a cache line */
    size_t one = t2_wmat_alloc_bytes(T2_W_Q8_0, r, r);
    size_t o_bytes =
        o_cols % T2_Q8_0_BLOCK == 0 ? t2_wmat_alloc_bytes(T2_W_Q8_0, o_rows, o_cols) : 0;
    size_t head_bytes = o_bytes ? (size_t)mat->m * T2_Q8_0_BLOCK * sizeof(float) : 0;
    float *t = malloc((size_t)B * (size_t)r * sizeof *t);
    mat->rot_q8_bytes = aligned_alloc(64, 2 * one + o_bytes + head_bytes);
    if (!t || !mat->rot_q8_bytes) {
        free(t);
        return -1;
    }
    mat->rot_q8 = t2_wmat_from_f32(T2_W_Q8_0, mat->rot_q8_bytes, sq, r, r);
    uint8_t *tq = mat->rot_q8_bytes + one;
    for (int k0 = 0; k0 < r; k0 += B) {
        int kn = r - k0 < B ? r - k0 : B;
        for (int i = 0; i < r; i++) /* R's row i: column i of the transpose's rows k0.. */
            for (int k = 0; k < kn; k++)
                t[(size_t)k * (size_t)r + (size_t)i] = sq[(size_t)i * (size_t)r + (size_t)(k0 + k)];
        t2_wmat_from_f32(T2_W_Q8_0, tq + (size_t)k0 * mat->rot_q8.stride, t, kn, r);
    }
    mat->rot_q8_t = (t2_wmat){T2_W_Q8_0, tq, r, r, mat->rot_q8.stride};
    if (o_bytes) {
        mat->fac_q8 =
            t2_wmat_from_f32(T2_W_Q8_0, mat->rot_q8_bytes + 2 * one, other, o_rows, o_cols);
        mat->u_head = (float *)(void *)(mat->rot_q8_bytes + 2 * one + o_bytes);
        for (size_t k = 0; k < T2_Q8_0_BLOCK; k++)
            for (size_t i = 0; i < (size_t)mat->m; i++)
                mat->u_head[k * (size_t)mat->m + i] = mat->u[i * (size_t)r + k];
    }
    free(t);
    return 0;
}

int t2_svf_format_copies(t2_svf *s, const t2_model *m, t2_err *err)
{
    if (m->wtype == T2_W_F32)
        return 0;
    bool rot_q8 = m->wtype == T2_W_Q8_0 && t2_kernels_get()->rotate_q8;
    for (size_t i = 0; i < s->n; i++) {
        t2_svf_matrix *mat = &s->mats[i];
        if (rot_q8 && (mat->r == mat->n || mat->r == mat->m) && mat->r % T2_Q8_0_BLOCK == 0 &&
            rot_q8_copies(mat) != 0)
            return t2_err_set(err, "out of memory for Q8_0 SVF factors");
        /* with both factors in Q8_0 nothing reads bf16 ones: decode
         * rotates on the Q8_0 square factor, a prompt takes the Q8_0 U
         * and Vt (forward_layers.c); smollm2-360m 650 MB not kept */
        if (mat->u_head)
            continue;
        mat->u_bf16 = to_bf16(mat->u, (size_t)mat->m * (size_t)mat->r);
        mat->vt_bf16 = to_bf16(mat->vt, (size_t)mat->r * (size_t)mat->n);
        if (!mat->u_bf16 || !mat->vt_bf16)
            return t2_err_set(err, "out of memory for bf16 SVF factors");
    }
    return 0;
}

void t2_svf_update_sum(t2_svf_matrix *mat)
{
    double sum = 0;
    for (int k = 0; k < mat->r; k++)
        sum += (double)mat->s[k];
    mat->s_sum = sum;
}

void t2_svf_free(t2_svf *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++) {
        free(s->mats[i].name);
        t2_svf_factors_free(&s->mats[i]);
    }
    free(s->mats);
    free(s);
}

/* ---- a parallel loop over matrices ---- */

typedef int (*item_fn)(void *ctx, size_t i, t2_err *err);

typedef struct par_loop {
    item_fn fn;
    void *ctx;
    size_t n;
    atomic_size_t next;
    atomic_bool failed;
    pthread_mutex_t mu; /* guards err, done and the progress callback */
    t2_err err;         /* the first failure */
    size_t done;
    t2_svf_progress_fn progress;
    void *user;
    double t0;
} par_loop;

/* Reports one finished item; serialised so that `done` only grows and the
 * callback never runs twice at once. */
static void par_finish(par_loop *p, int rc, const t2_err *e)
{
    pthread_mutex_lock(&p->mu);
    if (rc != 0) {
        if (!atomic_exchange(&p->failed, true))
            p->err = *e;
    } else {
        p->done++;
        if (p->progress)
            p->progress(p->user, p->done, p->n, t2_now_ms() / 1e3 - p->t0);
    }
    pthread_mutex_unlock(&p->mu);
}

static void *par_worker(void *arg)
{
    par_loop *p = arg;
    while (!atomic_load(&p->failed)) {
        size_t i = atomic_fetch_add(&p->next, 1);
        if (i >= p->n)
            break;
        t2_err e = {{0}};
        par_finish(p, p->fn(p->ctx, i, &e), &e);
    }
    return NULL;
}

/* Runs fn over [0, n) on SVF_THREADS threads (the caller is one). */
static int par_for(item_fn fn, void *ctx, size_t n, t2_svf_progress_fn progress, void *user,
                   t2_err *err)
{
    par_loop p = {
        .fn = fn, .ctx = ctx, .n = n, .progress = progress, .user = user, .t0 = t2_now_ms() / 1e3};
    atomic_init(&p.next, 0);
    atomic_init(&p.failed, false);
    if (pthread_mutex_init(&p.mu, NULL) != 0)
        return t2_err_set(err, "cannot create a mutex");
    pthread_t th[SVF_THREADS];
    int started = 0;
    /* A thread that cannot be created only costs speed: the items are
     * shared dynamically, so fewer workers still finish them all. */
    for (int t = 1; t < SVF_THREADS; t++)
        if (pthread_create(&th[started], NULL, par_worker, &p) == 0)
            started++;
    par_worker(&p);
    for (int t = 0; t < started; t++)
        pthread_join(th[t], NULL);
    pthread_mutex_destroy(&p.mu);
    if (atomic_load(&p.failed)) {
        *err = p.err;
        return -1;
    }
    return 0;
}

/* ---- the cache key ---- */

typedef struct key_job {
    const t2_svf *s;
    uint64_t *digest;
} key_job;

static int hash_one(void *ctx, size_t i, t2_err *err)
{
    (void)err;
    key_job *j = ctx;
    const t2_svf_matrix *mat = &j->s->mats[i];
    /* the stored bytes: a bf16 or q8_0 model has other factors than its f32 */
    j->digest[i] = t2_hash64(mat->wm.data, (size_t)mat->m * mat->wm.stride, 0);
    return 0;
}

/* Hash of the set and every matrix's name, shape and weights (hashed per
 * matrix in parallel, then combined in order). */
static int compute_key(t2_svf *s, t2_err *err)
{
    key_job j = {.s = s, .digest = calloc(s->n ? s->n : 1, sizeof(uint64_t))};
    if (!j.digest)
        return t2_err_set(err, "out of memory");
    if (par_for(hash_one, &j, s->n, NULL, NULL, err) != 0) {
        free(j.digest);
        return -1;
    }
    t2_hash64_state h;
    t2_hash64_init(&h, 0);
    uint32_t set = s->set;
    uint64_t n = s->n;
    t2_hash64_update(&h, "t2svf key 1", 11);
    t2_hash64_update(&h, &set, sizeof set);
    t2_hash64_update(&h, &n, sizeof n);
    for (size_t i = 0; i < s->n; i++) {
        const t2_svf_matrix *mat = &s->mats[i];
        uint32_t shape[3] = {(uint32_t)strlen(mat->name), (uint32_t)mat->m, (uint32_t)mat->n};
        t2_hash64_update(&h, shape, sizeof shape);
        t2_hash64_update(&h, mat->name, shape[0]);
        t2_hash64_update(&h, &j.digest[i], sizeof j.digest[i]);
    }
    s->key = t2_hash64_final(&h);
    free(j.digest);
    return 0;
}

/* ---- decomposition ---- */

static bool all_finite(const float *w, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(w[i]))
            return false;
    return true;
}

/* sgesdd (divide and conquer, fast) and, should it not converge, sgesvd.
 * Both destroy their input, so each gets a fresh copy of W (w: float32). */
static int svd(t2_svf_matrix *mat, const float *w, float *a, t2_err *err)
{
    int m = mat->m, n = mat->n, r = mat->r;
    size_t bytes = (size_t)m * n * sizeof(float);
    memcpy(a, w, bytes);
    lapack_int info =
        LAPACKE_sgesdd(LAPACK_ROW_MAJOR, 'S', m, n, a, n, mat->s, mat->u, r, mat->vt, n);
    if (info == 0)
        return 0;
    float *superb = malloc((size_t)(r > 1 ? r - 1 : 1) * sizeof(float));
    if (!superb)
        return t2_err_set(err, "%s: out of memory", mat->name);
    memcpy(a, w, bytes);
    lapack_int info2 = LAPACKE_sgesvd(LAPACK_ROW_MAJOR, 'S', 'S', m, n, a, n, mat->s, mat->u, r,
                                      mat->vt, n, superb);
    free(superb);
    if (info2 != 0)
        return t2_err_set(err, "%s: SVD failed (sgesdd info %d, sgesvd info %d)", mat->name,
                          (int)info, (int)info2);
    return 0;
}

static int decompose_one(void *ctx, size_t i, t2_err *err)
{
    t2_svf_matrix *mat = &((t2_svf *)ctx)->mats[i];
    size_t mn = (size_t)mat->m * mat->n;
    /* a bf16/q8_0 model is decomposed from its dequantised weights */
    float *deq = mat->w ? NULL : malloc(mn * sizeof *deq);
    if (!mat->w && !deq)
        return t2_err_set(err, "%s: out of memory for the SVD", mat->name);
    for (int r = 0; deq && r < mat->m; r++)
        t2_wmat_row_f32(&mat->wm, r, deq + (size_t)r * (size_t)mat->n);
    const float *w = mat->w ? mat->w : deq;
    if (!all_finite(w, mn)) {
        free(deq);
        return t2_err_set(err, "%s: weights contain NaN or Inf", mat->name);
    }
    float *a = malloc(mn * sizeof *a);
    if (!a || t2_svf_factors_alloc(mat) != 0) {
        free(a);
        free(deq);
        return t2_err_set(err, "%s: out of memory for the SVD", mat->name);
    }
    int rc = svd(mat, w, a, err);
    free(a);
    free(deq);
    if (rc == 0)
        t2_svf_update_sum(mat);
    return rc;
}

/* ---- build ---- */

/* Factors from the cache when it holds a valid file, else computed (and
 * written back when possible). */
static int obtain_factors(t2_svf *s, const t2_model *m, const char *cache_dir,
                          t2_svf_progress_fn progress, void *user, t2_svf_stats *stats, t2_err *err)
{
    char *path = NULL;
    int lock = -1;
    if (cache_dir && *cache_dir) { /* "" would put the cache in / */
        path = t2_svf_cache_path(cache_dir, m->name ? m->name : "model", s->set, s->key);
        if (!path)
            return t2_err_set(err, "out of memory");
        int state = t2_svf_cache_load(s, path, err);
        if (state == T2_SVF_CACHE_MISSING || state == T2_SVF_CACHE_INVALID) {
            /* another replica may be decomposing this set: wait for it, then
             * look again (it has written the file if it succeeded) */
            double t0 = t2_now_ms();
            lock = t2_svf_cache_lock(cache_dir, path);
            stats->lock_wait_seconds = (t2_now_ms() - t0) / 1e3;
            int again = t2_svf_cache_load(s, path, err);
            if (again != T2_SVF_CACHE_MISSING)
                state = again;
        }
        if (state < 0 || state == T2_SVF_CACHE_LOADED) {
            t2_svf_cache_unlock(lock);
            free(path);
            if (state == T2_SVF_CACHE_LOADED)
                stats->from_cache = s->n;
            return state < 0 ? -1 : 0;
        }
        stats->cache_rebuilt = state == T2_SVF_CACHE_INVALID;
    }
    openblas_set_num_threads(1);
    int rc = par_for(decompose_one, s, s->n, progress, user, err);
    if (rc == 0)
        stats->decomposed = s->n;
    if (rc == 0 && path) {
        /* An unwritable cache costs the next start a decomposition, nothing
         * more: the factors are in memory, so this is not a failure. */
        t2_err werr = {{0}};
        if (t2_svf_cache_save(s, cache_dir, path, &werr) != 0)
            snprintf(stats->cache_error, sizeof stats->cache_error, "%s", werr.msg);
    }
    t2_svf_cache_unlock(lock);
    free(path);
    return rc;
}

int t2_svf_build(t2_svf **out, const t2_model *m, unsigned set, const char *cache_dir,
                 t2_svf_progress_fn progress, void *user, t2_svf_stats *stats, t2_err *err)
{
    double t0 = t2_now_ms() / 1e3;
    t2_svf_stats local;
    if (!stats)
        stats = &local;
    memset(stats, 0, sizeof *stats);
    *out = NULL;
    if (set == 0 || (set & ~(unsigned)(T2_SVF_MLP | T2_SVF_ATTN)))
        return t2_err_set(err, "invalid SVF matrix set 0x%x", set);
    t2_svf *s = calloc(1, sizeof *s);
    if (!s)
        return t2_err_set(err, "out of memory");
    s->set = set;
    if (list_matrices(s, m, err) != 0 || compute_key(s, err) != 0 ||
        obtain_factors(s, m, cache_dir, progress, user, stats, err) != 0 ||
        t2_svf_format_copies(s, m, err) != 0) {
        t2_svf_free(s);
        return -1;
    }
    stats->seconds = t2_now_ms() / 1e3 - t0;
    *out = s;
    return 0;
}

/* ---- applying z ---- */

int t2_svf_find(const t2_svf *s, const char *name)
{
    if (!s || !name)
        return -1;
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->mats[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* A z with sum(S*z) == 0 (or not finite) has no normalisation: it is
 * applied as is (c = 1) rather than turning the weights into NaN. */
double t2_svf_scale(const t2_svf_matrix *mat, const float *z)
{
    if (!z)
        return 1.0;
    double d = 0;
    for (int k = 0; k < mat->r; k++)
        d += (double)mat->s[k] * (double)z[k];
    if (d == 0 || !isfinite(d))
        return 1.0;
    return mat->s_sum / d;
}

void t2_svf_scaled_s(const t2_svf_matrix *mat, const float *z, float *out)
{
    if (!z) {
        memcpy(out, mat->s, (size_t)mat->r * sizeof *out);
        return;
    }
    double c = t2_svf_scale(mat, z);
    for (int k = 0; k < mat->r; k++)
        out[k] = (float)((double)mat->s[k] * (double)z[k] * c);
}

void t2_svf_materialise(const t2_svf_matrix *mat, const float *z, float *dst, float *tmp)
{
    int m = mat->m, n = mat->n, r = mat->r;
    /* tmp = U diag(S*z*c): the scaled S lives in tmp's row 0 until that row,
     * the last one done, is overwritten in place. */
    t2_svf_scaled_s(mat, z, tmp);
    for (int i = m - 1; i >= 0; i--) {
        const float *u = mat->u + (size_t)i * r;
        float *t = tmp + (size_t)i * r;
        for (int k = 0; k < r; k++)
            t[k] = u[k] * tmp[k];
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, r, 1.0f, tmp, r, mat->vt, n, 0.0f,
                dst, n);
}
