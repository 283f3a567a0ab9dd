/* The background builder of t2 serve: materialises adapted weight sets
 * (t2_adapt_materialise, cached) one mixture at a time on a thread of its
 * own and a pool as large as decode's, all at nice 19, and hands each set
 * to a callback. The scheduler
 * asks for a mixture once its factored tokens reach the engine's
 * materialise_min_tokens (t2_weights_policy). */
#ifndef T2_BUILDER_H
#define T2_BUILDER_H

#include <stdbool.h>

#include "engine.h"

typedef struct t2_builder t2_builder;

/* Called on the builder's thread with a new reference to each set built
 * (or found in the cache); the callee owns it. */
typedef void (*t2_built_fn)(void *user, t2_adapted *a);

int t2_builder_create(t2_builder **out, t2_engine *e, t2_built_fn built, void *user, t2_err *err);
/* Stops the thread: a build in progress gives up after its current
 * matrices (t2_adapted_build_until), queued ones are dropped. NULL:
 * nothing. */
void t2_builder_free(t2_builder *b);
/* Queues mx (copied) under key unless that key is being built or queued,
 * or the queue is full (the caller's jobs then stay factored). True when
 * queued. Any thread. */
bool t2_builder_request(t2_builder *b, const t2_mixture *mx, const char *key);
/* Sets handed to the callback so far. Any thread. */
unsigned long t2_builder_count(t2_builder *b);

#endif
