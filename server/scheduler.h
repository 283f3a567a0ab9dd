/* The generation scheduler: every request's pass 1 (adaptation decision)
 * runs on a worker thread, then its pass 2 joins the running batch of
 * one decode thread (continuous batching: sequences join and leave between
 * decode steps; sequences with different experts share a step through the
 * factored path). No function here blocks on generation: results come
 * back through the job's callbacks, which run on scheduler threads (the
 * HTTP layer forwards them to its loop). */
#ifndef T2_SCHEDULER_H
#define T2_SCHEDULER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"

typedef struct t2_sched t2_sched;

typedef struct t2_sched_opts {
    int max_seqs;      /* sequences decoded together (default 8) */
    int queue_len;     /* waiting requests before 429 (default 64) */
    int n_ctx;         /* context per sequence (default: model max, capped at 4096) */
    int pass1_workers; /* threads for pass 1 (default 1) */
    bool warm_pass1;   /* each pass-1 worker evaluates the classification
                          prompt's fixed part when it starts (default true) */
} t2_sched_opts;

void t2_sched_opts_defaults(t2_sched_opts *o);

/* What a job asks for. The scheduler copies everything it keeps. */
typedef struct t2_job_req {
    const int32_t *prompt; /* pass-2 prompt ids (chat template applied by the caller) */
    size_t n_prompt;
    const char *question; /* the user's text, for pass-1 classification */
    t2_adapt_req adapt;   /* strings borrowed only during t2_sched_submit */
    t2_gen_params gen;    /* stop strings copied */
    double timeout_s;     /* 0 = none; past it the job ends with finish "timeout" */
} t2_job_req;

typedef struct t2_job_result {
    int error_code; /* 0 ok, else an HTTP-style status (404, 422, 500, 503) */
    char error[512];
    const char *finish; /* "stop", "length", "cancelled", "timeout" */
    int prompt_tokens, completion_tokens;
    int cached_tokens; /* prompt tokens whose KV a finished job left in its context */
    double pass1_ms, pass2_ms, queue_ms;
} t2_job_result;

/* Callbacks, each called from a scheduler thread, never concurrently for
 * one job, in this order: on_decision once (unless pass 1 failed),
 * on_text zero or more times, on_done exactly once. After on_done the
 * job no longer touches `user`. */
typedef struct t2_job_events {
    void (*on_decision)(void *user, const t2_decision *d);
    void (*on_text)(void *user, const char *text, size_t len);
    void (*on_done)(void *user, const t2_job_result *r);
} t2_job_events;

int t2_sched_create(t2_sched **out, t2_engine *e, const t2_sched_opts *o, t2_err *err);
/* Stops accepting, cancels what is left (their on_done runs with finish
 * "cancelled"), joins the threads. */
void t2_sched_free(t2_sched *s);

/* Queues a job. err_code on failure: 429 queue full, 503 shutting down,
 * 422 invalid (prompt too long for the context, bad parameters). */
int t2_sched_submit(t2_sched *s, const t2_job_req *req, const t2_job_events *ev, void *user,
                    uint64_t *job_id, int *err_code, t2_err *err);
/* Cancels a job (client gone): it ends soon with finish "cancelled". Safe
 * to call for a job that already ended. */
void t2_sched_cancel(t2_sched *s, uint64_t job_id);
/* Stop taking new jobs (graceful shutdown); in-flight ones continue. */
void t2_sched_drain(t2_sched *s);
/* Jobs queued or running. */
void t2_sched_counts(t2_sched *s, int *queued, int *running);
/* Materialised sets the background builder has made (0 without one). */
unsigned long t2_sched_builds(t2_sched *s);

/* Runs fn(engine, pool, ctx, arg) on a pass-1 worker with its own pool
 * and context (few-shot search, classification-only requests), then
 * done(arg, rc) on that thread. Same 429/503 rules as submit. */
typedef int (*t2_sched_task_fn)(t2_engine *e, t2_ctx *ctx, void *arg);
int t2_sched_run_task(t2_sched *s, t2_sched_task_fn fn, void (*done)(void *arg, int rc), void *arg,
                      int *err_code, t2_err *err);

#endif
