/* Rendering responses: JSON bodies of every endpoint family and the
 * Server-Sent Events framing of streams (docs/API.md describes both). */
#ifndef T2_API_RENDER_H
#define T2_API_RENDER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "engine.h"

/* A pass-1 decision copied out of the scheduler's callback (which only
 * lends its t2_decision), so the loop thread can render it later. */
typedef struct t2_api_decision {
    enum t2_strategy strategy;
    char label[72];
    size_t n_labels;
    char **labels;
    float *probs;
    size_t n_terms;
    char **experts;
    float *alpha;
    char *raw_answer;
    double pass1_ms;
    int pass1_tokens;
    int pass1_cached_tokens;
} t2_api_decision;

int t2_api_decision_copy(t2_api_decision *dst, const t2_decision *src);
void t2_api_decision_free(t2_api_decision *d);
/* {"strategy", "label", "probabilities", "alpha", "pass1_ms", "pass2_ms",
 * "pass1_tokens", "pass1_cached_tokens"}; pass2_ms < 0 renders null (not known yet). */
json_t *t2_api_decision_json(const t2_api_decision *d, double pass2_ms);

/* A JSON string of text that should be UTF-8; invalid bytes become '?'
 * rather than failing the response. */
json_t *t2_api_text(const char *s, size_t len);

/* Token counts of a generation; cached: prompt tokens whose KV an earlier
 * request left (prefix reuse), not evaluated again. */
typedef struct t2_api_usage {
    int prompt_tokens, completion_tokens, cached_tokens;
} t2_api_usage;

/* {"prompt_tokens", "completion_tokens", "total_tokens",
 * "prompt_tokens_details": {"cached_tokens"}} as OpenAI renders it */
json_t *t2_api_usage_json(const t2_api_usage *u);
/* POST /v1/generate's response; takes the adaptation reference. */
json_t *t2_api_generate_json(const char *text, size_t len, const char *finish,
                             const t2_api_usage *u, json_t *adaptation);

/* One SSE event: "event: NAME\n" when name is not NULL, then
 * "data: <compact JSON>\n\n". malloc'd; NULL when out of memory. */
char *t2_sse_event(const char *name, const json_t *data, size_t *len);

/* ---- OpenAI-compatible objects ---- */

typedef struct t2_oai_ids {
    char id[48];       /* chatcmpl-... / cmpl-... */
    long long created; /* unix seconds */
    const char *model;
    bool chat;
} t2_oai_ids;

/* id from a 64-bit random or counter value */
void t2_oai_ids_init(t2_oai_ids *ids, bool chat, const char *model, long long created,
                     unsigned long long nonce);
json_t *t2_oai_response(const t2_oai_ids *ids, const char *text, size_t len, const char *finish,
                        const t2_api_usage *u);
/* A stream chunk: choices[0] with delta {role?, content?} (chat) or text
 * (completions) and finish_reason (NULL renders null); with
 * usage_field, "usage": null is included (stream_options.include_usage). */
json_t *t2_oai_chunk(const t2_oai_ids *ids, bool first, const char *text, size_t len,
                     const char *finish, bool usage_field);
/* The final usage chunk: "choices": [] and "usage". */
json_t *t2_oai_usage_chunk(const t2_oai_ids *ids, const t2_api_usage *u);
/* The terminating line of an OpenAI stream. */
#define T2_OAI_DONE "data: [DONE]\n\n"

/* ---- resources ---- */

json_t *t2_api_expert_json(const t2_expert *x);
json_t *t2_api_profile_json(const t2_profile *p);
/* GET /v1/models: base model id, then "<model>:<expert>" per expert and
 * "<model>:profile:<name>" per profile. */
json_t *t2_api_models_json(const char *model, long long created, char *const *experts,
                           size_t n_experts, char *const *profiles, size_t n_profiles);
json_t *t2_api_model_json(const char *id, long long created);

#endif
