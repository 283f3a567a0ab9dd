#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

/* Workers spin briefly before sleeping: a decode step dispatches a few
 * hundred short jobs, and a condition-variable wake-up for each would cost
 * more than the work. */
#define SPIN_ITERS 4000

struct t2_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_uint gen;    /* bumped once per job */
    atomic_int pending; /* workers (other than 0) still running the job */
    atomic_bool quit;
    t2_pool_fn fn;
    void *arg;
    unsigned long runs; /* t2_pool_run calls; only the one caller touches it */
};

typedef struct worker_arg {
    t2_pool *pool;
    int index;
} worker_arg;

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void *worker_main(void *p)
{
    worker_arg *wa = p;
    t2_pool *pool = wa->pool;
    int index = wa->index;
    free(wa);
    unsigned seen = 0; /* gen starts at 0; a job posted before we got here still counts */
    for (;;) {
        int spins = 0;
        while (atomic_load_explicit(&pool->gen, memory_order_acquire) == seen &&
               !atomic_load(&pool->quit)) {
            if (++spins < SPIN_ITERS) {
                /* yield now and then: on a loaded machine the thread we wait
                 * for may need this core */
                if (spins % 256 == 0)
                    sched_yield();
                else
                    cpu_relax();
                continue;
            }
            pthread_mutex_lock(&pool->mu);
            while (atomic_load(&pool->gen) == seen && !atomic_load(&pool->quit))
                pthread_cond_wait(&pool->cv, &pool->mu);
            pthread_mutex_unlock(&pool->mu);
        }
        if (atomic_load(&pool->quit))
            return NULL;
        seen = atomic_load(&pool->gen);
        pool->fn(pool->arg, index, pool->n);
        atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_release);
    }
}

int t2_pool_create(t2_pool **out, int n_threads, t2_err *err)
{
    *out = NULL;
    if (n_threads <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = c > 0 ? (int)c : 1;
    }
    if (n_threads > 256)
        n_threads = 256;
    t2_pool *p = calloc(1, sizeof *p);
    if (!p)
        return t2_err_set(err, "out of memory");
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads) {
        free(p);
        return t2_err_set(err, "out of memory");
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa || (wa->pool = p, wa->index = i,
                    pthread_create(&p->threads[i], NULL, worker_main, wa) != 0)) {
            free(wa);
            p->n = i; /* free only the ones started */
            t2_pool_free(p);
            return t2_err_set(err, "cannot start worker thread %d", i);
        }
    }
    *out = p;
    return 0;
}

void t2_pool_free(t2_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->quit, true);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p);
}

int t2_pool_size(const t2_pool *p)
{
    return p->n;
}

unsigned long t2_pool_runs(const t2_pool *p)
{
    return p->runs;
}

void t2_pool_run(t2_pool *p, t2_pool_fn fn, void *arg)
{
    p->runs++;
    if (p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store(&p->pending, p->n - 1);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, p->n);
    for (int spins = 1; atomic_load_explicit(&p->pending, memory_order_acquire) > 0; spins++) {
        if (spins % 256 == 0)
            sched_yield();
        else
            cpu_relax();
    }
}

void t2_pool_share(int n, int w, int nw, int align, int *begin, int *end)
{
    if (align < 1)
        align = 1;
    int blocks = (n + align - 1) / align;
    int per = blocks / nw, extra = blocks % nw;
    int b0 = w * per + (w < extra ? w : extra);
    int b1 = b0 + per + (w < extra ? 1 : 0);
    *begin = b0 * align < n ? b0 * align : n;
    *end = b1 * align < n ? b1 * align : n;
}

void t2_chunks_init(t2_chunks *q, int n, int nw, int align)
{
    q->n = n;
    q->nw = nw > 0 ? nw : 1;
    q->align = align > 0 ? align : 1;
    atomic_init(&q->next, 0);
}

bool t2_chunks_take(t2_chunks *q, int *begin, int *end)
{
    int cur = atomic_load_explicit(&q->next, memory_order_relaxed);
    for (;;) {
        if (cur >= q->n)
            return false;
        int left = q->n - cur;
        int size = (left + q->nw - 1) / q->nw;
        size = (size + q->align - 1) / q->align * q->align;
        int stop = size < left ? cur + size : q->n;
        if (atomic_compare_exchange_weak_explicit(&q->next, &cur, stop, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            *begin = cur;
            *end = stop;
            return true;
        }
    }
}
