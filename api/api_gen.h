/* Generation requests of every family — t2's own POST /v1/generate and the
 * OpenAI-compatible /v1/chat/completions and /v1/completions — parsed and
 * validated into one plain struct the server hands to the scheduler. */
#ifndef T2_API_GEN_H
#define T2_API_GEN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "api_error.h"
#include "chat.h"
#include "engine.h"
#include "generate.h"

#define T2_API_MAX_STOP 16
#define T2_API_MAX_STOP_LEN 256
#define T2_API_MAX_MIX 64
#define T2_API_MAX_MESSAGES 4096

/* What the server configuration contributes to parsing. */
typedef struct t2_api_limits {
    int max_tokens;               /* a request asking for more gets 422 */
    int default_max_tokens;       /* when it does not say */
    const char *default_strategy; /* none | prompt | classifier | expert:NAME | profile:NAME */
    enum t2_cls_method default_method;
    const char *model_name; /* the base model id ("seedling") */
} t2_api_limits;

enum t2_api_kind {
    T2_API_GENERATE = 0,   /* POST /v1/generate */
    T2_API_CHAT = 1,       /* POST /v1/chat/completions */
    T2_API_COMPLETION = 2, /* POST /v1/completions */
};

typedef struct t2_api_gen_req {
    enum t2_api_kind kind;
    json_t *root;       /* owns the borrowed strings below */
    const char *prompt; /* raw prompt text, or NULL with messages */
    size_t prompt_len;
    t2_chat_msg *msgs; /* chat messages (roles are static strings) */
    size_t n_msgs;
    const char *question; /* the user's text for pass 1: the prompt or the last user message */
    t2_gen_params gen;    /* gen.stop points into stop */
    const char *stop[T2_API_MAX_STOP];
    bool stream;
    bool include_usage;  /* OpenAI stream_options.include_usage */
    bool adapt_explicit; /* the request chose its adaptation (else the default) */
    t2_adapt_req adapt;  /* mix arrays point into mix_names/mix_alpha */
    const char *mix_names[T2_API_MAX_MIX];
    float mix_alpha[T2_API_MAX_MIX];
    const char *model; /* OpenAI: the model id to echo back */
    char **owned;      /* strings built while parsing (joined content parts) */
    size_t n_owned;
} t2_api_gen_req;

/* Each returns 0, or -1 with e filled (400 malformed, 404 unknown model
 * id, 422 invalid values naming the field); r is always safe to free. */
int t2_api_parse_generate(const char *body, size_t len, const t2_api_limits *lim, t2_api_gen_req *r,
                          t2_api_err *e);
int t2_api_parse_chat(const char *body, size_t len, const t2_api_limits *lim, t2_api_gen_req *r,
                      t2_api_err *e);
int t2_api_parse_completion(const char *body, size_t len, const t2_api_limits *lim,
                            t2_api_gen_req *r, t2_api_err *e);
void t2_api_gen_req_free(t2_api_gen_req *r);

/* ---- shared by the parsers (api_gen_common.c) ---- */

/* "adaptation": {...} into r->adapt; prefix names the field in errors. */
int t2_api_parse_adaptation(json_t *obj, const char *field, t2_api_gen_req *r, t2_api_err *e);
/* Sets r->adapt from a default strategy text (conf's default_strategy). */
int t2_api_default_adaptation(const char *spec, enum t2_cls_method method, t2_adapt_req *a,
                              t2_api_err *e);
/* "stop": a string or an array of at most T2_API_MAX_STOP strings. */
int t2_api_parse_stop(json_t *root, t2_api_gen_req *r, t2_api_err *e);
/* "messages": strict (t2: role/content only, string content) or lenient
 * (OpenAI: content parts of type text are joined, other fields ignored,
 * "developer" is a system message). */
int t2_api_parse_messages(json_t *root, bool lenient, t2_api_gen_req *r, t2_api_err *e);
/* "prompt" (non-empty) or "messages", exactly one (t2's own endpoints);
 * sets r->question to the prompt when given. */
int t2_api_parse_prompt_or_messages(json_t *root, t2_api_gen_req *r, t2_api_err *e);
/* Sampling fields present in root: temperature, top_p, top_k, min_p,
 * repetition_penalty, seed, and max_tokens under the given name. */
int t2_api_parse_sampling(json_t *root, const t2_api_limits *lim, const char *max_tokens_key,
                          t2_api_gen_req *r, t2_api_err *e);
/* Keeps s alive as long as r (for strings built while parsing). */
const char *t2_api_gen_own(t2_api_gen_req *r, char *s);

#endif
