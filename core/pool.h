/* A fixed pool of worker threads for data-parallel loops (matrix rows,
 * attention heads). The calling thread takes part as worker 0, so a pool
 * of 1 runs everything inline. */
#ifndef T2_POOL_H
#define T2_POOL_H

#include <stdatomic.h>
#include <stdbool.h>

#include "error.h"

typedef struct t2_pool t2_pool;

/* fn(arg, worker, n_workers): each worker picks its own share. */
typedef void (*t2_pool_fn)(void *arg, int worker, int n_workers);

/* n_threads <= 0: one per online CPU. */
int t2_pool_create(t2_pool **out, int n_threads, t2_err *err);
void t2_pool_free(t2_pool *p);
int t2_pool_size(const t2_pool *p);
/* Runs fn on every worker and returns when all are done. Not reentrant:
 * one caller at a time. */
void t2_pool_run(t2_pool *p, t2_pool_fn fn, void *arg);

/* How many times t2_pool_run has run (for profiles). */
unsigned long t2_pool_runs(const t2_pool *p);

/* The half-open share [begin, end) of n items for worker w of nw,
 * rounded to multiples of `align` items. */
void t2_pool_share(int n, int w, int nw, int align, int *begin, int *end);

/* n items handed out in chunks as the workers of one t2_pool_run ask for
 * them, so a worker on a slower core (a busy neighbour, a shared
 * hyperthread) takes less: the run ends soon after the last chunk, not
 * when the slowest fixed share does. Each chunk is 1/nw of the items left
 * (rounded up to a multiple of `align`, the last one shorter): the first
 * ones as long as fixed shares would be (long runs for the memory
 * streams), the last ones short, to even out the end. */
typedef struct t2_chunks {
    atomic_int next;
    int n, nw, align;
} t2_chunks;

void t2_chunks_init(t2_chunks *q, int n, int nw, int align);
/* The next chunk [*begin, *end), or false when none is left. */
bool t2_chunks_take(t2_chunks *q, int *begin, int *end);

#endif
