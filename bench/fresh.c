/* --fresh: the weights a never-seen mixture starts with in the server,
 * the factored form y = U ((s z c) . (Vt x)) of every MLP matrix (see
 * core/svf.h), so prefill (the time to first token) and decode can be
 * timed with them against the base model. The factors are random numbers
 * of the model's shapes: the work does not depend on their values, and a
 * synthetic model (or a large real one) needs no SVD. */
#include <stdio.h>
#include <stdlib.h>

#include "bench.h"
#include "svf.h"
#include "svf_cache.h"

static float next_uniform(uint32_t *s) /* xorshift32, [-0.5, 0.5) */
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return (float)(*s >> 8) / 16777216.0f - 0.5f;
}

static int random_factors(t2_svf_matrix *mat, uint32_t *seed)
{
    if (t2_svf_factors_alloc(mat) != 0)
        return -1;
    size_t nu = (size_t)mat->m * (size_t)mat->r, nv = (size_t)mat->r * (size_t)mat->n;
    for (size_t i = 0; i < nu; i++)
        mat->u[i] = next_uniform(seed) * 0.1f;
    for (size_t i = 0; i < nv; i++)
        mat->vt[i] = next_uniform(seed) * 0.1f;
    for (int i = 0; i < mat->r; i++) /* descending, as an SVD gives them */
        mat->s[i] = 1.0f + (float)(mat->r - i) / (float)mat->r;
    t2_svf_update_sum(mat);
    return 0;
}

int t2_bench_fresh(const t2_model *m, t2_svf **svf_out, t2_adapted **out, t2_err *err)
{
    *svf_out = NULL;
    *out = NULL;
    const t2_config *cfg = &m->cfg;
    t2_svf *svf = calloc(1, sizeof *svf);
    size_t n = (size_t)cfg->n_layers * 3;
    float **z = calloc(n, sizeof *z);
    if (!svf || !z || !(svf->mats = calloc(n, sizeof *svf->mats))) {
        free(z);
        t2_svf_free(svf);
        return t2_err_set(err, "out of memory");
    }
    svf->set = T2_SVF_MLP;
    uint32_t seed = 2463534242u;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++, svf->n++) {
        t2_svf_matrix *mat = &svf->mats[i];
        int kind = T2_SVF_GATE + (int)(i % 3);
        mat->layer = (int)(i / 3);
        mat->kind = kind;
        mat->m = kind == T2_SVF_DOWN ? cfg->hidden : cfg->intermediate;
        mat->n = kind == T2_SVF_DOWN ? cfg->intermediate : cfg->hidden;
        mat->r = mat->m < mat->n ? mat->m : mat->n;
        z[i] = malloc((size_t)mat->r * sizeof *z[i]);
        rc = z[i] && random_factors(mat, &seed) == 0 ? 0 : t2_err_set(err, "out of memory");
        for (int k = 0; rc == 0 && k < mat->r; k++)
            z[i][k] = 1.0f + 0.1f * next_uniform(&seed);
    }
    if (rc == 0)
        rc = t2_svf_format_copies(svf, m, err);
    if (rc == 0)
        rc = t2_adapted_build_factored(out, m, svf, z, err);
    for (size_t i = 0; i < n; i++)
        free(z[i]);
    free(z);
    if (rc != 0) {
        t2_svf_free(svf);
        return -1;
    }
    *svf_out = svf;
    return 0;
}
