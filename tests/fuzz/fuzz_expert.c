/* Expert files (core/expert.c over core/safetensors.c): metadata and z
 * vectors validated against seedling's adaptable matrices. Parsing only
 * reads the matrices' names and ranks, so the factors are described, not
 * computed (no model load, no SVD): 8 layers x gate/up/down, r = 256. */
#include <math.h>
#include <string.h>

#include "expert.h"
#include "fuzz.h"

#define N_LAYERS 8
#define RANK 256

static t2_svf svf;
static t2_svf_matrix mats[N_LAYERS * 3];
static char names[N_LAYERS * 3][64];

static void describe_seedling(void)
{
    static const char *const kinds[] = {"gate_proj", "up_proj", "down_proj"};
    for (int l = 0; l < N_LAYERS; l++)
        for (int k = 0; k < 3; k++) {
            t2_svf_matrix *m = &mats[l * 3 + k];
            snprintf(names[l * 3 + k], sizeof names[0], "model.layers.%d.mlp.%s.weight", l,
                     kinds[k]);
            m->name = names[l * 3 + k];
            m->layer = l;
            m->m = k == 2 ? 256 : 768;
            m->n = k == 2 ? 768 : 256;
            m->r = RANK;
        }
    svf.set = T2_SVF_MLP;
    svf.n = N_LAYERS * 3;
    svf.mats = mats;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!svf.n)
        describe_seedling();
    t2_expert *x;
    t2_err err;
    /* the input chooses whether the URL name overrides the metadata */
    const char *override = size > 0 && (data[size - 1] & 1) ? "upload-1" : NULL;
    if (t2_expert_parse(&x, data, size, "fuzz", &svf, "seedling", override, &err) != 0)
        return 0;
    FUZZ_CHECK(t2_expert_name_valid(x->name) && x->n_mats == svf.n);
    FUZZ_CHECK(x->task && x->description && x->base_model && x->parametrization && x->adapted);
    for (size_t i = 0; i < x->n_mats; i++)
        for (int j = 0; x->z[i] && j < RANK; j++)
            FUZZ_CHECK(isfinite(x->z[i][j]));
    t2_expert_unref(x);
    return 0;
}
