/* --expert: the materialised weights of one expert from the model's
 * experts directory, built as a pass-2 generation builds them (SVF
 * factors of the MLP matrices, W' = U diag(s z) Vᵀ, requantised to the
 * model's weight format), so decode can be timed with them. */
#include <stdio.h>
#include <stdlib.h>

#include "adapt.h"
#include "bench.h"
#include "expert.h"
#include "fileio.h"

int t2_bench_expert(const t2_model *m, t2_pool *pool, const char *dir, const char *name,
                    t2_svf **svf_out, t2_adapted **out, t2_err *err)
{
    *svf_out = NULL;
    *out = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, name);
    fprintf(stderr, "t2 bench: expert %s: SVD of the MLP matrices...\n", path);
    t2_svf *svf = NULL;
    if (t2_svf_build(&svf, m, T2_SVF_MLP, NULL, NULL, NULL, NULL, err) != 0)
        return -1;
    char *buf = NULL;
    size_t len = 0;
    t2_expert *e = NULL;
    t2_mixture mx = {0};
    float **z = NULL;
    int rc = -1;
    if (t2_read_file(path, (size_t)1 << 30, &buf, &len, err) == 0 &&
        t2_expert_parse(&e, (const uint8_t *)buf, len, path, svf, m->name, NULL, err) == 0 &&
        t2_mixture_add(&mx, e, 1.0f, NULL, 0, err) == 0 && t2_mix_z(svf, &mx, &z, err) == 0)
        rc = t2_adapted_build(out, m, svf, z, pool, err);
    if (z)
        t2_mix_z_free(svf, z);
    t2_mixture_clear(&mx);
    if (e)
        t2_expert_unref(e);
    free(buf);
    if (rc != 0) {
        t2_svf_free(svf);
        return -1;
    }
    *svf_out = svf;
    return 0;
}
