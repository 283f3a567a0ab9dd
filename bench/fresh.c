/* --fresh: the weights a never-seen mixture starts with in the server,
 * the factored form y = U ((s z c) . (Vt x)) of every MLP matrix (see
 * core/svf.h), so prefill (the time to first token) and decode can be
 * timed with them against the base model, on random factors
 * (t2_bench_random_svf). */
#include <stdlib.h>

#include "bench.h"
#include "svf.h"

int t2_bench_fresh(const t2_model *m, t2_svf **svf_out, t2_adapted **out, t2_err *err)
{
    *svf_out = NULL;
    *out = NULL;
    t2_svf *svf;
    if (t2_bench_random_svf(m, &svf, err) != 0)
        return -1;
    float **z = calloc(svf->n, sizeof *z);
    int rc = z ? 0 : t2_err_set(err, "out of memory");
    uint64_t seed = 2463534242u;
    for (size_t i = 0; rc == 0 && i < svf->n; i++) {
        z[i] = malloc((size_t)svf->mats[i].r * sizeof *z[i]);
        rc = z[i] ? 0 : t2_err_set(err, "out of memory");
        for (int k = 0; rc == 0 && k < svf->mats[i].r; k++)
            z[i][k] = 1.0f + t2_bench_rnd(&seed, 0.05f);
    }
    if (rc == 0)
        rc = t2_adapted_build_factored(out, m, svf, z, err);
    for (size_t i = 0; z && i < svf->n; i++)
        free(z[i]);
    free(z);
    if (rc != 0) {
        t2_svf_free(svf);
        return -1;
    }
    *svf_out = svf;
    return 0;
}
