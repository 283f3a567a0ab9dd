/* Pass-1 workers and the continuous-batching decode thread. */
#include "scheduler.h"

#include "builder.h"

#include "clock.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_STOP_STRINGS 16

/* ---- jobs and tasks ---- */

typedef struct job {
    uint64_t id;
    t2_job_events ev;
    void *user;
    /* the request, deep-copied */
    int32_t *prompt;
    size_t n_prompt;
    char *question;
    t2_adapt_req adapt;
    char *expert, *profile;
    char **mix_names;
    float *mix_alpha;
    t2_gen_params gen;
    char *stops[MAX_STOP_STRINGS];
    double deadline_ms, t_submit, t_pass1, t_pass2;
    atomic_bool cancel;
    /* after pass 1 */
    t2_decision decision;
    t2_adapted *weights;
    /* factored weights (of a mixture not in the cache): the tokens
     * generated with them (rent) and with the mixture before this job;
     * once the sum reaches the policy's materialise_min_tokens the builder
     * is asked for the set, and the job switches to it when it is done */
    bool upgrade, build_asked;
    uint64_t rent_before;
    int rent;
    /* decoding */
    t2_ctx *ctx;
    t2_gen_seq *seq;
    int32_t next_tok;
    t2_job_result result;
    struct job *next; /* queue link */
} job;

typedef struct task {
    t2_sched_task_fn fn;
    void (*done)(void *arg, int rc);
    void *arg;
} task;

/* pass-1 queue entries: a job or a task */
typedef struct work {
    job *j;
    task t;
    struct work *next;
} work;

typedef struct live {
    job *j;
    struct live *next;
} live;

#define MAX_BUILT 16

struct t2_sched {
    t2_engine *e;
    t2_sched_opts o;
    pthread_mutex_t mu;
    pthread_cond_t work_cv, ready_cv;
    work *work_head, *work_tail;
    job *ready_head, *ready_tail;
    int n_waiting; /* in the work or ready queues */
    int n_running; /* pass 1 in progress or decoding */
    live *jobs;    /* every job not yet done, for cancel by id */
    uint64_t next_id;
    bool draining, stopping;
    pthread_t *workers;
    int n_workers;
    pthread_t decoder;
    bool decoder_started;
    t2_builder *builder; /* NULL when a materialised set does not fit the cache */
    /* materialised sets built in the background by the builder, for the
     * decode thread to swap in (under mu) */
    t2_adapted *built[MAX_BUILT];
    int n_built;
    /* decode thread only */
    job **active;
    int n_active;
    t2_ctx **free_ctx;
    int n_free_ctx;
    int n_ctx_made; /* contexts created so far: at most max_seqs */
};

void t2_sched_opts_defaults(t2_sched_opts *o)
{
    o->max_seqs = 8;
    o->queue_len = 64;
    o->n_ctx = 0;
    o->pass1_workers = 1;
    o->warm_pass1 = true;
}

static void job_free(job *j)
{
    if (!j)
        return;
    free(j->prompt);
    free(j->question);
    free(j->expert);
    free(j->profile);
    for (size_t i = 0; i < j->adapt.n_mix; i++)
        free(j->mix_names[i]);
    free(j->mix_names);
    free(j->mix_alpha);
    for (size_t i = 0; i < j->gen.n_stop; i++)
        free(j->stops[i]);
    t2_decision_clear(&j->decision);
    t2_adapted_unref(j->weights);
    t2_gen_seq_free(j->seq);
    free(j);
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static int copy_request(job *j, const t2_job_req *r, t2_err *err)
{
    j->prompt = malloc((r->n_prompt + 1) * sizeof *j->prompt);
    j->question = strdup(r->question ? r->question : "");
    if (!j->prompt || !j->question)
        return t2_err_set(err, "out of memory");
    memcpy(j->prompt, r->prompt, r->n_prompt * sizeof *j->prompt);
    j->n_prompt = r->n_prompt;
    j->adapt = r->adapt;
    j->adapt.expert = j->expert = dup_or_null(r->adapt.expert);
    j->adapt.profile = j->profile = dup_or_null(r->adapt.profile);
    if (r->adapt.n_mix) {
        j->mix_names = calloc(r->adapt.n_mix, sizeof *j->mix_names);
        j->mix_alpha = malloc(r->adapt.n_mix * sizeof *j->mix_alpha);
        if (!j->mix_names || !j->mix_alpha) {
            j->adapt.n_mix = 0;
            return t2_err_set(err, "out of memory");
        }
        for (size_t i = 0; i < r->adapt.n_mix; i++) {
            j->mix_names[i] = strdup(r->adapt.mix_names[i]);
            j->mix_alpha[i] = r->adapt.mix_alpha[i];
            if (!j->mix_names[i])
                return t2_err_set(err, "out of memory");
        }
    }
    j->adapt.mix_names = (const char **)j->mix_names;
    j->adapt.mix_alpha = j->mix_alpha;
    j->gen = r->gen;
    if (r->gen.n_stop > MAX_STOP_STRINGS)
        return t2_err_set(err, "at most %d stop strings", MAX_STOP_STRINGS);
    for (size_t i = 0; i < r->gen.n_stop; i++)
        if (!(j->stops[i] = strdup(r->gen.stop[i])))
            return t2_err_set(err, "out of memory");
    j->gen.stop = (const char **)j->stops;
    return 0;
}

/* ---- bookkeeping (under mu) ---- */

static void live_add(t2_sched *s, job *j, live *node)
{
    node->j = j;
    node->next = s->jobs;
    s->jobs = node;
}

static void live_remove(t2_sched *s, job *j)
{
    for (live **p = &s->jobs; *p; p = &(*p)->next) {
        if ((*p)->j == j) {
            live *dead = *p;
            *p = dead->next;
            free(dead);
            return;
        }
    }
}

/* The job's last act: report, forget, free. Called without mu held. */
static void finish_job(t2_sched *s, job *j, const char *finish)
{
    j->result.finish = finish;
    if (j->t_pass2 > 0)
        j->result.pass2_ms = t2_now_ms() - j->t_pass2;
    j->result.pass1_ms = j->decision.pass1_ms;
    if (j->seq)
        j->result.completion_tokens = t2_gen_seq_n_tokens(j->seq);
    j->result.prompt_tokens = (int)j->n_prompt;
    if (j->ev.on_done)
        j->ev.on_done(j->user, &j->result);
    pthread_mutex_lock(&s->mu);
    live_remove(s, j);
    pthread_mutex_unlock(&s->mu);
    job_free(j);
}

static void fail_job(t2_sched *s, job *j, int code, const char *msg)
{
    j->result.error_code = code;
    snprintf(j->result.error, sizeof j->result.error, "%s", msg);
    finish_job(s, j, "error");
}

static bool job_expired(const job *j)
{
    return j->deadline_ms > 0 && t2_now_ms() > j->deadline_ms;
}

/* ---- pass-1 workers ---- */

/* The builder's callback: hands a materialised set to the decode thread
 * (the oldest unclaimed one is dropped when the board is full: its jobs
 * stay factored). */
static void on_built(void *user, t2_adapted *a)
{
    t2_sched *s = user;
    t2_adapted *drop = NULL;
    pthread_mutex_lock(&s->mu);
    if (s->n_built == MAX_BUILT) {
        drop = s->built[0];
        memmove(s->built, s->built + 1, (MAX_BUILT - 1) * sizeof *s->built);
        s->n_built--;
    }
    s->built[s->n_built++] = a;
    pthread_cond_signal(&s->ready_cv);
    pthread_mutex_unlock(&s->mu);
    t2_adapted_unref(drop);
}

/* Returns true when the job moved on to the decode queue; otherwise it
 * has been finished here. */
static bool run_pass1(t2_sched *s, job *j, t2_ctx *ctx)
{
    if (atomic_load(&j->cancel)) {
        finish_job(s, j, "cancelled");
        return false;
    }
    if (job_expired(j)) {
        finish_job(s, j, "timeout");
        return false;
    }
    t2_err err = {{0}};
    int code = 0;
    j->t_pass1 = t2_now_ms();
    j->result.queue_ms = j->t_pass1 - j->t_submit;
    if (t2_engine_decide(s->e, ctx, &j->adapt, j->question, &j->decision, &code, &err) != 0) {
        fail_job(s, j, code ? code : 500, err.msg);
        return false;
    }
    if (j->ev.on_decision)
        j->ev.on_decision(j->user, &j->decision);
    /* A mixture not in the cache starts factored (no build before the
     * first token); the decode thread counts its tokens (note_token) and
     * has it built in the background once they pay for a build, then
     * swaps the materialised set in between two steps. */
    t2_engine *e = s->e;
    if (t2_engine_weights_factored(e, &j->decision.mixture, &j->weights, &err) != 0) {
        fail_job(s, j, 500, err.msg);
        return false;
    }
    if (s->builder && j->weights && j->weights->factored && j->weights->key) {
        j->upgrade = true;
        j->rent_before = t2_adapt_cache_tokens(e->cache, j->weights->key);
    }
    pthread_mutex_lock(&s->mu);
    j->next = NULL;
    if (s->ready_tail)
        s->ready_tail->next = j;
    else
        s->ready_head = j;
    s->ready_tail = j;
    s->n_waiting++;
    s->n_running--;
    pthread_cond_signal(&s->ready_cv);
    pthread_mutex_unlock(&s->mu);
    return true;
}

typedef struct worker_state {
    t2_sched *s;
    t2_pool *pool;
    t2_ctx *ctx;
} worker_state;

static void *worker_main(void *arg)
{
    worker_state *w = arg;
    t2_sched *s = w->s;
    /* the first request finds the classification prompt cached too; a
     * failure here only means it does not (the request reports its own) */
    t2_err err;
    if (s->o.warm_pass1 && s->e->experts)
        (void)t2_engine_warm_pass1(s->e, w->ctx, &err);
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->work_head && !s->stopping)
            pthread_cond_wait(&s->work_cv, &s->mu);
        work *item = s->work_head;
        if (!item) { /* stopping with nothing left */
            pthread_mutex_unlock(&s->mu);
            break;
        }
        s->work_head = item->next;
        if (!s->work_head)
            s->work_tail = NULL;
        s->n_waiting--;
        s->n_running++;
        pthread_mutex_unlock(&s->mu);
        if (item->j) {
            bool moved = false;
            if (s->stopping)
                finish_job(s, item->j, "cancelled");
            else
                moved = run_pass1(s, item->j, w->ctx);
            if (!moved) {
                pthread_mutex_lock(&s->mu);
                s->n_running--;
                pthread_mutex_unlock(&s->mu);
            }
        } else {
            t2_ctx_truncate(w->ctx, 0);
            int rc = s->stopping ? -1 : item->t.fn(s->e, w->ctx, item->t.arg);
            t2_ctx_set_layers(w->ctx, NULL);
            item->t.done(item->t.arg, rc);
            pthread_mutex_lock(&s->mu);
            s->n_running--;
            pthread_mutex_unlock(&s->mu);
        }
        free(item);
    }
    t2_ctx_free(w->ctx);
    t2_pool_free(w->pool);
    free(w);
    return NULL;
}

/* ---- the decode thread ---- */

static bool text_cb(void *user, const char *text, size_t len, int32_t token)
{
    (void)token;
    job *j = user;
    if (len && j->ev.on_text)
        j->ev.on_text(j->user, text, len);
    return !atomic_load(&j->cancel);
}

/* A match shorter than this (and than half the prompt) saves less than
 * losing the record it would overwrite: a fresh context is made instead
 * while fewer than max_seqs exist (the chat template's first tokens match
 * nearly everything). */
#define REUSE_MIN_TOKENS 32

/* A free context, preferring the one whose KV cache already holds the
 * longest beginning of the prompt under the same weights (a shared system
 * prompt, or the earlier turns of a conversation; a NULL key matches
 * nothing). */
static t2_ctx *take_ctx(t2_sched *s, const char *key, const int32_t *prompt, size_t n, t2_err *err)
{
    int best = 0, best_len = -1;
    for (int i = 0; i < s->n_free_ctx; i++) {
        int len = key ? t2_ctx_cached_prefix(s->free_ctx[i], key, prompt, (int)n) : 0;
        if (len > best_len) { /* ties: the least recently released (lowest index) */
            best = i;
            best_len = len;
        }
    }
    bool worth = best_len >= REUSE_MIN_TOKENS || 2 * (size_t)best_len >= n;
    if (s->n_free_ctx > 0 && (worth || s->n_ctx_made >= s->o.max_seqs)) {
        /* kept in release order, so with no match the least recently
         * used goes and fresher prefixes stay */
        t2_ctx *c = s->free_ctx[best];
        memmove(&s->free_ctx[best], &s->free_ctx[best + 1],
                (size_t)(s->n_free_ctx - best - 1) * sizeof *s->free_ctx);
        s->n_free_ctx--;
        return c;
    }
    t2_ctx *c = NULL;
    if (t2_ctx_create(&c, s->e->model, s->e->pool, s->o.n_ctx, err) == 0)
        s->n_ctx_made++;
    return c;
}

static void release(t2_sched *s, job *j, const char *finish)
{
    if (j->rent > 0) /* the materialised set, if it came, has the same key */
        t2_adapt_cache_charge(s->e->cache, j->weights->key, (uint64_t)j->rent);
    if (j->ctx) {
        t2_ctx_set_layers(j->ctx, NULL);
        s->free_ctx[s->n_free_ctx++] = j->ctx;
        j->ctx = NULL;
    }
    pthread_mutex_lock(&s->mu);
    s->n_running--;
    pthread_mutex_unlock(&s->mu);
    finish_job(s, j, finish);
}

static const char *seq_finish(const job *j)
{
    enum t2_finish f;
    t2_gen_seq_finished(j->seq, &f);
    return t2_finish_name(f);
}

/* Factored weights -> their materialised set (same values to rounding),
 * between steps. */
static void upgrade(job *j, t2_adapted *a)
{
    t2_ctx_set_layers(j->ctx, a->layers);
    t2_adapted_unref(j->weights);
    j->weights = a;
    j->upgrade = false;
}

static void apply_built(t2_sched *s, t2_adapted **built, int n)
{
    for (int b = 0; b < n; b++) {
        for (int i = 0; i < s->n_active; i++) {
            job *j = s->active[i];
            if (j->upgrade && j->weights->key && strcmp(j->weights->key, built[b]->key) == 0)
                upgrade(j, t2_adapted_ref(built[b]));
        }
        t2_adapted_unref(built[b]);
    }
}

/* A token of job j: while its weights are factored it adds to their rent;
 * once the mixture's rent (earlier jobs' and j's) reaches the policy's
 * materialise_min_tokens, the builder gets the mixture (t2_weights_policy:
 * rent, then buy). */
static void note_token(t2_sched *s, job *j)
{
    if (!j->upgrade)
        return;
    j->rent++;
    if (!j->build_asked &&
        j->rent_before + (uint64_t)j->rent >= (uint64_t)s->e->policy.materialise_min_tokens) {
        /* refused when being built already or the queue is full: j stays
         * factored (a later job asks again) */
        (void)t2_builder_request(s->builder, &j->decision.mixture, j->weights->key);
        j->build_asked = true;
    }
}

/* Prefills a newly admitted job; true when it joined the batch. */
static bool admit(t2_sched *s, job *j)
{
    t2_err err = {{0}};
    j->ctx = take_ctx(s, t2_adapted_key(j->weights), j->prompt, j->n_prompt, &err);
    if (!j->ctx) {
        pthread_mutex_lock(&s->mu);
        s->n_running--;
        pthread_mutex_unlock(&s->mu);
        fail_job(s, j, 503, err.msg);
        return false;
    }
    t2_ctx_truncate(j->ctx, 0);
    t2_ctx_set_layers(j->ctx, j->weights ? j->weights->layers : NULL);
    t2_adapted *m = j->upgrade ? t2_adapt_cache_peek(s->e->cache, j->weights->key) : NULL;
    if (m) /* built while the job waited */
        upgrade(j, m);
    j->t_pass2 = t2_now_ms();
    /* the prompt's beginning may still be in the context from a finished
     * job (the key again: upgrade() may have replaced the weights) */
    const char *key = t2_adapted_key(j->weights);
    int keep = key ? t2_ctx_reuse_prefix(j->ctx, key, j->prompt, (int)j->n_prompt) : 0;
    j->result.cached_tokens = keep;
    const float *logits;
    if (t2_gen_seq_create(&j->seq, s->e->model, j->prompt, j->n_prompt, &j->gen, text_cb, j,
                          &err) != 0 ||
        t2_forward(j->ctx, j->prompt + keep, (int)j->n_prompt - keep, false, &logits, &err) != 0) {
        j->result.error_code = 422;
        snprintf(j->result.error, sizeof j->result.error, "%s", err.msg);
        release(s, j, "error");
        return false;
    }
    bool full = t2_ctx_n_past(j->ctx) >= t2_ctx_n_ctx(j->ctx);
    note_token(s, j);
    if (t2_gen_seq_step(j->seq, logits, full, &j->next_tok)) {
        release(s, j, seq_finish(j));
        return false;
    }
    return true;
}

/* Ends cancelled and timed-out sequences before the next step. */
static void reap(t2_sched *s)
{
    int kept = 0;
    for (int i = 0; i < s->n_active; i++) {
        job *j = s->active[i];
        if (atomic_load(&j->cancel) || s->stopping) {
            t2_gen_seq_end(j->seq, T2_FINISH_CANCELLED);
            release(s, j, "cancelled");
        } else if (job_expired(j)) {
            t2_gen_seq_end(j->seq, T2_FINISH_TIMEOUT);
            release(s, j, "timeout");
        } else {
            s->active[kept++] = j;
        }
    }
    s->n_active = kept;
}

static void decode_step(t2_sched *s)
{
    t2_ctx *ctxs[128];
    int32_t toks[128];
    int n = s->n_active;
    for (int i = 0; i < n; i++) {
        ctxs[i] = s->active[i]->ctx;
        toks[i] = s->active[i]->next_tok;
    }
    const float *logits;
    t2_err err = {{0}};
    if (t2_forward_batch(ctxs, toks, n, &logits, &err) != 0) {
        for (int i = 0; i < n; i++) {
            s->active[i]->result.error_code = 500;
            snprintf(s->active[i]->result.error, sizeof s->active[i]->result.error, "%s", err.msg);
            release(s, s->active[i], "error");
        }
        s->n_active = 0;
        return;
    }
    size_t V = (size_t)s->e->model->cfg.vocab;
    int kept = 0;
    for (int i = 0; i < n; i++) {
        job *j = s->active[i];
        bool full = t2_ctx_n_past(j->ctx) >= t2_ctx_n_ctx(j->ctx);
        note_token(s, j);
        if (t2_gen_seq_step(j->seq, logits + (size_t)i * V, full, &j->next_tok))
            release(s, j, seq_finish(j));
        else
            s->active[kept++] = j;
    }
    s->n_active = kept;
}

static void *decoder_main(void *arg)
{
    t2_sched *s = arg;
    for (;;) {
        job *admitted[128];
        int n_new = 0;
        pthread_mutex_lock(&s->mu);
        while (!s->stopping && s->n_active == 0 && !s->ready_head)
            pthread_cond_wait(&s->ready_cv, &s->mu);
        while (s->ready_head && s->n_active + n_new < s->o.max_seqs) {
            job *j = s->ready_head;
            s->ready_head = j->next;
            if (!s->ready_head)
                s->ready_tail = NULL;
            s->n_waiting--;
            s->n_running++;
            admitted[n_new++] = j;
        }
        bool stop = s->stopping && s->n_active == 0 && n_new == 0 && !s->ready_head;
        t2_adapted *built[MAX_BUILT];
        int n_built = s->n_built;
        memcpy(built, s->built, (size_t)n_built * sizeof *built);
        s->n_built = 0;
        pthread_mutex_unlock(&s->mu);
        if (stop) {
            apply_built(s, built, n_built); /* no job left: only drops them */
            break;
        }
        for (int i = 0; i < n_new; i++) {
            job *j = admitted[i];
            if (atomic_load(&j->cancel) || s->stopping) {
                pthread_mutex_lock(&s->mu);
                s->n_running--;
                pthread_mutex_unlock(&s->mu);
                finish_job(s, j, "cancelled");
            } else if (admit(s, j)) {
                s->active[s->n_active++] = j;
            }
        }
        apply_built(s, built, n_built);
        reap(s);
        if (s->n_active > 0)
            decode_step(s);
    }
    return NULL;
}

/* ---- public API ---- */

int t2_sched_create(t2_sched **out, t2_engine *e, const t2_sched_opts *o, t2_err *err)
{
    *out = NULL;
    t2_sched *s = calloc(1, sizeof *s);
    if (!s)
        return t2_err_set(err, "out of memory");
    s->e = e;
    s->o = *o;
    if (s->o.max_seqs <= 0 || s->o.max_seqs > 128)
        s->o.max_seqs = s->o.max_seqs <= 0 ? 8 : 128;
    if (s->o.queue_len <= 0)
        s->o.queue_len = 64;
    if (s->o.pass1_workers <= 0)
        s->o.pass1_workers = 1;
    if (s->o.n_ctx <= 0)
        s->o.n_ctx = e->model->cfg.max_pos < 4096 ? e->model->cfg.max_pos : 4096;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work_cv, NULL);
    pthread_cond_init(&s->ready_cv, NULL);
    s->next_id = 1;
    s->active = calloc((size_t)s->o.max_seqs, sizeof *s->active);
    s->free_ctx = calloc((size_t)s->o.max_seqs, sizeof *s->free_ctx);
    s->workers = calloc((size_t)s->o.pass1_workers, sizeof *s->workers);
    if (!s->active || !s->free_ctx || !s->workers) {
        t2_sched_free(s);
        return t2_err_set(err, "out of memory");
    }
    if (e->sets_fit && t2_builder_create(&s->builder, e, on_built, s, err) != 0) {
        t2_sched_free(s);
        return -1;
    }
    for (int i = 0; i < s->o.pass1_workers; i++) {
        worker_state *w = calloc(1, sizeof *w);
        int rc = w ? 0 : t2_err_set(err, "out of memory");
        if (rc == 0)
            w->s = s;
        if (rc == 0)
            rc = t2_pool_create(&w->pool, 1, err);
        if (rc == 0)
            rc = t2_ctx_create(&w->ctx, e->model, w->pool, s->o.n_ctx, err);
        if (rc == 0 && pthread_create(&s->workers[i], NULL, worker_main, w) != 0)
            rc = t2_err_set(err, "cannot start a pass-1 worker");
        if (rc != 0) {
            if (w) {
                t2_ctx_free(w->ctx);
                t2_pool_free(w->pool);
                free(w);
            }
            t2_sched_free(s);
            return -1;
        }
        s->n_workers++;
    }
    if (pthread_create(&s->decoder, NULL, decoder_main, s) != 0) {
        t2_sched_free(s);
        return t2_err_set(err, "cannot start the decode thread");
    }
    s->decoder_started = true;
    *out = s;
    return 0;
}

void t2_sched_free(t2_sched *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    s->draining = true;
    for (live *l = s->jobs; l; l = l->next)
        atomic_store(&l->j->cancel, true);
    pthread_cond_broadcast(&s->work_cv);
    pthread_cond_broadcast(&s->ready_cv);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->n_workers; i++)
        pthread_join(s->workers[i], NULL);
    if (s->decoder_started)
        pthread_join(s->decoder, NULL);
    /* after the decode thread, which asks it for builds; a set it hands
     * over now is dropped with the board below */
    t2_builder_free(s->builder);
    /* jobs that passed pass 1 after the decoder stopped */
    while (s->ready_head) {
        job *j = s->ready_head;
        s->ready_head = j->next;
        finish_job(s, j, "cancelled");
    }
    for (int i = 0; i < s->n_free_ctx; i++)
        t2_ctx_free(s->free_ctx[i]);
    for (int i = 0; i < s->n_built; i++)
        t2_adapted_unref(s->built[i]);
    while (s->jobs)
        live_remove(s, s->jobs->j);
    free(s->active);
    free(s->free_ctx);
    free(s->workers);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->work_cv);
    pthread_cond_destroy(&s->ready_cv);
    free(s);
}

/* Appends a work item if there is room; err_code/err filled otherwise. */
/* The job id is read under the lock: once queued, a worker may finish
 * and free the job at any moment. */
static int enqueue(t2_sched *s, work *w, live *node, uint64_t *job_id, int *err_code, t2_err *err)
{
    pthread_mutex_lock(&s->mu);
    if (s->draining) {
        pthread_mutex_unlock(&s->mu);
        *err_code = 503;
        return t2_err_set(err, "the server is shutting down");
    }
    if (s->n_waiting >= s->o.queue_len) {
        pthread_mutex_unlock(&s->mu);
        *err_code = 429;
        return t2_err_set(err, "too many requests queued (%d); retry later", s->o.queue_len);
    }
    if (w->j) {
        w->j->id = s->next_id++;
        *job_id = w->j->id;
        live_add(s, w->j, node);
    }
    w->next = NULL;
    if (s->work_tail)
        s->work_tail->next = w;
    else
        s->work_head = w;
    s->work_tail = w;
    s->n_waiting++;
    pthread_cond_signal(&s->work_cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

int t2_sched_submit(t2_sched *s, const t2_job_req *req, const t2_job_events *ev, void *user,
                    uint64_t *job_id, int *err_code, t2_err *err)
{
    *err_code = 0;
    if (req->n_prompt == 0 || req->n_prompt + 1 >= (size_t)s->o.n_ctx) {
        *err_code = 422;
        return t2_err_set(err, "prompt of %zu tokens does not fit the context of %d tokens",
                          req->n_prompt, s->o.n_ctx);
    }
    if (req->gen.max_tokens <= 0) {
        *err_code = 422;
        return t2_err_set(err, "max_tokens must be positive");
    }
    if (t2_sampling_validate(&req->gen.sampling, err) != 0) {
        *err_code = 422;
        return -1;
    }
    job *j = calloc(1, sizeof *j);
    work *w = calloc(1, sizeof *w);
    live *node = malloc(sizeof *node);
    if (!j || !w || !node || copy_request(j, req, err) != 0) {
        if (!j || !w || !node)
            t2_err_set(err, "out of memory");
        job_free(j);
        free(w);
        free(node);
        *err_code = 500;
        return -1;
    }
    j->ev = *ev;
    j->user = user;
    j->t_submit = t2_now_ms();
    j->deadline_ms = req->timeout_s > 0 ? j->t_submit + req->timeout_s * 1e3 : 0;
    w->j = j;
    if (enqueue(s, w, node, job_id, err_code, err) != 0) {
        job_free(j);
        free(w);
        free(node);
        return -1;
    }
    return 0;
}

void t2_sched_cancel(t2_sched *s, uint64_t job_id)
{
    pthread_mutex_lock(&s->mu);
    for (live *l = s->jobs; l; l = l->next)
        if (l->j->id == job_id)
            atomic_store(&l->j->cancel, true);
    pthread_mutex_unlock(&s->mu);
}

void t2_sched_drain(t2_sched *s)
{
    pthread_mutex_lock(&s->mu);
    s->draining = true;
    pthread_mutex_unlock(&s->mu);
}

void t2_sched_counts(t2_sched *s, int *queued, int *running)
{
    pthread_mutex_lock(&s->mu);
    *queued = s->n_waiting;
    *running = s->n_running;
    pthread_mutex_unlock(&s->mu);
}

unsigned long t2_sched_builds(t2_sched *s)
{
    return s->builder ? t2_builder_count(s->builder) : 0;
}

int t2_sched_run_task(t2_sched *s, t2_sched_task_fn fn, void (*done)(void *arg, int rc), void *arg,
                      int *err_code, t2_err *err)
{
    *err_code = 0;
    work *w = calloc(1, sizeof *w);
    if (!w) {
        *err_code = 500;
        return t2_err_set(err, "out of memory");
    }
    w->t = (task){fn, done, arg};
    if (enqueue(s, w, NULL, NULL, err_code, err) != 0) {
        free(w);
        return -1;
    }
    return 0;
}
