/* Jobs: the boundary between the loop thread and the scheduler's threads.
 * A job has two halves. The shared half (decision, text, result) is
 * written by scheduler callbacks under the job's mutex, which then only
 * uv_async_send the server's wake handle; the loop's wake callback calls
 * each followed job's on_wake, which reads the shared half under the same
 * mutex. Reference counted: one reference for the loop while it follows
 * the job, one for the scheduler from submission to on_done. */
#ifndef T2_SERVE_JOB_H
#define T2_SERVE_JOB_H

#include <pthread.h>
#include <stdatomic.h>

#include "api_render.h"
#include "serve.h"

struct t2_job {
    /* shared with scheduler threads: under mu */
    pthread_mutex_t mu;
    atomic_int refs;
    uv_async_t *wake;
    bool has_decision;
    t2_api_decision dec;
    char *text; /* generated text not yet taken by the loop */
    size_t len, cap;
    bool done;
    t2_job_result res;
    int task_rc; /* run_task jobs: fn's return */
    /* run_task jobs: fn(engine, ctx, arg) and its argument, owned by the
     * handler, alive as long as the job */
    int (*task)(t2_engine *e, t2_ctx *ctx, t2_job *job);
    void *arg;
    void (*free_arg)(void *arg);
    /* loop thread only */
    t2_server *srv;
    t2_req *req; /* NULL once the request is over */
    uint64_t id;
    bool submitted; /* the scheduler holds a reference */
    bool followed;  /* in srv->jobs */
    void (*on_wake)(t2_job *job);
    t2_job *prev, *next;
};

/* A new job followed by the loop (refs = 1), bound to req. */
t2_job *t2_job_new(t2_server *s, t2_req *req, void (*on_wake)(t2_job *));
/* Submits a generation (takes the scheduler's reference on success). */
int t2_job_submit(t2_job *job, const t2_job_req *req, int *err_code, t2_err *err);
/* Runs job->task on a pass-1 worker (t2_sched_run_task). */
int t2_job_run_task(t2_job *job, int *err_code, t2_err *err);
/* The request is done with the job: a running generation is cancelled and
 * followed until it ends (for the metrics), then the loop's reference is
 * dropped. */
void t2_job_drop(t2_job *job);
/* Shutdown, after the scheduler is gone: drops jobs no request holds. */
void t2_jobs_drop_orphans(t2_server *s);
void t2_job_unref(t2_job *job);

/* The loop's wake callback: calls on_wake of every followed job. */
void t2_jobs_wake(uv_async_t *a);
/* Cancels every submitted job that is not done (shutdown). */
void t2_jobs_cancel_all(t2_server *s);

#endif
