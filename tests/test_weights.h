/* Adapted weights of one expert at alpha 1, for tests that compare the
 * materialised and factored paths. Include after <cmocka.h>. */
#ifndef T2_TEST_WEIGHTS_H
#define T2_TEST_WEIGHTS_H

#include <stdlib.h>

#include "engine.h"

/* One expert at weight alpha, materialised or factored; NULL expert name:
 * base weights (NULL). With layer0_only, only layer 0's matrices are
 * adapted (the others are the base's): the same build path at an eighth
 * of the seedling's matrix products, for tests about how weight sets
 * combine rather than an expert's values (valgrind's quick mode, where a
 * whole materialised set costs over a CPU-minute). */
static inline t2_adapted *test_weights_build(t2_engine *e, const char *name, float alpha,
                                             bool factored, bool layer0_only)
{
    if (!name)
        return NULL;
    t2_expert *x = t2_store_get(e->experts, name);
    assert_non_null(x);
    t2_mixture mx = {0};
    t2_err err;
    assert_int_equal(t2_mixture_add(&mx, x, alpha, NULL, 0, &err), 0);
    float **z;
    assert_int_equal(t2_mix_z(e->svf, &mx, &z, &err), 0);
    for (size_t i = 0; layer0_only && i < e->svf->n; i++)
        if (e->svf->mats[i].layer != 0) {
            free(z[i]);
            z[i] = NULL;
        }
    t2_adapted *w;
    if (factored)
        assert_int_equal(t2_adapted_build_factored(&w, e->model, e->svf, z, &err), 0);
    else
        assert_int_equal(t2_adapted_build(&w, e->model, e->svf, z, e->pool, &err), 0);
    t2_mix_z_free(e->svf, z);
    t2_mixture_clear(&mx);
    t2_expert_unref(x);
    return w;
}

static inline t2_adapted *test_mixture_weights(t2_engine *e, const char *name, float alpha,
                                               bool factored)
{
    return test_weights_build(e, name, alpha, factored, false);
}

/* The expert at alpha 1. */
static inline t2_adapted *test_expert_weights(t2_engine *e, const char *name, bool factored)
{
    return test_mixture_weights(e, name, 1.0f, factored);
}

#endif
