/* The engine: everything a server (or a tool) needs to answer requests
 * the Transformer² way, without HTTP: the model, the worker pool, SVF
 * factors, the expert store, the adapted-weight cache, the profiles, and
 * the per-request adaptation (pass 1) and generation (pass 2). */
#ifndef T2_ENGINE_H
#define T2_ENGINE_H

#include <stdbool.h>
#include <stddef.h>

#include "adapt.h"
#include "chat.h"
#include "expert.h"
#include "forward.h"
#include "generate.h"
#include "model.h"
#include "pool.h"
#include "profile.h"
#include "svf.h"

/* The reference's classification prompt style: the categories, each with
 * its description, answered as \boxed{category}. {labels} becomes
 * "'code', 'math', 'reasoning' or 'other'", {descriptions} one line per
 * category ("- math: ..."). */
#define T2_DEFAULT_CLASSIFY_PROMPT                                                                 \
    "Classify the question into one of: {labels}.\n{descriptions}\nAnswer as \\boxed{category}."

typedef struct t2_engine_opts {
    const char *model_path;
    const char *experts_dir;     /* NULL: no experts (and no SVD factors) */
    const char *profiles_dir;    /* NULL: no profiles */
    const char *svd_cache_dir;   /* NULL: no SVD cache */
    unsigned svf_set;            /* default T2_SVF_MLP */
    int threads;                 /* <= 0: all cores */
    size_t adapted_cache_mb;     /* materialised weight sets kept, default 512 */
    const char *classify_prompt; /* NULL: T2_DEFAULT_CLASSIFY_PROMPT */
    int materialise_min_tokens;  /* t2_weights_policy; default T2_MATERIALISE_MIN_TOKENS */
    t2_wtype weights;            /* weight format kept in memory, default f32 */
    bool kv_f16;                 /* contexts keep K/V in f16 (default f32) */
    /* progress and warnings while opening (may be NULL) */
    void (*log)(void *user, const char *msg);
    void *log_user;
} t2_engine_opts;

void t2_engine_opts_defaults(t2_engine_opts *o);

typedef struct t2_engine {
    t2_model *model;
    t2_pool *pool;
    t2_svf *svf;              /* NULL without experts */
    t2_factor *base_views;    /* the model's layers' factored views (mix), with svf */
    t2_expert_store *experts; /* NULL without experts */
    t2_profile_store *profiles;
    t2_adapt_cache *cache;
    char *classify_prompt;
    t2_weights_policy policy;
    bool sets_fit; /* a materialised set fits in the cache: t2 serve builds them */
    t2_svf_stats svf_stats;
} t2_engine;

int t2_engine_open(t2_engine **out, const t2_engine_opts *o, t2_err *err);
void t2_engine_free(t2_engine *e);

/* ---- pass 1 ---- */

enum t2_strategy {
    T2_STRATEGY_NONE = 0,
    T2_STRATEGY_EXPERT,     /* one named expert, alpha 1 */
    T2_STRATEGY_MIXTURE,    /* explicit alphas */
    T2_STRATEGY_PROMPT,     /* the base model classifies the prompt */
    T2_STRATEGY_CLASSIFIER, /* the same with the classification expert (task "cls") */
    T2_STRATEGY_FEW_SHOT,   /* CEM over alphas on given examples (see t2_engine_few_shot) */
    T2_STRATEGY_PROFILE,    /* a stored profile's alphas */
};
const char *t2_strategy_name(enum t2_strategy s);
int t2_strategy_parse(const char *name, enum t2_strategy *out);

enum t2_cls_method {
    T2_CLS_LIKELIHOOD = 0, /* score each label's answer; one prefill, no parsing */
    T2_CLS_GENERATE = 1,   /* the reference: greedy answer, parse \boxed{label} */
};
const char *t2_cls_method_name(enum t2_cls_method m);
int t2_cls_method_parse(const char *name, enum t2_cls_method *out);

typedef struct t2_adapt_req {
    enum t2_strategy strategy;
    const char *expert; /* EXPERT */
    size_t n_mix;       /* MIXTURE */
    const char **mix_names;
    const float *mix_alpha;
    enum t2_cls_method method; /* PROMPT, CLASSIFIER */
    const char *profile;       /* PROFILE */
} t2_adapt_req;

/* Decision of pass 1. */
typedef struct t2_decision {
    enum t2_strategy strategy;
    char label[72];  /* PROMPT/CLASSIFIER: decided label ("other" = base) */
    size_t n_labels; /* PROMPT/CLASSIFIER: candidates and their probabilities */
    char **labels;
    float *probs;
    char *raw_answer;   /* generate method: the model's answer text */
    t2_mixture mixture; /* what pass 2 uses (empty = base weights) */
    double pass1_ms;
    int pass1_tokens;        /* tokens evaluated by pass 1 */
    int pass1_cached_tokens; /* prompt tokens whose KV an earlier pass 1 left */
} t2_decision;

void t2_decision_clear(t2_decision *d);

/* Classification labels: the distinct tasks of the loaded experts other
 * than "cls", sorted, then "other". Caller frees each and the array. */
size_t t2_engine_labels(t2_engine *e, char ***out);

/* Runs pass 1 for `question` (the user's text). ctx is a scratch context
 * (its cache is overwritten); all work runs on ctx's pool. err_code: 404 unknown expert/profile/no
 * classifier, 422 invalid values, 500 internal. */
int t2_engine_decide(t2_engine *e, t2_ctx *ctx, const t2_adapt_req *req, const char *question,
                     t2_decision *d, int *err_code, t2_err *err);
/* Evaluates the classification prompt's fixed part (base weights) into
 * ctx, so the first pass 1 on ctx finds it cached as later ones do. */
int t2_engine_warm_pass1(t2_engine *e, t2_ctx *ctx, t2_err *err);

/* ---- prompts ---- */

/* Chat-formats messages with the model's template into token ids (BOS
 * where the format wants it). A message containing the text of a special
 * token (e.g. "<|im_end|>") is rejected: it could forge turns. *ids
 * malloc'd. */
int t2_engine_chat_ids(t2_engine *e, const t2_chat_msg *msgs, size_t n, int32_t **ids,
                       size_t *n_ids, t2_err *err);

/* ---- pass 2 ---- */

/* Weights for a decided mixture (NULL = base); unref when done. Uses the
 * engine's pool: call it from the thread that owns that pool, or use
 * t2_engine_weights_on with a pool of the calling thread. */
int t2_engine_weights(t2_engine *e, const t2_mixture *mx, int max_tokens, t2_adapted **out,
                      t2_err *err);
int t2_engine_weights_on(t2_engine *e, const t2_mixture *mx, int max_tokens, t2_pool *pool,
                         t2_adapted **out, t2_err *err);
/* The cached set of mx, else its factored weights: nothing is built or
 * counted (t2 serve counts its jobs' tokens and builds in the background) */
int t2_engine_weights_factored(t2_engine *e, const t2_mixture *mx, t2_adapted **out, t2_err *err);

/* ---- few-shot ---- */

typedef struct t2_example {
    const char *question;
    const char *answer;
} t2_example;

typedef struct t2_cem_opts {
    int population;    /* 32 */
    float elite_ratio; /* 0.2 */
    float init_std;    /* 0.5 */
    int generations;   /* 10 */
    uint64_t seed;     /* 0 */
    int max_tokens;    /* answer length cap while scoring, 16 */
    void (*progress)(void *user, int generation, int generations, double best_acc, double best_ll);
    void *user;
} t2_cem_opts;

void t2_cem_opts_defaults(t2_cem_opts *o);

typedef struct t2_cem_result {
    size_t n; /* experts searched over */
    char **experts;
    float *alpha;
    double accuracy;    /* of the best alpha on the examples */
    double mean_loglik; /* of the correct answers under the best alpha */
    double base_accuracy;
    int evaluations;
    double ms;
} t2_cem_result;

void t2_cem_result_clear(t2_cem_result *r);

/* CEM over one alpha per expert (experts: the given names, or all non-cls
 * experts when n_names == 0), maximising greedy exact-match accuracy on
 * the examples, ties broken by the mean log-likelihood of the answers. */
int t2_engine_few_shot(t2_engine *e, t2_ctx *ctx, const t2_example *ex, size_t n_ex,
                       const char **names, size_t n_names, const t2_cem_opts *o, t2_cem_result *res,
                       int *err_code, t2_err *err);

/* Greedy exact-match helper used by the search and the evaluation tool:
 * the answer text (special tokens dropped, surrounding whitespace
 * trimmed) equals `answer`. */
bool t2_answer_matches(const char *generated, const char *answer);

#endif
