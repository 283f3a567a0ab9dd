/* The background builder: a queue of mixtures, a thread and its pool at
 * nice 19. */
#include "builder.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* mixtures waiting; more are refused (their jobs stay factored) */
#define MAX_PENDING 8

/* The builder's niceness: a materialised set is only worth building with
 * cycles decode does not need. Decode's threads meet at a barrier after
 * every product, so a build holding a share of one core slows every step
 * by that share: building on first use, a seedling q8_0 request of 32
 * tokens took 116 ms at equal priority, 94 at nice 10, 80 at nice 19
 * (38 without a build); under 4 streams of load the sets were still built
 * within a second (docs/PERFORMANCE.md, stop 29). */
#define BUILD_NICE 19

typedef struct build_req {
    t2_mixture mx;
    char *key;
} build_req;

struct t2_builder {
    t2_engine *e;
    t2_built_fn built;
    void *user;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    build_req pending[MAX_PENDING];
    int n_pending;
    char *building; /* the key being built */
    bool stopping, started;
    atomic_bool stop_build; /* set when stopping: a build in progress gives up */
    atomic_ulong n_built;   /* sets handed to the callback */
    pthread_t thread;
    t2_pool *pool; /* made by the builder thread: its threads inherit the niceness */
};

static void req_clear(build_req *r)
{
    t2_mixture_clear(&r->mx);
    free(r->key);
    *r = (build_req){0};
}

static int copy_mixture(t2_mixture *dst, const t2_mixture *src, size_t n_mats)
{
    t2_err err;
    for (size_t i = 0; i < src->n; i++) {
        const t2_mix_term *t = &src->terms[i];
        if (t2_mixture_add(dst, t->expert, t->alpha, t->alpha_per_mat, n_mats, &err) != 0) {
            t2_mixture_clear(dst);
            return -1;
        }
    }
    return 0;
}

static void *builder_main(void *arg)
{
    t2_builder *b = arg;
    t2_engine *e = b->e;
    /* lowering one's own priority needs no privilege (per thread on Linux:
     * the thread id); should it fail, builds merely compete as equals */
    (void)setpriority(PRIO_PROCESS, (id_t)gettid(), BUILD_NICE);
    /* as many threads as decode's pool: on idle cores a build runs as fast
     * as the engine's own would (seedling, 2 cores, a set in the cache
     * after its request started: f32 70 -> 52 ms, q8_0 96 -> 70 ms with 2
     * threads instead of 1; under 4 streams of load 1.5 -> 1.2 s) */
    t2_err err;
    if (t2_pool_create(&b->pool, t2_pool_size(e->pool), &err) != 0) {
        pthread_mutex_lock(&b->mu);
        b->stopping = true; /* refuses requests: every job stays factored */
        pthread_mutex_unlock(&b->mu);
        return NULL;
    }
    pthread_mutex_lock(&b->mu);
    for (;;) {
        while (!b->n_pending && !b->stopping)
            pthread_cond_wait(&b->cv, &b->mu);
        if (b->stopping)
            break;
        build_req r = b->pending[0];
        memmove(b->pending, b->pending + 1, (size_t)(b->n_pending - 1) * sizeof *b->pending);
        b->n_pending--;
        b->building = r.key;
        pthread_mutex_unlock(&b->mu);
        t2_adapted *a = NULL;
        if (t2_adapt_materialise(&a, e->model, e->svf, &r.mx, e->cache, b->pool, &b->stop_build,
                                 &err) == 0 &&
            a) {
            atomic_fetch_add(&b->n_built, 1);
            b->built(b->user, a);
        } else /* a failed build leaves the jobs factored: nothing to report to */
            t2_adapted_unref(a);
        pthread_mutex_lock(&b->mu);
        b->building = NULL;
        req_clear(&r);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

int t2_builder_create(t2_builder **out, t2_engine *e, t2_built_fn built, void *user, t2_err *err)
{
    *out = NULL;
    t2_builder *b = calloc(1, sizeof *b);
    if (!b)
        return t2_err_set(err, "out of memory");
    atomic_init(&b->stop_build, false);
    atomic_init(&b->n_built, 0);
    b->e = e;
    b->built = built;
    b->user = user;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    if (pthread_create(&b->thread, NULL, builder_main, b) != 0) {
        t2_builder_free(b);
        return t2_err_set(err, "cannot start the builder thread");
    }
    b->started = true;
    *out = b;
    return 0;
}

void t2_builder_free(t2_builder *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&b->mu);
    b->stopping = true;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
    atomic_store(&b->stop_build, true);
    if (b->started)
        pthread_join(b->thread, NULL);
    for (int i = 0; i < b->n_pending; i++)
        req_clear(&b->pending[i]);
    t2_pool_free(b->pool);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    free(b);
}

bool t2_builder_request(t2_builder *b, const t2_mixture *mx, const char *key)
{
    pthread_mutex_lock(&b->mu);
    bool take = !b->stopping && b->n_pending < MAX_PENDING &&
                !(b->building && strcmp(b->building, key) == 0);
    for (int i = 0; take && i < b->n_pending; i++)
        take = strcmp(b->pending[i].key, key) != 0;
    if (take) { /* a few small copies: once per job at most */
        build_req r = {.key = strdup(key)};
        take = r.key && copy_mixture(&r.mx, mx, b->e->svf ? b->e->svf->n : 0) == 0;
        if (take) {
            b->pending[b->n_pending++] = r;
            pthread_cond_signal(&b->cv);
        } else {
            req_clear(&r);
        }
    }
    pthread_mutex_unlock(&b->mu);
    return take;
}

unsigned long t2_builder_count(t2_builder *b)
{
    return atomic_load(&b->n_built);
}
