/* Jobs: scheduler callbacks (any thread) fill the shared half and wake the
 * loop; the loop follows jobs and reacts in on_wake. */
#include "serve_job.h"

#include <stdlib.h>
#include <string.h>

t2_job *t2_job_new(t2_server *s, t2_req *req, void (*on_wake)(t2_job *))
{
    t2_job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    if (pthread_mutex_init(&j->mu, NULL) != 0) {
        free(j);
        return NULL;
    }
    atomic_init(&j->refs, 1);
    j->wake = &s->wake;
    j->srv = s;
    j->req = req;
    j->on_wake = on_wake;
    j->followed = true;
    j->next = s->jobs;
    if (s->jobs)
        s->jobs->prev = j;
    s->jobs = j;
    return j;
}

void t2_job_unref(t2_job *j)
{
    if (atomic_fetch_sub(&j->refs, 1) != 1)
        return;
    t2_api_decision_free(&j->dec);
    free(j->text);
    if (j->free_arg)
        j->free_arg(j->arg);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

/* ---- scheduler side (scheduler threads) ---- */

static void ev_decision(void *user, const t2_decision *d)
{
    t2_job *j = user;
    t2_api_decision copy; /* allocations outside the lock */
    bool ok = t2_api_decision_copy(&copy, d) == 0;
    pthread_mutex_lock(&j->mu);
    if (ok) {
        t2_api_decision_free(&j->dec);
        j->dec = copy;
    }
    j->has_decision = true;
    uv_async_t *w = j->wake;
    pthread_mutex_unlock(&j->mu);
    uv_async_send(w);
}

static void ev_text(void *user, const char *text, size_t len)
{
    t2_job *j = user;
    if (len == 0)
        return;
    pthread_mutex_lock(&j->mu);
    if (j->len + len + 1 > j->cap) {
        size_t cap = (j->len + len + 1) * 2;
        char *grown = realloc(j->text, cap);
        if (grown) {
            j->text = grown;
            j->cap = cap;
        }
    }
    if (j->len + len + 1 <= j->cap) {
        memcpy(j->text + j->len, text, len);
        j->len += len;
        j->text[j->len] = '\0';
    }
    uv_async_t *w = j->wake;
    pthread_mutex_unlock(&j->mu);
    uv_async_send(w);
}

static void ev_done(void *user, const t2_job_result *r)
{
    t2_job *j = user;
    pthread_mutex_lock(&j->mu);
    j->res = *r;
    j->done = true;
    uv_async_t *w = j->wake;
    pthread_mutex_unlock(&j->mu);
    uv_async_send(w); /* the server's handle: it outlives the scheduler */
    t2_job_unref(j);  /* the scheduler's reference: j may be gone after this */
}

static int task_fn(t2_engine *e, t2_ctx *ctx, void *arg)
{
    t2_job *j = arg;
    return j->task(e, ctx, j);
}

static void task_done(void *arg, int rc)
{
    t2_job *j = arg;
    pthread_mutex_lock(&j->mu);
    j->task_rc = rc;
    j->done = true;
    uv_async_t *w = j->wake;
    pthread_mutex_unlock(&j->mu);
    uv_async_send(w);
    t2_job_unref(j);
}

/* ---- loop side ---- */

int t2_job_submit(t2_job *j, const t2_job_req *req, int *err_code, t2_err *err)
{
    static const t2_job_events events = {ev_decision, ev_text, ev_done};
    atomic_fetch_add(&j->refs, 1);
    uint64_t id = 0;
    if (t2_sched_submit(j->srv->sched, req, &events, j, &id, err_code, err) != 0) {
        atomic_fetch_sub(&j->refs, 1);
        return -1;
    }
    j->id = id;
    j->submitted = true;
    return 0;
}

int t2_job_run_task(t2_job *j, int *err_code, t2_err *err)
{
    atomic_fetch_add(&j->refs, 1);
    if (t2_sched_run_task(j->srv->sched, task_fn, task_done, j, err_code, err) != 0) {
        atomic_fetch_sub(&j->refs, 1);
        return -1;
    }
    j->submitted = true;
    return 0;
}

static void unfollow(t2_job *j)
{
    t2_server *s = j->srv;
    if (j->prev)
        j->prev->next = j->next;
    else
        s->jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    j->followed = false;
    t2_job_unref(j);
}

/* A cancelled generation whose request is gone: followed until it ends so
 * its tokens and timings still reach the metrics. */
static void orphan_wake(t2_job *j)
{
    pthread_mutex_lock(&j->mu);
    bool done = j->done;
    t2_job_result res = j->res;
    pthread_mutex_unlock(&j->mu);
    if (!done)
        return;
    t2_metrics_job(&j->srv->metrics, res.completion_tokens,
                   res.pass1_ms > 0 ? res.pass1_ms / 1e3 : -1, -1);
    unfollow(j);
}

void t2_job_drop(t2_job *j)
{
    if (!j->followed || (!j->req && j->on_wake == orphan_wake))
        return;
    pthread_mutex_lock(&j->mu);
    bool running = j->submitted && !j->done;
    pthread_mutex_unlock(&j->mu);
    j->req = NULL;
    if (running && j->id && j->srv->sched) {
        t2_sched_cancel(j->srv->sched, j->id); /* frees its slot soon */
        j->on_wake = orphan_wake;
        return;
    }
    unfollow(j);
}

void t2_jobs_drop_orphans(t2_server *s)
{
    for (t2_job *j = s->jobs, *next; j; j = next) {
        next = j->next;
        if (!j->req)
            unfollow(j);
    }
}

void t2_jobs_wake(uv_async_t *a)
{
    t2_server *s = a->data;
    for (t2_job *j = s->jobs, *next; j; j = next) {
        next = j->next;
        if (j->on_wake)
            j->on_wake(j);
    }
}

void t2_jobs_cancel_all(t2_server *s)
{
    for (t2_job *j = s->jobs; j; j = j->next) {
        pthread_mutex_lock(&j->mu);
        bool running = j->submitted && !j->done;
        pthread_mutex_unlock(&j->mu);
        if (running && j->id && s->sched)
            t2_sched_cancel(s->sched, j->id);
    }
}
