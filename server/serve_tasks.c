/* Pass-1-only work on the scheduler's pass-1 workers (t2_sched_run_task):
 * POST /v1/classify (t2_engine_decide alone) and POST /v1/adapt (the
 * few-shot search, which stores a profile). The task's data belongs to
 * the job, so a client that leaves does not pull it from under the
 * worker; the result is simply not sent. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_tasks.h"
#include "serve_job.h"
#include "serve_work.h"

typedef struct task_data {
    t2_server *s;
    t2_req *r;
    bool is_adapt;
    int parse_rc;
    t2_api_err perr;
    /* input */
    t2_api_gen_req cls;     /* classify */
    t2_api_adapt_req adapt; /* adapt */
    /* output, written by the worker before done */
    int code;
    t2_err err;
    t2_api_decision dec;
    t2_cem_result cem;
    bool have_cem;
    t2_profile *profile;
} task_data;

static void task_data_free(void *arg)
{
    task_data *d = arg;
    t2_api_gen_req_free(&d->cls);
    t2_api_adapt_req_free(&d->adapt);
    t2_api_decision_free(&d->dec);
    if (d->have_cem)
        t2_cem_result_clear(&d->cem);
    t2_profile_free(d->profile);
    free(d);
}

static int classify_task(t2_engine *e, t2_ctx *ctx, t2_job *job)
{
    task_data *d = job->arg;
    t2_decision dec = {0};
    int rc = t2_engine_decide(e, ctx, &d->cls.adapt, d->cls.question, &dec, &d->code, &d->err);
    if (rc == 0 && t2_api_decision_copy(&d->dec, &dec) != 0) {
        d->code = 500;
        rc = t2_err_set(&d->err, "out of memory");
    }
    t2_decision_clear(&dec);
    return rc;
}

static int adapt_task(t2_engine *e, t2_ctx *ctx, t2_job *job)
{
    task_data *d = job->arg;
    t2_api_adapt_req *a = &d->adapt;
    if (!e->profiles) {
        d->code = 404;
        return t2_err_set(&d->err, "profiles are disabled: start t2 serve with --profiles DIR");
    }
    if (t2_engine_few_shot(e, ctx, a->examples, a->n_examples, a->experts, a->n_experts, &a->cem,
                           &d->cem, &d->code, &d->err) != 0)
        return -1;
    d->have_cem = true;
    t2_profile p = {.name = (char *)a->name,
                    .n = d->cem.n,
                    .experts = d->cem.experts,
                    .alpha = d->cem.alpha,
                    .source = "few_shot",
                    .accuracy = d->cem.accuracy,
                    .created = (long long)time(NULL)};
    if (t2_profiles_put(e->profiles, &p, &d->code, &d->err) != 0)
        return -1;
    d->profile = t2_profile_copy(&p);
    if (!d->profile) {
        d->code = 500;
        return t2_err_set(&d->err, "out of memory");
    }
    return 0;
}

static void task_close(t2_req *r, void *data, bool ok)
{
    (void)r;
    (void)ok;
    t2_job_drop(data); /* the task runs to its end; its result is dropped */
}

static void task_wake(t2_job *j)
{
    if (!j->req)
        return;
    pthread_mutex_lock(&j->mu);
    bool done = j->done;
    int rc = j->task_rc;
    pthread_mutex_unlock(&j->mu);
    if (!done)
        return;
    task_data *d = j->arg;
    t2_req *r = j->req;
    if (rc != 0) {
        int status = d->code >= 400 && d->code < 600 ? d->code : 500;
        t2_serve_fail(r, status, "%s", d->err.msg[0] ? d->err.msg : "the task failed");
    } else if (j->task == classify_task) {
        t2_req_respond_json(r, 200, t2_api_classify_json(&d->dec, d->cls.adapt.method));
    } else {
        t2_log_msg(&j->srv->log, T2_LOG_INFO, "profile '%s' stored: accuracy %.3f (base %.3f)",
                   d->profile->name, d->cem.accuracy, d->cem.base_accuracy);
        t2_req_respond_json(r, 201, t2_api_adapt_json(d->profile, &d->cem));
    }
    /* the request keeps the job as its data until it closes (task_close) */
}

/* Starts the task of a parsed request (d is owned by the job from here). */
static void run(t2_server *s, t2_req *r, task_data *d, int (*task)(t2_engine *, t2_ctx *, t2_job *))
{
    t2_job *j = t2_job_new(s, r, task_wake);
    if (!j) {
        task_data_free(d);
        t2_serve_fail(r, 500, "out of memory");
        return;
    }
    j->task = task;
    j->arg = d;
    j->free_arg = task_data_free;
    t2_req_set_data(r, j, task_close, NULL);
    int code = 0;
    t2_err err = {{0}};
    if (t2_job_run_task(j, &code, &err) != 0) {
        t2_api_err e;
        t2_api_fail(&e, code >= 400 && code < 600 ? code : 500, NULL, NULL, "%s",
                    err.msg[0] ? err.msg : "the scheduler refused the task");
        if (e.status == 429 || e.status == 503)
            t2_req_add_header(r, "Retry-After", "1");
        t2_req_respond_error(r, &e);
        return;
    }
    t2_req_wait(r);
}

/* On a libuv worker: parse and validate the body (it can be large). */
static void parse_run(void *arg)
{
    task_data *d = arg;
    size_t len;
    const char *body = t2_req_body(d->r, &len);
    d->parse_rc = d->is_adapt ? t2_api_parse_adapt(body, len, &d->adapt, &d->perr)
                              : t2_api_parse_classify(body, len, &d->s->limits, &d->cls, &d->perr);
}

static void parse_after(t2_server *s, t2_req *r, void *arg)
{
    task_data *d = arg;
    if (t2_req_over(r)) {
        task_data_free(d);
    } else if (d->parse_rc != 0) {
        t2_req_respond_error(r, &d->perr);
        task_data_free(d);
    } else {
        run(s, r, d, d->is_adapt ? adapt_task : classify_task);
    }
}

static void start(t2_server *s, t2_req *r, bool is_adapt)
{
    task_data *d = calloc(1, sizeof *d);
    if (!d) {
        t2_serve_fail(r, 500, "out of memory");
        return;
    }
    d->s = s;
    d->r = r;
    d->is_adapt = is_adapt;
    if (t2_serve_offload(s, r, parse_run, parse_after, d) != 0) {
        task_data_free(d);
        t2_serve_fail(r, 500, "cannot queue the request");
    }
}

void t2_h_classify(t2_server *s, t2_req *r, const char *param)
{
    (void)param;
    start(s, r, false);
}

void t2_h_adapt(t2_server *s, t2_req *r, const char *param)
{
    (void)param;
    start(s, r, true);
}
