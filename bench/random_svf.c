/* Random SVF factors of a model's MLP shapes, for benchmarks: the work of
 * a factored product does not depend on the values, so a synthetic model
 * (or a large real one) needs no SVD to time factored weights. */
#include <stdlib.h>

#include "bench.h"
#include "svf.h"
#include "svf_cache.h"

static uint64_t rng_next(uint64_t *s) /* xorshift64 */
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

float t2_bench_rnd(uint64_t *s, float scale)
{
    return scale * ((float)(rng_next(s) >> 40) / (float)(1u << 24) * 2.0f - 1.0f);
}

int t2_bench_random_svf(const t2_model *m, t2_svf **out, t2_err *err)
{
    int L = m->cfg.n_layers;
    t2_svf *svf = calloc(1, sizeof *svf);
    if (!svf)
        return t2_err_set(err, "out of memory");
    svf->set = T2_SVF_MLP;
    svf->mats = calloc((size_t)L * 3, sizeof *svf->mats);
    if (!svf->mats) {
        free(svf);
        return t2_err_set(err, "out of memory");
    }
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    for (int l = 0; l < L; l++)
        for (int k = 0; k < 3; k++) {
            t2_svf_matrix *mat = &svf->mats[svf->n++];
            int kind = T2_WGATE + k;
            t2_wmat w = t2_layer_wmat(&m->layers[l], &m->cfg, kind);
            mat->layer = l;
            mat->kind = kind;
            mat->m = w.rows;
            mat->n = w.cols;
            mat->r = w.rows < w.cols ? w.rows : w.cols;
            mat->wm = w;
            size_t nu = (size_t)mat->m * (size_t)mat->r, nv = (size_t)mat->r * (size_t)mat->n;
            if (t2_svf_factors_alloc(mat) != 0) {
                t2_svf_free(svf);
                return t2_err_set(err, "out of memory for factors");
            }
            for (size_t i = 0; i < nu; i++)
                mat->u[i] = t2_bench_rnd(&seed, 0.05f);
            for (size_t i = 0; i < nv; i++)
                mat->vt[i] = t2_bench_rnd(&seed, 0.05f);
            for (int i = 0; i < mat->r; i++)
                mat->s[i] = 1.0f + t2_bench_rnd(&seed, 0.5f);
            t2_svf_update_sum(mat);
        }
    if (t2_svf_format_copies(svf, m, err) != 0) {
        t2_svf_free(svf);
        return -1;
    }
    *out = svf;
    return 0;
}
