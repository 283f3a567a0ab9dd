/* Greedy generation against a reference's tokens, for the tests that
 * check a model, an expert or a cache format end to end. */
#ifndef T2_TEST_GREEDY_H
#define T2_TEST_GREEDY_H

#include <stdbool.h>
#include <stdio.h>

#include "generate.h"

/* Up to 16 greedy tokens after ids, from an emptied ctx: exactly
 * want[0..n_want)? A mismatch is printed. */
static inline bool greedy_gives(t2_ctx *ctx, const t2_model *m, const int32_t *ids, size_t n,
                                const int32_t *want, size_t n_want)
{
    t2_ctx_truncate(ctx, 0);
    t2_gen_params gp;
    t2_gen_params_defaults(&gp);
    gp.max_tokens = 16;
    t2_gen_result res;
    t2_err err;
    if (t2_generate(ctx, m, ids, n, &gp, NULL, NULL, &res, &err) != 0) {
        fprintf(stderr, "greedy: %s\n", err.msg);
        return false;
    }
    bool same = res.n_tokens == (int)n_want;
    for (size_t t = 0; same && t < n_want; t++)
        same = res.tokens[t] == want[t];
    if (!same)
        fprintf(stderr, "greedy: %d tokens, not the %zu expected\n", res.n_tokens, n_want);
    t2_gen_result_free(&res);
    return same;
}

#endif
