/* Transformer² adaptation: expert mixtures (z' = sum_k alpha_k z_k), the
 * adapted weights a pass-2 generation runs with (materialised W' from a
 * bounded LRU cache, or factored on the fly), and the pass-1 strategies
 * that decide the mixture (see classify.h, cem.h). */
#ifndef T2_ADAPT_H
#define T2_ADAPT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "expert.h"
#include "model.h"
#include "pool.h"
#include "svf.h"

/* One expert of a mixture. alpha_per_mat ([svf->n], may be NULL) gives
 * one coefficient per matrix ("per-layer" mixing) instead of alpha. */
typedef struct t2_mix_term {
    t2_expert *expert; /* a reference owned by the mixture */
    float alpha;
    float *alpha_per_mat; /* owned, or NULL */
} t2_mix_term;

typedef struct t2_mixture {
    size_t n;
    t2_mix_term *terms;
} t2_mixture;

/* Adds a term (takes a new reference to e; copies alpha_per_mat). */
int t2_mixture_add(t2_mixture *mx, t2_expert *e, float alpha, const float *alpha_per_mat,
                   size_t n_mats, t2_err *err);
void t2_mixture_clear(t2_mixture *mx);
/* Canonical text of the mixture ("code@v:0.5;math@v:1"), sorted by name,
 * terms with alpha 0 dropped: the adapted-weight cache key. malloc'd. */
char *t2_mixture_key(const t2_mixture *mx);

/* z' per matrix: z'[i] = sum_k alpha_k z_k[i], an expert that does not
 * adapt matrix i contributing alpha_k * 1. Matrices no term adapts stay
 * NULL (base weights). A z' whose sum(S z') is ~0 (e.g. all alpha 0)
 * would make the scale c infinite: that matrix stays at the base weights.
 * *z_out is an array of svf->n malloc'd vectors (or NULL); free with
 * t2_mix_z_free. */
int t2_mix_z(const t2_svf *svf, const t2_mixture *mx, float ***z_out, t2_err *err);
void t2_mix_z_free(const t2_svf *svf, float **z);

/* Weights for pass 2: a copy of the model's layer table pointing at the
 * adapted matrices. Reference-counted; t2_ctx_set_layers(ctx, a->layers). */
typedef struct t2_adapted {
    atomic_int refs;
    bool factored;      /* true: factors, no materialised matrices */
    t2_layer *layers;   /* [n_layers] */
    t2_factor *factors; /* [n_layers * T2_N_FACTOR_KINDS]: forced (factored) or views (mix) */
    float *storage;     /* materialised matrices or scaled singular values */
    float *views_s;     /* materialised: the scaled singular values of its views */
    size_t bytes;       /* memory held by storage */
    char *key;
    double build_ms;
} t2_adapted;

/* Materialises W' = U diag(S z' c) Vt for every adapted matrix (work
 * spread over the pool). z from t2_mix_z. */
int t2_adapted_build(t2_adapted **out, const t2_model *m, const t2_svf *svf, float *const *z,
                     t2_pool *pool, t2_err *err);
/* The same, giving up between two matrices once *stop is true (a
 * background build when the server stops: a large model's takes tens of
 * seconds): -1, "cancelled", nothing built. stop may be NULL. */
int t2_adapted_build_until(t2_adapted **out, const t2_model *m, const t2_svf *svf, float *const *z,
                           t2_pool *pool, const atomic_bool *stop, t2_err *err);
/* Factored form: only the scaled singular values are computed (cheap). */
int t2_adapted_build_factored(t2_adapted **out, const t2_model *m, const t2_svf *svf,
                              float *const *z, t2_err *err);
/* A table [n_layers * T2_N_FACTOR_KINDS] of factored views of the svf's
 * matrices: U, Vt and s[i] (NULL: the base S). Kinds outside the set have
 * s == NULL. malloc'd. */
t2_factor *t2_svf_views(const t2_model *m, const t2_svf *svf, float *const *s, t2_err *err);
/* Gives the model's own layers factored views (s = S) from svf, so base
 * rows can join a mixed batch's shared product. *table receives the
 * storage: free it after the model stops being used with svf. */
int t2_adapt_attach_base(t2_model *m, const t2_svf *svf, t2_factor **table, t2_err *err);
t2_adapted *t2_adapted_ref(t2_adapted *a);
void t2_adapted_unref(t2_adapted *a);
/* The name a context's prefix record gives these weights
 * (t2_ctx_reuse_prefix): "" for the model's own (NULL), else the set's
 * key (NULL if it has none: such weights are never reused). */
static inline const char *t2_adapted_key(const t2_adapted *a)
{
    return a ? a->key : "";
}

/* A bounded LRU cache of materialised weight sets, keyed by mixture key.
 * Thread-safe. */
typedef struct t2_adapt_cache t2_adapt_cache;

int t2_adapt_cache_create(t2_adapt_cache **out, size_t capacity_bytes, t2_err *err);
void t2_adapt_cache_free(t2_adapt_cache *c);
/* New reference or NULL (counts a hit or a miss). */
t2_adapted *t2_adapt_cache_get(t2_adapt_cache *c, const char *key);
/* The same without counting a hit or a miss (NULL cache: NULL). */
t2_adapted *t2_adapt_cache_peek(t2_adapt_cache *c, const char *key);
/* Inserts (the cache takes its own reference), evicting least recently
 * used sets until it fits; a set larger than the capacity is not kept. */
void t2_adapt_cache_put(t2_adapt_cache *c, const char *key, t2_adapted *a);
/* Factored sets by key, kept so that a mixture's requests share one (a
 * fixed table of 32, least recently used replaced): a new reference or
 * NULL; put takes its own reference. */
t2_adapted *t2_adapt_cache_factored_get(t2_adapt_cache *c, const char *key);
void t2_adapt_cache_factored_put(t2_adapt_cache *c, const char *key, t2_adapted *a);
/* The most memory the cache holds (adapted_cache_mb). */
size_t t2_adapt_cache_capacity(const t2_adapt_cache *c);
/* The storage of a materialised set adapting every matrix of svf: an
 * upper bound of any set's t2_adapted.bytes. */
size_t t2_adapted_max_bytes(const t2_model *m, const t2_svf *svf);
void t2_adapt_cache_stats(t2_adapt_cache *c, uint64_t *hits, uint64_t *misses, size_t *bytes,
                          size_t *entries);

/* The tokens generated with key's factored weights so far (0 when the
 * cache does not remember key, or without a cache). */
uint64_t t2_adapt_cache_tokens(t2_adapt_cache *c, const char *key);
/* Adds tokens to that count; returns the new count. */
uint64_t t2_adapt_cache_charge(t2_adapt_cache *c, const char *key, uint64_t tokens);

/* How pass 2 gets its weights for a mixture: from the cache; or, on a
 * miss, factored until the tokens generated with the mixture (over all its
 * requests) reach materialise_min_tokens, then materialised and cached.
 * Rent, then buy: a build costs as much as some number of factored tokens
 * (their extra time over materialised ones), so building once a mixture
 * has run factored that long costs at most twice the better choice in
 * hindsight, whether the mixture recurs or not; a threshold off that
 * break-even by a factor k costs at most 1 + k. A mixture used once for a
 * short answer is never built. Synchronous callers (t2_adapt_weights)
 * count a generation's max_tokens when it starts; t2 serve counts the
 * tokens its factored jobs generate and builds in the background. Empty
 * mixture -> *out = NULL (base weights). */
typedef struct t2_weights_policy {
    int materialise_min_tokens;
} t2_weights_policy;

/* The default: measured break-evens on seedling (2 cores) were ~40 tokens
 * for f32 (a build ~60 ms, a factored token ~1.5 ms slower) and ~160 for
 * q8_0 (~80 ms, ~0.5 ms); 64 keeps either within 3.5x of the better
 * choice in hindsight (docs/PERFORMANCE.md, stop 29). */
#define T2_MATERIALISE_MIN_TOKENS 64

/* The materialised set of mx, from the cache or built and cached, without
 * counting a cache hit or miss (a background upgrade of a factored
 * generation that already counted its miss); a build gives up once *stop
 * is true (t2_adapted_build_until; stop may be NULL). Empty mixture: *out
 * = NULL. */
int t2_adapt_materialise(t2_adapted **out, const t2_model *m, const t2_svf *svf,
                         const t2_mixture *mx, t2_adapt_cache *cache, t2_pool *pool,
                         const atomic_bool *stop, t2_err *err);

/* Weights for mx under policy, counting max_tokens (above); policy NULL:
 * nothing is built or counted. */
int t2_adapt_weights(t2_adapted **out, const t2_model *m, const t2_svf *svf, const t2_mixture *mx,
                     t2_adapt_cache *cache, t2_pool *pool, const t2_weights_policy *policy,
                     int max_tokens, t2_err *err);
/* The cached set of mx, else its factored weights (nothing built or
 * counted: the caller counts tokens and asks for t2_adapt_materialise). */
int t2_adapt_weights_factored(t2_adapted **out, const t2_model *m, const t2_svf *svf,
                              const t2_mixture *mx, t2_adapt_cache *cache, t2_err *err);

#endif
