/* Greedy generation against a reference's tokens, and a long prompt at
 * once against token by token, for the tests that check a model, an
 * expert or a cache format end to end. */
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

/* The long prompt of the prefill-pass tests: n ids spread over 3..1002. */
static inline void long_prompt_ids(int32_t *ids, int n)
{
    for (int i = 0; i < n; i++)
        ids[i] = (int32_t)(3 + (i * 37 + i / 7) % 1000);
}

/* ctx emptied, then fed ids one token at a time: the last token's logits,
 * or NULL on an error (printed). */
static inline const float *logits_token_by_token(t2_ctx *ctx, const int32_t *ids, int n)
{
    t2_ctx_truncate(ctx, 0);
    const float *logits = NULL;
    t2_err err;
    for (int t = 0; t < n; t++)
        if (t2_forward(ctx, &ids[t], 1, false, &logits, &err) != 0) {
            fprintf(stderr, "token by token: %s\n", err.msg);
            return NULL;
        }
    return logits;
}

#endif
