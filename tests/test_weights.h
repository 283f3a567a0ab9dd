/* Adapted weights of one expert at alpha 1, for tests that compare the
 * materialised and factored paths. Include after <cmocka.h>. */
#ifndef T2_TEST_WEIGHTS_H
#define T2_TEST_WEIGHTS_H

#include "engine.h"

/* One expert at weight alpha, materialised or factored; NULL expert name:
 * base weights (NULL). */
static inline t2_adapted *test_mixture_weights(t2_engine *e, const char *name, float alpha,
                                               bool factored)
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

/* The expert at alpha 1. */
static inline t2_adapted *test_expert_weights(t2_engine *e, const char *name, bool factored)
{
    return test_mixture_weights(e, name, 1.0f, factored);
}

#endif
