/* Pass-1-only requests: POST /v1/classify (the decision alone) and
 * POST /v1/adapt (the few-shot search that stores a profile). */
#ifndef T2_API_TASKS_H
#define T2_API_TASKS_H

#include <jansson.h>

#include "api_error.h"
#include "api_gen.h"
#include "api_render.h"
#include "engine.h"

#define T2_API_MAX_EXAMPLES 1024

/* {"prompt" | "messages", "strategy": "prompt" | "classifier", "method"}:
 * fills r->question and r->adapt (strict fields). */
int t2_api_parse_classify(const char *body, size_t len, const t2_api_limits *lim, t2_api_gen_req *r,
                          t2_api_err *e);
/* {"label", "probabilities", "strategy", "method", "pass1_ms", "pass1_tokens",
 * "pass1_cached_tokens"} */
json_t *t2_api_classify_json(const t2_api_decision *d, enum t2_cls_method method);

typedef struct t2_api_adapt_req {
    json_t *root; /* owns the strings */
    const char *name;
    t2_example *examples;
    size_t n_examples;
    const char **experts; /* NULL/0: every non-classifier expert */
    size_t n_experts;
    t2_cem_opts cem;
} t2_api_adapt_req;

/* {"name", "examples": [{question, answer}], "experts", "generations",
 * "population", "seed"} */
int t2_api_parse_adapt(const char *body, size_t len, t2_api_adapt_req *r, t2_api_err *e);
void t2_api_adapt_req_free(t2_api_adapt_req *r);
/* The stored profile plus the search's figures under "search". */
json_t *t2_api_adapt_json(const t2_profile *p, const t2_cem_result *res);

#endif
