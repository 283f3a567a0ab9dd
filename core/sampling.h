/* Next-token selection: greedy, or temperature sampling with top-k,
 * top-p, min-p and repetition / frequency / presence penalties, from a
 * seeded generator (the same seed gives the same tokens). */
#ifndef T2_SAMPLING_H
#define T2_SAMPLING_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct t2_sampling {
    float temperature;    /* 0 = greedy */
    int top_k;            /* 0 = off */
    float top_p;          /* 1 = off */
    float min_p;          /* 0 = off */
    float repeat_penalty; /* 1 = off (HF style: positive logits divided, negative multiplied) */
    /* OpenAI's, in [-2, 2], 0 = off: a token's logit minus frequency_penalty
     * times its count, and presence_penalty once if it occurs at all */
    float frequency_penalty;
    float presence_penalty;
    int repeat_last_n; /* tokens of history (prompt included) the penalties look at */
    uint64_t seed;
} t2_sampling;

void t2_sampling_defaults(t2_sampling *s);
/* Rejects values outside their ranges with a message naming the field. */
int t2_sampling_validate(const t2_sampling *s, t2_err *err);

typedef struct t2_sampler {
    t2_sampling p;
    int vocab;
    uint64_t rng[4];
    int32_t *idx; /* [vocab] scratch */
    float *prob;  /* [vocab] scratch */
} t2_sampler;

int t2_sampler_init(t2_sampler *s, const t2_sampling *p, int vocab, t2_err *err);
void t2_sampler_free(t2_sampler *s);
/* Picks the next token; logits are modified in place. history holds the
 * ids seen so far (prompt + generated) for the penalties. */
int32_t t2_sampler_next(t2_sampler *s, float *logits, const int32_t *history, size_t n_history);
/* log softmax(logits)[id], computed stably in double. */
double t2_log_softmax_at(const float *logits, int n, int32_t id);

/* Index of the largest value (first one on ties, as torch.argmax). */
int32_t t2_argmax(const float *v, int n);

#endif
