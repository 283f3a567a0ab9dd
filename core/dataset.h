/* Question/answer test sets in JSON lines ({"question", "answer",
 * optional "system", "label", "family"}), as in models/seedling/data. */
#ifndef T2_DATASET_H
#define T2_DATASET_H

#include <stddef.h>

#include "engine.h"
#include "error.h"

typedef struct t2_qa {
    char *question, *answer, *system, *label, *family; /* system/label/family may be NULL */
} t2_qa;

typedef struct t2_dataset {
    size_t n;
    t2_qa *items;
} t2_dataset;

int t2_dataset_load(t2_dataset *ds, const char *path, t2_err *err);
void t2_dataset_free(t2_dataset *ds);

/* Evaluation (eval.c). Greedy exact-match accuracy of `weights` (NULL =
 * base) on the first `limit` items (0 = all), answers capped at
 * max_tokens. Each item is a chat prompt (its system text first when
 * present); up to 16 items are decoded together, each in a context of
 * its own made for the call. */
int t2_eval_accuracy(t2_engine *e, const t2_dataset *ds, size_t limit, const t2_adapted *weights,
                     int max_tokens, double *accuracy, t2_err *err);

/* The two-pass pipeline on each item: pass 1 decides (strategy and
 * method of req) on ctx, item after item; pass 2 answers greedily with
 * each item's decision, 16 items decoded together as above. */
int t2_eval_two_pass(t2_engine *e, t2_ctx *ctx, const t2_dataset *ds, size_t limit,
                     const t2_adapt_req *req, int max_tokens, double *accuracy, t2_err *err);

#endif
