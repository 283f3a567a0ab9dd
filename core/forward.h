/* The transformer forward pass over one sequence with its KV cache:
 * RMSNorm, RoPE (rotate-half, optional llama3 scaling), grouped-query
 * attention, SwiGLU MLP, output head. Prefill runs tokens in chunks with
 * sgemm; a single token uses matrix-vector products. */
#ifndef T2_FORWARD_H
#define T2_FORWARD_H

#include <stdbool.h>
#include <stdint.h>

#include "error.h"
#include "model.h"
#include "pool.h"

typedef struct t2_ctx t2_ctx;

/* A context for one sequence of at most n_ctx tokens (<= 0: the model's
 * max_position_embeddings). The pool is borrowed, not owned. */
int t2_ctx_create(t2_ctx **out, const t2_model *m, t2_pool *pool, int n_ctx, t2_err *err);
void t2_ctx_free(t2_ctx *c);

int t2_ctx_n_ctx(const t2_ctx *c);
int t2_ctx_n_past(const t2_ctx *c);
/* Forgets cached positions from n_past on (0 = empty). */
void t2_ctx_truncate(t2_ctx *c, int n_past);

/* Weights for the layers (e.g. adapted by an expert); NULL restores the
 * model's own. The array must stay valid while the context uses it. */
void t2_ctx_set_layers(t2_ctx *c, const t2_layer *layers);

/* Runs n tokens at positions n_past.. and appends them to the cache.
 * *logits points to [n][vocab] when all_logits, else to the last
 * position's [vocab]; valid until the next call. */
int t2_forward(t2_ctx *c, const int32_t *tokens, int n, bool all_logits, const float **logits,
               t2_err *err);

/* Prompt-prefix reuse. A context remembers which tokens its KV cache
 * holds and under which weights, named by the caller (weights_key: ""
 * for the model's own, an adapted set's key otherwise; it must name the
 * layers set on the context). Keeps the longest cached prefix of ids
 * computed under the same key (at most n - 1 tokens, so the caller still
 * gets the logits of the last), sets n_past to it and returns it; the
 * caller then evaluates ids[returned..n). t2_forward and t2_forward_batch
 * extend the record; evaluating with other layers than those of the call,
 * or from an empty cache without this call first, ends it until the next
 * call. */
int t2_ctx_reuse_prefix(t2_ctx *c, const char *weights_key, const int32_t *ids, int n);
/* How many leading ids (at most n - 1) the context's record holds under
 * weights_key; changes nothing (to pick the best of several contexts). */
int t2_ctx_cached_prefix(const t2_ctx *c, const char *weights_key, const int32_t *ids, int n);

/* Evaluates n_branches independent continuations of the cached n_past
 * tokens in one pass: branch b (lens[b] tokens, the branches one after
 * another in tokens) sees the cache and its own earlier tokens, never
 * another branch's. *logits points to [total][vocab], the logits after
 * each branch token, valid until the context's next use. n_past does not
 * change: the branches' KV is scratch. At most 128 tokens in all. */
int t2_forward_branches(t2_ctx *c, const int32_t *tokens, const int *lens, int n_branches,
                        const float **logits, t2_err *err);

/* One decode step for several sequences at once: seqs[i] appends
 * tokens[i]. Each keeps its own KV cache and weights; a matrix that
 * several sequences share (the base weights, one expert's materialised
 * set, or the common U and Vt of factored experts) is read once for all
 * of them. *logits points to [n][vocab] in the scratch of the sequence
 * with the longest context, valid until any of seqs is used again.
 * At most 128 sequences; all share the model and the pool. */
int t2_forward_batch(t2_ctx *const *seqs, const int32_t *tokens, int n, const float **logits,
                     t2_err *err);

/* Where the time of passes goes (for benchmarks): wall seconds on the
 * calling thread by stage, summed over every pass through the layers
 * (t2_forward, t2_forward_batch, branches) whose scratch context has a
 * profile set. The matrix stages include their hand-offs to the pool
 * and the conversion of X; T2_STAGE_ROTATION is the part of them spent
 * in the rotated form's own products and sums (a subset, not added to
 * the total again). */
typedef enum t2_stage {
    T2_STAGE_QKV,       /* q, k, v products */
    T2_STAGE_ATTENTION, /* RoPE, K/V store, attention */
    T2_STAGE_O,         /* output projection */
    T2_STAGE_GATE_UP,   /* gate and up products with SwiGLU */
    T2_STAGE_DOWN,      /* down product */
    T2_STAGE_HEAD,      /* final norm and output head */
    T2_STAGE_ROTATION,  /* within the matrix stages: the rotation's share */
    T2_N_STAGES
} t2_stage;

#define T2_PROF_WORKERS 256 /* workers whose kernel time a profile keeps */

typedef struct t2_pass_profile {
    double sec[T2_N_STAGES];
    double total_sec; /* the whole passes (norms, residuals, embedding: total - stages) */
    long passes;
    unsigned long pool_runs; /* hand-offs to the pool during them */
    /* each worker's seconds inside the matrix kernels (its share of
     * every product, the rotation's column walk included): against the
     * matrix stages' wall time, what is left is waiting (hand-offs, the
     * calling thread's serial work, uneven shares) */
    double worker_sec[T2_PROF_WORKERS];
} t2_pass_profile;

/* Stage names for tables ("qkv", "attention", ...). */
const char *t2_stage_name(t2_stage s);
/* Accumulate into *p from now on (NULL: stop); p outlives its use. */
void t2_ctx_set_profile(t2_ctx *c, t2_pass_profile *p);

t2_pool *t2_ctx_pool(const t2_ctx *c);
const t2_model *t2_ctx_model(const t2_ctx *c);

#endif
